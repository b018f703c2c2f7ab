//! The HTTP API: the legacy scaler's routes (SPEC §3) plus status, health and readiness.
//!
//! Handlers parse and validate, call one [`Service`] operation, and turn the result into the
//! legacy answers (bare integers, plain-text `accepted`/`keep`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use policy::{Reason, Settings};
use serde_json::Value;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::auth::{AuthError, Authenticator, Caller};
use crate::service::{Service, ServiceError};

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

/// Authenticates a request: the auth seam of every API route but health and readiness.
async fn authenticate(
    st: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<Caller, ApiError> {
    Ok(st.auth.authenticate(headers, peer).await?)
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
    Router::new()
        .route(&format!("{p}/min"), setting_routes("min"))
        .route(&format!("{p}/max"), setting_routes("max"))
        .route(&format!("{p}/bulk-max"), setting_routes("bulk-max"))
        .route(
            &format!("{p}/instance"),
            post(add_instance).delete(remove_me).options(options),
        )
        .route(&format!("{p}/remove"), post(remove_me).options(options))
        .route(&format!("{p}/drained"), post(drained).options(options))
        .route(&format!("{p}/hello"), post(hello).options(options))
        .route(&format!("{p}/status"), get(status).options(options))
        .route("/health", get(health).options(options))
        .route("/ready", get(ready).options(options))
        .route("/metrics", get(metrics).options(options))
        .fallback(fallback)
        .layer(DefaultBodyLimit::max(limit))
        // Refuses an announced oversize body at once, before reading it.
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(AppState { svc, auth })
}

fn setting_routes(name: &'static str) -> MethodRouter<Shared> {
    get(
        move |State(st): State<Shared>,
              ConnectInfo(peer): ConnectInfo<SocketAddr>,
              headers: HeaderMap| async move {
            authenticate(&st, &headers, peer).await?.require_admin()?;
            Ok::<_, ApiError>(get_setting(&st.svc, name).await)
        },
    )
    .post(
        move |State(st): State<Shared>,
              ConnectInfo(peer): ConnectInfo<SocketAddr>,
              headers: HeaderMap,
              body: Result<Bytes, BytesRejection>| async move {
            let caller = authenticate(&st, &headers, peer).await?;
            caller.require_admin()?;
            post_setting(&st.svc, name, &caller, body).await
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

async fn get_setting(svc: &Service, name: &str) -> Response {
    let s: Settings = svc.settings().await;
    integer_body(i64::from(match name {
        "min" => s.min_available,
        "max" => s.max_total,
        _ => s.bulk_max,
    }))
}

/// Parses a JSON body, with a short reason when it is not JSON.
fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let bytes = body?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))
}

async fn post_setting(
    svc: &Service,
    name: &'static str,
    caller: &Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let value = json_body(body)?;
    let n = value.as_i64().ok_or_else(|| {
        ApiError::BadRequest(format!("{name} must be a bare JSON integer, got {value}"))
    })?;
    let n = Settings::check(name, n).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    svc.set_setting(name, n, &who(caller))
        .await
        .map_err(conflict)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn conflict(e: ServiceError) -> ApiError {
    ApiError::Conflict(e.to_string())
}

async fn add_instance(
    State(st): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = authenticate(&st, &headers, peer).await?;
    caller.require_admin()?;
    let svc = &st.svc;
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

/// Validates a host identifier: a DNS name (FQDN or short) or an IP address.
pub fn valid_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
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
    if !valid_host(host) {
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

/// Authenticates a remove-me or drained request and checks the host belongs to the caller.
async fn instance_request(
    st: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    body: Result<Bytes, BytesRejection>,
    need_reason: bool,
) -> Result<(Caller, String, Option<Reason>), ApiError> {
    let caller = authenticate(st, headers, peer).await?;
    st.auth.check_remove_rate(caller.client_ip)?;
    let value = json_body(body)?;
    let (host, reason) = remove_body(&value, need_reason)?;
    let known_ips = st.svc.known_ips(&host).await;
    if let Err(e) = caller.may_remove(&host, &known_ips) {
        tracing::warn!(host, by = %who(&caller), "refused: an instance may only name itself");
        return Err(e.into());
    }
    Ok((caller, host, reason))
}

async fn remove_me(
    State(st): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (caller, host, reason) = instance_request(&st, &headers, peer, body, true).await?;
    let reason = reason.unwrap_or(Reason::Idle);
    match st.svc.remove_me(&host, reason, &who(&caller)).await {
        d if d.accepted() => Ok("accepted".into_response()),
        _ => Ok("keep".into_response()),
    }
}

async fn drained(
    State(st): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (caller, host, _) = instance_request(&st, &headers, peer, body, false).await?;
    match st.svc.drained(&host, &who(&caller)).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(false) => Err(ApiError::Conflict(format!(
            "no approved removal for {host}"
        ))),
        Err(e) => Err(conflict(e)),
    }
}

/// `POST {prefix}/hello` `{"host": ...}`: the agent on that host has started (204). An
/// instance token may only speak for its own host, as for remove-me.
async fn hello(
    State(st): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (caller, host, _) = instance_request(&st, &headers, peer, body, false).await?;
    st.svc.hello(&host, &who(&caller)).await.map_err(conflict)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn status(
    State(st): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&st, &headers, peer).await?.require_admin()?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        st.svc.status_json().await,
    )
        .into_response())
}

/// `GET /metrics`: Prometheus (OpenMetrics) text; open unless `metrics.auth = "token"`.
async fn metrics(
    State(st): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if st.svc.cfg.metrics.auth == crate::ops::MetricsAccess::Token {
        authenticate(&st, &headers, peer).await?.require_admin()?;
    }
    match st.svc.metrics_text().await {
        Ok(text) => Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::ops::metrics::CONTENT_TYPE),
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
    if st.svc.is_ready() {
        "ready".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no Jicofo reading attempted yet",
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_validation() {
        for ok in [
            "vsg-1",
            "vsg-1.example.org",
            "vsg-1.example.org.",
            "10.0.0.1",
            "::1",
            "ip-10-0-0-1",
        ] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in ["", "a b", "-x", "x..y", "a/b", &"x".repeat(300), "ä"] {
            assert!(!valid_host(bad), "{bad}");
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
