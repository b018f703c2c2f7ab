//! Legacy scripts and our agent side by side against the real `serve`:
//! the drain mode is per host, and the legacy scale-up script's adds launch only the deficit.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{FakeForeman, FakeJicofo, Scaler, count, fast_config, rsa_key_pair, token};

const WAIT: Duration = Duration::from_secs(20);

/// The default `[policy]` (15 s tick, default drain_confirm): only the neighbours and the
/// key are configured.
fn default_policy_config(jicofo: &FakeJicofo, foreman: &FakeForeman, public: &str) -> String {
    format!(
        r#"[settings]
min = 2

[jicofo]
[[jicofo.shards]]
name = "shard1"
url = "{}"

[lifecycle]
backend = "foreman"
name_prefix = "vsg"
[lifecycle.foreman]
nodes = ["{}"]
user = "scaler"
token = "test-token"

[auth]
public_key_file = "{public}"
"#,
        jicofo.url, foreman.url
    )
}

fn add_host(foreman: &FakeForeman, name: &str, ip: &str) {
    foreman.insert(name, ip);
}

/// `POST /scaler/remove` for `host` with `reason`, saying how it drains: (status, body).
async fn remove_drain(s: &Scaler, host: &str, reason: &str, drain: &str) -> (u16, String) {
    let body = serde_json::json!({"host": host, "reason": reason, "drain": drain});
    s.post("/scaler/remove", &body.to_string()).await
}

fn host_row<'a>(status: &'a Value, host: &str) -> Option<&'a Value> {
    status["ledger"]["hosts"]
        .as_object()?
        .values()
        .filter_map(Value::as_array)
        .flatten()
        .find(|r| r["host"] == host)
}

/// (a) The original scale-down script's flow: `DELETE /scaler/instance` with a `sub: scaler`
/// token and no `drained`. On the default config its host is deleted within one tick; an agent
/// host approved in the same run (its request says `"drain": "confirm"`) waits for its
/// `drained`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_delete_goes_at_once_while_the_agent_host_waits_for_drained() {
    let jicofo = FakeJicofo::start(6, 6).await;
    let foreman = FakeForeman::start().await;
    add_host(&foreman, "gw-legacy", "10.1.0.1");
    add_host(&foreman, "gw-agent", "10.1.0.2");
    let dir = tempfile::tempdir().expect("dir");
    let (key, public) = rsa_key_pair(dir.path(), "sidecar");
    let mut s = Scaler::start(&default_policy_config(
        &jicofo,
        &foreman,
        &public.display().to_string(),
    ))
    .await;
    // The legacy clients' token: no kid, sub scaler, 60 s.
    s.bearer = Some(token(&key, "scaler"));
    let status = s.fresh().await;
    let tick = Duration::from_secs(15);
    assert_eq!(
        status["settings"]["min"], 2,
        "default config apart from the neighbours"
    );

    // The agent first, so the legacy delete cannot be carried by a tick the agent started.
    let (code, body) = remove_drain(&s, "gw-agent", "idle", "confirm").await;
    assert_eq!((code, body.as_str()), (200, "accepted"));
    let asked = Instant::now();
    let (code, body) = s.legacy_delete("gw-legacy", "idle").await;
    assert_eq!((code, body.as_str()), (200, "accepted"));
    s.eventually("the legacy host's delete", tick, |_| {
        foreman.deletes() == ["gw-legacy"]
    })
    .await;
    assert!(asked.elapsed() < tick, "within one tick");
    let st = s.status().await;
    assert_eq!(
        host_row(&st, "gw-legacy").map(|r| &r["drain"]),
        Some(&Value::from("immediate"))
    );
    assert_eq!(
        host_row(&st, "gw-agent").map(|r| &r["drain"]),
        Some(&Value::from("confirm"))
    );
    assert_eq!(count(&st, "draining"), 1, "{st:#}");
    // The agent's host waits (a few ticks would not change that: drain_timeout is 3 h 15 m).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(foreman.deletes(), ["gw-legacy"]);
    // A repeat of the legacy request (the script repeats every 60 s) is idempotent.
    let (code, body) = s.legacy_delete("gw-legacy", "idle").await;
    assert_eq!((code, body.as_str()), (200, "accepted"));
    // Its drained, and only then, deletes it.
    let (code, _) = s.post("/scaler/drained", r#"{"host": "gw-agent"}"#).await;
    assert_eq!(code, 204);
    s.eventually("the agent host's delete", tick, |_| {
        foreman.deletes() == ["gw-legacy", "gw-agent"]
    })
    .await;
    // A drain mode other than confirm/immediate is a 400 that changes nothing.
    let (code, body) = remove_drain(&s, "gw-x", "idle", "later").await;
    assert_eq!(code, 400, "{body}");
    assert!(host_row(&s.status().await, "gw-x").is_none());
    s.stop();
}

/// One round of the legacy scale-up script: it reads Jicofo itself and posts `min - available`
/// adds, as fast as it can go. Returns the status codes.
async fn script_round(s: &Scaler, jicofo: &FakeJicofo, min: u32) -> Vec<u16> {
    let available = jicofo.state.lock().expect("lock").available;
    let mut codes = Vec::new();
    for _ in available..min {
        codes.push(
            s.post(
                "/scaler/instance",
                r#"{"instance_type":"video-sip-gateway"}"#,
            )
            .await
            .0,
        );
    }
    codes
}

/// (b) The original scale-up script left running beside `serve`: every round it reads Jicofo
/// itself and posts one `POST /scaler/instance` per missing gateway. `serve` launches exactly
/// the deficit, never once more per add; the adds that are not needed are answered as the
/// legacy scaler did (204) and say why in the decision log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_scale_up_beside_the_loop_launches_exactly_the_deficit() {
    let jicofo = FakeJicofo::start(0, 0).await;
    let foreman = FakeForeman::start().await;
    let s = Scaler::on(&jicofo, &foreman, "[settings]\nmin = 2\n").await;
    s.fresh().await;
    for _ in 0..3 {
        let codes = script_round(&s, &jicofo, 2).await;
        assert!(codes.iter().all(|c| *c == 204), "{codes:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    s.eventually("the deficit launched", WAIT, |_| foreman.creates() == 2)
        .await;
    // Several more ticks and rounds: still exactly the deficit (6 adds were posted).
    for _ in 0..3 {
        script_round(&s, &jicofo, 2).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(foreman.creates(), 2);
    // The operator raises min: the deficit grows by 2, and again exactly that is launched,
    // whoever comes first (the script's adds or the loop).
    assert_eq!(s.post("/scaler/min", "4").await.0, 204);
    for _ in 0..3 {
        script_round(&s, &jicofo, 4).await;
    }
    s.eventually("the new deficit launched", WAIT, |_| foreman.creates() == 4)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(foreman.creates(), 4);
    let st = s.status().await;
    let not_needed: Vec<&Value> = st["recent_decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .filter(|d| d["kind"] == "add" && d["outcome"] == "not_needed")
        .collect();
    assert!(!not_needed.is_empty(), "{st:#}");
    let why = not_needed[0]["why"].as_str().unwrap_or_default();
    assert!(
        why.contains("not needed") && why.contains("in flight") && why.contains("min"),
        "{why}"
    );
    // At max an add is still refused with 409, as before.
    assert_eq!(s.post("/scaler/max", "4").await.0, 204);
    assert_eq!(s.post("/scaler/min", "5").await.0, 204);
    let (code, _) = s
        .post(
            "/scaler/instance",
            r#"{"instance_type":"video-sip-gateway"}"#,
        )
        .await;
    assert_eq!(code, 409);
}

/// An agent's expired request accepted while Redis is down is queued with its drain mode: once
/// the store is back it is stored as `draining` (waiting for its `drained`), while a legacy
/// expired request queued beside it is deleted at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_queued_while_the_store_is_down_keep_their_drain_mode() {
    let mut redis = support::RedisServer::start();
    let jicofo = FakeJicofo::start(6, 6).await;
    let foreman = FakeForeman::start().await;
    add_host(&foreman, "gw-agent", "10.1.0.2");
    add_host(&foreman, "gw-legacy", "10.1.0.1");
    let s = Scaler::start(&format!(
        "[settings]\nmin = 2\n{}{}",
        fast_config(&jicofo.url, &[&foreman.url]).replace("drain_confirm = false\n", ""),
        support::redis_store(&redis, "r0")
    ))
    .await;
    s.fresh().await;
    redis.stop();
    s.eventually("store down", WAIT, |st| st["store"]["reachable"] == false)
        .await;
    let (code, body) = remove_drain(&s, "gw-agent", "expired", "confirm").await;
    assert_eq!((code, body.as_str()), (200, "accepted"));
    let (code, body) = s.legacy_delete("gw-legacy", "expired").await;
    assert_eq!((code, body.as_str()), (200, "accepted"));
    redis.restart();
    s.eventually("the legacy host deleted", WAIT, |_| {
        foreman.deletes() == ["gw-legacy"]
    })
    .await;
    let st = s.status().await;
    assert_eq!(
        host_row(&st, "gw-agent").map(|r| (&r["drain"], support::ledger_state(&st, "gw-agent"))),
        Some((&Value::from("confirm"), Some("draining".to_string()))),
        "{st:#}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(foreman.deletes(), ["gw-legacy"], "the agent's host waits");
}
