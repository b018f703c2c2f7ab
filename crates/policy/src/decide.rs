//! The decisions: how many gateways to launch, whether a gateway may go, whether an add fits.

use serde::Serialize;

use crate::{Ledger, Millis, Observation, Reason, Settings, State, Timing};

/// The ledger numbers the decisions use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Launches asked for and not yet seen in Jicofo (and not timed out).
    pub in_flight: u32,
    /// Approved removals Jicofo still counts (idle or expired: possibly counted as available);
    /// reserved by idle approvals.
    pub pending_removal: u32,
    /// Approved idle removals Jicofo still counts as available; subtracted by the launch rule.
    pub pending_idle: u32,
    /// Hosts out of Jicofo's count but not yet deleted: they still count against `max`.
    pub leftover: u32,
    /// Every host of the ledger that may exist (launched or approved, delete not confirmed),
    /// plus the gateways outside the ledger: a bound on `max` that does not depend on
    /// attributing Jicofo's counts to hosts. Stopped hosts of the warm pool are not in it.
    pub existing: u32,
    /// Stopped hosts in the warm pool (they exist, powered off).
    pub stopped: u32,
}

impl Counts {
    /// Counts the ledger.
    pub fn of(ledger: &Ledger) -> Counts {
        let mut c = Counts::default();
        for i in ledger.instances() {
            if i.holds_launch() {
                c.in_flight += 1;
            }
            if i.pending_removal() {
                c.pending_removal += 1;
            }
            if i.pending_idle_removal() {
                c.pending_idle += 1;
            }
            // A failed start being powered off is already counted in flight.
            if i.undeleted_leftover() && !i.recalled() {
                c.leftover += 1;
            }
            if i.state == State::Stopped {
                c.stopped += 1;
            } else if i.deleted_at.is_none() && i.state != State::Gone {
                c.existing += 1;
            }
        }
        c.existing += u32::try_from(ledger.offset().max(0)).unwrap_or(u32::MAX);
        c
    }
}

/// Why the launch rule launched nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LaunchHold {
    /// No fresh Jicofo reading: never launch blind.
    StatsMissing,
    /// Enough gateways available or on their way.
    NoDeficit,
    /// Total plus in-flight has reached `max`.
    AtMax,
}

/// The launch rule's result with every number that went into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LaunchDecision {
    /// Gateways to launch now.
    pub launch: u32,
    /// `min - (available + in_flight - pending idle removals)`.
    pub deficit: i64,
    /// `max - max(total + in_flight + leftover, existing)`: launches `max` still allows.
    pub room: i64,
    /// Jicofo's available (0 when missing).
    pub available: u32,
    /// Jicofo's total (0 when missing).
    pub total: u32,
    /// Launches in flight.
    pub in_flight: u32,
    /// Approved idle removals still counted as available.
    pub pending_removal: u32,
    /// Why nothing is launched, when `launch` is 0.
    pub hold: Option<LaunchHold>,
}

/// The launch rule (SPEC §5):
/// `launch = clamp(min - (available + in_flight - pending), 0, min(bulk_max, max - (total + in_flight)))`,
/// where `pending` counts approved idle removals Jicofo still counts, and the `max` term also
/// counts hosts that left Jicofo but are not deleted yet (they still exist).
pub fn decide_launch(
    counts: Counts,
    settings: &Settings,
    obs: Option<&Observation>,
    now: Millis,
    timing: &Timing,
) -> LaunchDecision {
    let mut d = LaunchDecision {
        launch: 0,
        deficit: 0,
        room: 0,
        available: 0,
        total: 0,
        in_flight: counts.in_flight,
        pending_removal: counts.pending_idle,
        hold: Some(LaunchHold::StatsMissing),
    };
    let Some(obs) = Observation::fresh(obs, now, timing.stats_max_age_ms) else {
        return d;
    };
    d.available = obs.available;
    d.total = obs.total;
    d.deficit = i64::from(settings.min_available)
        - (i64::from(obs.available) + i64::from(counts.in_flight) - i64::from(counts.pending_idle));
    let counted = i64::from(obs.total) + i64::from(counts.in_flight) + i64::from(counts.leftover);
    d.room = i64::from(settings.max_total) - counted.max(i64::from(counts.existing));
    let cap = d.room.min(i64::from(settings.bulk_max)).max(0);
    d.launch = d.deficit.clamp(0, cap) as u32;
    d.hold = if d.launch > 0 {
        None
    } else if d.deficit <= 0 {
        Some(LaunchHold::NoDeficit)
    } else {
        Some(LaunchHold::AtMax)
    };
    d
}

/// Why a removal request was answered `keep`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepCause {
    /// No fresh Jicofo reading: fail safe.
    StatsMissing,
    /// The lifecycle manager is not reachable: a removal could not be carried out.
    LifecycleDown,
    /// The shared store is not reachable: the budget cannot be reserved safely.
    StoreDown,
    /// The shared store lost its data and is being re-seeded from the replicas: the budget is
    /// not spent until the newest state any replica held is back.
    StoreRecovering,
    /// Removing one more would take available below `min`.
    Floor,
}

/// The answer to a remove-me request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RemovalDecision {
    /// Remove it. `repeat` is true when it was already approved (no budget spent again).
    Accept {
        /// Already approved before.
        repeat: bool,
        /// Jicofo's available (0 when missing).
        available: u32,
        /// Pending removals before this one.
        pending_removal: u32,
    },
    /// Keep it, for `cause`.
    Keep {
        /// Why.
        cause: KeepCause,
        /// Jicofo's available (0 when missing).
        available: u32,
        /// Pending removals.
        pending_removal: u32,
    },
}

impl RemovalDecision {
    /// Whether the gateway may go.
    pub fn accepted(&self) -> bool {
        matches!(self, RemovalDecision::Accept { .. })
    }
}

/// What a removal decision reads besides the ledger and the request: the settings, Jicofo's
/// merged reading, whether the lifecycle manager is up, the timing and the time.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The settings in force.
    pub settings: &'a Settings,
    /// Jicofo's merged reading, if there is one.
    pub obs: Option<&'a Observation>,
    /// Whether the lifecycle manager answers.
    pub lifecycle_up: bool,
    /// Timeouts and ages.
    pub timing: &'a Timing,
    /// The time of the decision.
    pub now: Millis,
}

impl<'a> Inputs<'a> {
    /// The inputs, in the order the entry points take them.
    pub fn new(
        settings: &'a Settings,
        obs: Option<&'a Observation>,
        lifecycle_up: bool,
        timing: &'a Timing,
        now: Millis,
    ) -> Self {
        Inputs {
            settings,
            obs,
            lifecycle_up,
            timing,
            now,
        }
    }
}

/// Removal approval (SPEC §5): expired/unhealthy at once; idle only when
/// `available - pending_removal - 1 >= min`, stats are fresh and the lifecycle manager is up.
/// A host already approved is accepted again without spending budget.
pub fn decide_removal(
    ledger: &Ledger,
    inputs: &Inputs,
    host: &str,
    reason: Reason,
) -> RemovalDecision {
    let Inputs {
        settings,
        obs,
        lifecycle_up,
        timing,
        now,
    } = *inputs;
    let counts = Counts::of(ledger);
    let fresh = Observation::fresh(obs, now, timing.stats_max_age_ms);
    let available = fresh.map_or(0, |o| o.available);
    let pending_removal = counts.pending_removal;
    let accept = |repeat| RemovalDecision::Accept {
        repeat,
        available,
        pending_removal,
    };
    let keep = |cause| RemovalDecision::Keep {
        cause,
        available,
        pending_removal,
    };
    if ledger
        .find(host)
        .is_some_and(|i| i.state.approved() || i.state == State::LaunchFailed)
    {
        return accept(true);
    }
    if reason != Reason::Idle {
        return accept(false);
    }
    if fresh.is_none() {
        return keep(KeepCause::StatsMissing);
    }
    if !lifecycle_up {
        return keep(KeepCause::LifecycleDown);
    }
    let spare_after = i64::from(available) - i64::from(pending_removal) - 1;
    if spare_after >= i64::from(settings.min_available) {
        accept(false)
    } else {
        keep(KeepCause::Floor)
    }
}

/// Whether the shared store can record a removal approval now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreHealth {
    /// Reachable and holding the newest state: approvals go through [`decide_removal`].
    Ok,
    /// Unreachable (or every write fails): nothing can be recorded.
    Down,
    /// Re-seeded after losing its data, within the recovery window.
    Recovering,
}

/// The store-down rule (SPEC §6): when an approval cannot be stored safely, `idle` is kept
/// (its budget cannot be reserved across replicas) while `expired` and `unhealthy` are
/// accepted (they go anyway and are replaced; the caller queues them until the store is back).
/// Returns `None` when the store is healthy and [`decide_removal`] decides.
pub fn decide_removal_without_store(store: StoreHealth, reason: Reason) -> Option<RemovalDecision> {
    let cause = match store {
        StoreHealth::Ok => return None,
        StoreHealth::Down => KeepCause::StoreDown,
        StoreHealth::Recovering => KeepCause::StoreRecovering,
    };
    Some(match (reason, store) {
        (Reason::Idle, _) => RemovalDecision::Keep {
            cause,
            available: 0,
            pending_removal: 0,
        },
        // While recovering the store is writable: the normal rule records the approval.
        (_, StoreHealth::Recovering) => return None,
        _ => RemovalDecision::Accept {
            repeat: false,
            available: 0,
            pending_removal: 0,
        },
    })
}

/// Why `POST /scaler/instance` was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum AddRefusal {
    /// No fresh Jicofo reading: the total is unknown, so `max` cannot be checked.
    StatsMissing,
    /// One more would pass `max` (in-flight launches counted).
    AtMax {
        /// Jicofo's total.
        total: u32,
        /// Launches in flight.
        in_flight: u32,
        /// The `max` setting.
        max: u32,
    },
}

/// Whether one more launch on request fits under `max`, counting launches in flight.
pub fn decide_external_add(
    counts: Counts,
    settings: &Settings,
    obs: Option<&Observation>,
    now: Millis,
    timing: &Timing,
) -> Result<(), AddRefusal> {
    let obs =
        Observation::fresh(obs, now, timing.stats_max_age_ms).ok_or(AddRefusal::StatsMissing)?;
    let counted = u64::from(obs.total) + u64::from(counts.in_flight) + u64::from(counts.leftover);
    if counted.max(u64::from(counts.existing)) + 1 > u64::from(settings.max_total) {
        return Err(AddRefusal::AtMax {
            total: obs.total,
            in_flight: counts.in_flight,
            max: settings.max_total,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{obs, obs_at};
    use crate::{Event, Origin, State};
    use proptest::prelude::*;

    #[test]
    fn without_the_store_idle_keeps_and_the_others_go() {
        use StoreHealth::*;
        assert_eq!(decide_removal_without_store(Ok, Reason::Idle), None);
        for store in [Down, Recovering] {
            let d = decide_removal_without_store(store, Reason::Idle);
            assert!(d.is_some_and(|d| !d.accepted()), "{store:?}");
        }
        let down = |r| decide_removal_without_store(Down, r).map(|d| d.accepted());
        assert_eq!(down(Reason::Expired), Some(true));
        assert_eq!(down(Reason::Unhealthy), Some(true));
        // A writable store in recovery records expired/unhealthy approvals normally.
        assert_eq!(
            decide_removal_without_store(Recovering, Reason::Expired),
            None
        );
    }

    #[test]
    fn in_flight_launches_are_not_launched_again() {
        let s = Settings::default();
        let t = Timing::default();
        let mut l = Ledger::new();
        l.absorb(&obs(0, 0), &Timing::default());
        let d = decide_launch(Counts::of(&l), &s, Some(&obs(0, 0)), 1_000, &t);
        assert_eq!(d.launch, 2);
        l.record_launch("a", Origin::Scaler, 1_000);
        l.record_launch("b", Origin::Scaler, 1_000);
        for _ in 0..10 {
            l.absorb(&obs(0, 0), &Timing::default());
            let d = decide_launch(Counts::of(&l), &s, Some(&obs(0, 0)), 1_000, &t);
            assert_eq!((d.launch, d.hold), (0, Some(LaunchHold::NoDeficit)));
        }
    }

    #[test]
    fn stale_stats_launch_nothing_and_keep_idle_gateways() {
        let s = Settings::default();
        let t = Timing::default();
        let l = Ledger::new();
        let old = Observation {
            total: 0,
            available: 0,
            taken_at: 0,
        };
        let now = t.stats_max_age_ms + 1;
        let d = decide_launch(Counts::of(&l), &s, Some(&old), now, &t);
        assert_eq!((d.launch, d.hold), (0, Some(LaunchHold::StatsMissing)));
        let r = decide_removal(&l, &Inputs::new(&s, None, true, &t, now), "h", Reason::Idle);
        assert!(matches!(
            r,
            RemovalDecision::Keep {
                cause: KeepCause::StatsMissing,
                ..
            }
        ));
        let r = decide_removal(
            &l,
            &Inputs::new(&s, None, true, &t, now),
            "h",
            Reason::Unhealthy,
        );
        assert!(r.accepted());
        assert_eq!(
            decide_external_add(Counts::of(&l), &s, None, now, &t),
            Err(AddRefusal::StatsMissing)
        );
    }

    #[test]
    fn lifecycle_down_keeps_idle_only() {
        let s = Settings::default();
        let t = Timing::default();
        let l = Ledger::new();
        let o = obs(10, 10);
        let r = decide_removal(
            &l,
            &Inputs::new(&s, Some(&o), false, &t, 1_000),
            "h",
            Reason::Idle,
        );
        assert!(matches!(
            r,
            RemovalDecision::Keep {
                cause: KeepCause::LifecycleDown,
                ..
            }
        ));
        let r = decide_removal(
            &l,
            &Inputs::new(&s, Some(&o), false, &t, 1_000),
            "h",
            Reason::Expired,
        );
        assert!(r.accepted());
    }

    #[test]
    fn a_launch_joining_as_a_removed_host_leaves_is_seen() {
        // Single-use churn: X finishes its call, expires, is deleted; Y joins meanwhile.
        let s = Settings {
            min_available: 1,
            ..Settings::default()
        };
        let t = Timing::default();
        let mut l = Ledger::new();
        l.record_launch("x", Origin::Scaler, 0);
        l.launch_confirmed("x", 0);
        l.absorb(&obs_at(1, 1, 1_000), &t);
        assert_eq!(l.get("x").map(|i| i.state), Some(State::Ready));
        l.record_launch("y", Origin::Scaler, 2_000);
        l.launch_confirmed("y", 2_000);
        l.approve("x", Reason::Expired, 60_000, &t);
        // An expired (busy) host does not make the launch rule launch one more.
        let d = decide_launch(Counts::of(&l), &s, Some(&obs_at(1, 0, 60_000)), 60_000, &t);
        assert_eq!((d.in_flight, d.pending_removal, d.launch), (1, 0, 0));
        l.delete_done("x", 61_000);
        // X gone, Y joined: the total is still 1.
        l.absorb(&obs_at(1, 1, 70_000), &t);
        l.absorb(&obs_at(1, 1, 61_000 + t.stop_grace_ms), &t);
        assert_eq!(l.get("y").map(|i| i.state), Some(State::Ready), "{l:?}");
        assert_eq!(Counts::of(&l).in_flight, 0);
        // and Y is never failed at the boot timeout.
        assert!(
            !l.expire(&t, t.boot_timeout_ms + 2_000)
                .iter()
                .any(|e| matches!(e, Event::BootTimeout { .. }))
        );
    }

    proptest! {
        /// `max` is never passed and at most `bulk_max` is launched, counting in-flight launches.
        #[test]
        fn launch_respects_max_and_bulk(
            min in 1u32..=100, max in 1u32..=1000, bulk in 1u32..=100,
            total in 0u32..1200, avail_frac in 0u32..=100, in_flight in 0u32..200, pending in 0u32..50,
        ) {
            let s = Settings { min_available: min, max_total: max, bulk_max: bulk };
            let available = total * avail_frac / 100;
            let c = Counts { in_flight, pending_removal: pending.min(available), pending_idle: pending.min(available), leftover: 0, existing: 0, stopped: 0 };
            let d = decide_launch(c, &s, Some(&obs(total, available)), 1_000, &Timing::default());
            prop_assert!(d.launch <= bulk);
            if d.launch > 0 {
                prop_assert!(u64::from(total) + u64::from(in_flight) + u64::from(d.launch) <= u64::from(max));
                prop_assert!(i64::from(d.launch) <= d.deficit);
            }
        }

        /// Any number of idle remove-me requests, applied one by one as the service serialises
        /// them, accepts exactly `available - min` (when positive) and never breaks the floor;
        /// repeats never spend budget twice.
        #[test]
        fn idle_removals_stop_at_the_floor(
            min in 1u32..=20, available in 0u32..60, hosts in 1usize..80, repeats in 0usize..3,
        ) {
            let s = Settings { min_available: min, ..Settings::default() };
            let t = Timing::default();
            let o = obs(available, available);
            let mut l = Ledger::new();
            l.absorb(&o, &t);
            let mut accepted = std::collections::BTreeSet::new();
            for round in 0..=repeats {
                for h in 0..hosts {
                    let host = format!("gw-{h}");
                    let d = decide_removal(&l, &Inputs::new(&s, Some(&o), true, &t, 1_000), &host, Reason::Idle);
                    if d.accepted() {
                        if round > 0 { prop_assert!(accepted.contains(&host)); }
                        l.approve(&host, Reason::Idle, 1_000, &t);
                        accepted.insert(host);
                    }
                }
            }
            let budget = (i64::from(available) - i64::from(min)).max(0) as usize;
            prop_assert_eq!(accepted.len(), budget.min(hosts));
            prop_assert_eq!(l.absorb(&o, &t), vec![], "approvals keep the ledger balanced");
        }

        /// Launch, boot, and lose foreign gateways in any order: the ledger's attribution never counts a
        /// launch both as seen and as in flight, and in-flight plus seen equals what was launched.
        #[test]
        fn attribution_never_double_counts(steps in proptest::collection::vec(0u8..4, 1..60)) {
            let mut l = Ledger::new();
            let mut up: u32 = 3; // gateways really running (3 external at start)
            let mut external: u32 = 3;
            let mut launched = 0u32;
            let mut booting: Vec<String> = Vec::new();
            let mut now = 0;
            l.absorb(&obs(up, up), &Timing::default());
            for s in steps {
                now += 1;
                match s {
                    0 => { let h = format!("n{launched}"); launched += 1;
                           l.record_launch(&h, Origin::Scaler, now); l.launch_confirmed(&h, now); booting.push(h); }
                    1 if !booting.is_empty() => { booting.remove(0); up += 1; }
                    // A gateway we did not launch dies (or is removed by hand).
                    2 if external > 0 => { external -= 1; up -= 1; }
                    _ => {}
                }
                l.absorb(&obs(up, up), &Timing::default());
                let c = Counts::of(&l);
                prop_assert_eq!(c.in_flight as usize, booting.len());
            }
        }
    }
}
