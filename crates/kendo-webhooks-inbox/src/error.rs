//! [`InboxError`]: what failed, why, and what to try, with the database
//! driver's error as its cause.

use super::*;

/// What kind of failure an [`InboxError`] is.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxErrorKind {
    /// The database could not be opened or reached, or a statement failed:
    /// usually temporary (locked, restarting, network). The service answers
    /// 503 so Kendo retries.
    Unavailable,
    /// The schema could not be brought to this version.
    Migration,
    /// The inbox's writer is gone (its thread or task ended).
    Closed,
}

/// An inbox operation failed: what was being done, why, and what to try.
#[derive(Debug, Clone)]
pub struct InboxError {
    kind: InboxErrorKind,
    what: String,
    reason: String,
    /// The database driver's error, when there is one (shared: the same
    /// error answers every delivery of a failed group commit).
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl InboxError {
    pub(crate) fn new(
        kind: InboxErrorKind,
        what: impl Into<String>,
        reason: impl fmt::Display,
    ) -> Self {
        Self {
            kind,
            what: what.into(),
            reason: reason.to_string(),
            source: None,
        }
    }

    /// The same error, keeping `source` as its cause.
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn caused_by(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    pub(crate) fn unavailable(what: impl Into<String>, reason: impl fmt::Display) -> Self {
        Self::new(InboxErrorKind::Unavailable, what, reason)
    }

    pub(crate) fn closed() -> Self {
        Self::new(
            InboxErrorKind::Closed,
            "the inbox's database writer has stopped",
            "its thread or task ended (a panic or a runtime shutting down); open the inbox again",
        )
    }

    /// What kind of failure this is.
    #[must_use]
    pub fn kind(&self) -> InboxErrorKind {
        self.kind
    }

    /// Whether retrying later may succeed (the database was unavailable).
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        self.kind == InboxErrorKind::Unavailable
    }
}

impl fmt::Display for InboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.reason)
    }
}

impl std::error::Error for InboxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}
