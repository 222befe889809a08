use super::*;
use bcp_record::{ScanDecision, ScanEvent};

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
    }
}

fn lane() -> LaneCorrelator {
    LaneCorrelator::new("TJ-1", "L1", LaneRules::default())
}

#[test]
fn one_vehicle_links_all_its_evidence_and_closes_after_the_window() {
    let mut l = lane();
    l.handle_vehicle_on(t(0));
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
    assert_eq!(a.weight.map(|w| w.gross_kg), Some(10_000.0));
    assert!(a.flags.iter().any(|f| f.code == "no_vehicle_off"));
    let b = l.poll(t(5_000)).expect("second");
    assert_eq!(b.weight.map(|w| w.gross_kg), Some(30_000.0));
    assert!(!b.flags.iter().any(|f| f.code == "no_vehicle_off"));
}

#[test]
fn missing_evidence_is_flagged_with_reasons() {
    let mut l = lane();
    l.handle_vehicle_on(t(0));
    l.handle_vehicle_off(t(1_000));
    let c = l.poll(t(4_000)).expect("a crossing even with nothing read");
    let codes: Vec<_> = c.flags.iter().map(|f| f.code.as_str()).collect();
    assert_eq!(
        codes,
        [
            "plate_unread",
            "no_stable_weight",
            "no_dimensions",
            "no_scan"
        ]
    );
    assert!(c.flags.iter().all(|f| !f.reason.is_empty()));
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
