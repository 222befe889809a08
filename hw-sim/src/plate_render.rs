//! Rendering of synthetic number-plate camera frames.
//!
//! The lane camera of the simulator and the ANPR tests need frames that look enough like a vehicle
//! front with a regional plate that the real recogniser (PP-OCRv4 through `bcp-anpr`) reads them.
//! Everything is drawn with OpenCV primitives: a road and sky gradient, a car body with a grille and
//! headlights, and a white plate with a black border, a small blue country strip (no lettering, so
//! that the reader is not tempted to prepend a country code) and the registration in a thick
//! Hershey font.
//!
//! An air post's camera sees cargo units instead ([`render_cargo_unit_frame`]): a ULD (an
//! LD3-style aluminium container, contoured on one side, ribbed) on a roller deck, its IATA id
//! painted as the ULD regulations have it, in black capitals on a white placard with a margin of
//! about one character height all round; no country strip (a ULD id names no country).
//!
//! Frames are deterministic: the same `(plate_display, variant)` always gives the same bytes.
//! `variant` drives a small SplitMix64 generator (no global RNG) that shifts and scales the
//! vehicle and plate a little, changes the body colour and brightness, and adds mild noise.

use anyhow::{bail, Context, Result};
use opencv::core::{Mat, Point, Rect, Scalar, Vector, CV_8UC3};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};

/// Frame width in pixels.
pub const FRAME_WIDTH: i32 = 960;
/// Frame height in pixels.
pub const FRAME_HEIGHT: i32 = 540;

/// A JPEG camera frame (960x540) of a vehicle front with a plate showing `plate_display`
/// (as printed, e.g. "1234 AB 01", "01 A 123 BC", "123 ABC 02"), varied by `variant` (small
/// shifts of position, scale, brightness, a little noise), deterministic for the same inputs.
/// A line break in `plate_display` draws a two-line plate ("1234\nAB 01"), nearly square.
pub fn render_vehicle_frame(plate_display: &str, variant: u64) -> Result<Vec<u8>> {
    encode_jpeg(&render_vehicle_mat(plate_display, variant)?, plate_display)
}

/// A JPEG camera frame (960x540) of an air cargo unit with its ULD id (as painted,
/// `AKE 12345 LH`) on a placard, varied by `variant` like [`render_vehicle_frame`].
pub fn render_cargo_unit_frame(uld_display: &str, variant: u64) -> Result<Vec<u8>> {
    encode_jpeg(&render_cargo_unit(uld_display, variant)?.frame, uld_display)
}

/// The frame of [`render_cargo_unit_frame`] before JPEG encoding, with the placard's rectangle
/// in `plate`.
pub fn render_cargo_unit(uld_display: &str, variant: u64) -> Result<RenderedVehicle> {
    let text = uld_display.trim();
    if text.is_empty() || !text.is_ascii() || text.contains('\n') {
        bail!("ULD id {uld_display:?} must be one line of non-empty ASCII");
    }
    let mut rng = SplitMix64::new(variant ^ hash_str(text) ^ 0x554c_4400);
    let mut frame =
        Mat::new_rows_cols_with_default(FRAME_HEIGHT, FRAME_WIDTH, CV_8UC3, Scalar::all(0.0))?;
    draw_background(&mut frame)?;

    // Roller deck across the frame, the unit standing on it.
    let deck_top = 455 + rng.range_i32(-10, 10);
    fill_rect(
        &mut frame,
        Rect::new(0, deck_top, FRAME_WIDTH, 28),
        Scalar::new(50.0, 55.0, 60.0, 0.0),
    )?;
    let scale = rng.range_f64(0.9, 1.1);
    let cx = FRAME_WIDTH / 2 + rng.range_i32(-50, 50);
    let (unit_w, unit_h) = ((640.0 * scale) as i32, (330.0 * scale) as i32);
    let (left, top) = (cx - unit_w / 2, deck_top - unit_h);
    let (right, base) = (left + unit_w, deck_top);
    // LD3 outline: the base is narrower than the top, the contour slants on the left.
    let contour = unit_w / 5;
    let body = Vector::<Vector<Point>>::from_iter([Vector::from_iter([
        Point::new(left, top),
        Point::new(right, top),
        Point::new(right, base),
        Point::new(left + contour, base),
        Point::new(left, base - unit_h * 2 / 5),
    ])]);
    let shade = rng.range_f64(165.0, 200.0);
    imgproc::fill_poly_def(
        &mut frame,
        &body,
        Scalar::new(shade, shade, shade - 5.0, 0.0),
    )?;
    imgproc::polylines(
        &mut frame,
        &body,
        true,
        Scalar::new(90.0, 90.0, 90.0, 0.0),
        3,
        imgproc::LINE_AA,
        0,
    )?;
    // Ribs on the side panel, clear of the placard's row.
    for i in 1..8 {
        let x = left + contour + (unit_w - contour) * i / 8;
        for (y0, y1) in [(top + 8, top + unit_h / 4), (base - unit_h / 4, base - 8)] {
            imgproc::line(
                &mut frame,
                Point::new(x, y0),
                Point::new(x, y1),
                Scalar::new(shade - 45.0, shade - 45.0, shade - 45.0, 0.0),
                3,
                imgproc::LINE_AA,
                0,
            )?;
        }
    }

    // The placard: text height about 40% of its height, a character height of margin.
    let placard_scale = scale * rng.range_f64(0.95, 1.05);
    let text_h = 34.0 * placard_scale;
    let font = imgproc::FONT_HERSHEY_DUPLEX;
    let mut baseline = 0;
    let unit = imgproc::get_text_size(text, font, 1.0, 2, &mut baseline)?;
    let font_scale = text_h / f64::from(unit.height.max(1));
    let thickness = ((font_scale * 2.2).round() as i32).max(2);
    let size = imgproc::get_text_size(text, font, font_scale, thickness, &mut baseline)?;
    let margin = text_h.round() as i32;
    let placard = Rect::new(
        cx + contour / 2 - (size.width + 2 * margin) / 2 + rng.range_i32(-12, 12),
        top + unit_h / 2 - (size.height + 2 * margin) / 2 + rng.range_i32(-8, 8),
        size.width + 2 * margin,
        size.height + 2 * margin,
    );
    fill_rect(&mut frame, placard, Scalar::new(245.0, 245.0, 242.0, 0.0))?;
    imgproc::rectangle(
        &mut frame,
        placard,
        Scalar::new(30.0, 30.0, 30.0, 0.0),
        2,
        imgproc::LINE_8,
        0,
    )?;
    imgproc::put_text(
        &mut frame,
        text,
        Point::new(placard.x + margin, placard.y + margin + size.height),
        font,
        font_scale,
        Scalar::new(10.0, 10.0, 10.0, 0.0),
        thickness,
        imgproc::LINE_AA,
        false,
    )?;

    let brightness = rng.range_f64(0.85, 1.12);
    let offset = rng.range_f64(-12.0, 12.0);
    add_lighting_and_noise(&mut frame, brightness, offset, 4.0, &mut rng)?;
    Ok(RenderedVehicle {
        frame,
        plate: placard,
    })
}

fn encode_jpeg(frame: &Mat, what: &str) -> Result<Vec<u8>> {
    let mut buf = Vector::<u8>::new();
    let params = Vector::<i32>::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, 92]);
    let ok = imgcodecs::imencode(".jpg", frame, &mut buf, &params).context("JPEG encoding")?;
    if !ok {
        bail!("OpenCV refused to encode the frame for {what:?} as JPEG");
    }
    Ok(buf.to_vec())
}

/// A JPEG camera frame (960x540) of the empty lane: the road and sky of
/// [`render_vehicle_frame`] with no vehicle, as a camera sees it between vehicles; `variant`
/// changes only the sensor noise and the exposure a little (+-2%), so that frames of the empty
/// lane differ as a real camera's do, but show no motion. Deterministic.
pub fn render_empty_lane_frame(variant: u64) -> Result<Vec<u8>> {
    let mut rng = SplitMix64::new(variant ^ 0x454d_5054_594c_4e45);
    let mut frame =
        Mat::new_rows_cols_with_default(FRAME_HEIGHT, FRAME_WIDTH, CV_8UC3, Scalar::all(0.0))?;
    draw_background(&mut frame)?;
    let gain = rng.range_f64(0.98, 1.02);
    let offset = rng.range_f64(-2.0, 2.0);
    add_lighting_and_noise(&mut frame, gain, offset, 4.0, &mut rng)?;
    encode_jpeg(&frame, "the empty lane")
}

/// Width and height of [`render_scan_png`]'s images.
pub const SCAN_SIZE: (i32, i32) = (1600, 640);

/// A grey 8-bit PNG standing in for an X-ray scan image ([`SCAN_SIZE`]): a dark background, a
/// lighter truck silhouette (cab, trailer, wheels) and a few denser "cargo" blocks placed by a
/// hash of `scan_id`, so that each scan's image differs. Deterministic.
pub fn render_scan_png(scan_id: &str) -> Result<Vec<u8>> {
    let (w, h) = SCAN_SIZE;
    let mut img = Mat::new_rows_cols_with_default(h, w, opencv::core::CV_8UC1, Scalar::all(30.0))?;
    let mut rng = SplitMix64::new(hash_str(scan_id));
    let fill = |img: &mut Mat, r: Rect, v: f64| {
        imgproc::rectangle(img, r, Scalar::all(v), imgproc::FILLED, imgproc::LINE_8, 0)
    };
    fill(&mut img, Rect::new(60, 160, 260, 360), 150.0)?; // cab
    fill(&mut img, Rect::new(340, 100, 1200, 420), 120.0)?; // trailer
    for x in [120, 260, 700, 860, 1300, 1440] {
        imgproc::circle(
            &mut img,
            Point::new(x, 540),
            50,
            Scalar::all(200.0),
            imgproc::FILLED,
            imgproc::LINE_8,
            0,
        )?;
    }
    for _ in 0..6 {
        let (bw, bh) = (rng.range_i32(80, 240), rng.range_i32(60, 200));
        let (x, y) = (rng.range_i32(360, 1520 - bw), rng.range_i32(120, 500 - bh));
        fill(
            &mut img,
            Rect::new(x, y, bw, bh),
            rng.range_f64(170.0, 250.0),
        )?;
    }
    let mut buf = Vector::<u8>::new();
    if !imgcodecs::imencode_def(".png", &img, &mut buf).context("PNG encoding")? {
        bail!("OpenCV refused to encode the scan image of {scan_id:?} as PNG");
    }
    Ok(buf.to_vec())
}

/// The same frame as [`render_vehicle_frame`] as a BGR `Mat`, before JPEG encoding.
pub fn render_vehicle_mat(plate_display: &str, variant: u64) -> Result<Mat> {
    Ok(render_vehicle(plate_display, variant)?.frame)
}

/// A rendered frame and where its plate is: tests that cut or locate the plate check against it.
#[derive(Debug)]
pub struct RenderedVehicle {
    /// The frame, as [`render_vehicle_mat`] returns it.
    pub frame: Mat,
    /// The plate's rectangle in the frame, border included.
    pub plate: Rect,
}

/// The frame of [`render_vehicle_mat`] with the rectangle of its plate.
pub fn render_vehicle(plate_display: &str, variant: u64) -> Result<RenderedVehicle> {
    let text = plate_display.trim();
    if text.is_empty() || !text.is_ascii() {
        bail!(
            "plate text {plate_display:?} must be non-empty ASCII (Hershey fonts are ASCII only)"
        );
    }
    let mut rng = SplitMix64::new(variant ^ hash_str(text));

    let mut frame =
        Mat::new_rows_cols_with_default(FRAME_HEIGHT, FRAME_WIDTH, CV_8UC3, Scalar::all(0.0))?;
    draw_background(&mut frame)?;

    // Vehicle body: centred, shifted and scaled a little.
    let scale = rng.range_f64(0.9, 1.1);
    let cx = FRAME_WIDTH / 2 + rng.range_i32(-60, 60);
    let body_w = (620.0 * scale) as i32;
    let body_h = (330.0 * scale) as i32;
    let body_top = 150 + rng.range_i32(-20, 20);
    let body = Rect::new(cx - body_w / 2, body_top, body_w, body_h);
    let colours = [
        Scalar::new(120.0, 60.0, 30.0, 0.0),   // dark blue
        Scalar::new(40.0, 40.0, 150.0, 0.0),   // red
        Scalar::new(90.0, 90.0, 90.0, 0.0),    // grey
        Scalar::new(40.0, 90.0, 40.0, 0.0),    // green
        Scalar::new(190.0, 190.0, 185.0, 0.0), // silver
    ];
    let body_colour = colours[(rng.next() % colours.len() as u64) as usize];
    fill_rect(&mut frame, body, body_colour)?;
    // Windscreen.
    let ws = Rect::new(
        body.x + body_w / 8,
        body.y + body_h / 14,
        body_w * 3 / 4,
        body_h / 4,
    );
    fill_rect(&mut frame, ws, Scalar::new(70.0, 55.0, 45.0, 0.0))?;
    // Grille bars.
    let grille = Rect::new(
        body.x + body_w / 4,
        body.y + body_h * 2 / 5,
        body_w / 2,
        body_h / 6,
    );
    fill_rect(&mut frame, grille, Scalar::new(30.0, 30.0, 30.0, 0.0))?;
    for i in 1..5 {
        let y = grille.y + grille.height * i / 5;
        imgproc::line(
            &mut frame,
            Point::new(grille.x + 4, y),
            Point::new(grille.x + grille.width - 4, y),
            Scalar::new(110.0, 110.0, 110.0, 0.0),
            2,
            imgproc::LINE_AA,
            0,
        )?;
    }
    // Headlights.
    for side in [-1, 1] {
        let hx = cx + side * body_w * 3 / 8;
        let hy = grille.y + grille.height / 2;
        imgproc::circle(
            &mut frame,
            Point::new(hx, hy),
            (28.0 * scale) as i32,
            Scalar::new(225.0, 235.0, 240.0, 0.0),
            -1,
            imgproc::LINE_AA,
            0,
        )?;
    }
    // Bumper.
    let bumper = Rect::new(
        body.x - 10,
        body.y + body_h * 7 / 10,
        body_w + 20,
        body_h / 5,
    );
    fill_rect(&mut frame, bumper, Scalar::new(45.0, 45.0, 45.0, 0.0))?;

    // Plate, centred on the bumper.
    let plate_scale = scale * rng.range_f64(0.92, 1.08);
    // Two-line plates (text with a line break) are nearly square.
    let (plate_w, plate_h) = if text.contains('\n') {
        ((230.0 * plate_scale) as i32, (150.0 * plate_scale) as i32)
    } else {
        ((330.0 * plate_scale) as i32, (70.0 * plate_scale) as i32)
    };
    let plate = Rect::new(
        cx - plate_w / 2 + rng.range_i32(-15, 15),
        bumper.y + (bumper.height - plate_h) / 2 + rng.range_i32(-6, 6),
        plate_w,
        plate_h,
    );
    draw_plate(&mut frame, plate, text)?;

    let brightness = rng.range_f64(0.85, 1.12);
    let offset = rng.range_f64(-12.0, 12.0);
    add_lighting_and_noise(&mut frame, brightness, offset, 4.0, &mut rng)?;
    Ok(RenderedVehicle { frame, plate })
}

fn draw_background(frame: &mut Mat) -> Result<()> {
    // Sky gradient above the horizon, asphalt below.
    let horizon = FRAME_HEIGHT * 2 / 5;
    for y in 0..FRAME_HEIGHT {
        let colour = if y < horizon {
            let t = f64::from(y) / f64::from(horizon);
            Scalar::new(200.0 - 40.0 * t, 180.0 - 30.0 * t, 150.0 - 20.0 * t, 0.0)
        } else {
            let t = f64::from(y - horizon) / f64::from(FRAME_HEIGHT - horizon);
            Scalar::new(95.0 - 25.0 * t, 95.0 - 25.0 * t, 100.0 - 25.0 * t, 0.0)
        };
        imgproc::line(
            frame,
            Point::new(0, y),
            Point::new(FRAME_WIDTH - 1, y),
            colour,
            1,
            imgproc::LINE_8,
            0,
        )?;
    }
    Ok(())
}

fn draw_plate(frame: &mut Mat, plate: Rect, text: &str) -> Result<()> {
    fill_rect(frame, plate, Scalar::new(250.0, 250.0, 250.0, 0.0))?;
    let border = (plate.height / 22).max(2);
    imgproc::rectangle(
        frame,
        plate,
        Scalar::new(15.0, 15.0, 15.0, 0.0),
        border,
        imgproc::LINE_8,
        0,
    )?;
    // Country strip on the left: blue, no lettering.
    let strip_w = plate.width / 11;
    let strip = Rect::new(
        plate.x + border,
        plate.y + border,
        strip_w,
        plate.height - 2 * border,
    );
    fill_rect(frame, strip, Scalar::new(150.0, 60.0, 10.0, 0.0))?;

    // Registration text fitted into the remaining area, one row per line of the text.
    let font = imgproc::FONT_HERSHEY_DUPLEX;
    let area_x = strip.x + strip.width + plate.width / 40;
    let area_w = plate.x + plate.width - border - area_x - plate.width / 40;
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let rows = lines.len().max(1) as i32;
    let row_h = (plate.height - 2 * border) / rows;
    for (i, line) in lines.iter().enumerate() {
        let target_h = if rows == 1 {
            f64::from(plate.height) * 0.58
        } else {
            f64::from(row_h) * 0.62
        };
        let mut base = 0;
        let unit = imgproc::get_text_size(line, font, 1.0, 2, &mut base)?;
        let mut font_scale = target_h / f64::from(unit.height.max(1));
        let width_at = f64::from(unit.width) * font_scale;
        if width_at > f64::from(area_w) {
            font_scale *= f64::from(area_w) / width_at;
        }
        let thickness = ((font_scale * 2.2).round() as i32).max(2);
        let size = imgproc::get_text_size(line, font, font_scale, thickness, &mut base)?;
        let row_top = if rows == 1 {
            plate.y
        } else {
            plate.y + border + row_h * i as i32
        };
        let row_height = if rows == 1 { plate.height } else { row_h };
        let org = Point::new(
            area_x + (area_w - size.width) / 2,
            row_top + (row_height + size.height) / 2,
        );
        imgproc::put_text(
            frame,
            line,
            org,
            font,
            font_scale,
            Scalar::new(10.0, 10.0, 10.0, 0.0),
            thickness,
            imgproc::LINE_AA,
            false,
        )?;
    }
    Ok(())
}

fn fill_rect(frame: &mut Mat, rect: Rect, colour: Scalar) -> Result<()> {
    imgproc::rectangle(frame, rect, colour, -1, imgproc::LINE_8, 0)?;
    Ok(())
}

/// Scales brightness, adds an offset and uniform noise of +-`noise` grey levels, in place.
fn add_lighting_and_noise(
    frame: &mut Mat,
    gain: f64,
    offset: f64,
    noise: f64,
    rng: &mut SplitMix64,
) -> Result<()> {
    let bytes = frame.data_bytes_mut().context("frame is not continuous")?;
    for b in bytes.iter_mut() {
        let n = rng.range_f64(-noise, noise);
        let v = f64::from(*b) * gain + offset + n;
        *b = v.clamp(0.0, 255.0) as u8;
    }
    Ok(())
}

fn hash_str(s: &str) -> u64 {
    // FNV-1a: stable across runs and platforms, unlike std's RandomState.
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64: tiny, deterministic, good enough for visual variation.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range_f64(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    fn range_i32(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.unit() * f64::from(hi - lo)) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_deterministic_jpegs() -> Result<()> {
        let a = render_vehicle_frame("1234 AB 01", 7)?;
        let b = render_vehicle_frame("1234 AB 01", 7)?;
        let c = render_vehicle_frame("1234 AB 01", 8)?;
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(&a[..2], &[0xFF, 0xD8], "JPEG SOI marker");
        let mat = imgcodecs::imdecode(&Vector::<u8>::from_slice(&a), imgcodecs::IMREAD_COLOR)?;
        assert_eq!((mat.cols(), mat.rows()), (FRAME_WIDTH, FRAME_HEIGHT));
        Ok(())
    }

    #[test]
    fn the_plate_rectangle_is_inside_the_frame_and_white() -> Result<()> {
        let v = render_vehicle("1234 AB 01", 3)?;
        let r = v.plate;
        assert!(
            r.x > 0 && r.y > 0 && r.width > 250 && r.height > 50,
            "{r:?}"
        );
        assert!(r.x + r.width < FRAME_WIDTH && r.y + r.height < FRAME_HEIGHT);
        // Just right of the country strip, above the text: plate white.
        let px = v
            .frame
            .at_2d::<opencv::core::Vec3b>(r.y + r.height / 8, r.x + r.width / 6)?;
        assert!(px.iter().all(|&c| c > 180), "{px:?}");
        Ok(())
    }

    #[test]
    fn a_cargo_unit_frame_has_its_placard_inside_with_a_margin() -> Result<()> {
        let a = render_cargo_unit_frame("AKE 12345 LH", 3)?;
        assert_eq!(a, render_cargo_unit_frame("AKE 12345 LH", 3)?);
        assert_ne!(a, render_cargo_unit_frame("AKE 12345 LH", 4)?);
        let u = render_cargo_unit("PMC 03032 LH", 3)?;
        let r = u.plate;
        assert!(r.x > 0 && r.y > 0, "{r:?}");
        assert!(r.x + r.width < FRAME_WIDTH && r.y + r.height < FRAME_HEIGHT);
        // Inside the border, before the first letter: the placard's white margin.
        let px = u
            .frame
            .at_2d::<opencv::core::Vec3b>(r.y + r.height / 2, r.x + 8)?;
        assert!(px.iter().all(|&c| c > 180), "{px:?}");
        assert!(render_cargo_unit_frame("AKE 12345\nLH", 0).is_err());
        Ok(())
    }

    #[test]
    fn empty_or_non_ascii_text_is_an_error() {
        assert!(render_vehicle_frame("", 0).is_err());
        assert!(render_vehicle_frame("А123ВС", 0).is_err());
    }
}
