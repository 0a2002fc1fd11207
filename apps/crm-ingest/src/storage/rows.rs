//! The values the CRM's tables hold and give back, whichever the backend:
//! the rows the pages and the API show, the batches the writers commit, and
//! the cells and parameters of [`super::Storage::select`].

use serde::Serialize;

/// Which rows of `calls`/`trainings` a list shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TestFilter {
    /// Real deliveries only (the default: tests never count as calls).
    #[default]
    Exclude,
    /// Test deliveries (`_isTest`) only.
    Only,
    /// Both.
    Include,
}

impl TestFilter {
    /// Parses `exclude`, `only` or `include`.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "exclude" => Self::Exclude,
            "only" => Self::Only,
            "include" => Self::Include,
            _ => return None,
        })
    }

    /// Its name in a query string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exclude => "exclude",
            Self::Only => "only",
            Self::Include => "include",
        }
    }

    /// The condition on `is_test` a list query ends its `WHERE` with.
    pub(super) fn sql(self) -> &'static str {
        match self {
            Self::Exclude => " AND NOT is_test",
            Self::Only => " AND is_test",
            Self::Include => "",
        }
    }
}

/// One page of a list, newest first: rows older than `before` (a `seq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Rows per page.
    pub limit: usize,
    /// Only rows with a smaller sequence number (the cursor).
    pub before: Option<i64>,
}

/// Rows of a page and the cursor of the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows<T> {
    /// The rows, newest first.
    pub rows: Vec<T>,
    /// The cursor of the next page, when there are more rows.
    pub next: Option<i64>,
}

/// A row of `calls`, with Kendo's field names.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRow {
    pub event_id: String,
    pub call_id: String,
    pub agent_id: Option<String>,
    pub agent_name: Option<String>,
    pub user_id: Option<String>,
    pub team_member_user_id: Option<String>,
    pub duration: Option<f64>,
    pub ai_score: Option<f64>,
    pub timestamp: Option<String>,
    pub is_test: bool,
    /// When the worker stored it (RFC 3339, UTC).
    pub received_at: String,
}

/// A row of `trainings`, with Kendo's field names.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingRow {
    pub event_id: String,
    pub training_id: String,
    pub agent_id: Option<String>,
    pub agent_name: Option<String>,
    pub user_id: Option<String>,
    pub team_member_user_id: Option<String>,
    pub duration: Option<f64>,
    pub ai_score: Option<f64>,
    pub timestamp: Option<String>,
    pub is_test: bool,
    /// When the worker stored it (RFC 3339, UTC).
    pub received_at: String,
}

/// A verified delivery in the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRow {
    pub delivery_id: Option<String>,
    pub event_id: Option<String>,
    pub event: Option<String>,
    /// `accepted`, `duplicate` or `failed` (see [`LogRecord`]).
    pub outcome: String,
    /// The layer's reason (`duplicate`, `in_flight`, …), or `inner_status`.
    pub reason: Option<String>,
    pub status: u16,
    pub secret_label: Option<String>,
    /// The inbox's time to commit, for accepted and failed entries.
    pub latency_ms: Option<f64>,
    pub received_at: String,
}

/// Unverified rejections of one reason in one minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectionRow {
    /// The minute (RFC 3339, UTC).
    pub minute: String,
    pub reason: String,
    pub status: u16,
    pub count: u64,
    /// The delivery id of the last one (as sent, unverified).
    pub last_delivery_id: Option<String>,
}

/// Table sizes; tests are counted apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableCounts {
    pub calls: u64,
    pub test_calls: u64,
    pub trainings: u64,
    pub test_trainings: u64,
    /// Verified delivery-log entries kept.
    pub deliveries: u64,
    /// Unverified rejections counted (kept minutes only).
    pub rejections: u64,
    /// When the newest verified delivery arrived (Unix ms).
    #[serde(skip)]
    pub last_delivery_ms: Option<i64>,
}

/// One verified delivery-log entry to write.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub delivery_id: Option<String>,
    pub event_id: Option<String>,
    pub event: Option<String>,
    pub outcome: crate::outcome::DeliveryOutcome,
    pub reason: Option<&'static str>,
    pub status: u16,
    pub secret_label: Option<String>,
    pub latency_ms: Option<f64>,
    pub received_ms: i64,
    /// The verified raw body as received (see [`crate::captured`]).
    pub body: Option<String>,
    /// The request's headers, a JSON object, the signature shortened.
    pub headers: Option<String>,
    /// The answer given, a JSON object (`status`, `headers`, `body`).
    pub answer: Option<String>,
}

/// Unverified rejections of one reason in one minute, to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectionCount {
    pub minute_ms: i64,
    pub reason: &'static str,
    pub status: u16,
    pub count: u64,
    pub last_delivery_id: Option<String>,
    pub last_ms: i64,
}

/// One unverified attempt to keep in the `unverified` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedEntry {
    pub delivery_id: Option<String>,
    pub reason: &'static str,
    pub status: u16,
    pub received_ms: i64,
}

/// What the delivery-log writer commits in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogBatch {
    /// Verified entries.
    pub entries: Vec<LogRecord>,
    /// Unverified attempts, one by one.
    pub unverified: Vec<UnverifiedEntry>,
    /// Unverified attempts counted per minute and reason.
    pub rejections: Vec<RejectionCount>,
}

impl LogBatch {
    /// How many items it holds.
    pub fn len(&self) -> usize {
        self.entries.len() + self.unverified.len() + self.rejections.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One value of a [`super::Storage::select`] row, whichever the backend.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl Cell {
    /// An integer (or a real, truncated), else `None`.
    pub fn int(&self) -> Option<i64> {
        match self {
            Self::Int(v) => Some(*v),
            #[allow(clippy::cast_possible_truncation)]
            Self::Real(v) => Some(*v as i64),
            _ => None,
        }
    }

    /// An integer, as a count (negative and NULL are 0).
    pub fn count(&self) -> u64 {
        self.int().and_then(|v| u64::try_from(v).ok()).unwrap_or(0)
    }

    /// A number, else `None`.
    pub fn real(&self) -> Option<f64> {
        match self {
            #[allow(clippy::cast_precision_loss)]
            Self::Int(v) => Some(*v as f64),
            Self::Real(v) => Some(*v),
            _ => None,
        }
    }

    /// Text, else `None`.
    pub fn text(&self) -> Option<String> {
        match self {
            Self::Text(v) => Some(v.clone()),
            _ => None,
        }
    }
}

/// A parameter of a [`super::Storage::select`].
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// Compared with a `BIGINT`/`INTEGER` column such as `received_ms`.
    Int(i64),
    /// Compared with a `TEXT` column.
    Text(String),
    /// Compared with a `BOOLEAN` column (SQLite: 0 or 1).
    Bool(bool),
}

/// Where a delivery was projected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    /// Into `calls` (or already there).
    Call,
    /// Into `trainings` (or already there).
    Training,
    /// Nowhere: an event this app keeps no table for.
    Ignored,
}

/// One change in Kendo's payloads, seen in a batch: the first example and
/// how many deliveries showed it.
#[derive(Debug, Clone, PartialEq)]
pub struct PayloadChange {
    /// The event name.
    pub event: String,
    /// The field of `data`.
    pub field: String,
    /// `missing`, `other_type` or `new`.
    pub kind: &'static str,
    /// The value as sent (JSON), for `other_type` and `new`.
    pub example: Option<String>,
    /// The event that showed it first.
    pub event_id: String,
    /// When it was seen first (Unix ms).
    pub first_ms: i64,
    /// How many deliveries showed it.
    pub count: i64,
}

/// The columns `calls` and `trainings` share.
#[derive(Clone)]
pub(crate) struct ProjectedRow {
    pub(crate) event_id: String,
    pub(crate) id: String,
    pub(crate) agent_id: Option<String>,
    pub(crate) agent_name: Option<String>,
    pub(crate) user_id: Option<String>,
    pub(crate) team_member_user_id: Option<String>,
    pub(crate) duration: Option<f64>,
    pub(crate) ai_score: Option<f64>,
    pub(crate) timestamp: Option<String>,
    pub(crate) is_test: bool,
    pub(crate) received_ms: i64,
}

/// A call as the pages and the API show it: its id under its own name.
impl From<ProjectedRow> for CallRow {
    fn from(r: ProjectedRow) -> Self {
        Self {
            event_id: r.event_id,
            call_id: r.id,
            agent_id: r.agent_id,
            agent_name: r.agent_name,
            user_id: r.user_id,
            team_member_user_id: r.team_member_user_id,
            duration: r.duration,
            ai_score: r.ai_score,
            timestamp: r.timestamp,
            is_test: r.is_test,
            received_at: super::format_ms(r.received_ms),
        }
    }
}

/// A training as the pages and the API show it.
impl From<ProjectedRow> for TrainingRow {
    fn from(r: ProjectedRow) -> Self {
        Self {
            event_id: r.event_id,
            training_id: r.id,
            agent_id: r.agent_id,
            agent_name: r.agent_name,
            user_id: r.user_id,
            team_member_user_id: r.team_member_user_id,
            duration: r.duration,
            ai_score: r.ai_score,
            timestamp: r.timestamp,
            is_test: r.is_test,
            received_at: super::format_ms(r.received_ms),
        }
    }
}

impl<T> Rows<T> {
    pub(super) fn map<U>(self, f: impl FnMut(T) -> U) -> Rows<U> {
        Rows {
            rows: self.rows.into_iter().map(f).collect(),
            next: self.next,
        }
    }
}

/// Rows of a page: `limit + 1` rows were asked for, the extra one says a
/// next page exists.
pub(super) fn paginate<T>(mut rows: Vec<(i64, T)>, limit: usize) -> Rows<T> {
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|(seq, _)| *seq)
    } else {
        None
    };
    Rows {
        rows: rows.into_iter().map(|(_, row)| row).collect(),
        next,
    }
}
