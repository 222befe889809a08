//! Rail, container, river and air identifiers: shapes, check digits, and single-character repair.
//!
//! Pure code, no OCR: a read (any case, spaces and dashes allowed) goes in, a validated
//! [`IdRead`] or an [`IdError`] comes out. Steps:
//! 1. normalise (uppercase ASCII letters and digits, see [`crate::formats::normalise`]);
//! 2. fit each scheme of the [`IdKind`] by *shape*: letter positions take the letter a digit looks
//!    like and digit positions the digit a letter looks like (`O`->`0`, `B`->`8`, ..), as plate
//!    formats do; that is normalisation, not repair. Except in a ULD id's letters: with no
//!    check digit nothing would confirm it, and a digit where the shape wants a letter is as
//!    often a digit read twice (`AKE142655TK`, two overlapping text boxes) or a letter lost
//!    (`PMC03032L`) as a letter misread, so a ULD's type and owner positions take letters only;
//! 3. check the check digit; if it fails, try every **single** substitution of one character by a
//!    character it is often misread for ([`CONFUSABLE`], same class: digit for digit, letter for
//!    letter), the check digit included. The read is repaired only when **exactly one** such
//!    substitution gives a valid identifier; none or several is [`IdError::CheckDigit`] /
//!    [`IdError::Ambiguous`]. Blind substitution (any character anywhere) is never unique for
//!    these check schemes, since each position has a value that fixes any sum, so only
//!    look-alike characters are tried.
//!
//! Schemes (`../shared/FIELD-NOTES.md`, "Identifiers"):
//! - UIC 12-digit wagon number: 11 digits + a Luhn check digit (weights 2,1,2,1.. from the left,
//!   digit sum of the products, `(10 - sum % 10) % 10`).
//! - CIS 8-digit wagon number: 7 digits + the same Luhn check (unverified against a source).
//! - ISO 6346 container code: owner (3 letters) + category (`U`, `J`, `Z`) + 6 digits + check:
//!   letters A=10, B=12 .. Z=38 skipping multiples of 11, weight `2^i`, `(sum mod 11) mod 10`.
//! - IMO ship number: `IMO` (optional) + 7 digits; the last is the last digit of
//!   `d1*7 + d2*6 + .. + d6*2`.
//! - ENI (European vessel number): 8 digits; `9` + 7 digits when the ENI carries an IMO number,
//!   whose check then applies; otherwise there is no check digit.
//! - IATA ULD: type (3 letters) + serial (4 or 5 digits) + owner (2 or 3 letters); no check digit.

use crate::formats::{as_digit, as_letter, normalise};

/// What kind of identifier a post reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// Rail wagon: UIC 12-digit or CIS 8-digit.
    Wagon,
    /// ISO 6346 freight container.
    Container,
    /// River/sea vessel: ENI or IMO.
    Vessel,
    /// IATA unit load device.
    Uld,
}

impl std::str::FromStr for IdKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "wagon" => Ok(Self::Wagon),
            "container" => Ok(Self::Container),
            "vessel" => Ok(Self::Vessel),
            "uld" => Ok(Self::Uld),
            _ => Err(format!(
                "unknown identifier kind {s:?}: wagon, container, vessel or uld"
            )),
        }
    }
}

/// A concrete numbering scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// UIC 12-digit wagon number.
    Uic,
    /// CIS (1520 mm) 8-digit wagon number.
    Cis,
    /// ISO 6346 container code.
    Iso6346,
    /// IMO ship identification number.
    Imo,
    /// European vessel identification number.
    Eni,
    /// IATA ULD identifier.
    Uld,
}

impl Scheme {
    /// Short code reported as the read's format ("UIC", "ISO6346", ..).
    pub fn code(self) -> &'static str {
        match self {
            Self::Uic => "UIC",
            Self::Cis => "CIS",
            Self::Iso6346 => "ISO6346",
            Self::Imo => "IMO",
            Self::Eni => "ENI",
            Self::Uld => "ULD",
        }
    }

    fn of(kind: IdKind) -> &'static [Scheme] {
        match kind {
            IdKind::Wagon => &[Scheme::Uic, Scheme::Cis],
            IdKind::Container => &[Scheme::Iso6346],
            IdKind::Vessel => &[Scheme::Eni, Scheme::Imo],
            IdKind::Uld => &[Scheme::Uld],
        }
    }

    /// Shapes of the scheme: `L` letter, `D` digit, `C` category letter (ISO 6346 U/J/Z).
    fn shapes(self) -> &'static [&'static str] {
        match self {
            Self::Uic => &["DDDDDDDDDDDD"],
            Self::Cis => &["DDDDDDDD"],
            Self::Iso6346 => &["LLLCDDDDDDD"],
            Self::Imo => &["DDDDDDD"],
            Self::Eni => &["DDDDDDDD"],
            Self::Uld => &["LLLDDDDLL", "LLLDDDDDLL", "LLLDDDDLLL", "LLLDDDDDLLL"],
        }
    }

    /// Whether a text of this scheme's shape is valid (check digit, where there is one).
    fn is_valid(self, s: &[u8]) -> bool {
        match self {
            Self::Uic | Self::Cis => luhn_check(s),
            Self::Iso6346 => iso6346_check_digit(&s[..10]) == Some(s[10] - b'0'),
            Self::Imo => imo_check(s),
            Self::Eni => s[0] != b'9' || imo_check(&s[1..]),
            Self::Uld => true,
        }
    }

    /// Whether a digit read in a letter position is taken as the letter it looks like (see
    /// the module header: not in a ULD id, which has no check digit to confirm it).
    fn letters_from_digits(self) -> bool {
        !matches!(self, Self::Uld)
    }

    fn has_check_digit(self, s: &[u8]) -> bool {
        match self {
            Self::Uld => false,
            Self::Eni => s.first() == Some(&b'9'),
            _ => true,
        }
    }
}

/// How a read was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The check digit holds as read (after shape normalisation).
    Valid,
    /// One character was replaced: at `position`, `from` was read, `to` makes the check hold.
    Repaired {
        position: usize,
        from: char,
        to: char,
    },
    /// The scheme has no check digit; only the shape was checked.
    NoCheckDigit,
}

/// A validated identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdRead {
    /// The scheme that matched.
    pub scheme: Scheme,
    /// The identifier, normalised (uppercase, no spaces; IMO numbers without the `IMO` prefix).
    pub text: String,
    /// How it was accepted.
    pub check: Check,
}

/// Why a read is not a valid identifier of the asked kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// No scheme of the kind has this length and letter/digit layout.
    #[error("{text:?} has the shape of no {kind:?} identifier")]
    Shape { kind: IdKind, text: String },
    /// The check digit fails and no single look-alike substitution fixes it.
    #[error("{text:?}: {} check digit fails and no single look-alike character repairs it", scheme.code())]
    CheckDigit { scheme: Scheme, text: String },
    /// The check digit fails and several single substitutions would fix it.
    #[error("{text:?}: {} check digit fails and {repairs} different single-character repairs are valid", scheme.code())]
    Ambiguous {
        scheme: Scheme,
        text: String,
        repairs: usize,
    },
}

/// Characters that OCR (and eyes) confuse, within a class; read both ways (see `confusable`).
pub const CONFUSABLE: &[(char, &str)] = &[
    ('0', "869"),
    ('1', "74"),
    ('2', "7"),
    ('3', "85"),
    ('4', "1"),
    ('5', "63"),
    ('6', "580"),
    ('7', "12"),
    ('8', "3609"),
    ('9', "80"),
    ('B', "RE"),
    ('C', "GO"),
    ('D', "OQ"),
    ('E', "FB"),
    ('F', "EP"),
    ('G', "CO"),
    ('H', "NM"),
    ('I', "JLT"),
    ('J', "IU"),
    ('K', "X"),
    ('L', "I"),
    ('M', "NH"),
    ('N', "MH"),
    ('O', "DQCG"),
    ('P', "RF"),
    ('Q', "OD"),
    ('R', "BP"),
    ('T', "I"),
    ('U', "VJ"),
    ('V', "UY"),
    ('W', "VM"),
    ('X', "KY"),
    ('Y', "VX"),
];

/// The look-alikes of `c`: the table read both ways, so a misread can be undone.
fn confusable(c: char) -> Vec<char> {
    let mut out = Vec::new();
    for &(k, v) in CONFUSABLE {
        if k == c {
            out.extend(v.chars());
        } else if v.contains(c) {
            out.push(k);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Validates `raw` as an identifier of `kind`, repairing one character if exactly one repair
/// is valid (see the module header).
pub fn validate(kind: IdKind, raw: &str) -> Result<IdRead, IdError> {
    let mut text = normalise(raw);
    if kind == IdKind::Vessel {
        if let Some(rest) = text.strip_prefix("IMO") {
            text = rest.to_owned();
        }
    }
    let mut first_err = None;
    for &scheme in Scheme::of(kind) {
        for shape in scheme.shapes() {
            let Some(fitted) = fit_shape(shape, &text, scheme.letters_from_digits()) else {
                continue;
            };
            match check_or_repair(scheme, shape, fitted) {
                Ok(read) => return Ok(read),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    Err(first_err.unwrap_or(IdError::Shape { kind, text }))
}

/// Applies letter/digit look-alike normalisation by position (digits into letter positions
/// only if `letters_from_digits`); `None` if the shape cannot fit.
fn fit_shape(shape: &str, text: &str, letters_from_digits: bool) -> Option<Vec<u8>> {
    if shape.len() != text.len() {
        return None;
    }
    shape
        .chars()
        .zip(text.chars())
        .map(|(p, c)| {
            let fixed = match p {
                'D' => as_digit(c)?,
                'C' => Some(if c.is_ascii_alphabetic() {
                    c
                } else {
                    as_letter(c)?
                })
                .filter(|l| matches!(l, 'U' | 'J' | 'Z'))?,
                _ if c.is_ascii_alphabetic() => c,
                _ if letters_from_digits => as_letter(c)?,
                _ => return None,
            };
            u8::try_from(fixed).ok()
        })
        .collect()
}

fn check_or_repair(scheme: Scheme, shape: &str, s: Vec<u8>) -> Result<IdRead, IdError> {
    let text = |s: &[u8]| String::from_utf8_lossy(s).into_owned();
    if !scheme.has_check_digit(&s) {
        return Ok(IdRead {
            scheme,
            text: text(&s),
            check: Check::NoCheckDigit,
        });
    }
    if scheme.is_valid(&s) {
        return Ok(IdRead {
            scheme,
            text: text(&s),
            check: Check::Valid,
        });
    }
    let mut repairs = Vec::new();
    for (position, p) in shape.bytes().enumerate() {
        let from = char::from(s[position]);
        for to in confusable(from) {
            let fits = match p {
                b'D' => to.is_ascii_digit(),
                b'C' => matches!(to, 'U' | 'J' | 'Z'),
                _ => to.is_ascii_alphabetic(),
            };
            let mut t = s.clone();
            t[position] = to as u8;
            if fits && scheme.has_check_digit(&t) && scheme.is_valid(&t) {
                repairs.push((position, from, to, t));
            }
        }
    }
    match repairs.len() {
        1 => {
            let (position, from, to, t) = repairs.remove(0);
            Ok(IdRead {
                scheme,
                text: text(&t),
                check: Check::Repaired { position, from, to },
            })
        }
        0 => Err(IdError::CheckDigit {
            scheme,
            text: text(&s),
        }),
        n => Err(IdError::Ambiguous {
            scheme,
            text: text(&s),
            repairs: n,
        }),
    }
}

/// Luhn over ASCII digits, the last being the check digit (weights 2,1,.. from the right of the
/// payload, which for the 11- and 7-digit payloads of UIC and CIS is 2,1,.. from the left).
pub fn luhn_check(s: &[u8]) -> bool {
    let Some((&check, payload)) = s.split_last() else {
        return false;
    };
    luhn_check_digit(payload) == Some(check.wrapping_sub(b'0'))
}

/// The Luhn check digit of an ASCII-digit payload.
pub fn luhn_check_digit(payload: &[u8]) -> Option<u8> {
    let mut sum = 0u32;
    for (i, &b) in payload.iter().rev().enumerate() {
        let d = u32::from(b.checked_sub(b'0').filter(|d| *d <= 9)?);
        let v = if i % 2 == 0 { d * 2 } else { d };
        sum += v / 10 + v % 10;
    }
    Some(((10 - sum % 10) % 10) as u8)
}

/// The ISO 6346 check digit of the first 10 characters (owner, category, serial).
pub fn iso6346_check_digit(code: &[u8]) -> Option<u8> {
    let mut sum = 0u32;
    for (i, &b) in code.iter().enumerate() {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => {
                // A=10, then +1 per letter, skipping 11, 22, 33.
                let mut v = 10;
                for _ in b'A'..b {
                    v += 1;
                    if v % 11 == 0 {
                        v += 1;
                    }
                }
                v
            }
            _ => return None,
        };
        sum += v << i;
    }
    Some((sum % 11 % 10) as u8)
}

/// IMO number check: 7 ASCII digits, the last the last digit of `d1*7 + .. + d6*2`.
pub fn imo_check(s: &[u8]) -> bool {
    if s.len() != 7 || !s.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = s[..6]
        .iter()
        .zip((2..=7).rev())
        .map(|(&b, w)| u32::from(b - b'0') * w)
        .sum();
    sum % 10 == u32::from(s[6] - b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(kind: IdKind, raw: &str) -> Option<(Scheme, String, Check)> {
        validate(kind, raw)
            .ok()
            .map(|r| (r.scheme, r.text, r.check))
    }

    #[test]
    fn field_notes_worked_examples() {
        // ISO 6346: CSQU305438 -> 3, MSKU388110 -> 7.
        assert_eq!(iso6346_check_digit(b"CSQU305438"), Some(3));
        assert_eq!(iso6346_check_digit(b"MSKU388110"), Some(7));
        // UIC: 21812471217 -> 3, 51800843001 -> 0.
        assert_eq!(luhn_check_digit(b"21812471217"), Some(3));
        assert_eq!(luhn_check_digit(b"51800843001"), Some(0));
        // IMO 9074729.
        assert!(imo_check(b"9074729"));
        assert!(!imo_check(b"9074728"));
    }

    #[test]
    fn valid_reads_of_each_kind() {
        assert_eq!(
            ok(IdKind::Container, "CSQU 305438 3"),
            Some((Scheme::Iso6346, "CSQU3054383".into(), Check::Valid))
        );
        assert_eq!(
            ok(IdKind::Wagon, "21 81 2471 217-3"),
            Some((Scheme::Uic, "218124712173".into(), Check::Valid))
        );
        assert_eq!(
            ok(IdKind::Vessel, "IMO 9074729"),
            Some((Scheme::Imo, "9074729".into(), Check::Valid))
        );
        assert_eq!(
            ok(IdKind::Vessel, "99074729"),
            Some((Scheme::Eni, "99074729".into(), Check::Valid))
        );
        assert_eq!(
            ok(IdKind::Vessel, "02328537"),
            Some((Scheme::Eni, "02328537".into(), Check::NoCheckDigit))
        );
        assert_eq!(
            ok(IdKind::Uld, "AKE 12345 LH"),
            Some((Scheme::Uld, "AKE12345LH".into(), Check::NoCheckDigit))
        );
        // CIS 8-digit: 7 digits + the Luhn digit.
        let payload = b"5123456";
        let c = luhn_check_digit(payload).map(|d| (b'0' + d) as char);
        let cis = format!("5123456{}", c.unwrap_or('?'));
        assert_eq!(
            ok(IdKind::Wagon, &cis),
            Some((Scheme::Cis, cis.clone(), Check::Valid))
        );
    }

    #[test]
    fn shape_normalisation_fixes_look_alikes_by_position() {
        // O in a digit position is 0, 0 in the owner code is O.
        assert_eq!(
            ok(IdKind::Container, "CSQU3O5438 3").map(|r| r.1),
            Some("CSQU3054383".into())
        );
        assert_eq!(
            ok(IdKind::Container, "MSKU 388110 7").map(|r| r.2),
            Some(Check::Valid)
        );
    }

    #[test]
    fn a_uld_id_takes_no_digit_for_a_letter() {
        // A letter lost at the end, a digit read twice, a digit for the owner's letter: with
        // no check digit, each would otherwise be another unit's id.
        for read in ["PMC03032L", "AKE142655TK", "AKE 12345 L4", "0KE 12345 LH"] {
            assert!(
                matches!(validate(IdKind::Uld, read), Err(IdError::Shape { .. })),
                "{read}: {:?}",
                validate(IdKind::Uld, read)
            );
        }
        // Letters in the serial are still read as the digits they look like.
        assert_eq!(
            ok(IdKind::Uld, "AKE 1234S LH").map(|r| r.1),
            Some("AKE12345LH".into())
        );
        assert_eq!(
            ok(IdKind::Uld, "PMC 0303 KE").map(|r| r.1),
            Some("PMC0303KE".into())
        );
    }

    #[test]
    fn a_single_look_alike_is_repaired_only_when_unique() {
        // Every single look-alike substitution of a valid code is either repaired back uniquely
        // or refused as ambiguous; it is never "repaired" into something else.
        for valid in ["CSQU3054383", "MSKU3881107", "218124712173", "518008430010"] {
            let kind = if valid.len() == 11 {
                IdKind::Container
            } else {
                IdKind::Wagon
            };
            for (i, c) in valid.char_indices() {
                for to in confusable(c) {
                    let mut misread = valid.to_owned();
                    misread.replace_range(i..=i, &to.to_string());
                    let got = validate(kind, &misread);
                    match got {
                        // Some look-alikes leave the check intact (ISO 6346: M=24 and W=35
                        // differ by 11): the misread is itself valid and cannot be caught.
                        Ok(r) if r.check == Check::Valid => assert_eq!(r.text, misread),
                        Ok(r) => {
                            assert_eq!(r.text, valid, "{misread} repaired wrongly");
                            assert_eq!(
                                r.check,
                                Check::Repaired {
                                    position: i,
                                    from: to,
                                    to: c
                                },
                                "{misread}"
                            );
                        }
                        Err(IdError::Ambiguous { repairs, .. }) => assert!(repairs > 1),
                        // The category letter is U, J or Z: `V` for `U` fits no shape.
                        Err(IdError::Shape { .. }) if kind == IdKind::Container && i == 3 => {}
                        Err(e) => panic!("{misread}: {e}"),
                    }
                }
            }
        }
        // A concrete unique repair: a UIC check digit 3 read as 8.
        assert_eq!(
            ok(IdKind::Wagon, "21 81 2471 217-8"),
            Some((
                Scheme::Uic,
                "218124712173".into(),
                Check::Repaired {
                    position: 11,
                    from: '8',
                    to: '3'
                }
            ))
        );
        // The same misread in a container code is ambiguous (several look-alikes fix it).
        assert!(matches!(
            validate(IdKind::Container, "CSQU3054388"),
            Err(IdError::Ambiguous { .. })
        ));
    }

    #[test]
    fn wrong_shapes_and_hopeless_reads_are_errors() {
        assert!(matches!(
            validate(IdKind::Container, "CSQ3054383"),
            Err(IdError::Shape { .. })
        ));
        assert!(matches!(
            validate(IdKind::Container, "CSQX3054383"),
            Err(IdError::Shape { .. })
        ));
        assert!(matches!(
            validate(IdKind::Wagon, ""),
            Err(IdError::Shape { .. })
        ));
        assert!(matches!(
            validate(IdKind::Uld, "AKE12LH"),
            Err(IdError::Shape { .. })
        ));
        assert!(matches!(
            validate(IdKind::Vessel, "IMO 90747"),
            Err(IdError::Shape { .. })
        ));
        // Two look-alikes wrong at once: the check fails and no single repair is accepted
        // as the original.
        let two = validate(IdKind::Wagon, "718124712178").map(|r| r.text);
        assert_ne!(two, Ok("218124712173".to_owned()));
        assert!("crate".parse::<IdKind>().is_err());
        assert_eq!("uld".parse::<IdKind>(), Ok(IdKind::Uld));
    }
}
