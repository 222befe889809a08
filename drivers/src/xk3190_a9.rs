//! XK3190 command (polled) mode, as on the XK3190-A9+, -A23P and -DS3: the host asks, the
//! indicator at that address answers.
//!
//! Sources: XK3190-A9+ manual p. 11 (request list), XK3190-A23P manual p. 26 and XK3190-DS3
//! manual p. 8 (reply layout). See `/work/shared/FIELD-NOTES.md`, "XK3190 family".
//!
//! # Request (6 bytes)
//!
//! ```text
//! 02  address  command  XOR hi  XOR lo  03
//!     'A'..'Z' 'A' handshake, 'B' gross, 'C' tare, 'D' net
//! ```
//!
//! The address byte is `0x40 + n` for communication address n (address 01 -> `A`). XOR over
//! address and command, nibbles as ASCII (`+0x30` when <= 9, else `+0x37`). The manual's list
//! for address 01: handshake `02 41 41 30 30 03`, gross `02 41 42 30 33 03`, tare `02 41 43 30 32
//! 03`, net `02 41 44 30 35 03`.
//!
//! # Reply (6 bytes for the handshake, 14 for a weight)
//!
//! ```text
//! 02  address  command  [sign  6 digits  decimals 0-4]  XOR hi  XOR lo  03
//! ```
//!
//! XOR over every byte from the address to the last data byte. Example (hand-computed): gross
//! 24560 kg from address 01 = `02 41 42 2B 30 32 34 35 36 30 30 31 44 03` (XOR 0x1D).
//!
//! # Resynchronisation
//!
//! STX occurs only at the start; errors skip to the next STX. A reply's length follows from its
//! command byte (A: no data).

use crate::frame::{FrameError, FrameErrorKind};
use crate::indicator::{Decimal, ScaleReading, ScaleStatus, Unit};
use crate::xk3190::{hex_digit, hex_value, MAX_MANTISSA};

const STX: u8 = 0x02;
const ETX: u8 = 0x03;

/// What the host asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum A9Command {
    Handshake,
    Gross,
    Tare,
    Net,
}

impl A9Command {
    fn byte(self) -> u8 {
        match self {
            Self::Handshake => b'A',
            Self::Gross => b'B',
            Self::Tare => b'C',
            Self::Net => b'D',
        }
    }
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'A' => Self::Handshake,
            b'B' => Self::Gross,
            b'C' => Self::Tare,
            b'D' => Self::Net,
            _ => return None,
        })
    }
}

/// A request to the indicator at `address` (`b'A'..=b'Z'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct A9Request {
    pub address: u8,
    pub command: A9Command,
}

/// A reply; `value` is `None` for the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct A9Reply {
    pub address: u8,
    pub command: A9Command,
    pub value: Option<Decimal>,
}

impl A9Reply {
    /// Gross, tare or net as the command asked (unit kg, as in the continuous formats).
    pub fn reading(&self) -> Option<ScaleReading> {
        let v = self.value?;
        let kg = Unit::Kg.to_kg(v);
        let mut r = ScaleReading::status_only(ScaleStatus::Ok);
        match self.command {
            A9Command::Handshake => return None,
            A9Command::Gross => r = ScaleReading::displayed(v, Unit::Kg, false, None),
            A9Command::Net => r = ScaleReading::displayed(v, Unit::Kg, true, None),
            A9Command::Tare => r.tare_kg = kg,
        }
        Some(r)
    }
}

fn xor(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |x, &b| x ^ b)
}

fn next_stx(buf: &[u8]) -> usize {
    buf.iter()
        .skip(1)
        .position(|&b| b == STX)
        .map_or(buf.len(), |p| p + 1)
}

/// Append a request.
pub fn encode_request(r: &A9Request, out: &mut Vec<u8>) {
    let x = r.address ^ r.command.byte();
    out.extend_from_slice(&[
        STX,
        r.address,
        r.command.byte(),
        hex_digit(x >> 4),
        hex_digit(x & 0x0F),
        ETX,
    ]);
}

/// Append a reply. Values are clamped to 6 digits and 4 decimals.
pub fn encode_reply(r: &A9Reply, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[STX, r.address, r.command.byte()]);
    if let Some(v) = r.value.filter(|_| r.command != A9Command::Handshake) {
        out.push(if v.mantissa < 0 { b'-' } else { b'+' });
        let digits = Decimal::new(v.mantissa.abs().min(MAX_MANTISSA), 0);
        out.extend(digits.padded(6, b'0').unwrap_or_else(|| b"999999".to_vec()));
        out.push(b'0' + v.decimals.min(4));
    }
    let x = xor(&out[start + 1..]);
    out.extend_from_slice(&[hex_digit(x >> 4), hex_digit(x & 0x0F), ETX]);
}

/// A checked frame: address, command, data bytes, bytes consumed.
type RawFrame<'a> = (u8, A9Command, &'a [u8], usize);

/// Decode a frame of `data_len(command)` data bytes.
fn decode_frame(
    buf: &[u8],
    data_len: impl Fn(A9Command) -> usize,
) -> Result<Option<RawFrame<'_>>, FrameError> {
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
    let Some(&address) = buf.get(1) else {
        return Ok(None);
    };
    if !address.is_ascii_uppercase() {
        return Err(reject(FrameErrorKind::BadStatus {
            name: "XK3190 address",
            value: address,
        }));
    }
    let Some(&cmd) = buf.get(2) else {
        return Ok(None);
    };
    let command = A9Command::from_byte(cmd).ok_or_else(|| {
        reject(FrameErrorKind::BadStatus {
            name: "XK3190 command",
            value: cmd,
        })
    })?;
    let n = data_len(command);
    let len = 3 + n + 3;
    let avail = &buf[..buf.len().min(len)];
    for (offset, &b) in avail.iter().enumerate().skip(3) {
        let ok = match offset - 3 {
            0 if n > 0 => b == b'+' || b == b'-',
            i if i + 1 == n => (b'0'..=b'4').contains(&b),
            i if i < n => b.is_ascii_digit(),
            i if i < n + 2 => b.is_ascii_digit() || (b'A'..=b'F').contains(&b),
            _ => b == ETX,
        };
        if !ok {
            return Err(reject(FrameErrorKind::BadDigit { offset, value: b }));
        }
    }
    if avail.len() < len {
        return Ok(None);
    }
    let computed = xor(&avail[1..3 + n]);
    let received = (hex_value(avail[3 + n]) << 4) | hex_value(avail[4 + n]);
    if computed != received {
        return Err(reject(FrameErrorKind::Checksum { computed, received }));
    }
    Ok(Some((address, command, &avail[3..3 + n], len)))
}

/// Decode a request (the indicator's side, used by the simulator).
pub fn decode_request(buf: &[u8]) -> Result<Option<(A9Request, usize)>, FrameError> {
    Ok(decode_frame(buf, |_| 0)?
        .map(|(address, command, _, n)| (A9Request { address, command }, n)))
}

/// Decode a reply.
pub fn decode_reply(buf: &[u8]) -> Result<Option<(A9Reply, usize)>, FrameError> {
    let data_len = |c| if c == A9Command::Handshake { 0 } else { 8 };
    let Some((address, command, data, n)) = decode_frame(buf, data_len)? else {
        return Ok(None);
    };
    let value = (!data.is_empty()).then(|| {
        // Checked above: sign, six digits, a decimals digit.
        let digits = data[1..7]
            .iter()
            .fold(0i64, |v, d| v * 10 + i64::from(d - b'0'));
        let mantissa = if data[0] == b'-' { -digits } else { digits };
        Decimal::new(mantissa, data[7] - b'0')
    });
    Ok(Some((
        A9Reply {
            address,
            command,
            value,
        },
        n,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{assert_resyncs, assert_round_trip};
    use proptest::prelude::*;

    fn req(command: A9Command) -> Vec<u8> {
        let mut out = Vec::new();
        encode_request(
            &A9Request {
                address: b'A',
                command,
            },
            &mut out,
        );
        out
    }

    fn rep(r: &A9Reply) -> Vec<u8> {
        let mut out = Vec::new();
        encode_reply(r, &mut out);
        out
    }

    /// The manual's request list for address 01, byte for byte.
    #[test]
    fn manual_requests() {
        for (command, bytes) in [
            (A9Command::Handshake, [0x02, 0x41, 0x41, 0x30, 0x30, 0x03]),
            (A9Command::Gross, [0x02, 0x41, 0x42, 0x30, 0x33, 0x03]),
            (A9Command::Tare, [0x02, 0x41, 0x43, 0x30, 0x32, 0x03]),
            (A9Command::Net, [0x02, 0x41, 0x44, 0x30, 0x35, 0x03]),
        ] {
            assert_eq!(req(command), bytes);
            let expected = A9Request {
                address: b'A',
                command,
            };
            assert_round_trip(decode_request, &bytes, &expected);
        }
    }

    #[test]
    fn replies() {
        let gross = A9Reply {
            address: b'A',
            command: A9Command::Gross,
            value: Some(Decimal::new(24_560, 0)),
        };
        let v = b"\x02AB+0245600\x31\x44\x03";
        assert_eq!(rep(&gross), v);
        assert_round_trip(decode_reply, v, &gross);
        assert_eq!(
            gross.reading().map(|r| (r.weight_kg, r.gross_kg)),
            Some((Some(24_560.0), Some(24_560.0)))
        );
        let tare = A9Reply {
            address: b'C',
            command: A9Command::Tare,
            value: Some(Decimal::new(-1234, 2)),
        };
        let bytes = rep(&tare);
        assert_round_trip(decode_reply, &bytes, &tare);
        assert_eq!(tare.reading().and_then(|r| r.tare_kg), Some(-12.34));
        let hello = A9Reply {
            address: b'A',
            command: A9Command::Handshake,
            value: None,
        };
        assert_eq!(rep(&hello), [0x02, 0x41, 0x41, 0x30, 0x30, 0x03]);
        assert_round_trip(decode_reply, &rep(&hello), &hello);
        let mut bad = v.to_vec();
        bad[5] = b'3';
        assert!(matches!(
            decode_reply(&bad).map_err(|e| e.kind),
            Err(FrameErrorKind::Checksum { .. })
        ));
    }

    fn arb_reply() -> impl Strategy<Value = A9Reply> {
        (
            b'A'..=b'Z',
            prop_oneof![
                Just(A9Command::Handshake),
                Just(A9Command::Gross),
                Just(A9Command::Tare),
                Just(A9Command::Net)
            ],
            -MAX_MANTISSA..=MAX_MANTISSA,
            0u8..=4,
        )
            .prop_map(|(address, command, m, d)| A9Reply {
                address,
                command,
                value: (command != A9Command::Handshake).then_some(Decimal::new(m, d)),
            })
    }

    proptest! {
        #[test]
        fn round_trip(r in arb_reply()) {
            assert_round_trip(decode_reply, &rep(&r), &r);
        }

        #[test]
        fn garbage_resynchronises(garbage in proptest::collection::vec(any::<u8>(), 0..40),
                                  a in arb_reply(), b in arb_reply()) {
            assert_resyncs(decode_reply, &garbage, &rep(&a), &rep(&b), &b);
        }
    }
}
