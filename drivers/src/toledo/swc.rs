//! Status word C of the Toledo continuous output: a per-terminal profile.
//!
//! SWA and SWB mean the same on every terminal that speaks the format; SWC does not
//! (`/work/shared/FIELD-NOTES.md`, "Mettler Toledo continuous output"):
//!
//! | Profile | bits this module reads |
//! |---|---|
//! | [`SwcProfile::Wildcat`] (Mettler Toledo Wildcat manual p. 6-5) | b0 grams, b3 print request |
//! | [`SwcProfile::Ind245`] (IND245 `ContOut.c`, Ohaus Defender 5000) | b0-b2 unit code (kept raw: the code table is not in our sources) |
//! | [`SwcProfile::Fairbanks`] (FB3000 manual) | b3 print request, b6 keyboard tare |
//! | [`SwcProfile::Raw`] | nothing: SWC stays in [`ToledoFrame::swc`] |
//!
//! The one unit that changes the weight: on a Wildcat, SWB b4 = 0 (not kg) with SWC b0 = 1
//! means grams, which convert to kg exactly ([`ToledoFrame::weight_kg_with`]). Everything else
//! that is not kg stays `None`, as in [`ToledoFrame::weight_kg`].

use super::ToledoFrame;
use crate::indicator::{Decimal, Unit};

/// Which terminal's SWC layout to read.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum SwcProfile {
    #[default]
    Raw,
    Wildcat,
    Ind245,
    Fairbanks,
}

/// What SWC says under a profile; `None` where the profile has no such bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SwcFlags {
    pub grams: Option<bool>,
    pub print_request: Option<bool>,
    pub keyboard_tare: Option<bool>,
    /// IND245 / Ohaus unit code, SWC b0-b2, raw.
    pub unit_code: Option<u8>,
}

impl SwcProfile {
    /// Read `swc` under this profile.
    pub fn read(self, swc: u8) -> SwcFlags {
        let bit = |n: u8| Some(swc & (1 << n) != 0);
        match self {
            Self::Raw => SwcFlags::default(),
            Self::Wildcat => SwcFlags {
                grams: bit(0),
                print_request: bit(3),
                ..SwcFlags::default()
            },
            Self::Ind245 => SwcFlags {
                unit_code: Some(swc & 0x07),
                ..SwcFlags::default()
            },
            Self::Fairbanks => SwcFlags {
                print_request: bit(3),
                keyboard_tare: bit(6),
                ..SwcFlags::default()
            },
        }
    }
}

impl ToledoFrame {
    /// SWC under `profile`.
    pub fn swc_flags(&self, profile: SwcProfile) -> SwcFlags {
        profile.read(self.swc)
    }

    /// Signed displayed weight in kg, reading the unit as `profile` says: kg (SWB b4), or grams
    /// on a Wildcat (SWB b4 = 0, SWC b0 = 1). `None` out of range or in any other unit.
    pub fn weight_kg_with(&self, profile: SwcProfile) -> Option<f64> {
        if self.unit_kg {
            return self.weight_kg();
        }
        if self.out_of_range || self.swc_flags(profile).grams != Some(true) {
            return None;
        }
        let digits = i64::from(self.weight_digits);
        let mantissa = if self.negative { -digits } else { digits };
        Unit::G.to_kg(Decimal::new(mantissa, self.decimal.decimals()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toledo::DecimalPosition;

    fn frame(unit_kg: bool, swc: u8) -> ToledoFrame {
        ToledoFrame {
            weight_digits: 12_345,
            tare_digits: 0,
            decimal: DecimalPosition::Decimals1,
            increment: 1,
            net: false,
            negative: true,
            out_of_range: false,
            motion: false,
            unit_kg,
            not_zeroed_at_power_up: false,
            swc,
        }
    }

    #[test]
    fn profiles_read_their_bits() {
        // 0x20 | b6 | b3 | b0 = 0x69.
        let swc = 0x69;
        assert_eq!(
            SwcProfile::Wildcat.read(swc),
            SwcFlags {
                grams: Some(true),
                print_request: Some(true),
                ..SwcFlags::default()
            }
        );
        assert_eq!(
            SwcProfile::Fairbanks.read(swc),
            SwcFlags {
                print_request: Some(true),
                keyboard_tare: Some(true),
                ..SwcFlags::default()
            }
        );
        assert_eq!(SwcProfile::Ind245.read(swc).unit_code, Some(1));
        assert_eq!(SwcProfile::Raw.read(swc), SwcFlags::default());
    }

    #[test]
    fn wildcat_grams_convert_exactly_and_nothing_else_does() {
        let grams = frame(false, 0x21);
        // -1234.5 g
        assert_eq!(grams.weight_kg_with(SwcProfile::Wildcat), Some(-1.2345));
        assert_eq!(grams.weight_kg_with(SwcProfile::Ind245), None);
        assert_eq!(grams.weight_kg(), None);
        assert_eq!(frame(false, 0x20).weight_kg_with(SwcProfile::Wildcat), None);
        assert_eq!(
            frame(true, 0x21).weight_kg_with(SwcProfile::Wildcat),
            Some(-1234.5)
        );
    }
}
