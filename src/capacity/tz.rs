//! Local time for schedules and the profile, from the system's time zone database
//! (`/usr/share/zoneinfo`, or `TZDIR`) through the `jiff` crate: it reads the compiled zone
//! files and applies their POSIX footer rule past the last listed transition (2037 and later
//! on a "slim" tzdata), and follows the tzdata updates the system installs. No zone data is
//! bundled into the binary.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use jiff::tz::{TimeZone, TimeZoneDatabase};
use policy::capacity::{WEEK_MS, WeekMs};

/// A zone that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TzError {
    /// Not a plain IANA name (`Europe/Berlin`): no `..`, no absolute path.
    #[error("time zone '{0}': not an IANA zone name")]
    BadName(String),
    /// Not in the system's time zone database (or its file is not a valid zone).
    #[error("time zone '{name}': not found in the system time zone database: {source}")]
    Unknown {
        /// The zone.
        name: String,
        /// Why, as jiff puts it.
        source: jiff::Error,
    },
    /// A zone directory given explicitly (tests) that cannot be read as a time zone database.
    #[error("time zone '{name}': cannot use {} as a time zone database: {source}", dir.display())]
    Database {
        /// The zone.
        name: String,
        /// The directory.
        dir: PathBuf,
        /// Why, as jiff puts it.
        source: jiff::Error,
    },
}

/// A zone, by its IANA name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

/// Whether `name` looks like an IANA zone name (and cannot reach outside the database).
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_-+".contains(c))
}

impl Zone {
    /// UTC.
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".into(),
            tz: TimeZone::UTC,
        }
    }

    /// Loads `name` from the system's time zone database.
    pub fn load(name: &str) -> Result<Zone, TzError> {
        Self::checked(name, |n| {
            TimeZone::get(n).map_err(|source| TzError::Unknown {
                name: name.into(),
                source,
            })
        })
    }

    /// Loads `name` from the time zone database in `dir` (tests use a copy).
    pub fn load_from(dir: &Path, name: &str) -> Result<Zone, TzError> {
        Self::checked(name, |n| {
            let db = TimeZoneDatabase::from_dir(dir).map_err(|source| TzError::Database {
                name: name.into(),
                dir: dir.into(),
                source,
            })?;
            db.get(n).map_err(|source| TzError::Unknown {
                name: name.into(),
                source,
            })
        })
    }

    fn checked(
        name: &str,
        get: impl FnOnce(&str) -> Result<TimeZone, TzError>,
    ) -> Result<Zone, TzError> {
        if name == "UTC" {
            return Ok(Zone::utc());
        }
        if !plain_name(name) {
            return Err(TzError::BadName(name.into()));
        }
        Ok(Zone {
            name: name.into(),
            tz: get(name)?,
        })
    }

    /// The zone's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// UTC offset in seconds at `utc_ms`.
    pub fn offset_s(&self, utc_ms: u64) -> i64 {
        let at = i64::try_from(utc_ms)
            .ok()
            .and_then(|ms| Timestamp::from_millisecond(ms).ok())
            .unwrap_or(Timestamp::MAX);
        i64::from(self.tz.to_offset(at).seconds())
    }

    /// Local time in the week (ms since Monday 00:00 local) at `utc_ms`.
    pub fn week_ms(&self, utc_ms: u64) -> WeekMs {
        // 1970-01-01 was a Thursday: Monday 00:00 UTC was 3 days earlier.
        let local = utc_ms as i64 + self.offset_s(utc_ms) * 1000 + 3 * 86_400_000;
        local.rem_euclid(WEEK_MS as i64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3_600_000;

    #[test]
    fn berlin_and_new_york_follow_daylight_saving() {
        let (Ok(berlin), Ok(ny)) = (Zone::load("Europe/Berlin"), Zone::load("America/New_York"))
        else {
            // No tzdata on this machine: nothing to compare with.
            return;
        };
        // 2026-01-05 (a Monday) 08:30 UTC: 09:30 in Berlin (CET), 03:30 in New York (EST).
        let winter = 1_767_601_800_000;
        assert_eq!(berlin.offset_s(winter), 3600);
        assert_eq!(berlin.week_ms(winter), 9 * H + H / 2);
        assert_eq!(ny.week_ms(winter), 3 * H + H / 2);
        // 2026-07-06 (a Monday) 08:30 UTC: 10:30 CEST, 04:30 EDT.
        let summer = winter + 182 * 24 * H;
        assert_eq!(berlin.offset_s(summer), 7200);
        assert_eq!(berlin.week_ms(summer), 10 * H + H / 2);
        assert_eq!(ny.week_ms(summer), 4 * H + H / 2);
    }

    #[test]
    fn daylight_saving_continues_past_2037() {
        let Ok(berlin) = Zone::load("Europe/Berlin") else {
            return;
        };
        // 2040-07-02 (a Monday) 08:30 UTC: past the transitions a "fat" tzdata lists (2037),
        // the zone's POSIX rule still gives summer time (CEST, +2 h).
        let summer_2040 = 2_224_830_600_000;
        assert_eq!(berlin.offset_s(summer_2040), 7200);
        assert_eq!(berlin.week_ms(summer_2040), 10 * H + H / 2);
        // 2040-01-02 (a Monday) 08:30 UTC: winter time (CET, +1 h).
        let winter_2040 = summer_2040 - 182 * 24 * H;
        assert_eq!(berlin.offset_s(winter_2040), 3600);
    }

    #[test]
    fn utc_and_bad_names() {
        // 1970-01-05 was a Monday.
        assert_eq!(Zone::utc().week_ms(4 * 24 * H), 0);
        assert_eq!(Zone::utc().week_ms(4 * 24 * H + 25 * H), 25 * H);
        for bad in [
            "../etc/passwd",
            "/etc/localtime",
            "",
            "Europe//Berlin",
            "a b",
        ] {
            assert!(matches!(Zone::load(bad), Err(TzError::BadName(_))), "{bad}");
        }
        let unknown = Zone::load("Nowhere/Atlantis").expect_err("no such zone");
        assert!(matches!(unknown, TzError::Unknown { .. }), "{unknown}");
        assert!(
            unknown.to_string().contains("Nowhere/Atlantis"),
            "{unknown}"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("Bad"), b"not a zone").expect("write");
        assert!(Zone::load_from(dir.path(), "Bad").is_err());
    }
}
