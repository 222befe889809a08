//! Avery Weigh-Tronix indicator stream format.
//!
//! Source: Rice Lake 680/682 manual, stream formats ("Weigh-Tronix"). See
//! `/work/shared/FIELD-NOTES.md`, "Other stream formats".
//!
//! # Byte layout (14 bytes)
//!
//! ```text
//! offset 0   1     2     3..9              9   10..12   12  13
//!        SP  G/N   POL   weight, 6 chars   SP  UNIT     CR  LF
//!                  -/SP  right-aligned         kg lb g  oz tn
//! ```
//!
//! No status and no motion flag: the stability rule alone decides (see [`crate::stability`]).
//! Example (hand-written from the layout): ` G  12340 kg\r\n` = 12340 kg gross.
//!
//! # Resynchronisation
//!
//! The frame starts with a space, which also pads the weight; a candidate start is rejected as
//! soon as a byte breaks the layout (the byte after it must be `G` or `N`) and the decoder skips
//! to the next space. A real frame is never skipped over: garbage costs at most the frame it runs
//! into.

use crate::frame::{FrameError, FrameErrorKind};
use crate::indicator::{Decimal, ScaleReading, Unit};

const SP: u8 = b' ';
/// Frame length on the wire.
pub const FRAME_LEN: usize = 14;
const UNITS: [(&[u8; 2], Unit); 5] = [
    (b"kg", Unit::Kg),
    (b"lb", Unit::Lb),
    (b"g ", Unit::G),
    (b"oz", Unit::Oz),
    (b"tn", Unit::Ton),
];

/// One Weigh-Tronix frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AveryFrame {
    pub net: bool,
    /// Signed (POL applied).
    pub weight: Decimal,
    pub unit: Unit,
}

impl AveryFrame {
    pub fn reading(&self) -> ScaleReading {
        ScaleReading::displayed(self.weight, self.unit, self.net, None)
    }
}

fn next_sp(buf: &[u8]) -> usize {
    buf.iter()
        .skip(1)
        .position(|&b| b == SP)
        .map_or(buf.len(), |p| p + 1)
}

/// Decode one frame from the front of `buf`.
pub fn decode(buf: &[u8]) -> Result<Option<(AveryFrame, usize)>, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let reject = |kind| FrameError::new(next_sp(buf), kind);
    if first != SP {
        return Err(reject(FrameErrorKind::NoStart {
            expected: SP,
            found: first,
        }));
    }
    let avail = &buf[..buf.len().min(FRAME_LEN)];
    for (offset, &b) in avail.iter().enumerate().skip(1) {
        let ok = match offset {
            1 => b == b'G' || b == b'N',
            2 => b == b'-' || b == SP,
            3..=8 => b.is_ascii_digit() || b == b'.' || b == SP,
            9 => b == SP,
            10 => UNITS.iter().any(|(t, _)| t[0] == b),
            11 => b.is_ascii_lowercase() || b == SP,
            12 => b == b'\r',
            _ => b == b'\n',
        };
        if !ok {
            return Err(reject(FrameErrorKind::BadStatus {
                name: "Weigh-Tronix frame",
                value: b,
            }));
        }
    }
    if avail.len() < FRAME_LEN {
        return Ok(None);
    }
    let mut weight = Decimal::parse(&avail[3..9]).ok_or_else(|| {
        reject(FrameErrorKind::Malformed {
            reason: "weight field",
        })
    })?;
    if avail[2] == b'-' {
        weight.mantissa = -weight.mantissa;
    }
    let unit = UNITS
        .iter()
        .find(|(t, _)| t[..] == avail[10..12])
        .map(|(_, u)| *u)
        .ok_or_else(|| reject(FrameErrorKind::Malformed { reason: "unit" }))?;
    Ok(Some((
        AveryFrame {
            net: avail[1] == b'N',
            weight,
            unit,
        },
        FRAME_LEN,
    )))
}

/// Append one frame; a weight that does not fit in 6 characters is written as `999999`.
pub fn encode(frame: &AveryFrame, out: &mut Vec<u8>) {
    out.extend_from_slice(&[
        SP,
        if frame.net { b'N' } else { b'G' },
        if frame.weight.mantissa < 0 { b'-' } else { SP },
    ]);
    let abs = Decimal::new(frame.weight.mantissa.abs(), frame.weight.decimals);
    out.extend(abs.padded(6, SP).unwrap_or_else(|| b"999999".to_vec()));
    out.push(SP);
    out.extend_from_slice(
        UNITS
            .iter()
            .find(|(_, u)| *u == frame.unit)
            .map_or(b"kg", |(t, _)| *t),
    );
    out.extend_from_slice(b"\r\n");
}

/// As a [`crate::Protocol`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Avery;

crate::codec::module_protocol!(Avery, AveryFrame);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{assert_resyncs, assert_round_trip};
    use proptest::prelude::*;

    fn enc(f: &AveryFrame) -> Vec<u8> {
        let mut out = Vec::new();
        encode(f, &mut out);
        out
    }

    #[test]
    fn layout_vectors() {
        let gross = AveryFrame {
            net: false,
            weight: Decimal::new(12340, 0),
            unit: Unit::Kg,
        };
        let v = b" G  12340 kg\r\n";
        assert_eq!(v.len(), FRAME_LEN);
        assert_round_trip(decode, v, &gross);
        assert_eq!(enc(&gross), v);
        assert_eq!(gross.reading().gross_kg, Some(12340.0));
        assert_eq!(gross.reading().motion, None);
        let net = AveryFrame {
            net: true,
            weight: Decimal::new(-125, 2),
            unit: Unit::Kg,
        };
        assert_round_trip(decode, b" N-  1.25 kg\r\n", &net);
        assert_eq!(net.reading().net_kg, Some(-1.25));
        // Garbage spaces before a frame are skipped one candidate at a time.
        let mut bytes = b"  9 ".to_vec();
        bytes.extend_from_slice(v);
        assert_eq!(crate::testkit::decode_all(decode, &bytes), vec![gross]);
    }

    fn arb_frame() -> impl Strategy<Value = AveryFrame> {
        (
            any::<bool>(),
            (-99_999i64..=99_999, 0u8..=3),
            proptest::sample::select(UNITS.map(|(_, u)| u).to_vec()),
        )
            .prop_map(|(net, (m, d), unit)| AveryFrame {
                net,
                weight: Decimal::new(m, d),
                unit,
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
