//! Deciding when a vehicle is on the bridge and when its weight has settled.
//!
//! A pure state machine in the style of `quinn-proto`: it never reads the clock and does no I/O.
//! Feed it readings with [`StabilityDetector::handle_reading`]`(now, reading)` and drain
//! [`WeighEvent`]s with [`StabilityDetector::poll`]. It uses no timers, so there is no
//! `poll_timeout`: every decision is taken when a reading arrives.
//!
//! # Rules
//!
//! * **Vehicle on**: a reading above `occupied_threshold_kg` while the bridge is empty emits
//!   [`WeighEvent::VehicleOn`]. **Vehicle off**: a reading below `empty_threshold_kg` while it is
//!   occupied emits [`WeighEvent::VehicleOff`]. The gap between the two thresholds is hysteresis.
//! * **Stable** (only while occupied), both must hold, as in the IND245 firmware's `Motion.c`
//!   ("no motion" = N consecutive readings within a band of d) plus a minimum time, because N
//!   readings at 10 frames/s are only a few hundred milliseconds:
//!   1. the indicator's motion flag is clear (when it has one) on every reading of the run;
//!   2. the run of trailing readings lies within a band of `band_divisions` x one division
//!      (max - min), holds at least `readings` readings, and spans at least `min_duration` from
//!      its first to its newest reading.
//! * The stable weight is the newest reading of the run: the value the indicator displays, which is
//!   the legally relevant one (an average of quantised values may lie between two divisions).
//! * **One `Stable` per settled weight per vehicle**: after a `Stable`, the next one is emitted only
//!   when the weight has settled again at a value more than the band away from the last one
//!   emitted (a second axle group rolling on, a load shifting). Jitter within the band emits nothing.
//! * Readings that are not numbers are ignored; out-of-range frames never become readings (see
//!   [`crate::ToledoFrame::reading`]).
//!
//! The run is kept short: once it has more than `readings` readings and still spans `min_duration`
//! without its oldest reading, the oldest is dropped; at most [`MAX_RUN`] readings are kept.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Upper bound on the readings kept in the run, whatever the configuration.
pub const MAX_RUN: usize = 1024;

/// Tuning of the detector; one per weighbridge. Call [`StabilityConfig::validate`] at start-up.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StabilityConfig {
    /// N: readings in a settled run (IND245 allows 3-10). Default 5.
    pub readings: usize,
    /// k: width of the band, in divisions. Default 1.0.
    pub band_divisions: f64,
    /// T: minimum time a settled run spans. Default 500 ms. In config files: `min_duration_ms`.
    #[serde(rename = "min_duration_ms", with = "millis")]
    pub min_duration: Duration,
    /// Above this the bridge is occupied. Default 500 kg; set it per site.
    pub occupied_threshold_kg: f64,
    /// Below this an occupied bridge is empty again; must be below the occupied threshold.
    /// Default 200 kg.
    pub empty_threshold_kg: f64,
}

impl Default for StabilityConfig {
    fn default() -> Self {
        Self {
            readings: 5,
            band_divisions: 1.0,
            min_duration: Duration::from_millis(500),
            occupied_threshold_kg: 500.0,
            empty_threshold_kg: 200.0,
        }
    }
}

/// A [`StabilityConfig`] value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stability.{key}: {reason}")]
pub struct StabilityConfigError {
    /// The offending key, as spelled in config files.
    pub key: &'static str,
    pub reason: &'static str,
}

impl StabilityConfig {
    /// Check the invariants; the error names the key.
    pub fn validate(&self) -> Result<(), StabilityConfigError> {
        let err = |key, reason| Err(StabilityConfigError { key, reason });
        if self.readings == 0 || self.readings > MAX_RUN {
            return err("readings", "must be between 1 and 1024");
        }
        if !(self.band_divisions.is_finite() && self.band_divisions > 0.0) {
            return err("band_divisions", "must be a positive number");
        }
        if self.min_duration > Duration::from_secs(60) {
            return err("min_duration_ms", "must be at most 60000");
        }
        if !self.occupied_threshold_kg.is_finite() {
            return err("occupied_threshold_kg", "must be a number");
        }
        if !(self.empty_threshold_kg.is_finite()
            && self.empty_threshold_kg < self.occupied_threshold_kg)
        {
            return err(
                "empty_threshold_kg",
                "must be a number below occupied_threshold_kg",
            );
        }
        Ok(())
    }
}

/// One weight reading from an indicator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightReading {
    /// Signed weight.
    pub weight_kg: f64,
    /// One display division.
    pub division_kg: f64,
    /// The indicator's motion flag, if its protocol has one.
    pub motion: Option<bool>,
}

/// A weight that has settled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StableWeight {
    pub weight_kg: f64,
    pub division_kg: f64,
    /// When the reading that completed the settled run arrived.
    pub at: Instant,
}

/// What the detector reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WeighEvent {
    VehicleOn { at: Instant },
    Stable(StableWeight),
    VehicleOff { at: Instant },
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    weight_kg: f64,
}

/// The state machine; see the module documentation for the rules.
#[derive(Debug)]
pub struct StabilityDetector {
    config: StabilityConfig,
    occupied: bool,
    run: VecDeque<Sample>,
    last_stable_kg: Option<f64>,
    events: VecDeque<WeighEvent>,
}

impl StabilityDetector {
    /// A detector for an empty bridge. An invalid config does not panic; it just never settles
    /// (NaN band) or uses `readings = 1` (zero); [`StabilityConfig::validate`] catches both.
    pub fn new(config: StabilityConfig) -> Self {
        Self {
            config,
            occupied: false,
            run: VecDeque::new(),
            last_stable_kg: None,
            events: VecDeque::new(),
        }
    }

    /// Whether a vehicle is on the bridge.
    pub fn is_occupied(&self) -> bool {
        self.occupied
    }

    /// Take one reading that arrived at `now`. `now` must not go backwards (if it does, spans are
    /// computed as zero).
    pub fn handle_reading(&mut self, now: Instant, reading: WeightReading) {
        let WeightReading {
            weight_kg,
            division_kg,
            motion,
        } = reading;
        if !weight_kg.is_finite() || !division_kg.is_finite() {
            return;
        }
        if self.occupied {
            if weight_kg < self.config.empty_threshold_kg {
                self.occupied = false;
                self.run.clear();
                self.last_stable_kg = None;
                self.events.push_back(WeighEvent::VehicleOff { at: now });
                return;
            }
        } else if weight_kg > self.config.occupied_threshold_kg {
            self.occupied = true;
            self.run.clear();
            self.last_stable_kg = None;
            self.events.push_back(WeighEvent::VehicleOn { at: now });
        } else {
            return;
        }

        if motion == Some(true) {
            self.run.clear();
            return;
        }
        let band = self.config.band_divisions * division_kg.abs();
        if band.is_nan() {
            return;
        }
        self.run.push_back(Sample { at: now, weight_kg });
        while spread(&self.run).is_some_and(|s| s > band) {
            self.run.pop_front();
        }
        let n = self.config.readings.max(1);
        let t = self.config.min_duration;
        while (self.run.len() > n
            && self
                .run
                .get(1)
                .is_some_and(|s| now.saturating_duration_since(s.at) >= t))
            || self.run.len() > MAX_RUN
        {
            self.run.pop_front();
        }
        let settled = self.run.len() >= n
            && self
                .run
                .front()
                .is_some_and(|s| now.saturating_duration_since(s.at) >= t);
        if settled
            && self
                .last_stable_kg
                .is_none_or(|prev| (weight_kg - prev).abs() > band)
        {
            self.last_stable_kg = Some(weight_kg);
            self.events.push_back(WeighEvent::Stable(StableWeight {
                weight_kg,
                division_kg,
                at: now,
            }));
        }
    }

    /// The next event, oldest first.
    pub fn poll(&mut self) -> Option<WeighEvent> {
        self.events.pop_front()
    }
}

/// max - min of the run; `None` when empty.
fn spread(run: &VecDeque<Sample>) -> Option<f64> {
    let first = run.front()?.weight_kg;
    let (min, max) = run.iter().fold((first, first), |(lo, hi), s| {
        (lo.min(s.weight_kg), hi.max(s.weight_kg))
    });
    Some(max - min)
}

/// `Duration` as whole milliseconds in config files (also used by [`crate::alarms`]).
pub(crate) mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests;
