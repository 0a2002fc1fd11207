//! Run with: `KENDO_WEBHOOK_SECRET=whsec_test cargo run --example hyper_service`
//!
//! Then send a delivery:
//! `cargo run --features cli --bin kendo-webhook -- send --url http://127.0.0.1:3001/ --secret whsec_test`
//!
//! The layer in front of a plain hyper 1 service, without axum: tower's
//! `ServiceBuilder` adds it, hyper-util adapts the result for hyper.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use kendo_webhooks::{Delivery, KendoWebhookLayer};
use tower::{service_fn, ServiceBuilder};

async fn handle(request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    // The layer only calls us with a verified delivery in the extensions.
    let delivery = request.extensions().get::<Delivery>().cloned();
    if let Some(delivery) = delivery {
        println!(
            "{} {} ({} bytes)",
            delivery.event_name(),
            delivery.event_id(),
            delivery.body().len()
        );
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("KENDO_WEBHOOK_SECRET")
        .map_err(|_| "set KENDO_WEBHOOK_SECRET to the secret from Kendo's webhook settings")?;
    let service = ServiceBuilder::new()
        .layer(KendoWebhookLayer::new(secret)?)
        .service(service_fn(handle));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!("listening on http://{}/", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
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
