//! # RateLimit: a bytes-per-second cap for slow links
//!
//! A token bucket, pure and given the time. Tokens are bytes; they refill at `bytes_per_sec` up
//! to `burst` (one second's worth). A message may be sent whenever the bucket is not in debt,
//! and its whole size is then taken, possibly into debt: a batch larger than the burst still
//! goes (records are never split), and the debt holds the next one back until the average is
//! back under the cap. `bytes_per_sec = 0` means no cap.

use std::time::{Duration, Instant};

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct RateLimit {
    bytes_per_sec: u64,
    tokens: f64,
    at: Option<Instant>,
    blocked_until: Option<Instant>,
}

impl RateLimit {
    pub fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec,
            tokens: bytes_per_sec as f64,
            at: None,
            blocked_until: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        let rate = self.bytes_per_sec as f64;
        if let Some(at) = self.at {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + dt * rate).min(rate);
        }
        self.at = Some(now);
    }

    /// `None` when a message may go now; otherwise when it may.
    pub fn ready_at(&mut self, now: Instant) -> Option<Instant> {
        if self.bytes_per_sec == 0 {
            return None;
        }
        self.refill(now);
        self.blocked_until = (self.tokens < 0.0)
            .then(|| now + Duration::from_secs_f64(-self.tokens / self.bytes_per_sec as f64));
        self.blocked_until
    }

    /// A message of `bytes` went out.
    pub fn spend(&mut self, now: Instant, bytes: usize) {
        if self.bytes_per_sec == 0 {
            return;
        }
        self.refill(now);
        self.tokens -= bytes as f64;
    }

    /// When the driver should look again, if the cap is holding a message back.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.blocked_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_average_stays_under_the_cap_and_big_messages_still_go() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(1_000);
        assert_eq!(r.ready_at(t0), None);
        r.spend(t0, 600);
        assert_eq!(r.ready_at(t0), None, "400 tokens left");
        r.spend(t0, 2_400); // larger than the burst: goes, into debt of 2,000
        assert_eq!(r.ready_at(t0), Some(t0 + Duration::from_secs(2)));
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(2)));
        assert_eq!(
            r.ready_at(t0 + Duration::from_secs(1)),
            Some(t0 + Duration::from_secs(2))
        );
        assert_eq!(r.ready_at(t0 + Duration::from_secs(2)), None);
        assert_eq!(r.poll_timeout(), None);
        // Idle time refills only up to one second's worth.
        let later = t0 + Duration::from_secs(60);
        r.ready_at(later);
        r.spend(later, 1_000);
        assert_eq!(r.ready_at(later), None);
        r.spend(later, 1);
        assert!(r.ready_at(later).is_some());
    }

    #[test]
    fn zero_means_no_cap() {
        let mut r = RateLimit::new(0);
        r.spend(Instant::now(), 1 << 30);
        assert_eq!(r.ready_at(Instant::now()), None);
    }
}
