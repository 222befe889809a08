//! After a long outage the backlog drains slowly (a capped link), and a vehicle crosses
//! meanwhile: its record must reach central within a batch or two, not after the whole backlog;
//! and in the end central holds every record once, in order.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bcp_sync::{
    run_receiver, run_uplink, start_embedded, CentralStore, Outbox, ReceiverConfig, UplinkConfig,
};
use common::{crossing, wait_for, wait_until_receiver_subscribed, POST};
use tokio::sync::{mpsc, watch, Notify};

const BACKLOG: u32 = 3_000;
const BATCH: usize = 50;
/// The drain takes about this long at the cap.
const DRAIN_SECS: u64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_record_overtakes_a_long_backlog() {
    let broker = start_embedded(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Outbox::open(&dir.path().join("outbox.db"), POST).unwrap());
    let store = Arc::new(CentralStore::open(&dir.path().join("central.db")).unwrap());
    let backlog: Vec<_> = (1..=BACKLOG).map(|n| crossing(POST, n)).collect();
    outbox.append_batch(&backlog, chrono::Utc::now()).unwrap();
    let bytes: usize = outbox
        .pending(0, usize::MAX)
        .unwrap()
        .chunks(BATCH)
        .map(|c| bcp_sync::wire::encode_batch(POST, c).unwrap().len())
        .sum();
    let cap = (bytes as u64 / DRAIN_SECS).max(1);

    let (stop_tx, stop_rx) = watch::channel(false);
    let (stored_tx, mut stored_rx) = mpsc::unbounded_channel();
    let receiver = tokio::spawn(run_receiver(
        ReceiverConfig {
            broker_host: "127.0.0.1".into(),
            broker_port: broker.v5_addr().port(),
            client_id: "central-live".into(),
            ..Default::default()
        },
        Arc::clone(&store),
        stored_tx,
        stop_rx.clone(),
    ));
    wait_until_receiver_subscribed("127.0.0.1", broker.addr().port(), || {
        store.rejected().unwrap().len()
    })
    .await;

    let notify = Arc::new(Notify::new());
    let uplink = tokio::spawn(run_uplink(
        UplinkConfig {
            broker_host: "127.0.0.1".into(),
            broker_port: broker.addr().port(),
            client_id: "edge-live".into(),
            post: POST.into(),
            max_in_flight: 200,
            batch_max_records: BATCH,
            batch_linger_ms: 0,
            max_bytes_per_sec: cap,
            ..Default::default()
        },
        Arc::clone(&outbox),
        Arc::clone(&notify),
        stop_rx,
    ));
    wait_for("the drain to start", Duration::from_secs(30), || {
        outbox.stats().unwrap().last_acked_seq > 0
    })
    .await;

    // A vehicle crosses while the backlog drains.
    let live = outbox.append(&crossing(POST, BACKLOG + 1)).unwrap();
    notify.notify_one();
    let appended = Instant::now();
    let live_seq = u64::from(BACKLOG + 1);
    assert_eq!(live.seq, live_seq);
    let arrived = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(c) = stored_rx.recv().await {
            if c.seq == live_seq {
                return;
            }
        }
    })
    .await;
    assert!(arrived.is_ok(), "the live record never reached central");
    let waited = appended.elapsed();
    let acked_then = outbox.stats().unwrap().last_acked_seq;
    eprintln!(
        "live_during_backlog: {bytes} backlog bytes at {cap} B/s; the live record took {waited:?}, \
         with the backlog acknowledged up to {acked_then} of {BACKLOG}"
    );
    assert!(
        acked_then < u64::from(BACKLOG) / 2,
        "the live record waited for the backlog (acked {acked_then} of {BACKLOG} when it arrived)"
    );

    wait_for(
        "every record acknowledged",
        Duration::from_secs(DRAIN_SECS * 4),
        || outbox.stats().unwrap().last_acked_seq == live_seq,
    )
    .await;
    let stored: Vec<u64> = store.export().unwrap().iter().map(|c| c.seq).collect();
    assert_eq!(stored, (1..=live_seq).collect::<Vec<_>>());
    stop_tx.send(true).unwrap();
    uplink.await.unwrap().unwrap();
    receiver.await.unwrap().unwrap();
}
