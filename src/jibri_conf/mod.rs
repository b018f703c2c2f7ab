//! `jitsi-scaler jibri-config`: generate and check the multi-shard `jibri.api.xmpp.environments`
//! of jibri.conf (one environment per shard; see docs/jibri-config.md).

pub mod check;
pub mod conf;
pub mod generate;
pub mod hocon;
pub mod shards;
pub mod write;

use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use check::GatewayKind;

/// Arguments of `jitsi-scaler jibri-config`.
#[derive(Debug, clap::Args)]
pub struct JibriConfigArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: JibriConfigCommand,
}

/// The `jibri-config` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum JibriConfigCommand {
    /// Print the jibri.api.xmpp.environments block for every shard (or --write it into a file).
    Generate(GenerateArgs),
    /// Check a jibri.conf. Exit status: 0 clean, 1 findings, 2 parse error or unreadable file.
    Check(CheckArgs),
}

/// Arguments of `jibri-config generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// The shards file (TOML; see docs/jibri-config.md and examples/shards.toml).
    #[arg(long, value_name = "FILE")]
    pub shards: PathBuf,
    /// This gateway's MUC nickname [default: a fresh random UUID on every run].
    #[arg(long, value_name = "NICK")]
    pub nickname: Option<String>,
    /// With --write: keep the nickname already in the file (a fresh UUID if it has none).
    #[arg(long, requires = "write", conflicts_with = "nickname")]
    pub keep_nickname: bool,
    /// Replace the environments in this existing jibri.conf, keeping every other byte; the
    /// previous version is kept as FILE.bak. Without it the block is printed.
    #[arg(long, value_name = "FILE")]
    pub write: Option<PathBuf>,
}

/// Arguments of `jibri-config check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The jibri.conf to check (`-` reads standard input).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Also compare with this shards file: every shard present, no other, same values
    /// (passwords are not compared).
    #[arg(long, value_name = "FILE")]
    pub shards: Option<PathBuf>,
    /// Print one JSON object: {"file", "ok", "environments", "findings": [{"code", "message",
    /// "environment", "line", "column"}]} (or {"file", "error"} with exit status 2).
    #[arg(long)]
    pub json: bool,
    /// Which environments are SIP gateways, whose usage-timeout must be 0 (auto: those with a
    /// sip-control-muc).
    #[arg(long, value_enum, default_value_t = GatewayKind::Auto)]
    pub kind: GatewayKind,
}

/// How `generate` picks the nickname.
#[derive(Debug, Clone)]
pub enum NicknameChoice {
    /// `--nickname`.
    Given(String),
    /// A fresh UUID.
    Fresh,
    /// `--keep-nickname`: the one already in the file.
    Keep,
}

/// Errors of `jibri-config`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The shards file is invalid.
    #[error("{}: invalid shards file:\n  {message}", path.display())]
    Shards {
        /// The file.
        path: PathBuf,
        /// Every problem, one per line.
        message: String,
    },
    /// A password could not be read.
    #[error("shard '{shard}', {login}: {message}")]
    Password {
        /// The shard.
        shard: String,
        /// `control-login` or `call-login`.
        login: String,
        /// Why.
        message: String,
    },
    /// A jibri.conf does not parse.
    #[error("{}:{}:{}: {}", path.display(), err.line, err.column, err.message)]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why.
        err: hocon::ParseError,
    },
    /// `--write` will not edit this file.
    #[error("refusing to write {}: {reason}", path.display())]
    Refused {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Writing a file failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A command-line value is unusable.
    #[error("{0}")]
    Usage(String),
    /// Standard output failed.
    #[error("cannot write to standard output: {0}")]
    Stdout(io::Error),
}

/// Runs `jibri-config`; `check` reports its own errors and returns exit status 2 for them.
pub fn run(args: JibriConfigArgs) -> Result<ExitCode, Error> {
    match args.command {
        JibriConfigCommand::Generate(g) => run_generate(g).map(|()| ExitCode::SUCCESS),
        JibriConfigCommand::Check(c) => Ok(run_check(&c)),
    }
}

fn run_generate(args: GenerateArgs) -> Result<(), Error> {
    let nickname = match (&args.nickname, args.keep_nickname) {
        (Some(n), _) if n.trim().is_empty() => {
            return Err(Error::Usage("--nickname must not be empty".to_owned()));
        }
        (Some(n), _) => NicknameChoice::Given(n.clone()),
        (None, true) => NicknameChoice::Keep,
        (None, false) => NicknameChoice::Fresh,
    };
    let shards = shards::load(&args.shards)?;
    for env in &shards.shards {
        if !env.overridden.is_empty() {
            eprintln!(
                "warning: shard '{}' overrides {}, which must be equal across shards: `check` will report it",
                env.name,
                env.overridden.join(", ")
            );
        }
    }
    match &args.write {
        None => {
            let nickname = match nickname {
                NicknameChoice::Given(n) => n,
                _ => generate::new_nickname(),
            };
            let envs = generate::prepare(&shards, &nickname)?;
            io::stdout()
                .lock()
                .write_all(generate::render_block(&envs).as_bytes())
                .map_err(Error::Stdout)
        }
        Some(path) => {
            let written = write::write_file(path, &shards, nickname)?;
            for w in &written.warnings {
                eprintln!("warning: {w}");
            }
            eprintln!(
                "{} {} environment(s) in {} (previous version: {})",
                if written.inserted {
                    "inserted"
                } else {
                    "replaced"
                },
                shards.shards.len(),
                written.path.display(),
                written.backup.display()
            );
            Ok(())
        }
    }
}

fn read_input(path: &Path) -> Result<String, Error> {
    let read_err = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    if path == Path::new("-") {
        let mut text = String::new();
        io::stdin().read_to_string(&mut text).map_err(read_err)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).map_err(read_err)
    }
}

fn check_file(args: &CheckArgs) -> Result<check::Report, Error> {
    let src = read_input(&args.file)?;
    let doc = hocon::parse(&src).map_err(|err| Error::Parse {
        path: args.file.clone(),
        err,
    })?;
    let resolved = conf::resolve(&doc);
    let shards = args.shards.as_deref().map(shards::load).transpose()?;
    let label = args
        .shards
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Ok(check::check(
        &src,
        &resolved,
        shards.as_ref(),
        args.kind,
        &label,
    ))
}

fn run_check(args: &CheckArgs) -> ExitCode {
    let file = args.file.display().to_string();
    let mut out = io::stdout().lock();
    // Output errors (a closed pipe) cannot change the verdict, so they are ignored.
    match check_file(args) {
        Ok(report) => {
            let ok = report.findings.is_empty();
            if args.json {
                let value = serde_json::json!({
                    "file": file,
                    "ok": ok,
                    "environments": report.environments,
                    "findings": report.findings,
                });
                let _ = writeln!(out, "{value:#}");
            } else {
                for f in &report.findings {
                    let place = match (f.line, f.column) {
                        (Some(l), Some(c)) => format!("{file}:{l}:{c}"),
                        _ => file.clone(),
                    };
                    let env = f
                        .environment
                        .as_ref()
                        .map(|e| format!(" [{e}]"))
                        .unwrap_or_default();
                    let _ = writeln!(out, "{place}: {}{env}: {}", f.code.as_str(), f.message);
                }
                let mut envs = format!("{} environment(s)", report.environments.len());
                if !report.environments.is_empty() {
                    envs = format!("{envs}: {}", report.environments.join(", "));
                }
                let _ = if ok {
                    writeln!(out, "{file}: OK, {envs}")
                } else {
                    writeln!(out, "{file}: {} finding(s); {envs}", report.findings.len())
                };
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            if args.json {
                let mut error = serde_json::json!({ "message": e.to_string() });
                if let Error::Parse { err, .. } = &e {
                    error["line"] = err.line.into();
                    error["column"] = err.column.into();
                }
                let value = serde_json::json!({ "file": file, "ok": false, "error": error });
                let _ = writeln!(out, "{value:#}");
            }
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
