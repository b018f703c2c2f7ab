//! The one fake Foreman (API v2: hosts create, show, delete, search with pages) on loopback,
//! strict like Foreman: Basic auth with [`FOREMAN_USER`]:[`FOREMAN_TOKEN`], JSON content type,
//! "name has already been taken", FQDN names in a domain. Nodes of one Foreman share its
//! database; each node has its own request log and scripted misbehaviour. Warm pool: every host
//! has a power state (`PUT /api/hosts/:name/power`), a created host is up after
//! `provision_delay`, a started one after `power_on_delay`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use base64::Engine as _;
use serde_json::{Value, json};

use super::serve_on_loopback;

/// The user the fake accepts (and `fast_config` sends).
pub const FOREMAN_USER: &str = "scaler";
/// The token the fake accepts (and `fast_config` sends).
pub const FOREMAN_TOKEN: &str = "test-token";

/// The `Authorization` header of [`FOREMAN_USER`] and [`FOREMAN_TOKEN`].
pub fn foreman_basic_auth() -> String {
    let pair = format!("{FOREMAN_USER}:{FOREMAN_TOKEN}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// A host Foreman holds: the object as created, its address and id.
#[derive(Clone, Debug)]
pub struct StoredHost {
    pub sent: Value,
    pub ip: String,
    pub id: u64,
}

impl StoredHost {
    /// The host as Foreman answers it: the object as sent with its name, address and id.
    fn answer(&self, name: &str) -> Value {
        let mut out = self.sent.clone();
        if let Some(obj) = out.as_object_mut() {
            obj.insert("name".into(), json!(name));
            obj.insert("ip".into(), json!(self.ip));
            obj.insert("id".into(), json!(self.id));
        }
        out
    }
}

/// What one Foreman holds, shared by its nodes.
#[derive(Debug)]
pub struct ForemanState {
    pub hosts: BTreeMap<String, StoredHost>,
    /// Creates that stored a host.
    pub creates: u64,
    pub deletes: Vec<String>,
    /// Store the next N creates but answer only after `slow` (the client times out).
    pub lose_create_responses: u32,
    pub slow: Duration,
    /// The largest page a search answers.
    pub per_page_cap: usize,
    /// Power state per host (a host without an entry is on and up).
    pub power: BTreeMap<String, Power>,
    /// A created host is up (a following Jicofo counts it) this long after the create.
    pub provision_delay: Duration,
    /// A started host is up this long after the power-on.
    pub power_on_delay: Duration,
    /// Every power action received, in order: (host, action).
    pub power_actions: Vec<(String, String)>,
    /// The compute resource has no power management: every power action gets 422.
    pub no_power: bool,
}

/// One host's power state.
#[derive(Clone, Copy, Debug)]
pub struct Power {
    pub on: bool,
    /// When its gateway is up (joined), while on.
    pub up_at: Option<Instant>,
}

impl Default for ForemanState {
    fn default() -> Self {
        ForemanState {
            hosts: BTreeMap::new(),
            creates: 0,
            deletes: Vec::new(),
            lose_create_responses: 0,
            slow: Duration::ZERO,
            per_page_cap: 1000,
            power: BTreeMap::new(),
            provision_delay: Duration::ZERO,
            power_on_delay: Duration::ZERO,
            power_actions: Vec::new(),
            no_power: false,
        }
    }
}

/// One request as a node saw it (its body aside).
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

impl Seen {
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    pub fn query(&self) -> &str {
        self.uri.query().unwrap_or_default()
    }

    /// A header's value, if it is text.
    pub fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Scripted misbehaviour of one node.
#[derive(Default, Debug)]
pub struct Script {
    /// The next requests are answered with these (status, body), before anything else.
    pub fail_next: VecDeque<(u16, String)>,
    /// Every request is answered with this status (a broken node) while set.
    pub always: Option<u16>,
    /// Delay before answering any request.
    pub delay: Duration,
    /// Every request is answered with this (status, content type, body) while set: a wrong
    /// token, a validation error, a login page in front of the API (definitive refusals).
    pub instead: Option<(u16, &'static str, String)>,
}

/// One node: its request log and script.
#[derive(Default, Debug)]
struct Node {
    seen: Mutex<Vec<Seen>>,
    script: Mutex<Script>,
}

/// A node of a fake Foreman on loopback.
#[derive(Clone, Debug)]
pub struct FakeForeman {
    pub url: String,
    pub state: Arc<Mutex<ForemanState>>,
    node: Arc<Node>,
}

impl ForemanState {
    /// Stores `name` as a host that exists (sent with just its name), with `ip` and `id`.
    fn put(&mut self, name: &str, ip: String, id: u64) {
        let sent = json!({"name": name});
        self.hosts.insert(name.into(), StoredHost { sent, ip, id });
    }
}

type Fm = State<(Arc<Mutex<ForemanState>>, Arc<Node>)>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FakeForeman {
    /// A Foreman with one node and no hosts.
    pub async fn start() -> FakeForeman {
        Self::start_on(Arc::default()).await
    }

    /// Another node of the same Foreman (same hosts, own log and script).
    pub async fn second_node(&self) -> FakeForeman {
        Self::start_on(self.state.clone()).await
    }

    async fn start_on(state: Arc<Mutex<ForemanState>>) -> FakeForeman {
        let node = Arc::new(Node::default());
        let app = Router::new()
            .route("/api/hosts", get(search_hosts).post(create_host))
            .route("/api/hosts/{name}", get(one_host).delete(one_host))
            .route("/api/hosts/{name}/power", put(power))
            .route_layer(middleware::from_fn_with_state(
                (state.clone(), node.clone()),
                gated,
            ))
            .with_state((state.clone(), node.clone()));
        let addr = serve_on_loopback(app).await;
        FakeForeman {
            url: format!("http://{addr}"),
            state,
            node,
        }
    }

    fn db(&self) -> MutexGuard<'_, ForemanState> {
        lock(&self.state)
    }

    pub fn host_count(&self) -> usize {
        self.db().hosts.len()
    }

    /// The host names, sorted.
    pub fn hosts(&self) -> Vec<String> {
        self.db().hosts.keys().cloned().collect()
    }

    /// A host as it was created (without the address and id Foreman adds).
    pub fn host(&self, name: &str) -> Option<Value> {
        self.db().hosts.get(name).map(|h| h.sent.clone())
    }

    pub fn ip_of(&self, name: &str) -> Option<String> {
        self.db().hosts.get(name).map(|h| h.ip.clone())
    }

    /// A host that exists without a create (e.g. a gateway an agent runs on), in no hostgroup.
    pub fn insert(&self, name: &str, ip: &str) {
        let mut db = self.db();
        let id = db.hosts.len() as u64 + 1;
        db.put(name, ip.into(), id);
    }

    /// A host that exists without a create, in hostgroup `hostgroup_id` (Foreman answers its
    /// `hostgroup_id`, `hostgroup_name` and `hostgroup_title`).
    pub fn insert_in(&self, name: &str, ip: &str, hostgroup_id: u64, title: &str) {
        let mut db = self.db();
        let id = db.hosts.len() as u64 + 1;
        db.put(name, ip.into(), id);
        if let Some(h) = db.hosts.get_mut(name)
            && let Some(obj) = h.sent.as_object_mut()
        {
            obj.insert("hostgroup_id".into(), json!(hostgroup_id));
            obj.insert("hostgroup_name".into(), json!(title.rsplit('/').next()));
            obj.insert("hostgroup_title".into(), json!(title));
        }
    }

    pub fn creates(&self) -> u64 {
        self.db().creates
    }

    /// Hosts powered on whose gateway is up (past its provisioning or power-on delay).
    pub fn running_count(&self) -> usize {
        let db = self.db();
        let now = Instant::now();
        db.hosts
            .keys()
            .filter(|h| {
                db.power
                    .get(*h)
                    .is_none_or(|p| p.on && p.up_at.is_some_and(|t| t <= now))
            })
            .count()
    }

    /// Hosts powered on, up or still coming up (a created host is on), sorted.
    pub fn powered_on(&self) -> Vec<String> {
        let db = self.db();
        db.hosts
            .keys()
            .filter(|h| db.power.get(*h).is_none_or(|p| p.on))
            .cloned()
            .collect()
    }

    /// Hosts that exist powered off, sorted.
    pub fn stopped(&self) -> Vec<String> {
        let db = self.db();
        db.hosts
            .keys()
            .filter(|h| db.power.get(*h).is_some_and(|p| !p.on))
            .cloned()
            .collect()
    }

    /// A host that exists powered off (left from a previous run).
    pub fn add_stopped(&self, name: &str) {
        let mut db = self.db();
        let id = db.hosts.len() as u64 + 100;
        db.put(name, format!("10.0.1.{id}"), id);
        db.power.insert(
            name.into(),
            Power {
                on: false,
                up_at: None,
            },
        );
    }

    /// Sets how long a created host takes to be up, and a started one.
    pub fn set_delays(&self, provision: Duration, power_on: Duration) {
        let mut db = self.db();
        db.provision_delay = provision;
        db.power_on_delay = power_on;
    }

    /// Power actions received so far: (host, action).
    pub fn power_actions(&self) -> Vec<(String, String)> {
        self.db().power_actions.clone()
    }

    /// Every power action gets 422 (a compute resource without power management).
    pub fn set_no_power(&self, no: bool) {
        self.db().no_power = no;
    }

    pub fn deletes(&self) -> Vec<String> {
        self.db().deletes.clone()
    }

    /// Stores the next `n` creates but answers them only after `after`.
    pub fn lose_create_responses(&self, n: u32, after: Duration) {
        let mut db = self.db();
        db.lose_create_responses = n;
        db.slow = after;
    }

    /// Requests this node received.
    pub fn requests(&self) -> usize {
        lock(&self.node.seen).len()
    }

    /// The requests this node received, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.node.seen).clone()
    }

    /// This node's script, to change.
    pub fn script(&self) -> MutexGuard<'_, Script> {
        lock(&self.node.script)
    }

    /// This node answers 500 to everything while `down`.
    pub fn set_down(&self, down: bool) {
        self.script().always = down.then_some(500);
    }

    /// Every request to this node is answered with (status, content type, body) while set.
    pub fn answer_instead(&self, answer: Option<(u16, &'static str, String)>) {
        self.script().instead = answer;
    }

    /// Create requests this node received, answered or not.
    pub fn create_requests(&self) -> u64 {
        self.count_seen(Method::POST)
    }

    /// Delete requests this node received, answered or not.
    pub fn delete_requests(&self) -> u64 {
        self.count_seen(Method::DELETE)
    }

    fn count_seen(&self, method: Method) -> u64 {
        lock(&self.node.seen)
            .iter()
            .filter(|r| r.method == method && r.path().starts_with("/api/hosts"))
            .count() as u64
    }

    /// The next `times` requests to this node are answered `status` with `body`.
    pub fn fail_next(&self, status: u16, body: &str, times: usize) {
        let mut s = self.script();
        for _ in 0..times {
            s.fail_next.push_back((status, body.to_string()));
        }
    }
}

fn json_response(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body)).into_response()
}

fn error(status: u16, message: &str) -> Response {
    json_response(status, json!({"error": {"message": message}}))
}

/// Records the request, applies the node's script and checks Basic auth; `Some` = answer this.
async fn gate(node: &Node, method: Method, uri: Uri, headers: HeaderMap) -> Option<Response> {
    let seen = Seen {
        method,
        uri,
        headers,
    };
    let authorized = seen.header(header::AUTHORIZATION) == Some(&foreman_basic_auth());
    lock(&node.seen).push(seen);
    let delay = lock(&node.script).delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    {
        let mut script = lock(&node.script);
        if let Some((status, body)) = script.fail_next.pop_front() {
            let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
            return Some(json_response(status, body));
        }
        if let Some(status) = script.always {
            return Some(error(status, "broken"));
        }
        if let Some((status, content_type, body)) = script.instead.clone() {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Some((status, [(header::CONTENT_TYPE, content_type)], body).into_response());
        }
    }
    (!authorized).then(|| error(401, "Unable to authenticate user"))
}

/// Every route passes [`gate`] first (a middleware: the handlers only answer).
async fn gated(State((_, node)): Fm, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let (method, uri, headers) = (
        parts.method.clone(),
        parts.uri.clone(),
        parts.headers.clone(),
    );
    if let Some(r) = gate(&node, method, uri, headers).await {
        return r;
    }
    next.run(Request::from_parts(parts, body)).await
}

/// 415 with `unsupported` unless the body is declared JSON (a POST or PUT).
fn json_only(headers: &HeaderMap, unsupported: &str) -> Option<Response> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    (!json_type).then(|| error(415, unsupported))
}

async fn create_host(State((db, _)): Fm, headers: HeaderMap, body: Bytes) -> Response {
    let unsupported = "'Content-Type: ' is unsupported in API v2 for POST and PUT requests. Please use 'Content-Type: application/json'.";
    if let Some(r) = json_only(&headers, unsupported) {
        return r;
    }
    let host = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("host").cloned());
    let Some(host) = host else {
        return error(400, "bad body");
    };
    let Some(mut name) = host.get("name").and_then(Value::as_str).map(str::to_string) else {
        return json_response(
            422,
            json!({"error": {"errors": {"name": ["can't be blank"]}}}),
        );
    };
    // Like Foreman: a host in a domain is named by its FQDN.
    if let Some(domain) = host.get("domain_name").and_then(Value::as_str)
        && !name.contains('.')
    {
        name = format!("{name}.{domain}");
    }
    let (stored, slow) = {
        let mut db = lock(&db);
        if db.hosts.contains_key(&name) {
            return json_response(
                422,
                json!({"error": {"id": null, "errors": {"name": ["has already been taken"]},
                    "full_messages": ["Name has already been taken"]}}),
            );
        }
        db.creates += 1;
        let up_at = Some(Instant::now() + db.provision_delay);
        db.power.insert(name.clone(), Power { on: true, up_at });
        let stored = StoredHost {
            sent: host,
            ip: format!("10.0.0.{}", db.creates),
            id: db.creates,
        };
        db.hosts.insert(name.clone(), stored.clone());
        let slow = (db.lose_create_responses > 0).then(|| {
            db.lose_create_responses -= 1;
            db.slow
        });
        (stored, slow)
    };
    if let Some(d) = slow {
        // Stored, but the answer comes after the client gave up.
        tokio::time::sleep(d).await;
    }
    json_response(201, stored.answer(&name))
}

/// `GET` or `DELETE /api/hosts/<name>`.
async fn one_host(State((db, _)): Fm, Path(name): Path<String>, method: Method) -> Response {
    let delete = method == Method::DELETE;
    let mut db = lock(&db);
    let found = if delete {
        db.hosts.remove(&name)
    } else {
        db.hosts.get(&name).cloned()
    };
    match found {
        Some(h) => {
            if delete {
                db.power.remove(&name);
                db.deletes.push(name.clone());
            }
            json_response(200, h.answer(&name))
        }
        None => error(404, &format!("Resource host not found by id '{name}'")),
    }
}

/// `PUT /api/hosts/<name>/power` with `{"power_action": "start"|"stop"|"status"}`: `{"power":
/// true}` for an action, `{"power": "on"|"off"}` for status; 422 for another action (or every
/// action with `no_power`), 404 for an unknown host, 415 without the JSON content type.
async fn power(
    State((db, _)): Fm,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let unsupported = "Please use 'Content-Type: application/json'.";
    if let Some(r) = json_only(&headers, unsupported) {
        return r;
    }
    let mut db = lock(&db);
    if !db.hosts.contains_key(&name) {
        return error(404, &format!("Resource host not found by id '{name}'"));
    }
    let action = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("power_action")?.as_str().map(str::to_string))
        .unwrap_or_default();
    db.power_actions.push((name.clone(), action.clone()));
    let unknown = || {
        error(
            422,
            "Unknown power action: available methods are start, stop, status",
        )
    };
    if db.no_power {
        return unknown();
    }
    let delay = db.power_on_delay;
    let p = db.power.entry(name).or_insert(Power {
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
            json_response(200, json!({"power": true}))
        }
        "stop" => {
            *p = Power {
                on: false,
                up_at: None,
            };
            json_response(200, json!({"power": true}))
        }
        "status" => json_response(200, json!({"power": if p.on { "on" } else { "off" }})),
        _ => unknown(),
    }
}

/// `search=ip = <ip>` or `search=name ~ <pattern>` (`*` at the end: a prefix), in pages.
async fn search_hosts(
    State((db, _)): Fm,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let search = params.get("search").cloned().unwrap_or_default();
    let db = lock(&db);
    let matched: Vec<Value> = db
        .hosts
        .iter()
        .filter(|(name, h)| {
            if let Some(want) = search.strip_prefix("ip = ") {
                h.ip == want
            } else if let Some(pattern) = search.strip_prefix("name ~ ") {
                match pattern.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => name.contains(pattern),
                }
            } else {
                search.is_empty()
            }
        })
        .map(|(name, h)| json!({"name": name, "ip": h.ip, "id": h.id}))
        .collect();
    let number = |key: &str, default: usize| {
        params
            .get(key)
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(default)
    };
    let per_page = number("per_page", 20).min(db.per_page_cap.max(1));
    let page = number("page", 1).max(1);
    let results: Vec<&Value> = matched
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    json_response(
        200,
        json!({
            "total": db.hosts.len(),
            "subtotal": matched.len(),
            "page": page,
            "per_page": per_page,
            "search": search,
            "sort": {"by": null, "order": null},
            "results": results,
        }),
    )
}
