//! JWS compact parsing and the claim rules. No crypto and no I/O here: the
//! signature is checked by the caller with the key the header points to.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::AuthError;
use super::keys::KeyAlg;

/// Largest accepted token; real ASAP tokens are well under 2 KiB.
pub(crate) const MAX_TOKEN_LEN: usize = 8 * 1024;

/// A token split and decoded, not yet verified.
#[derive(Debug)]
pub(crate) struct Unverified<'a> {
    pub(crate) alg: KeyAlg,
    pub(crate) kid: Option<String>,
    pub(crate) claims: Map<String, Value>,
    /// `base64url(header) "." base64url(payload)`: the signed bytes.
    pub(crate) signing_input: &'a str,
    pub(crate) signature: Vec<u8>,
}

fn invalid(reason: &'static str) -> AuthError {
    AuthError::InvalidToken(reason)
}

/// Splits and decodes a compact JWS, applying every header rule.
pub(crate) fn parse(token: &str) -> Result<Unverified<'_>, AuthError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(invalid("token too large"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid(
            "not a JWS compact token (need three dot-separated parts)",
        ));
    };
    let signing_input = &token[..h.len() + 1 + p.len()];

    let header = decode_object(h, "header is not base64url", "header is not a JSON object")?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) => a.as_str(),
        Some(_) => return Err(invalid("alg is not a string")),
        None => return Err(invalid("header has no alg")),
    };
    let alg = match alg {
        "RS256" => KeyAlg::Rs256,
        "ES256" => KeyAlg::Es256,
        a if a.eq_ignore_ascii_case("none") => return Err(invalid("alg none is refused")),
        a if a.starts_with("HS") => return Err(invalid("HMAC algorithms are refused")),
        _ => return Err(invalid("algorithm not allowed (RS256 or ES256 only)")),
    };
    match header.get("typ") {
        None => {}
        Some(Value::String(t)) if t.eq_ignore_ascii_case("JWT") => {}
        Some(_) => return Err(invalid("typ is not JWT")),
    }
    if header.contains_key("crit") {
        // RFC 7515 §4.1.11: we understand no extension, so must refuse.
        return Err(invalid("critical header extensions are not supported"));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(invalid("kid is not a string")),
    };

    let claims = decode_object(
        p,
        "payload is not base64url",
        "payload is not a JSON object",
    )?;
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| invalid("signature is not base64url"))?;
    if signature.is_empty() {
        return Err(invalid("empty signature"));
    }
    Ok(Unverified {
        alg,
        kid,
        claims,
        signing_input,
        signature,
    })
}

fn decode_object(
    part: &str,
    not_b64: &'static str,
    not_json: &'static str,
) -> Result<Map<String, Value>, AuthError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| invalid(not_b64))?;
    serde_json::from_slice::<Map<String, Value>>(&bytes).map_err(|_| invalid(not_json))
}

/// The time and issuer/audience rules, in whole seconds.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub(crate) leeway: i64,
    pub(crate) max_lifetime: i64,
    pub(crate) issuers: Vec<String>,
    pub(crate) audiences: Vec<String>,
}

/// A NumericDate (RFC 7519 §2): integer or fractional seconds.
fn numeric(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, ()> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if n.as_u64().is_some() {
                Ok(Some(i64::MAX))
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() => Ok(Some(f.floor() as i64)),
                    _ => Err(()),
                }
            }
        }
        Some(_) => Err(()),
    }
}

/// Applies exp/nbf/iat, lifetime, iss and aud rules at `now` (Unix seconds).
pub(crate) fn check_claims(
    claims: &Map<String, Value>,
    rules: &Rules,
    now: i64,
) -> Result<(), AuthError> {
    let exp = numeric(claims, "exp")
        .map_err(|_| invalid("exp is not a number"))?
        .ok_or(invalid("exp is required"))?;
    let nbf = numeric(claims, "nbf").map_err(|_| invalid("nbf is not a number"))?;
    let iat = numeric(claims, "iat").map_err(|_| invalid("iat is not a number"))?;

    if exp.saturating_add(rules.leeway) < now {
        return Err(invalid("token expired"));
    }
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(rules.leeway)) {
        return Err(invalid("token not yet valid (nbf)"));
    }
    match iat {
        Some(iat) => {
            if iat > now.saturating_add(rules.leeway) {
                return Err(invalid("token issued in the future (iat)"));
            }
            if exp < iat {
                return Err(invalid("exp before iat"));
            }
            if exp.saturating_sub(iat) > rules.max_lifetime {
                return Err(invalid("token lifetime exceeds the maximum"));
            }
        }
        None => {
            if exp.saturating_sub(now) > rules.max_lifetime.saturating_add(rules.leeway) {
                return Err(invalid("token lifetime exceeds the maximum"));
            }
        }
    }

    match claims.get("sub") {
        None | Some(Value::String(_)) => {}
        Some(_) => return Err(invalid("sub is not a string")),
    }
    if !rules.issuers.is_empty() {
        match claims.get("iss") {
            Some(Value::String(iss)) if rules.issuers.iter().any(|i| i == iss) => {}
            _ => return Err(invalid("issuer not accepted")),
        }
    }
    if !rules.audiences.is_empty() {
        let ok = match claims.get("aud") {
            Some(Value::String(aud)) => rules.audiences.contains(aud),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|aud| rules.audiences.iter().any(|a| a == aud)),
            _ => false,
        };
        if !ok {
            return Err(invalid("audience not accepted"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn rules() -> Rules {
        Rules {
            leeway: 60,
            max_lifetime: 3600,
            issuers: vec![],
            audiences: vec![],
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn reason(r: Result<(), AuthError>) -> &'static str {
        match r {
            Err(AuthError::InvalidToken(why)) => why,
            Err(other) => panic!("unexpected error {other:?}"),
            Ok(()) => "ok",
        }
    }

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
    }

    fn parse_reason(token: &str) -> &'static str {
        match parse(token) {
            Err(AuthError::InvalidToken(why)) => why,
            Err(other) => panic!("unexpected error {other:?}"),
            Ok(_) => "ok",
        }
    }

    #[test]
    fn time_rules() {
        let r = rules();
        let ok = |c: Value| reason(check_claims(&claims(c), &r, NOW));
        assert_eq!(ok(json!({"iat": NOW, "exp": NOW + 60})), "ok");
        assert_eq!(ok(json!({"exp": NOW + 60})), "ok");
        assert_eq!(
            ok(json!({"iat": NOW - 100, "exp": NOW - 30})),
            "ok",
            "within leeway"
        );
        assert_eq!(
            ok(json!({"iat": NOW - 200, "exp": NOW - 61})),
            "token expired"
        );
        assert_eq!(ok(json!({"iat": NOW})), "exp is required");
        assert_eq!(ok(json!({"exp": "soon"})), "exp is not a number");
        assert_eq!(
            ok(json!({"exp": NOW + 60, "nbf": NOW + 61})),
            "token not yet valid (nbf)"
        );
        assert_eq!(
            ok(json!({"exp": NOW + 60, "nbf": NOW + 30})),
            "ok",
            "nbf within leeway"
        );
        assert_eq!(
            ok(json!({"iat": NOW + 120, "exp": NOW + 180})),
            "token issued in the future (iat)"
        );
        assert_eq!(
            ok(json!({"iat": NOW + 30, "exp": NOW + 90})),
            "ok",
            "iat within leeway"
        );
        assert_eq!(
            ok(json!({"iat": NOW, "exp": NOW + 3601})),
            "token lifetime exceeds the maximum"
        );
        assert_eq!(
            ok(json!({"iat": NOW, "exp": NOW + 3600})),
            "ok",
            "sidecar's 1 h"
        );
        assert_eq!(
            ok(json!({"exp": NOW + 3661})),
            "token lifetime exceeds the maximum"
        );
        assert_eq!(ok(json!({"iat": NOW, "exp": NOW - 1})), "exp before iat");
        assert_eq!(
            ok(json!({"exp": 1.8e9 + 10.5})),
            "ok",
            "fractional NumericDate"
        );
        assert_eq!(
            ok(json!({"exp": u64::MAX})),
            "token lifetime exceeds the maximum"
        );
        assert_eq!(
            ok(json!({"exp": NOW + 60, "sub": 5})),
            "sub is not a string"
        );
    }

    #[test]
    fn issuer_and_audience() {
        let r = Rules {
            issuers: vec!["jitsi-component-sidecar".into()],
            audiences: vec!["jitsi-scaler".into()],
            ..rules()
        };
        let check = |c: Value| reason(check_claims(&claims(c), &r, NOW));
        let base = |iss: Value, aud: Value| json!({"exp": NOW + 60, "iss": iss, "aud": aud});
        assert_eq!(
            check(base(
                json!("jitsi-component-sidecar"),
                json!("jitsi-scaler")
            )),
            "ok"
        );
        assert_eq!(
            check(base(
                json!("jitsi-component-sidecar"),
                json!(["x", "jitsi-scaler"])
            )),
            "ok"
        );
        assert_eq!(
            check(base(json!("evil"), json!("jitsi-scaler"))),
            "issuer not accepted"
        );
        assert_eq!(
            check(json!({"exp": NOW + 60, "aud": "jitsi-scaler"})),
            "issuer not accepted"
        );
        assert_eq!(
            check(base(json!("jitsi-component-sidecar"), json!(["x"]))),
            "audience not accepted"
        );
        assert_eq!(
            check(json!({"exp": NOW + 60, "iss": "jitsi-component-sidecar"})),
            "audience not accepted"
        );
        // empty lists accept anything, including absence
        let open = rules();
        assert!(check_claims(&claims(base(json!("x"), json!(["y"]))), &open, NOW).is_ok());
    }

    #[test]
    fn header_rules() {
        let p = b64(&json!({"sub": "scaler", "exp": NOW}));
        let tok = |h: Value| format!("{}.{p}.c2ln", b64(&h));
        assert_eq!(
            parse_reason(&tok(json!({"alg": "RS256", "typ": "JWT"}))),
            "ok"
        );
        assert_eq!(parse_reason(&tok(json!({"alg": "ES256"}))), "ok");
        assert_eq!(
            parse_reason(&tok(json!({"alg": "none"}))),
            "alg none is refused"
        );
        assert_eq!(
            parse_reason(&tok(json!({"alg": "HS256"}))),
            "HMAC algorithms are refused"
        );
        assert_eq!(
            parse_reason(&tok(json!({"alg": "PS256"}))),
            "algorithm not allowed (RS256 or ES256 only)"
        );
        assert_eq!(
            parse_reason(&tok(json!({"typ": "JWT"}))),
            "header has no alg"
        );
        assert_eq!(
            parse_reason(&tok(json!({"alg": "RS256", "typ": "JOSE+JSON"}))),
            "typ is not JWT"
        );
        assert_eq!(
            parse_reason(&tok(json!({"alg": "RS256", "crit": ["b64"]}))),
            "critical header extensions are not supported"
        );
        assert_eq!(
            parse_reason(&tok(json!({"alg": "RS256", "kid": 7}))),
            "kid is not a string"
        );
        assert_eq!(
            parse_reason(&tok(json!(["alg", "RS256"]))),
            "header is not a JSON object"
        );
    }

    #[test]
    fn malformed_tokens() {
        let h = b64(&json!({"alg": "RS256"}));
        let p = b64(&json!({"exp": NOW}));
        assert_eq!(parse_reason(&format!("{h}.{p}.c2ln")), "ok");
        let three = "not a JWS compact token (need three dot-separated parts)";
        assert_eq!(parse_reason(&format!("{h}.{p}")), three);
        assert_eq!(parse_reason(&format!("{h}.{p}.c2ln.x")), three);
        assert_eq!(parse_reason(""), three);
        assert_eq!(
            parse_reason(&format!("{h}!.{p}.c2ln")),
            "header is not base64url"
        );
        assert_eq!(
            parse_reason(&format!("{h}.{p}.c2ln=")),
            "signature is not base64url"
        );
        assert_eq!(parse_reason(&format!("{h}.{p}.")), "empty signature");
        assert_eq!(
            parse_reason(&format!("{h}.%%%.c2ln")),
            "payload is not base64url"
        );
        let not_json = URL_SAFE_NO_PAD.encode(b"{not json");
        assert_eq!(
            parse_reason(&format!("{h}.{not_json}.c2ln")),
            "payload is not a JSON object"
        );
        assert_eq!(
            parse_reason(&format!("{not_json}.{p}.c2ln")),
            "header is not a JSON object"
        );
        let big = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(parse_reason(&big), "token too large");
        let token = format!("{h}.{p}.c2ln");
        let ok = parse(&token).expect("parses");
        assert_eq!(ok.signing_input, format!("{h}.{p}"));
        assert_eq!(ok.signature, b"sig");
    }
}
