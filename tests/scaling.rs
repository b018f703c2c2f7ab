//! The policy end to end: the real `serve` against a fake Jicofo and fake Foreman nodes,
//! one test per flaw of the legacy design (SPEC §4).

mod support;

use std::time::Duration;

use support::{FakeForeman, FakeJicofo, Scaler, Stack, count, dead_url, fast_config};

const WAIT: Duration = Duration::from_secs(15);

/// Flaw 1: while launches boot (not yet in Jicofo), repeated ticks launch the deficit once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booting_instances_are_not_launched_again() {
    let Stack { s, jicofo, foreman } = Stack::start(0, 0, "[settings]\nmin = 3").await;
    s.eventually("3 launches", WAIT, |_| foreman.creates() == 3)
        .await;
    // Many ticks later (tick = 200 ms), still exactly the deficit.
    jicofo.wait_requests(10).await;
    assert_eq!(foreman.creates(), 3, "{}", s.log());
    let st = s.status().await;
    assert_eq!(st["ledger"]["in_flight"], 3);
    // Two of them boot: Jicofo sees them; nothing new is launched (2 seen + 1 in flight).
    jicofo.set(2, 2);
    s.eventually("two seen", WAIT, |st| count(st, "ready") == 2)
        .await;
    jicofo.wait_requests(5).await;
    assert_eq!(foreman.creates(), 3);
    // A call takes one: available 1 + in flight 1 < 3, so exactly one more.
    jicofo.set(2, 1);
    s.eventually("one more launch", WAIT, |_| foreman.creates() == 4)
        .await;
    jicofo.wait_requests(5).await;
    assert_eq!(foreman.creates(), 4);
}

/// `n` concurrent `POST /scaler/instance`; their status codes (0: no answer).
async fn concurrent_adds(s: &Scaler, n: usize) -> Vec<u16> {
    let mut handles = Vec::new();
    for _ in 0..n {
        let http = s.http.clone();
        let url = format!("{}/scaler/instance", s.url);
        handles.push(tokio::spawn(async move {
            http.post(url)
                .body(r#"{"instance_type":"video-sip-gateway"}"#)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    let mut codes = Vec::new();
    for h in handles {
        codes.push(h.await.unwrap_or(0));
    }
    codes
}

/// Flaw 2: max counts launches in flight, also with concurrent `POST /scaler/instance`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_is_never_passed() {
    let settings = "[settings]\nmin = 10\nmax = 8\nbulk_max = 100";
    let Stack { s, foreman, .. } = Stack::fresh(4, 0, settings).await;
    // Deficit 10, but max 8 - total 4 = 4 launches.
    s.eventually("launches up to max", WAIT, |_| foreman.creates() == 4)
        .await;
    let codes = concurrent_adds(&s, 20).await;
    assert!(
        codes.iter().all(|c| *c == 409),
        "all refused at max: {codes:?}"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(foreman.creates(), 4, "{}", s.log());
    let st = s.status().await;
    assert_eq!(st["ledger"]["in_flight"], 4);

    // With room for 3 more, 20 concurrent adds (still needed: an add launches only while
    // there is a deficit) and the loop together fill exactly the room.
    s.set("min", "20").await;
    s.set("max", "11").await;
    let ok = concurrent_adds(&s, 20)
        .await
        .iter()
        .filter(|c| **c == 204)
        .count();
    assert!(ok <= 3, "{ok} adds accepted with room for 3");
    s.eventually("7 hosts", WAIT, |_| foreman.creates() == 7)
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(foreman.creates(), 7, "{}", s.log());
}

/// Flaw 3: 50 concurrent idle remove-me with available = min + 3 give exactly 3 `accepted`;
/// the same host asking again spends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_idle_removals_stop_at_the_floor() {
    let Stack { s, .. } = Stack::fresh(5, 5, "").await;
    let (accepted, _) = support::idle_storm(std::slice::from_ref(&s), 50, 50).await;
    assert_eq!(accepted.len(), 3, "available 5 = min 2 + 3");
    // Repeats answer accepted again without spending budget; others still keep.
    for n in &accepted {
        let body = format!(r#"{{"host":"gw-{n}","reason":"idle"}}"#);
        assert_eq!(s.post("/scaler/remove", &body).await.1, "accepted");
    }
    let other = (0..50).find(|n| !accepted.contains(n)).unwrap_or(0);
    let body = format!(r#"{{"host":"gw-{other}","reason":"idle"}}"#);
    assert_eq!(s.post("/scaler/remove", &body).await.1, "keep");
    let st = s.status().await;
    assert_eq!(st["ledger"]["pending_removal"], 3);
}

/// Flaw 4: without Jicofo, idle removals keep, adds are refused and nothing is launched;
/// expired and unhealthy hosts still go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jicofo_down_fails_safe() {
    let jicofo = FakeJicofo::start(0, 0).await;
    jicofo.set_down(true);
    let Stack { s, jicofo, foreman } = Stack::on(jicofo, FakeForeman::start().await, "").await;
    s.eventually("a failed reading", WAIT, |st| {
        st["jicofo"]["shards"][0]["last_error"].is_string()
    })
    .await;
    assert_eq!(s.remove("gw-1", "idle").await, "keep");
    let (code, body) = s
        .post(
            "/scaler/instance",
            r#"{"instance_type":"video-sip-gateway"}"#,
        )
        .await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(s.remove("gw-2", "expired").await, "accepted");
    assert_eq!(s.remove("gw-3", "unhealthy").await, "accepted");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(foreman.creates(), 0, "no launch while blind");
    // A reading that is not JSON or lacks the brewery is missing too, never zero.
    jicofo.set_down(false);
    s.eventually("fresh again", WAIT, |st| st["jicofo"]["merged"].is_object())
        .await;
    s.eventually("launches resume", WAIT, |_| foreman.creates() >= 2)
        .await;
}

/// Flaw 5: Foreman node 1 down, node 2 is used; all down: the breakers open and idle
/// removals keep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreman_failover_and_breaker() {
    let jicofo = FakeJicofo::start(0, 0).await;
    let dead = dead_url();
    let foreman = FakeForeman::start().await;
    let s = Scaler::start(&fast_config(&jicofo.url, &[&dead, &foreman.url])).await;
    s.eventually("launches on node 2", WAIT, |_| foreman.creates() == 2)
        .await;
    let st = s.status().await;
    assert_eq!(st["lifecycle"]["up"], true);

    // All nodes down.
    let jicofo2 = FakeJicofo::start(10, 10).await;
    let s2 = Scaler::start(&fast_config(&jicofo2.url, &[&dead, &dead_url()])).await;
    s2.fresh().await;
    // Expired removals are accepted and their deletes fail, opening the breakers.
    assert_eq!(s2.remove("gw-9", "expired").await, "accepted");
    s2.eventually("breakers open", WAIT, |st| st["lifecycle"]["up"] == false)
        .await;
    assert_eq!(s2.remove("gw-1", "idle").await, "keep");
    let st = s2.status().await;
    let last = &st["recent_decisions"][0];
    assert!(
        last["why"].as_str().unwrap_or("").contains("lifecycle"),
        "{last}"
    );
}

/// Flaw 6: a lost create response followed by a retry leaves exactly one host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_create_response_makes_one_host() {
    let foreman = FakeForeman::start().await;
    foreman.lose_create_responses(3, Duration::from_secs(3));
    let jicofo = FakeJicofo::start(0, 0).await;
    let Stack { s, foreman, .. } = Stack::on(jicofo, foreman, "[settings]\nmin = 1").await;
    s.eventually("the launch confirmed", WAIT, |st| count(st, "booting") == 1)
        .await;
    assert_eq!(foreman.host_count(), 1, "{}", s.log());
    assert_eq!(foreman.creates(), 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(foreman.host_count(), 1);
}

/// A launch that never shows up in Jicofo becomes launch_failed and is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_that_never_shows_up_is_deleted() {
    let overrides = "boot_timeout = \"1500ms\"\n[settings]\nmin = 1\nbulk_max = 1";
    let Stack { s, foreman, .. } = Stack::start(0, 0, overrides).await;
    s.eventually("a launch", WAIT, |_| foreman.creates() >= 1)
        .await;
    let first = foreman.hosts().first().cloned().unwrap_or_default();
    s.eventually("the launch failed and was deleted", WAIT, |_| {
        foreman.deletes().contains(&first)
    })
    .await;
    let st = s.status().await;
    let failed = support::hosts_in(&st, "launch_failed");
    assert!(failed.contains(&first), "{st:#}");
    // It stopped counting: a replacement was launched.
    s.eventually("a replacement", WAIT, |_| foreman.creates() >= 2)
        .await;
}

/// An accepted removal is deleted in Foreman (drain_confirm = false, as the legacy scaler).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_removal_is_deleted_in_foreman() {
    let Stack { s, jicofo, foreman } = Stack::start(0, 0, "[settings]\nmin = 1").await;
    s.eventually("a launch", WAIT, |st| count(st, "booting") == 1)
        .await;
    let host = foreman.hosts().first().cloned().unwrap_or_default();
    // It boots; a second idle one exists outside the ledger.
    jicofo.set(2, 2);
    s.eventually("seen", WAIT, |st| count(st, "ready") == 1)
        .await;
    let body = format!(r#"{{"host":"{host}","reason":"idle"}}"#);
    assert_eq!(s.post("/scaler/remove", &body).await.1, "accepted");
    s.eventually("deleted", WAIT, |_| foreman.deletes().contains(&host))
        .await;
    // Jicofo stops counting it: it leaves pending_removal; no replacement is needed.
    jicofo.set(1, 1);
    s.eventually("left", WAIT, |st| st["ledger"]["pending_removal"] == 0)
        .await;
    s.eventually("gone", WAIT, |st| count(st, "gone") == 1)
        .await;
}

/// Two shards, one stale: the fresh one is used; both stale: fail safe (SPEC §6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_shard_is_ignored_and_all_stale_fails_safe() {
    let a = FakeJicofo::start(0, 0).await;
    let b = FakeJicofo::start(0, 0).await;
    b.set_down(true);
    let foreman = FakeForeman::start().await;
    let cfg = fast_config(&a.url, &[&foreman.url]).replace(
        "[[jicofo.shards]]\nname = \"shard1\"",
        &format!("[[jicofo.shards]]\nname = \"shard2\"\nurl = \"{}\"\n[[jicofo.shards]]\nname = \"shard1\"", b.url),
    );
    let s = Scaler::start(&cfg).await;
    let st = s
        .eventually("shard2 stale, shard1 fresh", WAIT, |st| {
            st["jicofo"]["fresh_shards"] == serde_json::json!(["shard1"])
                && st["jicofo"]["stale_shards"] == serde_json::json!(["shard2"])
        })
        .await;
    assert!(
        st["jicofo"]["shards"][0]["last_error"].is_string(),
        "{st:#}"
    );
    s.eventually("launches from the fresh shard", WAIT, |_| {
        foreman.creates() == 2
    })
    .await;
    // The conservative merge: the shard that sees fewer available wins.
    b.set_down(false);
    a.set(5, 5);
    b.set(4, 2);
    s.eventually("merged lowest available", WAIT, |st| {
        st["jicofo"]["merged"]["available"] == 2 && st["jicofo"]["merged"]["total"] == 5
    })
    .await;
    assert_eq!(s.status().await["jicofo"]["disagreement"], true);
    // Both stale: no launches, idle keeps.
    a.set_down(true);
    b.set_down(true);
    s.eventually("all stale", WAIT, |st| st["jicofo"]["merged"].is_null())
        .await;
    let before = foreman.creates();
    assert_eq!(s.remove("gw-1", "idle").await, "keep");
    s.set("min", "10").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        foreman.creates(),
        before,
        "no launch while every shard is stale"
    );
}
