//! What the app answered to a delivery: its status, its `x-kendo-*` headers
//! and the start of its body, and what they mean together.

use std::fmt;

use http::{HeaderMap, StatusCode};
use kendo_webhooks::{Rejection, DUPLICATE_HEADER, REJECTION_HEADER};

/// The inbox's answer header (`kendo-webhooks-inbox`'s `INBOX_HEADER`):
/// `stored`, `duplicate` or `unavailable`.
pub(crate) const INBOX_HEADER: &str = "x-kendo-inbox";
/// How much of a response body is shown.
pub(crate) const EXCERPT_LEN: usize = 200;

/// What an answer means for the delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verdict {
    /// 2xx and `x-kendo-inbox: stored`: committed to the app's inbox.
    Stored,
    /// 2xx, and the layer or the inbox says the delivery or event was
    /// already accepted: nothing new happened.
    Duplicate,
    /// 2xx without a header saying more.
    Accepted,
    /// Not 2xx: Kendo retries, then gives up.
    Failed,
}

impl Verdict {
    /// The verdict of `status` with `headers`.
    pub(crate) fn of(status: StatusCode, headers: &HeaderMap) -> Self {
        if !status.is_success() {
            return Self::Failed;
        }
        let value = |name: &str| headers.get(name).map(|v| v.as_bytes());
        let layer_duplicate = value(DUPLICATE_HEADER.as_str()) == Some(b"true");
        let inbox = value(INBOX_HEADER);
        if layer_duplicate || inbox.is_some_and(|v| v.eq_ignore_ascii_case(b"duplicate")) {
            Self::Duplicate
        } else if inbox.is_some_and(|v| v.eq_ignore_ascii_case(b"stored")) {
            Self::Stored
        } else {
            Self::Accepted
        }
    }

    /// The word printed for it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Duplicate => "duplicate",
            Self::Accepted => "accepted",
            Self::Failed => "failed",
        }
    }

    /// What it means, for the line after the last attempt.
    pub(crate) fn meaning(self) -> &'static str {
        match self {
            Self::Stored => "the app committed it to its inbox",
            Self::Duplicate => {
                "the app had already received this delivery or event; nothing new was processed"
            }
            Self::Accepted => "the app answered 2xx",
            Self::Failed => "the app did not answer 2xx",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer's `x-kendo-*` headers as `, name: value` pieces, the
/// rejection reason explained; empty when there are none.
pub(crate) fn kendo_headers(headers: &HeaderMap) -> String {
    let mut text = String::new();
    for (name, value) in headers {
        let name = name.as_str();
        if !name.starts_with("x-kendo-") {
            continue;
        }
        let value = printable(value.as_bytes());
        text.push_str(&format!(", {name}: {value}"));
        if name == REJECTION_HEADER.as_str() {
            if let Some(known) = Rejection::ALL.iter().find(|r| r.as_str() == value) {
                text.push_str(&format!(" ({})", known.description()));
            }
        }
    }
    text
}

/// The start of a body on one line, as `, body: …`; empty for an empty
/// body or one that repeats the layer's rejection text (`reason: …`).
pub(crate) fn excerpt(body: &[u8], headers: &HeaderMap) -> String {
    let cut = &body[..body.len().min(EXCERPT_LEN)];
    let text = printable(cut);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let repeats = headers
        .get(REJECTION_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|reason| {
            Rejection::ALL.iter().any(|r| r.as_str() == reason)
                && text.starts_with(&format!("{reason}:"))
        });
    match (text.is_empty() || repeats, body.len() > EXCERPT_LEN) {
        (true, _) => String::new(),
        (false, false) => format!(", body: {text}"),
        (false, true) => format!(", body: {text}…"),
    }
}

/// `bytes` as one line of text: invalid UTF-8 and control characters replaced.
pub(crate) fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn a_2xx_duplicate_from_the_layer_or_the_inbox_is_a_duplicate() {
        for pairs in [
            [("x-kendo-webhook-duplicate", "true")],
            [(INBOX_HEADER, "duplicate")],
        ] {
            assert_eq!(
                Verdict::of(StatusCode::OK, &headers(&pairs)),
                Verdict::Duplicate
            );
        }
        assert_eq!(
            Verdict::of(StatusCode::OK, &headers(&[(INBOX_HEADER, "stored")])),
            Verdict::Stored
        );
        assert_eq!(
            Verdict::of(StatusCode::NO_CONTENT, &HeaderMap::new()),
            Verdict::Accepted
        );
        assert_eq!(
            Verdict::of(
                StatusCode::SERVICE_UNAVAILABLE,
                &headers(&[(INBOX_HEADER, "unavailable")])
            ),
            Verdict::Failed
        );
    }

    #[test]
    fn only_kendo_headers_are_shown_and_rejections_are_explained() {
        let map = headers(&[
            ("content-type", "text/plain"),
            (INBOX_HEADER, "stored"),
            ("x-kendo-webhook-rejection", "invalid_signature"),
        ]);
        let text = kendo_headers(&map);
        assert!(
            text.starts_with(
                ", x-kendo-inbox: stored, x-kendo-webhook-rejection: invalid_signature ("
            ),
            "{text}"
        );
        assert!(!text.contains("content-type"), "{text}");
    }

    #[test]
    fn the_excerpt_is_one_short_line() {
        let map = HeaderMap::new();
        assert_eq!(excerpt(b"", &map), "");
        assert_eq!(excerpt(b"ok\n\tdone", &map), ", body: ok done");
        let long = vec![b'a'; EXCERPT_LEN + 5];
        assert!(excerpt(&long, &map).ends_with('…'));
    }
}
