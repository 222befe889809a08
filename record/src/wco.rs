//! A crossing in the names of the WCO data model / EU NCTS phase 5 (`../shared/FIELD-NOTES.md`,
//! "Record field names that customs systems already use"): the view `bcp-central export --json
//! --names wco` prints. The record on the wire keeps its own names (renaming them would break
//! the seals of records already signed); this is a translation, derived on demand, and the
//! table in the crate header says which field becomes what.
//!
//! Derived, not stored (so the record carries no byte twice):
//! - the **transport means** (`type_of_identification`, `identification_number`,
//!   `nationality`) from the plate and its format: a road plate is a road vehicle's
//!   registration number (CL750 code 30) whose nationality is its format's ISO 3166 alpha-2
//!   country (`TJ`, `UZ`, ..; none for a format that is no country, `EU`); a trailer's plate
//!   is a road trailer's registration number (code 31, nationality as for the vehicle's: `RU`
//!   for `RU-TRAILER`); an ENI number is
//!   code 80, an IMO number code 10; a rail post's wagons are code 20, one per wagon;
//! - the **transport equipment** (`container_identification_number`): a rail post's ISO 6346
//!   containers and an air post's ULD (a unit load device is equipment, not a means of transport).
//!
//! Fields without a name in that list keep the record's name under `other` (lane, times,
//! weights, dimensions, scan, flags, images), so nothing is lost in the translation.
//! Pure: no I/O.

use crate::Crossing;
use serde_json::{json, Map, Value};

/// NCTS CL750 "type of identification of means of transport" codes used here.
pub mod means_identification {
    /// IMO ship identification number.
    pub const IMO: u8 = 10;
    /// Wagon number.
    pub const WAGON: u8 = 20;
    /// Registration number of the road vehicle.
    pub const ROAD_VEHICLE: u8 = 30;
    /// Registration number of the road trailer.
    pub const ROAD_TRAILER: u8 = 31;
    /// European vessel identification number (ENI).
    pub const ENI: u8 = 80;
}

/// The nationality (ISO 3166 alpha-2) a plate format says, if the format is a country's (a
/// country's special format, `RU-TRAILER`, is that country's).
pub fn nationality_of_plate_format(format: &str) -> Option<&str> {
    let country = format.split('-').next().unwrap_or(format);
    let is_country =
        country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase()) && country != "EU";
    is_country.then_some(country)
}

/// The crossing with the WCO / NCTS names (see the module header).
pub fn crossing(c: &Crossing) -> Value {
    let mut out = Map::new();
    out.insert("message_identification".into(), json!(c.id));
    if let Some(office) = &c.customs_office_at_border_reference {
        out.insert("customs_office_at_border_reference".into(), json!(office));
    }
    if let Some(mode) = c.transport_mode {
        out.insert("mode_of_transport_at_the_border".into(), json!(mode.code()));
    }
    let mut means = Vec::new();
    let mut equipment = Vec::new();
    if let Some(p) = &c.plate {
        match p.format.as_deref() {
            Some("ULD") => equipment.push(json!({"container_identification_number": p.text})),
            Some("ENI") => means.push(means_json(means_identification::ENI, &p.text, None)),
            Some("IMO") => means.push(means_json(means_identification::IMO, &p.text, None)),
            format => means.push(means_json(
                means_identification::ROAD_VEHICLE,
                &p.text,
                format.and_then(nationality_of_plate_format),
            )),
        }
    }
    if let Some(p) = &c.trailer_plate {
        means.push(means_json(
            means_identification::ROAD_TRAILER,
            &p.text,
            p.format.as_deref().and_then(nationality_of_plate_format),
        ));
    }
    if let Some(train) = &c.train {
        for w in &train.wagons {
            if let Some(n) = &w.number {
                means.push(means_json(means_identification::WAGON, &n.text, None));
            }
            for k in &w.containers {
                equipment.push(json!({"container_identification_number": k.text}));
            }
        }
    }
    if !means.is_empty() {
        out.insert("transport_means".into(), Value::Array(means));
    }
    if !equipment.is_empty() {
        out.insert("transport_equipment".into(), Value::Array(equipment));
    }
    let mut other = Map::new();
    other.insert("post".into(), json!(c.post));
    other.insert("lane".into(), json!(c.lane));
    other.insert("arrived_at".into(), json!(c.arrived_at));
    other.insert("left_at".into(), json!(c.left_at));
    if let Some(d) = c.direction {
        other.insert("direction".into(), json!(d));
    }
    for (key, value) in [
        ("weight", json!(c.weight)),
        ("dimensions", json!(c.dimensions)),
        ("scan", json!(c.scan)),
    ] {
        if !value.is_null() {
            other.insert(key.into(), value);
        }
    }
    if !c.flags.is_empty() {
        other.insert("flags".into(), json!(c.flags));
    }
    if !c.images.is_empty() {
        other.insert("images".into(), json!(c.images));
    }
    if let Some(change) = &c.config_change {
        other.insert("config_change".into(), json!(change));
    }
    out.insert("other".into(), Value::Object(other));
    Value::Object(out)
}

fn means_json(type_of_identification: u8, number: &str, nationality: Option<&str>) -> Value {
    let mut m = Map::new();
    m.insert(
        "type_of_identification".into(),
        json!(type_of_identification),
    );
    m.insert("identification_number".into(), json!(number));
    if let Some(n) = nationality {
        m.insert("nationality".into(), json!(n));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IdCheck, IdentifierRead, PlateRead, Train, TransportMode, Wagon};

    fn id(text: &str, scheme: &str) -> IdentifierRead {
        IdentifierRead {
            text: text.into(),
            scheme: scheme.into(),
            check: IdCheck::Valid,
            read_as: None,
            confidence: 0.9,
            reads: 2,
        }
    }

    #[test]
    fn wagons_are_means_and_containers_equipment_and_a_vessel_has_its_code() {
        let at = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        let mut c = Crossing::without_evidence(uuid::Uuid::nil(), "P", "T1", at);
        c.transport_mode = Some(TransportMode::Rail);
        c.train = Some(Train {
            wagons: vec![Wagon {
                position: 1,
                on_at: at,
                off_at: None,
                number: Some(id("218124712173", "UIC")),
                weight: None,
                containers: vec![id("CSQU3054383", "ISO6346")],
            }],
        });
        let w = crossing(&c);
        assert_eq!(w["mode_of_transport_at_the_border"], 2);
        assert_eq!(
            w["transport_means"],
            json!([{"type_of_identification": 20, "identification_number": "218124712173"}])
        );
        assert_eq!(
            w["transport_equipment"],
            json!([{"container_identification_number": "CSQU3054383"}])
        );
        assert!(w.get("customs_office_at_border_reference").is_none());
        c.train = None;
        c.plate = Some(PlateRead {
            text: "02312345".into(),
            confidence: 0.9,
            format: Some("ENI".into()),
            frames: 2,
        });
        assert_eq!(
            crossing(&c)["transport_means"],
            json!([{"type_of_identification": 80, "identification_number": "02312345"}])
        );
    }
}
