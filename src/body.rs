//! The response body: the inner service's, or the layer's short rejection text.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// Response body of [`KendoWebhook`](crate::KendoWebhook): the inner
    /// service's body, or a one-line `text/plain` reason when the layer
    /// answered itself.
    pub struct ResponseBody<B> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<B> {
        Layer { text: Option<Bytes> },
        Service { #[pin] body: B },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn layer(text: Bytes) -> Self {
        let text = if text.is_empty() { None } else { Some(text) };
        Self {
            inner: Inner::Layer { text },
        }
    }

    pub(crate) fn service(body: B) -> Self {
        Self {
            inner: Inner::Service { body },
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().inner.project() {
            InnerProj::Layer { text } => Poll::Ready(text.take().map(|t| Ok(Frame::data(t)))),
            InnerProj::Service { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Layer { text } => text.is_none(),
            Inner::Service { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Layer { text } => {
                SizeHint::with_exact(text.as_ref().map_or(0, |t| t.len() as u64))
            }
            Inner::Service { body } => body.size_hint(),
        }
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Layer { text } => f.debug_struct("ResponseBody").field("layer", text).finish(),
            Inner::Service { .. } => f.write_str("ResponseBody { service }"),
        }
    }
}
