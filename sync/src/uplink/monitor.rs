//! What the uplink tells the post's own tools about its link: the control API's `status` and
//! the metrics endpoint read it, the uplink writes it.
//!
//! Lock-free counters and flags ([`UplinkMonitor`]); [`UplinkMonitor::snapshot`] is a
//! consistent-enough copy for a report (each field is read once, not all at one instant).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use chrono::{DateTime, Utc};

/// No ack yet (`last_ack_unix_ms`).
const NEVER: i64 = i64::MIN;

/// The uplink's link state and flow counters since the process started.
#[derive(Debug)]
pub struct UplinkMonitor {
    connected: AtomicBool,
    connections_total: AtomicU64,
    last_ack_unix_ms: AtomicI64,
    acked_seq: AtomicU64,
    records_sent_total: AtomicU64,
    record_bytes_sent_total: AtomicU64,
}

impl Default for UplinkMonitor {
    fn default() -> Self {
        Self {
            connected: AtomicBool::new(false),
            connections_total: AtomicU64::new(0),
            last_ack_unix_ms: AtomicI64::new(NEVER),
            acked_seq: AtomicU64::new(0),
            records_sent_total: AtomicU64::new(0),
            record_bytes_sent_total: AtomicU64::new(0),
        }
    }
}

/// A copy of [`UplinkMonitor`] for a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UplinkSnapshot {
    /// The MQTT session to the broker is up (CONNACK received, not lost since).
    pub connected: bool,
    /// CONNACKs received since the start (1 after the first connection).
    pub connections_total: u64,
    /// When central last confirmed records (an ack that advanced), since the start.
    pub last_ack_at: Option<DateTime<Utc>>,
    /// The highest seq central confirmed, as the uplink last saw it.
    pub acked_seq: u64,
    /// Records handed to MQTT (resends count again).
    pub records_sent_total: u64,
    /// Payload bytes of those record batches (compressed, as sent).
    pub record_bytes_sent_total: u64,
}

impl UplinkMonitor {
    pub(crate) fn connected(&self) {
        self.connected.store(true, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn disconnected(&self) {
        self.connected.store(false, Ordering::Relaxed);
    }

    pub(crate) fn acked(&self, at: DateTime<Utc>, up_to_seq: u64) {
        self.acked_seq.fetch_max(up_to_seq, Ordering::Relaxed);
        self.last_ack_unix_ms
            .store(at.timestamp_millis(), Ordering::Relaxed);
    }

    pub(crate) fn sent(&self, records: u64, bytes: u64) {
        self.records_sent_total
            .fetch_add(records, Ordering::Relaxed);
        self.record_bytes_sent_total
            .fetch_add(bytes, Ordering::Relaxed);
    }

    /// The uplink starts from what the outbox says central has.
    pub(crate) fn start_from(&self, acked_seq: u64) {
        self.acked_seq.fetch_max(acked_seq, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> UplinkSnapshot {
        let ms = self.last_ack_unix_ms.load(Ordering::Relaxed);
        UplinkSnapshot {
            connected: self.connected.load(Ordering::Relaxed),
            connections_total: self.connections_total.load(Ordering::Relaxed),
            last_ack_at: (ms != NEVER)
                .then(|| DateTime::from_timestamp_millis(ms))
                .flatten(),
            acked_seq: self.acked_seq.load(Ordering::Relaxed),
            records_sent_total: self.records_sent_total.load(Ordering::Relaxed),
            record_bytes_sent_total: self.record_bytes_sent_total.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_link_acks_and_bytes() {
        let m = UplinkMonitor::default();
        let s = m.snapshot();
        assert!(!s.connected && s.last_ack_at.is_none() && s.connections_total == 0);
        m.start_from(7);
        m.connected();
        m.sent(3, 500);
        m.sent(2, 100);
        let at = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap_or_default();
        m.acked(at, 12);
        m.acked(at, 9); // never goes back
        m.disconnected();
        m.connected();
        let s = m.snapshot();
        assert_eq!(
            s,
            UplinkSnapshot {
                connected: true,
                connections_total: 2,
                last_ack_at: Some(at),
                acked_seq: 12,
                records_sent_total: 5,
                record_bytes_sent_total: 600,
            }
        );
    }
}
