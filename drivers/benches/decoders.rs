//! Decoder throughput per protocol, and the time from the deciding frame's last byte to the
//! `StableWeight` event.
//!
//! `cargo bench -p bcp-drivers --bench decoders` (a plain binary: `harness = false`).
//!
//! * Throughput: ~4 MiB of back-to-back frames per protocol, decoded as the driver does (through
//!   `AnyProtocol`, i.e. into the common `ScaleReading`), best of 5 passes.
//! * Decision, pure: decode the deciding frame + stability detector, in process.
//! * Decision, through a pseudo-terminal: `run_weighbridge` reads a pty; the bench writes the
//!   deciding frame on the master side and waits for `WeighEvent::Stable`: kernel pty, tokio,
//!   codec and detector included.

use std::time::{Duration, Instant};

use bcp_drivers::indicator::{AnyProtocol, Decimal, Measurement, Unit};
use bcp_drivers::serial::{run_weighbridge, DeviceEvent, SerialPortConfig};
use bcp_drivers::stability::{StabilityConfig, StabilityDetector, WeighEvent};
use bcp_drivers::tokio_serial::{SerialPort, SerialStream};
use bcp_drivers::toledo::{DecimalPosition, ToledoCodec, ToledoFrame};
use bcp_drivers::{a12e, avery, cardinal, dims_ascii, mt_sics, rlws, sma, xk3190};
use tokio::io::AsyncWriteExt;

const TARGET_BYTES: usize = 4 << 20;

fn toledo_frame(weight_digits: u32, motion: bool) -> ToledoFrame {
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

/// One frame of `name` for weight `i`.
fn frame(name: &str, i: u32, out: &mut Vec<u8>) {
    let w = Decimal::new(i64::from(i % 90_000), 0);
    match name {
        "toledo-continuous" => {
            ToledoCodec { checksum: false }.encode(&toledo_frame(i % 90_000, false), out)
        }
        "toledo-continuous-checksum" => {
            ToledoCodec { checksum: true }.encode(&toledo_frame(i % 90_000, false), out)
        }
        "xk3190" | "xk3190-f1" | "xk3190-f2" => {
            let Ok(AnyProtocol::Xk3190(c)) = AnyProtocol::parse(name, None) else {
                unreachable!("xk3190 names parse to the xk3190 codec")
            };
            c.encode(&xk3190::Xk3190Frame { weight: w }, out)
        }
        "xk3190-a9" => bcp_drivers::xk3190_a9::encode_reply(
            &bcp_drivers::xk3190_a9::A9Reply {
                address: b'A',
                command: bcp_drivers::xk3190_a9::A9Command::Gross,
                value: Some(w),
            },
            out,
        ),
        "mt-sics" => mt_sics::encode_reply(
            &mt_sics::MtSicsReply::Weight {
                command: "S".into(),
                dynamic: false,
                weight: w,
                unit: "kg".into(),
            },
            out,
        ),
        "sma" => sma::encode(
            &sma::SmaFrame {
                status: sma::SmaStatus::None,
                range: b'1',
                mode: b'G',
                motion: false,
                weight: Some(w),
                unit: Unit::Kg,
            },
            out,
        ),
        "rlws" => rlws::encode(
            &rlws::RlwsFrame {
                weight: w,
                unit: Unit::Kg,
                net: false,
                status: rlws::RlwsStatus::Valid,
            },
            out,
        ),
        "cardinal" => cardinal::encode(
            &cardinal::CardinalFrame {
                weight: w,
                motion: false,
                out_of_range: false,
                unit: Unit::Kg,
                net: false,
            },
            out,
        ),
        "avery" => avery::encode(
            &avery::AveryFrame {
                net: false,
                weight: w,
                unit: Unit::Kg,
            },
            out,
        ),
        "a12e" => a12e::encode(
            &a12e::A12eFrame {
                net: false,
                weight: a12e::A12eWeight::Value(w),
            },
            out,
        ),
        "generic" => out.extend_from_slice(format!("ST,GS,+{:07}kg\r\n", i % 90_000).as_bytes()),
        "dims-ascii" => dims_ascii::encode(
            &dims_ascii::DimensionFrame {
                seq: i,
                length_mm: 16_500,
                width_mm: 2_550,
                height_mm: 4_000,
            },
            out,
        ),
        other => unreachable!("no frame for {other}"),
    }
}

const GENERIC: &str =
    r"^(?P<motion>US)?(?:ST)?,(?:GS|NT),(?P<weight>[+-]?[0-9.]+)(?P<unit>kg|g|t)$";

fn throughput() {
    println!("## Decoder throughput (AnyProtocol -> Measurement, best of 5 passes over ~4 MiB)\n");
    println!("| protocol | frame bytes | MB/s | ns/frame |");
    println!("|---|---|---|---|");
    for name in AnyProtocol::NAMES {
        let protocol =
            AnyProtocol::parse(name, Some(GENERIC)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut bytes = Vec::new();
        let mut i = 0;
        while bytes.len() < TARGET_BYTES {
            frame(name, i, &mut bytes);
            i += 1;
        }
        let frames = u64::from(i);
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let start = Instant::now();
            let (mut pos, mut ok, mut sum) = (0, 0u64, 0f64);
            while pos < bytes.len() {
                match protocol.decode_measurement(&bytes[pos..]) {
                    Ok(Some((m, n))) => {
                        if let Measurement::Weight(r) = &m {
                            sum += r.weight_kg.unwrap_or(0.0);
                        }
                        ok += 1;
                        pos += n;
                    }
                    Ok(None) => break,
                    Err(e) => pos += e.skip,
                }
            }
            best = best.min(start.elapsed());
            assert_eq!(ok, frames, "{name}: every frame decodes");
            std::hint::black_box(sum);
        }
        let mb_s = bytes.len() as f64 / best.as_secs_f64() / 1e6;
        let ns = best.as_nanos() as f64 / frames as f64;
        println!(
            "| `{name}` | {} | {mb_s:.0} | {ns:.0} |",
            bytes.len() / frames as usize
        );
    }
}

fn stability_config() -> StabilityConfig {
    StabilityConfig {
        min_duration: Duration::ZERO,
        ..StabilityConfig::default()
    }
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Decode of the deciding frame + detector, in process.
fn decision_pure() {
    let codec = ToledoCodec { checksum: true };
    let mut samples = Vec::new();
    for round in 0..20_000u32 {
        let mut det = StabilityDetector::new(stability_config());
        let t0 = Instant::now();
        let weight = 20_000 + (round % 1000) * 20;
        let mut wire = Vec::new();
        codec.encode(&toledo_frame(weight, false), &mut wire);
        for k in 0..4 {
            let (f, _) = codec.decode(&wire).ok().flatten().expect("valid frame");
            det.handle_reading(
                t0 + Duration::from_millis(k * 100),
                f.reading().expect("kg reading"),
            );
            while det.poll().is_some() {}
        }
        let start = Instant::now();
        let (f, _) = codec.decode(&wire).ok().flatten().expect("valid frame");
        det.handle_reading(
            t0 + Duration::from_millis(400),
            f.reading().expect("kg reading"),
        );
        let stable = std::iter::from_fn(|| det.poll()).any(|e| matches!(e, WeighEvent::Stable(_)));
        samples.push(start.elapsed());
        assert!(stable, "the fifth reading decides");
    }
    let median = percentile(&mut samples, 0.5);
    let p99 = percentile(&mut samples, 0.99);
    println!("\n## Deciding frame -> StableWeight\n");
    println!("| path | median | p99 | max |");
    println!("|---|---|---|---|");
    println!(
        "| pure: decode + detector (20000 rounds) | {median:?} | {p99:?} | {:?} |",
        samples[samples.len() - 1]
    );
}

/// Through a pty and the real driver task.
async fn decision_pty() {
    let (mut master, slave) = SerialStream::pair().expect("a pseudo-terminal pair");
    let path = slave.name().expect("slave path");
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let health = Default::default();
    let codec = ToledoCodec { checksum: true };
    let port = SerialPortConfig {
        path,
        ..SerialPortConfig::default()
    };
    tokio::spawn(run_weighbridge(
        "bench-bridge".into(),
        port,
        codec,
        stability_config(),
        tx,
        health,
        stop,
    ));
    let mut samples = Vec::new();
    let mut wire = Vec::new();
    for round in 0..300u32 {
        let weight = 20_000 + (round % 1000) * 20;
        // Empty bridge, then four readings of the vehicle; the fifth decides.
        for w in [0, weight, weight, weight, weight] {
            wire.clear();
            codec.encode(&toledo_frame(w, false), &mut wire);
            master.write_all(&wire).await.expect("pty write");
        }
        // Let the driver take those in before timing the deciding frame.
        loop {
            match tokio::time::timeout(Duration::from_millis(30), rx.recv()).await {
                Ok(Some(DeviceEvent::Weigh(WeighEvent::Stable(_)))) => panic!("decided early"),
                Ok(Some(_)) => {}
                Ok(None) => panic!("driver stopped"),
                Err(_) => break,
            }
        }
        wire.clear();
        codec.encode(&toledo_frame(weight, false), &mut wire);
        master.write_all(&wire).await.expect("pty write");
        let start = Instant::now();
        loop {
            match rx.recv().await {
                Some(DeviceEvent::Weigh(WeighEvent::Stable(_))) => break,
                Some(_) => {}
                None => panic!("driver stopped"),
            }
        }
        samples.push(start.elapsed());
    }
    drop(slave);
    let median = percentile(&mut samples, 0.5);
    let p99 = percentile(&mut samples, 0.99);
    println!(
        "| pty -> `run_weighbridge` -> event channel (300 rounds) | {median:?} | {p99:?} | {:?} |",
        samples[samples.len() - 1]
    );
}

fn main() {
    throughput();
    decision_pure();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(decision_pty());
}
