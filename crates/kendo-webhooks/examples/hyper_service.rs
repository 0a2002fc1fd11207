//! Run with: `KENDO_WEBHOOK_SECRET=whsec_test cargo run --example hyper_service`
//!
//! Then send a delivery:
//! `cargo run -p kendo-webhook-cli -- send --url http://127.0.0.1:3001/webhooks/kendo --secret whsec_test`
//!
//! This file is the README's hyper quick start, word for word (`tests/readme.rs` checks it).

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use kendo_webhooks::{Delivery, KendoWebhookLayer};
use tower::{service_fn, ServiceBuilder, ServiceExt};

/// The webhook handler: the layer calls it only with a new, verified delivery.
async fn kendo(request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let delivery = request
        .extensions()
        .get::<Delivery>()
        .expect("set by the layer");
    println!("{} {}", delivery.event_name(), delivery.event_id());
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

fn text(status: StatusCode, text: &'static str) -> Response<BoxBody<Bytes, Infallible>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    *response.status_mut() = status;
    response
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("KENDO_WEBHOOK_SECRET")
        .map_err(|_| "set KENDO_WEBHOOK_SECRET to the secret from Kendo's webhook settings")?;
    let webhook = ServiceBuilder::new()
        .layer(KendoWebhookLayer::new(secret)?)
        .service(service_fn(kendo));
    // Dispatch by path: only the webhook's path goes through the layer.
    let app = service_fn(move |request: Request<Incoming>| {
        let webhook = webhook.clone();
        async move {
            match (request.method(), request.uri().path()) {
                (_, "/webhooks/kendo") => Ok(webhook.oneshot(request).await?.map(BodyExt::boxed)),
                (&Method::GET, "/health") => Ok(text(StatusCode::OK, "ok")),
                _ => Ok::<_, Infallible>(text(StatusCode::NOT_FOUND, "not found")),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection error: {error}");
            }
        });
    }
}

#[tokio::main]
async fn main() {
    if let Err(error) = run().await {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}
