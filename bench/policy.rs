//! Policy benchmark: every scenario, 20 seeds, every policy, under the service's default
//! settings and with `min` sized by Erlang B; writes the "Policy benchmark" section of
//! docs/benchmarks.md (between its markers) and prints it.
//!
//! Run: `cargo bench --bench policy` (or `bench/policy.sh`). Options after `--`:
//! `--seeds N`, `--out FILE`, `--only NAME` (`--only warm`: the warm-pool rows alone), and
//! any `simulate` flag, appended to every run
//! (e.g. `-- --tick 10s`).

use std::fmt::Write;
use std::path::PathBuf;

use jitsi_scaler::plan::spare_needed;

/// Warm-pool rows (issue 13), in their own block of docs/benchmarks.md.
mod warm_pool;
use jitsi_scaler::sim::{self, Report, SimulateArgs};

/// One scenario: `simulate` flags, the peak rate and boot time that size `min`, and (for the
/// diurnal profile) the mean rate that sizes an hourly `min` schedule.
struct Scenario {
    name: &'static str,
    args: &'static str,
    peak_per_hour: f64,
    boot_s: f64,
    diurnal_mean_per_hour: Option<f64>,
}

/// Common to every scenario: SIP calls of 20 min on average (cv 1), single-use gateways.
const BASE: &str = "--mean-duration 20m --cv 1";

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "stationary",
        args: "--profile flat --rate 60/h --days 2",
        peak_per_hour: 60.0,
        boot_s: 90.0,
        diurnal_mean_per_hour: None,
    },
    Scenario {
        name: "diurnal weekday",
        args: "--profile diurnal --rate 60/h --days 5",
        peak_per_hour: 144.0,
        boot_s: 90.0,
        diurnal_mean_per_hour: Some(60.0),
    },
    Scenario {
        name: "step x3",
        args: "--profile flat --rate 30/h --step 3@12h --days 1",
        peak_per_hour: 90.0,
        boot_s: 90.0,
        diurnal_mean_per_hour: None,
    },
    Scenario {
        name: "burst of 20",
        args: "--profile flat --rate 60/h --burst 20@12h --days 1",
        peak_per_hour: 60.0,
        boot_s: 90.0,
        diurnal_mean_per_hour: None,
    },
    Scenario {
        name: "lifecycle outage 10 min",
        args: "--profile diurnal --rate 60/h --days 1 --lifecycle-down 10h+10m",
        peak_per_hour: 144.0,
        boot_s: 90.0,
        diurnal_mean_per_hour: Some(60.0),
    },
    Scenario {
        name: "Jicofo outage 5 min",
        args: "--profile diurnal --rate 60/h --days 1 --jicofo-down 10h+5m",
        peak_per_hour: 144.0,
        boot_s: 90.0,
        diurnal_mean_per_hour: Some(60.0),
    },
    Scenario {
        name: "slow lognormal boots",
        args: "--profile diurnal --rate 60/h --days 2 --boot 5m --boot-cv 0.5",
        peak_per_hour: 144.0,
        boot_s: 300.0,
        diurnal_mean_per_hour: Some(60.0),
    },
    Scenario {
        name: "diurnal, reusable gateways",
        args: "--profile diurnal --rate 60/h --days 5 --reuse",
        peak_per_hour: 144.0,
        boot_s: 90.0,
        diurnal_mean_per_hour: Some(60.0),
    },
];

/// `min` for every hour of the diurnal profile at this mean rate: Erlang B at that hour's rate.
fn hourly_min(mean_per_hour: f64, lead_s: f64) -> String {
    let profile = jitsi_scaler::sim::trace::parse_profile("diurnal").unwrap_or([1.0; 24]);
    profile
        .iter()
        .map(|w| {
            let a = mean_per_hour * w / 3600.0 * lead_s;
            spare_needed(a, TARGET_REJECTION)
                .unwrap_or(100)
                .clamp(1, 100)
                .to_string()
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Decision and poll delay added to the boot time for the lead time (one 15 s tick each).
const LEAD_EXTRA_S: f64 = 30.0;
const TARGET_REJECTION: f64 = 0.01;
/// Student t quantile, 97.5 %, for the seeds' degrees of freedom (20 seeds: 19).
fn t975(df: usize) -> f64 {
    match df {
        0 => f64::NAN,
        1 => 12.706,
        2 => 4.303,
        3 => 3.182,
        4 => 2.776,
        5..=9 => 2.262,
        10..=19 => 2.093,
        20..=29 => 2.045,
        _ => 1.96,
    }
}

/// Mean and 95 % half-width.
fn stats(xs: &[f64]) -> (f64, f64) {
    let n = xs.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let m = xs.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (m, 0.0);
    }
    let var = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64;
    (m, t975(n - 1) * (var / n as f64).sqrt())
}

fn ci(xs: &[f64], digits: usize) -> String {
    let (m, h) = stats(xs);
    format!("{m:.digits$} ± {h:.digits$}")
}

struct Options {
    seeds: u64,
    out: PathBuf,
    only: Option<String>,
    extra: Vec<String>,
}

fn options() -> Option<Options> {
    let mut args = std::env::args().skip(1);
    let mut o = Options {
        seeds: 20,
        out: PathBuf::from("docs/benchmarks.md"),
        only: None,
        extra: Vec::new(),
    };
    let mut bench = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bench" => bench = true,
            "--seeds" => o.seeds = args.next()?.parse().ok()?,
            "--out" => o.out = PathBuf::from(args.next()?),
            "--only" => o.only = args.next(),
            _ => o.extra.push(a),
        }
    }
    // `cargo test --all-targets` runs this file too, without `--bench`: do nothing then.
    bench.then_some(o)
}

/// Runs one scenario for every seed; returns the reports in seed order.
fn run_seeds(args: &[String], seeds: u64) -> Result<Vec<Report>, String> {
    let seeds: Vec<u64> = (1..=seeds).collect();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunks: Vec<&[u64]> = seeds.chunks(seeds.len().div_ceil(workers).max(1)).collect();
    let results: Vec<Result<Vec<Report>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|seed| {
                            let mut a = args.to_vec();
                            a.extend(["--seed".to_string(), seed.to_string()]);
                            let parsed = SimulateArgs::parse_from(&a).map_err(|e| e.to_string())?;
                            let (trace, what) = parsed.trace().map_err(|e| e.to_string())?;
                            sim::simulate(&parsed, &trace, &what).map_err(|e| e.to_string())
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a worker panicked".into())))
            .collect()
    });
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    Ok(all)
}

/// Per-policy numbers of one scenario over all seeds.
struct Row {
    policy: String,
    rejected: Vec<f64>,
    worst: Vec<f64>,
    wh: Vec<f64>,
    ratio: Vec<f64>,
    below: Vec<f64>,
    launches: Vec<f64>,
    floor_breaks: u64,
    past_max: u64,
    cut: u64,
}

fn rows(reports: &[Report]) -> Vec<Row> {
    let names: Vec<String> = reports
        .first()
        .map(|r| r.policies.iter().map(|p| p.policy.clone()).collect())
        .unwrap_or_default();
    names
        .into_iter()
        .enumerate()
        .map(|(i, policy)| {
            let ps: Vec<_> = reports.iter().map(|r| &r.policies[i]).collect();
            let col = |f: &dyn Fn(&sim::PolicyReport) -> f64| ps.iter().map(|p| f(p)).collect();
            Row {
                policy,
                rejected: col(&|p| p.rejected_pct),
                worst: col(&|p| p.worst_hour.map_or(0.0, |w| w.pct)),
                wh: col(&|p| p.worker_hours.total),
                ratio: col(&|p| p.overprovisioning),
                below: col(&|p| p.below_floor_pct),
                launches: col(&|p| p.launches_per_hour),
                floor_breaks: ps.iter().map(|p| p.floor_breaks).sum(),
                past_max: ps.iter().map(|p| p.launches_past_max).sum(),
                cut: ps.iter().map(|p| p.cut_calls).sum(),
            }
        })
        .collect()
}

fn mean(xs: &[f64]) -> f64 {
    stats(xs).0
}

fn yes(b: bool) -> &'static str {
    if b { "**met**" } else { "**not met**" }
}

fn main() {
    let Some(o) = options() else {
        println!("policy benchmark: run it with `cargo bench --bench policy`");
        return;
    };
    // `--only warm`: the warm-pool rows alone (issue 13).
    if o.only.as_deref() == Some("warm") {
        warm_pool::run(&o);
        return;
    }
    let mut md = String::new();
    let extra = o.extra.join(" ");
    let _ = writeln!(
        md,
        "Generated by `cargo bench --bench policy{}` ({} seeds per scenario; mean ± 95 % \
         confidence half-width, Student t). Every scenario also has `{BASE}`; rows are \
         `simulate` runs, reproducible with `jitsi-scaler simulate <flags> --seed N`.\n",
        if extra.is_empty() {
            String::new()
        } else {
            format!(" -- {extra}")
        },
        o.seeds
    );
    let mut checks: Vec<String> = Vec::new();
    let mut ours_violations = 0u64;
    let mut cut_total = 0u64;
    for sc in SCENARIOS {
        if o.only.as_deref().is_some_and(|n| !sc.name.contains(n)) {
            continue;
        }
        let lead_s = sc.boot_s + LEAD_EXTRA_S;
        let sized = spare_needed(sc.peak_per_hour / 3600.0 * lead_s, TARGET_REJECTION).unwrap_or(1);
        let mut variants = vec![
            ("service defaults (min 2)".to_string(), String::new()),
            (
                "min sized by Erlang B".to_string(),
                format!("--min {}", sized.clamp(1, 100)),
            ),
        ];
        if let Some(mean) = sc.diurnal_mean_per_hour {
            let schedule = hourly_min(mean, lead_s);
            variants.push((
                "min per hour by Erlang B".to_string(),
                format!("--min-schedule {schedule}"),
            ));
        }
        for (variant, min_flag) in variants {
            let variant = variant.as_str();
            let flags = format!("{} {BASE} {min_flag} {extra}", sc.args);
            let args: Vec<String> = flags.split_whitespace().map(String::from).collect();
            let reports = match run_seeds(&args, o.seeds) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{}: {e}", sc.name);
                    std::process::exit(1);
                }
            };
            let oracle: Vec<f64> = reports.iter().map(|r| r.oracle_worker_hours).collect();
            let rs = rows(&reports);
            let _ = writeln!(md, "### {}: {variant}\n", sc.name);
            let _ = writeln!(
                md,
                "`{}`\n",
                flags.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            let _ = writeln!(
                md,
                "| policy | rejected % | worst hour % | worker-hours | x oracle | below floor % | launches/h | floor breaks | past max | calls cut |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
            for r in &rs {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    r.policy,
                    ci(&r.rejected, 2),
                    ci(&r.worst, 1),
                    ci(&r.wh, 0),
                    ci(&r.ratio, 2),
                    ci(&r.below, 1),
                    ci(&r.launches, 1),
                    r.floor_breaks,
                    r.past_max,
                    r.cut
                );
            }
            let _ = writeln!(
                md,
                "| oracle | 0 | 0 | {} | 1.00 | | | | | |\n",
                ci(&oracle, 0)
            );
            let find = |n: &str| rs.iter().find(|r| r.policy == n);
            if let Some(ours) = find("ours") {
                ours_violations += ours.floor_breaks + ours.past_max;
                cut_total += ours.cut;
                if let Some(legacy) = find("legacy") {
                    let (ro, rl) = (mean(&ours.rejected), mean(&legacy.rejected));
                    let w = mean(&ours.wh) / mean(&legacy.wh);
                    checks.push(format!(
                        "| {} | {variant} | {ro:.2} % vs {rl:.2} % | {w:.2} | {} |",
                        sc.name,
                        yes(ro <= rl && w <= 0.7)
                    ));
                }
                if sc.name == "diurnal weekday" {
                    let x = mean(&ours.ratio);
                    let rj = mean(&ours.rejected);
                    checks.push(format!(
                        "| {} | {variant} | ours {rj:.2} % rejected (<= 1 %) at {x:.2} x oracle (<= 1.3) | | {} |",
                        sc.name,
                        yes(rj <= 1.0 && x <= 1.3)
                    ));
                }
            }
        }
    }
    let _ = writeln!(md, "### Targets\n");
    let _ = writeln!(
        md,
        "Per scenario and settings: ours rejects no more than legacy with at most 0.7 x its \
         worker-hours; on the diurnal scenario ours rejects at most 1 % within 1.3 x the \
         oracle's worker-hours; ours shows 0 floor-breaking removals and 0 launches past max \
         everywhere.\n"
    );
    let _ = writeln!(
        md,
        "| scenario | settings | rejected: ours vs legacy | worker-hours ours / legacy | target |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    for c in &checks {
        let _ = writeln!(md, "{c}");
    }
    let _ = writeln!(
        md,
        "\nOurs: {ours_violations} floor-breaking removals and launches past max in total: {}. \
         Calls cut by ours (deletion of a busy gateway): {cut_total}.",
        yes(ours_violations == 0)
    );
    print!("{md}");
    if let Err(e) = write_section(&o.out, &md) {
        eprintln!("{}: {e}", o.out.display());
        std::process::exit(1);
    }
    warm_pool::run(&o);
}

const BEGIN: &str = "<!-- policy-benchmark:begin (generated by cargo bench --bench policy) -->";
const END: &str = "<!-- policy-benchmark:end -->";

/// Replaces the generated part of the "Policy benchmark" section, keeping the rest of the file
/// (other sections, and hand-written text around the markers).
fn write_section(path: &PathBuf, generated: &str) -> std::io::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let block = format!("{BEGIN}\n{generated}{END}");
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{block}{}", &old[..b], &old[e + END.len()..]),
        _ if old.contains("## Policy benchmark") => {
            // Heading without markers: put the block right after the heading line.
            let at = old.find("## Policy benchmark").unwrap_or(0);
            let eol = old[at..].find('\n').map_or(old.len(), |i| at + i + 1);
            format!("{}\n{block}\n{}", &old[..eol], &old[eol..])
        }
        _ => {
            let head = if old.is_empty() {
                "# Benchmarks\n\n".to_string()
            } else {
                format!("{}\n", old.trim_end())
            };
            format!("{head}\n## Policy benchmark\n\n{block}\n")
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, new)
}
