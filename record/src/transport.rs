//! What kind of conveyance a record is about: the mode of transport at the border (UN/ECE
//! Recommendation 19, the code NCTS and the WCO data model use), and for a rail post the train
//! with its wagons, their numbers, weights and containers.
//!
//! Plain data. Every field here is optional on a [`crate::Crossing`], absent on the wire when
//! unset, so records from before post profiles keep their encoding and their seals.

use crate::Weighing;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A mode of transport, UN/ECE Recommendation 19. Every code of the recommendation is here, so
/// that a record from a newer post never fails to decode.
///
/// On the wire: `{"code": 2, "name": "rail"}` (the code is what customs systems use, the name is
/// for people reading an export); decoding goes by the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ModeOnWire", into = "ModeOnWire")]
pub enum TransportMode {
    NotSpecified,
    Maritime,
    Rail,
    Road,
    Air,
    Mail,
    Multimodal,
    FixedInstallation,
    InlandWater,
    Unknown,
}

impl TransportMode {
    const ALL: [Self; 10] = [
        Self::NotSpecified,
        Self::Maritime,
        Self::Rail,
        Self::Road,
        Self::Air,
        Self::Mail,
        Self::Multimodal,
        Self::FixedInstallation,
        Self::InlandWater,
        Self::Unknown,
    ];

    /// The Rec. 19 code (road 3, rail 2, air 4, inland water 8, ...).
    pub fn code(self) -> u8 {
        match self {
            Self::NotSpecified => 0,
            Self::Maritime => 1,
            Self::Rail => 2,
            Self::Road => 3,
            Self::Air => 4,
            Self::Mail => 5,
            Self::Multimodal => 6,
            Self::FixedInstallation => 7,
            Self::InlandWater => 8,
            Self::Unknown => 9,
        }
    }

    /// The mode's name in records (`road`, `rail`, `air`, `inland_water`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::NotSpecified => "not_specified",
            Self::Maritime => "maritime",
            Self::Rail => "rail",
            Self::Road => "road",
            Self::Air => "air",
            Self::Mail => "mail",
            Self::Multimodal => "multimodal",
            Self::FixedInstallation => "fixed_installation",
            Self::InlandWater => "inland_water",
            Self::Unknown => "unknown",
        }
    }

    /// The mode of a Rec. 19 code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.code() == code)
    }
}

#[derive(Serialize, Deserialize)]
struct ModeOnWire {
    code: u8,
    #[serde(default)]
    name: String,
}

impl TryFrom<ModeOnWire> for TransportMode {
    type Error = String;
    fn try_from(w: ModeOnWire) -> Result<Self, Self::Error> {
        Self::from_code(w.code).ok_or_else(|| {
            format!(
                "transport mode code {} ({:?}) is not a UN/ECE Rec. 19 code (0-9)",
                w.code, w.name
            )
        })
    }
}

impl From<TransportMode> for ModeOnWire {
    fn from(m: TransportMode) -> Self {
        Self {
            code: m.code(),
            name: m.name().to_owned(),
        }
    }
}

/// A train as a rail post records it: one record per train, its wagons in the order they passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Train {
    pub wagons: Vec<Wagon>,
}

/// One wagon (or locomotive) of a train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wagon {
    /// 1-based, in the order the wagons passed the weighbridge.
    pub position: u32,
    /// When the wagon came onto the weigh rail.
    pub on_at: DateTime<Utc>,
    /// When it left the weigh rail (absent when the train was closed with it still on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_at: Option<DateTime<Utc>>,
    /// The wagon number (UIC 12-digit or CIS 8-digit), if one was read with a valid check digit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<IdentifierRead>,
    /// The wagon's stable gross weight on the rail weighbridge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<Weighing>,
    /// ISO 6346 codes of the containers read on this wagon (WCO: container identification
    /// number), in the order first read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<IdentifierRead>,
}

/// An identifier with a check scheme (wagon number, container code, vessel number, ULD id),
/// validated at the edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentifierRead {
    /// Normalised: uppercase letters and digits (`218124712173`, `CSQU3054383`).
    pub text: String,
    /// The numbering scheme: `UIC`, `CIS`, `ISO6346`, `ENI`, `IMO` or `ULD`.
    pub scheme: String,
    pub check: IdCheck,
    /// What the reader saw, when one look-alike character was repaired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_as: Option<String>,
    /// 0.0 ..= 1.0: the best read's confidence (lowered for a repaired read).
    pub confidence: f32,
    /// How many reads agreed on it.
    pub reads: u32,
}

/// How an identifier's check digit was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdCheck {
    /// The check digit holds as read.
    Valid,
    /// One look-alike character was replaced and the check then holds (only when exactly one
    /// such repair is valid).
    Repaired,
    /// The scheme has no check digit (IATA ULD, ENI without an IMO number).
    NoCheckDigit,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_travel_as_their_rec_19_code_with_a_name() {
        let json = serde_json::to_string(&TransportMode::InlandWater).expect("encodes");
        assert_eq!(json, r#"{"code":8,"name":"inland_water"}"#);
        for m in TransportMode::ALL {
            let json = serde_json::to_string(&m).expect("encodes");
            assert_eq!(
                serde_json::from_str::<TransportMode>(&json).expect("decodes"),
                m
            );
        }
        assert_eq!(
            serde_json::from_str::<TransportMode>(r#"{"code":2}"#).expect("code alone"),
            TransportMode::Rail
        );
        let e = serde_json::from_str::<TransportMode>(r#"{"code":12,"name":"teleport"}"#)
            .expect_err("no such code");
        assert!(e.to_string().contains("Rec. 19"), "{e}");
        assert_eq!(
            [
                TransportMode::Road,
                TransportMode::Rail,
                TransportMode::Air,
                TransportMode::InlandWater
            ]
            .map(TransportMode::code),
            [3, 2, 4, 8]
        );
    }
}
