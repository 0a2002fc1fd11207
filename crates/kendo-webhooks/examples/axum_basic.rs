//! Run with: `KENDO_WEBHOOK_SECRET=whsec_test cargo run --example axum_basic --features axum`
//!
//! Then send a delivery:
//! `cargo run -p kendo-webhook-cli -- send --url http://127.0.0.1:3000/webhooks/kendo --secret whsec_test`
//!
//! This file is the README's axum quick start, word for word (`tests/readme.rs` checks it).

use axum::routing::{get, post};
use axum::Router;
use kendo_webhooks::{Delivery, Event, KendoWebhookLayer};

async fn kendo(delivery: Delivery) -> &'static str {
    if let Event::CallUploaded(call) = delivery.event() {
        println!("call {} scored {:?}", call.call_id, call.ai_score); // aiScore as a number
    }
    "ok" // any 2xx marks the delivery done; a non-2xx lets Kendo's retry through
}

async fn health() -> &'static str {
    "ok"
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("KENDO_WEBHOOK_SECRET")
        .map_err(|_| "set KENDO_WEBHOOK_SECRET to the secret from Kendo's webhook settings")?;
    let layer = KendoWebhookLayer::new(secret)?; // an empty secret is refused here, saying so
    let app = Router::new()
        // The layer on the webhook's route only: `/health` and unknown paths stay untouched.
        .route("/webhooks/kendo", post(kendo).layer(layer))
        .route("/health", get(health));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app).await?;
    Ok(())
}

#[tokio::main]
async fn main() {
    if let Err(error) = run().await {
        eprintln!("error: {error}"); // a sentence, not `Error: NotPresent`
        std::process::exit(1);
    }
}
