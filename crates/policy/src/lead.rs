//! Measured lead times of the launch paths ("launched -> seen in Jicofo"): the ledger records
//! them as launches are seen, the warm pool and capacity sizing read them. Their own module so
//! that the ledger does not import from the pool, which builds on the ledger.

use serde::{Deserialize, Serialize};

/// Measured lead times of one launch path: exponentially weighted mean and mean deviation
/// (weight 1/8 for a new sample), and the last sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadStat {
    /// Samples taken.
    pub samples: u64,
    /// Weighted mean, ms.
    pub mean_ms: u64,
    /// Weighted mean absolute deviation, ms.
    pub dev_ms: u64,
    /// The last sample, ms.
    pub last_ms: u64,
}

impl LeadStat {
    /// Adds one measured lead.
    pub fn add(&mut self, ms: u64) {
        if self.samples == 0 {
            self.mean_ms = ms;
            self.dev_ms = 0;
        } else {
            let dev = ms.abs_diff(self.mean_ms);
            self.mean_ms = (self.mean_ms.saturating_mul(7)).saturating_add(ms) / 8;
            self.dev_ms = (self.dev_ms.saturating_mul(7)).saturating_add(dev) / 8;
        }
        self.samples += 1;
        self.last_ms = ms;
    }

    /// The mean, or `prior` before the first sample (used to order arrivals).
    pub fn expected_or(&self, prior: u64) -> u64 {
        if self.samples == 0 {
            prior
        } else {
            self.mean_ms
        }
    }

    /// A high estimate (mean + 2 deviations) for sizing, `None` before the first sample.
    pub fn high_ms(&self) -> Option<u64> {
        (self.samples > 0).then(|| self.mean_ms.saturating_add(2 * self.dev_ms))
    }
}

/// Lead times ("launched -> seen in Jicofo") per path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadTimes {
    /// Created (provisioned) -> seen.
    pub create: LeadStat,
    /// Started from the pool (powered on) -> seen.
    pub start: LeadStat,
}
