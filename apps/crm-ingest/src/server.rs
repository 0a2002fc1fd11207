//! The HTTP server, hardened for the public internet: hyper's HTTP/1
//! connection builder with a timer, a header-read timeout (which hyper also
//! runs while a kept-alive connection waits for its next request, so it is
//! the idle timeout too) and a bounded read buffer; a cap on open
//! connections (a semaphore around `accept`: the rest wait in the kernel's
//! backlog); and, from tower and tower-http, a cap on requests in flight
//! (load-shedding with 503 rather than queueing) and a request timeout (408).
//! Shutdown is graceful (hyper-util's `GracefulShutdown`).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{BoxError, Router};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::timeout::TimeoutLayer;

use crate::config::ServerLimits;

/// Load shedding's error (and any other) as a response: 503 when too many
/// requests are in flight, so Kendo retries.
fn answer_errors(result: Result<Response, BoxError>) -> Response {
    result.unwrap_or_else(|error| {
        if error.is::<tower::load_shed::error::Overloaded>() {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "1")],
                "503: too many requests in flight; retry later\n",
            )
                .into_response()
        } else {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("500: {error}\n")).into_response()
        }
    })
}

/// Serves `app` on `listener` until `shutdown` completes, then stops
/// accepting, and waits up to `grace` for open connections to finish
/// their requests (then drops them).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let service = ServiceBuilder::new()
        .load_shed()
        .concurrency_limit(limits.max_in_flight)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .service(app);
    // Boxed, and errors answered inside the connection's service: with the
    // stack's own types, the compiler's `Send` check of the spawned
    // connection trips over a higher-ranked lifetime in `BoxError`.
    let service: BoxCloneService<Request<Incoming>, Response, BoxError> =
        BoxCloneService::new(service);

    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_buf_size)
        .keep_alive(true);

    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, usually: back off briefly.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let connection = http.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let service = service.clone();
                async move { Ok::<_, Infallible>(answer_errors(service.oneshot(request).await)) }
            }),
        );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection closed with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "connections still open after the grace period; dropping them"
        );
    }
}
