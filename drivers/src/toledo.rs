//! Mettler Toledo standard continuous output ("Toledo" format).
//!
//! Sources: Mettler Toledo Wildcat technical manual pp. 6-4/6-5 (frame, checksum, status words);
//! IND245 firmware `ContOut.c` (how the fields are built); Rockwell Toledo scale interface module
//! app. D, Ohaus Defender 5000 and Fairbanks FB3000 manuals (same frame). See
//! `/work/shared/FIELD-NOTES.md`, "Weighing indicators".
//!
//! # Byte layout (17 bytes, 18 with the optional checksum)
//!
//! ```text
//! offset  0      1    2    3    4..10            10..16          16   17
//!         STX    SWA  SWB  SWC  displayed weight tare weight     CR   [CHK]
//!         0x02                  6 ASCII digits   6 ASCII digits  0x0D
//! ```
//!
//! * Weight and tare carry no sign and no decimal point; the most significant digit comes first.
//!   Wildcat pads with `'0'`, IND245 right-aligns with spaces: the decoder accepts leading spaces
//!   (a field of spaces only is 0), the encoder writes zeros.
//! * `CHK` = two's complement of the low 7 bits of the sum of bytes 0..=16 (STX and CR included);
//!   the firmware computes `cs -= byte` over 17 bytes, then `cs & 0x7F`. A frame is valid when the
//!   low 7 bits of the sum of all 18 bytes are zero.
//!
//! | Bit | SWA | SWB | SWC |
//! |---|---|---|---|
//! | 0-2 | decimal position ([`DecimalPosition`]) | b0 net, b1 negative, b2 out of range | vendor specific |
//! | 3-4 | increment: 01 = x1, 10 = x2, 11 = x5 (00 is rejected) | b3 motion, b4 kg (0 = lb) | vendor specific |
//! | 5 | always 1 (checked) | always 1 (checked) | kept raw in [`ToledoFrame::swc`]; read per terminal by [`swc::SwcProfile`] |
//! | 6 | ignored | power up, not yet zeroed | |
//! | 7 | ignored (Rice Lake may put even parity here) | ignored (same) | |
//!
//! # Dummy zeros (decimal codes 000 = `XXXX00` and 001 = `XXXXX0`)
//!
//! The six digits carry the value **as displayed, dummy zeros included**: with code 001 a display of
//! `12340` kg is sent as `012340`, and [`ToledoFrame::weight_digits`] is `12340`. Reasons: the
//! IND245 firmware builds the field by taking the display string and dropping only `'.'` and `'-'`
//! (`FormatOutputWeightString`), so the display's trailing zeros stay in; and the manual's notation
//! describes the 6-character field itself (`XXXXX.X` = one decimal in the field, `XXXXX0` = last
//! character of the field is a fixed zero). So codes 000, 001 and 010 all read the digits as whole
//! units and differ only in the division size (x100, x10, x1 the increment). The decoder does not
//! insist that the dummy positions are `'0'`: it reports what the terminal sent.
//!
//! # Resynchronisation
//!
//! On an error the decoder skips to the next STX. STX (0x02) cannot be a status byte SWA/SWB (bit 5
//! is set there), a digit, a space or CR, so a false start in garbage is rejected no later than
//! the real frame's STX and never swallows it. One corner case is inherent to the format with the
//! checksum on: the checksum byte may itself be 0x02, so garbage ending in a complete, valid
//! 17-byte body whose checksum happens to equal 0x02 takes the next real STX as its checksum and
//! that one frame is lost (the stream resynchronises on the one after).
//!
//! # Units
//!
//! [`ToledoFrame::weight_kg`] returns `None` unless SWB says kg: SWB b4 = 0 means "lb" on a Wildcat
//! but "look at SWC" on IND245/Ohaus (g, t, oz, ...), so a conversion would be a guess. A weighbridge
//! at a customs post configured in anything but kg is a setup error the operator must see, not
//! something to convert silently.

use crate::frame::{FrameError, FrameErrorKind};
use crate::stability::WeightReading;

pub mod swc;
pub use swc::{SwcFlags, SwcProfile};

const STX: u8 = 0x02;
const CR: u8 = 0x0D;
/// Length without the checksum byte.
const BODY_LEN: usize = 17;
const CR_OFFSET: usize = 16;
const WEIGHT_OFFSET: usize = 4;
const TARE_OFFSET: usize = 10;
const DIGITS: usize = 6;
const MAX_DIGITS_VALUE: u32 = 999_999;

/// SWA bits 0-2: where the decimal point sits in the 6-digit fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecimalPosition {
    /// 000: `XXXX00`, whole units, the last two digits are dummy zeros (division = increment x 100).
    DummyZeros2,
    /// 001: `XXXXX0`, whole units, the last digit is a dummy zero (division = increment x 10).
    DummyZeros1,
    /// 010: `XXXXXX`, whole units.
    Decimals0,
    /// 011: `XXXXX.X`.
    Decimals1,
    /// 100: `XXXX.XX`.
    Decimals2,
    /// 101: `XXX.XXX`.
    Decimals3,
    /// 110: `XX.XXXX`.
    Decimals4,
    /// 111: `X.XXXXX`.
    Decimals5,
}

impl DecimalPosition {
    /// All eight codes, in code order.
    pub const ALL: [DecimalPosition; 8] = [
        Self::DummyZeros2,
        Self::DummyZeros1,
        Self::Decimals0,
        Self::Decimals1,
        Self::Decimals2,
        Self::Decimals3,
        Self::Decimals4,
        Self::Decimals5,
    ];

    /// From SWA bits 0-2 (higher bits are ignored).
    pub fn from_bits(bits: u8) -> Self {
        Self::ALL[usize::from(bits & 0x07)]
    }

    /// The SWA bits 0-2 for this position.
    pub fn bits(self) -> u8 {
        self as u8
    }

    /// Digits after the decimal point in the transmitted field (0 for the first three codes).
    pub fn decimals(self) -> u8 {
        (self as u8).saturating_sub(2)
    }

    /// Power of ten of the division relative to the increment: 2 for `XXXX00` .. -5 for `X.XXXXX`.
    pub fn division_exponent(self) -> i32 {
        2 - i32::from(self as u8)
    }
}

/// One decoded continuous-output frame, fields as transmitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToledoFrame {
    /// Displayed (gross or net) weight field as an integer, dummy zeros included, no sign.
    pub weight_digits: u32,
    /// Tare field as an integer.
    pub tare_digits: u32,
    /// SWA bits 0-2.
    pub decimal: DecimalPosition,
    /// SWA bits 3-4: 1, 2 or 5. The encoder writes x1 for any other value.
    pub increment: u8,
    /// SWB b0: the displayed weight is net.
    pub net: bool,
    /// SWB b1: the displayed weight is negative.
    pub negative: bool,
    /// SWB b2: over capacity or under zero; the digits mean nothing.
    pub out_of_range: bool,
    /// SWB b3: the terminal's own motion detector says the weight is moving.
    pub motion: bool,
    /// SWB b4: units are kg (otherwise lb, or a vendor unit named in SWC).
    pub unit_kg: bool,
    /// SWB b6: power-up zero not yet captured.
    pub not_zeroed_at_power_up: bool,
    /// SWC, raw: its meaning differs by vendor (a per-terminal profile decides).
    pub swc: u8,
}

impl ToledoFrame {
    /// Signed displayed weight in kg; `None` when out of range or when the unit is not kg.
    pub fn weight_kg(&self) -> Option<f64> {
        if self.out_of_range || !self.unit_kg {
            return None;
        }
        let value = self.field_value(self.weight_digits);
        Some(if self.negative { -value } else { value })
    }

    /// Tare in kg; `None` when the unit is not kg. Tare has no sign bit.
    pub fn tare_kg(&self) -> Option<f64> {
        self.unit_kg.then(|| self.field_value(self.tare_digits))
    }

    /// One display division (increment at the decimal position), in the displayed unit: kg when
    /// [`Self::unit_kg`] is set. Example: increment x2 with `XXXXX0` is 20.
    pub fn division_kg(&self) -> f64 {
        let increment = f64::from(self.increment);
        let exp = self.decimal.division_exponent();
        if exp >= 0 {
            increment * 10f64.powi(exp)
        } else {
            increment / 10f64.powi(-exp)
        }
    }

    /// The frame as a reading for the stability detector; `None` for frames that are not readings
    /// (out of range, or not in kg).
    pub fn reading(&self) -> Option<WeightReading> {
        Some(WeightReading {
            weight_kg: self.weight_kg()?,
            division_kg: self.division_kg(),
            motion: Some(self.motion),
        })
    }

    fn field_value(&self, digits: u32) -> f64 {
        // Dividing the exact integer by an exact power of ten gives the correctly rounded value.
        f64::from(digits) / 10f64.powi(i32::from(self.decimal.decimals()))
    }

    fn swa(&self) -> u8 {
        let increment_code = match self.increment {
            2 => 0b10,
            5 => 0b11,
            _ => 0b01,
        };
        0x20 | (increment_code << 3) | self.decimal.bits()
    }

    fn swb(&self) -> u8 {
        let mut swb = 0x20;
        for (flag, bit) in [
            (self.net, 0x01),
            (self.negative, 0x02),
            (self.out_of_range, 0x04),
            (self.motion, 0x08),
            (self.unit_kg, 0x10),
            (self.not_zeroed_at_power_up, 0x40),
        ] {
            if flag {
                swb |= bit;
            }
        }
        swb
    }
}

/// Decoder/encoder for the continuous output, configured per terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ToledoCodec {
    /// The terminal appends the checksum byte (18-byte frames).
    pub checksum: bool,
}

impl ToledoCodec {
    /// Frame length on the wire.
    pub fn frame_len(&self) -> usize {
        BODY_LEN + usize::from(self.checksum)
    }

    /// Decode one frame from the front of `buf`.
    ///
    /// `Ok(None)`: `buf` is a valid prefix, more bytes are needed. `Err(e)`: drop `e.skip` bytes
    /// (up to the next STX) and try again. Each available byte is checked as soon as it is there,
    /// so a false STX in garbage is rejected before it can swallow the next real frame.
    pub fn decode(&self, buf: &[u8]) -> Result<Option<(ToledoFrame, usize)>, FrameError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let reject = |kind| FrameError::new(next_stx(buf), kind);
        if first != STX {
            return Err(reject(FrameErrorKind::NoStart {
                expected: STX,
                found: first,
            }));
        }
        let len = self.frame_len();
        let avail = &buf[..buf.len().min(len)];
        for (offset, &byte) in avail.iter().enumerate().skip(1) {
            let ok = match offset {
                1 => check_swa(byte),
                2 => byte & 0x20 != 0,
                3 => true,
                CR_OFFSET => byte == CR,
                BODY_LEN => true, // checksum, verified below once complete
                _ => byte.is_ascii_digit() || byte == b' ',
            };
            if !ok {
                return Err(reject(match offset {
                    1 => FrameErrorKind::BadStatus {
                        name: "SWA",
                        value: byte,
                    },
                    2 => FrameErrorKind::BadStatus {
                        name: "SWB",
                        value: byte,
                    },
                    CR_OFFSET => FrameErrorKind::MissingTerminator {
                        offset,
                        found: byte,
                    },
                    _ => FrameErrorKind::BadDigit {
                        offset,
                        value: byte,
                    },
                }));
            }
        }
        if avail.len() < len {
            return Ok(None);
        }
        if self.checksum {
            let computed = checksum(&avail[..BODY_LEN]);
            let received = avail[BODY_LEN];
            if computed != received & 0x7F {
                return Err(reject(FrameErrorKind::Checksum { computed, received }));
            }
        }
        let weight_digits =
            parse_field(&avail[WEIGHT_OFFSET..WEIGHT_OFFSET + DIGITS]).map_err(|offset| {
                reject(FrameErrorKind::BadDigit {
                    offset: WEIGHT_OFFSET + offset,
                    value: b' ',
                })
            })?;
        let tare_digits =
            parse_field(&avail[TARE_OFFSET..TARE_OFFSET + DIGITS]).map_err(|offset| {
                reject(FrameErrorKind::BadDigit {
                    offset: TARE_OFFSET + offset,
                    value: b' ',
                })
            })?;
        let (swa, swb) = (avail[1], avail[2]);
        let frame = ToledoFrame {
            weight_digits,
            tare_digits,
            decimal: DecimalPosition::from_bits(swa),
            increment: match (swa >> 3) & 0b11 {
                0b10 => 2,
                0b11 => 5,
                _ => 1,
            },
            net: swb & 0x01 != 0,
            negative: swb & 0x02 != 0,
            out_of_range: swb & 0x04 != 0,
            motion: swb & 0x08 != 0,
            unit_kg: swb & 0x10 != 0,
            not_zeroed_at_power_up: swb & 0x40 != 0,
            swc: avail[3],
        };
        Ok(Some((frame, len)))
    }

    /// Append one frame to `out`. Fields above 999999 are written as 999999; digits are
    /// zero-padded.
    pub fn encode(&self, frame: &ToledoFrame, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[STX, frame.swa(), frame.swb(), frame.swc]);
        push_digits(frame.weight_digits, out);
        push_digits(frame.tare_digits, out);
        out.push(CR);
        if self.checksum {
            let cs = checksum(&out[start..]);
            out.push(cs);
        }
    }
}

/// Two's complement of the low 7 bits of the byte sum, as the firmware computes it.
fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |cs, &b| cs.wrapping_sub(b)) & 0x7F
}

fn check_swa(byte: u8) -> bool {
    byte & 0x20 != 0 && (byte >> 3) & 0b11 != 0
}

/// Position of the next STX after the first byte, or the whole buffer if there is none.
fn next_stx(buf: &[u8]) -> usize {
    buf.iter()
        .skip(1)
        .position(|&b| b == STX)
        .map_or(buf.len(), |p| p + 1)
}

/// Parse a 6-byte field: leading spaces, then digits. `Err(offset)` for a space after a digit.
fn parse_field(field: &[u8]) -> Result<u32, usize> {
    let mut value = 0u32;
    let mut seen_digit = false;
    for (offset, &byte) in field.iter().enumerate() {
        if byte == b' ' {
            if seen_digit {
                return Err(offset);
            }
        } else {
            seen_digit = true;
            value = value * 10 + u32::from(byte - b'0');
        }
    }
    Ok(value)
}

fn push_digits(value: u32, out: &mut Vec<u8>) {
    let value = value.min(MAX_DIGITS_VALUE);
    let mut divisor = 100_000;
    while divisor > 0 {
        // `value / divisor % 10` is a single decimal digit, so the cast cannot truncate.
        out.push(b'0' + (value / divisor % 10) as u8);
        divisor /= 10;
    }
}

#[cfg(test)]
mod tests;
