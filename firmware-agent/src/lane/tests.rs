use super::pending::similar;
use super::*;
use bcp_record::{Crossing, ScanDecision, ScanEvent};

fn t(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_800_000_000_000 + ms).expect("valid time")
}

fn read(text: &str) -> Evidence {
    Evidence::PlateReads(vec![PlateCandidate {
        text: text.to_owned(),
        confidence: 0.95,
        bbox: [10, 10, 100, 30],
        format: Some("TJ"),
        char_confidences: vec![0.95; text.len()],
    }])
}

fn scan(id: &str, at: DateTime<Utc>) -> Evidence {
    Evidence::Scan(ScanEvent {
        scanner_id: "XR-1".into(),
        scan_id: id.into(),
        scanned_at: at,
        lane: None,
        decision: ScanDecision::NoAlarm,
        images: vec![],
        conveyance_id: None,
        decision_by: None,
    })
}

fn weighing(kg: f64, at: DateTime<Utc>) -> Weighing {
    Weighing {
        gross_kg: kg,
        division_kg: 20.0,
        stable_at: at,
        device: "wb1".into(),
        axles_kg: Vec::new(),
        unweighed_axles: 0,
    }
}

fn lane() -> LaneCorrelator {
    LaneCorrelator::new("TJ-1", "L1", LaneRules::default())
}

#[test]
fn one_vehicle_links_all_its_evidence_and_closes_after_the_window() {
    let mut l = lane();
    assert_eq!(l.occupancy(), (false, 0));
    l.handle_vehicle_on(t(0));
    assert_eq!(l.occupancy(), (true, 1));
    l.handle_evidence(
        t(300),
        Evidence::Dimensions(Dimensions {
            length_mm: 16_000,
            width_mm: 2_500,
            height_mm: 4_000,
        }),
    );
    l.handle_stable_weight(t(600), weighing(24_560.0, t(600)));
    l.handle_evidence(t(700), read("1234AB01"));
    l.handle_evidence(t(900), read("1234AB01"));
    l.handle_vehicle_off(t(2_000));
    assert_eq!(l.occupancy(), (false, 1), "off the bridge, still open");
    // A late scan (it happened on the bridge) still joins.
    l.handle_evidence(t(1_500), scan("S1", t(1_500)));
    assert_eq!(l.poll_timeout(), Some(t(5_000)));
    assert!(
        l.poll(t(4_999)).is_none(),
        "closed before the late-evidence window ended"
    );
    let c = l.poll(t(5_000)).expect("a crossing");
    assert_eq!(c.plate.as_ref().map(|p| p.text.as_str()), Some("1234AB01"));
    assert_eq!(c.plate.as_ref().map(|p| p.frames), Some(2));
    assert_eq!(c.weight.as_ref().map(|w| w.gross_kg), Some(24_560.0));
    assert_eq!(c.dimensions.map(|d| d.length_mm), Some(16_000));
    assert_eq!(c.scan.as_ref().map(|s| s.scan_id.as_str()), Some("S1"));
    assert!(c.flags.is_empty(), "{:?}", c.flags);
    assert_eq!((c.arrived_at, c.left_at), (t(0), t(2_000)));
    assert!(l.poll(t(10_000)).is_none());
    assert_eq!(l.occupancy(), (false, 0));
}

#[test]
fn evidence_joins_by_when_it_happened_not_when_it_arrived() {
    let mut l = lane();
    l.handle_vehicle_on(t(0));
    l.handle_vehicle_off(t(2_000));
    l.handle_vehicle_on(t(2_500));
    // The first vehicle's frame is recognised only after the second vehicle arrived.
    l.handle_evidence(t(1_000), read("1111AA01"));
    l.handle_evidence(t(3_000), read("2222BB02"));
    l.handle_vehicle_off(t(4_000));
    let a = l.poll(t(5_000)).expect("first crossing");
    assert_eq!(a.plate.map(|p| p.text), Some("1111AA01".into()));
    assert!(l.poll(t(6_999)).is_none());
    let b = l.poll(t(7_000)).expect("second crossing");
    assert_eq!(b.plate.map(|p| p.text), Some("2222BB02".into()));
}

#[test]
fn a_second_vehicle_without_the_first_leaving_is_split_and_flagged() {
    let mut l = lane();
    l.handle_vehicle_on(t(0));
    l.handle_stable_weight(t(500), weighing(10_000.0, t(500)));
    l.handle_vehicle_on(t(1_000));
    l.handle_stable_weight(t(1_500), weighing(30_000.0, t(1_500)));
    l.handle_vehicle_off(t(2_000));
    let a = l.poll(t(4_000)).expect("first");
    assert_eq!(a.weight.as_ref().map(|w| w.gross_kg), Some(10_000.0));
    assert!(a.flags.iter().any(|f| f.code == "no_vehicle_off"));
    let why = flag(&a, "tailgating").expect("the first says why");
    assert!(why.contains("still on the bridge"), "{why}");
    let b = l.poll(t(5_000)).expect("second");
    assert_eq!(b.weight.as_ref().map(|w| w.gross_kg), Some(30_000.0));
    assert!(!b.flags.iter().any(|f| f.code == "no_vehicle_off"));
    assert!(flag(&b, "tailgating").is_some(), "{:?}", b.flags);
    assert_eq!(l.counters().tailgates, 1);
}

#[test]
fn missing_evidence_is_flagged_with_reasons() {
    let mut l = lane();
    l.handle_vehicle_on(t(0));
    l.handle_stable_weight(t(500), weighing(8_000.0, t(500)));
    l.handle_vehicle_off(t(1_000));
    l.handle_vehicle_on(t(10_000));
    l.handle_evidence(t(10_200), read("1234AB01"));
    l.handle_vehicle_off(t(10_600)); // drove through without stopping
    let c = l.poll(t(4_000)).expect("a crossing with only a weight");
    let codes: Vec<_> = c.flags.iter().map(|f| f.code.as_str()).collect();
    assert_eq!(codes, ["plate_unread", "no_dimensions", "no_scan"]);
    let d = l.poll(t(14_000)).expect("a crossing with only a plate");
    let codes: Vec<_> = d.flags.iter().map(|f| f.code.as_str()).collect();
    assert_eq!(codes, ["no_stable_weight", "no_dimensions", "no_scan"]);
    assert!(c.flags.iter().chain(&d.flags).all(|f| !f.reason.is_empty()));
    assert_eq!(l.counters().reversals, 0);
}

#[test]
fn early_frames_join_the_arriving_vehicle_and_stale_ones_do_not() {
    let mut l = lane();
    l.handle_evidence(t(-10_000), read("9999XX09"));
    l.handle_evidence(t(-500), read("1234AB01"));
    l.handle_vehicle_on(t(0));
    l.handle_vehicle_off(t(1_000));
    let c = l.poll(t(4_000)).expect("a crossing");
    let p = c.plate.expect("plate");
    assert_eq!((p.text.as_str(), p.frames), ("1234AB01", 1));
}

#[test]
fn a_stable_weight_without_arrival_opens_a_flagged_crossing() {
    let mut l = lane();
    l.handle_stable_weight(t(0), weighing(5_000.0, t(0)));
    l.handle_vehicle_off(t(500));
    let c = l.poll(t(3_500)).expect("a crossing");
    assert!(c.flags.iter().any(|f| f.code == "arrival_not_seen"));
    assert_eq!(c.weight.map(|w| w.gross_kg), Some(5_000.0));
}

fn typed_scan(id: &str, at: DateTime<Utc>, typed: Option<&str>) -> ScanEvent {
    ScanEvent {
        scanner_id: "XR-1".into(),
        scan_id: id.into(),
        scanned_at: at,
        lane: None,
        decision: ScanDecision::Alarm,
        images: vec![],
        conveyance_id: typed.map(str::to_owned),
        decision_by: Some("OPERATOR".into()),
    }
}

fn scanning_lane(scan_wait_ms: i64) -> LaneCorrelator {
    LaneCorrelator::new(
        "TJ-1",
        "L1",
        LaneRules {
            scan_wait: TimeDelta::milliseconds(scan_wait_ms),
            ..LaneRules::default()
        },
    )
}

/// A vehicle on the bridge from `on` to `off` with a plate and a stable weight.
fn drive(l: &mut LaneCorrelator, on: i64, off: i64, plate: &str, kg: f64) {
    l.handle_vehicle_on(t(on));
    l.handle_evidence(t(on + 200), read(plate));
    l.handle_stable_weight(t(on + 600), weighing(kg, t(on + 600)));
    l.handle_evidence(t(off - 200), read(plate));
    l.handle_vehicle_off(t(off));
}

fn flag<'a>(c: &'a Crossing, code: &str) -> Option<&'a str> {
    c.flags
        .iter()
        .find(|f| f.code == code)
        .map(|f| f.reason.as_str())
}

#[test]
fn a_late_scan_joins_its_vehicle_while_the_crossing_is_held_for_it() {
    let mut l = scanning_lane(300_000);
    drive(&mut l, 0, 2_000, "1234AB01", 24_560.0);
    assert!(l.poll(t(5_000)).is_none(), "held open for the scan");
    assert_eq!(l.poll_timeout(), Some(t(302_000)));
    // The workstation's verdict, three minutes later, for a scan made on the bridge.
    l.handle_scan(t(182_000), typed_scan("S1", t(1_500), None));
    let c = l.poll(t(182_000)).expect("closes once its scan came");
    assert_eq!(c.scan.as_ref().map(|s| s.scan_id.as_str()), Some("S1"));
    assert_eq!(c.plate.as_ref().map(|p| p.text.as_str()), Some("1234AB01"));
    let why = flag(&c, "scan_joined_late").expect("the decision is in the record");
    assert!(
        why.contains("S1") && why.contains("3 min 0 s") && why.contains("on the bridge"),
        "{why}"
    );
    assert!(why.contains("ALARM by OPERATOR"), "{why}");
    assert_eq!(l.counters().late_scans, 1);
    assert!(l.poll(t(400_000)).is_none());
}

#[test]
fn a_late_scan_joins_by_the_conveyance_id_typed_at_the_scanner() {
    let mut l = scanning_lane(300_000);
    drive(&mut l, 0, 2_000, "1111AA01", 10_000.0);
    drive(&mut l, 3_000, 5_000, "2222BB02", 20_000.0);
    // Scanned while the second vehicle was on the bridge, but the operator typed the first's
    // plate: the typed id wins over the time.
    l.handle_scan(t(90_000), typed_scan("S1", t(4_000), Some("1111 aa-01")));
    let a = l.poll(t(90_000)).expect("the first, with its scan");
    assert_eq!(a.plate.as_ref().map(|p| p.text.as_str()), Some("1111AA01"));
    assert_eq!(a.scan.as_ref().map(|s| s.scan_id.as_str()), Some("S1"));
    let why = flag(&a, "scan_joined_late").expect("late");
    assert!(why.contains("conveyance id 1111AA01"), "{why}");
    assert!(flag(&a, "scan_conveyance_mismatch").is_none());
    assert!(l.poll(t(304_999)).is_none());
    let b = l.poll(t(305_000)).expect("the second, after its hold");
    assert!(b.scan.is_none());
    assert!(
        flag(&b, "no_scan").is_some_and(|w| w.contains("5 min 0 s")),
        "{:?}",
        b.flags
    );
}

#[test]
fn a_scan_joined_by_time_against_the_typed_id_is_flagged() {
    let mut l = lane();
    drive(&mut l, 0, 2_000, "1234AB01", 24_560.0);
    l.handle_scan(t(1_000), typed_scan("S1", t(1_000), Some("9999ZZ99")));
    let c = l.poll(t(5_000)).expect("a crossing");
    assert_eq!(c.scan.as_ref().map(|s| s.scan_id.as_str()), Some("S1"));
    let why = flag(&c, "scan_conveyance_mismatch").expect("mismatch flagged");
    assert!(
        why.contains("9999ZZ99") && why.contains("1234AB01"),
        "{why}"
    );
}

#[test]
fn a_scan_after_its_crossing_closed_becomes_a_record_naming_that_crossing() {
    let mut l = lane(); // no hold: scan_wait 0
    drive(&mut l, 0, 2_000, "1234AB01", 24_560.0);
    let c = l.poll(t(5_000)).expect("closed without a scan");
    l.handle_scan(t(60_000), typed_scan("S1", t(1_500), None));
    let s = l.poll(t(60_000)).expect("a scan record");
    assert_eq!(s.scan.as_ref().map(|s| s.scan_id.as_str()), Some("S1"));
    assert!(s.plate.is_none() && s.weight.is_none() && s.dimensions.is_none());
    assert_eq!(s.flags.len(), 1, "{:?}", s.flags);
    let why = flag(&s, "scan_after_close").expect("flagged");
    assert!(
        why.contains(&c.id.to_string()) && why.contains("1234AB01"),
        "{why}"
    );
    assert_ne!(s.id, c.id);
    assert_eq!(l.counters().scans_after_close, 1);
}

#[test]
fn a_scan_that_matches_no_vehicle_becomes_an_orphan_scan_record() {
    let mut l = lane();
    drive(&mut l, 0, 2_000, "1234AB01", 24_560.0);
    // 40 s after the vehicle left: beyond scan_after_left (30 s), nobody else came.
    l.handle_scan(t(42_000), typed_scan("S9", t(42_000), None));
    let c = l.poll(t(42_000)).expect("the vehicle's crossing");
    assert!(c.scan.is_none());
    assert!(l.poll(t(43_999)).is_none(), "a vehicle may still come on");
    assert_eq!(l.poll_timeout(), Some(t(44_000)));
    let o = l.poll(t(44_000)).expect("an orphan-scan record");
    assert_eq!(o.scan.as_ref().map(|s| s.scan_id.as_str()), Some("S9"));
    assert!(o.plate.is_none() && o.weight.is_none());
    assert_eq!((o.arrived_at, o.left_at), (t(42_000), t(42_000)));
    let codes: Vec<_> = o.flags.iter().map(|f| f.code.as_str()).collect();
    assert_eq!(codes, ["orphan_scan"]);
    assert!(o.flags[0].reason.contains("S9 by XR-1"), "{:?}", o.flags);
    assert_eq!(l.counters().orphan_scans, 1);
    assert!(l.poll(t(100_000)).is_none());
}

#[test]
fn a_scan_just_before_a_vehicle_comes_on_is_not_an_orphan() {
    let mut l = lane();
    l.handle_scan(t(-1_000), typed_scan("S1", t(-1_000), None));
    l.handle_vehicle_on(t(0));
    l.handle_vehicle_off(t(2_000));
    assert!(l.poll(t(4_999)).is_none());
    let c = l.poll(t(5_000)).expect("a crossing");
    assert_eq!(c.scan.map(|s| s.scan_id), Some("S1".into()));
    assert_eq!(l.counters().orphan_scans, 0);
}

#[test]
fn a_vehicle_on_right_after_the_previous_left_flags_both_as_tailgating() {
    let mut l = lane(); // tailgate_gap 500 ms
    drive(&mut l, 0, 2_000, "1111AA01", 10_000.0);
    drive(&mut l, 2_300, 4_000, "2222BB02", 20_000.0);
    drive(&mut l, 5_000, 7_000, "3333CC03", 30_000.0);
    let a = l.poll(t(5_000)).expect("first");
    let b = l.poll(t(7_000)).expect("second");
    let c = l.poll(t(10_000)).expect("third");
    assert_eq!(a.plate.as_ref().map(|p| p.text.as_str()), Some("1111AA01"));
    assert_eq!(b.plate.as_ref().map(|p| p.text.as_str()), Some("2222BB02"));
    for x in [&a, &b] {
        let why = flag(x, "tailgating").expect("both flagged");
        assert!(why.contains("0.3 s") && why.contains("0.5 s"), "{why}");
    }
    assert!(
        flag(&c, "tailgating").is_none(),
        "1 s after is not tailgating"
    );
    assert_eq!(l.counters().tailgates, 1);
}

#[test]
fn a_second_plate_on_the_bridge_splits_the_crossing_in_two() {
    let mut l = lane();
    l.handle_vehicle_on(t(0));
    l.handle_evidence(t(200), read("1111AA01"));
    l.handle_stable_weight(t(600), weighing(10_000.0, t(600)));
    l.handle_evidence(t(400), read("1111AA01")); // recognised late
                                                 // A second truck nose to tail: the bridge never empties.
    l.handle_stable_weight(t(2_200), weighing(27_000.0, t(2_200)));
    l.handle_evidence(t(1_500), read("2222BB02"));
    l.handle_evidence(
        t(1_900),
        Evidence::Dimensions(Dimensions {
            length_mm: 9_000,
            width_mm: 2_500,
            height_mm: 3_000,
        }),
    );
    l.handle_evidence(t(1_700), read("2222BB02"));
    l.handle_scan(t(2_500), typed_scan("S2", t(2_400), None));
    l.handle_vehicle_off(t(3_000));
    let a = l.poll(t(6_000)).expect("the first vehicle");
    assert_eq!(a.plate.as_ref().map(|p| p.text.as_str()), Some("1111AA01"));
    assert_eq!((a.arrived_at, a.left_at), (t(0), t(1_500)));
    assert_eq!(a.weight.as_ref().map(|w| w.gross_kg), Some(10_000.0));
    assert!(a.scan.is_none() && a.dimensions.is_none());
    let why = flag(&a, "tailgating").expect("flagged");
    assert!(
        why.contains("2222BB02") && why.contains("1111AA01"),
        "{why}"
    );
    let b = l.poll(t(6_000)).expect("the second vehicle");
    assert_eq!(b.plate.as_ref().map(|p| p.text.as_str()), Some("2222BB02"));
    assert_eq!((b.arrived_at, b.left_at), (t(1_500), t(3_000)));
    assert_eq!(b.weight.as_ref().map(|w| w.gross_kg), Some(27_000.0));
    assert_eq!(b.scan.as_ref().map(|s| s.scan_id.as_str()), Some("S2"));
    assert_eq!(b.dimensions.map(|d| d.length_mm), Some(9_000));
    assert!(flag(&b, "tailgating").is_some(), "{:?}", b.flags);
    assert!(l.poll(t(60_000)).is_none());
}

#[test]
fn misreads_of_one_plate_do_not_split_it() {
    let mut l = lane();
    l.handle_vehicle_on(t(0));
    for (ms, text) in [
        (100, "1234AB01"),
        (200, "1234AB01"),
        (300, "1234A801"),
        (400, "1Z34AB07"),
        (500, "1234AB01"),
    ] {
        l.handle_evidence(t(ms), read(text));
    }
    l.handle_vehicle_off(t(2_000));
    let c = l.poll(t(5_000)).expect("one crossing");
    assert_eq!(c.plate.as_ref().map(|p| p.text.as_str()), Some("1234AB01"));
    assert!(flag(&c, "tailgating").is_none(), "{:?}", c.flags);
    assert!(l.poll(t(60_000)).is_none());
    assert!(!similar("1234AB01", "5678CD02") && similar("1234AB01", "1Z34AB07"));
}

#[test]
fn an_unread_plate_still_yields_a_crossing_marked_unread() {
    let mut l = lane();
    l.handle_vehicle_on(t(0));
    l.handle_stable_weight(t(600), weighing(24_560.0, t(600)));
    // The camera saw a plate but read no character of it.
    let mut blank = read("X");
    if let Evidence::PlateReads(r) = &mut blank {
        r[0].text.clear();
    }
    l.handle_evidence(t(700), blank);
    l.handle_scan(t(900), typed_scan("S1", t(900), Some("1234-ab-01")));
    l.handle_vehicle_off(t(2_000));
    let c = l.poll(t(5_000)).expect("a crossing all the same");
    assert!(c.plate.is_none());
    assert_eq!(c.weight.as_ref().map(|w| w.gross_kg), Some(24_560.0));
    assert_eq!(c.scan.as_ref().map(|s| s.scan_id.as_str()), Some("S1"));
    let why = flag(&c, "plate_unread").expect("marked unread");
    assert!(
        why.contains("1 camera frame") && why.contains("typed the conveyance id 1234AB01"),
        "{why}"
    );
    assert!(
        flag(&c, "scan_conveyance_mismatch").is_none(),
        "nothing read to contradict"
    );

    let mut l = lane();
    l.handle_vehicle_on(t(0));
    l.handle_stable_weight(t(600), weighing(9_000.0, t(600)));
    l.handle_vehicle_off(t(2_000));
    let c = l.poll(t(5_000)).expect("a crossing");
    let why = flag(&c, "plate_unread").expect("marked unread");
    assert!(why.starts_with("no camera frame"), "{why}");
}

#[test]
fn a_vehicle_that_reverses_off_by_the_entry_is_not_a_crossing() {
    let mut l = scanning_lane(300_000);
    l.handle_vehicle_on(t(0));
    l.handle_evidence(t(200), read("1234AB01"));
    l.handle_stable_weight(t(600), weighing(12_000.0, t(600)));
    l.handle_vehicle_off_by(t(4_000), BridgeEnd::Entry);
    // A late frame of it still goes to it, not to the next vehicle.
    l.handle_evidence(t(3_900), read("1234AB01"));
    assert_eq!(l.poll_timeout(), Some(t(7_000)), "not held for a scan");
    assert!(l.poll(t(7_000)).is_none(), "no record");
    match l.poll_event() {
        Some(LaneEvent::Reversal {
            arrived_at,
            left_at,
            plate,
            reason,
        }) => {
            assert_eq!((arrived_at, left_at), (t(0), t(4_000)));
            assert_eq!(plate.as_deref(), Some("1234AB01"));
            assert!(
                reason.contains("entry side") && reason.contains("12000 kg"),
                "{reason}"
            );
        }
        other => panic!("expected a reversal, got {other:?}"),
    }
    assert_eq!(l.counters().reversals, 1);
    assert_eq!(l.counters().crossings, 0);
    // It comes back and crosses: one crossing, with its plate.
    drive(&mut l, 10_000, 12_000, "1234AB01", 12_020.0);
    l.handle_scan(t(12_100), typed_scan("S1", t(11_000), None));
    let c = l.poll(t(15_000)).expect("the real crossing");
    assert_eq!(c.arrived_at, t(10_000));
    assert_eq!(c.plate.as_ref().map(|p| p.frames), Some(2));
}

#[test]
fn on_and_off_with_no_evidence_at_all_is_a_reversal_not_a_crossing() {
    let mut l = lane();
    l.handle_vehicle_on(t(0));
    l.handle_vehicle_off(t(1_500));
    assert!(l.poll(t(10_000)).is_none());
    let Some(LaneEvent::Reversal { reason, plate, .. }) = l.poll_event() else {
        panic!("a reversal event");
    };
    assert!(plate.is_none());
    assert!(
        reason.contains("1.5 s") && reason.contains("nothing shows a vehicle crossed"),
        "{reason}"
    );
}

#[test]
fn a_scan_of_a_vehicle_that_reversed_off_becomes_an_orphan_scan_record() {
    let mut l = lane();
    l.handle_vehicle_on(t(0));
    l.handle_scan(t(1_000), typed_scan("S1", t(1_000), None));
    l.handle_vehicle_off_by(t(2_000), BridgeEnd::Entry);
    let o = l.poll(t(5_000)).expect("the scan is kept");
    assert!(o.plate.is_none() && o.weight.is_none());
    let why = flag(&o, "orphan_scan").expect("flagged");
    assert!(why.contains("S1") && why.contains("reversed off"), "{why}");
    assert!(matches!(l.poll_event(), Some(LaneEvent::Reversal { .. })));
    assert_eq!(l.counters().crossings, 0);
}

#[test]
fn a_frame_that_reaches_the_lane_before_its_vehicle_comes_on_is_not_given_to_the_one_before() {
    // Found by the interleaving property test: the camera sees the next vehicle approaching
    // and its read arrives before the weighbridge says it came on.
    let mut l = scanning_lane(300_000);
    drive(&mut l, 0, 2_000, "1111AA01", 10_000.0);
    l.handle_evidence(t(4_000), read("2222BB02"));
    assert!(l.poll(t(4_500)).is_none());
    drive(&mut l, 5_000, 7_000, "2222BB02", 20_000.0);
    l.handle_scan(t(8_000), typed_scan("S1", t(1_000), None));
    l.handle_scan(t(8_000), typed_scan("S2", t(6_000), None));
    let a = l.poll(t(8_000)).expect("first");
    assert_eq!(
        a.plate.as_ref().map(|p| (p.text.as_str(), p.frames)),
        Some(("1111AA01", 2))
    );
    let b = l.poll(t(10_000)).expect("second");
    assert_eq!(
        b.plate.as_ref().map(|p| (p.text.as_str(), p.frames)),
        Some(("2222BB02", 3))
    );
}

#[test]
fn a_frame_after_the_vehicle_left_joins_it_when_no_next_vehicle_comes() {
    let mut l = lane();
    drive(&mut l, 0, 2_000, "1111AA01", 10_000.0);
    l.handle_evidence(t(2_300), read("1111AA01")); // a rear camera past the bridge
                                                   // Its own plate: it joins at once, nothing waits to see whether a next vehicle comes.
    assert_eq!(l.poll_timeout(), Some(t(5_000)));
    assert!(l.poll(t(4_999)).is_none());
    let c = l.poll(t(5_000)).expect("the crossing");
    assert_eq!(c.plate.map(|p| p.frames), Some(3));
    assert!(l.poll_event().is_none());
}

#[test]
fn a_frame_of_another_plate_after_the_vehicle_left_waits_then_joins_it_when_none_comes() {
    let mut l = lane();
    drive(&mut l, 0, 2_000, "1111AA01", 10_000.0);
    l.handle_evidence(t(2_300), read("2222BB02"));
    assert_eq!(l.poll_timeout(), Some(t(4_300)));
    assert!(l.poll(t(4_299)).is_none());
    let c = l.poll(t(5_000)).expect("the crossing");
    assert_eq!(c.plate.map(|p| p.frames), Some(3));
    assert!(l.poll_event().is_none());
}

#[test]
fn the_last_looks_at_a_vehicle_that_left_are_its_own_however_late_they_are_read() {
    // A camera that frames vehicles by motion and reads slower than it captures: frames of the
    // first vehicle driving off, captured after it left, are read after the next came on.
    let mut l = lane();
    l.handle_vehicle_on(t(0));
    l.handle_evidence(t(200), read("20O231EM"));
    l.handle_evidence(t(400), read("20O231EM"));
    l.handle_vehicle_off(t(1_000));
    l.handle_evidence(t(1_250), read("20O231EM")); // read before the next came on
    l.handle_vehicle_on(t(2_500));
    l.handle_evidence(t(1_500), read("20O231EM")); // read after it
    for ms in [2_600, 2_800, 3_000] {
        l.handle_evidence(t(ms), read("761TOT03"));
    }
    l.handle_vehicle_off(t(3_500));
    let a = l.poll(t(4_000)).expect("first");
    assert_eq!(
        a.plate.as_ref().map(|p| (p.text.as_str(), p.frames)),
        Some(("20O231EM", 4))
    );
    assert!(flag(&a, "tailgating").is_none(), "{:?}", a.flags);
    let b = l.poll(t(6_500)).expect("second");
    assert_eq!(
        b.plate.as_ref().map(|p| (p.text.as_str(), p.frames)),
        Some(("761TOT03", 3))
    );
    assert!(flag(&b, "tailgating").is_none(), "{:?}", b.flags);
    assert_eq!(l.counters().tailgates, 0);
    assert!(l.poll(t(10_000)).is_none(), "two vehicles, two crossings");
}

#[test]
fn a_vehicle_seen_coming_on_after_its_weight_is_one_crossing_not_two() {
    // A camera that frames vehicles by motion and reads slower than it captures: the
    // weighbridge's stable weight reaches the lane before the camera's word that the vehicle
    // came on, earlier.
    let mut l = lane();
    let dims = Dimensions {
        length_mm: 12_000,
        width_mm: 2_500,
        height_mm: 3_800,
    };
    // Measured as it drove on: before anything said a vehicle was there.
    l.handle_evidence(t(500), Evidence::Dimensions(dims));
    l.handle_stable_weight(t(700), weighing(18_000.0, t(700)));
    assert!(l.poll(t(2_600)).is_none());
    assert!(
        l.poll_event().is_none(),
        "the dimensions joined the weight's crossing"
    );
    l.handle_vehicle_on(t(300));
    l.handle_evidence(t(400), read("1234AB01"));
    l.handle_evidence(t(900), read("1234AB01"));
    l.handle_vehicle_off(t(2_000));
    let c = l.poll(t(5_000)).expect("the crossing");
    assert_eq!(c.arrived_at, t(300));
    assert_eq!(c.weight.map(|w| w.gross_kg), Some(18_000.0));
    assert_eq!(c.plate.map(|p| p.frames), Some(2));
    assert_eq!(c.dimensions, Some(dims));
    let codes: Vec<_> = c.flags.iter().map(|f| f.code.as_str()).collect();
    assert_eq!(codes, ["no_scan"]);
    assert!(l.poll(t(10_000)).is_none(), "one vehicle, one crossing");
    assert_eq!(l.counters().tailgates, 0);
}

#[test]
fn a_vehicle_on_after_a_weight_that_was_before_it_still_splits() {
    // The agent started mid-weighing: the weight's vehicle was never seen coming on, and the
    // next vehicle comes on after that weight. Two crossings, as before.
    let mut l = lane();
    l.handle_stable_weight(t(700), weighing(18_000.0, t(700)));
    l.handle_vehicle_on(t(1_000));
    l.handle_vehicle_off(t(2_000));
    let a = l.poll(t(5_000)).expect("the weight's crossing");
    assert!(flag(&a, "arrival_not_seen").is_some(), "{:?}", a.flags);
    assert!(flag(&a, "tailgating").is_some(), "{:?}", a.flags);
}

#[test]
fn what_happened_after_a_vehicle_left_moves_on_when_its_leaving_is_told_late() {
    // The camera says the first vehicle left only after the next one's weight, dimensions and
    // scan reached the lane (they joined the first meanwhile, as it was still on).
    let mut l = lane();
    l.handle_vehicle_on(t(0));
    l.handle_evidence(t(200), read("1111AA01"));
    l.handle_stable_weight(t(600), weighing(10_000.0, t(600)));
    l.handle_evidence(t(1_600), read("1111AA01"));
    l.handle_scan(t(1_700), typed_scan("S1", t(1_700), None));
    let dims_a = Dimensions {
        length_mm: 9_000,
        width_mm: 2_400,
        height_mm: 3_000,
    };
    l.handle_evidence(t(800), Evidence::Dimensions(dims_a));
    let dims = Dimensions {
        length_mm: 12_000,
        width_mm: 2_500,
        height_mm: 3_800,
    };
    l.handle_evidence(t(3_400), Evidence::Dimensions(dims));
    l.handle_stable_weight(t(3_500), weighing(30_000.0, t(3_500)));
    l.handle_scan(t(3_600), typed_scan("S2", t(3_600), None));
    l.handle_vehicle_off(t(2_000)); // told late
    l.handle_vehicle_on(t(3_000)); // told late too
    l.handle_evidence(t(3_100), read("2222BB02"));
    l.handle_evidence(t(3_300), read("2222BB02"));
    l.handle_vehicle_off(t(5_000));
    let a = l.poll(t(5_000)).expect("first");
    assert_eq!(a.weight.as_ref().map(|w| w.gross_kg), Some(10_000.0));
    assert_eq!(
        a.plate.as_ref().map(|p| (p.text.as_str(), p.frames)),
        Some(("1111AA01", 2))
    );
    assert_eq!(a.dimensions, Some(dims_a));
    assert_eq!(a.scan.as_ref().map(|s| s.scan_id.as_str()), Some("S1"));
    assert!(flag(&a, "extra_scan").is_none(), "{:?}", a.flags);
    let b = l.poll(t(8_000)).expect("second");
    assert_eq!(b.arrived_at, t(3_000));
    assert_eq!(b.weight.map(|w| w.gross_kg), Some(30_000.0));
    assert_eq!(b.dimensions, Some(dims));
    assert_eq!(b.scan.map(|s| s.scan_id), Some("S2".to_owned()));
    assert_eq!(
        b.plate.map(|p| (p.text, p.frames)),
        Some(("2222BB02".to_owned(), 2))
    );
    assert!(b.flags.is_empty(), "{:?}", b.flags);
    assert!(l.poll(t(60_000)).is_none(), "two vehicles, two crossings");
    assert_eq!(l.counters().tailgates, 0);
}

#[test]
fn a_read_between_vehicles_of_another_plate_still_joins_the_next() {
    let mut l = lane();
    drive(&mut l, 0, 1_000, "20O231EM", 10_000.0);
    l.handle_evidence(t(1_800), read("761TOT03")); // the next, approaching
    l.handle_vehicle_on(t(2_500));
    l.handle_vehicle_off(t(3_500));
    let a = l.poll(t(4_000)).expect("first");
    assert_eq!(a.plate.map(|p| p.frames), Some(2));
    let b = l.poll(t(6_500)).expect("second");
    assert_eq!(
        b.plate.map(|p| (p.text, p.frames)),
        Some(("761TOT03".to_owned(), 1))
    );
}

fn frame(id: u64, text: &str, confidence: f32, bbox: [i32; 4]) -> Evidence {
    Evidence::Frame(
        FrameId(id),
        vec![PlateCandidate {
            text: text.to_owned(),
            confidence,
            bbox,
            format: Some("TJ"),
            char_confidences: vec![confidence; text.len()],
        }],
    )
}

#[test]
fn the_record_names_the_frame_of_the_winning_plates_best_read() {
    let mut l = lane();
    l.handle_vehicle_on(t(0));
    l.handle_stable_weight(t(300), weighing(20_000.0, t(300)));
    l.handle_evidence(t(400), frame(7, "1234AB01", 0.80, [1, 2, 100, 30]));
    l.handle_evidence(t(500), frame(8, "1234AB01", 0.97, [5, 6, 110, 32]));
    l.handle_evidence(t(600), frame(9, "1234A801", 0.60, [9, 9, 90, 28]));
    // A read that arrived without a frame reference still votes.
    l.handle_evidence(t(650), read("1234AB01"));
    l.handle_vehicle_off(t(1_000));
    let r = l.poll_record(t(4_000)).expect("a crossing");
    assert_eq!(
        r.crossing.plate.as_ref().map(|p| p.text.as_str()),
        Some("1234AB01")
    );
    assert_eq!(
        r.plate_frame,
        Some(PlateFrame {
            frame: Some(FrameId(8)),
            bbox: [5, 6, 110, 32],
            text: "1234AB01".into(),
        }),
        "the best read of the winning plate, with its box"
    );

    // No plate: no frame; a scan record: no frame.
    l.handle_vehicle_on(t(10_000));
    l.handle_stable_weight(t(10_300), weighing(20_000.0, t(10_300)));
    l.handle_vehicle_off(t(11_000));
    let r = l.poll_record(t(14_000)).expect("a crossing");
    assert!(r.crossing.plate.is_none() && r.plate_frame.is_none());
    l.handle_evidence(t(30_000), scan("S9", t(30_000)));
    let r = l.poll_record(t(40_000)).expect("an orphan scan record");
    assert!(r.crossing.scan.is_some() && r.plate_frame.is_none());
}
