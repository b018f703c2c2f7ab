//! Operator settings (changed through the API) and timing knobs (from the config file).

use serde::{Deserialize, Serialize};

/// The three settings of the legacy API: shared by every replica and persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Minimum number of *available* (idle, healthy) gateways to keep.
    pub min_available: u32,
    /// Maximum number of gateways in total, counting launches in flight.
    pub max_total: u32,
    /// Most launches requested from the lifecycle manager in one go.
    pub bulk_max: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_available: 2,
            // Room for a peak of about 150 calls an hour on 10 min boots (48 in calls, about 35
            // spares of which 24 booting); the legacy service's 80 held it back: 1.6 % rejected.
            max_total: 200,
            bulk_max: 5,
        }
    }
}

/// One of the three API settings, by name: the only way code names a setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Setting {
    /// `min`: available gateways to keep.
    #[serde(rename = "min")]
    Min,
    /// `max`: gateways in total.
    #[serde(rename = "max")]
    Max,
    /// `bulk-max`: launches in one go.
    #[serde(rename = "bulk-max")]
    BulkMax,
}

impl Setting {
    /// Every setting, in API order.
    pub const ALL: [Setting; 3] = [Setting::Min, Setting::Max, Setting::BulkMax];

    /// The API name (`min`, `max`, `bulk-max`), also the route and the config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Setting::Min => "min",
            Setting::Max => "max",
            Setting::BulkMax => "bulk-max",
        }
    }

    /// The key in the config file's `[settings]` section.
    pub fn config_key(self) -> &'static str {
        match self {
            Setting::BulkMax => "bulk_max",
            other => other.as_str(),
        }
    }

    /// Parses an API name; `bulk_max` (the config key) is accepted too.
    pub fn parse(name: &str) -> Option<Setting> {
        match name {
            "min" => Some(Setting::Min),
            "max" => Some(Setting::Max),
            "bulk-max" | "bulk_max" => Some(Setting::BulkMax),
            _ => None,
        }
    }

    /// The allowed range (as the legacy API).
    pub fn range(self) -> (u32, u32) {
        match self {
            Setting::Min => (1, 100),
            Setting::Max => (1, 1000),
            Setting::BulkMax => (1, 100),
        }
    }

    /// Checks a value for this setting.
    pub fn check(self, value: i64) -> Result<u32, SettingsError> {
        let (low, high) = self.range();
        if value < i64::from(low) || value > i64::from(high) {
            return Err(SettingsError {
                setting: self,
                low,
                high,
            });
        }
        Ok(value as u32)
    }
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A setting value outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    /// The setting.
    pub setting: Setting,
    /// Lowest allowed value.
    pub low: u32,
    /// Highest allowed value.
    pub high: u32,
}

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} must be an integer in {}..={}",
            self.setting, self.low, self.high
        )
    }
}

// Written by hand so the pure crate needs no dependency beyond serde.
impl std::error::Error for SettingsError {}

impl Settings {
    /// The value of one setting.
    pub fn get(&self, setting: Setting) -> u32 {
        match setting {
            Setting::Min => self.min_available,
            Setting::Max => self.max_total,
            Setting::BulkMax => self.bulk_max,
        }
    }

    /// Sets one setting (unchecked: check with [`Setting::check`] first); returns the old value.
    pub fn set(&mut self, setting: Setting, value: u32) -> u32 {
        let slot = match setting {
            Setting::Min => &mut self.min_available,
            Setting::Max => &mut self.max_total,
            Setting::BulkMax => &mut self.bulk_max,
        };
        std::mem::replace(slot, value)
    }

    /// Checks `min` against the `max` it comes with: the cap of `min` follows `max` when `max`
    /// is above the legacy cap of 100 (a large pool needs more than 100 spares); below it the
    /// legacy range stands (`max` bounds every launch anyway).
    pub fn check_min(value: i64, max_total: u32) -> Result<u32, SettingsError> {
        let (low, legacy_high) = Setting::Min.range();
        let high = max_total.max(legacy_high);
        if value < i64::from(low) || value > i64::from(high) {
            return Err(SettingsError {
                setting: Setting::Min,
                low,
                high,
            });
        }
        Ok(value as u32)
    }

    /// Every problem with these settings (empty when valid); `min`'s cap follows `max`.
    pub fn problems(&self) -> Vec<SettingsError> {
        let mut v: Vec<SettingsError> = [Setting::Max, Setting::BulkMax]
            .into_iter()
            .filter_map(|s| s.check(i64::from(self.get(s))).err())
            .collect();
        if let Err(e) = Self::check_min(i64::from(self.min_available), self.max_total) {
            v.insert(0, e);
        }
        v
    }
}

/// Timing knobs of the policy, all in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// A launch not seen in Jicofo after this long is `launch_failed` and deleted.
    pub boot_timeout_ms: u64,
    /// A Jicofo reading older than this is treated as missing.
    pub stats_max_age_ms: u64,
    /// An approved host stops counting as pending removal after this long.
    pub pending_ttl_ms: u64,
    /// A draining host is deleted after this long even without a `drained` confirmation.
    pub drain_timeout_ms: u64,
    /// Wait for the agent's `drained` confirmation before deleting (false: delete at once).
    pub drain_confirm: bool,
    /// Finished entries (gone, launch_failed and deleted) are forgotten after this long.
    pub retention_ms: u64,
    /// After a host is known to have stopped (drained, or deleted), assume Jicofo no longer
    /// counts it after this long. Short is the capacity-safe side: too short only launches one
    /// spare early (bounded by `max`), too long holds launches back (benchmark: 20 s rejects
    /// 0.2 % where 90 s rejects 0.9 %, diurnal, min 11).
    #[serde(default = "default_stop_grace")]
    pub stop_grace_ms: u64,
    /// A sidecar report older than this (our receive time) is stale: the host no longer counts
    /// as a spare; after a shutdown was ordered, silence this long means the host is gone.
    #[serde(default = "default_sidecar_ttl")]
    pub sidecar_ttl_ms: u64,
    /// How often a sidecar reports (its `SHUTDOWN_POLLING_INTERVAL`, 60 s by default). A host is
    /// picked or told to shut down only on a report younger than this plus half of it: an older
    /// one may no longer say what the host does.
    #[serde(default = "default_sidecar_interval")]
    pub sidecar_interval_ms: u64,
}

fn default_sidecar_interval() -> u64 {
    60_000
}

impl Timing {
    /// Age past which a sidecar's last report is too old to act on: one report interval plus
    /// half of one (the sidecar waits its interval after the previous request ended), never
    /// longer than the TTL.
    pub fn sidecar_report_max_age_ms(&self) -> u64 {
        self.sidecar_interval_ms
            .saturating_add(self.sidecar_interval_ms / 2)
            .min(self.sidecar_ttl_ms)
    }
}

fn default_stop_grace() -> u64 {
    20000
}

fn default_sidecar_ttl() -> u64 {
    300_000
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            boot_timeout_ms: 15 * 60_000,
            stats_max_age_ms: 45_000,
            pending_ttl_ms: 10 * 60_000,
            drain_timeout_ms: 30 * 60_000,
            drain_confirm: false,
            retention_ms: 60 * 60_000,
            stop_grace_ms: default_stop_grace(),
            sidecar_ttl_ms: default_sidecar_ttl(),
            sidecar_interval_ms: default_sidecar_interval(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_of_min_follows_max_above_the_legacy_100() {
        assert_eq!(Settings::check_min(100, 80), Ok(100));
        assert!(Settings::check_min(101, 80).is_err());
        assert_eq!(Settings::check_min(145, 300), Ok(145));
        assert!(Settings::check_min(301, 300).is_err());
        assert!(Settings::check_min(0, 300).is_err());
        let s = Settings {
            min_available: 145,
            max_total: 300,
            bulk_max: 5,
        };
        assert!(s.problems().is_empty());
        let s = Settings {
            min_available: 145,
            max_total: 80,
            ..s
        };
        assert_eq!(s.problems().first().map(|e| e.high), Some(100));
    }
}
