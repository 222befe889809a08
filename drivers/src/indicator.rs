//! Any protocol by name: one reading shape for every weighing indicator and dimension system.
//!
//! Each protocol module decodes its own frame type, fields as transmitted. This module is the
//! common layer above them, so that the serial driver and `bcpctl serial` can pick a protocol by
//! the name a technician types ([`AnyProtocol::parse`], [`AnyProtocol::NAMES`]) and get one
//! [`Measurement`] per frame:
//!
//! * [`ScaleReading`]: the displayed weight in kg, gross/tare/net where the protocol says which,
//!   the indicator's motion flag where it has one, and a [`ScaleStatus`];
//! * [`DimensionFrame`] for dimension systems;
//! * [`Measurement::Other`] for replies that carry no measurement (an MT-SICS `Z A`, `@` reply).
//!
//! Still pure: [`AnyProtocol`] implements [`Protocol`] (bytes in, frames out, no clock), so
//! [`crate::ProtocolCodec`] wraps it like any other protocol.
//!
//! # Units
//!
//! Metric units are converted exactly (g / 1000, t x 1000). Pounds, ounces and an ambiguous "ton"
//! are not converted: `weight_kg` is `None` and the frame's own unit stays in the protocol's frame
//! type. A customs weighbridge set to anything but metric is a setup error for the operator to see
//! (the same rule as [`crate::ToledoFrame::weight_kg`]).
//!
//! # Polled protocols
//!
//! MT-SICS, SMA and the XK3190 command mode answer requests; [`AnyProtocol::poll_request`] gives
//! the bytes to send before each reading (`SI`, `W`, gross from address 01), `None` for
//! protocols that stream. `xk3190-a9` asks address 01 (the factory setting).

use crate::codec::Protocol;
use crate::dims_ascii::{self, DimensionFrame};
use crate::frame::FrameError;
use crate::generic::GenericCodec;
use crate::stability::WeightReading;
use crate::toledo::{ToledoCodec, ToledoFrame};
use crate::{a12e, avery, cardinal, mt_sics, rlws, sma, xk3190, xk3190_a9};

/// A decimal number exactly as a device sent it: `mantissa / 10^decimals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Decimal {
    pub mantissa: i64,
    pub decimals: u8,
}

/// 10^`n`, from a table where it is exact (n <= 22; `powi` costs a call per reading).
fn pow10(n: u8) -> f64 {
    const EXACT: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    EXACT
        .get(usize::from(n))
        .copied()
        .unwrap_or_else(|| 10f64.powi(i32::from(n)))
}

impl Decimal {
    pub const fn new(mantissa: i64, decimals: u8) -> Self {
        Self { mantissa, decimals }
    }

    pub fn to_f64(self) -> f64 {
        // Integer divided by an exact power of ten: the correctly rounded value.
        self.mantissa as f64 / pow10(self.decimals)
    }

    /// One unit of the last transmitted digit: the display division when the device says nothing
    /// better.
    pub fn last_digit(self) -> f64 {
        1.0 / pow10(self.decimals)
    }

    /// Parse a field: optional spaces, optional sign (`+`/`-`), digits with at most one `.`,
    /// optional spaces. At least one digit before the point (displays write `0.5`, and `.5`
    /// could not be written back the same); at most 18 digits.
    pub fn parse(field: &[u8]) -> Option<Self> {
        let text = trim_spaces(field);
        let (negative, body) = match text.first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (mut mantissa, mut decimals, mut digits, mut dot) = (0i64, 0u8, 0u8, false);
        for &b in body {
            match b {
                b'0'..=b'9' if digits < 18 => {
                    mantissa = mantissa * 10 + i64::from(b - b'0');
                    digits += 1;
                    decimals += u8::from(dot);
                }
                b'.' if !dot && digits > 0 => dot = true,
                _ => return None,
            }
        }
        (digits > 0).then_some(Self {
            mantissa: if negative { -mantissa } else { mantissa },
            decimals,
        })
    }

    /// `-12.340` style text: sign only when negative, `decimals` digits after the point, at least
    /// one digit before it.
    pub fn plain(self) -> String {
        let abs = self.mantissa.unsigned_abs();
        let sign = if self.mantissa < 0 { "-" } else { "" };
        if self.decimals == 0 {
            return format!("{sign}{abs}");
        }
        let scale = 10u64.pow(u32::from(self.decimals));
        let width = usize::from(self.decimals);
        format!("{sign}{}.{:0width$}", abs / scale, abs % scale)
    }

    /// [`Self::plain`] right-aligned in `width` bytes, padded with `pad` after the sign; `None`
    /// when it does not fit.
    pub fn padded(self, width: usize, pad: u8) -> Option<Vec<u8>> {
        let text = self.plain();
        let (sign, body) = match text.strip_prefix('-') {
            Some(body) if pad == b'0' => ("-", body),
            _ => ("", text.as_str()),
        };
        let len = sign.len() + body.len();
        if len > width {
            return None;
        }
        let mut out = sign.as_bytes().to_vec();
        out.resize(width - body.len(), pad);
        out.extend_from_slice(body.as_bytes());
        Some(out)
    }
}

fn trim_spaces(field: &[u8]) -> &[u8] {
    let start = field.iter().position(|&b| b != b' ').unwrap_or(field.len());
    let end = field
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |p| p + 1);
    &field[start..end]
}

/// A weighing unit as a protocol names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Kg,
    G,
    /// Metric tonne.
    T,
    Lb,
    Oz,
    /// "Ton" without saying which (short or metric): not converted.
    Ton,
}

impl Unit {
    /// `value` in kg, for metric units only. Grams and tonnes move the decimal point, so the
    /// result is the correctly rounded value of the exact decimal (2.486 g is 0.002486 kg).
    pub fn to_kg(self, value: Decimal) -> Option<f64> {
        match self {
            Self::Kg => Some(value.to_f64()),
            Self::G => {
                Some(Decimal::new(value.mantissa, value.decimals.saturating_add(3)).to_f64())
            }
            Self::T if value.decimals >= 3 => {
                Some(Decimal::new(value.mantissa, value.decimals - 3).to_f64())
            }
            Self::T => Some(value.mantissa as f64 * 10f64.powi(3 - i32::from(value.decimals))),
            Self::Lb | Self::Oz | Self::Ton => None,
        }
    }

    /// Factor from this unit to kg, metric only.
    pub fn kg_factor(self) -> Option<f64> {
        self.to_kg(Decimal::new(1, 0))
    }
}

/// What the indicator says about the weight it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleStatus {
    Ok,
    Overload,
    Underload,
    /// The indicator reports an error (zero error, tare error, invalid data, command error).
    Error,
}

/// One reading from a weighing indicator, whatever its protocol.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ScaleReading {
    /// The displayed weight (gross or net), signed; `None` out of range or in a non-metric unit.
    pub weight_kg: Option<f64>,
    pub gross_kg: Option<f64>,
    pub tare_kg: Option<f64>,
    pub net_kg: Option<f64>,
    /// The indicator's own motion flag; `None` when the protocol has none.
    pub motion: Option<bool>,
    pub status: ScaleStatus,
    /// One display division in kg, when known (else the last transmitted digit).
    pub division_kg: Option<f64>,
}

impl ScaleReading {
    /// A reading of `status` with nothing else known.
    pub fn status_only(status: ScaleStatus) -> Self {
        Self {
            weight_kg: None,
            gross_kg: None,
            tare_kg: None,
            net_kg: None,
            motion: None,
            status,
            division_kg: None,
        }
    }

    /// A displayed weight; `net` says whether it is the net (else gross) weight.
    pub fn displayed(weight: Decimal, unit: Unit, net: bool, motion: Option<bool>) -> Self {
        let kg = unit.to_kg(weight);
        Self {
            weight_kg: kg,
            gross_kg: if net { None } else { kg },
            tare_kg: None,
            net_kg: if net { kg } else { None },
            motion,
            status: ScaleStatus::Ok,
            division_kg: unit.kg_factor().map(|f| weight.last_digit() * f),
        }
    }

    /// The input of the stability detector: only a valid weight in kg is one.
    pub fn weight_reading(&self) -> Option<WeightReading> {
        if self.status != ScaleStatus::Ok {
            return None;
        }
        Some(WeightReading {
            weight_kg: self.weight_kg?,
            division_kg: self.division_kg.unwrap_or(1.0),
            motion: self.motion,
        })
    }
}

impl From<&ToledoFrame> for ScaleReading {
    fn from(f: &ToledoFrame) -> Self {
        let weight = f.weight_kg();
        let status = if f.out_of_range {
            // The frame does not say which side: over capacity is the one that matters.
            if f.negative {
                ScaleStatus::Underload
            } else {
                ScaleStatus::Overload
            }
        } else {
            ScaleStatus::Ok
        };
        let tare = if f.net { f.tare_kg() } else { None };
        Self {
            weight_kg: weight,
            gross_kg: if f.net {
                weight.zip(tare).map(|(n, t)| n + t)
            } else {
                weight
            },
            tare_kg: tare,
            net_kg: if f.net { weight } else { None },
            motion: Some(f.motion),
            status,
            division_kg: f.unit_kg.then(|| f.division_kg()),
        }
    }
}

/// What one frame says.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum Measurement {
    Weight(ScaleReading),
    Dimensions(DimensionFrame),
    /// A reply that carries no measurement, as text.
    Other(String),
}

/// A protocol chosen by name at run time.
#[derive(Debug, Clone)]
pub enum AnyProtocol {
    Toledo(ToledoCodec),
    Xk3190(xk3190::Xk3190Codec),
    /// XK3190 command mode, polled at this address byte (`b'A'` = address 01).
    Xk3190A9 {
        address: u8,
    },
    MtSics,
    Sma,
    Rlws,
    Cardinal,
    Avery,
    A12e,
    Generic(Box<GenericCodec>),
    DimsAscii,
}

impl AnyProtocol {
    /// Every name [`Self::parse`] accepts (`generic` also needs a pattern).
    pub const NAMES: [&'static str; 14] = [
        "toledo-continuous",
        "toledo-continuous-checksum",
        "xk3190",
        "xk3190-f1",
        "xk3190-f2",
        "xk3190-a9",
        "mt-sics",
        "sma",
        "rlws",
        "cardinal",
        "avery",
        "a12e",
        "generic",
        "dims-ascii",
    ];

    /// The protocol a technician or a config file names. `generic` needs `pattern`, a regex with
    /// named groups (see [`crate::generic`]).
    pub fn parse(name: &str, pattern: Option<&str>) -> Result<Self, String> {
        use xk3190::{Xk3190Codec, Xk3190Format};
        Ok(match name {
            "toledo-continuous" => Self::Toledo(ToledoCodec { checksum: false }),
            "toledo-continuous-checksum" => Self::Toledo(ToledoCodec { checksum: true }),
            "xk3190" => Self::Xk3190(Xk3190Codec::new(Xk3190Format::Xor)),
            "xk3190-f1" => Self::Xk3190(Xk3190Codec::new(Xk3190Format::Reversed)),
            "xk3190-f2" => Self::Xk3190(Xk3190Codec::new(Xk3190Format::Normal)),
            "xk3190-a9" => Self::Xk3190A9 { address: b'A' },
            "mt-sics" => Self::MtSics,
            "sma" => Self::Sma,
            "rlws" => Self::Rlws,
            "cardinal" => Self::Cardinal,
            "avery" => Self::Avery,
            "a12e" => Self::A12e,
            "dims-ascii" => Self::DimsAscii,
            "generic" => {
                let pattern = pattern.ok_or("protocol generic needs a pattern (--pattern)")?;
                Self::Generic(Box::new(
                    GenericCodec::new(pattern).map_err(|e| e.to_string())?,
                ))
            }
            other => {
                return Err(format!(
                    "unknown protocol {other:?}; known: {}",
                    Self::NAMES.join(", ")
                ))
            }
        })
    }

    /// The name [`Self::parse`] takes.
    pub fn name(&self) -> &'static str {
        use xk3190::Xk3190Format;
        match self {
            Self::Toledo(c) if c.checksum => "toledo-continuous-checksum",
            Self::Toledo(_) => "toledo-continuous",
            Self::Xk3190(c) => match c.format {
                Xk3190Format::Xor => "xk3190",
                Xk3190Format::Reversed => "xk3190-f1",
                Xk3190Format::Normal => "xk3190-f2",
            },
            Self::Xk3190A9 { .. } => "xk3190-a9",
            Self::MtSics => "mt-sics",
            Self::Sma => "sma",
            Self::Rlws => "rlws",
            Self::Cardinal => "cardinal",
            Self::Avery => "avery",
            Self::A12e => "a12e",
            Self::Generic(_) => "generic",
            Self::DimsAscii => "dims-ascii",
        }
    }

    /// Frames carry a checksum the decoder verifies (evidence for `bcpctl serial probe`).
    pub fn has_checksum(&self) -> bool {
        use xk3190::Xk3190Format;
        match self {
            Self::Toledo(c) => c.checksum,
            Self::Xk3190(c) => c.format == Xk3190Format::Xor,
            Self::A12e | Self::DimsAscii | Self::Xk3190A9 { .. } => true,
            _ => false,
        }
    }

    /// Bytes to send to get one reading from a polled protocol; `None` for streaming ones.
    pub fn poll_request(&self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        match self {
            Self::MtSics => {
                mt_sics::encode_command(mt_sics::MtSicsCommand::WeighImmediately, &mut out)
            }
            Self::Sma => sma::encode_request(b'W', &mut out),
            Self::Xk3190A9 { address } => xk3190_a9::encode_request(
                &xk3190_a9::A9Request {
                    address: *address,
                    command: xk3190_a9::A9Command::Gross,
                },
                &mut out,
            ),
            _ => return None,
        }
        Some(out)
    }

    /// A frame's measurement, whatever the protocol.
    pub fn decode_measurement(
        &self,
        buf: &[u8],
    ) -> Result<Option<(Measurement, usize)>, FrameError> {
        fn map<F>(
            r: Result<Option<(F, usize)>, FrameError>,
            f: impl FnOnce(F) -> Measurement,
        ) -> Result<Option<(Measurement, usize)>, FrameError> {
            r.map(|o| o.map(|(frame, n)| (f(frame), n)))
        }
        let weight = |r: ScaleReading| Measurement::Weight(r);
        match self {
            Self::Toledo(c) => map(c.decode(buf), |f| weight((&f).into())),
            Self::Xk3190(c) => map(c.decode(buf), |f| weight(f.reading())),
            Self::Xk3190A9 { .. } => map(xk3190_a9::decode_reply(buf), |f| match f.reading() {
                Some(r) => weight(r),
                None => Measurement::Other(format!("handshake from {}", f.address as char)),
            }),
            Self::MtSics => map(mt_sics::decode_reply(buf), |f| f.measurement()),
            Self::Sma => map(sma::decode(buf), |f| weight(f.reading())),
            Self::Rlws => map(rlws::decode(buf), |f| weight(f.reading())),
            Self::Cardinal => map(cardinal::decode(buf), |f| weight(f.reading())),
            Self::Avery => map(avery::decode(buf), |f| weight(f.reading())),
            Self::A12e => map(a12e::decode(buf), |f| weight(f.reading())),
            Self::Generic(c) => map(c.decode(buf), weight),
            Self::DimsAscii => map(dims_ascii::decode(buf), Measurement::Dimensions),
        }
    }
}

/// Decode-only: [`AnyProtocol`]'s frames are [`Measurement`]s, which cannot be re-encoded (the
/// simulator encodes with each protocol's own frame type). `encode` writes nothing.
impl Protocol for AnyProtocol {
    type Frame = Measurement;
    fn decode(&self, buf: &[u8]) -> Result<Option<(Measurement, usize)>, FrameError> {
        self.decode_measurement(buf)
    }
    fn encode(&self, _frame: &Measurement, _out: &mut Vec<u8>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_powers_of_ten_table_is_what_powi_computes() {
        for n in 0..=u8::MAX {
            let want = 10f64.powi(i32::from(n));
            assert_eq!(pow10(n).to_bits(), want.to_bits(), "10^{n}");
        }
    }

    #[test]
    fn decimal_parse_and_format() {
        assert_eq!(Decimal::parse(b"  -12.340 "), Some(Decimal::new(-12340, 3)));
        assert_eq!(Decimal::parse(b"+0004"), Some(Decimal::new(4, 0)));
        assert_eq!(Decimal::parse(b"1.2.3"), None);
        assert_eq!(Decimal::parse(b".5"), None);
        assert_eq!(Decimal::parse(b"  - "), None);
        assert_eq!(Decimal::new(-12340, 3).plain(), "-12.340");
        assert_eq!(Decimal::new(5, 2).plain(), "0.05");
        assert_eq!(
            Decimal::new(-5, 2).padded(7, b'0').as_deref(),
            Some(&b"-000.05"[..])
        );
        assert_eq!(
            Decimal::new(-5, 2).padded(7, b' ').as_deref(),
            Some(&b"  -0.05"[..])
        );
        assert_eq!(Decimal::new(12345678, 0).padded(7, b' '), None);
    }

    #[test]
    fn every_name_parses_back_to_itself() {
        for name in AnyProtocol::NAMES {
            let p = AnyProtocol::parse(name, Some(r"(?P<weight>\d+)")).expect(name);
            assert_eq!(p.name(), name);
        }
        assert!(AnyProtocol::parse("generic", None).is_err());
        assert!(AnyProtocol::parse("nonesuch", None)
            .expect_err("unknown")
            .contains("xk3190"));
    }
}
