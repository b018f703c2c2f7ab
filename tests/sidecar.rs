//! jitsi-autoscaler's sidecar against the real `serve`: fake sidecars that
//! follow SIDECAR-PROTOCOL.md (tokens as the sidecar signs them, the docker report bodies) are
//! told to shut down exactly the surplus idle hosts, never a busy one; a host is deleted after
//! its `/sidecar/shutdown` or its silence; with 3 replicas on Redis the surplus is shut down
//! once, not three times.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::json;
use support::sidecar::{FakeSidecar, Jibri, command, sidecar_keys};
use support::{FakeForeman, FakeJicofo, RedisServer, Scaler, fast_config, redis_store, token};

const WAIT: Duration = Duration::from_secs(20);

struct Fleet {
    jicofo: FakeJicofo,
    foreman: FakeForeman,
    sidecars: Vec<FakeSidecar>,
    admin: String,
    _dir: tempfile::TempDir,
    config: String,
}

/// Five gateways sc-1..sc-5 in Foreman, each with a sidecar; Jicofo counts Foreman's hosts.
async fn fleet() -> Fleet {
    let dir = tempfile::tempdir().expect("dir");
    let (key, public, key_dir, pem) = sidecar_keys(dir.path());
    let jicofo = FakeJicofo::start(0, 0).await;
    let foreman = FakeForeman::start().await;
    let mut sidecars = Vec::new();
    for n in 1..=5 {
        let (id, ip) = (format!("sc-{n}"), format!("10.2.0.{n}"));
        foreman.insert(&id, &ip);
        // docker always says jibri; a SIP gateway's own setup may say sip-jibri: alike.
        let kind = if n == 3 { "sip-jibri" } else { "jibri" };
        sidecars.push(FakeSidecar::new(&id, &ip, kind, &pem));
    }
    {
        let mut s = jicofo.state.lock().expect("lock");
        s.follow = Some(foreman.clone());
        // 3 busy of 5: available 2 = min, no surplus yet.
        s.busy = 3;
    }
    let config = format!(
        "[settings]\nmin = 2\n{}\n[auth]\npublic_key_file = \"{}\"\nkey_dir = \"{}\"\n",
        fast_config(&jicofo.url, &[&foreman.url]).replacen(
            "[policy]\n",
            "[policy]\nsidecar_ttl = \"2s\"\nsidecar_groups = [\"docker-jibri\"]\n",
            1
        ),
        public.display(),
        key_dir.display()
    );
    Fleet {
        admin: token(&key, "scaler"),
        jicofo,
        foreman,
        sidecars,
        _dir: dir,
        config,
    }
}

/// Which sidecar reports what: sc-1 busy, the others idle.
fn jibri_of(id: &str) -> Jibri {
    if id == "sc-1" {
        Jibri::Busy
    } else {
        Jibri::Idle
    }
}

/// One reporting round of every sidecar in `alive`, each to the next replica in turn.
/// Returns the instances told to shut down.
async fn round(
    f: &Fleet,
    urls: &[String],
    alive: &BTreeSet<String>,
    n: &mut usize,
) -> BTreeSet<String> {
    let mut told = BTreeSet::new();
    for sc in f.sidecars.iter().filter(|s| alive.contains(&s.id)) {
        let url = &urls[*n % urls.len()];
        *n += 1;
        if sc.status(url, jibri_of(&sc.id), false).await {
            told.insert(sc.id.clone());
        }
    }
    told
}

async fn start(f: &Fleet, redis: Option<&RedisServer>, replicas: usize) -> Vec<Scaler> {
    let mut out = Vec::new();
    for i in 0..replicas {
        let store = redis
            .map(|r| redis_store(r, &format!("r{i}")))
            .unwrap_or_default();
        let mut s = Scaler::start(&format!("{}{store}", f.config)).await;
        s.bearer = Some(f.admin.clone());
        out.push(s);
    }
    for s in &out {
        s.eventually("a fresh reading", WAIT, |st| {
            st["jicofo"]["merged"].is_object()
        })
        .await;
    }
    out
}

/// The scenario, on one replica or several: returns every shutdown order seen.
async fn run(f: &Fleet, rs: &[Scaler]) -> BTreeMap<String, usize> {
    let urls: Vec<String> = rs.iter().map(|s| s.url.clone()).collect();
    let mut n = 0;
    let mut alive: BTreeSet<String> = f.sidecars.iter().map(|s| s.id.clone()).collect();
    // First reports: sc-1 busy, then sc-5, sc-4, sc-3, sc-2 idle (sc-5 idle longest).
    for id in ["sc-1", "sc-5", "sc-4", "sc-3", "sc-2"] {
        let sc = f.sidecars.iter().find(|s| s.id == id).expect("sidecar");
        assert!(!sc.status(&urls[n % urls.len()], jibri_of(id), false).await);
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // No surplus yet (Jicofo: available 2 = min): nobody is told, however often they ask.
    for _ in 0..3 {
        assert!(round(f, &urls, &alive, &mut n).await.is_empty());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Two calls end: available 4, a surplus of 2.
    f.jicofo.state.lock().expect("lock").busy = 1;
    let deadline = Instant::now() + WAIT;
    let told = loop {
        let told = round(f, &urls, &alive, &mut n).await;
        if !told.is_empty() || Instant::now() > deadline {
            // The order may have come in the middle of that round: one more full round.
            break round(f, &urls, &alive, &mut n).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Exactly the surplus, the two idle longest; never the busy one.
    let want: BTreeSet<String> = ["sc-4".to_string(), "sc-5".to_string()].into();
    assert_eq!(told, want);
    // They are told on every poll until gone; nobody else is, round after round.
    for _ in 0..5 {
        assert_eq!(round(f, &urls, &alive, &mut n).await, want);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let sc5 = f.sidecars.iter().find(|s| s.id == "sc-5").expect("sc-5");
    let (code, body) = sc5
        .post(&urls[0], "poll", &sc5.instance(), &sc5.token())
        .await;
    assert_eq!(code, 200);
    assert!(command(&body), "/sidecar/poll says the same");
    // sc-5's scripts run (shutdownStatus true in its reports), then docker's terminate script
    // sends /sidecar/shutdown: its host is deleted.
    assert!(sc5.status(&urls[0], Jibri::Idle, true).await);
    let (code, body) = sc5
        .post(
            &urls[n % urls.len()],
            "shutdown",
            &sc5.instance(),
            &sc5.token(),
        )
        .await;
    assert_eq!((code, body.as_str()), (200, r#"{"save":"OK"}"#));
    alive.remove("sc-5");
    let deadline = Instant::now() + WAIT;
    while !f.foreman.deletes().contains(&"sc-5".to_string()) {
        assert!(Instant::now() < deadline, "sc-5 not deleted");
        round(f, &urls, &alive, &mut n).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(f.foreman.deletes(), ["sc-5"], "sc-4 is still draining");
    // sc-4 goes down without a /sidecar/shutdown (the container stopped first): its silence
    // past the TTL (2 s) means gone. The others keep reporting and are never told.
    alive.remove("sc-4");
    let deadline = Instant::now() + WAIT;
    while !f.foreman.deletes().contains(&"sc-4".to_string()) {
        assert!(
            Instant::now() < deadline,
            "sc-4 not deleted after its silence"
        );
        assert!(round(f, &urls, &alive, &mut n).await.is_empty());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    for _ in 0..5 {
        assert!(round(f, &urls, &alive, &mut n).await.is_empty());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(f.foreman.deletes(), ["sc-5", "sc-4"]);
    // Every shutdown order in the decision logs of all replicas.
    let mut orders = BTreeMap::new();
    for s in rs {
        for d in s.status().await["recent_decisions"]
            .as_array()
            .expect("decisions")
        {
            if d["kind"] == "sidecar" && d["outcome"] == "shutdown" {
                *orders
                    .entry(d["host"].as_str().unwrap_or_default().to_string())
                    .or_insert(0) += 1;
            }
        }
    }
    orders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_surplus_idle_hosts_are_shut_down_and_deleted_never_a_busy_one() {
    let f = fleet().await;
    let rs = start(&f, None, 1).await;
    let base = &rs[0].url;
    let sc1 = &f.sidecars[0];
    // The protocol's other answers first: stats saves; a bad token is 401 with a text body;
    // another instance's id is 403; a malformed body is 400.
    let webhook = json!({"instance": sc1.instance(), "timestamp": 1, "shutdownStatus": false,
        "stats": {"jibriId": "sc-1", "status": {"busyStatus": "BUSY",
                  "health": {"healthStatus": "HEALTHY"}}}, "statsError": false});
    let (code, body) = sc1.post(base, "stats", &webhook, &sc1.token()).await;
    assert_eq!((code, body.as_str()), (200, r#"{"save":"OK"}"#));
    let (code, body) = sc1.post(base, "poll", &sc1.instance(), "x.y.z").await;
    assert_eq!(code, 401);
    assert!(body.starts_with("invalid token"), "{body}");
    let (code, _) = sc1.post(base, "poll", &sc1.instance(), &f.admin).await;
    assert_eq!(
        code, 401,
        "an admin token is not a sidecar token (no kid, no iss/aud)"
    );
    let sc2 = &f.sidecars[1];
    let (code, _) = sc2.post(base, "poll", &sc1.instance(), &sc2.token()).await;
    assert_eq!(code, 403, "sc-2's address speaks for sc-1");
    let (code, _) = sc1
        .post(base, "status", &json!({"stats": {}}), &sc1.token())
        .await;
    assert_eq!(code, 400);
    // An unknown instance's poll: no command, nothing recorded.
    let ghost = FakeSidecar::new(
        "sc-9",
        "10.2.0.9",
        "jibri",
        &std::fs::read(f._dir.path().join("asap.key")).expect("pem"),
    );
    let (code, body) = ghost
        .post(base, "poll", &ghost.instance(), &ghost.token())
        .await;
    assert_eq!(code, 200);
    assert!(!command(&body));

    // A sidecar of another group (recording Jibris pointed here by mistake) is told nothing
    // and never enters the ledger, however idle it is.
    let mut report = ghost.report(Jibri::Idle, false);
    report["instance"]["group"] = json!("recorders");
    let (code, body) = ghost.post(base, "status", &report, &ghost.token()).await;
    assert_eq!(code, 200);
    assert!(!command(&body));
    assert!(
        !rs[0].status().await["ledger"]["hosts"]
            .to_string()
            .contains("sc-9")
    );

    let orders = run(&f, &rs).await;
    assert_eq!(
        orders,
        BTreeMap::from([("sc-4".to_string(), 1), ("sc-5".to_string(), 1)])
    );
    let st = rs[0].status().await;
    let row = st["ledger"]["hosts"]["gone"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["host"] == "sc-4").cloned())
        .expect("sc-4 gone");
    assert_eq!(row["drain"], "sidecar");
    assert!(
        rs[0].log().contains("silent"),
        "the silence is in the decision log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_redis_shut_the_surplus_down_once() {
    let f = fleet().await;
    let redis = RedisServer::start();
    let rs = start(&f, Some(&redis), 3).await;
    let orders = run(&f, &rs).await;
    // Once each across the three replicas, not once per replica.
    assert_eq!(
        orders,
        BTreeMap::from([("sc-4".to_string(), 1), ("sc-5".to_string(), 1)])
    );
    assert_eq!(f.foreman.deletes(), ["sc-5", "sc-4"]);
}

/// With the shared store down, every sidecar route still answers a 2xx within the sidecar's
/// 3 s, from the last known ledger: a host told to shut down is still told, the others not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_store_down_the_answers_come_from_the_last_known_ledger() {
    let f = fleet().await;
    let mut redis = RedisServer::start();
    let rs = start(&f, Some(&redis), 1).await;
    let url = rs[0].url.clone();
    let sc = |id: &str| f.sidecars.iter().find(|s| s.id == id).expect("sidecar");
    for id in ["sc-1", "sc-5", "sc-4", "sc-3", "sc-2"] {
        sc(id).status(&url, jibri_of(id), false).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f.jicofo.state.lock().expect("lock").busy = 1;
    let deadline = Instant::now() + WAIT;
    while !sc("sc-5").status(&url, Jibri::Idle, false).await {
        assert!(Instant::now() < deadline, "sc-5 never told");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    redis.stop();
    for _ in 0..3 {
        let started = Instant::now();
        assert!(sc("sc-5").status(&url, Jibri::Idle, true).await);
        assert!(!sc("sc-2").status(&url, Jibri::Idle, false).await);
        assert!(!sc("sc-1").status(&url, Jibri::Busy, false).await);
        let (code, _) = sc("sc-3")
            .post(
                &url,
                "stats",
                &sc("sc-3").report(Jibri::Idle, false),
                &sc("sc-3").token(),
            )
            .await;
        assert!((200..300).contains(&code), "{code}");
        assert!(
            started.elapsed() < Duration::from_secs(9),
            "3 requests, each under 3 s"
        );
    }
}
