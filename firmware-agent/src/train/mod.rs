//! The train correlator of a rail post: links a train's wagon weighings and the identifiers read
//! on it (wagon numbers, container codes) into **one record per train**, its wagons in order.
//!
//! A pure state machine like [`crate::lane`]: no I/O, no clock; every input carries the time it
//! happened, [`TrainCorrelator::poll`] is given `now`, [`TrainCorrelator::poll_timeout`] says
//! when to call it next. The agent's loop is its driver (`agent.rs`).
//!
//! ## Inputs
//! - **The rail weighbridge frames the wagons**: [`handle_wagon_on`](TrainCorrelator::handle_wagon_on)
//!   when a wagon comes onto the weigh rail (the indicator's weight rising over its occupied
//!   threshold), [`handle_wagon_weight`](TrainCorrelator::handle_wagon_weight) with its stable
//!   weight, [`handle_wagon_off`](TrainCorrelator::handle_wagon_off) when it left (the weight
//!   back under the empty threshold). A weigh-in-motion system that reports one line per wagon
//!   gives all three at once. Each on/off pair is one wagon boundary; their order is the
//!   train's order. The first wagon on starts a train.
//! - **Identifiers by time**: [`handle_reads`](TrainCorrelator::handle_reads) with the reads of
//!   one camera frame (or one reader message) and when it was taken. Each read is validated
//!   with `bcp_anpr_core::identifiers` as a wagon number (UIC 12-digit or CIS 8-digit, Luhn check
//!   digit) or else an ISO 6346 container code; a misread of one look-alike character is
//!   repaired when exactly one repair makes the check digit hold. Reads that fit neither shape
//!   are noise and dropped; reads that fit a shape but fail the check are kept, to say in the
//!   record what was seen. Within one frame, a read that is part of a longer identifier read in
//!   the same frame is dropped (an 8-digit run inside a 12-digit UIC number could pass as a CIS
//!   number by chance).
//! - **Scans** ([`handle_scan`](TrainCorrelator::handle_scan)): see "A late scan still joins its
//!   train" below.
//!
//! ## The train ends after a quiet window
//! `quiet` after the last wagon left the weigh rail with no wagon on it, the train is closed and
//! assembled. Reads are kept until then and assigned only at the close, so the order in which
//! frames and weighings reach the correlator does not matter (property-tested).
//!
//! ## A late scan still joins its train
//! The scanner workstation's verdict on a train can come minutes after the train passed. As on a
//! lane ([`crate::lane`]): on a post with a scanner (`expect_scan`), a train closed without a
//! scan is **held** for up to `scan_wait` after its close before it is emitted (`scan_wait` zero:
//! not held); a new train may come on meanwhile. A scan joins by when it was made (`scanned_at`),
//! not when it arrived:
//! - a train still open or held, or a train already emitted, whose time (its first wagon on
//!   ..= its close, `quiet` after its last wagon left) holds `scanned_at`, the latest such;
//! - else the train open now, whenever the scan was made (a scan portal before the weigh rail);
//! - else it becomes a scan record flagged `orphan_scan` with the reason.
//!
//! A scan that joins a held train flags it `scan_joined_late` with the reason (how long after the
//! close it arrived), and the train is emitted at the next [`poll`](TrainCorrelator::poll). A
//! scan whose train was already emitted (the hold ran out, or the train had closed with another
//! scan) becomes a scan record flagged `scan_after_close`, whose reason names that train record's
//! id: a supplement, never merged into a record already sealed and sent. A second scan for a
//! train not yet emitted is flagged `extra_scan` on it. Holding costs latency and, on a power
//! cut, the held trains; on shutdown the agent polls far ahead, which emits them.
//!
//! ## Uncoupled wagons (see [`shunting`])
//! At a border station a train is shunted: it stops, wagons are uncoupled and set aside for
//! inspection (or repair), the train sets back and pulls forward again. What the weigh rail sees
//! of it, and what the record says:
//! - **The train stood**: the rail is empty between two wagons for longer than `stop` (a coupler
//!   gap lasts a second or two) but less than `quiet`: still one train, flagged `train_stood`
//!   with the wagons on either side: wagons may have been uncoupled and set aside there. (A stand
//!   longer than `quiet` ends the train: the wagons after it are the next train's record; set
//!   `quiet` longer than the station's stands to keep them together.)
//! - **A wagon rolled back** off the rail the way it came (the train set back) and came on
//!   again: the rail sees two weighings of one wagon. Consecutive weighings on which the same
//!   valid wagon number, and no other, was read well inside each (more than `read_margin` from
//!   the boundary) are one wagon: its first on, its last off, its last stable weight, flagged
//!   `wagon_rolled_back`. Without a readable number the weighings stay apart (a weighing is never
//!   dropped on a guess; the extra wagon is then flagged `wagon_number_unread`).
//! - **A wagon left standing on the rail**: the train was uncoupled from a wagon on the weigh rail
//!   and went on without it (or the train stands there). A wagon on the rail for longer than
//!   `standing` closes the train without waiting for it to leave: the wagon is the train's last,
//!   without an `off_at`, flagged `wagon_left_on_rail`. Its further weights are ignored, and its
//!   leaving ends it; the next wagon on starts a new train.
//!
//! ## Assembly (see [`assemble`])
//! - A read taken at `t` is placed at `t - reader_offset` on the weighbridge's time line (the
//!   reader may stand before or after the weigh rail) and joins the wagon that was on the rail
//!   then; else the nearest wagon if it is at most `read_margin` outside that wagon's time on
//!   the rail (a number painted near the wagon's end).
//! - Each distinct wagon number goes to the wagon that got most of its reads (a read at a
//!   boundary cannot give one number to two wagons); same for container codes, several per wagon.
//! - A number is `valid` if any read of it was valid as read, else `repaired`, with what was read.
//!
//! ## Flags, each with its reason naming the wagon's position (and number when known)
//! - `wagon_number_unread`: no wagon number for this wagon: none read, or read with a failing
//!   check digit (what was read and why it was refused).
//! - `wagon_number_repaired`: the number is known only through a one-character repair.
//! - `wagon_count_mismatch`: the reading saw more wagons than the weighing: two different
//!   numbers during one wagon's time on the rail (the weighbridge may have taken two wagons for
//!   one), or a number read outside every weighed wagon's time.
//! - `wagon_weight_missing`: the wagon never gave a stable weight (the train's total is then
//!   not given).
//! - `container_check_failed`: a container code read on the wagon whose check digit fails and
//!   that matches none of the wagon's valid codes.
//! - `no_scan`: on a post with a scanner, no scan joined the train (within `scan_wait` after its
//!   close, if it was held).
//! - `scan_joined_late`: the scan joined while the train was held for it.
//! - `train_stood`, `wagon_rolled_back`, `wagon_left_on_rail`: see "Uncoupled wagons".
//!
//! Overweight wagons are flagged by [`crate::checks`] (`wagon_overweight`, `[limits]
//! max_wagon_gross_kg`), like every other legal limit.

mod assemble;
mod scans;
pub mod shunting;

pub use assemble::assemble;

use bcp_anpr_core::identifiers::{self, IdError, IdKind, IdRead};
use bcp_anpr_core::PlateCandidate;
use bcp_record::{Crossing, Flag, ScanEvent, Weighing};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::VecDeque;

/// The windows of the train correlator (the `[train]` config section).
#[derive(Debug, Clone, Copy)]
pub struct TrainRules {
    /// The train is closed this long after its last wagon left the weigh rail.
    pub quiet: TimeDelta,
    /// The reader sees a point of the train this long after the weighbridge does (negative: the
    /// reader stands before the weigh rail).
    pub reader_offset: TimeDelta,
    /// A read at most this far outside a wagon's time on the rail still joins that wagon.
    pub read_margin: TimeDelta,
    /// The post has a scanner: a train without a scan is flagged `no_scan`.
    pub expect_scan: bool,
    /// With `expect_scan`: how long after its close a train without a scan is held for the
    /// scanner's verdict before it is emitted (zero: not held).
    pub scan_wait: TimeDelta,
    /// The rail empty longer than this between two wagons: the train stood (`train_stood`).
    pub stop: TimeDelta,
    /// A wagon on the rail longer than this was left standing there (`wagon_left_on_rail`).
    pub standing: TimeDelta,
}

impl Default for TrainRules {
    fn default() -> Self {
        Self {
            quiet: TimeDelta::seconds(10),
            reader_offset: TimeDelta::zero(),
            read_margin: TimeDelta::milliseconds(500),
            expect_scan: false,
            scan_wait: TimeDelta::zero(),
            stop: TimeDelta::seconds(5),
            standing: TimeDelta::minutes(30),
        }
    }
}

/// One identifier seen in a frame: what was read, when, and what the check made of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sighting {
    pub at: DateTime<Utc>,
    pub kind: IdKind,
    /// The read, normalised.
    pub raw: String,
    pub confidence: f32,
    pub check: Result<IdRead, IdError>,
}

/// A wagon as the weighbridge framed it.
#[derive(Debug, Clone, PartialEq)]
pub struct WagonWeighed {
    pub on_at: DateTime<Utc>,
    pub off_at: Option<DateTime<Utc>>,
    /// Every stable weight while it was on; the last is the wagon's.
    pub weights: Vec<Weighing>,
    /// Doubts about the framing itself (a missed boundary).
    pub flags: Vec<Flag>,
}

/// A train still open: what the weighbridge and the readers said so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenTrain {
    pub wagons: Vec<WagonWeighed>,
    pub sightings: Vec<Sighting>,
    pub scans: Vec<ScanEvent>,
    /// Flags decided before the assembly (a scan that joined while the train was held).
    pub flags: Vec<Flag>,
}

impl OpenTrain {
    fn on_rail(&mut self) -> Option<&mut WagonWeighed> {
        self.wagons.last_mut().filter(|w| w.off_at.is_none())
    }

    /// When the train closes: `quiet` after the last wagon left, none being on.
    fn close_at(&self, quiet: TimeDelta) -> Option<DateTime<Utc>> {
        let last = self.wagons.last()?;
        last.off_at.map(|off| off + quiet)
    }
}

/// A decision that makes no record; the agent logs it.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    /// Identifiers read while no train was on the weighbridge, within no window.
    Unmatched {
        at: DateTime<Utc>,
        text: String,
        reason: String,
    },
}

/// How often each rule fired since the correlator started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrainCounters {
    pub trains: u64,
    pub wagons: u64,
    pub unread_wagon_numbers: u64,
    pub repaired_wagon_numbers: u64,
    pub count_mismatches: u64,
    pub orphan_scans: u64,
    pub unmatched_reads: u64,
    /// Scans that joined a train held for them (`scan_joined_late`).
    pub late_scans: u64,
    /// Scan records for a scan that came after its train was emitted (`scan_after_close`).
    pub scans_after_close: u64,
}

/// A train closed without a scan, held for it until `until`.
#[derive(Debug)]
struct HeldTrain {
    train: OpenTrain,
    closed_at: DateTime<Utc>,
    until: DateTime<Utc>,
}

/// What is remembered of an emitted train, so that a scan arriving later can name it.
#[derive(Debug, Clone)]
struct ClosedTrain {
    id: uuid::Uuid,
    arrived_at: DateTime<Utc>,
    closed_at: DateTime<Utc>,
    emitted_at: DateTime<Utc>,
    wagons: usize,
    scan: Option<String>,
}

/// How many emitted trains are remembered for scans that come after them.
const CLOSED_KEPT: usize = 32;

/// One rail post's train correlator.
#[derive(Debug)]
pub struct TrainCorrelator {
    post: String,
    lane: String,
    rules: TrainRules,
    open: Option<OpenTrain>,
    /// When the wagon left standing on the rail came on, until it leaves (see the module header).
    left_standing: Option<DateTime<Utc>>,
    /// Trains closed without a scan, held for it (oldest first).
    held: VecDeque<HeldTrain>,
    /// The last trains emitted, oldest first.
    closed: VecDeque<ClosedTrain>,
    /// Sightings made while no train was open, kept for one `read_margin` (plus the reader's
    /// lead) in case the train they show comes on.
    early: Vec<Sighting>,
    ready: VecDeque<Crossing>,
    events: VecDeque<TrainEvent>,
    counters: TrainCounters,
}

impl TrainCorrelator {
    pub fn new(post: &str, lane: &str, rules: TrainRules) -> Self {
        Self {
            post: post.to_owned(),
            lane: lane.to_owned(),
            rules,
            open: None,
            left_standing: None,
            held: VecDeque::new(),
            closed: VecDeque::new(),
            early: Vec::new(),
            ready: VecDeque::new(),
            events: VecDeque::new(),
            counters: TrainCounters::default(),
        }
    }

    pub fn rules(&self) -> &TrainRules {
        &self.rules
    }

    pub fn counters(&self) -> &TrainCounters {
        &self.counters
    }

    /// Whether a wagon is on the weigh rail, and how many trains are not yet emitted (the open
    /// one and those held for their scan), for the control API's `lanes`.
    pub fn occupancy(&self) -> (bool, usize) {
        let on = self
            .open
            .as_ref()
            .and_then(|t| t.wagons.last())
            .is_some_and(|w| w.off_at.is_none());
        (on, usize::from(self.open.is_some()) + self.held.len())
    }

    fn train(&mut self, at: DateTime<Utc>) -> &mut OpenTrain {
        let margin = self.rules.read_margin + self.rules.reader_offset.abs();
        let early = std::mem::take(&mut self.early);
        let train = self.open.get_or_insert_with(OpenTrain::default);
        for s in early {
            if s.at >= at - margin {
                train.sightings.push(s);
            } else {
                self.early.push(s);
            }
        }
        train
    }

    /// A wagon came onto the weigh rail (the first one starts a train).
    pub fn handle_wagon_on(&mut self, at: DateTime<Utc>) {
        // A wagon can come on only once the one left standing has gone (its leaving unseen).
        self.left_standing = None;
        let train = self.train(at);
        if let Some(prev) = train.on_rail() {
            prev.off_at = Some(at);
            prev.flags.push(Flag::new(
                "wagon_boundary_unseen",
                "the next wagon came on before the weight fell back under the empty threshold: the boundary was taken there",
            ));
        }
        train.wagons.push(WagonWeighed {
            on_at: at,
            off_at: None,
            weights: Vec::new(),
            flags: Vec::new(),
        });
    }

    /// The stable weight of the wagon on the rail.
    pub fn handle_wagon_weight(&mut self, at: DateTime<Utc>, weight: Weighing) {
        if self.open.is_none() && self.left_standing.is_some() {
            // The wagon left standing settled again: it is already recorded.
            return;
        }
        let train = self.train(at);
        if train.on_rail().is_none() {
            train.wagons.push(WagonWeighed {
                on_at: at,
                off_at: None,
                weights: Vec::new(),
                flags: vec![Flag::new(
                    "wagon_arrival_not_seen",
                    "stable weight without the wagon coming on (agent started or reconnected mid-weighing)",
                )],
            });
        }
        if let Some(w) = train.on_rail() {
            w.weights.push(weight);
        }
    }

    /// The wagon on the rail left it.
    pub fn handle_wagon_off(&mut self, at: DateTime<Utc>) {
        match self.open.as_mut().and_then(OpenTrain::on_rail) {
            Some(w) => w.off_at = Some(at.max(w.on_at)),
            None => self.left_standing = None,
        }
    }

    /// The reads of one frame taken at `at` (best first, as the ANPR engine ranks them).
    pub fn handle_reads(&mut self, at: DateTime<Utc>, reads: Vec<PlateCandidate>) {
        let seen = classify(at, reads);
        if seen.is_empty() {
            return;
        }
        match self.open.as_mut() {
            Some(train) => train.sightings.extend(seen),
            None => self.early.extend(seen),
        }
    }

    /// Emits the train records whose quiet window has passed.
    pub fn poll(&mut self, now: DateTime<Utc>) -> Option<Crossing> {
        let margin = self.rules.read_margin + self.rules.reader_offset.abs();
        let (stale, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.early)
            .into_iter()
            .partition(|s| s.at + margin < now);
        self.early = kept;
        for s in stale {
            self.counters.unmatched_reads += 1;
            self.events.push_back(TrainEvent::Unmatched {
                at: s.at,
                reason: format!(
                    "{} read at {} with no wagon on the weighbridge within {}",
                    s.raw,
                    crate::lane::clock(s.at),
                    crate::lane::duration(margin)
                ),
                text: s.raw,
            });
        }
        let standing = self
            .standing_since()
            .filter(|on| *on + self.rules.standing <= now);
        let on_rail = self.open.as_mut().and_then(OpenTrain::on_rail);
        if let (Some(on), Some(wagon)) = (standing, on_rail) {
            // Its position in the record is given at the assembly (after any merged roll-back).
            wagon.flags.push(Flag::new(
                "wagon_left_on_rail",
                format!(
                    "on the weigh rail since {} and still there {} later: taken as uncoupled and left standing (or the train stands there); the train is closed with it as its last wagon, and wagons that come after it leaves are a new train",
                    crate::lane::clock(on),
                    crate::lane::duration(self.rules.standing)
                ),
            ));
            self.left_standing = Some(on);
        }
        let due = match standing {
            Some(on) => Some(on + self.rules.standing),
            None => self
                .open
                .as_ref()
                .and_then(|t| t.close_at(self.rules.quiet))
                .filter(|t| *t <= now),
        };
        if let Some(closed_at) = due {
            if let Some(train) = self.open.take() {
                let hold = self.rules.expect_scan
                    && self.rules.scan_wait > TimeDelta::zero()
                    && train.scans.is_empty();
                if hold {
                    self.held.push_back(HeldTrain {
                        train,
                        closed_at,
                        until: closed_at + self.rules.scan_wait,
                    });
                } else {
                    self.close(train, closed_at, now);
                }
            }
        }
        // Held trains whose scan came, or whose hold ran out, in the order they closed.
        while let Some(i) = self
            .held
            .iter()
            .position(|h| !h.train.scans.is_empty() || h.until <= now)
        {
            if let Some(h) = self.held.remove(i) {
                self.close(h.train, h.closed_at, now);
            }
        }
        self.ready.pop_front()
    }

    /// The next decision that made no record, if any (call after [`poll`](Self::poll)).
    pub fn poll_event(&mut self) -> Option<TrainEvent> {
        self.events.pop_front()
    }

    /// When [`poll`](Self::poll) should next be called, if anything is waiting.
    pub fn poll_timeout(&self) -> Option<DateTime<Utc>> {
        let margin = self.rules.read_margin + self.rules.reader_offset.abs();
        let open = self
            .open
            .as_ref()
            .and_then(|t| t.close_at(self.rules.quiet))
            .or_else(|| self.standing_since().map(|on| on + self.rules.standing));
        let held = self.held.iter().map(|h| h.until).min();
        let close = match (open, held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let early = self
            .early
            .iter()
            .map(|s| s.at + margin + TimeDelta::milliseconds(1))
            .min();
        match (close, early) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When the wagon on the rail of the open train came on, if one is on.
    fn standing_since(&self) -> Option<DateTime<Utc>> {
        self.open
            .as_ref()
            .and_then(|t| t.wagons.last())
            .filter(|w| w.off_at.is_none())
            .map(|w| w.on_at)
    }

    /// Assembles a train that closed at `closed_at` and queues its record.
    fn close(&mut self, train: OpenTrain, closed_at: DateTime<Utc>, now: DateTime<Utc>) {
        let c = assemble(&self.post, &self.lane, &self.rules, train, now);
        self.closed.push_back(ClosedTrain {
            id: c.id,
            arrived_at: c.arrived_at,
            closed_at,
            emitted_at: now,
            wagons: c.train.as_ref().map_or(0, |t| t.wagons.len()),
            scan: c.scan.as_ref().map(|s| s.scan_id.clone()),
        });
        if self.closed.len() > CLOSED_KEPT {
            self.closed.pop_front();
        }
        let n = &mut self.counters;
        n.trains += 1;
        if let Some(t) = &c.train {
            n.wagons += t.wagons.len() as u64;
        }
        for f in &c.flags {
            match f.code.as_str() {
                "wagon_number_unread" => n.unread_wagon_numbers += 1,
                "wagon_number_repaired" => n.repaired_wagon_numbers += 1,
                "wagon_count_mismatch" => n.count_mismatches += 1,
                _ => {}
            }
        }
        self.ready.push_back(c);
    }
}

/// The identifiers in one frame's reads (see the module header).
pub fn classify(at: DateTime<Utc>, reads: Vec<PlateCandidate>) -> Vec<Sighting> {
    let mut seen: Vec<Sighting> = Vec::new();
    for c in reads {
        let raw = bcp_anpr_core::formats::normalise(&c.text);
        if raw.is_empty() || seen.iter().any(|s| s.raw == raw) {
            continue;
        }
        let sighting = [IdKind::Wagon, IdKind::Container]
            .into_iter()
            .find_map(|kind| match identifiers::validate(kind, &raw) {
                Err(IdError::Shape { .. }) => None,
                check => Some((kind, check)),
            });
        if let Some((kind, check)) = sighting {
            seen.push(Sighting {
                at,
                kind,
                raw,
                confidence: c.confidence,
                check,
            });
        }
    }
    // A read that is part of a longer identifier of the same frame is that identifier's piece.
    let all: Vec<String> = seen.iter().map(|s| s.raw.clone()).collect();
    seen.retain(|s| {
        !all.iter()
            .any(|o| o.len() > s.raw.len() && o.contains(&s.raw))
    });
    seen
}

#[cfg(test)]
mod tests;
