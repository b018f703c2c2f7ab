//! Simulated gateways: a fake Jibri HTTP API per host plus the real agent watching it.
//!
//! [`World`] holds every host the fake Foreman created. A host boots for `boot`, then its fake
//! Jibri listens on its own loopback port and the agent ([`crate::agent::run`]) watches it and
//! talks to the in-process scaler. Graceful shutdown makes the fake Jibri stop listening once it
//! is idle, which is how the agent sees that the drain is complete.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::agent::{AgentConfig, Outcome};

/// Health path of the fake Jibri (as Jibri's own).
const HEALTH_PATH: &str = "/jibri/api/v1.0/health";
/// Graceful-shutdown path of the fake Jibri (as Jibri's own).
const SHUTDOWN_PATH: &str = "/jibri/api/internal/v1.0/gracefulShutdown";
/// How often a draining gateway checks whether its call has ended.
const EXIT_POLL: Duration = Duration::from_millis(200);

/// Timings of the simulated gateways and their agents.
#[derive(Debug, Clone)]
pub struct GatewayTiming {
    /// Time from create to a listening Jibri.
    pub boot: Duration,
    /// The agent asks `idle` after this long idle.
    pub idle_time: Duration,
    /// Jibri reports EXPIRED (when idle) after this long up; `None`: never.
    pub lifetime: Option<Duration>,
    /// Base URL of the scaler API, e.g. `http://127.0.0.1:9000/scaler`.
    pub scaler_url: String,
}

/// Where one host is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Created, not yet listening.
    Booting,
    /// Jibri listens (since the instant).
    Up(Instant),
    /// Jibri has exited; the host waits for its delete.
    Stopped,
}

/// One simulated host.
#[derive(Debug)]
struct Host {
    phase: Phase,
    /// The current call ends at this instant.
    busy_until: Option<Instant>,
    /// Graceful shutdown was requested: no new call, exit when idle.
    shutting_down: bool,
    /// Stops everything of this host (boot, Jibri, agent).
    stop: CancellationToken,
}

impl Host {
    fn busy(&self, now: Instant) -> bool {
        self.busy_until.is_some_and(|t| t > now)
    }

    fn expired(&self, now: Instant, lifetime: Option<Duration>) -> bool {
        match (self.phase, lifetime) {
            (Phase::Up(since), Some(l)) => now.duration_since(since) >= l,
            _ => false,
        }
    }

    /// Takes a new call: up, not draining, idle, not expired.
    fn available(&self, now: Instant, lifetime: Option<Duration>) -> bool {
        matches!(self.phase, Phase::Up(_))
            && !self.shutting_down
            && !self.busy(now)
            && !self.expired(now, lifetime)
    }
}

/// Totals since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Calls offered.
    pub calls: u64,
    /// Calls that found no idle gateway.
    pub rejected: u64,
    /// Hosts created through the fake Foreman.
    pub launches: u64,
    /// Hosts deleted through the fake Foreman.
    pub removals: u64,
}

/// A point-in-time view of the pool for the status line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolView {
    /// Up and free to take a call.
    pub idle: u32,
    /// Up with a call.
    pub busy: u32,
    /// Created, still booting.
    pub booting: u32,
    /// Asked to shut down (or stopped), waiting for the delete.
    pub draining: u32,
    /// Totals.
    pub counters: Counters,
}

#[derive(Debug, Default)]
struct Inner {
    hosts: BTreeMap<String, Host>,
    counters: Counters,
}

/// Every simulated host, shared by the fake neighbours, the call load and the gateways.
#[derive(Debug)]
pub struct World {
    inner: Mutex<Inner>,
    timing: GatewayTiming,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl World {
    /// An empty world; gateway tasks run on `tasks` and stop with `shutdown`.
    pub fn new(timing: GatewayTiming, tasks: TaskTracker, shutdown: CancellationToken) -> Self {
        World {
            inner: Mutex::new(Inner::default()),
            timing,
            tasks,
            shutdown,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicked holder leaves consistent counters behind: keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a host of that name exists (booting, up or stopped).
    pub fn exists(&self, name: &str) -> bool {
        self.lock().hosts.contains_key(name)
    }

    /// Names of all hosts.
    pub fn names(&self) -> Vec<String> {
        self.lock().hosts.keys().cloned().collect()
    }

    /// Creates a host and starts booting it; false if the name is taken.
    pub fn create(self: &Arc<Self>, name: &str) -> bool {
        let stop = self.shutdown.child_token();
        {
            let mut inner = self.lock();
            if inner.hosts.contains_key(name) {
                return false;
            }
            inner.hosts.insert(
                name.to_owned(),
                Host {
                    phase: Phase::Booting,
                    busy_until: None,
                    shutting_down: false,
                    stop: stop.clone(),
                },
            );
            inner.counters.launches += 1;
        }
        let span = tracing::info_span!("gateway", host = %name);
        self.tasks
            .spawn(run_host(self.clone(), name.to_owned(), stop).instrument(span));
        true
    }

    /// Deletes a host (stopping whatever of it runs); false if there is none.
    pub fn delete(&self, name: &str) -> bool {
        let mut inner = self.lock();
        match inner.hosts.remove(name) {
            Some(host) => {
                host.stop.cancel();
                inner.counters.removals += 1;
                true
            }
            None => false,
        }
    }

    /// Jicofo's view: (count, available). A stopped Jibri has left the MUC; an expired or
    /// draining one is counted but not available.
    pub fn jicofo_counts(&self) -> (u32, u32) {
        let now = Instant::now();
        let inner = self.lock();
        let mut count = 0;
        let mut available = 0;
        for h in inner.hosts.values() {
            if matches!(h.phase, Phase::Up(_)) {
                count += 1;
                if h.available(now, self.timing.lifetime) {
                    available += 1;
                }
            }
        }
        (count, available)
    }

    /// Places a call of `duration` on the first idle gateway; false if rejected.
    pub fn place_call(&self, duration: Duration) -> bool {
        let now = Instant::now();
        let lifetime = self.timing.lifetime;
        let mut inner = self.lock();
        inner.counters.calls += 1;
        let free = inner
            .hosts
            .values_mut()
            .find(|h| h.available(now, lifetime));
        match free {
            Some(h) => {
                h.busy_until = Some(now + duration);
                true
            }
            None => {
                inner.counters.rejected += 1;
                false
            }
        }
    }

    /// The totals since the start.
    pub fn counters(&self) -> Counters {
        self.lock().counters
    }

    /// The pool by state, and the totals.
    pub fn view(&self) -> PoolView {
        let now = Instant::now();
        let inner = self.lock();
        let mut v = PoolView {
            counters: inner.counters,
            ..PoolView::default()
        };
        for h in inner.hosts.values() {
            match h.phase {
                Phase::Booting => v.booting += 1,
                Phase::Stopped => v.draining += 1,
                Phase::Up(_) if h.shutting_down => v.draining += 1,
                Phase::Up(_) if h.busy(now) => v.busy += 1,
                Phase::Up(_) => v.idle += 1,
            }
        }
        v
    }

    /// The health document of a host's Jibri (SPEC §7).
    fn health(&self, name: &str) -> serde_json::Value {
        let now = Instant::now();
        let inner = self.lock();
        let busy = match inner.hosts.get(name) {
            Some(h) if h.busy(now) => "BUSY",
            Some(h) if h.expired(now, self.timing.lifetime) => "EXPIRED",
            _ => "IDLE",
        };
        json!({"status": {"busyStatus": busy, "health": {"healthStatus": "HEALTHY", "details": {}}}})
    }

    fn request_shutdown(&self, name: &str) {
        if let Some(h) = self.lock().hosts.get_mut(name) {
            h.shutting_down = true;
        }
    }

    /// Marks the host up; false if it was deleted meanwhile.
    fn set_up(&self, name: &str) -> bool {
        match self.lock().hosts.get_mut(name) {
            Some(h) => {
                h.phase = Phase::Up(Instant::now());
                true
            }
            None => false,
        }
    }

    /// Shutdown requested and no call running: Jibri exits now.
    fn may_exit(&self, name: &str) -> bool {
        let now = Instant::now();
        self.lock()
            .hosts
            .get(name)
            .is_none_or(|h| h.shutting_down && !h.busy(now))
    }

    fn set_stopped(&self, name: &str) {
        if let Some(h) = self.lock().hosts.get_mut(name) {
            h.phase = Phase::Stopped;
            h.busy_until = None;
        }
    }

    fn agent_config(&self, name: &str, port: u16) -> AgentConfig {
        let jibri = format!("http://127.0.0.1:{port}");
        AgentConfig {
            scaler_url: self.timing.scaler_url.clone(),
            instance: Some(name.to_owned()),
            jibri_health_url: format!("{jibri}{HEALTH_PATH}"),
            jibri_shutdown_url: format!("{jibri}{SHUTDOWN_PATH}"),
            jibri_timeout: Duration::from_secs(2),
            check_interval: Duration::from_secs(1),
            idle_time: self.timing.idle_time,
            unreachable_time: Duration::from_secs(30),
            keep_backoff: Duration::from_secs(5),
            retry_backoff: Duration::from_secs(1),
            retry_backoff_max: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            drain_deadline: Duration::from_secs(600),
            drained_attempts: 5,
            ..AgentConfig::default()
        }
    }
}

type Shared = (Arc<World>, String);

async fn jibri_health(State((world, name)): State<Shared>) -> axum::Json<serde_json::Value> {
    axum::Json(world.health(&name))
}

async fn jibri_shutdown(State((world, name)): State<Shared>) -> axum::http::StatusCode {
    tracing::info!("jibri: graceful shutdown requested");
    world.request_shutdown(&name);
    axum::http::StatusCode::OK
}

/// One host's life: boot, serve Jibri and run the agent, exit Jibri after graceful shutdown,
/// and stop everything on delete or demo shutdown.
async fn run_host(world: Arc<World>, name: String, stop: CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(world.timing.boot) => {}
        () = stop.cancelled() => return,
    }
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot listen for the fake Jibri: {e}");
            return;
        }
    };
    let port = match listener.local_addr() {
        Ok(a) => a.port(),
        Err(e) => {
            tracing::error!("fake Jibri has no address: {e}");
            return;
        }
    };
    if !world.set_up(&name) {
        return;
    }
    tracing::info!(port, "booted: Jibri up");
    let app = Router::new()
        .route(HEALTH_PATH, get(jibri_health))
        .route(SHUTDOWN_PATH, post(jibri_shutdown))
        .with_state((world.clone(), name.clone()));
    let jibri_exit = stop.child_token();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(jibri_exit.clone().cancelled_owned())
            .into_future(),
    );
    let agent = tokio::spawn(
        crate::agent::run(world.agent_config(&name, port), stop.clone()).in_current_span(),
    );
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(EXIT_POLL) => {
                if world.may_exit(&name) {
                    tracing::info!("jibri: exiting (graceful shutdown, idle)");
                    world.set_stopped(&name);
                    break;
                }
            }
        }
    }
    jibri_exit.cancel();
    if let Ok(Err(e)) = server.await {
        tracing::warn!("fake Jibri server: {e}");
    }
    match agent.await {
        Ok(Ok(Outcome::Drained)) => tracing::info!("agent done: drained"),
        Ok(Ok(Outcome::Stopped)) => {}
        Ok(Err(e)) => tracing::error!("agent failed: {e}"),
        Err(e) => tracing::error!("agent task failed: {e}"),
    }
}
