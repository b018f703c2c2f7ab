//! Public keys: PEM parsing with algorithm pinning, and the `kid` key store
//! (key directory, key server, bounded cache).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{self, ParsedPublicKey};
use base64::Engine as _;

use super::AuthError;

/// At most this many `kid`s are cached (found or not found).
pub(crate) const KEY_CACHE_MAX: usize = 64;
/// A `kid` that was looked up and not found is remembered this long at most.
const NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// Longest accepted `kid`; real ones are short names like `jitsi/default`.
const MAX_KID_LEN: usize = 256;
/// Largest PEM accepted from the key server.
const MAX_PEM_BYTES: usize = 16 * 1024;
/// Concurrent key-server fetches; bounds what unauthenticated requests can cause.
const MAX_FETCHES: usize = 4;

/// Object identifiers (DER, with tag and length) used to classify SPKI keys.
const OID_RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// The only two signature algorithms accepted; each key is pinned to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RSA keys of 2048 to 8192 bits).
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
}

impl KeyAlg {
    /// The JWS `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlg::Rs256 => "RS256",
            KeyAlg::Es256 => "ES256",
        }
    }
}

/// A public key pinned to its algorithm.
#[derive(Debug, Clone)]
pub(crate) struct VerifyKey {
    pub(crate) alg: KeyAlg,
    /// Parsed once: parsing an RSA key again for every token cost about as much as the
    /// signature check itself.
    key: ParsedPublicKey,
}

impl VerifyKey {
    /// Checks `signature` over `message` with this key's (pinned) algorithm.
    pub(crate) fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        self.key.verify_sig(message, sig).is_ok()
    }

    /// Pins `bytes` (PKCS#1 `RSAPublicKey` DER for RS256, the uncompressed point for ES256)
    /// to `alg` and parses them.
    fn new(alg: KeyAlg, bytes: &[u8]) -> Result<Self, String> {
        let verification: &'static dyn signature::VerificationAlgorithm = match alg {
            KeyAlg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            KeyAlg::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
        };
        let key = ParsedPublicKey::new(verification, bytes)
            .map_err(|e| format!("public key rejected: {e}"))?;
        Ok(VerifyKey { alg, key })
    }
}

/// The first PEM block of a file: label and DER body.
pub(crate) struct PemBlock {
    pub(crate) label: String,
    pub(crate) der: Vec<u8>,
    pub(crate) encrypted: bool,
}

/// Finds the first `-----BEGIN X-----` ... `-----END X-----` block.
pub(crate) fn first_pem_block(input: &[u8]) -> Option<PemBlock> {
    let text = std::str::from_utf8(input).ok()?;
    let mut lines = text.lines().map(str::trim);
    let label = lines.find_map(|l| l.strip_prefix("-----BEGIN ")?.strip_suffix("-----"))?;
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    let mut encrypted = false;
    for line in lines {
        if line == end {
            let der = base64::engine::general_purpose::STANDARD
                .decode(body)
                .ok()?;
            return Some(PemBlock {
                label: label.to_owned(),
                der,
                encrypted,
            });
        }
        if line.contains(':') {
            // RFC 1421 headers, e.g. "Proc-Type: 4,ENCRYPTED".
            encrypted |= line.contains("ENCRYPTED");
        } else {
            body.push_str(line);
        }
    }
    None
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Parses a PEM public key: RSA (SPKI or PKCS#1) -> RS256, EC P-256 (SPKI) -> ES256.
pub(crate) fn parse_public_pem(pem: &[u8]) -> Result<VerifyKey, String> {
    let block = first_pem_block(pem).ok_or("not a PEM file")?;
    match block.label.as_str() {
        "PUBLIC KEY" if contains(&block.der, OID_RSA_ENCRYPTION) => rsa_public(&block.der),
        "RSA PUBLIC KEY" => rsa_public(&block.der),
        "PUBLIC KEY" if contains(&block.der, OID_EC_PUBLIC_KEY) => {
            if !contains(&block.der, OID_P256) {
                return Err("EC key is not on curve P-256 (only ES256 is accepted)".into());
            }
            let key = jsonwebtoken::DecodingKey::from_ec_pem(pem)
                .map_err(|e| format!("bad EC public key: {e}"))?;
            let point = key
                .try_get_as_bytes()
                .map_err(|e| format!("bad EC public key: {e}"))?;
            if point.len() != 65 || point[0] != 0x04 {
                return Err("EC public key is not an uncompressed P-256 point".into());
            }
            VerifyKey::new(KeyAlg::Es256, point)
        }
        "PUBLIC KEY" => Err("public key is neither RSA nor EC P-256".into()),
        l if l.contains("PRIVATE KEY") => Err(
            "is a private key; give the public key (openssl pkey -in KEY -pubout -out KEY.pub.pem)"
                .into(),
        ),
        "CERTIFICATE" => Err(
            "is a certificate; extract the public key (openssl x509 -in CERT -pubkey -noout)"
                .into(),
        ),
        other => Err(format!("unexpected PEM block {other:?}; need a PUBLIC KEY")),
    }
}

fn rsa_public(der: &[u8]) -> Result<VerifyKey, String> {
    let key =
        aws_lc_rs::rsa::PublicKey::from_der(der).map_err(|e| format!("bad RSA public key: {e}"))?;
    let bits = key.modulus_len() * 8;
    if !(2048..=8192).contains(&bits) {
        return Err(format!("RSA key has {bits} bits; RS256 needs 2048 to 8192"));
    }
    VerifyKey::new(KeyAlg::Rs256, key.as_ref())
}

/// Reads and parses a public key file, naming the file in the error.
pub(crate) fn load_public_key_file(path: &Path) -> Result<VerifyKey, AuthError> {
    let pem = std::fs::read(path)
        .map_err(|e| AuthError::Key(format!("{}: not readable: {e}", path.display())))?;
    parse_public_pem(&pem).map_err(|e| AuthError::Key(format!("{}: {e}", path.display())))
}

/// File name of a `kid`'s public key in the ASAP layout: `<hex sha256(kid)>.pem`.
pub fn kid_file_name(kid: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, kid.as_bytes());
    let mut name = String::with_capacity(68);
    for b in digest.as_ref() {
        name.push_str(&format!("{b:02x}"));
    }
    name.push_str(".pem");
    name
}

struct CacheEntry {
    key: Option<Arc<VerifyKey>>,
    at: Instant,
}

/// Where keys named by `kid` come from.
pub(crate) struct KeyStore {
    default_key: Option<Arc<VerifyKey>>,
    key_dir: Option<PathBuf>,
    server: Option<KeyServer>,
    ttl: Duration,
    cache: Mutex<HashMap<String, CacheEntry>>,
}

struct KeyServer {
    client: reqwest::Client,
    base: String,
    timeout: Duration,
    fetches: tokio::sync::Semaphore,
}

/// What the key server said about a kid.
enum Fetched {
    Key(Arc<VerifyKey>),
    Absent,
}

impl KeyStore {
    /// Builds the store; the default key is loaded now, `kid` keys on demand.
    pub(crate) fn new(
        default_key: Option<VerifyKey>,
        key_dir: Option<PathBuf>,
        key_server_url: Option<&str>,
        timeout: Duration,
        ttl: Duration,
    ) -> Result<Self, AuthError> {
        let server = match key_server_url {
            None => None,
            Some(url) => {
                let client = reqwest::Client::builder()
                    .connect_timeout(timeout)
                    .timeout(timeout)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| AuthError::Config(format!("auth.key_server_url: client: {e}")))?;
                Some(KeyServer {
                    client,
                    base: url.trim_end_matches('/').to_owned(),
                    timeout,
                    fetches: tokio::sync::Semaphore::new(MAX_FETCHES),
                })
            }
        };
        Ok(KeyStore {
            default_key: default_key.map(Arc::new),
            key_dir,
            server,
            ttl,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The key for a token: `public_key_file` without `kid`, else by `kid`.
    pub(crate) async fn key_for(&self, kid: Option<&str>) -> Result<Arc<VerifyKey>, AuthError> {
        let Some(kid) = kid else {
            return self.default_key.clone().ok_or(AuthError::InvalidToken(
                "token has no kid and no default key is configured",
            ));
        };
        if kid.is_empty() || kid.len() > MAX_KID_LEN {
            return Err(AuthError::InvalidToken("bad kid"));
        }
        if let Some(cached) = self.cached(kid) {
            return cached.ok_or(AuthError::InvalidToken("unknown kid"));
        }
        let file = kid_file_name(kid);
        if let Some(dir) = &self.key_dir {
            let path = dir.join(&file);
            match tokio::fs::read(&path).await {
                Ok(pem) => {
                    let key = parse_public_pem(&pem).map_err(|e| {
                        tracing::warn!(path = %path.display(), error = %e, "unusable key in key_dir");
                        AuthError::InvalidToken("key for kid is unusable")
                    })?;
                    let key = Arc::new(key);
                    self.remember(kid, Some(key.clone()));
                    return Ok(key);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    // Not cached: a permission fix takes effect at once.
                    tracing::warn!(path = %path.display(), error = %e, "cannot read key_dir key");
                    return Err(AuthError::InvalidToken("key for kid is unusable"));
                }
            }
        }
        if let Some(server) = &self.server {
            return match server.fetch(&file).await? {
                Fetched::Key(key) => {
                    self.remember(kid, Some(key.clone()));
                    Ok(key)
                }
                Fetched::Absent => {
                    self.remember(kid, None);
                    Err(AuthError::InvalidToken("unknown kid"))
                }
            };
        }
        self.remember(kid, None);
        Err(AuthError::InvalidToken("unknown kid"))
    }

    /// `Some(Some(key))` cached key, `Some(None)` cached absence, `None` not cached.
    fn cached(&self, kid: &str) -> Option<Option<Arc<VerifyKey>>> {
        let map = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.get(kid)?;
        let ttl = if entry.key.is_some() {
            self.ttl
        } else {
            self.ttl.min(NEGATIVE_TTL)
        };
        (entry.at.elapsed() < ttl).then(|| entry.key.clone())
    }

    fn remember(&self, kid: &str, key: Option<Arc<VerifyKey>>) {
        let mut map = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= KEY_CACHE_MAX && !map.contains_key(kid) {
            // Evict absences before keys, oldest first, so a flood of made-up
            // kids cannot push out the keys that real clients use.
            let victim = map
                .iter()
                .min_by_key(|(_, e)| (e.key.is_some(), e.at))
                .map(|(k, _)| k.clone());
            if let Some(v) = victim {
                map.remove(&v);
            }
        }
        map.insert(
            kid.to_owned(),
            CacheEntry {
                key,
                at: Instant::now(),
            },
        );
    }

    /// Number of cached kids (for tests and metrics).
    pub(crate) fn cached_len(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl KeyServer {
    async fn fetch(&self, file: &str) -> Result<Fetched, AuthError> {
        const UNAVAILABLE: AuthError = AuthError::InvalidToken("key server unavailable");
        let _permit = tokio::time::timeout(self.timeout, self.fetches.acquire())
            .await
            .map_err(|_| AuthError::InvalidToken("key server busy"))?
            .map_err(|_| UNAVAILABLE)?;
        let url = format!("{}/{file}", self.base);
        let mut resp = self.client.get(&url).send().await.map_err(|e| {
            tracing::warn!(%url, error = %e, "key server fetch failed");
            UNAVAILABLE
        })?;
        match resp.status() {
            s if s.is_success() => {}
            reqwest::StatusCode::NOT_FOUND => return Ok(Fetched::Absent),
            s => {
                tracing::warn!(%url, status = %s, "key server answered an error");
                return Err(UNAVAILABLE);
            }
        }
        let mut pem = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    pem.extend_from_slice(&chunk);
                    if pem.len() > MAX_PEM_BYTES {
                        tracing::warn!(%url, "key server answer too large");
                        return Err(UNAVAILABLE);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%url, error = %e, "key server read failed");
                    return Err(UNAVAILABLE);
                }
            }
        }
        match parse_public_pem(&pem) {
            Ok(key) => Ok(Fetched::Key(Arc::new(key))),
            Err(e) => {
                tracing::warn!(%url, error = %e, "key server served an unusable key");
                Err(AuthError::InvalidToken("key for kid is unusable"))
            }
        }
    }
}
