//! # DeliveryTracker: what to send next, what an ack means, what a reconnect resets
//!
//! Pure bookkeeping for the uplink: no I/O and no clock. The driver feeds it events with the
//! current time (`handle_*`) and asks what to do (`next_batch`, `poll_timeout`).
//!
//! ## State
//! - `acked`: the highest sequence number central has confirmed committed. Only moves forward.
//! - `sent`: the highest sequence number handed to MQTT *on the current connection*. Everything in
//!   `acked + 1 ..= sent` is in flight.
//! - `highest_sent`: the highest sequence number ever handed to MQTT by this process.
//!
//! ## Rules
//! - Window: at most `max_in_flight` records beyond `acked` are in flight; `next_batch` asks the
//!   outbox for records after `sent`, as many as the window allows, and only while connected.
//! - Ack: an ack at or below `acked` is stale and ignored. An ack above `highest_sent` is clamped
//!   to it: central can only confirm what it was sent (a higher number comes from an earlier life
//!   of this post's outbox, and believing it would skip records that were never delivered).
//! - Reconnect (CONNACK): `sent` goes back to `acked`, so everything unconfirmed is sent again.
//!   Duplicates are harmless: central stores by `(post, seq)` and re-acknowledges.
//! - Ack timeout: if records are in flight and no ack has advanced for `ack_timeout`, `sent` goes
//!   back to `acked` as on a reconnect. This covers a central whose broker session lost our
//!   messages (for example one that connected with a clean session) while our own connection
//!   stayed up.
//! - Disconnect: nothing is sent until the next CONNACK.
//!
//! ## Live records during a backlog
//! After a long outage the backlog drains in seq order, window by window; a crossing recorded
//! now would wait behind all of it. So when the driver reports the outbox head
//! ([`note_head`](DeliveryTracker::note_head)) more than a window ahead of `sent`, the tracker
//! splits the stream at that head `L`: records up to `L` are the backlog, records after it are
//! live. [`next_batch`](DeliveryTracker::next_batch) then alternates between a live batch
//! (from `live_sent`, at most a window of live records in flight) and a backlog batch (which
//! stops at `L`), so new records reach central within a batch or two while the backlog goes on.
//! Central stores the live records at once (a gap below them is normal and fills) and
//! acknowledges the contiguous prefix as always; once the backlog reaches `L` the two cursors
//! merge and sending is sequential again (so up to two windows are in flight for a moment, and
//! [`in_flight`](DeliveryTracker::in_flight) may read up to `2 * max_in_flight`). A reconnect or an ack timeout ends the split (live
//! records sent so far are sent again with the backlog: duplicates, harmless).

use std::time::{Duration, Instant};

/// What an incoming ack did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// `acked` moved to this value: mark the outbox delivered up to it.
    Advanced { up_to_seq: u64 },
    /// Nothing new (a duplicate or older ack).
    Stale,
}

/// The uplink's delivery state machine. See the module documentation.
#[derive(Debug, Clone)]
pub struct DeliveryTracker {
    max_in_flight: u64,
    ack_timeout: Duration,
    acked: u64,
    sent: u64,
    highest_sent: u64,
    connected: bool,
    /// When the in-flight records were last given progress (a send into an idle window or an
    /// advancing ack); the ack timeout counts from here.
    progress_at: Option<Instant>,
    /// The outbox's last seq, as the driver last reported it.
    head: u64,
    /// During a backlog: the last backlog seq `L` (records after it are live).
    live_from: Option<u64>,
    /// The highest live seq sent on this connection (`>= L` while split).
    live_sent: u64,
    /// The last batch went to the backlog: the next one goes to the live records if any wait.
    prefer_live: bool,
}

impl DeliveryTracker {
    /// Starts from what the outbox says central has confirmed.
    pub fn new(last_acked_seq: u64, max_in_flight: usize, ack_timeout: Duration) -> Self {
        Self {
            max_in_flight: u64::try_from(max_in_flight).unwrap_or(u64::MAX).max(1),
            ack_timeout,
            acked: last_acked_seq,
            sent: last_acked_seq,
            highest_sent: last_acked_seq,
            connected: false,
            progress_at: None,
            head: last_acked_seq,
            live_from: None,
            live_sent: 0,
            prefer_live: false,
        }
    }

    /// The outbox's last seq is `last_seq`: starts the live/backlog split when the backlog is
    /// more than a window long (see the module documentation).
    pub fn note_head(&mut self, last_seq: u64) {
        self.head = self.head.max(last_seq);
        if self.connected
            && self.live_from.is_none()
            && self.head.saturating_sub(self.sent) > self.max_in_flight
        {
            self.live_from = Some(self.head);
            self.live_sent = self.head;
        }
    }

    /// The last backlog seq while live records are sent apart from the backlog.
    pub fn live_from(&self) -> Option<u64> {
        self.live_from
    }

    /// The highest sequence number central confirmed.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The highest sequence number sent on this connection.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// How many records are in flight (sent, not yet acknowledged).
    pub fn in_flight(&self) -> u64 {
        self.sent.saturating_sub(self.acked)
    }

    /// A CONNACK arrived: resend everything unconfirmed.
    pub fn handle_connected(&mut self, now: Instant) {
        self.connected = true;
        self.rewind(now);
    }

    /// The connection is gone: stop sending until the next CONNACK.
    pub fn handle_disconnected(&mut self) {
        self.connected = false;
        self.progress_at = None;
    }

    /// `after_seq` and `limit` for [`Outbox::pending`](crate::outbox::Outbox::pending), or `None`
    /// when disconnected or the window is full.
    ///
    /// While the stream is split (see the module documentation) it alternates between the live
    /// records and the backlog; a backlog batch then stops at the split.
    pub fn next_batch(&self) -> Option<(u64, usize)> {
        if !self.connected {
            return None;
        }
        let mut room = (self.acked.saturating_add(self.max_in_flight)).saturating_sub(self.sent);
        if let Some(split) = self.live_from {
            room = room.min(split.saturating_sub(self.sent));
            let live_room = (split.saturating_add(self.max_in_flight))
                .saturating_sub(self.live_sent)
                .min(self.head.saturating_sub(self.live_sent));
            if live_room > 0 && (self.prefer_live || room == 0) {
                return Some((self.live_sent, to_usize(live_room)));
            }
        }
        (room > 0).then(|| (self.sent, to_usize(room)))
    }

    /// Whether records the outbox holds (up to the head last given to
    /// [`note_head`](Self::note_head)) still wait to be sent, or the window is full: what
    /// holds the images back. Derived from the cursors, without asking the outbox.
    pub fn records_waiting(&self) -> bool {
        match self.next_batch() {
            Some((after_seq, _)) => self.head > after_seq,
            None => true,
        }
    }

    /// `seq` was handed to MQTT.
    pub fn handle_sent(&mut self, now: Instant, seq: u64) {
        if self.in_flight() == 0 {
            self.progress_at = Some(now);
        }
        match self.live_from {
            Some(split) if seq > split => {
                self.live_sent = self.live_sent.max(seq);
                self.prefer_live = false;
            }
            _ => {
                self.sent = self.sent.max(seq);
                self.prefer_live = true;
            }
        }
        self.highest_sent = self.highest_sent.max(seq);
        self.head = self.head.max(seq);
        self.merge_if_caught_up();
    }

    /// Ends the split once the backlog cursor has reached it.
    fn merge_if_caught_up(&mut self) {
        if let Some(split) = self.live_from {
            if self.sent >= split {
                self.sent = self.sent.max(self.live_sent);
                self.live_from = None;
                self.prefer_live = false;
            }
        }
    }

    /// Central confirmed everything up to `up_to_seq`.
    pub fn handle_ack(&mut self, now: Instant, up_to_seq: u64) -> AckOutcome {
        let up_to = up_to_seq.min(self.highest_sent);
        if up_to <= self.acked {
            return AckOutcome::Stale;
        }
        self.acked = up_to;
        self.sent = self.sent.max(up_to);
        self.merge_if_caught_up();
        self.progress_at = (self.in_flight() > 0).then_some(now);
        AckOutcome::Advanced { up_to_seq: up_to }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next, if at all.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.connected || self.in_flight() == 0 {
            return None;
        }
        self.progress_at.map(|at| at + self.ack_timeout)
    }

    /// Time has passed; returns true when the unconfirmed records are to be sent again.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        match self.poll_timeout() {
            Some(deadline) if now >= deadline => {
                self.rewind(now);
                true
            }
            _ => false,
        }
    }

    fn rewind(&mut self, now: Instant) {
        self.sent = self.acked;
        self.live_from = None;
        self.live_sent = 0;
        self.prefer_live = false;
        self.progress_at = Some(now);
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(30);

    fn send_batch(t: &mut DeliveryTracker, now: Instant) -> Vec<u64> {
        let Some((after, limit)) = t.next_batch() else {
            return Vec::new();
        };
        let seqs: Vec<u64> = (after + 1..=after + limit as u64).collect();
        for &s in &seqs {
            t.handle_sent(now, s);
        }
        seqs
    }

    #[test]
    fn live_records_interleave_with_a_long_backlog_then_the_cursors_merge() {
        let now = Instant::now();
        let mut t = DeliveryTracker::new(0, 100, TIMEOUT);
        t.handle_connected(now);
        t.note_head(1_000); // a backlog of ten windows
        assert_eq!(t.live_from(), Some(1_000));
        assert_eq!(send_batch(&mut t, now), (1..=100).collect::<Vec<_>>());
        // Nothing live yet: the backlog waits for its window.
        assert_eq!(t.next_batch(), None);
        // A vehicle crosses: its record goes out next, before the backlog moves on.
        t.note_head(1_001);
        assert_eq!(send_batch(&mut t, now), [1_001]);
        t.handle_ack(now, 100);
        assert_eq!(send_batch(&mut t, now), (101..=200).collect::<Vec<_>>());
        t.note_head(1_003);
        assert_eq!(send_batch(&mut t, now), [1_002, 1_003]);
        // Central's ack is contiguous: it cannot cover the live records yet.
        assert_eq!(
            t.handle_ack(now, 200),
            AckOutcome::Advanced { up_to_seq: 200 }
        );
        // The backlog stops at the split...
        for _ in 0..8 {
            let batch = send_batch(&mut t, now);
            assert!(batch.iter().all(|&s| s <= 1_000), "{batch:?}");
            let last = *batch.last().expect("the backlog has records left");
            t.handle_ack(now, last);
        }
        // ...and once it has reached it, sending is sequential again after the live records.
        assert_eq!(t.live_from(), None);
        assert_eq!(t.sent(), 1_003);
        t.note_head(1_004);
        assert_eq!(t.acked(), 1_000);
        assert_eq!(t.next_batch(), Some((1_003, 97)));
    }

    #[test]
    fn live_records_in_flight_are_capped_by_a_window_too() {
        let now = Instant::now();
        let mut t = DeliveryTracker::new(0, 10, TIMEOUT);
        t.handle_connected(now);
        t.note_head(100);
        assert_eq!(send_batch(&mut t, now), (1..=10).collect::<Vec<_>>());
        t.note_head(150);
        assert_eq!(send_batch(&mut t, now), (101..=110).collect::<Vec<_>>());
        assert_eq!(t.next_batch(), None, "both windows are full");
    }

    #[test]
    fn a_reconnect_ends_the_split_and_resends_from_the_ack() {
        let now = Instant::now();
        let mut t = DeliveryTracker::new(0, 10, TIMEOUT);
        t.handle_connected(now);
        t.note_head(100);
        send_batch(&mut t, now);
        t.note_head(101);
        assert_eq!(send_batch(&mut t, now), [101]);
        t.handle_disconnected();
        t.handle_connected(now);
        assert_eq!(t.live_from(), None);
        assert_eq!(send_batch(&mut t, now), (1..=10).collect::<Vec<_>>());
        // The next report of the head splits again, at the new head.
        t.note_head(101);
        assert_eq!(t.live_from(), Some(101));
    }

    #[test]
    fn records_wait_while_some_are_unsent_or_the_window_is_full() {
        let now = Instant::now();
        let mut t = DeliveryTracker::new(0, 2, TIMEOUT);
        assert!(t.records_waiting(), "not connected");
        t.handle_connected(now);
        assert!(!t.records_waiting(), "an empty outbox");
        t.note_head(2);
        assert!(t.records_waiting());
        send_batch(&mut t, now);
        assert!(t.records_waiting(), "the window is full");
        t.handle_ack(now, 2);
        assert!(!t.records_waiting(), "all sent and acknowledged");
    }

    #[test]
    fn a_short_backlog_is_not_split() {
        let now = Instant::now();
        let mut t = DeliveryTracker::new(0, 100, TIMEOUT);
        t.handle_connected(now);
        t.note_head(100);
        assert_eq!(t.live_from(), None);
        assert_eq!(t.next_batch(), Some((0, 100)));
    }

    #[test]
    fn nothing_is_sent_before_the_first_connack() {
        let t = DeliveryTracker::new(0, 10, TIMEOUT);
        assert_eq!(t.next_batch(), None);
    }

    #[test]
    fn window_limits_records_in_flight() {
        let now = Instant::now();
        let mut t = DeliveryTracker::new(0, 3, TIMEOUT);
        t.handle_connected(now);
        assert_eq!(t.next_batch(), Some((0, 3)));
        assert_eq!(send_batch(&mut t, now), [1, 2, 3]);
        assert_eq!(t.next_batch(), None, "window full");
        assert_eq!(t.handle_ack(now, 2), AckOutcome::Advanced { up_to_seq: 2 });
        assert_eq!(t.next_batch(), Some((3, 2)));
        assert_eq!(send_batch(&mut t, now), [4, 5]);
        assert_eq!(t.in_flight(), 3);
    }

    #[test]
    fn fewer_records_than_the_window_leave_room() {
        let now = Instant::now();
        let mut t = DeliveryTracker::new(0, 10, TIMEOUT);
        t.handle_connected(now);
        t.handle_sent(now, 1);
        t.handle_sent(now, 2);
        assert_eq!(t.next_batch(), Some((2, 8)));
    }

    #[test]
    fn stale_and_duplicate_acks_change_nothing() {
        let now = Instant::now();
        let mut t = DeliveryTracker::new(5, 10, TIMEOUT);
        t.handle_connected(now);
        send_batch(&mut t, now);
        assert_eq!(t.handle_ack(now, 8), AckOutcome::Advanced { up_to_seq: 8 });
        assert_eq!(t.handle_ack(now, 8), AckOutcome::Stale);
        assert_eq!(t.handle_ack(now, 3), AckOutcome::Stale);
        assert_eq!(t.acked(), 8);
    }

    #[test]
    fn ack_beyond_sent_is_clamped_to_what_was_sent() {
        let now = Instant::now();
        let mut t = DeliveryTracker::new(0, 10, TIMEOUT);
        t.handle_connected(now);
        t.handle_sent(now, 1);
        t.handle_sent(now, 2);
        // Central claims 7: it can only have 1..=2 from us.
        assert_eq!(t.handle_ack(now, 7), AckOutcome::Advanced { up_to_seq: 2 });
        assert_eq!(t.acked(), 2);
        assert_eq!(t.next_batch(), Some((2, 10)), "3.. still get sent");
        // Nothing sent yet at all: an ack is stale.
        let mut fresh = DeliveryTracker::new(0, 10, TIMEOUT);
        fresh.handle_connected(now);
        assert_eq!(fresh.handle_ack(now, 4), AckOutcome::Stale);
    }

    #[test]
    fn ack_beyond_this_connections_sent_but_within_history_advances_sent() {
        let now = Instant::now();
        let mut t = DeliveryTracker::new(0, 10, TIMEOUT);
        t.handle_connected(now);
        send_batch(&mut t, now); // 1..=10
        t.handle_disconnected();
        t.handle_connected(now); // sent back to 0
        t.handle_sent(now, 1);
        // The ack for the first connection's records arrives late.
        assert_eq!(
            t.handle_ack(now, 10),
            AckOutcome::Advanced { up_to_seq: 10 }
        );
        assert_eq!(t.sent(), 10);
        assert_eq!(t.next_batch(), Some((10, 10)));
    }

    #[test]
    fn reconnect_resends_from_the_last_ack() {
        let now = Instant::now();
        let mut t = DeliveryTracker::new(0, 5, TIMEOUT);
        t.handle_connected(now);
        send_batch(&mut t, now); // 1..=5
        t.handle_ack(now, 2);
        t.handle_disconnected();
        assert_eq!(t.next_batch(), None, "nothing while disconnected");
        t.handle_connected(now);
        assert_eq!(t.next_batch(), Some((2, 5)));
        assert_eq!(send_batch(&mut t, now), [3, 4, 5, 6, 7]);
    }

    #[test]
    fn unanswered_records_are_resent_after_the_ack_timeout() {
        let t0 = Instant::now();
        let mut t = DeliveryTracker::new(0, 4, TIMEOUT);
        t.handle_connected(t0);
        assert_eq!(t.poll_timeout(), None, "nothing in flight");
        send_batch(&mut t, t0);
        assert_eq!(t.poll_timeout(), Some(t0 + TIMEOUT));
        // An advancing ack restarts the clock.
        let t1 = t0 + Duration::from_secs(20);
        t.handle_ack(t1, 1);
        assert_eq!(t.poll_timeout(), Some(t1 + TIMEOUT));
        assert!(!t.handle_timeout(t0 + TIMEOUT), "not yet");
        assert!(t.handle_timeout(t1 + TIMEOUT));
        assert_eq!(t.next_batch(), Some((1, 4)));
        // All acked: no timer.
        send_batch(&mut t, t1 + TIMEOUT);
        t.handle_ack(t1 + TIMEOUT, 5);
        assert_eq!(t.poll_timeout(), None);
    }
}
