//! The README's "Test your handler" snippet, word for word (`tests/readme.rs`
//! checks it): a user's own `#[tokio::test]`s with `TestDelivery`.

use axum::{body::to_bytes, http::StatusCode, routing::post, Router};
use kendo_webhooks::{CallUploaded, Delivery, Event, KendoWebhookLayer, TestDelivery};
use tower::ServiceExt; // oneshot

// Your handler and router, as in your application.
async fn kendo(delivery: Delivery) -> String {
    match delivery.event() {
        Event::CallUploaded(call) => format!("call {} scored {:?}", call.call_id, call.ai_score),
        _ => "ignored".to_owned(),
    }
}

fn app() -> Router {
    let layer = KendoWebhookLayer::new("whsec_test").expect("a non-empty secret");
    Router::new().route("/webhooks/kendo", post(kendo).layer(layer))
}

#[tokio::test]
async fn a_signed_call_reaches_the_handler_once() {
    let call = CallUploaded::builder("call_1")
        .agent_name("Ada")
        .ai_score(87.0)
        .build();
    let delivery = TestDelivery::new(call)
        .delivery_id("dlv_1")
        .sign("whsec_test");
    let app = app();

    let first = app
        .clone()
        .oneshot(delivery.request("/webhooks/kendo").unwrap())
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let body = to_bytes(first.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], b"call call_1 scored Some(87.0)");

    // Kendo's retry of the same delivery is answered by the layer, not the handler.
    let retry = app
        .oneshot(delivery.request("/webhooks/kendo").unwrap())
        .await
        .unwrap();
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(retry.headers()["x-kendo-webhook-duplicate"], "true");
}

#[tokio::test]
async fn a_delivery_signed_with_another_secret_is_refused() {
    let call = CallUploaded::builder("call_2").build();
    let request = TestDelivery::new(call)
        .sign("not-the-secret")
        .request("/webhooks/kendo")
        .unwrap();
    let response = app().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
