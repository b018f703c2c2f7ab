//! ASAP tokens on the real API: who may do what (SPEC §4 item 10), end to end.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{FakeForeman, FakeJicofo, Scaler, fast_config, rsa_key_pair, token};

struct Setup {
    s: Scaler,
    key: std::path::PathBuf,
    _keys: tempfile::TempDir,
    _j: FakeJicofo,
    _f: FakeForeman,
}

async fn setup(extra_auth: &str) -> Setup {
    let keys = tempfile::tempdir().expect("tempdir");
    let (key, public) = rsa_key_pair(keys.path(), "asap");
    let jicofo = FakeJicofo::start(10, 10).await;
    let foreman = FakeForeman::start().await;
    let cfg = format!(
        "{}\n[auth]\npublic_key_file = \"{}\"\n{extra_auth}\n",
        fast_config(&jicofo.url, &[&foreman.url]),
        public.display()
    );
    let s = Scaler::start(&cfg).await;
    Setup {
        s,
        key,
        _keys: keys,
        _j: jicofo,
        _f: foreman,
    }
}

async fn call(
    s: &Scaler,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
    body: &str,
) -> (u16, String, Option<String>) {
    let mut req = s
        .http
        .request(method, format!("{}{path}", s.url))
        .body(body.to_string());
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("request");
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (
        r.status().as_u16(),
        r.text().await.unwrap_or_default(),
        challenge,
    )
}

/// Base64url without padding, as the legacy shell client writes it.
fn b64url(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A token made exactly as the existing scale-up script makes it (openssl dgst -sha256 -sign).
fn legacy_shell_token(key: &std::path::Path) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = b64url(br#"{"alg":"RS256","typ":"JWT"}"#);
    let payload =
        b64url(format!(r#"{{"sub":"scaler","iat":{now},"exp":{}}}"#, now + 60).as_bytes());
    let input = format!("{header}.{payload}");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("in");
    std::fs::write(&data, &input).expect("write");
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .arg(&data)
        .output()
        .expect("openssl dgst");
    assert!(out.status.success());
    format!("{input}.{}", b64url(&out.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_decide_who_may_do_what() {
    let Setup {
        mut s,
        key,
        _keys,
        _j,
        _f,
    } = setup("").await;
    use reqwest::Method;
    // Health and readiness need no token; the API does.
    assert_eq!(s.get("/health").await.0, 200);
    let (code, _, challenge) = call(&s, Method::GET, "/scaler/min", None, "").await;
    assert_eq!(code, 401);
    assert!(challenge.is_some_and(|c| c.starts_with("Bearer")));
    let (code, _, challenge) = call(&s, Method::GET, "/scaler/min", Some("not.a.token"), "").await;
    assert_eq!(code, 401);
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Bearer error="invalid_token""#)
    );

    // The legacy shell client's token is an admin token.
    let legacy = legacy_shell_token(&key);
    assert_eq!(
        call(&s, Method::GET, "/scaler/min", Some(&legacy), "")
            .await
            .0,
        200
    );
    let admin = token(&key, "scaler");
    assert_eq!(
        call(&s, Method::POST, "/scaler/min", Some(&admin), "3")
            .await
            .0,
        204
    );
    assert_eq!(
        call(&s, Method::GET, "/scaler/status", Some(&admin), "")
            .await
            .0,
        200
    );

    // An instance token may not read or change settings, nor add.
    let inst = token(&key, "vsg-1");
    assert_eq!(
        call(&s, Method::GET, "/scaler/min", Some(&inst), "")
            .await
            .0,
        403
    );
    assert_eq!(
        call(&s, Method::POST, "/scaler/min", Some(&inst), "7")
            .await
            .0,
        403
    );
    let add = r#"{"instance_type":"video-sip-gateway"}"#;
    assert_eq!(
        call(&s, Method::POST, "/scaler/instance", Some(&inst), add)
            .await
            .0,
        403
    );
    assert_eq!(
        call(&s, Method::GET, "/scaler/min", Some(&admin), "")
            .await
            .1,
        "3"
    );

    // It may not announce another host (issue 15: the hello follows the remove-me rule), nor
    // announce without a token.
    assert_eq!(
        call(
            &s,
            Method::POST,
            "/scaler/hello",
            Some(&inst),
            r#"{"host":"vsg-2"}"#
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            &s,
            Method::POST,
            "/scaler/hello",
            None,
            r#"{"host":"vsg-1"}"#
        )
        .await
        .0,
        401
    );

    // It may not remove another host (address binding: the client is 127.0.0.1); nothing changes.
    let other = r#"{"host":"vsg-2","reason":"idle"}"#;
    assert_eq!(
        call(&s, Method::POST, "/scaler/remove", Some(&inst), other)
            .await
            .0,
        403
    );
    let st: serde_json::Value = serde_json::from_str(
        &call(&s, Method::GET, "/scaler/status", Some(&admin), "")
            .await
            .1,
    )
    .expect("json");
    assert_eq!(st["ledger"]["pending_removal"], 0, "{st}");
    // It may remove itself, named by its address.
    let own = r#"{"host":"127.0.0.1","reason":"idle"}"#;
    s.bearer = Some(admin.clone());
    s.eventually("fresh stats", Duration::from_secs(10), |st| {
        st["jicofo"]["merged"].is_object()
    })
    .await;
    let (code, body, _) = call(&s, Method::POST, "/scaler/remove", Some(&inst), own).await;
    assert_eq!((code, body.as_str()), (200, "accepted"));
    // The `token` command's output works with curl-style use.
    let out = Command::new(env!("CARGO_BIN_EXE_jitsi-scaler"))
        .args(["token", "--key"])
        .arg(&key)
        .output()
        .expect("token");
    let cli = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        call(&s, Method::GET, "/scaler/max", Some(&cli), "").await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_me_is_rate_limited_per_client() {
    let Setup {
        s,
        key,
        _keys,
        _j,
        _f,
    } = setup("remove_burst = 3\nremove_rate_per_minute = 1\n").await;
    let admin = token(&key, "scaler");
    let mut codes = Vec::new();
    for n in 0..6 {
        let body = format!(r#"{{"host":"gw-{n}","reason":"unhealthy"}}"#);
        codes.push(
            call(
                &s,
                reqwest::Method::POST,
                "/scaler/remove",
                Some(&admin),
                &body,
            )
            .await
            .0,
        );
    }
    assert_eq!(&codes[..3], &[200, 200, 200]);
    assert!(codes[3..].iter().all(|c| *c == 429), "{codes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_configured_refuses_everything_but_health() {
    let jicofo = FakeJicofo::start(1, 1).await;
    let foreman = FakeForeman::start().await;
    let cfg = format!(
        "{}\n[auth]\nmode = \"asap\"\n",
        fast_config(&jicofo.url, &[&foreman.url])
    );
    let s = Scaler::start(&cfg).await;
    assert_eq!(s.get("/health").await.0, 200);
    assert_eq!(s.get("/scaler/min").await.0, 401);
    assert_eq!(s.post("/scaler/min", "5").await.0, 401);
    assert!(s.log().contains("no key configured"), "{}", s.log());
}
