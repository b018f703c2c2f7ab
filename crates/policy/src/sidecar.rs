//! Gateways managed through jitsi-autoscaler's sidecar (see docs/migration.md).
//!
//! A sidecar reports its Jibri's busy status and health by name (`/sidecar/status` and
//! `/sidecar/stats`), and asks whether to shut down. The reports are evidence in the ledger,
//! timed on our own clock (the sidecar's `timestamp` comes from its clock). The scaler, not the
//! gateway, decides when a sidecar host goes: [`select_shutdowns`] picks surplus idle, healthy
//! hosts, longest idle first, through [`crate::remove_request_as`] — the budget remove-me requests spend,
//! so the floor holds and a shared store serialises it across replicas. A host told to shut
//! down is `draining` (mode [`DrainMode::Sidecar`]) until its `/sidecar/shutdown` or its silence
//! past the TTL; then its delete is owed as for any other host.

use serde::Serialize;

use crate::drain::DrainMode;
use crate::evidence::{BusyStatus, HealthStatus, SidecarEvidence, SidecarReport};
use crate::ledger::{Ledger, Membership, Origin, State, key_of};
use crate::pool::{WarmPool, remove_request_in};
use crate::settings::Timing;
use crate::{Inputs, Millis, Reason, RemovalDecision};

/// A ledger change made by [`sidecar_tick`] (for the decision log).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SidecarEvent {
    /// A host told to shut down fell silent past the TTL: taken as gone, delete owed.
    SilentAfterShutdown {
        /// The host.
        host: String,
        /// Silence so far.
        silent_ms: u64,
    },
    /// A host adopted from its reports fell silent past the TTL without being told to shut
    /// down: forgotten (left to Jicofo's count as an unmanaged gateway), no delete.
    Forgotten {
        /// The host.
        host: String,
        /// Silence so far.
        silent_ms: u64,
    },
}

/// A host [`select_shutdowns`] told to shut down.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Shutdown {
    /// The ledger key of the host.
    pub host: String,
    /// Idle (surplus spare) or expired.
    pub reason: Reason,
    /// How long it had been idle (our clock), for idle ones.
    pub idle_ms: Option<u64>,
    /// Jicofo's available when decided.
    pub available: u32,
    /// Pending removals before this one.
    pub pending_removal: u32,
}

/// What [`sidecar_tick`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SidecarTick {
    /// Silence timeouts.
    pub events: Vec<SidecarEvent>,
    /// Hosts now told to shut down.
    pub shutdowns: Vec<Shutdown>,
}

/// How often unchanged evidence is re-stamped: often enough for the TTL, rare enough that a
/// fleet of sidecars reporting every minute does not rewrite the store on every report.
fn refresh_ms(timing: &Timing) -> u64 {
    (timing.sidecar_ttl_ms / 5).min(timing.sidecar_report_max_age_ms() / 3)
}

impl Ledger {
    /// Records a sidecar request for `instance` at `now`: a status report (`Some`) or a poll
    /// (`None`, which proves nothing about the host). A report from a host the ledger does not
    /// know adopts it (it runs, so Jicofo counts it). Returns the ledger key, or `None` for a poll from an unknown host.
    pub fn sidecar_heard(
        &mut self,
        instance: &str,
        report: Option<SidecarReport>,
        now: Millis,
        timing: &Timing,
    ) -> Option<String> {
        let key = match (self.find(instance).map(|i| key_of(&i.host)), report) {
            (Some(k), _) => k,
            (None, Some(_)) => self.adopt(instance, now),
            (None, None) => return None,
        };
        // A launch in flight is not made ready here: Jicofo may not count it yet, and the
        // count attributes it (reporting launches first, see `Ledger::absorb`).
        let refresh = refresh_ms(timing);
        let i = self.entry_mut(&key)?;
        if matches!(i.state, State::Gone | State::LaunchFailed) {
            // Deleted or failed: a late report must not bring it back.
            return Some(key);
        }
        let ev = i.sidecar.get_or_insert(SidecarEvidence {
            busy: BusyStatus::Unknown,
            health: HealthStatus::Unknown,
            reported_at: 0,
            heard_at: 0,
            idle_since: None,
            unhealthy_since: None,
            shutting_down: false,
            confirmed_at: None,
        });
        let stale = |t: Millis| now.saturating_sub(t) >= refresh;
        if stale(ev.heard_at) {
            ev.heard_at = now;
        }
        if let Some(r) = report {
            let changed =
                (ev.busy, ev.health, ev.shutting_down) != (r.busy, r.health, r.shutting_down);
            if changed || stale(ev.reported_at) {
                ev.reported_at = now;
                ev.heard_at = now;
            }
            if r.busy == BusyStatus::Idle {
                if ev.busy != BusyStatus::Idle || ev.idle_since.is_none() {
                    ev.idle_since = Some(now);
                }
            } else {
                ev.idle_since = None;
            }
            if r.health == HealthStatus::Unhealthy {
                ev.unhealthy_since.get_or_insert(now);
            } else {
                ev.unhealthy_since = None;
            }
            ev.busy = r.busy;
            ev.health = r.health;
            ev.shutting_down |= r.shutting_down;
        }
        Some(key)
    }

    /// `/sidecar/shutdown`: the host's terminate script runs, so its Jibri is stopping. A host
    /// told to shut down goes to `deleting` at once (rather than after the silence); a host we
    /// did not tell is leaving anyway, so its removal is recorded as expired (no budget, it is
    /// replaced). Returns the ledger key, or `None` for a host the ledger does not know.
    pub fn sidecar_shutdown(&mut self, instance: &str, now: Millis) -> Option<String> {
        let key = self.find(instance).map(|i| key_of(&i.host))?;
        let state = self.get(&key).map(|i| i.state)?;
        if !state.approved() && state != State::LaunchFailed {
            self.approve_as(&key, Reason::Expired, now, DrainMode::Sidecar);
        }
        let i = self.entry_mut(&key)?;
        if let Some(ev) = i.sidecar.as_mut() {
            ev.confirmed_at.get_or_insert(now);
            ev.heard_at = now;
        }
        if i.state == State::Draining {
            i.set_state(State::Deleting, now);
        }
        i.stopped_at.get_or_insert(now);
        Some(key)
    }

    /// Whether a sidecar asking for `instance` is owed a shutdown: its removal was approved (or
    /// its launch failed), so it must go until it is gone. Whether this answer says so is
    /// [`Ledger::sidecar_answer`].
    pub fn sidecar_told(&self, instance: &str) -> bool {
        self.find(instance)
            .is_some_and(|i| i.state.approved() || i.state == State::LaunchFailed)
    }

    /// The `shutdown` of the answer to a sidecar request for `instance` carrying `report`
    /// (`None`: a poll, which carries none). A shutdown is owed ([`Ledger::sidecar_told`]) and
    /// the evidence says the host takes no call: the report in this very request says IDLE or
    /// EXPIRED, or, for a poll, the last report did and is younger than one report interval and
    /// a half. A BUSY report is never answered `true`, whatever was decided before: the order
    /// waits until the call has ended.
    pub fn sidecar_answer(
        &self,
        instance: &str,
        report: Option<SidecarReport>,
        now: Millis,
        timing: &Timing,
    ) -> bool {
        let Some(i) = self.find(instance) else {
            return false;
        };
        if !(i.state.approved() || i.state == State::LaunchFailed) || i.membership.refused() {
            return false;
        }
        let free = |b: BusyStatus| matches!(b, BusyStatus::Idle | BusyStatus::Expired);
        match report {
            Some(r) => free(r.busy),
            None => i
                .sidecar
                .as_ref()
                .is_some_and(|ev| free(ev.busy) && ev.fresh(now, timing)),
        }
    }

    /// The silence timeouts of sidecar hosts (see [`SidecarEvent`]).
    fn sidecar_expire(&mut self, timing: &Timing, now: Millis) -> Vec<SidecarEvent> {
        let mut events = Vec::new();
        // A host found not managed lost its reports' evidence: it is forgotten a TTL after
        // it was adopted, so invented ids never stay.
        let refused = |i: &crate::Instance| {
            i.origin == Origin::Adopted && i.state == State::Ready && i.membership.refused()
        };
        let keys: Vec<String> = self
            .instances()
            .filter(|i| i.sidecar.is_some() || refused(i))
            .map(|i| key_of(&i.host))
            .collect();
        for key in keys {
            let Some(i) = self.get(&key) else { continue };
            let heard = i.sidecar.as_ref().map_or(i.state_since, |ev| ev.heard_at);
            let since = heard.max(i.approved_at.unwrap_or(0));
            let silent_ms = now.saturating_sub(since);
            if silent_ms < timing.sidecar_ttl_ms {
                continue;
            }
            let (state, origin, mode) = (i.state, i.origin, i.drain);
            if state == State::Draining && mode == Some(DrainMode::Sidecar) {
                if let Some(i) = self.entry_mut(&key) {
                    i.set_state(State::Deleting, now);
                    i.stopped_at.get_or_insert(now);
                }
                events.push(SidecarEvent::SilentAfterShutdown {
                    host: key,
                    silent_ms,
                });
            } else if state == State::Ready && origin == Origin::Adopted {
                // Docker gives a gateway a new identity at each start: the old one is gone for
                // good. Without a lifecycle-manager host of ours, we only stop tracking it.
                self.vanished(&key, now);
                events.push(SidecarEvent::Forgotten {
                    host: key,
                    silent_ms,
                });
            }
        }
        events
    }
}

/// Picks the sidecar hosts to tell to shut down now, and records each as approved (mode
/// [`DrainMode::Sidecar`]) in `ledger`:
/// - every host with a fresh EXPIRED report, or UNHEALTHY and not BUSY for TTL/5 (removed at
///   once and replaced, as an expired or unhealthy remove-me; never a BUSY one);
/// - while the pool holds more spares than `min`: idle, healthy hosts (fresh reports), longest
///   idle first, each only if [`crate::remove_request_as`] accepts it as an idle remove-me (stats fresh,
///   lifecycle manager up, `available - pending - 1 >= min`). It stops at the first `keep`, so
///   the floor is never broken and the budget is the one remove-me requests spend.
pub fn select_shutdowns(ledger: &mut Ledger, inputs: &Inputs) -> Vec<Shutdown> {
    let (timing, now) = (inputs.timing, inputs.now);
    let mut out = Vec::new();
    let ready_with = |ledger: &Ledger, pick: &dyn Fn(&SidecarEvidence) -> bool| {
        // Only hosts the scaler may act on: launched by it or confirmed managed, or known from
        // reports alone (telling those affects only their own container).
        let mut v: Vec<(Millis, String)> = ledger
            .instances()
            .filter(|i| i.state == State::Ready)
            .filter(|i| i.managed() || i.membership == Membership::ReportsOnly)
            .filter_map(|i| {
                let ev = i.sidecar.as_ref()?;
                pick(ev).then(|| (ev.idle_since.unwrap_or(ev.reported_at), key_of(&i.host)))
            })
            .collect();
        v.sort();
        v
    };
    let gone = ready_with(ledger, &|ev| {
        (ev.fresh(now, timing) && ev.busy == BusyStatus::Expired) || ev.broken(now, timing)
    });
    // The host told as a remove-me of `reason` from it would be answered (a `Ready` host: never
    // a repeat); whether it was.
    let mut tell = |ledger: &mut Ledger, host: String, reason: Reason, idle_ms: Option<u64>| {
        let (d, _) = remove_request_in(
            ledger,
            inputs,
            &WarmPool::default(),
            &host,
            reason,
            DrainMode::Sidecar,
        );
        let RemovalDecision::Accept {
            available,
            pending_removal,
            ..
        } = d
        else {
            return false;
        };
        out.push(Shutdown {
            host,
            reason,
            idle_ms,
            available,
            pending_removal,
        });
        true
    };
    for (_, host) in gone {
        let reason = match ledger.get(&host).and_then(|i| i.sidecar.as_ref()) {
            Some(ev) if ev.busy == BusyStatus::Expired => Reason::Expired,
            _ => Reason::Unhealthy,
        };
        tell(ledger, host, reason, None);
    }
    let idle = ready_with(ledger, &|ev| ev.spare(now, timing));
    for (since, host) in idle {
        if !tell(ledger, host, Reason::Idle, Some(now.saturating_sub(since))) {
            break;
        }
    }
    out
}

/// The sidecar part of one leader tick (after [`crate::tick`], in the same store write):
/// silence timeouts, then [`select_shutdowns`].
pub fn sidecar_tick(ledger: &mut Ledger, inputs: &Inputs) -> SidecarTick {
    let events = ledger.sidecar_expire(inputs.timing, inputs.now);
    let shutdowns = select_shutdowns(ledger, inputs);
    SidecarTick { events, shutdowns }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::obs_at as obs;
    use crate::{Instance, Observation, Settings};
    use proptest::prelude::*;

    fn report(busy: BusyStatus, health: HealthStatus) -> Option<SidecarReport> {
        Some(SidecarReport {
            busy,
            health,
            shutting_down: false,
        })
    }

    /// Default timing, settings with `min_available = min`, an empty ledger.
    fn setup(min: u32) -> (Timing, Settings, Ledger) {
        let s = Settings {
            min_available: min,
            ..Settings::default()
        };
        (Timing::default(), s, Ledger::new())
    }

    const IDLE: BusyStatus = BusyStatus::Idle;
    const OK: HealthStatus = HealthStatus::Healthy;

    /// The lifecycle manager confirmed every adopted host as managed (what the leader's check
    /// does in `serve`).
    fn confirm(l: &mut Ledger) {
        let hosts: Vec<String> = l.instances().map(|i| i.host.clone()).collect();
        for h in hosts {
            l.set_membership(&h, Membership::Managed, "test", None);
        }
    }

    #[test]
    fn surplus_idle_healthy_hosts_go_longest_idle_first() {
        let (t, s, mut l) = setup(2);
        l.absorb(&obs(6, 5, 0), &t);
        // a idle since 100, b since 300, c since 200, d unhealthy, e busy, f idle.
        l.sidecar_heard("a", report(IDLE, OK), 100, &t);
        l.sidecar_heard("c", report(IDLE, OK), 200, &t);
        l.sidecar_heard("b", report(IDLE, OK), 300, &t);
        l.sidecar_heard("d", report(IDLE, HealthStatus::Unhealthy), 100, &t);
        l.sidecar_heard("e", report(BusyStatus::Busy, OK), 100, &t);
        l.sidecar_heard("f", report(IDLE, OK), 400, &t);
        confirm(&mut l);
        let o = obs(6, 5, 1_000);
        // available 5, min 2: three may go; of the four healthy idle ones, f is the newest.
        let sd = select_shutdowns(&mut l, &Inputs::new(&s, Some(&o), true, &t, 1_000));
        let hosts: Vec<&str> = sd.iter().map(|x| x.host.as_str()).collect();
        assert_eq!(hosts, ["a", "c", "b"]);
        assert!(l.sidecar_told("a") && !l.sidecar_told("f") && !l.sidecar_told("e"));
        assert_eq!(l.get("a").and_then(|i| i.drain), Some(DrainMode::Sidecar));
        assert_eq!(l.get("a").map(|i| i.state), Some(State::Draining));
        // A second pass spends nothing more (the budget is taken).
        assert!(select_shutdowns(&mut l, &Inputs::new(&s, Some(&o), true, &t, 1_100)).is_empty());
        // Idle time keeps counting while reports repeat IDLE.
        l.sidecar_heard("f", report(IDLE, OK), 900_000, &t);
        assert_eq!(
            l.get("f").and_then(|i| i.sidecar.as_ref()?.idle_since),
            Some(400)
        );
    }

    #[test]
    fn no_fresh_stats_no_lifecycle_or_stale_reports_shut_nothing() {
        let (t, s, mut l) = setup(1);
        l.sidecar_heard("a", report(IDLE, OK), 0, &t);
        l.sidecar_heard("b", report(IDLE, OK), 0, &t);
        let o = obs(5, 5, 1_000);
        assert!(select_shutdowns(&mut l, &Inputs::new(&s, None, true, &t, 1_000)).is_empty());
        assert!(select_shutdowns(&mut l, &Inputs::new(&s, Some(&o), false, &t, 1_000)).is_empty());
        let late = t.sidecar_ttl_ms + 1;
        let o_late = obs(5, 5, late);
        assert!(
            select_shutdowns(&mut l, &Inputs::new(&s, Some(&o_late), true, &t, late)).is_empty()
        );
    }

    #[test]
    fn expired_hosts_are_told_at_once_and_busy_ones_never() {
        let (t, s, mut l) = setup(5);
        l.sidecar_heard("x", report(BusyStatus::Expired, OK), 0, &t);
        l.sidecar_heard("y", report(BusyStatus::Busy, OK), 0, &t);
        confirm(&mut l);
        // At the floor (available 0 < min): the expired one still goes.
        let sd = select_shutdowns(&mut l, &Inputs::new(&s, Some(&obs(2, 0, 10)), true, &t, 10));
        assert_eq!(sd.len(), 1);
        assert_eq!((sd[0].host.as_str(), sd[0].reason), ("x", Reason::Expired));
        assert!(!l.sidecar_told("y"));
    }

    #[test]
    fn a_lasting_unhealthy_report_is_told_unless_busy() {
        let t = Timing::default();
        let s = Settings::default();
        let bad = HealthStatus::Unhealthy;
        let mut l = Ledger::new();
        l.sidecar_heard("u", report(IDLE, bad), 0, &t);
        l.sidecar_heard("b", report(BusyStatus::Busy, bad), 0, &t);
        l.sidecar_heard("f", report(IDLE, bad), 0, &t);
        l.sidecar_heard("f", report(IDLE, OK), 30_000, &t);
        l.sidecar_heard("f", report(IDLE, bad), 40_000, &t);
        confirm(&mut l);
        let o = obs(3, 0, 10);
        // A short streak is not enough.
        assert!(select_shutdowns(&mut l, &Inputs::new(&s, Some(&o), true, &t, 59_999)).is_empty());
        let sd = select_shutdowns(&mut l, &Inputs::new(&s, Some(&o), true, &t, 60_000));
        let got: Vec<(&str, Reason)> = sd.iter().map(|x| (x.host.as_str(), x.reason)).collect();
        // u: unhealthy for 60 s; b: busy (never); f: its streak restarted at 40 s.
        assert_eq!(got, [("u", Reason::Unhealthy)]);
        assert!(!l.sidecar_told("b") && !l.sidecar_told("f"));
    }

    #[test]
    fn shutdown_report_or_silence_owes_the_delete() {
        let (t, s, mut l) = setup(1);
        l.sidecar_heard("a", report(IDLE, OK), 0, &t);
        l.sidecar_heard("b", report(IDLE, OK), 10, &t);
        l.sidecar_heard("c", report(IDLE, OK), 20, &t);
        confirm(&mut l);
        let o = obs(3, 3, 100);
        let sd = sidecar_tick(&mut l, &Inputs::new(&s, Some(&o), true, &t, 100)).shutdowns;
        assert_eq!(sd.len(), 2);
        assert!(l.deletes_owed().is_empty(), "draining until it confirms");
        // a confirms through /sidecar/shutdown.
        assert_eq!(l.sidecar_shutdown("a", 5_000), Some("a".to_string()));
        assert_eq!(l.deletes_owed(), vec!["a".to_string()]);
        // b keeps polling while its scripts run, then falls silent.
        l.sidecar_heard("b", None, 100_000, &t);
        l.sidecar_heard("c", report(IDLE, OK), 300_000, &t);
        // A leader tick at `now` on Jicofo's reading `o`.
        let tick = |l: &mut Ledger, o: Observation, now| {
            sidecar_tick(l, &Inputs::new(&s, Some(&o), true, &t, now))
        };
        let silence = 100_000 + t.sidecar_ttl_ms;
        let tick1 = tick(&mut l, obs(3, 3, 60_000), silence - 1);
        assert!(tick1.events.is_empty(), "{tick1:?}");
        let tick = tick(&mut l, obs(2, 2, 61_000), silence);
        assert!(
            matches!(&tick.events[..], [SidecarEvent::SilentAfterShutdown { host, .. }] if host == "b")
        );
        assert_eq!(l.deletes_owed().len(), 2);
        // An unknown instance's poll or shutdown changes nothing.
        assert_eq!(l.sidecar_heard("zz", None, 1, &t), None);
        assert_eq!(l.sidecar_shutdown("zz", 1), None);
        assert!(!l.sidecar_told("zz"));
    }

    #[test]
    fn a_shutdown_we_did_not_order_is_recorded_as_expired() {
        let t = Timing::default();
        let mut l = Ledger::new();
        l.sidecar_heard("a", report(BusyStatus::Busy, OK), 0, &t);
        l.sidecar_shutdown("a", 10);
        let i = l.get("a").cloned().unwrap_or_else(|| panic!("entry"));
        assert_eq!(
            (i.state, i.reason),
            (State::Deleting, Some(Reason::Expired))
        );
    }

    #[test]
    fn silent_adopted_hosts_are_forgotten_without_a_delete() {
        let t = Timing::default();
        let s = Settings::default();
        let mut l = Ledger::new();
        l.absorb(&obs(1, 1, 0), &t);
        l.sidecar_heard("jibri-1", report(BusyStatus::Busy, OK), 0, &t);
        l.absorb(&obs(1, 0, t.sidecar_report_max_age_ms()), &t);
        assert_eq!(
            l.offset(),
            0,
            "no rise came: it was the gateway counted outside the ledger"
        );
        let tick = sidecar_tick(&mut l, &Inputs::new(&s, None, true, &t, t.sidecar_ttl_ms));
        assert!(matches!(&tick.events[..], [SidecarEvent::Forgotten { .. }]));
        assert!(l.deletes_owed().is_empty());
        assert_eq!(l.offset(), 1);
    }

    #[test]
    fn unchanged_reports_rewrite_the_evidence_rarely() {
        let t = Timing::default();
        let mut l = Ledger::new();
        l.sidecar_heard("a", report(IDLE, OK), 0, &t);
        let before = l.clone();
        // Re-stamped every third of the age a report may have to be acted on (90 s / 3).
        l.sidecar_heard("a", report(IDLE, OK), 29_000, &t);
        assert_eq!(
            l, before,
            "a repeat within the refresh period changes nothing (no store write)"
        );
        l.sidecar_heard("a", report(IDLE, OK), 30_000, &t);
        assert_eq!(
            l.get("a")
                .and_then(|i| i.sidecar.as_ref().map(|e| e.reported_at)),
            Some(30_000)
        );
        let before = l.clone();
        l.sidecar_heard("a", report(BusyStatus::Busy, OK), 31_000, &t);
        assert_ne!(l, before, "a change is written at once");
    }

    #[test]
    fn only_hosts_the_scaler_may_act_on_are_picked() {
        let (t, s, mut l) = setup(1);
        for h in [
            "unverified",
            "managed",
            "reports-only",
            "outside",
            "mismatch",
        ] {
            l.sidecar_heard(h, report(IDLE, OK), 0, &t);
        }
        l.set_membership("managed", Membership::Managed, "in the hostgroup", None);
        l.set_membership(
            "reports-only",
            Membership::ReportsOnly,
            "no such host",
            None,
        );
        l.set_membership(
            "outside",
            Membership::Outside,
            "hostgroup db",
            Some("10.0.0.9"),
        );
        l.set_membership(
            "mismatch",
            Membership::Mismatch,
            "other address",
            Some("10.0.0.8"),
        );
        let o = obs(10, 10, 100);
        let sd = select_shutdowns(&mut l, &Inputs::new(&s, Some(&o), true, &t, 100));
        let mut hosts: Vec<&str> = sd.iter().map(|x| x.host.as_str()).collect();
        hosts.sort();
        assert_eq!(hosts, ["managed", "reports-only"]);
        // The refused ones lost the evidence their reports gave, and their binding is the
        // lifecycle manager's address.
        assert!(l.get("outside").is_some_and(|i| i.sidecar.is_none()));
        assert_eq!(
            l.get("mismatch").and_then(|i| i.ip.as_deref()),
            Some("10.0.0.8")
        );
        assert!(l.get("managed").is_some_and(Instance::managed));
        assert!(!l.get("reports-only").is_some_and(Instance::managed));
        // Silent past the TTL, every host the scaler may not act on is forgotten, no delete.
        let late = t.sidecar_ttl_ms + 1;
        let tick = sidecar_tick(&mut l, &Inputs::new(&s, None, true, &t, late));
        let mut gone: Vec<&str> = tick
            .events
            .iter()
            .filter_map(|e| match e {
                SidecarEvent::Forgotten { host, .. } => Some(host.as_str()),
                SidecarEvent::SilentAfterShutdown { .. } => None,
            })
            .collect();
        gone.sort();
        assert_eq!(gone, ["mismatch", "outside", "unverified"]);
        assert!(l.deletes_owed().is_empty());
    }

    #[test]
    fn a_busy_report_in_the_same_request_is_never_told_to_shut_down() {
        let (t, s, mut l) = setup(1);
        l.sidecar_heard("a", report(IDLE, OK), 0, &t);
        l.sidecar_heard("b", report(IDLE, OK), 0, &t);
        confirm(&mut l);
        let o = obs(2, 2, 100);
        let sd = select_shutdowns(&mut l, &Inputs::new(&s, Some(&o), true, &t, 100));
        assert_eq!(sd.len(), 1);
        let told = sd[0].host.clone();
        // Its next report says IDLE: told. A call arrived meanwhile: BUSY is never told.
        assert!(l.sidecar_answer(&told, report(IDLE, OK), 200, &t));
        assert!(!l.sidecar_answer(&told, report(BusyStatus::Busy, OK), 300, &t));
        assert!(!l.sidecar_answer(&told, report(BusyStatus::Unknown, OK), 300, &t));
        assert!(l.sidecar_answer(&told, report(BusyStatus::Expired, OK), 300, &t));
        // A poll carries no report: the last one decides while it is recent.
        l.sidecar_heard(&told, report(BusyStatus::Busy, OK), 400, &t);
        assert!(!l.sidecar_answer(&told, None, 500, &t));
        l.sidecar_heard(&told, report(IDLE, OK), 600, &t);
        assert!(l.sidecar_answer(&told, None, 700, &t));
        let stale = 600 + t.sidecar_report_max_age_ms() + 1;
        assert!(!l.sidecar_answer(&told, None, stale, &t));
        // The other host was not picked: never told, whatever it says.
        let other = if told == "a" { "b" } else { "a" };
        assert!(!l.sidecar_answer(other, report(IDLE, OK), 800, &t));
    }

    #[test]
    fn an_adopted_host_joining_jicofo_is_not_credited_to_a_launch() {
        let t = Timing::default();
        let mut l = Ledger::new();
        l.absorb(&obs(2, 2, 0), &t);
        l.record_launch("vsg-new", Origin::Scaler, 1_000);
        // A gateway nobody launched reports before Jicofo counts it.
        l.sidecar_heard("jibri-7", report(IDLE, OK), 2_000, &t);
        let events = l.absorb(&obs(3, 3, 3_000), &t);
        assert!(events.is_empty(), "{events:?}");
        assert!(l.get("jibri-7").is_some_and(|i| i.counted));
        assert_eq!(l.get("vsg-new").map(|i| i.state), Some(State::Requested));
        // Jicofo counted it first (unexplained), then it reports: it takes that gateway.
        let mut l = Ledger::new();
        l.absorb(&obs(2, 2, 0), &t);
        l.record_launch("vsg-new", Origin::Scaler, 1_000);
        l.absorb(&obs(3, 3, 3_000), &t);
        assert_eq!(
            l.get("vsg-new").map(|i| i.state),
            Some(State::Ready),
            "before any report the count cannot know"
        );
        // Counted before its first report: no rise comes; one report age later it takes one
        // of the gateways the ledger could not explain.
        let mut l = Ledger::new();
        l.absorb(&obs(3, 3, 0), &t);
        l.sidecar_heard("jibri-8", report(IDLE, OK), 2_000, &t);
        l.absorb(&obs(3, 3, 60_000), &t);
        assert!(l.get("jibri-8").is_some_and(|i| !i.counted));
        l.absorb(&obs(3, 3, 2_000 + t.sidecar_report_max_age_ms()), &t);
        assert!(l.get("jibri-8").is_some_and(|i| i.counted));
        assert_eq!(l.offset(), 2);
    }

    proptest! {
        /// Whatever the reports, the stats and the settings: a host reported BUSY is never told
        /// to shut down, and idle shutdowns never take Jicofo's available (minus pending
        /// removals) below `min`.
        #[test]
        fn never_a_busy_one_never_below_the_floor(
            min in 1u32..=10,
            hosts in proptest::collection::vec((0u8..4, 0u8..3, 0u64..600_000), 1..40),
            extra_available in 0u32..10,
            rounds in 1usize..4,
        ) {
            let t = Timing::default();
            let s = Settings { min_available: min, ..Settings::default() };
            let mut l = Ledger::new();
            let now = 600_000;
            let mut idle = 0u32;
            for (n, (busy, health, at)) in hosts.iter().enumerate() {
                let busy = [BusyStatus::Idle, BusyStatus::Busy, BusyStatus::Expired, BusyStatus::Unknown][*busy as usize];
                let health = [HealthStatus::Healthy, HealthStatus::Unhealthy, HealthStatus::Unknown][*health as usize];
                if busy == BusyStatus::Idle && health == HealthStatus::Healthy { idle += 1; }
                l.sidecar_heard(&format!("h{n}"), report(busy, health), *at, &t);
            }
            confirm(&mut l);
            let available = idle + extra_available;
            let o = obs(hosts.len() as u32 + extra_available, available, now);
            let mut idle_told = 0i64;
            for _ in 0..rounds {
                for sd in select_shutdowns(&mut l, &Inputs::new(&s, Some(&o), true, &t, now)) {
                    let ev = l.get(&sd.host).and_then(|i| i.sidecar.clone());
                    prop_assert!(ev.as_ref().is_some_and(|e| e.busy != BusyStatus::Busy));
                    if sd.reason == Reason::Idle {
                        prop_assert!(ev.is_some_and(|e| e.spare(now, &t)));
                        idle_told += 1;
                    }
                }
            }
            let pending_expired = l.instances().filter(|i| i.reason == Some(Reason::Expired)).count() as i64;
            prop_assert!(i64::from(available) - idle_told - pending_expired >= i64::from(min) || idle_told == 0);
            // Exactly the surplus (or every spare when fewer) goes.
            let spares = l.instances().filter(|i| i.state == State::Ready && i.sidecar.as_ref().is_some_and(|e| e.spare(now, &t))).count() as i64 + idle_told;
            let budget = (i64::from(available) - pending_expired - i64::from(min)).max(0);
            prop_assert_eq!(idle_told, budget.min(spares));
        }
    }
}
