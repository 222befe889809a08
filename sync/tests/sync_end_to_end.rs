//! Outbox -> run_uplink -> broker -> run_receiver -> CentralStore, with real brokers:
//! embedded rumqttd and a Mosquitto process, each on a free loopback port.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bcp_sync::{
    run_receiver, run_uplink, start_embedded, CentralStore, MosquittoProcess, Outbox,
    ReceiverConfig, ReceiverStats, StoredCrossing, UplinkConfig,
};
use common::{crossing, wait_for, wait_until_receiver_subscribed, POST};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(30);

struct Receiver {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<ReceiverStats>>,
    stored: mpsc::UnboundedReceiver<StoredCrossing>,
}

fn start_receiver(host: &str, port: u16, store: &Arc<CentralStore>) -> Receiver {
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (tx, stored) = mpsc::unbounded_channel();
    let cfg = ReceiverConfig {
        broker_host: host.to_owned(),
        broker_port: port,
        client_id: "central-e2e".to_owned(),
        ..Default::default()
    };
    let task = tokio::spawn(run_receiver(cfg, Arc::clone(store), tx, shutdown_rx));
    Receiver {
        shutdown,
        task,
        stored,
    }
}

async fn stop<T>(shutdown: &watch::Sender<bool>, task: JoinHandle<anyhow::Result<T>>, what: &str) {
    shutdown.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap_or_else(|_| panic!("{what} did not stop"))
        .unwrap()
        .unwrap_or_else(|e| panic!("{what} failed: {e:#}"));
}

fn drain(rx: &mut mpsc::UnboundedReceiver<StoredCrossing>, into: &mut Vec<u64>) {
    while let Ok(c) = rx.try_recv() {
        into.push(c.seq);
    }
}

fn exported_seqs(store: &CentralStore) -> Vec<u64> {
    store.export().unwrap().iter().map(|c| c.seq).collect()
}

/// `port`: where the post connects; `central_port`: where central's MQTT 5 receiver does.
async fn scenario(host: &str, port: u16, central_port: u16) {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Outbox::open(&dir.path().join("outbox.db"), POST).unwrap());
    let store = Arc::new(CentralStore::open(&dir.path().join("central.db")).unwrap());
    for n in 1..=25 {
        outbox.append(&crossing(POST, n)).unwrap();
    }

    // Central first, and proven subscribed, so that the persistent session exists.
    let mut receiver = start_receiver(host, central_port, &store);
    wait_until_receiver_subscribed(host, port, || store.rejected().unwrap().len()).await;
    let rejected = store.rejected().unwrap();
    assert!(rejected
        .iter()
        .all(|r| r.topic == "bcp/v1/PROBE-00/records"));

    let new_record = Arc::new(Notify::new());
    let (uplink_shutdown, uplink_shutdown_rx) = watch::channel(false);
    let cfg = UplinkConfig {
        broker_host: host.to_owned(),
        broker_port: port,
        client_id: format!("edge-{POST}"),
        post: POST.to_owned(),
        keep_alive_secs: 5,
        max_in_flight: 8,
        heartbeat_secs: 1,
        ..Default::default()
    };
    let uplink = tokio::spawn(run_uplink(
        cfg,
        Arc::clone(&outbox),
        Arc::clone(&new_record),
        uplink_shutdown_rx,
    ));

    let mut newly = Vec::new();
    wait_for("25 records acknowledged", WAIT, || {
        let stats = outbox.stats().unwrap();
        stats.depth == 0 && stats.last_acked_seq == 25
    })
    .await;
    assert_eq!(exported_seqs(&store), (1..=25).collect::<Vec<_>>());
    drain(&mut receiver.stored, &mut newly);
    assert_eq!(newly, (1..=25).collect::<Vec<_>>(), "each stored once");

    // Central goes away; the post keeps producing.
    stop(&receiver.shutdown, receiver.task, "receiver").await;
    drain(&mut receiver.stored, &mut newly);
    for n in 26..=30 {
        outbox.append(&crossing(POST, n)).unwrap();
        new_record.notify_one();
    }
    let stats = outbox.stats().unwrap();
    assert_eq!((stats.depth, stats.last_seq), (5, 30));

    // Central comes back under the same client id: its session held the records.
    let started = std::time::Instant::now();
    let mut receiver = start_receiver(host, central_port, &store);
    wait_for("30 records acknowledged", WAIT, || {
        let stats = outbox.stats().unwrap();
        stats.depth == 0 && stats.last_acked_seq == 30
    })
    .await;
    eprintln!(
        "records 26..=30 delivered {:?} after central restarted",
        started.elapsed()
    );
    assert_eq!(exported_seqs(&store), (1..=30).collect::<Vec<_>>());
    // The post's retained status reached central: online with an empty queue, then offline.
    wait_for("an online status with an empty queue", WAIT, || {
        store.posts().unwrap().iter().any(|p| {
            p.status.as_ref().is_some_and(|s| {
                s.state == bcp_record::PostState::Online
                    && s.depth == Some(0)
                    && s.last_acked_seq == Some(30)
            })
        })
    })
    .await;
    stop(&receiver.shutdown, receiver.task, "second receiver").await;
    drain(&mut receiver.stored, &mut newly);
    assert_eq!(newly, (1..=30).collect::<Vec<_>>(), "none twice");
    assert_eq!(outbox.pending(0, 100).unwrap().len(), 0);

    stop(&uplink_shutdown, uplink, "uplink").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_through_embedded_rumqttd() {
    let broker = start_embedded(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let addr = broker.addr();
    scenario(&addr.ip().to_string(), addr.port(), broker.v5_addr().port()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_through_mosquitto() {
    let mosquitto = MosquittoProcess::start().unwrap();
    scenario("127.0.0.1", mosquitto.port(), mosquitto.port()).await;
}

/// The broker dies and comes back empty (no persistence): both ends reconnect with backoff, the
/// receiver subscribes again, the uplink resends everything unacknowledged, and records appended
/// during the outage arrive too. No record is stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ends_recover_from_a_broker_restart() {
    let mosquitto = MosquittoProcess::start().unwrap();
    let port = mosquitto.port();
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Outbox::open(&dir.path().join("outbox.db"), POST).unwrap());
    let store = Arc::new(CentralStore::open(&dir.path().join("central.db")).unwrap());
    for n in 1..=10 {
        outbox.append(&crossing(POST, n)).unwrap();
    }
    let mut receiver = start_receiver("127.0.0.1", port, &store);
    wait_until_receiver_subscribed("127.0.0.1", port, || store.rejected().unwrap().len()).await;
    let new_record = Arc::new(Notify::new());
    let (uplink_shutdown, uplink_shutdown_rx) = watch::channel(false);
    let cfg = UplinkConfig {
        broker_host: "127.0.0.1".to_owned(),
        broker_port: port,
        client_id: "edge-restart".to_owned(),
        post: POST.to_owned(),
        keep_alive_secs: 5,
        max_in_flight: 4,
        ..Default::default()
    };
    let uplink = tokio::spawn(run_uplink(
        cfg,
        Arc::clone(&outbox),
        Arc::clone(&new_record),
        uplink_shutdown_rx,
    ));
    wait_for("10 records acknowledged", WAIT, || {
        outbox.stats().unwrap().last_acked_seq == 10
    })
    .await;

    drop(mosquitto);
    for n in 11..=15 {
        outbox.append(&crossing(POST, n)).unwrap();
        new_record.notify_one();
    }
    let started = std::time::Instant::now();
    let _mosquitto = MosquittoProcess::start_on(port).unwrap();
    // If the uplink resends before the receiver has subscribed again, the broker drops those
    // records and the uplink's ack timeout (ACK_RESEND_AFTER) sends them once more.
    let limit = bcp_sync::uplink::ACK_RESEND_AFTER + WAIT;
    wait_for("15 records acknowledged after the restart", limit, || {
        let stats = outbox.stats().unwrap();
        stats.depth == 0 && stats.last_acked_seq == 15
    })
    .await;
    eprintln!("recovered {:?} after the broker restart", started.elapsed());
    assert_eq!(exported_seqs(&store), (1..=15).collect::<Vec<_>>());
    stop(&uplink_shutdown, uplink, "uplink").await;
    stop(&receiver.shutdown, receiver.task, "receiver").await;
    let mut newly = Vec::new();
    drain(&mut receiver.stored, &mut newly);
    assert_eq!(newly, (1..=15).collect::<Vec<_>>(), "none twice");
}

/// A slow link: the uplink keeps under `max_bytes_per_sec` on average, and everything arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_rate_cap_holds_and_everything_still_arrives() {
    const CAP: u64 = 2_000;
    const BATCH: usize = 4;
    let broker = start_embedded(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let (host, port) = (broker.addr().ip().to_string(), broker.addr().port());
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Outbox::open(&dir.path().join("outbox.db"), POST).unwrap());
    let store = Arc::new(CentralStore::open(&dir.path().join("central.db")).unwrap());
    for n in 1..=40 {
        outbox.append(&crossing(POST, n)).unwrap();
    }
    // The bytes the uplink will send: the same batches, encoded the same way.
    let sizes: Vec<usize> = outbox
        .pending(0, 100)
        .unwrap()
        .chunks(BATCH)
        .map(|c| bcp_sync::wire::encode_batch(POST, c).unwrap().len())
        .collect();
    let bytes: usize = sizes.iter().sum();
    let last = *sizes.last().unwrap();
    let receiver = start_receiver(&host, broker.v5_addr().port(), &store);
    wait_until_receiver_subscribed(&host, port, || store.rejected().unwrap().len()).await;
    let (uplink_shutdown, uplink_shutdown_rx) = watch::channel(false);
    let cfg = UplinkConfig {
        broker_host: host.clone(),
        broker_port: port,
        client_id: "edge-slow".to_owned(),
        post: POST.to_owned(),
        max_in_flight: 40,
        batch_max_records: BATCH,
        batch_linger_ms: 0,
        max_bytes_per_sec: CAP,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let uplink = tokio::spawn(run_uplink(
        cfg,
        Arc::clone(&outbox),
        Arc::new(Notify::new()),
        uplink_shutdown_rx,
    ));
    wait_for("40 records acknowledged", WAIT, || {
        outbox.stats().unwrap().last_acked_seq == 40
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    // One second's worth goes at once (the burst), and the last message's debt is never waited
    // for; everything between goes at the cap.
    let floor = (bytes as f64 - CAP as f64 - last as f64) / CAP as f64;
    eprintln!("{bytes} bytes in {elapsed:.2} s (floor {floor:.2} s at {CAP} B/s)");
    assert!(
        elapsed >= floor * 0.95,
        "{bytes} bytes in {elapsed:.2} s beat the cap"
    );
    assert_eq!(exported_seqs(&store), (1..=40).collect::<Vec<_>>());
    stop(&uplink_shutdown, uplink, "uplink").await;
    stop(&receiver.shutdown, receiver.task, "receiver").await;
}

/// A rogue client on the broker: a record signed with the wrong key, a replayed old record
/// (valid signature, other chain) and garbage are rejected and kept aside, never stored, and the
/// genuine post's records still arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_and_garbage_messages_through_the_broker_are_rejected() {
    use rumqttc::{AsyncClient, MqttOptions, QoS};
    let mosquitto = MosquittoProcess::start().unwrap();
    let port = mosquitto.port();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CentralStore::open(&dir.path().join("central.db")).unwrap());
    let mut genuine = common::SealedPost::new(POST, 1);
    store
        .register_post_key(POST, &genuine.public(), "test", chrono::Utc::now())
        .unwrap();
    let receiver = start_receiver("127.0.0.1", port, &store);
    wait_until_receiver_subscribed("127.0.0.1", port, || store.rejected().unwrap().len()).await;
    let probes = store.rejected().unwrap().len();

    let mut opts = MqttOptions::new("rogue", "127.0.0.1", port);
    opts.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let pump = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let topic = bcp_record::topics::records(POST);
    let (_, first, _) = genuine.next();
    let mut impostor = common::SealedPost::new(POST, 9);
    impostor.prev = genuine.prev;
    impostor.seq = genuine.seq;
    let (_, forged, _) = impostor.next();
    let mut earlier_life = common::SealedPost::new(POST, 1);
    let (_, replayed, _) = earlier_life.next();
    for payload in [
        first.clone(),
        forged,
        replayed,
        b"\x00\x01 not a record".to_vec(),
    ] {
        client
            .publish(topic.as_str(), QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }
    wait_for("three rejections", WAIT, || {
        store.rejected().unwrap().len() == probes + 3
    })
    .await;
    let (_, second, _) = genuine.next();
    client
        .publish(topic.as_str(), QoS::AtLeastOnce, false, second)
        .await
        .unwrap();
    wait_for("the genuine records", WAIT, || {
        exported_seqs(&store) == [1, 2]
    })
    .await;
    let reasons: Vec<String> = store.rejected().unwrap()[probes..]
        .iter()
        .map(|r| r.reason.clone())
        .collect();
    assert!(reasons[0].contains("signed with key"), "{reasons:?}");
    assert!(reasons[1].contains("different hash"), "{reasons:?}");
    assert!(reasons[2].contains("not a record envelope"), "{reasons:?}");
    assert_eq!(store.export().unwrap()[0].crossing.id, {
        let env: bcp_record::RecordEnvelope = serde_json::from_slice(&first).unwrap();
        env.crossing.id
    });
    pump.abort();
    stop(&receiver.shutdown, receiver.task, "receiver").await;
}

/// Central on PostgreSQL: 2,000 records from the outbox through Mosquitto into a throw-away
/// PostgreSQL server, central stopped mid-drain and started again with a new connection. Central
/// ends with exactly the crossings the outbox created, in order, none missing, none twice, every
/// seal verifying again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_records_into_postgres_across_a_central_restart() {
    const N: u64 = 2_000;
    let db = common::TestDb::postgres();
    let mosquitto = MosquittoProcess::start().unwrap();
    let port = mosquitto.port();
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Outbox::open(&dir.path().join("outbox.db"), POST).unwrap());
    let created: Vec<_> = (1..=N as u32).map(|n| crossing(POST, n)).collect();
    for chunk in created.chunks(500) {
        outbox.append_batch(chunk, chrono::Utc::now()).unwrap();
    }

    let store = Arc::new(db.open());
    let receiver = start_receiver("127.0.0.1", port, &store);
    wait_until_receiver_subscribed("127.0.0.1", port, || store.rejected().unwrap().len()).await;
    let (uplink_shutdown, uplink_shutdown_rx) = watch::channel(false);
    let cfg = UplinkConfig {
        broker_host: "127.0.0.1".to_owned(),
        broker_port: port,
        client_id: "edge-pg".to_owned(),
        post: POST.to_owned(),
        keep_alive_secs: 5,
        // About 4 s for the whole backlog, so that central's restart falls inside the drain.
        max_bytes_per_sec: 100_000,
        ..Default::default()
    };
    let uplink = tokio::spawn(run_uplink(
        cfg,
        Arc::clone(&outbox),
        Arc::new(Notify::new()),
        uplink_shutdown_rx,
    ));
    wait_for("the first 300 records acknowledged", WAIT, || {
        outbox.stats().unwrap().last_acked_seq >= 300
    })
    .await;

    // Central stops mid-drain (its session keeps collecting records at the broker) and comes
    // back as a new process would: a new connection to the database.
    let mut newly = Vec::new();
    let mut first = receiver;
    stop(&first.shutdown, first.task, "receiver").await;
    drain(&mut first.stored, &mut newly);
    drop(store);
    let acked_at_stop = outbox.stats().unwrap().last_acked_seq;
    assert!(acked_at_stop < N, "the drain ended before central stopped");
    let store = Arc::new(db.open());
    let mut second = start_receiver("127.0.0.1", port, &store);
    wait_for("all records acknowledged", WAIT * 2, || {
        let stats = outbox.stats().unwrap();
        stats.depth == 0 && stats.last_acked_seq == N
    })
    .await;
    stop(&uplink_shutdown, uplink, "uplink").await;
    stop(&second.shutdown, second.task, "second receiver").await;
    drain(&mut second.stored, &mut newly);
    eprintln!("central stopped at ack {acked_at_stop} of {N}");

    let exported = store.export().unwrap();
    let seqs: Vec<u64> = exported.iter().map(|c| c.seq).collect();
    assert_eq!(
        seqs,
        (1..=N).collect::<Vec<_>>(),
        "none missing, none twice"
    );
    let ids: Vec<_> = exported.iter().map(|c| c.crossing.id).collect();
    assert_eq!(ids, created.iter().map(|c| c.id).collect::<Vec<_>>());
    newly.sort_unstable();
    assert_eq!(newly, (1..=N).collect::<Vec<_>>(), "each stored once");
    let report = store.verify_all().unwrap();
    assert_eq!((report.checked, report.problems.len()), (N, 0));
    let posts = store.posts().unwrap();
    let post = posts.iter().find(|p| p.post == POST).unwrap();
    assert_eq!((post.stored, post.contiguous_up_to), (N, N));
    assert!(post.gaps.is_empty());
}
