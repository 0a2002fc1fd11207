//! The layer in every place axum accepts one, and the `Delivery` extractor.

mod common;

use axum::routing::{get, post};
use axum::Router;
use common::{client, delivery, send, serve, SECRET};
use http::StatusCode;
use kendo_webhooks::{Delivery, Event, KendoWebhookLayer};

async fn handler(delivery: Delivery) -> String {
    match delivery.event() {
        Event::CallUploaded(call) => {
            format!("call {} from {}", call.call_id, delivery.delivery_id())
        }
        other => format!("other {other:?}"),
    }
}

async fn health() -> &'static str {
    "up"
}

fn layer() -> KendoWebhookLayer {
    KendoWebhookLayer::new(SECRET).unwrap()
}

/// Sends one valid and one forged delivery to `path`, and a GET to `/health`.
async fn exercise(router: Router, path: &str) -> (StatusCode, String, StatusCode, StatusCode) {
    let addr = serve(router).await;
    let client = client();
    let url = format!("http://{addr}{path}");
    let valid = send(
        &client,
        delivery("evt_axum", "dlv_axum").request(&url).unwrap(),
    )
    .await;
    let mut forged = delivery("evt_axum", "dlv_forged").request(&url).unwrap();
    forged
        .headers_mut()
        .insert("x-kendo-signature", "0".repeat(64).parse().unwrap());
    let forged = send(&client, forged).await;
    let health = send(
        &client,
        http::Request::get(format!("http://{addr}/health"))
            .body(Default::default())
            .unwrap(),
    )
    .await;
    (
        valid.status,
        String::from_utf8(valid.body.to_vec()).unwrap(),
        forged.status,
        health.status,
    )
}

#[tokio::test]
async fn router_layer_guards_every_route() {
    let router = Router::new()
        .route("/webhooks/kendo", post(handler))
        .route("/health", get(health))
        .layer(layer());
    let (status, body, forged, health) = exercise(router, "/webhooks/kendo").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "call call_evt_axum from dlv_axum")
    );
    assert_eq!(forged, StatusCode::UNAUTHORIZED);
    // `Router::layer` wraps every route, so a GET is refused by the layer.
    assert_eq!(health, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn route_layer_guards_only_the_routes_before_it() {
    let router = Router::new()
        .route("/webhooks/kendo", post(handler))
        .route_layer(layer())
        .route("/health", get(health));
    let (status, body, forged, health) = exercise(router, "/webhooks/kendo").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "call call_evt_axum from dlv_axum")
    );
    assert_eq!(forged, StatusCode::UNAUTHORIZED);
    assert_eq!(health, StatusCode::OK);
}

#[tokio::test]
async fn method_router_layer_guards_one_handler() {
    let router = Router::new()
        .route("/hooks", post(handler).layer(layer()))
        .route("/health", get(health));
    let (status, body, forged, health) = exercise(router, "/hooks").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "call call_evt_axum from dlv_axum")
    );
    assert_eq!(forged, StatusCode::UNAUTHORIZED);
    assert_eq!(health, StatusCode::OK);
}

#[tokio::test]
async fn the_extractor_without_the_layer_is_a_500_that_says_why() {
    let router = Router::new().route("/hooks", post(handler));
    let addr = serve(router).await;
    let url = format!("http://{addr}/hooks");
    let answer = send(&client(), delivery("evt_x", "dlv_x").request(&url).unwrap()).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    let text = String::from_utf8(answer.body.to_vec()).unwrap();
    assert!(
        text.contains("Perhaps you forgot to add KendoWebhookLayer"),
        "{text}"
    );
}
