//! Checks made at the edge, offline, on every closed crossing: the flags customs wants raised at
//! the post, each with its reason, written into the record.
//!
//! - `overweight`: the gross weight above the configured legal limit (plus the weighbridge's
//!   division, so that a reading cannot be flagged by rounding alone).
//! - `over_dimension`: length, width or height above its limit.
//! - `hotlist`: the plate is on the hotlist. The list is a local file for now (one normalised
//!   plate per line, `#` comments); central's signed downlink will replace it.
//!
//! Pure: the caller loads the hotlist; [`EdgeChecks::apply`] only reads the crossing and pushes
//! flags.

use anyhow::{Context, Result};
use bcp_record::{Crossing, Flag};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Limits from the config (`[limits]`); a missing key means no check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_gross_kg: Option<f64>,
    pub max_length_mm: Option<u32>,
    pub max_width_mm: Option<u32>,
    pub max_height_mm: Option<u32>,
    /// A file of plates to flag (one per line).
    pub hotlist_file: Option<PathBuf>,
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

    /// Adds the flags this crossing deserves.
    pub fn apply(&self, c: &mut Crossing) {
        let l = &self.limits;
        if let (Some(max), Some(w)) = (l.max_gross_kg, &c.weight) {
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
        if let Some(p) = &c.plate {
            if self.hotlist.contains(&p.text) {
                c.flags.push(Flag::new(
                    "hotlist",
                    format!("plate {} is on the hotlist", p.text),
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
            config_change: None,
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
                max_length_mm: Some(16_500),
                max_width_mm: Some(2_550),
                max_height_mm: Some(4_000),
                hotlist_file: None,
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
}
