//! The inbox as a tower service: behind the layer, it commits the verified
//! delivery and answers `200` once the commit is durable.

use super::*;

/// Takes the verified [`Delivery`] from the request extensions (the body is
/// not read: the delivery holds the raw bytes), so it accepts any body type:
/// `Full<Bytes>` behind the layer, or axum's body in `post_service`.
impl<B> Service<Request<B>> for Inbox {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = InboxFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let delivery = request.extensions().get::<Delivery>().cloned();
        let inbox = self.clone();
        InboxFuture {
            inner: Box::pin(async move { Ok(inbox.respond(delivery).await) }),
        }
    }
}

impl Inbox {
    async fn respond(&self, delivery: Option<Delivery>) -> Response<Full<Bytes>> {
        let Some(delivery) = delivery else {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "missing",
                "no verified Delivery in the request extensions: put KendoWebhookLayer in front of the inbox service",
            );
        };
        match self.enqueue(&delivery).await {
            Ok(enqueued) => {
                let mut response = text(StatusCode::OK, enqueued.as_str(), enqueued.as_str());
                // Typed, for the layer's `on_outcome` hook
                // (`Report::response_extensions`); the header is for HTTP peers.
                response.extensions_mut().insert(enqueued);
                response
            }
            Err(error) => {
                #[cfg(feature = "tracing")]
                tracing::warn!(%error, event_id = delivery.event_id(), "inbox unavailable; answered 503");
                let _ = &error;
                let mut response = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "inbox unavailable; retry later",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
                response
            }
        }
    }
}

fn text(status: StatusCode, outcome: &'static str, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(INBOX_HEADER, HeaderValue::from_static(outcome));
    response
}

/// Response future for [`Inbox`].
pub struct InboxFuture {
    inner: BoxFuture<'static, Result<Response<Full<Bytes>>, Infallible>>,
}

impl Future for InboxFuture {
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for InboxFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboxFuture").finish_non_exhaustive()
    }
}
