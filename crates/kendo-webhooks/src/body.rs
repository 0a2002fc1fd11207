//! Request bodies, read within bounds, and the response body.
//!
//! Each request's body is held to the layer's body limit and read
//! deadlines (to start, to keep a minimum rate, to finish); all requests
//! together are held to the [`BodyBudget`], charged for the bytes received.
//! A request that would exceed the budget is answered at once (503) while
//! its body arrives, so stalled bodies cannot grow the process without
//! bound, and a body that was declared but never sent holds nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use pin_project_lite::pin_project;
use tokio::time::Instant;

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

/// How long a body may take: to start, to keep arriving, to finish.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadDeadlines {
    /// The first byte must arrive within this, from the first read.
    pub(crate) start: Duration,
    /// Once started, the body must average at least this many bytes per
    /// second (counted from the first read, after `start`); 0: no minimum.
    pub(crate) min_rate: usize,
    /// The whole body must arrive within this, whatever its rate.
    pub(crate) total: Duration,
}

impl ReadDeadlines {
    /// When the body times out, from the first read at `began`, after
    /// `received` bytes: `start` plus one second per `min_rate` bytes
    /// received (Apache's `mod_reqtimeout` rule), never past `total`.
    fn deadline(&self, began: Instant, received: usize) -> (Instant, Rejection) {
        let total = began + self.total;
        let paced = if received == 0 {
            Some((began + self.start, Rejection::BodyNotStarted))
        } else if self.min_rate == 0 {
            None
        } else {
            let earned = Duration::from_secs_f64(received as f64 / self.min_rate as f64);
            Some((began + self.start + earned, Rejection::BodyTooSlow))
        };
        match paced {
            Some((at, reason)) if at < total => (at, reason),
            _ => (total, Rejection::BodyTimeout),
        }
    }
}

/// Buffers the body, never holding more than `limit` bytes nor more than
/// `reservation` can take from the budget, within `deadlines`.
///
/// The budget is charged for the bytes received, as they arrive, never for
/// a declared length: a request that declares a body and sends nothing
/// holds no share of it, and is answered 408 once its start deadline passes.
pub(crate) async fn read_body<B>(
    body: B,
    limit: usize,
    deadlines: ReadDeadlines,
    reservation: &mut Reservation<'_>,
) -> Result<Bytes, Rejection>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    // Shared with the reading future (an atomic only to be `Sync`).
    let received = AtomicUsize::new(0);
    let mut collect = std::pin::pin!(concatenate(
        Limited::new(body, limit),
        reservation,
        &received
    ));
    // A small body usually arrives with the headers: when it is complete at
    // the first poll, no deadline timer needs to be armed. The timer is
    // boxed, so the request's future does not carry its space otherwise.
    let first = std::future::poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await;
    if let Poll::Ready(collected) = first {
        return collected;
    }
    let began = Instant::now();
    let (at, _) = deadlines.deadline(began, received.load(Ordering::Relaxed));
    let mut timer = Box::pin(tokio::time::sleep_until(at));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(collected) = collect.as_mut().poll(cx) {
            return Poll::Ready(collected);
        }
        // Each byte received moves the deadline on, up to the total one.
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let (at, why) = deadlines.deadline(began, received.load(Ordering::Relaxed));
            if at <= timer.deadline() {
                return Poll::Ready(Err(why));
            }
            timer.as_mut().reset(at);
        }
    })
    .await
}

/// Frames smaller than this are copied together instead of kept one by
/// one (a body trickled a byte at a time would otherwise cost a `Bytes`
/// per byte).
const COALESCE_BELOW: usize = 1024;

/// Joins the body's data frames, charging `reservation` for the bytes as
/// they arrive, and counting them in `received`. Frames are
/// kept as they are (no copy), small ones copied together, until the body
/// ends; then they are joined into one buffer of exactly its length (a
/// body of one frame, the usual case, is never copied). Trailers are
/// ignored.
async fn concatenate<B>(
    body: B,
    reservation: &mut Reservation<'_>,
    received: &AtomicUsize,
) -> Result<Bytes, Rejection>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut frames: Vec<Bytes> = Vec::new();
    let mut small = BytesMut::new();
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
        if chunk.len() < COALESCE_BELOW {
            small.extend_from_slice(&chunk);
        } else {
            if !small.is_empty() {
                frames.push(small.split().freeze());
            }
            frames.push(chunk);
        }
        // The bytes received. Kept frames are at least `COALESCE_BELOW`
        // long, so the list of them adds at most 32 bytes a KiB; the
        // buffer of small frames grows by doubling, so a body trickled in
        // small frames holds at most about twice what it is charged.
        if !reservation.grow_to(total) {
            return Err(Rejection::BodyBudgetExhausted);
        }
        received.store(total, Ordering::Relaxed);
    }
    if !small.is_empty() {
        frames.push(small.freeze());
    }
    Ok(match frames.len() {
        0 => Bytes::new(),
        1 => frames.pop().unwrap_or_default(),
        _ => {
            let mut joined = BytesMut::with_capacity(total);
            for frame in frames {
                joined.extend_from_slice(&frame);
            }
            joined.freeze()
        }
    })
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

    const DEADLINES: ReadDeadlines = ReadDeadlines {
        start: Duration::from_secs(2),
        min_rate: 1000,
        total: Duration::from_secs(10),
    };

    #[test]
    fn a_body_must_start_in_time_then_earn_a_second_per_min_rate_bytes() {
        let began = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(
            DEADLINES.deadline(began, 0),
            (began + s(2), Rejection::BodyNotStarted)
        );
        assert_eq!(
            DEADLINES.deadline(began, 1000),
            (began + s(3), Rejection::BodyTooSlow)
        );
        assert_eq!(
            DEADLINES.deadline(began, 7999),
            (
                began + Duration::from_micros(9_999_000),
                Rejection::BodyTooSlow
            )
        );
        assert_eq!(
            DEADLINES.deadline(began, 8000),
            (began + s(10), Rejection::BodyTimeout),
            "never past the total deadline"
        );
        let no_rate = ReadDeadlines {
            min_rate: 0,
            ..DEADLINES
        };
        assert_eq!(
            no_rate.deadline(began, 1),
            (began + s(10), Rejection::BodyTimeout)
        );
        let long_start = ReadDeadlines {
            start: s(60),
            ..DEADLINES
        };
        assert_eq!(
            long_start.deadline(began, 0),
            (began + s(10), Rejection::BodyTimeout)
        );
    }

    /// A body fed by hand: frames pushed through a channel.
    struct Fed(tokio::sync::mpsc::UnboundedReceiver<Bytes>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_declared_body_that_never_starts_holds_no_budget_and_ends_in_408() {
        let budget = BodyBudget::new(64 * 1024);
        let (_tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut reservation = Reservation::new(&budget);
        let read = read_body(Fed(rx), 64 * 1024, DEADLINES, &mut reservation);
        let started = Instant::now();
        assert_eq!(read.await, Err(Rejection::BodyNotStarted));
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_the_minimum_rate_is_read_and_a_slower_one_is_not() {
        let budget = BodyBudget::new(64 * 1024);
        // 1,000 bytes a second: the deadline keeps moving on.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let feeder = tokio::spawn(async move {
            for _ in 0..8 {
                tokio::time::sleep(Duration::from_millis(900)).await;
                tx.send(Bytes::from(vec![b'x'; 1000])).unwrap();
            }
        });
        let mut reservation = Reservation::new(&budget);
        let read = read_body(Fed(rx), 64 * 1024, DEADLINES, &mut reservation).await;
        assert_eq!(read.map(|b| b.len()), Ok(8000));
        assert_eq!(budget.used(), 8000, "charged for what arrived");
        drop(reservation);
        feeder.await.unwrap();
        // 100 bytes a second, after a prompt start: too slow.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let feeder = tokio::spawn(async move {
            loop {
                if tx.send(Bytes::from_static(&[b'x'; 100])).is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let mut reservation = Reservation::new(&budget);
        let started = Instant::now();
        let read = read_body(Fed(rx), 64 * 1024, DEADLINES, &mut reservation).await;
        assert_eq!(read, Err(Rejection::BodyTooSlow));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        drop(reservation);
        feeder.await.unwrap();
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_of_many_frames_is_charged_for_its_bytes_and_joined_once() {
        let budget = BodyBudget::new(64 * 1024);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        for byte in [b'a', b'b', b'c'] {
            tx.send(Bytes::from(vec![byte; 2000])).unwrap();
        }
        drop(tx);
        let mut reservation = Reservation::new(&budget);
        let read = read_body(Fed(rx), 64 * 1024, DEADLINES, &mut reservation).await;
        let body = read.expect("the body");
        assert_eq!(body.len(), 6000);
        assert_eq!(&body[1999..2001], b"ab");
        assert_eq!(budget.used(), 6000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_trickled_a_byte_at_a_time_is_copied_together_not_kept_per_byte() {
        let budget = BodyBudget::new(64 * 1024);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..3000u32 {
            tx.send(Bytes::from(vec![b'a' + (i % 26) as u8])).unwrap();
        }
        drop(tx);
        let mut reservation = Reservation::new(&budget);
        let read = read_body(Fed(rx), 64 * 1024, DEADLINES, &mut reservation).await;
        let body = read.expect("the body");
        assert_eq!(body.len(), 3000);
        assert_eq!(&body[..3], b"abc");
        assert_eq!(body[2999], b'a' + (2999 % 26) as u8);
        assert_eq!(budget.used(), 3000);
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
