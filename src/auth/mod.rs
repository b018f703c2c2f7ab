//! ASAP (JWT) authentication and authorisation for the HTTP API.
//!
//! [`Authenticator`] verifies `Authorization: Bearer <JWT>` (RS256/ES256, each
//! key pinned to one algorithm), decides the caller's [`Role`], and binds
//! instance callers to the one host they may remove ([`Caller::may_remove`]).
//! [`sign_token`] makes tokens for the `token` command and the agent.
//! See `docs/security.md`.

mod config;
mod error;
mod keys;
mod net;
mod ratelimit;
pub mod refusals;
mod sidecar;
mod sign;
mod verify;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use serde_json::{Map, Value};

pub use config::{AuthConfig, AuthMode, InstanceBinding};
pub use error::{AuthError, CHALLENGE_INVALID, CHALLENGE_MISSING, Refusal};
pub use keys::{KeyAlg, kid_file_name};
pub use net::{IpNet, client_ip};
pub use ratelimit::RateLimiter;
pub use sidecar::{SidecarAuthConfig, SidecarBinding, SidecarCaller};
pub use sign::{SigningKey, TokenArgs, TokenOptions, parse_claim, run_token, sign_token};

use keys::KeyStore;
use verify::Rules;

/// Clients tracked by the remove-me rate limiter (memory stays flat).
pub const RATE_LIMIT_MAX_CLIENTS: usize = 4096;

/// Verified tokens remembered, so one used again skips the signature check (memory bound).
pub const TOKEN_CACHE_MAX: usize = 1024;
/// Longest token remembered (real ASAP tokens are well under 1 KiB).
const TOKEN_CACHE_MAX_LEN: usize = 2048;
/// How long a verified token is remembered, at most (never longer than `key_cache_ttl`).
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(60);

/// A verified token's claims and when to forget them.
struct CachedToken {
    claims: Map<String, Value>,
    until: Instant,
}

/// What an authenticated caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Subject in `admin_subjects`: settings, launches, removing any host.
    Admin,
    /// Any other subject: may only ask to remove its own host.
    Instance,
}

/// An authenticated request's identity.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Admin or instance.
    pub role: Role,
    /// The token's `sub`, if any (`None` in mode `none`).
    pub subject: Option<String>,
    /// All verified claims (empty in mode `none`).
    pub claims: Map<String, Value>,
    /// The client's address (after trusted-proxy `X-Forwarded-For`).
    pub client_ip: IpAddr,
    /// How [`Caller::may_remove`] ties an instance caller to a host.
    pub binding: InstanceBinding,
    /// The host this caller claims to be: `instance_claim` if a string, else `sub`.
    pub instance: Option<String>,
}

impl Caller {
    /// `Ok` for admins, 403 for instance callers.
    pub fn require_admin(&self) -> Result<(), AuthError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Instance => Err(AuthError::Forbidden("admin role required")),
        }
    }

    /// May this caller ask to remove `host` (a name or an IP, as in the request body)?
    ///
    /// Admins may remove any host. An instance caller may only name itself:
    /// - binding `claim`: [`Caller::instance`] must equal `host`, case-insensitively,
    ///   or one must be the short name of the other (`gw-1` vs `gw-1.example.org`);
    ///   IP literals must be equal.
    /// - binding `address`: `host` is an IP literal equal to [`Caller::client_ip`], or
    ///   `client_ip` is one of `known_ips_of_host`.
    ///
    /// This module does no DNS: `known_ips_of_host` is whatever the caller of this
    /// function knows for `host` (e.g. the ledger's or the lifecycle manager's
    /// record of its addresses); pass `&[]` when nothing is known, and then only
    /// an IP literal can match. Errors are 403.
    pub fn may_remove(&self, host: &str, known_ips_of_host: &[IpAddr]) -> Result<(), AuthError> {
        if self.role == Role::Admin {
            return Ok(());
        }
        let ok = match self.binding {
            InstanceBinding::Claim => self
                .instance
                .as_deref()
                .is_some_and(|name| host_matches(host, name)),
            InstanceBinding::Address => {
                parse_ip_literal(host).is_some_and(|ip| ip == self.client_ip)
                    || is_known(self.client_ip, known_ips_of_host)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(AuthError::Forbidden("an instance may only remove itself"))
        }
    }
}

/// Whether `client` is one of the `known` addresses of a host (compared canonically: an
/// IPv4-mapped IPv6 address is its IPv4 address).
fn is_known(client: IpAddr, known: &[IpAddr]) -> bool {
    known.iter().any(|ip| ip.to_canonical() == client)
}

fn parse_ip_literal(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let s = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(s);
    s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// Same host: equal names (case, trailing dot ignored), or short name vs FQDN.
fn host_matches(host: &str, name: &str) -> bool {
    if let (Some(a), Some(b)) = (parse_ip_literal(host), parse_ip_literal(name)) {
        return a == b;
    }
    if parse_ip_literal(host).is_some() || parse_ip_literal(name).is_some() {
        // "10" must not pass as the short name of "10.0.0.5".
        return false;
    }
    let norm = |s: &str| s.trim().trim_end_matches('.').to_ascii_lowercase();
    let (h, n) = (norm(host), norm(name));
    if h.is_empty() || n.is_empty() {
        return false;
    }
    let short_of = |short: &str, fqdn: &str| {
        !short.contains('.')
            && fqdn.len() > short.len()
            && fqdn.starts_with(short)
            && fqdn.as_bytes()[short.len()] == b'.'
    };
    h == n || short_of(&h, &n) || short_of(&n, &h)
}

/// Verifies requests according to an [`AuthConfig`]. Cheap to share in an `Arc`.
pub struct Authenticator {
    mode: AuthMode,
    keys: KeyStore,
    rules: Rules,
    admin_subjects: Vec<String>,
    admin_networks: Vec<IpNet>,
    binding: InstanceBinding,
    instance_claim: String,
    trusted_proxies: Vec<IpNet>,
    remove_limiter: RateLimiter,
    /// Tokens whose signature was verified; the time rules are still checked at every use.
    verified: Mutex<HashMap<String, CachedToken>>,
    verified_ttl: Duration,
    /// `[auth.sidecar]` and its claim rules (jitsi-autoscaler sidecar tokens; `sidecar.rs`).
    sidecar: SidecarAuthConfig,
    sidecar_rules: Rules,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("mode", &self.mode)
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Validates the config and loads `public_key_file`; `kid` keys load on demand.
    ///
    /// In mode `none` this logs a warning: every request is then an admin.
    pub fn from_config(cfg: &AuthConfig) -> Result<Self, AuthError> {
        let problems = cfg.validate();
        if !problems.is_empty() {
            return Err(AuthError::Config(problems.join("; ")));
        }
        let default_key = match (&cfg.mode, &cfg.public_key_file) {
            (AuthMode::Asap, Some(path)) => Some(keys::load_public_key_file(path)?),
            _ => None,
        };
        if cfg.mode == AuthMode::None {
            tracing::warn!(
                "auth.mode = \"none\": API requests are NOT authenticated; every caller is admin"
            );
        }
        let secs = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        Ok(Authenticator {
            mode: cfg.mode,
            keys: KeyStore::new(
                default_key,
                cfg.key_dir.clone(),
                cfg.key_server_url.as_deref(),
                cfg.key_server_timeout,
                cfg.key_cache_ttl,
            )?,
            rules: Rules {
                leeway: secs(cfg.leeway),
                max_lifetime: secs(cfg.max_lifetime),
                issuers: cfg.issuers.clone(),
                audiences: cfg.audiences.clone(),
            },
            admin_subjects: cfg.admin_subjects.clone(),
            admin_networks: net::parse_nets(&cfg.admin_networks),
            binding: cfg.instance_binding,
            instance_claim: cfg.instance_claim.clone(),
            trusted_proxies: net::parse_nets(&cfg.trusted_proxies),
            remove_limiter: RateLimiter::new(
                cfg.remove_rate_per_minute,
                cfg.remove_burst,
                RATE_LIMIT_MAX_CLIENTS,
            ),
            verified: Mutex::new(HashMap::new()),
            verified_ttl: TOKEN_CACHE_TTL.min(cfg.key_cache_ttl),
            sidecar: cfg.sidecar.clone(),
            sidecar_rules: cfg.sidecar.rules(cfg.leeway),
        })
    }

    /// The configured mode.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Authenticates a request now; see [`Authenticator::authenticate_at`].
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) -> Result<Caller, AuthError> {
        self.authenticate_at(headers, peer, SystemTime::now()).await
    }

    /// Authenticates a request at time `now`: `Authorization: Bearer <JWT>` is
    /// verified and turned into a [`Caller`]. In mode `none` nothing is read and
    /// the caller is an admin. Errors are 401 (never 500 for any input).
    pub async fn authenticate_at(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
        now: SystemTime,
    ) -> Result<Caller, AuthError> {
        let verify = |token| self.verify_token(token, now);
        let (client_ip, verified) = self.with_bearer(headers, peer, "request", verify).await;
        let Some(result) = verified else {
            return Ok(Caller {
                role: Role::Admin,
                subject: None,
                claims: Map::new(),
                client_ip,
                binding: self.binding,
                instance: None,
            });
        };
        let claims = result?;
        let subject = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
        let admin_here = self.admin_networks.is_empty()
            || self.admin_networks.iter().any(|n| n.contains(client_ip));
        let role = match &subject {
            Some(s) if admin_here && self.admin_subjects.iter().any(|a| a == s) => Role::Admin,
            _ => Role::Instance,
        };
        let instance = claims
            .get(&self.instance_claim)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| subject.clone());
        Ok(Caller {
            role,
            subject,
            claims,
            client_ip,
            binding: self.binding,
            instance,
        })
    }

    /// The client address of a request and, unless auth is off (`None`), what `verify` makes
    /// of its bearer token; a refusal is logged at debug as `what` not authenticated.
    pub(crate) async fn with_bearer<'a, T, F>(
        &self,
        headers: &'a HeaderMap,
        peer: SocketAddr,
        what: &str,
        verify: impl FnOnce(&'a str) -> F,
    ) -> (IpAddr, Option<Result<T, AuthError>>)
    where
        F: Future<Output = Result<T, AuthError>>,
    {
        let client_ip = self.client_ip(headers, peer);
        if self.mode == AuthMode::None {
            return (client_ip, None);
        }
        let result = match bearer_token(headers) {
            Ok(token) => verify(token).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            // The reason is a static string: the token itself is never logged.
            tracing::debug!(client = %client_ip, error = %e, "{what} not authenticated");
        }
        (client_ip, Some(result))
    }

    /// Verifies a compact JWS at `now` and returns its claims.
    pub async fn verify_token(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<Map<String, Value>, AuthError> {
        let now_secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        if let Some(claims) = self.remembered(token) {
            // Signature and header were verified before; exp/nbf/iat move with the clock.
            verify::check_claims(&claims, &self.rules, now_secs)?;
            return Ok(claims);
        }
        let parsed = verify::parse(token)?;
        let key = self.keys.key_for(parsed.kid.as_deref()).await?;
        if key.alg != parsed.alg {
            // Pinning: the key decides the algorithm, never the token.
            return Err(AuthError::InvalidToken("algorithm does not match the key"));
        }
        if !key.verify(parsed.signing_input.as_bytes(), &parsed.signature) {
            return Err(AuthError::InvalidToken("bad signature"));
        }
        verify::check_claims(&parsed.claims, &self.rules, now_secs)?;
        self.remember(token, &parsed.claims);
        Ok(parsed.claims)
    }

    /// The claims of a token verified within `verified_ttl`.
    fn remembered(&self, token: &str) -> Option<Map<String, Value>> {
        let map = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(token)
            .filter(|c| c.until > Instant::now())
            .map(|c| c.claims.clone())
    }

    /// Remembers a verified token; the map stays within [`TOKEN_CACHE_MAX`].
    fn remember(&self, token: &str, claims: &Map<String, Value>) {
        if token.len() > TOKEN_CACHE_MAX_LEN || self.verified_ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut map = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= TOKEN_CACHE_MAX {
            map.retain(|_, c| c.until > now);
            if map.len() >= TOKEN_CACHE_MAX {
                // Gateways send a fresh token per request: nothing worth keeping.
                map.clear();
            }
        }
        map.insert(
            token.to_owned(),
            CachedToken {
                claims: claims.clone(),
                until: now + self.verified_ttl,
            },
        );
    }

    /// Number of remembered verified tokens (for tests).
    pub fn remembered_tokens(&self) -> usize {
        self.verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The client's address: `X-Forwarded-For` (rightmost untrusted hop) is only
    /// believed when `peer` is one of `trusted_proxies`.
    pub fn client_ip(&self, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
        net::client_ip(headers, peer, &self.trusted_proxies)
    }

    /// Takes one remove-me token for `ip`; 429 with `Retry-After` when exhausted.
    pub fn check_remove_rate(&self, ip: IpAddr) -> Result<(), AuthError> {
        if self.remove_limiter.check(ip, Instant::now()) {
            Ok(())
        } else {
            Err(AuthError::RateLimited {
                retry_after_secs: self.remove_limiter.retry_after().as_secs().max(1),
            })
        }
    }

    /// The remove-me rate limiter (to check with an explicit clock).
    pub fn remove_limiter(&self) -> &RateLimiter {
        &self.remove_limiter
    }

    /// Number of `kid`s in the key cache (found and not found).
    pub fn cached_keys(&self) -> usize {
        self.keys.cached_len()
    }
}

/// Extracts the token from the single `Authorization: Bearer` header.
fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values
        .next()
        .ok_or(AuthError::MissingToken("no Authorization header"))?;
    if values.next().is_some() {
        return Err(AuthError::InvalidToken("several Authorization headers"));
    }
    let value = value
        .to_str()
        .map_err(|_| AuthError::InvalidToken("malformed Authorization header"))?
        .trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MissingToken(
            "Authorization scheme is not Bearer",
        ));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::MissingToken("empty bearer token"));
    }
    Ok(token)
}
