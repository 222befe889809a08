//! # The receiver: records from every post into the [`CentralStore`], acks back
//!
//! Subscribes to `topics::records_all()` (and `topics::status_all()`, the posts' retained
//! status messages, kept by [`CentralStore::record_status`]) at QoS 1 under a persistent session (the broker queues
//! records while central is down) and handles each message in this order:
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
//! Images (`topics::blobs_all()`) and eviction notices (`topics::blob_evicted_all()`) go to
//! [`super::blobs`]: checked against their hash, written beside the database
//! ([`ReceiverConfig::blob_dir`]), acknowledged with a `BlobAck` on `topics::blob_ack(post)`.
//!
//! A failing store (disk full, I/O error) is not acknowledged and ends [`run_receiver`] with the
//! error: it needs an operator, and the unacknowledged messages stay with the broker and posts.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bcp_record::{topics, Ack, PostStatus};
use chrono::{SubsecRound as _, Utc};
use rumqttc::{AsyncClient, Publish, QoS};
use tokio::sync::{mpsc, watch};

use super::blobs::{default_blob_dir, handle_blob_message, CentralBlobs};
use super::store::{CentralStore, Outcome, StoredCrossing};
use crate::link::{self, LinkEvent};

/// Keep-alive of the receiver's MQTT connection.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// Where central's receiver connects.
#[derive(Debug, Clone, Default)]
pub struct ReceiverConfig {
    pub broker_host: String,
    pub broker_port: u16,
    /// Must be stable across restarts: the broker keeps the persistent session under it.
    pub client_id: String,
    /// TLS to the broker (`None`: plain TCP).
    pub tls: Option<link::TlsFiles>,
    /// Where the posts' images are kept (`None`: `<db>.blobs`, beside the store's file).
    pub blob_dir: Option<std::path::PathBuf>,
}

/// Receives records until `shutdown` becomes true (or its sender is dropped). Each newly stored
/// crossing is also sent on `stored` (a closed channel is not an error).
pub async fn run_receiver(
    cfg: ReceiverConfig,
    store: Arc<CentralStore>,
    stored: mpsc::UnboundedSender<StoredCrossing>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let broker = format!("{}:{}", cfg.broker_host, cfg.broker_port);
    tracing::info!(%broker, client_id = %cfg.client_id, db = %store.path().display(), "receiver starting");
    let mut opts = link::mqtt_options(
        &cfg.client_id,
        &cfg.broker_host,
        cfg.broker_port,
        KEEP_ALIVE,
    );
    opts.set_manual_acks(true);
    if let Some(tls) = &cfg.tls {
        link::apply_tls(&mut opts, tls)?;
    }
    let (client, eventloop) = link::client(opts, 64);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pump = link::spawn_event_pump(eventloop, "receiver", broker.clone(), tx);
    let filter = topics::records_all();
    let status_filter = topics::status_all();
    let blobs = CentralBlobs::new(
        cfg.blob_dir
            .clone()
            .unwrap_or_else(|| default_blob_dir(store.path())),
    );

    let result = async {
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            tokio::select! {
                event = rx.recv() => match event {
                    None | Some(LinkEvent::Disconnected) => {
                        anyhow::bail!("receiver on {broker}: the MQTT event loop stopped")
                    }
                    Some(LinkEvent::Connected { session_present }) => {
                        tracing::debug!(session_present, %filter, "receiver: (re)subscribing");
                        client
                            .subscribe(filter.as_str(), QoS::AtLeastOnce)
                            .await
                            .with_context(|| format!("subscribing to {filter}"))?;
                        client
                            .subscribe(status_filter.as_str(), QoS::AtLeastOnce)
                            .await
                            .with_context(|| format!("subscribing to {status_filter}"))?;
                        for images in [topics::blobs_all(), topics::blob_evicted_all()] {
                            client
                                .subscribe(images.as_str(), QoS::AtLeastOnce)
                                .await
                                .with_context(|| format!("subscribing to {images}"))?;
                        }
                    }
                    Some(LinkEvent::Message(publish)) => {
                        if topics::post_of_status_topic(&publish.topic).is_some() {
                            handle_status(&client, &store, publish).await?;
                        } else if handle_blob_message(&client, &blobs, &publish).await? {
                            // an image or an eviction notice
                        } else {
                            handle_record(&client, &store, &stored, publish).await?;
                        }
                    }
                    Some(LinkEvent::ConnectionLost | LinkEvent::Progress) => {}
                },
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
    .await;

    if let Err(error) = client.try_disconnect() {
        tracing::debug!(%error, "receiver: could not queue DISCONNECT");
    }
    link::drain_until_disconnected(&mut rx).await;
    drop(rx);
    pump.abort();
    tracing::info!(%broker, "receiver stopped");
    result
}

/// Verifies, stores and acknowledges one message (a batch or a single record).
async fn handle_record(
    client: &AsyncClient,
    store: &CentralStore,
    stored: &mpsc::UnboundedSender<StoredCrossing>,
    publish: Publish,
) -> anyhow::Result<()> {
    // Stored with microseconds: truncate so that what is sent on `stored` equals the export.
    let received_at = Utc::now().trunc_subsecs(6);
    let topic = &publish.topic;
    let received = store
        .receive_message(topic, &publish.payload, received_at)
        .with_context(|| format!("storing a message from {topic}"))?;
    for outcome in &received.outcomes {
        match outcome {
            Outcome::Rejected(reason) => {
                tracing::warn!(%topic, %reason, bytes = publish.payload.len(), "record rejected and kept aside in the rejected table");
            }
            Outcome::Duplicate => {
                tracing::debug!(%topic, ack_up_to = received.ack_up_to, "duplicate record acknowledged again");
            }
            Outcome::Stored { crossing, .. } => {
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
        .ack(&publish)
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
    let topic = &publish.topic;
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
