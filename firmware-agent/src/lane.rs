//! The lane correlator: links a vehicle's evidence into one [`Crossing`].
//!
//! A pure state machine (no I/O, no clock): every input comes with the time it happened, and
//! [`LaneCorrelator::poll`] is given `now`. The tokio task in `agent.rs` is its driver.
//!
//! ## Rules
//! - The weighbridge frames a vehicle: `VehicleOn` opens a crossing at `arrived_at`, `VehicleOff`
//!   sets `left_at`. The crossing stays open for late evidence until `left_at + close_after`,
//!   then [`poll`](LaneCorrelator::poll) emits it.
//! - Evidence (a plate read, dimensions, a scan) joins by *when it happened* (a frame's capture
//!   time, the scanner's `scanned_at`), not when it arrived: it joins the vehicle that was on
//!   the bridge then; else the one that arrived within `pre_arrival` after (a camera sees a
//!   vehicle before the bridge does); else the last one that had arrived (a scanner further down
//!   the lane). Evidence older than every crossing waits up to `pre_arrival` for one.
//! - A second `VehicleOn` while a vehicle is still on closes the first with a flag: two vehicles
//!   are never merged. A stable weight with no vehicle on opens one (the agent started with a
//!   vehicle on the bridge), flagged.
//! - Every doubt is written into the record as a [`Flag`] with its reason.

use bcp_anpr::PlateCandidate;
use bcp_record::{Crossing, Dimensions, Flag, PlateRead, ScanEvent, Weighing};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::VecDeque;

/// Time windows of the correlator.
#[derive(Debug, Clone, Copy)]
pub struct LaneRules {
    pub close_after: TimeDelta,
    pub pre_arrival: TimeDelta,
}

impl Default for LaneRules {
    fn default() -> Self {
        Self {
            close_after: TimeDelta::seconds(3),
            pre_arrival: TimeDelta::seconds(2),
        }
    }
}

/// A piece of evidence that joins a crossing by its time.
#[derive(Debug, Clone)]
pub enum Evidence {
    /// The reads of one camera frame, best first.
    PlateReads(Vec<PlateCandidate>),
    Dimensions(Dimensions),
    Scan(ScanEvent),
}

#[derive(Debug)]
struct Pending {
    arrived_at: DateTime<Utc>,
    left_at: Option<DateTime<Utc>>,
    plate_frames: Vec<PlateCandidate>,
    weight: Option<Weighing>,
    dimensions: Option<Dimensions>,
    scan: Option<ScanEvent>,
    extra_scans: Vec<String>,
    flags: Vec<Flag>,
}

impl Pending {
    fn new(arrived_at: DateTime<Utc>) -> Self {
        Self {
            arrived_at,
            left_at: None,
            plate_frames: Vec::new(),
            weight: None,
            dimensions: None,
            scan: None,
            extra_scans: Vec::new(),
            flags: Vec::new(),
        }
    }
}

/// One lane's correlator.
#[derive(Debug)]
pub struct LaneCorrelator {
    post: String,
    lane: String,
    rules: LaneRules,
    /// Crossings not yet emitted, oldest first; only the last may still be on the bridge.
    pending: VecDeque<Pending>,
    /// Evidence that happened before any pending crossing arrived, with its time.
    early: Vec<(DateTime<Utc>, Evidence)>,
    ready: VecDeque<Crossing>,
}

impl LaneCorrelator {
    pub fn new(post: &str, lane: &str, rules: LaneRules) -> Self {
        Self {
            post: post.to_owned(),
            lane: lane.to_owned(),
            rules,
            pending: VecDeque::new(),
            early: Vec::new(),
            ready: VecDeque::new(),
        }
    }

    fn on_bridge(&mut self) -> Option<&mut Pending> {
        self.pending.back_mut().filter(|p| p.left_at.is_none())
    }

    pub fn handle_vehicle_on(&mut self, at: DateTime<Utc>) {
        if let Some(prev) = self.on_bridge() {
            prev.left_at = Some(at);
            prev.flags.push(Flag::new(
                "no_vehicle_off",
                "a second vehicle came on before the weight went back to zero: split, not merged",
            ));
        }
        let mut p = Pending::new(at);
        // Early evidence that is recent enough joins the arriving vehicle.
        let earliest = at - self.rules.pre_arrival;
        for (t, e) in std::mem::take(&mut self.early) {
            if t >= earliest {
                attach(&mut p, e);
            } else {
                tracing::debug!(evidence = ?e, "dropping evidence that matched no vehicle");
            }
        }
        self.pending.push_back(p);
    }

    pub fn handle_stable_weight(&mut self, at: DateTime<Utc>, weight: Weighing) {
        if self.on_bridge().is_none() {
            let mut p = Pending::new(at);
            p.flags.push(Flag::new(
                "arrival_not_seen",
                "stable weight without the vehicle coming on (agent started or reconnected mid-weighing)",
            ));
            self.pending.push_back(p);
        }
        if let Some(p) = self.on_bridge() {
            p.weight = Some(weight);
        }
    }

    pub fn handle_vehicle_off(&mut self, at: DateTime<Utc>) {
        if let Some(p) = self.on_bridge() {
            p.left_at = Some(at);
        }
    }

    /// Evidence that happened at `at` (capture time, scan time, measurement time).
    pub fn handle_evidence(&mut self, at: DateTime<Utc>, evidence: Evidence) {
        let pre = self.rules.pre_arrival;
        let on_bridge_at = |p: &Pending| p.arrived_at <= at && p.left_at.is_none_or(|l| at <= l);
        // 1. The vehicle that was on the bridge then; 2. else one that arrived just after
        // (a camera sees a vehicle before the bridge does); 3. else the last one that had
        // arrived by then (evidence from after it left, such as a scanner further down the lane).
        let target = self
            .pending
            .iter()
            .rposition(on_bridge_at)
            .or_else(|| {
                self.pending
                    .iter()
                    .position(|p| p.arrived_at - pre <= at && at < p.arrived_at)
            })
            .or_else(|| self.pending.iter().rposition(|p| p.arrived_at <= at));
        match target.and_then(|i| self.pending.get_mut(i)) {
            Some(p) => attach(p, evidence),
            None => self.early.push((at, evidence)),
        }
    }

    /// Emits crossings whose window for late evidence has passed.
    pub fn poll(&mut self, now: DateTime<Utc>) -> Option<Crossing> {
        while let Some(front) = self.pending.front() {
            match front.left_at {
                Some(left) if left + self.rules.close_after <= now => {
                    if let Some(p) = self.pending.pop_front() {
                        let c = self.finish(p, left, now);
                        self.ready.push_back(c);
                    }
                }
                _ => break,
            }
        }
        let horizon = now - self.rules.pre_arrival;
        self.early.retain(|(t, e)| {
            let keep = *t >= horizon;
            if !keep {
                if let Evidence::Scan(s) = e {
                    tracing::warn!(scan = %s.scan_id, "scan matched no vehicle (orphan scan)");
                }
            }
            keep
        });
        self.ready.pop_front()
    }

    /// Whether a vehicle is on the bridge now, and how many crossings are still open (on the
    /// bridge or waiting for late evidence), for the control API's `lanes`.
    pub fn occupancy(&self) -> (bool, usize) {
        let on_bridge = self.pending.back().is_some_and(|p| p.left_at.is_none());
        (on_bridge, self.pending.len())
    }

    /// When [`poll`](Self::poll) should next be called, if anything is waiting.
    pub fn poll_timeout(&self) -> Option<DateTime<Utc>> {
        let close = self
            .pending
            .front()
            .and_then(|p| p.left_at)
            .map(|l| l + self.rules.close_after);
        let early = self
            .early
            .iter()
            .map(|(t, _)| *t + self.rules.pre_arrival)
            .min();
        match (close, early) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn finish(&self, mut p: Pending, left_at: DateTime<Utc>, now: DateTime<Utc>) -> Crossing {
        let plate = bcp_anpr::vote::vote(&p.plate_frames).map(|v| PlateRead {
            text: v.text,
            confidence: v.confidence,
            format: v.format.map(str::to_owned),
            frames: v.frames,
        });
        if plate.is_none() {
            let why = if p.plate_frames.is_empty() {
                "no camera frame with a plate-like read"
            } else {
                "reads did not agree on a plate"
            };
            p.flags.push(Flag::new("plate_unread", why));
        }
        if p.weight.is_none() {
            p.flags.push(Flag::new(
                "no_stable_weight",
                "the weight never settled while the vehicle was on the bridge",
            ));
        }
        if p.dimensions.is_none() {
            p.flags.push(Flag::new(
                "no_dimensions",
                "the dimension sensor reported nothing for this vehicle",
            ));
        }
        if p.scan.is_none() {
            p.flags.push(Flag::new(
                "no_scan",
                "no scan event joined before the record closed",
            ));
        }
        for s in &p.extra_scans {
            p.flags.push(Flag::new(
                "extra_scan",
                format!("scan {s} also matched this vehicle"),
            ));
        }
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            now.timestamp().max(0).unsigned_abs(),
            now.timestamp_subsec_nanos(),
        );
        Crossing {
            id: uuid::Uuid::new_v7(ts),
            post: self.post.clone(),
            lane: self.lane.clone(),
            arrived_at: p.arrived_at,
            left_at,
            plate,
            weight: p.weight,
            dimensions: p.dimensions,
            scan: p.scan,
            flags: p.flags,
            images: Vec::new(),
        }
    }
}

fn attach(p: &mut Pending, evidence: Evidence) {
    match evidence {
        Evidence::PlateReads(reads) => {
            // The frame's best read; the vote over frames decides the plate.
            if let Some(best) = reads.into_iter().next() {
                p.plate_frames.push(best);
            }
        }
        Evidence::Dimensions(d) => p.dimensions = Some(d),
        Evidence::Scan(s) => match &p.scan {
            Some(_) => p.extra_scans.push(s.scan_id),
            None => p.scan = Some(s),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bcp_record::{ScanDecision, ScanEvent};

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).expect("valid time")
    }

    fn read(text: &str) -> Evidence {
        Evidence::PlateReads(vec![PlateCandidate {
            text: text.to_owned(),
            confidence: 0.95,
            bbox: [10, 10, 100, 30],
            format: Some("TJ"),
            char_confidences: vec![0.95; text.len()],
        }])
    }

    fn scan(id: &str, at: DateTime<Utc>) -> Evidence {
        Evidence::Scan(ScanEvent {
            scanner_id: "XR-1".into(),
            scan_id: id.into(),
            scanned_at: at,
            lane: None,
            decision: ScanDecision::NoAlarm,
            images: vec![],
            conveyance_id: None,
            decision_by: None,
        })
    }

    fn weighing(kg: f64, at: DateTime<Utc>) -> Weighing {
        Weighing {
            gross_kg: kg,
            division_kg: 20.0,
            stable_at: at,
            device: "wb1".into(),
        }
    }

    fn lane() -> LaneCorrelator {
        LaneCorrelator::new("TJ-1", "L1", LaneRules::default())
    }

    #[test]
    fn one_vehicle_links_all_its_evidence_and_closes_after_the_window() {
        let mut l = lane();
        assert_eq!(l.occupancy(), (false, 0));
        l.handle_vehicle_on(t(0));
        assert_eq!(l.occupancy(), (true, 1));
        l.handle_evidence(
            t(300),
            Evidence::Dimensions(Dimensions {
                length_mm: 16_000,
                width_mm: 2_500,
                height_mm: 4_000,
            }),
        );
        l.handle_stable_weight(t(600), weighing(24_560.0, t(600)));
        l.handle_evidence(t(700), read("1234AB01"));
        l.handle_evidence(t(900), read("1234AB01"));
        l.handle_vehicle_off(t(2_000));
        assert_eq!(l.occupancy(), (false, 1), "off the bridge, still open");
        // A late scan (it happened on the bridge) still joins.
        l.handle_evidence(t(1_500), scan("S1", t(1_500)));
        assert_eq!(l.poll_timeout(), Some(t(5_000)));
        assert!(
            l.poll(t(4_999)).is_none(),
            "closed before the late-evidence window ended"
        );
        let c = l.poll(t(5_000)).expect("a crossing");
        assert_eq!(c.plate.as_ref().map(|p| p.text.as_str()), Some("1234AB01"));
        assert_eq!(c.plate.as_ref().map(|p| p.frames), Some(2));
        assert_eq!(c.weight.as_ref().map(|w| w.gross_kg), Some(24_560.0));
        assert_eq!(c.dimensions.map(|d| d.length_mm), Some(16_000));
        assert_eq!(c.scan.as_ref().map(|s| s.scan_id.as_str()), Some("S1"));
        assert!(c.flags.is_empty(), "{:?}", c.flags);
        assert_eq!((c.arrived_at, c.left_at), (t(0), t(2_000)));
        assert!(l.poll(t(10_000)).is_none());
        assert_eq!(l.occupancy(), (false, 0));
    }

    #[test]
    fn evidence_joins_by_when_it_happened_not_when_it_arrived() {
        let mut l = lane();
        l.handle_vehicle_on(t(0));
        l.handle_vehicle_off(t(2_000));
        l.handle_vehicle_on(t(2_500));
        // The first vehicle's frame is recognised only after the second vehicle arrived.
        l.handle_evidence(t(1_000), read("1111AA01"));
        l.handle_evidence(t(3_000), read("2222BB02"));
        l.handle_vehicle_off(t(4_000));
        let a = l.poll(t(5_000)).expect("first crossing");
        assert_eq!(a.plate.map(|p| p.text), Some("1111AA01".into()));
        assert!(l.poll(t(6_999)).is_none());
        let b = l.poll(t(7_000)).expect("second crossing");
        assert_eq!(b.plate.map(|p| p.text), Some("2222BB02".into()));
    }

    #[test]
    fn a_second_vehicle_without_the_first_leaving_is_split_and_flagged() {
        let mut l = lane();
        l.handle_vehicle_on(t(0));
        l.handle_stable_weight(t(500), weighing(10_000.0, t(500)));
        l.handle_vehicle_on(t(1_000));
        l.handle_stable_weight(t(1_500), weighing(30_000.0, t(1_500)));
        l.handle_vehicle_off(t(2_000));
        let a = l.poll(t(4_000)).expect("first");
        assert_eq!(a.weight.map(|w| w.gross_kg), Some(10_000.0));
        assert!(a.flags.iter().any(|f| f.code == "no_vehicle_off"));
        let b = l.poll(t(5_000)).expect("second");
        assert_eq!(b.weight.map(|w| w.gross_kg), Some(30_000.0));
        assert!(!b.flags.iter().any(|f| f.code == "no_vehicle_off"));
    }

    #[test]
    fn missing_evidence_is_flagged_with_reasons() {
        let mut l = lane();
        l.handle_vehicle_on(t(0));
        l.handle_vehicle_off(t(1_000));
        let c = l.poll(t(4_000)).expect("a crossing even with nothing read");
        let codes: Vec<_> = c.flags.iter().map(|f| f.code.as_str()).collect();
        assert_eq!(
            codes,
            [
                "plate_unread",
                "no_stable_weight",
                "no_dimensions",
                "no_scan"
            ]
        );
        assert!(c.flags.iter().all(|f| !f.reason.is_empty()));
    }

    #[test]
    fn early_frames_join_the_arriving_vehicle_and_stale_ones_do_not() {
        let mut l = lane();
        l.handle_evidence(t(-10_000), read("9999XX09"));
        l.handle_evidence(t(-500), read("1234AB01"));
        l.handle_vehicle_on(t(0));
        l.handle_vehicle_off(t(1_000));
        let c = l.poll(t(4_000)).expect("a crossing");
        let p = c.plate.expect("plate");
        assert_eq!((p.text.as_str(), p.frames), ("1234AB01", 1));
    }

    #[test]
    fn a_stable_weight_without_arrival_opens_a_flagged_crossing() {
        let mut l = lane();
        l.handle_stable_weight(t(0), weighing(5_000.0, t(0)));
        l.handle_vehicle_off(t(500));
        let c = l.poll(t(3_500)).expect("a crossing");
        assert!(c.flags.iter().any(|f| f.code == "arrival_not_seen"));
        assert_eq!(c.weight.map(|w| w.gross_kg), Some(5_000.0));
    }
}
