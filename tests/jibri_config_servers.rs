//! `jibri-config check` finds two environments on one XMPP server (issue 14, item 4), and the
//! seed's two-environment file still passes. The real binary on files in a temp dir.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_jitsi-scaler");

/// The two-shard jibri.conf of tests/jibri_config.rs (SPEC §7 shape), copied verbatim.
const SPEC_CONF: &str = r#"# /etc/jitsi/jibri/jibri.conf (SIP gateway)
jibri {
  // single-use: exit after each session
  single-use-mode = false
  api {
    http {
      external-api-port = 2222
      internal-api-port: 3333
    }
    xmpp {
      # one environment per shard
      environments = [
        {
          name = "shard-1"
          xmpp-server-hosts = [ "10.0.1.10" ]
          xmpp-domain = meet.example.com   // unquoted
          control-muc {
            domain = "internal.auth.meet.example.com"
            room-name = JibriBrewery
            nickname = "2c5e6ba4-46e9-4bb1-9b36-d0b5a1a6d9f1"
          }
          sip-control-muc: {
            domain: "internal.auth.meet.example.com"
            room-name: "SipBrewery"
            nickname: "2c5e6ba4-46e9-4bb1-9b36-d0b5a1a6d9f1"
          }
          control-login {
            domain = auth.meet.example.com
            username = "jibri"
            password = "test-only-control"
          }
          call-login {
            domain = "recorder.meet.example.com"
            username = recorder
            password = "test-only-call"
          }
          strip-from-room-domain = "conference."
          usage-timeout = 0
          trust-all-xmpp-certs = true
        },
        {
          name: shard-2
          xmpp-server-hosts: [
            "10.0.2.10",
          ]
          xmpp-domain: "meet.example.com"
          control-muc = { domain = "internal.auth.meet.example.com", room-name = "JibriBrewery", nickname = "2c5e6ba4-46e9-4bb1-9b36-d0b5a1a6d9f1" }
          sip-control-muc { domain: "internal.auth.meet.example.com", room-name: SipBrewery, nickname: "2c5e6ba4-46e9-4bb1-9b36-d0b5a1a6d9f1" }
          control-login { domain = "auth.meet.example.com", username = "jibri", password = "test-only-control" }
          call-login { domain = "recorder.meet.example.com", username = "recorder", password = "test-only-call" }
          strip-from-room-domain: "conference."
          usage-timeout: 0
          trust-all-xmpp-certs: true
        }
      ]
    }
  }
  // stats and logging stay as they are
  stats {
    enable-stats-d = true
  }
}
"#;

fn check(text: &str) -> (i32, Value) {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("jibri.conf");
    std::fs::write(&conf, text).unwrap();
    let o = Command::new(BIN)
        .args(["jibri-config", "check", "--json"])
        .arg(&conf)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)));
    (o.status.code().unwrap(), v)
}

#[test]
fn the_seed_two_environment_file_passes() {
    let (status, v) = check(SPEC_CONF);
    assert_eq!(status, 0, "{v:#}");
    assert_eq!(v["findings"], serde_json::json!([]));
}

#[test]
fn two_environments_on_one_xmpp_server_fail_naming_the_field() {
    // The copy-paste mistake: shard-2 still points at shard-1's server.
    assert_eq!(SPEC_CONF.matches("\"10.0.2.10\"").count(), 1);
    let text = SPEC_CONF.replacen("\"10.0.2.10\"", "\"10.0.1.10\"", 1);
    let (status, v) = check(&text);
    assert_eq!(status, 1, "{v:#}");
    let findings = v["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{v:#}");
    let f = &findings[0];
    assert_eq!(f["code"], "shared-server-host");
    assert_eq!(f["environment"], "shard-2");
    let msg = f["message"].as_str().unwrap();
    assert!(msg.contains("xmpp-server-hosts"), "{msg}");
    assert!(
        msg.contains("10.0.1.10") && msg.contains("shard-1"),
        "{msg}"
    );
    // Positioned at the entry in the second environment.
    let line = f["line"].as_u64().unwrap() as usize;
    assert!(
        text.lines().nth(line - 1).unwrap().contains("10.0.1.10"),
        "line {line}"
    );
}

#[test]
fn case_and_trailing_dots_do_not_hide_a_shared_server() {
    let text = SPEC_CONF
        .replacen(
            "\"10.0.1.10\"",
            "\"xmpp.Shard1.example.com\", \"10.0.1.10\"",
            1,
        )
        .replacen("\"10.0.2.10\"", "\"XMPP.shard1.example.com.\"", 1);
    let (status, v) = check(&text);
    assert_eq!(status, 1, "{v:#}");
    let codes: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["shared-server-host"], "{v:#}");
}
