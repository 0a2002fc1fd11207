//! [`Simulation`]: Kendo's worst day against your own service, in a test.
//!
//! Your handler, behind the layer, is where duplicates and losses really
//! happen: a handler that commits and then fails, a side effect that is not
//! idempotent, an answer lost after the effect. A simulation sends your
//! service (an axum `Router`, any tower service) signed deliveries the way
//! Kendo does on a bad day — its 3-attempt schedule, resends of a delivery,
//! the same event under a new delivery id, concurrent copies, a request
//! cancelled after your effect but before your answer, forged and rotated
//! secrets, test deliveries, unknown events and unusual formatting — and
//! compares what you say you applied with what Kendo was told.
//!
//! You say how to observe your effects: a closure that returns how many
//! times each event id was applied (read your table, your mock CRM, a
//! counter). The [`SimulationReport`] lists every event applied twice,
//! acknowledged but never applied, or given up on by Kendo, with the
//! scenario that caused it and the seed that replays it.
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::{Arc, Mutex};
//!
//! use axum::{http::StatusCode, routing::post, Extension, Router};
//! use kendo_webhooks::simulate::Simulation;
//! use kendo_webhooks::{Delivery, KendoWebhookLayer};
//!
//! type Applied = Arc<Mutex<HashMap<String, usize>>>;
//!
//! // Applies the event, then yields before answering: a request cancelled
//! // there (Kendo's timeout, a dropped connection) has had its effect, but
//! // Kendo saw no answer and sends the delivery again.
//! async fn careless(Extension(applied): Extension<Applied>, Extension(d): Extension<Delivery>) -> StatusCode {
//!     *applied.lock().unwrap().entry(d.event_id().to_owned()).or_default() += 1;
//!     tokio::task::yield_now().await;
//!     StatusCode::OK
//! }
//!
//! // The same, idempotent on the event id (a unique key in a real table).
//! async fn idempotent(Extension(applied): Extension<Applied>, Extension(d): Extension<Delivery>) -> StatusCode {
//!     applied.lock().unwrap().entry(d.event_id().to_owned()).or_insert(1);
//!     tokio::task::yield_now().await;
//!     StatusCode::OK
//! }
//!
//! fn app(applied: &Applied, idempotent_handler: bool) -> Router {
//!     let layer = KendoWebhookLayer::new("whsec_test").unwrap();
//!     let route = if idempotent_handler { post(idempotent) } else { post(careless) };
//!     Router::new()
//!         .route("/webhooks/kendo", route.layer(layer))
//!         .layer(Extension(applied.clone()))
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! // In your own tests, the body of a `#[tokio::test] async fn`:
//! let applied = Applied::default();
//! let observe = { let a = applied.clone(); move || a.lock().unwrap().clone() };
//! let report = Simulation::new("whsec_test").seed(7).events(200)
//!     .run(app(&applied, false), observe).await;
//! assert!(!report.is_ok(), "the careless handler is caught:\n{report}");
//! assert!(report.applied_twice().count() > 0);
//!
//! let applied = Applied::default();
//! let observe = { let a = applied.clone(); move || a.lock().unwrap().clone() };
//! let report = Simulation::new("whsec_test").seed(7).events(200)
//!     .run(app(&applied, true), observe).await;
//! report.assert_ok(); // panics with every finding and the seed otherwise
//! # });
//! ```
//!
//! Deterministic for a given seed and a deterministic service: run it on a
//! current-thread runtime (`#[tokio::test]`'s default). Kendo's 1 s and 2 s
//! pauses between attempts only order the attempts here, and an attempt is
//! cut off after [`Simulation::attempt_timeout`]. The layer's own waits (a
//! concurrent copy waits for the one in flight) are real timers: with
//! `#[tokio::test(start_paused = true)]` (tokio's `test-util` feature) they
//! cost no real time, and 1,000 events take milliseconds; without it, each
//! concurrent copy costs the layer's store poll interval.

use std::collections::HashMap;
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use serde_json::{json, Value};
use tower_service::Service;

use crate::payload::{AI_TRAINING_COMPLETED, CALL_UPLOADED};
use crate::sender::SignedDelivery;

/// Kendo's attempts per delivery: the first and two retries.
const ATTEMPTS: usize = 3;

/// One of the ways Kendo (or the network) delivers an event.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// One delivery, retried (same delivery id) while it is not answered 2xx.
    Plain,
    /// The delivery again after a 2xx, as when Kendo did not receive it.
    Resend,
    /// The same event under a new delivery id.
    NewDeliveryId,
    /// Two copies of the delivery in flight at once.
    Concurrent,
    /// The first attempt is cancelled once your effect is seen, before your
    /// answer (Kendo's timeout, a dropped connection); Kendo retries.
    CancelledAfterEffect,
    /// A copy signed with a wrong secret arrives first; it must change
    /// nothing, and the real one must be applied.
    WrongSecret,
    /// Signed with the previous secret during a rotation
    /// ([`Simulation::previous_secret`]); plain otherwise.
    RotatedSecret,
    /// A "Send Test" delivery (`data._isTest: true`): only applying it twice
    /// is a finding, since many handlers skip test deliveries.
    TestDelivery,
    /// An event name this crate does not know; only applying it twice or
    /// Kendo giving up on it is a finding.
    UnknownEvent,
    /// Valid JSON in an unusual shape: keys reordered, spaces, escaped
    /// characters, a number written as a float.
    UnusualFormatting,
}

impl Scenario {
    const ALL: [Scenario; 10] = [
        Scenario::Plain,
        Scenario::Resend,
        Scenario::NewDeliveryId,
        Scenario::Concurrent,
        Scenario::CancelledAfterEffect,
        Scenario::WrongSecret,
        Scenario::RotatedSecret,
        Scenario::TestDelivery,
        Scenario::UnknownEvent,
        Scenario::UnusualFormatting,
    ];

    /// Whether an acknowledged event of this scenario must be applied.
    fn must_apply(self) -> bool {
        !matches!(self, Self::TestDelivery | Self::UnknownEvent)
    }
}

/// What went wrong with one event.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// Your observer counted the event more than once.
    AppliedTwice,
    /// Kendo got a 2xx for the event, but your observer never saw it
    /// applied: Kendo will not send it again, so it is lost.
    AcknowledgedNotApplied,
    /// No attempt of a delivery got a 2xx: Kendo gives up after three.
    GivenUp,
    /// A request signed with a wrong secret was answered 2xx.
    ForgeryAccepted,
}

/// One event that went wrong, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The event id.
    pub event_id: String,
    /// How Kendo delivered it.
    pub scenario: Scenario,
    /// What went wrong.
    pub kind: FindingKind,
    /// How many times your observer counted it at the end.
    pub applied: usize,
}

/// What a [`Simulation`] found.
#[derive(Debug, Clone)]
pub struct SimulationReport {
    seed: u64,
    events: usize,
    requests: usize,
    findings: Vec<Finding>,
}

impl SimulationReport {
    /// Whether nothing went wrong.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.findings.is_empty()
    }

    /// Every finding, in the order the events were sent.
    #[must_use]
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The events applied more than once.
    pub fn applied_twice(&self) -> impl Iterator<Item = &Finding> {
        self.of(FindingKind::AppliedTwice)
    }

    /// The events acknowledged to Kendo but never applied.
    pub fn lost(&self) -> impl Iterator<Item = &Finding> {
        self.of(FindingKind::AcknowledgedNotApplied)
    }

    /// The events Kendo would give up on.
    pub fn given_up(&self) -> impl Iterator<Item = &Finding> {
        self.of(FindingKind::GivenUp)
    }

    fn of(&self, kind: FindingKind) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.kind == kind)
    }

    /// The seed that replays this run ([`Simulation::seed`]).
    #[must_use]
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// How many requests were sent.
    #[must_use]
    pub fn requests(&self) -> usize {
        self.requests
    }

    /// Panics with every finding and the seed unless [`is_ok`](Self::is_ok).
    #[track_caller]
    pub fn assert_ok(&self) {
        assert!(self.is_ok(), "{self}");
    }
}

impl fmt::Display for SimulationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} events, {} requests, {} findings (replay with Simulation::seed({}))",
            self.events,
            self.requests,
            self.findings.len(),
            self.seed
        )?;
        for finding in &self.findings {
            let what = match finding.kind {
                FindingKind::AppliedTwice => "applied more than once",
                FindingKind::AcknowledgedNotApplied => "acknowledged to Kendo but never applied",
                FindingKind::GivenUp => "never answered 2xx: Kendo gives up after 3 attempts",
                FindingKind::ForgeryAccepted => "a copy signed with a wrong secret got 2xx",
            };
            writeln!(
                f,
                "  {} ({:?}): {what}; applied {} time(s)",
                finding.event_id, finding.scenario, finding.applied
            )?;
        }
        Ok(())
    }
}

/// Kendo's deliveries against your service; see the [module](self).
#[derive(Clone)]
#[must_use]
pub struct Simulation {
    secret: String,
    previous_secret: Option<String>,
    seed: u64,
    events: usize,
    path: String,
    attempt_timeout: Duration,
    scenarios: Vec<Scenario>,
}

impl fmt::Debug for Simulation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulation")
            .field("secret", &"[redacted]")
            .field("seed", &self.seed)
            .field("events", &self.events)
            .field("path", &self.path)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("scenarios", &self.scenarios)
            .finish_non_exhaustive()
    }
}

impl Simulation {
    /// A simulation signing with `secret`, the one your layer verifies:
    /// seed 0, 100 events, path `/webhooks/kendo`, every scenario.
    pub fn new(secret: impl Into<String>) -> Self {
        Self {
            secret: secret.into(),
            previous_secret: None,
            seed: 0,
            events: 100,
            path: "/webhooks/kendo".to_owned(),
            attempt_timeout: Duration::from_secs(10),
            scenarios: Scenario::ALL.to_vec(),
        }
    }

    /// The seed: the same seed sends the same deliveries in the same order.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How many events to deliver (default 100); each gets one scenario.
    pub fn events(mut self, events: usize) -> Self {
        self.events = events;
        self
    }

    /// The request path (default `/webhooks/kendo`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The secret Kendo signed with before a rotation, which your layer
    /// still accepts: used by [`Scenario::RotatedSecret`].
    pub fn previous_secret(mut self, secret: impl Into<String>) -> Self {
        self.previous_secret = Some(secret.into());
        self
    }

    /// How long one attempt may take before Kendo gives up on it (default
    /// 10 s, Kendo's timeout); the attempt is then cancelled and retried.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Only these scenarios (default: every one).
    pub fn scenarios(mut self, scenarios: impl IntoIterator<Item = Scenario>) -> Self {
        self.scenarios = scenarios.into_iter().collect();
        if self.scenarios.is_empty() {
            self.scenarios.push(Scenario::Plain);
        }
        self
    }

    /// Runs the simulation against `service`; `applied` returns how many
    /// times each event id was applied so far (called between requests and
    /// while a request of [`Scenario::CancelledAfterEffect`] is pending).
    pub async fn run<S, B, F>(self, mut service: S, mut applied: F) -> SimulationReport
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>>,
        S::Error: fmt::Debug,
        F: FnMut() -> HashMap<String, usize>,
    {
        let mut rng = SplitMix64(self.seed);
        let mut requests = 0;
        let mut outcomes = Vec::with_capacity(self.events);
        for n in 0..self.events {
            let scenario = self.scenarios[rng.below(self.scenarios.len())];
            let event_id = format!("evt_sim_{}_{n}", self.seed);
            let delivery_id = format!("dlv_sim_{}_{n}", self.seed);
            let (event, body) = body(scenario, &event_id, &mut rng);
            let secret = match (scenario, &self.previous_secret) {
                (Scenario::RotatedSecret, Some(previous)) => previous.as_str(),
                _ => &self.secret,
            };
            let delivery = SignedDelivery::builder(body.clone())
                .event(event)
                .delivery_id(&delivery_id)
                .sign(secret);
            let mut run = EventRun {
                acknowledged: false,
                forgery_accepted: false,
            };
            let mut send = |delivery: &SignedDelivery| {
                requests += 1;
                delivery.request(&self.path)
            };
            match scenario {
                Scenario::WrongSecret => {
                    let forged = SignedDelivery::builder(body.clone())
                        .event(delivery.event())
                        .delivery_id(delivery.delivery_id())
                        .sign("whsec_not_the_secret");
                    if let Ok(request) = send(&forged) {
                        if self
                            .attempt(&mut service, request)
                            .await
                            .is_some_and(is_2xx)
                        {
                            run.forgery_accepted = true;
                        }
                    }
                    run.acknowledged = self.kendo(&mut service, &delivery, &mut send).await;
                }
                Scenario::Resend => {
                    run.acknowledged = self.kendo(&mut service, &delivery, &mut send).await;
                    if run.acknowledged {
                        // Kendo did not get the answer, and sends it again.
                        self.kendo(&mut service, &delivery, &mut send).await;
                    }
                }
                Scenario::NewDeliveryId => {
                    run.acknowledged = self.kendo(&mut service, &delivery, &mut send).await;
                    let again = SignedDelivery::builder(body.clone())
                        .event(delivery.event())
                        .delivery_id(format!("{delivery_id}_again"))
                        .sign(secret);
                    run.acknowledged |= self.kendo(&mut service, &again, &mut send).await;
                }
                Scenario::Concurrent => {
                    if let (Ok(first), Ok(second)) = (send(&delivery), send(&delivery)) {
                        let (a, b) = self.both(&mut service, first, second).await;
                        run.acknowledged = a.is_some_and(is_2xx) || b.is_some_and(is_2xx);
                    }
                    if !run.acknowledged {
                        run.acknowledged = self.kendo(&mut service, &delivery, &mut send).await;
                    }
                }
                Scenario::CancelledAfterEffect => {
                    let before = applied().get(&event_id).copied().unwrap_or(0);
                    if let Ok(request) = send(&delivery) {
                        let answer = self
                            .cancel_after_effect(
                                &mut service,
                                request,
                                &event_id,
                                before,
                                &mut applied,
                            )
                            .await;
                        run.acknowledged = answer.is_some_and(is_2xx);
                    }
                    if !run.acknowledged {
                        run.acknowledged = self.kendo(&mut service, &delivery, &mut send).await;
                    }
                }
                _ => run.acknowledged = self.kendo(&mut service, &delivery, &mut send).await,
            }
            outcomes.push((event_id, scenario, run));
        }
        let counts = applied();
        let mut findings = Vec::new();
        for (event_id, scenario, run) in outcomes {
            let applied = counts.get(&event_id).copied().unwrap_or(0);
            let mut find = |kind| {
                findings.push(Finding {
                    event_id: event_id.clone(),
                    scenario,
                    kind,
                    applied,
                });
            };
            if run.forgery_accepted {
                find(FindingKind::ForgeryAccepted);
            }
            if applied > 1 {
                find(FindingKind::AppliedTwice);
            }
            if !run.acknowledged && scenario != Scenario::TestDelivery {
                find(FindingKind::GivenUp);
            } else if run.acknowledged && applied == 0 && scenario.must_apply() {
                find(FindingKind::AcknowledgedNotApplied);
            }
        }
        SimulationReport {
            seed: self.seed,
            events: self.events,
            requests,
            findings,
        }
    }

    /// Kendo's schedule for one delivery: up to three attempts, the same
    /// delivery id, until one is answered 2xx. Whether one was.
    async fn kendo<S, B>(
        &self,
        service: &mut S,
        delivery: &SignedDelivery,
        send: &mut impl FnMut(&SignedDelivery) -> Result<Request<Full<Bytes>>, http::Error>,
    ) -> bool
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>>,
        S::Error: fmt::Debug,
    {
        for _ in 0..ATTEMPTS {
            let Ok(request) = send(delivery) else {
                return false;
            };
            if self.attempt(service, request).await.is_some_and(is_2xx) {
                return true;
            }
        }
        false
    }

    /// One attempt: the status, or `None` for an error or a timeout.
    async fn attempt<S, B>(&self, service: &mut S, request: Request<Full<Bytes>>) -> Option<u16>
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>>,
        S::Error: fmt::Debug,
    {
        poll_fn(|cx| service.poll_ready(cx)).await.ok()?;
        let call = service.call(request);
        match tokio::time::timeout(self.attempt_timeout, call).await {
            Ok(Ok(response)) => Some(response.status().as_u16()),
            Ok(Err(_)) | Err(_) => None,
        }
    }

    /// Two attempts in flight at once, polled in turn.
    async fn both<S, B>(
        &self,
        service: &mut S,
        first: Request<Full<Bytes>>,
        second: Request<Full<Bytes>>,
    ) -> (Option<u16>, Option<u16>)
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>>,
        S::Error: fmt::Debug,
    {
        if poll_fn(|cx| service.poll_ready(cx)).await.is_err() {
            return (None, None);
        }
        let a = service.call(first);
        if poll_fn(|cx| service.poll_ready(cx)).await.is_err() {
            return (None, None);
        }
        let b = service.call(second);
        let status = |r: Result<Response<B>, S::Error>| r.ok().map(|r| r.status().as_u16());
        let (a, b) = join(
            tokio::time::timeout(self.attempt_timeout, a),
            tokio::time::timeout(self.attempt_timeout, b),
        )
        .await;
        (a.ok().and_then(status), b.ok().and_then(status))
    }

    /// Polls one attempt step by step and drops it as soon as `applied`
    /// shows its effect while it is still pending. The answer if it came
    /// first.
    async fn cancel_after_effect<S, B, F>(
        &self,
        service: &mut S,
        request: Request<Full<Bytes>>,
        event_id: &str,
        before: usize,
        applied: &mut F,
    ) -> Option<u16>
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>>,
        S::Error: fmt::Debug,
        F: FnMut() -> HashMap<String, usize>,
    {
        poll_fn(|cx| service.poll_ready(cx)).await.ok()?;
        let mut call = pin!(tokio::time::timeout(
            self.attempt_timeout,
            service.call(request)
        ));
        loop {
            match poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
                Poll::Ready(Ok(Ok(response))) => return Some(response.status().as_u16()),
                Poll::Ready(_) => return None,
                Poll::Pending => {
                    if applied().get(event_id).copied().unwrap_or(0) > before {
                        return None; // cancelled: the effect happened, no answer
                    }
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

struct EventRun {
    acknowledged: bool,
    forgery_accepted: bool,
}

fn is_2xx(status: u16) -> bool {
    (200..300).contains(&status)
}

/// Polls both futures in turn until both are done.
async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut out_a, mut out_b) = (None, None);
    poll_fn(|cx| {
        if out_a.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                out_a = Some(v);
            }
        }
        if out_b.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                out_b = Some(v);
            }
        }
        if out_a.is_some() && out_b.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    match (out_a, out_b) {
        (Some(a), Some(b)) => (a, b),
        _ => unreachable!("poll_fn returned Ready only with both outputs"),
    }
}

/// The event name and body of one simulated event.
fn body(scenario: Scenario, event_id: &str, rng: &mut SplitMix64) -> (&'static str, Bytes) {
    const AGENTS: [&str; 4] = ["Ada", "Grace", "Linus", "Barbara"];
    let agent = AGENTS[rng.below(AGENTS.len())];
    let score = 40 + rng.below(56);
    let created_at = "2026-03-05T12:00:00Z";
    if scenario == Scenario::UnusualFormatting {
        // Keys out of order, spaces and newlines, a \u escape, a float score.
        let text = format!(
            "{{ \"data\" : {{\"aiScore\": {score}.0, \"agentName\": \"{agent}\\u0021\",\n  \"callId\":\"call_{event_id}\", \"agentId\": \"agent_{agent}\"}},\n \"created_at\":\"{created_at}\", \"event\": \"call.uploaded\", \"id\" : \"{event_id}\" }}\n"
        );
        return (CALL_UPLOADED, Bytes::from(text));
    }
    let (event, mut data) = match scenario {
        Scenario::UnknownEvent => (
            "call.summarized",
            json!({ "callId": format!("call_{event_id}") }),
        ),
        _ if rng.below(4) == 0 => (
            AI_TRAINING_COMPLETED,
            json!({ "trainingId": format!("training_{event_id}"), "agentId": format!("agent_{agent}"),
                    "agentName": agent, "aiScore": score, "timestamp": created_at }),
        ),
        _ => (
            CALL_UPLOADED,
            json!({ "callId": format!("call_{event_id}"), "agentId": format!("agent_{agent}"),
                    "agentName": agent, "aiScore": score, "duration": 245.5, "timestamp": created_at }),
        ),
    };
    if scenario == Scenario::TestDelivery {
        data["_isTest"] = Value::Bool(true);
    }
    let envelope =
        json!({ "id": event_id, "event": event, "created_at": created_at, "data": data });
    (event, Bytes::from(envelope.to_string()))
}

/// A small, fast, seedable generator (SplitMix64): the simulation needs
/// reproducible choices, not cryptographic ones.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
