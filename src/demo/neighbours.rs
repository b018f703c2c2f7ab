//! The fake neighbours of the demo (SPEC §7): a Jicofo `/stats` per shard and a Foreman API v2,
//! both answering from the simulated [`World`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::gateway::World;

/// A fake Jicofo: `GET /stats` with `sip_jibri_detector` counted from the world (every gateway
/// joins every shard, so every shard sees the same counts).
pub fn jicofo(world: Arc<World>) -> Router {
    Router::new()
        .route("/stats", get(jicofo_stats))
        .with_state(world)
}

async fn jicofo_stats(State(world): State<Arc<World>>) -> axum::Json<Value> {
    let (count, available) = world.jicofo_counts();
    axum::Json(json!({
        "conferences": 0,
        "participants": 0,
        "jibri_detector": {"count": 0, "available": 0},
        "sip_jibri_detector": {"count": count, "available": available},
    }))
}

/// A fake Foreman API v2: create (booting a gateway), get, delete (stopping it), search.
pub fn foreman(world: Arc<World>) -> Router {
    Router::new()
        .route("/api/hosts", get(search).post(create))
        .route("/api/hosts/{name}", get(show).delete(delete))
        .with_state(world)
}

fn host_json(name: &str) -> Value {
    json!({"name": name})
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

async fn create(State(world): State<Arc<World>>, headers: HeaderMap, body: Bytes) -> Response {
    let json_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_type {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            axum::Json(
                json!({"error": {"message": "'Content-Type: application/json' is required"}}),
            ),
        )
            .into_response();
    }
    let name = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.pointer("/host/name")?.as_str().map(str::to_owned));
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"error": {"errors": {"name": ["can't be blank"]}}})),
        )
            .into_response();
    };
    if !world.create(&name) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"error": {"errors": {"name": ["has already been taken"]}}})),
        )
            .into_response();
    }
    tracing::info!(host = %name, "foreman: host created, booting");
    (StatusCode::CREATED, axum::Json(host_json(&name))).into_response()
}

async fn show(State(world): State<Arc<World>>, Path(name): Path<String>) -> Response {
    if world.exists(&name) {
        axum::Json(host_json(&name)).into_response()
    } else {
        not_found(&name)
    }
}

async fn delete(State(world): State<Arc<World>>, Path(name): Path<String>) -> Response {
    if world.delete(&name) {
        tracing::info!(host = %name, "foreman: host deleted");
        axum::Json(host_json(&name)).into_response()
    } else {
        not_found(&name)
    }
}

/// `search=name ~ <prefix>*` lists matching hosts; any other search (e.g. by IP) finds none,
/// since the simulated hosts all share 127.0.0.1.
async fn search(
    State(world): State<Arc<World>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> axum::Json<Value> {
    let search = q.get("search").map(String::as_str).unwrap_or_default();
    let prefix = search
        .strip_prefix("name ~")
        .map(|p| p.trim().trim_end_matches(['*', '%']));
    let names: Vec<String> = match prefix {
        Some(p) => world
            .names()
            .into_iter()
            .filter(|n| n.starts_with(p))
            .collect(),
        None if search.is_empty() => world.names(),
        None => Vec::new(),
    };
    let number = |key: &str, default: usize| {
        q.get(key)
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(default)
    };
    let (page, per_page) = (number("page", 1), number("per_page", 1000));
    let results: Vec<Value> = names
        .iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(|n| host_json(n))
        .collect();
    axum::Json(json!({
        "total": names.len(), "subtotal": names.len(), "page": page,
        "per_page": per_page, "search": search, "results": results,
    }))
}
