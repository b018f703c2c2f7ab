//! Target mode in `serve`: the real binary against a fake Jicofo and Foreman.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{FakeForeman, FakeJicofo, RedisServer, Scaler, fast_config, redis_store};

const WAIT: Duration = Duration::from_secs(20);

fn target_config(jicofo: &str, foreman: &str, extra_capacity: &str) -> String {
    fast_config(jicofo, &[foreman]).replace(
        "mode = \"fixed\"",
        &format!(
            "mode = \"target\"\ntarget_rejection = \"1%\"\ndefault_boot = \"1s\"\n{extra_capacity}"
        ),
    )
}

fn eff(s: &Value) -> u64 {
    s["capacity"]["sizing"]["effective_min"]
        .as_u64()
        .unwrap_or(0)
}

/// Replaces the schedules through the API (admin) and checks the 204.
async fn put_schedule(s: &Scaler, sched: &str) {
    let (code, body) = s
        .send(reqwest::Method::PUT, "/scaler/capacity/schedule", sched)
        .await;
    assert_eq!(code, 204, "{body}");
}

/// `serve` in target mode with floor 1 and `max`.
async fn target_scaler(jicofo: &FakeJicofo, foreman: &FakeForeman, max: u32) -> Scaler {
    Scaler::start(&format!(
        "[settings]\nmin = 1\nmax = {max}\n{}",
        target_config(&jicofo.url, &foreman.url, "")
    ))
    .await
}

/// Busy gateways ramp up (one more every 300 ms): the effective min rises above the floor
/// before the available count reaches zero, with one decision line per change. The short
/// window is 2 s, the ramp's time scale (a window not yet full counts its calls over its whole
/// length, so the default 10 minutes would read this 9 s ramp as 30 calls in 10 minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_effective_min_rises_before_available_reaches_zero() {
    let jicofo = FakeJicofo::start(30, 30).await;
    let foreman = FakeForeman::start().await;
    let s = Scaler::start(&format!(
        "[settings]\nmin = 1\nmax = 200\n{}",
        target_config(&jicofo.url, &foreman.url, "short_window = \"2s\"\n")
    ))
    .await;
    s.eventually("a first sizing", WAIT, |st| eff(st) >= 1)
        .await;
    assert_eq!(eff(&s.status().await), 1, "no demand yet: the floor");
    let ramp = {
        let jicofo = jicofo.clone();
        tokio::spawn(async move {
            for busy in 1..=30 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                jicofo.set(30, 30 - busy);
            }
        })
    };
    let deadline = Instant::now() + WAIT;
    let (min_seen, available_then) = loop {
        let st = s.status().await;
        let available = jicofo.state.lock().expect("lock").available;
        if eff(&st) >= 3 {
            break (eff(&st), available);
        }
        assert!(
            Instant::now() < deadline,
            "no rise: {st:#}\nlog:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(available_then > 0, "rose to {min_seen} only at available 0");
    let _ = ramp.await;
    let st = s.status().await;
    let sizing = &st["capacity"]["sizing"];
    // Learned, or held there for a lead window once the 2 s window has seen the ramp end.
    assert!(
        sizing["source"] == "learned" || sizing["source"] == "hold",
        "{sizing}"
    );
    assert!(sizing["rate"]["rate_per_hour"].as_f64().unwrap_or(0.0) > 1000.0);
    let lines: Vec<&Value> = st["recent_decisions"]
        .as_array()
        .map(|a| a.iter().filter(|d| d["kind"] == "capacity").collect())
        .unwrap_or_default();
    assert!(!lines.is_empty(), "no capacity decision line");
    assert!(
        lines.iter().any(|d| d["why"]
            .as_str()
            .is_some_and(|w| w.contains("source learned") && w.contains("offered load"))),
        "{lines:?}"
    );
    // Launches follow the effective min (more than the floor's one).
    assert!(foreman.creates() >= 3, "{}", foreman.creates());
    let (code, metrics) = s.get("/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("jitsi_scaler_capacity_effective_min_source{source=\"learned\"} 1")
            || metrics.contains("jitsi_scaler_capacity_effective_min_source{source=\"hold\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("jitsi_scaler_capacity_lead_seconds"));
}

/// Schedules through the API (admin): replaced as JSON, read back, applied; bad input is a 400
/// that changes nothing. `min`'s cap follows `max`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_replaced_through_the_api_and_min_follows_max() {
    let jicofo = FakeJicofo::start(10, 10).await;
    let foreman = FakeForeman::start().await;
    let s = target_scaler(&jicofo, &foreman, 150).await;
    let (code, body) = s.get("/scaler/capacity/schedule").await;
    assert_eq!((code, body.as_str()), (200, "[]"));
    // Every day, all day: at least 4 spares.
    let sched = r#"[{"days":"daily","from":"00:00","to":"24:00","min":4,"tz":"Europe/Berlin"}]"#;
    put_schedule(&s, sched).await;
    let st = s
        .eventually("the schedule in force", WAIT, |st| eff(st) == 4)
        .await;
    assert_eq!(st["capacity"]["sizing"]["source"], "schedule");
    let (_, body) = s.get("/scaler/capacity/schedule").await;
    let back: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(back[0]["min"], 4);
    for bad in [
        r#"[{"days":"someday","from":"00:00","to":"24:00","min":4}]"#,
        r#"[{"days":"mon","from":"10:00","to":"11:00","min":400}]"#,
        r#"[{"days":"mon","from":"10:00","to":"11:00","min":4,"tz":"Nowhere/Atlantis"}]"#,
        r#"{"days":"mon"}"#,
        "not json",
    ] {
        let (code, why) = s
            .send(reqwest::Method::PUT, "/scaler/capacity/schedule", bad)
            .await;
        assert_eq!(code, 400, "{bad}: {why}");
    }
    let (_, body) = s.get("/scaler/capacity/schedule").await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("JSON"),
        back,
        "nothing changed"
    );
    // min up to max (150), not 100.
    assert_eq!(s.post("/scaler/min", "120").await.0, 204);
    assert_eq!(s.post("/scaler/min", "151").await.0, 400);
}

/// Writes a seed profile (30 calls per hour for two days, via `capacity seed`) into `dir`.
fn seed_file(dir: &std::path::Path) -> std::path::PathBuf {
    let trace = dir.join("calls.csv");
    let mut csv = String::from("arrival_s,duration_s\n");
    for i in 0..(48 * 30) {
        csv.push_str(&format!("{},600\n", i * 120));
    }
    std::fs::write(&trace, csv).expect("write trace");
    let seed = dir.join("profile.json");
    support::succeed(
        support::bin()
            .args(["capacity", "seed", "--trace"])
            .arg(&trace)
            .arg("--out")
            .arg(&seed),
    );
    seed
}

/// Two replicas on Redis share the learned profile and the schedules: the leader stores its
/// seeded profile, the other replica reads it; a schedule set on the follower reaches the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_redis_share_the_profile_and_the_schedule() {
    let redis = RedisServer::start();
    let jicofo = FakeJicofo::start(10, 10).await;
    let foreman = FakeForeman::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let seed = seed_file(dir.path());
    let hours = |st: &Value| st["capacity"]["hours_learned"].as_f64().unwrap_or(0.0);
    let r0 = Scaler::start(&format!(
        "[settings]\nmin = 1\n{}{}",
        target_config(
            &jicofo.url,
            &foreman.url,
            &format!("seed_profile = {:?}", seed.display().to_string())
        ),
        redis_store(&redis, "r0")
    ))
    .await;
    let st = r0
        .eventually("r0 leads", WAIT, |st| st["leader"] == true)
        .await;
    let learned = hours(&st);
    assert!(learned >= 47.0, "{learned}");
    let r1 = Scaler::start(&format!(
        "[settings]\nmin = 1\n{}{}",
        target_config(&jicofo.url, &foreman.url, ""),
        redis_store(&redis, "r1")
    ))
    .await;
    r1.eventually("r1 has the profile", WAIT, |st| hours(st) == learned)
        .await;
    let sched = r#"[{"days":"daily","from":"00:00","to":"24:00","min":5}]"#;
    put_schedule(&r1, sched).await;
    let st = r0
        .eventually("the leader holds the schedule", WAIT, |st| eff(st) == 5)
        .await;
    assert_eq!(st["capacity"]["schedule"][0]["min"], 5);
}

/// A seeded profile goes to the store and survives a restart, even when the seed file is
/// replaced by an empty profile (the store has more learning).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_learned_profile_survives_a_restart() {
    let jicofo = FakeJicofo::start(10, 10).await;
    let foreman = FakeForeman::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let seed = seed_file(dir.path());
    let mut s = Scaler::start(&format!(
        "[settings]\nmin = 1\n{}",
        target_config(
            &jicofo.url,
            &foreman.url,
            &format!("seed_profile = {:?}", seed.display().to_string())
        )
    ))
    .await;
    let hours = |st: &Value| st["capacity"]["hours_learned"].as_f64().unwrap_or(0.0);
    let st = s
        .eventually("the seed learned", WAIT, |st| hours(st) >= 47.0)
        .await;
    let learned = hours(&st);
    // 30 calls per hour: the next hour's forecast comes from the profile.
    let next = st["capacity"]["sizing"]["next_hour_per_hour"]
        .as_f64()
        .unwrap_or(0.0);
    assert!((next - 30.0).abs() < 1.0, "{next}");
    // Let a tick store it, then replace the seed by an empty profile and restart.
    s.eventually("a few ticks", WAIT, |st| {
        st["store"]["writes"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let empty = serde_json::json!({"version": 1, "rate": vec![0.0; 168], "weight": vec![0.0; 168],
        "feedback": vec![1.0; 168], "busy_ms": 0.0, "arrivals": 0.0});
    std::fs::write(&seed, empty.to_string()).expect("write empty profile");
    s.restart().await;
    let st = s.eventually("back up", WAIT, |st| eff(st) >= 1).await;
    assert_eq!(
        hours(&st),
        learned,
        "the stored profile won over the empty seed"
    );
}

/// The spare count `jitsi-scaler plan` gives for `calls` calls in 10 minutes with the lead
/// `serve` uses before any boot is measured (default boot + one tick + one poll).
fn plan_for(calls: u32, lead: &str) -> u64 {
    let out = support::succeed(support::bin().args([
        "plan",
        "--rate",
        &format!("{}/h", calls * 6),
        "--lead",
        lead,
        "--target",
        "1%",
        "--json",
    ]));
    let v: Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    v["spare"].as_u64().expect("spare")
}

/// A fresh start at the default settings (`min` 2, `max` 200; 2 min boots assumed), then 6
/// calls appear in one Jicofo reading 1 s or 20 s later: the effective min never goes above
/// what `plan` gives for 6 calls in 10 minutes (it used to read 21578 calls/h and size up to
/// `max`). And `serve` started while calls run launches nothing beyond the floor: the calls
/// already running are a baseline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_one_reading_after_a_start_are_a_few_calls_not_a_rate() {
    let bound = plan_for(6, "120400ms").max(2);
    for gap in [Duration::from_secs(1), Duration::from_secs(20)] {
        let jicofo = FakeJicofo::start(2, 2).await;
        let foreman = FakeForeman::start().await;
        let config = target_config(&jicofo.url, &foreman.url, "")
            .replace("default_boot = \"1s\"", "default_boot = \"2m\"");
        let s = Scaler::start(&config).await;
        s.eventually("a first sizing", WAIT, |st| eff(st) >= 2)
            .await;
        tokio::time::sleep(gap).await;
        jicofo.set(8, 2);
        let mut highest = 0;
        for _ in 0..30 {
            highest = highest.max(eff(&s.status().await));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            highest <= bound,
            "6 calls {gap:?} after the start raised the effective min to {highest} (plan: {bound})\n{}",
            s.log()
        );
        println!("6 calls {gap:?} after a start: effective min at most {highest}, plan {bound}");
    }
    // Started while 6 calls run: nothing to launch (2 available = min), and nothing launched.
    let jicofo = FakeJicofo::start(8, 2).await;
    let foreman = FakeForeman::start().await;
    let config = target_config(&jicofo.url, &foreman.url, "")
        .replace("default_boot = \"1s\"", "default_boot = \"2m\"");
    let s = Scaler::start(&config).await;
    s.fresh().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let st = s.status().await;
    assert_eq!(eff(&st), 2, "{}", st["capacity"]);
    assert_eq!(foreman.creates(), 0, "{}", s.log());
}

/// The component selector as a demand source: `serve` reads its `/metrics` (prom-client text)
/// each tick and adds the session starts it refused (400, no idle gateway) to Jicofo's SIP call
/// failures, which target mode counts as calls turned away; status shows both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_component_selectors_refused_session_starts_are_heard() {
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(3));
    let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (r, f) = (refused.clone(), failing.clone());
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let n = r.load(std::sync::atomic::Ordering::Relaxed);
            let fail = f.load(std::sync::atomic::Ordering::Relaxed);
            async move {
                if fail {
                    return Err(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
                }
                Ok(format!(
                    "# TYPE http_server_requests_total counter\n\
                     http_server_requests_total{{method=\"post\",uri=\"/jitsi-component-selector/sessions/start\",code=\"200\"}} 41\n\
                     http_server_requests_total{{method=\"post\",uri=\"/jitsi-component-selector/sessions/start\",code=\"400\"}} {n}\n"
                ))
            }
        }),
    );
    let selector = support::serve_on_loopback(app).await;
    let jicofo = FakeJicofo::start(4, 2).await;
    let foreman = FakeForeman::start().await;
    let s = Scaler::start(&format!(
        "[settings]\nmin = 1\nmax = 20\n{}",
        target_config(
            &jicofo.url,
            &foreman.url,
            &format!("selector_metrics_url = \"http://{selector}/metrics\"\n")
        )
    ))
    .await;
    s.eventually("the selector heard", WAIT, |st| {
        st["capacity"]["selector"]["refused"] == 3
            && st["capacity"]["selector"]["session_starts"] == 44
            && st["capacity"]["jicofo_sip_calls"]["failures"] == 3
    })
    .await;
    // A failed read keeps the last counts: the sum never dips (a dip and the rise after it
    // would read as a call turned away).
    failing.store(true, std::sync::atomic::Ordering::Relaxed);
    let until = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < until {
        let st = s.status().await;
        assert_eq!(
            st["capacity"]["jicofo_sip_calls"]["failures"], 3,
            "{}",
            st["capacity"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let st = s.status().await;
    assert!(
        st["capacity"]["selector"]["error"].is_string(),
        "{}",
        st["capacity"]
    );
    failing.store(false, std::sync::atomic::Ordering::Relaxed);
    refused.store(5, std::sync::atomic::Ordering::Relaxed);
    s.eventually("a new refusal counted", WAIT, |st| {
        st["capacity"]["jicofo_sip_calls"]["failures"] == 5
    })
    .await;
}

/// Jicofo's `jibri` object as Jicofo writes it (`JibriStats`: every session counter): `serve`
/// reads the SIP call failures and pending calls of each reading, shows them in status, and
/// follows the counter as it rises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jicofos_sip_call_failures_and_pending_calls_are_read() {
    let jibri = |failures: u64, pending: u64| {
        serde_json::json!({
            "total_sip_call_failures": failures, "live_streaming_pending": 0,
            "recording_pending": 0, "live_streaming_active": 0, "total_recording_failures": 0,
            "sip_call_pending": pending, "sip_call_active": 3,
            "total_live_streaming_failures": 0, "recording_active": 0
        })
    };
    let jicofo = FakeJicofo::start(4, 1).await;
    jicofo.state.lock().expect("lock").jibri = Some(jibri(2, 0));
    let foreman = FakeForeman::start().await;
    let s = Scaler::start(&format!(
        "[settings]\nmin = 1\nmax = 20\n{}",
        target_config(&jicofo.url, &foreman.url, "")
    ))
    .await;
    s.eventually("Jicofo's SIP call counters", WAIT, |st| {
        st["capacity"]["jicofo_sip_calls"]["failures"] == 2
            && st["capacity"]["jicofo_sip_calls"]["pending"] == 0
    })
    .await;
    jicofo.state.lock().expect("lock").jibri = Some(jibri(5, 2));
    s.eventually("a failure and pending calls", WAIT, |st| {
        st["capacity"]["jicofo_sip_calls"]["failures"] == 5
            && st["capacity"]["jicofo_sip_calls"]["pending"] == 2
    })
    .await;
}
