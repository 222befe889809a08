//! Test vectors written out by hand from the byte layout in the module header, then the
//! round-trip and resynchronisation properties.

use super::*;
use proptest::prelude::*;

const PLAIN: ToledoCodec = ToledoCodec { checksum: false };
const WITH_CHECKSUM: ToledoCodec = ToledoCodec { checksum: true };

fn gross_kg(weight_digits: u32, decimal: DecimalPosition, increment: u8) -> ToledoFrame {
    ToledoFrame {
        weight_digits,
        tare_digits: 0,
        decimal,
        increment,
        net: false,
        negative: false,
        out_of_range: false,
        motion: false,
        unit_kg: true,
        not_zeroed_at_power_up: false,
        swc: 0x20,
    }
}

fn decode_one(codec: ToledoCodec, bytes: &[u8]) -> ToledoFrame {
    match codec.decode(bytes) {
        Ok(Some((frame, consumed))) => {
            assert_eq!(consumed, bytes.len());
            frame
        }
        other => panic!("expected a frame from {bytes:02X?}, got {other:?}"),
    }
}

fn encoded(codec: ToledoCodec, frame: &ToledoFrame) -> Vec<u8> {
    let mut out = Vec::new();
    codec.encode(frame, &mut out);
    out
}

/// 12340 kg gross, x1, no decimals, stable.
/// SWA = 0x20 | 01<<3 | 010 = 0x2A '*'; SWB = 0x20 | kg 0x10 = 0x30 '0'; SWC = 0x20.
/// Sum of the 17 bytes = 0x2D3; checksum = -0x2D3 & 0x7F = 0x2D '-'.
const V_GROSS: &[u8] = b"\x02*0 012340000000\r";
const V_GROSS_CS: &[u8] = b"\x02*0 012340000000\r-";

#[test]
fn gross_weight_vector() {
    let expected = gross_kg(12340, DecimalPosition::Decimals0, 1);
    assert_eq!(decode_one(PLAIN, V_GROSS), expected);
    assert_eq!(decode_one(WITH_CHECKSUM, V_GROSS_CS), expected);
    assert_eq!(encoded(PLAIN, &expected), V_GROSS);
    assert_eq!(encoded(WITH_CHECKSUM, &expected), V_GROSS_CS);
    assert_eq!(expected.weight_kg(), Some(12340.0));
    assert_eq!(expected.tare_kg(), Some(0.0));
    assert_eq!(expected.division_kg(), 1.0);
}

/// Net -40 kg in motion, tare 15000 kg, x2.
/// SWA = 0x20 | 10<<3 | 010 = 0x32 '2'; SWB = 0x20 | net 1 | neg 2 | motion 8 | kg 0x10 = 0x3B ';'.
/// Sum = 0x2E6; checksum = 0x1A.
const V_NET_NEG_MOTION_CS: &[u8] = b"\x022; 000040015000\r\x1a";

#[test]
fn net_negative_motion_vector() {
    let frame = decode_one(WITH_CHECKSUM, V_NET_NEG_MOTION_CS);
    let expected = ToledoFrame {
        tare_digits: 15000,
        net: true,
        negative: true,
        motion: true,
        ..gross_kg(40, DecimalPosition::Decimals0, 2)
    };
    assert_eq!(frame, expected);
    assert_eq!(frame.weight_kg(), Some(-40.0));
    assert_eq!(frame.tare_kg(), Some(15000.0));
    assert_eq!(frame.division_kg(), 2.0);
    assert_eq!(
        frame.reading(),
        Some(WeightReading {
            weight_kg: -40.0,
            division_kg: 2.0,
            motion: Some(true)
        })
    );
    assert_eq!(encoded(WITH_CHECKSUM, &expected), V_NET_NEG_MOTION_CS);
}

/// Out of range, lb, x5, one decimal: SWA = 0x20 | 11<<3 | 011 = 0x3B ';'; SWB = 0x20 | 4 = 0x24 '$'.
#[test]
fn out_of_range_in_lb_vector() {
    let frame = decode_one(PLAIN, b"\x02;$ 999999000000\r");
    assert!(frame.out_of_range);
    assert!(!frame.unit_kg);
    assert_eq!(frame.increment, 5);
    assert_eq!(frame.decimal, DecimalPosition::Decimals1);
    assert_eq!(frame.weight_kg(), None);
    assert_eq!(frame.tare_kg(), None);
    assert_eq!(frame.reading(), None);
    assert_eq!(frame.division_kg(), 0.5);
    // In range but lb: still not a kg reading.
    let lb = decode_one(PLAIN, b"\x02;  000100000000\r");
    assert!(!lb.out_of_range);
    assert_eq!(lb.weight_kg(), None);
}

/// Power-up zero not captured: SWB = 0x20 | kg 0x10 | 0x40 = 0x70 'p'.
#[test]
fn power_up_not_zeroed_vector() {
    let frame = decode_one(PLAIN, b"\x02*p 000000000000\r");
    assert!(frame.not_zeroed_at_power_up);
    assert_eq!(frame.weight_kg(), Some(0.0));
}

/// Each of the eight decimal codes, x1 (SWA 0x28..=0x2F = `( ) * + , - . /`), digits `123456`.
/// Codes 000 and 001 carry the dummy zeros in the digits: the value is read as whole units.
#[test]
fn every_decimal_code() {
    let cases: [(&[u8], DecimalPosition, f64, f64); 8] = [
        (
            b"\x02(0 123400000000\r",
            DecimalPosition::DummyZeros2,
            123400.0,
            100.0,
        ),
        (
            b"\x02)0 123450000000\r",
            DecimalPosition::DummyZeros1,
            123450.0,
            10.0,
        ),
        (
            b"\x02*0 123456000000\r",
            DecimalPosition::Decimals0,
            123456.0,
            1.0,
        ),
        (
            b"\x02+0 123456000000\r",
            DecimalPosition::Decimals1,
            12345.6,
            0.1,
        ),
        (
            b"\x02,0 123456000000\r",
            DecimalPosition::Decimals2,
            1234.56,
            0.01,
        ),
        (
            b"\x02-0 123456000000\r",
            DecimalPosition::Decimals3,
            123.456,
            0.001,
        ),
        (
            b"\x02.0 123456000000\r",
            DecimalPosition::Decimals4,
            12.3456,
            0.0001,
        ),
        (
            b"\x02/0 123456000000\r",
            DecimalPosition::Decimals5,
            1.23456,
            0.00001,
        ),
    ];
    for (bytes, decimal, kg, division) in cases {
        let frame = decode_one(PLAIN, bytes);
        assert_eq!(frame.decimal, decimal, "{bytes:02X?}");
        assert_eq!(frame.weight_kg(), Some(kg), "{bytes:02X?}");
        assert_eq!(frame.division_kg(), division, "{bytes:02X?}");
        assert_eq!(encoded(PLAIN, &frame), bytes);
    }
}

/// A 60 t bridge with 20 kg divisions shown as `XXXXX0` x2: 12340 kg is sent as `012340`.
/// SWA = 0x20 | 10<<3 | 001 = 0x31 '1'.
#[test]
fn dummy_zero_weighbridge() {
    let frame = decode_one(PLAIN, b"\x0210 012340000000\r");
    assert_eq!(frame.decimal, DecimalPosition::DummyZeros1);
    assert_eq!(frame.weight_digits, 12340);
    assert_eq!(frame.weight_kg(), Some(12340.0));
    assert_eq!(frame.division_kg(), 20.0);
    // x5 with two dummy zeros: 500 kg divisions. SWA = 0x20 | 11<<3 | 000 = 0x38 '8'.
    let coarse = decode_one(PLAIN, b"\x0280 012500000000\r");
    assert_eq!(coarse.weight_kg(), Some(12500.0));
    assert_eq!(coarse.division_kg(), 500.0);
}

/// IND245 right-aligns with spaces; Rice Lake may set bit 7 of the status bytes as parity.
#[test]
fn leading_spaces_and_parity_bit() {
    let frame = decode_one(PLAIN, b"\x02\xaa\xb0    120      \r");
    assert_eq!(frame, gross_kg(120, DecimalPosition::Decimals0, 1));
    // Space after a digit is not a number.
    assert!(PLAIN.decode(b"\x02*0 01 340000000\r").is_err());
}

#[test]
fn checksum_mismatch_is_an_error() {
    let mut bad = V_GROSS_CS.to_vec();
    bad[17] = 0x2E;
    let err = WITH_CHECKSUM
        .decode(&bad)
        .expect_err("checksum must be checked");
    assert_eq!(
        err.kind,
        FrameErrorKind::Checksum {
            computed: 0x2D,
            received: 0x2E
        }
    );
    assert_eq!(err.skip, bad.len(), "no later STX: drop everything");
    // A flipped digit is caught too.
    let mut flipped = V_GROSS_CS.to_vec();
    flipped[8] = b'5';
    assert!(matches!(
        WITH_CHECKSUM.decode(&flipped),
        Err(FrameError {
            kind: FrameErrorKind::Checksum { .. },
            ..
        })
    ));
}

#[test]
fn incomplete_frames_need_more_bytes() {
    for len in 0..V_GROSS.len() {
        assert_eq!(PLAIN.decode(&V_GROSS[..len]), Ok(None), "prefix {len}");
    }
    assert_eq!(WITH_CHECKSUM.decode(V_GROSS), Ok(None));
}

#[test]
fn malformed_frames_say_where_to_resume() {
    // SWA without bit 5.
    let err = PLAIN
        .decode(b"\x02\x0a0 012340000000\r")
        .expect_err("bad SWA");
    assert!(matches!(
        err.kind,
        FrameErrorKind::BadStatus { name: "SWA", .. }
    ));
    // SWA increment code 00.
    assert!(PLAIN.decode(b"\x02\x220 012340000000\r").is_err());
    // SWB without bit 5.
    assert!(PLAIN.decode(b"\x02*\x10 012340000000\r").is_err());
    // No CR: rejected, resume at the next STX (offset 17).
    let err = PLAIN
        .decode(b"\x02*0 012340000000X\x02*0 ")
        .expect_err("no CR");
    assert_eq!(err.skip, 17);
    // Leading noise: skip to the STX.
    let err = PLAIN.decode(b"ab\x02*0").expect_err("noise");
    assert_eq!(err.skip, 2);
    // A false STX is rejected as soon as a later byte contradicts it.
    let err = PLAIN.decode(b"\x02\x02*0 0").expect_err("false STX");
    assert_eq!(err.skip, 1);
}

fn arb_frame() -> impl Strategy<Value = ToledoFrame> {
    (
        (
            0u32..=999_999,
            0u32..=999_999,
            0u8..8,
            prop::sample::select(vec![1u8, 2, 5]),
        ),
        any::<[bool; 6]>(),
        any::<u8>(),
    )
        .prop_map(|((weight, tare, dp, increment), flags, swc)| ToledoFrame {
            weight_digits: weight,
            tare_digits: tare,
            decimal: DecimalPosition::from_bits(dp),
            increment,
            net: flags[0],
            negative: flags[1],
            out_of_range: flags[2],
            motion: flags[3],
            unit_kg: flags[4],
            not_zeroed_at_power_up: flags[5],
            swc,
        })
}

proptest! {
    #[test]
    fn round_trip(frame in arb_frame(), checksum in any::<bool>()) {
        let codec = ToledoCodec { checksum };
        let bytes = encoded(codec, &frame);
        prop_assert_eq!(bytes.len(), codec.frame_len());
        prop_assert_eq!(codec.decode(&bytes), Ok(Some((frame, bytes.len()))));
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64), checksum in any::<bool>()) {
        let _ = ToledoCodec { checksum }.decode(&bytes);
    }

    /// Garbage followed by a valid frame: feeding the decoder as a caller does (skip on error)
    /// always ends with that frame.
    #[test]
    fn resynchronises_after_garbage(
        garbage in prop::collection::vec(any::<u8>(), 0..64),
        frame in arb_frame(),
        checksum in any::<bool>(),
    ) {
        let codec = ToledoCodec { checksum };
        let mut buf = garbage;
        codec.encode(&frame, &mut buf);
        let mut pos = 0;
        let mut last = None;
        while pos < buf.len() {
            match codec.decode(&buf[pos..]) {
                Ok(Some((f, n))) => { last = Some(f); pos += n; }
                Ok(None) => break,
                Err(e) => { prop_assert!(e.skip >= 1); pos += e.skip; }
            }
        }
        prop_assert_eq!(pos, buf.len());
        prop_assert_eq!(last, Some(frame));
    }
}
