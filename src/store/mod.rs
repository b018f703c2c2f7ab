//! Persistent state: settings and the ledger survive restarts.
//!
//! `Store` is the seam the service talks to. The embedded backend (one replica) keeps one JSON
//! document under the data directory, replaced atomically on every change; the Redis backend
//! (several replicas) keeps the same document in Redis, written by compare-and-swap, plus the
//! leader lease.

mod embedded;
mod redis;

pub use embedded::EmbeddedStore;
pub use redis::RedisStore;

use policy::{Ledger, Settings};
use serde::{Deserialize, Serialize};

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
    /// Target mode's learned profile and API-set schedules (issue 12 hook), shared by replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<crate::capacity::Stored>,
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
}

/// The result of a compare-and-swap write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasOutcome {
    /// Written.
    Swapped,
    /// Another writer was first: read again and retry.
    Conflict,
    /// The write was made as leader, but the lease is no longer ours.
    Fenced,
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

/// The store backends.
pub enum Store {
    /// One JSON file in the data directory (single replica).
    Embedded(EmbeddedStore),
    /// Redis or Valkey, shared by several replicas.
    Redis(Box<RedisStore>),
}

impl Store {
    /// Loads the stored snapshot; `None` when nothing was stored yet.
    pub async fn load(&self) -> Result<Option<Snapshot>, StoreError> {
        match self {
            Store::Embedded(s) => s.load().await,
            Store::Redis(r) => Ok(r.load_versioned().await?.map(|(s, _)| s)),
        }
    }

    /// Stores a snapshot durably before returning.
    pub async fn save(&self, snap: &Snapshot) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.save(snap).await,
            Store::Redis(r) => r.save(snap).await,
        }
    }

    /// A short description for status and logs.
    pub fn describe(&self) -> String {
        match self {
            Store::Embedded(s) => format!("embedded:{}", s.path().display()),
            Store::Redis(r) => r.describe(),
        }
    }

    /// Whether other replicas share this store.
    pub fn shared(&self) -> bool {
        matches!(self, Store::Redis(_))
    }
}
