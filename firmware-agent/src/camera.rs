//! A camera that uploads JPEG frames into a folder (FTP push), read by the ANPR engine.
//!
//! Runs on its own OS thread, because recognition is CPU-bound and blocking. Each frame file is
//! read, recognised, reported with its capture time (the file's modification time, when the
//! camera finished writing it), then removed. A frame that cannot be decoded is moved to
//! `rejected/` beside the folder with a `.reason` file, never silently dropped, and never stops
//! the camera. The time each frame takes to read goes into the ANPR latency histogram that
//! the metrics endpoint serves.
//!
//! A frame whose best read has text is handed on with its JPEG bytes, for the agent's frame
//! cache ([`crate::frames`]): the crossing's plate crop and overview are cut from the frame of
//! its winning read. A frame without text is handed on without them (it cannot win).

use crate::metrics::Histogram;
use anyhow::{Context, Result};
use bcp_anpr::{AnprConfig, PlateCandidate, PlateReader};
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// What the camera thread reports about one frame.
#[derive(Debug)]
pub struct FrameReads {
    /// When the camera finished writing it (the file's modification time).
    pub captured_at: DateTime<Utc>,
    /// Its reads, best first.
    pub reads: Vec<PlateCandidate>,
    /// The frame's JPEG bytes, when its best read has text (see the module header).
    pub jpeg: Option<Vec<u8>>,
}

/// The ANPR engine of a camera: loaded at start (`[anpr] preload = true`) or on the first
/// frame, and kept across camera restarts.
#[derive(Debug)]
pub enum LazyReader {
    Loaded(Box<PlateReader>),
    /// Not loaded yet: what to load it with.
    Unloaded(Box<AnprConfig>),
}

impl LazyReader {
    /// Loads the engine now when `preload`, else checks that its files are there and loads it
    /// on [`LazyReader::get`].
    pub fn new(cfg: AnprConfig, preload: bool) -> Result<Self> {
        if preload {
            let reader = PlateReader::new(&cfg)
                .context("loading the ANPR engine (run scripts/install-native?)")?;
            return Ok(Self::Loaded(Box::new(reader)));
        }
        cfg.paths
            .check()
            .context("the ANPR engine's files (run scripts/install-native?)")?;
        Ok(Self::Unloaded(Box::new(cfg)))
    }

    /// The engine, loaded on first use.
    pub fn get(&mut self) -> Result<&mut PlateReader> {
        if let Self::Unloaded(cfg) = self {
            let started = std::time::Instant::now();
            let reader = PlateReader::new(cfg)
                .context("loading the ANPR engine (run scripts/install-native?)")?;
            tracing::info!(
                ms = started.elapsed().as_millis() as u64,
                "ANPR engine loaded on the first frame"
            );
            *self = Self::Loaded(Box::new(reader));
        }
        match self {
            Self::Loaded(reader) => Ok(reader),
            Self::Unloaded(_) => anyhow::bail!("the ANPR engine is not loaded"),
        }
    }
}

/// Starts the camera's thread; it stops when `shutdown` turns true (or the lane hangs up) and
/// hands its ANPR engine back through the join handle, so that a restart with new settings
/// (a config reload) need not load the models again.
pub fn spawn(
    name: String,
    folder: PathBuf,
    poll: Duration,
    mut reader: LazyReader,
    out: mpsc::Sender<FrameReads>,
    latency: Arc<Histogram>,
    shutdown: watch::Receiver<bool>,
) -> Result<std::thread::JoinHandle<LazyReader>> {
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("camera {name}: creating {}", folder.display()))?;
    let thread_name = format!("camera-{name}");
    let what = format!("camera {name}: starting its thread");
    std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            run(&name, &folder, poll, &mut reader, &out, &latency, &shutdown);
            reader
        })
        .context(what)
}

fn run(
    name: &str,
    folder: &Path,
    poll: Duration,
    reader: &mut LazyReader,
    out: &mpsc::Sender<FrameReads>,
    latency: &Histogram,
    shutdown: &watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        match next_frames(folder) {
            Ok(frames) if frames.is_empty() => std::thread::sleep(poll),
            Ok(frames) => {
                if let Err(e) = reader.get() {
                    // The frames stay in the folder until the engine loads.
                    tracing::error!(camera = %name, error = %format!("{e:#}"), "frames wait: the ANPR engine does not load");
                    std::thread::sleep(poll.max(Duration::from_secs(5)));
                    continue;
                }
                for f in frames {
                    if *shutdown.borrow() {
                        return;
                    }
                    if let Some(reads) = read_frame(name, &f, reader, latency) {
                        if out.blocking_send(reads).is_err() {
                            return; // the agent is shutting down
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(camera = %name, error = %format!("{e:#}"), "cannot list the frame folder");
                std::thread::sleep(poll.max(Duration::from_secs(1)));
            }
        }
    }
}

/// Complete frame files (no temporary `.name.part`), oldest name first.
fn next_frames(folder: &Path) -> Result<Vec<PathBuf>> {
    let mut frames = Vec::new();
    for entry in
        std::fs::read_dir(folder).with_context(|| format!("reading {}", folder.display()))?
    {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let is_jpeg = name.ends_with(".jpg") || name.ends_with(".jpeg");
        if is_jpeg && !name.starts_with('.') && path.is_file() {
            frames.push(path);
        }
    }
    frames.sort();
    Ok(frames)
}

fn read_frame(
    camera: &str,
    path: &Path,
    reader: &mut LazyReader,
    latency: &Histogram,
) -> Option<FrameReads> {
    let captured_at: DateTime<Utc> = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(DateTime::from)
        .unwrap_or_else(|_| Utc::now());
    let result = std::fs::read(path)
        .with_context(|| format!("reading {}", path.display()))
        .and_then(|bytes| {
            let started = std::time::Instant::now();
            let reads = reader.get()?.read_image_bytes(&bytes).with_context(|| format!("recognising {}", path.display()))?;
            latency.observe(started.elapsed());
            tracing::debug!(camera, frame = %path.display(), ms = started.elapsed().as_millis() as u64, reads = ?reads.first().map(|r| &r.text), "frame read");
            Ok((reads, bytes))
        });
    match result {
        Ok((reads, bytes)) => {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(camera, frame = %path.display(), error = %e, "cannot remove a read frame");
            }
            let has_text = reads.first().is_some_and(|r| !r.text.is_empty());
            Some(FrameReads {
                captured_at,
                reads,
                jpeg: has_text.then_some(bytes),
            })
        }
        Err(e) => {
            tracing::warn!(camera, frame = %path.display(), error = %format!("{e:#}"), "frame rejected");
            reject(path, &format!("{e:#}"));
            None
        }
    }
}

fn reject(path: &Path, reason: &str) {
    let Some(dir) = path.parent() else { return };
    let rejected = dir.join("rejected");
    let Some(name) = path.file_name() else { return };
    let moved = std::fs::create_dir_all(&rejected)
        .and_then(|()| std::fs::rename(path, rejected.join(name)))
        .and_then(|()| std::fs::write(rejected.join(name).with_extension("reason"), reason));
    if let Err(e) = moved {
        tracing::error!(frame = %path.display(), error = %e, "cannot move a rejected frame aside; it stays in place");
    }
}
