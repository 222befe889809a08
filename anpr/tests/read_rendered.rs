//! End to end: frames rendered by `bcp_sim::plate_render` read by the real PP-OCR models:
//! every region, two-line plates, rotated, blurred and dim frames, two vehicles in one frame,
//! corrupt, truncated, zero-size and huge frames; ULD ids on air cargo units; the simulator's CIS
//! wagon numbers.
//!
//! Set `BCP_ANPR_DUMP_DIR` to a directory to keep the frames of the 20-plate set for a look;
//! misread frames are always written to the temp directory.

mod common;

use anyhow::{ensure, Context, Result};
use bcp_anpr::{vote, AnprConfig, AnprError, PlateReader};
use bcp_sim::plate_render::{render_cargo_unit_frame, render_vehicle_frame, render_vehicle_mat};
use opencv::core::{Mat, Point2f, Size, Vector};
use opencv::imgproc;
use opencv::prelude::*;

/// 20 plates as printed, with the expected normalised text and format.
const PLATES: &[(&str, &str, &str)] = &[
    ("1234 AB 01", "1234AB01", "TJ"),
    ("0567 CD 02", "0567CD02", "TJ"),
    ("8901 TT 03", "8901TT03", "TJ"),
    ("4321 KM 04", "4321KM04", "TJ"),
    ("7777 AA 05", "7777AA05", "TJ"),
    ("2468 XY 06", "2468XY06", "TJ"),
    ("1357 BE 07", "1357BE07", "TJ"),
    ("01 A 123 BC", "01A123BC", "UZ"),
    ("10 K 456 MN", "10K456MN", "UZ"),
    ("30 B 789 AA", "30B789AA", "UZ"),
    ("40 D 012 XE", "40D012XE", "UZ"),
    ("95 Z 345 YT", "95Z345YT", "UZ"),
    ("70 H 111 KL", "70H111KL", "UZ"),
    ("123 ABC 02", "123ABC02", "KZ"),
    ("456 KZ 15", "456KZ15", "KZ"),
    ("789 AAA 01", "789AAA01", "KZ"),
    ("001 MNP 17", "001MNP17", "KZ"),
    ("505 XT 09", "505XT09", "KZ"),
    ("222 BOX 12", "222BOX12", "KZ"),
    ("909 RDS 20", "909RDS20", "KZ"),
];

/// Writes the frame as JPEG and, for viewers without JPEG support, as PNG.
fn dump(dir: &std::path::Path, name: &str, jpeg: &[u8]) -> Result<()> {
    std::fs::write(dir.join(format!("{name}.jpg")), jpeg)?;
    let buf = opencv::core::Mat::from_slice(jpeg)?;
    let mat = opencv::imgcodecs::imdecode(&buf, opencv::imgcodecs::IMREAD_COLOR)?;
    let png = dir.join(format!("{name}.png"));
    opencv::imgcodecs::imwrite_def(&png, &mat)?;
    Ok(())
}

fn best(reader: &mut PlateReader, jpeg: &[u8]) -> Result<(String, Option<&'static str>)> {
    let cands = reader.read_image_bytes(jpeg)?;
    let c = cands.first().context("no text read at all")?;
    Ok((c.text.clone(), c.format))
}

#[test]
fn mixed_set_of_twenty_plates_reads_exactly() -> Result<()> {
    let mut reader = common::reader();
    let mut failures = Vec::new();
    let started = std::time::Instant::now();
    for (i, (printed, text, format)) in PLATES.iter().enumerate() {
        let jpeg = render_vehicle_frame(printed, i as u64)?;
        if let Some(dir) = std::env::var_os("BCP_ANPR_DUMP_DIR") {
            dump(std::path::Path::new(&dir), &format!("plate-{i}"), &jpeg)?;
        }
        let got = best(&mut reader, &jpeg)?;
        if got != (text.to_string(), Some(*format)) {
            let path = std::env::temp_dir().join(format!("anpr-fail-{i}.jpg"));
            std::fs::write(&path, &jpeg)?;
            failures.push(format!(
                "{printed:?} read as {got:?} (frame in {})",
                path.display()
            ));
        }
    }
    let per_frame = started.elapsed().as_millis() / PLATES.len() as u128;
    eprintln!("{} frames, {per_frame} ms per frame", PLATES.len());
    ensure!(
        failures.is_empty(),
        "misread plates:\n{}",
        failures.join("\n")
    );
    Ok(())
}

#[test]
fn uld_ids_on_cargo_units_read_exactly_without_plate_formats() -> Result<()> {
    use bcp_anpr::identifiers::{self, IdKind};
    let mut reader = PlateReader::new(&AnprConfig {
        fit_plate_formats: false,
        ..AnprConfig::from_env()
    })?;
    let units = bcp_sim::conveyances::generate_cargo_units(8, 7);
    let mut failures = Vec::new();
    for (i, unit) in units.iter().enumerate() {
        for variant in 0..2 {
            let jpeg = render_cargo_unit_frame(&unit.plate_display, i as u64 * 7 + variant)?;
            let reads = reader.read_image_bytes(&jpeg)?;
            // What the air post's lane does: the first read that is a ULD id is the frame's.
            let first_id = reads
                .iter()
                .find_map(|c| identifiers::validate(IdKind::Uld, &c.text).ok());
            ensure!(
                reads.iter().all(|c| c.format.is_none()),
                "no plate format is fitted: {reads:?}"
            );
            if first_id.as_ref().map(|id| id.text.as_str()) != Some(unit.plate.as_str()) {
                let path = std::env::temp_dir().join(format!("anpr-uld-fail-{i}-{variant}.jpg"));
                std::fs::write(&path, &jpeg)?;
                failures.push(format!(
                    "{:?} read as {first_id:?} from {:?} (frame in {})",
                    unit.plate_display,
                    reads.iter().map(|c| &c.text).collect::<Vec<_>>(),
                    path.display()
                ));
            }
        }
    }
    ensure!(
        failures.is_empty(),
        "misread ULD ids:\n{}",
        failures.join("\n")
    );
    Ok(())
}

#[test]
fn variants_of_each_region_read_exactly() -> Result<()> {
    let mut reader = common::reader();
    for (printed, text, format) in [PLATES[0], PLATES[7], PLATES[13], PLATES[15]] {
        for variant in 100..103 {
            let jpeg = render_vehicle_frame(printed, variant)?;
            let got = best(&mut reader, &jpeg)?;
            ensure!(
                got == (text.to_string(), Some(format)),
                "{printed:?} variant {variant} read as {got:?}"
            );
        }
    }
    Ok(())
}

/// The simulator's CIS 8-digit wagon numbers (one run of digits) are read, and pass their
/// Luhn check as CIS numbers, as the train correlator classifies every read of a frame.
#[test]
fn cis_wagon_numbers_read_exactly() -> Result<()> {
    use bcp_anpr::identifiers::{self, IdKind};
    let mut reader = common::reader();
    let trains = bcp_sim::conveyances::generate_trains(4, 3, 7);
    let cis: Vec<_> = trains
        .iter()
        .flat_map(|t| &t.wagons)
        .filter(|w| w.scheme == "CIS")
        .collect();
    ensure!(cis.len() == 4, "one CIS wagon per train of three");
    let mut failures = Vec::new();
    for (i, w) in cis.iter().enumerate() {
        for variant in 0..2 {
            let jpeg = render_vehicle_frame(&w.number_display, i as u64 * 7 + variant)?;
            let reads = reader.read_image_bytes(&jpeg)?;
            let numbers: Vec<String> = reads
                .iter()
                .filter_map(|c| {
                    let text = bcp_anpr::formats::normalise(&c.text);
                    identifiers::validate(IdKind::Wagon, &text).ok()
                })
                .map(|id| format!("{} {}", id.scheme.code(), id.text))
                .collect();
            if !numbers.contains(&format!("CIS {}", w.number)) {
                let texts: Vec<&str> = reads.iter().map(|c| c.text.as_str()).collect();
                failures.push(format!("{} variant {variant}: {texts:?}", w.number_display));
            }
        }
    }
    ensure!(
        failures.is_empty(),
        "misread CIS numbers:\n{}",
        failures.join("\n")
    );
    Ok(())
}

#[test]
fn reads_are_deterministic_and_votable() -> Result<()> {
    let mut reader = common::reader();
    let mut reads = Vec::new();
    for variant in 0..3 {
        let jpeg = render_vehicle_frame("0567 CD 02", variant)?;
        let a = reader.read_image_bytes(&jpeg)?;
        let b = reader.read_image_bytes(&jpeg)?;
        ensure!(a == b, "same frame, different reads: {a:?} vs {b:?}");
        let best = a.into_iter().next().context("no read")?;
        ensure!(best.char_confidences.len() == best.text.len());
        ensure!(best.confidence > 0.5 && best.confidence <= 1.0, "{best:?}");
        let [x, y, w, h] = best.bbox;
        ensure!(
            x > 0 && y > 200 && w > 150 && h > 20,
            "plate bbox {:?}",
            best.bbox
        );
        reads.push(best);
    }
    let voted = vote(&reads).context("vote")?;
    ensure!(voted.text == "0567CD02" && voted.format == Some("TJ") && voted.frames == 3);
    Ok(())
}

#[test]
fn grey_frames_are_read_too() -> Result<()> {
    use opencv::prelude::*;
    let mut reader = common::reader();
    let jpeg = render_vehicle_frame("123 ABC 02", 5)?;
    let buf = opencv::core::Mat::from_slice(&jpeg)?;
    let grey = opencv::imgcodecs::imdecode(&buf, opencv::imgcodecs::IMREAD_GRAYSCALE)?;
    ensure!(grey.channels() == 1);
    let cands = reader.read_mat(&grey)?;
    let best = cands.first().context("no read")?;
    ensure!(
        best.text == "123ABC02" && best.format == Some("KZ"),
        "{best:?}"
    );
    Ok(())
}

#[test]
fn corrupt_images_are_errors_not_panics() -> Result<()> {
    let mut reader = common::reader();
    let jpeg = render_vehicle_frame("1234 AB 01", 1)?;
    let mut header_broken = jpeg.clone();
    for b in header_broken.iter_mut().take(64) {
        *b = 0x5A;
    }
    let cases: [(&str, &[u8]); 5] = [
        ("empty", &[]),
        ("garbage", b"this is not an image at all, just some bytes"),
        ("broken header", &header_broken),
        ("only the SOI marker", &jpeg[..4]),
        ("cut in half", &jpeg[..jpeg.len() / 2]),
    ];
    for (what, bytes) in cases {
        match reader.read_image_bytes(bytes) {
            Err(AnprError::Decode { len, .. }) => ensure!(len == bytes.len(), "{what}"),
            other => anyhow::bail!("{what}: expected a decode error, got {other:?}"),
        }
    }
    // An empty Mat is an error too.
    let empty = opencv::core::Mat::default();
    ensure!(matches!(
        reader.read_mat(&empty),
        Err(AnprError::UnsupportedFrame(_))
    ));
    Ok(())
}

#[test]
fn two_line_plates_read_top_line_first() -> Result<()> {
    let mut reader = common::reader();
    for (printed, text, format) in [
        ("1234\nAB 01", "1234AB01", "TJ"),
        ("123\nABC 02", "123ABC02", "KZ"),
    ] {
        for variant in 0..2 {
            let jpeg = render_vehicle_frame(printed, variant)?;
            let got = best(&mut reader, &jpeg)?;
            ensure!(
                got == (text.to_string(), Some(format)),
                "{printed:?} variant {variant} read as {got:?}"
            );
        }
    }
    Ok(())
}

/// Reads a rendered frame after `change` (rotation, blur, dimming ..) was applied to it.
fn read_changed(
    reader: &mut PlateReader,
    printed: &str,
    variant: u64,
    change: impl Fn(&Mat) -> opencv::Result<Mat>,
) -> Result<(String, Option<&'static str>)> {
    let frame = change(&render_vehicle_mat(printed, variant)?)?;
    let c = reader.read_mat(&frame)?;
    let best = c.first().context("no text read at all")?;
    Ok((best.text.clone(), best.format))
}

#[test]
fn rotated_blurred_and_dim_frames_read_exactly() -> Result<()> {
    let mut reader = common::reader();
    let rotate = |deg: f64| {
        move |m: &Mat| -> opencv::Result<Mat> {
            let centre = Point2f::new(m.cols() as f32 / 2.0, m.rows() as f32 / 2.0);
            let r = imgproc::get_rotation_matrix_2d(centre, deg, 1.0)?;
            let mut out = Mat::default();
            imgproc::warp_affine_def(m, &mut out, &r, m.size()?)?;
            Ok(out)
        }
    };
    let blur = |m: &Mat| -> opencv::Result<Mat> {
        let mut out = Mat::default();
        imgproc::gaussian_blur_def(m, &mut out, Size::new(5, 5), 1.5)?;
        Ok(out)
    };
    let dim = |m: &Mat| -> opencv::Result<Mat> {
        let mut out = Mat::default();
        m.convert_to(&mut out, -1, 0.4, 0.0)?;
        Ok(out)
    };
    for (printed, text, format) in [PLATES[0], PLATES[7], PLATES[13]] {
        for (what, got) in [
            (
                "rotated 7 degrees",
                read_changed(&mut reader, printed, 1, rotate(7.0))?,
            ),
            (
                "rotated -7 degrees",
                read_changed(&mut reader, printed, 2, rotate(-7.0))?,
            ),
            ("blurred", read_changed(&mut reader, printed, 3, blur)?),
            ("dim", read_changed(&mut reader, printed, 4, dim)?),
        ] {
            ensure!(
                got == (text.to_string(), Some(format)),
                "{printed:?} {what} read as {got:?}"
            );
        }
    }
    Ok(())
}

#[test]
fn two_vehicles_in_one_frame_give_both_plates() -> Result<()> {
    let mut reader = common::reader();
    let mut both = Mat::default();
    let pair = Vector::<Mat>::from_iter([
        render_vehicle_mat("1234 AB 01", 5)?,
        render_vehicle_mat("123 ABC 02", 6)?,
    ]);
    opencv::core::hconcat(&pair, &mut both)?;
    let reads = reader.read_mat(&both)?;
    let plated: Vec<(&str, Option<&str>)> = reads
        .iter()
        .filter(|r| r.format.is_some())
        .map(|r| (r.text.as_str(), r.format))
        .collect();
    ensure!(plated.contains(&("1234AB01", Some("TJ"))), "{plated:?}");
    ensure!(plated.contains(&("123ABC02", Some("KZ"))), "{plated:?}");
    let left = reads
        .iter()
        .find(|r| r.text == "1234AB01")
        .map(|r| r.bbox[0]);
    let right = reads
        .iter()
        .find(|r| r.text == "123ABC02")
        .map(|r| r.bbox[0]);
    ensure!(matches!((left, right), (Some(l), Some(r)) if l < 960 && r >= 960));
    Ok(())
}

/// A rendered vehicle at a third of its size in a grey 1920x1080 view: its plate is about 14 px
/// high in the detector's full pass (960 px), 7 px in the quick pass (512 px).
fn small_plate_in_a_wide_view(plate: &str, variant: u64) -> Result<Mat> {
    let vehicle = render_vehicle_mat(plate, variant)?;
    let mut small = Mat::default();
    imgproc::resize(
        &vehicle,
        &mut small,
        Size::new(vehicle.cols() / 3, vehicle.rows() / 3),
        0.0,
        0.0,
        imgproc::INTER_AREA,
    )?;
    let mut view = Mat::new_rows_cols_with_default(1080, 1920, opencv::core::CV_8UC3, 90.0.into())?;
    let at = opencv::core::Rect::new(800, 600, small.cols(), small.rows());
    let mut place = Mat::roi_mut(&mut view, at)?;
    small.copy_to(&mut place)?;
    Ok(view)
}

#[test]
fn a_plate_too_small_for_the_quick_pass_is_read_by_the_full_one() -> Result<()> {
    let view = small_plate_in_a_wide_view("1234 AB 01", 11)?;
    // The quick pass alone (a reader whose only pass is at its size) does not read the plate..
    let mut quick_only = PlateReader::new(&AnprConfig {
        det_limit_side_px: AnprConfig::default().det_quick_side_px,
        det_quick_side_px: 0,
        det_tile_side_px: 0,
        ..AnprConfig::from_env()
    })?;
    let quick = quick_only.read_mat(&view)?;
    ensure!(
        !quick.iter().any(|r| r.text == "1234AB01"),
        "the quick pass alone read the small plate, so this test shows nothing: {quick:?}"
    );
    // .. the reader with both passes does, as well as one with the full pass only.
    for det_quick_side_px in [AnprConfig::default().det_quick_side_px, 0] {
        let mut reader = PlateReader::new(&AnprConfig {
            det_quick_side_px,
            ..AnprConfig::from_env()
        })?;
        let reads = reader.read_mat(&view)?;
        let best = reads.first().map(|r| (r.text.as_str(), r.format));
        ensure!(
            best == Some(("1234AB01", Some("TJ"))),
            "det_quick_side_px {det_quick_side_px}: best read {best:?}"
        );
    }
    Ok(())
}

/// A frame in which no pass finds plate-like text is read again in halves at about their own
/// resolution: the small plate of a wide view that a 512 px pass alone misses.
#[test]
fn a_plate_no_pass_found_is_read_from_the_frame_halves() -> Result<()> {
    let view = small_plate_in_a_wide_view("1234 AB 01", 11)?;
    let small_pass = |det_tile_side_px| AnprConfig {
        det_limit_side_px: 512,
        det_quick_side_px: 0,
        det_tile_side_px,
        ..AnprConfig::from_env()
    };
    let without = PlateReader::new(&small_pass(0))?.read_mat(&view)?;
    ensure!(
        !without.iter().any(|r| r.text == "1234AB01"),
        "the 512 px pass read the plate, so this test shows nothing: {without:?}"
    );
    let with = PlateReader::new(&small_pass(1280))?.read_mat(&view)?;
    let best = with.first().map(|r| (r.text.as_str(), r.format));
    ensure!(best == Some(("1234AB01", Some("TJ"))), "{with:?}");
    Ok(())
}

#[test]
fn zero_size_and_huge_frames_are_errors() -> Result<()> {
    let cfg = AnprConfig {
        max_frame_pixels: 2_000_000,
        ..AnprConfig::from_env()
    };
    let mut reader = PlateReader::new(&cfg)?;
    let huge = Mat::new_rows_cols_with_default(1500, 2000, opencv::core::CV_8UC3, 0.0.into())?;
    match reader.read_mat(&huge) {
        Err(AnprError::UnsupportedFrame(m)) => ensure!(m.contains("max_frame_pixels"), "{m}"),
        other => anyhow::bail!("expected an error for a huge frame, got {other:?}"),
    }
    let zero = Mat::new_rows_cols_with_default(0, 0, opencv::core::CV_8UC3, 0.0.into())?;
    ensure!(matches!(
        reader.read_mat(&zero),
        Err(AnprError::UnsupportedFrame(_))
    ));
    Ok(())
}

#[test]
fn plate_reader_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<PlateReader>();
}

#[test]
fn chinese_and_afghan_latin_plates_read_with_their_format() -> Result<()> {
    let mut reader = common::reader();
    // The Latin parts only: the renderer draws ASCII (no Han province character, no Persian
    // line), as the reader normalises them anyway.
    for (printed, text, format) in [
        ("A 12345", "A12345", "CN"),
        ("B D12345", "BD12345", "CN"),
        ("KBL 12345 PRV", "KBL12345PRV", "AF"),
        ("HRT 4521 T", "HRT4521T", "AF"),
    ] {
        for variant in 0..2 {
            let jpeg = render_vehicle_frame(printed, variant)?;
            let got = best(&mut reader, &jpeg)?;
            ensure!(
                got == (text.to_string(), Some(format)),
                "{printed:?} variant {variant} read as {got:?}"
            );
        }
    }
    Ok(())
}
