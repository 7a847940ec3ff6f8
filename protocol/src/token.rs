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
            .and_then(|v| v.strip_prefix("Bearer "))
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
}
