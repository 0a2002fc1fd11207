//! The CRM ingest server for Kendo webhooks, on `kendo-webhooks`: the
//! layer verifies and de-duplicates, the library's durable inbox commits
//! each delivery before the 2xx, and its worker projects them into `calls`
//! and `trainings`, on SQLite (one replica) or Postgres (any number).
//!
//! The binary is `src/main.rs`; this library is what it and the tests
//! share: [`config`] (the environment; [`database`] the one it names), [`routes`] (what the app serves:
//! the router on top, the handlers below it, and under them what every
//! handler shares, [`state`], [`api_error`] and [`paging`]),
//! [`dashboard`] (what the page shows, read from the database, with
//! [`local_day`] and [`backlog`]), [`views`]
//! (the page: HTML and SVG charts), [`storage`] (the CRM's tables),
//! [`delivery_log`] (the `on_outcome` hook, writing [`outcome`]'s words), [`coalesce`] (one dashboard
//! render at a time, shared by the requests waiting), [`auth`] (the admin
//! token),
//! [`pg_error`] (errors with their causes and SQLSTATE), [`warnings`]
//! (rate-limited lines for operators, through [`rate_limit`]),
//! [`server`] (the hardened HTTP server, with [`write_timeout`]) and
//! [`app`] (start and stop) and [`seed`] (`crm-ingest seed N`: demo and
//! benchmark data); [`destinations`] forwards events onward and sends
//! alerts (`CRM_CONFIG`). With the `query-log` feature, `query_log`
//! records the reader's SQL for the query-plan test.

pub mod actions;
pub mod agent;
pub mod api_error;
pub mod app;
pub mod assets;
pub mod auth;
pub mod backlog;
pub mod captured;
pub mod coalesce;
pub mod config;
pub mod dashboard;
pub mod database;
pub mod delivery_log;
pub mod destinations;
pub mod detail;
pub mod export;
pub mod local_day;
pub mod outcome;
pub mod paging;
pub mod pg_error;
#[cfg(feature = "query-log")]
pub mod query_log;
pub mod rate_limit;
pub mod routes;
pub mod same_origin;
pub mod search;
pub mod seed;
pub mod server;
pub mod state;
pub mod storage;
pub mod views;
pub mod warnings;
pub mod write_timeout;
