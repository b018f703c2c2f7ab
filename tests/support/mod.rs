//! Test support: fake neighbours (Jicofo, Foreman) following SPEC §7, and the real `serve`
//! binary started on loopback with a generated config.
#![allow(dead_code)]

pub mod openmetrics;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Value, json};

/// Binds a listener on a free loopback port and serves `app` on it.
pub async fn serve_on_loopback(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// A loopback address where nothing listens.
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    drop(l);
    a
}

/// What the fake Jicofo answers.
#[derive(Clone, Debug)]
pub struct JicofoState {
    pub total: u32,
    pub available: u32,
    /// Answer 500 instead of stats.
    pub down: bool,
    /// Count Foreman's hosts as gateways (total = fixed + hosts, available = total - busy).
    pub follow: Option<FakeForeman>,
    pub busy: u32,
    pub requests: u64,
}

/// A fake Jicofo `/stats` whose counts the test sets.
#[derive(Clone)]
pub struct FakeJicofo {
    pub url: String,
    pub state: Arc<Mutex<JicofoState>>,
}

impl FakeJicofo {
    pub async fn start(total: u32, available: u32) -> FakeJicofo {
        let state = Arc::new(Mutex::new(JicofoState {
            total,
            available,
            down: false,
            follow: None,
            busy: 0,
            requests: 0,
        }));
        let app = Router::new()
            .route("/stats", get(jicofo_stats))
            .with_state(state.clone());
        let addr = serve_on_loopback(app).await;
        FakeJicofo {
            url: format!("http://{addr}/stats"),
            state,
        }
    }

    pub fn set(&self, total: u32, available: u32) {
        let mut s = self.state.lock().expect("lock");
        s.total = total;
        s.available = available;
    }

    pub fn set_down(&self, down: bool) {
        self.state.lock().expect("lock").down = down;
    }

    pub fn requests(&self) -> u64 {
        self.state.lock().expect("lock").requests
    }
}

async fn jicofo_stats(State(state): State<Arc<Mutex<JicofoState>>>) -> Response {
    let (down, total, available, follow, busy) = {
        let mut s = state.lock().expect("lock");
        s.requests += 1;
        (s.down, s.total, s.available, s.follow.clone(), s.busy)
    };
    if down {
        return (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
    }
    let (total, available) = match follow {
        Some(f) => {
            // Only hosts that run and have finished booting (provisioning or power-on).
            let t = total + f.running_count() as u32;
            (t, t.saturating_sub(busy))
        }
        None => (total, available),
    };
    axum::Json(json!({
        "conferences": 3,
        "participants": 7,
        "jibri_detector": {"count": 0, "available": 0},
        "sip_jibri_detector": {"count": total, "available": available},
        "threads": 90
    }))
    .into_response()
}

/// What the fake Foreman holds and how it misbehaves.
#[derive(Default, Debug)]
pub struct ForemanState {
    pub hosts: BTreeMap<String, Value>,
    pub creates: u64,
    pub deletes: Vec<String>,
    pub requests: u64,
    /// Answer 500 to everything.
    pub down: bool,
    /// Store the next N creates but answer only after this delay (the client times out).
    pub lose_create_responses: u32,
    pub slow: Duration,
    /// Power state per host (warm pool): created hosts are on.
    pub power: BTreeMap<String, Power>,
    /// A created host joins (is counted by a following Jicofo) this long after the create.
    pub provision_delay: Duration,
    /// A started host joins this long after the power-on.
    pub power_on_delay: Duration,
    /// Every power action received, in order: (host, action).
    pub power_actions: Vec<(String, String)>,
    /// The compute resource has no power management: power actions get 422.
    pub no_power: bool,
    /// Answer the next N power actions with 500.
    pub fail_power: u32,
}

/// One host's power state in the fake Foreman.
#[derive(Clone, Copy, Debug)]
pub struct Power {
    pub on: bool,
    /// When its gateway is up (joined), while on.
    pub up_at: Option<Instant>,
}

/// A fake Foreman API v2 (hosts create/get/delete/search) on loopback.
#[derive(Clone, Debug)]
pub struct FakeForeman {
    pub url: String,
    pub state: Arc<Mutex<ForemanState>>,
}

impl FakeForeman {
    pub async fn start() -> FakeForeman {
        let state = Arc::new(Mutex::new(ForemanState::default()));
        let app = Router::new()
            .route("/api/hosts", get(fm_search).post(fm_create))
            .route("/api/hosts/{name}", get(fm_get).delete(fm_delete))
            .route("/api/hosts/{name}/power", put(fm_power))
            .with_state(state.clone());
        let addr = serve_on_loopback(app).await;
        FakeForeman {
            url: format!("http://{addr}"),
            state,
        }
    }

    pub fn host_count(&self) -> usize {
        self.state.lock().expect("lock").hosts.len()
    }

    /// Hosts powered on whose gateway is up (past its provisioning or power-on delay).
    pub fn running_count(&self) -> usize {
        let s = self.state.lock().expect("lock");
        let now = Instant::now();
        s.hosts
            .keys()
            .filter(|h| {
                s.power
                    .get(*h)
                    .is_none_or(|p| p.on && p.up_at.is_some_and(|t| t <= now))
            })
            .count()
    }

    /// Hosts that exist and are powered off.
    pub fn stopped(&self) -> Vec<String> {
        let s = self.state.lock().expect("lock");
        s.hosts
            .keys()
            .filter(|h| s.power.get(*h).is_some_and(|p| !p.on))
            .cloned()
            .collect()
    }

    /// Adds a host that exists powered off (left from a previous run).
    pub fn add_stopped(&self, name: &str) {
        let mut s = self.state.lock().expect("lock");
        let n = s.hosts.len() + 10;
        s.hosts.insert(
            name.to_string(),
            json!({"name": name, "ip": format!("10.9.1.{n}"), "id": n}),
        );
        s.power.insert(
            name.to_string(),
            Power {
                on: false,
                up_at: None,
            },
        );
    }

    /// Sets the provisioning and power-on delays.
    pub fn set_delays(&self, provision: Duration, power_on: Duration) {
        let mut s = self.state.lock().expect("lock");
        s.provision_delay = provision;
        s.power_on_delay = power_on;
    }

    /// Power actions received so far: (host, action).
    pub fn power_actions(&self) -> Vec<(String, String)> {
        self.state.lock().expect("lock").power_actions.clone()
    }

    pub fn hosts(&self) -> Vec<String> {
        self.state
            .lock()
            .expect("lock")
            .hosts
            .keys()
            .cloned()
            .collect()
    }

    pub fn creates(&self) -> u64 {
        self.state.lock().expect("lock").creates
    }

    pub fn deletes(&self) -> Vec<String> {
        self.state.lock().expect("lock").deletes.clone()
    }

    pub fn requests(&self) -> u64 {
        self.state.lock().expect("lock").requests
    }

    pub fn set_down(&self, down: bool) {
        self.state.lock().expect("lock").down = down;
    }
}

type Fm = State<Arc<Mutex<ForemanState>>>;

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Basic "))
}

async fn fm_create(State(state): Fm, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let slow = {
        let mut s = state.lock().expect("lock");
        s.requests += 1;
        if s.down {
            return (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
        }
        if !authorized(&headers) {
            return (StatusCode::UNAUTHORIZED, "auth").into_response();
        }
        let json_ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !json_ct {
            return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "need json").into_response();
        }
        let Ok(v) = serde_json::from_slice::<Value>(&body) else {
            return (StatusCode::BAD_REQUEST, "bad json").into_response();
        };
        let Some(name) = v
            .pointer("/host/name")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return (StatusCode::UNPROCESSABLE_ENTITY, "no name").into_response();
        };
        if s.hosts.contains_key(&name) {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(
                    json!({"error": {"id": null, "errors": {"name": ["has already been taken"]},
                    "full_messages": ["Name has already been taken"]}}),
                ),
            )
                .into_response();
        }
        s.creates += 1;
        let n = s.hosts.len() + 10;
        let host = json!({"name": name, "ip": format!("10.9.0.{n}"), "id": n});
        let up_at = Some(Instant::now() + s.provision_delay);
        s.power.insert(name.clone(), Power { on: true, up_at });
        s.hosts.insert(name, host);
        if s.lose_create_responses > 0 {
            s.lose_create_responses -= 1;
            Some(s.slow)
        } else {
            None
        }
    };
    if let Some(d) = slow {
        tokio::time::sleep(d).await;
    }
    let last = state
        .lock()
        .expect("lock")
        .hosts
        .values()
        .last()
        .cloned()
        .unwrap_or(Value::Null);
    (StatusCode::CREATED, axum::Json(last)).into_response()
}

async fn fm_get(State(state): Fm, Path(name): Path<String>) -> Response {
    let mut s = state.lock().expect("lock");
    s.requests += 1;
    if s.down {
        return (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
    }
    match s.hosts.get(&name) {
        Some(h) => axum::Json(h.clone()).into_response(),
        None => not_found(&name),
    }
}

fn not_found(name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(
            json!({"error": {"message": format!("Resource host not found by id '{name}'")}}),
        ),
    )
        .into_response()
}

async fn fm_delete(State(state): Fm, Path(name): Path<String>) -> Response {
    let mut s = state.lock().expect("lock");
    s.requests += 1;
    if s.down {
        return (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
    }
    match s.hosts.remove(&name) {
        Some(h) => {
            s.power.remove(&name);
            s.deletes.push(name);
            axum::Json(h).into_response()
        }
        None => not_found(&name),
    }
}

/// `PUT /api/hosts/:name/power` with `{"power_action": "start"|"stop"|"status"}`: answers
/// `{"power": true}` for an action, `{"power": "on"|"off"}` for status, 422 for another action.
async fn fm_power(
    State(state): Fm,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut s = state.lock().expect("lock");
    s.requests += 1;
    if s.down {
        return (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
    }
    if !authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, "auth").into_response();
    }
    let json_ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_ct {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "need json").into_response();
    }
    if !s.hosts.contains_key(&name) {
        return not_found(&name);
    }
    let action = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("power_action")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default();
    s.power_actions.push((name.clone(), action.clone()));
    if s.fail_power > 0 {
        s.fail_power -= 1;
        return (StatusCode::INTERNAL_SERVER_ERROR, "power failed").into_response();
    }
    let unsupported = || {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"error": {"message": format!("Unknown power action: available methods are start, stop, status")}})),
        )
            .into_response()
    };
    if s.no_power {
        return unsupported();
    }
    let delay = s.power_on_delay;
    let p = s.power.entry(name).or_insert(Power {
        on: true,
        up_at: Some(Instant::now()),
    });
    match action.as_str() {
        "start" => {
            if !p.on {
                *p = Power {
                    on: true,
                    up_at: Some(Instant::now() + delay),
                };
            }
            axum::Json(json!({"power": true})).into_response()
        }
        "stop" => {
            *p = Power {
                on: false,
                up_at: None,
            };
            axum::Json(json!({"power": true})).into_response()
        }
        "status" => axum::Json(json!({"power": if p.on { "on" } else { "off" }})).into_response(),
        _ => unsupported(),
    }
}

async fn fm_search(
    State(state): Fm,
    axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
) -> Response {
    let mut s = state.lock().expect("lock");
    s.requests += 1;
    if s.down {
        return (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
    }
    let search = q.get("search").cloned().unwrap_or_default();
    let results: Vec<Value> = s
        .hosts
        .values()
        .filter(|h| {
            if let Some(ip) = search.strip_prefix("ip = ") {
                h["ip"] == ip.trim()
            } else if let Some(prefix) = search.split('~').nth(1) {
                h["name"]
                    .as_str()
                    .is_some_and(|n| n.contains(prefix.trim().trim_end_matches('%')))
            } else {
                true
            }
        })
        .cloned()
        .collect();
    axum::Json(
        json!({"total": results.len(), "subtotal": results.len(), "page": 1,
        "per_page": 1000, "search": search, "results": results}),
    )
    .into_response()
}

/// The real `jitsi-scaler serve`, on a free loopback port, with its own data directory.
pub struct Scaler {
    child: Option<Child>,
    pub url: String,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    config: String,
    pub http: reqwest::Client,
    /// Token sent by the helpers below, when the scaler verifies tokens.
    pub bearer: Option<String>,
    /// Extra environment of the process (e.g. systemd's NOTIFY_SOCKET).
    pub env: Vec<(String, String)>,
}

/// Config lines shared by the tests: fast ticks and short timeouts.
pub fn fast_config(jicofo_url: &str, foreman_urls: &[&str]) -> String {
    let nodes: Vec<String> = foreman_urls.iter().map(|u| format!("{u:?}")).collect();
    format!(
        r#"
[policy]
# The legacy gateways these tests play never confirm a drain: delete at once.
drain_confirm = false
tick = "200ms"
stats_max_age = "1500ms"
boot_timeout = "30s"
pending_ttl = "60s"
reconcile_interval = "1h"

[jicofo]
timeout = "1s"
[[jicofo.shards]]
name = "shard1"
url = "{jicofo_url}"

[lifecycle]
backend = "foreman"
name_prefix = "vsg"
[lifecycle.foreman]
nodes = [{nodes}]
user = "scaler"
token = "test-token"
connect_timeout = "300ms"
timeout = "1s"
create_timeout = "1s"
attempts = 2
backoff = "20ms"
breaker_threshold = 2
breaker_cooldown = "60s"
"#,
        nodes = nodes.join(", ")
    )
}

impl Scaler {
    /// Starts `serve` with `extra` TOML (appended after listen and data_dir).
    pub async fn start(extra: &str) -> Scaler {
        Self::start_with_env(extra, Vec::new()).await
    }

    /// Starts `serve` with `extra` TOML and extra environment variables.
    pub async fn start_with_env(extra: &str, env: Vec<(String, String)>) -> Scaler {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = dead_addr();
        // Tests about the policy run without tokens; auth tests bring their own [auth].
        let auth = if extra.contains("[auth]") {
            ""
        } else {
            "\n[auth]\nmode = \"none\"\nremove_burst = 1000000\nremove_rate_per_minute = 1000000\n"
        };
        let config = format!(
            "listen = \"{addr}\"\ndata_dir = \"{}\"\n{extra}{auth}",
            dir.path().join("data").display()
        );
        let mut s = Scaler {
            child: None,
            url: format!("http://{addr}"),
            addr,
            dir,
            config,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
            bearer: None,
            env,
        };
        s.spawn().await;
        s
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("scaler.toml")
    }

    /// Where the process writes its log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("scaler.log")
    }

    /// The log so far (for assertions and failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    async fn spawn(&mut self) {
        std::fs::write(self.config_path(), &self.config).expect("write config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_jitsi-scaler"))
            .args(["serve", "--config"])
            .arg(self.config_path())
            .env("RUST_LOG", "info,jitsi_scaler=debug")
            .env_remove("JITSI_SCALER_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn jitsi-scaler");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self.http.get(format!("{}/health", self.url)).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("jitsi-scaler exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "jitsi-scaler did not start:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the process again after [`Scaler::stop`] (same port, config and data).
    pub async fn start_again(&mut self) {
        self.spawn().await;
    }

    /// Where the process keeps its data (`data_dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the process with SIGTERM and waits for it.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the process again on the same port, config and data.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        self.send(reqwest::Method::GET, path, "").await
    }

    pub async fn post(&self, path: &str, body: &str) -> (u16, String) {
        self.send(reqwest::Method::POST, path, body).await
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: &str) -> (u16, String) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .body(body.to_string());
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("request");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    pub async fn status(&self) -> Value {
        let (code, body) = self.get("/scaler/status").await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("status JSON")
    }

    /// Waits until `check(status)` holds, or fails with the last status and the log.
    pub async fn eventually(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status().await;
            if check(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; status: {s:#}\nlog:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Scaler {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The number of ledger entries in `state` from a status document.
pub fn count(status: &Value, state: &str) -> u64 {
    status["ledger"]["counts"][state].as_u64().unwrap_or(0)
}

/// An RSA key pair made with the openssl CLI: (private PEM path, public PEM path).
pub fn rsa_key_pair(dir: &std::path::Path, name: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pem"));
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&private)
        .stderr(Stdio::null())
        .status()
        .expect("run openssl")
        .success();
    assert!(ok, "openssl genpkey failed");
    let ok = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .status()
        .expect("run openssl")
        .success();
    assert!(ok, "openssl pkey failed");
    (private, public)
}

/// A token signed with `key` for subject `sub`, valid for a minute.
pub fn token(key: &std::path::Path, sub: &str) -> String {
    let pem = std::fs::read(key).expect("read key");
    let opts = jitsi_scaler::auth::TokenOptions {
        sub: sub.to_string(),
        ..Default::default()
    };
    jitsi_scaler::auth::sign_token(&pem, &opts).expect("sign")
}

/// A real `redis-server` on a free loopback port, with its own directory (append-only file on,
/// so a restart keeps the data as a production Redis would).
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub url: String,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = dead_addr().port();
        let mut r = RedisServer {
            child: None,
            port,
            url: format!("redis://127.0.0.1:{port}/0"),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "yes",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: run ./scripts/test, which installs it");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 16];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read(&mut buf)
                        .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Stops the server (SIGKILL: as a crash or a network cut would look).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Config lines for a replica on `redis`.
pub fn redis_store(redis: &RedisServer, replica: &str) -> String {
    format!(
        "\n[store]\nbackend = \"redis\"\nredis_url = \"{}\"\nreplica = \"{replica}\"\nlease_ttl = \"1500ms\"\ntimeout = \"500ms\"\n",
        redis.url
    )
}
