//! The console in a real headless Chromium driven through WebDriver
//! (`chromedriver`, Debian's `chromium-driver`; `scripts/test.sh` installs
//! it): the test clicks as an operator would. It sees the dashboard refresh
//! in place (no reload) with a new call, opens a delivery from the
//! log and sees its payload, requeues a dead row from the page and sees it
//! done, searches by an agent's name, exports CSV from the page's link, and
//! measures the dashboard, a delivery and an agent's page on a phone, at
//! 1366 px and on a desktop: nothing cut off, no sideways scroll.
//!
//! The WebDriver client is a few JSON calls over the tests' own HTTP
//! client (no WebDriver crate). Without Chromium or chromedriver it prints
//! SKIPPED and passes, except under `CI`, where that is a failure.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode};
use kendo_test_support::chromium::{admin_url, Chromium};
use kendo_webhooks::SignedDelivery;
use serde_json::{json, Value};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// `chromedriver`: `$CHROMEDRIVER`, else on `PATH`.
fn chromedriver() -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("CHROMEDRIVER") {
        return Some(path.into());
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join("chromedriver"))
        .find(|path| path.is_file())
}

/// A running chromedriver and one browser session.
struct Browser {
    http: Http,
    driver: Child,
    base: String,
    session: String,
}

impl Browser {
    async fn start(chromium: &Chromium, driver: &std::path::Path) -> Self {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().unwrap().port()
        };
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = Http::new();
        let mut browser = Self {
            http,
            driver: child,
            base,
            session: String::new(),
        };
        let status_url = format!("{}/status", browser.base);
        eventually("chromedriver ready", || async {
            let request = Request::get(&status_url).body(Full::default()).unwrap();
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<Full<Bytes>>();
            match tokio::time::timeout(Duration::from_secs(1), client.request(request)).await {
                Ok(Ok(answer)) if answer.status().is_success() => Some(()),
                _ => None,
            }
        })
        .await;
        let profile = tempfile::tempdir().expect("a profile directory").keep();
        let session = browser
            .call(
                Method::POST,
                "/session",
                json!({ "capabilities": { "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium.binary(),
                        "args": [
                            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                            "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars",
                            "--disable-background-networking", "--disable-sync",
                            format!("--user-data-dir={}", profile.display()),
                        ],
                    },
                } } }),
            )
            .await;
        browser.session = session["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        browser
    }

    /// One WebDriver command; its `value`.
    async fn call(&self, method: Method, path: &str, body: Value) -> Value {
        let uri = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let mut request = Request::builder()
            .method(method.clone())
            .uri(&uri)
            .header("content-type", "application/json");
        let body = if method == Method::GET || method == Method::DELETE {
            Full::default()
        } else {
            request = request.header("accept", "application/json");
            Full::new(Bytes::from(body.to_string()))
        };
        let reply = self.http.send(request.body(body).unwrap()).await;
        let value = reply.json();
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "WebDriver {method} {path}: {value}"
        );
        value["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(Method::POST, "/url", json!({ "url": url })).await;
    }

    async fn resize(&self, (width, height): (u32, u32)) {
        self.call(
            Method::POST,
            "/window/rect",
            json!({ "width": width, "height": height }),
        )
        .await;
    }

    /// The first element matching `css`, waiting for it a while.
    async fn find(&self, css: &str) -> String {
        eventually(&format!("an element {css}"), || async {
            let request = Request::post(format!("{}/session/{}/element", self.base, self.session))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(
                    json!({ "using": "css selector", "value": css }).to_string(),
                )))
                .unwrap();
            let reply = self.http.send(request).await;
            (reply.status == StatusCode::OK)
                .then(|| reply.json()["value"][ELEMENT].as_str().map(str::to_owned))
                .flatten()
        })
        .await
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.call(
            Method::POST,
            &format!("/element/{element}/click"),
            json!({}),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.call(
            Method::POST,
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.call(Method::GET, &format!("/element/{element}/text"), json!({}))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn run(&self, script: &str) -> Value {
        self.call(
            Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    async fn run_async(&self, script: &str) -> Value {
        self.call(
            Method::POST,
            "/execute/async",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// Waits until the page's text contains `text`.
    async fn wait_for_text(&self, text: &str) {
        eventually(&format!("the page saying {text:?}"), || async {
            let body = self
                .run("return document.body ? document.body.innerText : ''")
                .await;
            body.as_str()
                .is_some_and(|b| b.contains(text))
                .then_some(())
        })
        .await;
    }

    /// Closes the browser, then chromedriver (on drop).
    async fn quit(self) {
        let _ = self
            .http
            .send(
                Request::delete(format!("{}/session/{}", self.base, self.session))
                    .body(Full::default())
                    .unwrap(),
            )
            .await;
    }
}

impl Drop for Browser {
    /// chromedriver is stopped however the test ends (a failed assertion
    /// would otherwise leave it running).
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// What is cut off on the current page: cells, cards or headings whose
/// text is wider than their box, tables wider than their scrolling box,
/// and how far the page scrolls sideways.
const CUT_OFF: &str = "
  const root = document.documentElement;
  const cut = [];
  for (const el of document.querySelectorAll('td, th, .card b, .card .sub, h1, h2, figcaption, dd, pre, .scroll')) {
    if (el.offsetParent === null) continue;
    const style = getComputedStyle(el);
    const scrolls = el.classList.contains('scroll') || el.tagName === 'PRE';
    if (el.scrollWidth > el.clientWidth + 1 && (scrolls || style.overflowX !== 'visible' || style.textOverflow === 'ellipsis')) {
      cut.push(el.tagName + '.' + el.className + ' ' + el.scrollWidth + '>' + el.clientWidth + ' of ' + window.innerWidth + ': ' + el.textContent.slice(0, 50));
    }
  }
  return { sideways: root.scrollWidth - root.clientWidth, cut: cut };
";

fn call_of(event_id: &str, agent: &str, score: u32) -> SignedDelivery {
    let body = json!({
        "id": event_id, "event": "call.uploaded", "created_at": CREATED_AT,
        "data": {
            "callId": format!("call_{event_id}"), "agentId": format!("agent_{score}"),
            "agentName": agent, "userId": "user_1", "teamMemberUserId": "member_sales_emea",
            "duration": 245.5, "aiScore": score, "timestamp": CREATED_AT,
        },
    });
    SignedDelivery::builder(serde_json::to_vec(&body).unwrap())
        .event("call.uploaded")
        .delivery_id(format!("dlv_{event_id}"))
        .sign(SECRET)
}

async fn traffic(http: &Http, addr: SocketAddr) {
    for (i, (agent, score)) in [
        ("Ada Lovelace", 91),
        ("Grace Hopper", 78),
        ("Alan Turing", 64),
        ("Ada Lovelace", 88),
    ]
    .into_iter()
    .enumerate()
    {
        let delivery = call_of(&format!("evt_b{i}"), agent, score);
        assert_eq!(http.deliver(addr, &delivery).await.status, StatusCode::OK);
    }
    let dead = call_of("evt_dead", "Katherine Johnson", 70);
    assert_eq!(http.deliver(addr, &dead).await.status, StatusCode::OK);
    let forged = SignedDelivery::builder(&b"{}"[..])
        .event("call.uploaded")
        .delivery_id("dlv_forged")
        .sign("whsec_wrong");
    assert_eq!(
        http.deliver(addr, &forged).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_clicks_through_the_console() {
    let test = "an_operator_clicks_through_the_console";
    let Some(chromium) = Chromium::find_or_skip(test) else {
        return;
    };
    let Some(driver) = chromedriver() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: chromedriver not found, and CI is set: install it (apt-get install -y \
             chromium-driver) so the clicking test really runs"
        );
        println!("SKIPPED: chromedriver not found ({test}); install chromium-driver to run it");
        return;
    };
    let (_dir, db) = temp_db();
    let app = start(config(&db)).await;
    let (http, addr) = (Http::new(), app.addr());
    traffic(&http, addr).await;
    rows(&http, addr, "/api/calls", 5).await;
    log_entries(&http, addr, "dlv_evt_b0", 1).await;
    // The worker ran out of attempts on one event (as during an outage).
    let conn = rusqlite::Connection::open(&db).expect("the app's database");
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute(
        "UPDATE kendo_inbox SET state = 'dead', attempts = 5,
             last_error = 'attempt 5 of 5: the CRM was down' WHERE event_id = 'evt_dead'",
        [],
    )
    .expect("the row dies");

    let browser = Browser::start(&chromium, &driver).await;
    browser.resize((1366, 900)).await;
    // Logged in as a browser is: 401, then the URL's Basic credentials.
    browser.goto(&admin_url(addr, TOKEN, "/")).await;
    browser.wait_for_text("Pipeline health").await;

    // The page refreshes in place: a new call appears without a reload
    // (a value set on the window survives), when the tab shows again.
    browser.run("window.notReloaded = true; return 1").await;
    let late = call_of("evt_late", "Mary Jackson", 93);
    assert_eq!(http.deliver(addr, &late).await.status, StatusCode::OK);
    rows(&http, addr, "/api/calls", 6).await;
    eventually("the new call shown in place", || async {
        browser
            .run("document.dispatchEvent(new Event('visibilitychange')); return 1")
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let shown = browser
            .run("return window.notReloaded === true && document.body.innerText.includes('Mary Jackson')")
            .await;
        (shown == Value::Bool(true)).then_some(())
    })
    .await;

    // Open a delivery from the log and see its payload.
    browser.click(r#"a[href="/deliveries/dlv_evt_b0"]"#).await;
    browser.wait_for_text("Body as received").await;
    let payload = browser.text("pre.payload").await;
    assert!(
        payload.contains("\"agentName\": \"Ada Lovelace\""),
        "{payload}"
    );
    let headers = browser.text("table.kv").await;
    assert!(headers.contains("x-kendo-signature"), "{headers}");

    // Requeue the dead row from the dashboard and see it done.
    browser.goto(&format!("http://{addr}/")).await;
    browser.wait_for_text("needs a requeue").await;
    browser
        .click(r#"form[action="/api/inbox/evt_dead/requeue"] button"#)
        .await;
    browser.wait_for_text("handed to the worker again").await;
    browser.click(".result + p a").await;
    eventually("the requeued row done", || async {
        browser.goto(&format!("http://{addr}/deliveries/dlv_evt_dead")).await;
        browser.find(".facts .tag").await;
        let tags = browser
            .run("return [...document.querySelectorAll('.facts .tag')].map(e => e.textContent).join(',')")
            .await;
        tags.as_str().is_some_and(|t| t.contains("done")).then_some(())
    })
    .await;

    // Search by an agent's name from the box.
    browser.goto(&format!("http://{addr}/")).await;
    browser.type_into("#q", "lovelace").await;
    browser.click("form.search button").await;
    browser.wait_for_text("Search results for").await;
    let results = browser.text("section.results").await;
    assert!(
        results.contains("call_evt_b0") && results.contains("call_evt_b3"),
        "{results}"
    );
    assert!(!results.contains("call_evt_b1"), "Grace's call: {results}");

    // Export CSV from the page's link (fetched as the page would).
    let csv = browser
        .run_async(
            "const done = arguments[arguments.length - 1];
             const link = document.querySelector('a[href=\"/api/calls?format=csv\"]');
             fetch(link.href, { credentials: 'same-origin' })
               .then(r => r.text().then(t => done({ type: r.headers.get('content-type'), text: t })))
               .catch(e => done({ error: String(e) }));",
        )
        .await;
    assert!(
        csv["type"].as_str().unwrap_or("").starts_with("text/csv"),
        "{csv}"
    );
    let text = csv["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("eventId,callId,agentId,agentName,"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 7, "the header and six calls: {text}");

    // Nothing cut off on a phone, at 1366 px, on a desktop.
    for size in [(390, 844), (1366, 900), (1920, 1080)] {
        browser.resize(size).await;
        for path in ["/", "/deliveries/dlv_evt_b0", "/agents/Ada%20Lovelace"] {
            browser.goto(&format!("http://{addr}{path}")).await;
            browser.find("h1").await;
            let layout = browser.run(CUT_OFF).await;
            assert!(
                layout["sideways"].as_i64().unwrap_or(1) <= 0,
                "{path} scrolls sideways at {size:?}: {layout}"
            );
            assert_eq!(
                layout["cut"].as_array().map(Vec::len),
                Some(0),
                "{path} at {size:?}: {layout}"
            );
        }
    }
    println!("clicked through: delivery payload, requeue, search, CSV; nothing cut off");
    browser.quit().await;
    app.shutdown().await;
}
