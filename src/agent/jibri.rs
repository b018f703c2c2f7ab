//! Client of the local Jibri: health reads and graceful shutdown.

use std::time::Duration;

use serde_json::Value;

use super::AgentError;
use super::machine::{BusyStatus, HealthStatus, JibriReading};

/// Largest health document read; Jibri's is a few hundred bytes.
const MAX_BODY: usize = 64 * 1024;

/// The outcome of one health request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Jibri answered 2xx with JSON (values parsed leniently).
    Answered {
        /// `status.busyStatus`.
        busy: BusyStatus,
        /// `status.health.healthStatus`.
        health: HealthStatus,
    },
    /// Jibri answered, but not with a usable status (HTTP error, not JSON).
    Invalid(String),
    /// Nothing listens on the port: the Jibri process has exited.
    Down(String),
    /// Timeout or another transport error: the process may be hung, not gone.
    NoAnswer(String),
}

impl Probe {
    /// The reading the state machine sees (anything but an answer is unreachable).
    pub fn reading(&self) -> JibriReading {
        match self {
            Probe::Answered { busy, health } => JibriReading::Status {
                busy: *busy,
                health: *health,
            },
            _ => JibriReading::Unreachable,
        }
    }

    /// Whether Jibri has certainly stopped: connection refused, not merely slow.
    pub fn stopped(&self) -> bool {
        matches!(self, Probe::Down(_))
    }
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Answered { busy, health } => write!(f, "{busy:?}/{health:?}"),
            Probe::Invalid(e) => write!(f, "invalid answer ({e})"),
            Probe::Down(e) => write!(f, "down ({e})"),
            Probe::NoAnswer(e) => write!(f, "no answer ({e})"),
        }
    }
}

/// Parses a Jibri health document; unknown fields are ignored, missing values are `Unknown`.
pub fn parse_health(body: &[u8]) -> Result<(BusyStatus, HealthStatus), String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let busy = BusyStatus::parse(doc.pointer("/status/busyStatus").and_then(Value::as_str));
    let health = HealthStatus::parse(
        doc.pointer("/status/health/healthStatus")
            .and_then(Value::as_str),
    );
    Ok((busy, health))
}

/// Talks to Jibri's HTTP APIs on this host.
#[derive(Debug, Clone)]
pub struct JibriClient {
    http: reqwest::Client,
    health_url: reqwest::Url,
    shutdown_url: reqwest::Url,
}

impl JibriClient {
    /// A client with `timeout` for connect and whole request.
    pub fn new(
        health_url: &str,
        shutdown_url: &str,
        timeout: Duration,
    ) -> Result<Self, AgentError> {
        let parse = |key: &str, u: &str| {
            reqwest::Url::parse(u).map_err(|e| AgentError::Config(format!("{key}: {u:?}: {e}")))
        };
        let health_url = parse("jibri_health_url", health_url)?;
        let shutdown_url = parse("jibri_shutdown_url", shutdown_url)?;
        let mut builder = reqwest::Client::builder();
        if health_url.scheme() == "http" && shutdown_url.scheme() == "http" {
            // Plain HTTP on loopback: skip loading and parsing the system CA store.
            builder = builder.tls_certs_only(Vec::new());
        }
        let http = builder
            .connect_timeout(timeout)
            .timeout(timeout)
            // A redirect is an answer to report, not to follow (it could turn POST into GET).
            .redirect(reqwest::redirect::Policy::none())
            // No idle connections: each check connects afresh, so a refused
            // connection reliably means the Jibri process is gone.
            .pool_max_idle_per_host(0)
            .no_proxy()
            .user_agent(concat!("jitsi-scaler-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AgentError::Http(format!("cannot build the Jibri client: {e}")))?;
        Ok(JibriClient {
            http,
            health_url,
            shutdown_url,
        })
    }

    /// Reads Jibri's health once.
    pub async fn health(&self) -> Probe {
        let resp = match self.http.get(self.health_url.clone()).send().await {
            Ok(r) => r,
            Err(e) => return transport(&e),
        };
        let status = resp.status();
        let body = match read_limited(resp).await {
            Ok(b) => b,
            Err(e) => return transport(&e),
        };
        if !status.is_success() {
            return Probe::Invalid(format!("HTTP {}", status.as_u16()));
        }
        match parse_health(&body) {
            Ok((busy, health)) => Probe::Answered { busy, health },
            Err(e) => Probe::Invalid(e),
        }
    }

    /// Asks Jibri to shut down gracefully (at once when idle, else after the call).
    /// Returns the HTTP status; `Err` when no answer came.
    pub async fn graceful_shutdown(&self) -> Result<u16, String> {
        let resp = self
            .http
            .post(self.shutdown_url.clone())
            .send()
            .await
            .map_err(|e| transport(&e).to_string())?;
        Ok(resp.status().as_u16())
    }
}

fn transport(e: &reqwest::Error) -> Probe {
    let cause = super::error_chain(e);
    if e.is_connect() && !e.is_timeout() {
        Probe::Down(cause)
    } else if e.is_timeout() {
        Probe::NoAnswer("timed out".into())
    } else {
        Probe::NoAnswer(cause)
    }
}

/// Reads a body up to [`MAX_BODY`] bytes (the rest is dropped).
async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_BODY {
            break;
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_documents_parse_leniently() {
        let full = br#"{"status":{"busyStatus":"IDLE","health":{"healthStatus":"HEALTHY",
            "details":{"x":1}},"environmentContext":null},"extra":[1,2]}"#;
        assert_eq!(
            parse_health(full),
            Ok((BusyStatus::Idle, HealthStatus::Healthy))
        );
        let busy = br#"{"status":{"busyStatus":"BUSY","health":{"healthStatus":"UNHEALTHY"},
            "environmentContext":{"name":"shard2"}}}"#;
        assert_eq!(
            parse_health(busy),
            Ok((BusyStatus::Busy, HealthStatus::Unhealthy))
        );
        assert_eq!(
            parse_health(br#"{"status":{"busyStatus":"EXPIRED"}}"#),
            Ok((BusyStatus::Expired, HealthStatus::Unknown))
        );
        for odd in [
            &br#"{}"#[..],
            br#"{"status":{"busyStatus":"SLEEPY","health":{"healthStatus":5}}}"#,
            br#"{"status":{"busyStatus":null}}"#,
            br#"[1]"#,
            br#""IDLE""#,
        ] {
            assert_eq!(
                parse_health(odd),
                Ok((BusyStatus::Unknown, HealthStatus::Unknown)),
                "{}",
                String::from_utf8_lossy(odd)
            );
        }
        assert!(parse_health(b"<html>").is_err());
    }

    #[test]
    fn only_an_answer_is_a_reading_and_only_refused_is_stopped() {
        let answered = Probe::Answered {
            busy: BusyStatus::Idle,
            health: HealthStatus::Healthy,
        };
        assert_eq!(
            answered.reading(),
            JibriReading::status(BusyStatus::Idle, HealthStatus::Healthy)
        );
        assert!(!answered.stopped());
        for p in [
            Probe::Invalid("HTTP 500".into()),
            Probe::Down("refused".into()),
            Probe::NoAnswer("timed out".into()),
        ] {
            assert_eq!(p.reading(), JibriReading::Unreachable);
            assert_eq!(p.stopped(), matches!(p, Probe::Down(_)));
        }
    }
}
