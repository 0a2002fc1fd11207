//! The console's one script, served by the app itself (`script-src
//! 'self'` in the page's Content-Security-Policy): the dashboard refreshes
//! in place instead of reloading, and only while its tab is visible.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// Every `data-refresh` seconds while the tab is visible (and once when it
/// becomes visible again), fetches the same URL and swaps `main#live` for
/// the new one: no reload, the scroll position and the search box kept.
/// A failed fetch leaves the page as it is and says so in the title.
pub const CONSOLE_JS: &str = r#""use strict";
(function () {
  var live = document.getElementById("live");
  if (!live) { return; }
  var every = parseInt(live.getAttribute("data-refresh") || "0", 10);
  if (!(every > 0)) { return; }
  var title = document.title;
  var busy = false;
  function refresh() {
    if (busy || document.visibilityState !== "visible") { return; }
    busy = true;
    // The origin, never the address bar's user:password@ (fetch refuses
    // URLs with credentials; the browser sends its cached ones).
    var url = window.location.origin + window.location.pathname + window.location.search;
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (answer) {
        if (!answer.ok) { throw new Error(String(answer.status)); }
        return answer.text();
      })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("live");
        var current = document.getElementById("live");
        if (fresh && current) { current.replaceWith(fresh); }
        document.title = title;
      })
      .catch(function () { document.title = "(not updated) " + title; })
      .then(function () { busy = false; });
  }
  window.setInterval(refresh, every * 1000);
  document.addEventListener("visibilitychange", refresh);
})();
"#;

/// `GET /assets/console.js`.
pub async fn console_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        CONSOLE_JS,
    )
        .into_response()
}
