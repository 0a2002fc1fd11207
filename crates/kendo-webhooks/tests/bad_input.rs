//! Malformed requests over real HTTP: each gets its exact status and stable
//! reason, never reaches the inner service, and never touches the de-dup store.

use kendo_test_support::delivery_server as common;

use std::time::Duration;

use bytes::Bytes;
use common::{client, send, Server, SECRET};
use http::{Method, Request};
use http_body_util::Full;
use kendo_webhooks::{sign, Rejection, TestDelivery};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: usize = 4096;

/// How a case goes over the wire.
#[allow(clippy::large_enum_variant)] // test cases, built once
enum Wire {
    /// A well-formed HTTP request sent by a real client.
    Http(Request<Full<Bytes>>),
    /// Raw bytes on a TCP connection, for what a client library will not send.
    Raw { bytes: Vec<u8>, close_write: bool },
}

struct Case {
    name: &'static str,
    wire: Wire,
    reason: Rejection,
}

fn valid_body() -> Vec<u8> {
    TestDelivery::example("call.uploaded")
        .event_id("evt_bad")
        .created_at("2026-03-05T12:00:00Z")
        .body()
        .to_vec()
}

/// The four headers Kendo sends for `body`, as (name, value) pairs.
fn kendo_headers(body: &[u8], event: &str) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".to_owned()),
        ("x-kendo-signature", sign(SECRET, body)),
        ("x-kendo-event", event.to_owned()),
        ("x-kendo-delivery-id", "dlv_bad_input".to_owned()),
    ]
}

fn build(method: Method, headers: &[(&str, String)], body: Vec<u8>) -> Wire {
    let mut request = Request::builder().method(method).uri("/");
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    Wire::Http(
        request
            .body(Full::new(Bytes::from(body)))
            .expect("valid request"),
    )
}

/// A signed request whose headers are changed by `edit`.
fn signed_with(body: Vec<u8>, edit: impl FnOnce(&mut Vec<(&'static str, String)>)) -> Wire {
    let mut headers = kendo_headers(&body, "call.uploaded");
    edit(&mut headers);
    build(Method::POST, &headers, body)
}

/// A correctly signed request for an arbitrary body.
fn signed(body: &[u8]) -> Wire {
    signed_with(body.to_vec(), |_| {})
}

fn set(headers: &mut Vec<(&'static str, String)>, name: &'static str, value: &str) {
    headers.retain(|(n, _)| *n != name);
    headers.push((name, value.to_owned()));
}

fn remove(headers: &mut Vec<(&'static str, String)>, name: &str) {
    headers.retain(|(n, _)| *n != name);
}

fn raw(head: &str, body: &[u8], close_write: bool) -> Wire {
    let mut bytes = head.replace('\n', "\r\n").into_bytes();
    bytes.extend_from_slice(body);
    Wire::Raw { bytes, close_write }
}

fn cases() -> Vec<Case> {
    use Rejection::*;
    let body = valid_body();
    let sig = sign(SECRET, &body);
    let envelope = |data: &str| {
        format!(r#"{{"id":"evt_x","event":"call.uploaded","created_at":"2026-03-05T12:00:00Z","data":{data}}}"#)
            .into_bytes()
    };
    let mut tampered = body.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x01;
    let big = vec![b' '; LIMIT + 1];
    let raw_headers = |extra: &str| {
        format!(
            "POST / HTTP/1.1\nhost: localhost\ncontent-type: application/json\nx-kendo-signature: {sig}\nx-kendo-event: call.uploaded\nx-kendo-delivery-id: dlv_raw\n{extra}\n"
        )
    };

    vec![
        Case { name: "GET instead of POST", wire: build(Method::GET, &kendo_headers(&body, "call.uploaded"), body.clone()), reason: MethodNotAllowed },
        Case { name: "PUT instead of POST", wire: build(Method::PUT, &kendo_headers(&body, "call.uploaded"), body.clone()), reason: MethodNotAllowed },
        Case { name: "no content type", wire: signed_with(body.clone(), |h| remove(h, "content-type")), reason: UnsupportedMediaType },
        Case { name: "text/plain content type", wire: signed_with(body.clone(), |h| set(h, "content-type", "text/plain")), reason: UnsupportedMediaType },
        Case { name: "application/jsonx content type", wire: signed_with(body.clone(), |h| set(h, "content-type", "application/jsonx")), reason: UnsupportedMediaType },
        Case { name: "form content type", wire: signed_with(body.clone(), |h| set(h, "content-type", "application/x-www-form-urlencoded")), reason: UnsupportedMediaType },
        Case { name: "gzip content encoding", wire: signed_with(body.clone(), |h| h.push(("content-encoding", "gzip".into()))), reason: UnsupportedEncoding },
        Case { name: "missing signature", wire: signed_with(body.clone(), |h| remove(h, "x-kendo-signature")), reason: MissingSignature },
        Case { name: "empty signature", wire: signed_with(body.clone(), |h| set(h, "x-kendo-signature", "")), reason: MalformedSignature },
        Case { name: "signature of non-hex digits", wire: signed_with(body.clone(), |h| set(h, "x-kendo-signature", &"zz".repeat(32))), reason: MalformedSignature },
        Case { name: "signature one digit short", wire: signed_with(body.clone(), |h| set(h, "x-kendo-signature", &sig[..63])), reason: MalformedSignature },
        Case { name: "signature one digit long", wire: signed_with(body.clone(), |h| set(h, "x-kendo-signature", &format!("{sig}0"))), reason: MalformedSignature },
        Case { name: "sha256: prefix with a colon", wire: signed_with(body.clone(), |h| set(h, "x-kendo-signature", &format!("sha256:{sig}"))), reason: MalformedSignature },
        Case { name: "sha1= prefix", wire: signed_with(body.clone(), |h| set(h, "x-kendo-signature", &format!("sha1={sig}"))), reason: MalformedSignature },
        Case { name: "doubled sha256= prefix", wire: signed_with(body.clone(), |h| set(h, "x-kendo-signature", &format!("sha256=sha256={sig}"))), reason: MalformedSignature },
        Case { name: "signature header sent twice", wire: signed_with(body.clone(), |h| h.push(("x-kendo-signature", sig.clone()))), reason: MalformedSignature },
        Case { name: "signature by another secret", wire: signed_with(body.clone(), |h| set(h, "x-kendo-signature", &sign("whsec_other", &body))), reason: InvalidSignature },
        Case { name: "body tampered by one bit", wire: signed_with(tampered, |h| set(h, "x-kendo-signature", &sig)), reason: InvalidSignature },
        Case { name: "body re-serialised with other whitespace", wire: signed_with(String::from_utf8(body.clone()).unwrap().replace(',', ", ").into_bytes(), |h| set(h, "x-kendo-signature", &sig)), reason: InvalidSignature },
        Case { name: "missing delivery id", wire: signed_with(body.clone(), |h| remove(h, "x-kendo-delivery-id")), reason: MissingDeliveryId },
        Case { name: "delivery id of 257 characters", wire: signed_with(body.clone(), |h| set(h, "x-kendo-delivery-id", &"d".repeat(257))), reason: MalformedDeliveryId },
        Case { name: "delivery id with a space", wire: signed_with(body.clone(), |h| set(h, "x-kendo-delivery-id", "dlv 1")), reason: MalformedDeliveryId },
        Case { name: "delivery id sent twice", wire: signed_with(body.clone(), |h| h.push(("x-kendo-delivery-id", "dlv_other".into()))), reason: MalformedDeliveryId },
        Case { name: "missing event header", wire: signed_with(body.clone(), |h| remove(h, "x-kendo-event")), reason: MissingEventHeader },
        Case { name: "event header with a tab", wire: signed_with(body.clone(), |h| set(h, "x-kendo-event", "call\tuploaded")), reason: MalformedEventHeader },
        Case { name: "event header disagrees with the body", wire: signed_with(body.clone(), |h| set(h, "x-kendo-event", "ai.training.completed")), reason: EventMismatch },
        Case { name: "signed body that is not JSON", wire: signed(b"call uploaded, trust me"), reason: MalformedEnvelope },
        Case { name: "signed empty body", wire: signed(b""), reason: MalformedEnvelope },
        Case { name: "signed JSON array", wire: signed(b"[1,2,3]"), reason: MalformedEnvelope },
        Case { name: "signed JSON string", wire: signed(br#""call.uploaded""#), reason: MalformedEnvelope },
        Case { name: "envelope without id", wire: signed(br#"{"event":"call.uploaded","created_at":"2026-03-05T12:00:00Z","data":{"callId":"c"}}"#), reason: MalformedEnvelope },
        Case { name: "envelope without created_at", wire: signed(br#"{"id":"e","event":"call.uploaded","data":{"callId":"c"}}"#), reason: MalformedEnvelope },
        Case { name: "envelope without data", wire: signed(br#"{"id":"e","event":"call.uploaded","created_at":"2026-03-05T12:00:00Z"}"#), reason: MalformedEnvelope },
        Case { name: "numeric event id", wire: signed(br#"{"id":7,"event":"call.uploaded","created_at":"2026-03-05T12:00:00Z","data":{"callId":"c"}}"#), reason: MalformedEnvelope },
        Case { name: "data as a string", wire: signed(&envelope(r#""callId=c""#)), reason: MalformedEnvelope },
        Case { name: "data as an array", wire: signed(&envelope(r#"[{"callId":"c"}]"#)), reason: MalformedEnvelope },
        Case { name: "truncated JSON", wire: signed(&body[..body.len() - 1]), reason: MalformedEnvelope },
        Case { name: "call.uploaded without callId", wire: signed(&envelope(r#"{"agentId":"agent_1"}"#)), reason: MissingObjectId },
        Case { name: "call.uploaded with a numeric callId", wire: signed(&envelope(r#"{"callId":12}"#)), reason: MissingObjectId },
        Case { name: "declared body over the limit", wire: signed(&big), reason: PayloadTooLarge },
        Case { name: "chunked body over the limit, no content-length", wire: raw(&raw_headers("transfer-encoding: chunked\n"), format!("{:x}\r\n{}\r\n0\r\n\r\n", big.len(), " ".repeat(big.len())).as_bytes(), false), reason: PayloadTooLarge },
        Case { name: "body cut off before its declared length", wire: raw(&raw_headers(&format!("content-length: {}\n", body.len())), &body[..body.len() / 2], true), reason: BodyReadFailed },
        Case { name: "body that never arrives", wire: raw(&raw_headers("content-length: 100\n"), b"{", false), reason: BodyTimeout },
    ]
}

/// Sends raw bytes and reads the status code and rejection header back.
async fn send_raw(
    addr: std::net::SocketAddr,
    bytes: &[u8],
    close_write: bool,
) -> (u16, Option<String>) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(bytes).await.expect("write");
        if close_write {
            stream.shutdown().await.expect("half-close");
        }
        let mut response = Vec::new();
        let mut buf = [0u8; 1024];
        while !response.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "connection closed before a response: {:?}",
                String::from_utf8_lossy(&response)
            );
            response.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text[9..12].parse().expect("status code");
        let reason = text.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-kendo-webhook-rejection: ")
                .map(str::to_owned)
        });
        (status, reason)
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("the server answers within 10 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_request_gets_its_status_and_touches_nothing() {
    let server =
        Server::start(|b| b.body_limit(LIMIT).read_timeout(Duration::from_millis(300))).await;
    let client = client();
    let cases = cases();
    assert!(
        cases.len() >= 25,
        "the suite must keep at least 25 distinct cases"
    );

    let mut failures = Vec::new();
    for case in cases {
        let (status, reason) = match case.wire {
            Wire::Http(mut request) => {
                *request.uri_mut() = server.url().parse().unwrap();
                let answer = send(&client, request).await;
                (answer.status.as_u16(), answer.reason().map(str::to_owned))
            }
            Wire::Raw { bytes, close_write } => send_raw(server.addr, &bytes, close_write).await,
        };
        let expected = (
            case.reason.status().as_u16(),
            Some(case.reason.as_str().to_owned()),
        );
        if (status, reason.clone()) != expected {
            failures.push(format!(
                "{}: got {status} {reason:?}, want {expected:?}",
                case.name
            ));
        }
        if server.sink.calls() != 0 || server.store.touches() != 0 {
            failures.push(format!(
                "{}: inner called {} times, store touched {} times",
                case.name,
                server.sink.calls(),
                server.store.touches()
            ));
            break;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn rejections_explain_themselves_without_leaking_the_signature() {
    let server = Server::start(|b| b).await;
    let body = valid_body();
    let expected_signature = sign(SECRET, &body);
    let Wire::Http(mut request) =
        signed_with(body, |h| set(h, "x-kendo-signature", &sign("wrong", b"x")))
    else {
        unreachable!()
    };
    *request.uri_mut() = server.url().parse().unwrap();
    let answer = send(&client(), request).await;
    let text = String::from_utf8(answer.body.to_vec()).unwrap();
    assert_eq!(answer.status, 401);
    assert!(text.starts_with("invalid_signature: "), "{text}");
    assert!(
        !text.contains(&expected_signature) && !text.contains(SECRET),
        "{text}"
    );
    assert_eq!(answer.headers["content-type"], "text/plain; charset=utf-8");
}

#[tokio::test]
async fn method_not_allowed_says_which_method_is() {
    let server = Server::start(|b| b).await;
    let request = Request::get(server.url())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = send(&client(), request).await;
    assert_eq!(answer.status, 405);
    assert_eq!(answer.headers["allow"], "POST");
}

#[tokio::test]
async fn the_layer_itself_says_which_method_is_allowed_and_only_on_405() {
    // Without axum's method router, which adds `Allow` to any 405 itself.
    use tower::{Layer, ServiceExt};
    let layer = kendo_webhooks::KendoWebhookLayer::new(SECRET).unwrap();
    let inner = tower::service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
    });
    let service = layer.layer(inner);
    let get = Request::get("/").body(Full::new(Bytes::new())).unwrap();
    let answer = service.clone().oneshot(get).await.unwrap();
    assert_eq!(answer.status(), 405);
    assert_eq!(answer.headers()["allow"], "POST");
    let unsigned = Request::post("/")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(valid_body())))
        .unwrap();
    let answer = service.oneshot(unsigned).await.unwrap();
    assert_eq!(answer.status(), Rejection::MissingSignature.status());
    assert!(answer.headers().get("allow").is_none(), "{answer:?}");
}
