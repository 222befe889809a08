//! Disk full, then space returns, end to end: an outbox with a disk budget fills while the link
//! is down (images evicted, then records refused with `Full`; the lane keeps what was refused),
//! then the uplink runs through the embedded broker to central. Central must end with exactly
//! the records created, none missing, none twice; every image either stored at central with
//! matching bytes or noted there as evicted at the post; and the post's status carries the
//! eviction counter.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bcp_record::ImageKind;
use bcp_sync::central::blobs::{default_blob_dir, CentralBlobs, ImageState};
use bcp_sync::outbox::ImageData;
use bcp_sync::{
    run_receiver, run_uplink, start_embedded, CentralStore, Outbox, OutboxError, ReceiverConfig,
    UplinkConfig,
};
use common::{crossing, wait_for, wait_until_receiver_subscribed, POST};
use tokio::sync::{mpsc, watch, Notify};

const IMAGE_BYTES: usize = 40 * 1024;

fn image(n: u32) -> Vec<u8> {
    let mut v = vec![0xff, 0xd8];
    v.extend(n.to_le_bytes());
    let mut x = u64::from(n) | 1;
    while v.len() < IMAGE_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

fn append(outbox: &Outbox, c: &bcp_record::Crossing, n: u32) -> Result<u64, OutboxError> {
    let bytes = image(n);
    outbox
        .append_with_images(
            c,
            &[ImageData {
                kind: ImageKind::Overview,
                media_type: "image/jpeg",
                bytes: &bytes,
            }],
        )
        .map(|e| e.seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_then_space_returns_central_holds_exactly_what_was_created() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Outbox::open(&dir.path().join("outbox.db"), POST).unwrap());
    outbox.set_budget_bytes(512 * 1024).unwrap();

    // The link is down: ingest until the outbox refuses; the lane keeps the refused crossings.
    let mut created = Vec::new();
    let mut backlog = Vec::new();
    let mut n = 0u32;
    loop {
        n += 1;
        let c = crossing(POST, n);
        match append(&outbox, &c, n) {
            Ok(seq) => created.push((seq, c.id.to_string())),
            Err(OutboxError::Full { .. }) => {
                backlog.push((c, n));
                break;
            }
            Err(e) => panic!("append {n}: {e}"),
        }
        assert!(n < 20_000, "the budget never filled");
    }
    for _ in 0..10 {
        n += 1;
        backlog.push((crossing(POST, n), n));
    }
    let stats = outbox.stats().unwrap();
    assert!(
        stats.high_water && stats.blobs_evicted_total > 0,
        "{stats:?}"
    );
    println!(
        "full after {} records; {} waiting at the lane",
        created.len(),
        backlog.len()
    );

    // Central and the link come up.
    let broker = start_embedded(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let port = broker.addr().port();
    let db = dir.path().join("central.db");
    let store = Arc::new(CentralStore::open(&db).unwrap());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (stored_tx, mut stored_rx) = mpsc::unbounded_channel();
    let receiver = tokio::spawn(run_receiver(
        ReceiverConfig {
            broker_host: "127.0.0.1".into(),
            broker_port: broker.v5_addr().port(),
            client_id: "central-images".into(),
            ..Default::default()
        },
        Arc::clone(&store),
        stored_tx,
        stop_rx.clone(),
    ));
    wait_until_receiver_subscribed("127.0.0.1", port, || store.rejected().unwrap().len()).await;
    let probes = store.rejected().unwrap().len();
    let notify = Arc::new(Notify::new());
    let uplink = tokio::spawn(run_uplink(
        UplinkConfig {
            broker_host: "127.0.0.1".into(),
            broker_port: port,
            client_id: "edge-images".into(),
            post: POST.into(),
            heartbeat_secs: 1,
            ..Default::default()
        },
        Arc::clone(&outbox),
        Arc::clone(&notify),
        stop_rx,
    ));

    // The lane retries its backlog: as central acknowledges, delivered records are pruned and
    // the refused crossings go in, with their images.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for (c, k) in &backlog {
        loop {
            match append(&outbox, c, *k) {
                Ok(seq) => {
                    created.push((seq, c.id.to_string()));
                    notify.notify_one();
                    break;
                }
                Err(OutboxError::Full { .. }) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "space never returned"
                    );
                    notify.notify_one();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("append {k}: {e}"),
            }
        }
    }
    let drained = || {
        let s = outbox.stats().unwrap();
        s.depth == 0
            && s.blobs_pending == 0
            && outbox.pending_eviction_notices(1).unwrap().is_empty()
    };
    let t = std::time::Instant::now();
    wait_for("the outbox drained", Duration::from_secs(60), drained).await;
    println!("drained in {:?}", t.elapsed());
    // Space has returned: new crossings keep their images, and central gets them.
    const AFTER: usize = 5;
    for _ in 0..AFTER {
        n += 1;
        let c = crossing(POST, n);
        created.push((append(&outbox, &c, n).unwrap(), c.id.to_string()));
        notify.notify_one();
    }
    wait_for("the outbox drained again", Duration::from_secs(60), drained).await;

    // Records: exactly those created, none missing, none twice.
    let n_created = created.len() as u64;
    assert_eq!(created.last().unwrap().0, n_created, "seqs have a hole");
    wait_for(
        "central holds every record",
        Duration::from_secs(30),
        || store.export().unwrap().len() as u64 >= n_created,
    )
    .await;
    let exported = store.export().unwrap();
    let stored: Vec<(u64, String)> = exported
        .iter()
        .map(|c| (c.seq, c.crossing.id.to_string()))
        .collect();
    assert_eq!(
        stored, created,
        "central differs from what the post created"
    );
    let mut newly = 0u64;
    while stored_rx.try_recv().is_ok() {
        newly += 1;
    }
    assert_eq!(newly, n_created, "a record was stored twice");
    assert_eq!(
        store.rejected().unwrap().len(),
        probes,
        "records were rejected"
    );

    // Images: stored with matching bytes, or noted as evicted at the post; none pending.
    let blobs = CentralBlobs::new(default_blob_dir(&db));
    let (mut at_central, mut evicted) = (0, 0);
    for c in &exported {
        assert_eq!(c.crossing.images.len(), 1, "seq {}", c.seq);
        let image = &c.crossing.images[0];
        let edge = outbox.blob_state(&image.sha256).unwrap().unwrap();
        match blobs.state(image) {
            ImageState::Stored => {
                let bytes = blobs.dir().get(&image.sha256).unwrap();
                assert_eq!(bcp_sync::blobs::sha256_hex(&bytes), image.sha256);
                assert!(
                    edge.synced,
                    "seq {}: central has it, the post must know",
                    c.seq
                );
                at_central += 1;
            }
            ImageState::EvictedAtPost { reason } => {
                assert!(!edge.synced && edge.evicted.as_deref() == Some(reason.as_str()));
                evicted += 1;
            }
            ImageState::Pending => panic!("seq {}: image neither at central nor evicted", c.seq),
        }
    }
    println!(
        "{n_created} records at central once each; images: {at_central} stored, {evicted} evicted at the post"
    );
    assert!(evicted > 0, "the budget evicted images");
    for c in &exported[exported.len() - AFTER..] {
        assert_eq!(
            blobs.state(&c.crossing.images[0]),
            ImageState::Stored,
            "seq {}: ingested after space returned, its image reaches central",
            c.seq
        );
    }

    // The metric: the post's status carries the eviction counter to central.
    let evicted_total = outbox.stats().unwrap().blobs_evicted_total;
    wait_for(
        "the heartbeat carries the image figures",
        Duration::from_secs(10),
        || {
            store.posts().unwrap().iter().any(|p| {
                p.post == POST
                    && p.status.as_ref().is_some_and(|s| {
                        s.blobs_evicted_total == Some(evicted_total) && s.blobs_pending == Some(0)
                    })
            })
        },
    )
    .await;

    stop_tx.send(true).unwrap();
    uplink.await.unwrap().unwrap();
    receiver.await.unwrap().unwrap();
}
