//! Replicas on one real `redis-server`: a store that loses its data comes back with the newest
//! state any replica held, and no idle removal is approved on an older one; a deposed leader's
//! refused writes are recorded as refused, not as done.

mod support;

use std::time::Duration;

use support::{FakeForeman, FakeJicofo, RedisServer, Scaler, fast_config, redis_store};

const WAIT: Duration = Duration::from_secs(20);

fn signal(s: &Scaler, sig: &str) {
    let pid = s.pid().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .is_ok_and(|st| st.success());
    assert!(ok, "kill {sig} {pid}");
}

/// A replica on `redis` with one environment override.
async fn replica(
    redis: &RedisServer,
    jicofo: &FakeJicofo,
    foreman: &FakeForeman,
    name: &str,
    (key, value): (&str, &str),
) -> Scaler {
    let cfg = format!(
        "{}{}",
        fast_config(&jicofo.url, &[&foreman.url]),
        redis_store(redis, name)
    );
    Scaler::start_with_env(&cfg, vec![(key.to_string(), value.to_string())]).await
}

async fn idle(s: &Scaler, host: &str) -> String {
    let (code, body) = s
        .post(
            "/scaler/remove",
            &format!(r#"{{"host":"{host}","reason":"idle"}}"#),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_data_loss_the_newest_state_wins_and_no_budget_is_spent_twice() {
    let mut redis = RedisServer::start();
    let jicofo = FakeJicofo::start(10, 10).await;
    let foreman = FakeForeman::start().await;
    let window = ("JITSI_SCALER_STORE__RECOVERY_WINDOW", "3s");
    let a = replica(&redis, &jicofo, &foreman, "a", window).await;
    let b = replica(&redis, &jicofo, &foreman, "b", window).await;
    for s in [&a, &b] {
        s.eventually("a fresh reading", WAIT, |st| {
            st["jicofo"]["merged"].is_object()
        })
        .await;
    }
    // B stops reading the store: its copy stays at min 2 with no approval.
    signal(&b, "-STOP");
    assert_eq!(a.post("/scaler/min", "5").await.0, 204);
    for h in ["gw-1", "gw-2", "gw-3"] {
        assert_eq!(idle(&a, h).await, "accepted");
    }
    // A stops too; Redis comes back empty; the stale replica B is the first to see it.
    signal(&a, "-STOP");
    redis.restart_empty();
    signal(&b, "-CONT");
    assert_eq!(
        idle(&b, "gw-4").await,
        "keep",
        "no idle approval while the state is being restored"
    );
    signal(&a, "-CONT");
    for s in [&a, &b] {
        s.eventually("the newest state restored", WAIT, |st| {
            st["settings"]["min"] == 5
                && st["ledger"]["pending_removal"] == 3
                && st["store"]["health"] == "ok"
        })
        .await;
    }
    let mut accepted = 0;
    for n in 10..18 {
        let s = if n % 2 == 0 { &a } else { &b };
        if idle(s, &format!("gw-{n}")).await == "accepted" {
            accepted += 1;
        }
    }
    // 10 available, min 5, 3 already approved: 2 more, not 8.
    assert_eq!(accepted, 2);
    assert_eq!(a.status().await["ledger"]["pending_removal"], 5);
    assert!(
        a.log()
            .contains("restored it from this replica's newer state"),
        "A's restore is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_records_its_refused_writes_as_refused() {
    let redis = RedisServer::start();
    let jicofo = FakeJicofo::start(0, 0).await;
    let foreman = FakeForeman::start().await;
    {
        let mut f = foreman.state.lock().expect("lock");
        // Creates are answered only after 3 s: A is paused in between.
        f.lose_create_responses = 2;
        f.slow = Duration::from_secs(3);
    }
    let timeout = ("JITSI_SCALER_LIFECYCLE__FOREMAN__CREATE_TIMEOUT", "10s");
    let a = replica(&redis, &jicofo, &foreman, "a", timeout).await;
    a.eventually("A leads", WAIT, |st| st["leader"] == true)
        .await;
    let b = replica(&redis, &jicofo, &foreman, "b", timeout).await;
    let deadline = std::time::Instant::now() + WAIT;
    while foreman.creates() == 0 {
        assert!(std::time::Instant::now() < deadline, "no create");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A's creates are under way; A stops past its lease (1.5 s) and B takes over.
    signal(&a, "-STOP");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    signal(&a, "-CONT");
    b.eventually("B leads", WAIT, |st| st["leader"] == true)
        .await;
    let create = |st: &serde_json::Value, outcome: &str| {
        st["recent_decisions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["kind"] == "create" && d["outcome"] == outcome)
    };
    let st = a
        .eventually("A's late create outcome recorded as refused", WAIT, |st| {
            create(st, "refused")
        })
        .await;
    assert!(
        !create(&st, "created"),
        "A claims a create it could not store: {st:#}"
    );
    b.eventually("B records the creates it stored", WAIT, |st| {
        create(st, "created")
    })
    .await;
    let audit = std::fs::read_to_string(a.data_dir().join("audit.jsonl")).unwrap_or_default();
    assert!(
        !audit
            .lines()
            .any(|l| l.contains("\"kind\":\"create\"") && l.contains("\"outcome\":\"created\"")),
        "A's audit trail tells what happened: {audit}"
    );
}
