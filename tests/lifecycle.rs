//! Lifecycle clients against the fake Foreman of `support` and against shell scripts.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Method, header};
use jitsi_scaler::lifecycle::{Backend, BreakerState, Lifecycle, LifecycleConfig, LifecycleError};
use serde_json::json;
use support::foreman::foreman_basic_auth;
use support::{FOREMAN_TOKEN, FOREMAN_USER, FakeForeman};

/// Short timeouts and tens of milliseconds of backoff, so failures are fast.
fn foreman_config(nodes: Vec<String>) -> LifecycleConfig {
    let mut cfg = support::foreman_lifecycle(nodes);
    cfg.foreman.connect_timeout = Duration::from_millis(500);
    cfg.foreman.create_timeout = Duration::from_secs(2);
    cfg.foreman.breaker_threshold = 3;
    cfg.foreman.breaker_cooldown = Duration::from_secs(30);
    cfg
}

fn client(cfg: &LifecycleConfig) -> Lifecycle {
    Lifecycle::from_config(cfg).expect("valid lifecycle config")
}

/// A Foreman with one node and a client of it.
async fn one_node() -> (FakeForeman, Lifecycle) {
    let fake = FakeForeman::start().await;
    let lc = client(&foreman_config(vec![fake.url.clone()]));
    (fake, lc)
}

/// A Foreman node that stores the first create but answers it only after 3 s, and a client
/// that gives up on a create after 300 ms (`edit` changes its config further).
async fn lossy_node(edit: impl FnOnce(&mut LifecycleConfig)) -> (FakeForeman, Lifecycle) {
    let fake = FakeForeman::start().await;
    fake.lose_create_responses(1, Duration::from_secs(3));
    let mut cfg = foreman_config(vec![fake.url.clone()]);
    cfg.foreman.create_timeout = Duration::from_millis(300);
    edit(&mut cfg);
    (fake, client(&cfg))
}

/// The instance type the tests launch.
const GW: &str = "video-sip-gateway";

fn assert_transient(result: Result<impl std::fmt::Debug, LifecycleError>) -> String {
    match result {
        Err(LifecycleError::Transient(msg)) => msg,
        other => panic!("expected Transient, got {other:?}"),
    }
}

fn assert_refused(result: Result<impl std::fmt::Debug, LifecycleError>) -> String {
    match result {
        Err(e @ LifecycleError::Refused(_)) => {
            assert!(e.is_definitive());
            e.to_string()
        }
        other => panic!("expected Refused, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Foreman backend
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_sends_json_content_type_basic_auth_and_merged_parameters() {
    let fake = FakeForeman::start().await;
    let mut cfg = foreman_config(vec![fake.url.clone()]);
    cfg.foreman.host_parameters = toml::from_str(
        r#"
        hostgroup_id = 7
        build = true
        name = "not-ours"
        [compute_attributes]
        flavor = "m1.small"
        "#,
    )
    .expect("toml table");
    let lc = client(&cfg);
    assert_eq!(lc.backend_name(), "foreman");

    let created = lc.create("vsg-a1", GW).await.expect("create");
    assert_eq!(created.ip.as_deref(), Some("10.0.0.1"));

    assert_eq!(
        fake.host("vsg-a1"),
        Some(json!({
            "name": "vsg-a1",
            "hostgroup_id": 7,
            "build": true,
            "compute_attributes": {"flavor": "m1.small"},
        }))
    );
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, Method::POST);
    assert_eq!(seen[0].path(), "/api/hosts");
    let content_type = seen[0].header(header::CONTENT_TYPE);
    assert_eq!(content_type, Some("application/json"));
    let auth = seen[0].header(header::AUTHORIZATION);
    assert_eq!(auth, Some(foreman_basic_auth().as_str()));

    // The fake is strict like Foreman: without the content type it answers 415 (flaw 12).
    let raw = reqwest::Client::new()
        .post(format!("{}/api/hosts", fake.url.clone()))
        .basic_auth(FOREMAN_USER, Some(FOREMAN_TOKEN))
        .body(r#"{"host":{"name":"vsg-raw"}}"#)
        .send()
        .await
        .expect("raw post");
    assert_eq!(raw.status().as_u16(), 415);
}

#[tokio::test]
async fn lost_create_response_then_own_retry_leaves_one_host() {
    let (fake, lc) = lossy_node(|_| {}).await;

    let created = lc
        .create("vsg-lost1", GW)
        .await
        .expect("the retry confirms the earlier create");
    assert_eq!(created.ip.as_deref(), Some("10.0.0.1"));
    assert_eq!(fake.hosts(), vec!["vsg-lost1".to_string()]);

    let calls: Vec<(Method, String)> = fake
        .seen()
        .into_iter()
        .map(|s| (s.method.clone(), s.path().to_string()))
        .collect();
    assert_eq!(
        calls,
        vec![
            (Method::POST, "/api/hosts".to_string()),
            (Method::POST, "/api/hosts".to_string()),
            (Method::GET, "/api/hosts/vsg-lost1".to_string()),
        ]
    );
}

#[tokio::test]
async fn lost_create_response_then_second_call_succeeds_with_one_host() {
    let (fake, lc) = lossy_node(|cfg| cfg.foreman.attempts = 1).await;

    let first = lc.create("vsg-lost2", GW).await;
    let msg = assert_transient(first);
    assert!(msg.contains("timeout"), "{msg}");

    lc.create("vsg-lost2", GW)
        .await
        .expect("the second call confirms the host");
    assert_eq!(fake.hosts(), vec!["vsg-lost2".to_string()]);
}

#[tokio::test]
async fn first_node_down_second_node_serves() {
    let fake = FakeForeman::start().await;
    let dead = support::dead_url();
    let lc = client(&foreman_config(vec![dead.clone(), fake.url.clone()]));

    for i in 0..4 {
        lc.create(&format!("vsg-f{i}"), GW)
            .await
            .expect("failover to the live node");
    }
    assert_eq!(fake.hosts().len(), 4);
    assert!(lc.is_up());
    let nodes = lc.nodes();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0].url, dead);
    assert!(nodes[0].calls_failed >= 1);
    assert!(
        nodes[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("connect"))
    );
    assert_eq!(nodes[1].calls_ok, 4);
    assert_eq!(nodes[1].breaker, BreakerState::Closed);
}

#[tokio::test]
async fn all_nodes_down_open_breakers_and_fail_fast() {
    let mut cfg = foreman_config(vec![support::dead_url(), support::dead_url()]);
    cfg.foreman.breaker_threshold = 2;
    let lc = client(&cfg);

    let mut calls = 0;
    while lc.is_up() {
        calls += 1;
        assert!(calls <= 5, "breakers never opened");
        assert_transient(lc.delete("vsg-x").await);
    }
    assert!(
        lc.nodes()
            .iter()
            .all(|n| n.breaker == BreakerState::Open && n.consecutive_failures >= 2)
    );
    let msg = assert_transient(lc.create("vsg-y", GW).await);
    assert_eq!(msg, "all lifecycle nodes unavailable");
    let msg = assert_transient(lc.find_by_ip("10.1.1.1").await);
    assert_eq!(msg, "all lifecycle nodes unavailable");
}

#[tokio::test]
async fn open_breakers_send_nothing_and_a_trial_closes_them_when_nodes_are_back() {
    let a = FakeForeman::start().await;
    let b = a.second_node().await;
    a.script().always = Some(503);
    b.script().always = Some(503);
    let mut cfg = foreman_config(vec![a.url.clone(), b.url.clone()]);
    cfg.foreman.breaker_threshold = 2;
    cfg.foreman.attempts = 4;
    cfg.foreman.breaker_cooldown = Duration::from_millis(300);
    let lc = client(&cfg);

    assert_transient(lc.create("vsg-b1", GW).await);
    assert!(!lc.is_up(), "{:?}", lc.nodes());
    assert!(lc.nodes().iter().all(|n| n.breaker == BreakerState::Open));
    let sent = a.requests() + b.requests();
    assert_eq!(sent, 4);

    // Known down: fail fast, no request reaches any node.
    let msg = assert_transient(lc.create("vsg-b1", GW).await);
    assert_eq!(msg, "all lifecycle nodes unavailable");
    assert_eq!(a.requests() + b.requests(), sent);

    // The nodes come back; after the cooldown each gets one trial call, which closes it.
    a.script().always = None;
    b.script().always = None;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(lc.is_up());
    assert!(
        lc.nodes()
            .iter()
            .all(|n| n.breaker == BreakerState::HalfOpen)
    );
    lc.create("vsg-b1", GW)
        .await
        .expect("trial on a node that is back");
    lc.create("vsg-b2", GW)
        .await
        .expect("trial on the other node");
    for n in lc.nodes() {
        assert_eq!(n.breaker, BreakerState::Closed, "{n:?}");
        assert_eq!(n.consecutive_failures, 0);
    }
    assert_eq!(a.hosts(), vec!["vsg-b1", "vsg-b2"]);
}

#[tokio::test]
async fn status_429_and_500_fail_over_to_the_next_node() {
    let a = FakeForeman::start().await;
    let b = a.second_node().await;
    a.fail_next(429, r#"{"error":{"message":"Too Many Requests"}}"#, 1);
    b.fail_next(500, r#"{"error":{"message":"Internal Server Error"}}"#, 1);
    let lc = client(&foreman_config(vec![a.url.clone(), b.url.clone()]));

    lc.create("vsg-r1", GW)
        .await
        .expect("third attempt succeeds");
    assert_eq!(a.requests() + b.requests(), 3);
    assert_eq!(a.hosts(), vec!["vsg-r1"]);
    let failed: u64 = lc.nodes().iter().map(|n| n.calls_failed).sum();
    assert_eq!(failed, 2);

    // Delete fails over the same way.
    a.fail_next(500, "{}", 1);
    b.fail_next(429, "{}", 1);
    lc.delete("vsg-r1").await.expect("delete after failover");
    assert!(a.hosts().is_empty());
    assert_eq!(a.requests() + b.requests(), 6);
}

#[tokio::test]
async fn definitive_refusals_are_not_retried() {
    let a = FakeForeman::start().await;
    let b = a.second_node().await;
    let cfg = foreman_config(vec![a.url.clone(), b.url.clone()]);
    let lc = client(&cfg);
    let total = || a.requests() + b.requests();

    let cases = [
        (415, r#"{"error":{"message":"unsupported media type"}}"#),
        (
            422,
            r#"{"error":{"errors":{"hostgroup_id":["can't be blank"]}}}"#,
        ),
        (403, r#"{"error":{"message":"Access denied"}}"#),
    ];
    for (status, body) in cases {
        a.fail_next(status, body, 1);
        b.fail_next(status, body, 1);
        let before = total();
        let msg = assert_refused(lc.create("vsg-n1", GW).await);
        assert!(msg.contains(&status.to_string()), "{msg}");
        assert_eq!(total(), before + 1, "{status} must not be retried");
        // Drain the other node's unused script entry.
        a.script().fail_next.clear();
        b.script().fail_next.clear();
    }
    // A refusal proves the node is alive: breakers stay closed.
    assert!(lc.nodes().iter().all(|n| n.breaker == BreakerState::Closed));

    // A wrong token: 401, not retried, and the token never shows in errors or Debug output.
    let mut wrong = cfg.clone();
    wrong.foreman.token = Some("wrong-token-value".into());
    let lc = client(&wrong);
    let before = total();
    let msg = assert_refused(lc.delete("vsg-n1").await);
    assert!(msg.contains("401"), "{msg}");
    assert_eq!(total(), before + 1);
    assert!(!msg.contains("wrong-token-value"));
    assert!(!format!("{lc:?}").contains("wrong-token-value"));
    assert!(!format!("{wrong:?}").contains("wrong-token-value"));
    assert!(a.hosts().is_empty());
}

#[tokio::test]
async fn delete_ok_and_already_gone_ok() {
    let (fake, lc) = one_node().await;
    lc.create("vsg-d1", GW).await.expect("create");
    lc.delete("vsg-d1").await.expect("delete an existing host");
    assert!(fake.hosts().is_empty());
    lc.delete("vsg-d1").await.expect("404: already gone is ok");
    lc.delete("vsg-never")
        .await
        .expect("404: never existed is ok");
    let deletes = fake
        .seen()
        .into_iter()
        .filter(|s| s.method == Method::DELETE)
        .count();
    assert_eq!(deletes, 3, "404 is final, not retried");
}

#[tokio::test]
async fn find_by_ip_finds_the_host() {
    let (fake, lc) = one_node().await;
    lc.create("vsg-i1", GW).await.expect("create 1");
    lc.create("vsg-i2", GW).await.expect("create 2");
    let ip = fake.ip_of("vsg-i2").expect("ip assigned");

    let found = lc.find_by_ip(&ip).await.expect("search");
    assert_eq!(found.as_deref(), Some("vsg-i2"));
    let last = fake.seen().pop().expect("a request");
    let query = last.query();
    assert!(
        query.contains(&format!("search=ip%20%3D%20{ip}")),
        "{query}"
    );

    assert_eq!(lc.find_by_ip("10.9.9.9").await.expect("search"), None);
    assert_refused(lc.find_by_ip("10.0.0.1 or name ~ x").await);
}

#[tokio::test]
async fn list_follows_pagination_and_keeps_our_prefix() {
    let fake = FakeForeman::start().await;
    fake.state.lock().expect("lock").per_page_cap = 2;
    for i in 0..5 {
        fake.insert(&format!("vsg-l{i}"), &format!("10.2.0.{i}"));
    }
    fake.insert("other-l9", "10.2.0.9");
    fake.insert("vsgx-l8", "10.2.0.8");
    let lc = client(&foreman_config(vec![fake.url.clone()]));

    let names = lc.list("vsg").await.expect("list");
    assert_eq!(
        names,
        vec!["vsg-l0", "vsg-l1", "vsg-l2", "vsg-l3", "vsg-l4"]
    );
    assert_eq!(fake.requests(), 3, "three pages of two");
}

#[tokio::test]
async fn domain_maps_short_names_to_foreman_fqdns() {
    let (fake, lc) = lossy_node(|cfg| {
        cfg.foreman.domain = Some("meet.example.org".into());
        cfg.foreman.host_parameters =
            toml::from_str(r#"domain_name = "meet.example.org""#).expect("toml");
    })
    .await;

    // The lost answer is confirmed with GET /api/hosts/<fqdn>.
    lc.create("vsg-q1", GW).await.expect("create");
    assert_eq!(fake.hosts(), vec!["vsg-q1.meet.example.org".to_string()]);
    let ip = fake.ip_of("vsg-q1.meet.example.org").expect("ip");
    assert_eq!(
        lc.find_by_ip(&ip).await.expect("find").as_deref(),
        Some("vsg-q1")
    );
    assert_eq!(lc.list("vsg").await.expect("list"), vec!["vsg-q1"]);
    lc.delete("vsg-q1").await.expect("delete");
    assert!(fake.hosts().is_empty());
}

#[tokio::test]
async fn concurrent_creates_from_many_tasks() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Lifecycle>();

    let a = FakeForeman::start().await;
    let b = a.second_node().await;
    let lc = Arc::new(client(&foreman_config(vec![a.url.clone(), b.url.clone()])));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let lc = lc.clone();
            tokio::spawn(async move { lc.create(&format!("vsg-c{i}"), GW).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("create");
    }
    assert_eq!(a.hosts().len(), 8);
    // Round-robin spreads the calls over both nodes.
    assert_eq!(a.requests() + b.requests(), 8);
    assert!(a.requests() > 0 && b.requests() > 0);
}

#[tokio::test]
async fn config_is_validated_at_construction() {
    let config_err = |cfg: &LifecycleConfig| match Lifecycle::from_config(cfg) {
        Err(e @ LifecycleError::Config(_)) => {
            assert!(e.is_definitive());
            e.to_string()
        }
        other => panic!("expected Config error, got {other:?}"),
    };
    let good = foreman_config(vec!["http://127.0.0.1:3000".into()]);

    // No credentials at all is allowed (serve starts on the embedded defaults); an empty
    // token is a mistake.
    let mut c = good.clone();
    c.foreman.token = None;
    assert!(Lifecycle::from_config(&c).is_ok());
    c.foreman.token = Some("  ".into());
    assert!(config_err(&c).contains("token"));

    let mut c = good.clone();
    c.foreman.nodes = vec![];
    config_err(&c);

    let mut c = good.clone();
    c.foreman.nodes = vec!["not a url".into()];
    config_err(&c);

    let mut c = good.clone();
    c.foreman.nodes = vec!["https://admin:hunter2@foreman.example".into()];
    assert!(!config_err(&c).contains("hunter2"));

    let mut c = good.clone();
    c.foreman.attempts = 0;
    config_err(&c);

    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = good.clone();
    c.foreman.token = None;
    c.foreman.token_file = Some(dir.path().join("missing"));
    config_err(&c);

    let mut c = good.clone();
    c.foreman.ca_file = Some(dir.path().join("missing.pem"));
    config_err(&c);

    let mut c = good.clone();
    c.backend = Backend::Command;
    assert!(config_err(&c).contains("program"));
    c.command.program = Some(dir.path().join("nope.sh"));
    config_err(&c);

    // Node URLs are normalised and carry no credentials.
    let mut c = good;
    c.foreman.nodes = vec!["http://127.0.0.1:3000/".into()];
    let lc = client(&c);
    assert_eq!(lc.nodes()[0].url, "http://127.0.0.1:3000");
}

/// A self-signed test CA (no key needed: only loading is tested).
const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBljCCATugAwIBAgIUPAS8CFzfaS2hZi7UvIO50PxVL2wwCgYIKoZIzj0EAwIw
HzEdMBsGA1UEAwwUaml0c2ktc2NhbGVyIHRlc3QgQ0EwIBcNMjYxMTI2MDQyMjU2
WhgPMjEyNjExMDIwNDIyNTZaMB8xHTAbBgNVBAMMFGppdHNpLXNjYWxlciB0ZXN0
IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEJv9ZMd5vXnjxtF0DR606TFxk
yRXMqmPc90UHwzohI6MFfN1J4BpMZnWZOY/+N4Yl4Qwfi7Q2YGTNI5hs7N1vjKNT
MFEwHQYDVR0OBBYEFMUgMg3FF6fvwhqJxzf5wGH6Dq7yMB8GA1UdIwQYMBaAFMUg
Mg3FF6fvwhqJxzf5wGH6Dq7yMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwID
SQAwRgIhAJFAYlmrm/3E6w1ONylXi6eFhoJIWAAo7saKgzTCV6RsAiEAplE3lzF7
ODpJzD0s8djmxXkxdHxTc/g04zbjvzKBH4A=
-----END CERTIFICATE-----
";

#[tokio::test]
async fn ca_file_is_loaded_and_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("ca.pem");
    std::fs::write(&good, TEST_CA_PEM).expect("write ca");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").expect("write junk");

    let mut cfg = foreman_config(vec!["https://127.0.0.1:3443".into()]);
    cfg.foreman.ca_file = Some(good);
    client(&cfg);
    cfg.foreman.ca_file = Some(junk);
    assert!(matches!(
        Lifecycle::from_config(&cfg),
        Err(LifecycleError::Config(_))
    ));
}

#[tokio::test]
async fn token_file_is_read_and_trimmed() {
    let fake = FakeForeman::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token");
    std::fs::write(&path, format!("  {FOREMAN_TOKEN}\n")).expect("write token");
    let mut cfg = foreman_config(vec![fake.url.clone()]);
    cfg.foreman.token = None;
    cfg.foreman.token_file = Some(path);
    let lc = client(&cfg);
    lc.create("vsg-t1", GW)
        .await
        .expect("authenticated with the file's token");
}

#[tokio::test]
async fn invalid_names_are_refused_without_a_request() {
    let (fake, lc) = one_node().await;
    for bad in ["", "../etc", "-rf", "a b", "vsg/1"] {
        assert_refused(lc.create(bad, GW).await);
        assert_refused(lc.delete(bad).await);
    }
    assert_eq!(fake.requests(), 0);
}

// ---------------------------------------------------------------------------------------------
// Command backend
// ---------------------------------------------------------------------------------------------

/// Writes an executable script (`probe` exits 0, then `body`) and waits until it can be
/// executed (a concurrent fork in another test can briefly hold the file open for writing:
/// ETXTBSY).
fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let text = format!("#!/bin/sh\n[ \"$1\" = probe ] && exit 0\n{body}\n");
    support::executable(dir, name, &text)
}

/// The command backend on a script `name` running `body` (where `{dir}` is its directory),
/// with `timeout`: the client, the script and its directory.
fn command_client(
    name: &str,
    body: &str,
    timeout: Duration,
) -> (Lifecycle, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = body.replace("{dir}", &dir.path().display().to_string());
    let program = write_script(dir.path(), name, &body);
    let cfg = support::command_lifecycle(program.clone(), timeout);
    (client(&cfg), program, dir)
}

#[tokio::test]
async fn command_backend_passes_arguments() {
    let (lc, script, dir) = command_client(
        "lifecycle.sh",
        r#"echo "$@" >> '{dir}/calls.log'
case "$1" in
  add) echo "creating $3"; echo 192.0.2.10 ;;
  remove) ;;
  list) echo "$2-one"; echo "unrelated"; echo "$2-two" ;;
  find-ip) [ "$2" = 192.0.2.10 ] && echo vsg-c1 ;;
esac
exit 0"#,
        Duration::from_secs(10),
    );
    let log = dir.path().join("calls.log");
    assert_eq!(lc.backend_name(), "command");

    let created = lc.create("vsg-c1", GW).await.expect("add");
    assert_eq!(created.ip.as_deref(), Some("192.0.2.10"));
    lc.delete("vsg-c1").await.expect("remove");
    assert_eq!(
        lc.list("vsg").await.expect("list"),
        vec!["vsg-one", "vsg-two"]
    );
    assert_eq!(
        lc.find_by_ip("192.0.2.10").await.expect("find").as_deref(),
        Some("vsg-c1")
    );
    assert_eq!(lc.find_by_ip("192.0.2.99").await.expect("find"), None);

    let calls = std::fs::read_to_string(&log).expect("calls log");
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        vec![
            "add video-sip-gateway vsg-c1",
            "remove vsg-c1",
            "list vsg",
            "find-ip 192.0.2.10",
            "find-ip 192.0.2.99",
        ]
    );
    let nodes = lc.nodes();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].url, format!("command:{}", script.display()));
    assert_eq!(nodes[0].calls_ok, 5);
    assert!(lc.is_up());
}

#[tokio::test]
async fn command_failure_carries_stderr_and_marks_the_backend_down() {
    let (lc, _, _dir) = command_client(
        "failing.sh",
        r#"echo "warming up" >&2
echo "  quota exceeded for project jitsi  " >&2
exit 3"#,
        Duration::from_secs(10),
    );
    for _ in 0..3 {
        assert!(lc.is_up());
        let msg = assert_transient(lc.create("vsg-e1", GW).await);
        assert!(msg.contains("quota exceeded for project jitsi"), "{msg}");
        assert!(msg.contains("exit 3"), "{msg}");
        assert!(!msg.contains("warming up"), "{msg}");
    }
    assert!(!lc.is_up());
    let node = &lc.nodes()[0];
    assert_eq!(node.breaker, BreakerState::Open);
    assert_eq!(node.calls_failed, 3);
    assert!(
        node.last_error
            .as_deref()
            .is_some_and(|e| e.contains("quota exceeded"))
    );
}

#[tokio::test]
async fn command_exit_2_means_unsupported_for_optional_subcommands() {
    let (lc, _, _dir) = command_client("minimal.sh", r#"exit 2"#, Duration::from_secs(10));
    assert!(matches!(
        lc.list("vsg").await,
        Err(LifecycleError::Unsupported(_))
    ));
    assert!(matches!(
        lc.find_by_ip("192.0.2.1").await,
        Err(LifecycleError::Unsupported(_))
    ));
    assert!(lc.is_up(), "unsupported is not a failure");
    assert_transient(lc.delete("vsg-u1").await);
}

#[tokio::test]
async fn hanging_command_is_killed_at_the_timeout() {
    let (lc, _, dir) = command_client(
        "hang.sh",
        "sleep 60 &\necho $! > '{dir}/child.pid'\nwait",
        Duration::from_millis(300),
    );
    let pid_file = dir.path().join("child.pid");
    let started = Instant::now();
    let msg = assert_transient(lc.create("vsg-h1", GW).await);
    assert!(msg.contains("timed out"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not killed in time"
    );

    // What the program started dies with it (its process group is killed).
    let pid = std::fs::read_to_string(&pid_file).expect("pid file");
    let stat = format!("/proc/{}/stat", pid.trim());
    let mut gone = false;
    for _ in 0..100 {
        let state = std::fs::read_to_string(&stat).unwrap_or_default();
        // Gone, or a zombie waiting for its new parent to reap it.
        if state.is_empty() || state.contains(") Z") {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(gone, "the program's child survived the timeout");
}

// ---------------------------------------------------------------------------------------------
// Documentation
// ---------------------------------------------------------------------------------------------

#[test]
fn documented_examples_parse() {
    #[derive(serde::Deserialize)]
    struct Root {
        lifecycle: LifecycleConfig,
    }
    let doc = include_str!("../docs/lifecycle.md");
    let examples = doc
        .split_once("### Example")
        .map(|(_, rest)| rest)
        .expect("an Example section");
    let blocks: Vec<&str> = examples
        .split("```toml")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(toml, _)| toml))
        .collect();
    assert_eq!(blocks.len(), 2);
    let foreman: Root = toml::from_str(blocks[0]).expect("Foreman example");
    assert_eq!(foreman.lifecycle.foreman.nodes.len(), 2);
    assert_eq!(foreman.lifecycle.foreman.attempts, 4);
    assert_eq!(
        foreman.lifecycle.foreman.create_timeout,
        Duration::from_secs(180)
    );
    let command: Root = toml::from_str(blocks[1]).expect("command example");
    assert_eq!(command.lifecycle.backend, Backend::Command);

    // The defaults table matches the code.
    let d = LifecycleConfig::default();
    for row in [
        "| `foreman.connect_timeout` | `\"5s\"`",
        "| `foreman.create_timeout` | `\"2m\"`",
        "| `foreman.timeout` | `\"20s\"`",
        "| `foreman.backoff` | `\"500ms\"`",
        "| `foreman.backoff_max` | `\"10s\"`",
        "| `foreman.breaker_cooldown` | `\"30s\"`",
        "| `command.timeout` | `\"2m\"`",
    ] {
        assert!(doc.contains(row), "{row}");
    }
    assert_eq!(d.foreman.connect_timeout, Duration::from_secs(5));
    assert_eq!(d.foreman.create_timeout, Duration::from_secs(120));
    assert_eq!(d.foreman.timeout, Duration::from_secs(20));
    assert_eq!(d.foreman.backoff, Duration::from_millis(500));
    assert_eq!(d.foreman.backoff_max, Duration::from_secs(10));
    assert_eq!(d.foreman.breaker_cooldown, Duration::from_secs(30));
    assert_eq!(d.command.timeout, Duration::from_secs(120));
    assert_eq!(d.foreman.attempts, 3);
    assert_eq!(d.foreman.breaker_threshold, 3);
}
