//! Local time for schedules and the profile: a small reader of the system's compiled time zone
//! files (`/usr/share/zoneinfo`, TZif version 2+, 64-bit transitions). Debian's tzdata is built
//! "fat" (explicit transitions up to 2037), so the footer's POSIX rule is not needed before
//! then; past the last transition the last offset holds. No new crate for this.

use std::path::{Path, PathBuf};

use policy::capacity::{WEEK_MS, WeekMs};

/// Where zone files live.
pub const ZONEINFO: &str = "/usr/share/zoneinfo";

/// A zone file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TzError {
    /// Not a plain IANA name (`Europe/Berlin`): no `..`, no absolute path.
    #[error("time zone '{0}': not an IANA zone name")]
    BadName(String),
    /// The file cannot be read.
    #[error("time zone '{name}': cannot read {}: {source}", path.display())]
    Io {
        /// The zone.
        name: String,
        /// Its file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a TZif v2+ file.
    #[error("time zone '{0}': not a TZif version 2 file")]
    Format(String),
}

/// A zone: UTC offsets (seconds) from each transition on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    name: String,
    /// (transition time in Unix seconds, offset after it), ascending.
    transitions: Vec<(i64, i64)>,
    /// Offset before the first transition (or always, without any).
    initial: i64,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl Zone {
    /// UTC.
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".into(),
            transitions: Vec::new(),
            initial: 0,
        }
    }

    /// Loads `name` from [`ZONEINFO`].
    pub fn load(name: &str) -> Result<Zone, TzError> {
        Self::load_from(Path::new(ZONEINFO), name)
    }

    /// Loads `name` from `dir` (tests use a copy).
    pub fn load_from(dir: &Path, name: &str) -> Result<Zone, TzError> {
        if name == "UTC" {
            return Ok(Zone::utc());
        }
        let ok = !name.is_empty()
            && !name.starts_with('/')
            && name
                .split('/')
                .all(|p| !p.is_empty() && p != "." && p != "..")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_-+".contains(c));
        if !ok {
            return Err(TzError::BadName(name.into()));
        }
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|source| TzError::Io {
            name: name.into(),
            path: path.clone(),
            source,
        })?;
        Self::parse(name, &bytes).ok_or_else(|| TzError::Format(name.into()))
    }

    fn parse(name: &str, b: &[u8]) -> Option<Zone> {
        // Skip the v1 block (32-bit times) to the v2 header.
        let counts = |at: usize| -> Option<[usize; 6]> {
            if b.get(at..at + 4)? != b"TZif" || *b.get(at + 4)? < b'2' {
                return None;
            }
            let mut c = [0usize; 6];
            for (i, v) in c.iter_mut().enumerate() {
                *v = be32(b, at + 20 + 4 * i)? as usize;
            }
            Some(c)
        };
        let [isut, isstd, leap, timecnt, typecnt, charcnt] = counts(0)?;
        let v2 = 44 + timecnt * 5 + typecnt * 6 + charcnt + leap * 8 + isstd + isut;
        let [_, _, _, timecnt, typecnt, _] = counts(v2)?;
        let times = v2 + 44;
        let idx = times + timecnt * 8;
        let types = idx + timecnt;
        let offset_of = |t: usize| -> Option<i64> {
            if t >= typecnt {
                return None;
            }
            Some(i64::from(be32(b, types + 6 * t)? as i32))
        };
        let mut transitions = Vec::with_capacity(timecnt);
        for i in 0..timecnt {
            let at = i64::from_be_bytes(b.get(times + 8 * i..times + 8 * i + 8)?.try_into().ok()?);
            let t = *b.get(idx + i)? as usize;
            transitions.push((at, offset_of(t)?));
        }
        Some(Zone {
            name: name.into(),
            transitions,
            initial: offset_of(0)?,
        })
    }

    /// The zone's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// UTC offset in seconds at `utc_ms`.
    pub fn offset_s(&self, utc_ms: u64) -> i64 {
        let s = (utc_ms / 1000) as i64;
        match self.transitions.partition_point(|&(at, _)| at <= s) {
            0 => self.initial,
            i => self.transitions[i - 1].1,
        }
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
        assert!(Zone::load("Nowhere/Atlantis").is_err());
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("Bad"), b"not a zone").expect("write");
        assert!(matches!(
            Zone::load_from(dir.path(), "Bad"),
            Err(TzError::Format(_))
        ));
    }
}
