//! # Batcher: send a batch now, or wait a little for a fuller one
//!
//! Pure, given the time. A batch goes out as soon as it is full (`max_records`), or when the
//! first record that could have gone has waited `linger`. `linger = 0` sends whatever is there
//! at once. During a backlog drain every batch is full, so linger costs nothing there; for live
//! records it bounds the added latency.

use std::time::{Duration, Instant};

/// How records are grouped into one MQTT message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    pub max_records: usize,
    pub linger: Duration,
}

/// What to do with the records that are ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchDecision {
    /// Publish this many now.
    Send(usize),
    /// Nothing to send, or wait for more (see [`Batcher::poll_timeout`]).
    Wait,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Batcher {
    policy: BatchPolicy,
    waiting_since: Option<Instant>,
}

impl Batcher {
    pub fn new(policy: BatchPolicy) -> Self {
        Self {
            policy: BatchPolicy {
                max_records: policy.max_records.max(1),
                linger: policy.linger,
            },
            waiting_since: None,
        }
    }

    pub fn policy(&self) -> BatchPolicy {
        self.policy
    }

    /// `ready` records could be sent now (at most `max_records` are asked for).
    pub fn decide(&mut self, now: Instant, ready: usize) -> BatchDecision {
        if ready == 0 {
            self.waiting_since = None;
            return BatchDecision::Wait;
        }
        if ready >= self.policy.max_records || self.policy.linger.is_zero() {
            self.waiting_since = None;
            return BatchDecision::Send(ready.min(self.policy.max_records));
        }
        let since = *self.waiting_since.get_or_insert(now);
        if now >= since + self.policy.linger {
            self.waiting_since = None;
            BatchDecision::Send(ready)
        } else {
            BatchDecision::Wait
        }
    }

    /// When a partial batch is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.waiting_since.map(|t| t + self.policy.linger)
    }

    /// The link went down: forget the partial batch.
    pub fn reset(&mut self) {
        self.waiting_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_batches_go_at_once_partial_ones_after_the_linger() {
        let t0 = Instant::now();
        let linger = Duration::from_millis(20);
        let mut b = Batcher::new(BatchPolicy {
            max_records: 10,
            linger,
        });
        assert_eq!(b.decide(t0, 0), BatchDecision::Wait);
        assert_eq!(b.poll_timeout(), None);
        assert_eq!(b.decide(t0, 25), BatchDecision::Send(10));
        assert_eq!(b.decide(t0, 3), BatchDecision::Wait);
        assert_eq!(b.poll_timeout(), Some(t0 + linger));
        // More arrive, still partial: the clock keeps running from the first.
        assert_eq!(b.decide(t0 + linger / 2, 5), BatchDecision::Wait);
        assert_eq!(b.decide(t0 + linger, 5), BatchDecision::Send(5));
        assert_eq!(b.poll_timeout(), None);
        // Filling up before the linger sends at once.
        assert_eq!(b.decide(t0 + linger * 2, 1), BatchDecision::Wait);
        assert_eq!(b.decide(t0 + linger * 2, 10), BatchDecision::Send(10));
    }

    #[test]
    fn zero_linger_sends_whatever_is_ready() {
        let mut b = Batcher::new(BatchPolicy {
            max_records: 10,
            linger: Duration::ZERO,
        });
        assert_eq!(b.decide(Instant::now(), 1), BatchDecision::Send(1));
    }
}
