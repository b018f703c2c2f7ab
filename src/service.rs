//! The service's shared state and the operations the API performs on it.
//!
//! Every change to settings and the ledger goes through [`Service::mutate`]: under one async
//! mutex per replica, applied to the latest stored snapshot and stored before the answer goes
//! out. With a shared store the write is a compare-and-swap retried on conflict, so approvals
//! are serialised across replicas too: that is the "one place" removal budgets are spent, and
//! what makes an `accepted` durable.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use policy::{
    AddRefusal, Counts, KeepCause, LaunchDecision, Millis, Origin, Reason, RemovalDecision,
    Settings, State, Timing, decide_external_add,
};
use serde::Serialize;
use tokio::sync::Notify;

use crate::config::Config;
use crate::jicofo::{self, JicofoClient, Merged, ShardState};
use crate::lifecycle::Lifecycle;
use crate::store::{CasOutcome, Snapshot, Store, StoreError};

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
    /// A leader-only write was refused: another replica holds the lease now.
    #[error("not the leader any more")]
    NotLeader,
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
    replica: &'a str,
    leader: bool,
    lease: Option<String>,
    store: serde_json::Value,
    settings: serde_json::Value,
    jicofo: serde_json::Value,
    ledger: LedgerDoc<'a>,
    last_launch_decision: Option<LaunchDecision>,
    lifecycle: serde_json::Value,
    /// warm pool (issue 13)
    warm_pool: serde_json::Value,
    recent_decisions: &'a [Decision],
}

/// State guarded by the service mutex.
pub(crate) struct Core {
    /// The latest snapshot this replica has seen (the stored one after every write).
    pub(crate) snap: Snapshot,
    /// Its version in a shared store.
    version: u64,
    pub(crate) shards: Vec<ShardState>,
    pub(crate) last_launch: Option<LaunchDecision>,
    /// Expired/unhealthy approvals accepted while the store was unreachable, applied later.
    queued: Vec<(String, Reason, String)>,
}

/// How many compare-and-swap conflicts a write tolerates before giving up.
const MAX_CAS_ATTEMPTS: usize = 64;

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
    store_ok: AtomicBool,
    /// The leader lease value while this replica holds it (`None`: follower).
    lease: std::sync::Mutex<Option<String>>,
    /// Who holds the lease, as last seen.
    lease_holder: std::sync::Mutex<Option<String>>,
    /// Name of this replica in the lease.
    pub replica: String,
    pub(crate) calls: std::sync::Mutex<HashSet<String>>,
    pub(crate) started_at: Millis,
    writes: AtomicU64,
    /// Metrics, audit trail and the loop's heartbeat (hooks; see `crate::ops`).
    pub ops: crate::ops::Ops,
}

impl Service {
    /// Builds the service from its parts, loading the stored state (or starting from the
    /// config's settings when nothing is stored). A store that cannot be read stops the start;
    /// a shared store that is down is tolerated (the service fails safe until it is back).
    pub async fn start(
        cfg: Config,
        store: Store,
        lifecycle: Lifecycle,
        jicofo: JicofoClient,
    ) -> Result<Arc<Service>, StoreError> {
        let initial = Snapshot::new(cfg.settings.to_settings());
        let (snap, store_ok) = match store.load().await {
            Ok(Some(s)) => {
                tracing::info!(
                    store = %store.describe(),
                    min = s.settings.min_available,
                    max = s.settings.max_total,
                    bulk_max = s.settings.bulk_max,
                    entries = s.ledger.instances().count(),
                    "loaded stored state"
                );
                (s, true)
            }
            Ok(None) => {
                if let Store::Redis(r) = &store {
                    // Another replica may be first: only write if still empty.
                    r.compare_and_swap(0, &initial, None).await?;
                } else {
                    store.save(&initial).await?;
                }
                tracing::info!(store = %store.describe(), "no stored state: starting from the configured settings");
                (initial, true)
            }
            Err(StoreError::Unreachable(e)) if store.shared() => {
                tracing::error!(store = %store.describe(), error = %e, "shared store unreachable at start: failing safe until it is back");
                (initial, false)
            }
            Err(e) => return Err(e),
        };
        let shards = jicofo.initial_states();
        let replica = replica_name(&cfg);
        let ops = crate::ops::Ops::default();
        lifecycle.set_observer(ops.lifecycle_observer());
        Ok(Arc::new(Service {
            timing: cfg.policy.to_timing(),
            decisions: std::sync::Mutex::new(VecDeque::with_capacity(cfg.policy.recent_decisions)),
            cfg: Arc::new(cfg),
            core: tokio::sync::Mutex::new(Core {
                snap,
                version: 0,
                shards,
                last_launch: None,
                queued: Vec::new(),
            }),
            store,
            lifecycle: Arc::new(lifecycle),
            jicofo,
            wake: Notify::new(),
            stats_attempted: AtomicBool::new(false),
            store_ok: AtomicBool::new(store_ok),
            lease: std::sync::Mutex::new(None),
            lease_holder: std::sync::Mutex::new(None),
            replica,
            calls: std::sync::Mutex::new(HashSet::new()),
            started_at: now_ms(),
            writes: AtomicU64::new(0),
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

    /// Notes the outcome of a store operation (readiness, status).
    fn note_store<T>(&self, r: &Result<T, StoreError>) {
        let ok = !matches!(r, Err(StoreError::Unreachable(_)));
        let was = self.store_ok.swap(ok, Ordering::Relaxed);
        if was && !ok {
            tracing::error!(store = %self.store.describe(), "store unreachable: no launches, idle removals keep");
        } else if !was && ok {
            tracing::info!(store = %self.store.describe(), "store reachable again");
            self.wake.notify_one();
        }
    }

    /// Whether the store answered the last operation.
    pub fn store_ok(&self) -> bool {
        self.store_ok.load(Ordering::Relaxed)
    }

    /// Refreshes the cached snapshot from a shared store (no-op for the embedded one).
    async fn refresh(&self, core: &mut Core) -> Result<(), StoreError> {
        if let Store::Redis(r) = &self.store {
            let loaded = r.load_versioned().await;
            self.note_store(&loaded);
            match loaded? {
                Some((snap, version)) => {
                    core.snap = snap;
                    core.version = version;
                }
                None => {
                    // The store lost its data (a Redis restarted without persistence): the
                    // next write seeds it again from this replica's last known snapshot.
                    if core.version != 0 {
                        tracing::warn!(store = %self.store.describe(), "shared store is empty: re-seeding it from this replica's state");
                    }
                    core.version = 0;
                }
            }
        }
        Ok(())
    }

    /// Refreshes the cached snapshot (each tick on every replica), so a follower's view is at
    /// most one tick old when the store becomes unreachable.
    pub(crate) async fn sync(&self) {
        let mut core = self.core.lock().await;
        let _ = self.refresh(&mut core).await;
    }

    /// Applies `change` to the latest stored snapshot and stores the result before returning.
    /// `change` may run several times (a shared store retries on conflict), so it must only
    /// compute from its argument. With `fence` (the leader's lease), the write is refused once
    /// another replica has taken the lease.
    pub(crate) async fn mutate<T>(
        &self,
        fence: Option<&str>,
        mut change: impl FnMut(&mut Snapshot, &Core) -> T,
    ) -> Result<T, ServiceError> {
        let mut core = self.core.lock().await;
        for _ in 0..MAX_CAS_ATTEMPTS {
            self.refresh(&mut core).await?;
            let mut next = core.snap.clone();
            let out = change(&mut next, &core);
            if next == core.snap {
                return Ok(out);
            }
            let written = match &self.store {
                Store::Embedded(e) => e.save(&next).await.map(|()| CasOutcome::Swapped),
                Store::Redis(r) => r.compare_and_swap(core.version, &next, fence).await,
            };
            self.note_store(&written);
            match written? {
                CasOutcome::Swapped => {
                    core.snap = next;
                    core.version += 1;
                    self.writes.fetch_add(1, Ordering::Relaxed);
                    return Ok(out);
                }
                CasOutcome::Conflict => continue,
                CasOutcome::Fenced => return Err(ServiceError::NotLeader),
            }
        }
        Err(StoreError::Contention.into())
    }

    /// The current settings (fresh from a shared store; the last known ones if it is down).
    pub async fn settings(&self) -> Settings {
        let mut core = self.core.lock().await;
        let _ = self.refresh(&mut core).await;
        core.snap.settings
    }

    /// Changes one setting (`min`, `max`, `bulk-max`) and stores it before returning.
    pub async fn set_setting(
        &self,
        name: &'static str,
        value: u32,
        by: &str,
    ) -> Result<(), ServiceError> {
        let before = self
            .mutate(None, |snap, _| {
                let slot = match name {
                    "min" => &mut snap.settings.min_available,
                    "max" => &mut snap.settings.max_total,
                    _ => &mut snap.settings.bulk_max,
                };
                let before = *slot;
                *slot = value;
                snap.settings_changed_by = Some(by.to_string());
                before
            })
            .await?;
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
    /// It never fails: when the store cannot record an approval, idle hosts are kept and
    /// expired/unhealthy ones are accepted and queued until the store is back.
    pub async fn remove_me(&self, host: &str, reason: Reason, by: &str) -> RemovalDecision {
        let now = now_ms();
        let lifecycle_up = self.lifecycle.is_up();
        let result = self
            .mutate(None, |snap, core| {
                let merged = self.merged(core, now);
                // warm pool (issue 13): an approved removal may go into the pool.
                let d = crate::warm_pool::remove_request(
                    &self.cfg.warm_pool,
                    &mut snap.ledger,
                    &snap.settings,
                    merged.observation.as_ref(),
                    lifecycle_up,
                    &self.timing,
                    now,
                    host,
                    reason,
                );
                (d, snap.settings.min_available)
            })
            .await;
        let (decision, why) = match result {
            Ok((d, min)) => (d, explain_removal(&d, reason, min)),
            Err(e) if reason == Reason::Idle => {
                let d = RemovalDecision::Keep {
                    cause: KeepCause::StoreDown,
                    available: 0,
                    pending_removal: 0,
                };
                (d, format!("cannot reserve the removal budget: {e}"))
            }
            Err(e) => {
                self.core
                    .lock()
                    .await
                    .queued
                    .push((host.to_string(), reason, by.to_string()));
                let d = RemovalDecision::Accept {
                    repeat: false,
                    available: 0,
                    pending_removal: 0,
                };
                (
                    d,
                    format!("store unavailable ({e}): accepted and queued until it is back"),
                )
            }
        };
        let outcome = if decision.accepted() {
            "accepted"
        } else {
            "keep"
        };
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
        decision
    }

    /// Applies approvals queued while the store was down.
    pub(crate) async fn flush_queued(&self) {
        let queued = std::mem::take(&mut self.core.lock().await.queued);
        if queued.is_empty() {
            return;
        }
        let now = now_ms();
        let result = self
            .mutate(None, |snap, _| {
                for (host, reason, _) in &queued {
                    snap.ledger.approve(host, *reason, now, &self.timing);
                }
            })
            .await;
        match result {
            Ok(()) => {
                for (host, reason, by) in queued {
                    self.record(Self::decision(
                        "remove",
                        Some(&host),
                        "recorded",
                        format!("{}: queued approval stored", reason.as_str()),
                        Some(&by),
                    ));
                }
            }
            Err(_) => self.core.lock().await.queued.extend(queued),
        }
    }

    /// The agent reports that `host` has drained; returns whether the host was approved.
    pub async fn drained(&self, host: &str, by: &str) -> Result<bool, ServiceError> {
        let now = now_ms();
        let known = self
            .mutate(None, |snap, _| snap.ledger.drained(host, now))
            .await?;
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
        let result = self
            .mutate(None, |snap, core| {
                let merged = self.merged(core, now);
                let counts = Counts::of(&snap.ledger);
                decide_external_add(
                    counts,
                    &snap.settings,
                    merged.observation.as_ref(),
                    now,
                    &self.timing,
                )?;
                let host =
                    crate::controller::new_host_name(&self.cfg.lifecycle.name_prefix, &snap.ledger);
                snap.ledger.record_launch(&host, Origin::Api, now);
                Ok((host, counts.in_flight))
            })
            .await?;
        match result {
            Ok((host, in_flight)) => {
                self.record(Self::decision(
                    "add",
                    Some(&host),
                    "requested",
                    format!("on request: in flight {in_flight} + 1, within max"),
                    Some(by),
                ));
                self.wake.notify_one();
                Ok(host)
            }
            Err(r) => {
                self.record(Self::decision(
                    "add",
                    None,
                    "refused",
                    refusal_text(&r),
                    Some(by),
                ));
                Err(ServiceError::AddRefused(r))
            }
        }
    }

    /// Marks that a first stats reading was attempted (readiness).
    pub(crate) fn mark_stats_attempted(&self) {
        self.stats_attempted.store(true, Ordering::Relaxed);
    }

    /// Ready: the store is loaded and reachable, and a first stats reading was attempted.
    pub fn is_ready(&self) -> bool {
        self.stats_attempted.load(Ordering::Relaxed) && self.store_ok()
    }

    /// Why the service is not ready, if it is not.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if !self.store_ok() {
            Some("store unreachable")
        } else if !self.stats_attempted.load(Ordering::Relaxed) {
            Some("no Jicofo reading attempted yet")
        } else {
            None
        }
    }

    /// The lease value while this replica leads.
    pub fn lease(&self) -> Option<String> {
        self.lease.lock().ok().and_then(|l| l.clone())
    }

    /// Whether this replica runs the launch loop now.
    pub fn is_leader(&self) -> bool {
        self.lease().is_some()
    }

    /// Takes or renews the leader lease (always held with the embedded store).
    pub(crate) async fn renew_lease(&self) {
        let held = self.lease();
        let result = match &self.store {
            Store::Embedded(_) => Ok(Some(format!("{}:embedded", self.replica))),
            Store::Redis(r) => {
                let ttl = self.cfg.store.lease_ttl;
                let got = r.lease(&self.replica, held.as_deref(), ttl).await;
                if let Ok(holder) = r.lease_holder().await
                    && let Ok(mut h) = self.lease_holder.lock()
                {
                    *h = holder;
                }
                got
            }
        };
        self.note_store(&result);
        let now_held = result.unwrap_or(None);
        if held != now_held {
            let d = match &now_held {
                Some(v) => Self::decision("leader", None, "acquired", format!("lease {v}"), None),
                None => Self::decision(
                    "leader",
                    None,
                    "lost",
                    "lease taken or store unreachable".into(),
                    None,
                ),
            };
            self.record(d);
            self.wake.notify_one();
        }
        if let Ok(mut l) = self.lease.lock() {
            *l = now_held;
        }
    }

    /// Gives the lease up (clean shutdown), so another replica leads at once.
    pub async fn release_lease(&self) {
        let held = self.lease.lock().ok().and_then(|mut l| l.take());
        if let (Store::Redis(r), Some(v)) = (&self.store, held)
            && let Err(e) = r.release(&v).await
        {
            tracing::warn!(error = %e, "cannot release the leader lease; it expires by itself");
        }
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
        let holder = self.lease_holder.lock().ok().and_then(|h| h.clone());
        let mut core = self.core.lock().await;
        // A follower shows the shared ledger as it is now, not as of its last tick.
        let _ = self.refresh(&mut core).await;
        let core = core;
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
            replica: &self.replica,
            leader: self.is_leader(),
            lease: self.lease().or(holder),
            store: serde_json::json!({
                "backend": self.store.describe(),
                "reachable": self.store_ok(),
                "writes": self.writes.load(Ordering::Relaxed),
                "queued_approvals": core.queued.len(),
            }),
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
            warm_pool: crate::warm_pool::status(&self.cfg.warm_pool, ledger),
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

    /// Stores the current state (on shutdown; the embedded store only: a shared store is
    /// written on every change and must not be overwritten with an older copy).
    pub async fn persist(&self) -> Result<(), StoreError> {
        let core = self.core.lock().await;
        match &self.store {
            Store::Embedded(e) => e.save(&core.snap).await,
            Store::Redis(_) => Ok(()),
        }
    }
}

/// The words of a removal decision, with its numbers.
fn explain_removal(d: &RemovalDecision, reason: Reason, min: u32) -> String {
    match *d {
        RemovalDecision::Accept { repeat: true, .. } => "already approved (no budget spent)".into(),
        RemovalDecision::Accept {
            available,
            pending_removal,
            ..
        } if reason == Reason::Idle => {
            format!(
                "available {available} - pending {pending_removal} - 1 >= min {min}; stats fresh, lifecycle up"
            )
        }
        RemovalDecision::Accept { .. } => {
            format!("{} hosts are removed at once and replaced", reason.as_str())
        }
        RemovalDecision::Keep {
            cause,
            available,
            pending_removal,
        } => match cause {
            KeepCause::StatsMissing => "no fresh Jicofo stats: fail safe".into(),
            KeepCause::LifecycleDown => "lifecycle manager unreachable (all breakers open)".into(),
            KeepCause::StoreDown => "store unreachable".into(),
            KeepCause::Floor => {
                format!(
                    "available {available} - pending {pending_removal} - 1 < min {min}: at the spare floor"
                )
            }
        },
    }
}

/// This replica's name in the lease: the configured one, else host name and process id.
fn replica_name(cfg: &Config) -> String {
    if let Some(name) = &cfg.store.replica {
        return name.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "replica".into());
    format!("{host}-{}", std::process::id())
}
