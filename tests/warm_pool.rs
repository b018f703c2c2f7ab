//! Warm pool (issue 13): the lifecycle clients' power actions against the shared fake Foreman
//! and a command program, and `serve` end to end with slow provisioning and fast power-on.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use jitsi_scaler::lifecycle::{
    Backend, CommandConfig, ForemanConfig, Lifecycle, LifecycleConfig, LifecycleError, PowerState,
};
use support::{FOREMAN_TOKEN, FOREMAN_USER, FakeForeman, dead_addr};

fn foreman(nodes: Vec<String>) -> Lifecycle {
    Lifecycle::from_config(&LifecycleConfig {
        backend: Backend::Foreman,
        name_prefix: "vsg".into(),
        foreman: ForemanConfig {
            nodes,
            user: FOREMAN_USER.into(),
            token: Some(FOREMAN_TOKEN.into()),
            connect_timeout: Duration::from_millis(300),
            timeout: Duration::from_secs(2),
            attempts: 3,
            backoff: Duration::from_millis(10),
            backoff_max: Duration::from_millis(40),
            breaker_threshold: 2,
            breaker_cooldown: Duration::from_secs(60),
            ..ForemanConfig::default()
        },
        command: CommandConfig::default(),
    })
    .expect("valid config")
}

#[tokio::test]
async fn foreman_start_and_stop_are_confirmed_with_status() {
    let fm = FakeForeman::start().await;
    fm.add_stopped("vsg-a");
    let lc = foreman(vec![fm.url.clone()]);
    assert_eq!(lc.power_status("vsg-a").await, Ok(PowerState::Off));
    lc.start("vsg-a").await.expect("start");
    assert_eq!(lc.power_status("vsg-a").await, Ok(PowerState::On));
    lc.stop("vsg-a").await.expect("stop");
    assert_eq!(fm.stopped(), vec!["vsg-a".to_string()]);
    let actions: Vec<String> = fm.power_actions().into_iter().map(|(_, a)| a).collect();
    // Each action is followed by a status that confirms it before it counts.
    assert_eq!(
        actions,
        ["status", "start", "status", "status", "stop", "status"]
    );
}

#[tokio::test]
async fn foreman_power_retries_fails_over_and_opens_breakers() {
    let fm = FakeForeman::start().await;
    fm.add_stopped("vsg-a");
    // One 500: retried.
    let single = foreman(vec![fm.url.clone()]);
    fm.fail_next(500, "power failed", 1);
    single.start("vsg-a").await.expect("start after a retry");
    // The 500 is answered before the fake looks at the action: one start, one status.
    assert_eq!(
        fm.power_actions(),
        [
            ("vsg-a".into(), "start".into()),
            ("vsg-a".into(), "status".into())
        ]
    );
    let puts = fm
        .seen()
        .iter()
        .filter(|r| r.path().ends_with("/power"))
        .count();
    assert_eq!(puts, 3, "a failed start, the start, its status check");
    single.stop("vsg-a").await.expect("stop");
    // A dead first node: the call fails over to the live one.
    let dead = format!("http://{}", dead_addr());
    let lc = foreman(vec![dead.clone(), fm.url.clone()]);
    lc.start("vsg-a").await.expect("start after failover");
    assert_eq!(lc.power_status("vsg-a").await, Ok(PowerState::On));
    assert!(lc.nodes()[0].calls_failed >= 1, "{:?}", lc.nodes());
    // The manager down: transient, and the breakers open like for create and delete.
    fm.set_down(true);
    let e = lc.stop("vsg-a").await.expect_err("down");
    assert!(!e.is_definitive(), "{e}");
    let _ = lc.stop("vsg-a").await;
    assert!(!lc.is_up(), "{:?}", lc.nodes());
    let before = fm.requests();
    let e = lc.stop("vsg-a").await.expect_err("open");
    assert!(e.to_string().contains("unavailable"), "{e}");
    assert_eq!(fm.requests(), before, "open breakers send nothing");
}

#[tokio::test]
async fn foreman_refusals_are_definitive() {
    let fm = FakeForeman::start().await;
    let lc = foreman(vec![fm.url.clone()]);
    // No such host: 404.
    let e = lc.start("vsg-missing").await.expect_err("404");
    assert!(matches!(e, LifecycleError::Refused(_)), "{e}");
    // A compute resource without power management: 422.
    fm.add_stopped("vsg-a");
    fm.set_no_power(true);
    let e = lc.start("vsg-a").await.expect_err("422");
    assert!(
        matches!(&e, LifecycleError::Refused(m) if m.contains("422")),
        "{e}"
    );
    assert_eq!(fm.power_actions().len(), 1, "a refusal is not retried");
    // Bad names never reach the network.
    let e = lc.stop("-x").await.expect_err("bad name");
    assert!(matches!(e, LifecycleError::Refused(_)));
}

#[tokio::test]
async fn fake_foreman_answers_422_for_an_unknown_action_and_415_without_json() {
    let fm = FakeForeman::start().await;
    fm.add_stopped("vsg-a");
    let http = reqwest::Client::new();
    let url = format!("{}/api/hosts/vsg-a/power", fm.url);
    let r = http
        .put(&url)
        .basic_auth(FOREMAN_USER, Some(FOREMAN_TOKEN))
        .header("content-type", "application/json")
        .body(r#"{"power_action":"reboot-twice"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 422);
    let r = http
        .put(&url)
        .basic_auth(FOREMAN_USER, Some(FOREMAN_TOKEN))
        .body(r#"{"power_action":"start"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 415);
    assert_eq!(fm.stopped(), vec!["vsg-a".to_string()]);
}

fn write_script(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("lifecycle.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // ETXTBSY right after writing: wait until it runs.
    for _ in 0..100 {
        match std::process::Command::new(&path).arg("probe").output() {
            Err(e) if e.raw_os_error() == Some(26) => std::thread::sleep(Duration::from_millis(10)),
            _ => break,
        }
    }
    path
}

fn command(program: PathBuf) -> Lifecycle {
    Lifecycle::from_config(&LifecycleConfig {
        backend: Backend::Command,
        command: CommandConfig {
            program: Some(program),
            timeout: Duration::from_secs(10),
        },
        ..LifecycleConfig::default()
    })
    .expect("valid config")
}

#[tokio::test]
async fn command_backend_start_stop_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("power");
    let log = dir.path().join("calls.log");
    let script = write_script(
        dir.path(),
        &format!(
            r#"[ "$1" = probe ] && exit 0
echo "$@" >> '{log}'
case "$1" in
  start) echo on > '{state}' ;;
  stop) echo off > '{state}' ;;
  status) cat '{state}' ;;
  *) exit 2 ;;
esac"#,
            log = log.display(),
            state = state.display()
        ),
    );
    std::fs::write(&state, "off\n").expect("state");
    let lc = command(script);
    assert_eq!(lc.power_status("vsg-a").await, Ok(PowerState::Off));
    lc.start("vsg-a").await.expect("start");
    assert_eq!(lc.power_status("vsg-a").await, Ok(PowerState::On));
    lc.stop("vsg-a").await.expect("stop");
    assert_eq!(lc.power_status("vsg-a").await, Ok(PowerState::Off));
    let calls = std::fs::read_to_string(&log).expect("log");
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [
            "status vsg-a",
            "start vsg-a",
            "status vsg-a",
            "stop vsg-a",
            "status vsg-a"
        ]
    );
}

#[tokio::test]
async fn command_without_power_actions_is_unsupported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = write_script(
        dir.path(),
        "case \"$1\" in add|remove) exit 0 ;; *) exit 2 ;; esac",
    );
    let lc = command(script);
    let e = lc.start("vsg-a").await.expect_err("unsupported");
    assert!(matches!(e, LifecycleError::Unsupported(_)), "{e}");
    assert!(e.is_definitive());
    let failing = write_script(dir.path(), "echo 'cloud api 503' >&2; exit 1");
    let lc = command(failing);
    let e = lc.stop("vsg-a").await.expect_err("failed");
    assert!(
        !e.is_definitive() && e.to_string().contains("cloud api 503"),
        "{e}"
    );
}
