//! What the inbox holds and answers: rows, their states and counts, and
//! what an enqueue did.

use super::*;

/// What [`Inbox::enqueue`] did with a delivery.
///
/// The inbox service also leaves it in its response's extensions, where the
/// layer's `on_outcome` hook finds it:
///
/// ```
/// use kendo_webhooks::KendoWebhookLayer;
/// use kendo_webhooks_inbox::Enqueued;
///
/// let layer = KendoWebhookLayer::builder()
///     .secret("whsec_example")
///     .on_outcome(|report| {
///         let enqueued = report.response_extensions().and_then(|e| e.get::<Enqueued>());
///         if enqueued == Some(&Enqueued::Duplicate) {
///             println!("{:?} was already stored", report.event_id());
///         }
///     })
///     .build()?;
/// # Ok::<(), kendo_webhooks::BuildError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new row, durably committed.
    Stored,
    /// The event id was already in the inbox; nothing was written.
    Duplicate,
}

impl Enqueued {
    /// `stored` or `duplicate`, as in the [`INBOX_HEADER`] header.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Duplicate => "duplicate",
        }
    }
}

/// The state of an inbox row.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RowState {
    /// Committed, waiting for a worker.
    Pending,
    /// Claimed by a worker whose lease has not ended.
    Leased,
    /// Handled successfully.
    Done,
    /// The handler failed; tried again at `next_at`.
    Failed,
    /// The handler failed on every allowed attempt; waits for
    /// [`Inbox::requeue`].
    Dead,
}

impl RowState {
    /// The state's name as stored in the database.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Leased => "leased",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "pending" => Self::Pending,
            "leased" => Self::Leased,
            "done" => Self::Done,
            "failed" => Self::Failed,
            "dead" => Self::Dead,
            _ => return None,
        })
    }
}

impl fmt::Display for RowState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One inbox row, as listed by [`Inbox::list`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelivery {
    /// The signed event id (the row's key).
    pub event_id: String,
    /// `X-Kendo-Delivery-Id` of the delivery that was committed.
    pub delivery_id: String,
    /// The event name from the signed body.
    pub event_name: String,
    /// The raw body as received and verified.
    pub body: Bytes,
    /// The row's state.
    pub state: RowState,
    /// How many times it was handed to a handler.
    pub attempts: u32,
    /// The last handler error, if any.
    pub last_error: Option<String>,
    /// When it was committed.
    pub received_at: SystemTime,
    /// Pending or failed: when it is due; leased: when the lease ends;
    /// done: when it was done; dead: when it died.
    pub next_at: SystemTime,
    /// The worker holding (or that last held) the lease.
    pub lease_owner: Option<String>,
}

impl StoredDelivery {
    /// Parses the stored body back into a [`Delivery`].
    ///
    /// # Errors
    ///
    /// A [`Rejection`] if the stored body no longer parses (it did when it
    /// was committed; only a changed row can fail).
    pub fn delivery(&self) -> Result<Delivery, Rejection> {
        Delivery::parse(self.body.clone(), &self.delivery_id, &self.event_name)
    }
}

/// How many rows are in each state, from [`Inbox::counts`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Committed, not yet claimed.
    pub pending: u64,
    /// Claimed by a worker.
    pub leased: u64,
    /// Handled.
    pub done: u64,
    /// Waiting for another attempt.
    pub failed: u64,
    /// Out of attempts.
    pub dead: u64,
}

impl Counts {
    /// Rows not yet done or dead: pending, leased and failed.
    #[must_use]
    pub fn backlog(&self) -> u64 {
        self.pending + self.leased + self.failed
    }

    /// Sets the count of the state named `state` (as stored) to `n`; a name
    /// this version does not know counts as dead, so it is never hidden.
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn set(&mut self, state: &str, n: i64) {
        let n = u64::try_from(n).unwrap_or(0);
        match RowState::parse(state) {
            Some(RowState::Pending) => self.pending = n,
            Some(RowState::Leased) => self.leased = n,
            Some(RowState::Done) => self.done = n,
            Some(RowState::Failed) => self.failed = n,
            Some(RowState::Dead) | None => self.dead += n,
        }
    }
}
