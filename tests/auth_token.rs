//! ASAP tokens end to end: the existing shell client's tokens, the `token`
//! command of the real binary, and a key server on 127.0.0.1.
//! Key pairs are made with the `openssl` CLI in a temp dir at test time.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jitsi_scaler::auth::{
    AuthConfig, AuthError, Authenticator, CHALLENGE_INVALID, Caller, InstanceBinding, Role,
    SigningKey, TokenOptions, kid_file_name,
};
use serde_json::{Value, json};

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .expect("openssl CLI runs");
    assert!(status.success(), "openssl {args:?} failed");
}

/// Writes an RSA pair: `<name>.key` (PKCS#8), `<name>.rsa.key` (PKCS#1), `<name>.pub`.
fn rsa_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let key = format!("{name}.key");
    let p1 = format!("{name}.rsa.key");
    let public = format!("{name}.pub");
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            &key,
        ],
    );
    openssl(dir, &["rsa", "-in", &key, "-traditional", "-out", &p1]);
    openssl(dir, &["pkey", "-in", &key, "-pubout", "-out", &public]);
    (dir.join(key), dir.join(p1), dir.join(public))
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

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
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
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{reason}");
    let challenge = resp
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok());
    assert_eq!(challenge, Some(CHALLENGE_INVALID));
}

/// A token made exactly as the existing shell client makes it: fixed JSON
/// texts, `openssl dgst -sha256 -sign`, base64url without padding.
fn shell_client_token(key: &Path, iat: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"sub":"scaler","iat":{iat},"exp":{}}}"#,
        iat + 60
    ));
    let input = format!("{header}.{payload}");
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl dgst");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("openssl output");
    assert!(out.status.success());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(out.stdout))
}

#[tokio::test]
async fn existing_shell_client_token_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (p8, p1, public) = rsa_pair(dir.path(), "asap");
    let auth = Authenticator::from_config(&with_public_key(&public)).expect("authenticator");
    // the sidecar key may be PKCS#8 or PKCS#1; the signature is the same
    for key in [&p8, &p1] {
        let token = shell_client_token(key, now());
        let caller = auth
            .authenticate(&bearer(&token), peer())
            .await
            .expect("accepted");
        assert_eq!(caller.role, Role::Admin);
        assert_eq!(caller.subject.as_deref(), Some("scaler"));
    }
    // the same client with an old token is refused
    let stale = shell_client_token(&p8, now() - 3600);
    assert_invalid(auth.authenticate(&bearer(&stale), peer()).await, "expired");
}

/// Runs the real binary's `token` command; returns stdout (checked to be one line).
fn token_command(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_jitsi-scaler"))
        .arg("token")
        .args(args)
        .output()
        .expect("binary runs");
    assert!(
        out.status.success(),
        "token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let token = stdout.strip_suffix('\n').expect("ends with a newline");
    assert!(
        !token.contains(['\n', ' ']),
        "nothing but the token: {stdout:?}"
    );
    token.to_owned()
}

fn decode_part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).expect("part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json")
}

#[tokio::test]
async fn token_command_output_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, p1, public) = rsa_pair(dir.path(), "asap");
    let key_s = key.to_str().expect("path");

    // default: sub scaler, 60 s, no kid -> public_key_file
    let auth = Authenticator::from_config(&with_public_key(&public)).expect("authenticator");
    let token = token_command(&["--key", key_s]);
    assert_eq!(
        decode_part(&token, 0),
        json!({"alg": "RS256", "typ": "JWT"})
    );
    let claims = decode_part(&token, 1);
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
    assert_eq!(decode_part(&token, 0)["kid"], json!("jitsi/default"));
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
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ec.key",
        ],
    );
    openssl(d, &["pkey", "-in", "ec.key", "-pubout", "-out", "ec.pub"]);
    let auth =
        Authenticator::from_config(&with_public_key(&d.join("ec.pub"))).expect("authenticator");
    let token = token_command(&["--key", d.join("ec.key").to_str().expect("path")]);
    assert_eq!(decode_part(&token, 0)["alg"], json!("ES256"));
    assert!(
        auth.authenticate(&bearer(&token), peer()).await.is_ok(),
        "SEC1 EC key signs ES256"
    );

    // a public key, or a missing file: non-zero exit, nothing on stdout
    for key in [d.join("ec.pub"), d.join("missing.pem")] {
        let out = Command::new(env!("CARGO_BIN_EXE_jitsi-scaler"))
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
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
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let down_url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let down = Authenticator::from_config(&cfg(down_url)).expect("authenticator");
    assert_invalid(
        down.authenticate(&bearer(&token), peer()).await,
        "key server unavailable",
    );
}
