//! The service core's contract: `config check` runs exactly `serve`'s validation, `/ready`
//! tells the true reason, one host-name rule.

mod support;

use std::time::Duration;

use support::{FakeForeman, FakeJicofo, Scaler, dead_url, fast_config, run_with_config, temp_file};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn config_check_refuses_what_serve_refuses() {
    // Passes the key checks, but the Foreman client refuses it when it is built.
    let (_dir, cfg) = temp_file(
        "c.toml",
        "data_dir = \"/nonexistent/jitsi-scaler\"\n[lifecycle.foreman]\nbreaker_threshold = 0\n",
    );
    let check = run_with_config(&["config", "check"], &cfg);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("breaker_threshold"), "{stderr}");
    let serve = run_with_config(&["serve"], &cfg);
    assert!(!serve.status.success());
    assert!(String::from_utf8_lossy(&serve.stderr).contains("breaker_threshold"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_says_the_true_reason() {
    let foreman = FakeForeman::start().await;
    // No Jicofo at all: the reason names it, not "no reading attempted".
    let dead = format!("{}/stats", dead_url());
    let s = Scaler::start(&fast_config(&dead, &[&foreman.url])).await;
    s.eventually("a reading attempted", WAIT, |st| {
        st["not_ready"].is_string() && st["uptime_s"].is_u64()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, body) = s.get("/ready").await;
    assert_eq!(code, 503);
    assert!(body.contains("no Jicofo reading younger"), "{body}");
    drop(s);

    let jicofo = FakeJicofo::start(3, 3).await;
    let s = Scaler::start(&fast_config(&jicofo.url, &[&foreman.url])).await;
    s.eventually("ready", WAIT, |st| st["ready"] == true).await;
    assert_eq!(s.get("/ready").await.0, 200);
    // Jicofo goes away: not ready once the reading is stale (1.5 s here).
    jicofo.set_down(true);
    s.eventually("stale stats", WAIT, |st| st["ready"] == false)
        .await;
    assert!(s.get("/ready").await.1.contains("Jicofo"));
    jicofo.set_down(false);
    s.eventually("ready again", WAIT, |st| st["ready"] == true)
        .await;

    // The data directory stops taking writes (the temp file cannot be created): a change is
    // refused, /ready says why, and the failure is counted.
    let blocker = s.data_dir().join("state.json.tmp");
    std::fs::create_dir(&blocker).expect("mkdir");
    let (code, body) = s.post("/scaler/min", "3").await;
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("cannot store"), "{body}");
    let (code, body) = s.get("/ready").await;
    assert_eq!(code, 503);
    assert!(
        body.contains("store") && body.contains("not writable"),
        "{body}"
    );
    let metrics = s.get("/metrics").await.1;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("jitsi_scaler_store_write_failures_total ") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
    // Nothing was lost, and writes resume once the directory takes them.
    assert_eq!(s.get("/scaler/min").await.1, "2");
    std::fs::remove_dir(&blocker).expect("rmdir");
    assert_eq!(s.post("/scaler/min", "3").await.0, 204);
    assert_eq!(s.get("/ready").await.0, 200);
    assert_eq!(s.get("/scaler/min").await.1, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_name_rule_refuses_names_that_could_never_be_deleted() {
    let jicofo = FakeJicofo::start(5, 5).await;
    let foreman = FakeForeman::start().await;
    let s = Scaler::start(&fast_config(&jicofo.url, &[&foreman.url])).await;
    s.eventually("a fresh reading", WAIT, |st| {
        st["jicofo"]["merged"].is_object()
    })
    .await;
    for body in [
        r#"{"host":"gw_1","reason":"idle"}"#,
        r#"{"host":"gw-","reason":"expired"}"#,
    ] {
        let (code, text) = s
            .send(reqwest::Method::DELETE, "/scaler/instance", body)
            .await;
        assert_eq!(code, 400, "{body}: {text}");
    }
    let (code, text) = s
        .send(
            reqwest::Method::DELETE,
            "/scaler/instance",
            r#"{"host":"gw-1","reason":"expired"}"#,
        )
        .await;
    assert_eq!((code, text.as_str()), (200, "accepted"));
    assert_eq!(
        s.status().await["ledger"]["pending_removal"],
        1,
        "only the valid name reached the ledger"
    );
}
