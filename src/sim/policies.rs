//! The policies compared by `simulate`: ours (the `policy` crate, driven as `serve` drives it),
//! the legacy scaler, and a jitsi-autoscaler-style controller.

use std::collections::{BTreeSet, VecDeque};

use policy::capacity::{CapacityConfig, Demand, DemandSample, Profile, Sizer, WEEK_MS};
use policy::{
    Creates, Event, Ledger, Membership, Millis, Observation, Plan, Reason, RemovalDecision,
    Settings, StepInputs, Timing,
};

use super::world::{
    AgentModel, Answer, Controller, HealthCron, KeepRetry, LifecycleError, Reading, World,
};

/// Options beyond the shared settings.
#[derive(Clone, Debug, Default)]
pub struct PolicyOptions {
    /// Ours in target mode.
    pub target: Option<TargetOptions>,
    /// The jitsi-autoscaler baseline's group settings.
    pub autoscaler: AsParams,
}

/// Ours in target mode: the knobs and the profile learned before time 0.
#[derive(Clone, Debug)]
pub struct TargetOptions {
    /// Target, lead and window knobs.
    pub config: CapacityConfig,
    /// Profile learned from the warm-up days (empty: a fresh install).
    pub profile: Profile,
    /// Local week time of simulated time 0.
    pub start_week_ms: u64,
}

/// The target-mode state of `ours`.
struct TargetMode {
    demand: Demand,
    sizer: Sizer,
    start_week_ms: u64,
    /// First `expired` requests since the last tick (finished calls on single-use gateways).
    completions: u32,
    /// Changes of the effective min (decision lines `serve` would log).
    changes: u64,
    /// Sum and number of the mean leads sized for (the benchmark's bound uses their mean).
    lead_sum_ms: f64,
    lead_n: u64,
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
    /// Target mode: the spare floor sized each tick.
    capacity: Option<TargetMode>,
    /// The previous tick's launch decision (as `serve` keeps it).
    previous: Option<policy::LaunchDecision>,
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
            capacity: None,
            previous: None,
        }
    }

    /// The same in target mode when `opts` asks for it (`--target`).
    pub fn with_target(mut self, opts: &PolicyOptions) -> Self {
        if let Some(t) = &opts.target {
            self.capacity = Some(TargetMode {
                demand: Demand::new(t.config, t.profile.clone()),
                sizer: Sizer::new(),
                start_week_ms: t.start_week_ms,
                completions: 0,
                changes: 0,
                lead_sum_ms: 0.0,
                lead_n: 0,
            });
        }
        self
    }

    /// The spare floor now: the operator's `min`, or in target mode the last effective min.
    fn min_now(&self, w: &World) -> u32 {
        match &self.capacity {
            Some(c) => c.sizer.current().unwrap_or(w.min_setting()),
            None => w.min_setting(),
        }
    }

    /// Target mode: feeds the reading to the estimator and sizes the spare floor (as `serve`'s
    /// `capacity_tick`, once per tick before anything else).
    fn size(&mut self, w: &World, now: Millis, fresh: Option<Reading>) {
        let Some(c) = &mut self.capacity else { return };
        let week = (c.start_week_ms + now) % WEEK_MS;
        if let Some(r) = fresh {
            c.demand.observe(
                now,
                week,
                DemandSample {
                    busy: r.total.saturating_sub(r.available),
                    available: r.available,
                    completions: std::mem::take(&mut c.completions),
                    failures: None,
                    pending: None,
                },
            );
        }
        // Warm pool: size for the lead of the path the next launch takes (as `serve`).
        c.demand
            .set_launch_lead(policy::sizing_lead(&self.ledger, &self.pool));
        let before = c.sizer.current();
        let s = c.sizer.size(
            &mut c.demand,
            now,
            week,
            w.min_setting(),
            None,
            self.settings.max_total,
        );
        if before != Some(s.effective_min) {
            c.changes += 1;
        }
        c.lead_sum_ms += s.mean_lead_ms as f64;
        c.lead_n += 1;
        self.settings.min_available = s.effective_min;
    }

    /// The same, with a warm pool (as `serve` with `[warm_pool]`).
    pub fn with_pool(mut self, pool: policy::WarmPool) -> Self {
        self.pool = pool;
        self
    }
}

impl Ours {
    /// The start of `serve`'s tick at `now`: takes the reading (a failed read keeps the previous
    /// one, which then ages until it is stale) and, with the store up, stores the approvals
    /// queued while it was down. Whether the store is up: as in `serve`, without it nothing is
    /// recorded, so nothing is launched or deleted.
    pub(super) fn observe(&mut self, w: &mut World, now: Millis) -> bool {
        self.settings.min_available = w.min_setting();
        let fresh = w.reading();
        if let Some(r) = fresh {
            self.obs = Some(Observation {
                total: r.total,
                available: r.available,
                taken_at: now,
            });
            self.reading = Some(r);
        }
        self.size(w, now, fresh);
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
    pub(super) fn inputs(&mut self, w: &World, now: Millis) -> (&mut Ledger, policy::Inputs<'_>) {
        let up = w.lifecycle_up();
        let inputs = policy::Inputs::new(&self.settings, self.obs.as_ref(), up, &self.timing, now);
        (&mut self.ledger, inputs)
    }

    /// The leader's tick as `serve` plans it: learn the warm pool's stopped hosts once (as
    /// `serve`'s first reconciliation), then [`policy::step`] on the same inputs `serve` passes
    /// (the settings in force, the reading, the pool, the lifecycle manager's state, creates
    /// never held here), new hosts named `vsg-<counter>`. Feeds the measured boots to target
    /// mode, as `serve` does.
    pub(super) fn plan(&mut self, w: &mut World, now: Millis) -> Plan {
        if self.pool.enabled() && !self.reconciled {
            self.reconciled = true;
            for h in w.stopped_hosts() {
                self.ledger.learn_stopped(&h, now);
            }
        }
        let mut next_id = self.next_id;
        let plan = self.plan_with(
            w.lifecycle_up(),
            now,
            &mut policy::numbered("vsg", &mut next_id),
        );
        self.next_id = next_id;
        if plan.cap.is_some() {
            w.note_capped(self.tick_ms);
        }
        plan
    }

    /// [`Ours::plan`] on the lifecycle manager's state `lifecycle_up`, new hosts named by
    /// `name`: [`policy::step`] on the inputs `serve` passes, then the measured boots fed to
    /// target mode.
    pub fn plan_with(
        &mut self,
        lifecycle_up: bool,
        now: Millis,
        name: &mut dyn FnMut(&Ledger) -> String,
    ) -> Plan {
        let inputs = StepInputs {
            settings: &self.settings,
            obs: self.obs.as_ref(),
            pool: &self.pool,
            lifecycle_up,
            creates: Creates::Allowed,
            previous: self.previous,
            timing: &self.timing,
            now,
        };
        let plan = policy::step(&mut self.ledger, &inputs, name);
        self.previous = Some(plan.launch);
        if let Some(c) = &mut self.capacity {
            for e in &plan.events {
                if let Event::Seen { boot_ms, .. } = e {
                    c.demand.boot(*boot_ms);
                }
            }
        }
        plan
    }

    /// The lifecycle calls owed: the warm pool's starts and stops, creates (new launches and
    /// earlier ones whose create failed: a transient error keeps them `requested` until the
    /// boot timeout), then deletes.
    pub(super) fn carry_out(&mut self, w: &mut World, now: Millis) {
        // The guard's question, as `serve` asks it of adopted hosts: the simulated lifecycle
        // manager has every gateway of the fleet (it is one hostgroup), and nothing else.
        for host in self.ledger.unverified(policy::VERIFY_PER_TICK) {
            let (m, note) = if w.exists(&host) {
                (
                    Membership::Managed,
                    "the simulated lifecycle manager has it",
                )
            } else {
                (
                    Membership::ReportsOnly,
                    "the simulated lifecycle manager has no such host",
                )
            };
            self.ledger.set_membership(&host, m, note, None);
        }
        // The warm pool's power calls first (none without a pool).
        for host in self.ledger.starts_due(now) {
            match w.power_on(&host) {
                Ok(()) => self.ledger.start_confirmed(&host, now),
                Err(e) => {
                    let definitive = e == LifecycleError::Refused;
                    self.ledger
                        .start_error(&host, now, &e.to_string(), definitive)
                }
            }
        }
        for host in self.ledger.stops_due(now) {
            match w.power_off(&host) {
                Ok(()) => self.ledger.stop_done(&host, now),
                Err(e) => {
                    let definitive = e == LifecycleError::Refused;
                    self.ledger
                        .stop_error(&host, now, &e.to_string(), definitive)
                }
            }
        }
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

    /// observe -> [`policy::step`] (launches recorded) -> the calls it owes.
    fn tick(&mut self, w: &mut World) {
        let now = w.now();
        if !self.observe(w, now) {
            return;
        }
        self.plan(w, now);
        self.carry_out(w, now);
    }

    fn uses_pool(&self) -> bool {
        self.pool.enabled()
    }

    fn mean_lead_ms(&self) -> Option<f64> {
        let c = self.capacity.as_ref()?;
        (c.lead_n > 0).then(|| c.lead_sum_ms / c.lead_n as f64)
    }

    /// As `serve` restarted: the ledger and the learned profile come back from the store; the
    /// reading, the short window, the measured boots and the last launch decision are gone.
    fn restart(&mut self, _now: u64) {
        self.obs = None;
        self.reading = None;
        self.previous = None;
        if let Some(c) = &mut self.capacity {
            c.demand = Demand::new(*c.demand.config(), c.demand.profile().clone());
            c.sizer = Sizer::new();
            c.completions = 0;
        }
    }

    /// The same ledger call as `serve`'s `POST {prefix}/hello`.
    fn hello(&mut self, w: &mut World, host: &str) {
        self.ledger.hello(host, w.now());
    }

    /// The agent confirms the drain once Jibri has exited; the delete follows at the next tick.
    fn drained(&mut self, w: &mut World, host: &str) {
        self.ledger.drained(host, w.now());
    }

    fn ask(&mut self, w: &mut World, host: &str, reason: Reason) -> Answer {
        let now = w.now();
        self.settings.min_available = self.min_now(w);
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
            let pool = self.pool;
            let (ledger, inputs) = self.inputs(w, now);
            let mode = policy::DrainMode::Confirm;
            let (d, _) =
                policy::remove_request_with_pool(ledger, &pool, &inputs, host, reason, mode);
            return Answer {
                accept: d.accepted(),
                reading: self.reading,
            };
        }
        // The same call as `serve` for our agent's request (`"drain": "confirm"`): a repeat is
        // answered `accepted` again, spending nothing.
        let (ledger, inputs) = self.inputs(w, now);
        let d =
            policy::remove_request_as(ledger, &inputs, host, reason, policy::DrainMode::Confirm);
        if let (Some(c), RemovalDecision::Accept { repeat: false, .. }) = (&mut self.capacity, &d)
            && reason == Reason::Expired
        {
            c.completions += 1;
        }
        Answer {
            accept: d.accepted(),
            reading: self.reading,
        }
    }
}

const LEGACY_PAUSE_MS: u64 = 60_000;
const LEGACY_ADD_SLEEP_MS: u64 = 2_000;
const LEGACY_SCRIPT_POLL_MS: u64 = 60_000;

/// The existing scaler: its scale-up run starts 60 s after the previous run ended, launches
/// `min - available` (no in-flight counting) one at a time with 2 s sleeps, checking `max`
/// before each add against Jicofo's total (booting gateways are not in it); idle removals are
/// accepted whenever `available > min` at the time of the request, and accepted when Jicofo
/// cannot be read. Lifecycle calls are fire-and-forget. Its gateway script polls every 60 s
/// (an `expired` goes out at the next poll) and, after `keep`, asks again only after its idle
/// time.
pub struct Legacy {
    settings: Settings,
    next_id: u64,
    /// Adds left in the current scale-up run.
    adds_left: u32,
}

impl Legacy {
    /// The legacy scaler with these settings.
    pub fn new(settings: Settings) -> Self {
        Legacy {
            settings,
            next_id: 0,
            adds_left: 0,
        }
    }
}

impl Controller for Legacy {
    fn period_ms(&self) -> u64 {
        if self.adds_left > 0 {
            LEGACY_ADD_SLEEP_MS
        } else {
            LEGACY_PAUSE_MS
        }
    }

    fn agent(&self) -> AgentModel {
        AgentModel {
            asks: true,
            keep_retry: KeepRetry::IdleTime,
            expired_poll_ms: LEGACY_SCRIPT_POLL_MS,
            health_cron: None,
        }
    }

    fn tick(&mut self, w: &mut World) {
        self.settings.min_available = w.min_setting();
        let Some(r) = w.reading() else {
            self.adds_left = 0;
            return;
        };
        let s = &self.settings;
        if self.adds_left == 0 {
            self.adds_left = s.min_available.saturating_sub(r.available).min(s.bulk_max);
            if self.adds_left == 0 {
                return;
            }
        }
        // One add per run step, `max` checked against Jicofo's total of this moment.
        self.adds_left -= 1;
        if r.total >= s.max_total {
            self.adds_left = 0;
            return;
        }
        let host = format!("legacy-{:06}", self.next_id);
        self.next_id += 1;
        let _ = w.create(&host); // fire-and-forget: a failure is simply lost
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

/// Job interval of jitsi-autoscaler (autoscale and launch jobs; A src/config.ts
/// `GROUP_JOBS_CREATION_INTERVAL_SEC`).
const AS_JOB_MS: u64 = 30_000;
/// Metric period: the sidecar reports about every 60 s.
const AS_PERIOD_MS: u64 = 60_000;
const AS_UP_PERIODS: usize = 2;
const AS_DOWN_PERIODS: usize = 4;
/// Its sanity loop refreshes the count of running but untracked instances this often (A
/// src/config.ts `SANITY_JOBS_CREATION_INTERVAL_SEC`).
const AS_SANITY_MS: u64 = 240_000;

/// A jitsi-autoscaler group's settings as the baseline uses them, and the deployment around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsParams {
    /// scaleUpQuantity = scaleDownQuantity.
    pub quantity: u32,
    /// gracePeriodTTLSec, in ms.
    pub grace_ms: u64,
    /// scaleDownThreshold minus scaleUpThreshold (the up threshold is the spare count `min`).
    pub down_gap: u32,
    /// The Jibri health cron's period (0: none, a bare install where nothing recycles an
    /// EXPIRED Jibri).
    pub cron_ms: u64,
    /// Mean time from the cron's reboot to Jibri joined again.
    pub reboot_ms: u64,
    /// `IDLE_TTL_SEC`: a state without a newer sidecar report is dropped after this long.
    pub ttl_ms: u64,
}

impl Default for AsParams {
    fn default() -> Self {
        AsParams {
            quantity: 2,
            grace_ms: 120_000,
            down_gap: 3,
            cron_ms: 60_000,
            reboot_ms: 180_000,
            ttl_ms: 300_000,
        }
    }
}

/// jitsi-autoscaler as Jitsi deploys it (docs/simulation.md cites the source of each rule):
/// jobs every 30 s; the group value is the available count averaged per 60 s period; no
/// decision while the tracked count differs from the desired count, nor with nothing tracked;
/// it raises the desired count by `quantity` when the value was below the scale-up threshold
/// (our `min`) for 2 periods (or the count is below `minDesired`), lowers it when above the
/// scale-down threshold (`min + down_gap`) for 4 periods, then skips decisions for the grace
/// period. The launcher brings the count (tracked plus running-but-untracked) up to the desired
/// count, or flags the surplus for shutdown: booting, then idle, then expired, busy last. Its
/// sidecar never asks to be removed; on Jitsi's hosts a health cron reboots an EXPIRED Jibri,
/// which comes back idle and, back within the tracker's TTL, was never untracked.
pub struct AutoscalerStyle {
    settings: Settings,
    params: AsParams,
    desired: u32,
    /// Mean available per completed period, newest last.
    periods: VecDeque<f64>,
    period_sum: f64,
    period_n: u32,
    period_start: u64,
    grace_until: u64,
    shut: BTreeSet<String>,
    next_id: u64,
    /// Running instances without a valid state, as the sanity loop last counted them.
    untracked: u32,
    next_sanity: u64,
}

impl AutoscalerStyle {
    /// Starts with `desired = min` (the initial pool).
    pub fn new(settings: Settings, params: AsParams) -> Self {
        AutoscalerStyle {
            settings,
            params,
            desired: settings.min_available,
            periods: VecDeque::new(),
            period_sum: 0.0,
            period_n: 0,
            period_start: 0,
            grace_until: 0,
            shut: BTreeSet::new(),
            next_id: 0,
            untracked: 0,
            next_sanity: 0,
        }
    }

    fn all_recent(&self, n: usize, pred: impl Fn(f64) -> bool) -> bool {
        self.periods.len() >= n && self.periods.iter().rev().take(n).all(|&v| pred(v))
    }

    /// The desired count now (for tests).
    pub fn desired(&self) -> u32 {
        self.desired
    }
}

impl Controller for AutoscalerStyle {
    fn period_ms(&self) -> u64 {
        AS_JOB_MS
    }

    fn agent(&self) -> AgentModel {
        AgentModel {
            asks: false,
            keep_retry: KeepRetry::AskEvery,
            expired_poll_ms: 0,
            health_cron: (self.params.cron_ms > 0).then_some(HealthCron {
                period_ms: self.params.cron_ms,
                reboot_ms: self.params.reboot_ms,
            }),
        }
    }

    fn tick(&mut self, w: &mut World) {
        let now = w.now();
        self.settings.min_available = w.min_setting();
        // The spare count is the scale-up threshold and minDesired alike.
        let (min, max) = (self.settings.min_available, self.settings.max_total);
        let reading = w.reading();
        if let Some(r) = reading {
            self.period_sum += f64::from(r.available);
            self.period_n += 1;
        }
        if now >= self.period_start + AS_PERIOD_MS {
            if self.period_n > 0 {
                self.periods
                    .push_back(self.period_sum / f64::from(self.period_n));
            }
            while self.periods.len() > AS_DOWN_PERIODS {
                self.periods.pop_front();
            }
            self.period_sum = 0.0;
            self.period_n = 0;
            self.period_start = now;
        }
        let (count, untracked) = w.autoscaler_inventory(self.params.ttl_ms);
        if now >= self.next_sanity {
            self.untracked = untracked;
            self.next_sanity = now + AS_SANITY_MS;
        }
        let up_below = f64::from(min);
        let down_above = f64::from(min + self.params.down_gap);
        // No decision while the launcher has not reached the desired count, nor with nothing
        // tracked.
        if reading.is_some() && now >= self.grace_until && count > 0 && count == self.desired {
            let up = self.all_recent(AS_UP_PERIODS, |v| v < up_below && count < max)
                || (self.periods.len() >= AS_UP_PERIODS && count < min);
            let down = count > min && self.all_recent(AS_DOWN_PERIODS, |v| v > down_above);
            if up {
                self.desired = (self.desired + self.params.quantity).min(max);
                self.grace_until = now + self.params.grace_ms;
            } else if down {
                self.desired = self.desired.saturating_sub(self.params.quantity).max(min);
                self.grace_until = now + self.params.grace_ms;
            }
        }
        // The launcher.
        let effective = count + self.untracked;
        if effective < self.desired && effective < max {
            for _ in effective..self.desired.min(max) {
                let host = format!("as-{:06}", self.next_id);
                self.next_id += 1;
                let _ = w.create(&host);
            }
        } else if count > self.desired && count > min {
            let surplus = (count - self.desired.max(min)) as usize;
            let picked = w.scale_down_candidates(self.params.ttl_ms);
            for (host, booting) in picked.into_iter().take(surplus) {
                if booting {
                    let _ = w.delete(&host);
                } else if w.shut_down(&host, reading) {
                    self.shut.insert(host);
                }
            }
        }
        // Shut-down hosts are deleted once their Jibri is done (a busy one after its call, a
        // rebooting one once back); deletes are retried until they succeed.
        let shut: Vec<String> = self.shut.iter().cloned().collect();
        for host in shut {
            if !w.exists(&host) || (w.deletable(&host) && w.delete(&host).is_ok()) {
                self.shut.remove(&host);
            }
        }
    }

    fn ask(&mut self, _w: &mut World, _host: &str, _reason: Reason) -> Answer {
        // Its sidecar never asks (see `agent`).
        Answer {
            accept: false,
            reading: None,
        }
    }
}

#[cfg(test)]
mod tests {
    //! `serve`'s controller and `simulate` plan a tick with the one pure step: on the same
    //! ledger, settings, reading and time they make the same plan and the same ledger.
    use super::*;
    use crate::jicofo::Merged;
    use crate::store::Snapshot;
    use crate::tick::TickInputs;
    use policy::{BusyStatus, HealthStatus, Origin, SidecarReport, WarmPool};

    /// A ledger mid-day: a launch in flight, two ready hosts (one reporting idle through its
    /// sidecar), an approved removal, a stopped host in the warm pool.
    fn busy_ledger(t: &Timing) -> Ledger {
        let mut l = Ledger::new();
        l.absorb(
            &Observation {
                total: 2,
                available: 1,
                taken_at: 0,
            },
            t,
        );
        l.record_launch("vsg-a", Origin::Scaler, 1_000);
        l.launch_confirmed("vsg-a", 2_000);
        l.learn_stopped("vsg-pool1", 3_000);
        let idle = SidecarReport {
            busy: BusyStatus::Idle,
            health: HealthStatus::Healthy,
            shutting_down: false,
        };
        l.sidecar_heard("gw-side", Some(idle), 4_000, t);
        l.set_membership(
            "gw-side",
            policy::Membership::Managed,
            "in the hostgroup",
            None,
        );
        l.approve("gw-old", Reason::Idle, 5_000, t);
        l
    }

    #[tokio::test]
    async fn serve_and_simulate_make_the_same_plan() {
        let dir = tempfile::tempdir().expect("dir");
        let toml = format!(
            "data_dir = {:?}\n[jicofo]\n[[jicofo.shards]]\nname = \"s1\"\nurl = \"http://127.0.0.1:9/stats\"\n\
             [capacity]\nmode = \"fixed\"\n[warm_pool]\nsize = 2\n[audit]\nenabled = false\n",
            dir.path().display().to_string()
        );
        let cfg =
            crate::config::Config::from_toml(&toml, "test", &Default::default()).expect("config");
        let store = crate::store::Store::open(&cfg, "test").expect("store");
        let lifecycle = crate::lifecycle::Lifecycle::from_config(&cfg.lifecycle).expect("lc");
        let jicofo = crate::jicofo::JicofoClient::new(&cfg.jicofo).expect("jicofo");
        let svc = crate::service::Service::start(cfg, store, lifecycle, jicofo)
            .await
            .expect("start");
        let timing = *svc.timing();
        let pool: WarmPool = svc.cfg.warm_pool.to_policy();
        let settings = Settings {
            min_available: 5,
            ..Settings::default()
        };
        let mut ours = Ours::new(settings, timing, 15_000).with_pool(pool);
        ours.ledger = busy_ledger(&timing);
        let mut snap = Snapshot::new(settings);
        snap.ledger = busy_ledger(&timing);
        let mut previous = None;
        // Three ticks: a reading that attributes the launch, one that misses, one at the boot
        // timeout.
        for (now, reading) in [
            (10_000, Some((3, 2))),
            (25_000, None),
            (timing.boot_timeout_ms + 30_000, Some((3, 3))),
        ] {
            let obs = reading.map(|(total, available)| Observation {
                total,
                available,
                taken_at: now,
            });
            ours.obs = obs.or(ours.obs);
            let merged = Merged {
                observation: ours.obs,
                fresh: vec!["s1".into()],
                stale: Vec::new(),
                disagreement: false,
                sip: Default::default(),
            };
            let t = TickInputs {
                now,
                profile: None,
                lifecycle_up: true,
                hold: None,
                previous,
                pool,
            };
            let served =
                svc.plan_named(&mut snap, &merged, &t, &mut policy::numbered("vsg", &mut 1));
            let simulated = ours.plan_with(true, now, &mut policy::numbered("vsg", &mut 1));
            assert_eq!(served, simulated, "tick at {now}");
            assert_eq!(snap.ledger, ours.ledger, "tick at {now}");
            if now == 10_000 {
                // Not a trivial plan: a start from the pool, creates, a delete (and no refill
                // beside the launch).
                assert_eq!(served.resumed, ["vsg-pool1"]);
                assert_eq!(served.owed.deletes, ["gw-old"]);
                assert!(served.launch.launch > 1, "{:?}", served.launch);
                assert!(served.refills.is_empty());
            }
            previous = Some(served.launch);
        }
    }
}
