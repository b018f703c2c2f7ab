//! Lifecycle clients against a fake Foreman (axum on 127.0.0.1:0) and against shell scripts.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jitsi_scaler::lifecycle::{
    Backend, BreakerState, CommandConfig, ForemanConfig, Lifecycle, LifecycleConfig, LifecycleError,
};
use serde_json::{Value, json};

const USER: &str = "scaler";
const TOKEN: &str = "pat-0123456789abcdef";
const NAME_TAKEN: &str = r#"{"error":{"errors":{"name":["has already been taken"]}}}"#;

// ---------------------------------------------------------------------------------------------
// The fake Foreman
// ---------------------------------------------------------------------------------------------

/// One request as the fake saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    query: Option<String>,
    content_type: Option<String>,
    authorization: Option<String>,
}

/// Scripted misbehaviour.
#[derive(Default)]
struct Script {
    /// The next requests are answered with these (status, body), before anything else.
    fail_next: VecDeque<(u16, String)>,
    /// Every request is answered with this status (a broken node) while set.
    always: Option<u16>,
    /// Delay before answering any request.
    delay: Duration,
    /// The next creates store the host, then sleep this long before answering (lost response).
    drop_creates: u32,
    drop_sleep: Duration,
}

/// The database behind one Foreman: shared by all its nodes.
#[derive(Default)]
struct Db {
    /// Stored hosts: name -> (host object as sent, assigned ip).
    hosts: Mutex<HashMap<String, (Value, String)>>,
    creates_stored: AtomicUsize,
    per_page_cap: AtomicUsize,
}

/// One node of a fake Foreman: its own script and request log, a shared database.
#[derive(Default)]
struct Fake {
    db: Arc<Db>,
    requests: AtomicUsize,
    script: Mutex<Script>,
    seen: Mutex<Vec<Seen>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn json_response(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn not_found(name: &str) -> Response {
    json_response(
        404,
        json!({"error": {"message": format!("Resource host not found by id '{name}'")}})
            .to_string(),
    )
}

fn host_json(name: &str, host: &Value, ip: &str) -> Value {
    let mut out = host.clone();
    if let Some(obj) = out.as_object_mut() {
        obj.insert("name".into(), json!(name));
        obj.insert("ip".into(), json!(ip));
        obj.insert("id".into(), json!(name.len()));
    }
    out
}

/// Counts, records, applies the script and checks Basic auth; `Some` = answer with this.
async fn gate(fake: &Fake, method: Method, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
    fake.requests.fetch_add(1, Ordering::SeqCst);
    let text = |h: header::HeaderName| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    lock(&fake.seen).push(Seen {
        method,
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        content_type: text(header::CONTENT_TYPE),
        authorization: text(header::AUTHORIZATION),
    });
    let delay = lock(&fake.script).delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    {
        let mut script = lock(&fake.script);
        if let Some((status, body)) = script.fail_next.pop_front() {
            return Some(json_response(status, body));
        }
        if let Some(status) = script.always {
            return Some(json_response(
                status,
                json!({"error": {"message": "broken"}}).to_string(),
            ));
        }
    }
    let expected = format!("Basic {}", base64(format!("{USER}:{TOKEN}").as_bytes()));
    if text(header::AUTHORIZATION).as_deref() != Some(expected.as_str()) {
        return Some(json_response(
            401,
            json!({"error": {"message": "Unable to authenticate user"}}).to_string(),
        ));
    }
    None
}

async fn create_host(
    State(fake): State<Arc<Fake>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = gate(&fake, Method::POST, &uri, &headers).await {
        return r;
    }
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_type {
        return json_response(
            415,
            json!({"error": {"message": "'Content-Type: ' is unsupported in API v2 for POST and PUT requests. Please use 'Content-Type: application/json'."}}).to_string(),
        );
    }
    let host = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("host").cloned());
    let Some(host) = host else {
        return json_response(400, json!({"error": {"message": "bad body"}}).to_string());
    };
    let Some(mut name) = host.get("name").and_then(Value::as_str).map(str::to_string) else {
        return json_response(
            422,
            json!({"error": {"errors": {"name": ["can't be blank"]}}}).to_string(),
        );
    };
    // Like Foreman: a host in a domain is named by its FQDN.
    if let Some(domain) = host.get("domain_name").and_then(Value::as_str)
        && !name.contains('.')
    {
        name = format!("{name}.{domain}");
    }
    let (ip, drop_sleep) = {
        let mut hosts = lock(&fake.db.hosts);
        if hosts.contains_key(&name) {
            return json_response(422, NAME_TAKEN.to_string());
        }
        let n = fake.db.creates_stored.fetch_add(1, Ordering::SeqCst) + 1;
        let ip = format!("10.0.0.{n}");
        hosts.insert(name.clone(), (host.clone(), ip.clone()));
        let mut script = lock(&fake.script);
        let drop_sleep = if script.drop_creates > 0 {
            script.drop_creates -= 1;
            Some(script.drop_sleep)
        } else {
            None
        };
        (ip, drop_sleep)
    };
    if let Some(sleep) = drop_sleep {
        // Stored, but the answer comes after the client gave up.
        tokio::time::sleep(sleep).await;
    }
    json_response(201, host_json(&name, &host, &ip).to_string())
}

async fn show_host(
    State(fake): State<Arc<Fake>>,
    UrlPath(name): UrlPath<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = gate(&fake, Method::GET, &uri, &headers).await {
        return r;
    }
    match lock(&fake.db.hosts).get(&name) {
        Some((host, ip)) => json_response(200, host_json(&name, host, ip).to_string()),
        None => not_found(&name),
    }
}

async fn delete_host(
    State(fake): State<Arc<Fake>>,
    UrlPath(name): UrlPath<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = gate(&fake, Method::DELETE, &uri, &headers).await {
        return r;
    }
    match lock(&fake.db.hosts).remove(&name) {
        Some((host, ip)) => json_response(200, host_json(&name, &host, &ip).to_string()),
        None => not_found(&name),
    }
}

async fn search_hosts(
    State(fake): State<Arc<Fake>>,
    Query(params): Query<HashMap<String, String>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = gate(&fake, Method::GET, &uri, &headers).await {
        return r;
    }
    let search = params.get("search").cloned().unwrap_or_default();
    let hosts = lock(&fake.db.hosts);
    let mut matched: Vec<(String, String)> = hosts
        .iter()
        .filter(|(name, (_, ip))| {
            if let Some(want) = search.strip_prefix("ip = ") {
                ip.as_str() == want
            } else if let Some(pattern) = search.strip_prefix("name ~ ") {
                match pattern.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => name.contains(pattern),
                }
            } else {
                search.is_empty()
            }
        })
        .map(|(name, (_, ip))| (name.clone(), ip.clone()))
        .collect();
    matched.sort();
    let cap = fake.db.per_page_cap.load(Ordering::SeqCst).max(1);
    let per_page = params
        .get("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(20)
        .min(cap);
    let page = params
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let results: Vec<Value> = matched
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|(name, ip)| json!({"name": name, "ip": ip, "id": name.len()}))
        .collect();
    json_response(
        200,
        json!({
            "total": hosts.len(),
            "subtotal": matched.len(),
            "page": page,
            "per_page": per_page,
            "search": search,
            "sort": {"by": null, "order": null},
            "results": results,
        })
        .to_string(),
    )
}

/// A running fake Foreman; stopped when dropped.
struct FakeForeman {
    addr: SocketAddr,
    fake: Arc<Fake>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeForeman {
    /// A Foreman with one node.
    async fn start() -> Self {
        let db = Arc::new(Db::default());
        db.per_page_cap.store(1000, Ordering::SeqCst);
        Self::start_on(db).await
    }

    /// Another node of the same Foreman (same hosts).
    async fn second_node(&self) -> Self {
        Self::start_on(self.fake.db.clone()).await
    }

    async fn start_on(db: Arc<Db>) -> Self {
        let fake = Arc::new(Fake {
            db,
            ..Fake::default()
        });
        let app = Router::new()
            .route("/api/hosts", post(create_host).get(search_hosts))
            .route("/api/hosts/{name}", get(show_host).delete(delete_host))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Foreman");
        let addr = listener.local_addr().expect("fake Foreman address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeForeman { addr, fake, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> usize {
        self.fake.requests.load(Ordering::SeqCst)
    }

    fn host_names(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.fake.db.hosts).keys().cloned().collect();
        names.sort();
        names
    }

    fn host(&self, name: &str) -> Option<Value> {
        lock(&self.fake.db.hosts).get(name).map(|(h, _)| h.clone())
    }

    fn ip_of(&self, name: &str) -> Option<String> {
        lock(&self.fake.db.hosts)
            .get(name)
            .map(|(_, ip)| ip.clone())
    }

    fn insert(&self, name: &str, ip: &str) {
        lock(&self.fake.db.hosts).insert(name.into(), (json!({"name": name}), ip.into()));
    }

    fn seen(&self) -> Vec<Seen> {
        lock(&self.fake.seen).clone()
    }

    fn script(&self) -> MutexGuard<'_, Script> {
        lock(&self.fake.script)
    }

    fn fail_next(&self, status: u16, body: &str, times: usize) {
        let mut s = self.script();
        for _ in 0..times {
            s.fail_next.push_back((status, body.to_string()));
        }
    }
}

impl Drop for FakeForeman {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A URL on which nothing listens: bind a port, then free it.
fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = listener.local_addr().expect("port address");
    drop(listener);
    format!("http://{addr}")
}

/// Short timeouts and tens of milliseconds of backoff, so failures are fast.
fn foreman_config(nodes: Vec<String>) -> LifecycleConfig {
    LifecycleConfig {
        backend: Backend::Foreman,
        name_prefix: "vsg".into(),
        foreman: ForemanConfig {
            nodes,
            user: USER.into(),
            token: Some(TOKEN.into()),
            connect_timeout: Duration::from_millis(500),
            create_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
            attempts: 3,
            backoff: Duration::from_millis(10),
            backoff_max: Duration::from_millis(40),
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_secs(30),
            ..ForemanConfig::default()
        },
        command: CommandConfig::default(),
        ..LifecycleConfig::default()
    }
}

fn client(cfg: &LifecycleConfig) -> Lifecycle {
    Lifecycle::from_config(cfg).expect("valid lifecycle config")
}

fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(TABLE[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

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
    let mut cfg = foreman_config(vec![fake.url()]);
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

    let created = lc
        .create("vsg-a1", "video-sip-gateway")
        .await
        .expect("create");
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
    assert_eq!(seen[0].path, "/api/hosts");
    assert_eq!(seen[0].content_type.as_deref(), Some("application/json"));
    let expected_auth = format!("Basic {}", base64(format!("{USER}:{TOKEN}").as_bytes()));
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(expected_auth.as_str())
    );

    // The fake is strict like Foreman: without the content type it answers 415 (flaw 12).
    let raw = reqwest::Client::new()
        .post(format!("{}/api/hosts", fake.url()))
        .basic_auth(USER, Some(TOKEN))
        .body(r#"{"host":{"name":"vsg-raw"}}"#)
        .send()
        .await
        .expect("raw post");
    assert_eq!(raw.status().as_u16(), 415);
}

#[tokio::test]
async fn lost_create_response_then_own_retry_leaves_one_host() {
    let fake = FakeForeman::start().await;
    {
        let mut s = fake.script();
        s.drop_creates = 1;
        s.drop_sleep = Duration::from_secs(3);
    }
    let mut cfg = foreman_config(vec![fake.url()]);
    cfg.foreman.create_timeout = Duration::from_millis(300);
    let lc = client(&cfg);

    let created = lc
        .create("vsg-lost1", "video-sip-gateway")
        .await
        .expect("the retry confirms the earlier create");
    assert_eq!(created.ip.as_deref(), Some("10.0.0.1"));
    assert_eq!(fake.host_names(), vec!["vsg-lost1".to_string()]);

    let calls: Vec<(Method, String)> = fake
        .seen()
        .into_iter()
        .map(|s| (s.method, s.path))
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
    let fake = FakeForeman::start().await;
    {
        let mut s = fake.script();
        s.drop_creates = 1;
        s.drop_sleep = Duration::from_secs(3);
    }
    let mut cfg = foreman_config(vec![fake.url()]);
    cfg.foreman.create_timeout = Duration::from_millis(300);
    cfg.foreman.attempts = 1;
    let lc = client(&cfg);

    let first = lc.create("vsg-lost2", "video-sip-gateway").await;
    let msg = assert_transient(first);
    assert!(msg.contains("timeout"), "{msg}");

    lc.create("vsg-lost2", "video-sip-gateway")
        .await
        .expect("the second call confirms the host");
    assert_eq!(fake.host_names(), vec!["vsg-lost2".to_string()]);
}

#[tokio::test]
async fn first_node_down_second_node_serves() {
    let fake = FakeForeman::start().await;
    let dead = dead_url();
    let lc = client(&foreman_config(vec![dead.clone(), fake.url()]));

    for i in 0..4 {
        lc.create(&format!("vsg-f{i}"), "video-sip-gateway")
            .await
            .expect("failover to the live node");
    }
    assert_eq!(fake.host_names().len(), 4);
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
    let mut cfg = foreman_config(vec![dead_url(), dead_url()]);
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
    let msg = assert_transient(lc.create("vsg-y", "video-sip-gateway").await);
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
    let mut cfg = foreman_config(vec![a.url(), b.url()]);
    cfg.foreman.breaker_threshold = 2;
    cfg.foreman.attempts = 4;
    cfg.foreman.breaker_cooldown = Duration::from_millis(300);
    let lc = client(&cfg);

    assert_transient(lc.create("vsg-b1", "video-sip-gateway").await);
    assert!(!lc.is_up(), "{:?}", lc.nodes());
    assert!(lc.nodes().iter().all(|n| n.breaker == BreakerState::Open));
    let sent = a.requests() + b.requests();
    assert_eq!(sent, 4);

    // Known down: fail fast, no request reaches any node.
    let msg = assert_transient(lc.create("vsg-b1", "video-sip-gateway").await);
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
    lc.create("vsg-b1", "video-sip-gateway")
        .await
        .expect("trial on a node that is back");
    lc.create("vsg-b2", "video-sip-gateway")
        .await
        .expect("trial on the other node");
    for n in lc.nodes() {
        assert_eq!(n.breaker, BreakerState::Closed, "{n:?}");
        assert_eq!(n.consecutive_failures, 0);
    }
    assert_eq!(a.host_names(), vec!["vsg-b1", "vsg-b2"]);
}

#[tokio::test]
async fn status_429_and_500_fail_over_to_the_next_node() {
    let a = FakeForeman::start().await;
    let b = a.second_node().await;
    a.fail_next(429, r#"{"error":{"message":"Too Many Requests"}}"#, 1);
    b.fail_next(500, r#"{"error":{"message":"Internal Server Error"}}"#, 1);
    let lc = client(&foreman_config(vec![a.url(), b.url()]));

    lc.create("vsg-r1", "video-sip-gateway")
        .await
        .expect("third attempt succeeds");
    assert_eq!(a.requests() + b.requests(), 3);
    assert_eq!(a.host_names(), vec!["vsg-r1"]);
    let failed: u64 = lc.nodes().iter().map(|n| n.calls_failed).sum();
    assert_eq!(failed, 2);

    // Delete fails over the same way.
    a.fail_next(500, "{}", 1);
    b.fail_next(429, "{}", 1);
    lc.delete("vsg-r1").await.expect("delete after failover");
    assert!(a.host_names().is_empty());
    assert_eq!(a.requests() + b.requests(), 6);
}

#[tokio::test]
async fn definitive_refusals_are_not_retried() {
    let a = FakeForeman::start().await;
    let b = a.second_node().await;
    let cfg = foreman_config(vec![a.url(), b.url()]);
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
        let msg = assert_refused(lc.create("vsg-n1", "video-sip-gateway").await);
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
    assert!(a.host_names().is_empty());
}

#[tokio::test]
async fn delete_ok_and_already_gone_ok() {
    let fake = FakeForeman::start().await;
    let lc = client(&foreman_config(vec![fake.url()]));
    lc.create("vsg-d1", "video-sip-gateway")
        .await
        .expect("create");
    lc.delete("vsg-d1").await.expect("delete an existing host");
    assert!(fake.host_names().is_empty());
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
    let fake = FakeForeman::start().await;
    let lc = client(&foreman_config(vec![fake.url()]));
    lc.create("vsg-i1", "video-sip-gateway")
        .await
        .expect("create 1");
    lc.create("vsg-i2", "video-sip-gateway")
        .await
        .expect("create 2");
    let ip = fake.ip_of("vsg-i2").expect("ip assigned");

    let found = lc.find_by_ip(&ip).await.expect("search");
    assert_eq!(found.as_deref(), Some("vsg-i2"));
    let last = fake.seen().pop().expect("a request");
    let query = last.query.unwrap_or_default();
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
    fake.fake.db.per_page_cap.store(2, Ordering::SeqCst);
    for i in 0..5 {
        fake.insert(&format!("vsg-l{i}"), &format!("10.2.0.{i}"));
    }
    fake.insert("other-l9", "10.2.0.9");
    fake.insert("vsgx-l8", "10.2.0.8");
    let lc = client(&foreman_config(vec![fake.url()]));

    let names = lc.list("vsg").await.expect("list");
    assert_eq!(
        names,
        vec!["vsg-l0", "vsg-l1", "vsg-l2", "vsg-l3", "vsg-l4"]
    );
    assert_eq!(fake.requests(), 3, "three pages of two");
}

#[tokio::test]
async fn domain_maps_short_names_to_foreman_fqdns() {
    let fake = FakeForeman::start().await;
    {
        let mut s = fake.script();
        s.drop_creates = 1;
        s.drop_sleep = Duration::from_secs(3);
    }
    let mut cfg = foreman_config(vec![fake.url()]);
    cfg.foreman.domain = Some("meet.example.org".into());
    cfg.foreman.create_timeout = Duration::from_millis(300);
    cfg.foreman.host_parameters =
        toml::from_str(r#"domain_name = "meet.example.org""#).expect("toml");
    let lc = client(&cfg);

    // The lost answer is confirmed with GET /api/hosts/<fqdn>.
    lc.create("vsg-q1", "video-sip-gateway")
        .await
        .expect("create");
    assert_eq!(
        fake.host_names(),
        vec!["vsg-q1.meet.example.org".to_string()]
    );
    let ip = fake.ip_of("vsg-q1.meet.example.org").expect("ip");
    assert_eq!(
        lc.find_by_ip(&ip).await.expect("find").as_deref(),
        Some("vsg-q1")
    );
    assert_eq!(lc.list("vsg").await.expect("list"), vec!["vsg-q1"]);
    lc.delete("vsg-q1").await.expect("delete");
    assert!(fake.host_names().is_empty());
}

#[tokio::test]
async fn concurrent_creates_from_many_tasks() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Lifecycle>();

    let a = FakeForeman::start().await;
    let b = a.second_node().await;
    let lc = Arc::new(client(&foreman_config(vec![a.url(), b.url()])));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let lc = lc.clone();
            tokio::spawn(async move { lc.create(&format!("vsg-c{i}"), "video-sip-gateway").await })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("create");
    }
    assert_eq!(a.host_names().len(), 8);
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
    std::fs::write(&path, format!("  {TOKEN}\n")).expect("write token");
    let mut cfg = foreman_config(vec![fake.url()]);
    cfg.foreman.token = None;
    cfg.foreman.token_file = Some(path);
    let lc = client(&cfg);
    lc.create("vsg-t1", "video-sip-gateway")
        .await
        .expect("authenticated with the file's token");
}

#[tokio::test]
async fn invalid_names_are_refused_without_a_request() {
    let fake = FakeForeman::start().await;
    let lc = client(&foreman_config(vec![fake.url()]));
    for bad in ["", "../etc", "-rf", "a b", "vsg/1"] {
        assert_refused(lc.create(bad, "video-sip-gateway").await);
        assert_refused(lc.delete(bad).await);
    }
    assert_eq!(fake.requests(), 0);
}

// ---------------------------------------------------------------------------------------------
// Command backend
// ---------------------------------------------------------------------------------------------

/// Writes an executable script and waits until it can be executed (a concurrent fork in another
/// test can briefly hold the file open for writing: ETXTBSY).
fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for _ in 0..100 {
        match std::process::Command::new(&path).arg("probe").output() {
            Err(e) if e.raw_os_error() == Some(26) => std::thread::sleep(Duration::from_millis(10)),
            _ => break,
        }
    }
    path
}

fn command_config(program: PathBuf, timeout: Duration) -> LifecycleConfig {
    LifecycleConfig {
        backend: Backend::Command,
        command: CommandConfig {
            program: Some(program),
            timeout,
            ..CommandConfig::default()
        },
        ..LifecycleConfig::default()
    }
}

#[tokio::test]
async fn command_backend_passes_arguments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("calls.log");
    let script = write_script(
        dir.path(),
        "lifecycle.sh",
        &format!(
            r#"[ "$1" = probe ] && exit 0
echo "$@" >> '{}'
case "$1" in
  add) echo "creating $3"; echo 192.0.2.10 ;;
  remove) ;;
  list) echo "$2-one"; echo "unrelated"; echo "$2-two" ;;
  find-ip) [ "$2" = 192.0.2.10 ] && echo vsg-c1 ;;
esac
exit 0"#,
            log.display()
        ),
    );
    let lc = client(&command_config(script.clone(), Duration::from_secs(10)));
    assert_eq!(lc.backend_name(), "command");

    let created = lc.create("vsg-c1", "video-sip-gateway").await.expect("add");
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
    let dir = tempfile::tempdir().expect("tempdir");
    let script = write_script(
        dir.path(),
        "failing.sh",
        r#"[ "$1" = probe ] && exit 0
echo "warming up" >&2
echo "  quota exceeded for project jitsi  " >&2
exit 3"#,
    );
    let lc = client(&command_config(script, Duration::from_secs(10)));
    for _ in 0..3 {
        assert!(lc.is_up());
        let msg = assert_transient(lc.create("vsg-e1", "video-sip-gateway").await);
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
    let dir = tempfile::tempdir().expect("tempdir");
    let script = write_script(
        dir.path(),
        "minimal.sh",
        r#"[ "$1" = probe ] && exit 0
exit 2"#,
    );
    let lc = client(&command_config(script, Duration::from_secs(10)));
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
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("child.pid");
    let script = write_script(
        dir.path(),
        "hang.sh",
        &format!(
            r#"[ "$1" = probe ] && exit 0
sleep 60 &
echo $! > '{}'
wait"#,
            pid_file.display()
        ),
    );
    let lc = client(&command_config(script, Duration::from_millis(300)));
    let started = Instant::now();
    let msg = assert_transient(lc.create("vsg-h1", "video-sip-gateway").await);
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
