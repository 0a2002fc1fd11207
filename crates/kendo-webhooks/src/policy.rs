//! What the layer does when the de-duplication store fails: a file of its
//! own, so that the outcome a hook sees and the configuration that chose it
//! both depend on it, and not on each other.

/// What to do with a verified delivery when the de-duplication store fails.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StoreErrorPolicy {
    /// Process the delivery anyway (the default): losing an event is worse
    /// than a rare duplicate, which an idempotent sink absorbs.
    #[default]
    FailOpen,
    /// Answer 503 so Kendo retries later; never risks a duplicate, but
    /// deliveries are lost if the store stays down past Kendo's retries.
    FailClosed,
}
