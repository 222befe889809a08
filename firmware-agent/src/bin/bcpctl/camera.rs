//! `bcpctl camera snapshot SOURCE -o FILE` and `bcpctl camera test SOURCE`: a camera checked from
//! the command line through the same capture code as the agent (`bcp_anpr::capture`).
//!
//! SOURCE is an RTSP or HTTP (MJPEG) URL, a video file, or a folder of images. `snapshot` writes
//! the first frame that arrives (format from the file's extension). `test` captures for a while
//! and reads every frame it can keep up with: frames per second captured, frames read, frames
//! whose best read fits a plate format (the read rate), dropped frames, errors, reconnects.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bcp_anpr::capture::{Camera, CaptureConfig, Source};
use bcp_anpr::{AnprConfig, PlateReader};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum CameraCommand {
    /// Writes one frame of the camera to a file.
    Snapshot {
        source: String,
        #[arg(short, long)]
        output: PathBuf,
        /// Give up after this long without a frame.
        #[arg(long, default_value_t = 15)]
        timeout_secs: u64,
    },
    /// Frames per second and plate read rate over a few seconds.
    Test {
        source: String,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: CameraCommand) -> Result<()> {
    match cmd {
        CameraCommand::Snapshot {
            source,
            output,
            timeout_secs,
        } => snapshot(&source, &output, Duration::from_secs(timeout_secs)),
        CameraCommand::Test {
            source,
            seconds,
            json,
        } => test(&source, Duration::from_secs(seconds), json),
    }
}

fn snapshot(source: &str, output: &Path, timeout: Duration) -> Result<()> {
    let cam = Camera::start("snapshot", Source::parse(source), &CaptureConfig::default())?;
    let Some(frame) = cam.next_frame(timeout) else {
        let h = cam.health();
        bail!(
            "no frame from {source} within {} s ({} errors; last: {})",
            timeout.as_secs(),
            h.errors,
            h.last_error.as_deref().unwrap_or("none")
        );
    };
    frame
        .save(output)
        .with_context(|| format!("writing {}", output.display()))?;
    println!("{}: frame {} of {source}", output.display(), frame.seq);
    Ok(())
}

fn test(source: &str, duration: Duration, json: bool) -> Result<()> {
    let mut reader = PlateReader::new(&AnprConfig::from_env())?;
    let cam = Camera::start("test", Source::parse(source), &CaptureConfig::default())?;
    let started = Instant::now();
    let (mut read, mut plates, mut read_errors) = (0u64, 0u64, 0u64);
    while started.elapsed() < duration {
        let Some(frame) = cam.next_frame(Duration::from_millis(200)) else {
            continue;
        };
        read += 1;
        match reader.read_mat(&frame.image) {
            Ok(c) if c.first().is_some_and(|c| c.format.is_some()) => plates += 1,
            Ok(_) => {}
            Err(_) => read_errors += 1,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let h = cam.health();
    let fps = h.frames as f64 / secs;
    let rate = if read == 0 {
        0.0
    } else {
        plates as f64 / read as f64
    };
    if json {
        let report = serde_json::json!({
            "source": source, "seconds": secs, "frames": h.frames, "fps": fps,
            "frames_read": read, "plates": plates, "read_rate": rate,
            "read_errors": read_errors, "health": h,
        });
        println!("{report}");
    } else {
        println!(
            "{source}: {} frames in {secs:.1} s ({fps:.1} fps), {read} read, {plates} with a plate ({:.0} %), {} dropped, {} errors, {} reconnects, connected {}",
            h.frames,
            100.0 * rate,
            h.dropped,
            h.errors + read_errors,
            h.reconnects,
            h.connected
        );
    }
    if h.frames == 0 {
        bail!(
            "no frame from {source} (last error: {})",
            h.last_error.as_deref().unwrap_or("none")
        );
    }
    Ok(())
}
