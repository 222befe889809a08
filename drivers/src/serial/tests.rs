//! Pseudo-terminals as virtual hardware: the test writes encoded frames into the master end and
//! the driver opens the slave by its path, as it would open `/dev/ttyUSB0`.

use super::*;
use crate::toledo::{DecimalPosition, ToledoFrame};
use tokio::io::AsyncWriteExt;
use tokio_serial::SerialPort;

const WAIT: Duration = Duration::from_secs(10);

fn toledo(weight_digits: u32, motion: bool) -> ToledoFrame {
    ToledoFrame {
        weight_digits,
        tare_digits: 0,
        decimal: DecimalPosition::DummyZeros1,
        increment: 2,
        net: false,
        negative: false,
        out_of_range: false,
        motion,
        unit_kg: true,
        not_zeroed_at_power_up: false,
        swc: 0x20,
    }
}

/// A pty pair whose slave path the driver can open too.
fn pty() -> (SerialStream, SerialStream, String) {
    let (master, mut slave) = SerialStream::pair().expect("create a pseudo-terminal pair");
    slave
        .set_exclusive(false)
        .expect("make the pty slave non-exclusive");
    let path = slave.name().expect("a pty slave has a path");
    (master, slave, path)
}

/// Next event other than a raw reading.
async fn next_event(rx: &mut mpsc::Receiver<DeviceEvent>) -> DeviceEvent {
    loop {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Some(DeviceEvent::Reading(_))) => continue,
            Ok(Some(event)) => return event,
            Ok(None) => panic!("driver dropped the event channel"),
            Err(_) => panic!("no event within {WAIT:?}"),
        }
    }
}

async fn expect_connected(rx: &mut mpsc::Receiver<DeviceEvent>) {
    match next_event(rx).await {
        DeviceEvent::Connected => {}
        other => panic!("expected Connected, got {other:?}"),
    }
}

fn health_now(health: &SharedHealth) -> DeviceHealth {
    health
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

#[tokio::test]
async fn weighbridge_over_a_pty() {
    let (mut master, _slave, path) = pty();
    let (tx, mut rx) = mpsc::channel(1024);
    let health = SharedHealth::default();
    let (stop, stop_rx) = watch::channel(false);
    let codec = ToledoCodec { checksum: true };
    let stability = StabilityConfig {
        readings: 3,
        min_duration: Duration::from_millis(150),
        ..StabilityConfig::default()
    };
    let driver = tokio::spawn(run_weighbridge(
        "bridge-1".into(),
        SerialPortConfig {
            path,
            ..SerialPortConfig::default()
        },
        codec,
        stability,
        tx,
        health.clone(),
        stop_rx,
    ));
    expect_connected(&mut rx).await;

    let send = |frames: Vec<ToledoFrame>, noise: &'static [u8]| {
        let mut bytes = noise.to_vec();
        for f in &frames {
            codec.encode(f, &mut bytes);
        }
        bytes
    };
    // Noise on the line, then a truck rolling on with the motion flag set.
    let ramp: Vec<_> = (1..=5).map(|i| toledo(i * 4000, true)).collect();
    master
        .write_all(&send(ramp, b"\x02garbage\r\n\xff"))
        .await
        .expect("write to pty");
    assert!(matches!(
        next_event(&mut rx).await,
        DeviceEvent::Weigh(WeighEvent::VehicleOn { .. })
    ));
    // It settles at 20 000 kg: frames 50 ms apart, as a real indicator paces them.
    for _ in 0..8 {
        master
            .write_all(&send(vec![toledo(20_000, false)], b""))
            .await
            .expect("write to pty");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match next_event(&mut rx).await {
        DeviceEvent::Weigh(WeighEvent::Stable(s)) => {
            assert_eq!(s.weight_kg, 20_000.0);
            assert_eq!(s.division_kg, 20.0);
        }
        other => panic!("expected Stable, got {other:?}"),
    }
    master
        .write_all(&send(vec![toledo(0, true)], b""))
        .await
        .expect("write to pty");
    assert!(matches!(
        next_event(&mut rx).await,
        DeviceEvent::Weigh(WeighEvent::VehicleOff { .. })
    ));

    let h = health_now(&health);
    assert!(h.connected);
    assert_eq!(h.frames_ok, 5 + 8 + 1);
    assert!(h.frames_bad >= 1, "the noise was counted: {h:?}");
    assert!(h.last_frame_at.is_some());

    // Unplug: the writer goes away.
    drop(master);
    match next_event(&mut rx).await {
        DeviceEvent::Disconnected { reason } => assert!(!reason.is_empty()),
        other => panic!("expected Disconnected, got {other:?}"),
    }
    assert!(!health_now(&health).connected);

    stop.send(true).expect("driver still listening");
    let result = tokio::time::timeout(WAIT, driver)
        .await
        .expect("driver stops on shutdown")
        .expect("driver did not panic");
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn dimension_sensor_skips_garbage() {
    let (mut master, _slave, path) = pty();
    let (tx, mut rx) = mpsc::channel(16);
    let health = SharedHealth::default();
    let (stop, stop_rx) = watch::channel(false);
    let driver = tokio::spawn(run_dimension_sensor(
        "dims-1".into(),
        SerialPortConfig {
            path,
            ..SerialPortConfig::default()
        },
        tx,
        health.clone(),
        stop_rx,
    ));
    expect_connected(&mut rx).await;
    let frame = DimensionFrame {
        seq: 42,
        length_mm: 16_500,
        width_mm: 2_550,
        height_mm: 4_000,
    };
    let mut bytes = b"$DIM,1,2*00\r\n\x00\xff$$".to_vec();
    crate::dims_ascii::encode(&frame, &mut bytes);
    master.write_all(&bytes).await.expect("write to pty");
    match next_event(&mut rx).await {
        DeviceEvent::Dimensions(got) => assert_eq!(got, frame),
        other => panic!("expected Dimensions, got {other:?}"),
    }
    let h = health_now(&health);
    assert_eq!(h.frames_ok, 1);
    assert!(h.frames_bad >= 2, "{h:?}");
    stop.send(true).expect("driver still listening");
    let result = tokio::time::timeout(WAIT, driver)
        .await
        .expect("driver stops on shutdown")
        .expect("driver did not panic");
    assert!(result.is_ok(), "{result:?}");
    drop(master);
}

/// A port that cannot be opened: one Disconnected and one WARN per outage, retries with backoff,
/// and a clean stop. Time is paused, so the backoff sleeps cost nothing.
#[tokio::test(start_paused = true)]
async fn missing_port_reports_once_and_keeps_retrying() {
    let (tx, mut rx) = mpsc::channel(16);
    let (stop, stop_rx) = watch::channel(false);
    let driver = tokio::spawn(run_dimension_sensor(
        "dims-missing".into(),
        SerialPortConfig {
            path: "/dev/bcp-no-such-port".into(),
            ..SerialPortConfig::default()
        },
        tx,
        SharedHealth::default(),
        stop_rx,
    ));
    match next_event(&mut rx).await {
        DeviceEvent::Disconnected { reason } => {
            assert!(reason.contains("/dev/bcp-no-such-port"), "{reason}")
        }
        other => panic!("expected Disconnected, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(rx.try_recv().is_err(), "only one Disconnected per outage");
    stop.send(true).expect("driver still listening");
    let result = driver.await.expect("driver did not panic");
    assert!(result.is_ok(), "{result:?}");
}

/// A weighbridge that goes silent is reported as disconnected and reopened.
#[tokio::test(start_paused = true)]
async fn silent_weighbridge_is_disconnected() {
    let (_master, _slave, path) = pty();
    let (tx, mut rx) = mpsc::channel(16);
    let (stop, stop_rx) = watch::channel(false);
    let driver = tokio::spawn(run_weighbridge(
        "bridge-silent".into(),
        SerialPortConfig {
            path,
            ..SerialPortConfig::default()
        },
        ToledoCodec::default(),
        StabilityConfig::default(),
        tx,
        SharedHealth::default(),
        stop_rx,
    ));
    expect_connected(&mut rx).await;
    match next_event(&mut rx).await {
        DeviceEvent::Disconnected { reason } => {
            assert!(reason.contains("no valid frame"), "{reason}")
        }
        other => panic!("expected Disconnected, got {other:?}"),
    }
    expect_connected(&mut rx).await;
    stop.send(true).expect("driver still listening");
    let result = driver.await.expect("driver did not panic");
    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn invalid_configs_are_errors_not_retries() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (tx, _rx) = mpsc::channel(1);
    let (_stop, stop_rx) = watch::channel(false);
    let result = rt.block_on(run_dimension_sensor(
        "dims".into(),
        SerialPortConfig::default(),
        tx.clone(),
        SharedHealth::default(),
        stop_rx.clone(),
    ));
    assert!(matches!(
        result,
        Err(DriverError::InvalidPortConfig { key: "path", .. })
    ));
    let result = rt.block_on(run_weighbridge(
        "bridge".into(),
        SerialPortConfig {
            path: "/dev/null".into(),
            ..SerialPortConfig::default()
        },
        ToledoCodec::default(),
        StabilityConfig {
            readings: 0,
            ..StabilityConfig::default()
        },
        tx,
        SharedHealth::default(),
        stop_rx,
    ));
    assert!(matches!(
        result,
        Err(DriverError::InvalidStabilityConfig { .. })
    ));
}

#[test]
fn serial_config_defaults_to_9600_8n1() {
    let c = SerialPortConfig::default();
    assert_eq!(
        (c.baud, c.data_bits, c.parity, c.stop_bits),
        (9600, 8, Parity::None, 1)
    );
}

/// A polled MT-SICS balance on a pty: the driver asks `SI`, the balance answers; readings reach
/// the stability detector as with a continuous indicator.
#[tokio::test]
async fn polled_mt_sics_indicator_over_a_pty() {
    use crate::mt_sics::{self, MtSicsCommand, MtSicsReply};
    use tokio::io::AsyncReadExt;
    let (mut master, _slave, path) = pty();
    let balance = tokio::spawn(async move {
        let (mut buf, mut chunk, mut asked) = (Vec::new(), [0u8; 64], 0u32);
        loop {
            let Ok(n) = master.read(&mut chunk).await else {
                return;
            };
            buf.extend_from_slice(&chunk[..n]);
            while let Ok(Some((cmd, used))) = mt_sics::decode_command(&buf) {
                buf.drain(..used);
                assert_eq!(cmd, MtSicsCommand::WeighImmediately);
                asked += 1;
                let reply = MtSicsReply::Weight {
                    command: "S".into(),
                    dynamic: asked < 3,
                    weight: crate::Decimal::new(1_812_000, 2),
                    unit: "kg".into(),
                };
                let mut out = Vec::new();
                mt_sics::encode_reply(&reply, &mut out);
                if master.write_all(&out).await.is_err() {
                    return;
                }
            }
        }
    });
    let (tx, mut rx) = mpsc::channel(1024);
    let health = SharedHealth::default();
    let (stop, stop_rx) = watch::channel(false);
    let stability = StabilityConfig {
        readings: 3,
        min_duration: Duration::from_millis(150),
        ..StabilityConfig::default()
    };
    let protocol = AnyProtocol::parse("mt-sics", None).expect("a known protocol");
    let driver = tokio::spawn(run_indicator(
        "balance-1".into(),
        SerialPortConfig {
            path,
            ..SerialPortConfig::default()
        },
        protocol,
        stability,
        tx,
        health.clone(),
        stop_rx,
    ));
    expect_connected(&mut rx).await;
    assert!(matches!(
        next_event(&mut rx).await,
        DeviceEvent::Weigh(WeighEvent::VehicleOn { .. })
    ));
    match next_event(&mut rx).await {
        DeviceEvent::Weigh(WeighEvent::Stable(s)) => {
            assert_eq!(s.weight_kg, 18_120.0);
            assert_eq!(s.division_kg, 0.01);
        }
        other => panic!("expected Stable, got {other:?}"),
    }
    assert!(health_now(&health).frames_ok >= 3);
    stop.send(true).expect("driver listening");
    assert!(matches!(
        tokio::time::timeout(WAIT, driver).await,
        Ok(Ok(Ok(())))
    ));
    balance.abort();
}

/// A streaming XK3190 (format 0) indicator through `run_indicator`, with a corrupt frame.
#[tokio::test]
async fn xk3190_indicator_over_a_pty() {
    use crate::xk3190::{Xk3190Codec, Xk3190Format, Xk3190Frame};
    let (mut master, _slave, path) = pty();
    let (tx, mut rx) = mpsc::channel(1024);
    let health = SharedHealth::default();
    let (stop, stop_rx) = watch::channel(false);
    let stability = StabilityConfig {
        readings: 3,
        min_duration: Duration::from_millis(100),
        ..StabilityConfig::default()
    };
    let protocol = AnyProtocol::parse("xk3190", None).expect("a known protocol");
    let driver = tokio::spawn(run_indicator(
        "bridge-xk".into(),
        SerialPortConfig {
            path,
            ..SerialPortConfig::default()
        },
        protocol,
        stability,
        tx,
        health.clone(),
        stop_rx,
    ));
    expect_connected(&mut rx).await;
    let codec = Xk3190Codec::new(Xk3190Format::Xor);
    let mut frame = Vec::new();
    codec.encode(
        &Xk3190Frame {
            weight: crate::Decimal::new(31_460, 0),
        },
        &mut frame,
    );
    let mut bad = frame.clone();
    bad[5] ^= 0x01; // a digit changed in transit: the XOR check catches it
    master.write_all(&bad).await.expect("pty write");
    for _ in 0..6 {
        master.write_all(&frame).await.expect("pty write");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(
        next_event(&mut rx).await,
        DeviceEvent::Weigh(WeighEvent::VehicleOn { .. })
    ));
    match next_event(&mut rx).await {
        DeviceEvent::Weigh(WeighEvent::Stable(s)) => assert_eq!(s.weight_kg, 31_460.0),
        other => panic!("expected Stable, got {other:?}"),
    }
    assert_eq!(health_now(&health).frames_bad, 1);
    stop.send(true).expect("driver listening");
    assert!(matches!(
        tokio::time::timeout(WAIT, driver).await,
        Ok(Ok(Ok(())))
    ));
}

/// An A12E indicator sends its overload frame, then weights again: the driver raises and clears
/// the alarm, and the overload frames feed nothing to the stability detector.
#[tokio::test]
async fn overload_is_raised_and_cleared() {
    use crate::a12e::{self, A12eFrame, A12eWeight};
    use crate::alarms::{Alarm, AlarmEvent};
    let (mut master, _slave, path) = pty();
    let (tx, mut rx) = mpsc::channel(1024);
    let (stop, stop_rx) = watch::channel(false);
    let protocol = AnyProtocol::parse("a12e", None).expect("a known protocol");
    let driver = tokio::spawn(run_indicator(
        "bridge-a12e".into(),
        SerialPortConfig {
            path,
            ..SerialPortConfig::default()
        },
        protocol,
        StabilityConfig::default(),
        tx,
        SharedHealth::default(),
        stop_rx,
    ));
    expect_connected(&mut rx).await;
    let mut bytes = Vec::new();
    for weight in [A12eWeight::Overload, A12eWeight::Overload] {
        a12e::encode(&A12eFrame { net: false, weight }, &mut bytes);
    }
    let value = A12eWeight::Value(crate::Decimal::new(0, 0));
    a12e::encode(
        &A12eFrame {
            net: false,
            weight: value,
        },
        &mut bytes,
    );
    master.write_all(&bytes).await.expect("pty write");
    assert!(matches!(
        next_event(&mut rx).await,
        DeviceEvent::Alarm(AlarmEvent::Raised {
            alarm: Alarm::Overload,
            ..
        })
    ));
    assert!(matches!(
        next_event(&mut rx).await,
        DeviceEvent::Alarm(AlarmEvent::Cleared {
            alarm: Alarm::Overload,
            ..
        })
    ));
    stop.send(true).expect("driver listening");
    assert!(matches!(
        tokio::time::timeout(WAIT, driver).await,
        Ok(Ok(Ok(())))
    ));
}

/// A lane scanner on a pty: one-point scans straight down (road at 6 m, a roof at 2 m below the
/// scanner) through `run_lane_scanner`: one Dimensions event per vehicle.
#[tokio::test]
async fn lane_scanner_over_a_pty() {
    use crate::sick_cola::{self, DimensionTrackerConfig, LaneGeometry, ScanTelegram};
    let (mut master, _slave, path) = pty();
    let (tx, mut rx) = mpsc::channel(1024);
    let (stop, stop_rx) = watch::channel(false);
    let tracker = DimensionTrackerConfig {
        geometry: LaneGeometry {
            mount_height_mm: 6000.0,
            down_angle: 0,
            min_object_height_mm: 300.0,
        },
        speed_mm_per_s: 2000.0,
        min_gap_scans: 2,
    };
    let driver = tokio::spawn(run_lane_scanner(
        "lms-1".into(),
        SerialPortConfig {
            path,
            ..SerialPortConfig::default()
        },
        tracker,
        tx,
        SharedHealth::default(),
        stop_rx,
    ));
    expect_connected(&mut rx).await;
    let scan = |counter, range| ScanTelegram {
        counter,
        frequency_centi_hz: 5000,
        scale: 1.0,
        start_angle: 0,
        angle_step: 0,
        ranges: vec![range],
    };
    let mut bytes = Vec::new();
    // 100 scans with the vehicle at 50 Hz and 2 m/s: 4 m long, 4 m high.
    for i in 0..120 {
        let range = if (10..110).contains(&i) { 2000 } else { 6000 };
        sick_cola::encode(&scan(i, range), &mut bytes);
    }
    master.write_all(&bytes).await.expect("pty write");
    match next_event(&mut rx).await {
        DeviceEvent::Dimensions(d) => {
            assert_eq!(
                (d.seq, d.length_mm, d.width_mm, d.height_mm),
                (1, 4000, 0, 4000)
            );
        }
        other => panic!("expected Dimensions, got {other:?}"),
    }
    stop.send(true).expect("driver listening");
    assert!(matches!(
        tokio::time::timeout(WAIT, driver).await,
        Ok(Ok(Ok(())))
    ));
}
