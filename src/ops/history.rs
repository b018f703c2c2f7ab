//! The per-tick history behind the status page's chart (`GET {prefix}/history`).
//!
//! After every control-loop tick, the service takes one [`Sample`] of the pool (the merged
//! Jicofo reading, the ledger's in-flight and draining counts, the settings) plus the launches
//! and deletes recorded since the previous sample, and pushes it into a ring bounded by count
//! (`metrics.history_samples`). Nothing is stored: a restart starts an empty chart.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use crate::decision::{Decision, Record};

/// Default ring length: 6 hours at the default 15 s tick.
pub const DEFAULT_SAMPLES: usize = 1440;
/// Most samples `metrics.history_samples` may ask for (about 400 KB of samples).
pub const MAX_SAMPLES: usize = 5000;

/// Counters of a load generator (the demo's), shown beside the pool. Real `serve` has none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LoadCounts {
    /// Calls offered since the start.
    pub calls: u64,
    /// Calls of those that found no idle gateway.
    pub rejected: u64,
}

/// Reads a load generator's counters at sample time.
pub type LoadSource = Arc<dyn Fn() -> LoadCounts + Send + Sync>;

/// The pool after one tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// When (ms since the Unix epoch).
    pub at: u64,
    /// Merged Jicofo total (highest over fresh shards); `None` without fresh stats.
    pub total: Option<u32>,
    /// Merged Jicofo available (lowest over fresh shards); `None` without fresh stats.
    pub available: Option<u32>,
    /// Launches not yet counted by Jicofo (requested or booting).
    pub in_flight: u32,
    /// Ledger entries draining or being deleted.
    pub draining: u32,
    /// Approved removals Jicofo still counts.
    pub pending_removal: u32,
    /// The `min` held: the effective min in target mode (`[capacity]`), else the setting.
    pub min: u32,
    /// The `min` setting (the floor the effective min never goes below).
    pub floor: u32,
    /// Setting `max`.
    pub max: u32,
    /// Hosts launched (launch rule and `POST /instance`) since the previous sample.
    pub launched: u32,
    /// Hosts deleted in the lifecycle manager since the previous sample.
    pub removed: u32,
    /// This replica ran the launch loop.
    pub leader: bool,
    /// The store answered.
    pub store_ok: bool,
    /// The load generator's counters (demo only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadCounts>,
}

/// The bounded ring of samples and the event counts of the current interval.
#[derive(Default)]
pub struct History {
    ring: Mutex<VecDeque<Sample>>,
    launched: AtomicU32,
    removed: AtomicU32,
    load: Mutex<Option<LoadSource>>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("samples", &self.len())
            .finish_non_exhaustive()
    }
}

impl History {
    /// Counts the launches and deletes of a recorded decision (the hook of `Ops::record`).
    pub fn decision(&self, r: &Record) {
        if r.refused.is_some() {
            return;
        }
        let (launched, removed) = match &r.decision {
            Decision::Launch { numbers, .. } => (numbers.launch, 0),
            Decision::Add { .. } => (1, 0),
            Decision::Deleted { .. } => (0, 1),
            _ => (0, 0),
        };
        self.launched.fetch_add(launched, Ordering::Relaxed);
        self.removed.fetch_add(removed, Ordering::Relaxed);
    }

    /// Shows a load generator's counters in every sample from now on (the demo's hook). The
    /// samples taken before (the control loop's first tick can come first) get the counters
    /// the generator had then: none placed, since it starts after the scaler.
    pub fn set_load_source(&self, source: LoadSource) {
        *self.load.lock().unwrap_or_else(PoisonError::into_inner) = Some(source);
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        for s in ring.iter_mut().filter(|s| s.load.is_none()) {
            s.load = Some(LoadCounts {
                calls: 0,
                rejected: 0,
            });
        }
    }

    /// Completes `sample` with this interval's events and the load counters, and appends it,
    /// dropping the oldest beyond `capacity`.
    pub fn push(&self, mut sample: Sample, capacity: usize) {
        sample.launched = self.launched.swap(0, Ordering::Relaxed);
        sample.removed = self.removed.swap(0, Ordering::Relaxed);
        let source = self
            .load
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        sample.load = source.map(|f| f());
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        while ring.len() >= capacity.max(1) {
            ring.pop_front();
        }
        ring.push_back(sample);
    }

    /// Samples taken after `since` (ms since the epoch), oldest first.
    pub fn since(&self, since: u64) -> Vec<Sample> {
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let start = ring.partition_point(|s| s.at <= since);
        ring.range(start..).copied().collect()
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no sample is held yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The `GET {prefix}/history` document.
#[derive(Serialize)]
pub struct HistoryDoc {
    /// Most samples kept (`metrics.history_samples`).
    pub capacity: usize,
    /// The control loop's tick, ms (the usual spacing of samples).
    pub tick_ms: u64,
    /// The samples after `since`, oldest first.
    pub samples: Vec<Sample>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Sample {
        Sample {
            at: ms,
            ..Sample::default()
        }
    }

    #[test]
    fn the_ring_is_bounded_by_count() {
        let h = History::default();
        for n in 1..=25 {
            h.push(at(n), 10);
        }
        assert_eq!(h.len(), 10);
        let all = h.since(0);
        assert_eq!(
            all.first().map(|s| s.at),
            Some(16),
            "the oldest are dropped"
        );
        assert_eq!(all.last().map(|s| s.at), Some(25));
        // A smaller capacity (config changed) shrinks it at the next push.
        h.push(at(26), 3);
        assert_eq!(h.len(), 3);
        assert_eq!(
            h.since(24).iter().map(|s| s.at).collect::<Vec<_>>(),
            [25, 26]
        );
    }

    #[test]
    fn the_largest_ring_stays_within_a_few_hundred_kilobytes() {
        let bytes = MAX_SAMPLES * std::mem::size_of::<Sample>();
        assert!(bytes <= 512 * 1024, "{bytes} bytes");
        let h = History::default();
        for n in 0..(MAX_SAMPLES as u64 + 100) {
            h.push(at(n), MAX_SAMPLES);
        }
        assert_eq!(h.len(), MAX_SAMPLES);
    }

    #[test]
    fn launches_and_deletes_are_counted_per_interval() {
        let h = History::default();
        let numbers = |launch| policy::LaunchDecision {
            launch,
            deficit: 3,
            room: 10,
            available: 0,
            total: 0,
            in_flight: 0,
            pending_removal: 0,
            hold: None,
        };
        let host = || "vsg-1".to_string();
        let d = |d| Record::new(1, d);
        h.decision(&d(Decision::Launch {
            numbers: numbers(3),
            hosts: vec![],
        }));
        h.decision(&d(Decision::Hold {
            numbers: numbers(0),
        }));
        h.decision(&d(Decision::Add {
            host: host(),
            in_flight: 0,
        }));
        h.decision(&d(Decision::AddRefused {
            refusal: policy::AddRefusal::StatsMissing,
        }));
        h.decision(&d(Decision::Deleted {
            host: host(),
            detail: String::new(),
        }));
        h.decision(&d(Decision::DeleteRetry {
            host: host(),
            error: String::new(),
        }));
        // A deposed leader's delete did not happen.
        h.decision(
            &d(Decision::Deleted {
                host: host(),
                detail: String::new(),
            })
            .refused("fenced".into()),
        );
        h.push(at(1), 10);
        h.push(at(2), 10);
        let s = h.since(0);
        assert_eq!((s[0].launched, s[0].removed), (4, 1));
        assert_eq!(
            (s[1].launched, s[1].removed),
            (0, 0),
            "counts reset each sample"
        );
    }

    #[test]
    fn load_counters_only_with_a_source() {
        let h = History::default();
        h.push(at(1), 10);
        // Real `serve`: no load generator, no counters in the samples.
        let json = serde_json::to_value(h.since(0)[0]).unwrap_or_default();
        assert!(json.get("load").is_none(), "{json}");
        h.set_load_source(Arc::new(|| LoadCounts {
            calls: 7,
            rejected: 2,
        }));
        h.push(at(2), 10);
        let s = h.since(0);
        // A sample taken before the generator was hooked in: it had placed nothing yet.
        assert_eq!(s[0].load, Some(LoadCounts::default()));
        assert_eq!(
            s[1].load,
            Some(LoadCounts {
                calls: 7,
                rejected: 2
            })
        );
    }
}
