//! Checks made at the edge, offline, on every closed crossing: the flags customs wants raised at
//! the post, each with its reason, written into the record.
//!
//! - `overweight`: the gross weight above the configured legal limit (plus the weighbridge's
//!   division, so that a reading cannot be flagged by rounding alone).
//! - `over_dimension`: length, width or height above its limit.
//! - `wagon_overweight`: on a train, a wagon's gross weight above `max_wagon_gross_kg` (plus
//!   its division), naming the wagon's position and number. A train's total is not checked
//!   against `max_gross_kg`, which is a road vehicle's limit.
//! - `hotlist`: the plate, or the trailer's plate, is on a hotlist: central's signed `hotlist`
//!   downlink list (see `bcp_sync::lists`; it keeps working offline) and/or a local file (one
//!   normalised plate per line, `#` comments) for a post that has no downlink yet; one flag per
//!   plate listed.
//! - `declared_weight_mismatch`: the plate has a pre-arrival declaration (central's
//!   `declarations` list) and the measured gross weight differs from the declared one by more
//!   than `declared_weight_tolerance_pct` (default 10 %) plus the weighbridge's division.
//!
//! Pure: the caller loads the hotlist file and central's lists ([`CentralLists`]);
//! [`EdgeChecks::apply_with`] only reads the crossing and pushes flags.

use anyhow::{Context, Result};
use bcp_record::lists::{parse_entries, DeclarationEntry, DownlinkList, KnownEntries};
use bcp_record::{Crossing, Flag};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The declared-weight tolerance when `[limits] declared_weight_tolerance_pct` is not set.
pub const DEFAULT_DECLARED_WEIGHT_TOLERANCE_PCT: f64 = 10.0;

/// Central's downlink lists as the checks use them: the `hotlist` and the `declarations` held in
/// the post's list store, each with its version (named in the flags' reasons).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CentralLists {
    hotlist: HashMap<String, Option<String>>,
    hotlist_version: u64,
    declarations: HashMap<String, DeclarationEntry>,
    declarations_version: u64,
}

impl CentralLists {
    /// From the lists held (as [`bcp_sync::ListStore::get`] returns them). A list whose entries
    /// do not parse as its kind is left out (central checks them before signing; a newer central
    /// may send a shape this post does not know).
    pub fn from_lists(hotlist: Option<&DownlinkList>, declarations: Option<&DownlinkList>) -> Self {
        let mut out = Self::default();
        if let Some(list) = hotlist {
            if let Ok(Some(KnownEntries::Hotlist(entries))) =
                parse_entries(&list.kind, &list.entries)
            {
                out.hotlist = entries.into_iter().map(|e| (e.plate, e.reason)).collect();
                out.hotlist_version = list.version;
            }
        }
        if let Some(list) = declarations {
            if let Ok(Some(KnownEntries::Declarations(entries))) =
                parse_entries(&list.kind, &list.entries)
            {
                out.declarations = entries.into_iter().map(|e| (e.plate.clone(), e)).collect();
                out.declarations_version = list.version;
            }
        }
        out
    }

    /// How many plates the hotlist and the declarations hold.
    pub fn len(&self) -> (usize, usize) {
        (self.hotlist.len(), self.declarations.len())
    }
}

/// Limits from the config (`[limits]`); a missing key means no check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_gross_kg: Option<f64>,
    /// A rail post's limit per wagon (gross, kg).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wagon_gross_kg: Option<f64>,
    pub max_length_mm: Option<u32>,
    pub max_width_mm: Option<u32>,
    pub max_height_mm: Option<u32>,
    /// A file of plates to flag (one per line).
    pub hotlist_file: Option<PathBuf>,
    /// How far (in %) the measured gross weight may be from a pre-arrival declaration's before
    /// it is flagged (default 10).
    pub declared_weight_tolerance_pct: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct EdgeChecks {
    limits: Limits,
    hotlist: HashSet<String>,
}

impl EdgeChecks {
    /// The checks for `limits`, with the hotlist file read now.
    pub fn load(limits: Limits) -> Result<Self> {
        let hotlist = match &limits.hotlist_file {
            Some(path) => read_hotlist(path)?,
            None => HashSet::new(),
        };
        Ok(Self { limits, hotlist })
    }

    pub fn hotlist_len(&self) -> usize {
        self.hotlist.len()
    }

    /// Adds the flags this crossing deserves (with no central lists).
    pub fn apply(&self, c: &mut Crossing) {
        self.apply_with(c, &CentralLists::default());
    }

    /// Adds the flags this crossing deserves, central's lists included.
    pub fn apply_with(&self, c: &mut Crossing, central: &CentralLists) {
        let l = &self.limits;
        if let (Some(max), Some(train)) = (l.max_wagon_gross_kg, &c.train) {
            for wagon in &train.wagons {
                let Some(w) = wagon
                    .weight
                    .as_ref()
                    .filter(|w| w.gross_kg > max + w.division_kg)
                else {
                    continue;
                };
                let number = wagon
                    .number
                    .as_ref()
                    .map_or("number unread".to_owned(), |n| n.text.clone());
                c.flags.push(Flag::new(
                    "wagon_overweight",
                    format!(
                        "wagon {} ({number}): gross {} kg is over the limit of {max} kg per wagon (d = {} kg)",
                        wagon.position, w.gross_kg, w.division_kg
                    ),
                ));
            }
        }
        let road_gross = c.weight.as_ref().filter(|_| c.train.is_none());
        if let (Some(max), Some(w)) = (l.max_gross_kg, road_gross) {
            if w.gross_kg > max + w.division_kg {
                c.flags.push(Flag::new(
                    "overweight",
                    format!(
                        "gross {} kg is over the limit of {max} kg (d = {} kg)",
                        w.gross_kg, w.division_kg
                    ),
                ));
            }
        }
        if let Some(d) = c.dimensions {
            for (what, value, max) in [
                ("length", d.length_mm, l.max_length_mm),
                ("width", d.width_mm, l.max_width_mm),
                ("height", d.height_mm, l.max_height_mm),
            ] {
                if let Some(max) = max.filter(|max| value > *max) {
                    c.flags.push(Flag::new(
                        "over_dimension",
                        format!("{what} {value} mm is over the limit of {max} mm"),
                    ));
                }
            }
        }
        let plates = [
            ("plate", c.plate.as_ref()),
            ("trailer plate", c.trailer_plate.as_ref()),
        ]
        .map(|(what, read)| (what, read.map(|p| p.text.clone())));
        for (what, plate) in plates {
            let Some(plate) = plate else { continue };
            if let Some(reason) = central.hotlist.get(&plate) {
                c.flags.push(Flag::new(
                    "hotlist",
                    format!(
                        "{what} {plate} is on central's hotlist (version {}){}",
                        central.hotlist_version,
                        reason
                            .as_ref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    ),
                ));
            } else if self.hotlist.contains(&plate) {
                c.flags.push(Flag::new(
                    "hotlist",
                    format!("{what} {plate} is on the local hotlist file"),
                ));
            }
        }
        let Some(plate) = c.plate.as_ref().map(|p| p.text.clone()) else {
            return;
        };
        if let (Some(d), Some(w)) = (central.declarations.get(&plate), &c.weight) {
            let tolerance = l
                .declared_weight_tolerance_pct
                .unwrap_or(DEFAULT_DECLARED_WEIGHT_TOLERANCE_PCT);
            let off = w.gross_kg - d.declared_gross_kg;
            if off.abs() > d.declared_gross_kg * tolerance / 100.0 + w.division_kg {
                c.flags.push(Flag::new(
                    "declared_weight_mismatch",
                    format!(
                        "measured {} kg, declared {} kg{} ({:+.1} %, tolerance {tolerance} %; declarations version {})",
                        w.gross_kg,
                        d.declared_gross_kg,
                        d.declaration_id
                            .as_ref()
                            .map(|id| format!(" in {id}"))
                            .unwrap_or_default(),
                        off * 100.0 / d.declared_gross_kg,
                        central.declarations_version
                    ),
                ));
            }
        }
    }
}

/// One plate per line, normalised (uppercase, no spaces or dashes); blank lines and `#`
/// comments are skipped.
pub fn read_hotlist(path: &Path) -> Result<HashSet<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the hotlist {}", path.display()))?;
    Ok(parse_hotlist(&text))
}

fn parse_hotlist(text: &str) -> HashSet<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .map(|l| {
            l.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_uppercase()
        })
        .filter(|p| !p.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bcp_record::{Dimensions, PlateRead, Weighing};
    use chrono::{DateTime, Utc};

    fn crossing(plate: &str, gross_kg: f64, dims: Dimensions) -> Crossing {
        let t: DateTime<Utc> = DateTime::from_timestamp(1_800_000_000, 0).expect("valid time");
        Crossing {
            id: uuid::Uuid::nil(),
            post: "TJ-1".into(),
            lane: "L1".into(),
            arrived_at: t,
            left_at: t,
            plate: Some(PlateRead {
                text: plate.into(),
                confidence: 0.9,
                format: Some("TJ".into()),
                frames: 2,
            }),
            weight: Some(Weighing {
                gross_kg,
                division_kg: 20.0,
                stable_at: t,
                device: "wb1".into(),
            }),
            dimensions: Some(dims),
            scan: None,
            flags: vec![],
            images: Vec::new(),
            transport_mode: None,
            train: None,
            trailer_plate: None,
            config_change: None,
            direction: None,
            customs_office_at_border_reference: None,
        }
    }

    const OK_DIMS: Dimensions = Dimensions {
        length_mm: 16_000,
        width_mm: 2_500,
        height_mm: 4_000,
    };

    fn checks() -> EdgeChecks {
        EdgeChecks {
            limits: Limits {
                max_gross_kg: Some(40_000.0),
                max_wagon_gross_kg: Some(90_000.0),
                max_length_mm: Some(16_500),
                max_width_mm: Some(2_550),
                max_height_mm: Some(4_000),
                hotlist_file: None,
                declared_weight_tolerance_pct: Some(5.0),
            },
            hotlist: parse_hotlist("# wanted\n1234 ab 01\n\n01-A-123-BC  # stolen\n"),
        }
    }

    fn codes(c: &Crossing) -> Vec<&str> {
        c.flags.iter().map(|f| f.code.as_str()).collect()
    }

    #[test]
    fn within_limits_and_not_listed_raises_nothing() {
        let mut c = crossing("5555CC05", 40_020.0, OK_DIMS);
        checks().apply(&mut c);
        assert!(
            c.flags.is_empty(),
            "one division over the limit is within the reading's resolution: {:?}",
            c.flags
        );
    }

    #[test]
    fn overweight_over_dimension_and_hotlist_are_flagged_with_reasons() {
        let mut c = crossing(
            "1234AB01",
            40_040.0,
            Dimensions {
                length_mm: 16_501,
                width_mm: 2_600,
                height_mm: 4_000,
            },
        );
        checks().apply(&mut c);
        assert_eq!(
            codes(&c),
            ["overweight", "over_dimension", "over_dimension", "hotlist"]
        );
        assert!(c.flags[0].reason.contains("40040") && c.flags[0].reason.contains("40000"));
        assert!(c.flags[1].reason.starts_with("length 16501 mm"));
        assert!(c.flags[2].reason.starts_with("width 2600 mm"));
    }

    #[test]
    fn the_hotlist_file_is_normalised() {
        let h = parse_hotlist("01-A-123-bc\n# 9999ZZ09\n");
        assert!(h.contains("01A123BC"));
        assert_eq!(h.len(), 1);
        let mut c = crossing("01A123BC", 1_000.0, OK_DIMS);
        checks().apply(&mut c);
        assert_eq!(codes(&c), ["hotlist"]);
    }

    #[test]
    fn a_missing_hotlist_file_is_an_error_naming_it() {
        let e = EdgeChecks::load(Limits {
            hotlist_file: Some("/nonexistent/hotlist.txt".into()),
            ..Limits::default()
        })
        .expect_err("missing file");
        assert!(format!("{e:#}").contains("/nonexistent/hotlist.txt"));
    }

    fn list(kind: &str, version: u64, entries: serde_json::Value) -> DownlinkList {
        DownlinkList {
            post: "TJ-1".into(),
            kind: kind.into(),
            version,
            issued_at: DateTime::from_timestamp(1_800_000_000, 0).expect("valid time"),
            entries,
            key: String::new(),
            sig: String::new(),
        }
    }

    #[test]
    fn centrals_hotlist_flags_with_its_version_and_reason() {
        let hot = list(
            "hotlist",
            7,
            serde_json::json!([{"plate": "7777KZ07", "reason": "stolen in Almaty"}]),
        );
        let central = CentralLists::from_lists(Some(&hot), None);
        assert_eq!(central.len(), (1, 0));
        let mut c = crossing("7777KZ07", 20_000.0, OK_DIMS);
        checks().apply_with(&mut c, &central);
        assert_eq!(codes(&c), ["hotlist"]);
        assert_eq!(
            c.flags[0].reason,
            "plate 7777KZ07 is on central's hotlist (version 7): stolen in Almaty"
        );
        // A plate on both lists is flagged once, with central's reason.
        let both = CentralLists::from_lists(
            Some(&list(
                "hotlist",
                8,
                serde_json::json!([{"plate": "1234AB01"}]),
            )),
            None,
        );
        let mut c = crossing("1234AB01", 20_000.0, OK_DIMS);
        checks().apply_with(&mut c, &both);
        assert_eq!(codes(&c), ["hotlist"]);
        assert!(c.flags[0].reason.contains("central's hotlist (version 8)"));
    }

    #[test]
    fn a_trailer_plate_on_the_hotlist_is_flagged_as_the_trailers() {
        let hot = list(
            "hotlist",
            3,
            serde_json::json!([{"plate": "AB123477", "reason": "trailer reported stolen"}]),
        );
        let central = CentralLists::from_lists(Some(&hot), None);
        let mut c = crossing("7777KZ07", 20_000.0, OK_DIMS);
        c.trailer_plate = Some(PlateRead {
            text: "AB123477".into(),
            confidence: 0.9,
            format: Some("RU-TRAILER".into()),
            frames: 2,
        });
        checks().apply_with(&mut c, &central);
        assert_eq!(codes(&c), ["hotlist"]);
        assert_eq!(
            c.flags[0].reason,
            "trailer plate AB123477 is on central's hotlist (version 3): trailer reported stolen"
        );
        // A trailer alone (the front unread) is still checked.
        c.plate = None;
        c.flags.clear();
        checks().apply_with(&mut c, &central);
        assert_eq!(codes(&c), ["hotlist"]);
    }

    #[test]
    fn a_weight_far_from_the_declaration_is_flagged_and_one_within_tolerance_is_not() {
        let decl = list(
            "declarations",
            3,
            serde_json::json!([
                {"plate": "5555CC05", "declaration_id": "26TJ000123", "declared_gross_kg": 30000},
                {"plate": "6666CC06", "declared_gross_kg": 30000}
            ]),
        );
        let central = CentralLists::from_lists(None, Some(&decl));
        // 5 % tolerance + 20 kg division: 31,520 is the last weight not flagged.
        let mut ok = crossing("6666CC06", 31_520.0, OK_DIMS);
        checks().apply_with(&mut ok, &central);
        assert!(ok.flags.is_empty(), "{:?}", ok.flags);
        let mut heavy = crossing("5555CC05", 36_000.0, OK_DIMS);
        checks().apply_with(&mut heavy, &central);
        assert_eq!(codes(&heavy), ["declared_weight_mismatch"]);
        assert_eq!(
            heavy.flags[0].reason,
            "measured 36000 kg, declared 30000 kg in 26TJ000123 (+20.0 %, tolerance 5 %; declarations version 3)"
        );
        let mut light = crossing("6666CC06", 20_000.0, OK_DIMS);
        checks().apply_with(&mut light, &central);
        assert_eq!(codes(&light), ["declared_weight_mismatch"]);
        // No declaration for the plate: nothing to compare.
        let mut other = crossing("9999ZZ09", 36_000.0, OK_DIMS);
        checks().apply_with(&mut other, &central);
        assert!(other.flags.is_empty());
    }

    #[test]
    fn a_list_of_the_wrong_shape_is_left_out() {
        let bad = list("hotlist", 2, serde_json::json!({"plate": "1234AB01"}));
        assert_eq!(
            CentralLists::from_lists(Some(&bad), None),
            CentralLists::default()
        );
    }

    #[test]
    fn an_overweight_wagon_is_flagged_and_a_train_is_not_a_lorry() {
        let mut c = crossing("-", 180_070.0, OK_DIMS);
        c.plate = None;
        let wagon = |position: u32, kg: f64, number: Option<&str>| bcp_record::Wagon {
            position,
            on_at: c.arrived_at,
            off_at: None,
            number: number.map(|n| bcp_record::IdentifierRead {
                text: n.into(),
                scheme: "UIC".into(),
                check: bcp_record::IdCheck::Valid,
                read_as: None,
                confidence: 0.9,
                reads: 2,
            }),
            weight: Some(Weighing {
                gross_kg: kg,
                division_kg: 50.0,
                stable_at: c.arrived_at,
                device: "rwb1".into(),
            }),
            containers: vec![],
        };
        c.train = Some(bcp_record::Train {
            wagons: vec![
                wagon(1, 90_050.0, Some("218124712173")),
                wagon(2, 90_060.0, None),
            ],
        });
        checks().apply(&mut c);
        assert_eq!(codes(&c), ["wagon_overweight"], "{:?}", c.flags);
        assert!(
            c.flags[0]
                .reason
                .starts_with("wagon 2 (number unread): gross 90060 kg"),
            "{}",
            c.flags[0].reason
        );
    }
}
