//! MT-SICS: Mettler Toledo Standard Interface Command Set, level 0/1 (polled).
//!
//! Sources: Mettler Toledo AL-IC / MT-SICS reference manual p. 72; InstrumentKit `mt_sics.py`.
//! See `/work/shared/FIELD-NOTES.md`, "MT-SICS". 9600 8N1 by default.
//!
//! # Lines
//!
//! Commands and replies are ASCII lines ending `CR LF` (a bare `LF` is accepted). The host sends
//! a command ([`MtSicsCommand`]); the terminal answers with one line ([`MtSicsReply`]):
//!
//! ```text
//! S S     100.00 g      stable weight            (reply to S or SI)
//! S D     100.01 g      dynamic (in motion)      (reply to SI)
//! T S       2.486 g     tare taken               (reply to T)
//! S I                   not executable now       S +  overload   S -  underload
//! Z A                   zeroed                   Z I / Z + / Z -  as above
//! ES / ET / EL          syntax / transmission / logical error
//! I4 A "0123456789"     reply to @ (serial number): kept as text
//! ```
//!
//! Fields are separated by one or more spaces; the weight is right-aligned in 10 characters (the
//! encoder writes `<cmd> <status> <10-char weight> <unit>`). One open-source test suite answers
//! `S` with `S A`; the manual says `S S`, and that is what we write; `A` with a weight is decoded as
//! stable too.
//!
//! # Resynchronisation
//!
//! Lines have no start byte: an error skips through the next `LF`. Garbage without an `LF` joins
//! the next line, which is lost; the one after always comes through. Lines over [`MAX_LINE`] are
//! rejected.

use crate::frame::{take_line, FrameError, FrameErrorKind};
use crate::indicator::{Decimal, Measurement, ScaleReading, ScaleStatus, Unit};

/// Longest accepted line, terminator included.
pub const MAX_LINE: usize = 128;

/// Commands the host sends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MtSicsCommand {
    /// `S`: send the next stable weight.
    Weigh,
    /// `SI`: send the weight now, stable or not.
    WeighImmediately,
    /// `Z`: zero when stable.
    Zero,
    /// `ZI`: zero now.
    ZeroImmediately,
    /// `T`: tare when stable.
    Tare,
    /// `TI`: tare now.
    TareImmediately,
    /// `@`: reset; the terminal answers with its serial number.
    Reset,
    /// Anything else, as sent (the terminal answers `ES`).
    Unknown(String),
}

impl MtSicsCommand {
    fn text(&self) -> &str {
        match self {
            Self::Weigh => "S",
            Self::WeighImmediately => "SI",
            Self::Zero => "Z",
            Self::ZeroImmediately => "ZI",
            Self::Tare => "T",
            Self::TareImmediately => "TI",
            Self::Reset => "@",
            Self::Unknown(text) => text,
        }
    }
}

/// Append a command line.
pub fn encode_command(command: MtSicsCommand, out: &mut Vec<u8>) {
    out.extend_from_slice(command.text().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Decode one command line (the terminal's side, used by the simulator).
pub fn decode_command(buf: &[u8]) -> Result<Option<(MtSicsCommand, usize)>, FrameError> {
    let Some((line, n)) = take_line(buf, b'\n', MAX_LINE)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(line).trim().to_string();
    let command = match text.as_str() {
        "S" => MtSicsCommand::Weigh,
        "SI" => MtSicsCommand::WeighImmediately,
        "Z" => MtSicsCommand::Zero,
        "ZI" => MtSicsCommand::ZeroImmediately,
        "T" => MtSicsCommand::Tare,
        "TI" => MtSicsCommand::TareImmediately,
        "@" => MtSicsCommand::Reset,
        _ => MtSicsCommand::Unknown(text),
    };
    Ok(Some((command, n)))
}

/// The status letter of a reply without a weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MtSicsStatus {
    /// `A`: done.
    Done,
    /// `I`: not executable now (busy, in motion for `Z`/`T`).
    NotExecutable,
    /// `+`: over the upper limit.
    Overload,
    /// `-`: under the lower limit.
    Underload,
    /// `L`: logical error (e.g. a parameter out of range).
    Logical,
}

impl MtSicsStatus {
    fn letter(self) -> u8 {
        match self {
            Self::Done => b'A',
            Self::NotExecutable => b'I',
            Self::Overload => b'+',
            Self::Underload => b'-',
            Self::Logical => b'L',
        }
    }
    fn from_letter(b: u8) -> Option<Self> {
        Some(match b {
            b'A' => Self::Done,
            b'I' => Self::NotExecutable,
            b'+' => Self::Overload,
            b'-' => Self::Underload,
            b'L' => Self::Logical,
            _ => return None,
        })
    }
}

/// `ES`, `ET`, `EL`: the terminal did not understand the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MtSicsError {
    Syntax,
    Transmission,
    Logical,
}

/// One reply line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MtSicsReply {
    /// `<command> S|D|A <weight> <unit>`; `dynamic` for `D`.
    Weight {
        command: String,
        dynamic: bool,
        weight: Decimal,
        unit: String,
    },
    /// `<command> <status>` without a weight.
    Status {
        command: String,
        status: MtSicsStatus,
    },
    Error(MtSicsError),
    /// Any other printable line (identification replies), as text.
    Other(String),
}

/// A unit symbol as MT-SICS writes it, when we can convert it.
pub fn unit_from_symbol(symbol: &str) -> Option<Unit> {
    Some(match symbol {
        "kg" => Unit::Kg,
        "g" => Unit::G,
        "t" => Unit::T,
        "lb" => Unit::Lb,
        "oz" => Unit::Oz,
        _ => return None,
    })
}

impl MtSicsReply {
    /// Weight and status replies to weighing commands are readings; `T S` gives a tare.
    pub fn measurement(self) -> Measurement {
        let weighing = |c: &str| c.starts_with('S');
        match self {
            Self::Weight {
                command,
                dynamic,
                weight,
                unit,
            } => {
                let unit = unit_from_symbol(&unit);
                let r = match unit {
                    Some(u) => ScaleReading::displayed(weight, u, false, Some(dynamic)),
                    None => ScaleReading::status_only(ScaleStatus::Ok),
                };
                if weighing(&command) {
                    Measurement::Weight(ScaleReading {
                        gross_kg: None,
                        ..r
                    })
                } else if command.starts_with('T') {
                    Measurement::Weight(ScaleReading {
                        tare_kg: r.weight_kg,
                        ..ScaleReading::status_only(ScaleStatus::Ok)
                    })
                } else {
                    Measurement::Other(format!("{command} {}", weight.plain()))
                }
            }
            Self::Status { command, status } if weighing(&command) => {
                Measurement::Weight(ScaleReading::status_only(match status {
                    MtSicsStatus::Overload => ScaleStatus::Overload,
                    MtSicsStatus::Underload => ScaleStatus::Underload,
                    _ => ScaleStatus::Error,
                }))
            }
            Self::Error(_) => Measurement::Weight(ScaleReading::status_only(ScaleStatus::Error)),
            other => {
                let mut out = Vec::new();
                encode_reply(&other, &mut out);
                Measurement::Other(String::from_utf8_lossy(&out).trim_end().to_string())
            }
        }
    }
}

/// Decode one reply line.
pub fn decode_reply(buf: &[u8]) -> Result<Option<(MtSicsReply, usize)>, FrameError> {
    let Some((line, n)) = take_line(buf, b'\n', MAX_LINE)? else {
        return Ok(None);
    };
    let malformed = |reason| FrameError::new(n, FrameErrorKind::Malformed { reason });
    if let Some(offset) = line.iter().position(|b| !(0x20..0x7F).contains(b)) {
        return Err(FrameError::new(
            n,
            FrameErrorKind::BadDigit {
                offset,
                value: line[offset],
            },
        ));
    }
    let text = std::str::from_utf8(line).map_err(|_| malformed("not ASCII"))?;
    // At most five tokens are kept (no reply has more than four), without allocating.
    let (mut kept, mut count) = ([""; 5], 0);
    for token in text.split(' ').filter(|t| !t.is_empty()) {
        if let Some(slot) = kept.get_mut(count) {
            *slot = token;
        }
        count += 1;
    }
    let tokens = &kept[..count.min(kept.len())];
    let reply = match tokens {
        ["ES"] => MtSicsReply::Error(MtSicsError::Syntax),
        ["ET"] => MtSicsReply::Error(MtSicsError::Transmission),
        ["EL"] => MtSicsReply::Error(MtSicsError::Logical),
        [command, status, weight, unit]
            if matches!(*status, "S" | "D" | "A") && is_command(command) =>
        {
            match Decimal::parse(weight.as_bytes()) {
                Some(weight) => MtSicsReply::Weight {
                    command: (*command).to_string(),
                    dynamic: *status == "D",
                    weight,
                    unit: (*unit).to_string(),
                },
                None => MtSicsReply::Other(text.to_string()),
            }
        }
        [command, status] if is_command(command) && status.len() == 1 => {
            match MtSicsStatus::from_letter(status.as_bytes()[0]) {
                Some(status) => MtSicsReply::Status {
                    command: (*command).to_string(),
                    status,
                },
                None => MtSicsReply::Other(text.to_string()),
            }
        }
        [] => return Err(malformed("blank line")),
        _ => MtSicsReply::Other(text.trim().to_string()),
    };
    Ok(Some((reply, n)))
}

fn is_command(token: &str) -> bool {
    (1..=4).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'@')
}

/// Append one reply line; the weight is right-aligned in 10 characters.
pub fn encode_reply(reply: &MtSicsReply, out: &mut Vec<u8>) {
    match reply {
        MtSicsReply::Weight {
            command,
            dynamic,
            weight,
            unit,
        } => {
            let status = if *dynamic { 'D' } else { 'S' };
            let weight = weight.plain();
            out.extend_from_slice(format!("{command} {status} {weight:>10} {unit}").as_bytes());
        }
        MtSicsReply::Status { command, status } => {
            out.extend_from_slice(command.as_bytes());
            out.extend_from_slice(&[b' ', status.letter()]);
        }
        MtSicsReply::Error(e) => out.extend_from_slice(match e {
            MtSicsError::Syntax => b"ES",
            MtSicsError::Transmission => b"ET",
            MtSicsError::Logical => b"EL",
        }),
        MtSicsReply::Other(text) => out.extend_from_slice(text.as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
}

/// Replies (the host's side) as a [`crate::Protocol`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MtSicsReplies;

crate::codec::module_protocol!(MtSicsReplies, MtSicsReply, decode_reply, encode_reply);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{assert_resyncs, assert_round_trip};
    use proptest::prelude::*;

    fn weight(command: &str, dynamic: bool, m: i64, d: u8, unit: &str) -> MtSicsReply {
        MtSicsReply::Weight {
            command: command.into(),
            dynamic,
            weight: Decimal::new(m, d),
            unit: unit.into(),
        }
    }

    fn enc(r: &MtSicsReply) -> Vec<u8> {
        let mut out = Vec::new();
        encode_reply(r, &mut out);
        out
    }

    /// The manual's examples, byte for byte.
    #[test]
    fn manual_replies() {
        let stable = weight("S", false, 10000, 2, "g");
        assert_round_trip(decode_reply, b"S S     100.00 g\r\n", &stable);
        assert_eq!(enc(&stable), b"S S     100.00 g\r\n");
        assert_round_trip(
            decode_reply,
            b"T S   2.486 g\r\n",
            &weight("T", false, 2486, 3, "g"),
        );
        assert_round_trip(
            decode_reply,
            b"S D     100.01 g\r\n",
            &weight("S", true, 10001, 2, "g"),
        );
        for (line, status) in [
            (&b"S I\r\n"[..], MtSicsStatus::NotExecutable),
            (b"S +\r\n", MtSicsStatus::Overload),
            (b"S -\r\n", MtSicsStatus::Underload),
            (b"Z A\r\n", MtSicsStatus::Done),
        ] {
            let command = String::from_utf8_lossy(&line[..1]).to_string();
            assert_round_trip(decode_reply, line, &MtSicsReply::Status { command, status });
        }
        assert_round_trip(
            decode_reply,
            b"ES\r\n",
            &MtSicsReply::Error(MtSicsError::Syntax),
        );
        assert_round_trip(
            decode_reply,
            b"ET\r\n",
            &MtSicsReply::Error(MtSicsError::Transmission),
        );
        assert_round_trip(
            decode_reply,
            b"EL\r\n",
            &MtSicsReply::Error(MtSicsError::Logical),
        );
        assert_round_trip(
            decode_reply,
            b"I4 A \"0123456789\"\r\n",
            &MtSicsReply::Other("I4 A \"0123456789\"".into()),
        );
    }

    #[test]
    fn replies_as_readings() {
        let Measurement::Weight(r) = weight("S", true, 12345, 1, "kg").measurement() else {
            panic!("a weight reply is a reading");
        };
        assert_eq!(
            (r.weight_kg, r.motion, r.status),
            (Some(1234.5), Some(true), ScaleStatus::Ok)
        );
        let Measurement::Weight(t) = weight("T", false, 2486, 3, "g").measurement() else {
            panic!("a tare reply is a reading");
        };
        assert_eq!((t.weight_kg, t.tare_kg), (None, Some(0.002486)));
        let over = MtSicsReply::Status {
            command: "S".into(),
            status: MtSicsStatus::Overload,
        };
        assert_eq!(
            over.measurement(),
            Measurement::Weight(ScaleReading::status_only(ScaleStatus::Overload))
        );
        let zeroed = MtSicsReply::Status {
            command: "Z".into(),
            status: MtSicsStatus::Done,
        };
        assert_eq!(zeroed.measurement(), Measurement::Other("Z A".into()));
    }

    #[test]
    fn commands() {
        let mut out = Vec::new();
        encode_command(MtSicsCommand::WeighImmediately, &mut out);
        assert_eq!(out, b"SI\r\n");
        assert_eq!(
            decode_command(b"SI\r\nS"),
            Ok(Some((MtSicsCommand::WeighImmediately, 4)))
        );
        assert_eq!(decode_command(b"@\n"), Ok(Some((MtSicsCommand::Reset, 2))));
        assert_eq!(
            decode_command(b"XYZ\r\n"),
            Ok(Some((MtSicsCommand::Unknown("XYZ".into()), 5)))
        );
        assert_eq!(decode_command(b"T"), Ok(None));
    }

    #[test]
    fn control_bytes_and_long_lines_are_rejected() {
        assert!(decode_reply(b"S S \x01 1 g\r\n").is_err());
        let long = vec![b'S'; MAX_LINE + 5];
        assert_eq!(decode_reply(&long).expect_err("too long").skip, MAX_LINE);
    }

    fn arb_reply() -> impl Strategy<Value = MtSicsReply> {
        let weight = (
            prop_oneof![Just("S"), Just("T"), Just("SI")],
            any::<bool>(),
            -99_999_999i64..=99_999_999,
            0u8..=3,
            prop_oneof![Just("g"), Just("kg"), Just("t"), Just("lb")],
        )
            .prop_map(|(c, dy, m, d, u)| weight(c, dy, m, d, u));
        let status = (
            prop_oneof![Just("S"), Just("Z"), Just("T")],
            prop_oneof![
                Just(MtSicsStatus::Done),
                Just(MtSicsStatus::NotExecutable),
                Just(MtSicsStatus::Overload),
                Just(MtSicsStatus::Underload),
                Just(MtSicsStatus::Logical)
            ],
        )
            .prop_map(|(c, status)| MtSicsReply::Status {
                command: c.into(),
                status,
            });
        let error = prop_oneof![
            Just(MtSicsError::Syntax),
            Just(MtSicsError::Transmission),
            Just(MtSicsError::Logical)
        ]
        .prop_map(MtSicsReply::Error);
        prop_oneof![weight, status, error]
    }

    proptest! {
        #[test]
        fn round_trip(r in arb_reply()) {
            assert_round_trip(decode_reply, &enc(&r), &r);
        }

        #[test]
        fn garbage_resynchronises(garbage in proptest::collection::vec(any::<u8>(), 0..60),
                                  a in arb_reply(), b in arb_reply()) {
            assert_resyncs(decode_reply, &garbage, &enc(&a), &enc(&b), &b);
        }
    }
}
