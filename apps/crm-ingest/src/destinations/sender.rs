//! One HTTP attempt: `POST` the body with the Standard Webhooks headers
//! (destinations) or as is (alerts), within the timeout, redirects not
//! followed, the answer read up to [`ANSWER_BYTES`].
//!
//! The client is reqwest with rustls (ring) and the webpki roots, as the
//! `kendo-webhook` CLI already builds it: HTTPS works out of the box
//! (Zapier, Make and Slack are HTTPS), with no OpenSSL and no new TLS stack
//! in the build.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};

use super::outbox::clip;
use super::signature::SigningKey;

/// Most bytes of an answer read (the console keeps fewer).
pub const ANSWER_BYTES: usize = 4096;

/// How a target wants its requests.
#[derive(Debug, Clone)]
pub enum Headers {
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp` and, with a
    /// key, `webhook-signature`.
    StandardWebhooks(Option<SigningKey>),
    /// `content-type: application/json` only (Slack's incoming webhooks).
    Plain,
}

/// What an attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP answer: its status and first characters.
    Status(u16, String),
    /// None: refused, reset, timed out, TLS failed; what happened.
    Nothing(String),
}

/// The client every target shares; cheap to clone.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
}

impl Sender {
    /// A client whose attempts end after `timeout`, trusting the public
    /// roots and `extra_roots` (PEM), if any.
    pub fn new(timeout: Duration, extra_roots: Option<&[u8]>) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = extra_roots {
            let roots = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("could not read a ca_file's certificates: {e}"))?;
            for root in roots {
                builder = builder.add_root_certificate(root);
            }
        }
        let client = builder
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect is an answer of its own (Standard Webhooks: not 2xx).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("crm-ingest/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("could not build the HTTP client: {e}"))?;
        Ok(Self { client })
    }

    /// Sends `body` for event `id`; returns the answer and how long it took.
    pub async fn send(
        &self,
        url: &reqwest::Url,
        headers: &Headers,
        id: &str,
        timestamp: i64,
        body: Vec<u8>,
    ) -> (Answer, Duration) {
        let started = Instant::now();
        let mut map = HeaderMap::new();
        map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Headers::StandardWebhooks(key) = headers {
            let Ok(id_value) = HeaderValue::from_str(id) else {
                return (
                    Answer::Nothing(format!("the event id {id:?} cannot be a header value")),
                    started.elapsed(),
                );
            };
            map.insert("webhook-id", id_value);
            map.insert("webhook-timestamp", HeaderValue::from(timestamp));
            if let Some(key) = key {
                if let Ok(value) = HeaderValue::from_str(&key.sign(id, timestamp, &body)) {
                    map.insert("webhook-signature", value);
                }
            }
        }
        let request = self.client.post(url.clone()).headers(map).body(body);
        let answer = match request.send().await {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let mut read = Vec::new();
                while read.len() < ANSWER_BYTES {
                    match response.chunk().await {
                        Ok(Some(chunk)) => read.extend_from_slice(&chunk),
                        Ok(None) | Err(_) => break,
                    }
                }
                read.truncate(ANSWER_BYTES);
                Answer::Status(status, clip(&String::from_utf8_lossy(&read)))
            }
            Err(error) => Answer::Nothing(clip(&describe(&error))),
        };
        (answer, started.elapsed())
    }
}

/// reqwest's error with its causes, which say what happened (refused,
/// timed out, certificate…).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
