//! # Uplink: from the outbox to central, over MQTT
//!
//! [`run_uplink`] is a short driver around [`DeliveryTracker`], which holds all the decisions:
//!
//! 1. Connect with a persistent session (`clean_session = false`, TCP_NODELAY) and, on every
//!    CONNACK, subscribe to `topics::ack(post)` at QoS 1 and rewind to the last acknowledged seq.
//! 2. Publish the outbox's pending records in seq order as JSON [`RecordEnvelope`]s on
//!    `topics::records(post)` at QoS 1, at most `max_in_flight` beyond the last ack.
//! 3. Mark records delivered in the outbox **only** when an [`Ack`] arrives on the ack topic. A
//!    broker PUBACK proves only that the broker has the message, not that central committed it.
//! 4. Wake when a lane appends a record (`new_record`), when an ack or any other MQTT event
//!    arrives, and when the tracker's ack timeout is due ([`ACK_RESEND_AFTER`]).
//! 5. Reconnect with exponential backoff and jitter (in [`crate::link`]); on shutdown send
//!    DISCONNECT and stop polling.
//!
//! Outbox calls are short SQLite transactions made inline on the driver task (one fsync each).

mod tracker;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bcp_record::{topics, Ack};
use rumqttc::{AsyncClient, QoS};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

pub use tracker::{AckOutcome, DeliveryTracker};

use crate::link::{self, LinkEvent};
use crate::outbox::Outbox;

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
}

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
    let broker = format!("{}:{}", cfg.broker_host, cfg.broker_port);
    tracing::info!(post = %cfg.post, %broker, client_id = %cfg.client_id, depth = stats.depth, last_seq = stats.last_seq, last_acked_seq = stats.last_acked_seq, "uplink starting");

    let mut opts = link::mqtt_options(
        &cfg.client_id,
        &cfg.broker_host,
        cfg.broker_port,
        Duration::from_secs(cfg.keep_alive_secs),
    );
    opts.set_inflight(u16::try_from(cfg.max_in_flight).unwrap_or(u16::MAX).max(1));
    let (client, eventloop) = link::client(opts, cfg.max_in_flight.saturating_add(16));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pump = link::spawn_event_pump(eventloop, "uplink", broker.clone(), tx);

    let records_topic = topics::records(&cfg.post);
    let ack_topic = topics::ack(&cfg.post);
    let result = async {
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let deadline = tracker.poll_timeout().map(Instant::from_std);
            tokio::select! {
                event = rx.recv() => match event {
                    None | Some(LinkEvent::Disconnected) => {
                        anyhow::bail!("uplink to {broker}: the MQTT event loop stopped")
                    }
                    Some(LinkEvent::Connected { session_present }) => {
                        client
                            .subscribe(ack_topic.as_str(), QoS::AtLeastOnce)
                            .await
                            .with_context(|| format!("subscribing to {ack_topic}"))?;
                        tracker.handle_connected(std::time::Instant::now());
                        tracing::debug!(post = %cfg.post, session_present, resend_after = tracker.acked(), "uplink: resending everything unacknowledged");
                    }
                    Some(LinkEvent::ConnectionLost) => tracker.handle_disconnected(),
                    Some(LinkEvent::Message(publish)) => {
                        handle_ack(&cfg.post, &ack_topic, &publish, &mut tracker, &outbox)?;
                    }
                    Some(LinkEvent::Progress) => {}
                },
                () = new_record.notified() => {}
                () = sleep_until_opt(deadline) => {
                    if tracker.handle_timeout(std::time::Instant::now()) {
                        tracing::warn!(post = %cfg.post, acked = tracker.acked(), timeout_secs = ACK_RESEND_AFTER.as_secs(), "no ack from central in time; resending unconfirmed records");
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
            }
            send_pending(&client, &records_topic, &mut tracker, &outbox)?;
        }
    }
    .await;

    if let Err(error) = client.try_disconnect() {
        tracing::debug!(%error, "uplink: could not queue DISCONNECT");
    }
    link::drain_until_disconnected(&mut rx).await;
    drop(rx);
    pump.abort();
    tracing::info!(post = %cfg.post, acked = tracker.acked(), "uplink stopped");
    result
}

/// Applies an ack from central; anything unexpected on the subscription is logged and skipped.
fn handle_ack(
    post: &str,
    ack_topic: &str,
    publish: &rumqttc::Publish,
    tracker: &mut DeliveryTracker,
    outbox: &Outbox,
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
        let marked = outbox
            .mark_delivered(up_to_seq)
            .with_context(|| format!("marking records up to {up_to_seq} delivered"))?;
        tracing::debug!(post, up_to_seq, marked, "central acknowledged");
    }
    Ok(())
}

/// Publishes as many pending records as the window allows.
fn send_pending(
    client: &AsyncClient,
    topic: &str,
    tracker: &mut DeliveryTracker,
    outbox: &Outbox,
) -> anyhow::Result<()> {
    while let Some((after_seq, limit)) = tracker.next_batch() {
        let records = outbox
            .pending(after_seq, limit)
            .context("reading pending records from the outbox")?;
        if records.is_empty() {
            return Ok(());
        }
        for record in records {
            let payload = serde_json::to_vec(&record)
                .with_context(|| format!("encoding record seq {}", record.seq))?;
            if let Err(error) = client.try_publish(topic, QoS::AtLeastOnce, false, payload) {
                // The request channel is full: the next MQTT event retries from here.
                tracing::debug!(seq = record.seq, %error, "uplink: request queue full, deferring");
                return Ok(());
            }
            tracker.handle_sent(std::time::Instant::now(), record.seq);
        }
    }
    Ok(())
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
