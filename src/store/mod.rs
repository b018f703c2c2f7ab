//! Persistent state and leadership: settings and the ledger survive restarts, and one replica
//! leads.
//!
//! [`Store`] is the one interface the rest of the program uses, for both backends: read the
//! current snapshot ([`Store::read`]), apply a change with compare-and-swap retries, fenced for
//! the leader ([`Store::apply`]), and acquire / renew / release the leader lease. Nothing
//! outside this module names a backend. The embedded backend (one replica) keeps one JSON
//! document under the data directory, replaced atomically on every change, and always leads;
//! the Redis backend (several replicas) keeps the same document in Redis, written by
//! compare-and-swap, plus the leader lease and the recovery marker.

mod embedded;

pub use embedded::STATE_FILE;
mod redis;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use embedded::EmbeddedStore;
use policy::{Ledger, Settings, StoreHealth};
use redis::{Loaded, RedisStore};
use serde::{Deserialize, Serialize};

use crate::config::{Config, StoreBackend};

/// Format version of the stored snapshot.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Everything that must survive a restart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Format version.
    pub version: u32,
    /// The API settings.
    pub settings: Settings,
    /// Who changed the settings last, for the status page.
    #[serde(default)]
    pub settings_changed_by: Option<String>,
    /// The ledger (in-flight launches and pending removals included).
    pub ledger: Ledger,
    /// Target mode's learned profile and API-set schedules, shared by replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<crate::capacity::Stored>,
    /// Bumped by every write: after a shared store loses its data, the replica holding the
    /// highest generation holds the newest state, and that one is restored.
    #[serde(default)]
    pub generation: u64,
}

impl Snapshot {
    /// A fresh snapshot with the given settings and an empty ledger.
    pub fn new(settings: Settings) -> Self {
        Snapshot {
            version: SNAPSHOT_VERSION,
            settings,
            settings_changed_by: None,
            ledger: Ledger::new(),
            capacity: None,
            generation: 0,
        }
    }
}

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// File system error.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The stored data cannot be read: never silently replaced by defaults.
    #[error(
        "store {path} is corrupt ({message}); move it away to start empty, or restore a backup"
    )]
    Corrupt {
        /// The path.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another jitsi-scaler process")]
    Locked(String),
    /// The blocking writer task failed.
    #[error("store task failed: {0}")]
    Task(String),
    /// The shared store cannot be reached (or timed out).
    #[error("store unreachable: {0}")]
    Unreachable(String),
    /// The store settings are unusable.
    #[error("{0}")]
    Config(String),
    /// Writes kept conflicting with other replicas.
    #[error("store busy: too many concurrent writers")]
    Contention,
    /// A leader-only write was refused: another replica holds the lease now.
    #[error("not the leader any more")]
    Fenced,
    /// Fewer replicas than `store.min_replicas_acked` confirmed a write within
    /// `store.ack_timeout`: it may not survive a failover, so it is not answered as done.
    #[error(
        "only {acked} of {wanted} replicas confirmed the write within store.ack_timeout (store.min_replicas_acked)"
    )]
    NotReplicated {
        /// Confirmations wanted.
        wanted: u32,
        /// Confirmations received.
        acked: u32,
    },
}

/// The result of a compare-and-swap write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CasOutcome {
    /// Written.
    Swapped,
    /// Another writer was first: read again and retry.
    Conflict,
    /// The write was made as leader, but the lease is no longer ours.
    Fenced,
    /// Written on the primary, but fewer replicas than wanted confirmed it in time.
    Unconfirmed {
        /// The confirmations received.
        acked: u32,
    },
}

/// Parses and checks a stored snapshot; `origin` names it in errors.
pub fn parse_snapshot(bytes: &[u8], origin: &str) -> Result<Snapshot, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt {
        path: origin.to_string(),
        message,
    };
    let snap: Snapshot = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if snap.version != SNAPSHOT_VERSION {
        return Err(corrupt(format!("unknown version {}", snap.version)));
    }
    if let Some(p) = snap.settings.problems().first() {
        return Err(corrupt(format!("stored settings invalid: {p}")));
    }
    Ok(snap)
}

/// The backends, private to this module.
enum Backend {
    /// One JSON file in the data directory (single replica).
    Embedded(EmbeddedStore),
    /// Redis or Valkey, shared by several replicas.
    Redis(Box<RedisStore>),
}

impl Backend {
    fn open(cfg: &Config, backend: StoreBackend) -> Result<Backend, StoreError> {
        Ok(match backend {
            StoreBackend::Embedded => Backend::Embedded(EmbeddedStore::open(&cfg.data_dir)?),
            StoreBackend::Redis => Backend::Redis(Box::new(RedisStore::open(&cfg.store)?)),
        })
    }

    async fn load(&self) -> Result<Option<Snapshot>, StoreError> {
        match self {
            Backend::Embedded(s) => s.load().await,
            Backend::Redis(r) => Ok(r.load().await?.state.map(|(s, _)| s)),
        }
    }

    async fn save(&self, snap: &Snapshot) -> Result<(), StoreError> {
        match self {
            Backend::Embedded(s) => s.save(snap).await,
            Backend::Redis(r) => r.save(snap).await,
        }
    }

    fn describe(&self) -> String {
        match self {
            Backend::Embedded(s) => format!("embedded:{}", s.path().display()),
            Backend::Redis(r) => r.describe(),
        }
    }
}

/// The snapshot this replica last read or wrote, with its version in a shared store.
struct Cache {
    snap: Snapshot,
    version: u64,
}

/// How many compare-and-swap conflicts a write tolerates before giving up.
const MAX_CAS_ATTEMPTS: usize = 64;

/// A change of leadership seen by [`Store::renew_lease`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseChange {
    /// This replica took the lease (the value fences its writes).
    Acquired(String),
    /// This replica no longer holds it (taken, or the store is unreachable).
    Lost,
}

/// Settings, ledger and leadership, shared by every replica of a shared store.
pub struct Store {
    backend: Backend,
    cache: tokio::sync::Mutex<Cache>,
    replica: String,
    lease_ttl: Duration,
    recovery_window: Duration,
    /// The lease value while this replica leads (`None`: follower).
    lease: Mutex<Option<String>>,
    /// Who holds the lease, as last seen.
    holder: Mutex<Option<String>>,
    reachable: AtomicBool,
    last_error: Mutex<Option<String>>,
    writes: AtomicU64,
    write_failures: AtomicU64,
    recovering: AtomicBool,
}

impl Store {
    /// Opens the configured backend (nothing is read yet; see [`Store::start`]). `replica` names
    /// this process in the lease.
    pub fn open(cfg: &Config, replica: &str) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::open(cfg, cfg.store.backend)?,
            cache: tokio::sync::Mutex::new(Cache {
                snap: Snapshot::new(cfg.settings.to_settings()),
                version: 0,
            }),
            replica: replica.to_string(),
            lease_ttl: cfg.store.lease_ttl,
            recovery_window: cfg.store.recovery_window,
            lease: Mutex::new(None),
            holder: Mutex::new(None),
            reachable: AtomicBool::new(true),
            last_error: Mutex::new(None),
            writes: AtomicU64::new(0),
            write_failures: AtomicU64::new(0),
            recovering: AtomicBool::new(false),
        })
    }

    /// Loads the stored state, or stores `initial` when nothing is stored yet. A store that
    /// cannot be read stops the start; a shared store that is down is tolerated (the service
    /// fails safe until it is back).
    pub async fn start(&self, initial: Snapshot) -> Result<(), StoreError> {
        let mut cache = self.cache.lock().await;
        let loaded = match &self.backend {
            Backend::Embedded(e) => e.load().await.map(|s| s.map(|s| (s, 0))),
            Backend::Redis(r) => r.load().await.map(|l| l.state),
        };
        match loaded {
            Ok(Some((snap, version))) => {
                tracing::info!(
                    store = %self.describe(),
                    min = snap.settings.min_available,
                    max = snap.settings.max_total,
                    bulk_max = snap.settings.bulk_max,
                    entries = snap.ledger.instances().count(),
                    "loaded stored state"
                );
                *cache = Cache { snap, version };
            }
            Ok(None) => {
                *cache = Cache {
                    snap: initial,
                    version: 0,
                };
                match &self.backend {
                    Backend::Embedded(e) => e.save(&cache.snap).await?,
                    // Another replica may be first: only written if still empty. An unconfirmed
                    // first state is kept: it holds only the configured settings.
                    Backend::Redis(r) => match r.compare_and_swap(0, &cache.snap, None).await {
                        Ok(_) | Err(StoreError::NotReplicated { .. }) => {}
                        Err(e) => return Err(e),
                    },
                }
                tracing::info!(store = %self.describe(), "no stored state: starting from the configured settings");
            }
            Err(StoreError::Unreachable(e)) if self.shared() => {
                tracing::error!(store = %self.describe(), error = %e, "shared store unreachable at start: failing safe until it is back");
                *cache = Cache {
                    snap: initial,
                    version: 0,
                };
                self.note(&Err::<(), _>(StoreError::Unreachable(e)));
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Notes the outcome of a store operation (readiness, status, metrics).
    fn note<T>(&self, r: &Result<T, StoreError>) {
        let ok = match r {
            Ok(_) => true,
            // A refused or contended write says nothing about reachability.
            Err(StoreError::Fenced | StoreError::Contention) => true,
            Err(e) => {
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(e.to_string());
                }
                false
            }
        };
        let was = self.reachable.swap(ok, Ordering::Relaxed);
        if was && !ok {
            tracing::error!(store = %self.describe(), error = %self.last_error().unwrap_or_default(), "store unreachable or not writable: no launches, idle removals keep");
        } else if !was && ok {
            tracing::info!(store = %self.describe(), "store reachable again");
        }
    }

    /// Brings the cached snapshot up to date with a shared store (no-op for the embedded one),
    /// and restores the newest state after the store lost its data.
    async fn refresh(&self, cache: &mut Cache) -> Result<(), StoreError> {
        let Backend::Redis(r) = &self.backend else {
            return Ok(());
        };
        let loaded = r.load().await;
        self.note(&loaded);
        let Loaded { state, recovering } = loaded?;
        self.recovering.store(recovering, Ordering::Relaxed);
        match state {
            Some((snap, version)) if snap.generation >= cache.snap.generation => {
                *cache = Cache { snap, version };
                return Ok(());
            }
            None if cache.version == 0 => {
                // Nothing stored and nothing seen stored yet: a first start.
                return Ok(());
            }
            _ => {}
        }
        // The store holds less than this replica has seen: it lost its data (a Redis restarted
        // without persistence). Offer this copy; the newest any replica offers wins, and idle
        // approvals wait for the recovery window.
        let offered = r.restore(&cache.snap, self.recovery_window).await;
        self.note(&offered);
        if offered? {
            tracing::warn!(store = %self.describe(), generation = cache.snap.generation, "shared store lost its data: restored it from this replica's newer state");
        }
        self.recovering.store(true, Ordering::Relaxed);
        let Loaded { state, .. } = r.load().await?;
        if let Some((snap, version)) = state {
            *cache = Cache { snap, version };
        }
        Ok(())
    }

    /// Reads the current snapshot (fresh from a shared store; the last known one if it is
    /// down) and returns what `f` makes of it.
    pub async fn read<T>(&self, f: impl FnOnce(&Snapshot) -> T) -> T {
        let mut cache = self.cache.lock().await;
        let _ = self.refresh(&mut cache).await;
        f(&cache.snap)
    }

    /// Refreshes the cached snapshot (each tick on every replica), so a follower's view is at
    /// most one tick old when the store becomes unreachable, and a data loss is seen.
    pub async fn sync(&self) {
        let mut cache = self.cache.lock().await;
        let _ = self.refresh(&mut cache).await;
    }

    /// Applies `change` to the latest stored snapshot and stores the result before returning.
    /// `change` may run several times (a shared store retries on conflict), so it must only
    /// compute from its arguments: the snapshot, and the store's health as just read (a store
    /// that is restoring its state after a data loss says so). With `fence` (the leader's
    /// lease), the write is refused with [`StoreError::Fenced`] once another replica has taken
    /// the lease.
    pub async fn apply<T>(
        &self,
        fence: Option<&str>,
        mut change: impl FnMut(&mut Snapshot, StoreHealth) -> T,
    ) -> Result<T, StoreError> {
        let mut cache = self.cache.lock().await;
        for _ in 0..MAX_CAS_ATTEMPTS {
            self.refresh(&mut cache).await?;
            let mut next = cache.snap.clone();
            let out = change(&mut next, self.health());
            if next == cache.snap {
                // Nothing to write; a leader still proves it leads, so nothing is reported
                // as done by a deposed one.
                if let (Some(f), Backend::Redis(r)) = (fence, &self.backend) {
                    let holder = r.lease_holder().await;
                    self.note(&holder);
                    if holder?.as_deref() != Some(f) {
                        return Err(StoreError::Fenced);
                    }
                }
                return Ok(out);
            }
            next.generation = cache.snap.generation + 1;
            let written = match &self.backend {
                Backend::Embedded(e) => e.save(&next).await.map(|()| CasOutcome::Swapped),
                Backend::Redis(r) => r.compare_and_swap(cache.version, &next, fence).await,
            };
            self.note(&written);
            if written.is_err() {
                self.write_failures.fetch_add(1, Ordering::Relaxed);
            }
            match written? {
                CasOutcome::Swapped => {
                    cache.snap = next;
                    cache.version += 1;
                    self.writes.fetch_add(1, Ordering::Relaxed);
                    return Ok(out);
                }
                CasOutcome::Conflict => continue,
                CasOutcome::Fenced => return Err(StoreError::Fenced),
                CasOutcome::Unconfirmed { acked } => {
                    // Not answered as done, so withdrawn where no one has built on it yet:
                    // an approval answered `keep` must not stay on the books. If the undo
                    // is lost too, a failover drops both; pending approvals also expire.
                    let mut undo = cache.snap.clone();
                    undo.generation = next.generation + 1;
                    let e = match &self.backend {
                        Backend::Redis(r) => {
                            let undone = r.withdraw(cache.version + 1, &undo, fence).await;
                            tracing::warn!(
                                acked,
                                wanted = r.acks_wanted(),
                                withdrawn = matches!(undone, Ok(CasOutcome::Swapped)),
                                "a write was not confirmed by enough replicas in time: withdrawn, the store-down rule answers"
                            );
                            r.not_replicated(acked)
                        }
                        Backend::Embedded(_) => StoreError::Task("unconfirmed local write".into()),
                    };
                    self.write_failures.fetch_add(1, Ordering::Relaxed);
                    let r = Err::<(), _>(e);
                    self.note(&r);
                    return Err(r.err().unwrap_or(StoreError::Contention));
                }
            }
        }
        Err(StoreError::Contention)
    }

    /// Takes or renews the leader lease (always held with the embedded store); returns the
    /// change, if leadership changed.
    pub async fn renew_lease(&self) -> Option<LeaseChange> {
        let held = self.lease();
        let result = match &self.backend {
            Backend::Embedded(_) => Ok(Some(format!("{}:embedded", self.replica))),
            Backend::Redis(r) => {
                let got = r
                    .lease(&self.replica, held.as_deref(), self.lease_ttl)
                    .await;
                if let Ok(holder) = r.lease_holder().await
                    && let Ok(mut h) = self.holder.lock()
                {
                    *h = holder;
                }
                got
            }
        };
        self.note(&result);
        let now_held = result.unwrap_or(None);
        if let Ok(mut l) = self.lease.lock() {
            l.clone_from(&now_held);
        }
        if held == now_held {
            return None;
        }
        Some(match now_held {
            Some(v) => LeaseChange::Acquired(v),
            None => LeaseChange::Lost,
        })
    }

    /// Gives the lease up (clean shutdown), so another replica leads at once.
    pub async fn release_lease(&self) {
        let held = self.lease.lock().ok().and_then(|mut l| l.take());
        if let (Backend::Redis(r), Some(v)) = (&self.backend, held)
            && let Err(e) = r.release(&v).await
        {
            tracing::warn!(error = %e, "cannot release the leader lease; it expires by itself");
        }
    }

    /// The lease value while this replica leads.
    pub fn lease(&self) -> Option<String> {
        self.lease.lock().ok().and_then(|l| l.clone())
    }

    /// Who leads, as last seen (this replica's lease when it leads).
    pub fn leader(&self) -> Option<String> {
        self.lease()
            .or_else(|| self.holder.lock().ok().and_then(|h| h.clone()))
    }

    /// Stores the current state on shutdown (the embedded store only: a shared store is
    /// written on every change and must not be overwritten with an older copy).
    pub async fn persist(&self) -> Result<(), StoreError> {
        let cache = self.cache.lock().await;
        match &self.backend {
            Backend::Embedded(e) => e.save(&cache.snap).await,
            Backend::Redis(_) => Ok(()),
        }
    }

    /// Whether an approval can be stored safely now (for the store-down rule).
    pub fn health(&self) -> StoreHealth {
        if !self.reachable() {
            StoreHealth::Down
        } else if self.recovering.load(Ordering::Relaxed) {
            StoreHealth::Recovering
        } else {
            StoreHealth::Ok
        }
    }

    /// Whether the last operation reached the store (reads and writes alike).
    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    /// The last error, for `/ready` and the status page.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Writes stored by this replica.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Writes that failed (unreachable, read-only or full disk, ...).
    pub fn write_failures(&self) -> u64 {
        self.write_failures.load(Ordering::Relaxed)
    }

    /// A short description for status and logs.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// This replica's name in the lease.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Whether other replicas share this store.
    pub fn shared(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }
}

/// What `store migrate` copied.
pub struct Migrated {
    /// The snapshot copied.
    pub snapshot: Snapshot,
    /// The source, described.
    pub from: String,
    /// The target, described.
    pub to: String,
}

/// Copies settings and ledger from one backend to the other (`store migrate`); refuses to
/// overwrite a target that holds state unless `force`.
pub async fn migrate(
    cfg: &Config,
    from: StoreBackend,
    to: StoreBackend,
    force: bool,
) -> Result<Migrated, StoreError> {
    let source = Backend::open(cfg, from)?;
    let target = Backend::open(cfg, to)?;
    let (from, to) = (source.describe(), target.describe());
    if from == to {
        return Err(StoreError::Config(
            "source and target are the same store".into(),
        ));
    }
    let snapshot = source
        .load()
        .await?
        .ok_or_else(|| StoreError::Config(format!("{from} holds no state to copy")))?;
    if !force && target.load().await?.is_some() {
        return Err(StoreError::Config(format!(
            "{to} already holds state; pass --force to overwrite it"
        )));
    }
    target.save(&snapshot).await?;
    Ok(Migrated { snapshot, from, to })
}
