//! The policies compared by `simulate`: ours (the `policy` crate, driven as `serve` drives it),
//! the legacy scaler, and a jitsi-autoscaler-style controller.

use std::collections::{BTreeSet, VecDeque};

use policy::{Ledger, Millis, Observation, Origin, Reason, Settings, Timing};

use super::world::{Answer, Controller, Reading, World};

/// Which policy to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum PolicyKind {
    /// The `policy` crate, as `serve` runs it.
    Ours,
    /// The existing scaler and its known flaws.
    Legacy,
    /// jitsi-autoscaler's threshold rule with periods and a cooldown.
    Autoscaler,
    /// Ours, with gateways on jitsi-autoscaler's sidecar: the scaler picks which spares go.
    Sidecar,
}

impl PolicyKind {
    /// The name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Ours => "ours",
            PolicyKind::Legacy => "legacy",
            PolicyKind::Autoscaler => "autoscaler",
            PolicyKind::Sidecar => "sidecar",
        }
    }

    /// Builds the controller.
    pub fn controller(
        self,
        settings: Settings,
        timing: Timing,
        tick_ms: u64,
    ) -> Box<dyn Controller> {
        match self {
            PolicyKind::Ours => Box::new(Ours::new(settings, timing, tick_ms)),
            PolicyKind::Legacy => Box::new(Legacy::new(settings)),
            PolicyKind::Autoscaler => Box::new(AutoscalerStyle::new(settings)),
            PolicyKind::Sidecar => {
                Box::new(super::sidecar::SidecarFleet::new(settings, timing, tick_ms))
            }
        }
    }
}

/// Our policy: the very functions `serve` calls, in the order it calls them.
pub struct Ours {
    pub(super) ledger: Ledger,
    pub(super) settings: Settings,
    pub(super) timing: Timing,
    tick_ms: u64,
    pub(super) obs: Option<Observation>,
    pub(super) reading: Option<Reading>,
    next_id: u64,
    /// Expired/unhealthy approvals accepted while the store was down, stored when it is back.
    queued: Vec<(String, Reason)>,
    /// The warm pool (size 0: none), and whether reconciliation has run.
    pool: policy::WarmPool,
    reconciled: bool,
}

impl Ours {
    /// A fresh service: empty ledger, no reading yet.
    pub fn new(settings: Settings, timing: Timing, tick_ms: u64) -> Self {
        Ours {
            ledger: Ledger::new(),
            settings,
            timing,
            tick_ms,
            obs: None,
            reading: None,
            next_id: 0,
            queued: Vec::new(),
            pool: policy::WarmPool::default(),
            reconciled: false,
        }
    }

    /// The same, with a warm pool (as `serve` with `[warm_pool]`).
    pub fn with_pool(mut self, pool: policy::WarmPool) -> Self {
        self.pool = pool;
        self
    }

    /// The warm pool's tick, as `serve` runs it (src/warm_pool.rs): reconcile once (learn the
    /// stopped hosts), tick, record starts/creates/refills, then the owed calls.
    fn tick_pool(&mut self, w: &mut World) {
        let now = w.now();
        if !self.reconciled {
            self.reconciled = true;
            for h in w.stopped_hosts() {
                self.ledger.learn_stopped(&h, now);
            }
        }
        let t = policy::tick_with_pool(
            &mut self.ledger,
            &self.settings,
            &self.pool,
            self.obs.as_ref(),
            &self.timing,
            now,
        );
        for n in 0..t.create + t.refill {
            let host = format!("vsg-{:06}", self.next_id);
            self.next_id += 1;
            if n < t.create {
                self.ledger.record_launch(&host, Origin::Scaler, now);
            } else {
                self.ledger.record_refill(&host, now);
            }
        }
        for host in self.ledger.starts_owed() {
            match w.power_on(&host) {
                Ok(()) => self.ledger.start_confirmed(&host, now),
                Err(e) => self.ledger.start_error(&host, now, &e.to_string(), false),
            }
        }
        for host in self.ledger.stops_owed() {
            match w.power_off(&host) {
                Ok(()) => self.ledger.stop_done(&host, now),
                Err(e) => self.ledger.stop_error(&host, now, &e.to_string(), false),
            }
        }
        self.carry_out(w, now);
    }
}

impl Ours {
    /// The start of `serve`'s tick at `now`: takes the reading (a failed read keeps the previous
    /// one, which then ages until it is stale) and, with the store up, stores the approvals
    /// queued while it was down. Whether the store is up: as in `serve`, without it nothing is
    /// recorded, so nothing is launched or deleted.
    pub(super) fn observe(&mut self, w: &mut World, now: Millis) -> bool {
        self.settings.min_available = w.min_setting();
        if let Some(r) = w.reading() {
            self.obs = Some(Observation {
                total: r.total,
                available: r.available,
                taken_at: now,
            });
            self.reading = Some(r);
        }
        if w.store_health() != policy::StoreHealth::Ok {
            return false;
        }
        for (host, reason) in std::mem::take(&mut self.queued) {
            self.ledger.approve(&host, reason, now, &self.timing);
        }
        true
    }

    /// What the policy's removal and sidecar functions read, as `serve` passes them: the ledger
    /// (to change), the settings, the reading, whether the lifecycle manager is up, the timing.
    pub(super) fn inputs(
        &mut self,
        w: &World,
    ) -> (&mut Ledger, &Settings, Option<&Observation>, bool, &Timing) {
        let up = w.lifecycle_up();
        (
            &mut self.ledger,
            &self.settings,
            self.obs.as_ref(),
            up,
            &self.timing,
        )
    }

    /// `policy::tick`, then the record of each launch it decided.
    pub(super) fn launch(&mut self, now: Millis) {
        let t = policy::tick(
            &mut self.ledger,
            &self.settings,
            self.obs.as_ref(),
            &self.timing,
            now,
        );
        for _ in 0..t.launch.launch {
            let host = format!("vsg-{:06}", self.next_id);
            self.next_id += 1;
            self.ledger.record_launch(&host, Origin::Scaler, now);
        }
    }

    /// The lifecycle calls owed: creates (new launches and earlier ones whose create failed: a
    /// transient error keeps them `requested` until the boot timeout), then deletes.
    pub(super) fn carry_out(&mut self, w: &mut World, now: Millis) {
        for host in self.ledger.creates_owed() {
            match w.create(&host) {
                Ok(()) => self.ledger.launch_confirmed(&host, now),
                Err(e) => self.ledger.launch_error(&host, now, &e.to_string(), false),
            }
        }
        for host in self.ledger.deletes_owed() {
            match w.delete(&host) {
                Ok(()) => self.ledger.delete_done(&host, now),
                Err(e) => self.ledger.delete_error(&host, &e.to_string()),
            }
        }
    }
}

impl Controller for Ours {
    fn period_ms(&self) -> u64 {
        self.tick_ms
    }

    /// observe -> `policy::tick` -> record launches -> creates owed -> deletes owed.
    fn tick(&mut self, w: &mut World) {
        let now = w.now();
        if !self.observe(w, now) {
            return;
        }
        if self.pool.enabled() {
            self.tick_pool(w);
        } else {
            self.launch(now);
            self.carry_out(w, now);
        }
    }

    fn uses_pool(&self) -> bool {
        self.pool.enabled()
    }

    /// The same ledger call as `serve`'s `POST {prefix}/hello`.
    fn hello(&mut self, w: &mut World, host: &str) {
        self.ledger.hello(host, w.now());
    }

    fn ask(&mut self, w: &mut World, host: &str, reason: Reason) -> Answer {
        let now = w.now();
        self.settings.min_available = w.min_setting();
        // The same store-down rule as `serve`.
        if let Some(d) = policy::decide_removal_without_store(w.store_health(), reason) {
            if d.accepted() {
                self.queued.push((host.to_string(), reason));
            }
            return Answer {
                accept: d.accepted(),
                reading: self.reading,
            };
        }
        if self.pool.enabled() {
            let (d, _) = policy::remove_request_with_pool(
                &mut self.ledger,
                &self.settings,
                &self.pool,
                self.obs.as_ref(),
                w.lifecycle_up(),
                &self.timing,
                now,
                host,
                reason,
                policy::DrainMode::default_for(&self.timing),
            );
            return Answer {
                accept: d.accepted(),
                reading: self.reading,
            };
        }
        // The same call as `serve`: a repeat is answered `accepted` again, spending nothing.
        let (ledger, settings, obs, up, timing) = self.inputs(w);
        let mode = policy::DrainMode::default_for(timing);
        let d =
            policy::remove_request_as(ledger, settings, obs, up, timing, now, host, reason, mode);
        Answer {
            accept: d.accepted(),
            reading: self.reading,
        }
    }
}

const LEGACY_POLL_MS: u64 = 60_000;

/// The existing scaler: a 60 s poll launching `min - available` (no in-flight counting), `max`
/// checked against Jicofo's total (booting gateways not in it), idle removals accepted whenever
/// `available > min` at the time of the request, and accepted when Jicofo cannot be read.
/// Lifecycle calls are fire-and-forget.
pub struct Legacy {
    settings: Settings,
    next_id: u64,
}

impl Legacy {
    /// The legacy scaler with these settings.
    pub fn new(settings: Settings) -> Self {
        Legacy {
            settings,
            next_id: 0,
        }
    }
}

impl Controller for Legacy {
    fn period_ms(&self) -> u64 {
        LEGACY_POLL_MS
    }

    fn tick(&mut self, w: &mut World) {
        self.settings.min_available = w.min_setting();
        let Some(r) = w.reading() else {
            return;
        };
        let s = &self.settings;
        let deficit = s.min_available.saturating_sub(r.available);
        let n = deficit
            .min(s.bulk_max)
            .min(s.max_total.saturating_sub(r.total));
        for _ in 0..n {
            let host = format!("legacy-{:06}", self.next_id);
            self.next_id += 1;
            let _ = w.create(&host); // fire-and-forget: a failure is simply lost
        }
    }

    fn ask(&mut self, w: &mut World, host: &str, reason: Reason) -> Answer {
        self.settings.min_available = w.min_setting();
        let reading = w.reading();
        let accept = reason != Reason::Idle
            || reading.is_none_or(|r| r.available > self.settings.min_available);
        if accept {
            let _ = w.delete(host);
        }
        Answer { accept, reading }
    }
}

const AS_PERIOD_MS: u64 = 60_000;
const AS_UP_PERIODS: usize = 2;
const AS_DOWN_PERIODS: usize = 4;
const AS_UP_BELOW: u32 = 1;
const AS_DOWN_ABOVE: u32 = 2;
const AS_GRACE_MS: u64 = 480_000;

/// A jitsi-autoscaler-style controller: a desired count moved by one when `available` was below
/// 1 for 2 periods of 60 s (up) or above 2 for 4 periods (down), then a 480 s grace period; a
/// launcher brings the instance count to the desired count (launching, or shutting down idle
/// gateways). Its `min`/`max` bound the instance count. Gateways' idle requests are answered
/// `keep` (it picks what to remove itself); expired ones are removed.
pub struct AutoscalerStyle {
    settings: Settings,
    desired: u32,
    samples: VecDeque<u32>,
    grace_until: u64,
    shut: BTreeSet<String>,
    next_id: u64,
}

impl AutoscalerStyle {
    /// Starts with `desired = min` (the initial pool).
    pub fn new(settings: Settings) -> Self {
        AutoscalerStyle {
            settings,
            desired: settings.min_available,
            samples: VecDeque::new(),
            grace_until: 0,
            shut: BTreeSet::new(),
            next_id: 0,
        }
    }

    fn all_recent(&self, n: usize, pred: impl Fn(u32) -> bool) -> bool {
        self.samples.len() >= n && self.samples.iter().rev().take(n).all(|&v| pred(v))
    }
}

impl Controller for AutoscalerStyle {
    fn period_ms(&self) -> u64 {
        AS_PERIOD_MS
    }

    fn tick(&mut self, w: &mut World) {
        let now = w.now();
        self.settings.min_available = w.min_setting();
        let (min, max) = (self.settings.min_available, self.settings.max_total);
        let reading = w.reading();
        if let Some(r) = reading {
            self.samples.push_back(r.available);
            while self.samples.len() > AS_DOWN_PERIODS {
                self.samples.pop_front();
            }
        }
        let c = w.census();
        let count = c.booting + c.idle + c.busy;
        if reading.is_some() && now >= self.grace_until && count == self.desired {
            let up =
                count < min || self.all_recent(AS_UP_PERIODS, |v| v < AS_UP_BELOW && count < max);
            let down = self.all_recent(AS_DOWN_PERIODS, |v| v > AS_DOWN_ABOVE && count > min);
            if up {
                self.desired = (self.desired + 1).min(max);
                self.grace_until = now + AS_GRACE_MS;
            } else if down {
                self.desired = self.desired.saturating_sub(1).max(min);
                self.grace_until = now + AS_GRACE_MS;
            }
        }
        // The launcher.
        if count < self.desired {
            for _ in count..self.desired {
                let host = format!("as-{:06}", self.next_id);
                self.next_id += 1;
                let _ = w.create(&host);
            }
        } else if count > self.desired {
            let surplus = (count - self.desired) as usize;
            for host in w.idle_hosts().into_iter().take(surplus) {
                if w.shut_down(&host, reading) {
                    self.shut.insert(host);
                }
            }
        }
        // Deletes of shut-down hosts, retried until they succeed.
        let shut: Vec<String> = self.shut.iter().cloned().collect();
        for host in shut {
            if !w.exists(&host) || w.delete(&host).is_ok() {
                self.shut.remove(&host);
            }
        }
    }

    fn ask(&mut self, w: &mut World, host: &str, reason: Reason) -> Answer {
        let accept = reason != Reason::Idle;
        if accept {
            let _ = w.delete(host);
        }
        Answer {
            accept,
            reading: None,
        }
    }
}
