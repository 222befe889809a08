//! Scenarios stepped through virtual time: a fixed `Instant` origin plus offsets.

use super::*;

const DIV: f64 = 20.0;
const TICK: Duration = Duration::from_millis(100); // 10 frames/s

fn config() -> StabilityConfig {
    StabilityConfig {
        readings: 5,
        band_divisions: 1.0,
        min_duration: Duration::from_millis(500),
        occupied_threshold_kg: 500.0,
        empty_threshold_kg: 200.0,
    }
}

/// Feeds readings 100 ms apart and collects the events.
struct Bridge {
    detector: StabilityDetector,
    now: Instant,
    events: Vec<WeighEvent>,
}

impl Bridge {
    fn new(config: StabilityConfig) -> Self {
        Self {
            detector: StabilityDetector::new(config),
            now: Instant::now(),
            events: Vec::new(),
        }
    }

    fn feed(&mut self, weight_kg: f64, motion: Option<bool>) {
        self.now += TICK;
        self.detector.handle_reading(
            self.now,
            WeightReading {
                weight_kg,
                division_kg: DIV,
                motion,
            },
        );
        while let Some(e) = self.detector.poll() {
            self.events.push(e);
        }
    }

    fn feed_all(&mut self, weights: &[f64], motion: Option<bool>) {
        for &w in weights {
            self.feed(w, motion);
        }
    }

    fn stables(&self) -> Vec<f64> {
        self.events
            .iter()
            .filter_map(|e| match e {
                WeighEvent::Stable(s) => Some(s.weight_kg),
                _ => None,
            })
            .collect()
    }

    fn kinds(&self) -> Vec<&'static str> {
        self.events
            .iter()
            .map(|e| match e {
                WeighEvent::VehicleOn { .. } => "on",
                WeighEvent::Stable(_) => "stable",
                WeighEvent::VehicleOff { .. } => "off",
            })
            .collect()
    }
}

fn ramp(from: f64, to: f64, steps: usize) -> Vec<f64> {
    (1..=steps)
        .map(|i| from + (to - from) * i as f64 / steps as f64)
        .collect()
}

#[test]
fn truck_drives_on_settles_and_leaves() {
    let mut b = Bridge::new(config());
    b.feed_all(&[0.0, 0.0, 0.0], Some(false));
    assert!(b.events.is_empty(), "empty bridge: nothing happens");

    b.feed_all(&ramp(0.0, 24_000.0, 12), Some(true));
    assert_eq!(b.kinds(), ["on"]);
    let on_at = match b.events[0] {
        WeighEvent::VehicleOn { at } => at,
        _ => unreachable!(),
    };
    assert!(b.stables().is_empty(), "motion: not stable");

    // Settles at 24 000 kg; the indicator clears its motion flag.
    let settle_start = b.now + TICK;
    b.feed_all(&[24_000.0; 5], Some(false));
    assert!(b.stables().is_empty(), "5 readings span only 400 ms");
    b.feed(24_000.0, Some(false));
    assert_eq!(b.stables(), [24_000.0]);
    let WeighEvent::Stable(stable) = b.events[1] else {
        panic!("expected Stable, got {:?}", b.events[1]);
    };
    assert_eq!(stable.division_kg, DIV);
    assert_eq!(stable.at, settle_start + 5 * TICK);
    assert!(on_at < stable.at);

    // Jitter within one division: no further events.
    b.feed_all(
        &[24_020.0, 24_000.0, 23_980.0, 24_000.0, 24_020.0, 24_000.0],
        Some(false),
    );
    b.feed_all(&[24_000.0; 50], Some(false));
    assert_eq!(b.stables(), [24_000.0]);

    // Drives off.
    b.feed_all(&ramp(24_000.0, 0.0, 10), Some(true));
    assert_eq!(b.kinds(), ["on", "stable", "off"]);
    assert!(!b.detector.is_occupied());
}

#[test]
fn never_settles_means_no_stable() {
    let mut b = Bridge::new(config());
    b.feed_all(&ramp(0.0, 20_000.0, 10), Some(true));
    // Weight keeps moving by more than a division per reading, no motion flag from the indicator.
    for i in 0..100 {
        b.feed(
            20_000.0 + if i % 2 == 0 { 60.0 } else { -60.0 },
            Some(false),
        );
    }
    // Or the weight is steady but the indicator insists on motion.
    b.feed_all(&[20_000.0; 50], Some(true));
    b.feed_all(&[0.0], None);
    assert_eq!(b.kinds(), ["on", "off"]);
}

#[test]
fn without_motion_flag_our_rule_decides() {
    let mut b = Bridge::new(config());
    b.feed_all(&ramp(0.0, 7_000.0, 7), None);
    b.feed_all(&[8_000.0, 8_020.0, 8_000.0, 8_020.0, 8_000.0], None);
    assert!(b.stables().is_empty());
    b.feed(8_020.0, None);
    assert_eq!(b.stables(), [8_020.0]);
}

#[test]
fn motion_flag_restarts_the_run() {
    let mut b = Bridge::new(config());
    b.feed_all(&ramp(0.0, 8_000.0, 8), Some(true));
    b.feed_all(&[8_000.0; 4], Some(false));
    b.feed(8_000.0, Some(true));
    b.feed_all(&[8_000.0; 5], Some(false));
    assert!(
        b.stables().is_empty(),
        "the run restarted after the motion flag"
    );
    b.feed(8_000.0, Some(false));
    assert_eq!(b.stables(), [8_000.0]);
}

#[test]
fn a_second_settled_weight_is_reported_once() {
    let mut b = Bridge::new(config());
    // Front axles on: 9 000 kg settles.
    b.feed_all(&ramp(0.0, 9_000.0, 5), Some(true));
    b.feed_all(&[9_000.0; 8], Some(false));
    // Rear axles roll on: 31 000 kg settles.
    b.feed_all(&ramp(9_000.0, 31_000.0, 10), Some(true));
    b.feed_all(&[31_000.0; 8], Some(false));
    // Back and forth within the band later: nothing new.
    b.feed_all(&[31_020.0; 8], Some(false));
    assert_eq!(b.stables(), [9_000.0, 31_000.0]);
    // Leaves and a second vehicle of the same weight comes: reported again.
    b.feed_all(&[0.0], Some(true));
    b.feed_all(&ramp(0.0, 31_000.0, 5), Some(true));
    b.feed_all(&[31_000.0; 8], Some(false));
    assert_eq!(b.kinds(), ["on", "stable", "stable", "off", "on", "stable"]);
}

#[test]
fn hysteresis_between_thresholds() {
    let mut b = Bridge::new(config());
    b.feed_all(&[400.0, 499.0, 500.0], None);
    assert!(b.events.is_empty(), "not above the occupied threshold");
    b.feed(501.0, None);
    assert_eq!(b.kinds(), ["on"]);
    b.feed_all(&[300.0, 200.0], None);
    assert_eq!(b.kinds(), ["on"], "not below the empty threshold");
    b.feed(199.0, None);
    assert_eq!(b.kinds(), ["on", "off"]);
}

#[test]
fn nonsense_readings_are_ignored() {
    let mut b = Bridge::new(config());
    b.feed_all(&[f64::NAN, f64::INFINITY, f64::NEG_INFINITY], None);
    assert!(b.events.is_empty());
    b.feed_all(&[10_000.0; 3], None);
    b.feed(f64::NAN, None);
    b.feed_all(&[10_000.0; 3], None);
    assert_eq!(
        b.stables(),
        [10_000.0],
        "NaN neither breaks nor joins the run"
    );
}

#[test]
fn run_stays_short_while_parked() {
    let mut b = Bridge::new(config());
    b.feed_all(&[10_000.0; 10_000], Some(false));
    assert!(
        b.detector.run.len() <= 7,
        "run length {}",
        b.detector.run.len()
    );
    assert_eq!(b.stables(), [10_000.0]);
}

#[test]
fn config_validation_names_the_key() {
    assert_eq!(StabilityConfig::default().validate(), Ok(()));
    let key = |c: StabilityConfig| c.validate().expect_err("invalid").key;
    assert_eq!(
        key(StabilityConfig {
            readings: 0,
            ..config()
        }),
        "readings"
    );
    assert_eq!(
        key(StabilityConfig {
            band_divisions: f64::NAN,
            ..config()
        }),
        "band_divisions"
    );
    assert_eq!(
        key(StabilityConfig {
            empty_threshold_kg: 500.0,
            ..config()
        }),
        "empty_threshold_kg"
    );
    assert_eq!(
        key(StabilityConfig {
            min_duration: Duration::from_secs(61),
            ..config()
        }),
        "min_duration_ms"
    );
}
