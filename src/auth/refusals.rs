//! Refused requests made diagnosable: one warn line per caller and reason, rate-limited, and a
//! bounded table of who was refused why for `/scaler/status` and the status page.
//!
//! A gateway whose key is not published gets 401 on every poll, every few seconds, forever:
//! logging each would flood the log, logging none leaves the operator guessing why the host
//! never scales down. So the first refusal of a (client, caller, reason, cause) is logged at
//! once and later ones at most once per [`LOG_EVERY`], with how many were not logged.
//!
//! Nothing of the token is kept or logged but its `kid` header, which names a public key (and
//! is cut to a short, printable form: it comes from the request).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

/// Shortest time between two log lines for the same caller and reason.
pub const LOG_EVERY: Duration = Duration::from_secs(60);
/// Most (client, caller, reason, cause) entries kept; beyond, the stalest is forgotten.
const MAX_ENTRIES: usize = 256;
/// Longest `kid` kept, in characters.
const KID_MAX: usize = 64;

/// Who was refused and why: the key of one entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    client: IpAddr,
    caller: &'static str,
    reason: &'static str,
    cause: &'static str,
}

#[derive(Clone, Debug)]
struct Entry {
    kid: Option<String>,
    path: String,
    count: u64,
    first_ms: u64,
    last_ms: u64,
    logged_at: Instant,
    not_logged: u64,
}

/// One refused request, as the API middleware sees it.
#[derive(Clone, Debug)]
pub struct Refused<'a> {
    /// The client address (after trusted proxies).
    pub client: IpAddr,
    /// `api` or `sidecar`.
    pub caller: &'static str,
    /// `missing_token`, `invalid_token`, `forbidden` or `rate_limited`.
    pub reason: &'static str,
    /// The refusal's static text (`unknown kid`, `token expired`, ...).
    pub cause: &'static str,
    /// The token's `kid` header, unverified, if any ([`unverified_kid`]).
    pub kid: Option<&'a str>,
    /// The request path.
    pub path: &'a str,
}

/// One row of the status table.
#[derive(Clone, Debug, Serialize)]
pub struct RefusalRow {
    /// Client address.
    pub client: String,
    /// `api` or `sidecar`.
    pub caller: &'static str,
    /// The reason label.
    pub reason: &'static str,
    /// What exactly was wrong.
    pub cause: &'static str,
    /// The last refused token's `kid`, if it had one.
    pub kid: Option<String>,
    /// The last refused path.
    pub path: String,
    /// Refusals since the first (while the entry is kept).
    pub count: u64,
    /// First refusal, ms since the epoch.
    pub first_at: u64,
    /// Last refusal, ms since the epoch.
    pub last_at: u64,
}

/// The table of refused callers, shared by the API and the status document.
#[derive(Debug, Default)]
pub struct RefusalLog {
    entries: Mutex<HashMap<Key, Entry>>,
}

/// The `kid` of the bearer token's header, unverified (for the log of a refusal only; the
/// token is not otherwise read or kept).
pub fn unverified_kid(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let head = token.trim().split('.').next()?;
    // A header is a few dozen bytes; a huge one is not worth decoding to write a log line.
    if head.len() > 1024 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(head).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("kid")?.as_str().map(clean_kid)
}

/// A printable, bounded `kid` (letters, digits and `-_.:/+=`; anything else becomes `?`).
fn clean_kid(kid: &str) -> String {
    kid.chars()
        .take(KID_MAX)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.:/+=".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

impl RefusalLog {
    /// Notes a refusal at `now_ms` and writes its warn line unless one for the same caller and
    /// reason was written within [`LOG_EVERY`].
    pub fn note(&self, r: &Refused<'_>, now_ms: u64) {
        self.note_at(r, now_ms, Instant::now());
    }

    fn note_at(&self, r: &Refused<'_>, now_ms: u64, now: Instant) {
        let key = Key {
            client: r.client,
            caller: r.caller,
            reason: r.reason,
            cause: r.cause,
        };
        let kid = r.kid.map(clean_kid);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if !entries.contains_key(&key)
            && entries.len() >= MAX_ENTRIES
            && let Some(stalest) = entries
                .iter()
                .min_by_key(|(_, e)| e.last_ms)
                .map(|(k, _)| k.clone())
        {
            entries.remove(&stalest);
        }
        let log_now;
        let not_logged;
        match entries.get_mut(&key) {
            Some(e) => {
                e.count += 1;
                e.last_ms = now_ms;
                e.kid = kid.clone();
                e.path = r.path.to_string();
                log_now = now.saturating_duration_since(e.logged_at) >= LOG_EVERY;
                if log_now {
                    not_logged = e.not_logged;
                    e.not_logged = 0;
                    e.logged_at = now;
                } else {
                    not_logged = 0;
                    e.not_logged += 1;
                }
            }
            None => {
                entries.insert(
                    key,
                    Entry {
                        kid: kid.clone(),
                        path: r.path.to_string(),
                        count: 1,
                        first_ms: now_ms,
                        last_ms: now_ms,
                        logged_at: now,
                        not_logged: 0,
                    },
                );
                log_now = true;
                not_logged = 0;
            }
        }
        drop(entries);
        if log_now {
            let hint = hint(r.reason, r.cause);
            tracing::warn!(
                client = %r.client,
                caller = r.caller,
                reason = r.reason,
                cause = r.cause,
                kid = kid.as_deref().unwrap_or("-"),
                path = r.path,
                not_logged,
                "request refused: {}{hint}",
                r.cause
            );
        }
    }

    /// The refused callers, most recent first.
    pub fn rows(&self) -> Vec<RefusalRow> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let mut rows: Vec<RefusalRow> = entries
            .iter()
            .map(|(k, e)| RefusalRow {
                client: k.client.to_string(),
                caller: k.caller,
                reason: k.reason,
                cause: k.cause,
                kid: e.kid.clone(),
                path: e.path.clone(),
                count: e.count,
                first_at: e.first_ms,
                last_at: e.last_ms,
            })
            .collect();
        rows.sort_by(|a, b| b.last_at.cmp(&a.last_at).then(a.client.cmp(&b.client)));
        rows
    }
}

/// What to check, for the causes an operator can fix.
fn hint(reason: &str, cause: &str) -> &'static str {
    match (reason, cause) {
        (_, "unknown kid") => {
            " (no public key for this kid: publish it in auth.key_dir or on the key server)"
        }
        (_, "bad signature") => " (the key published for this kid is not the one that signed)",
        (_, c) if c.contains("expired") || c.contains("not yet valid") || c.contains("future") => {
            " (check the caller's clock and the token lifetime)"
        }
        ("forbidden", _) => " (authenticated, but not allowed: see docs/security.md)",
        ("missing_token", _) => " (no Authorization: Bearer header)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(kid: Option<&str>) -> Refused<'_> {
        Refused {
            client: IpAddr::from([127, 0, 0, 1]),
            caller: "sidecar",
            reason: "invalid_token",
            cause: "unknown kid",
            kid,
            path: "/scaler/sidecar/poll",
        }
    }

    #[test]
    fn counts_every_refusal_and_keeps_the_table_bounded() {
        let log = RefusalLog::default();
        let t0 = Instant::now();
        for i in 0..5 {
            log.note_at(&refused(Some("jibri/1\n\u{7}")), 1000 + i, t0);
        }
        let rows = log.rows();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].count, 5);
        assert_eq!(rows[0].kid.as_deref(), Some("jibri/1??"));
        assert_eq!((rows[0].first_at, rows[0].last_at), (1000, 1004));
        for i in 0..300u32 {
            let r = Refused {
                client: IpAddr::from(i.to_be_bytes()),
                ..refused(None)
            };
            log.note_at(&r, 2000 + u64::from(i), t0);
        }
        assert_eq!(log.rows().len(), MAX_ENTRIES);
        assert_eq!(log.rows()[0].last_at, 2299);
    }

    #[test]
    fn a_long_kid_is_cut() {
        let long = "k".repeat(500);
        assert_eq!(clean_kid(&long).len(), KID_MAX);
    }
}
