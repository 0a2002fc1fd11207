//! A list's page: `?limit=` (default [`DEFAULT_LIMIT`], at most
//! [`MAX_LIMIT`]) and `?cursor=` (from the previous page's `Link` header),
//! read the same way by every list of the JSON API.

use crate::api_error::ApiError;
use crate::storage::Page;

/// Rows per page unless `?limit=` says otherwise.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `?limit=`.
pub const MAX_LIMIT: usize = 1_000;

/// The page that `?limit=` and `?cursor=` ask for; a 400 saying what was
/// expected when either does not parse.
pub(crate) fn page(limit: Option<&str>, cursor: Option<&str>) -> Result<Page, ApiError> {
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(value) => match value.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "limit={value:?}: expected a number from 1 to {MAX_LIMIT}"
                )))
            }
        },
    };
    let before = match cursor {
        None => None,
        Some(value) => Some(value.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!(
                "cursor={value:?}: use the cursor from the Link header"
            ))
        })?),
    };
    Ok(Page { limit, before })
}
