//! The admin token on `/`, `/api/*` and `/metrics`, through tower-http's
//! `ValidateRequestHeaderLayer`: `Authorization: Bearer <token>`, or HTTP
//! Basic with the token as password (any user name) so a browser can log
//! in. Anything else gets 401 with `WWW-Authenticate`. Tokens are compared
//! in constant time (as SHA-256 digests, so their lengths do not leak).

use std::fmt;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};

/// The admin token; its `Debug` is redacted.
#[derive(Clone)]
pub struct AdminToken {
    digest: Arc<[u8; 32]>,
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(REDACTED)")
    }
}

impl AdminToken {
    /// A token to compare against.
    pub fn new(token: &str) -> Self {
        Self {
            digest: Arc::new(Sha256::digest(token.as_bytes()).into()),
        }
    }

    /// A random token of 32 hex digits (128 bits from the OS).
    pub fn generate() -> String {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `candidate` is the token, in constant time.
    fn matches(&self, candidate: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(candidate).into();
        digest.ct_eq(&*self.digest).into()
    }

    /// Whether an `Authorization` header value carries the token.
    pub fn authorizes(&self, value: &[u8]) -> bool {
        let Ok(value) = std::str::from_utf8(value) else {
            return false;
        };
        let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            self.matches(credentials.as_bytes())
        } else if scheme.eq_ignore_ascii_case("basic") {
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credentials) else {
                return false;
            };
            // `user:password`; the user name is ignored.
            match decoded.iter().position(|&b| b == b':') {
                Some(colon) => self.matches(&decoded[colon + 1..]),
                None => false,
            }
        } else {
            false
        }
    }

    /// The layer that guards admin routes.
    pub fn layer(&self) -> ValidateRequestHeaderLayer<Self> {
        ValidateRequestHeaderLayer::custom(self.clone())
    }
}

impl<B> ValidateRequest<B> for AdminToken {
    type ResponseBody = Body;

    fn validate(&mut self, request: &mut Request<B>) -> Result<(), Response<Body>> {
        let authorized = request
            .headers()
            .get(header::AUTHORIZATION)
            .is_some_and(|value| self.authorizes(value.as_bytes()));
        if authorized {
            return Ok(());
        }
        let mut response = Response::new(Body::from(
            "401: this page needs the admin token (CRM_ADMIN_TOKEN): \
             `Authorization: Bearer <token>`, or log in with any user name and the token as password\n",
        ));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"crm-ingest\", charset=\"UTF-8\""),
        );
        response.headers_mut().append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"crm-ingest\""),
        );
        Err(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_with_the_token_as_password_are_accepted() {
        let token = AdminToken::new("s3cret-token-0123");
        assert!(token.authorizes(b"Bearer s3cret-token-0123"));
        assert!(token.authorizes(b"bearer s3cret-token-0123"));
        let basic = base64::engine::general_purpose::STANDARD.encode("admin:s3cret-token-0123");
        assert!(token.authorizes(format!("Basic {basic}").as_bytes()));
    }

    #[test]
    fn a_wrong_or_malformed_token_is_refused() {
        let token = AdminToken::new("s3cret-token-0123");
        for value in [
            "Bearer s3cret-token-012",
            "Bearer ",
            "s3cret-token-0123",
            "Basic !!!",
            "Basic czNjcmV0LXRva2VuLTAxMjM=", // no colon
            "Digest s3cret-token-0123",
        ] {
            assert!(!token.authorizes(value.as_bytes()), "{value}");
        }
    }
}
