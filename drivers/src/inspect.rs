//! What a technician needs to find out what a port is saying: pure helpers behind
//! `bcpctl serial probe`, `sniff` and `read`.
//!
//! * [`segments`] splits captured bytes into frames and skipped runs for one protocol (the sniff
//!   dump marks frame boundaries with it).
//! * [`score`] measures how well a protocol explains captured bytes ([`Evidence`]): frames that
//!   carry a measurement, the share of bytes inside them, how many were confirmed by a checksum.
//!   [`rank`] orders candidates; the probe tries each baud rate / framing, scores every protocol
//!   on what it heard and reports the best with its evidence.
//! * [`SettleRule`]: the `stable` column of `serial read`: the indicator's motion flag where the
//!   protocol has one, else our own rule (the last N readings within k divisions).
//!
//! No I/O, no clock: the CLI owns the port and the time.

use std::collections::VecDeque;
use std::ops::Range;

use crate::frame::FrameError;
use crate::indicator::{AnyProtocol, Measurement, ScaleReading, ScaleStatus};

/// One piece of captured bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    /// A frame and its measurement.
    Frame(Range<usize>, Measurement),
    /// Bytes the decoder skipped, and why.
    Skipped(Range<usize>, FrameError),
}

/// Split `bytes` into frames and skipped runs; the second value is where an incomplete frame
/// starts (the bytes from there on need more input).
pub fn segments(protocol: &AnyProtocol, bytes: &[u8]) -> (Vec<Segment>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        match protocol.decode_measurement(&bytes[pos..]) {
            Ok(Some((m, n))) => {
                let n = n.clamp(1, bytes.len() - pos);
                out.push(Segment::Frame(pos..pos + n, m));
                pos += n;
            }
            Ok(None) => break,
            Err(e) => {
                let n = e.skip.clamp(1, bytes.len() - pos);
                out.push(Segment::Skipped(pos..pos + n, e));
                pos += n;
            }
        }
    }
    (out, pos)
}

/// How well one protocol explains a capture.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Evidence {
    pub protocol: &'static str,
    /// Frames that carry a weight or dimensions (replies without a measurement do not count).
    pub frames: u64,
    /// Of those, frames whose checksum the protocol verified.
    pub checksum_hits: u64,
    /// Skipped runs.
    pub rejections: u64,
    /// Bytes inside counted frames.
    pub bytes_in_frames: usize,
    pub bytes_total: usize,
}

impl Evidence {
    /// Share of the capture inside frames, 0 to 1.
    pub fn coverage(&self) -> f64 {
        if self.bytes_total == 0 {
            0.0
        } else {
            self.bytes_in_frames as f64 / self.bytes_total as f64
        }
    }

    /// Good enough to name: at least two frames, covering most of the capture or confirmed by
    /// three checksums (a noisy line of a checksummed protocol: checksums do not match by chance).
    pub fn is_match(&self) -> bool {
        self.frames >= 2 && (self.coverage() >= 0.75 || self.checksum_hits >= 3)
    }

    /// Confident enough to stop probing: checksummed or long runs of frames with little noise.
    pub fn is_strong(&self) -> bool {
        self.is_match() && self.coverage() >= 0.9 && (self.checksum_hits >= 2 || self.frames >= 5)
    }
}

/// Score `protocol` on `bytes`.
pub fn score(protocol: &AnyProtocol, bytes: &[u8]) -> Evidence {
    let (segs, _) = segments(protocol, bytes);
    let mut e = Evidence {
        protocol: protocol.name(),
        frames: 0,
        checksum_hits: 0,
        rejections: 0,
        bytes_in_frames: 0,
        bytes_total: bytes.len(),
    };
    for seg in segs {
        match seg {
            Segment::Frame(range, Measurement::Weight(_) | Measurement::Dimensions(_)) => {
                e.frames += 1;
                e.bytes_in_frames += range.len();
                if protocol.has_checksum() {
                    e.checksum_hits += 1;
                }
            }
            Segment::Frame(..) => {}
            Segment::Skipped(..) => e.rejections += 1,
        }
    }
    e
}

/// Best first: matches before non-matches, then coverage, then checksum hits, then frames.
pub fn rank(candidates: &mut [Evidence]) {
    candidates.sort_by(|a, b| {
        b.is_match()
            .cmp(&a.is_match())
            .then(b.coverage().total_cmp(&a.coverage()))
            .then(b.checksum_hits.cmp(&a.checksum_hits))
            .then(b.frames.cmp(&a.frames))
    });
}

/// The protocols a probe tries: every named one but `generic`, which needs a pattern.
pub fn probe_candidates() -> Vec<AnyProtocol> {
    AnyProtocol::NAMES
        .iter()
        .filter_map(|name| AnyProtocol::parse(name, None).ok())
        .collect()
}

/// Upper-case hex, space separated.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&format!("{b:02X}"));
    }
    s
}

/// Printable ASCII as is, anything else as `.`.
pub fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if (0x20..0x7F).contains(&b) {
                b as char
            } else {
                '.'
            }
        })
        .collect()
}

/// The `stable` column: the indicator's motion flag when the protocol has one; otherwise the last
/// `readings` weights all within `band_divisions` divisions of each other.
#[derive(Debug, Clone)]
pub struct SettleRule {
    readings: usize,
    band_divisions: f64,
    recent: VecDeque<f64>,
}

impl Default for SettleRule {
    /// 5 readings within 1 division, the stability detector's defaults.
    fn default() -> Self {
        Self::new(5, 1.0)
    }
}

impl SettleRule {
    pub fn new(readings: usize, band_divisions: f64) -> Self {
        Self {
            readings: readings.max(1),
            band_divisions,
            recent: VecDeque::new(),
        }
    }

    /// Is this reading stable?
    pub fn handle(&mut self, r: &ScaleReading) -> bool {
        let Some(w) = r.weight_kg.filter(|_| r.status == ScaleStatus::Ok) else {
            self.recent.clear();
            return false;
        };
        self.recent.push_back(w);
        while self.recent.len() > self.readings {
            self.recent.pop_front();
        }
        if let Some(motion) = r.motion {
            return !motion;
        }
        let band = self.band_divisions * r.division_kg.unwrap_or(1.0);
        let (lo, hi) = self
            .recent
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        self.recent.len() == self.readings && hi - lo <= band + 1e-9
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xk3190::{Xk3190Codec, Xk3190Format, Xk3190Frame};
    use crate::Decimal;

    fn xk_stream(n: usize) -> Vec<u8> {
        let codec = Xk3190Codec::new(Xk3190Format::Xor);
        let mut out = Vec::new();
        for i in 0..n {
            let weight = Decimal::new(12_340 + i as i64 * 20, 0);
            codec.encode(&Xk3190Frame { weight }, &mut out);
        }
        out
    }

    #[test]
    fn segments_mark_frames_and_noise() {
        let p = AnyProtocol::parse("xk3190", None).expect("known");
        let mut bytes = b"zz".to_vec();
        bytes.extend(xk_stream(2));
        bytes.extend_from_slice(b"\x02+00");
        let (segs, rest) = segments(&p, &bytes);
        assert_eq!(segs.len(), 3);
        assert!(matches!(&segs[0], Segment::Skipped(r, _) if *r == (0..2)));
        assert!(matches!(&segs[1], Segment::Frame(r, _) if *r == (2..14)));
        assert!(matches!(&segs[2], Segment::Frame(r, _) if *r == (14..26)));
        assert_eq!(rest, 26);
    }

    #[test]
    fn the_right_protocol_ranks_first() {
        let bytes = xk_stream(6);
        let mut all: Vec<Evidence> = probe_candidates()
            .iter()
            .map(|p| score(p, &bytes))
            .collect();
        rank(&mut all);
        assert_eq!(all[0].protocol, "xk3190");
        assert!(all[0].is_strong());
        assert_eq!(all[0].checksum_hits, 6);
        assert!(!all[1].is_match(), "runner-up {:?}", all[1]);
    }

    #[test]
    fn a_noisy_checksummed_line_still_names_its_protocol() {
        // Manual example frame of the A12E, each after 7 bytes of line noise: a third of the
        // capture is noise, but the checksums settle it.
        let mut bytes = Vec::new();
        for i in 0..6u8 {
            bytes.extend_from_slice(&[0x80 | i, 0xF1, 0x13, 0x99, 0xC4, 0x07, 0x7F]);
            bytes.extend_from_slice(b"WG004.139kg3D\r\n");
        }
        let mut all: Vec<Evidence> = probe_candidates()
            .iter()
            .map(|p| score(p, &bytes))
            .collect();
        rank(&mut all);
        assert_eq!(all[0].protocol, "a12e");
        assert!(
            all[0].coverage() < 0.75 && all[0].is_match(),
            "{:?}",
            all[0]
        );
        assert!(!all[1].is_match(), "runner-up {:?}", all[1]);
    }

    #[test]
    fn settle_rule_trusts_the_flag_else_counts() {
        let mut rule = SettleRule::new(3, 1.0);
        let r = |w: f64, motion| ScaleReading {
            motion,
            ..ScaleReading::displayed(
                Decimal::new((w * 10.0) as i64, 1),
                crate::Unit::Kg,
                false,
                motion,
            )
        };
        assert!(rule.handle(&r(10.0, Some(false))));
        assert!(!rule.handle(&r(10.0, Some(true))));
        let mut rule = SettleRule::new(3, 1.0);
        assert!(!rule.handle(&r(10.0, None)));
        assert!(!rule.handle(&r(10.0, None)));
        assert!(rule.handle(&r(10.1, None)));
        assert!(!rule.handle(&r(10.5, None)));
    }
}
