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
//! * Weight: display text with the decimal point, zero-padded (`004.139`), `-` in the first
//!   position for negative values; without a decimal point the last of the 7 bytes is a space
//!   (`002456 `).
//! * Check: XOR of bytes 0..=10, each nibble as an ASCII hex digit (`+0x30` when <= 9, else
//!   `+0x37`).
//! * Overload (gross > Max + 9e): 9 spaces, `OL`, check, CR LF (` OL23`); below -20 divisions:
//!   9 spaces, `LO`, check, CR LF. No `W`, no unit ([`A12eWeight`]).
//!
//! The manual's examples: `57 47 30 30 34 2E 31 33 39 6B 67 33 44 0D 0A` = `WG004.139kg3D` =
//! 4.139 kg gross (the XOR of its first 11 bytes is 0x3D); overload = 9 x `20`, `4F 4C 32 33 0D
//! 0A`.
//!
//! # Resynchronisation
//!
//! `W` starts a weight frame and a space an overload/underload frame; `W` occurs nowhere else,
//! and a space inside a weight frame is followed by `k`, so a false start is rejected at once.
//! Errors skip to the next `W` or space.

use crate::frame::{FrameError, FrameErrorKind};
use crate::indicator::{Decimal, ScaleReading, ScaleStatus, Unit};
use crate::xk3190::{hex_digit, hex_value};

const START: u8 = b'W';
const BLANK: u8 = b' ';
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
        .position(|&b| b == START || b == BLANK)
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
    if first != START && first != BLANK {
        return Err(reject(FrameErrorKind::NoStart {
            expected: START,
            found: first,
        }));
    }
    let status_frame = first == BLANK;
    let avail = &buf[..buf.len().min(FRAME_LEN)];
    for (offset, &b) in avail.iter().enumerate().skip(1) {
        let ok = match (status_frame, offset) {
            (true, 1..=8) => b == BLANK,
            (true, 9) => b == b'O' || b == b'L',
            (true, 10) => b == if avail[9] == b'O' { b'L' } else { b'O' },
            (false, 1) => b == b'G' || b == b'N',
            (false, 2..=8) => b.is_ascii_digit() || b == b'.' || b == b'-' || b == BLANK,
            (false, 9) => b == b'k',
            (false, 10) => b == b'g',
            (_, 11 | 12) => b.is_ascii_digit() || (b'A'..=b'F').contains(&b),
            (_, 13) => b == b'\r',
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
    let (net, weight) = match (status_frame, avail[9]) {
        (true, b'O') => (false, A12eWeight::Overload),
        (true, _) => (false, A12eWeight::Underload),
        (false, _) => (
            avail[1] == b'N',
            A12eWeight::Value(Decimal::parse(&avail[2..9]).ok_or_else(|| {
                reject(FrameErrorKind::Malformed {
                    reason: "weight field",
                })
            })?),
        ),
    };
    Ok(Some((A12eFrame { net, weight }, FRAME_LEN)))
}

/// Append one frame. A weight that does not fit the 7 bytes is sent as overload; overload and
/// underload frames carry neither `W`, G/N nor a unit (so `net` is not sent with them).
pub fn encode(frame: &A12eFrame, out: &mut Vec<u8>) {
    let start = out.len();
    let field = match frame.weight {
        // Six digits and a blank as the manual shows; a seventh digit, which the decoder
        // accepts, takes the blank's place (found by fuzzing: `WN6666660kg`).
        A12eWeight::Value(w) if w.decimals == 0 => w
            .padded(6, b'0')
            .map(|mut f| {
                f.push(BLANK);
                f
            })
            .or_else(|| w.padded(7, b'0')),
        A12eWeight::Value(w) => w.padded(7, b'0'),
        A12eWeight::Overload | A12eWeight::Underload => None,
    };
    match (field, frame.weight) {
        (Some(field), _) => {
            out.push(START);
            out.push(if frame.net { b'N' } else { b'G' });
            out.extend_from_slice(&field);
            out.extend_from_slice(b"kg");
        }
        (None, A12eWeight::Underload) => {
            out.extend_from_slice(&[BLANK; 9]);
            out.extend_from_slice(b"LO");
        }
        (None, _) => {
            out.extend_from_slice(&[BLANK; 9]);
            out.extend_from_slice(b"OL");
        }
    }
    let x = xor(&out[start..]);
    out.extend_from_slice(&[hex_digit(x >> 4), hex_digit(x & 0x0F), b'\r', b'\n']);
}

/// As a [`crate::Protocol`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct A12e;

crate::codec::module_protocol!(A12e, A12eFrame);

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

    /// Integer weights end in a blank: `WG002456 kg`, XOR 0x39 (hand-computed).
    #[test]
    fn integer_weight_has_a_trailing_blank() {
        let f = A12eFrame {
            net: false,
            weight: A12eWeight::Value(Decimal::new(2456, 0)),
        };
        assert_eq!(enc(&f), b"WG002456 kg39\r\n");
        assert_round_trip(decode, b"WG002456 kg39\r\n", &f);
        let neg = A12eFrame {
            net: true,
            weight: A12eWeight::Value(Decimal::new(-2456, 0)),
        };
        assert_round_trip(decode, b"WN-02456 kg2D\r\n", &neg);
        assert_eq!(neg.reading().net_kg, Some(-2456.0));
    }

    /// Found by fuzzing: seven integer digits decode, so they must encode back the same.
    #[test]
    fn seven_integer_digits_round_trip() {
        let f = A12eFrame {
            net: true,
            weight: A12eWeight::Value(Decimal::new(6_666_660, 0)),
        };
        let bytes = enc(&f);
        assert_eq!(&bytes[..11], b"WN6666660kg");
        assert_round_trip(decode, &bytes, &f);
    }

    /// The manual's overload frame (9 blanks, `OL`, check `23`) and the underload one.
    #[test]
    fn overload_and_underload() {
        let over = b"         OL23\r\n";
        let under = b"         LO23\r\n";
        for (bytes, w, status) in [
            (over, A12eWeight::Overload, ScaleStatus::Overload),
            (under, A12eWeight::Underload, ScaleStatus::Underload),
        ] {
            let f = A12eFrame {
                net: false,
                weight: w,
            };
            assert_round_trip(decode, bytes, &f);
            assert_eq!(enc(&f), bytes);
            assert_eq!(f.reading().status, status);
        }
        // Blanks before a weight frame are skipped, not taken for a status frame.
        let mut bytes = b"   ".to_vec();
        bytes.extend_from_slice(&MANUAL);
        assert_eq!(crate::testkit::decode_all(decode, &bytes).len(), 1);
    }

    fn arb_frame() -> impl Strategy<Value = A12eFrame> {
        let weight = prop_oneof![
            (-99_999i64..=999_999, 0u8..=3)
                .prop_map(|(m, d)| A12eWeight::Value(Decimal::new(m, d))),
            (-999_999i64..=9_999_999).prop_map(|m| A12eWeight::Value(Decimal::new(m, 0))),
            Just(A12eWeight::Overload),
            Just(A12eWeight::Underload),
        ];
        (any::<bool>(), weight).prop_map(|(net, weight)| A12eFrame {
            // Status frames do not carry G/N.
            net: net && matches!(weight, A12eWeight::Value(_)),
            weight,
        })
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
