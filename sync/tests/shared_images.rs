//! Two central receivers in one shared-subscription group, storing into one database and one
//! blob directory, split a post's images between them (each on its own images connection, see
//! `central::receiver`). Central must end with every image stored once with its bytes, every
//! image acknowledged to the post, and each instance must have taken a share: without sharing,
//! each instance would take every image. Through Mosquitto and through the embedded rumqttd.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bcp_record::ImageKind;
use bcp_sync::central::blobs::{default_blob_dir, CentralBlobs, ImageState};
use bcp_sync::outbox::ImageData;
use bcp_sync::{
    run_receiver, run_uplink, start_embedded, CentralStore, MosquittoProcess, Outbox,
    ReceiverConfig, ReceiverStats, UplinkConfig,
};
use common::{crossing, wait_for, wait_until_receiver_subscribed, POST};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

/// Enough that round-robin or random sharing gives both instances some.
const IMAGES: u32 = 120;
const IMAGE_BYTES: usize = 16 * 1024;

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

struct Instance {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<ReceiverStats>>,
}

fn start_instance(port: u16, db: &Path, client_id: &str) -> Instance {
    let store = Arc::new(CentralStore::open(db).unwrap());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (tx, _stored) = mpsc::unbounded_channel();
    let cfg = ReceiverConfig {
        broker_host: "127.0.0.1".into(),
        broker_port: port,
        client_id: client_id.into(),
        share_group: "central-test".into(),
        ..Default::default()
    };
    let task = tokio::spawn(run_receiver(cfg, store, tx, shutdown_rx));
    Instance { shutdown, task }
}

impl Instance {
    async fn stop(self) -> ReceiverStats {
        let _ = self.shutdown.send(true); // a receiver that ended early reports why below
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("a receiver did not stop")
            .unwrap()
            .unwrap()
    }
}

/// What the broker does with instance a's images.
#[derive(Clone, Copy, PartialEq)]
enum ForA {
    /// Its share of them.
    Share,
    /// Every one of them on top (an unshared subscription left in its session that the broker
    /// does not drop on UNSUBSCRIBE: rumqttd 0.20 after a session resume).
    EveryImage,
}

/// The post's uplink to the broker on `port`, woken at once; stop it with the sender.
fn start_uplink(
    port: u16,
    client_id: &str,
    outbox: &Arc<Outbox>,
) -> (watch::Sender<bool>, JoinHandle<anyhow::Result<()>>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let notify = Arc::new(Notify::new());
    let uplink = tokio::spawn(run_uplink(
        UplinkConfig {
            broker_host: "127.0.0.1".into(),
            broker_port: port,
            client_id: client_id.into(),
            post: POST.into(),
            ..Default::default()
        },
        Arc::clone(outbox),
        Arc::clone(&notify),
        stop_rx,
    ));
    notify.notify_one();
    (stop_tx, uplink)
}

/// `port`: where the post connects; `central_port`: the MQTT 5 listener of the same broker.
async fn two_instances_split_the_images(port: u16, central_port: u16, for_a: ForA) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("central.db");
    let outbox = Arc::new(Outbox::open(&dir.path().join("outbox.db"), POST).unwrap());
    let view = CentralStore::open(&db).unwrap();

    let a = start_instance(central_port, &db, "central-a");
    let b = start_instance(central_port, &db, "central-b");
    wait_until_receiver_subscribed("127.0.0.1", port, || view.rejected().unwrap().len()).await;

    let mut created = Vec::new();
    for n in 1..=IMAGES {
        let bytes = image(n);
        let c = crossing(POST, n);
        outbox
            .append_with_images(
                &c,
                &[ImageData {
                    kind: ImageKind::Overview,
                    media_type: "image/jpeg",
                    bytes: &bytes,
                }],
            )
            .unwrap();
        created.push(bytes);
    }

    let (stop_tx, uplink) = start_uplink(port, "edge-images-shared", &outbox);
    // An image sent before an instance's images connection subscribed is sent again by the
    // post after `ACK_RESEND_AFTER`.
    let limit = bcp_sync::uplink::ACK_RESEND_AFTER * 3 + Duration::from_secs(60);
    wait_for("every record and image acknowledged", limit, || {
        let s = outbox.stats().unwrap();
        s.depth == 0 && s.blobs_pending == 0
    })
    .await;
    stop_tx.send(true).unwrap();
    uplink.await.unwrap().unwrap();
    let (a, b) = (a.stop().await, b.stop().await);
    eprintln!("shared_images: instance a {a:?}, instance b {b:?}");

    // Every image at central with its bytes, and the post knows (its BlobAck came back).
    let blobs = CentralBlobs::new(default_blob_dir(&db));
    let exported = view.export().unwrap();
    assert_eq!(exported.len(), IMAGES as usize);
    for (c, bytes) in exported.iter().zip(&created) {
        let image = &c.crossing.images[0];
        assert_eq!(image.sha256, bcp_sync::blobs::sha256_hex(bytes));
        assert_eq!(blobs.state(image), ImageState::Stored, "seq {}", c.seq);
        assert_eq!(&blobs.dir().get(&image.sha256).unwrap(), bytes);
        assert!(outbox.blob_state(&image.sha256).unwrap().unwrap().synced);
    }

    assert_eq!(a.images_refused + b.images_refused, 0);
    let (images, written) = (u64::from(IMAGES), a.images_written + b.images_written);
    let taken = a.images + b.images;
    match for_a {
        ForA::Share => {
            // Each image written once, by one of the two.
            assert_eq!(written, images, "an image was written twice or not at all");
            // The split: unshared, each instance would take every image (2 × IMAGES in all);
            // shared, each image goes to one member of the group (resends aside).
            assert!(
                taken < images + images / 4,
                "{taken} image messages for {IMAGES} images: the images were not split"
            );
            assert!(
                a.images_written > 0 && b.images_written > 0,
                "the group did not split the images: a {a:?}, b {b:?}"
            );
        }
        ForA::EveryImage => {
            // Still nothing lost: b takes its share, a every image (each stored or found held).
            assert!(written >= images, "{written} written");
            assert!(a.images >= images, "a {a:?}");
            assert!(b.images > 0, "b took no share: {b:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_receivers_share_the_images_through_mosquitto() {
    let mosquitto = MosquittoProcess::start().unwrap();
    two_instances_split_the_images(mosquitto.port(), mosquitto.port(), ForA::Share).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_receivers_share_the_images_through_embedded_rumqttd() {
    let broker = start_embedded(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    two_instances_split_the_images(broker.addr().port(), broker.v5_addr().port(), ForA::Share)
        .await;
}

/// What an older central left at the broker: a persistent session under `client_id` with the
/// image filters subscribed unshared (every instance took every image).
async fn leave_a_legacy_session(port: u16, client_id: &str) {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_clean_start(false)
        .set_session_expiry_interval(Some(3600));
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    for filter in [
        bcp_record::topics::blobs_all(),
        bcp_record::topics::blob_evicted_all(),
    ] {
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    }
    let mut subacks = 0;
    let mut refused = 0;
    while subacks < 2 {
        let event = tokio::time::timeout(Duration::from_secs(10), eventloop.poll())
            .await
            .expect("no SUBACK from the broker");
        // Twice in CI (never alone) the first connection to a just-started rumqttd was
        // refused although its readiness probe had connected: connect again, as central does,
        // and say what a plain TCP connection finds if it never gets through.
        let event = match event {
            Err(rumqttc::v5::ConnectionError::Io(e))
                if e.kind() == std::io::ErrorKind::ConnectionRefused && refused < 50 =>
            {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => panic!(
                "{e} after {refused} refused connections; a TCP connection to port {port} now: {:?}",
                std::net::TcpStream::connect(("127.0.0.1", port)).map(|_| "accepted")
            ),
            Ok(event) => event,
        };
        if let Event::Incoming(Packet::SubAck(_)) = event {
            subacks += 1;
        }
    }
    if refused > 0 {
        eprintln!("leave_a_legacy_session: port {port} refused {refused} connection(s) first");
    }
    client.disconnect().await.unwrap();
    while eventloop.poll().await.is_ok() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unshared_image_subscription_left_by_an_older_central_is_dropped_mosquitto() {
    let mosquitto = MosquittoProcess::start().unwrap();
    leave_a_legacy_session(mosquitto.port(), "central-a").await;
    // Instance a resumes that session: were the unshared filters kept, it would take every
    // image on top of its share and the split assertion would fail.
    two_instances_split_the_images(mosquitto.port(), mosquitto.port(), ForA::Share).await;
}

/// rumqttd 0.20 restores a resumed session's subscriptions without the index its UNSUBSCRIBE
/// looks in, so the unshared filters stay until the session ends (the embedded broker's
/// sessions end with the process, and so with an upgrade of central). What still holds:
/// nothing lost, every image stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unshared_image_subscription_left_by_an_older_central_stays_on_rumqttd_nothing_lost() {
    let broker = start_embedded(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    leave_a_legacy_session(broker.v5_addr().port(), "central-a").await;
    two_instances_split_the_images(
        broker.addr().port(),
        broker.v5_addr().port(),
        ForA::EveryImage,
    )
    .await;
}

/// Eviction notices are split too (their own group on the images connection): a post whose disk
/// budget evicted images before it could send them tells central, and each notice is noted by
/// one of the two instances.
async fn two_instances_split_the_eviction_notices(port: u16, central_port: u16) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("central.db");
    let outbox = Arc::new(Outbox::open(&dir.path().join("outbox.db"), POST).unwrap());
    outbox.set_budget_bytes(1024 * 1024).unwrap();
    // The link is down: the budget evicts images (oldest first) to make room for new ones.
    for n in 1..=IMAGES {
        let bytes = image(n);
        outbox
            .append_with_images(
                &crossing(POST, n),
                &[ImageData {
                    kind: ImageKind::Overview,
                    media_type: "image/jpeg",
                    bytes: &bytes,
                }],
            )
            .unwrap();
    }
    let evicted = outbox.pending_eviction_notices(100_000).unwrap().len() as u64;
    assert!(
        evicted >= 20,
        "only {evicted} images evicted: too few to see a split"
    );

    let view = CentralStore::open(&db).unwrap();
    let a = start_instance(central_port, &db, "central-a");
    let b = start_instance(central_port, &db, "central-b");
    wait_until_receiver_subscribed("127.0.0.1", port, || view.rejected().unwrap().len()).await;
    let (stop_tx, uplink) = start_uplink(port, "edge-evictions-shared", &outbox);
    let limit = bcp_sync::uplink::ACK_RESEND_AFTER * 3 + Duration::from_secs(60);
    let mut uplink = uplink;
    let drained = wait_for("every record, image and notice acknowledged", limit, || {
        let s = outbox.stats().unwrap();
        s.depth == 0
            && s.blobs_pending == 0
            && outbox.pending_eviction_notices(1).unwrap().is_empty()
    });
    tokio::select! {
        () = drained => {}
        ended = &mut uplink => panic!("the uplink ended early: {ended:?}"),
    }
    stop_tx.send(true).unwrap();
    uplink.await.unwrap().unwrap();
    let (a, b) = (a.stop().await, b.stop().await);
    eprintln!("shared_images: {evicted} evicted; instance a {a:?}, instance b {b:?}");

    let blobs = CentralBlobs::new(default_blob_dir(&db));
    let mut noted = 0;
    for c in view.export().unwrap() {
        match blobs.state(&c.crossing.images[0]) {
            ImageState::Stored => {}
            ImageState::EvictedAtPost { .. } => noted += 1,
            ImageState::Pending => panic!("seq {}: image neither stored nor noted", c.seq),
        }
    }
    assert_eq!(noted, evicted, "every eviction noted at central");
    let notices = a.eviction_notices + b.eviction_notices;
    assert!(
        notices >= evicted && notices < evicted + evicted / 4,
        "{notices} notices handled for {evicted} evictions: not split"
    );
    assert!(
        a.eviction_notices > 0 && b.eviction_notices > 0,
        "the group did not split the notices: a {a:?}, b {b:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_receivers_share_the_eviction_notices_through_mosquitto() {
    let mosquitto = MosquittoProcess::start().unwrap();
    two_instances_split_the_eviction_notices(mosquitto.port(), mosquitto.port()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_receivers_share_the_eviction_notices_through_embedded_rumqttd() {
    let broker = start_embedded(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    two_instances_split_the_eviction_notices(broker.addr().port(), broker.v5_addr().port()).await;
}
