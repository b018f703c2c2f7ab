//! Operations: Prometheus metrics, the audit trail, systemd notification and the `status`
//! command.
//!
//! The service calls in through a few hooks: [`Ops::record`] from `Service::record` (every
//! decision), [`Ops::tick_done`] from the control loop, the boot-time observation from
//! `Event::Seen`, and the lifecycle backends' call observer. Everything else (breaker
//! watching, the systemd watchdog) runs beside the service in [`spawn_tasks`].

pub mod audit;
pub mod metrics;
pub mod status_cli;
pub mod systemd;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use policy::Counts;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use audit::{Audit, AuditConfig, AuditError};
pub use metrics::{Metrics, ShardView, View};

use crate::lifecycle::BreakerState;
use crate::service::{Decision, Service, now_ms};

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
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `open` (default) or `token`.
    pub auth: MetricsAccess,
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
}

impl Ops {
    /// The hook of `Service::record`: count the decision and queue its audit line.
    pub fn record(&self, d: &Decision) {
        self.metrics.decision(d);
        if !self.audit.send(d) {
            self.metrics.audit_dropped();
            tracing::warn!(
                kind = d.kind,
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

impl Service {
    /// The state mirrored by the scrape-time gauges.
    pub async fn metrics_view(&self) -> View {
        let now = now_ms();
        let core = self.core.lock().await;
        let merged = crate::jicofo::merge(&core.shards, now, self.timing.stats_max_age_ms);
        let ledger = &core.snap.ledger;
        let counts = Counts::of(ledger);
        let shards = core
            .shards
            .iter()
            .map(|s| ShardView {
                name: s.name.clone(),
                total: s.last.map(|r| r.total),
                available: s.last.map(|r| r.available),
                age_s: s
                    .last
                    .map(|r| now.saturating_sub(r.taken_at) as f64 / 1000.0),
                fresh: merged.fresh.contains(&s.name),
                errors: s.errors,
            })
            .collect();
        let view = View {
            by_state: ledger.count_by_state().into_iter().collect(),
            in_flight: counts.in_flight,
            pending_removal: counts.pending_removal,
            unmanaged: ledger.offset(),
            settings: core.snap.settings,
            shards,
            merged: merged.observation.map(|o| (o.total, o.available)),
            disagreement: merged.disagreement,
            ..View::default()
        };
        drop(core);
        View {
            backend: self.lifecycle.backend_name(),
            lifecycle_up: self.lifecycle.is_up(),
            nodes: self.lifecycle.nodes(),
            create_refusals: self.lifecycle.create_refusals(),
            launch_hold_s: self.lifecycle.launch_hold_remaining().as_secs_f64(),
            leader: self.is_leader(),
            ready: self.is_ready(),
            start_time_s: self.started_at as f64 / 1000.0,
            last_tick_s: self.ops.last_tick_ms() as f64 / 1000.0,
            ..view
        }
    }

    /// The `GET /metrics` body.
    pub async fn metrics_text(&self) -> Result<String, std::fmt::Error> {
        let view = self.metrics_view().await;
        self.ops.metrics.render(&view)
    }
}

/// Starts the tasks beside the service: breaker watching (audit) and the systemd watchdog.
pub fn spawn_tasks(svc: &Arc<Service>, shutdown: &CancellationToken) {
    tokio::spawn(watch_breakers(svc.clone(), shutdown.clone()));
    if let Some(period) = systemd::watchdog_period() {
        tokio::spawn(systemd::watchdog(svc.clone(), shutdown.clone(), period));
    }
}

/// How often breaker states are compared (a change is recorded within this time).
const BREAKER_POLL: Duration = Duration::from_secs(1);

/// Records every breaker state change of the lifecycle nodes as a decision (log, ring, audit).
async fn watch_breakers(svc: Arc<Service>, shutdown: CancellationToken) {
    let mut last: HashMap<String, BreakerState> = svc
        .lifecycle
        .nodes()
        .into_iter()
        .map(|n| (n.url, n.breaker))
        .collect();
    let mut interval = tokio::time::interval(BREAKER_POLL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        for n in svc.lifecycle.nodes() {
            let before = last.insert(n.url.clone(), n.breaker);
            if before.is_none_or(|b| b == n.breaker) {
                continue;
            }
            let outcome = match n.breaker {
                BreakerState::Closed => "closed",
                BreakerState::Open => "open",
                BreakerState::HalfOpen => "half_open",
            };
            let why = match (&n.breaker, &n.last_error) {
                (BreakerState::Open, Some(e)) => format!(
                    "node {}: {} consecutive failures; last: {e}",
                    n.url, n.consecutive_failures
                ),
                (BreakerState::HalfOpen, _) => {
                    format!("node {}: cooldown over, next call is a trial", n.url)
                }
                _ => format!("node {}: {outcome}", n.url),
            };
            svc.record(Service::decision("breaker", None, outcome, why, None));
        }
    }
}
