//! The warm pool: gateway hosts that exist in the lifecycle manager, powered off, and are
//! powered on for a launch instead of provisioning a new host (minutes become seconds).
//!
//! Ledger states: `stopped` (in the pool), `starting` (power-on owed), `resuming` (power-on
//! confirmed, not yet seen in Jicofo), `stopping` (power-off owed, then back to `stopped`).
//! Rules (see docs/lifecycle.md, "Warm pool"):
//! - a launch takes the longest-stopped host and powers it on; it creates a new host only when
//!   the pool is empty;
//! - the pool is refilled in the background by creating hosts (`refill`), at most `bulk_max` per
//!   tick together with the launches, never past `max`; a refill host joins as a spare and goes
//!   into the pool through the normal idle removal (so it is never powered off under a call);
//! - an approved idle or expired removal powers the host off into the pool while the pool is
//!   below its size; unhealthy hosts are always deleted;
//! - a start not seen within `start_timeout` is powered off and checked (its launch is held
//!   until the power-off is confirmed, so no second host runs for it), and deleted when it
//!   fails a second time in a row.

use serde::{Deserialize, Serialize};

use crate::{
    Counts, DrainMode, Event, Inputs, Instance, LaunchDecision, LaunchHold, Ledger, Millis,
    Observation, Origin, Reason, RemovalDecision, Settings, State, Tick, Timing,
    capacity::LaunchLead,
    decide_launch, decide_removal,
    lead::{LeadStat, LeadTimes},
    ledger::key_of,
};

/// First hold of a host whose power-on was refused; doubles per refusal in a row.
pub const POWER_REFUSAL_HOLD_MS: u64 = 60_000;
/// Cap of that hold.
pub const POWER_REFUSAL_HOLD_MAX_MS: u64 = 30 * 60_000;
/// First retry delay after a failed power call; doubles per failure, at most
/// [`POWER_RETRY_MAX_MS`].
pub const POWER_RETRY_MS: u64 = 2_000;
/// Cap of the retry delay.
pub const POWER_RETRY_MAX_MS: u64 = 5 * 60_000;

/// The retry delay after the `attempts`-th failed power call in a row.
fn retry_delay_ms(attempts: u32) -> u64 {
    POWER_RETRY_MS
        .saturating_mul(1 << attempts.saturating_sub(1).min(16))
        .min(POWER_RETRY_MAX_MS)
}

/// Warm-pool settings (config section `[warm_pool]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmPool {
    /// Stopped hosts to keep (0: no pool, every launch creates a host).
    pub size: u32,
    /// Idle removals go back into the pool (powered off) instead of being deleted.
    pub recycle_idle: bool,
    /// Expired removals go back into the pool (single-use gateways: Jibri is fresh after a
    /// restart).
    pub recycle_expired: bool,
    /// Stopped hosts count toward `max`. Off by default: `max` bounds the gateways that run
    /// (what costs compute and what Jicofo sees); a stopped host costs only its disk.
    pub count_toward_max: bool,
    /// A host started from the pool not seen in Jicofo after this long is powered off and
    /// checked (the second time in a row: deleted).
    pub start_timeout_ms: u64,
}

impl Default for WarmPool {
    fn default() -> Self {
        WarmPool {
            size: 0,
            recycle_idle: true,
            recycle_expired: true,
            count_toward_max: false,
            start_timeout_ms: 5 * 60_000,
        }
    }
}

impl WarmPool {
    /// Whether a pool is configured.
    pub fn enabled(&self) -> bool {
        self.size > 0
    }

    /// Whether a removal for `reason` may go into the pool.
    pub fn recycles(&self, reason: Reason) -> bool {
        match reason {
            Reason::Idle => self.recycle_idle,
            Reason::Expired => self.recycle_expired,
            Reason::Unhealthy => false,
        }
    }
}

/// How the next launch would be carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LaunchPath {
    /// A new host is created (provisioned).
    Create,
    /// A stopped host is powered on.
    Start,
}

/// The path the next launch takes and that path's measured lead (for capacity sizing).
pub fn next_launch(ledger: &Ledger, pool: &WarmPool) -> (LaunchPath, LeadStat) {
    let leads = ledger.leads();
    if pool.enabled() && ledger.instances().any(|i| i.state == State::Stopped) {
        (LaunchPath::Start, leads.start)
    } else {
        (LaunchPath::Create, leads.create)
    }
}

/// Starts measured before the pool's own lead replaces the provisioning boots in sizing.
const SIZING_STARTS: u64 = 3;

/// The lead capacity sizing uses: the pool's measured start lead while the next
/// launch is a start from the pool and a few starts have been measured; `None` otherwise (the
/// sizing then uses the provisioning boots, the conservative lead).
pub fn sizing_lead(ledger: &Ledger, pool: &WarmPool) -> Option<LaunchLead> {
    match next_launch(ledger, pool) {
        (LaunchPath::Start, s) if s.samples >= SIZING_STARTS => Some(LaunchLead {
            mean_ms: s.mean_ms,
            high_ms: s.high_ms().unwrap_or(s.mean_ms),
        }),
        _ => None,
    }
}

/// What one tick decided, with a warm pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PoolTick {
    /// Events and the launch rule's result (as [`crate::tick`]).
    pub tick: Tick,
    /// Hosts taken from the pool this tick (already `starting` in the ledger: their power-on
    /// is owed, see [`Ledger::starts_owed`]).
    pub resumed: Vec<String>,
    /// New hosts to create for demand (the caller records them with [`Ledger::record_launch`]).
    pub create: u32,
    /// New hosts to create for the pool (the caller records them with
    /// [`Ledger::record_refill`]).
    pub refill: u32,
    /// Stopped hosts before this tick took any.
    pub stopped: u32,
    /// The pool's level after this tick: stopped, on their way in, and refills.
    pub level: u32,
}

/// One tick of the control loop with a warm pool: [`crate::tick`] plus the pool's timeouts,
/// and the launches split into starts from the pool, creates and refills.
pub fn tick_with_pool(
    ledger: &mut Ledger,
    settings: &Settings,
    pool: &WarmPool,
    obs: Option<&Observation>,
    timing: &Timing,
    now: Millis,
) -> PoolTick {
    let (fresh, events) = crate::observe(ledger, obs, Some(pool), timing, now);
    let counts = Counts::of(ledger);
    let launch = decide_launch(counts, settings, fresh, now, timing);
    let (resumed, create, refill) = plan(ledger, counts, &launch, settings, pool, now);
    PoolTick {
        tick: Tick { events, launch },
        resumed,
        create,
        refill,
        stopped: counts.stopped,
        level: ledger.pool_level(),
    }
}

/// Splits the launch rule's `launch` into starts from the pool and creates, and adds refills.
fn plan(
    ledger: &mut Ledger,
    counts: Counts,
    launch: &LaunchDecision,
    settings: &Settings,
    pool: &WarmPool,
    now: Millis,
) -> (Vec<String>, u32, u32) {
    let mut resumed = Vec::new();
    if pool.enabled() {
        for host in ledger.startable_hosts(now) {
            if resumed.len() as u32 >= launch.launch {
                break;
            }
            if ledger.take_from_pool(&host, now) {
                resumed.push(host);
            }
        }
    }
    let mut create = launch.launch - resumed.len() as u32;
    // With stopped hosts counted toward `max`, a create adds a host and a start does not.
    let all_room =
        || i64::from(settings.max_total) - i64::from(counts.existing) - i64::from(counts.stopped);
    if pool.count_toward_max {
        create = create.min(all_room().max(0) as u32);
    }
    let mut refill = 0;
    // No refill while demand launches: a refill joins as a spare before it stops, so beside a
    // launch it is a gateway more than the deficit asked for, and idle removals refill the
    // pool anyway once demand falls.
    if pool.enabled() && launch.hold == Some(LaunchHold::NoDeficit) {
        let want = i64::from(pool.size) - i64::from(ledger.refill_level(pool));
        let bulk_left = i64::from(settings.bulk_max) - i64::from(launch.launch);
        // Refills run (provision, join) before they stop: `max` bounds them like launches.
        let running_room = launch.room - i64::from(launch.launch);
        let mut n = want.min(bulk_left).min(running_room);
        if pool.count_toward_max {
            n = n.min(all_room() - i64::from(create));
        }
        refill = n.max(0) as u32;
    }
    (resumed, create, refill)
}

/// The warm pool's timeouts: starts not seen within `start_timeout` (powered off and checked
/// the first time, deleted the second), and stopped hosts beyond the pool's size (deleted).
pub fn expire(ledger: &mut Ledger, pool: &WarmPool, now: Millis) -> Vec<Event> {
    let mut events = Vec::new();
    for (key, i) in ledger.instances.iter_mut() {
        let Some(started) = i.started_at else {
            continue;
        };
        // A host whose agent announced it runs: never recalled for not showing up.
        if !matches!(i.state, State::Starting | State::Resuming)
            || now.saturating_sub(started) < pool.start_timeout_ms
            || i.proven_alive()
        {
            continue;
        }
        i.start_failures += 1;
        if i.start_failures >= 2 {
            // Still holds its launch until the delete is confirmed (`Instance::recalled`).
            i.set_state(State::LaunchFailed, now);
        } else {
            i.set_state(State::Stopping, now);
            i.to_pool = true;
        }
        events.push(Event::StartTimeout {
            host: key.clone(),
            failures: i.start_failures,
        });
    }
    let stopped = ledger.stopped_hosts();
    let excess = stopped.len().saturating_sub(pool.size as usize);
    if excess > 0 {
        // Hosts that failed a start go first, then the longest stopped.
        let mut order: Vec<(u32, usize, String)> = stopped
            .into_iter()
            .enumerate()
            .map(|(n, h)| {
                let failures = ledger.get(&h).map_or(0, |i| i.start_failures);
                (u32::MAX - failures, n, h)
            })
            .collect();
        order.sort();
        for (_, _, host) in order.into_iter().take(excess) {
            if let Some(i) = ledger.instances.get_mut(&key_of(&host)) {
                i.set_state(State::Deleting, now);
                i.to_pool = false;
                events.push(Event::PoolTrimmed { host });
            }
        }
    }
    events
}

/// A remove-me request with a warm pool (as [`crate::remove_request_as`], drained as `mode`):
/// an accepted idle or expired removal goes into the pool while it is below its size. Returns
/// the decision and whether the host goes into the pool.
pub fn remove_request_with_pool(
    ledger: &mut Ledger,
    pool: &WarmPool,
    inputs: &Inputs,
    host: &str,
    reason: Reason,
    mode: DrainMode,
) -> (RemovalDecision, bool) {
    remove_request_in(ledger, inputs, pool, host, reason, mode)
}

/// [`remove_request_with_pool`] on gathered [`Inputs`] (also what [`crate::remove_request_as`]
/// and the sidecar's shutdowns run, without a pool).
pub(crate) fn remove_request_in(
    ledger: &mut Ledger,
    inputs: &Inputs,
    pool: &WarmPool,
    host: &str,
    reason: Reason,
    mode: DrainMode,
) -> (RemovalDecision, bool) {
    // Whatever the answer, the host runs: it must never be failed at the boot timeout.
    ledger.seen_alive(host, inputs.now);
    let d = decide_removal(ledger, inputs, host, reason);
    match d {
        RemovalDecision::Accept { repeat: false, .. } => {
            let to_pool = ledger.pool_takes(pool, host, reason);
            ledger.approve_to(host, reason, inputs.now, mode, to_pool);
            (d, to_pool)
        }
        RemovalDecision::Accept { repeat: true, .. } => {
            (d, ledger.find(host).is_some_and(|i| i.to_pool))
        }
        RemovalDecision::Keep { .. } => (d, false),
    }
}

impl Ledger {
    /// Measured lead times per launch path.
    pub fn leads(&self) -> LeadTimes {
        self.leads
    }

    /// Stopped hosts, the longest stopped first (the order launches take them in).
    pub fn stopped_hosts(&self) -> Vec<String> {
        let mut v: Vec<(Millis, &String)> = self
            .instances
            .values()
            .filter(|i| i.state == State::Stopped)
            .map(|i| (i.state_since, &i.host))
            .collect();
        v.sort();
        v.into_iter().map(|(_, h)| h.clone()).collect()
    }

    /// Stopped hosts that may be started at `now` (not held after a refused power-on), the
    /// longest stopped first.
    pub fn startable_hosts(&self, now: Millis) -> Vec<String> {
        let held: std::collections::BTreeSet<&str> = self
            .instances
            .values()
            .filter(|i| i.power_hold_until.is_some_and(|t| t > now))
            .map(|i| i.host.as_str())
            .collect();
        let mut hosts = self.stopped_hosts();
        hosts.retain(|h| !held.contains(h.as_str()));
        hosts
    }

    /// The pool's level: stopped hosts, hosts on their way in (approved into the pool, or a
    /// failed start being powered off), and refills not yet in it.
    pub fn pool_level(&self) -> u32 {
        self.instances.values().filter(|i| in_pool(i)).count() as u32
    }

    /// What refills fill up to the pool's size: the pool's level plus, when removals go back
    /// into the pool, the hosts started from it that still run ("on loan": they come back
    /// after their call). So refills replace hosts lost (deleted, failed), and a pool that is
    /// merely lent out is not refilled (which would churn: create now, delete when the lent
    /// hosts come back to a full pool).
    pub fn refill_level(&self, pool: &WarmPool) -> u32 {
        let recycles = pool.recycle_expired || pool.recycle_idle;
        let on_loan = |i: &Instance| {
            recycles
                && i.started_at.is_some()
                && matches!(
                    i.state,
                    State::Starting | State::Resuming | State::Ready | State::Draining
                )
                && !i.to_pool
        };
        self.instances
            .values()
            .filter(|i| in_pool(i) || on_loan(i))
            .count() as u32
    }

    /// Whether an accepted removal of `name` for `reason` goes into the pool: a pool is set,
    /// the reason recycles, the host is one the lifecycle manager knows by this name (not
    /// adopted), and the pool (stopped hosts and hosts on their way in, refills not counted)
    /// is below its size without this host.
    pub fn pool_takes(&self, pool: &WarmPool, name: &str, reason: Reason) -> bool {
        let Some(host) = self.find(name) else {
            return false;
        };
        if !pool.enabled() || !pool.recycles(reason) || host.origin == Origin::Adopted {
            return false;
        }
        // Refills on their way do not count here: a host that exists now goes into the pool
        // before a refill that is still minutes from joining (the refill then stays a spare).
        let members = |i: &Instance| in_pool(i) && !i.refill;
        let others = self
            .instances
            .values()
            .filter(|i| members(i) && i.host != host.host)
            .count() as u32;
        others < pool.size
    }

    /// Takes a stopped host from the pool for a launch: its power-on is owed. Returns false
    /// when the host is not stopped.
    pub fn take_from_pool(&mut self, host: &str, now: Millis) -> bool {
        let key = key_of(host);
        if self.get(&key).is_none_or(|i| i.state != State::Stopped) {
            return false;
        }
        // Powered off within the stop grace: Jicofo may still count it; it joins again later.
        self.set_counted(&key, false);
        if let Some(i) = self.instances.get_mut(&key) {
            i.set_state(State::Starting, now);
            i.started_at = Some(now);
            i.seen_at = None;
            i.reason = None;
            i.approved_at = None;
            i.stopped_at = None;
            i.to_pool = false;
            i.refill = false;
        }
        true
    }

    /// Records a host created to refill the pool *before* the create call (like
    /// [`Ledger::record_launch`]); it is not a launch for demand.
    pub fn record_refill(&mut self, host: &str, now: Millis) {
        self.record_launch(host, Origin::Scaler, now);
        if let Some(i) = self.in_state(host, State::Requested) {
            i.refill = true;
        }
    }

    /// The lifecycle manager confirmed the power-on (status `on`).
    pub fn start_confirmed(&mut self, host: &str, now: Millis) {
        if let Some(i) = self.in_state(host, State::Starting) {
            i.set_state(State::Resuming, now);
            i.power_refusals = 0;
            i.power_hold_until = None;
        }
    }

    /// A power-on failed. Transient: retried after a backoff (the host keeps its launch until
    /// the start timeout). Refused outright at the first attempt (the power API said no, so
    /// nothing was powered on): the host goes back into the pool as it was, and is not taken
    /// again for [`POWER_REFUSAL_HOLD_MS`] (doubling with each refusal in a row, at most
    /// [`POWER_REFUSAL_HOLD_MAX_MS`]); the launch it was taken for is freed, so the next tick
    /// creates instead: a refusal never deletes the pool. Refused after an attempt whose answer
    /// was lost (that one may have powered it on): deleted, as the host may run unaccounted.
    pub fn start_error(&mut self, host: &str, now: Millis, error: &str, definitive: bool) {
        let Some(i) = self.in_state(host, State::Starting) else {
            return;
        };
        if definitive && i.attempts > 0 {
            i.set_state(State::LaunchFailed, now);
            i.attempts = 1;
        } else if definitive {
            i.set_state(State::Stopped, now);
            i.started_at = None;
            i.stopped_at = Some(now);
            i.power_refusals += 1;
            let hold = POWER_REFUSAL_HOLD_MS
                .saturating_mul(1 << (i.power_refusals - 1).min(16))
                .min(POWER_REFUSAL_HOLD_MAX_MS);
            i.power_hold_until = Some(now.saturating_add(hold));
            i.attempts = 1;
        } else {
            i.attempts += 1;
            i.retry_at = Some(now.saturating_add(retry_delay_ms(i.attempts)));
        }
        i.last_error = Some(error.to_string());
    }

    /// The lifecycle manager confirmed the power-off (status `off`): the host is in the pool.
    pub fn stop_done(&mut self, host: &str, now: Millis) {
        if let Some(i) = self.in_state(host, State::Stopping) {
            i.set_state(State::Stopped, now);
            // Jibri is gone: Jicofo stops counting it shortly. The approval (reason, time)
            // stays until the host is taken again: while Jicofo still counts it, it is still
            // reserved as a pending removal (`Instance::leaving`).
            i.stopped_at.get_or_insert(now);
            i.started_at = None;
            i.to_pool = false;
        }
    }

    /// A power-off failed. Transient: retried next tick. Definitive (the manager cannot power
    /// it off): the host is deleted instead.
    pub fn stop_error(&mut self, host: &str, now: Millis, error: &str, definitive: bool) {
        if let Some(i) = self.in_state(host, State::Stopping) {
            if definitive {
                let next = if i.recalled() {
                    State::LaunchFailed
                } else {
                    State::Deleting
                };
                i.set_state(next, now);
                i.to_pool = false;
            }
            i.attempts += 1;
            if !definitive {
                i.retry_at = Some(now.saturating_add(retry_delay_ms(i.attempts)));
            }
            i.last_error = Some(error.to_string());
        }
    }

    /// Reconciliation found a host with our prefix, powered off, that the ledger does not
    /// know (left from a previous run): it joins the pool. Returns whether it was added.
    pub fn learn_stopped(&mut self, host: &str, now: Millis) -> bool {
        let key = key_of(host);
        if key.is_empty() || self.get(&key).is_some() {
            return false;
        }
        let mut i = Instance::new(&key, State::Stopped, Origin::Scaler, now);
        i.stopped_at = Some(now);
        self.instances.insert(key, i);
        true
    }

    /// Hosts whose power-on is owed.
    pub fn starts_owed(&self) -> Vec<String> {
        self.owed(State::Starting)
    }

    /// Hosts whose power-off is owed.
    pub fn stops_owed(&self) -> Vec<String> {
        self.owed(State::Stopping)
    }

    /// Power-ons owed whose backoff after a failure has passed at `now`.
    pub fn starts_due(&self, now: Millis) -> Vec<String> {
        self.due(State::Starting, now)
    }

    /// Power-offs owed whose backoff after a failure has passed at `now`.
    pub fn stops_due(&self, now: Millis) -> Vec<String> {
        self.due(State::Stopping, now)
    }

    fn due(&self, state: State, now: Millis) -> Vec<String> {
        self.instances
            .values()
            .filter(|i| i.state == state && i.retry_at.is_none_or(|t| t <= now))
            .map(|i| i.host.clone())
            .collect()
    }

    fn owed(&self, state: State) -> Vec<String> {
        self.instances
            .values()
            .filter(|i| i.state == state)
            .map(|i| i.host.clone())
            .collect()
    }
}

/// Counted in the pool's level.
fn in_pool(i: &Instance) -> bool {
    match i.state {
        State::Stopped => true,
        State::Draining | State::Stopping => i.to_pool,
        State::Requested | State::Booting | State::Ready => i.refill,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
