//! Test support (feature `query-log`): every SQL statement the CRM's SQLite
//! reader connection runs, recorded so a test can `EXPLAIN QUERY PLAN` each
//! one and fail on a full scan of a table that grows. Not for production:
//! the hook costs a lock per statement.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

/// Most distinct statements kept (their parameters are inlined, so the same
/// query with other values counts again).
const MAX_STATEMENTS: usize = 10_000;

static STATEMENTS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// SQLite's trace callback: keeps `sql` (with its parameters inlined).
pub(crate) fn record(sql: &str) {
    let mut statements = STATEMENTS.lock().unwrap_or_else(PoisonError::into_inner);
    if statements.len() < MAX_STATEMENTS {
        statements.insert(sql.to_owned());
    }
}

/// The statements recorded so far in this process, sorted.
pub fn recorded() -> Vec<String> {
    let statements = STATEMENTS.lock().unwrap_or_else(PoisonError::into_inner);
    statements.iter().cloned().collect()
}
