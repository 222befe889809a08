//! What the indicator's status says beyond the weight: overload, underload, indicator errors and
//! zero drift, raised and cleared as events.
//!
//! A pure state machine like [`crate::stability`]: [`ScaleMonitor::handle_reading`]`(now,
//! reading)` with a [`ScaleReading`] (any protocol), then [`ScaleMonitor::poll`] for
//! [`AlarmEvent`]s. It never reads the clock.
//!
//! # Rules
//!
//! * **Status**: a reading whose status is overload, underload or error raises that alarm; the
//!   first reading with status ok clears it (one alarm of this kind at a time: a change from
//!   overload straight to underload clears one and raises the other).
//! * **Zero drift**: the empty bridge should read zero. While readings are below
//!   `empty_threshold_kg`, still (the indicator's motion flag clear, when it has one), and more
//!   than `zero_band_divisions` divisions away from zero for at least `zero_drift_after`
//!   without a break, [`Alarm::ZeroDrift`] is raised with the offset seen last; it is cleared by
//!   the first reading back within the band. Readings above the threshold (a vehicle) or in
//!   motion restart the timing but neither raise nor clear. Indicators zero-track small drifts
//!   themselves (typically within 0.5 d); a drift past the band for that long means the bridge
//!   needs zeroing or has debris on it: an operator action.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::indicator::{ScaleReading, ScaleStatus};

/// Tuning of the [`ScaleMonitor`]; one per weighbridge.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlarmConfig {
    /// Readings below this are an empty bridge. Default 200 kg, as the stability detector.
    pub empty_threshold_kg: f64,
    /// How far from zero an empty bridge may read, in divisions. Default 2.
    pub zero_band_divisions: f64,
    /// How long the drift must last. Default 10 s. In config files: `zero_drift_after_ms`.
    #[serde(rename = "zero_drift_after_ms", with = "crate::stability::millis")]
    pub zero_drift_after: Duration,
}

impl Default for AlarmConfig {
    fn default() -> Self {
        Self {
            empty_threshold_kg: 200.0,
            zero_band_divisions: 2.0,
            zero_drift_after: Duration::from_secs(10),
        }
    }
}

/// What is wrong.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum Alarm {
    Overload,
    Underload,
    IndicatorError,
    /// The empty bridge reads this far from zero.
    ZeroDrift {
        offset_kg: f64,
    },
}

/// An alarm raised or cleared at `at`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AlarmEvent {
    Raised { alarm: Alarm, at: Instant },
    Cleared { alarm: Alarm, at: Instant },
}

/// The state machine; see the module documentation for the rules.
#[derive(Debug)]
pub struct ScaleMonitor {
    config: AlarmConfig,
    status_alarm: Option<Alarm>,
    /// Since when the empty, still bridge has been out of the zero band.
    drifting_since: Option<Instant>,
    zero_drift: Option<Alarm>,
    events: VecDeque<AlarmEvent>,
}

impl ScaleMonitor {
    pub fn new(config: AlarmConfig) -> Self {
        Self {
            config,
            status_alarm: None,
            drifting_since: None,
            zero_drift: None,
            events: VecDeque::new(),
        }
    }

    /// Take one reading that arrived at `now`.
    pub fn handle_reading(&mut self, now: Instant, r: &ScaleReading) {
        let alarm = match r.status {
            ScaleStatus::Ok => None,
            ScaleStatus::Overload => Some(Alarm::Overload),
            ScaleStatus::Underload => Some(Alarm::Underload),
            ScaleStatus::Error => Some(Alarm::IndicatorError),
        };
        if alarm != self.status_alarm {
            if let Some(old) = self.status_alarm.take() {
                self.events.push_back(AlarmEvent::Cleared {
                    alarm: old,
                    at: now,
                });
            }
            if let Some(new) = alarm {
                self.events.push_back(AlarmEvent::Raised {
                    alarm: new,
                    at: now,
                });
            }
            self.status_alarm = alarm;
        }
        let (Some(w), Some(d)) = (r.weight_kg, r.division_kg) else {
            self.drifting_since = None;
            return;
        };
        if alarm.is_some() || w.abs() >= self.config.empty_threshold_kg || r.motion == Some(true) {
            self.drifting_since = None;
            return;
        }
        if w.abs() <= self.config.zero_band_divisions * d.abs() {
            self.drifting_since = None;
            if let Some(old) = self.zero_drift.take() {
                self.events.push_back(AlarmEvent::Cleared {
                    alarm: old,
                    at: now,
                });
            }
            return;
        }
        let since = *self.drifting_since.get_or_insert(now);
        if self.zero_drift.is_none()
            && now.saturating_duration_since(since) >= self.config.zero_drift_after
        {
            let alarm = Alarm::ZeroDrift { offset_kg: w };
            self.zero_drift = Some(alarm);
            self.events.push_back(AlarmEvent::Raised { alarm, at: now });
        }
    }

    /// The next event, oldest first.
    pub fn poll(&mut self) -> Option<AlarmEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicator::{Decimal, Unit};

    fn reading(kg: i64, motion: Option<bool>) -> ScaleReading {
        let mut r = ScaleReading::displayed(Decimal::new(kg, 0), Unit::Kg, false, motion);
        r.division_kg = Some(20.0);
        r
    }

    fn drain(m: &mut ScaleMonitor) -> Vec<AlarmEvent> {
        std::iter::from_fn(|| m.poll()).collect()
    }

    #[test]
    fn status_alarms_are_raised_once_and_cleared() {
        let t0 = Instant::now();
        let mut m = ScaleMonitor::new(AlarmConfig::default());
        let over = ScaleReading::status_only(ScaleStatus::Overload);
        m.handle_reading(t0, &reading(30_000, Some(false)));
        m.handle_reading(t0 + Duration::from_millis(100), &over);
        m.handle_reading(t0 + Duration::from_millis(200), &over);
        let under = ScaleReading::status_only(ScaleStatus::Underload);
        m.handle_reading(t0 + Duration::from_millis(300), &under);
        m.handle_reading(t0 + Duration::from_millis(400), &reading(0, Some(false)));
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(
            drain(&mut m),
            [
                AlarmEvent::Raised {
                    alarm: Alarm::Overload,
                    at: at(100)
                },
                AlarmEvent::Cleared {
                    alarm: Alarm::Overload,
                    at: at(300)
                },
                AlarmEvent::Raised {
                    alarm: Alarm::Underload,
                    at: at(300)
                },
                AlarmEvent::Cleared {
                    alarm: Alarm::Underload,
                    at: at(400)
                },
            ]
        );
    }

    #[test]
    fn zero_drift_needs_an_empty_still_bridge_for_long_enough() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut m = ScaleMonitor::new(AlarmConfig::default());
        // 60 kg = 3 divisions off zero, empty and still: raised after 10 s, once.
        for s in 0..=12u64 {
            m.handle_reading(at(s * 1000), &reading(60, Some(false)));
        }
        assert_eq!(
            drain(&mut m),
            [AlarmEvent::Raised {
                alarm: Alarm::ZeroDrift { offset_kg: 60.0 },
                at: at(10_000)
            }]
        );
        // A vehicle does not clear it; a reading back in the band does.
        m.handle_reading(at(13_000), &reading(25_000, Some(false)));
        m.handle_reading(at(14_000), &reading(20, Some(false)));
        assert_eq!(
            drain(&mut m),
            [AlarmEvent::Cleared {
                alarm: Alarm::ZeroDrift { offset_kg: 60.0 },
                at: at(14_000)
            }]
        );
        // Drift interrupted by motion restarts the timing: nothing after 9 + 9 s.
        for s in 0..9u64 {
            m.handle_reading(at(20_000 + s * 1000), &reading(-80, None));
        }
        m.handle_reading(at(29_000), &reading(-80, Some(true)));
        for s in 0..9u64 {
            m.handle_reading(at(30_000 + s * 1000), &reading(-80, None));
        }
        assert_eq!(drain(&mut m), []);
    }
}
