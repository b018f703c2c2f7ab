//! Signing ASAP tokens (the `token` command, the scale-down agent, tests).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};

use super::AuthError;
use super::keys::{KeyAlg, first_pem_block};

/// Claims set from [`TokenOptions`] fields, never from `claims`.
const RESERVED: [&str; 5] = ["sub", "iat", "exp", "iss", "aud"];

const SEC1_HINT: &str =
    "convert it to PKCS#8: openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.p8.pem";

/// A private key pinned to its algorithm (RSA -> RS256, EC P-256 -> ES256).
pub struct SigningKey {
    alg: KeyAlg,
    key: EncodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Parses a PEM private key: RSA PKCS#1 or PKCS#8, EC P-256 PKCS#8 or SEC1.
    pub fn from_pem(pem: &[u8]) -> Result<Self, AuthError> {
        let err = |m: String| AuthError::Key(m);
        let block = first_pem_block(pem).ok_or_else(|| err("not a PEM private key".into()))?;
        if block.encrypted || block.label == "ENCRYPTED PRIVATE KEY" {
            return Err(err(
                "encrypted private keys are not supported; decrypt first: \
                 openssl pkey -in KEY -out KEY.plain.pem"
                    .into(),
            ));
        }
        match block.label.as_str() {
            "RSA PRIVATE KEY" => Self::rsa(pem),
            "EC PRIVATE KEY" => {
                // SEC1: jsonwebtoken wants PKCS#8, so re-wrap it with aws-lc.
                let pair = EcdsaKeyPair::from_private_key_der(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &block.der,
                )
                .map_err(|e| {
                    err(format!(
                        "EC key rejected ({e}); only P-256 is supported, or {SEC1_HINT}"
                    ))
                })?;
                let pkcs8 = pair
                    .to_pkcs8v1()
                    .map_err(|_| err(format!("cannot convert the SEC1 EC key; {SEC1_HINT}")))?;
                Ok(SigningKey {
                    alg: KeyAlg::Es256,
                    key: EncodingKey::from_ec_der(pkcs8.as_ref()),
                })
            }
            "PRIVATE KEY" => {
                if let Ok(key) = Self::rsa(pem) {
                    return Ok(key);
                }
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &block.der).map_err(
                    |_| err("PKCS#8 key is neither RSA (2048-8192 bits) nor EC P-256".into()),
                )?;
                Ok(SigningKey {
                    alg: KeyAlg::Es256,
                    key: EncodingKey::from_ec_der(&block.der),
                })
            }
            l if l.contains("PUBLIC KEY") => Err(err(
                "this is a public key; signing needs the private key".into(),
            )),
            other => Err(err(format!(
                "unexpected PEM block {other:?}; need a private key"
            ))),
        }
    }

    fn rsa(pem: &[u8]) -> Result<Self, AuthError> {
        let key = EncodingKey::from_rsa_pem(pem)
            .map_err(|e| AuthError::Key(format!("bad RSA private key: {e}")))?;
        // Check now (size 2048..8192, consistency) rather than at the first signature.
        aws_lc_rs::rsa::KeyPair::from_der(key.as_bytes()).map_err(|e| {
            AuthError::Key(format!("RSA key rejected: {e} (need 2048 to 8192 bits)"))
        })?;
        Ok(SigningKey {
            alg: KeyAlg::Rs256,
            key,
        })
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> KeyAlg {
        self.alg
    }

    /// Signs `claims` as they are, with header `{"alg","typ":"JWT"[,"kid"]}`.
    pub fn sign_claims(
        &self,
        kid: Option<&str>,
        claims: &Map<String, Value>,
    ) -> Result<String, AuthError> {
        let mut header = Header::new(match self.alg {
            KeyAlg::Rs256 => Algorithm::RS256,
            KeyAlg::Es256 => Algorithm::ES256,
        });
        header.typ = Some("JWT".to_owned());
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|e| AuthError::Key(format!("signing failed: {e}")))
    }

    /// Signs a token from `opts` issued at `now`.
    pub fn sign(&self, opts: &TokenOptions, now: SystemTime) -> Result<String, AuthError> {
        self.sign_claims(opts.kid.as_deref(), &opts.claims_at(now)?)
    }
}

/// What goes into a token made by [`sign_token`].
#[derive(Debug, Clone)]
pub struct TokenOptions {
    /// Header `kid`; `None` for the `public_key_file` key (like the existing clients).
    pub kid: Option<String>,
    /// `sub` claim: `scaler` for admins, the host name for an instance.
    pub sub: String,
    /// Lifetime: `exp = iat + ttl`.
    pub ttl: Duration,
    /// `iss` claim, if any.
    pub iss: Option<String>,
    /// `aud` claim, if any.
    pub aud: Option<String>,
    /// Further claims (e.g. `instance`); may not set sub/iat/exp/iss/aud.
    pub claims: Map<String, Value>,
}

impl Default for TokenOptions {
    fn default() -> Self {
        TokenOptions {
            kid: None,
            sub: "scaler".to_owned(),
            ttl: Duration::from_secs(60),
            iss: None,
            aud: None,
            claims: Map::new(),
        }
    }
}

impl TokenOptions {
    /// The claim set for a token issued at `now`.
    pub fn claims_at(&self, now: SystemTime) -> Result<Map<String, Value>, AuthError> {
        if let Some(k) = RESERVED.iter().find(|k| self.claims.contains_key(**k)) {
            return Err(AuthError::Key(format!(
                "claim {k:?} is set by its own option (--sub, --ttl, --iss, --aud)"
            )));
        }
        if self.ttl < Duration::from_secs(1) {
            return Err(AuthError::Key("ttl must be at least 1s".into()));
        }
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| AuthError::Key("system clock is before 1970".into()))?
            .as_secs();
        let mut claims = self.claims.clone();
        claims.insert("sub".into(), Value::from(self.sub.clone()));
        claims.insert("iat".into(), Value::from(iat));
        claims.insert(
            "exp".into(),
            Value::from(iat.saturating_add(self.ttl.as_secs())),
        );
        if let Some(iss) = &self.iss {
            claims.insert("iss".into(), Value::from(iss.clone()));
        }
        if let Some(aud) = &self.aud {
            claims.insert("aud".into(), Value::from(aud.clone()));
        }
        Ok(claims)
    }
}

/// Signs an ASAP token now with a PEM private key (alg from the key type).
pub fn sign_token(key_pem: &[u8], opts: &TokenOptions) -> Result<String, AuthError> {
    SigningKey::from_pem(key_pem)?.sign(opts, SystemTime::now())
}

/// Arguments of `jitsi-scaler token`.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// Private key (PEM): RSA PKCS#1/PKCS#8 -> RS256, EC P-256 PKCS#8/SEC1 -> ES256.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Key id for the header (the verifier looks up <key_dir>/<sha256(kid)>.pem).
    #[arg(long)]
    pub kid: Option<String>,
    /// Subject: "scaler" for admin calls, the host name for an instance.
    #[arg(long, default_value = "scaler")]
    pub sub: String,
    /// Lifetime, e.g. 60s, 5m.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Extra claim K=V (repeatable); V is JSON if it parses, else a string.
    #[arg(long = "claim", value_name = "K=V", value_parser = parse_claim)]
    pub claims: Vec<(String, Value)>,
    /// Issuer claim.
    #[arg(long)]
    pub iss: Option<String>,
    /// Audience claim.
    #[arg(long)]
    pub aud: Option<String>,
}

/// Parses `--claim K=V`: V as JSON when it parses (`5`, `true`, `["a"]`), else a string.
pub fn parse_claim(s: &str) -> Result<(String, Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not K=V"))?;
    if k.is_empty() {
        return Err(format!("{s:?} has an empty claim name"));
    }
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::from(v));
    Ok((k.to_owned(), value))
}

/// Runs `jitsi-scaler token`: reads the key and returns the signed token.
pub fn run_token(args: &TokenArgs) -> Result<String, AuthError> {
    let pem = std::fs::read(&args.key)
        .map_err(|e| AuthError::Key(format!("{}: not readable: {e}", args.key.display())))?;
    let key = SigningKey::from_pem(&pem)
        .map_err(|e| AuthError::Key(format!("{}: {e}", args.key.display())))?;
    let opts = TokenOptions {
        kid: args.kid.clone(),
        sub: args.sub.clone(),
        ttl: args.ttl,
        iss: args.iss.clone(),
        aud: args.aud.clone(),
        claims: args.claims.iter().cloned().collect(),
    };
    key.sign(&opts, SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claim_values() {
        assert_eq!(
            parse_claim("instance=gw-1"),
            Ok(("instance".into(), json!("gw-1")))
        );
        assert_eq!(parse_claim("n=5"), Ok(("n".into(), json!(5))));
        assert_eq!(parse_claim("l=[\"a\"]"), Ok(("l".into(), json!(["a"]))));
        assert_eq!(parse_claim("e="), Ok(("e".into(), json!(""))));
        assert_eq!(parse_claim("x=a=b"), Ok(("x".into(), json!("a=b"))));
        assert!(parse_claim("novalue").is_err());
        assert!(parse_claim("=v").is_err());
    }

    #[test]
    fn claims_at_sets_times_and_refuses_reserved() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let opts = TokenOptions {
            aud: Some("a".into()),
            ..TokenOptions::default()
        };
        let c = opts.claims_at(now).expect("claims");
        assert_eq!(c["sub"], json!("scaler"));
        assert_eq!(c["iat"], json!(1_800_000_000u64));
        assert_eq!(c["exp"], json!(1_800_000_060u64));
        assert_eq!(c["aud"], json!("a"));
        assert!(!c.contains_key("iss"));
        let mut bad = TokenOptions::default();
        bad.claims.insert("exp".into(), json!(1));
        assert!(matches!(bad.claims_at(now), Err(AuthError::Key(_))));
        let zero = TokenOptions {
            ttl: Duration::ZERO,
            ..TokenOptions::default()
        };
        assert!(zero.claims_at(now).is_err());
    }

    #[test]
    fn non_keys_are_refused_clearly() {
        for (pem, needle) in [
            (&b"hello"[..], "not a PEM"),
            (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "public key"),
            (
                b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
                "encrypted",
            ),
            (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "unexpected PEM"),
        ] {
            let e = SigningKey::from_pem(pem).expect_err("refused").to_string();
            assert!(e.contains(needle), "{e}");
        }
    }
}
