//! `jitsi-scaler jibri-config` end to end: the real binary on files in a temp dir.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_jitsi-scaler");

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

/// A shards file with `n` shards named shard-1..shard-n; passwords from a file and a variable.
fn shards_toml(n: usize) -> String {
    let mut s = String::from(
        r#"# test shards file (sub-tables inline)
[common]
xmpp-domain = "meet.example.com"
strip-from-room-domain = "conference."
usage-timeout = 0
trust-all-xmpp-certs = true
control-muc = { domain = "internal.auth.meet.example.com", room-name = "JibriBrewery" }
sip-control-muc = { domain = "internal.auth.meet.example.com", room-name = "SipBrewery" }
control-login = { domain = "auth.meet.example.com", username = "jibri", password_file = "control.pw" }
call-login = { domain = "recorder.meet.example.com", username = "recorder", password_env = "TEST_CALL_PASSWORD" }
"#,
    );
    for i in 1..=n {
        s.push_str(&format!(
            "\n[[shard]]\nname = \"shard-{i}\"\nxmpp-server-hosts = [\"10.0.{i}.10\"]\n"
        ));
    }
    s
}

const ENV: &[(&str, &str)] = &[("TEST_CALL_PASSWORD", "test-only-call")];

/// A temp dir holding `shards.toml` (n shards) and the control password file.
fn setup(n: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("control.pw"), "test-only-control\n").unwrap();
    let shards = dir.path().join("shards.toml");
    fs::write(&shards, shards_toml(n)).unwrap();
    (dir, shards)
}

/// [`setup`] plus `jibri.conf` holding `text`: (dir, shards file, conf file).
fn setup_with_conf(n: usize, text: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (dir, shards) = setup(n);
    let conf = dir.path().join("jibri.conf");
    fs::write(&conf, text).unwrap();
    (dir, shards, conf)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn check_json(conf: &Path, shards: Option<&Path>, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["jibri-config", "check", p(conf), "--json"];
    if let Some(s) = shards {
        args.extend(["--shards", p(s)]);
    }
    args.extend(extra);
    let o = run(&args, &[]);
    let v: Value = serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(&o), stderr(&o)));
    (code(&o), v)
}

fn codes(v: &Value) -> Vec<(String, Option<String>)> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_owned(),
                f["environment"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

// ---------------------------------------------------------------- generate + check round trip

/// `jibri-config generate --shards <shards> <extra>` with the call password set.
fn generate(shards: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["jibri-config", "generate", "--shards", p(shards)];
    args.extend(extra);
    run(&args, ENV)
}

fn round_trip(n: usize) {
    let (dir, shards) = setup(n);
    let o = generate(&shards, &["--nickname", "gw-test"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    assert_eq!(text.matches("name = \"shard-").count(), n);
    assert!(text.contains("password = \"test-only-control\""));
    assert!(text.contains("password = \"test-only-call\""));
    assert!(text.contains("usage-timeout = 0\n"));
    let conf = dir.path().join("jibri.conf");
    fs::write(&conf, &text).unwrap();
    let (status, v) = check_json(&conf, Some(&shards), &[]);
    assert_eq!(status, 0, "{v:#}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["environments"].as_array().unwrap().len(), n);
    // Human output too.
    let o = run(
        &["jibri-config", "check", p(&conf), "--shards", p(&shards)],
        &[],
    );
    assert_eq!(code(&o), 0);
    assert!(
        stdout(&o).contains(&format!("OK, {n} environment(s)")),
        "{}",
        stdout(&o)
    );
}

#[test]
fn round_trip_one_shard() {
    round_trip(1);
}

#[test]
fn round_trip_two_shards() {
    round_trip(2);
}

#[test]
fn round_trip_ten_shards() {
    round_trip(10);
}

#[test]
fn generate_is_deterministic_with_a_nickname_and_fresh_without() {
    let (_dir, shards) = setup(2);
    let gen_with = |extra: &[&str]| {
        let o = generate(&shards, extra);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        stdout(&o)
    };
    assert_eq!(
        gen_with(&["--nickname", "gw-7"]),
        gen_with(&["--nickname", "gw-7"])
    );
    let nick = |text: &str| {
        let line = text.lines().find(|l| l.contains("nickname = ")).unwrap();
        line.split('"').nth(1).unwrap().to_owned()
    };
    let (a, b) = (nick(&gen_with(&[])), nick(&gen_with(&[])));
    assert_ne!(a, b, "each run draws a fresh nickname");
    // UUID v4 shape: 8-4-4-4-12 hex, version 4, RFC 4122 variant.
    let parts: Vec<&str> = a.split('-').collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12]
    );
    assert!(parts[2].starts_with('4'));
    assert!(matches!(
        parts[3].chars().next(),
        Some('8' | '9' | 'a' | 'b')
    ));
    // Every environment (and MUC) of one gateway shares its nickname.
    let text = gen_with(&[]);
    let n = nick(&text);
    assert_eq!(text.matches(&format!("nickname = \"{n}\"")).count(), 4);
}

#[test]
fn generate_reports_shards_file_and_password_problems() {
    let (dir, shards) = setup(1);
    let o = run(&["jibri-config", "generate", "--shards", p(&shards)], &[]);
    assert_ne!(code(&o), 0);
    assert!(
        stderr(&o).contains("TEST_CALL_PASSWORD is not set"),
        "{}",
        stderr(&o)
    );

    let bad = dir.path().join("bad.toml");
    fs::write(
        &bad,
        shards_toml(1).replace("usage-timeout = 0", "usage-timeout = 7200")
            + "[[shard]]\nname = \"shard-1\"\nxmpp-server-hosts = []\n",
    )
    .unwrap();
    let o = generate(&bad, &[]);
    assert_ne!(code(&o), 0);
    let err = stderr(&o);
    assert!(err.contains("milliseconds"), "{err}");
    assert!(err.contains("name is used twice"), "{err}");
    assert!(err.contains("xmpp-server-hosts"), "{err}");
    assert!(stdout(&o).is_empty());
}

// ---------------------------------------------------------------- a SPEC §7 shaped file

/// Two shards as an operator writes them: comments of both kinds, `=` and `:`, shorthand
/// objects, quoted and unquoted values, a multi-line array of objects, a trailing comma.
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

/// Replaces the only occurrence of `from` (panics if absent, so a test cannot pass vacuously).
fn edit(base: &str, from: &str, to: &str) -> String {
    assert_eq!(
        base.matches(from).count(),
        1,
        "fixture must contain {from:?} once"
    );
    base.replacen(from, to, 1)
}

#[test]
fn spec_shaped_two_shard_file_parses_and_matches_the_shards_file() {
    let (_dir, shards, conf) = setup_with_conf(2, SPEC_CONF);
    let (status, v) = check_json(&conf, Some(&shards), &[]);
    assert_eq!(status, 0, "{v:#}");
    assert_eq!(v["environments"], serde_json::json!(["shard-1", "shard-2"]));
    assert_eq!(v["findings"], serde_json::json!([]));
    // Also as a SIP gateway explicitly, and from standard input.
    let (status, _) = check_json(&conf, Some(&shards), &["--kind", "sip"]);
    assert_eq!(status, 0);
    let mut child = Command::new(BIN)
        .args(["jibri-config", "check", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(SPEC_CONF.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "{}", stdout(&o));
}

// ---------------------------------------------------------------- findings

/// Checks `text` (against the 2-shard file) and returns the status and (code, environment) list.
fn findings(text: &str, extra: &[&str]) -> (i32, Vec<(String, Option<String>)>, Value) {
    let (_dir, shards, conf) = setup_with_conf(2, text);
    let (status, v) = check_json(&conf, Some(&shards), extra);
    (status, codes(&v), v)
}

/// [`findings`] of SPEC_CONF with `from` replaced by `to`.
fn findings_after(from: &str, to: &str, extra: &[&str]) -> (i32, Findings, Value) {
    findings(&edit(SPEC_CONF, from, to), extra)
}

type Findings = Vec<(String, Option<String>)>;

/// SPEC_CONF with `from` replaced by `to` exits 1 with the finding `code` about `env`: the
/// findings and the JSON.
fn expect_finding(
    from: &str,
    to: &str,
    extra: &[&str],
    code: &str,
    env: Option<&str>,
) -> (Findings, Value) {
    let (status, list, v) = findings_after(from, to, extra);
    assert_eq!(status, 1, "{v:#}");
    assert!(has(&list, code, env), "{code} {env:?}: {v:#}");
    (list, v)
}

fn has(list: &[(String, Option<String>)], code: &str, env: Option<&str>) -> bool {
    list.iter().any(|(c, e)| c == code && e.as_deref() == env)
}

/// The only finding with `code`, from a check's JSON.
fn finding<'a>(v: &'a Value, code: &str) -> &'a Value {
    let all = v["findings"].as_array().unwrap();
    let mut of_code = all.iter().filter(|f| f["code"] == code);
    of_code.next().unwrap()
}

/// The SIP MUC line of the second environment.
const SIP_MUC_2: &str = "sip-control-muc { domain: \"internal.auth.meet.example.com\", room-name: SipBrewery, nickname: \"2c5e6ba4-46e9-4bb1-9b36-d0b5a1a6d9f1\" }\n";

#[test]
fn finding_missing_shard_and_unknown_environment() {
    let (from, to) = ("name: shard-2", "name: shard-3");
    let (list, _) = expect_finding(from, to, &[], "missing-shard", Some("shard-2"));
    assert!(
        has(&list, "unknown-environment", Some("shard-3")),
        "{list:?}"
    );
    assert_eq!(list.len(), 2, "{list:?}");
}

#[test]
fn finding_duplicate_name() {
    let (from, to) = ("name: shard-2", "name: \"shard-1\"");
    let (list, v) = expect_finding(from, to, &[], "duplicate-name", Some("shard-1"));
    assert!(has(&list, "missing-shard", Some("shard-2")), "{list:?}");
    // Positioned at the second environment.
    assert_eq!(finding(&v, "duplicate-name")["line"], 41);
}

#[test]
fn finding_inconsistent_fields() {
    for (from, to, field) in [
        (
            "xmpp-domain: \"meet.example.com\"",
            "xmpp-domain: \"other.example.com\"",
            "xmpp-domain",
        ),
        (
            "room-name = \"JibriBrewery\", nickname",
            "room-name = \"Other\", nickname",
            "control-muc",
        ),
        (
            "room-name: SipBrewery",
            "room-name: OtherSip",
            "sip-control-muc",
        ),
        (
            "username = \"jibri\", password = \"test-only-control\"",
            "username = \"jibri\", password = \"other\"",
            "control-login",
        ),
        (
            "username = \"recorder\", password",
            "username = \"rec2\", password",
            "call-login",
        ),
    ] {
        let (_, v) = expect_finding(from, to, &[], "inconsistent-field", Some("shard-2"));
        let msg = finding(&v, "inconsistent-field")["message"]
            .as_str()
            .unwrap();
        assert!(msg.contains(field), "{msg}");
        let leaked = msg.contains("test-only") || msg.contains("\"other\"");
        assert!(!leaked, "password leaked: {msg}");
    }
    // A SIP MUC on one shard only.
    expect_finding(SIP_MUC_2, "", &[], "inconsistent-field", Some("shard-2"));
}

#[test]
fn finding_usage_timeout() {
    let zero = "usage-timeout: 0";
    let not_zero = "usage-timeout-not-zero";
    expect_finding(
        zero,
        "usage-timeout: 2 hours",
        &[],
        not_zero,
        Some("shard-2"),
    );
    let no_unit = "usage-timeout-without-unit";
    expect_finding(zero, "usage-timeout: 7200", &[], no_unit, Some("shard-2"));
    // A recording Jibri may have a limit; still not a bare number.
    let recording = ["--kind", "recording"];
    let (_, list, v) = findings_after(zero, "usage-timeout: \"2 hours\"", &recording);
    assert!(!has(&list, not_zero, Some("shard-2")), "{v:#}");
}

#[test]
fn finding_missing_required_fields() {
    let second_env_lines = [
        ("name", "name: shard-2\n"),
        (
            "xmpp-server-hosts",
            "xmpp-server-hosts: [\n            \"10.0.2.10\",\n          ]\n",
        ),
        ("xmpp-domain", "xmpp-domain: \"meet.example.com\"\n"),
        (
            "control-muc",
            "control-muc = { domain = \"internal.auth.meet.example.com\", room-name = \"JibriBrewery\", nickname = \"2c5e6ba4-46e9-4bb1-9b36-d0b5a1a6d9f1\" }\n",
        ),
        (
            "control-login",
            "control-login { domain = \"auth.meet.example.com\", username = \"jibri\", password = \"test-only-control\" }\n",
        ),
        (
            "call-login",
            "call-login { domain = \"recorder.meet.example.com\", username = \"recorder\", password = \"test-only-call\" }\n",
        ),
        (
            "strip-from-room-domain",
            "strip-from-room-domain: \"conference.\"\n",
        ),
        ("usage-timeout", "usage-timeout: 0\n"),
        ("trust-all-xmpp-certs", "trust-all-xmpp-certs: true\n"),
    ];
    for (field, line) in second_env_lines {
        let (status, _, v) = findings_after(line, "", &[]);
        assert_eq!(status, 1, "{field}");
        let missing: Vec<&Value> = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["code"] == "missing-field")
            .collect();
        assert_eq!(missing.len(), 1, "{field}: {v:#}");
        let message = missing[0]["message"].as_str().unwrap();
        assert!(message.contains(&format!("`{field}`")));
        if field != "name" {
            assert_eq!(missing[0]["environment"], "shard-2", "{v:#}");
        }
    }
    // Sub-fields of a login.
    let with_password = "username = \"recorder\", password = \"test-only-call\" ";
    let (_, _, v) = findings_after(with_password, "username = \"recorder\" ", &[]);
    let named = v["findings"].to_string().contains("call-login.password");
    assert!(named, "{v:#}");
    // --kind sip requires a SIP MUC.
    let sip = ["--kind", "sip"];
    expect_finding(SIP_MUC_2, "", &sip, "missing-field", Some("shard-2"));
}

#[test]
fn finding_missing_or_empty_nickname() {
    let nick = "room-name = \"JibriBrewery\", nickname = \"2c5e6ba4-46e9-4bb1-9b36-d0b5a1a6d9f1\"";
    let empty = "room-name = \"JibriBrewery\", nickname = \"\"";
    expect_finding(nick, empty, &[], "missing-nickname", Some("shard-2"));
    let (first, without) = (
        "            nickname = \"2c5e6ba4-46e9-4bb1-9b36-d0b5a1a6d9f1\"\n          }\n          sip",
        "          }\n          sip",
    );
    expect_finding(first, without, &[], "missing-nickname", Some("shard-1"));
}

#[test]
fn finding_invalid_values_and_no_environments() {
    let (trust, maybe) = ("trust-all-xmpp-certs: true", "trust-all-xmpp-certs: maybe");
    expect_finding(trust, maybe, &[], "invalid-value", Some("shard-2"));
    let (hosts, none) = (
        "xmpp-server-hosts = [ \"10.0.1.10\" ]",
        "xmpp-server-hosts = []",
    );
    expect_finding(hosts, none, &[], "invalid-value", Some("shard-1"));

    let (status, list, v) = findings("jibri { api { xmpp { } } }\n", &[]);
    assert_eq!(status, 1);
    assert!(has(&list, "no-environments", None), "{v:#}");
}

#[test]
fn finding_differs_from_shards_file() {
    let (from, to) = ("\"10.0.2.10\",", "\"10.0.2.99\",");
    let (list, _) = expect_finding(from, to, &[], "differs-from-shards", Some("shard-2"));
    assert_eq!(list.len(), 1, "{list:?}");
    // Without --shards the file alone is consistent.
    let (_dir, _, conf) = setup_with_conf(2, &edit(SPEC_CONF, from, to));
    assert_eq!(check_json(&conf, None, &[]).0, 0);
}

#[test]
fn substitutions_are_resolved_or_reported_and_includes_reported() {
    // Resolved: the shared domain through a (forward) substitution. The repeated `jibri` key
    // must merge into the first one, or the environments would vanish (no-environments).
    let domain = "xmpp-domain: \"meet.example.com\"";
    let text = edit(SPEC_CONF, domain, "xmpp-domain: ${common.domain}")
        + "common { domain = meet.example.com }\njibri { stats { enable-stats-d = false } }\n";
    let (status, _, v) = findings(&text, &[]);
    assert_eq!(status, 0, "{v:#}");

    let (zero, undefined) = ("usage-timeout: 0", "usage-timeout: ${NOT_DEFINED}");
    let (list, _) = expect_finding(zero, undefined, &[], "unresolved-substitution", None);
    assert!(has(&list, "missing-field", Some("shard-2")), "{list:?}");

    let text = format!("include \"/etc/jitsi/jibri/extra.conf\"\n{SPEC_CONF}");
    let (status, list, v) = findings(&text, &[]);
    assert_eq!(status, 1);
    let include = vec![("include-not-followed".to_owned(), None)];
    assert_eq!(list, include, "{v:#}");
    assert_eq!(v["findings"][0]["line"], 1);
}

#[test]
fn human_output_names_file_line_column_and_environment() {
    let text = edit(SPEC_CONF, "usage-timeout: 0", "usage-timeout: 2 hours");
    let (_dir, shards, conf) = setup_with_conf(2, &text);
    let o = run(
        &["jibri-config", "check", p(&conf), "--shards", p(&shards)],
        &[],
    );
    assert_eq!(code(&o), 1);
    let out = stdout(&o);
    let want = format!("{}:52:26: usage-timeout-not-zero [shard-2]:", p(&conf));
    assert!(out.contains(&want), "{out}");
}

// ---------------------------------------------------------------- parse errors

#[test]
fn parse_errors_carry_line_and_column_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, usize, usize)] = &[
        ("jibri {\n  api {\n    xmpp = [ 1,\n", 4, 1),
        ("jibri {\n  name = \"unterminated\n}\n", 2, 23),
        ("jibri {\n  a = 1 = 2\n}\n", 2, 9),
        ("jibri {\n  api\n}\n", 2, 6),
        ("jibri {\n  x = [1,,2]\n}\n", 2, 10),
        ("a = 1\n}\n", 2, 1),
    ];
    for (i, (text, line, column)) in cases.iter().enumerate() {
        let conf = dir.path().join(format!("bad{i}.conf"));
        fs::write(&conf, text).unwrap();
        let (status, v) = check_json(&conf, None, &[]);
        assert_eq!(status, 2, "{text:?}");
        assert_eq!(v["error"]["line"], *line, "{text:?}: {v:#}");
        assert_eq!(v["error"]["column"], *column, "{text:?}: {v:#}");
        let o = run(&["jibri-config", "check", p(&conf)], &[]);
        assert_eq!(code(&o), 2);
        assert!(
            stderr(&o).contains(&format!("{}:{line}:{column}:", p(&conf))),
            "{}",
            stderr(&o)
        );
    }
    let (status, v) = check_json(&dir.path().join("missing.conf"), None, &[]);
    assert_eq!(status, 2);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot read")
    );
}

// ---------------------------------------------------------------- --write

fn write_with(shards: &Path, conf: &Path, extra: &[&str]) -> Output {
    generate(shards, &[&["--write", p(conf)], extra].concat())
}

#[test]
fn write_replaces_only_the_environments_and_keeps_a_backup() {
    let (dir, shards) = setup(3);
    let conf = dir.path().join("jibri.conf");
    fs::write(&conf, SPEC_CONF).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&conf, fs::Permissions::from_mode(0o640)).unwrap();
    }
    let o = write_with(&shards, &conf, &["--nickname", "gw-new"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("replaced 3 environment(s)"),
        "{}",
        stderr(&o)
    );

    let new = fs::read_to_string(&conf).unwrap();
    let open = SPEC_CONF.find("environments = [").unwrap() + "environments = ".len();
    let close = SPEC_CONF.rfind("]\n    }\n  }\n  // stats").unwrap() + 1;
    let (prefix, suffix) = (&SPEC_CONF[..open], &SPEC_CONF[close..]);
    assert!(new.starts_with(prefix), "prefix changed:\n{new}");
    assert!(new.ends_with(suffix), "suffix changed:\n{new}");
    let block = &new[prefix.len()..new.len() - suffix.len()];
    assert!(
        block.starts_with("[\n        {\n          name = \"shard-1\""),
        "{block}"
    );
    assert!(block.ends_with("\n      ]"), "{block}");
    assert_eq!(block.matches("nickname = \"gw-new\"").count(), 6);

    assert_eq!(
        fs::read_to_string(dir.path().join("jibri.conf.bak")).unwrap(),
        SPEC_CONF
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&conf).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }
    // No temp file left behind; the result checks clean against the 3-shard file.
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    let (status, v) = check_json(&conf, Some(&shards), &[]);
    assert_eq!(status, 0, "{v:#}");
}

#[test]
fn write_keep_nickname_reuses_the_file_identity() {
    let (dir, shards) = setup(2);
    let conf = dir.path().join("jibri.conf");
    fs::write(&conf, SPEC_CONF).unwrap();
    let o = write_with(&shards, &conf, &["--keep-nickname"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let new = fs::read_to_string(&conf).unwrap();
    assert_eq!(
        new.matches("\"2c5e6ba4-46e9-4bb1-9b36-d0b5a1a6d9f1\"")
            .count(),
        4
    );
}

#[test]
fn write_inserts_the_nesting_when_there_is_no_environments_block() {
    let (dir, shards) = setup(2);
    let conf = dir.path().join("jibri.conf");
    let original = "# minimal\njibri {\n  // keep me\n  api {\n    http { external-api-port = 2222 }\n  }\n}\n";
    fs::write(&conf, original).unwrap();
    let o = write_with(&shards, &conf, &["--nickname", "n"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("inserted"));
    let new = fs::read_to_string(&conf).unwrap();
    let prefix =
        "# minimal\njibri {\n  // keep me\n  api {\n    http { external-api-port = 2222 }\n";
    assert!(new.starts_with(&format!("{prefix}    xmpp {{\n")), "{new}");
    assert!(new.ends_with("    }\n  }\n}\n"), "{new}");
    assert_eq!(
        fs::read_to_string(dir.path().join("jibri.conf.bak")).unwrap(),
        original
    );
    assert_eq!(check_json(&conf, Some(&shards), &[]).0, 0);
}

#[test]
fn write_refuses_ambiguous_or_broken_files_and_leaves_them_alone() {
    let (dir, shards) = setup(2);
    let conf = dir.path().join("jibri.conf");
    for original in [
        "jibri.api.xmpp.environments = []\njibri { api { xmpp { environments = [] } } }\n",
        "jibri {\n  api = [\n",
    ] {
        fs::write(&conf, original).unwrap();
        let o = write_with(&shards, &conf, &["--nickname", "n"]);
        assert_ne!(code(&o), 0);
        assert!(
            stderr(&o).contains("defined 2 times") || stderr(&o).contains(":3:1:"),
            "{}",
            stderr(&o)
        );
        assert_eq!(fs::read_to_string(&conf).unwrap(), original);
        assert!(!dir.path().join("jibri.conf.bak").exists());
    }
    let o = write_with(&shards, &dir.path().join("absent.conf"), &[]);
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("cannot read"), "{}", stderr(&o));
}

#[cfg(unix)]
#[test]
fn write_through_a_symlink_replaces_the_target() {
    let (dir, shards) = setup(1);
    let real = dir.path().join("real.conf");
    let link = dir.path().join("jibri.conf");
    fs::write(&real, "jibri { }\n").unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let o = write_with(&shards, &link, &["--nickname", "n"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(fs::read_to_string(&real).unwrap().contains("shard-1"));
    assert!(dir.path().join("real.conf.bak").exists());
}

// ---------------------------------------------------------------- one XMPP server, two environments

// Two environments on one XMPP server: `check` finds them; the SPEC file still passes.

/// Checks `text` on its own (no shards file): the exit status and the JSON.
fn check_alone(text: &str) -> (i32, Value) {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("jibri.conf");
    fs::write(&conf, text).unwrap();
    check_json(&conf, None, &[])
}

#[test]
fn the_seed_two_environment_file_passes() {
    let (status, v) = check_alone(SPEC_CONF);
    assert_eq!(status, 0, "{v:#}");
    assert_eq!(v["findings"], serde_json::json!([]));
}

#[test]
fn two_environments_on_one_xmpp_server_fail_naming_the_field() {
    // The copy-paste mistake: shard-2 still points at shard-1's server.
    assert_eq!(SPEC_CONF.matches("\"10.0.2.10\"").count(), 1);
    let text = SPEC_CONF.replacen("\"10.0.2.10\"", "\"10.0.1.10\"", 1);
    let (status, v) = check_alone(&text);
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
    let (status, v) = check_alone(&text);
    assert_eq!(status, 1, "{v:#}");
    let codes: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["shared-server-host"], "{v:#}");
}

// ---------------------------------------------------------------- cross-check

/// What Jibri's own config library (Typesafe config) reads from our output and from the
/// SPEC-shaped fixture. Opt-in: needs `java` (11+) and Debian's libtypesafe-config-java.
#[test]
#[ignore = "needs java and libtypesafe-config-java (apt-get install libtypesafe-config-java)"]
fn typesafe_config_reads_generated_and_written_files_like_we_do() {
    const JAR: &str = "/usr/share/java/typesafe-config.jar";
    const DUMP: &str = r#"
import com.typesafe.config.*;
import java.util.concurrent.TimeUnit;
public class Dump {
  public static void main(String[] a) {
    Config c = ConfigFactory.parseFile(new java.io.File(a[0])).resolve();
    for (Config e : c.getConfigList("jibri.api.xmpp.environments"))
      System.out.println(e.getString("name") + " " + e.getStringList("xmpp-server-hosts")
        + " " + e.getString("control-muc.nickname") + " " + e.getString("call-login.password")
        + " " + e.getDuration("usage-timeout", TimeUnit.MILLISECONDS)
        + " " + e.getBoolean("trust-all-xmpp-certs"));
  }
}
"#;
    let (dir, shards) = setup(2);
    let dump = dir.path().join("Dump.java");
    fs::write(&dump, DUMP).unwrap();
    let java = |conf: &Path| {
        let o = Command::new("java")
            .args(["-cp", JAR, p(&dump), p(conf)])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let generated = dir.path().join("generated.conf");
    let o = generate(&shards, &["--nickname", "gw-x"]);
    fs::write(&generated, stdout(&o)).unwrap();
    assert_eq!(
        java(&generated),
        "shard-1 [10.0.1.10] gw-x test-only-call 0 true\nshard-2 [10.0.2.10] gw-x test-only-call 0 true\n"
    );
    let spec = dir.path().join("spec.conf");
    fs::write(&spec, SPEC_CONF).unwrap();
    let nick = "2c5e6ba4-46e9-4bb1-9b36-d0b5a1a6d9f1";
    assert_eq!(
        java(&spec),
        format!(
            "shard-1 [10.0.1.10] {nick} test-only-call 0 true\nshard-2 [10.0.2.10] {nick} test-only-call 0 true\n"
        )
    );
    // After --write, both the replaced and the inserted forms.
    let o = write_with(&shards, &spec, &["--nickname", "gw-y"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(java(&spec).starts_with("shard-1 [10.0.1.10] gw-y test-only-call 0 true\n"));
    let one_line = dir.path().join("one.conf");
    fs::write(&one_line, "jibri { api { xmpp { } } }").unwrap();
    let o = write_with(&shards, &one_line, &["--nickname", "gw-z"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(java(&one_line).contains("shard-2 [10.0.2.10] gw-z"));
}
