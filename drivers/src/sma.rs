//! SMA SCP-0499 level 1: the Scale Manufacturers Association's serial protocol (polled).
//!
//! Source: SMA SCP-0499 (1999, modified 2005) as reproduced in the Fairbanks FB2550 manual,
//! app. III. See `/work/shared/FIELD-NOTES.md`, "SMA". Not to be confused with "SCP-01", a
//! different (Weigh-Tronix/NCI) protocol.
//!
//! # Requests
//!
//! `LF <c> CR`: `W` weight, `Z` zero, `T` tare, `M` tare... ([`encode_request`]). `S` makes the
//! scale stream weight replies (about 110 ms apart at 9600 baud).
//!
//! # Weight reply (20 bytes)
//!
//! ```text
//! offset 0   1   2   3   4   5   6..16              16..19   19
//!        LF  s   r   n   m   f   weight, 10 chars   unit     CR
//! ```
//!
//! * `s` status: `Z` centre of zero, `O` over capacity, `U` under capacity, `E` zero error,
//!   `I` initial zero error, `T` tare error, space: none of these.
//! * `r` range: `1`..`9` (multi-range scales), space on single-range ones; kept as sent.
//! * `n` mode: `G` gross, `N` net, `T` tare (lowercase `g`/`n`: high resolution).
//! * `m`: `M` in motion, space stable. `f`: reserved ("future"), written as space.
//! * weight: right-aligned `xxxxxx.xxx` with `-` for negative values; over/under capacity replies
//!   may carry any text here (the weight is then `None`).
//! * unit: `kg `, `lb `, `g  `, `t  `, `oz `, `tn ` (left-aligned, space-padded).
//!
//! Example (hand-written from the layout): `\n 1G      12.340kg \r` = 12.340 kg gross, stable.
//!
//! # Resynchronisation
//!
//! LF starts every reply and occurs nowhere else in it; errors skip to the next LF.

use crate::frame::{FrameError, FrameErrorKind};
use crate::indicator::{Decimal, ScaleReading, ScaleStatus, Unit};

const LF: u8 = b'\n';
const CR: u8 = b'\r';
/// Reply length on the wire.
pub const FRAME_LEN: usize = 20;

/// The status byte `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmaStatus {
    None,
    CentreOfZero,
    Overload,
    Underload,
    ZeroError,
    InitialZeroError,
    TareError,
}

impl SmaStatus {
    const TABLE: [(u8, SmaStatus); 7] = [
        (b' ', Self::None),
        (b'Z', Self::CentreOfZero),
        (b'O', Self::Overload),
        (b'U', Self::Underload),
        (b'E', Self::ZeroError),
        (b'I', Self::InitialZeroError),
        (b'T', Self::TareError),
    ];
    fn from_byte(b: u8) -> Option<Self> {
        Self::TABLE.iter().find(|(c, _)| *c == b).map(|(_, s)| *s)
    }
    fn byte(self) -> u8 {
        Self::TABLE
            .iter()
            .find(|(_, s)| *s == self)
            .map_or(b' ', |(c, _)| *c)
    }
}

/// One weight reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SmaFrame {
    pub status: SmaStatus,
    /// Range byte as sent (`b' '` or `b'1'..=b'9'`).
    pub range: u8,
    /// Mode byte: `G`, `N`, `T`, `g`, `n`.
    pub mode: u8,
    pub motion: bool,
    /// `None` when the field holds no number (over/under capacity).
    pub weight: Option<Decimal>,
    pub unit: Unit,
}

impl SmaFrame {
    pub fn reading(&self) -> ScaleReading {
        let status = match self.status {
            SmaStatus::None | SmaStatus::CentreOfZero => ScaleStatus::Ok,
            SmaStatus::Overload => ScaleStatus::Overload,
            SmaStatus::Underload => ScaleStatus::Underload,
            _ => ScaleStatus::Error,
        };
        let Some(weight) = self.weight else {
            return ScaleReading::status_only(status);
        };
        let net = self.mode.eq_ignore_ascii_case(&b'n');
        let mut r = ScaleReading::displayed(weight, self.unit, net, Some(self.motion));
        r.status = status;
        if self.mode == b'T' {
            r = ScaleReading {
                tare_kg: r.weight_kg,
                weight_kg: None,
                gross_kg: None,
                ..r
            };
        }
        r
    }
}

const UNITS: [(&[u8; 3], Unit); 6] = [
    (b"kg ", Unit::Kg),
    (b"lb ", Unit::Lb),
    (b"g  ", Unit::G),
    (b"t  ", Unit::T),
    (b"oz ", Unit::Oz),
    (b"tn ", Unit::Ton),
];

/// Append a request `LF c CR`.
pub fn encode_request(command: u8, out: &mut Vec<u8>) {
    out.extend_from_slice(&[LF, command, CR]);
}

/// Decode a request (the scale's side, used by the simulator): the command letter.
pub fn decode_request(buf: &[u8]) -> Result<Option<(u8, usize)>, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first != LF {
        return Err(FrameError::new(
            next_lf(buf),
            FrameErrorKind::NoStart {
                expected: LF,
                found: first,
            },
        ));
    }
    match buf.get(1..3) {
        None if buf.get(1).is_none_or(|b| b.is_ascii_uppercase()) => Ok(None),
        Some([c, CR]) if c.is_ascii_uppercase() => Ok(Some((*c, 3))),
        _ => Err(FrameError::new(
            next_lf(buf),
            FrameErrorKind::Malformed { reason: "request" },
        )),
    }
}

fn next_lf(buf: &[u8]) -> usize {
    buf.iter()
        .skip(1)
        .position(|&b| b == LF)
        .map_or(buf.len(), |p| p + 1)
}

/// Decode one weight reply from the front of `buf`.
pub fn decode(buf: &[u8]) -> Result<Option<(SmaFrame, usize)>, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let reject = |kind| FrameError::new(next_lf(buf), kind);
    if first != LF {
        return Err(reject(FrameErrorKind::NoStart {
            expected: LF,
            found: first,
        }));
    }
    let avail = &buf[..buf.len().min(FRAME_LEN)];
    for (offset, &b) in avail.iter().enumerate().skip(1) {
        let ok = match offset {
            1 => SmaStatus::from_byte(b).is_some(),
            2 => b == b' ' || (b'1'..=b'9').contains(&b),
            3 => b"GNTgn".contains(&b),
            4 => b == b'M' || b == b' ',
            5 => b == b' ',
            6..=18 => (0x20..0x7F).contains(&b),
            _ => b == CR,
        };
        if !ok {
            return Err(reject(if offset == FRAME_LEN - 1 {
                FrameErrorKind::MissingTerminator { offset, found: b }
            } else {
                FrameErrorKind::BadStatus {
                    name: "SMA reply",
                    value: b,
                }
            }));
        }
    }
    if avail.len() < FRAME_LEN {
        return Ok(None);
    }
    let status = SmaStatus::from_byte(avail[1]).unwrap_or(SmaStatus::None);
    let weight = Decimal::parse(&avail[6..16]);
    if weight.is_none() && !matches!(status, SmaStatus::Overload | SmaStatus::Underload) {
        return Err(reject(FrameErrorKind::Malformed {
            reason: "weight field",
        }));
    }
    let unit = UNITS
        .iter()
        .find(|(text, _)| &avail[16..19] == *text)
        .map(|(_, u)| *u)
        .ok_or_else(|| reject(FrameErrorKind::Malformed { reason: "unit" }))?;
    Ok(Some((
        SmaFrame {
            status,
            range: avail[2],
            mode: avail[3],
            motion: avail[4] == b'M',
            weight,
            unit,
        },
        FRAME_LEN,
    )))
}

/// Append one reply; a weight that does not fit in 10 characters, or none, is written as dashes.
pub fn encode(frame: &SmaFrame, out: &mut Vec<u8>) {
    out.extend_from_slice(&[
        LF,
        frame.status.byte(),
        frame.range,
        frame.mode,
        if frame.motion { b'M' } else { b' ' },
        b' ',
    ]);
    let field = frame.weight.and_then(|w| w.padded(10, b' '));
    out.extend(field.unwrap_or_else(|| b"----------".to_vec()));
    let unit = UNITS
        .iter()
        .find(|(_, u)| *u == frame.unit)
        .map_or(b"kg ", |(t, _)| *t);
    out.extend_from_slice(unit);
    out.push(CR);
}

/// Weight replies as a [`crate::Protocol`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sma;

crate::codec::module_protocol!(Sma, SmaFrame);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{assert_resyncs, assert_round_trip};
    use proptest::prelude::*;

    fn enc(f: &SmaFrame) -> Vec<u8> {
        let mut out = Vec::new();
        encode(f, &mut out);
        out
    }

    const GROSS: SmaFrame = SmaFrame {
        status: SmaStatus::None,
        range: b'1',
        mode: b'G',
        motion: false,
        weight: Some(Decimal::new(12340, 3)),
        unit: Unit::Kg,
    };

    #[test]
    fn layout_vectors() {
        let v = b"\n 1G      12.340kg \r";
        assert_eq!(v.len(), FRAME_LEN);
        assert_round_trip(decode, v, &GROSS);
        assert_eq!(enc(&GROSS), v);
        let r = GROSS.reading();
        assert_eq!(
            (r.weight_kg, r.gross_kg, r.motion),
            (Some(12.34), Some(12.34), Some(false))
        );

        let net_motion = b"\nZ NM     -0.020t  \r";
        let f = SmaFrame {
            status: SmaStatus::CentreOfZero,
            range: b' ',
            mode: b'N',
            motion: true,
            weight: Some(Decimal::new(-20, 3)),
            unit: Unit::T,
        };
        assert_round_trip(decode, net_motion, &f);
        assert_eq!(f.reading().net_kg, Some(-20.0));

        let over = b"\nO G  ----------kg \r";
        let f = decode(over).expect("valid").expect("complete").0;
        assert_eq!((f.status, f.weight), (SmaStatus::Overload, None));
        assert_eq!(f.reading().status, ScaleStatus::Overload);
        // A zero error with no number in the field is not a frame.
        assert!(decode(b"\nE G  ----------kg \r").is_err());
    }

    #[test]
    fn requests() {
        let mut out = Vec::new();
        encode_request(b'W', &mut out);
        assert_eq!(out, b"\nW\r");
        assert_eq!(decode_request(b"\nW\r\nZ\r"), Ok(Some((b'W', 3))));
        assert_eq!(decode_request(b"\nW"), Ok(None));
        assert_eq!(decode_request(b"x\nW\r").expect_err("garbage").skip, 1);
    }

    fn arb_frame() -> impl Strategy<Value = SmaFrame> {
        (
            proptest::sample::select(SmaStatus::TABLE.map(|(_, s)| s).to_vec()),
            proptest::sample::select(b" 123456789".to_vec()),
            proptest::sample::select(b"GNTgn".to_vec()),
            any::<bool>(),
            (-99_999_999i64..=999_999_999, 0u8..=3),
            proptest::sample::select(UNITS.map(|(_, u)| u).to_vec()),
        )
            .prop_map(|(status, range, mode, motion, (m, d), unit)| SmaFrame {
                status,
                range,
                mode,
                motion,
                weight: Some(Decimal::new(m, d)),
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
