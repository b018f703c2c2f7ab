//! `serve` assembled: one function builds a running scaler from a config ([`start`]); `main`
//! and `demo` both call it, and `config check` runs exactly its validation ([`check`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::decision::Decision;
use crate::jicofo::JicofoClient;
use crate::lifecycle::{BreakerState, Lifecycle};
use crate::ops::systemd;
use crate::service::Service;
use crate::store::Store;

/// How long lifecycle calls in progress may finish after a stop.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Why `serve` could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration has problems (each one named).
    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Config(Vec<String>),
    /// The store could not be opened, read or written.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The audit trail could not be started.
    #[error(transparent)]
    Audit(#[from] crate::ops::AuditError),
    /// A file system or socket error.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// The parts `serve` builds from a config before it touches the store: building them is the
/// validation (`config check` and `serve` share it).
struct Parts {
    lifecycle: Lifecycle,
    jicofo: JicofoClient,
    auth: Authenticator,
    listen: SocketAddr,
}

fn build_parts(cfg: &Config) -> Result<Parts, Vec<String>> {
    let mut problems = cfg.problems();
    if !problems.is_empty() {
        return Err(problems);
    }
    let lifecycle = Lifecycle::from_config(&cfg.lifecycle)
        .map_err(|e| problems.push(format!("lifecycle: {e}")));
    let jicofo = JicofoClient::new(&cfg.jicofo).map_err(|e| problems.push(format!("jicofo: {e}")));
    let auth =
        Authenticator::from_config(&cfg.auth).map_err(|e| problems.push(format!("auth: {e}")));
    let listen = cfg.listen_addr().map_err(|e| problems.push(e.to_string()));
    match (lifecycle, jicofo, auth, listen) {
        (Ok(lifecycle), Ok(jicofo), Ok(auth), Ok(listen)) => Ok(Parts {
            lifecycle,
            jicofo,
            auth,
            listen,
        }),
        _ => Err(problems),
    }
}

/// Every problem `serve` would refuse to start with (empty: it starts), without opening the
/// store or a socket.
pub fn check(cfg: &Config) -> Vec<String> {
    build_parts(cfg).err().unwrap_or_default()
}

/// Warnings from the state `serve` would start with, read without taking the store (so while
/// `serve` runs): the learned busiest hour needing more gateways than the stored `max`. Only
/// the embedded store is read here; with Redis, `serve` warns at start.
pub fn stored_state_warnings(cfg: &Config) -> Vec<String> {
    if cfg.store.backend != crate::config::StoreBackend::Embedded {
        return Vec::new();
    }
    let path = cfg.data_dir.join(crate::store::STATE_FILE);
    let Ok(text) = std::fs::read(&path) else {
        return Vec::new();
    };
    let Ok(snap) = serde_json::from_slice::<crate::store::Snapshot>(&text) else {
        return vec![format!(
            "{}: not a state file this version reads",
            path.display()
        )];
    };
    let max = snap.settings.max_total;
    let Ok(live) = crate::capacity::Live::new(&cfg.capacity, cfg.policy.tick, max) else {
        return Vec::new();
    };
    live.load(snap.capacity.as_ref(), max, true);
    match live.peak_need() {
        Some(n) if n.total() > max => vec![format!(
            "the learned busiest hour ({:.0} calls/h) needs {} gateways ({} in calls + {} spares), more than max {max}: the spare floor will be capped then; raise max",
            n.rate_per_hour,
            n.total(),
            n.busy,
            n.spares
        )],
        _ => Vec::new(),
    }
}

/// A running scaler: its service and the task serving HTTP until the shutdown token fires.
pub struct Running {
    /// The service (for `demo` and tests in the same process).
    pub svc: Arc<Service>,
    /// The address it listens on.
    pub addr: SocketAddr,
    http: JoinHandle<std::io::Result<()>>,
    control: JoinHandle<()>,
    tasks: TaskTracker,
}

/// Builds and starts `serve` from `cfg` on `listener` (or on `cfg.listen` when `None`): store,
/// service, control loop, background tasks (breaker watcher, systemd watchdog, audit trail) and
/// the HTTP API. Everything stops when `shutdown` fires; then [`Running::finish`].
pub async fn start(
    cfg: Config,
    listener: Option<TcpListener>,
    shutdown: CancellationToken,
) -> Result<Running, ServerError> {
    let parts = build_parts(&cfg).map_err(ServerError::Config)?;
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind(parts.listen)
            .await
            .map_err(|source| ServerError::Io {
                what: format!("cannot listen on {}", parts.listen),
                source,
            })?,
    };
    let addr = listener.local_addr().map_err(|source| ServerError::Io {
        what: "cannot read the listening address".into(),
        source,
    })?;
    let store = Store::open(&cfg, &cfg.replica_name())?;
    let svc = Service::start(cfg, store, parts.lifecycle, parts.jicofo).await?;
    if svc.cfg.audit.enabled {
        // With a shared store the data directory holds only the audit trail.
        std::fs::create_dir_all(&svc.cfg.data_dir).map_err(|source| ServerError::Io {
            what: format!(
                "cannot create data directory {}",
                svc.cfg.data_dir.display()
            ),
            source,
        })?;
        svc.ops
            .audit
            .start(&svc.cfg.data_dir, &svc.cfg.audit, svc.ops.metrics.clone())?;
    }
    tracing::info!(
        listen = %addr,
        prefix = %svc.cfg.prefix,
        shards = svc.cfg.jicofo.shards.len(),
        lifecycle = ?svc.cfg.lifecycle.backend,
        store = %svc.store().describe(),
        "jitsi-scaler serving"
    );
    // Listening, store loaded: systemd may start what depends on us. Sent before the
    // watchdog task starts, so READY=1 is always the first message.
    systemd::ready();
    let tasks = TaskTracker::new();
    tokio::spawn(watch_breakers(svc.clone(), shutdown.clone()));
    if let Some(period) = systemd::watchdog_period() {
        let beat = svc.clone();
        // Three ticks plus the Jicofo timeout (a tick may wait that long for a shard).
        let limit = svc.cfg.policy.tick * 3 + svc.cfg.jicofo.timeout;
        tokio::spawn(systemd::watchdog(
            move || match beat.ops.last_tick_ms() {
                // Before the first tick the loop is starting: the start counts as a tick.
                0 => beat.started_at(),
                t => t,
            },
            limit,
            shutdown.clone(),
            period,
        ));
    }
    let control = tokio::spawn(crate::controller::run(
        svc.clone(),
        shutdown.clone(),
        tasks.clone(),
    ));
    let app = crate::api::router(svc.clone(), Arc::new(parts.auth));
    // The HTTP server with limits (src/http_server.rs): axum::serve exposes none of them.
    let limits = svc.cfg.server.clone();
    let http = tokio::spawn(async move {
        crate::http_server::serve(listener, app, &limits, shutdown).await;
        Ok::<(), std::io::Error>(())
    });
    Ok(Running {
        svc,
        addr,
        http,
        control,
        tasks,
    })
}

impl Running {
    /// Waits until the server and the loop stopped (after the shutdown token fired), lets
    /// lifecycle calls in progress finish, stores the final state and closes the audit trail.
    pub async fn finish(self) -> Result<(), ServerError> {
        let served = self.http.await;
        let _ = self.control.await;
        crate::controller::drain_tasks(&self.tasks, STOP_GRACE).await;
        let persisted = self.svc.store().persist().await;
        // The audit file gets every line queued so far, also when the final save failed.
        self.svc.ops.audit.close(Duration::from_secs(2));
        match served {
            Ok(Err(source)) => {
                return Err(ServerError::Io {
                    what: "HTTP server failed".into(),
                    source,
                });
            }
            Err(e) => tracing::error!("HTTP server task failed: {e}"),
            Ok(Ok(())) => {}
        }
        persisted?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// `jitsi-scaler serve`: runs until SIGTERM or Ctrl-C.
pub async fn run(cfg: Config) -> Result<(), ServerError> {
    let shutdown = CancellationToken::new();
    let running = start(cfg, None, shutdown.clone()).await?;
    let signal = shutdown.clone();
    tokio::spawn(async move {
        crate::runtime::wait_for_signal().await;
        tracing::info!("shutdown requested");
        systemd::stopping();
        signal.cancel();
    });
    running.finish().await
}

/// How often breaker states are compared (a change is recorded within this time).
const BREAKER_POLL: Duration = Duration::from_secs(1);

/// Records every breaker state change of the lifecycle nodes as a decision (log, ring, audit).
async fn watch_breakers(svc: Arc<Service>, shutdown: CancellationToken) {
    let mut last: HashMap<String, BreakerState> = svc
        .lifecycle()
        .nodes()
        .into_iter()
        .map(|n| (n.url, n.breaker))
        .collect();
    let mut interval = tokio::time::interval(BREAKER_POLL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        for n in svc.lifecycle().nodes() {
            let before = last.insert(n.url.clone(), n.breaker);
            if before.is_none_or(|b| b == n.breaker) {
                continue;
            }
            svc.decide(Decision::Breaker {
                node: n.url,
                state: n.breaker,
                failures: n.consecutive_failures,
                last_error: n.last_error,
            });
        }
    }
}

#[cfg(test)]
mod stored_state_tests {
    use super::*;
    use policy::capacity::{Profile, WEEK_HOURS};

    /// A data directory whose stored profile's busiest hour needs `need` > `max` gateways.
    fn dir_with_profile(max: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("dir");
        let mut profile = Profile::default();
        for hw in 0..WEEK_HOURS {
            profile.learn(hw, 300.0, 1.0);
        }
        // 20-minute calls.
        profile.learn_duration(1_200_000.0 * 100.0, 100.0);
        let mut snap = crate::store::Snapshot::new(policy::Settings {
            max_total: max,
            ..policy::Settings::default()
        });
        snap.capacity = Some(crate::capacity::Stored {
            profile: Some(profile),
            schedule: None,
        });
        let text = serde_json::to_vec(&snap).expect("json");
        std::fs::write(dir.path().join(crate::store::STATE_FILE), text).expect("write");
        dir
    }

    fn config(dir: &std::path::Path) -> Config {
        let toml = format!("data_dir = {:?}\n", dir.display().to_string());
        Config::from_toml(&toml, "test", &Default::default()).expect("config")
    }

    #[test]
    fn config_check_warns_when_the_learned_peak_needs_more_than_max() {
        // 300 calls/h of 20 minutes: 100 in calls at the peak, plus the spares.
        let small = dir_with_profile(80);
        let w = stored_state_warnings(&config(small.path()));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("more than max 80"), "{w:?}");
        let large = dir_with_profile(1000);
        assert!(stored_state_warnings(&config(large.path())).is_empty());
        // No state yet: nothing to say.
        let empty = tempfile::tempdir().expect("dir");
        assert!(stored_state_warnings(&config(empty.path())).is_empty());
    }
}
