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
                                         // Accepted, with an `aiScore` that is no number and a field never seen.
    let drifted = kendo_webhooks::SignedDelivery::builder(r#"{"id":"evt_m_drift","event":"call.uploaded","created_at":"2026-03-05T12:00:00Z","data":{"callId":"c1","agentId":"a1","agentName":"Ada","userId":"u1","teamMemberUserId":"m1","duration":245.5,"aiScore":"abc","timestamp":"2026-03-05T12:00:00Z","sentiment":"positive"}}"#).event("call.uploaded").delivery_id("dlv_m_drift").sign(SECRET);
    deliver(&client, &server, &drifted).await; // accepted, drifted
    let mut unsigned = d.request(&server.url()).unwrap();
    unsigned.headers_mut().remove("x-kendo-signature");
    send(&client, unsigned).await; // missing_signature

    let snapshot = snapshotter.snapshot().into_vec();
    let requests = "kendo_webhook_requests_total";
    let count = |outcome| counter(&snapshot, requests, "outcome", outcome);
    assert_eq!(count("accepted"), 2);
    assert_eq!(count("inner_failed"), 1);
    let drift = |field: &str, kind: &str| {
        snapshot
            .iter()
            .filter(|(ck, _, _, _)| {
                let labels: Vec<(&str, &str)> =
                    ck.key().labels().map(|l| (l.key(), l.value())).collect();
                ck.key().name() == "kendo_webhook_schema_drift_total"
                    && labels.contains(&("event", "call.uploaded"))
                    && labels.contains(&("field", field))
                    && labels.contains(&("kind", kind))
            })
            .map(|(_, _, _, v)| match v {
                DebugValue::Counter(n) => *n,
                _ => 0,
            })
            .sum::<u64>()
    };
    assert_eq!(drift("aiScore", "other_type"), 1);
    assert_eq!(drift("sentiment", "new"), 1);
    // The clean delivery `d` drifted in nothing.
    assert_eq!(drift("callId", "missing"), 0);
    assert_eq!(count("duplicate"), 1);
    assert_eq!(count("missing_signature"), 1);
    assert_eq!(count("invalid_signature"), 0);
    let latency = "kendo_webhook_inner_duration_seconds";
    assert_eq!(histogram_len(&snapshot, latency, "accepted"), 2);
    assert_eq!(histogram_len(&snapshot, latency, "inner_failed"), 1);
}

/// Each metric carries its unit and HELP text, registered when the layer is
/// built (a Prometheus exporter prints them as `# HELP` and `# UNIT`).
fn described(snapshot: &Snapshot, name: &str) -> (Option<metrics::Unit>, String) {
    snapshot
        .iter()
        .find(|(ck, _, _, _)| ck.key().name() == name)
        .map(|(_, unit, help, _)| (*unit, help.as_deref().unwrap_or_default().to_owned()))
        .unwrap_or_else(|| panic!("{name} not in the snapshot"))
}

#[test]
fn metrics_are_described_with_units_and_help() {
    // This test binary installs its recorder in the async test; units and
    // HELP texts are checked on a local recorder instead.
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        kendo_webhooks::KendoWebhookLayer::new(SECRET).unwrap();
        metrics::counter!("kendo_webhook_requests_total", "outcome" => "accepted").increment(0);
        metrics::counter!("kendo_webhook_store_errors_total", "operation" => "claim").increment(0);
        metrics::histogram!("kendo_webhook_inner_duration_seconds", "outcome" => "accepted")
            .record(0.0);
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let (unit, help) = described(&snapshot, "kendo_webhook_requests_total");
    assert_eq!(unit, Some(metrics::Unit::Count));
    assert!(help.contains("rejection reason"), "{help}");
    let (unit, help) = described(&snapshot, "kendo_webhook_inner_duration_seconds");
    assert_eq!(unit, Some(metrics::Unit::Seconds));
    assert!(help.contains("inner service"), "{help}");
    let (unit, help) = described(&snapshot, "kendo_webhook_store_errors_total");
    assert_eq!(unit, Some(metrics::Unit::Count));
    assert!(help.contains("store"), "{help}");
}
