//! The HTTP API: the legacy scaler's routes (SPEC §3) plus status, history, the status page,
//! health and readiness.
//!
//! Handlers parse and validate, call one [`Service`] operation, and turn the result into the
//! legacy answers (bare integers, plain-text `accepted`/`keep`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use policy::{Reason, Setting, Settings};
use serde_json::Value;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::auth::{AuthError, Authenticator, Caller, InstanceBinding, Role};
use crate::service::{Service, ServiceError};

// jitsi-autoscaler's sidecar routes (`src/api/sidecar.rs`).
mod sidecar;

/// How long one request may take before the service answers 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An API error: a status and a short human-readable reason (never internals).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed or out-of-range input.
    #[error("{0}")]
    BadRequest(String),
    /// The body is larger than `body_limit`.
    #[error("request body too large")]
    TooLarge,
    /// The request is valid but refused (at max, no fresh stats, ...).
    #[error("{0}")]
    Conflict(String),
    /// Authentication or authorisation failed (401, 403, 429).
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Auth(e) = self {
            return e.into_response();
        }
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Auth(e) => e.status(),
        };
        (status, self.to_string()).into_response()
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::BadRequest(format!("cannot read body: {}", r.body_text()))
        }
    }
}

/// What every handler gets: the service and the authenticator.
#[derive(Clone)]
pub struct AppState {
    svc: Arc<Service>,
    auth: Arc<Authenticator>,
}

type Shared = AppState;

/// What every authenticated handler extracts first: the state, the peer address and the
/// headers of the request.
struct Call {
    st: AppState,
    peer: SocketAddr,
    headers: HeaderMap,
}

impl FromRequestParts<AppState> for Call {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        let ConnectInfo(peer) = ConnectInfo::<SocketAddr>::from_request_parts(parts, st)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Call {
            st: st.clone(),
            peer,
            headers: parts.headers.clone(),
        })
    }
}

impl Call {
    /// Authenticates the caller: the auth seam of every API route but health, readiness and
    /// the sidecar routes.
    async fn caller(&self) -> Result<Caller, ApiError> {
        Ok(self.st.auth.authenticate(&self.headers, self.peer).await?)
    }

    /// [`Call::caller`], who must be an admin.
    async fn admin(&self) -> Result<Caller, ApiError> {
        let caller = self.caller().await?;
        caller.require_admin()?;
        Ok(caller)
    }
}

/// The caller's name in logs and the audit trail: `subject@address`.
fn who(c: &Caller) -> String {
    match &c.subject {
        Some(sub) => format!("{sub}@{}", c.client_ip),
        None => c.client_ip.to_string(),
    }
}

/// The router, with routes under the configured prefix.
pub fn router(svc: Arc<Service>, auth: Arc<Authenticator>) -> Router {
    let p = svc.cfg.prefix.clone();
    let limit = svc.cfg.body_limit;
    let state = AppState { svc, auth };
    Router::new()
        .route(&format!("{p}/min"), setting_routes(Setting::Min))
        .route(&format!("{p}/max"), setting_routes(Setting::Max))
        .route(&format!("{p}/bulk-max"), setting_routes(Setting::BulkMax))
        .route(
            &format!("{p}/instance"),
            post(add_instance).delete(remove_me).options(options),
        )
        .route(&format!("{p}/remove"), post(remove_me).options(options))
        .route(&format!("{p}/drained"), post(drained).options(options))
        .route(&format!("{p}/hello"), post(hello).options(options))
        .route(&format!("{p}/status"), get(status).options(options))
        // Schedules of target mode, read and replaced as JSON (admin).
        .route(
            &format!("{p}/capacity/schedule"),
            get(get_schedule).put(put_schedule).options(options),
        )
        .route(&format!("{p}/history"), get(history).options(options))
        .route(&format!("{p}/ui"), get(ui_page).options(options))
        .route(&format!("{p}/ui/"), get(ui_page).options(options))
        .route("/health", get(health).options(options))
        .route("/ready", get(ready).options(options))
        .route("/metrics", get(metrics).options(options))
        .merge(sidecar::routes(&p))
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_refusals,
        ))
        .layer(DefaultBodyLimit::max(limit))
        // Refuses an announced oversize body at once, before reading it.
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

/// Counts every auth refusal (401, 403, 429) in `jitsi_scaler_auth_failures_total` and notes it
/// for the log and the status page (who, why; never the token).
async fn count_refusals(State(st): State<Shared>, req: Request, next: Next) -> Response {
    // Kept before the request is consumed; the header map is only read again on a refusal.
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(p)| *p);
    let path = req.uri().path().to_owned();
    let headers = req.headers().clone();
    let response = next.run(req).await;
    if let Some(r) = response.extensions().get::<crate::auth::Refusal>() {
        let sidecar = path.starts_with(&format!("{}/sidecar/", st.svc.cfg.prefix));
        let caller = if sidecar { "sidecar" } else { "api" };
        st.svc.ops.metrics.auth_failure(caller, r.reason, r.cause);
        let kid = crate::auth::refusals::unverified_kid(&headers);
        let client = match peer {
            Some(p) => st.auth.client_ip(&headers, p),
            None => std::net::IpAddr::from([0, 0, 0, 0]),
        };
        st.svc.ops.refusals.note(
            &crate::auth::refusals::Refused {
                client,
                caller,
                reason: r.reason,
                cause: r.cause,
                kid: kid.as_deref(),
                path: &path,
            },
            crate::ops::now_ms(),
        );
    }
    response
}

fn setting_routes(setting: Setting) -> MethodRouter<Shared> {
    get(move |call: Call| async move {
        call.admin().await?;
        Ok::<_, ApiError>(integer_body(i64::from(
            call.st.svc.settings().await.get(setting),
        )))
    })
    .post(
        move |call: Call, body: Result<Bytes, BytesRejection>| async move {
            let caller = call.admin().await?;
            post_setting(&call.st.svc, setting, &caller, body).await
        },
    )
    .options(options)
}

async fn options() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
    );
    r
}

async fn fallback(method: Method) -> Response {
    if method == Method::OPTIONS {
        return options().await;
    }
    (StatusCode::NOT_FOUND, "not found").into_response()
}

fn integer_body(value: i64) -> Response {
    let mut r = value.to_string().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Parses a JSON body, with a short reason when it is not JSON.
fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))
}

async fn post_setting(
    svc: &Service,
    setting: Setting,
    caller: &Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let value = json_body(body)?;
    let n = value.as_i64().ok_or_else(|| {
        ApiError::BadRequest(format!(
            "{setting} must be a bare JSON integer, got {value}"
        ))
    })?;
    // The cap of `min` follows `max` (target mode sizes up to it).
    let n = match setting {
        Setting::Min => Settings::check_min(n, svc.settings().await.max_total),
        other => other.check(n),
    }
    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    svc.set_setting(setting, n, &who(caller))
        .await
        .map_err(conflict)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_schedule(call: Call) -> Result<Response, ApiError> {
    call.admin().await?;
    Ok(axum::Json(call.st.svc.capacity_schedule()).into_response())
}

async fn put_schedule(
    call: Call,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = call.admin().await?;
    let value = json_body(body)?;
    let entries: Vec<policy::capacity::ScheduleEntry> =
        serde_json::from_value(value).map_err(|e| {
            ApiError::BadRequest(format!("expected a JSON array of schedule entries: {e}"))
        })?;
    match call
        .st
        .svc
        .set_capacity_schedule(entries, &who(&caller))
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(crate::sizing::ScheduleRefused::Invalid(e)) => Err(ApiError::BadRequest(e.to_string())),
        Err(crate::sizing::ScheduleRefused::Store(e)) => Err(conflict(e)),
    }
}

fn conflict(e: ServiceError) -> ApiError {
    ApiError::Conflict(e.to_string())
}

async fn add_instance(
    call: Call,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = call.admin().await?;
    let svc = &call.st.svc;
    let value = json_body(body)?;
    let kind = value
        .get("instance_type")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadRequest("expected {\"instance_type\": \"...\"}".into()))?;
    if kind != svc.cfg.instance_type {
        return Err(ApiError::BadRequest(format!(
            "unknown instance_type {kind:?}; this scaler manages {:?}",
            svc.cfg.instance_type
        )));
    }
    svc.external_add(&who(&caller)).await.map_err(conflict)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Reads the optional `"drain"` of a remove-me body: `"confirm"` (our agent: it confirms
/// with `drained`) or `"immediate"`; absent means the client does not say (the legacy script).
fn drain_field(value: &Value) -> Result<Option<policy::DrainMode>, ApiError> {
    match value.get("drain") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => policy::DrainMode::parse(s).map(Some).ok_or_else(|| {
            ApiError::BadRequest(format!("drain {s:?} is not one of confirm, immediate"))
        }),
        Some(_) => Err(ApiError::BadRequest("drain must be a string".into())),
    }
}

/// Reads `{"host"|"ip": ..., "reason": ...}`.
fn remove_body(value: &Value, need_reason: bool) -> Result<(String, Option<Reason>), ApiError> {
    let obj = value.as_object().ok_or_else(|| {
        ApiError::BadRequest("expected a JSON object {\"host\": ..., \"reason\": ...}".into())
    })?;
    let host = match (obj.get("host"), obj.get("ip")) {
        (Some(h), _) | (None, Some(h)) => h
            .as_str()
            .ok_or_else(|| ApiError::BadRequest("host must be a string".into()))?,
        (None, None) => return Err(ApiError::BadRequest("missing host".into())),
    };
    let host = host.trim();
    if !crate::hostname::is_valid(host) {
        return Err(ApiError::BadRequest(format!(
            "host {host:?} is not a host name or IP address"
        )));
    }
    let reason = match obj.get("reason") {
        Some(Value::String(r)) => Some(Reason::parse(r).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "reason {r:?} is not one of idle, expired, unhealthy"
            ))
        })?),
        Some(_) => return Err(ApiError::BadRequest("reason must be a string".into())),
        None if need_reason => return Err(ApiError::BadRequest("missing reason".into())),
        None => None,
    };
    Ok((host.to_ascii_lowercase(), reason))
}

/// Authenticates a remove-me, drained or hello request and checks the host belongs to the
/// caller. A remove-me (`removal`) of a host the scaler did not launch is first put to the
/// lifecycle manager: outside the managed set it is refused (403) and nothing is recorded; an
/// instance caller's address is checked against the host's address there.
async fn instance_request(
    call: &Call,
    body: Result<Bytes, BytesRejection>,
    need_reason: bool,
    removal: bool,
) -> Result<(Caller, String, Option<Reason>, Value), ApiError> {
    let st = &call.st;
    let caller = call.caller().await?;
    st.auth.check_remove_rate(caller.client_ip)?;
    let value = json_body(body)?;
    let (host, reason) = remove_body(&value, need_reason)?;
    let mut known_ips = st.svc.known_ips(&host).await;
    if removal {
        let address = (caller.role == Role::Instance && caller.binding == InstanceBinding::Address)
            .then_some(caller.client_ip);
        if let Some(facts) = st.svc.facts_for_removal(&host, address).await {
            if facts.membership() == policy::Membership::Outside {
                tracing::warn!(host, by = %who(&caller), note = %facts.note, "refused: not a managed host");
                st.svc
                    .record_unmanaged_request(&host, &facts, &who(&caller));
                return Err(ApiError::Auth(AuthError::Forbidden(
                    "not a managed host: the lifecycle manager has it outside the managed set",
                )));
            }
            known_ips.extend(facts.ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()));
        }
    }
    if let Err(e) = caller.may_remove(&host, &known_ips) {
        tracing::warn!(host, by = %who(&caller), "refused: an instance may only name itself");
        return Err(e.into());
    }
    Ok((caller, host, reason, value))
}

async fn remove_me(call: Call, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let (caller, host, reason, value) = instance_request(&call, body, true, true).await?;
    let drain = drain_field(&value)?;
    let reason = reason.unwrap_or(Reason::Idle);
    match call
        .st
        .svc
        .remove_me_as(&host, reason, drain, &who(&caller))
        .await
    {
        d if d.accepted() => Ok("accepted".into_response()),
        _ => Ok("keep".into_response()),
    }
}

async fn drained(call: Call, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let (caller, host, _, _) = instance_request(&call, body, false, false).await?;
    match call.st.svc.drained(&host, &who(&caller)).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(false) => Err(ApiError::Conflict(format!(
            "no approved removal for {host}"
        ))),
        Err(e) => Err(conflict(e)),
    }
}

/// `POST {prefix}/hello` `{"host": ...}`: the agent on that host has started (204). An
/// instance token may only speak for its own host, as for remove-me.
async fn hello(call: Call, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let (caller, host, _, _) = instance_request(&call, body, false, false).await?;
    call.st
        .svc
        .hello(&host, &who(&caller))
        .await
        .map_err(conflict)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn status(call: Call) -> Result<Response, ApiError> {
    call.admin().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        call.st.svc.status_json().await,
    )
        .into_response())
}

/// `GET {prefix}/history[?since=MS]`: the per-tick samples after `since` (admin).
async fn history(call: Call, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    call.admin().await?;
    let since = history_since(query.as_deref())?;
    Ok(axum::Json(call.st.svc.history(since)).into_response())
}

/// The `since` parameter of `/history`: ms since the epoch, 0 when absent.
fn history_since(query: Option<&str>) -> Result<u64, ApiError> {
    let mut since = 0;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("since", v)) => {
                since = v.parse().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "since must be milliseconds since the epoch, got {v:?}"
                    ))
                })?;
            }
            _ => {
                return Err(ApiError::BadRequest(
                    "the only parameter is since=<ms since the epoch>".into(),
                ));
            }
        }
    }
    Ok(since)
}

/// `GET {prefix}/ui`: the status page, static (no token: its data calls carry one).
async fn ui_page() -> Response {
    crate::ops::ui::page_response()
}

/// `GET /metrics`: OpenMetrics text, or the 0.0.4 text format when `Accept` prefers it; open
/// unless `metrics.auth = "token"`.
async fn metrics(call: Call) -> Result<Response, ApiError> {
    let svc = &call.st.svc;
    if svc.cfg.metrics.auth == crate::ops::MetricsAccess::Token {
        call.admin().await?;
    }
    let format = crate::ops::metrics::Format::negotiate(
        call.headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    match svc.metrics_text(format).await {
        Ok(text) => Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            )],
            text,
        )
            .into_response()),
        Err(_) => Ok((StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics").into_response()),
    }
}

async fn health() -> &'static str {
    "ok"
}

async fn ready(State(st): State<Shared>) -> Response {
    match st.svc.not_ready_reason().await {
        None => "ready".into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_parameters() {
        assert_eq!(history_since(None).ok(), Some(0));
        assert_eq!(history_since(Some("")).ok(), Some(0));
        assert_eq!(
            history_since(Some("since=1795667956484")).ok(),
            Some(1795667956484)
        );
        for bad in ["since=-1", "since=abc", "since", "x=1", "since=1&y=2"] {
            assert!(history_since(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn remove_bodies() {
        let v: Value = serde_json::json!({"ip": "10.1.2.3", "reason": "unhealty"});
        assert_eq!(
            remove_body(&v, true).ok(),
            Some(("10.1.2.3".into(), Some(Reason::Unhealthy)))
        );
        let v: Value = serde_json::json!({"host": "GW.example.org", "reason": "idle"});
        assert_eq!(
            remove_body(&v, true).ok(),
            Some(("gw.example.org".into(), Some(Reason::Idle)))
        );
        for bad in [
            serde_json::json!({"host": "gw"}),
            serde_json::json!({"reason": "idle"}),
            serde_json::json!({"host": 5, "reason": "idle"}),
            serde_json::json!({"host": "gw", "reason": "bored"}),
            serde_json::json!([1]),
        ] {
            assert!(remove_body(&bad, true).is_err(), "{bad}");
        }
    }
}
