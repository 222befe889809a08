//! A closed train's record: wagons in order, identifiers placed by time, flags with reasons.
//! A pure function of what the train gathered (see the rules in the module header of
//! [`crate::train`]).

use super::{OpenTrain, Sighting, TrainRules};
use crate::lane::{clock, duration, uuid_v7};
use bcp_anpr_core::identifiers::{Check, IdKind};
use bcp_record::{Crossing, Flag, IdCheck, IdentifierRead, Train, TransportMode, Wagon, Weighing};
use chrono::{DateTime, TimeDelta, Utc};

/// The record of a closed train, made at `now`.
pub fn assemble(
    post: &str,
    lane: &str,
    rules: &TrainRules,
    train: OpenTrain,
    now: DateTime<Utc>,
) -> Crossing {
    let OpenTrain {
        wagons: weighed,
        sightings,
        mut scans,
        flags: decided,
    } = train;
    let weighed = super::shunting::merge_rollbacks(weighed, &sightings, rules, now);
    let mut flags: Vec<Flag> = Vec::new();
    // Each wagon's time on the rail; a wagon still on at the close is taken as on until now.
    let spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = weighed
        .iter()
        .map(|w| (w.on_at, w.off_at.unwrap_or(now).max(w.on_at)))
        .collect();

    // Place every sighting on a wagon (by index) or nowhere.
    let mut placed: Vec<(Option<usize>, &Sighting)> = sightings
        .iter()
        .map(|s| {
            (
                wagon_at(&spans, s.at - rules.reader_offset, rules.read_margin),
                s,
            )
        })
        .collect();
    placed.sort_by_key(|(_, s)| s.at);

    let mut wagons: Vec<Wagon> = weighed
        .iter()
        .enumerate()
        .map(|(i, w)| Wagon {
            position: u32::try_from(i + 1).unwrap_or(u32::MAX),
            on_at: w.on_at,
            off_at: w.off_at,
            number: None,
            weight: w.weights.last().cloned(),
            containers: Vec::new(),
        })
        .collect();
    for (i, w) in weighed.iter().enumerate() {
        for f in &w.flags {
            flags.push(Flag::new(&f.code, format!("wagon {}: {}", i + 1, f.reason)));
        }
    }
    flags.extend(super::shunting::stood(&spans, rules));

    // Wagon numbers: each distinct number to the wagon with most of its reads.
    let numbers = group(&placed, IdKind::Wagon);
    let mut per_wagon: Vec<Vec<&Group>> = vec![Vec::new(); wagons.len()];
    for g in &numbers {
        match g.home() {
            Some(i) => {
                if let Some(v) = per_wagon.get_mut(i) {
                    v.push(g);
                }
            }
            None => flags.push(Flag::new(
                "wagon_count_mismatch",
                format!(
                    "wagon number {} was read at {}, outside the time on the weigh rail of every one of the {} weighed wagons (± {}): the reader saw more wagons than the weighbridge",
                    g.text,
                    clock(g.first_at),
                    wagons.len(),
                    duration(rules.read_margin)
                ),
            )),
        }
    }
    for (i, groups) in per_wagon.iter_mut().enumerate() {
        groups.sort_by(|a, b| b.reads.cmp(&a.reads).then(a.first_at.cmp(&b.first_at)));
        let Some(wagon) = wagons.get_mut(i) else {
            continue;
        };
        let pos = i + 1;
        if let Some(best) = groups.first() {
            wagon.number = Some(best.read());
            if let Some(read_as) = best.read_as.as_ref().filter(|_| !best.valid) {
                flags.push(Flag::new(
                    "wagon_number_repaired",
                    format!(
                        "wagon {pos}: read {read_as}, whose {} check digit fails; one look-alike character repaired gives {}",
                        best.scheme, best.text
                    ),
                ));
            }
        }
        if groups.len() > 1 {
            let all: Vec<String> = groups
                .iter()
                .map(|g| format!("{} ({} reads)", g.text, g.reads))
                .collect();
            flags.push(Flag::new(
                "wagon_count_mismatch",
                format!(
                    "wagon {pos}: {} different wagon numbers were read while it was on the weigh rail: {}; the weighbridge may have taken two wagons for one; kept {}",
                    groups.len(),
                    all.join(", "),
                    groups.first().map_or("-", |g| g.text.as_str())
                ),
            ));
        }
        if wagon.number.is_none() {
            let failed: Vec<String> = placed
                .iter()
                .filter(|(w, s)| *w == Some(i) && s.kind == IdKind::Wagon && s.check.is_err())
                .filter_map(|(_, s)| s.check.as_ref().err().map(|e| e.to_string()))
                .collect();
            let weight = wagon
                .weight
                .as_ref()
                .map_or(String::new(), |w| format!(" (weighed {} kg)", w.gross_kg));
            let why = if failed.is_empty() {
                "no wagon number was read while it was on the weigh rail".to_owned()
            } else {
                let mut distinct: Vec<String> = Vec::new();
                for f in failed {
                    if !distinct.contains(&f) {
                        distinct.push(f);
                    }
                }
                format!(
                    "a wagon number was read but refused: {}",
                    distinct.join("; ")
                )
            };
            flags.push(Flag::new(
                "wagon_number_unread",
                format!("wagon {pos}{weight}: {why}"),
            ));
        }
    }

    // Containers: several per wagon, each code on the wagon with most of its reads.
    for g in group(&placed, IdKind::Container) {
        match g.home().and_then(|i| wagons.get_mut(i)) {
            Some(w) => w.containers.push(g.read()),
            None => flags.push(Flag::new(
                "container_unplaced",
                format!(
                    "container {} was read at {}, on no weighed wagon (± {})",
                    g.text,
                    clock(g.first_at),
                    duration(rules.read_margin)
                ),
            )),
        }
    }
    for (i, w) in wagons.iter().enumerate() {
        let mut refused: Vec<&Sighting> = placed
            .iter()
            .filter(|(home, s)| *home == Some(i) && s.kind == IdKind::Container)
            .map(|(_, s)| *s)
            .filter(|s| s.check.is_err())
            .filter(|s| {
                !w.containers
                    .iter()
                    .any(|c| crate::lane::similar(&c.text, &s.raw))
            })
            .collect();
        refused.dedup_by(|a, b| a.raw == b.raw);
        for s in refused {
            let why = s.check.as_ref().err().map(ToString::to_string);
            flags.push(Flag::new(
                "container_check_failed",
                format!(
                    "wagon {}: a container code was read but refused: {}",
                    i + 1,
                    why.unwrap_or_default()
                ),
            ));
        }
    }

    let missing: Vec<String> = wagons
        .iter()
        .filter(|w| w.weight.is_none())
        .map(|w| w.position.to_string())
        .collect();
    for pos in &missing {
        flags.push(Flag::new(
            "wagon_weight_missing",
            format!("wagon {pos}: the weight never settled while it was on the weigh rail; the train's total is not given"),
        ));
    }
    let weight = if missing.is_empty() {
        total(&wagons)
    } else {
        None
    };

    let scan = if scans.is_empty() {
        None
    } else {
        Some(scans.remove(0))
    };
    for s in &scans {
        flags.push(Flag::new(
            "extra_scan",
            format!("scan {} also came while this train was open", s.scan_id),
        ));
    }
    if scan.is_none() && rules.expect_scan {
        let why = if rules.scan_wait > TimeDelta::zero() {
            format!(
                "no scan event came while the train was open nor within {} after it closed",
                duration(rules.scan_wait)
            )
        } else {
            "no scan event came while the train was open".to_owned()
        };
        flags.push(Flag::new("no_scan", why));
    }
    flags.extend(decided);
    let arrived_at = wagons
        .first()
        .map(|w| w.on_at)
        .or_else(|| sightings.iter().map(|s| s.at).min())
        .unwrap_or(now);
    let left_at = spans
        .iter()
        .map(|(_, off)| *off)
        .max()
        .unwrap_or(arrived_at);
    Crossing {
        id: uuid_v7(now),
        post: post.to_owned(),
        lane: lane.to_owned(),
        arrived_at,
        left_at,
        plate: None,
        weight,
        dimensions: None,
        scan,
        flags,
        images: Vec::new(),
        transport_mode: Some(TransportMode::Rail),
        train: Some(Train { wagons }),
        trailer_plate: None,
        config_change: None,
        direction: None,
        customs_office_at_border_reference: None,
    }
}

/// The wagon (index) on the rail at `t`, else the nearest within `margin`.
fn wagon_at(
    spans: &[(DateTime<Utc>, DateTime<Utc>)],
    t: DateTime<Utc>,
    margin: TimeDelta,
) -> Option<usize> {
    if let Some(i) = spans.iter().position(|(on, off)| *on <= t && t <= *off) {
        return Some(i);
    }
    spans
        .iter()
        .enumerate()
        .map(|(i, (on, off))| (i, if t < *on { *on - t } else { t - *off }))
        .filter(|(_, d)| *d <= margin)
        .min_by_key(|(_, d)| *d)
        .map(|(i, _)| i)
}

/// The reads of one identifier (valid or repaired), where they fell.
#[derive(Debug, Clone)]
struct Group {
    text: String,
    scheme: &'static str,
    reads: u32,
    best_confidence: f32,
    /// Some read was valid as read (no repair needed).
    valid: bool,
    no_check_digit: bool,
    /// The first misread, if it was only ever known through a repair.
    read_as: Option<String>,
    first_at: DateTime<Utc>,
    /// Reads per wagon index (`None`: on no wagon).
    homes: Vec<(Option<usize>, u32)>,
}

impl Group {
    /// The wagon with most reads; ties go to the earlier wagon; `None` if most fell on none.
    fn home(&self) -> Option<usize> {
        self.homes
            .iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .and_then(|(w, _)| *w)
    }

    fn read(&self) -> IdentifierRead {
        IdentifierRead {
            text: self.text.clone(),
            scheme: self.scheme.to_owned(),
            check: if self.no_check_digit {
                IdCheck::NoCheckDigit
            } else if self.valid {
                IdCheck::Valid
            } else {
                IdCheck::Repaired
            },
            read_as: if self.valid {
                None
            } else {
                self.read_as.clone()
            },
            confidence: self.best_confidence,
            reads: self.reads,
        }
    }
}

/// The accepted identifiers of `kind` among the placed sightings, in the order first read.
fn group(placed: &[(Option<usize>, &Sighting)], kind: IdKind) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for (home, s) in placed.iter().filter(|(_, s)| s.kind == kind) {
        let Ok(id) = &s.check else { continue };
        let repaired = matches!(id.check, Check::Repaired { .. });
        // A repaired read counts for less, as `bcpctl anpr read --kind` ranks it.
        let confidence = if repaired {
            s.confidence * 0.85
        } else {
            s.confidence
        };
        let g = match out.iter_mut().position(|g| g.text == id.text) {
            Some(i) => &mut out[i],
            None => {
                out.push(Group {
                    text: id.text.clone(),
                    scheme: id.scheme.code(),
                    reads: 0,
                    best_confidence: 0.0,
                    valid: false,
                    no_check_digit: false,
                    read_as: None,
                    first_at: s.at,
                    homes: Vec::new(),
                });
                let last = out.len() - 1;
                &mut out[last]
            }
        };
        g.reads += 1;
        g.best_confidence = g.best_confidence.max(confidence);
        g.first_at = g.first_at.min(s.at);
        match id.check {
            Check::Valid => g.valid = true,
            Check::NoCheckDigit => g.no_check_digit = true,
            Check::Repaired { .. } => {
                g.read_as.get_or_insert_with(|| s.raw.clone());
            }
        }
        match g.homes.iter_mut().find(|(w, _)| w == home) {
            Some((_, n)) => *n += 1,
            None => g.homes.push((*home, 1)),
        }
    }
    out
}

/// The train's gross: the sum of its wagons, exact to within the sum of their divisions.
fn total(wagons: &[Wagon]) -> Option<Weighing> {
    let weights: Vec<&Weighing> = wagons.iter().filter_map(|w| w.weight.as_ref()).collect();
    let last = weights.iter().max_by_key(|w| w.stable_at)?;
    Some(Weighing {
        gross_kg: weights.iter().map(|w| w.gross_kg).sum(),
        division_kg: weights.iter().map(|w| w.division_kg).sum(),
        stable_at: last.stable_at,
        device: last.device.clone(),
        axles_kg: Vec::new(),
        unweighed_axles: 0,
    })
}
