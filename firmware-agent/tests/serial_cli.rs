//! `bcpctl serial read / probe / sniff`, the real binary, against devices emulated on
//! pseudo-terminals with the drivers' own encoders (whose vectors come from the manuals).

use std::process::Output;
use std::time::Duration;

use bcp_drivers::dims_ascii::{self, DimensionFrame};
use bcp_drivers::indicator::{Decimal, Unit};
use bcp_drivers::tokio_serial::{SerialPort, SerialStream};
use bcp_drivers::toledo::{DecimalPosition, ToledoCodec, ToledoFrame};
use bcp_drivers::{a12e, avery, cardinal, mt_sics, rlws, sma, xk3190};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// A pseudo-terminal: the test plays the device on the master side, bcpctl opens `path`.
struct Pty {
    path: String,
    master: Option<SerialStream>,
    /// Held so the slave stays usable between openings; never read.
    _slave: SerialStream,
}

fn pty() -> Pty {
    let (master, slave) = SerialStream::pair().expect("a pseudo-terminal pair");
    let path = slave.name().expect("the slave has a path");
    Pty {
        path,
        master: Some(master),
        _slave: slave,
    }
}

/// The device task; aborted when dropped.
struct Device(JoinHandle<()>);

impl Drop for Device {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A streaming indicator: `frame` every 20 ms. With `baud`, only when the port is set to that
/// rate (a pty's master reads the slave's settings); otherwise line noise, as a real UART would
/// deliver at the wrong rate.
fn streaming(pty: &mut Pty, frame: Vec<u8>, baud: Option<u32>) -> Device {
    let mut master = pty.master.take().expect("one device per pty");
    Device(tokio::spawn(async move {
        let mut noise = 0x5Au8;
        loop {
            let right_rate = baud.is_none_or(|b| master.baud_rate().ok() == Some(b));
            let bytes: Vec<u8> = if right_rate {
                frame.clone()
            } else {
                (0..frame.len())
                    .map(|_| {
                        noise = noise.wrapping_mul(73).wrapping_add(41);
                        noise | 0x80
                    })
                    .collect()
            };
            if master.write_all(&bytes).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }))
}

/// What a polled device does with the front of its input: `None` needs more bytes, else the
/// bytes used and the reply to send (if any).
type Answer = fn(&[u8]) -> Option<(usize, Option<Vec<u8>>)>;

/// A polled indicator: answers each request as `answer` says.
fn polled(pty: &mut Pty, answer: Answer) -> Device {
    let mut master = pty.master.take().expect("one device per pty");
    Device(tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 256];
        loop {
            let Ok(n) = master.read(&mut chunk).await else {
                return;
            };
            buf.extend_from_slice(&chunk[..n]);
            while let Some((used, reply)) = answer(&buf) {
                buf.drain(..used.clamp(1, buf.len()));
                if let Some(reply) = reply {
                    if master.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            }
        }
    }))
}

/// An MT-SICS balance: `SI` gets a dynamic 12345.60 kg, `S` a stable 50.0 kg, anything else `ES`.
fn mt_sics_balance(buf: &[u8]) -> Option<(usize, Option<Vec<u8>>)> {
    use mt_sics::{MtSicsCommand, MtSicsError, MtSicsReply};
    let weight = |dynamic, m| MtSicsReply::Weight {
        command: "S".into(),
        dynamic,
        weight: Decimal::new(m, 2),
        unit: "kg".into(),
    };
    match mt_sics::decode_command(buf) {
        Ok(None) => None,
        Err(e) => Some((e.skip, None)),
        Ok(Some((cmd, n))) => {
            let reply = match cmd {
                MtSicsCommand::WeighImmediately => weight(true, 1_234_560),
                MtSicsCommand::Weigh => weight(false, 5_000),
                _ => MtSicsReply::Error(MtSicsError::Syntax),
            };
            Some((n, Some(enc(mt_sics::encode_reply, &reply))))
        }
    }
}

/// An SMA scale: `W` gets a net 15000 kg with a tare error; other requests get nothing.
fn sma_scale(buf: &[u8]) -> Option<(usize, Option<Vec<u8>>)> {
    match sma::decode_request(buf) {
        Ok(None) => None,
        Err(e) => Some((e.skip, None)),
        Ok(Some((b'W', n))) => {
            let reply = sma::SmaFrame {
                status: sma::SmaStatus::TareError,
                range: b'1',
                mode: b'N',
                motion: false,
                weight: Some(Decimal::new(15_000, 0)),
                unit: Unit::Kg,
            };
            Some((n, Some(enc(sma::encode, &reply))))
        }
        Ok(Some((_, n))) => Some((n, None)),
    }
}

/// An XK3190 in command mode at address 01: gross -123.4 kg; other addresses get nothing.
fn xk3190_a9_indicator(buf: &[u8]) -> Option<(usize, Option<Vec<u8>>)> {
    use bcp_drivers::xk3190_a9::{self, A9Command, A9Reply};
    match xk3190_a9::decode_request(buf) {
        Ok(None) => None,
        Err(e) => Some((e.skip, None)),
        Ok(Some((req, n))) if req.address == b'A' && req.command == A9Command::Gross => {
            let reply = A9Reply {
                address: b'A',
                command: A9Command::Gross,
                value: Some(Decimal::new(-1234, 1)),
            };
            Some((n, Some(enc(xk3190_a9::encode_reply, &reply))))
        }
        Ok(Some((_, n))) => Some((n, None)),
    }
}

async fn bcpctl(args: &[&str]) -> Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_bcpctl"))
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("bcpctl finishes within 30 s")
        .expect("bcpctl runs")
}

async fn read_json(pty: &Pty, protocol: &str, extra: &[&str], count: u32) -> Vec<Value> {
    let count = count.to_string();
    let mut args = vec![
        "serial",
        "read",
        "--port",
        &pty.path,
        "--protocol",
        protocol,
    ];
    args.extend_from_slice(&["--count", &count, "--json", "--timeout-ms", "5000"]);
    args.extend_from_slice(extra);
    let out = bcpctl(&args).await;
    assert!(
        out.status.success(),
        "{protocol}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect();
    assert_eq!(lines.len().to_string(), count, "{protocol}");
    lines
}

fn enc<F>(encode: impl Fn(&F, &mut Vec<u8>), frame: &F) -> Vec<u8> {
    let mut out = Vec::new();
    encode(frame, &mut out);
    out
}

/// (protocol, one frame on the wire, expected weight, gross, tare, net, motion, status).
type Case = (&'static str, Vec<u8>, Value);

fn streaming_cases() -> Vec<Case> {
    use serde_json::json;
    let toledo = ToledoFrame {
        weight_digits: 12340,
        tare_digits: 0,
        decimal: DecimalPosition::DummyZeros1,
        increment: 2,
        net: false,
        negative: false,
        out_of_range: false,
        motion: false,
        unit_kg: true,
        not_zeroed_at_power_up: false,
        swc: 0x20,
    };
    let xk = |format| {
        let c = xk3190::Xk3190Codec::new(format);
        enc(
            |f, o| c.encode(f, o),
            &xk3190::Xk3190Frame {
                weight: Decimal::new(3000, 3),
            },
        )
    };
    vec![
        (
            "toledo-continuous-checksum",
            enc(|f, o| ToledoCodec { checksum: true }.encode(f, o), &toledo),
            json!([12340.0, 12340.0, null, null, false, "ok"]),
        ),
        (
            "xk3190",
            xk(xk3190::Xk3190Format::Xor),
            json!([3.0, null, null, null, null, "ok"]),
        ),
        (
            "xk3190-f1",
            b"=000.3000".to_vec(),
            json!([3.0, null, null, null, null, "ok"]),
        ),
        (
            "xk3190-f2",
            xk(xk3190::Xk3190Format::Normal),
            json!([3.0, null, null, null, null, "ok"]),
        ),
        (
            "a12e",
            b"WG004.139kg3D\r\n".to_vec(),
            json!([4.139, 4.139, null, null, null, "ok"]),
        ),
        (
            "rlws",
            enc(
                rlws::encode,
                &rlws::RlwsFrame {
                    weight: Decimal::new(-40, 0),
                    unit: Unit::Kg,
                    net: true,
                    status: rlws::RlwsStatus::Motion,
                },
            ),
            json!([-40.0, null, null, -40.0, true, "ok"]),
        ),
        (
            "cardinal",
            enc(
                cardinal::encode,
                &cardinal::CardinalFrame {
                    weight: Decimal::new(999_999, 0),
                    motion: false,
                    out_of_range: true,
                    unit: Unit::Kg,
                    net: false,
                },
            ),
            json!([999_999.0, 999_999.0, null, null, false, "overload"]),
        ),
        (
            "avery",
            enc(
                avery::encode,
                &avery::AveryFrame {
                    net: false,
                    weight: Decimal::new(25_500, 0),
                    unit: Unit::Kg,
                },
            ),
            json!([25_500.0, 25_500.0, null, null, null, "ok"]),
        ),
        (
            "a12e",
            enc(
                a12e::encode,
                &a12e::A12eFrame {
                    net: false,
                    weight: a12e::A12eWeight::Overload,
                },
            ),
            json!([null, null, null, null, null, "overload"]),
        ),
    ]
}

fn check(protocol: &str, line: &Value, expected: &Value) {
    let fields = [
        "weight_kg",
        "gross_kg",
        "tare_kg",
        "net_kg",
        "motion",
        "status",
    ];
    for (i, field) in fields.iter().enumerate() {
        assert_eq!(&line[field], &expected[i], "{protocol}: {field} in {line}");
    }
    assert_eq!(line["protocol"], protocol);
}

#[tokio::test]
async fn read_json_from_every_streaming_protocol() {
    for (protocol, frame, expected) in streaming_cases() {
        let mut pty = pty();
        let _device = streaming(&mut pty, frame.clone(), None);
        let lines = read_json(&pty, protocol, &[], 2).await;
        for line in &lines {
            check(protocol, line, &expected);
            let hex: Vec<String> = frame.iter().map(|b| format!("{b:02X}")).collect();
            assert_eq!(line["raw_hex"], hex.join(" "), "{protocol}");
            // Indicators with a motion flag: stable is its negation while the status is ok.
            if expected[4].is_boolean() && expected[5] == "ok" {
                assert_eq!(line["stable"], !expected[4].as_bool().unwrap_or(true));
            }
        }
    }
}

#[tokio::test]
async fn without_a_motion_flag_stable_means_five_readings_in_a_division() {
    let mut pty = pty();
    let codec = xk3190::Xk3190Codec::new(xk3190::Xk3190Format::Xor);
    let frame = enc(
        |f, o| codec.encode(f, o),
        &xk3190::Xk3190Frame {
            weight: Decimal::new(24_680, 0),
        },
    );
    let _device = streaming(&mut pty, frame, None);
    let lines = read_json(&pty, "xk3190", &[], 6).await;
    let stable: Vec<bool> = lines.iter().map(|l| l["stable"] == true).collect();
    assert_eq!(stable, [false, false, false, false, true, true]);
}

#[tokio::test]
async fn read_json_from_polled_and_dimension_protocols() {
    // MT-SICS: SI is answered with a dynamic weight.
    let mut pty1 = pty();
    let _d1 = polled(&mut pty1, mt_sics_balance);
    for line in read_json(&pty1, "mt-sics", &[], 3).await {
        check(
            "mt-sics",
            &line,
            &serde_json::json!([12345.6, null, null, null, true, "ok"]),
        );
        assert_eq!(line["stable"], false);
    }

    // SMA: W is answered with a net weight and a tare error.
    let mut pty2 = pty();
    let _d2 = polled(&mut pty2, sma_scale);
    for line in read_json(&pty2, "sma", &[], 2).await {
        check(
            "sma",
            &line,
            &serde_json::json!([15000.0, null, null, 15000.0, false, "error"]),
        );
    }

    // XK3190 command mode: the indicator at address 01 answers the gross request.
    let mut pty5 = pty();
    let _d5 = polled(&mut pty5, xk3190_a9_indicator);
    for line in read_json(&pty5, "xk3190-a9", &[], 2).await {
        check(
            "xk3190-a9",
            &line,
            &serde_json::json!([-123.4, -123.4, null, null, null, "ok"]),
        );
    }

    // Dimensions.
    let mut pty3 = pty();
    let frame = enc(
        dims_ascii::encode,
        &DimensionFrame {
            seq: 7,
            length_mm: 16_500,
            width_mm: 2_550,
            height_mm: 4_000,
        },
    );
    let _d3 = streaming(&mut pty3, frame, None);
    for line in read_json(&pty3, "dims-ascii", &[], 2).await {
        assert_eq!(
            (&line["length_mm"], &line["width_mm"], &line["height_mm"]),
            (
                &Value::from(16_500),
                &Value::from(2_550),
                &Value::from(4_000)
            )
        );
        assert_eq!(line["protocol"], "dims-ascii");
    }

    // Generic: an A&D-style line described by a pattern.
    let mut pty4 = pty();
    let _d4 = streaming(&mut pty4, b"US,GS,+0012.50kg\r\n".to_vec(), None);
    let pattern = r"^(?P<motion>US)?(?:ST)?,(?:GS),(?P<weight>[+-]?[0-9.]+)(?P<unit>kg)$";
    for line in read_json(&pty4, "generic", &["--pattern", pattern], 2).await {
        check(
            "generic",
            &line,
            &serde_json::json!([12.5, 12.5, null, null, true, "ok"]),
        );
    }
}

#[tokio::test]
async fn probe_finds_the_protocol_and_the_baud_rate() {
    let mut pty = pty();
    let codec = xk3190::Xk3190Codec::new(xk3190::Xk3190Format::Xor);
    let frame = enc(
        |f, o| codec.encode(f, o),
        &xk3190::Xk3190Frame {
            weight: Decimal::new(-1234, 1),
        },
    );
    let _device = streaming(&mut pty, frame, Some(4800));
    let out = bcpctl(&[
        "serial",
        "probe",
        "--port",
        &pty.path,
        "--listen-ms",
        "600",
        "--bauds",
        "9600,19200,4800,2400",
        "--framings",
        "8N1",
        "--json",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["protocol"], "xk3190", "{v}");
    assert_eq!(v["baud"], 4800, "{v}");
    assert_eq!(v["framing"], "8N1");
    assert!(v["frames"].as_u64().unwrap_or(0) >= 5, "{v}");
    assert_eq!(v["checksum_hits"], v["frames"]);
}

#[tokio::test]
async fn probe_asks_a_silent_port_the_polled_questions() {
    let mut pty = pty();
    let _device = polled(&mut pty, mt_sics_balance);
    let out = bcpctl(&[
        "serial",
        "probe",
        "--port",
        &pty.path,
        "--listen-ms",
        "600",
        "--bauds",
        "9600",
        "--framings",
        "8N1",
        "--json",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["protocol"], "mt-sics", "{v}");
}

#[tokio::test]
async fn probe_of_a_port_of_noise_says_so() {
    let mut pty = pty();
    let _device = streaming(&mut pty, b"ok".to_vec(), Some(1));
    let out = bcpctl(&[
        "serial",
        "probe",
        "--port",
        &pty.path,
        "--listen-ms",
        "300",
        "--bauds",
        "9600",
        "--framings",
        "8N1",
    ])
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&pty.path) && err.contains("no protocol matched"),
        "{err}"
    );
}

#[tokio::test]
async fn sniff_marks_frames_and_skipped_bytes() {
    let mut pty = pty();
    let mut bytes = b"#noise#".to_vec();
    bytes.extend(enc(
        rlws::encode,
        &rlws::RlwsFrame {
            weight: Decimal::new(12345, 1),
            unit: Unit::Kg,
            net: false,
            status: rlws::RlwsStatus::Valid,
        },
    ));
    let _device = streaming(&mut pty, bytes, None);
    let out = bcpctl(&[
        "serial",
        "sniff",
        "--port",
        &pty.path,
        "--protocol",
        "rlws",
        "--duration-ms",
        "400",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(
            |l| l.contains(" frame 02 20 20 31 32 33 34 2E 35 4B 47 20 0D 0A")
                && l.contains("Some(1234.5) kg Ok")
        ),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains(" skip  23 6E 6F 69 73 65 23")),
        "{text}"
    );
    // Without --protocol, sniff finds the protocol itself and says which.
    let out = bcpctl(&[
        "serial",
        "sniff",
        "--port",
        &pty.path,
        "--duration-ms",
        "500",
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("# marking rlws frames"), "{text}");
}

#[tokio::test]
async fn errors_name_the_port_and_the_protocols() {
    let out = bcpctl(&[
        "serial",
        "read",
        "--port",
        "/dev/nonexistent-bcp",
        "--protocol",
        "xk3190",
    ])
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/dev/nonexistent-bcp"));
    let out = bcpctl(&[
        "serial",
        "read",
        "--port",
        "/dev/null",
        "--protocol",
        "nope",
    ])
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("mt-sics"), "{err}");

    // A device that sends nothing the protocol understands: the error names the port and
    // points at the probe.
    let mut pty = pty();
    let _device = streaming(&mut pty, b"garbage that never frames".to_vec(), None);
    let out = bcpctl(&[
        "serial",
        "read",
        "--port",
        &pty.path,
        "--protocol",
        "xk3190",
        "--timeout-ms",
        "300",
    ])
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&pty.path) && err.contains("probe"),
        "{err}"
    );
}

#[tokio::test]
async fn unplugging_the_device_ends_a_read_with_an_error_naming_the_port() {
    let mut pty = pty();
    let mut master = pty.master.take().expect("a fresh pty");
    let codec = xk3190::Xk3190Codec::new(xk3190::Xk3190Format::Xor);
    let frame = enc(
        |f, o| codec.encode(f, o),
        &xk3190::Xk3190Frame {
            weight: Decimal::new(100, 0),
        },
    );
    let path = pty.path.clone();
    let read = tokio::spawn(async move {
        bcpctl(&[
            "serial",
            "read",
            "--port",
            &path,
            "--protocol",
            "xk3190",
            "--count",
            "1000",
        ])
        .await
    });
    for _ in 0..20 {
        master
            .write_all(&frame)
            .await
            .expect("the pty takes a frame");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(master);
    drop(pty);
    let out = read.await.expect("the reader task");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("/dev/pts/"), "{err}");
    assert!(
        !out.stdout.is_empty(),
        "readings before the unplug were printed"
    );
}

#[tokio::test]
async fn framing_and_flow_control_are_passed_to_the_port() {
    let mut pty = pty();
    let _device = streaming(&mut pty, b"WG004.139kg3D\r\n".to_vec(), None);
    let extra = [
        "--framing",
        "7E2",
        "--flow-control",
        "hardware",
        "--baud",
        "4800",
    ];
    for line in read_json(&pty, "a12e", &extra, 1).await {
        assert_eq!(line["weight_kg"], 4.139);
    }
    let out = bcpctl(&[
        "serial",
        "read",
        "--port",
        &pty.path,
        "--protocol",
        "a12e",
        "--flow-control",
        "rts",
    ])
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("none, software or hardware"),
        "{err}"
    );
    let out = bcpctl(&[
        "serial",
        "read",
        "--port",
        &pty.path,
        "--protocol",
        "a12e",
        "--framing",
        "9N1",
    ])
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("9N1"), "{err}");
}

/// `read --protocol sick-cola`: the simulated lane scanner (bcp-sim, its own geometry) passes a
/// truck under it; bcpctl decodes the telegrams and reports the vehicle's dimensions.
#[tokio::test]
async fn read_sick_cola_reports_each_vehicle() {
    use bcp_sim::indicators::PluggablePort;
    use bcp_sim::lms::{run_lms_scanner, LmsLane, LmsVehicle};
    let dir = tempfile::tempdir().expect("a temp dir");
    let link = dir.path().join("ttyLMS");
    let port = PluggablePort::open(&link).expect("a pty");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let _scanner = Device(tokio::spawn(async move {
        let _ = run_lms_scanner(port, LmsLane::default(), Duration::from_millis(2), rx, stop).await;
    }));
    let path = link.display().to_string();
    let read = tokio::spawn(async move {
        bcpctl(&[
            "serial",
            "read",
            "--port",
            &path,
            "--protocol",
            "sick-cola",
            "--count",
            "1",
            "--json",
            "--mount-height-mm",
            "6000",
            "--speed-mm-per-s",
            "2000",
        ])
        .await
    });
    // Let bcpctl open the port before the truck arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let truck = LmsVehicle {
        length_mm: 12_000.0,
        width_mm: 2_500.0,
        height_mm: 3_800.0,
        speed_mm_per_s: 2_000.0,
    };
    tx.send(truck).await.expect("the scanner takes vehicles");
    let out = read.await.expect("the bcpctl task");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["protocol"], "sick-cola");
    let mm = |k: &str| v[k].as_i64().unwrap_or(-1);
    assert!((mm("length_mm") - 12_000).abs() <= 40, "{v}");
    assert!((mm("width_mm") - 2_500).abs() <= 30, "{v}");
    assert!((mm("height_mm") - 3_800).abs() <= 5, "{v}");
}
