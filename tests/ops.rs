//! Operations end to end: `/metrics`, the audit file, graceful shutdown during a launch,
//! systemd notification and the `status` command, all through the real binary.

mod support;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use support::openmetrics::{self, Exposition};
use support::{AuthKeys, FakeForeman, FakeJicofo, Scaler, Stack, count, fast_config};

const WAIT: Duration = Duration::from_secs(15);

async fn scrape(s: &Scaler) -> Exposition {
    let r = s
        .request_as(None, reqwest::Method::GET, "/metrics", "")
        .await;
    assert_eq!(r.code, 200);
    let ct = &r.content_type;
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    openmetrics::parse(&r.body).unwrap_or_else(|e| panic!("{e}\n{}", r.body))
}

/// The test parser itself is strict.
#[test]
fn parser_rejects_broken_expositions() {
    let good = "# HELP a_seconds x.\n# TYPE a_seconds histogram\n# UNIT a_seconds seconds\n\
        a_seconds_sum 1.5\na_seconds_count 2\na_seconds_bucket{le=\"1.0\"} 1\n\
        a_seconds_bucket{le=\"+Inf\"} 2\n# TYPE c counter\nc_total{k=\"v\\\"\"} 3\n# EOF\n";
    let e = openmetrics::parse(good).expect("good");
    assert_eq!(e.value("c_total", &[("k", "v\"")]), Some(3.0));
    for bad in [
        good.replace("# EOF\n", ""),
        good.replace("c_total", "c_sum"),
        good.replace("a_seconds_count 2", "a_seconds_count 3"),
        good.replace("{le=\"1.0\"} 1", "{le=\"1.0\"} 5"),
        good.replace("{k=\"v\\\"\"}", "{k=v}"),
        good.replace("c_total{k=\"v\\\"\"} 3", "c_total 3\nc_total 4"),
        good.replace("3\n# EOF", "-3\n# EOF"),
        format!("# TYPE x gauge\nx 1\n{good}").replace("# EOF\n", "# TYPE x gauge\nx 2\n# EOF\n"),
    ] {
        assert!(openmetrics::parse(&bad).is_err(), "accepted:\n{bad}");
    }
}

/// `/metrics` parses strictly, mirrors state, and its counters move with the decisions made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_decisions() {
    let Stack { s, jicofo, foreman } = Stack::fresh(4, 4, "").await;

    let m = scrape(&s).await;
    let accepted = [
        ("kind", "remove"),
        ("outcome", "accepted"),
        ("reason", "idle"),
    ];
    assert_eq!(m.sum("jitsi_scaler_decisions_total", &accepted), 0.0);
    assert_eq!(m.value("jitsi_scaler_launches_total", &[]), Some(0.0));
    assert_eq!(
        m.value("jitsi_scaler_setting_min_available", &[]),
        Some(2.0)
    );
    assert_eq!(m.value("jitsi_scaler_leader", &[]), Some(1.0));
    assert_eq!(
        m.value("jitsi_scaler_jicofo_gateways", &[("shard", "shard1")]),
        Some(4.0)
    );
    assert_eq!(
        m.value("jitsi_scaler_jicofo_fresh", &[("shard", "shard1")]),
        Some(1.0)
    );
    assert!(
        m.value(
            "jitsi_scaler_jicofo_reading_age_seconds",
            &[("shard", "shard1")]
        )
        .is_some_and(|a| (0.0..2.0).contains(&a))
    );
    assert_eq!(
        m.value(
            "jitsi_scaler_lifecycle_breaker_state",
            &[("node", &foreman.url), ("state", "closed")]
        ),
        Some(1.0)
    );
    assert!(
        m.value("jitsi_scaler_ticks_total", &[])
            .is_some_and(|t| t >= 1.0)
    );

    // An idle remove-me accepted (4 - 0 - 1 >= 2), then one kept at the floor.
    let body = r#"{"host":"gw-1","reason":"idle"}"#;
    assert_eq!(s.post("/scaler/remove", body).await.1, "accepted");
    jicofo.set(4, 2);
    let st = s
        .eventually("the reading with 2 available", WAIT, |st| {
            st["jicofo"]["merged"]["available"] == 2
        })
        .await;
    assert_eq!(count(&st, "launch_failed"), 0);
    let body = r#"{"host":"gw-2","reason":"idle"}"#;
    assert_eq!(s.post("/scaler/remove", body).await.1, "keep");
    let m = scrape(&s).await;
    assert_eq!(m.sum("jitsi_scaler_decisions_total", &accepted), 1.0);
    let keep = [("kind", "remove"), ("outcome", "keep"), ("reason", "idle")];
    assert_eq!(m.sum("jitsi_scaler_decisions_total", &keep), 1.0);

    // A higher floor launches: launches and lifecycle calls move, the ledger gauge follows.
    assert_eq!(s.post("/scaler/min", "4").await.0, 204);
    s.eventually("creates", WAIT, |st| {
        count(st, "booting") >= 1 && foreman.creates() >= 1
    })
    .await;
    let m = scrape(&s).await;
    let launched = m.value("jitsi_scaler_launches_total", &[]).unwrap_or(0.0);
    assert!(launched >= 1.0, "launches_total {launched}");
    assert!(
        m.sum(
            "jitsi_scaler_decisions_total",
            &[("kind", "launch"), ("outcome", "launch")]
        ) >= 1.0
    );
    assert_eq!(
        m.sum(
            "jitsi_scaler_decisions_total",
            &[("kind", "setting"), ("outcome", "changed")]
        ),
        1.0
    );
    assert_eq!(
        m.value("jitsi_scaler_setting_min_available", &[]),
        Some(4.0)
    );
    let ok_creates = m.sum(
        "jitsi_scaler_lifecycle_calls_total",
        &[
            ("backend", "foreman"),
            ("op", "create"),
            ("result", "ok"),
            ("node", &foreman.url),
        ],
    );
    assert!(ok_creates >= 1.0, "{ok_creates}");
    let timed = m.sum(
        "jitsi_scaler_lifecycle_call_duration_seconds_count",
        &[("op", "create")],
    );
    assert!(timed >= ok_creates);
    assert!(
        m.value("jitsi_scaler_ledger_instances", &[("state", "booting")])
            .is_some_and(|b| b >= 1.0)
    );
    let family = m
        .family("jitsi_scaler_lifecycle_call_duration_seconds")
        .expect("histogram family");
    assert_eq!(
        (family.kind.as_str(), family.unit.as_deref()),
        ("histogram", Some("seconds"))
    );
}

/// With `metrics.auth = "token"`, `/metrics` wants an admin token like the other routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_a_token() {
    let keys = AuthKeys::rsa();
    let metrics = format!("[metrics]\nauth = \"token\"\n{}", keys.auth_table(""));
    let Stack { mut s, .. } = Stack::start(4, 4, &metrics).await;
    assert_eq!(s.get("/metrics").await.0, 401);
    s.bearer = Some(keys.token("scaler"));
    let (code, body) = s.get("/metrics").await;
    assert_eq!(code, 200);
    openmetrics::parse(&body).expect("parses");
    s.bearer = Some(keys.token("gw-1"));
    assert_eq!(s.get("/metrics").await.0, 403);
}

/// Every decision is one well-formed JSON line in `audit.jsonl`, flushed at shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_file_has_one_json_line_per_decision() {
    let jicofo = FakeJicofo::start(0, 0).await;
    // No stats: the loop records one "hold" and then nothing, so the count is exact.
    jicofo.set_down(true);
    let audit = "[audit]\nmax_bytes = 1000000\nkeep = 2\n";
    let Stack { mut s, .. } = Stack::on(jicofo, FakeForeman::start().await, audit).await;
    s.eventually("the hold decision", WAIT, |st| {
        st["recent_decisions"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["outcome"] == "hold"))
    })
    .await;
    for n in 0..7 {
        let body = format!(r#"{{"host":"gw-{n}","reason":"idle"}}"#);
        assert_eq!(s.post("/scaler/remove", &body).await.1, "keep");
    }
    assert_eq!(
        s.post("/scaler/remove", r#"{"host":"gw-9","reason":"unhealty"}"#)
            .await
            .1,
        "accepted"
    );
    for v in ["3", "5"] {
        assert_eq!(s.post("/scaler/min", v).await.0, 204);
    }
    // The unhealthy host is deleted right after its approval; then the loop is quiet.
    let st = s
        .eventually("the delete of gw-9", WAIT, |st| {
            st["recent_decisions"].as_array().is_some_and(|d| {
                d.iter()
                    .any(|d| d["kind"] == "delete" && d["host"] == "gw-9")
            })
        })
        .await;
    let ring = st["recent_decisions"].as_array().map(Vec::len).unwrap_or(0);
    let counted = scrape(&s).await.sum("jitsi_scaler_decisions_total", &[]);
    assert_eq!(counted, ring as f64);
    let status = s.stop().expect("stopped");
    assert!(status.success(), "{status:?}\n{}", s.log());

    let text = std::fs::read_to_string(s.data_dir().join("audit.jsonl")).expect("audit.jsonl");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for l in &lines {
        assert!(l["ts"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
        assert!(
            l["at"].is_u64() && l["kind"].is_string() && l["outcome"].is_string(),
            "{l}"
        );
        assert!(l["why"].is_string(), "{l}");
    }
    let kinds = |k: &str| lines.iter().filter(|l| l["kind"] == k).count();
    assert_eq!(kinds("remove"), 8);
    assert_eq!(kinds("setting"), 2);
    assert_eq!(lines.len(), ring, "one line per decision");
    let setting = lines
        .iter()
        .find(|l| l["kind"] == "setting")
        .expect("setting line");
    assert_eq!(setting["why"], "min 2 -> 3");
    assert!(
        setting["by"]
            .as_str()
            .is_some_and(|b| b.contains("127.0.0.1"))
    );
    let removal = lines
        .iter()
        .find(|l| l["host"] == "gw-9")
        .expect("removal line");
    assert_eq!(
        (removal["outcome"].as_str(), removal["reason"].as_str()),
        (Some("accepted"), Some("unhealthy"))
    );
    assert_eq!(lines.iter().filter(|l| l["outcome"] == "hold").count(), 1);
}

/// SIGTERM while the lifecycle manager sits on a create: exit 0 within seconds, the ledger
/// keeps the launch, and the restart finishes it without a second host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_launch_resumes_without_a_duplicate() {
    let foreman = FakeForeman::start().await;
    foreman.lose_create_responses(1, Duration::from_secs(20));
    let jicofo = FakeJicofo::start(0, 0).await;
    let slow = "create_timeout = \"60s\"\n[settings]\nmin = 1";
    let Stack {
        mut s,
        jicofo,
        foreman,
    } = Stack::on(jicofo, foreman, slow).await;
    s.eventually("the create to arrive", WAIT, |_| foreman.creates() == 1)
        .await;
    let st = s.status().await;
    assert_eq!(count(&st, "requested"), 1, "{st:#}");
    let host = foreman.hosts().pop().expect("one host");

    let t0 = Instant::now();
    let status = s.stop().expect("stopped");
    let took = t0.elapsed();
    assert!(status.success(), "exit {status:?}\n{}", s.log());
    assert!(took < Duration::from_secs(8), "took {took:?}");
    let stored = std::fs::read_to_string(s.data_dir().join("state.json")).expect("state.json");
    let stored: serde_json::Value = serde_json::from_str(&stored).expect("JSON");
    assert_eq!(stored["ledger"]["instances"][&host]["state"], "requested");

    s.start_again().await;
    s.eventually("the create confirmed", WAIT, |st| count(st, "booting") == 1)
        .await;
    // Several ticks later: still one host, one create stored, nothing launched twice.
    let before = jicofo.requests();
    while jicofo.requests() < before + 5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(foreman.hosts(), vec![host.clone()]);
    assert_eq!(foreman.creates(), 1);
    let st = s.status().await;
    assert_eq!(st["ledger"]["in_flight"], 1, "{st:#}");
    assert!(s.log().contains("name taken, host exists"), "{}", s.log());
}

fn notify_messages(sock: &UnixDatagram, until: Instant, stop_at: &str) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            let done = msg.lines().any(|l| l == stop_at);
            got.push(msg);
            if done {
                break;
            }
        }
    }
    got
}

/// systemd: READY=1 once serving, WATCHDOG=1 while the loop ticks, STOPPING=1 on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let (jicofo, foreman) = (FakeJicofo::start(2, 2).await, FakeForeman::start().await);
    let mut s = Scaler::start_with_env(
        &fast_config(&jicofo.url, &[&foreman.url]),
        vec![
            ("NOTIFY_SOCKET".into(), path.display().to_string()),
            // 600 ms: a ping every 300 ms.
            ("WATCHDOG_USEC".into(), "600000".into()),
        ],
    )
    .await;
    let got = notify_messages(&sock, Instant::now() + WAIT, "WATCHDOG=1");
    let all = got.join("|");
    assert!(
        got.first()
            .is_some_and(|m| m.lines().any(|l| l == "READY=1")),
        "{all}"
    );
    assert!(all.contains("WATCHDOG=1"), "{all}");
    let pid = s.pid().expect("running");
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let got = notify_messages(&sock, Instant::now() + WAIT, "STOPPING=1");
    assert!(got.join("|").contains("STOPPING=1"), "{got:?}");
    assert!(s.stop().is_some_and(|st| st.success()));
}

/// `jitsi-scaler status --url <url> [--key <key>]`, without a token in the environment.
async fn status_command(url: &str, key: Option<&std::path::Path>) -> std::process::Output {
    let mut cmd = support::bin();
    cmd.args(["status", "--url", url])
        .env_remove("JITSI_SCALER_TOKEN");
    if let Some(key) = key {
        cmd.arg("--key").arg(key);
    }
    tokio::task::spawn_blocking(move || cmd.output().expect("run status"))
        .await
        .expect("join")
}

/// `jitsi-scaler status --url --key` signs an admin token and prints the tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_command_prints_the_tables() {
    let keys = AuthKeys::rsa();
    let Stack { mut s, foreman, .. } = Stack::start(3, 3, &keys.auth_table("")).await;
    s.bearer = Some(keys.token("scaler"));
    s.fresh().await;
    s.set("min", "3").await;
    let out = status_command(&s.url, Some(&keys.key)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "Settings: min 3  max 200  bulk-max 5",
        "SHARD",
        "shard1",
        "Ledger:",
        "NODE",
        &foreman.url,
        "Recent decisions",
        "min 2 -> 3",
    ] {
        assert!(stdout.contains(want), "{want:?} missing in\n{stdout}");
    }
    // Without a token: refused, with a hint.
    let out = status_command(&s.url, None).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}
