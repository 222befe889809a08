//! A crossing still open: the evidence joined so far, with when each piece happened, and the
//! decisions that only need that evidence (is it a reversal, does it hold two plates).

use super::words::duration;
use super::{BridgeEnd, Evidence, FrameId, PlateFrame};
use bcp_anpr_core::PlateCandidate;
use bcp_record::{Dimensions, Flag, PlateRead, ScanEvent, Weighing};
use chrono::{DateTime, Utc};

#[derive(Debug)]
pub(super) struct Pending {
    pub(super) arrived_at: DateTime<Utc>,
    pub(super) left_at: Option<DateTime<Utc>>,
    pub(super) left_by: BridgeEnd,
    /// Each frame's best read, with its capture time and the agent's reference to the frame's
    /// image, if it keeps it.
    pub(super) frames: Vec<(DateTime<Utc>, PlateCandidate, Option<FrameId>)>,
    /// Each rear camera frame's best read, with its capture time (a trailer's plate).
    pub(super) rear_frames: Vec<(DateTime<Utc>, PlateCandidate)>,
    /// Every stable weight; the last one is the vehicle's.
    pub(super) weights: Vec<Weighing>,
    /// Every measurement, with its time; the last one is the vehicle's.
    pub(super) dimensions: Vec<(DateTime<Utc>, Dimensions)>,
    pub(super) scan: Option<ScanEvent>,
    /// Scans that also matched it after it had one (flagged `extra_scan`).
    pub(super) extra_scans: Vec<ScanEvent>,
    pub(super) flags: Vec<Flag>,
    /// The frames hold validated identifiers (ULD, vessel), not number plates: voted by whole
    /// text, never bent to a plate format.
    pub(super) by_identifier: bool,
    /// Opened by a stable weight with no vehicle seen coming on (`arrival_not_seen`): a late
    /// `VehicleOn` from before the weight may still give it its arrival.
    pub(super) opened_by_weight: bool,
}

impl Pending {
    pub(super) fn new(arrived_at: DateTime<Utc>) -> Self {
        Self {
            arrived_at,
            left_at: None,
            left_by: BridgeEnd::Unknown,
            frames: Vec::new(),
            rear_frames: Vec::new(),
            weights: Vec::new(),
            dimensions: Vec::new(),
            scan: None,
            extra_scans: Vec::new(),
            flags: Vec::new(),
            by_identifier: false,
            opened_by_weight: false,
        }
    }

    /// Moves into a new crossing arriving at `arrived_at` every piece of evidence whose time
    /// does not `stay` here: frames, rear frames, weights (by `stable_at`), dimensions and
    /// scans. Each side keeps its first scan as its scan and the rest as extra scans.
    pub(super) fn split_off(
        &mut self,
        arrived_at: DateTime<Utc>,
        stays: impl Fn(DateTime<Utc>) -> bool,
    ) -> Pending {
        let mut b = Pending::new(arrived_at);
        b.by_identifier = self.by_identifier;
        (self.frames, b.frames) = std::mem::take(&mut self.frames)
            .into_iter()
            .partition(|(t, _, _)| stays(*t));
        (self.rear_frames, b.rear_frames) = std::mem::take(&mut self.rear_frames)
            .into_iter()
            .partition(|(t, _)| stays(*t));
        (self.weights, b.weights) = std::mem::take(&mut self.weights)
            .into_iter()
            .partition(|w| stays(w.stable_at));
        (self.dimensions, b.dimensions) = std::mem::take(&mut self.dimensions)
            .into_iter()
            .partition(|(t, _)| stays(*t));
        let scans = self
            .scan
            .take()
            .into_iter()
            .chain(std::mem::take(&mut self.extra_scans));
        let (kept, moved): (Vec<_>, Vec<_>) = scans.partition(|s| stays(s.scanned_at));
        (self.scan, self.extra_scans) = first_and_rest(kept);
        (b.scan, b.extra_scans) = first_and_rest(moved);
        b
    }

    /// Takes out what happened after `at` (the vehicle had left by then, as the presence that
    /// frames it said late): its weights, and its frames, rear frames, dimensions and scans as
    /// evidence with their times, in time order (to be placed again by their time: a scan may
    /// still be this vehicle's, made by a portal further down the lane).
    pub(super) fn take_after(
        &mut self,
        at: DateTime<Utc>,
    ) -> (Vec<Weighing>, Vec<(DateTime<Utc>, Evidence)>) {
        let after = self.split_off(at, |t| t <= at);
        let frames = after.frames.into_iter().map(|(t, read, frame)| {
            let reads = vec![read];
            match frame {
                Some(frame) => (t, Evidence::Frame(frame, reads)),
                None => (t, Evidence::PlateReads(reads)),
            }
        });
        let rear = (after.rear_frames.into_iter()).map(|(t, r)| (t, Evidence::RearFrame(vec![r])));
        let dimensions = (after.dimensions.into_iter()).map(|(t, d)| (t, Evidence::Dimensions(d)));
        let scans = (after.scan.into_iter().chain(after.extra_scans))
            .map(|s| (s.scanned_at, Evidence::Scan(s)));
        let mut evidence: Vec<_> = frames.chain(rear).chain(dimensions).chain(scans).collect();
        evidence.sort_by_key(|(t, _)| *t);
        (after.weights, evidence)
    }

    /// Why this presence is not a crossing, if it is not (see the module header). Where
    /// `presence_counts` (a vessel, not weighed), a presence alone is a crossing unless it left
    /// by the entry side. Rear reads are not evidence that a vehicle crossed.
    pub(super) fn reversal(&self, left_at: DateTime<Utc>, presence_counts: bool) -> Option<String> {
        let on_for = duration(left_at - self.arrived_at);
        match self.left_by {
            BridgeEnd::Entry => Some(format!(
                "left the bridge by the entry side {on_for} after coming on{}: reversed off, not a crossing",
                match self.weights.last() {
                    Some(w) => format!(" (weighed {} kg)", w.gross_kg),
                    None => " (no stable weight)".to_owned(),
                }
            )),
            BridgeEnd::Unknown
                if !presence_counts
                    && self.weights.is_empty()
                    && self.frames.is_empty()
                    && self.dimensions.is_empty()
                    && self.scan.is_none() =>
            {
                Some(format!(
                    "on and off the bridge in {on_for} with no stable weight, no plate, no dimensions and no scan: nothing shows a vehicle crossed (it reversed off, or it was not a vehicle)"
                ))
            }
            _ => None,
        }
    }

    pub(super) fn was_on_bridge_at(&self, at: DateTime<Utc>) -> bool {
        self.arrived_at <= at && self.left_at.is_none_or(|l| at <= l)
    }

    /// The plate voted from the frames so far.
    pub(super) fn plate(&self) -> Option<PlateRead> {
        if self.by_identifier {
            return self.identifier();
        }
        let reads: Vec<PlateCandidate> = self.frames.iter().map(|(_, r, _)| r.clone()).collect();
        bcp_anpr_core::vote::vote(&reads).map(|v| PlateRead {
            text: v.text,
            confidence: v.confidence,
            format: v.format.map(str::to_owned),
            frames: v.frames,
        })
    }

    /// The identifier read in most frames (by summed confidence): reads were validated and
    /// repaired one by one, so equal texts are the same identifier.
    fn identifier(&self) -> Option<PlateRead> {
        let mut groups: Vec<(&PlateCandidate, f32, u32)> = Vec::new();
        for (_, r, _) in self.frames.iter().filter(|(_, r, _)| !r.text.is_empty()) {
            match groups.iter_mut().find(|(g, _, _)| g.text == r.text) {
                Some((_, sum, n)) => {
                    *sum += r.confidence;
                    *n += 1;
                }
                None => groups.push((r, r.confidence, 1)),
            }
        }
        let total: f32 = groups.iter().map(|(_, sum, _)| *sum).sum();
        let (best, sum, n) = groups
            .into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.2.cmp(&a.2)))?;
        Some(PlateRead {
            text: best.text.clone(),
            // The group's mean confidence, times its share of all frames' confidence.
            confidence: if total > 0.0 {
                sum / n as f32 * (sum / total)
            } else {
                0.0
            },
            format: best.format.map(str::to_owned),
            frames: n,
        })
    }

    /// The trailer's plate: the rear reads voted like front ones, leaving out those within two
    /// characters of the front plate `front` (the vehicle's own plate seen from behind); kept
    /// only if it fits a plate format or at least two frames read it (a stray read of the
    /// vehicle's back is not a trailer).
    pub(super) fn trailer_plate(&self, front: Option<&PlateRead>) -> Option<PlateRead> {
        let reads: Vec<PlateCandidate> = self
            .rear_frames
            .iter()
            .map(|(_, r)| r)
            .filter(|r| front.is_none_or(|f| !similar(&r.text, &f.text)))
            .cloned()
            .collect();
        bcp_anpr_core::vote::vote(&reads)
            .filter(|v| v.format.is_some() || v.frames >= 2)
            .map(|v| PlateRead {
                text: v.text,
                confidence: v.confidence,
                format: v.format.map(str::to_owned),
                frames: v.frames,
            })
    }

    /// The frame that gave the best read of the plate [`plate`](Self::plate) votes, and the
    /// plate's box in it: where the agent cuts the crossing's plate crop and overview. `None`
    /// when no plate was read; `frame: None` when that read's frame was not kept.
    pub(super) fn plate_frame(&self) -> Option<PlateFrame> {
        let (_, read, frame) = if self.by_identifier {
            let text = self.identifier()?.text;
            self.frames
                .iter()
                .filter(|(_, r, _)| r.text == text)
                .max_by(|a, b| a.1.confidence.total_cmp(&b.1.confidence))?
        } else {
            let reads: Vec<PlateCandidate> =
                self.frames.iter().map(|(_, r, _)| r.clone()).collect();
            let voted = bcp_anpr_core::vote::vote(&reads)?;
            self.frames.get(voted.best_read)?
        };
        Some(PlateFrame {
            frame: *frame,
            bbox: read.bbox,
            text: read.text.clone(),
        })
    }

    pub(super) fn attach(&mut self, at: DateTime<Utc>, evidence: Evidence) {
        match evidence {
            Evidence::PlateReads(reads) => {
                // The frame's best read; the vote over frames decides the plate.
                if let Some(best) = reads.into_iter().next() {
                    self.frames.push((at, best, None));
                }
            }
            Evidence::Frame(frame, reads) => {
                if let Some(best) = reads.into_iter().next() {
                    self.frames.push((at, best, Some(frame)));
                }
            }
            Evidence::RearFrame(reads) => {
                if let Some(best) = reads.into_iter().next() {
                    self.rear_frames.push((at, best));
                }
            }
            Evidence::Dimensions(d) => self.dimensions.push((at, d)),
            Evidence::Scan(s) => match &self.scan {
                Some(_) => self.extra_scans.push(s),
                None => self.scan = Some(s),
            },
        }
    }
}

/// Frames of one plate for at least two frames, then only of a plainly different plate for at
/// least two: when the second began, and the two plates.
pub(super) fn second_plate_starts(
    frames: &[(DateTime<Utc>, PlateCandidate, Option<FrameId>)],
) -> Option<(DateTime<Utc>, String, String)> {
    const MIN_FRAMES: usize = 2;
    let mut sorted: Vec<&(DateTime<Utc>, PlateCandidate, Option<FrameId>)> = frames
        .iter()
        .filter(|(_, r, _)| !r.text.is_empty())
        .collect();
    sorted.sort_by_key(|(t, _, _)| *t);
    let first = &sorted.first()?.1.text;
    let k = sorted
        .iter()
        .position(|(_, r, _)| !similar(&r.text, first))?;
    let (before, after) = sorted.split_at(k);
    let (at, second) = after.first().map(|(t, r, _)| (*t, &r.text))?;
    let clean = after
        .iter()
        .all(|(_, r, _)| similar(&r.text, second) && !similar(&r.text, first));
    (before.len() >= MIN_FRAMES && after.len() >= MIN_FRAMES && clean)
        .then(|| (at, first.clone(), second.clone()))
}

/// The first scan and the others.
fn first_and_rest(scans: Vec<ScanEvent>) -> (Option<ScanEvent>, Vec<ScanEvent>) {
    let mut scans = scans.into_iter();
    (scans.next(), scans.collect())
}

/// Two reads of the same plate: at most two edits apart (OCR confuses a character or two).
pub(crate) fn similar(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 2 {
        return false;
    }
    // Levenshtein distance, one row at a time (plates are a dozen characters).
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()] <= 2
}
