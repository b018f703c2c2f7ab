//! Configuration of `serve`: embedded defaults, an optional TOML file, then `JITSI_SCALER_*`
//! environment overrides, validated as a whole before anything starts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lifecycle::{Backend, LifecycleConfig};

/// Prefix of environment variables that override config keys.
pub use crate::runtime::ENV_PREFIX;

/// The whole configuration of `serve`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP API listens on.
    pub listen: String,
    /// Path prefix of the API (the legacy scaler's is `/scaler`).
    pub prefix: String,
    /// Directory of the embedded store.
    pub data_dir: PathBuf,
    /// Largest accepted request body, in bytes (larger: 413).
    pub body_limit: usize,
    /// The instance type this scaler manages (`POST /scaler/instance` accepts only it).
    pub instance_type: String,
    /// Initial settings; values changed through the API are stored and win over these.
    pub settings: SettingsConfig,
    /// Control loop and policy timing.
    pub policy: PolicyConfig,
    /// Where the gateway counts come from.
    pub jicofo: JicofoConfig,
    /// The lifecycle manager.
    pub lifecycle: LifecycleConfig,
    /// API authentication (ASAP tokens).
    pub auth: crate::auth::AuthConfig,
    /// Where settings and the ledger are kept.
    pub store: StoreConfig,
    /// Logging.
    pub log: LogConfig,
    /// Who may read `GET /metrics`.
    pub metrics: crate::ops::MetricsConfig,
    /// The audit file (`audit.jsonl` in `data_dir`).
    pub audit: crate::ops::AuditConfig,
    /// Target mode: the spare floor sized for a rejection rate.
    pub capacity: crate::capacity::CapacitySection,
    /// HTTP server limits.
    pub server: crate::http_server::ServerConfig,
    /// Warm pool of stopped hosts.
    pub warm_pool: crate::warm_pool::WarmPoolConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:9000".into(),
            prefix: "/scaler".into(),
            data_dir: PathBuf::from("jitsi-scaler-data"),
            body_limit: 4096,
            instance_type: "video-sip-gateway".into(),
            settings: SettingsConfig::default(),
            policy: PolicyConfig::default(),
            jicofo: JicofoConfig::default(),
            lifecycle: LifecycleConfig::default(),
            auth: crate::auth::AuthConfig::default(),
            store: StoreConfig::default(),
            log: LogConfig::default(),
            metrics: crate::ops::MetricsConfig::default(),
            audit: crate::ops::AuditConfig::default(),
            capacity: crate::capacity::CapacitySection::default(),
            server: crate::http_server::ServerConfig::default(),
            warm_pool: crate::warm_pool::WarmPoolConfig::default(),
        }
    }
}

/// Initial values of the three API settings (`[settings]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SettingsConfig {
    /// Minimum available gateways (1..=max): the floor in target mode, the spare count in fixed.
    pub min: u32,
    /// Maximum total gateways (1..=1000).
    pub max: u32,
    /// Most launches per tick (1..=100).
    pub bulk_max: u32,
}

impl Default for SettingsConfig {
    fn default() -> Self {
        let s = policy::Settings::default();
        SettingsConfig {
            min: s.min_available,
            max: s.max_total,
            bulk_max: s.bulk_max,
        }
    }
}

impl SettingsConfig {
    /// As policy settings.
    pub fn to_settings(&self) -> policy::Settings {
        policy::Settings {
            min_available: self.min,
            max_total: self.max,
            bulk_max: self.bulk_max,
        }
    }
}

/// Control loop timing (`[policy]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Interval of the scale-up loop (also the Jicofo poll interval).
    #[serde(with = "crate::duration")]
    pub tick: Duration,
    /// A launch not seen in Jicofo by then is `launch_failed` and deleted.
    #[serde(with = "crate::duration")]
    pub boot_timeout: Duration,
    /// A Jicofo reading older than this counts as missing (default: 3 ticks).
    #[serde(with = "crate::duration")]
    pub stats_max_age: Duration,
    /// An approved host stops counting as pending removal after this long.
    #[serde(with = "crate::duration")]
    pub pending_ttl: Duration,
    /// Wait for a `drained` confirmation before deleting a host whose remove-me request does
    /// not say how it drains (our agent says `"drain": "confirm"`; the legacy script says
    /// nothing and is deleted at once with the default `false`).
    pub drain_confirm: bool,
    /// Delete a draining host after this long even without confirmation.
    #[serde(with = "crate::duration")]
    pub drain_timeout: Duration,
    /// How long finished entries stay in the ledger (for status and repeated requests).
    #[serde(with = "crate::duration")]
    pub retention: Duration,
    /// After a host has drained or been deleted, assume Jicofo stopped counting it after this.
    #[serde(with = "crate::duration")]
    pub stop_grace: Duration,
    /// Interval of reconciliation with the lifecycle manager's host list.
    #[serde(with = "crate::duration")]
    pub reconcile_interval: Duration,
    /// A sidecar report older than this is stale (the host is no longer a spare); a sidecar
    /// host told to shut down and silent this long is taken as gone and deleted.
    #[serde(with = "crate::duration")]
    pub sidecar_ttl: Duration,
    /// How often a sidecar reports (its `SHUTDOWN_POLLING_INTERVAL`): a host is told to shut
    /// down only on a report younger than this and a half.
    #[serde(with = "crate::duration")]
    pub sidecar_interval: Duration,
    /// The sidecar `group`s this scaler manages (empty: any). Reports of other groups (e.g.
    /// recording Jibris pointed here by mistake) are answered "no command" and not recorded.
    pub sidecar_groups: Vec<String>,
    /// How many recent decisions `/scaler/status` keeps.
    pub recent_decisions: usize,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        let t = policy::Timing::default();
        PolicyConfig {
            tick: Duration::from_secs(15),
            boot_timeout: Duration::from_millis(t.boot_timeout_ms),
            stats_max_age: Duration::from_millis(t.stats_max_age_ms),
            pending_ttl: Duration::from_millis(t.pending_ttl_ms),
            // The drain mode is per host: our agent asks to confirm in its request and waits; a
            // client that does not say (the legacy script, which never confirms) is deleted
            // right after approval, as the legacy scaler did.
            drain_confirm: false,
            // Longer than the agent's drain deadline (3 h), so a long call is never cut.
            drain_timeout: Duration::from_secs(3 * 3600 + 15 * 60),
            retention: Duration::from_millis(t.retention_ms),
            stop_grace: Duration::from_millis(t.stop_grace_ms),
            reconcile_interval: Duration::from_secs(300),
            sidecar_ttl: Duration::from_millis(t.sidecar_ttl_ms),
            sidecar_interval: Duration::from_millis(t.sidecar_interval_ms),
            sidecar_groups: Vec::new(),
            recent_decisions: 200,
        }
    }
}

impl PolicyConfig {
    /// As policy timing.
    pub fn to_timing(&self) -> policy::Timing {
        use crate::duration::millis;
        policy::Timing {
            boot_timeout_ms: millis(self.boot_timeout),
            stats_max_age_ms: millis(self.stats_max_age),
            pending_ttl_ms: millis(self.pending_ttl),
            drain_timeout_ms: millis(self.drain_timeout),
            drain_confirm: self.drain_confirm,
            retention_ms: millis(self.retention),
            stop_grace_ms: millis(self.stop_grace),
            sidecar_ttl_ms: millis(self.sidecar_ttl),
            sidecar_interval_ms: millis(self.sidecar_interval),
        }
    }
}

/// Jicofo statistics sources (`[jicofo]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JicofoConfig {
    /// Which brewery to read: `sip_jibri_detector`, `jibri_detector` or `jigasi_detector`.
    pub component: String,
    /// Timeout of one stats request.
    #[serde(with = "crate::duration")]
    pub timeout: Duration,
    /// The shards; every gateway joins all of them.
    pub shards: Vec<ShardConfig>,
}

impl Default for JicofoConfig {
    fn default() -> Self {
        JicofoConfig {
            component: "sip_jibri_detector".into(),
            timeout: Duration::from_secs(5),
            shards: vec![ShardConfig {
                name: "default".into(),
                url: "http://127.0.0.1:8888/stats".into(),
            }],
        }
    }
}

/// One shard's Jicofo.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShardConfig {
    /// Shard name (for status and logs).
    pub name: String,
    /// URL of its Jicofo `/stats`.
    pub url: String,
}

/// The store (`[store]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `embedded` (a file in `data_dir`, one replica) or `redis` (shared by several replicas).
    pub backend: StoreBackend,
    /// Redis or Valkey URL (`redis://[:password@]host:port/db`); a secret if it has a password.
    pub redis_url: String,
    /// Prefix of every Redis key, so several pools can share one Redis.
    pub key_prefix: String,
    /// Timeout of one Redis operation (and of connecting).
    #[serde(with = "crate::duration")]
    pub timeout: Duration,
    /// Lifetime of the leader lease; renewed every third of it. A dead leader is replaced
    /// within this plus one tick.
    #[serde(with = "crate::duration")]
    pub lease_ttl: Duration,
    /// After a shared store lost its data (a Redis restarted without persistence), idle
    /// removals wait this long while every replica offers its copy, so the newest state any
    /// replica held is restored before a budget is spent. Longer than every replica's
    /// `policy.tick` (each replica reads the store every tick).
    #[serde(with = "crate::duration")]
    pub recovery_window: Duration,
    /// This replica's name in the lease (default: host name and process id).
    pub replica: Option<String>,
    /// Redis Sentinels (`host:port`) that name the primary; empty: `redis_url` is the primary.
    pub sentinels: Vec<String>,
    /// The name the Sentinels monitor the primary under (`sentinel monitor <name> ...`).
    pub sentinel_master: String,
    /// User name for the Sentinels (Redis 6 ACL), if they require one.
    pub sentinel_username: Option<String>,
    /// Password of the Sentinels (`requirepass` in sentinel.conf); a secret.
    pub sentinel_password: Option<String>,
    /// Replicas that must confirm a write (`WAIT`) before it is answered as done; default 1
    /// with `sentinels`, else 0 (answered once the primary has it).
    pub min_replicas_acked: Option<u32>,
    /// How long a write waits for those confirmations before the store-down rule answers.
    #[serde(with = "crate::duration")]
    pub ack_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Embedded,
            redis_url: "redis://127.0.0.1:6379/0".into(),
            key_prefix: "jitsi-scaler".into(),
            timeout: Duration::from_secs(2),
            lease_ttl: Duration::from_secs(15),
            recovery_window: Duration::from_secs(35),
            replica: None,
            sentinels: Vec::new(),
            sentinel_master: "mymaster".into(),
            sentinel_username: None,
            sentinel_password: None,
            min_replicas_acked: None,
            ack_timeout: Duration::from_secs(1),
        }
    }
}

impl StoreConfig {
    /// Replicas that must confirm a write: `min_replicas_acked`, else 1 with Sentinels, else 0.
    pub fn replicas_acked(&self) -> u32 {
        self.min_replicas_acked
            .unwrap_or(if self.sentinels.is_empty() { 0 } else { 1 })
    }

    /// The problems of the Sentinel and acknowledgement keys.
    fn sentinel_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for s in &self.sentinels {
            if parse_host_port(s).is_none() {
                p.push(format!("store.sentinels: {s:?} is not host:port"));
            }
        }
        if !self.sentinels.is_empty() {
            if self.backend != StoreBackend::Redis {
                p.push("store.sentinels: only with backend = \"redis\"".into());
            }
            if self.sentinel_master.is_empty() || self.sentinel_master.contains(char::is_whitespace)
            {
                p.push("store.sentinel_master: must be non-empty without spaces".into());
            }
        }
        if self.replicas_acked() > 0 && self.ack_timeout.is_zero() {
            p.push("store.ack_timeout: must be more than 0".into());
        }
        if self.replicas_acked() > 16 {
            p.push("store.min_replicas_acked: at most 16".into());
        }
        p
    }
}

/// `host:port` (a name, an IPv4 address or a bracketed IPv6 address) split in two.
pub fn parse_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port > 0 && !host.contains(char::is_whitespace))
        .then(|| (host.to_string(), port))
}

/// The store backends.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// `state.json` in `data_dir`.
    Embedded,
    /// Redis or Valkey.
    Redis,
}

/// Logging (`[log]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Filter in `RUST_LOG` syntax (the `RUST_LOG` variable wins when set).
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

/// A configuration that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML (file and overrides) does not parse or does not fit the schema.
    #[error("invalid config{origin}: {message}")]
    Parse {
        /// Where it came from.
        origin: String,
        /// The parser's message (names the key).
        message: String,
    },
    /// An environment override has a name that is not a config key.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// Why.
        message: String,
    },
    /// The values parse but are not usable.
    #[error("invalid config:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

impl Config {
    /// Loads defaults, then `file` (if any), then the `JITSI_SCALER_*` variables in `env`.
    pub fn load(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let text = match file {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?,
            None => String::new(),
        };
        let origin = file
            .map(|p| format!(" in {}", p.display()))
            .unwrap_or_default();
        Self::from_toml(&text, &origin, env)
    }

    /// Parses TOML text (empty = defaults) and applies environment overrides.
    pub fn from_toml(
        text: &str,
        origin: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let parse_err = |e: toml::de::Error| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        };
        let mut table: toml::Table = toml::from_str(text).map_err(parse_err)?;
        // Catch schema errors in the file itself first, so the message points at its line.
        toml::from_str::<Config>(text).map_err(parse_err)?;
        let mut overridden = false;
        for (var, value) in env {
            let Some(path) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
            set_path(&mut table, &keys, parse_env_value(value)).map_err(|message| {
                ConfigError::Env {
                    var: var.clone(),
                    message,
                }
            })?;
            overridden = true;
        }
        if !overridden {
            return toml::from_str(text).map_err(parse_err);
        }
        let merged = toml::to_string(&table).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        toml::from_str(&merged).map_err(|e| ConfigError::Parse {
            origin: " (after JITSI_SCALER_* overrides)".into(),
            message: e.to_string(),
        })
    }

    /// Every problem that would stop `serve`, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = self.warm_pool.problems();
        if self.listen.parse::<SocketAddr>().is_err() {
            p.push(format!(
                "listen: {:?} is not an address like 127.0.0.1:9000",
                self.listen
            ));
        }
        if !self.prefix.starts_with('/') || self.prefix.ends_with('/') || self.prefix.contains("//")
        {
            p.push(format!(
                "prefix: {:?} must start with '/' and not end with '/' (e.g. /scaler)",
                self.prefix
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            p.push("data_dir: must not be empty".into());
        }
        if !(64..=1 << 20).contains(&self.body_limit) {
            p.push(format!(
                "body_limit: {} must be in 64..=1048576",
                self.body_limit
            ));
        }
        if self.instance_type.trim().is_empty() {
            p.push("instance_type: must not be empty".into());
        }
        // Target mode: the [capacity] section.
        p.extend(self.capacity.problems(self.settings.max));
        // HTTP server limits.
        p.extend(self.server.problems());
        for e in self.settings.to_settings().problems() {
            p.push(format!("settings.{}: {e}", e.setting.config_key()));
        }
        let pol = &self.policy;
        if pol.tick < Duration::from_millis(100) {
            p.push("policy.tick: must be at least 100ms".into());
        }
        if pol.stats_max_age < pol.tick {
            p.push("policy.stats_max_age: must be at least policy.tick".into());
        }
        for (key, d) in [
            ("policy.boot_timeout", pol.boot_timeout),
            ("policy.pending_ttl", pol.pending_ttl),
            ("policy.drain_timeout", pol.drain_timeout),
            ("policy.reconcile_interval", pol.reconcile_interval),
            ("policy.sidecar_ttl", pol.sidecar_ttl),
            ("policy.sidecar_interval", pol.sidecar_interval),
        ] {
            if d.is_zero() {
                p.push(format!("{key}: must be more than 0"));
            }
        }
        if !(1..=100_000).contains(&pol.recent_decisions) {
            p.push("policy.recent_decisions: must be in 1..=100000".into());
        }
        p.extend(self.metrics.problems()); // status page history: metrics.history_samples
        if !["sip_jibri_detector", "jibri_detector", "jigasi_detector"]
            .contains(&self.jicofo.component.as_str())
        {
            p.push(format!(
                "jicofo.component: {:?} is not one of sip_jibri_detector, jibri_detector, jigasi_detector",
                self.jicofo.component
            ));
        }
        if self.jicofo.timeout.is_zero() {
            p.push("jicofo.timeout: must be more than 0".into());
        }
        if self.jicofo.shards.is_empty() {
            p.push("jicofo.shards: at least one shard is needed".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for (n, s) in self.jicofo.shards.iter().enumerate() {
            if s.name.trim().is_empty() {
                p.push(format!("jicofo.shards[{n}].name: must not be empty"));
            } else if !names.insert(s.name.as_str()) {
                p.push(format!(
                    "jicofo.shards[{n}].name: {:?} is used twice",
                    s.name
                ));
            }
            if !is_http_url(&s.url) {
                p.push(format!(
                    "jicofo.shards[{n}].url: {:?} is not an http(s) URL",
                    s.url
                ));
            }
        }
        let lc = &self.lifecycle;
        if lc.name_prefix.is_empty()
            || !lc
                .name_prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            p.push(format!(
                "lifecycle.name_prefix: {:?} must be lower-case letters, digits and '-'",
                lc.name_prefix
            ));
        }
        match lc.backend {
            Backend::Foreman => {
                if lc.foreman.nodes.is_empty() {
                    p.push("lifecycle.foreman.nodes: at least one node URL is needed".into());
                }
                for (n, u) in lc.foreman.nodes.iter().enumerate() {
                    if !is_http_url(u) {
                        p.push(format!(
                            "lifecycle.foreman.nodes[{n}]: {u:?} is not an http(s) URL"
                        ));
                    }
                }
                if lc.foreman.token.is_some() && lc.foreman.token_file.is_some() {
                    p.push("lifecycle.foreman.token: set token or token_file, not both".into());
                }
                if let Some(f) = &lc.foreman.token_file
                    && std::fs::metadata(f).is_err()
                {
                    p.push(format!(
                        "lifecycle.foreman.token_file: {} cannot be read",
                        f.display()
                    ));
                }
                if lc.foreman.attempts == 0 {
                    p.push("lifecycle.foreman.attempts: must be at least 1".into());
                }
            }
            Backend::Command => match &lc.command.program {
                None => {
                    p.push("lifecycle.command.program: required with backend = \"command\"".into())
                }
                Some(prog) if std::fs::metadata(prog).is_err() => p.push(format!(
                    "lifecycle.command.program: {} does not exist",
                    prog.display()
                )),
                Some(_) => {}
            },
        }
        p.extend(self.auth.validate());
        let st = &self.store;
        if st.backend == StoreBackend::Redis && redis::Client::open(st.redis_url.as_str()).is_err()
        {
            p.push("store.redis_url: not a redis:// or rediss:// URL".into());
        }
        if st.key_prefix.is_empty() || st.key_prefix.contains(char::is_whitespace) {
            p.push("store.key_prefix: must be non-empty without spaces".into());
        }
        if st.timeout.is_zero() {
            p.push("store.timeout: must be more than 0".into());
        }
        if st.lease_ttl < Duration::from_millis(300) {
            p.push("store.lease_ttl: must be at least 300ms".into());
        }
        if st.recovery_window <= pol.tick {
            p.push("store.recovery_window: must be longer than policy.tick".into());
        }
        p.extend(st.sentinel_problems());
        p.extend(self.audit.problems());
        if !["text", "json"].contains(&self.log.format.as_str()) {
            p.push(format!(
                "log.format: {:?} must be text or json",
                self.log.format
            ));
        }
        p
    }

    /// Settings that work but are probably not intended (logged at start, shown by `config check`).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = self.auth.warnings();
        if self.lifecycle.backend == Backend::Foreman
            && self.lifecycle.foreman.token.is_none()
            && self.lifecycle.foreman.token_file.is_none()
        {
            w.push("lifecycle.foreman: no token or token_file: calls carry no credentials".into());
        }
        w
    }

    /// Fails with every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = self.problems();
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(p))
        }
    }

    /// The effective config as TOML, with secrets replaced by `***`.
    pub fn masked_toml(&self) -> String {
        let mut c = self.clone();
        if c.lifecycle.foreman.token.is_some() {
            c.lifecycle.foreman.token = Some("***".into());
        }
        c.store.redis_url = mask_url_password(&c.store.redis_url);
        if c.store.sentinel_password.is_some() {
            c.store.sentinel_password = Some("***".into());
        }
        toml::to_string_pretty(&c).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }

    /// This replica's name in the lease: `store.replica`, else host name and process id.
    pub fn replica_name(&self) -> String {
        if let Some(name) = &self.store.replica {
            return name.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "replica".into());
        format!("{host}-{}", std::process::id())
    }

    /// The address to listen on (valid after [`Config::validate`]).
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            ConfigError::Invalid(vec![format!("listen: {:?} is not an address", self.listen)])
        })
    }
}

/// `redis://user:secret@host` -> `redis://user:***@host`.
fn mask_url_password(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

fn is_http_url(u: &str) -> bool {
    (u.starts_with("http://") || u.starts_with("https://")) && reqwest::Url::parse(u).is_ok()
}

/// Reads an override as a TOML value when it is one (numbers, booleans, arrays, inline
/// tables), else as a plain string, so `JITSI_SCALER_SETTINGS__MIN=3` is a number and
/// `JITSI_SCALER_LISTEN=0.0.0.0:9000` a string.
fn parse_env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) -> Result<(), String> {
    let Some((last, parents)) = keys.split_last() else {
        return Err("empty key".into());
    };
    if keys.iter().any(|k| k.is_empty()) {
        return Err(
            "empty key segment (use __ between sections, e.g. JITSI_SCALER_POLICY__TICK)".into(),
        );
    }
    let mut cur = table;
    for k in parents {
        let entry = cur
            .entry(k.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| format!("{k} is not a section"))?;
    }
    cur.insert(last.clone(), value);
    Ok(())
}

/// Test helper: fails unless each of `keys` is named in `problems` (a config check's output).
#[cfg(test)]
pub(crate) fn assert_named(problems: &[String], keys: &[&str]) {
    let p = problems.join("\n");
    for key in keys {
        assert!(p.contains(key), "{key} missing in {p}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_samples_is_a_checked_config_key() {
        let load = |toml: &str| Config::from_toml(toml, "", &BTreeMap::new());
        let default = load("").expect("defaults");
        assert_eq!(
            default.metrics.history_samples,
            crate::ops::history::DEFAULT_SAMPLES
        );
        let c = load("[metrics]\nhistory_samples = 720\n").expect("parses");
        assert_eq!(c.metrics.history_samples, 720);
        assert!(c.problems().is_empty());
        for bad in [0, 9, crate::ops::history::MAX_SAMPLES + 1] {
            let c = load(&format!("[metrics]\nhistory_samples = {bad}\n")).expect("parses");
            let p = c.problems();
            assert!(
                p.iter().any(|p| p.starts_with("metrics.history_samples:")),
                "{bad}: {p:?}"
            );
        }
        let env = BTreeMap::from([(
            "JITSI_SCALER_METRICS__HISTORY_SAMPLES".to_string(),
            "100".to_string(),
        )]);
        let c = Config::from_toml("", "", &env).expect("env override");
        assert_eq!(c.metrics.history_samples, 100);
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid_and_match_the_spec() {
        let c = Config::from_toml("", "", &BTreeMap::new()).expect("defaults parse");
        assert_eq!(c, Config::default());
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        assert_eq!(c.listen, "127.0.0.1:9000");
        assert_eq!(c.prefix, "/scaler");
        assert_eq!(c.jicofo.shards[0].url, "http://127.0.0.1:8888/stats");
    }

    #[test]
    fn env_overrides_file_and_typos_name_the_key() {
        let text = "[settings]\nmin = 4\n[policy]\ntick = \"10s\"\n";
        let c = Config::from_toml(
            text,
            "",
            &env(&[
                ("JITSI_SCALER_SETTINGS__MAX", "12"),
                ("JITSI_SCALER_LISTEN", "0.0.0.0:9100"),
                ("JITSI_SCALER_POLICY__DRAIN_CONFIRM", "true"),
                ("OTHER", "x"),
            ]),
        )
        .expect("parses");
        assert_eq!((c.settings.min, c.settings.max), (4, 12));
        assert_eq!(c.policy.tick, Duration::from_secs(10));
        assert_eq!(c.listen, "0.0.0.0:9100");
        assert!(c.policy.drain_confirm);
        let e = Config::from_toml("[settings]\nmni = 3\n", "", &BTreeMap::new()).expect_err("typo");
        assert!(e.to_string().contains("mni"), "{e}");
        let e = Config::from_toml("", "", &env(&[("JITSI_SCALER_SETTINGS__MNI", "3")]))
            .expect_err("typo");
        assert!(e.to_string().contains("mni"), "{e}");
        let e = Config::from_toml("[policy]\ntick = \"soon\"\n", "", &BTreeMap::new())
            .expect_err("bad duration");
        assert!(e.to_string().contains("tick"), "{e}");
    }

    #[test]
    fn problems_name_their_keys() {
        let mut c = Config::default();
        c.settings.min = 0;
        c.prefix = "scaler/".into();
        c.jicofo.shards.push(ShardConfig {
            name: "default".into(),
            url: "ftp://x".into(),
        });
        crate::config::assert_named(
            &c.problems(),
            &[
                "settings.min",
                "prefix",
                "jicofo.shards[1].name",
                "jicofo.shards[1].url",
            ],
        );
    }

    #[test]
    fn masked_config_hides_the_token() {
        let mut c = Config::default();
        c.lifecycle.foreman.token = Some("s3cret".into());
        c.store.redis_url = "redis://:hunter2@127.0.0.1:6379/0".into();
        let t = c.masked_toml();
        assert!(!t.contains("s3cret") && t.contains("***"));
        assert!(!t.contains("hunter2"), "{t}");
    }

    #[test]
    fn sentinel_keys_default_to_confirmed_writes_and_are_checked() {
        let mut c = Config::default();
        c.store.backend = StoreBackend::Redis;
        assert_eq!(c.store.replicas_acked(), 0, "plain Redis answers as before");
        c.store.sentinels = vec!["127.0.0.1:26379".into(), "[::1]:26380".into()];
        c.store.sentinel_password = Some("s3ntinel".into());
        assert_eq!(c.store.replicas_acked(), 1);
        assert!(c.problems().iter().all(|p| !p.starts_with("store.")));
        assert!(!c.masked_toml().contains("s3ntinel"));
        c.store.min_replicas_acked = Some(0);
        assert_eq!(c.store.replicas_acked(), 0);
        c.store.sentinels.push("no-port".into());
        assert!(c.problems().iter().any(|p| p.contains("no-port")));
        assert_eq!(
            parse_host_port("[::1]:26380"),
            Some(("::1".to_string(), 26380))
        );
    }
}
