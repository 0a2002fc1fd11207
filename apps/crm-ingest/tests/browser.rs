//! The dashboard in a real headless Chromium (Debian's `chromium`;
//! `scripts/test.sh` installs it): the browser logs in with the admin token
//! (HTTP Basic), and the page it renders after deliveries were sent shows
//! every table and every chart with data, cuts nothing off (no cell, card
//! or heading wider than its box, no table wider than its scrolling box) on
//! a phone, at 1366 px and on a desktop, and does not scroll sideways. The screenshot is checked not
//! to be blank.
//!
//! `UPDATE_SCREENSHOTS=1` also writes the screenshots to
//! `docs/dashboard.png` and `docs/dashboard-phone.png` (the README shows
//! them); `scripts/dashboard-screenshots.sh` does that.
//!
//! Without Chromium it prints SKIPPED and passes, except under `CI`, where
//! that is a failure.

use kendo_test_support::chromium;
mod common;

use std::net::SocketAddr;
use std::path::Path;

use chromium::{admin_url, assert_not_blank, Chromium, DESKTOP, PHONE};
use common::*;
use hyper::StatusCode;
use kendo_webhooks::SignedDelivery;

/// Agents, with the scores their calls get.
const AGENTS: &[(&str, &str, &[u32])] = &[
    ("agent_ana", "Ana Ruiz", &[92, 88, 95, 79, 90]),
    ("agent_ben", "Ben Okafor", &[71, 64, 77, 69]),
    ("agent_chloe", "Chloé Martin", &[85, 91, 83]),
    ("agent_dev", "Dev Patel", &[58, 49, 66, 72, 61, 55]),
    ("agent_emma", "Emma Schulz", &[97, 94]),
    ("agent_farid", "Farid Haddad", &[33, 41, 52]),
];

/// A day's worth of traffic, in small: real calls and trainings, test
/// deliveries, Kendo's retries, a delivery signed with a wrong secret
/// (three attempts) and an unsigned request.
async fn send_traffic(http: &Http, addr: SocketAddr) -> usize {
    let mut calls = 0;
    for (a, (agent_id, agent, scores)) in AGENTS.iter().enumerate() {
        for (i, score) in scores.iter().enumerate() {
            let event_id = format!("evt_{a}{i:02}");
            let duration = 120 + 37 * (a + i) as u32;
            let body = call_body(
                &event_id,
                agent_id,
                Some(agent),
                &score.to_string(),
                duration,
            );
            let delivery = SignedDelivery::builder(body)
                .event("call.uploaded")
                .delivery_id(format!("dlv_{event_id}"))
                .sign(SECRET);
            assert_eq!(http.deliver(addr, &delivery).await.status, StatusCode::OK);
            calls += 1;
            if i == 0 {
                // Kendo's retry of the same delivery.
                let retry = http.deliver(addr, &delivery).await;
                assert_eq!(retry.status, StatusCode::OK);
                assert!(retry.is_duplicate(), "{:?}", retry.rejection());
            }
        }
    }
    for i in 0..3 {
        let training = signed(
            "ai.training.completed",
            &format!("evt_training_{i}"),
            &format!("dlv_training_{i}"),
        );
        assert_eq!(http.deliver(addr, &training).await.status, StatusCode::OK);
    }
    for i in 0..2 {
        let test = test_delivery(&format!("evt_test_{i}"), &format!("dlv_test_{i}"));
        assert_eq!(http.deliver(addr, &test).await.status, StatusCode::OK);
    }
    for _ in 0..3 {
        let reply = http.deliver(addr, &forged(1)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let reply = http.send(unsigned(addr, "dlv_unsigned")).await;
    assert_eq!(reply.rejection(), Some("missing_signature"));
    calls
}

/// The page as `dump_dom` saw it, with the script below appended: it
/// records, once laid out, how far the page scrolls sideways and how many
/// things are cut off: a cell, card or heading whose text is wider than
/// its box, or a table wider than its scrolling box (it would have to be
/// scrolled to be read).
const MEASURE: &str = "<script>
(() => {
  const root = document.documentElement;
  root.setAttribute('data-overflow-x', String(root.scrollWidth - root.clientWidth));
  let cut = [];
  for (const el of document.querySelectorAll('td, th, .card b, .card .sub, h1, h2, figcaption, .scroll')) {
    if (el.offsetParent === null) continue;
    if (el.scrollWidth > el.clientWidth + 1) cut.push(el.className + ':' + el.textContent.slice(0, 40));
  }
  root.setAttribute('data-cut', String(cut.length));
  root.setAttribute('data-cut-what', cut.join(' | ').replace(/[\"<>&]/g, ''));
})();
</script>";

/// Loads the page's HTML (self-contained: inline CSS and SVG) from a file
/// with [`MEASURE`] appended, in a window of `size`; returns
/// (sideways overflow in CSS pixels, things cut off, what they are).
fn measure_layout(chromium: &Chromium, html: &str, size: (u32, u32)) -> (i64, i64, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let page = dir.path().join("dashboard.html");
    let html = html
        .replace("http-equiv=\"refresh\"", "data-no-refresh=\"\"")
        .replace("</body>", &format!("{MEASURE}</body>"));
    std::fs::write(&page, html).expect("write the page");
    let dom = chromium.dump_dom(&format!("file://{}", page.display()), size);
    let attribute = |name: &str| -> String {
        let start = dom
            .find(&format!("{name}=\""))
            .unwrap_or_else(|| panic!("the measuring script ran ({name} missing)"))
            + name.len()
            + 2;
        let end = start + dom[start..].find('"').expect("a closing quote");
        dom[start..end].to_owned()
    };
    let number = |name: &str| attribute(name).parse::<i64>().expect("a number");
    (
        number("data-overflow-x"),
        number("data-cut"),
        attribute("data-cut-what"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_every_table_and_chart_in_chromium() {
    let Some(chromium) = Chromium::find_or_skip("the_dashboard_renders_every_table_and_chart")
    else {
        return;
    };
    let (_dir, db) = temp_db();
    let app = start(config(&db)).await;
    let http = Http::new();
    let addr = app.addr();
    let calls = send_traffic(&http, addr).await;
    rows(&http, addr, "/api/calls?limit=1000", calls).await;
    eventually("the unverified attempts in the log", || async {
        let html = http.get(addr, "/").await.text();
        html.contains("forged-00001").then_some(())
    })
    .await;

    // Logged in as a browser does: 401 with WWW-Authenticate, then Basic.
    let url = admin_url(addr, TOKEN, "/");
    let desktop = tokio::task::spawn_blocking({
        let chromium = chromium.clone();
        let url = url.clone();
        move || chromium.load(&url, DESKTOP)
    })
    .await
    .expect("chromium ran");
    let dom = &desktop.dom;
    for heading in [
        "Delivery log",
        "Recent calls",
        "Average score per agent",
        "Recent trainings",
        "Test deliveries",
        "Deliveries per minute, last hour",
        "Rejections by reason",
        "AI score of real calls",
        "Waiting for the worker, last hour",
    ] {
        assert!(dom.contains(heading), "the page shows {heading:?}");
    }
    assert_eq!(dom.matches("<svg").count(), 4, "four charts");
    for empty in [
        "No deliveries in the last hour",
        "Nothing rejected",
        "No scored calls yet",
        "No samples yet",
        "No real calls yet.",
        "No deliveries yet.",
    ] {
        assert!(!dom.contains(empty), "shown without data: {empty:?}");
    }
    for (_, agent, _) in AGENTS {
        assert!(dom.contains(agent), "{agent} is in the per-agent table");
    }
    assert!(dom.contains("invalid_signature"), "the rejection reason");
    assert!(dom.contains("evt_test_0"), "the test deliveries");
    let desktop_stats = assert_not_blank(&desktop.screenshot);

    // The same page on a phone and on a desktop, measured in the browser.
    let html = http.get(addr, "/").await.text();
    let (phone_overflow, phone_cut, phone_what) = tokio::task::spawn_blocking({
        let chromium = chromium.clone();
        let html = html.clone();
        move || measure_layout(&chromium, &html, PHONE)
    })
    .await
    .expect("chromium ran");
    assert!(
        phone_overflow <= 0,
        "the page scrolls sideways on a phone by {phone_overflow} px"
    );
    assert_eq!(phone_cut, 0, "cut off on a phone: {phone_what}");
    for size in [DESKTOP, (1366, 768)] {
        let (overflow, cut, what) = tokio::task::spawn_blocking({
            let chromium = chromium.clone();
            let html = html.clone();
            move || measure_layout(&chromium, &html, size)
        })
        .await
        .expect("chromium ran");
        assert!(
            overflow <= 0,
            "sideways scroll by {overflow} px at {size:?}"
        );
        assert_eq!(cut, 0, "cut off at {size:?}: {what}");
    }

    let phone = tokio::task::spawn_blocking({
        let chromium = chromium.clone();
        move || chromium.load(&url, PHONE)
    })
    .await
    .expect("chromium ran");
    let phone_stats = assert_not_blank(&phone.screenshot);
    println!(
        "layout: phone overflow {phone_overflow} px, nothing cut off; desktop and 1366 px the same"
    );
    println!("screenshots: desktop {desktop_stats:?}, phone {phone_stats:?}");

    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        desktop.keep_screenshot(&docs.join("dashboard.png"));
        phone.keep_screenshot(&docs.join("dashboard-phone.png"));
        println!("wrote {}", docs.join("dashboard.png").display());
    }
    app.shutdown().await;
}
