//! A telegram written out by hand from the field table, round trip and resynchronisation, then
//! the geometry on a synthetic box and the tracker over a passing vehicle.

use super::*;
use crate::testkit::{assert_resyncs, assert_round_trip};
use proptest::prelude::*;

/// 5 points from -45 deg in 1 deg steps, 50 Hz, counter 0x343, scale 1.0; the fields after the
/// data (no RSSI, no position, no name, no time stamp) as a TiM sends them.
const VECTOR: &[u8] = b"\x02sRA LMDscandata 1 1 89A27F 0 0 343 347 27477BA9 2747813B 0 0 0 0 0 \
1388 168 0 1 DIST1 3F800000 00000000 FFF92230 2710 5 1F4 1F5 0 1F7 1F8 0 0 0 0 0 0\x03";

#[test]
fn hand_written_telegram() {
    let expected = ScanTelegram {
        counter: 0x343,
        frequency_centi_hz: 5000,
        scale: 1.0,
        start_angle: -450_000,
        angle_step: 10_000,
        ranges: vec![500, 501, 0, 503, 504],
    };
    assert_round_trip(decode, VECTOR, &expected);
    // Cut anywhere before ETX: more bytes needed.
    for cut in 0..VECTOR.len() {
        assert_eq!(decode(&VECTOR[..cut]), Ok(None));
    }
    let mut wrong = VECTOR.to_vec();
    wrong[8] = b'X'; // "LMDscandata" -> "LMDXcandata"
    assert_eq!(decode(&wrong).expect_err("not a scan").skip, VECTOR.len());
}

fn enc(t: &ScanTelegram) -> Vec<u8> {
    let mut out = Vec::new();
    encode(t, &mut out);
    out
}

fn arb_telegram() -> impl Strategy<Value = ScanTelegram> {
    (
        any::<u32>(),
        1u32..=10_000,
        prop_oneof![Just(1.0f32), Just(2.0f32), Just(0.5f32)],
        -1_350_000i32..=1_350_000,
        1u32..=10_000,
        proptest::collection::vec(any::<u16>(), 0..50),
    )
        .prop_map(
            |(counter, f, scale, start_angle, angle_step, ranges)| ScanTelegram {
                counter,
                frequency_centi_hz: f,
                scale,
                start_angle,
                angle_step,
                ranges,
            },
        )
}

proptest! {
    #[test]
    fn round_trip(t in arb_telegram()) {
        assert_round_trip(decode, &enc(&t), &t);
    }

    #[test]
    fn garbage_resynchronises(garbage in proptest::collection::vec(any::<u8>(), 0..60),
                              a in arb_telegram(), b in arb_telegram()) {
        assert_resyncs(decode, &garbage, &enc(&a), &enc(&b), &b);
    }
}

const H: f64 = 6000.0;

fn geometry() -> LaneGeometry {
    LaneGeometry {
        mount_height_mm: H,
        down_angle: 0,
        min_object_height_mm: 300.0,
    }
}

/// What a scanner at height H, 0 deg straight down, sees of a box `width` wide and `height`
/// tall centred under it (or of the empty road), -45..+45 deg in 0.25 deg steps.
fn scan_of_box(width: f64, height: f64) -> ScanTelegram {
    let half = width / 2.0;
    let ranges = (0..=360)
        .map(|i| {
            let phi = (-45.0 + f64::from(i) * 0.25_f64).to_radians();
            let (s, c) = (phi.sin(), phi.cos());
            let road = H / c;
            let roof = (H - height) / c;
            // A ray outside the roof at roof level crossed the side's plane above the box, so
            // it reaches the road.
            let r = if height > 0.0 && (roof * s).abs() <= half {
                roof
            } else {
                road
            };
            r.round() as u16
        })
        .collect();
    ScanTelegram {
        counter: 0,
        frequency_centi_hz: 5000,
        scale: 1.0,
        start_angle: -450_000,
        angle_step: 2_500,
        ranges,
    }
}

#[test]
fn profile_of_a_box_is_its_width_and_height() {
    let p = geometry()
        .profile(&scan_of_box(2550.0, 4000.0))
        .expect("a vehicle");
    // Roof points are ~10-15 mm apart at 2 m and 0.25 deg: the edge is found within a step.
    assert!((p.width_mm - 2550.0).abs() <= 30.0, "{p:?}");
    assert!((p.height_mm - 4000.0).abs() <= 5.0, "{p:?}");
    assert_eq!(geometry().profile(&scan_of_box(0.0, 0.0)), None);
}

#[test]
fn tracker_measures_a_passing_vehicle() {
    let mut tracker = DimensionTracker::new(DimensionTrackerConfig {
        geometry: geometry(),
        speed_mm_per_s: 2000.0,
        min_gap_scans: 3,
    });
    let empty = scan_of_box(0.0, 0.0);
    let truck = scan_of_box(2550.0, 4000.0);
    let mut out = Vec::new();
    // 4 s under the scanner at 50 Hz = 200 scans, one of them a dropout (no vehicle seen).
    let scans = std::iter::repeat_n(&empty, 10)
        .chain(std::iter::repeat_n(&truck, 120))
        .chain(std::iter::once(&empty))
        .chain(std::iter::repeat_n(&truck, 79))
        .chain(std::iter::repeat_n(&empty, 10));
    for t in scans {
        out.extend(tracker.handle_scan(t));
    }
    assert_eq!(out.len(), 1, "{out:?}");
    let d = out[0];
    assert_eq!((d.seq, d.length_mm), (1, 8000));
    assert!(
        d.width_mm.abs_diff(2550) <= 30 && d.height_mm.abs_diff(4000) <= 5,
        "{d:?}"
    );
}
