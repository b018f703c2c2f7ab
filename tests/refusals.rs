//! Refusals made diagnosable on the real `serve`: a sidecar whose kid is not published is named
//! with its cause in one warn line (not one per poll, never with its token), in the metrics by
//! caller and cause, and in `/scaler/status`; a leader whose creates are all refused says so on
//! `/ready`.

mod support;

use std::time::Duration;

use jitsi_scaler::auth::kid_file_name;
use support::sidecar::{FakeSidecar, KID, sidecar_keys};
use support::{FakeForeman, FakeJicofo, Scaler, fast_config, token};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_with_an_unpublished_kid_is_named_with_its_cause() {
    let dir = tempfile::tempdir().expect("dir");
    let (key, public, key_dir, pem) = sidecar_keys(dir.path());
    // The operator forgot to publish the sidecar's public key.
    std::fs::remove_file(key_dir.join(kid_file_name(KID))).expect("unpublish");
    let jicofo = FakeJicofo::start(0, 0).await;
    let foreman = FakeForeman::start().await;
    let config = format!(
        "{}\n[auth]\npublic_key_file = \"{}\"\nkey_dir = \"{}\"\n",
        fast_config(&jicofo.url, &[&foreman.url]),
        public.display(),
        key_dir.display()
    );
    let mut s = Scaler::start(&config).await;
    s.bearer = Some(token(&key, "scaler"));
    let sidecar = FakeSidecar::new("sc-1", "10.2.0.9", "jibri", &pem);
    let body = serde_json::json!({"instance": sidecar.instance()});
    let tokens: Vec<String> = (0..5).map(|_| sidecar.token()).collect();
    for t in &tokens {
        let (code, _) = sidecar.post(&s.url, "poll", &body, t).await;
        assert_eq!(code, 401);
    }

    // One warn line for the five polls: who, why, which kid, what to do; no token.
    let log = s.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("request refused"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    let line = lines[0];
    for part in [
        "WARN",
        "client=10.2.0.9",
        "caller=\"sidecar\"",
        "reason=\"invalid_token\"",
        "cause=\"unknown kid\"",
        &format!("kid=\"{KID}\""),
        "/scaler/sidecar/poll",
        "publish it in auth.key_dir",
    ] {
        assert!(line.contains(part), "{part} not in {line}");
    }
    for t in &tokens {
        let signature = t.rsplit('.').next().unwrap_or_default();
        assert!(!log.contains(signature), "a token in the log:\n{log}");
    }

    // The metrics: by caller and reason (every pair there from the start), and by cause.
    let (code, text) = s.get("/metrics").await;
    assert_eq!(code, 200);
    let m = support::openmetrics::parse(&text).expect("metrics");
    let failures = |caller, reason| {
        m.value(
            "jitsi_scaler_auth_failures_total",
            &[("caller", caller), ("reason", reason)],
        )
    };
    assert_eq!(failures("sidecar", "invalid_token"), Some(5.0), "{text}");
    assert_eq!(failures("sidecar", "forbidden"), Some(0.0), "{text}");
    assert_eq!(failures("api", "invalid_token"), Some(0.0), "{text}");
    assert_eq!(
        m.value(
            "jitsi_scaler_auth_refusal_causes_total",
            &[("caller", "sidecar"), ("cause", "unknown kid")],
        ),
        Some(5.0),
        "{text}"
    );

    // The status document (and so the status page): counts and who was refused why.
    let st = s.status().await;
    let refusals = &st["auth_refusals"];
    assert_eq!(
        refusals["counts"]["sidecar"]["invalid_token"], 5,
        "{refusals}"
    );
    let row = &refusals["recent"][0];
    assert_eq!(row["client"], "10.2.0.9", "{refusals}");
    assert_eq!(row["cause"], "unknown kid");
    assert_eq!(row["kid"], KID);
    assert_eq!(row["count"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_says_not_ready_while_the_leaders_creates_are_refused() {
    let (s, _jicofo, foreman) = support::refused_creates().await;
    let (code, body) = s.get("/ready").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("creates are refused"), "{body}");
    let st = s.status().await;
    assert_eq!(st["ready"], false, "{st:#}");
    // Fixed: the next create after the hold succeeds, and the scaler is ready again.
    foreman.answer_instead(None);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (code, body) = s.get("/ready").await;
        if code == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}\n{}", s.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
