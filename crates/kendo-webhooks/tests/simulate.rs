//! The delivery simulator catches what it promises to catch, in handlers
//! written the ways users write them, behind the real layer (axum routers
//! driven in-process, as a user's `#[tokio::test]` would).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Router};
use kendo_webhooks::simulate::{FindingKind, Scenario, Simulation};
use kendo_webhooks::{Delivery, Event, KendoWebhookLayer, Secret};

const SECRET: &str = "whsec_simulated";
const PATH: &str = "/webhooks/kendo";

#[derive(Clone, Default)]
struct Sink {
    applied: Arc<Mutex<HashMap<String, usize>>>,
    calls: Arc<AtomicUsize>,
}

impl Sink {
    fn apply(&self, delivery: &Delivery) {
        *self
            .applied
            .lock()
            .unwrap()
            .entry(delivery.event_id().to_owned())
            .or_default() += 1;
    }

    fn apply_once(&self, delivery: &Delivery) {
        self.applied
            .lock()
            .unwrap()
            .entry(delivery.event_id().to_owned())
            .or_insert(1);
    }

    fn observer(&self) -> impl FnMut() -> HashMap<String, usize> {
        let applied = self.applied.clone();
        move || applied.lock().unwrap().clone()
    }
}

fn router<H, T>(handler: H, sink: &Sink) -> Router
where
    H: axum::handler::Handler<T, ()>,
    T: 'static,
{
    let layer = KendoWebhookLayer::new(SECRET).unwrap();
    Router::new()
        .route(PATH, post(handler).layer(layer))
        .layer(Extension(sink.clone()))
}

#[tokio::test(start_paused = true)]
async fn an_idempotent_handler_passes_every_scenario() {
    let sink = Sink::default();
    let app = router(
        |Extension(sink): Extension<Sink>, Extension(d): Extension<Delivery>| async move {
            sink.apply_once(&d);
            tokio::task::yield_now().await;
            StatusCode::OK
        },
        &sink,
    );
    let report = Simulation::new(SECRET)
        .seed(1)
        .events(300)
        .run(app, sink.observer())
        .await;
    report.assert_ok();
    assert!(report.requests() > 300, "{report}");
}

#[tokio::test(start_paused = true)]
async fn a_handler_that_commits_then_fails_is_applied_twice() {
    let sink = Sink::default();
    let app = router(
        |Extension(sink): Extension<Sink>, Extension(d): Extension<Delivery>| async move {
            sink.apply(&d);
            // Every fifth call fails after its effect: Kendo retries it.
            if sink.calls.fetch_add(1, Ordering::SeqCst) % 5 == 0 {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            }
        },
        &sink,
    );
    let report = Simulation::new(SECRET)
        .seed(2)
        .events(100)
        .scenarios([Scenario::Plain])
        .run(app, sink.observer())
        .await;
    let twice: Vec<_> = report.applied_twice().collect();
    assert!(!twice.is_empty(), "{report}");
    assert!(twice
        .iter()
        .all(|f| f.scenario == Scenario::Plain && f.applied >= 2));
    assert_eq!(report.lost().count(), 0, "{report}");
    assert!(
        report.to_string().contains("Simulation::seed(2)"),
        "{report}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_answer_lost_after_the_effect_is_caught_in_a_non_idempotent_handler() {
    let sink = Sink::default();
    let app = router(
        |Extension(sink): Extension<Sink>, Extension(d): Extension<Delivery>| async move {
            sink.apply(&d);
            tokio::task::yield_now().await;
            StatusCode::OK
        },
        &sink,
    );
    let report = Simulation::new(SECRET)
        .seed(3)
        .events(20)
        .scenarios([Scenario::CancelledAfterEffect])
        .run(app, sink.observer())
        .await;
    assert_eq!(report.applied_twice().count(), 20, "{report}");
}

#[tokio::test(start_paused = true)]
async fn a_handler_that_acknowledges_without_applying_loses_events() {
    let sink = Sink::default();
    let app = router(
        |Extension(sink): Extension<Sink>, Extension(d): Extension<Delivery>| async move {
            // Drops Ada's calls on the floor but still answers 200.
            let ada = matches!(d.event(), Event::CallUploaded(c) if c.agent_name.as_deref() == Some("Ada"));
            if !ada {
                sink.apply_once(&d);
            }
            StatusCode::OK
        },
        &sink,
    );
    let report = Simulation::new(SECRET)
        .seed(4)
        .events(100)
        .run(app, sink.observer())
        .await;
    assert!(report.lost().count() > 0, "{report}");
    assert!(report
        .lost()
        .all(|f| f.kind == FindingKind::AcknowledgedNotApplied && f.applied == 0));
    assert_eq!(report.applied_twice().count(), 0, "{report}");
}

#[tokio::test(start_paused = true)]
async fn a_handler_that_always_fails_is_given_up_on() {
    let sink = Sink::default();
    let app = router(
        |Extension(sink): Extension<Sink>| async move {
            sink.calls.fetch_add(1, Ordering::SeqCst);
            StatusCode::SERVICE_UNAVAILABLE
        },
        &sink,
    );
    let report = Simulation::new(SECRET)
        .seed(5)
        .events(10)
        .scenarios([Scenario::Plain])
        .run(app, sink.observer())
        .await;
    assert_eq!(report.given_up().count(), 10, "{report}");
    // Kendo's schedule: three attempts of each delivery.
    assert_eq!(sink.calls.load(Ordering::SeqCst), 30);
    assert_eq!(report.requests(), 30);
}

#[tokio::test(start_paused = true)]
async fn a_service_without_verification_accepts_forgeries() {
    let sink = Sink::default();
    // No layer: anything POSTed is "applied" by its raw delivery id header.
    let app = Router::new().route(PATH, post(|| async { StatusCode::OK }));
    let report = Simulation::new(SECRET)
        .seed(6)
        .events(10)
        .scenarios([Scenario::WrongSecret])
        .run(app, sink.observer())
        .await;
    assert_eq!(
        report
            .findings()
            .iter()
            .filter(|f| f.kind == FindingKind::ForgeryAccepted)
            .count(),
        10,
        "{report}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rotated_secret_is_used_only_when_given_and_the_layer_accepts_it() {
    let sink = Sink::default();
    let layer = KendoWebhookLayer::builder()
        .secret(Secret::new(SECRET).with_label("current"))
        .secret(Secret::new("whsec_previous").with_label("previous"))
        .build()
        .unwrap();
    let labels = Arc::new(Mutex::new(Vec::new()));
    let seen = labels.clone();
    let app = Router::new()
        .route(
            PATH,
            post(
                move |Extension(sink): Extension<Sink>, Extension(d): Extension<Delivery>| {
                    let seen = seen.clone();
                    async move {
                        seen.lock()
                            .unwrap()
                            .push(d.secret_label().map(str::to_owned));
                        sink.apply_once(&d);
                        StatusCode::OK
                    }
                },
            )
            .layer(layer),
        )
        .layer(Extension(sink.clone()));
    let report = Simulation::new(SECRET)
        .previous_secret("whsec_previous")
        .seed(7)
        .events(5)
        .scenarios([Scenario::RotatedSecret])
        .run(app, sink.observer())
        .await;
    report.assert_ok();
    let labels = labels.lock().unwrap();
    assert_eq!(labels.len(), 5);
    assert!(labels.iter().all(|l| l.as_deref() == Some("previous")));
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_replays_the_same_run_and_another_seed_does_not() {
    async fn run(seed: u64) -> (Vec<(String, usize)>, usize) {
        let sink = Sink::default();
        let app = router(
            |Extension(sink): Extension<Sink>, Extension(d): Extension<Delivery>| async move {
                sink.apply(&d);
                if sink.calls.fetch_add(1, Ordering::SeqCst) % 7 == 0 {
                    StatusCode::BAD_GATEWAY
                } else {
                    StatusCode::OK
                }
            },
            &sink,
        );
        let report = Simulation::new(SECRET)
            .seed(seed)
            .events(150)
            .run(app, sink.observer())
            .await;
        let findings = report
            .findings()
            .iter()
            .map(|f| (f.event_id.clone(), f.applied))
            .collect();
        (findings, report.requests())
    }
    let first = run(11).await;
    assert!(!first.0.is_empty());
    assert_eq!(first, run(11).await);
    assert_ne!(first, run(12).await);
}
