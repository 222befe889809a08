//! The lane correlator on air and river posts: an identifier in the plate slot.

use super::*;
use bcp_record::Crossing;

fn t(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(1_800_000_000_000 + ms).unwrap_or_default()
}

/// One frame's reads, best first, as the ANPR engine gives them (no format: not a plate).
fn frame(texts: &[&str]) -> Evidence {
    Evidence::PlateReads(
        texts
            .iter()
            .map(|text| PlateCandidate {
                text: (*text).to_owned(),
                confidence: 0.9,
                bbox: [10, 10, 100, 30],
                format: None,
                char_confidences: vec![0.9; text.len()],
            })
            .collect(),
    )
}

fn lane(identifier: IdKind, weighed: bool) -> LaneCorrelator {
    LaneCorrelator::new("P", "S1", LaneRules::default()).with_conveyance(Conveyance {
        identifier: Some(identifier),
        weighed,
    })
}

/// One conveyance present from 0 to 4 s with these frames (weighed at 1 s on a weighing
/// post), closed.
fn pass(l: &mut LaneCorrelator, frames: &[&[&str]]) -> Crossing {
    l.handle_vehicle_on(t(0));
    if l.conveyance.weighed {
        l.handle_stable_weight(t(1000), weighing());
    }
    for (k, f) in frames.iter().enumerate() {
        l.handle_evidence(t(500 + 500 * k as i64), frame(f));
    }
    l.handle_vehicle_off(t(4000));
    l.poll(t(10_000)).unwrap_or_else(|| panic!("no record"))
}

fn codes(c: &Crossing) -> Vec<&str> {
    c.flags.iter().map(|f| f.code.as_str()).collect()
}

#[test]
fn an_air_post_reads_the_uld_id_into_the_plate_slot() {
    let mut l = lane(IdKind::Uld, true);
    let c = pass(
        &mut l,
        &[
            &["HELLO WORLD", "AKE 12345 LH"],
            &["AKE12345LH", "12345"],
            &["AKEI2345LH"],
        ],
    );
    let plate = c
        .plate
        .as_ref()
        .map(|p| (p.text.as_str(), p.format.as_deref(), p.frames));
    // The third frame's I in a digit position is a 1 by shape, not a repair.
    assert_eq!(plate, Some(("AKE12345LH", Some("ULD"), 3)));
    assert!(!codes(&c).contains(&"plate_unread"), "{:?}", c.flags);
    assert!(!codes(&c).contains(&"identifier_repaired"));
}

fn weighing() -> Weighing {
    Weighing {
        gross_kg: 1_240.0,
        division_kg: 0.5,
        stable_at: t(1000),
        device: "scale1".into(),
        axles_kg: Vec::new(),
        unweighed_axles: 0,
    }
}

#[test]
fn a_river_post_reads_eni_or_imo_and_does_not_ask_a_vessel_for_its_weight() {
    let mut l = lane(IdKind::Vessel, false);
    // The presence sensor's reading is no weight of the vessel.
    l.handle_vehicle_on(t(-100));
    l.handle_stable_weight(t(-50), weighing());
    l.handle_vehicle_off(t(-10));
    let c = l
        .poll(t(5000))
        .unwrap_or_else(|| panic!("presence alone is a record"));
    assert!(c.weight.is_none(), "{:?}", c.weight);
    assert_eq!(codes(&c), ["plate_unread", "no_scan"]);
    let c = pass(&mut l, &[&["IMO 9074729"], &["9074729", "IMO"]]);
    let plate = c
        .plate
        .as_ref()
        .map(|p| (p.text.as_str(), p.format.as_deref()));
    assert_eq!(plate, Some(("9074729", Some("IMO"))));
    assert_eq!(
        codes(&c),
        ["no_scan"],
        "no weight or dimension flags on a vessel"
    );

    let c = pass(&mut l, &[&["02328537"]]);
    let plate = c
        .plate
        .as_ref()
        .map(|p| (p.text.as_str(), p.format.as_deref()));
    assert_eq!(plate, Some(("02328537", Some("ENI"))));
}

#[test]
fn an_identifier_known_only_through_a_repair_is_flagged() {
    // IMO 9074729 with its check digit read as 8: the only look-alike repair is 8 -> 9.
    let mut l = lane(IdKind::Vessel, false);
    let c = pass(&mut l, &[&["9074728"], &["9074728"]]);
    assert_eq!(c.plate.as_ref().map(|p| p.text.as_str()), Some("9074729"));
    let why = c
        .flags
        .iter()
        .find(|f| f.code == "identifier_repaired")
        .map(|f| f.reason.as_str());
    assert!(
        why.is_some_and(|w| w.contains("9074729") && w.contains("read as 9074728")),
        "{:?}",
        c.flags
    );
    // Read right once: no doubt left.
    let c = pass(&mut l, &[&["9074728"], &["9074729"], &["9074729"]]);
    assert_eq!(c.plate.as_ref().map(|p| p.text.as_str()), Some("9074729"));
    assert!(!codes(&c).contains(&"identifier_repaired"), "{:?}", c.flags);
}

#[test]
fn an_unreadable_identifier_still_yields_a_record_saying_what_was_refused() {
    let refused = ["1234560", "9074700", "9999990", "1111110"]
        .into_iter()
        .find(|r| {
            matches!(
                identifiers::validate(IdKind::Vessel, r),
                Err(IdError::CheckDigit { .. } | IdError::Ambiguous { .. })
            )
        });
    let Some(refused) = refused else {
        panic!("none of the candidates fails the IMO check beyond repair")
    };
    let mut l = lane(IdKind::Vessel, false);
    let c = pass(&mut l, &[&[refused, "HELLO"]]);
    assert!(c.plate.is_none());
    let why = c
        .flags
        .iter()
        .find(|f| f.code == "plate_unread")
        .map(|f| f.reason.clone())
        .unwrap_or_default();
    assert!(
        why.starts_with("no valid vessel number (ENI or IMO) read; refused:")
            && why.contains(refused),
        "{why}"
    );
    // Nothing identifier-like at all (a fresh lane: `pass` reuses the same times).
    let mut l = lane(IdKind::Vessel, false);
    let c = pass(&mut l, &[&["HELLO"]]);
    let why = c
        .flags
        .iter()
        .find(|f| f.code == "plate_unread")
        .map(|f| f.reason.as_str());
    assert_eq!(
        why,
        Some("no camera frame showed a vessel number (ENI or IMO) while it was present")
    );
}

#[test]
fn a_road_plate_is_no_identifier() {
    let mut l = lane(IdKind::Uld, true);
    let c = pass(&mut l, &[&["1234AB01"], &["1234AB01"]]);
    assert!(c.plate.is_none(), "{:?}", c.plate);
}
