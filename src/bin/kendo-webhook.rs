//! `kendo-webhook`: send, sign and verify Kendo webhook deliveries exactly as
//! Kendo does (feature `cli`). Usage: `kendo-webhook --help` or `docs/cli.md`.

use std::error::Error as _;
use std::fmt;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use kendo_webhooks::{
    example_body, sign, Rejection, Secret, SignedDelivery, Verifier, AI_TRAINING_COMPLETED,
    CALL_UPLOADED, REJECTION_HEADER,
};
use serde_json::{json, Value};

/// Attempts per delivery, as Kendo makes them.
const ATTEMPTS: usize = 3;
/// Waits before the second and the third attempt.
const BACKOFF: [Duration; ATTEMPTS - 1] = [Duration::from_secs(1), Duration::from_secs(2)];
/// Kendo's timeout for one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a response body is shown after each attempt.
const EXCERPT_LEN: usize = 200;
/// Exit code for usage and I/O errors (clap's own usage errors use it too).
const EXIT_USAGE: u8 = 2;

const ABOUT: &str = "Send, sign and verify Kendo webhook deliveries exactly as Kendo does.";

const LONG_ABOUT: &str = "\
Send, sign and verify Kendo webhook deliveries exactly as Kendo does.

Test your endpoint before Kendo calls it: `send` POSTs a signed delivery with
Kendo's four headers, its 10 s timeout per attempt and its retry policy (3
attempts, about 1 s then 2 s apart, the same delivery id each time). `sign` and
`verify` compute and check an X-Kendo-Signature (HMAC-SHA256 of the raw body,
lowercase hex) for a body you have.

The secret comes from --secret or the KENDO_WEBHOOK_SECRET environment
variable. Prefer the variable: command-line arguments are visible to other
users of the machine. The secret is never printed.

Examples:
  export KENDO_WEBHOOK_SECRET='whsec_...'
  kendo-webhook send --url http://127.0.0.1:3000/webhooks/kendo
  kendo-webhook send --url http://127.0.0.1:3000/webhooks/kendo --event ai.training.completed --test
  kendo-webhook sign body.json
  kendo-webhook verify --signature 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843 body.json

Exit codes: 0 success; 1 the delivery got no 2xx, or the signature does not
verify; 2 usage or I/O error.";

const SEND_ABOUT: &str = "POST a signed delivery with Kendo's headers, timeout and retries";

const SEND_LONG_ABOUT: &str = "\
POST a signed delivery with Kendo's headers, timeout and retries.

The body is Kendo's documented example payload for --event, with a fresh event
id (evt_<hex>) and created_at set to now; with --data FILE (or - for stdin) the
file's JSON object becomes `data` inside the envelope {id, event, created_at,
data} instead. --test adds \"_isTest\": true to `data`, as Kendo's \"Send Test\"
button does.

The request carries Content-Type: application/json, X-Kendo-Signature,
X-Kendo-Event and X-Kendo-Delivery-Id (a fresh dlv_<hex> unless given). Each
attempt times out after 10 s; a timeout, a connection error or any non-2xx
status (redirects are not followed) is retried: 3 attempts in all, waiting
about 1 s and then 2 s, with the same delivery id and the same bytes. One line
is printed per attempt: status, latency and the receiver's
x-kendo-webhook-rejection reason when it sends one.

Exits 0 on a 2xx, 1 when all 3 attempts failed, 2 on a usage or I/O error.

Examples (the secret in --secret or KENDO_WEBHOOK_SECRET):
  kendo-webhook send --url http://127.0.0.1:3000/webhooks/kendo --secret whsec_test
  KENDO_WEBHOOK_SECRET=whsec_test kendo-webhook send --url https://crm.example.com/webhooks/kendo --event ai.training.completed --test
  echo '{\"callId\": \"c_42\", \"aiScore\": \"71\"}' | kendo-webhook send --url http://127.0.0.1:3000/webhooks/kendo --data -
  kendo-webhook send --url http://127.0.0.1:3000/webhooks/kendo --event-id evt_1 --delivery-id dlv_1   # send twice: the second is a duplicate";

const SIGN_ABOUT: &str = "Print the X-Kendo-Signature of a body (the exact bytes of FILE or stdin)";

const SIGN_LONG_ABOUT: &str = "\
Print the X-Kendo-Signature of a body: lowercase hex of HMAC-SHA256 keyed with
the secret, over the exact bytes of FILE (or stdin with - or no FILE). Nothing
is trimmed or re-encoded: a trailing newline is part of the body and changes
the signature.

Examples:
  kendo-webhook sign --secret whsec_test body.json
  printf '%s' '{\"id\":\"evt_1\"}' | KENDO_WEBHOOK_SECRET=whsec_test kendo-webhook sign
  curl -X POST http://127.0.0.1:3000/webhooks/kendo -H 'Content-Type: application/json' \\
    -H \"X-Kendo-Signature: $(kendo-webhook sign body.json)\" -H 'X-Kendo-Event: call.uploaded' \\
    -H 'X-Kendo-Delivery-Id: dlv_1' --data-binary @body.json";

const VERIFY_ABOUT: &str = "Check an X-Kendo-Signature against a body (FILE or stdin)";

const VERIFY_LONG_ABOUT: &str = "\
Check an X-Kendo-Signature against the exact bytes of a body (FILE, or stdin
with - or no FILE), as the receiving layer does: 64 hex digits of either case,
optionally prefixed by sha256=, compared in constant time.

Prints `ok (secret current)` (or `previous` when it matched
--previous-secret) and exits 0; otherwise prints one line with the stable
reason and what to check, and exits 1. Exits 2 on a usage or I/O error.

Examples:
  kendo-webhook verify --secret whsec_test --signature 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843 body.json
  cat body.json | kendo-webhook verify --signature \"$SIG\" --previous-secret \"$OLD_SECRET\" -";

#[derive(Parser)]
#[command(name = "kendo-webhook", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(about = SEND_ABOUT, long_about = SEND_LONG_ABOUT)]
    Send(SendArgs),
    #[command(about = SIGN_ABOUT, long_about = SIGN_LONG_ABOUT)]
    Sign(SignArgs),
    #[command(about = VERIFY_ABOUT, long_about = VERIFY_LONG_ABOUT)]
    Verify(VerifyArgs),
}

#[derive(Args)]
struct SecretArg {
    /// The webhook secret from Kendo's dashboard, used as raw bytes; never
    /// printed. Required: here or in the environment variable.
    #[arg(
        long,
        env = "KENDO_WEBHOOK_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    secret: Option<String>,
}

#[derive(Args)]
struct SendArgs {
    /// The endpoint to POST to (http or https).
    #[arg(long, value_name = "URL")]
    url: String,
    #[command(flatten)]
    secret: SecretArg,
    /// The event name: call.uploaded, ai.training.completed or any other NAME.
    #[arg(long, value_name = "NAME", default_value = CALL_UPLOADED)]
    event: String,
    /// A JSON object to send as the event's `data` (FILE, or - for stdin).
    #[arg(long, value_name = "FILE|-", value_parser = parse_input)]
    data: Option<Input>,
    /// Mark the delivery as a test: `data._isTest = true`.
    #[arg(long)]
    test: bool,
    /// The X-Kendo-Delivery-Id to send [default: a fresh dlv_<hex>].
    #[arg(long, value_name = "ID")]
    delivery_id: Option<String>,
    /// The event `id` in the body [default: a fresh evt_<hex>].
    #[arg(long, value_name = "ID")]
    event_id: Option<String>,
}

#[derive(Args)]
struct SignArgs {
    #[command(flatten)]
    secret: SecretArg,
    /// The body to sign: a file, or - for stdin.
    #[arg(value_name = "FILE|-", default_value = "-", value_parser = parse_input)]
    input: Input,
}

#[derive(Args)]
struct VerifyArgs {
    #[command(flatten)]
    secret: SecretArg,
    /// A secret being rotated out, also accepted (reported as `previous`).
    #[arg(
        long,
        env = "KENDO_WEBHOOK_SECRET_PREVIOUS",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    previous_secret: Option<String>,
    /// The X-Kendo-Signature value to check.
    #[arg(long, value_name = "SIG")]
    signature: String,
    /// The body that was signed: a file, or - for stdin.
    #[arg(value_name = "FILE|-", default_value = "-", value_parser = parse_input)]
    input: Input,
}

/// Where a body comes from.
#[derive(Clone, Debug)]
enum Input {
    Stdin,
    File(PathBuf),
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stdin => f.write_str("stdin"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

fn parse_input(value: &str) -> Result<Input, String> {
    match value {
        "" => Err("give a file path, or - to read stdin".to_owned()),
        "-" => Ok(Input::Stdin),
        path => Ok(Input::File(PathBuf::from(path))),
    }
}

/// A usage or I/O error: printed on stderr, exit code 2.
struct UsageError(String);

impl<T: Into<String>> From<T> for UsageError {
    fn from(message: T) -> Self {
        Self(message.into())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Send(args) => send(args),
        Command::Sign(args) => sign_body(args),
        Command::Verify(args) => verify(args),
    };
    result.unwrap_or_else(|UsageError(message)| {
        eprintln!("kendo-webhook: error: {message}");
        ExitCode::from(EXIT_USAGE)
    })
}

fn secret(arg: &SecretArg) -> Result<&str, UsageError> {
    match arg.secret.as_deref() {
        None => Err(
            "no secret given; pass the webhook secret from Kendo's dashboard \
                     with --secret SECRET or in KENDO_WEBHOOK_SECRET"
                .into(),
        ),
        Some("") => Err(
            "the secret is empty; pass the webhook secret from Kendo's dashboard \
                         with --secret SECRET or in KENDO_WEBHOOK_SECRET"
                .into(),
        ),
        Some(secret) => Ok(secret),
    }
}

/// The exact bytes of `input`; nothing trimmed or re-encoded.
fn read_input(input: &Input) -> Result<Vec<u8>, UsageError> {
    let mut bytes = Vec::new();
    match input {
        Input::Stdin => {
            let mut stdin = std::io::stdin().lock();
            if stdin.is_terminal() {
                eprintln!("kendo-webhook: reading the body from stdin; end it with Ctrl-D");
            }
            stdin
                .read_to_end(&mut bytes)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
        }
        Input::File(path) => {
            bytes = std::fs::read(path).map_err(|e| {
                format!(
                    "cannot read {}: {e}; give an existing file, or - for stdin",
                    path.display()
                )
            })?;
        }
    }
    Ok(bytes)
}

fn sign_body(args: SignArgs) -> Result<ExitCode, UsageError> {
    let secret = secret(&args.secret)?;
    let body = read_input(&args.input)?;
    println!("{}", sign(secret, &body));
    Ok(ExitCode::SUCCESS)
}

fn verify(args: VerifyArgs) -> Result<ExitCode, UsageError> {
    let mut secrets = vec![Secret::new(secret(&args.secret)?).with_label("current")];
    match args.previous_secret.as_deref() {
        Some("") => return Err("--previous-secret is empty; omit it or give the old secret".into()),
        Some(previous) => secrets.push(Secret::new(previous).with_label("previous")),
        None => {}
    }
    let verifier = Verifier::new(secrets).map_err(|e| e.to_string())?;
    let body = read_input(&args.input)?;
    match verifier.verify(args.signature.trim().as_bytes(), &body) {
        Ok(label) => {
            println!("ok (secret {label})");
            Ok(ExitCode::SUCCESS)
        }
        Err(rejection) => {
            println!("{rejection} (body checked: {} bytes)", body.len());
            Ok(ExitCode::from(1))
        }
    }
}

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

fn send(args: SendArgs) -> Result<ExitCode, UsageError> {
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
    let known = Rejection::ALL.into_iter().find(|r| r.as_str() == reason);
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
