//! The images kept with a vehicle's plate: an overview frame and the plate crop.
//!
//! [`vote`](crate::vote()) names the best read of a vehicle ([`VotedPlate::best_read`]) and the
//! plate's box in that read's frame ([`VotedPlate::bbox`]). From that one frame (the others are
//! not decoded) [`plate_images`] makes:
//! - the **overview**: the whole frame, scaled down to at most
//!   [`EvidenceConfig::overview_max_width_px`] wide (never up), aspect kept;
//! - the **plate crop**: the box grown by [`EvidenceConfig::crop_margin_ratio`] times its height
//!   on every side (the detector's box is the text; the margin brings in the plate's edge and the
//!   country strip), clamped to the frame, cut from the full-resolution frame.
//!
//! Both are JPEG bytes ([`MEDIA_TYPE`]), ready for the outbox: `ImageData { kind:
//! ImageKind::Overview | ImageKind::PlateCrop, media_type: MEDIA_TYPE, bytes }` for
//! `Outbox::append_with_images` (this crate does not depend on the record types). An image
//! larger than [`EvidenceConfig::max_image_bytes`] (the uplink sends an image as one MQTT message)
//! is encoded again 10 quality points lower, down to [`MIN_JPEG_QUALITY`], then refused.
//!
//! Bad input is an error, never a panic: a frame that does not decode is [`AnprError::Decode`];
//! a read index with no frame, a box with no area or wholly outside the frame is
//! [`AnprError::Evidence`].

use std::borrow::Borrow;

use opencv::core::{Mat, Rect, Size, Vector, CV_8UC3};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};

use crate::error::{AnprError, CvContext};
use crate::reader::{decode_image, to_bgr};
use crate::vote::VotedPlate;

pub use bcp_anpr_core::settings::{EvidenceConfig, MEDIA_TYPE, MIN_JPEG_QUALITY};

/// The evidence images of one vehicle's plate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlateImages {
    /// The best read's frame, scaled down to the configured width, JPEG.
    pub overview: Vec<u8>,
    /// The plate with its margin, full resolution, JPEG.
    pub plate_crop: Vec<u8>,
    /// Where the crop was cut, `[x, y, w, h]` in the frame's pixels.
    pub crop: [i32; 4],
}

/// The evidence of `voted` from encoded frames: `frames[i]` is the frame that read `i` given to
/// [`vote`](crate::vote()) came from (one entry per read). Only the best read's frame is decoded.
pub fn plate_images_from_jpegs<B: AsRef<[u8]>>(
    frames: &[B],
    voted: &VotedPlate,
    cfg: &EvidenceConfig,
) -> Result<PlateImages, AnprError> {
    let bytes = best_frame(frames, voted)?;
    plate_images(&decode_image(bytes.as_ref())?, voted.bbox, cfg)
}

/// The evidence of `voted` from decoded frames (8-bit BGR, grey or BGRA), indexed as in
/// [`plate_images_from_jpegs`].
pub fn plate_images_from_mats<M: Borrow<Mat>>(
    frames: &[M],
    voted: &VotedPlate,
    cfg: &EvidenceConfig,
) -> Result<PlateImages, AnprError> {
    plate_images(best_frame(frames, voted)?.borrow(), voted.bbox, cfg)
}

fn best_frame<'a, T>(frames: &'a [T], voted: &VotedPlate) -> Result<&'a T, AnprError> {
    frames.get(voted.best_read).ok_or_else(|| {
        AnprError::Evidence(format!(
            "the best read is #{} but {} frames were given (one per read)",
            voted.best_read,
            frames.len()
        ))
    })
}

/// The evidence of one encoded frame (the best read's) with the plate at `bbox` (`[x, y, w, h]`):
/// for a caller that kept only that frame, as the agent's frame cache does.
pub fn plate_images_from_jpeg(
    bytes: &[u8],
    bbox: [i32; 4],
    cfg: &EvidenceConfig,
) -> Result<PlateImages, AnprError> {
    plate_images(&decode_image(bytes)?, bbox, cfg)
}

/// The largest scan image, in pixels, that [`thumbnail_from_bytes`] decodes; a PNG's header is
/// checked before decoding, so a small file that would decode to gigabytes is refused.
pub const MAX_THUMBNAIL_SOURCE_PIXELS: u64 = 120_000_000;

/// A reduced JPEG of an image in any format OpenCV decodes (an X-ray scan's PNG, TIFF, JPEG;
/// 16-bit and grey ones become 8-bit BGR): scaled down so that its longest side is at most
/// `max_side_px` (never up), aspect kept, encoded at `cfg.jpeg_quality` and re-encoded lower to
/// fit `cfg.max_image_bytes` as the plate images are. Bad input is an error, never a panic.
pub fn thumbnail_from_bytes(
    bytes: &[u8],
    max_side_px: u32,
    cfg: &EvidenceConfig,
) -> Result<Vec<u8>, AnprError> {
    cfg.validate()?;
    if let Some((w, h)) = png_size(bytes) {
        if u64::from(w) * u64::from(h) > MAX_THUMBNAIL_SOURCE_PIXELS {
            return Err(AnprError::Decode {
                len: bytes.len(),
                reason: format!(
                    "PNG of {w}x{h} pixels, over the limit of {MAX_THUMBNAIL_SOURCE_PIXELS}"
                ),
            });
        }
    }
    let image = to_bgr(&decode_image(bytes)?)?;
    let (cols, rows) = (image.cols(), image.rows());
    let max_side = i32::try_from(max_side_px.max(1)).unwrap_or(i32::MAX);
    let longest = cols.max(rows);
    if longest <= max_side {
        return encode_jpeg(&image, cfg, "scan thumbnail");
    }
    let scale = f64::from(max_side) / f64::from(longest);
    let size = Size::new(
        ((f64::from(cols) * scale).round() as i32).clamp(1, max_side),
        ((f64::from(rows) * scale).round() as i32).clamp(1, max_side),
    );
    let mut small = Mat::default();
    imgproc::resize(&image, &mut small, size, 0.0, 0.0, imgproc::INTER_AREA)
        .cv("scaling the scan thumbnail down")?;
    encode_jpeg(&small, cfg, "scan thumbnail")
}

/// Width and height from a PNG's IHDR chunk, if `bytes` is a PNG.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if !bytes.starts_with(SIGNATURE) || bytes.get(12..16) != Some(b"IHDR") {
        return None;
    }
    let be = |r: std::ops::Range<usize>| {
        bytes
            .get(r)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
    };
    Some((be(16..20)?, be(20..24)?))
}

/// The overview of `frame` and the crop at `bbox` (`[x, y, w, h]`), see the module header.
pub fn plate_images(
    frame: &Mat,
    bbox: [i32; 4],
    cfg: &EvidenceConfig,
) -> Result<PlateImages, AnprError> {
    cfg.validate()?;
    let owned;
    let frame = if frame.typ() == CV_8UC3 {
        frame
    } else {
        owned = to_bgr(frame)?;
        &owned
    };
    let (cols, rows) = (frame.cols(), frame.rows());
    if cols <= 0 || rows <= 0 {
        return Err(AnprError::UnsupportedFrame("empty frame".into()));
    }
    let crop = crop_rect(bbox, cols, rows, cfg.crop_margin_ratio).ok_or_else(|| {
        AnprError::Evidence(format!(
            "plate box {bbox:?} has no area inside the {cols}x{rows} frame"
        ))
    })?;
    let plate = Mat::roi(frame, crop)
        .and_then(|roi| roi.try_clone())
        .cv("cutting the plate crop")?;
    let plate_crop = encode_jpeg(&plate, cfg, "plate crop")?;

    let max_w = i32::try_from(cfg.overview_max_width_px).unwrap_or(i32::MAX);
    let overview = if cols > max_w {
        let h = (f64::from(rows) * f64::from(max_w) / f64::from(cols)).round() as i32;
        let mut small = Mat::default();
        imgproc::resize(
            frame,
            &mut small,
            Size::new(max_w, h.max(1)),
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )
        .cv("scaling the overview down")?;
        encode_jpeg(&small, cfg, "overview")?
    } else {
        encode_jpeg(frame, cfg, "overview")?
    };
    Ok(PlateImages {
        overview,
        plate_crop,
        crop: [crop.x, crop.y, crop.width, crop.height],
    })
}

/// `bbox` grown by `margin_ratio` times its height on every side and clamped to a `cols` x
/// `rows` frame; `None` when the box has no area or none of it (margin aside) is inside the
/// frame.
pub fn crop_rect(bbox: [i32; 4], cols: i32, rows: i32, margin_ratio: f32) -> Option<Rect> {
    let [x, y, w, h] = bbox.map(i64::from);
    let (cols64, rows64) = (i64::from(cols), i64::from(rows));
    let inside = x < cols64 && x + w > 0 && y < rows64 && y + h > 0;
    if w <= 0 || h <= 0 || !inside {
        return None;
    }
    let m = (f64::from(margin_ratio) * h as f64).round() as i64;
    let x0 = (x - m).max(0);
    let y0 = (y - m).max(0);
    let x1 = (x + w + m).min(cols64);
    let y1 = (y + h + m).min(rows64);
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    // All four lie within 0..=cols or 0..=rows, so they fit in i32.
    let c = |v: i64| i32::try_from(v).ok();
    Some(Rect::new(c(x0)?, c(y0)?, c(x1 - x0)?, c(y1 - y0)?))
}

/// JPEG at the configured quality, lowered in steps of 10 until it fits `max_image_bytes`.
fn encode_jpeg(
    image: &Mat,
    cfg: &EvidenceConfig,
    what: &'static str,
) -> Result<Vec<u8>, AnprError> {
    let mut quality = cfg.jpeg_quality;
    loop {
        let mut buf = Vector::<u8>::new();
        let params =
            Vector::<i32>::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, i32::from(quality)]);
        let ok = imgcodecs::imencode(".jpg", image, &mut buf, &params).cv("encoding JPEG")?;
        if !ok {
            return Err(AnprError::Evidence(format!(
                "OpenCV refused to encode the {what} as JPEG"
            )));
        }
        if buf.len() <= cfg.max_image_bytes {
            return Ok(buf.to_vec());
        }
        if quality < MIN_JPEG_QUALITY + 10 {
            return Err(AnprError::Evidence(format!(
                "the {what} ({}x{}) is {} bytes at JPEG quality {quality}, over max_image_bytes \
                 = {}",
                image.cols(),
                image.rows(),
                buf.len(),
                cfg.max_image_bytes
            )));
        }
        quality -= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bcp_sim::plate_render::{render_vehicle, render_vehicle_frame};

    fn voted(best_read: usize, bbox: [i32; 4]) -> VotedPlate {
        VotedPlate {
            text: "1234AB01".into(),
            confidence: 0.9,
            format: Some("TJ"),
            frames: 3,
            best_read,
            bbox,
        }
    }

    fn decode(jpeg: &[u8]) -> Mat {
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "a JPEG");
        decode_image(jpeg).expect("decodes")
    }

    fn mean_abs_diff(a: &Mat, b: &Mat) -> f64 {
        let l1 = opencv::core::norm2(a, b, opencv::core::NORM_L1, &opencv::core::no_array())
            .expect("norm");
        l1 / (a.total() * a.channels() as usize) as f64
    }

    #[test]
    fn the_crop_is_the_plate_with_its_margin_from_the_best_frame() {
        let v = render_vehicle("1234 AB 01", 5).expect("rendered");
        let p = v.plate;
        let mut best = Vector::<u8>::new();
        assert!(imgcodecs::imencode_def(".png", &v.frame, &mut best).expect("png"));
        let frames = vec![
            render_vehicle_frame("9999 ZZ 08", 1).expect("rendered"),
            best.to_vec(),
            b"never decoded".to_vec(),
        ];
        let cfg = EvidenceConfig::default();
        let images =
            plate_images_from_jpegs(&frames, &voted(1, [p.x, p.y, p.width, p.height]), &cfg)
                .expect("evidence");

        let m = (0.5 * f64::from(p.height)).round() as i32;
        let want = Rect::new(p.x - m, p.y - m, p.width + 2 * m, p.height + 2 * m);
        assert_eq!(images.crop, [want.x, want.y, want.width, want.height]);
        let crop = decode(&images.plate_crop);
        assert_eq!((crop.cols(), crop.rows()), (want.width, want.height));
        let source = Mat::roi(&v.frame, want)
            .expect("roi")
            .try_clone()
            .expect("copy");
        let diff = mean_abs_diff(&crop, &source);
        assert!(
            diff < 4.0,
            "the crop is the frame's plate region: {diff:.1}"
        );

        let overview = decode(&images.overview);
        assert_eq!(
            (overview.cols(), overview.rows()),
            (960, 540),
            "never scaled up"
        );
        assert!(mean_abs_diff(&overview, &v.frame) < 4.0);
    }

    #[test]
    fn the_overview_is_scaled_down_to_the_configured_width() {
        let v = render_vehicle("01 A 123 BC", 2).expect("rendered");
        let cfg = EvidenceConfig {
            overview_max_width_px: 480,
            ..EvidenceConfig::default()
        };
        let p = v.plate;
        let images =
            plate_images_from_mats(&[&v.frame], &voted(0, [p.x, p.y, p.width, p.height]), &cfg)
                .expect("evidence");
        let overview = decode(&images.overview);
        assert_eq!((overview.cols(), overview.rows()), (480, 270));
        let crop = decode(&images.plate_crop);
        assert!(crop.cols() > p.width, "the crop stays at full resolution");
    }

    #[test]
    fn a_box_at_the_edge_is_clamped_to_the_frame() {
        assert_eq!(
            crop_rect([-10, 500, 200, 60], 960, 540, 0.5),
            Some(Rect::new(0, 470, 220, 70))
        );
        assert_eq!(
            crop_rect([900, 0, 100, 40], 960, 540, 0.5),
            Some(Rect::new(880, 0, 80, 60))
        );
        assert_eq!(
            crop_rect([0, 0, 960, 540], 960, 540, 1.0),
            Some(Rect::new(0, 0, 960, 540))
        );
        // No area, or nothing inside: no crop; extreme values do not overflow.
        assert_eq!(crop_rect([10, 10, 0, 40], 960, 540, 0.5), None);
        assert_eq!(crop_rect([10, 10, 40, -4], 960, 540, 0.5), None);
        assert_eq!(crop_rect([2000, 10, 100, 40], 960, 540, 0.5), None);
        assert_eq!(
            crop_rect([970, 10, 100, 40], 960, 540, 5.0),
            None,
            "outside, though the margin would reach in"
        );
        assert_eq!(
            crop_rect([-5, -5, i32::MAX, i32::MAX], 960, 540, 5.0),
            Some(Rect::new(0, 0, 960, 540))
        );
        assert_eq!(
            crop_rect([i32::MIN, i32::MIN, i32::MAX, i32::MAX], 960, 540, 5.0),
            None
        );
        assert_eq!(
            crop_rect([i32::MAX, i32::MAX, i32::MAX, i32::MAX], 960, 540, 5.0),
            None
        );

        let v = render_vehicle("1234 AB 01", 0).expect("rendered");
        let images =
            plate_images(&v.frame, [-10, 500, 200, 60], &EvidenceConfig::default()).expect("ok");
        let crop = decode(&images.plate_crop);
        assert_eq!((crop.cols(), crop.rows()), (220, 70));
        let err = plate_images(&v.frame, [2000, 10, 100, 40], &EvidenceConfig::default());
        assert!(matches!(err, Err(AnprError::Evidence(_))), "{err:?}");
    }

    #[test]
    fn a_corrupt_truncated_or_missing_frame_is_an_error() {
        let good = render_vehicle_frame("1234 AB 01", 1).expect("rendered");
        let truncated = good[..good.len() / 2].to_vec();
        let cfg = EvidenceConfig::default();
        let bbox = [300, 400, 200, 50];
        for (frames, what) in [
            (vec![good.clone(), b"corrupt".to_vec()], "corrupt"),
            (vec![good.clone(), truncated], "truncated"),
            (vec![good.clone(), Vec::new()], "empty"),
        ] {
            let err = plate_images_from_jpegs(&frames, &voted(1, bbox), &cfg);
            assert!(
                matches!(err, Err(AnprError::Decode { .. })),
                "{what}: {err:?}"
            );
        }
        let err = plate_images_from_jpegs(&[good], &voted(3, bbox), &cfg);
        assert!(matches!(err, Err(AnprError::Evidence(_))), "{err:?}");
        let err = plate_images(&Mat::default(), bbox, &cfg);
        assert!(
            matches!(err, Err(AnprError::UnsupportedFrame(_))),
            "{err:?}"
        );
    }

    #[test]
    fn an_image_over_the_size_limit_is_encoded_smaller_or_refused() {
        let v = render_vehicle("1234 AB 01", 1).expect("rendered");
        let bbox = [100, 100, 200, 50];
        let full = plate_images(&v.frame, bbox, &EvidenceConfig::default()).expect("ok");
        let cfg = EvidenceConfig {
            max_image_bytes: full.overview.len() * 3 / 4,
            ..EvidenceConfig::default()
        };
        let smaller = plate_images(&v.frame, bbox, &cfg).expect("re-encoded");
        assert!(smaller.overview.len() <= cfg.max_image_bytes);
        let cfg = EvidenceConfig {
            max_image_bytes: 1024,
            ..EvidenceConfig::default()
        };
        let err = plate_images(&v.frame, bbox, &cfg);
        assert!(
            matches!(err, Err(AnprError::Evidence(ref m)) if m.contains("max_image_bytes")),
            "{err:?}"
        );
    }

    #[test]
    fn a_scan_thumbnail_is_a_reduced_jpeg_and_bad_scans_are_errors() {
        // A 16-bit grey "X-ray" PNG, 3000x1200: longest side down to 1024, aspect kept.
        let scan = Mat::new_rows_cols_with_default(
            1200,
            3000,
            opencv::core::CV_16UC1,
            opencv::core::Scalar::all(30_000.0),
        )
        .expect("mat");
        let mut png = Vector::<u8>::new();
        assert!(imgcodecs::imencode_def(".png", &scan, &mut png).expect("png"));
        let cfg = EvidenceConfig::default();
        let thumb = thumbnail_from_bytes(png.as_slice(), 1024, &cfg).expect("thumbnail");
        let m = decode(&thumb);
        assert_eq!((m.cols(), m.rows()), (1024, 410));
        // Small images are not scaled up.
        let small = render_vehicle_frame("1234 AB 01", 3).expect("rendered");
        let m = decode(&thumbnail_from_bytes(&small, 1024, &cfg).expect("thumbnail"));
        assert_eq!((m.cols(), m.rows()), (960, 540));
        for bad in [&b""[..], b"GIF89a not really", &small[..small.len() / 2]] {
            let err = thumbnail_from_bytes(bad, 1024, &cfg);
            assert!(matches!(err, Err(AnprError::Decode { .. })), "{err:?}");
        }
        // A PNG header announcing a huge image is refused before decoding.
        let mut bomb = png.to_vec();
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let err = thumbnail_from_bytes(&bomb, 1024, &cfg);
        assert!(
            matches!(err, Err(AnprError::Decode { ref reason, .. }) if reason.contains("over the limit")),
            "{err:?}"
        );
    }

    #[test]
    fn config_defaults_validate_and_bad_values_name_their_key() {
        assert!(EvidenceConfig::default().validate().is_ok());
        let bad = EvidenceConfig {
            crop_margin_ratio: f32::NAN,
            ..EvidenceConfig::default()
        };
        let err = bad.validate().map_err(|e| e.to_string());
        assert!(
            matches!(err, Err(ref m) if m.contains("crop_margin_ratio")),
            "{err:?}"
        );
    }
}
