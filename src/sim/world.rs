//! The simulated world: gateways that boot, take calls, expire, go idle, ask to be removed,
//! drain and get deleted; a Jicofo that counts them (possibly late or down); a lifecycle
//! manager that creates and deletes them (possibly failing). A [`Controller`] (a scaling policy)
//! acts on it through the same narrow interface a real scaler has: read Jicofo, call the
//! lifecycle manager, answer remove-me requests.
//!
//! Discrete-event: time jumps from event to event; every time-weighted metric is integrated
//! exactly between events.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};

use policy::Reason;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::trace::{Trace, Window, lognormal};

/// The world's physics, shared by every policy run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct WorldConfig {
    /// Mean boot time (launch to joined in Jicofo).
    pub boot_ms: u64,
    /// Coefficient of variation of a lognormal boot time (0: fixed).
    pub boot_cv: f64,
    /// Gateways take call after call; otherwise each expires after one call.
    pub reuse: bool,
    /// The agent asks for removal after a gateway has been idle this long.
    pub idle_time_ms: u64,
    /// The agent repeats a request answered `keep` (and after `accepted`, until deleted).
    pub ask_every_ms: u64,
    /// After `accepted`, Jicofo stops counting the gateway this long later (Jibri exits).
    pub drain_ms: u64,
    /// Jicofo's reading shows the world as it was this long ago.
    pub stats_delay_ms: u64,
    /// Probability that one lifecycle call fails.
    pub lifecycle_fail: f64,
    /// Warm pool: probability that a power call is refused for its host (a 4xx: a compute
    /// resource without power management), after the call reached the lifecycle manager.
    #[serde(default)]
    pub power_refuse: f64,
    /// Intervals when every lifecycle call fails.
    pub lifecycle_down: Vec<Window>,
    /// Intervals when Jicofo cannot be read.
    pub jicofo_down: Vec<Window>,
    /// Intervals when the shared store cannot be reached.
    pub store_down: Vec<Window>,
    /// Idle ready gateways at time 0.
    pub initial: u32,
    /// The `min` setting per hour of the day (the same 24 times without a schedule): what the
    /// operator sets through the API, and the spare floor the metrics judge against.
    pub min_by_hour: [u32; 24],
    /// The total the metrics judge against (the `max` setting).
    pub max: u32,
    /// Plot sampling interval.
    pub sample_ms: u64,
    /// Warm pool: stopped hosts at time 0 (for controllers that use a pool).
    #[serde(default)]
    pub pool: u32,
    /// Warm pool: power-on to joined in Jicofo (mean; lognormal with `boot_cv`).
    #[serde(default)]
    pub resume_ms: u64,
    /// The scaler restarts at these times: what it stored (ledger, settings, learned profile)
    /// is kept, what it held in memory (the short window, the measured boots, the last reading
    /// and launch decision) is lost.
    #[serde(default)]
    pub restarts: Vec<u64>,
}

impl WorldConfig {
    /// The `min` setting in force at `t`.
    pub fn min_at(&self, t: u64) -> u32 {
        self.min_by_hour[((t / HOUR_MS) % 24) as usize]
    }
}

/// A Jicofo reading as a scaler receives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    /// Gateways Jicofo counts.
    pub total: u32,
    /// Healthy idle gateways.
    pub available: u32,
    /// The world time the counts describe (now minus the stats delay).
    pub content_at: u64,
}

/// A lifecycle call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    /// Inside a lifecycle outage window.
    #[error("lifecycle manager unreachable")]
    Down,
    /// A random failure (`--lifecycle-fail`).
    #[error("lifecycle call failed")]
    Failed,
    /// A refused power call (`--power-refuse`): definitive for that call.
    #[error("power action refused for this host")]
    Refused,
}

/// A controller's answer to a remove-me request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// `accepted` (true) or `keep`.
    pub accept: bool,
    /// The Jicofo reading the decision was based on (judges floor-breaking removals).
    pub reading: Option<Reading>,
}

/// How the gateway-side script of a policy talks to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentModel {
    /// Whether gateways ask to be removed at all (jitsi-autoscaler's sidecar does not: the
    /// autoscaler picks what to shut down).
    pub asks: bool,
    /// After `keep`, when the next request comes.
    pub keep_retry: KeepRetry,
    /// An `expired` request goes out at the script's next poll of this period (0: at once).
    pub expired_poll_ms: u64,
    /// A cron job on the host that reboots it when Jibri reports EXPIRED (Jitsi's Jibri role);
    /// `None`: an expired gateway stays until the scaler removes it.
    pub health_cron: Option<HealthCron>,
}

/// The Jibri health cron of Jitsi's hosts: it runs every `period_ms` (on the minute, the same
/// instant on every host) and reboots a host whose Jibri is EXPIRED; the host is back with a
/// fresh, idle Jibri about `reboot_ms` later (lognormal with the world's --boot-cv).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthCron {
    /// Cron period.
    pub period_ms: u64,
    /// Mean time from the reboot command to Jibri joined again.
    pub reboot_ms: u64,
}

impl AgentModel {
    /// Our agent: checks Jibri every 5 s, repeats after `keep` every --ask-every.
    pub const OURS: AgentModel = AgentModel {
        asks: true,
        keep_retry: KeepRetry::AskEvery,
        expired_poll_ms: 5_000,
        health_cron: None,
    };
}

/// A scaling policy driving the world.
pub trait Controller {
    /// Interval between [`Controller::tick`] calls (the first is at time 0); asked after each
    /// tick, so a controller may vary it.
    fn period_ms(&self) -> u64;
    /// The periodic control loop.
    fn tick(&mut self, w: &mut World);
    /// A gateway's remove-me request.
    fn ask(&mut self, w: &mut World, host: &str, reason: Reason) -> Answer;
    /// A gateway's agent announces itself by name when its host has booted (`POST
    /// {prefix}/hello`). Policies that do not listen ignore it.
    fn hello(&mut self, _w: &mut World, _host: &str) {}
    /// Whether it powers stopped hosts on and off (then the world starts with the warm pool).
    fn uses_pool(&self) -> bool {
        false
    }
    /// The gateway-side script this policy comes with.
    fn agent(&self) -> AgentModel {
        AgentModel::OURS
    }
    /// A draining gateway's Jibri exited (our agent confirms `drained`).
    fn drained(&mut self, _w: &mut World, _host: &str) {}

    /// The scaler process restarts at `now` (see [`WorldConfig::restarts`]).
    fn restart(&mut self, _now: u64) {}

    /// Target mode: the mean lead it sized for, averaged over its ticks (ms).
    fn mean_lead_ms(&self) -> Option<f64> {
        None
    }
}

/// When the gateway script asks again after `keep`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepRetry {
    /// After the world's --ask-every (our agent's `keep_backoff`).
    AskEvery,
    /// After the world's --idle-time (the legacy script waits its idle time again).
    IdleTime,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GwState {
    Booting,
    Idle,
    Busy,
    /// Single-use gateway after its call: counted by Jicofo as busy until its Jibri exits.
    Expired,
    /// Removal accepted while idle; Jibri shutting down: takes no calls, but Jicofo still
    /// counts it as available until it exits (what `pending_removal` is for).
    DrainingIdle,
    /// Removal accepted after its call (expired): Jicofo counts it as busy until it exits.
    DrainingExpired,
    /// Jibri gone (Jicofo no longer counts it) but the host still exists until deleted.
    Exited,
    /// Powered off in the warm pool: costs storage, not compute.
    Stopped,
    /// Rebooted by the health cron after it expired: not in Jicofo, back idle after the reboot.
    Rebooting,
    Gone,
}

#[derive(Clone, Debug)]
struct Gateway {
    host: String,
    state: GwState,
    /// Bumped on state changes that invalidate pending timers.
    generation: u64,
    idle_since: u64,
    reason: Option<Reason>,
    /// When an idle removal was accepted.
    approved_at: Option<u64>,
    /// When Jicofo stopped counting it after a removal.
    left_at: Option<u64>,
    /// Told to shut down by a scaler that picks its victims (jitsi-autoscaler): a busy one
    /// finishes its call first, a rebooting one is terminated once it is back.
    shutdown_flag: bool,
    /// When the health cron rebooted it.
    down_since: u64,
    /// When it was created.
    born: u64,
}

// Variants are ordered within one instant: world changes, arrivals, agent requests, ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    BootDone(usize, u64),
    CallEnd(usize, u64),
    Reboot(usize, u64),
    OfferedEnd,
    DrainDone(usize, u64),
    Arrival(usize),
    Ask(usize, u64),
    Tick,
    Restart,
}

impl Ev {
    fn class(self) -> u8 {
        match self {
            Ev::BootDone(..)
            | Ev::CallEnd(..)
            | Ev::Reboot(..)
            | Ev::OfferedEnd
            | Ev::DrainDone(..) => 0,
            Ev::Arrival(_) => 1,
            Ev::Ask(..) => 2,
            Ev::Tick | Ev::Restart => 3,
        }
    }
}

/// Gateways per state (as the world really is).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Launched, not yet in Jicofo.
    pub booting: u32,
    /// Ready and free.
    pub idle: u32,
    /// In a call.
    pub busy: u32,
    /// Single-use, call over, removal not yet accepted.
    pub expired: u32,
    /// Removal accepted while idle, Jibri still up (Jicofo: available).
    pub draining_idle: u32,
    /// Removal accepted after expiry, Jibri still up (Jicofo: busy).
    pub draining_expired: u32,
    /// Jibri gone, host not yet deleted.
    pub exited: u32,
    /// Powered off in the warm pool.
    pub stopped: u32,
    /// Rebooted by the health cron, not yet back.
    pub rebooting: u32,
}

impl Census {
    /// What Jicofo counts as `total`.
    pub fn jicofo_total(&self) -> u32 {
        self.idle + self.busy + self.expired + self.draining_idle + self.draining_expired
    }

    /// What Jicofo counts as `available`.
    pub fn jicofo_available(&self) -> u32 {
        self.idle + self.draining_idle
    }

    fn slot(&mut self, s: GwState) -> Option<&mut u32> {
        match s {
            GwState::Booting => Some(&mut self.booting),
            GwState::Idle => Some(&mut self.idle),
            GwState::Busy => Some(&mut self.busy),
            GwState::Expired => Some(&mut self.expired),
            GwState::DrainingIdle => Some(&mut self.draining_idle),
            GwState::DrainingExpired => Some(&mut self.draining_expired),
            GwState::Exited => Some(&mut self.exited),
            GwState::Stopped => Some(&mut self.stopped),
            GwState::Rebooting => Some(&mut self.rebooting),
            GwState::Gone => None,
        }
    }
}

/// One plot sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// World time.
    pub t_ms: u64,
    /// Demand: calls in progress in the trace (accepted or not) plus `min`.
    pub demand: u32,
    /// Idle plus busy gateways.
    pub ready: u32,
    /// Idle gateways.
    pub idle: u32,
    /// Booting gateways.
    pub booting: u32,
}

/// Raw counters and integrals of one policy run (turned into a report by `report.rs`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    /// Calls offered.
    pub calls: u64,
    /// Calls rejected (no idle gateway).
    pub rejected: u64,
    /// Calls cut because their gateway was deleted.
    pub cut: u64,
    /// Calls per hour of the trace.
    pub hour_calls: Vec<u32>,
    /// Rejected calls per hour of the trace.
    pub hour_rejected: Vec<u32>,
    /// Gateway-milliseconds booting, idle, busy, leaving (expired, draining, exited).
    pub gw_ms: [f64; 4],
    /// Milliseconds with fewer than `min` idle gateways.
    pub below_floor_ms: u64,
    /// Integral of max(demand - supply, 0) / max(demand, 1) over time (ms).
    pub under_acc_ms: f64,
    /// Integral of max(supply - demand, 0) / max(demand, 1) over time (ms).
    pub over_acc_ms: f64,
    /// Milliseconds with supply < demand.
    pub under_ms: u64,
    /// Milliseconds with supply > demand.
    pub over_ms: u64,
    /// Successful create calls.
    pub launches: u64,
    /// Failed create calls.
    pub create_failures: u64,
    /// Failed delete calls.
    pub delete_failures: u64,
    /// Accepted idle removals.
    pub removals_idle: u64,
    /// Accepted expired/unhealthy removals.
    pub removals_expired: u64,
    /// Booting gateways deleted before they came up.
    pub boot_aborts: u64,
    /// Idle removals that broke the floor (see docs/simulation.md).
    pub floor_breaks: u64,
    /// Launches that took Jicofo's total plus booting gateways past `max`.
    pub past_max: u64,
    /// Stopped-host-milliseconds in the warm pool (storage, not compute).
    pub stopped_ms: f64,
    /// Successful power-ons from the warm pool.
    pub resumes: u64,
    /// Successful power-offs into the warm pool.
    pub pool_returns: u64,
    /// Failed power calls.
    pub power_failures: u64,
    /// Refused power calls (part of `power_failures`).
    pub power_refusals: u64,
    /// Plot samples.
    pub samples: Vec<Sample>,
    /// When each rejected call arrived.
    pub rejected_at: Vec<u64>,
    /// Milliseconds during which `max` held back what the spare floor needed.
    pub capped_ms: u64,
}

/// The world state during one policy run.
pub struct World {
    cfg: WorldConfig,
    rng: StdRng,
    now: u64,
    horizon: u64,
    queue: BinaryHeap<Reverse<(u64, u8, u64, Ev)>>,
    seq: u64,
    gws: Vec<Gateway>,
    by_host: HashMap<String, usize>,
    idle: BTreeSet<usize>,
    census: Census,
    offered: u32,
    /// (time, total, available) after each change, for delayed readings.
    history: VecDeque<(u64, u32, u32)>,
    /// (accepted at, idle since) of recent idle removals, to judge the floor.
    /// Gateways of recent idle removals, to judge the floor.
    idle_approvals: VecDeque<usize>,
    last_t: u64,
    next_sample: u64,
    tally: Tally,
    agent: AgentModel,
}

const HOUR_MS: u64 = 3_600_000;
/// jitsi-autoscaler keeps a launched instance's provisioning state this long
/// (`PROVISIONING_TTL_SEC`, 900).
pub const PROVISIONING_TTL_MS: u64 = 900_000;
/// The sidecar's status poll (`SHUTDOWN_POLLING_INTERVAL`, 60 s).
const SIDECAR_POLL_MS: u64 = 60_000;

impl World {
    fn new(cfg: &WorldConfig, horizon: u64, seed: u64) -> World {
        let hours = horizon.div_ceil(HOUR_MS).max(1) as usize;
        World {
            cfg: cfg.clone(),
            rng: StdRng::seed_from_u64(seed),
            now: 0,
            horizon,
            queue: BinaryHeap::new(),
            seq: 0,
            gws: Vec::new(),
            by_host: HashMap::new(),
            idle: BTreeSet::new(),
            census: Census::default(),
            offered: 0,
            history: VecDeque::new(),
            idle_approvals: VecDeque::new(),
            last_t: 0,
            next_sample: 0,
            agent: AgentModel::OURS,
            tally: Tally {
                hour_calls: vec![0; hours],
                hour_rejected: vec![0; hours],
                ..Tally::default()
            },
        }
    }

    /// Runs `ctl` against `trace` and returns what happened. Deterministic for a given seed.
    pub fn run(cfg: &WorldConfig, trace: &Trace, ctl: &mut dyn Controller, seed: u64) -> Tally {
        let horizon = trace.horizon_ms;
        let mut w = World::new(cfg, horizon, seed);
        w.agent = ctl.agent();
        for i in 0..cfg.initial {
            let g = w.spawn(&format!("init-{i}"), GwState::Booting);
            w.become_idle(g);
        }
        if ctl.uses_pool() {
            for i in 0..cfg.pool {
                w.spawn(&format!("pool-{i}"), GwState::Stopped);
            }
        }
        w.record_history();
        for &t in &cfg.restarts {
            w.push(t, Ev::Restart);
        }
        w.push(0, Ev::Tick);
        if !trace.calls.is_empty() {
            w.push(trace.calls[0].arrival_ms, Ev::Arrival(0));
        }
        while let Some(Reverse((t, _, _, ev))) = w.queue.pop() {
            if t > horizon {
                break;
            }
            w.advance(t);
            w.now = t;
            w.handle(ev, ctl, trace);
            w.record_history();
        }
        w.advance(horizon);
        w.tally
    }

    // ----- the interface a controller sees -----

    /// Current world time.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The gateways per state (ground truth, for policies that see their own inventory).
    pub fn census(&self) -> Census {
        self.census
    }

    /// A Jicofo reading now: `None` during a Jicofo outage; otherwise the counts as they were
    /// `stats_delay` ago.
    pub fn reading(&self) -> Option<Reading> {
        if self.cfg.jicofo_down.iter().any(|w| w.contains(self.now)) {
            return None;
        }
        let at = self.now.saturating_sub(self.cfg.stats_delay_ms);
        let &(_, total, available) = self
            .history
            .iter()
            .rev()
            .find(|(t, ..)| *t <= at)
            .or(self.history.front())?;
        Some(Reading {
            total,
            available,
            content_at: at,
        })
    }

    /// The `min` setting now (an operator's schedule may change it by the hour).
    pub fn min_setting(&self) -> u32 {
        self.cfg.min_at(self.now)
    }

    /// Whether the shared store can record an approval now (no outage window).
    pub fn store_health(&self) -> policy::StoreHealth {
        if self.cfg.store_down.iter().any(|w| w.contains(self.now)) {
            policy::StoreHealth::Down
        } else {
            policy::StoreHealth::Ok
        }
    }

    /// Whether the lifecycle manager is reachable now (no outage window).
    pub fn lifecycle_up(&self) -> bool {
        !self.cfg.lifecycle_down.iter().any(|w| w.contains(self.now))
    }

    fn lifecycle_call(&mut self) -> Result<(), LifecycleError> {
        if !self.lifecycle_up() {
            return Err(LifecycleError::Down);
        }
        if self.cfg.lifecycle_fail > 0.0 && self.rng.random::<f64>() < self.cfg.lifecycle_fail {
            return Err(LifecycleError::Failed);
        }
        Ok(())
    }

    /// Creates host `host` (it boots and joins Jicofo later). Creating an existing host succeeds
    /// without a second gateway, as a retried create does against the real lifecycle manager.
    pub fn create(&mut self, host: &str) -> Result<(), LifecycleError> {
        if let Err(e) = self.lifecycle_call() {
            self.tally.create_failures += 1;
            return Err(e);
        }
        if self.by_host.contains_key(host) {
            return Ok(());
        }
        let g = self.spawn(host, GwState::Booting);
        self.tally.launches += 1;
        self.start_boot(g, self.cfg.boot_ms);
        Ok(())
    }

    /// Gateway `g` starts booting (provisioned or resumed): checked against `max` as it starts,
    /// and up after a lognormal time around `mean_ms`.
    fn start_boot(&mut self, g: usize, mean_ms: u64) {
        let c = self.census;
        if c.jicofo_total() + c.booting + c.rebooting > self.cfg.max {
            self.tally.past_max += 1;
        }
        let boot = lognormal(&mut self.rng, mean_ms as f64, self.cfg.boot_cv);
        let generation = self.gws[g].generation;
        self.push(
            self.now + boot.round().max(1.0) as u64,
            Ev::BootDone(g, generation),
        );
    }

    /// A power call: fails as any lifecycle call, or is refused (`power_refuse`).
    fn power_call(&mut self) -> Result<(), LifecycleError> {
        let refused = || LifecycleError::Refused;
        let r = self.lifecycle_call().and_then(|()| {
            if self.cfg.power_refuse > 0.0 && self.rng.random::<f64>() < self.cfg.power_refuse {
                Err(refused())
            } else {
                Ok(())
            }
        });
        if let Err(e) = &r {
            self.tally.power_failures += 1;
            if *e == LifecycleError::Refused {
                self.tally.power_refusals += 1;
            }
        }
        r
    }

    /// Warm pool: powers a stopped host on (it joins Jicofo `resume` later). A host that is
    /// already on is left as it is (as a repeated power-on); an unknown one is an error.
    pub fn power_on(&mut self, host: &str) -> Result<(), LifecycleError> {
        self.power_call()?;
        let Some(&g) = self.by_host.get(host) else {
            return Err(LifecycleError::Failed);
        };
        if self.gws[g].state != GwState::Stopped {
            return Ok(());
        }
        self.set_state(g, GwState::Booting);
        self.gws[g].reason = None;
        self.gws[g].approved_at = None;
        self.gws[g].left_at = None;
        // Its earlier idle approval is over (it left when powered off): the floor judge must
        // not count the same gateway, now fresh, as still leaving.
        self.idle_approvals.retain(|&a| a != g);
        self.tally.resumes += 1;
        self.start_boot(g, self.cfg.resume_ms);
        Ok(())
    }

    /// Warm pool: powers a host off into the pool (a busy gateway loses its call).
    pub fn power_off(&mut self, host: &str) -> Result<(), LifecycleError> {
        self.power_call()?;
        let Some(&g) = self.by_host.get(host) else {
            return Err(LifecycleError::Failed);
        };
        match self.gws[g].state {
            GwState::Stopped => return Ok(()),
            GwState::Busy => self.tally.cut += 1,
            GwState::Booting => self.tally.boot_aborts += 1,
            _ => {}
        }
        self.set_state(g, GwState::Stopped);
        self.tally.pool_returns += 1;
        Ok(())
    }

    /// Hosts that exist powered off (what reconciliation finds by prefix and power state).
    pub fn stopped_hosts(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .by_host
            .iter()
            .filter(|&(_, &g)| self.gws[g].state == GwState::Stopped)
            .map(|(h, _)| h.clone())
            .collect();
        v.sort();
        v
    }

    /// Deletes host `host`; an unknown host is already gone (a 404 is success). A busy gateway
    /// loses its call.
    pub fn delete(&mut self, host: &str) -> Result<(), LifecycleError> {
        if let Err(e) = self.lifecycle_call() {
            self.tally.delete_failures += 1;
            return Err(e);
        }
        let Some(g) = self.by_host.remove(host) else {
            return Ok(());
        };
        match self.gws[g].state {
            GwState::Busy => self.tally.cut += 1,
            GwState::Booting => self.tally.boot_aborts += 1,
            _ => {}
        }
        self.set_state(g, GwState::Gone);
        Ok(())
    }

    /// The controller's word that `max` held back the spare floor for `ms` (one tick).
    pub fn note_capped(&mut self, ms: u64) {
        self.tally.capped_ms += ms;
    }

    /// Whether host `host` still exists.
    pub fn exists(&self, host: &str) -> bool {
        self.by_host.contains_key(host)
    }

    /// Idle gateways, newest first.
    pub fn idle_hosts(&self) -> Vec<String> {
        self.idle
            .iter()
            .rev()
            .map(|&g| self.gws[g].host.clone())
            .collect()
    }

    /// Drains an idle gateway on the controller's own initiative (as `accepted` would), judged
    /// against `reading` for the floor. Returns false if it is not idle.
    pub fn shut_down(&mut self, host: &str, reading: Option<Reading>) -> bool {
        match self.by_host.get(host) {
            Some(&g) if self.gws[g].state == GwState::Idle => {
                self.count_removal(g, GwState::Idle, reading);
                self.start_drain(g, Reason::Idle);
                true
            }
            // A sidecar told to shut down after its call (single use): it goes and is replaced.
            Some(&g) if self.gws[g].state == GwState::Expired => {
                self.count_removal(g, GwState::Expired, reading);
                self.start_drain(g, Reason::Expired);
                true
            }
            // Its graceful shutdown waits for the call to end; a rebooting host's sidecar acts
            // on the command once the host is back.
            Some(&g)
                if matches!(self.gws[g].state, GwState::Busy | GwState::Rebooting)
                    && !self.gws[g].shutdown_flag =>
            {
                self.gws[g].shutdown_flag = true;
                if self.gws[g].state == GwState::Rebooting {
                    self.count_removal(g, GwState::Expired, reading);
                }
                true
            }
            _ => false,
        }
    }

    /// Whether deleting `host` now loses nothing: not in a call, not waiting for its reboot to
    /// end before its sidecar carries out a shutdown.
    pub fn deletable(&self, host: &str) -> bool {
        self.by_host
            .get(host)
            .is_some_and(|&g| !matches!(self.gws[g].state, GwState::Busy | GwState::Rebooting))
    }

    /// jitsi-autoscaler's inventory now: (tracked, untracked). Tracked: every host with a
    /// valid state in its store and no shutdown: booting ones for [`PROVISIONING_TTL_MS`]
    /// after their launch, the rest while their last sidecar report is younger than `ttl_ms`
    /// (a rebooting host's last report came at its sidecar's status poll before the reboot,
    /// 0-60 s before it by the host's phase). Untracked: hosts that run but whose state
    /// expired (what its sanity loop counts).
    pub fn autoscaler_inventory(&self, ttl_ms: u64) -> (u32, u32) {
        let (mut tracked, mut untracked) = (0, 0);
        for &g in self.by_host.values() {
            let gw = &self.gws[g];
            if gw.shutdown_flag {
                continue;
            }
            let valid = match gw.state {
                GwState::Booting => self.now < gw.born + PROVISIONING_TTL_MS,
                GwState::Idle | GwState::Busy | GwState::Expired => true,
                GwState::Rebooting => self.now < self.last_report(g) + ttl_ms,
                _ => continue,
            };
            if valid {
                tracked += 1;
            } else {
                untracked += 1;
            }
        }
        (tracked, untracked)
    }

    /// A rebooting host's last sidecar report: its status poll (every 60 s, on the host's
    /// own phase) before the reboot.
    fn last_report(&self, g: usize) -> u64 {
        let phase = (g as u64).wrapping_mul(7_919) % SIDECAR_POLL_MS;
        self.gws[g].down_since.saturating_sub(phase)
    }

    /// Gateways a scale-down may pick, in jitsi-autoscaler's order: booting (no status yet),
    /// idle, expired (a rebooting host still tracked within `ttl_ms` is EXPIRED in its last
    /// report), and busy ones last; never one already told to shut down.
    pub fn scale_down_candidates(&self, ttl_ms: u64) -> Vec<(String, bool)> {
        let mut v: Vec<(u8, usize)> = self
            .gws
            .iter()
            .enumerate()
            .filter(|(_, g)| !g.shutdown_flag)
            .filter_map(|(i, g)| match g.state {
                GwState::Booting if self.now < g.born + PROVISIONING_TTL_MS => Some((0, i)),
                GwState::Idle => Some((1, i)),
                GwState::Expired => Some((2, i)),
                GwState::Rebooting if self.now < self.last_report(i) + ttl_ms => Some((2, i)),
                GwState::Busy => Some((3, i)),
                _ => None,
            })
            .collect();
        v.sort_by_key(|&(rank, i)| (rank, std::cmp::Reverse(i)));
        v.into_iter()
            .map(|(rank, i)| (self.gws[i].host.clone(), rank == 0))
            .collect()
    }

    /// What each gateway's sidecar would report now: (host, busy status, Jibri still running).
    /// Booting gateways have no report yet; exited ones send their `/sidecar/shutdown`.
    pub fn sidecar_view(&self) -> Vec<(String, policy::BusyStatus, bool)> {
        use policy::BusyStatus as B;
        self.by_host
            .iter()
            .filter_map(|(host, &g)| {
                let (busy, running) = match self.gws[g].state {
                    GwState::Idle | GwState::DrainingIdle => (B::Idle, true),
                    GwState::Busy => (B::Busy, true),
                    GwState::Expired | GwState::DrainingExpired => (B::Expired, true),
                    GwState::Exited => (B::Unknown, false),
                    // A powered-off or rebooting host's sidecar sends nothing.
                    GwState::Booting | GwState::Gone | GwState::Stopped | GwState::Rebooting => {
                        return None;
                    }
                };
                Some((host.clone(), busy, running))
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    // ----- physics -----

    fn push(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((t, ev.class(), self.seq, ev)));
    }

    fn spawn(&mut self, host: &str, state: GwState) -> usize {
        let g = self.gws.len();
        self.gws.push(Gateway {
            host: host.to_string(),
            state: GwState::Gone,
            generation: 0,
            idle_since: 0,
            reason: None,
            approved_at: None,
            left_at: None,
            shutdown_flag: false,
            down_since: 0,
            born: self.now,
        });
        self.by_host.insert(host.to_string(), g);
        self.set_state(g, state);
        g
    }

    fn set_state(&mut self, g: usize, state: GwState) {
        let old = self.gws[g].state;
        if let Some(n) = self.census.slot(old) {
            *n -= 1;
        }
        if let Some(n) = self.census.slot(state) {
            *n += 1;
        }
        if old == GwState::Idle {
            self.idle.remove(&g);
        }
        if state == GwState::Idle {
            self.idle.insert(g);
        }
        let gw = &mut self.gws[g];
        if matches!(state, GwState::Exited | GwState::Gone | GwState::Stopped)
            && gw.left_at.is_none()
        {
            gw.left_at = Some(self.now);
        }
        gw.state = state;
        if state != GwState::Exited {
            gw.generation += 1;
        }
    }

    fn become_idle(&mut self, g: usize) {
        self.set_state(g, GwState::Idle);
        self.gws[g].idle_since = self.now;
        if self.agent.asks {
            let generation = self.gws[g].generation;
            self.push(self.now + self.cfg.idle_time_ms, Ev::Ask(g, generation));
        }
    }

    fn start_drain(&mut self, g: usize, reason: Reason) {
        let state = if self.gws[g].state == GwState::Idle {
            GwState::DrainingIdle
        } else {
            GwState::DrainingExpired
        };
        self.set_state(g, state);
        self.gws[g].reason = Some(reason);
        let generation = self.gws[g].generation;
        self.push(self.now + self.cfg.drain_ms, Ev::DrainDone(g, generation));
        if self.agent.asks {
            self.push(self.now + self.cfg.ask_every_ms, Ev::Ask(g, generation));
        }
    }

    /// Counts an accepted removal of gateway `g`, which was in `state` when it asked, and judges
    /// an idle one against the floor.
    fn count_removal(&mut self, g: usize, state: GwState, reading: Option<Reading>) {
        if state != GwState::Idle {
            self.tally.removals_expired += 1;
            return;
        }
        self.tally.removals_idle += 1;
        self.gws[g].approved_at = Some(self.now);
        let min = i64::from(self.cfg.min_at(self.now));
        let broke = match reading {
            // The reading counted as available every gateway idle (or draining after an idle
            // approval) at `content_at`; of those, subtract every one approved by now, this
            // one included.
            Some(r) => {
                let at = r.content_at;
                let others = self
                    .idle_approvals
                    .iter()
                    .map(|&a| &self.gws[a])
                    .filter(|a| {
                        a.idle_since <= at
                            && (a.approved_at.is_some_and(|t| t > at)
                                || a.left_at.is_none_or(|l| l > at))
                    })
                    .count() as i64;
                let this = i64::from(self.gws[g].idle_since <= at);
                i64::from(r.available) - others - this < min
            }
            // Decided without any reading (fail-open): judge against the world.
            None => {
                let others = self.census.idle - u32::from(self.gws[g].state == GwState::Idle);
                i64::from(others) < min
            }
        };
        if broke {
            self.tally.floor_breaks += 1;
        }
        self.idle_approvals.push_back(g);
        let now = self.now;
        while let Some(&a) = self.idle_approvals.front() {
            let old = self.gws[a].approved_at.is_none_or(|t| t + HOUR_MS < now);
            if !old {
                break;
            }
            self.idle_approvals.pop_front();
        }
    }

    fn handle(&mut self, ev: Ev, ctl: &mut dyn Controller, trace: &Trace) {
        match ev {
            Ev::Restart => ctl.restart(self.now),
            Ev::BootDone(g, generation)
                if self.gws[g].state == GwState::Rebooting
                    && self.gws[g].generation == generation =>
            {
                if self.gws[g].shutdown_flag {
                    // Its sidecar's first poll gets the shutdown: Jibri is stopped and the
                    // host terminated before it takes a call.
                    self.set_state(g, GwState::Exited);
                } else {
                    self.become_idle(g);
                }
            }
            Ev::Reboot(g, generation) => {
                let gw = &self.gws[g];
                if gw.state == GwState::Expired
                    && gw.generation == generation
                    && let Some(cron) = self.agent.health_cron
                {
                    self.set_state(g, GwState::Rebooting);
                    self.gws[g].down_since = self.now;
                    let generation = self.gws[g].generation;
                    let t = lognormal(&mut self.rng, cron.reboot_ms as f64, self.cfg.boot_cv);
                    self.push(
                        self.now + t.round().max(1.0) as u64,
                        Ev::BootDone(g, generation),
                    );
                }
            }
            Ev::BootDone(g, generation) => {
                if self.gws[g].state == GwState::Booting && self.gws[g].generation == generation {
                    self.become_idle(g);
                    // The agent starts with the host and says hello.
                    let host = self.gws[g].host.clone();
                    ctl.hello(self, &host);
                }
            }
            Ev::CallEnd(g, generation) => {
                let gw = &self.gws[g];
                if gw.state != GwState::Busy || gw.generation != generation {
                    return;
                }
                if self.gws[g].shutdown_flag {
                    // Told to shut down during its call: the graceful shutdown ends it now.
                    self.set_state(g, GwState::Expired);
                    self.count_removal(g, GwState::Expired, None);
                    self.start_drain(g, Reason::Expired);
                } else if self.cfg.reuse {
                    self.become_idle(g);
                } else {
                    self.set_state(g, GwState::Expired);
                    if let Some(cron) = self.agent.health_cron {
                        // The next run of the cron (on the minute) finds it EXPIRED.
                        let p = cron.period_ms.max(1);
                        let generation = self.gws[g].generation;
                        self.push((self.now / p + 1) * p, Ev::Reboot(g, generation));
                    }
                    if self.agent.asks {
                        let generation = self.gws[g].generation;
                        // The script notices at its next poll; each gateway polls on its own phase.
                        let p = self.agent.expired_poll_ms;
                        let delay = if p == 0 {
                            0
                        } else {
                            let phase = (g as u64).wrapping_mul(7_919) % p;
                            p - (self.now + phase) % p
                        };
                        self.push(self.now + delay, Ev::Ask(g, generation));
                    }
                }
            }
            Ev::OfferedEnd => self.offered -= 1,
            Ev::DrainDone(g, generation) => {
                let gw = &self.gws[g];
                if matches!(gw.state, GwState::DrainingIdle | GwState::DrainingExpired)
                    && gw.generation == generation
                {
                    self.set_state(g, GwState::Exited);
                    let host = self.gws[g].host.clone();
                    ctl.drained(self, &host);
                }
            }
            Ev::Arrival(i) => self.arrive(i, trace),
            Ev::Ask(g, generation) => self.ask(g, generation, ctl),
            Ev::Tick => {
                ctl.tick(self);
                let next = self.now + ctl.period_ms().max(1);
                self.push(next, Ev::Tick);
            }
        }
    }

    fn arrive(&mut self, i: usize, trace: &Trace) {
        let call = trace.calls[i];
        if let Some(next) = trace.calls.get(i + 1) {
            self.push(next.arrival_ms, Ev::Arrival(i + 1));
        }
        self.offered += 1;
        self.push(self.now + call.duration_ms, Ev::OfferedEnd);
        let hour = ((self.now / HOUR_MS) as usize).min(self.tally.hour_calls.len() - 1);
        self.tally.calls += 1;
        self.tally.hour_calls[hour] += 1;
        // Jicofo hands the call to the longest-running idle gateway (lowest index).
        match self.idle.first().copied() {
            Some(g) => {
                self.set_state(g, GwState::Busy);
                let generation = self.gws[g].generation;
                self.push(self.now + call.duration_ms, Ev::CallEnd(g, generation));
            }
            None => {
                self.tally.rejected += 1;
                self.tally.rejected_at.push(self.now);
                self.tally.hour_rejected[hour] += 1;
            }
        }
    }

    fn ask(&mut self, g: usize, generation: u64, ctl: &mut dyn Controller) {
        let gw = &self.gws[g];
        if gw.generation != generation {
            return;
        }
        let state = gw.state;
        let reason = match state {
            GwState::Idle => Reason::Idle,
            GwState::Expired => Reason::Expired,
            GwState::DrainingIdle | GwState::DrainingExpired | GwState::Exited => {
                gw.reason.unwrap_or(Reason::Idle)
            }
            GwState::Booting
            | GwState::Busy
            | GwState::Gone
            | GwState::Stopped
            | GwState::Rebooting => return,
        };
        let host = gw.host.clone();
        let answer = ctl.ask(self, &host, reason);
        let still = self.gws[g].state;
        match state {
            GwState::Idle | GwState::Expired if answer.accept => {
                self.count_removal(g, state, answer.reading);
                if still == state {
                    self.start_drain(g, reason);
                }
            }
            // `keep`: the script asks again after its retry time.
            GwState::Idle | GwState::Expired if still == state => {
                let generation = self.gws[g].generation;
                let retry = match self.agent.keep_retry {
                    KeepRetry::AskEvery => self.cfg.ask_every_ms,
                    KeepRetry::IdleTime => self.cfg.idle_time_ms,
                };
                self.push(self.now + retry, Ev::Ask(g, generation));
            }
            // Already draining: the agent repeats until deleted.
            _ if still != GwState::Gone => {
                let generation = self.gws[g].generation;
                self.push(self.now + self.cfg.ask_every_ms, Ev::Ask(g, generation));
            }
            _ => {}
        }
    }

    fn record_history(&mut self) {
        let c = self.census;
        let entry = (self.now, c.jicofo_total(), c.jicofo_available());
        if self
            .history
            .back()
            .is_none_or(|&(_, t, a)| (t, a) != (entry.1, entry.2))
        {
            self.history.push_back(entry);
        }
        // Keep the newest entry at or before the oldest instant a reading can ask for.
        let oldest = self.now.saturating_sub(self.cfg.stats_delay_ms);
        while self.history.len() > 1 && self.history[1].0 <= oldest {
            self.history.pop_front();
        }
    }

    /// Integrates the time-weighted metrics up to `t`.
    fn advance(&mut self, t: u64) {
        while self.next_sample <= t && self.next_sample <= self.horizon {
            let c = self.census;
            self.tally.samples.push(Sample {
                t_ms: self.next_sample,
                demand: self.offered + self.cfg.min_at(self.next_sample),
                ready: c.idle + c.busy,
                idle: c.idle,
                booting: c.booting,
            });
            self.next_sample += self.cfg.sample_ms.max(1);
        }
        // Integrate hour by hour: `min` may change on the hour.
        while self.last_t < t {
            let end = t.min((self.last_t / HOUR_MS + 1) * HOUR_MS);
            self.integrate(end - self.last_t, self.cfg.min_at(self.last_t));
            self.last_t = end;
        }
    }

    /// Adds `dt` ms of the current state to the time-weighted metrics.
    fn integrate(&mut self, dt: u64, min: u32) {
        let c = self.census;
        let f = dt as f64;
        let tl = &mut self.tally;
        tl.gw_ms[0] += f * f64::from(c.booting + c.rebooting);
        tl.gw_ms[1] += f * f64::from(c.idle);
        tl.gw_ms[2] += f * f64::from(c.busy);
        tl.gw_ms[3] += f64::from(c.expired + c.draining_idle + c.draining_expired + c.exited) * f;
        tl.stopped_ms += f64::from(c.stopped) * f;
        if c.idle < min {
            tl.below_floor_ms += dt;
        }
        let demand = f64::from(self.offered + min);
        let supply = f64::from(c.idle + c.busy);
        let norm = demand.max(1.0);
        tl.under_acc_ms += f * (demand - supply).max(0.0) / norm;
        tl.over_acc_ms += f * (supply - demand).max(0.0) / norm;
        if supply < demand {
            tl.under_ms += dt;
        } else if supply > demand {
            tl.over_ms += dt;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::trace::Call;

    /// Records readings every `period`; accepts every request (or none), citing its last reading.
    struct Probe {
        period: u64,
        accept: bool,
        last: Option<Reading>,
        seen: Vec<(u64, Option<Reading>)>,
    }

    impl Controller for Probe {
        fn period_ms(&self) -> u64 {
            self.period
        }
        fn tick(&mut self, w: &mut World) {
            self.last = w.reading();
            self.seen.push((w.now(), self.last));
        }
        fn ask(&mut self, _w: &mut World, _host: &str, _reason: Reason) -> Answer {
            Answer {
                accept: self.accept,
                reading: self.last,
            }
        }
    }

    fn cfg(initial: u32, min: u32) -> WorldConfig {
        WorldConfig {
            boot_ms: 60_000,
            boot_cv: 0.0,
            reuse: false,
            idle_time_ms: 60_000,
            ask_every_ms: 60_000,
            drain_ms: 10_000,
            stats_delay_ms: 0,
            lifecycle_fail: 0.0,
            power_refuse: 0.0,
            lifecycle_down: vec![],
            store_down: vec![],
            jicofo_down: vec![],
            initial,
            min_by_hour: [min; 24],
            max: 80,
            sample_ms: 60_000,
            pool: 0,
            resume_ms: 0,
            restarts: Vec::new(),
        }
    }

    fn probe(period: u64, accept: bool) -> Probe {
        Probe {
            period,
            accept,
            last: None,
            seen: vec![],
        }
    }

    fn trace(calls: &[(u64, u64)], horizon_ms: u64) -> Trace {
        Trace {
            calls: calls
                .iter()
                .map(|&(arrival_ms, duration_ms)| Call {
                    arrival_ms,
                    duration_ms,
                })
                .collect(),
            horizon_ms,
        }
    }

    fn at(p: &Probe, t: u64) -> Option<(u32, u32)> {
        p.seen
            .iter()
            .find(|(now, _)| *now == t)
            .and_then(|(_, r)| r.map(|r| (r.total, r.available)))
    }

    #[test]
    fn ours_keeps_idle_gateways_and_launches_nothing_while_the_store_is_down() {
        use crate::sim::policies::Ours;
        let run = |initial: u32, min: u32, down: bool| {
            let mut c = cfg(initial, min);
            if down {
                c.store_down = vec![Window {
                    start_ms: 0,
                    end_ms: 200_000,
                }];
            }
            let settings = policy::Settings {
                min_available: min,
                ..policy::Settings::default()
            };
            let mut ours = Ours::new(settings, policy::Timing::default(), 15_000);
            // One call at 10 s: single use, so its gateway expires and is replaced.
            World::run(&c, &trace(&[(10_000, 20_000)], 200_000), &mut ours, 1)
        };
        // At the floor: the call's gateway is replaced, or not while the store is down.
        assert!(run(5, 5, false).launches >= 1);
        let down = run(5, 5, true);
        assert_eq!(down.launches, 0, "nothing launched without the store");
        assert_eq!(down.removals_expired, 1, "expired goes (queued)");
        // Spares above the floor go when idle, but not while the store is down.
        assert!(run(4, 1, false).removals_idle >= 2);
        assert_eq!(
            run(4, 1, true).removals_idle,
            0,
            "idle keeps without the store"
        );
    }

    /// Records jitsi-autoscaler's inventory and Jicofo's reading every 5 s, on hosts with
    /// Jitsi's health cron.
    struct Cron {
        reboot_ms: u64,
        ttl_ms: u64,
        seen: Vec<(u64, (u32, u32), Option<Reading>)>,
    }

    impl Controller for Cron {
        fn period_ms(&self) -> u64 {
            5_000
        }
        fn agent(&self) -> AgentModel {
            AgentModel {
                asks: false,
                keep_retry: KeepRetry::AskEvery,
                expired_poll_ms: 0,
                health_cron: Some(HealthCron {
                    period_ms: 60_000,
                    reboot_ms: self.reboot_ms,
                }),
            }
        }
        fn tick(&mut self, w: &mut World) {
            let inv = w.autoscaler_inventory(self.ttl_ms);
            self.seen.push((w.now(), inv, w.reading()));
        }
        fn ask(&mut self, _w: &mut World, _host: &str, _reason: Reason) -> Answer {
            Answer {
                accept: false,
                reading: None,
            }
        }
    }

    fn cron_run(reboot_ms: u64, calls: &[(u64, u64)]) -> (Cron, Tally) {
        let mut c = Cron {
            reboot_ms,
            ttl_ms: 300_000,
            seen: Vec::new(),
        };
        let mut cfg = cfg(1, 1);
        cfg.boot_cv = 0.0;
        let t = World::run(&cfg, &trace(calls, 900_000), &mut c, 1);
        (c, t)
    }

    fn cron_at(c: &Cron, t: u64) -> ((u32, u32), Option<(u32, u32)>) {
        c.seen
            .iter()
            .find(|(now, ..)| *now == t)
            .map(|(_, inv, r)| (*inv, r.map(|r| (r.total, r.available))))
            .expect("a tick at that time")
    }

    #[test]
    fn the_health_cron_reboots_an_expired_host_which_comes_back_idle_and_stays_tracked() {
        // The call ends at 30 s; the cron finds Jibri EXPIRED at 60 s and reboots the host;
        // it is back idle at 240 s and takes the call of 300 s.
        let (c, t) = cron_run(180_000, &[(10_000, 20_000), (300_000, 20_000)]);
        assert_eq!(cron_at(&c, 35_000), ((1, 0), Some((1, 0))), "expired: busy");
        assert_eq!(cron_at(&c, 65_000), ((1, 0), Some((0, 0))), "rebooting");
        // Its last report (60 s) is younger than the TTL all through the reboot.
        assert!(
            c.seen.iter().all(|(_, inv, _)| *inv == (1, 0)),
            "always tracked"
        );
        assert_eq!(cron_at(&c, 245_000), ((1, 0), Some((1, 1))), "back idle");
        assert_eq!((t.calls, t.rejected, t.launches, t.cut), (2, 0, 0, 0));
        // The reboots cost worker time (counted as booting): 60-240 s and 360-540 s.
        assert!((t.gw_ms[0] - 360_000.0).abs() < 1e-6, "{}", t.gw_ms[0]);
    }

    #[test]
    fn a_reboot_longer_than_the_ttl_drops_the_host_from_the_inventory_until_it_is_back() {
        let (c, _) = cron_run(400_000, &[(10_000, 20_000)]);
        // Last report at 60 s: valid until 360 s; back at 460 s.
        assert_eq!(cron_at(&c, 355_000).0, (1, 0));
        assert_eq!(cron_at(&c, 360_000).0, (0, 1), "untracked while still down");
        assert_eq!(
            cron_at(&c, 465_000),
            ((1, 0), Some((1, 1))),
            "tracked again"
        );
    }

    #[test]
    fn without_the_cron_an_expired_host_stays_expired() {
        let mut c = probe(5_000, false);
        let mut w = cfg(1, 1);
        w.boot_cv = 0.0;
        World::run(&w, &trace(&[(10_000, 20_000)], 300_000), &mut c, 1);
        // Its agent asks (and is kept): Jicofo counts it busy to the end.
        assert_eq!(at(&c, 295_000), Some((1, 0)));
    }

    #[test]
    fn the_autoscaler_changes_nothing_while_its_count_differs_from_the_desired_count() {
        use crate::sim::policies::{AsParams, AutoscalerStyle};
        let settings = policy::Settings {
            min_available: 1,
            ..policy::Settings::default()
        };
        let params = AsParams {
            quantity: 1,
            grace_ms: 0,
            ..AsParams::default()
        };
        let mut a = AutoscalerStyle::new(settings, params);
        let mut c = cfg(1, 1);
        // Nothing can be launched: the count stays 1 while the desired count rose to 2.
        c.lifecycle_down = vec![Window {
            start_ms: 0,
            end_ms: 3_600_000,
        }];
        // One long call keeps available at 0 below the threshold 1 all along.
        let t = World::run(&c, &trace(&[(1_000, 3_600_000)], 1_800_000), &mut a, 1);
        assert_eq!(a.desired(), 2, "raised once, then held");
        assert!(t.create_failures >= 10, "the launcher kept trying");
    }

    #[test]
    fn the_autoscaler_picks_busy_hosts_last_and_lets_their_calls_end() {
        use crate::sim::policies::{AsParams, AutoscalerStyle};
        let settings = policy::Settings {
            min_available: 1,
            ..policy::Settings::default()
        };
        let mut a = AutoscalerStyle::new(settings, AsParams::default());
        // Three gateways, desired 1: two go at the first job; two are busy by then.
        let mut c = cfg(3, 1);
        c.boot_cv = 0.0;
        let t = World::run(
            &c,
            &trace(&[(0, 100_000), (0, 200_000)], 600_000),
            &mut a,
            1,
        );
        assert_eq!(t.removals_idle, 1, "the idle one first");
        assert_eq!(t.removals_expired, 1, "then a busy one, after its call");
        assert_eq!((t.cut, t.rejected), (0, 0));
    }

    #[test]
    fn readings_lag_by_the_stats_delay_and_vanish_in_outages() {
        let mut c = cfg(1, 1);
        c.stats_delay_ms = 10_000;
        c.jicofo_down = vec![Window {
            start_ms: 100_000,
            end_ms: 110_000,
        }];
        let mut p = probe(5_000, false);
        // One call at 20 s for 30 s: the single-use gateway is then expired (busy in Jicofo).
        World::run(&c, &trace(&[(20_000, 30_000)], 200_000), &mut p, 1);
        assert_eq!(at(&p, 25_000), Some((1, 1)), "content of 15 s");
        assert_eq!(at(&p, 30_000), Some((1, 0)), "content of 20 s");
        assert_eq!(at(&p, 65_000), Some((1, 0)), "expired counts as busy");
        assert_eq!(at(&p, 100_000), None);
        assert_eq!(at(&p, 105_000), None);
        assert!(at(&p, 110_000).is_some());
    }

    #[test]
    fn draining_idle_gateways_stay_available_in_jicofo_until_they_exit() {
        let mut p = probe(5_000, true);
        // Two idle gateways ask at 60 s and are accepted; Jibri exits 10 s later.
        let t = World::run(&cfg(2, 1), &trace(&[], 120_000), &mut p, 1);
        assert_eq!(at(&p, 60_000), Some((2, 2)));
        assert_eq!(at(&p, 65_000), Some((2, 2)));
        assert_eq!(at(&p, 70_000), Some((0, 0)));
        assert_eq!(t.removals_idle, 2);
        // Both judged against the reading of 55 s (2 available): the second leaves 0 < min 1.
        assert_eq!(t.floor_breaks, 1);
        // They are never deleted (the probe does not call the lifecycle manager): they cost
        // until the end, as leaving workers.
        assert!((t.gw_ms[3] - 2.0 * 60_000.0).abs() < 1e-6);
    }

    #[test]
    fn a_call_takes_the_oldest_idle_gateway_or_is_rejected() {
        let mut p = probe(60_000, false);
        let mut c = cfg(2, 1);
        c.reuse = true;
        let t = World::run(
            &c,
            &trace(
                &[
                    (1_000, 10_000),
                    (2_000, 10_000),
                    (3_000, 10_000),
                    (20_000, 5_000),
                ],
                60_000,
            ),
            &mut p,
            1,
        );
        assert_eq!((t.calls, t.rejected), (4, 1));
        assert_eq!(t.hour_rejected[0], 1);
        // Busy: 10 s + 10 s + 5 s.
        assert!((t.gw_ms[2] - 25_000.0).abs() < 1e-6);
        // Below the floor (1 idle) while both were busy: 2 s to 11 s.
        assert_eq!(t.below_floor_ms, 9_000);
    }
}
