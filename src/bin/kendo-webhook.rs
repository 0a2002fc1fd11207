//! `kendo-webhook`: send, sign and verify Kendo webhook deliveries exactly as
//! Kendo does (feature `cli`). Usage: `kendo-webhook --help` or `docs/cli.md`.

use std::fmt;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kendo_webhooks::{sign, Secret, Verifier, CALL_UPLOADED};

#[path = "kendo_webhook_cli/help.rs"]
mod help;
#[path = "kendo_webhook_cli/send.rs"]
mod send;

use help::*;

/// Exit code for usage and I/O errors (clap's own usage errors use it too).
const EXIT_USAGE: u8 = 2;

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
    /// The X-Kendo-Delivery-Id to send [default: a fresh `dlv_` + random hex].
    #[arg(long, value_name = "ID")]
    delivery_id: Option<String>,
    /// The event `id` in the body [default: a fresh `evt_` + random hex].
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
        Command::Send(args) => send::send(args),
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
