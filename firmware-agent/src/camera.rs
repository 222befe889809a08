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
//!
//! ## Supervision: a panic never ends the camera
//! The ANPR engine is native code behind bindings (OpenCV, ONNX Runtime); a bug there may
//! panic. The thread is its own supervisor, like the serial devices' (`agent::supervise`): a
//! panic while a frame is read is caught, logged at ERROR, counted as a restart of the camera
//! (`bcpctl devices` RESTARTS, `bcp_device_restarts_total`), and
//! - the frame it happened on is moved to `rejected/` with the panic as its reason, so that one
//!   bad frame cannot make the camera fail again and again;
//! - the engine is dropped and loaded again from its files on the next frame (its state after
//!   a panic is not trusted);
//! - the thread waits [`RestartBackoff`] (1 s, doubling to 60 s while panics follow each other
//!   within a minute) before it goes on, and stops waiting at once when the agent stops.
//!
//! A panic anywhere else in the loop (listing the folder) is handled the same way, without a
//! frame to set aside.

use crate::agent::supervise::RestartBackoff;
use crate::metrics::Histogram;
use anyhow::{Context, Result};
use bcp_anpr::{AnprConfig, PlateCandidate, PlateReader};
use chrono::{DateTime, Utc};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
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
pub struct LazyReader {
    /// What to load it with; kept to load it again after a panic.
    cfg: Box<AnprConfig>,
    loaded: Option<Box<PlateReader>>,
}

impl LazyReader {
    /// Loads the engine now when `preload`, else checks that its files are there and loads it
    /// on [`LazyReader::get`].
    pub fn new(cfg: AnprConfig, preload: bool) -> Result<Self> {
        let mut reader = Self {
            cfg: Box::new(cfg),
            loaded: None,
        };
        if preload {
            reader.get()?;
        } else {
            reader
                .cfg
                .paths
                .check()
                .context("the ANPR engine's files (run scripts/install-native?)")?;
        }
        Ok(reader)
    }

    /// The engine, loaded on first use.
    pub fn get(&mut self) -> Result<&mut PlateReader> {
        let reader = match self.loaded.take() {
            Some(reader) => reader,
            None => {
                let started = Instant::now();
                let reader = PlateReader::new(&self.cfg)
                    .context("loading the ANPR engine (run scripts/install-native?)")?;
                tracing::info!(
                    ms = started.elapsed().as_millis() as u64,
                    "ANPR engine loaded"
                );
                Box::new(reader)
            }
        };
        Ok(self.loaded.insert(reader))
    }
}

/// What the camera's loop needs of its engine: recognise one encoded frame; be ready (or made
/// ready) to recognise; forget its state after a panic. [`LazyReader`] in the agent; the tests
/// give the loop an engine that panics on purpose.
pub(crate) trait FrameEngine {
    /// Loads the engine if it is not loaded; an error leaves the frames where they are.
    fn ready(&mut self) -> Result<()>;
    fn recognise(&mut self, jpeg: &[u8]) -> Result<Vec<PlateCandidate>>;
    /// Drops the engine; the next [`FrameEngine::ready`] loads it again.
    fn forget(&mut self);
}

impl FrameEngine for LazyReader {
    fn ready(&mut self) -> Result<()> {
        self.get().map(|_| ())
    }

    fn recognise(&mut self, jpeg: &[u8]) -> Result<Vec<PlateCandidate>> {
        Ok(self.get()?.read_image_bytes(jpeg)?)
    }

    fn forget(&mut self) {
        self.loaded = None;
    }
}

/// The camera thread's outputs and its stop signal.
pub(crate) struct CameraLinks {
    pub out: mpsc::Sender<FrameReads>,
    pub latency: Arc<Histogram>,
    /// Panics caught, each one a restart of the camera.
    pub restarts: Arc<AtomicU64>,
    pub shutdown: watch::Receiver<bool>,
}

/// Starts the camera's thread; it stops when `shutdown` turns true (or the lane hangs up) and
/// hands its ANPR engine back through the join handle, so that a restart with new settings
/// (a config reload) need not load the models again.
pub(crate) fn spawn(
    name: String,
    folder: PathBuf,
    poll: Duration,
    mut reader: LazyReader,
    links: CameraLinks,
) -> Result<std::thread::JoinHandle<LazyReader>> {
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("camera {name}: creating {}", folder.display()))?;
    let thread_name = format!("camera-{name}");
    let what = format!("camera {name}: starting its thread");
    std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            run(&name, &folder, poll, &mut reader, &links);
            reader
        })
        .context(what)
}

/// What one round of the loop asks next.
enum Round {
    /// Go on with the next round.
    Next,
    /// The agent is stopping.
    Stop,
    /// A panic was caught (and handled); wait before going on.
    Panicked,
}

fn run<E: FrameEngine>(
    name: &str,
    folder: &Path,
    poll: Duration,
    engine: &mut E,
    links: &CameraLinks,
) {
    let mut backoff = RestartBackoff::default();
    let mut since = Instant::now();
    while !*links.shutdown.borrow() {
        let round = catch_unwind(AssertUnwindSafe(|| {
            one_round(name, folder, poll, engine, links)
        }))
        .unwrap_or_else(|panic| {
            caught(name, engine, links, &panic_message(&*panic), None);
            Round::Panicked
        });
        match round {
            Round::Next => {}
            Round::Stop => return,
            Round::Panicked => {
                let wait = backoff.after_failure(since.elapsed());
                tracing::warn!(camera = %name, wait_ms = wait.as_millis() as u64, "the camera goes on after a wait");
                if !sleep_unless_stopped(wait, &links.shutdown) {
                    return;
                }
                since = Instant::now();
            }
        }
    }
}

fn one_round<E: FrameEngine>(
    name: &str,
    folder: &Path,
    poll: Duration,
    engine: &mut E,
    links: &CameraLinks,
) -> Round {
    match next_frames(folder) {
        Ok(frames) if frames.is_empty() => std::thread::sleep(poll),
        Ok(frames) => {
            if let Err(e) = engine.ready() {
                // The frames stay in the folder until the engine loads.
                tracing::error!(camera = %name, error = %format!("{e:#}"), "frames wait: the ANPR engine does not load");
                std::thread::sleep(poll.max(Duration::from_secs(5)));
                return Round::Next;
            }
            for f in frames {
                if *links.shutdown.borrow() {
                    return Round::Stop;
                }
                let read = catch_unwind(AssertUnwindSafe(|| {
                    read_frame(name, &f, engine, &links.latency)
                }));
                match read {
                    Ok(Some(reads)) => {
                        if links.out.blocking_send(reads).is_err() {
                            return Round::Stop; // the agent is shutting down
                        }
                    }
                    Ok(None) => {}
                    Err(panic) => {
                        caught(name, engine, links, &panic_message(&*panic), Some(&f));
                        return Round::Panicked;
                    }
                }
            }
        }
        Err(e) => {
            tracing::warn!(camera = %name, error = %format!("{e:#}"), "cannot list the frame folder");
            std::thread::sleep(poll.max(Duration::from_secs(1)));
        }
    }
    Round::Next
}

/// After a caught panic: log it, count the restart, set the frame aside, drop the engine.
fn caught<E: FrameEngine>(
    name: &str,
    engine: &mut E,
    links: &CameraLinks,
    panic: &str,
    frame: Option<&Path>,
) {
    links.restarts.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        camera = %name,
        frame = ?frame.map(Path::display).map(|d| d.to_string()),
        panic,
        "the camera's ANPR engine panicked; the frame is set aside and the engine reloaded"
    );
    if let Some(frame) = frame {
        if frame.exists() {
            reject(
                frame,
                &format!("the ANPR engine panicked on this frame: {panic}"),
            );
        }
    }
    engine.forget();
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Sleeps `wait` in short steps; false when the agent stopped meanwhile.
fn sleep_unless_stopped(wait: Duration, shutdown: &watch::Receiver<bool>) -> bool {
    let until = Instant::now() + wait;
    while Instant::now() < until {
        if *shutdown.borrow() {
            return false;
        }
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(100)));
    }
    !*shutdown.borrow()
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

fn read_frame<E: FrameEngine>(
    camera: &str,
    path: &Path,
    engine: &mut E,
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
            let reads = engine.recognise(&bytes).with_context(|| format!("recognising {}", path.display()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine that reads a frame's bytes as its plate text, and panics on `PANIC`, as a bug
    /// in native code would: the camera loop's guard is what is tested, not recognition.
    #[derive(Default)]
    struct TextEngine {
        loads: usize,
        loaded: bool,
    }

    impl FrameEngine for TextEngine {
        fn ready(&mut self) -> Result<()> {
            if !self.loaded {
                self.loads += 1;
                self.loaded = true;
            }
            Ok(())
        }

        fn recognise(&mut self, jpeg: &[u8]) -> Result<Vec<PlateCandidate>> {
            self.ready()?;
            let text = String::from_utf8_lossy(jpeg).into_owned();
            if text == "PANIC" {
                panic!("index out of bounds in a native binding");
            }
            Ok(vec![PlateCandidate {
                char_confidences: vec![0.9; text.len()],
                text,
                confidence: 0.9,
                bbox: [0, 0, 10, 10],
                format: None,
            }])
        }

        fn forget(&mut self) {
            self.loaded = false;
        }
    }

    #[test]
    fn a_panic_on_a_frame_sets_it_aside_reloads_the_engine_and_the_camera_goes_on() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let folder = dir.path().join("cam");
        std::fs::create_dir_all(&folder)?;
        for (name, text) in [
            ("1.jpg", "1234AB01"),
            ("2.jpg", "PANIC"),
            ("3.jpg", "5678CD02"),
        ] {
            std::fs::write(folder.join(name), text)?;
        }
        let (out, mut frames) = mpsc::channel(8);
        let (stop, shutdown) = watch::channel(false);
        let restarts = Arc::new(AtomicU64::new(0));
        let links = CameraLinks {
            out,
            latency: Arc::new(Histogram::new(&[0.1])),
            restarts: restarts.clone(),
            shutdown,
        };
        let camera = std::thread::spawn(move || {
            let mut engine = TextEngine::default();
            run(
                "cam1",
                &folder,
                Duration::from_millis(10),
                &mut engine,
                &links,
            );
            engine
        });

        let mut read = Vec::new();
        while read.len() < 2 {
            let frame = frames.blocking_recv().context("the camera ended early")?;
            read.push(frame.reads[0].text.clone());
        }
        stop.send(true)?;
        let Ok(engine) = camera.join() else {
            anyhow::bail!("the camera thread must not panic");
        };

        assert_eq!(
            read,
            ["1234AB01", "5678CD02"],
            "the frames around the panic are read"
        );
        assert_eq!(restarts.load(Ordering::Relaxed), 1, "one restart counted");
        assert_eq!(
            engine.loads, 2,
            "the engine was loaded again after the panic"
        );
        let rejected = dir.path().join("cam").join("rejected");
        assert!(rejected.join("2.jpg").exists(), "the frame is set aside");
        let reason = std::fs::read_to_string(rejected.join("2.reason"))?;
        assert!(
            reason.contains("panicked") && reason.contains("native binding"),
            "{reason}"
        );
        assert!(!dir.path().join("cam").join("2.jpg").exists());
        Ok(())
    }

    #[test]
    fn a_stop_during_the_wait_after_a_panic_ends_the_camera_at_once() -> Result<()> {
        let (stop, shutdown) = watch::channel(false);
        let waiter =
            std::thread::spawn(move || sleep_unless_stopped(Duration::from_secs(600), &shutdown));
        stop.send(true)?;
        let Ok(finished) = waiter.join() else {
            anyhow::bail!("the wait panicked");
        };
        assert!(!finished, "a stopped wait says so");
        Ok(())
    }
}
