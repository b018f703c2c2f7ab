//! `jitsi-scaler demo`: a whole local deployment on loopback, in one process.
//!
//! Fake Jicofos (one per shard) and a fake Foreman ([`neighbours`]), simulated gateways each
//! with a fake Jibri and the real agent ([`gateway`]), a Poisson call load ([`load`]), and the
//! real scaler (the same parts as `serve`), with short timings so scaling shows within a minute.
//! See `docs/demo.md`.

pub mod gateway;
pub mod load;
pub mod neighbours;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, JicofoConfig, PolicyConfig, SettingsConfig, ShardConfig};
use crate::lifecycle::{Backend, ForemanConfig, LifecycleConfig};
use gateway::{GatewayTiming, World};

/// Default log filter: the scaler's decisions (one line each, written by the decision module)
/// and the control loop's, and warnings of everything else.
const DEFAULT_LOG: &str = "warn,jitsi_scaler::service=info,jitsi_scaler::decision=info,jitsi_scaler::controller=info,jitsi_scaler::agent=error";
/// Log filter with `--verbose`: gateways, agents, fakes and scaler at info.
const VERBOSE_LOG: &str = "info";
/// Longest wait for tasks to finish after Ctrl-C or `--duration`.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Errors of the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A flag value that cannot work.
    #[error("invalid {flag}: {why}")]
    Arg {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A loopback listener could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The temporary data directory could not be created.
    #[error("cannot create the data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A part of the scaler did not start.
    #[error("cannot start the scaler: {0}")]
    Scaler(String),
    /// The async runtime did not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Arguments of `jitsi-scaler demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Number of shards (one fake Jicofo each; every gateway joins all).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub shards: u32,
    /// Boot time of a new gateway (create to Jibri up).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub boot: Duration,
    /// Call arrival rate (Poisson), e.g. 6/min, 120/h, 0.5/s.
    #[arg(long, default_value = "6/min", value_parser = parse_rate_per_second)]
    pub rate: f64,
    /// Mean call duration (lognormal, cv 1).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub mean_duration: Duration,
    /// The agents ask to be removed after this long idle.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub idle_time: Duration,
    /// Jibri reports EXPIRED (when idle) after this long up; default: never.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub lifetime: Option<Duration>,
    /// Initial minimum of available gateways (scaler setting `min`).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub min: u32,
    /// Initial maximum of total gateways (scaler setting `max`).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max: u32,
    /// Tick of the scaler's control loop.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub tick: Duration,
    /// Address of the scaler's API (loopback only; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Stop by itself after this long (default: run until Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Log gateways, agents and fakes too (stderr; RUST_LOG wins when set).
    #[arg(long, short)]
    pub verbose: bool,
}

fn parse_rate_per_second(s: &str) -> Result<f64, String> {
    crate::sim::trace::parse_rate(s)
        .map(|per_hour| per_hour / 3600.0)
        .map_err(|e| e.to_string())
}

impl DemoArgs {
    fn check(&self) -> Result<(), DemoError> {
        let arg = |flag, why: &str| {
            Err(DemoError::Arg {
                flag,
                why: why.to_owned(),
            })
        };
        if !self.listen.ip().is_loopback() {
            return arg("--listen", "the demo listens on loopback only (127.0.0.1)");
        }
        if self.min > self.max {
            return arg("--min", "must not be above --max");
        }
        if self.tick < Duration::from_millis(100) {
            return arg("--tick", "must be at least 100ms");
        }
        if self.mean_duration.is_zero() {
            return arg("--mean-duration", "must be more than 0");
        }
        if self.lifetime.is_some_and(|l| l.is_zero()) {
            return arg("--lifetime", "must be more than 0");
        }
        Ok(())
    }
}

/// Entry point of `jitsi-scaler demo`: runtime, logs, then [`run`] until Ctrl-C or `--duration`.
pub fn main(args: DemoArgs) -> Result<(), DemoError> {
    args.check()?;
    init_tracing(args.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(DemoError::Runtime)?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let stopper = shutdown.clone();
        let limit = args.duration;
        tokio::spawn(async move {
            match limit {
                Some(d) => tokio::select! {
                    () = crate::runtime::wait_for_signal() => {}
                    () = tokio::time::sleep(d) => {}
                },
                None => crate::runtime::wait_for_signal().await,
            }
            stopper.cancel();
        });
        run(&args, shutdown).await
    })
}

fn init_tracing(verbose: bool) {
    crate::runtime::init_tracing(if verbose { VERBOSE_LOG } else { DEFAULT_LOG }, false);
}

async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), DemoError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DemoError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| DemoError::Bind { addr, source })?;
    Ok((listener, local))
}

/// Serves `app` on `listener` until `shutdown`, as a tracked task.
fn spawn_server(
    tasks: &TaskTracker,
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: &CancellationToken,
) {
    let server =
        axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    tasks.spawn(async move {
        if let Err(e) = server.into_future().await {
            tracing::error!("demo server failed: {e}");
        }
    });
}

/// The scaler's config: the defaults of `serve` with the demo's neighbours and short timings.
fn scaler_config(
    args: &DemoArgs,
    listen: SocketAddr,
    data_dir: PathBuf,
    jicofos: &[String],
    foreman: &str,
) -> Config {
    let boot_timeout = boot_timeout(args);
    // Two hours of samples at the demo's tick for the status page's chart.
    let history_samples = usize::try_from(7_200_000 / args.tick.as_millis().max(1))
        .unwrap_or(usize::MAX)
        .clamp(10, crate::ops::history::MAX_SAMPLES);
    Config {
        listen: listen.to_string(),
        data_dir,
        settings: SettingsConfig {
            min: args.min,
            max: args.max,
            ..SettingsConfig::default()
        },
        policy: PolicyConfig {
            tick: args.tick,
            stats_max_age: args.tick * 3,
            boot_timeout,
            pending_ttl: Duration::from_secs(60),
            drain_confirm: true,
            drain_timeout: Duration::from_secs(600),
            stop_grace: Duration::from_secs(5),
            reconcile_interval: Duration::from_secs(60),
            ..PolicyConfig::default()
        },
        jicofo: JicofoConfig {
            timeout: Duration::from_secs(2),
            shards: jicofos
                .iter()
                .enumerate()
                .map(|(n, url)| ShardConfig {
                    name: format!("shard{}", n + 1),
                    url: url.clone(),
                })
                .collect(),
            ..JicofoConfig::default()
        },
        lifecycle: LifecycleConfig {
            backend: Backend::Foreman,
            name_prefix: "vsg".into(),
            foreman: ForemanConfig {
                nodes: vec![foreman.to_owned()],
                user: "demo".into(),
                token: Some("demo".into()),
                connect_timeout: Duration::from_secs(2),
                create_timeout: Duration::from_secs(5),
                timeout: Duration::from_secs(5),
                attempts: 2,
                backoff: Duration::from_millis(200),
                breaker_cooldown: Duration::from_secs(5),
                ..ForemanConfig::default()
            },
            ..LifecycleConfig::default()
        },
        metrics: crate::ops::MetricsConfig {
            history_samples,
            ..crate::ops::MetricsConfig::default()
        },
        auth: crate::auth::AuthConfig {
            mode: crate::auth::AuthMode::None,
            // Every simulated gateway calls from 127.0.0.1.
            remove_burst: 1_000_000,
            remove_rate_per_minute: 1_000_000,
            ..crate::auth::AuthConfig::default()
        },
        ..Config::default()
    }
}

/// The scaler's boot timeout in the demo: three boots, at least a minute.
fn boot_timeout(args: &DemoArgs) -> Duration {
    (args.boot * 3).max(Duration::from_secs(60))
}

/// A fresh data directory under the system temp dir.
fn data_dir() -> Result<PathBuf, DemoError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let path = std::env::temp_dir().join(format!(
        "jitsi-scaler-demo-{}-{nanos:08x}",
        std::process::id()
    ));
    std::fs::create_dir_all(&path).map_err(|source| DemoError::DataDir {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Runs the whole deployment until `shutdown`, printing a status line every second.
pub async fn run(args: &DemoArgs, shutdown: CancellationToken) -> Result<(), DemoError> {
    args.check()?;
    let dir = data_dir()?;
    let result = run_in(args, shutdown, dir.clone()).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(
    args: &DemoArgs,
    shutdown: CancellationToken,
    dir: PathBuf,
) -> Result<(), DemoError> {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let tasks = TaskTracker::new();
    let (scaler_listener, scaler_addr) = bind(args.listen).await?;
    let scaler_url = format!("http://{scaler_addr}/scaler");

    let world = Arc::new(World::new(
        GatewayTiming {
            boot: args.boot,
            idle_time: args.idle_time,
            lifetime: args.lifetime,
            scaler_url: scaler_url.clone(),
        },
        tasks.clone(),
        shutdown.clone(),
    ));
    let mut jicofo_urls = Vec::new();
    for _ in 0..args.shards {
        let (l, a) = bind(loopback).await?;
        spawn_server(&tasks, l, neighbours::jicofo(world.clone()), &shutdown);
        jicofo_urls.push(format!("http://{a}/stats"));
    }
    let (l, a) = bind(loopback).await?;
    spawn_server(&tasks, l, neighbours::foreman(world.clone()), &shutdown);
    let foreman_url = format!("http://{a}");

    let cfg = scaler_config(
        args,
        scaler_addr,
        dir.join("data"),
        &jicofo_urls,
        &foreman_url,
    );
    cfg.validate()
        .map_err(|e| DemoError::Scaler(e.to_string()))?;
    let scaler = crate::server::start(cfg, Some(scaler_listener), shutdown.clone())
        .await
        .map_err(|e| DemoError::Scaler(e.to_string()))?;
    let svc = scaler.svc.clone();
    // The load generator's counters go into the status page's samples (demo only).
    let counted = world.clone();
    svc.ops.history.set_load_source(Arc::new(move || {
        let c = counted.counters();
        crate::ops::history::LoadCounts {
            calls: c.calls,
            rejected: c.rejected,
        }
    }));

    print_banner(args, &scaler_url, &jicofo_urls, &foreman_url);
    let started = Instant::now();
    tasks.spawn(start_load(
        world.clone(),
        args.clone(),
        started,
        shutdown.clone(),
    ));
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {
                let min = svc.settings().await.min_available;
                println!("{}", status_line(started.elapsed(), &world.view(), min));
            }
            () = shutdown.cancelled() => break,
        }
    }

    println!("stopping ...");
    if let Err(e) = scaler.finish().await {
        tracing::warn!("scaler stopped with an error: {e}");
    }
    tasks.close();
    if tokio::time::timeout(STOP_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some demo tasks did not stop in time");
    }
    let v = world.view();
    println!(
        "{}",
        status_line(started.elapsed(), &v, svc.settings().await.min_available)
    );
    println!(
        "demo stopped after {} s: {} calls ({} rejected), {} launches, {} removals",
        started.elapsed().as_secs(),
        v.counters.calls,
        v.counters.rejected,
        v.counters.launches,
        v.counters.removals
    );
    Ok(())
}

/// Starts the call load once the scaler has brought up its floor (`--min` idle gateways), so
/// the first calls do not meet an empty pool that nobody would run in production.
async fn start_load(
    world: Arc<World>,
    args: DemoArgs,
    started: Instant,
    shutdown: CancellationToken,
) {
    let limit = boot_timeout(&args);
    if load::wait_for_floor(&world, args.min, limit, &shutdown).await {
        println!(
            "floor up after {} s: {} idle gateway(s); calls start now",
            started.elapsed().as_secs(),
            args.min
        );
    } else if shutdown.is_cancelled() {
        return;
    } else {
        println!(
            "floor not up after {}: calls start anyway",
            humantime::format_duration(limit)
        );
    }
    load::run(
        world,
        load::Load {
            per_second: args.rate,
            mean_duration: args.mean_duration,
        },
        shutdown,
    )
    .await;
}

fn print_banner(args: &DemoArgs, scaler_url: &str, jicofos: &[String], foreman: &str) {
    println!(
        "jitsi-scaler demo: {} shard(s), boot {}, calls {:.1}/min of mean {}, agents ask after {} idle",
        args.shards,
        humantime::format_duration(args.boot),
        args.rate * 60.0,
        humantime::format_duration(args.mean_duration),
        humantime::format_duration(args.idle_time),
    );
    println!("scaler: {scaler_url}  (auth.mode = \"none\": no token needed)");
    println!("  status page: {scaler_url}/ui  (open it in a browser: the best way to watch)");
    println!("  curl {scaler_url}/status");
    for (n, url) in jicofos.iter().enumerate() {
        println!("  fake jicofo shard{}: {url}", n + 1);
    }
    println!("  fake foreman: {foreman}/api/hosts");
    println!(
        "the scaler launches its floor first (min {}); calls start once it is up",
        args.min
    );
    match args.duration {
        Some(d) => println!("stops after {} (or Ctrl-C)", humantime::format_duration(d)),
        None => println!("Ctrl-C stops"),
    }
}

/// One status line: `[  12s] calls=.. rejected=.. idle=.. busy=.. booting=.. draining=..
/// launches=.. removals=.. min=..`.
pub fn status_line(elapsed: Duration, v: &gateway::PoolView, min: u32) -> String {
    format!(
        "[{:>4}s] calls={} rejected={} idle={} busy={} booting={} draining={} launches={} removals={} min={}",
        elapsed.as_secs(),
        v.counters.calls,
        v.counters.rejected,
        v.idle,
        v.busy,
        v.booting,
        v.draining,
        v.counters.launches,
        v.counters.removals,
        min
    )
}
