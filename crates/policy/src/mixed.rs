//! Mixed fleets: the legacy scripts, our agent and jitsi-autoscaler's sidecar side by side.
//!
//! The remove-me request of a client that says how its host drains ([`remove_request_as`]; the
//! modes are [`DrainMode`]), and whether a legacy `POST /scaler/instance` is still needed beside
//! the scale-up loop ([`decide_requested_add`]).

use serde::Serialize;

use crate::drain::DrainMode;
use crate::{
    AddRefusal, Counts, Inputs, Ledger, Millis, Observation, Reason, RemovalDecision, Settings,
    Timing, WarmPool, decide_external_add, decide_launch, pool::remove_request_in,
};

/// A remove-me request, end to end on the ledger (shared by `serve` and `simulate`): note that
/// the host runs, decide, and record a new approval with the drain `mode` of its client (a
/// repeat spends nothing): [`crate::remove_request_with_pool`] without a pool. A client that does not say drains as [`DrainMode::default_for`].
pub fn remove_request_as(
    ledger: &mut Ledger,
    inputs: &Inputs,
    host: &str,
    reason: Reason,
    mode: DrainMode,
) -> RemovalDecision {
    remove_request_in(ledger, inputs, &WarmPool::default(), host, reason, mode).0
}

/// The answer to a legacy `POST /scaler/instance` that fits under `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RequestedAdd {
    /// Needed: launch one.
    Launch {
        /// The launch rule's deficit before this launch.
        deficit: i64,
    },
    /// Not needed (answered as accepted, launching nothing): the pool already has `min`
    /// available or on its way, e.g. because the scale-up loop launched for the same deficit.
    NotNeeded {
        /// The launch rule's deficit (<= 0).
        deficit: i64,
        /// Jicofo's available.
        available: u32,
        /// Launches in flight.
        in_flight: u32,
        /// Approved idle removals still counted as available.
        pending: u32,
        /// The `min` setting.
        min: u32,
    },
}

/// Whether a legacy `POST /scaler/instance` launches: only while it is needed (the launch
/// rule's deficit `min - (available + in_flight - pending)` is positive) and one more fits
/// under `max`. The legacy scale-up script, left running beside `serve`, thus never launches
/// more than the deficit `serve` launches for anyway.
pub fn decide_requested_add(
    counts: Counts,
    settings: &Settings,
    obs: Option<&Observation>,
    now: Millis,
    timing: &Timing,
) -> Result<RequestedAdd, AddRefusal> {
    decide_external_add(counts, settings, obs, now, timing)?;
    let d = decide_launch(counts, settings, obs, now, timing);
    if d.deficit > 0 {
        Ok(RequestedAdd::Launch { deficit: d.deficit })
    } else {
        Ok(RequestedAdd::NotNeeded {
            deficit: d.deficit,
            available: d.available,
            in_flight: d.in_flight,
            pending: d.pending_removal,
            min: settings.min_available,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::obs;
    use crate::{Origin, State};

    #[test]
    fn each_host_drains_its_own_way() {
        let t = Timing {
            drain_confirm: true,
            ..Timing::default()
        };
        let s = Settings {
            min_available: 1,
            ..Settings::default()
        };
        let mut l = Ledger::new();
        let o = obs(5, 5);
        l.absorb(&o, &t);
        // An idle remove-me from `host` at `now`, its client draining as `mode`.
        let idle = |l: &mut Ledger, now, host, mode| {
            remove_request_as(
                l,
                &Inputs::new(&s, Some(&o), true, &t, now),
                host,
                Reason::Idle,
                mode,
            )
        };
        let d = idle(&mut l, 1_000, "legacy", DrainMode::Immediate);
        assert!(d.accepted());
        let d = idle(&mut l, 1_000, "agent", DrainMode::Confirm);
        assert!(d.accepted());
        assert_eq!(l.get("legacy").map(|i| i.state), Some(State::Deleting));
        assert_eq!(
            l.get("legacy").and_then(|i| i.drain),
            Some(DrainMode::Immediate)
        );
        assert_eq!(l.get("agent").map(|i| i.state), Some(State::Draining));
        assert_eq!(l.deletes_owed(), vec!["legacy".to_string()]);
        // A client that does not say gets `drain_confirm`.
        l.approve("quiet", Reason::Expired, 1_000, &t);
        assert_eq!(
            l.get("quiet").and_then(|i| i.drain),
            Some(DrainMode::Confirm)
        );
        let t2 = Timing {
            drain_confirm: false,
            ..t
        };
        l.approve("quiet2", Reason::Expired, 1_000, &t2);
        assert_eq!(l.get("quiet2").map(|i| i.state), Some(State::Deleting));
        // A repeat with another mode changes nothing.
        idle(&mut l, 2_000, "agent", DrainMode::Immediate);
        assert_eq!(l.get("agent").map(|i| i.state), Some(State::Draining));
        assert_eq!(DrainMode::parse("confirm"), Some(DrainMode::Confirm));
        assert_eq!(DrainMode::parse("immediate"), Some(DrainMode::Immediate));
        assert_eq!(DrainMode::parse("sidecar"), None);
    }

    #[test]
    fn a_requested_add_launches_only_the_deficit() {
        let s = Settings {
            min_available: 3,
            max_total: 10,
            bulk_max: 5,
        };
        let t = Timing::default();
        let mut l = Ledger::new();
        let o = obs(1, 1);
        l.absorb(&o, &t);
        // Deficit 2: two requested adds launch, the third finds nothing missing.
        let mut launched = 0;
        for n in 0..5 {
            match decide_requested_add(Counts::of(&l), &s, Some(&o), 1_000, &t) {
                Ok(RequestedAdd::Launch { deficit }) => {
                    assert_eq!(deficit, 2 - n);
                    l.record_launch(&format!("h{n}"), Origin::Api, 1_000);
                    launched += 1;
                }
                Ok(RequestedAdd::NotNeeded {
                    deficit, in_flight, ..
                }) => {
                    assert_eq!((deficit, in_flight), (0, 2));
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(launched, 2);
        // Stale stats and `max` still refuse, as before.
        assert_eq!(
            decide_requested_add(Counts::of(&l), &s, None, 1_000, &t),
            Err(AddRefusal::StatsMissing)
        );
        let full = obs(10, 0);
        assert!(matches!(
            decide_requested_add(Counts::of(&l), &s, Some(&full), 1_000, &t),
            Err(AddRefusal::AtMax { .. })
        ));
    }
}
