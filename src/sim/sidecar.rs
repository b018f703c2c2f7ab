//! A gateway population on jitsi-autoscaler's sidecar, scaled by our policy (`--policies
//! sidecar`): the gateways never ask to be removed; they report busy/idle/expired, and the
//! scaler tells surplus spares to shut down as soon as they are not needed
//! ([`policy::step`], the function `serve` runs), instead of waiting for each gateway's
//! idle timer as the remove-me agent does.

use policy::{HealthStatus, Reason, Settings, SidecarReport, State, Timing};

use super::policies::Ours;
use super::world::{Answer, Controller, World};

/// Our policy with sidecar gateways: [`Ours`]' tick with the sidecars' reports before
/// [`policy::step`] (whose sidecar orders come after the launch rule), as the leader's tick in
/// `serve`.
pub struct SidecarFleet {
    ours: Ours,
}

impl SidecarFleet {
    /// A fresh service: empty ledger, no reading yet.
    pub fn new(settings: Settings, timing: Timing, tick_ms: u64) -> Self {
        SidecarFleet {
            ours: Ours::new(settings, timing, tick_ms),
        }
    }
}

impl Controller for SidecarFleet {
    fn period_ms(&self) -> u64 {
        self.ours.period_ms()
    }

    /// reports -> [`policy::step`] (launches, then shutdown orders) -> shutdowns -> the calls
    /// it owes.
    fn tick(&mut self, w: &mut World) {
        let now = w.now();
        // As `serve`: without the store nothing is recorded (reports included), so nothing is
        // launched, ordered or deleted; the sidecars' polls are answered from the last ledger.
        // (Nothing is ever queued: sidecar gateways never ask to be removed.)
        if !self.ours.observe(w, now) {
            return;
        }
        let o = &mut self.ours;
        // Each sidecar's report (status/stats, every minute and on each change: taken as
        // current at the tick), and the /sidecar/shutdown of those whose Jibri has exited.
        for (host, busy, running) in w.sidecar_view() {
            if running {
                let report = SidecarReport {
                    busy,
                    health: HealthStatus::Healthy,
                    shutting_down: o.ledger.sidecar_told(&host),
                };
                o.ledger.sidecar_heard(&host, Some(report), now, &o.timing);
            } else if o
                .ledger
                .get(&host)
                .is_some_and(|i| i.state == State::Draining)
            {
                o.ledger.sidecar_shutdown(&host, now);
            }
        }
        let plan = o.plan(w, now);
        for s in plan.sidecar.shutdowns {
            // The answer to its next poll; the gateway drains and exits.
            w.shut_down(&s.host, o.reading);
        }
        o.carry_out(w, now);
    }

    fn restart(&mut self, now: u64) {
        self.ours.restart(now);
    }

    /// Sidecar gateways never ask to be removed: whatever the world's agent timer says, keep.
    fn ask(&mut self, _w: &mut World, _host: &str, _reason: Reason) -> Answer {
        Answer {
            accept: false,
            reading: self.ours.reading,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::trace::{Call, Trace};
    use crate::sim::world::WorldConfig;

    fn cfg() -> WorldConfig {
        WorldConfig {
            boot_ms: 60_000,
            boot_cv: 0.0,
            reuse: true,
            idle_time_ms: 600_000,
            ask_every_ms: 60_000,
            drain_ms: 10_000,
            stats_delay_ms: 0,
            lifecycle_fail: 0.0,
            power_refuse: 0.0,
            lifecycle_down: Vec::new(),
            jicofo_down: Vec::new(),
            store_down: Vec::new(),
            initial: 2,
            min_by_hour: [2; 24],
            max: 80,
            sample_ms: 60_000,
            pool: 0,
            resume_ms: 0,
            restarts: Vec::new(),
        }
    }

    /// A burst of 6 calls takes both spares and makes the scaler launch 2 more (the floor);
    /// once the calls end, the sidecar fleet releases the surplus at once, the agent fleet
    /// after its 10-minute idle timer.
    #[test]
    fn surplus_goes_sooner_than_with_the_agent_and_the_floor_holds() {
        let calls: Vec<Call> = (0..6)
            .map(|i| Call {
                arrival_ms: 600_000 + i * 1_000,
                duration_ms: 1_200_000,
            })
            .collect();
        let trace = Trace {
            calls,
            horizon_ms: 4 * 3_600_000,
        };
        let s = Settings::default();
        let t = Timing::default();
        let mut sidecar = SidecarFleet::new(s, t, 15_000);
        let a = World::run(&cfg(), &trace, &mut sidecar, 7);
        let mut ours = crate::sim::policies::Ours::new(s, t, 15_000);
        let b = World::run(&cfg(), &trace, &mut ours, 7);
        let hours = |t: &crate::sim::world::Tally| t.gw_ms.iter().sum::<f64>() / 3.6e6;
        assert_eq!(a.floor_breaks, 0);
        assert_eq!(a.cut, 0);
        assert_eq!((a.launches, b.launches), (b.launches, 2));
        assert_eq!(a.removals_idle, b.removals_idle, "the same surplus goes");
        assert!(a.removals_idle >= 2, "{}", a.removals_idle);
        assert!(
            hours(&a) < hours(&b),
            "sidecar {} vs agent {}",
            hours(&a),
            hours(&b)
        );
    }
}
