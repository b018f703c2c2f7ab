//! `simulate --target/--learn-days` (ours sizing its own spare floor) and the honest
//! neighbours, run as the real binary.

mod support;

use serde_json::Value;

fn json(args: &[&str]) -> Value {
    let out = support::succeed(support::bin().args(args).arg("--json"));
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

fn ours(r: &Value) -> &Value {
    &r["policies"][0]
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))
}

const DIURNAL: &[&str] = &[
    "simulate",
    "--profile",
    "diurnal",
    "--rate",
    "60/h",
    "--mean-duration",
    "20m",
    "--days",
    "1",
    "--policies",
    "ours",
];

fn with(extra: &[&'static str]) -> Vec<&'static str> {
    let mut v = DIURNAL.to_vec();
    v.extend_from_slice(extra);
    v
}

/// A fresh install (no history, default floor 2) in target mode keeps its first day's rejection
/// near the target, where the fixed default `min` 2 rejects a large share.
#[test]
fn target_mode_without_history_sizes_the_first_day() {
    let fixed = json(&with(&[]));
    let target = json(&with(&["--target", "0.5%"]));
    let (rf, rt) = (
        f(&ours(&fixed)["rejected_pct"]),
        f(&ours(&target)["rejected_pct"]),
    );
    assert!(rf > 20.0, "fixed min 2 rejects {rf} %");
    assert!(rt < 2.0, "target mode rejects {rt} %");
    assert_eq!(ours(&target)["floor_breaks"], 0);
    assert_eq!(ours(&target)["launches_past_max"], 0);
}

/// Learned days make it cheaper than a flat hand-sized min at a comparable rejection, and every
/// policy is measured on the same calls with or without --target.
#[test]
fn learned_days_beat_a_flat_min_on_the_same_calls() {
    let learned = json(&with(&["--target", "0.5%", "--learn-days", "7"]));
    let flat = json(&with(&["--min", "11", "--learn-days", "7"]));
    assert_eq!(learned["calls"], flat["calls"], "same trace");
    let (l, fl) = (ours(&learned), ours(&flat));
    assert!(f(&l["rejected_pct"]) < 1.0, "{l}");
    assert!(
        f(&l["worker_hours"]["total"]) < f(&fl["worker_hours"]["total"]),
        "learned {} vs flat {}",
        l["worker_hours"]["total"],
        fl["worker_hours"]["total"]
    );
    // Without --learn-days the measured trace is a different one (it starts on day 0).
    let fresh = json(&with(&["--min", "11"]));
    assert_ne!(fresh["calls"], flat["calls"]);
}

/// A floor (`--min`) above what the demand needs holds in target mode (never below the floor).
#[test]
fn the_floor_still_holds_in_target_mode() {
    let r = json(&with(&[
        "--target",
        "0.5%",
        "--min",
        "20",
        "--learn-days",
        "1",
    ]));
    let o = ours(&r);
    // Night-time demand needs far fewer than 20 spares: idle time comes from the floor.
    assert!(f(&o["worker_hours"]["idle"]) > 20.0 * 24.0 * 0.8, "{o}");
    assert_eq!(o["floor_breaks"], 0);
}

#[test]
fn bad_target_flags_are_refused() {
    for args in [
        with(&["--target", "0"]),
        with(&["--target", "150%"]),
        with(&["--target", "x"]),
        with(&["--target", "1%", "--learn-days", "-1"]),
        with(&["--as-quantity", "0"]),
    ] {
        let out = support::bin()
            .args(&args)
            .output()
            .expect("the binary runs");
        assert!(!out.status.success(), "{args:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--"), "{args:?}: {err}");
    }
}

/// The legacy gateway script sends `expired` only at its next 60 s poll; our agent checks
/// every 5 s: on the same calls, legacy's single-use gateways wait far longer as expired hosts.
/// jitsi-autoscaler's sidecar never asks: on a bare install (no health cron) its expired
/// gateways wait for a scale-down; on Jitsi's hosts the cron reboots them within the minute.
#[test]
fn neighbours_behave_as_their_scripts_do() {
    let args = [
        "simulate",
        "--profile",
        "flat",
        "--rate",
        "30/h",
        "--days",
        "0.5",
        "--min",
        "4",
        "--policies",
        "ours,legacy,autoscaler",
    ];
    let mut bare = args.to_vec();
    bare.extend(["--as-cron", "0"]);
    let r = json(&bare);
    let p = |i: usize| &r["policies"][i];
    let calls = f(&p(0)["calls"]) - f(&p(0)["rejected"]);
    // Per served call: hours spent expired or draining.
    let leaving = |i: usize| f(&p(i)["worker_hours"]["draining"]) * 3600.0 / calls;
    assert!(leaving(0) < 25.0, "ours {} s per call", leaving(0));
    // Legacy deletes at once when asked, but is asked 30 s late on average.
    assert!(
        leaving(1) > 25.0 && leaving(1) > leaving(0) + 5.0,
        "legacy {} s per call vs ours {}",
        leaving(1),
        leaving(0)
    );
    // The autoscaler never gets a request: every removal is its own pick.
    assert!(f(&p(2)["removals"]) < calls);
    assert!(
        leaving(2) > leaving(1),
        "autoscaler {} s per call",
        leaving(2)
    );
    // As deployed: expired until the cron's next minute, then rebooting (3 min, counted as
    // booting worker time).
    let r = json(&args);
    let served = f(&r["policies"][2]["calls"]) - f(&r["policies"][2]["rejected"]);
    let per_call = |k: &str| f(&r["policies"][2]["worker_hours"][k]) * 3600.0 / served;
    assert!(per_call("draining") <= 60.0, "{}", per_call("draining"));
    assert!(per_call("booting") >= 150.0, "{}", per_call("booting"));
}
