//! ASAP tokens end to end: the existing shell client's tokens, the `token`
//! command of the real binary, and a key server on 127.0.0.1.
//! Key pairs are made with the `openssl` CLI in a temp dir at test time.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use jitsi_scaler::auth::{
    AuthConfig, AuthError, Authenticator, CHALLENGE_INVALID, Caller, InstanceBinding, Role,
    SigningKey, TokenOptions, kid_file_name,
};
use serde_json::json;
use support::tokens::now_s;
use support::{jwt_part, openssl, rsa_key_pair, shell_client_token};

/// An RSA pair: (`<name>.key` PKCS#8, `<name>.rsa.key` PKCS#1, public PEM).
fn rsa_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let (key, public) = rsa_key_pair(dir, name);
    let p1 = format!("{name}.rsa.key");
    let p8 = key.to_str().expect("utf-8 path");
    openssl(dir, &["rsa", "-in", p8, "-traditional", "-out", &p1]);
    (key.clone(), dir.join(p1), public)
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let v = HeaderValue::from_str(&format!("Bearer {token}")).expect("header value");
    h.insert(header::AUTHORIZATION, v);
    h
}

fn peer() -> SocketAddr {
    "192.0.2.10:40000".parse().expect("addr")
}

fn with_public_key(public: &Path) -> AuthConfig {
    AuthConfig {
        public_key_file: Some(public.to_owned()),
        ..AuthConfig::default()
    }
}

fn assert_invalid(r: Result<Caller, AuthError>, want: &str) {
    let e = r.expect_err("must be refused");
    let reason = e.to_string();
    assert!(reason.contains(want), "got {reason:?}, want {want:?}");
    let resp = e.into_response();
    let challenge = resp.headers().get(header::WWW_AUTHENTICATE).cloned();
    let invalid = HeaderValue::from_static(CHALLENGE_INVALID);
    let got = (resp.status(), challenge);
    assert_eq!(got, (StatusCode::UNAUTHORIZED, Some(invalid)), "{reason}");
}

#[tokio::test]
async fn existing_shell_client_token_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (p8, p1, public) = rsa_pair(dir.path(), "asap");
    let auth = Authenticator::from_config(&with_public_key(&public)).expect("authenticator");
    // the sidecar key may be PKCS#8 or PKCS#1; the signature is the same
    for key in [&p8, &p1] {
        let token = shell_client_token(key, now_s());
        let caller = auth
            .authenticate(&bearer(&token), peer())
            .await
            .expect("accepted");
        assert_eq!(caller.role, Role::Admin);
        assert_eq!(caller.subject.as_deref(), Some("scaler"));
    }
    // the same client with an old token is refused
    let stale = shell_client_token(&p8, now_s() - 3600);
    assert_invalid(auth.authenticate(&bearer(&stale), peer()).await, "expired");
}

/// Runs the real binary's `token` command; returns stdout (checked to be one line).
fn token_command(args: &[&str]) -> String {
    let out = support::succeed(support::bin().arg("token").args(args));
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let token = stdout.strip_suffix('\n').expect("ends with a newline");
    assert!(
        !token.contains(['\n', ' ']),
        "nothing but the token: {stdout:?}"
    );
    token.to_owned()
}

#[tokio::test]
async fn token_command_output_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, p1, public) = rsa_pair(dir.path(), "asap");
    let key_s = key.to_str().expect("path");

    // default: sub scaler, 60 s, no kid -> public_key_file
    let auth = Authenticator::from_config(&with_public_key(&public)).expect("authenticator");
    let token = token_command(&["--key", key_s]);
    assert_eq!(jwt_part(&token, 0), json!({"alg": "RS256", "typ": "JWT"}));
    let claims = jwt_part(&token, 1);
    assert_eq!(
        claims["exp"]
            .as_u64()
            .zip(claims["iat"].as_u64())
            .map(|(e, i)| e - i),
        Some(60)
    );
    let caller = auth
        .authenticate(&bearer(&token), peer())
        .await
        .expect("accepted");
    assert_eq!(caller.role, Role::Admin);
    let token = token_command(&["--key", p1.to_str().expect("path")]);
    assert!(
        auth.authenticate(&bearer(&token), peer()).await.is_ok(),
        "PKCS#1 key"
    );

    // --kid resolved through a key_dir laid out by sha256(kid), with claims
    let key_dir = dir.path().join("asap-server");
    std::fs::create_dir(&key_dir).expect("mkdir");
    std::fs::copy(&public, key_dir.join(kid_file_name("jitsi/default"))).expect("copy");
    let cfg = AuthConfig {
        key_dir: Some(key_dir),
        instance_binding: InstanceBinding::Claim,
        issuers: vec!["jitsi-scaler-agent".into()],
        audiences: vec!["jitsi-scaler".into()],
        ..AuthConfig::default()
    };
    let auth = Authenticator::from_config(&cfg).expect("authenticator");
    let token = token_command(&[
        "--key",
        key_s,
        "--kid",
        "jitsi/default",
        "--sub",
        "gw-1.example.org",
        "--ttl",
        "2m",
        "--iss",
        "jitsi-scaler-agent",
        "--aud",
        "jitsi-scaler",
        "--claim",
        "instance=gw-1.example.org",
        "--claim",
        "n=5",
        "--claim",
        "tags=[\"a\",1]",
    ]);
    assert_eq!(jwt_part(&token, 0)["kid"], json!("jitsi/default"));
    let caller = auth
        .authenticate(&bearer(&token), peer())
        .await
        .expect("accepted");
    assert_eq!(caller.role, Role::Instance);
    assert_eq!(caller.claims["instance"], json!("gw-1.example.org"));
    assert_eq!(caller.claims["n"], json!(5));
    assert_eq!(caller.claims["tags"], json!(["a", 1]));
    assert_eq!(caller.claims["iss"], json!("jitsi-scaler-agent"));
    assert_eq!(caller.claims["aud"], json!("jitsi-scaler"));
    let c = &caller.claims;
    assert_eq!(
        c["exp"].as_u64().zip(c["iat"].as_u64()).map(|(e, i)| e - i),
        Some(120)
    );
    assert!(caller.may_remove("gw-1", &[]).is_ok());
    assert!(caller.may_remove("gw-2.example.org", &[]).is_err());

    // a kid the key_dir does not know
    let token = token_command(&["--key", key_s, "--kid", "someone/else"]);
    assert_invalid(
        auth.authenticate(&bearer(&token), peer()).await,
        "unknown kid",
    );
}

#[tokio::test]
async fn token_command_es256_and_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let sec1 = "ecparam -name prime256v1 -genkey -noout -out ec.key";
    openssl(d, &sec1.split(' ').collect::<Vec<_>>());
    openssl(d, &["pkey", "-in", "ec.key", "-pubout", "-out", "ec.pub"]);
    let auth =
        Authenticator::from_config(&with_public_key(&d.join("ec.pub"))).expect("authenticator");
    let token = token_command(&["--key", d.join("ec.key").to_str().expect("path")]);
    assert_eq!(jwt_part(&token, 0)["alg"], json!("ES256"));
    assert!(
        auth.authenticate(&bearer(&token), peer()).await.is_ok(),
        "SEC1 EC key signs ES256"
    );

    // a public key, or a missing file: non-zero exit, nothing on stdout
    for key in [d.join("ec.pub"), d.join("missing.pem")] {
        let out = support::bin()
            .args(["token", "--key"])
            .arg(&key)
            .output()
            .expect("binary runs");
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        assert!(String::from_utf8_lossy(&out.stderr).contains(key.to_str().expect("path")));
    }
}

/// A key server on 127.0.0.1:0 serving one PEM at `/asap/<sha256(kid)>.pem`,
/// and hanging on `/slow/...`. Returns its base URL and hit counter.
async fn key_server(kid: &str, pem: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    use axum::extract::{Path as UrlPath, State};
    use axum::routing::get;

    struct Served {
        hits: Arc<AtomicUsize>,
        file: String,
        pem: Vec<u8>,
    }
    async fn serve(
        State(s): State<Arc<Served>>,
        UrlPath(file): UrlPath<String>,
    ) -> axum::response::Response {
        s.hits.fetch_add(1, Ordering::SeqCst);
        if file == s.file {
            s.pem.clone().into_response()
        } else {
            StatusCode::NOT_FOUND.into_response()
        }
    }
    async fn slow(UrlPath(_file): UrlPath<String>) -> StatusCode {
        tokio::time::sleep(Duration::from_secs(10)).await;
        StatusCode::NOT_FOUND
    }
    let hits = Arc::new(AtomicUsize::new(0));
    let state = Arc::new(Served {
        hits: hits.clone(),
        file: kid_file_name(kid),
        pem,
    });
    let app = axum::Router::new()
        .route("/asap/{file}", get(serve))
        .route("/slow/{file}", get(slow))
        .with_state(state);
    let addr = support::serve_on_loopback(app).await;
    (format!("http://{addr}"), hits)
}

#[tokio::test]
async fn key_server_fetch_cache_and_failures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _, public) = rsa_pair(dir.path(), "asap");
    let signer = SigningKey::from_pem(&std::fs::read(&key).expect("key")).expect("signing key");
    let sign = |kid: &str| {
        let opts = TokenOptions {
            kid: Some(kid.into()),
            ..TokenOptions::default()
        };
        signer.sign(&opts, SystemTime::now()).expect("token")
    };
    let (base, hits) = key_server("jitsi/default", std::fs::read(&public).expect("pub")).await;
    let cfg = |url: String| AuthConfig {
        key_server_url: Some(url),
        key_server_timeout: Duration::from_millis(500),
        ..AuthConfig::default()
    };

    let auth = Authenticator::from_config(&cfg(format!("{base}/asap/"))).expect("authenticator");
    let token = sign("jitsi/default");
    assert!(auth.authenticate(&bearer(&token), peer()).await.is_ok());
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert!(auth.authenticate(&bearer(&token), peer()).await.is_ok());
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "second verification served from cache"
    );

    // unknown kid: 404 -> 401, and the absence is cached briefly
    let stranger = sign("nobody");
    assert_invalid(
        auth.authenticate(&bearer(&stranger), peer()).await,
        "unknown kid",
    );
    assert_invalid(
        auth.authenticate(&bearer(&stranger), peer()).await,
        "unknown kid",
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // a server that hangs: 401 once the timeout passes, not a hang
    let slow = Authenticator::from_config(&cfg(format!("{base}/slow"))).expect("authenticator");
    let started = Instant::now();
    assert_invalid(
        slow.authenticate(&bearer(&token), peer()).await,
        "key server unavailable",
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // a server that is down: 401, not 500
    let down = Authenticator::from_config(&cfg(support::dead_url())).expect("authenticator");
    assert_invalid(
        down.authenticate(&bearer(&token), peer()).await,
        "key server unavailable",
    );
}
