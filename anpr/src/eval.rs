//! Evaluation against a folder of photos in the openalpr benchmark layout.
//!
//! The layout: image files plus `groundtruth.tsv`, one line per image, tab-separated:
//! `file x y w h PLATE` (the plate's box in image pixels and its text). This module is pure: it
//! parses the ground truth and turns per-image outcomes into a [`Summary`]; the loop that reads
//! the images and times the reader is the caller's (the `openalpr_eval` bench, `bcpctl anpr eval`).
//!
//! Measures, per image, of the reader's *best* candidate:
//! - exact: its text equals the ground truth (both normalised: uppercase, no spaces or dashes);
//! - within one: edit distance (Levenshtein) at most 1;
//! - detected: some candidate's box overlaps the ground-truth box with IoU >= the threshold
//!   (the plate was found, whatever was read from it);
//! - milliseconds from encoded bytes to ranked candidates (median and p90 over the set).

use crate::error::AnprError;
use crate::formats::normalise;

/// One line of `groundtruth.tsv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroundTruth {
    /// Image file name, relative to the folder.
    pub file: String,
    /// The plate's box `[x, y, w, h]`.
    pub bbox: [i32; 4],
    /// The plate's text, normalised.
    pub plate: String,
}

/// Parses `groundtruth.tsv` (tab- or space-separated; blank lines and `#` comments skipped).
pub fn parse_groundtruth(text: &str) -> Result<Vec<GroundTruth>, AnprError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: &str| AnprError::GroundTruth {
            line: i + 1,
            reason: reason.to_owned(),
        };
        let fields: Vec<&str> = line.split(['\t', ' ']).filter(|f| !f.is_empty()).collect();
        let [file, x, y, w, h, plate @ ..] = fields.as_slice() else {
            return Err(bad("expected: file x y w h PLATE"));
        };
        let mut bbox = [0i32; 4];
        for (slot, v) in bbox.iter_mut().zip([x, y, w, h]) {
            *slot = v.parse().map_err(|_| bad("x, y, w, h must be integers"))?;
        }
        let plate = normalise(&plate.concat());
        if plate.is_empty() {
            return Err(bad("empty plate text"));
        }
        out.push(GroundTruth {
            file: (*file).to_owned(),
            bbox,
            plate,
        });
    }
    Ok(out)
}

/// What the reader did with one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Ground-truth text (normalised).
    pub expected: String,
    /// Text of the best candidate, if any.
    pub best: Option<String>,
    /// Whether some candidate's box matched the ground-truth box.
    pub detected: bool,
    /// Time from encoded bytes to candidates, in milliseconds (`None` if the image failed).
    pub ms: Option<f64>,
}

impl Outcome {
    /// The best read equals the ground truth.
    pub fn exact(&self) -> bool {
        self.best.as_deref() == Some(self.expected.as_str())
    }

    /// The best read is at most one edit from the ground truth.
    pub fn within_one(&self) -> bool {
        self.best
            .as_deref()
            .is_some_and(|b| edit_distance(b, &self.expected) <= 1)
    }
}

/// Totals over a set of images.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// Images evaluated.
    pub images: usize,
    /// Best read equal to the ground truth.
    pub exact: usize,
    /// Best read within one edit.
    pub within_one: usize,
    /// Plate box found at the IoU threshold.
    pub detected: usize,
    /// Images the reader failed on (decode or runtime error).
    pub errors: usize,
    /// Median milliseconds per image.
    pub median_ms: f64,
    /// 90th percentile milliseconds per image.
    pub p90_ms: f64,
}

impl Summary {
    /// Summarises outcomes.
    pub fn of(outcomes: &[Outcome]) -> Self {
        let mut ms: Vec<f64> = outcomes.iter().filter_map(|o| o.ms).collect();
        ms.sort_by(f64::total_cmp);
        Self {
            images: outcomes.len(),
            exact: outcomes.iter().filter(|o| o.exact()).count(),
            within_one: outcomes.iter().filter(|o| o.within_one()).count(),
            detected: outcomes.iter().filter(|o| o.detected).count(),
            errors: outcomes.iter().filter(|o| o.ms.is_none()).count(),
            median_ms: percentile(&ms, 0.5),
            p90_ms: percentile(&ms, 0.9),
        }
    }

    fn pct(&self, n: usize) -> f64 {
        100.0 * n as f64 / self.images.max(1) as f64
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "images {}, exact {} ({:.1} %), within one {} ({:.1} %), detected {} ({:.1} %), errors {}, median {:.1} ms, p90 {:.1} ms",
            self.images,
            self.exact,
            self.pct(self.exact),
            self.within_one,
            self.pct(self.within_one),
            self.detected,
            self.pct(self.detected),
            self.errors,
            self.median_ms,
            self.p90_ms
        )
    }
}

/// Nearest-rank percentile of sorted values (0 for none).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Levenshtein distance over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Intersection over union of two `[x, y, w, h]` boxes.
pub fn iou(a: [i32; 4], b: [i32; 4]) -> f64 {
    let ix = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let iy = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    if ix <= 0 || iy <= 0 {
        return 0.0;
    }
    let inter = f64::from(ix) * f64::from(iy);
    let area = |r: [i32; 4]| f64::from(r[2].max(0)) * f64::from(r[3].max(0));
    inter / (area(a) + area(b) - inter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groundtruth_lines_parse_and_normalise() {
        let gt = parse_groundtruth("a.jpg\t1\t2\t30\t10\tab-12 3\n\n# c\nb.png 0 0 5 5 XY9\n");
        let gt = gt.map_err(|e| e.to_string());
        assert_eq!(
            gt,
            Ok(vec![
                GroundTruth {
                    file: "a.jpg".into(),
                    bbox: [1, 2, 30, 10],
                    plate: "AB123".into()
                },
                GroundTruth {
                    file: "b.png".into(),
                    bbox: [0, 0, 5, 5],
                    plate: "XY9".into()
                },
            ])
        );
        let err =
            parse_groundtruth("ok.jpg 1 2 3 4 A\nbad.jpg 1 x 3 4 A").map_err(|e| e.to_string());
        assert!(matches!(err, Err(ref m) if m.contains("line 2")), "{err:?}");
        assert!(parse_groundtruth("short.jpg 1 2").is_err());
    }

    #[test]
    fn edit_distance_counts_substitutions_insertions_deletions() {
        assert_eq!(edit_distance("RK115AN", "RK115AN"), 0);
        assert_eq!(edit_distance("RKO99AN", "RK099AN"), 1);
        assert_eq!(edit_distance("SRK115AN", "RK115AN"), 1);
        assert_eq!(edit_distance("RK15AN", "RK115AN"), 1);
        assert_eq!(edit_distance("", "ABC"), 3);
        assert_eq!(edit_distance("ABCD", "BADC"), 3);
    }

    #[test]
    fn iou_of_boxes() {
        assert_eq!(iou([0, 0, 10, 10], [0, 0, 10, 10]), 1.0);
        assert_eq!(iou([0, 0, 10, 10], [10, 0, 10, 10]), 0.0);
        assert!((iou([0, 0, 10, 10], [5, 0, 10, 10]) - 50.0 / 150.0).abs() < 1e-9);
    }

    #[test]
    fn summary_counts_and_percentiles() {
        let o = |exp: &str, best: Option<&str>, det, ms| Outcome {
            expected: exp.into(),
            best: best.map(Into::into),
            detected: det,
            ms,
        };
        let s = Summary::of(&[
            o("AB123", Some("AB123"), true, Some(10.0)),
            o("AB123", Some("A8123"), true, Some(30.0)),
            o("AB123", Some("XX"), false, Some(20.0)),
            o("AB123", None, false, None),
        ]);
        assert_eq!(
            (s.images, s.exact, s.within_one, s.detected, s.errors),
            (4, 1, 2, 2, 1)
        );
        assert_eq!((s.median_ms, s.p90_ms), (20.0, 30.0));
        assert!(s.to_string().contains("exact 1 (25.0 %)"));
    }
}
