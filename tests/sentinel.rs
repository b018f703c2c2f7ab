//! Redis Sentinel failover under three `serve` replicas: real `redis-server` and Sentinel
//! processes on loopback (1 primary, 1 replica, 3 Sentinels), the primary killed with SIGKILL.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::{FakeForeman, FakeJicofo, RedisServer, Scaler, SentinelServer, Stack, hosts_in};

/// The name the Sentinels monitor the primary under.
const MASTER: &str = "scaler";
/// Sentinel timings: the primary is down after 1 s of silence.
const DOWN_AFTER: Duration = Duration::from_millis(1000);
const FAILOVER_TIMEOUT: Duration = Duration::from_millis(4000);
/// The replicas' tick (tests/support's fast config).
const TICK: Duration = Duration::from_millis(200);
/// Every wait of these tests: generous, for a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(30);

/// Both tests start five Redis processes and three replicas: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A primary, its replica, three Sentinels, fake Jicofo and Foreman, and three replicas of
/// `serve` on them.
struct Site {
    primary: RedisServer,
    replica: RedisServer,
    sentinels: Vec<SentinelServer>,
    jicofo: FakeJicofo,
    foreman: FakeForeman,
    rs: Vec<Scaler>,
}

/// The `[store]` of a replica on these Sentinels.
fn sentinel_store(sentinels: &[SentinelServer], replica: &str) -> String {
    let list: Vec<String> = sentinels
        .iter()
        .map(|s| format!("{:?}", s.addr()))
        .collect();
    format!(
        "\n[store]\nbackend = \"redis\"\nsentinels = [{}]\nsentinel_master = \"{MASTER}\"\n\
         min_replicas_acked = 1\nack_timeout = \"500ms\"\nreplica = \"{replica}\"\n\
         lease_ttl = \"1500ms\"\ntimeout = \"500ms\"\n",
        list.join(", ")
    )
}

async fn poll(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn site(total: u32, available: u32, overrides: &str) -> Site {
    let primary = RedisServer::start();
    let replica = RedisServer::start_replica_of(primary.port);
    let sentinels: Vec<SentinelServer> = (0..3)
        .map(|_| SentinelServer::start(MASTER, primary.port, DOWN_AFTER, FAILOVER_TIMEOUT))
        .collect();
    // A failover needs the Sentinels to know each other and the replica (hello messages).
    for s in &sentinels {
        poll("the Sentinels to find each other", WAIT, || {
            s.master_field("num-other-sentinels").as_deref() == Some("2")
                && s.master_field("num-slaves").as_deref() == Some("1")
        })
        .await;
    }
    poll("the replica in sync", WAIT, || {
        replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
    })
    .await;
    let (jicofo, foreman) = (
        FakeJicofo::start(total, available).await,
        FakeForeman::start().await,
    );
    let mut rs = Vec::new();
    for i in 0..3 {
        let config = format!(
            "{overrides}\n{}",
            sentinel_store(&sentinels, &format!("r{i}"))
        );
        let st = Stack::on(jicofo.clone(), foreman.clone(), &config).await;
        st.s.fresh().await;
        rs.push(st.s);
    }
    Site {
        primary,
        replica,
        sentinels,
        jicofo,
        foreman,
        rs,
    }
}

/// What a failover took, from the kill of the primary.
struct Failover {
    /// Until every Sentinel names the replica as the primary.
    promoted: Duration,
    /// Until the old primary, back as a replica, is in sync (writes can be confirmed again).
    confirmed: Duration,
}

/// Kills the primary (SIGKILL), waits for the Sentinels to promote the replica, then starts
/// the old primary again as a replica of the new one (as an operator or systemd would bring
/// it back). Swaps the roles in `site`.
async fn fail_over(site: &mut Site, killed: Instant) -> Failover {
    let new = site.replica.port;
    poll("the Sentinels to promote the replica", WAIT, || {
        site.sentinels.iter().all(|s| s.primary() == Some(new))
    })
    .await;
    let promoted = killed.elapsed();
    site.primary.restart_as_replica_of(new);
    std::mem::swap(&mut site.primary, &mut site.replica);
    poll("the old primary back in sync as a replica", WAIT, || {
        site.replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
    })
    .await;
    Failover {
        promoted,
        confirmed: killed.elapsed(),
    }
}

async fn ready(s: &Scaler) -> bool {
    s.get("/ready").await.0 == 200
}

/// Waits until every replica is ready; how long that took from `since`.
async fn all_ready(rs: &[Scaler], since: Instant) -> Duration {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut all = true;
        for s in rs {
            all &= ready(s).await;
        }
        if all {
            return since.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "not every replica ready again; r0:\n{}",
            rs[0].log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One answer of the storm.
struct Answer {
    host: usize,
    answer: String,
    sent: Instant,
    answered: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_primary_during_a_remove_me_storm_loses_no_approval() {
    let _one = SERIAL.lock().await;
    // available 40, min 2: an idle budget of 38 over 60 hosts; drains are confirmed, so an
    // approval stays on the books (pending) for the whole test.
    let (total, available, min) = (40u32, 40u32, 2u32);
    let mut site = site(total, available, "drain_confirm = true\n").await;
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let answers = Arc::new(std::sync::Mutex::new(Vec::<Answer>::new()));
    let mut workers = Vec::new();
    // One worker per replica; each asks for the next host, every host about twice per round.
    for s in &site.rs {
        let (http, url) = (s.http.clone(), format!("{}/scaler/remove", s.url));
        let (stop, next, answers) = (stop.clone(), next.clone(), answers.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let host = (next.fetch_add(1, Ordering::Relaxed) / 2) % 60;
                let body = format!(r#"{{"host":"gw-{host}","reason":"idle"}}"#);
                let sent = Instant::now();
                let r = http.post(&url).body(body).send().await;
                let text = match r {
                    Ok(r) => r.text().await.unwrap_or_default(),
                    Err(e) => format!("error: {e}"),
                };
                answers.lock().expect("lock").push(Answer {
                    host,
                    answer: text,
                    sent,
                    answered: Instant::now(),
                });
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        }));
    }
    // Kill the primary once part of the budget is spent.
    poll("approvals before the kill", WAIT, || {
        let answers = answers.lock().expect("lock");
        let hosts: BTreeSet<usize> = answers
            .iter()
            .filter(|a| a.answer == "accepted")
            .map(|a| a.host)
            .collect();
        hosts.len() >= 10
    })
    .await;
    site.primary.stop();
    let killed = Instant::now();
    // Calls take all but one idle gateway at the same moment: the idle budget closes (only
    // repeats of approvals are still accepted), and launches are owed: the floor's one, and
    // one per approval Jicofo still counts.
    site.jicofo.set(total, 1);
    let before: BTreeSet<usize> = answers
        .lock()
        .expect("lock")
        .iter()
        .filter(|a| a.answer == "accepted" && a.answered <= killed)
        .map(|a| a.host)
        .collect();
    // While no primary is known: not ready.
    let mut saw_not_ready = false;
    let deadline = Instant::now() + WAIT;
    while !saw_not_ready && Instant::now() < deadline {
        saw_not_ready = site.rs[0].get("/ready").await.0 == 503;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_not_ready, "/ready stayed 200 without a primary");
    let f = fail_over(&mut site, killed).await;
    let recovered = all_ready(&site.rs, killed).await;
    let launched = {
        let deadline = Instant::now() + WAIT;
        while site.foreman.creates() == 0 {
            assert!(
                Instant::now() < deadline,
                "no launch after the failover:\n{}",
                site.rs[0].log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        killed.elapsed()
    };
    // The storm goes on a little after the recovery, then stops.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let answers = std::mem::take(&mut *answers.lock().expect("lock"));
    for a in &answers {
        assert!(
            a.answer == "accepted" || a.answer == "keep",
            "unexpected answer {:?} for gw-{}",
            a.answer,
            a.host
        );
    }
    let accepted: BTreeSet<usize> = answers
        .iter()
        .filter(|a| a.answer == "accepted")
        .map(|a| a.host)
        .collect();
    let during = answers
        .iter()
        .filter(|a| a.sent > killed && a.answered < killed + recovered)
        .count();
    // New approvals while no primary could confirm a write (a repeat of an approval stored
    // before the kill may be answered `accepted` by a replica that already reached the
    // promoted primary: it writes nothing).
    let during_accepted = answers
        .iter()
        .filter(|a| {
            a.sent > killed
                && a.answered < killed + f.promoted
                && a.answer == "accepted"
                && !before.contains(&a.host)
        })
        .count();
    // Every approval answered before the kill is still on the books after the failover, on
    // every replica.
    let (mut pending, mut unanswered) = (0, 0);
    for s in &site.rs {
        let st = s.status().await;
        let approved: BTreeSet<usize> = hosts_in(&st, "draining")
            .iter()
            .chain(hosts_in(&st, "deleting").iter())
            .filter_map(|h| h.strip_prefix("gw-").and_then(|n| n.parse().ok()))
            .collect();
        let missing: Vec<&usize> = before.difference(&approved).collect();
        assert!(
            missing.is_empty(),
            "approvals lost in the failover: {missing:?}"
        );
        // Every approval answered is on the books; the books may hold one more whose
        // confirmation was cut by the kill (answered `keep`, harmless: a drain is confirmed).
        assert!(
            accepted.is_subset(&approved),
            "answered but not on the books: {:?}",
            accepted.difference(&approved).collect::<Vec<_>>()
        );
        unanswered = approved.difference(&accepted).count();
        pending = st["ledger"]["pending_removal"].as_u64().unwrap_or(0);
    }
    // The budget: never more idle approvals than available - min (40 - 2 before the calls,
    // none after them).
    assert!(
        accepted.len() as u32 <= available - min,
        "budget exceeded: {} approvals",
        accepted.len()
    );
    // No new idle approval while no primary could confirm it (the store-down rule).
    assert_eq!(during_accepted, 0, "idle approved without a primary");
    // Launches: the one owed for the call plus one per approval Jicofo still counts, each
    // once (not once per replica, nor again by a second leader after the failover).
    let owed = u64::from(min) - 1 + pending;
    let deadline = Instant::now() + WAIT;
    while site.foreman.creates() < owed && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    site.jicofo.wait_requests(10).await;
    let creates = site.foreman.creates();
    assert_eq!(
        creates,
        owed,
        "launched {creates} for a deficit of {owed}:\n{}",
        site.rs[0].log()
    );
    assert_eq!(
        site.foreman.host_count() as u64,
        creates,
        "a host launched twice"
    );
    let bound = f.confirmed + 2 * TICK;
    println!(
        "sentinel failover during a storm: {} answers ({} while recovering), {} approvals \
         ({} before the kill, none lost; {unanswered} on the books answered keep), budget {} of {}, launches {creates} for a deficit of \
         {owed} (none twice); promoted after {:?}, writes confirmable after {:?}, every replica \
         ready after {recovered:?}, first launch after {launched:?} (failover + 2 ticks = {bound:?})",
        answers.len(),
        during,
        accepted.len(),
        before.len(),
        accepted.len(),
        available - min,
        f.promoted,
        f.confirmed,
    );
    // Generous slack for a loaded machine: the tick and the lease renewal run on timers.
    let slack = Duration::from_secs(3);
    assert!(
        launched <= bound + slack,
        "first launch after {launched:?}, failover + 2 ticks = {bound:?}"
    );
    assert!(
        recovered <= bound + slack,
        "replicas ready after {recovered:?}, failover + 2 ticks = {bound:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_while_idle_costs_no_launch_and_no_approval() {
    let _one = SERIAL.lock().await;
    let mut site = site(5, 5, "").await;
    let leader_before = {
        let mut leader = None;
        let deadline = Instant::now() + WAIT;
        while leader.is_none() {
            for (i, s) in site.rs.iter().enumerate() {
                if s.status().await["leader"] == true {
                    leader = Some(i);
                }
            }
            assert!(Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        leader
    };
    let writes_before = site.rs[0].status().await["store"]["generation"].clone();
    site.primary.stop();
    let killed = Instant::now();
    // No primary known: every replica says so on /ready.
    for s in &site.rs {
        let deadline = Instant::now() + WAIT;
        while s.get("/ready").await.0 != 503 {
            assert!(
                Instant::now() < deadline,
                "/ready stayed 200 without a primary"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let (code, body) = site.rs[1].get("/ready").await;
    assert_eq!(code, 503, "{body}");
    let f = fail_over(&mut site, killed).await;
    let recovered = all_ready(&site.rs, killed).await;
    for s in &site.rs {
        assert_eq!(s.get("/ready").await.0, 200);
    }
    // Several ticks later: nothing launched, nothing approved, the state as it was.
    site.jicofo.wait_requests(10).await;
    assert_eq!(site.foreman.creates(), 0, "{}", site.rs[0].log());
    let mut leaders = 0;
    for s in &site.rs {
        let st = s.status().await;
        assert_eq!(st["ledger"]["pending_removal"], 0);
        assert_eq!(st["ledger"]["in_flight"], 0);
        assert_eq!(st["store"]["generation"], writes_before);
        leaders += usize::from(st["leader"] == true);
    }
    assert_eq!(leaders, 1, "exactly one leader after the failover");
    println!(
        "sentinel failover while idle: leader before r{}, promoted after {:?}, writes \
         confirmable after {:?}, every replica ready after {recovered:?}; 0 launches, 0 approvals",
        leader_before.unwrap_or(0),
        f.promoted,
        f.confirmed,
    );
}

#[test]
fn the_example_sentinel_setup_is_a_valid_config() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sentinel");
    let out = support::run_with_config(&["config", "check"], &root.join("scaler.toml"));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The secrets are masked, the Sentinel keys are read.
    assert!(!printed.contains("SENTINEL_PASSWORD"), "{printed}");
    assert!(!printed.contains("REDIS_PASSWORD"), "{printed}");
    assert!(printed.contains("10.0.1.10:26379"), "{printed}");
    // The Sentinels monitor the name the scalers ask for.
    let sentinel = std::fs::read_to_string(root.join("sentinel.conf")).expect("sentinel.conf");
    assert!(sentinel.contains("sentinel monitor jitsi-scaler 10.0.0.5 6379 2"));
    let replica = std::fs::read_to_string(root.join("redis-replica.conf")).expect("replica");
    assert!(replica.contains("replicaof 10.0.0.5 6379"));
}
