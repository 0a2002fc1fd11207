//! The outbox's rows as its backends read and write them: a leased row,
//! an attempt's record, a target's counts and the console's lists. Apart
//! from the seam ([`super::outbox`]), so the backends import these and the
//! seam imports the backends, and no arrow runs back.

use serde::Serialize;

/// A leased row.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Its place in the store (and the order it is sent in).
    pub seq: i64,
    /// The Kendo event id (`webhook-id`).
    pub event_id: String,
    /// What to send.
    pub body: Vec<u8>,
    /// This attempt's number, from 1.
    pub attempt: i64,
    /// When its retry window started (stored, or replayed), Unix ms.
    pub since_ms: i64,
}

/// Where an attempt leaves its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Done.
    Delivered,
    /// Tried again at this time (Unix ms).
    RetryAt(i64),
    /// No more attempts (410 Gone, or the retry window is over).
    Dead,
}

impl Next {
    /// The state column's value.
    pub fn state(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::RetryAt(_) => "pending",
            Self::Dead => "dead",
        }
    }
}

/// What one attempt got.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// When it was sent, Unix ms.
    pub at_ms: i64,
    /// The HTTP status; `None` when no answer came (refused, timeout).
    pub status: Option<u16>,
    /// The answer's first characters, or what went wrong.
    pub answer: String,
    /// How long it took.
    pub latency_ms: i64,
}

/// One target's state, for the console, the API and the metrics.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TargetCounts {
    /// The destination's or alert's name (not serialized: the console's
    /// view, which flattens these counts, names the target itself).
    #[serde(skip_serializing)]
    pub name: String,
    /// Rows delivered (and not purged yet).
    pub delivered: i64,
    /// Rows waiting or being retried.
    pub pending: i64,
    /// Rows given up on.
    pub dead: i64,
    /// The oldest first failure among pending rows, Unix ms.
    pub failing_since_ms: Option<i64>,
    /// The newest delivery, Unix ms.
    pub last_delivered_ms: Option<i64>,
}

/// One row with its attempts, for the console and the API.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRow {
    /// Its place in the store.
    pub seq: i64,
    /// The Kendo event id.
    pub event_id: String,
    /// The Kendo event name.
    pub event: String,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    /// Attempts made (or started).
    pub attempts: i64,
    /// Stored, Unix ms.
    pub created_ms: i64,
    /// Delivered or given up, Unix ms.
    pub settled_ms: Option<i64>,
    /// Next attempt, Unix ms (pending rows).
    pub next_ms: i64,
    /// The last attempt's HTTP status.
    pub last_status: Option<i64>,
    /// The last attempt's answer or error.
    pub last_answer: Option<String>,
    /// Every attempt, oldest first.
    pub history: Vec<AttemptRow>,
}

/// One attempt, as stored.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRow {
    /// Its number, from 1.
    pub attempt: i64,
    /// Sent, Unix ms.
    pub at_ms: i64,
    /// The HTTP status; `None`: no answer.
    pub status: Option<i64>,
    /// The answer's first characters, or the error.
    pub answer: String,
    /// How long it took, ms.
    pub latency_ms: i64,
}

/// Which rows a list shows.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this state.
    pub state: Option<String>,
    /// Only this event id.
    pub event_id: Option<String>,
    /// At most this many, newest first.
    pub limit: i64,
}
