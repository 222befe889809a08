//! What the weigh rail sees of a train that is shunted at the border station: it stands while
//! wagons are uncoupled, or sets back so that a wagon rolls off the rail the way it came (the
//! rules: "Uncoupled wagons" in the module header of [`crate::train`]). Pure functions of what
//! the train gathered, applied at its assembly.

use super::{Sighting, TrainRules, WagonWeighed};
use crate::lane::duration;
use bcp_anpr_core::identifiers::IdKind;
use bcp_record::Flag;
use chrono::{DateTime, Utc};

/// The weighings of one wagon that rolled back off the rail and came on again, merged into one
/// wagon (its first on, its last off, every stable weight in order, so that the last is the
/// wagon's), flagged `wagon_rolled_back`. Two consecutive weighings are one wagon when the same
/// valid wagon number, and no other, was read well inside each (more than `read_margin` from
/// the boundary between them, so that a read spilling over a boundary never merges two wagons).
/// Without a number nothing is merged: a weighing is never dropped on a guess.
pub fn merge_rollbacks(
    weighed: Vec<WagonWeighed>,
    sightings: &[Sighting],
    rules: &TrainRules,
    now: DateTime<Utc>,
) -> Vec<WagonWeighed> {
    let mut out: Vec<WagonWeighed> = Vec::with_capacity(weighed.len());
    // The number read on the last wagon of `out`, as last seen alone on a weighing.
    let mut last_number: Option<String> = None;
    // How many weighings the last wagon of `out` was made of.
    let mut passes = 1usize;
    for w in weighed {
        let number = sole_number(&w, sightings, rules, now);
        let same = match (&number, &last_number) {
            (Some(n), Some(prev)) => n == prev,
            _ => false,
        };
        match out.last_mut().filter(|_| same) {
            Some(prev) => {
                passes += 1;
                let WagonWeighed {
                    off_at,
                    weights,
                    flags,
                    ..
                } = w;
                prev.flags.retain(|f| f.code != "wagon_rolled_back");
                let gap = prev.off_at.map(|off| duration(w.on_at - off));
                prev.flags.push(Flag::new(
                    "wagon_rolled_back",
                    format!(
                        "wagon number {} was read on {passes} weighings in a row: the wagon left the weigh rail the way it came{} and came on again; it is one wagon, with its last stable weight",
                        number.as_deref().unwrap_or_default(),
                        gap.map_or(String::new(), |g| format!(" (the rail was empty {g})"))
                    ),
                ));
                prev.off_at = off_at;
                prev.weights.extend(weights);
                prev.flags.extend(flags);
            }
            None => {
                passes = 1;
                out.push(w);
            }
        }
        last_number = number;
    }
    out
}

/// The one valid wagon number read well inside this weighing (see [`merge_rollbacks`]).
fn sole_number(
    w: &WagonWeighed,
    sightings: &[Sighting],
    rules: &TrainRules,
    now: DateTime<Utc>,
) -> Option<String> {
    let on = w.on_at + rules.read_margin;
    let off = w.off_at.unwrap_or(now) - rules.read_margin;
    let mut numbers = sightings
        .iter()
        .filter(|s| s.kind == IdKind::Wagon)
        .filter(|s| {
            let t = s.at - rules.reader_offset;
            on < t && t < off
        })
        .filter_map(|s| s.check.as_ref().ok().map(|id| id.text.clone()));
    let first = numbers.next()?;
    numbers.all(|n| n == first).then_some(first)
}

/// `train_stood`: the weigh rail stood empty longer than `stop` between two wagons (`spans`
/// are each wagon's time on the rail, in order). At a border station the train stands there
/// while wagons are uncoupled and set aside (or added): the reason names the wagons on either
/// side, so that an officer knows where the train may differ from its consist.
pub fn stood(spans: &[(DateTime<Utc>, DateTime<Utc>)], rules: &TrainRules) -> Vec<Flag> {
    spans
        .windows(2)
        .enumerate()
        .filter_map(|(i, pair)| {
            let [(_, off), (on, _)] = pair else {
                return None;
            };
            let empty = *on - *off;
            (empty > rules.stop).then(|| {
                Flag::new(
                    "train_stood",
                    format!(
                        "the weigh rail was empty for {} between wagon {} and wagon {} (more than {}): the train stood; wagons may have been uncoupled and set aside there",
                        duration(empty),
                        i + 1,
                        i + 2,
                        duration(rules.stop)
                    ),
                )
            })
        })
        .collect()
}
