//! `CRM_CONFIG`: the TOML file that names the destinations and the alert
//! rules, read and checked once at start.
//!
//! Every mistake is refused before anything starts, with one sentence that
//! names the key: an unknown key, a URL that is not `http(s)://host…`, a
//! duplicate name, a secret that is not `whsec_` + base64, a `secret_env`
//! whose variable is unset, a threshold out of range. `main` prints it and
//! exits with code 2.
//!
//! ```toml
//! [[destinations]]
//! name = "zapier"
//! url = "https://hooks.zapier.com/hooks/catch/123/abc"
//! events = ["call.uploaded"]      # default: every event
//! include_test = false            # default: test deliveries stay home
//! secret_env = "ZAPIER_SECRET"    # or secret = "whsec_…"; none: unsigned
//! concurrency = 1                 # default 1: delivered in store order
//! ca_file = "internal-ca.pem"     # optional: roots added for an internal HTTPS endpoint
//!
//! [[alerts]]
//! name = "low-score"
//! url = "https://hooks.slack.com/services/T000/B000/XXX"
//! call_score_below = 50
//!
//! [[alerts]]
//! name = "kendo-silent"
//! url = "https://hooks.slack.com/services/T000/B000/YYY"
//! silent_for_minutes = 60         # no verified delivery for an hour
//!
//! [[alerts]]
//! name = "coaching"
//! url = "https://hooks.slack.com/services/T000/B000/WWW"
//! agent_average_below = 60        # an agent's average over its newest calls
//! agent_window = 10               # that many calls (default 10)
//!
//! [[alerts]]
//! name = "dead-rows"
//! url = "https://hooks.slack.com/services/T000/B000/ZZZ"
//! dead_rows = true                # inbox rows whose projection gave up
//!
//! [retry]                         # optional; the defaults are shown
//! first_delay_ms = 1000
//! max_delay_ms = 900000
//! give_up_after_minutes = 1440
//! timeout_ms = 10000
//! ```

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::signature::SigningKey;

/// The variable that names the file.
pub const CONFIG_VAR: &str = "CRM_CONFIG";

/// Longest concurrency a destination may ask for.
const MAX_CONCURRENCY: u32 = 64;

/// Everything `CRM_CONFIG` describes, checked.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Where Kendo's events are forwarded, in file order.
    pub destinations: Vec<DestinationSettings>,
    /// The managers' alert rules, in file order.
    pub alerts: Vec<AlertSettings>,
    /// The retry schedule, shared by every target.
    pub retry: RetrySettings,
}

/// One `[[destinations]]` entry.
#[derive(Debug, Clone)]
pub struct DestinationSettings {
    /// Unique among destinations and alerts; shown on the console.
    pub name: String,
    /// Where to `POST`.
    pub url: reqwest::Url,
    /// The event names forwarded; `None`: every event.
    pub events: Option<Vec<String>>,
    /// Whether test deliveries (`data._isTest`) are forwarded too.
    pub include_test: bool,
    /// The Standard Webhooks key; `None` sends no `webhook-signature`.
    pub key: Option<SigningKey>,
    /// Requests in flight at once (1 keeps store order).
    pub concurrency: u32,
    /// PEM certificates trusted besides the public roots (`ca_file`), for
    /// an endpoint behind an internal CA.
    pub extra_roots: Option<Vec<u8>>,
}

impl DestinationSettings {
    /// Whether this destination takes the event.
    pub fn selects(&self, event: &str, is_test: bool) -> bool {
        (self.include_test || !is_test)
            && self
                .events
                .as_ref()
                .is_none_or(|events| events.iter().any(|e| e == event))
    }
}

/// One `[[alerts]]` entry.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// Unique among destinations and alerts; shown on the console.
    pub name: String,
    /// A Slack-compatible incoming webhook.
    pub url: reqwest::Url,
    /// The rule.
    pub rule: AlertRule,
}

/// What makes an alert fire.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum AlertRule {
    /// A real call whose `aiScore` is below this.
    CallScoreBelow(f64),
    /// No verified delivery for this long (Kendo silent, or the webhook
    /// broken on its side): once per silence.
    SilentFor(Duration),
    /// Inbox rows went dead (every attempt to project them failed): once
    /// per newly dead row.
    DeadRows,
    /// An agent's average AI score over its newest `calls` real scored
    /// calls (of the last 7 days) is below `score`: once per agent and day.
    AgentAverageBelow {
        /// The threshold.
        score: f64,
        /// How many of the agent's newest calls are averaged.
        calls: u32,
    },
}

impl AlertRule {
    /// Whether the rule is checked on a timer rather than per event.
    pub fn is_watched(self) -> bool {
        !matches!(self, Self::CallScoreBelow(_))
    }
}

/// How failed attempts are retried (see `backoff.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySettings {
    /// The cap of the first retry's random wait; doubled after each failure.
    pub first_delay: Duration,
    /// The largest cap.
    pub max_delay: Duration,
    /// A row still failing this long after it was stored is dead.
    pub give_up_after: Duration,
    /// One attempt's time limit (connect, send, answer).
    pub timeout: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            give_up_after: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The file cannot be used; says which key and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    key: String,
    problem: String,
}

impl SettingsError {
    fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// The key at fault, e.g. `destinations[0].url` (empty when the file
    /// as a whole is at fault).
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "{}: {}", self.key, self.problem)
        }
    }
}

impl std::error::Error for SettingsError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    destinations: Vec<DestinationEntry>,
    #[serde(default)]
    alerts: Vec<AlertEntry>,
    #[serde(default)]
    retry: Option<RetryEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationEntry {
    name: String,
    url: String,
    events: Option<Vec<String>>,
    #[serde(default)]
    include_test: bool,
    secret: Option<String>,
    secret_env: Option<String>,
    concurrency: Option<u32>,
    ca_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertEntry {
    name: String,
    url: String,
    call_score_below: Option<f64>,
    silent_for_minutes: Option<u64>,
    dead_rows: Option<bool>,
    agent_average_below: Option<f64>,
    agent_window: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryEntry {
    first_delay_ms: Option<u64>,
    max_delay_ms: Option<u64>,
    give_up_after_minutes: Option<u64>,
    timeout_ms: Option<u64>,
}

impl Settings {
    /// Reads and checks the file at `path`; `env` looks up `secret_env`
    /// variables (`std::env::var` in `main`).
    pub fn load(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            SettingsError::new(
                "",
                format!(
                    "cannot read {}: {error} (CRM_CONFIG must name a readable TOML file)",
                    path.display()
                ),
            )
        })?;
        Self::parse(&text, env)
    }

    /// Parses and checks TOML text.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let file: File = toml::from_str(text).map_err(|error| toml_error(text, &error))?;
        let mut names = HashSet::new();
        let mut unique = |key: String, name: &str| {
            if name.trim().is_empty() || name.len() > 64 || name.contains('/') {
                return Err(SettingsError::new(
                    key,
                    "a name must be 1 to 64 characters without '/'",
                ));
            }
            if !names.insert(name.to_owned()) {
                return Err(SettingsError::new(
                    key,
                    format!("the name {name:?} is used twice; names of destinations and alerts must be unique"),
                ));
            }
            Ok(())
        };
        let mut destinations = Vec::new();
        for (i, d) in file.destinations.into_iter().enumerate() {
            let at = |field: &str| format!("destinations[{i}].{field}");
            unique(at("name"), &d.name)?;
            let url = url(&at("url"), &d.url)?;
            let key = match (d.secret, d.secret_env) {
                (Some(_), Some(_)) => {
                    return Err(SettingsError::new(
                        at("secret"),
                        "set either secret or secret_env, not both",
                    ))
                }
                (Some(secret), None) => Some(key(&at("secret"), &secret)?),
                (None, Some(var)) => {
                    let secret = env(&var).filter(|v| !v.is_empty()).ok_or_else(|| {
                        SettingsError::new(
                            at("secret_env"),
                            format!("the variable {var} is unset or empty; set it to the destination's whsec_ secret"),
                        )
                    })?;
                    Some(key(&at("secret_env"), &secret)?)
                }
                (None, None) => None,
            };
            if let Some(events) = &d.events {
                if events.is_empty() || events.iter().any(|e| e.trim().is_empty()) {
                    return Err(SettingsError::new(
                        at("events"),
                        "list event names such as \"call.uploaded\", or leave events out for every event",
                    ));
                }
            }
            let concurrency = d.concurrency.unwrap_or(1);
            if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
                return Err(SettingsError::new(
                    at("concurrency"),
                    format!("{concurrency} is out of range; expected 1 to {MAX_CONCURRENCY}"),
                ));
            }
            let extra_roots = match d.ca_file {
                None => None,
                Some(path) => Some(roots(&at("ca_file"), &path)?),
            };
            destinations.push(DestinationSettings {
                name: d.name,
                url,
                events: d.events,
                include_test: d.include_test,
                key,
                concurrency,
                extra_roots,
            });
        }
        let mut alerts = Vec::new();
        for (i, a) in file.alerts.into_iter().enumerate() {
            let at = |field: &str| format!("alerts[{i}].{field}");
            unique(at("name"), &a.name)?;
            let url = url(&at("url"), &a.url)?;
            let mut rules = Vec::new();
            match a.call_score_below {
                Some(score) if score.is_finite() && score > 0.0 && score <= 100.0 => {
                    rules.push(("call_score_below", AlertRule::CallScoreBelow(score)));
                }
                Some(score) => {
                    return Err(SettingsError::new(
                        at("call_score_below"),
                        format!(
                            "{score} is out of range; expected a score above 0 and at most 100"
                        ),
                    ))
                }
                None => {}
            }
            match a.silent_for_minutes {
                Some(m @ 1..=10_080) => rules.push((
                    "silent_for_minutes",
                    AlertRule::SilentFor(Duration::from_secs(m * 60)),
                )),
                Some(m) => {
                    return Err(SettingsError::new(
                        at("silent_for_minutes"),
                        format!("{m} is out of range; expected 1 to 10080 (a week)"),
                    ))
                }
                None => {}
            }
            if a.dead_rows == Some(true) {
                rules.push(("dead_rows", AlertRule::DeadRows));
            }
            let calls = match (a.agent_window, a.agent_average_below) {
                (None, _) => 10,
                (Some(n @ 2..=1_000), Some(_)) => n,
                (Some(n), Some(_)) => {
                    return Err(SettingsError::new(
                        at("agent_window"),
                        format!("{n} is out of range; expected 2 to 1000 calls"),
                    ))
                }
                (Some(_), None) => {
                    return Err(SettingsError::new(
                        at("agent_window"),
                        "it goes with agent_average_below; set that too, or remove it",
                    ))
                }
            };
            match a.agent_average_below {
                Some(score) if score.is_finite() && score > 0.0 && score <= 100.0 => rules.push((
                    "agent_average_below",
                    AlertRule::AgentAverageBelow { score, calls },
                )),
                Some(score) => {
                    return Err(SettingsError::new(
                        at("agent_average_below"),
                        format!(
                            "{score} is out of range; expected a score above 0 and at most 100"
                        ),
                    ))
                }
                None => {}
            }
            let rule = match rules.as_slice() {
                [(_, rule)] => *rule,
                [] => {
                    return Err(SettingsError::new(
                        at("call_score_below"),
                        "an alert needs a rule; set call_score_below (e.g. 50), \
                         agent_average_below (e.g. 60), silent_for_minutes (e.g. 60) \
                         or dead_rows = true",
                    ))
                }
                [_, (second, _), ..] => {
                    return Err(SettingsError::new(
                        at(second),
                        "an alert has one rule; give this one an [[alerts]] entry of its own",
                    ))
                }
            };
            alerts.push(AlertSettings {
                name: a.name,
                url,
                rule,
            });
        }
        let retry = match file.retry {
            None => RetrySettings::default(),
            Some(r) => retry(r)?,
        };
        Ok(Self {
            destinations,
            alerts,
            retry,
        })
    }

    /// Whether nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.destinations.is_empty() && self.alerts.is_empty()
    }

    /// The names of every target, destinations first.
    pub fn target_names(&self) -> Vec<String> {
        self.destinations
            .iter()
            .map(|d| d.name.clone())
            .chain(self.alerts.iter().map(|a| a.name.clone()))
            .collect()
    }
}

fn retry(r: RetryEntry) -> Result<RetrySettings, SettingsError> {
    let default = RetrySettings::default();
    let ms = |key: &str, value: Option<u64>, default: Duration, min: u64, max: u64| match value {
        None => Ok(default),
        Some(v) if (min..=max).contains(&v) => Ok(Duration::from_millis(v)),
        Some(v) => Err(SettingsError::new(
            format!("retry.{key}"),
            format!("{v} is out of range; expected {min} to {max}"),
        )),
    };
    let first_delay = ms(
        "first_delay_ms",
        r.first_delay_ms,
        default.first_delay,
        1,
        3_600_000,
    )?;
    let max_delay = ms(
        "max_delay_ms",
        r.max_delay_ms,
        default.max_delay,
        1,
        86_400_000,
    )?;
    if max_delay < first_delay {
        return Err(SettingsError::new(
            "retry.max_delay_ms",
            "it is below first_delay_ms; the cap must be at least the first delay",
        ));
    }
    let give_up_after = match r.give_up_after_minutes {
        None => default.give_up_after,
        Some(m) if (1..=43_200).contains(&m) => Duration::from_secs(m * 60),
        Some(m) => {
            return Err(SettingsError::new(
                "retry.give_up_after_minutes",
                format!("{m} is out of range; expected 1 to 43200 (30 days)"),
            ))
        }
    };
    let timeout = ms("timeout_ms", r.timeout_ms, default.timeout, 100, 60_000)?;
    Ok(RetrySettings {
        first_delay,
        max_delay,
        give_up_after,
        timeout,
    })
}

fn url(key: &str, value: &str) -> Result<reqwest::Url, SettingsError> {
    let bad = |why: &str| {
        SettingsError::new(
            key,
            format!(
                "{value:?} is not a usable URL ({why}); expected http:// or https:// and a host"
            ),
        )
    };
    let url = reqwest::Url::parse(value).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("wrong scheme"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(url)
}

/// The PEM file's certificates, checked to hold at least one.
fn roots(at: &str, path: &str) -> Result<Vec<u8>, SettingsError> {
    let pem = std::fs::read(path)
        .map_err(|error| SettingsError::new(at, format!("cannot read {path}: {error}")))?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(certificates) if !certificates.is_empty() => Ok(pem),
        _ => Err(SettingsError::new(
            at,
            format!("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
        )),
    }
}

fn key(at: &str, secret: &str) -> Result<SigningKey, SettingsError> {
    SigningKey::from_whsec(secret).ok_or_else(|| {
        SettingsError::new(
            at,
            "the secret is not whsec_ followed by base64 (a Standard Webhooks secret)",
        )
    })
}

/// toml's error as one sentence: its key (with the table it is in, when
/// it names one), its line and its message.
fn toml_error(text: &str, error: &toml::de::Error) -> SettingsError {
    let message = error.message().trim().replace('\n', " ");
    let offset = error.span().map(|span| span.start.min(text.len()));
    let line = offset.map(|at| text[..at].matches('\n').count() + 1);
    // The field the message names, else the key on the error's line (a
    // value of the wrong type: `name = 5`).
    let field = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next())
        .or_else(|| {
            let at = offset?;
            let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let line = text[line_start..].lines().next()?;
            let (key, _) = line.split_once('=')?;
            Some(key.trim()).filter(|k| !k.is_empty() && !k.starts_with('['))
        });
    let key = match (field, offset) {
        (Some(field), Some(at)) => match table_at(&text[..at]) {
            Some(table) => format!("{table}.{field}"),
            None => field.to_owned(),
        },
        (Some(field), None) => field.to_owned(),
        (None, Some(at)) => table_at(&text[..text[at..].find('\n').map_or(text.len(), |n| at + n)])
            .unwrap_or_default(),
        (None, None) => String::new(),
    };
    let mut problem = match line {
        Some(line) => format!("line {line}: {message}"),
        None => message,
    };
    if problem.ends_with("expected a sequence") {
        problem.push_str(" (each entry is a table of its own: [[destinations]], [[alerts]])");
    }
    SettingsError::new(key, problem)
}

/// The table the end of `before` is in: `destinations[1]`, `retry`, or
/// `None` at the top level.
fn table_at(before: &str) -> Option<String> {
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut table = None;
    for line in before.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let name = name.trim().to_owned();
            let n = counts.entry(name.clone()).or_default();
            table = Some(format!("{name}[{n}]"));
            *n += 1;
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            table = Some(name.trim().to_owned());
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn parse(text: &str) -> Result<Settings, SettingsError> {
        Settings::parse(text, |name| {
            (name == "ZAPIER_SECRET").then(|| SECRET.to_owned())
        })
    }

    #[test]
    fn the_issues_example_parses() {
        let settings = parse(&format!(
            r#"
            [[destinations]]
            name = "zapier"
            url = "https://example.invalid/catch/123"
            events = ["call.uploaded"]
            include_test = false
            secret = "{SECRET}"

            [[alerts]]
            name = "low-score"
            url = "https://example.invalid/slack/T000/B000/XXX"
            call_score_below = 50
            "#
        ))
        .expect("valid");
        assert_eq!(settings.destinations[0].name, "zapier");
        assert!(settings.destinations[0].key.is_some());
        assert!(settings.destinations[0].selects("call.uploaded", false));
        assert!(!settings.destinations[0].selects("call.uploaded", true));
        assert!(!settings.destinations[0].selects("ai_training.completed", false));
        assert_eq!(settings.alerts[0].rule, AlertRule::CallScoreBelow(50.0));
        assert_eq!(settings.retry, RetrySettings::default());
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let error = parse(
            "[[destinations]]\nname = \"a\"\nurl = \"https://x.test/\"\n\
             [[destinations]]\nname = \"b\"\nurl = \"https://x.test/\"\nurll = 1\n",
        )
        .expect_err("refused");
        assert_eq!(error.key(), "destinations[1].urll");
        assert!(error.to_string().contains("line 7"), "{error}");
    }

    #[test]
    fn each_bad_value_names_its_key() {
        let cases = [
            ("[[destinations]]\nname = \"a\"\nurl = \"ftp://x.test/\"", "destinations[0].url"),
            ("[[destinations]]\nname = \"a\"\nurl = \"https://x.test/\"\nsecret = \"nope\"", "destinations[0].secret"),
            ("[[destinations]]\nname = \"a\"\nurl = \"https://x.test/\"\nsecret_env = \"UNSET\"", "destinations[0].secret_env"),
            ("[[destinations]]\nname = \"a\"\nurl = \"https://x.test/\"\n[[alerts]]\nname = \"a\"\nurl = \"https://x.test/\"\ncall_score_below = 5", "alerts[0].name"),
            ("[[alerts]]\nname = \"b\"\nurl = \"https://x.test/\"\ncall_score_below = -5", "alerts[0].call_score_below"),
            ("[[alerts]]\nname = \"b\"\nurl = \"https://x.test/\"", "alerts[0].call_score_below"),
            ("[retry]\ntimeout_ms = 0", "retry.timeout_ms"),
            ("[[destinations]]\nname = \"a\"\nurl = \"https://x.test/\"\nca_file = \"/nonexistent/ca.pem\"", "destinations[0].ca_file"),
            ("[[destinations]]\nname = \"a\"\nurl = \"https://x.test/\"\nca_file = \"Cargo.toml\"", "destinations[0].ca_file"),
            ("[[alerts]]\nname = \"b\"\nurl = \"https://x.test/\"\ncall_score_below = 5\ndead_rows = true", "alerts[0].dead_rows"),
            ("[[alerts]]\nname = \"b\"\nurl = \"https://x.test/\"\nsilent_for_minutes = 0", "alerts[0].silent_for_minutes"),
        ];
        for (text, key) in cases {
            let error = parse(text).expect_err(text);
            assert_eq!(error.key(), key, "{text}: {error}");
        }
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_key() {
        let error =
            parse("[[destinations]]\nname = 5\nurl = \"https://x.test/\"\n").expect_err("refused");
        assert_eq!(error.key(), "destinations[0].name", "{error}");
        let error = parse("[destinations]\nname = \"a\"\n").expect_err("refused");
        assert!(error.key().starts_with("destinations"), "{error}");
    }

    #[test]
    fn a_secret_from_the_environment_is_used() {
        let settings = parse(
            "[[destinations]]\nname = \"a\"\nurl = \"https://x.test/\"\nsecret_env = \"ZAPIER_SECRET\"",
        )
        .expect("valid");
        assert!(settings.destinations[0].key.is_some());
    }
}
