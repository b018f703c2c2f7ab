//! The `jitsi-scaler` binary: thin CLI over the library.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use jitsi_scaler::config::Config;

/// Autoscaler for Jitsi video-sip-gateway (SIP-Jibri) pools.
#[derive(Parser)]
#[command(name = "jitsi-scaler", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the scaler service: HTTP API, scale-up loop, removal approvals, reconciliation.
    #[command(after_help = SERVE_HELP)]
    Serve {
        /// TOML config file (defaults apply to every key it omits; JITSI_SCALER_* overrides).
        #[arg(long, short, env = "JITSI_SCALER_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Scale-down agent on a gateway: watch Jibri, ask for removal, drain.
    Agent(jitsi_scaler::agent::AgentArgs),
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Move the stored state between backends.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Sign an ASAP JWT with a private key and print it (for curl and scripts).
    Token(jitsi_scaler::auth::TokenArgs),
    /// Replay a call trace against the real policy (and the legacy one) and report quality and cost.
    Simulate(Box<jitsi_scaler::sim::SimulateArgs>),
    /// Erlang-B sizing: the spare count (`min`) needed for a target rejection rate.
    Plan(jitsi_scaler::plan::PlanArgs),
    /// Generate or check the multi-shard `xmpp.environments` block of jibri.conf.
    JibriConfig(jitsi_scaler::jibri_conf::JibriConfigArgs),
    /// Print a running scaler's status as tables: settings, shards, ledger, lifecycle nodes,
    /// the last 10 decisions (signs an admin token with --key, or sends --token).
    Status(jitsi_scaler::ops::status_cli::StatusArgs),
    /// A whole local deployment on loopback (fake shards and Foreman, simulated gateways with
    /// the real agent, the real scaler) so scaling can be watched.
    Demo(jitsi_scaler::demo::DemoArgs),
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy settings and ledger from one backend to another (e.g. before going multi-replica).
    Migrate {
        /// TOML config file (data_dir and store.redis_url are taken from it).
        #[arg(long, short, env = "JITSI_SCALER_CONFIG")]
        config: Option<PathBuf>,
        /// Source backend.
        #[arg(long, value_enum)]
        from: BackendArg,
        /// Target backend.
        #[arg(long, value_enum)]
        to: BackendArg,
        /// Overwrite state already in the target.
        #[arg(long)]
        force: bool,
    },
}

/// A store backend on the command line.
#[derive(Clone, Copy, clap::ValueEnum)]
enum BackendArg {
    /// `state.json` in data_dir.
    Embedded,
    /// Redis or Valkey at store.redis_url.
    Redis,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective config (secrets masked) and every problem; exit 1 on problems.
    Check {
        /// TOML config file.
        #[arg(long, short, env = "JITSI_SCALER_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// Config keys shown by `serve --help` (all keys: docs/configuration.md).
const SERVE_HELP: &str = "\
Config sections: [settings] [policy] [jicofo] [lifecycle] [auth] [store] [metrics] [audit] [log]
[server];
every key with its default: docs/configuration.md. A key is overridden by the environment
variable JITSI_SCALER_<SECTION>__<KEY> (e.g. JITSI_SCALER_SETTINGS__MIN=3).
Several replicas: store.backend = \"redis\", store.redis_url (docs/multi-shard.md).
Operations keys:
  metrics.auth = \"open\" | \"token\"   GET /metrics without a token (default), or with an admin token
  audit.enabled = true               every decision as a JSON line in <data_dir>/audit.jsonl
  audit.max_bytes = 10485760         rotate the audit file past this size
  audit.keep = 5                     rotated audit files kept
Under systemd (Type=notify): READY=1 once serving, STOPPING=1 on SIGTERM/SIGINT, WATCHDOG=1
every WATCHDOG_USEC/2 while the control loop ticks.";

fn env_map() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| {
            k.starts_with(jitsi_scaler::config::ENV_PREFIX) && k != "JITSI_SCALER_CONFIG"
        })
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // One readable line (with causes), no backtrace, whatever RUST_BACKTRACE says.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::JibriConfig(args) => Ok(jitsi_scaler::jibri_conf::run(args)?),
        Command::Simulate(args) => {
            jitsi_scaler::sim::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan(args) => {
            jitsi_scaler::plan::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            print!(
                "{}",
                runtime.block_on(jitsi_scaler::ops::status_cli::run(&args))?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(args) => {
            // The token alone on stdout, so $(jitsi-scaler token ...) works.
            println!("{}", jitsi_scaler::auth::run_token(&args)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config } => {
            let cfg = Config::load(config.as_deref(), &env_map())?;
            cfg.validate()?;
            init_tracing(&cfg.log.level, &cfg.log.format);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(serve(cfg))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            jitsi_scaler::demo::main(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent(args) => {
            jitsi_scaler::agent::main(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Store {
            command:
                StoreCommand::Migrate {
                    config,
                    from,
                    to,
                    force,
                },
        } => {
            let cfg = Config::load(config.as_deref(), &env_map())?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(migrate(&cfg, from, to, force))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Check { config },
        } => {
            let cfg = Config::load(config.as_deref(), &env_map())?;
            print!("{}", cfg.masked_toml());
            for w in cfg.warnings() {
                eprintln!("warning: {w}");
            }
            let problems = cfg.problems();
            if problems.is_empty() {
                eprintln!("config OK");
                Ok(ExitCode::SUCCESS)
            } else {
                for p in &problems {
                    eprintln!("problem: {p}");
                }
                Ok(ExitCode::from(1))
            }
        }
    }
}

fn init_tracing(level: &str, format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    use jitsi_scaler::{api, controller, jicofo, lifecycle, service};
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    let addr: SocketAddr = cfg.listen_addr()?;
    let store = open_store(&cfg, cfg.store.backend)?;
    let lifecycle = lifecycle::Lifecycle::from_config(&cfg.lifecycle)?;
    let jicofo = jicofo::JicofoClient::new(&cfg.jicofo)?;
    let auth = std::sync::Arc::new(jitsi_scaler::auth::Authenticator::from_config(&cfg.auth)?);
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    let svc = service::Service::start(cfg, store, lifecycle, jicofo).await?;
    if svc.cfg.audit.enabled {
        // With a shared store the data directory holds only the audit trail.
        std::fs::create_dir_all(&svc.cfg.data_dir).with_context(|| {
            format!(
                "cannot create data directory {}",
                svc.cfg.data_dir.display()
            )
        })?;
        svc.ops
            .audit
            .start(&svc.cfg.data_dir, &svc.cfg.audit, svc.ops.metrics.clone())?;
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(
        listen = %listener.local_addr().unwrap_or(addr),
        prefix = %svc.cfg.prefix,
        shards = svc.cfg.jicofo.shards.len(),
        lifecycle = ?svc.cfg.lifecycle.backend,
        "jitsi-scaler serving"
    );

    // Listening, store loaded: systemd may start what depends on us. Sent before the
    // watchdog task starts, so READY=1 is always the first message.
    jitsi_scaler::ops::systemd::ready();
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    jitsi_scaler::ops::spawn_tasks(&svc, &shutdown);
    let loop_handle = tokio::spawn(controller::run(
        svc.clone(),
        shutdown.clone(),
        tasks.clone(),
    ));
    let app = api::router(svc.clone(), auth);
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        jitsi_scaler::ops::systemd::stopping();
        signal.cancel();
    });
    jitsi_scaler::http_server::serve(listener, app, &svc.cfg.server, shutdown.clone()).await;
    let _ = loop_handle.await;
    controller::drain_tasks(&tasks, Duration::from_secs(5)).await;
    let persisted = svc.persist().await;
    // The audit file gets every line queued so far, also when the final save failed.
    svc.ops.audit.close(Duration::from_secs(2));
    persisted.context("cannot store the final state")?;
    tracing::info!("stopped");
    Ok(())
}

fn backend(b: BackendArg) -> jitsi_scaler::config::StoreBackend {
    match b {
        BackendArg::Embedded => jitsi_scaler::config::StoreBackend::Embedded,
        BackendArg::Redis => jitsi_scaler::config::StoreBackend::Redis,
    }
}

fn open_store(
    cfg: &Config,
    backend: jitsi_scaler::config::StoreBackend,
) -> anyhow::Result<jitsi_scaler::store::Store> {
    use jitsi_scaler::store::{EmbeddedStore, RedisStore, Store};
    Ok(match backend {
        jitsi_scaler::config::StoreBackend::Embedded => {
            Store::Embedded(EmbeddedStore::open(&cfg.data_dir)?)
        }
        jitsi_scaler::config::StoreBackend::Redis => Store::Redis(Box::new(RedisStore::open(
            &cfg.store.redis_url,
            &cfg.store.key_prefix,
            cfg.store.timeout,
        )?)),
    })
}

async fn migrate(
    cfg: &Config,
    from: BackendArg,
    to: BackendArg,
    force: bool,
) -> anyhow::Result<()> {
    let source = open_store(cfg, backend(from))?;
    let target = open_store(cfg, backend(to))?;
    if source.describe() == target.describe() {
        anyhow::bail!("source and target are the same store");
    }
    let snap = source
        .load()
        .await?
        .with_context(|| format!("{} holds no state to copy", source.describe()))?;
    if !force && target.load().await?.is_some() {
        anyhow::bail!(
            "{} already holds state; pass --force to overwrite it",
            target.describe()
        );
    }
    target.save(&snap).await?;
    println!(
        "copied settings (min {}, max {}, bulk-max {}) and {} ledger entries from {} to {}",
        snap.settings.min_available,
        snap.settings.max_total,
        snap.settings.bulk_max,
        snap.ledger.instances().count(),
        source.describe(),
        target.describe()
    );
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
