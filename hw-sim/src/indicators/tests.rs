//! Each protocol's simulated indicator, read back through the drivers' decoders over a real pty;
//! faults that never produce a wrong weight; unplug and replug seen by the real driver.

use super::*;
use bcp_drivers::indicator::{Measurement, ScaleReading};
use bcp_drivers::inspect::{self, Segment};
use bcp_drivers::serial::{open_port, run_weighbridge, DeviceEvent, SerialPortConfig};
use bcp_drivers::stability::StabilityConfig;
use bcp_drivers::toledo::ToledoCodec;
use tokio::sync::mpsc;

const WEIGHT: u32 = 24_560;

struct Running {
    link: PathBuf,
    faults: watch::Sender<Faults>,
    _state: watch::Sender<BridgeState>,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

fn start(name: &str, faults: Faults, motion: bool) -> Running {
    let dir = tempfile::tempdir().expect("a temp dir");
    let link = dir.path().join("ttyINDICATOR");
    let port = PluggablePort::open(&link).expect("a pty");
    let protocol = AnyProtocol::parse(name, Some(GENERIC_PATTERN)).expect("a known protocol");
    let (state_tx, state) = watch::channel(BridgeState {
        weight_kg: WEIGHT,
        motion,
    });
    let (faults_tx, faults_rx) = watch::channel(faults);
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(run_indicator(
        port,
        protocol,
        Duration::from_millis(10),
        state,
        faults_rx,
        stop,
    ));
    Running {
        link,
        faults: faults_tx,
        _state: state_tx,
        _stop: stop_tx,
        _dir: dir,
    }
}

/// Read `link` for `for_ms` as `name`, asking polled protocols every 20 ms: readings and the
/// number of skipped runs.
async fn listen(name: &str, link: &Path, for_ms: u64) -> (Vec<ScaleReading>, usize) {
    let protocol = AnyProtocol::parse(name, Some(GENERIC_PATTERN)).expect("a known protocol");
    let cfg = SerialPortConfig {
        path: link.display().to_string(),
        ..SerialPortConfig::default()
    };
    let mut port = open_port(&cfg).expect("the link opens");
    let (mut buf, mut readings, mut skipped) = (Vec::new(), Vec::new(), 0);
    let end = tokio::time::Instant::now() + Duration::from_millis(for_ms);
    let mut chunk = [0u8; 512];
    while tokio::time::Instant::now() < end {
        if let Some(req) = protocol.poll_request() {
            port.write_all(&req).await.expect("a request");
        }
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(20), port.read(&mut chunk)).await
        {
            buf.extend_from_slice(&chunk[..n]);
        }
        let (segs, used) = inspect::segments(&protocol, &buf);
        for s in segs {
            match s {
                Segment::Frame(_, Measurement::Weight(r)) => readings.push(r),
                Segment::Frame(..) => {}
                Segment::Skipped(..) => skipped += 1,
            }
        }
        buf.drain(..used);
    }
    (readings, skipped)
}

fn indicator_names() -> impl Iterator<Item = &'static str> {
    AnyProtocol::NAMES
        .into_iter()
        .filter(|n| *n != "dims-ascii")
}

#[tokio::test]
async fn every_protocol_reads_back_through_its_decoder() {
    for name in indicator_names() {
        let dev = start(name, Faults::default(), false);
        let (readings, _) = listen(name, &dev.link, 300).await;
        assert!(readings.len() >= 3, "{name}: {readings:?}");
        for r in &readings {
            assert_eq!(r.weight_kg, Some(f64::from(WEIGHT)), "{name}");
            assert_ne!(r.motion, Some(true), "{name}");
        }
    }
}

#[tokio::test]
async fn faults_cost_frames_but_never_give_a_wrong_weight() {
    let faults = Faults {
        noise_bytes: 6,
        truncate_every: 3,
        bad_checksum_every: 4,
        ..Faults::default()
    };
    for name in indicator_names() {
        let dev = start(name, faults, false);
        let (readings, skipped) = listen(name, &dev.link, 500).await;
        assert!(readings.len() >= 3, "{name}: {} readings", readings.len());
        // The generic pattern is anchored at the end only: noise and cut lines join the next
        // line and are absorbed by the match instead of being skipped.
        if name != "generic" {
            assert!(skipped >= 3, "{name}: only {skipped} skipped runs");
        }
        for r in &readings {
            assert_eq!(r.weight_kg, Some(f64::from(WEIGHT)), "{name}: {r:?}");
        }
    }
}

#[tokio::test]
async fn a_rocking_vehicle_swings_with_the_motion_flag_set() {
    let faults = Faults {
        rocking_kg: 40,
        ..Faults::default()
    };
    for name in ["toledo-continuous-checksum", "rlws", "mt-sics", "xk3190"] {
        let dev = start(name, faults, false);
        let (readings, _) = listen(name, &dev.link, 400).await;
        let weights: std::collections::BTreeSet<i64> = readings
            .iter()
            .filter_map(|r| r.weight_kg)
            .map(|w| w as i64)
            .collect();
        assert!(weights.len() >= 2, "{name}: {weights:?}");
        assert!(
            weights.iter().all(|w| (WEIGHT as i64 - *w).abs() <= 40),
            "{name}: {weights:?}"
        );
        if name != "xk3190" {
            assert!(readings.iter().all(|r| r.motion == Some(true)), "{name}");
        }
    }
}

#[test]
fn bad_checksums_are_rejected_by_the_decoder() {
    let state = BridgeState {
        weight_kg: WEIGHT,
        motion: false,
    };
    let faults = Faults {
        bad_checksum_every: 1,
        ..Faults::default()
    };
    for name in ["toledo-continuous-checksum", "xk3190", "a12e"] {
        let protocol = AnyProtocol::parse(name, None).expect("known");
        let mut frame = Vec::new();
        frame_for(&protocol, state, &mut frame);
        let bad = FaultInjector::new(1).corrupt(&faults, &protocol, &frame);
        assert_eq!(bad.len(), frame.len());
        assert!(
            matches!(
                protocol.decode_measurement(&bad),
                Err(e) if matches!(e.kind, bcp_drivers::FrameErrorKind::Checksum { .. })
            ),
            "{name}: {bad:02X?}"
        );
    }
}

#[tokio::test]
async fn unplug_and_replug_are_seen_by_the_driver_which_reconnects() {
    let dev = start("toledo-continuous-checksum", Faults::default(), false);
    let (tx, mut rx) = mpsc::channel(256);
    let (_stop_tx, stop) = watch::channel(false);
    let port = SerialPortConfig {
        path: dev.link.display().to_string(),
        ..SerialPortConfig::default()
    };
    tokio::spawn(run_weighbridge(
        "sim-bridge".into(),
        port,
        ToledoCodec { checksum: true },
        StabilityConfig::default(),
        tx,
        Default::default(),
        stop,
    ));
    async fn wait_for(
        rx: &mut mpsc::Receiver<DeviceEvent>,
        what: &str,
        pred: impl Fn(&DeviceEvent) -> bool,
    ) {
        let found = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(e) = rx.recv().await {
                if pred(&e) {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(found, Ok(true), "waiting for {what}");
    }
    let reading =
        |e: &DeviceEvent| matches!(e, DeviceEvent::Reading(r) if r.weight_kg == f64::from(WEIGHT));
    wait_for(&mut rx, "connected", |e| {
        matches!(e, DeviceEvent::Connected)
    })
    .await;
    wait_for(&mut rx, "a reading", reading).await;
    dev.faults.send_modify(|f| f.unplugged = true);
    wait_for(&mut rx, "disconnected", |e| {
        matches!(e, DeviceEvent::Disconnected { .. })
    })
    .await;
    assert!(!dev.link.exists(), "the link goes with the cable");
    dev.faults.send_modify(|f| f.unplugged = false);
    wait_for(&mut rx, "connected again", |e| {
        matches!(e, DeviceEvent::Connected)
    })
    .await;
    wait_for(&mut rx, "a reading after replug", reading).await;
}

/// Every indicator protocol end to end: the simulated indicator on a pty, the real driver
/// (`run_indicator`, polling where the protocol is polled) reading it by the link path, a
/// `StableWeight` at the simulated weight.
#[tokio::test]
async fn every_protocol_through_the_driver_to_a_stable_weight() {
    use bcp_drivers::serial::run_indicator;
    use bcp_drivers::stability::WeighEvent;
    for name in indicator_names() {
        let dev = start(name, Faults::default(), false);
        let (tx, mut rx) = mpsc::channel(1024);
        let (_stop_tx, stop) = watch::channel(false);
        let port = SerialPortConfig {
            path: dev.link.display().to_string(),
            ..SerialPortConfig::default()
        };
        let protocol = AnyProtocol::parse(name, Some(GENERIC_PATTERN)).expect("known");
        let stability = StabilityConfig {
            readings: 3,
            min_duration: Duration::from_millis(100),
            ..StabilityConfig::default()
        };
        let driver = tokio::spawn(run_indicator(
            format!("sim-{name}"),
            port,
            protocol,
            stability,
            tx,
            Default::default(),
            stop,
        ));
        let stable = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(e) = rx.recv().await {
                if let DeviceEvent::Weigh(WeighEvent::Stable(s)) = e {
                    return Some(s.weight_kg);
                }
            }
            None
        })
        .await;
        assert_eq!(stable, Ok(Some(f64::from(WEIGHT))), "{name}");
        driver.abort();
    }
}
