//! `$DIM` lines: computed vehicle dimensions from a dimension system.
//!
//! Laser dimension systems (for example SICK LMS scanners with a vendor's evaluation software)
//! compute length, width and height per vehicle and can emit them as a configurable ASCII line.
//! We define one such line, NMEA-like so that it is checkable and readable in a terminal; the
//! simulator emits it and an integrator configures the real system's output template to match.
//!
//! # Line layout
//!
//! ```text
//! $DIM,<seq>,<length_mm>,<width_mm>,<height_mm>*<hh>\r\n
//! ```
//!
//! * `seq`, `length_mm`, `width_mm`, `height_mm`: unsigned decimal integers that fit in `u32`,
//!   at least one digit, no sign; leading zeros are accepted and not written.
//! * `<hh>`: XOR of every byte strictly between `$` and `*`, as two hex digits; written in
//!   uppercase, accepted in either case (as NMEA readers do).
//! * Terminator `\r\n`; a bare `\n` is accepted.
//! * A line, `$` to `\n` inclusive, is at most [`MAX_LINE`] = 128 bytes; longer is garbage.
//!
//! Example (hand-computed): `$DIM,1,16500,2550,4000*45\r\n`.
//!
//! # Resynchronisation
//!
//! `$` starts every line and occurs nowhere else, so the decoder rejects a candidate line as soon
//! as it meets a second `$` before `\n` and skips only up to that `$`.

use crate::frame::{FrameError, FrameErrorKind};

/// Longest accepted line, `$` through `\n` inclusive.
pub const MAX_LINE: usize = 128;
const START: u8 = b'$';

/// Dimensions of one vehicle, as measured by the dimension system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct DimensionFrame {
    /// The sensor's measurement counter (wraps at the sensor's discretion).
    pub seq: u32,
    pub length_mm: u32,
    pub width_mm: u32,
    pub height_mm: u32,
}

/// Decode one line from the front of `buf`: `Ok(None)` needs more bytes; `Err(e)`: drop `e.skip`.
pub fn decode(buf: &[u8]) -> Result<Option<(DimensionFrame, usize)>, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first != START {
        let skip = buf.iter().position(|&b| b == START).unwrap_or(buf.len());
        return Err(FrameError::new(
            skip,
            FrameErrorKind::NoStart {
                expected: START,
                found: first,
            },
        ));
    }
    let window = &buf[..buf.len().min(MAX_LINE)];
    let mut newline = None;
    for (i, &b) in window.iter().enumerate().skip(1) {
        match b {
            START => {
                return Err(FrameError::new(
                    i,
                    FrameErrorKind::Malformed {
                        reason: "'$' inside a line",
                    },
                ))
            }
            b'\n' => {
                newline = Some(i);
                break;
            }
            _ => {}
        }
    }
    let Some(newline) = newline else {
        if window.len() < MAX_LINE {
            return Ok(None);
        }
        return Err(FrameError::new(
            MAX_LINE,
            FrameErrorKind::TooLong { max: MAX_LINE },
        ));
    };
    let consumed = newline + 1;
    let line = &buf[1..newline];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    parse_line(line)
        .map(|frame| Some((frame, consumed)))
        .map_err(|kind| FrameError::new(consumed, kind))
}

/// Append one line to `out`.
pub fn encode(frame: &DimensionFrame, out: &mut Vec<u8>) {
    let payload = format!(
        "DIM,{},{},{},{}",
        frame.seq, frame.length_mm, frame.width_mm, frame.height_mm
    );
    let cs = xor(payload.as_bytes());
    out.push(START);
    out.extend_from_slice(payload.as_bytes());
    out.extend_from_slice(format!("*{cs:02X}\r\n").as_bytes());
}

/// `line` is everything between `$` and the terminator.
fn parse_line(line: &[u8]) -> Result<DimensionFrame, FrameErrorKind> {
    let malformed = |reason| FrameErrorKind::Malformed { reason };
    let star = line
        .iter()
        .rposition(|&b| b == b'*')
        .ok_or(malformed("no '*' before the checksum"))?;
    let (payload, hex) = (&line[..star], &line[star + 1..]);
    let &[hi, lo] = hex else {
        return Err(malformed("checksum is not two hex digits"));
    };
    let received = (hex_value(hi).ok_or(malformed("checksum is not hex"))? << 4)
        | hex_value(lo).ok_or(malformed("checksum is not hex"))?;
    let computed = xor(payload);
    if computed != received {
        return Err(FrameErrorKind::Checksum { computed, received });
    }
    let mut fields = payload.split(|&b| b == b',');
    if fields.next() != Some(b"DIM".as_slice()) {
        return Err(malformed("sentence is not DIM"));
    }
    let mut next = || -> Result<u32, FrameErrorKind> {
        parse_u32(fields.next().ok_or(malformed("too few fields"))?)
            .ok_or(malformed("field is not an unsigned 32-bit integer"))
    };
    let frame = DimensionFrame {
        seq: next()?,
        length_mm: next()?,
        width_mm: next()?,
        height_mm: next()?,
    };
    if fields.next().is_some() {
        return Err(malformed("too many fields"));
    }
    Ok(frame)
}

fn xor(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |acc, &b| acc ^ b)
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn parse_u32(field: &[u8]) -> Option<u32> {
    if field.is_empty() {
        return None;
    }
    field.iter().try_fold(0u32, |acc, &b| {
        let digit = char::from(b).to_digit(10)?;
        acc.checked_mul(10)?.checked_add(digit)
    })
}

#[cfg(test)]
mod tests;
