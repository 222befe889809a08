//! # Images to central: after the records, one message per blob, confirmed one by one
//!
//! Records have priority: images are sent only when every pending record has been handed to
//! MQTT (and the record window has room). Each unsynced, non-evicted image goes as its raw bytes
//! on `topics::blob(post, sha256)` at QoS 1; an image evicted before central had it goes as a
//! [`BlobEvicted`](bcp_record::BlobEvicted) notice on `topics::blob_evicted(post)`. Central
//! checks the hash, stores the bytes (or notes the eviction) and answers with a
//! [`BlobAck`] on `topics::blob_ack(post)`; only that ack sets `synced_at` (or
//! `eviction_reported_at`) in the outbox.
//!
//! [`BlobSync`] is the pure part: which items are in flight, when they are sent again (every
//! reconnect, and when unconfirmed for `resend_after`). No I/O, no clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bcp_record::{topics, BlobAck, BlobAckState};
use rumqttc::{AsyncClient, QoS};

use super::RateLimit;
use crate::outbox::Outbox;

/// Images (and eviction notices) in flight at most; each image can be up to a megabyte.
pub const BLOBS_IN_FLIGHT: usize = 4;

/// One thing to confirm: an image's bytes, or the notice that it was evicted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BlobItem {
    Content(String),
    Eviction(String),
}

/// The bookkeeping of images in flight. See the module documentation.
#[derive(Debug, Clone)]
pub struct BlobSync {
    max_in_flight: usize,
    resend_after: Duration,
    connected: bool,
    in_flight: HashMap<BlobItem, Instant>,
}

impl BlobSync {
    pub fn new(max_in_flight: usize, resend_after: Duration) -> Self {
        Self {
            max_in_flight: max_in_flight.max(1),
            resend_after,
            connected: false,
            in_flight: HashMap::new(),
        }
    }

    /// A CONNACK: everything unconfirmed is sent again.
    pub fn handle_connected(&mut self) {
        self.connected = true;
        self.in_flight.clear();
    }

    pub fn handle_disconnected(&mut self) {
        self.connected = false;
        self.in_flight.clear();
    }

    /// How many more items may be sent now.
    pub fn room(&self) -> usize {
        if self.connected {
            self.max_in_flight.saturating_sub(self.in_flight.len())
        } else {
            0
        }
    }

    /// How many are in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether `item` is waiting for its ack.
    pub fn is_in_flight(&self, item: &BlobItem) -> bool {
        self.in_flight.contains_key(item)
    }

    pub fn handle_sent(&mut self, now: Instant, item: BlobItem) {
        self.in_flight.insert(item, now);
    }

    /// Central confirmed `item`; returns whether it was in flight.
    pub fn handle_ack(&mut self, item: &BlobItem) -> bool {
        self.in_flight.remove(item).is_some()
    }

    /// Items unconfirmed for `resend_after` become sendable again; returns how many.
    pub fn handle_timeout(&mut self, now: Instant) -> usize {
        let before = self.in_flight.len();
        let after = self.resend_after;
        self.in_flight
            .retain(|_, sent| now.saturating_duration_since(*sent) < after);
        before - self.in_flight.len()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.in_flight
            .values()
            .min()
            .map(|t| *t + self.resend_after)
    }
}

/// Publishes images and eviction notices while `records_waiting` is false and there is room.
pub(super) fn send_blobs(
    client: &AsyncClient,
    post: &str,
    sync: &mut BlobSync,
    rate: &mut RateLimit,
    outbox: &Outbox,
    records_waiting: bool,
) -> anyhow::Result<()> {
    if records_waiting || sync.room() == 0 {
        return Ok(());
    }
    let want = sync.room() + sync.in_flight();
    let notices = outbox
        .pending_eviction_notices(want)
        .context("reading eviction notices from the outbox")?;
    for notice in notices {
        let item = BlobItem::Eviction(notice.sha256.clone());
        if sync.room() == 0 {
            return Ok(());
        }
        if sync.is_in_flight(&item) {
            continue;
        }
        let payload = serde_json::to_vec(&notice).context("encoding an eviction notice")?;
        if client
            .try_publish(topics::blob_evicted(post), QoS::AtLeastOnce, false, payload)
            .is_err()
        {
            return Ok(()); // request queue full: the next event retries
        }
        sync.handle_sent(Instant::now(), item);
    }
    let pending = outbox
        .pending_blobs(want)
        .context("reading pending images from the outbox")?;
    for blob in pending {
        let item = BlobItem::Content(blob.sha256.clone());
        if sync.room() == 0 || rate.ready_at(Instant::now()).is_some() {
            return Ok(());
        }
        if sync.is_in_flight(&item) {
            continue;
        }
        let Some(bytes) = outbox
            .read_blob(&blob.sha256)
            .with_context(|| format!("reading image {}", blob.sha256))?
        else {
            continue; // evicted meanwhile: its notice goes next time
        };
        let len = bytes.len();
        if client
            .try_publish(
                topics::blob(post, &blob.sha256),
                QoS::AtLeastOnce,
                false,
                bytes,
            )
            .is_err()
        {
            return Ok(());
        }
        let now = Instant::now();
        rate.spend(now, len);
        sync.handle_sent(now, item);
    }
    Ok(())
}

/// Applies a [`BlobAck`] from central; a malformed one or one for another post is logged and
/// skipped.
pub(super) fn handle_blob_ack(
    post: &str,
    payload: &[u8],
    sync: &mut BlobSync,
    outbox: &Outbox,
) -> anyhow::Result<()> {
    let ack: BlobAck = match serde_json::from_slice(payload) {
        Ok(ack) => ack,
        Err(error) => {
            tracing::warn!(%error, bytes = payload.len(), "uplink: malformed blob ack ignored");
            return Ok(());
        }
    };
    if ack.post != post {
        tracing::warn!(ack_post = %ack.post, "uplink: blob ack for another post ignored");
        return Ok(());
    }
    let noted = match ack.state {
        BlobAckState::Stored => {
            sync.handle_ack(&BlobItem::Content(ack.sha256.clone()));
            outbox.mark_blob_synced(&ack.sha256).map(drop)
        }
        BlobAckState::EvictionNoted => {
            sync.handle_ack(&BlobItem::Eviction(ack.sha256.clone()));
            outbox.mark_eviction_reported(&ack.sha256).map(drop)
        }
    };
    match noted {
        // A full outbox that nothing could make room in: the image is sent again later and
        // central acknowledges it again; the uplink carries on (records still drain).
        Err(e) if e.is_full() => {
            tracing::error!(sha256 = %ack.sha256, state = ?ack.state, error = %e, "outbox full: central's image acknowledgement not noted; it will come again");
        }
        noted => noted
            .with_context(|| format!("noting central's {:?} of image {}", ack.state, ack.sha256))?,
    }
    tracing::debug!(post, sha256 = %ack.sha256, state = ?ack.state, "central acknowledged an image");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_reconnect_ack_and_timeout() {
        let t0 = Instant::now();
        let mut s = BlobSync::new(2, Duration::from_secs(10));
        assert_eq!(s.room(), 0, "nothing goes before a CONNACK");
        s.handle_connected();
        assert_eq!(s.room(), 2);
        let a = BlobItem::Content("a".into());
        let b = BlobItem::Eviction("b".into());
        s.handle_sent(t0, a.clone());
        s.handle_sent(t0 + Duration::from_secs(5), b.clone());
        assert_eq!(s.room(), 0);
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        assert!(s.handle_ack(&a));
        assert!(!s.handle_ack(&a), "a second ack changes nothing");
        assert!(
            !s.handle_ack(&BlobItem::Content("b".into())),
            "content and eviction are different items"
        );
        assert_eq!(s.room(), 1);
        assert_eq!(s.handle_timeout(t0 + Duration::from_secs(14)), 0);
        assert_eq!(s.handle_timeout(t0 + Duration::from_secs(15)), 1);
        assert!(!s.is_in_flight(&b), "unconfirmed: sent again");
        s.handle_sent(t0, b.clone());
        s.handle_disconnected();
        assert_eq!((s.room(), s.in_flight()), (0, 0));
        s.handle_connected();
        assert_eq!(s.room(), 2, "a reconnect resends everything unconfirmed");
    }
}
