//! Regional plate grammars as data, and position-aware correction of OCR reads.
//!
//! A [`PlateFormat`] is a list of patterns as printed (`D` a digit, `L` a letter, spaces only for
//! display), the letters the country uses, and an optional region-code rule on the leading or
//! trailing run of digits. Matching a normalised read against a pattern fixes the classic OCR
//! confusions *by position*: a letter where the grammar wants a digit becomes the digit it looks
//! like (`O`->`0`, `I`->`1`, `B`->`8`, `S`->`5`, `Z`->`2`, `G`->`6`, ..) and the other way round.
//! Each fix costs one; a leading or trailing run of up to three letters (a country code read from
//! the plate's strip, e.g. `TJ`, `RUS`) may be dropped at a cost of one. The format with the lowest
//! cost wins; ties go to the earlier format in the list, so the local region comes first.

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
    /// Patterns as printed: `D` digit, `L` letter, space for display only.
    pub patterns: &'static [&'static str],
    /// Letters allowed at `L` positions.
    pub letters: &'static str,
    /// Region-code rule, if the country has one that can be checked.
    pub region: Option<Region>,
}

const LATIN: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// Turkish plates use no Q, W or X.
const TR_LETTERS: &str = "ABCDEFGHIJKLMNOPRSTUVYZ";
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

/// The built-in formats, local region first (ties between formats go to the earlier one).
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
    PlateFormat {
        code: "RU",
        patterns: &["L DDD LL DD", "L DDD LL DDD"],
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
    /// The text spaced as printed, e.g. `1234 AB 01`.
    pub fn display(&self) -> String {
        let mut chars = self.text.chars();
        self.pattern
            .chars()
            .map(|p| {
                if p == ' ' {
                    ' '
                } else {
                    chars.next().unwrap_or('?')
                }
            })
            .collect()
    }
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

/// Fits `s` (normalised, exactly the pattern's length) to `pattern`; returns text and fixes.
fn fit(format: &PlateFormat, pattern: &str, s: &[char]) -> Option<(String, u32)> {
    let mut out = String::with_capacity(s.len());
    let mut fixes = 0;
    for (p, &c) in pattern.chars().filter(|p| *p != ' ').zip(s) {
        let fixed = match p {
            'D' => as_digit(c)?,
            _ => {
                let l = if c.is_ascii_alphabetic() {
                    c
                } else {
                    as_letter(c)?
                };
                if !format.letters.contains(l) {
                    return None;
                }
                l
            }
        };
        fixes += u32::from(fixed != c);
        out.push(fixed);
    }
    if let Some(region) = format.region {
        let group = match region.at {
            RegionAt::FirstGroup => pattern.split(' ').next(),
            RegionAt::LastGroup => pattern.split(' ').next_back(),
        }
        .unwrap_or("");
        let start = match region.at {
            RegionAt::FirstGroup => 0,
            RegionAt::LastGroup => out.len().saturating_sub(group.len()),
        };
        let code: u32 = out.get(start..start + group.len())?.parse().ok()?;
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
        let len = pattern.chars().filter(|p| *p != ' ').count();
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
            let Some((text, fixes)) = fit(format, pattern, &s[lead..lead + len]) else {
                continue;
            };
            let corrections = fixes + u32::from(lead > 0) + u32::from(trail > 0);
            if best.as_ref().is_none_or(|b| corrections < b.corrections) {
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

/// Best fit of `normalised` among `formats` (fewest corrections, then list order).
pub fn best_match_in(formats: &[PlateFormat], normalised: &str) -> Option<FormatMatch> {
    let mut best: Option<FormatMatch> = None;
    for f in formats {
        if let Some(m) = match_format(f, normalised) {
            if best.as_ref().is_none_or(|b| m.corrections < b.corrections) {
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
        assert_eq!(m("XNR 374"), Some(("US", "XNR374".into(), 0)));
    }

    #[test]
    fn turkey_and_iran_layouts() {
        assert_eq!(m("34 ABC 123"), Some(("TR", "34ABC123".into(), 0)));
        assert_eq!(m("06 A 12345"), Some(("TR", "06A12345".into(), 0)));
        let fits = |code: &str, s: &str| by_code(code).and_then(|f| match_format(f, &normalise(s)));
        assert_eq!(fits("TR", "34 AQC 123"), None, "no Q on Turkish plates");
        assert_eq!(fits("TR", "82 ABC 123"), None, "provinces are 01-81");
        assert_eq!(
            fits("IR", "12 ب 345 67").map(|m| m.text),
            Some("1234567".into())
        );
    }

    #[test]
    fn other_text_matches_nothing() {
        assert_eq!(m("TOYOTA"), None);
        assert_eq!(m("12345"), None);
        assert_eq!(m(""), None);
    }

    #[test]
    fn display_spaces_as_printed() {
        let fm = best_match("01A123BC").map(|m| m.display());
        assert_eq!(fm.as_deref(), Some("01 A 123 BC"));
        assert!(by_code("KG").is_some());
    }
}
