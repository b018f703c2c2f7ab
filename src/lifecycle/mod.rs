//! Lifecycle manager clients: create and delete gateway hosts (Foreman API v2, or a command).
//!
//! SEAM (to be implemented in this module): an enum `Lifecycle { Foreman(..), Command(..) }` built
//! by `Lifecycle::from_config(&LifecycleConfig)`, with
//! `async fn create(&self, name: &str, instance_type: &str) -> Result<Created, LifecycleError>`,
//! `async fn delete(&self, name: &str) -> Result<(), LifecycleError>` (404 = Ok),
//! `async fn find_by_ip(&self, ip: &str) -> Result<Option<String>, LifecycleError>`,
//! `async fn list(&self, prefix: &str) -> Result<Vec<String>, LifecycleError>`,
//! `fn is_up(&self) -> bool`, `fn nodes(&self) -> Vec<NodeStatus>`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which lifecycle manager to use, and how to reach it (config section `[lifecycle]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleConfig {
    /// `foreman` (HTTP API v2) or `command` (runs a program).
    pub backend: Backend,
    /// Host names the scaler creates are `<name_prefix>-<unique id>`.
    pub name_prefix: String,
    /// Foreman settings.
    pub foreman: ForemanConfig,
    /// Command settings.
    pub command: CommandConfig,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            backend: Backend::Foreman,
            name_prefix: "vsg".into(),
            foreman: ForemanConfig::default(),
            command: CommandConfig::default(),
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
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
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
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_secs(30),
            ca_file: None,
        }
    }
}

/// Command backend settings (`[lifecycle.command]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CommandConfig {
    /// Program to run; it gets `add <type> <name>` or `remove <name>`; exit 0 = success.
    pub program: Option<PathBuf>,
    /// Timeout of one run (the program is killed after it).
    #[serde(with = "crate::duration")]
    pub timeout: Duration,
}

impl Default for CommandConfig {
    fn default() -> Self {
        CommandConfig {
            program: None,
            timeout: Duration::from_secs(120),
        }
    }
}
