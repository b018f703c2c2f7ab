//! The one fixture set of the integration tests (every `tests/*.rs` uses it; add to it rather
//! than writing another fake):
//! - fake neighbours on loopback following SPEC §7: [`FakeJicofo`], [`FakeForeman`]
//!   (`foreman`: strict auth, pages, nodes sharing one database, scripted failures) and
//!   [`FakeJibri`] (`jibri`: health and graceful shutdown);
//! - processes of the real binary: [`Scaler`] (`serve` with [`fast_config`]), [`Agent`]
//!   (`agent`, with fast timings), [`RedisServer`], and [`bin`] / [`run_with_config`] for
//!   one-shot commands;
//! - fixtures: [`Stack`] (a Jicofo, a Foreman and `serve` on them, config changes through
//!   [`with_overrides`]) and [`Stack::agent`] (an agent of a fake Jibri asking that `serve`);
//! - `tokens`: key pairs made with `openssl`, signed tokens, the shell client's token,
//!   [`AuthKeys`] with its `[auth]` table;
//! - helpers on a status document ([`count`], [`ledger_state`], [`hosts_in`]) and on the API
//!   ([`Scaler::set`], [`Scaler::settings`], [`Scaler::remove`], [`Scaler::legacy_delete`],
//!   [`Scaler::request_as`], [`idle_storm`]).
#![allow(dead_code)]

pub mod agent;
pub mod foreman;
pub mod jibri;
pub mod openmetrics;
pub mod sidecar;
pub mod tokens;

// Not every test file uses every fixture.
#[allow(unused_imports)]
pub use agent::Agent;
#[allow(unused_imports)]
pub use foreman::{FOREMAN_TOKEN, FOREMAN_USER, FakeForeman};
#[allow(unused_imports)]
pub use jibri::{FakeJibri, JibriMode};
#[allow(unused_imports)]
pub use tokens::{
    AuthKeys, ec_key_pair, jwt_part, openssl, rsa_key_pair, shell_client_token, token,
};

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jitsi_scaler::lifecycle::{Backend, CommandConfig, ForemanConfig, LifecycleConfig};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
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

/// An http URL where nothing listens.
pub fn dead_url() -> String {
    format!("http://{}", dead_addr())
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
    /// With `follow`: answer the host count as it was this long ago (Jicofo lags the hosts).
    pub lag: Duration,
    /// With `follow`: the running-host counts seen so far, for `lag`.
    pub history: std::collections::VecDeque<(std::time::Instant, u32)>,
    /// Jicofo's `jibri` object (session counters), when set.
    pub jibri: Option<serde_json::Value>,
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
            lag: Duration::ZERO,
            history: std::collections::VecDeque::new(),
            jibri: None,
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

    /// Waits until `n` more requests have come (so about `n` ticks have passed).
    pub async fn wait_requests(&self, n: u64) {
        let before = self.requests();
        while self.requests() < before + n {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn jicofo_stats(State(state): State<Arc<Mutex<JicofoState>>>) -> Response {
    let (down, total, available, follow, busy, jibri) = {
        let mut s = state.lock().expect("lock");
        s.requests += 1;
        (
            s.down,
            s.total,
            s.available,
            s.follow.clone(),
            s.busy,
            s.jibri.clone(),
        )
    };
    if down {
        return (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response();
    }
    let (total, available) = match follow {
        Some(f) => {
            // Hosts that run and have finished booting (provisioning or power-on), as they
            // were `lag` ago.
            let running = f.running_count() as u32;
            let now = std::time::Instant::now();
            let mut s = state.lock().expect("lock");
            s.history.push_back((now, running));
            let lag = s.lag;
            while s.history.len() > 1 && s.history[1].0 + lag <= now {
                s.history.pop_front();
            }
            // The newest count at least `lag` old (the oldest one while none is).
            let seen = s.history.front().map_or(running, |&(_, n)| n);
            let t = total + seen;
            (t, t.saturating_sub(busy))
        }
        None => (total, available),
    };
    let mut body = json!({
        "conferences": 3,
        "participants": 7,
        "jibri_detector": {"count": 0, "available": 0},
        "sip_jibri_detector": {"count": total, "available": available},
        "threads": 90
    });
    if let (Some(j), Some(obj)) = (jibri, body.as_object_mut()) {
        obj.insert("jibri".into(), j);
    }
    axum::Json(body).into_response()
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

/// The `[policy]` (fast ticks and short timeouts, then the `policy_extra` lines) and `[jicofo]`
/// (one shard at `jicofo_url`) tables of the tests' configs.
pub fn fast_policy(jicofo_url: &str, policy_extra: &str) -> String {
    format!(
        r#"
[policy]
# The legacy gateways these tests play never confirm a drain: delete at once.
drain_confirm = false
tick = "200ms"
stats_max_age = "1500ms"
boot_timeout = "30s"
reconcile_interval = "1h"
{policy_extra}
# These tests are about the policy with a fixed spare floor (target mode has its own tests).
[capacity]
mode = "fixed"

[jicofo]
timeout = "1s"
[[jicofo.shards]]
name = "shard1"
url = "{jicofo_url}"
"#
    )
}

/// Config lines shared by the tests: fast ticks and short timeouts.
pub fn fast_config(jicofo_url: &str, foreman_urls: &[&str]) -> String {
    let nodes: Vec<String> = foreman_urls.iter().map(|u| format!("{u:?}")).collect();
    format!(
        r#"{policy}
[lifecycle]
backend = "foreman"
name_prefix = "vsg"
[lifecycle.foreman]
nodes = [{nodes}]
user = "{FOREMAN_USER}"
token = "{FOREMAN_TOKEN}"
connect_timeout = "300ms"
timeout = "1s"
create_timeout = "1s"
attempts = 2
backoff = "20ms"
breaker_threshold = 2
breaker_cooldown = "60s"
"#,
        policy = fast_policy(jicofo_url, "pending_ttl = \"60s\"\n"),
        nodes = nodes.join(", ")
    )
}

/// An answer of the scaler's API.
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub content_type: String,
    /// The `WWW-Authenticate` header.
    pub challenge: Option<String>,
    pub body: String,
}

/// `base` with `overrides` applied: each `key = value` line before the first `[table]` line
/// replaces the line of that key in `base` (which must hold it once), or, for a key `base`
/// lacks, goes into its `[policy]` table; the tables from the first `[table]` on are appended.
pub fn with_overrides(base: &str, overrides: &str) -> String {
    let split = overrides
        .lines()
        .position(|l| l.trim_start().starts_with('['))
        .unwrap_or(overrides.lines().count());
    let mut out = base.to_string();
    for line in overrides
        .lines()
        .take(split)
        .filter(|l| !l.trim().is_empty())
    {
        let key = line.split('=').next().unwrap_or("").trim();
        let at = |l: &&str| l.trim_start().starts_with(&format!("{key} ="));
        let found: Vec<&str> = out.lines().filter(at).collect();
        assert!(
            found.len() <= 1,
            "{key} is in the config {} times",
            found.len()
        );
        out = match found.first() {
            Some(old) => out.replacen(old, line, 1),
            None => out.replacen("[policy]\n", &format!("[policy]\n{line}\n"), 1),
        };
    }
    let tables: Vec<&str> = overrides.lines().skip(split).collect();
    format!("{out}\n{}\n", tables.join("\n"))
}

/// The scaler fixture: a fake Jicofo, a fake Foreman node and the real `serve` on both.
pub struct Stack {
    pub jicofo: FakeJicofo,
    pub foreman: FakeForeman,
    pub s: Scaler,
}

impl Stack {
    /// Fakes with Jicofo reporting (`total`, `available`); `serve` on [`fast_config`] with
    /// `overrides` (see [`with_overrides`]).
    pub async fn start(total: u32, available: u32, overrides: &str) -> Stack {
        let jicofo = FakeJicofo::start(total, available).await;
        Stack::on(jicofo, FakeForeman::start().await, overrides).await
    }

    /// As [`Stack::start`], then waits for a first fresh Jicofo reading.
    pub async fn fresh(total: u32, available: u32, overrides: &str) -> Stack {
        let stack = Stack::start(total, available, overrides).await;
        stack.s.fresh().await;
        stack
    }

    /// `serve` on these fakes (set up by the test first).
    pub async fn on(jicofo: FakeJicofo, foreman: FakeForeman, overrides: &str) -> Stack {
        let s = Scaler::on(&jicofo, &foreman, overrides).await;
        Stack { jicofo, foreman, s }
    }

    /// The agent fixture: the real agent of `jibri`, asking this scaler (`extra`: agent config).
    pub fn agent(&self, jibri: &FakeJibri, extra: &str) -> Agent {
        Agent::start(&format!("{}/scaler", self.s.url), jibri, extra)
    }
}

/// Waits until `check()` holds, or fails naming `what`, with `log()`.
pub async fn until(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> bool,
    log: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Scaler {
    /// Starts `serve` on [`fast_config`] of these fakes with `overrides` (see [`with_overrides`]).
    pub async fn on(jicofo: &FakeJicofo, foreman: &FakeForeman, overrides: &str) -> Scaler {
        Scaler::start(&with_overrides(
            &fast_config(&jicofo.url, &[&foreman.url]),
            overrides,
        ))
        .await
    }

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
        // SCALER_TEST_BIN runs another build (e.g. the previous commit's, for a
        // before/after measurement); default: this build.
        let bin = std::env::var_os("SCALER_TEST_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_jitsi-scaler").into());
        let child = Command::new(bin)
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
        let reply = self
            .request_as(self.bearer.as_deref(), method, path, body)
            .await;
        (reply.code, reply.body)
    }

    /// A request with `token` as the bearer token (`None`: without one).
    pub async fn request_as(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: &str,
    ) -> Reply {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("request");
        let header = |name: &str| {
            let value = r.headers().get(name).and_then(|v| v.to_str().ok());
            value.map(str::to_string)
        };
        Reply {
            code: r.status().as_u16(),
            content_type: header("content-type").unwrap_or_default(),
            challenge: header("www-authenticate"),
            body: r.text().await.unwrap_or_default(),
        }
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

impl Scaler {
    /// Waits for a fresh Jicofo reading; the status then.
    pub async fn fresh(&self) -> Value {
        self.eventually("a fresh reading", Duration::from_secs(20), |st| {
            st["jicofo"]["merged"].is_object()
        })
        .await
    }

    /// `POST /scaler/<name>` (min, max, bulk-max) with `value`, asserting 204.
    pub async fn set(&self, name: &str, value: &str) {
        let (code, body) = self.post(&format!("/scaler/{name}"), value).await;
        assert_eq!(code, 204, "{name} = {value}: {body}");
    }

    /// The settings as `GET /scaler/min`, `max` and `bulk-max` answer them.
    pub async fn settings(&self) -> [String; 3] {
        let mut out = [String::new(), String::new(), String::new()];
        for (name, value) in ["min", "max", "bulk-max"].iter().zip(&mut out) {
            let (code, body) = self.get(&format!("/scaler/{name}")).await;
            assert_eq!(code, 200, "{name}: {body}");
            *value = body;
        }
        out
    }

    /// `POST /scaler/remove` for `host` with `reason`: the answer body.
    pub async fn remove(&self, host: &str, reason: &str) -> String {
        let body = json!({"host": host, "reason": reason}).to_string();
        let (code, text) = self.post("/scaler/remove", &body).await;
        assert_eq!(code, 200, "remove {host} ({reason}): {text}");
        text
    }

    /// `DELETE /scaler/instance` for `host` with `reason`, as the legacy scale-down script
    /// sends it (no `drain`): (status, body).
    pub async fn legacy_delete(&self, host: &str, reason: &str) -> (u16, String) {
        let body = json!({"host": host, "reason": reason}).to_string();
        self.send(reqwest::Method::DELETE, "/scaler/instance", &body)
            .await
    }

    /// The recent decisions of `kind` about `host`, oldest first: (outcome, why).
    pub async fn decisions(&self, kind: &str, host: &str) -> Vec<(String, String)> {
        let st = self.status().await;
        let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
        let mut out: Vec<(String, String)> = st["recent_decisions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["kind"] == kind && d["host"] == host)
            .map(|d| (text(&d["outcome"]), text(&d["why"])))
            .collect();
        out.reverse();
        out
    }
}

/// `n` concurrent idle remove-me requests: request `i` names host `gw-{i % hosts}` and goes to
/// replica `i % scalers.len()`. Fails on an answer other than `accepted` or `keep`; returns the
/// host numbers accepted and the number of `keep` answers.
pub async fn idle_storm(scalers: &[Scaler], n: usize, hosts: usize) -> (BTreeSet<usize>, usize) {
    let mut handles = Vec::new();
    for i in 0..n {
        let s = &scalers[i % scalers.len()];
        let (http, url) = (s.http.clone(), format!("{}/scaler/remove", s.url));
        let host = i % hosts;
        handles.push(tokio::spawn(async move {
            let body = format!(r#"{{"host":"gw-{host}","reason":"idle"}}"#);
            let r = http.post(url).body(body).send().await.ok()?;
            r.text().await.ok().map(|t| (host, t))
        }));
    }
    let (mut accepted, mut keeps) = (BTreeSet::new(), 0);
    for h in handles {
        match h.await.ok().flatten() {
            Some((host, t)) if t == "accepted" => {
                accepted.insert(host);
            }
            Some((_, t)) if t == "keep" => keeps += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    (accepted, keeps)
}

/// The ledger state `host` is in, from a status document.
pub fn ledger_state(status: &Value, host: &str) -> Option<String> {
    let hosts = status["ledger"]["hosts"].as_object()?;
    hosts.iter().find_map(|(state, list)| {
        list.as_array()?
            .iter()
            .any(|h| h["host"] == host)
            .then(|| state.clone())
    })
}

/// The hosts in ledger state `state`, from a status document.
pub fn hosts_in(status: &Value, state: &str) -> Vec<String> {
    status["ledger"]["hosts"][state]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["host"].as_str().map(str::to_string))
        .collect()
}

impl Drop for Scaler {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A file `name` holding `text` in a new temp dir (removed when the dir is dropped).
pub fn temp_file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write temp file");
    (dir, path)
}

/// Writes `text` to an executable file `name` in `dir` and waits until it can be executed (a
/// concurrent fork in another test can briefly hold the file open for writing: ETXTBSY); the
/// wait runs it once with the argument `probe`.
pub fn executable(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for _ in 0..100 {
        match std::process::Command::new(&path).arg("probe").output() {
            Err(e) if e.raw_os_error() == Some(26) => std::thread::sleep(Duration::from_millis(10)),
            _ => break,
        }
    }
    path
}

/// A Foreman lifecycle config on `nodes` with the fake's credentials, 2 s calls, 3 attempts
/// and tens of milliseconds of backoff (a test sets its connect timeout and breaker).
pub fn foreman_lifecycle(nodes: Vec<String>) -> LifecycleConfig {
    let foreman = ForemanConfig {
        nodes,
        user: FOREMAN_USER.into(),
        token: Some(FOREMAN_TOKEN.into()),
        timeout: Duration::from_secs(2),
        attempts: 3,
        backoff: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        ..ForemanConfig::default()
    };
    // The default backend is Foreman, naming hosts `vsg-*`.
    LifecycleConfig {
        foreman,
        ..LifecycleConfig::default()
    }
}

/// A command lifecycle config running `program`, each call limited to `timeout`.
pub fn command_lifecycle(program: PathBuf, timeout: Duration) -> LifecycleConfig {
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

/// The `jitsi-scaler` binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_jitsi-scaler"))
}

/// Runs `cmd` to its end and checks that it succeeded (its stderr in the failure message);
/// returns its output.
pub fn succeed(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("the binary runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `jitsi-scaler <args> --config <config>` to its end.
pub fn run_with_config(args: &[&str], config: &std::path::Path) -> std::process::Output {
    let out = bin().args(args).arg("--config").arg(config).output();
    out.expect("the binary runs")
}

/// The number of ledger entries in `state` from a status document.
pub fn count(status: &Value, state: &str) -> u64 {
    status["ledger"]["counts"][state].as_u64().unwrap_or(0)
}

/// A real `redis-server` on a free loopback port, with its own directory (append-only file on,
/// so a restart keeps the data as a production Redis would).
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    pub url: String,
    dir: tempfile::TempDir,
    /// The port of the primary this server replicates (`--replicaof`), if any.
    replica_of: Option<u16>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_as(None)
    }

    /// A replica of the server on `primary` (both on loopback).
    pub fn start_replica_of(primary: u16) -> RedisServer {
        Self::start_as(Some(primary))
    }

    fn start_as(replica_of: Option<u16>) -> RedisServer {
        let port = dead_addr().port();
        let mut r = RedisServer {
            child: None,
            port,
            url: format!("redis://127.0.0.1:{port}/0"),
            dir: tempfile::tempdir().expect("tempdir"),
            replica_of,
        };
        r.spawn();
        r
    }

    /// Starts it again (same port and directory) as a replica of the server on `primary`, as
    /// an operator brings a failed primary back after a failover.
    pub fn restart_as_replica_of(&mut self, primary: u16) {
        self.stop();
        self.replica_of = Some(primary);
        self.spawn();
    }

    /// What `redis-cli` prints for `args` sent to this server.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, args)
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
                // A replica (re)joining syncs at once, not after the default 5 s of waiting
                // for more replicas to share the transfer.
                "--repl-diskless-sync-delay",
                "0",
            ])
            .args(
                self.replica_of
                    .map(|p| vec!["--replicaof".to_string(), "127.0.0.1".into(), p.to_string()])
                    .unwrap_or_default(),
            )
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

    /// Starts it again with its data gone (a Redis without persistence restarting).
    pub fn restart_empty(&mut self) {
        self.stop();
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What `redis-cli` prints for `args` sent to the server (or Sentinel) on loopback `port`
/// (empty if it cannot be reached).
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A real Redis Sentinel on a free loopback port (Debian's `redis-sentinel`, or
/// `redis-server --sentinel` where only the server is installed), monitoring the primary on a
/// loopback port under `master`, with short timings so a failover takes a few seconds.
pub struct SentinelServer {
    child: Option<Child>,
    pub port: u16,
    pub master: String,
    dir: tempfile::TempDir,
}

impl SentinelServer {
    /// Starts it; `down_after` is how long the primary may be silent before it counts as
    /// down, `failover_timeout` Sentinel's failover-timeout. Quorum 2.
    pub fn start(
        master: &str,
        primary: u16,
        down_after: Duration,
        failover_timeout: Duration,
    ) -> SentinelServer {
        let port = dead_addr().port();
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
                 sentinel monitor {master} 127.0.0.1 {primary} 2\n\
                 sentinel down-after-milliseconds {master} {down}\n\
                 sentinel failover-timeout {master} {fo}\n\
                 sentinel parallel-syncs {master} 1\n",
                dir = dir.path().display(),
                down = down_after.as_millis(),
                fo = failover_timeout.as_millis(),
            ),
        )
        .expect("write sentinel.conf");
        let on_path = |bin: &str| {
            std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        };
        let mut cmd = if on_path("redis-sentinel") {
            let mut c = Command::new("redis-sentinel");
            c.arg(&conf);
            c
        } else {
            let mut c = Command::new("redis-server");
            c.arg(&conf).arg("--sentinel");
            c
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-sentinel not found: run ./scripts/test, which installs it");
        let s = SentinelServer {
            child: Some(child),
            port,
            master: master.to_string(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redis_cli(port, &["PING"]).contains("PONG") {
            assert!(
                Instant::now() < deadline,
                "sentinel did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(30));
        }
        s
    }

    /// `127.0.0.1:<port>`, for `store.sentinels`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port of the primary this Sentinel names now.
    pub fn primary(&self) -> Option<u16> {
        let out = redis_cli(
            self.port,
            &["SENTINEL", "get-master-addr-by-name", &self.master],
        );
        out.lines().nth(1).and_then(|p| p.trim().parse().ok())
    }

    /// A field of `SENTINEL master <name>` (e.g. `num-slaves`, `num-other-sentinels`).
    pub fn master_field(&self, field: &str) -> Option<String> {
        let out = redis_cli(self.port, &["SENTINEL", "master", &self.master]);
        let lines: Vec<&str> = out.lines().map(str::trim).collect();
        let at = lines.iter().position(|l| *l == field)?;
        lines.get(at + 1).map(|v| v.to_string())
    }
}

impl Drop for SentinelServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Config lines for a replica on `redis`.
pub fn redis_store(redis: &RedisServer, replica: &str) -> String {
    format!(
        "\n[store]\nbackend = \"redis\"\nredis_url = \"{}\"\nreplica = \"{replica}\"\nlease_ttl = \"1500ms\"\ntimeout = \"500ms\"\n",
        redis.url
    )
}

/// Metric names (`jitsi_scaler_...`) in a PromQL expression.
pub fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("jitsi_scaler_") {
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..len].to_string());
        rest = &tail[len..];
    }
    names
}

/// `serve` with `min = 1` against a Foreman that refuses every create (401) and a short
/// refusal hold (1 s, at most 2 s), once it has seen its first refused create.
pub async fn refused_creates() -> (Scaler, FakeJicofo, FakeForeman) {
    let jicofo = FakeJicofo::start(0, 0).await;
    let foreman = FakeForeman::start().await;
    foreman.answer_instead(Some((401, "text/plain", "denied".into())));
    let s = Scaler::start(&format!(
        "[settings]\nmin = 1\n{}",
        // A slow poll can see a second refusal a second later: the breaker must not open on
        // it, or the callers' "Foreman accepts again" waits out its cooldown.
        fast_config(&jicofo.url, &[&foreman.url])
            .replace(
                "[lifecycle.foreman]",
                "refusal_backoff = \"1s\"\nrefusal_backoff_max = \"2s\"\n[lifecycle.foreman]"
            )
            .replace("breaker_threshold = 2", "breaker_threshold = 1000")
    ))
    .await;
    s.eventually(
        "a refused create",
        std::time::Duration::from_secs(20),
        |_| foreman.create_requests() >= 1,
    )
    .await;
    (s, jicofo, foreman)
}

/// A tool the tests need: the path in `env_var` if set, else the first of `names` on `PATH`. A
/// missing tool fails the test (with `why` and how to install it), never skips it.
pub fn required_tool(env_var: &str, names: &[&str], why: &str) -> std::path::PathBuf {
    if let Some(p) = std::env::var_os(env_var) {
        return p.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "{} not found in PATH: {why}, or set {env_var}=/path",
        names.join(" or ")
    );
}
