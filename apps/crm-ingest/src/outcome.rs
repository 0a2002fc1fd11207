//! [`DeliveryOutcome`]: what happened to one delivery attempt, in the
//! words the log stores (`accepted`, `duplicate`, `rejected`, `failed`).
//!
//! The library's [`kendo_webhooks::Outcome`] says how the layer ended a
//! request; this is the CRM's record of it, one word per log row.

/// What happened to one delivery attempt: the one vocabulary of the CRM's
/// delivery log, its pages, its API and its `outcome=` filters, stored as
/// [`as_str`](Self::as_str).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryOutcome {
    /// Verified and stored.
    Accepted,
    /// Verified, already stored before (a retry).
    Duplicate,
    /// Refused (bad signature, stale, malformed, ...).
    Rejected,
    /// Verified, but the app failed to store it (answered 5xx).
    Failed,
}

impl DeliveryOutcome {
    /// The outcome's name, also its CSS class.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
        }
    }
}

/// Reads the name stored in the delivery log (`accepted`, `duplicate`,
/// `rejected`, `failed`): `"accepted".parse::<DeliveryOutcome>()`.
impl std::str::FromStr for DeliveryOutcome {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Ok(match name {
            "accepted" => Self::Accepted,
            "duplicate" => Self::Duplicate,
            "rejected" => Self::Rejected,
            "failed" => Self::Failed,
            other => return Err(format!("unknown delivery outcome {other:?}")),
        })
    }
}
