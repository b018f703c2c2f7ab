//! The edge of self-sizing capacity: learning a profile from a call trace (`simulate
//! --learn-days`, `capacity seed`). The policy itself is `policy::capacity` (pure).

use policy::capacity::{CapacityConfig, Demand, Profile, WEEK_MS};

use crate::sim::trace::Trace;

const HOUR_MS: u64 = 3_600_000;

/// Learns a profile from a call trace whose time 0 is local week time `start_week_ms`: every
/// full hour of the trace teaches its hour-of-week bin its arrivals and busy time.
pub fn profile_from_trace(trace: &Trace, start_week_ms: u64, base: Profile) -> Profile {
    let hours = (trace.horizon_ms / HOUR_MS) as usize;
    let mut arrivals = vec![0.0f64; hours];
    let mut busy_ms = vec![0.0f64; hours];
    for c in &trace.calls {
        let h = (c.arrival_ms / HOUR_MS) as usize;
        if h < hours {
            arrivals[h] += 1.0;
        }
        // Busy time, split over the hours the call spans.
        let (mut t, end) = (
            c.arrival_ms,
            (c.arrival_ms + c.duration_ms).min(trace.horizon_ms),
        );
        while t < end {
            let h = (t / HOUR_MS) as usize;
            let next = ((t / HOUR_MS + 1) * HOUR_MS).min(end);
            if h < hours {
                busy_ms[h] += (next - t) as f64;
            }
            t = next;
        }
    }
    let mut d = Demand::new(CapacityConfig::default(), base);
    for h in 0..hours {
        let week = (start_week_ms + h as u64 * HOUR_MS) % WEEK_MS;
        d.seed_hour(week, arrivals[h], busy_ms[h]);
    }
    d.profile().clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::trace::Call;

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
