//! Two central receivers in one MQTT 5 shared-subscription group, storing into one database,
//! split a post's records between them; one is restarted mid-run (a rolling upgrade). Central
//! must end with exactly the records the post created, none missing, none twice, and each
//! instance must have stored a share. Through Mosquitto and through the embedded rumqttd.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bcp_sync::{
    run_receiver, run_uplink, start_embedded, CentralStore, MosquittoProcess, Outbox,
    ReceiverConfig, ReceiverStats, UplinkConfig,
};
use common::{crossing, wait_for, wait_until_receiver_subscribed, POST};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

const RECORDS: u32 = 3_000;

/// One central instance: its own store handle on the shared file, its own client id.
struct Instance {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<ReceiverStats>>,
    counter: JoinHandle<u64>,
}

fn start_instance(port: u16, db: &Path, client_id: &str) -> Instance {
    let store = Arc::new(CentralStore::open(db).unwrap());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (tx, mut stored) = mpsc::unbounded_channel();
    let cfg = ReceiverConfig {
        broker_host: "127.0.0.1".into(),
        broker_port: port,
        client_id: client_id.into(),
        share_group: "central-test".into(),
        ..Default::default()
    };
    let task = tokio::spawn(run_receiver(cfg, store, tx, shutdown_rx));
    let counter = tokio::spawn(async move {
        let mut n = 0;
        while stored.recv().await.is_some() {
            n += 1;
        }
        n
    });
    Instance {
        shutdown,
        task,
        counter,
    }
}

impl Instance {
    /// Stops it; returns what it handled, its `stored` checked against the crossings it sent on.
    async fn stop(self) -> ReceiverStats {
        self.shutdown.send(true).unwrap();
        let stats = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("a receiver did not stop")
            .unwrap()
            .unwrap();
        assert_eq!(self.counter.await.unwrap(), stats.stored);
        stats
    }
}

/// `port`: where the post connects; `central_port`: the MQTT 5 listener of the same broker.
async fn two_instances_split_the_load(port: u16, central_port: u16) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("central.db");
    let outbox = Arc::new(Outbox::open(&dir.path().join("outbox.db"), POST).unwrap());
    let view = CentralStore::open(&db).unwrap();

    let a = start_instance(central_port, &db, "central-a");
    let b = start_instance(central_port, &db, "central-b");
    wait_until_receiver_subscribed("127.0.0.1", port, || view.rejected().unwrap().len()).await;

    let (stop_tx, stop_rx) = watch::channel(false);
    let notify = Arc::new(Notify::new());
    let uplink = tokio::spawn(run_uplink(
        UplinkConfig {
            broker_host: "127.0.0.1".into(),
            broker_port: port,
            client_id: "edge-shared".into(),
            post: POST.into(),
            max_in_flight: 400,
            batch_max_records: 20,
            ..Default::default()
        },
        Arc::clone(&outbox),
        Arc::clone(&notify),
        stop_rx,
    ));

    // The lane appends steadily; instance A is stopped at a third and back at two thirds.
    let mut a = Some(a);
    let mut a_stats = Vec::new();
    for n in (0..RECORDS).step_by(20) {
        let batch: Vec<_> = (n..n + 20).map(|i| crossing(POST, i + 1)).collect();
        outbox.append_batch(&batch, chrono::Utc::now()).unwrap();
        notify.notify_one();
        if n == RECORDS / 3 / 20 * 20 {
            a_stats.push(a.take().unwrap().stop().await);
        }
        if n == 2 * RECORDS / 3 / 20 * 20 {
            a = Some(start_instance(central_port, &db, "central-a"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let limit = bcp_sync::uplink::ACK_RESEND_AFTER + Duration::from_secs(60);
    wait_for("every record acknowledged", limit, || {
        outbox.stats().unwrap().last_acked_seq == u64::from(RECORDS)
    })
    .await;

    stop_tx.send(true).unwrap();
    uplink.await.unwrap().unwrap();
    a_stats.push(a.take().unwrap().stop().await);
    let b_stats = b.stop().await;
    eprintln!("shared_subscription: instance a {a_stats:?}, instance b {b_stats:?}");
    let a_stored: u64 = a_stats.iter().map(|s| s.stored).sum();
    let b_stored = b_stats.stored;
    // Each message went to one member of the group: without sharing, each instance would see
    // every record and the second to see it would count a duplicate (about RECORDS in all).
    let duplicates: u64 = a_stats.iter().map(|s| s.duplicates).sum::<u64>() + b_stats.duplicates;
    assert!(
        duplicates < u64::from(RECORDS) / 10,
        "{duplicates} duplicates: the records were not split between the instances"
    );

    let stored: Vec<u64> = view.export().unwrap().iter().map(|c| c.seq).collect();
    assert_eq!(stored, (1..=u64::from(RECORDS)).collect::<Vec<_>>());
    assert_eq!(
        a_stored + b_stored,
        u64::from(RECORDS),
        "a record was stored twice"
    );
    assert!(
        a_stored > 0 && b_stored > 0,
        "the group did not split the load: a {a_stored}, b {b_stored}"
    );
    let posts = view.posts().unwrap();
    let post = posts.iter().find(|p| p.post == POST).unwrap();
    assert_eq!(post.chain_state(), "ok", "{post:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_receivers_share_the_records_through_mosquitto() {
    let mosquitto = MosquittoProcess::start().unwrap();
    two_instances_split_the_load(mosquitto.port(), mosquitto.port()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_receivers_share_the_records_through_embedded_rumqttd() {
    let broker = start_embedded(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    two_instances_split_the_load(broker.addr().port(), broker.v5_addr().port()).await;
}
