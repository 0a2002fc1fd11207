//! `kendo-webhook send`: build, sign and POST deliveries with Kendo's
//! timeout and retry policy, and show what the app answered.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kendo_webhooks::{SignedDelivery, TestDelivery, AI_TRAINING_COMPLETED, CALL_UPLOADED};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{Map, Value};

use crate::answer::{self, Verdict, EXCERPT_LEN};
use crate::payload::mark_test;
use crate::schedule::{backoff, ATTEMPT_TIMEOUT};
use crate::{read_input, secret, Input, SendArgs, UsageError};

/// How often a slow attempt reports that it is still waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

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

/// The object in `raw`, the event's `data` given with `--data`.
fn data_object(raw: &[u8], source: &Input) -> Result<Map<String, Value>, UsageError> {
    let value: Value = serde_json::from_slice(raw).map_err(|e| {
        format!("--data {source} is not valid JSON ({e}); give the event's data object, e.g. {{\"callId\": \"abc\"}}")
    })?;
    let Value::Object(data) = value else {
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
    Ok(data)
}

/// The `data` of Kendo's documented example for `event` (empty for others).
fn example_data(event: &str, event_id: &str, created_at: &str) -> Map<String, Value> {
    let body = TestDelivery::example(event)
        .event_id(event_id)
        .created_at(created_at)
        .body();
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(mut envelope)) => match envelope.remove("data") {
            Some(Value::Object(data)) => data,
            _ => Map::new(),
        },
        _ => Map::new(),
    }
}

/// The envelope `{id, event, created_at, data}`, keys in Kendo's order.
fn envelope(event_id: &str, event: &str, created_at: &str, data: Map<String, Value>) -> Bytes {
    let string = |s: &str| Value::String(s.to_owned()).to_string();
    Bytes::from(format!(
        "{{\"id\":{},\"event\":{},\"created_at\":{},\"data\":{}}}",
        string(event_id),
        string(event),
        string(created_at),
        Value::Object(data)
    ))
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
    if let Some(delivery_id) = &args.delivery_id {
        check_token("--delivery-id", delivery_id)?;
    }
    let (batch, deliveries) = match &args.raw {
        Some(input) => (Batch::raw(), vec![raw_delivery(&args, input, secret)?]),
        None => built_deliveries(&args, secret)?,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(deliver_all(&url, args.attempts, &batch, &deliveries))
}

/// One delivery to send, and what to say about it.
struct Prepared {
    delivery: SignedDelivery,
    event_id: String,
    /// `, agent Bob, aiScore "72"` for batches; empty otherwise.
    note: String,
}

/// What all deliveries of one run share, for the first line.
struct Batch {
    /// `, test delivery` or similar; empty for `--raw`.
    kind: String,
    /// `agents ..., aiScore ...` for `--count`, `--agents`, `--scores`.
    fields: String,
    raw: bool,
}

impl Batch {
    fn raw() -> Self {
        Self {
            kind: String::new(),
            fields: String::new(),
            raw: true,
        }
    }
}

/// `--raw`: the file's bytes as they are.
fn raw_delivery(args: &SendArgs, input: &Input, secret: &str) -> Result<Prepared, UsageError> {
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
    check_token("--event", &event)?;
    let event_id = field("id").unwrap_or_else(|| "(not in the body)".to_owned());
    let delivery_id = args.delivery_id.clone().unwrap_or_else(|| fresh_id("dlv"));
    Ok(Prepared {
        delivery: SignedDelivery::builder(body)
            .event(&event)
            .delivery_id(delivery_id)
            .sign(secret),
        event_id,
        note: String::new(),
    })
}

/// The deliveries `send` builds: `--count` of them, each a fresh envelope
/// around the example (or `--data`) with the batch fields, the test marker
/// and the `--set` overrides applied in that order.
fn built_deliveries(args: &SendArgs, secret: &str) -> Result<(Batch, Vec<Prepared>), UsageError> {
    let event = args
        .event
        .clone()
        .unwrap_or_else(|| CALL_UPLOADED.to_owned());
    check_token("--event", &event)?;
    if args.count > 1 {
        for (flag, given) in [
            ("--event-id", args.event_id.is_some()),
            ("--delivery-id", args.delivery_id.is_some()),
        ] {
            if given {
                return Err(format!(
                    "{flag} cannot be used with --count {}: every delivery of a batch gets fresh ids; \
                     omit {flag}, or send one delivery",
                    args.count
                )
                .into());
            }
        }
    }
    if args.event_id.as_deref() == Some("") {
        return Err("--event-id is empty; omit it for a fresh evt_<hex> id".into());
    }
    let given_data = match &args.data {
        Some(input) => Some(data_object(&read_input(input)?, input)?),
        None => None,
    };
    if given_data.is_none() && ![CALL_UPLOADED, AI_TRAINING_COMPLETED].contains(&event.as_str()) {
        eprintln!("kendo-webhook: note: {event} is not an event Kendo documents; sending it with an empty `data` (use --data or --set to fill it)");
    }
    let test = !args.real;
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let count = args.count as usize;
    let mut deliveries = Vec::with_capacity(count);
    for index in 0..count {
        let event_id = args.event_id.clone().unwrap_or_else(|| fresh_id("evt"));
        let delivery_id = args.delivery_id.clone().unwrap_or_else(|| fresh_id("dlv"));
        let created_at = now_rfc3339()?;
        let mut data = match &given_data {
            Some(data) => data.clone(),
            None => example_data(&event, &event_id, &created_at),
        };
        let mut note = String::new();
        if let Some(agents) = &args.agents {
            let (name, id) = agents.pick(index);
            note.push_str(&format!(", agent {name}"));
            data.insert("agentName".to_owned(), Value::String(name.to_owned()));
            data.insert("agentId".to_owned(), Value::String(id));
        }
        if let Some(scores) = &args.scores {
            // A string holding a number, as Kendo sends aiScore.
            let score = rng.random_range(scores.clone()).to_string();
            note.push_str(&format!(", aiScore \"{score}\""));
            data.insert("aiScore".to_owned(), Value::String(score));
        }
        mark_test(&mut data, test);
        for set in &args.set {
            set.apply(&mut data)?;
        }
        let body = envelope(&event_id, &event, &created_at, data);
        deliveries.push(Prepared {
            delivery: SignedDelivery::builder(body)
                .event(&event)
                .delivery_id(delivery_id)
                .sign(secret),
            event_id,
            note,
        });
    }
    let mut fields = Vec::new();
    if let Some(agents) = &args.agents {
        fields.push(format!("agents {} round-robin", agents.names().join(", ")));
    }
    if let Some(scores) = &args.scores {
        fields.push(format!(
            "aiScore {}..{} (--seed {seed} repeats them)",
            scores.start(),
            scores.end()
        ));
    }
    let kind = if test {
        ", test delivery (data._isTest = true; --real for a real one)"
    } else {
        ", real delivery"
    };
    let batch = Batch {
        kind: kind.to_owned(),
        fields: fields.join(", "),
        raw: false,
    };
    Ok((batch, deliveries))
}

/// What became of one delivery: its verdict and last status, or `None`
/// when no attempt got an answer.
type Settled = Option<(Verdict, reqwest::StatusCode)>;

async fn deliver_all(
    url: &reqwest::Url,
    attempts: u32,
    batch: &Batch,
    deliveries: &[Prepared],
) -> Result<ExitCode, UsageError> {
    let client = reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("kendo-webhook/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", chain(e)))?;
    let total = deliveries.len();
    if total == 1 {
        let prepared = &deliveries[0];
        let delivery = &prepared.delivery;
        println!(
            "POST {}\n  event {}, event id {}, delivery id {}, {} bytes{}{}{}",
            shown_url(url),
            delivery.event(),
            prepared.event_id,
            delivery.delivery_id(),
            delivery.body().len(),
            if batch.raw {
                " sent as read (--raw)"
            } else {
                ""
            },
            prepared.note,
            batch.kind,
        );
    } else {
        let event = deliveries.first().map_or("", |p| p.delivery.event());
        let fields = if batch.fields.is_empty() {
            String::new()
        } else {
            format!("\n  {}", batch.fields)
        };
        println!(
            "POST {}: {total} deliveries of {event}, one after the other{}{fields}",
            shown_url(url),
            batch.kind
        );
    }
    let mut settled = Vec::with_capacity(total);
    for (number, prepared) in deliveries.iter().enumerate() {
        if total > 1 {
            println!(
                "[{}/{total}] event id {}, delivery id {}{}",
                number + 1,
                prepared.event_id,
                prepared.delivery.delivery_id(),
                prepared.note
            );
        }
        settled.push(deliver(&client, url, attempts, &prepared.delivery).await);
    }
    if total > 1 {
        println!("{}", summary(&settled));
    }
    let all_2xx = settled
        .iter()
        .all(|s| s.is_some_and(|(verdict, _)| verdict != Verdict::Failed));
    Ok(if all_2xx {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `summary: 6 deliveries: 5 stored, 1 duplicate; statuses: 200 OK ×6`.
fn summary(settled: &[Settled]) -> String {
    let mut verdicts: BTreeMap<Verdict, usize> = BTreeMap::new();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for outcome in settled {
        let (verdict, status) = match outcome {
            Some((verdict, status)) => (*verdict, status.to_string()),
            None => (Verdict::Failed, "no answer".to_owned()),
        };
        *verdicts.entry(verdict).or_default() += 1;
        *statuses.entry(status).or_default() += 1;
    }
    let verdicts: Vec<String> = verdicts
        .iter()
        .map(|(verdict, n)| match verdict {
            Verdict::Failed => format!("{n} given up"),
            _ => format!("{n} {verdict}"),
        })
        .collect();
    let statuses: Vec<String> = statuses.iter().map(|(s, n)| format!("{s} ×{n}")).collect();
    format!(
        "summary: {} deliveries: {}; last answers: {}",
        settled.len(),
        verdicts.join(", "),
        statuses.join(", ")
    )
}

/// Sends one delivery with Kendo's retries, a line per attempt and one for
/// the verdict.
async fn deliver(
    client: &reqwest::Client,
    url: &reqwest::Url,
    attempts: u32,
    delivery: &SignedDelivery,
) -> Settled {
    let mut last = None;
    for attempt in 1..=attempts {
        let started = Instant::now();
        let request = client
            .post(url.clone())
            .headers(delivery.headers())
            .body(delivery.body().clone())
            .send();
        let result = with_progress(request, started).await;
        let ms = started.elapsed().as_millis();
        match result {
            Ok(response) => {
                let status = response.status();
                let verdict = Verdict::of(status, response.headers());
                let hint = match status {
                    reqwest::StatusCode::NOT_FOUND => " (check the path in --url)",
                    reqwest::StatusCode::METHOD_NOT_ALLOWED => {
                        " (check the path in --url: it must take POST)"
                    }
                    _ => "",
                };
                let answer = answer_text(response).await;
                println!("attempt {attempt}/{attempts}: {status} in {ms} ms{hint}{answer}");
                last = Some((verdict, status));
                if verdict != Verdict::Failed {
                    println!(
                        "{verdict}: {status} for delivery {} ({})",
                        delivery.delivery_id(),
                        verdict.meaning()
                    );
                    return last;
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
    last
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

/// The `x-kendo-*` headers and the start of the body of `response`, for
/// the attempt's line.
async fn answer_text(mut response: reqwest::Response) -> String {
    let headers = response.headers().clone();
    let mut head = Vec::new();
    while head.len() <= EXCERPT_LEN {
        match response.chunk().await {
            Ok(Some(chunk)) => head.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    format!(
        "{}{}",
        answer::kendo_headers(&headers),
        answer::excerpt(&head, &headers)
    )
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
