//! The plate reader: configuration, the per-camera [`PlateReader`], and ranking of candidates.
//!
//! `frame -> detect text boxes -> crop upright -> drop crops no plate can be (too wide, too low)
//! -> recognise -> normalise -> fit formats -> rank`.
//! Besides every single box, each run of boxes on one line is also read as one text (and each
//! adjacent pair), because the detector may split a plate at its wide gaps (`1234  AB  01`),
//! and each line stacked directly above another is read with it, top line first (two-line
//! plates).
//! Candidates are ranked by confidence weighted by plate-likeness: text that fits a plate format
//! counts in full, other plate-shaped text (5-8 characters, letters and digits) at 0.7, or 0.56
//! when it is digits only (the date part of a camera timestamp looks like that), anything else
//! (words, whole timestamps) at 0.4; so a confident plate of a country without a format here
//! still beats a doubtful read of a timestamp that a format could be bent to fit. A candidate's
//! confidence is the mean of its characters' confidences, times 0.8 per correction the format
//! needed between characters plate fonts draw alike (`O` and `0`, `I` and `1`), 0.65 per
//! correction between characters of different shapes (`8` and `B`, `2` and `Z`, ..) unless the
//! format's region code confirms the fit (then 0.8 too). A read that a format fits only with
//! corrections is also kept as read, unformatted (0.7): a plate of a layout missing here is not
//! bent into one that needs two corrections or one of shape (the US plates `J868321` and
//! `CC2881` into the Brazilian `JBG8321` and the US `CCZ881`), while one correction of
//! look-alikes (an `O` read in a digit's place) still ranks the corrected text first.
//!
//! A camera that reads identifiers rather than plates ([`AnprConfig::fit_plate_formats`] off:
//! an air post's ULD ids, a river post's vessel numbers) fits no plate format: every text is
//! kept as read, for the caller to validate as an identifier.
//!
//! Second pass ([`AnprConfig::refine_top`]): the region around each of the best candidates
//! (margins of a quarter of its width plus half its height, two thirds of its height) is cut
//! from the full-resolution frame, enlarged so that the text is about 64 px high, and detected
//! and read again; small plates that the whole-frame detector (long side 960 px) saw at 10-20 px
//! get tighter boxes and a sharper crop. Its candidates join the first pass's. It stops at the
//! first candidate that fits a format with confidence >= 0.95 (that settles the frame): nothing
//! left to gain there.
//!
//! Quick pass ([`AnprConfig::det_quick_side_px`]): the detector first sees the frame at a long
//! side of 512 px, about a third of the pixels of the full pass (960 px). Where that finds a
//! plate that fits a format with confidence >= 0.95 (on the dev photos, about half the frames:
//! plates large enough), the frame is done, once that plate's region, widened by half its height
//! on either side, has been read again (recognition only): the quick pass's coarse box can end
//! a character short of the plate. Otherwise the detector sees the frame again at the full size
//! and the two passes' candidates are ranked together: small plates, and the reads of the two
//! scales complementing each other (some plates are read right at one scale only).
//!
//! Halves ([`AnprConfig::det_tile_side_px`]): a frame in which neither pass found any plate-like
//! text is detected again in two overlapping halves, each at about its own resolution.
//!
//! Last, text in a corner of the frame (camera overlays: date, time) goes after everything else
//! (see [`overlays_last`]); a best candidate that fits a format without settling the frame has
//! its region read again from two more crops (see [`PlateReader::second_look`]); and the reads
//! of the best candidate's plate from the passes and crops vote per character, weighted by
//! confidence (see [`vote_on_the_best`]): the read with the most support goes first.

use std::time::Instant;

use opencv::core::{Mat, Rect, Size, CV_8UC1, CV_8UC3, CV_8UC4};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};
use ort::session::Session;

use crate::detect::{self, DetParams, TextBox};
use crate::error::{AnprError, CvContext};
use crate::eval::iou;
use crate::formats::{self, normalise_char, PlateFormat};
use crate::recognize::{self, DecodedText};
use crate::runtime;
use crate::vote;

pub use bcp_anpr_core::AnprConfig;

pub use bcp_anpr_core::PlateCandidate;

/// Reads plates from frames. Owns its model sessions: one per camera task.
pub struct PlateReader {
    det: Session,
    rec: Session,
    charset: Vec<char>,
    det_params: DetParams,
    det_quick_side_px: Option<u32>,
    det_tile_side_px: Option<u32>,
    rec_batch: usize,
    min_confidence: f32,
    refine_top: usize,
    formats: Vec<PlateFormat>,
    max_frame_pixels: u64,
}

impl std::fmt::Debug for PlateReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlateReader")
            .field("charset_len", &self.charset.len())
            .field("det_params", &self.det_params)
            .field("rec_batch", &self.rec_batch)
            .finish_non_exhaustive()
    }
}

impl PlateReader {
    /// Loads ONNX Runtime (once per process) and both models.
    pub fn new(cfg: &AnprConfig) -> Result<Self, AnprError> {
        cfg.validate()?;
        cfg.paths.check()?;
        let env = runtime::environment(&cfg.paths.onnxruntime_lib)?;
        let det = runtime::open_session(&env, &cfg.paths.det_model, cfg.threads)?;
        let rec = runtime::open_session(&env, &cfg.paths.rec_model, cfg.threads)?;
        let charset = recognize::load_charset(&rec, &cfg.paths.rec_model)?;
        tracing::info!(
            det = %cfg.paths.det_model.display(),
            rec = %cfg.paths.rec_model.display(),
            charset = charset.len(),
            threads = cfg.threads,
            "plate reader ready"
        );
        Ok(Self {
            det,
            rec,
            charset,
            det_params: DetParams {
                limit_side_px: cfg.det_limit_side_px,
                threshold: cfg.det_threshold,
                box_threshold: cfg.det_box_threshold,
                unclip_ratio: cfg.det_unclip_ratio,
                max_candidates: cfg.det_max_candidates,
            },
            det_quick_side_px: (cfg.fit_plate_formats
                && cfg.det_quick_side_px != 0
                && cfg.det_quick_side_px < cfg.det_limit_side_px)
                .then_some(cfg.det_quick_side_px),
            det_tile_side_px: (cfg.fit_plate_formats && cfg.det_tile_side_px != 0)
                .then_some(cfg.det_tile_side_px),
            rec_batch: cfg.rec_batch_size,
            min_confidence: cfg.min_confidence,
            refine_top: cfg.refine_top,
            max_frame_pixels: cfg.max_frame_pixels,
            formats: if !cfg.fit_plate_formats {
                Vec::new()
            } else if cfg.formats.is_empty() {
                formats::FORMATS.to_vec()
            } else {
                formats::FORMATS
                    .iter()
                    .filter(|f| cfg.formats.iter().any(|c| c == f.code))
                    .copied()
                    .collect()
            },
        })
    }

    /// Decodes an encoded image (JPEG, PNG, ..) and reads it; undecodable bytes are
    /// [`AnprError::Decode`].
    pub fn read_image_bytes(&mut self, bytes: &[u8]) -> Result<Vec<PlateCandidate>, AnprError> {
        self.read_mat(&decode_image(bytes)?)
    }

    /// Reads a BGR (or grey, or BGRA) 8-bit frame; best candidate first.
    pub fn read_mat(&mut self, frame: &Mat) -> Result<Vec<PlateCandidate>, AnprError> {
        let started = Instant::now();
        let pixels = i64::from(frame.rows()) * i64::from(frame.cols());
        if pixels > self.max_frame_pixels as i64 {
            return Err(AnprError::UnsupportedFrame(format!(
                "{}x{} frame has more than max_frame_pixels = {}",
                frame.cols(),
                frame.rows(),
                self.max_frame_pixels
            )));
        }
        let bgr = to_bgr(frame)?;
        let (cols, rows) = (bgr.cols(), bgr.rows());
        let mut first = self.first_pass(&bgr)?;
        if let Some(side) = self.det_tile_side_px {
            if first.iter().all(|c| likeness_weight(c) <= NOT_PLATE_LIKE) {
                self.halves_pass(&bgr, side, &mut first)?;
            }
        }
        overlays_last(&mut first, cols, rows);
        let mut candidates = self.refine(&bgr, first)?;
        overlays_last(&mut candidates, cols, rows);
        self.second_look(&bgr, &mut candidates)?;
        overlays_last(&mut candidates, cols, rows);
        vote_on_the_best(&mut candidates);
        tracing::debug!(
            candidates = candidates.len(),
            best = candidates.first().map(|c| c.text.as_str()),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "frame read"
        );
        Ok(candidates)
    }

    /// The whole frame at [`AnprConfig::det_quick_side_px`], and again at
    /// [`AnprConfig::det_limit_side_px`] unless the quick pass settled it (see the module
    /// header); both passes' candidates ranked together.
    fn first_pass(&mut self, frame: &Mat) -> Result<Vec<PlateCandidate>, AnprError> {
        let full = self.det_params;
        let quick = match self.det_quick_side_px {
            Some(side) => DetParams {
                limit_side_px: side,
                ..full
            },
            None => return self.read_region(frame, &full),
        };
        let (h, w) = (frame.rows(), frame.cols());
        let mut candidates = self.read_region(frame, &quick)?;
        overlays_last(&mut candidates, w, h);
        let same_input = detect::input_size(h, w, quick.limit_side_px)
            == detect::input_size(h, w, full.limit_side_px);
        if same_input {
            return Ok(candidates);
        }
        let more = match candidates.first().filter(|c| settled(c)) {
            Some(best) => self.reread_wider(frame, best.bbox)?,
            None => self.read_region(frame, &full)?,
        };
        for c in more {
            merge(&mut candidates, c);
        }
        sort_candidates(&mut candidates);
        Ok(candidates)
    }

    /// The last look at a frame in which no pass found plate-like text
    /// ([`AnprConfig::det_tile_side_px`]): its left and right halves (each [`TILE_WIDTH_SHARE`]
    /// of its width, so they overlap in the middle) are detected and read, each at a long side
    /// of up to `side_px`; their candidates, boxes mapped back to the frame, join `candidates`.
    /// On the dev photos this happens to 2 of 231, one a 20 px plate in a 1280x720 view that the
    /// full pass, at 960 px, found nothing in.
    fn halves_pass(
        &mut self,
        frame: &Mat,
        side_px: u32,
        candidates: &mut Vec<PlateCandidate>,
    ) -> Result<(), AnprError> {
        let (cols, rows) = (frame.cols(), frame.rows());
        let width = ((cols as f32 * TILE_WIDTH_SHARE) as i32).clamp(1, cols);
        for x0 in [0, cols - width] {
            let half = Mat::roi(frame, Rect::new(x0, 0, width, rows))
                .cv("half of the frame")?
                .try_clone()
                .cv("half of the frame")?;
            let params = DetParams {
                limit_side_px: (width.max(rows) as u32).clamp(32, side_px),
                ..self.det_params
            };
            for mut c in self.read_region(&half, &params)? {
                c.bbox[0] += x0;
                merge(candidates, c);
            }
        }
        sort_candidates(candidates);
        Ok(())
    }

    /// Reads the region of `[x, y, w, h]` again, widened by half its height on either side and
    /// a sixth above and below: the quick pass's boxes are coarse, and one can end a character
    /// short of the plate (`OKL081` of `OKL0817`). A longer read that fits a format makes the
    /// shorter one a partial read, which ranking drops.
    fn reread_wider(
        &mut self,
        frame: &Mat,
        bbox: [i32; 4],
    ) -> Result<Vec<PlateCandidate>, AnprError> {
        let h = bbox[3];
        self.reread(frame, bbox, &[(h / 2, h / 6)])
    }

    /// A second look at the best candidate when it fits a format but did not settle the frame:
    /// its region is read again (recognition only) from two more crops, widened by half a
    /// height and a sixth, and by a quarter and a tenth, and the new reads join the vote on its
    /// plate (`CK0A1F` against `CK0A1P`, one doubtful character apart). Settled frames had
    /// their look in the quick pass.
    fn second_look(
        &mut self,
        frame: &Mat,
        candidates: &mut Vec<PlateCandidate>,
    ) -> Result<(), AnprError> {
        let Some(bbox) = candidates
            .first()
            .filter(|c| c.format.is_some() && !settled(c))
            .map(|c| c.bbox)
        else {
            return Ok(());
        };
        let h = bbox[3];
        for c in self.reread(frame, bbox, &[(h / 2, h / 6), (h / 4, h / 10)])? {
            merge(candidates, c);
        }
        sort_candidates(candidates);
        Ok(())
    }

    /// Reads the region of `bbox` again, once per `(mx, my)` margins: widened by `mx` on the left
    /// and right and `my` above and below. Recognition only; each crop is ranked on its own.
    fn reread(
        &mut self,
        frame: &Mat,
        bbox: [i32; 4],
        margins: &[(i32, i32)],
    ) -> Result<Vec<PlateCandidate>, AnprError> {
        let mut out = Vec::new();
        for &(mx, my) in margins {
            let roi = widened(frame, bbox, mx, my);
            if !plate_shaped(roi.width, roi.height) {
                continue;
            }
            let crop = Mat::roi(frame, roi)
                .cv("re-read region")?
                .try_clone()
                .cv("re-read region")?;
            let reads = recognize::recognize(&mut self.rec, &self.charset, &[crop], 1)?;
            let region = TextBox::upright(roi, 1.0);
            out.extend(rank(&[region], &reads, &self.formats, self.min_confidence));
        }
        Ok(out)
    }

    /// Detection, crops no plate can be dropped, recognition, ranking: one pass over `img`.
    fn read_region(
        &mut self,
        img: &Mat,
        params: &DetParams,
    ) -> Result<Vec<PlateCandidate>, AnprError> {
        let boxes = detect::detect(&mut self.det, img, params)?;
        let mut crops = Vec::with_capacity(boxes.len());
        let mut kept = Vec::with_capacity(boxes.len());
        for b in boxes {
            let crop = detect::crop(img, &b)?;
            if plate_shaped(crop.cols(), crop.rows()) {
                crops.push(crop);
                kept.push(b);
            }
        }
        let reads = recognize::recognize(&mut self.rec, &self.charset, &crops, self.rec_batch)?;
        Ok(rank(&kept, &reads, &self.formats, self.min_confidence))
    }

    /// The second pass: the region around each of the best `refine_top` candidates, enlarged so
    /// that the text is about [`REFINE_TEXT_HEIGHT_PX`] high, is detected and read again; its
    /// candidates (boxes mapped back to the frame) join the first pass's and all are re-ranked.
    fn refine(
        &mut self,
        frame: &Mat,
        mut candidates: Vec<PlateCandidate>,
    ) -> Result<Vec<PlateCandidate>, AnprError> {
        // A box appears twice when a read was bent to fit a format: as read and corrected.
        let mut regions: Vec<[i32; 4]> = Vec::with_capacity(self.refine_top);
        for c in candidates.iter().take_while(|c| !settled(c)) {
            if regions.len() == self.refine_top {
                break;
            }
            if !regions.contains(&c.bbox) {
                regions.push(c.bbox);
            }
        }
        for [x, y, w, h] in regions {
            let roi = widened(frame, [x, y, w, h], w / 4 + h / 2, h * 2 / 3);
            let (x0, y0) = (roi.x, roi.y);
            let scale = (REFINE_TEXT_HEIGHT_PX / h.max(1) as f64).clamp(1.0, 4.0);
            let mut region = Mat::default();
            imgproc::resize(
                &Mat::roi(frame, roi).cv("refine region")?,
                &mut region,
                Size::new(
                    (f64::from(roi.width) * scale).round() as i32,
                    (f64::from(roi.height) * scale).round() as i32,
                ),
                0.0,
                0.0,
                imgproc::INTER_CUBIC,
            )
            .cv("enlarging the refine region")?;
            let mut params = self.det_params;
            params.limit_side_px = (region.cols().max(region.rows()) as u32).clamp(64, 1280);
            for mut c in self.read_region(&region, &params)? {
                let [bx, by, bw, bh] = c.bbox;
                let back = |v: i32| (f64::from(v) / scale).round() as i32;
                c.bbox = [x0 + back(bx), y0 + back(by), back(bw), back(bh)];
                merge(&mut candidates, c);
            }
        }
        sort_candidates(&mut candidates);
        Ok(candidates)
    }
}

/// The reads of the best candidate's plate (the same format and length, boxes overlapping by at
/// least [`SAME_PLATE_IOU`]: the passes' and crops' reads of one plate; confidence at least
/// [`VOTER_MIN_CONFIDENCE`] of the best's) vote per character, each weighted by its confidence
/// in that character; the read with the most support goes first.
/// Reads that differ in one doubtful character (`NSG979` at 0.31 on the `N`, `WSG979` at 0.48
/// on the `W`) are decided by that character, not by the mean of the others.
fn vote_on_the_best(candidates: &mut [PlateCandidate]) {
    let Some(best) = candidates.first() else {
        return;
    };
    if best.format.is_none() {
        return;
    }
    let len = best.text.chars().count();
    let same_plate: Vec<usize> = (0..candidates.len())
        .filter(|&i| {
            let c = &candidates[i];
            c.format == best.format
                && c.confidence >= best.confidence * VOTER_MIN_CONFIDENCE
                && c.text.chars().count() == len
                && iou(c.bbox, best.bbox) >= SAME_PLATE_IOU
        })
        .collect();
    if same_plate.len() < 2 {
        return;
    }
    let reads: Vec<&PlateCandidate> = same_plate.iter().map(|&i| &candidates[i]).collect();
    let tally = vote::tally_by_position(&reads, len);
    let support = |c: &PlateCandidate| -> f32 {
        c.text
            .chars()
            .zip(&tally)
            .map(|(ch, t)| t.get(&ch).copied().unwrap_or(0.0))
            .sum()
    };
    let winner = same_plate
        .iter()
        .copied()
        .max_by(|&a, &b| support(&candidates[a]).total_cmp(&support(&candidates[b])));
    if let Some(w) = winner.filter(|&w| w != 0) {
        candidates[..=w].rotate_right(1);
    }
}

/// A read votes on the best candidate's plate only if it has at least this share of the best
/// candidate's confidence: doubtful reads of the same box (`EZA166` at 0.49 beside `YF2L6G` at
/// 0.97) do not outvote a confident one together.
const VOTER_MIN_CONFIDENCE: f32 = 0.75;

/// Boxes overlapping at least this much (intersection over union) show the same plate.
const SAME_PLATE_IOU: f64 = 0.3;

/// The box `[x, y, w, h]` with `mx` more on the left and right and `my` above and below, cut to
/// the frame (at least one pixel).
fn widened(frame: &Mat, [x, y, w, h]: [i32; 4], mx: i32, my: i32) -> Rect {
    let x0 = (x - mx).clamp(0, frame.cols() - 1);
    let y0 = (y - my).clamp(0, frame.rows() - 1);
    let x1 = (x + w + mx).clamp(x0 + 1, frame.cols());
    let y1 = (y + h + my).clamp(y0 + 1, frame.rows());
    Rect::new(x0, y0, x1 - x0, y1 - y0)
}

/// Moves the candidates in a corner of a `cols` x `rows` frame after all others, keeping the
/// order within each part. Cameras print their overlays (date, time, camera name) in a corner,
/// and parts of the date read as a plate (`2O14042` in the EU `D L DDDDD` layout, `2014M`); a
/// plate that far out is cut off by the frame's edge anyway. A corner is within
/// [`CORNER_HEIGHT`] of the frame's height from its top or bottom and within
/// [`CORNER_WIDTH`] of its width from its left or right.
fn overlays_last(candidates: &mut [PlateCandidate], cols: i32, rows: i32) {
    candidates.sort_by_key(|c| in_a_corner(c.bbox, cols, rows));
}

/// See [`overlays_last`].
const CORNER_HEIGHT: f32 = 0.03;
/// See [`overlays_last`].
const CORNER_WIDTH: f32 = 0.05;

/// Whether the box `[x, y, w, h]` is in a corner of a `cols` x `rows` frame (see
/// [`overlays_last`]).
fn in_a_corner([x, y, w, h]: [i32; 4], cols: i32, rows: i32) -> bool {
    let from_top_or_bottom = y.min(rows - (y + h)) as f32 / rows.max(1) as f32;
    let from_left_or_right = x.min(cols - (x + w)) as f32 / cols.max(1) as f32;
    from_top_or_bottom < CORNER_HEIGHT && from_left_or_right < CORNER_WIDTH
}

/// Decodes an encoded image (JPEG, PNG, ..) to BGR; empty, truncated or undecodable bytes are
/// [`AnprError::Decode`].
pub(crate) fn decode_image(bytes: &[u8]) -> Result<Mat, AnprError> {
    let decode_err = |reason: String| AnprError::Decode {
        len: bytes.len(),
        reason,
    };
    if bytes.is_empty() {
        return Err(decode_err("no data".into()));
    }
    if is_truncated_jpeg(bytes) {
        return Err(decode_err(
            "truncated JPEG: no end-of-image marker (OpenCV would fill the rest with grey)".into(),
        ));
    }
    let buf = Mat::from_slice(bytes).cv("wrapping image bytes")?;
    let frame = imgcodecs::imdecode(&buf, imgcodecs::IMREAD_COLOR)
        .map_err(|e| decode_err(e.to_string()))?;
    if frame.empty() {
        return Err(decode_err("not a decodable image".into()));
    }
    Ok(frame)
}

/// A JPEG (starts with the SOI marker) that does not end with the EOI marker, trailing zero
/// padding aside: a frame cut short in transfer. libjpeg decodes it anyway, grey below the cut.
fn is_truncated_jpeg(bytes: &[u8]) -> bool {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    !bytes[..end].ends_with(&[0xFF, 0xD9])
}

pub(crate) fn to_bgr(frame: &Mat) -> Result<Mat, AnprError> {
    if frame.empty() {
        return Err(AnprError::UnsupportedFrame("empty frame".into()));
    }
    let code = match frame.typ() {
        t if t == CV_8UC3 => {
            return if frame.is_continuous() {
                frame.try_clone().cv("copying frame")
            } else {
                let mut m = Mat::default();
                frame.copy_to(&mut m).cv("copying frame")?;
                Ok(m)
            }
        }
        t if t == CV_8UC1 => imgproc::COLOR_GRAY2BGR,
        t if t == CV_8UC4 => imgproc::COLOR_BGRA2BGR,
        t => {
            return Err(AnprError::UnsupportedFrame(format!(
                "OpenCV type {t}: expected 8-bit grey, BGR or BGRA"
            )))
        }
    };
    let mut out = Mat::default();
    imgproc::cvt_color_def(frame, &mut out, code).cv("converting frame to BGR")?;
    Ok(out)
}

/// Text lines wider than this many heights are not read: no plate is (ten characters are about
/// seven heights), but shop signs, slogans and camera timestamps are, and recognition time
/// grows with width.
const MAX_PLATE_WH_RATIO: f32 = 11.0;
/// Text lower than this (pixels, upright crop) is too small to read reliably.
const MIN_TEXT_HEIGHT_PX: i32 = 8;

/// Whether an upright crop of `w` x `h` pixels can hold (a line of) a plate.
fn plate_shaped(w: i32, h: i32) -> bool {
    h >= MIN_TEXT_HEIGHT_PX && (w as f32) <= MAX_PLATE_WH_RATIO * h as f32
}

/// The share of the frame's width in each half of [`PlateReader::halves_pass`].
const TILE_WIDTH_SHARE: f32 = 0.55;

/// The second pass enlarges a candidate's region so that its text is about this high.
const REFINE_TEXT_HEIGHT_PX: f64 = 64.0;

/// A candidate that fits a format with at least this confidence settles a frame: no full-size
/// pass after the quick one, no second pass.
const SETTLED_CONFIDENCE: f32 = 0.95;

/// Whether `c` settles its frame (see [`SETTLED_CONFIDENCE`]).
fn settled(c: &PlateCandidate) -> bool {
    c.format.is_some() && c.confidence >= SETTLED_CONFIDENCE
}

/// Adds `c` to `candidates`, or keeps the more confident of it and the candidate of the same
/// text already there.
fn merge(candidates: &mut Vec<PlateCandidate>, c: PlateCandidate) {
    match candidates.iter_mut().find(|e| e.text == c.text) {
        Some(e) if e.confidence >= c.confidence => {}
        Some(e) => *e = c,
        None => candidates.push(c),
    }
}

/// Ranking weight of text that fits no format but is shaped like a plate.
const UNFORMATTED_PLATE_LIKE: f32 = 0.7;
/// Ranking weight of text that is not shaped like a plate.
const NOT_PLATE_LIKE: f32 = 0.4;

/// A candidate's confidence is multiplied by this per correction its format needed between
/// characters plate fonts draw alike ([`formats::drawn_alike`]: `O` and `0`, `I` and `1`), and
/// per country code dropped: one such correction ranks above the same text as read (0.8 >
/// [`UNFORMATTED_PLATE_LIKE`]), two do not (0.64).
const CORRECTION_FACTOR: f32 = 0.8;

/// ... and by this per correction between characters drawn differently (`8` to `B`, `2` to `Z`,
/// ..) into a format without a region code (BR, EU, US, CN, AF, IR): the recogniser saw a shape,
/// and a bare layout of letters and digits is fitted by chance by many a read, so the read as it
/// is ranks first (0.65 < [`UNFORMATTED_PLATE_LIKE`]) unless it is less plate-like than the fit
/// (digits only, 0.56). A fit that a valid region code confirms (TJ `1234 BS 01` read
/// `1234 8S 01`) costs [`CORRECTION_FACTOR`] as for look-alikes.
const SHAPE_CORRECTION_FACTOR: f32 = 0.65;

/// The factor for reading `seen` as `corrected` (1 when they are the same) into a format whose
/// region code was checked or not.
fn correction_cost(seen: char, corrected: char, region_checked: bool) -> f32 {
    if seen == corrected {
        1.0
    } else if region_checked || formats::drawn_alike(seen, corrected) {
        CORRECTION_FACTOR
    } else {
        SHAPE_CORRECTION_FACTOR
    }
}

/// A box (`[x, y, w, h]`) and its normalised characters with their confidences.
type BoxRead = ([i32; 4], Vec<(char, f32)>);

/// Turns per-box reads into ranked candidates (see the module header).
pub(crate) fn rank(
    boxes: &[TextBox],
    reads: &[DecodedText],
    plate_formats: &[PlateFormat],
    min_confidence: f32,
) -> Vec<PlateCandidate> {
    let items: Vec<BoxRead> = boxes
        .iter()
        .zip(reads)
        .map(|(b, r)| {
            let chars = r
                .chars
                .iter()
                .filter_map(|&(c, p)| normalise_char(c).map(|c| (c, p)))
                .collect();
            (b.bbox(), chars)
        })
        .collect();

    let mut texts: Vec<BoxRead> = items.clone();
    let all_lines = lines(&items);
    for line in &all_lines {
        if line.len() < 2 {
            continue;
        }
        let join = |idx: &[usize]| {
            let bbox = idx
                .iter()
                .map(|&i| items[i].0)
                .reduce(union)
                .unwrap_or([0; 4]);
            let chars = idx
                .iter()
                .flat_map(|&i| items[i].1.iter().copied())
                .collect();
            (bbox, chars)
        };
        for pair in line.windows(2) {
            texts.push(join(pair));
        }
        if line.len() > 2 {
            texts.push(join(line));
        }
    }
    // Two-line plates: a line directly above another of about the same height and width
    // range is read top line first.
    let line_box = |line: &[usize]| {
        line.iter()
            .map(|&i| items[i].0)
            .reduce(union)
            .unwrap_or([0; 4])
    };
    for top in &all_lines {
        for bottom in &all_lines {
            let (a, b) = (line_box(top), line_box(bottom));
            if stacked(a, b) {
                let bbox = union(a, b);
                let chars = top
                    .iter()
                    .chain(bottom.iter())
                    .flat_map(|&i| items[i].1.iter().copied())
                    .collect();
                texts.push((bbox, chars));
            }
        }
    }

    let mut out: Vec<PlateCandidate> = Vec::new();
    for (bbox, chars) in texts {
        if chars.len() < 3 {
            continue;
        }
        let text: String = chars.iter().map(|c| c.0).collect();
        let as_read = || {
            let confs: Vec<f32> = chars.iter().map(|c| c.1).collect();
            PlateCandidate {
                text: text.clone(),
                confidence: confs.iter().sum::<f32>() / confs.len() as f32,
                bbox,
                format: None,
                char_confidences: confs,
            }
        };
        let mut cands = Vec::with_capacity(2);
        match formats::best_match_in(plate_formats, &text) {
            Some(m) => {
                let read = &chars[m.span.clone()];
                let mean = read.iter().map(|c| c.1).sum::<f32>() / read.len().max(1) as f32;
                // A corrected character is not what the recogniser saw: its confidence carries
                // the correction's cost, which the per-character votes weigh.
                let region_checked = formats::by_code(m.format).is_some_and(|f| f.region.is_some());
                let costs: Vec<f32> = m
                    .text
                    .chars()
                    .zip(read)
                    .map(|(c, &(seen, _))| correction_cost(seen, c, region_checked))
                    .collect();
                let confs: Vec<f32> = read.iter().zip(&costs).map(|(r, k)| r.1 * k).collect();
                let changed = costs.iter().filter(|&&k| k < 1.0).count() as u32;
                let dropped = m.corrections.saturating_sub(changed);
                let cost = costs.iter().product::<f32>() * CORRECTION_FACTOR.powi(dropped as i32);
                if m.corrections > 0 {
                    // The read as it is, in case the format was bent to fit: see the module
                    // header.
                    cands.push(as_read());
                }
                cands.push(PlateCandidate {
                    text: m.text,
                    confidence: mean * cost,
                    bbox,
                    format: Some(m.format),
                    char_confidences: confs,
                });
            }
            None => cands.push(as_read()),
        }
        for cand in cands {
            if cand.confidence >= min_confidence {
                merge(&mut out, cand);
            }
        }
    }
    sort_candidates(&mut out);
    out
}

/// Drops partial reads, then orders candidates by [`plate_likeness`] times [`nearness`], best
/// first.
///
/// A read is partial when another candidate that fits a format contains its text and overlaps
/// its box: `123ABC` (which fits a US layout) is part of the KZ plate `123ABC02` whose region
/// code the detector boxed apart.
fn sort_candidates(c: &mut Vec<PlateCandidate>) {
    let partial: Vec<bool> = c
        .iter()
        .map(|a| {
            c.iter().any(|b| {
                b.format.is_some()
                    && b.text.len() > a.text.len()
                    && b.text.contains(a.text.as_str())
                    && overlap(a.bbox, b.bbox)
            })
        })
        .collect();
    let mut flags = partial.into_iter();
    c.retain(|_| !flags.next().unwrap_or(false));
    let plates: Vec<[i32; 4]> = c
        .iter()
        .filter(|x| likeness_weight(x) > NOT_PLATE_LIKE)
        .map(|x| x.bbox)
        .collect();
    let mut scored: Vec<(f32, PlateCandidate)> = c
        .drain(..)
        .map(|x| (plate_likeness(&x) * nearness(x.bbox, &plates), x))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    c.extend(scored.into_iter().map(|(_, x)| x));
}

/// How near the camera the text of box `b` is, from 1 down to [`FARTHER_PLATE_MIN`]: plates are
/// all about one size, so a plate-like text lower than another one elsewhere in the frame (boxes
/// that do not overlap: not a read of the same plate) is on a vehicle farther away, a queueing
/// one or one in the next lane, and ranks at the square root of the ratio of their heights. The
/// plate of the vehicle in front of the camera is the largest (`JSQ1413` 58 px high, beside a
/// bus's `PJT2809` at 33 px).
fn nearness(b: [i32; 4], plates: &[[i32; 4]]) -> f32 {
    let tallest = plates
        .iter()
        .filter(|p| !overlap(**p, b))
        .map(|p| p[3])
        .max()
        .unwrap_or(0);
    if tallest > b[3] {
        (b[3].max(1) as f32 / tallest as f32)
            .sqrt()
            .max(FARTHER_PLATE_MIN)
    } else {
        1.0
    }
}

/// See [`nearness`]: a farther plate keeps at least this share of its score, so a clear read of
/// it still beats a doubtful read of a sign or sticker.
const FARTHER_PLATE_MIN: f32 = 0.8;

/// Whether two `[x, y, w, h]` boxes intersect.
fn overlap(a: [i32; 4], b: [i32; 4]) -> bool {
    a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3]
}

/// The ranking score: the confidence (which already carries the format's corrections), times
/// 1 for text that fits a plate format, [`UNFORMATTED_PLATE_LIKE`] for text shaped like a plate
/// of a country without a format here (5-8 characters, letters and digits; 0.8 of that for
/// digits only, which camera date stamps also are), and
/// [`NOT_PLATE_LIKE`] for anything else (words, long digit runs such as camera timestamps).
fn plate_likeness(c: &PlateCandidate) -> f32 {
    c.confidence * likeness_weight(c)
}

/// The weight of [`plate_likeness`], by the text's shape alone.
fn likeness_weight(c: &PlateCandidate) -> f32 {
    if c.format.is_some() {
        return 1.0;
    }
    let n = c.text.len();
    let digits = c.text.bytes().filter(u8::is_ascii_digit).count();
    if (5..=8).contains(&n) && digits > 0 && digits < n {
        UNFORMATTED_PLATE_LIKE
    } else if (5..=8).contains(&n) && digits == n {
        UNFORMATTED_PLATE_LIKE * 0.8
    } else {
        NOT_PLATE_LIKE
    }
}

/// Groups box indices into text lines, each sorted left to right.
fn lines(items: &[BoxRead]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| items[i].0[0]);
    let mut lines: Vec<Vec<usize>> = Vec::new();
    for i in order {
        let [x, y, _, h] = items[i].0;
        let cy = y + h / 2;
        let found = lines.iter_mut().find(|line| {
            line.last().is_some_and(|&j| {
                let [jx, jy, jw, jh] = items[j].0;
                let jcy = jy + jh / 2;
                let height = h.max(jh);
                (cy - jcy).abs() * 2 < height
                    && (h.min(jh) * 3 >= height * 2)
                    && x >= jx
                    && x - (jx + jw) < 2 * height
            })
        });
        match found {
            Some(line) => line.push(i),
            None => lines.push(vec![i]),
        }
    }
    lines
}

/// Whether box `b` is the second line of a two-line plate whose first line is box `a`: below
/// it with a gap under one line height, heights within a factor of two, and the narrower
/// line's horizontal extent at least half inside the wider one's.
fn stacked(a: [i32; 4], b: [i32; 4]) -> bool {
    let (ha, hb) = (a[3].max(1), b[3].max(1));
    let gap = b[1] - (a[1] + a[3]);
    let h_overlap = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    b[1] > a[1] + ha / 2
        && gap < ha.max(hb)
        && ha.min(hb) * 2 >= ha.max(hb)
        && h_overlap * 2 >= a[2].min(b[2])
}

fn union(a: [i32; 4], b: [i32; 4]) -> [i32; 4] {
    let x0 = a[0].min(b[0]);
    let y0 = a[1].min(b[1]);
    let x1 = (a[0] + a[2]).max(b[0] + b[2]);
    let y1 = (a[1] + a[3]).max(b[1] + b[3]);
    [x0, y0, x1 - x0, y1 - y0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::Point2f;

    fn tb(x: f32, y: f32, w: f32, h: f32) -> TextBox {
        let p = Point2f::new;
        TextBox {
            points: [p(x, y), p(x + w, y), p(x + w, y + h), p(x, y + h)],
            score: 0.9,
        }
    }

    fn dt(s: &str, p: f32) -> DecodedText {
        DecodedText {
            chars: s.chars().map(|c| (c, p)).collect(),
        }
    }

    #[test]
    fn split_plate_is_joined_and_ranked_above_other_text() {
        let boxes = [
            tb(10.0, 10.0, 200.0, 20.0),
            tb(300.0, 300.0, 80.0, 40.0),
            tb(400.0, 302.0, 40.0, 38.0),
            tb(455.0, 301.0, 40.0, 40.0),
        ];
        let reads = [
            dt("SCANIA R450", 0.99),
            dt("1234", 0.9),
            dt("AB", 0.9),
            dt("01", 0.9),
        ];
        let c = rank(&boxes, &reads, formats::FORMATS, 0.3);
        assert_eq!(c[0].text, "1234AB01");
        assert_eq!(c[0].format, Some("TJ"));
        assert_eq!(c[0].bbox, [300, 300, 195, 41]);
        assert_eq!(c[0].char_confidences.len(), 8);
        assert!(c
            .iter()
            .any(|c| c.text == "SCANIAR450" && c.format.is_none()));
    }

    /// A read that fits a format with one correction of look-alikes ranks corrected; one that
    /// needs a correction of shape or two ranks as read, with the bent text still among the
    /// candidates.
    #[test]
    fn a_read_bent_by_a_shape_or_two_corrections_ranks_below_itself_as_read() {
        let br_us: Vec<PlateFormat> = formats::FORMATS
            .iter()
            .filter(|f| ["BR", "US"].contains(&f.code))
            .copied()
            .collect();
        let ranked = |text: &str, formats: &[PlateFormat]| {
            rank(
                &[tb(0.0, 0.0, 140.0, 30.0)],
                &[dt(text, 0.95)],
                formats,
                0.3,
            )
        };
        let best = |c: &[PlateCandidate]| c.first().map(|c| (c.text.clone(), c.format));
        let has = |c: &[PlateCandidate], text: &str, format: Option<&str>| {
            c.iter().any(|c| c.text == text && c.format == format)
        };

        let one = ranked("ABC12O4", &br_us);
        assert_eq!(best(&one), Some(("ABC1204".into(), Some("BR"))), "{one:?}");
        assert!(has(&one, "ABC12O4", None));

        // One correction of a shape: a `2` is not taken for a `Z`.
        let shape = ranked("CC2881", &br_us);
        assert_eq!(best(&shape), Some(("CC2881".into(), None)), "{shape:?}");
        assert!(has(&shape, "CCZ881", Some("US")));

        // A region code confirms the fit: the Tajik plate's `B` read as an `8` is corrected.
        let tj = ranked("1234 8S 01", formats::FORMATS);
        assert_eq!(best(&tj), Some(("1234BS01".into(), Some("TJ"))), "{tj:?}");

        let two = ranked("J868321", &br_us);
        assert_eq!(best(&two), Some(("J868321".into(), None)), "{two:?}");
        let bent = two.iter().find(|c| c.text == "JBG8321");
        assert_eq!(bent.map(|c| c.format), Some(Some("BR")), "{two:?}");
        assert!(two[0].confidence > bent.map_or(1.0, |c| c.confidence));
        // The two corrected characters (of different shapes) carry the correction's cost, the
        // others are as read.
        let per_char = bent.map(|c| c.char_confidences.clone()).unwrap_or_default();
        let costed = 0.95 * SHAPE_CORRECTION_FACTOR;
        assert_eq!(per_char, [0.95, costed, costed, 0.95, 0.95, 0.95, 0.95]);
    }

    fn read(text: &str, confs: &[f32], bbox: [i32; 4]) -> PlateCandidate {
        PlateCandidate {
            text: text.into(),
            confidence: confs.iter().sum::<f32>() / confs.len() as f32,
            bbox,
            format: Some("US"),
            char_confidences: confs.to_vec(),
        }
    }

    /// Two reads of one plate that differ in a doubtful first character: the one more sure of
    /// that character goes first, though its mean confidence is lower. A read of another plate
    /// (no overlap) or of another length does not vote.
    #[test]
    fn reads_of_one_plate_vote_per_character() {
        let plate = [347, 539, 49, 26];
        // As ranked: the mean confidence puts the wrong read first.
        let mut c = vec![
            read("NSG979", &[0.31, 0.99, 0.84, 0.99, 0.99, 0.99], plate),
            read("NSG979", &[0.99; 6], [600, 100, 50, 25]),
            read("NSG9790", &[0.99; 7], plate),
            read(
                "WSG979",
                &[0.48, 0.98, 0.63, 0.99, 0.99, 0.99],
                [334, 535, 65, 31],
            ),
        ];
        vote_on_the_best(&mut c);
        let order: Vec<(&str, [i32; 4])> = c.iter().map(|c| (c.text.as_str(), c.bbox)).collect();
        assert_eq!(
            order,
            [
                ("WSG979", [334, 535, 65, 31]),
                ("NSG979", plate),
                ("NSG979", [600, 100, 50, 25]),
                ("NSG9790", plate)
            ]
        );

        // Doubtful reads of the same box (corrected into the format, hence their low
        // confidence) do not outvote a confident one together.
        let doubtful = |text: &str, confs: &[f32], confidence: f32| PlateCandidate {
            confidence,
            ..read(text, confs, plate)
        };
        let mut c = vec![
            read("YF2L6G", &[0.99, 0.89, 0.99, 0.92, 0.99, 0.99], plate),
            doubtful("YF2166", &[0.99, 0.79, 0.98, 0.57, 0.91, 0.35], 0.63),
            doubtful("EZA166", &[0.55, 0.79, 0.31, 0.80, 0.99, 0.95], 0.49),
        ];
        vote_on_the_best(&mut c);
        assert_eq!(c[0].text, "YF2L6G", "{c:?}");

        let mut alone = vec![read("NSG979", &[0.31, 0.99, 0.84, 0.99, 0.99, 0.99], plate)];
        vote_on_the_best(&mut alone);
        assert_eq!(alone[0].text, "NSG979");
    }

    /// Camera overlays in a corner rank after everything else; a plate at the top edge but not
    /// in a corner keeps its place.
    #[test]
    fn text_in_a_corner_of_the_frame_ranks_after_the_rest() {
        let at = |text: &str, bbox: [i32; 4]| read(text, &[0.9; 7], bbox);
        let mut c = vec![
            at("2O14042", [1207, 696, 61, 17]),
            at("2O14M28", [3, 2, 122, 17]),
            at("PG12849", [644, 96, 115, 53]),
            at("AB1234C", [600, 1, 100, 35]),
        ];
        overlays_last(&mut c, 1280, 720);
        let order: Vec<&str> = c.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(order, ["PG12849", "AB1234C", "2O14042", "2O14M28"]);
        assert!(
            !in_a_corner([1100, 650, 60, 17], 1280, 720),
            "inside the frame"
        );
    }

    /// Of two plates read equally well, the taller (the nearer vehicle's) goes first; reads of
    /// one plate with boxes of different heights do not push each other down.
    #[test]
    fn the_nearer_plate_ranks_first() {
        let plate = |text: &str, bbox: [i32; 4]| read(text, &[1.0; 7], bbox);
        let mut c = vec![
            plate("PJT2809", [1157, 352, 94, 33]),
            plate("JSQ1413", [569, 834, 255, 58]),
        ];
        sort_candidates(&mut c);
        assert_eq!(c[0].text, "JSQ1413", "{c:?}");
        assert!((nearness([1157, 352, 94, 33], &[[569, 834, 255, 58]]) - 0.8).abs() < 1e-6);
        assert!((nearness([0, 0, 90, 49], &[[500, 0, 90, 64]]) - 0.875).abs() < 1e-6);

        let mut one = vec![
            plate("JSQ1413", [569, 834, 255, 58]),
            plate("JSQ1418", [560, 820, 270, 80]),
        ];
        sort_candidates(&mut one);
        assert_eq!(
            one[0].text, "JSQ1413",
            "an overlapping read is the same plate: {one:?}"
        );
        assert_eq!(nearness([569, 834, 255, 58], &[[560, 820, 270, 80]]), 1.0);
    }

    #[test]
    fn a_jpeg_without_its_end_marker_is_truncated() {
        assert!(is_truncated_jpeg(&[0xFF, 0xD8, 0xFF, 0xE0, 1, 2]));
        assert!(!is_truncated_jpeg(&[0xFF, 0xD8, 1, 2, 0xFF, 0xD9]));
        assert!(!is_truncated_jpeg(&[0xFF, 0xD8, 1, 2, 0xFF, 0xD9, 0, 0]));
        assert!(!is_truncated_jpeg(b"\x89PNG"), "only JPEGs are checked");
    }

    /// The wider re-read of a settled quick-pass read: a box that ends a character short of the
    /// plate gives the whole plate, and ranking then drops the short read as a partial one.
    /// Real models on a rendered frame (the native stack, as for the integration tests).
    #[test]
    fn a_box_ending_a_character_short_is_read_whole_when_widened() -> anyhow::Result<()> {
        let mut reader = PlateReader::new(&AnprConfig::from_env())?;
        let v = bcp_sim::plate_render::render_vehicle("1234 AB 01", 3)?;
        let p = v.plate;
        let short = [p.x, p.y, p.width * 85 / 100, p.height];
        let cut =
            Mat::roi(&v.frame, Rect::new(short[0], short[1], short[2], short[3]))?.try_clone()?;
        let reads = recognize::recognize(&mut reader.rec, &reader.charset, &[cut], 1)?;
        let short_text: String = reads
            .first()
            .map(DecodedText::text)
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        anyhow::ensure!(
            !short_text.contains("1234AB01"),
            "the cut box still shows the whole plate ({short_text:?}): the test shows nothing"
        );
        let wider = reader.reread_wider(&v.frame, short)?;
        let best = wider.first().map(|c| (c.text.as_str(), c.format));
        anyhow::ensure!(best == Some(("1234AB01", Some("TJ"))), "{wider:?}");

        let partial = PlateCandidate {
            text: "1234AB0".into(),
            confidence: 0.99,
            bbox: short,
            format: Some("TJ"),
            char_confidences: vec![0.99; 7],
        };
        let mut candidates = vec![partial];
        for c in wider {
            merge(&mut candidates, c);
        }
        sort_candidates(&mut candidates);
        anyhow::ensure!(
            candidates.iter().all(|c| c.text != "1234AB0"),
            "the partial read was kept: {candidates:?}"
        );
        Ok(())
    }

    /// The second look reads the region of a best candidate that fits a format without settling
    /// the frame from two more crops; a settled one is left alone. Real models, rendered frame.
    #[test]
    fn an_unsettled_best_read_gets_a_second_look() -> anyhow::Result<()> {
        let mut reader = PlateReader::new(&AnprConfig::from_env())?;
        let v = bcp_sim::plate_render::render_vehicle("1234 AB 01", 5)?;
        let p = v.plate;
        let doubtful = PlateCandidate {
            text: "1234AB07".into(),
            confidence: 0.6,
            bbox: [p.x, p.y, p.width, p.height],
            format: Some("TJ"),
            char_confidences: vec![0.6; 8],
        };
        let mut candidates = vec![doubtful.clone()];
        reader.second_look(&v.frame, &mut candidates)?;
        let read = candidates.iter().find(|c| c.text == "1234AB01");
        anyhow::ensure!(
            read.is_some_and(|c| c.bbox != doubtful.bbox && settled(c)),
            "the plate's region was not read again: {candidates:?}"
        );

        let mut settled_frame = vec![PlateCandidate {
            confidence: 0.99,
            ..doubtful
        }];
        reader.second_look(&v.frame, &mut settled_frame)?;
        anyhow::ensure!(settled_frame.len() == 1, "{settled_frame:?}");
        Ok(())
    }

    #[test]
    fn two_line_plates_are_read_top_line_first() {
        let boxes = [tb(300.0, 300.0, 120.0, 40.0), tb(290.0, 350.0, 140.0, 42.0)];
        let reads = [dt("1234", 0.9), dt("AB 01", 0.9)];
        let c = rank(&boxes, &reads, formats::FORMATS, 0.3);
        assert_eq!(c[0].text, "1234AB01");
        assert_eq!(c[0].format, Some("TJ"));
        assert!(stacked([0, 0, 100, 40], [10, 45, 90, 40]));
        assert!(
            !stacked([0, 0, 100, 40], [10, 200, 90, 40]),
            "too far below"
        );
        assert!(
            !stacked([0, 0, 100, 40], [300, 45, 90, 40]),
            "beside, not below"
        );
        assert!(
            !stacked([0, 0, 100, 40], [10, 45, 90, 10]),
            "much smaller text"
        );
    }

    #[test]
    fn config_validation_names_the_key() {
        let mut cfg = AnprConfig::default();
        assert!(cfg.validate().is_ok());
        // The error of an invalid `cfg`, which must name all of `words`.
        let refused = |cfg: &AnprConfig, words: &[&str]| {
            let err = cfg.validate().map_err(|e| e.to_string());
            assert!(
                matches!(err, Err(ref m) if words.iter().all(|w| m.contains(w))),
                "{err:?}"
            );
        };
        cfg.formats = vec!["TJ".into(), "XX".into()];
        refused(&cfg, &["formats", "XX"]);
        cfg.formats.clear();
        cfg.det_quick_side_px = 16;
        refused(&cfg, &["det_quick_side_px"]);
        cfg.det_quick_side_px = 0;
        assert!(cfg.validate().is_ok(), "0 turns the quick pass off");
        cfg.det_tile_side_px = 16;
        refused(&cfg, &["det_tile_side_px"]);
        cfg.det_tile_side_px = 0;
        assert!(cfg.validate().is_ok(), "0 turns the look at the halves off");
        cfg.det_threshold = 1.5;
        refused(&cfg, &["det_threshold"]);
    }
}
