//! `POST {prefix}/sidecar/poll|status|stats|shutdown`: jitsi-autoscaler's sidecar protocol
//! (SIDECAR-PROTOCOL.md), so a gateway started with `AUTOSCALER_URL=https://DOMAIN/scaler` is
//! managed by `serve` with no other change.
//!
//! Every answer is a 2xx within [`ANSWER_WITHIN`] for a valid request (the sidecar gives a POST
//! 3 s and never retries), `{"shutdown": bool, "reconfigure": ""}` (never a non-empty
//! `reconfigure`: we have no reconfigure script to run) or `{"save": "OK"}`. A bad token is 401
//! with a text body, a malformed body 400, another instance's id 403.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use super::{ApiError, AppState, Call, json_body};
use crate::sidecar::{Refusal, SidecarBody, parse_details, parse_report};

/// Longest time a sidecar route spends on the store before answering from what it knows.
pub const ANSWER_WITHIN: Duration = Duration::from_millis(2300);
/// Longest time the answer after [`ANSWER_WITHIN`] may take to read the last known ledger.
const LAST_WORD: Duration = Duration::from_millis(400);

/// The four routes under `prefix`, each one `POST` handler of its [`Route`].
pub(super) fn routes(prefix: &str) -> Router<AppState> {
    [
        ("poll", Route::Poll),
        ("status", Route::Status),
        ("stats", Route::Stats),
        ("shutdown", Route::Shutdown),
    ]
    .into_iter()
    .fold(Router::new(), |router, (name, route)| {
        router.route(
            &format!("{prefix}/sidecar/{name}"),
            post(move |call: Call, body: Result<Bytes, BytesRejection>| handle(call, route, body)),
        )
    })
}

/// Which route, for the shared flow.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Poll,
    Status,
    Stats,
    Shutdown,
}

fn command(shutdown: bool) -> Response {
    axum::Json(json!({"shutdown": shutdown, "reconfigure": ""})).into_response()
}

fn saved() -> Response {
    axum::Json(json!({"save": "OK"})).into_response()
}

/// Authenticates, parses, binds the caller to the instance, then answers the route.
async fn handle(
    call: Call,
    route: Route,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let st = &call.st;
    let caller = st
        .auth
        .authenticate_sidecar(&call.headers, call.peer)
        .await?;
    let value = json_body(body)?;
    let parsed: Result<SidecarBody, _> = match route {
        Route::Poll | Route::Shutdown => parse_details(&value),
        Route::Status | Route::Stats => parse_report(&value),
    };
    let body = parsed.map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let known = st.svc.sidecar_known_ips(&body.instance).await;
    if let Err(e) = caller.may_speak_for(&body.instance, &known) {
        tracing::warn!(instance = %body.instance, by = %caller.who(), "refused: a sidecar may only speak for its own instance");
        return Err(e.into());
    }
    if !body.is_jibri() || !body.in_groups(&st.svc.cfg.policy.sidecar_groups) {
        // One scaler manages one Jibri pool: a JVB or Jigasi sidecar, or one of a group this
        // scaler does not manage (policy.sidecar_groups), is told nothing and recorded nowhere.
        tracing::warn!(instance = %body.instance, kind = body.kind.as_deref().unwrap_or("-"), group = body.group.as_deref().unwrap_or("-"), "sidecar of another instance type or group ignored");
        return Ok(match route {
            Route::Poll | Route::Status => command(false),
            Route::Stats | Route::Shutdown => saved(),
        });
    }
    let who = caller.who();
    let svc = &st.svc;
    let work = async {
        match route {
            Route::Poll | Route::Status | Route::Stats => {
                let told = match svc.sidecar_heard(&body, caller.client_ip, &who).await {
                    Ok(told) => told,
                    // Not ours: the sidecar gets the answer it expects, and nothing is kept.
                    Err(Refusal::NotManaged(_)) => false,
                    Err(e) => return refused(&body, &who, e),
                };
                if route == Route::Stats {
                    saved()
                } else {
                    command(told)
                }
            }
            Route::Shutdown => match svc.sidecar_shutdown(&body, &who).await {
                Ok(_) => saved(),
                Err(e) => {
                    // Not recorded: the silence after the shutdown will tell the same later.
                    tracing::warn!(instance = %body.instance, error = %e, "cannot record a sidecar shutdown");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        axum::Json(json!({"save": "ERROR"})),
                    )
                        .into_response()
                }
            },
        }
    };
    match tokio::time::timeout(ANSWER_WITHIN, work).await {
        Ok(r) => Ok(r),
        Err(_) => {
            tracing::warn!(instance = %body.instance, ?route, "sidecar request not recorded within the answer deadline");
            Ok(match route {
                Route::Poll | Route::Status => command(
                    tokio::time::timeout(
                        LAST_WORD,
                        svc.sidecar_answer(&body.instance, body.report),
                    )
                    .await
                    .unwrap_or(false),
                ),
                Route::Stats | Route::Shutdown => saved(),
            })
        }
    }
}

/// The answer to a report that is not taken: 429 with `Retry-After` for a flood of new ids, 403
/// for a host the lifecycle manager has at another address (logged where it is decided).
fn refused(body: &SidecarBody, who: &str, e: Refusal) -> Response {
    let (status, retry) = match &e {
        Refusal::RateLimited {
            retry_after_secs, ..
        } => (StatusCode::TOO_MANY_REQUESTS, Some(*retry_after_secs)),
        Refusal::Full { .. } => (StatusCode::TOO_MANY_REQUESTS, Some(60)),
        Refusal::Mismatch(_) | Refusal::NotManaged(_) => (StatusCode::FORBIDDEN, None),
    };
    tracing::debug!(instance = %body.instance, by = who, error = %e, "sidecar report refused");
    let mut r = (status, axum::Json(json!({"error": e.to_string()}))).into_response();
    if let Some(secs) = retry
        && let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string())
    {
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
    }
    r
}
