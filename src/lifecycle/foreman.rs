//! Foreman API v2 backend: round-robin start node, failover on connect errors, timeouts, 408,
//! 429 and 5xx, exponential backoff with full jitter between attempts, a breaker per node.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};

use super::breaker::{Admission, Breaker};
use super::{
    BreakerState, CallOutcome, CallRecord, Created, ForemanConfig, LifecycleError, NodeStatus,
    ObserverSlot, bounded,
};
use crate::duration::millis;

mod power;

/// Hosts asked for per page when listing (Foreman may cap it lower; we follow its answer).
const LIST_PAGE_SIZE: u64 = 1000;
/// Bound on pages followed by one `list`, so a misbehaving server cannot loop us forever.
const LIST_MAX_PAGES: u64 = 1000;

/// One Foreman node: its base URL, breaker and counters.
struct Node {
    /// Base URL without a trailing slash and without credentials.
    url: String,
    breaker: Mutex<Breaker>,
    calls_ok: AtomicU64,
    calls_failed: AtomicU64,
}

impl Node {
    /// The breaker; a poisoned lock still holds a consistent state machine, so take it.
    fn breaker(&self) -> MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The right to send one attempt to a node; an abandoned trial is released on drop.
struct Permit<'a> {
    node: &'a Node,
    trial: bool,
    settled: bool,
}

impl Permit<'_> {
    /// The node answered (even with a refusal): it is alive.
    fn node_alive(mut self) {
        self.settled = true;
        self.node.breaker().on_success();
    }

    /// The node failed: count it towards opening its breaker.
    fn node_failed(mut self, error: &str) {
        self.settled = true;
        self.node
            .breaker()
            .on_failure(Instant::now(), error.to_string());
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        // The caller's future was dropped mid-call (e.g. a lost `select!`): free the trial slot.
        if !self.settled && self.trial {
            self.node.breaker().release_trial();
        }
    }
}

/// What one attempt on one node came to.
enum Step<T> {
    /// Success.
    Done(T),
    /// A definitive refusal: stop, do not try another node.
    Refused(String),
    /// The node failed or the outcome is unknown: try the next node after a backoff.
    Retry(String),
}

/// An attempt's step and the HTTP status behind it (for the log).
struct Answer<T> {
    status: Option<u16>,
    step: Step<T>,
}

impl<T> Answer<T> {
    fn new(status: StatusCode, step: Step<T>) -> Self {
        Answer {
            status: Some(status.as_u16()),
            step,
        }
    }

    fn unreachable(error: String) -> Self {
        Answer {
            status: None,
            step: Step::Retry(error),
        }
    }
}

/// Foreman API v2 client over several nodes.
pub struct ForemanClient {
    http: reqwest::Client,
    nodes: Vec<Node>,
    user: String,
    /// Never logged; `Debug` leaves it out. `None`: no credentials configured (a Foreman
    /// that needs them answers 401, a definitive refusal shown in status and logs).
    token: Option<String>,
    /// `host_parameters` of the config as JSON, without `name`.
    host_parameters: Map<String, Value>,
    domain: Option<String>,
    timeout: Duration,
    create_timeout: Duration,
    attempts: u32,
    backoff: Duration,
    backoff_max: Duration,
    /// Round-robin start node of the next call.
    cursor: AtomicUsize,
    /// Metrics hook, told about every finished attempt.
    pub(super) observer: ObserverSlot,
    /// The launch hold after refused creates.
    pub(super) refusals: super::RefusalSlot,
    /// Hosts it may delete or power off beyond its own launches.
    pub(super) managed: super::ManagedSet,
}

impl std::fmt::Debug for ForemanClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForemanClient")
            .field(
                "nodes",
                &self
                    .nodes
                    .iter()
                    .map(|n| n.url.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("user", &self.user)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl ForemanClient {
    /// Validates the config, reads the token and CA files, builds the HTTP client.
    pub fn new(cfg: &ForemanConfig, managed: super::ManagedSet) -> Result<Self, LifecycleError> {
        let config = |msg: String| LifecycleError::Config(format!("lifecycle.foreman: {msg}"));
        if cfg.nodes.is_empty() {
            return Err(config("nodes is empty".into()));
        }
        let urls = cfg
            .nodes
            .iter()
            .map(|n| node_url(n).map_err(config))
            .collect::<Result<Vec<_>, _>>()?;
        if cfg.user.trim().is_empty() {
            return Err(config("user is empty".into()));
        }
        let token = match (&cfg.token, &cfg.token_file) {
            (Some(t), None) => t.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| config(format!("cannot read token_file {}: {e}", path.display())))?,
            (Some(_), Some(_)) => return Err(config("set token or token_file, not both".into())),
            (None, None) => String::new(),
        };
        let token = token.trim().to_string();
        if token.is_empty() && (cfg.token.is_some() || cfg.token_file.is_some()) {
            return Err(config("the token is empty".into()));
        }
        // Unset credentials are allowed so `serve` starts on the embedded defaults.
        // (`Config::warnings` says so at start.)
        let token = (!token.is_empty()).then_some(token);
        if cfg.attempts == 0 {
            return Err(config("attempts must be at least 1".into()));
        }
        if cfg.breaker_threshold == 0 {
            return Err(config("breaker_threshold must be at least 1".into()));
        }
        for (key, d) in [
            ("connect_timeout", cfg.connect_timeout),
            ("timeout", cfg.timeout),
            ("create_timeout", cfg.create_timeout),
        ] {
            if d.is_zero() {
                return Err(config(format!("{key} must be positive")));
            }
        }
        let domain = match cfg.domain.as_deref().map(|d| d.trim().trim_matches('.')) {
            None | Some("") => None,
            Some(d) => {
                super::validate_name(d).map_err(|_| config(format!("invalid domain {d:?}")))?;
                Some(d.to_ascii_lowercase())
            }
        };
        let mut host_parameters = Map::new();
        for (key, value) in &cfg.host_parameters {
            // The scaler chooses the name: that is what makes a retried create idempotent.
            if key == "name" {
                tracing::warn!("lifecycle.foreman.host_parameters.name is ignored");
                continue;
            }
            host_parameters.insert(key.clone(), toml_to_json(value));
        }

        let mut builder = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.create_timeout.max(cfg.timeout))
            // A redirect means a wrong node URL; following it could resend credentials elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("jitsi-scaler/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| config(format!("cannot read ca_file {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| config(format!("ca_file {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(config(format!(
                    "ca_file {} holds no certificate",
                    path.display()
                )));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| config(format!("cannot build the HTTP client: {e}")))?;

        Ok(ForemanClient {
            http,
            nodes: urls
                .into_iter()
                .map(|url| Node {
                    url,
                    breaker: Mutex::new(Breaker::new(cfg.breaker_threshold, cfg.breaker_cooldown)),
                    calls_ok: AtomicU64::new(0),
                    calls_failed: AtomicU64::new(0),
                })
                .collect(),
            user: cfg.user.trim().to_string(),
            token,
            host_parameters,
            domain,
            timeout: cfg.timeout,
            create_timeout: cfg.create_timeout,
            attempts: cfg.attempts,
            backoff: cfg.backoff,
            backoff_max: cfg.backoff_max,
            cursor: AtomicUsize::new(0),
            observer: ObserverSlot::default(),
            refusals: super::RefusalSlot::default(),
            managed,
        })
    }

    /// `POST /api/hosts`; a "name has already been taken" answer confirmed by a GET is success.
    pub async fn create(&self, name: &str, instance_type: &str) -> Result<Created, LifecycleError> {
        tracing::debug!(name, instance_type, "lifecycle create requested");
        self.call("create", true, name, |i| self.create_on(i, name))
            .await
    }

    /// `DELETE /api/hosts/:name`; 404 (already gone) is success.
    pub async fn delete(&self, name: &str) -> Result<(), LifecycleError> {
        self.call("delete", true, name, |i| self.delete_on(i, name))
            .await
    }

    /// `GET /api/hosts/:name`: the host object, `None` when Foreman has no such host (404).
    pub async fn show(&self, name: &str) -> Result<Option<Value>, LifecycleError> {
        self.call("show", false, name, |i| self.show_on(i, name))
            .await
    }

    /// `GET /api/hosts?search=ip = <ip>`: the host name of an address.
    pub async fn find_by_ip(&self, ip: &str) -> Result<Option<String>, LifecycleError> {
        self.call("find_by_ip", false, ip, |i| self.find_on(i, ip))
            .await
    }

    /// `GET /api/hosts?search=name ~ <prefix>-*`, all pages; names start with `<prefix>-`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, LifecycleError> {
        let mut names = Vec::new();
        for page in 1..=LIST_MAX_PAGES {
            let got = self
                .call("list", false, prefix, |i| {
                    self.list_page_on(i, prefix, page)
                })
                .await?;
            let count = got.names.len() as u64;
            names.extend(got.names);
            let enough = got
                .subtotal
                .is_some_and(|total| names.len() as u64 >= total);
            if count == 0 || count < got.per_page || enough {
                break;
            }
        }
        let wanted = format!("{prefix}-");
        names.retain(|n| n.starts_with(&wanted));
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// At least one node is not open (a half-open node counts as up).
    pub fn is_up(&self) -> bool {
        let now = Instant::now();
        self.nodes
            .iter()
            .any(|n| n.breaker().state(now) != BreakerState::Open)
    }

    /// Per-node state.
    pub fn nodes(&self) -> Vec<NodeStatus> {
        let now = Instant::now();
        self.nodes
            .iter()
            .map(|n| {
                let b = n.breaker();
                NodeStatus {
                    url: n.url.clone(),
                    breaker: b.state(now),
                    consecutive_failures: b.consecutive_failures(),
                    last_error: b.last_error().map(str::to_string),
                    calls_ok: n.calls_ok.load(Ordering::Relaxed),
                    calls_failed: n.calls_failed.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Runs `attempt` on up to `attempts` nodes: round-robin start, skipping open breakers,
    /// backing off between attempts. `loud` logs outcomes at info instead of debug.
    async fn call<T, F, Fut>(
        &self,
        op: &'static str,
        loud: bool,
        subject: &str,
        mut attempt: F,
    ) -> Result<T, LifecycleError>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = Answer<T>>,
    {
        let count = self.nodes.len();
        let mut next = self.cursor.fetch_add(1, Ordering::Relaxed) % count;
        let mut last_error: Option<String> = None;
        for round in 0..self.attempts {
            if round > 0 {
                tokio::time::sleep(self.backoff_delay(round - 1)).await;
            }
            let Some((index, permit)) = self.acquire(next) else {
                let msg = match &last_error {
                    None => "all lifecycle nodes unavailable".to_string(),
                    Some(e) => format!("all lifecycle nodes unavailable; last error: {e}"),
                };
                log(loud, false, op, "-", subject, None, round + 1, 0, &msg);
                return Err(LifecycleError::Transient(msg));
            };
            next = (index + 1) % count;
            let node = &self.nodes[index];
            let started = Instant::now();
            let answer = attempt(index).await;
            let elapsed_ms = millis(started.elapsed());
            let status = answer.status;
            self.observer.emit(&CallRecord {
                backend: "foreman",
                node: &node.url,
                op,
                outcome: match answer.step {
                    Step::Done(_) => CallOutcome::Ok,
                    Step::Refused(_) => CallOutcome::Refused,
                    Step::Retry(_) => CallOutcome::Failed,
                },
                elapsed: started.elapsed(),
            });
            let note = |ok: bool, outcome: &str| {
                let attempt = round + 1;
                log(
                    loud, ok, op, &node.url, subject, status, attempt, elapsed_ms, outcome,
                );
            };
            match answer.step {
                Step::Done(value) => {
                    permit.node_alive();
                    node.calls_ok.fetch_add(1, Ordering::Relaxed);
                    note(true, "ok");
                    return Ok(value);
                }
                Step::Refused(msg) => {
                    // A definitive refusal (wrong token, missing permission, a login
                    // page) repeats on every call: it counts toward the breaker like a failure.
                    permit.node_failed(&msg);
                    node.calls_failed.fetch_add(1, Ordering::Relaxed);
                    note(false, &msg);
                    return Err(LifecycleError::Refused(msg));
                }
                Step::Retry(msg) => {
                    permit.node_failed(&msg);
                    node.calls_failed.fetch_add(1, Ordering::Relaxed);
                    note(false, &msg);
                    last_error = Some(msg);
                }
            }
        }
        Err(LifecycleError::Transient(format!(
            "{op} {subject}: {} attempts failed; last error: {}",
            self.attempts,
            last_error.as_deref().unwrap_or("none")
        )))
    }

    /// The first node from `start` on whose breaker lets a call through.
    fn acquire(&self, start: usize) -> Option<(usize, Permit<'_>)> {
        let now = Instant::now();
        let count = self.nodes.len();
        (0..count).find_map(|k| {
            let index = (start + k) % count;
            let node = &self.nodes[index];
            let admission = node.breaker().try_acquire(now)?;
            Some((
                index,
                Permit {
                    node,
                    trial: admission == Admission::Trial,
                    settled: false,
                },
            ))
        })
    }

    /// Full jitter: uniform in `[0, min(backoff_max, backoff * 2^retry)]`.
    fn backoff_delay(&self, retry: u32) -> Duration {
        let ceiling = self
            .backoff
            .saturating_mul(2u32.saturating_pow(retry.min(30)))
            .min(self.backoff_max);
        let ms = millis(ceiling);
        if ms == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(rand::rng().random_range(0..=ms))
    }

    /// A request to node `index` with auth, `Accept` and a timeout.
    fn request(
        &self,
        method: Method,
        index: usize,
        path: &str,
        timeout: Duration,
    ) -> reqwest::RequestBuilder {
        let req = self
            .http
            .request(method, format!("{}{path}", self.nodes[index].url))
            .header(ACCEPT, "application/json")
            .timeout(timeout);
        match &self.token {
            Some(token) => req.basic_auth(&self.user, Some(token)),
            None => req,
        }
    }

    /// The name Foreman knows the host by: `<name>.<domain>` when a domain is configured.
    fn foreman_name(&self, name: &str) -> String {
        match &self.domain {
            Some(domain) if !name.contains('.') => format!("{name}.{domain}"),
            _ => name.to_string(),
        }
    }

    /// Our name for a Foreman host name: without the configured domain.
    fn short_name(&self, foreman_name: &str) -> String {
        if let Some(domain) = &self.domain {
            let lower = foreman_name.to_ascii_lowercase();
            if let Some(short) = lower.strip_suffix(&format!(".{domain}")) {
                return foreman_name[..short.len()].to_string();
            }
        }
        foreman_name.to_string()
    }

    fn host_path(&self, name: &str) -> String {
        format!("/api/hosts/{}", encode(&self.foreman_name(name)))
    }

    async fn create_on(&self, index: usize, name: &str) -> Answer<Created> {
        let url = &self.nodes[index].url;
        let mut host = self.host_parameters.clone();
        host.insert("name".into(), Value::String(name.to_string()));
        let body = Value::Object(Map::from_iter([("host".to_string(), Value::Object(host))]));
        // Without this content type a real Foreman answers 415 (flaw 12).
        let request = self
            .request(Method::POST, index, "/api/hosts", self.create_timeout)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let (status, text) = match send(request).await {
            Ok(answer) => answer,
            Err(e) => return Answer::unreachable(format!("{url}: create {name}: {e}")),
        };
        match status.as_u16() {
            200 | 201 if !is_host(&text) => {
                Answer::new(status, not_a_host(url, "create", name, &text))
            }
            200 | 201 => Answer::new(status, Step::Done(Created { ip: host_ip(&text) })),
            // An earlier attempt created it and its answer was lost: confirm it exists.
            422 if name_taken(&text) => self.confirm_on(index, name).await,
            404 => Answer::new(
                status,
                Step::Retry(format!(
                    "{url}: create {name}: 404, no hosts API at this URL"
                )),
            ),
            _ => Answer::new(status, classify(url, "create", name, status, &text)),
        }
    }

    /// `method` on `/api/hosts/:name` of one node: status and body, or the answer to retry with
    /// when the node cannot be reached (`what` names the call in the error).
    async fn host_call<T>(
        &self,
        method: Method,
        index: usize,
        name: &str,
        what: &str,
    ) -> Result<(StatusCode, String), Answer<T>> {
        let url = &self.nodes[index].url;
        let request = self.request(method, index, &self.host_path(name), self.timeout);
        send(request)
            .await
            .map_err(|e| Answer::unreachable(format!("{url}: {what} {name}: {e}")))
    }

    /// `GET /api/hosts/:name` after a name-taken answer: 200 means our host exists.
    async fn confirm_on(&self, index: usize, name: &str) -> Answer<Created> {
        let url = &self.nodes[index].url;
        let (status, text) = match self.host_call(Method::GET, index, name, "confirm").await {
            Ok(answer) => answer,
            Err(unreachable) => return unreachable,
        };
        match status.as_u16() {
            200 if !is_host(&text) => Answer::new(status, not_a_host(url, "confirm", name, &text)),
            200 => {
                tracing::info!(node = %url, name, "lifecycle create: name taken, host exists: an earlier attempt created it");
                Answer::new(status, Step::Done(Created { ip: host_ip(&text) }))
            }
            404 => Answer::new(
                status,
                Step::Retry(format!(
                    "{url}: create {name}: name taken but no such host (deleted meanwhile?)"
                )),
            ),
            _ => Answer::new(status, classify(url, "confirm", name, status, &text)),
        }
    }

    async fn show_on(&self, index: usize, name: &str) -> Answer<Option<Value>> {
        let url = &self.nodes[index].url;
        let (status, text) = match self.host_call(Method::GET, index, name, "show").await {
            Ok(answer) => answer,
            Err(unreachable) => return unreachable,
        };
        match status.as_u16() {
            200 if !is_host(&text) => Answer::new(status, not_a_host(url, "show", name, &text)),
            200 => match serde_json::from_str::<Value>(&text) {
                Ok(v) => Answer::new(status, Step::Done(Some(v))),
                Err(_) => Answer::new(status, not_a_host(url, "show", name, &text)),
            },
            404 => Answer::new(status, Step::Done(None)),
            _ => Answer::new(status, classify(url, "show", name, status, &text)),
        }
    }

    async fn delete_on(&self, index: usize, name: &str) -> Answer<()> {
        let url = &self.nodes[index].url;
        let (status, text) = match self.host_call(Method::DELETE, index, name, "delete").await {
            Ok(answer) => answer,
            Err(unreachable) => return unreachable,
        };
        match status.as_u16() {
            200..=299 => Answer::new(status, Step::Done(())),
            404 => {
                tracing::info!(node = %url, name, "lifecycle delete: host already gone");
                Answer::new(status, Step::Done(()))
            }
            _ => Answer::new(status, classify(url, "delete", name, status, &text)),
        }
    }

    /// `GET /api/hosts?search=<search>&<query>` on one node: the parsed page, or the answer to
    /// give up with. `what` and `subject` name the call in errors ("find ip" 10.0.0.1).
    async fn search_on<T>(
        &self,
        index: usize,
        search: &str,
        query: &str,
        (what, subject): (&str, &str),
    ) -> Result<(StatusCode, HostPage), Answer<T>> {
        let url = &self.nodes[index].url;
        let path = format!("/api/hosts?search={}&{query}", encode(search));
        let request = self.request(Method::GET, index, &path, self.timeout);
        let (status, text) = match send(request).await {
            Ok(answer) => answer,
            Err(e) => return Err(Answer::unreachable(format!("{url}: {what} {subject}: {e}"))),
        };
        if status != StatusCode::OK {
            return Err(Answer::new(
                status,
                classify(url, what, subject, status, &text),
            ));
        }
        match HostPage::parse(&text) {
            Some(page) => Ok((status, page)),
            None => Err(Answer::new(
                status,
                Step::Retry(format!("{url}: {what} {subject}: unreadable answer")),
            )),
        }
    }

    async fn find_on(&self, index: usize, ip: &str) -> Answer<Option<String>> {
        let search = format!("ip = {ip}");
        let found = self
            .search_on(index, &search, "per_page=100", ("find ip", ip))
            .await;
        let (status, page) = match found {
            Ok(found) => found,
            Err(answer) => return answer,
        };
        // Foreman matched the search; prefer an exact primary-address match if several came back.
        let found = page
            .hosts
            .iter()
            .find(|h| h.ip.as_deref() == Some(ip))
            .or_else(|| page.hosts.first())
            .map(|h| self.short_name(&h.name));
        Answer::new(status, Step::Done(found))
    }

    async fn list_page_on(&self, index: usize, prefix: &str, page: u64) -> Answer<ListPage> {
        // scoped_search turns `*` into SQL `%`: `name ~ vsg-*` is `name LIKE 'vsg-%'`.
        let search = format!("name ~ {prefix}-*");
        let query = format!("per_page={LIST_PAGE_SIZE}&page={page}");
        let found = self
            .search_on(index, &search, &query, ("list", prefix))
            .await;
        let (status, parsed) = match found {
            Ok(found) => found,
            Err(answer) => return answer,
        };
        let per_page = parsed.per_page.filter(|&p| p > 0).unwrap_or(LIST_PAGE_SIZE);
        Answer::new(
            status,
            Step::Done(ListPage {
                names: parsed
                    .hosts
                    .iter()
                    .map(|h| self.short_name(&h.name))
                    .collect(),
                subtotal: parsed.subtotal,
                per_page,
            }),
        )
    }
}

/// One page of a list.
struct ListPage {
    names: Vec<String>,
    subtotal: Option<u64>,
    per_page: u64,
}

/// A host of a search answer.
struct HostEntry {
    name: String,
    ip: Option<String>,
}

/// A search answer: `{"total":..,"subtotal":..,"page":..,"per_page":..,"results":[..]}`.
struct HostPage {
    hosts: Vec<HostEntry>,
    subtotal: Option<u64>,
    per_page: Option<u64>,
}

impl HostPage {
    /// Lenient parse: Foreman's answers grow fields and some versions send numbers as strings.
    fn parse(text: &str) -> Option<HostPage> {
        let v: Value = serde_json::from_str(text).ok()?;
        let results = v.get("results")?.as_array()?;
        let hosts = results
            .iter()
            .filter_map(|h| {
                Some(HostEntry {
                    name: h.get("name")?.as_str()?.to_string(),
                    ip: h.get("ip").and_then(Value::as_str).map(str::to_string),
                })
            })
            .collect();
        let number = |key: &str| {
            v.get(key).and_then(|n| {
                n.as_u64()
                    .or_else(|| n.as_str().and_then(|s| s.parse().ok()))
            })
        };
        Some(HostPage {
            hosts,
            subtotal: number("subtotal"),
            per_page: number("per_page"),
        })
    }
}

/// Sends a request and reads the answer; `Err` is a transport failure (connect, timeout).
async fn send(request: reqwest::RequestBuilder) -> Result<(StatusCode, String), String> {
    let response = request.send().await.map_err(describe)?;
    let status = response.status();
    let text = response.text().await.map_err(describe)?;
    Ok((status, text))
}

/// A transport error without its URL (we name the node ourselves), with its root cause.
fn describe(error: reqwest::Error) -> String {
    if error.is_timeout() {
        return "timeout".into();
    }
    let kind = if error.is_connect() {
        "connect error"
    } else {
        "request error"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(&error);
    while let Some(e) = source {
        cause = e.to_string();
        source = e.source();
    }
    if cause.is_empty() {
        cause = error.without_url().to_string();
    }
    format!("{kind}: {}", bounded(&cause))
}

/// The step for an answer that is neither the operation's success nor a case it handles itself.
/// A refusal ends with what to fix.
fn classify<T>(url: &str, op: &str, subject: &str, status: StatusCode, body: &str) -> Step<T> {
    let msg = format!("{url}: {op} {subject}: {status}: {}", bounded(body));
    match status.as_u16() {
        408 | 429 | 500..=599 => Step::Retry(msg),
        300..=399 => Step::Refused(format!("{msg} (redirect: check the node URL)")),
        401 => Step::Refused(format!(
            "{msg}; Foreman refused the token: check lifecycle.foreman.user/token"
        )),
        403 => Step::Refused(format!(
            "{msg}; Foreman denied the call: give lifecycle.foreman.user the host permissions (view, create, destroy hosts)"
        )),
        422 => Step::Refused(format!(
            "{msg}; Foreman rejected the host: check lifecycle.foreman.host_parameters"
        )),
        400..=499 => Step::Refused(format!("{msg}; check the [lifecycle.foreman] settings")),
        _ => Step::Retry(msg),
    }
}

/// True when a success answer is a Foreman host (a JSON object with a name or an id), not a
/// login page or a proxy's HTML.
fn is_host(body: &str) -> bool {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .is_some_and(|o| o.contains_key("name") || o.contains_key("id"))
}

/// The refusal for a success answer that is not a host.
fn not_a_host<T>(url: &str, op: &str, subject: &str, body: &str) -> Step<T> {
    Step::Refused(format!(
        "{url}: {op} {subject}: a success answer that is not a Foreman host ({}); \
         a login page or proxy answers instead of the API: check lifecycle.foreman.nodes",
        bounded(body)
    ))
}

/// True for Foreman's `{"error":{"errors":{"name":["has already been taken"]}}}`.
fn name_taken(body: &str) -> bool {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.pointer("/error/errors/name").cloned())
        .and_then(|v| v.as_array().cloned())
        .is_some_and(|msgs| {
            msgs.iter()
                .any(|m| m.as_str().is_some_and(|m| m.contains("already been taken")))
        })
}

/// The `ip` of a host answer, if any.
fn host_ip(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let ip = v.get("ip")?.as_str()?.trim();
    (!ip.is_empty()).then(|| ip.to_string())
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Validates a node base URL: http(s), a host, no credentials, query or fragment.
fn node_url(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text.trim())
        .map_err(|e| format!("invalid node URL {:?}: {e}", bounded(text)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("node URL {url} must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("node URL {url} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Never echo the URL here: it holds a secret.
        return Err("a node URL carries credentials: use user and token_file instead".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("node URL {url} must not have a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// TOML value to JSON (datetimes become strings; non-finite floats become null).
fn toml_to_json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// Logs one attempt's outcome: create/delete at info (warn on failure), lookups at debug.
#[allow(clippy::too_many_arguments)]
fn log(
    loud: bool,
    ok: bool,
    op: &str,
    node: &str,
    subject: &str,
    status: Option<u16>,
    attempt: u32,
    elapsed_ms: u64,
    outcome: &str,
) {
    // One field list for the three levels (tracing's level must be known at compile time).
    macro_rules! call {
        ($level:ident, $($ok:ident,)? $msg:literal) => {
            tracing::$level!(op, node, name = subject, status, attempt, elapsed_ms, $($ok,)? outcome, $msg)
        };
    }
    match (loud, ok) {
        (true, true) => call!(info, "lifecycle call"),
        (true, false) => call!(warn, "lifecycle call failed"),
        (false, _) => call!(debug, ok, "lifecycle call"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_search_values() {
        assert_eq!(encode("ip = 10.0.0.5"), "ip%20%3D%2010.0.0.5");
        assert_eq!(encode("name ~ vsg-*"), "name%20~%20vsg-%2A");
    }

    #[test]
    fn recognises_name_taken() {
        assert!(name_taken(
            r#"{"error":{"errors":{"name":["has already been taken"]}}}"#
        ));
        assert!(!name_taken(
            r#"{"error":{"errors":{"ip":["has already been taken"]}}}"#
        ));
        assert!(!name_taken("has already been taken"));
    }

    #[test]
    fn node_urls_are_checked() {
        assert_eq!(
            node_url("https://foreman.example:443/").as_deref(),
            Ok("https://foreman.example")
        );
        assert_eq!(
            node_url("http://10.0.0.1:3000/foreman/").as_deref(),
            Ok("http://10.0.0.1:3000/foreman")
        );
        let err = node_url("https://admin:secret@foreman.example").err();
        assert!(err.is_some_and(|e| !e.contains("secret")));
        assert!(node_url("ftp://foreman.example").is_err());
        assert!(node_url("foreman.example").is_err());
        assert!(node_url("https://foreman.example/?x=1").is_err());
    }
}
