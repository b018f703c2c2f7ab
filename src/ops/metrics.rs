//! Prometheus metrics (`GET /metrics`): OpenMetrics text from `prometheus-client`, or the
//! Prometheus 0.0.4 text format for scrapers that ask for it ([`Format::negotiate`]).
//!
//! Counters and histograms are fed by hooks (decisions, lifecycle calls, boots, ticks). Gauges
//! that mirror state (ledger, settings, shards, breakers) are computed at scrape time from a
//! [`View`] of the service: cheaper than keeping them in step, and always right.
//!
//! Every counter whose label values are known in advance is exported at 0 from the start:
//! `increase()` needs a sample before the first increment, or an alert on the first failure
//! never fires.

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

/// Content type of the OpenMetrics exposition (what Prometheus asks for first).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the Prometheus text format 0.0.4 (older scrapers, `promtool check metrics`).
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The two expositions `GET /metrics` can answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (the default).
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    Text,
}

impl Format {
    /// Picks the format from an `Accept` header: 0.0.4 text only when `text/plain` is preferred
    /// to OpenMetrics; OpenMetrics when both are equal, for `*/*` and without a header.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let (mut om, mut text) = (0.0_f64, 0.0_f64);
        for part in accept.unwrap_or("").split(',') {
            let mut params = part.split(';').map(str::trim);
            let media = params.next().unwrap_or("").to_ascii_lowercase();
            let q = params
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, v)| v.trim().parse::<f64>().ok())
                .filter(|q| q.is_finite())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => om = om.max(q),
                "text/plain" => text = text.max(q),
                _ => {}
            }
        }
        if text > om {
            Format::Text
        } else {
            Format::OpenMetrics
        }
    }

    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => CONTENT_TYPE,
            Format::Text => CONTENT_TYPE_TEXT,
        }
    }
}

/// Auth refusal reasons (`reason` label of `jitsi_scaler_auth_failures_total`).
pub const REFUSALS: [&str; 4] = [
    "missing_token",
    "invalid_token",
    "forbidden",
    "rate_limited",
];

/// Who was refused (`caller` label): a jitsi-autoscaler sidecar on its routes, or any other
/// API client (agents, scripts, the status page).
pub const CALLERS: [&str; 2] = ["api", "sidecar"];

/// Lifecycle operations exported at 0 for every node (the ones alerts and the dashboard use).
const CALL_OPS: [&str; 4] = ["create", "delete", "find_by_ip", "list"];
/// Lifecycle call results (`result` label).
const CALL_RESULTS: [&str; 3] = ["ok", "refused", "failed"];
/// Remove-me reasons (`reason` label of removal and sidecar decisions).
const REMOVE_REASONS: [&str; 3] = ["idle", "expired", "unhealthy"];

/// Every (kind, outcome) a decision can take, as docs/metrics.md lists them (a unit test keeps
/// the two in step); all are exported at 0 from the start. `remove` and `sidecar shutdown`
/// carry a remove-me reason, the others none.
pub const DECISION_LABELS: &[(&str, &[&str])] = &[
    (
        "launch",
        &["launch", "started", "hold", "capped", "uncapped"],
    ),
    ("remove", &["accepted", "keep", "recorded"]),
    ("add", &["requested", "refused", "not_needed"]),
    ("create", &["created", "retry", "launch_failed"]),
    ("delete", &["deleted", "retry", "parked"]),
    ("drained", &["delete", "unknown"]),
    ("seen", &["ready", "left"]),
    ("left", &["ready", "left"]),
    (
        "timeout",
        &["launch_failed", "deleting", "not_pending", "stopping"],
    ),
    ("reconcile", &["gone", "stopped"]),
    (
        "pool",
        &[
            "refill",
            "started",
            "stopped",
            "retry",
            "launch_failed",
            "deleting",
        ],
    ),
    ("setting", &["changed"]),
    ("breaker", &["open", "half_open", "closed"]),
    ("leader", &["acquired", "lost"]),
    ("capacity", &["changed"]),
    ("hello", &["alive", "adopted"]),
    (
        "sidecar",
        &[
            "shutdown",
            "shutdown_confirmed",
            "deleting",
            "adopted",
            "forgotten",
        ],
    ),
    (
        "managed",
        &["managed", "reports_only", "not_managed", "address_mismatch"],
    ),
];

/// The reason labels a (kind, outcome) pair is exported with at 0.
fn decision_reasons(kind: &str, outcome: &str) -> &'static [&'static str] {
    match (kind, outcome) {
        ("remove", _) | ("sidecar", "shutdown") => &REMOVE_REASONS,
        _ => &[""],
    }
}

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
    caller: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    caller: &'static str,
    reason: &'static str,
    cause: &'static str,
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
    auth_causes: Family<CauseLabels, Counter>,
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
    /// The spare floor held now (target mode's effective min, or `min` and a schedule).
    pub effective_min: u32,
    /// `target` or `fixed`.
    pub capacity_mode: &'static str,
    /// Hours of demand the profile has learned.
    pub hours_learned: f64,
    /// Approvals queued while the store was down.
    pub queued_approvals: u32,
    /// `max` holds back what the spare floor needs (the last launch decision's deficit is
    /// larger than the room under `max`).
    pub launch_capped: bool,
    /// The warm pool's size and level.
    pub warm_pool: WarmPoolView,
}

/// The warm pool for the gauges.
#[derive(Clone, Debug, Default)]
pub struct WarmPoolView {
    /// Configured size (0: no pool).
    pub size: u32,
    /// Hosts in the pool now.
    pub level: u32,
    /// Hosts counted toward the size when refilling.
    pub refill_level: u32,
    /// Pool hosts being powered on.
    pub starting: u32,
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
        for (kind, outcomes) in DECISION_LABELS {
            for outcome in outcomes.iter() {
                for reason in decision_reasons(kind, outcome) {
                    let _ = decisions.get_or_create(&DecisionLabels {
                        kind,
                        outcome,
                        reason,
                    });
                }
            }
        }
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
        for caller in CALLERS {
            for reason in REFUSALS {
                let _ = auth_failures.get_or_create(&RefusalLabel { caller, reason });
            }
        }
        registry.register(
            "jitsi_scaler_auth_failures",
            "API requests refused by authentication or authorisation, by caller (api, sidecar) and reason",
            auth_failures.clone(),
        );
        let auth_causes = Family::<CauseLabels, Counter>::default();
        registry.register(
            "jitsi_scaler_auth_refusal_causes",
            "API requests refused, by caller, reason and what exactly was wrong (unknown kid, expired, ...)",
            auth_causes.clone(),
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
                auth_causes,
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

    /// Counts a refused API request: `caller` one of [`CALLERS`], `reason` a
    /// [`crate::auth::Refusal`] label (one of [`REFUSALS`]), `cause` its static detail (a
    /// bounded set: the refusal texts of the auth module, never anything from the request).
    pub fn auth_failure(&self, caller: &'static str, reason: &'static str, cause: &'static str) {
        self.inner
            .auth_failures
            .get_or_create(&RefusalLabel { caller, reason })
            .inc();
        self.inner
            .auth_causes
            .get_or_create(&CauseLabels {
                caller,
                reason,
                cause,
            })
            .inc();
    }

    /// Refused requests since start by caller and reason (every pair, zeros included).
    pub fn refusal_counts(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut out = Vec::new();
        for caller in CALLERS {
            for reason in REFUSALS {
                let n = self
                    .inner
                    .auth_failures
                    .get_or_create(&RefusalLabel { caller, reason })
                    .get();
                out.push((caller, reason, n));
            }
        }
        out
    }

    /// Exports every lifecycle call counter and duration histogram of `nodes` at 0 (idempotent; called per scrape, so
    /// nodes are known without a hook at start-up).
    fn known_nodes(&self, backend: &'static str, nodes: &[NodeStatus]) {
        for n in nodes {
            for op in CALL_OPS {
                // The duration histogram too, so quantile queries have series before the first
                // call (a scaler with enough spares may make none for a long time).
                let _ = self.inner.call_seconds.get_or_create(&CallTimeLabels {
                    backend,
                    node: n.url.clone(),
                    op,
                });
                for result in CALL_RESULTS {
                    let _ = self.inner.calls.get_or_create(&CallLabels {
                        backend,
                        node: n.url.clone(),
                        op,
                        result,
                    });
                }
            }
        }
    }

    /// The whole exposition in OpenMetrics: hook-fed metrics, then the gauges of `view`, then
    /// `# EOF`.
    pub fn render(&self, view: &View) -> Result<String, std::fmt::Error> {
        self.render_as(view, Format::OpenMetrics)
    }

    /// The whole exposition in `format`.
    pub fn render_as(&self, view: &View, format: Format) -> Result<String, std::fmt::Error> {
        if !view.backend.is_empty() {
            self.known_nodes(view.backend, &view.nodes);
        }
        let mut out = String::with_capacity(16384);
        encode_registry(&mut out, &self.inner.registry)?;
        encode_registry(&mut out, &scrape_registry(view))?;
        encode_eof(&mut out)?;
        Ok(match format {
            Format::OpenMetrics => out,
            Format::Text => to_text_004(&out),
        })
    }
}

/// OpenMetrics text as written by `prometheus-client`, turned into the 0.0.4 text format: no
/// `# EOF` and no `# UNIT`; a counter family is named by its `_total` samples (OpenMetrics
/// names the family without the suffix, 0.0.4 names it as its samples are); `unknown` is
/// `untyped`. Sample lines are the same in both (the crate writes no exemplars or `_created`
/// here).
fn to_text_004(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut help: Option<(&str, &str)> = None;
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            // Held until the TYPE line says whether the family is a counter.
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" if !name.ends_with("_total") => (format!("{name}_total"), kind),
                "unknown" => (name.to_string(), "untyped"),
                _ => (name.to_string(), kind),
            };
            if let Some((_, text)) = help.take() {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if let Some((name, text)) = help.take() {
            out.push_str(&format!("# HELP {name} {text}\n"));
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabel {
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

/// The sources of the effective min (`source` label of the state metric).
const SOURCES: [&str; 5] = ["floor", "schedule", "learned", "feedback", "hold"];
/// The capacity modes (`mode` label).
const MODES: [&str; 2] = ["target", "fixed"];

/// The spare floor held and what decided it; present in both modes, so alerts and the dashboard
/// need no mode-specific query.
fn effective_min_gauges(r: &mut Registry, v: &View) {
    r.register(
        "jitsi_scaler_capacity_effective_min",
        "The spare floor held now (available gateways the launch rule keeps): target mode's sizing, or min (and a schedule) in fixed mode",
        Gauge::<i64>::default().tap(i64::from(v.effective_min)),
    );
    let source = match &v.capacity {
        Some(c) => c.source.as_str(),
        None if v.effective_min > v.settings.min_available => "schedule",
        None => "floor",
    };
    let sources = Family::<SourceLabel, Gauge>::default();
    for s in SOURCES {
        sources
            .get_or_create(&SourceLabel { source: s })
            .set(i64::from(s == source));
    }
    r.register(
        "jitsi_scaler_capacity_effective_min_source",
        "What decided the effective min: 1 for the current source (floor, schedule, learned, feedback, hold), 0 for the others",
        sources,
    );
    let modes = Family::<ModeLabel, Gauge>::default();
    for m in MODES {
        modes
            .get_or_create(&ModeLabel { mode: m })
            .set(i64::from(m == v.capacity_mode));
    }
    r.register(
        "jitsi_scaler_capacity_mode",
        "The [capacity] mode: 1 for the one in force (target, fixed)",
        modes,
    );
    // The sizing wanted more than max allows: callers may be rejected until max is raised.
    let wanted = v
        .capacity
        .as_ref()
        .map_or(0, |c| c.floor.max(c.schedule.unwrap_or(0)).max(c.learned));
    let capped = v.launch_capped || v.capacity.as_ref().is_some_and(|c| wanted > c.max);
    r.register(
        "jitsi_scaler_capacity_capped",
        "1 when max holds back what the spare floor needs: the sizing wants more than max, or the launch rule's deficit is larger than the room under max",
        Gauge::<i64>::default().tap(i64::from(capped)),
    );
    let hours = FloatGauge::default();
    hours.set(v.hours_learned * 3600.0);
    r.register_with_unit(
        "jitsi_scaler_capacity_learned",
        "Demand history the hour-of-week profile has learned (a week is 604800)",
        Unit::Seconds,
        hours,
    );
}

/// Target mode's gauges: the estimates behind the effective min.
fn capacity_gauges(r: &mut Registry, c: &policy::capacity::Sizing) {
    let g = |v: f64| {
        let x = FloatGauge::default();
        x.set(v);
        x
    };
    let wanted = c.floor.max(c.schedule.unwrap_or(0)).max(c.learned);
    r.register(
        "jitsi_scaler_capacity_wanted_min",
        "The spare floor before the cap by max: the largest of floor, schedule and learned",
        Gauge::<i64>::default().tap(i64::from(wanted)),
    );
    r.register(
        "jitsi_scaler_capacity_learned_min",
        "The Erlang-B spare count for the forecast demand",
        Gauge::<i64>::default().tap(i64::from(c.learned)),
    );
    r.register(
        "jitsi_scaler_capacity_arrival_rate",
        "Arrival rate sized for (largest forecast over the coming mean lead), calls per second",
        g(c.rate.rate_per_hour / 3600.0),
    );
    r.register(
        "jitsi_scaler_capacity_next_hour_arrival_rate",
        "Forecast arrival rate one hour ahead, calls per second (NaN without a learned profile)",
        g(c.next_hour_per_hour.map_or(f64::NAN, |h| h / 3600.0)),
    );
    r.register_with_unit(
        "jitsi_scaler_capacity_lead",
        "Lead time: high percentile of measured boots plus a tick and a poll",
        Unit::Seconds,
        g(c.lead_ms as f64 / 1000.0),
    );
    r.register(
        "jitsi_scaler_capacity_offered_load_erlangs",
        "Offered load on the spare pool (rate x mean lead)",
        g(c.offered_load),
    );
}

/// The warm pool's gauges (size 0: no pool, every gauge 0).
fn warm_pool_gauges(r: &mut Registry, w: &WarmPoolView) {
    for (name, help, value) in [
        (
            "jitsi_scaler_warm_pool_size",
            "Stopped hosts the warm pool keeps ([warm_pool] size; 0: no pool)",
            w.size,
        ),
        (
            "jitsi_scaler_warm_pool_level",
            "Hosts in the warm pool now (stopped, or stopping into it)",
            w.level,
        ),
        (
            "jitsi_scaler_warm_pool_refill_level",
            "Hosts counted toward the pool's size when refilling",
            w.refill_level,
        ),
        (
            "jitsi_scaler_warm_pool_starting",
            "Pool hosts being powered on for a launch",
            w.starting,
        ),
    ] {
        r.register(name, help, Gauge::<i64>::default().tap(i64::from(value)));
    }
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
        "jitsi_scaler_setting_max_gateways",
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
        "jitsi_scaler_jicofo_gateways",
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
            "jitsi_scaler_observed_gateways",
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
    effective_min_gauges(&mut r, v);
    if let Some(c) = &v.capacity {
        capacity_gauges(&mut r, c);
    }
    warm_pool_gauges(&mut r, &v.warm_pool);
    r.register(
        "jitsi_scaler_queued_approvals",
        "Removals approved while the store was down, waiting to be stored",
        Gauge::<i64>::default().tap(i64::from(v.queued_approvals)),
    );
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

    #[test]
    fn accept_picks_the_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        for (accept, want) in [
            (None, Format::OpenMetrics),
            (Some("*/*"), Format::OpenMetrics),
            (Some(prometheus), Format::OpenMetrics),
            (Some("text/plain"), Format::Text),
            (
                Some("text/plain;version=0.0.4;q=0.9, */*;q=0.1"),
                Format::Text,
            ),
            (
                Some("application/openmetrics-text;q=0.2, text/plain;q=0.5"),
                Format::Text,
            ),
            (Some("text/plain;q=0"), Format::OpenMetrics),
            (Some("garbage;;q=x,,"), Format::OpenMetrics),
        ] {
            assert_eq!(Format::negotiate(accept), want, "{accept:?}");
        }
    }

    #[test]
    fn counters_start_at_zero_and_no_gauge_ends_in_total() {
        let m = Metrics::new();
        let view = View {
            backend: "foreman",
            nodes: vec![NodeStatus {
                url: "http://127.0.0.1:1".into(),
                breaker: BreakerState::Closed,
                consecutive_failures: 0,
                last_error: None,
                calls_ok: 0,
                calls_failed: 0,
            }],
            ..View::default()
        };
        let text = m.render(&view).expect("render");
        for line in [
            "jitsi_scaler_decisions_total{kind=\"create\",outcome=\"launch_failed\",reason=\"\"} 0",
            "jitsi_scaler_decisions_total{kind=\"remove\",outcome=\"keep\",reason=\"idle\"} 0",
            "jitsi_scaler_lifecycle_calls_total{backend=\"foreman\",node=\"http://127.0.0.1:1\",op=\"create\",result=\"refused\"} 0",
            "jitsi_scaler_auth_failures_total{caller=\"sidecar\",reason=\"invalid_token\"} 0",
            "jitsi_scaler_capacity_effective_min 0",
            "jitsi_scaler_capacity_effective_min_source{source=\"floor\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        let plain = m.render_as(&view, Format::Text).expect("render");
        assert!(!plain.contains("# EOF") && !plain.contains("# UNIT"));
        let mut kind = "";
        for line in plain.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, k) = rest.split_once(' ').expect("type line");
                assert_eq!(k == "counter", name.ends_with("_total"), "{line}");
                kind = k;
            } else if !line.starts_with('#') && kind == "gauge" {
                let name = line.split(['{', ' ']).next().unwrap_or("");
                assert!(!name.ends_with("_total"), "{line}");
            }
        }
        assert!(plain.contains("# TYPE jitsi_scaler_decisions_total counter\n"));
        assert!(plain.contains("# HELP jitsi_scaler_decisions_total Decisions"));
        assert!(plain.contains("# TYPE jitsi_scaler_boot_duration_seconds histogram\n"));
    }

    /// The (kind, outcome) pairs exported at 0 are the ones docs/metrics.md lists.
    #[test]
    fn decision_labels_match_the_documented_table() {
        let doc = include_str!("../../docs/metrics.md");
        let table = doc
            .split("| `kind` | `outcome` |")
            .nth(1)
            .expect("the decision table");
        let mut rows = 0;
        for line in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
            let cells: Vec<&str> = line.split(" | ").collect();
            // Outcomes are the ticked words outside the parentheses (which explain them).
            let ticked = |cell: &str| -> Vec<String> {
                let mut depth = 0u32;
                let outside: String = cell
                    .chars()
                    .filter(|c| {
                        match c {
                            '(' => depth += 1,
                            ')' => depth = depth.saturating_sub(1),
                            _ => return depth == 0,
                        }
                        false
                    })
                    .collect();
                outside
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect()
            };
            let kinds = ticked(cells[0]);
            let outcomes: Vec<String> = ticked(cells[1])
                .into_iter()
                .filter(|o| {
                    crate::decision::Outcome::ALL
                        .iter()
                        .any(|x| x.as_str() == o)
                })
                .collect();
            for kind in kinds.iter().filter(|k| {
                crate::decision::Kind::ALL
                    .iter()
                    .any(|x| x.as_str() == k.as_str())
            }) {
                let ours = DECISION_LABELS
                    .iter()
                    .find(|(k, _)| k == kind)
                    .map(|(_, o)| o.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .unwrap_or_default();
                let mut want = outcomes.clone();
                want.sort();
                want.dedup();
                let mut got = ours.clone();
                got.sort();
                assert_eq!(got, want, "kind {kind}");
                rows += 1;
            }
        }
        assert_eq!(rows, DECISION_LABELS.len());
    }
}
