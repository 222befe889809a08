//! 200 link cuts during a 10,000-record run: the post reaches the broker through a TCP proxy
//! that, each time the post has reconnected and sent for 20-80 ms, kills every connection
//! through it (and, most times, refuses new ones for up to 30 ms). Central must end with exactly the records the post created, none twice.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bcp_sync::{
    run_receiver, run_uplink, start_embedded, CentralStore, Outbox, ReceiverConfig, UplinkConfig,
};
use common::{crossing, wait_for, wait_until_receiver_subscribed, POST};
use rand::{Rng as _, SeedableRng as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

const RECORDS: u32 = 10_000;
const CUTS: usize = 200;

/// A TCP proxy whose connections can all be cut at once.
struct Proxy {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    down: Arc<AtomicBool>,
    /// Connections carried (not refused), to prove the cuts bit.
    carried: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let down = Arc::new(AtomicBool::new(false));
        let carried = Arc::new(AtomicUsize::new(0));
        let (c, d, k) = (Arc::clone(&conns), Arc::clone(&down), Arc::clone(&carried));
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if d.load(Ordering::SeqCst) {
                    continue; // the link is down: the connection is dropped at once
                }
                k.fetch_add(1, Ordering::SeqCst);
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                c.lock().unwrap().push(task);
            }
        });
        Self {
            addr,
            conns,
            down,
            carried,
            accept,
        }
    }

    /// Kills every connection through the proxy; new ones are refused while `down`.
    fn cut(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        for task in self.conns.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut(true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_link_cuts_during_ten_thousand_records_lose_and_double_nothing() {
    let seed: u64 = rand::random();
    eprintln!("link_cuts: seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let broker = start_embedded(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let proxy = Proxy::start(broker.addr()).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Outbox::open(&dir.path().join("outbox.db"), POST).unwrap());
    let store = Arc::new(CentralStore::open(&dir.path().join("central.db")).unwrap());
    let host = "127.0.0.1";

    let (stop_tx, stop_rx) = watch::channel(false);
    let (stored_tx, mut stored_rx) = mpsc::unbounded_channel();
    let receiver = tokio::spawn(run_receiver(
        ReceiverConfig {
            broker_host: host.into(),
            broker_port: broker.addr().port(),
            client_id: "central-cuts".into(),
            ..Default::default()
        },
        Arc::clone(&store),
        stored_tx,
        stop_rx.clone(),
    ));
    wait_until_receiver_subscribed(host, broker.addr().port(), || {
        store.rejected().unwrap().len()
    })
    .await;
    let counter = tokio::spawn(async move {
        let mut n = 0u64;
        while stored_rx.recv().await.is_some() {
            n += 1;
        }
        n
    });

    let notify = Arc::new(Notify::new());
    let uplink = tokio::spawn(run_uplink(
        UplinkConfig {
            broker_host: host.into(),
            broker_port: proxy.addr.port(),
            client_id: "edge-cuts".into(),
            post: POST.into(),
            keep_alive_secs: 5,
            max_in_flight: 500,
            batch_max_records: 50,
            ..Default::default()
        },
        Arc::clone(&outbox),
        Arc::clone(&notify),
        stop_rx,
    ));

    // The lane: batches of crossings at a steady pace while the link is cut again and again.
    let lane_outbox = Arc::clone(&outbox);
    let lane_notify = Arc::clone(&notify);
    let lane = tokio::spawn(async move {
        let mut n = 0;
        while n < RECORDS {
            let batch: Vec<_> = (0..50.min(RECORDS - n))
                .map(|i| crossing(POST, n + i + 1))
                .collect();
            n += batch.len() as u32;
            lane_outbox
                .append_batch(&batch, chrono::Utc::now())
                .unwrap();
            lane_notify.notify_one();
            // ~30 s for the whole run: about as long as the 200 cuts take.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    });
    // Each cut hits a live connection: wait for the post to reconnect (its backoff), let the
    // link carry traffic for a moment, cut.
    // `before` is read just before each cut, so a post that connected before the first
    // iteration (it may be that quick) is not waited for a second time.
    let mut before = 0;
    for _ in 0..CUTS {
        wait_for("the post to reconnect", Duration::from_secs(30), || {
            proxy.carried.load(Ordering::SeqCst) > before
        })
        .await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..80))).await;
        let down_for = rng.random_range(0..30);
        before = proxy.carried.load(Ordering::SeqCst);
        proxy.cut(down_for > 0);
        tokio::time::sleep(Duration::from_millis(down_for)).await;
        proxy.down.store(false, Ordering::SeqCst);
    }
    let appended_during_cuts = outbox.stats().unwrap().last_seq;
    eprintln!("link_cuts: {appended_during_cuts} records appended while the link was being cut");
    lane.await.unwrap();
    let carried = proxy.carried.load(Ordering::SeqCst);
    eprintln!("link_cuts: {carried} connections carried through {CUTS} cuts");
    assert!(carried >= CUTS, "only {carried} connections");
    let limit = bcp_sync::uplink::ACK_RESEND_AFTER + Duration::from_secs(60);
    wait_for("every record acknowledged", limit, || {
        outbox.stats().unwrap().last_acked_seq == u64::from(RECORDS)
    })
    .await;

    assert_eq!(outbox.verify_chain().unwrap().first_bad, None);
    let created: Vec<(u64, uuid::Uuid)> = {
        let conn = rusqlite::Connection::open(dir.path().join("outbox.db")).unwrap();
        let mut stmt = conn
            .prepare("SELECT seq, uuid FROM outbox ORDER BY seq")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .unwrap()
            .map(|r| {
                let (seq, id) = r.unwrap();
                (seq as u64, id.parse().unwrap())
            })
            .collect()
    };
    let stored: Vec<(u64, uuid::Uuid)> = store
        .export()
        .unwrap()
        .iter()
        .map(|c| (c.seq, c.crossing.id))
        .collect();
    assert_eq!(created.len(), RECORDS as usize);
    assert_eq!(
        stored, created,
        "central differs from what the post created"
    );

    stop_tx.send(true).unwrap();
    uplink.await.unwrap().unwrap();
    receiver.await.unwrap().unwrap();
    assert_eq!(
        counter.await.unwrap(),
        u64::from(RECORDS),
        "a record was stored twice"
    );
}
