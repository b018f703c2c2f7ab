//! `jitsi-scaler agent`: the scale-down agent on every gateway.
//!
//! It watches the local Jibri ([`jibri`]), decides in pure code when to ask for
//! removal ([`machine`]), asks the scaler ([`scaler`]), and on `accepted` drains
//! the gateway (Jibri graceful shutdown) before confirming with `drained`.
//! Nothing is drained without an `accepted`. See `docs/agent.md`.

pub mod jibri;
pub mod machine;
pub mod scaler;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use self::jibri::{JibriClient, Probe};
use self::machine::{Cause, Machine, Millis, Reason, Thresholds, backoff, jitter};
use self::scaler::{Answer, ScalerClient, ScalerEndpoint, Signer};
use crate::auth::SigningKey;

/// Spread of the random jitter on every backoff: +/- 20 %.
const JITTER: f64 = 0.2;
/// Consecutive refused health checks that prove Jibri has exited.
const STOPPED_CHECKS: u32 = 2;
/// How often a long drain logs its progress.
const DRAIN_PROGRESS_EVERY: Duration = Duration::from_secs(300);

/// Errors of the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration is unusable.
    #[error("agent configuration: {0}")]
    Config(String),
    /// A file could not be read.
    #[error("{path}: {msg}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
    /// The signing key is unusable.
    #[error("signing key: {0}")]
    Key(String),
    /// The instance key could not be detected.
    #[error("cannot detect the instance key: {0} (set `instance` in the config)")]
    Instance(String),
    /// An HTTP client could not be built.
    #[error("{0}")]
    Http(String),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(String),
}

/// Arguments of `jitsi-scaler agent`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AgentArgs {
    /// TOML config file (see docs/agent.md); every key has a default except scaler_url.
    #[arg(long, short, env = "JITSI_SCALER_AGENT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Base URL of the scaler, e.g. https://meet.example.org/scaler (overrides the config).
    #[arg(long, value_name = "URL")]
    pub scaler_url: Option<String>,
    /// Instance key (host name or IP) sent as `host` (overrides the config and detection).
    #[arg(long, value_name = "HOST")]
    pub instance: Option<String>,
    /// Check once: read Jibri, print the reading and what it would ask, exit. Sends nothing.
    #[arg(long)]
    pub once: bool,
}

/// The agent's configuration (`jitsi-scaler agent --config FILE`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Base URL of the scaler API, e.g. `https://meet.example.org/scaler`. Required.
    pub scaler_url: String,
    /// Instance key sent as `host`; default: the IP of the interface that routes to the scaler.
    pub instance: Option<String>,
    /// Path of the remove-me request under `scaler_url`.
    pub remove_path: String,
    /// Method of the remove-me request: `POST` (for `/remove`) or `DELETE` (for `/instance`).
    pub remove_method: String,
    /// Wire spelling of the unhealthy reason: `unhealthy`, or the legacy script's `unhealty`.
    pub unhealthy_reason: String,
    /// Path of the drain confirmation under `scaler_url`.
    pub drained_path: String,
    /// Send `POST {scaler_url}{drained_path}` once Jibri has stopped.
    pub confirm_drained: bool,
    /// Path of the start announcement under `scaler_url` (`POST {"host": ...}`, so the scaler
    /// knows at once that this host runs); empty: do not announce (a legacy scaler).
    pub hello_path: String,
    /// Jibri's health endpoint.
    pub jibri_health_url: String,
    /// Jibri's graceful-shutdown endpoint.
    pub jibri_shutdown_url: String,
    /// Timeout of one Jibri request.
    #[serde(with = "crate::duration")]
    pub jibri_timeout: Duration,
    /// Time between two health checks.
    #[serde(with = "crate::duration")]
    pub check_interval: Duration,
    /// Ask `idle` after Jibri has been IDLE continuously for this long.
    #[serde(with = "crate::duration")]
    pub idle_time: Duration,
    /// Ask `expired` when idle and the instance is older than this (+/- 10 % per instance).
    #[serde(with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub max_lifetime: Option<Duration>,
    /// Ask `unhealthy` after this many consecutive UNHEALTHY checks.
    pub unhealthy_checks: u32,
    /// Ask `unhealthy` after Jibri has given no usable answer for this long.
    #[serde(with = "crate::duration")]
    pub unreachable_time: Duration,
    /// Wait after a `keep` before asking again (+/- 20 % jitter).
    #[serde(with = "crate::duration")]
    pub keep_backoff: Duration,
    /// First wait after a failed request; doubles per failure (+/- 20 % jitter).
    #[serde(with = "crate::duration")]
    pub retry_backoff: Duration,
    /// Longest wait between failed requests.
    #[serde(with = "crate::duration")]
    pub retry_backoff_max: Duration,
    /// Connect timeout of scaler requests.
    #[serde(with = "crate::duration")]
    pub connect_timeout: Duration,
    /// Whole-request timeout of scaler requests.
    #[serde(with = "crate::duration")]
    pub request_timeout: Duration,
    /// Longest wait for Jibri to stop after graceful shutdown (a call may be running).
    #[serde(with = "crate::duration")]
    pub drain_deadline: Duration,
    /// Attempts to deliver the `drained` confirmation.
    pub drained_attempts: u32,
    /// Command run (`sh -c`) after the drain, e.g. `systemctl poweroff`.
    pub on_accepted: Option<String>,
    /// Longest run time of `on_accepted` before it is killed.
    #[serde(with = "crate::duration")]
    pub on_accepted_timeout: Duration,
    /// Private key (PEM) that signs the ASAP token; default from `sidecar_env_file`.
    pub key_file: Option<PathBuf>,
    /// Token header `kid`; default from `sidecar_env_file`, else none.
    pub kid: Option<String>,
    /// Token `sub`; default: the instance key.
    pub sub: Option<String>,
    /// The component sidecar's env file (`ASAP_SIGNING_KEY_FILE`, `ASAP_JWT_KID`).
    pub sidecar_env_file: Option<PathBuf>,
    /// Token lifetime.
    #[serde(with = "crate::duration")]
    pub token_ttl: Duration,
    /// Extra CA certificate(s) (PEM) trusted for the scaler, besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Log filter when `RUST_LOG` is not set.
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: String,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            scaler_url: String::new(),
            instance: None,
            remove_path: "/remove".into(),
            remove_method: "POST".into(),
            unhealthy_reason: "unhealthy".into(),
            drained_path: "/drained".into(),
            confirm_drained: true,
            hello_path: "/hello".into(),
            jibri_health_url: "http://127.0.0.1:2222/jibri/api/v1.0/health".into(),
            jibri_shutdown_url: "http://127.0.0.1:3333/jibri/api/internal/v1.0/gracefulShutdown"
                .into(),
            jibri_timeout: Duration::from_secs(3),
            check_interval: Duration::from_secs(5),
            idle_time: Duration::from_secs(600),
            max_lifetime: None,
            unhealthy_checks: 3,
            unreachable_time: Duration::from_secs(120),
            keep_backoff: Duration::from_secs(60),
            retry_backoff: Duration::from_secs(5),
            retry_backoff_max: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            drain_deadline: Duration::from_secs(3 * 3600),
            drained_attempts: 10,
            on_accepted: None,
            on_accepted_timeout: Duration::from_secs(120),
            key_file: None,
            kid: None,
            sub: None,
            sidecar_env_file: None,
            token_ttl: Duration::from_secs(60),
            ca_file: None,
            log_level: "info".into(),
            log_format: "text".into(),
        }
    }
}

impl AgentConfig {
    /// Parses TOML text (unknown keys are errors).
    pub fn from_toml(text: &str) -> Result<Self, AgentError> {
        toml::from_str(text).map_err(|e| AgentError::Config(e.to_string()))
    }

    /// Reads the file (if any) and applies the CLI overrides.
    pub fn load(args: &AgentArgs) -> Result<Self, AgentError> {
        let mut cfg = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| AgentError::File {
                    path: path.clone(),
                    msg: format!("not readable: {e}"),
                })?;
                Self::from_toml(&text).map_err(|e| AgentError::File {
                    path: path.clone(),
                    msg: e.to_string(),
                })?
            }
            None => AgentConfig::default(),
        };
        if let Some(url) = &args.scaler_url {
            cfg.scaler_url.clone_from(url);
        }
        if let Some(instance) = &args.instance {
            cfg.instance = Some(instance.clone());
        }
        Ok(cfg)
    }

    /// Every problem of the config, each prefixed with its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.scaler_url.trim().is_empty() {
            p.push("scaler_url: required (e.g. https://meet.example.org/scaler)".into());
        } else {
            let hello = (!self.hello_path.trim().is_empty()).then_some(&self.hello_path);
            for path in [&self.remove_path, &self.drained_path]
                .into_iter()
                .chain(hello)
            {
                if let Err(e) = scaler::join_url(&self.scaler_url, path) {
                    p.push(format!("scaler_url: {e}"));
                }
            }
        }
        if !["POST", "DELETE"].contains(&self.remove_method.to_ascii_uppercase().as_str()) {
            p.push(format!(
                "remove_method: {:?} is not POST or DELETE",
                self.remove_method
            ));
        }
        for (key, url) in [
            ("jibri_health_url", &self.jibri_health_url),
            ("jibri_shutdown_url", &self.jibri_shutdown_url),
        ] {
            if let Err(e) = reqwest::Url::parse(url) {
                p.push(format!("{key}: {url:?}: {e}"));
            }
        }
        if !["unhealthy", "unhealty"].contains(&self.unhealthy_reason.as_str()) {
            p.push(format!(
                "unhealthy_reason: {:?} is not unhealthy or unhealty",
                self.unhealthy_reason
            ));
        }
        if let Some(i) = &self.instance
            && !crate::hostname::is_valid(i)
        {
            p.push(format!("instance: {i:?} is not a host name or IP address"));
        }
        let durations = [
            ("check_interval", self.check_interval),
            ("jibri_timeout", self.jibri_timeout),
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
            ("retry_backoff", self.retry_backoff),
            ("token_ttl", self.token_ttl),
        ];
        p.extend(crate::duration::zero_problems(&durations));
        if self.retry_backoff_max < self.retry_backoff {
            p.push("retry_backoff_max: must be at least retry_backoff".into());
        }
        if self.unhealthy_checks == 0 {
            p.push("unhealthy_checks: must be at least 1".into());
        }
        if self.drained_attempts == 0 {
            p.push("drained_attempts: must be at least 1".into());
        }
        if self.max_lifetime.is_some_and(|d| d.is_zero()) {
            p.push("max_lifetime: must be more than 0 (or left out)".into());
        }
        if self
            .on_accepted
            .as_deref()
            .is_some_and(|c| c.trim().is_empty())
        {
            p.push("on_accepted: empty command (leave it out instead)".into());
        }
        if !["text", "json"].contains(&self.log_format.as_str()) {
            p.push(format!(
                "log_format: {:?} is not text or json",
                self.log_format
            ));
        }
        p
    }

    fn thresholds(&self) -> Thresholds {
        Thresholds {
            idle_time: self.idle_time,
            max_lifetime: self.max_lifetime,
            unhealthy_checks: self.unhealthy_checks,
            unreachable_time: self.unreachable_time,
        }
    }
}

/// `crate::duration` for `Option<Duration>` (a missing key is `None` through `default`).
mod optional_duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    /// Writes `Some` as humantime text (`None` is skipped by the field attribute).
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => crate::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    /// Reads a duration as `crate::duration` does.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        crate::duration::deserialize(d).map(Some)
    }
}

/// Reads `KEY=value` lines (optional `export`, quotes, `#` comments) of an env file.
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (k, v) = line.split_once('=')?;
            let v = v.trim();
            let v = [('"', '"'), ('\'', '\'')]
                .iter()
                .find_map(|(a, b)| v.strip_prefix(*a).and_then(|x| x.strip_suffix(*b)))
                .unwrap_or(v);
            Some((k.trim().to_owned(), v.to_owned()))
        })
        .collect()
}

/// The key file and kid: the config's own, else the sidecar env file's.
fn key_source(cfg: &AgentConfig) -> Result<(Option<PathBuf>, Option<String>), AgentError> {
    let (mut key_file, mut kid) = (None, None);
    if let Some(path) = &cfg.sidecar_env_file {
        let text = std::fs::read_to_string(path).map_err(|e| AgentError::File {
            path: path.clone(),
            msg: format!("not readable: {e}"),
        })?;
        for (k, v) in parse_env_file(&text) {
            match k.as_str() {
                "ASAP_SIGNING_KEY_FILE" if !v.is_empty() => key_file = Some(PathBuf::from(v)),
                "ASAP_JWT_KID" if !v.is_empty() => kid = Some(v),
                _ => {}
            }
        }
        if key_file.is_none() && cfg.key_file.is_none() {
            return Err(AgentError::File {
                path: path.clone(),
                msg: "no ASAP_SIGNING_KEY_FILE in it (or set key_file)".into(),
            });
        }
    }
    Ok((cfg.key_file.clone().or(key_file), cfg.kid.clone().or(kid)))
}

/// Loads the signing key; `None` when no key is configured (tokens are then not sent).
pub fn load_signer(cfg: &AgentConfig, instance: &str) -> Result<Option<Signer>, AgentError> {
    let (key_file, kid) = key_source(cfg)?;
    let Some(path) = key_file else {
        return Ok(None);
    };
    let pem = std::fs::read(&path).map_err(|e| AgentError::File {
        path: path.clone(),
        msg: format!("not readable: {e}"),
    })?;
    let key = SigningKey::from_pem(&pem)
        .map_err(|e| AgentError::Key(format!("{}: {e}", path.display())))?;
    let sub = cfg.sub.clone().unwrap_or_else(|| instance.to_owned());
    let signer = Signer::new(key, kid, &sub, instance, cfg.token_ttl);
    // Sign one now so a bad key fails at start, not at the first ask.
    signer
        .token_at(SystemTime::now())
        .map_err(|e| AgentError::Key(e.to_string()))?;
    Ok(Some(signer))
}

/// The IP of the local interface that routes to `url`'s host (no packet is sent).
pub async fn detect_instance(url: &str) -> Result<IpAddr, AgentError> {
    let err = |m: String| AgentError::Instance(m);
    let parsed = reqwest::Url::parse(url).map_err(|e| err(format!("scaler_url: {e}")))?;
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| err("scaler_url has no port".into()))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| err("scaler_url has no host".into()))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let targets: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| err(format!("cannot resolve {bare}: {e}")))?
            .collect(),
    };
    let mut last = String::from("no address");
    for target in targets {
        let bind: SocketAddr = if target.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        // connect() on UDP only picks the route and source address.
        let local = std::net::UdpSocket::bind(bind)
            .and_then(|s| s.connect(target).and_then(|()| s.local_addr()));
        match local {
            Ok(a) if !a.ip().is_unspecified() => return Ok(a.ip().to_canonical()),
            Ok(_) => last = format!("no route to {target}"),
            Err(e) => last = format!("no route to {target}: {e}"),
        }
    }
    Err(err(last))
}

/// How the agent run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted, drained (or the deadline passed), confirmed: the agent is done.
    Drained,
    /// Stopped by a signal (while watching, or during a drain without confirming).
    Stopped,
}

/// Milliseconds since the instance started: boot time from `/proc/uptime`, so a
/// restarted agent still knows the instance's age.
#[derive(Debug, Clone, Copy)]
struct Clock {
    start: Instant,
    offset_ms: Millis,
}

impl Clock {
    fn new() -> Self {
        let offset_ms = std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
            .map(|s| (s * 1000.0) as Millis)
            .unwrap_or(0);
        Clock {
            start: Instant::now(),
            offset_ms,
        }
    }

    fn now(&self) -> Millis {
        self.offset_ms
            .saturating_add(u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}

fn random_unit() -> f64 {
    rand::random::<f64>()
}

fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

/// Everything the loop needs, built once at start.
struct Agent {
    cfg: AgentConfig,
    instance: String,
    jibri: JibriClient,
    scaler: ScalerClient,
    clock: Clock,
}

impl Agent {
    async fn build(cfg: AgentConfig) -> Result<Self, AgentError> {
        let problems = cfg.problems();
        if !problems.is_empty() {
            return Err(AgentError::Config(problems.join("; ")));
        }
        let instance = match &cfg.instance {
            Some(i) => i.trim().to_owned(),
            None => detect_instance(&cfg.scaler_url).await?.to_string(),
        };
        let signer = load_signer(&cfg, &instance)?;
        let extra_ca_pem = match &cfg.ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| AgentError::File {
                path: path.clone(),
                msg: format!("not readable: {e}"),
            })?),
            None => None,
        };
        let has_token = signer.is_some();
        let scaler = ScalerClient::new(
            &ScalerEndpoint {
                base_url: cfg.scaler_url.clone(),
                remove_path: cfg.remove_path.clone(),
                remove_method: cfg.remove_method.clone(),
                drained_path: cfg.drained_path.clone(),
                hello_path: cfg.hello_path.clone(),
                unhealthy_reason: cfg.unhealthy_reason.clone(),
                connect_timeout: cfg.connect_timeout,
                request_timeout: cfg.request_timeout,
                extra_ca_pem,
            },
            signer,
        )?
        // Drain mode per host: the scaler decides per host whether to wait for `drained`.
        .confirming_drain(cfg.confirm_drained);
        let jibri = JibriClient::new(
            &cfg.jibri_health_url,
            &cfg.jibri_shutdown_url,
            cfg.jibri_timeout,
        )?;
        info!(
            instance = %instance,
            detected = cfg.instance.is_none(),
            remove = %scaler.remove_target(),
            token = has_token,
            "agent starting"
        );
        if !has_token {
            warn!(
                "no key_file or sidecar_env_file: requests carry no token \
                 (only a scaler with auth.mode = \"none\" will accept them)"
            );
        }
        Ok(Agent {
            cfg,
            instance,
            jibri,
            scaler,
            clock: Clock::new(),
        })
    }

    /// Sleeps `d` unless shut down first; returns false on shutdown.
    async fn sleep(d: Duration, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            () = shutdown.cancelled() => false,
        }
    }

    async fn watch(&self, shutdown: &CancellationToken) -> Outcome {
        let mut machine = Machine::new(&self.cfg.thresholds(), &self.instance);
        if let Some(l) = machine.lifetime() {
            info!(
                lifetime_s = l.as_secs(),
                "instance lifetime (jittered from max_lifetime)"
            );
        }
        let mut failures: u32 = 0;
        let mut last_shown: Option<Probe> = None;
        let mut hello_pending = self.scaler.announces();
        loop {
            if hello_pending {
                hello_pending = !self.hello().await;
            }
            let probe = self.jibri.health().await;
            if last_shown.as_ref() != Some(&probe) {
                info!(jibri = %probe, "jibri state");
                last_shown = Some(probe.clone());
            }
            let now = self.clock.now();
            if let Some(cause) = machine.observe(probe.reading(), now) {
                match self.ask(&mut machine, cause, &mut failures).await {
                    Some(Answer::Accepted) => return self.drain(cause.reason(), shutdown).await,
                    Some(Answer::Keep) | None => {}
                }
            }
            if !Self::sleep(self.cfg.check_interval, shutdown).await {
                info!("agent stopping (signal)");
                return Outcome::Stopped;
            }
        }
    }

    /// Announces this instance to the scaler; true when done (answered, or refused for good:
    /// a scaler without `/hello` answers 404 and is not asked again), false to retry at the
    /// next check.
    async fn hello(&self) -> bool {
        match self.scaler.hello(&self.instance).await {
            Ok(()) => {
                info!(host = %self.instance, "announced to the scaler");
                true
            }
            Err(e) if e.is_permanent() => {
                warn!(host = %self.instance, error = %e, "the scaler refused the announcement; not announcing again");
                true
            }
            Err(e) => {
                debug!(error = %e, "cannot announce to the scaler yet; retrying at the next check");
                false
            }
        }
    }

    /// One ask: re-check Jibri for `idle`, send, and set the backoff from the answer.
    async fn ask(&self, machine: &mut Machine, cause: Cause, failures: &mut u32) -> Option<Answer> {
        let mut cause = cause;
        if cause.reason() == Reason::Idle {
            // A call may have arrived since the last check: read again right before asking.
            let fresh = self.jibri.health().await;
            match machine.observe(fresh.reading(), self.clock.now()) {
                Some(c) => cause = c,
                None => {
                    info!(jibri = %fresh, "not asking: Jibri is no longer idle (fresh check)");
                    return None;
                }
            }
        }
        let reason = cause.reason();
        info!(reason = reason.as_str(), host = %self.instance, "asking the scaler to remove this instance: {cause}");
        let result = self.scaler.remove(&self.instance, reason).await;
        let now = self.clock.now();
        match result {
            Ok(Answer::Accepted) => {
                info!(reason = reason.as_str(), "scaler answered accepted");
                Some(Answer::Accepted)
            }
            Ok(Answer::Keep) => {
                *failures = 0;
                let wait = jitter(self.cfg.keep_backoff, JITTER, random_unit());
                machine.defer(now.saturating_add(ms(wait)));
                info!(
                    reason = reason.as_str(),
                    "scaler answered keep: keep serving, asking again in {} s",
                    secs(wait)
                );
                Some(Answer::Keep)
            }
            Err(e) => {
                *failures = failures.saturating_add(1);
                let wait = jitter(
                    backoff(
                        self.cfg.retry_backoff,
                        self.cfg.retry_backoff_max,
                        *failures,
                    ),
                    JITTER,
                    random_unit(),
                );
                machine.defer(now.saturating_add(ms(wait)));
                warn!(
                    reason = reason.as_str(),
                    failures = *failures,
                    "no usable answer from the scaler ({e}): keep serving, retry in {} s",
                    secs(wait)
                );
                None
            }
        }
    }

    /// Accepted: stop taking calls, wait for Jibri to exit, confirm, run `on_accepted`.
    async fn drain(&self, reason: Reason, shutdown: &CancellationToken) -> Outcome {
        let started = Instant::now();
        info!(
            reason = reason.as_str(),
            deadline_s = self.cfg.drain_deadline.as_secs(),
            "draining: asking Jibri for a graceful shutdown"
        );
        let mut shutdown_sent = self.request_shutdown().await;
        let mut stopped_streak = 0;
        let mut last_progress = Instant::now();
        loop {
            let probe = self.jibri.health().await;
            if probe.stopped() {
                stopped_streak += 1;
                if stopped_streak >= STOPPED_CHECKS {
                    info!(
                        "drained: Jibri has stopped after {} s",
                        secs(started.elapsed())
                    );
                    break;
                }
            } else {
                stopped_streak = 0;
                if !shutdown_sent {
                    shutdown_sent = self.request_shutdown().await;
                }
            }
            if started.elapsed() >= self.cfg.drain_deadline {
                warn!(
                    jibri = %probe,
                    "drain deadline passed after {} s with Jibri still running: confirming anyway",
                    secs(started.elapsed())
                );
                break;
            }
            if last_progress.elapsed() >= DRAIN_PROGRESS_EVERY {
                last_progress = Instant::now();
                info!(jibri = %probe, "still draining after {} s", secs(started.elapsed()));
            }
            if !Self::sleep(self.cfg.check_interval, shutdown).await {
                warn!("agent stopping (signal) during the drain; not confirmed");
                return Outcome::Stopped;
            }
        }
        if self.cfg.confirm_drained && !self.confirm(shutdown).await {
            return Outcome::Stopped;
        }
        if let Some(cmd) = &self.cfg.on_accepted {
            self.run_on_accepted(cmd, reason).await;
        }
        info!("done: this instance is drained and will not ask again");
        Outcome::Drained
    }

    /// Sends graceful shutdown; true once Jibri answered 2xx.
    async fn request_shutdown(&self) -> bool {
        match self.jibri.graceful_shutdown().await {
            Ok(status) if (200..300).contains(&status) => {
                info!(status, "Jibri graceful shutdown requested");
                true
            }
            Ok(status) => {
                warn!(
                    status,
                    "Jibri refused graceful shutdown; retrying at the next check"
                );
                false
            }
            Err(e) => {
                // Jibri may already be gone (that is what unhealthy asks are about).
                warn!("graceful shutdown request failed ({e}); retrying while Jibri answers");
                false
            }
        }
    }

    /// Confirms the drain with retries; false only on shutdown.
    async fn confirm(&self, shutdown: &CancellationToken) -> bool {
        for attempt in 1..=self.cfg.drained_attempts {
            match self.scaler.drained(&self.instance).await {
                Ok(()) => {
                    info!(attempt, "drained confirmed to the scaler");
                    return true;
                }
                Err(e) if e.is_permanent() || attempt == self.cfg.drained_attempts => {
                    // The scaler deletes after its drain_timeout anyway.
                    warn!(
                        attempt,
                        "drained confirmation not delivered ({e}); giving up"
                    );
                    return true;
                }
                Err(e) => {
                    let wait = jitter(
                        backoff(self.cfg.retry_backoff, self.cfg.retry_backoff_max, attempt),
                        JITTER,
                        random_unit(),
                    );
                    warn!(
                        attempt,
                        "drained confirmation failed ({e}); retry in {} s",
                        secs(wait)
                    );
                    if !Self::sleep(wait, shutdown).await {
                        return false;
                    }
                }
            }
        }
        true
    }

    async fn run_on_accepted(&self, cmd: &str, reason: Reason) {
        info!(command = cmd, "running on_accepted");
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .env("JITSI_SCALER_INSTANCE", &self.instance)
            .env("JITSI_SCALER_REASON", reason.as_str())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                error!(command = cmd, "on_accepted could not start: {e}");
                return;
            }
        };
        match tokio::time::timeout(self.cfg.on_accepted_timeout, child.wait()).await {
            Ok(Ok(status)) if status.success() => {
                info!(command = cmd, %status, "on_accepted finished")
            }
            Ok(Ok(status)) => warn!(command = cmd, %status, "on_accepted failed"),
            Ok(Err(e)) => error!(command = cmd, "on_accepted: cannot wait for it: {e}"),
            Err(_) => {
                let _ = child.kill().await;
                warn!(
                    command = cmd,
                    "on_accepted killed after {} s (on_accepted_timeout)",
                    secs(self.cfg.on_accepted_timeout)
                );
            }
        }
    }
}

/// The causes of an error, innermost last (reqwest's own text says only "error sending request").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

fn ms(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs the agent until it has drained or `shutdown` fires.
pub async fn run(cfg: AgentConfig, shutdown: CancellationToken) -> Result<Outcome, AgentError> {
    let agent = Agent::build(cfg).await?;
    Ok(agent.watch(&shutdown).await)
}

/// `--once`: one Jibri read and what the reading alone would ask; sends nothing.
pub async fn check_once(cfg: AgentConfig) -> Result<serde_json::Value, AgentError> {
    let agent = Agent::build(cfg).await?;
    let probe = agent.jibri.health().await;
    // Thresholds of zero: what this reading would ask once its time has come.
    let mut m = Machine::new(
        &Thresholds {
            idle_time: Duration::ZERO,
            max_lifetime: None,
            unhealthy_checks: 1,
            unreachable_time: Duration::ZERO,
        },
        &agent.instance,
    );
    let would = m.observe(probe.reading(), 0).map(|c| c.reason().as_str());
    Ok(serde_json::json!({
        "instance": agent.instance,
        "jibri": probe.to_string(),
        "would_ask": would,
        "remove": agent.scaler.remove_target(),
    }))
}

/// Entry point of `jitsi-scaler agent`: a small current-thread runtime (the
/// agent must stay light on the gateway), logs, signals, exit code.
pub fn main(args: AgentArgs) -> Result<(), AgentError> {
    let cfg = AgentConfig::load(&args)?;
    crate::runtime::init_tracing(&cfg.log_level, cfg.log_format == "json");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AgentError::Runtime(e.to_string()))?;
    runtime.block_on(async move {
        if args.once {
            let report = check_once(cfg).await?;
            println!("{report}");
            return Ok(());
        }
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            crate::runtime::wait_for_signal().await;
            signal.cancel();
        });
        run(cfg, shutdown).await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_a_full_file() {
        let d = AgentConfig::default();
        assert_eq!(d.check_interval, Duration::from_secs(5));
        assert_eq!(d.idle_time, Duration::from_secs(600));
        assert_eq!(d.unhealthy_checks, 3);
        assert_eq!(d.unreachable_time, Duration::from_secs(120));
        assert_eq!(d.keep_backoff, Duration::from_secs(60));
        assert!(d.confirm_drained);
        assert_eq!(d.remove_method, "POST");
        assert!(d.problems().iter().any(|p| p.starts_with("scaler_url:")));
        let c = AgentConfig::from_toml(
            r#"
scaler_url = "https://meet.example.org/scaler"
instance = "gw-1.example.org"
remove_path = "/instance"
remove_method = "DELETE"
idle_time = "15m"
max_lifetime = "1day"
check_interval = "2s"
on_accepted = "systemctl poweroff"
"#,
        )
        .expect("parses");
        assert_eq!(c.idle_time, Duration::from_secs(900));
        assert_eq!(c.max_lifetime, Some(Duration::from_secs(86_400)));
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        // It round-trips through its own serialisation (unset options are left out).
        let text = toml::to_string(&c).expect("serialises");
        assert!(!text.contains("key_file"), "{text}");
        assert_eq!(AgentConfig::from_toml(&text).expect("reparses"), c);
    }

    #[test]
    fn the_example_config_is_valid() {
        let c = AgentConfig::from_toml(include_str!("../../examples/agent.toml")).expect("parses");
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        assert_eq!(c.on_accepted.as_deref(), Some("systemctl poweroff"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(AgentConfig::from_toml("scaler_urll = \"x\"").is_err());
        assert!(AgentConfig::from_toml("idle_time = \"soon\"").is_err());
        let c = AgentConfig {
            scaler_url: "ftp://x".into(),
            remove_method: "PUT".into(),
            instance: Some("a b".into()),
            unhealthy_checks: 0,
            check_interval: Duration::ZERO,
            log_format: "xml".into(),
            unhealthy_reason: "sick".into(),
            ..AgentConfig::default()
        };
        let problems = c.problems();
        let zero = "check_interval: must be more than 0".to_string();
        assert!(problems.contains(&zero), "{problems:?}");
        for key in [
            "scaler_url:",
            "remove_method:",
            "instance:",
            "unhealthy_checks:",
            "check_interval:",
            "log_format:",
            "unhealthy_reason:",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(key)),
                "{key} in {problems:?}"
            );
        }
    }

    #[test]
    fn env_files_parse_like_systemd_and_shell() {
        let text = "# sidecar\nASAP_SIGNING_KEY_FILE=/etc/jitsi/sidecar/asap.key\n\
                    export ASAP_JWT_KID=\"jitsi/default\"\n  OTHER = 'x y' \nbroken line\n";
        let env = parse_env_file(text);
        assert_eq!(
            env,
            vec![
                (
                    "ASAP_SIGNING_KEY_FILE".into(),
                    "/etc/jitsi/sidecar/asap.key".into()
                ),
                ("ASAP_JWT_KID".into(), "jitsi/default".into()),
                ("OTHER".into(), "x y".into()),
            ]
        );
    }

    #[test]
    fn key_source_prefers_the_config_over_the_env_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = dir.path().join("env");
        std::fs::write(
            &env,
            "ASAP_SIGNING_KEY_FILE=/k.pem\nASAP_JWT_KID='jitsi/default'\n",
        )
        .expect("write");
        let mut cfg = AgentConfig {
            sidecar_env_file: Some(env.clone()),
            ..AgentConfig::default()
        };
        assert_eq!(
            key_source(&cfg).expect("ok"),
            (Some("/k.pem".into()), Some("jitsi/default".into()))
        );
        cfg.key_file = Some("/other.pem".into());
        cfg.kid = Some("mine".into());
        assert_eq!(
            key_source(&cfg).expect("ok"),
            (Some("/other.pem".into()), Some("mine".into()))
        );
        std::fs::write(&env, "FOO=1\n").expect("write");
        cfg.key_file = None;
        assert!(key_source(&cfg).is_err());
        assert_eq!(
            key_source(&AgentConfig::default()).expect("ok"),
            (None, None)
        );
    }

    #[tokio::test]
    async fn instance_detection_routes_to_the_scaler() {
        let ip = detect_instance("http://127.0.0.1:9/scaler")
            .await
            .expect("loopback routes");
        assert_eq!(ip, IpAddr::from([127, 0, 0, 1]));
        let ip = detect_instance("http://localhost:9/scaler")
            .await
            .expect("localhost resolves");
        assert!(ip.is_loopback(), "{ip}");
        assert!(detect_instance("not a url").await.is_err());
    }
}
