//! Several `serve` replicas on one real `redis-server` (SPEC §4 items 3, 7, 8; §6).

mod support;

use std::time::{Duration, Instant};

use support::{FakeForeman, FakeJicofo, RedisServer, Scaler, Stack, hosts_in, redis_store};

const WAIT: Duration = Duration::from_secs(20);

/// One Redis, one fake Jicofo and Foreman, and replicas of `serve` on them.
struct Cluster {
    redis: RedisServer,
    jicofo: FakeJicofo,
    foreman: FakeForeman,
    rs: Vec<Scaler>,
}

/// `n` replicas on a fresh Redis, Jicofo reporting (`total`, `available`), `overrides` as for
/// [`Stack`]; each replica after a fresh reading.
async fn cluster(n: usize, total: u32, available: u32, overrides: &str) -> Cluster {
    let redis = RedisServer::start();
    let (jicofo, foreman) = (
        FakeJicofo::start(total, available).await,
        FakeForeman::start().await,
    );
    let mut rs = Vec::new();
    for i in 0..n {
        let store = redis_store(&redis, &format!("r{i}"));
        let replica = format!("{overrides}\n{store}");
        let st = Stack::on(jicofo.clone(), foreman.clone(), &replica).await;
        st.s.fresh().await;
        rs.push(st.s);
    }
    Cluster {
        redis,
        jicofo,
        foreman,
        rs,
    }
}

/// The replicas that say they lead.
async fn leaders(rs: &[Scaler], among: &[usize]) -> Vec<usize> {
    let mut out = Vec::new();
    for &i in among {
        if rs[i].status().await["leader"] == true {
            out.push(i);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setting_changed_on_one_replica_is_read_on_all() {
    let c = cluster(3, 5, 5, "").await;
    c.rs[0].set("min", "7").await;
    c.rs[2].set("bulk-max", "9").await;
    for s in &c.rs {
        let [min, _, bulk_max] = s.settings().await;
        assert_eq!((min.as_str(), bulk_max.as_str()), ("7", "9"));
    }
    let all = leaders(&c.rs, &[0, 1, 2]).await;
    assert_eq!(all.len(), 1, "exactly one leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_deficit_is_launched_once_not_once_per_replica() {
    let c = cluster(3, 0, 0, "[settings]\nmin = 4\n").await;
    c.rs[0]
        .eventually("4 launches", WAIT, |_| c.foreman.creates() == 4)
        .await;
    // Many ticks later, still exactly the deficit.
    c.jicofo.wait_requests(30).await;
    assert_eq!(c.foreman.creates(), 4, "{}", c.rs[0].log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_idle_removals_over_three_replicas_spends_the_budget_once() {
    // available = min 2 + 5
    let c = cluster(3, 7, 7, "").await;
    let (accepted, keeps) = support::idle_storm(&c.rs, 1000, 250).await;
    assert_eq!(
        accepted.len(),
        5,
        "exactly the budget, whatever the interleaving: {accepted:?}"
    );
    assert!(keeps > 900);
    for s in &c.rs {
        assert_eq!(s.status().await["ledger"]["pending_removal"], 5);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_leader_dies_another_takes_over_without_duplicates() {
    let mut c = cluster(3, 0, 0, "").await;
    c.rs[0]
        .eventually("2 launches", WAIT, |_| c.foreman.creates() == 2)
        .await;
    let l = *leaders(&c.rs, &[0, 1, 2]).await.first().expect("a leader");
    c.rs[l].kill();
    let killed = Instant::now();
    let others: Vec<usize> = (0..3).filter(|i| *i != l).collect();
    let mut new_leader = None;
    while new_leader.is_none() {
        new_leader = leaders(&c.rs, &others).await.last().copied();
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
    c.rs[nl].set("min", "4").await;
    c.rs[nl]
        .eventually("2 more launches", WAIT, |_| c.foreman.creates() == 4)
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(c.foreman.creates(), 4, "no duplicates after the takeover");
    assert_eq!(c.foreman.host_count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_safe_and_recovers_without_restart() {
    let mut c = cluster(2, 6, 6, "").await;
    c.rs[0].set("min", "3").await;
    // c.rs[1] learns it (each tick, or on a read) before the store goes away.
    c.rs[1]
        .eventually("the setting seen", WAIT, |st| st["settings"]["min"] == 3)
        .await;
    c.redis.stop();
    c.rs[0]
        .eventually("not ready", WAIT, |st| st["store"]["reachable"] == false)
        .await;
    assert_eq!(c.rs[0].get("/ready").await.0, 503);
    // Idle keeps (the budget cannot be reserved); expired goes, queued.
    assert_eq!(c.rs[1].remove("gw-1", "idle").await, "keep");
    assert_eq!(c.rs[1].remove("gw-2", "expired").await, "accepted");
    // A deficit appears: nobody launches while the store is down.
    c.jicofo.set(6, 0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(c.foreman.creates(), 0);
    // Settings read while down: the last known value.
    assert_eq!(c.rs[1].settings().await[0], "3");
    c.redis.restart();
    c.rs[0]
        .eventually("ready again", WAIT, |st| st["store"]["reachable"] == true)
        .await;
    c.rs[0]
        .eventually("launches resume", WAIT, |_| c.foreman.creates() >= 3)
        .await;
    // The queued approval was stored.
    c.rs[0]
        .eventually("queued approval stored", WAIT, |st| {
            let stored = |state| hosts_in(st, state).contains(&"gw-2".to_string());
            stored("deleting") || stored("gone")
        })
        .await;
    assert_eq!(c.rs[0].get("/ready").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_embedded_to_redis_and_back() {
    let redis = RedisServer::start();
    let Stack {
        mut s,
        jicofo,
        foreman,
    } = Stack::start(5, 5, "").await;
    s.set("min", "6").await;
    assert_eq!(s.remove("gw-9", "unhealthy").await, "accepted");
    s.stop();
    let migrate = format!(
        "data_dir = \"{}\"\n[store]\nredis_url = \"{}\"\n",
        s.data_dir().display(),
        redis.url
    );
    let (_dir, cfg) = support::temp_file("m.toml", &migrate);
    let run = |from: &str, to: &str, force: bool| {
        let mut c = support::bin();
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
    let Stack { s: r, .. } = Stack::on(jicofo, foreman, &redis_store(&redis, "m")).await;
    assert_eq!(r.get("/scaler/min").await.1, "6");
    assert!(r.status().await["ledger"].to_string().contains("gw-9"));
    drop(r);
    // Back again refuses to overwrite without --force.
    let out = run("redis", "embedded", false);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert!(run("redis", "embedded", true).status.success());
}
