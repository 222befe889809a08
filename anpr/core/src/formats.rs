//! Regional plate grammars as data, and position-aware correction of OCR reads.
//!
//! A [`PlateFormat`] is a list of patterns as printed (`D` a digit, `L` a letter, `[DF]` one of
//! the letters listed, spaces only for display), the letters the country uses, and an optional
//! region-code rule on the leading or trailing run of digits. Matching a normalised read against
//! a pattern fixes the classic OCR confusions *by position*: a letter where the grammar wants a
//! digit becomes the digit it looks like (`O`->`0`, `I`->`1`, `B`->`8`, `S`->`5`, `Z`->`2`,
//! `G`->`6`, ..) and the other way round.
//! Each fix costs one; a leading or trailing run of up to three letters (a country code read from
//! the plate's strip, e.g. `TJ`, `RUS`) may be dropped at a cost of one. The fit with the lowest
//! cost wins; at equal cost the one that drops fewer characters (`B1234SD` is the Chinese
//! `B12345D` with one fix, not `B1234S` with the `D` dropped), then the earlier format in the
//! list, so the local region comes first.

use std::cmp::Reverse;

/// Where a region code sits in a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionAt {
    /// The first group of the printed pattern (UZ `01 A 123 BC`, KG `01 123 ABC`).
    FirstGroup,
    /// The last group of the printed pattern (TJ `1234 AB 01`, KZ `123 ABC 02`, RU `A 123 BC 77`).
    LastGroup,
}

/// Valid values of a region code (a group of digits in the pattern).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Which group of the pattern is the region.
    pub at: RegionAt,
    /// Valid codes, as inclusive ranges.
    pub codes: &'static [(u32, u32)],
}

impl Region {
    /// Whether `code` is a valid region code.
    pub fn is_valid(&self, code: u32) -> bool {
        self.codes.iter().any(|&(lo, hi)| (lo..=hi).contains(&code))
    }
}

/// A country's plate grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlateFormat {
    /// Short code reported with a match ("TJ", "UZ", ..).
    pub code: &'static str,
    /// Patterns as printed: `D` digit, `L` letter, `[..]` one of the letters listed (a fixed
    /// letter is `[P]`), space for display only.
    pub patterns: &'static [&'static str],
    /// Letters allowed at `L` positions.
    pub letters: &'static str,
    /// Region-code rule, if the country has one that can be checked.
    pub region: Option<Region>,
}

const LATIN: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// Turkish plates use no Q, W or X.
const TR_LETTERS: &str = "ABCDEFGHIJKLMNOPRSTUVYZ";
/// Chinese plates use no I or O (they would read as 1 and 0).
const CN_LETTERS: &str = "ABCDEFGHJKLMNPQRSTUVWXYZ";
/// Russian plates use only the Cyrillic letters that look Latin.
const RU_LETTERS: &str = "ABEKMHOPCTYX";

/// Uzbek region codes (01 Tashkent city, 10 Tashkent region, .. 95 Karakalpakstan).
const UZ_REGIONS: &[(u32, u32)] = &[
    (1, 1),
    (10, 10),
    (20, 20),
    (25, 25),
    (30, 30),
    (40, 40),
    (50, 50),
    (60, 60),
    (70, 70),
    (75, 75),
    (80, 80),
    (85, 85),
    (90, 90),
    (95, 95),
];

/// Afghanistan: province, 2-5 digits, class (see the format's comment). Plates with one digit
/// exist but are not listed: `LLL D L` is short enough that words fit it (`TOYOTA` would read as
/// `TOY0T`, the last `A` dropped as a country code).
const AF_PATTERNS: &[&str] = &[
    "LLL DD [BLMT]",
    "LLL DDD [BLMT]",
    "LLL DDDD [BLMT]",
    "LLL DDDDD [BLMT]",
    "LLL DD [C][D]",
    "LLL DDD [C][D]",
    "LLL DDDD [C][D]",
    "LLL DDDDD [C][D]",
    "LLL DD [S][H]",
    "LLL DDD [S][H]",
    "LLL DDDD [S][H]",
    "LLL DDDDD [S][H]",
    "LLL DD [P][R][V]",
    "LLL DDD [P][R][V]",
    "LLL DDDD [P][R][V]",
    "LLL DDDDD [P][R][V]",
    "LLL DD [T][R][C]",
    "LLL DDD [T][R][C]",
    "LLL DDDD [T][R][C]",
    "LLL DDDDD [T][R][C]",
    "LLL DD [D][U][P][L]",
    "LLL DDD [D][U][P][L]",
    "LLL DDDD [D][U][P][L]",
    "LLL DDDDD [D][U][P][L]",
    "LLL DD [T][E][M][P]",
    "LLL DDD [T][E][M][P]",
    "LLL DDDD [T][E][M][P]",
    "LLL DDDDD [T][E][M][P]",
];

/// The built-in formats, local region first (ties between formats go to the earlier one): the
/// Central Asian and neighbouring countries' plates before the formats of the dev set (BR, EU,
/// US), so a six-character `XNR374` that fits both China and the US is labelled CN.
pub static FORMATS: &[PlateFormat] = &[
    PlateFormat {
        code: "TJ",
        patterns: &["DDDD LL DD"],
        letters: LATIN,
        region: Some(Region {
            at: RegionAt::LastGroup,
            codes: &[(1, 8)],
        }),
    },
    PlateFormat {
        code: "UZ",
        patterns: &["DD L DDD LL", "DD DDD LLL"],
        letters: LATIN,
        region: Some(Region {
            at: RegionAt::FirstGroup,
            codes: UZ_REGIONS,
        }),
    },
    PlateFormat {
        code: "KZ",
        patterns: &["DDD LL DD", "DDD LLL DD"],
        letters: LATIN,
        region: Some(Region {
            at: RegionAt::LastGroup,
            codes: &[(1, 20)],
        }),
    },
    PlateFormat {
        code: "KG",
        patterns: &["DD DDD LL", "DD DDD LLL"],
        letters: LATIN,
        region: Some(Region {
            at: RegionAt::FirstGroup,
            codes: &[(1, 9)],
        }),
    },
    // Afghanistan (2004+), the Latin line: three-letter province code, 1-5 digits (one-digit
    // numbers left out, see AF_PATTERNS), vehicle class (B bus, L lorry, M motorcycle, T taxi,
    // CD diplomatic, SH or PRV private, TRC rickshaw, DUPL duplicate, TEMP temporary; en/de
    // Wikipedia; the order on the plate is from their descriptions, unverified on photos). Province codes differ between sources (BLH or
    // BAL for Balkh), so any three letters are taken. Kabul's sixth digit is printed in Persian
    // only and is not part of the Latin read.
    PlateFormat {
        code: "AF",
        patterns: AF_PATTERNS,
        letters: LATIN,
        region: None,
    },
    PlateFormat {
        code: "RU",
        patterns: &["L DDD LL DD", "L DDD LL DDD"],
        letters: RU_LETTERS,
        region: Some(Region {
            at: RegionAt::LastGroup,
            codes: &[(1, 999)],
        }),
    },
    // Russia, a trailer's (semi-trailer's) plate: two letters, four digits, the region
    // (`AB 1234 77`); the same twelve letters. A post lists it in `anpr.formats` when its rear
    // camera reads trailers.
    PlateFormat {
        code: "RU-TRAILER",
        patterns: &["LL DDDD DD", "LL DDDD DDD"],
        letters: RU_LETTERS,
        region: Some(Region {
            at: RegionAt::LastGroup,
            codes: &[(1, 999)],
        }),
    },
    // Turkey: province 01-81, 1-3 letters (no Q, W, X), 2-5 digits.
    PlateFormat {
        code: "TR",
        patterns: &[
            "DD L DDDD",
            "DD L DDDDD",
            "DD LL DDD",
            "DD LL DDDD",
            "DD LLL DD",
            "DD LLL DDD",
        ],
        letters: TR_LETTERS,
        region: Some(Region {
            at: RegionAt::FirstGroup,
            codes: &[(1, 81)],
        }),
    },
    // China, the Latin part (the province's Han character is dropped by normalisation):
    // authority letter + five-character serial of digits and at most two letters (GA 36; plate
    // examples 沪A·12345, 京C·A1234, 苏A·1P234, 浙B·AB987; the two-letter bound is what keeps
    // this grammar from taking other countries' six-character reads); new-energy plates (2016+)
    // have six: small D/F + letter or digit + four digits, large five digits + D/F. No I or O.
    PlateFormat {
        code: "CN",
        patterns: &[
            "L DDDDD",
            "L LDDDD",
            "L DLDDD",
            "L DDLDD",
            "L DDDLD",
            "L DDDDL",
            "L LLDDD",
            "L LDLDD",
            "L LDDLD",
            "L LDDDL",
            "L DLLDD",
            "L DLDLD",
            "L DLDDL",
            "L DDLLD",
            "L DDLDL",
            "L DDDLL",
            "L [DF]DDDDD",
            "L [DF]LDDDD",
            "L DDDDD[DF]",
        ],
        letters: CN_LETTERS,
        region: None,
    },
    // Brazil: Mercosur (2018+) and the older grey plates.
    PlateFormat {
        code: "BR",
        patterns: &["LLL D L DD", "LLL DDDD"],
        letters: LATIN,
        region: None,
    },
    // The EU formats of the dev set: two-letter area + digits + letters (HR, RS, ME, MK, SK ..),
    // Bulgarian-style digit-letter + five digits, and three letters + four digits.
    PlateFormat {
        code: "EU",
        patterns: &["LL DDD LL", "LL DDDD LL", "D L DDDDD", "LLL DDDD"],
        letters: LATIN,
        region: None,
    },
    // United States: the common passenger layouts (any state may issue others).
    PlateFormat {
        code: "US",
        patterns: &[
            "D LLL DDD",
            "LLL DDDD",
            "LLL DDD",
            "LL D L D L",
            "D LL DDD",
            "DDD LLL",
        ],
        letters: LATIN,
        region: None,
    },
    // Iran: `dd X ddd - dd`; the Persian letter is not Latin and normalisation drops it.
    PlateFormat {
        code: "IR",
        patterns: &["DD DDD DD"],
        letters: LATIN,
        region: None,
    },
];

/// A read that fits a format, after corrections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatMatch {
    /// The format's code.
    pub format: &'static str,
    /// The corrected text, normalised (no spaces).
    pub text: String,
    /// The matched pattern, as printed.
    pub pattern: &'static str,
    /// Number of corrections (character fixes plus dropped country codes).
    pub corrections: u32,
    /// Range of the input that the plate occupies (the rest was a dropped country code).
    pub span: std::ops::Range<usize>,
}

impl FormatMatch {
    /// Lower is better: corrections first, then the fewest characters dropped.
    fn rank(&self) -> (u32, Reverse<usize>) {
        (self.corrections, Reverse(self.span.len()))
    }

    /// The text spaced as printed, e.g. `1234 AB 01`.
    pub fn display(&self) -> String {
        let mut chars = self.text.chars();
        let groups: Vec<String> = groups(self.pattern)
            .iter()
            .map(|g| g.iter().map(|_| chars.next().unwrap_or('?')).collect())
            .collect();
        groups.join(" ")
    }
}

/// One position of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot<'a> {
    /// `D`: a digit.
    Digit,
    /// `L`: a letter of the format's set.
    Letter,
    /// `[..]`: one of these letters.
    OneOf(&'a str),
}

/// The positions of a pattern in its printed groups (separated by spaces).
fn groups(pattern: &str) -> Vec<Vec<Slot<'_>>> {
    let mut out: Vec<Vec<Slot<'_>>> = vec![Vec::new()];
    let mut rest = pattern;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        let slot = match c {
            ' ' => {
                if out.last().is_some_and(|g| !g.is_empty()) {
                    out.push(Vec::new());
                }
                continue;
            }
            '[' => {
                let end = rest.find(']').unwrap_or(rest.len());
                let set = &rest[..end];
                rest = rest.get(end + 1..).unwrap_or("");
                Slot::OneOf(set)
            }
            'D' => Slot::Digit,
            _ => Slot::Letter, // `L`; the built-in patterns are checked by a test
        };
        if let Some(g) = out.last_mut() {
            g.push(slot);
        }
    }
    out.retain(|g| !g.is_empty());
    out
}

/// One character of a read, normalised: ASCII uppercase letters and digits; Cyrillic letters
/// that look Latin become Latin; anything else (spaces, dashes, other scripts) is `None`.
pub fn normalise_char(c: char) -> Option<char> {
    let c = c.to_uppercase().next().unwrap_or(c);
    match c {
        'A'..='Z' | '0'..='9' => Some(c),
        'А' => Some('A'),
        'В' => Some('B'),
        'Е' | 'Ё' => Some('E'),
        'К' => Some('K'),
        'М' => Some('M'),
        'Н' => Some('H'),
        'О' => Some('O'),
        'Р' => Some('P'),
        'С' => Some('C'),
        'Т' => Some('T'),
        'У' => Some('Y'),
        'Х' => Some('X'),
        _ => None,
    }
}

/// Normalises a read: see [`normalise_char`].
pub fn normalise(raw: &str) -> String {
    raw.chars().filter_map(normalise_char).collect()
}

/// The digit a letter is often misread for.
pub(crate) fn as_digit(c: char) -> Option<char> {
    match c {
        '0'..='9' => Some(c),
        'O' | 'Q' | 'D' => Some('0'),
        'I' | 'L' => Some('1'),
        'Z' => Some('2'),
        'S' => Some('5'),
        'G' => Some('6'),
        'B' => Some('8'),
        _ => None,
    }
}

/// Whether plate fonts draw `a` and `b` alike: `O` and `0`, `I` and `1` (DIN 1451, the Russian
/// GOST font, most US dies), so a recogniser confuses them with confidence. The other pairs the
/// corrections fix (`2`/`Z`, `5`/`S`, `6`/`G`, `8`/`B`, `D`/`0`, `Q`/`0`, `L`/`1`) differ in
/// shape.
pub fn drawn_alike(a: char, b: char) -> bool {
    matches!((a, b), ('O', '0') | ('0', 'O') | ('I', '1') | ('1', 'I'))
}

/// The letter a digit is often misread for.
pub(crate) fn as_letter(c: char) -> Option<char> {
    match c {
        '0' => Some('O'),
        '1' => Some('I'),
        '2' => Some('Z'),
        '5' => Some('S'),
        '6' => Some('G'),
        '8' => Some('B'),
        _ => None,
    }
}

/// Fits `s` (normalised, exactly the pattern's length) to the pattern's `groups`; returns text
/// and fixes.
fn fit(format: &PlateFormat, groups: &[Vec<Slot<'_>>], s: &[char]) -> Option<(String, u32)> {
    let letter = |c: char| {
        if c.is_ascii_alphabetic() {
            Some(c)
        } else {
            as_letter(c)
        }
    };
    let mut out = String::with_capacity(s.len());
    let mut fixes = 0;
    for (slot, &c) in groups.iter().flatten().zip(s) {
        let fixed = match slot {
            Slot::Digit => as_digit(c)?,
            Slot::Letter => Some(letter(c)?).filter(|l| format.letters.contains(*l))?,
            Slot::OneOf(set) => Some(letter(c)?).filter(|l| set.contains(*l))?,
        };
        fixes += u32::from(fixed != c);
        out.push(fixed);
    }
    if let Some(region) = format.region {
        let group_len = match region.at {
            RegionAt::FirstGroup => groups.first(),
            RegionAt::LastGroup => groups.last(),
        }
        .map_or(0, Vec::len);
        let start = match region.at {
            RegionAt::FirstGroup => 0,
            RegionAt::LastGroup => out.len().saturating_sub(group_len),
        };
        let code: u32 = out.get(start..start + group_len)?.parse().ok()?;
        if !region.is_valid(code) {
            return None;
        }
    }
    Some((out, fixes))
}

/// Best fit of `normalised` to one format.
pub fn match_format(format: &PlateFormat, normalised: &str) -> Option<FormatMatch> {
    let s: Vec<char> = normalised.chars().collect();
    let mut best: Option<FormatMatch> = None;
    for &pattern in format.patterns {
        let groups = groups(pattern);
        let len = groups.iter().map(Vec::len).sum::<usize>();
        if s.len() < len || s.len() > len + 6 {
            continue;
        }
        let extra = s.len() - len;
        for lead in 0..=extra.min(3) {
            let trail = extra - lead;
            if trail > 3 {
                continue;
            }
            let dropped_ok = s[..lead].iter().all(char::is_ascii_alphabetic)
                && s[s.len() - trail..].iter().all(char::is_ascii_alphabetic);
            if !dropped_ok {
                continue;
            }
            let Some((text, fixes)) = fit(format, &groups, &s[lead..lead + len]) else {
                continue;
            };
            let corrections = fixes + u32::from(lead > 0) + u32::from(trail > 0);
            if best
                .as_ref()
                .is_none_or(|b| (corrections, Reverse(len)) < b.rank())
            {
                best = Some(FormatMatch {
                    format: format.code,
                    text,
                    pattern,
                    corrections,
                    span: lead..lead + len,
                });
            }
        }
    }
    best
}

/// Best fit of `normalised` among `formats` (fewest corrections, then the fewest characters
/// dropped, then list order).
pub fn best_match_in(formats: &[PlateFormat], normalised: &str) -> Option<FormatMatch> {
    let mut best: Option<FormatMatch> = None;
    for f in formats {
        if let Some(m) = match_format(f, normalised) {
            if best.as_ref().is_none_or(|b| m.rank() < b.rank()) {
                best = Some(m);
            }
        }
    }
    best
}

/// Best fit of `normalised` among the built-in [`FORMATS`].
pub fn best_match(normalised: &str) -> Option<FormatMatch> {
    best_match_in(FORMATS, normalised)
}

/// The format with this code, if built in.
pub fn by_code(code: &str) -> Option<&'static PlateFormat> {
    FORMATS.iter().find(|f| f.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Option<(&'static str, String, u32)> {
        best_match(&normalise(s)).map(|m| (m.format, m.text, m.corrections))
    }

    #[test]
    fn normalise_uppercases_and_strips_separators() {
        assert_eq!(normalise("1234 ab-01"), "1234AB01");
        assert_eq!(normalise("а123вс 77"), "A123BC77");
        assert_eq!(normalise("京A·12"), "A12");
    }

    #[test]
    fn exact_reads_match_their_format() {
        assert_eq!(m("1234 AB 01"), Some(("TJ", "1234AB01".into(), 0)));
        assert_eq!(m("01 A 123 BC"), Some(("UZ", "01A123BC".into(), 0)));
        assert_eq!(m("123 ABC 02"), Some(("KZ", "123ABC02".into(), 0)));
        assert_eq!(m("123 AB 15"), Some(("KZ", "123AB15".into(), 0)));
        assert_eq!(m("02 123 ABC"), Some(("KG", "02123ABC".into(), 0)));
        // UZ legal-entity plates look like KG ones; the region code tells them apart.
        assert_eq!(m("20 123 ABC"), Some(("UZ", "20123ABC".into(), 0)));
        assert_eq!(m("A 123 BC 777"), Some(("RU", "A123BC777".into(), 0)));
    }

    #[test]
    fn only_o_and_zero_and_i_and_one_are_drawn_alike() {
        assert!(drawn_alike('O', '0') && drawn_alike('0', 'O'));
        assert!(drawn_alike('I', '1') && drawn_alike('1', 'I'));
        for (a, b) in [
            ('B', '8'),
            ('Z', '2'),
            ('S', '5'),
            ('G', '6'),
            ('D', '0'),
            ('L', '1'),
        ] {
            assert!(!drawn_alike(a, b) && !drawn_alike(b, a), "{a} {b}");
        }
        assert!(
            !drawn_alike('O', 'O'),
            "the same character is no correction"
        );
    }

    #[test]
    fn corrections_depend_on_position() {
        // O in a digit position is 0; 0 in a letter position is O.
        assert_eq!(m("I234 A8 O1"), Some(("TJ", "1234AB01".into(), 3)));
        assert_eq!(m("O1 A 12S 8C"), Some(("UZ", "01A125BC".into(), 3)));
        assert_eq!(m("123 A8C O2"), Some(("KZ", "123ABC02".into(), 2)));
        // The same glyph stays a letter where the grammar wants one.
        assert_eq!(m("1234 OB 01"), Some(("TJ", "1234OB01".into(), 0)));
        assert_eq!(m("1234 0B 01"), Some(("TJ", "1234OB01".into(), 1)));
        assert_eq!(m("G234 AB Z1"), None, "region 21 is not a TJ region");
        assert_eq!(m("G234 AB 0Z"), Some(("TJ", "6234AB02".into(), 2)));
    }

    #[test]
    fn region_codes_are_checked() {
        let fits = |code: &str, s: &str| by_code(code).and_then(|f| match_format(f, &normalise(s)));
        assert_eq!(m("1234 AB 09"), None);
        assert_eq!(m("1234 AB 00"), None);
        assert_eq!(fits("UZ", "00 A 123 BC"), None);
        assert_eq!(fits("UZ", "12 A 123 BC"), None, "12 is not an Uzbek region");
        assert_eq!(fits("KZ", "123 AB 21"), None);
    }

    #[test]
    fn country_codes_from_the_strip_are_dropped() {
        assert_eq!(m("TJ 1234 AB 01"), Some(("TJ", "1234AB01".into(), 1)));
        assert_eq!(m("KZ 123 ABC 02"), Some(("KZ", "123ABC02".into(), 1)));
        let fm = best_match("UZ01A123BC").map(|m| m.span);
        assert_eq!(fm, Some(2..10));
    }

    #[test]
    fn brazil_eu_and_us_layouts() {
        assert_eq!(m("ABC 1D23"), Some(("BR", "ABC1D23".into(), 0)));
        assert_eq!(m("ABC-1234"), Some(("BR", "ABC1234".into(), 0)));
        // Mercosur: the fifth character is a letter, the last two digits.
        assert_eq!(m("PJI 5B2O"), Some(("BR", "PJI5B20".into(), 1)));
        assert_eq!(m("RK 115 AN"), Some(("EU", "RK115AN".into(), 0)));
        assert_eq!(m("RK 115 A0"), Some(("EU", "RK115AO".into(), 1)));
        assert_eq!(m("1T 43213"), Some(("EU", "1T43213".into(), 0)));
        assert_eq!(m("5VCF203"), Some(("US", "5VCF203".into(), 0)));
        assert_eq!(m("HH9G5W"), Some(("US", "HH9G5W".into(), 0)));
        assert_eq!(m("UH1FOF"), Some(("US", "UH1F0F".into(), 1)));
        // Also a Chinese shape: the neighbour comes first; the US grammar still fits.
        assert_eq!(m("XNR 374"), Some(("CN", "XNR374".into(), 0)));
        assert_eq!(fits("US", "XNR 374"), Some(("US", "XNR374".into(), 0)));
    }

    fn fits(code: &str, s: &str) -> Option<(&'static str, String, u32)> {
        by_code(code)
            .and_then(|f| match_format(f, &normalise(s)))
            .map(|m| (m.format, m.text, m.corrections))
    }

    /// Reads that do not fit `code` as they are (they may still be bent into it with
    /// corrections or a dropped "country code", at a cost).
    fn no_clean_fit(code: &str, s: &str) -> bool {
        fits(code, s).is_none_or(|(_, _, corrections)| corrections > 0)
    }

    #[test]
    fn china_latin_part_and_new_energy_plates() {
        // The province's Han character and the separator dot are dropped by normalisation.
        assert_eq!(m("沪A·12345"), Some(("CN", "A12345".into(), 0)));
        assert_eq!(m("京C·A1234"), Some(("CN", "CA1234".into(), 0)));
        assert_eq!(m("苏A·1P234"), Some(("CN", "A1P234".into(), 0)));
        assert_eq!(m("浙B·AB987"), Some(("CN", "BAB987".into(), 0)));
        assert_eq!(m("粤B·D12345"), Some(("CN", "BD12345".into(), 0)));
        assert_eq!(m("沪A·DF1234"), Some(("CN", "ADF1234".into(), 0)));
        assert_eq!(m("粤B·12345F"), Some(("CN", "B12345F".into(), 0)));
        let display = best_match("BD12345").map(|m| m.display());
        assert_eq!(display.as_deref(), Some("B D12345"));
        // Invalid: three letters in the serial, too short, a new-energy class other than D/F.
        assert_eq!(fits("CN", "京A·AKC12"), None);
        assert_eq!(fits("CN", "京A·1234"), None);
        assert!(no_clean_fit("CN", "粤B·X12345"));
        assert!(no_clean_fit("CN", "粤B·12345X"));
        assert!(no_clean_fit("CN", "粤B·I2345"), "no I on Chinese plates");
    }

    #[test]
    fn china_corrections_by_position() {
        // No I or O on Chinese plates: in the serial they are 1 and 0.
        assert_eq!(fits("CN", "京A·1O234"), Some(("CN", "A10234".into(), 1)));
        assert_eq!(fits("CN", "京A·I2345"), Some(("CN", "A12345".into(), 1)));
        // The authority letter is a letter: 8 is B, 5 is S, 2 is Z, 6 is G.
        assert_eq!(fits("CN", "8·12345"), Some(("CN", "B12345".into(), 1)));
        assert_eq!(fits("CN", "5·12345"), Some(("CN", "S12345".into(), 1)));
        assert_eq!(fits("CN", "2·12345"), Some(("CN", "Z12345".into(), 1)));
        assert_eq!(fits("CN", "6·12345"), Some(("CN", "G12345".into(), 1)));
        // New energy: the large plate's five serial digits (S is 5), the small plate's last
        // four (Z is 2, B is 8).
        assert_eq!(fits("CN", "B1234SD"), Some(("CN", "B12345D".into(), 1)));
        assert_eq!(fits("CN", "BD1Z346"), Some(("CN", "BD12346".into(), 1)));
        assert_eq!(fits("CN", "BDA12B4"), Some(("CN", "BDA1284".into(), 1)));
        // The D/F place is a letter: a 0 there is not taken for D.
        assert_eq!(fits("CN", "B012345"), None);
    }

    #[test]
    fn afghanistan_latin_line() {
        assert_eq!(m("KBL 12345 PRV"), Some(("AF", "KBL12345PRV".into(), 0)));
        assert_eq!(m("HRT 4521 T"), Some(("AF", "HRT4521T".into(), 0)));
        assert_eq!(m("KDR 71 L"), Some(("AF", "KDR71L".into(), 0)));
        assert_eq!(m("BLH 123 TRC"), Some(("AF", "BLH123TRC".into(), 0)));
        assert_eq!(m("KBL 5501 CD"), Some(("AF", "KBL5501CD".into(), 0)));
        assert_eq!(m("KBL 99 TEMP"), Some(("AF", "KBL99TEMP".into(), 0)));
        let display = best_match("KBL12345PRV").map(|m| m.display());
        assert_eq!(display.as_deref(), Some("KBL 12345 PRV"));
        // Invalid: six digits, an unknown class, a two-letter province, no class.
        assert!(no_clean_fit("AF", "KBL 123456 PRV"));
        assert!(no_clean_fit("AF", "KBL 123 X"));
        assert!(no_clean_fit("AF", "KB 123 T"));
        assert_eq!(fits("AF", "KBL 12345"), None);
    }

    #[test]
    fn afghanistan_corrections_by_position() {
        // Digits where the number is, letters in the province code and the class.
        assert_eq!(
            fits("AF", "KBL I23O5 PRV"),
            Some(("AF", "KBL12305PRV".into(), 2))
        );
        assert_eq!(
            fits("AF", "K8L 12345 PRV"),
            Some(("AF", "KBL12345PRV".into(), 1))
        );
        assert_eq!(fits("AF", "HRT 45S1 T"), Some(("AF", "HRT4551T".into(), 1)));
        assert_eq!(fits("AF", "HRT Z6G1 8"), Some(("AF", "HRT2661B".into(), 3)));
        assert_eq!(
            fits("AF", "KBL 1234 5H"),
            Some(("AF", "KBL1234SH".into(), 1))
        );
        assert!(no_clean_fit("AF", "KBL 1234 PR5"), "5 is no V");
        // Whole reads: a clean Afghan line beats the other formats.
        assert_eq!(m("KBL I23O5 PRV"), Some(("AF", "KBL12305PRV".into(), 2)));
    }

    #[test]
    fn a_russian_trailer_plate_is_its_own_format() {
        let fits = |code: &str, s: &str| {
            by_code(code)
                .and_then(|f| match_format(f, &normalise(s)))
                .map(|m| (m.format, m.text, m.corrections))
        };
        assert_eq!(
            fits("RU-TRAILER", "AB 1234 77"),
            Some(("RU-TRAILER", "AB123477".into(), 0))
        );
        assert_eq!(
            fits("RU-TRAILER", "XT 0042 197"),
            Some(("RU-TRAILER", "XT0042197".into(), 0))
        );
        // A digit read where a letter is printed is fixed by position.
        assert_eq!(
            fits("RU-TRAILER", "A8 1234 77"),
            Some(("RU-TRAILER", "AB123477".into(), 1))
        );
        // A tractor's plate, and letters Russian plates do not use, are no trailer plates.
        assert_eq!(fits("RU-TRAILER", "A 123 BC 77"), None);
        assert_eq!(fits("RU-TRAILER", "ZW 1234 77"), None);
        assert_eq!(m("AB123477").map(|m| m.0), Some("RU-TRAILER"));
        assert_eq!(m("A123BC77").map(|m| m.0), Some("RU"));
    }

    #[test]
    fn every_built_in_pattern_parses() {
        for f in FORMATS {
            for p in f.patterns {
                let g = groups(p);
                let printed: String = p
                    .chars()
                    .filter(|c| !matches!(c, ' ' | '[' | ']'))
                    .collect();
                assert!(!g.is_empty(), "{}: {p:?}", f.code);
                assert!(
                    printed.chars().all(|c| c.is_ascii_uppercase()),
                    "{}: {p:?}",
                    f.code
                );
                for slot in g.iter().flatten() {
                    if let Slot::OneOf(set) = slot {
                        assert!(!set.is_empty() && set.chars().all(|c| c.is_ascii_uppercase()));
                    }
                }
            }
        }
        assert_eq!(
            groups("L [DF]LD"),
            vec![
                vec![Slot::Letter],
                vec![Slot::OneOf("DF"), Slot::Letter, Slot::Digit]
            ]
        );
        assert_eq!(
            groups("[AB"),
            vec![vec![Slot::OneOf("AB")]],
            "unclosed: no panic"
        );
    }

    #[test]
    fn display_spaces_as_printed() {
        let fm = best_match("01A123BC").map(|m| m.display());
        assert_eq!(fm.as_deref(), Some("01 A 123 BC"));
        assert!(by_code("KG").is_some());
    }
}
