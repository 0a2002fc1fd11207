//! `Verifier::with_replay_tolerance`: verify-now-process-later gets the
//! replay window the layer has, with the same verdicts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use kendo_webhooks::{sign, KendoWebhookLayer, Rejection, TestDelivery, Verifier};
use tower::{Layer, ServiceExt};

const SECRET: &str = "whsec_replay";
/// 2026-03-05T12:00:00Z, the `created_at` of the deliveries below.
const CREATED: u64 = 1_772_712_000;
const TOLERANCE: Duration = Duration::from_secs(300);

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

fn body(created_at: &str) -> Bytes {
    TestDelivery::example("call.uploaded")
        .event_id("evt_r")
        .created_at(created_at)
        .body()
}

fn windowed(now: SystemTime) -> Verifier {
    Verifier::new([SECRET])
        .unwrap()
        .with_replay_tolerance(TOLERANCE)
        .with_clock(move || now)
}

fn verify(verifier: &Verifier, body: Bytes) -> Result<(), Rejection> {
    let signature = sign(SECRET, &body);
    verifier
        .verify_delivery(signature.as_bytes(), "dlv_r", "call.uploaded", body)
        .map(|_| ())
}

#[test]
fn deliveries_within_the_tolerance_either_way_are_accepted() {
    for now in [
        CREATED,
        CREATED + 300,
        CREATED - 300,
        CREATED + 299,
        CREATED - 1,
    ] {
        assert_eq!(
            verify(&windowed(at(now)), body("2026-03-05T12:00:00Z")),
            Ok(()),
            "now = created_at {:+} s",
            now as i64 - CREATED as i64
        );
    }
}

#[test]
fn deliveries_outside_the_tolerance_either_way_are_rejected() {
    for now in [CREATED + 301, CREATED - 301, CREATED + 86_400] {
        assert_eq!(
            verify(&windowed(at(now)), body("2026-03-05T12:00:00Z")),
            Err(Rejection::OutsideReplayWindow),
            "now = created_at {:+} s",
            now as i64 - CREATED as i64
        );
    }
}

#[test]
fn an_unreadable_created_at_is_outside_the_window() {
    assert_eq!(
        verify(&windowed(at(CREATED)), body("yesterday")),
        Err(Rejection::OutsideReplayWindow)
    );
}

#[test]
fn without_a_tolerance_nothing_is_checked_and_the_clock_is_not_read() {
    let verifier = Verifier::new([SECRET])
        .unwrap()
        .with_clock(|| panic!("the clock is read only with a replay window"));
    assert_eq!(verifier.replay_tolerance(), None);
    assert_eq!(verify(&verifier, body("2001-01-01T00:00:00Z")), Ok(()));
    assert_eq!(verify(&verifier, body("yesterday")), Ok(()));
    assert_eq!(
        windowed(at(CREATED)).replay_tolerance(),
        Some(TOLERANCE),
        "the getter reports the tolerance"
    );
}

#[test]
fn the_signature_is_checked_before_the_window() {
    let verifier = windowed(at(CREATED + 86_400));
    let body = body("2026-03-05T12:00:00Z");
    let forged = sign("another secret", &body);
    assert_eq!(
        verifier
            .verify_delivery(forged.as_bytes(), "dlv_r", "call.uploaded", body)
            .map(|_| ()),
        Err(Rejection::InvalidSignature)
    );
}

#[test]
fn verify_of_a_signature_alone_is_not_affected() {
    let verifier = windowed(at(CREATED + 86_400));
    let body = body("2026-03-05T12:00:00Z");
    assert!(verifier
        .verify(sign(SECRET, &body).as_bytes(), &body)
        .is_ok());
}

#[test]
fn debug_shows_the_tolerance_and_never_the_secret() {
    let shown = format!("{:?}", windowed(at(CREATED)));
    assert!(shown.contains("replay_tolerance: Some(300s)"), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");
}

#[tokio::test]
async fn the_verifier_and_the_layer_give_the_same_verdicts() {
    let inner = tower::service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
    });
    for (now, created_at) in [
        (CREATED, "2026-03-05T12:00:00Z"),
        (CREATED + 301, "2026-03-05T12:00:00Z"),
        (CREATED - 301, "2026-03-05T12:00:00Z"),
        (CREATED, "not a time"),
    ] {
        let service = KendoWebhookLayer::builder()
            .secret(SECRET)
            .replay_tolerance(TOLERANCE)
            .clock(move || at(now))
            .build()
            .unwrap()
            .layer(inner);
        let body = body(created_at);
        let request = Request::post("/")
            .header("content-type", "application/json")
            .header("x-kendo-signature", sign(SECRET, &body))
            .header("x-kendo-event", "call.uploaded")
            .header("x-kendo-delivery-id", "dlv_r")
            .body(Full::new(body.clone()))
            .unwrap();
        let answer = service.oneshot(request).await.unwrap();
        let layer = answer
            .headers()
            .get("x-kendo-webhook-rejection")
            .map(|v| v.to_str().unwrap().to_owned());
        let verifier = verify(&windowed(at(now)), body)
            .err()
            .map(|r| r.as_str().to_owned());
        assert_eq!(verifier, layer, "now {now}, created_at {created_at}");
    }
}
