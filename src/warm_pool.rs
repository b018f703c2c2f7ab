//! `serve`'s side of the warm pool (issue 13): the decisions and lifecycle calls for starting,
//! stopping and refilling pooled hosts. The rules are pure code in the policy crate
//! (`policy::tick_with_pool`, `policy::remove_request_with_pool`); this module only records and
//! acts. See docs/lifecycle.md, "Warm pool".

use std::sync::Arc;
use std::time::{Duration, Instant};

use policy::{Event, Ledger, Observation, Origin, Reason, RemovalDecision, Settings, State};
use serde::{Deserialize, Serialize};

use crate::decision::{Decision, Kind, Outcome, Record};
use crate::lifecycle::{LifecycleError, PowerState};
use crate::ops::now_ms;
use crate::service::Service;

/// `[warm_pool]`: stopped hosts powered on instead of provisioned (docs/configuration.md).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WarmPoolConfig {
    /// Stopped hosts to keep (0: no pool).
    pub size: u32,
    /// Idle removals power the host off into the pool (while it is below its size).
    pub recycle_idle: bool,
    /// Expired removals power the host off into the pool (single-use gateways).
    pub recycle_expired: bool,
    /// Stopped hosts count toward `max` (default: no, `max` bounds running gateways).
    pub count_toward_max: bool,
    /// A start not seen in Jicofo after this long is powered off and checked (twice: deleted).
    #[serde(with = "crate::duration")]
    pub start_timeout: Duration,
}

impl Default for WarmPoolConfig {
    fn default() -> Self {
        let p = policy::WarmPool::default();
        WarmPoolConfig {
            size: p.size,
            recycle_idle: p.recycle_idle,
            recycle_expired: p.recycle_expired,
            count_toward_max: p.count_toward_max,
            start_timeout: Duration::from_millis(p.start_timeout_ms),
        }
    }
}

impl WarmPoolConfig {
    /// The policy's view of it.
    pub fn to_policy(&self) -> policy::WarmPool {
        policy::WarmPool {
            size: self.size,
            recycle_idle: self.recycle_idle,
            recycle_expired: self.recycle_expired,
            count_toward_max: self.count_toward_max,
            start_timeout_ms: crate::duration::millis(self.start_timeout),
        }
    }

    /// Problems that stop `serve`, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.size > 1000 {
            p.push(format!("warm_pool.size: {} must be in 0..=1000", self.size));
        }
        if self.start_timeout.is_zero() {
            p.push("warm_pool.start_timeout: must be positive".into());
        }
        p
    }
}

/// What the pool-aware tick decided, besides the policy's `Tick`.
pub struct Launches {
    /// The policy's tick (events, launch decision).
    pub tick: policy::Tick,
    /// New hosts recorded for demand (create owed).
    pub created: Vec<String>,
    /// Hosts taken from the pool (power-on owed).
    pub resumed: Vec<String>,
    /// New hosts recorded to refill the pool (create owed).
    pub refills: Vec<String>,
    /// The pool's level after the tick.
    pub level: u32,
}

/// The controller's tick (hook in `controller::step`): `policy::tick_with_pool` (the same as
/// `policy::tick` without a pool), and the new host names recorded before any call.
pub fn tick(
    pool: &WarmPoolConfig,
    names: Option<&str>,
    ledger: &mut Ledger,
    settings: &Settings,
    obs: Option<&Observation>,
    timing: &policy::Timing,
    now: policy::Millis,
) -> Launches {
    let t = policy::tick_with_pool(ledger, settings, &pool.to_policy(), obs, timing, now);
    // `names` is the prefix of new host names; `None` while the lifecycle manager refuses
    // creates for good (issue 15): no new host then, but starts from the pool still go.
    let (prefix, creates, refills) = match names {
        Some(p) => (p, t.create, t.refill),
        None => ("", 0, 0),
    };
    let mut created = Vec::new();
    for _ in 0..creates {
        let host = crate::hostname::new_host_name(prefix, ledger);
        ledger.record_launch(&host, Origin::Scaler, now);
        created.push(host);
    }
    let mut refill_hosts = Vec::new();
    for _ in 0..refills {
        let host = crate::hostname::new_host_name(prefix, ledger);
        ledger.record_refill(&host, now);
        refill_hosts.push(host);
    }
    Launches {
        tick: t.tick,
        created,
        resumed: t.resumed,
        refills: refill_hosts,
        level: t.level,
    }
}

/// Records the pool's part of a tick: one decision for starts from the pool, one for refills
/// (creates are recorded by the controller as before).
pub fn record_launches(svc: &Service, l: &Launches, pool: &WarmPoolConfig, now: policy::Millis) {
    let (level, size) = (l.level, pool.size);
    if !l.resumed.is_empty() {
        let hosts = l.resumed.clone();
        svc.record(Record::new(
            now,
            Decision::Pool(PoolDecision::Start { hosts, level, size }),
        ));
    }
    if !l.refills.is_empty() {
        let hosts = l.refills.clone();
        svc.record(Record::new(
            now,
            Decision::Pool(PoolDecision::Refill { hosts, level, size }),
        ));
    }
}

/// The decision for a warm-pool ledger event (`None` for events that are not the pool's).
pub fn event_decision(e: &Event) -> Option<Decision> {
    let p = match e {
        Event::Resumed { host, lead_ms } => PoolDecision::Resumed {
            host: host.clone(),
            lead_ms: *lead_ms,
        },
        Event::StartTimeout { host, failures } => PoolDecision::StartTimeout {
            host: host.clone(),
            failures: *failures,
        },
        Event::PoolTrimmed { host } => PoolDecision::Trimmed { host: host.clone() },
        _ => return None,
    };
    Some(Decision::Pool(p))
}

/// A warm-pool decision (one variant of [`Decision`]), with its numbers.
#[derive(Clone, Debug, PartialEq)]
pub enum PoolDecision {
    /// Hosts taken from the pool for a launch (power-on owed).
    Start {
        /// The hosts.
        hosts: Vec<String>,
        /// The pool's level after the tick.
        level: u32,
        /// The pool's size.
        size: u32,
    },
    /// Hosts created to refill the pool.
    Refill {
        /// The hosts.
        hosts: Vec<String>,
        /// The pool's level (refills included) after the tick.
        level: u32,
        /// The pool's size.
        size: u32,
    },
    /// A power-on confirmed by status.
    Started {
        /// The host.
        host: String,
        /// How long the call took.
        elapsed_ms: u64,
    },
    /// A power-off confirmed by status: the host is in the pool.
    Stopped {
        /// The host.
        host: String,
        /// How long the call took.
        elapsed_ms: u64,
    },
    /// A power-on refused: the host is deleted.
    StartRefused {
        /// The host.
        host: String,
        /// The refusal.
        error: String,
    },
    /// A power-off refused: the host is deleted instead.
    StopRefused {
        /// The host.
        host: String,
        /// The refusal.
        error: String,
    },
    /// A power call failed; retried next tick (the host stays in the ledger).
    PowerRetry {
        /// The host.
        host: String,
        /// `start` or `stop`.
        action: &'static str,
        /// The error.
        error: String,
    },
    /// A host started from the pool is counted by Jicofo.
    Resumed {
        /// The host.
        host: String,
        /// Start (power-on) to seen.
        lead_ms: u64,
    },
    /// A start not seen within the start timeout.
    StartTimeout {
        /// The host.
        host: String,
        /// Consecutive failed starts.
        failures: u32,
    },
    /// A stopped host beyond the pool's size is deleted.
    Trimmed {
        /// The host.
        host: String,
    },
    /// Reconciliation found a powered-off host with our prefix: it joins the pool.
    Learned {
        /// The host.
        host: String,
    },
}

impl PoolDecision {
    /// The kind label.
    pub fn kind(&self) -> Kind {
        match self {
            PoolDecision::Start { .. } => Kind::Launch,
            PoolDecision::Resumed { .. } => Kind::Seen,
            PoolDecision::StartTimeout { .. } => Kind::Timeout,
            PoolDecision::Learned { .. } => Kind::Reconcile,
            _ => Kind::Pool,
        }
    }

    /// The outcome label.
    pub fn outcome(&self) -> Outcome {
        match self {
            PoolDecision::Start { .. } | PoolDecision::Started { .. } => Outcome::Started,
            PoolDecision::Refill { .. } => Outcome::Refill,
            PoolDecision::Stopped { .. } | PoolDecision::Learned { .. } => Outcome::Stopped,
            PoolDecision::StartRefused { .. } => Outcome::LaunchFailed,
            PoolDecision::StopRefused { .. } | PoolDecision::Trimmed { .. } => Outcome::Deleting,
            PoolDecision::PowerRetry { .. } => Outcome::Retry,
            PoolDecision::Resumed { .. } => Outcome::Ready,
            PoolDecision::StartTimeout { failures, .. } if *failures >= 2 => Outcome::LaunchFailed,
            PoolDecision::StartTimeout { .. } => Outcome::Stopping,
        }
    }

    /// The host concerned, if one.
    pub fn host(&self) -> Option<&str> {
        match self {
            PoolDecision::Start { .. } | PoolDecision::Refill { .. } => None,
            PoolDecision::Started { host, .. }
            | PoolDecision::Stopped { host, .. }
            | PoolDecision::StartRefused { host, .. }
            | PoolDecision::StopRefused { host, .. }
            | PoolDecision::PowerRetry { host, .. }
            | PoolDecision::Resumed { host, .. }
            | PoolDecision::StartTimeout { host, .. }
            | PoolDecision::Trimmed { host }
            | PoolDecision::Learned { host } => Some(host),
        }
    }

    /// Why, with the numbers.
    pub fn why(&self) -> String {
        match self {
            PoolDecision::Start { hosts, level, size } => format!(
                "start {} from the warm pool (level {level} of {size} after this tick); hosts {}",
                hosts.len(),
                hosts.join(", ")
            ),
            PoolDecision::Refill { hosts, level, size } => format!(
                "warm pool at {level} of {size} (refills and hosts on loan included): creating {}; they join as spares and go into the pool by idle removal; hosts {}",
                hosts.len(),
                hosts.join(", ")
            ),
            PoolDecision::Started { elapsed_ms, .. } => {
                format!("powered on (status on) in {elapsed_ms} ms")
            }
            PoolDecision::Stopped { elapsed_ms, .. } => {
                format!("powered off (status off) in {elapsed_ms} ms: in the warm pool")
            }
            PoolDecision::StartRefused { error, .. } => {
                format!("power-on refused, deleting it: {error}")
            }
            PoolDecision::StopRefused { error, .. } => {
                format!("power-off refused, deleting it instead: {error}")
            }
            PoolDecision::PowerRetry { action, error, .. } => format!(
                "power {action} failed, retrying next tick (the host stays in the ledger): {error}"
            ),
            PoolDecision::Resumed { lead_ms, .. } => format!(
                "counted by Jicofo {:.0}s after its start from the warm pool",
                *lead_ms as f64 / 1000.0
            ),
            PoolDecision::StartTimeout { failures, .. } if *failures >= 2 => format!(
                "started from the pool, not seen within the start timeout ({failures} times in a row): deleting it"
            ),
            PoolDecision::StartTimeout { .. } => "started from the pool, not seen within the start timeout: powering it off and checking it (its launch is held until then)".into(),
            PoolDecision::Trimmed { .. } => {
                "stopped host beyond the warm pool's size: deleting it".into()
            }
            PoolDecision::Learned { .. } => {
                "powered-off host with our prefix, unknown to the ledger: joins the warm pool".into()
            }
        }
    }
}

/// The remove-me hook (in `Service::remove_me`): `policy::remove_request_with_pool` (the same
/// as `policy::remove_request_as` without a pool).
#[allow(clippy::too_many_arguments)]
pub fn remove_request(
    pool: &WarmPoolConfig,
    ledger: &mut Ledger,
    settings: &Settings,
    obs: Option<&Observation>,
    lifecycle_up: bool,
    timing: &policy::Timing,
    now: policy::Millis,
    host: &str,
    reason: Reason,
    mode: policy::DrainMode,
) -> RemovalDecision {
    let (d, to_pool) = policy::remove_request_with_pool(
        ledger,
        settings,
        &pool.to_policy(),
        obs,
        lifecycle_up,
        timing,
        now,
        host,
        reason,
        mode,
    );
    if to_pool && matches!(d, RemovalDecision::Accept { repeat: false, .. }) {
        tracing::info!(
            host,
            reason = reason.as_str(),
            "approved removal goes into the warm pool (power off instead of delete)"
        );
    }
    d
}

/// Powers `host` on (`start`) or off, confirmed by status, and records the outcome as leader
/// (hook: the controller's `spawn_call`, one call per host at a time).
pub async fn power(svc: &Arc<Service>, host: &str, start: bool) {
    let began = Instant::now();
    let result = if start {
        svc.lifecycle().start(host).await
    } else {
        svc.lifecycle().stop(host).await
    };
    let elapsed_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
    let h = host.to_string();
    let d = match (&result, start) {
        (Ok(()), true) => PoolDecision::Started {
            host: h,
            elapsed_ms,
        },
        (Ok(()), false) => PoolDecision::Stopped {
            host: h,
            elapsed_ms,
        },
        (Err(e), true) if e.is_definitive() => PoolDecision::StartRefused {
            host: h,
            error: e.to_string(),
        },
        (Err(e), false) if e.is_definitive() => PoolDecision::StopRefused {
            host: h,
            error: e.to_string(),
        },
        (Err(e), _) => PoolDecision::PowerRetry {
            host: h,
            action: if start { "start" } else { "stop" },
            error: e.to_string(),
        },
    };
    let now = now_ms();
    let Some(fence) = svc.lease() else {
        svc.record(
            Record::new(now, Decision::Pool(d))
                .refused("not the leader any more; the new leader repeats the call".into()),
        );
        return;
    };
    let stored = svc
        .apply(Some(&fence), |snap, _, _| match (&result, start) {
            (Ok(()), true) => snap.ledger.start_confirmed(host, now),
            (Ok(()), false) => snap.ledger.stop_done(host, now),
            (Err(e), true) => snap
                .ledger
                .start_error(host, now, &e.to_string(), e.is_definitive()),
            (Err(e), false) => snap
                .ledger
                .stop_error(host, now, &e.to_string(), e.is_definitive()),
        })
        .await;
    match stored {
        Ok(()) => svc.record(Record::new(now, Decision::Pool(d))),
        Err(e) if e.fenced() => {
            svc.record(Record::new(now, Decision::Pool(d)).refused(e.to_string()))
        }
        Err(e) => {
            tracing::error!(host, error = %e, "cannot store the power call's outcome; it is repeated")
        }
    }
    svc.wake();
}

/// Reconciliation hook: hosts with our prefix unknown to the ledger that are powered off (left
/// from a previous run) join the pool instead of new hosts being created. At most the pool's
/// size is asked about per run. Returns the hosts learned.
pub async fn learn_stopped(svc: &Arc<Service>, orphans: &[String]) -> Vec<String> {
    let size = svc.cfg.warm_pool.size as usize;
    if size == 0 {
        return Vec::new();
    }
    let mut stopped = Vec::new();
    for host in orphans.iter().take(size) {
        match svc.lifecycle().power_status(host).await {
            Ok(PowerState::Off) => stopped.push(host.clone()),
            Ok(_) => {}
            Err(LifecycleError::Unsupported(_)) => return Vec::new(),
            Err(e) => {
                tracing::warn!(host, error = %e, "reconciliation: cannot read the power state")
            }
        }
    }
    if stopped.is_empty() {
        return stopped;
    }
    let Some(fence) = svc.lease() else {
        return Vec::new();
    };
    let now = now_ms();
    let learned = svc
        .apply(Some(&fence), |snap, _, _| {
            stopped
                .iter()
                .filter(|h| snap.ledger.learn_stopped(h, now))
                .cloned()
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    for h in &learned {
        let d = Decision::Pool(PoolDecision::Learned { host: h.clone() });
        svc.record(Record::new(now, d));
    }
    learned
}

/// The `warm_pool` part of `/scaler/status`.
pub fn status(pool: &WarmPoolConfig, ledger: &Ledger) -> serde_json::Value {
    let p = pool.to_policy();
    let by_state = ledger.count_by_state();
    let n = |s: State| by_state.get(&s).copied().unwrap_or(0);
    let (path, lead) = policy::next_launch(ledger, &p);
    serde_json::json!({
        "size": pool.size,
        "level": ledger.pool_level(),
        "refill_level": ledger.refill_level(&p),
        "stopped": n(State::Stopped),
        "starting": n(State::Starting) + n(State::Resuming),
        "stopping": n(State::Stopping),
        "stopped_hosts": ledger.stopped_hosts(),
        "count_toward_max": pool.count_toward_max,
        "next_launch": path,
        "next_launch_lead_s": lead.high_ms().map(|ms| ms as f64 / 1000.0),
        "lead_s": {
            "create": ledger.leads().create.high_ms().map(|ms| ms as f64 / 1000.0),
            "start": ledger.leads().start.high_ms().map(|ms| ms as f64 / 1000.0),
        },
    })
}
