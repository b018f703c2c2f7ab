//! `serve`'s side of the warm pool (issue 13): the decisions and lifecycle calls for starting,
//! stopping and refilling pooled hosts. The rules are pure code in the policy crate
//! (`policy::tick_with_pool`, `policy::remove_request_with_pool`); this module only records and
//! acts. See docs/lifecycle.md, "Warm pool".

use policy::Event;

use crate::service::{Decision, Service};

/// The decision for a warm-pool ledger event (`None` for events that are not the pool's).
pub fn event_decision(e: &Event) -> Option<Decision> {
    Some(match e {
        Event::Resumed { host, lead_ms } => Service::decision(
            "seen",
            Some(host),
            "ready",
            format!(
                "counted by Jicofo {:.0}s after its start from the warm pool",
                *lead_ms as f64 / 1000.0
            ),
            None,
        ),
        Event::StartTimeout { host, failures } if *failures >= 2 => Service::decision(
            "timeout",
            Some(host),
            "launch_failed",
            format!("started from the pool, not seen within the start timeout ({failures} times in a row): deleting it"),
            None,
        ),
        Event::StartTimeout { host, .. } => Service::decision(
            "timeout",
            Some(host),
            "stopping",
            "started from the pool, not seen within the start timeout: powering it off and checking it (its launch is held until then)".into(),
            None,
        ),
        Event::PoolTrimmed { host } => Service::decision(
            "pool",
            Some(host),
            "deleting",
            "stopped host beyond the warm pool's size: deleting it".into(),
            None,
        ),
        _ => return None,
    })
}

use std::sync::Arc;
use std::time::{Duration, Instant};

use policy::{Ledger, Observation, Origin, Reason, RemovalDecision, Settings, State};
use serde::{Deserialize, Serialize};
use tokio_util::task::TaskTracker;

use crate::lifecycle::{LifecycleError, PowerState};
use crate::service::now_ms;

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
    prefix: &str,
    ledger: &mut Ledger,
    settings: &Settings,
    obs: Option<&Observation>,
    timing: &policy::Timing,
    now: policy::Millis,
) -> Launches {
    let t = policy::tick_with_pool(ledger, settings, &pool.to_policy(), obs, timing, now);
    let mut created = Vec::new();
    for _ in 0..t.create {
        let host = crate::controller::new_host_name(prefix, ledger);
        ledger.record_launch(&host, Origin::Scaler, now);
        created.push(host);
    }
    let mut refills = Vec::new();
    for _ in 0..t.refill {
        let host = crate::controller::new_host_name(prefix, ledger);
        ledger.record_refill(&host, now);
        refills.push(host);
    }
    Launches {
        tick: t.tick,
        created,
        resumed: t.resumed,
        refills,
        level: t.level,
    }
}

/// Records the pool's part of a tick: one decision line for starts from the pool, one for
/// refills (creates are recorded by the controller as before).
pub fn record_launches(svc: &Service, l: &Launches, pool: &WarmPoolConfig) {
    if !l.resumed.is_empty() {
        svc.record(Service::decision(
            "launch",
            None,
            &format!("start {}", l.resumed.len()),
            format!(
                "from the warm pool (level {} of {} after this tick); hosts {}",
                l.level,
                pool.size,
                l.resumed.join(", ")
            ),
            None,
        ));
    }
    if !l.refills.is_empty() {
        svc.record(Service::decision(
            "pool",
            None,
            &format!("refill {}", l.refills.len()),
            format!(
                "warm pool at {} of {} (refills included): creating hosts {}; they join as spares and go into the pool by idle removal",
                l.level,
                pool.size,
                l.refills.join(", ")
            ),
            None,
        ));
    }
}

/// The remove-me hook (in `Service::remove_me`): `policy::remove_request_with_pool`.
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

/// Starts the owed power calls (hook after the controller's creates and deletes), one per host
/// at a time (shared with creates and deletes through `Service::calls`).
pub fn spawn_power_calls(
    svc: &Arc<Service>,
    tasks: &TaskTracker,
    starts: Vec<String>,
    stops: Vec<String>,
) {
    let calls = starts
        .into_iter()
        .map(|h| (h, true))
        .chain(stops.into_iter().map(|h| (h, false)));
    for (host, start) in calls {
        {
            let Ok(mut busy) = svc.calls.lock() else {
                return;
            };
            if !busy.insert(host.clone()) {
                continue;
            }
        }
        let svc = Arc::clone(svc);
        tasks.spawn(async move {
            power(&svc, &host, start).await;
            if let Ok(mut busy) = svc.calls.lock() {
                busy.remove(&host);
            }
        });
    }
}

/// Powers `host` on (`start`) or off, confirmed by status, and records the outcome as leader.
async fn power(svc: &Arc<Service>, host: &str, start: bool) {
    let began = Instant::now();
    let result = if start {
        svc.lifecycle.start(host).await
    } else {
        svc.lifecycle.stop(host).await
    };
    let ms = began.elapsed().as_millis();
    let (kind, outcome, why) = match (&result, start) {
        (Ok(()), true) => (
            "start",
            "started",
            format!("powered on (status on) in {ms} ms"),
        ),
        (Ok(()), false) => (
            "stop",
            "stopped",
            format!("powered off (status off) in {ms} ms: in the warm pool"),
        ),
        (Err(e), true) if e.is_definitive() => (
            "start",
            "launch_failed",
            format!("power-on refused, deleting it: {e}"),
        ),
        (Err(e), false) if e.is_definitive() => (
            "stop",
            "deleting",
            format!("power-off refused, deleting it instead: {e}"),
        ),
        (Err(e), _) => (
            if start { "start" } else { "stop" },
            "retry",
            format!("power call failed, retrying next tick (the host stays in the ledger): {e}"),
        ),
    };
    let Some(fence) = svc.lease() else {
        tracing::info!(
            host,
            kind,
            "not the leader any more; the new leader repeats the call"
        );
        return;
    };
    let now = now_ms();
    let stored = svc
        .mutate(Some(&fence), |snap, _| match (&result, start) {
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
        Ok(()) => svc.record(Service::decision(kind, Some(host), outcome, why, None)),
        Err(e) => {
            tracing::error!(host, kind, error = %e, "cannot store the power call's outcome; it is repeated")
        }
    }
    svc.wake.notify_one();
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
        match svc.lifecycle.power_status(host).await {
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
        .mutate(Some(&fence), |snap, _| {
            stopped
                .iter()
                .filter(|h| snap.ledger.learn_stopped(h, now))
                .cloned()
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    for h in &learned {
        svc.record(Service::decision(
            "reconcile",
            Some(h),
            "stopped",
            "powered-off host with our prefix, unknown to the ledger: joins the warm pool".into(),
            None,
        ));
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
