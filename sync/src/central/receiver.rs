//! # The receiver: records from every post into the [`CentralStore`], acks back
//!
//! Speaks MQTT 5 and subscribes to `topics::records_all()` as a **shared subscription**
//! (`$share/<group>/bcp/v1/+/records`, group [`ReceiverConfig::share_group`], by default
//! [`DEFAULT_SHARE_GROUP`]): the broker hands each message to one receiver of the group, so
//! several central instances on one store split the posts' load, and one instance alone gets
//! everything. It also subscribes, unshared, to `topics::status_all()` (the posts' retained status
//! messages, kept by [`CentralStore::record_status`]; retained messages are not sent to shared
//! subscriptions). Both at QoS 1 under a persistent session (`clean_start = false` with a session
//! expiry, [`link::SESSION_EXPIRY`]: the broker queues records while central is down). Each
//! message is handled in this order:
//!
//! 1. [`CentralStore::receive`]: the post comes from the topic; the payload must be a sealed
//!    `RecordEnvelope` of that post whose hash, signature, key and chain hold. It is stored (one
//!    committed transaction), recognised as a duplicate, or rejected: logged at WARN with the
//!    reason and kept in the `rejected` table, never stored as good.
//! 2. Publish `Ack { post, up_to_seq }` on `topics::ack(post)` at QoS 1, also for duplicates and
//!    rejections (the position does not move for those), so that a post whose ack was lost gets
//!    it again when it resends.
//! 3. Only then PUBACK the message to the broker (manual acks). If central dies between receiving
//!    and committing, the broker still holds the message and delivers it again.
//!
//! The hash and signature checks of step 1 need no database ([`CentralStore::open_message`]):
//! when the next records message is already waiting, its checks start on another thread while
//! the current one is stored ([`CentralStore::store_opened`]), so the receiver's checks and the
//! database's commit share the cores instead of taking turns (a backlog drains 20-25 % faster).
//! Storing, acks and PUBACKs stay one message at a time, in the order received; the message
//! looked at ahead is acknowledged only in its turn, as if it had waited in the channel.
//!
//! ## Images: a second connection, shared too
//! Images (`topics::blobs_all()`) and eviction notices (`topics::blob_evicted_all()`) are split
//! between the instances like the records, on a **second MQTT connection** of each instance
//! (client id [`ReceiverConfig::images_client_id`], `<client_id>-images`, persistent session as
//! above) with two more shared subscriptions, each in **its own group**:
//! `$share/<group>-images/bcp/v1/+/blobs/+` ([`ReceiverConfig::images_filter`]) and
//! `$share/<group>-evictions/bcp/v1/+/blob-evicted` ([`ReceiverConfig::evictions_filter`]).
//! Why so:
//! - rumqttd 0.20 keeps one delivery cursor per shared *group name*, whatever the filter: two
//!   filters in one group (records and images both in `bcp-central`) share a cursor and lose
//!   messages. A group per filter gives each its own cursor (Mosquitto keys shared
//!   subscriptions by group and filter, so the names cost nothing there).
//! - The own connection gives images (up to a megabyte each) their own TCP stream and in-flight
//!   window: a burst of images never holds back the records' acks, and the other way round.
//!
//! Each image goes to [`super::blobs`]: checked against its hash, written durably (fsync,
//! rename) beside the database ([`ReceiverConfig::blob_dir`]), and only then acknowledged with a
//! `BlobAck` on `topics::blob_ack(post)` and PUBACKed to the broker (an instance that dies
//! before that leaves the image with the broker, which hands it to another member of the group).
//! An instance still receiving images on its records connection (a persistent session from a
//! version that subscribed them unshared there) handles them the same way, and on resuming a
//! session unsubscribes those unshared filters. Mosquitto drops them; rumqttd 0.20 does not
//! (it restores a resumed session's subscriptions without the index its UNSUBSCRIBE looks in),
//! so there such an instance keeps taking every image, correctly stored, until the session ends
//! (the embedded broker's sessions end with its process, so with an upgrade of central).
//! [`ReceiverStats`] counts this instance's share of the images.
//!
//! A failing store (disk full, I/O error) is not acknowledged and ends [`run_receiver`] with the
//! error: it needs an operator, and the unacknowledged messages stay with the broker and posts.
//!
//! Several instances may store into the same database: each computes the ack from what is
//! committed (the contiguous prefix), so whichever stores the record that closes a gap
//! acknowledges the whole prefix.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bcp_record::{topics, Ack, PostStatus};
use chrono::{SubsecRound as _, Utc};
use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::AsyncClient;
use tokio::sync::{mpsc, watch};

use super::blobs::{blob_dir_for, handle_blob_message, CentralBlobs};
use super::store::{CentralStore, OpenedMessage, Outcome, StoredCrossing};
use crate::link::{self, LinkEvent};

/// Keep-alive of the receiver's MQTT connection.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// The shared-subscription group of central's receivers unless configured otherwise.
pub const DEFAULT_SHARE_GROUP: &str = "bcp-central";

/// Where central's receiver connects.
#[derive(Debug, Clone, Default)]
pub struct ReceiverConfig {
    pub broker_host: String,
    /// The broker's MQTT 5 port (the embedded broker's [`crate::EmbeddedBroker::v5_addr`]).
    pub broker_port: u16,
    /// Must be stable across restarts and unique per instance: the broker keeps the persistent
    /// session under it.
    pub client_id: String,
    /// TLS to the broker (`None`: plain TCP).
    pub tls: Option<link::TlsFiles>,
    /// The shared-subscription group; instances of one group split the records (empty:
    /// [`DEFAULT_SHARE_GROUP`]).
    pub share_group: String,
    /// Where the posts' images are kept (`None`: `<db>.blobs`, beside the store's file).
    pub blob_dir: Option<std::path::PathBuf>,
}

impl ReceiverConfig {
    /// The records filter as this instance subscribes to it.
    pub fn records_filter(&self) -> String {
        self.shared(&topics::records_all())
    }

    /// The images filter, on the images connection (its own group: see the module docs).
    pub fn images_filter(&self) -> String {
        format!("$share/{}-images/{}", self.group(), topics::blobs_all())
    }

    /// The eviction notices filter, on the images connection (its own group).
    pub fn evictions_filter(&self) -> String {
        format!(
            "$share/{}-evictions/{}",
            self.group(),
            topics::blob_evicted_all()
        )
    }

    /// The client id of this instance's images connection: `<client_id>-images`.
    pub fn images_client_id(&self) -> String {
        format!("{}-images", self.client_id)
    }

    /// `filter` as a shared subscription of this instance's group.
    pub fn shared(&self, filter: &str) -> String {
        format!("$share/{}/{filter}", self.group())
    }

    fn group(&self) -> &str {
        if self.share_group.is_empty() {
            DEFAULT_SHARE_GROUP
        } else {
            &self.share_group
        }
    }
}

/// What one receiver handled (since it started): logged when it stops and returned by
/// [`run_receiver`]. With a shared subscription, `records` shows this instance's share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReceiverStats {
    /// Record messages (batches) taken from the broker.
    pub messages: u64,
    /// Records in them.
    pub records: u64,
    /// Records newly stored.
    pub stored: u64,
    /// Records the store already had (resends), acknowledged again.
    pub duplicates: u64,
    /// Records or messages rejected and kept aside.
    pub rejected: u64,
    /// Image messages taken from the broker (this instance's share).
    pub images: u64,
    /// Images newly written to the blob directory.
    pub images_written: u64,
    /// Images the directory already held (a resend), acknowledged again.
    pub images_already_held: u64,
    /// Images whose bytes did not match their hash: not stored, not acknowledged.
    pub images_refused: u64,
    /// Eviction notices noted and acknowledged.
    pub eviction_notices: u64,
}

/// Receives records until `shutdown` becomes true (or its sender is dropped). Each newly stored
/// crossing is also sent on `stored` (a closed channel is not an error).
pub async fn run_receiver(
    cfg: ReceiverConfig,
    store: Arc<CentralStore>,
    stored: mpsc::UnboundedSender<StoredCrossing>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<ReceiverStats> {
    let broker = format!("{}:{}", cfg.broker_host, cfg.broker_port);
    tracing::info!(%broker, client_id = %cfg.client_id, db = %store.location(), "receiver starting");
    let (client, mut rx, pump) = connect(&cfg, &cfg.client_id, "receiver", &broker)?;
    let images_client_id = cfg.images_client_id();
    let (images_client, mut images_rx, images_pump) =
        connect(&cfg, &images_client_id, "receiver-images", &broker)?;
    let filter = cfg.records_filter();
    let mut stats = ReceiverStats::default();
    let status_filter = topics::status_all();
    let (images_filter, evictions_filter) = (cfg.images_filter(), cfg.evictions_filter());
    let blobs = CentralBlobs::new(
        cfg.blob_dir
            .clone()
            .unwrap_or_else(|| blob_dir_for(store.location())),
    );

    // A records message taken from `rx` ahead of its turn, and the opening of its records,
    // started on another thread while the message before it is stored (see `Ahead`).
    let mut pending: Option<LinkEvent<Publish>> = None;
    let mut ahead: Option<Ahead> = None;
    let result = async {
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let event = match pending.take() {
                Some(event) => Event::Records(Some(event)),
                None => tokio::select! {
                    event = rx.recv() => Event::Records(event),
                    event = images_rx.recv() => Event::Images(event),
                    changed = shutdown.changed() => {
                        if changed.is_err() {
                            return Ok(());
                        }
                        continue;
                    }
                },
            };
            match event {
                Event::Records(event) => match event {
                    None | Some(LinkEvent::Disconnected) => {
                        anyhow::bail!("receiver on {broker}: the MQTT event loop stopped")
                    }
                    Some(LinkEvent::Connected { session_present }) => {
                        tracing::debug!(session_present, %filter, "receiver: (re)subscribing");
                        if session_present {
                            // A session from a version that took images here, unshared.
                            for legacy in [topics::blobs_all(), topics::blob_evicted_all()] {
                                client
                                    .unsubscribe(legacy.as_str())
                                    .await
                                    .with_context(|| format!("unsubscribing {legacy}"))?;
                            }
                        }
                        for (f, what) in [(&filter, "records"), (&status_filter, "status")] {
                            client
                                .subscribe(f.as_str(), QoS::AtLeastOnce)
                                .await
                                .with_context(|| format!("subscribing to {f} ({what})"))?;
                        }
                    }
                    Some(LinkEvent::Message(publish)) => {
                        if topics::post_of_status_topic(&topic_of(&publish)).is_some() {
                            handle_status(&client, &store, publish).await?;
                        } else if handle_blob_message(&client, &blobs, &publish, &mut stats).await? {
                            // an image or an eviction notice left in an older session
                        } else {
                            let opened = match ahead.take() {
                                Some(a) => a.opened(&publish).await,
                                None => CentralStore::open_message(&topic_of(&publish), &publish.payload),
                            };
                            // Look ahead: the next records message is opened while this one is
                            // stored. It stays unacknowledged until its turn, as it would
                            // waiting in the channel.
                            if let Ok(next) = rx.try_recv() {
                                ahead = Ahead::start(&next);
                                pending = Some(next);
                            }
                            handle_record(&client, &store, &stored, &publish, opened, &mut stats).await?;
                        }
                    }
                    Some(LinkEvent::ConnectionLost | LinkEvent::Progress) => {}
                },
                Event::Images(event) => match event {
                    None | Some(LinkEvent::Disconnected) => {
                        anyhow::bail!("receiver (images) on {broker}: the MQTT event loop stopped")
                    }
                    Some(LinkEvent::Connected { session_present }) => {
                        tracing::debug!(session_present, %images_filter, %evictions_filter, "receiver: (re)subscribing the images");
                        for f in [&images_filter, &evictions_filter] {
                            images_client
                                .subscribe(f.as_str(), QoS::AtLeastOnce)
                                .await
                                .with_context(|| format!("subscribing to {f}"))?;
                        }
                    }
                    Some(LinkEvent::Message(publish)) => {
                        if !handle_blob_message(&images_client, &blobs, &publish, &mut stats).await? {
                            tracing::warn!(topic = %topic_of(&publish), "unexpected message on the images connection ignored");
                            images_client
                                .ack(&publish)
                                .await
                                .context("queueing the PUBACK to the broker")?;
                        }
                    }
                    Some(LinkEvent::ConnectionLost | LinkEvent::Progress) => {}
                },
            }
        }
    }
    .await;

    for (c, rx, pump) in [
        (&client, &mut rx, pump),
        (&images_client, &mut images_rx, images_pump),
    ] {
        if let Err(error) = c.try_disconnect() {
            tracing::debug!(%error, "receiver: could not queue DISCONNECT");
        }
        link::drain_until_disconnected(rx).await;
        pump.abort();
    }
    drop((rx, images_rx));
    tracing::info!(%broker, ?stats, "receiver stopped");
    result.map(|()| stats)
}

/// One MQTT 5 connection of the receiver: persistent session, manual acks, TLS if configured;
/// its event pump labelled `name`.
fn connect(
    cfg: &ReceiverConfig,
    client_id: &str,
    name: &'static str,
    broker: &str,
) -> anyhow::Result<(
    AsyncClient,
    mpsc::UnboundedReceiver<LinkEvent<Publish>>,
    tokio::task::JoinHandle<()>,
)> {
    let mut opts = link::mqtt5_options(client_id, &cfg.broker_host, cfg.broker_port, KEEP_ALIVE);
    opts.set_manual_acks(true);
    if let Some(tls) = &cfg.tls {
        opts.set_transport(link::tls_transport(tls)?);
    }
    let (client, eventloop) = AsyncClient::new(opts, 64);
    let (tx, rx) = mpsc::unbounded_channel();
    let pump = link::spawn_event_pump(eventloop, name, broker.to_owned(), tx);
    Ok((client, rx, pump))
}

/// What the receiver waits on next.
enum Event {
    Records(Option<LinkEvent<Publish>>),
    Images(Option<LinkEvent<Publish>>),
}

/// The opening of a records message taken from the channel ahead of its turn
/// ([`CentralStore::open_message`] on a blocking thread): hash and signature checks need no
/// database, so they run while the message before it is stored (the two share the cores with
/// the database server instead of taking turns).
struct Ahead {
    pkid: u16,
    opening: tokio::task::JoinHandle<OpenedMessage>,
}

impl Ahead {
    /// Starts opening `event` if it is a message on a records topic.
    fn start(event: &LinkEvent<Publish>) -> Option<Self> {
        let LinkEvent::Message(publish) = event else {
            return None;
        };
        let topic = topic_of(publish);
        topics::post_of_records_topic(&topic)?;
        let payload = publish.payload.clone();
        Some(Self {
            pkid: publish.pkid,
            opening: tokio::task::spawn_blocking(move || {
                CentralStore::open_message(&topic, &payload)
            }),
        })
    }

    /// The opened `publish` (opened again here if the opening was of another message or failed).
    async fn opened(self, publish: &Publish) -> OpenedMessage {
        let topic = topic_of(publish);
        if self.pkid == publish.pkid {
            match self.opening.await {
                Ok(opened) => return opened,
                Err(error) => {
                    tracing::error!(%error, %topic, "opening a message ahead failed; opening it again")
                }
            }
        }
        CentralStore::open_message(&topic, &publish.payload)
    }
}

/// Stores and acknowledges one opened message (a batch or a single record).
async fn handle_record(
    client: &AsyncClient,
    store: &CentralStore,
    stored: &mpsc::UnboundedSender<StoredCrossing>,
    publish: &Publish,
    opened: OpenedMessage,
    stats: &mut ReceiverStats,
) -> anyhow::Result<()> {
    // Stored with microseconds: truncate so that what is sent on `stored` equals the export.
    let received_at = Utc::now().trunc_subsecs(6);
    let topic = &topic_of(publish);
    let received = store
        .store_opened(opened, received_at)
        .with_context(|| format!("storing a message from {topic}"))?;
    stats.messages += 1;
    for outcome in &received.outcomes {
        stats.records += 1;
        match outcome {
            Outcome::Rejected(reason) => {
                stats.rejected += 1;
                tracing::warn!(%topic, %reason, bytes = publish.payload.len(), "record rejected and kept aside in the rejected table");
            }
            Outcome::Duplicate => {
                stats.duplicates += 1;
                tracing::debug!(%topic, ack_up_to = received.ack_up_to, "duplicate record acknowledged again");
            }
            Outcome::Stored { crossing, .. } => {
                stats.stored += 1;
                tracing::debug!(post = %crossing.post, seq = crossing.seq, ack_up_to = received.ack_up_to, "record stored");
            }
        }
    }
    if let (Some(post), true) = (&received.post, received.ack_up_to > 0) {
        let ack = Ack {
            post: post.clone(),
            up_to_seq: received.ack_up_to,
        };
        let payload = serde_json::to_vec(&ack).context("encoding an ack")?;
        client
            .publish(topics::ack(post), QoS::AtLeastOnce, false, payload)
            .await
            .with_context(|| format!("queueing the ack for {post}"))?;
    }
    for outcome in received.outcomes {
        if let Outcome::Stored { crossing, .. } = outcome {
            // Nobody listening is fine: the store is the record of truth.
            let _ = stored.send(*crossing);
        }
    }
    client
        .ack(publish)
        .await
        .context("queueing the PUBACK to the broker")?;
    Ok(())
}

/// Keeps a post's status message; one that does not parse is logged and dropped (it carries no
/// evidence, and the next heartbeat replaces it).
async fn handle_status(
    client: &AsyncClient,
    store: &CentralStore,
    publish: Publish,
) -> anyhow::Result<()> {
    let topic = &topic_of(&publish);
    let post = topics::post_of_status_topic(topic).unwrap_or_default();
    match serde_json::from_slice::<PostStatus>(&publish.payload) {
        Ok(status) if status.post == post => {
            tracing::debug!(post, state = ?status.state, depth = ?status.depth, "post status");
            store
                .record_status(&status, Utc::now())
                .with_context(|| format!("keeping the status of {post}"))?;
        }
        Ok(status) => {
            tracing::warn!(%topic, claimed = %status.post, "status message for another post ignored");
        }
        Err(error) => {
            tracing::warn!(%topic, %error, "malformed status message ignored");
        }
    }
    client
        .ack(&publish)
        .await
        .context("queueing the PUBACK to the broker")?;
    Ok(())
}

/// An MQTT 5 topic is bytes on the wire; ours are UTF-8 (a broker forwards only valid UTF-8
/// topics, MQTT 5 section 1.5.4), and anything else becomes a topic no post has.
fn topic_of(publish: &Publish) -> String {
    String::from_utf8_lossy(&publish.topic).into_owned()
}
