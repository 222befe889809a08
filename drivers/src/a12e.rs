//! Yaohua XK3190-A12E continuous output.
//!
//! Source: Yaohua A12E manual p. 13. See `/work/shared/FIELD-NOTES.md`, "XK3190 family".
//!
//! # Byte layout (15 bytes)
//!
//! ```text
//! offset 0   1     2..9              9..11  11       12       13  14
//!        W   G/N   weight, 7 chars   kg     XOR hi   XOR lo   CR  LF
//! ```
//!
//! * Weight: display text with the decimal point, zero-padded (`004.139`), `-` for negative;
//!   `OL` in the field: overload, `LO`: below -20 divisions ([`A12eWeight`]).
//! * Check: XOR of bytes 0..=10 (`W` through `kg`), each nibble as an ASCII hex digit, uppercase.
//!
//! The manual's example: `57 47 30 30 34 2E 31 33 39 6B 67 33 44 0D 0A` = `WG004.139kg3D` =
//! 4.139 kg gross; the XOR of its first 11 bytes is 0x3D.
//!
//! # Resynchronisation
//!
//! `W` starts a frame and occurs nowhere else in it; errors skip to the next `W`.

use crate::frame::{FrameError, FrameErrorKind};
use crate::indicator::{Decimal, ScaleReading, ScaleStatus, Unit};
use crate::xk3190::{hex_digit, hex_value};

const START: u8 = b'W';
/// Frame length on the wire.
pub const FRAME_LEN: usize = 15;

/// What the weight field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum A12eWeight {
    Value(Decimal),
    /// `OL`.
    Overload,
    /// `LO`: below -20 divisions.
    Underload,
}

/// One A12E frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct A12eFrame {
    pub net: bool,
    pub weight: A12eWeight,
}

impl A12eFrame {
    pub fn reading(&self) -> ScaleReading {
        match self.weight {
            A12eWeight::Value(w) => ScaleReading::displayed(w, Unit::Kg, self.net, None),
            A12eWeight::Overload => ScaleReading::status_only(ScaleStatus::Overload),
            A12eWeight::Underload => ScaleReading::status_only(ScaleStatus::Underload),
        }
    }
}

fn next_start(buf: &[u8]) -> usize {
    buf.iter()
        .skip(1)
        .position(|&b| b == START)
        .map_or(buf.len(), |p| p + 1)
}

fn xor(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |x, &b| x ^ b)
}

/// Decode one frame from the front of `buf`.
pub fn decode(buf: &[u8]) -> Result<Option<(A12eFrame, usize)>, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let reject = |kind| FrameError::new(next_start(buf), kind);
    if first != START {
        return Err(reject(FrameErrorKind::NoStart {
            expected: START,
            found: first,
        }));
    }
    let avail = &buf[..buf.len().min(FRAME_LEN)];
    for (offset, &b) in avail.iter().enumerate().skip(1) {
        let ok = match offset {
            1 => b == b'G' || b == b'N',
            2..=8 => b.is_ascii_digit() || b". -OL".contains(&b),
            9 => b == b'k',
            10 => b == b'g',
            11 | 12 => b.is_ascii_digit() || (b'A'..=b'F').contains(&b),
            13 => b == b'\r',
            _ => b == b'\n',
        };
        if !ok {
            return Err(reject(FrameErrorKind::BadStatus {
                name: "A12E frame",
                value: b,
            }));
        }
    }
    if avail.len() < FRAME_LEN {
        return Ok(None);
    }
    let computed = xor(&avail[..11]);
    let received = (hex_value(avail[11]) << 4) | hex_value(avail[12]);
    if computed != received {
        return Err(reject(FrameErrorKind::Checksum { computed, received }));
    }
    let field = &avail[2..9];
    let weight = match field
        .iter()
        .filter(|&&b| b != b' ')
        .copied()
        .collect::<Vec<u8>>()
        .as_slice()
    {
        b"OL" => A12eWeight::Overload,
        b"LO" => A12eWeight::Underload,
        _ => A12eWeight::Value(Decimal::parse(field).ok_or_else(|| {
            reject(FrameErrorKind::Malformed {
                reason: "weight field",
            })
        })?),
    };
    Ok(Some((
        A12eFrame {
            net: avail[1] == b'N',
            weight,
        },
        FRAME_LEN,
    )))
}

/// Append one frame; a weight that does not fit in 7 characters is sent as `OL`.
pub fn encode(frame: &A12eFrame, out: &mut Vec<u8>) {
    let start = out.len();
    out.push(START);
    out.push(if frame.net { b'N' } else { b'G' });
    let field = match frame.weight {
        A12eWeight::Value(w) => w.padded(7, b'0'),
        A12eWeight::Overload => None,
        A12eWeight::Underload => Some(b"     LO".to_vec()),
    };
    out.extend(field.unwrap_or_else(|| b"     OL".to_vec()));
    out.extend_from_slice(b"kg");
    let x = xor(&out[start..]);
    out.extend_from_slice(&[hex_digit(x >> 4), hex_digit(x & 0x0F), b'\r', b'\n']);
}

/// As a [`crate::Protocol`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct A12e;

impl crate::codec::Protocol for A12e {
    type Frame = A12eFrame;
    fn decode(&self, buf: &[u8]) -> Result<Option<(A12eFrame, usize)>, FrameError> {
        decode(buf)
    }
    fn encode(&self, frame: &A12eFrame, out: &mut Vec<u8>) {
        encode(frame, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{assert_resyncs, assert_round_trip};
    use proptest::prelude::*;

    fn enc(f: &A12eFrame) -> Vec<u8> {
        let mut out = Vec::new();
        encode(f, &mut out);
        out
    }

    /// The manual's example, byte for byte.
    const MANUAL: [u8; 15] = [
        0x57, 0x47, 0x30, 0x30, 0x34, 0x2E, 0x31, 0x33, 0x39, 0x6B, 0x67, 0x33, 0x44, 0x0D, 0x0A,
    ];

    #[test]
    fn manual_example() {
        let f = A12eFrame {
            net: false,
            weight: A12eWeight::Value(Decimal::new(4139, 3)),
        };
        assert_round_trip(decode, &MANUAL, &f);
        assert_eq!(enc(&f), MANUAL);
        assert_eq!(f.reading().gross_kg, Some(4.139));
        let mut bad = MANUAL;
        bad[12] = b'E';
        assert!(matches!(
            decode(&bad).expect_err("bad check").kind,
            FrameErrorKind::Checksum {
                computed: 0x3D,
                received: 0x3E
            }
        ));
    }

    #[test]
    fn overload_and_underload() {
        for (w, status) in [
            (A12eWeight::Overload, ScaleStatus::Overload),
            (A12eWeight::Underload, ScaleStatus::Underload),
        ] {
            let f = A12eFrame {
                net: false,
                weight: w,
            };
            let bytes = enc(&f);
            assert_round_trip(decode, &bytes, &f);
            assert_eq!(f.reading().status, status);
        }
    }

    fn arb_frame() -> impl Strategy<Value = A12eFrame> {
        let weight = prop_oneof![
            (-99_999i64..=999_999, 0u8..=3)
                .prop_map(|(m, d)| A12eWeight::Value(Decimal::new(m, d))),
            Just(A12eWeight::Overload),
            Just(A12eWeight::Underload),
        ];
        (any::<bool>(), weight).prop_map(|(net, weight)| A12eFrame { net, weight })
    }

    proptest! {
        #[test]
        fn round_trip(f in arb_frame()) {
            assert_round_trip(decode, &enc(&f), &f);
        }

        #[test]
        fn garbage_resynchronises(garbage in proptest::collection::vec(any::<u8>(), 0..60),
                                  a in arb_frame(), b in arb_frame()) {
            assert_resyncs(decode, &garbage, &enc(&a), &enc(&b), &b);
        }
    }
}
