//! The admin pages' defences against other sites: state-changing requests
//! from another site are refused, and every admin answer carries the
//! headers that keep it out of frames, caches and type sniffing.
//!
//! A browser that holds the admin's Basic credentials sends them with any
//! request to this origin, including a form another site submits (a
//! cross-site request forgery). A `POST`, `PUT`, `PATCH` or `DELETE` is
//! therefore refused with 403 when its `Origin` is present and is not the
//! app's own (`CRM_PUBLIC_URL`'s origin when set, else `http(s)://` and the
//! request's `Host`), or when `Sec-Fetch-Site` says `cross-site` or
//! `same-site`, whatever credentials it carries. Scripts and `curl` send
//! neither header and are not affected. Kendo's webhook route is not behind
//! this guard (its requests are server to server).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The app's own origin, from `CRM_PUBLIC_URL` (`None`: the request's `Host`).
#[derive(Debug, Clone, Default)]
pub struct OwnOrigin(pub Option<Arc<str>>);

/// `Content-Security-Policy` of the admin answers: inline CSS and inline
/// SVG, one script of the app's own (`/assets/console.js`, which fetches
/// the page again), and never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     script-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// Refuses cross-site state changes (403) and adds the security headers to
/// every answer.
pub async fn guard(State(own): State<OwnOrigin>, request: Request, next: Next) -> Response {
    if changes_state(request.method()) {
        if let Some(reason) = cross_site(request.headers(), own.0.as_deref()) {
            let mut refused = (
                StatusCode::FORBIDDEN,
                axum::Json(serde_json::json!({ "error": reason })),
            )
                .into_response();
            add_headers(refused.headers_mut());
            return refused;
        }
    }
    let mut response = next.run(request).await;
    add_headers(response.headers_mut());
    response
}

fn changes_state(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Why a request comes from another site, if it does.
fn cross_site(headers: &HeaderMap, own: Option<&str>) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
            return Some(format!(
                "refused: a {site} request may not change anything here (Sec-Fetch-Site)"
            ));
        }
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin = origin.to_str().unwrap_or("(not text)");
    let allowed = match own {
        Some(own) => origin.eq_ignore_ascii_case(own),
        None => headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .is_some_and(|host| {
                origin.eq_ignore_ascii_case(&format!("http://{host}"))
                    || origin.eq_ignore_ascii_case(&format!("https://{host}"))
            }),
    };
    (!allowed).then(|| {
        format!(
            "refused: Origin {origin} is not this app's own; a page of another site may not \
             change anything here (set CRM_PUBLIC_URL when the app is reached by another name)"
        )
    })
}

fn add_headers(headers: &mut HeaderMap) {
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        // Not `no-referrer`: under it a browser sends `Origin: null` with
        // the page's own form posts, which the guard then refuses.
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// The origin (`scheme://host[:port]`) of `url`, for `CRM_PUBLIC_URL`:
/// `None` unless it is an `http://` or `https://` URL with a host.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next()?;
    (!host.is_empty() && !host.contains('@')).then(|| {
        format!(
            "{}://{}",
            scheme.to_ascii_lowercase(),
            host.to_ascii_lowercase()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    header::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn own_origin_and_no_origin_pass_others_are_refused() {
        let host = [("host", "crm.example:3000")];
        assert!(
            cross_site(&headers(&host), None).is_none(),
            "curl: no Origin"
        );
        let own = [
            ("host", "crm.example:3000"),
            ("origin", "http://crm.example:3000"),
        ];
        assert!(cross_site(&headers(&own), None).is_none());
        let tls = [
            ("host", "crm.example:3000"),
            ("origin", "https://crm.example:3000"),
        ];
        assert!(cross_site(&headers(&tls), None).is_none());
        let evil = [
            ("host", "crm.example:3000"),
            ("origin", "https://evil.example"),
        ];
        assert!(cross_site(&headers(&evil), None).is_some());
        let null = [("host", "crm.example:3000"), ("origin", "null")];
        assert!(cross_site(&headers(&null), None).is_some());
        for site in ["cross-site", "same-site"] {
            let fetch = [("host", "crm.example:3000"), ("sec-fetch-site", site)];
            assert!(cross_site(&headers(&fetch), None).is_some(), "{site}");
        }
        let same = [
            ("host", "crm.example:3000"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert!(cross_site(&headers(&same), None).is_none());
        // Behind a proxy: the public URL's origin, not the Host it forwards.
        let proxied = [("host", "10.0.0.5:3000"), ("origin", "https://crm.example")];
        assert!(cross_site(&headers(&proxied), Some("https://crm.example")).is_none());
        assert!(cross_site(&headers(&proxied), None).is_some());
    }

    #[test]
    fn the_public_urls_origin_is_its_scheme_and_host() {
        assert_eq!(
            origin_of("https://CRM.example/app/").as_deref(),
            Some("https://crm.example")
        );
        assert_eq!(
            origin_of("http://crm.example:8080").as_deref(),
            Some("http://crm.example:8080")
        );
        assert_eq!(origin_of("ftp://crm.example"), None);
        assert_eq!(origin_of("crm.example"), None);
        assert_eq!(origin_of("https://user:pw@crm.example"), None);
        assert_eq!(origin_of("https:///path"), None);
    }

    #[test]
    fn only_reads_are_safe() {
        assert!(!changes_state(&Method::GET));
        assert!(!changes_state(&Method::HEAD));
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(changes_state(&method));
        }
    }
}
