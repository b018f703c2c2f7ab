//! Command backend: runs a local program per call (`add`, `remove`, `list`, `find-ip`).
//!
//! Protocol (see `docs/lifecycle.md`): exit 0 = success, exit 2 from `list`/`find-ip` =
//! unsupported, any other exit = transient failure whose message is stderr's last line. The
//! program runs in its own process group, which is killed when it overruns the timeout.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{
    BreakerState, CallOutcome, CallRecord, CommandConfig, Created, LifecycleError, NodeStatus,
    ObserverSlot, bounded,
};
use crate::duration::millis;

/// Consecutive failed runs after which the backend reports itself down.
const DOWN_AFTER: u32 = 3;
/// Output kept per stream; the rest is read and dropped so the program never blocks on a pipe.
const OUTPUT_LIMIT: usize = 64 * 1024;
/// Exit code meaning "this subcommand is not implemented".
const EXIT_UNSUPPORTED: i32 = 2;
/// PATH of the program when `serve` has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Variables of `serve`'s environment every run gets (nothing secret).
const BASE_ENV: [&str; 2] = ["PATH", "LANG"];

/// Health counters of the program.
#[derive(Debug, Default)]
struct Health {
    consecutive_failures: u32,
    last_error: Option<String>,
    calls_ok: u64,
    calls_failed: u64,
}

/// Runs the configured lifecycle program.
#[derive(Debug)]
pub struct CommandRunner {
    program: PathBuf,
    timeout: Duration,
    /// Extra variable names inherited from `serve` (`lifecycle.command.pass_env`).
    pass_env: Vec<String>,
    health: Mutex<Health>,
    /// Metrics hook, told about every finished run.
    pub(super) observer: ObserverSlot,
    /// The launch hold after refused creates.
    pub(super) refusals: super::RefusalSlot,
    /// Hosts it may delete or power off beyond its own launches (its `list` prefixes).
    pub(super) managed: super::ManagedSet,
}

/// A finished run.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl CommandRunner {
    /// Checks that the program is set, exists and is executable.
    pub fn new(cfg: &CommandConfig, managed: super::ManagedSet) -> Result<Self, LifecycleError> {
        let config = |msg: String| LifecycleError::Config(format!("lifecycle.command: {msg}"));
        let Some(program) = &cfg.program else {
            return Err(config("program is required".into()));
        };
        let meta = std::fs::metadata(program)
            .map_err(|e| config(format!("program {}: {e}", program.display())))?;
        if !meta.is_file() {
            return Err(config(format!(
                "program {} is not a file",
                program.display()
            )));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o111 == 0 {
                return Err(config(format!(
                    "program {} is not executable",
                    program.display()
                )));
            }
        }
        if cfg.timeout.is_zero() {
            return Err(config("timeout must be positive".into()));
        }
        for name in &cfg.pass_env {
            let valid = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(config(format!(
                    "pass_env: {:?} is not a variable name",
                    bounded(name)
                )));
            }
            // The scaler's own settings, tokens included, never reach the program.
            if name
                .to_ascii_uppercase()
                .starts_with(crate::runtime::ENV_PREFIX)
            {
                return Err(config(format!(
                    "pass_env: {name} is refused ({}* variables hold the scaler's settings and secrets)",
                    crate::runtime::ENV_PREFIX
                )));
            }
        }
        Ok(CommandRunner {
            program: program.clone(),
            timeout: cfg.timeout,
            pass_env: cfg.pass_env.clone(),
            health: Mutex::new(Health::default()),
            observer: ObserverSlot::default(),
            refusals: super::RefusalSlot::default(),
            managed,
        })
    }

    /// `<program> add <instance_type> <name>`; a last stdout line holding an IP address is the
    /// new host's address.
    pub async fn create(&self, name: &str, instance_type: &str) -> Result<Created, LifecycleError> {
        let out = self
            .run_checked(&["add", instance_type, name], false)
            .await?;
        let ip = last_line(&out.stdout)
            .and_then(|l| l.parse::<std::net::IpAddr>().ok())
            .map(|ip| ip.to_string());
        Ok(Created { ip })
    }

    /// `<program> remove <name>`; the program must exit 0 when the host is already gone.
    pub async fn delete(&self, name: &str) -> Result<(), LifecycleError> {
        self.run_checked(&["remove", name], false).await.map(|_| ())
    }

    /// `<program> find-ip <ip>`: the first non-empty stdout line is the host name; none = unknown.
    pub async fn find_by_ip(&self, ip: &str) -> Result<Option<String>, LifecycleError> {
        let out = self.run_checked(&["find-ip", ip], true).await?;
        Ok(out
            .stdout
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string))
    }

    /// `<program> list <prefix>`: one host name per stdout line; only `<prefix>-*` names are kept.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, LifecycleError> {
        let out = self.run_checked(&["list", prefix], true).await?;
        let wanted = format!("{prefix}-");
        let mut names: Vec<String> = out
            .stdout
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with(&wanted))
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Warm pool: `<program> start <name>` / `stop <name>` (exit 0 once the host is on / off;
    /// exit 2: the program has no power actions) and `status <name>` (prints `on` or `off`).
    pub async fn power(
        &self,
        name: &str,
        action: super::PowerAction,
    ) -> Result<super::PowerState, LifecycleError> {
        let out = self.run_checked(&[action.as_str(), name], true).await?;
        Ok(action.target().unwrap_or_else(|| {
            super::PowerState::parse(
                out.stdout
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .unwrap_or_default(),
            )
        }))
    }

    /// False after `DOWN_AFTER` consecutive failed runs (calls still run: the next success heals).
    pub fn is_up(&self) -> bool {
        self.health().consecutive_failures < DOWN_AFTER
    }

    /// One pseudo-node, `command:<program>`.
    pub fn nodes(&self) -> Vec<NodeStatus> {
        let h = self.health();
        vec![NodeStatus {
            url: format!("command:{}", self.program.display()),
            breaker: if h.consecutive_failures >= DOWN_AFTER {
                BreakerState::Open
            } else {
                BreakerState::Closed
            },
            consecutive_failures: h.consecutive_failures,
            last_error: h.last_error.clone(),
            calls_ok: h.calls_ok,
            calls_failed: h.calls_failed,
        }]
    }

    fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs the program, records the outcome, maps the exit code to a result.
    async fn run_checked(&self, args: &[&str], optional: bool) -> Result<Finished, LifecycleError> {
        let sub = args.first().copied().unwrap_or_default();
        let subject = args.last().copied().unwrap_or_default();
        let started = Instant::now();
        let result = match self.run(args).await {
            Err(msg) => Err(LifecycleError::Transient(msg)),
            Ok(out) if out.status.success() => Ok(out),
            Ok(out) if optional && out.status.code() == Some(EXIT_UNSUPPORTED) => {
                Err(LifecycleError::Unsupported(format!(
                    "{} does not implement {sub}",
                    self.program.display()
                )))
            }
            Ok(out) => {
                let exit = match out.status.code() {
                    Some(code) => format!("exit {code}"),
                    None => "killed by a signal".to_string(),
                };
                let line = last_line(&out.stderr)
                    .map_or_else(|| "no message on stderr".to_string(), bounded);
                Err(LifecycleError::Transient(format!(
                    "{} {sub} {subject}: {exit}: {line}",
                    self.program.display()
                )))
            }
        };
        let elapsed_ms = millis(started.elapsed());
        if !matches!(result, Err(LifecycleError::Unsupported(_))) {
            self.observer.emit(&CallRecord {
                backend: "command",
                node: &format!("command:{}", self.program.display()),
                op: sub_op(sub),
                outcome: if result.is_ok() {
                    CallOutcome::Ok
                } else {
                    CallOutcome::Failed
                },
                elapsed: started.elapsed(),
            });
        }
        let loud = !optional;
        match &result {
            Ok(_) => {
                let mut h = self.health();
                h.consecutive_failures = 0;
                h.calls_ok = h.calls_ok.saturating_add(1);
                drop(h);
                if loud {
                    tracing::info!(op = sub, name = subject, elapsed_ms, "lifecycle command ok");
                } else {
                    tracing::debug!(op = sub, name = subject, elapsed_ms, "lifecycle command ok");
                }
            }
            // Not a failure of the program: it told us what it cannot do.
            Err(LifecycleError::Unsupported(_)) => {
                tracing::debug!(op = sub, "lifecycle command: unsupported");
            }
            Err(e) => {
                let mut h = self.health();
                h.consecutive_failures = h.consecutive_failures.saturating_add(1);
                h.calls_failed = h.calls_failed.saturating_add(1);
                h.last_error = Some(e.to_string());
                drop(h);
                if loud {
                    tracing::warn!(op = sub, name = subject, elapsed_ms, error = %e, "lifecycle command failed");
                } else {
                    tracing::debug!(op = sub, name = subject, elapsed_ms, error = %e, "lifecycle command failed");
                }
            }
        }
        result
    }

    /// Spawns the program and waits at most `timeout`; `Err` = could not run it or timed out.
    async fn run(&self, args: &[&str]) -> Result<Finished, String> {
        let program = self.program.display();
        let mut cmd = tokio::process::Command::new(&self.program);
        // A minimal environment: `serve`'s may hold the Foreman token and other secrets.
        cmd.env_clear();
        for name in BASE_ENV
            .iter()
            .copied()
            .chain(self.pass_env.iter().map(String::as_str))
        {
            if let Some(value) = std::env::var_os(name) {
                cmd.env(name, value);
            }
        }
        if std::env::var_os("PATH").is_none() {
            cmd.env("PATH", DEFAULT_PATH);
        }
        cmd.envs(call_env(args));
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Its own process group, so a timeout kills what it started too (curl, ssh, ...).
        #[cfg(unix)]
        cmd.process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        let pid = child.id();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let waited = tokio::time::timeout(self.timeout, async {
            tokio::join!(child.wait(), read_bounded(stdout), read_bounded(stderr))
        })
        .await;
        match waited {
            Ok((Ok(status), stdout, stderr)) => Ok(Finished {
                status,
                stdout,
                stderr,
            }),
            Ok((Err(e), _, _)) => Err(format!("waiting for {program}: {e}")),
            Err(_) => {
                if let Some(pid) = pid {
                    kill_group(pid).await;
                }
                // The direct child at least, should `kill` be missing; kill_on_drop reaps it.
                let _ = child.start_kill();
                Err(format!(
                    "{program} {}: timed out after {}, killed",
                    args.first().copied().unwrap_or_default(),
                    humantime::format_duration(self.timeout)
                ))
            }
        }
    }

    /// The configured program.
    pub fn program(&self) -> &Path {
        &self.program
    }
}

/// The variables describing one call, besides argv: `JITSI_SCALER_OP` always, and
/// `JITSI_SCALER_HOST` (add, remove), `JITSI_SCALER_INSTANCE_TYPE` (add),
/// `JITSI_SCALER_PREFIX` (list), `JITSI_SCALER_IP` (find-ip).
fn call_env<'a>(args: &[&'a str]) -> Vec<(&'static str, &'a str)> {
    let mut env = Vec::new();
    match args {
        ["add", instance_type, name] => {
            env.push(("JITSI_SCALER_OP", "add"));
            env.push(("JITSI_SCALER_INSTANCE_TYPE", *instance_type));
            env.push(("JITSI_SCALER_HOST", *name));
        }
        ["remove", name] => {
            env.push(("JITSI_SCALER_OP", "remove"));
            env.push(("JITSI_SCALER_HOST", *name));
        }
        ["list", prefix] => {
            env.push(("JITSI_SCALER_OP", "list"));
            env.push(("JITSI_SCALER_PREFIX", *prefix));
        }
        ["find-ip", ip] => {
            env.push(("JITSI_SCALER_OP", "find-ip"));
            env.push(("JITSI_SCALER_IP", *ip));
        }
        [op, ..] => env.push(("JITSI_SCALER_OP", *op)),
        [] => {}
    }
    env
}

/// The metrics `op` label of a subcommand (same names as the Foreman backend).
fn sub_op(sub: &str) -> &'static str {
    match sub {
        "add" => "create",
        "remove" => "delete",
        "find-ip" => "find_by_ip",
        "list" => "list",
        "start" => "power_start",
        "stop" => "power_stop",
        "status" => "power_status",
        _ => "other",
    }
}

/// Reads a stream to its end, keeping at most `OUTPUT_LIMIT` bytes.
async fn read_bounded<R: AsyncRead + Unpin>(stream: Option<R>) -> String {
    let Some(mut stream) = stream else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(buf.get(..n.min(room)).unwrap_or_default());
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// SIGKILLs the process group led by `pid` (the program was started as its leader).
#[cfg(unix)]
async fn kill_group(pid: u32) {
    let kill = tokio::process::Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    // Best effort: the direct child is killed anyway.
    let _ = tokio::time::timeout(Duration::from_secs(2), kill).await;
}

#[cfg(not(unix))]
async fn kill_group(_pid: u32) {}

/// The last line of `text` that is not blank, trimmed.
fn last_line(text: &str) -> Option<&str> {
    text.lines().rev().map(str::trim).find(|l| !l.is_empty())
}
