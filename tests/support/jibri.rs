//! A scripted Jibri: health and graceful shutdown on one loopback port (SIDECAR-PROTOCOL).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::dead_addr;

/// Jibri's health path.
pub const HEALTH_PATH: &str = "/jibri/api/v1.0/health";
/// Jibri's graceful shutdown path.
pub const SHUTDOWN_PATH: &str = "/jibri/api/internal/v1.0/gracefulShutdown";

/// What the fake Jibri reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JibriMode {
    Idle,
    Busy,
    Expired,
    /// IDLE but UNHEALTHY.
    Unhealthy,
}

/// What the fake Jibri reports and what it saw.
#[derive(Debug)]
pub struct JibriState {
    pub mode: JibriMode,
    pub health_reads: u64,
    pub last_read: Option<Instant>,
    pub shutdown_calls: u64,
    pub shutdown_requested: bool,
    /// A call arrives together with the graceful shutdown (the drain must wait for it).
    pub call_at_shutdown: bool,
    /// Turn BUSY on a read that follows the previous one within 50 ms: the agent's
    /// fresh re-check right before asking (periodic checks are >= 100 ms apart).
    pub busy_on_recheck: bool,
    pub flipped: bool,
    pub down: bool,
}

/// A scripted Jibri: health and graceful shutdown on one loopback port. After a graceful
/// shutdown it stops listening (the process "exits") as soon as it is not busy.
#[derive(Clone)]
pub struct FakeJibri {
    pub health_url: String,
    pub shutdown_url: String,
    pub state: Arc<Mutex<JibriState>>,
    pub stop: CancellationToken,
}

type Jb = State<(Arc<Mutex<JibriState>>, CancellationToken)>;

impl JibriState {
    fn new(mode: JibriMode, down: bool) -> Arc<Mutex<JibriState>> {
        Arc::new(Mutex::new(JibriState {
            mode,
            health_reads: 0,
            last_read: None,
            shutdown_calls: 0,
            shutdown_requested: false,
            call_at_shutdown: false,
            busy_on_recheck: false,
            flipped: false,
            down,
        }))
    }
}

impl FakeJibri {
    /// A Jibri reporting `mode` on a free loopback port.
    pub async fn start(mode: JibriMode) -> FakeJibri {
        let state = JibriState::new(mode, false);
        let stop = CancellationToken::new();
        let app = Router::new()
            .route(HEALTH_PATH, get(jibri_health))
            .route(SHUTDOWN_PATH, post(jibri_shutdown))
            .with_state((state.clone(), stop.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        let signal = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(signal.cancelled_owned())
                .await;
        });
        FakeJibri::at(addr, state, stop)
    }

    /// A Jibri whose port nothing listens on.
    pub fn unreachable() -> FakeJibri {
        let stop = CancellationToken::new();
        stop.cancel();
        FakeJibri::at(dead_addr(), JibriState::new(JibriMode::Idle, true), stop)
    }

    fn at(addr: SocketAddr, state: Arc<Mutex<JibriState>>, stop: CancellationToken) -> FakeJibri {
        FakeJibri {
            health_url: format!("http://{addr}{HEALTH_PATH}"),
            shutdown_url: format!("http://{addr}{SHUTDOWN_PATH}"),
            state,
            stop,
        }
    }

    pub fn with(&self, f: impl FnOnce(&mut JibriState)) {
        f(&mut self.state.lock().expect("lock"));
    }

    pub fn set(&self, mode: JibriMode) {
        let mut s = self.state.lock().expect("lock");
        s.mode = mode;
        if s.shutdown_requested && mode != JibriMode::Busy {
            s.down = true;
            self.stop.cancel();
        }
    }

    pub fn shutdown_calls(&self) -> u64 {
        self.state.lock().expect("lock").shutdown_calls
    }

    pub fn reads(&self) -> u64 {
        self.state.lock().expect("lock").health_reads
    }

    pub fn is_down(&self) -> bool {
        self.state.lock().expect("lock").down
    }
}

async fn jibri_health(State((state, _)): Jb) -> Response {
    let mode = {
        let mut s = state.lock().expect("lock");
        s.health_reads += 1;
        let now = Instant::now();
        if s.busy_on_recheck
            && s.last_read
                .is_some_and(|t| now.duration_since(t) < Duration::from_millis(50))
        {
            s.busy_on_recheck = false;
            s.flipped = true;
            s.mode = JibriMode::Busy;
        }
        s.last_read = Some(now);
        s.mode
    };
    let (busy, health) = match mode {
        JibriMode::Idle => ("IDLE", "HEALTHY"),
        JibriMode::Busy => ("BUSY", "HEALTHY"),
        JibriMode::Expired => ("EXPIRED", "HEALTHY"),
        JibriMode::Unhealthy => ("IDLE", "UNHEALTHY"),
    };
    axum::Json(json!({"status": {"busyStatus": busy,
        "health": {"healthStatus": health, "details": {}}, "future": 1}}))
    .into_response()
}

async fn jibri_shutdown(State((state, stop)): Jb) -> Response {
    let mut s = state.lock().expect("lock");
    s.shutdown_calls += 1;
    s.shutdown_requested = true;
    if s.call_at_shutdown {
        s.mode = JibriMode::Busy;
    }
    if s.mode != JibriMode::Busy {
        // Idle: Jibri exits at once (the answer still goes out: graceful server stop).
        s.down = true;
        stop.cancel();
    }
    StatusCode::OK.into_response()
}
