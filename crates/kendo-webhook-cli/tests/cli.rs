//! The `kendo-webhook` binary as a user runs it: real processes, real HTTP
//! servers on 127.0.0.1, signatures checked against an independent HMAC.
//!
//! (About 1550 lines, one file on purpose: every subcommand of the binary. Each file under
//! `tests/` is a test binary of its own, built and linked separately on
//! CI's two cores; the scenarios share their launchers and helpers here.)

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Extension, Router};
use hmac::{Hmac, Mac};
use kendo_webhooks::{Delivery, KendoWebhookLayer, Outcome, Rejection, Report, TestDelivery};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_kendo-webhook");
const SECRET: &str = "whsec_cli_test_secret";
const PATH: &str = "/webhooks/kendo";
/// No run of the binary may take longer than this (3 attempts take ~3 s).
const PROCESS_DEADLINE: Duration = Duration::from_secs(60);

/// HMAC-SHA256 computed here with the `hmac` and `sha2` crates directly,
/// independent of the crate's own `sign`.
fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The lines `send` printed for its attempts.
    fn attempts(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with("attempt "))
            .collect()
    }

    fn assert_code(&self, code: i32) {
        assert_eq!(self.code, Some(code), "{self:#?}");
    }

    fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs the binary with `args`, `stdin` piped in (or closed), `env` set and
/// no inherited secret or proxy; kills it after [`PROCESS_DEADLINE`].
fn run(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(BIN);
    command.args(args);
    for var in [
        "KENDO_WEBHOOK_SECRET",
        "KENDO_WEBHOOK_SECRET_PREVIOUS",
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("the kendo-webhook binary starts");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        let input = input.to_vec();
        std::thread::spawn(move || {
            // The binary may exit before reading everything (usage errors).
            let _ = pipe.write_all(&input);
        });
    }
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).map(|_| text)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the binary") {
            break status;
        }
        if started.elapsed() > PROCESS_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kendo-webhook {args:?} still running after {PROCESS_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code(),
        stdout: out.join().unwrap().expect("stdout is UTF-8"),
        stderr: err.join().unwrap().expect("stderr is UTF-8"),
    }
}

/// [`run`] off the async runtime, so a server on the same runtime can answer.
async fn run_async(args: Vec<String>, stdin: Option<Vec<u8>>, env: Vec<(String, String)>) -> Run {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run(&args, stdin.as_deref(), &env)
    })
    .await
    .expect("the runner thread finishes")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

fn write_temp(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(bytes).expect("write temp file");
    file.flush().expect("flush temp file");
    file
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// One request as a plain recording server saw it.
struct Seen {
    at: Instant,
    headers: HeaderMap,
    body: Bytes,
}

/// A server without the layer: records every request, answers 500 to the
/// first `fail_first` and 200 afterwards.
#[derive(Default)]
struct Recorder {
    fail_first: usize,
    seen: Mutex<Vec<Seen>>,
}

async fn record(State(rec): State<Arc<Recorder>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut seen = rec.seen.lock().unwrap();
    seen.push(Seen {
        at: Instant::now(),
        headers,
        body,
    });
    if seen.len() <= rec.fail_first {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn recording_server(fail_first: usize) -> (Arc<Recorder>, String) {
    let rec = Arc::new(Recorder {
        fail_first,
        ..Recorder::default()
    });
    let app = Router::new()
        .route(PATH, post(record))
        .with_state(rec.clone());
    let addr = serve(app).await;
    (rec, format!("http://{addr}{PATH}"))
}

/// What the server behind the real layer saw: deliveries that reached the
/// handler, and the reasons of the requests it rejected.
#[derive(Default)]
struct LayerLog {
    deliveries: Mutex<Vec<Delivery>>,
    rejected: Mutex<Vec<Rejection>>,
}

async fn accept(
    State(log): State<Arc<LayerLog>>,
    Extension(delivery): Extension<Delivery>,
) -> StatusCode {
    log.deliveries.lock().unwrap().push(delivery);
    StatusCode::OK
}

/// `POST /webhooks/kendo` behind a [`KendoWebhookLayer`] keyed with `secret`.
async fn layer_server(secret: &str) -> (Arc<LayerLog>, String) {
    let log = Arc::new(LayerLog::default());
    let hook_log = log.clone();
    let layer = KendoWebhookLayer::builder()
        .secret(secret)
        .on_outcome(move |r: &Report<'_>| {
            if let Outcome::Rejected(reason) = r.outcome() {
                hook_log.rejected.lock().unwrap().push(*reason);
            }
        })
        .build()
        .unwrap();
    let app = Router::new()
        .route(PATH, post(accept))
        .layer(layer)
        .with_state(log.clone());
    let addr = serve(app).await;
    (log, format!("http://{addr}{PATH}"))
}

/// An app shaped like one behind `kendo-webhooks-inbox`: the first copy of
/// an event id is answered `x-kendo-inbox: stored`, later ones `duplicate`;
/// an `agentName` of `Broken` is answered 500. Records each request.
#[derive(Default)]
struct InboxApp {
    events: Mutex<HashSet<String>>,
    seen: Mutex<Vec<Seen>>,
}

async fn inbox(
    State(app): State<Arc<InboxApp>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let value: Value = serde_json::from_slice(&body).unwrap_or_default();
    app.seen.lock().unwrap().push(Seen {
        at: Instant::now(),
        headers,
        body,
    });
    if value["data"]["agentName"] == "Broken" {
        return (StatusCode::INTERNAL_SERVER_ERROR, "handler failed").into_response();
    }
    let id = value["id"].as_str().unwrap_or_default().to_owned();
    let answer = if app.events.lock().unwrap().insert(id) {
        "stored"
    } else {
        "duplicate"
    };
    (
        StatusCode::OK,
        [("x-kendo-inbox", answer), ("x-other", "not shown")],
        format!("{answer}\n in the inbox"),
    )
        .into_response()
}

async fn inbox_server() -> (Arc<InboxApp>, String) {
    let app = Arc::new(InboxApp::default());
    let router = Router::new()
        .route(PATH, post(inbox))
        .with_state(app.clone());
    let addr = serve(router).await;
    (app, format!("http://{addr}{PATH}"))
}

/// The JSON bodies a server received.
fn bodies(seen: &[Seen]) -> Vec<Value> {
    seen.iter()
        .map(|s| serde_json::from_slice(&s.body).expect("a JSON body"))
        .collect()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("header {name} was sent"))
        .to_str()
        .unwrap()
}

// ---- sign -------------------------------------------------------------------

#[test]
fn sign_matches_the_rfc_4231_test_vector() {
    // RFC 4231, test case 2: key "Jefe".
    let file = write_temp(b"what do ya want for nothing?");
    let run = run(
        &["sign", "--secret", "Jefe", file.path().to_str().unwrap()],
        None,
        &[],
    );
    run.assert_code(0);
    assert_eq!(
        run.stdout,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843\n"
    );
}

#[test]
fn sign_signs_the_exact_bytes_of_a_file_including_a_trailing_newline() {
    let body: &[u8] = b"{\"id\":\"evt_\xff\x00\",\r\n\t\"x\":\"\xc3\xa9\"}\n";
    let file = write_temp(body);
    let run_with = run(
        &["sign", "--secret", SECRET, file.path().to_str().unwrap()],
        None,
        &[],
    );
    run_with.assert_code(0);
    assert_eq!(
        run_with.stdout.trim_end(),
        hmac_hex(SECRET.as_bytes(), body)
    );

    let trimmed = write_temp(&body[..body.len() - 1]);
    let run_without = run(
        &["sign", "--secret", SECRET, trimmed.path().to_str().unwrap()],
        None,
        &[],
    );
    run_without.assert_code(0);
    assert_eq!(
        run_without.stdout.trim_end(),
        hmac_hex(SECRET.as_bytes(), &body[..body.len() - 1])
    );
    assert_ne!(
        run_with.stdout, run_without.stdout,
        "the trailing newline is signed"
    );
}

#[test]
fn sign_reads_stdin_with_dash_or_no_file_and_the_secret_from_the_environment() {
    let body: &[u8] = b"\n\n{\"a\": [1, 2, 3]}\r\n\x01";
    let expected = hmac_hex(SECRET.as_bytes(), body);
    let dash = run(&["sign", "--secret", SECRET, "-"], Some(body), &[]);
    dash.assert_code(0);
    assert_eq!(dash.stdout.trim_end(), expected);
    let from_env = run(&["sign"], Some(body), &[("KENDO_WEBHOOK_SECRET", SECRET)]);
    from_env.assert_code(0);
    assert_eq!(from_env.stdout.trim_end(), expected);
}

#[test]
fn a_missing_secret_is_a_usage_error_naming_the_flag_and_the_variable() {
    let file = write_temp(b"{}");
    let path = file.path().to_str().unwrap();
    for args in [
        vec!["sign", path],
        vec!["verify", "--signature", "00", path],
        vec!["send", "--url", "http://127.0.0.1:9/webhooks/kendo"],
    ] {
        let run = run(&args, None, &[]);
        run.assert_code(2);
        assert!(run.stderr.contains("--secret"), "{args:?}: {run:#?}");
        assert!(
            run.stderr.contains("KENDO_WEBHOOK_SECRET"),
            "{args:?}: {run:#?}"
        );
        assert!(
            !run.stdout.contains("attempt"),
            "{args:?} must not send: {run:#?}"
        );
    }
    let empty = run(&["sign", "--secret", "", path], None, &[]);
    empty.assert_code(2);
    assert!(empty.stderr.contains("empty"), "{empty:#?}");
}

#[test]
fn an_unreadable_file_is_an_io_error_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let missing = missing.to_str().unwrap();
    for args in [
        vec!["sign", "--secret", SECRET, missing],
        vec!["verify", "--secret", SECRET, "--signature", "00", missing],
    ] {
        let run = run(&args, None, &[]);
        run.assert_code(2);
        assert!(run.stderr.contains(missing), "{run:#?}");
        assert!(run.stdout.is_empty(), "{run:#?}");
    }
}

// ---- verify -----------------------------------------------------------------

#[test]
fn verify_accepts_a_correct_signature_in_any_accepted_spelling() {
    let body: &[u8] = b"{\"id\":\"evt_1\"}\n";
    let file = write_temp(body);
    let path = file.path().to_str().unwrap();
    let signature = hmac_hex(SECRET.as_bytes(), body);
    for spelling in [
        signature.clone(),
        signature.to_ascii_uppercase(),
        format!("sha256={signature}"),
    ] {
        let run = run(
            &["verify", "--secret", SECRET, "--signature", &spelling, path],
            None,
            &[],
        );
        run.assert_code(0);
        assert_eq!(run.stdout, "ok (secret current)\n", "{spelling}");
    }
    let stdin = run(
        &["verify", "--secret", SECRET, "--signature", &signature],
        Some(body),
        &[],
    );
    stdin.assert_code(0);
    assert_eq!(stdin.stdout, "ok (secret current)\n");
}

#[test]
fn verify_reports_a_match_of_the_previous_secret() {
    let body: &[u8] = b"{}";
    let signature = hmac_hex(b"whsec_old", body);
    let run = run(
        &[
            "verify",
            "--secret",
            SECRET,
            "--previous-secret",
            "whsec_old",
            "--signature",
            &signature,
        ],
        Some(body),
        &[],
    );
    run.assert_code(0);
    assert_eq!(run.stdout, "ok (secret previous)\n");
}

#[test]
fn verify_rejects_a_wrong_signature_with_a_one_line_reason() {
    let body: &[u8] = b"{\"id\":\"evt_1\"}\n";
    let file = write_temp(body);
    let path = file.path().to_str().unwrap();
    let wrong_secret = hmac_hex(b"another secret", body);
    let without_newline = hmac_hex(SECRET.as_bytes(), &body[..body.len() - 1]);
    for signature in [wrong_secret, without_newline] {
        let run = run(
            &[
                "verify",
                "--secret",
                SECRET,
                "--signature",
                &signature,
                path,
            ],
            None,
            &[],
        );
        run.assert_code(1);
        assert_eq!(run.stdout.lines().count(), 1, "{run:#?}");
        assert!(run.stdout.starts_with("invalid_signature: "), "{run:#?}");
        assert!(
            !run.output().contains(SECRET),
            "the secret is never printed: {run:#?}"
        );
    }
}

#[test]
fn verify_rejects_a_malformed_signature() {
    let body: &[u8] = b"{}";
    let good = hmac_hex(SECRET.as_bytes(), body);
    for signature in [&good[..63], "not hex at all", &format!("sha1={good}"), ""] {
        let run = run(
            &["verify", "--secret", SECRET, "--signature", signature],
            Some(body),
            &[],
        );
        run.assert_code(1);
        assert_eq!(run.stdout.lines().count(), 1, "{run:#?}");
        assert!(
            run.stdout.starts_with("malformed_signature: "),
            "{signature:?}: {run:#?}"
        );
    }
}

// ---- send -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_delivers_a_verified_delivery_to_the_layer() {
    let (log, url) = layer_server(SECRET).await;
    let args = strings(&[
        "send",
        "--url",
        &url,
        "--secret",
        SECRET,
        "--event",
        "ai.training.completed",
        "--event-id",
        "evt_cli_1",
        "--delivery-id",
        "dlv_cli_1",
        "--real",
    ]);
    let run = run_async(args.clone(), None, vec![]).await;
    run.assert_code(0);
    assert!(run.stdout.contains("attempt 1/3: 200 OK in "), "{run:#?}");
    assert!(!run.stdout.contains("attempt 2/3"), "{run:#?}");
    assert!(
        !run.output().contains(SECRET),
        "the secret is never printed: {run:#?}"
    );

    let deliveries = log.deliveries.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 1);
    let delivery = &deliveries[0];
    assert_eq!(delivery.event_name(), "ai.training.completed");
    assert_eq!(delivery.event_id(), "evt_cli_1");
    assert_eq!(delivery.delivery_id(), "dlv_cli_1");
    assert!(!delivery.is_test());
    match delivery.event() {
        kendo_webhooks::Event::AiTrainingCompleted(training) => {
            assert_eq!(training.training_id, "training_evt_cli_1")
        }
        other => panic!("expected a training, got {other:?}"),
    }
    assert!(log.rejected.lock().unwrap().is_empty());

    // The same ids again: the layer answers 200 as a duplicate, nothing reaches the handler.
    let again = run_async(args, None, vec![]).await;
    again.assert_code(0);
    assert!(
        again.stdout.contains("x-kendo-webhook-duplicate: true"),
        "{again:#?}"
    );
    assert!(
        again
            .stdout
            .contains("\nduplicate: 200 OK for delivery dlv_cli_1 ("),
        "{again:#?}"
    );
    assert!(!again.stdout.contains("accepted"), "{again:#?}");
    assert_eq!(log.deliveries.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_with_test_marks_the_delivery_as_a_test() {
    let (log, url) = layer_server(SECRET).await;
    let run = run_async(
        strings(&["send", "--url", &url, "--test"]),
        None,
        vec![("KENDO_WEBHOOK_SECRET".into(), SECRET.into())],
    )
    .await;
    run.assert_code(0);
    let deliveries = log.deliveries.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 1, "{run:#?}");
    let delivery = &deliveries[0];
    assert!(delivery.is_test());
    assert_eq!(delivery.event_name(), "call.uploaded");
    let body: Value = serde_json::from_slice(delivery.body()).unwrap();
    assert_eq!(body["data"]["_isTest"], json!(true));
    // Fresh ids, in Kendo's shape.
    assert!(
        delivery.event_id().starts_with("evt_"),
        "{}",
        delivery.event_id()
    );
    assert!(
        delivery.delivery_id().starts_with("dlv_"),
        "{}",
        delivery.delivery_id()
    );
    assert!(delivery.event_id().len() > "evt_".len() + 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_sends_a_test_delivery_unless_asked_for_a_real_one() {
    let (log, url) = layer_server(SECRET).await;
    let env = vec![("KENDO_WEBHOOK_SECRET".to_owned(), SECRET.to_owned())];
    let default = run_async(strings(&["send", "--url", &url]), None, env.clone()).await;
    default.assert_code(0);
    assert!(default.stdout.contains(", test delivery"), "{default:#?}");
    let real = run_async(
        strings(&["send", "--url", &url, "--real"]),
        None,
        env.clone(),
    )
    .await;
    real.assert_code(0);
    assert!(real.stdout.contains(", real delivery"), "{real:#?}");
    let deliveries = log.deliveries.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 2);
    assert!(deliveries[0].is_test(), "the default is a test delivery");
    assert!(!deliveries[1].is_test(), "--real is not");
    let real_body: Value = serde_json::from_slice(deliveries[1].body()).unwrap();
    assert!(real_body["data"].get("_isTest").is_none(), "{real_body}");

    let both = run_async(
        strings(&["send", "--url", &url, "--real", "--test"]),
        None,
        env,
    )
    .await;
    both.assert_code(2);
    assert_eq!(log.deliveries.lock().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_set_overrides_single_fields_of_data_with_json_types() {
    let (rec, url) = recording_server(0).await;
    let run = run_async(
        strings(&[
            "send",
            "--url",
            &url,
            "--secret",
            SECRET,
            "--event-id",
            "evt_set",
            "--set",
            "agentName=Bob",
            "--set",
            "aiScore=72",
            "--set",
            "duration=null",
            "--set",
            "meta.source=cli",
            "--set",
            "meta.retried=false",
            "--set",
            "note=\"72\"",
        ]),
        None,
        vec![],
    )
    .await;
    run.assert_code(0);
    let seen = rec.seen.lock().unwrap();
    let body = &bodies(&seen)[0];
    let data = &body["data"];
    assert_eq!(data["agentName"], json!("Bob"));
    assert_eq!(data["aiScore"], json!(72), "numbers stay numbers");
    assert_eq!(data["duration"], Value::Null);
    assert_eq!(data["meta"], json!({ "source": "cli", "retried": false }));
    assert_eq!(data["note"], json!("72"));
    // The rest of Kendo's example is kept.
    assert_eq!(data["callId"], json!("call_evt_set"));
    assert_eq!(data["userId"], json!("user_1"));
    assert_eq!(data["_isTest"], json!(true));
    // The envelope keeps Kendo's key order.
    let text = String::from_utf8_lossy(&seen[0].body).into_owned();
    assert!(
        text.starts_with("{\"id\":\"evt_set\",\"event\":\"call.uploaded\",\"created_at\":"),
        "{text}"
    );
    assert_eq!(
        header(&seen[0].headers, "x-kendo-signature"),
        hmac_hex(SECRET.as_bytes(), &seen[0].body)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_set_applies_on_top_of_data_from_stdin() {
    let (rec, url) = recording_server(0).await;
    let run = run_async(
        strings(&[
            "send", "--url", &url, "--secret", SECRET, "--data", "-", "--set", "a.b=2", "--real",
        ]),
        Some(br#"{"a": {"c": 1}, "callId": "c_1"}"#.to_vec()),
        vec![],
    )
    .await;
    run.assert_code(0);
    let body = &bodies(&rec.seen.lock().unwrap())[0];
    assert_eq!(
        body["data"],
        json!({ "a": { "c": 1, "b": 2 }, "callId": "c_1" })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_count_makes_a_batch_with_fresh_ids_round_robin_agents_and_scores_in_range() {
    let (rec, url) = recording_server(0).await;
    let batch = |seed: &str| {
        run_async(
            strings(&[
                "send",
                "--url",
                &url,
                "--secret",
                SECRET,
                "--real",
                "--count",
                "7",
                "--agents",
                "Ana,Bob Lee,Chen",
                "--scores",
                "40..45",
                "--seed",
                seed,
            ]),
            None,
            vec![],
        )
    };
    let run = batch("7").await;
    run.assert_code(0);
    assert!(
        run.stdout.contains(": 7 deliveries of call.uploaded"),
        "{run:#?}"
    );
    assert!(run.stdout.contains("--seed 7 repeats them"), "{run:#?}");
    assert_eq!(
        run.stdout.lines().last(),
        Some("summary: 7 deliveries: 7 accepted; last answers: 200 OK ×7"),
        "{run:#?}"
    );
    let first: Vec<Value> = bodies(&rec.seen.lock().unwrap());
    assert_eq!(first.len(), 7);
    let names: Vec<&str> = first
        .iter()
        .map(|b| b["data"]["agentName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Ana", "Bob Lee", "Chen", "Ana", "Bob Lee", "Chen", "Ana"]
    );
    assert_eq!(first[1]["data"]["agentId"], json!("agent_bob_lee"));
    let scores: Vec<String> = first
        .iter()
        .map(|b| {
            let score = b["data"]["aiScore"]
                .as_str()
                .expect("aiScore is a string, as Kendo sends it");
            let n: u32 = score.parse().unwrap();
            assert!((40..=45).contains(&n), "{score}");
            score.to_owned()
        })
        .collect();
    assert!(first.iter().all(|b| b["data"].get("_isTest").is_none()));
    let event_ids: HashSet<&str> = first.iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(event_ids.len(), 7, "distinct event ids");
    let delivery_ids: HashSet<String> = rec
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| header(&s.headers, "x-kendo-delivery-id").to_owned())
        .collect();
    assert_eq!(delivery_ids.len(), 7, "distinct delivery ids");
    for seen in rec.seen.lock().unwrap().iter() {
        assert_eq!(
            header(&seen.headers, "x-kendo-signature"),
            hmac_hex(SECRET.as_bytes(), &seen.body)
        );
    }

    // The same seed gives the same scores, with fresh ids.
    batch("7").await.assert_code(0);
    let again: Vec<Value> = bodies(&rec.seen.lock().unwrap())[7..].to_vec();
    let again_scores: Vec<&str> = again
        .iter()
        .map(|b| b["data"]["aiScore"].as_str().unwrap())
        .collect();
    assert_eq!(again_scores, scores);
    assert!(again
        .iter()
        .all(|b| !event_ids.contains(b["id"].as_str().unwrap())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_shows_the_apps_inbox_answer_and_never_calls_a_duplicate_accepted() {
    let (app, url) = inbox_server().await;
    let send = || {
        run_async(
            strings(&[
                "send",
                "--url",
                &url,
                "--secret",
                SECRET,
                "--event-id",
                "evt_twice",
            ]),
            None,
            vec![],
        )
    };
    let first = send().await;
    first.assert_code(0);
    assert!(
        first.attempts()[0].contains(": 200 OK in ")
            && first.attempts()[0].ends_with(", x-kendo-inbox: stored, body: stored in the inbox"),
        "{first:#?}"
    );
    assert!(
        first.stdout.contains("\nstored: 200 OK for delivery dlv_"),
        "{first:#?}"
    );
    assert!(
        !first.stdout.contains("x-other"),
        "only x-kendo-* headers: {first:#?}"
    );

    // The same event under a new delivery id: the app's inbox says duplicate.
    let second = send().await;
    second.assert_code(0);
    assert!(
        second.attempts()[0].ends_with(", x-kendo-inbox: duplicate, body: duplicate in the inbox"),
        "{second:#?}"
    );
    assert!(
        second
            .stdout
            .contains("\nduplicate: 200 OK for delivery dlv_"),
        "{second:#?}"
    );
    assert!(!second.stdout.contains("accepted"), "{second:#?}");
    assert!(!second.stdout.contains("stored:"), "{second:#?}");
    assert_eq!(app.seen.lock().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_count_summarises_stored_duplicate_and_given_up_deliveries() {
    let (app, url) = inbox_server().await;
    // Deliveries for the agent "Broken" are answered 500; one attempt each.
    let run = run_async(
        strings(&[
            "send",
            "--url",
            &url,
            "--secret",
            SECRET,
            "--count",
            "4",
            "--agents",
            "Ana,Broken,Chen,Broken",
            "--attempts",
            "1",
        ]),
        None,
        vec![],
    )
    .await;
    run.assert_code(1);
    assert_eq!(
        run.stdout.lines().last(),
        Some("summary: 4 deliveries: 2 stored, 2 given up; last answers: 200 OK ×2, 500 Internal Server Error ×2"),
        "{run:#?}"
    );
    assert!(run.stdout.contains("[2/4] event id evt_"), "{run:#?}");
    assert_eq!(app.seen.lock().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_refuses_bad_set_scores_count_and_agents_as_usage_errors() {
    let (rec, url) = recording_server(0).await;
    for (flag, extra) in [
        ("--set", vec!["--set", "noequals"]),
        ("--set", vec!["--set", "=72"]),
        ("--set", vec!["--set", "agentName.first=Bob"]),
        ("--scores", vec!["--scores", "95..40"]),
        ("--scores", vec!["--scores", "40..101"]),
        ("--scores", vec!["--scores", "forty"]),
        ("--count", vec!["--count", "0"]),
        ("--count", vec!["--count", "two"]),
        ("--agents", vec!["--agents", "Ana,,Bob"]),
        ("--event-id", vec!["--count", "2", "--event-id", "evt_1"]),
        (
            "--delivery-id",
            vec!["--count", "2", "--delivery-id", "dlv_1"],
        ),
        ("--set", vec!["--raw", "-", "--set", "a=1"]),
    ] {
        let mut args = strings(&["send", "--url", &url, "--secret", SECRET]);
        args.extend(strings(&extra));
        let run = run_async(args, Some(b"{}".to_vec()), vec![]).await;
        run.assert_code(2);
        assert!(run.stderr.contains(flag), "{extra:?}: {run:#?}");
        assert!(!run.stdout.contains("attempt"), "{extra:?}: {run:#?}");
        assert!(!run.stderr.contains("panicked"), "{extra:?}: {run:#?}");
    }
    assert!(rec.seen.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_wraps_data_from_stdin_in_the_envelope_with_all_four_headers() {
    let (rec, url) = recording_server(0).await;
    let data = json!({ "callId": "c_stdin", "duration": 12, "nested": { "k": [1, 2] } });
    let run = run_async(
        strings(&[
            "send",
            "--url",
            &url,
            "--secret",
            SECRET,
            "--data",
            "-",
            "--test",
            "--event-id",
            "evt_stdin",
            "--delivery-id",
            "dlv_stdin",
        ]),
        Some(data.to_string().into_bytes()),
        vec![],
    )
    .await;
    run.assert_code(0);
    let seen = rec.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(header(&request.headers, "content-type"), "application/json");
    assert_eq!(header(&request.headers, "x-kendo-event"), "call.uploaded");
    assert_eq!(header(&request.headers, "x-kendo-delivery-id"), "dlv_stdin");
    assert_eq!(
        header(&request.headers, "x-kendo-signature"),
        hmac_hex(SECRET.as_bytes(), &request.body)
    );
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    let mut expected_data = data.clone();
    expected_data["_isTest"] = json!(true);
    assert_eq!(body["data"], expected_data);
    assert_eq!(body["id"], "evt_stdin");
    assert_eq!(body["event"], "call.uploaded");
    let created_at = body["created_at"].as_str().expect("created_at is a string");
    time::OffsetDateTime::parse(created_at, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("created_at {created_at:?} is RFC 3339: {e}"));
    assert_eq!(body.as_object().unwrap().len(), 4, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_refuses_data_that_is_not_a_json_object_without_sending() {
    let (rec, url) = recording_server(0).await;
    for input in [&b"[1, 2]"[..], b"{not json", b"\"text\""] {
        let run = run_async(
            strings(&["send", "--url", &url, "--secret", SECRET, "--data", "-"]),
            Some(input.to_vec()),
            vec![],
        )
        .await;
        run.assert_code(2);
        assert!(run.stderr.contains("--data"), "{run:#?}");
    }
    assert!(rec.seen.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_retries_with_the_same_delivery_and_kendos_backoff_until_a_2xx() {
    let (rec, url) = recording_server(2).await;
    let run = run_async(
        strings(&["send", "--url", &url, "--secret", SECRET]),
        None,
        vec![],
    )
    .await;
    run.assert_code(0);
    let attempts: Vec<&str> = run.attempts();
    assert_eq!(attempts.len(), 3, "{run:#?}");
    assert!(
        attempts[0].starts_with("attempt 1/3: 500 Internal Server Error in "),
        "{run:#?}"
    );
    assert!(
        attempts[1].starts_with("attempt 2/3: 500 Internal Server Error in "),
        "{run:#?}"
    );
    assert!(
        attempts[2].starts_with("attempt 3/3: 200 OK in "),
        "{run:#?}"
    );

    let seen = rec.seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    let first = &seen[0];
    let delivery_id = header(&first.headers, "x-kendo-delivery-id");
    assert!(delivery_id.starts_with("dlv_"), "{delivery_id}");
    for request in seen.iter() {
        assert_eq!(header(&request.headers, "x-kendo-delivery-id"), delivery_id);
        assert_eq!(
            request.body, first.body,
            "every attempt sends the same bytes"
        );
        assert_eq!(
            header(&request.headers, "x-kendo-signature"),
            hmac_hex(SECRET.as_bytes(), &request.body)
        );
    }
    // Lower bounds of the documented backoff (about 1 s, then 2 s).
    let gaps = [seen[1].at - seen[0].at, seen[2].at - seen[1].at];
    assert!(gaps[0] >= Duration::from_millis(900), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(1800), "{gaps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_gives_up_after_exactly_three_attempts_and_prints_the_rejection() {
    // The server's secret differs: every attempt is rejected as invalid_signature.
    let (log, url) = layer_server("whsec_the_receivers_secret").await;
    let run = run_async(
        strings(&["send", "--url", &url, "--secret", SECRET]),
        None,
        vec![],
    )
    .await;
    run.assert_code(1);
    let attempts: Vec<&str> = run.attempts();
    assert_eq!(attempts.len(), 3, "{run:#?}");
    for (n, line) in attempts.iter().enumerate() {
        assert!(
            line.starts_with(&format!("attempt {}/3: 401 Unauthorized in ", n + 1)),
            "{line}"
        );
        assert!(
            line.contains("x-kendo-webhook-rejection: invalid_signature"),
            "{line}"
        );
        // The header's explanation, not again from the layer's body.
        assert_eq!(
            line.matches(Rejection::InvalidSignature.description())
                .count(),
            1,
            "{line}"
        );
    }
    assert!(run.stderr.contains("no 2xx after 3 attempts"), "{run:#?}");
    assert_eq!(
        *log.rejected.lock().unwrap(),
        vec![Rejection::InvalidSignature; 3]
    );
    assert!(log.deliveries.lock().unwrap().is_empty());
}

/// Records the arrival of each request and never answers it.
async fn never_answer(State(arrivals): State<Arc<Mutex<Vec<Instant>>>>) -> StatusCode {
    arrivals.lock().unwrap().push(Instant::now());
    std::future::pending::<()>().await;
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_times_out_each_attempt_after_10_s_and_retries() {
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route(PATH, post(never_answer))
        .with_state(arrivals.clone());
    let url = format!("http://{}{PATH}", serve(app).await);
    let run = run_async(
        strings(&["send", "--url", &url, "--secret", SECRET]),
        None,
        vec![],
    )
    .await;
    run.assert_code(1);
    let attempts: Vec<&str> = run.attempts();
    assert_eq!(attempts.len(), 3, "{run:#?}");
    assert!(
        attempts.iter().all(|l| l.contains("timed out after")),
        "{run:#?}"
    );
    // Progress while waiting: a line every 2 s of each 10 s attempt.
    assert!(run.stderr.contains("waiting for the answer: "), "{run:#?}");
    let arrivals = arrivals.lock().unwrap();
    assert_eq!(arrivals.len(), 3);
    // Lower bounds: a 10 s timeout, then the 1 s and 2 s waits.
    let gaps = [arrivals[1] - arrivals[0], arrivals[2] - arrivals[1]];
    assert!(gaps[0] >= Duration::from_millis(10_800), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(11_800), "{gaps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_counts_a_refused_connection_as_a_failed_attempt() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}{PATH}");
    let run = run_async(
        strings(&["send", "--url", &url, "--secret", SECRET]),
        None,
        vec![],
    )
    .await;
    run.assert_code(1);
    let attempts: Vec<&str> = run.attempts();
    assert_eq!(attempts.len(), 3, "{run:#?}");
    assert!(
        attempts.iter().all(|l| l.contains("cannot connect")),
        "{run:#?}"
    );
}

#[test]
fn send_refuses_a_bad_url_or_delivery_id_as_usage_errors() {
    for (flag, value) in [
        ("--url", "not a url"),
        ("--url", "ftp://127.0.0.1/x"),
        ("--delivery-id", "has space"),
        ("--event", ""),
    ] {
        let mut args = vec!["send", "--secret", SECRET];
        if flag != "--url" {
            args.extend(["--url", "http://127.0.0.1:9/webhooks/kendo"]);
        }
        args.extend([flag, value]);
        let run = run(&args, None, &[]);
        run.assert_code(2);
        assert!(run.stderr.contains(flag), "{args:?}: {run:#?}");
        assert!(!run.stdout.contains("attempt"), "{args:?}: {run:#?}");
    }
}

#[test]
fn send_refuses_zero_attempts_or_raw_with_data() {
    let raw = write_temp(b"{}");
    let raw = raw.path().to_str().unwrap();
    for args in [
        vec!["--attempts", "0"],
        vec!["--attempts", "11"],
        vec!["--raw", raw, "--data", raw],
        vec!["--raw", raw, "--test"],
    ] {
        let mut all = vec!["send", "--secret", SECRET, "--url", "http://127.0.0.1:9/x"];
        all.extend(&args);
        let run = run(&all, None, &[]);
        run.assert_code(2);
        assert!(!run.stdout.contains("attempt"), "{args:?}: {run:#?}");
    }
}

// ---- send --raw, --attempts, credentials --------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_raw_sends_the_exact_bytes_of_the_file_and_takes_the_event_from_it() {
    let (rec, url) = recording_server(0).await;
    // Key order, spacing, escapes and a trailing newline a re-serialiser would change.
    let body = b"{ \"id\" : \"evt_raw\",\n  \"event\":\"ai.training.completed\", \"created_at\":\"2026-03-05T12:00:00Z\",\n  \"data\":{\"trainingId\":\"t\\u00e9\",\"duration\":1.50} }\n";
    let file = write_temp(body);
    let run = run_async(
        strings(&[
            "send",
            "--url",
            &url,
            "--secret",
            SECRET,
            "--raw",
            file.path().to_str().unwrap(),
            "--delivery-id",
            "dlv_raw",
        ]),
        None,
        vec![],
    )
    .await;
    run.assert_code(0);
    assert!(run.stdout.contains("event id evt_raw"), "{run:#?}");
    let seen = rec.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(&seen[0].body[..], &body[..]);
    assert_eq!(
        header(&seen[0].headers, "x-kendo-signature"),
        hmac_hex(SECRET.as_bytes(), body)
    );
    assert_eq!(
        header(&seen[0].headers, "x-kendo-event"),
        "ai.training.completed"
    );
    assert_eq!(header(&seen[0].headers, "x-kendo-delivery-id"), "dlv_raw");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_raw_passes_a_captured_delivery_through_the_layer() {
    let (log, url) = layer_server(SECRET).await;
    let body = TestDelivery::example("call.uploaded")
        .event_id("evt_cap")
        .created_at("2026-03-05T12:00:00Z")
        .is_test(true)
        .body();
    let file = write_temp(&body);
    let run = run_async(
        strings(&["send", "--url", &url, "--secret", SECRET, "--raw", "-"]),
        Some(std::fs::read(file.path()).unwrap()),
        vec![],
    )
    .await;
    run.assert_code(0);
    let deliveries = log.deliveries.lock().unwrap();
    assert_eq!(deliveries.len(), 1, "{run:#?}");
    assert_eq!(deliveries[0].event_id(), "evt_cap");
    assert!(deliveries[0].is_test());
    assert_eq!(deliveries[0].body(), &body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_attempts_sets_how_many_attempts_are_made() {
    for attempts in [1usize, 2] {
        let (log, url) = layer_server("whsec_the_receivers_secret").await;
        let n = attempts.to_string();
        let run = run_async(
            strings(&["send", "--url", &url, "--secret", SECRET, "--attempts", &n]),
            None,
            vec![],
        )
        .await;
        run.assert_code(1);
        assert_eq!(run.attempts().len(), attempts, "{run:#?}");
        assert!(
            run.attempts()[0].starts_with(&format!("attempt 1/{attempts}: 401")),
            "{run:#?}"
        );
        assert_eq!(log.rejected.lock().unwrap().len(), attempts);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_with_credentials_is_never_echoed() {
    // Unparsable (a space in the host), and valid but pointing at a closed port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    for url in [
        "http://quxuser:s3cret-pw@exa mple.com/hook?token=t0ken".to_owned(),
        "http://quxuser:s3cret-pw@[::1/hook".to_owned(),
        format!("http://quxuser:s3cret-pw@{closed}/hook?token=t0ken"),
    ] {
        let run = run_async(
            strings(&["send", "--url", &url, "--secret", SECRET, "--attempts", "1"]),
            None,
            vec![],
        )
        .await;
        assert!(matches!(run.code, Some(1 | 2)), "{run:#?}");
        for secret in ["s3cret-pw", "quxuser", "t0ken"] {
            assert!(!run.output().contains(secret), "{url}: {run:#?}");
        }
    }
}

// ---- listen ------------------------------------------------------------------

/// A running `kendo-webhook listen`, killed when dropped.
struct Listener {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    url: String,
}

impl Listener {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .arg("listen")
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .env_remove("KENDO_WEBHOOK_SECRET")
            .env_remove("KENDO_WEBHOOK_SECRET_PREVIOUS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the kendo-webhook binary starts");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut listener = Self {
            child,
            lines,
            url: String::new(),
        };
        let first = listener.next_line();
        let addr = first
            .strip_prefix("listening on http://")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("first line: {first}"));
        listener.url = format!("http://{addr}{PATH}");
        listener
    }

    /// The next line printed (a hang guard, not a timing check).
    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(PROCESS_DEADLINE)
            .expect("listen prints a line")
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_verifies_prints_and_forwards_each_delivery_unchanged() {
    let (rec, app_url) = recording_server(0).await;
    let listen = Listener::start(&[
        "--secret",
        "whsec_new",
        "--previous-secret",
        SECRET,
        "--forward-to",
        &app_url,
    ]);
    assert!(listen
        .next_line()
        .starts_with("forwarding verified deliveries, unchanged, to http://127.0.0.1:"),);
    let url = listen.url.clone();
    let send = |extra: &[&str]| {
        let mut args = strings(&["send", "--url", &url, "--attempts", "1"]);
        args.extend(strings(extra));
        run_async(args, None, vec![])
    };

    // Signed with the previous secret: verified, printed, forwarded byte for byte.
    let ok = send(&[
        "--secret",
        SECRET,
        "--event-id",
        "evt_l",
        "--delivery-id",
        "dlv_l",
    ])
    .await;
    ok.assert_code(0);
    let line = listen.next_line();
    assert!(
        line.contains(" accepted  call.uploaded  event evt_l  delivery dlv_l  secret previous"),
        "{line}"
    );
    assert!(line.contains("-> forwarded to http://127.0.0.1:"), "{line}");
    assert!(line.ends_with(": 200 OK"), "{line}");
    {
        let seen = rec.seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let body = &seen[0].body;
        assert_eq!(
            header(&seen[0].headers, "x-kendo-signature"),
            hmac_hex(SECRET.as_bytes(), body),
            "the original signature and bytes reach the app"
        );
        assert_eq!(header(&seen[0].headers, "x-kendo-delivery-id"), "dlv_l");
        assert_eq!(header(&seen[0].headers, "x-kendo-event"), "call.uploaded");
        assert!(String::from_utf8_lossy(body).contains("\"evt_l\""));
    }

    // The same delivery again: a duplicate, not forwarded.
    let dup = send(&[
        "--secret",
        SECRET,
        "--event-id",
        "evt_l",
        "--delivery-id",
        "dlv_l",
    ])
    .await;
    dup.assert_code(0);
    let line = listen.next_line();
    assert!(
        line.contains(" duplicate  call.uploaded  event evt_l  delivery dlv_l"),
        "{line}"
    );

    // A wrong secret: rejected with the reason explained, not forwarded.
    let forged = send(&["--secret", "whsec_guess", "--delivery-id", "dlv_f"]).await;
    forged.assert_code(1);
    let line = listen.next_line();
    assert!(
        line.contains(" rejected  401 invalid_signature  event -  delivery dlv_f: "),
        "{line}"
    );
    assert!(
        line.contains(Rejection::InvalidSignature.description()),
        "{line}"
    );
    assert_eq!(rec.seen.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_shows_the_apps_answer_and_passes_its_headers_back() {
    let (app, app_url) = inbox_server().await;
    let listen = Listener::start(&["--secret", SECRET, "--forward-to", &app_url]);
    listen.next_line();
    let send = |delivery_id: &str| {
        run_async(
            strings(&[
                "send",
                "--url",
                &listen.url,
                "--secret",
                SECRET,
                "--event-id",
                "evt_app",
                "--delivery-id",
                delivery_id,
            ]),
            None,
            vec![],
        )
    };
    let first = send("dlv_app_1").await;
    first.assert_code(0);
    let line = listen.next_line();
    assert!(
        line.contains(" stored  call.uploaded  event evt_app  delivery dlv_app_1  secret current  (test)  -> forwarded to http://127.0.0.1:"),
        "{line}"
    );
    assert!(
        line.ends_with(": 200 OK, x-kendo-inbox: stored, body: stored in the inbox"),
        "{line}"
    );
    assert!(first.stdout.contains("x-kendo-inbox: stored"), "{first:#?}");

    // The same event under a new delivery id: the listener's layer lets it
    // through, the app answers it as a duplicate, and both say so.
    let second = send("dlv_app_2").await;
    second.assert_code(0);
    let line = listen.next_line();
    assert!(
        line.contains(" duplicate  call.uploaded  event evt_app  delivery dlv_app_2"),
        "{line}"
    );
    assert!(!line.contains("accepted"), "{line}");
    assert!(line.contains("x-kendo-inbox: duplicate"), "{line}");
    assert!(
        second.attempts()[0].contains("x-kendo-inbox: duplicate, body: duplicate in the inbox"),
        "the app's header and body reach the sender: {second:#?}"
    );
    assert!(second.stdout.contains("\nduplicate: 200 OK"), "{second:#?}");
    assert_eq!(app.seen.lock().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_without_forward_to_answers_verified_deliveries_200() {
    let listen = Listener::start(&["--secret", SECRET]);
    assert_eq!(
        listen.next_line(),
        "answering 200 to verified deliveries (no --forward-to)"
    );
    let run = run_async(
        strings(&[
            "send",
            "--url",
            &listen.url,
            "--secret",
            SECRET,
            "--test",
            "--event",
            "ai.training.completed",
        ]),
        None,
        vec![],
    )
    .await;
    run.assert_code(0);
    let line = listen.next_line();
    assert!(
        line.contains(" accepted  ai.training.completed  event evt_"),
        "{line}"
    );
    assert!(line.ends_with("secret current  (test)  -> 200"), "{line}");
}

// ---- completions and docs -----------------------------------------------------

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let run = run(&["completions", shell], None, &[]);
        run.assert_code(0);
        for word in ["kendo-webhook", "listen", "forward-to", "attempts"] {
            assert!(run.stdout.contains(word), "{shell}: {word}");
        }
    }
    run(&["completions", "tcsh"], None, &[]).assert_code(2);
}

#[test]
fn every_help_text_states_the_schedule_send_uses() {
    // What `send` does, pinned by the timing tests above: 3 attempts, a 10 s
    // timeout each, waits of 1 s then 2 s.
    const SCHEDULE: &str = "3 attempts, each timing out after 10 s, 1 s then 2 s apart";
    for args in [
        vec!["--help"],
        vec!["send", "--help"],
        vec!["listen", "--help"],
    ] {
        let help = run(&args, None, &[]);
        help.assert_code(0);
        let text = help.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(text.contains(SCHEDULE), "{args:?}: {text}");
        assert!(
            !text.contains("4 s"),
            "{args:?} names a wait send never makes: {text}"
        );
        assert!(!text.contains("{schedule}"), "{args:?}: {text}");
    }
    let attempts = run(&["send", "--help"], None, &[]).stdout;
    assert!(attempts.contains("at most 60 s"), "{attempts}");
}

/// The crate's `README.md` shows each command's `--help` under `<!-- help: ARGS -->`;
/// with `KENDO_WEBHOOK_UPDATE_DOCS=1` this test writes them instead.
#[test]
fn docs_cli_md_shows_the_binarys_own_help() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let page = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    let mut rest = page.as_str();
    let mut blocks = 0;
    while let Some(at) = rest.find("<!-- help: ") {
        let (before, marker) = rest.split_at(at);
        out.push_str(before);
        let end = marker.find(" -->").expect("marker ends");
        let args: Vec<&str> = marker["<!-- help: ".len()..end].split(' ').collect();
        let open = marker
            .find("```text\n")
            .expect("a ```text block after the marker")
            + "```text\n".len();
        let close = open + marker[open..].find("```").expect("block ends");
        let help = run(&args, None, &[]);
        help.assert_code(0);
        out.push_str(&marker[..open]);
        out.push_str(help.stdout.trim_end());
        out.push('\n');
        rest = &marker[close..];
        blocks += 1;
    }
    out.push_str(rest);
    assert_eq!(blocks, 5, "one block per command");
    if std::env::var_os("KENDO_WEBHOOK_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &out).unwrap();
    } else {
        assert!(
            page == out,
            "README.md differs from the binary's --help; run \
             KENDO_WEBHOOK_UPDATE_DOCS=1 cargo test -p kendo-webhook-cli --test cli docs_cli_md"
        );
    }
}
