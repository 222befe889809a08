//! `bcpctl anpr read`: the real binary on frames rendered by `bcp_sim::plate_render`, and on
//! corrupt, truncated and empty files (an error line each, never a crash).
use anyhow::{Context, Result};
use bcp_sim::plate_render::render_vehicle_frame;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bcpctl(args: &[&str], images: &[PathBuf]) -> Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_bcpctl"))
        .args(args)
        .args(images)
        .output()
        .context("running bcpctl")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, bytes)?;
    Ok(path)
}

fn json_lines(out: &Output) -> Result<Vec<Value>> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect()
}

#[test]
fn json_lines_give_the_plate_its_format_box_and_time_and_bad_files_an_error_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let tj = render_vehicle_frame("1234 AB 01", 7)?;
    let uz = render_vehicle_frame("01 A 123 BC", 8)?;
    let images = vec![
        write(dir.path(), "tj.jpg", &tj)?,
        write(dir.path(), "truncated.jpg", &tj[..tj.len() / 3])?,
        write(dir.path(), "empty.jpg", &[])?,
        write(dir.path(), "garbage.jpg", b"not an image at all")?,
        write(dir.path(), "uz.jpg", &uz)?,
        dir.path().join("missing.jpg"),
    ];
    let out = bcpctl(&["anpr", "read", "--json"], &images)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "some images failed: {stderr}");
    assert!(stderr.contains("4 of 6 images"), "{stderr}");

    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    let first = raw.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(r#"{"image":"#)
            && first.contains(r#","reads":[{"text":"1234AB01","confidence":"#)
            && first.contains(r#","bbox":["#)
            && first.contains(r#"],"format":"TJ"}"#)
            && first.contains(r#"],"ms":"#),
        "keys in the issue's order: {first}"
    );
    let lines = json_lines(&out)?;
    assert_eq!(lines.len(), 6, "one line per image, in order");
    for (line, image) in lines.iter().zip(&images) {
        assert_eq!(line["image"], image.display().to_string());
    }
    for (i, plate, format) in [(0, "1234AB01", "TJ"), (4, "01A123BC", "UZ")] {
        let line = &lines[i];
        let best = &line["reads"][0];
        assert_eq!(best["text"], plate, "{line}");
        assert_eq!(best["format"], format, "{line}");
        let conf = best["confidence"].as_f64().unwrap_or(-1.0);
        assert!((0.5..=1.0).contains(&conf), "{line}");
        let bbox: Vec<i64> = best["bbox"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        assert_eq!(bbox.len(), 4, "{line}");
        assert!(bbox[2] > 50 && bbox[3] > 10, "a plate-sized box: {line}");
        assert!(line["ms"].as_f64().is_some_and(|ms| ms > 0.0), "{line}");
        assert!(line.get("error").is_none(), "{line}");
    }
    for i in [1, 2, 3, 5] {
        let line = &lines[i];
        assert!(
            line["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{line}"
        );
        assert!(line.get("reads").is_none(), "{line}");
    }
    Ok(())
}

#[test]
fn identifier_kinds_keep_only_valid_numbers_and_repair_one_look_alike() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let images = vec![
        write(
            dir.path(),
            "imo.jpg",
            &render_vehicle_frame("IMO 9074729", 3)?,
        )?,
        write(
            dir.path(),
            "plate.jpg",
            &render_vehicle_frame("1234 AB 01", 4)?,
        )?,
    ];
    let out = bcpctl(&["anpr", "read", "--json", "--kind", "vessel"], &images)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines = json_lines(&out)?;
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["reads"][0]["text"], "9074729", "{}", lines[0]);
    assert_eq!(lines[0]["reads"][0]["format"], "IMO", "{}", lines[0]);
    // A road plate is no vessel number.
    assert_eq!(lines[1]["reads"], Value::Array(vec![]), "{}", lines[1]);

    let out = bcpctl(&["anpr", "read", "--kind", "boat"], &images[..1])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wagon, container, vessel or uld"));

    let out = bcpctl(&["anpr", "read", "--formats", "TJ,XX"], &images[..1])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("formats") && stderr.contains("\"XX\""),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn text_output_names_the_image_and_the_best_read() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let image = write(
        dir.path(),
        "kz.jpg",
        &render_vehicle_frame("123 ABC 02", 5)?,
    )?;
    let out = bcpctl(&["anpr", "read"], std::slice::from_ref(&image))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(&format!("{}: 123ABC02 (KZ, ", image.display())),
        "{stdout}"
    );
    Ok(())
}

#[test]
fn camera_snapshot_and_test_on_a_folder_camera_and_a_missing_one() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cam = dir.path().join("cam");
    std::fs::create_dir(&cam)?;
    write(&cam, "0001.jpg", &render_vehicle_frame("1234 AB 01", 1)?)?;
    write(&cam, "0002.jpg", &render_vehicle_frame("01 A 123 BC", 2)?)?;
    let cam_arg = cam.to_string_lossy().into_owned();

    let shot = dir.path().join("shot.png");
    let shot_arg = shot.to_string_lossy().into_owned();
    let out = bcpctl(&["camera", "snapshot", &cam_arg, "-o", &shot_arg], &[])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot)?;
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );

    let out = bcpctl(
        &["camera", "test", &cam_arg, "--seconds", "2", "--json"],
        &[],
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json_lines(&out)?.remove(0);
    assert_eq!(report["frames"], 2, "{report}");
    assert_eq!(report["frames_read"], 2, "{report}");
    assert_eq!(report["plates"], 2, "{report}");
    assert_eq!(report["health"]["connected"], true, "{report}");

    let missing = dir.path().join("gone.avi").to_string_lossy().into_owned();
    let out = bcpctl(
        &[
            "camera",
            "snapshot",
            &missing,
            "-o",
            &shot_arg,
            "--timeout-secs",
            "1",
        ],
        &[],
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no frame from") && stderr.contains("gone.avi"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    Ok(())
}
