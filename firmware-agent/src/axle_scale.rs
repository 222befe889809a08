//! A short axle scale in front of the lane correlator (`[weighbridge] axle_scale = true`).
//!
//! An axle scale is shorter than a vehicle: its stability detector reports one `VehicleOn` ..
//! `Stable` .. `VehicleOff` per axle group. [`bcp_drivers::axles::AxleSummer`] sums them into
//! one vehicle weight; [`AxleScale`] gives the lane correlator what a whole-vehicle
//! weighbridge would, so that the correlator frames a *vehicle*, not each axle:
//!
//! - the first axle group of a vehicle coming on is the vehicle coming on
//!   ([`LaneCorrelator::handle_vehicle_on`]); the next groups, while the summer still counts
//!   them to the same vehicle, are not;
//! - when the summer ends the vehicle (the scale stayed empty `max_axle_gap_ms` after a group
//!   left, or the next vehicle's first group came on later than that), the lane gets one
//!   stable [`Weighing`]: `gross_kg` the sum, `axles_kg` each group's weight in order,
//!   `unweighed_axles` the groups that left without a stable weight; then the vehicle leaving,
//!   at the time its **last** group left (not when the gap ran out).
//! - a vehicle none of whose groups settled gives the lane no weight: its crossing is flagged
//!   `no_stable_weight` as on a weighbridge. One with some groups unweighed gets the partial
//!   sum, which the lane flags `axle_unweighed` (see [`crate::lane`]).
//!
//! Pure, like the correlator it feeds: the caller passes the time, both as the monotonic
//! [`Instant`] the summer runs on and as the wall-clock time the records carry; an instant in
//! the past (the last group leaving) is dated by its distance from `now`.

use std::time::{Duration, Instant};

use bcp_drivers::axles::{AxleSummer, VehicleWeight};
use bcp_drivers::stability::WeighEvent;
use bcp_record::Weighing;
use chrono::{DateTime, TimeDelta, Utc};

use crate::lane::LaneCorrelator;

/// The axle summer and the vehicle it frames for the lane.
#[derive(Debug)]
pub struct AxleScale {
    summer: AxleSummer,
    /// The weighbridge's configured name (the records' `device`).
    device: String,
    /// The division of the last stable weight (the indicator's `d`).
    division_kg: f64,
    /// The lane has been told a vehicle came on and not yet that it left.
    vehicle_on: bool,
}

impl AxleScale {
    pub fn new(device: &str, max_axle_gap: Duration) -> Self {
        Self {
            summer: AxleSummer::new(max_axle_gap),
            device: device.to_owned(),
            division_kg: 0.0,
            vehicle_on: false,
        }
    }

    /// One event of the axle scale's stability detector, at `now` (`utc` on the wall clock).
    pub fn handle_event(
        &mut self,
        now: Instant,
        utc: DateTime<Utc>,
        event: &WeighEvent,
        lane: &mut LaneCorrelator,
    ) {
        if let WeighEvent::Stable(s) = event {
            self.division_kg = s.division_kg;
        }
        self.summer.handle_event(now, event);
        // A first group coming on after the gap ends the vehicle before: that one leaves first.
        self.emit(now, utc, lane);
        if matches!(event, WeighEvent::VehicleOn { .. }) && !self.vehicle_on {
            self.vehicle_on = true;
            lane.handle_vehicle_on(utc);
        }
    }

    /// When [`Self::handle_timeout`] must be called (the end of the gap after the last group).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.summer.poll_timeout()
    }

    /// The time has come (or passed): the vehicle ends if the scale stayed empty long enough.
    pub fn handle_timeout(&mut self, now: Instant, utc: DateTime<Utc>, lane: &mut LaneCorrelator) {
        self.summer.handle_timeout(now);
        self.emit(now, utc, lane);
    }

    /// Shutdown: the vehicle being weighed ends now, a group still on the scale unweighed if it
    /// had not settled.
    pub fn finish(&mut self, now: Instant, utc: DateTime<Utc>, lane: &mut LaneCorrelator) {
        self.summer
            .handle_event(now, &WeighEvent::VehicleOff { at: now });
        self.summer
            .handle_timeout(now + Duration::from_secs(24 * 3600));
        self.emit(now, utc, lane);
        if std::mem::take(&mut self.vehicle_on) {
            // Framed, but the summer had nothing (no group ever left): it leaves now.
            lane.handle_vehicle_off(utc);
        }
    }

    /// Hands the vehicles the summer ended to the lane.
    fn emit(&mut self, now: Instant, utc: DateTime<Utc>, lane: &mut LaneCorrelator) {
        while let Some(v) = self.summer.poll() {
            let ago = TimeDelta::from_std(now.saturating_duration_since(v.at))
                .unwrap_or(TimeDelta::zero());
            let left_at = utc - ago;
            if !v.axles_kg.is_empty() {
                lane.handle_stable_weight(left_at, self.weighing(v, left_at));
            }
            lane.handle_vehicle_off(left_at);
            self.vehicle_on = false;
        }
    }

    fn weighing(&self, v: VehicleWeight, at: DateTime<Utc>) -> Weighing {
        Weighing {
            gross_kg: v.total_kg,
            division_kg: self.division_kg,
            stable_at: at,
            device: self.device.clone(),
            axles_kg: v.axles_kg,
            unweighed_axles: v.unweighed_axles,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bcp_drivers::stability::StableWeight;
    use bcp_record::Crossing;

    /// Drives the scale and a real lane correlator with times `ms` after a start.
    struct Lane {
        t0: Instant,
        u0: DateTime<Utc>,
        scale: AxleScale,
        lane: LaneCorrelator,
    }

    impl Lane {
        fn new() -> Self {
            Self {
                t0: Instant::now(),
                u0: "2026-11-21T10:00:00Z".parse().expect("a time"),
                scale: AxleScale::new("wb1", Duration::from_secs(3)),
                lane: LaneCorrelator::new("P", "L1", Default::default()),
            }
        }
        fn at(&self, ms: u64) -> (Instant, DateTime<Utc>) {
            (
                self.t0 + Duration::from_millis(ms),
                self.u0 + TimeDelta::milliseconds(ms as i64),
            )
        }
        fn event(&mut self, ms: u64, e: WeighEvent) {
            let (now, utc) = self.at(ms);
            self.scale.handle_event(now, utc, &e, &mut self.lane);
        }
        /// One axle group: on at `ms`, stable `kg` (if any) 500 ms later, off 1 s after it came on.
        fn group(&mut self, ms: u64, kg: Option<f64>) {
            let (t, _) = self.at(ms);
            self.event(ms, WeighEvent::VehicleOn { at: t });
            if let Some(kg) = kg {
                let (s, _) = self.at(ms + 500);
                self.event(
                    ms + 500,
                    WeighEvent::Stable(StableWeight {
                        weight_kg: kg,
                        division_kg: 20.0,
                        at: s,
                    }),
                );
            }
            let (off, _) = self.at(ms + 1000);
            self.event(ms + 1000, WeighEvent::VehicleOff { at: off });
        }
        fn tick(&mut self, ms: u64) -> Option<Crossing> {
            let (now, utc) = self.at(ms);
            self.scale.handle_timeout(now, utc, &mut self.lane);
            self.lane.poll(utc)
        }
    }

    #[test]
    fn one_vehicle_per_axle_group_sequence_with_its_axles_and_their_sum() {
        let mut l = Lane::new();
        l.group(0, Some(6_200.0));
        l.group(2_000, Some(11_400.0));
        l.group(4_000, Some(21_800.0));
        assert_eq!(
            l.lane.occupancy(),
            (true, 1),
            "one vehicle on, between its groups too"
        );
        assert_eq!(l.tick(6_000), None, "within the gap after the last group");
        assert_eq!(l.lane.occupancy(), (true, 1));
        // The gap ran out 3 s after the last group left, and so did the lane's close_after.
        let c = l.tick(8_000).expect("closed 3 s after the last group left");
        assert_eq!(l.lane.occupancy(), (false, 0));
        let w = c.weight.as_ref().expect("weighed");
        assert_eq!(w.axles_kg, [6_200.0, 11_400.0, 21_800.0]);
        assert_eq!(
            (w.gross_kg, w.unweighed_axles, w.division_kg),
            (39_400.0, 0, 20.0)
        );
        assert_eq!(c.left_at, l.at(5_000).1, "left when its last group left");
        assert_eq!(c.arrived_at, l.at(0).1);
        assert!(
            !c.flags.iter().any(|f| f.code == "axle_unweighed"),
            "{:?}",
            c.flags
        );
        assert_eq!(l.tick(60_000), None, "one crossing, not one per axle");
    }

    #[test]
    fn an_unweighed_group_is_flagged_and_the_next_vehicle_is_its_own_crossing() {
        let mut l = Lane::new();
        l.group(0, Some(7_000.0));
        l.group(2_000, None);
        // The next vehicle's first group, after the gap: the first vehicle ends at once.
        l.group(10_000, Some(5_000.0));
        let first = l.tick(10_000).expect("first vehicle closed (left at 3 s)");
        let w = first.weight.as_ref().expect("partly weighed");
        assert_eq!(
            (w.axles_kg.as_slice(), w.unweighed_axles),
            (&[7_000.0][..], 1)
        );
        let flag = first
            .flags
            .iter()
            .find(|f| f.code == "axle_unweighed")
            .expect("flagged");
        assert!(
            flag.reason.contains("1 of 2 axle groups") && flag.reason.contains("7000"),
            "{}",
            flag.reason
        );
        assert_eq!(l.lane.occupancy(), (true, 1), "the second vehicle is on");
        let (now, utc) = l.at(11_500);
        l.scale.finish(now, utc, &mut l.lane);
        let second = l.tick(30_000).expect("second vehicle closed at shutdown");
        assert_eq!(second.weight.expect("weighed").axles_kg, [5_000.0]);
    }

    #[test]
    fn a_vehicle_no_group_of_which_settled_has_no_weight() {
        let mut l = Lane::new();
        l.group(0, None);
        l.group(1_500, None);
        // Evidence that it crossed, so that it is not taken for a reversal.
        let (_, utc) = l.at(1_000);
        l.lane.handle_evidence(
            utc,
            crate::lane::Evidence::Dimensions(bcp_record::Dimensions {
                length_mm: 12_000,
                width_mm: 2_500,
                height_mm: 3_900,
            }),
        );
        let c = l.tick(20_000).expect("closed");
        assert_eq!(c.weight, None);
        assert!(
            c.flags.iter().any(|f| f.code == "no_stable_weight"),
            "{:?}",
            c.flags
        );
    }
}
