//! The edge of self-sizing capacity: the `[capacity]` section and live state of `serve`, local
//! time from the system's zone files, and learning a profile from a call trace (`simulate
//! --learn-days`, `capacity seed`). The policy itself is `policy::capacity` (pure).

pub mod live;
pub mod selector;
pub mod tz;

pub use live::{CapacityError, CapacitySection, Live, Mode, Stored};

use std::path::PathBuf;

use policy::capacity::Profile;

use crate::sim::trace::profile_from_trace;

/// `jitsi-scaler capacity seed`: learn a profile from a call trace.
#[derive(clap::Args, Clone, Debug)]
#[command(
    after_help = "Example:\n  jitsi-scaler capacity seed --trace calls.csv --starts 'mon 00:00' --out profile.json\n\
    Then set `seed_profile = \"profile.json\"` in [capacity]: serve starts from it when the store has no profile."
)]
pub struct SeedArgs {
    /// Call trace CSV (`arrival_s,duration_s`, the format `simulate --trace` reads).
    #[arg(long, value_name = "FILE")]
    pub trace: PathBuf,
    /// Local day and time of the trace's time 0 (in [capacity] timezone): `mon 00:00`.
    #[arg(long, default_value = "mon 00:00", value_parser = parse_starts)]
    pub starts: u64,
    /// Write the profile (JSON) here; `-` prints it.
    #[arg(long, default_value = "-")]
    pub out: String,
}

/// Errors of `capacity seed`.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The trace.
    #[error(transparent)]
    Trace(#[from] crate::sim::SimError),
    /// Writing the profile.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The trace holds no full hour.
    #[error("the trace holds no full hour: nothing to learn")]
    Empty,
}

fn parse_starts(s: &str) -> Result<u64, String> {
    let bad = || format!("'{s}': expected a day and a time, e.g. 'mon 00:00'");
    let (day, time) = s.trim().split_once(' ').ok_or_else(bad)?;
    let d = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .position(|x| x.eq_ignore_ascii_case(day.trim()))
        .ok_or_else(bad)? as u64;
    let (h, m) = time.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u64, u64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h >= 24 || m >= 60 {
        return Err(bad());
    }
    Ok(d * 24 * HOUR_MS + h * HOUR_MS + m * 60_000)
}

/// Runs `capacity seed`.
pub fn run_seed(args: &SeedArgs) -> Result<(), SeedError> {
    let trace = crate::sim::trace::read_csv(&args.trace)?;
    if trace.horizon_ms < HOUR_MS {
        return Err(SeedError::Empty);
    }
    let p = profile_from_trace(&trace, args.starts, Profile::default());
    let json = serde_json::to_string_pretty(&p).unwrap_or_default();
    if args.out == "-" {
        println!("{json}");
    } else {
        std::fs::write(&args.out, json).map_err(|source| SeedError::Write {
            path: args.out.clone(),
            source,
        })?;
        eprintln!(
            "learned {:.0} hours from {} calls into {}",
            p.hours_learned(),
            trace.calls.len(),
            args.out
        );
    }
    Ok(())
}

const HOUR_MS: u64 = 3_600_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::trace::{Call, Trace};

    #[test]
    fn starts_parse_day_and_time() {
        assert_eq!(parse_starts("mon 00:00"), Ok(0));
        assert_eq!(
            parse_starts("Wed 09:30"),
            Ok(2 * 24 * HOUR_MS + 9 * HOUR_MS + 1_800_000)
        );
        for bad in ["monday 00:00", "mon", "mon 24:00", "mon 10:60"] {
            assert!(parse_starts(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_trace_teaches_each_hour_of_the_week_its_rate() {
        // Two days: 10 calls in every hour, 30 in hour 9; each call 6 minutes.
        let mut calls = Vec::new();
        for h in 0..48u64 {
            let n = if h % 24 == 9 { 30 } else { 10 };
            for i in 0..n {
                calls.push(Call {
                    arrival_ms: h * HOUR_MS + i * (HOUR_MS / n),
                    duration_ms: 360_000,
                });
            }
        }
        let t = Trace {
            calls,
            horizon_ms: 48 * HOUR_MS,
        };
        // Starting on a Wednesday: bins 48.. and 72.. are learned.
        let p = profile_from_trace(&t, 2 * 24 * HOUR_MS, Profile::default());
        assert_eq!(p.rate[48 + 9], 30.0);
        assert_eq!(p.rate[72 + 3], 10.0);
        assert_eq!(p.weight[0], 0.0);
        let d = p.mean_duration_ms().unwrap_or(0.0);
        assert!((d - 360_000.0).abs() < 1_000.0, "{d}");
    }
}
