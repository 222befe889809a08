//! A rear camera's reads: a tractor and trailer is one crossing with both plates, and rear
//! reads never split a crossing or make one of their own.

use super::*;
use bcp_record::Crossing;

fn t(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_800_000_000_000 + ms).expect("valid time")
}

fn candidate(text: &str, format: Option<&'static str>) -> Vec<PlateCandidate> {
    vec![PlateCandidate {
        text: text.to_owned(),
        confidence: 0.9,
        bbox: [10, 10, 100, 30],
        format,
        char_confidences: vec![0.9; text.len()],
    }]
}

fn front(text: &str) -> Evidence {
    Evidence::PlateReads(candidate(text, Some("RU")))
}

fn rear(text: &str) -> Evidence {
    Evidence::RearFrame(candidate(text, Some("RU-TRAILER")))
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
    LaneCorrelator::new("RU-1", "L1", LaneRules::default())
}

fn flag<'a>(c: &'a Crossing, code: &str) -> Option<&'a str> {
    c.flags
        .iter()
        .find(|f| f.code == code)
        .map(|f| f.reason.as_str())
}

fn text(p: &Option<bcp_record::PlateRead>) -> Option<&str> {
    p.as_ref().map(|p| p.text.as_str())
}

#[test]
fn a_tractor_and_trailer_is_one_crossing_with_both_plates() {
    let mut l = lane();
    l.handle_vehicle_on(t(0));
    l.handle_evidence(t(100), front("A123BC77"));
    l.handle_evidence(t(300), front("A123BC77"));
    l.handle_stable_weight(t(800), weighing(38_000.0, t(800)));
    // The rear camera sees the trailer's plate while the tractor's is still in the front
    // camera's frames: no second vehicle.
    l.handle_evidence(t(400), rear("AB123477"));
    l.handle_evidence(t(600), rear("AB123477"));
    l.handle_evidence(t(700), front("A123BC77"));
    l.handle_evidence(t(900), rear("AB1Z3477"));
    l.handle_vehicle_off(t(2_000));
    let c = l.poll(t(5_000)).expect("one crossing");
    assert_eq!(text(&c.plate), Some("A123BC77"));
    let trailer = c.trailer_plate.as_ref().expect("the trailer's plate");
    assert_eq!(trailer.text, "AB123477");
    assert_eq!(trailer.format.as_deref(), Some("RU-TRAILER"));
    assert_eq!(trailer.frames, 3);
    assert!(flag(&c, "tailgating").is_none(), "{:?}", c.flags);
    assert!(l.poll(t(60_000)).is_none(), "one crossing, not two");
    assert_eq!(l.counters().tailgates, 0);
}

#[test]
fn a_rear_read_never_splits_even_when_it_shows_a_plain_second_plate_many_times() {
    let mut l = lane();
    l.handle_vehicle_on(t(0));
    for ms in [100, 200] {
        l.handle_evidence(t(ms), front("A123BC77"));
    }
    for ms in [300, 400, 500, 600] {
        l.handle_evidence(t(ms), rear("XT004297"));
    }
    l.handle_vehicle_off(t(2_000));
    let c = l.poll(t(5_000)).expect("one crossing");
    assert_eq!(text(&c.trailer_plate), Some("XT004297"));
    assert!(l.poll(t(60_000)).is_none());
    assert_eq!(l.counters().tailgates, 0);
}

#[test]
fn two_tailgating_vehicles_with_a_rear_camera_still_split() {
    let mut l = lane();
    l.handle_vehicle_on(t(0));
    l.handle_evidence(t(100), front("A123BC77"));
    l.handle_evidence(t(300), front("A123BC77"));
    l.handle_evidence(t(400), rear("AB123477"));
    l.handle_stable_weight(t(600), weighing(30_000.0, t(600)));
    // A second truck nose to tail: the bridge never empties; its trailer too is read.
    l.handle_evidence(t(1_500), front("K777OP99"));
    l.handle_evidence(t(1_700), front("K777OP99"));
    l.handle_evidence(t(1_800), rear("EM765450"));
    l.handle_evidence(t(2_100), rear("EM765450"));
    l.handle_vehicle_off(t(3_000));
    let a = l.poll(t(6_000)).expect("the first vehicle");
    assert_eq!(text(&a.plate), Some("A123BC77"));
    assert_eq!(text(&a.trailer_plate), Some("AB123477"));
    assert_eq!((a.arrived_at, a.left_at), (t(0), t(1_500)));
    assert!(flag(&a, "tailgating").is_some(), "{:?}", a.flags);
    let b = l.poll(t(6_000)).expect("the second vehicle");
    assert_eq!(text(&b.plate), Some("K777OP99"));
    assert_eq!(text(&b.trailer_plate), Some("EM765450"));
    assert!(flag(&b, "tailgating").is_some(), "{:?}", b.flags);
    assert_eq!(l.counters().tailgates, 1);
}

#[test]
fn a_rear_read_alone_does_not_make_a_crossing_of_a_passer_by() {
    let mut l = lane();
    // No vehicle on the bridge: the rear camera saw something passing.
    l.handle_evidence(t(0), rear("AB123477"));
    l.handle_evidence(t(200), rear("AB123477"));
    assert!(l.poll(t(10_000)).is_none(), "no record");
    for _ in 0..2 {
        match l.poll_event() {
            Some(LaneEvent::Unmatched { what, .. }) => assert_eq!(what, "rear plate read"),
            other => panic!("want an unmatched rear read, got {other:?}"),
        }
    }
    // A presence with no weight and only rear reads: nothing shows a vehicle crossed.
    l.handle_vehicle_on(t(20_000));
    l.handle_evidence(t(20_300), rear("AB123477"));
    l.handle_vehicle_off(t(21_000));
    assert!(l.poll(t(30_000)).is_none(), "no record");
    assert!(
        matches!(l.poll_event(), Some(LaneEvent::Reversal { .. })),
        "a reversal"
    );
    assert_eq!(l.counters().crossings, 0);
}

#[test]
fn a_rigid_trucks_own_plate_seen_from_behind_is_no_trailer_plate() {
    let mut l = lane();
    l.handle_vehicle_on(t(0));
    l.handle_evidence(t(100), front("A123BC77"));
    l.handle_evidence(t(300), front("A123BC77"));
    l.handle_stable_weight(t(500), weighing(12_000.0, t(500)));
    // Its rear plate, read exactly and with a misread character.
    l.handle_evidence(t(600), rear("A123BC77"));
    l.handle_evidence(t(700), rear("A123BC71"));
    l.handle_vehicle_off(t(2_000));
    let c = l.poll(t(5_000)).expect("one crossing");
    assert_eq!(text(&c.plate), Some("A123BC77"));
    assert_eq!(c.trailer_plate, None);
}

#[test]
fn with_the_front_plate_unread_the_rear_read_is_kept_and_named_in_the_reason() {
    let mut l = lane();
    l.handle_vehicle_on(t(0));
    l.handle_stable_weight(t(500), weighing(12_000.0, t(500)));
    l.handle_evidence(t(600), rear("AB123477"));
    l.handle_vehicle_off(t(2_000));
    let c = l.poll(t(5_000)).expect("one crossing");
    assert_eq!(c.plate, None);
    assert_eq!(text(&c.trailer_plate), Some("AB123477"));
    let why = flag(&c, "plate_unread").expect("flagged");
    assert!(why.contains("rear camera read AB123477"), "{why}");
}

#[test]
fn one_stray_unformatted_rear_read_is_no_trailer_but_two_agreeing_ones_are() {
    let stray = |text: &str| Evidence::RearFrame(candidate(text, None));
    let mut l = lane();
    l.handle_vehicle_on(t(0));
    l.handle_evidence(t(100), front("A123BC77"));
    l.handle_evidence(t(300), front("A123BC77"));
    l.handle_stable_weight(t(500), weighing(12_000.0, t(500)));
    // Its own plate at the back, and a piece of its tailgate's lettering.
    l.handle_evidence(t(600), rear("A123BC77"));
    l.handle_evidence(t(700), stray("OD4"));
    l.handle_vehicle_off(t(2_000));
    let c = l.poll(t(5_000)).expect("one crossing");
    assert_eq!(c.trailer_plate, None);

    // Reads that the camera's reader fitted to no format, the same in two frames, are kept.
    l.handle_vehicle_on(t(10_000));
    l.handle_evidence(t(10_100), front("K777OP99"));
    l.handle_evidence(t(10_400), stray("7788TT"));
    l.handle_evidence(t(10_600), stray("7788TT"));
    l.handle_vehicle_off(t(12_000));
    let c = l.poll(t(15_000)).expect("the second crossing");
    let trailer = c.trailer_plate.as_ref().expect("a trailer plate");
    assert_eq!(trailer.frames, 2, "{trailer:?}");
}
