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
    /// The configured `max`: warn when the answer is above it (it could never be held).
    #[arg(long)]
    pub max: Option<u32>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parses a target rejection: `0.01` or `1%`, in (0, 1).
pub fn parse_target(s: &str) -> Result<f64, PlanError> {
    let bad = || PlanError::Arg {
        flag: "--target",
        value: s.to_string(),
        why: "expected a probability in (0, 1), e.g. 0.01 or 1%",
    };
    crate::sim::trace::parse_probability(s).ok_or_else(bad)
}

pub use policy::capacity::{MAX_SPARE, erlang_b, spare_needed};

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
    /// The `max` given with `--max`, when the spare count is above it.
    pub above_max: Option<u32>,
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
        above_max: args.max.filter(|&m| spare > m),
    })
}

/// The `plan` command.
pub fn run(args: &PlanArgs) -> Result<(), PlanError> {
    let p = plan(args)?;
    if let Some(m) = p.above_max {
        eprintln!(
            "warning: the spare count {} is above max {m}: raise max (the spare pool comes on top of the busy gateways)",
            p.spare
        );
    }
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
    fn plan_uses_the_policy_crates_erlang_b() {
        let args = PlanArgs {
            rate: 60.0,
            mean_duration: 1_200_000,
            lead: 120_000,
            target: 0.01,
            max: Some(3),
            json: false,
        };
        let p = plan(&args).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Some(p.spare), policy::capacity::spare_needed(2.0, 0.01));
        assert!(p.above_max.is_some_and(|m| m == 3), "{p:?}");
        let p = plan(&PlanArgs {
            max: Some(100),
            ..args
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.above_max, None);
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
