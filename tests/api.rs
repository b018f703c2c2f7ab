//! The legacy HTTP API, row by row (SPEC §3), against the real `serve` binary.

mod support;

use std::time::Duration;

use reqwest::Method;
use support::{Stack, run_with_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_rows() {
    let Stack { s, .. } = Stack::fresh(5, 5, "").await;
    assert_eq!(s.settings().await, ["2", "200", "5"]);
    let reply = s.request_as(None, Method::GET, "/scaler/min", "").await;
    assert_eq!(reply.content_type, "application/json");

    for (name, value) in [("min", "3"), ("max", "1000"), ("bulk-max", "1")] {
        s.set(name, value).await;
    }
    assert_eq!(s.settings().await, ["3", "1000", "1"]);

    for (path, bad) in [
        ("/scaler/min", "0"),
        // The cap of `min` follows `max` (1000 here).
        ("/scaler/min", "1001"),
        ("/scaler/max", "1001"),
        ("/scaler/bulk-max", "0"),
        ("/scaler/min", "2.5"),
        ("/scaler/min", "\"3\""),
        ("/scaler/min", "{\"min\":3}"),
        ("/scaler/min", "three"),
        ("/scaler/min", ""),
        ("/scaler/max", "-5"),
    ] {
        let (code, body) = s.post(path, bad).await;
        assert_eq!(code, 400, "{path} {bad:?} -> {body}");
        assert!(!body.is_empty(), "a 400 says why");
    }
    // Refused values changed nothing.
    assert_eq!(s.settings().await, ["3", "1000", "1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_and_remove_rows() {
    let Stack { s, foreman, .. } = Stack::fresh(10, 10, "").await;
    // Add: 204, bad body 400, unknown type 400.
    assert_eq!(
        s.post(
            "/scaler/instance",
            r#"{"instance_type":"video-sip-gateway"}"#
        )
        .await
        .0,
        204
    );
    for bad in [
        r#"{"instance_type":"jigasi"}"#,
        r#"{}"#,
        "[]",
        "{",
        r#"{"instance_type":5}"#,
    ] {
        assert_eq!(s.post("/scaler/instance", bad).await.0, 400, "{bad}");
    }
    // Add requests launch only a deficit: 10 available >= min, so the add is answered as the
    // legacy scaler did (204) but launches nothing; the decision says why.
    s.eventually("the add's decision", Duration::from_secs(10), |st| {
        st["recent_decisions"].as_array().is_some_and(|d| {
            d.iter()
                .any(|d| d["kind"] == "add" && d["outcome"] == "not_needed")
        })
    })
    .await;
    assert_eq!(foreman.creates(), 0);

    // Remove-me through both paths and the legacy body shapes.
    let del = |body: &'static str| s.send(Method::DELETE, "/scaler/instance", body);
    assert_eq!(
        del(r#"{"host":"gw-a","reason":"idle"}"#).await,
        (200, "accepted".into())
    );
    assert_eq!(
        s.post(
            "/scaler/remove",
            r#"{"host":"gw-b.example.org","reason":"expired"}"#
        )
        .await,
        (200, "accepted".into())
    );
    assert_eq!(
        del(r#"{"ip":"10.1.2.3","reason":"unhealty"}"#).await,
        (200, "accepted".into())
    );
    assert_eq!(
        del(r#"{"host":"gw-c","reason":"unhealthy"}"#).await,
        (200, "accepted".into())
    );
    for bad in [
        r#"{"host":"gw-a"}"#,
        r#"{"host":"gw-a","reason":"bored"}"#,
        r#"{"reason":"idle"}"#,
        r#"{"host":"a b","reason":"idle"}"#,
        r#"{"host":7,"reason":"idle"}"#,
        "not json",
    ] {
        let (code, body) = del(bad).await;
        assert_eq!(code, 400, "{bad} -> {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_unknown_paths_methods_and_limits() {
    let Stack { s, .. } = Stack::fresh(3, 3, "").await;
    for path in [
        "/scaler/min",
        "/scaler/instance",
        "/scaler/remove",
        "/anything/else",
    ] {
        assert_eq!(s.send(Method::OPTIONS, path, "").await.0, 204, "{path}");
    }
    assert_eq!(s.get("/scaler/nope").await.0, 404);
    assert_eq!(s.get("/").await.0, 404);
    assert_eq!(s.send(Method::PUT, "/scaler/min", "3").await.0, 405);
    assert_eq!(s.send(Method::DELETE, "/scaler/min", "").await.0, 405);
    assert_eq!(s.get("/scaler/instance").await.0, 405);
    assert_eq!(s.get("/scaler/remove").await.0, 405);

    let huge = format!(
        r#"{{"host":"gw","reason":"idle","pad":"{}"}}"#,
        "x".repeat(6_000)
    );
    assert_eq!(s.post("/scaler/remove", &huge).await.0, 413);
    assert_eq!(s.post("/scaler/min", &"1".repeat(5_000)).await.0, 413);
    // A client announcing a huge body is answered 413 without the body being read.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(s.addr)
            .await
            .expect("connect");
        tcp.write_all(
            b"POST /scaler/remove HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n",
        )
        .await
        .expect("write");
        let mut buf = vec![0u8; 64];
        let n = tcp.read(&mut buf).await.expect("read");
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    }
    assert_eq!(s.get("/scaler/min").await.1, "2", "nothing changed");

    assert_eq!(s.get("/health").await, (200, "ok".into()));
    assert_eq!(s.get("/ready").await, (200, "ready".into()));
    let st = s.status().await;
    for key in [
        "settings",
        "jicofo",
        "ledger",
        "recent_decisions",
        "lifecycle",
    ] {
        assert!(st.get(key).is_some(), "status has {key}: {st}");
    }
    assert_eq!(st["jicofo"]["merged"]["total"], 3);
    assert!(st["jicofo"]["shards"][0]["age_s"].as_f64().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_and_ledger_survive_a_restart() {
    let Stack { mut s, jicofo, .. } = Stack::fresh(10, 10, "").await;
    for (name, value) in [("min", "7"), ("max", "55"), ("bulk-max", "3")] {
        s.set(name, value).await;
    }
    // available 10 - pending 0 - 1 >= 7: accepted, and it must stay approved after a restart.
    assert_eq!(s.remove("gw-1", "idle").await, "accepted");
    s.restart().await;
    assert_eq!(s.settings().await, ["7", "55", "3"]);
    let st = s.status().await;
    let approved = support::count(&st, "draining")
        + support::count(&st, "deleting")
        + support::count(&st, "gone");
    assert_eq!(approved, 1, "{st:#}");
    // The pending removal still counts after the restart: with available 10 and min 7 the
    // budget is 3, of which gw-1 spent one.
    jicofo.set(10, 10);
    s.fresh().await;
    assert_eq!(s.remove("gw-2", "idle").await, "accepted");
    assert_eq!(s.remove("gw-3", "idle").await, "accepted");
    assert_eq!(s.remove("gw-4", "idle").await, "keep");
    assert_eq!(s.remove("gw-1", "idle").await, "accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_store_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("state.json"), b"{not json").expect("write");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"{}\"\ndata_dir = \"{}\"\n",
            support::dead_addr(),
            data.display()
        ),
    )
    .expect("write");
    let out = run_with_config(&["serve"], &cfg);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corrupt"), "{err}");
    assert_eq!(
        std::fs::read(data.join("state.json")).expect("kept"),
        b"{not json",
        "not replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_names_bad_keys() {
    let bad = "[settings]\nmin = 0\n[lifecycle.foreman]\ntoken = \"sekrit\"\n";
    let (_dir, cfg) = support::temp_file("c.toml", bad);
    let out = run_with_config(&["config", "check"], &cfg);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("settings.min"), "{stderr}");
    assert!(
        !stdout.contains("sekrit") && stdout.contains("***"),
        "{stdout}"
    );
    // serve refuses the same file, naming the key.
    let out = run_with_config(&["serve"], &cfg);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("settings.min"));
    // An unknown key in the file or in the environment is named too.
    std::fs::write(&cfg, "[policy]\ntickk = \"1s\"\n").expect("write");
    let out = support::bin()
        .args(["config", "check", "--config"])
        .arg(&cfg)
        .env("JITSI_SCALER_SETTINGS__MIN", "4")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tickk"));
}
