//! Run with: `KENDO_WEBHOOK_SECRET=whsec_test cargo run --example axum_basic --features axum`
//!
//! Then send a delivery:
//! `cargo run --features cli --bin kendo-webhook -- send --url http://127.0.0.1:3000/webhooks/kendo --secret whsec_test`
//!
//! A minimal receiver: the layer verifies, de-duplicates and types every
//! delivery; the handler only sees new, verified ones.

use axum::routing::post;
use axum::Router;
use kendo_webhooks::{Delivery, Event, KendoWebhookLayer};

async fn kendo(delivery: Delivery) -> &'static str {
    match delivery.event() {
        Event::CallUploaded(call) => println!(
            "call {} by {} scored {:?} (test: {})",
            call.call_id,
            call.agent_name.as_deref().unwrap_or("?"),
            call.ai_score,
            delivery.is_test()
        ),
        Event::AiTrainingCompleted(training) => {
            println!(
                "training {} scored {:?}",
                training.training_id, training.ai_score
            )
        }
        other => println!("event not handled yet: {other:?}"),
    }
    // Answering 2xx marks the delivery done: Kendo's retries are dropped.
    "ok"
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("KENDO_WEBHOOK_SECRET")
        .map_err(|_| "set KENDO_WEBHOOK_SECRET to the secret from Kendo's webhook settings")?;
    let layer = KendoWebhookLayer::builder()
        .secret(secret)
        .on_reject(|rejected| {
            eprintln!(
                "rejected {:?}: {}",
                rejected.delivery_id(),
                rejected.reason()
            )
        })
        .build()?;
    let app = Router::new().route("/webhooks/kendo", post(kendo).layer(layer));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!(
        "listening on http://{}/webhooks/kendo",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
