//! Lifecycle manager clients: create and delete gateway hosts (Foreman API v2, or a command).
//!
//! [`Lifecycle::from_config`] builds the backend named by `[lifecycle] backend`. Every method takes
//! `&self` and may be called concurrently (hold it in an `Arc`). Names passed in and returned are
//! the scaler's own host names (`<name_prefix>-<id>`); see `docs/lifecycle.md`.

mod breaker;
mod command;
mod foreman;
mod managed;
mod power;
mod refusal;

pub use command::CommandRunner;
pub use foreman::ForemanClient;
pub use managed::{HostFacts, Hostgroup, ManagedSet};
pub use power::{PowerAction, PowerState};
pub use refusal::Hold;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Which lifecycle manager to use, and how to reach it (config section `[lifecycle]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// `foreman` (HTTP API v2) or `command` (runs a program).
    pub backend: Backend,
    /// Host names the scaler creates are `<name_prefix>-<unique id>`.
    pub name_prefix: String,
    /// Name prefixes of hosts the scaler did not launch but may delete or power off (with the
    /// Foreman hostgroup it creates into, the managed set). Empty: `name_prefix` alone.
    pub managed_prefixes: Vec<String>,
    /// Foreman settings.
    pub foreman: ForemanConfig,
    /// Command settings.
    pub command: CommandConfig,
    /// After a definitive create refusal (401/403, a validation 422, a success that is not a
    /// host) no launch is tried for this long; it doubles per consecutive refusal.
    #[serde(with = "crate::duration")]
    pub refusal_backoff: Duration,
    /// Cap of `refusal_backoff`.
    #[serde(with = "crate::duration")]
    pub refusal_backoff_max: Duration,
}

/// Default first launch hold after a refused create.
const REFUSAL_BACKOFF: Duration = Duration::from_secs(30);
/// Default cap of the launch hold.
const REFUSAL_BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            backend: Backend::Foreman,
            name_prefix: "vsg".into(),
            managed_prefixes: Vec::new(),
            foreman: ForemanConfig::default(),
            command: CommandConfig::default(),
            refusal_backoff: REFUSAL_BACKOFF,
            refusal_backoff_max: REFUSAL_BACKOFF_MAX,
        }
    }
}

/// The lifecycle backend.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Foreman API v2 over HTTP.
    Foreman,
    /// A local program: `<program> add <type> <name>` / `<program> remove <name>`.
    Command,
}

/// Foreman API v2 client settings (`[lifecycle.foreman]`).
///
/// `Debug` is written by hand so the token never reaches a log.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ForemanConfig {
    /// Base URLs of the Foreman nodes, tried round-robin with failover.
    pub nodes: Vec<String>,
    /// HTTP Basic user name.
    pub user: String,
    /// Personal access token (HTTP Basic password). Prefer `token_file`.
    pub token: Option<String>,
    /// File holding the personal access token.
    pub token_file: Option<PathBuf>,
    /// Extra fields merged into the `host` object of every create (hostgroup_id, ...).
    pub host_parameters: toml::Table,
    /// Domain appended to created host names when Foreman names hosts by FQDN (optional).
    pub domain: Option<String>,
    /// Connect timeout.
    #[serde(with = "crate::duration")]
    pub connect_timeout: Duration,
    /// Total timeout of one create call (creates can take long).
    #[serde(with = "crate::duration")]
    pub create_timeout: Duration,
    /// Total timeout of other calls.
    #[serde(with = "crate::duration")]
    pub timeout: Duration,
    /// Attempts per call across nodes before giving up until the next tick.
    pub attempts: u32,
    /// First backoff between attempts (doubles, with jitter).
    #[serde(with = "crate::duration")]
    pub backoff: Duration,
    /// Cap of the backoff between attempts.
    #[serde(with = "crate::duration")]
    pub backoff_max: Duration,
    /// Consecutive failures that open a node's circuit breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker stays open before one trial call.
    #[serde(with = "crate::duration")]
    pub breaker_cooldown: Duration,
    /// Extra CA certificate (PEM) to trust for the Foreman nodes.
    pub ca_file: Option<PathBuf>,
}

impl Default for ForemanConfig {
    fn default() -> Self {
        ForemanConfig {
            nodes: vec!["http://127.0.0.1:3000".into()],
            user: "admin".into(),
            token: None,
            token_file: None,
            host_parameters: toml::Table::new(),
            domain: None,
            connect_timeout: Duration::from_secs(5),
            create_timeout: Duration::from_secs(120),
            timeout: Duration::from_secs(20),
            attempts: 3,
            backoff: Duration::from_millis(500),
            backoff_max: Duration::from_secs(10),
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_secs(30),
            ca_file: None,
        }
    }
}

impl std::fmt::Debug for ForemanConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForemanConfig")
            .field("nodes", &self.nodes)
            .field("user", &self.user)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("host_parameters", &self.host_parameters)
            .field("domain", &self.domain)
            .field("connect_timeout", &self.connect_timeout)
            .field("create_timeout", &self.create_timeout)
            .field("timeout", &self.timeout)
            .field("attempts", &self.attempts)
            .field("backoff", &self.backoff)
            .field("backoff_max", &self.backoff_max)
            .field("breaker_threshold", &self.breaker_threshold)
            .field("breaker_cooldown", &self.breaker_cooldown)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Command backend settings (`[lifecycle.command]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CommandConfig {
    /// Program to run; it gets `add <type> <name>`, `remove <name>`, `list <prefix>`,
    /// `find-ip <ip>`, and for the warm pool `start <name>`, `stop <name>`, `status <name>`;
    /// exit 0 = success (see `docs/lifecycle.md`).
    pub program: Option<PathBuf>,
    /// Timeout of one run (the program is killed after it).
    #[serde(with = "crate::duration")]
    pub timeout: Duration,
    /// Names of variables of `serve`'s environment the program also gets (it otherwise runs
    /// with PATH, LANG and its own `JITSI_SCALER_*` call variables only; see docs/lifecycle.md).
    /// `JITSI_SCALER_*` names are refused: they hold the scaler's own settings and secrets.
    pub pass_env: Vec<String>,
}

impl Default for CommandConfig {
    fn default() -> Self {
        CommandConfig {
            program: None,
            timeout: Duration::from_secs(120),
            pass_env: Vec::new(),
        }
    }
}

/// A lifecycle manager client: the backend chosen by the config.
#[derive(Debug)]
pub enum Lifecycle {
    /// Foreman API v2 over HTTP, several nodes with failover.
    Foreman(ForemanClient),
    /// A local program.
    Command(CommandRunner),
}

/// What a successful create tells us.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    /// The new host's address, when the manager already knows it.
    pub ip: Option<String>,
}

/// Errors of lifecycle calls.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    /// Timeout, connect error, 429, 5xx, all nodes failed or open: the outcome is unknown, retry later.
    #[error("lifecycle manager unavailable: {0}")]
    Transient(String),
    /// A definitive refusal (401, 403, 415, a validation 422, ...): do not retry the same call.
    #[error("lifecycle manager refused: {0}")]
    Refused(String),
    /// Bad configuration, found at construction.
    #[error("lifecycle config: {0}")]
    Config(String),
    /// The backend cannot do this (e.g. a command without `list`).
    #[error("unsupported by the lifecycle backend: {0}")]
    Unsupported(String),
}

impl LifecycleError {
    /// True when retrying the same call cannot help (everything but `Transient`).
    pub fn is_definitive(&self) -> bool {
        !matches!(self, LifecycleError::Transient(_))
    }
}

/// Circuit breaker state of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// The node is skipped until the cooldown passes.
    Open,
    /// The cooldown passed: the next call is a trial.
    HalfOpen,
}

/// Per-node state for `/scaler/status` and metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node base URL (never with credentials), or `command:<program>`.
    pub url: String,
    /// Circuit breaker state.
    pub breaker: BreakerState,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// The most recent failure (kept after a success).
    pub last_error: Option<String>,
    /// Calls (attempts) that succeeded.
    pub calls_ok: u64,
    /// Calls (attempts) that failed, refusals included.
    pub calls_failed: u64,
}

/// How one lifecycle call attempt ended (a metrics label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// The node did what was asked (a 404 on delete included).
    Ok,
    /// A definitive refusal (4xx, a validation error).
    Refused,
    /// Timeout, connect error, 5xx, a failed command: retried.
    Failed,
}

impl CallOutcome {
    /// The label value: `ok`, `refused` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Refused => "refused",
            CallOutcome::Failed => "failed",
        }
    }
}

/// One finished attempt on one node, as a [`CallObserver`] sees it.
#[derive(Clone, Copy, Debug)]
pub struct CallRecord<'a> {
    /// `foreman` or `command`.
    pub backend: &'static str,
    /// The node URL, or `command:<program>` (as in [`NodeStatus::url`]).
    pub node: &'a str,
    /// `create`, `delete`, `find_by_ip`, `list`, ...
    pub op: &'static str,
    /// How it ended.
    pub outcome: CallOutcome,
    /// How long the attempt took.
    pub elapsed: Duration,
}

/// Receives every finished call attempt (metrics). Must be cheap and never block.
pub type CallObserver = Arc<dyn Fn(&CallRecord<'_>) + Send + Sync>;

/// Where a backend keeps its observer: set once, after construction.
#[derive(Default)]
pub(crate) struct ObserverSlot(OnceLock<CallObserver>);

impl std::fmt::Debug for ObserverSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "ObserverSlot(set)"
        } else {
            "ObserverSlot(empty)"
        })
    }
}

impl ObserverSlot {
    /// Tells the observer, if any, about a finished attempt.
    pub(crate) fn emit(&self, record: &CallRecord<'_>) {
        if let Some(observe) = self.0.get() {
            observe(record);
        }
    }
}

/// Where a backend keeps its launch hold.
#[derive(Debug)]
pub(crate) struct RefusalSlot(Mutex<refusal::RefusalHold>);

impl Default for RefusalSlot {
    fn default() -> Self {
        RefusalSlot(Mutex::new(refusal::RefusalHold::new(
            REFUSAL_BACKOFF,
            REFUSAL_BACKOFF_MAX,
        )))
    }
}

impl RefusalSlot {
    fn lock(&self) -> MutexGuard<'_, refusal::RefusalHold> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Lifecycle {
    fn refusal_slot(&self) -> &RefusalSlot {
        match self {
            Lifecycle::Foreman(c) => &c.refusals,
            Lifecycle::Command(c) => &c.refusals,
        }
    }

    /// The launch hold in force after definitive create refusals, if any: the
    /// launch loop records no new host while it lasts. `Hold::new` is true once per refusal.
    pub fn launch_hold(&self) -> Option<Hold> {
        self.refusal_slot().lock().held(Instant::now())
    }

    /// Time left of the launch hold (zero: none), for status and metrics.
    pub fn launch_hold_remaining(&self) -> Duration {
        self.refusal_slot().lock().remaining(Instant::now())
    }

    /// Consecutive refused creates (0 after a successful create).
    pub fn create_refusals(&self) -> u32 {
        self.refusal_slot().lock().refusals()
    }

    /// Sets the observer of finished call attempts (once; later calls are ignored).
    pub fn set_observer(&self, observer: CallObserver) {
        let slot = match self {
            Lifecycle::Foreman(c) => &c.observer,
            Lifecycle::Command(c) => &c.observer,
        };
        let _ = slot.0.set(observer);
    }

    /// Builds the configured backend: reads `token_file` and `ca_file`, validates node URLs.
    pub fn from_config(cfg: &LifecycleConfig) -> Result<Self, LifecycleError> {
        if cfg.refusal_backoff.is_zero() {
            return Err(LifecycleError::Config(
                "lifecycle.refusal_backoff must be positive".into(),
            ));
        }
        for p in &cfg.managed_prefixes {
            let p = p.trim().trim_end_matches('-');
            if p.is_empty() || !crate::hostname::is_valid(p) {
                return Err(LifecycleError::Config(format!(
                    "lifecycle.managed_prefixes: {:?} is not a host-name prefix",
                    bounded(p)
                )));
            }
        }
        let set = ManagedSet::new(
            &cfg.managed_prefixes,
            &cfg.name_prefix,
            &cfg.foreman.host_parameters,
        );
        let lc = match cfg.backend {
            Backend::Foreman => ForemanClient::new(&cfg.foreman, set).map(Lifecycle::Foreman),
            Backend::Command => CommandRunner::new(&cfg.command, set).map(Lifecycle::Command),
        }?;
        lc.refusal_slot()
            .lock()
            .configure(cfg.refusal_backoff, cfg.refusal_backoff_max);
        Ok(lc)
    }

    /// Creates host `name` (the scaler chose the name and recorded it before this call).
    /// A definitive refusal starts (or doubles) the launch hold and logs what to fix.
    pub async fn create(&self, name: &str, instance_type: &str) -> Result<Created, LifecycleError> {
        let result = match validate_name(name) {
            Err(e) => Err(e),
            Ok(()) => match self {
                Lifecycle::Foreman(c) => c.create(name, instance_type).await,
                Lifecycle::Command(c) => c.create(name, instance_type).await,
            },
        };
        match &result {
            Ok(_) => self.refusal_slot().lock().succeeded(),
            Err(e) if e.is_definitive() => {
                let mut slot = self.refusal_slot().lock();
                let hold = slot.refused(Instant::now(), &e.to_string());
                let refusals = slot.refusals();
                drop(slot);
                tracing::error!(
                    host = name,
                    refusals,
                    hold_s = hold.as_secs(),
                    "create refused, no launch for {}: {e}",
                    humantime::format_duration(hold)
                );
            }
            Err(_) => {}
        }
        result
    }

    /// Deletes host `name`; "already gone" (404) is success.
    pub async fn delete(&self, name: &str) -> Result<(), LifecycleError> {
        validate_name(name)?;
        match self {
            Lifecycle::Foreman(c) => c.delete(name).await,
            Lifecycle::Command(c) => c.delete(name).await,
        }
    }

    /// Finds the host name of an address; `Ok(None)` when no host has it.
    pub async fn find_by_ip(&self, ip: &str) -> Result<Option<String>, LifecycleError> {
        let ip: std::net::IpAddr = ip.trim().parse().map_err(|_| {
            LifecycleError::Refused(format!("not an IP address: {:?}", bounded(ip)))
        })?;
        let ip = ip.to_string();
        match self {
            Lifecycle::Foreman(c) => c.find_by_ip(&ip).await,
            Lifecycle::Command(c) => c.find_by_ip(&ip).await,
        }
    }

    /// Host names starting with `<prefix>-`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, LifecycleError> {
        validate_name(prefix)?;
        match self {
            Lifecycle::Foreman(c) => c.list(prefix).await,
            Lifecycle::Command(c) => c.list(prefix).await,
        }
    }

    /// False when every node's breaker is open (the manager is known to be down).
    pub fn is_up(&self) -> bool {
        match self {
            Lifecycle::Foreman(c) => c.is_up(),
            Lifecycle::Command(c) => c.is_up(),
        }
    }

    /// Per-node state for `/scaler/status` and metrics.
    pub fn nodes(&self) -> Vec<NodeStatus> {
        match self {
            Lifecycle::Foreman(c) => c.nodes(),
            Lifecycle::Command(c) => c.nodes(),
        }
    }

    /// `"foreman"` or `"command"`.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Lifecycle::Foreman(_) => "foreman",
            Lifecycle::Command(_) => "command",
        }
    }
}

/// Host names and prefixes go into URL paths and argv: the one host-name rule (DNS characters
/// only, no leading `-` that a program would read as an option), and no IPv6 `:`.
fn validate_name(name: &str) -> Result<(), LifecycleError> {
    if crate::hostname::is_valid(name) && !name.contains(':') {
        Ok(())
    } else {
        Err(LifecycleError::Refused(format!(
            "invalid host name {:?}",
            bounded(name)
        )))
    }
}

/// At most 200 characters of a text from outside, for error messages and logs.
fn bounded(text: &str) -> String {
    const MAX: usize = 200;
    let text = text.trim();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}
