//! A camera, read by the ANPR engine: one that uploads JPEG frames into a folder (FTP push), or
//! a stream the agent pulls (RTSP, HTTP MJPEG, a video file; [`CameraSource`]).
//!
//! Runs on its own OS thread, because it waits on recognition. Recognition itself (and a
//! stream's capture, and motion) runs in the camera's vision worker, a `bcp-vision` child
//! process ([`crate::vision`]): the daemon links neither OpenCV nor ONNX Runtime.
//!
//! ## A stream
//! The worker captures it with `bcp_anpr::capture::Camera`: its own grab thread, bounded open
//! and read timeouts, reconnect with backoff, and a queue of two frames that drops the oldest
//! when recognition falls behind (a 25 fps camera is read as fast as the engine can, always on
//! its newest frames). A frame's capture time is when the grab thread got it. A frame whose
//! best read has text comes back as JPEG (quality [`STREAM_JPEG_QUALITY`]) for the frame
//! cache. A stream that cannot be opened or is lost is logged by the worker and reopened; the
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
//! A camera that frames the vehicles (`[camera] presence = "motion"`) also has each frame's
//! motion measured by its worker (a `bcp_anpr_core::MotionMeter`, kept across frames): a folder's
//! frame is decoded a second time for it, grey at an eighth of its size (cheap next to
//! recognition); a stream's frame is measured as decoded. The fraction goes with the frame's
//! reads ([`FrameReads::motion`]) to the agent, which decides presence
//! ([`crate::camera_presence`]). A frame that cannot be measured is logged and goes on
//! without it; a frame that is rejected or not read reports no motion either.
//!
//! ## Supervision: a crash never ends the camera
//! The ANPR engine is native code (OpenCV, ONNX Runtime); a bug there may panic, abort or
//! crash. The worker is a process of its own, so a crash ends the worker only; a panic in the
//! agent's part of the loop is caught. Either way the thread is its own supervisor, like the
//! serial devices' (`agent::supervise`): it logs at ERROR, counts a restart of the camera
//! (`bcpctl devices` RESTARTS, `bcp_device_restarts_total`), and
//! - the frame it happened on is moved to `rejected/` with the crash as its reason, so that
//!   one bad frame cannot make the camera fail again and again;
//! - the engine is dropped (the worker killed) and started again from its files on the next
//!   frame (its state after a crash is not trusted);
//! - the thread waits [`RestartBackoff`] (1 s, doubling to 60 s while crashes follow each other
//!   within a minute) before it goes on, and stops waiting at once when the agent stops.
//!
//! A panic anywhere else in the loop (listing the folder) is handled the same way, without a
//! frame to set aside.

use crate::agent::supervise::{panic_message, RestartBackoff};
pub use crate::config::CameraSource;
use crate::metrics::Histogram;
use crate::vision::{self, VisionError, VisionWorker};
use anyhow::{Context, Result};
use bcp_anpr_core::worker::{Motion, Reply, Request};
use bcp_anpr_core::CaptureConfig;
use bcp_anpr_core::{AnprConfig, MotionConfig, PlateCandidate};
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
    /// Frames the camera had already captured when this one was handed on, waiting to be read
    /// (a folder camera whose recognition is slower than its frame rate falls behind): while
    /// some wait, the camera has not gone silent, however long each frame takes to read.
    pub frames_waiting: usize,
}

/// The ANPR engine of a camera, in its vision worker: started and loaded at start
/// (`[anpr] preload = true`) or on the first frame, and kept across camera restarts.
#[derive(Debug)]
pub struct LazyReader {
    /// What to load it with; kept to load it again after a crash.
    cfg: Box<AnprConfig>,
    /// The camera's motion settings, when it measures motion.
    motion: Option<MotionConfig>,
    /// The stream the worker captures (camera name, URL), when the camera is a stream.
    stream: Option<(String, String)>,
    worker: Option<VisionWorker>,
}

/// A frame recognised by the engine.
#[derive(Debug)]
pub(crate) struct Recognised {
    pub reads: Vec<PlateCandidate>,
    /// Recognition time.
    pub took: Duration,
    pub motion: Option<Motion>,
}

/// A stream frame from the engine.
#[derive(Debug)]
pub(crate) struct StreamFrame {
    pub seq: u64,
    /// How long ago the worker's grab thread got it.
    pub age: Duration,
    /// Its reads, or why it was not read.
    pub reads: Result<Recognised, String>,
    /// The frame as JPEG when its best read has text, or why not.
    pub jpeg: Result<Option<Vec<u8>>, String>,
}

impl LazyReader {
    /// Starts and loads the engine now when `preload`, else checks that its files are there
    /// and loads it on [`FrameEngine::ready`].
    pub fn new(cfg: AnprConfig, preload: bool) -> Result<Self> {
        let mut reader = Self {
            cfg: Box::new(cfg),
            motion: None,
            stream: None,
            worker: None,
        };
        if preload {
            reader.ready()?;
        } else {
            reader
                .cfg
                .paths
                .check()
                .context("the ANPR engine's files (run scripts/install-native?)")?;
        }
        Ok(reader)
    }

    /// Sets what the camera asks of its engine besides recognition; a loaded engine that
    /// differs is started again on the next frame.
    fn set_camera(&mut self, motion: Option<MotionConfig>, stream: Option<(String, String)>) {
        if self.motion != motion || self.stream != stream {
            self.worker = None;
        }
        self.motion = motion;
        self.stream = stream;
    }

    /// Asks the worker (started and loaded first if need be); a crashed worker is dropped.
    fn ask(
        &mut self,
        request: &Request,
        attachments: &[&[u8]],
    ) -> Result<(Reply, Vec<Vec<u8>>), VisionError> {
        self.ready()
            .map_err(|e| VisionError::Failed(format!("{e:#}")))?;
        vision::ask_in(&mut self.worker, request, attachments)
    }

    /// A reply that does not answer the request: the worker is out of step, so it goes.
    fn out_of_step(&mut self, reply: &Reply) -> VisionError {
        self.worker = None;
        VisionError::Crashed(format!("it answered out of step: {reply:?}"))
    }
}

/// A time in milliseconds from the worker.
fn millis(ms: f64) -> Duration {
    Duration::from_secs_f64(ms.max(0.0) / 1000.0)
}

/// What the camera's loop needs of its engine: be ready (or made ready) to recognise;
/// recognise one encoded frame, or the stream's next; forget its state after a crash.
/// [`LazyReader`] in the agent; the tests give the loop an engine that panics on purpose.
pub(crate) trait FrameEngine {
    /// Starts and loads the engine if it is not; an error leaves the frames where they are.
    fn ready(&mut self) -> Result<()>;
    fn recognise(&mut self, jpeg: &[u8]) -> Result<Recognised, VisionError>;
    /// The stream's next frame within `wait`, recognised.
    fn next_stream_frame(
        &mut self,
        wait: Duration,
        jpeg_quality: u8,
    ) -> Result<Option<StreamFrame>, VisionError>;
    /// Drops the engine; the next [`FrameEngine::ready`] starts it again.
    fn forget(&mut self);
}

impl FrameEngine for LazyReader {
    fn ready(&mut self) -> Result<()> {
        if self.worker.is_some() {
            return Ok(());
        }
        let role = match &self.stream {
            Some((camera, _)) => format!("camera {camera}"),
            None => "a camera".to_owned(),
        };
        let mut worker = VisionWorker::start(&role)?;
        let load = Request::Load {
            anpr: self.cfg.clone(),
            motion: self.motion,
        };
        let ms = match worker.call(&load, &[]) {
            Ok((Reply::Loaded { ms }, _)) => ms,
            Ok((other, _)) => anyhow::bail!("the vision worker answered {other:?} to a load"),
            Err(e) => {
                return Err(e).context("loading the ANPR engine (run scripts/install-native?)")
            }
        };
        tracing::info!(ms, "ANPR engine loaded");
        if let Some((camera, url)) = &self.stream {
            let open = Request::OpenStream {
                camera: camera.clone(),
                url: url.clone(),
                capture: CaptureConfig::default(),
            };
            worker
                .call(&open, &[])
                .with_context(|| format!("camera {camera}: starting the capture of the stream"))?;
        }
        self.worker = Some(worker);
        Ok(())
    }

    fn recognise(&mut self, jpeg: &[u8]) -> Result<Recognised, VisionError> {
        match self.ask(&Request::Recognise, &[jpeg])? {
            (Reply::Reads { reads, ms, motion }, _) => Ok(Recognised {
                reads,
                took: millis(ms),
                motion,
            }),
            (other, _) => Err(self.out_of_step(&other)),
        }
    }

    fn next_stream_frame(
        &mut self,
        wait: Duration,
        jpeg_quality: u8,
    ) -> Result<Option<StreamFrame>, VisionError> {
        let request = Request::NextStreamFrame {
            wait_ms: wait.as_millis() as u64,
            jpeg_quality,
        };
        match self.ask(&request, &[])? {
            (Reply::NoFrame, _) => Ok(None),
            (
                Reply::StreamFrame {
                    seq,
                    age_ms,
                    reads,
                    ms,
                    motion,
                    jpeg_error,
                },
                mut attachments,
            ) => Ok(Some(StreamFrame {
                seq,
                age: Duration::from_millis(age_ms),
                reads: reads.map(|reads| Recognised {
                    reads,
                    took: millis(ms),
                    motion,
                }),
                jpeg: match jpeg_error {
                    Some(e) => Err(e),
                    None => Ok(attachments.pop()),
                },
            })),
            (other, _) => Err(self.out_of_step(&other)),
        }
    }

    fn forget(&mut self) {
        self.worker = None;
    }
}

/// The camera thread's outputs and its stop signal.
pub(crate) struct CameraLinks {
    pub out: mpsc::Sender<FrameReads>,
    pub latency: Arc<Histogram>,
    /// Crashes caught, each one a restart of the camera.
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
    if let Some(m) = &motion {
        m.validate()
            .with_context(|| format!("camera {name}: motion settings"))?;
    }
    let stream = match &source {
        CameraSource::Stream(url) => Some((name.clone(), url.clone())),
        CameraSource::Folder(_) => None,
    };
    reader.set_camera(motion, stream);
    let thread_name = format!("camera-{name}");
    let what = format!("camera {name}: starting its thread");
    std::thread::Builder::new()
        .name(thread_name)
        .spawn(move || {
            match &source {
                CameraSource::Folder(folder) => run(&name, folder, poll, &mut reader, &links),
                CameraSource::Stream(_) => run_stream(&name, poll, &mut reader, &links),
            }
            reader
        })
        .context(what)
}

/// JPEG quality of a stream's frames kept for the crossing's images.
pub const STREAM_JPEG_QUALITY: u8 = 90;

/// What reading one frame came to.
enum FrameOutcome {
    /// Its reads, for the lane.
    Read(FrameReads),
    /// Nothing for the lane (no frame yet, or one that was not read: logged).
    Nothing,
    /// The engine crashed on it (the reason); handled as a panic.
    Crashed(String),
}

/// A stream camera's loop: the frames of its stream until the agent stops (see the module
/// header).
fn run_stream<E: FrameEngine>(name: &str, poll: Duration, engine: &mut E, links: &CameraLinks) {
    let mut backoff = RestartBackoff::default();
    let mut since = Instant::now();
    let wait = poll.max(Duration::from_millis(100));
    while !*links.shutdown.borrow() {
        if let Err(e) = engine.ready() {
            tracing::error!(camera = %name, error = %format!("{e:#}"), "frames dropped: the ANPR engine or the stream's capture does not start");
            sleep_unless_stopped(Duration::from_secs(5), &links.shutdown);
            continue;
        }
        let read = catch_unwind(AssertUnwindSafe(|| {
            read_stream_frame(name, wait, engine, &links.latency)
        }));
        let crash = match read {
            Ok(FrameOutcome::Read(reads)) => {
                if links.out.blocking_send(reads).is_err() {
                    return; // the agent is shutting down
                }
                continue;
            }
            Ok(FrameOutcome::Nothing) => continue,
            Ok(FrameOutcome::Crashed(reason)) => {
                format!("the camera's vision worker crashed: {reason}")
            }
            Err(panic) => format!("the ANPR engine panicked: {}", panic_message(&*panic)),
        };
        caught(name, engine, links, &crash, None);
        if !wait_after_panic(name, &mut backoff, &mut since, &links.shutdown) {
            return;
        }
    }
}

fn read_stream_frame<E: FrameEngine>(
    camera: &str,
    wait: Duration,
    engine: &mut E,
    latency: &Histogram,
) -> FrameOutcome {
    let frame = match engine.next_stream_frame(wait, STREAM_JPEG_QUALITY) {
        Ok(Some(frame)) => frame,
        Ok(None) => return FrameOutcome::Nothing,
        Err(VisionError::Crashed(reason)) => return FrameOutcome::Crashed(reason),
        Err(VisionError::Failed(e)) => {
            tracing::warn!(camera, error = %e, "no stream frame");
            std::thread::sleep(wait);
            return FrameOutcome::Nothing;
        }
    };
    let age = chrono::TimeDelta::from_std(frame.age).unwrap_or_default();
    let captured_at = Utc::now() - age;
    let read = match frame.reads {
        Ok(read) => read,
        Err(e) => {
            tracing::warn!(camera, seq = frame.seq, error = %e, "stream frame not read");
            return FrameOutcome::Nothing;
        }
    };
    latency.observe(read.took);
    let motion = motion_fraction(camera, read.motion, || {
        format!("stream frame {}", frame.seq)
    });
    let jpeg = frame.jpeg.unwrap_or_else(|e| {
        // The reads still count; the crossing will say its images are missing.
        tracing::warn!(camera, seq = frame.seq, error = %e, "cannot keep the frame for the crossing's images");
        None
    });
    FrameOutcome::Read(FrameReads {
        captured_at,
        reads: read.reads,
        jpeg,
        motion,
        // A stream's grab thread keeps only its newest frames: none wait behind this one.
        frames_waiting: 0,
    })
}

/// The fraction of a measured motion; one that was not measured is logged (`frame` names it).
fn motion_fraction(
    camera: &str,
    motion: Option<Motion>,
    frame: impl FnOnce() -> String,
) -> Option<f64> {
    match motion? {
        Motion::Fraction(fraction) => Some(fraction),
        Motion::NotMeasured(e) => {
            tracing::warn!(camera, frame = %frame(), error = %e, "frame's motion not measured");
            None
        }
    }
}

/// What one round of the loop asks next.
enum Round {
    /// Go on with the next round.
    Next,
    /// The agent is stopping.
    Stop,
    /// A crash was caught (and handled); wait before going on.
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
            let reason = format!("the ANPR engine panicked: {}", panic_message(&*panic));
            caught(name, engine, links, &reason, None);
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
            let listed = frames.len();
            for (i, f) in frames.into_iter().enumerate() {
                if *links.shutdown.borrow() {
                    return Round::Stop;
                }
                let read = catch_unwind(AssertUnwindSafe(|| {
                    read_frame(name, &f, engine, &links.latency)
                }));
                let crash = match read {
                    Ok(FrameOutcome::Read(mut reads)) => {
                        reads.frames_waiting = match listed - 1 - i {
                            // The last one listed: those that came meanwhile.
                            0 => next_frames(folder).map_or(0, |f| f.len()),
                            n => n,
                        };
                        if links.out.blocking_send(reads).is_err() {
                            return Round::Stop; // the agent is shutting down
                        }
                        continue;
                    }
                    Ok(FrameOutcome::Nothing) => continue,
                    Ok(FrameOutcome::Crashed(reason)) => {
                        format!("the camera's vision worker crashed on this frame: {reason}")
                    }
                    Err(panic) => format!(
                        "the ANPR engine panicked on this frame: {}",
                        panic_message(&*panic)
                    ),
                };
                caught(name, engine, links, &crash, Some(&f));
                return Round::Panicked;
            }
        }
        Err(e) => {
            tracing::warn!(camera = %name, error = %format!("{e:#}"), "cannot list the frame folder");
            std::thread::sleep(poll.max(Duration::from_secs(1)));
        }
    }
    Round::Next
}

/// After a crash or a caught panic (`reason`): log it, count the restart, set the frame aside,
/// drop the engine.
fn caught<E: FrameEngine>(
    name: &str,
    engine: &mut E,
    links: &CameraLinks,
    reason: &str,
    frame: Option<&Path>,
) {
    links.restarts.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        camera = %name,
        frame = ?frame.map(Path::display).map(|d| d.to_string()),
        reason,
        "the camera's ANPR engine failed; the frame is set aside and the engine started again"
    );
    if let Some(frame) = frame {
        if frame.exists() {
            reject(frame, reason);
        }
    }
    engine.forget();
}

/// The wait after a caught crash ([`RestartBackoff`] after a run that lasted since `since`,
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
) -> FrameOutcome {
    let captured_at: DateTime<Utc> = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(DateTime::from)
        .unwrap_or_else(|_| Utc::now());
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            let reason = format!("reading {}: {e}", path.display());
            tracing::warn!(camera, frame = %path.display(), error = %reason, "frame rejected");
            reject(path, &reason);
            return FrameOutcome::Nothing;
        }
    };
    let read = match engine.recognise(&bytes) {
        Ok(read) => read,
        Err(VisionError::Crashed(reason)) => return FrameOutcome::Crashed(reason),
        Err(VisionError::Failed(e)) => {
            let reason = format!("recognising {}: {e}", path.display());
            tracing::warn!(camera, frame = %path.display(), error = %reason, "frame rejected");
            reject(path, &reason);
            return FrameOutcome::Nothing;
        }
    };
    latency.observe(read.took);
    let motion = motion_fraction(camera, read.motion, || path.display().to_string());
    tracing::debug!(camera, frame = %path.display(), ms = read.took.as_millis() as u64, reads = ?read.reads.first().map(|r| &r.text), motion, "frame read");
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(camera, frame = %path.display(), error = %e, "cannot remove a read frame");
    }
    let has_text = read.reads.first().is_some_and(|r| !r.text.is_empty());
    FrameOutcome::Read(FrameReads {
        captured_at,
        reads: read.reads,
        jpeg: has_text.then_some(bytes),
        motion,
        frames_waiting: 0,
    })
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

        fn recognise(&mut self, jpeg: &[u8]) -> Result<Recognised, VisionError> {
            self.ready()
                .map_err(|e| VisionError::Failed(e.to_string()))?;
            let text = String::from_utf8_lossy(jpeg).into_owned();
            match text.as_str() {
                "PANIC" => panic!("index out of bounds in a native binding"),
                "CRASH" => {
                    self.loaded = false;
                    return Err(VisionError::Crashed("killed by signal 11".into()));
                }
                "GARBLED" => return Err(VisionError::Failed("not a JPEG".into())),
                _ => {}
            }
            Ok(Recognised {
                reads: vec![PlateCandidate {
                    char_confidences: vec![0.9; text.len()],
                    text,
                    confidence: 0.9,
                    bbox: [0, 0, 10, 10],
                    format: None,
                }],
                took: Duration::from_millis(1),
                motion: None,
            })
        }

        fn next_stream_frame(
            &mut self,
            _: Duration,
            _: u8,
        ) -> Result<Option<StreamFrame>, VisionError> {
            Err(VisionError::Failed(
                "this test engine reads frame files only".into(),
            ))
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
            ("4.jpg", "CRASH"),
            ("5.jpg", "GARBLED"),
            ("6.jpg", "9012EF03"),
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
        while read.len() < 3 {
            let frame = frames.blocking_recv().context("the camera ended early")?;
            read.push(frame.reads[0].text.clone());
        }
        stop.send(true)?;
        let Ok(engine) = camera.join() else {
            anyhow::bail!("the camera thread must not panic");
        };

        assert_eq!(
            read,
            ["1234AB01", "5678CD02", "9012EF03"],
            "the frames around the panic and the crash are read"
        );
        assert_eq!(
            restarts.load(Ordering::Relaxed),
            2,
            "a restart counted for the panic and one for the crash, none for a garbled frame"
        );
        assert_eq!(
            engine.loads, 3,
            "the engine was loaded again after the panic and after the crash"
        );
        let rejected = dir.path().join("cam").join("rejected");
        for (frame, why) in [
            ("2", ["panicked", "native binding"]),
            ("4", ["crashed", "signal 11"]),
            ("5", ["recognising", "not a JPEG"]),
        ] {
            assert!(
                rejected.join(format!("{frame}.jpg")).exists(),
                "frame {frame} is set aside"
            );
            let reason = std::fs::read_to_string(rejected.join(format!("{frame}.reason")))?;
            assert!(why.iter().all(|w| reason.contains(w)), "{reason}");
            assert!(!dir.path().join("cam").join(format!("{frame}.jpg")).exists());
        }
        Ok(())
    }

    /// The real engine in its vision worker, as the agent loads it.
    fn real_engine() -> Result<LazyReader> {
        let anpr = AnprConfig {
            paths: bcp_anpr_core::NativePaths::from_env(),
            ..AnprConfig::default()
        };
        LazyReader::new(anpr, false)
    }

    /// A folder camera that frames vehicles has each frame's motion measured against the one
    /// before by its vision worker: the empty lane is quiet, a vehicle appearing moves, a
    /// frame that does not decode is set aside.
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
        std::fs::write(
            folder.join("5.jpg"),
            plate_render::render_vehicle_frame("1234 AB 01", 3)?,
        )?;
        let (out, mut frames) = mpsc::channel(8);
        let (stop, shutdown) = watch::channel(false);
        let links = CameraLinks {
            out,
            latency: Arc::new(Histogram::new(&[0.1])),
            restarts: Arc::new(AtomicU64::new(0)),
            shutdown,
        };
        let camera = spawn(
            "cam1".into(),
            CameraSource::Folder(folder.clone()),
            Duration::from_millis(10),
            real_engine()?,
            links,
            Some(MotionConfig::default()),
        )?;
        let mut motion = Vec::new();
        let mut texts = Vec::new();
        while motion.len() < 4 {
            let frame = frames.blocking_recv().context("the camera ended early")?;
            motion.push(frame.motion);
            texts.push(frame.reads.first().map(|r| r.text.clone()));
        }
        stop.send(true)?;
        drop(frames);
        if camera.join().is_err() {
            anyhow::bail!("the camera thread must not panic");
        }
        assert_eq!(motion[0], Some(0.0), "the first frame: {motion:?}");
        assert!(motion[1].is_some_and(|m| m < 0.01), "{motion:?}");
        assert!(motion[2].is_some_and(|m| m > 0.2), "{motion:?}");
        assert_eq!(motion[3], Some(0.0), "the same vehicle again: {motion:?}");
        assert_eq!(texts[2].as_deref(), Some("1234AB01"), "{texts:?}");
        let reason = std::fs::read_to_string(folder.join("rejected").join("4.reason"))?;
        assert!(reason.contains("recognising"), "{reason}");
        Ok(())
    }

    /// A worker that dies under the camera (killed, as a crash in native code would end it) is
    /// a crash of the engine: the next frame gets a new worker.
    #[test]
    fn a_killed_vision_worker_is_a_crash_and_the_next_frame_gets_a_new_one() -> Result<()> {
        let mut engine = real_engine()?;
        engine.ready()?;
        let frame = bcp_sim::plate_render::render_vehicle_frame("1234 AB 01", 1)?;
        let read = engine.recognise(&frame)?;
        assert_eq!(
            read.reads.first().map(|r| r.text.as_str()),
            Some("1234AB01")
        );
        let pid = engine
            .worker
            .as_ref()
            .map(VisionWorker::pid)
            .context("a worker")?;
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?;
        anyhow::ensure!(killed.success(), "kill -KILL {pid}: {killed}");
        match engine.recognise(&frame) {
            Err(VisionError::Crashed(reason)) => {
                assert!(reason.contains("signal 9"), "{reason}")
            }
            other => anyhow::bail!("a crash expected, got {other:?}"),
        }
        assert!(engine.worker.is_none(), "the dead worker is dropped");
        let read = engine.recognise(&frame)?;
        assert_eq!(
            read.reads.first().map(|r| r.text.as_str()),
            Some("1234AB01")
        );
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

        let reader = real_engine()?;
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
