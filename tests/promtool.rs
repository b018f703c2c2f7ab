//! The metrics and the alert rules checked by Prometheus's own tool, `promtool` (Debian's
//! `prometheus` package): the rules load, a real scrape of `serve` passes `check metrics`
//! (names, types, units, help), and `tests/alerts_test.yml` makes every alert of
//! `examples/alerts.yml` fire and stay quiet. A missing or failing promtool fails these tests.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{FakeForeman, FakeJicofo, Scaler, count, fast_config};

const WAIT: Duration = Duration::from_secs(30);

/// Debian's `promtool` (or `PROMTOOL=/path`); a missing tool fails the test, never skips it.
fn promtool() -> PathBuf {
    support::required_tool(
        "PROMTOOL",
        &["promtool"],
        "these tests check the metrics and alert rules with it. Install Debian's prometheus \
         package (./scripts/test does: apt-get install prometheus)",
    )
}

/// Runs promtool with `args` in the repository root, `stdin` fed to it.
fn promtool_run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(promtool())
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("feed promtool");
    child.wait_with_output().expect("promtool output")
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// Asserts promtool exited 0, with everything it said on failure.
fn assert_ok(what: &str, o: &Output) {
    assert!(
        o.status.success(),
        "{what}: promtool exited {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
}

#[test]
fn the_alert_rules_load() {
    let o = promtool_run(&["check", "rules", "examples/alerts.yml"], "");
    assert_ok("check rules", &o);
    assert!(text(&o.stdout).contains("SUCCESS"), "{}", text(&o.stdout));
}

/// The alert names of examples/alerts.yml.
fn alert_names() -> Vec<String> {
    let rules = std::fs::read_to_string(root().join("examples/alerts.yml")).expect("alerts.yml");
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect()
}

/// Every alert has a case where it fires and one where it stays quiet, and they pass.
#[test]
fn every_alert_fires_and_stays_quiet_in_promtool_test_rules() {
    let tests =
        std::fs::read_to_string(root().join("tests/alerts_test.yml")).expect("alerts_test.yml");
    let names = alert_names();
    assert!(names.len() >= 14, "{names:?}");
    // One case is the alertname line and its exp_alerts line (an empty list: quiet).
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    for name in &names {
        let cases: Vec<&str> = lines
            .windows(2)
            .filter(|w| w[0] == format!("alertname: {name}"))
            .map(|w| w[1])
            .collect();
        assert!(
            cases.contains(&"exp_alerts: []"),
            "tests/alerts_test.yml has no case where {name} stays quiet"
        );
        assert!(
            cases.contains(&"exp_alerts:"),
            "tests/alerts_test.yml has no case where {name} fires"
        );
    }
    let o = promtool_run(&["test", "rules", "tests/alerts_test.yml"], "");
    assert_ok("test rules", &o);
}

/// A real scrape of `serve` in target mode, after launches and a refused request, in the 0.0.4
/// text format that `promtool check metrics` reads: exit 0, and no lint problem printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_of_serve_passes_promtool_check_metrics() {
    let foreman = FakeForeman::start().await;
    let jicofo = FakeJicofo::start(0, 0).await;
    jicofo.state.lock().expect("lock").follow = Some(foreman.clone());
    let cfg =
        fast_config(&jicofo.url, &[&foreman.url]).replace("mode = \"fixed\"", "mode = \"target\"");
    let s = Scaler::start(&cfg).await;
    s.eventually("the floor up", WAIT, |st| count(st, "ready") >= 2)
        .await;

    let scrape = |accept: &'static str| {
        let s = &s;
        async move {
            let r = s
                .http
                .get(format!("{}/metrics", s.url))
                .header("accept", accept)
                .send()
                .await
                .expect("scrape");
            assert_eq!(r.status().as_u16(), 200);
            let ct = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            (ct, r.text().await.unwrap_or_default())
        }
    };
    // What Prometheus 2.x sends: OpenMetrics first.
    let (ct, om) = scrape("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1").await;
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert!(om.ends_with("# EOF\n"));
    support::openmetrics::parse(&om).expect("valid OpenMetrics");
    // What an older scraper (or curl -H 'Accept: text/plain') gets: the 0.0.4 text format.
    let (ct, plain) = scrape("text/plain;version=0.0.4;q=0.9,*/*;q=0.1").await;
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    assert!(!plain.contains("# EOF"), "{plain}");
    for family in [
        "jitsi_scaler_capacity_effective_min",
        "jitsi_scaler_capacity_learned_min",
        "jitsi_scaler_warm_pool_size",
        "jitsi_scaler_decisions_total",
    ] {
        assert!(
            plain.contains(&format!("# TYPE {family} ")),
            "{family}:\n{plain}"
        );
    }
    let o = promtool_run(&["check", "metrics"], &plain);
    assert_ok(&format!("check metrics on\n{plain}"), &o);
    assert_eq!(text(&o.stdout).trim(), "", "lint problems");
}
