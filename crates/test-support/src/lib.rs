//! What the workspace's tests share (not published).
//!
//! Real parts, started on free loopback ports and stopped when dropped:
//! [`redis_server`], [`postgres_server`] and a headless [`chromium`]. Each
//! `start_or_skip` / `find_or_skip` prints `SKIPPED: …` and returns `None`
//! where the program is missing, and fails instead when the `CI`
//! environment variable is set (`bash scripts/test.sh` installs them).
//!
//! [`delivery_server`] is a real axum server around the layer, an inner
//! service that records what reached it, and a real HTTP client.

pub mod chromium;
pub mod delivery_server;
pub mod postgres_server;
pub mod redis_server;
