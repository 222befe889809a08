//! `generic`: an indicator nobody planned for, described by a regular expression.
//!
//! The integrator writes one regex (Rust `regex` syntax) that matches one line of the indicator's
//! output, with named groups the decoder understands:
//!
//! | Group | Meaning |
//! |---|---|
//! | `weight` (required) | the displayed weight: optional sign, digits, optional `.`, spaces allowed |
//! | `sign` | `-` makes the weight negative (for indicators that send the sign apart) |
//! | `unit` | `kg`, `g`, `t` (converted), `lb`, `oz` (not converted); absent: kg |
//! | `gross`, `tare`, `net` | further weights, same unit |
//! | `net_flag` | non-empty: the displayed weight is net (else gross) |
//! | `motion` | non-empty: in motion; the group absent from the pattern: no motion flag |
//! | `overload`, `underload`, `error` | non-empty: that status |
//!
//! Example, for `ST,GS,+0012.34kg` lines:
//! `^(?P<motion>US)?(?:ST)?,(?:GS|NT),(?P<weight>[+-]?[0-9.]+)(?P<unit>kg|g|t)$`.
//!
//! # Framing
//!
//! Lines end with [`GenericCodec::terminator`] (default `LF`; a `CR` before it is dropped) and
//! are at most [`MAX_LINE`] bytes. A line the pattern does not match, or whose `weight` does not
//! parse, is garbage (skipped through its terminator), so garbage costs at most the one line it
//! runs into. The regex crate guarantees matching in time linear in the line, so a hostile stream
//! cannot stall the decoder.
//!
//! # Cost
//!
//! About 60 ns for an 18-byte line (~300 MB/s, `cargo bench -p bcp-drivers --bench decoders`),
//! most of it the regex's capture engine. Nothing is allocated per line: the pattern runs on
//! `regex-automata`'s meta engine (the engine under the `regex` crate, built with the same
//! settings as `regex::bytes::Regex`) with the capture slots on the stack, only as many as the
//! groups the decoder reads; the unit is compared without lowercasing a copy. A differential
//! property test holds the decoder to `regex::bytes::Regex::captures` on the same pattern.

use crate::frame::{take_line, FrameError, FrameErrorKind};
use crate::indicator::{Decimal, ScaleReading, ScaleStatus, Unit};
use regex_automata::meta::{self, Regex};
use regex_automata::util::primitives::NonMaxUsize;
use regex_automata::{util::syntax, Input};

/// Longest accepted line, terminator included.
pub const MAX_LINE: usize = 128;

/// A pattern that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenericPatternError {
    #[error("generic protocol pattern: {0}")]
    Regex(String),
    #[error("generic protocol pattern has no (?P<weight>...) group")]
    NoWeightGroup,
}

/// Capture slots a line's match fills on the stack: two per group, room for the whole match and
/// the eleven groups the decoder reads. A pattern with other groups before the ones the decoder
/// reads may need more: those lines get their slots on the heap.
const STACK_SLOTS: usize = 24;

/// The decoder: a compiled pattern and a line terminator.
#[derive(Debug, Clone)]
pub struct GenericCodec {
    pattern: Regex,
    /// The pattern as given.
    source: String,
    /// How many capture slots a match fills: two per group, up to the highest group read.
    slots: usize,
    /// Group indices by name, looked up once (a name lookup per line costs more than the match).
    groups: Groups,
    pub terminator: u8,
}

/// Index of each named group the decoder understands, if the pattern has it.
#[derive(Debug, Clone, Copy, Default)]
struct Groups {
    weight: usize,
    sign: Option<usize>,
    unit: Option<usize>,
    motion: Option<usize>,
    net_flag: Option<usize>,
    gross: Option<usize>,
    tare: Option<usize>,
    net: Option<usize>,
    error: Option<usize>,
    underload: Option<usize>,
    overload: Option<usize>,
}

impl GenericCodec {
    /// Compile `pattern`; it must have a `weight` group.
    pub fn new(pattern: &str) -> Result<Self, GenericPatternError> {
        // As `regex::bytes::Regex::new` builds it: lines are bytes, not necessarily UTF-8.
        let compiled = meta::Builder::new()
            .configure(
                meta::Config::new()
                    .utf8_empty(false)
                    .nfa_size_limit(Some(10 << 20))
                    .hybrid_cache_capacity(2 << 20),
            )
            .syntax(syntax::Config::new().utf8(false))
            .build(pattern)
            .map_err(|e| {
                // The syntax error shows the pattern with a caret under the fault.
                GenericPatternError::Regex(match e.syntax_error() {
                    Some(syntax) => syntax.to_string(),
                    None => e.to_string(),
                })
            })?;
        let index = |name: &str| {
            compiled
                .group_info()
                .to_index(regex_automata::PatternID::ZERO, name)
        };
        let groups = Groups {
            weight: index("weight").ok_or(GenericPatternError::NoWeightGroup)?,
            sign: index("sign"),
            unit: index("unit"),
            motion: index("motion"),
            net_flag: index("net_flag"),
            gross: index("gross"),
            tare: index("tare"),
            net: index("net"),
            error: index("error"),
            underload: index("underload"),
            overload: index("overload"),
        };
        Ok(Self {
            pattern: compiled,
            source: pattern.to_owned(),
            slots: 2 * (groups.highest() + 1),
            groups,
            terminator: b'\n',
        })
    }

    /// The pattern as given.
    pub fn pattern(&self) -> &str {
        &self.source
    }

    /// Decode one line into a reading.
    pub fn decode(&self, buf: &[u8]) -> Result<Option<(ScaleReading, usize)>, FrameError> {
        let Some((line, n)) = take_line(buf, self.terminator, MAX_LINE)? else {
            return Ok(None);
        };
        let mut stack = [None; STACK_SLOTS];
        let mut heap = Vec::new();
        let slots = match stack.get_mut(..self.slots) {
            Some(slots) => slots,
            None => {
                heap.resize(self.slots, None);
                &mut heap[..]
            }
        };
        self.read(line, n, slots)
    }

    /// The reading in `line` (`n` bytes with its terminator), matched into `slots`.
    fn read(
        &self,
        line: &[u8],
        n: usize,
        slots: &mut [Option<NonMaxUsize>],
    ) -> Result<Option<(ScaleReading, usize)>, FrameError> {
        let malformed = |reason| FrameError::new(n, FrameErrorKind::Malformed { reason });
        self.pattern
            .search_slots(&Input::new(line), slots)
            .ok_or_else(|| malformed("the pattern does not match"))?;
        let slots = &*slots;
        let text = |index: Option<usize>| {
            let i = index?;
            let (start, end) = (slots.get(2 * i).copied()??, slots.get(2 * i + 1).copied()??);
            line.get(start.get()..end.get()).filter(|t| !t.is_empty())
        };
        self.groups.reading(text, malformed).map(|r| Some((r, n)))
    }
}

impl Groups {
    /// The highest index of a group the decoder reads.
    fn highest(&self) -> usize {
        [
            self.sign,
            self.unit,
            self.motion,
            self.net_flag,
            self.gross,
            self.tare,
            self.net,
            self.error,
            self.underload,
            self.overload,
        ]
        .into_iter()
        .flatten()
        .fold(self.weight, usize::max)
    }

    /// The reading the groups of one matched line make, given each group's text (`text(index)`:
    /// `None` when the group did not take part or matched nothing).
    #[inline(always)] // one call per line, on the decoder's hot path: as fast as when it was inline
    fn reading<'l>(
        &self,
        text: impl Fn(Option<usize>) -> Option<&'l [u8]>,
        malformed: impl Fn(&'static str) -> FrameError,
    ) -> Result<ScaleReading, FrameError> {
        let g = self;
        let unit = match text(g.unit) {
            None => Unit::Kg,
            Some(u) if u.eq_ignore_ascii_case(b"kg") => Unit::Kg,
            Some(u) if u.eq_ignore_ascii_case(b"g") => Unit::G,
            Some(u) if u.eq_ignore_ascii_case(b"t") => Unit::T,
            Some(u) if u.eq_ignore_ascii_case(b"lb") => Unit::Lb,
            Some(u) if u.eq_ignore_ascii_case(b"oz") => Unit::Oz,
            Some(_) => return Err(malformed("unknown unit")),
        };
        let number = |index: Option<usize>| -> Result<Option<Decimal>, FrameError> {
            text(index)
                .map(|t| {
                    Decimal::parse(t).ok_or_else(|| malformed("a weight group is not a number"))
                })
                .transpose()
        };
        let mut weight = number(Some(g.weight))?.ok_or_else(|| malformed("empty weight"))?;
        if text(g.sign) == Some(b"-") {
            weight.mantissa = -weight.mantissa.abs();
        }
        let motion = g.motion.map(|i| text(Some(i)).is_some());
        let net = text(g.net_flag).is_some();
        let mut r = ScaleReading::displayed(weight, unit, net, motion);
        let kg = |d: Option<Decimal>| d.and_then(|d| unit.to_kg(d));
        r.gross_kg = kg(number(g.gross)?).or(r.gross_kg);
        r.tare_kg = kg(number(g.tare)?);
        r.net_kg = kg(number(g.net)?).or(r.net_kg);
        for (index, status) in [
            (g.error, ScaleStatus::Error),
            (g.underload, ScaleStatus::Underload),
            (g.overload, ScaleStatus::Overload),
        ] {
            if text(index).is_some() {
                r.status = status;
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::assert_resyncs;
    use proptest::prelude::*;

    /// The decoder on `regex::bytes::Regex::captures` (compiled from the same pattern, a fresh
    /// `Captures` per line), sharing only the groups' interpretation: the reference the
    /// differential property test holds the meta engine and its stack slots to.
    fn reference_decode(
        c: &GenericCodec,
        re: &regex::bytes::Regex,
        buf: &[u8],
    ) -> Result<Option<(ScaleReading, usize)>, FrameError> {
        let Some((line, n)) = take_line(buf, c.terminator, MAX_LINE)? else {
            return Ok(None);
        };
        let malformed = |reason| FrameError::new(n, FrameErrorKind::Malformed { reason });
        let caps = re
            .captures(line)
            .ok_or_else(|| malformed("the pattern does not match"))?;
        let text = |index: Option<usize>| {
            index
                .and_then(|i| caps.get(i))
                .map(|m| m.as_bytes())
                .filter(|t| !t.is_empty())
        };
        c.groups.reading(text, malformed).map(|r| Some((r, n)))
    }

    /// The common "ST,GS,+0012.34kg" layout (A&D, many Chinese indicators).
    const AND: &str = r"^(?P<motion>US)?(?:ST|OL)?,(?P<net_flag>NT)?(?:GS)?,(?P<weight>[+-]?[0-9. ]+)(?P<unit>kg|g|t)$";

    #[test]
    fn a_and_d_style_lines() {
        let c = GenericCodec::new(AND).expect("valid pattern");
        let (r, n) = c
            .decode(b"ST,GS,+0012.34kg\r\nUS")
            .expect("ok")
            .expect("complete");
        assert_eq!(n, 18);
        assert_eq!(
            (r.weight_kg, r.gross_kg, r.motion),
            (Some(12.34), Some(12.34), Some(false))
        );
        let (r, _) = c
            .decode(b"US,NT,-0000.50kg\n")
            .expect("ok")
            .expect("complete");
        assert_eq!((r.net_kg, r.motion), (Some(-0.5), Some(true)));
        assert_eq!(c.decode(b"ST,GS,+0012"), Ok(None));
        assert!(c.decode(b"hello\n").is_err());
    }

    #[test]
    fn statuses_and_extra_weights() {
        let c = GenericCodec::new(
            r"^(?P<overload>OVER)?G(?P<gross>\d+) T(?P<tare>\d+) N(?P<weight>\d+)$",
        )
        .expect("valid");
        let (r, _) = c
            .decode(b"G15000 T5000 N10000\n")
            .expect("ok")
            .expect("complete");
        assert_eq!(
            (r.gross_kg, r.tare_kg, r.weight_kg, r.motion),
            (Some(15000.0), Some(5000.0), Some(10000.0), None)
        );
        let (r, _) = c.decode(b"OVERG1 T0 N1\n").expect("ok").expect("complete");
        assert_eq!(r.status, ScaleStatus::Overload);
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert_eq!(
            GenericCodec::new(r"(?P<w>\d+)").map(|_| ()),
            Err(GenericPatternError::NoWeightGroup)
        );
        assert!(matches!(
            GenericCodec::new(r"(?P<weight>\d+"),
            Err(GenericPatternError::Regex(_))
        ));
    }

    proptest! {
        #[test]
        fn round_trip_through_text(m in -99_999_999i64..=99_999_999, d in 0u8..=3, motion in any::<bool>()) {
            let c = GenericCodec::new(AND).expect("valid pattern");
            let w = Decimal::new(m, d);
            let line = format!("{},GS,{}kg\r\n", if motion { "US" } else { "ST" }, w.plain());
            let (r, n) = c.decode(line.as_bytes()).expect("ok").expect("complete");
            prop_assert_eq!(n, line.len());
            prop_assert_eq!(r.weight_kg, Some(w.to_f64()));
            prop_assert_eq!(r.motion, Some(motion));
        }

        /// The decoder answers exactly as the reference on `regex::bytes::Regex`, whichever of
        /// several patterns (anchored or not, with units, signs, statuses, extra weights, a
        /// group read beyond the stack's slots) decoded last, on lines made of the characters
        /// the patterns care about.
        #[test]
        fn decodes_exactly_as_the_regex_crate(
            lines in proptest::collection::vec(
                proptest::collection::vec(
                    prop::sample::select(b"USTGNOLVERKkgtlbzo,+- .0123456789\r\n\x00\xff".to_vec()),
                    0..40,
                ),
                1..8,
            ),
            order in proptest::collection::vec(0usize..5, 8),
        ) {
            let codecs = [
                GenericCodec::new(AND).expect("valid"),
                GenericCodec::new(r"(?P<motion>US)?(?:ST)?,(?:GS),(?P<weight>[+-]?[0-9.]+)(?P<unit>kg|KG|g|t|lb|oz)$").expect("valid"),
                GenericCodec::new(r"^(?P<overload>OVER)?(?P<underload>UL)?G(?P<gross>\d+) T(?P<tare>\d+) N(?P<weight>[0-9 .]*)(?P<sign>-)?(?P<unit>[a-zA-Z]*)$").expect("valid"),
                GenericCodec::new(r"(?P<error>E)?(?P<net_flag>N)?(?P<weight>[0-9]+)").expect("valid"),
                GenericCodec::new(&format!("{}(?P<motion>U)?(?P<weight>[0-9. ]+)(?P<unit>kg)?", "()".repeat(20))).expect("valid"),
            ];
            let references = codecs
                .each_ref()
                .map(|c| regex::bytes::Regex::new(c.pattern()).expect("valid"));
            for (i, line) in lines.iter().enumerate() {
                let which = order[i % order.len()];
                let (c, re) = (&codecs[which], &references[which]);
                // A clone decodes as its original.
                let clone = c.clone();
                let mut pos = 0;
                while pos < line.len() {
                    let got = if pos % 2 == 0 { c.decode(&line[pos..]) } else { clone.decode(&line[pos..]) };
                    let want = reference_decode(c, re, &line[pos..]);
                    prop_assert_eq!(&got, &want, "pattern {} on {:?}", c.pattern(), &line[pos..]);
                    match got {
                        Ok(Some((_, n))) => pos += n,
                        Ok(None) => break,
                        Err(e) => pos += e.skip,
                    }
                }
            }
        }

        #[test]
        fn garbage_resynchronises(garbage in proptest::collection::vec(any::<u8>(), 0..60), m in 0i64..=99_999) {
            let c = GenericCodec::new(AND).expect("valid pattern");
            let line = format!("ST,GS,{m}kg\r\n");
            let (expected, _) = c.decode(line.as_bytes()).expect("ok").expect("complete");
            assert_resyncs(|b| c.decode(b), &garbage, line.as_bytes(), line.as_bytes(), &expected);
        }
    }
}
