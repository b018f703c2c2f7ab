//! Persistent state: settings and the ledger survive restarts.
//!
//! `Store` is the seam the service talks to; the embedded backend keeps one JSON document
//! under the data directory, replaced atomically on every change.

mod embedded;

pub use embedded::EmbeddedStore;

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
}

impl Snapshot {
    /// A fresh snapshot with the given settings and an empty ledger.
    pub fn new(settings: Settings) -> Self {
        Snapshot {
            version: SNAPSHOT_VERSION,
            settings,
            settings_changed_by: None,
            ledger: Ledger::new(),
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
}

/// The store backends.
pub enum Store {
    /// One JSON file in the data directory (single replica).
    Embedded(EmbeddedStore),
}

impl Store {
    /// Loads the stored snapshot; `None` when nothing was stored yet.
    pub async fn load(&self) -> Result<Option<Snapshot>, StoreError> {
        match self {
            Store::Embedded(s) => s.load().await,
        }
    }

    /// Stores a snapshot durably before returning.
    pub async fn save(&self, snap: &Snapshot) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.save(snap).await,
        }
    }

    /// A short description for status and logs.
    pub fn describe(&self) -> String {
        match self {
            Store::Embedded(s) => format!("embedded:{}", s.path().display()),
        }
    }
}
