//! The layer in every place axum accepts one, and the `Delivery` extractor.

use kendo_test_support::delivery_server as common;

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

/// Sends one valid and one forged delivery to `path`, and a GET to
/// `/health`: the valid one reaches the handler, the forged one is refused,
/// and `/health` answers `health_status`.
async fn assert_guarded(router: Router, path: &str, health_status: StatusCode) {
    let addr = serve(router).await;
    let client = client();
    let url = format!("http://{addr}{path}");
    let valid = send(
        &client,
        delivery("evt_axum", "dlv_axum").request(&url).unwrap(),
    )
    .await;
    assert_eq!(valid.status, StatusCode::OK);
    assert_eq!(&valid.body[..], b"call call_evt_axum from dlv_axum");

    let mut forged = delivery("evt_axum", "dlv_forged").request(&url).unwrap();
    forged
        .headers_mut()
        .insert("x-kendo-signature", "0".repeat(64).parse().unwrap());
    assert_eq!(send(&client, forged).await.status, StatusCode::UNAUTHORIZED);

    let health = http::Request::get(format!("http://{addr}/health"))
        .body(Default::default())
        .unwrap();
    assert_eq!(send(&client, health).await.status, health_status);
}

#[tokio::test]
async fn router_layer_guards_every_route() {
    let router = Router::new()
        .route("/webhooks/kendo", post(handler))
        .route("/health", get(health))
        .layer(layer());
    // `Router::layer` wraps every route, so a GET is refused by the layer.
    assert_guarded(router, "/webhooks/kendo", StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn route_layer_guards_only_the_routes_before_it() {
    let router = Router::new()
        .route("/webhooks/kendo", post(handler))
        .route_layer(layer())
        .route("/health", get(health));
    assert_guarded(router, "/webhooks/kendo", StatusCode::OK).await;
}

#[tokio::test]
async fn method_router_layer_guards_one_handler() {
    let router = Router::new()
        .route("/hooks", post(handler).layer(layer()))
        .route("/health", get(health));
    assert_guarded(router, "/hooks", StatusCode::OK).await;
}

/// The README's second placement: a nested router holding only the webhook.
#[tokio::test]
async fn nested_router_layer_guards_only_the_nested_routes() {
    let webhooks = Router::new().route("/kendo", post(handler)).layer(layer());
    let router = Router::new()
        .nest("/webhooks", webhooks)
        .route("/health", get(health));
    assert_guarded(router, "/webhooks/kendo", StatusCode::OK).await;
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

#[tokio::test]
async fn an_optional_delivery_is_none_without_the_layer() {
    async fn maybe(delivery: Option<Delivery>) -> String {
        delivery.map_or("no delivery".to_owned(), |d| d.event_id().to_owned())
    }
    let router = Router::new()
        .route("/guarded", post(maybe).layer(layer()))
        .route("/open", post(maybe));
    let addr = serve(router).await;
    let client = client();
    for (path, expected) in [("/guarded", "evt_opt"), ("/open", "no delivery")] {
        let url = format!("http://{addr}{path}");
        let answer = send(
            &client,
            delivery("evt_opt", "dlv_opt").request(&url).unwrap(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert_eq!(&answer.body[..], expected.as_bytes(), "{path}");
    }
}
