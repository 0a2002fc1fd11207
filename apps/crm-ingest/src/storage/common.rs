//! The queries that are the same on both backends, from `sql/common/`:
//! written with `$n` placeholders, which SQLite reads as `?n`.

/// Adds one Kendo payload change's count.
pub(super) const UPSERT_PAYLOAD_CHANGE: &str =
    include_str!("../../sql/common/upsert_payload_change.sql");
/// Adds one reason's unverified rejections in one minute.
pub(super) const UPSERT_REJECTION: &str = include_str!("../../sql/common/upsert_rejection.sql");
/// Keeps the newest verified log entries.
pub(super) const PRUNE_DELIVERIES: &str = include_str!("../../sql/common/prune_deliveries.sql");
/// Keeps the newest unverified attempts.
pub(super) const PRUNE_UNVERIFIED: &str = include_str!("../../sql/common/prune_unverified.sql");
/// Drops the rejection counts of old minutes.
pub(super) const PRUNE_REJECTIONS: &str = include_str!("../../sql/common/prune_rejections.sql");
/// A page of the verified delivery log.
pub(super) const DELIVERIES_PAGE: &str = include_str!("../../sql/common/deliveries_page.sql");
/// The newest per-minute rejection counts.
pub(super) const REJECTIONS_PAGE: &str = include_str!("../../sql/common/rejections_page.sql");
/// Table sizes.
pub(super) const COUNTS: &str = include_str!("../../sql/common/counts.sql");
