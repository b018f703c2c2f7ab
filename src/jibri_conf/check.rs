//! `check`: findings about the environments of a parsed jibri.conf.

use serde::Serialize;

use super::conf::{Conf, ConfNode, IssueKind, Resolved};
use super::hocon::{Span, line_col};
use super::shards::{DurationError, Muc, Shards, parse_duration};

/// Where the environments live in jibri.conf.
pub const ENVIRONMENTS_PATH: [&str; 4] = ["jibri", "api", "xmpp", "environments"];

/// Fields every environment needs (SPEC §7).
pub const REQUIRED: [&str; 9] = [
    "name",
    "xmpp-server-hosts",
    "xmpp-domain",
    "control-muc",
    "control-login",
    "call-login",
    "strip-from-room-domain",
    "usage-timeout",
    "trust-all-xmpp-certs",
];

/// Fields that must be equal in every environment of one gateway.
pub const MUST_BE_EQUAL: [&str; 5] = [
    "xmpp-domain",
    "control-muc",
    "sip-control-muc",
    "control-login",
    "call-login",
];

/// What kind of finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    /// A shard of the shards file has no environment.
    MissingShard,
    /// An environment names no shard of the shards file.
    UnknownEnvironment,
    /// Two environments share a name.
    DuplicateName,
    /// Two environments list the same XMPP server: both join one shard, the other gets none.
    SharedServerHost,
    /// A field that must be equal across shards differs.
    InconsistentField,
    /// A SIP gateway with a session limit (it would cut calls).
    UsageTimeoutNotZero,
    /// A bare non-zero number, read by Jibri as milliseconds.
    UsageTimeoutWithoutUnit,
    /// A required field is absent (or null).
    MissingField,
    /// A MUC nickname is absent or empty.
    MissingNickname,
    /// A field has the wrong type or an unusable value.
    InvalidValue,
    /// No `jibri.api.xmpp.environments`, or it is empty.
    NoEnvironments,
    /// An environment disagrees with the shards file.
    DiffersFromShards,
    /// `${...}` names nothing in the file.
    UnresolvedSubstitution,
    /// `${...}` depends on itself.
    SubstitutionCycle,
    /// A concatenation mixes objects, arrays and strings.
    InvalidConcatenation,
    /// An `include` was not followed, so its content is unchecked.
    IncludeNotFollowed,
}

impl Code {
    /// The code as printed (`missing-shard`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::MissingShard => "missing-shard",
            Code::UnknownEnvironment => "unknown-environment",
            Code::DuplicateName => "duplicate-name",
            Code::SharedServerHost => "shared-server-host",
            Code::InconsistentField => "inconsistent-field",
            Code::UsageTimeoutNotZero => "usage-timeout-not-zero",
            Code::UsageTimeoutWithoutUnit => "usage-timeout-without-unit",
            Code::MissingField => "missing-field",
            Code::MissingNickname => "missing-nickname",
            Code::InvalidValue => "invalid-value",
            Code::NoEnvironments => "no-environments",
            Code::DiffersFromShards => "differs-from-shards",
            Code::UnresolvedSubstitution => "unresolved-substitution",
            Code::SubstitutionCycle => "substitution-cycle",
            Code::InvalidConcatenation => "invalid-concatenation",
            Code::IncludeNotFollowed => "include-not-followed",
        }
    }
}

/// One problem found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What kind.
    pub code: Code,
    /// For a human.
    pub message: String,
    /// The environment concerned (its name, or `#N` when it has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// 1-based line in the checked file, when the finding has a place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 1-based column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
}

/// Which environments count as SIP gateways (where `usage-timeout` must be 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum GatewayKind {
    /// An environment with a `sip-control-muc` is a SIP gateway.
    #[default]
    Auto,
    /// Every environment is a SIP gateway and needs `sip-control-muc`.
    Sip,
    /// A recording Jibri: no SIP rules.
    Recording,
}

/// The outcome of a check.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Environment names (or `#N`), in file order.
    pub environments: Vec<String>,
    /// Findings, in the order checked.
    pub findings: Vec<Finding>,
}

struct Ctx<'a> {
    src: &'a str,
    findings: Vec<Finding>,
}

impl Ctx<'_> {
    fn push(&mut self, code: Code, message: String, env: Option<&str>, span: Option<Span>) {
        let (line, column) = match span {
            Some(s) => {
                let (l, c) = line_col(self.src, s.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        self.findings.push(Finding {
            code,
            message,
            environment: env.map(str::to_owned),
            line,
            column,
        });
    }
}

/// Checks the resolved configuration `resolved` of the source text `src`.
///
/// `shards_label` names the shards file in messages.
pub fn check(
    src: &str,
    resolved: &Resolved,
    shards: Option<&Shards>,
    kind: GatewayKind,
    shards_label: &str,
) -> Report {
    let mut cx = Ctx {
        src,
        findings: Vec::new(),
    };
    for issue in &resolved.issues {
        let (code, message) = match &issue.kind {
            IssueKind::Unresolved(path) => (
                Code::UnresolvedSubstitution,
                format!(
                    "${{{path}}} is not defined in this file (Jibri would fall back to an environment variable {path}, and fail to start without one)"
                ),
            ),
            IssueKind::Cycle(path) => (
                Code::SubstitutionCycle,
                format!("${{{path}}} depends on itself"),
            ),
            IssueKind::BadConcat => (
                Code::InvalidConcatenation,
                "this value concatenates objects, arrays and strings together".to_owned(),
            ),
            IssueKind::Include(target) => (
                Code::IncludeNotFollowed,
                format!("include {target} is not followed: what it defines is not checked"),
            ),
        };
        cx.push(code, message, None, Some(issue.span));
    }

    let path = ENVIRONMENTS_PATH.join(".");
    let elements: &[ConfNode] = match resolved.root.get_path(&ENVIRONMENTS_PATH) {
        None => {
            cx.push(
                Code::NoEnvironments,
                format!("{path} is not set: this Jibri joins no shard"),
                None,
                None,
            );
            &[]
        }
        Some(ConfNode {
            value: Conf::Array(a),
            span,
        }) => {
            if a.is_empty() {
                cx.push(
                    Code::NoEnvironments,
                    format!("{path} is empty: this Jibri joins no shard"),
                    None,
                    Some(*span),
                );
            }
            a
        }
        Some(other) => {
            cx.push(
                Code::InvalidValue,
                format!("{path} must be a list of objects"),
                None,
                Some(other.span),
            );
            &[]
        }
    };

    // Label each environment by its name, or by its position when it has none.
    let labels: Vec<String> = elements
        .iter()
        .enumerate()
        .map(|(i, e)| {
            e.get("name")
                .and_then(ConfNode::as_text)
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| format!("#{}", i + 1))
        })
        .collect();

    let mut objects: Vec<(&str, &ConfNode)> = Vec::new();
    for (env, label) in elements.iter().zip(&labels) {
        if matches!(env.value, Conf::Object(_)) {
            check_env(&mut cx, label, env, kind);
            objects.push((label, env));
        } else {
            cx.push(
                Code::InvalidValue,
                format!("environment {label} is not an object"),
                Some(label),
                Some(env.span),
            );
        }
    }

    check_duplicates(&mut cx, &objects);
    check_shared_hosts(&mut cx, &objects);
    check_consistency(&mut cx, &objects);
    if let Some(shards) = shards {
        check_against_shards(&mut cx, &objects, shards, shards_label);
    }
    Report {
        environments: labels,
        findings: cx.findings,
    }
}

fn present<'a>(env: &'a ConfNode, key: &str) -> Option<&'a ConfNode> {
    env.get(key).filter(|v| !matches!(v.value, Conf::Null))
}

fn check_env(cx: &mut Ctx<'_>, label: &str, env: &ConfNode, kind: GatewayKind) {
    let at = Some(env.span);
    for key in REQUIRED {
        if present(env, key).is_none() {
            cx.push(
                Code::MissingField,
                format!("`{key}` is missing"),
                Some(label),
                at,
            );
        }
    }
    let is_sip = match kind {
        GatewayKind::Auto => present(env, "sip-control-muc").is_some(),
        GatewayKind::Sip => true,
        GatewayKind::Recording => false,
    };
    if kind == GatewayKind::Sip && present(env, "sip-control-muc").is_none() {
        cx.push(
            Code::MissingField,
            "`sip-control-muc` is missing (required for a SIP gateway)".to_owned(),
            Some(label),
            at,
        );
    }
    for key in ["name", "xmpp-domain"] {
        if let Some(v) = present(env, key)
            && v.as_text().is_none_or(|t| t.is_empty())
        {
            cx.push(
                Code::InvalidValue,
                format!("`{key}` must be a non-empty string"),
                Some(label),
                Some(v.span),
            );
        }
    }
    if let Some(v) = present(env, "strip-from-room-domain")
        && v.as_text().is_none()
    {
        cx.push(
            Code::InvalidValue,
            "`strip-from-room-domain` must be a string".to_owned(),
            Some(label),
            Some(v.span),
        );
    }
    if let Some(v) = present(env, "xmpp-server-hosts") {
        let ok = match &v.value {
            Conf::Array(hosts) => {
                !hosts.is_empty()
                    && hosts
                        .iter()
                        .all(|h| h.as_text().is_some_and(|t| !t.is_empty()))
            }
            _ => false,
        };
        if !ok {
            cx.push(
                Code::InvalidValue,
                "`xmpp-server-hosts` must be a non-empty list of host names".to_owned(),
                Some(label),
                Some(v.span),
            );
        }
    }
    for key in ["control-muc", "sip-control-muc"] {
        if let Some(v) = present(env, key) {
            check_muc(cx, label, key, v);
        }
    }
    for key in ["control-login", "call-login"] {
        if let Some(v) = present(env, key) {
            check_login(cx, label, key, v);
        }
    }
    if let Some(v) = present(env, "usage-timeout") {
        let text = v.as_text().unwrap_or_default();
        match parse_duration(&text) {
            Ok(t) if is_sip && !t.is_zero() => cx.push(
                Code::UsageTimeoutNotZero,
                format!(
                    "`usage-timeout` is {text} but must be 0 on a SIP gateway: a limit cuts calls"
                ),
                Some(label),
                Some(v.span),
            ),
            Ok(_) => {}
            Err(DurationError::Unitless) => cx.push(
                Code::UsageTimeoutWithoutUnit,
                format!(
                    "`usage-timeout = {text}` has no unit: Jibri reads it as {text} milliseconds; write 0 or e.g. `2 hours`"
                ),
                Some(label),
                Some(v.span),
            ),
            Err(DurationError::Invalid) => cx.push(
                Code::InvalidValue,
                "`usage-timeout` must be 0 or a duration such as `2 hours`".to_owned(),
                Some(label),
                Some(v.span),
            ),
        }
    }
    if let Some(v) = present(env, "trust-all-xmpp-certs")
        && as_bool(v).is_none()
    {
        cx.push(
            Code::InvalidValue,
            "`trust-all-xmpp-certs` must be true or false".to_owned(),
            Some(label),
            Some(v.span),
        );
    }
}

/// A boolean as Typesafe config's `getBoolean` reads it.
fn as_bool(v: &ConfNode) -> Option<bool> {
    match &v.value {
        Conf::Bool(b) => Some(*b),
        Conf::Str(s) => match s.as_str() {
            "true" | "yes" | "on" => Some(true),
            "false" | "no" | "off" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Whether `node` (the value of `key`) is an object; if not, reports that it must be one
/// holding `fields`.
fn is_object(cx: &mut Ctx<'_>, label: &str, key: &str, node: &ConfNode, fields: &str) -> bool {
    let object = matches!(node.value, Conf::Object(_));
    if !object {
        cx.push(
            Code::InvalidValue,
            format!("`{key}` must be an object with {fields}"),
            Some(label),
            Some(node.span),
        );
    }
    object
}

fn check_muc(cx: &mut Ctx<'_>, label: &str, key: &str, muc: &ConfNode) {
    if !is_object(cx, label, key, muc, "domain, room-name and nickname") {
        return;
    }
    for sub in ["domain", "room-name"] {
        if present(muc, sub)
            .and_then(ConfNode::as_text)
            .is_none_or(|t| t.is_empty())
        {
            cx.push(
                Code::MissingField,
                format!("`{key}.{sub}` is missing or empty"),
                Some(label),
                Some(muc.span),
            );
        }
    }
    if present(muc, "nickname")
        .and_then(ConfNode::as_text)
        .is_none_or(|t| t.trim().is_empty())
    {
        cx.push(
            Code::MissingNickname,
            format!(
                "`{key}.nickname` is missing or empty: each gateway needs its own (e.g. a UUID)"
            ),
            Some(label),
            Some(muc.span),
        );
    }
}

fn check_login(cx: &mut Ctx<'_>, label: &str, key: &str, login: &ConfNode) {
    if !is_object(cx, label, key, login, "domain, username and password") {
        return;
    }
    for sub in ["domain", "username", "password"] {
        match present(login, sub).map(|v| (v, v.as_text())) {
            None => cx.push(
                Code::MissingField,
                format!("`{key}.{sub}` is missing"),
                Some(label),
                Some(login.span),
            ),
            Some((v, text)) if text.as_ref().is_none_or(|t| t.is_empty()) => cx.push(
                Code::InvalidValue,
                format!("`{key}.{sub}` must be a non-empty string"),
                Some(label),
                Some(v.span),
            ),
            Some(_) => {}
        }
    }
}

fn check_duplicates(cx: &mut Ctx<'_>, envs: &[(&str, &ConfNode)]) {
    for (i, (label, env)) in envs.iter().enumerate() {
        let Some(name) = env.get("name").and_then(ConfNode::as_text) else {
            continue;
        };
        let first = envs[..i]
            .iter()
            .find(|(_, e)| e.get("name").and_then(ConfNode::as_text).as_deref() == Some(&name));
        if let Some((_, first)) = first {
            let (line, _) = line_col(cx.src, first.span.start);
            cx.push(
                Code::DuplicateName,
                format!(
                    "environment name '{name}' is already used by the environment at line {line}"
                ),
                Some(label),
                Some(env.span),
            );
        }
    }
}

/// The `xmpp-server-hosts` entries of an environment, normalised (case, spaces, trailing dot).
fn server_hosts(env: &ConfNode) -> Vec<(String, Span)> {
    match present(env, "xmpp-server-hosts").map(|v| &v.value) {
        Some(Conf::Array(hosts)) => hosts
            .iter()
            .filter_map(|h| {
                let t = h.as_text()?;
                let t = t.trim().trim_end_matches('.').to_ascii_lowercase();
                (!t.is_empty()).then_some((t, h.span))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Two environments with the same `xmpp-server-hosts` entry: a copy-paste mistake that makes
/// the gateway join one shard twice and leaves the other shard without gateways.
fn check_shared_hosts(cx: &mut Ctx<'_>, envs: &[(&str, &ConfNode)]) {
    for (i, (label, env)) in envs.iter().enumerate() {
        let mut reported = Vec::new();
        for (host, span) in server_hosts(env) {
            if reported.contains(&host) {
                continue;
            }
            let earlier = envs[..i]
                .iter()
                .find(|(_, e)| server_hosts(e).iter().any(|(h, _)| *h == host));
            if let Some((other, _)) = earlier {
                cx.push(
                    Code::SharedServerHost,
                    format!(
                        "`xmpp-server-hosts` entry {host:?} is also used by environment '{other}': \
                         both environments join the same XMPP server, so one shard gets no gateways"
                    ),
                    Some(label),
                    Some(span),
                );
                reported.push(host);
            }
        }
    }
}

/// A short rendering of a value for messages (never used for passwords).
fn brief(v: Option<&ConfNode>) -> String {
    match v.map(|v| &v.value) {
        None | Some(Conf::Null) => "unset".to_owned(),
        Some(Conf::Str(s)) => format!("{s:?}"),
        Some(Conf::Num(s)) => s.clone(),
        Some(Conf::Bool(b)) => b.to_string(),
        Some(Conf::Array(_)) => "a list".to_owned(),
        Some(Conf::Object(_)) => "an object".to_owned(),
    }
}

fn same(a: Option<&ConfNode>, b: Option<&ConfNode>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.same(b),
        (None, None) => true,
        _ => false,
    }
}

/// Describes how `b` differs from `a`, naming sub-fields and never showing a password.
fn describe_difference(a: &ConfNode, b: &ConfNode) -> String {
    match (&a.value, &b.value) {
        (Conf::Object(fa), Conf::Object(fb)) => {
            let mut keys: Vec<&str> = fa.iter().map(|(k, _)| k.as_str()).collect();
            for (k, _) in fb {
                if !keys.contains(&k.as_str()) {
                    keys.push(k);
                }
            }
            keys.iter()
                .filter(|k| !same(a.get(k), b.get(k)))
                .map(|k| {
                    if *k == "password" {
                        "password".to_owned()
                    } else {
                        format!("{k} ({} here, {} there)", brief(b.get(k)), brief(a.get(k)))
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
        _ => format!("{} here, {} there", brief(Some(b)), brief(Some(a))),
    }
}

fn check_consistency(cx: &mut Ctx<'_>, envs: &[(&str, &ConfNode)]) {
    for key in MUST_BE_EQUAL {
        let Some((ref_label, ref_value)) = envs
            .iter()
            .find_map(|(l, e)| present(e, key).map(|v| (*l, v)))
        else {
            continue;
        };
        for (label, env) in envs {
            match present(env, key) {
                Some(v) if !v.same(ref_value) => cx.push(
                    Code::InconsistentField,
                    format!(
                        "`{key}` differs from environment '{ref_label}': {}",
                        describe_difference(ref_value, v)
                    ),
                    Some(label),
                    Some(v.span),
                ),
                // Missing required fields are already reported; the optional one is not.
                None if key == "sip-control-muc" => cx.push(
                    Code::InconsistentField,
                    format!("`{key}` is set in environment '{ref_label}' but not here"),
                    Some(label),
                    Some(env.span),
                ),
                _ => {}
            }
        }
    }
}

fn text_at(env: &ConfNode, path: &[&str]) -> Option<String> {
    env.get_path(path)
        .filter(|v| !matches!(v.value, Conf::Null))
        .and_then(ConfNode::as_text)
}

fn check_against_shards(
    cx: &mut Ctx<'_>,
    envs: &[(&str, &ConfNode)],
    shards: &Shards,
    shards_label: &str,
) {
    let name_of = |e: &ConfNode| e.get("name").and_then(ConfNode::as_text);
    for shard in &shards.shards {
        if !envs
            .iter()
            .any(|(_, e)| name_of(e).as_deref() == Some(&shard.name))
        {
            cx.push(
                Code::MissingShard,
                format!(
                    "shard '{}' of {shards_label} has no environment: this gateway would not serve it",
                    shard.name
                ),
                Some(&shard.name),
                None,
            );
        }
    }
    for (i, (label, env)) in envs.iter().enumerate() {
        let name = name_of(env);
        // A duplicate is reported once as such; comparing it again would only repeat noise.
        if name.is_some() && envs[..i].iter().any(|(_, e)| name_of(e) == name) {
            continue;
        }
        let Some(shard) = shards
            .shards
            .iter()
            .find(|s| name.as_deref() == Some(&s.name))
        else {
            cx.push(
                Code::UnknownEnvironment,
                format!("environment {label} is not a shard of {shards_label}"),
                Some(label),
                Some(env.span),
            );
            continue;
        };
        let mut differs = |field: &str, here: String, expected: String, span: Span| {
            cx.push(
                Code::DiffersFromShards,
                format!("`{field}` is {here} but {shards_label} says {expected}"),
                Some(label),
                Some(span),
            );
        };
        let span_of = |path: &[&str]| env.get_path(path).map_or(env.span, |v| v.span);

        if let Some(Conf::Array(hosts)) = present(env, "xmpp-server-hosts").map(|v| &v.value) {
            let mut here: Vec<String> = hosts.iter().filter_map(ConfNode::as_text).collect();
            let mut expected = shard.hosts.clone();
            here.sort();
            expected.sort();
            if here != expected {
                differs(
                    "xmpp-server-hosts",
                    format!("{here:?}"),
                    format!("{expected:?}"),
                    span_of(&["xmpp-server-hosts"]),
                );
            }
        }
        // A string field the shards file sets: its path and value.
        let set = |path: &[&'static str], v: &str| (path.to_vec(), Some(v.to_owned()));
        let mut strings: Vec<(Vec<&str>, Option<String>)> = vec![
            set(&["xmpp-domain"], &shard.xmpp_domain),
            set(&["control-muc", "domain"], &shard.control_muc.domain),
            set(&["control-muc", "room-name"], &shard.control_muc.room_name),
            set(&["control-login", "domain"], &shard.control_login.domain),
            set(
                &["control-login", "username"],
                &shard.control_login.username,
            ),
            set(&["call-login", "domain"], &shard.call_login.domain),
            set(&["call-login", "username"], &shard.call_login.username),
            set(&["strip-from-room-domain"], &shard.strip_from_room_domain),
            (vec!["base-url"], shard.base_url.clone()),
            (vec!["security-mode"], shard.security_mode.clone()),
        ];
        match (&shard.sip_control_muc, present(env, "sip-control-muc")) {
            (Some(Muc { domain, room_name }), Some(_)) => {
                strings.push(set(&["sip-control-muc", "domain"], domain));
                strings.push(set(&["sip-control-muc", "room-name"], room_name));
            }
            (Some(_), None) => differs(
                "sip-control-muc",
                "unset".to_owned(),
                "it is set".to_owned(),
                env.span,
            ),
            (None, Some(v)) => differs(
                "sip-control-muc",
                "set".to_owned(),
                "it is not".to_owned(),
                v.span,
            ),
            (None, None) => {}
        }
        for (path, expected) in strings {
            let here = text_at(env, &path);
            // A missing required field is already reported; optional ones are compared as set/unset.
            let required = path.len() > 1 || REQUIRED.contains(&path[0]);
            if (here.is_none() && required) || here == expected {
                continue;
            }
            let show =
                |v: &Option<String>| v.as_ref().map_or("unset".to_owned(), |s| format!("{s:?}"));
            differs(
                &path.join("."),
                show(&here),
                show(&expected),
                span_of(&path),
            );
        }
        if let Some(v) = present(env, "usage-timeout")
            && let Ok(t) = parse_duration(&v.as_text().unwrap_or_default())
            && t.nanos != shard.usage_timeout.nanos
        {
            differs(
                "usage-timeout",
                t.text,
                shard.usage_timeout.text.clone(),
                v.span,
            );
        }
        if let Some(v) = present(env, "trust-all-xmpp-certs")
            && let Some(b) = as_bool(v)
            && b != shard.trust_all_xmpp_certs
        {
            differs(
                "trust-all-xmpp-certs",
                b.to_string(),
                shard.trust_all_xmpp_certs.to_string(),
                v.span,
            );
        }
    }
}
