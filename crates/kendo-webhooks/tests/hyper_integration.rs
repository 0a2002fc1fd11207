//! The layer in front of a plain hyper 1 service, served by hyper-util on a
//! real socket and called by a real HTTP client.

use kendo_test_support::delivery_server as common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{client, delivery, send};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use kendo_webhooks::{Delivery, KendoWebhookLayer};
use tower::{service_fn, ServiceBuilder};

type Seen = Arc<Mutex<Vec<(String, Bytes)>>>;

/// Serves the layer around a service that records each delivery's event id
/// and the body it read, on a free loopback port.
async fn start(seen: Seen) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = ServiceBuilder::new()
        .layer(KendoWebhookLayer::new(common::SECRET).unwrap())
        .service(service_fn(move |request: Request<Full<Bytes>>| {
            let seen = Arc::clone(&seen);
            async move {
                let delivery = request
                    .extensions()
                    .get::<Delivery>()
                    .cloned()
                    .expect("delivery");
                let body = request.into_body().collect().await?.to_bytes();
                seen.lock()
                    .unwrap()
                    .push((delivery.event_id().to_owned(), body));
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"stored"))))
            }
        }));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn hyper_service_receives_verified_deliveries_once() {
    let seen = Seen::default();
    let addr = start(Arc::clone(&seen)).await;
    let client = client();
    let url = format!("http://{addr}/anything");
    let signed = delivery("evt_hyper", "dlv_hyper");

    let first = send(&client, signed.request(&url).unwrap()).await;
    assert_eq!(
        (first.status, &first.body[..]),
        (StatusCode::OK, &b"stored"[..])
    );
    let retry = send(&client, signed.request(&url).unwrap()).await;
    assert_eq!(
        (retry.status, retry.reason(), retry.is_duplicate()),
        (StatusCode::OK, None, true)
    );

    let mut forged = delivery("evt_forged", "dlv_forged").request(&url).unwrap();
    forged.headers_mut().insert(
        "x-kendo-signature",
        kendo_webhooks::sign("guess", b"").parse().unwrap(),
    );
    let forged = send(&client, forged).await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "evt_hyper");
    assert_eq!(seen[0].1, signed.body(), "the service reads the raw body");
}
