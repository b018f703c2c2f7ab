//! ASAP tokens on the real API: who may do what (SPEC §4 item 10), end to end.

mod support;

use reqwest::Method;
use support::{AuthKeys, Scaler, Stack, shell_client_token, tokens::now_s};

/// `serve` verifying tokens of a fresh key (`extra`: more `[auth]` lines), on fakes that
/// report 10 available.
async fn setup(extra_auth: &str) -> (Scaler, AuthKeys) {
    let keys = AuthKeys::rsa();
    let Stack { s, .. } = Stack::start(10, 10, &keys.auth_table(extra_auth)).await;
    (s, keys)
}

/// Each (token, method, path, body) is answered `code`.
async fn expect_codes(s: &Scaler, cases: &[(Option<&str>, Method, &str, &str, u16)]) {
    for (token, method, path, body, code) in cases {
        let r = s.request_as(*token, method.clone(), path, body).await;
        assert_eq!(r.code, *code, "{method} {path} {body}: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_decide_who_may_do_what() {
    let (mut s, keys) = setup("").await;
    // Health and readiness need no token; the API does.
    assert_eq!(s.get("/health").await.0, 200);
    let r = s.request_as(None, Method::GET, "/scaler/min", "").await;
    assert_eq!(r.code, 401);
    assert!(r.challenge.is_some_and(|c| c.starts_with("Bearer")));
    let r = s
        .request_as(Some("not.a.token"), Method::GET, "/scaler/min", "")
        .await;
    assert_eq!(r.code, 401);
    let invalid = r#"Bearer error="invalid_token""#;
    assert_eq!(r.challenge.as_deref(), Some(invalid));

    // The legacy shell client's token is an admin token.
    let legacy = shell_client_token(&keys.key, now_s());
    let admin = keys.token("scaler");
    // An instance token may not read or change settings, nor add.
    let inst = keys.token("vsg-1");
    let add = r#"{"instance_type":"video-sip-gateway"}"#;
    // It may not remove another host (address binding: the client is 127.0.0.1).
    let other = r#"{"host":"vsg-2","reason":"idle"}"#;
    expect_codes(
        &s,
        &[
            (Some(&legacy), Method::GET, "/scaler/min", "", 200),
            (Some(&admin), Method::POST, "/scaler/min", "3", 204),
            (Some(&admin), Method::GET, "/scaler/status", "", 200),
            (Some(&inst), Method::GET, "/scaler/min", "", 403),
            (Some(&inst), Method::POST, "/scaler/min", "7", 403),
            (Some(&inst), Method::POST, "/scaler/instance", add, 403),
            (Some(&inst), Method::POST, "/scaler/remove", other, 403),
            // The hello follows the remove-me rule, and needs a token.
            (
                Some(&inst),
                Method::POST,
                "/scaler/hello",
                r#"{"host":"vsg-2"}"#,
                403,
            ),
            (
                None,
                Method::POST,
                "/scaler/hello",
                r#"{"host":"vsg-1"}"#,
                401,
            ),
        ],
    )
    .await;
    // Nothing changed.
    s.bearer = Some(admin.clone());
    assert_eq!(s.settings().await[0], "3");
    let st = s.status().await;
    assert_eq!(st["ledger"]["pending_removal"], 0, "{st}");
    // It may remove itself, named by its address.
    let own = r#"{"host":"127.0.0.1","reason":"idle"}"#;
    s.fresh().await;
    let r = s
        .request_as(Some(&inst), Method::POST, "/scaler/remove", own)
        .await;
    assert_eq!((r.code, r.body.as_str()), (200, "accepted"));
    // The `token` command's output works with curl-style use.
    let out = support::bin()
        .args(["token", "--key"])
        .arg(&keys.key)
        .output()
        .expect("token");
    let cli = String::from_utf8_lossy(&out.stdout).trim().to_string();
    expect_codes(&s, &[(Some(&cli), Method::GET, "/scaler/max", "", 200)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_me_is_rate_limited_per_client() {
    let (mut s, keys) = setup("remove_burst = 3\nremove_rate_per_minute = 1\n").await;
    s.bearer = Some(keys.token("scaler"));
    let mut codes = Vec::new();
    for n in 0..6 {
        let body = format!(r#"{{"host":"gw-{n}","reason":"unhealthy"}}"#);
        codes.push(s.post("/scaler/remove", &body).await.0);
    }
    assert_eq!(&codes[..3], &[200, 200, 200]);
    assert!(codes[3..].iter().all(|c| *c == 429), "{codes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_configured_refuses_everything_but_health() {
    let Stack { s, .. } = Stack::start(1, 1, "[auth]\nmode = \"asap\"\n").await;
    assert_eq!(s.get("/health").await.0, 200);
    assert_eq!(s.get("/scaler/min").await.0, 401);
    assert_eq!(s.post("/scaler/min", "5").await.0, 401);
    assert!(s.log().contains("no key configured"), "{}", s.log());
}
