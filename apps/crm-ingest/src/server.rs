//! The HTTP server, hardened for the public internet: hyper's HTTP/1
//! connection builder with a timer, a header-read timeout (which hyper also
//! runs while a kept-alive connection waits for its next request, so it is
//! the idle timeout too) and a bounded read buffer; a cap on requests per
//! connection (then `Connection: close`, as nginx's `keepalive_requests`)
//! and a write timeout, so a peer that pipelines requests and does not read
//! the answers loses its connection (see [`WriteTimeout`]); a cap on open connections (a semaphore around
//! `accept`: the rest wait in the kernel's backlog); a body start deadline
//! before a request counts as in flight (a request that declares a body and
//! sends none holds no slot, and gets 408); and, from tower and tower-http,
//! a cap on requests in flight (load-shedding with 503 rather than
//! queueing) and a request timeout (408). Shutdown is graceful (hyper-util's
//! `GracefulShutdown`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{BoxError, Router};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::timeout::TimeoutLayer;

use kendo_webhooks::{Rejection, REJECTION_HEADER};

use crate::config::ServerLimits;
use crate::write_timeout::WriteTimeout;

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
    let service: BoxCloneService<Request<Body>, Response, BoxError> = BoxCloneService::new(service);
    let body_start = limits.body_start_timeout;

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
        let stream = WriteTimeout::new(stream, limits.write_timeout);
        let served = Arc::new(AtomicUsize::new(0));
        let max_requests = limits.max_requests_per_connection;
        let connection = http.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |request: Request<Incoming>| {
                let service = service.clone();
                let last = served.fetch_add(1, Ordering::Relaxed) + 1 >= max_requests;
                async move {
                    // Only a request whose body started takes a slot.
                    let mut response = match body_started(request, body_start).await {
                        Ok(request) => answer_errors(service.oneshot(request).await),
                        Err(refused) => refused,
                    };
                    if last {
                        // hyper closes the connection after this answer.
                        response
                            .headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    Ok::<_, Infallible>(response)
                }
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

/// Waits up to `deadline` for the first frame of the request's body (at
/// once when it has none), before the request counts as in flight. A
/// request that declared a body and sent none by then is answered 408
/// (`body_not_started`, as the webhook layer names it) and its connection
/// closed, so clients that send headers and then nothing hold neither an
/// in-flight slot nor body memory.
async fn body_started(
    request: Request<Incoming>,
    deadline: Duration,
) -> Result<Request<Body>, Response> {
    if request.body().is_end_stream() {
        return Ok(request.map(Body::new));
    }
    let (parts, mut body) = request.into_parts();
    let first = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
    match tokio::time::timeout(deadline, first).await {
        Ok(first) => Ok(Request::from_parts(
            parts,
            Body::new(Started {
                first: Some(first),
                rest: body,
            }),
        )),
        Err(_elapsed) => {
            let reason = Rejection::BodyNotStarted;
            let mut response = (
                reason.status(),
                format!("{}: {}\n", reason.as_str(), reason.description()),
            )
                .into_response();
            let headers = response.headers_mut();
            headers.insert(REJECTION_HEADER, HeaderValue::from_static(reason.as_str()));
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            Err(response)
        }
    }
}

/// A request body whose first frame was already read.
struct Started {
    first: Option<Option<Result<Frame<Bytes>, hyper::Error>>>,
    rest: Incoming,
}

impl hyper::body::Body for Started {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.first.take() {
            Some(first) => Poll::Ready(first),
            None => Pin::new(&mut self.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.first {
            Some(first) => first.is_none(),
            None => self.rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.first {
            Some(_) => SizeHint::default(),
            None => self.rest.size_hint(),
        }
    }
}
