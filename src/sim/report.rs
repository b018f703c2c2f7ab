//! Metrics of a run: the per-policy report, the clairvoyant oracle, the text table and JSON.

use std::fmt::Write;

use serde::Serialize;

use super::trace::Trace;
use super::world::{Sample, Tally};

const HOUR_MS: f64 = 3_600_000.0;

/// Worker-hours by what the gateways were doing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct WorkerHours {
    /// All of them.
    pub total: f64,
    /// In a call.
    pub busy: f64,
    /// Ready and free.
    pub idle: f64,
    /// Launched, not yet ready.
    pub booting: f64,
    /// On the way out: expired, draining, or waiting for the delete.
    pub draining: f64,
}

/// The hour of the trace with the highest rejected share.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct WorstHour {
    /// Hour index from the trace start (0-based).
    pub hour: usize,
    /// Calls in that hour.
    pub calls: u32,
    /// Rejected calls in that hour.
    pub rejected: u32,
    /// Rejected share in percent.
    pub pct: f64,
}

/// One simulated day's calls and rejections.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct DayFigures {
    /// Calls offered that day.
    pub calls: u32,
    /// Calls rejected that day.
    pub rejected: u32,
    /// Rejected share in percent.
    pub pct: f64,
}

/// SPEC Research Group elasticity metrics, in percent (see docs/simulation.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct SpecRg {
    /// Mean of max(demand - supply, 0) / max(demand, 1) over time.
    pub under_accuracy: f64,
    /// Mean of max(supply - demand, 0) / max(demand, 1) over time.
    pub over_accuracy: f64,
    /// Share of time with supply < demand.
    pub under_timeshare: f64,
    /// Share of time with supply > demand.
    pub over_timeshare: f64,
}

/// One policy's results.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyReport {
    /// Policy name.
    pub policy: String,
    /// Calls offered.
    pub calls: u64,
    /// Calls rejected (no idle gateway on arrival).
    pub rejected: u64,
    /// Rejected share in percent.
    pub rejected_pct: f64,
    /// The worst hour (none without calls).
    pub worst_hour: Option<WorstHour>,
    /// Worker-hours.
    pub worker_hours: WorkerHours,
    /// Worker-hours divided by the oracle's.
    pub overprovisioning: f64,
    /// Share of time with fewer than `min` idle gateways, percent.
    pub below_floor_pct: f64,
    /// Successful launches.
    pub launches: u64,
    /// Launches per simulated hour.
    pub launches_per_hour: f64,
    /// Accepted removals (idle and expired).
    pub removals: u64,
    /// Removals per simulated hour.
    pub removals_per_hour: f64,
    /// Accepted idle removals.
    pub removals_idle: u64,
    /// Failed create calls.
    pub create_failures: u64,
    /// Booting gateways deleted before they came up.
    pub boot_aborts: u64,
    /// Calls cut by the deletion of their gateway.
    pub cut_calls: u64,
    /// SPEC RG elasticity metrics.
    pub spec_rg: SpecRg,
    /// Idle removals that broke the spare floor (must be 0 for ours).
    pub floor_breaks: u64,
    /// Launches past `max` (must be 0 for ours).
    pub launches_past_max: u64,
    /// Hours during which `max` held back what the spare floor needed (ours).
    #[serde(default)]
    pub hours_capped: f64,
    /// Stopped-host-hours in the warm pool: storage, not compute (not in `worker_hours`).
    pub stopped_hours: f64,
    /// Power-ons from the warm pool.
    pub resumes: u64,
    /// Hosts powered off into the warm pool.
    pub pool_returns: u64,
    /// Power calls that failed (refused ones included).
    #[serde(default)]
    pub power_failures: u64,
    /// Power calls refused for their host (`--power-refuse`).
    #[serde(default)]
    pub power_refusals: u64,
    /// Worker-hours divided by the warm-pool oracle's (with a warm pool).
    pub overprovisioning_warm: Option<f64>,
    /// Target mode: the mean lead it sized for, averaged over its ticks (seconds).
    pub mean_lead_s: Option<f64>,
    /// Calls and rejections per simulated day (day 0 first; the last may be partial).
    pub days: Vec<DayFigures>,
    /// Plot samples (not in the JSON).
    #[serde(skip)]
    pub samples: Vec<Sample>,
    /// Arrival times of the rejected calls (not in the JSON; the benchmark's recovery check).
    #[serde(skip)]
    pub rejected_at_ms: Vec<u64>,
}

/// The whole report: one trace, every policy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Seed of the generator and the world.
    pub seed: u64,
    /// Where the trace came from.
    pub trace: String,
    /// Simulated hours.
    pub hours: f64,
    /// Calls in the trace.
    pub calls: u64,
    /// The spare floor (`min`) at the start.
    pub min: u32,
    /// `min` per hour of the day, when a schedule was given.
    pub min_schedule: Option<Vec<u32>>,
    /// The clairvoyant oracle's worker-hours.
    pub oracle_worker_hours: f64,
    /// The warm-pool oracle's worker-hours (every gateway resumed from the pool just in time),
    /// with a warm pool.
    pub oracle_warm_worker_hours: Option<f64>,
    /// The warm pool's size (0: none).
    pub warm_pool: u32,
    /// One entry per policy.
    pub policies: Vec<PolicyReport>,
}

/// The clairvoyant oracle's worker-hours: every gateway booted just in time and removed the
/// instant it is no longer needed. Single-use: `sum(boot + duration)`. Reusable: per level of
/// concurrency, an idle gap is bridged when shorter than a boot, else the gateway is removed and
/// a new one booted (a gateway costs from its launch, so each boot costs `boot`).
pub fn oracle_hours(trace: &Trace, boot_ms: u64, reuse: bool) -> f64 {
    let h = trace.horizon_ms;
    let end = |c: &super::trace::Call| (c.arrival_ms + c.duration_ms).min(h);
    if !reuse {
        let ms: u64 = trace
            .calls
            .iter()
            .filter(|c| c.arrival_ms < h)
            .map(|c| boot_ms + end(c) - c.arrival_ms)
            .sum();
        return ms as f64 / HOUR_MS;
    }
    // Ends before starts at the same instant: a gateway freed at t can take a call at t.
    let mut edges: Vec<(u64, i8)> = Vec::with_capacity(trace.calls.len() * 2);
    for c in trace.calls.iter().filter(|c| c.arrival_ms < h) {
        edges.push((c.arrival_ms, 1));
        edges.push((end(c), -1));
    }
    edges.sort_unstable();
    let mut level_start: Vec<u64> = vec![0];
    let mut last_end: Vec<Option<u64>> = vec![None];
    let mut cost: u64 = 0;
    let mut c = 0usize;
    for (t, d) in edges {
        if d < 0 {
            cost += t - level_start[c];
            last_end[c] = Some(t);
            c -= 1;
        } else {
            c += 1;
            if level_start.len() <= c {
                level_start.push(0);
                last_end.push(None);
            }
            cost += last_end[c].map_or(boot_ms, |e| (t - e).min(boot_ms));
            level_start[c] = t;
        }
    }
    cost as f64 / HOUR_MS
}

impl PolicyReport {
    /// Turns a run's raw tally into the report.
    pub fn from_tally(policy: &str, t: Tally, horizon_ms: u64, oracle: f64) -> PolicyReport {
        let hours = (horizon_ms as f64 / HOUR_MS).max(1e-9);
        let wh = |ms: f64| ms / HOUR_MS;
        let worker_hours = WorkerHours {
            booting: wh(t.gw_ms[0]),
            idle: wh(t.gw_ms[1]),
            busy: wh(t.gw_ms[2]),
            draining: wh(t.gw_ms[3]),
            total: wh(t.gw_ms.iter().sum()),
        };
        let pct = |part: f64, whole: f64| {
            if whole > 0.0 {
                100.0 * part / whole
            } else {
                0.0
            }
        };
        let worst_hour = t
            .hour_calls
            .iter()
            .zip(&t.hour_rejected)
            .enumerate()
            .filter(|(_, (c, _))| **c > 0)
            .map(|(hour, (&calls, &rejected))| WorstHour {
                hour,
                calls,
                rejected,
                pct: pct(f64::from(rejected), f64::from(calls)),
            })
            // Highest share; among equal shares the most rejections; then the earliest hour.
            .max_by(|a, b| {
                a.pct
                    .total_cmp(&b.pct)
                    .then(a.rejected.cmp(&b.rejected))
                    .then(b.hour.cmp(&a.hour))
            });
        let days = t
            .hour_calls
            .chunks(24)
            .zip(t.hour_rejected.chunks(24))
            .map(|(c, r)| {
                let (calls, rejected) = (c.iter().sum::<u32>(), r.iter().sum::<u32>());
                DayFigures {
                    calls,
                    rejected,
                    pct: pct(f64::from(rejected), f64::from(calls)),
                }
            })
            .collect();
        let span = horizon_ms.max(1) as f64;
        let removals = t.removals_idle + t.removals_expired;
        PolicyReport {
            policy: policy.to_string(),
            calls: t.calls,
            rejected: t.rejected,
            rejected_pct: pct(t.rejected as f64, t.calls as f64),
            worst_hour,
            worker_hours,
            overprovisioning: if oracle > 0.0 {
                worker_hours.total / oracle
            } else {
                0.0
            },
            below_floor_pct: pct(t.below_floor_ms as f64, span),
            launches: t.launches,
            launches_per_hour: t.launches as f64 / hours,
            removals,
            removals_per_hour: removals as f64 / hours,
            removals_idle: t.removals_idle,
            create_failures: t.create_failures,
            boot_aborts: t.boot_aborts,
            cut_calls: t.cut,
            spec_rg: SpecRg {
                under_accuracy: 100.0 * t.under_acc_ms / span,
                over_accuracy: 100.0 * t.over_acc_ms / span,
                under_timeshare: pct(t.under_ms as f64, span),
                over_timeshare: pct(t.over_ms as f64, span),
            },
            floor_breaks: t.floor_breaks,
            launches_past_max: t.past_max,
            hours_capped: t.capped_ms as f64 / 3_600_000.0,
            stopped_hours: wh(t.stopped_ms),
            resumes: t.resumes,
            pool_returns: t.pool_returns,
            power_failures: t.power_failures,
            power_refusals: t.power_refusals,
            overprovisioning_warm: None,
            mean_lead_s: None,
            days,
            samples: t.samples,
            rejected_at_ms: t.rejected_at,
        }
    }
}

/// `d3 14h` for hour index 74.
fn hour_label(h: usize) -> String {
    format!("d{} {:02}h", h / 24, h % 24)
}

impl Report {
    /// The JSON report (without plot samples).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human-readable table: one column per policy.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "trace: {} ({} calls over {:.1} h), seed {}, min {}",
            self.trace,
            self.calls,
            self.hours,
            self.seed,
            match &self.min_schedule {
                Some(s) => format!(
                    "by hour {}",
                    s.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
                ),
                None => self.min.to_string(),
            }
        );
        let _ = writeln!(
            out,
            "oracle (clairvoyant) worker-hours: {:.1}",
            self.oracle_worker_hours
        );
        if let Some(w) = self.oracle_warm_worker_hours {
            let _ = writeln!(
                out,
                "warm pool {} (ours only); warm-pool oracle worker-hours: {w:.1}",
                self.warm_pool
            );
        }
        out.push('\n');
        let mut rows: Vec<(String, Vec<String>)> = Vec::new();
        let mut row = |label: &str, f: &dyn Fn(&PolicyReport) -> String| {
            rows.push((label.to_string(), self.policies.iter().map(f).collect()));
        };
        row("calls", &|p| p.calls.to_string());
        row("rejected", &|p| {
            format!("{} ({:.2}%)", p.rejected, p.rejected_pct)
        });
        row("worst hour rejected", &|p| match p.worst_hour {
            Some(w) if w.rejected > 0 => {
                format!("{:.1}% {}", w.pct, hour_label(w.hour))
            }
            _ => "0%".into(),
        });
        row("worker-hours", &|p| format!("{:.1}", p.worker_hours.total));
        row("  busy", &|p| format!("{:.1}", p.worker_hours.busy));
        row("  idle", &|p| format!("{:.1}", p.worker_hours.idle));
        row("  booting", &|p| format!("{:.1}", p.worker_hours.booting));
        row("  draining", &|p| format!("{:.1}", p.worker_hours.draining));
        row("x oracle", &|p| format!("{:.2}", p.overprovisioning));
        if self.warm_pool > 0 {
            row("x warm-pool oracle", &|p| {
                p.overprovisioning_warm
                    .map_or("-".into(), |x| format!("{x:.2}"))
            });
            row("stopped-hours", &|p| format!("{:.1}", p.stopped_hours));
            row("starts from pool / h", &|p| {
                format!("{:.2}", p.resumes as f64 / self.hours.max(1e-9))
            });
            row("power calls failed (refused)", &|p| {
                format!("{} ({})", p.power_failures, p.power_refusals)
            });
        }
        row("time below floor", &|p| {
            format!("{:.2}%", p.below_floor_pct)
        });
        row("launches / h", &|p| format!("{:.2}", p.launches_per_hour));
        row("removals / h", &|p| format!("{:.2}", p.removals_per_hour));
        row("SPEC RG accuracy U", &|p| {
            format!("{:.2}%", p.spec_rg.under_accuracy)
        });
        row("SPEC RG accuracy O", &|p| {
            format!("{:.2}%", p.spec_rg.over_accuracy)
        });
        row("SPEC RG timeshare U", &|p| {
            format!("{:.2}%", p.spec_rg.under_timeshare)
        });
        row("SPEC RG timeshare O", &|p| {
            format!("{:.2}%", p.spec_rg.over_timeshare)
        });
        row("create failures", &|p| p.create_failures.to_string());
        row("calls cut", &|p| p.cut_calls.to_string());
        row("floor-breaking removals", &|p| p.floor_breaks.to_string());
        row("launches past max", &|p| p.launches_past_max.to_string());
        row("hours capped by max", &|p| format!("{:.1}", p.hours_capped));
        let label_w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0) + 2;
        let col_w = rows
            .iter()
            .flat_map(|r| r.1.iter().map(String::len))
            .chain(self.policies.iter().map(|p| p.policy.len()))
            .max()
            .unwrap_or(0)
            + 2;
        let _ = write!(out, "{:label_w$}", "");
        for p in &self.policies {
            let _ = write!(out, "{:>col_w$}", p.policy);
        }
        out.push('\n');
        for (label, cells) in rows {
            let _ = write!(out, "{label:label_w$}");
            for c in cells {
                let _ = write!(out, "{c:>col_w$}");
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::trace::Call;
    use super::*;

    fn trace(calls: &[(u64, u64)], horizon_ms: u64) -> Trace {
        Trace {
            calls: calls
                .iter()
                .map(|&(a, d)| Call {
                    arrival_ms: a,
                    duration_ms: d,
                })
                .collect(),
            horizon_ms,
        }
    }

    #[test]
    fn single_use_oracle_is_boot_plus_duration() {
        let t = trace(&[(0, HOUR_MS as u64), (10, 1_800_000)], 10 * HOUR_MS as u64);
        let boot = 360_000; // 0.1 h
        assert!((oracle_hours(&t, boot, false) - (1.1 + 0.6)).abs() < 1e-9);
    }

    #[test]
    fn reuse_oracle_bridges_short_gaps_only() {
        let h = HOUR_MS as u64;
        // One level: busy 0-1h, gap 0.05h (< boot 0.1h: bridged), busy, gap 1h (reboot).
        let t = trace(&[(0, h), (h + h / 20, h), (3 * h + h / 20, h)], 10 * h);
        let boot = h / 10;
        let expect = 0.1 + 1.0 + 0.05 + 1.0 + 0.1 + 1.0;
        assert!((oracle_hours(&t, boot, true) - expect).abs() < 1e-9);
        // Two overlapping calls need two levels, each booted once.
        let t = trace(&[(0, h), (0, h)], 10 * h);
        assert!((oracle_hours(&t, boot, true) - 2.2).abs() < 1e-9);
    }
}
