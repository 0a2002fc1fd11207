//! Each rejection reason said for people: what happened, and what to do.
//! The reason codes are the library's `Rejection` names, plus the app's
//! `inner_status` (the inbox could not commit) and `inbox_duplicate`.

/// What a reason means, and the action to take.
pub fn explain(reason: &str) -> (&'static str, &'static str) {
    match reason {
        "invalid_signature" => (
            "The signature does not match the body: the secrets differ, or something changed the body on the way.",
            "Compare KENDO_WEBHOOK_SECRET with the secret in Kendo's webhook settings; during a rotation put the old one in KENDO_WEBHOOK_SECRET_PREVIOUS.",
        ),
        "missing_signature" | "malformed_signature" => (
            "The request carries no usable X-Kendo-Signature: it is not from Kendo, or a proxy dropped the header.",
            "Nothing, if it is not Kendo (a scanner); else let the proxy pass X-Kendo-* headers.",
        ),
        "missing_delivery_id" | "malformed_delivery_id" | "missing_event_header"
        | "malformed_event_header" => (
            "A Kendo header is missing or malformed.",
            "Let the proxy in front pass the X-Kendo-* headers unchanged.",
        ),
        "unsupported_media_type" | "unsupported_encoding" => (
            "The body is not plain JSON (another content type, or compressed).",
            "Point Kendo straight at this URL; a proxy must not re-encode the body.",
        ),
        "body_budget_exhausted" => (
            "Too many bodies were being read at once: this one was refused to protect memory.",
            "Nothing if rare (Kendo retries); else add replicas or raise the budget.",
        ),
        "payload_too_large" => (
            "The body is larger than this server accepts.",
            "Check what sends such bodies; raise the body limit only for a real Kendo event.",
        ),
        "body_read_failed" | "body_timeout" | "body_too_slow" | "body_not_started" => (
            "The body did not arrive whole or in time.",
            "Usually the network; Kendo retries. Look at the proxy if it keeps happening.",
        ),
        "malformed_envelope" => (
            "A verified body that this build cannot read (not the id/event/created_at/data envelope, a number out of range, nesting too deep).",
            "Open the delivery to see its body; after a fix, replay it from its page.",
        ),
        "event_mismatch" => (
            "The X-Kendo-Event header names another event than the signed body.",
            "Report it to Kendo with the delivery id; the body is kept on its page.",
        ),
        "missing_object_id" => (
            "A known event without its own id (callId, trainingId).",
            "Open the delivery to see what Kendo sent; report it to Kendo.",
        ),
        "outside_replay_window" => (
            "created_at is too far from this server's clock.",
            "Check the server's clock (NTP); Kendo retries.",
        ),
        "duplicate" | "inbox_duplicate" => (
            "A retry of a delivery already stored: answered 200 and not stored twice.",
            "Nothing: Kendo retries when an answer is slow or lost.",
        ),
        "in_flight" => (
            "The same delivery was being stored at that moment.",
            "Nothing: Kendo's next retry finds it done.",
        ),
        "store_unavailable" | "inner_status" => (
            "The database could not store the delivery; Kendo was told to retry.",
            "Check /healthz and the database; nothing is lost while Kendo retries.",
        ),
        "method_not_allowed" => (
            "Not a POST: a browser or a scanner, not Kendo.",
            "Nothing.",
        ),
        _ => (
            "Refused by the webhook layer.",
            "Open a delivery with this reason to see what was answered.",
        ),
    }
}
