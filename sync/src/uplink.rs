//! # Uplink: from the outbox to central, over MQTT
//!
//! [`run_uplink`] is a short driver around [`DeliveryTracker`], which holds all the decisions:
//!
//! 1. Connect with a persistent session (`clean_session = false`, TCP_NODELAY) and, on every
//!    CONNACK, subscribe to `topics::ack(post)` at QoS 1 and rewind to the last acknowledged seq.
//! 2. Publish the outbox's pending records in seq order (after a long outage, live records
//!    interleaved with the backlog: see [`DeliveryTracker`]), in batches ([`crate::wire`]: compact
//!    seals, zstd) on `topics::records(post)` at QoS 1, at most `max_in_flight` records beyond
//!    the last ack. A batch goes when it holds `batch_max_records` or when its first record has
//!    waited `batch_linger_ms` ([`Batcher`]), and no faster than `max_bytes_per_sec` on a slow
//!    link ([`RateLimit`]); under such a cap a batch is made small enough to go in a few seconds
//!    ([`effective_batch_records`]), so that its ack comes well inside [`ACK_RESEND_AFTER`].
//! 3. Mark records delivered in the outbox **only** when an [`Ack`] arrives on the ack topic. A
//!    broker PUBACK proves only that the broker has the message, not that central committed it.
//! 4. Wake when a lane appends a record (`new_record`), when an ack or any other MQTT event
//!    arrives, and when the tracker's ack timeout is due ([`ACK_RESEND_AFTER`]).
//! 5. Status, retained on `topics::status(post)`: a birth message on every CONNACK, a heartbeat
//!    every `heartbeat_secs` (queue depth, oldest unsynced age, positions, outbox bytes, and the
//!    lane's device health from [`UplinkConfig::devices`]), an
//!    `offline` message at clean shutdown, and the same as MQTT last will for an unclean end.
//! 6. Images ([`blobs`]): once every pending record is handed to MQTT, unsynced images go one
//!    message each on `topics::blob(post, sha256)` (and eviction notices on
//!    `topics::blob_evicted(post)`); a [`BlobAck`](bcp_record::BlobAck) on
//!    `topics::blob_ack(post)` marks them synced.
//! 7. Reconnect with exponential backoff and jitter (in [`crate::link`]); on shutdown send
//!    DISCONNECT and stop polling.
//! 8. Link state, the last ack and bytes sent go to [`UplinkConfig::monitor`] ([`monitor`]),
//!    which the post's control API and metrics read.
//!
//! Outbox calls are short SQLite transactions made inline on the driver task (one fsync each).

mod batcher;
pub mod blobs;
pub mod monitor;
mod rate;
mod tracker;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bcp_record::{topics, Ack, DeviceStatus, PostState, PostStatus};
use rumqttc::{AsyncClient, LastWill, QoS};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

pub use batcher::{BatchDecision, BatchPolicy, Batcher};
pub use monitor::{UplinkMonitor, UplinkSnapshot};
pub use rate::RateLimit;
pub use tracker::{AckOutcome, DeliveryTracker};

use crate::link::{self, LinkEvent};
use crate::outbox::Outbox;
use crate::wire;

/// Unconfirmed records are sent again when no ack has advanced for this long while connected.
///
/// This is what recovers records the broker dropped without our connection noticing, most often
/// after a broker restart without persistence when the uplink reconnected and resent *before*
/// central had subscribed again. Short enough to bound that delay, long enough that a normal ack
/// round trip (well under a second) never triggers it; the cost of firing is one window of
/// duplicates, which central ignores.
pub const ACK_RESEND_AFTER: Duration = Duration::from_secs(10);

/// Where and how the appliance connects to the central broker.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    pub broker_host: String,
    pub broker_port: u16,
    /// Must be stable across restarts: the broker keeps the persistent session under it.
    pub client_id: String,
    pub post: String,
    pub keep_alive_secs: u64,
    /// Records published but not yet acknowledged by central.
    pub max_in_flight: usize,
    /// Records per MQTT message at most.
    pub batch_max_records: usize,
    /// How long a partial batch waits for more records (0: send at once).
    pub batch_linger_ms: u64,
    /// Period of the retained status heartbeat.
    pub heartbeat_secs: u64,
    /// Cap on record payload bytes per second for slow links (0: no cap).
    pub max_bytes_per_sec: u64,
    /// TLS to the broker (`None`: plain TCP).
    pub tls: Option<link::TlsFiles>,
    /// Where central's downlink lists are applied (`None`: the post takes no lists).
    pub lists: Option<Arc<crate::lists::ListStore>>,
    /// The lane's device health, kept current by the agent, sent with every status message.
    pub devices: Option<watch::Receiver<Vec<DeviceStatus>>>,
    /// Where the uplink reports its link state, last ack and bytes sent (`None`: nobody asks).
    pub monitor: Option<Arc<UplinkMonitor>>,
}

impl Default for UplinkConfig {
    /// A local broker and the tuning defaults; callers set at least the broker, client id and
    /// post.
    fn default() -> Self {
        Self {
            broker_host: "127.0.0.1".to_owned(),
            broker_port: 1883,
            client_id: String::new(),
            post: String::new(),
            keep_alive_secs: 30,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            batch_max_records: DEFAULT_BATCH_MAX_RECORDS,
            batch_linger_ms: DEFAULT_BATCH_LINGER_MS,
            heartbeat_secs: DEFAULT_HEARTBEAT_SECS,
            max_bytes_per_sec: 0,
            tls: None,
            lists: None,
            devices: None,
            monitor: None,
        }
    }
}

/// Records per batch unless configured: ~13 kB compressed, which a 32 kbit/s GPRS link carries
/// in about 3 s, well inside [`ACK_RESEND_AFTER`]. On a fast link larger batches drain a backlog
/// faster (central commits a batch in one transaction): 500 with [`DEFAULT_MAX_IN_FLIGHT`] 4000
/// drained 22,000-23,600 records/s into PostgreSQL where 100 with 2000 drained about 15,000
/// (BENCHMARKS.md, "Session 7").
pub const DEFAULT_BATCH_MAX_RECORDS: usize = 100;
/// Records sent and not yet acknowledged, at most, unless configured: ten default batches, so
/// that central has the next batches at hand while it stores one, and a link cut costs at most
/// ~130 kB of resends.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1000;
/// The largest `batch_max_records` accepted (a batch must stay far below the packet limit).
pub const MAX_BATCH_RECORDS: usize = 2000;
/// What one record takes on the wire in a batch, rounded up (BENCHMARKS.md: 128-193 bytes at
/// batches of 500 down to 10, compressed; more with a long plate read history).
pub const WIRE_BYTES_PER_RECORD: u64 = 200;
/// Under a bytes-per-second cap, a batch is made no larger than the cap sends in this long, so
/// that each batch is acknowledged well inside [`ACK_RESEND_AFTER`].
pub const CAPPED_BATCH_SECS: u64 = 3;

/// The records per batch the uplink uses: `batch_max_records`, made smaller under a cap
/// (`max_bytes_per_sec` > 0) so that one batch goes in [`CAPPED_BATCH_SECS`]; at least 1.
pub fn effective_batch_records(batch_max_records: usize, max_bytes_per_sec: u64) -> usize {
    let configured = batch_max_records.clamp(1, MAX_BATCH_RECORDS);
    if max_bytes_per_sec == 0 {
        return configured;
    }
    let fits = max_bytes_per_sec.saturating_mul(CAPPED_BATCH_SECS) / WIRE_BYTES_PER_RECORD;
    configured.min(usize::try_from(fits).unwrap_or(usize::MAX).max(1))
}

/// A live record waits at most this long for company.
pub const DEFAULT_BATCH_LINGER_MS: u64 = 10;
/// Status heartbeat period unless configured.
pub const DEFAULT_HEARTBEAT_SECS: u64 = 30;

/// Sends the outbox to central until `shutdown` becomes true (or its sender is dropped).
pub async fn run_uplink(
    cfg: UplinkConfig,
    outbox: Arc<Outbox>,
    new_record: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        cfg.post == outbox.post(),
        "uplink configured for post {:?} but the outbox {} belongs to post {:?}",
        cfg.post,
        outbox.path().display(),
        outbox.post()
    );
    let stats = outbox
        .stats()
        .context("reading the outbox before starting the uplink")?;
    let mut tracker =
        DeliveryTracker::new(stats.last_acked_seq, cfg.max_in_flight, ACK_RESEND_AFTER);
    let mut batcher = Batcher::new(BatchPolicy {
        max_records: effective_batch_records(cfg.batch_max_records, cfg.max_bytes_per_sec),
        linger: Duration::from_millis(cfg.batch_linger_ms),
    });
    let mut rate = RateLimit::new(cfg.max_bytes_per_sec);
    let monitor = cfg.monitor.clone().unwrap_or_default();
    monitor.start_from(stats.last_acked_seq);
    let mut blob_sync = blobs::BlobSync::new(blobs::BLOBS_IN_FLIGHT, ACK_RESEND_AFTER);
    let status_topic = topics::status(&cfg.post);
    let broker = format!("{}:{}", cfg.broker_host, cfg.broker_port);
    tracing::info!(post = %cfg.post, %broker, client_id = %cfg.client_id, depth = stats.depth, last_seq = stats.last_seq, last_acked_seq = stats.last_acked_seq, "uplink starting");

    let mut opts = link::mqtt_options(
        &cfg.client_id,
        &cfg.broker_host,
        cfg.broker_port,
        Duration::from_secs(cfg.keep_alive_secs),
    );
    opts.set_inflight(u16::try_from(cfg.max_in_flight).unwrap_or(u16::MAX).max(1));
    if let Some(tls) = &cfg.tls {
        link::apply_tls(&mut opts, tls)?;
    }
    let will = PostStatus {
        post: cfg.post.clone(),
        state: PostState::Offline,
        at: None,
        depth: None,
        oldest_unsynced_age_secs: None,
        last_seq: None,
        last_acked_seq: None,
        outbox_bytes: None,
        outbox_high_water: None,
        blobs_bytes: None,
        blobs_pending: None,
        blobs_evicted_total: None,
        full_rejections_total: None,
        devices: Vec::new(),
    };
    opts.set_last_will(LastWill::new(
        status_topic.as_str(),
        serde_json::to_vec(&will).context("encoding the last will")?,
        QoS::AtLeastOnce,
        true,
    ));
    let mut heartbeat = tokio::time::interval(Duration::from_secs(cfg.heartbeat_secs.max(1)));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (client, eventloop) = link::client(opts, cfg.max_in_flight.saturating_add(16));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pump = link::spawn_event_pump(eventloop, "uplink", broker.clone(), tx);

    let records_topic = topics::records(&cfg.post);
    let ack_topic = topics::ack(&cfg.post);
    let blob_ack_topic = topics::blob_ack(&cfg.post);
    let lists_topic = topics::lists_of(&cfg.post);
    let result = async {
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let deadline = earliest(
                earliest(tracker.poll_timeout(), batcher.poll_timeout()),
                earliest(rate.poll_timeout(), blob_sync.poll_timeout()),
            )
            .map(Instant::from_std);
            tokio::select! {
                event = rx.recv() => match event {
                    None | Some(LinkEvent::Disconnected) => {
                        monitor.disconnected();
                        anyhow::bail!("uplink to {broker}: the MQTT event loop stopped")
                    }
                    Some(LinkEvent::Connected { session_present }) => {
                        client
                            .subscribe(ack_topic.as_str(), QoS::AtLeastOnce)
                            .await
                            .with_context(|| format!("subscribing to {ack_topic}"))?;
                        client
                            .subscribe(blob_ack_topic.as_str(), QoS::AtLeastOnce)
                            .await
                            .with_context(|| format!("subscribing to {blob_ack_topic}"))?;
                        blob_sync.handle_connected();
                        if cfg.lists.is_some() {
                            client
                                .subscribe(lists_topic.as_str(), QoS::AtLeastOnce)
                                .await
                                .with_context(|| format!("subscribing to {lists_topic}"))?;
                        }
                        tracker.handle_connected(std::time::Instant::now());
                        monitor.connected();
                        batcher.reset();
                        publish_status(&client, &status_topic, &cfg.post, PostState::Online, &outbox, cfg.devices.as_ref());
                        tracing::debug!(post = %cfg.post, session_present, resend_after = tracker.acked(), "uplink: resending everything unacknowledged");
                    }
                    Some(LinkEvent::ConnectionLost) => {
                        tracker.handle_disconnected();
                        monitor.disconnected();
                        batcher.reset();
                        blob_sync.handle_disconnected();
                    }
                    Some(LinkEvent::Message(publish)) if publish.topic == blob_ack_topic => {
                        blobs::handle_blob_ack(&cfg.post, &publish.payload, &mut blob_sync, &outbox)?;
                    }
                    Some(LinkEvent::Message(publish)) => match &cfg.lists {
                        Some(lists) if publish.topic != ack_topic => apply_list(lists, &publish)?,
                        _ => handle_ack(&cfg.post, &ack_topic, &publish, &mut tracker, &outbox, &monitor)?,
                    },
                    Some(LinkEvent::Progress) => {}
                },
                () = new_record.notified() => {}
                _ = heartbeat.tick() => {
                    publish_status(&client, &status_topic, &cfg.post, PostState::Online, &outbox, cfg.devices.as_ref());
                }
                () = sleep_until_opt(deadline) => {
                    if tracker.handle_timeout(std::time::Instant::now()) {
                        tracing::warn!(post = %cfg.post, acked = tracker.acked(), timeout_secs = ACK_RESEND_AFTER.as_secs(), "no ack from central in time; resending unconfirmed records");
                    }
                    let again = blob_sync.handle_timeout(std::time::Instant::now());
                    if again > 0 {
                        tracing::warn!(post = %cfg.post, images = again, "no ack from central in time; resending unconfirmed images");
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
            }
            send_pending(&client, &cfg.post, &records_topic, &mut tracker, &mut batcher, &mut rate, &outbox, &monitor)?;
            // Records first: images only when no pending record is left unsent.
            let records_waiting = tracker.records_waiting();
            blobs::send_blobs(&client, &cfg.post, &mut blob_sync, &mut rate, &outbox, records_waiting)?;
        }
    }
    .await;

    // A clean goodbye: the broker does not publish the last will after a DISCONNECT.
    publish_status(
        &client,
        &status_topic,
        &cfg.post,
        PostState::Offline,
        &outbox,
        cfg.devices.as_ref(),
    );
    if let Err(error) = client.try_disconnect() {
        tracing::debug!(%error, "uplink: could not queue DISCONNECT");
    }
    link::drain_until_disconnected(&mut rx).await;
    monitor.disconnected();
    drop(rx);
    pump.abort();
    tracing::info!(post = %cfg.post, acked = tracker.acked(), "uplink stopped");
    result
}

/// Applies a downlink list from central (see [`crate::lists`]).
fn apply_list(lists: &crate::lists::ListStore, publish: &rumqttc::Publish) -> anyhow::Result<()> {
    use crate::lists::ListOutcome;
    match lists
        .apply(&publish.payload, chrono::Utc::now())
        .with_context(|| format!("applying the list from {}", publish.topic))?
    {
        ListOutcome::Applied { kind, version } => {
            tracing::info!(%kind, version, "downlink list applied");
        }
        ListOutcome::Stale {
            kind,
            held,
            offered,
        } => {
            tracing::debug!(%kind, held, offered, "downlink list not newer; kept the one held");
        }
        ListOutcome::Rejected(reason) => {
            tracing::warn!(topic = %publish.topic, %reason, "downlink list rejected");
        }
    }
    Ok(())
}

/// Applies an ack from central; anything unexpected on the subscription is logged and skipped.
fn handle_ack(
    post: &str,
    ack_topic: &str,
    publish: &rumqttc::Publish,
    tracker: &mut DeliveryTracker,
    outbox: &Outbox,
    monitor: &UplinkMonitor,
) -> anyhow::Result<()> {
    if publish.topic != ack_topic {
        tracing::warn!(topic = %publish.topic, "uplink: message on an unexpected topic ignored");
        return Ok(());
    }
    let ack: Ack = match serde_json::from_slice(&publish.payload) {
        Ok(ack) => ack,
        Err(error) => {
            tracing::warn!(topic = %publish.topic, %error, bytes = publish.payload.len(), "uplink: malformed ack ignored");
            return Ok(());
        }
    };
    if ack.post != post {
        tracing::warn!(topic = %publish.topic, ack_post = %ack.post, "uplink: ack for another post ignored");
        return Ok(());
    }
    if let AckOutcome::Advanced { up_to_seq } =
        tracker.handle_ack(std::time::Instant::now(), ack.up_to_seq)
    {
        match outbox.mark_delivered(up_to_seq) {
            Ok(marked) => {
                tracing::debug!(post, up_to_seq, marked, "central acknowledged");
            }
            // Nothing could make room: the records stay undelivered here (central holds them;
            // the next acknowledgement marks them too, or they are resent and acknowledged
            // again after a restart). The uplink carries on.
            Err(e) if e.is_full() => {
                tracing::error!(post, up_to_seq, error = %e, "outbox full: central's acknowledgement not noted; the next one will be");
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("marking records up to {up_to_seq} delivered"))
            }
        }
        monitor.acked(chrono::Utc::now(), up_to_seq);
    }
    Ok(())
}

/// Publishes as many pending records as the window allows, in batches.
#[allow(clippy::too_many_arguments)] // the driver's state, passed apart so each part stays pure
fn send_pending(
    client: &AsyncClient,
    post: &str,
    topic: &str,
    tracker: &mut DeliveryTracker,
    batcher: &mut Batcher,
    rate: &mut RateLimit,
    outbox: &Outbox,
    monitor: &UplinkMonitor,
) -> anyhow::Result<()> {
    let head = outbox
        .last_seq()
        .context("reading the outbox head before sending")?;
    tracker.note_head(head);
    while let Some((after_seq, room)) = tracker.next_batch() {
        if rate.ready_at(std::time::Instant::now()).is_some() {
            return Ok(()); // over the cap: the driver wakes at rate.poll_timeout()
        }
        let limit = room.min(batcher.policy().max_records);
        let records = outbox
            .pending_sealed(after_seq, limit)
            .context("reading pending records from the outbox")?;
        let n = match batcher.decide(std::time::Instant::now(), records.len()) {
            BatchDecision::Send(n) => n,
            BatchDecision::Wait => return Ok(()),
        };
        let batch = &records[..n.min(records.len())];
        let Some(last) = batch.last().map(|r| r.seq) else {
            return Ok(());
        };
        let payload = wire::encode_sealed_texts(post, batch)
            .with_context(|| format!("encoding records {}..={last}", batch[0].seq))?;
        let bytes = payload.len();
        if let Err(error) = client.try_publish(topic, QoS::AtLeastOnce, false, payload) {
            // The request channel is full: the next MQTT event retries from here.
            tracing::debug!(seq = last, %error, "uplink: request queue full, deferring");
            return Ok(());
        }
        let now = std::time::Instant::now();
        rate.spend(now, bytes);
        tracker.handle_sent(now, last);
        monitor.sent(batch.len() as u64, bytes as u64);
    }
    Ok(())
}

/// Publishes the post's status, retained. Best effort: a full request queue skips one beat.
fn publish_status(
    client: &AsyncClient,
    topic: &str,
    post: &str,
    state: PostState,
    outbox: &Outbox,
    devices: Option<&watch::Receiver<Vec<DeviceStatus>>>,
) {
    let now = chrono::Utc::now();
    let stats = match outbox.stats() {
        Ok(stats) => Some(stats),
        Err(error) => {
            tracing::warn!(%error, "uplink: cannot read outbox stats for the status message");
            None
        }
    };
    let status = PostStatus {
        post: post.to_owned(),
        state,
        at: Some(now),
        depth: stats.as_ref().map(|s| s.depth),
        oldest_unsynced_age_secs: stats
            .as_ref()
            .and_then(|s| s.oldest_undelivered_recorded_at)
            .map(|t| u64::try_from((now - t).num_seconds()).unwrap_or(0)),
        last_seq: stats.as_ref().map(|s| s.last_seq),
        last_acked_seq: stats.as_ref().map(|s| s.last_acked_seq),
        outbox_bytes: Some(outbox.bytes_used()),
        outbox_high_water: stats.as_ref().map(|s| s.high_water),
        blobs_bytes: stats.as_ref().map(|s| s.blobs_bytes),
        blobs_pending: stats.as_ref().map(|s| s.blobs_pending),
        blobs_evicted_total: stats.as_ref().map(|s| s.blobs_evicted_total),
        full_rejections_total: stats.as_ref().map(|s| s.full_rejections_total),
        devices: devices.map(|d| d.borrow().clone()).unwrap_or_default(),
    };
    match serde_json::to_vec(&status) {
        Ok(payload) => {
            if let Err(error) = client.try_publish(topic, QoS::AtLeastOnce, true, payload) {
                tracing::debug!(%error, "uplink: status not queued");
            }
        }
        Err(error) => tracing::warn!(%error, "uplink: cannot encode the status message"),
    }
}

fn earliest(
    a: Option<std::time::Instant>,
    b: Option<std::time::Instant>,
) -> Option<std::time::Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_makes_batches_that_go_in_a_few_seconds() {
        // No cap: as configured, within 1..=MAX_BATCH_RECORDS.
        assert_eq!(effective_batch_records(500, 0), 500);
        assert_eq!(effective_batch_records(0, 0), 1);
        assert_eq!(effective_batch_records(1_000_000, 0), MAX_BATCH_RECORDS);
        // 4 kB/s (32 kbit/s): 3 s carry 12,000 bytes, 60 records of 200 bytes.
        assert_eq!(effective_batch_records(500, 4_000), 60);
        assert_eq!(effective_batch_records(20, 4_000), 20);
        // A cap below one record's bytes still sends one record at a time.
        assert_eq!(effective_batch_records(100, 10), 1);
        // A huge cap changes nothing.
        assert_eq!(effective_batch_records(100, u64::MAX), 100);
    }
}
