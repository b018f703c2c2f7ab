//! `jitsi-scaler status`: fetches `GET <prefix>/status` and prints it as tables.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// Arguments of `jitsi-scaler status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Base URL of the scaler (or of nginx in front of it).
    #[arg(
        long,
        default_value = "http://127.0.0.1:9000",
        env = "JITSI_SCALER_URL"
    )]
    pub url: String,
    /// Path prefix of the API.
    #[arg(long, default_value = "/scaler")]
    pub prefix: String,
    /// Private key (PEM) to sign an admin token with (e.g. /etc/jitsi/sidecar/asap.key).
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    pub key: Option<PathBuf>,
    /// Key id for the signed token's header (tokens for `auth.key_dir`).
    #[arg(long, requires = "key")]
    pub kid: Option<String>,
    /// Subject of the signed token (one of `auth.admin_subjects`).
    #[arg(long, default_value = "scaler", requires = "key")]
    pub sub: String,
    /// A ready-made bearer token instead of --key.
    #[arg(long, env = "JITSI_SCALER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the raw JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Request timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Why the status could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The token could not be made.
    #[error("cannot sign a token: {0}")]
    Token(#[from] crate::auth::AuthError),
    /// The request failed.
    #[error("GET {url}: {message}")]
    Http {
        /// The URL.
        url: String,
        /// Why.
        message: String,
    },
}

/// Fetches the status document.
pub async fn fetch(args: &StatusArgs) -> Result<Value, StatusError> {
    let token = match (&args.key, &args.token) {
        (Some(key), _) => Some(crate::auth::run_token(&crate::auth::TokenArgs {
            key: key.clone(),
            kid: args.kid.clone(),
            sub: args.sub.clone(),
            ttl: Duration::from_secs(60),
            claims: Vec::new(),
            iss: None,
            aud: None,
        })?),
        (None, Some(t)) => Some(t.trim().to_string()),
        (None, None) => None,
    };
    let url = format!(
        "{}{}/status",
        args.url.trim_end_matches('/'),
        args.prefix.trim_end_matches('/')
    );
    let err = |message: String| StatusError::Http {
        url: url.clone(),
        message,
    };
    let http = reqwest::Client::builder()
        .connect_timeout(args.timeout)
        .timeout(args.timeout)
        .build()
        .map_err(|e| err(e.to_string()))?;
    let mut req = http.get(&url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| err(e.to_string()))?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| err(e.to_string()))?;
    if !status.is_success() {
        let hint = if status.as_u16() == 401 {
            " (pass --key FILE or --token T)"
        } else {
            ""
        };
        return Err(err(format!(
            "{status}: {}{hint}",
            body.chars().take(200).collect::<String>()
        )));
    }
    serde_json::from_str(&body).map_err(|e| err(format!("not a status document: {e}")))
}

/// A cell's text: strings bare, null as `-`, numbers as they are.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.1}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// At most `max` characters.
fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", &s[..cut.saturating_sub(3).max(1)]),
        None => s.to_string(),
    }
}

/// Rows with aligned columns (two spaces between them), indented by two.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = width.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let mut l = String::from("  ");
        for (i, c) in cells.into_iter().enumerate() {
            if i == last {
                l.push_str(&c);
            } else {
                let pad = width.get(i).copied().unwrap_or(0);
                let _ = write!(l, "{c:<pad$}  ");
            }
        }
        l.trim_end().to_string()
    };
    let _ = writeln!(
        out,
        "{}",
        line(header.iter().map(|h| h.to_string()).collect())
    );
    for r in rows {
        let _ = writeln!(out, "{}", line(r.clone()));
    }
    if rows.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
}

/// A table of the objects in `items` (the first `limit`): `columns` is `HEADER=key|...`; the
/// last column is clipped to `clip_last` characters.
fn items_table(out: &mut String, items: &Value, limit: usize, columns: &str, clip_last: usize) {
    let columns: Vec<(&str, &str)> = columns
        .split('|')
        .filter_map(|c| c.split_once('='))
        .collect();
    let show = |item: &Value, key: &str| match key {
        "at" => when(&item[key]),
        "age_s" => item[key]
            .as_f64()
            .map_or_else(|| "-".into(), |a| format!("{a:.1}s")),
        _ => cell(&item[key]),
    };
    let rows: Vec<Vec<String>> = items
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .take(limit)
        .map(|item| {
            let mut row: Vec<String> = columns.iter().map(|(_, key)| show(item, key)).collect();
            if let Some(last) = row.last_mut() {
                *last = clip(last, clip_last);
            }
            row
        })
        .collect();
    let header: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
    table(out, &header, &rows);
}

/// Seconds as `1h 2m`, `3m 4s` or `5s`.
fn human_secs(s: u64) -> String {
    let (h, m, sec) = (s / 3600, s % 3600 / 60, s % 60);
    if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {sec}s")
    } else {
        format!("{sec}s")
    }
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
fn when(ms: &Value) -> String {
    ms.as_u64().map_or_else(
        || "-".into(),
        |ms| {
            let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.min(253_402_300_799_000));
            humantime::format_rfc3339_seconds(t)
                .to_string()
                .replace('T', " ")
                .trim_end_matches('Z')
                .to_string()
        },
    )
}

/// The status document as tables: settings, shards, ledger, lifecycle nodes, last 10 decisions.
pub fn render(s: &Value, source: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "jitsi-scaler {} at {source}: up {}, ready {}, leader {}, store {}",
        cell(&s["version"]),
        human_secs(s["uptime_s"].as_u64().unwrap_or(0)),
        cell(&s["ready"]),
        cell(&s["leader"]),
        cell(&s["store"]["backend"]),
    );
    let st = &s["settings"];
    let _ = writeln!(
        out,
        "\nSettings: min {}  max {}  bulk-max {}  (last changed by {})",
        cell(&st["min"]),
        cell(&st["max"]),
        cell(&st["bulk_max"]),
        cell(&st["changed_by"]),
    );
    if let (Some(held), Some(floor)) = (st["effective_min"].as_u64(), st["min"].as_u64())
        && held != floor
    {
        let _ = writeln!(out, "Min held: {held} (the floor, min, is {floor})");
    }
    let _ = writeln!(out, "{}", capacity_line(&s["capacity"]));
    let refused: Vec<String> = s["auth_refusals"]["counts"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(caller, reasons)| {
            reasons
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
                .map(move |(reason, n)| format!("{caller} {reason} {}", cell(n)))
        })
        .collect();
    if !refused.is_empty() {
        let _ = writeln!(out, "Refused requests: {}", refused.join(", "));
    }
    let cap = &s["capped_by_max"];
    if cap.is_object() {
        let _ = writeln!(
            out,
            "CAPPED: max {} holds the spare floor back: it needs {} more gateway(s), room {}",
            cell(&cap["max"]),
            cell(&cap["deficit"]),
            cap["room"].as_i64().unwrap_or(0).max(0)
        );
    }

    let j = &s["jicofo"];
    let merged = match j["merged"].as_object() {
        Some(m) => format!(
            "total {}, available {}, age {}s",
            cell(&m["total"]),
            cell(&m["available"]),
            cell(&m["age_s"])
        ),
        None => "NO FRESH STATS (no launches; idle removals answer keep)".into(),
    };
    let disagree = j["disagreement"].as_bool() == Some(true);
    let disagree = if disagree { "; shards disagree" } else { "" };
    let component = cell(&j["component"]);
    let _ = writeln!(out, "\nJicofo ({component}): {merged}{disagree}");
    let shards = "SHARD=name|TOTAL=total|AVAILABLE=available|AGE=age_s|FRESH=fresh|ERRORS=errors\
        |LAST ERROR=last_error";
    items_table(&mut out, &j["shards"], usize::MAX, shards, 60);

    let l = &s["ledger"];
    let counts: Vec<String> = l["counts"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k} {}", cell(v))).collect())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "\nLedger: {}\n  in flight {}, pending removal {}, unmanaged {}",
        counts.join(", "),
        cell(&l["in_flight"]),
        cell(&l["pending_removal"]),
        cell(&l["unmanaged"]),
    );

    let lc = &s["lifecycle"];
    let down = lc["up"].as_bool() == Some(false);
    let up = if down {
        "DOWN (every breaker open)"
    } else {
        "up"
    };
    let _ = writeln!(out, "\nLifecycle ({}): {up}", cell(&lc["backend"]));
    let nodes = "NODE=url|BREAKER=breaker|FAILURES=consecutive_failures|OK=calls_ok\
        |FAILED=calls_failed|LAST ERROR=last_error";
    items_table(&mut out, &lc["nodes"], usize::MAX, nodes, 60);

    let _ = writeln!(out, "\nRecent decisions (newest first):");
    let decisions = "TIME (UTC)=at|KIND=kind|HOST=host|OUTCOME=outcome|BY=by|WHY=why";
    items_table(&mut out, &s["recent_decisions"], 10, decisions, 90);
    out
}

/// Runs `jitsi-scaler status`: the table (or JSON) on stdout.
pub async fn run(args: &StatusArgs) -> Result<String, StatusError> {
    let status = fetch(args).await?;
    if args.json {
        return Ok(format!("{status:#}\n"));
    }
    Ok(render(&status, &args.url))
}

/// Target mode in one line: the effective min, its source and the numbers behind it.
fn capacity_line(c: &Value) -> String {
    let sz = &c["sizing"];
    match (c["mode"].as_str(), sz.as_object()) {
        (Some("target"), Some(_)) => format!(
            "Capacity: target {:.2} %: effective min {} ({}); rate {:.1}/h, next hour {}, lead {} s, {:.0} hours learned",
            100.0 * c["target"].as_f64().unwrap_or(0.0),
            cell(&sz["effective_min"]),
            cell(&sz["source"]),
            sz["rate"]["rate_per_hour"].as_f64().unwrap_or(0.0),
            sz["next_hour_per_hour"]
                .as_f64()
                .map_or("-".to_string(), |r| format!("{r:.1}/h")),
            sz["lead_ms"].as_u64().unwrap_or(0) / 1000,
            c["hours_learned"].as_f64().unwrap_or(0.0),
        ),
        (Some("target"), None) => "Capacity: target mode, not sized yet (no tick)".into(),
        (Some(m), _) => format!("Capacity: {m} (min is held as set)"),
        (None, _) => "Capacity: -".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capacity_line_names_the_effective_min_and_its_source() {
        let c = serde_json::json!({"mode": "target", "target": 0.005, "hours_learned": 168.0,
            "sizing": {"effective_min": 9, "source": "learned", "rate": {"rate_per_hour": 120.0},
                "next_hour_per_hour": 140.0, "lead_ms": 150000}});
        let l = capacity_line(&c);
        for want in [
            "0.50 %",
            "effective min 9 (learned)",
            "120.0/h",
            "next hour 140.0/h",
            "lead 150 s",
            "168 hours",
        ] {
            assert!(l.contains(want), "{want} missing in {l}");
        }
        assert!(capacity_line(&serde_json::json!({"mode": "fixed"})).contains("fixed"));
    }

    #[test]
    fn renders_every_section() {
        let s = serde_json::json!({
            "version": "0.1.0", "uptime_s": 125, "ready": true, "leader": true,
            "store": {"backend": "embedded:/x/state.json", "reachable": true},
            "settings": {"min": 2, "max": 80, "bulk_max": 5, "changed_by": null,
                "effective_min": 4},
            "auth_refusals": {"counts": {"sidecar": {"forbidden": 2, "bad_token": 0}}},
            "capped_by_max": {"deficit": 3, "room": 1, "max": 80},
            "jicofo": {"component": "sip_jibri_detector",
                "merged": {"total": 4, "available": 2, "age_s": 1.5},
                "disagreement": false,
                "shards": [{"name": "shard1", "total": 4, "available": 2, "age_s": 1.5,
                    "fresh": true, "errors": 0, "last_error": null}]},
            "ledger": {"counts": {"ready": 3, "booting": 1}, "in_flight": 1,
                "pending_removal": 0, "unmanaged": 0},
            "lifecycle": {"backend": "foreman", "up": true, "nodes": [{"url": "http://fm1",
                "breaker": "closed", "consecutive_failures": 0, "calls_ok": 4,
                "calls_failed": 0, "last_error": null}]},
            "recent_decisions": [{"at": 1_700_000_000_000u64, "kind": "remove",
                "host": "vsg-1", "outcome": "keep", "why": "idle: at the floor", "by": "gw"}]
        });
        let t = render(&s, "http://127.0.0.1:9000");
        for want in [
            "up 2m 5s",
            "min 2  max 80  bulk-max 5",
            "shard1",
            "ready 3",
            "http://fm1",
            "2023-11-14 22:13:20",
            "idle: at the floor",
            "Min held: 4 (the floor, min, is 2)",
            "Refused requests: sidecar forbidden 2",
            "CAPPED: max 80",
        ] {
            assert!(t.contains(want), "{want} missing in\n{t}");
        }
    }
}
