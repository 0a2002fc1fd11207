//! Which database the app runs on. Apart from the configuration that
//! reads it from the environment ([`crate::config`]), so the storage opens
//! it without importing the configuration.

use std::fmt;
use std::path::PathBuf;

/// Where the inbox, the projections and the delivery log live.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// One SQLite file (one replica).
    Sqlite(PathBuf),
    /// A Postgres database shared by any number of replicas.
    Postgres(String),
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            // The URL may hold a password.
            Self::Postgres(_) => f.debug_tuple("Postgres").field(&"REDACTED").finish(),
        }
    }
}
