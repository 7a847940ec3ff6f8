//! The optional shared secret: with a token set, registry writes and the
//! registry's notifications must carry `Authorization: Bearer TOKEN`, and
//! whatever lacks it is answered 401. Without a token the protocol is the
//! original's, open to anyone who can reach it.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;

use crate::body::text_response;

/// The shared secret, or none.
#[derive(Clone, Default)]
pub struct Token(Option<Arc<str>>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Token(set)"
        } else {
            "Token(none)"
        })
    }
}

impl Token {
    /// An empty string counts as no token.
    pub fn new(token: Option<String>) -> Self {
        Token(token.filter(|t| !t.is_empty()).map(Arc::from))
    }

    /// Whether `headers` carry the token (always, when none is set).
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.0 else {
            return true;
        };
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .unwrap_or_default();
        constant_time_eq(presented.as_bytes(), token.as_bytes())
    }

    /// Adds the token to an outgoing request's headers.
    pub fn attach(&self, headers: &mut HeaderMap) {
        if let Some(token) = &self.0
            && let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}"))
        {
            headers.insert(AUTHORIZATION, value);
        }
    }
}

/// A clap value parser for `--token`: a token an HTTP header can carry,
/// i.e. visible ASCII (0x21-0x7E), and not empty (an empty `--token ""`
/// would otherwise turn authentication off without a word). The error
/// does not repeat the token.
pub fn parse(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("the token is empty: give one, or no --token for an open protocol".into());
    }
    if let Some((at, _)) = text
        .char_indices()
        .find(|(_, c)| !matches!(c, '\x21'..='\x7e'))
    {
        return Err(format!(
            "the token has a character that is not visible ASCII (0x21-0x7E) at byte {at}: \
             no HTTP header could carry it"
        ));
    }
    Ok(text.to_owned())
}

/// The credentials of an `Authorization` value in the `Bearer` scheme,
/// whose name is case-insensitive (RFC 9110, 11.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("Bearer")
        .then(|| credentials.trim_start_matches(' '))
}

/// The answer to a request without the right token.
pub fn unauthorized() -> Response<Full<Bytes>> {
    let mut response = text_response(StatusCode::UNAUTHORIZED, "missing or wrong token");
    response
        .headers_mut()
        .insert("www-authenticate", HeaderValue::from_static("Bearer"));
    response
}

/// Compares without stopping at the first difference, so that the time taken
/// does not tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn no_token_admits_everyone() {
        assert!(Token::new(None).admits(&HeaderMap::new()));
        assert!(Token::new(Some(String::new())).admits(&HeaderMap::new()));
    }

    #[test]
    fn a_token_admits_only_itself() {
        let token = Token::new(Some("s3cret".into()));
        assert!(token.admits(&with("Bearer s3cret")));
        assert!(!token.admits(&with("Bearer s3cre")));
        assert!(!token.admits(&with("s3cret")));
        assert!(!token.admits(&HeaderMap::new()));
        let mut headers = HeaderMap::new();
        token.attach(&mut headers);
        assert!(token.admits(&headers));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let token = Token::new(Some("s3cret".into()));
        for value in [
            "bearer s3cret",
            "BEARER s3cret",
            "bEaReR s3cret",
            "Bearer  s3cret",
        ] {
            assert!(token.admits(&with(value)), "{value}");
        }
        for value in ["Basic s3cret", "Bearers3cret", "Bearer", "Bear s3cret"] {
            assert!(!token.admits(&with(value)), "{value}");
        }
    }

    #[test]
    fn a_token_no_header_can_carry_is_refused() {
        assert_eq!(parse("s3cret"), Ok("s3cret".to_string()));
        assert_eq!(parse("!~a-Z_0.9"), Ok("!~a-Z_0.9".to_string()));
        assert!(parse("").unwrap_err().contains("empty"));
        for bad in ["sécret", "日本", "s3 cret", "s3cret\t", "\u{7f}", "a\nb"] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains("not visible ASCII"), "{bad:?}: {error}");
            assert!(!error.contains(bad), "the error repeats the token: {error}");
        }
        // What the parser lets through, a header carries and admits.
        let token = Token::new(Some(parse("!~a-Z_0.9").unwrap()));
        let mut headers = HeaderMap::new();
        token.attach(&mut headers);
        assert!(token.admits(&headers));
    }
}
