//! One tick of the control loop as one pure function: [`step`] takes the tick's inputs and the
//! ledger and returns the [`Plan`]: the ledger changes are made in place (the caller stores them
//! in one write), and the plan lists the lifecycle calls owed and what to record. `serve`'s
//! controller and `simulate` both run it, so they cannot drift apart; each executes the plan
//! its own way (real calls, or the simulated world).

use serde::Serialize;

use crate::{
    Event, Inputs, LaunchDecision, LaunchHold, Ledger, Millis, Observation, Origin, Settings,
    SidecarTick, Timing, WarmPool, sidecar_tick, tick_with_pool,
};

/// Adopted hosts the lifecycle manager is asked about per tick at most: a flood of invented
/// ids never becomes a flood of lifecycle calls.
pub const VERIFY_PER_TICK: usize = 8;

/// Whether new hosts may be created this tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum Creates {
    /// Creates go ahead.
    #[default]
    Allowed,
    /// The lifecycle manager refused creates for good lately: no new host name until the hold
    /// ends (starts from the warm pool still go). `first`: the first tick of this hold, which
    /// is the one to report.
    Held {
        /// First tick of this hold.
        first: bool,
    },
}

/// What one tick reads besides the ledger.
#[derive(Clone, Copy, Debug)]
pub struct StepInputs<'a> {
    /// The settings in force (the effective min of target mode included).
    pub settings: &'a Settings,
    /// The merged Jicofo reading, if any (stale ones are ignored by the rules).
    pub obs: Option<&'a Observation>,
    /// The warm pool (size 0: none).
    pub pool: &'a WarmPool,
    /// Whether the lifecycle manager is up (not every node's breaker open).
    pub lifecycle_up: bool,
    /// Whether creates may go.
    pub creates: Creates,
    /// The previous tick's launch decision (a `hold` line is written when its reason changes).
    pub previous: Option<LaunchDecision>,
    /// The timeouts.
    pub timing: &'a Timing,
    /// Now.
    pub now: Millis,
}

/// The one line the launch rule gets this tick, if any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "line", rename_all = "snake_case")]
pub enum LaunchLine {
    /// New hosts were recorded (creates owed); `numbers.launch` counts them.
    Launch {
        /// The rule's numbers.
        numbers: LaunchDecision,
        /// The hosts.
        hosts: Vec<String>,
    },
    /// Launches are held after refused creates (written on the hold's first tick).
    Held {
        /// What would have been launched.
        numbers: LaunchDecision,
    },
    /// Nothing launched, for a reason other than "no deficit" that changed since last tick.
    Hold {
        /// The rule's numbers (`hold` says why).
        numbers: LaunchDecision,
    },
}

/// `max` holds back what the spare floor needs: the launch rule's deficit is larger than the
/// room `max` leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Cap {
    /// Gateways the floor wants launched.
    pub deficit: i64,
    /// Launches `max` still allows.
    pub room: i64,
    /// The `max` setting.
    pub max: u32,
}

impl Cap {
    /// The cap in a launch decision under `max`, if `max` holds the floor back.
    pub fn of(d: &LaunchDecision, max: u32) -> Option<Cap> {
        (d.deficit > 0 && d.deficit > d.room.max(0)).then_some(Cap {
            deficit: d.deficit,
            room: d.room,
            max,
        })
    }
}

/// A change of whether `max` holds the floor back (one decision line each way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum CapChange {
    /// `max` now holds the floor back.
    Capped {
        /// The numbers.
        cap: Cap,
    },
    /// The floor fits under `max` again.
    Released {
        /// The `max` setting.
        max: u32,
    },
}

/// What one tick decided: the ledger was changed in place, the rest is here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Ledger events of the reading and the timeouts, and the launch rule's numbers.
    pub events: Vec<Event>,
    /// The launch rule's result.
    pub launch: LaunchDecision,
    /// The launch rule's line, if it gets one.
    pub line: Option<LaunchLine>,
    /// Whether `max` holds the spare floor back now.
    pub cap: Option<Cap>,
    /// A change of that since the previous tick (its decision line).
    pub cap_change: Option<CapChange>,
    /// Hosts taken from the warm pool (power-on owed).
    pub resumed: Vec<String>,
    /// Hosts recorded to refill the warm pool (create owed).
    pub refills: Vec<String>,
    /// The warm pool's level after the tick.
    pub pool_level: u32,
    /// Sidecar silence timeouts and shutdown orders.
    pub sidecar: SidecarTick,
    /// Lifecycle calls owed, all of them (new and earlier ones still owed).
    pub owed: Owed,
}

/// The lifecycle calls a plan owes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Owed {
    /// Creates (recorded, not confirmed).
    pub creates: Vec<String>,
    /// Deletes.
    pub deletes: Vec<String>,
    /// Warm pool power-ons.
    pub starts: Vec<String>,
    /// Warm pool power-offs.
    pub stops: Vec<String>,
    /// Adopted hosts to ask the lifecycle manager about (at most [`VERIFY_PER_TICK`]).
    pub verify: Vec<String>,
}

/// One leader tick: attribute the reading, apply the timeouts, run the launch rule (starts from
/// the warm pool first, then creates and refills, named by `name` and recorded before any call),
/// then the sidecar orders, all in `ledger`; returns what to record and the calls owed.
pub fn step(
    ledger: &mut Ledger,
    inputs: &StepInputs<'_>,
    name: &mut dyn FnMut(&Ledger) -> String,
) -> Plan {
    let (settings, timing, now) = (inputs.settings, inputs.timing, inputs.now);
    let t = tick_with_pool(ledger, settings, inputs.pool, inputs.obs, timing, now);
    let held = matches!(inputs.creates, Creates::Held { .. });
    let (creates, refills) = if held { (0, 0) } else { (t.create, t.refill) };
    let mut created = Vec::new();
    for _ in 0..creates {
        let host = name(ledger);
        ledger.record_launch(&host, Origin::Scaler, now);
        created.push(host);
    }
    let mut refill_hosts = Vec::new();
    for _ in 0..refills {
        let host = name(ledger);
        ledger.record_refill(&host, now);
        refill_hosts.push(host);
    }
    let d = t.tick.launch;
    let line = launch_line(inputs, d, t.resumed.len(), created);
    let cap = Cap::of(&d, settings.max_total);
    let before = inputs
        .previous
        .and_then(|p| Cap::of(&p, settings.max_total));
    let cap_change = match (cap, before) {
        (Some(c), None) => Some(CapChange::Capped { cap: c }),
        (None, Some(_)) if d.hold != Some(LaunchHold::StatsMissing) => Some(CapChange::Released {
            max: settings.max_total,
        }),
        _ => None,
    };
    let sidecar_inputs = Inputs::new(settings, inputs.obs, inputs.lifecycle_up, timing, now);
    let sidecar = sidecar_tick(ledger, &sidecar_inputs);
    Plan {
        events: t.tick.events,
        launch: d,
        line,
        cap,
        cap_change,
        resumed: t.resumed,
        refills: refill_hosts,
        pool_level: t.level,
        sidecar,
        owed: Owed {
            creates: ledger.creates_owed(),
            deletes: ledger.deletes_owed(),
            starts: ledger.starts_due(now),
            stops: ledger.stops_due(now),
            verify: ledger.unverified(VERIFY_PER_TICK),
        },
    }
}

/// Host names `<prefix>-000001`, `<prefix>-000002`, ... from `next` on (it is advanced): the
/// names of a deterministic run (`simulate`, tests), where `serve` draws random ones.
pub fn numbered(prefix: &str, next: &mut u64) -> impl FnMut(&Ledger) -> String {
    move |_| {
        let name = format!("{prefix}-{:06}", *next);
        *next += 1;
        name
    }
}

/// Which line the launch rule gets: the hold after refused creates (once), the hosts created,
/// or a hold whose reason changed; a tick with no deficit is quiet.
fn launch_line(
    inputs: &StepInputs<'_>,
    d: LaunchDecision,
    resumed: usize,
    created: Vec<String>,
) -> Option<LaunchLine> {
    match inputs.creates {
        // Only what the pool could not start was held back.
        Creates::Held { first } if d.launch > resumed as u32 => {
            first.then_some(LaunchLine::Held { numbers: d })
        }
        _ if !created.is_empty() => Some(LaunchLine::Launch {
            // With a warm pool, `launch` counts the starts too: creates are the rest.
            numbers: LaunchDecision {
                launch: created.len() as u32,
                ..d
            },
            hosts: created,
        }),
        _ if d.launch == 0
            && inputs.previous.map(|p| p.hold) != Some(d.hold)
            && d.hold != Some(LaunchHold::NoDeficit) =>
        {
            Some(LaunchLine::Hold { numbers: d })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::obs_at as obs;

    fn inputs<'a>(
        s: &'a Settings,
        o: Option<&'a Observation>,
        pool: &'a WarmPool,
        t: &'a Timing,
        now: Millis,
    ) -> StepInputs<'a> {
        StepInputs {
            settings: s,
            obs: o,
            pool,
            lifecycle_up: true,
            creates: Creates::Allowed,
            previous: None,
            timing: t,
            now,
        }
    }

    #[test]
    fn a_deficit_is_recorded_before_its_creates_and_held_after_refusals() {
        let (s, t, pool) = (Settings::default(), Timing::default(), WarmPool::default());
        let o = obs(0, 0, 1_000);
        let mut l = Ledger::new();
        let plan = step(
            &mut l,
            &inputs(&s, Some(&o), &pool, &t, 1_000),
            &mut numbered("vsg", &mut 1),
        );
        assert_eq!(plan.launch.launch, 2);
        assert_eq!(plan.owed.creates, ["vsg-000001", "vsg-000002"]);
        assert!(matches!(&plan.line, Some(LaunchLine::Launch { hosts, .. }) if hosts.len() == 2));
        // In flight now: nothing more, and no line (no deficit).
        let plan = step(
            &mut l,
            &inputs(&s, Some(&o), &pool, &t, 2_000),
            &mut numbered("vsg", &mut 1),
        );
        assert_eq!(plan.launch.launch, 0);
        assert_eq!(plan.line, None);
        // Creates held: no new name; the line is written on the hold's first tick only.
        let mut l = Ledger::new();
        let mut i = inputs(&s, Some(&o), &pool, &t, 1_000);
        i.creates = Creates::Held { first: true };
        let plan = step(&mut l, &i, &mut numbered("vsg", &mut 1));
        assert!(plan.owed.creates.is_empty());
        assert!(matches!(plan.line, Some(LaunchLine::Held { .. })));
        i.creates = Creates::Held { first: false };
        assert_eq!(step(&mut l, &i, &mut numbered("vsg", &mut 1)).line, None);
    }

    #[test]
    fn a_cap_by_max_is_said_once_when_it_starts_and_once_when_it_ends() {
        let t = Timing::default();
        let pool = WarmPool::default();
        let s = Settings {
            min_available: 6,
            max_total: 4,
            ..Settings::default()
        };
        let mut l = Ledger::new();
        let o = obs(2, 0, 1_000);
        let first = step(
            &mut l,
            &inputs(&s, Some(&o), &pool, &t, 1_000),
            &mut numbered("vsg", &mut 1),
        );
        assert_eq!(
            first.cap,
            Some(Cap {
                deficit: 6,
                room: 2,
                max: 4
            })
        );
        assert!(matches!(first.cap_change, Some(CapChange::Capped { .. })));
        let mut i = inputs(&s, Some(&o), &pool, &t, 2_000);
        i.previous = Some(first.launch);
        let second = step(&mut l, &i, &mut numbered("vsg", &mut 10));
        assert!(second.cap.is_some());
        assert_eq!(second.cap_change, None, "said once");
        let more = Settings {
            max_total: 100,
            ..s
        };
        let mut i = inputs(&more, Some(&o), &pool, &t, 3_000);
        i.previous = Some(second.launch);
        let third = step(&mut l, &i, &mut numbered("vsg", &mut 20));
        assert_eq!(third.cap, None);
        assert_eq!(third.cap_change, Some(CapChange::Released { max: 100 }));
    }

    #[test]
    fn a_hold_line_is_written_when_its_reason_changes() {
        let (s, t, pool) = (Settings::default(), Timing::default(), WarmPool::default());
        let mut l = Ledger::new();
        // No reading: stats missing, once.
        let first = step(
            &mut l,
            &inputs(&s, None, &pool, &t, 1_000),
            &mut numbered("vsg", &mut 1),
        );
        assert!(matches!(first.line, Some(LaunchLine::Hold { .. })));
        let mut i = inputs(&s, None, &pool, &t, 2_000);
        i.previous = Some(first.launch);
        assert_eq!(step(&mut l, &i, &mut numbered("vsg", &mut 1)).line, None);
    }
}
