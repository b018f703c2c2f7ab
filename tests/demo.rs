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
    // Calls start once the floor is up (about one boot), then removals need 5 s idle gateways.
    let mut child = start(&["--duration", "45s"]);
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

/// The demo starts its calls only once the scaler has brought up its floor, prints the status
/// page's URL, and the page's history carries the load generator's counters.
#[test]
fn calls_start_once_the_floor_is_up_and_the_page_shows_them() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jitsi-scaler"))
        .arg("demo")
        .args([
            "--boot",
            "3s",
            "--idle-time",
            "60s",
            "--rate",
            "60/min",
            "--mean-duration",
            "5s",
            "--tick",
            "1s",
            "--min",
            "2",
            "--duration",
            "20s",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start jitsi-scaler demo");
    let (rx, err) = follow(&mut child);
    // Read until calls have been placed for a few seconds, then look at the page's data.
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) else {
            continue;
        };
        let done = line.starts_with('[') && fields(&line).get("calls").is_some_and(|&n| n >= 3);
        lines.push(line);
        if done {
            break;
        }
    }
    let out = lines.join("\n");
    let page = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("status page: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no status page URL:\n{out}"))
        .to_string();
    assert!(
        page.starts_with("http://127.0.0.1:") && page.ends_with("/scaler/ui"),
        "{page}"
    );
    let history_url = page.replace("/scaler/ui", "/scaler/history");
    let (page_code, history) = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let http = reqwest::Client::new();
            let page_code = http.get(&page).send().await.map(|r| r.status().as_u16());
            // The history is sampled once per tick, stdout once a second: on a loaded machine
            // the last sample may still predate the calls stdout just counted. Wait for it.
            let deadline = Instant::now() + Duration::from_secs(12);
            let history = loop {
                let history: serde_json::Value = http
                    .get(&history_url)
                    .send()
                    .await
                    .expect("GET history")
                    .json()
                    .await
                    .expect("history JSON");
                let calls = history["samples"]
                    .as_array()
                    .and_then(|s| s.last())
                    .and_then(|s| s["load"]["calls"].as_u64())
                    .unwrap_or(0);
                if calls >= 1 || Instant::now() > deadline {
                    break history;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            };
            (page_code.ok(), history)
        });
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let stderr = err.join().unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?}\n{out}\n{stderr}"
    );
    assert_eq!(page_code, Some(200), "{page}");

    // Stdout: no call before the floor is up, and then two gateways take the first calls.
    let floor_at = lines
        .iter()
        .position(|l| l.starts_with("floor up after"))
        .unwrap_or_else(|| panic!("no floor line:\n{out}"));
    for l in lines[..floor_at].iter().filter(|l| l.starts_with('[')) {
        assert_eq!(
            fields(l).get("calls"),
            Some(&0),
            "a call before the floor:\n{out}"
        );
    }
    let first = lines[floor_at..]
        .iter()
        .find(|l| l.starts_with('[') && fields(l).get("calls").is_some_and(|&n| n > 0))
        .unwrap_or_else(|| panic!("no calls:\n{out}"));
    let f = fields(first);
    assert!(f["idle"] + f["busy"] >= 2, "{first}\n{out}");

    // The page's samples carry the load counters (they only grow), placed before rejected.
    let samples = history["samples"].as_array().expect("samples");
    assert!(!samples.is_empty(), "{history}");
    let mut before = (0, 0);
    for s in samples {
        let load = (
            s["load"]["calls"]
                .as_u64()
                .unwrap_or_else(|| panic!("no load counters in {s}")),
            s["load"]["rejected"].as_u64().unwrap_or(u64::MAX),
        );
        assert!(load.1 <= load.0, "{s}");
        assert!(load.0 >= before.0 && load.1 >= before.1, "{s}\n{history}");
        before = load;
    }
    assert_eq!(
        samples[0]["load"]["calls"], 0,
        "the first tick comes before any call"
    );
    assert!(before.0 >= 1, "{history}");
}
