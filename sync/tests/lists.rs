//! Downlink lists: central signs and publishes (retained) through Mosquitto, the uplink applies
//! them to the post's list store; newer versions replace older ones atomically, replays and
//! forgeries change nothing, and the lists are there after a restart without any link.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report

mod common;

use std::sync::Arc;
use std::time::Duration;

use bcp_record::lists::DownlinkList;
use bcp_sync::lists::publish_list;
use bcp_sync::{run_uplink, ListOutcome, ListStore, MosquittoProcess, Outbox, UplinkConfig};
use common::{wait_for, POST};
use ed25519_dalek::SigningKey;
use tokio::sync::{watch, Notify};

fn hotlist(version: u64, plate: &str, key: &SigningKey) -> DownlinkList {
    let mut list = DownlinkList {
        post: POST.into(),
        kind: "hotlist".into(),
        version,
        issued_at: chrono::Utc::now(),
        entries: serde_json::json!([{ "plate": plate, "reason": "wanted" }]),
        key: String::new(),
        sig: String::new(),
    };
    list.sign(key);
    list
}

fn plate(store: &ListStore) -> Option<String> {
    store
        .get("hotlist")
        .unwrap()
        .map(|l| l.entries[0]["plate"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_lists_reach_the_post_newest_wins_and_they_survive_a_restart() {
    let mosquitto = MosquittoProcess::start().unwrap();
    let port = mosquitto.port();
    let central = SigningKey::from_bytes(&[42; 32]);
    let central_pub = *central.verifying_key().as_bytes();
    let dir = tempfile::tempdir().unwrap();
    let lists_path = dir.path().join("lists.db");

    // Published while the post is away: retained, it arrives when the post subscribes.
    publish_list(
        "127.0.0.1",
        port,
        None,
        "central-lists",
        &hotlist(1, "1111AB01", &central),
    )
    .await
    .unwrap();

    let lists = Arc::new(ListStore::open(&lists_path, POST, central_pub).unwrap());
    let outbox = Arc::new(Outbox::open(&dir.path().join("outbox.db"), POST).unwrap());
    let (stop_tx, stop_rx) = watch::channel(false);
    let uplink = tokio::spawn(run_uplink(
        UplinkConfig {
            broker_host: "127.0.0.1".into(),
            broker_port: port,
            client_id: "edge-lists".into(),
            post: POST.into(),
            lists: Some(Arc::clone(&lists)),
            ..Default::default()
        },
        outbox,
        Arc::new(Notify::new()),
        stop_rx,
    ));
    let wait = Duration::from_secs(20);
    wait_for("list v1", wait, || {
        plate(&lists).as_deref() == Some("1111AB01")
    })
    .await;

    publish_list(
        "127.0.0.1",
        port,
        None,
        "central-lists",
        &hotlist(2, "2222AB01", &central),
    )
    .await
    .unwrap();
    wait_for("list v2", wait, || {
        plate(&lists).as_deref() == Some("2222AB01")
    })
    .await;

    // A replayed v1 and a forged v3 (another key) change nothing.
    publish_list(
        "127.0.0.1",
        port,
        None,
        "replayer",
        &hotlist(1, "1111AB01", &central),
    )
    .await
    .unwrap();
    let forger = SigningKey::from_bytes(&[7; 32]);
    publish_list(
        "127.0.0.1",
        port,
        None,
        "forger",
        &hotlist(3, "6666AB01", &forger),
    )
    .await
    .unwrap();
    // A genuine v4 after them proves they were processed (messages on one topic keep their order).
    publish_list(
        "127.0.0.1",
        port,
        None,
        "central-lists",
        &hotlist(4, "4444AB01", &central),
    )
    .await
    .unwrap();
    wait_for("list v4", wait, || {
        plate(&lists).as_deref() == Some("4444AB01")
    })
    .await;
    assert_eq!(lists.get("hotlist").unwrap().unwrap().version, 4);

    stop_tx.send(true).unwrap();
    uplink.await.unwrap().unwrap();
    drop(lists);
    drop(mosquitto);

    // Offline, after a restart: the list is there, and the store's own rules still hold.
    let lists = ListStore::open(&lists_path, POST, central_pub).unwrap();
    assert_eq!(plate(&lists).as_deref(), Some("4444AB01"));
    let stale = serde_json::to_vec(&hotlist(2, "2222AB01", &central)).unwrap();
    assert!(matches!(
        lists.apply(&stale, chrono::Utc::now()).unwrap(),
        ListOutcome::Stale {
            held: 4,
            offered: 2,
            ..
        }
    ));
    let forged = serde_json::to_vec(&hotlist(9, "6666AB01", &forger)).unwrap();
    assert!(matches!(
        lists.apply(&forged, chrono::Utc::now()).unwrap(),
        ListOutcome::Rejected(_)
    ));
    let mut other_post = hotlist(9, "6666AB01", &central);
    other_post.post = "UZALT-02".into();
    other_post.sign(&central);
    assert!(matches!(
        lists
            .apply(
                &serde_json::to_vec(&other_post).unwrap(),
                chrono::Utc::now()
            )
            .unwrap(),
        ListOutcome::Rejected(_)
    ));
    assert_eq!(plate(&lists).as_deref(), Some("4444AB01"));
}
