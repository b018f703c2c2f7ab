//! The status page (`GET {prefix}/ui`): one self-contained HTML file embedded in the binary.
//!
//! The page is static and served without a token; its script fetches `status` and `history`
//! with the admin token the operator pastes (kept in the browser's session storage). Its
//! Content-Security-Policy allows exactly its own inline script and style (by hash) and
//! requests to this origin, so nothing else can run or load on it.

use std::sync::LazyLock;

use aws_lc_rs::digest;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;

/// The page: inline CSS and JS, no external resources.
pub const PAGE: &str = include_str!("ui.html");

/// The text between the first `<{tag}>` and `</{tag}>` of the page.
fn inline_block(tag: &str) -> &'static str {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    PAGE.split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&close))
        .map_or("", |(block, _)| block)
}

/// `'sha256-...'` of a CSP source expression.
fn csp_hash(text: &str) -> String {
    let d = digest::digest(&digest::SHA256, text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(d.as_ref())
    )
}

/// The page's Content-Security-Policy.
static CSP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        csp_hash(inline_block("script")),
        csp_hash(inline_block("style")),
    )
});

/// The page with its headers: HTML, no caching, the CSP, no framing, no referrer.
pub fn page_response() -> Response {
    let mut r = PAGE.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(v) = HeaderValue::from_str(&CSP) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained() {
        assert!(!inline_block("script").is_empty());
        assert!(!inline_block("style").is_empty());
        // One inline script and one style block: the CSP hashes cover exactly these.
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert_eq!(PAGE.matches("<style").count(), 1);
        for external in ["src=\"http", "href=\"http", "src='http", "@import", "//cdn"] {
            assert!(!PAGE.contains(external), "{external}");
        }
        // Data goes through textContent, never markup built from strings.
        assert!(!PAGE.contains("innerHTML"));
        // The token never goes into a URL.
        assert!(!PAGE.contains("?token"));
        assert!(!PAGE.contains("localStorage"));
    }

    #[test]
    fn the_csp_allows_only_the_inline_blocks() {
        let csp = CSP.as_str();
        assert!(csp.starts_with("default-src 'none'"));
        assert!(csp.contains(&csp_hash(inline_block("script"))));
        assert!(!csp.contains("unsafe-inline"));
        let r = page_response();
        assert_eq!(
            r.headers()
                .get(header::CONTENT_SECURITY_POLICY)
                .map(|v| v.as_bytes()),
            Some(csp.as_bytes())
        );
    }
}
