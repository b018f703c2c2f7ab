//! Authenticator tests with key pairs made by the `openssl` CLI at test time.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use super::*;

/// PEM files generated once per test run (kept in memory; the temp dir is gone).
struct Keys {
    rsa_p8: Vec<u8>,
    rsa_p1: Vec<u8>,
    rsa_pub: Vec<u8>,
    rsa2_p8: Vec<u8>,
    ec_sec1: Vec<u8>,
    ec_p8: Vec<u8>,
    ec_pub: Vec<u8>,
    ec384_pub: Vec<u8>,
    rsa1024_pub: Vec<u8>,
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl CLI runs");
    assert!(status.success(), "openssl {args:?} failed");
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let rsa = [
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ];
        openssl(d, &[&rsa[..], &["-out", "rsa.pem"]].concat());
        openssl(d, &[&rsa[..], &["-out", "rsa2.pem"]].concat());
        openssl(
            d,
            &["rsa", "-in", "rsa.pem", "-traditional", "-out", "rsa1.pem"],
        );
        openssl(d, &["pkey", "-in", "rsa.pem", "-pubout", "-out", "rsa.pub"]);
        openssl(
            d,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "ec.sec1",
            ],
        );
        openssl(
            d,
            &[
                "pkcs8", "-topk8", "-nocrypt", "-in", "ec.sec1", "-out", "ec.p8",
            ],
        );
        openssl(d, &["pkey", "-in", "ec.sec1", "-pubout", "-out", "ec.pub"]);
        openssl(
            d,
            &[
                "ecparam",
                "-name",
                "secp384r1",
                "-genkey",
                "-noout",
                "-out",
                "ec384",
            ],
        );
        openssl(d, &["pkey", "-in", "ec384", "-pubout", "-out", "ec384.pub"]);
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:1024",
                "-out",
                "small",
            ],
        );
        openssl(d, &["pkey", "-in", "small", "-pubout", "-out", "small.pub"]);
        let read = |n: &str| std::fs::read(d.join(n)).expect("key file");
        Keys {
            rsa_p8: read("rsa.pem"),
            rsa_p1: read("rsa1.pem"),
            rsa_pub: read("rsa.pub"),
            rsa2_p8: read("rsa2.pem"),
            ec_sec1: read("ec.sec1"),
            ec_p8: read("ec.p8"),
            ec_pub: read("ec.pub"),
            ec384_pub: read("ec384.pub"),
            rsa1024_pub: read("small.pub"),
        }
    })
}

/// An authenticator over a public key file, plus the dir that holds it.
fn authenticator(
    pub_pem: &[u8],
    tweak: impl FnOnce(&mut AuthConfig),
) -> (Authenticator, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("scaler.pem");
    std::fs::write(&path, pub_pem).expect("write key");
    let mut cfg = AuthConfig {
        public_key_file: Some(path),
        ..AuthConfig::default()
    };
    tweak(&mut cfg);
    (
        Authenticator::from_config(&cfg).expect("authenticator"),
        dir,
    )
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .expect("clock")
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
}

/// A token with any header, signed by `key` with `alg` (whatever the header says).
fn raw_token(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let msg = format!("{}.{}", b64(header), b64(claims));
    let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), key, alg).expect("sign");
    format!("{msg}.{sig}")
}

fn rs256(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(&keys().rsa_p8).expect("rsa key");
    raw_token(
        &json!({"alg": "RS256", "typ": "JWT"}),
        claims,
        &key,
        Algorithm::RS256,
    )
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("hv"),
    );
    h
}

fn peer(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("ip"), 50000)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// Asserts a 401 with the given challenge and returns the reason.
fn assert_401(r: Result<Caller, AuthError>, challenge: &str) -> String {
    let e = r.expect_err("must be refused");
    let reason = e.to_string();
    let resp = e.into_response();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{reason}");
    let got = resp
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok());
    assert_eq!(got, Some(challenge), "{reason}");
    reason
}

/// The caller `a` sees in a fresh RS256 token of `sub` with `claims` added, sent from
/// 192.0.2.7; fails if refused.
async fn caller(a: &Authenticator, sub: &str, claims: Value) -> Caller {
    let mut all = fresh();
    all["sub"] = json!(sub);
    if let (Some(all), Some(more)) = (all.as_object_mut(), claims.as_object()) {
        all.extend(more.clone());
    }
    let tok = rs256(&all);
    let from = peer("192.0.2.7");
    a.authenticate(&bearer(&tok), from).await.expect("ok")
}

fn fresh() -> Value {
    let t = now_secs();
    json!({"sub": "scaler", "iat": t, "exp": t + 60})
}

#[tokio::test]
async fn accepts_sign_token_and_makes_admin() {
    let (a, _d) = authenticator(&keys().rsa_pub, |_| {});
    let tok = sign_token(&keys().rsa_p8, &TokenOptions::default()).expect("token");
    let c = a
        .authenticate(&bearer(&tok), peer("192.0.2.10"))
        .await
        .expect("accepted");
    assert_eq!(c.role, Role::Admin);
    assert_eq!(c.subject.as_deref(), Some("scaler"));
    assert_eq!(c.client_ip, ip("192.0.2.10"));
    assert!(c.require_admin().is_ok());
    assert!(c.may_remove("anything", &[]).is_ok());
    // PKCS#1 private key signs the same way
    let tok = sign_token(&keys().rsa_p1, &TokenOptions::default()).expect("pkcs1 token");
    assert!(
        a.authenticate(&bearer(&tok), peer("192.0.2.10"))
            .await
            .is_ok()
    );
    // lower-case scheme is fine
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("bearer  {tok}")).expect("hv"),
    );
    assert!(a.authenticate(&h, peer("192.0.2.10")).await.is_ok());
}

#[tokio::test]
async fn refusals_are_401_with_challenge() {
    let k = keys();
    let (a, _d) = authenticator(&k.rsa_pub, |_| {});
    let t = now_secs();
    let rsa = EncodingKey::from_rsa_pem(&k.rsa_p8).expect("rsa");
    let other = EncodingKey::from_rsa_pem(&k.rsa2_p8).expect("rsa2");
    let hdr = json!({"alg": "RS256", "typ": "JWT"});
    let good = rs256(&fresh());
    let (gh, gp) = {
        let mut it = good.split('.');
        (
            it.next().expect("h").to_owned(),
            it.next().expect("p").to_owned(),
        )
    };
    let not_json = URL_SAFE_NO_PAD.encode(b"{nope");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            rs256(&json!({"sub": "scaler", "iat": t - 200, "exp": t - 100})),
            "token expired",
        ),
        (
            "iat future",
            rs256(&json!({"sub": "scaler", "iat": t + 120, "exp": t + 180})),
            "iat",
        ),
        (
            "nbf future",
            rs256(&json!({"sub": "scaler", "nbf": t + 120, "exp": t + 180})),
            "nbf",
        ),
        (
            "lifetime",
            rs256(&json!({"sub": "scaler", "iat": t, "exp": t + 7200})),
            "lifetime",
        ),
        (
            "lifetime no iat",
            rs256(&json!({"sub": "scaler", "exp": t + 7200})),
            "lifetime",
        ),
        (
            "no exp",
            rs256(&json!({"sub": "scaler", "iat": t})),
            "exp is required",
        ),
        (
            "wrong key",
            raw_token(&hdr, &fresh(), &other, Algorithm::RS256),
            "bad signature",
        ),
        (
            "unknown kid",
            raw_token(
                &json!({"alg": "RS256", "kid": "nobody"}),
                &fresh(),
                &rsa,
                Algorithm::RS256,
            ),
            "unknown kid",
        ),
        (
            "alg none",
            format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&fresh())),
            "alg none",
        ),
        (
            "alg none signed",
            format!(
                "{}.{}.c2ln",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&fresh())
            ),
            "alg none",
        ),
        (
            "HS256 with the public key as secret",
            raw_token(
                &json!({"alg": "HS256", "typ": "JWT"}),
                &fresh(),
                &EncodingKey::from_secret(&k.rsa_pub),
                Algorithm::HS256,
            ),
            "HMAC",
        ),
        ("truncated", good[..good.len() - 10].to_owned(), "signature"),
        ("truncated to two parts", format!("{gh}.{gp}"), "three"),
        (
            "missing header part",
            format!("{gp}.{}", &good[good.rfind('.').expect("dot") + 1..]),
            "three",
        ),
        (
            "empty header part",
            format!(".{gp}.c2ln"),
            "header is not a JSON object",
        ),
        (
            "non-base64 header",
            format!("{gh}*.{gp}.c2ln"),
            "header is not base64url",
        ),
        (
            "non-base64 payload",
            format!("{gh}.{gp}$.c2ln"),
            "payload is not base64url",
        ),
        (
            "non-base64 signature",
            format!("{gh}.{gp}.a+b/"),
            "signature is not base64url",
        ),
        (
            "non-JSON header",
            format!("{not_json}.{gp}.c2ln"),
            "header is not a JSON object",
        ),
        (
            "non-JSON payload",
            format!("{gh}.{not_json}.c2ln"),
            "payload is not a JSON object",
        ),
        (
            "typ",
            raw_token(
                &json!({"alg": "RS256", "typ": "at+jwt"}),
                &fresh(),
                &rsa,
                Algorithm::RS256,
            ),
            "typ",
        ),
        ("garbage", "hello".to_owned(), "three"),
    ];
    for (name, token, want) in cases {
        let reason = assert_401(
            a.authenticate(&bearer(&token), peer("192.0.2.1")).await,
            CHALLENGE_INVALID,
        );
        assert!(
            reason.contains(want),
            "{name}: got {reason:?}, want {want:?}"
        );
        assert!(
            !reason.contains(&token) || token.is_empty(),
            "{name}: token echoed"
        );
    }
}

#[tokio::test]
async fn missing_or_wrong_authorization_is_401() {
    let (a, _d) = authenticator(&keys().rsa_pub, |_| {});
    let p = peer("192.0.2.1");
    let r = assert_401(
        a.authenticate(&HeaderMap::new(), p).await,
        CHALLENGE_MISSING,
    );
    assert!(r.contains("no Authorization"), "{r}");
    let tok = rs256(&fresh());
    for value in [
        format!("Basic {tok}"),
        tok.clone(),
        "Bearer".to_owned(),
        "Bearer   ".to_owned(),
    ] {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&value).expect("hv"),
        );
        assert_401(a.authenticate(&h, p).await, CHALLENGE_MISSING);
    }
    let mut two = bearer(&tok);
    two.append(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {tok}")).expect("hv"),
    );
    assert_401(a.authenticate(&two, p).await, CHALLENGE_INVALID);
    let mut bad = HeaderMap::new();
    bad.insert(
        header::AUTHORIZATION,
        HeaderValue::from_bytes(b"Bearer \xff\xfe").expect("hv"),
    );
    assert_401(a.authenticate(&bad, p).await, CHALLENGE_INVALID);
    let huge = format!("{}.{}.c2ln", "a".repeat(9000), "b");
    let r = assert_401(a.authenticate(&bearer(&huge), p).await, CHALLENGE_INVALID);
    assert!(r.contains("too large"));
}

#[tokio::test]
async fn roles_and_require_admin() {
    let (a, _d) = authenticator(&keys().rsa_pub, |_| {});
    let c = caller(&a, "gw-1.example.org", json!({})).await;
    assert_eq!(c.role, Role::Instance);
    let e = c.require_admin().expect_err("403");
    assert_eq!(e.into_response().status(), StatusCode::FORBIDDEN);
    // no sub at all: instance, and nothing to bind by claim
    let t = now_secs();
    let tok = rs256(&json!({"iat": t, "exp": t + 60}));
    let c = a
        .authenticate(&bearer(&tok), peer("192.0.2.7"))
        .await
        .expect("ok");
    assert_eq!((c.role, c.subject), (Role::Instance, None));
}

#[tokio::test]
async fn admin_networks_demote_admin_subjects_elsewhere() {
    let (a, _d) = authenticator(&keys().rsa_pub, |c| {
        c.admin_networks = vec!["10.1.0.0/16".into()]
    });
    let tok = rs256(&fresh());
    let inside = a
        .authenticate(&bearer(&tok), peer("10.1.2.3"))
        .await
        .expect("ok");
    assert_eq!(inside.role, Role::Admin);
    let outside = a
        .authenticate(&bearer(&tok), peer("192.0.2.9"))
        .await
        .expect("ok");
    assert_eq!(outside.role, Role::Instance);
    assert!(outside.may_remove("192.0.2.9", &[]).is_ok());
    assert!(outside.may_remove("192.0.2.10", &[]).is_err());
}

#[tokio::test]
async fn address_binding() {
    let (a, _d) = authenticator(&keys().rsa_pub, |c| {
        c.trusted_proxies.push("10.9.0.0/16".into())
    });
    let t = now_secs();
    let tok = rs256(&json!({"sub": "gw-1", "iat": t, "exp": t + 60}));
    let c = caller(&a, "gw-1", json!({})).await;
    assert_eq!(c.binding, InstanceBinding::Address);
    assert!(c.may_remove("192.0.2.7", &[]).is_ok());
    assert!(c.may_remove(" 192.0.2.7 ", &[]).is_ok());
    assert!(c.may_remove("gw-1.example.org", &[ip("192.0.2.7")]).is_ok());
    assert!(
        c.may_remove("gw-1.example.org", &[ip("::ffff:192.0.2.7")])
            .is_ok()
    );
    let forbidden = |r: Result<(), AuthError>| {
        assert_eq!(
            r.expect_err("403").into_response().status(),
            StatusCode::FORBIDDEN
        )
    };
    forbidden(c.may_remove("192.0.2.8", &[]));
    forbidden(c.may_remove("gw-1", &[])); // name alone proves nothing with address binding
    forbidden(c.may_remove("gw-2.example.org", &[ip("192.0.2.8")]));

    // X-Forwarded-For from an untrusted peer is ignored ...
    let mut h = bearer(&tok);
    h.insert("x-forwarded-for", HeaderValue::from_static("192.0.2.8"));
    let c = a.authenticate(&h, peer("192.0.2.7")).await.expect("ok");
    assert_eq!(c.client_ip, ip("192.0.2.7"));
    forbidden(c.may_remove("192.0.2.8", &[]));
    // ... and believed from nginx on loopback, through a trusted haproxy
    h.insert(
        "x-forwarded-for",
        HeaderValue::from_static("6.6.6.6, 192.0.2.8, 10.9.0.2"),
    );
    let c = a.authenticate(&h, peer("127.0.0.1")).await.expect("ok");
    assert_eq!(c.client_ip, ip("192.0.2.8"));
    assert!(c.may_remove("192.0.2.8", &[]).is_ok());
    forbidden(c.may_remove("6.6.6.6", &[]));
    assert_eq!(a.client_ip(&h, peer("192.0.2.99")), ip("192.0.2.99"));
}

#[tokio::test]
async fn claim_binding() {
    let (a, _d) = authenticator(&keys().rsa_pub, |c| {
        c.instance_binding = InstanceBinding::Claim
    });
    let forbidden = |r: Result<(), AuthError>| {
        assert_eq!(
            r.expect_err("403").into_response().status(),
            StatusCode::FORBIDDEN
        )
    };
    let c = caller(&a, "agent", json!({"instance": "gw-1.example.org"})).await;
    assert_eq!(c.instance.as_deref(), Some("gw-1.example.org"));
    assert!(c.may_remove("gw-1.example.org", &[]).is_ok());
    assert!(c.may_remove("GW-1.Example.Org.", &[]).is_ok());
    assert!(
        c.may_remove("gw-1", &[]).is_ok(),
        "short name of the claimed FQDN"
    );
    forbidden(c.may_remove("gw-2.example.org", &[]));
    forbidden(c.may_remove("gw-1.other.org", &[]));
    forbidden(c.may_remove("gw-10", &[]));
    forbidden(c.may_remove("192.0.2.7", &[ip("192.0.2.7")])); // the address is not the claim
    forbidden(c.may_remove("", &[]));
    // without the claim, sub names the host
    let c = caller(&a, "gw-3", json!({})).await;
    assert!(c.may_remove("gw-3.example.org", &[]).is_ok());
    forbidden(c.may_remove("gw-4.example.org", &[]));
    // IP literals compare as IPs, and are never "short names"
    let c = caller(&a, "10.0.0.5", json!({})).await;
    assert!(c.may_remove("10.0.0.5", &[]).is_ok());
    let c = caller(&a, "10", json!({})).await;
    forbidden(c.may_remove("10.0.0.5", &[]));
}

#[tokio::test]
async fn es256_verifies_and_algorithms_are_pinned() {
    let k = keys();
    let (ec, _d) = authenticator(&k.ec_pub, |_| {});
    for pem in [&k.ec_p8, &k.ec_sec1] {
        let signer = SigningKey::from_pem(pem).expect("ec key");
        assert_eq!(signer.alg(), KeyAlg::Es256);
        let tok = signer
            .sign(&TokenOptions::default(), SystemTime::now())
            .expect("token");
        let head = tok
            .split('.')
            .next()
            .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok());
        let head: Value = serde_json::from_slice(&head.expect("header")).expect("json");
        assert_eq!(
            (&head["alg"], &head["typ"]),
            (&json!("ES256"), &json!("JWT"))
        );
        let c = ec
            .authenticate(&bearer(&tok), peer("192.0.2.1"))
            .await
            .expect("ES256 ok");
        assert_eq!(c.role, Role::Admin);
    }
    // RSA signature under an ES256 header: refused by the EC key ...
    let rsa = EncodingKey::from_rsa_pem(&k.rsa_p8).expect("rsa");
    let forged = raw_token(&json!({"alg": "ES256"}), &fresh(), &rsa, Algorithm::RS256);
    let r = assert_401(
        ec.authenticate(&bearer(&forged), peer("192.0.2.1")).await,
        CHALLENGE_INVALID,
    );
    assert!(r.contains("bad signature"), "{r}");
    // ... and by the RSA key, whose algorithm is RS256 whatever the header says
    let (rs, _d2) = authenticator(&k.rsa_pub, |_| {});
    let r = assert_401(
        rs.authenticate(&bearer(&forged), peer("192.0.2.1")).await,
        CHALLENGE_INVALID,
    );
    assert!(r.contains("does not match the key"), "{r}");
    // an ES256 token against the RSA key is refused too
    let es = SigningKey::from_pem(&k.ec_p8)
        .expect("ec")
        .sign(&TokenOptions::default(), SystemTime::now());
    let r = assert_401(
        rs.authenticate(&bearer(&es.expect("tok")), peer("192.0.2.1"))
            .await,
        CHALLENGE_INVALID,
    );
    assert!(r.contains("does not match the key"), "{r}");
}

#[tokio::test]
async fn key_dir_by_kid_hash() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(kid_file_name("jitsi/default")), &k.rsa_pub).expect("write");
    let cfg = AuthConfig {
        key_dir: Some(dir.path().to_owned()),
        ..AuthConfig::default()
    };
    let a = Authenticator::from_config(&cfg).expect("authenticator");
    let signer = SigningKey::from_pem(&k.rsa_p8).expect("key");
    let opts = TokenOptions {
        kid: Some("jitsi/default".into()),
        ..TokenOptions::default()
    };
    let with_kid = || signer.sign(&opts, SystemTime::now()).expect("tok");
    let from = peer("192.0.2.1");
    let tok = with_kid();
    assert!(a.authenticate(&bearer(&tok), from).await.is_ok());
    // cached: works after the file is gone
    std::fs::remove_dir_all(dir.path()).expect("rm");
    assert!(a.authenticate(&bearer(&tok), from).await.is_ok());
    // no kid and no public_key_file
    let tok = signer
        .sign(&TokenOptions::default(), SystemTime::now())
        .expect("tok");
    let r = assert_401(
        a.authenticate(&bearer(&tok), peer("192.0.2.1")).await,
        CHALLENGE_INVALID,
    );
    assert!(r.contains("no kid"), "{r}");
    // many made-up kids: the cache stays bounded
    let rsa = EncodingKey::from_rsa_pem(&k.rsa_p8).expect("rsa");
    for i in 0..200 {
        let t = raw_token(
            &json!({"alg": "RS256", "kid": format!("k{i}")}),
            &fresh(),
            &rsa,
            Algorithm::RS256,
        );
        assert_401(
            a.authenticate(&bearer(&t), peer("192.0.2.1")).await,
            CHALLENGE_INVALID,
        );
        assert!(a.cached_keys() <= keys::KEY_CACHE_MAX);
    }
    let tok = with_kid();
    let accepted = a.authenticate(&bearer(&tok), from).await.is_ok();
    assert!(accepted, "real key not evicted");
}

#[test]
fn kid_file_name_is_sha256_hex() {
    // printf 'jitsi/default' | sha256sum
    let out = Command::new("sh")
        .args(["-c", "printf 'jitsi/default' | openssl dgst -sha256 -r"])
        .output()
        .expect("openssl");
    let hex = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .map(str::to_owned);
    assert_eq!(
        Some(kid_file_name("jitsi/default")),
        hex.map(|h| format!("{h}.pem"))
    );
}

#[test]
fn bad_public_keys_are_refused_at_start() {
    let k = keys();
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, pem, needle) in [
        ("p384", &k.ec384_pub, "P-256"),
        ("small", &k.rsa1024_pub, "1024 bits"),
        ("private", &k.rsa_p8, "private key"),
        ("junk", &b"junk".to_vec(), "not a PEM"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).expect("write");
        let cfg = AuthConfig {
            public_key_file: Some(path),
            ..AuthConfig::default()
        };
        let e = Authenticator::from_config(&cfg)
            .expect_err("refused")
            .to_string();
        assert!(
            e.contains("auth.public_key_file") && e.contains(needle),
            "{name}: {e}"
        );
    }
    // No key at all starts (so serve runs on the embedded defaults) with a warning, and
    // refuses every token.
    let cfg = AuthConfig::default();
    assert!(!cfg.warnings().is_empty());
    assert!(Authenticator::from_config(&cfg).is_ok());
}

#[test]
fn signing_key_formats() {
    let k = keys();
    for (pem, alg) in [
        (&k.rsa_p8, KeyAlg::Rs256),
        (&k.rsa_p1, KeyAlg::Rs256),
        (&k.ec_p8, KeyAlg::Es256),
        (&k.ec_sec1, KeyAlg::Es256),
    ] {
        assert_eq!(SigningKey::from_pem(pem).expect("key").alg(), alg);
    }
    let e = SigningKey::from_pem(&k.rsa_pub)
        .expect_err("public")
        .to_string();
    assert!(e.contains("public key"), "{e}");
}

#[tokio::test]
async fn mode_none_is_admin_without_reading() {
    let cfg = AuthConfig {
        mode: AuthMode::None,
        ..AuthConfig::default()
    };
    let a = Authenticator::from_config(&cfg).expect("authenticator");
    let c = a
        .authenticate(&HeaderMap::new(), peer("192.0.2.1"))
        .await
        .expect("admin");
    assert_eq!(c.role, Role::Admin);
    let c = a
        .authenticate(&bearer("garbage"), peer("192.0.2.1"))
        .await
        .expect("admin");
    assert!(c.claims.is_empty() && c.subject.is_none());
}

#[tokio::test]
async fn remove_rate_limit_is_429() {
    let (a, _d) = authenticator(&keys().rsa_pub, |c| {
        c.remove_burst = 2;
        c.remove_rate_per_minute = 6;
    });
    let who = ip("192.0.2.1");
    assert!(a.check_remove_rate(who).is_ok());
    assert!(a.check_remove_rate(who).is_ok());
    let e = a.check_remove_rate(who).expect_err("limited");
    let r = e.into_response();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()),
        Some(&b"10"[..])
    );
    assert!(a.check_remove_rate(ip("192.0.2.2")).is_ok());
}

#[test]
fn shareable_across_tasks() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: T) {}
    let cfg = AuthConfig {
        mode: AuthMode::None,
        ..AuthConfig::default()
    };
    let a = Authenticator::from_config(&cfg).expect("authenticator");
    send_sync(&a);
    let h = HeaderMap::new();
    send(a.authenticate(&h, peer("127.0.0.1")));
}

/// Runs `check` on a current-thread runtime with an authenticator of the RSA key and a token
/// of `scaler` valid from 1 000 000 000 s to 60 s later.
fn at_fixed_times<F: std::future::Future<Output = ()>>(
    check: impl FnOnce(Authenticator, String) -> F,
) {
    let (a, _d) = authenticator(&keys().rsa_pub, |_| {});
    let tok = rs256(&json!({"sub": "scaler", "iat": 1_000_000_000, "exp": 1_000_000_060}));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("rt");
    rt.block_on(check(a, tok));
}

/// The time `s` seconds after the epoch.
fn at(s: u64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

#[test]
fn time_is_injectable() {
    at_fixed_times(|a, tok| async move {
        assert!(
            a.authenticate_at(&bearer(&tok), peer("192.0.2.1"), at(1_000_000_030))
                .await
                .is_ok()
        );
        assert!(
            a.authenticate_at(&bearer(&tok), peer("192.0.2.1"), at(1_000_000_200))
                .await
                .is_err()
        );
    });
}

#[test]
fn verified_tokens_are_remembered_within_bounds_and_still_expire() {
    at_fixed_times(|a, tok| async move {
        for _ in 0..3 {
            assert!(a.verify_token(&tok, at(1_000_000_030)).await.is_ok());
        }
        assert_eq!(a.remembered_tokens(), 1);
        // Remembered, but the time rules apply at every use.
        assert!(a.verify_token(&tok, at(1_000_000_200)).await.is_err());
        // A tampered token is never taken from the cache.
        let mut bad = tok.clone();
        bad.push('A');
        assert!(a.verify_token(&bad, at(1_000_000_030)).await.is_err());
        for n in 0..(TOKEN_CACHE_MAX + 10) {
            let t = rs256(
                &json!({"sub": format!("gw-{n}"), "iat": 1_000_000_000, "exp": 1_000_000_060}),
            );
            assert!(a.verify_token(&t, at(1_000_000_030)).await.is_ok());
        }
        assert!(a.remembered_tokens() <= TOKEN_CACHE_MAX);
    });
}
