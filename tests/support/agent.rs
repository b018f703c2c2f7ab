//! The real `jitsi-scaler agent` as a process, with fast timings, next to a fake Jibri.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::jibri::FakeJibri;
use super::tokens::ec_key_pair;
use super::until;

/// The real `jitsi-scaler agent`, with its own config and log file.
pub struct Agent {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Agent {
    /// Agent config with fast timings; `extra` lines are appended (and may repeat none of these).
    pub fn config(scaler_url: &str, jibri: &FakeJibri, dir: &Path, extra: &str) -> String {
        let mut base = vec![
            format!("scaler_url = {scaler_url:?}"),
            format!("jibri_health_url = {:?}", jibri.health_url),
            format!("jibri_shutdown_url = {:?}", jibri.shutdown_url),
            format!(
                "on_accepted = \"touch {}\"",
                dir.join("accepted.flag").display()
            ),
        ];
        let defaults = [
            ("instance", "\"gw-1\""),
            ("check_interval", "\"100ms\""),
            ("idle_time", "\"1s\""),
            ("keep_backoff", "\"300ms\""),
            ("retry_backoff", "\"200ms\""),
            ("retry_backoff_max", "\"1s\""),
            ("unreachable_time", "\"1s\""),
            ("unhealthy_checks", "3"),
            ("jibri_timeout", "\"500ms\""),
            ("connect_timeout", "\"500ms\""),
            ("request_timeout", "\"3s\""),
            ("drain_deadline", "\"30s\""),
            ("drained_attempts", "3"),
        ];
        // `# no key` in `extra`: requests without a token.
        if !["sidecar_env_file", "key_file", "# no key"]
            .iter()
            .any(|k| extra.contains(k))
        {
            let (key, _) = ec_key_pair(dir, "asap");
            base.push(format!("key_file = {:?}", key.display().to_string()));
        }
        for (k, v) in defaults {
            if !extra
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{k} ")))
            {
                base.push(format!("{k} = {v}"));
            }
        }
        format!("{}\n{extra}\n", base.join("\n"))
    }

    pub fn start(scaler_url: &str, jibri: &FakeJibri, extra: &str) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = Agent::config(scaler_url, jibri, dir.path(), extra);
        let config = dir.path().join("agent.toml");
        std::fs::write(&config, text).expect("write config");
        let log = std::fs::File::create(dir.path().join("agent.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_jitsi-scaler"))
            .args(["agent", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn the agent");
        Agent {
            child: Some(child),
            dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    pub fn accepted_flag(&self) -> bool {
        self.dir.path().join("accepted.flag").exists()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits for the exit (or fails with the log).
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let log = self.dir.path().join("agent.log");
        let child = self.child.as_mut().expect("the agent was started");
        let mut status = None;
        let exited = || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        };
        until("the agent to exit", timeout, exited, || {
            std::fs::read_to_string(&log).unwrap_or_default()
        })
        .await;
        status.expect("exited")
    }

    /// Waits for the exit and asserts it was a success (exit 0).
    pub async fn wait_success(&mut self, timeout: Duration) {
        let status = self.wait_exit(timeout).await;
        assert!(status.success(), "{status}\n{}", self.log());
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) {
        let what = format!("{needle:?} in the agent log");
        until(
            &what,
            timeout,
            || self.log().contains(needle),
            || self.log(),
        )
        .await;
    }

    /// A memory figure in kB from /proc/<pid>/status (`VmRSS:`, `RssAnon:`, ...).
    pub fn memory_kb(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
