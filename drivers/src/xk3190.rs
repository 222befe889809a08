//! Keli / Yaohua XK3190 family indicators (XK3190-A9, -A12, -A26 ...): the continuous outputs most
//! weighbridges in Central Asia send.
//!
//! Sources: Nikcell XK3190-A26 manual pp. 10-13; XK3190-A9 manual p. 10; Yaohua A12E manual p. 13.
//! See `/work/shared/FIELD-NOTES.md`, "XK3190 family". The format is a menu setting of the
//! indicator, so it is part of the configuration ([`Xk3190Format`]), not guessed per frame.
//!
//! # Format 0 ([`Xk3190Format::Xor`], 12 bytes)
//!
//! ```text
//! offset  0    1     2..8          8          9        10       11
//!         STX  sign  6 digits      decimals   XOR hi   XOR lo   ETX
//!         0x02 +/-   high first    '0'..'4'   ASCII    ASCII    0x03
//! ```
//!
//! XOR of bytes 1..=8 (sign, digits, decimals); each nibble is sent as ASCII: `+0x30` when <= 9,
//! else `+0x37` (`'A'..'F'`). Example (hand-computed): +12.34 = `02 2B 30 30 31 32 33 34 32 31 44
//! 03` (XOR 0x1D).
//!
//! # Formats 1 and 2 (9 bytes, no terminator)
//!
//! `=` + the 8-character display text: sign (only when negative), digits, the decimal point.
//! Format 1 ([`Xk3190Format::Reversed`]) sends the text **reversed**: 3.000 -> `=000.3000`,
//! -1.00 -> `=00.1000-` (A26 manual). Format 2 ([`Xk3190Format::Normal`]) sends it in reading
//! order: `=0003.000`, `=-0001.00`.
//!
//! The unit is not transmitted; it is the indicator's setting, kg on every weighbridge we know of,
//! so readings are taken as kg.
//!
//! # Resynchronisation
//!
//! STX (format 0) and `=` (formats 1, 2) occur nowhere else in a frame; each byte is checked as it
//! arrives and an error skips to the next start byte, so garbage never swallows a real frame.

use crate::frame::{FrameError, FrameErrorKind};
use crate::indicator::{Decimal, ScaleReading, Unit};

const STX: u8 = 0x02;
const ETX: u8 = 0x03;
const EQ: u8 = b'=';
const FORMAT0_LEN: usize = 12;
const FORMAT12_LEN: usize = 9;
/// Largest magnitude the 6-digit field of format 0 holds.
pub const MAX_MANTISSA: i64 = 999_999;

/// Which continuous format the indicator is set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Xk3190Format {
    /// Format 0: STX, sign, 6 digits, decimals, XOR check, ETX.
    Xor,
    /// Format 1: `=` and the display text reversed.
    Reversed,
    /// Format 2: `=` and the display text in reading order.
    Normal,
}

/// One weight from an XK3190 indicator (the displayed weight, unit kg).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Xk3190Frame {
    pub weight: Decimal,
}

impl Xk3190Frame {
    /// The displayed weight; the protocol says neither gross/net nor motion.
    pub fn reading(&self) -> ScaleReading {
        let mut r = ScaleReading::displayed(self.weight, Unit::Kg, false, None);
        r.gross_kg = None;
        r
    }
}

/// Decoder/encoder for one format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Xk3190Codec {
    pub format: Xk3190Format,
}

impl Xk3190Codec {
    pub const fn new(format: Xk3190Format) -> Self {
        Self { format }
    }

    fn start(&self) -> u8 {
        match self.format {
            Xk3190Format::Xor => STX,
            _ => EQ,
        }
    }

    /// Frame length on the wire.
    pub fn frame_len(&self) -> usize {
        match self.format {
            Xk3190Format::Xor => FORMAT0_LEN,
            _ => FORMAT12_LEN,
        }
    }

    /// Decode one frame from the front of `buf` (see the crate's decoder contract).
    pub fn decode(&self, buf: &[u8]) -> Result<Option<(Xk3190Frame, usize)>, FrameError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let start = self.start();
        let reject = |kind| {
            let skip = buf
                .iter()
                .skip(1)
                .position(|&b| b == start)
                .map_or(buf.len(), |p| p + 1);
            FrameError::new(skip, kind)
        };
        if first != start {
            return Err(reject(FrameErrorKind::NoStart {
                expected: start,
                found: first,
            }));
        }
        let len = self.frame_len();
        let avail = &buf[..buf.len().min(len)];
        for (offset, &b) in avail.iter().enumerate().skip(1) {
            let ok = match (self.format, offset) {
                (Xk3190Format::Xor, 1) => b == b'+' || b == b'-',
                (Xk3190Format::Xor, 2..=7) => b.is_ascii_digit(),
                (Xk3190Format::Xor, 8) => (b'0'..=b'4').contains(&b),
                (Xk3190Format::Xor, 9 | 10) => b.is_ascii_digit() || (b'A'..=b'F').contains(&b),
                (Xk3190Format::Xor, _) => b == ETX,
                (_, _) => b.is_ascii_digit() || b == b'.' || b == b'-',
            };
            if !ok {
                return Err(reject(if offset == FORMAT0_LEN - 1 {
                    FrameErrorKind::MissingTerminator { offset, found: b }
                } else {
                    FrameErrorKind::BadDigit { offset, value: b }
                }));
            }
        }
        if avail.len() < len {
            return Ok(None);
        }
        let weight = match self.format {
            Xk3190Format::Xor => {
                let computed = xor(&avail[1..9]);
                let received = (hex_value(avail[9]) << 4) | hex_value(avail[10]);
                if computed != received {
                    return Err(reject(FrameErrorKind::Checksum { computed, received }));
                }
                let mut digits = Decimal::parse(&avail[2..8]).ok_or_else(|| {
                    reject(FrameErrorKind::Malformed {
                        reason: "weight digits",
                    })
                })?;
                if avail[1] == b'-' {
                    digits.mantissa = -digits.mantissa;
                }
                Decimal::new(digits.mantissa, avail[8] - b'0')
            }
            Xk3190Format::Reversed => {
                let text: Vec<u8> = avail[1..].iter().rev().copied().collect();
                Decimal::parse(&text).ok_or_else(|| {
                    reject(FrameErrorKind::Malformed {
                        reason: "display text",
                    })
                })?
            }
            Xk3190Format::Normal => Decimal::parse(&avail[1..]).ok_or_else(|| {
                reject(FrameErrorKind::Malformed {
                    reason: "display text",
                })
            })?,
        };
        Ok(Some((Xk3190Frame { weight }, len)))
    }

    /// Append one frame. Format 0 clamps the magnitude to 999999 and the decimals to 4; formats
    /// 1 and 2 write `=` and eight `9`s (or `-999999.`-like overflow) when the text does not fit.
    pub fn encode(&self, frame: &Xk3190Frame, out: &mut Vec<u8>) {
        let w = frame.weight;
        match self.format {
            Xk3190Format::Xor => {
                let start = out.len();
                out.push(STX);
                out.push(if w.mantissa < 0 { b'-' } else { b'+' });
                let digits = Decimal::new(w.mantissa.abs().min(MAX_MANTISSA), 0);
                // Six digits always fit after the clamp above.
                out.extend(digits.padded(6, b'0').unwrap_or_else(|| b"999999".to_vec()));
                out.push(b'0' + w.decimals.min(4));
                let x = xor(&out[start + 1..]);
                out.extend_from_slice(&[hex_digit(x >> 4), hex_digit(x & 0x0F), ETX]);
            }
            Xk3190Format::Reversed | Xk3190Format::Normal => {
                let mut text = w.padded(8, b'0').unwrap_or_else(|| b"99999999".to_vec());
                if self.format == Xk3190Format::Reversed {
                    text.reverse();
                }
                out.push(EQ);
                out.extend_from_slice(&text);
            }
        }
    }
}

fn xor(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |x, &b| x ^ b)
}

/// Nibble to ASCII as the manual says: `+0x30` when <= 9, else `+0x37`.
pub(crate) fn hex_digit(nibble: u8) -> u8 {
    if nibble <= 9 {
        nibble + 0x30
    } else {
        nibble + 0x37
    }
}

/// Inverse of [`hex_digit`] for a byte already checked to be `0-9` or `A-F`.
pub(crate) fn hex_value(b: u8) -> u8 {
    if b <= b'9' {
        b.wrapping_sub(0x30)
    } else {
        b.wrapping_sub(0x37)
    }
}

impl crate::codec::Protocol for Xk3190Codec {
    type Frame = Xk3190Frame;
    fn decode(&self, buf: &[u8]) -> Result<Option<(Xk3190Frame, usize)>, FrameError> {
        Xk3190Codec::decode(self, buf)
    }
    fn encode(&self, frame: &Xk3190Frame, out: &mut Vec<u8>) {
        Xk3190Codec::encode(self, frame, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{assert_resyncs, assert_round_trip};
    use proptest::prelude::*;

    const F0: Xk3190Codec = Xk3190Codec::new(Xk3190Format::Xor);
    const F1: Xk3190Codec = Xk3190Codec::new(Xk3190Format::Reversed);
    const F2: Xk3190Codec = Xk3190Codec::new(Xk3190Format::Normal);

    fn frame(mantissa: i64, decimals: u8) -> Xk3190Frame {
        Xk3190Frame {
            weight: Decimal::new(mantissa, decimals),
        }
    }

    fn enc(codec: Xk3190Codec, f: &Xk3190Frame) -> Vec<u8> {
        let mut out = Vec::new();
        codec.encode(f, &mut out);
        out
    }

    /// +12.34: XOR of `+0012342` = 0x1D -> '1' 'D'.
    const V0: &[u8] = b"\x02+0012342\x31\x44\x03";
    /// -500.1 kg: XOR of `-0050011` = 0x18 -> '1' '8'.
    const V0_NEG: &[u8] = b"\x02-0050011\x31\x38\x03";

    #[test]
    fn format0_vectors() {
        for (bytes, f) in [(V0, frame(1234, 2)), (V0_NEG, frame(-5001, 1))] {
            assert_round_trip(|b| F0.decode(b), bytes, &f);
            assert_eq!(enc(F0, &f), bytes);
        }
        assert_eq!(frame(1234, 2).reading().weight_kg, Some(12.34));
        assert_eq!(frame(-5001, 1).reading().division_kg, Some(0.1));
    }

    #[test]
    fn format0_bad_xor_is_rejected_and_skips_to_next_stx() {
        let mut bad = V0.to_vec();
        bad[10] = b'E';
        let err = F0.decode(&bad).expect_err("bad check");
        assert!(matches!(
            err.kind,
            FrameErrorKind::Checksum {
                computed: 0x1D,
                received: 0x1E
            }
        ));
        assert_eq!(err.skip, bad.len());
    }

    /// The manual's own examples of format 1.
    #[test]
    fn format1_manual_examples() {
        assert_round_trip(|b| F1.decode(b), b"=000.3000", &frame(3000, 3));
        assert_round_trip(|b| F1.decode(b), b"=00.1000-", &frame(-100, 2));
        assert_eq!(enc(F1, &frame(3000, 3)), b"=000.3000");
        assert_eq!(enc(F1, &frame(-100, 2)), b"=00.1000-");
    }

    #[test]
    fn format2_is_format1_in_reading_order() {
        assert_round_trip(|b| F2.decode(b), b"=0003.000", &frame(3000, 3));
        assert_round_trip(|b| F2.decode(b), b"=-0001.00", &frame(-100, 2));
        assert_eq!(enc(F2, &frame(24680, 0)), b"=00024680");
        // Two points, or a sign in the middle, are not a weight.
        assert!(F2.decode(b"=00.3.000").is_err());
        assert!(F2.decode(b"=000-3000").is_err());
    }

    #[test]
    fn partial_frames_need_more_bytes() {
        for codec in [F0, F1, F2] {
            let bytes = enc(codec, &frame(-1234, 1));
            for cut in 0..bytes.len() {
                assert_eq!(codec.decode(&bytes[..cut]), Ok(None));
            }
        }
    }

    fn arb_frame() -> impl Strategy<Value = Xk3190Frame> {
        (-MAX_MANTISSA..=MAX_MANTISSA, 0u8..=4).prop_map(|(m, d)| frame(m, d))
    }

    fn arb_codec() -> impl Strategy<Value = Xk3190Codec> {
        prop_oneof![Just(F0), Just(F1), Just(F2)]
    }

    proptest! {
        #[test]
        fn round_trip(codec in arb_codec(), f in arb_frame()) {
            assert_round_trip(|b| codec.decode(b), &enc(codec, &f), &f);
        }

        #[test]
        fn garbage_resynchronises(codec in arb_codec(), garbage in proptest::collection::vec(any::<u8>(), 0..40),
                                  a in arb_frame(), b in arb_frame()) {
            assert_resyncs(|x| codec.decode(x), &garbage, &enc(codec, &a), &enc(codec, &b), &b);
        }
    }
}
