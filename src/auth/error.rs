//! The auth error type and its HTTP mapping.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Challenge sent with a 401 when no bearer token was presented (RFC 6750 §3).
pub const CHALLENGE_MISSING: &str = "Bearer";
/// Challenge sent with a 401 when the presented token was refused (RFC 6750 §3.1).
pub const CHALLENGE_INVALID: &str = "Bearer error=\"invalid_token\"";

/// Errors of the auth module.
///
/// Request-time reasons are `&'static str` on purpose: nothing taken from the
/// request (least of all the token) can end up in a response body or a log line.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No usable `Authorization: Bearer` header: 401.
    #[error("missing credentials: {0}")]
    MissingToken(&'static str),
    /// A bearer token was presented but refused: 401.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// Authenticated, but not allowed to do this: 403.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// Too many requests from this client: 429.
    #[error("rate limited")]
    RateLimited {
        /// Seconds until the client may try again (sent as `Retry-After`).
        retry_after_secs: u64,
    },
    /// The auth configuration is unusable (start-up only, never from a request).
    #[error("auth configuration: {0}")]
    Config(String),
    /// A key could not be read, parsed or used (start-up and signing only).
    #[error("{0}")]
    Key(String),
}

/// Marks a response as an auth refusal, with its metrics label (`missing_token`,
/// `invalid_token`, `forbidden`, `rate_limited`) and its static cause; the API counts and logs
/// it on the way out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The `reason` label.
    pub reason: &'static str,
    /// What exactly was wrong (`unknown kid`, `token expired`, ...): a static text.
    pub cause: &'static str,
}

impl AuthError {
    /// The refusal label of a request-time error (`None` for start-up errors).
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            AuthError::MissingToken(cause) => Some(Refusal {
                reason: "missing_token",
                cause,
            }),
            AuthError::InvalidToken(cause) => Some(Refusal {
                reason: "invalid_token",
                cause,
            }),
            AuthError::Forbidden(cause) => Some(Refusal {
                reason: "forbidden",
                cause,
            }),
            AuthError::RateLimited { .. } => Some(Refusal {
                reason: "rate_limited",
                cause: "too many requests",
            }),
            AuthError::Config(_) | AuthError::Key(_) => None,
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::MissingToken(_) | AuthError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
            AuthError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AuthError::Config(_) | AuthError::Key(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let status = self.status();
        let refusal = self.refusal();
        let (body, extra) = match &self {
            AuthError::MissingToken(_) => (
                self.to_string(),
                Some((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(CHALLENGE_MISSING),
                )),
            ),
            AuthError::InvalidToken(_) => (
                self.to_string(),
                Some((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(CHALLENGE_INVALID),
                )),
            ),
            AuthError::Forbidden(_) => (self.to_string(), None),
            AuthError::RateLimited { retry_after_secs } => (
                self.to_string(),
                Some((header::RETRY_AFTER, HeaderValue::from(*retry_after_secs))),
            ),
            // Internals stay in the server log, not in the answer.
            AuthError::Config(_) | AuthError::Key(_) => ("internal error".to_owned(), None),
        };
        let mut response = (status, body).into_response();
        if let Some((name, value)) = extra {
            response.headers_mut().insert(name, value);
        }
        if let Some(r) = refusal {
            response.extensions_mut().insert(r);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(e: AuthError) -> (StatusCode, Option<String>) {
        let r = e.into_response();
        let h = r
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (r.status(), h)
    }

    #[test]
    fn statuses_and_challenges() {
        assert_eq!(
            challenge(AuthError::MissingToken("x")),
            (StatusCode::UNAUTHORIZED, Some(CHALLENGE_MISSING.into()))
        );
        assert_eq!(
            challenge(AuthError::InvalidToken("x")),
            (StatusCode::UNAUTHORIZED, Some(CHALLENGE_INVALID.into()))
        );
        assert_eq!(
            challenge(AuthError::Forbidden("x")),
            (StatusCode::FORBIDDEN, None)
        );
        let r = AuthError::RateLimited {
            retry_after_secs: 2,
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            r.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"2"[..])
        );
        let r = AuthError::InvalidToken("x").into_response();
        assert_eq!(
            r.extensions().get::<Refusal>(),
            Some(&Refusal {
                reason: "invalid_token",
                cause: "x"
            })
        );
        assert_eq!(AuthError::Config("x".into()).refusal(), None);
        assert_eq!(
            challenge(AuthError::Config("secret path".into())),
            (StatusCode::INTERNAL_SERVER_ERROR, None)
        );
    }
}
