//! `serve`'s side of the warm pool: its configuration, the remove-me hook and the status
//! section. The rules are pure code in the policy crate
//! (`policy::tick_with_pool`, `policy::remove_request_with_pool`); the power calls and their
//! decisions are the controller's (`controller::pool`). See docs/lifecycle.md, "Warm pool".

use std::time::Duration;

use policy::{Ledger, Reason, RemovalDecision, State};
use serde::{Deserialize, Serialize};

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

/// The remove-me hook (in `Service::remove_me`): `policy::remove_request_with_pool` (the same
/// as `policy::remove_request_as` without a pool).
pub fn remove_request(
    pool: &WarmPoolConfig,
    ledger: &mut Ledger,
    inputs: &policy::Inputs,
    host: &str,
    reason: Reason,
    mode: policy::DrainMode,
) -> RemovalDecision {
    let (d, to_pool) =
        policy::remove_request_with_pool(ledger, &pool.to_policy(), inputs, host, reason, mode);
    if to_pool && matches!(d, RemovalDecision::Accept { repeat: false, .. }) {
        tracing::info!(
            host,
            reason = reason.as_str(),
            "approved removal goes into the warm pool (power off instead of delete)"
        );
    }
    d
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
