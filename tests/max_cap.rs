//! A cap you can see: when `max` holds back what the spare floor needs, the decision log,
//! `/scaler/status`, the `status` command and the log say so within a tick, and say when it
//! ends.

mod support;

use std::time::Duration;

use support::{FakeForeman, FakeJicofo, Scaler, fast_config};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_holding_the_floor_back_is_said_once_and_shown_until_it_ends() {
    let jicofo = FakeJicofo::start(3, 0).await;
    let foreman = FakeForeman::start().await;
    let s = Scaler::start(&format!(
        "[settings]\nmin = 4\nmax = 4\n{}",
        fast_config(&jicofo.url, &[&foreman.url])
    ))
    .await;
    // 3 busy, min 4: the floor needs 4 more, max 4 leaves room for 1 (launched at once).
    let st = s
        .eventually("capped", WAIT, |st| st["capped_by_max"].is_object())
        .await;
    let deficit = st["capped_by_max"]["deficit"].as_i64().unwrap_or(0);
    assert!(deficit >= 3, "{}", st["capped_by_max"]);
    assert_eq!(st["capped_by_max"]["max"], 4);
    let lines = s.decisions("launch", "").await;
    let capped: Vec<_> = st["recent_decisions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["outcome"] == "capped")
        .collect();
    assert_eq!(capped.len(), 1, "said once: {lines:?}");
    let why = capped[0]["why"].as_str().unwrap_or_default();
    assert!(why.contains("max 4 holds the spare floor back"), "{why}");
    let (_, metrics) = s.get("/metrics").await;
    assert!(
        metrics.contains("jitsi_scaler_capacity_capped 1"),
        "{metrics}"
    );
    // Several ticks later: still said once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let st = s.status().await;
    let n = st["recent_decisions"]
        .as_array()
        .map(|a| a.iter().filter(|d| d["outcome"] == "capped").count())
        .unwrap_or(0);
    assert_eq!(n, 1);
    // The status command prints it.
    let url = s.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        support::succeed(support::bin().args(["status", "--url", &url]))
    })
    .await
    .expect("status command");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CAPPED: max 4"), "{text}");
    // Raising max ends it, with one line.
    s.set("max", "20").await;
    s.eventually("released", WAIT, |st| {
        st["capped_by_max"].is_null()
            && st["recent_decisions"]
                .as_array()
                .is_some_and(|a| a.iter().any(|d| d["outcome"] == "uncapped"))
    })
    .await;
    assert!(
        s.log().contains("holds the spare floor back"),
        "{}",
        s.log()
    );
}
