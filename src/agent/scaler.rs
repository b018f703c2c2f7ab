//! Client of the scaler: "remove me" requests and drain confirmations, with an ASAP token.

use std::time::{Duration, SystemTime};

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::AgentError;
use super::machine::Reason;
use crate::auth::{SigningKey, TokenOptions};

/// Longest error body kept for a log line.
const MAX_ERROR_BODY: usize = 200;

/// The scaler's answer to a "remove me" request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Removal approved: drain, confirm, stop.
    Accepted,
    /// Not now: keep serving and ask again later.
    Keep,
}

/// A request that did not end with a usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ScalerError {
    /// No HTTP answer (connect error, timeout, TLS).
    #[error("no answer: {0}")]
    Transport(String),
    /// An HTTP status other than the expected one.
    #[error("HTTP {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the body (or the `X-Scaler-Reason` header).
        body: String,
    },
    /// 200, but the body is neither `accepted` nor `keep`.
    #[error("unexpected answer body {0:?}")]
    Body(String),
    /// The token could not be signed.
    #[error("cannot sign the token: {0}")]
    Token(String),
}

impl ScalerError {
    /// Whether retrying the same request cannot help (a 4xx other than 408/429).
    pub fn is_permanent(&self) -> bool {
        match self {
            ScalerError::Status { status, .. } => {
                (400..500).contains(status) && *status != 408 && *status != 429
            }
            ScalerError::Token(_) => true,
            _ => false,
        }
    }
}

/// Signs a fresh short-lived token for every request.
pub struct Signer {
    key: SigningKey,
    opts: TokenOptions,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.opts.kid)
            .field("sub", &self.opts.sub)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer with `key` for tokens `{"sub": sub, "instance": instance}`, valid `ttl`.
    pub fn new(
        key: SigningKey,
        kid: Option<String>,
        sub: &str,
        instance: &str,
        ttl: Duration,
    ) -> Self {
        let mut claims = serde_json::Map::new();
        // The scaler's claim binding checks this against the host in the body.
        claims.insert("instance".into(), json!(instance));
        Signer {
            key,
            opts: TokenOptions {
                kid,
                sub: sub.to_owned(),
                ttl,
                iss: None,
                aud: None,
                claims,
            },
        }
    }

    /// A token issued at `now`.
    pub fn token_at(&self, now: SystemTime) -> Result<String, ScalerError> {
        self.key
            .sign(&self.opts, now)
            .map_err(|e| ScalerError::Token(e.to_string()))
    }
}

/// Talks to the scaler's API.
#[derive(Debug)]
pub struct ScalerClient {
    http: reqwest::Client,
    remove_url: reqwest::Url,
    remove_method: Method,
    drained_url: reqwest::Url,
    /// Where the agent announces itself at start; `None`: it does not.
    hello_url: Option<reqwest::Url>,
    unhealthy_reason: String,
    signer: Option<Signer>,
    /// Say `"drain": "confirm"` in remove-me requests: this agent confirms with `drained`.
    drain_confirm: bool,
}

/// Where and how the client talks to the scaler.
#[derive(Debug, Clone)]
pub struct ScalerEndpoint {
    /// Base URL, e.g. `https://meet.example.org/scaler`.
    pub base_url: String,
    /// Path of the remove-me request under the base URL.
    pub remove_path: String,
    /// `POST` or `DELETE`.
    pub remove_method: String,
    /// Path of the drain confirmation.
    pub drained_path: String,
    /// Path of the start announcement (`POST {"host": ...}`); empty: no announcement.
    pub hello_path: String,
    /// Wire spelling of [`Reason::Unhealthy`].
    pub unhealthy_reason: String,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Extra CA certificates (PEM) trusted besides the system roots.
    pub extra_ca_pem: Option<Vec<u8>>,
}

/// `base` + `path`, with exactly one slash between them.
pub fn join_url(base: &str, path: &str) -> Result<reqwest::Url, String> {
    let url = format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    let parsed = reqwest::Url::parse(&url).map_err(|e| format!("{url:?}: {e}"))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(format!("{url:?}: scheme {other:?} is not http or https")),
    }
}

impl ScalerClient {
    /// Builds the client (system roots plus `extra_ca_pem`).
    pub fn new(ep: &ScalerEndpoint, signer: Option<Signer>) -> Result<Self, AgentError> {
        let cfg = |m: String| AgentError::Config(m);
        let remove_method = match ep.remove_method.to_ascii_uppercase().as_str() {
            "POST" => Method::POST,
            "DELETE" => Method::DELETE,
            other => {
                return Err(cfg(format!(
                    "remove_method: {other:?} is not POST or DELETE"
                )));
            }
        };
        let remove_url = join_url(&ep.base_url, &ep.remove_path)
            .map_err(|e| cfg(format!("scaler_url/remove_path: {e}")))?;
        let drained_url = join_url(&ep.base_url, &ep.drained_path)
            .map_err(|e| cfg(format!("scaler_url/drained_path: {e}")))?;
        let hello_url = if ep.hello_path.trim().is_empty() {
            None
        } else {
            Some(
                join_url(&ep.base_url, &ep.hello_path)
                    .map_err(|e| cfg(format!("scaler_url/hello_path: {e}")))?,
            )
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(ep.connect_timeout)
            .timeout(ep.request_timeout)
            // A redirect is an answer to report, not to follow (it could turn POST into GET).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("jitsi-scaler-agent/", env!("CARGO_PKG_VERSION")));
        if remove_url.scheme() == "http" && drained_url.scheme() == "http" {
            // No TLS to do: skip loading the system CA store (memory on the gateway).
            builder = builder.tls_certs_only(Vec::new());
        } else if let Some(pem) = &ep.extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| cfg(format!("ca_file: not a PEM certificate bundle: {e}")))?;
            if certs.is_empty() {
                return Err(cfg("ca_file: no certificate in the file".into()));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| AgentError::Http(format!("cannot build the scaler client: {e}")))?;
        Ok(ScalerClient {
            http,
            remove_url,
            remove_method,
            drained_url,
            hello_url,
            unhealthy_reason: ep.unhealthy_reason.clone(),
            signer,
            drain_confirm: false,
        })
    }

    /// Makes remove-me requests say `"drain": "confirm"`, so `serve` waits for this agent's
    /// `drained` before deleting the host, whatever its `policy.drain_confirm` default.
    pub fn confirming_drain(mut self, confirm: bool) -> Self {
        self.drain_confirm = confirm;
        self
    }

    /// Where remove-me requests go (for the start-up log).
    pub fn remove_target(&self) -> String {
        format!("{} {}", self.remove_method, self.remove_url)
    }

    /// Asks the scaler to remove `host` for `reason`.
    pub async fn remove(&self, host: &str, reason: Reason) -> Result<Answer, ScalerError> {
        let reason = match reason {
            Reason::Unhealthy => self.unhealthy_reason.as_str(),
            other => other.as_str(),
        };
        let mut body = json!({"host": host, "reason": reason});
        if self.drain_confirm {
            body["drain"] = json!("confirm");
        }
        let (status, text) = self
            .send(self.remove_method.clone(), &self.remove_url, &body)
            .await?;
        if status != StatusCode::OK {
            return Err(ScalerError::Status {
                status: status.as_u16(),
                body: text,
            });
        }
        // The legacy client compares the body with the literal; we also trim a newline.
        match text.trim() {
            "accepted" => Ok(Answer::Accepted),
            "keep" => Ok(Answer::Keep),
            other => Err(ScalerError::Body(other.to_owned())),
        }
    }

    /// Whether the agent announces itself at start.
    pub fn announces(&self) -> bool {
        self.hello_url.is_some()
    }

    /// Announces that the agent on `host` has started (any 2xx is success), so the scaler
    /// knows by name that the host runs (a slow boot is then never failed under a call).
    pub async fn hello(&self, host: &str) -> Result<(), ScalerError> {
        let Some(url) = &self.hello_url else {
            return Ok(());
        };
        self.post_host(url, host).await
    }

    /// Confirms that `host` has drained (any 2xx is success).
    pub async fn drained(&self, host: &str) -> Result<(), ScalerError> {
        self.post_host(&self.drained_url, host).await
    }

    /// POSTs `{"host": host}` to `url`; any 2xx is success.
    async fn post_host(&self, url: &reqwest::Url, host: &str) -> Result<(), ScalerError> {
        let body = json!({"host": host});
        let (status, text) = self.send(Method::POST, url, &body).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(ScalerError::Status {
                status: status.as_u16(),
                body: text,
            })
        }
    }

    async fn send(
        &self,
        method: Method,
        url: &reqwest::Url,
        body: &serde_json::Value,
    ) -> Result<(StatusCode, String), ScalerError> {
        let mut req = self.http.request(method, url.clone()).json(body);
        if let Some(signer) = &self.signer {
            req = req.bearer_auth(signer.token_at(SystemTime::now())?);
        }
        let resp = req.send().await.map_err(|e| {
            let cause = super::error_chain(&e);
            ScalerError::Transport(if e.is_timeout() {
                "timed out".into()
            } else {
                cause
            })
        })?;
        let status = resp.status();
        let reason = resp
            .headers()
            .get("x-scaler-reason")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp
            .text()
            .await
            .map_err(|e| ScalerError::Transport(format!("reading the answer: {e}")))?;
        let mut text: String = text.chars().take(MAX_ERROR_BODY).collect();
        if status != StatusCode::OK
            && let Some(r) = reason
        {
            text = format!("{} ({r})", text.trim());
        }
        Ok((status, text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_with_one_slash() {
        let u = |b, p| join_url(b, p).map(|u| u.to_string());
        assert_eq!(
            u("https://meet.example.org/scaler", "/remove"),
            Ok("https://meet.example.org/scaler/remove".into())
        );
        assert_eq!(
            u("https://meet.example.org/scaler/", "instance"),
            Ok("https://meet.example.org/scaler/instance".into())
        );
        assert_eq!(
            u("http://127.0.0.1:8080", "/remove"),
            Ok("http://127.0.0.1:8080/remove".into())
        );
        assert!(join_url("ftp://x", "/remove").is_err());
        assert!(join_url("not a url", "/remove").is_err());
    }

    #[test]
    fn permanent_errors() {
        let st = |status| ScalerError::Status {
            status,
            body: String::new(),
        };
        assert!(st(403).is_permanent());
        assert!(st(409).is_permanent());
        assert!(!st(429).is_permanent());
        assert!(!st(408).is_permanent());
        assert!(!st(503).is_permanent());
        assert!(!ScalerError::Transport("x".into()).is_permanent());
    }
}
