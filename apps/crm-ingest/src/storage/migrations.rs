//! The CRM's schema versions, one script per version and dialect in
//! `sql/{sqlite,postgres}/migrations/` (`sql/common/migrations/` when both
//! are the same). Append new versions; never edit one: a database records
//! the versions it ran in `crm_schema`, and each backend runs the missing
//! ones in order, in one transaction.

/// The newest schema version; a database with a newer one is refused.
pub(super) const SCHEMA_VERSION: i64 = 11;

/// The number of versions, as an array length (a version added without
/// raising [`SCHEMA_VERSION`] does not compile).
const VERSIONS: usize = SCHEMA_VERSION as usize;

/// The SQLite scripts, version 1 first.
pub(super) const SQLITE: [&str; VERSIONS] = [
    include_str!("../../sql/sqlite/migrations/001_crm_tables.sql"),
    include_str!("../../sql/sqlite/migrations/002_unverified_attempts.sql"),
    include_str!("../../sql/sqlite/migrations/003_dashboard_aggregates.sql"),
    include_str!("../../sql/sqlite/migrations/004_payload_changes.sql"),
    include_str!("../../sql/common/migrations/005_raw_bodies.sql"),
    include_str!("../../sql/sqlite/migrations/006_search_indexes.sql"),
    include_str!("../../sql/common/migrations/007_agent_indexes.sql"),
    include_str!("../../sql/sqlite/migrations/008_outbox.sql"),
    include_str!("../../sql/sqlite/migrations/009_arrivals.sql"),
    include_str!("../../sql/sqlite/migrations/010_log_search_in_bulk.sql"),
    include_str!("../../sql/sqlite/migrations/011_agent_quarters.sql"),
];

/// The Postgres scripts, version 1 first.
pub(super) const POSTGRES: [&str; VERSIONS] = [
    include_str!("../../sql/postgres/migrations/001_crm_tables.sql"),
    include_str!("../../sql/postgres/migrations/002_unverified_attempts.sql"),
    include_str!("../../sql/postgres/migrations/003_dashboard_aggregates.sql"),
    include_str!("../../sql/postgres/migrations/004_payload_changes.sql"),
    include_str!("../../sql/common/migrations/005_raw_bodies.sql"),
    include_str!("../../sql/postgres/migrations/006_search_indexes.sql"),
    include_str!("../../sql/common/migrations/007_agent_indexes.sql"),
    include_str!("../../sql/postgres/migrations/008_outbox.sql"),
    include_str!("../../sql/postgres/migrations/009_arrivals.sql"),
    include_str!("../../sql/postgres/migrations/010_log_search_in_bulk.sql"),
    include_str!("../../sql/postgres/migrations/011_agent_quarters.sql"),
];

/// The Postgres version whose indexes need the `pg_trgm` extension: without
/// it, the version is recorded without them and searches scan.
pub(super) const POSTGRES_TRIGRAM: i64 = 6;

/// The scripts with their version numbers, oldest first.
pub(super) fn versions(
    scripts: &'static [&'static str],
) -> impl Iterator<Item = (i64, &'static str)> {
    (1..).zip(scripts.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` with each run of whitespace as one space.
    fn squeezed(text: &str) -> String {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    fn occurrences(script: &str, expression: &str) -> usize {
        squeezed(script).matches(&squeezed(expression)).count()
    }

    #[test]
    fn the_search_indexes_hold_the_text_the_searches_look_in() {
        // The scripts write `search_text!` out; a search whose text differs
        // from its index's would miss it (SQLite) or scan (Postgres).
        let sqlite = SQLITE[5];
        let postgres = POSTGRES[5];
        for expression in [
            crate::search_text!(call_id),
            crate::search_text!(training_id),
            crate::search_text!(deliveries),
        ] {
            assert_eq!(occurrences(sqlite, expression), 2, "{expression}");
            assert_eq!(occurrences(postgres, expression), 1, "{expression}");
        }
        assert_eq!(squeezed(sqlite).matches("SELECT seq, (").count(), 6);
        assert_eq!(squeezed(postgres).matches("gin (lower( (").count(), 3);
    }
}
