//! The train correlator, step by step in virtual time.

use super::*;
use bcp_record::{IdCheck, TransportMode};
use proptest::prelude::*;

fn t(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(1_790_000_000_000 + ms).unwrap_or_default()
}

fn frame(texts: &[&str]) -> Vec<PlateCandidate> {
    texts
        .iter()
        .map(|text| PlateCandidate {
            text: (*text).to_owned(),
            confidence: 0.9,
            bbox: [0, 0, 10, 10],
            format: None,
            char_confidences: vec![0.9; text.len()],
        })
        .collect()
}

fn weighing(kg: f64, at: DateTime<Utc>) -> Weighing {
    Weighing {
        gross_kg: kg,
        division_kg: 50.0,
        stable_at: at,
        device: "rwb1".into(),
        axles_kg: Vec::new(),
        unweighed_axles: 0,
    }
}

/// A UIC 12-digit wagon number: the 11-digit payload and its Luhn check digit.
fn uic(payload: &str) -> String {
    let d = identifiers::luhn_check_digit(payload.as_bytes()).unwrap_or(0);
    format!("{payload}{d}")
}

fn rules() -> TrainRules {
    TrainRules {
        quiet: TimeDelta::seconds(10),
        reader_offset: TimeDelta::zero(),
        read_margin: TimeDelta::milliseconds(500),
        expect_scan: false,
        scan_wait: TimeDelta::zero(),
        stop: TimeDelta::seconds(5),
        standing: TimeDelta::minutes(30),
    }
}

/// One wagon through the weighbridge from `start` (ms): on, weighed, frames, off 4 s later.
fn wagon(c: &mut TrainCorrelator, start: i64, kg: f64, frames: &[&[&str]]) {
    c.handle_wagon_on(t(start));
    c.handle_wagon_weight(t(start + 1000), weighing(kg, t(start + 1000)));
    for (k, f) in frames.iter().enumerate() {
        c.handle_reads(t(start + 1500 + 500 * k as i64), frame(f));
    }
    c.handle_wagon_off(t(start + 4000));
}

fn the_train(c: &mut TrainCorrelator, now: i64) -> Crossing {
    let record = c.poll(t(now));
    assert!(c.poll(t(now)).is_none(), "one record per train");
    record.unwrap_or_else(|| panic!("no train closed by {now} ms"))
}

fn codes(c: &Crossing) -> Vec<&str> {
    c.flags.iter().map(|f| f.code.as_str()).collect()
}

#[test]
fn a_train_is_one_record_with_its_wagons_in_order() {
    let (a, b, d) = (uic("21812471217"), uic("51800843001"), uic("33802933456"));
    let mut c = TrainCorrelator::new("P", "R1", rules());
    wagon(&mut c, 0, 24_000.0, &[&[&a], &[&a, "CSQU 305438 3"]]);
    wagon(&mut c, 5000, 61_500.0, &[&[&b, "MSKU3881107"], &[&b]]);
    wagon(&mut c, 10_000, 22_050.0, &[&[&d]]);
    let record = the_train(&mut c, 24_000);
    assert_eq!(record.transport_mode, Some(TransportMode::Rail));
    assert!(record.flags.is_empty(), "{:?}", record.flags);
    let wagons = record
        .train
        .as_ref()
        .map(|t| t.wagons.clone())
        .unwrap_or_default();
    let numbers: Vec<_> = wagons
        .iter()
        .map(|w| {
            w.number
                .as_ref()
                .map(|n| (n.text.clone(), n.scheme.clone(), n.reads))
        })
        .collect();
    assert_eq!(
        numbers,
        vec![
            Some((a, "UIC".to_owned(), 2)),
            Some((b, "UIC".to_owned(), 2)),
            Some((d, "UIC".to_owned(), 1)),
        ]
    );
    assert_eq!(
        wagons.iter().map(|w| w.position).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let weights: Vec<_> = wagons
        .iter()
        .map(|w| w.weight.as_ref().map(|w| w.gross_kg))
        .collect();
    assert_eq!(weights, [Some(24_000.0), Some(61_500.0), Some(22_050.0)]);
    let containers: Vec<Vec<&str>> = wagons
        .iter()
        .map(|w| w.containers.iter().map(|c| c.text.as_str()).collect())
        .collect();
    assert_eq!(
        containers,
        vec![vec!["CSQU3054383"], vec!["MSKU3881107"], vec![]]
    );
    let total = record.weight.as_ref().map(|w| (w.gross_kg, w.division_kg));
    assert_eq!(
        total,
        Some((107_550.0, 150.0)),
        "the train's gross is its wagons' sum"
    );
    assert_eq!((record.arrived_at, record.left_at), (t(0), t(14_000)));
    assert_eq!(c.counters().trains, 1);
    assert_eq!(c.counters().wagons, 3);
}

#[test]
fn a_misread_wagon_number_is_repaired_by_its_check_digit() {
    let good = uic("21812471217"); // ...3
    let mut c = TrainCorrelator::new("P", "R1", rules());
    // Wagon 1 only ever read with its check digit 3 seen as 8.
    wagon(&mut c, 0, 24_000.0, &[&["21 81 2471 217-8"]]);
    // Wagon 2 read right once and wrong once: valid as read, nothing doubtful.
    let second = uic("51800843001");
    let mut misread = second.clone();
    misread.replace_range(11..12, "8");
    wagon(&mut c, 5000, 30_000.0, &[&[&second], &[&misread]]);
    let record = the_train(&mut c, 20_000);
    let wagons = record.train.map(|t| t.wagons).unwrap_or_default();
    let first = wagons.first().and_then(|w| w.number.clone());
    assert_eq!(
        first
            .as_ref()
            .map(|n| (n.text.as_str(), n.check, n.read_as.as_deref())),
        Some((good.as_str(), IdCheck::Repaired, Some("218124712178")))
    );
    let two = wagons.get(1).and_then(|w| w.number.clone());
    assert_eq!(
        two.map(|n| (n.text, n.check, n.read_as)),
        Some((second, IdCheck::Valid, None))
    );
    let repaired: Vec<_> = record
        .flags
        .iter()
        .filter(|f| f.code == "wagon_number_repaired")
        .collect();
    assert_eq!(repaired.len(), 1, "{:?}", record.flags);
    assert!(
        repaired[0].reason.starts_with("wagon 1:") && repaired[0].reason.contains(&good),
        "{}",
        repaired[0].reason
    );
}

#[test]
fn a_wagon_without_a_number_is_flagged_with_why() {
    let mut c = TrainCorrelator::new("P", "R1", rules());
    wagon(&mut c, 0, 24_000.0, &[&[&uic("21812471217")]]);
    // Wagon 2: nothing but noise read.
    wagon(&mut c, 5000, 25_000.0, &[&["POWERED BY", "2026"]]);
    // Wagon 3: a number whose check fails beyond any single look-alike repair.
    wagon(&mut c, 10_000, 26_000.0, &[&["718124712178"]]);
    let record = the_train(&mut c, 30_000);
    let unread: Vec<&str> = record
        .flags
        .iter()
        .filter(|f| f.code == "wagon_number_unread")
        .map(|f| f.reason.as_str())
        .collect();
    assert_eq!(unread.len(), 2, "{:?}", record.flags);
    assert!(
        unread[0].starts_with("wagon 2 (weighed 25000 kg): no wagon number was read"),
        "{}",
        unread[0]
    );
    assert!(
        unread[1].starts_with("wagon 3") && unread[1].contains("718124712178"),
        "{}",
        unread[1]
    );
    let wagons = record.train.map(|t| t.wagons).unwrap_or_default();
    assert_eq!(
        wagons.len(),
        3,
        "an unread wagon is still a wagon of the train"
    );
    assert!(wagons[1].number.is_none() && wagons[2].number.is_none());
    assert_eq!(c.counters().unread_wagon_numbers, 2);
}

#[test]
fn the_train_ends_after_the_quiet_window_and_the_next_one_starts_apart() {
    let mut c = TrainCorrelator::new("P", "R1", rules());
    wagon(&mut c, 0, 24_000.0, &[&[&uic("21812471217")]]);
    assert_eq!(
        c.poll_timeout(),
        Some(t(14_000)),
        "quiet 10 s after the wagon left"
    );
    assert!(c.poll(t(13_999)).is_none());
    // A wagon within the window belongs to the same train and pushes its end back.
    wagon(&mut c, 12_000, 25_000.0, &[]);
    assert!(c.poll(t(14_000)).is_none());
    assert_eq!(c.occupancy(), (false, 1));
    let first = the_train(&mut c, 26_000);
    assert_eq!(first.train.map(|t| t.wagons.len()), Some(2));
    assert_eq!(c.occupancy(), (false, 0));
    assert_eq!(c.poll_timeout(), None);
    // The next train is a new record.
    wagon(&mut c, 60_000, 24_000.0, &[]);
    let second = the_train(&mut c, 74_000);
    assert_eq!(second.train.map(|t| t.wagons.len()), Some(1));
    assert_ne!(first.id, second.id);
}

#[test]
fn a_wagon_still_on_holds_the_train_open() {
    let mut c = TrainCorrelator::new("P", "R1", rules());
    c.handle_wagon_on(t(0));
    assert_eq!(
        c.poll_timeout(),
        Some(t(1_800_000)),
        "no end while a wagon is on the rail, until it is taken as left standing"
    );
    assert!(c.poll(t(600_000)).is_none());
    assert_eq!(c.occupancy(), (true, 1));
    // Shutdown: the agent takes the wagon off now and polls far ahead.
    c.handle_wagon_off(t(600_000));
    let record = the_train(&mut c, 700_000);
    assert!(codes(&record).contains(&"wagon_weight_missing"));
    assert!(
        record.weight.is_none(),
        "no total when a wagon has no weight"
    );
}

#[test]
fn more_numbers_than_wagons_is_a_count_mismatch() {
    let (a, b, d) = (uic("21812471217"), uic("51800843001"), uic("33802933456"));
    let mut c = TrainCorrelator::new("P", "R1", rules());
    // Two wagons nose to tail taken as one by the weighbridge: two numbers during one wagon.
    wagon(&mut c, 0, 48_000.0, &[&[&a], &[&a], &[&b]]);
    // A number read long after the last wagon left: a wagon the weighbridge never saw.
    c.handle_reads(t(7000), frame(&[&d]));
    let record = the_train(&mut c, 20_000);
    let mismatches: Vec<&str> = record
        .flags
        .iter()
        .filter(|f| f.code == "wagon_count_mismatch")
        .map(|f| f.reason.as_str())
        .collect();
    assert_eq!(mismatches.len(), 2, "{:?}", record.flags);
    assert!(mismatches
        .iter()
        .any(|r| r.contains(&d) && r.contains("outside")));
    assert!(mismatches
        .iter()
        .any(|r| r.starts_with("wagon 1: 2 different wagon numbers") && r.contains(&b)));
    let kept = record
        .train
        .and_then(|t| t.wagons.first().and_then(|w| w.number.clone()));
    assert_eq!(
        kept.map(|n| n.text),
        Some(a),
        "the number read most is kept"
    );
}

#[test]
fn a_read_spilling_over_a_boundary_stays_with_its_wagon() {
    let (a, b) = (uic("21812471217"), uic("51800843001"));
    let mut c = TrainCorrelator::new(
        "P",
        "R1",
        TrainRules {
            // The reader stands after the weigh rail: it sees each point 1 s later.
            reader_offset: TimeDelta::seconds(1),
            ..rules()
        },
    );
    c.handle_wagon_on(t(0));
    c.handle_wagon_weight(t(1000), weighing(20_000.0, t(1000)));
    c.handle_wagon_off(t(3000));
    c.handle_wagon_on(t(3200));
    c.handle_wagon_weight(t(4000), weighing(21_000.0, t(4000)));
    c.handle_wagon_off(t(6000));
    // Wagon 1's number read at 2.5, 3.5 and 4.3 s (the last one 1.1 s past its boundary);
    // wagon 2's at 5.5 and 6.5 s.
    for (ms, text) in [(2500, &a), (3500, &a), (4300, &a), (5500, &b), (6500, &b)] {
        c.handle_reads(t(ms), frame(&[text]));
    }
    let record = the_train(&mut c, 20_000);
    assert!(record.flags.is_empty(), "{:?}", record.flags);
    let numbers: Vec<_> = record
        .train
        .map(|t| t.wagons)
        .unwrap_or_default()
        .into_iter()
        .map(|w| w.number.map(|n| (n.text, n.reads)))
        .collect();
    assert_eq!(numbers, vec![Some((a, 3)), Some((b, 2))]);
}

#[test]
fn reads_just_before_the_train_join_it_and_stray_reads_are_reported() {
    let a = uic("21812471217");
    let mut c = TrainCorrelator::new("P", "R1", rules());
    c.handle_reads(t(-50_000), frame(&["CSQU3054383"]));
    assert!(c.poll(t(-40_000)).is_none());
    match c.poll_event() {
        Some(TrainEvent::Unmatched { text, .. }) => assert_eq!(text, "CSQU3054383"),
        other => panic!("expected an unmatched read, got {other:?}"),
    }
    c.handle_reads(t(-300), frame(&[&a]));
    wagon(&mut c, 0, 24_000.0, &[]);
    let record = the_train(&mut c, 20_000);
    let number = record
        .train
        .and_then(|t| t.wagons.first().and_then(|w| w.number.clone()));
    assert_eq!(number.map(|n| n.text), Some(a));
    assert_eq!(c.counters().unmatched_reads, 1);
}

#[test]
fn scans_join_the_open_train_or_are_recorded_as_orphans() {
    let scan = |id: &str, at| ScanEvent {
        scanner_id: "XR-R".into(),
        scan_id: id.into(),
        scanned_at: at,
        lane: None,
        decision: bcp_record::ScanDecision::NoAlarm,
        images: vec![],
        conveyance_id: None,
        decision_by: None,
    };
    let mut c = TrainCorrelator::new(
        "P",
        "R1",
        TrainRules {
            expect_scan: true,
            ..rules()
        },
    );
    c.handle_scan(t(-10_000), scan("S0", t(-10_000)));
    let orphan = c.poll(t(-10_000));
    assert_eq!(orphan.as_ref().map(codes), Some(vec!["orphan_scan"]));
    assert_eq!(
        orphan.and_then(|o| o.transport_mode),
        Some(TransportMode::Rail)
    );
    wagon(&mut c, 0, 24_000.0, &[&[&uic("21812471217")]]);
    c.handle_scan(t(5000), scan("S1", t(3000)));
    let record = the_train(&mut c, 20_000);
    assert_eq!(record.scan.as_ref().map(|s| s.scan_id.as_str()), Some("S1"));
    wagon(&mut c, 30_000, 24_000.0, &[&[&uic("21812471217")]]);
    let unscanned = the_train(&mut c, 50_000);
    assert_eq!(codes(&unscanned), vec!["no_scan"]);
}

fn scan(id: &str, at: DateTime<Utc>) -> ScanEvent {
    ScanEvent {
        scanner_id: "XR-R".into(),
        scan_id: id.into(),
        scanned_at: at,
        lane: None,
        decision: bcp_record::ScanDecision::NoAlarm,
        images: vec![],
        conveyance_id: None,
        decision_by: None,
    }
}

/// A post with a scanner whose verdicts may come up to a minute after the train closed.
fn held_rules() -> TrainRules {
    TrainRules {
        expect_scan: true,
        scan_wait: TimeDelta::seconds(60),
        ..rules()
    }
}

fn flag<'a>(c: &'a Crossing, code: &str) -> Option<&'a str> {
    c.flags
        .iter()
        .find(|f| f.code == code)
        .map(|f| f.reason.as_str())
}

#[test]
fn a_late_scan_joins_the_train_held_for_it() {
    let mut c = TrainCorrelator::new("P", "R1", held_rules());
    wagon(&mut c, 0, 24_000.0, &[&[&uic("21812471217")]]);
    wagon(&mut c, 5000, 25_000.0, &[&[&uic("51800843001")]]);
    // Closed at 19 s (quiet after the last wagon left at 9 s), held without a scan.
    assert!(c.poll(t(19_000)).is_none(), "held, not emitted");
    assert_eq!(c.occupancy(), (false, 1));
    assert_eq!(
        c.poll_timeout(),
        Some(t(79_000)),
        "until scan_wait after the close"
    );
    // The verdict on a scan made while the train passed arrives 30 s after the close.
    c.handle_scan(t(49_000), scan("S1", t(6000)));
    let record = the_train(&mut c, 49_000);
    assert_eq!(record.scan.as_ref().map(|s| s.scan_id.as_str()), Some("S1"));
    assert_eq!(codes(&record), vec!["scan_joined_late"]);
    let why = flag(&record, "scan_joined_late").unwrap_or_default();
    assert!(
        why.contains("S1") && why.contains("30.0 s after the train closed"),
        "{why}"
    );
    assert_eq!(record.train.as_ref().map(|t| t.wagons.len()), Some(2));
    assert_eq!(c.counters().late_scans, 1);
    assert_eq!(c.occupancy(), (false, 0));
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn a_held_train_without_a_scan_is_emitted_when_the_hold_runs_out() {
    let mut c = TrainCorrelator::new("P", "R1", held_rules());
    wagon(&mut c, 0, 24_000.0, &[&[&uic("21812471217")]]);
    assert!(c.poll(t(14_000)).is_none());
    assert!(c.poll(t(73_999)).is_none(), "held until 74 s");
    let record = the_train(&mut c, 74_000);
    assert_eq!(codes(&record), vec!["no_scan"]);
    let why = flag(&record, "no_scan").unwrap_or_default();
    assert!(why.contains("within 1 min 0 s after it closed"), "{why}");
}

#[test]
fn a_scan_after_the_held_train_was_emitted_is_recorded_apart_naming_it() {
    let mut c = TrainCorrelator::new("P", "R1", held_rules());
    wagon(&mut c, 0, 24_000.0, &[&[&uic("21812471217")]]);
    let train = the_train(&mut c, 80_000);
    assert_eq!(codes(&train), vec!["no_scan"]);
    c.handle_scan(t(95_000), scan("S1", t(2000)));
    let supplement = c.poll(t(95_000));
    let supplement = supplement.unwrap_or_else(|| panic!("a scan record"));
    assert_eq!(codes(&supplement), vec!["scan_after_close"]);
    let why = flag(&supplement, "scan_after_close").unwrap_or_default();
    assert!(
        why.contains(&train.id.to_string()) && why.contains("S1"),
        "{why}"
    );
    assert_eq!(
        supplement.scan.as_ref().map(|s| s.scan_id.as_str()),
        Some("S1")
    );
    assert!(supplement.train.is_none(), "a scan record has no train");
    assert_eq!(supplement.arrived_at, t(2000), "at the scan's time");
    assert_eq!(c.counters().scans_after_close, 1);
    assert_eq!(c.counters().orphan_scans, 0);
}

#[test]
fn a_late_scan_joins_the_held_train_it_was_made_on_not_the_next_train() {
    let mut c = TrainCorrelator::new("P", "R1", held_rules());
    wagon(&mut c, 0, 24_000.0, &[&[&uic("21812471217")]]);
    assert!(c.poll(t(14_000)).is_none(), "train 1 held");
    // Train 2 comes on while train 1 is held; train 1's verdict arrives during train 2.
    wagon(&mut c, 20_000, 25_000.0, &[&[&uic("51800843001")]]);
    c.handle_scan(t(23_000), scan("S1", t(3000)));
    c.handle_scan(t(24_500), scan("S2", t(22_000)));
    assert_eq!(c.occupancy(), (false, 2));
    let first = the_train(&mut c, 24_500);
    assert_eq!(first.scan.as_ref().map(|s| s.scan_id.as_str()), Some("S1"));
    assert_eq!(codes(&first), vec!["scan_joined_late"]);
    let second = the_train(&mut c, 34_000);
    assert_eq!(second.scan.as_ref().map(|s| s.scan_id.as_str()), Some("S2"));
    assert!(second.flags.is_empty(), "{:?}", second.flags);
}

#[test]
fn a_scan_that_matches_no_train_is_still_an_orphan_with_trains_held() {
    let mut c = TrainCorrelator::new("P", "R1", held_rules());
    wagon(&mut c, 0, 24_000.0, &[&[&uic("21812471217")]]);
    assert!(c.poll(t(14_000)).is_none(), "held");
    // Made after the held train closed, with no train on: nobody's scan.
    c.handle_scan(t(30_000), scan("S9", t(29_000)));
    let orphan = c.poll(t(30_000));
    assert_eq!(orphan.as_ref().map(codes), Some(vec!["orphan_scan"]));
    let why = orphan
        .as_ref()
        .and_then(|o| flag(o, "orphan_scan"))
        .unwrap_or_default();
    assert!(
        why.contains("S9") && why.contains("matches no train"),
        "{why}"
    );
    assert_eq!(c.occupancy(), (false, 1), "the held train keeps waiting");
    assert_eq!(c.counters().orphan_scans, 1);
}

#[test]
fn without_a_scanner_nothing_is_held() {
    let mut c = TrainCorrelator::new(
        "P",
        "R1",
        TrainRules {
            expect_scan: false,
            ..held_rules()
        },
    );
    wagon(&mut c, 0, 24_000.0, &[&[&uic("21812471217")]]);
    assert_eq!(c.poll_timeout(), Some(t(14_000)));
    let record = the_train(&mut c, 14_000);
    assert!(record.flags.is_empty(), "{:?}", record.flags);
}

#[test]
fn shutdown_emits_the_held_trains() {
    let mut c = TrainCorrelator::new("P", "R1", held_rules());
    wagon(&mut c, 0, 24_000.0, &[&[&uic("21812471217")]]);
    c.handle_wagon_on(t(6000));
    // The agent's drain: whatever is on leaves now, then it polls a day ahead.
    c.handle_wagon_off(t(7000));
    let end = 86_400_000;
    let record = the_train(&mut c, end);
    assert_eq!(record.train.as_ref().map(|t| t.wagons.len()), Some(2));
    assert!(codes(&record).contains(&"no_scan"));
    assert_eq!(c.occupancy(), (false, 0));
}

#[test]
fn a_train_that_stood_between_two_wagons_is_one_record_flagged_train_stood() {
    let mut c = TrainCorrelator::new("P", "R1", rules());
    wagon(&mut c, 0, 24_000.0, &[&[&uic("21812471217")]]);
    wagon(&mut c, 5000, 25_000.0, &[&[&uic("51800843001")]]);
    // The rail stays empty 7 s (wagons uncoupled behind wagon 2), less than `quiet`.
    wagon(&mut c, 16_000, 26_000.0, &[&[&uic("33802933456")]]);
    let record = the_train(&mut c, 40_000);
    assert_eq!(codes(&record), vec!["train_stood"]);
    let why = flag(&record, "train_stood").unwrap_or_default();
    assert!(
        why.contains("7.0 s between wagon 2 and wagon 3") && why.contains("uncoupled"),
        "{why}"
    );
    assert_eq!(record.train.map(|t| t.wagons.len()), Some(3));
}

#[test]
fn a_wagon_that_rolled_back_and_came_on_again_is_one_wagon() {
    let (a, b) = (uic("21812471217"), uic("51800843001"));
    let mut c = TrainCorrelator::new("P", "R1", rules());
    wagon(&mut c, 0, 24_000.0, &[&[&a]]);
    // Wagon 2 rolls back off the rail the way it came, then comes on again and is reweighed.
    wagon(&mut c, 5000, 61_000.0, &[&[&b, "CSQU 305438 3"]]);
    wagon(&mut c, 10_000, 61_500.0, &[&[&b, "CSQU 305438 3"]]);
    let record = the_train(&mut c, 30_000);
    assert_eq!(codes(&record), vec!["wagon_rolled_back"]);
    let why = flag(&record, "wagon_rolled_back").unwrap_or_default();
    assert!(
        why.starts_with("wagon 2: wagon number") && why.contains(&b) && why.contains("way it came"),
        "{why}"
    );
    let wagons = record.train.map(|t| t.wagons).unwrap_or_default();
    let seen: Vec<_> = wagons
        .iter()
        .map(|w| {
            (
                w.number.as_ref().map(|n| (n.text.clone(), n.reads)),
                w.weight.as_ref().map(|w| w.gross_kg),
                w.containers.len(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (Some((a, 1)), Some(24_000.0), 0),
            (Some((b, 2)), Some(61_500.0), 1),
        ],
        "one wagon with its last weight"
    );
    assert_eq!(
        (wagons[1].on_at, wagons[1].off_at),
        (t(5000), Some(t(14_000)))
    );
    assert_eq!(record.weight.map(|w| w.gross_kg), Some(85_500.0));
}

#[test]
fn a_number_spilling_over_a_boundary_onto_an_unread_wagon_merges_nothing() {
    let a = uic("21812471217");
    let mut c = TrainCorrelator::new("P", "R1", rules());
    wagon(&mut c, 0, 24_000.0, &[&[&a]]);
    // Wagon 1's number read again 200 ms into wagon 2's time (within read_margin), nothing else.
    c.handle_wagon_on(t(5000));
    c.handle_wagon_weight(t(6000), weighing(25_000.0, t(6000)));
    c.handle_reads(t(5200), frame(&[&a]));
    c.handle_wagon_off(t(9000));
    let record = the_train(&mut c, 30_000);
    assert_eq!(
        record.train.as_ref().map(|t| t.wagons.len()),
        Some(2),
        "two wagons stay two"
    );
    assert_eq!(codes(&record), vec!["wagon_number_unread"]);
}

#[test]
fn a_wagon_left_standing_on_the_rail_closes_the_train() {
    let mut c = TrainCorrelator::new(
        "P",
        "R1",
        TrainRules {
            standing: TimeDelta::minutes(20),
            ..rules()
        },
    );
    wagon(&mut c, 0, 24_000.0, &[&[&uic("21812471217")]]);
    let b = uic("51800843001");
    c.handle_wagon_on(t(5000));
    c.handle_wagon_weight(t(6000), weighing(25_000.0, t(6000)));
    c.handle_reads(t(6500), frame(&[&b]));
    let standing_until = 5000 + 20 * 60_000;
    assert_eq!(c.poll_timeout(), Some(t(standing_until)));
    assert!(c.poll(t(standing_until - 1)).is_none());
    let record = the_train(&mut c, standing_until);
    assert_eq!(codes(&record), vec!["wagon_left_on_rail"]);
    let why = flag(&record, "wagon_left_on_rail").unwrap_or_default();
    assert!(why.starts_with("wagon 2: on the weigh rail since"), "{why}");
    let wagons = record.train.map(|t| t.wagons).unwrap_or_default();
    assert_eq!(wagons.len(), 2);
    assert_eq!(wagons[1].off_at, None, "still on the rail");
    assert_eq!(
        wagons[1].number.as_ref().map(|n| n.text.as_str()),
        Some(b.as_str())
    );
    assert_eq!(c.occupancy(), (false, 0));
    // The standing wagon settles again and finally leaves: nothing new.
    c.handle_wagon_weight(
        t(standing_until + 1000),
        weighing(25_050.0, t(standing_until + 1000)),
    );
    c.handle_wagon_off(t(standing_until + 60_000));
    assert_eq!(c.poll_timeout(), None);
    assert!(c.poll(t(standing_until + 600_000)).is_none());
    // The next wagon on is a new train.
    wagon(
        &mut c,
        standing_until + 700_000,
        22_000.0,
        &[&[&uic("33802933456")]],
    );
    let next = the_train(&mut c, standing_until + 720_000);
    assert_eq!(next.train.map(|t| t.wagons.len()), Some(1));
    assert!(next.flags.is_empty(), "{:?}", next.flags);
}

#[test]
fn pieces_of_a_longer_identifier_in_one_frame_are_not_read_as_wagons() {
    let a = uic("21812471217");
    // Runs of digits inside a UIC number (an 8-digit one could pass as CIS) never count.
    let seen = classify(t(0), frame(&[&a, &a[4..], &a[2..10], "2181"]));
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].raw, a);
    // A container code and a wagon number side by side are both kept.
    let seen = classify(t(0), frame(&[&a, "CSQU3054383", "HELLO"]));
    let kinds: Vec<_> = seen.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, [IdKind::Wagon, IdKind::Container]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Frames reach the correlator late and in any order (a slow camera thread, a reader on
    /// another link): as long as they arrive before the train closes, the record is the same.
    #[test]
    fn any_arrival_order_of_the_reads_gives_the_same_train(
        n in 1usize..6,
        reads_per_wagon in 1usize..4,
        order in prop::collection::vec(any::<u16>(), 24),
    ) {
        let payloads = ["21812471217", "51800843001", "33802933456", "31542871004", "84750016123"];
        let numbers: Vec<String> = payloads.iter().take(n).map(|p| uic(p)).collect();
        let mut frames = Vec::new();
        for (i, number) in numbers.iter().enumerate() {
            for k in 0..reads_per_wagon {
                frames.push((t(i as i64 * 5000 + 500 + 1000 * k as i64), number.clone()));
            }
        }
        let run = |permuted: &[(DateTime<Utc>, String)], interleave: bool| {
            let mut c = TrainCorrelator::new("P", "R1", rules());
            let mut pending: Vec<&(DateTime<Utc>, String)> = permuted.iter().collect();
            for i in 0..n {
                let start = i as i64 * 5000;
                c.handle_wagon_on(t(start));
                c.handle_wagon_weight(t(start + 1000), weighing(20_000.0 + i as f64, t(start + 1000)));
                c.handle_wagon_off(t(start + 4000));
                if interleave {
                    // Some frames arrive now, whatever wagon they show.
                    let k = pending.len() / 2;
                    for (at, text) in pending.drain(..k) {
                        c.handle_reads(*at, frame(&[text]));
                    }
                }
            }
            for (at, text) in pending {
                c.handle_reads(*at, frame(&[text]));
            }
            c.poll(t(n as i64 * 5000 + 20_000))
                .map(|r| (r.train, r.flags, r.weight))
        };
        let reference = run(&frames, false);
        let mut shuffled = frames.clone();
        for (i, o) in order.iter().enumerate() {
            let len = shuffled.len();
            shuffled.swap(i % len, usize::from(*o) % len);
        }
        prop_assert_eq!(run(&shuffled, true), reference.clone());
        let wagons = reference.and_then(|r| r.0).map(|t| t.wagons).unwrap_or_default();
        prop_assert_eq!(wagons.len(), n);
        prop_assert!(wagons.iter().zip(&numbers).all(|(w, num)| w.number.as_ref().map(|x| &x.text) == Some(num)));
    }
}

mod model;
