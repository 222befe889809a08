//! The camera frames the agent keeps until their crossing closes, so that the crossing's plate
//! crop and overview can be cut from the frame of its winning read.
//!
//! The lane correlator is pure: it carries a [`FrameId`] with each frame's best read, never the
//! image. The agent's loop puts the JPEG bytes of each frame that has a plate-like read here
//! (a frame with no text can never give the winning read), hands the id to the lane, and takes
//! the winning frame back out when the crossing is recorded.
//!
//! The cache is bounded by a number of frames **and** a number of bytes; inserting past either
//! evicts the oldest frames first. A crossing whose frame was evicted (a vehicle that stood
//! longer than the cache covers, a scan wait longer than that) is still recorded, without its
//! plate images and flagged `plate_images_missing` with the reason.

use crate::lane::FrameId;
use std::collections::VecDeque;

/// Frames with plate reads, oldest first, under a count and a byte bound.
#[derive(Debug)]
pub struct FrameCache {
    max_frames: usize,
    max_bytes: usize,
    next: u64,
    /// Ids increase along the queue, so a lookup is a binary search.
    frames: VecDeque<(FrameId, Vec<u8>)>,
    bytes: usize,
    evicted: u64,
}

impl FrameCache {
    /// A cache of at most `max_frames` frames and `max_bytes` bytes (each at least one).
    pub fn new(max_frames: usize, max_bytes: usize) -> Self {
        Self {
            max_frames: max_frames.max(1),
            max_bytes: max_bytes.max(1),
            next: 1,
            frames: VecDeque::new(),
            bytes: 0,
            evicted: 0,
        }
    }

    /// New bounds (a config reload); evicts the oldest frames at once if they are now over.
    pub fn set_limits(&mut self, max_frames: usize, max_bytes: usize) {
        self.max_frames = max_frames.max(1);
        self.max_bytes = max_bytes.max(1);
        self.evict(0);
    }

    /// Keeps `jpeg` and returns its id. A frame larger than the whole byte bound is not kept
    /// (its id finds nothing), and evicts nothing.
    pub fn insert(&mut self, jpeg: Vec<u8>) -> FrameId {
        let id = FrameId(self.next);
        self.next += 1;
        if jpeg.len() > self.max_bytes {
            self.evicted += 1;
            return id;
        }
        self.evict(jpeg.len());
        self.bytes += jpeg.len();
        self.frames.push_back((id, jpeg));
        id
    }

    /// Removes and returns the frame `id`, if it is still kept.
    pub fn take(&mut self, id: FrameId) -> Option<Vec<u8>> {
        let i = self.frames.binary_search_by_key(&id, |(k, _)| *k).ok()?;
        let (_, jpeg) = self.frames.remove(i)?;
        self.bytes -= jpeg.len();
        Some(jpeg)
    }

    /// Whether frame `id` is still kept.
    pub fn contains(&self, id: FrameId) -> bool {
        self.frames.binary_search_by_key(&id, |(k, _)| *k).is_ok()
    }

    /// Frames kept now.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes kept now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Frames evicted (or refused as larger than the bound) since the start.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// `(frames, bytes)` bounds, for reasons.
    pub fn limits(&self) -> (usize, usize) {
        (self.max_frames, self.max_bytes)
    }

    /// Evicts the oldest frames until `incoming` more bytes and one more frame fit (with
    /// `incoming == 0`: until the cache is within its bounds).
    fn evict(&mut self, incoming: usize) {
        let extra = usize::from(incoming > 0);
        while !self.frames.is_empty()
            && (self.frames.len() + extra > self.max_frames
                || self.bytes + incoming > self.max_bytes)
        {
            if let Some((_, old)) = self.frames.pop_front() {
                self.bytes -= old.len();
                self.evicted += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_back_once_by_id() {
        let mut c = FrameCache::new(4, 1000);
        let a = c.insert(vec![1; 10]);
        let b = c.insert(vec![2; 20]);
        assert_ne!(a, b);
        assert_eq!((c.len(), c.bytes()), (2, 30));
        assert_eq!(c.take(b), Some(vec![2; 20]));
        assert_eq!(c.take(b), None, "taken once");
        assert!(c.contains(a));
        assert_eq!((c.len(), c.bytes()), (1, 10));
        assert_eq!(c.take(FrameId(999)), None);
    }

    #[test]
    fn the_count_bound_evicts_the_oldest() {
        let mut c = FrameCache::new(3, 1_000_000);
        let ids: Vec<FrameId> = (0..5u8).map(|i| c.insert(vec![i; 10])).collect();
        assert_eq!(c.len(), 3);
        assert_eq!(c.evicted(), 2);
        assert!(!c.contains(ids[0]) && !c.contains(ids[1]));
        assert_eq!(c.take(ids[2]), Some(vec![2; 10]));
        assert_eq!(c.take(ids[4]), Some(vec![4; 10]));
    }

    #[test]
    fn the_byte_bound_evicts_the_oldest_and_refuses_a_giant() {
        let mut c = FrameCache::new(100, 100);
        let a = c.insert(vec![0; 40]);
        let b = c.insert(vec![1; 40]);
        let d = c.insert(vec![2; 40]); // 120 > 100: a goes
        assert!(!c.contains(a) && c.contains(b) && c.contains(d));
        assert_eq!(c.bytes(), 80);
        let giant = c.insert(vec![3; 101]);
        assert!(!c.contains(giant), "larger than the whole bound: not kept");
        assert!(c.contains(b) && c.contains(d), "and it evicted nothing");
        assert_eq!(c.evicted(), 2);
        // Exactly the bound fits, alone.
        let full = c.insert(vec![4; 100]);
        assert_eq!((c.len(), c.bytes()), (1, 100));
        assert!(c.contains(full));
    }

    #[test]
    fn lower_limits_evict_at_once() {
        let mut c = FrameCache::new(10, 1000);
        let ids: Vec<FrameId> = (0..6u8).map(|i| c.insert(vec![i; 100])).collect();
        c.set_limits(10, 250);
        assert_eq!((c.len(), c.bytes()), (2, 200));
        assert!(c.contains(ids[4]) && c.contains(ids[5]));
        c.set_limits(1, 250);
        assert_eq!(c.len(), 1);
        assert!(c.contains(ids[5]));
        assert_eq!(c.limits(), (1, 250));
        // Ids keep increasing after removals, so lookups stay ordered.
        let next = c.insert(vec![9; 10]);
        assert!(next > ids[5]);
        assert!(
            c.take(ids[5]).is_none(),
            "count bound 1: evicted by the new one"
        );
        assert!(!c.is_empty());
    }
}
