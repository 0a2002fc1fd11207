//! `kendo-webhook`: send, receive, sign and verify Kendo webhook deliveries
//! exactly as Kendo does. Install with `cargo install kendo-webhook-cli`. Usage: `kendo-webhook --help`, or
//! this crate's `README.md`, whose reference part is this file's help texts
//! (`tests/cli.rs` checks they match).
// The doc comments of the clap types below are the `--help` texts: plain
// text for a terminal, not Markdown for rustdoc.
#![allow(
    rustdoc::bare_urls,
    rustdoc::broken_intra_doc_links,
    rustdoc::invalid_html_tags
)]

use std::fmt;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use std::ops::RangeInclusive;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use kendo_webhooks::{sign, Secret, Verifier};

use payload::{Agents, FieldSet};

mod answer;
mod listen;
mod payload;
mod schedule;
mod send;

/// Exit code for usage and I/O errors (clap's own usage errors use it too).
const EXIT_USAGE: u8 = 2;

/// Send, receive, sign and verify Kendo webhook deliveries exactly as Kendo does.
///
/// Test your endpoint before Kendo calls it: `send` POSTs signed deliveries
/// (test deliveries unless --real) with Kendo's four headers and its retry
/// policy, the same delivery id each time:
///   {schedule}.
/// It prints what your app answered: status, x-kendo-* headers (stored,
/// duplicate, rejection reason) and the start of the body. `listen` is a local
/// receiver that verifies and prints every delivery, and can forward it to your
/// app. `sign` and `verify` compute and check an X-Kendo-Signature
/// (HMAC-SHA256 of the raw body, lowercase hex) for a body you have.
///
/// The secret comes from --secret or the KENDO_WEBHOOK_SECRET environment
/// variable. Prefer the variable: command-line arguments are visible to other
/// users of the machine. The secret is never printed.
///
/// Examples:
///   export KENDO_WEBHOOK_SECRET='whsec_...'
///   kendo-webhook send --url http://127.0.0.1:3000/webhooks/kendo
///   kendo-webhook send --url http://127.0.0.1:3000/webhooks/kendo --set agentName=Bob --set aiScore=72
///   kendo-webhook send --url http://127.0.0.1:3000/webhooks/kendo --real --count 20 --agents Ana,Bob,Chen --scores 40..95
///   kendo-webhook listen --forward-to http://127.0.0.1:3000/webhooks/kendo
///   kendo-webhook sign body.json
///   kendo-webhook verify --signature 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843 body.json
///
/// Exit codes: 0 success; 1 the delivery got no 2xx, or the signature does not
/// verify (for send: a delivery got no 2xx); 2 usage or I/O error.
#[derive(Parser)]
#[command(name = "kendo-webhook", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// POST signed deliveries with Kendo's headers, timeout and retries.
    ///
    /// The body is Kendo's documented example payload for --event, with a fresh event
    /// id (evt_<hex>) and created_at set to now, marked as a test delivery ("_isTest":
    /// true in `data`, as Kendo's "Send Test" button does) so that it stays out of
    /// business numbers; --real sends it without the marker. --set FIELD=VALUE
    /// overrides one field of `data` (VALUE is JSON when it parses as JSON: 72, 1.5,
    /// true, null, "72"; text otherwise; a dotted FIELD reaches into nested objects).
    /// With --data FILE (or - for stdin) the file's JSON object replaces the example's
    /// `data`. --raw FILE sends the file's bytes exactly as they are (a captured body,
    /// re-sent byte for byte); X-Kendo-Event is then --event, or the body's `event`
    /// when --event is not given.
    ///
    /// --count N sends N deliveries one after the other, each with fresh event and
    /// delivery ids; --agents A,B,C sets agentName and agentId round-robin, --scores
    /// LOW..HIGH sets aiScore (a string, as Kendo sends it) at random in the range,
    /// repeatable with --seed. A summary line counts the answers at the end.
    ///
    /// The request carries Content-Type: application/json, X-Kendo-Signature,
    /// X-Kendo-Event and X-Kendo-Delivery-Id (a fresh dlv_<hex> unless given). Retries
    /// follow Kendo's schedule: {schedule}
    /// (--attempts changes the count; each further wait doubles, at most 60 s). A
    /// timeout, a connection error or any non-2xx status (redirects are not followed)
    /// is retried with the same delivery id and the same bytes. One line is printed
    /// per attempt: status, latency, the app's x-kendo-* headers (x-kendo-inbox:
    /// stored or duplicate, x-kendo-webhook-rejection and its meaning) and the start of
    /// its body; then the verdict: stored, duplicate, accepted (2xx, nothing more said)
    /// or given up. While an answer is slow to come, a line every 2 s on stderr says
    /// how long the attempt has waited.
    ///
    /// Exits 0 when every delivery got a 2xx, 1 when one did not, 2 on a usage or I/O
    /// error.
    ///
    /// Examples (the secret in --secret or KENDO_WEBHOOK_SECRET):
    ///   kendo-webhook send --url http://127.0.0.1:3000/webhooks/kendo --secret change-me
    ///   kendo-webhook send --url http://127.0.0.1:3000/webhooks/kendo --set agentName=Bob --set aiScore='"72"' --set duration=61
    ///   kendo-webhook send --url http://127.0.0.1:3000/webhooks/kendo --real --count 20 --agents Ana,Bob,Chen --scores 40..95
    ///   KENDO_WEBHOOK_SECRET=change-me kendo-webhook send --url https://crm.example.com/webhooks/kendo --event ai.training.completed
    ///   echo '{"callId": "c_42", "aiScore": "71"}' | kendo-webhook send --url http://127.0.0.1:3000/webhooks/kendo --data -
    ///   kendo-webhook send --url http://127.0.0.1:3000/webhooks/kendo --raw captured-body.json --attempts 1
    ///   kendo-webhook send --url http://127.0.0.1:3000/webhooks/kendo --event-id evt_1 --delivery-id dlv_1   # send twice: the second is a duplicate
    #[command(verbatim_doc_comment)]
    Send(SendArgs),
    /// Receive deliveries locally: verify, print and optionally forward each one.
    ///
    /// Listens on --addr (default 127.0.0.1:8787) and runs every request, on any path,
    /// through the crate's KendoWebhookLayer with --secret (and --previous-secret):
    /// the verdict is exactly what your receiver would answer. Each request prints
    /// one line: the event, event id and delivery id, the verdict (which secret
    /// matched, or the rejection reason and what it means) and, with --forward-to, the
    /// answer of your app: its status, x-kendo-* headers and the start of its body,
    /// under the verdict they mean (stored, duplicate, accepted or failed). Verified
    /// deliveries are forwarded unchanged (the same bytes and Kendo headers) to
    /// --forward-to, and your app's status, headers and body are answered to the
    /// sender; without it, they are answered 200. Rejected requests are answered by
    /// the layer and never forwarded; a copy of a delivery already answered 2xx is
    /// answered as a duplicate, as the layer does. Kendo retries any answer that is
    /// not 2xx: {schedule}.
    ///
    /// Runs until interrupted (Ctrl-C).
    ///
    /// Examples:
    ///   kendo-webhook listen --secret change-me
    ///   kendo-webhook listen --secret change-me --forward-to http://127.0.0.1:3000/webhooks/kendo
    ///   kendo-webhook send --url http://127.0.0.1:8787/webhooks/kendo --secret change-me
    #[command(verbatim_doc_comment)]
    Listen(ListenArgs),
    /// Print the X-Kendo-Signature of a body (the exact bytes of FILE or stdin).
    ///
    /// Lowercase hex of HMAC-SHA256 keyed with the secret, over the exact bytes of
    /// FILE (or stdin with - or no FILE). Nothing is trimmed or re-encoded: a
    /// trailing newline is part of the body and changes the signature.
    ///
    /// Examples:
    ///   kendo-webhook sign --secret change-me body.json
    ///   printf '%s' '{"id":"evt_1"}' | KENDO_WEBHOOK_SECRET=change-me kendo-webhook sign
    ///   curl -X POST http://127.0.0.1:3000/webhooks/kendo -H 'Content-Type: application/json' \
    ///     -H "X-Kendo-Signature: $(kendo-webhook sign body.json)" -H 'X-Kendo-Event: call.uploaded' \
    ///     -H 'X-Kendo-Delivery-Id: dlv_1' --data-binary @body.json
    #[command(verbatim_doc_comment)]
    Sign(SignArgs),
    /// Check an X-Kendo-Signature against a body (FILE or stdin).
    ///
    /// Checks against the exact bytes of a body (FILE, or stdin with - or no FILE), as
    /// the receiving layer does: 64 hex digits of either case, optionally prefixed by
    /// sha256=, compared in constant time.
    ///
    /// Prints `ok (secret current)` (or `previous` when it matched
    /// --previous-secret) and exits 0; otherwise prints one line with the stable
    /// reason and what to check, and exits 1. Exits 2 on a usage or I/O error.
    ///
    /// Examples:
    ///   kendo-webhook verify --secret change-me --signature 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843 body.json
    ///   cat body.json | kendo-webhook verify --signature "$SIG" --previous-secret "$OLD_SECRET" -
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),
    /// Print a shell completion script for kendo-webhook.
    ///
    /// Examples:
    ///   kendo-webhook completions bash > ~/.local/share/bash-completion/completions/kendo-webhook
    ///   kendo-webhook completions zsh > "${fpath[1]}/_kendo-webhook"
    ///   kendo-webhook completions fish > ~/.config/fish/completions/kendo-webhook.fish
    #[command(verbatim_doc_comment)]
    Completions(CompletionsArgs),
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
struct PreviousSecretArg {
    /// A secret being rotated out, also accepted (reported as `previous`).
    #[arg(
        long,
        env = "KENDO_WEBHOOK_SECRET_PREVIOUS",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    previous_secret: Option<String>,
}

#[derive(Args)]
struct SendArgs {
    /// The endpoint to POST to (http or https).
    #[arg(long, value_name = "URL")]
    url: String,
    #[command(flatten)]
    secret: SecretArg,
    /// The event name: call.uploaded, ai.training.completed or any other NAME
    /// [default: call.uploaded; with --raw, the body's `event`].
    #[arg(long, value_name = "NAME")]
    event: Option<String>,
    /// A JSON object to send as the event's `data` (FILE, or - for stdin).
    #[arg(long, value_name = "FILE|-", value_parser = parse_input, conflicts_with = "raw")]
    data: Option<Input>,
    /// Send the exact bytes of FILE (or - for stdin) as the body, unwrapped.
    #[arg(long, value_name = "FILE|-", value_parser = parse_input)]
    raw: Option<Input>,
    /// Mark the delivery as a test: `data._isTest = true` (the default; kept for
    /// clarity in scripts).
    #[arg(long, conflicts_with_all = ["raw", "real"])]
    test: bool,
    /// Send a real delivery: no `_isTest` in `data`, so it counts in business numbers.
    #[arg(long, conflicts_with = "raw")]
    real: bool,
    /// Override one field of `data`: FIELD=VALUE, VALUE as JSON when it parses (72,
    /// true, null, "72"), text otherwise; a dotted FIELD sets a nested field. Repeatable.
    /// Kendo sends aiScore as a string: aiScore='"72"' keeps that type, aiScore=72 sends
    /// a number.
    #[arg(long = "set", value_name = "FIELD=VALUE", value_parser = payload::parse_set, conflicts_with = "raw")]
    set: Vec<FieldSet>,
    /// Send N deliveries, each with fresh event and delivery ids.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000), conflicts_with = "raw")]
    count: u32,
    /// Agent names for `agentName` and `agentId`, used round-robin: A,B,C.
    #[arg(long, value_name = "A,B,C", value_parser = payload::parse_agents, conflicts_with = "raw")]
    agents: Option<Agents>,
    /// AI scores for `aiScore`, at random in LOW..HIGH (inclusive, 0 to 100).
    #[arg(long, value_name = "LOW..HIGH", value_parser = payload::parse_scores, conflicts_with = "raw")]
    scores: Option<RangeInclusive<u32>>,
    /// The random seed for --scores [default: random, printed].
    #[arg(long, value_name = "SEED", conflicts_with = "raw")]
    seed: Option<u64>,
    /// The X-Kendo-Delivery-Id to send [default: a fresh `dlv_` + random hex].
    #[arg(long, value_name = "ID")]
    delivery_id: Option<String>,
    /// The event `id` in the body [default: a fresh `evt_` + random hex].
    #[arg(long, value_name = "ID", conflicts_with = "raw")]
    event_id: Option<String>,
    /// How many attempts to make per delivery before giving up (Kendo's schedule:
    /// {schedule}).
    #[arg(long, value_name = "N", default_value_t = schedule::ATTEMPTS, value_parser = clap::value_parser!(u32).range(1..=schedule::MAX_ATTEMPTS))]
    attempts: u32,
}

#[derive(Args)]
struct ListenArgs {
    #[command(flatten)]
    secret: SecretArg,
    #[command(flatten)]
    previous: PreviousSecretArg,
    /// The address to listen on (port 0: any free port, printed at start).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8787")]
    addr: std::net::SocketAddr,
    /// Forward every verified delivery, unchanged, to this URL (http or https).
    #[arg(long, value_name = "URL")]
    forward_to: Option<String>,
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
    #[command(flatten)]
    previous: PreviousSecretArg,
    /// The X-Kendo-Signature value to check.
    #[arg(long, value_name = "SIG")]
    signature: String,
    /// The body that was signed: a file, or - for stdin.
    #[arg(value_name = "FILE|-", default_value = "-", value_parser = parse_input)]
    input: Input,
}

#[derive(Args)]
struct CompletionsArgs {
    /// The shell to write completions for.
    #[arg(value_name = "SHELL")]
    shell: clap_complete::Shell,
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

/// The command line, with [`schedule::PLACEHOLDER`] in help texts replaced
/// by the schedule `send` uses.
fn command() -> clap::Command {
    fill_schedule(Cli::command(), &schedule::describe())
}

fn fill_schedule(mut command: clap::Command, schedule: &str) -> clap::Command {
    let fill =
        |text: &clap::builder::StyledStr| text.to_string().replace(schedule::PLACEHOLDER, schedule);
    if let Some(about) = command.get_about().map(fill) {
        command = command.about(about);
    }
    if let Some(long_about) = command.get_long_about().map(fill) {
        command = command.long_about(long_about);
    }
    command = command.mut_args(|mut arg| {
        if let Some(help) = arg.get_help().map(fill) {
            arg = arg.help(help);
        }
        if let Some(long_help) = arg.get_long_help().map(fill) {
            arg = arg.long_help(long_help);
        }
        arg
    });
    command.mut_subcommands(|sub| fill_schedule(sub, schedule))
}

fn main() -> ExitCode {
    let matches = command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut command()).exit());
    let result = match cli.command {
        Command::Send(args) => send::send(args),
        Command::Listen(args) => listen::listen(args),
        Command::Sign(args) => sign_body(args),
        Command::Verify(args) => verify(args),
        Command::Completions(args) => {
            clap_complete::generate(
                args.shell,
                &mut command(),
                "kendo-webhook",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
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

/// `--secret` labelled `current`, then `--previous-secret` labelled `previous`.
fn secrets(
    secret_arg: &SecretArg,
    previous: &PreviousSecretArg,
) -> Result<Vec<Secret>, UsageError> {
    let mut secrets = vec![Secret::new(secret(secret_arg)?).with_label("current")];
    match previous.previous_secret.as_deref() {
        Some("") => return Err("--previous-secret is empty; omit it or give the old secret".into()),
        Some(previous) => secrets.push(Secret::new(previous).with_label("previous")),
        None => {}
    }
    Ok(secrets)
}

fn verify(args: VerifyArgs) -> Result<ExitCode, UsageError> {
    let verifier =
        Verifier::new(secrets(&args.secret, &args.previous)?).map_err(|e| e.to_string())?;
    let body = read_input(&args.input)?;
    match verifier.verify(args.signature.as_bytes(), &body) {
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
