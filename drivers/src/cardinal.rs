//! Cardinal (Detecto) indicator stream format.
//!
//! Source: Rice Lake 680/682 manual, stream formats ("Cardinal"). See
//! `/work/shared/FIELD-NOTES.md`, "Other stream formats".
//!
//! # Byte layout (17 bytes)
//!
//! ```text
//! offset 0   1     2..8              8       9   10..12  12  13    14  15  16
//!        CR  POL   weight, 6 chars   STATUS  SP  UNIT    SP  g/n   SP  SP  ETX
//!            -/SP  right-aligned     SP m o      kg lb g  oz tn
//! ```
//!
//! * STATUS: space valid, `m` motion, `o` over/under range.
//! * UNIT (2 chars): `kg`, `lb`, `g ` (g + space), `oz`, `tn` (ton: not converted).
//! * `g` gross, `n` net (lowercase).
//!
//! Example (hand-written from the layout): `\r  12340  kg g  \x03` = 12340 kg gross, valid.
//!
//! # Resynchronisation
//!
//! CR starts a frame and occurs nowhere else in it; errors skip to the next CR.

use crate::frame::{FrameError, FrameErrorKind};
use crate::indicator::{Decimal, ScaleReading, ScaleStatus, Unit};

const CR: u8 = b'\r';
const ETX: u8 = 0x03;
/// Frame length on the wire.
pub const FRAME_LEN: usize = 17;
const UNITS: [(&[u8; 2], Unit); 5] = [
    (b"kg", Unit::Kg),
    (b"lb", Unit::Lb),
    (b"g ", Unit::G),
    (b"oz", Unit::Oz),
    (b"tn", Unit::Ton),
];

/// One Cardinal frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CardinalFrame {
    /// Signed (POL applied).
    pub weight: Decimal,
    pub motion: bool,
    pub out_of_range: bool,
    pub unit: Unit,
    pub net: bool,
}

impl CardinalFrame {
    pub fn reading(&self) -> ScaleReading {
        let mut r = ScaleReading::displayed(self.weight, self.unit, self.net, Some(self.motion));
        if self.out_of_range {
            r.status = if self.weight.mantissa < 0 {
                ScaleStatus::Underload
            } else {
                ScaleStatus::Overload
            };
        }
        r
    }
}

fn next_cr(buf: &[u8]) -> usize {
    buf.iter()
        .skip(1)
        .position(|&b| b == CR)
        .map_or(buf.len(), |p| p + 1)
}

/// Decode one frame from the front of `buf`.
pub fn decode(buf: &[u8]) -> Result<Option<(CardinalFrame, usize)>, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let reject = |kind| FrameError::new(next_cr(buf), kind);
    if first != CR {
        return Err(reject(FrameErrorKind::NoStart {
            expected: CR,
            found: first,
        }));
    }
    let avail = &buf[..buf.len().min(FRAME_LEN)];
    for (offset, &b) in avail.iter().enumerate().skip(1) {
        let ok = match offset {
            1 => b == b'-' || b == b' ',
            2..=7 => b.is_ascii_digit() || b == b'.' || b == b' ',
            8 => b" mo".contains(&b),
            9 | 12 | 14 | 15 => b == b' ',
            10 => UNITS.iter().any(|(t, _)| t[0] == b),
            11 => b.is_ascii_lowercase() || b == b' ',
            13 => b == b'g' || b == b'n',
            _ => b == ETX,
        };
        if !ok {
            return Err(reject(FrameErrorKind::BadStatus {
                name: "Cardinal frame",
                value: b,
            }));
        }
    }
    if avail.len() < FRAME_LEN {
        return Ok(None);
    }
    let mut weight = Decimal::parse(&avail[2..8]).ok_or_else(|| {
        reject(FrameErrorKind::Malformed {
            reason: "weight field",
        })
    })?;
    if avail[1] == b'-' {
        weight.mantissa = -weight.mantissa;
    }
    let unit = UNITS
        .iter()
        .find(|(t, _)| t[..] == avail[10..12])
        .map(|(_, u)| *u)
        .ok_or_else(|| reject(FrameErrorKind::Malformed { reason: "unit" }))?;
    let frame = CardinalFrame {
        weight,
        motion: avail[8] == b'm',
        out_of_range: avail[8] == b'o',
        unit,
        net: avail[13] == b'n',
    };
    Ok(Some((frame, FRAME_LEN)))
}

/// Append one frame; a weight that does not fit in 6 characters is written as `999999`. Motion
/// wins over out-of-range when both are set (the status byte holds one).
pub fn encode(frame: &CardinalFrame, out: &mut Vec<u8>) {
    out.push(CR);
    out.push(if frame.weight.mantissa < 0 {
        b'-'
    } else {
        b' '
    });
    let abs = Decimal::new(frame.weight.mantissa.abs(), frame.weight.decimals);
    out.extend(abs.padded(6, b' ').unwrap_or_else(|| b"999999".to_vec()));
    out.push(if frame.motion {
        b'm'
    } else if frame.out_of_range {
        b'o'
    } else {
        b' '
    });
    out.push(b' ');
    out.extend_from_slice(
        UNITS
            .iter()
            .find(|(_, u)| *u == frame.unit)
            .map_or(b"kg", |(t, _)| *t),
    );
    out.extend_from_slice(&[b' ', if frame.net { b'n' } else { b'g' }, b' ', b' ', ETX]);
}

/// As a [`crate::Protocol`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cardinal;

crate::codec::module_protocol!(Cardinal, CardinalFrame);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{assert_resyncs, assert_round_trip};
    use proptest::prelude::*;

    fn enc(f: &CardinalFrame) -> Vec<u8> {
        let mut out = Vec::new();
        encode(f, &mut out);
        out
    }

    #[test]
    fn layout_vectors() {
        let gross = CardinalFrame {
            weight: Decimal::new(12340, 0),
            motion: false,
            out_of_range: false,
            unit: Unit::Kg,
            net: false,
        };
        let v = b"\r  12340  kg g  \x03";
        assert_eq!(v.len(), FRAME_LEN);
        assert_round_trip(decode, v, &gross);
        assert_eq!(enc(&gross), v);
        let net = CardinalFrame {
            weight: Decimal::new(-255, 1),
            motion: true,
            out_of_range: false,
            unit: Unit::Kg,
            net: true,
        };
        assert_round_trip(decode, b"\r-  25.5m kg n  \x03", &net);
        assert_eq!(net.reading().net_kg, Some(-25.5));
        assert_eq!(net.reading().motion, Some(true));
        let grams = decode(b"\r    500  g  g  \x03")
            .expect("valid")
            .expect("complete")
            .0;
        assert_eq!(grams.reading().weight_kg, Some(0.5));
        assert!(decode(b"\r 12340  kg x  \x03").is_err());
    }

    fn arb_frame() -> impl Strategy<Value = CardinalFrame> {
        (
            (-99_999i64..=99_999, 0u8..=3),
            any::<bool>(),
            any::<bool>(),
            proptest::sample::select(UNITS.map(|(_, u)| u).to_vec()),
            any::<bool>(),
        )
            .prop_map(|((m, d), motion, oor, unit, net)| CardinalFrame {
                weight: Decimal::new(m, d),
                motion,
                out_of_range: oor && !motion,
                unit,
                net,
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
