//! `jitsi-scaler plan`: Erlang-B sizing of the spare pool (the `min` setting).
//!
//! Each call takes one spare gateway; the launch rule replaces it, and the replacement is ready
//! a lead time `L` later (decision + boot + the poll that sees it). So the `k` spare slots behave
//! like `k` servers of a loss system, each "busy" for `L` after every call: an arrival finding
//! all `k` slots waiting for their replacement is rejected. With Poisson arrivals at rate
//! `lambda`, the rejection probability is Erlang B, `B(k, A)` with offered load `A = lambda * L`
//! (exact for any distribution of `L`). See docs/simulation.md.

use serde::Serialize;

use crate::sim::trace::{parse_ms, parse_rate};

/// Errors of `plan`.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A value out of range.
    #[error("invalid {flag} '{value}': {why}")]
    Arg {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is wrong.
        why: &'static str,
    },
    /// No spare count up to the search limit reaches the target.
    #[error("no spare count up to {0} reaches the target")]
    Unreachable(u32),
}

/// `jitsi-scaler plan`: the spare count (`min`) needed for a target rejection rate.
#[derive(clap::Args, Clone, Debug)]
#[command(
    after_help = "Example:\n  jitsi-scaler plan --rate 60/h --mean-duration 20m --lead 2m --target 1%"
)]
pub struct PlanArgs {
    /// Arrival rate at the busiest time you size for: `60/h`, `1/min`, `1440/d`.
    #[arg(long, value_parser = parse_rate)]
    pub rate: f64,
    /// Mean call duration (reported as the expected busy gateways; does not change the spare).
    #[arg(long, default_value = "10m", value_parser = |s: &str| parse_ms("--mean-duration", s))]
    pub mean_duration: u64,
    /// Lead time of a replacement: boot + decision (up to one tick) + the poll that sees it.
    #[arg(long, default_value = "2m", value_parser = |s: &str| parse_ms("--lead", s))]
    pub lead: u64,
    /// Target rejection probability: `0.01` or `1%`.
    #[arg(long, default_value = "1%", value_parser = parse_target)]
    pub target: f64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_target(s: &str) -> Result<f64, PlanError> {
    let bad = || PlanError::Arg {
        flag: "--target",
        value: s.to_string(),
        why: "expected a probability in (0, 1), e.g. 0.01 or 1%",
    };
    let v = match s.trim().strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map_err(|_| bad())? / 100.0,
        None => s.trim().parse::<f64>().map_err(|_| bad())?,
    };
    if v > 0.0 && v < 1.0 {
        Ok(v)
    } else {
        Err(bad())
    }
}

/// Erlang B: probability that all `n` servers are busy under offered load `a` (erlangs), by the
/// stable recursion `B(0,A) = 1`, `B(n,A) = A*B(n-1,A) / (n + A*B(n-1,A))`.
pub fn erlang_b(n: u32, a: f64) -> f64 {
    (1..=n).fold(1.0, |b, k| a * b / (f64::from(k) + a * b))
}

/// Search limit for [`spare_needed`].
pub const MAX_SPARE: u32 = 100_000;

/// The smallest `k` with `B(k, a) <= target` (B falls as k grows).
pub fn spare_needed(a: f64, target: f64) -> Option<u32> {
    let mut b = 1.0;
    for k in 0..=MAX_SPARE {
        if k > 0 {
            b = a * b / (f64::from(k) + a * b);
        }
        if b <= target {
            return Some(k);
        }
    }
    None
}

/// One row of the table around the answer.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Row {
    /// Spare count.
    pub spare: u32,
    /// Rejection probability with that spare.
    pub rejection: f64,
}

/// The plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    /// Calls per hour.
    pub rate_per_hour: f64,
    /// Lead time in seconds.
    pub lead_s: f64,
    /// Offered load on the spare pool, `lambda * L` (erlangs).
    pub offered_load: f64,
    /// Mean calls in progress, `lambda * D`.
    pub mean_busy: f64,
    /// Target rejection probability.
    pub target: f64,
    /// Spare count needed (the `min` setting).
    pub spare: u32,
    /// Rejection with that spare.
    pub rejection: f64,
    /// Rejection for a range of spare counts around the answer.
    pub table: Vec<Row>,
}

/// Computes the plan.
pub fn plan(args: &PlanArgs) -> Result<Plan, PlanError> {
    if !(args.rate.is_finite() && args.rate > 0.0) {
        return Err(PlanError::Arg {
            flag: "--rate",
            value: args.rate.to_string(),
            why: "must be positive",
        });
    }
    let lambda_per_s = args.rate / 3600.0;
    let a = lambda_per_s * args.lead as f64 / 1000.0;
    let spare = spare_needed(a, args.target).ok_or(PlanError::Unreachable(MAX_SPARE))?;
    let lo = spare.saturating_sub(3);
    let table = (lo..=spare + 3)
        .map(|k| Row {
            spare: k,
            rejection: erlang_b(k, a),
        })
        .collect();
    Ok(Plan {
        rate_per_hour: args.rate,
        lead_s: args.lead as f64 / 1000.0,
        offered_load: a,
        mean_busy: lambda_per_s * args.mean_duration as f64 / 1000.0,
        target: args.target,
        spare,
        rejection: erlang_b(spare, a),
        table,
    })
}

/// The `plan` command.
pub fn run(args: &PlanArgs) -> Result<(), PlanError> {
    let p = plan(args)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&p).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
        return Ok(());
    }
    println!(
        "offered load on the spare pool A = lambda * L = {:.3} erlang ({}/h x {}s)",
        p.offered_load, p.rate_per_hour, p.lead_s
    );
    println!(
        "mean calls in progress lambda * D = {:.2} (busy gateways on top of the spare)",
        p.mean_busy
    );
    println!(
        "spare needed for rejection <= {:.3}%: min = {}  (B({}, {:.3}) = {:.4}%)\n",
        100.0 * p.target,
        p.spare,
        p.spare,
        p.offered_load,
        100.0 * p.rejection
    );
    println!("{:>6}  {:>12}", "min", "rejection");
    for r in &p.table {
        let mark = if r.spare == p.spare { "  <-" } else { "" };
        println!("{:>6}  {:>11.4}%{mark}", r.spare, 100.0 * r.rejection);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erlang_b_matches_published_values() {
        assert!((erlang_b(10, 4.0) - 0.005_308).abs() < 1e-5);
        assert!((erlang_b(5, 3.0) - 0.110_054).abs() < 1e-5);
        assert!((erlang_b(1, 1.0) - 0.5).abs() < 1e-12);
        assert_eq!(erlang_b(0, 7.0), 1.0);
        // Large loads stay finite and sensible with the recursion.
        let b = erlang_b(1000, 950.0);
        assert!(b > 0.0 && b < 0.05, "{b}");
    }

    #[test]
    fn spare_needed_inverts_erlang_b() {
        for a in [0.1, 1.0, 4.0, 22.4, 300.0] {
            for target in [0.1, 0.01, 0.001] {
                let k = spare_needed(a, target).unwrap_or(u32::MAX);
                assert!(erlang_b(k, a) <= target);
                assert!(k == 0 || erlang_b(k - 1, a) > target, "a={a} t={target}");
            }
        }
        assert_eq!(spare_needed(4.0, 0.0054), Some(10));
        assert_eq!(spare_needed(4.0, 0.0053), Some(11));
    }

    #[test]
    fn targets_parse_as_fraction_or_percent() {
        assert_eq!(parse_target("1%").ok(), Some(0.01));
        assert_eq!(parse_target("0.05").ok(), Some(0.05));
        assert!(parse_target("0").is_err());
        assert!(parse_target("150%").is_err());
        assert!(parse_target("x").is_err());
    }
}
