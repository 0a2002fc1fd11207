//! The managers' alerts: which events fire a rule, and the message, as
//! Slack's incoming-webhook JSON (`{"text": "…"}`, which Mattermost,
//! Rocket.Chat, Discord's `/slack` endpoints and others accept too).
//!
//! `call_score_below` is built when the event is projected and stored in the
//! outbox with it. The watched rules (`agent_average_below`,
//! `silent_for_minutes`, `dead_rows`) are checked every [`WATCH_EVERY`] by
//! `spawn_watch`, which stores a row under an id of the episode (the agent
//! and the day, the last delivery's time, the newest dead row):
//! every replica and every round computes the same id, and the outbox's
//! unique `(target, event_id)` keeps one. Either way a message is sent and
//! retried like a destination's row, once per rule and event or episode.

use std::time::Duration;

use kendo_webhooks::{Delivery, Event};
use kendo_webhooks_inbox::{Inbox, RowState};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::outbox::Outbox;
use super::settings::{AlertRule, AlertSettings};
use super::signals::{stopping, Waker};
use crate::storage::{format_ms, now_ms, OutboxRow, Storage};

/// How often the watched rules are checked.
pub const WATCH_EVERY: Duration = Duration::from_secs(30);
/// The calls an agent's average is taken from: those of the last 7 days.
const AVERAGE_OVER_MS: i64 = 7 * 24 * 3600 * 1000;

/// The message `rule` sends for `delivery`, if it fires. `console` is the
/// app's public origin (`CRM_PUBLIC_URL`), for a link to the call.
pub fn message(rule: AlertRule, delivery: &Delivery, console: Option<&str>) -> Option<Vec<u8>> {
    match rule {
        AlertRule::CallScoreBelow(threshold) => {
            let Event::CallUploaded(call) = delivery.event() else {
                return None;
            };
            let score = call.ai_score?;
            if delivery.is_test() || score >= threshold {
                return None;
            }
            let agent = call
                .agent_name
                .as_deref()
                .or(call.agent_id.as_deref())
                .unwrap_or("an unknown agent");
            let mut text = format!(
                "Low call score: {} scored {} on call {} (alert below {}).",
                escape(agent),
                trim(score),
                escape(&call.call_id),
                trim(threshold)
            );
            if let Some(origin) = console {
                let query = crate::views::path_segment(&call.call_id);
                text.push_str(&format!(" <{origin}/?q={query}|Open it in the CRM>"));
            }
            Some(slack(&text))
        }
        _ => None,
    }
}

fn slack(text: &str) -> Vec<u8> {
    serde_json::json!({ "text": text }).to_string().into_bytes()
}

/// What the watch read in one round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Now, Unix ms.
    pub now_ms: i64,
    /// The newest verified delivery, Unix ms.
    pub last_delivery_ms: Option<i64>,
    /// Dead inbox rows: how many, and the event id of the newest.
    pub dead: Option<(u64, String)>,
    /// Per window (calls averaged): each agent's average AI score.
    pub averages: Vec<(u32, Vec<(String, f64)>)>,
}

/// What a watched rule sends after `observed`: for each episode that
/// fires, its id (the outbox row's event id) and the message.
pub fn watched(
    rule: AlertRule,
    observed: &Observed,
    console: Option<&str>,
) -> Vec<(String, Vec<u8>)> {
    let open = console.map_or_else(String::new, |origin| format!(" <{origin}/|Open the CRM>"));
    match rule {
        AlertRule::CallScoreBelow(_) => Vec::new(),
        AlertRule::SilentFor(after) => {
            let Some(last) = observed.last_delivery_ms else {
                return Vec::new();
            };
            let after_ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
            if observed.now_ms.saturating_sub(last) < after_ms {
                return Vec::new();
            }
            let text = format!(
                "Kendo is silent: no verified delivery for {} min (the last at {}). Check the \
                 webhook in Kendo (Integrations > Webhooks), its URL and secret, and the \
                 CRM's rejections.{open}",
                after.as_secs() / 60,
                format_ms(last),
            );
            vec![(format!("silent-since-{last}"), slack(&text))]
        }
        AlertRule::DeadRows => {
            let Some((count, newest)) = observed.dead.as_ref() else {
                return Vec::new();
            };
            let text = format!(
                "{count} inbox row(s) are dead: every attempt to project them failed (the \
                 newest: event {}). Fix the cause, then requeue them (POST \
                 /api/inbox/requeue).{open}",
                escape(newest),
            );
            vec![(format!("dead-{newest}"), slack(&text))]
        }
        AlertRule::AgentAverageBelow { score, calls } => {
            // One a day per agent: the episode is the agent and the UTC day.
            let day = format_ms(observed.now_ms);
            let day = day.get(..10).unwrap_or(&day);
            observed
                .averages
                .iter()
                .filter(|(window, _)| *window == calls)
                .flat_map(|(_, averages)| averages)
                .filter(|(_, average)| *average < score)
                .map(|(agent, average)| {
                    let text = format!(
                        "{}'s average AI score over the last {calls} calls is {}, below {}.{open}",
                        escape(agent),
                        trim(*average),
                        trim(score),
                    );
                    (format!("average-{agent}-{day}"), slack(&text))
                })
                .collect()
        }
    }
}

/// Checks the watched `alerts` every [`WATCH_EVERY`] until `stop`, storing
/// the rows of those that fire.
pub(crate) fn spawn_watch(
    alerts: Vec<AlertSettings>,
    outbox: Outbox,
    storage: Storage,
    inbox: Inbox,
    waker: Waker,
    console: Option<String>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while !stopping(&stop) {
            let observed = observe(&storage, &inbox, &outbox, &alerts).await;
            let rows: Vec<OutboxRow> = alerts
                .iter()
                .flat_map(|alert| {
                    watched(alert.rule, &observed, console.as_deref())
                        .into_iter()
                        .map(|(id, body)| OutboxRow {
                            target: alert.name.clone(),
                            event_id: id,
                            event: "crm.alert".to_owned(),
                            body,
                        })
                })
                .collect();
            if !rows.is_empty() {
                match outbox.enqueue(rows, now_ms()).await {
                    Ok(()) => waker.wake(),
                    Err(error) => tracing::warn!(%error, "could not store the watched alerts"),
                }
            }
            tokio::select! {
                () = tokio::time::sleep(WATCH_EVERY) => {}
                _ = stop.changed() => {}
            }
        }
    })
}

/// Reads what the rules of `alerts` need.
async fn observe(
    storage: &Storage,
    inbox: &Inbox,
    outbox: &Outbox,
    alerts: &[AlertSettings],
) -> Observed {
    let mut observed = Observed {
        now_ms: now_ms(),
        ..Observed::default()
    };
    let week_ago = observed.now_ms.saturating_sub(AVERAGE_OVER_MS);
    for alert in alerts {
        let AlertRule::AgentAverageBelow { calls, .. } = alert.rule else {
            continue;
        };
        if observed.averages.iter().any(|(window, _)| *window == calls) {
            continue;
        }
        match outbox.agent_averages(i64::from(calls), week_ago).await {
            Ok(averages) => observed.averages.push((calls, averages)),
            Err(error) => tracing::debug!(%error, "agent average check skipped"),
        }
    }
    if alerts
        .iter()
        .any(|a| matches!(a.rule, AlertRule::SilentFor(_)))
    {
        match storage.counts().await {
            Ok(counts) => observed.last_delivery_ms = counts.last_delivery_ms,
            Err(error) => tracing::debug!(%error, "silence check skipped"),
        }
    }
    if alerts.iter().any(|a| a.rule == AlertRule::DeadRows) {
        // Counted first: the list (with bodies) is read only when needed.
        let dead = match inbox.counts().await {
            Ok(counts) => counts.dead,
            Err(error) => {
                tracing::debug!(%error, "dead-row check skipped");
                0
            }
        };
        if dead > 0 {
            match inbox.list(RowState::Dead, 1_000).await {
                Ok(rows) => {
                    observed.dead = rows
                        .iter()
                        .max_by_key(|row| row.next_at)
                        .map(|newest| (dead, newest.event_id.clone()));
                }
                Err(error) => tracing::debug!(%error, "dead-row check skipped"),
            }
        }
    }
    observed
}

/// A score without a needless `.0`.
fn trim(score: f64) -> String {
    let text = format!("{score:.1}");
    text.strip_suffix(".0").map_or(text.clone(), str::to_owned)
}

/// Slack's three control characters in message text.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kendo_webhooks::TestDelivery;

    fn call(score: &str, test: bool) -> Delivery {
        let mut body: serde_json::Value = serde_json::from_slice(
            &TestDelivery::example("call.uploaded")
                .event_id("evt_1")
                .created_at("2026-03-05T12:00:00Z")
                .is_test(test)
                .body(),
        )
        .expect("JSON");
        body["data"]["aiScore"] = score.into();
        body["data"]["agentName"] = "Ana <&>".into();
        Delivery::parse(body.to_string(), "dlv_1", "call.uploaded").expect("a delivery")
    }

    #[test]
    fn a_real_call_below_the_threshold_fires_with_agent_score_and_link() {
        let sent = message(
            AlertRule::CallScoreBelow(50.0),
            &call("42", false),
            Some("https://crm.example.com"),
        )
        .expect("fires");
        let json: serde_json::Value = serde_json::from_slice(&sent).expect("JSON");
        let text = json["text"].as_str().expect("text");
        assert!(text.contains("Ana &lt;&amp;&gt; scored 42"), "{text}");
        assert!(text.contains("https://crm.example.com/?q="), "{text}");
    }

    #[test]
    fn silence_fires_once_per_last_delivery() {
        let rule = AlertRule::SilentFor(Duration::from_secs(600));
        let mut observed = Observed {
            now_ms: 1_000_000,
            last_delivery_ms: Some(1_000_000 - 599_000),
            ..Observed::default()
        };
        assert!(watched(rule, &observed, None).is_empty(), "not silent yet");
        observed.now_ms += 1_000;
        let first = watched(rule, &observed, None);
        observed.now_ms += 60_000;
        let again = watched(rule, &observed, None);
        assert_eq!(first.len(), 1, "silent");
        assert_eq!(first[0].0, again[0].0, "the same episode: stored once");
        assert!(String::from_utf8_lossy(&first[0].1).contains("no verified delivery for 10 min"));
        observed.last_delivery_ms = None;
        assert!(
            watched(rule, &observed, None).is_empty(),
            "nothing ever arrived"
        );
    }

    #[test]
    fn dead_rows_fire_once_per_newest_dead_row() {
        let observed = Observed {
            dead: Some((3, "evt_9".to_owned())),
            ..Observed::default()
        };
        let fired = watched(AlertRule::DeadRows, &observed, None);
        assert_eq!(fired[0].0, "dead-evt_9");
        assert!(String::from_utf8_lossy(&fired[0].1).contains("3 inbox row(s) are dead"));
        assert!(watched(AlertRule::DeadRows, &Observed::default(), None).is_empty());
    }

    #[test]
    fn an_agent_below_the_average_fires_once_a_day() {
        let rule = AlertRule::AgentAverageBelow {
            score: 60.0,
            calls: 3,
        };
        let observed = Observed {
            now_ms: 1_764_662_400_000,
            averages: vec![
                (3, vec![("Bob".to_owned(), 30.0), ("Ana".to_owned(), 90.0)]),
                (5, vec![("Chen".to_owned(), 10.0)]),
            ],
            ..Observed::default()
        };
        let fired = watched(rule, &observed, None);
        assert_eq!(
            fired.len(),
            1,
            "Bob only: Ana is above, Chen another window"
        );
        assert_eq!(fired[0].0, "average-Bob-2025-12-02");
        let text = String::from_utf8_lossy(&fired[0].1).into_owned();
        assert!(
            text.contains("Bob's average AI score over the last 3 calls is 30, below 60"),
            "{text}"
        );
    }

    #[test]
    fn a_test_call_or_a_good_score_does_not_fire() {
        assert!(message(AlertRule::CallScoreBelow(50.0), &call("42", true), None).is_none());
        assert!(message(AlertRule::CallScoreBelow(50.0), &call("50", false), None).is_none());
    }
}
