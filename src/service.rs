//! The service's shared state and the operations the API performs on it.
//!
//! All changes to settings and the ledger happen under one async mutex and are stored before
//! the answer goes out: that is the "one place" where removal approvals are serialised, and
//! what makes an `accepted` durable.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use policy::{
    AddRefusal, Counts, LaunchDecision, Millis, Origin, Reason, RemovalDecision, Settings, State,
    Timing, decide_external_add, decide_removal,
};
use serde::Serialize;
use tokio::sync::Notify;

use crate::config::Config;
use crate::jicofo::{self, JicofoClient, Merged, ShardState};
use crate::lifecycle::Lifecycle;
use crate::store::{Snapshot, Store, StoreError};

/// Wall-clock time in milliseconds since the Unix epoch (the only clock read of the service).
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A service operation that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The change could not be stored, so it was not made.
    #[error("cannot store the change: {0}")]
    Store(#[from] StoreError),
    /// An add was refused by the policy.
    #[error("{}", refusal_text(.0))]
    AddRefused(AddRefusal),
}

fn refusal_text(r: &AddRefusal) -> String {
    match r {
        AddRefusal::StatsMissing => "refused: no fresh Jicofo stats, the total is unknown".into(),
        AddRefusal::AtMax {
            total,
            in_flight,
            max,
        } => {
            format!("refused: total {total} + in flight {in_flight} + 1 would pass max {max}")
        }
    }
}

/// One recorded decision, for the logs and `/scaler/status`.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    /// When.
    pub at: Millis,
    /// What kind: launch, remove, add, delete, timeout, setting, ...
    pub kind: &'static str,
    /// The host concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The outcome in a word (accepted, keep, created, failed, ...).
    pub outcome: String,
    /// Why, in words with the numbers.
    pub why: String,
    /// Who asked (token subject or client address), when someone did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The remove-me reason, for remove decisions (a metrics label).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

impl Decision {
    /// The same decision, for a remove-me with `reason`.
    pub fn with_reason(mut self, reason: Reason) -> Self {
        self.reason = Some(reason);
        self
    }
}

/// One ledger entry in `/scaler/status`.
#[derive(Serialize)]
struct HostRow<'a> {
    host: &'a str,
    origin: Origin,
    since_s: u64,
    age_s: u64,
    counted: bool,
    reason: Option<Reason>,
    ip: Option<&'a str>,
    attempts: u32,
    last_error: Option<&'a str>,
}

/// The `ledger` part of `/scaler/status`.
#[derive(Serialize)]
struct LedgerDoc<'a> {
    counts: std::collections::BTreeMap<&'static str, u32>,
    in_flight: u32,
    pending_removal: u32,
    unmanaged: i64,
    hosts: std::collections::BTreeMap<&'static str, Vec<HostRow<'a>>>,
}

/// The `/scaler/status` document.
#[derive(Serialize)]
struct StatusDoc<'a> {
    version: &'static str,
    uptime_s: u64,
    ready: bool,
    leader: bool,
    store: String,
    settings: serde_json::Value,
    jicofo: serde_json::Value,
    ledger: LedgerDoc<'a>,
    last_launch_decision: Option<LaunchDecision>,
    lifecycle: serde_json::Value,
    recent_decisions: &'a [Decision],
}

/// State guarded by the service mutex.
pub(crate) struct Core {
    pub(crate) snap: Snapshot,
    pub(crate) shards: Vec<ShardState>,
    pub(crate) last_launch: Option<LaunchDecision>,
}

/// The running service: config, state, store and neighbours.
pub struct Service {
    /// The effective configuration.
    pub cfg: Arc<Config>,
    pub(crate) timing: Timing,
    pub(crate) core: tokio::sync::Mutex<Core>,
    pub(crate) store: Store,
    pub(crate) lifecycle: Arc<Lifecycle>,
    pub(crate) jicofo: JicofoClient,
    decisions: std::sync::Mutex<VecDeque<Decision>>,
    /// Wakes the control loop early (a removal accepted, a launch result).
    pub(crate) wake: Notify,
    stats_attempted: AtomicBool,
    pub(crate) calls: std::sync::Mutex<HashSet<String>>,
    pub(crate) started_at: Millis,
    /// Metrics, audit trail and the loop's heartbeat (hooks; see `crate::ops`).
    pub ops: crate::ops::Ops,
}

impl Service {
    /// Builds the service from its parts, loading the stored state (or starting from the
    /// config's settings when nothing is stored). A store that cannot be read stops the start.
    pub async fn start(
        cfg: Config,
        store: Store,
        lifecycle: Lifecycle,
        jicofo: JicofoClient,
    ) -> Result<Arc<Service>, StoreError> {
        let snap = match store.load().await? {
            Some(s) => {
                tracing::info!(
                    store = %store.describe(),
                    min = s.settings.min_available,
                    max = s.settings.max_total,
                    bulk_max = s.settings.bulk_max,
                    entries = s.ledger.instances().count(),
                    "loaded stored state"
                );
                s
            }
            None => {
                let s = Snapshot::new(cfg.settings.to_settings());
                store.save(&s).await?;
                tracing::info!(store = %store.describe(), "no stored state: starting from the configured settings");
                s
            }
        };
        let shards = jicofo.initial_states();
        let ops = crate::ops::Ops::default();
        lifecycle.set_observer(ops.lifecycle_observer());
        Ok(Arc::new(Service {
            timing: cfg.policy.to_timing(),
            decisions: std::sync::Mutex::new(VecDeque::with_capacity(cfg.policy.recent_decisions)),
            cfg: Arc::new(cfg),
            core: tokio::sync::Mutex::new(Core {
                snap,
                shards,
                last_launch: None,
            }),
            store,
            lifecycle: Arc::new(lifecycle),
            jicofo,
            wake: Notify::new(),
            stats_attempted: AtomicBool::new(false),
            calls: std::sync::Mutex::new(HashSet::new()),
            started_at: now_ms(),
            ops,
        }))
    }

    /// Records a decision: one log line and an entry in the bounded ring.
    pub fn record(&self, d: Decision) {
        tracing::info!(
            kind = d.kind,
            host = d.host.as_deref().unwrap_or("-"),
            outcome = %d.outcome,
            by = d.by.as_deref().unwrap_or("-"),
            "{}",
            d.why
        );
        self.ops.record(&d);
        if let Ok(mut ring) = self.decisions.lock() {
            while ring.len() >= self.cfg.policy.recent_decisions {
                ring.pop_front();
            }
            ring.push_back(d);
        }
    }

    /// A decision made now.
    pub fn decision(
        kind: &'static str,
        host: Option<&str>,
        outcome: &str,
        why: String,
        by: Option<&str>,
    ) -> Decision {
        Decision {
            at: now_ms(),
            kind,
            host: host.map(str::to_string),
            outcome: outcome.to_string(),
            why,
            by: by.map(str::to_string),
            reason: None,
        }
    }

    /// The current settings.
    pub async fn settings(&self) -> Settings {
        self.core.lock().await.snap.settings
    }

    /// Changes one setting (`min`, `max`, `bulk-max`) and stores it before returning.
    pub async fn set_setting(
        &self,
        name: &'static str,
        value: u32,
        by: &str,
    ) -> Result<(), ServiceError> {
        let mut core = self.core.lock().await;
        let old = core.snap.settings;
        let mut next = core.snap.clone();
        match name {
            "min" => next.settings.min_available = value,
            "max" => next.settings.max_total = value,
            _ => next.settings.bulk_max = value,
        }
        next.settings_changed_by = Some(by.to_string());
        self.store.save(&next).await?;
        core.snap = next;
        drop(core);
        let before = match name {
            "min" => old.min_available,
            "max" => old.max_total,
            _ => old.bulk_max,
        };
        self.record(Self::decision(
            "setting",
            None,
            "changed",
            format!("{name} {before} -> {value}"),
            Some(by),
        ));
        self.wake.notify_one();
        Ok(())
    }

    /// Addresses the ledger knows for `host` (for binding a remove-me to its caller).
    pub async fn known_ips(&self, host: &str) -> Vec<std::net::IpAddr> {
        let core = self.core.lock().await;
        core.snap
            .ledger
            .find(host)
            .and_then(|i| i.ip.as_deref())
            .and_then(|ip| ip.parse().ok())
            .into_iter()
            .collect()
    }

    /// The merged Jicofo view now.
    fn merged(&self, core: &Core, now: Millis) -> Merged {
        jicofo::merge(&core.shards, now, self.timing.stats_max_age_ms)
    }

    /// Answers a remove-me request: the one serialised place where removals are approved.
    pub async fn remove_me(
        &self,
        host: &str,
        reason: Reason,
        by: &str,
    ) -> Result<RemovalDecision, ServiceError> {
        let now = now_ms();
        let mut core = self.core.lock().await;
        let merged = self.merged(&core, now);
        let lifecycle_up = self.lifecycle.is_up();
        let decision = decide_removal(
            &core.snap.ledger,
            &core.snap.settings,
            merged.observation.as_ref(),
            lifecycle_up,
            &self.timing,
            now,
            host,
            reason,
        );
        let min = core.snap.settings.min_available;
        let (outcome, why) = match decision {
            RemovalDecision::Accept { repeat: true, .. } => {
                ("accepted", "already approved (no budget spent)".to_string())
            }
            RemovalDecision::Accept {
                available,
                pending_removal,
                ..
            } => {
                let mut next = core.snap.clone();
                next.ledger.approve(host, reason, now, &self.timing);
                self.store.save(&next).await?;
                core.snap = next;
                let why = if reason == Reason::Idle {
                    format!(
                        "available {available} - pending {pending_removal} - 1 >= min {min}; stats fresh, lifecycle up"
                    )
                } else {
                    format!("{} hosts are removed at once and replaced", reason.as_str())
                };
                ("accepted", why)
            }
            RemovalDecision::Keep {
                cause,
                available,
                pending_removal,
            } => {
                let why = match cause {
                    policy::KeepCause::StatsMissing => {
                        "no fresh Jicofo stats: fail safe".to_string()
                    }
                    policy::KeepCause::LifecycleDown => {
                        "lifecycle manager unreachable (all breakers open)".into()
                    }
                    policy::KeepCause::StoreDown => "store unreachable".into(),
                    policy::KeepCause::Floor => format!(
                        "available {available} - pending {pending_removal} - 1 < min {min}: at the spare floor"
                    ),
                };
                ("keep", why)
            }
        };
        drop(core);
        self.record(
            Self::decision(
                "remove",
                Some(host),
                outcome,
                format!("{}: {why}", reason.as_str()),
                Some(by),
            )
            .with_reason(reason),
        );
        if decision.accepted() {
            self.wake.notify_one();
        }
        Ok(decision)
    }

    /// The agent reports that `host` has drained; returns whether the host was approved.
    pub async fn drained(&self, host: &str, by: &str) -> Result<bool, ServiceError> {
        let now = now_ms();
        let mut core = self.core.lock().await;
        let mut next = core.snap.clone();
        let known = next.ledger.drained(host, now);
        if next != core.snap {
            self.store.save(&next).await?;
            core.snap = next;
        }
        drop(core);
        let outcome = if known { "delete" } else { "unknown" };
        self.record(Self::decision(
            "drained",
            Some(host),
            outcome,
            if known {
                "agent confirmed the drain".into()
            } else {
                "no approved removal for this host".into()
            },
            Some(by),
        ));
        self.wake.notify_one();
        Ok(known)
    }

    /// `POST /scaler/instance`: one launch on request, through the same ledger and max check.
    pub async fn external_add(&self, by: &str) -> Result<String, ServiceError> {
        let now = now_ms();
        let mut core = self.core.lock().await;
        let merged = self.merged(&core, now);
        let counts = Counts::of(&core.snap.ledger);
        if let Err(r) = decide_external_add(
            counts,
            &core.snap.settings,
            merged.observation.as_ref(),
            now,
            &self.timing,
        ) {
            drop(core);
            self.record(Self::decision(
                "add",
                None,
                "refused",
                refusal_text(&r),
                Some(by),
            ));
            return Err(ServiceError::AddRefused(r));
        }
        let mut next = core.snap.clone();
        let host = crate::controller::new_host_name(&self.cfg.lifecycle.name_prefix, &next.ledger);
        next.ledger.record_launch(&host, Origin::Api, now);
        self.store.save(&next).await?;
        core.snap = next;
        drop(core);
        self.record(Self::decision(
            "add",
            Some(&host),
            "requested",
            format!("on request: in flight {} + 1, within max", counts.in_flight),
            Some(by),
        ));
        self.wake.notify_one();
        Ok(host)
    }

    /// Marks that a first stats reading was attempted (readiness).
    pub(crate) fn mark_stats_attempted(&self) {
        self.stats_attempted.store(true, Ordering::Relaxed);
    }

    /// Ready: the store is loaded (it is, once the service exists) and stats were attempted.
    pub fn is_ready(&self) -> bool {
        self.stats_attempted.load(Ordering::Relaxed)
    }

    /// The status document of `GET /scaler/status`, as a JSON value.
    pub async fn status(&self) -> serde_json::Value {
        serde_json::from_slice(&self.status_json().await).unwrap_or_default()
    }

    /// The status document of `GET /scaler/status`, serialised.
    ///
    /// Written straight from the ledger under the lock (no intermediate JSON tree, no copy
    /// of the ledger): with 10 000 entries this is what keeps the endpoint fast and small.
    pub async fn status_json(&self) -> Vec<u8> {
        let now = now_ms();
        // Taken before the lock: they need no ledger and nobody waits on them.
        let decisions: Vec<Decision> = self
            .decisions
            .lock()
            .map(|r| r.iter().rev().cloned().collect())
            .unwrap_or_default();
        let lifecycle = serde_json::json!({
            "backend": self.lifecycle.backend_name(),
            "up": self.lifecycle.is_up(),
            "nodes": self.lifecycle.nodes(),
        });
        let core = self.core.lock().await;
        let merged = self.merged(&core, now);
        let ledger = &core.snap.ledger;
        let counts = Counts::of(ledger);
        let by_state = ledger.count_by_state();
        let mut hosts: std::collections::BTreeMap<&'static str, Vec<HostRow<'_>>> = by_state
            .iter()
            .map(|(state, n)| (state.as_str(), Vec::with_capacity(*n as usize)))
            .collect();
        for i in ledger.instances() {
            if let Some(list) = hosts.get_mut(i.state.as_str()) {
                list.push(HostRow {
                    host: &i.host,
                    origin: i.origin,
                    since_s: now.saturating_sub(i.state_since) / 1000,
                    age_s: now.saturating_sub(i.created_at) / 1000,
                    counted: i.counted,
                    reason: i.reason,
                    ip: i.ip.as_deref(),
                    attempts: i.attempts,
                    last_error: i.last_error.as_deref(),
                });
            }
        }
        let shards: Vec<serde_json::Value> = core
            .shards
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "url": s.url,
                    "total": s.last.map(|r| r.total),
                    "available": s.last.map(|r| r.available),
                    "age_s": s.last.map(|r| now.saturating_sub(r.taken_at) as f64 / 1000.0),
                    "fresh": merged.fresh.contains(&s.name),
                    "last_error": s.last_error,
                    "errors": s.errors,
                })
            })
            .collect();
        let settings = core.snap.settings;
        let doc = StatusDoc {
            version: env!("CARGO_PKG_VERSION"),
            uptime_s: now.saturating_sub(self.started_at) / 1000,
            ready: self.is_ready(),
            leader: true,
            store: self.store.describe(),
            settings: serde_json::json!({
                "min": settings.min_available,
                "max": settings.max_total,
                "bulk_max": settings.bulk_max,
                "changed_by": core.snap.settings_changed_by,
            }),
            jicofo: serde_json::json!({
                "component": self.cfg.jicofo.component,
                "merged": merged.observation.map(|o| serde_json::json!({
                    "total": o.total,
                    "available": o.available,
                    "age_s": now.saturating_sub(o.taken_at) as f64 / 1000.0,
                })),
                "fresh_shards": merged.fresh,
                "stale_shards": merged.stale,
                "disagreement": merged.disagreement,
                "shards": shards,
            }),
            ledger: LedgerDoc {
                counts: by_state.iter().map(|(s, n)| (s.as_str(), *n)).collect(),
                in_flight: counts.in_flight,
                pending_removal: counts.pending_removal,
                unmanaged: ledger.offset(),
                hosts,
            },
            last_launch_decision: core.last_launch,
            lifecycle,
            recent_decisions: &decisions,
        };
        // Serialising plain structs and strings cannot fail.
        serde_json::to_vec(&doc).unwrap_or_default()
    }

    /// Number of ledger entries in `state` (tests and metrics).
    pub async fn count(&self, state: State) -> u32 {
        self.core
            .lock()
            .await
            .snap
            .ledger
            .count_by_state()
            .get(&state)
            .copied()
            .unwrap_or(0)
    }

    /// Stores the current state (on shutdown).
    pub async fn persist(&self) -> Result<(), StoreError> {
        let core = self.core.lock().await;
        self.store.save(&core.snap).await
    }
}
