//! The status page (`/scaler/ui`) in real headless Chromium against the real `serve` fed by
//! fake neighbours, the history endpoint's auth and bound, and the Grafana dashboard and alert
//! rules checked against a real `/metrics` scrape.

mod support;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{FakeForeman, FakeJicofo, Scaler, count, fast_config, rsa_key_pair, token};

const WAIT: Duration = Duration::from_secs(20);
/// Longest a Chromium run may take before the test gives up on it.
const BROWSER_LIMIT: Duration = Duration::from_secs(120);

/// Debian's `chromium` (or `CHROMIUM=/path`); a missing browser fails the test, never skips it.
fn chromium() -> PathBuf {
    support::required_tool(
        "CHROMIUM",
        &["chromium", "chromium-browser"],
        "these tests drive the status page in a real browser. Install Debian's chromium \
         package (./scripts/test does: apt-get install chromium)",
    )
}

/// What one headless Chromium run printed: stdout (the DOM with `--dump-dom`) and its log.
struct Run {
    stdout: String,
    log: String,
}

/// Runs headless Chromium on `url` with `args`, in a fresh profile, with its log on stderr.
async fn browse(url: &str, args: &[&str]) -> Run {
    let url = url.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new(chromium())
            .args([
                "--headless",
                // Chromium refuses to run as root with its sandbox; the page is ours.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(&args)
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium().display()));
        let mut out = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + BROWSER_LIMIT;
        let status = loop {
            if let Ok(Some(s)) = child.try_wait() {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let run = Run {
            stdout: out.join().unwrap_or_default(),
            log: err.join().unwrap_or_default(),
        };
        assert!(
            status.is_some_and(|s| s.success()),
            "chromium failed ({status:?}):\n{}",
            run.log
        );
        run
    })
    .await
    .expect("browser task")
}

/// The page's DOM after its script ran for `budget_ms` of virtual time (two refreshes or more).
async fn dom(url: &str, budget_ms: u32) -> Run {
    let budget = format!("--virtual-time-budget={budget_ms}");
    browse(url, &[&budget, "--dump-dom"]).await
}

/// Takes a screenshot of `url` into `target/<name>` for a human to look at (after `budget_ms`
/// of the page's time, in a window `size` wide,high); fails unless it is a PNG. Returns the run.
async fn screenshot(url: &str, name: &str, budget_ms: u32, size: &str) -> Run {
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join(name);
    let _ = std::fs::remove_file(&shot);
    let run = browse(
        url,
        &[
            &format!("--virtual-time-budget={budget_ms}"),
            &format!("--window-size={size}"),
            &format!("--screenshot={}", shot.display()),
        ],
    )
    .await;
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot: {e}\n{}", run.log));
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    run
}

/// The opening tag of the first element whose tag contains `marker`.
fn tag<'a>(html: &'a str, marker: &str) -> &'a str {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in the DOM:\n{html}"));
    let start = html[..at].rfind('<').expect("tag start");
    let end = at + html[at..].find('>').expect("tag end");
    &html[start..=end]
}

/// An attribute's value in an opening tag.
fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let from = tag.find(&key)? + key.len();
    let len = tag[from..].find('"')?;
    Some(tag[from..from + len].replace("&amp;", "&"))
}

/// Every value of `name="..."` in the DOM, in order.
fn all_attrs(html: &str, name: &str) -> Vec<String> {
    let key = format!(" {name}=\"");
    html.match_indices(&key)
        .filter_map(|(at, _)| {
            let from = at + key.len();
            html[from..]
                .find('"')
                .map(|n| html[from..from + n].to_string())
        })
        .collect()
}

/// Console lines of a Chromium log (the page writes none: any is an error or a CSP refusal).
fn console_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Refused to"))
        .collect()
}

/// Hosts of the status document in states the page lists by default (not gone or failed).
fn live_hosts(st: &Value) -> BTreeSet<(String, String)> {
    let mut hosts = BTreeSet::new();
    if let Some(by_state) = st["ledger"]["hosts"].as_object() {
        for (state, list) in by_state {
            if state == "gone" || state == "launch_failed" {
                continue;
            }
            for h in list.as_array().into_iter().flatten() {
                hosts.insert((h["host"].as_str().unwrap_or("").to_string(), state.clone()));
            }
        }
    }
    hosts
}

/// Every ledger entry the scaler launched (any state).
fn launched_hosts(st: &Value) -> usize {
    st["ledger"]["hosts"]
        .as_object()
        .map(|m| {
            m.values()
                .flat_map(|l| l.as_array().into_iter().flatten())
                .filter(|h| h["origin"] != "adopted")
                .count()
        })
        .unwrap_or(0)
}

/// `serve` with a fake Foreman and a fake Jicofo that counts Foreman's hosts as gateways.
async fn pool(extra: &str) -> (Scaler, FakeJicofo, FakeForeman) {
    let foreman = FakeForeman::start().await;
    let jicofo = FakeJicofo::start(0, 0).await;
    jicofo.state.lock().expect("lock").follow = Some(foreman.clone());
    let cfg = format!("{}{extra}", fast_config(&jicofo.url, &[&foreman.url]));
    let s = Scaler::start(&cfg).await;
    (s, jicofo, foreman)
}

/// Takes the pool through launches, a busy gateway and an expired one replaced, then waits
/// until nothing changes; returns the settled status.
async fn busy_day(s: &Scaler, jicofo: &FakeJicofo, foreman: &FakeForeman) -> Value {
    // min 2 (the default): two launches, both idle.
    s.eventually("the floor up", WAIT, |st| count(st, "ready") == 2)
        .await;
    // A call takes one: a third launch keeps two available.
    jicofo.state.lock().expect("lock").busy = 1;
    let st = s
        .eventually("a third gateway", WAIT, |st| count(st, "ready") == 3)
        .await;
    // An expired gateway is removed at once and replaced.
    let host = st["ledger"]["hosts"]["ready"][0]["host"]
        .as_str()
        .expect("a ready host")
        .to_string();
    let (code, body) = s
        .post(
            "/scaler/remove",
            &format!(r#"{{"host":"{host}","reason":"expired"}}"#),
        )
        .await;
    assert_eq!((code, body.as_str()), (200, "accepted"));
    let wanted = |st: &Value| {
        count(st, "ready") == 3
            && count(st, "gone") == 1
            && st["ledger"]["in_flight"] == 0
            && count(st, "deleting") == 0
            && st["jicofo"]["merged"]["total"] == 3
    };
    s.eventually("the replacement up", WAIT, wanted).await;
    assert_eq!(foreman.deletes(), [host]);
    // Settled: two readings a second apart agree, and a sample was taken after the last event.
    let mut last = s.status().await;
    loop {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let now = s.status().await;
        if wanted(&now)
            && now["ledger"]["counts"] == last["ledger"]["counts"]
            && now["jicofo"]["merged"]["total"] == last["jicofo"]["merged"]["total"]
            && now["jicofo"]["merged"]["available"] == last["jicofo"]["merged"]["available"]
        {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_what_serve_reports_in_a_real_browser() {
    let (s, jicofo, foreman) = pool("").await;
    let st = busy_day(&s, &jicofo, &foreman).await;
    let url = format!("{}/scaler/ui", s.url);

    let run = dom(&url, 6000).await;
    let html = &run.stdout;
    assert_eq!(console_lines(&run.log), Vec::<&str>::new(), "{}", run.log);
    let body = tag(html, "<body");
    assert_eq!(attr(body, "data-state").as_deref(), Some("ok"), "{html}");
    assert_eq!(
        attr(body, "data-error-count").as_deref(),
        Some("0"),
        "{html}"
    );
    let refreshes: u32 = attr(body, "data-refreshes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(refreshes >= 2, "the page refreshes by itself: {body}");
    // No token field without auth.
    assert!(attr(tag(html, "id=\"tokenbar\""), "hidden").is_some());

    // The chart's latest sample is the pool serve reports.
    let merged = &st["jicofo"]["merged"];
    let chart = tag(html, "id=\"chart\"");
    let num = |name: &str| -> u64 {
        attr(chart, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("chart has no {name}: {chart}"))
    };
    assert!(num("data-samples") >= 10, "{chart}");
    assert_eq!(Some(num("data-last-total")), merged["total"].as_u64());
    assert_eq!(
        Some(num("data-last-available")),
        merged["available"].as_u64()
    );
    assert_eq!(num("data-last-busy"), 1);
    assert_eq!(
        Some(num("data-last-in-flight")),
        st["ledger"]["in_flight"].as_u64()
    );
    assert_eq!(Some(num("data-min")), st["settings"]["min"].as_u64());
    // Every launch and the delete are marked on it.
    assert_eq!(
        num("data-launched") as usize,
        launched_hosts(&st),
        "{chart}"
    );
    assert_eq!(num("data-removed") as usize, foreman.deletes().len());
    assert!(html.contains("class=\"m-launch\""), "no launch marks");
    assert!(html.contains("class=\"m-remove\""), "no delete marks");
    assert!(html.contains("class=\"a-avail\""), "no available area");

    // The ledger table lists exactly the hosts serve reports, each in its state.
    let hosts = all_attrs(html, "data-host");
    let states = all_attrs(html, "data-state")
        .into_iter()
        .filter(|s| s != "ok")
        .collect::<Vec<_>>();
    assert_eq!(hosts.len(), states.len(), "{html}");
    let shown: BTreeSet<(String, String)> = hosts.into_iter().zip(states).collect();
    assert_eq!(shown, live_hosts(&st));
    assert_eq!(shown.len(), 3);
    // Shards, lifecycle nodes, decisions.
    assert_eq!(all_attrs(html, "data-shard"), ["shard1"]);
    assert_eq!(
        all_attrs(html, "data-node"),
        std::slice::from_ref(&foreman.url)
    );
    let kinds: BTreeSet<String> = all_attrs(html, "data-kind").into_iter().collect();
    for k in ["launch", "create", "seen", "remove", "delete"] {
        assert!(kinds.contains(k), "no {k} decision in {kinds:?}");
    }
    // The demo's load counters never appear in real serve.
    assert!(attr(tag(html, "id=\"loadsec\""), "hidden").is_some());
    // Never a secret: the Foreman token of the config is nowhere on the page.
    assert!(!html.contains("test-token"));

    // A screenshot for a human.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    let shot = target.join("ui-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let run = browse(
        &url,
        &[
            "--virtual-time-budget=4000",
            "--window-size=1400,1800",
            &format!("--screenshot={}", shot.display()),
        ],
    )
    .await;
    assert_eq!(console_lines(&run.log), Vec::<&str>::new(), "{}", run.log);
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot: {e}\n{}", run.log));
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    assert!(
        png.len() > 20_000,
        "a blank screenshot? {} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
}

/// With a warm pool the page shows the pool's card (stopped hosts of its size, the next
/// launch's path) and lists the stopped hosts in the ledger table in their own state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_warm_pool() {
    let foreman = FakeForeman::start().await;
    foreman.set_delays(Duration::from_secs(60), Duration::from_millis(300));
    for h in ["vsg-p1", "vsg-p2", "vsg-p3", "vsg-p4"] {
        foreman.add_stopped(h);
    }
    let jicofo = FakeJicofo::start(0, 0).await;
    jicofo.state.lock().expect("lock").follow = Some(foreman.clone());
    let cfg = format!(
        "{}\n[warm_pool]\nsize = 4\n",
        fast_config(&jicofo.url, &[&foreman.url])
    );
    let s = Scaler::start(&cfg).await;
    // min 2 (the default): two hosts started from the pool and ready, two still stopped.
    let st = s
        .eventually("the floor up from the pool", WAIT, |st| {
            count(st, "ready") == 2 && st["warm_pool"]["stopped"] == 2
        })
        .await;
    let run = dom(&format!("{}/scaler/ui", s.url), 4000).await;
    let html = &run.stdout;
    assert_eq!(console_lines(&run.log), Vec::<&str>::new(), "{}", run.log);
    let card = &html[html
        .find("data-card=\"warm pool\"")
        .expect("no warm pool card")..];
    let card = &card[..card.find("</div>").unwrap_or(card.len())];
    assert!(card.contains("2 / 4"), "{card}");
    assert!(card.contains("next launch: start"), "{card}");
    let hosts = all_attrs(html, "data-host");
    let states = all_attrs(html, "data-state")
        .into_iter()
        .filter(|s| s != "ok")
        .collect::<Vec<_>>();
    let shown: BTreeSet<(String, String)> = hosts.into_iter().zip(states).collect();
    assert_eq!(shown, live_hosts(&st));
    assert_eq!(
        shown.iter().filter(|(_, state)| state == "stopped").count(),
        2,
        "{shown:?}"
    );
    assert_eq!(foreman.creates(), 0);
    // A screenshot for a human: target/ui-warm-pool.png.
    let url = format!("{}/scaler/ui", s.url);
    screenshot(&url, "ui-warm-pool.png", 3000, "1400,1400").await;
}

/// A scaler that verifies tokens: (scaler, private key, key dir, fakes).
async fn with_auth(extra: &str) -> (Scaler, PathBuf, tempfile::TempDir, FakeJicofo, FakeForeman) {
    let keys = tempfile::tempdir().expect("tempdir");
    let (key, public) = rsa_key_pair(keys.path(), "asap");
    let (s, j, f) = pool(&format!(
        "{extra}\n[auth]\npublic_key_file = \"{}\"\n",
        public.display()
    ))
    .await;
    (s, key, keys, j, f)
}

async fn get(
    s: &Scaler,
    path: &str,
    bearer: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = s.http.get(format!("{}{path}", s.url));
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_needs_the_admin_token_and_is_bounded() {
    let (s, key, _keys, _j, _f) = with_auth("\n[metrics]\nhistory_samples = 10\n").await;
    let admin = token(&key, "scaler");
    let instance = token(&key, "vsg-1");

    // The page itself is static and open; its data is not.
    let (code, headers, body) = get(&s, "/scaler/ui", None).await;
    assert_eq!(code, 200);
    assert!(body.contains("<title>jitsi-scaler</title>"));
    let csp = headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert_eq!(get(&s, "/scaler/history", None).await.0, 401);
    assert_eq!(get(&s, "/scaler/history", Some("not-a-token")).await.0, 401);
    assert_eq!(get(&s, "/scaler/history", Some(&instance)).await.0, 403);
    assert_eq!(
        get(&s, "/scaler/history?since=x", Some(&admin)).await.0,
        400
    );

    // 200 ms ticks: the ring of 10 is full within a few seconds and stays at 10.
    let deadline = Instant::now() + WAIT;
    let doc = loop {
        let (code, _, body) = get(&s, "/scaler/history", Some(&admin)).await;
        assert_eq!(code, 200, "{body}");
        let doc: Value = serde_json::from_str(&body).expect("history JSON");
        let n = doc["samples"].as_array().map_or(0, Vec::len);
        assert!(n <= 10, "{n} samples kept, capacity 10");
        if n == 10 {
            break doc;
        }
        assert!(Instant::now() < deadline, "the ring never filled: {doc}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(doc["capacity"], 10);
    assert_eq!(doc["tick_ms"], 200);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (_, _, body) = get(&s, "/scaler/history", Some(&admin)).await;
    let later: Value = serde_json::from_str(&body).expect("history JSON");
    let ats = |d: &Value| -> Vec<u64> {
        d["samples"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["at"].as_u64())
            .collect()
    };
    assert_eq!(ats(&later).len(), 10);
    assert!(
        ats(&later)[0] > ats(&doc)[0],
        "the oldest samples were dropped"
    );
    // `since` answers only what is newer.
    let last = ats(&later)[9];
    let (_, _, body) = get(&s, &format!("/scaler/history?since={last}"), Some(&admin)).await;
    let newer: Value = serde_json::from_str(&body).expect("history JSON");
    assert!(ats(&newer).iter().all(|&t| t > last), "{newer}");

    // Every refusal above is counted by reason.
    let (_, _, text) = get(&s, "/metrics", None).await;
    let m = support::openmetrics::parse(&text).expect("metrics");
    let refused = |reason| {
        m.value(
            "jitsi_scaler_auth_failures_total",
            &[("caller", "api"), ("reason", reason)],
        )
    };
    assert_eq!(refused("missing_token"), Some(1.0), "{text}");
    assert_eq!(refused("invalid_token"), Some(1.0));
    assert_eq!(refused("forbidden"), Some(1.0));
    assert_eq!(refused("rate_limited"), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_asks_for_a_token_when_auth_is_on() {
    let (s, _key, _keys, _j, _f) = with_auth("").await;
    let run = dom(&format!("{}/scaler/ui", s.url), 3000).await;
    let html = &run.stdout;
    let body = tag(html, "<body");
    assert_eq!(
        attr(body, "data-state").as_deref(),
        Some("need-token"),
        "{html}"
    );
    let bar = tag(html, "id=\"tokenbar\"");
    assert!(
        attr(bar, "hidden").is_none(),
        "the token field is shown: {bar}"
    );
    assert!(html.contains("needs an admin token"), "{html}");
    // A 401 is not a page error, and nothing of the scaler's state leaked onto the page.
    assert_eq!(attr(body, "data-error-count").as_deref(), Some("0"));
    assert!(!html.contains("data-host="));
}

/// Every `expr` string anywhere in a JSON document.
fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_alerts_query_only_real_metrics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("examples/grafana-dashboard.json"))
        .expect("examples/grafana-dashboard.json");
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is valid JSON");
    // The Prometheus data source is a variable, and every query uses it.
    let vars = dash["templating"]["list"].as_array().expect("templating");
    assert!(
        vars.iter().any(|v| v["type"] == "datasource"
            && v["query"] == "prometheus"
            && v["name"] == "datasource"),
        "{vars:?}"
    );
    let panels = dash["panels"].as_array().expect("panels");
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        for t in p["targets"].as_array().expect("targets") {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        }
    }
    let mut dash_exprs = Vec::new();
    exprs(&dash, &mut dash_exprs);
    assert!(dash_exprs.len() >= 20, "{dash_exprs:?}");
    let alerts = std::fs::read_to_string(root.join("examples/alerts.yml")).expect("alerts.yml");
    let alert_exprs: Vec<String> = alerts
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .map(str::to_string)
        .collect();
    assert!(alert_exprs.len() >= 10);

    // A real scrape after launches, deletes, Jicofo readings and a refused request.
    let (s, jicofo, foreman) = pool("").await;
    busy_day(&s, &jicofo, &foreman).await;
    let (_, _, text) = get(&s, "/metrics", None).await;
    let m = support::openmetrics::parse(&text).expect("metrics");
    // Target mode (the default, and the demo's) adds its sizing's gauges: a second scaler in
    // that mode, on its own fakes, once it has sized.
    let (t_foreman, t_jicofo) = (FakeForeman::start().await, FakeJicofo::start(0, 0).await);
    t_jicofo.state.lock().expect("lock").follow = Some(t_foreman.clone());
    let target = Scaler::start(
        &fast_config(&t_jicofo.url, &[&t_foreman.url])
            .replace("mode = \"fixed\"", "mode = \"target\""),
    )
    .await;
    target
        .eventually("a sizing", WAIT, |st| !st["capacity"]["sizing"].is_null())
        .await;
    let (_, _, t_text) = get(&target, "/metrics", None).await;
    let t = support::openmetrics::parse(&t_text).expect("metrics");
    let scraped: BTreeSet<&str> = m
        .families
        .iter()
        .chain(&t.families)
        .flat_map(|f| f.samples.iter().map(|s| s.name.as_str()))
        .collect();
    let mut used = BTreeSet::new();
    for (file, list) in [("dashboard", &dash_exprs), ("alerts.yml", &alert_exprs)] {
        for e in list.iter() {
            for name in support::metric_names(e) {
                assert!(
                    scraped.contains(name.as_str()),
                    "{file} queries {name}, which /metrics does not serve:\n{e}\nserved: {scraped:?}"
                );
                used.insert(name);
            }
        }
    }
    // What the dashboard is for: pool, decisions, Jicofo age, lifecycle calls, token failures.
    for name in [
        "jitsi_scaler_observed_available",
        "jitsi_scaler_in_flight",
        "jitsi_scaler_setting_min_available",
        "jitsi_scaler_decisions_total",
        "jitsi_scaler_jicofo_reading_age_seconds",
        "jitsi_scaler_lifecycle_calls_total",
        "jitsi_scaler_lifecycle_call_duration_seconds_bucket",
        "jitsi_scaler_auth_failures_total",
    ] {
        assert!(
            dash_exprs
                .iter()
                .any(|e| support::metric_names(e).iter().any(|n| n == name)),
            "the dashboard does not show {name}"
        );
    }
    assert!(used.len() >= 25, "{used:?}");
}

/// Hosts the scaler did not launch show what the lifecycle manager confirmed of them: a
/// container known from its sidecar's reports alone is marked unmanaged (never deleted), an
/// old gateway under a managed prefix is managed; a screenshot: target/ui-unmanaged.png.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_which_adopted_hosts_are_not_managed() {
    let (s, _jicofo, foreman) = pool("").await;
    foreman.insert("vsg-old1", "10.4.0.1");
    s.eventually("the floor up", WAIT, |st| count(st, "ready") == 2)
        .await;
    let report = |id: &str| {
        serde_json::json!({
            "instance": {"instanceId": id, "instanceType": "jibri", "group": "docker-jibri"},
            "stats": {"status": {"busyStatus": "BUSY", "health": {"healthStatus": "HEALTHY"}}},
            "timestamp": 1, "shutdownStatus": false, "statsError": false})
    };
    for id in ["jibri-1733", "vsg-old1"] {
        let r = s
            .http
            .post(format!("{}/scaler/sidecar/status", s.url))
            .json(&report(id))
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status().as_u16(), 200);
    }
    let st = s
        .eventually("both judged", WAIT, |st| {
            let rows: Vec<&Value> = st["ledger"]["hosts"]["ready"]
                .as_array()
                .into_iter()
                .flatten()
                .collect();
            let m = |h: &str| {
                rows.iter()
                    .find(|r| r["host"] == h)
                    .map(|r| r["membership"].clone())
            };
            m("jibri-1733") == Some(Value::from("reports_only"))
                && m("vsg-old1") == Some(Value::from("managed"))
        })
        .await;
    let run = dom(&format!("{}/scaler/ui", s.url), 4000).await;
    let html = &run.stdout;
    assert_eq!(console_lines(&run.log), Vec::<&str>::new(), "{}", run.log);
    let row = |host: &str| {
        let at = html
            .find(&format!("data-host=\"{host}\""))
            .unwrap_or_else(|| panic!("no row for {host}"));
        let end = at + html[at..].find("</tr>").expect("row end");
        html[at..end].to_string()
    };
    let container = row("jibri-1733");
    assert!(
        container.contains("unmanaged: known from its reports alone"),
        "{container}"
    );
    assert!(
        container.contains("Foreman has no host jibri-1733"),
        "{container}"
    );
    let old = row("vsg-old1");
    assert!(
        !old.contains("unmanaged") && !old.contains("not a managed"),
        "{old}"
    );
    let shown: BTreeSet<(String, String)> = all_attrs(html, "data-host")
        .into_iter()
        .zip(
            all_attrs(html, "data-state")
                .into_iter()
                .filter(|s| s != "ok"),
        )
        .collect();
    assert_eq!(shown, live_hosts(&st));
    let url = format!("{}/scaler/ui", s.url);
    screenshot(&url, "ui-unmanaged.png", 3000, "1400,1600").await;
}
