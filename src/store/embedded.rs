//! The embedded store: `state.json` in the data directory, written crash-safely
//! (temp file, fsync, rename, fsync of the directory) and guarded by a lock file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Snapshot, StoreError};

/// File name of the snapshot inside the data directory.
pub const STATE_FILE: &str = "state.json";

/// One JSON document, replaced atomically.
pub(super) struct EmbeddedStore {
    dir: PathBuf,
    path: PathBuf,
    // Held for the life of the store so a second process cannot share the directory.
    _lock: File,
    // Serialises writers so an older snapshot never overwrites a newer one.
    write: Arc<tokio::sync::Mutex<()>>,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.display().to_string();
    move |source| StoreError::Io { what, path, source }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the data directory and locks it.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(io("cannot create data directory", dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("cannot open lock file", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked(dir.display().to_string()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("cannot lock", &lock_path)(e)),
        }
        Ok(EmbeddedStore {
            dir: dir.to_path_buf(),
            path: dir.join(STATE_FILE),
            _lock: lock,
            write: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// The snapshot file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the snapshot; `None` if there is none yet, an error if it cannot be understood.
    pub async fn load(&self) -> Result<Option<Snapshot>, StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || read_snapshot(&path))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Writes the snapshot durably.
    pub async fn save(&self, snap: &Snapshot) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(snap).map_err(|e| StoreError::Task(e.to_string()))?;
        let _guard = self.write.lock().await;
        let (dir, path) = (self.dir.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || write_atomically(&dir, &path, &bytes))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// Reads and checks a snapshot file.
pub fn read_snapshot(path: &Path) -> Result<Option<Snapshot>, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("cannot read", path)(e)),
    };
    super::parse_snapshot(&bytes, &path.display().to_string()).map(Some)
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let mut f = File::create(&tmp).map_err(io("cannot create", &tmp))?;
    f.write_all(bytes).map_err(io("cannot write", &tmp))?;
    f.sync_all().map_err(io("cannot sync", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io("cannot replace", path))?;
    // The rename is durable only once the directory entry is.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("cannot sync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::{Origin, Settings};

    #[tokio::test]
    async fn round_trips_refuses_corruption_and_a_second_owner() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        assert!(store.load().await.expect("load").is_none());
        let mut snap = Snapshot::new(Settings::default());
        snap.settings.min_available = 7;
        snap.ledger.record_launch("vsg-1", Origin::Scaler, 5);
        store.save(&snap).await.expect("save");
        assert_eq!(store.load().await.expect("load"), Some(snap));
        assert!(matches!(
            EmbeddedStore::open(dir.path()),
            Err(StoreError::Locked(_))
        ));
        drop(store);
        std::fs::write(dir.path().join(STATE_FILE), b"{\"version\":1,").expect("write");
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        let err = store.load().await.expect_err("corrupt");
        assert!(err.to_string().contains("corrupt"), "{err}");
    }
}
