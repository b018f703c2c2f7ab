//! Prometheus metrics (`GET /metrics`, OpenMetrics text from `prometheus-client`).
//!
//! Counters and histograms are fed by hooks (decisions, lifecycle calls, boots, ticks). Gauges
//! that mirror state (ledger, settings, shards, breakers) are computed at scrape time from a
//! [`View`] of the service: cheaper than keeping them in step, and always right.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use policy::{Settings, State};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::decision::Record;
use crate::lifecycle::{BreakerState, CallRecord, NodeStatus};

/// Content type of the exposition (Prometheus scrapes OpenMetrics text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Auth refusal reasons (`reason` label of `jitsi_scaler_auth_failures_total`).
const REFUSALS: [&str; 4] = [
    "missing_token",
    "invalid_token",
    "forbidden",
    "rate_limited",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    kind: &'static str,
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    backend: &'static str,
    node: String,
    op: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallTimeLabels {
    backend: &'static str,
    node: String,
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabel {
    shard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    backend: &'static str,
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreakerLabels {
    backend: &'static str,
    node: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

fn lifecycle_histogram() -> Histogram {
    // 10 ms .. ~164 s: commands and Foreman creates can take minutes.
    Histogram::new([
        0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    ])
}

struct Inner {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    launches: Counter,
    calls: Family<CallLabels, Counter>,
    call_seconds: Family<CallTimeLabels, Histogram, fn() -> Histogram>,
    boot_seconds: Histogram,
    ticks: Counter,
    tick_seconds: Histogram,
    audit_lines: Counter,
    audit_dropped: Counter,
    audit_errors: Counter,
    auth_failures: Family<RefusalLabel, Counter>,
}

/// The process's metrics; cheap to clone (one shared registry).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The state mirrored by scrape-time gauges, taken from the service in one go.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// Ledger entries per state (every state, zeros included).
    pub by_state: Vec<(State, u32)>,
    /// Launches not yet seen in Jicofo.
    pub in_flight: u32,
    /// Approved removals Jicofo still counts.
    pub pending_removal: u32,
    /// Gateways Jicofo counts outside the ledger.
    pub unmanaged: i64,
    /// The API settings.
    pub settings: Settings,
    /// One entry per configured shard.
    pub shards: Vec<ShardView>,
    /// The merged reading (highest total, lowest available over fresh shards), if fresh.
    pub merged: Option<(u32, u32)>,
    /// Fresh shards disagree.
    pub disagreement: bool,
    /// `foreman` or `command`.
    pub backend: &'static str,
    /// Not every breaker open.
    pub lifecycle_up: bool,
    /// Per-node lifecycle state.
    pub nodes: Vec<NodeStatus>,
    /// Consecutive definitive create refusals (0 after a created host).
    pub create_refusals: u32,
    /// Seconds left of the launch hold after a refusal (0: none).
    pub launch_hold_s: f64,
    /// This replica runs the launch loop.
    pub leader: bool,
    /// `/ready` answers 200.
    pub ready: bool,
    /// Seconds since the Unix epoch when the process started.
    pub start_time_s: f64,
    /// Seconds since the Unix epoch of the last finished tick (0: none yet).
    pub last_tick_s: f64,
    /// Target mode's last sizing.
    pub capacity: Option<policy::capacity::Sizing>,
    /// Store writes that failed since start.
    pub store_write_failures: u64,
}

/// One shard's reading for the gauges.
#[derive(Clone, Debug, Default)]
pub struct ShardView {
    /// Shard name.
    pub name: String,
    /// Last good reading's total.
    pub total: Option<u32>,
    /// Last good reading's available.
    pub available: Option<u32>,
    /// Age of the last good reading, seconds.
    pub age_s: Option<f64>,
    /// The reading counts (younger than `policy.stats_max_age`).
    pub fresh: bool,
    /// Failed readings since start.
    pub errors: u64,
}

impl Metrics {
    /// Empty counters and histograms, registered once.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "jitsi_scaler_decisions",
            "Decisions recorded, by kind, outcome and remove-me reason",
            decisions.clone(),
        );
        let launches = Counter::default();
        registry.register(
            "jitsi_scaler_launches",
            "Hosts the launch rule decided to launch",
            launches.clone(),
        );
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "jitsi_scaler_lifecycle_calls",
            "Lifecycle manager call attempts, by backend, node, operation and result",
            calls.clone(),
        );
        let call_seconds =
            Family::<CallTimeLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                lifecycle_histogram,
            );
        registry.register_with_unit(
            "jitsi_scaler_lifecycle_call_duration",
            "Duration of lifecycle manager call attempts",
            Unit::Seconds,
            call_seconds.clone(),
        );
        // 30 s .. 32 min: VM boots take minutes.
        let boot_seconds = Histogram::new([
            30.0, 60.0, 90.0, 120.0, 180.0, 240.0, 300.0, 420.0, 600.0, 900.0, 1200.0, 1800.0,
        ]);
        registry.register_with_unit(
            "jitsi_scaler_boot_duration",
            "Time from a launch to its first appearance in Jicofo",
            Unit::Seconds,
            boot_seconds.clone(),
        );
        let ticks = Counter::default();
        registry.register(
            "jitsi_scaler_ticks",
            "Control loop ticks completed",
            ticks.clone(),
        );
        let tick_seconds = Histogram::new([
            0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register_with_unit(
            "jitsi_scaler_tick_duration",
            "Duration of one control loop tick (Jicofo poll, policy, store)",
            Unit::Seconds,
            tick_seconds.clone(),
        );
        let [audit_lines, audit_dropped, audit_errors] = [
            (
                "jitsi_scaler_audit_lines",
                "Lines written to the audit file",
            ),
            (
                "jitsi_scaler_audit_dropped",
                "Decisions not written to the audit file because its queue was full",
            ),
            (
                "jitsi_scaler_audit_errors",
                "Audit file write or rotation errors",
            ),
        ]
        .map(|(name, help)| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        });
        let auth_failures = Family::<RefusalLabel, Counter>::default();
        // Every label present from the start, so a dashboard shows 0 rather than no data.
        for reason in REFUSALS {
            let _ = auth_failures.get_or_create(&RefusalLabel { reason });
        }
        registry.register(
            "jitsi_scaler_auth_failures",
            "API requests refused by authentication or authorisation, by reason",
            auth_failures.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                decisions,
                launches,
                calls,
                call_seconds,
                boot_seconds,
                ticks,
                tick_seconds,
                audit_lines,
                audit_dropped,
                audit_errors,
                auth_failures,
            }),
        }
    }

    /// Counts a recorded decision (labels derived from its typed kind and outcome).
    pub fn decision(&self, r: &Record) {
        let labels = DecisionLabels {
            kind: r.kind().as_str(),
            outcome: r.outcome().as_str(),
            reason: r.decision.reason().map_or("", |r| r.as_str()),
        };
        self.inner.decisions.get_or_create(&labels).inc();
        if r.refused.is_none() {
            self.inner.launches.inc_by(u64::from(r.decision.launched()));
        }
    }

    /// Counts a finished lifecycle call attempt (the hook in `src/lifecycle`).
    pub fn lifecycle_call(&self, c: &CallRecord<'_>) {
        self.inner
            .calls
            .get_or_create(&CallLabels {
                backend: c.backend,
                node: c.node.to_string(),
                op: c.op,
                result: c.outcome.as_str(),
            })
            .inc();
        self.inner
            .call_seconds
            .get_or_create(&CallTimeLabels {
                backend: c.backend,
                node: c.node.to_string(),
                op: c.op,
            })
            .observe(c.elapsed.as_secs_f64());
    }

    /// Observes a boot time (launch to first seen in Jicofo).
    pub fn boot(&self, boot_ms: u64) {
        self.inner.boot_seconds.observe(boot_ms as f64 / 1000.0);
    }

    /// Counts a finished control loop tick.
    pub fn tick(&self, seconds: f64) {
        self.inner.ticks.inc();
        self.inner.tick_seconds.observe(seconds);
    }

    /// Counts an audit line written.
    pub fn audit_written(&self) {
        self.inner.audit_lines.inc();
    }

    /// Counts an audit line dropped (queue full).
    pub fn audit_dropped(&self) {
        self.inner.audit_dropped.inc();
    }

    /// Counts an audit write error.
    pub fn audit_error(&self) {
        self.inner.audit_errors.inc();
    }

    /// Counts a refused API request (`reason`: a [`crate::auth::Refusal`] label, one of a
    /// fixed set).
    pub fn auth_failure(&self, reason: &'static str) {
        self.inner
            .auth_failures
            .get_or_create(&RefusalLabel { reason })
            .inc();
    }

    /// The whole exposition: hook-fed metrics, then the gauges of `view`, then `# EOF`.
    pub fn render(&self, view: &View) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8192);
        encode_registry(&mut out, &self.inner.registry)?;
        encode_registry(&mut out, &scrape_registry(view))?;
        encode_eof(&mut out)?;
        Ok(out)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

/// Target mode's gauges: the effective min by source, and the estimates behind it.
fn capacity_gauges(r: &mut Registry, c: &policy::capacity::Sizing) {
    let eff = Family::<SourceLabel, Gauge>::default();
    eff.get_or_create(&SourceLabel {
        source: c.source.as_str(),
    })
    .set(i64::from(c.effective_min));
    r.register(
        "jitsi_scaler_capacity_effective_min",
        "The spare floor held now; the label says what decided it (floor, schedule, learned, feedback, hold)",
        eff,
    );
    let g = |v: f64| {
        let x = FloatGauge::default();
        x.set(v);
        x
    };
    r.register(
        "jitsi_scaler_capacity_learned_min",
        "The Erlang-B spare count for the forecast demand",
        Gauge::<i64>::default().tap(i64::from(c.learned)),
    );
    r.register(
        "jitsi_scaler_capacity_rate_per_hour",
        "Arrival rate sized for (largest forecast over the lead window), calls per hour",
        g(c.rate.rate_per_hour),
    );
    r.register(
        "jitsi_scaler_capacity_next_hour_rate_per_hour",
        "Forecast arrival rate one hour ahead, calls per hour (NaN without a learned profile)",
        g(c.next_hour_per_hour.unwrap_or(f64::NAN)),
    );
    r.register_with_unit(
        "jitsi_scaler_capacity_lead",
        "Lead time: high percentile of measured boots plus a tick and a poll",
        Unit::Seconds,
        g(c.lead_ms as f64 / 1000.0),
    );
    r.register(
        "jitsi_scaler_capacity_offered_load",
        "Offered load on the spare pool (rate x mean lead), erlangs",
        g(c.offered_load),
    );
}

/// The gauges of one scrape.
fn scrape_registry(v: &View) -> Registry {
    let mut r = Registry::default();
    let info = Family::<VersionLabel, Gauge>::default();
    info.get_or_create(&VersionLabel {
        version: env!("CARGO_PKG_VERSION"),
    })
    .set(1);
    r.register(
        "jitsi_scaler_build_info",
        "Always 1; the version is a label",
        info,
    );
    // Timestamps, in seconds since the Unix epoch.
    for (name, help, value) in [
        (
            "jitsi_scaler_start_time",
            "When the process started, seconds since the Unix epoch",
            v.start_time_s,
        ),
        (
            "jitsi_scaler_last_tick_timestamp",
            "When the control loop last finished a tick, seconds since the Unix epoch (0: never)",
            v.last_tick_s,
        ),
    ] {
        let gauge = FloatGauge::default();
        gauge.set(value);
        r.register_with_unit(name, help, Unit::Seconds, gauge);
    }
    let write_failures = Counter::<u64>::default();
    write_failures.inc_by(v.store_write_failures);
    r.register(
        "jitsi_scaler_store_write_failures",
        "Store writes that failed (unreachable, read-only or full), since start",
        write_failures,
    );
    let flag = |b: bool| Gauge::<i64>::default().tap(i64::from(b));
    r.register(
        "jitsi_scaler_leader",
        "1 when this replica runs the launch loop",
        flag(v.leader),
    );
    r.register(
        "jitsi_scaler_ready",
        "1 when /ready answers 200",
        flag(v.ready),
    );

    let by_state = Family::<StateLabel, Gauge>::default();
    for (state, n) in &v.by_state {
        by_state
            .get_or_create(&StateLabel {
                state: state.as_str(),
            })
            .set(i64::from(*n));
    }
    r.register(
        "jitsi_scaler_ledger_instances",
        "Ledger entries by state",
        by_state,
    );
    r.register(
        "jitsi_scaler_in_flight",
        "Launches not yet seen in Jicofo (requested or booting, within the boot timeout)",
        Gauge::<i64>::default().tap(i64::from(v.in_flight)),
    );
    r.register(
        "jitsi_scaler_pending_removal",
        "Approved removals Jicofo still counts",
        Gauge::<i64>::default().tap(i64::from(v.pending_removal)),
    );
    r.register(
        "jitsi_scaler_unmanaged_instances",
        "Gateways Jicofo counts that the ledger does not explain",
        Gauge::<i64>::default().tap(v.unmanaged),
    );
    r.register(
        "jitsi_scaler_setting_min_available",
        "Setting min: available gateways to keep",
        Gauge::<i64>::default().tap(i64::from(v.settings.min_available)),
    );
    r.register(
        "jitsi_scaler_setting_max_total",
        "Setting max: most gateways in total",
        Gauge::<i64>::default().tap(i64::from(v.settings.max_total)),
    );
    r.register(
        "jitsi_scaler_setting_bulk_max",
        "Setting bulk-max: most launches in one tick",
        Gauge::<i64>::default().tap(i64::from(v.settings.bulk_max)),
    );

    let total = Family::<ShardLabel, Gauge>::default();
    let available = Family::<ShardLabel, Gauge>::default();
    let age = Family::<ShardLabel, FloatGauge>::default();
    let fresh = Family::<ShardLabel, Gauge>::default();
    let errors = Family::<ShardLabel, Counter>::default();
    for s in &v.shards {
        let l = ShardLabel {
            shard: s.name.clone(),
        };
        if let Some(t) = s.total {
            total.get_or_create(&l).set(i64::from(t));
        }
        if let Some(a) = s.available {
            available.get_or_create(&l).set(i64::from(a));
        }
        if let Some(a) = s.age_s {
            age.get_or_create(&l).set(a);
        }
        fresh.get_or_create(&l).set(i64::from(s.fresh));
        errors.get_or_create(&l).inc_by(s.errors);
    }
    r.register(
        "jitsi_scaler_jicofo_total",
        "Gateways the shard's Jicofo counts (last good reading)",
        total,
    );
    r.register(
        "jitsi_scaler_jicofo_available",
        "Idle healthy gateways the shard's Jicofo counts (last good reading)",
        available,
    );
    r.register_with_unit(
        "jitsi_scaler_jicofo_reading_age",
        "Age of the shard's last good reading",
        Unit::Seconds,
        age,
    );
    r.register(
        "jitsi_scaler_jicofo_fresh",
        "1 when the shard's reading is fresh enough to count",
        fresh,
    );
    r.register(
        "jitsi_scaler_jicofo_errors",
        "Failed readings of the shard's Jicofo since start",
        errors,
    );
    r.register(
        "jitsi_scaler_stats_fresh",
        "1 when at least one shard has a fresh reading (launches and idle removals need it)",
        flag(v.merged.is_some()),
    );
    if let Some((t, a)) = v.merged {
        r.register(
            "jitsi_scaler_observed_total",
            "Merged reading: highest total over fresh shards",
            Gauge::<i64>::default().tap(i64::from(t)),
        );
        r.register(
            "jitsi_scaler_observed_available",
            "Merged reading: lowest available over fresh shards",
            Gauge::<i64>::default().tap(i64::from(a)),
        );
    }
    r.register(
        "jitsi_scaler_jicofo_disagreement",
        "1 when fresh shards report different counts",
        flag(v.disagreement),
    );

    let breaker = Family::<BreakerLabels, Gauge>::default();
    let failures = Family::<NodeLabels, Gauge>::default();
    for n in &v.nodes {
        for (state, name) in [
            (BreakerState::Closed, "closed"),
            (BreakerState::Open, "open"),
            (BreakerState::HalfOpen, "half_open"),
        ] {
            breaker
                .get_or_create(&BreakerLabels {
                    backend: v.backend,
                    node: n.url.clone(),
                    state: name,
                })
                .set(i64::from(n.breaker == state));
        }
        failures
            .get_or_create(&NodeLabels {
                backend: v.backend,
                node: n.url.clone(),
            })
            .set(i64::from(n.consecutive_failures));
    }
    r.register(
        "jitsi_scaler_lifecycle_breaker_state",
        "Circuit breaker of each lifecycle node: 1 for its current state",
        breaker,
    );
    r.register(
        "jitsi_scaler_lifecycle_consecutive_failures",
        "Failed attempts on the node since its last success",
        failures,
    );
    r.register(
        "jitsi_scaler_lifecycle_up",
        "1 unless every lifecycle node's breaker is open",
        flag(v.lifecycle_up),
    );
    if let Some(c) = &v.capacity {
        capacity_gauges(&mut r, c);
    }
    r.register(
        "jitsi_scaler_lifecycle_create_refusals",
        "Consecutive creates the lifecycle manager refused definitively (401/403, a validation error, an answer that is not a host); 0 after a created host",
        Gauge::<i64>::default().tap(i64::from(v.create_refusals)),
    );
    let hold = FloatGauge::default();
    hold.set(v.launch_hold_s);
    r.register_with_unit(
        "jitsi_scaler_launch_hold",
        "Time left during which no host is launched after a refused create (0: none)",
        Unit::Seconds,
        hold,
    );
    r
}

/// Sets a fresh gauge in one expression.
trait Tap<N> {
    fn tap(self, v: N) -> Self;
}

impl Tap<i64> for Gauge<i64> {
    fn tap(self, v: i64) -> Self {
        self.set(v);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_eof_once() {
        let m = Metrics::new();
        m.decision(&Record::new(
            1,
            crate::decision::Decision::Remove {
                host: "gw".into(),
                reason: policy::Reason::Idle,
                answer: policy::RemovalDecision::Accept {
                    repeat: false,
                    available: 5,
                    pending_removal: 0,
                },
                min: 2,
                store_error: None,
            },
        ));
        let text = m
            .render(&View {
                by_state: vec![(State::Ready, 2)],
                ..View::default()
            })
            .expect("render");
        assert!(text.contains(
            "jitsi_scaler_decisions_total{kind=\"remove\",outcome=\"accepted\",reason=\"idle\"} 1"
        ));
        assert!(text.contains("jitsi_scaler_ledger_instances{state=\"ready\"} 2"));
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(text.ends_with("# EOF\n"));
    }
}
