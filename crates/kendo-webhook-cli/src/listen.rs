//! `kendo-webhook listen`: a local receiver that runs every request through
//! the crate's layer, prints the verdict, and forwards verified deliveries.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    CONNECTION, CONTENT_LENGTH, HOST, PROXY_AUTHENTICATE, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderName, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use kendo_webhooks::{Delivery, KendoWebhookLayer, Outcome, Rejection, Report};
use tower_layer::Layer;
use tower_service::Service;

use crate::answer::{self, Verdict};
use crate::send::{chain, parse_url, shown_url};
use crate::{secrets, ListenArgs, UsageError};

/// How long the app behind `--forward-to` may take, as Kendo would wait.
const FORWARD_TIMEOUT: Duration = crate::schedule::ATTEMPT_TIMEOUT;
/// The most of the app's answer body passed back to the sender.
const MAX_ANSWER_BODY: usize = 64 * 1024;

/// Headers about one connection, not the answer: never copied between the
/// app's answer and the sender's.
const HOP_BY_HOP: [HeaderName; 7] = [
    CONNECTION,
    CONTENT_LENGTH,
    HOST,
    PROXY_AUTHENTICATE,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
];

pub(crate) fn listen(args: ListenArgs) -> Result<ExitCode, UsageError> {
    let secrets = secrets(&args.secret, &args.previous)?;
    let labels: Vec<String> = secrets
        .iter()
        .filter_map(|s| s.label().map(str::to_owned))
        .collect();
    let forward_to = args
        .forward_to
        .as_deref()
        .map(|url| parse_url("--forward-to", url))
        .transpose()?;
    let forward_note = match &forward_to {
        Some(url) => format!(
            "forwarding verified deliveries, unchanged, to {}",
            shown_url(url)
        ),
        None => "answering 200 to verified deliveries (no --forward-to)".to_owned(),
    };
    let mut builder = KendoWebhookLayer::builder().on_outcome(print_rejected);
    for secret in secrets {
        builder = builder.secret(secret);
    }
    let layer = builder.build().map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .timeout(FORWARD_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", chain(e)))?;
    let service = layer.layer(Forward {
        to: forward_to.map(Arc::new),
        client,
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot read the listening address: {e}"))?;
        println!(
            "listening on http://{addr}/ (any path), verifying with secret {}",
            labels.join(" and ")
        );
        println!("{forward_note}");
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    eprintln!("kendo-webhook: accept failed: {e}");
                    continue;
                }
            };
            let service = service.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let mut service = service.clone();
                    async move {
                        std::future::poll_fn(|cx| {
                            Service::<Request<Incoming>>::poll_ready(&mut service, cx)
                        })
                        .await?;
                        service.call(request).await
                    }
                });
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    eprintln!("kendo-webhook: connection error: {e}");
                }
            });
        }
    })
}

/// `HH:MM:SS` in UTC, to tell deliveries apart when reading the log.
fn clock() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{:02}:{:02}:{:02}", now.hour(), now.minute(), now.second())
}

/// The layer's `on_outcome` hook: one line per request it answered itself.
fn print_rejected(report: &Report<'_>) {
    let ids = format!(
        "event {}  delivery {}",
        report.event_id().unwrap_or("-"),
        report.delivery_id().unwrap_or("-")
    );
    let reason = match *report.outcome() {
        Outcome::Rejected(reason) => reason,
        Outcome::Duplicate => {
            return println!(
                "{} duplicate  {}  {ids}  secret {}: already processed (not forwarded)",
                clock(),
                report.event_name().unwrap_or("-"),
                report.secret_label().unwrap_or("-"),
            )
        }
        _ => return,
    };
    match reason {
        Rejection::InFlight => println!(
            "{} {}  {}  {ids}  secret {}: {} (not forwarded)",
            clock(),
            reason.as_str(),
            report.event_name().unwrap_or("-"),
            report.secret_label().unwrap_or("-"),
            reason.description(),
        ),
        _ => println!(
            "{} rejected  {} {}  {ids}: {}",
            clock(),
            reason.status().as_u16(),
            reason.as_str(),
            reason.description()
        ),
    }
}

/// The inner service: prints each verified delivery and forwards it.
#[derive(Clone)]
struct Forward {
    to: Option<Arc<reqwest::Url>>,
    client: reqwest::Client,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

impl Service<Request<Full<Bytes>>> for Forward {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(request).await) })
    }
}

impl Forward {
    async fn handle(self, request: Request<Full<Bytes>>) -> Response<Full<Bytes>> {
        let Some(delivery) = request.extensions().get::<Delivery>().cloned() else {
            // The layer always sets it; answer 500 rather than guess.
            return text(StatusCode::INTERNAL_SERVER_ERROR, "no verified delivery");
        };
        let ids = format!(
            "{}  event {}  delivery {}  secret {}{}",
            delivery.event_name(),
            delivery.event_id(),
            delivery.delivery_id(),
            delivery.secret_label().unwrap_or("-"),
            if delivery.is_test() { "  (test)" } else { "" }
        );
        let Some(to) = &self.to else {
            println!("{} accepted  {ids}  -> 200", clock());
            return text(StatusCode::OK, "ok");
        };
        let mut headers = request.headers().clone();
        for hop in HOP_BY_HOP.iter().chain([&UPGRADE]) {
            headers.remove(hop);
        }
        let sent = self
            .client
            .post(to.as_ref().clone())
            .headers(headers)
            .body(delivery.body().clone())
            .send()
            .await;
        let shown = shown_url(to);
        match sent {
            Ok(mut answer) => {
                let status = answer.status();
                let mut headers = answer.headers().clone();
                for hop in &HOP_BY_HOP {
                    headers.remove(hop);
                }
                let mut body = Vec::new();
                while body.len() < MAX_ANSWER_BODY {
                    match answer.chunk().await {
                        Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                        Ok(None) | Err(_) => break,
                    }
                }
                body.truncate(MAX_ANSWER_BODY);
                let verdict = Verdict::of(status, &headers);
                println!(
                    "{} {verdict}  {ids}  -> forwarded to {shown}: {status}{}{}",
                    clock(),
                    answer::kendo_headers(&headers),
                    answer::excerpt(&body, &headers)
                );
                let mut response = Response::new(Full::new(Bytes::from(body)));
                *response.status_mut() = status;
                *response.headers_mut() = headers;
                response
            }
            Err(e) => {
                let error = chain(e);
                println!(
                    "{} failed  {ids}  -> forwarding to {shown} failed: {error}; answered 502",
                    clock()
                );
                text(StatusCode::BAD_GATEWAY, "forwarding failed")
            }
        }
    }
}

fn text(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}
