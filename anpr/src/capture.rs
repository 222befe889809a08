//! Camera capture: a grab thread per camera, a small bounded queue that drops the oldest frame,
//! open/read timeouts, reconnect with backoff, per-camera health.
//!
//! Sources ([`Source::parse`]):
//! - a folder: image files (`jpg`, `jpeg`, `png`, `bmp`) delivered once each in name order as they
//!   appear (the drop folder of a camera that uploads snapshots); a file that does not decode is
//!   a read error, counted, and skipped;
//! - anything else: OpenCV `VideoCapture` through FFmpeg: `rtsp://` and `http://` (MJPEG) URLs,
//!   video files (the FFmpeg backend only: GStreamer needs plugins and hangs ~20 s on a refused
//!   stream). `CAP_PROP_OPEN_TIMEOUT_MSEC` / `CAP_PROP_READ_TIMEOUT_MSEC` bound each open and
//!   read (without them a camera that refuses the stream takes ~20 s to fail). End of stream or a
//!   failed read closes the capture and reopens it: a video file replays, a camera reconnects.
//!   HTTP MJPEG needs no hint in the URL: FFmpeg's `http` protocol hands the response's
//!   `Content-Type: multipart/x-mixed-replace; boundary=..` to the `mpjpeg` demuxer (tested
//!   against a loopback server in `tests/capture.rs`). RTSP is tested the same way: a loopback
//!   RTSP server streaming an MPEG transport stream as RTP interleaved on the RTSP connection,
//!   refusing UDP so that FFmpeg falls back to TCP, as it must behind NAT. A camera that goes away ends the stream
//!   (FFmpeg logs "Stream ends prematurely"); the reopen attempts then fail as open errors
//!   until it is back.
//!
//! The grab thread never blocks on the consumer: [`FrameQueue::push`] drops the oldest frame
//! when the queue is full (counted in [`CameraHealth::dropped`]), so the reader always gets the
//! newest frames and a slow reader costs frames, not memory or latency. When a source cannot be
//! opened the thread waits `reconnect_min_ms`, doubling up to `reconnect_max_ms`, and resets the
//! wait after a frame arrives. Waits are sliced so that [`Camera`]'s `Drop` stops the thread
//! within ~20 ms (plus one bounded open or read).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opencv::core::{Mat, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, videoio};
use serde::Serialize;

use crate::error::AnprError;

pub use bcp_anpr_core::settings::CaptureConfig;

/// Where frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A folder of image files.
    Folder(PathBuf),
    /// A URL or a video file, opened with `VideoCapture`.
    Stream(String),
}

impl Source {
    /// An existing directory is a folder source, anything else a stream.
    pub fn parse(s: &str) -> Self {
        if Path::new(s).is_dir() {
            Self::Folder(PathBuf::from(s))
        } else {
            Self::Stream(s.to_owned())
        }
    }
}

/// A bounded queue that drops its oldest item when full; closed queues hand out what is left.
#[derive(Debug)]
pub struct FrameQueue<T> {
    state: Mutex<QueueState<T>>,
    ready: Condvar,
    capacity: usize,
}

#[derive(Debug)]
struct QueueState<T> {
    items: VecDeque<T>,
    closed: bool,
}

impl<T> FrameQueue<T> {
    /// A queue of at most `capacity` (at least 1) items.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(QueueState {
                items: VecDeque::with_capacity(capacity.max(1)),
                closed: false,
            }),
            ready: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState<T>> {
        // A poisoned lock only means a thread panicked while holding it; the queue is still valid.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an item; returns whether the oldest one was dropped to make room.
    pub fn push(&self, item: T) -> bool {
        let mut s = self.lock();
        let dropped = s.items.len() >= self.capacity;
        if dropped {
            s.items.pop_front();
        }
        s.items.push_back(item);
        drop(s);
        self.ready.notify_one();
        dropped
    }

    /// The oldest item, waiting up to `timeout` for one; `None` on timeout or when closed and empty.
    pub fn pop_timeout(&self, timeout: Duration) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            if let Some(item) = s.items.pop_front() {
                return Some(item);
            }
            let now = Instant::now();
            if s.closed || now >= deadline {
                return None;
            }
            s = self
                .ready
                .wait_timeout(s, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Wakes every waiter; later pops return what is left, then `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

/// One captured frame.
#[derive(Debug)]
pub struct Frame {
    /// The image, BGR 8-bit.
    pub image: Mat,
    /// 1-based number of the frame since the camera started.
    pub seq: u64,
    /// When the grab thread got it.
    pub captured_at: Instant,
}

impl Frame {
    /// The frame as JPEG at `quality` (1..=100), for a store that keeps encoded frames.
    pub fn to_jpeg(&self, quality: u8) -> Result<Vec<u8>, AnprError> {
        let mut buf = Vector::<u8>::new();
        let params = Vector::<i32>::from_slice(&[
            imgcodecs::IMWRITE_JPEG_QUALITY,
            i32::from(quality.clamp(1, 100)),
        ]);
        let encoded =
            imgcodecs::imencode(".jpg", &self.image, &mut buf, &params).map_err(|source| {
                AnprError::OpenCv {
                    context: "encoding a frame as JPEG",
                    source,
                }
            })?;
        if !encoded {
            return Err(AnprError::UnsupportedFrame(
                "OpenCV refused to encode the frame as JPEG".to_owned(),
            ));
        }
        Ok(buf.to_vec())
    }

    /// Writes the frame as an image file; the format follows the extension (`.jpg`, `.png`, ..).
    pub fn save(&self, path: &Path) -> Result<(), AnprError> {
        let written = imgcodecs::imwrite(path, &self.image, &Vector::new()).map_err(|source| {
            AnprError::OpenCv {
                context: "writing a frame",
                source,
            }
        })?;
        if written {
            Ok(())
        } else {
            Err(AnprError::UnsupportedFrame(format!(
                "OpenCV cannot write {} (unknown extension?)",
                path.display()
            )))
        }
    }
}

/// Counters and state of one camera (counters only grow).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CameraHealth {
    /// Whether the source is open now.
    pub connected: bool,
    /// Frames captured.
    pub frames: u64,
    /// Frames dropped because the reader was behind.
    pub dropped: u64,
    /// Failed opens, failed reads, undecodable files.
    pub errors: u64,
    /// Times the source was opened again after having been open (counted when it reopens).
    pub reconnects: u64,
    /// The last error, for the technician.
    pub last_error: Option<String>,
}

/// A running camera: its grab thread, queue and health. Dropping it stops the thread.
#[derive(Debug)]
pub struct Camera {
    name: String,
    queue: Arc<FrameQueue<Frame>>,
    health: Arc<Mutex<CameraHealth>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Camera {
    /// Starts the grab thread for `source`.
    pub fn start(name: &str, source: Source, cfg: &CaptureConfig) -> Result<Self, AnprError> {
        cfg.validate()?;
        let queue = Arc::new(FrameQueue::new(cfg.queue_frames));
        let health = Arc::new(Mutex::new(CameraHealth::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let grabber = Grabber {
            name: name.to_owned(),
            source,
            cfg: cfg.clone(),
            queue: Arc::clone(&queue),
            health: Arc::clone(&health),
            stop: Arc::clone(&stop),
            seq: 0,
            was_open: false,
        };
        let thread = std::thread::Builder::new()
            .name(format!("camera-{name}"))
            .spawn(move || grabber.run())
            .map_err(|e| AnprError::UnsupportedFrame(format!("cannot start camera thread: {e}")))?;
        Ok(Self {
            name: name.to_owned(),
            queue,
            health,
            stop,
            thread: Some(thread),
        })
    }

    /// The camera's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The oldest queued frame, waiting up to `timeout`.
    pub fn next_frame(&self, timeout: Duration) -> Option<Frame> {
        self.queue.pop_timeout(timeout)
    }

    /// A snapshot of the camera's health.
    pub fn health(&self) -> CameraHealth {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.queue.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The grab thread's state.
struct Grabber {
    name: String,
    source: Source,
    cfg: CaptureConfig,
    queue: Arc<FrameQueue<Frame>>,
    health: Arc<Mutex<CameraHealth>>,
    stop: Arc<AtomicBool>,
    seq: u64,
    /// Whether the source has been open before (its next opening is a reconnect).
    was_open: bool,
}

impl Grabber {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn update(&self, f: impl FnOnce(&mut CameraHealth)) {
        f(&mut self.health.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn error(&self, e: String) {
        tracing::warn!(camera = %self.name, error = %e, "camera error");
        self.update(|h| {
            h.errors += 1;
            h.last_error = Some(e);
        });
    }

    fn deliver(&mut self, image: Mat) {
        self.seq += 1;
        let dropped = self.queue.push(Frame {
            image,
            seq: self.seq,
            captured_at: Instant::now(),
        });
        self.update(|h| {
            h.frames += 1;
            h.dropped += u64::from(dropped);
        });
    }

    /// Sleeps up to `ms` in short slices; returns false when asked to stop.
    fn sleep(&self, ms: u64) -> bool {
        let until = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < until {
            if self.stopped() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
        }
        !self.stopped()
    }

    fn run(mut self) {
        let mut backoff = self.cfg.reconnect_min_ms;
        while !self.stopped() {
            let opened = match self.source.clone() {
                Source::Folder(dir) => self.run_folder(&dir),
                Source::Stream(url) => self.run_stream(&url),
            };
            self.update(|h| h.connected = false);
            match opened {
                Ok(true) => backoff = self.cfg.reconnect_min_ms,
                Ok(false) => {}
                Err(e) => self.error(e),
            }
            if !self.sleep(backoff) {
                break;
            }
            backoff = (backoff * 2).min(self.cfg.reconnect_max_ms);
        }
    }

    /// Marks the source open; counts a reconnect when it had been open before.
    fn opened(&mut self) {
        let again = std::mem::replace(&mut self.was_open, true);
        self.update(|h| {
            h.connected = true;
            h.reconnects += u64::from(again);
        });
    }

    /// Reads a stream until it ends or fails; `Err` if it did not open, else whether it gave frames.
    fn run_stream(&mut self, url: &str) -> Result<bool, String> {
        let params = Vector::<i32>::from_slice(&[
            videoio::CAP_PROP_OPEN_TIMEOUT_MSEC,
            self.cfg.open_timeout_ms as i32,
            videoio::CAP_PROP_READ_TIMEOUT_MSEC,
            self.cfg.read_timeout_ms as i32,
        ]);
        let mut cap =
            videoio::VideoCapture::from_file_with_params(url, videoio::CAP_FFMPEG, &params)
                .map_err(|e| format!("opening {url}: {e}"))?;
        if !cap.is_opened().unwrap_or(false) {
            return Err(format!("cannot open {url}"));
        }
        self.opened();
        tracing::info!(camera = %self.name, source = url, "camera open");
        let mut got = false;
        while !self.stopped() {
            let mut image = Mat::default();
            match cap.read(&mut image) {
                Ok(true) if !image.empty() => {
                    got = true;
                    self.deliver(image);
                }
                Ok(_) => break, // end of stream
                Err(e) => {
                    self.error(format!("reading {url}: {e}"));
                    break;
                }
            }
        }
        let _ = cap.release();
        Ok(got)
    }

    /// Delivers new files of a folder until it disappears; `Err` if it cannot be listed at first.
    fn run_folder(&mut self, dir: &Path) -> Result<bool, String> {
        let mut last: Option<PathBuf> = None;
        let mut got = false;
        let mut first = true;
        while !self.stopped() {
            let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
                Ok(entries) => entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| is_image_file(p))
                    .filter(|p| last.as_ref().is_none_or(|l| p > l))
                    .collect(),
                Err(e) if first => return Err(format!("listing {}: {e}", dir.display())),
                Err(e) => {
                    self.error(format!("listing {}: {e}", dir.display()));
                    return Ok(got);
                }
            };
            if first {
                self.opened();
                first = false;
            }
            files.sort();
            for path in files {
                if self.stopped() {
                    break;
                }
                let image = imgcodecs::imread(&path, imgcodecs::IMREAD_COLOR);
                match image {
                    Ok(m) if !m.empty() => {
                        got = true;
                        self.deliver(m);
                    }
                    Ok(_) => self.error(format!("{}: not a decodable image", path.display())),
                    Err(e) => self.error(format!("{}: {e}", path.display())),
                }
                last = Some(path);
            }
            if !self.sleep(self.cfg.folder_poll_ms) {
                break;
            }
        }
        Ok(got)
    }
}

fn is_image_file(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        matches!(
            e.to_ascii_lowercase().as_str(),
            "jpg" | "jpeg" | "png" | "bmp"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_the_oldest() {
        let q = FrameQueue::new(2);
        assert!(!q.push(1));
        assert!(!q.push(2));
        assert!(q.push(3), "the oldest made room");
        assert_eq!(q.pop_timeout(Duration::ZERO), Some(2));
        assert_eq!(q.pop_timeout(Duration::ZERO), Some(3));
        let started = Instant::now();
        assert_eq!(q.pop_timeout(Duration::from_millis(30)), None);
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn a_closed_queue_hands_out_what_is_left_then_none() {
        let q = Arc::new(FrameQueue::new(4));
        q.push("a");
        q.close();
        assert_eq!(q.pop_timeout(Duration::from_secs(5)), Some("a"));
        let started = Instant::now();
        assert_eq!(q.pop_timeout(Duration::from_secs(5)), None);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "close does not wait"
        );
    }

    #[test]
    fn sources_and_config() {
        let dir = std::env::temp_dir();
        assert_eq!(
            Source::parse(&dir.to_string_lossy()),
            Source::Folder(dir.clone())
        );
        assert_eq!(
            Source::parse("rtsp://10.0.0.5/stream1"),
            Source::Stream("rtsp://10.0.0.5/stream1".into())
        );
        let mut cfg = CaptureConfig::default();
        assert!(cfg.validate().is_ok());
        cfg.queue_frames = 0;
        let err = cfg.validate().map_err(|e| e.to_string());
        assert!(
            matches!(err, Err(ref m) if m.contains("queue_frames")),
            "{err:?}"
        );
        assert!(is_image_file(Path::new("a/B.JPG")));
        assert!(!is_image_file(Path::new("a/b.txt")));
    }
}
