//! Request bodies, read within bounds, and the response body.
//!
//! Each request's body is held to the layer's body limit and read deadline;
//! all requests together are held to the [`BodyBudget`]. A request that
//! would exceed the budget is answered at once (503), before or while its
//! body arrives, so stalled bodies cannot grow the process without bound.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use pin_project_lite::pin_project;

use crate::reject::Rejection;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Bodies up to this size may use the budget's reserve (Kendo's payloads
/// are under 1 KiB).
pub(crate) const SMALL_BODY: usize = 16 * 1024;

/// Bytes of request bodies buffered by all in-flight requests of a layer.
///
/// The last eighth of the budget is kept for bodies of at most
/// [`SMALL_BODY`]: larger bodies (which no Kendo delivery needs) can fill
/// only seven eighths, so a flood of stalled large bodies leaves room for
/// real deliveries.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    limit: usize,
    used: AtomicUsize,
}

impl BodyBudget {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// The most that bodies larger than [`SMALL_BODY`] may hold together.
    fn large_limit(&self) -> usize {
        self.limit - self.limit / 8
    }

    /// Bytes currently reserved (for tests).
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// One request's share of the [`BodyBudget`], returned when dropped.
#[derive(Debug)]
pub(crate) struct Reservation<'a> {
    budget: &'a BodyBudget,
    held: usize,
}

impl<'a> Reservation<'a> {
    pub(crate) fn new(budget: &'a BodyBudget) -> Self {
        Self { budget, held: 0 }
    }

    /// Grows this request's share to `total` bytes; `false` (and nothing
    /// taken) when the budget cannot hold it.
    fn grow_to(&mut self, total: usize) -> bool {
        let Some(more) = total.checked_sub(self.held).filter(|&more| more > 0) else {
            return true;
        };
        let limit = if total <= SMALL_BODY {
            self.budget.limit
        } else {
            self.budget.large_limit()
        };
        let taken = self
            .budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more).filter(|&after| after <= limit)
            });
        if taken.is_ok() {
            self.held = total;
        }
        taken.is_ok()
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.held > 0 {
            self.budget.used.fetch_sub(self.held, Ordering::AcqRel);
        }
    }
}

/// Buffers the body, never holding more than `limit` bytes nor more than
/// `reservation` can take from the budget, within `deadline`.
///
/// A declared length is reserved before any byte is read, so an oversized
/// or unaffordable request is answered without reading its body.
pub(crate) async fn read_body<B>(
    body: B,
    limit: usize,
    declared: Option<usize>,
    deadline: Duration,
    reservation: &mut Reservation<'_>,
) -> Result<Bytes, Rejection>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    if let Some(declared) = declared {
        if !reservation.grow_to(declared) {
            return Err(Rejection::BodyBudgetExhausted);
        }
    }
    let mut collect = std::pin::pin!(concatenate(
        Limited::new(body, limit),
        declared.unwrap_or(0),
        reservation,
    ));
    // A small body usually arrives with the headers: when it is complete at
    // the first poll, no deadline timer needs to be armed. The timer is
    // boxed, so the request's future does not carry its space otherwise.
    let first = std::future::poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(collected) => collected,
        Poll::Pending => match Box::pin(tokio::time::timeout(deadline, collect)).await {
            Ok(collected) => collected,
            Err(_elapsed) => Err(Rejection::BodyTimeout),
        },
    }
}

/// Joins the body's data frames. A body of one frame is kept as it is (no
/// copy); several are copied into one buffer as they arrive, so no more than
/// the buffer and one frame are held at once. Trailers are ignored.
async fn concatenate<B>(
    body: B,
    size_hint: usize,
    reservation: &mut Reservation<'_>,
) -> Result<Bytes, Rejection>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            let error: BoxError = error.into();
            if error.is::<LengthLimitError>() {
                Rejection::PayloadTooLarge
            } else {
                Rejection::BodyReadFailed
            }
        })?;
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        let chunk = data.copy_to_bytes(data.remaining());
        if chunk.is_empty() {
            continue;
        }
        total += chunk.len();
        if !reservation.grow_to(total) {
            return Err(Rejection::BodyBudgetExhausted);
        }
        if let Some(joined) = joined.as_mut() {
            joined.extend_from_slice(&chunk);
        } else if let Some(head) = first.take() {
            let mut buffer = BytesMut::with_capacity(size_hint.max(head.len() + chunk.len()));
            buffer.extend_from_slice(&head);
            buffer.extend_from_slice(&chunk);
            joined = Some(buffer);
        } else {
            first = Some(chunk);
        }
    }
    Ok(joined.map(BytesMut::freeze).or(first).unwrap_or_default())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_returned_when_dropped() {
        let budget = BodyBudget::new(64 * 1024);
        let mut a = Reservation::new(&budget);
        assert!(a.grow_to(1000));
        assert!(a.grow_to(3000));
        assert!(a.grow_to(2000), "shrinking is a no-op");
        assert_eq!(budget.used(), 3000);
        drop(a);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn large_bodies_fill_seven_eighths_and_small_ones_the_rest() {
        let budget = BodyBudget::new(8 * SMALL_BODY * 4); // 512 KiB
        let large_limit = budget.large_limit();
        assert_eq!(large_limit, 7 * SMALL_BODY * 4);
        let mut large = Reservation::new(&budget);
        assert!(large.grow_to(large_limit), "exactly the large limit fits");
        let mut more_large = Reservation::new(&budget);
        assert!(!more_large.grow_to(SMALL_BODY + 1));
        assert_eq!(budget.used(), large_limit, "a refusal takes nothing");
        // Small bodies use the reserve, up to the whole budget exactly.
        let mut smalls: Vec<_> = (0..4).map(|_| Reservation::new(&budget)).collect();
        for small in &mut smalls {
            assert!(small.grow_to(SMALL_BODY));
        }
        assert_eq!(budget.used(), budget.limit);
        assert!(!Reservation::new(&budget).grow_to(1));
    }

    #[test]
    fn growing_to_the_share_already_held_succeeds_even_when_the_budget_is_full() {
        let budget = BodyBudget::new(8 * SMALL_BODY * 4);
        let mut large = Reservation::new(&budget);
        assert!(large.grow_to(budget.large_limit()));
        let mut smalls: Vec<_> = (0..4).map(|_| Reservation::new(&budget)).collect();
        for small in &mut smalls {
            assert!(small.grow_to(SMALL_BODY));
        }
        // The declared length was reserved; the last frame reaches it.
        assert!(large.grow_to(budget.large_limit()));
        assert_eq!(budget.used(), budget.limit);
    }

    #[test]
    fn bodies_of_up_to_16_kib_may_use_the_reserve_and_larger_ones_may_not() {
        let budget = BodyBudget::new(8 * 16 * 1024);
        let mut large = Reservation::new(&budget);
        assert!(large.grow_to(7 * 16 * 1024));
        assert!(!Reservation::new(&budget).grow_to(16 * 1024 + 1));
        assert!(Reservation::new(&budget).grow_to(16 * 1024));
    }

    #[test]
    fn a_layer_answer_is_exactly_its_text_and_ends_after_it() {
        let mut body = ResponseBody::<http_body_util::Empty<Bytes>>::layer(Bytes::from("nope"));
        assert_eq!(body.size_hint().exact(), Some(4));
        assert!(!body.is_end_stream());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) else {
            panic!("the text is ready at once");
        };
        assert_eq!(frame.into_data().unwrap(), "nope");
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }

    #[test]
    fn an_empty_layer_answer_ends_at_once() {
        let body = ResponseBody::<http_body_util::Empty<Bytes>>::layer(Bytes::new());
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }
}
