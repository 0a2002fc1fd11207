//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): what
//! a receiver checks with any of its libraries (svix's `Webhook::verify`,
//! `standardwebhooks`, …).
//!
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`,
//! keyed by the bytes of the secret's base64 after `whsec_`.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A destination's key, from its `whsec_…` secret. Keyed once; each
/// signature clones the keyed HMAC.
#[derive(Clone)]
pub struct SigningKey {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key", &"REDACTED")
            .finish()
    }
}

impl SigningKey {
    /// The key of a `whsec_` + base64 secret; `None` when it is not one.
    pub fn from_whsec(secret: &str) -> Option<Self> {
        let bytes = STANDARD.decode(secret.strip_prefix("whsec_")?).ok()?;
        if bytes.is_empty() {
            return None;
        }
        Some(Self {
            mac: Hmac::new_from_slice(&bytes).ok()?,
        })
    }

    /// The `webhook-signature` value for one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's own example.
    #[test]
    fn the_specifications_example_signs_as_published() {
        let key = SigningKey::from_whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("a key");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_secret_without_whsec_or_base64_is_refused() {
        assert!(SigningKey::from_whsec("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_none());
        assert!(SigningKey::from_whsec("whsec_not base64!").is_none());
        assert!(SigningKey::from_whsec("whsec_").is_none());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = SigningKey::from_whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("a key");
        assert!(format!("{key:?}").contains("REDACTED"));
    }
}
