//! Tokens of jitsi-autoscaler's sidecar (`POST {prefix}/sidecar/...`).
//!
//! The sidecar signs RS256 tokens with a required `kid`, `iss` `jitsi-autoscaler-sidecar`,
//! `aud` `jitsi-autoscaler`, a 1 h lifetime and no `sub` (SIDECAR-PROTOCOL.md §1.3). They are
//! verified with the keys of our other tokens (`auth.key_dir` / `auth.key_server_url`, looked up
//! as `<hex sha256(kid)>.pem`) under their own issuer and audience rules (`[auth.sidecar]`),
//! so a sidecar token is never accepted on the other routes' rules nor the other way round.
//!
//! A sidecar token names no host, so a request may only speak for the instance it names in
//! its body when it is bound to it like an instance token ([`SidecarBinding`]).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use super::keys::KeyAlg;
use super::verify::{self, Rules};
use super::{AuthError, Authenticator, is_known};

/// How a sidecar request is tied to the instance id in its body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SidecarBinding {
    /// The client address must be the instance's: an IP-literal instance id equal to it, the
    /// address the ledger knows for the instance (from the lifecycle manager), or, for an
    /// instance with no known address, the address of its first report (kept from then on).
    #[default]
    Address,
    /// The token's `kid` must be the instance id, or end with `/<instance id>`: one key pair
    /// per gateway (`ASAP_JWT_KID` / `AUTOSCALER_SIDECAR_KEY_ID` set per host).
    Kid,
}

/// `[auth.sidecar]`: the rules for sidecar tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SidecarAuthConfig {
    /// Accepted `iss` values (the sidecar's `ASAP_JWT_ISS`); empty accepts any.
    pub issuers: Vec<String>,
    /// Accepted `aud` values (the sidecar's `ASAP_JWT_AUD`); empty accepts any.
    pub audiences: Vec<String>,
    /// Longest accepted lifetime; the sidecar's tokens live 1 h.
    #[serde(with = "crate::duration")]
    pub max_lifetime: Duration,
    /// `address` (default) or `kid`; see [`SidecarBinding`].
    pub binding: SidecarBinding,
}

impl Default for SidecarAuthConfig {
    fn default() -> Self {
        SidecarAuthConfig {
            issuers: vec!["jitsi-autoscaler-sidecar".to_owned()],
            audiences: vec!["jitsi-autoscaler".to_owned()],
            max_lifetime: Duration::from_secs(3600),
            binding: SidecarBinding::Address,
        }
    }
}

impl SidecarAuthConfig {
    /// Every problem, each naming its key; empty = valid.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (key, list) in [("issuers", &self.issuers), ("audiences", &self.audiences)] {
            if list.iter().any(|s| s.trim().is_empty()) {
                p.push(format!("auth.sidecar.{key}: entries must not be empty"));
            }
        }
        if self.max_lifetime < Duration::from_secs(1) {
            p.push("auth.sidecar.max_lifetime: must be at least 1s".to_owned());
        }
        p
    }

    /// The claim rules, with the leeway of the other tokens.
    pub(crate) fn rules(&self, leeway: Duration) -> Rules {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        Rules {
            leeway: secs(leeway),
            max_lifetime: secs(self.max_lifetime),
            issuers: self.issuers.clone(),
            audiences: self.audiences.clone(),
        }
    }
}

/// An authenticated sidecar request.
#[derive(Debug, Clone)]
pub struct SidecarCaller {
    /// The client's address (after trusted-proxy `X-Forwarded-For`).
    pub client_ip: IpAddr,
    /// The token's `kid` (`None` in mode `none`).
    pub kid: Option<String>,
    /// How the caller is bound to an instance; `None` in mode `none` (anything goes).
    pub binding: Option<SidecarBinding>,
}

impl SidecarCaller {
    /// The caller's name in logs: `sidecar:<kid>@<address>`.
    pub fn who(&self) -> String {
        format!(
            "sidecar:{}@{}",
            self.kid.as_deref().unwrap_or("-"),
            self.client_ip
        )
    }

    /// May this caller speak for `instance`? `known_ips` are the addresses the ledger knows
    /// for it (empty: none known, so the first reporter's address is taken; the caller of this
    /// function records it). Errors are 403.
    pub fn may_speak_for(&self, instance: &str, known_ips: &[IpAddr]) -> Result<(), AuthError> {
        let ok = match self.binding {
            None => true,
            Some(SidecarBinding::Kid) => self.kid.as_deref().is_some_and(|kid| {
                let id = instance.trim();
                !id.is_empty()
                    && (kid == id || kid.strip_suffix(id).is_some_and(|head| head.ends_with('/')))
            }),
            Some(SidecarBinding::Address) => {
                let literal = instance
                    .trim()
                    .parse::<IpAddr>()
                    .ok()
                    .map(|ip| ip.to_canonical());
                match literal {
                    Some(ip) => ip == self.client_ip,
                    None => known_ips.is_empty() || is_known(self.client_ip, known_ips),
                }
            }
        };
        if ok {
            Ok(())
        } else {
            Err(AuthError::Forbidden(
                "a sidecar may only speak for its own instance",
            ))
        }
    }
}

impl Authenticator {
    /// Authenticates a sidecar request now; see [`Authenticator::authenticate_sidecar_at`].
    pub async fn authenticate_sidecar(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) -> Result<SidecarCaller, AuthError> {
        self.authenticate_sidecar_at(headers, peer, SystemTime::now())
            .await
    }

    /// Authenticates a sidecar request at `now`: an RS256 token with a `kid` whose key is
    /// found as for our other tokens, under the `[auth.sidecar]` issuer, audience and lifetime
    /// rules. In mode `none` nothing is read. Errors are 401.
    pub async fn authenticate_sidecar_at(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
        now: SystemTime,
    ) -> Result<SidecarCaller, AuthError> {
        let verify = |token| self.verify_sidecar_token(token, now);
        let (client_ip, verified) = self
            .with_bearer(headers, peer, "sidecar request", verify)
            .await;
        let Some(result) = verified else {
            return Ok(SidecarCaller {
                client_ip,
                kid: None,
                binding: None,
            });
        };
        result.map(|kid| SidecarCaller {
            client_ip,
            kid: Some(kid),
            binding: Some(self.sidecar.binding),
        })
    }

    /// Verifies a sidecar token at `now`; returns its `kid`.
    pub async fn verify_sidecar_token(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<String, AuthError> {
        let now_secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let parsed = verify::parse(token)?;
        let kid = parsed
            .kid
            .clone()
            .ok_or(AuthError::InvalidToken("a sidecar token needs a kid"))?;
        if parsed.alg != KeyAlg::Rs256 {
            return Err(AuthError::InvalidToken("a sidecar token must be RS256"));
        }
        let key = self.keys.key_for(Some(&kid)).await?;
        if key.alg != parsed.alg {
            return Err(AuthError::InvalidToken("algorithm does not match the key"));
        }
        if !key.verify(parsed.signing_input.as_bytes(), &parsed.signature) {
            return Err(AuthError::InvalidToken("bad signature"));
        }
        verify::check_claims(&parsed.claims, &self.sidecar_rules, now_secs)?;
        Ok(kid)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AuthConfig, SigningKey, TokenOptions, kid_file_name, sign_token};
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::{Map, json};
    use std::process::Command;

    /// An RSA key pair from the openssl CLI, its public key under `dir/keys/<sha256(kid)>.pem`.
    fn key_pair(dir: &std::path::Path, kid: &str) -> Vec<u8> {
        let private = dir.join("k.key");
        let ok = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&private)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "openssl genpkey");
        let keys = dir.join("keys");
        std::fs::create_dir_all(&keys).expect("key dir");
        let ok = Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(keys.join(kid_file_name(kid)))
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "openssl pkey");
        std::fs::read(&private).expect("read key")
    }

    /// A token as the sidecar signs it: kid, iss, aud, iat, exp = iat + ttl, no sub.
    fn sidecar_token(pem: &[u8], kid: &str, iss: &str, aud: &str, ttl: u64) -> String {
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = json!({"iss": iss, "aud": aud, "iat": iat, "exp": iat + ttl});
        let Some(claims) = claims.as_object() else {
            panic!("object")
        };
        SigningKey::from_pem(pem)
            .and_then(|k| k.sign_claims(Some(kid), claims))
            .expect("sign")
    }

    fn headers(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
        h
    }

    fn peer() -> SocketAddr {
        "10.0.0.7:5555".parse().expect("addr")
    }

    #[tokio::test]
    async fn sidecar_tokens_verify_under_their_own_rules() {
        let dir = tempfile::tempdir().expect("dir");
        let kid = "jitsi/jwt-2023-06-01";
        let pem = key_pair(dir.path(), kid);
        let cfg = AuthConfig {
            key_dir: Some(dir.path().join("keys")),
            // The other routes accept only the component sidecar's tokens.
            issuers: vec!["jitsi-component-sidecar".into()],
            ..AuthConfig::default()
        };
        let auth = Authenticator::from_config(&cfg).expect("auth");
        let good = sidecar_token(
            &pem,
            kid,
            "jitsi-autoscaler-sidecar",
            "jitsi-autoscaler",
            3600,
        );
        let c = auth
            .authenticate_sidecar(&headers(&good), peer())
            .await
            .expect("a sidecar token as the sidecar signs it");
        assert_eq!(c.kid.as_deref(), Some(kid));
        assert_eq!(c.client_ip.to_string(), "10.0.0.7");
        // Not accepted on the other routes (their issuer rule), and no sub there anyway.
        assert!(auth.authenticate(&headers(&good), peer()).await.is_err());
        let reason = |r: Result<SidecarCaller, AuthError>| match r {
            Err(AuthError::InvalidToken(why)) | Err(AuthError::MissingToken(why)) => why,
            Err(e) => panic!("{e:?}"),
            Ok(_) => "ok",
        };
        let bad_iss = sidecar_token(&pem, kid, "someone-else", "jitsi-autoscaler", 3600);
        assert_eq!(
            reason(auth.authenticate_sidecar(&headers(&bad_iss), peer()).await),
            "issuer not accepted"
        );
        let bad_aud = sidecar_token(&pem, kid, "jitsi-autoscaler-sidecar", "x", 3600);
        assert_eq!(
            reason(auth.authenticate_sidecar(&headers(&bad_aud), peer()).await),
            "audience not accepted"
        );
        let too_long = sidecar_token(
            &pem,
            kid,
            "jitsi-autoscaler-sidecar",
            "jitsi-autoscaler",
            7200,
        );
        assert_eq!(
            reason(auth.authenticate_sidecar(&headers(&too_long), peer()).await),
            "token lifetime exceeds the maximum"
        );
        let unknown = sidecar_token(
            &pem,
            "other/kid",
            "jitsi-autoscaler-sidecar",
            "jitsi-autoscaler",
            60,
        );
        assert_eq!(
            reason(auth.authenticate_sidecar(&headers(&unknown), peer()).await),
            "unknown kid"
        );
        // No kid: refused even though a default key would verify it on the other routes.
        let opts = TokenOptions {
            kid: None,
            sub: String::new(),
            ttl: Duration::from_secs(60),
            iss: Some("jitsi-autoscaler-sidecar".into()),
            aud: Some("jitsi-autoscaler".into()),
            claims: Map::new(),
        };
        let no_kid = sign_token(&pem, &opts).expect("sign");
        assert_eq!(
            reason(auth.authenticate_sidecar(&headers(&no_kid), peer()).await),
            "a sidecar token needs a kid"
        );
        assert_eq!(
            reason(auth.authenticate_sidecar(&HeaderMap::new(), peer()).await),
            "no Authorization header"
        );
        // A bad token answers 401 with a text body, as jitsi-autoscaler does.
        let e = auth
            .authenticate_sidecar(&headers("x.y.z"), peer())
            .await
            .expect_err("garbage");
        assert_eq!(e.status(), axum::http::StatusCode::UNAUTHORIZED);
        assert!(e.to_string().starts_with("invalid token"), "{e}");
        // The audience and issuer are configurable.
        let cfg2 = AuthConfig {
            key_dir: Some(dir.path().join("keys")),
            sidecar: SidecarAuthConfig {
                audiences: vec!["x".into()],
                ..SidecarAuthConfig::default()
            },
            ..AuthConfig::default()
        };
        let auth2 = Authenticator::from_config(&cfg2).expect("auth");
        assert!(
            auth2
                .authenticate_sidecar(&headers(&bad_aud), peer())
                .await
                .is_ok()
        );
        assert!(
            auth2
                .authenticate_sidecar(&headers(&good), peer())
                .await
                .is_err()
        );
    }

    #[test]
    fn binding_by_address_and_by_kid() {
        let ip: IpAddr = "10.0.0.7".parse().expect("ip");
        let other: IpAddr = "10.0.0.8".parse().expect("ip");
        let by_addr = SidecarCaller {
            client_ip: ip,
            kid: Some("jitsi/default".into()),
            binding: Some(SidecarBinding::Address),
        };
        assert!(by_addr.may_speak_for("10.0.0.7", &[]).is_ok());
        assert!(by_addr.may_speak_for("10.0.0.8", &[]).is_err());
        assert!(by_addr.may_speak_for("vsg-1", &[ip]).is_ok());
        assert!(by_addr.may_speak_for("vsg-1", &[other]).is_err());
        assert!(by_addr.may_speak_for("vsg-1", &[]).is_ok(), "first report");
        let by_kid = SidecarCaller {
            kid: Some("jitsi/vsg-1".into()),
            binding: Some(SidecarBinding::Kid),
            ..by_addr.clone()
        };
        assert!(by_kid.may_speak_for("vsg-1", &[other]).is_ok());
        assert!(by_kid.may_speak_for("vsg-2", &[]).is_err());
        assert!(
            by_kid.may_speak_for("sg-1", &[]).is_err(),
            "not a suffix of a label"
        );
        assert!(by_kid.may_speak_for("", &[]).is_err());
        let open = SidecarCaller {
            binding: None,
            ..by_addr
        };
        assert!(open.may_speak_for("anything", &[other]).is_ok());
        let e = by_kid.may_speak_for("vsg-2", &[]).expect_err("403");
        assert_eq!(e.status(), axum::http::StatusCode::FORBIDDEN);
    }
}
