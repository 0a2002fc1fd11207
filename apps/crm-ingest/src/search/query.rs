//! The SQL of a list page: the filters as conditions (the trigram index
//! for `q` from three characters on), keyset pagination on `seq`, newest
//! first, on both backends.

use serde::Serialize;

use super::filters::Filters;
use crate::storage::{
    format_ms, CallRow, Cell, DeliveryRow, Param, ProjectedRow, Storage, StorageError, TestFilter,
    TrainingRow,
};

/// An unverified attempt (`/api/deliveries?verified=false`): its
/// signature did not verify, so its delivery id is a claim, not a fact.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnverifiedRow {
    /// `X-Kendo-Delivery-Id` as sent (unverified).
    pub delivery_id: Option<String>,
    /// Always `rejected`.
    pub outcome: String,
    /// Why (`invalid_signature`, `missing_signature`, …).
    pub reason: String,
    /// The status answered.
    pub status: u16,
    /// Always `false`.
    pub verified: bool,
    /// When it arrived (RFC 3339, UTC).
    pub received_at: String,
}

/// A page of one list: `(seq, row)`, newest first.
pub type Found<T> = Vec<(i64, T)>;

/// Adds the condition of `q` on `text` (a [`crate::search_text!`]
/// expression) of `table`.
fn add_q(conditions: &mut Conditions, storage: &Storage, table: &str, text: &str, q: &str) {
    if storage.is_postgres() {
        let pattern = format!("%{}%", like_escape(&q.to_lowercase()));
        conditions.add(
            format!("lower({text}) LIKE $? ESCAPE '\\'"),
            Some(Param::Text(pattern)),
        );
    } else if q.chars().count() >= 3 {
        // A phrase of trigrams: the substring, case-insensitive.
        conditions.drive_by_trigrams(table, trigram_phrase(q));
    } else {
        // Too short for trigrams: a scan, newest first, that stops after a
        // page.
        add_like(conditions, text, q);
    }
}

/// `q` as an FTS5 phrase: its trigrams in order, the substring.
fn trigram_phrase(q: &str) -> String {
    format!("\"{}\"", q.replace('"', "\"\""))
}

/// Adds `text LIKE %q%` (SQLite: ASCII case ignored).
fn add_like(conditions: &mut Conditions, text: &str, q: &str) {
    let pattern = format!("%{}%", like_escape(q));
    conditions.add(
        format!("{text} LIKE $? ESCAPE '\\'"),
        Some(Param::Text(pattern)),
    );
}

/// `text` matched literally by `LIKE … ESCAPE '\'`.
pub fn like_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// One list query's `FROM`, conditions (joined with `AND`, `$?` numbered
/// from `$2`; `$1` is the cursor) and order.
struct Conditions {
    /// The rows' source: the table, or (SQLite, a search of three
    /// characters or more) its trigram index driving the table.
    from: String,
    /// The column the cursor and the order are on.
    seq: String,
    sql: Vec<String>,
    params: Vec<Param>,
}

/// A query's parts, numbered.
struct Parts {
    from: String,
    conditions: String,
    order: String,
    params: Vec<Param>,
}

impl Conditions {
    fn new(table: &str, before: Option<i64>) -> Self {
        Self {
            from: table.to_owned(),
            seq: "seq".to_owned(),
            sql: Vec::new(),
            params: vec![Param::Int(before.unwrap_or(i64::MAX))],
        }
    }

    /// Reads the matches from `table`'s FTS5 trigram index, newest first,
    /// each joined to its row: the index drives (`CROSS JOIN` keeps it the
    /// outer loop) and consumes the order and the cursor, so a common word
    /// stops after one page and a rare one reads only its matches.
    fn drive_by_trigrams(&mut self, table: &str, phrase: String) {
        self.from =
            format!("{table}_search CROSS JOIN {table} ON {table}.seq = {table}_search.rowid");
        self.seq = format!("{table}_search.rowid");
        self.add(
            format!("{table}_search MATCH $?"),
            Some(Param::Text(phrase)),
        );
    }

    /// Ends these conditions, the first part of a `UNION`, and starts the
    /// next on `table`: its parameters are numbered after these, and `$1`,
    /// the cursor, is shared.
    fn then(self, table: &str) -> (Parts, Self) {
        let next = Self {
            params: self.params.clone(),
            ..Self::new(table, None)
        };
        (self.finish(), next)
    }

    fn add(&mut self, sql: impl Into<String>, param: Option<Param>) {
        let mut sql = sql.into();
        if let Some(param) = param {
            self.params.push(param);
            sql = sql.replace("$?", &format!("${}", self.params.len()));
        }
        self.sql.push(sql);
    }

    fn finish(mut self) -> Parts {
        self.sql.insert(0, format!("{} < $1", self.seq));
        Parts {
            from: self.from,
            conditions: self.sql.join(" AND "),
            order: format!("{} DESC", self.seq),
            params: self.params,
        }
    }
}

fn common(
    storage: &Storage,
    table: &str,
    text: &str,
    filters: &Filters,
    before: Option<i64>,
) -> Conditions {
    let mut conditions = Conditions::new(table, before);
    if let Some(q) = &filters.q {
        add_q(&mut conditions, storage, table, text, q);
    }
    add_period(&mut conditions, filters);
    conditions
}

/// Adds the `from`/`to` filters on `received_ms`.
fn add_period(conditions: &mut Conditions, filters: &Filters) {
    if let Some(from) = filters.from_ms {
        conditions.add("received_ms >= $?", Some(Param::Int(from)));
    }
    if let Some(to) = filters.to_ms {
        conditions.add("received_ms < $?", Some(Param::Int(to)));
    }
}

fn text(cells: &[Cell], i: usize) -> Option<String> {
    cells.get(i).and_then(Cell::text)
}

fn int(cells: &[Cell], i: usize) -> i64 {
    cells.get(i).and_then(Cell::int).unwrap_or(0)
}

fn real(cells: &[Cell], i: usize) -> Option<f64> {
    cells.get(i).and_then(Cell::real)
}

/// A page of calls or trainings, newest first: `(seq, row)`.
async fn projected(
    storage: &Storage,
    table: &'static str,
    id: &'static str,
    text_sql: &'static str,
    filters: &Filters,
    before: Option<i64>,
    limit: usize,
) -> Result<Found<ProjectedRow>, StorageError> {
    let mut conditions = common(storage, table, text_sql, filters, before);
    match filters.test {
        TestFilter::Exclude => conditions.add("is_test = $?", Some(Param::Bool(false))),
        TestFilter::Only => conditions.add("is_test = $?", Some(Param::Bool(true))),
        TestFilter::Include => {}
    }
    let Parts {
        from,
        conditions,
        order,
        params,
    } = conditions.finish();
    let sql = format!(
        "SELECT seq, event_id, {id}, agent_id, agent_name, user_id, team_member_user_id,
                duration, ai_score, timestamp, is_test, received_ms
         FROM {from} WHERE {conditions} ORDER BY {order} LIMIT {limit}"
    );
    let rows = storage.select("could not search", &sql, params).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let row = ProjectedRow {
                event_id: text(&r, 1).unwrap_or_default(),
                id: text(&r, 2).unwrap_or_default(),
                agent_id: text(&r, 3),
                agent_name: text(&r, 4),
                user_id: text(&r, 5),
                team_member_user_id: text(&r, 6),
                duration: real(&r, 7),
                ai_score: real(&r, 8),
                timestamp: text(&r, 9),
                is_test: int(&r, 10) != 0,
                received_ms: int(&r, 11),
            };
            (int(&r, 0), row)
        })
        .collect())
}

/// A page of calls matching `filters`.
pub async fn calls(
    storage: &Storage,
    filters: &Filters,
    before: Option<i64>,
    limit: usize,
) -> Result<Found<CallRow>, StorageError> {
    let rows = projected(
        storage,
        "calls",
        "call_id",
        crate::search_text!(call_id),
        filters,
        before,
        limit,
    )
    .await?;
    Ok(rows.into_iter().map(|(seq, r)| (seq, r.into())).collect())
}

/// A page of trainings matching `filters`.
pub async fn trainings(
    storage: &Storage,
    filters: &Filters,
    before: Option<i64>,
    limit: usize,
) -> Result<Found<TrainingRow>, StorageError> {
    let rows = projected(
        storage,
        "trainings",
        "training_id",
        crate::search_text!(training_id),
        filters,
        before,
        limit,
    )
    .await?;
    Ok(rows.into_iter().map(|(seq, r)| (seq, r.into())).collect())
}

/// The newest delivery-log `seq` SQLite's search index holds (schema
/// version 10; [`Storage::index_search`] fills it in bulk).
const INDEXED_UPTO: &str = "SELECT upto FROM search_indexed WHERE name = 'deliveries'";

/// The columns of a [`DeliveryRow`], after its `seq`.
const DELIVERY_COLUMNS: &str = "seq, delivery_id, event_id, event, outcome, reason, status, \
     secret_label, latency_ms, received_ms";

/// A page of the verified delivery log matching `filters`.
///
/// On SQLite, a search of three characters or more reads two parts in one
/// statement (one snapshot): the rows after the end of the search index,
/// which the bulk indexer has not reached yet (the newest, about a second
/// of the log), with `LIKE`; and the index for the rest. One statement, so
/// an index emptied and refilled meanwhile, or rows pruned, cannot make a
/// page miss rows or end early.
pub async fn deliveries(
    storage: &Storage,
    filters: &Filters,
    before: Option<i64>,
    limit: usize,
) -> Result<Found<DeliveryRow>, StorageError> {
    const TEXT: &str = crate::search_text!(deliveries);
    let by_trigrams = filters
        .q
        .as_deref()
        .filter(|q| !storage.is_postgres() && q.chars().count() >= 3);
    let (sql, params) = match by_trigrams {
        None => {
            let mut conditions = common(storage, "deliveries", TEXT, filters, before);
            add_log_filters(&mut conditions, filters);
            let Parts {
                from,
                conditions,
                order,
                params,
            } = conditions.finish();
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM {from} WHERE {conditions}
                 ORDER BY {order} LIMIT {limit}"
            );
            (sql, params)
        }
        Some(q) => {
            let mut tail = Conditions::new("deliveries", before);
            tail.add(format!("seq > ({INDEXED_UPTO})"), None);
            add_like(&mut tail, TEXT, q);
            add_period(&mut tail, filters);
            add_log_filters(&mut tail, filters);
            let (tail, mut indexed) = tail.then("deliveries");
            indexed.drive_by_trigrams("deliveries", trigram_phrase(q));
            indexed.add(format!("deliveries_search.rowid <= ({INDEXED_UPTO})"), None);
            add_period(&mut indexed, filters);
            add_log_filters(&mut indexed, filters);
            let indexed = indexed.finish();
            let sql = format!(
                "SELECT * FROM (SELECT {DELIVERY_COLUMNS} FROM {} WHERE {}
                     ORDER BY {} LIMIT {limit})
                 UNION ALL
                 SELECT * FROM (SELECT {DELIVERY_COLUMNS} FROM {} WHERE {}
                     ORDER BY {} LIMIT {limit})
                 ORDER BY 1 DESC LIMIT {limit}",
                tail.from,
                tail.conditions,
                tail.order,
                indexed.from,
                indexed.conditions,
                indexed.order
            );
            (sql, indexed.params)
        }
    };
    let rows = storage
        .select("could not search the delivery log", &sql, params)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                int(&r, 0),
                DeliveryRow {
                    delivery_id: text(&r, 1),
                    event_id: text(&r, 2),
                    event: text(&r, 3),
                    outcome: text(&r, 4).unwrap_or_default(),
                    reason: text(&r, 5),
                    status: u16::try_from(int(&r, 6)).unwrap_or(0),
                    secret_label: text(&r, 7),
                    latency_ms: real(&r, 8),
                    received_at: format_ms(int(&r, 9)),
                },
            )
        })
        .collect())
}

/// Adds the log's own filters: `event`, `outcome`, `reason`.
fn add_log_filters(conditions: &mut Conditions, filters: &Filters) {
    for (column, value) in [
        ("event", &filters.event),
        ("outcome", &filters.outcome),
        ("reason", &filters.reason),
    ] {
        if let Some(value) = value {
            conditions.add(format!("{column} = $?"), Some(Param::Text(value.clone())));
        }
    }
}

/// A page of unverified attempts matching `filters` (a bounded table:
/// `q` scans it).
pub async fn unverified(
    storage: &Storage,
    filters: &Filters,
    before: Option<i64>,
    limit: usize,
) -> Result<Found<UnverifiedRow>, StorageError> {
    let mut conditions = Conditions::new("unverified", before);
    if let Some(q) = &filters.q {
        let pattern = format!("%{}%", like_escape(&q.to_lowercase()));
        conditions.add(
            "lower(COALESCE(delivery_id, '') || ' | ' || reason) LIKE $? ESCAPE '\\'",
            Some(Param::Text(pattern)),
        );
    }
    if let Some(from) = filters.from_ms {
        conditions.add("received_ms >= $?", Some(Param::Int(from)));
    }
    if let Some(to) = filters.to_ms {
        conditions.add("received_ms < $?", Some(Param::Int(to)));
    }
    if let Some(reason) = &filters.reason {
        conditions.add("reason = $?", Some(Param::Text(reason.clone())));
    }
    if filters.outcome.as_deref().is_some_and(|o| o != "rejected") || filters.event.is_some() {
        // Unverified attempts are all rejected, and have no event.
        return Ok(Vec::new());
    }
    let Parts {
        from,
        conditions,
        order,
        params,
    } = conditions.finish();
    let sql = format!(
        "SELECT seq, delivery_id, reason, status, received_ms
         FROM {from} WHERE {conditions} ORDER BY {order} LIMIT {limit}"
    );
    let rows = storage
        .select("could not read the unverified attempts", &sql, params)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                int(&r, 0),
                UnverifiedRow {
                    delivery_id: text(&r, 1),
                    outcome: "rejected".to_owned(),
                    reason: text(&r, 2).unwrap_or_default(),
                    status: u16::try_from(int(&r, 3)).unwrap_or(0),
                    verified: false,
                    received_at: format_ms(int(&r, 4)),
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_escape_keeps_wildcards_literal() {
        assert_eq!(like_escape("a%b_c\\d"), "a\\%b\\_c\\\\d");
    }
}
