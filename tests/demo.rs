//! `jitsi-scaler demo`, the real binary: it scales up and down by itself and stops cleanly.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Fast flags: gateways boot in 2 s, agents ask after 5 s idle, short busy calls.
const FAST: &[&str] = &[
    "--boot",
    "2s",
    "--idle-time",
    "5s",
    "--rate",
    "30/min",
    "--mean-duration",
    "5s",
    "--tick",
    "1s",
    "--min",
    "1",
];

fn start(extra: &[&str]) -> Child {
    support::bin()
        .arg("demo")
        .args(FAST)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start jitsi-scaler demo")
}

/// Stdout lines as they come, on a channel; stderr collected on a thread.
fn follow(child: &mut Child) -> (mpsc::Receiver<String>, std::thread::JoinHandle<String>) {
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    (rx, err)
}

/// Waits for the exit, killing the child after `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// `key=value` pairs of a status line (`[  12s] calls=3 rejected=0 ...`).
fn fields(line: &str) -> BTreeMap<String, u64> {
    line.split_whitespace()
        .filter_map(|w| {
            let (k, v) = w.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

#[test]
fn the_demo_launches_removes_and_stops_by_itself() {
    let mut child = start(&["--duration", "40s"]);
    let (rx, err) = follow(&mut child);
    let status = wait_exit(&mut child, Duration::from_secs(120));
    let lines: Vec<String> = rx.try_iter().collect();
    let stderr = err.join().unwrap_or_default();
    let out = lines.join("\n");
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?}\n{out}\n{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("scaler: http://127.0.0.1:")),
        "{out}"
    );
    let last = lines
        .iter()
        .rev()
        .find(|l| l.starts_with('[') && l.contains("launches="))
        .expect("a status line");
    let f = fields(last);
    assert!(f.get("calls").is_some_and(|&n| n > 0), "{last}\n{out}");
    assert!(f.get("launches").is_some_and(|&n| n >= 1), "{last}\n{out}");
    assert!(
        f.get("removals").is_some_and(|&n| n >= 1),
        "{last}\n{out}\n{stderr}"
    );
    assert!(f.contains_key("min"), "{last}");
    assert!(
        lines.iter().any(|l| l.starts_with("demo stopped after")),
        "{out}"
    );
}

#[test]
fn ctrl_c_stops_the_demo_cleanly() {
    let mut child = start(&[]);
    let (rx, err) = follow(&mut child);
    // Wait until it serves and has printed a few status lines.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while seen < 3 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500))
            && line.starts_with('[')
        {
            seen += 1;
        }
    }
    assert_eq!(seen, 3, "no status lines");
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    let status = wait_exit(&mut child, Duration::from_secs(20));
    let rest: Vec<String> = rx.try_iter().collect();
    let stderr = err.join().unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?}\n{}\n{stderr}",
        rest.join("\n")
    );
    assert!(
        rest.iter().any(|l| l.starts_with("demo stopped after")),
        "{}",
        rest.join("\n")
    );
}
