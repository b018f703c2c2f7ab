//! The service's operations: what the API does (settings, remove-me, drained, add, status),
//! on top of the store, the Jicofo readings and the lifecycle manager.
//!
//! Every change to settings and the ledger goes through the store's compare-and-swap
//! ([`crate::store::Store::apply`]), serialised under one async mutex per replica and stored
//! before the answer goes out. With a shared store the write is retried on conflict, so
//! approvals are serialised across replicas too: that is the "one place" removal budgets are
//! spent, and what makes an `accepted` durable.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use policy::{
    Counts, LaunchDecision, Millis, Origin, Reason, RemovalDecision, Setting, Settings,
    StoreHealth, Timing,
};
use serde::Serialize;
use tokio::sync::Notify;

use crate::config::Config;
use crate::decision::{Decision, Record};
use crate::jicofo::{self, JicofoClient, Merged, ShardState};
use crate::lifecycle::Lifecycle;
use crate::ops::history::{HistoryDoc, Sample};
use crate::ops::{Ops, ShardView, View, WarmPoolView, now_ms};
use crate::store::{LeaseChange, Snapshot, Store, StoreError};

/// A service operation that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The change could not be stored, so it was not made.
    #[error("cannot store the change: {0}")]
    Store(#[from] StoreError),
    /// An add was refused by the policy.
    #[error("{}", crate::decision::refusal_text(.0))]
    AddRefused(policy::AddRefusal),
}

impl ServiceError {
    /// Whether the write was refused because another replica leads now.
    pub fn fenced(&self) -> bool {
        matches!(self, ServiceError::Store(StoreError::Fenced))
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
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    parked: bool,
    /// How its removal is carried out (`confirm`, `immediate`, `sidecar`).
    #[serde(skip_serializing_if = "Option::is_none")]
    drain: Option<&'static str>,
    /// Its jitsi-autoscaler sidecar's last report.
    #[serde(skip_serializing_if = "Option::is_none")]
    sidecar: Option<&'a policy::SidecarEvidence>,
    /// Whether the scaler may delete or power it off (launched by it, or confirmed managed).
    managed: bool,
    /// For a host it did not launch: what the lifecycle manager confirmed, and its answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    membership: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    membership_note: Option<&'a str>,
}

/// The `ledger` part of `/scaler/status`.
#[derive(Serialize)]
struct LedgerDoc<'a> {
    counts: std::collections::BTreeMap<&'static str, u32>,
    in_flight: u32,
    pending_removal: u32,
    unmanaged: i64,
    /// The boot timeout in force and why.
    boot_timeout: serde_json::Value,
    hosts: std::collections::BTreeMap<&'static str, Vec<HostRow<'a>>>,
}

/// Refused callers shown in `/scaler/status` (the table keeps more).
const RECENT_REFUSALS: usize = 20;

/// The `/scaler/status` document.
#[derive(Serialize)]
struct StatusDoc<'a> {
    version: &'static str,
    uptime_s: u64,
    ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_ready: Option<&'a str>,
    replica: &'a str,
    leader: bool,
    lease: Option<String>,
    store: serde_json::Value,
    settings: serde_json::Value,
    jicofo: serde_json::Value,
    ledger: LedgerDoc<'a>,
    last_launch_decision: Option<LaunchDecision>,
    /// Whether `max` holds back what the spare floor needs (the last launch decision's
    /// deficit is larger than the room under `max`).
    capped_by_max: Option<policy::Cap>,
    /// Target mode: effective min, its source and numbers.
    capacity: serde_json::Value,
    lifecycle: serde_json::Value,
    /// The warm pool's section.
    warm_pool: serde_json::Value,
    /// Refused requests: counts by caller and reason, and who was refused why (most recent
    /// first).
    auth_refusals: serde_json::Value,
    recent_decisions: &'a [Record],
}

/// State guarded by the service mutex, beside the stored snapshot.
struct Core {
    /// Each shard's last reading.
    shards: Vec<ShardState>,
    /// The control loop's last launch decision, for `/scaler/status`.
    last_launch: Option<LaunchDecision>,
    /// Expired/unhealthy approvals accepted while the store was unreachable, applied later.
    /// (host, reason, by, drain mode, so a queued agent approval still waits).
    queued: Vec<(String, Reason, String, policy::DrainMode)>,
}

/// The running service: config, store, neighbours and the recent decisions.
pub struct Service {
    /// The effective configuration.
    pub cfg: Arc<Config>,
    timing: Timing,
    core: tokio::sync::Mutex<Core>,
    store: Store,
    lifecycle: Arc<Lifecycle>,
    jicofo: JicofoClient,
    decisions: std::sync::Mutex<VecDeque<Record>>,
    /// Wakes the control loop early (a removal accepted, a launch result).
    wake: Notify,
    stats_attempted: AtomicBool,
    started_at: Millis,
    /// Metrics, audit trail and the loop's heartbeat (observers of every decision).
    pub ops: Ops,
    /// Target mode's sizing state (see `crate::capacity`).
    pub capacity: crate::capacity::Live,
    /// Sidecar ids the ledger did not know, per reporting address: a flood of invented ids
    /// is answered 429 and grows nothing.
    pub(crate) adoptions: crate::auth::RateLimiter,
}

/// New sidecar ids one address may bring into the ledger at once; then
/// [`ADOPTIONS_PER_MINUTE`]. A gateway host runs one sidecar, whose id changes only when its
/// container restarts.
pub const ADOPTION_BURST: u32 = 2;
/// New sidecar ids one address may bring in per minute, after the burst.
pub const ADOPTIONS_PER_MINUTE: u32 = 1;
impl Service {
    /// Builds the service from its parts, loading the stored state (or starting from the
    /// config's settings when nothing is stored); see [`Store::start`].
    pub async fn start(
        cfg: Config,
        store: Store,
        lifecycle: Lifecycle,
        jicofo: JicofoClient,
    ) -> Result<Arc<Service>, StoreError> {
        store
            .start(Snapshot::new(cfg.settings.to_settings()))
            .await?;
        // Target mode: config problems were refused before `start`; a zone file that vanished
        // since falls back to fixed mode, loudly.
        let capacity = crate::capacity::Live::new(&cfg.capacity, cfg.policy.tick, cfg.settings.max)
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "capacity: falling back to mode = \"fixed\"");
                crate::capacity::Live::fixed()
            });
        let (stored, max) = store
            .read(|s| (s.capacity.clone(), s.settings.max_total))
            .await;
        capacity.load(stored.as_ref(), max, true);
        capacity.warn_if_capped(max);
        let shards = jicofo.initial_states();
        let ops = Ops::default();
        lifecycle.set_observer(ops.lifecycle_observer());
        Ok(Arc::new(Service {
            timing: cfg.policy.to_timing(),
            decisions: std::sync::Mutex::new(VecDeque::with_capacity(cfg.policy.recent_decisions)),
            cfg: Arc::new(cfg),
            core: tokio::sync::Mutex::new(Core {
                shards,
                last_launch: None,
                queued: Vec::new(),
            }),
            store,
            lifecycle: Arc::new(lifecycle),
            jicofo,
            wake: Notify::new(),
            stats_attempted: AtomicBool::new(false),
            started_at: now_ms(),
            ops,
            capacity,
            adoptions: crate::auth::RateLimiter::new(ADOPTIONS_PER_MINUTE, ADOPTION_BURST, 4096),
        }))
    }

    /// Records a decision made now: log line, metrics, audit line, and the bounded ring of
    /// `/scaler/status`.
    pub fn record(&self, r: Record) {
        self.ops.record(&r);
        if let Ok(mut ring) = self.decisions.lock() {
            while ring.len() >= self.cfg.policy.recent_decisions {
                ring.pop_front();
            }
            ring.push_back(r);
        }
    }

    /// Records `d`, made now by the service itself.
    pub fn decide(&self, d: Decision) {
        self.record(Record::new(now_ms(), d));
    }

    /// The policy's timing knobs.
    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// The store (state and leadership).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The lifecycle manager client.
    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.lifecycle
    }

    /// When the service started (ms since the epoch).
    pub fn started_at(&self) -> Millis {
        self.started_at
    }

    /// Wakes the control loop now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Resolves when someone calls [`Service::wake`].
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Applies `change` to the latest stored snapshot with the current merged Jicofo view
    /// (see [`Store::apply`]); `fence` makes it a leader-only write.
    pub async fn apply<T>(
        &self,
        fence: Option<&str>,
        mut change: impl FnMut(&mut Snapshot, &Merged, StoreHealth) -> T,
    ) -> Result<T, ServiceError> {
        let core = self.core.lock().await;
        let now = now_ms();
        let merged = jicofo::merge(&core.shards, now, self.timing.stats_max_age_ms);
        let out = self
            .store
            .apply(fence, |snap, health| change(snap, &merged, health))
            .await?;
        drop(core);
        Ok(out)
    }

    /// The merged Jicofo view now (target mode sizes from it once per tick).
    pub async fn merged_now(&self) -> Merged {
        let core = self.core.lock().await;
        jicofo::merge(&core.shards, now_ms(), self.timing.stats_max_age_ms)
    }

    /// Reads every shard's Jicofo once (the tick's observation).
    pub async fn observe(&self) {
        let mut shards = self.core.lock().await.shards.clone();
        self.jicofo.poll(&mut shards, now_ms).await;
        self.stats_attempted.store(true, Ordering::Relaxed);
        self.core.lock().await.shards = shards;
    }

    /// The previous tick's launch decision, if any.
    pub async fn last_launch(&self) -> Option<LaunchDecision> {
        self.core.lock().await.last_launch
    }

    /// Publishes the control loop's launch decision; returns the previous one.
    pub async fn note_launch(&self, d: LaunchDecision) -> Option<LaunchDecision> {
        self.core.lock().await.last_launch.replace(d)
    }

    /// The current settings (fresh from a shared store; the last known ones if it is down).
    pub async fn settings(&self) -> Settings {
        self.store.read(|s| s.settings).await
    }

    /// Changes one setting and stores it before returning.
    pub async fn set_setting(
        &self,
        setting: Setting,
        value: u32,
        by: &str,
    ) -> Result<(), ServiceError> {
        let before = self
            .store
            .apply(None, |snap, _| {
                snap.settings_changed_by = Some(by.to_string());
                snap.settings.set(setting, value)
            })
            .await?;
        self.record(
            Record::new(
                now_ms(),
                Decision::Setting {
                    setting,
                    before,
                    after: value,
                },
            )
            .by(by),
        );
        self.wake();
        Ok(())
    }

    /// Addresses the ledger knows for `host` (for binding a remove-me to its caller).
    pub async fn known_ips(&self, host: &str) -> Vec<std::net::IpAddr> {
        self.store
            .read(|snap| {
                snap.ledger
                    .find(host)
                    .and_then(|i| i.ip.as_deref())
                    .and_then(|ip| ip.parse().ok())
                    .into_iter()
                    .collect()
            })
            .await
    }

    /// Answers a remove-me request: the one serialised place where removals are approved.
    /// It never fails: when the store cannot record an approval the policy's store-down rule
    /// answers (idle hosts are kept; expired/unhealthy ones are accepted and queued until the
    /// store is back).
    pub async fn remove_me(&self, host: &str, reason: Reason, by: &str) -> RemovalDecision {
        self.remove_me_as(host, reason, None, by).await
    }

    /// [`Service::remove_me`] for a client that may say how its host drains
    /// (`"drain": "confirm"` from our agent); `None` takes `policy.drain_confirm`.
    pub async fn remove_me_as(
        &self,
        host: &str,
        reason: Reason,
        drain: Option<policy::DrainMode>,
        by: &str,
    ) -> RemovalDecision {
        let now = now_ms();
        let lifecycle_up = self.lifecycle.is_up();
        let mode = drain.unwrap_or(policy::DrainMode::default_for(&self.timing));
        let min = |s: &Snapshot| s.settings.min_available;
        let result = self
            .apply(None, |snap, merged, health| {
                // The store as just read: while it restores its state after a data loss, an
                // idle host keeps (nothing stored); otherwise the normal rule decides.
                if let Some(d) = policy::decide_removal_without_store(health, reason) {
                    return (d, min(snap));
                }
                // The effective min (target mode), not only the API's floor.
                let settings = self.capacity.effective(&snap.settings);
                // warm pool: an approved removal may go into the pool.
                let inputs = policy::Inputs::new(
                    &settings,
                    merged.observation.as_ref(),
                    lifecycle_up,
                    &self.timing,
                    now,
                );
                let d = crate::warm_pool::remove_request(
                    &self.cfg.warm_pool,
                    &mut snap.ledger,
                    &inputs,
                    host,
                    reason,
                    mode,
                );
                (d, settings.min_available)
            })
            .await;
        // Target mode: a first `expired` request is a finished call on single-use gateways.
        if let Ok((RemovalDecision::Accept { repeat: false, .. }, _)) = &result
            && reason == Reason::Expired
        {
            self.capacity.completion();
        }
        let (answer, min, store_error) = match result {
            Ok((d, min)) => (d, min, None),
            Err(e) => {
                // The write failed: the store is down for this request whatever it said before.
                let d = policy::decide_removal_without_store(StoreHealth::Down, reason).unwrap_or(
                    RemovalDecision::Keep {
                        cause: policy::KeepCause::StoreDown,
                        available: 0,
                        pending_removal: 0,
                    },
                );
                if d.accepted() {
                    self.core.lock().await.queued.push((
                        host.to_string(),
                        reason,
                        by.to_string(),
                        mode,
                    ));
                }
                (d, self.store.read(min).await, Some(e.to_string()))
            }
        };
        self.record(
            Record::new(
                now,
                Decision::Remove {
                    host: host.to_string(),
                    reason,
                    answer,
                    min,
                    store_error,
                },
            )
            .by(by),
        );
        if answer.accepted() {
            self.wake();
        }
        answer
    }

    /// Applies approvals queued while the store was down.
    pub async fn flush_queued(&self) {
        let queued = std::mem::take(&mut self.core.lock().await.queued);
        if queued.is_empty() {
            return;
        }
        let now = now_ms();
        let result = self
            .store
            .apply(None, |snap, _| {
                for (host, reason, _, mode) in &queued {
                    snap.ledger.approve_as(host, *reason, now, *mode);
                }
            })
            .await;
        match result {
            Ok(()) => {
                for (host, reason, by, _) in queued {
                    self.record(Record::new(now, Decision::QueuedStored { host, reason }).by(&by));
                }
            }
            Err(_) => self.core.lock().await.queued.extend(queued),
        }
    }

    /// The agent reports that `host` has drained; returns whether the host was approved.
    pub async fn drained(&self, host: &str, by: &str) -> Result<bool, ServiceError> {
        let now = now_ms();
        let known = self
            .store
            .apply(None, |snap, _| snap.ledger.drained(host, now))
            .await?;
        self.record(
            Record::new(
                now,
                Decision::Drained {
                    host: host.to_string(),
                    known,
                },
            )
            .by(by),
        );
        self.wake();
        Ok(known)
    }

    /// `POST /scaler/instance`: one launch on request, through the same ledger and max check,
    /// and only while it is needed: the legacy scale-up script left running beside
    /// the scale-up loop must not launch a second time for the same deficit. Returns the host
    /// launched, or `None` when nothing was needed (answered as accepted, as the legacy scaler
    /// did; the decision says why).
    pub async fn external_add(&self, by: &str) -> Result<Option<String>, ServiceError> {
        let now = now_ms();
        let prefix = &self.cfg.lifecycle.name_prefix;
        let result = self
            .apply(None, |snap, merged, _| {
                let counts = Counts::of(&snap.ledger);
                let add = policy::decide_requested_add(
                    counts,
                    &snap.settings,
                    merged.observation.as_ref(),
                    now,
                    &self.timing,
                )?;
                if let policy::RequestedAdd::NotNeeded { .. } = add {
                    return Ok(Err(add));
                }
                let host = crate::hostname::new_host_name(prefix, &snap.ledger);
                snap.ledger.record_launch(&host, Origin::Api, now);
                Ok(Ok((host, counts.in_flight)))
            })
            .await?;
        let (decision, out) = match result {
            Ok(Ok((host, in_flight))) => (
                Decision::Add {
                    host: host.clone(),
                    in_flight,
                },
                Ok(Some(host)),
            ),
            Ok(Err(add)) => (Decision::AddNotNeeded { add }, Ok(None)),
            Err(refusal) => (
                Decision::AddRefused { refusal },
                Err(ServiceError::AddRefused(refusal)),
            ),
        };
        self.record(Record::new(now, decision).by(by));
        if matches!(out, Ok(Some(_))) {
            self.wake();
        }
        out
    }

    /// Why the service is not ready, if it is not: the store must be reachable and writable,
    /// Jicofo must have been read recently, and the leader must reach the lifecycle manager and
    /// not have had its creates refused since the last created host.
    pub async fn not_ready_reason(&self) -> Option<String> {
        if !self.store.reachable() {
            return Some(format!(
                "store {} unreachable or not writable: {}",
                self.store.describe(),
                self.store.last_error().unwrap_or_default()
            ));
        }
        if !self.stats_attempted.load(Ordering::Relaxed) {
            return Some("no Jicofo reading attempted yet".into());
        }
        let merged = {
            let core = self.core.lock().await;
            jicofo::merge(&core.shards, now_ms(), self.timing.stats_max_age_ms)
        };
        if merged.observation.is_none() {
            let max_age = self.timing.stats_max_age_ms / 1000;
            return Some(format!(
                "no Jicofo reading younger than policy.stats_max_age ({max_age}s) from any shard"
            ));
        }
        // A leader whose creates are all refused (a revoked token, a wrong host group) launches
        // nothing, however reachable the lifecycle manager is: a load balancer or an operator
        // should see that here, not only in the log.
        let refusals = self.lifecycle.create_refusals();
        if self.is_leader() && refusals > 0 {
            return Some(format!(
                "leader's creates are refused by the lifecycle manager ({refusals} in a row since the last created host; the log line of the refusal says what to fix)"
            ));
        }
        if self.is_leader() && !self.lifecycle.is_up() {
            return Some("leader cannot reach the lifecycle manager (every breaker open)".into());
        }
        None
    }

    /// The lease value while this replica leads.
    pub fn lease(&self) -> Option<String> {
        self.store.lease()
    }

    /// Whether this replica runs the launch loop now.
    pub fn is_leader(&self) -> bool {
        self.lease().is_some()
    }

    /// Takes or renews the leader lease, recording a change of leadership.
    pub async fn renew_lease(&self) {
        if let Some(change) = self.store.renew_lease().await {
            let lease = match change {
                LeaseChange::Acquired(v) => Some(v),
                LeaseChange::Lost => None,
            };
            self.decide(Decision::Leader { lease });
            self.wake();
        }
    }

    /// The status document of `GET /scaler/status`, serialised.
    ///
    /// Written straight from the ledger under the lock (no intermediate JSON tree, no copy
    /// of the ledger): with 10 000 entries this is what keeps the endpoint fast and small.
    pub async fn status_json(&self) -> Vec<u8> {
        let now = now_ms();
        // Taken before the lock: they need no ledger and nobody waits on them.
        let decisions: Vec<Record> = self
            .decisions
            .lock()
            .map(|r| r.iter().rev().cloned().collect())
            .unwrap_or_default();
        let lifecycle = serde_json::json!({
            "backend": self.lifecycle.backend_name(),
            "up": self.lifecycle.is_up(),
            "nodes": self.lifecycle.nodes(),
        });
        let not_ready = self.not_ready_reason().await;
        let refusals = self.refusals_doc();
        let core = self.core.lock().await;
        let merged = jicofo::merge(&core.shards, now, self.timing.stats_max_age_ms);
        // A follower shows the shared ledger as it is now, not as of its last tick.
        self.store
            .read(|snap| {
                let doc = StatusDoc {
                    version: env!("CARGO_PKG_VERSION"),
                    uptime_s: now.saturating_sub(self.started_at) / 1000,
                    ready: not_ready.is_none(),
                    not_ready: not_ready.as_deref(),
                    replica: self.store.replica(),
                    leader: self.is_leader(),
                    lease: self.store.leader(),
                    store: serde_json::json!({
                        "backend": self.store.describe(),
                        "reachable": self.store.reachable(),
                        "health": self.store.health(),
                        "last_error": self.store.last_error(),
                        "writes": self.store.writes(),
                        "write_failures": self.store.write_failures(),
                        "generation": snap.generation,
                        "queued_approvals": core.queued.len(),
                    }),
                    settings: serde_json::json!({
                        "min": snap.settings.min_available,
                        // The spare floor the launch rule holds now (target mode, schedule).
                        "effective_min": self.capacity.effective(&snap.settings).min_available,
                        "max": snap.settings.max_total,
                        "bulk_max": snap.settings.bulk_max,
                        "changed_by": snap.settings_changed_by,
                    }),
                    jicofo: jicofo_doc(&self.cfg.jicofo.component, &core.shards, &merged, now),
                    ledger: ledger_doc(&snap.ledger, &self.timing, now),
                    last_launch_decision: core.last_launch,
                    capped_by_max: core
                        .last_launch
                        .and_then(|d| policy::Cap::of(&d, snap.settings.max_total)),
                    capacity: self.capacity.status(),
                    lifecycle,
                    warm_pool: crate::warm_pool::status(&self.cfg.warm_pool, &snap.ledger),
                    auth_refusals: refusals.clone(),
                    recent_decisions: &decisions,
                };
                // Serialising plain structs and strings cannot fail.
                serde_json::to_vec(&doc).unwrap_or_default()
            })
            .await
    }

    /// The `auth_refusals` part of `/scaler/status`: counts by caller and reason since start,
    /// and the most recent refused callers with the cause.
    fn refusals_doc(&self) -> serde_json::Value {
        let mut counts = serde_json::Map::new();
        for (caller, reason, n) in self.ops.metrics.refusal_counts() {
            let by_reason = counts
                .entry(caller)
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            if let serde_json::Value::Object(m) = by_reason {
                m.insert(reason.to_string(), n.into());
            }
        }
        let mut recent = self.ops.refusals.rows();
        recent.truncate(RECENT_REFUSALS);
        serde_json::json!({ "counts": counts, "recent": recent })
    }

    /// The state mirrored by the scrape-time gauges of `GET /metrics`.
    pub async fn metrics_view(&self) -> View {
        let now = now_ms();
        let (shards, merged) = {
            let core = self.core.lock().await;
            let merged = jicofo::merge(&core.shards, now, self.timing.stats_max_age_ms);
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
            (shards, merged)
        };
        let ready = self.not_ready_reason().await.is_none();
        let (queued_approvals, last_launch) = {
            let core = self.core.lock().await;
            (
                u32::try_from(core.queued.len()).unwrap_or(u32::MAX),
                core.last_launch,
            )
        };
        let pool = self.cfg.warm_pool.to_policy();
        let view = self
            .store
            .read(|snap| {
                let counts = Counts::of(&snap.ledger);
                let by_state = snap.ledger.count_by_state();
                let n = |s: policy::State| by_state.get(&s).copied().unwrap_or(0);
                View {
                    in_flight: counts.in_flight,
                    pending_removal: counts.pending_removal,
                    unmanaged: snap.ledger.offset(),
                    settings: snap.settings,
                    effective_min: self.capacity.effective(&snap.settings).min_available,
                    warm_pool: WarmPoolView {
                        size: self.cfg.warm_pool.size,
                        level: snap.ledger.pool_level(),
                        refill_level: snap.ledger.refill_level(&pool),
                        starting: n(policy::State::Starting) + n(policy::State::Resuming),
                    },
                    by_state: by_state.into_iter().collect(),
                    launch_capped: last_launch
                        .and_then(|d| policy::Cap::of(&d, snap.settings.max_total))
                        .is_some(),
                    ..View::default()
                }
            })
            .await;
        let capacity = self.capacity.status();
        View {
            shards,
            merged: merged.observation.map(|o| (o.total, o.available)),
            disagreement: merged.disagreement,
            backend: self.lifecycle.backend_name(),
            lifecycle_up: self.lifecycle.is_up(),
            nodes: self.lifecycle.nodes(),
            // The launch hold after refused creates.
            create_refusals: self.lifecycle.create_refusals(),
            launch_hold_s: self.lifecycle.launch_hold_remaining().as_secs_f64(),
            leader: self.is_leader(),
            ready,
            store_write_failures: self.store.write_failures(),
            start_time_s: self.started_at as f64 / 1000.0,
            last_tick_s: self.ops.last_tick_ms() as f64 / 1000.0,
            capacity: self.capacity.last(),
            capacity_mode: match self.capacity.mode() {
                crate::capacity::Mode::Target => "target",
                crate::capacity::Mode::Fixed => "fixed",
            },
            hours_learned: capacity["hours_learned"].as_f64().unwrap_or(0.0),
            queued_approvals,
            ..view
        }
    }

    /// One sample of the pool into the status page's history (after each tick).
    pub async fn record_history(&self) {
        let v = self.metrics_view().await;
        let draining = v
            .by_state
            .iter()
            .filter(|(s, _)| matches!(s, policy::State::Draining | policy::State::Deleting))
            .map(|(_, n)| n)
            .sum();
        let sample = Sample {
            at: now_ms(),
            total: v.merged.map(|(t, _)| t),
            available: v.merged.map(|(_, a)| a),
            in_flight: v.in_flight,
            draining,
            pending_removal: v.pending_removal,
            min: v
                .capacity
                .as_ref()
                .map_or(v.settings.min_available, |s| s.effective_min),
            floor: v.settings.min_available,
            max: v.settings.max_total,
            leader: v.leader,
            store_ok: self.store.reachable(),
            ..Sample::default()
        };
        self.ops
            .history
            .push(sample, self.cfg.metrics.history_samples);
    }

    /// The `GET {prefix}/history` document: samples after `since` (ms since the epoch).
    pub fn history(&self, since: u64) -> HistoryDoc {
        HistoryDoc {
            capacity: self.cfg.metrics.history_samples,
            tick_ms: u64::try_from(self.cfg.policy.tick.as_millis()).unwrap_or(u64::MAX),
            samples: self.ops.history.since(since),
        }
    }

    /// The `GET /metrics` body in `format`.
    pub async fn metrics_text(
        &self,
        format: crate::ops::metrics::Format,
    ) -> Result<String, std::fmt::Error> {
        let view = self.metrics_view().await;
        self.ops.metrics.render_as(&view, format)
    }
}

/// The `jicofo` part of `/scaler/status`.
fn jicofo_doc(
    component: &str,
    shards: &[ShardState],
    merged: &Merged,
    now: Millis,
) -> serde_json::Value {
    let shards: Vec<serde_json::Value> = shards
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
    serde_json::json!({
        "component": component,
        "merged": merged.observation.map(|o| serde_json::json!({
            "total": o.total,
            "available": o.available,
            "age_s": now.saturating_sub(o.taken_at) as f64 / 1000.0,
        })),
        "fresh_shards": merged.fresh,
        "stale_shards": merged.stale,
        "disagreement": merged.disagreement,
        "shards": shards,
    })
}

/// The `ledger` part of `/scaler/status`, borrowing from the ledger.
fn ledger_doc<'a>(ledger: &'a policy::Ledger, timing: &Timing, now: Millis) -> LedgerDoc<'a> {
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
                parked: i.parked,
                drain: i.drain.map(policy::DrainMode::as_str),
                sidecar: i.sidecar.as_ref(),
                managed: i.managed(),
                membership: (i.origin == Origin::Adopted).then(|| i.membership.as_str()),
                membership_note: i.membership_note.as_deref(),
            });
        }
    }
    LedgerDoc {
        counts: by_state.iter().map(|(s, n)| (s.as_str(), *n)).collect(),
        in_flight: counts.in_flight,
        pending_removal: counts.pending_removal,
        unmanaged: ledger.offset(),
        boot_timeout: boot_timeout_doc(ledger.boot_timeout(timing)),
        hosts,
    }
}

/// The boot timeout in force, with the reason in words.
fn boot_timeout_doc(b: policy::BootTimeout) -> serde_json::Value {
    let s = |ms: u64| ms as f64 / 1000.0;
    let why = match b.measured_ms {
        Some(m) if b.in_force_ms > b.configured_ms => format!(
            "{} measured boots: {} x their high estimate ({:.0} s) is longer than policy.boot_timeout ({:.0} s){}",
            b.boots,
            policy::BOOT_TIMEOUT_FACTOR,
            s(m),
            s(b.configured_ms),
            if b.in_force_ms < m {
                format!(
                    ", capped at {} x policy.boot_timeout",
                    policy::BOOT_TIMEOUT_CAP
                )
            } else {
                String::new()
            }
        ),
        Some(m) => format!(
            "{} measured boots: {} x their high estimate ({:.0} s) fits within policy.boot_timeout",
            b.boots,
            policy::BOOT_TIMEOUT_FACTOR,
            s(m)
        ),
        None => format!(
            "policy.boot_timeout: {} boots measured, {} needed before they count",
            b.boots,
            policy::BOOTS_TO_TRUST
        ),
    };
    serde_json::json!({
        "configured_s": s(b.configured_ms),
        "measured_s": b.measured_ms.map(s),
        "in_force_s": s(b.in_force_ms),
        "why": why,
    })
}
