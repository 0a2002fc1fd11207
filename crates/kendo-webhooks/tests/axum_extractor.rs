//! `VerifiedDelivery` and `IntoResponse for Rejection`, over real HTTP: the
//! extractor answers every bad request exactly as the layer does.

use kendo_test_support::delivery_server as common;

use axum::extract::FromRef;
use axum::http::HeaderMap;
use axum::routing::{any, get, post};
use axum::Router;
use bytes::Bytes;
use common::{client, delivery, send, serve, Answer, SECRET};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use kendo_webhooks::{
    Delivery, KendoWebhookLayer, Rejection, Secret, VerifiedDelivery, Verifier, DEFAULT_BODY_LIMIT,
    REJECTION_HEADER,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone)]
struct AppState {
    verifier: Verifier,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

async fn extracted(VerifiedDelivery(delivery): VerifiedDelivery) -> String {
    describe(&delivery)
}

async fn layered(delivery: Delivery) -> String {
    describe(&delivery)
}

fn describe(delivery: &Delivery) -> String {
    format!(
        "{} {} {} {}",
        delivery.event_name(),
        delivery.event_id(),
        delivery.delivery_id(),
        delivery.secret_label().unwrap_or("-")
    )
}

/// `/extracted` verifies with the extractor, `/layered` with the layer
/// (both accept any method, so the method check is compared too);
/// `/refusing` answers `Err(Rejection::InvalidSignature)` from a handler.
fn app() -> Router {
    let verifier = Verifier::new([
        Secret::new(SECRET).with_label("current"),
        Secret::new("whsec_old").with_label("previous"),
    ])
    .unwrap();
    let layer = KendoWebhookLayer::builder()
        .secret(Secret::new(SECRET).with_label("current"))
        .secret(Secret::new("whsec_old").with_label("previous"))
        .build()
        .unwrap();
    Router::new()
        .route("/extracted", any(extracted))
        .route("/layered", any(layered).layer(layer))
        .route(
            "/refusing",
            post(|| async { Err::<(), _>(Rejection::InvalidSignature) }),
        )
        .route("/health", get(|| async { "up" }))
        .with_state(AppState { verifier })
}

fn request_to(url: &str, edit: impl Fn(&mut Request<Full<Bytes>>)) -> Request<Full<Bytes>> {
    let mut request = delivery("evt_ext", "dlv_ext").request(url).unwrap();
    edit(&mut request);
    request
}

fn same_answer(extracted: &Answer, layered: &Answer, case: &str) {
    assert_eq!(extracted.status, layered.status, "{case}");
    for header in [
        REJECTION_HEADER.as_str(),
        "content-type",
        "allow",
        "retry-after",
    ] {
        assert_eq!(
            extracted.headers.get(header),
            layered.headers.get(header),
            "{case}: {header}"
        );
    }
    assert_eq!(extracted.body, layered.body, "{case}");
}

#[tokio::test]
async fn the_extractor_rejects_every_bad_request_as_the_layer_does() {
    type Edit = fn(&mut Request<Full<Bytes>>);
    let cases: [(&str, Edit, Rejection); 9] = [
        (
            "forged signature",
            |r| {
                r.headers_mut()
                    .insert("x-kendo-signature", "0".repeat(64).parse().unwrap());
            },
            Rejection::InvalidSignature,
        ),
        (
            "no signature",
            |r| {
                r.headers_mut().remove("x-kendo-signature");
            },
            Rejection::MissingSignature,
        ),
        (
            "short signature",
            |r| {
                r.headers_mut()
                    .insert("x-kendo-signature", "abc".parse().unwrap());
            },
            Rejection::MalformedSignature,
        ),
        (
            "GET",
            |r| *r.method_mut() = Method::GET,
            Rejection::MethodNotAllowed,
        ),
        (
            "text/plain",
            |r| {
                r.headers_mut()
                    .insert("content-type", "text/plain".parse().unwrap());
            },
            Rejection::UnsupportedMediaType,
        ),
        (
            "gzip",
            |r| {
                r.headers_mut()
                    .insert("content-encoding", "gzip".parse().unwrap());
            },
            Rejection::UnsupportedEncoding,
        ),
        (
            "no delivery id",
            |r| {
                r.headers_mut().remove("x-kendo-delivery-id");
            },
            Rejection::MissingDeliveryId,
        ),
        (
            "no event header",
            |r| {
                r.headers_mut().remove("x-kendo-event");
            },
            Rejection::MissingEventHeader,
        ),
        (
            "event header names another event",
            |r| {
                r.headers_mut()
                    .insert("x-kendo-event", "ai.training.completed".parse().unwrap());
            },
            Rejection::EventMismatch,
        ),
    ];
    let addr = serve(app()).await;
    let client = client();
    for (case, edit, reason) in cases {
        let extracted = send(
            &client,
            request_to(&format!("http://{addr}/extracted"), edit),
        )
        .await;
        let layered = send(&client, request_to(&format!("http://{addr}/layered"), edit)).await;
        assert_eq!(extracted.reason(), Some(reason.as_str()), "{case}");
        assert_eq!(extracted.status, reason.status(), "{case}");
        same_answer(&extracted, &layered, case);
    }
}

#[tokio::test]
async fn the_extractor_hands_over_a_verified_delivery_with_its_secret_label() {
    let addr = serve(app()).await;
    let old =
        kendo_webhooks::SignedDelivery::builder(delivery("evt_old", "dlv_old").body().clone())
            .event("call.uploaded")
            .delivery_id("dlv_old")
            .sign("whsec_old");
    let client = client();
    let answer = send(
        &client,
        old.request(&format!("http://{addr}/extracted")).unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(&answer.body[..], b"call.uploaded evt_old dlv_old previous");

    // No de-duplication without the layer: the same delivery is handed over again.
    let again = send(
        &client,
        old.request(&format!("http://{addr}/extracted")).unwrap(),
    )
    .await;
    assert_eq!(again.status, StatusCode::OK);
}

#[tokio::test]
async fn a_rejection_returned_by_a_handler_answers_as_the_layer_does() {
    let addr = serve(app()).await;
    let client = client();
    let layered_url = format!("http://{addr}/layered");
    let forged = |r: &mut Request<Full<Bytes>>| {
        r.headers_mut()
            .insert("x-kendo-signature", "0".repeat(64).parse().unwrap());
    };
    let layer_refusal = send(&client, request_to(&layered_url, forged)).await;
    assert_eq!(layer_refusal.reason(), Some("invalid_signature"));

    let handler_refusal = send(
        &client,
        request_to(&format!("http://{addr}/refusing"), |_| {}),
    )
    .await;
    same_answer(&handler_refusal, &layer_refusal, "invalid_signature");
    assert!(!handler_refusal.body.is_empty());
}

#[tokio::test]
async fn verify_delivery_with_the_question_mark_answers_401_with_the_reason() {
    async fn by_hand(
        axum::extract::State(verifier): axum::extract::State<Verifier>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<String, Rejection> {
        let header = |name: &str| headers.get(name).map(|v| v.as_bytes()).unwrap_or_default();
        let delivery = verifier.verify_delivery(
            header("x-kendo-signature"),
            std::str::from_utf8(header("x-kendo-delivery-id")).unwrap_or_default(),
            std::str::from_utf8(header("x-kendo-event")).unwrap_or_default(),
            body,
        )?;
        Ok(delivery.event_id().to_owned())
    }
    let router = Router::new()
        .route("/hook", post(by_hand))
        .with_state(Verifier::new([SECRET]).unwrap());
    let addr = serve(router).await;
    let url = format!("http://{addr}/hook");
    let client = client();
    let good = send(&client, request_to(&url, |_| {})).await;
    assert_eq!(good.status, StatusCode::OK);
    assert_eq!(&good.body[..], b"evt_ext");
    let forged = send(
        &client,
        request_to(&url, |r| {
            r.headers_mut()
                .insert("x-kendo-signature", "1".repeat(64).parse().unwrap());
        }),
    )
    .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert_eq!(forged.reason(), Some("invalid_signature"));
    assert_eq!(
        String::from_utf8(forged.body.to_vec()).unwrap(),
        format!("{}\n", Rejection::InvalidSignature)
    );
}

/// Sends a request by hand: `head` (request line and headers), then
/// `chunks` chunks of 64 KiB when it is chunked, reading the answer's head
/// while writing (the server may answer and close before it has all).
async fn raw(addr: std::net::SocketAddr, head: String, chunks: usize) -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..chunks {
            let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
            framed.extend_from_slice(&chunk);
            framed.extend_from_slice(b"\r\n");
            writer.write_all(&framed).await?;
        }
        if chunks > 0 {
            writer.write_all(b"0\r\n\r\n").await?;
        }
        Ok::<_, std::io::Error>(writer)
    });
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    writing.abort();
    String::from_utf8_lossy(&answer).into_owned()
}

fn head(addr: std::net::SocketAddr, path: &str, length: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         x-kendo-signature: {}\r\nx-kendo-event: call.uploaded\r\nx-kendo-delivery-id: dlv_big\r\n\
         {length}\r\nconnection: close\r\n\r\n",
        "0".repeat(64)
    )
}

/// A chunked body without `Content-Length` is cut off at the limit: the
/// extractor answers 413 instead of buffering all of it, as the layer does.
#[tokio::test]
async fn a_streamed_body_over_the_limit_is_refused() {
    let addr = serve(app()).await;
    let chunks = 2 * DEFAULT_BODY_LIMIT / (64 * 1024);
    for path in ["/extracted", "/layered"] {
        let answer = raw(addr, head(addr, path, "transfer-encoding: chunked"), chunks).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(
            answer.contains("x-kendo-webhook-rejection: payload_too_large"),
            "{path}: {answer}"
        );
    }
}

/// A declared `Content-Length` over the limit is refused before any byte of
/// the body is read.
#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_unread() {
    let addr = serve(app()).await;
    let length = format!("content-length: {}", DEFAULT_BODY_LIMIT + 1);
    for path in ["/extracted", "/layered"] {
        let answer = raw(addr, head(addr, path, &length), 0).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(
            answer.contains("x-kendo-webhook-rejection: payload_too_large"),
            "{path}: {answer}"
        );
    }
}

/// Every reason answers its status and header; the 503s ask to retry.
#[test]
fn every_rejection_answers_its_status_header_and_retry_after() {
    use axum::response::IntoResponse;
    for &reason in Rejection::ALL {
        let response = reason.into_response();
        assert_eq!(response.status(), reason.status(), "{reason}");
        assert_eq!(
            response.headers()[REJECTION_HEADER.as_str()],
            reason.as_str()
        );
        assert_eq!(
            response.headers().contains_key("retry-after"),
            reason.status() == StatusCode::SERVICE_UNAVAILABLE,
            "{reason}"
        );
    }
}

/// A verifier with a replay window gives the extractor that window: a
/// delivery created far from the verifier's clock is refused with the
/// layer's reason, one inside it is handed over.
#[tokio::test]
async fn the_extractor_applies_the_verifiers_replay_window() {
    use std::time::{Duration, UNIX_EPOCH};
    // `delivery()` bodies are created at 2026-03-05T12:00:00Z.
    let created = UNIX_EPOCH + Duration::from_secs(1_772_712_000);
    let verifier = |now| {
        Verifier::new([SECRET])
            .unwrap()
            .with_replay_tolerance(Duration::from_secs(300))
            .with_clock(move || now)
    };
    let client = client();
    for (now, expected) in [
        (created + Duration::from_secs(60), StatusCode::OK),
        (
            created + Duration::from_secs(3600),
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        let router = Router::new()
            .route("/extracted", post(extracted))
            .with_state(AppState {
                verifier: verifier(now),
            });
        let addr = serve(router).await;
        let d = delivery("evt_window", "dlv_window");
        let answer = send(
            &client,
            d.request(&format!("http://{addr}/extracted")).unwrap(),
        )
        .await;
        assert_eq!(answer.status, expected);
        if expected != StatusCode::OK {
            assert_eq!(
                answer.headers[REJECTION_HEADER],
                Rejection::OutsideReplayWindow.as_str()
            );
        }
    }
}
