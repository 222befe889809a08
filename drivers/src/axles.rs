//! Short axle scales: each axle group is weighed on its own; the vehicle's weight is their sum.
//!
//! An axle (or axle-group) scale is shorter than a vehicle: the [`crate::stability`] detector sees
//! one `VehicleOn` .. `Stable` .. `VehicleOff` per axle group as the vehicle is drawn across.
//! [`AxleSummer`] turns that into one [`VehicleWeight`]: a pure state machine given the time, in
//! the `quinn-proto` style: [`AxleSummer::handle_event`]`(now, event)`,
//! [`AxleSummer::handle_timeout`]`(now)` when [`AxleSummer::poll_timeout`] is reached, and
//! [`AxleSummer::poll`] for the results.
//!
//! # Rules
//!
//! * An axle's weight is the **last** `Stable` between its `VehicleOn` and `VehicleOff` (a
//!   heavier group settling after a lighter one replaces it). An axle that leaves without a
//!   `Stable` is counted in [`VehicleWeight::unweighed_axles`]: the sum is then incomplete and
//!   the operator must re-weigh.
//! * The vehicle ends when the scale stays empty for `max_axle_gap` after an axle leaves (the
//!   next axle of the same vehicle arrives sooner), or when a `VehicleOn` comes later than that.
//! * Nothing is emitted for a vehicle with no axle at all.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::stability::WeighEvent;

/// One vehicle weighed axle by axle.
#[derive(Debug, Clone, PartialEq)]
pub struct VehicleWeight {
    /// Stable weight of each axle group, in the order they crossed.
    pub axles_kg: Vec<f64>,
    /// Sum of `axles_kg`.
    pub total_kg: f64,
    /// Axle groups that crossed without a stable weight.
    pub unweighed_axles: u32,
    /// When the last axle left.
    pub at: Instant,
}

/// The state machine; see the module documentation for the rules.
#[derive(Debug)]
pub struct AxleSummer {
    max_axle_gap: Duration,
    axles_kg: Vec<f64>,
    unweighed: u32,
    /// The axle on the scale now, and its last stable weight.
    on_scale: Option<Option<f64>>,
    last_off: Option<Instant>,
    out: VecDeque<VehicleWeight>,
}

impl AxleSummer {
    pub fn new(max_axle_gap: Duration) -> Self {
        Self {
            max_axle_gap,
            axles_kg: Vec::new(),
            unweighed: 0,
            on_scale: None,
            last_off: None,
            out: VecDeque::new(),
        }
    }

    /// One event of the scale's stability detector.
    pub fn handle_event(&mut self, now: Instant, event: &WeighEvent) {
        match event {
            WeighEvent::VehicleOn { .. } => {
                if self
                    .last_off
                    .is_some_and(|off| now.saturating_duration_since(off) >= self.max_axle_gap)
                {
                    self.finish();
                }
                self.on_scale = Some(None);
            }
            WeighEvent::Stable(s) => {
                if let Some(axle) = self.on_scale.as_mut() {
                    *axle = Some(s.weight_kg);
                }
            }
            WeighEvent::VehicleOff { .. } => {
                match self.on_scale.take() {
                    Some(Some(w)) => self.axles_kg.push(w),
                    Some(None) => self.unweighed += 1,
                    None => return,
                }
                self.last_off = Some(now);
            }
        }
    }

    /// When [`Self::handle_timeout`] must be called: the end of the gap after the last axle.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.on_scale.is_some() {
            return None;
        }
        self.last_off.map(|off| off + self.max_axle_gap)
    }

    /// The time has come (or passed): end the vehicle if the scale stayed empty long enough.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|t| now >= t) {
            self.finish();
        }
    }

    /// The next weighed vehicle.
    pub fn poll(&mut self) -> Option<VehicleWeight> {
        self.out.pop_front()
    }

    fn finish(&mut self) {
        let Some(at) = self.last_off.take() else {
            return;
        };
        let axles_kg = std::mem::take(&mut self.axles_kg);
        let unweighed_axles = std::mem::take(&mut self.unweighed);
        if axles_kg.is_empty() && unweighed_axles == 0 {
            return;
        }
        self.out.push_back(VehicleWeight {
            total_kg: axles_kg.iter().sum(),
            axles_kg,
            unweighed_axles,
            at,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stability::{StabilityConfig, StabilityDetector, WeightReading};

    /// A three-axle-group truck drawn across a short scale at 10 readings/s, through the real
    /// stability detector.
    #[test]
    fn axle_groups_are_summed_into_one_vehicle() {
        let t0 = Instant::now();
        let mut det = StabilityDetector::new(StabilityConfig {
            min_duration: Duration::from_millis(300),
            ..StabilityConfig::default()
        });
        let mut sum = AxleSummer::new(Duration::from_secs(3));
        let mut t = t0;
        let mut feed = |kg: f64, n: usize, det: &mut StabilityDetector, sum: &mut AxleSummer| {
            for _ in 0..n {
                t += Duration::from_millis(100);
                det.handle_reading(
                    t,
                    WeightReading {
                        weight_kg: kg,
                        division_kg: 20.0,
                        motion: Some(false),
                    },
                );
                while let Some(e) = det.poll() {
                    sum.handle_event(t, &e);
                }
                sum.handle_timeout(t);
            }
        };
        for axle in [6_200.0, 11_400.0, 21_800.0] {
            feed(axle, 10, &mut det, &mut sum);
            feed(0.0, 10, &mut det, &mut sum); // 1 s between groups: the same vehicle
        }
        assert_eq!(sum.poll(), None, "still within the gap");
        feed(0.0, 25, &mut det, &mut sum);
        let v = sum.poll().expect("the vehicle ended after 3 s empty");
        assert_eq!(v.axles_kg, [6_200.0, 11_400.0, 21_800.0]);
        assert_eq!((v.total_kg, v.unweighed_axles), (39_400.0, 0));
        assert_eq!(sum.poll_timeout(), None);
    }

    #[test]
    fn an_axle_without_a_stable_weight_is_counted_and_a_late_axle_starts_a_new_vehicle() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let stable = |kg, ms| {
            WeighEvent::Stable(crate::StableWeight {
                weight_kg: kg,
                division_kg: 20.0,
                at: at(ms),
            })
        };
        let mut sum = AxleSummer::new(Duration::from_secs(2));
        sum.handle_event(at(0), &WeighEvent::VehicleOn { at: at(0) });
        sum.handle_event(at(500), &stable(7_000.0, 500));
        sum.handle_event(at(900), &stable(7_020.0, 900));
        sum.handle_event(at(1_000), &WeighEvent::VehicleOff { at: at(1_000) });
        sum.handle_event(at(1_500), &WeighEvent::VehicleOn { at: at(1_500) });
        sum.handle_event(at(1_800), &WeighEvent::VehicleOff { at: at(1_800) });
        assert_eq!(sum.poll_timeout(), Some(at(3_800)));
        // The next vehicle's first axle arrives after the gap: the first vehicle is done.
        sum.handle_event(at(5_000), &WeighEvent::VehicleOn { at: at(5_000) });
        let v = sum.poll().expect("first vehicle");
        assert_eq!(
            (v.axles_kg.as_slice(), v.unweighed_axles, v.at),
            (&[7_020.0][..], 1, at(1_800))
        );
        assert_eq!(sum.poll_timeout(), None, "an axle is on the scale");
    }
}
