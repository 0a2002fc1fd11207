//! One dashboard render at a time, shared by every request that was
//! waiting for it.
//!
//! A dashboard is about fourteen queries and a page of HTML and SVG; open
//! tabs that reload it all the time would otherwise render it side by side
//! and take the cores the worker needs to project deliveries (issue 18:
//! 16 reload loops made the projection 3.6× slower on SQLite). Renders are
//! serialised, and a request reuses a page only if that page's render
//! *started after the request arrived*, so nobody is shown data older than
//! their request (an operator's requeue is on the next page they load).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Most distinct pages (query strings) remembered.
const MAX_PAGES: usize = 32;

/// A page and when its render started.
type Rendered = (Instant, Arc<str>);

/// Serialised, shared renders of pages keyed by their query string.
#[derive(Clone, Default)]
pub struct Coalesce {
    /// Held while rendering; maps a key to its newest render's start and
    /// page.
    pages: Arc<Mutex<HashMap<String, Rendered>>>,
}

impl std::fmt::Debug for Coalesce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalesce").finish_non_exhaustive()
    }
}

impl Coalesce {
    /// The page for `key`: a render that started after this call, either
    /// one another request started meanwhile or `render` run now.
    ///
    /// # Errors
    ///
    /// `render`'s error (nothing is kept then).
    pub async fn page<F, Fut, E>(&self, key: &str, render: F) -> Result<Arc<str>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<String, E>>,
    {
        let arrived = Instant::now();
        let mut pages = self.pages.lock().await;
        if let Some((started, page)) = pages.get(key) {
            if *started >= arrived {
                return Ok(Arc::clone(page));
            }
        }
        let started = Instant::now();
        let page: Arc<str> = render().await?.into();
        if pages.len() >= MAX_PAGES && !pages.contains_key(key) {
            pages.clear();
        }
        pages.insert(key.to_owned(), (started, Arc::clone(&page)));
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_requests_share_the_next_render_and_none_sees_an_older_one() {
        let coalesce = Coalesce::default();
        let renders = Arc::new(AtomicUsize::new(0));
        let render = |renders: Arc<AtomicUsize>| async move {
            let n = renders.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, std::convert::Infallible>(format!("render {n}"))
        };
        // The first request renders; 8 arriving during it wait, then share
        // one render that started after all of them arrived.
        let first = {
            let (c, r) = (coalesce.clone(), Arc::clone(&renders));
            tokio::spawn(async move { c.page("/", || render(r)).await.unwrap() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let waiting: Vec<_> = (0..8)
            .map(|_| {
                let (c, r) = (coalesce.clone(), Arc::clone(&renders));
                tokio::spawn(async move { c.page("/", || render(r)).await.unwrap() })
            })
            .collect();
        assert_eq!(&*first.await.unwrap(), "render 1");
        for page in waiting {
            assert_eq!(&*page.await.unwrap(), "render 2");
        }
        assert_eq!(renders.load(Ordering::SeqCst), 2);
        // A request after all that renders again: never an older page.
        let later = coalesce.page("/", || render(Arc::clone(&renders))).await;
        assert_eq!(&*later.unwrap(), "render 3");
        // Another key is its own page.
        let other = coalesce
            .page("/?q=x", || render(Arc::clone(&renders)))
            .await;
        assert_eq!(&*other.unwrap(), "render 4");
    }

    #[tokio::test]
    async fn a_failed_render_is_not_kept() {
        let coalesce = Coalesce::default();
        let failed = coalesce
            .page("/", || async { Err::<String, _>("database down") })
            .await;
        assert_eq!(failed.unwrap_err(), "database down");
        let page = coalesce
            .page("/", || async { Ok::<_, &str>("ok".to_owned()) })
            .await;
        assert_eq!(&*page.unwrap(), "ok");
    }
}
