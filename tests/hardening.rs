//! Issue 15 hardening, against the real `serve`: the lifecycle command's environment, and
//! definitive Foreman refusals (401, a validation 422, a 200 with an HTML body).

mod support;

use std::path::Path;
use std::time::Duration;

use support::{FakeJicofo, Scaler};

const WAIT: Duration = Duration::from_secs(15);

/// Config of a scaler whose lifecycle backend is `program` (the Jicofo part of fast_config).
fn command_config(jicofo_url: &str, program: &Path, pass_env: &str) -> String {
    format!(
        r#"
[settings]
min = 1

[policy]
drain_confirm = false
tick = "200ms"
stats_max_age = "1500ms"
boot_timeout = "30s"
reconcile_interval = "1h"

[jicofo]
timeout = "1s"
[[jicofo.shards]]
name = "shard1"
url = "{jicofo_url}"

[lifecycle]
backend = "command"
name_prefix = "vsg"
[lifecycle.command]
program = "{program}"
timeout = "10s"
pass_env = [{pass_env}]
"#,
        program = program.display()
    )
}

/// Case 8: the lifecycle program runs with PATH, LANG, the variables of its call and what
/// `pass_env` names; never the Foreman token or anything else of `serve`'s environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_command_gets_a_minimal_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let envs = dir.path().join("env.txt");
    let program = dir.path().join("lifecycle.sh");
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\n[ \"$1\" = add ] || exit 0\nenv > '{}'\nexit 0\n",
            envs.display()
        ),
    )
    .expect("write program");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let jicofo = FakeJicofo::start(0, 0).await;
    let s = Scaler::start_with_env(
        &command_config(&jicofo.url, &program, r#""CLOUD_PROFILE""#),
        vec![
            (
                "JITSI_SCALER_LIFECYCLE__FOREMAN__TOKEN".into(),
                "foreman-secret-token".into(),
            ),
            ("UNRELATED_SECRET".into(), "db-password".into()),
            ("CLOUD_PROFILE".into(), "gateways".into()),
            ("LANG".into(), "C.UTF-8".into()),
        ],
    )
    .await;
    let deadline = std::time::Instant::now() + WAIT;
    while !envs.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no add call:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = std::fs::read_to_string(&envs).expect("env dump");
    assert!(!text.contains("foreman-secret-token"), "{text}");
    assert!(!text.contains("db-password"), "{text}");
    assert!(!text.contains("RUST_LOG"), "{text}");
    let vars: std::collections::BTreeMap<&str, &str> =
        text.lines().filter_map(|l| l.split_once('=')).collect();
    assert!(vars.get("PATH").is_some_and(|p| !p.is_empty()), "{text}");
    assert_eq!(vars.get("LANG"), Some(&"C.UTF-8"), "{text}");
    assert_eq!(vars.get("CLOUD_PROFILE"), Some(&"gateways"), "{text}");
    assert_eq!(vars.get("JITSI_SCALER_OP"), Some(&"add"), "{text}");
    assert_eq!(
        vars.get("JITSI_SCALER_INSTANCE_TYPE"),
        Some(&"video-sip-gateway"),
        "{text}"
    );
    assert!(
        vars.get("JITSI_SCALER_HOST")
            .is_some_and(|h| h.starts_with("vsg-")),
        "{text}"
    );
    // The shell adds PWD, SHLVL and `_`; nothing else comes from `serve`.
    let expected = [
        "PATH",
        "LANG",
        "CLOUD_PROFILE",
        "JITSI_SCALER_OP",
        "JITSI_SCALER_INSTANCE_TYPE",
        "JITSI_SCALER_HOST",
        "PWD",
        "SHLVL",
        "_",
        "OLDPWD",
    ];
    for name in vars.keys() {
        assert!(
            expected.contains(name),
            "unexpected variable {name}: {text}"
        );
    }
}

/// Case 8: a `JITSI_SCALER_*` name in `pass_env` is refused at start.
#[tokio::test]
async fn pass_env_refuses_the_scalers_own_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = dir.path().join("lifecycle.sh");
    std::fs::write(&program, "#!/bin/sh\nexit 0\n").expect("write program");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let config = dir.path().join("scaler.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{}",
            dir.path().join("data").display(),
            command_config(
                "http://127.0.0.1:9/",
                &program,
                r#""JITSI_SCALER_LIFECYCLE__FOREMAN__TOKEN""#
            )
        ),
    )
    .expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jitsi-scaler"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("JITSI_SCALER_CONFIG")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pass_env: JITSI_SCALER_LIFECYCLE__FOREMAN__TOKEN is refused"),
        "{stderr}"
    );
}
