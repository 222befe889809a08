//! Post types as configuration profiles (`[post] transport_mode`): what a post records and which
//! correlator links its evidence.
//!
//! | profile | conveyance | correlator | identifier in the record | Rec. 19 |
//! |---|---|---|---|---|
//! | `road` | a vehicle | [`crate::lane`] | the number plate (`plate`, format = country) | 3 |
//! | `rail` | a train | [`crate::train`] | per wagon: UIC/CIS number, ISO 6346 containers (`train`) | 2 |
//! | `air` | a cargo unit | [`crate::lane`] | IATA ULD id in `plate` (format `ULD`) | 4 |
//! | `river` | a vessel | [`crate::lane`] | ENI or IMO number in `plate` (format `ENI`/`IMO`) | 8 |
//!
//! Every record carries the profile's [`TransportMode`] (`transport_mode: {code, name}`).
//! Pure data: no I/O.

use bcp_anpr_core::identifiers::IdKind;
use bcp_record::TransportMode;
use serde::{Deserialize, Serialize};

/// The kind of post (the `[post] transport_mode` key): `road` (default), `rail`, `air`, `river`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PostProfile {
    #[default]
    Road,
    Rail,
    Air,
    River,
}

impl PostProfile {
    /// The UN/ECE Rec. 19 mode written into every record of the post.
    pub fn transport_mode(self) -> TransportMode {
        match self {
            Self::Road => TransportMode::Road,
            Self::Rail => TransportMode::Rail,
            Self::Air => TransportMode::Air,
            Self::River => TransportMode::InlandWater,
        }
    }

    /// The config name (`road`, `rail`, `air`, `river`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Road => "road",
            Self::Rail => "rail",
            Self::Air => "air",
            Self::River => "river",
        }
    }

    /// The identifier the lane correlator reads into the plate slot instead of a number plate
    /// (`None`: a road plate). Rail has its own correlator and reads wagons and containers.
    pub fn lane_identifier(self) -> Option<IdKind> {
        match self {
            Self::Road | Self::Rail => None,
            Self::Air => Some(IdKind::Uld),
            Self::River => Some(IdKind::Vessel),
        }
    }

    /// Whether the camera reads number plates, fitted to the `[anpr] formats`; the other
    /// posts read identifiers, which a plate grammar would cut and bend, so their texts are
    /// kept as read and validated by the correlator (`AnprConfig::fit_plate_formats`).
    pub fn reads_plates(self) -> bool {
        matches!(self, Self::Road)
    }

    /// Whether a conveyance of this kind is expected to be weighed and measured; a vessel is
    /// not (the `[weighbridge]` of a river post is its presence sensor), so its records are not
    /// flagged `no_stable_weight` / `no_dimensions`.
    pub fn weighs(self) -> bool {
        !matches!(self, Self::River)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_profile_has_its_rec_19_code_and_identifier() {
        let codes = [
            PostProfile::Road,
            PostProfile::Rail,
            PostProfile::Air,
            PostProfile::River,
        ]
        .map(|p| (p.name(), p.transport_mode().code()));
        assert_eq!(codes, [("road", 3), ("rail", 2), ("air", 4), ("river", 8)]);
        assert_eq!(PostProfile::Air.lane_identifier(), Some(IdKind::Uld));
        assert_eq!(PostProfile::River.lane_identifier(), Some(IdKind::Vessel));
        assert_eq!(PostProfile::Road.lane_identifier(), None);
        assert!(PostProfile::Road.reads_plates() && !PostProfile::Air.reads_plates());
        assert_eq!(PostProfile::default(), PostProfile::Road);
    }
}
