//! Where a scan goes: the open train, a train held for it, a supplement to a train already
//! emitted, or an orphan-scan record (the rules: "A late scan still joins its train" in the
//! module header of [`crate::train`]).

use super::{ClosedTrain, TrainCorrelator};
use crate::lane::{clock, decision, duration, uuid_v7};
use bcp_record::{Crossing, Flag, ScanEvent, TransportMode};
use chrono::{DateTime, Utc};

/// The train a scan made at some time belongs to.
enum Target {
    Open,
    /// An index into `held`.
    Held(usize),
    Emitted(ClosedTrain),
}

impl TrainCorrelator {
    /// A scan result that arrived at `now`.
    pub fn handle_scan(&mut self, now: DateTime<Utc>, scan: ScanEvent) {
        match self.scan_target(scan.scanned_at) {
            Some(Target::Open) => {
                if let Some(train) = self.open.as_mut() {
                    train.scans.push(scan);
                }
            }
            Some(Target::Held(i)) => {
                let Some(h) = self.held.get_mut(i) else {
                    return;
                };
                h.train.flags.push(Flag::new(
                    "scan_joined_late",
                    format!(
                        "scan {} ({}) arrived {} after the train closed (scanned at {}, while the train was on the weighbridge or in its quiet window); the train was held for it",
                        scan.scan_id,
                        decision(&scan),
                        duration(now - h.closed_at),
                        clock(scan.scanned_at)
                    ),
                ));
                h.train.scans.push(scan);
                self.counters.late_scans += 1;
            }
            Some(Target::Emitted(closed)) => {
                let had = closed
                    .scan
                    .as_deref()
                    .map_or_else(|| "without a scan".to_owned(), |s| format!("with scan {s}"));
                let reason = format!(
                    "scan {} ({}) was made at {}, while train {} ({} wagons, arrived at {}) was on the weighbridge or in its quiet window, and arrived {} after that train was recorded {had}; it is recorded apart so the sealed record is not changed",
                    scan.scan_id,
                    decision(&scan),
                    clock(scan.scanned_at),
                    closed.id,
                    closed.wagons,
                    clock(closed.arrived_at),
                    duration(now - closed.emitted_at),
                );
                self.counters.scans_after_close += 1;
                self.scan_record(now, scan, Flag::new("scan_after_close", reason));
            }
            None => {
                self.counters.orphan_scans += 1;
                let reason = format!(
                    "scan {} by {} at {} arrived at {} and matches no train: none was on the weighbridge or in its quiet window when it was made, and no train is open now",
                    scan.scan_id,
                    scan.scanner_id,
                    clock(scan.scanned_at),
                    clock(now)
                );
                self.scan_record(now, scan, Flag::new("orphan_scan", reason));
            }
        }
    }

    /// The train that was on the weighbridge or in its quiet window at `at` (the latest to come
    /// on, if several); else the open train; else none.
    fn scan_target(&self, at: DateTime<Utc>) -> Option<Target> {
        let open = self
            .open
            .as_ref()
            .and_then(|t| t.wagons.first())
            .map(|w| w.on_at)
            .filter(|on| *on <= at)
            .map(|on| (on, Target::Open));
        let held = self
            .held
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                let on = h.train.wagons.first()?.on_at;
                (on <= at && at <= h.closed_at).then_some((on, Target::Held(i)))
            })
            .max_by_key(|(on, _)| *on);
        let emitted = self
            .closed
            .iter()
            .filter(|c| c.arrived_at <= at && at <= c.closed_at)
            .max_by_key(|c| c.arrived_at)
            .map(|c| (c.arrived_at, Target::Emitted(c.clone())));
        let by_time = [open, held, emitted]
            .into_iter()
            .flatten()
            .max_by_key(|(on, _)| *on)
            .map(|(_, target)| target);
        by_time.or_else(|| self.open.as_ref().map(|_| Target::Open))
    }

    /// A Crossing-shaped record of a scan alone, at the scan's time.
    fn scan_record(&mut self, now: DateTime<Utc>, scan: ScanEvent, flag: Flag) {
        let base =
            Crossing::without_evidence(uuid_v7(now), &self.post, &self.lane, scan.scanned_at);
        self.ready.push_back(Crossing {
            scan: Some(scan),
            flags: vec![flag],
            transport_mode: Some(TransportMode::Rail),
            ..base
        });
    }
}
