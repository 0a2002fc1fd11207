//! The managers' alerts: which events fire a rule, and the message, as
//! Slack's incoming-webhook JSON (`{"text": "…"}`, which Mattermost,
//! Rocket.Chat, Discord's `/slack` endpoints and others accept too).
//!
//! A message is built when the event is projected and stored in the outbox
//! with it, so it is sent (and retried) like a destination's row, once per
//! rule and event.

use kendo_webhooks::{Delivery, Event};

use super::settings::AlertRule;

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
                let query = super::percent_encode(&call.call_id);
                text.push_str(&format!(" <{origin}/?q={query}|Open it in the CRM>"));
            }
            Some(serde_json::json!({ "text": text }).to_string().into_bytes())
        }
    }
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
    use kendo_webhooks::example_body;

    fn call(score: &str, test: bool) -> Delivery {
        let mut body: serde_json::Value = serde_json::from_slice(&example_body(
            "call.uploaded",
            "evt_1",
            "2026-03-05T12:00:00Z",
            test,
        ))
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
    fn a_test_call_or_a_good_score_does_not_fire() {
        assert!(message(AlertRule::CallScoreBelow(50.0), &call("42", true), None).is_none());
        assert!(message(AlertRule::CallScoreBelow(50.0), &call("50", false), None).is_none());
    }
}
