//! `crm-ingest seed N`: fills the configured database with N synthetic,
//! signed deliveries (calls of a dozen agents with scores, some trainings, a
//! few test deliveries) through the same code as real ones: each is signed
//! with the webhook secret and verified, committed to the inbox by group
//! commit, and projected by the same batch projection, so a demo shows a
//! full dashboard and a benchmark can start from a million rows.

use std::time::{Duration, Instant};

use kendo_webhooks::{sign, Delivery, Verifier};
use kendo_webhooks_inbox::{Inbox, InboxError};

use crate::config::{AppConfig, Database};
use crate::routes;
use crate::storage::Storage;

/// Deliveries committed concurrently (the inbox groups them into commits
/// of up to 1,024).
const IN_FLIGHT: usize = 4096;
/// The agents the seeded calls and trainings belong to.
const AGENTS: [&str; 12] = [
    "Ana Silva",
    "Ben Okafor",
    "Chen Wei",
    "Dana Levi",
    "Eli Novak",
    "Fatima Zahra",
    "Gus Moreau",
    "Hana Sato",
    "Ivan Petrov",
    "Jade Kim",
    "Kofi Mensah",
    "Lena Vogel",
];

/// Why a seed run failed.
pub type SeedError = Box<dyn std::error::Error + Send + Sync>;

/// What a seed run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeedReport {
    /// Deliveries committed to the inbox (not already there).
    pub stored: u64,
    /// Rows projected by the worker.
    pub projected: u64,
    /// Wall time of the commits (signing, verifying, enqueueing).
    pub committed_in: Duration,
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

/// The `i`-th synthetic delivery's body and event name: mostly calls, one
/// in eight a training, one in fifty a test delivery.
fn body(i: u64, created_at: &str) -> (Vec<u8>, &'static str) {
    let agent = AGENTS[(i % AGENTS.len() as u64) as usize];
    let agent_id = format!("agent_{}", i % AGENTS.len() as u64);
    // A spread of scores, higher on average for some agents.
    let score = (i.wrapping_mul(2_654_435_761) % 61) + 40 - (i % 3) * 5;
    let test = i % 50 == 49;
    let (event, data) = if i % 8 == 7 {
        (
            "ai.training.completed",
            serde_json::json!({
                "trainingId": format!("seed-training-{i}"), "agentId": agent_id,
                "agentName": agent, "userId": "user_seed", "teamMemberUserId": "member_seed",
                "duration": 300 + i % 600, "aiScore": score.to_string(), "timestamp": created_at,
            }),
        )
    } else {
        (
            "call.uploaded",
            serde_json::json!({
                "callId": format!("seed-call-{i}"), "agentId": agent_id, "agentName": agent,
                "userId": "user_seed", "teamMemberUserId": "member_seed",
                "duration": 60.5 + (i % 900) as f64, "aiScore": score.to_string(),
                "timestamp": created_at,
            }),
        )
    };
    let mut data = data;
    if test {
        data["_isTest"] = serde_json::Value::Bool(true);
    }
    let envelope = serde_json::json!({
        "id": format!("evt-seed-{i:010}"), "event": event, "created_at": created_at, "data": data,
    });
    (serde_json::to_vec(&envelope).unwrap_or_default(), event)
}

/// Seeds `count` deliveries into the database `config` names, numbered
/// from `first` (so runs can add to each other), then projects them.
///
/// # Errors
///
/// When the database cannot be opened or written.
pub async fn run(config: &AppConfig, first: u64, count: u64) -> Result<SeedReport, SeedError> {
    let started = Instant::now();
    let storage = Storage::open(&config.database).await?;
    let inbox = match &config.database {
        Database::Sqlite(path) => Inbox::open_sqlite(path).await,
        Database::Postgres(url) => Inbox::connect_postgres(url).await,
    }?;
    let verifier = Verifier::new([config.secret.as_str()])?;
    let created_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "2026-03-05T12:00:00Z".to_owned());
    let done_before = inbox.counts().await?.done;

    // Commit: signed, verified and enqueued, IN_FLIGHT at a time.
    let mut stored = 0;
    let mut tasks = tokio::task::JoinSet::new();
    for i in first..first + count {
        let (body, event) = body(i, &created_at);
        let signature = sign(&config.secret, &body);
        let delivery = verifier
            .verify_delivery(
                signature.as_bytes(),
                &format!("dlv-seed-{i:010}"),
                event,
                body,
            )
            .map_err(|rejection| format!("a seeded delivery was refused: {rejection}"))?;
        let inbox = inbox.clone();
        tasks.spawn(async move { enqueue(&inbox, &delivery).await });
        while tasks.len() >= IN_FLIGHT {
            stored += joined(tasks.join_next().await)?;
        }
    }
    while !tasks.is_empty() {
        stored += joined(tasks.join_next().await)?;
    }

    let committed_in = started.elapsed();
    // Project, with the app's own worker and handler, until nothing waits.
    let worker = {
        let storage = storage.clone();
        inbox
            .batch_worker(move |batch| routes::project_batch(storage.clone(), batch))
            .batch_size(routes::WORKER_BATCH)
            .poll_interval(Duration::from_millis(20))
            .spawn()
    };
    loop {
        let counts = inbox.counts().await?;
        if counts.pending + counts.leased == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.shutdown().await;
    let done = inbox.counts().await?.done;
    Ok(SeedReport {
        stored,
        projected: done.saturating_sub(done_before),
        committed_in,
        elapsed: started.elapsed(),
    })
}

async fn enqueue(inbox: &Inbox, delivery: &Delivery) -> Result<u64, InboxError> {
    Ok(u64::from(
        inbox.enqueue(delivery).await? == kendo_webhooks_inbox::Enqueued::Stored,
    ))
}

fn joined(
    joined: Option<Result<Result<u64, InboxError>, tokio::task::JoinError>>,
) -> Result<u64, SeedError> {
    match joined {
        Some(Ok(result)) => Ok(result?),
        Some(Err(error)) => Err(error.into()),
        None => Ok(0),
    }
}
