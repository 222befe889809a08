//! Text detection with the PP-OCRv4 DB model, and cropping of what it found.
//!
//! Steps (the DB post-processing of PaddleOCR / rapidocr, written with OpenCV):
//! 1. resize so that the long side is at most `limit_side_px` and both sides are multiples of 32;
//! 2. normalise `(x / 255 - 0.5) / 0.5`, NCHW, run the model: a per-pixel text probability map;
//! 3. threshold the map, find contours, take each contour's minimum-area rectangle;
//! 4. score a rectangle by the mean probability inside it and drop weak ones;
//! 5. grow it by the unclip ratio (DB shrinks text regions in training: the offset is
//!    `area * ratio / perimeter` on every side), scale back to frame coordinates.
//!
//! [`crop`] turns a (possibly rotated) box into an upright image for recognition.

use ndarray::Array4;
use opencv::core::{Mat, Point, Point2f, Rect, RotatedRect, Scalar, Size, Size2f, Vector, CV_8UC1};
use opencv::prelude::*;
use opencv::{core, imgproc};
use ort::session::Session;
use ort::value::TensorRef;

use crate::error::{AnprError, CvContext, OrtContext};

/// Tuning of the detector.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DetParams {
    pub limit_side_px: u32,
    pub threshold: f32,
    pub box_threshold: f32,
    pub unclip_ratio: f32,
    pub max_candidates: usize,
}

/// A detected text region in frame coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextBox {
    /// Corners in order top-left, top-right, bottom-right, bottom-left.
    pub points: [Point2f; 4],
    /// Mean text probability inside the (unexpanded) box.
    pub score: f32,
}

impl TextBox {
    /// The box of an upright rectangle, with `score`.
    pub(crate) fn upright(r: Rect, score: f32) -> Self {
        let (x0, y0) = (r.x as f32, r.y as f32);
        let (x1, y1) = (x0 + r.width as f32, y0 + r.height as f32);
        let p = Point2f::new;
        Self {
            points: [p(x0, y0), p(x1, y0), p(x1, y1), p(x0, y1)],
            score,
        }
    }

    /// Axis-aligned bounding box `[x, y, w, h]`.
    pub fn bbox(&self) -> [i32; 4] {
        let xs = self.points.map(|p| p.x);
        let ys = self.points.map(|p| p.y);
        let x0 = xs.iter().copied().fold(f32::INFINITY, f32::min);
        let x1 = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let y0 = ys.iter().copied().fold(f32::INFINITY, f32::min);
        let y1 = ys.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let (x0, y0) = (x0.floor() as i32, y0.floor() as i32);
        [x0, y0, x1.ceil() as i32 - x0, y1.ceil() as i32 - y0]
    }
}

/// Detection input size for a frame of `h` x `w`: long side limited, and the area limited to
/// two thirds of the long side squared (16:9 and 16:10 frames are not affected; a 4:3 or square
/// frame is scaled a little further: the detector's largest input sets the engine's peak
/// memory, and a 1280 x 1280 frame at 960 x 960 added 40 MiB for no read more), multiples of
/// 32.
pub(crate) fn input_size(h: i32, w: i32, limit_side_px: u32) -> (i32, i32) {
    let long = h.max(w) as f32;
    let limit = limit_side_px.max(32) as f32;
    let mut ratio = if long > limit { limit / long } else { 1.0 };
    let max_area = limit * limit * 2.0 / 3.0;
    let area = h as f32 * w as f32 * ratio * ratio;
    if area > max_area {
        ratio *= (max_area / area).sqrt();
    }
    let round32 = |v: i32| (((v as f32 * ratio) / 32.0).round() as i32 * 32).max(32);
    (round32(h), round32(w))
}

/// Runs detection on a BGR 8-bit frame.
pub(crate) fn detect(
    session: &mut Session,
    frame: &Mat,
    p: &DetParams,
) -> Result<Vec<TextBox>, AnprError> {
    let (h, w) = (frame.rows(), frame.cols());
    let (rh, rw) = input_size(h, w, p.limit_side_px);
    let mut resized = Mat::default();
    imgproc::resize(
        frame,
        &mut resized,
        Size::new(rw, rh),
        0.0,
        0.0,
        imgproc::INTER_LINEAR,
    )
    .cv("resize for detection")?;
    let input = bgr_to_nchw(&resized)?;

    let outputs = session
        .run(ort::inputs![
            TensorRef::from_array_view(&input).ort("detection input")?
        ])
        .ort("running the detection model")?;
    let (shape, probs) = outputs[0]
        .try_extract_tensor::<f32>()
        .ort("reading the detection output")?;
    let (mh, mw) = match shape[..] {
        [_, _, mh, mw] if mh as i32 == rh && mw as i32 == rw => (rh, rw),
        _ => {
            return Err(AnprError::UnsupportedFrame(format!(
                "detection output shape {shape:?} does not match input {rh}x{rw}"
            )))
        }
    };
    let plane = (mh * mw) as usize;
    let probs = probs.get(..plane).ok_or_else(|| {
        AnprError::UnsupportedFrame("detection output shorter than its shape".into())
    })?;
    let prob_map = Mat::new_rows_cols_with_data(mh, mw, probs)
        .cv("probability map")?
        .try_clone()
        .cv("probability map")?;
    let bitmap: Vec<u8> = probs
        .iter()
        .map(|&v| if v > p.threshold { 255 } else { 0 })
        .collect();
    let bitmap = Mat::new_rows_cols_with_data(mh, mw, &bitmap).cv("bitmap")?;

    let mut contours = Vector::<Vector<Point>>::new();
    imgproc::find_contours_def(
        &bitmap,
        &mut contours,
        imgproc::RETR_LIST,
        imgproc::CHAIN_APPROX_SIMPLE,
    )
    .cv("find contours")?;

    let sx = w as f32 / mw as f32;
    let sy = h as f32 / mh as f32;
    let mut boxes = Vec::new();
    for contour in contours.iter().take(p.max_candidates) {
        let rect = imgproc::min_area_rect(&contour).cv("min area rect")?;
        if rect.size.width.min(rect.size.height) < 3.0 {
            continue;
        }
        let score = box_score(&prob_map, rect)?;
        if score < p.box_threshold {
            continue;
        }
        let grown = unclip(rect, p.unclip_ratio);
        if grown.size.width.min(grown.size.height) < 5.0 {
            continue;
        }
        let mut pts = [Point2f::default(); 4];
        grown.points(&mut pts).cv("box points")?;
        let pts = order_points(pts).map(|q| {
            Point2f::new(
                (q.x * sx).clamp(0.0, w as f32 - 1.0),
                (q.y * sy).clamp(0.0, h as f32 - 1.0),
            )
        });
        boxes.push(TextBox { points: pts, score });
    }
    // Reading order: top to bottom, then left to right.
    boxes.sort_by(|a, b| {
        let (ay, by) = (a.points[0].y, b.points[0].y);
        if (ay - by).abs() < 10.0 {
            a.points[0].x.total_cmp(&b.points[0].x)
        } else {
            ay.total_cmp(&by)
        }
    });
    tracing::debug!(
        boxes = boxes.len(),
        contours = contours.len(),
        "text detection"
    );
    Ok(boxes)
}

/// The detector's per-channel mean and standard deviation (ImageNet's, applied to the B, G, R
/// planes in that order), on values scaled to 0..1: PaddleOCR's `NormalizeImage` for its DB
/// detectors. With `x / 127.5 - 1` instead, the detector found 5 fewer of the 115 US dev plates
/// (small plates; BENCHMARKS.md, ANPR).
const DET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const DET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Converts a BGR 8-bit image to the detector's normalised `[1, 3, H, W]` tensor:
/// `(x / 255 - mean) / std` per plane ([`DET_MEAN`], [`DET_STD`]).
pub(crate) fn bgr_to_nchw(img: &Mat) -> Result<Array4<f32>, AnprError> {
    let (h, w) = (img.rows() as usize, img.cols() as usize);
    let mean = Scalar::new(
        DET_MEAN[0] * 255.0,
        DET_MEAN[1] * 255.0,
        DET_MEAN[2] * 255.0,
        0.0,
    );
    let mut data = planes(img, 1.0 / 255.0, mean)?;
    for (plane, std) in data.chunks_mut(h * w).zip(DET_STD) {
        plane.iter_mut().for_each(|v| *v /= std);
    }
    Array4::from_shape_vec((1, 3, h, w), data)
        .map_err(|e| AnprError::UnsupportedFrame(format!("tensor shape: {e}")))
}

/// The three colour planes of a BGR 8-bit image, one after the other, as `x / 127.5 - 1`: the
/// recogniser's input (PaddleOCR's `(x / 255 - 0.5) / 0.5`).
pub(crate) fn normalised_planes(img: &Mat) -> Result<Vec<f32>, AnprError> {
    planes(img, 1.0 / 127.5, Scalar::all(127.5))
}

/// The three colour planes of a BGR 8-bit image, one after the other, as `(x - mean) * scale`.
///
/// OpenCV's `blobFromImage` does the arithmetic and the HWC -> CHW shuffle in optimised C++
/// (the crate itself may be built without optimisation).
fn planes(img: &Mat, scale: f64, mean: Scalar) -> Result<Vec<f32>, AnprError> {
    let (h, w) = (img.rows() as usize, img.cols() as usize);
    if img.channels() != 3 || h == 0 || w == 0 {
        return Err(AnprError::UnsupportedFrame(format!(
            "expected a non-empty 3-channel image, got {h}x{w}x{}",
            img.channels()
        )));
    }
    let blob = opencv::dnn::blob_from_image(
        img,
        scale,
        Size::new(0, 0),
        mean,
        false,
        false,
        core::CV_32F,
    )
    .cv("normalising image")?;
    let data = blob.data_typed::<f32>().cv("normalised image")?;
    if data.len() != 3 * h * w {
        return Err(AnprError::UnsupportedFrame(format!(
            "expected {} normalised values, got {}",
            3 * h * w,
            data.len()
        )));
    }
    Ok(data.to_vec())
}

/// Mean probability inside the rotated rectangle (DB's "fast" box score).
fn box_score(prob_map: &Mat, rect: RotatedRect) -> Result<f32, AnprError> {
    let mut pts = [Point2f::default(); 4];
    rect.points(&mut pts).cv("box points")?;
    let (mh, mw) = (prob_map.rows(), prob_map.cols());
    let xmin = pts
        .iter()
        .map(|p| p.x.floor() as i32)
        .min()
        .unwrap_or(0)
        .clamp(0, mw - 1);
    let xmax = pts
        .iter()
        .map(|p| p.x.ceil() as i32)
        .max()
        .unwrap_or(0)
        .clamp(0, mw - 1);
    let ymin = pts
        .iter()
        .map(|p| p.y.floor() as i32)
        .min()
        .unwrap_or(0)
        .clamp(0, mh - 1);
    let ymax = pts
        .iter()
        .map(|p| p.y.ceil() as i32)
        .max()
        .unwrap_or(0)
        .clamp(0, mh - 1);
    let roi_rect = Rect::new(xmin, ymin, xmax - xmin + 1, ymax - ymin + 1);
    let mut mask =
        Mat::new_rows_cols_with_default(roi_rect.height, roi_rect.width, CV_8UC1, Scalar::all(0.0))
            .cv("score mask")?;
    let poly: Vector<Point> = pts
        .iter()
        .map(|p| {
            Point::new(
                (p.x - xmin as f32).round() as i32,
                (p.y - ymin as f32).round() as i32,
            )
        })
        .collect();
    let polys = Vector::<Vector<Point>>::from_iter([poly]);
    imgproc::fill_poly_def(&mut mask, &polys, Scalar::all(1.0)).cv("score mask fill")?;
    let roi = Mat::roi(prob_map, roi_rect).cv("score roi")?;
    let mean = core::mean(&roi, &mask).cv("score mean")?;
    Ok(mean[0] as f32)
}

/// Grows a rectangle by `area * ratio / perimeter` on every side (the DB unclip of a rectangle).
fn unclip(rect: RotatedRect, ratio: f32) -> RotatedRect {
    let (w, h) = (rect.size.width, rect.size.height);
    let perimeter = 2.0 * (w + h);
    let d = if perimeter > 0.0 {
        w * h * ratio / perimeter
    } else {
        0.0
    };
    RotatedRect {
        center: rect.center,
        size: Size2f::new(w + 2.0 * d, h + 2.0 * d),
        angle: rect.angle,
    }
}

/// Orders corners as top-left, top-right, bottom-right, bottom-left.
fn order_points(mut pts: [Point2f; 4]) -> [Point2f; 4] {
    pts.sort_by(|a, b| a.x.total_cmp(&b.x));
    let (mut left, mut right) = ([pts[0], pts[1]], [pts[2], pts[3]]);
    left.sort_by(|a, b| a.y.total_cmp(&b.y));
    right.sort_by(|a, b| a.y.total_cmp(&b.y));
    [left[0], right[0], right[1], left[1]]
}

/// Warps the box to an upright crop; tall crops (height >= 1.5 width) are turned to horizontal.
pub(crate) fn crop(frame: &Mat, b: &TextBox) -> Result<Mat, AnprError> {
    let [tl, tr, br, bl] = b.points;
    let dist = |a: Point2f, c: Point2f| ((a.x - c.x).powi(2) + (a.y - c.y).powi(2)).sqrt();
    let cw = dist(tl, tr).max(dist(bl, br)).round().max(1.0) as i32;
    let ch = dist(tl, bl).max(dist(tr, br)).round().max(1.0) as i32;
    let src = Vector::<Point2f>::from_iter(b.points);
    let dst = Vector::<Point2f>::from_iter([
        Point2f::new(0.0, 0.0),
        Point2f::new(cw as f32, 0.0),
        Point2f::new(cw as f32, ch as f32),
        Point2f::new(0.0, ch as f32),
    ]);
    let m = imgproc::get_perspective_transform_def(&src, &dst).cv("perspective transform")?;
    let mut out = Mat::default();
    imgproc::warp_perspective(
        frame,
        &mut out,
        &m,
        Size::new(cw, ch),
        imgproc::INTER_CUBIC,
        core::BORDER_REPLICATE,
        Scalar::default(),
    )
    .cv("warp crop")?;
    if ch as f32 / cw as f32 >= 1.5 {
        let mut turned = Mat::default();
        core::rotate(&out, &mut turned, core::ROTATE_90_COUNTERCLOCKWISE).cv("rotate crop")?;
        out = turned;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report
    use super::*;

    #[test]
    fn detector_and_recogniser_inputs_are_normalised_as_paddleocr_trained_them() {
        // One pixel, B = 255, G = 0, R = 128.
        let px = Mat::new_rows_cols_with_default(
            1,
            1,
            core::CV_8UC3,
            Scalar::new(255.0, 0.0, 128.0, 0.0),
        )
        .unwrap();
        let det = bgr_to_nchw(&px).unwrap();
        let want = [
            (1.0 - 0.485) / 0.229,
            (0.0 - 0.456) / 0.224,
            (128.0 / 255.0 - 0.406) / 0.225,
        ];
        for (got, want) in det.iter().zip(want) {
            assert!((got - want).abs() < 1e-4, "detector: {got} != {want}");
        }
        let rec = normalised_planes(&px).unwrap();
        for (got, want) in rec.iter().zip([1.0, -1.0, 128.0 / 127.5 - 1.0]) {
            assert!((got - want).abs() < 1e-4, "recogniser: {got} != {want}");
        }
    }

    #[test]
    fn input_size_limits_long_side_to_multiples_of_32() {
        assert_eq!(input_size(540, 960, 960), (544, 960));
        assert_eq!(input_size(1080, 1920, 960), (544, 960));
        assert_eq!(input_size(20, 20, 960), (32, 32));
        assert_eq!(input_size(1280, 1280, 960), (768, 768), "a square frame");
        assert_eq!(input_size(960, 1280, 960), (672, 896), "4:3");
        assert_eq!(
            input_size(640, 1024, 960),
            (608, 960),
            "16:10 is not capped"
        );
    }

    #[test]
    fn unclip_grows_by_area_over_perimeter() {
        let r = RotatedRect {
            center: Point2f::new(50.0, 50.0),
            size: Size2f::new(100.0, 20.0),
            angle: 0.0,
        };
        let g = unclip(r, 1.5);
        // d = 100*20*1.5 / 240 = 12.5
        assert!((g.size.width - 125.0).abs() < 1e-3);
        assert!((g.size.height - 45.0).abs() < 1e-3);
    }

    #[test]
    fn corners_are_ordered_clockwise_from_top_left() {
        let p = |x, y| Point2f::new(x, y);
        let o = order_points([p(10.0, 5.0), p(0.0, 5.0), p(10.0, 0.0), p(0.0, 0.0)]);
        assert_eq!(o, [p(0.0, 0.0), p(10.0, 0.0), p(10.0, 5.0), p(0.0, 5.0)]);
    }
}
