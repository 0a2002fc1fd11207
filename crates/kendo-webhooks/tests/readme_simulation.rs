//! The README's simulation snippet, built and run as a test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::{http::StatusCode, routing::post, Extension, Router};
use kendo_webhooks::simulate::Simulation;
use kendo_webhooks::{Delivery, KendoWebhookLayer};

type Calls = Arc<Mutex<HashMap<String, usize>>>; // your table, keyed by event id

async fn kendo(
    Extension(calls): Extension<Calls>,
    Extension(d): Extension<Delivery>,
) -> StatusCode {
    // Idempotent on the event id: `+= 1` here instead is caught as "applied twice".
    calls
        .lock()
        .unwrap()
        .entry(d.event_id().to_owned())
        .or_insert(1);
    tokio::task::yield_now().await; // an await after the effect: a cancellation point
    StatusCode::OK
}

#[tokio::test(start_paused = true)] // the layer's waits cost no real time
async fn my_handler_survives_kendos_worst_day() {
    let calls = Calls::default();
    let layer = KendoWebhookLayer::new("whsec_test").unwrap();
    let app = Router::new()
        .route("/webhooks/kendo", post(kendo).layer(layer))
        .layer(Extension(calls.clone()));

    let report = Simulation::new("whsec_test")
        .seed(7)
        .events(1_000)
        .run(app, move || calls.lock().unwrap().clone())
        .await;
    report.assert_ok(); // panics listing each finding and `Simulation::seed(7)`
}
