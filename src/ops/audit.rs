//! The audit trail: every recorded decision as one JSON line in `<data_dir>/audit.jsonl`,
//! rotated by size (`audit.jsonl.1` is the newest rotated file), `keep` rotated files kept.
//!
//! Lines go through a bounded queue to one writer thread, so a slow disk never blocks the
//! async threads: a full queue drops the line (counted in the metrics, logged) but never the
//! in-memory ring of `/scaler/status`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::metrics::Metrics;
use crate::decision::Record as Decision;

/// File name of the current audit file inside the data directory.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// Decisions waiting for the writer; beyond this they are dropped (and counted).
const QUEUE: usize = 4096;
/// After writing a batch the writer waits this long for more, so that under load senders do
/// not wake it once per line (a lone line still goes out at once).
const BATCH_WINDOW: Duration = Duration::from_millis(5);

/// `[audit]` configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Write the audit file (the in-memory ring is kept either way).
    pub enabled: bool,
    /// Rotate when the current file would pass this size, in bytes.
    pub max_bytes: u64,
    /// Rotated files kept (`audit.jsonl.1` .. `audit.jsonl.<keep>`); 0 keeps none.
    pub keep: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            max_bytes: 10 * 1024 * 1024,
            keep: 5,
        }
    }
}

impl AuditConfig {
    /// Problems, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.max_bytes < 4096 {
            p.push("audit.max_bytes: must be at least 4096".into());
        }
        if self.keep > 1000 {
            p.push("audit.keep: must be at most 1000".into());
        }
        p
    }
}

/// The audit file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// File system error.
    #[error("audit file {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the audit writer: {0}")]
    Thread(std::io::Error),
}

/// One line of the audit file.
#[derive(Serialize)]
struct Line<'a> {
    /// RFC 3339 time (UTC), for people and log tools.
    ts: String,
    #[serde(flatten)]
    decision: &'a Decision,
}

enum Msg {
    Line(Box<Decision>),
    Close,
}

/// The sending side of the audit trail; does nothing until [`Audit::start`] ran.
#[derive(Default)]
pub struct Audit {
    tx: OnceLock<SyncSender<Msg>>,
    done: Mutex<Option<Receiver<()>>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("started", &self.tx.get().is_some())
            .finish()
    }
}

impl Audit {
    /// Opens `<dir>/audit.jsonl` (failing now if it cannot be written) and starts the writer.
    pub fn start(&self, dir: &Path, cfg: &AuditConfig, metrics: Metrics) -> Result<(), AuditError> {
        let path = dir.join(AUDIT_FILE);
        let file = open_append(&path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let (done_tx, done_rx) = mpsc::channel();
        let mut writer = Writer {
            path,
            max_bytes: cfg.max_bytes,
            keep: cfg.keep,
            out: BufWriter::new(file),
            size,
            metrics,
        };
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                writer.run(&rx);
                let _ = done_tx.send(());
            })
            .map_err(AuditError::Thread)?;
        let _ = self.tx.set(tx);
        *self.done.lock().unwrap_or_else(PoisonError::into_inner) = Some(done_rx);
        Ok(())
    }

    /// Queues a decision without blocking; `false` when the queue is full (the line is lost).
    pub fn send(&self, d: &Decision) -> bool {
        let Some(tx) = self.tx.get() else {
            return true;
        };
        match tx.try_send(Msg::Line(Box::new(d.clone()))) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => false,
            // The writer stopped (closed): nothing more to write.
            Err(TrySendError::Disconnected(_)) => true,
        }
    }

    /// Writes what is queued, flushes, fsyncs and stops the writer (at most `wait`).
    pub fn close(&self, wait: Duration) {
        let Some(tx) = self.tx.get() else {
            return;
        };
        // Blocks only while the queue is full, i.e. while the writer is draining it.
        let _ = tx.send(Msg::Close);
        let done = self
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(done) = done
            && let Err(RecvTimeoutError::Timeout) = done.recv_timeout(wait)
        {
            tracing::warn!("audit writer still busy at shutdown");
        }
    }
}

fn open_append(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| AuditError::Io {
            path: path.display().to_string(),
            source,
        })
}

/// Rotated file number `n` of `path` (`audit.jsonl.n`).
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

struct Writer {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    out: BufWriter<File>,
    size: u64,
    metrics: Metrics,
}

impl Writer {
    fn run(&mut self, rx: &Receiver<Msg>) {
        let mut broken = false;
        while let Ok(msg) = rx.recv() {
            let mut batch = vec![msg];
            // Everything already queued goes out in one flush.
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            let mut close = false;
            for msg in batch {
                match msg {
                    Msg::Line(d) => match self.write(&d) {
                        Ok(()) => {
                            broken = false;
                            self.metrics.audit_written();
                        }
                        Err(e) => {
                            self.metrics.audit_error();
                            // One error line per outage, not one per decision.
                            if !broken {
                                tracing::error!(path = %self.path.display(), error = %e, "cannot write the audit file");
                            }
                            broken = true;
                        }
                    },
                    Msg::Close => close = true,
                }
            }
            if let Err(e) = self.out.flush() {
                self.metrics.audit_error();
                tracing::error!(path = %self.path.display(), error = %e, "cannot flush the audit file");
            }
            if close {
                let _ = self.out.get_ref().sync_data();
                return;
            }
            std::thread::sleep(BATCH_WINDOW);
        }
    }

    fn write(&mut self, d: &Decision) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(&Line {
            ts: rfc3339(d.at),
            decision: d,
        })
        .map_err(std::io::Error::other)?;
        line.push(b'\n');
        let len = line.len() as u64;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        self.out.write_all(&line)?;
        self.size += len;
        Ok(())
    }

    /// `audit.jsonl` -> `.1` -> `.2` ...; the oldest beyond `keep` is removed.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let _ = self.out.get_ref().sync_data();
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(rotated(&self.path, self.keep));
            for n in (1..self.keep).rev() {
                let from = rotated(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, rotated(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        let file = open_append(&self.path).map_err(|e| match e {
            AuditError::Io { source, .. } => source,
            AuditError::Thread(e) => e,
        })?;
        self.out = BufWriter::new(file);
        self.size = 0;
        Ok(())
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
fn rfc3339(at_ms: u64) -> String {
    // humantime formats years up to 9999.
    const MAX_MS: u64 = 253_402_300_799_000;
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(at_ms.min(MAX_MS)))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(i: usize) -> Decision {
        Decision::new(
            1_700_000_000_000,
            crate::decision::Decision::Remove {
                host: format!("gw-{i}"),
                reason: policy::Reason::Idle,
                answer: policy::RemovalDecision::Keep {
                    cause: policy::KeepCause::Floor,
                    available: 2,
                    pending_removal: 0,
                },
                min: 2,
                store_error: None,
            },
        )
        .by("gw@10.0.0.1")
    }

    #[test]
    fn writes_one_json_line_per_decision_and_rotates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let audit = Audit::default();
        let cfg = AuditConfig {
            enabled: true,
            max_bytes: 4096,
            keep: 2,
        };
        audit
            .start(dir.path(), &cfg, Metrics::new())
            .expect("start");
        for i in 0..100 {
            assert!(audit.send(&decision(i)));
        }
        audit.close(Duration::from_secs(5));
        let mut lines = 0;
        for name in ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"] {
            let text = std::fs::read_to_string(dir.path().join(name)).expect(name);
            assert!(text.len() as u64 <= cfg.max_bytes, "{name} too big");
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
                assert_eq!(v["kind"], "remove");
                assert!(v["ts"].as_str().is_some_and(|t| t.ends_with('Z')));
                lines += 1;
            }
        }
        assert!(!dir.path().join("audit.jsonl.3").exists());
        // The newest lines survive; the oldest went with the removed file.
        assert!(lines < 100 && lines > 20, "{lines}");
        let newest = std::fs::read_to_string(dir.path().join("audit.jsonl")).expect("read");
        assert!(newest.contains("gw-99"));
    }
}
