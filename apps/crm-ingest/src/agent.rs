//! One agent's page (`GET /agents/{agent}`): the business view of one
//! person: calls and average score, the score's trend day by day over the
//! last 30 days (in `CRM_TIME_ZONE`), the newest calls and trainings.
//!
//! `{agent}` is the agent as the dashboard's agents table names it: the
//! agent's name, else its id (the key of the `call_agents` aggregate).
//! Its rows are read through expression indexes on that key (schema
//! version 7), never a scan; its trend from the quarter-hour sums
//! `agent_quarters` keeps (schema version 11), however many calls it had.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use jiff::tz::TimeZone;

use crate::api_error::ApiError;
use crate::state::AppState;
use crate::storage::{now_ms, Cell, Param, Storage, StorageError};
use crate::views::agent::{AgentView, DayScore};
use crate::views::ActivityRow;

/// The agent key, as the aggregate and the indexes write it.
pub const AGENT_KEY: &str = "COALESCE(agent_name, agent_id, 'unknown agent')";
/// Days in the score trend.
pub const TREND_DAYS: i64 = 30;
/// Rows in each of the page's tables.
const RECENT: usize = 20;
/// The quarter hours `agent_quarters` counts scores in. Every time zone's
/// midnight falls on a quarter hour today, so each belongs to one day.
const QUARTER_MS: i64 = 15 * 60 * 1000;

fn cell(row: &[Cell], i: usize) -> &Cell {
    row.get(i).unwrap_or(&Cell::Null)
}

/// Reads one agent's page; `None` when no real call or training names it.
pub async fn load(
    storage: &Storage,
    zone: &TimeZone,
    agent: &str,
) -> Result<Option<AgentView>, StorageError> {
    let key = || Param::Text(agent.to_owned());
    let totals = storage
        .select(
            "could not read the agent's totals",
            "SELECT calls, CASE WHEN scored > 0 THEN score_sum / scored END
             FROM call_agents WHERE agent = $1",
            vec![key()],
        )
        .await?;
    let now = now_ms();
    let since = crate::local_day::local_midnight(zone, now) - (TREND_DAYS - 1) * 86_400_000;
    // The quarter hours `agent_quarters` keeps (schema version 11): at
    // most 96 a day, however many calls the agent had.
    let scored = storage
        .select(
            "could not read the agent's scores",
            "SELECT quarter, scored, score_sum FROM agent_quarters
             WHERE agent = $1 AND quarter >= $2 ORDER BY quarter",
            vec![key(), Param::Int(since.div_euclid(QUARTER_MS))],
        )
        .await?;
    let recent = |table: &str, id: &str| {
        format!(
            "SELECT received_ms, {id}, event_id, agent_name, agent_id, team_member_user_id,
                    duration, ai_score
             FROM {table} WHERE {AGENT_KEY} = $1 AND is_test = $2
             ORDER BY received_ms DESC LIMIT {RECENT}"
        )
    };
    let rows = |rows: Vec<Vec<Cell>>| -> Vec<ActivityRow> {
        rows.iter()
            .map(|row| ActivityRow {
                received_ms: cell(row, 0).int().unwrap_or(0),
                id: cell(row, 1).text().unwrap_or_default(),
                event_id: cell(row, 2).text().unwrap_or_default(),
                agent_name: cell(row, 3).text(),
                agent_id: cell(row, 4).text(),
                team_member: cell(row, 5).text(),
                duration_secs: cell(row, 6).real(),
                ai_score: cell(row, 7).real(),
            })
            .collect()
    };
    let calls = rows(
        storage
            .select(
                "could not read the agent's calls",
                &recent("calls", "call_id"),
                vec![key(), Param::Bool(false)],
            )
            .await?,
    );
    let trainings = rows(
        storage
            .select(
                "could not read the agent's trainings",
                &recent("trainings", "training_id"),
                vec![key(), Param::Bool(false)],
            )
            .await?,
    );
    if totals.is_empty() && calls.is_empty() && trainings.is_empty() {
        return Ok(None);
    }
    let total = totals.first();
    Ok(Some(AgentView {
        agent: agent.to_owned(),
        now_ms: now,
        calls: total.map_or(0, |row| cell(row, 0).count()),
        average_score: total.and_then(|row| cell(row, 1).real()),
        trend: trend(zone, now, &scored),
        recent_calls: calls,
        recent_trainings: trainings,
        time_zone: zone.clone(),
    }))
}

/// Average score per local day, the last [`TREND_DAYS`] days, oldest
/// first, from `(quarter, scored, score_sum)` rows; days without a scored
/// call are left out.
fn trend(zone: &TimeZone, now: i64, scored: &[Vec<Cell>]) -> Vec<DayScore> {
    let day_of = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .ok()
            .map(|t| t.to_zoned(zone.clone()).date())
    };
    let Some(today) = day_of(now) else {
        return Vec::new();
    };
    let mut days: std::collections::BTreeMap<i64, (f64, u64)> = std::collections::BTreeMap::new();
    for row in scored {
        let (Some(quarter), n, Some(sum)) = (
            cell(row, 0).int(),
            cell(row, 1).count(),
            cell(row, 2).real(),
        ) else {
            continue;
        };
        let Some(day) = day_of(quarter.saturating_mul(QUARTER_MS)) else {
            continue;
        };
        let Ok(span) = today.since(day) else { continue };
        let ago = i64::from(span.get_days());
        if n > 0 && (0..TREND_DAYS).contains(&ago) {
            let slot = days.entry(-ago).or_default();
            slot.0 += sum;
            slot.1 += n;
        }
    }
    #[allow(clippy::cast_precision_loss)]
    days.into_iter()
        .map(|(offset, (sum, n))| DayScore {
            days_ago: -offset,
            average: sum / n as f64,
            calls: n,
        })
        .collect()
}

/// `GET /agents/{agent}`.
pub async fn agent_page(
    State(state): State<AppState>,
    Path(agent): Path<String>,
) -> Result<Response, ApiError> {
    match load(&state.storage, &state.time_zone, &agent).await? {
        Some(view) => Ok(Html(crate::views::agent::render(&view)).into_response()),
        None => Ok((
            StatusCode::NOT_FOUND,
            Html(crate::views::agent::not_found(&agent)),
        )
            .into_response()),
    }
}
