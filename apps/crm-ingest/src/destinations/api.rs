//! The console's routes for destinations and alerts, merged into the admin
//! router (behind the admin token and the same-origin guard):
//!
//! | route | what |
//! |---|---|
//! | `GET /destinations` | the page: every target's state; `?name=` its rows with their attempts |
//! | `GET /api/destinations` | every target's state, JSON |
//! | `GET /api/destinations/{name}/events` | its rows, newest first, each with its attempts; `?state=pending\|delivered\|dead`, `?event_id=`, `?limit=` (≤ 1,000) |
//! | `POST /api/destinations/{name}/replay?event_id=…` | sends that event again (delivered or dead) |
//! | `POST /api/destinations/{name}/replay-dead` | sends every dead row again |
//!
//! A replay makes the rows pending and due now, with a new retry window.
//! From the page's buttons (a browser asking for HTML) it answers with a
//! redirect back to the page; otherwise with `{"replayed": n}`.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::console::Console;
use super::rows::{EventFilter, EventRow, TargetCounts};
use super::settings::AlertRule;
use crate::state::AppState;
use crate::storage::now_ms;
use crate::views::destinations::TargetView;
use crate::views::path_segment;

/// Most rows a list returns.
const MAX_LIMIT: i64 = 1_000;
/// Rows a list returns unless `?limit=` says otherwise.
const DEFAULT_LIMIT: i64 = 50;

/// The routes above.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/destinations", get(page))
        .route("/api/destinations", get(list))
        .route("/api/destinations/{name}/events", get(events))
        .route("/api/destinations/{name}/replay", post(replay))
        .route("/api/destinations/{name}/replay-dead", post(replay_dead))
}

/// Every configured target, then those only the outbox still remembers.
pub async fn targets(console: &Console) -> Result<Vec<TargetView>, String> {
    let mut counts = console.outbox.counts().await.map_err(|e| e.to_string())?;
    let mut take = |name: &str| {
        counts
            .iter()
            .position(|c| c.name == name)
            .map(|i| counts.remove(i))
            .unwrap_or_else(|| TargetCounts {
                name: name.to_owned(),
                ..TargetCounts::default()
            })
    };
    let endpoint = |url: &reqwest::Url| {
        let port = url.port().map_or_else(String::new, |p| format!(":{p}"));
        Some(format!(
            "{}://{}{port}",
            url.scheme(),
            url.host_str().unwrap_or_default()
        ))
    };
    let state = |c: &TargetCounts| match c.failing_since_ms {
        Some(_) => "failing",
        None if c.delivered + c.pending + c.dead == 0 => "idle",
        // Every row given up on (410s, say): nothing is delivering.
        None if c.delivered + c.pending == 0 => "dead",
        None => "delivering",
    };
    let mut views = Vec::new();
    for d in &console.settings.destinations {
        let counts = take(&d.name);
        views.push(TargetView {
            name: d.name.clone(),
            kind: "destination",
            endpoint: endpoint(&d.url),
            takes: match &d.events {
                None => "every event".to_owned(),
                Some(events) => events.join(", "),
            } + if d.include_test { " (tests too)" } else { "" },
            signed: d.key.is_some(),
            state: state(&counts),
            counts,
        });
    }
    for a in &console.settings.alerts {
        let counts = take(&a.name);
        views.push(TargetView {
            name: a.name.clone(),
            kind: "alert",
            endpoint: endpoint(&a.url),
            takes: match a.rule {
                AlertRule::CallScoreBelow(score) => format!("real calls scored below {score}"),
                AlertRule::SilentFor(after) => {
                    format!("no verified delivery for {} min", after.as_secs() / 60)
                }
                AlertRule::DeadRows => "inbox rows gone dead".to_owned(),
                AlertRule::AgentAverageBelow { score, calls } => {
                    format!("an agent's average over {calls} calls below {score}")
                }
            },
            signed: false,
            state: state(&counts),
            counts,
        });
    }
    views.extend(counts.into_iter().map(|counts| TargetView {
        name: counts.name.clone(),
        kind: "removed",
        endpoint: None,
        takes: "no longer in CRM_CONFIG".to_owned(),
        signed: false,
        state: "removed",
        counts,
    }));
    Ok(views)
}

/// A refused or failed request: its status and what to do, as JSON.
#[derive(Debug)]
pub struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        if self.0.is_server_error() {
            tracing::error!(error = %self.1, "destinations API request failed");
        }
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Failure {
    Failure(status, message.into())
}

async fn list(State(state): State<AppState>) -> Result<Response, Failure> {
    let views = targets(&state.destinations)
        .await
        .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, e))?;
    Ok(Json(views).into_response())
}

/// The query of a target's rows.
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    state: Option<String>,
    event_id: Option<String>,
    limit: Option<String>,
}

impl EventsQuery {
    fn filter(self) -> Result<EventFilter, Failure> {
        let state = match self.state.as_deref() {
            None | Some("") => None,
            Some(s @ ("pending" | "delivered" | "dead")) => Some(s.to_owned()),
            Some(other) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("state={other:?}: expected pending, delivered or dead"),
                ))
            }
        };
        let limit = match self.limit.as_deref() {
            None | Some("") => DEFAULT_LIMIT,
            Some(value) => match value.parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        format!("limit={value:?}: expected a number from 1 to {MAX_LIMIT}"),
                    ))
                }
            },
        };
        Ok(EventFilter {
            state,
            event_id: self.event_id.filter(|id| !id.is_empty()),
            limit,
        })
    }
}

/// A target's rows, or the answer that says why not.
async fn rows_of(
    console: &Console,
    name: &str,
    query: EventsQuery,
) -> Result<Vec<EventRow>, Failure> {
    let filter = query.filter()?;
    console
        .outbox
        .events(name, filter)
        .await
        .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

fn known(console: &Console, name: &str) -> bool {
    console.settings.target_names().iter().any(|n| n == name)
}

async fn events(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<EventsQuery>,
) -> Result<Response, Failure> {
    let rows = rows_of(&state.destinations, &name, query).await?;
    if rows.is_empty() && !known(&state.destinations, &name) {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("no destination or alert is named {name:?}; GET /api/destinations lists them"),
        ));
    }
    Ok(Json(rows).into_response())
}

/// The query of a replay.
#[derive(Debug, Deserialize)]
pub struct ReplayQuery {
    event_id: Option<String>,
}

async fn replay(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<ReplayQuery>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let Some(event_id) = query.event_id.filter(|id| !id.is_empty()) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "name the event: ?event_id=… (or POST …/replay-dead for every dead one)",
        ));
    };
    replayed(&state.destinations, &name, Some(&event_id), &headers).await
}

async fn replay_dead(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    replayed(&state.destinations, &name, None, &headers).await
}

async fn replayed(
    console: &Console,
    name: &str,
    event_id: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, Failure> {
    if !known(console, name) {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("no destination or alert is named {name:?} in CRM_CONFIG; only configured ones can be sent to"),
        ));
    }
    match console.outbox.replay(name, event_id, now_ms()).await {
        Ok(0) if event_id.is_some() => Err(error(
            StatusCode::NOT_FOUND,
            format!(
                "{name} has no delivered or dead row of event {:?} (a pending one is being sent already)",
                event_id.unwrap_or_default()
            ),
        )),
        Ok(n) => {
            console.waker.wake();
            tracing::info!(destination = name, event_id, rows = n, "replayed");
            let wants_html = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|accept| accept.contains("text/html"));
            Ok(if wants_html {
                Redirect::to(&format!("/destinations?name={}", path_segment(name))).into_response()
            } else {
                Json(serde_json::json!({ "replayed": n })).into_response()
            })
        }
        Err(e) => Err(error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}

/// The page's query.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    name: Option<String>,
    state: Option<String>,
}

async fn page(
    State(state): State<AppState>,
    Query(query): Query<PageQuery>,
) -> Result<Response, Failure> {
    let console = &state.destinations;
    let views = targets(console)
        .await
        .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, e))?;
    let selected = match query.name.filter(|n| !n.is_empty()) {
        None => None,
        Some(name) => {
            let rows = rows_of(
                console,
                &name,
                EventsQuery {
                    state: query.state.clone(),
                    event_id: None,
                    limit: None,
                },
            )
            .await?;
            Some((name, rows))
        }
    };
    Ok(Html(crate::views::destinations::render(
        &views,
        selected.as_ref().map(|(n, r)| (n.as_str(), r.as_slice())),
        query.state.as_deref(),
        now_ms(),
    ))
    .into_response())
}
