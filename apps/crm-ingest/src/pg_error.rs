//! Errors as operators need to read them: the whole chain of causes, and
//! for a Postgres error its SQLSTATE, message, detail and hint (the
//! `tokio_postgres::Error` itself only says `db error`).
//!
//! Nothing here can show a password: Postgres's messages never hold one, and
//! `tokio_postgres` errors never hold the connection URL.
//!
//! ```
//! use crm_ingest::pg_error::Chain;
//!
//! let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
//! assert_eq!(Chain(&io).to_string(), "refused");
//! ```

use std::error::Error;
use std::fmt;

/// Displays an error and every cause below it that its text does not
/// already show, each Postgres error with its SQLSTATE, message, detail
/// and hint.
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = String::new();
        let mut link: Option<&(dyn Error + 'static)> = Some(self.0);
        while let Some(error) = link {
            if error.is::<tokio_postgres::error::DbError>() {
                // Shown with its SQLSTATE by the `tokio_postgres::Error` above.
                link = error.source();
                continue;
            }
            let text = match error.downcast_ref::<tokio_postgres::Error>() {
                Some(pg) => postgres(pg),
                None => error.to_string(),
            };
            if !text.is_empty() && !shown.contains(&text) {
                if !shown.is_empty() {
                    shown.push_str(": ");
                }
                shown.push_str(&text);
            }
            link = error.source();
        }
        f.write_str(&shown)
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One Postgres error: `db error` becomes `SQLSTATE <code>: <message>
/// (detail: …; hint: …)`; other kinds keep their text (their cause, such
/// as the refused connection, is the next link).
fn postgres(error: &tokio_postgres::Error) -> String {
    let Some(db) = error.as_db_error() else {
        return error.to_string();
    };
    let mut text = format!(
        "{} SQLSTATE {}: {}",
        db.severity(),
        db.code().code(),
        db.message()
    );
    let extra: Vec<String> = [("detail", db.detail()), ("hint", db.hint())]
        .into_iter()
        .filter_map(|(name, value)| value.map(|value| format!("{name}: {value}")))
        .collect();
    if !extra.is_empty() {
        text.push_str(&format!(" ({})", extra.join("; ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "could not open the database: {}", self.0)
        }
    }

    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn causes_already_in_the_text_are_not_repeated() {
        let error = Outer(std::io::Error::other("disk full"));
        assert_eq!(
            Chain(&error).to_string(),
            "could not open the database: disk full"
        );
    }
}
