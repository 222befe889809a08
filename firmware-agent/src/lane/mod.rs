//! The lane correlator: links a vehicle's evidence into one [`Crossing`], and decides, with a
//! reason a customs officer can read, everything that is not one vehicle's ordinary crossing.
//!
//! A pure state machine (no I/O, no clock): every input comes with the time it happened, and
//! [`LaneCorrelator::poll`] is given `now`. The tokio task in `agent.rs` is its driver.
//!
//! ## Outputs
//! - [`poll`](LaneCorrelator::poll): records for the outbox. A vehicle's [`Crossing`]; or a
//!   Crossing-shaped *scan record* (no plate, weight or dimensions, `arrived_at = left_at =` the
//!   scan's time) for a scan that has no open crossing to join, flagged `orphan_scan` or
//!   `scan_after_close`. Scan records go through the same outbox, seal and sync as crossings.
//! - [`poll_event`](LaneCorrelator::poll_event): decisions that make no record ([`LaneEvent`]):
//!   a vehicle that reversed off, evidence that matched nothing. The agent logs them.
//! - [`counters`](LaneCorrelator::counters): how often each rule fired.
//!
//! ## Rules (the windows are [`LaneRules`], the `[lane]` section of the config)
//! - **Framing**: the weighbridge frames a vehicle (on a lane with presence sensors at the
//!   bridge's two ends, the agent's `[presence]`, the sensors do while they are connected, and
//!   say the end it left by; with `[camera] presence = "motion"`, the camera's motion does,
//!   `crate::camera_presence`, without the end): `VehicleOn` opens a crossing at `arrived_at`, `VehicleOff` sets
//!   `left_at`. The crossing stays open for late evidence until
//!   `left_at + close_after`, then [`poll`](LaneCorrelator::poll) emits it.
//! - **Framing told late** (a camera framing by motion lags behind its recognition; the
//!   weighbridge, dimension sensor and scanner do not): a `VehicleOff` hands back what
//!   happened after its `left_at` (weights, frames, dimensions, scans), which joined the
//!   vehicle meanwhile because it was still on; each is placed again by its time. A
//!   `VehicleOn` from before the stable weight that opened an `arrival_not_seen` crossing is
//!   that crossing's arrival: it takes it over, flag dropped, nothing split. Evidence that
//!   reaches the lane before the vehicle it shows is known waits only `pre_arrival` (see
//!   below), so the framing may be told at most about that late (a property test holds the
//!   lane to it with the camera's on, off and frames up to `pre_arrival` late).
//! - **Evidence joins by when it happened** (a frame's capture time, the scanner's `scanned_at`),
//!   not when it arrived: it joins the vehicle that was on the bridge then; else the one that
//!   arrived within `pre_arrival` after (a camera sees a vehicle before the bridge does). A front
//!   read of the plate of the vehicle that had just left, captured after it left and before the
//!   next came on, is that vehicle's last look at the camera and joins it, not the next one,
//!   however late the camera's recognition got to the frame (a camera framing vehicles by
//!   motion, `crate::camera_presence`, lags behind when reading takes longer than a frame). Other
//!   evidence waits until `pre_arrival` after it happened, because the vehicle it shows may not
//!   have come on yet (its frame can reach the lane before the weighbridge does); then it joins
//!   the last vehicle that had arrived by then and is still open, or is reported as
//!   [`LaneEvent::Unmatched`].
//! - **A late scan still joins its vehicle.** The scanner workstation's verdict can come minutes
//!   after the vehicle left. Design: a crossing without a scan is *held open* for up to
//!   `scan_wait` after its vehicle left (zero on a lane without a scanner: not held); a scan that
//!   arrives in that time joins it, flagged `scan_joined_late` when the crossing would otherwise
//!   have closed. A scan joins, in this order: the open crossing whose plate equals the
//!   conveyance id the operator typed at the scanner; else by time: the vehicle on the bridge at
//!   `scanned_at`, one that came on within `pre_arrival` after, one that left at most
//!   `scan_after_left` before (a portal further down the lane). A typed id that contradicts the
//!   plate read by time is flagged `scan_conveyance_mismatch`. A scan that comes after its
//!   crossing was closed (the hold ran out) becomes a scan record flagged `scan_after_close`,
//!   whose reason names that crossing's id: a supplement, never silently merged into a record
//!   already sealed and sent. (Holding records costs latency and, on a power cut, the held
//!   crossings; on shutdown they are closed and committed.)
//! - **Two vehicles close together are split, not merged**, and both crossings are flagged
//!   `tailgating` with the reason: a second `VehicleOn` while a vehicle is still on (light
//!   curtains can say so; the first also gets `no_vehicle_off`); a `VehicleOn` less than
//!   `tailgate_gap` after the previous vehicle left (evidence near the boundary may belong to
//!   either); and a second plate read on the bridge without the weight going back to zero (a
//!   weighbridge sees two vehicles nose to tail as one): at least two frames of one plate, then
//!   at least two frames of a plain different one (more than two characters apart, so a misread
//!   never splits), splits the crossing at the first frame of the second plate; evidence from
//!   then on goes to the second. Only front reads count here: a rear camera's reads
//!   ([`Evidence::RearFrame`]) never split a crossing (a trailer's plate would look like a
//!   second vehicle); when a crossing is split they go, by their time, with the rest.
//! - **A tractor and trailer is one crossing with both plates.** A lane's rear camera
//!   (`[rear_camera]`) reads the plate on the back of what is on the bridge; its reads
//!   ([`Evidence::RearFrame`]) join by time like front reads and are voted over their frames
//!   into the crossing's `trailer_plate`, with the format that matched (`RU-TRAILER`, ...).
//!   A rear read within two characters of the voted front plate is the vehicle's own plate seen
//!   from behind (a rigid truck plated at both ends): it is left out of that vote, so such a
//!   truck has no `trailer_plate`, and nothing is flagged. A trailer plate fits a plate format
//!   or is read in at least two frames (one stray read is not a trailer). When the front plate
//!   is unread the rear vote is kept as `trailer_plate` (it cannot be told apart) and the
//!   `plate_unread` reason says what the rear camera read. Rear reads alone make no crossing: they never open
//!   one, one that matches no vehicle is [`LaneEvent::Unmatched`], and they are no evidence
//!   that a vehicle crossed (a presence with only rear reads and no weight is a reversal).
//! - **A vehicle that reverses off is not a crossing**: no record, a [`LaneEvent::Reversal`] with
//!   the reason (the agent logs it at INFO) and a counter. Decided when the crossing would close,
//!   so that its late evidence is not given to the next vehicle: a vehicle that left by the entry
//!   side ([`BridgeEnd::Entry`], from presence sensors that know the side, via
//!   [`handle_vehicle_off_by`](LaneCorrelator::handle_vehicle_off_by)); or, where the side is not
//!   known (a weighbridge alone), a presence with no stable weight and no evidence at all (no
//!   plate, dimensions or scan): nothing shows a vehicle crossed. A presence with any evidence
//!   but no stable weight is a crossing flagged `no_stable_weight` (it may have driven through
//!   without stopping). A scan that had joined a reversing vehicle is not lost: it becomes an
//!   `orphan_scan` record saying so.
//! - **An axle scale's vehicle is one crossing**: `crate::axle_scale` frames the vehicle from
//!   its first axle group coming on to its last leaving and gives one stable weight, the sum,
//!   with the axle weights. When some groups left without a stable weight the sum is partial:
//!   the crossing is flagged `axle_unweighed`, the reason saying how many groups and that the
//!   gross is only the weighed groups' sum (the record's `unweighed_axles` says so too).
//! - **An unread plate still yields a crossing**, flagged `plate_unread` with why (no frame with
//!   a plate-like read, or frames with no readable text) and, if the scanner operator typed a
//!   conveyance id, what they typed.
//! - **A scan that matches no vehicle becomes an orphan-scan record**: when no crossing, open or
//!   recently closed, matches it and none came on within `pre_arrival` after it, a scan record
//!   flagged `orphan_scan` with the reason.
//!
//! Every doubt is written into the record as a [`Flag`] with its reason.
//!
//! ## Air and river posts: an identifier in the plate slot
//! With a [`Conveyance`] whose `identifier` is set (an air post's IATA ULD id, a river post's
//! ENI or IMO number), each frame's reads are validated with `bcp_anpr_core::identifiers` before
//! they join: reads that fit no shape of the scheme are dropped, a read with one look-alike
//! character whose repair alone makes the check digit hold is repaired (confidence x 0.85), and
//! the plate slot holds the identifier with its scheme as `format` (`ULD`, `ENI`, `IMO`), voted
//! by whole text over the frames. An identifier known only through a repair is flagged
//! `identifier_repaired`; `plate_unread` then says what was read and why it was refused (the
//! code is kept so that central's filters on unread conveyances work for every post type). A
//! conveyance that is not weighed (a vessel: the river post's `[weighbridge]` is its presence
//! sensor) is not flagged `no_stable_weight` or `no_dimensions`, and its presence alone is a
//! crossing (a vessel passing unidentified is recorded, flagged `plate_unread`), unless it left
//! by the entry side.

mod pending;
mod words;

use bcp_anpr_core::identifiers::{self, Check, IdError, IdKind};
use bcp_anpr_core::PlateCandidate;
use bcp_record::{Crossing, Dimensions, Flag, ScanEvent, Weighing};
use chrono::{DateTime, TimeDelta, Utc};
pub(crate) use pending::similar;
use pending::{second_plate_starts, Pending};
use std::collections::VecDeque;
use uuid::Uuid;
use words::normalise_id;
pub(crate) use words::{clock, decision, duration};

/// Time windows of the correlator (the `[lane]` config section, `*_ms` keys).
#[derive(Debug, Clone, Copy)]
pub struct LaneRules {
    /// How long after a vehicle left its crossing waits for late evidence.
    pub close_after: TimeDelta,
    /// How long before a vehicle came on evidence may have happened and still be its own.
    pub pre_arrival: TimeDelta,
    /// How long after a vehicle left a crossing without a scan is held open for the scan's
    /// result; zero on a lane without a scanner (nothing held).
    pub scan_wait: TimeDelta,
    /// How long after a vehicle left a scan may have been made and still be its scan by time.
    pub scan_after_left: TimeDelta,
    /// A vehicle that comes on less than this after the previous one left is tailgating.
    pub tailgate_gap: TimeDelta,
}

impl Default for LaneRules {
    /// The windows of a lane without a scanner (`scan_wait` zero).
    fn default() -> Self {
        Self {
            close_after: TimeDelta::seconds(3),
            pre_arrival: TimeDelta::seconds(2),
            scan_wait: TimeDelta::zero(),
            scan_after_left: TimeDelta::seconds(30),
            tailgate_gap: TimeDelta::milliseconds(500),
        }
    }
}

/// What the lane's conveyances are (see "Air and river posts" in the module header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conveyance {
    /// The identifier read into the plate slot; `None`: a road vehicle's number plate.
    pub identifier: Option<IdKind>,
    /// Whether the conveyance is weighed and measured (flags when it is not).
    pub weighed: bool,
}

impl Default for Conveyance {
    /// A road vehicle.
    fn default() -> Self {
        Self {
            identifier: None,
            weighed: true,
        }
    }
}

/// What validating one frame's identifier reads found, kept for the record's reasons.
#[derive(Debug, Clone)]
struct IdNote {
    at: DateTime<Utc>,
    /// The identifier (after repair), or the refused read.
    text: String,
    /// `Some(what was read)` if it was repaired; for a refused read, why.
    note: Option<String>,
    refused: bool,
}

/// How many identifier notes are kept (a few minutes of frames).
const ID_NOTES_KEPT: usize = 256;

/// The agent's reference to a camera frame it keeps (its frame cache's key): the correlator
/// carries it with the frame's best read and never sees the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FrameId(pub u64);

/// Where a crossing's plate images come from: the frame of the winning plate's best read and
/// the plate's box in it (see [`LaneCorrelator::poll_record`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlateFrame {
    /// `None`: the read came without a frame reference ([`Evidence::PlateReads`]).
    pub frame: Option<FrameId>,
    /// `[x, y, w, h]` in the frame's pixels.
    pub bbox: [i32; 4],
    /// The text of that read (the voted plate may differ by a corrected character).
    pub text: String,
}

/// A record for the outbox, with where its plate images come from.
#[derive(Debug, Clone)]
pub struct LaneRecord {
    pub crossing: Crossing,
    /// Set on a vehicle's crossing with a plate; `None` on scan records and unread plates.
    pub plate_frame: Option<PlateFrame>,
}

/// A piece of evidence that joins a crossing by its time.
#[derive(Debug, Clone)]
pub enum Evidence {
    /// The reads of one camera frame, best first (the frame's image is not kept).
    PlateReads(Vec<PlateCandidate>),
    /// The reads of one camera frame, best first, and the agent's reference to its image, from
    /// which the crossing's plate crop and overview are made if it gives the winning read.
    Frame(FrameId, Vec<PlateCandidate>),
    Dimensions(Dimensions),
    /// A scan; [`LaneCorrelator::handle_scan`] is the better entry (it knows when it arrived).
    Scan(ScanEvent),
    /// The reads of one frame of the rear camera, best first: a trailer's plate (see the module
    /// header). Its image is not kept; it never splits a crossing.
    RearFrame(Vec<PlateCandidate>),
}

/// The end of the bridge a vehicle left by, where the presence sensors can tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BridgeEnd {
    /// A weighbridge alone cannot tell.
    #[default]
    Unknown,
    /// Back the way it came: it reversed off.
    Entry,
    /// Onward: it crossed.
    Exit,
}

/// A decision of the correlator that makes no record; the agent logs it.
#[derive(Debug, Clone, PartialEq)]
pub enum LaneEvent {
    /// A vehicle came on and went off again without crossing: no record.
    Reversal {
        arrived_at: DateTime<Utc>,
        left_at: DateTime<Utc>,
        /// The plate read while it was on, if any.
        plate: Option<String>,
        reason: String,
    },
    /// Evidence that joined no vehicle within its window (a passer-by's plate, ...).
    Unmatched {
        at: DateTime<Utc>,
        what: &'static str,
        reason: String,
    },
}

/// How often each rule fired since the correlator started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaneCounters {
    /// Vehicle crossings emitted.
    pub crossings: u64,
    /// Scans that joined a crossing held open for them (`scan_joined_late`).
    pub late_scans: u64,
    /// Scan records for a scan that came after its crossing closed (`scan_after_close`).
    pub scans_after_close: u64,
    /// Scan records for a scan that matched no vehicle (`orphan_scan`).
    pub orphan_scans: u64,
    /// Evidence that matched nothing and was dropped ([`LaneEvent::Unmatched`]).
    pub unmatched: u64,
    /// Times two vehicles were split apart (`tailgating`, on both crossings).
    pub tailgates: u64,
    /// Vehicles that reversed off: no record ([`LaneEvent::Reversal`]).
    pub reversals: u64,
}

/// What is remembered of a closed crossing, so that a scan arriving after it closed can name it.
#[derive(Debug, Clone)]
struct Closed {
    id: Uuid,
    plate: Option<String>,
    arrived_at: DateTime<Utc>,
    left_at: DateTime<Utc>,
}

/// How many closed crossings are remembered for scans that come after the close.
const CLOSED_KEPT: usize = 64;

/// One lane's correlator.
#[derive(Debug)]
pub struct LaneCorrelator {
    post: String,
    lane: String,
    rules: LaneRules,
    /// Crossings not yet emitted, in arrival order; only the last may still be on the bridge.
    pending: VecDeque<Pending>,
    /// Evidence that happened before any pending crossing arrived, with its time.
    early: Vec<(DateTime<Utc>, Evidence)>,
    /// The last crossings emitted, oldest first.
    closed: VecDeque<Closed>,
    ready: VecDeque<LaneRecord>,
    events: VecDeque<LaneEvent>,
    counters: LaneCounters,
    conveyance: Conveyance,
    id_notes: VecDeque<IdNote>,
}

impl LaneCorrelator {
    pub fn new(post: &str, lane: &str, rules: LaneRules) -> Self {
        Self {
            post: post.to_owned(),
            lane: lane.to_owned(),
            rules,
            pending: VecDeque::new(),
            early: Vec::new(),
            closed: VecDeque::new(),
            ready: VecDeque::new(),
            events: VecDeque::new(),
            counters: LaneCounters::default(),
            conveyance: Conveyance::default(),
            id_notes: VecDeque::new(),
        }
    }

    /// The same lane for another kind of conveyance (an air or river post's profile).
    pub fn with_conveyance(mut self, conveyance: Conveyance) -> Self {
        self.conveyance = conveyance;
        self
    }

    fn new_pending(&self, at: DateTime<Utc>) -> Pending {
        let mut p = Pending::new(at);
        p.by_identifier = self.conveyance.identifier.is_some();
        p
    }

    /// A frame's reads as identifiers of `kind`: validated, repaired where exactly one repair
    /// holds, best first; notes what was repaired or refused.
    fn identifiers(
        &mut self,
        kind: IdKind,
        at: DateTime<Utc>,
        reads: Vec<PlateCandidate>,
    ) -> Vec<PlateCandidate> {
        let mut out: Vec<PlateCandidate> = Vec::new();
        for c in reads {
            let (text, confidence, format, note, refused) =
                match identifiers::validate(kind, &c.text) {
                    Ok(id) => {
                        let (confidence, note) = match id.check {
                            Check::Repaired { .. } => (c.confidence * 0.85, Some(c.text.clone())),
                            Check::Valid | Check::NoCheckDigit => (c.confidence, None),
                        };
                        (id.text, confidence, Some(id.scheme.code()), note, false)
                    }
                    Err(IdError::Shape { .. }) => continue,
                    Err(e) => (c.text.clone(), 0.0, None, Some(e.to_string()), true),
                };
            self.id_notes.push_back(IdNote {
                at,
                text: text.clone(),
                note,
                refused,
            });
            if refused || out.iter().any(|o| o.text == text) {
                continue;
            }
            out.push(PlateCandidate {
                char_confidences: vec![confidence; text.chars().count()],
                text,
                confidence,
                format,
                bbox: c.bbox,
            });
        }
        while self.id_notes.len() > ID_NOTES_KEPT {
            self.id_notes.pop_front();
        }
        out.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        out
    }

    /// The identifier notes of a crossing's time, `pre_arrival` before it came on included.
    fn notes_of(&self, p: &Pending, left_at: DateTime<Utc>) -> Vec<&IdNote> {
        let from = p.arrived_at - self.rules.pre_arrival;
        self.id_notes
            .iter()
            .filter(|n| from <= n.at && n.at <= left_at)
            .collect()
    }

    pub fn rules(&self) -> &LaneRules {
        &self.rules
    }

    /// New windows (a config reload): crossings still open are closed by the new ones.
    pub fn set_rules(&mut self, rules: LaneRules) {
        self.rules = rules;
    }

    pub fn counters(&self) -> &LaneCounters {
        &self.counters
    }

    fn on_bridge(&mut self) -> Option<&mut Pending> {
        self.pending.back_mut().filter(|p| p.left_at.is_none())
    }

    pub fn handle_vehicle_on(&mut self, at: DateTime<Utc>) {
        let gap = self.rules.tailgate_gap;
        // A vehicle seen coming on before the stable weight that opened a crossing without an
        // arrival is that crossing's vehicle, seen late (a camera whose recognition lags).
        let adopted = self
            .pending
            .back()
            .is_some_and(|p| p.opened_by_weight && p.left_at.is_none() && at <= p.arrived_at)
            .then(|| self.pending.pop_back())
            .flatten();
        let mut tailgate = None;
        if let Some(prev) = self.on_bridge() {
            prev.left_at = Some(at);
            prev.flags.push(Flag::new(
                "no_vehicle_off",
                "a second vehicle came on before the weight went back to zero: split, not merged",
            ));
            prev.flags.push(Flag::new(
                "tailgating",
                format!(
                    "the next vehicle came on at {} while this one was still on the bridge: split into two crossings; this weight may include part of the other vehicle",
                    clock(at)
                ),
            ));
            tailgate = Some(format!(
                "came on while the vehicle that arrived at {} was still on the bridge: split into two crossings; this weight may include part of the other vehicle",
                clock(prev.arrived_at)
            ));
        } else if let Some(prev) = self
            .pending
            .back_mut()
            .filter(|p| p.left_at.is_some_and(|l| l <= at && at - l < gap))
        {
            let since = at - prev.left_at.unwrap_or(at);
            prev.flags.push(Flag::new(
                "tailgating",
                format!(
                    "the next vehicle came on {} after this one left (closer than {}): evidence near the boundary may belong to either",
                    duration(since),
                    duration(gap)
                ),
            ));
            tailgate = Some(format!(
                "came on {} after the vehicle before it left (closer than {}): evidence near the boundary may belong to either",
                duration(since),
                duration(gap)
            ));
        }
        let mut p = match adopted {
            Some(mut p) => {
                p.arrived_at = at;
                p.opened_by_weight = false;
                p.flags.retain(|f| f.code != "arrival_not_seen");
                p
            }
            None => self.new_pending(at),
        };
        if let Some(reason) = tailgate {
            self.counters.tailgates += 1;
            p.flags.push(Flag::new("tailgating", reason));
        }
        self.join_early(&mut p);
        self.pending.push_back(p);
    }

    /// Early evidence that is recent enough joins `p`, a vehicle arriving (the last looks at
    /// the one before excepted); the rest waits for `poll` to report it.
    fn join_early(&mut self, p: &mut Pending) {
        let earliest = p.arrived_at - self.rules.pre_arrival;
        for (t, e) in std::mem::take(&mut self.early) {
            if let Some(prev) = self
                .last_look_of_the_one_that_left(t, &e)
                .and_then(|i| self.pending.get_mut(i))
            {
                prev.attach(t, e);
            } else if t >= earliest {
                p.attach(t, e);
            } else {
                self.early.push((t, e));
            }
        }
    }

    /// A stable weight; ignored for a conveyance that is not weighed (a river post's
    /// `[weighbridge]` only tells presence).
    pub fn handle_stable_weight(&mut self, at: DateTime<Utc>, weight: Weighing) {
        if !self.conveyance.weighed {
            return;
        }
        if self.on_bridge().is_none() {
            let mut p = self.new_pending(at);
            p.opened_by_weight = true;
            p.flags.push(Flag::new(
                "arrival_not_seen",
                "stable weight without the vehicle coming on (agent started or reconnected mid-weighing)",
            ));
            self.join_early(&mut p);
            self.pending.push_back(p);
        }
        if let Some(p) = self.on_bridge() {
            p.weights.push(weight);
        }
    }

    /// The vehicle on the bridge left, by an end the sensors could not tell.
    pub fn handle_vehicle_off(&mut self, at: DateTime<Utc>) {
        self.handle_vehicle_off_by(at, BridgeEnd::Unknown);
    }

    /// The vehicle on the bridge left by `end` (a vehicle leaving by the entry reversed off).
    pub fn handle_vehicle_off_by(&mut self, at: DateTime<Utc>, end: BridgeEnd) {
        let Some(p) = self.on_bridge() else {
            return;
        };
        p.left_at = Some(at);
        p.left_by = end;
        // What happened after it left is not its own: a presence that says so late (a camera
        // whose recognition lags) let the next vehicle's weight and frames join it meanwhile.
        // They are placed again by their time.
        let (weights, evidence) = p.take_after(at);
        for w in weights {
            self.handle_stable_weight(w.stable_at, w);
        }
        for (t, e) in evidence {
            match e {
                Evidence::Scan(scan) => self.handle_scan(t, scan),
                e => self.place_evidence(t, e),
            }
        }
    }

    /// Evidence that happened at `at` (capture time, measurement time). A scan given here is
    /// handled as [`handle_scan`](Self::handle_scan) arriving at `at`.
    pub fn handle_evidence(&mut self, at: DateTime<Utc>, evidence: Evidence) {
        let evidence = match (self.conveyance.identifier, evidence) {
            (_, Evidence::Scan(scan)) => return self.handle_scan(at, scan),
            (Some(kind), Evidence::PlateReads(reads)) => {
                Evidence::PlateReads(self.identifiers(kind, at, reads))
            }
            (Some(kind), Evidence::Frame(frame, reads)) => {
                Evidence::Frame(frame, self.identifiers(kind, at, reads))
            }
            (_, e) => e,
        };
        self.place_evidence(at, evidence);
    }

    /// Evidence (a scan aside, its identifiers validated) joins the crossing its time says.
    fn place_evidence(&mut self, at: DateTime<Utc>, evidence: Evidence) {
        let pre = self.rules.pre_arrival;
        // 1. The vehicle that was on the bridge then; 2. else the one that had just left, when
        // this is its plate (its last look, however late the camera got to it); 3. else one
        // that arrived just after (a camera sees a vehicle before the bridge does); else wait
        // (see `poll`).
        let target = self
            .pending
            .iter()
            .rposition(|p| p.was_on_bridge_at(at))
            .or_else(|| self.last_look_of_the_one_that_left(at, &evidence))
            .or_else(|| {
                self.pending
                    .iter()
                    .position(|p| p.arrived_at - pre <= at && at < p.arrived_at)
            });
        let is_plate = matches!(evidence, Evidence::PlateReads(_) | Evidence::Frame(..));
        match target.and_then(|i| self.pending.get_mut(i)) {
            Some(p) => p.attach(at, evidence),
            None => self.early.push((at, evidence)),
        }
        if is_plate {
            self.split_on_second_plate();
        }
    }

    /// The open crossing whose vehicle had left last by `at`, when `evidence` is a front read
    /// of its plate: a frame of the vehicle driving off, captured after it left and before the
    /// next one came on, is its own, not the next vehicle's (which would then look like two
    /// vehicles, one behind the other).
    fn last_look_of_the_one_that_left(
        &self,
        at: DateTime<Utc>,
        evidence: &Evidence,
    ) -> Option<usize> {
        let text = match evidence {
            Evidence::PlateReads(reads) | Evidence::Frame(_, reads) => &reads.first()?.text,
            _ => return None,
        };
        let i = self
            .pending
            .iter()
            .rposition(|p| p.left_at.is_some_and(|l| l < at))?;
        let p = self.pending.get(i)?;
        let next_arrived = self.pending.get(i + 1).is_some_and(|n| n.arrived_at <= at);
        (!text.is_empty() && !next_arrived && p.plate().is_some_and(|v| similar(text, &v.text)))
            .then_some(i)
    }

    /// Splits the vehicle on the bridge in two when its frames show a second plate (see the
    /// module header).
    fn split_on_second_plate(&mut self) {
        let Some(a) = self.pending.back_mut().filter(|p| p.left_at.is_none()) else {
            return;
        };
        let Some((at, first, second)) = second_plate_starts(&a.frames) else {
            return;
        };
        a.left_at = Some(at);
        let mut b = a.split_off(at, |t| t < at);
        a.flags.push(Flag::new(
            "tailgating",
            format!(
                "a second plate, {second}, was read from {} while this vehicle ({first}) was still on the bridge and the weight never went back to zero: two vehicles, split into two crossings; this weight may include part of the other vehicle",
                clock(at)
            ),
        ));
        b.flags.push(Flag::new(
            "tailgating",
            format!(
                "came onto the bridge behind {first} before it had left (plate {second} first read at {}): split from it; this weight may include part of the other vehicle",
                clock(at)
            ),
        ));
        self.counters.tailgates += 1;
        self.pending.push_back(b);
    }

    /// A scan result that arrived at `now` (it happened at `scan.scanned_at`); see the module
    /// header for how it finds its vehicle.
    pub fn handle_scan(&mut self, now: DateTime<Utc>, scan: ScanEvent) {
        if let Some(scan) = self.place_scan(now, scan, true) {
            self.early.push((scan.scanned_at, Evidence::Scan(scan)));
        }
    }

    /// Joins `scan` to its crossing, or records it apart after a closed one; gives it back when
    /// neither is possible yet. With `may_wait`, a scan that matches only a vehicle that had
    /// left is given back while a next vehicle could still come on within `pre_arrival`.
    fn place_scan(
        &mut self,
        now: DateTime<Utc>,
        scan: ScanEvent,
        may_wait: bool,
    ) -> Option<ScanEvent> {
        let at = scan.scanned_at;
        let typed = scan
            .conveyance_id
            .as_deref()
            .map(normalise_id)
            .filter(|s| !s.is_empty());
        let by_id = typed.as_deref().and_then(|id| {
            self.pending
                .iter()
                .enumerate()
                .filter(|(_, p)| p.plate().is_some_and(|r| r.text == id))
                // Prefer a crossing still without a scan, then the nearest in time.
                .min_by_key(|(_, p)| (p.scan.is_some(), (p.arrived_at - at).abs()))
                .map(|(i, _)| {
                    let how = format!("by the conveyance id {id} typed at the scanner");
                    (i, how, false)
                })
        });
        let target = by_id.or_else(|| self.scan_target_by_time(at));
        if target
            .as_ref()
            .is_some_and(|(_, _, after_left)| *after_left)
            && may_wait
            && now < at + self.rules.pre_arrival
        {
            return Some(scan);
        }
        let close_after = self.rules.close_after;
        if let Some((i, how, _)) = target {
            let Some(p) = self.pending.get_mut(i) else {
                return Some(scan);
            };
            if let (Some(id), Some(read)) = (typed.as_deref(), p.plate()) {
                if read.text != id {
                    p.flags.push(Flag::new(
                        "scan_conveyance_mismatch",
                        format!(
                            "scan {} joined {how}, but the conveyance id typed at the scanner is {id} and the lane read {}",
                            scan.scan_id, read.text
                        ),
                    ));
                }
            }
            if let Some(left) = p.left_at.filter(|l| now > *l + close_after) {
                p.flags.push(Flag::new(
                    "scan_joined_late",
                    format!(
                        "scan {} ({}) arrived {} after the vehicle left; the crossing was held open for it and it joined {how}",
                        scan.scan_id,
                        decision(&scan),
                        duration(now - left)
                    ),
                ));
                self.counters.late_scans += 1;
            }
            p.attach(at, Evidence::Scan(scan));
            return None;
        }
        if let Some((closed, how)) = self.closed_match(typed.as_deref(), at) {
            let reason = format!(
                "scan {} ({}) arrived {} after crossing {} ({}, left at {}) was closed; it belongs to that crossing {how}, and is recorded apart so the sealed crossing is not changed",
                scan.scan_id,
                decision(&scan),
                duration(now - closed.left_at),
                closed.id,
                closed.plate.as_deref().map_or("plate unread".to_owned(), |p| format!("plate {p}")),
                clock(closed.left_at),
            );
            self.counters.scans_after_close += 1;
            let record = self.scan_record(scan, Flag::new("scan_after_close", reason), now);
            self.ready.push_back(LaneRecord {
                crossing: record,
                plate_frame: None,
            });
            return None;
        }
        Some(scan)
    }

    /// The open crossing a scan made at `at` belongs to by time, how it was chosen, and whether
    /// only because that vehicle had left shortly before.
    fn scan_target_by_time(&self, at: DateTime<Utc>) -> Option<(usize, String, bool)> {
        let pre = self.rules.pre_arrival;
        let after = self.rules.scan_after_left;
        if let Some(i) = self.pending.iter().rposition(|p| p.was_on_bridge_at(at)) {
            let how = format!(
                "by time: scanned at {} while the vehicle was on the bridge",
                clock(at)
            );
            return Some((i, how, false));
        }
        if let Some(i) = self
            .pending
            .iter()
            .position(|p| p.arrived_at - pre <= at && at < p.arrived_at)
        {
            let how = format!(
                "by time: scanned at {}, just before the vehicle came on",
                clock(at)
            );
            return Some((i, how, false));
        }
        let i = self
            .pending
            .iter()
            .rposition(|p| p.left_at.is_some_and(|l| l < at && at - l <= after))?;
        let how = format!(
            "by time: scanned at {}, within {} after the vehicle left",
            clock(at),
            duration(after)
        );
        Some((i, how, true))
    }

    /// The closed crossing a scan belongs to: by the typed id, else by time.
    fn closed_match(&self, typed: Option<&str>, at: DateTime<Utc>) -> Option<(Closed, String)> {
        if let Some(id) = typed {
            if let Some(c) = self
                .closed
                .iter()
                .rev()
                .find(|c| c.plate.as_deref() == Some(id))
            {
                return Some((
                    c.clone(),
                    format!("by the conveyance id {id} typed at the scanner"),
                ));
            }
        }
        let (pre, after) = (self.rules.pre_arrival, self.rules.scan_after_left);
        self.closed
            .iter()
            .rev()
            .find(|c| c.arrived_at - pre <= at && at <= c.left_at + after)
            .map(|c| (c.clone(), format!("by time: scanned at {}", clock(at))))
    }

    /// Emits records whose window has passed: crossings, and scan records.
    pub fn poll(&mut self, now: DateTime<Utc>) -> Option<Crossing> {
        self.poll_record(now).map(|r| r.crossing)
    }

    /// [`poll`](Self::poll), with the frame the crossing's plate images come from.
    pub fn poll_record(&mut self, now: DateTime<Utc>) -> Option<LaneRecord> {
        // Waiting evidence first: it may still join a crossing that closes now.
        let pre = self.rules.pre_arrival;
        let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.early)
            .into_iter()
            .partition(|(t, _)| *t + pre <= now);
        self.early = kept;
        for (at, e) in expired {
            let what = match e {
                Evidence::Scan(scan) => {
                    if let Some(scan) = self.place_scan(now, scan, false) {
                        let reason = self.orphan_reason(&scan);
                        self.counters.orphan_scans += 1;
                        let record = self.scan_record(scan, Flag::new("orphan_scan", reason), now);
                        self.ready.push_back(LaneRecord {
                            crossing: record,
                            plate_frame: None,
                        });
                    }
                    continue;
                }
                Evidence::PlateReads(_) | Evidence::Frame(..) => "plate read",
                Evidence::RearFrame(_) => "rear plate read",
                Evidence::Dimensions(_) => "dimensions",
            };
            // 3. The last vehicle that had arrived by then (evidence from after it left).
            if let Some(p) = self.pending.iter_mut().rev().find(|p| p.arrived_at <= at) {
                p.attach(at, e);
                continue;
            }
            self.counters.unmatched += 1;
            self.events.push_back(LaneEvent::Unmatched {
                at,
                what,
                reason: format!(
                    "no open crossing had a vehicle on the bridge at {}, coming on within {} after, or having left before",
                    clock(at),
                    duration(pre)
                ),
            });
        }
        let mut i = 0;
        while i < self.pending.len() {
            let due = self
                .pending
                .get(i)
                .and_then(|p| self.close_at(p))
                .is_some_and(|t| t <= now);
            match due.then(|| self.pending.remove(i)).flatten() {
                Some(p) => self.close(p, now),
                None => i += 1,
            }
        }
        self.ready.pop_front()
    }

    /// The next decision that made no record, if any (call after [`poll`](Self::poll)).
    pub fn poll_event(&mut self) -> Option<LaneEvent> {
        self.events.pop_front()
    }

    /// Whether a vehicle is on the bridge now, and how many crossings are still open (on the
    /// bridge, or waiting for late evidence or a scan), for the control API's `lanes`.
    pub fn occupancy(&self) -> (bool, usize) {
        let on_bridge = self.pending.back().is_some_and(|p| p.left_at.is_none());
        (on_bridge, self.pending.len())
    }

    /// When [`poll`](Self::poll) should next be called, if anything is waiting.
    pub fn poll_timeout(&self) -> Option<DateTime<Utc>> {
        let close = self.pending.iter().filter_map(|p| self.close_at(p)).min();
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

    /// When a crossing closes: `close_after` after its vehicle left, or, while it still has no
    /// scan, `scan_wait` after if that is longer.
    fn close_at(&self, p: &Pending) -> Option<DateTime<Utc>> {
        let left = p.left_at?;
        let wait = if p.scan.is_none() && p.left_by != BridgeEnd::Entry {
            self.rules.close_after.max(self.rules.scan_wait)
        } else {
            self.rules.close_after
        };
        Some(left + wait)
    }

    fn close(&mut self, mut p: Pending, now: DateTime<Utc>) {
        let left_at = p.left_at.unwrap_or(now);
        if let Some(reason) = p.reversal(left_at, !self.conveyance.weighed) {
            self.counters.reversals += 1;
            let plate = p.plate().map(|r| r.text);
            if let Some(scan) = p.scan.take() {
                let why = format!(
                    "scan {} ({}) joined a vehicle{} that then reversed off the bridge ({}); no crossing to attach it to",
                    scan.scan_id,
                    decision(&scan),
                    plate.as_deref().map_or(String::new(), |p| format!(" with plate {p}")),
                    reason
                );
                self.counters.orphan_scans += 1;
                let record = self.scan_record(scan, Flag::new("orphan_scan", why), now);
                self.ready.push_back(LaneRecord {
                    crossing: record,
                    plate_frame: None,
                });
            }
            self.events.push_back(LaneEvent::Reversal {
                arrived_at: p.arrived_at,
                left_at,
                plate,
                reason,
            });
            return;
        }
        let plate_frame = p.plate_frame();
        let c = self.finish(p, left_at, now);
        self.closed.push_back(Closed {
            id: c.id,
            plate: c.plate.as_ref().map(|p| p.text.clone()),
            arrived_at: c.arrived_at,
            left_at: c.left_at,
        });
        if self.closed.len() > CLOSED_KEPT {
            self.closed.pop_front();
        }
        self.counters.crossings += 1;
        self.ready.push_back(LaneRecord {
            crossing: c,
            plate_frame,
        });
    }

    fn orphan_reason(&self, scan: &ScanEvent) -> String {
        let typed = match scan.conveyance_id.as_deref() {
            Some(id) if !normalise_id(id).is_empty() => format!(
                "; no open or recent crossing has the plate {} typed at the scanner",
                normalise_id(id)
            ),
            _ => String::new(),
        };
        format!(
            "scan {} by {} at {} ({}) matched no vehicle: none was on the bridge then, none came on within {} after, none had left less than {} before{typed}",
            scan.scan_id,
            scan.scanner_id,
            clock(scan.scanned_at),
            decision(scan),
            duration(self.rules.pre_arrival),
            duration(self.rules.scan_after_left),
        )
    }

    /// A record that carries only a scan (no vehicle evidence), at the scan's time.
    fn scan_record(&self, scan: ScanEvent, flag: Flag, now: DateTime<Utc>) -> Crossing {
        let base =
            Crossing::without_evidence(uuid_v7(now), &self.post, &self.lane, scan.scanned_at);
        Crossing {
            scan: Some(scan),
            flags: vec![flag],
            ..base
        }
    }

    fn finish(&self, mut p: Pending, left_at: DateTime<Utc>, now: DateTime<Utc>) -> Crossing {
        let plate = p.plate();
        let trailer_plate = p.trailer_plate(plate.as_ref());
        let notes = self.notes_of(&p, left_at);
        if let (Some(read), Some(kind)) = (plate.as_ref(), self.conveyance.identifier) {
            let of_it: Vec<&&IdNote> = notes.iter().filter(|n| n.text == read.text).collect();
            if !of_it.is_empty() && of_it.iter().all(|n| n.note.is_some()) {
                let seen: Vec<&str> = of_it.iter().filter_map(|n| n.note.as_deref()).collect();
                p.flags.push(Flag::new(
                    "identifier_repaired",
                    format!(
                        "the {} {} is known only through a one-character repair of its check digit: read as {}",
                        id_name(kind),
                        read.text,
                        seen.first().copied().unwrap_or("-")
                    ),
                ));
            }
        }
        if plate.is_none() {
            let refused: Vec<String> = notes
                .iter()
                .filter(|n| n.refused)
                .filter_map(|n| n.note.clone())
                .fold(Vec::new(), |mut v, n| {
                    if !v.contains(&n) {
                        v.push(n);
                    }
                    v
                });
            let mut why = match (self.conveyance.identifier, refused.is_empty()) {
                (Some(kind), false) => format!(
                    "no valid {} read; refused: {}",
                    id_name(kind),
                    refused.join("; ")
                ),
                (Some(kind), true) => format!(
                    "no camera frame showed a {} while it was present",
                    id_name(kind)
                ),
                (None, _) if p.frames.is_empty() => {
                    "no camera frame with a plate-like read while the vehicle was on the bridge"
                        .to_owned()
                }
                (None, _) => format!(
                    "{} camera frame(s) showed a plate but no readable characters",
                    p.frames.len()
                ),
            };
            if let Some(rear) = &trailer_plate {
                why.push_str(&format!(
                    "; the rear camera read {}, recorded as the trailer's plate (it may be this vehicle's own plate seen from behind)",
                    rear.text
                ));
            }
            if let Some(id) = p.scan.as_ref().and_then(|s| s.conveyance_id.as_deref()) {
                why.push_str(&format!(
                    "; the scanner operator typed the conveyance id {}",
                    normalise_id(id)
                ));
            }
            p.flags.push(Flag::new("plate_unread", why));
        }
        if p.weights.is_empty() && self.conveyance.weighed {
            p.flags.push(Flag::new(
                "no_stable_weight",
                "the weight never settled while the vehicle was on the bridge",
            ));
        }
        if let Some(w) = p.weights.last().filter(|w| w.unweighed_axles > 0) {
            p.flags.push(Flag::new(
                "axle_unweighed",
                format!(
                    "{} of {} axle groups crossed the axle scale without a stable weight: the gross {} kg is the sum of the weighed groups only, not the vehicle's weight; re-weigh the vehicle",
                    w.unweighed_axles,
                    w.axle_count(),
                    w.gross_kg
                ),
            ));
        }
        if p.dimensions.is_empty() && self.conveyance.weighed {
            p.flags.push(Flag::new(
                "no_dimensions",
                "the dimension sensor reported nothing for this vehicle",
            ));
        }
        if p.scan.is_none() {
            let why = if self.rules.scan_wait > self.rules.close_after {
                format!(
                    "no scan event joined within {} after the vehicle left",
                    duration(self.rules.scan_wait)
                )
            } else {
                "no scan event joined before the record closed".to_owned()
            };
            p.flags.push(Flag::new("no_scan", why));
        }
        for s in &p.extra_scans {
            p.flags.push(Flag::new(
                "extra_scan",
                format!("scan {} also matched this vehicle", s.scan_id),
            ));
        }
        Crossing {
            id: uuid_v7(now),
            post: self.post.clone(),
            lane: self.lane.clone(),
            arrived_at: p.arrived_at,
            left_at,
            plate,
            trailer_plate,
            weight: p.weights.pop(),
            dimensions: p.dimensions.last().map(|(_, d)| *d),
            scan: p.scan,
            flags: p.flags,
            images: Vec::new(),
            transport_mode: None,
            train: None,
            config_change: None,
            direction: None,
            customs_office_at_border_reference: None,
        }
    }
}

/// How an identifier kind is named in reasons.
fn id_name(kind: IdKind) -> &'static str {
    match kind {
        IdKind::Uld => "ULD id (IATA)",
        IdKind::Vessel => "vessel number (ENI or IMO)",
        IdKind::Wagon => "wagon number (UIC or CIS)",
        IdKind::Container => "container code (ISO 6346)",
    }
}

/// A UUID v7 for a record made at `now`.
pub(crate) fn uuid_v7(now: DateTime<Utc>) -> Uuid {
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        now.timestamp().max(0).unsigned_abs(),
        now.timestamp_subsec_nanos(),
    );
    Uuid::new_v7(ts)
}

#[cfg(test)]
mod identifier_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod trailer_tests;
