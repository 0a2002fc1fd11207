//! `kendo-webhook send`: build, sign and POST a delivery with Kendo's
//! timeout and retry policy.

use std::error::Error as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kendo_webhooks::{
    example_body, Rejection, SignedDelivery, AI_TRAINING_COMPLETED, CALL_UPLOADED, REJECTION_HEADER,
};
use serde_json::{json, Value};

use crate::{read_input, secret, Input, SendArgs, UsageError};

/// Attempts per delivery, as Kendo makes them.
const ATTEMPTS: usize = 3;
/// Waits before the second and the third attempt.
const BACKOFF: [Duration; ATTEMPTS - 1] = [Duration::from_secs(1), Duration::from_secs(2)];
/// Kendo's timeout for one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a response body is shown after each attempt.
const EXCERPT_LEN: usize = 200;

/// Header values the receiver accepts: 1 to 256 visible ASCII characters.
fn check_token(flag: &str, value: &str) -> Result<(), UsageError> {
    if (1..=256).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(format!(
            "{flag} must be 1 to 256 visible ASCII characters (no spaces), as Kendo's are; got {value:?}"
        )
        .into())
    }
}

fn fresh_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(rand::random::<[u8; 12]>()))
}

fn now_rfc3339() -> Result<String, UsageError> {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("cannot format the current time: {e}").into())
}

/// The envelope `{id, event, created_at, data}` around the object in `raw`.
fn envelope(
    raw: &[u8],
    source: &Input,
    event: &str,
    event_id: &str,
    created_at: &str,
    test: bool,
) -> Result<Bytes, UsageError> {
    let value: Value = serde_json::from_slice(raw).map_err(|e| {
        format!("--data {source} is not valid JSON ({e}); give the event's data object, e.g. {{\"callId\": \"abc\"}}")
    })?;
    let Value::Object(mut data) = value else {
        return Err(format!(
            "--data {source} must hold a JSON object (the event's `data`), not {}",
            kind(&value)
        )
        .into());
    };
    if data.contains_key("event") && data.contains_key("data") {
        eprintln!(
            "kendo-webhook: note: --data looks like a whole envelope; it is sent as `data` inside a new one"
        );
    }
    if test {
        data.insert("_isTest".to_owned(), Value::Bool(true));
    }
    let body = json!({ "id": event_id, "event": event, "created_at": created_at, "data": data });
    Ok(Bytes::from(body.to_string()))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(crate) fn send(args: SendArgs) -> Result<ExitCode, UsageError> {
    let secret = secret(&args.secret)?;
    let url = reqwest::Url::parse(&args.url).map_err(|e| {
        format!("--url {:?} is not a valid URL ({e}); give a full address such as http://127.0.0.1:3000/webhooks/kendo", args.url)
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("--url must be http or https, not {}", url.scheme()).into());
    }
    check_token("--event", &args.event)?;
    let event_id = args.event_id.unwrap_or_else(|| fresh_id("evt"));
    if event_id.is_empty() {
        return Err("--event-id is empty; omit it for a fresh evt_<hex> id".into());
    }
    let delivery_id = args.delivery_id.unwrap_or_else(|| fresh_id("dlv"));
    check_token("--delivery-id", &delivery_id)?;
    let created_at = now_rfc3339()?;
    let body = match &args.data {
        None => example_body(&args.event, &event_id, &created_at, args.test),
        Some(input) => envelope(
            &read_input(input)?,
            input,
            &args.event,
            &event_id,
            &created_at,
            args.test,
        )?,
    };
    if ![CALL_UPLOADED, AI_TRAINING_COMPLETED].contains(&args.event.as_str()) && args.data.is_none()
    {
        eprintln!("kendo-webhook: note: {} is not an event Kendo documents; sending it with an empty `data` (use --data to fill it)", args.event);
    }
    let delivery = SignedDelivery::new(secret, &args.event, delivery_id, body);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(deliver(url, &event_id, &delivery, args.test))
}

async fn deliver(
    url: reqwest::Url,
    event_id: &str,
    delivery: &SignedDelivery,
    test: bool,
) -> Result<ExitCode, UsageError> {
    let client = reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("kendo-webhook/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", chain(&e)))?;
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    println!(
        "POST {shown}\n  event {}, event id {event_id}, delivery id {}, {} bytes{}",
        delivery.event(),
        delivery.delivery_id(),
        delivery.body().len(),
        if test { ", test delivery" } else { "" }
    );
    for attempt in 1..=ATTEMPTS {
        let started = Instant::now();
        let result = client
            .post(url.clone())
            .headers(delivery.headers())
            .body(delivery.body().clone())
            .send()
            .await;
        let ms = started.elapsed().as_millis();
        match result {
            Ok(response) => {
                let status = response.status();
                let rejection = response
                    .headers()
                    .get(REJECTION_HEADER)
                    .map(|v| rejection_note(v.as_bytes()))
                    .unwrap_or_default();
                let hint = match status {
                    reqwest::StatusCode::NOT_FOUND => " (check the path in --url)",
                    reqwest::StatusCode::METHOD_NOT_ALLOWED => {
                        " (check the path in --url: it must take POST)"
                    }
                    _ => "",
                };
                let excerpt = excerpt(response).await;
                println!(
                    "attempt {attempt}/{ATTEMPTS}: {status} in {ms} ms{hint}{rejection}{excerpt}"
                );
                if status.is_success() {
                    println!("delivered: {status} for delivery {}", delivery.delivery_id());
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Err(e) if e.is_timeout() => println!(
                "attempt {attempt}/{ATTEMPTS}: timed out after {ms} ms (Kendo waits {} s: answer first, process in the background)",
                ATTEMPT_TIMEOUT.as_secs()
            ),
            Err(e) if e.is_connect() => println!(
                "attempt {attempt}/{ATTEMPTS}: cannot connect after {ms} ms: {} (is the server running, and is --url right?)",
                root_cause(&e)
            ),
            Err(e) => println!("attempt {attempt}/{ATTEMPTS}: failed after {ms} ms: {}", chain(&e)),
        }
        if let Some(wait) = BACKOFF.get(attempt - 1) {
            println!(
                "  retrying in {} s with the same delivery id",
                wait.as_secs()
            );
            tokio::time::sleep(*wait).await;
        }
    }
    eprintln!(
        "kendo-webhook: no 2xx after {ATTEMPTS} attempts; Kendo would give up on delivery {} here",
        delivery.delivery_id()
    );
    Ok(ExitCode::from(1))
}

/// The receiver's `x-kendo-webhook-rejection` reason, with its description
/// when it is one of the crate's [`Rejection`]s.
fn rejection_note(value: &[u8]) -> String {
    let reason = printable(value);
    let known = Rejection::ALL
        .iter()
        .copied()
        .find(|r| r.as_str() == reason);
    match known {
        Some(rejection) => format!(
            ", {}: {reason} ({})",
            REJECTION_HEADER.as_str(),
            rejection.description()
        ),
        None => format!(", {}: {reason}", REJECTION_HEADER.as_str()),
    }
}

/// The start of a response body, on one line, for the attempt's report.
async fn excerpt(mut response: reqwest::Response) -> String {
    let mut head = Vec::new();
    while head.len() < EXCERPT_LEN {
        match response.chunk().await {
            Ok(Some(chunk)) => head.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let text = printable(&head[..head.len().min(EXCERPT_LEN)]);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match (text.is_empty(), head.len() > EXCERPT_LEN) {
        (true, _) => String::new(),
        (false, false) => format!(", body: {text}"),
        (false, true) => format!(", body: {text}…"),
    }
}

/// `bytes` as one line of text: invalid UTF-8 and control characters replaced.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The innermost cause of `error` ("Connection refused (os error 111)").
fn root_cause(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// An error and its sources, joined: reqwest's own message is often just
/// "error sending request".
fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
