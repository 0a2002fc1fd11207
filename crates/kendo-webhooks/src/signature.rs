//! Secrets, signing and constant-time verification of `X-Kendo-Signature`.
//!
//! Kendo signs the **raw** JSON body with HMAC-SHA256 keyed by the webhook
//! secret and sends the lowercase hex digest in `X-Kendo-Signature`. The
//! [`Verifier`] checks such a header against every configured [`Secret`]
//! (so a rotation can keep the previous secret for a while) without ever
//! re-serialising the body.
//!
//! ```
//! use kendo_webhooks::{Secret, TestDelivery, Verifier, sign};
//!
//! let body = br#"{"id":"evt_1","event":"call.uploaded","created_at":"2026-03-05T12:00:00Z","data":{"callId":"abc"}}"#;
//! let signature = sign("whsec_current", body);
//!
//! let verifier = Verifier::new([
//!     Secret::new("whsec_current").with_label("current"),
//!     Secret::new("whsec_previous").with_label("previous"),
//! ])?;
//! assert_eq!(verifier.verify(signature.as_bytes(), body)?, "current");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::BuildError;
use crate::event::Delivery;
use crate::reject::Rejection;

/// The clock the replay window reads (the layer's and the [`Verifier`]'s).
pub(crate) type Clock = dyn Fn() -> SystemTime + Send + Sync;

type HmacSha256 = Hmac<Sha256>;

/// Length in bytes of an HMAC-SHA256 tag.
pub(crate) const TAG_LEN: usize = 32;

/// A webhook secret, used as the HMAC key.
///
/// Its `Debug` and `Display` never show the key, so a `Secret` can sit in a
/// logged configuration struct without leaking. Give it a label when you
/// configure several (during a rotation): the verified
/// [`Delivery`](crate::Delivery) reports which label matched, so you can see
/// when the previous secret stops being used.
#[derive(Clone)]
pub struct Secret {
    key: Arc<[u8]>,
    label: Option<Arc<str>>,
}

impl Secret {
    /// A secret from the bytes Kendo shows in its dashboard.
    ///
    /// The bytes are used as-is (no base64 or hex decoding), exactly as Kendo
    /// keys its HMAC. An empty secret is refused when the layer or verifier is
    /// built.
    pub fn new(key: impl AsRef<[u8]>) -> Self {
        Self {
            key: Arc::from(key.as_ref()),
            label: None,
        }
    }

    /// Names this secret (for example `"current"` or `"previous"`).
    ///
    /// Unlabelled secrets are named by their position: `"#1"`, `"#2"`, ….
    #[must_use]
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(Arc::from(label.into()));
        self
    }

    /// The label given with [`Secret::with_label`], if any.
    #[must_use]
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// The key bytes, for signing your own test deliveries.
    #[must_use]
    pub fn expose(&self) -> &[u8] {
        &self.key
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("label", &self.label)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl From<&str> for Secret {
    fn from(key: &str) -> Self {
        Self::new(key)
    }
}

impl From<String> for Secret {
    fn from(key: String) -> Self {
        Self::new(key)
    }
}

impl From<&[u8]> for Secret {
    fn from(key: &[u8]) -> Self {
        Self::new(key)
    }
}

impl From<Vec<u8>> for Secret {
    fn from(key: Vec<u8>) -> Self {
        Self::new(key)
    }
}

/// Signs `body` as Kendo does: lowercase hex of HMAC-SHA256(secret, body).
///
/// Use it to build deliveries for your own tests, or see
/// [`SignedDelivery`](crate::SignedDelivery) for a whole request.
///
/// ```
/// let signature = kendo_webhooks::sign("secret", b"{}");
/// assert_eq!(signature.len(), 64);
/// ```
pub fn sign(secret: impl AsRef<[u8]>, body: impl AsRef<[u8]>) -> String {
    let mut mac = keyed(secret.as_ref());
    mac.update(body.as_ref());
    hex::encode(mac.finalize().into_bytes())
}

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// Checks signatures against one or more secrets in constant time.
///
/// Each secret's HMAC state is keyed once, when the verifier is built, and
/// cloned per message: keying costs about a third of a short message's HMAC.
/// It is cheap to clone and share.
///
/// [`with_replay_tolerance`](Self::with_replay_tolerance) gives
/// [`verify_delivery`](Self::verify_delivery) the replay window
/// [`KendoWebhookLayer`](crate::KendoWebhookLayer) has, for handlers that
/// verify now and process later without the layer.
#[derive(Clone)]
pub struct Verifier {
    keys: Arc<[(Arc<str>, HmacSha256)]>,
    /// How far `created_at` may be from the clock's now; `None`: no window.
    replay_tolerance: Option<Duration>,
    clock: Arc<Clock>,
}

impl Verifier {
    /// A verifier for the given secrets, tried in order.
    ///
    /// # Errors
    ///
    /// [`BuildError`] when no secret is given or one of them is empty.
    pub fn new<I>(secrets: I) -> Result<Self, BuildError>
    where
        I: IntoIterator,
        I::Item: Into<Secret>,
    {
        let mut keys = Vec::new();
        for (index, secret) in secrets.into_iter().enumerate() {
            let secret = secret.into();
            if secret.key.is_empty() {
                return Err(BuildError::EmptySecret {
                    position: index + 1,
                });
            }
            let label = secret
                .label
                .clone()
                .unwrap_or_else(|| Arc::from(format!("#{}", index + 1)));
            keys.push((label, keyed(&secret.key)));
        }
        if keys.is_empty() {
            return Err(BuildError::NoSecret);
        }
        Ok(Self {
            keys: keys.into(),
            replay_tolerance: None,
            clock: Arc::new(SystemTime::now),
        })
    }

    /// Makes [`verify_delivery`](Self::verify_delivery) reject deliveries
    /// whose `created_at` is further than `tolerance` from now, in the past
    /// or the future, or unreadable, with
    /// [`Rejection::OutsideReplayWindow`]; as the layer's
    /// [`replay_tolerance`](crate::KendoWebhookLayerBuilder::replay_tolerance)
    /// does (default: off). Kendo's retries span ~7 s plus timeouts, so keep
    /// it at minutes, not seconds; clocks drift. [`verify`](Self::verify)
    /// sees no `created_at` and is not affected; the `VerifiedDelivery`
    /// axum extractor (feature `axum`) applies it too.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime, UNIX_EPOCH};
    /// use kendo_webhooks::{Rejection, TestDelivery, Verifier, sign};
    ///
    /// // 2026-03-05T12:00:00Z, the example's created_at, plus ten minutes.
    /// let now = UNIX_EPOCH + Duration::from_secs(1_772_712_000 + 600);
    /// let verifier = Verifier::new(["whsec"])?
    ///     .with_replay_tolerance(Duration::from_secs(300))
    ///     .with_clock(move || now);
    /// let body = TestDelivery::example("call.uploaded").event_id("evt_1").created_at("2026-03-05T12:00:00Z").body();
    /// let signature = sign("whsec", &body);
    /// let old = verifier.verify_delivery(signature.as_bytes(), "dlv_1", "call.uploaded", body);
    /// assert_eq!(old.unwrap_err(), Rejection::OutsideReplayWindow);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_replay_tolerance(mut self, tolerance: Duration) -> Self {
        self.replay_tolerance = Some(tolerance);
        self
    }

    /// The clock the replay window reads (default: [`SystemTime::now`]);
    /// pass a fixed one in tests. Without
    /// [`with_replay_tolerance`](Self::with_replay_tolerance) it is not read.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The replay tolerance set with
    /// [`with_replay_tolerance`](Self::with_replay_tolerance), if any.
    #[must_use]
    pub fn replay_tolerance(&self) -> Option<Duration> {
        self.replay_tolerance
    }

    /// [`Rejection::OutsideReplayWindow`] when a replay window is set and
    /// `delivery`'s `created_at` is unreadable or further than the tolerance
    /// from now, either way.
    pub(crate) fn check_replay_window(&self, delivery: &Delivery) -> Result<(), Rejection> {
        let Some(tolerance) = self.replay_tolerance else {
            return Ok(());
        };
        let created = delivery
            .created_at_time()
            .ok_or(Rejection::OutsideReplayWindow)?;
        let now = (self.clock)();
        let skew = now
            .duration_since(created)
            .or_else(|_| created.duration_since(now))
            .unwrap_or_default();
        if skew > tolerance {
            return Err(Rejection::OutsideReplayWindow);
        }
        Ok(())
    }

    /// Verifies a raw `X-Kendo-Signature` header value against the raw body.
    ///
    /// Returns the label of the secret that matched. The header may carry a
    /// `sha256=` prefix and hex digits of either case.
    ///
    /// # Errors
    ///
    /// [`Rejection::MalformedSignature`] when the header is not 64 hex digits,
    /// [`Rejection::InvalidSignature`] when no secret produced it.
    pub fn verify(&self, signature: &[u8], body: &[u8]) -> Result<&str, Rejection> {
        let expected = parse_signature(signature)?;
        self.verify_tag(&expected, body).map(|label| &**label)
    }

    /// Verifies and parses a delivery in one step: the receiving pipeline
    /// without tower, for handlers that verify, queue and process later.
    ///
    /// Takes the raw `X-Kendo-Signature`, `X-Kendo-Delivery-Id` and
    /// `X-Kendo-Event` header values and the raw body.
    ///
    /// # Errors
    ///
    /// The [`Rejection`] the layer would answer with: a signature problem
    /// first, then an envelope problem, then (with
    /// [`with_replay_tolerance`](Self::with_replay_tolerance)) a `created_at`
    /// outside the replay window.
    ///
    /// ```
    /// use kendo_webhooks::{TestDelivery, Verifier, sign};
    ///
    /// let body = TestDelivery::example("call.uploaded").event_id("evt_1").created_at("2026-03-05T12:00:00Z").body();
    /// let signature = sign("whsec", &body);
    /// let verifier = Verifier::new(["whsec"])?;
    /// let delivery = verifier.verify_delivery(signature.as_bytes(), "dlv_1", "call.uploaded", body)?;
    /// assert_eq!(delivery.event_id(), "evt_1");
    /// assert_eq!(delivery.secret_label(), Some("#1"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify_delivery(
        &self,
        signature: &[u8],
        delivery_id: &str,
        event_header: &str,
        body: impl Into<bytes::Bytes>,
    ) -> Result<Delivery, Rejection> {
        let body = body.into();
        let tag = parse_signature(signature)?;
        let label = Arc::clone(self.verify_tag(&tag, &body)?);
        let delivery = Delivery::parse_verified(body, delivery_id, event_header, Some(label))?;
        self.check_replay_window(&delivery)?;
        Ok(delivery)
    }

    pub(crate) fn verify_tag(
        &self,
        tag: &[u8; TAG_LEN],
        body: &[u8],
    ) -> Result<&Arc<str>, Rejection> {
        for (label, mac) in self.keys.iter() {
            let mut mac = mac.clone();
            mac.update(body);
            // `verify_slice` compares in constant time (it uses `subtle`).
            if mac.verify_slice(tag).is_ok() {
                return Ok(label);
            }
        }
        Err(Rejection::InvalidSignature)
    }

    /// How many secrets this verifier tries.
    #[must_use]
    pub fn secret_count(&self) -> usize {
        self.keys.len()
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labels: Vec<&str> = self.keys.iter().map(|(label, _)| &**label).collect();
        f.debug_struct("Verifier")
            .field("secrets", &labels)
            .field("replay_tolerance", &self.replay_tolerance())
            .finish_non_exhaustive()
    }
}

/// Parses a signature header: optional `sha256=` prefix (any case), then
/// exactly 64 hex digits of either case, nothing else.
pub(crate) fn parse_signature(value: &[u8]) -> Result<[u8; TAG_LEN], Rejection> {
    const PREFIX: &[u8] = b"sha256=";
    let hex_digits = match value.get(..PREFIX.len()) {
        Some(head) if head.eq_ignore_ascii_case(PREFIX) => &value[PREFIX.len()..],
        _ => value,
    };
    // Exactly 64 digits: no `0x` prefix, no whitespace, nothing else.
    if hex_digits.len() != 2 * TAG_LEN {
        return Err(Rejection::MalformedSignature);
    }
    let mut tag = [0u8; TAG_LEN];
    hex::decode_to_slice(hex_digits, &mut tag).map_err(|_| Rejection::MalformedSignature)?;
    Ok(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4231, test case 2.
    const KEY: &str = "Jefe";
    const DATA: &[u8] = b"what do ya want for nothing?";
    const DIGEST: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

    #[test]
    fn sign_matches_rfc_4231_vector() {
        assert_eq!(sign(KEY, DATA), DIGEST);
    }

    #[test]
    fn verify_accepts_prefix_and_uppercase() {
        let verifier = Verifier::new([KEY]).unwrap();
        let upper = DIGEST.to_ascii_uppercase();
        for header in [
            DIGEST.to_owned(),
            upper.clone(),
            format!("sha256={DIGEST}"),
            format!("SHA256={upper}"),
        ] {
            assert_eq!(
                verifier.verify(header.as_bytes(), DATA),
                Ok("#1"),
                "{header}"
            );
        }
    }

    #[test]
    fn verify_rejects_wrong_length_and_non_hex() {
        let verifier = Verifier::new([KEY]).unwrap();
        for header in [
            &DIGEST[..63],
            "",
            "sha256=",
            "zz",
            &format!("{DIGEST}00"),
            &format!(" {DIGEST}"),
            &format!("sha1={DIGEST}"),
            &format!("sha256=sha256={DIGEST}"),
            &format!("0x{DIGEST}"),
            &format!("0x{}", &DIGEST[..62]),
            &format!("sha256=0x{}", &DIGEST[..62]),
        ] {
            assert_eq!(
                verifier.verify(header.as_bytes(), DATA),
                Err(Rejection::MalformedSignature),
                "{header:?}"
            );
        }
    }

    #[test]
    fn verify_reports_which_labelled_secret_matched() {
        let verifier = Verifier::new([
            Secret::new("new").with_label("current"),
            Secret::new("old").with_label("previous"),
        ])
        .unwrap();
        assert_eq!(
            verifier.verify(sign("old", DATA).as_bytes(), DATA),
            Ok("previous")
        );
        assert_eq!(
            verifier.verify(sign("third", DATA).as_bytes(), DATA),
            Err(Rejection::InvalidSignature)
        );
    }

    #[test]
    fn empty_or_missing_secret_is_a_build_error() {
        assert_eq!(
            Verifier::new(Vec::<Secret>::new()).unwrap_err(),
            BuildError::NoSecret
        );
        assert_eq!(
            Verifier::new(["ok", ""]).unwrap_err(),
            BuildError::EmptySecret { position: 2 }
        );
    }

    #[test]
    fn debug_and_display_never_show_the_key() {
        let secret = Secret::new("hunter2-very-secret").with_label("current");
        let shown = format!("{secret:?} {secret}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("current"), "{shown}");
        let verifier = Verifier::new([secret]).unwrap();
        assert!(!format!("{verifier:?}").contains("hunter2"));
    }
}
