//! With the `tracing` feature, each delivery gets one span with its ids,
//! event name and outcome, and neither the secret nor a signature is logged.

use kendo_test_support::delivery_server as common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{client, deliver, delivery, Server, SECRET};
use kendo_webhooks::{sign, SignedDelivery};

/// Collects everything the fmt subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_carry_ids_and_outcome_but_never_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .init();

    let server = Server::start(|b| b).await;
    let client = client();
    let real = delivery("evt_traced", "dlv_traced");
    let forged = SignedDelivery::builder(real.body().clone())
        .event("call.uploaded")
        .delivery_id("dlv_forged_traced")
        .sign("guess");
    deliver(&client, &server, &real).await;
    deliver(&client, &server, &real).await;
    deliver(&client, &server, &forged).await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = |needle: &str| {
        logs.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{logs}"))
            .to_owned()
    };
    let accepted = line("delivery accepted");
    for field in [
        "kendo_webhook{",
        "delivery_id=\"dlv_traced\"",
        "event_id=\"evt_traced\"",
        "event=\"call.uploaded\"",
        "outcome=\"accepted\"",
        "status=200",
    ] {
        assert!(accepted.contains(field), "{field} missing from {accepted}");
    }
    assert!(line("outcome=\"duplicate\"").contains("event_id=\"evt_traced\""));
    let forged_line = line("delivery_id=\"dlv_forged_traced\"");
    assert!(forged_line.contains("invalid_signature"), "{forged_line}");

    assert!(!logs.contains(SECRET), "the secret was logged:\n{logs}");
    for signature in [
        real.signature().to_owned(),
        forged.signature().to_owned(),
        sign(SECRET, forged.body()),
    ] {
        assert!(
            !logs.contains(&signature),
            "a signature was logged:\n{logs}"
        );
    }
}

#[tokio::test]
async fn a_delivery_the_inner_service_fails_is_recorded_as_inner_failed() {
    // This thread's events only: the runtime of this test runs on it.
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = Server::start(|b| b).await;
    server
        .sink
        .fail_next
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let answer = deliver(&client(), &server, &delivery("evt_failed", "dlv_failed")).await;
    assert_eq!(answer.status, 500);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let failed = logs
        .lines()
        .find(|l| l.contains("delivery_id=\"dlv_failed\""))
        .unwrap_or_else(|| panic!("no line for dlv_failed in:\n{logs}"));
    assert!(failed.contains("outcome=\"inner_failed\""), "{failed}");
    assert!(failed.contains("status=500"), "{failed}");
    assert!(!logs.contains("delivery accepted"), "{logs}");
}

/// A known event whose `data` differs from the typed schema carries the
/// drifted fields on its span; one that matches carries none.
#[tokio::test]
async fn schema_drift_is_recorded_on_the_span() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = Server::start(|b| b).await;
    let body = r#"{"id":"evt_drift","event":"call.uploaded","created_at":"2026-03-05T12:00:00Z","data":{"callId":"c1","agentId":"a1","agentName":"Ada","userId":"u1","teamMemberUserId":"m1","duration":245.5,"aiScore":"abc","timestamp":"2026-03-05T12:00:00Z","sentiment":"positive"}}"#;
    let drifted = SignedDelivery::builder(body)
        .event("call.uploaded")
        .delivery_id("dlv_drift")
        .sign(SECRET);
    assert_eq!(deliver(&client(), &server, &drifted).await.status, 200);
    deliver(&client(), &server, &delivery("evt_clean", "dlv_clean")).await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = |id: &str| {
        logs.lines()
            .find(|l| l.contains(&format!("delivery_id=\"{id}\"")) && l.contains("accepted"))
            .unwrap_or_else(|| panic!("no accepted line for {id} in:\n{logs}"))
            .to_owned()
    };
    let drift_line = line("dlv_drift");
    assert!(
        drift_line.contains("schema_drift=\"aiScore:other_type,sentiment:new\""),
        "{drift_line}"
    );
    assert!(!line("dlv_clean").contains("schema_drift"), "{logs}");
}
