//! The `jitsi-scaler` binary: thin CLI over the library.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Target mode's learned demand profile.
    Capacity {
        #[command(subcommand)]
        command: CapacityCommand,
    },
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
enum CapacityCommand {
    /// Learn an hour-of-week profile from a call trace CSV (seeds target mode's history).
    Seed(jitsi_scaler::capacity::SeedArgs),
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
Config sections: [settings] [policy] [capacity] [warm_pool] [jicofo] [lifecycle] [auth] [store]
[metrics] [audit] [log] [server];
every key with its default: docs/configuration.md. A key is overridden by the environment
variable JITSI_SCALER_<SECTION>__<KEY> (e.g. JITSI_SCALER_SETTINGS__MIN=3).
Several replicas: store.backend = \"redis\", store.redis_url (docs/multi-shard.md).
  store.sentinels = [\"host:port\", ...]  Redis Sentinels that name the primary (production)
  store.sentinel_master = \"mymaster\"     the name they monitor it under
  store.sentinel_username, store.sentinel_password   Sentinel credentials, if required
  store.min_replicas_acked = 1         replicas that confirm a write before it is answered
                                      (default 1 with sentinels, else 0)
  store.ack_timeout = \"1s\"             how long a write waits for those confirmations
Mixed fleets (legacy scripts, the agent, jitsi-autoscaler's sidecar; docs/migration.md):
  policy.drain_confirm = false       clients that do not say how they drain are deleted at once
  policy.sidecar_ttl = \"5m\"          sidecar reports go stale; silence after a shutdown = gone
  policy.sidecar_interval = \"60s\"     sidecars report this often; older reports order nothing
  [auth.sidecar]                     sidecar token rules (iss, aud, lifetime, binding)
Operations keys:
  metrics.auth = \"open\" | \"token\"   GET /metrics without a token (default), or with an admin token
  metrics.history_samples = 1440     per-tick samples behind the status page (GET /scaler/ui)
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
        Command::Capacity {
            command: CapacityCommand::Seed(args),
        } => {
            jitsi_scaler::capacity::run_seed(&args)?;
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
            jitsi_scaler::runtime::init_tracing(&cfg.log.level, cfg.log.format == "json");
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(jitsi_scaler::server::run(cfg))?;
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
            for w in cfg
                .warnings()
                .into_iter()
                .chain(jitsi_scaler::server::stored_state_warnings(&cfg))
            {
                eprintln!("warning: {w}");
            }
            // Exactly the validation `serve` runs before it starts.
            let problems = jitsi_scaler::server::check(&cfg);
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

fn backend(b: BackendArg) -> jitsi_scaler::config::StoreBackend {
    match b {
        BackendArg::Embedded => jitsi_scaler::config::StoreBackend::Embedded,
        BackendArg::Redis => jitsi_scaler::config::StoreBackend::Redis,
    }
}

async fn migrate(
    cfg: &Config,
    from: BackendArg,
    to: BackendArg,
    force: bool,
) -> anyhow::Result<()> {
    let m = jitsi_scaler::store::migrate(cfg, backend(from), backend(to), force).await?;
    let s = &m.snapshot.settings;
    println!(
        "copied settings (min {}, max {}, bulk-max {}) and {} ledger entries from {} to {}",
        s.min_available,
        s.max_total,
        s.bulk_max,
        m.snapshot.ledger.instances().count(),
        m.from,
        m.to
    );
    Ok(())
}
