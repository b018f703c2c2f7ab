//! jitsi-component-selector as a demand source: its unauthenticated `/metrics` (prom-client)
//! counts `POST /jitsi-component-selector/sessions/start` by answer code. Every start is a SIP
//! session asked for; a `400` (`unavailable.components`) is one turned away because no gateway
//! was idle, which Jicofo never sees.

use std::time::Duration;

/// The counter and the route it is read for.
const COUNTER: &str = "http_server_requests_total";
const START_URI: &str = "/jitsi-component-selector/sessions/start";

/// Longest a read may take: the tick must not wait on it.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Largest `/metrics` body read.
const MAX_BODY: usize = 4 << 20;

/// Session starts the selector answered, since it started (counters: they only grow, and
/// restart at 0 with the selector).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SessionStarts {
    /// Every start asked for, whatever the answer.
    pub asked: u64,
    /// Starts answered 400: no idle gateway (`unavailable.components`).
    pub refused: u64,
}

/// A selector read that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// Transport, status or size.
    #[error("selector metrics: {0}")]
    Http(String),
    /// The body has no session-start counter.
    #[error("selector metrics: no {COUNTER} for POST {START_URI}")]
    NoCounter,
}

/// Reads the session-start counters from a Prometheus text body.
pub fn parse_session_starts(text: &str) -> Result<SessionStarts, SelectorError> {
    let mut out = SessionStarts::default();
    let mut seen = false;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(COUNTER) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('{') else {
            continue;
        };
        let Some((labels, value)) = rest.split_once('}') else {
            continue;
        };
        let label = |name: &str| {
            labels.split(',').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k.trim() == name).then(|| v.trim().trim_matches('"').to_string())
            })
        };
        if !label("method").is_some_and(|m| m.eq_ignore_ascii_case("post"))
            || label("uri").as_deref() != Some(START_URI)
        {
            continue;
        }
        let Some(n) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
        else {
            continue;
        };
        seen = true;
        let n = n as u64;
        out.asked += n;
        if label("code").as_deref() == Some("400") {
            out.refused += n;
        }
    }
    if seen {
        Ok(out)
    } else {
        Err(SelectorError::NoCounter)
    }
}

/// The one client of selector reads: short timeouts, no redirects.
fn client() -> Result<&'static reqwest::Client, SelectorError> {
    static CLIENT: std::sync::OnceLock<Option<reqwest::Client>> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(TIMEOUT)
                .timeout(TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .ok()
        })
        .as_ref()
        .ok_or_else(|| SelectorError::Http("cannot build the HTTP client".into()))
}

/// Reads the selector's `/metrics` at `url`.
pub async fn read(url: &str) -> Result<SessionStarts, SelectorError> {
    let resp = client()?
        .get(url)
        .timeout(TIMEOUT)
        .send()
        .await
        .map_err(|e| SelectorError::Http(e.without_url().to_string()))?;
    if !resp.status().is_success() {
        return Err(SelectorError::Http(format!("status {}", resp.status())));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| SelectorError::Http(e.without_url().to_string()))?;
    if body.len() > MAX_BODY {
        return Err(SelectorError::Http("body too large".into()));
    }
    parse_session_starts(&String::from_utf8_lossy(&body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// prom-client's text as the selector serves it (its `src/middleware/stats.ts` counts
    /// requests by method, uri and code).
    const METRICS: &str = r#"# HELP process_cpu_user_seconds_total Total user CPU time spent in seconds.
# TYPE process_cpu_user_seconds_total counter
process_cpu_user_seconds_total 12.5
# HELP http_server_requests_total Total number of requests
# TYPE http_server_requests_total counter
http_server_requests_total{method="post",uri="/jitsi-component-selector/sessions/start",code="200"} 41
http_server_requests_total{method="post",uri="/jitsi-component-selector/sessions/start",code="400"} 3
http_server_requests_total{method="post",uri="/jitsi-component-selector/sessions/stop",code="200"} 38
http_server_requests_total{method="get",uri="/health",code="200"} 900
"#;

    #[test]
    fn session_starts_and_refusals_are_read_from_prom_client_text() {
        assert_eq!(
            parse_session_starts(METRICS),
            Ok(SessionStarts {
                asked: 44,
                refused: 3
            })
        );
        assert_eq!(
            parse_session_starts("# nothing here\nup 1\n"),
            Err(SelectorError::NoCounter)
        );
        // Other routes and methods do not count; a garbled value is skipped.
        let odd = "http_server_requests_total{method=\"post\",uri=\"/jitsi-component-selector/sessions/start\",code=\"400\"} NaN\n\
                   http_server_requests_total{method=\"POST\",uri=\"/jitsi-component-selector/sessions/start\",code=\"500\"} 2\n";
        assert_eq!(
            parse_session_starts(odd),
            Ok(SessionStarts {
                asked: 2,
                refused: 0
            })
        );
    }
}
