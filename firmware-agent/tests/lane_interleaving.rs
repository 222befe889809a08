//! The lane correlator against generated traffic: N vehicles with random plates, weights,
//! dimensions and scan timings, their evidence delivered with realistic jitter and out of order
//! (ANPR delays, a rear plate read after the weight, scan verdicts minutes later, typed
//! conveyance ids, scans down the lane after the vehicle left), plus orphan scans nobody can
//! claim. Exactly one crossing per vehicle must come out, with that vehicle's evidence and no
//! other's, and an orphan-scan record exactly for each generated orphan.
//!
//! A second property frames the vehicles as a camera does by motion: its `VehicleOn`,
//! `VehicleOff` and front frames reach the lane together, in capture order, up to
//! `pre_arrival` late (recognition lags), while the weighbridge, the dimension sensor and the
//! scanner are on time: the same crossings must come out.
//!
//! Time is virtual: the driver calls `poll` at every `poll_timeout` and after every input, as
//! the agent does.

use bcp_agent::lane::{Evidence, LaneCorrelator, LaneEvent, LaneRules};
use bcp_anpr::PlateCandidate;
use bcp_record::{Crossing, Dimensions, ScanDecision, ScanEvent, Weighing};
use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use std::collections::BTreeSet;

const SCAN_WAIT_MS: i64 = 600_000;
const PRE_ARRIVAL_MS: i64 = 2_000;
const SCAN_AFTER_LEFT_MS: i64 = 30_000;
/// The first vehicle comes on here; orphans may be scanned before.
const START_MS: i64 = 60_000;

fn rules() -> LaneRules {
    LaneRules {
        close_after: TimeDelta::seconds(3),
        pre_arrival: TimeDelta::milliseconds(PRE_ARRIVAL_MS),
        scan_wait: TimeDelta::milliseconds(SCAN_WAIT_MS),
        scan_after_left: TimeDelta::milliseconds(SCAN_AFTER_LEFT_MS),
        tailgate_gap: TimeDelta::milliseconds(500),
    }
}

fn t(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap_or_default()
}

/// Where a vehicle's scan happened.
#[derive(Debug, Clone)]
enum ScanPlace {
    /// In the portal on the bridge, at this fraction of the dwell; the id typed or not.
    OnBridge { at: f64, typed: bool },
    /// Down the lane, this long after the vehicle left; matched by the typed id only.
    DownTheLane { after_ms: i64 },
}

#[derive(Debug, Clone)]
struct VehiclePlan {
    digits: u16,
    letters: (u8, u8),
    region: u8,
    kg: u32,
    /// Empty bridge before this vehicle comes on.
    gap_ms: i64,
    dwell_ms: i64,
    /// When the weight settles, as a fraction of the dwell.
    stable_at: f64,
    /// Front frames (fractions of the time before the weight settles) and the rear frame
    /// (fraction of the time after), with ANPR delays.
    front: Vec<(f64, i64)>,
    rear: (f64, i64),
    /// A frame taken as it approaches (ms before it comes on), when the gap allows.
    approach: Option<(i64, i64)>,
    dims: Option<(u32, i64)>,
    scan: Option<(ScanPlace, i64)>,
}

#[derive(Debug, Clone)]
struct OrphanPlan {
    /// Before the first vehicle (ms before START_MS - pre_arrival) or after the last one left.
    before_first: bool,
    offset_ms: i64,
    delay_ms: i64,
    typed: bool,
}

fn vehicle() -> impl Strategy<Value = VehiclePlan> {
    let scan = prop_oneof![
        Just(None),
        (0.05f64..0.95, any::<bool>())
            .prop_map(|(at, typed)| Some(ScanPlace::OnBridge { at, typed })),
        (200i64..20_000).prop_map(|after_ms| Some(ScanPlace::DownTheLane { after_ms })),
    ];
    (
        (0u16..10_000, (0u8..26, 0u8..26), 1u8..=8, 150u32..2_200),
        (1_000i64..20_000, 2_500i64..8_000, 0.2f64..0.8),
        (
            proptest::collection::vec((0.0f64..1.0, 0i64..2_500), 1..=2),
            (0.0f64..1.0, 0i64..2_500),
            proptest::option::of((100i64..1_500, 0i64..2_500)),
        ),
        proptest::option::of((2_000u32..18_000, 0i64..1_000)),
        (scan, 0i64..300_000),
    )
        .prop_map(
            |(
                (digits, letters, region, kg20),
                (gap_ms, dwell_ms, stable_at),
                (front, rear, approach),
                dims,
                (scan, delay),
            )| {
                VehiclePlan {
                    digits,
                    letters,
                    region,
                    kg: kg20 * 20,
                    gap_ms,
                    dwell_ms,
                    stable_at,
                    front,
                    rear,
                    // Only when the previous vehicle left well before the camera saw this one.
                    approach: approach.filter(|(before, _)| *before + 1_000 < gap_ms),
                    dims,
                    scan: scan.map(|place| {
                        // A down-the-lane verdict needs the operator to type the id: at least 5 s.
                        let delay = match place {
                            ScanPlace::DownTheLane { .. } => delay.max(5_000),
                            ScanPlace::OnBridge { .. } => delay,
                        };
                        (place, delay)
                    }),
                }
            },
        )
}

fn orphan() -> impl Strategy<Value = OrphanPlan> {
    (
        any::<bool>(),
        1_000i64..40_000,
        0i64..300_000,
        any::<bool>(),
    )
        .prop_map(|(before_first, offset_ms, delay_ms, typed)| OrphanPlan {
            before_first,
            offset_ms,
            delay_ms,
            typed,
        })
}

/// What a vehicle really was.
#[derive(Debug)]
struct Truth {
    plate: String,
    kg: f64,
    on: i64,
    off: i64,
    dims: Option<u32>,
    scan: Option<String>,
    /// Camera frames taken of it.
    frames: u32,
}

/// Inputs with when they reach the correlator (ms) and their order of making.
type Arrivals = Vec<(i64, usize, Input)>;

/// An input to the correlator, with when it reaches it.
#[derive(Debug)]
enum Input {
    On,
    Stable(f64),
    Off,
    /// A vehicle on or off as a lagging camera tells it: when it happened.
    OnAt(i64),
    OffAt(i64),
    Evidence(i64, Evidence),
    Scan(ScanEvent),
}

fn read(plate: &str) -> Evidence {
    Evidence::PlateReads(vec![PlateCandidate {
        text: plate.to_owned(),
        confidence: 0.9,
        bbox: [0, 0, 100, 30],
        format: Some("TJ"),
        char_confidences: vec![0.9; plate.len()],
    }])
}

fn scan_event(id: &str, at: i64, typed: Option<&str>) -> ScanEvent {
    ScanEvent {
        scanner_id: "XR-1".into(),
        scan_id: id.into(),
        scanned_at: t(at),
        lane: Some("L1".into()),
        decision: ScanDecision::NoAlarm,
        images: vec![],
        conveyance_id: typed.map(str::to_owned),
        decision_by: None,
    }
}

/// Lays the plans out on a timeline: the truth, and the inputs with their arrival times. With
/// `camera_lag_ms`, the camera frames the vehicles: their on, off and front frames arrive that
/// much after they happened, in order (and no frame is taken on the approach: its motion would
/// be the vehicle coming on).
fn timeline(
    plans: &[VehiclePlan],
    orphans: &[OrphanPlan],
    camera_lag_ms: Option<i64>,
) -> (Vec<Truth>, BTreeSet<String>, Arrivals) {
    let mut truth = Vec::new();
    let mut inputs = Vec::new();
    let push = |inputs: &mut Arrivals, at: i64, input| {
        let n = inputs.len();
        inputs.push((at, n, input));
    };
    let mut plates = BTreeSet::new();
    let mut clock = START_MS;
    for (i, v) in plans.iter().enumerate() {
        let letter = |n: u8| char::from(b'A' + n);
        let mut plate = format!(
            "{:04}{}{}{:02}",
            v.digits,
            letter(v.letters.0),
            letter(v.letters.1),
            v.region
        );
        if !plates.insert(plate.clone()) {
            // Unique plates: a vehicle seen twice is another test.
            plate = format!("{:04}ZZ{:02}", i, v.region);
            plates.insert(plate.clone());
        }
        if i > 0 {
            clock += v.gap_ms;
        }
        let (on, off) = (clock, clock + v.dwell_ms);
        let stable = on + (v.dwell_ms as f64 * v.stable_at) as i64;
        match camera_lag_ms {
            None => {
                push(&mut inputs, on, Input::On);
                push(&mut inputs, off, Input::Off);
            }
            Some(lag) => {
                push(&mut inputs, on + lag, Input::OnAt(on));
                push(&mut inputs, off + lag, Input::OffAt(off));
            }
        }
        push(&mut inputs, stable, Input::Stable(f64::from(v.kg)));
        for (frac, delay) in &v.front {
            let at = on + 100 + ((stable - on - 100) as f64 * frac) as i64;
            let arrives = camera_lag_ms.map_or(at + delay, |lag| at + lag);
            push(&mut inputs, arrives, Input::Evidence(at, read(&plate)));
        }
        let at = stable + ((off - 100 - stable) as f64 * v.rear.0) as i64;
        push(
            &mut inputs,
            at + v.rear.1,
            Input::Evidence(at, read(&plate)),
        );
        let approach = v.approach.filter(|_| i > 0 && camera_lag_ms.is_none());
        if let Some((before, delay)) = approach {
            let at = on - before;
            push(&mut inputs, at + delay, Input::Evidence(at, read(&plate)));
        }
        if let Some((length_mm, delay)) = v.dims {
            let at = on + 300;
            let d = Dimensions {
                length_mm,
                width_mm: 2_500,
                height_mm: 4_000,
            };
            push(
                &mut inputs,
                at + delay,
                Input::Evidence(at, Evidence::Dimensions(d)),
            );
        }
        let scan_id = v.scan.as_ref().map(|(place, delay)| {
            let id = format!("S{i}");
            let (at, typed) = match place {
                ScanPlace::OnBridge { at, typed } => {
                    (on + 50 + ((v.dwell_ms - 100) as f64 * at) as i64, *typed)
                }
                ScanPlace::DownTheLane { after_ms } => (off + after_ms, true),
            };
            let typed = typed.then_some(plate.as_str());
            push(
                &mut inputs,
                at + delay,
                Input::Scan(scan_event(&id, at, typed)),
            );
            id
        });
        truth.push(Truth {
            plate,
            kg: f64::from(v.kg),
            on,
            off,
            dims: v.dims.map(|(l, _)| l),
            scan: scan_id,
            frames: v.front.len() as u32 + 1 + u32::from(approach.is_some()),
        });
        clock = off;
    }
    let last_off = clock;
    let mut orphan_ids = BTreeSet::new();
    for (k, o) in orphans.iter().enumerate() {
        let at = if o.before_first {
            START_MS - PRE_ARRIVAL_MS - o.offset_ms
        } else {
            last_off + SCAN_AFTER_LEFT_MS + o.offset_ms
        };
        let id = format!("ORPHAN{k}");
        // A typed id that is no vehicle's plate.
        let typed = o.typed.then_some("99QQ99");
        push(
            &mut inputs,
            at + o.delay_ms,
            Input::Scan(scan_event(&id, at, typed)),
        );
        orphan_ids.insert(id);
    }
    inputs.sort_by_key(|(at, n, _)| (*at, *n));
    (truth, orphan_ids, inputs)
}

/// Feeds the inputs in arrival order, polling as the agent does; every record and event.
fn run(inputs: Arrivals) -> (Vec<Crossing>, Vec<LaneEvent>, LaneCorrelator) {
    let mut lane = LaneCorrelator::new("TJ-1", "L1", rules());
    let (mut records, mut events) = (Vec::new(), Vec::new());
    let mut drain = |lane: &mut LaneCorrelator, now| {
        while let Some(c) = lane.poll(now) {
            records.push(c);
        }
        while let Some(e) = lane.poll_event() {
            events.push(e);
        }
    };
    let mut now = t(0);
    for (at, _, input) in inputs {
        while let Some(wake) = lane.poll_timeout().filter(|w| *w <= t(at)) {
            now = now.max(wake);
            drain(&mut lane, now);
        }
        now = now.max(t(at));
        match input {
            Input::On => lane.handle_vehicle_on(now),
            Input::Stable(kg) => lane.handle_stable_weight(
                now,
                Weighing {
                    gross_kg: kg,
                    division_kg: 20.0,
                    stable_at: now,
                    device: "wb1".into(),
                    axles_kg: Vec::new(),
                    unweighed_axles: 0,
                },
            ),
            Input::Off => lane.handle_vehicle_off(now),
            Input::OnAt(happened) => lane.handle_vehicle_on(t(happened)),
            Input::OffAt(happened) => lane.handle_vehicle_off(t(happened)),
            Input::Evidence(happened, e) => lane.handle_evidence(t(happened), e),
            Input::Scan(s) => lane.handle_scan(now, s),
        }
        drain(&mut lane, now);
    }
    drain(&mut lane, now + TimeDelta::days(1));
    (records, events, lane)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_interleaving_yields_one_crossing_per_vehicle_with_its_own_evidence(
        plans in proptest::collection::vec(vehicle(), 1..8),
        orphans in proptest::collection::vec(orphan(), 0..3),
    ) {
        check(&plans, &orphans, None)?;
    }

    #[test]
    fn vehicles_framed_late_by_a_camera_still_get_their_own_evidence(
        plans in proptest::collection::vec(vehicle(), 1..8),
        orphans in proptest::collection::vec(orphan(), 0..3),
        lag in 0i64..PRE_ARRIVAL_MS,
    ) {
        check(&plans, &orphans, Some(lag))?;
    }
}

/// One crossing per vehicle with its own evidence, and an orphan-scan record per orphan.
fn check(
    plans: &[VehiclePlan],
    orphans: &[OrphanPlan],
    camera_lag_ms: Option<i64>,
) -> Result<(), TestCaseError> {
    let (truth, orphan_ids, inputs) = timeline(plans, orphans, camera_lag_ms);
    let (records, events, lane) = run(inputs);
    prop_assert!(
        events
            .iter()
            .all(|e| !matches!(e, LaneEvent::Reversal { .. })),
        "{events:?}"
    );

    let (scan_records, crossings): (Vec<&Crossing>, Vec<&Crossing>) =
        records.iter().partition(|c| {
            c.flags
                .iter()
                .any(|f| f.code == "orphan_scan" || f.code == "scan_after_close")
        });
    prop_assert_eq!(crossings.len(), truth.len(), "crossings: {:#?}", crossings);
    for v in &truth {
        let mine: Vec<&&Crossing> = crossings
            .iter()
            .filter(|c| c.plate.as_ref().is_some_and(|p| p.text == v.plate))
            .collect();
        prop_assert_eq!(mine.len(), 1, "vehicle {:?}: {:#?}", v, crossings);
        let c = mine[0];
        prop_assert_eq!((c.arrived_at, c.left_at), (t(v.on), t(v.off)), "{:?}", v);
        prop_assert_eq!(c.weight.as_ref().map(|w| w.gross_kg), Some(v.kg), "{:?}", v);
        prop_assert_eq!(c.dimensions.map(|d| d.length_mm), v.dims, "{:?}", v);
        prop_assert_eq!(
            c.scan.as_ref().map(|s| s.scan_id.clone()),
            v.scan.clone(),
            "{:?}: {:?}",
            v,
            c.flags
        );
        // Every frame of it, and no other vehicle's.
        prop_assert_eq!(
            c.plate.as_ref().map(|p| p.frames),
            Some(v.frames),
            "{:?}",
            v
        );
        for f in &c.flags {
            prop_assert!(
                matches!(
                    f.code.as_str(),
                    "no_scan" | "no_dimensions" | "scan_joined_late"
                ),
                "{:?}: unexpected flag {} ({})",
                v,
                f.code,
                f.reason
            );
        }
    }
    let got: BTreeSet<String> = scan_records
        .iter()
        .filter_map(|c| c.scan.as_ref().map(|s| s.scan_id.clone()))
        .collect();
    prop_assert_eq!(&got, &orphan_ids);
    prop_assert_eq!(scan_records.len(), orphan_ids.len());
    for o in &scan_records {
        prop_assert!(o.plate.is_none() && o.weight.is_none());
        prop_assert_eq!(o.flags.len(), 1);
        prop_assert_eq!(o.flags[0].code.as_str(), "orphan_scan", "{:?}", o.flags);
    }
    prop_assert_eq!(lane.counters().crossings, truth.len() as u64);
    prop_assert_eq!(lane.counters().orphan_scans, orphan_ids.len() as u64);
    Ok(())
}
