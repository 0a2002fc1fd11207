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

/// Kendo's timeout for one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a slow attempt reports that it is still waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// The wait before attempt `next` (2, 3, ...): about 1 s, 2 s, 4 s, ... as
/// Kendo backs off, at most a minute.
fn backoff(next: u32) -> Duration {
    Duration::from_secs(1 << (next - 2).min(6)).min(Duration::from_secs(60))
}
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

/// `url` as safe to print: scheme, host, port and path; no user name,
/// password, query or fragment (any of them may hold a credential).
pub(crate) fn shown_url(url: &reqwest::Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path());
    if url.query().is_some() {
        shown.push_str("?…");
    }
    shown
}

/// Parses `--url`-like flags; the error never repeats the value, which may
/// hold a password or token.
pub(crate) fn parse_url(flag: &str, value: &str) -> Result<reqwest::Url, UsageError> {
    let url = reqwest::Url::parse(value).map_err(|e| {
        format!("{flag} is not a valid URL ({e}); give a full address such as http://127.0.0.1:3000/webhooks/kendo")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{flag} must be http or https, not {}", url.scheme()).into());
    }
    Ok(url)
}

pub(crate) fn send(args: SendArgs) -> Result<ExitCode, UsageError> {
    let secret = secret(&args.secret)?;
    let url = parse_url("--url", &args.url)?;
    let delivery_id = args.delivery_id.unwrap_or_else(|| fresh_id("dlv"));
    check_token("--delivery-id", &delivery_id)?;
    let (event, event_id, body) = match &args.raw {
        Some(input) => {
            let body = Bytes::from(read_input(input)?);
            let signed: Option<Value> = serde_json::from_slice(&body).ok();
            let field = |name: &str| {
                signed
                    .as_ref()
                    .and_then(|v| v.get(name))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            let event = args
                .event
                .clone()
                .or_else(|| field("event"))
                .unwrap_or_else(|| CALL_UPLOADED.to_owned());
            let event_id = field("id").unwrap_or_else(|| "(not in the body)".to_owned());
            (event, event_id, body)
        }
        None => {
            let event = args
                .event
                .clone()
                .unwrap_or_else(|| CALL_UPLOADED.to_owned());
            let event_id = args.event_id.clone().unwrap_or_else(|| fresh_id("evt"));
            if event_id.is_empty() {
                return Err("--event-id is empty; omit it for a fresh evt_<hex> id".into());
            }
            let created_at = now_rfc3339()?;
            let body = match &args.data {
                None => example_body(&event, &event_id, &created_at, args.test),
                Some(input) => envelope(
                    &read_input(input)?,
                    input,
                    &event,
                    &event_id,
                    &created_at,
                    args.test,
                )?,
            };
            if ![CALL_UPLOADED, AI_TRAINING_COMPLETED].contains(&event.as_str())
                && args.data.is_none()
            {
                eprintln!("kendo-webhook: note: {event} is not an event Kendo documents; sending it with an empty `data` (use --data to fill it)");
            }
            (event, event_id, body)
        }
    };
    check_token("--event", &event)?;
    let delivery = SignedDelivery::new(secret, &event, delivery_id, body);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let plan = Plan {
        url,
        event_id,
        test: args.test,
        raw: args.raw.is_some(),
        attempts: args.attempts,
    };
    runtime.block_on(deliver(plan, &delivery))
}

/// How one delivery is sent.
struct Plan {
    url: reqwest::Url,
    event_id: String,
    test: bool,
    raw: bool,
    attempts: u32,
}

async fn deliver(plan: Plan, delivery: &SignedDelivery) -> Result<ExitCode, UsageError> {
    let attempts = plan.attempts;
    let client = reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("kendo-webhook/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", chain(e)))?;
    println!(
        "POST {}\n  event {}, event id {}, delivery id {}, {} bytes{}{}",
        shown_url(&plan.url),
        delivery.event(),
        plan.event_id,
        delivery.delivery_id(),
        delivery.body().len(),
        if plan.raw {
            " sent as read (--raw)"
        } else {
            ""
        },
        if plan.test { ", test delivery" } else { "" }
    );
    for attempt in 1..=attempts {
        let started = Instant::now();
        let request = client
            .post(plan.url.clone())
            .headers(delivery.headers())
            .body(delivery.body().clone())
            .send();
        let result = with_progress(request, started).await;
        let ms = started.elapsed().as_millis();
        match result {
            Ok(response) => {
                let status = response.status();
                let rejection = response
                    .headers()
                    .get(REJECTION_HEADER)
                    .map(|v| rejection_note(v.as_bytes()));
                let hint = match status {
                    reqwest::StatusCode::NOT_FOUND => " (check the path in --url)",
                    reqwest::StatusCode::METHOD_NOT_ALLOWED => {
                        " (check the path in --url: it must take POST)"
                    }
                    _ => "",
                };
                let excerpt = excerpt(response).await;
                // The layer's body repeats the reason the header already
                // explained: print it once.
                let excerpt = match &rejection {
                    Some(note) if note.known && excerpt_repeats(&excerpt, &note.reason) => {
                        String::new()
                    }
                    _ => excerpt,
                };
                let rejection = rejection.map(|note| note.text).unwrap_or_default();
                println!(
                    "attempt {attempt}/{attempts}: {status} in {ms} ms{hint}{rejection}{excerpt}"
                );
                if status.is_success() {
                    println!("delivered: {status} for delivery {}", delivery.delivery_id());
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Err(e) if e.is_timeout() => println!(
                "attempt {attempt}/{attempts}: timed out after {ms} ms (Kendo waits {} s: answer first, process in the background)",
                ATTEMPT_TIMEOUT.as_secs()
            ),
            Err(e) if e.is_connect() => println!(
                "attempt {attempt}/{attempts}: cannot connect after {ms} ms: {} (is the server running, and is --url right?)",
                root_cause(e)
            ),
            Err(e) => println!("attempt {attempt}/{attempts}: failed after {ms} ms: {}", chain(e)),
        }
        if attempt < attempts {
            let wait = backoff(attempt + 1);
            println!(
                "  retrying in {} s with the same delivery id",
                wait.as_secs()
            );
            tokio::time::sleep(wait).await;
        }
    }
    eprintln!(
        "kendo-webhook: no 2xx after {attempts} attempt{}; Kendo would give up on delivery {} here",
        if attempts == 1 { "" } else { "s" },
        delivery.delivery_id()
    );
    Ok(ExitCode::from(1))
}

/// Awaits `request`, saying on stderr every [`PROGRESS_EVERY`] how long it
/// has waited, so a slow receiver does not look like a hung tool.
async fn with_progress<F: std::future::Future>(request: F, started: Instant) -> F::Output {
    let mut request = std::pin::pin!(request);
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    loop {
        tokio::select! {
            output = &mut request => return output,
            _ = ticks.tick() => eprintln!(
                "  waiting for the answer: {} s of {} s",
                started.elapsed().as_secs(),
                ATTEMPT_TIMEOUT.as_secs()
            ),
        }
    }
}

/// Whether the body excerpt is the layer's own `"<reason>: <description>"`.
fn excerpt_repeats(excerpt: &str, reason: &str) -> bool {
    excerpt
        .strip_prefix(", body: ")
        .is_some_and(|body| body.starts_with(&format!("{reason}:")))
}

/// The receiver's rejection header, explained.
struct RejectionNote {
    reason: String,
    /// One of this crate's reasons (so the text includes its description).
    known: bool,
    text: String,
}

/// The receiver's `x-kendo-webhook-rejection` reason, with its description
/// when it is one of the crate's [`Rejection`]s.
fn rejection_note(value: &[u8]) -> RejectionNote {
    let reason = printable(value);
    let known = Rejection::ALL
        .iter()
        .copied()
        .find(|r| r.as_str() == reason);
    let text = match known {
        Some(rejection) => format!(
            ", {}: {reason} ({})",
            REJECTION_HEADER.as_str(),
            rejection.description()
        ),
        None => format!(", {}: {reason}", REJECTION_HEADER.as_str()),
    };
    RejectionNote {
        known: known.is_some(),
        reason,
        text,
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
fn root_cause(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut cause: &dyn std::error::Error = &error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// An error and its sources, joined: reqwest's own message is often just
/// "error sending request". The URL is left out (it may hold credentials).
pub(crate) fn chain(error: reqwest::Error) -> String {
    let error = error.without_url();
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
