//! Operator schedules: "at least N spares on these days, from-to, in this time zone".
//!
//! The policy never converts time zones: the edge passes, per zone name, the local time as
//! milliseconds since Monday 00:00 ([`WeekMs`]), so this stays pure and testable.

use serde::{Deserialize, Serialize};

/// Milliseconds since Monday 00:00 local time (0 ..= one week).
pub type WeekMs = u64;

/// One week in milliseconds.
pub const WEEK_MS: u64 = 7 * DAY_MS;
const DAY_MS: u64 = 24 * HOUR_MS;
const HOUR_MS: u64 = 3_600_000;
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A bad schedule entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError(pub String);

impl std::fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScheduleError {}

/// One `[[capacity.schedule]]` entry as written in the config or sent as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleEntry {
    /// Days of the week: `mon-fri`, `sat,sun`, `daily` (a range may wrap: `fri-mon`).
    pub days: String,
    /// Start, local `HH:MM` (inclusive).
    pub from: String,
    /// End, local `HH:MM` (exclusive); earlier than `from` runs past midnight into the next day.
    pub to: String,
    /// Spare floor while the entry is active.
    pub min: u32,
    /// IANA zone name (`Europe/Berlin`); `UTC` when absent.
    #[serde(default = "utc")]
    pub tz: String,
    /// While active, the effective min never falls (spares are kept even if demand drops).
    #[serde(default)]
    pub inhibit_scale_down: bool,
}

fn utc() -> String {
    "UTC".to_string()
}

/// A checked entry: days as a bit mask, times in minutes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Compiled {
    days: u8,
    from_min: u32,
    to_min: u32,
    min: u32,
    tz: String,
    inhibit: bool,
}

/// A checked list of entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    entries: Vec<ScheduleEntry>,
    compiled: Vec<Compiled>,
}

/// What the schedule asks for now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ScheduleNow {
    /// The largest `min` of the active entries.
    pub min: u32,
    /// Whether an active entry inhibits scale-down.
    pub inhibit_scale_down: bool,
}

fn parse_days(s: &str) -> Result<u8, ScheduleError> {
    let bad = || {
        ScheduleError(format!(
            "days '{s}': expected e.g. mon-fri, sat,sun or daily"
        ))
    };
    let day = |d: &str| {
        DAYS.iter()
            .position(|x| x.eq_ignore_ascii_case(d.trim()))
            .ok_or_else(bad)
    };
    let mut mask = 0u8;
    for part in s.split(',') {
        let part = part.trim();
        if part.eq_ignore_ascii_case("daily") || part == "*" {
            mask |= 0x7f;
        } else if let Some((a, b)) = part.split_once('-') {
            let (a, b) = (day(a)?, day(b)?);
            let mut d = a;
            loop {
                mask |= 1 << d;
                if d == b {
                    break;
                }
                d = (d + 1) % 7;
            }
        } else {
            mask |= 1 << day(part)?;
        }
    }
    Ok(mask)
}

fn parse_hhmm(s: &str) -> Result<u32, ScheduleError> {
    let bad = || ScheduleError(format!("time '{s}': expected HH:MM in 00:00..=24:00"));
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl Schedule {
    /// Checks every entry; `max_min` bounds each entry's `min` (the `max` setting).
    pub fn new(entries: Vec<ScheduleEntry>, max_min: u32) -> Result<Schedule, ScheduleError> {
        let compiled = entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let at = |err: ScheduleError| ScheduleError(format!("schedule[{i}]: {err}"));
                let from_min = parse_hhmm(&e.from).map_err(at)?;
                let to_min = parse_hhmm(&e.to).map_err(at)?;
                if from_min == to_min {
                    return Err(at(ScheduleError("from and to are equal".into())));
                }
                if e.min > max_min {
                    return Err(at(ScheduleError(format!(
                        "min {} is above max {max_min}",
                        e.min
                    ))));
                }
                if e.tz.trim().is_empty() {
                    return Err(at(ScheduleError("tz is empty".into())));
                }
                Ok(Compiled {
                    days: parse_days(&e.days).map_err(at)?,
                    from_min,
                    to_min,
                    min: e.min,
                    tz: e.tz.clone(),
                    inhibit: e.inhibit_scale_down,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Schedule { entries, compiled })
    }

    /// The entries as given.
    pub fn entries(&self) -> &[ScheduleEntry] {
        &self.entries
    }

    /// Every zone name the entries use (the edge computes the local time of each).
    pub fn zones(&self) -> Vec<String> {
        let mut z: Vec<String> = self.compiled.iter().map(|c| c.tz.clone()).collect();
        z.sort();
        z.dedup();
        z
    }

    /// What the schedule asks for, given each zone's local time (`None`: zone unknown, the
    /// entry is skipped). `None` when no entry is active.
    pub fn at(&self, local: impl Fn(&str) -> Option<WeekMs>) -> Option<ScheduleNow> {
        let mut out: Option<ScheduleNow> = None;
        for c in &self.compiled {
            let Some(w) = local(&c.tz) else { continue };
            let w = w % WEEK_MS;
            let day = (w / DAY_MS) as u32;
            let minute = ((w % DAY_MS) / 60_000) as u32;
            let active = if c.from_min < c.to_min {
                c.days & (1 << day) != 0 && (c.from_min..c.to_min).contains(&minute)
            } else {
                // Past midnight: the evening part on a listed day, the morning part the day after.
                let yesterday = (day + 6) % 7;
                (c.days & (1 << day) != 0 && minute >= c.from_min)
                    || (c.days & (1 << yesterday) != 0 && minute < c.to_min)
            };
            if active {
                let o = out.get_or_insert(ScheduleNow {
                    min: 0,
                    inhibit_scale_down: false,
                });
                o.min = o.min.max(c.min);
                o.inhibit_scale_down |= c.inhibit;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(days: &str, from: &str, to: &str, min: u32, tz: &str) -> ScheduleEntry {
        ScheduleEntry {
            days: days.into(),
            from: from.into(),
            to: to.into(),
            min,
            tz: tz.into(),
            inhibit_scale_down: false,
        }
    }

    fn at(day: u64, h: u64, m: u64) -> WeekMs {
        day * DAY_MS + h * HOUR_MS + m * 60_000
    }

    #[test]
    fn parses_days_times_and_rejects_bad_entries() {
        assert_eq!(parse_days("mon-fri"), Ok(0b001_1111));
        assert_eq!(parse_days("sat, sun"), Ok(0b110_0000));
        assert_eq!(parse_days("fri-mon"), Ok(0b111_0001));
        assert_eq!(parse_days("daily"), Ok(0x7f));
        assert!(parse_days("monday").is_err());
        assert_eq!(parse_hhmm("08:30"), Ok(510));
        assert_eq!(parse_hhmm("24:00"), Ok(1440));
        for bad in ["8", "25:00", "10:60", "24:01", "x:00"] {
            assert!(parse_hhmm(bad).is_err(), "{bad}");
        }
        assert!(Schedule::new(vec![entry("mon", "08:00", "08:00", 3, "UTC")], 10).is_err());
        let e = Schedule::new(vec![entry("mon", "08:00", "09:00", 30, "UTC")], 10);
        assert!(e.is_err_and(|e| e.0.contains("above max")));
        let json = r#"{"days":"mon-fri","from":"08:00","to":"18:00","min":5,"tz":"Europe/Berlin","inhibit_scale_down":true}"#;
        let parsed: ScheduleEntry = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"));
        assert!(parsed.inhibit_scale_down && parsed.tz == "Europe/Berlin");
        assert!(
            serde_json::from_str::<ScheduleEntry>(
                r#"{"days":"mon","from":"1:00","to":"2:00","min":1,"x":1}"#
            )
            .is_err()
        );
    }

    /// A schedule that must be valid (max 100).
    fn valid(entries: Vec<ScheduleEntry>) -> Schedule {
        Schedule::new(entries, 100).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn active_windows_follow_days_hours_and_midnight() {
        let s = valid(vec![
            entry("mon-fri", "08:00", "18:00", 6, "UTC"),
            entry("fri", "22:00", "02:00", 4, "UTC"),
        ]);
        let utc = |w: WeekMs| move |_: &str| Some(w);
        assert_eq!(s.at(utc(at(0, 7, 59))), None);
        assert_eq!(s.at(utc(at(0, 8, 0))).map(|n| n.min), Some(6));
        assert_eq!(s.at(utc(at(4, 17, 59))).map(|n| n.min), Some(6));
        assert_eq!(s.at(utc(at(4, 18, 0))), None);
        assert_eq!(s.at(utc(at(5, 8, 0))), None, "saturday");
        assert_eq!(s.at(utc(at(4, 23, 0))).map(|n| n.min), Some(4));
        assert_eq!(
            s.at(utc(at(5, 1, 59))).map(|n| n.min),
            Some(4),
            "past midnight"
        );
        assert_eq!(s.at(utc(at(5, 2, 0))), None);
        assert_eq!(s.at(utc(at(6, 1, 0))), None, "not after saturday");
    }

    #[test]
    fn each_entry_is_judged_in_its_own_zone() {
        let s = valid(vec![
            entry("mon", "09:00", "10:00", 3, "Europe/Berlin"),
            entry("mon", "09:00", "10:00", 7, "America/New_York"),
        ]);
        assert_eq!(s.zones(), vec!["America/New_York", "Europe/Berlin"]);
        // 08:30 UTC on a Monday in winter: 09:30 in Berlin, 03:30 in New York.
        let local = |tz: &str| match tz {
            "Europe/Berlin" => Some(at(0, 9, 30)),
            "America/New_York" => Some(at(0, 3, 30)),
            _ => None,
        };
        assert_eq!(s.at(local).map(|n| n.min), Some(3));
        // 14:30 UTC: 15:30 in Berlin, 09:30 in New York.
        let local = |tz: &str| match tz {
            "Europe/Berlin" => Some(at(0, 15, 30)),
            "America/New_York" => Some(at(0, 9, 30)),
            _ => None,
        };
        assert_eq!(s.at(local).map(|n| n.min), Some(7));
        // An unknown zone skips its entry.
        assert_eq!(s.at(|_: &str| None), None);
    }
}
