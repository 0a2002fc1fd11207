//! Storage that fails under the running app (issue 17): a disk that fills
//! up (a real size-limited tmpfs, mounted by the test), and data Postgres
//! cannot store as sent (a NUL in a text field). In both, nothing that was
//! answered 200 is lost, and `/healthz` tells the truth.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use hyper::StatusCode;
use kendo_test_support::postgres_server;
use kendo_webhooks::SignedDelivery;

/// A tmpfs of a given size on a fresh directory, unmounted on drop. Only
/// root may mount: elsewhere the test is skipped (and fails under `CI`).
struct SmallDisk {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl SmallDisk {
    fn mount_or_skip(test: &str, size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().to_path_buf();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&path)
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Self { _dir: dir, path }),
            other => {
                let why = match other {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                    Err(error) => error.to_string(),
                };
                assert!(
                    std::env::var_os("CI").is_none(),
                    "{test}: could not mount a tmpfs ({why}); CI runs as root on this machine"
                );
                println!("SKIPPED {test}: could not mount a tmpfs ({why}); run as root");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Gives the file system room again, as an operator freeing space would.
    fn grow(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "remount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: files the app still holds open do not keep the mount.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn padded_call(i: usize) -> SignedDelivery {
    let event_id = format!("evt_full_{i:05}");
    let name = format!("Agent {i} {}", "x".repeat(4_000));
    let body = call_body(&event_id, &format!("agent_{i}"), Some(&name), "71", 60);
    SignedDelivery::builder(body)
        .event("call.uploaded")
        .delivery_id(format!("dlv_full_{i:05}"))
        .sign(SECRET)
}

/// Issue 17, #4: on a full disk deliveries are refused with 503 (Kendo
/// retries them), `/healthz` answers 503 instead of 200, and once space
/// is freed the node turns healthy again and every delivery answered 200
/// before, during and after is projected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_deliveries_turns_healthz_503_and_loses_nothing_acknowledged() {
    let test = "a_full_disk_refuses_deliveries_turns_healthz_503";
    let Some(disk) = SmallDisk::mount_or_skip(test, "2m") else {
        return;
    };
    let db = disk.path().join("crm.sqlite3");
    let app = start(config(&db)).await;
    let http = Http::new();

    let mut acknowledged = 0usize;
    let mut refused = None;
    for i in 0..2_000 {
        let reply = http.deliver(app.addr(), &padded_call(i)).await;
        match reply.status {
            StatusCode::OK => acknowledged += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                refused = Some((i, reply.text()));
                break;
            }
            other => panic!("delivery {i}: unexpected {other}: {}", reply.text()),
        }
    }
    let (first_refused, answer) = refused.expect("a 2 MiB disk fills within 2,000 deliveries");
    assert!(acknowledged > 0, "the disk was full from the start");
    println!("disk full after {acknowledged} deliveries; the refusal said: {answer}");

    let reply = eventually("healthz turns 503 on a full disk", || async {
        let reply = http.get_with(app.addr(), "/healthz", None).await;
        (reply.status == StatusCode::SERVICE_UNAVAILABLE).then_some(reply)
    })
    .await;
    assert_eq!(reply.json(), serde_json::json!({ "status": "unavailable" }));

    disk.grow("256m");
    eventually("healthz turns 200 once there is room", || async {
        let reply = http.get_with(app.addr(), "/healthz", None).await;
        (reply.status == StatusCode::OK).then_some(())
    })
    .await;
    // Kendo's retry of the refused delivery, and one more, are accepted.
    for i in [first_refused, first_refused + 1] {
        let reply = http.deliver(app.addr(), &padded_call(i)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        acknowledged += 1;
    }
    let health = eventually("every acknowledged call projected", || async {
        let health = http.health(app.addr()).await;
        (health["inbox"]["backlog"] == 0).then_some(health)
    })
    .await;
    assert_eq!(health["counts"]["calls"], acknowledged, "{health}");
    assert_eq!(health["inbox"]["dead"], 0, "{health}");
    app.shutdown().await;
    drop(disk);
}

/// Issue 17, #6: Postgres `text` cannot hold a NUL. A delivery whose data
/// carries one is still projected (the NUL shown as U+FFFD), its inbox
/// row is done rather than failing until dead, and its log entry is kept
/// together with the rest of its batch.
#[tokio::test]
async fn postgres_projects_a_call_whose_data_holds_a_nul() {
    let Some(pg) = postgres_server::PostgresServer::start_or_skip(
        "crm postgres_projects_a_call_whose_data_holds_a_nul",
    ) else {
        return;
    };
    let app = start(config_on(crm_ingest::config::Database::Postgres(pg.url()))).await;
    let http = Http::new();
    let body = call_body("evt_nul_1", "agent\0nul", Some("Ada\0Lovelace"), "64", 90);
    let nul = SignedDelivery::builder(body)
        .event("call.uploaded")
        .delivery_id("dlv_nul_1")
        .sign(SECRET);
    let plain = signed("call.uploaded", "evt_nul_2", "dlv_nul_2");
    for delivery in [&nul, &plain] {
        let reply = http.deliver(app.addr(), delivery).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }

    let health = eventually("both rows done", || async {
        let health = http.health(app.addr()).await;
        (health["inbox"]["done"] == 2).then_some(health)
    })
    .await;
    assert_eq!(health["inbox"]["dead"], 0, "{health}");
    assert_eq!(health["inbox"]["failed"], 0, "{health}");
    let calls = rows(&http, app.addr(), "/api/calls?limit=10", 2).await;
    let projected = calls
        .iter()
        .find(|c| c["eventId"] == "evt_nul_1")
        .expect("the call with a NUL is projected");
    assert_eq!(projected["agentName"], "Ada\u{fffd}Lovelace", "{projected}");
    assert_eq!(projected["agentId"], "agent\u{fffd}nul", "{projected}");
    for id in ["dlv_nul_1", "dlv_nul_2"] {
        let entries = log_entries(&http, app.addr(), id, 1).await;
        assert_eq!(entries[0]["outcome"], "accepted", "{}", entries[0]);
    }
    app.shutdown().await;
}
