//! Merging the reads of one vehicle over several frames.
//!
//! A lane camera sees the same plate in many frames; single reads differ by a character here and
//! there. [`vote`] groups the reads by (format, length), keeps the group with the most confidence
//! (reads that fit a format beat those that do not), and then votes per character position, each
//! read weighted by its confidence in that character. The winning string is matched against the
//! formats again, so the result is corrected and labelled like a single read.
//!
//! The voted confidence is the mean, over positions, of the winner's share of the weight at that
//! position, times the mean confidence of the reads in the group: unanimous confident reads give
//! close to their own confidence, split votes give less.
//!
//! [`tally_by_position`] is the per-character weighing on its own: the reader also uses it within
//! one frame, among the reads of one plate from its passes and crops.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::formats;
use crate::PlateCandidate;

/// The plate of one vehicle, merged from several reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VotedPlate {
    /// Normalised, corrected text.
    pub text: String,
    /// 0..1, see the module header.
    pub confidence: f32,
    /// Format the voted text fits, if any.
    pub format: Option<&'static str>,
    /// How many reads were merged (the reads of the winning group).
    pub frames: u32,
    /// Index in the given reads of the best read of the winning group (its text equal to the
    /// voted text if any is, then the highest confidence): the caller keeps that frame as the
    /// overview and cuts the plate crop at [`VotedPlate::bbox`] from it.
    pub best_read: usize,
    /// The plate's box `[x, y, w, h]` in that frame.
    pub bbox: [i32; 4],
}

/// The weight of each character at each of the first `len` positions over `reads`: the sum of
/// the reads' confidences in that character (the read's own confidence where it has none per
/// character; at least 0.001, so a read always counts).
pub fn tally_by_position(reads: &[&PlateCandidate], len: usize) -> Vec<BTreeMap<char, f32>> {
    let mut tally: Vec<BTreeMap<char, f32>> = vec![BTreeMap::new(); len];
    for r in reads {
        let mut chars = r.text.chars();
        for (pos, slot) in tally.iter_mut().enumerate() {
            let c = chars.next().unwrap_or(' ');
            let w = r
                .char_confidences
                .get(pos)
                .copied()
                .unwrap_or(r.confidence)
                .max(1e-3);
            *slot.entry(c).or_default() += w;
        }
    }
    tally
}

/// Merges reads of one vehicle; `None` when there is no non-empty read.
pub fn vote(reads: &[PlateCandidate]) -> Option<VotedPlate> {
    let usable: Vec<&PlateCandidate> = reads.iter().filter(|r| !r.text.is_empty()).collect();
    let any_formatted = usable.iter().any(|r| r.format.is_some());
    let mut groups: BTreeMap<(Option<&'static str>, usize), Vec<&PlateCandidate>> = BTreeMap::new();
    for r in usable {
        if any_formatted && r.format.is_none() {
            continue;
        }
        groups
            .entry((r.format, r.text.chars().count()))
            .or_default()
            .push(r);
    }
    let weight = |g: &Vec<&PlateCandidate>| g.iter().map(|r| r.confidence.max(1e-3)).sum::<f32>();
    let ((_, len), group) = groups
        .into_iter()
        .max_by(|a, b| weight(&a.1).total_cmp(&weight(&b.1)))?;

    let mut text = String::with_capacity(len);
    let mut share_sum = 0.0;
    for tally in tally_by_position(&group, len) {
        let total: f32 = tally.values().sum();
        let (c, w) = tally
            .into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((' ', 0.0));
        text.push(c);
        share_sum += if total > 0.0 { w / total } else { 0.0 };
    }
    let mean_conf = group.iter().map(|r| r.confidence).sum::<f32>() / group.len() as f32;
    let confidence = if len == 0 {
        0.0
    } else {
        share_sum / len as f32 * mean_conf
    };
    let matched = formats::best_match(&text);
    let text = matched.as_ref().map_or(text, |m| m.text.clone());
    let best = group
        .iter()
        .max_by(|a, b| {
            (a.text == text)
                .cmp(&(b.text == text))
                .then(a.confidence.total_cmp(&b.confidence))
        })
        .copied()?;
    Some(VotedPlate {
        best_read: reads
            .iter()
            .position(|r| std::ptr::eq(r, best))
            .unwrap_or(0),
        bbox: best.bbox,
        text,
        confidence,
        format: matched.map(|m| m.format),
        frames: group.len() as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, conf: f32, format: Option<&'static str>) -> PlateCandidate {
        PlateCandidate {
            text: text.into(),
            confidence: conf,
            bbox: [0, 0, 10, 10],
            format,
            char_confidences: vec![conf; text.chars().count()],
        }
    }

    #[test]
    fn per_character_majority_fixes_single_frame_errors() {
        let reads = [
            read("1234AB01", 0.9, Some("TJ")),
            read("1284AB01", 0.8, Some("TJ")),
            read("1234AD01", 0.85, Some("TJ")),
        ];
        let v = vote(&reads).expect("a vote");
        assert_eq!(v.text, "1234AB01");
        assert_eq!(v.format, Some("TJ"));
        assert_eq!(v.frames, 3);
        assert!(v.confidence > 0.5 && v.confidence < 0.9, "{}", v.confidence);
    }

    #[test]
    fn the_best_read_agreeing_with_the_vote_is_named_for_crop_and_overview() {
        let mut reads = vec![
            read("1284AB01", 0.95, Some("TJ")),
            read("1234AB01", 0.9, Some("TJ")),
            read("1234AD01", 0.85, Some("TJ")),
            read("1234AB01", 0.7, Some("TJ")),
        ];
        reads[1].bbox = [300, 400, 180, 40];
        let v = vote(&reads).expect("a vote");
        assert_eq!(v.text, "1234AB01");
        assert_eq!(
            v.best_read, 1,
            "agrees with the vote, most confident of those"
        );
        assert_eq!(v.bbox, [300, 400, 180, 40]);
    }

    #[test]
    fn confident_characters_outweigh_hesitant_ones() {
        let mut a = read("01A123BC", 0.9, Some("UZ"));
        let mut b = read("01A128BC", 0.9, Some("UZ"));
        let c = read("01A128BC", 0.9, Some("UZ"));
        // Two reads say 8 but barely; one says 3 firmly.
        a.char_confidences[5] = 0.99;
        b.char_confidences[5] = 0.3;
        let mut c = c;
        c.char_confidences[5] = 0.3;
        let v = vote(&[a, b, c]).expect("a vote");
        assert_eq!(v.text, "01A123BC");
    }

    #[test]
    fn formatted_reads_beat_unformatted_text() {
        let reads = [
            read("TOYOTA", 0.99, None),
            read("TOYOTA", 0.99, None),
            read("123ABC02", 0.7, Some("KZ")),
        ];
        let v = vote(&reads).expect("a vote");
        assert_eq!(
            (v.text.as_str(), v.format, v.frames),
            ("123ABC02", Some("KZ"), 1)
        );
    }

    #[test]
    fn nothing_to_vote_on() {
        assert_eq!(vote(&[]), None);
        assert_eq!(vote(&[read("", 0.9, None)]), None);
    }
}
