//! The `metrics` feature records every outcome through the `metrics`
//! facade: a real recorder (metrics-util's debugging one) installed for
//! this test binary, and real HTTP.

use kendo_test_support::delivery_server as common;

use std::sync::atomic::Ordering;

use common::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, MetricKind};

/// One snapshot (taking it drains the histograms).
type Snapshot = Vec<(
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

/// The counter `name` with label `key=value`, 0 when absent.
fn counter(snapshot: &Snapshot, name: &str, key: &str, value: &str) -> u64 {
    snapshot
        .iter()
        .find_map(|(ck, _, _, v)| {
            let matches = ck.kind() == MetricKind::Counter
                && ck.key().name() == name
                && ck
                    .key()
                    .labels()
                    .any(|l| l.key() == key && l.value() == value);
            match (matches, v) {
                (true, DebugValue::Counter(n)) => Some(*n),
                _ => None,
            }
        })
        .unwrap_or(0)
}

fn histogram_len(snapshot: &Snapshot, name: &str, outcome: &str) -> usize {
    snapshot
        .iter()
        .find_map(|(ck, _, _, v)| match v {
            DebugValue::Histogram(values)
                if ck.key().name() == name
                    && ck
                        .key()
                        .labels()
                        .any(|l| l.key() == "outcome" && l.value() == outcome) =>
            {
                Some(values.len())
            }
            _ => None,
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn outcomes_are_counted_by_label_and_inner_latency_is_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let server = Server::start(|b| b).await;
    server.sink.fail_next.store(1, Ordering::SeqCst);
    let client = client();
    let d = delivery("evt_m", "dlv_m");
    deliver(&client, &server, &d).await; // inner_failed
    deliver(&client, &server, &d).await; // accepted
    deliver(&client, &server, &d).await; // duplicate
    let mut unsigned = d.request(&server.url()).unwrap();
    unsigned.headers_mut().remove("x-kendo-signature");
    send(&client, unsigned).await; // missing_signature

    let snapshot = snapshotter.snapshot().into_vec();
    let requests = "kendo_webhook_requests_total";
    let count = |outcome| counter(&snapshot, requests, "outcome", outcome);
    assert_eq!(count("accepted"), 1);
    assert_eq!(count("inner_failed"), 1);
    assert_eq!(count("duplicate"), 1);
    assert_eq!(count("missing_signature"), 1);
    assert_eq!(count("invalid_signature"), 0);
    let latency = "kendo_webhook_inner_duration_seconds";
    assert_eq!(histogram_len(&snapshot, latency, "accepted"), 1);
    assert_eq!(histogram_len(&snapshot, latency, "inner_failed"), 1);
}
