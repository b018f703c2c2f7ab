//! `jitsi-scaler simulate`: replays a call trace against our policy (the `policy` crate, driven
//! as `serve` drives it), the legacy scaler and a jitsi-autoscaler-style controller on a
//! simulated clock, and reports quality (rejected calls) and cost (worker-hours) side by side.
//! See docs/simulation.md.

pub mod kind;
pub mod plot;
pub mod policies;
pub mod report;
pub mod sidecar;
pub mod trace;
pub mod world;

use std::path::PathBuf;

use clap::Parser;
use policy::{Settings, Timing};
use rand::SeedableRng;
use rand::rngs::StdRng;

pub use kind::PolicyKind;
pub use policies::{AsParams, PolicyOptions, TargetOptions};
pub use report::{PolicyReport, Report};
use trace::{Generator, Trace, Window};
use world::{World, WorldConfig};

/// Errors of `simulate`.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A command-line value that does not parse or is out of range.
    #[error("invalid {flag} '{value}': {why}")]
    Arg {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is wrong.
        why: String,
    },
    /// A file could not be read or written.
    #[error("cannot access {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A bad line in a trace CSV.
    #[error("{}:{line}: {why}", path.display())]
    Trace {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
}

/// A clap value parser for a duration flag (keeps the flag name for the error message).
fn ms_parser(
    flag: &'static str,
) -> impl Fn(&str) -> Result<u64, SimError> + Clone + Send + Sync + 'static {
    move |s| trace::parse_ms(flag, s)
}

/// Where calls come from: a CSV trace or the generator.
#[derive(clap::Args, Clone, Debug)]
pub struct TraceArgs {
    /// Replay this trace CSV (`arrival_s,duration_s` with a header line) instead of generating one.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["rate", "profile", "days", "day_factors", "day_jitter", "mean_duration", "cv", "step", "burst", "spikes", "shift"])]
    pub trace: Option<PathBuf>,
    /// Write the trace that was simulated to this CSV file.
    #[arg(long, value_name = "FILE")]
    pub write_trace: Option<PathBuf>,
    /// Mean arrival rate over the day: `30/h`, `0.5/min`, `720/d` (bare number: per hour).
    #[arg(long, default_value = "30/h", value_parser = trace::parse_rate)]
    pub rate: f64,
    /// Hourly rate profile: `diurnal` (weekday office hours), `flat`, or 24 comma-separated
    /// weights (hour 0 to 23, scaled to mean 1).
    #[arg(long, default_value = "diurnal", value_parser = trace::parse_profile)]
    pub profile: [f64; 24],
    /// Length of the generated trace in days.
    #[arg(long, default_value_t = 7.0)]
    pub days: f64,
    /// Rate factor per day, cycled (e.g. `1,1,1,1,1,0.3,0.3` for weekends).
    #[arg(long, value_name = "LIST", value_parser = parse_factors)]
    pub day_factors: Option<Factors>,
    /// Random day-to-day factor: coefficient of variation of a lognormal with mean 1.
    #[arg(long, default_value_t = 0.0, value_name = "CV")]
    pub day_jitter: f64,
    /// Mean call duration (lognormal).
    #[arg(long, default_value = "10m", value_parser = ms_parser("--mean-duration"))]
    pub mean_duration: u64,
    /// Coefficient of variation of the call duration (0: every call lasts the mean).
    #[arg(long, default_value_t = 1.0)]
    pub cv: f64,
    /// Multiply the rate by FACTOR from TIME on (repeatable; steps compound), e.g. `2@36h`.
    #[arg(long, value_name = "FACTOR@TIME", value_parser = |s: &str| trace::parse_at("--step", s))]
    pub step: Vec<(f64, u64)>,
    /// N calls arriving at the same instant TIME (repeatable), e.g. `20@12h`.
    #[arg(long, value_name = "N@TIME", value_parser = |s: &str| trace::parse_at("--burst", s))]
    pub burst: Vec<(f64, u64)>,
    /// Mean number of extra calls in the first minute of every hour (scaled by the profile).
    #[arg(long, default_value_t = 0.0, value_name = "N")]
    pub spikes: f64,
    /// From TIME on, the hourly profile and the day factors run HOURS later (negative:
    /// earlier; repeatable, shifts add up), e.g. `3h@0` or `-3h@2d`.
    #[arg(long, value_name = "HOURS@TIME", allow_hyphen_values = true, value_parser = trace::parse_shift)]
    pub shift: Vec<(f64, u64)>,
    /// Simulated span (default: the generated days, or the end of the last call of a CSV trace).
    #[arg(long, value_name = "DURATION", value_parser = ms_parser("--horizon"))]
    pub horizon: Option<u64>,
}

/// A list of day factors (a newtype so clap does not take it for a repeated flag).
#[derive(Clone, Debug, PartialEq)]
pub struct Factors(pub Vec<f64>);

fn parse_factors(s: &str) -> Result<Factors, SimError> {
    match trace::parse_list(s) {
        Ok(v) if v.iter().all(|f| f.is_finite() && *f >= 0.0) => Ok(Factors(v)),
        _ => Err(SimError::Arg {
            flag: "--day-factors",
            value: s.to_string(),
            why: "expected comma-separated non-negative numbers".into(),
        }),
    }
}

/// `min` for each hour of the day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinSchedule(pub [u32; 24]);

fn parse_schedule(s: &str) -> Result<MinSchedule, SimError> {
    let bad = || SimError::Arg {
        flag: "--min-schedule",
        value: s.to_string(),
        why: "expected 24 comma-separated integers in 1..=1000, one per hour (and <= --max)".into(),
    };
    let v: Vec<u32> = s
        .split(',')
        .map(|x| x.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let a: [u32; 24] = v.try_into().map_err(|_| bad())?;
    if a.iter()
        .any(|&m| Settings::check_min(i64::from(m), policy::Setting::Max.range().1).is_err())
    {
        return Err(bad());
    }
    Ok(MinSchedule(a))
}

/// How the simulated gateways, Jicofo and the lifecycle manager behave.
#[derive(clap::Args, Clone, Debug)]
pub struct WorldArgs {
    /// Boot time: launch to joined in Jicofo (mean, when --boot-cv > 0).
    #[arg(long, default_value = "90s", value_parser = ms_parser("--boot"))]
    pub boot: u64,
    /// Coefficient of variation of a lognormal boot time (0: fixed).
    #[arg(long, default_value_t = 0.1, value_name = "CV")]
    pub boot_cv: f64,
    /// Gateways take call after call (default: single-use, each expires after one call).
    #[arg(long)]
    pub reuse: bool,
    /// The agent asks for removal after this long idle (then every --ask-every while `keep`).
    #[arg(long, default_value = "10m", value_parser = ms_parser("--idle-time"))]
    pub idle_time: u64,
    /// How often the agent repeats a request (after `keep`, and after `accepted` until deleted).
    #[arg(long, default_value = "60s", value_parser = ms_parser("--ask-every"))]
    pub ask_every: u64,
    /// After `accepted`, the gateway leaves Jicofo's count this long later (Jibri exits).
    #[arg(long, default_value = "10s", value_parser = ms_parser("--drain"))]
    pub drain: u64,
    /// Jicofo's counts lag the world by this much.
    #[arg(long, default_value = "5s", value_parser = ms_parser("--stats-delay"))]
    pub stats_delay: u64,
    /// Probability that a lifecycle call (create or delete) fails.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub lifecycle_fail: f64,
    /// Warm pool: probability that a power call (on or off) is refused for its host, as a
    /// compute resource without power management answers 422.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub power_refuse: f64,
    /// Warm pool: power-on of a stopped host to joined in Jicofo (lognormal with --boot-cv).
    #[arg(long, default_value = "30s", value_parser = ms_parser("--resume"))]
    pub resume: u64,
    /// The lifecycle manager is unreachable from START for LENGTH (repeatable), e.g. `36h+10m`.
    #[arg(long, value_name = "START+LENGTH", value_parser = |s: &str| trace::parse_window("--lifecycle-down", s))]
    pub lifecycle_down: Vec<Window>,
    /// Jicofo cannot be read from START for LENGTH (repeatable), e.g. `36h+5m`.
    #[arg(long, value_name = "START+LENGTH", value_parser = |s: &str| trace::parse_window("--jicofo-down", s))]
    pub jicofo_down: Vec<Window>,
    /// The shared store is unreachable from START for LENGTH (repeatable), e.g. `36h+5m`:
    /// ours launches nothing, keeps idle gateways and queues expired/unhealthy approvals.
    #[arg(long, value_name = "START+LENGTH", value_parser = |s: &str| trace::parse_window("--store-down", s))]
    pub store_down: Vec<Window>,
    /// The scaler restarts at TIME (repeatable), e.g. `10h` (at the diurnal peak): the stored
    /// ledger and learned profile are kept, the short window and measured boots are lost.
    #[arg(long, value_name = "TIME", value_parser = ms_parser("--restart-at"))]
    pub restart_at: Vec<u64>,
}

/// The policies' settings (the service's defaults).
#[derive(clap::Args, Clone, Debug)]
pub struct PolicyArgs {
    /// Policies to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "ours,legacy,autoscaler")]
    pub policies: Vec<PolicyKind>,
    /// Minimum available gateways (the spare floor); also the initial idle pool.
    #[arg(long, default_value_t = Settings::default().min_available)]
    pub min: u32,
    /// `min` per hour of the day instead of --min: 24 comma-separated integers (hour 0 to 23),
    /// as an operator (or a cron job) would set it through the API; see `plan`.
    #[arg(long, value_name = "LIST", value_parser = parse_schedule, conflicts_with = "min")]
    pub min_schedule: Option<MinSchedule>,
    /// Maximum gateways in total.
    #[arg(long, default_value_t = Settings::default().max_total)]
    pub max: u32,
    /// Most launches in one go.
    #[arg(long, default_value_t = Settings::default().bulk_max)]
    pub bulk_max: u32,
    /// Our control-loop interval.
    #[arg(long, default_value = "15s", value_parser = ms_parser("--tick"))]
    pub tick: u64,
    /// A launch not seen in Jicofo after this long is failed and deleted.
    #[arg(long, default_value = "15m", value_parser = ms_parser("--boot-timeout"))]
    pub boot_timeout: u64,
    /// A Jicofo reading older than this counts as missing.
    #[arg(long, default_value = "45s", value_parser = ms_parser("--stats-max-age"))]
    pub stats_max_age: u64,
    /// An approved removal stops counting as pending after this long.
    #[arg(long, default_value = "10m", value_parser = ms_parser("--pending-ttl"))]
    pub pending_ttl: u64,
    /// A host known to have stopped leaves the count this long after it stopped, whatever
    /// Jicofo's totals say (`policy.stop_grace`).
    #[arg(long, default_value = "20s", value_parser = ms_parser("--stop-grace"))]
    pub stop_grace: u64,
    /// Ours in target mode: size the spare floor for this rejection rate (`0.5%`, `0.005`);
    /// `--min` is then the floor it never goes below.
    #[arg(long, value_parser = trace::parse_target)]
    pub target: Option<f64>,
    /// Warm-up: this many days come before the measured span (generated with the same flags, or
    /// the first days of a --trace file); ours in target mode learns its demand profile from
    /// them, every policy is measured on the rest. 0: a fresh install.
    #[arg(long, default_value_t = 0.0, value_name = "DAYS")]
    pub learn_days: f64,
    /// Target mode: boot time assumed until boots are measured.
    #[arg(long, default_value = "2m", value_parser = ms_parser("--default-boot"))]
    pub default_boot: u64,
    /// jitsi-autoscaler baseline: scale-up and scale-down quantity.
    #[arg(long, default_value_t = AsParams::default().quantity)]
    pub as_quantity: u32,
    /// jitsi-autoscaler baseline: grace period after each decision.
    #[arg(long, default_value = "2m", value_parser = ms_parser("--as-grace"))]
    pub as_grace: u64,
    /// jitsi-autoscaler baseline: scale-down threshold minus the scale-up threshold (`min`).
    #[arg(long, default_value_t = AsParams::default().down_gap)]
    pub as_down_gap: u32,
    /// jitsi-autoscaler baseline: period of the Jibri health cron that reboots a host whose
    /// Jibri is EXPIRED (infra-configuration's Jibri role: every minute); 0: none (a bare
    /// install, where an expired gateway stays until a scale-down picks it).
    #[arg(long, default_value = "60s", value_parser = ms_parser("--as-cron"))]
    pub as_cron: u64,
    /// jitsi-autoscaler baseline: mean time from that reboot to Jibri joined again (lognormal
    /// with --boot-cv; no source states it, Jitsi's own reboot timeout is 300 s).
    #[arg(long, default_value = "180s", value_parser = ms_parser("--as-reboot"))]
    pub as_reboot: u64,
    /// jitsi-autoscaler baseline: `IDLE_TTL_SEC`, after which an instance without a newer
    /// sidecar report is no longer tracked.
    #[arg(long, default_value = "300s", value_parser = ms_parser("--as-ttl"))]
    pub as_ttl: u64,
    /// Warm pool for ours: keep N stopped hosts and power them on instead of creating hosts
    /// (the world starts with N stopped hosts); 0: no pool. Other policies ignore it.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub warm_pool: u32,
    /// Warm pool: a start not seen after this long is powered off (twice: deleted).
    #[arg(long, default_value = "5m", value_parser = ms_parser("--start-timeout"))]
    pub start_timeout: u64,
    /// Warm pool: idle removals are deleted instead of going back into the pool.
    #[arg(long)]
    pub pool_no_idle: bool,
    /// Warm pool: stopped hosts count toward `max`.
    #[arg(long)]
    pub pool_counts_toward_max: bool,
}

/// `jitsi-scaler simulate`: replay or generate a call trace and compare policies on it.
#[derive(clap::Args, Clone, Debug)]
#[command(after_help = "Examples:\n  \
    jitsi-scaler simulate --rate 60/h --days 7 --mean-duration 20m\n  \
    jitsi-scaler simulate --profile flat --step 3@12h --days 1 --plot step.svg\n  \
    jitsi-scaler simulate --trace calls.csv --boot 3m --boot-cv 0.5 --json\n\
    See docs/simulation.md for the world model and every metric.")]
pub struct SimulateArgs {
    /// Seed of the trace generator and of the world's randomness.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Draw demand, ready, idle and booting over time per policy into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// The trace.
    #[command(flatten, next_help_heading = "Trace")]
    pub trace: TraceArgs,
    /// The world.
    #[command(flatten, next_help_heading = "World")]
    pub world: WorldArgs,
    /// The policies.
    #[command(flatten, next_help_heading = "Policies")]
    pub policy: PolicyArgs,
}

#[derive(Parser)]
#[command(name = "simulate", no_binary_name = true)]
struct Standalone {
    #[command(flatten)]
    args: SimulateArgs,
}

impl SimulateArgs {
    /// Parses simulate's arguments from a list (for the benchmark and tests).
    pub fn parse_from<I, S>(args: I) -> Result<SimulateArgs, clap::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        Standalone::try_parse_from(args).map(|s| s.args)
    }

    fn settings(&self) -> Result<Settings, SimError> {
        let p = &self.policy;
        let s = Settings {
            min_available: p.min,
            max_total: p.max,
            bulk_max: p.bulk_max,
        };
        if let Some(e) = s.problems().into_iter().next() {
            return Err(SimError::Arg {
                flag: match e.setting {
                    policy::Setting::Min => "--min",
                    policy::Setting::Max => "--max",
                    policy::Setting::BulkMax => "--bulk-max",
                },
                value: s.get(e.setting).to_string(),
                why: e.to_string(),
            });
        }
        Ok(s)
    }

    fn timing(&self) -> Timing {
        let p = &self.policy;
        // `serve`'s defaults; ours' agent asks with `"drain": "confirm"` (see `Ours::ask`).
        Timing {
            boot_timeout_ms: p.boot_timeout,
            stats_max_age_ms: p.stats_max_age,
            pending_ttl_ms: p.pending_ttl,
            stop_grace_ms: p.stop_grace,
            ..Timing::default()
        }
    }

    fn check(&self) -> Result<(), SimError> {
        let bad = |flag: &'static str, value: String, why: &str| {
            Err(SimError::Arg {
                flag,
                value,
                why: why.to_string(),
            })
        };
        let (t, w, p) = (&self.trace, &self.world, &self.policy);
        if t.trace.is_none() && !(t.days > 0.0 && t.days <= 3650.0) {
            return bad("--days", t.days.to_string(), "must be in (0, 3650]");
        }
        for (flag, v) in [
            ("--cv", t.cv),
            ("--day-jitter", t.day_jitter),
            ("--boot-cv", w.boot_cv),
            ("--spikes", t.spikes),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(flag, v.to_string(), "must be a number >= 0");
            }
        }
        for (flag, p) in [
            ("--lifecycle-fail", w.lifecycle_fail),
            ("--power-refuse", w.power_refuse),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return bad(flag, p.to_string(), "must be a probability in [0, 1]");
            }
        }
        if t.trace.is_none() && t.mean_duration == 0 {
            return bad("--mean-duration", "0".into(), "must be positive");
        }
        if let Some((n, _)) = t.burst.iter().find(|(n, _)| n.fract() != 0.0) {
            return bad(
                "--burst",
                n.to_string(),
                "the number of calls must be a whole number",
            );
        }
        for (flag, v) in [("--tick", p.tick), ("--ask-every", w.ask_every)] {
            if v == 0 {
                return bad(flag, "0".into(), "must be positive");
            }
        }
        if p.policies.is_empty() {
            return bad("--policies", String::new(), "name at least one policy");
        }
        if !(p.learn_days.is_finite() && (0.0..=3650.0).contains(&p.learn_days)) {
            return bad(
                "--learn-days",
                p.learn_days.to_string(),
                "must be in [0, 3650]",
            );
        }
        if p.as_quantity == 0 {
            return bad("--as-quantity", "0".into(), "must be positive");
        }
        if self.trace.horizon == Some(0) {
            return bad("--horizon", "0".into(), "must be positive");
        }
        Ok(())
    }

    /// The trace to simulate (read or generated) and its description; with --learn-days, the
    /// part after the learning days, shifted to start at 0.
    pub fn trace(&self) -> Result<(Trace, String), SimError> {
        let (full, what) = self.full_trace()?;
        let (_, measured) = split_trace(full, self.learn_ms());
        Ok((measured, what))
    }

    fn learn_ms(&self) -> u64 {
        (self.policy.learn_days * 24.0 * 3_600_000.0).round() as u64
    }

    /// The learning days' part of the trace (empty without --learn-days).
    pub fn learn_trace(&self) -> Result<Trace, SimError> {
        if self.learn_ms() == 0 {
            return Ok(Trace {
                calls: Vec::new(),
                horizon_ms: 0,
            });
        }
        let (full, _) = self.full_trace()?;
        Ok(split_trace(full, self.learn_ms()).0)
    }

    fn full_trace(&self) -> Result<(Trace, String), SimError> {
        let t = &self.trace;
        let (mut trace, what) = match &t.trace {
            Some(path) => (trace::read_csv(path)?, format!("{}", path.display())),
            None => {
                let g = Generator {
                    rate_per_hour: t.rate,
                    profile: t.profile,
                    days: t.days + self.policy.learn_days,
                    day_factors: t.day_factors.clone().map(|f| f.0).unwrap_or_default(),
                    day_jitter: t.day_jitter,
                    mean_duration_ms: t.mean_duration,
                    duration_cv: t.cv,
                    // Steps, bursts and shifts are given in measured time.
                    steps: t
                        .step
                        .iter()
                        .map(|&(f, at)| (f, at + self.learn_ms()))
                        .collect(),
                    bursts: t
                        .burst
                        .iter()
                        .map(|&(n, at)| (n as u32, at + self.learn_ms()))
                        .collect(),
                    spikes: t.spikes,
                    shifts: t
                        .shift
                        .iter()
                        .map(|&(h, at)| (h, at + self.learn_ms()))
                        .collect(),
                };
                let mut rng = StdRng::seed_from_u64(self.seed);
                (g.generate(&mut rng), format!("generated {}/h", t.rate))
            }
        };
        if let Some(h) = t.horizon {
            trace.horizon_ms = h + self.learn_ms();
        }
        // A trace of one instant still gets a minute, so every rate is defined.
        trace.horizon_ms = trace.horizon_ms.max(60_000);
        Ok((trace, what))
    }

    fn world(&self, horizon_ms: u64) -> WorldConfig {
        let w = &self.world;
        let min_by_hour = self
            .policy
            .min_schedule
            .map_or([self.policy.min; 24], |s| s.0);
        WorldConfig {
            boot_ms: w.boot,
            boot_cv: w.boot_cv,
            reuse: w.reuse,
            idle_time_ms: w.idle_time,
            ask_every_ms: w.ask_every,
            drain_ms: w.drain,
            stats_delay_ms: w.stats_delay,
            lifecycle_fail: w.lifecycle_fail,
            power_refuse: w.power_refuse,
            lifecycle_down: w.lifecycle_down.clone(),
            jicofo_down: w.jicofo_down.clone(),
            store_down: w.store_down.clone(),
            initial: min_by_hour[0],
            min_by_hour,
            max: self.policy.max,
            // About 1500 points per series, never finer than a minute.
            sample_ms: (horizon_ms / 1500).max(60_000),
            pool: self.policy.warm_pool,
            resume_ms: w.resume,
            restarts: w.restart_at.clone(),
        }
    }

    /// The warm pool of ours.
    fn warm_pool(&self) -> policy::WarmPool {
        let p = &self.policy;
        policy::WarmPool {
            size: p.warm_pool,
            recycle_idle: !p.pool_no_idle,
            recycle_expired: true,
            count_toward_max: p.pool_counts_toward_max,
            start_timeout_ms: p.start_timeout,
        }
    }
}

/// Splits a trace at `at`: the calls before (horizon `at`) and the rest, shifted to start at 0.
fn split_trace(full: Trace, at: u64) -> (Trace, Trace) {
    let (before, after): (Vec<_>, Vec<_>) = full.calls.into_iter().partition(|c| c.arrival_ms < at);
    let after = after
        .into_iter()
        .map(|mut c| {
            c.arrival_ms -= at;
            c
        })
        .collect();
    (
        Trace {
            calls: before,
            horizon_ms: at.min(full.horizon_ms),
        },
        Trace {
            calls: after,
            horizon_ms: full.horizon_ms.saturating_sub(at),
        },
    )
}

impl SimulateArgs {
    /// Options of the policies: target mode (with the profile learned from the warm-up days)
    /// and the jitsi-autoscaler baseline's group settings.
    pub fn options(&self) -> Result<PolicyOptions, SimError> {
        let p = &self.policy;
        let target = match p.target {
            None => None,
            Some(target) => {
                let learn = self.learn_trace()?;
                // Simulated time 0 is Monday 00:00 of the first learning day.
                let start_week_ms = self.learn_ms() % policy::capacity::WEEK_MS;
                let profile = trace::profile_from_trace(&learn, 0, Default::default());
                Some(TargetOptions {
                    config: policy::capacity::CapacityConfig {
                        target,
                        tick_ms: p.tick,
                        poll_ms: p.tick,
                        default_boot_ms: p.default_boot,
                        ..Default::default()
                    },
                    profile,
                    start_week_ms,
                })
            }
        };
        Ok(PolicyOptions {
            target,
            autoscaler: AsParams {
                quantity: p.as_quantity,
                grace_ms: p.as_grace,
                down_gap: p.as_down_gap,
                cron_ms: p.as_cron,
                reboot_ms: p.as_reboot,
                ttl_ms: p.as_ttl,
            },
        })
    }
}

/// Mixed into the seed of the world's randomness, so it differs from the trace generator's.
const WORLD_SEED: u64 = 0x5eed_0f57_3a11;

/// Runs every selected policy on `trace` and builds the report.
pub fn simulate(args: &SimulateArgs, trace: &Trace, what: &str) -> Result<Report, SimError> {
    args.check()?;
    let settings = args.settings()?;
    let timing = args.timing();
    let cfg = args.world(trace.horizon_ms);
    let oracle = report::oracle_hours(trace, cfg.boot_ms, cfg.reuse);
    let opts = args.options()?;
    let pool = args.warm_pool();
    // The oracle of the warm-pool world: every gateway resumed from the pool just in time.
    let oracle_warm = pool
        .enabled()
        .then(|| report::oracle_hours(trace, cfg.resume_ms, cfg.reuse));
    let mut policies = Vec::new();
    let mut seen = Vec::new();
    for &kind in &args.policy.policies {
        if seen.contains(&kind) {
            continue;
        }
        seen.push(kind);
        let mut ctl = if kind == PolicyKind::Ours && pool.enabled() {
            Box::new(
                policies::Ours::new(settings, timing, args.policy.tick)
                    .with_target(&opts)
                    .with_pool(pool),
            )
        } else {
            kind.controller(settings, timing, args.policy.tick, &opts)
        };
        // Every policy meets the same world randomness (boot times, failures) in launch order.
        let tally = World::run(&cfg, trace, ctl.as_mut(), args.seed ^ WORLD_SEED);
        let mut p = PolicyReport::from_tally(kind.as_str(), tally, trace.horizon_ms, oracle);
        p.mean_lead_s = ctl.mean_lead_ms().map(|ms| ms / 1000.0);
        p.overprovisioning_warm = oracle_warm
            .filter(|o| *o > 0.0)
            .map(|o| p.worker_hours.total / o);
        policies.push(p);
    }
    Ok(Report {
        seed: args.seed,
        trace: what.to_string(),
        hours: trace.horizon_ms as f64 / 3_600_000.0,
        calls: trace.calls.len() as u64,
        min: cfg.min_by_hour[0],
        min_schedule: args.policy.min_schedule.map(|s| s.0.to_vec()),
        oracle_worker_hours: oracle,
        oracle_warm_worker_hours: oracle_warm,
        warm_pool: pool.size,
        policies,
    })
}

/// The `simulate` command: build the trace, run, print the table or JSON, write the files.
pub fn run(args: &SimulateArgs) -> Result<(), SimError> {
    args.check()?;
    let (trace, what) = args.trace()?;
    if let Some(path) = &args.trace.write_trace {
        trace::write_csv(&trace, path)?;
    }
    let report = simulate(args, &trace, &what)?;
    if let Some(path) = &args.plot {
        std::fs::write(path, plot::svg(&report)).map_err(|source| SimError::Io {
            path: path.clone(),
            source,
        })?;
    }
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}
