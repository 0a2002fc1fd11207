//! Configuration errors, reported by `build()` instead of at request time.

use std::fmt;

/// A layer or verifier configuration that cannot work.
///
/// Returned by [`KendoWebhookLayerBuilder::build`](crate::KendoWebhookLayerBuilder::build)
/// and [`Verifier::new`](crate::Verifier::new), so a misconfigured receiver
/// fails at start-up rather than rejecting every delivery.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    /// No secret was configured: nothing could ever verify.
    NoSecret,
    /// The secret at this 1-based position is empty.
    EmptySecret {
        /// 1-based position among the configured secrets.
        position: usize,
    },
    /// The body limit is zero: every delivery would be rejected.
    ZeroBodyLimit,
    /// The body read deadline is zero: every delivery would time out.
    ZeroReadTimeout,
    /// The de-duplication capacity is zero.
    ZeroCapacity,
    /// The body budget cannot hold one body of the body limit (bodies over
    /// 16 KiB may use only seven eighths of the budget).
    BodyBudgetBelowLimit {
        /// The configured budget, in bytes.
        budget: usize,
        /// The configured body limit, in bytes.
        body_limit: usize,
    },
    /// Both a capacity (for the default in-memory store) and a store of
    /// your own were given: the capacity would be ignored.
    CapacityWithCustomStore,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSecret => f.write_str(
                "no webhook secret configured: pass the secret from Kendo's webhook settings",
            ),
            Self::EmptySecret { position } => write!(
                f,
                "webhook secret #{position} is empty: check the variable it is read from"
            ),
            Self::ZeroBodyLimit => {
                f.write_str("body limit is zero: use at least a few KiB (default 64 KiB)")
            }
            Self::BodyBudgetBelowLimit { budget, body_limit } => write!(
                f,
                "body budget of {budget} bytes cannot hold one body of the {body_limit}-byte \
                 limit (bodies over 16 KiB may use seven eighths of it): raise the budget or \
                 lower the limit"
            ),
            Self::ZeroReadTimeout => {
                f.write_str("body read timeout is zero: use a few seconds (default 10 s)")
            }
            Self::CapacityWithCustomStore => f.write_str(
                "dedupe_capacity sizes the default in-memory store, but dedupe_store replaced it: \
                 size your own store instead",
            ),
            Self::ZeroCapacity => f.write_str(
                "de-duplication capacity is zero: remember at least the deliveries of Kendo's retry window",
            ),
        }
    }
}

impl std::error::Error for BuildError {}
