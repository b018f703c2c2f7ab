//! Several `serve` replicas on one real `redis-server` (SPEC §4 items 3, 7, 8; §6).

mod support;

use std::time::{Duration, Instant};

use support::{FakeForeman, FakeJicofo, RedisServer, Scaler, fast_config, redis_store};

const WAIT: Duration = Duration::from_secs(20);

async fn replicas(
    n: usize,
    redis: &RedisServer,
    jicofo: &FakeJicofo,
    foreman: &FakeForeman,
    extra: &str,
) -> Vec<Scaler> {
    let mut out = Vec::new();
    for i in 0..n {
        let cfg = format!(
            "{extra}\n{}{}",
            fast_config(&jicofo.url, &[&foreman.url]),
            redis_store(redis, &format!("r{i}"))
        );
        out.push(Scaler::start(&cfg).await);
    }
    for s in &out {
        s.eventually("a fresh reading", WAIT, |st| {
            st["jicofo"]["merged"].is_object()
        })
        .await;
    }
    out
}

async fn leader(rs: &[Scaler]) -> Option<usize> {
    for (i, s) in rs.iter().enumerate() {
        if s.status().await["leader"] == true {
            return Some(i);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setting_changed_on_one_replica_is_read_on_all() {
    let redis = RedisServer::start();
    let jicofo = FakeJicofo::start(5, 5).await;
    let foreman = FakeForeman::start().await;
    let rs = replicas(3, &redis, &jicofo, &foreman, "").await;
    assert_eq!(rs[0].post("/scaler/min", "7").await.0, 204);
    assert_eq!(rs[2].post("/scaler/bulk-max", "9").await.0, 204);
    for s in &rs {
        assert_eq!(s.get("/scaler/min").await.1, "7");
        assert_eq!(s.get("/scaler/bulk-max").await.1, "9");
    }
    let leaders: usize = {
        let mut n = 0;
        for s in &rs {
            if s.status().await["leader"] == true {
                n += 1;
            }
        }
        n
    };
    assert_eq!(leaders, 1, "exactly one leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_deficit_is_launched_once_not_once_per_replica() {
    let redis = RedisServer::start();
    let jicofo = FakeJicofo::start(0, 0).await;
    let foreman = FakeForeman::start().await;
    let rs = replicas(3, &redis, &jicofo, &foreman, "[settings]\nmin = 4\n").await;
    rs[0]
        .eventually("4 launches", WAIT, |_| foreman.creates() == 4)
        .await;
    // Many ticks later, still exactly the deficit.
    let before = jicofo.requests();
    while jicofo.requests() < before + 30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(foreman.creates(), 4, "{}", rs[0].log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_idle_removals_over_three_replicas_spends_the_budget_once() {
    let redis = RedisServer::start();
    // available = min 2 + 5
    let jicofo = FakeJicofo::start(7, 7).await;
    let foreman = FakeForeman::start().await;
    let rs = replicas(3, &redis, &jicofo, &foreman, "").await;
    let mut handles = Vec::new();
    for n in 0..1000 {
        let s = &rs[n % 3];
        let http = s.http.clone();
        let url = format!("{}/scaler/remove", s.url);
        handles.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .body(format!(r#"{{"host":"gw-{}","reason":"idle"}}"#, n % 250))
                .send()
                .await
                .ok()?;
            r.text().await.ok().map(|t| (n % 250, t))
        }));
    }
    let mut accepted = std::collections::BTreeSet::new();
    let mut keeps = 0;
    for h in handles {
        match h.await.ok().flatten() {
            Some((host, t)) if t == "accepted" => {
                accepted.insert(host);
            }
            Some((_, t)) if t == "keep" => keeps += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(
        accepted.len(),
        5,
        "exactly the budget, whatever the interleaving: {accepted:?}"
    );
    assert!(keeps > 900);
    for s in &rs {
        assert_eq!(s.status().await["ledger"]["pending_removal"], 5);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_leader_dies_another_takes_over_without_duplicates() {
    let redis = RedisServer::start();
    let jicofo = FakeJicofo::start(0, 0).await;
    let foreman = FakeForeman::start().await;
    let mut rs = replicas(3, &redis, &jicofo, &foreman, "").await;
    rs[0]
        .eventually("2 launches", WAIT, |_| foreman.creates() == 2)
        .await;
    let l = leader(&rs).await.expect("a leader");
    rs[l].kill();
    let killed = Instant::now();
    let others: Vec<usize> = (0..3).filter(|i| *i != l).collect();
    let mut new_leader = None;
    while new_leader.is_none() {
        for &i in &others {
            if rs[i].status().await["leader"] == true {
                new_leader = Some(i);
            }
        }
        assert!(killed.elapsed() < Duration::from_secs(10), "no takeover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = killed.elapsed();
    // TTL 1.5 s + one tick 0.2 s, with slack for a loaded machine.
    assert!(
        took < Duration::from_millis(1500 + 200 + 1500),
        "takeover took {took:?}"
    );
    let nl = new_leader.unwrap_or(others[0]);
    assert_eq!(rs[nl].post("/scaler/min", "4").await.0, 204);
    rs[nl]
        .eventually("2 more launches", WAIT, |_| foreman.creates() == 4)
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(foreman.creates(), 4, "no duplicates after the takeover");
    assert_eq!(foreman.host_count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_safe_and_recovers_without_restart() {
    let mut redis = RedisServer::start();
    let jicofo = FakeJicofo::start(6, 6).await;
    let foreman = FakeForeman::start().await;
    let rs = replicas(2, &redis, &jicofo, &foreman, "").await;
    assert_eq!(rs[0].post("/scaler/min", "3").await.0, 204);
    // rs[1] learns it (each tick, or on a read) before the store goes away.
    rs[1]
        .eventually("the setting seen", WAIT, |st| st["settings"]["min"] == 3)
        .await;
    redis.stop();
    rs[0]
        .eventually("not ready", WAIT, |st| st["store"]["reachable"] == false)
        .await;
    assert_eq!(rs[0].get("/ready").await.0, 503);
    // Idle keeps (the budget cannot be reserved); expired goes, queued.
    let (code, body) = rs[1]
        .post("/scaler/remove", r#"{"host":"gw-1","reason":"idle"}"#)
        .await;
    assert_eq!((code, body.as_str()), (200, "keep"));
    let (code, body) = rs[1]
        .post("/scaler/remove", r#"{"host":"gw-2","reason":"expired"}"#)
        .await;
    assert_eq!((code, body.as_str()), (200, "accepted"));
    // A deficit appears: nobody launches while the store is down.
    jicofo.set(6, 0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(foreman.creates(), 0);
    // Settings read while down: the last known value.
    assert_eq!(rs[1].get("/scaler/min").await.1, "3");
    redis.restart();
    rs[0]
        .eventually("ready again", WAIT, |st| st["store"]["reachable"] == true)
        .await;
    rs[0]
        .eventually("launches resume", WAIT, |_| foreman.creates() >= 3)
        .await;
    // The queued approval was stored.
    rs[0]
        .eventually("queued approval stored", WAIT, |st| {
            st["ledger"]["hosts"]["deleting"]
                .as_array()
                .into_iter()
                .chain(st["ledger"]["hosts"]["gone"].as_array())
                .flatten()
                .any(|h| h["host"] == "gw-2")
        })
        .await;
    assert_eq!(rs[0].get("/ready").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_embedded_to_redis_and_back() {
    let redis = RedisServer::start();
    let jicofo = FakeJicofo::start(5, 5).await;
    let foreman = FakeForeman::start().await;
    let mut s = Scaler::start(&fast_config(&jicofo.url, &[&foreman.url])).await;
    assert_eq!(s.post("/scaler/min", "6").await.0, 204);
    assert_eq!(
        s.post("/scaler/remove", r#"{"host":"gw-9","reason":"unhealthy"}"#)
            .await
            .1,
        "accepted"
    );
    s.stop();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("m.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[store]\nredis_url = \"{}\"\n",
            s.dir.path().join("data").display(),
            redis.url
        ),
    )
    .expect("write");
    let run = |from: &str, to: &str, force: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_jitsi-scaler"));
        c.args(["store", "migrate", "--config"])
            .arg(&cfg)
            .args(["--from", from, "--to", to]);
        if force {
            c.arg("--force");
        }
        c.output().expect("run")
    };
    let out = run("embedded", "redis", false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("min 6"));
    // A replica on Redis sees the copied state.
    let r = Scaler::start(&format!(
        "{}{}",
        fast_config(&jicofo.url, &[&foreman.url]),
        redis_store(&redis, "m")
    ))
    .await;
    assert_eq!(r.get("/scaler/min").await.1, "6");
    assert!(r.status().await["ledger"].to_string().contains("gw-9"));
    drop(r);
    // Back again refuses to overwrite without --force.
    let out = run("redis", "embedded", false);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert!(run("redis", "embedded", true).status.success());
}
