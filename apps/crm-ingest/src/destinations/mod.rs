//! Kendo events onward (issue 20): durable forwarding to automation
//! endpoints (Zapier, Make, n8n, your own) with Standard Webhooks
//! signatures, and alerts for managers (Slack-compatible incoming
//! webhooks). Configured by the file `CRM_CONFIG` names ([`settings`]);
//! without it, nothing here runs but the console's empty page.
//!
//! The story, in order:
//!
//! 1. The inbox worker projects a batch; in the same transaction the
//!    storage adds the rows the [`selector`] picks: one [`outbox`] row per
//!    target that takes each event (unique per target and event id: a
//!    replay adds nothing).
//! 2. The [`forwarder`] runs a lane per target: lease the oldest due rows,
//!    [`sender`] them ([`signature`] signs), settle each; retries follow
//!    [`backoff`]. Lanes and the watched [`alerts`] are woken and stopped
//!    through [`signals`].
//! 3. The console ([`api`] with its [`console`] state,
//!    `views/destinations.rs`) shows each target's state and rows with
//!    their attempts, and replays one event or every dead one.
//!
//! The outbox has a backend per database, one file each: [`sqlite`] and
//! [`postgres`], reading and writing the [`rows`] types. The arrows run
//! one way: this module depends on the storage, never the reverse (the
//! storage writes the rows through its `OutboxPicker` trait). This file
//! only declares and re-exports. User docs: `docs/destinations.md`.

pub mod alerts;
pub mod api;
pub mod backoff;
pub mod console;
pub mod forwarder;
pub mod outbox;
pub mod postgres;
pub mod rows;
pub mod selector;
pub mod sender;
pub mod settings;
pub mod signals;
pub mod signature;
pub mod sqlite;

pub use self::console::Console;
pub use self::forwarder::{Forwarder, Watched};
pub use self::outbox::Outbox;
pub use self::selector::Selector;
pub use self::settings::{Settings, SettingsError, CONFIG_VAR};
pub use self::signals::Waker;
