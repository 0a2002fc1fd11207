//! What a verified delivery becomes in the CRM's tables: a row of `calls` or
//! `trainings` (or nothing), and the changes Kendo made to its payload.

use kendo_webhooks::{Delivery, Event};

use super::outbox_rows::OutboxRow;
use super::rows::{PayloadChange, ProjectedRow, Projection};

/// What one projection commits at once, on either backend: the rows of
/// `calls` and `trainings` and the destinations' outbox rows.
#[derive(Default)]
pub(crate) struct ProjectionBatch {
    /// Rows of `calls`.
    pub(crate) calls: Vec<ProjectedRow>,
    /// Rows of `trainings`.
    pub(crate) trainings: Vec<ProjectedRow>,
    /// The outbox rows of the batch's events (issue 20).
    pub(crate) outbox: Vec<OutboxRow>,
}

impl ProjectionBatch {
    /// Whether it writes nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.calls.is_empty() && self.trainings.is_empty() && self.outbox.is_empty()
    }
}

/// The projection of a delivery: which table, and the row.
pub(super) fn projected_row(
    delivery: &Delivery,
    received_ms: i64,
) -> Option<(Projection, ProjectedRow)> {
    let (projection, id, fields) = match delivery.event() {
        Event::CallUploaded(call) => (
            Projection::Call,
            call.call_id.clone(),
            (
                &call.agent_id,
                &call.agent_name,
                &call.user_id,
                &call.team_member_user_id,
                call.duration,
                call.ai_score,
                &call.timestamp,
            ),
        ),
        Event::AiTrainingCompleted(t) => (
            Projection::Training,
            t.training_id.clone(),
            (
                &t.agent_id,
                &t.agent_name,
                &t.user_id,
                &t.team_member_user_id,
                t.duration,
                t.ai_score,
                &t.timestamp,
            ),
        ),
        _ => return None,
    };
    let (agent_id, agent_name, user_id, member, duration, ai_score, timestamp) = fields;
    Some((
        projection,
        ProjectedRow {
            event_id: delivery.event_id().to_owned(),
            id,
            agent_id: agent_id.clone(),
            agent_name: agent_name.clone(),
            user_id: user_id.clone(),
            team_member_user_id: member.clone(),
            duration,
            ai_score,
            timestamp: timestamp.clone(),
            is_test: delivery.is_test(),
            received_ms,
        },
    ))
}

/// The schema drift of `deliveries` (the library's
/// [`Delivery::schema_drift`]), one entry per event, field and kind.
pub(super) fn payload_changes(deliveries: &[Delivery], now: i64) -> Vec<PayloadChange> {
    let mut changes: Vec<PayloadChange> = Vec::new();
    for delivery in deliveries {
        for drift in delivery.schema_drift() {
            let kind = drift.kind.as_str();
            match changes.iter_mut().find(|c| {
                c.event == delivery.event_name() && c.field == drift.field && c.kind == kind
            }) {
                Some(change) => change.count += 1,
                None => changes.push(PayloadChange {
                    event: delivery.event_name().to_owned(),
                    field: drift.field.clone(),
                    kind,
                    example: drift.example.clone(),
                    event_id: delivery.event_id().to_owned(),
                    first_ms: now,
                    count: 1,
                }),
            }
        }
    }
    changes
}
