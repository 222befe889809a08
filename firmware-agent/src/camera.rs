//! A camera, read by the ANPR engine: one that uploads JPEG frames into a folder (FTP push), or
//! a stream the agent pulls (RTSP, HTTP MJPEG, a video file; [`CameraSource`]).
//!
//! Runs on its own OS thread, because recognition is CPU-bound and blocking.
//!
//! ## A stream
//! Frames come through `bcp_anpr::capture::Camera`: its own grab thread, bounded open and read
//! timeouts, reconnect with backoff, and a queue of two frames that drops the oldest when
//! recognition falls behind (a 25 fps camera is read as fast as the engine can, always on its
//! newest frames). A frame's capture time is when the grab thread got it. A frame whose best
//! read has text is encoded as JPEG (quality [`STREAM_JPEG_QUALITY`]) for the frame cache. A
//! stream that cannot be opened or is lost is logged by the capture thread and reopened; the
//! device board shows the camera's last frame age as for a folder camera.
//!
//! ## A folder
//! Each frame file is
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
//! ## Motion, for camera presence
//! A camera that frames the vehicles (`[camera] presence = "motion"`) also measures each
//! frame's motion with a `bcp_anpr::MotionMeter` (one per thread, kept across frames): a
//! folder's frame is decoded a second time for it, grey at an eighth of its size (cheap next to
//! recognition); a stream's frame is measured as decoded. The fraction goes with the frame's
//! reads ([`FrameReads::motion`]) to the agent, which decides presence
//! ([`crate::camera_presence`]). A frame that cannot be measured is logged and goes on
//! without it; a frame that is rejected or not read reports no motion either.
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
pub use crate::config::CameraSource;
use crate::metrics::Histogram;
use anyhow::{Context, Result};
use bcp_anpr::capture::{self, CaptureConfig};
use bcp_anpr::{AnprConfig, MotionConfig, MotionMeter, PlateCandidate, PlateReader};
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
    /// The fraction of its pixels that changed since the camera's previous frame, when the
    /// camera measures motion (see the module header).
    pub motion: Option<f64>,
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
    /// A decoded frame from a stream.
    fn recognise_frame(&mut self, frame: &capture::Frame) -> Result<Vec<PlateCandidate>>;
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

    fn recognise_frame(&mut self, frame: &capture::Frame) -> Result<Vec<PlateCandidate>> {
        Ok(self.get()?.read_mat(&frame.image)?)
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
/// (a config reload) need not load the models again. With `motion`, each frame's motion is
/// measured too.
pub(crate) fn spawn(
    name: String,
    source: CameraSource,
    poll: Duration,
    mut reader: LazyReader,
    links: CameraLinks,
    motion: Option<MotionConfig>,
) -> Result<std::thread::JoinHandle<LazyReader>> {
    if let CameraSource::Folder(folder) = &source {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("camera {name}: creating {}", folder.display()))?;
    }
    let mut meter = motion
        .map(MotionMeter::new)
        .transpose()
        .with_context(|| format!("camera {name}: motion settings"))?;
    let thread_name = format!("camera-{name}");
    let what = format!("camera {name}: starting its thread");
    std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            match &source {
                CameraSource::Folder(folder) => {
                    run(&name, folder, poll, &mut reader, &links, &mut meter)
                }
                CameraSource::Stream(url) => {
                    run_stream(&name, url, poll, &mut reader, &links, &mut meter)
                }
            }
            reader
        })
        .context(what)
}

/// JPEG quality of a stream's frames kept for the crossing's images.
pub const STREAM_JPEG_QUALITY: u8 = 90;

/// A stream camera's loop: the frames of `url` until the agent stops (see the module header).
fn run_stream<E: FrameEngine>(
    name: &str,
    url: &str,
    poll: Duration,
    engine: &mut E,
    links: &CameraLinks,
    meter: &mut Option<MotionMeter>,
) {
    let cfg = CaptureConfig::default();
    let source = capture::Source::Stream(url.to_owned());
    let camera = match capture::Camera::start(name, source, &cfg) {
        Ok(camera) => camera,
        Err(e) => {
            // Only a thread that cannot be started: the capture retries the stream itself.
            tracing::error!(camera = %name, error = %e, "cannot start the capture of the stream");
            return;
        }
    };
    let mut backoff = RestartBackoff::default();
    let mut since = Instant::now();
    let wait = poll.max(Duration::from_millis(100));
    while !*links.shutdown.borrow() {
        let Some(frame) = camera.next_frame(wait) else {
            continue;
        };
        if let Err(e) = engine.ready() {
            tracing::error!(camera = %name, error = %format!("{e:#}"), "frames dropped: the ANPR engine does not load");
            sleep_unless_stopped(Duration::from_secs(5), &links.shutdown);
            continue;
        }
        let read = catch_unwind(AssertUnwindSafe(|| {
            read_stream_frame(name, &frame, engine, &links.latency, meter)
        }));
        match read {
            Ok(Some(reads)) => {
                if links.out.blocking_send(reads).is_err() {
                    return; // the agent is shutting down
                }
            }
            Ok(None) => {}
            Err(panic) => {
                caught(name, engine, links, &panic_message(&*panic), None);
                if !wait_after_panic(name, &mut backoff, &mut since, &links.shutdown) {
                    return;
                }
            }
        }
    }
}

fn read_stream_frame<E: FrameEngine>(
    camera: &str,
    frame: &capture::Frame,
    engine: &mut E,
    latency: &Histogram,
    meter: &mut Option<MotionMeter>,
) -> Option<FrameReads> {
    let age = chrono::TimeDelta::from_std(frame.captured_at.elapsed()).unwrap_or_default();
    let captured_at = Utc::now() - age;
    let motion = meter.as_mut().and_then(|m| match m.measure(&frame.image) {
        Ok(fraction) => Some(fraction),
        Err(e) => {
            tracing::warn!(camera, seq = frame.seq, error = %e, "stream frame's motion not measured");
            None
        }
    });
    let started = Instant::now();
    let reads = match engine.recognise_frame(frame) {
        Ok(reads) => reads,
        Err(e) => {
            tracing::warn!(camera, seq = frame.seq, error = %format!("{e:#}"), "stream frame not read");
            return None;
        }
    };
    latency.observe(started.elapsed());
    let has_text = reads.first().is_some_and(|r| !r.text.is_empty());
    let jpeg = if has_text {
        match frame.to_jpeg(STREAM_JPEG_QUALITY) {
            Ok(jpeg) => Some(jpeg),
            Err(e) => {
                // The reads still count; the crossing will say its images are missing.
                tracing::warn!(camera, seq = frame.seq, error = %e, "cannot keep the frame for the crossing's images");
                None
            }
        }
    } else {
        None
    };
    Some(FrameReads {
        captured_at,
        reads,
        jpeg,
        motion,
    })
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
    meter: &mut Option<MotionMeter>,
) {
    let mut backoff = RestartBackoff::default();
    let mut since = Instant::now();
    while !*links.shutdown.borrow() {
        let round = catch_unwind(AssertUnwindSafe(|| {
            one_round(name, folder, poll, engine, links, meter)
        }))
        .unwrap_or_else(|panic| {
            caught(name, engine, links, &panic_message(&*panic), None);
            Round::Panicked
        });
        match round {
            Round::Next => {}
            Round::Stop => return,
            Round::Panicked => {
                if !wait_after_panic(name, &mut backoff, &mut since, &links.shutdown) {
                    return;
                }
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
    meter: &mut Option<MotionMeter>,
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
                    read_frame(name, &f, engine, &links.latency, meter)
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

/// The wait after a caught panic ([`RestartBackoff`] after a run that lasted since `since`,
/// which is then reset); false when the agent stopped meanwhile.
fn wait_after_panic(
    name: &str,
    backoff: &mut RestartBackoff,
    since: &mut Instant,
    shutdown: &watch::Receiver<bool>,
) -> bool {
    let wait = backoff.after_failure(since.elapsed());
    tracing::warn!(camera = %name, wait_ms = wait.as_millis() as u64, "the camera goes on after a wait");
    if !sleep_unless_stopped(wait, shutdown) {
        return false;
    }
    *since = Instant::now();
    true
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
    meter: &mut Option<MotionMeter>,
) -> Option<FrameReads> {
    let captured_at: DateTime<Utc> = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(DateTime::from)
        .unwrap_or_else(|_| Utc::now());
    let result = std::fs::read(path)
        .with_context(|| format!("reading {}", path.display()))
        .and_then(|bytes| {
            let motion = meter.as_mut().and_then(|m| match m.measure_encoded(&bytes) {
                Ok(fraction) => Some(fraction),
                Err(e) => {
                    tracing::warn!(camera, frame = %path.display(), error = %e, "frame's motion not measured");
                    None
                }
            });
            let started = std::time::Instant::now();
            let reads = engine.recognise(&bytes).with_context(|| format!("recognising {}", path.display()))?;
            latency.observe(started.elapsed());
            tracing::debug!(camera, frame = %path.display(), ms = started.elapsed().as_millis() as u64, reads = ?reads.first().map(|r| &r.text), motion, "frame read");
            Ok((reads, bytes, motion))
        });
    match result {
        Ok((reads, bytes, motion)) => {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(camera, frame = %path.display(), error = %e, "cannot remove a read frame");
            }
            let has_text = reads.first().is_some_and(|r| !r.text.is_empty());
            Some(FrameReads {
                captured_at,
                reads,
                jpeg: has_text.then_some(bytes),
                motion,
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

        fn recognise_frame(&mut self, _: &capture::Frame) -> Result<Vec<PlateCandidate>> {
            anyhow::bail!("this test engine reads frame files only")
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
                &mut None,
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

    /// A folder camera that frames vehicles measures each frame's motion against the one
    /// before: the empty lane is quiet, a vehicle appearing moves.
    #[test]
    fn a_folder_camera_measuring_motion_reports_it_with_each_frame() -> Result<()> {
        use bcp_sim::plate_render;
        let dir = tempfile::tempdir()?;
        let folder = dir.path().join("cam");
        std::fs::create_dir_all(&folder)?;
        std::fs::write(
            folder.join("1.jpg"),
            plate_render::render_empty_lane_frame(1)?,
        )?;
        std::fs::write(
            folder.join("2.jpg"),
            plate_render::render_empty_lane_frame(2)?,
        )?;
        std::fs::write(
            folder.join("3.jpg"),
            plate_render::render_vehicle_frame("1234 AB 01", 3)?,
        )?;
        std::fs::write(folder.join("4.jpg"), b"not a jpeg")?;
        let (out, mut frames) = mpsc::channel(8);
        let (stop, shutdown) = watch::channel(false);
        let links = CameraLinks {
            out,
            latency: Arc::new(Histogram::new(&[0.1])),
            restarts: Arc::new(AtomicU64::new(0)),
            shutdown,
        };
        let camera = std::thread::spawn(move || {
            let mut engine = TextEngine::default();
            let mut meter = Some(MotionMeter::new(MotionConfig::default())?);
            run(
                "cam1",
                &folder,
                Duration::from_millis(10),
                &mut engine,
                &links,
                &mut meter,
            );
            anyhow::Ok(())
        });
        let mut motion = Vec::new();
        while motion.len() < 4 {
            let frame = frames.blocking_recv().context("the camera ended early")?;
            motion.push(frame.motion);
        }
        stop.send(true)?;
        let Ok(ended) = camera.join() else {
            anyhow::bail!("the camera thread must not panic");
        };
        ended?;
        assert_eq!(motion[0], Some(0.0), "the first frame: {motion:?}");
        assert!(motion[1].is_some_and(|m| m < 0.01), "{motion:?}");
        assert!(motion[2].is_some_and(|m| m > 0.2), "{motion:?}");
        assert_eq!(motion[3], None, "a frame that does not decode: {motion:?}");
        Ok(())
    }

    /// A stream camera on a real video file (MJPG AVI of rendered plates, replayed at its end)
    /// with the real ANPR engine: its frames are read and the ones with a plate kept as JPEG.
    #[test]
    fn a_stream_camera_reads_the_plates_of_its_frames_and_keeps_them() -> Result<()> {
        use opencv::core::Size;
        use opencv::prelude::*;
        use opencv::videoio;

        let dir = tempfile::tempdir()?;
        let video = dir.path().join("lane.avi");
        let fourcc = videoio::VideoWriter::fourcc('M', 'J', 'P', 'G')?;
        let mut w = videoio::VideoWriter::new(&video, fourcc, 10.0, Size::new(960, 540), true)?;
        anyhow::ensure!(w.is_opened()?, "OpenCV cannot write MJPG AVI here");
        for i in 0..3 {
            w.write(&bcp_sim::plate_render::render_vehicle_mat("1234 AB 01", i)?)?;
        }
        w.release()?;

        let anpr = AnprConfig {
            paths: bcp_anpr::NativePaths::from_env(),
            ..AnprConfig::default()
        };
        let reader = LazyReader::new(anpr, false)?;
        let (out, mut frames) = mpsc::channel(8);
        let (stop, shutdown) = watch::channel(false);
        let latency = Arc::new(Histogram::new(&[0.1]));
        let links = CameraLinks {
            out,
            latency: latency.clone(),
            restarts: Arc::new(AtomicU64::new(0)),
            shutdown,
        };
        let before = Utc::now();
        let camera = spawn(
            "cam1".into(),
            CameraSource::Stream(video.to_string_lossy().into_owned()),
            Duration::from_millis(50),
            reader,
            links,
            None,
        )?;
        let frame = frames
            .blocking_recv()
            .context("the stream camera ended early")?;
        stop.send(true)?;
        drop(frames); // a blocked send ends too
        let Ok(_engine) = camera.join() else {
            anyhow::bail!("the camera thread must not panic");
        };

        let best = frame.reads.first().context("no read")?;
        assert_eq!(best.text, "1234AB01");
        assert!(frame.captured_at >= before && frame.captured_at <= Utc::now());
        let jpeg = frame.jpeg.context("a frame with a plate is kept")?;
        assert!(jpeg.starts_with(&[0xff, 0xd8]), "JPEG");
        assert!(latency.snapshot().count >= 1, "the frame was timed");
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
