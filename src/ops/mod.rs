//! Operations: Prometheus metrics, the audit trail, the per-tick history of the status page,
//! the page itself, systemd notification and the `status` command.
//!
//! These are observers: they receive typed decisions and readings and never call the
//! service. The service calls in through a few hooks: [`Ops::record`] for every decision,
//! [`Ops::tick_done`] from the control loop, the boot-time observation from `Event::Seen`, and
//! the lifecycle backends' call observer.

pub mod audit;
pub mod history;
pub mod metrics;
pub mod status_cli;
pub mod systemd;
pub mod ui;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use policy::Millis;
use serde::{Deserialize, Serialize};

pub use audit::{Audit, AuditConfig, AuditError};
pub use metrics::{Metrics, ShardView, View, WarmPoolView};

use crate::decision::Record;

/// Wall-clock time in milliseconds since the Unix epoch (the only clock read of the service).
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Who may read `GET /metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    /// No token needed (default): restrict it in nginx or keep `listen` on loopback.
    #[default]
    Open,
    /// An admin token, like every other API route (`auth.mode = "none"` lets everyone in).
    Token,
}

/// `[metrics]` configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `open` (default) or `token`.
    pub auth: MetricsAccess,
    /// Per-tick samples kept for the status page's chart (`GET {prefix}/history`).
    pub history_samples: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            auth: MetricsAccess::default(),
            history_samples: history::DEFAULT_SAMPLES,
        }
    }
}

impl MetricsConfig {
    /// What is wrong with this section (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let max = history::MAX_SAMPLES;
        if (10..=max).contains(&self.history_samples) {
            Vec::new()
        } else {
            vec![format!(
                "metrics.history_samples: {} must be in 10..={max}",
                self.history_samples
            )]
        }
    }
}

/// The service's operations side: metrics, audit trail and the control loop's heartbeat.
#[derive(Debug, Default)]
pub struct Ops {
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// The audit file writer.
    pub audit: Audit,
    /// When the control loop last finished a tick (ms since the epoch; 0: never).
    last_tick: AtomicU64,
    /// Per-tick samples for the status page.
    pub history: history::History,
    /// Refused requests by caller and reason (log lines and the status page).
    pub refusals: crate::auth::refusals::RefusalLog,
}

impl Ops {
    /// Records a decision: its log line, its metrics and its audit line.
    pub fn record(&self, r: &Record) {
        r.log();
        self.metrics.decision(r);
        self.history.decision(r);
        if !self.audit.send(r) {
            self.metrics.audit_dropped();
            tracing::warn!(
                kind = r.kind().as_str(),
                "audit queue full: decision not written to the audit file"
            );
        }
    }

    /// The control loop's heartbeat: a tick finished after `took`.
    pub fn tick_done(&self, took: Duration) {
        self.last_tick.store(now_ms(), Ordering::Relaxed);
        self.metrics.tick(took.as_secs_f64());
    }

    /// When the last tick finished (ms since the epoch; 0: never).
    pub fn last_tick_ms(&self) -> u64 {
        self.last_tick.load(Ordering::Relaxed)
    }

    /// The lifecycle call observer that feeds the metrics.
    pub fn lifecycle_observer(&self) -> crate::lifecycle::CallObserver {
        let metrics = self.metrics.clone();
        Arc::new(move |c| metrics.lifecycle_call(c))
    }
}
