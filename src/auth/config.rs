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
    #[serde(with = "duration_serde")]
    pub key_server_timeout: Duration,
    /// How long a key found by `kid` (key_dir or key server) stays cached.
    #[serde(with = "duration_serde")]
    pub key_cache_ttl: Duration,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    #[serde(with = "duration_serde")]
    pub leeway: Duration,
    /// Longest accepted token lifetime (`exp - iat`, or `exp - now` without `iat`).
    #[serde(with = "duration_serde")]
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
        }
    }
}

impl AuthConfig {
    /// Lists every problem, each naming its key (`auth.<key>: ...`); empty = valid.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let no_source = self.public_key_file.is_none()
            && self.key_dir.is_none()
            && self.key_server_url.is_none();
        if self.mode == AuthMode::Asap && no_source {
            problems.push(
                "auth.mode: \"asap\" needs a key: set auth.public_key_file, auth.key_dir or \
                 auth.key_server_url (or mode = \"none\" if nginx verifies tokens)"
                    .to_owned(),
            );
        }
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
        problems
    }
}

/// Serde helper for `Duration` written as humantime strings ("60s", "5m", "1h").
///
/// Also accepts a bare integer as seconds. Use with `#[serde(with = "duration_serde")]`.
pub mod duration_serde {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    /// Writes the duration as a humantime string, e.g. "1h 30m".
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Reads "90s", "5m", "1h 30m" (humantime) or an integer number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration such as \"60s\", \"5m\" or \"1h\"")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            humantime::parse_duration(v.trim())
                .map_err(|e| E::custom(format_args!("invalid duration {v:?}: {e}")))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom("a duration cannot be negative"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_from_empty_toml() {
        let cfg: AuthConfig = toml::from_str("").expect("empty section parses");
        assert_eq!(cfg, AuthConfig::default());
        assert_eq!(cfg.leeway, Duration::from_secs(60));
        assert_eq!(cfg.max_lifetime, Duration::from_secs(3600));
        assert_eq!(cfg.admin_subjects, vec!["scaler"]);
        assert_eq!(cfg.instance_binding, InstanceBinding::Address);
    }

    #[test]
    fn parses_keys_and_durations() {
        let cfg: AuthConfig = toml::from_str(
            r#"
            mode = "none"
            leeway = "30s"
            max_lifetime = "2h"
            key_cache_ttl = 10
            instance_binding = "claim"
            issuers = ["jitsi-component-sidecar"]
            "#,
        )
        .expect("parses");
        assert_eq!(cfg.mode, AuthMode::None);
        assert_eq!(cfg.leeway, Duration::from_secs(30));
        assert_eq!(cfg.max_lifetime, Duration::from_secs(7200));
        assert_eq!(cfg.key_cache_ttl, Duration::from_secs(10));
        assert_eq!(cfg.instance_binding, InstanceBinding::Claim);
    }

    #[test]
    fn round_trips_through_toml() {
        let cfg = AuthConfig {
            key_dir: Some("/var/www/asap/server".into()),
            ..AuthConfig::default()
        };
        let text = toml::to_string(&cfg).expect("serializes");
        let back: AuthConfig = toml::from_str(&text).expect("parses back");
        assert_eq!(back, cfg);
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_refused() {
        assert!(toml::from_str::<AuthConfig>("publik_key_file = \"/x\"").is_err());
        assert!(toml::from_str::<AuthConfig>("leeway = \"soon\"").is_err());
        assert!(toml::from_str::<AuthConfig>("mode = \"hmac\"").is_err());
    }

    #[test]
    fn validate_names_the_keys() {
        let cfg = AuthConfig {
            public_key_file: Some("/nonexistent/key.pem".into()),
            key_dir: Some("/nonexistent/dir".into()),
            key_server_url: Some("ftp://x".into()),
            trusted_proxies: vec!["10.0.0.0/33".into()],
            admin_networks: vec!["nope".into()],
            remove_burst: 0,
            instance_claim: " ".into(),
            ..AuthConfig::default()
        };
        let problems = cfg.validate();
        for key in [
            "auth.public_key_file:",
            "auth.key_dir:",
            "auth.key_server_url:",
            "auth.trusted_proxies:",
            "auth.admin_networks:",
            "auth.remove_burst:",
            "auth.instance_claim:",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(key)),
                "{key} missing in {problems:?}"
            );
        }
    }

    #[test]
    fn asap_without_a_key_source_is_a_problem() {
        let problems = AuthConfig::default().validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("auth.mode:"));
        let none = AuthConfig {
            mode: AuthMode::None,
            ..AuthConfig::default()
        };
        assert!(none.validate().is_empty());
    }
}
