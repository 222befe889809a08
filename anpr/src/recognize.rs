//! Text recognition with a PP-OCR CTC model (PP-OCRv6 small by default; PP-OCRv4's works too).
//!
//! Crops are resized to height 48 keeping their aspect ratio, normalised like the detector's input,
//! padded on the right to a common width and run in small batches (crops sorted by aspect ratio,
//! so a batch pads little). The model outputs, per time step, a softmax over
//! `[blank, charset..., ' ']`; [`ctc_greedy`] takes the best class per step, merges repeats,
//! drops blanks and keeps the probability of each emitted character as its confidence.
//!
//! The character set is read from the model itself (custom metadata key `character`, one entry
//! per line), so a different PP-OCR recognition model with its own alphabet works unchanged.

use std::path::Path;

use ndarray::Array4;
use opencv::core::{Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;
use ort::session::Session;
use ort::value::TensorRef;

use crate::detect::normalised_planes;
use crate::error::{AnprError, CvContext, OrtContext};

/// Input height of the recognition model.
pub const REC_HEIGHT: i32 = 48;
/// Minimum padded width over height of a batch: 192 / 48. PaddleOCR pads every line to at
/// least 320 / 48, for document text; a plate line is two to five heights wide, and the time of
/// a run grows with its width. On the dev photos 4 read as well as 6.67 (one more plate
/// within one character), with a fifth less recognition time (BENCHMARKS.md, ANPR).
const MIN_WH_RATIO: f32 = 4.0;
/// Crops wider than this many heights are squeezed (bounds memory on pathological boxes).
const MAX_WH_RATIO: f32 = 25.0;

/// Text read from one crop: each character with the probability the model gave it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DecodedText {
    /// Characters in reading order with their confidences.
    pub chars: Vec<(char, f32)>,
}

impl DecodedText {
    /// The text as a string.
    pub fn text(&self) -> String {
        self.chars.iter().map(|(c, _)| *c).collect()
    }

    /// Mean character confidence (0 for empty text).
    pub fn confidence(&self) -> f32 {
        if self.chars.is_empty() {
            0.0
        } else {
            self.chars.iter().map(|(_, p)| p).sum::<f32>() / self.chars.len() as f32
        }
    }
}

/// Reads the character list from the model's metadata.
///
/// Entries that are not exactly one character become U+FFFD (normalisation drops them).
pub(crate) fn load_charset(session: &Session, model: &Path) -> Result<Vec<char>, AnprError> {
    let meta = session
        .metadata()
        .ort("reading recognition model metadata")?;
    let raw = meta.custom("character").ok_or_else(|| AnprError::Model {
        path: model.to_path_buf(),
        reason: "no `character` metadata: not a PP-OCR recognition model".into(),
    })?;
    let charset: Vec<char> = raw
        .split('\n')
        .map(|entry| {
            let entry = entry.strip_suffix('\r').unwrap_or(entry);
            let mut it = entry.chars();
            match (it.next(), it.next()) {
                (Some(c), None) => c,
                _ => char::REPLACEMENT_CHARACTER,
            }
        })
        .collect();
    if charset.len() < 10 {
        return Err(AnprError::Model {
            path: model.to_path_buf(),
            reason: format!("character list has only {} entries", charset.len()),
        });
    }
    Ok(charset)
}

/// Greedy CTC decoding of `probs` (`steps` x `classes`, row-major softmax output).
///
/// Class 0 is the blank, class `i` in `1..=charset.len()` is `charset[i - 1]`, and any class
/// after that (PP-OCR appends one) is a space.
pub fn ctc_greedy(probs: &[f32], steps: usize, classes: usize, charset: &[char]) -> DecodedText {
    let mut out = DecodedText::default();
    let mut prev = usize::MAX;
    for row in probs.chunks_exact(classes.max(1)).take(steps) {
        let (idx, p) =
            row.iter()
                .copied()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, v)| {
                    if v > best.1 {
                        (i, v)
                    } else {
                        best
                    }
                });
        if idx != 0 && idx != prev {
            let c = charset.get(idx - 1).copied().unwrap_or(' ');
            out.chars.push((c, p));
        }
        prev = idx;
    }
    out
}

/// Recognises each crop; the result is in the same order as `crops`.
pub(crate) fn recognize(
    session: &mut Session,
    charset: &[char],
    crops: &[Mat],
    batch: usize,
) -> Result<Vec<DecodedText>, AnprError> {
    let ratio = |m: &Mat| m.cols() as f32 / m.rows().max(1) as f32;
    let mut order: Vec<usize> = (0..crops.len()).collect();
    order.sort_by(|&a, &b| ratio(&crops[a]).total_cmp(&ratio(&crops[b])));
    let mut results = vec![DecodedText::default(); crops.len()];
    for chunk in order.chunks(batch.max(1)) {
        let max_ratio = chunk
            .iter()
            .map(|&i| ratio(&crops[i]))
            .fold(MIN_WH_RATIO, f32::max)
            .min(MAX_WH_RATIO);
        let width = (REC_HEIGHT as f32 * max_ratio).ceil() as usize;
        let h = REC_HEIGHT as usize;
        // Padding stays 0 (mid-grey after normalisation), as in PaddleOCR.
        let mut data = vec![0f32; chunk.len() * 3 * h * width];
        for (slot, &i) in chunk.iter().enumerate() {
            let crop = &crops[i];
            let w = ((REC_HEIGHT as f32 * ratio(crop)).ceil() as usize).clamp(1, width);
            let mut resized = Mat::default();
            imgproc::resize(
                crop,
                &mut resized,
                Size::new(w as i32, REC_HEIGHT),
                0.0,
                0.0,
                imgproc::INTER_LINEAR,
            )
            .cv("resize for recognition")?;
            let planes = normalised_planes(&resized)?;
            for (row_i, row) in planes.chunks_exact(w).enumerate() {
                let at = (slot * 3 * h + row_i) * width;
                data[at..at + w].copy_from_slice(row);
            }
        }
        let input = Array4::from_shape_vec((chunk.len(), 3, h, width), data)
            .map_err(|e| AnprError::UnsupportedFrame(format!("recognition tensor shape: {e}")))?;
        let outputs = session
            .run(ort::inputs![
                TensorRef::from_array_view(&input).ort("recognition input")?
            ])
            .ort("running the recognition model")?;
        let (shape, probs) = outputs[0]
            .try_extract_tensor::<f32>()
            .ort("reading the recognition output")?;
        let (steps, classes) = match shape[..] {
            [n, t, c] if n as usize == chunk.len() => (t as usize, c as usize),
            _ => {
                return Err(AnprError::UnsupportedFrame(format!(
                    "recognition output shape {shape:?} for a batch of {}",
                    chunk.len()
                )))
            }
        };
        if classes < charset.len() + 1 {
            return Err(AnprError::UnsupportedFrame(format!(
                "recognition model has {classes} classes but {} characters",
                charset.len()
            )));
        }
        for (slot, &i) in chunk.iter().enumerate() {
            let start = slot * steps * classes;
            let rows = probs.get(start..start + steps * classes).unwrap_or(&[]);
            results[i] = ctc_greedy(rows, steps, classes, charset);
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One-hot-ish rows: `(class, prob)` per step over `classes` classes.
    fn rows(steps: &[(usize, f32)], classes: usize) -> Vec<f32> {
        let mut v = vec![0.0; steps.len() * classes];
        for (t, &(c, p)) in steps.iter().enumerate() {
            let rest = (1.0 - p) / (classes - 1) as f32;
            for k in 0..classes {
                v[t * classes + k] = if k == c { p } else { rest };
            }
        }
        v
    }

    #[test]
    fn ctc_merges_repeats_drops_blanks_and_keeps_confidences() {
        let charset = ['A', 'B', '1'];
        let classes = charset.len() + 2;
        // A A _ A B B _ 1 space
        let steps = [
            (1, 0.9),
            (1, 0.8),
            (0, 0.99),
            (1, 0.7),
            (2, 0.6),
            (2, 0.95),
            (0, 0.9),
            (3, 0.85),
            (4, 0.5),
        ];
        let d = ctc_greedy(&rows(&steps, classes), steps.len(), classes, &charset);
        assert_eq!(d.text(), "AAB1 ");
        let confs: Vec<f32> = d.chars.iter().map(|c| c.1).collect();
        assert_eq!(confs, vec![0.9, 0.7, 0.6, 0.85, 0.5]);
        assert!((d.confidence() - 0.71).abs() < 1e-5);
    }

    #[test]
    fn ctc_of_all_blanks_is_empty() {
        let charset = ['A'];
        let d = ctc_greedy(&rows(&[(0, 0.9); 5], 3), 5, 3, &charset);
        assert!(d.chars.is_empty());
        assert_eq!(d.confidence(), 0.0);
    }
}
