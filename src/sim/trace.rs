//! Call traces: read and write `arrival_s,duration_s` CSV files, and generate synthetic traces
//! (Poisson arrivals with an hourly profile, lognormal durations, steps, bursts, spikes).

use std::io::Write;
use std::path::{Path, PathBuf};

use policy::capacity::{CapacityConfig, Demand, Profile, WEEK_MS};
use rand::Rng;

use super::SimError;

const HOUR_MS: u64 = 3_600_000;

/// One call: when it arrives and how long it lasts, in milliseconds from the trace start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    /// Arrival time.
    pub arrival_ms: u64,
    /// Duration.
    pub duration_ms: u64,
}

/// A call trace sorted by arrival, with the simulated horizon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// Calls, sorted by arrival.
    pub calls: Vec<Call>,
    /// End of the simulation (calls still running then are cut off for the metrics).
    pub horizon_ms: u64,
}

/// The synthetic-trace generator's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Generator {
    /// Mean arrival rate over a day, in calls per hour (the profile has mean 1).
    pub rate_per_hour: f64,
    /// Relative rate per hour of the day, mean 1.
    pub profile: [f64; 24],
    /// Length of the trace in days.
    pub days: f64,
    /// Rate factor per day (cycled); empty means 1 every day.
    pub day_factors: Vec<f64>,
    /// Coefficient of variation of a random per-day factor with mean 1 (0: none).
    pub day_jitter: f64,
    /// Mean call duration.
    pub mean_duration_ms: u64,
    /// Coefficient of variation of the (lognormal) call duration.
    pub duration_cv: f64,
    /// Rate multipliers `(factor, from)`: the rate is multiplied by `factor` from `from` on.
    pub steps: Vec<(f64, u64)>,
    /// Bursts `(calls, at)`: that many calls arrive at the same instant.
    pub bursts: Vec<(u32, u64)>,
    /// Mean number of extra calls arriving within the first minute of every hour, scaled by the
    /// rate profile (meetings that start on the hour).
    pub spikes: f64,
    /// Pattern shifts `(hours, from)`: from `from` on, the hourly profile and the day factors
    /// run this many hours later (negative: earlier); shifts add up.
    pub shifts: Vec<(f64, u64)>,
}

/// The built-in hourly profile of a weekday: quiet nights, a morning and an afternoon peak.
const DIURNAL: [f64; 24] = [
    0.10, 0.08, 0.06, 0.06, 0.08, 0.15, 0.35, 0.80, 1.60, 2.20, 2.40, 2.20, 1.50, 1.90, 2.30, 2.20,
    1.80, 1.20, 0.70, 0.45, 0.35, 0.30, 0.20, 0.15,
];

/// Parses `diurnal`, `flat`, or 24 comma-separated non-negative weights; the result has mean 1.
pub fn parse_profile(s: &str) -> Result<[f64; 24], SimError> {
    let bad = |why: &str| SimError::Arg {
        flag: "--profile",
        value: s.to_string(),
        why: why.to_string(),
    };
    let raw: [f64; 24] = match s.trim() {
        "diurnal" => DIURNAL,
        "flat" => [1.0; 24],
        list => {
            let v = parse_list(list).map_err(|_| bad("expected diurnal, flat or 24 numbers"))?;
            v.try_into()
                .map_err(|_| bad("a custom profile needs exactly 24 numbers, one per hour"))?
        }
    };
    if raw.iter().any(|w| !w.is_finite() || *w < 0.0) {
        return Err(bad("weights must be non-negative numbers"));
    }
    let mean = raw.iter().sum::<f64>() / 24.0;
    if mean <= 0.0 {
        return Err(bad("at least one weight must be positive"));
    }
    Ok(raw.map(|w| w / mean))
}

/// Parses a comma-separated list of numbers.
pub fn parse_list(s: &str) -> Result<Vec<f64>, std::num::ParseFloatError> {
    s.split(',').map(|x| x.trim().parse::<f64>()).collect()
}

/// Parses a probability in (0, 1): `0.01` or `1%`.
pub fn parse_probability(s: &str) -> Option<f64> {
    let v = match s.trim().strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok()? / 100.0,
        None => s.trim().parse::<f64>().ok()?,
    };
    (v > 0.0 && v < 1.0).then_some(v)
}

/// Parses a target rejection rate (`--target`): `0.005` or `0.5%`.
pub fn parse_target(s: &str) -> Result<f64, SimError> {
    parse_probability(s).ok_or_else(|| SimError::Arg {
        flag: "--target",
        value: s.to_string(),
        why: "expected a probability in (0, 1), e.g. 0.005 or 0.5%".into(),
    })
}

/// Parses a rate: `30/h`, `0.5/min`, `720/d`, `0.01/s`, or a bare number of calls per hour.
pub fn parse_rate(s: &str) -> Result<f64, SimError> {
    let bad = || SimError::Arg {
        flag: "--rate",
        value: s.to_string(),
        why: "expected calls per unit, e.g. 30/h, 0.5/min, 720/d".into(),
    };
    let (num, unit) = s.split_once('/').unwrap_or((s, "h"));
    let per_hour = match unit.trim() {
        "s" | "sec" => 3600.0,
        "m" | "min" => 60.0,
        "h" | "hour" => 1.0,
        "d" | "day" => 1.0 / 24.0,
        _ => return Err(bad()),
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 {
        return Err(bad());
    }
    Ok(n * per_hour)
}

/// Parses a duration such as `90s`, `10m`, `36h` (humantime), or `0`, into milliseconds.
pub fn parse_ms(flag: &'static str, s: &str) -> Result<u64, SimError> {
    if s.trim() == "0" {
        return Ok(0);
    }
    humantime::parse_duration(s.trim())
        .map(|d| d.as_millis() as u64)
        .map_err(|e| SimError::Arg {
            flag,
            value: s.to_string(),
            why: e.to_string(),
        })
}

/// Parses `VALUE@TIME`, e.g. `2@36h` (a step) or `20@12h` (a burst).
pub fn parse_at(flag: &'static str, s: &str) -> Result<(f64, u64), SimError> {
    let bad = |why: &str| SimError::Arg {
        flag,
        value: s.to_string(),
        why: why.to_string(),
    };
    let (v, t) = s
        .split_once('@')
        .ok_or_else(|| bad("expected VALUE@TIME, e.g. 2@36h"))?;
    let v: f64 = v
        .trim()
        .parse()
        .map_err(|_| bad("VALUE must be a number"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(bad("VALUE must be a non-negative number"));
    }
    Ok((v, parse_ms(flag, t)?))
}

/// Parses `HOURS@TIME` for `--shift`, e.g. `3h@14d` or `-2@7d` (hours, `h` optional, may be
/// negative or fractional).
pub fn parse_shift(s: &str) -> Result<(f64, u64), SimError> {
    let bad = |why: &str| SimError::Arg {
        flag: "--shift",
        value: s.to_string(),
        why: why.to_string(),
    };
    let (h, t) = s
        .split_once('@')
        .ok_or_else(|| bad("expected HOURS@TIME, e.g. 3h@14d"))?;
    let h = h.trim();
    let h: f64 = h
        .strip_suffix('h')
        .unwrap_or(h)
        .trim()
        .parse()
        .map_err(|_| bad("HOURS must be a number of hours, e.g. 3h or -2.5h"))?;
    if !h.is_finite() || h.abs() > 24.0 * 366.0 {
        return Err(bad("HOURS must be a number within a year"));
    }
    Ok((h, parse_ms("--shift", t)?))
}

/// A time interval `[start_ms, end_ms)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Window {
    /// Start, inclusive.
    pub start_ms: u64,
    /// End, exclusive.
    pub end_ms: u64,
}

impl Window {
    /// Whether `t` falls inside.
    pub fn contains(&self, t: u64) -> bool {
        (self.start_ms..self.end_ms).contains(&t)
    }
}

/// Parses `START+LENGTH`, e.g. `36h+10m`.
pub fn parse_window(flag: &'static str, s: &str) -> Result<Window, SimError> {
    let (a, b) = s.split_once('+').ok_or_else(|| SimError::Arg {
        flag,
        value: s.to_string(),
        why: "expected START+LENGTH, e.g. 36h+10m".into(),
    })?;
    let start_ms = parse_ms(flag, a)?;
    Ok(Window {
        start_ms,
        end_ms: start_ms.saturating_add(parse_ms(flag, b)?),
    })
}

/// Reads a trace CSV: a header line, then `arrival_s,duration_s` per line (seconds, decimals
/// allowed). Blank lines and `#` comments are skipped. The horizon is the end of the last call.
pub fn read_csv(path: &Path) -> Result<Trace, SimError> {
    let text = std::fs::read_to_string(path).map_err(|source| SimError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_csv(&text, path)
}

/// Parses trace CSV text (see [`read_csv`]); `path` is only used in error messages.
pub fn parse_csv(text: &str, path: &Path) -> Result<Trace, SimError> {
    let bad = |line: usize, why: &str| SimError::Trace {
        path: path.to_path_buf(),
        line,
        why: why.to_string(),
    };
    let mut calls = Vec::new();
    let mut header_seen = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !header_seen {
            header_seen = true;
            // The header is required but any non-numeric first line is taken as one.
            if line
                .split(',')
                .next()
                .is_some_and(|f| f.trim().parse::<f64>().is_err())
            {
                continue;
            }
        }
        let mut fields = line.split(',').map(str::trim);
        let (Some(a), Some(d), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(bad(i + 1, "expected two fields: arrival_s,duration_s"));
        };
        let secs = |f: &str| -> Option<u64> {
            let v: f64 = f.parse().ok()?;
            (0.0..1e12)
                .contains(&v)
                .then(|| (v * 1000.0).round() as u64)
        };
        let arrival_ms = secs(a).ok_or_else(|| bad(i + 1, "arrival_s is not a number >= 0"))?;
        let duration_ms = secs(d).ok_or_else(|| bad(i + 1, "duration_s is not a number >= 0"))?;
        calls.push(Call {
            arrival_ms,
            duration_ms,
        });
    }
    calls.sort_by_key(|c| c.arrival_ms);
    let horizon_ms = calls
        .iter()
        .map(|c| c.arrival_ms + c.duration_ms)
        .max()
        .unwrap_or(0);
    Ok(Trace { calls, horizon_ms })
}

/// Writes a trace as CSV (with header), seconds with millisecond precision.
pub fn write_csv(trace: &Trace, path: &PathBuf) -> Result<(), SimError> {
    let io = |source| SimError::Io {
        path: path.clone(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    writeln!(w, "arrival_s,duration_s").map_err(io)?;
    for c in &trace.calls {
        writeln!(
            w,
            "{:.3},{:.3}",
            c.arrival_ms as f64 / 1000.0,
            c.duration_ms as f64 / 1000.0
        )
        .map_err(io)?;
    }
    w.flush().map_err(io)
}

/// A standard normal draw (Box-Muller).
pub fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // in (0, 1], so ln is finite
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A lognormal draw with the given mean and coefficient of variation (cv 0: the mean itself).
pub fn lognormal(rng: &mut impl Rng, mean: f64, cv: f64) -> f64 {
    if cv <= 0.0 {
        return mean;
    }
    let s2 = (1.0 + cv * cv).ln();
    let mu = mean.ln() - s2 / 2.0;
    (mu + s2.sqrt() * normal(rng)).exp()
}

/// An exponential draw with the given rate (events per unit).
pub fn exponential(rng: &mut impl Rng, rate: f64) -> f64 {
    -(1.0 - rng.random::<f64>()).ln() / rate
}

/// A Poisson draw: the number of unit-rate arrivals within `mean` (fine for the small means here).
pub fn poisson(rng: &mut impl Rng, mean: f64) -> u32 {
    let mut n = 0;
    let mut t = exponential(rng, 1.0);
    while t < mean {
        n += 1;
        t += exponential(rng, 1.0);
    }
    n
}

impl Generator {
    /// The horizon in milliseconds.
    pub fn horizon_ms(&self) -> u64 {
        (self.days * 24.0 * HOUR_MS as f64).round() as u64
    }

    /// The pattern shift in force at `t_ms`, in milliseconds (positive: later).
    fn shift_ms(&self, t_ms: u64) -> i64 {
        let h: f64 = self
            .shifts
            .iter()
            .filter(|(_, from)| *from <= t_ms)
            .map(|(h, _)| *h)
            .sum();
        (h * HOUR_MS as f64).round() as i64
    }

    /// The product of the steps in force at `t_ms`.
    fn step_factor(&self, t_ms: u64) -> f64 {
        self.steps
            .iter()
            .filter(|(_, from)| *from <= t_ms)
            .map(|(f, _)| *f)
            .product()
    }

    /// Generates a trace. Arrivals are a non-homogeneous Poisson process sampled by thinning:
    /// candidates at the highest rate, each kept with probability rate(t) / highest rate.
    pub fn generate(&self, rng: &mut impl Rng) -> Trace {
        let horizon_ms = self.horizon_ms();
        let n_days = (horizon_ms.div_ceil(24 * HOUR_MS)).max(1) as usize;
        let days: Vec<f64> = (0..n_days)
            .map(|d| {
                let base = if self.day_factors.is_empty() {
                    1.0
                } else {
                    self.day_factors[d % self.day_factors.len()]
                };
                base * lognormal(rng, 1.0, self.day_jitter)
            })
            .collect();
        let mut steps = self.steps.clone();
        steps.sort_by_key(|s| s.1);
        let mut step_max: f64 = 1.0;
        let mut prod = 1.0;
        for (f, _) in &steps {
            prod *= f;
            step_max = step_max.max(prod);
        }
        // Relative rate at `t` (profile, day and steps); the rate in calls per ms is base * factor.
        // A shifted pattern is the unshifted one of `shift` earlier (before time 0: day 0's).
        let factor = |t: u64| -> f64 {
            let p = (t as i64 - self.shift_ms(t)).max(0) as u64;
            let hour = ((p / HOUR_MS) % 24) as usize;
            let day = ((p / (24 * HOUR_MS)) as usize).min(n_days - 1);
            self.profile[hour] * days[day] * self.step_factor(t)
        };
        let base = self.rate_per_hour / HOUR_MS as f64;
        let peak = base
            * self.profile.iter().cloned().fold(0.0, f64::max)
            * days.iter().cloned().fold(0.0, f64::max)
            * step_max;
        let mut arrivals: Vec<u64> = Vec::new();
        if peak > 0.0 {
            let mut t = 0.0;
            loop {
                t += exponential(rng, peak);
                if t >= horizon_ms as f64 {
                    break;
                }
                let at = t as u64;
                if rng.random::<f64>() * peak < base * factor(at) {
                    arrivals.push(at);
                }
            }
        }
        if self.spikes > 0.0 {
            for h in 0..horizon_ms.div_ceil(HOUR_MS) {
                let at = h * HOUR_MS;
                for _ in 0..poisson(rng, self.spikes * factor(at)) {
                    arrivals.push(at + rng.random_range(0..60_000));
                }
            }
        }
        for (m, at) in &self.bursts {
            if *at < horizon_ms {
                arrivals.extend(std::iter::repeat_n(*at, *m as usize));
            }
        }
        arrivals.sort_unstable();
        let calls = arrivals
            .into_iter()
            .map(|arrival_ms| Call {
                arrival_ms,
                duration_ms: lognormal(rng, self.mean_duration_ms as f64, self.duration_cv)
                    .round()
                    .max(1.0) as u64,
            })
            .collect();
        Trace { calls, horizon_ms }
    }
}

/// One hour in ms (the profile's bin).
const PROFILE_HOUR_MS: u64 = 3_600_000;

/// Learns a profile from a call trace whose time 0 is local week time `start_week_ms`: every
/// full hour of the trace teaches its hour-of-week bin its arrivals and busy time.
pub fn profile_from_trace(trace: &Trace, start_week_ms: u64, base: Profile) -> Profile {
    let hours = (trace.horizon_ms / PROFILE_HOUR_MS) as usize;
    let mut arrivals = vec![0.0f64; hours];
    let mut busy_ms = vec![0.0f64; hours];
    for c in &trace.calls {
        let h = (c.arrival_ms / PROFILE_HOUR_MS) as usize;
        if h < hours {
            arrivals[h] += 1.0;
        }
        // Busy time, split over the hours the call spans.
        let (mut t, end) = (
            c.arrival_ms,
            (c.arrival_ms + c.duration_ms).min(trace.horizon_ms),
        );
        while t < end {
            let h = (t / PROFILE_HOUR_MS) as usize;
            let next = ((t / PROFILE_HOUR_MS + 1) * PROFILE_HOUR_MS).min(end);
            if h < hours {
                busy_ms[h] += (next - t) as f64;
            }
            t = next;
        }
    }
    let mut d = Demand::new(CapacityConfig::default(), base);
    for h in 0..hours {
        let week = (start_week_ms + h as u64 * PROFILE_HOUR_MS) % WEEK_MS;
        d.seed_hour(week, arrivals[h], busy_ms[h]);
    }
    d.profile().clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn gen_flat(rate: f64, days: f64) -> Generator {
        Generator {
            rate_per_hour: rate,
            profile: [1.0; 24],
            days,
            day_factors: vec![],
            day_jitter: 0.0,
            mean_duration_ms: 600_000,
            duration_cv: 1.0,
            steps: vec![],
            bursts: vec![],
            spikes: 0.0,
            shifts: vec![],
        }
    }

    #[test]
    fn rates_and_durations_parse() {
        assert_eq!(parse_rate("30/h").ok(), Some(30.0));
        assert_eq!(parse_rate("0.5/min").ok(), Some(30.0));
        assert_eq!(parse_rate("720/d").ok(), Some(30.0));
        assert_eq!(parse_rate("12").ok(), Some(12.0));
        assert!(parse_rate("-1/h").is_err());
        assert!(parse_rate("3/week").is_err());
        assert_eq!(parse_ms("x", "90s").ok(), Some(90_000));
        assert_eq!(parse_ms("x", "0").ok(), Some(0));
        assert_eq!(parse_at("x", "2@36h").ok(), Some((2.0, 36 * HOUR_MS)));
        assert!(parse_at("x", "2").is_err());
        let w = parse_window("x", "1h+10m").ok();
        assert_eq!(
            w,
            Some(Window {
                start_ms: HOUR_MS,
                end_ms: HOUR_MS + 600_000
            })
        );
    }

    #[test]
    fn profiles_have_mean_one() {
        for p in ["diurnal", "flat", &vec!["2"; 24].join(",")] {
            let w = parse_profile(p).ok().unwrap_or([0.0; 24]);
            assert!((w.iter().sum::<f64>() / 24.0 - 1.0).abs() < 1e-9, "{p}");
        }
        assert!(parse_profile("1,2,3").is_err());
        assert!(parse_profile(&vec!["0"; 24].join(",")).is_err());
    }

    #[test]
    fn csv_round_trips_and_reports_bad_lines() {
        let p = Path::new("t.csv");
        let t = parse_csv("arrival_s,duration_s\n10,60\n# note\n\n5.5,1.25\n", p);
        let t = t.ok().unwrap_or(Trace {
            calls: vec![],
            horizon_ms: 0,
        });
        assert_eq!(
            t.calls,
            vec![
                Call {
                    arrival_ms: 5_500,
                    duration_ms: 1_250
                },
                Call {
                    arrival_ms: 10_000,
                    duration_ms: 60_000
                }
            ]
        );
        assert_eq!(t.horizon_ms, 70_000);
        match parse_csv("arrival_s,duration_s\n1,2\nx,3\n", p) {
            Err(SimError::Trace { line, .. }) => assert_eq!(line, 3),
            other => panic!("expected a line error, got {other:?}"),
        }
        assert!(parse_csv("a,b\n1,2,3\n", p).is_err());
        assert!(parse_csv("a,b\n-1,2\n", p).is_err());
    }

    #[test]
    fn generator_matches_its_rate_and_mean_duration() {
        let g = gen_flat(60.0, 20.0);
        let t = g.generate(&mut StdRng::seed_from_u64(7));
        let n = t.calls.len() as f64;
        let expected = 60.0 * 24.0 * 20.0;
        assert!((n - expected).abs() < 4.0 * expected.sqrt(), "{n} calls");
        let mean = t.calls.iter().map(|c| c.duration_ms as f64).sum::<f64>() / n;
        assert!(
            (mean / 600_000.0 - 1.0).abs() < 0.05,
            "mean duration {mean}"
        );
        assert!(
            t.calls
                .windows(2)
                .all(|w| w[0].arrival_ms <= w[1].arrival_ms)
        );
    }

    #[test]
    fn steps_bursts_and_profile_shape_the_arrivals() {
        let mut g = gen_flat(30.0, 2.0);
        g.steps = vec![(4.0, 24 * HOUR_MS)];
        g.bursts = vec![(20, 6 * HOUR_MS)];
        let t = g.generate(&mut StdRng::seed_from_u64(3));
        let first = t
            .calls
            .iter()
            .filter(|c| c.arrival_ms < 24 * HOUR_MS)
            .count() as f64;
        let second = t.calls.len() as f64 - first;
        assert!(
            second / first > 3.0 && second / first < 5.0,
            "{first} {second}"
        );
        let burst = t
            .calls
            .iter()
            .filter(|c| c.arrival_ms == 6 * HOUR_MS)
            .count();
        assert!(burst >= 20);
        let mut d = gen_flat(100.0, 3.0);
        d.profile = parse_profile("diurnal").unwrap_or([1.0; 24]);
        let t = d.generate(&mut StdRng::seed_from_u64(5));
        let at = |h: u64| {
            t.calls
                .iter()
                .filter(|c| (c.arrival_ms / HOUR_MS) % 24 == h)
                .count()
        };
        assert!(at(10) > 10 * at(3), "peak {} night {}", at(10), at(3));
    }

    #[test]
    fn a_shift_moves_the_daily_pattern_from_its_time_on() {
        // One busy hour a day (hour 10); from day 2 on, three hours later.
        let mut w = [0.0; 24];
        w[10] = 24.0;
        let mut g = gen_flat(100.0, 4.0);
        g.profile = w;
        g.shifts = vec![(3.0, 48 * HOUR_MS)];
        let t = g.generate(&mut StdRng::seed_from_u64(4));
        let hours: Vec<u64> = t.calls.iter().map(|c| c.arrival_ms / HOUR_MS).collect();
        assert!(hours.iter().filter(|&&h| h < 48).all(|h| h % 24 == 10));
        assert!(hours.iter().filter(|&&h| h >= 48).all(|h| h % 24 == 13));
        assert!(hours.iter().filter(|&&h| h >= 48).count() > 3000);
        assert_eq!(parse_shift("3h@14d").ok(), Some((3.0, 14 * 24 * HOUR_MS)));
        assert_eq!(parse_shift("-2.5@1h").ok(), Some((-2.5, HOUR_MS)));
        assert!(parse_shift("3h").is_err() && parse_shift("x@1h").is_err());
    }

    #[test]
    fn spikes_land_in_the_first_minute_of_the_hour() {
        let mut g = gen_flat(0.0, 1.0); // arrivals only from the spikes
        g.spikes = 5.0;
        let t = g.generate(&mut StdRng::seed_from_u64(9));
        assert!(t.calls.len() > 60, "{}", t.calls.len());
        assert!(t.calls.iter().all(|c| c.arrival_ms % HOUR_MS < 60_000));
    }

    #[test]
    fn lognormal_has_the_requested_mean_and_cv() {
        let mut rng = StdRng::seed_from_u64(11);
        let xs: Vec<f64> = (0..200_000)
            .map(|_| lognormal(&mut rng, 10.0, 0.5))
            .collect();
        let m = xs.iter().sum::<f64>() / xs.len() as f64;
        let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!((m - 10.0).abs() < 0.05, "{m}");
        assert!((v.sqrt() / m - 0.5).abs() < 0.01, "{}", v.sqrt() / m);
    }
}
