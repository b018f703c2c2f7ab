//! HTTP server limits of the real `serve` over raw TCP: shutdown with a
//! client stopped halfway through its headers, slow-header clients, idle keep-alive connections,
//! the connection cap, the header-bytes bound.
//!
//! `figures_under_a_header_flood` (ignored; run with `--ignored --nocapture`) prints the exit
//! time under SIGTERM, VmRSS and /health latency under 500 connections with unfinished headers;
//! `SCALER_TEST_BIN=<older binary>` measures another build the same way.

mod support;

use std::time::{Duration, Instant};

use support::{FakeForeman, FakeJicofo, Scaler, fast_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn scaler(server: &str) -> (Scaler, FakeJicofo, FakeForeman) {
    let jicofo = FakeJicofo::start(2, 2).await;
    let foreman = FakeForeman::start().await;
    let s = Scaler::on(&jicofo, &foreman, &format!("[server]\n{server}\n")).await;
    (s, jicofo, foreman)
}

/// One keep-alive `GET /health` on `c`, answered 200.
async fn health_ok(c: &mut TcpStream) {
    c.write_all(b"GET /health HTTP/1.1\r\nHost: scaler\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let n = c.read(&mut buf).await.expect("answer");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

/// A connection that sent the start of a request head and stops there.
async fn half_head(s: &Scaler) -> TcpStream {
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    c.write_all(b"GET /health HTTP/1.1\r\nHost: scaler\r\nX-Slow: ")
        .await
        .expect("write");
    c
}

/// Whether the server closed `c` (EOF or reset), waiting at most `within`.
async fn closed_within(c: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, c.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408/431 answer before the close is fine: read on.
            Ok(Ok(_)) => {}
        }
    }
}

/// One raw `GET /health`; the status line and how long the answer took.
async fn raw_health(addr: std::net::SocketAddr) -> (String, Duration) {
    let started = Instant::now();
    let mut c = TcpStream::connect(addr).await.expect("connect");
    c.write_all(b"GET /health HTTP/1.1\r\nHost: scaler\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    (
        text.lines().next().unwrap_or_default().to_string(),
        started.elapsed(),
    )
}

/// Shutdown: SIGTERM with a client stopped halfway through its headers: the process exits within
/// a few seconds (the shutdown closes connections without a request in progress).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_promptly_with_a_client_stuck_in_its_headers() {
    let (mut s, _j, _f) = scaler("header_read_timeout = \"60s\"\nshutdown_grace = \"3s\"").await;
    let _stuck = half_head(&s).await;
    // An idle keep-alive connection too.
    let mut idle = TcpStream::connect(s.addr).await.expect("connect");
    health_ok(&mut idle).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let status = s.stop().expect("exit status");
    let took = started.elapsed();
    assert!(status.success(), "{status}: {}", s.log());
    assert!(
        took < Duration::from_secs(4),
        "exit took {took:?}:\n{}",
        s.log()
    );
}

/// Shutdown: a request in progress at SIGTERM gets its answer, then the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_progress_at_sigterm_is_answered() {
    let (mut s, _j, _f) = scaler("shutdown_grace = \"5s\"").await;
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    // The head is complete; the body comes late: the handler is waiting for it.
    c.write_all(b"POST /scaler/min HTTP/1.1\r\nHost: scaler\r\nContent-Length: 1\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = s.pid().expect("pid");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.write_all(b"3").await.expect("body");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 204"), "{text:?}\n{}", s.log());
    let started = Instant::now();
    let status = s.stop().expect("exit status");
    assert!(status.success(), "{status}: {}", s.log());
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// Slow headers: 1000 clients trickling their headers are all closed after the header-read timeout,
/// and /health keeps answering meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_clients_are_closed_and_health_keeps_answering() {
    let (s, _j, _f) = scaler("header_read_timeout = \"2s\"\nmax_connections = 1200").await;
    let mut clients = Vec::new();
    for _ in 0..1000 {
        let addr = s.addr;
        clients.push(tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.expect("connect");
            let opened = Instant::now();
            if c.write_all(b"GET /health HTTP/1.1\r\nHost: scaler\r\n")
                .await
                .is_err()
            {
                return opened.elapsed();
            }
            // One header line every 200 ms, for at most 20 s.
            for i in 0..100 {
                let line = format!("X-Trickle-{i}: a\r\n");
                if c.write_all(line.as_bytes()).await.is_err() {
                    return opened.elapsed();
                }
                let mut buf = [0u8; 256];
                match tokio::time::timeout(Duration::from_millis(200), c.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return opened.elapsed(),
                    _ => {}
                }
            }
            opened.elapsed()
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let (line, took) = raw_health(s.addr).await;
        assert!(line.starts_with("HTTP/1.1 200"), "{line:?}");
        worst = worst.max(took);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut open_for = Vec::new();
    for c in clients {
        open_for.push(c.await.expect("client"));
    }
    open_for.sort();
    let longest = open_for.last().copied().unwrap_or_default();
    println!("1000 slow clients: longest open {longest:?}; /health worst {worst:?}");
    assert!(
        longest < Duration::from_secs(8),
        "a slow client stayed open {longest:?}"
    );
    assert!(worst < Duration::from_secs(2), "/health took {worst:?}");
}

/// Idle connections: an idle keep-alive connection is closed after `idle_timeout`; a request in
/// progress is not cut by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed() {
    let (s, _j, _f) = scaler("idle_timeout = \"1s\"\nheader_read_timeout = \"5s\"").await;
    let mut c = TcpStream::connect(s.addr).await.expect("connect");
    for _ in 0..3 {
        health_ok(&mut c).await;
        // Under the idle timeout: the connection is reused.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let started = Instant::now();
    assert!(closed_within(&mut c, Duration::from_secs(3)).await);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

/// Connection cap: past `max_connections` a connection gets a clean 503 at once; when the slow ones
/// time out, /health answers again. A head larger than `max_header_bytes` gets 431.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_cleanly() {
    let (s, _j, _f) =
        scaler("max_connections = 20\nheader_read_timeout = \"2s\"\nmax_header_bytes = 8192").await;
    // The launcher's /health probe keep-alive connection may hold a slot: fill the rest.
    let mut slow = Vec::new();
    for _ in 0..20 {
        slow.push(half_head(&s).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (line, took) = raw_health(s.addr).await;
    assert!(line.starts_with("HTTP/1.1 503"), "{line:?}");
    assert!(took < Duration::from_secs(1), "refusal took {took:?}");
    // The slow ones are closed by the header timeout; then /health answers.
    for c in &mut slow {
        assert!(closed_within(c, Duration::from_secs(5)).await);
    }
    let (line, _) = raw_health(s.addr).await;
    assert!(line.starts_with("HTTP/1.1 200"), "{line:?}");

    let mut big = TcpStream::connect(s.addr).await.expect("connect");
    let head = format!(
        "GET /health HTTP/1.1\r\nHost: scaler\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let _ = big.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), big.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 431"), "{text:?}");
}

/// VmRSS of a process, in KiB.
fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The figures for docs (slow clients, shutdown): VmRSS and /health latency under 500
/// connections each holding 375 KB of unfinished headers, then the exit time under SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run with --ignored --nocapture"]
async fn figures_under_a_header_flood() {
    // Defaults of [server] (an old binary would refuse the section).
    let jicofo = FakeJicofo::start(2, 2).await;
    let foreman = FakeForeman::start().await;
    let mut s = Scaler::start(&fast_config(&jicofo.url, &[&foreman.url])).await;
    let pid = s.pid().expect("pid");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = vm_rss_kib(pid);
    let chunk = format!("X-Flood: {}\r\n", "a".repeat(1000));
    let mut conns = Vec::new();
    for _ in 0..500 {
        let chunk = chunk.clone();
        let addr = s.addr;
        conns.push(tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.ok()?;
            c.write_all(b"GET /health HTTP/1.1\r\nHost: scaler\r\n")
                .await
                .ok()?;
            let mut sent = 0;
            while sent < 375_000 {
                if c.write_all(chunk.as_bytes()).await.is_err() {
                    break;
                }
                sent += chunk.len();
            }
            Some(c)
        }));
    }
    let mut held = Vec::new();
    for c in conns {
        if let Ok(Some(c)) = c.await {
            held.push(c);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = vm_rss_kib(pid);
    let mut latencies = Vec::new();
    for _ in 0..10 {
        let (line, took) = raw_health(s.addr).await;
        latencies.push((took, line));
    }
    latencies.sort();
    let started = Instant::now();
    let status = s.stop();
    let exit = started.elapsed();
    println!(
        "VmRSS before {} KiB, under 500 x 375 KB unfinished heads {} KiB; /health median {:?} max {:?} ({}); exit under SIGTERM {:?} ({:?})",
        before,
        during,
        latencies[latencies.len() / 2].0,
        latencies[latencies.len() - 1].0,
        latencies[latencies.len() - 1].1,
        exit,
        status
    );
    drop(held);
}
