//! Capture from image folders and video files (written here from rendered frames): frames
//! arrive, a slow reader loses the oldest, a source that disappears and returns is reconnected,
//! a missing source is an error counted, never a panic.
use anyhow::{ensure, Context, Result};
use bcp_anpr::capture::{Camera, CameraHealth, CaptureConfig, Source};
use bcp_sim::plate_render::{render_vehicle_frame, render_vehicle_mat};
use opencv::core::Size;
use opencv::prelude::*;
use opencv::videoio;
use std::path::Path;
use std::time::{Duration, Instant};

fn fast() -> CaptureConfig {
    CaptureConfig {
        queue_frames: 2,
        open_timeout_ms: 2_000,
        read_timeout_ms: 2_000,
        reconnect_min_ms: 50,
        reconnect_max_ms: 200,
        folder_poll_ms: 20,
    }
}

fn drop_frame(dir: &Path, name: &str, plate: &str) -> Result<()> {
    let tmp = dir.join(format!(".{name}.part"));
    std::fs::write(&tmp, render_vehicle_frame(plate, 1)?)?;
    std::fs::rename(&tmp, dir.join(name))?; // appear whole, as a camera upload should
    Ok(())
}

fn wait_health(cam: &Camera, what: &str, ok: impl Fn(&CameraHealth) -> bool) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if ok(&cam.health()) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("{what}: health stayed {:?}", cam.health())
}

#[test]
fn a_folder_camera_delivers_new_files_and_comes_back_after_it_disappears() -> Result<()> {
    let root = tempfile::tempdir()?;
    let dir = root.path().join("cam");
    std::fs::create_dir(&dir)?;
    drop_frame(&dir, "0001.jpg", "1234 AB 01")?;
    drop_frame(&dir, "0002.jpg", "0567 CD 02")?;
    std::fs::write(dir.join("0003.jpg"), b"corrupt")?;
    let cam = Camera::start("lane1", Source::Folder(dir.clone()), &fast())?;
    for seq in 1..=2 {
        let f = cam
            .next_frame(Duration::from_secs(5))
            .with_context(|| format!("frame {seq}"))?;
        ensure!(f.seq == seq && f.image.cols() == 960 && f.image.rows() == 540);
    }
    wait_health(&cam, "the corrupt file is an error", |h| {
        h.connected && h.frames == 2 && h.errors == 1
    })?;

    std::fs::remove_dir_all(&dir)?;
    wait_health(&cam, "the folder is gone", |h| {
        !h.connected && h.errors >= 2
    })?;
    std::fs::create_dir(&dir)?;
    drop_frame(&dir, "0004.jpg", "4321 KM 04")?;
    let f = cam
        .next_frame(Duration::from_secs(10))
        .context("a frame after the folder returned")?;
    ensure!(f.seq == 3, "seq {}", f.seq);
    wait_health(&cam, "reconnected", |h| h.connected && h.reconnects >= 1)?;
    Ok(())
}

#[test]
fn a_slow_reader_gets_the_newest_frames() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for i in 1..=5 {
        drop_frame(dir.path(), &format!("{i:04}.jpg"), "1234 AB 01")?;
    }
    let cam = Camera::start("lane2", Source::Folder(dir.path().into()), &fast())?;
    wait_health(&cam, "all captured", |h| h.frames == 5)?;
    let seqs: Vec<u64> = std::iter::from_fn(|| cam.next_frame(Duration::from_millis(100)))
        .map(|f| f.seq)
        .collect();
    ensure!(seqs == vec![4, 5], "{seqs:?}");
    ensure!(cam.health().dropped == 3, "{:?}", cam.health());
    Ok(())
}

#[test]
fn a_video_file_replays_and_a_missing_stream_is_an_error_not_a_panic() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let video = dir.path().join("lane.avi");
    let fourcc = videoio::VideoWriter::fourcc('M', 'J', 'P', 'G')?;
    let mut w = videoio::VideoWriter::new(&video, fourcc, 10.0, Size::new(960, 540), true)?;
    ensure!(w.is_opened()?, "OpenCV cannot write MJPG AVI here");
    for i in 0..4 {
        w.write(&render_vehicle_mat("1234 AB 01", i)?)?;
    }
    w.release()?;

    let cfg = CaptureConfig {
        queue_frames: 16,
        ..fast()
    };
    let cam = Camera::start("file", Source::Stream(video.to_string_lossy().into()), &cfg)?;
    let mut got = 0;
    while got < 6 {
        let f = cam
            .next_frame(Duration::from_secs(10))
            .with_context(|| format!("frame {}", got + 1))?;
        ensure!(f.image.cols() == 960 && f.image.rows() == 540);
        got += 1;
    }
    ensure!(cam.health().reconnects >= 1, "replayed: {:?}", cam.health());

    let missing = dir.path().join("no-such-camera.avi");
    let cam = Camera::start(
        "gone",
        Source::Stream(missing.to_string_lossy().into()),
        &fast(),
    )?;
    wait_health(&cam, "open failures counted", |h| {
        h.errors >= 2 && !h.connected
    })?;
    ensure!(cam.next_frame(Duration::from_millis(50)).is_none());
    let started = Instant::now();
    drop(cam);
    ensure!(started.elapsed() < Duration::from_secs(3), "stops promptly");
    Ok(())
}
