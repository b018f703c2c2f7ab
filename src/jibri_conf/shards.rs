//! The shards file (TOML): the environments `generate` writes and `check --shards` expects.
//!
//! Keys copied 1:1 into jibri.conf keep its kebab-case spelling (`xmpp-domain`, `room-name`);
//! our own indirections are `password_file` / `password_env`. A `[common]` table holds the
//! shared fields; each `[[shard]]` has `name` and `xmpp-server-hosts` and may override any
//! common field (logins and MUCs field by field; a shard naming any password source replaces
//! the common one).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The environments described by a shards file, in file order.
#[derive(Debug, Clone)]
pub struct Shards {
    /// One per shard.
    pub shards: Vec<ShardEnv>,
}

/// One shard's environment, merged with the common section and validated.
#[derive(Debug, Clone)]
pub struct ShardEnv {
    /// Environment name (usually the shard's name).
    pub name: String,
    /// The shard's XMPP servers.
    pub hosts: Vec<String>,
    /// `xmpp-domain`.
    pub xmpp_domain: String,
    /// `control-muc` (the nickname comes from `generate --nickname`).
    pub control_muc: Muc,
    /// `sip-control-muc`, for SIP gateways.
    pub sip_control_muc: Option<Muc>,
    /// `control-login`.
    pub control_login: Login,
    /// `call-login`.
    pub call_login: Login,
    /// `strip-from-room-domain`.
    pub strip_from_room_domain: String,
    /// `usage-timeout`.
    pub usage_timeout: UsageTimeout,
    /// `trust-all-xmpp-certs`.
    pub trust_all_xmpp_certs: bool,
    /// `base-url` (optional).
    pub base_url: Option<String>,
    /// `security-mode` (optional).
    pub security_mode: Option<String>,
    /// Fields that must be equal across shards but this shard overrides (for a warning).
    pub overridden: Vec<&'static str>,
}

/// A MUC without its per-gateway nickname.
#[derive(Debug, Clone, PartialEq)]
pub struct Muc {
    /// `domain`.
    pub domain: String,
    /// `room-name`.
    pub room_name: String,
}

/// An XMPP login.
#[derive(Debug, Clone)]
pub struct Login {
    /// `domain`.
    pub domain: String,
    /// `username`.
    pub username: String,
    /// Where the password comes from (read only by `generate`).
    pub password: PasswordSource,
}

/// Where a password comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum PasswordSource {
    /// Written in the shards file.
    Literal(String),
    /// Read from a file (relative paths are relative to the shards file).
    File(PathBuf),
    /// Read from an environment variable.
    Env(String),
}

impl PasswordSource {
    /// Reads the password; a single trailing newline of a password file is dropped.
    pub fn read(&self) -> Result<String, String> {
        let password = match self {
            PasswordSource::Literal(p) => p.clone(),
            PasswordSource::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read password file {}: {e}", path.display()))?;
                let text = text.strip_suffix('\n').unwrap_or(&text);
                text.strip_suffix('\r').unwrap_or(text).to_owned()
            }
            PasswordSource::Env(name) => std::env::var(name).map_err(|e| match e {
                std::env::VarError::NotPresent => {
                    format!("password environment variable {name} is not set")
                }
                std::env::VarError::NotUnicode(_) => {
                    format!("password environment variable {name} is not valid UTF-8")
                }
            })?,
        };
        if password.is_empty() {
            return Err(match self {
                PasswordSource::Literal(_) => "password is empty".to_owned(),
                PasswordSource::File(p) => format!("password file {} is empty", p.display()),
                PasswordSource::Env(n) => format!("password environment variable {n} is empty"),
            });
        }
        Ok(password)
    }
}

/// A `usage-timeout`: `0` or a number with a unit (a bare number would be milliseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct UsageTimeout {
    /// As it is written into jibri.conf: `0` or e.g. `2 hours`.
    pub text: String,
    /// The length in nanoseconds, for comparisons.
    pub nanos: f64,
}

impl UsageTimeout {
    /// Whether it means "no limit".
    pub fn is_zero(&self) -> bool {
        self.nanos == 0.0
    }
}

/// Why a duration text was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum DurationError {
    /// A non-zero number without a unit (Jibri reads it as milliseconds).
    Unitless,
    /// Not a duration at all.
    Invalid,
}

/// Units of Typesafe config's `getDuration`, with their length in nanoseconds.
const UNITS: &[(&[&str], f64)] = &[
    (&["ns", "nano", "nanos", "nanosecond", "nanoseconds"], 1.0),
    (
        &["us", "micro", "micros", "microsecond", "microseconds"],
        1e3,
    ),
    (
        &["ms", "milli", "millis", "millisecond", "milliseconds"],
        1e6,
    ),
    (&["s", "second", "seconds"], 1e9),
    (&["m", "minute", "minutes"], 60e9),
    (&["h", "hour", "hours"], 3600e9),
    (&["d", "day", "days"], 86400e9),
];

/// Parses a HOCON duration (`0`, `90 s`, `2 hours`, `1.5h`), refusing bare non-zero numbers.
pub fn parse_duration(text: &str) -> Result<UsageTimeout, DurationError> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_alphabetic()).unwrap_or(text.len());
    let (number, unit) = (text[..split].trim(), text[split..].trim());
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(DurationError::Invalid);
    }
    let value: f64 = number.parse().map_err(|_| DurationError::Invalid)?;
    let scale = if unit.is_empty() {
        if value != 0.0 {
            return Err(DurationError::Unitless);
        }
        1e6
    } else {
        UNITS
            .iter()
            .find(|(names, _)| names.contains(&unit))
            .map(|(_, scale)| *scale)
            .ok_or(DurationError::Invalid)?
    };
    let nanos = value * scale;
    Ok(UsageTimeout {
        text: if nanos == 0.0 {
            "0".to_owned()
        } else {
            text.to_owned()
        },
        nanos,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    common: RawEnv,
    #[serde(default)]
    shard: Vec<RawEnv>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawEnv {
    name: Option<String>,
    xmpp_server_hosts: Option<Vec<String>>,
    xmpp_domain: Option<String>,
    control_muc: Option<RawMuc>,
    sip_control_muc: Option<RawMuc>,
    control_login: Option<RawLogin>,
    call_login: Option<RawLogin>,
    strip_from_room_domain: Option<String>,
    usage_timeout: Option<RawTimeout>,
    trust_all_xmpp_certs: Option<bool>,
    base_url: Option<String>,
    security_mode: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawMuc {
    domain: Option<String>,
    room_name: Option<String>,
    /// Accepted only to refuse it with a helpful message: the nickname is per gateway.
    nickname: Option<toml::Value>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogin {
    domain: Option<String>,
    username: Option<String>,
    password: Option<String>,
    #[serde(alias = "password-file")]
    password_file: Option<PathBuf>,
    #[serde(alias = "password-env")]
    password_env: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawTimeout {
    Int(i64),
    Text(String),
}

/// Reads and validates a shards file; every problem found is listed in the error.
pub fn load(path: &Path) -> Result<Shards, super::Error> {
    let text = std::fs::read_to_string(path).map_err(|source| super::Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|message| super::Error::Shards {
        path: path.to_owned(),
        message,
    })
}

/// Parses shards-file text; relative password files are resolved against `base`.
pub fn parse(text: &str, base: &Path) -> Result<Shards, String> {
    let raw: RawFile = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
    let mut problems = Vec::new();
    let common = &raw.common;
    if common.name.is_some() {
        problems.push("[common]: `name` belongs in each [[shard]]".to_owned());
    }
    if common.xmpp_server_hosts.is_some() {
        problems.push("[common]: `xmpp-server-hosts` belongs in each [[shard]]".to_owned());
    }
    if raw.shard.is_empty() {
        problems.push("no [[shard]] tables: list at least one shard".to_owned());
    }
    let mut shards = Vec::new();
    for (i, shard) in raw.shard.iter().enumerate() {
        let label = match &shard.name {
            Some(n) => format!("shard '{n}'"),
            None => format!("shard #{}", i + 1),
        };
        if shard.name.is_some() && raw.shard[..i].iter().any(|s| s.name == shard.name) {
            problems.push(format!("{label}: the name is used twice"));
        }
        match merge(common, shard, base) {
            Ok(env) => shards.push(env),
            Err(list) => problems.extend(list.into_iter().map(|p| format!("{label}: {p}"))),
        }
    }
    if problems.is_empty() {
        Ok(Shards { shards })
    } else {
        Err(problems.join("\n  "))
    }
}

fn merge(common: &RawEnv, shard: &RawEnv, base: &Path) -> Result<ShardEnv, Vec<String>> {
    let mut problems = Vec::new();
    let mut required = |value: Option<String>, key: &str| {
        value.filter(|v| !v.is_empty()).unwrap_or_else(|| {
            problems.push(format!(
                "`{key}` is missing (set it in [common] or in the shard)"
            ));
            String::new()
        })
    };
    let name = required(shard.name.clone(), "name");
    let xmpp_domain = required(
        shard.xmpp_domain.clone().or(common.xmpp_domain.clone()),
        "xmpp-domain",
    );
    let strip_from_room_domain = shard
        .strip_from_room_domain
        .clone()
        .or(common.strip_from_room_domain.clone());
    if strip_from_room_domain.is_none() {
        problems.push("`strip-from-room-domain` is missing (it may be \"\")".to_owned());
    }
    let hosts = shard.xmpp_server_hosts.clone().unwrap_or_default();
    if hosts.is_empty() || hosts.iter().any(String::is_empty) {
        problems.push("`xmpp-server-hosts` must list at least one host, none empty".to_owned());
    }
    let control_muc = merge_muc(
        "control-muc",
        &common.control_muc,
        &shard.control_muc,
        &mut problems,
    );
    let sip_control_muc = if common.sip_control_muc.is_some() || shard.sip_control_muc.is_some() {
        merge_muc(
            "sip-control-muc",
            &common.sip_control_muc,
            &shard.sip_control_muc,
            &mut problems,
        )
    } else {
        None
    };
    let control_login = merge_login(
        "control-login",
        &common.control_login,
        &shard.control_login,
        base,
        &mut problems,
    );
    let call_login = merge_login(
        "call-login",
        &common.call_login,
        &shard.call_login,
        base,
        &mut problems,
    );
    let usage_timeout = match shard.usage_timeout.clone().or(common.usage_timeout.clone()) {
        None => {
            problems.push("`usage-timeout` is missing (0 for a SIP gateway)".to_owned());
            None
        }
        Some(raw) => {
            let text = match raw {
                RawTimeout::Int(n) => n.to_string(),
                RawTimeout::Text(t) => t,
            };
            match parse_duration(&text) {
                Ok(t) => Some(t),
                Err(DurationError::Unitless) => {
                    problems.push(format!(
                        "`usage-timeout = {text}` has no unit and Jibri would read it as milliseconds: write \"0\" or e.g. \"2 hours\""
                    ));
                    None
                }
                Err(DurationError::Invalid) => {
                    problems.push(format!(
                        "`usage-timeout = {text:?}` is not a duration: write 0 or e.g. \"2 hours\""
                    ));
                    None
                }
            }
        }
    };
    let trust_all_xmpp_certs = shard.trust_all_xmpp_certs.or(common.trust_all_xmpp_certs);
    if trust_all_xmpp_certs.is_none() {
        problems.push("`trust-all-xmpp-certs` is missing (true or false)".to_owned());
    }
    if let (Some(_), Some(t)) = (&sip_control_muc, &usage_timeout)
        && !t.is_zero()
    {
        problems.push(format!(
                "`usage-timeout = {}` but a SIP gateway (sip-control-muc is set) needs 0: a limit would cut calls",
                t.text
            ));
    }
    let mut overridden = Vec::new();
    for (set, key) in [
        (shard.xmpp_domain.is_some(), "xmpp-domain"),
        (shard.control_muc.is_some(), "control-muc"),
        (shard.sip_control_muc.is_some(), "sip-control-muc"),
        (shard.control_login.is_some(), "control-login"),
        (shard.call_login.is_some(), "call-login"),
    ] {
        if set {
            overridden.push(key);
        }
    }
    match (
        control_muc,
        control_login,
        call_login,
        usage_timeout,
        trust_all_xmpp_certs,
        strip_from_room_domain,
    ) {
        (
            Some(control_muc),
            Some(control_login),
            Some(call_login),
            Some(usage_timeout),
            Some(trust_all_xmpp_certs),
            Some(strip_from_room_domain),
        ) if problems.is_empty() => Ok(ShardEnv {
            name,
            hosts,
            xmpp_domain,
            control_muc,
            sip_control_muc,
            control_login,
            call_login,
            strip_from_room_domain,
            usage_timeout,
            trust_all_xmpp_certs,
            base_url: shard.base_url.clone().or(common.base_url.clone()),
            security_mode: shard.security_mode.clone().or(common.security_mode.clone()),
            overridden,
        }),
        _ => Err(problems),
    }
}

fn merge_muc(
    key: &str,
    common: &Option<RawMuc>,
    shard: &Option<RawMuc>,
    problems: &mut Vec<String>,
) -> Option<Muc> {
    let c = common.clone().unwrap_or_default();
    let s = shard.clone().unwrap_or_default();
    if c.nickname.is_some() || s.nickname.is_some() {
        problems.push(format!(
            "`{key}.nickname` does not belong in the shards file: it must be unique per gateway; pass `generate --nickname` (default: a fresh UUID)"
        ));
    }
    let domain = s.domain.or(c.domain).filter(|v| !v.is_empty());
    let room_name = s.room_name.or(c.room_name).filter(|v| !v.is_empty());
    if domain.is_none() {
        problems.push(format!("`{key}.domain` is missing"));
    }
    if room_name.is_none() {
        problems.push(format!("`{key}.room-name` is missing"));
    }
    Some(Muc {
        domain: domain?,
        room_name: room_name?,
    })
}

fn merge_login(
    key: &str,
    common: &Option<RawLogin>,
    shard: &Option<RawLogin>,
    base: &Path,
    problems: &mut Vec<String>,
) -> Option<Login> {
    let c = common.clone().unwrap_or_default();
    let s = shard.clone().unwrap_or_default();
    let domain = s
        .domain
        .clone()
        .or(c.domain.clone())
        .filter(|v| !v.is_empty());
    let username = s
        .username
        .clone()
        .or(c.username.clone())
        .filter(|v| !v.is_empty());
    if domain.is_none() {
        problems.push(format!("`{key}.domain` is missing"));
    }
    if username.is_none() {
        problems.push(format!("`{key}.username` is missing"));
    }
    let sources = |l: &RawLogin| {
        let mut v = Vec::new();
        if let Some(p) = &l.password {
            v.push(PasswordSource::Literal(p.clone()));
        }
        if let Some(p) = &l.password_file {
            v.push(PasswordSource::File(base.join(p)));
        }
        if let Some(p) = &l.password_env {
            v.push(PasswordSource::Env(p.clone()));
        }
        v
    };
    // A shard naming any password source replaces the common one as a whole.
    let mut list = sources(&s);
    if list.is_empty() {
        list = sources(&c);
    }
    let password = match list.len() {
        1 => list.pop(),
        0 => {
            problems.push(format!(
                "`{key}` has no password: set one of password, password_file, password_env"
            ));
            None
        }
        _ => {
            problems.push(format!(
                "`{key}` sets more than one of password, password_file, password_env"
            ));
            None
        }
    };
    Some(Login {
        domain: domain?,
        username: username?,
        password: password?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    const COMMON: &str = r#"
[common]
xmpp-domain = "meet.example.com"
strip-from-room-domain = "conference."
usage-timeout = 0
trust-all-xmpp-certs = true
[common.control-muc]
domain = "internal.auth.meet.example.com"
room-name = "JibriBrewery"
[common.sip-control-muc]
domain = "internal.auth.meet.example.com"
room-name = "SipBrewery"
[common.control-login]
domain = "auth.meet.example.com"
username = "jibri"
password_env = "JIBRI_CONTROL_PASSWORD"
[common.call-login]
domain = "recorder.meet.example.com"
username = "recorder"
password_file = "secrets/call"
"#;

    #[test]
    fn merges_common_and_overrides() {
        let text = format!(
            "{COMMON}\n[[shard]]\nname = \"a\"\nxmpp-server-hosts = [\"10.0.0.1\"]\n\n[[shard]]\nname = \"b\"\nxmpp-server-hosts = [\"10.0.0.2\", \"10.0.0.3\"]\nstrip-from-room-domain = \"muc.\"\n[shard.call-login]\npassword = \"x\"\n"
        );
        let s = parse(&text, Path::new("/etc/x")).unwrap();
        assert_eq!(s.shards.len(), 2);
        let (a, b) = (&s.shards[0], &s.shards[1]);
        assert_eq!(a.strip_from_room_domain, "conference.");
        assert_eq!(b.strip_from_room_domain, "muc.");
        assert_eq!(
            a.call_login.password,
            PasswordSource::File("/etc/x/secrets/call".into())
        );
        assert_eq!(b.call_login.password, PasswordSource::Literal("x".into()));
        assert_eq!(b.call_login.username, "recorder");
        assert_eq!(b.overridden, vec!["call-login"]);
        assert!(a.usage_timeout.is_zero());
    }

    #[test]
    fn lists_every_problem() {
        let text = "[common.control-muc]\nnickname = \"x\"\n[[shard]]\nname = \"a\"\n[[shard]]\nname = \"a\"\nxmpp-server-hosts = [\"h\"]\nusage-timeout = 7200\n";
        let err = parse(text, Path::new(".")).unwrap_err();
        for needle in [
            "xmpp-server-hosts",
            "nickname",
            "milliseconds",
            "xmpp-domain",
            "control-login` has no password",
        ] {
            assert!(err.contains(needle), "{needle} not in {err}");
        }
        let err = parse(
            "[[shard]]\nname = \"a\"\nxmpp_domain = \"x\"\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn sip_gateway_needs_zero_usage_timeout() {
        let text = format!(
            "{COMMON}\n[[shard]]\nname = \"a\"\nxmpp-server-hosts = [\"h\"]\nusage-timeout = \"2 hours\"\n"
        );
        let err = parse(&text, Path::new(".")).unwrap_err();
        assert!(err.contains("needs 0"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0").unwrap().text, "0");
        assert_eq!(parse_duration("0 seconds").unwrap().text, "0");
        assert_eq!(parse_duration("2 hours").unwrap().nanos, 7200e9);
        assert_eq!(parse_duration("2h").unwrap().text, "2h");
        assert_eq!(parse_duration("7200"), Err(DurationError::Unitless));
        assert_eq!(parse_duration("2 fortnights"), Err(DurationError::Invalid));
        assert_eq!(parse_duration("-1 s"), Err(DurationError::Invalid));
        assert_eq!(parse_duration(""), Err(DurationError::Invalid));
    }
}
