//! The real `jitsi-scaler demo` scraped while it runs: every metric the Grafana dashboard and the
//! alert rules query is served (target mode, the default, included), the 0.0.4 scrape passes
//! `promtool check metrics`, and stderr carries the decision log by default.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Every query of the dashboard and the alert rules.
fn queries() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dash =
        std::fs::read_to_string(root.join("examples/grafana-dashboard.json")).expect("dashboard");
    let mut out: Vec<String> = dash
        .lines()
        .filter_map(|l| l.trim().strip_prefix("\"expr\": \""))
        .map(|e| {
            e.trim_end_matches(',')
                .trim_end_matches('"')
                .replace("\\\"", "\"")
        })
        .collect();
    let alerts = std::fs::read_to_string(root.join("examples/alerts.yml")).expect("alerts");
    out.extend(
        alerts
            .lines()
            .filter_map(|l| l.trim().strip_prefix("expr:"))
            .map(str::to_string),
    );
    out
}

#[test]
fn the_demo_serves_every_metric_the_dashboard_and_alerts_query() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jitsi-scaler"))
        .arg("demo")
        .args([
            "--boot",
            "2s",
            "--idle-time",
            "5s",
            "--rate",
            "60/min",
            "--mean-duration",
            "4s",
            "--tick",
            "1s",
            "--min",
            "2",
            "--duration",
            "20s",
        ])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start jitsi-scaler demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut page = None;
    let mut calls = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && !(page.is_some() && calls) {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) else {
            continue;
        };
        if let Some(url) = line.trim().strip_prefix("status page: ") {
            page = url.split_whitespace().next().map(str::to_string);
        }
        calls |= line.starts_with('[') && line.contains("calls") && !line.contains("calls 0");
    }
    let page = page.expect("the status page URL on stdout");
    let base = page.trim_end_matches("/scaler/ui").to_string();
    let (om, plain) = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let http = reqwest::Client::new();
            let get = |accept: &'static str| {
                let req = http.get(format!("{base}/metrics")).header("accept", accept);
                async move {
                    req.send()
                        .await
                        .expect("scrape")
                        .text()
                        .await
                        .expect("body")
                }
            };
            (
                get("application/openmetrics-text;version=1.0.0").await,
                get("text/plain;version=0.0.4").await,
            )
        });
    let _ = child.wait();
    let log = err.join().unwrap_or_default();

    let m = support::openmetrics::parse(&om).expect("OpenMetrics");
    let served: BTreeSet<&str> = m
        .families
        .iter()
        .flat_map(|f| f.samples.iter().map(|s| s.name.as_str()))
        .collect();
    let qs = queries();
    assert!(qs.len() >= 40, "{qs:?}");
    for q in &qs {
        for name in support::metric_names(q) {
            assert!(
                served.contains(name.as_str()),
                "{name} (in {q}) is not served by the demo:\n{om}"
            );
        }
    }
    // The ones target mode needs have values, not only names.
    for name in [
        "jitsi_scaler_capacity_effective_min",
        "jitsi_scaler_capacity_lead_seconds",
        "jitsi_scaler_capacity_wanted_min",
    ] {
        assert!(m.value(name, &[]).is_some(), "{name}:\n{om}");
    }

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; ./scripts/test installs it)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(plain.as_bytes())
        .expect("feed promtool");
    let o = promtool.wait_with_output().expect("promtool");
    assert!(
        o.status.success() && o.stdout.is_empty(),
        "promtool check metrics: {}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );

    // The decision log, on stderr by default: launches with their numbers.
    let launches: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("kind=\"launch\"") && l.contains("outcome=\"launch\""))
        .collect();
    assert!(!launches.is_empty(), "no launch decision on stderr:\n{log}");
}
