//! `[auth]` configuration: keys, defaults and validation.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::keys;
use super::net::IpNet;

/// Whether requests must carry an ASAP token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Verify `Authorization: Bearer <JWT>` on every request (default).
    #[default]
    Asap,
    /// Verify nothing; every caller is an admin (for deployments that verify in nginx).
    None,
}

/// How an instance (non-admin) caller is tied to the host it may remove.
///
/// The default is `address`: every gateway signs with the same component-sidecar
/// key, and the existing gateway script sends no per-gateway claim, so the
/// client address is the only thing that can tell one gateway from another.
/// `claim` is for our own agent, which can put the host name in a claim.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceBinding {
    /// The named host must be the caller's client IP (or resolve to it).
    #[default]
    Address,
    /// The token's `instance_claim` (else `sub`) must name the host.
    Claim,
}

/// The `[auth]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `asap` (default) or `none`.
    pub mode: AuthMode,
    /// Public key (PEM) for tokens without `kid`, e.g. the sidecar's public key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<PathBuf>,
    /// Directory of `<hex sha256(kid)>.pem` public keys (ASAP key-server layout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_dir: Option<PathBuf>,
    /// Base URL of an ASAP key server serving `<url>/<hex sha256(kid)>.pem`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_server_url: Option<String>,
    /// Connect and total timeout of one key-server fetch.
    #[serde(with = "crate::duration")]
    pub key_server_timeout: Duration,
    /// How long a key found by `kid` (key_dir or key server) stays cached.
    #[serde(with = "crate::duration")]
    pub key_cache_ttl: Duration,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    #[serde(with = "crate::duration")]
    pub leeway: Duration,
    /// Longest accepted token lifetime (`exp - iat`, or `exp - now` without `iat`).
    #[serde(with = "crate::duration")]
    pub max_lifetime: Duration,
    /// Accepted `iss` values; empty accepts any (and a missing `iss`).
    pub issuers: Vec<String>,
    /// Accepted `aud` values; empty accepts any (and a missing `aud`).
    pub audiences: Vec<String>,
    /// Subjects that get the admin role.
    pub admin_subjects: Vec<String>,
    /// If not empty, admin subjects only count as admin from these addresses
    /// (IPs or CIDRs); elsewhere they are instance callers. Empty = anywhere.
    pub admin_networks: Vec<String>,
    /// `address` (default) or `claim`; see [`InstanceBinding`].
    pub instance_binding: InstanceBinding,
    /// Claim naming the caller's host when `instance_binding = "claim"`.
    pub instance_claim: String,
    /// Peers (IPs or CIDRs) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Sustained remove requests per minute per client address.
    pub remove_rate_per_minute: u32,
    /// Remove requests a client may send at once before the rate applies.
    pub remove_burst: u32,
    /// Rules for jitsi-autoscaler sidecar tokens (`[auth.sidecar]`).
    pub sidecar: super::SidecarAuthConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::Asap,
            public_key_file: None,
            key_dir: None,
            key_server_url: None,
            key_server_timeout: Duration::from_secs(2),
            key_cache_ttl: Duration::from_secs(300),
            leeway: Duration::from_secs(60),
            max_lifetime: Duration::from_secs(3600),
            issuers: Vec::new(),
            audiences: Vec::new(),
            admin_subjects: vec!["scaler".to_owned()],
            admin_networks: Vec::new(),
            instance_binding: InstanceBinding::Address,
            instance_claim: "instance".to_owned(),
            // nginx on the same JMS proxies to the service.
            trusted_proxies: vec!["127.0.0.1".to_owned(), "::1".to_owned()],
            remove_rate_per_minute: 30,
            remove_burst: 10,
            sidecar: super::SidecarAuthConfig::default(),
        }
    }
}

impl AuthConfig {
    /// Things that start but are probably not intended (shown by `config check` and logged).
    pub fn warnings(&self) -> Vec<String> {
        let no_source = self.public_key_file.is_none()
            && self.key_dir.is_none()
            && self.key_server_url.is_none();
        match self.mode {
            AuthMode::Asap if no_source => vec![
                "auth: no key configured (auth.public_key_file, auth.key_dir or auth.key_server_url): \
                 every API request is refused with 401 until one is set (or auth.mode = \"none\" \
                 if nginx verifies tokens)"
                    .to_owned(),
            ],
            AuthMode::None => vec![
                "auth.mode = \"none\": API requests are not authenticated; every caller is admin".to_owned(),
            ],
            AuthMode::Asap => Vec::new(),
        }
    }

    /// Lists every problem, each naming its key (`auth.<key>: ...`); empty = valid.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(path) = &self.public_key_file {
            match std::fs::read(path) {
                Err(e) => problems.push(format!(
                    "auth.public_key_file: {} is not readable: {e}",
                    path.display()
                )),
                Ok(pem) => {
                    if let Err(e) = keys::parse_public_pem(&pem) {
                        problems.push(format!("auth.public_key_file: {}: {e}", path.display()));
                    }
                }
            }
        }
        if let Some(dir) = &self.key_dir
            && let Err(e) = std::fs::read_dir(dir)
        {
            problems.push(format!(
                "auth.key_dir: {} is not a readable directory: {e}",
                dir.display()
            ));
        }
        if let Some(url) = &self.key_server_url {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                    if u.query().is_some() || u.fragment().is_some() {
                        problems.push(format!(
                            "auth.key_server_url: {url:?} must not have a query or fragment"
                        ));
                    }
                }
                Ok(_) => problems.push(format!(
                    "auth.key_server_url: {url:?} must be an http:// or https:// URL with a host"
                )),
                Err(e) => problems.push(format!("auth.key_server_url: {url:?}: {e}")),
            }
        }
        if self.key_server_timeout.is_zero() || self.key_server_timeout > Duration::from_secs(60) {
            problems.push("auth.key_server_timeout: must be between 1ms and 60s".to_owned());
        }
        if self.max_lifetime < Duration::from_secs(1) {
            problems.push("auth.max_lifetime: must be at least 1s".to_owned());
        }
        if self.leeway > Duration::from_secs(600) {
            problems.push("auth.leeway: more than 10m defeats token expiry".to_owned());
        }
        for (key, list) in [
            ("issuers", &self.issuers),
            ("audiences", &self.audiences),
            ("admin_subjects", &self.admin_subjects),
        ] {
            if list.iter().any(|s| s.trim().is_empty()) {
                problems.push(format!("auth.{key}: entries must not be empty"));
            }
        }
        if self.instance_claim.trim().is_empty() {
            problems.push("auth.instance_claim: must not be empty".to_owned());
        }
        for (key, list) in [
            ("trusted_proxies", &self.trusted_proxies),
            ("admin_networks", &self.admin_networks),
        ] {
            for entry in list {
                if IpNet::parse(entry).is_none() {
                    problems.push(format!(
                        "auth.{key}: {entry:?} is not an IP address or CIDR (e.g. 10.0.0.0/8)"
                    ));
                }
            }
        }
        if self.remove_rate_per_minute == 0 {
            problems.push("auth.remove_rate_per_minute: must be at least 1".to_owned());
        }
        if self.remove_burst == 0 {
            problems.push("auth.remove_burst: must be at least 1".to_owned());
        }
        problems.extend(self.sidecar.validate());
        problems
    }
}
