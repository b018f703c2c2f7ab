//! `jitsi-scaler simulate` and `plan`, run as the real binary.

mod support;

use serde_json::Value;
use support::{bin, temp_file};

/// Runs the binary, asserts success, returns stdout.
fn run(args: &[&str]) -> String {
    let out = bin().args(args).output().expect("the binary runs");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// [`run`] of a command line split at spaces.
fn run_line(line: &str) -> String {
    run(&line.split(' ').collect::<Vec<_>>())
}

/// [`json`] of a command line split at spaces.
fn json_line(line: &str) -> Value {
    json(&line.split(' ').collect::<Vec<_>>())
}

fn json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    serde_json::from_str(&run(&a)).expect("valid JSON")
}

fn policy<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["policies"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["policy"] == name))
        .unwrap_or_else(|| panic!("policy {name} in the report"))
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{v} is not an integer"))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))
}

/// A trace file in its own temp dir: (dir, path).
fn trace_file(name: &str, csv: &str) -> (tempfile::TempDir, String) {
    let (dir, path) = temp_file(name, csv);
    (dir, path.to_string_lossy().into_owned())
}

#[test]
fn same_seed_gives_the_same_report_and_trace() {
    let dir = tempfile::tempdir().expect("temp dir");
    let args = |seed: &str, file: &str| {
        let t = dir.path().join(file).to_string_lossy().into_owned();
        run_line(&format!(
            "simulate --days 1 --rate 40/h --seed {seed} --boot-cv 0.5 --lifecycle-fail 0.1 --spikes 3 --json --write-trace {t}"
        ))
    };
    let a = args("7", "a.csv");
    let b = args("7", "b.csv");
    let c = args("8", "c.csv");
    assert_eq!(a, b, "same seed, same report");
    assert_ne!(a, c, "another seed, another report");
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).expect("trace written");
    assert_eq!(read("a.csv"), read("b.csv"));
    // Replaying the written trace gives the same report as generating it.
    let trace = dir.path().join("a.csv").to_string_lossy().into_owned();
    let replay = json_line(&format!(
        "simulate --trace {trace} --horizon 24h --seed 7 --boot-cv 0.5 --lifecycle-fail 0.1"
    ));
    let generated: Value = serde_json::from_str(&a).expect("JSON");
    assert_eq!(replay["policies"], generated["policies"]);
}

/// Three calls, min 1, boots of exactly 60 s (`--boot-cv 0`), Jicofo without delay, worked
/// out by hand. Gateway `g` (0-based, in creation order) polls on its own phase of
/// `g * 7919 ms` modulo its script's poll period.
///
/// Ours (ticks every 15 s; our agent checks Jibri every 5 s; drain confirmation on, as `serve`):
/// - 0: `init-0` idle. 100: call 1 takes it. 105: tick sees 0 available, launches vsg-0 (up 165).
/// - 110: call 2 finds nothing idle: rejected.
/// - 160: call 1 ends; the agent asks `expired` at its next check (165), accepted; Jibri exits
///   at 175 and confirms `drained`; init-0 is deleted at the 180 tick.
/// - vsg-0's idle requests from 765 on: 1 available, keep.
/// - 1000: call 3 takes vsg-0. 1005: tick launches vsg-1 (up 1065).
/// - 1100: call 3 ends; asked at 1102.081 (phase 2.919 s), exits 1112.081, deleted at 1125.
///
/// Worker time: init-0 0-180, vsg-0 105-1125, vsg-1 1005-1800 = 1995 s.
///
/// Legacy (scale-up runs 60 s apart, deletes at once; its script polls every 60 s): 120:
/// launches legacy-0 (up 180); 180: init-0's `expired` at the script's poll, deleted; 1000:
/// call 3 takes legacy-0; 1020: launches legacy-1; 1132.081: legacy-0's `expired` (phase
/// 7.919 s), deleted. Worker time 180 + 1012.081 + 780 = 1972.081 s.
///
/// jitsi-autoscaler as deployed (jobs every 30 s, quantity 2, its sidecar never asks; the
/// health cron reboots an EXPIRED host on the minute, back 180 s later): the 60 s periods
/// average 1, 0.5 (the call at 100), 0: at 180 two periods below the threshold 1 with the
/// count (1: init-0, rebooting from 180, still tracked) at the desired count: desired 3,
/// launches as-0 and as-1 (up 240). init-0 is back idle at 360 and takes call 3 (rebooted
/// again from 1140). No scale-down ever fires (the available count never stays above 4).
/// Worker time 1800 + 2 x 1620 = 5040 s.
#[test]
fn a_tiny_trace_gives_the_hand_computed_counts() {
    let (_dir, trace) = trace_file(
        "tiny.csv",
        "arrival_s,duration_s\n100,60\n110,60\n1000,100\n",
    );
    let r = json_line(&format!(
        "simulate --trace {trace} --horizon 30m --min 1 --boot 60s --stats-delay 0 --boot-cv 0"
    ));
    assert_eq!(u(&r["calls"]), 3);
    // Oracle: three single-use gateways, boot + duration each: 120 + 120 + 160 s.
    assert!((f(&r["oracle_worker_hours"]) * 3600.0 - 400.0).abs() < 1e-6);
    // (policy, launches, idle removals, expired removals, worker seconds, busy seconds)
    for (name, launches, idle, expired, worker_s) in [
        ("ours", 2, 0, 2, 1995.0),
        ("legacy", 2, 0, 2, 1972.081),
        ("autoscaler", 2, 0, 0, 5040.0),
    ] {
        let p = policy(&r, name);
        assert_eq!(u(&p["calls"]), 3, "{name}");
        assert_eq!(u(&p["rejected"]), 1, "{name}");
        assert_eq!(u(&p["launches"]), launches, "{name}");
        assert_eq!(u(&p["removals_idle"]), idle, "{name}");
        assert_eq!(u(&p["removals"]), idle + expired, "{name}");
        let wh = &p["worker_hours"];
        assert!(
            (f(&wh["total"]) * 3600.0 - worker_s).abs() < 1e-3,
            "{name}: {wh}"
        );
        assert!(
            (f(&wh["busy"]) * 3600.0 - 160.0).abs() < 1e-6,
            "{name}: {wh}"
        );
        assert_eq!(u(&p["floor_breaks"]), 0, "{name}");
        assert_eq!(u(&p["launches_past_max"]), 0, "{name}");
        assert_eq!(u(&p["cut_calls"]), 0, "{name}");
        let worst = &p["worst_hour"];
        assert_eq!((u(&worst["hour"]), u(&worst["rejected"])), (0, 1), "{name}");
    }
    assert_eq!(
        f(&policy(&r, "ours")["launches_per_hour"]),
        4.0,
        "2 launches in half an hour"
    );
}

/// Flaw 1: booting gateways are not counted, so every legacy poll during a long boot launches
/// the same deficit again. Ours counts launches in flight and launches the deficit once.
#[test]
fn legacy_overshoots_while_gateways_boot_and_ours_does_not() {
    // At 10 min, ten two-hour calls arrive at once: the two idle gateways take two.
    let mut csv = String::from("arrival_s,duration_s\n");
    for _ in 0..10 {
        csv.push_str("600,7200\n");
    }
    let (_dir, trace) = trace_file("step.csv", &csv);
    let r = json_line(&format!(
        "simulate --trace {trace} --horizon 1h --boot 10m --reuse"
    ));
    let ours = policy(&r, "ours");
    let legacy = policy(&r, "legacy");
    // The deficit is min = 2; ours launches exactly that.
    assert_eq!(u(&ours["launches"]), 2);
    // Legacy launches 2 per 60 s poll until the first two are up: the polls at 660 s to
    // 1260 s (the reading lags 5 s, so the 1260 s poll does not see them yet).
    assert_eq!(u(&legacy["launches"]), 22);
    assert!(f(&legacy["worker_hours"]["total"]) > 3.0 * f(&ours["worker_hours"]["idle"]));
}

/// Flaws 2-4 under stress: bursts against a low `max`, stale and delayed stats, a Jicofo
/// outage, a lifecycle outage, many concurrent idle removals after the peaks. Ours never
/// breaks the floor nor passes `max`; legacy does both.
#[test]
fn ours_never_breaks_the_floor_nor_passes_max_under_stress() {
    let r = json_line(
        "simulate --seed 1 --days 1 --rate 120/h --mean-duration 5m --burst 30@10h --step 2@14h --spikes 10 --boot 3m --lifecycle-down 12h+10m --jicofo-down 16h+5m --max 25 --min 5 --bulk-max 4 --reuse --policies ours,legacy",
    );
    let ours = policy(&r, "ours");
    let legacy = policy(&r, "legacy");
    assert_eq!(u(&ours["floor_breaks"]), 0);
    assert_eq!(u(&ours["launches_past_max"]), 0);
    // Fewer floor breaks since its script waits its idle time after `keep`, but still some.
    assert!(u(&legacy["floor_breaks"]) > 0, "{legacy}");
    assert!(u(&legacy["launches_past_max"]) > 10, "{legacy}");
}

/// The same counters with single-use gateways (a launch and an expiry per call), random
/// lifecycle failures, lognormal boots and readings that lag more than a tick. This fails
/// today: the ledger attributes Jicofo's count changes by number only, so a launch that shows
/// up in the same tick as an expired gateway leaves is never matched; it stays "in flight"
/// until the boot timeout deletes the running gateway (cutting its call, or removing a spare
/// at the floor), and `max` is then checked against a wrong in-flight count. See
/// docs/simulation.md, "Known policy issues".
#[test]
fn ours_never_breaks_the_floor_nor_passes_max_with_single_use_churn() {
    for seed in ["1", "2", "3"] {
        let r = json_line(&format!(
            "simulate --seed {seed} --days 2 --rate 120/h --mean-duration 5m --burst 30@10h --burst 25@30h --step 2@20h --spikes 10 --boot 2m --boot-cv 0.8 --lifecycle-fail 0.2 --lifecycle-down 12h+10m --jicofo-down 34h+5m --stats-delay 20s --max 25 --min 5 --bulk-max 4 --policies ours"
        ));
        let ours = policy(&r, "ours");
        assert_eq!(u(&ours["floor_breaks"]), 0, "seed {seed}");
        assert_eq!(u(&ours["launches_past_max"]), 0, "seed {seed}");
        assert_eq!(u(&ours["cut_calls"]), 0, "seed {seed}");
    }
}

#[test]
fn plan_matches_published_erlang_b_values_and_inverts_it() {
    // lambda = 240/h = 1/15 s, L = 60 s: A = 4 erlang. B(10, 4) = 0.00531.
    let p = json_line("plan --rate 240/h --lead 60s --target 0.0054");
    assert!((f(&p["offered_load"]) - 4.0).abs() < 1e-9);
    assert_eq!(u(&p["spare"]), 10);
    assert!((f(&p["rejection"]) - 0.005_308).abs() < 1e-5);
    // One notch stricter needs one more spare.
    let p = json_line("plan --rate 240/h --lead 1m --target 0.53%");
    assert_eq!(u(&p["spare"]), 11);
    // A = 3: B(4, 3) = 0.2061 > 0.2 >= B(5, 3) = 0.1101.
    let p = json_line("plan --rate 3/min --lead 1m --target 0.2");
    assert_eq!(u(&p["spare"]), 5);
    assert!((f(&p["rejection"]) - 0.1101).abs() < 1e-4, "{p}");
    let rows = p["table"].as_array().expect("table");
    let b4 = rows
        .iter()
        .find(|r| r["spare"] == 4)
        .map(|r| f(&r["rejection"]))
        .expect("row for 4");
    assert!((b4 - 0.2061).abs() < 1e-4, "{b4}");
    // The text output names the answer.
    let text = run_line("plan --rate 30/h --mean-duration 10m --lead 2m");
    assert!(text.contains("min = 5"), "{text}");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let (dir, bad_csv) = trace_file("bad.csv", "arrival_s,duration_s\n1,2\nx,3\n");
    let missing = dir
        .path()
        .join("missing.csv")
        .to_string_lossy()
        .into_owned();
    for (args, needle) in [
        (vec!["simulate", "--rate", "fast"], "--rate"),
        (vec!["simulate", "--step", "2"], "FACTOR@TIME"),
        (vec!["simulate", "--min", "0"], "--min"),
        (vec!["simulate", "--lifecycle-fail", "2"], "probability"),
        (vec!["simulate", "--trace", &bad_csv], "bad.csv:3"),
        (vec!["simulate", "--trace", &missing], "missing.csv"),
        (
            vec!["simulate", "--trace", &bad_csv, "--rate", "3/h"],
            "cannot be used",
        ),
        (vec!["plan", "--rate", "30/h", "--target", "2"], "--target"),
        (vec!["plan", "--rate", "0/h"], "--rate"),
    ] {
        let out = bin()
            .args(&args)
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("runs");
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn the_plot_is_an_svg_with_a_panel_per_policy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let svg = dir.path().join("p.svg");
    let svg_s = svg.to_string_lossy().into_owned();
    let table = run_line(&format!("simulate --days 0.5 --plot {svg_s}"));
    assert!(table.contains("floor-breaking removals"), "{table}");
    let text = std::fs::read_to_string(&svg).expect("plot written");
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    for name in [
        "ours",
        "legacy",
        "autoscaler",
        "demand (calls + min)",
        "booting",
    ] {
        assert!(text.contains(name), "{name}");
    }
    assert_eq!(text.matches("<polyline").count(), 3 * 4);
}

/// An operator's hourly `min` (as a cron job would set it through the API): when `min` rises
/// on the hour, ours launches the difference once.
#[test]
fn a_min_schedule_changes_the_floor_on_the_hour() {
    let (_dir, trace) = trace_file("none.csv", "arrival_s,duration_s\n");
    let mut schedule = vec!["1"; 24];
    schedule[1] = "4";
    let schedule = schedule.join(",");
    let r = json_line(&format!(
        "simulate --trace {trace} --horizon 115m --min-schedule {schedule} --boot-cv 0"
    ));
    assert_eq!(r["min_schedule"][1], 4);
    let ours = policy(&r, "ours");
    assert_eq!(u(&ours["launches"]), 3);
    assert_eq!(u(&ours["removals"]), 0);
    // Below the floor only while the three boot: the 3600 s tick launches, up at 3690 s.
    let below_s = f(&ours["below_floor_pct"]) / 100.0 * 6900.0;
    assert!((89.9..90.1).contains(&below_s), "{below_s}");
    // Legacy launches again at the next poll (flaw 1), then removes the surplus all at once
    // (flaw 3) and has to launch again.
    assert!(u(&policy(&r, "legacy")["launches"]) > 6);
}

/// A scaler restart at the diurnal peak (stored ledger and profile kept, short window and
/// measured boots lost) costs almost nothing: its first readings are a baseline, not a burst of
/// arrivals, so nothing is launched for them; a fresh install restarted at the peak rejects no
/// more than without the restart, and spends at most 2 % more worker-hours.
#[test]
fn a_restart_at_the_peak_launches_nothing_for_the_calls_already_running() {
    let base = [
        "simulate",
        "--profile",
        "diurnal",
        "--rate",
        "60/h",
        "--days",
        "1",
        "--mean-duration",
        "20m",
        "--cv",
        "1",
        "--policies",
        "ours",
        "--target",
        "0.5%",
        "--seed",
        "1",
    ];
    let plain = json(&base);
    let mut args = base.to_vec();
    args.extend(["--restart-at", "10h", "--restart-at", "14h"]);
    let restarted = json(&args);
    let (p, r) = (policy(&plain, "ours"), policy(&restarted, "ours"));
    assert!(u(&r["rejected"]) <= u(&p["rejected"]) + 2, "{r}\nvs\n{p}");
    let (wp, wr) = (
        f(&p["worker_hours"]["total"]),
        f(&r["worker_hours"]["total"]),
    );
    assert!(
        wr <= wp * 1.02,
        "{wr} worker-hours with the restarts, {wp} without"
    );
    assert_eq!(u(&r["floor_breaks"]), 0);
    assert_eq!(u(&r["launches_past_max"]), 0);
}

/// A week that moved 3 h later right after the learned days: from the third day on, ours in
/// target mode is back at the target (it rotates its learned week within a day; relearning
/// each hour-of-week bin once a week kept it near 0.6 % for weeks). `days[]` adds up to the
/// totals.
#[test]
fn a_shifted_week_is_back_at_the_target_from_the_third_day() {
    let (mut rejected, mut calls) = (0, 0);
    for seed in ["1", "2"] {
        let r = json_line(&format!(
            "simulate --profile diurnal --rate 60/h --day-factors 1,1,1,1,1,0.3,0.3 --max 200 \
             --mean-duration 20m --cv 1 --policies ours --target 0.5% --learn-days 7 --days 4 \
             --shift 3h@0 --seed {seed}"
        ));
        let p = policy(&r, "ours");
        let days = p["days"].as_array().expect("days[]");
        assert_eq!(days.len(), 4);
        assert_eq!(
            days.iter().map(|d| u(&d["calls"])).sum::<u64>(),
            u(&p["calls"])
        );
        assert_eq!(
            days.iter().map(|d| u(&d["rejected"])).sum::<u64>(),
            u(&p["rejected"])
        );
        rejected += days[2..].iter().map(|d| u(&d["rejected"])).sum::<u64>();
        calls += days[2..].iter().map(|d| u(&d["calls"])).sum::<u64>();
    }
    let pct = 100.0 * rejected as f64 / calls as f64;
    assert!(pct <= 0.5, "days 2-3 after the shift: {pct:.2} % rejected");
}
