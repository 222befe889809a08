//! Bench: the lane correlator's cost per event, and the time from a crossing closing to it being
//! committed in a real outbox (checks + SQLite WAL append with synchronous=FULL).
//!
//! `cargo bench -p bcp-agent --bench lane --profile dev [-- VEHICLES]` (default 100,000
//! vehicles for the correlator, 2,000 commits for the outbox).
use bcp_agent::checks::{EdgeChecks, Limits};
use bcp_agent::lane::{Evidence, LaneCorrelator, LaneRules};
use bcp_anpr::PlateCandidate;
use bcp_record::{Dimensions, ScanDecision, ScanEvent, Weighing};
use bcp_sync::outbox::Outbox;
use chrono::{DateTime, TimeDelta, Utc};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let vehicles: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let t0 = DateTime::from_timestamp(1_800_000_000, 0).expect("valid time");
    let at = |ms: i64| t0 + TimeDelta::milliseconds(ms);

    // Correlator: 7 events per vehicle (on, dims, 2 frames, stable, scan, off) + polls.
    let mut lane = LaneCorrelator::new("TJ-1", "L1", LaneRules::default());
    let read = PlateCandidate {
        text: "1234AB01".into(),
        confidence: 0.97,
        bbox: [0, 0, 100, 30],
        format: Some("TJ"),
        char_confidences: vec![0.97; 8],
    };
    let dims = Dimensions {
        length_mm: 16_000,
        width_mm: 2_500,
        height_mm: 4_000,
    };
    let started = Instant::now();
    let mut emitted = 0usize;
    for i in 0..vehicles as i64 {
        let base = i * 4_000;
        lane.handle_vehicle_on(at(base));
        lane.handle_evidence(at(base + 100), Evidence::Dimensions(dims));
        lane.handle_evidence(at(base + 200), Evidence::PlateReads(vec![read.clone()]));
        lane.handle_evidence(at(base + 500), Evidence::PlateReads(vec![read.clone()]));
        lane.handle_stable_weight(at(base + 600), weighing(at(base + 600)));
        lane.handle_evidence(at(base + 900), Evidence::Scan(scan(i, at(base + 900))));
        lane.handle_vehicle_off(at(base + 2_000));
        while lane.poll(at(base + 3_999)).is_some() {
            emitted += 1;
        }
    }
    let per_event = started.elapsed().as_secs_f64() * 1e9 / (vehicles as f64 * 7.0);
    println!("correlator: {vehicles} vehicles, {emitted} crossings, {per_event:.0} ns per event (incl. voting and record building)");

    // Closing -> committed in the outbox.
    let dir = tempfile::tempdir()?;
    let outbox = Outbox::open(&dir.path().join("outbox.db"), "TJ-1")?;
    let checks = EdgeChecks::load(Limits {
        max_gross_kg: Some(40_000.0),
        ..Limits::default()
    })?;
    let mut lane = LaneCorrelator::new("TJ-1", "L1", LaneRules::default());
    let mut ms = Vec::new();
    for i in 0..2_000i64 {
        let base = i * 4_000;
        lane.handle_vehicle_on(at(base));
        lane.handle_evidence(at(base + 200), Evidence::PlateReads(vec![read.clone()]));
        lane.handle_stable_weight(at(base + 600), weighing(at(base + 600)));
        lane.handle_vehicle_off(at(base + 2_000));
        let started = Instant::now();
        while let Some(mut c) = lane.poll(at(base + 3_999)) {
            checks.apply(&mut c);
            outbox.append(&c)?;
        }
        ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "close -> outbox commit: {} crossings, median {:.2} ms, p99 {:.2} ms",
        ms.len(),
        ms[ms.len() / 2],
        ms[ms.len() * 99 / 100]
    );
    Ok(())
}

fn weighing(at: DateTime<Utc>) -> Weighing {
    Weighing {
        gross_kg: 24_560.0,
        division_kg: 20.0,
        stable_at: at,
        device: "wb1".into(),
        axles_kg: Vec::new(),
        unweighed_axles: 0,
    }
}

fn scan(i: i64, at: DateTime<Utc>) -> ScanEvent {
    ScanEvent {
        scanner_id: "XR-1".into(),
        scan_id: format!("S{i}"),
        scanned_at: at,
        lane: None,
        decision: ScanDecision::NoAlarm,
        images: vec![],
        conveyance_id: None,
        decision_by: None,
    }
}
