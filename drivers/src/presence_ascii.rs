//! `ENTRY 1` / `EXIT 0` lines: the presence sensors at the two ends of a weighbridge.
//!
//! A lane's presence sensors (inductive loops under the deck, or light curtains beside it) say
//! whether something is over their part of the bridge. A loop detector's relay outputs, or a
//! light curtain's switching outputs, are read by a small I/O module (or the sensor's own serial
//! interface) that sends one ASCII line each time a sensor's state changes. We define that line,
//! short and readable in a terminal, as the integrator configures the module's output template;
//! the simulator emits it.
//!
//! # Geometry
//!
//! Two sensors, one per end of the bridge, in the direction of travel: `ENTRY` covers the half
//! of the deck a vehicle drives onto, `EXIT` the half it drives off. Together they cover the
//! whole deck, so anything on the bridge occupies at least one of them (a loop detects a vehicle
//! over any part of its loop; a light curtain beside the deck sees any vehicle along its length).
//! A vehicle crossing occupies `ENTRY`, then both, then `EXIT` alone, then neither; one that
//! backs off occupies `EXIT` (perhaps), then `ENTRY` alone, then neither. What these states
//! mean for the lane is decided by [`crate::presence::BridgeSides`], not here.
//!
//! # Line layout
//!
//! ```text
//! <SENSOR> <STATE>\r\n
//! ```
//!
//! * `SENSOR`: `ENTRY` or `EXIT`, uppercase ASCII.
//! * One space (0x20).
//! * `STATE`: `1` occupied (loop detects a vehicle, beam broken) or `0` clear.
//! * Terminator `\r\n`; a bare `\n` is accepted.
//! * A line, terminator included, is at most [`MAX_LINE`] = 32 bytes; longer is garbage.
//! * A module may repeat the current states (a keep-alive); a repeat changes nothing.
//!
//! Examples: `ENTRY 1\r\n` (bytes `45 4E 54 52 59 20 31 0D 0A`), `EXIT 0\r\n`
//! (`45 58 49 54 20 30 0D 0A`).
//!
//! # Resynchronisation
//!
//! There is no start byte: garbage costs at most the line it runs into (the bytes up to and
//! including the next `\n`), and the line after it decodes.

use crate::frame::{take_line, FrameError, FrameErrorKind};

/// Longest accepted line, terminator included.
pub const MAX_LINE: usize = 32;

/// Which end of the bridge a sensor covers, in the direction of travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SensorEnd {
    /// The end vehicles drive onto the bridge by.
    Entry,
    /// The end vehicles drive off by when they cross.
    Exit,
}

impl SensorEnd {
    /// As written in a line: `ENTRY`, `EXIT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Entry => "ENTRY",
            Self::Exit => "EXIT",
        }
    }
}

/// One sensor's new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PresenceLine {
    pub sensor: SensorEnd,
    /// Something is over the sensor's part of the bridge.
    pub occupied: bool,
}

/// Decode one line from the front of `buf`: `Ok(None)` needs more bytes; `Err(e)`: drop `e.skip`.
pub fn decode(buf: &[u8]) -> Result<Option<(PresenceLine, usize)>, FrameError> {
    let Some((line, consumed)) = take_line(buf, b'\n', MAX_LINE)? else {
        return Ok(None);
    };
    parse_line(line)
        .map(|frame| Some((frame, consumed)))
        .map_err(|kind| FrameError::new(consumed, kind))
}

/// Append one line to `out`.
pub fn encode(line: &PresenceLine, out: &mut Vec<u8>) {
    out.extend_from_slice(line.sensor.as_str().as_bytes());
    out.push(b' ');
    out.push(if line.occupied { b'1' } else { b'0' });
    out.extend_from_slice(b"\r\n");
}

/// `line` is the line without its terminator.
fn parse_line(line: &[u8]) -> Result<PresenceLine, FrameErrorKind> {
    let malformed = |reason| FrameErrorKind::Malformed { reason };
    let (sensor, state) = match line {
        [rest @ .., b' ', state] => (rest, *state),
        _ => return Err(malformed("not `<SENSOR> <STATE>`")),
    };
    let sensor = match sensor {
        b"ENTRY" => SensorEnd::Entry,
        b"EXIT" => SensorEnd::Exit,
        _ => return Err(malformed("sensor is not ENTRY or EXIT")),
    };
    let occupied = match state {
        b'1' => true,
        b'0' => false,
        _ => return Err(malformed("state is not 1 or 0")),
    };
    Ok(PresenceLine { sensor, occupied })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(sensor: SensorEnd, occupied: bool) -> PresenceLine {
        PresenceLine { sensor, occupied }
    }

    /// Written out byte by byte from the layout above, not from `encode`.
    const VECTORS: [(&[u8], SensorEnd, bool); 4] = [
        (
            &[0x45, 0x4E, 0x54, 0x52, 0x59, 0x20, 0x31, 0x0D, 0x0A],
            SensorEnd::Entry,
            true,
        ),
        (b"ENTRY 0\r\n", SensorEnd::Entry, false),
        (
            &[0x45, 0x58, 0x49, 0x54, 0x20, 0x30, 0x0D, 0x0A],
            SensorEnd::Exit,
            false,
        ),
        (b"EXIT 1\r\n", SensorEnd::Exit, true),
    ];

    #[test]
    fn vectors_decode_and_encode() {
        for (bytes, sensor, occupied) in VECTORS {
            let want = line(sensor, occupied);
            assert_eq!(decode(bytes), Ok(Some((want, bytes.len()))));
            let mut out = Vec::new();
            encode(&want, &mut out);
            assert_eq!(out, bytes);
        }
    }

    #[test]
    fn a_bare_newline_ends_a_line_and_a_partial_one_waits() {
        assert_eq!(
            decode(b"EXIT 1\n"),
            Ok(Some((line(SensorEnd::Exit, true), 7)))
        );
        assert_eq!(decode(b"ENTRY 1\r"), Ok(None));
        assert_eq!(decode(b""), Ok(None));
    }

    #[test]
    fn what_is_not_a_line_of_the_layout_is_skipped_to_the_next() {
        for bad in [
            &b"entry 1\r\n"[..],
            b"ENTRY 2\r\n",
            b"ENTRY  1\r\n",
            b"ENTRY1\r\n",
            b"MIDDLE 1\r\n",
            b"ENTRY 1 \r\n",
        ] {
            let e = decode(bad).expect_err("refused");
            assert_eq!(e.skip, bad.len(), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut stream = b"#garbage\nEXIT 0\r\n".to_vec();
        let e = decode(&stream).expect_err("garbage");
        stream.drain(..e.skip);
        assert_eq!(decode(&stream), Ok(Some((line(SensorEnd::Exit, false), 8))));
        let long = [b'A'; MAX_LINE];
        assert_eq!(decode(&long).map_err(|e| e.skip), Err(MAX_LINE));
    }

    fn any_line() -> impl Strategy<Value = PresenceLine> {
        (any::<bool>(), any::<bool>()).prop_map(|(entry, occupied)| PresenceLine {
            sensor: if entry {
                SensorEnd::Entry
            } else {
                SensorEnd::Exit
            },
            occupied,
        })
    }

    proptest! {
        #[test]
        fn decode_of_encode_is_identity(l in any_line()) {
            let mut out = Vec::new();
            encode(&l, &mut out);
            prop_assert_eq!(decode(&out), Ok(Some((l, out.len()))));
        }

        /// Arbitrary bytes never panic, every error skips at least one byte and no more than
        /// there are, and after the garbage and a newline two lines always come out.
        #[test]
        fn garbage_never_panics_and_the_lines_after_it_decode(
            garbage in proptest::collection::vec(any::<u8>(), 0..200),
            a in any_line(),
            b in any_line(),
        ) {
            let mut buf = garbage;
            buf.push(b'\n');
            encode(&a, &mut buf);
            encode(&b, &mut buf);
            let mut got = Vec::new();
            let mut pos = 0;
            while pos < buf.len() {
                match decode(&buf[pos..]) {
                    Ok(Some((l, n))) => {
                        prop_assert!(n >= 1);
                        got.push(l);
                        pos += n;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        prop_assert!(e.skip >= 1 && e.skip <= buf.len() - pos);
                        pos += e.skip;
                    }
                }
            }
            prop_assert!(got.ends_with(&[a, b]), "{:?}", got);
        }
    }
}
