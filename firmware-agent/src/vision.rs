//! The agent's side of the vision worker (`bcp_anpr_core::worker`): a `bcp-vision` child process
//! that does what needs OpenCV and ONNX Runtime (recognition, motion, stream capture, the
//! crossings' images), so that the daemon itself links neither.
//!
//! A [`VisionWorker`] is one child, asked one request at a time (blocking: a camera's thread
//! or tokio's blocking pool calls it). A request the worker could not carry out (a frame that
//! does not decode) is [`VisionError::Failed`] and the worker goes on; a worker that died,
//! panicked or stopped answering in order is [`VisionError::Crashed`]: it is gone, and its
//! owner starts another when it needs one (the camera counts that as a restart). A worker that
//! does not answer in time ([`reply_within`]: a hang in native code) is killed by its
//! watchdog thread and is a crash too. The child is killed and reaped when the `VisionWorker`
//! is dropped, and it exits by itself when the agent dies (its stdin ends).
//!
//! The binary is `bcp-vision` beside the running executable (`/usr/bin` in the package,
//! `target/<profile>` in a build; from a test binary in `target/<profile>/deps`, the
//! directory above), or the path in `BCP_VISION`.

use std::io::{BufReader, BufWriter};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use bcp_anpr_core::worker::{read_message, write_message, Reply, Request};

/// A call to the worker that did not give what was asked.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    /// The worker could not carry out the request; it goes on.
    #[error("{0}")]
    Failed(String),
    /// The worker is gone (died, panicked, a broken pipe); start another.
    #[error("the vision worker crashed: {0}")]
    Crashed(String),
}

/// glibc's malloc settings for a worker (unless `GLIBC_TUNABLES` is set for the agent).
pub const WORKER_MALLOC_TUNABLES: &str = "glibc.malloc.mmap_threshold=131072";

/// A running `bcp-vision` child.
#[derive(Debug)]
pub struct VisionWorker {
    child: Arc<Mutex<Child>>,
    input: BufWriter<ChildStdin>,
    output: BufReader<ChildStdout>,
    watchdog: Arc<Watchdog>,
}

/// What the watchdog thread and the caller share: when the reply in flight is due, whether the
/// watchdog killed the child for being late, and whether to stop watching.
#[derive(Debug, Default)]
struct Watchdog {
    due: Mutex<Option<(Instant, Duration)>>,
    killed: AtomicBool,
    stop: AtomicBool,
}

/// How long a worker may take to answer `request` before it is killed as hung: loading the
/// models from a slow disk, a stream frame (after its wait), a frame, a large scan image.
pub fn reply_within(request: &Request) -> Duration {
    match request {
        Request::Load { .. } | Request::OpenStream { .. } => Duration::from_secs(120),
        Request::NextStreamFrame { wait_ms, .. } => {
            Duration::from_millis(*wait_ms).saturating_add(Duration::from_secs(30))
        }
        Request::Recognise => Duration::from_secs(30),
        Request::PlateImages { .. } | Request::Thumbnail { .. } => Duration::from_secs(60),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these left nothing half-done (a child handle, a deadline).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where the worker's binary is (see the module header).
pub fn worker_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BCP_VISION") {
        return PathBuf::from(path);
    }
    let Ok(exe) = std::env::current_exe() else {
        return PathBuf::from("bcp-vision");
    };
    let Some(dir) = exe.parent() else {
        return PathBuf::from("bcp-vision");
    };
    let beside = dir.join("bcp-vision");
    match dir.parent() {
        Some(up) if !beside.exists() && dir.ends_with("deps") => up.join("bcp-vision"),
        _ => beside,
    }
}

impl VisionWorker {
    /// Starts a worker; `role` names it in the logs (`camera L1-front`, `images`).
    pub fn start(role: &str) -> Result<Self> {
        Self::start_binary(&worker_binary(), role)
    }

    /// [`VisionWorker::start`] with the worker binary at `binary`.
    pub fn start_binary(binary: &Path, role: &str) -> Result<Self> {
        let mut command = Command::new(binary);
        if std::env::var_os("GLIBC_TUNABLES").is_none() {
            // Large buffers (frames, tensors) straight from mmap and back to the system when
            // freed, instead of a heap that keeps its high-water mark: the worker's peak RSS
            // over the dev photos 301 -> 292 MiB (BENCHMARKS.md).
            command.env("GLIBC_TUNABLES", WORKER_MALLOC_TUNABLES);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!(
                    "starting the vision worker {} for {role} (set BCP_VISION to its path?)",
                    binary.display()
                )
            })?;
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("the vision worker for {role} has no pipes");
        };
        tracing::debug!(role, pid = child.id(), "vision worker started");
        let child = Arc::new(Mutex::new(child));
        let watchdog = Arc::new(Watchdog::default());
        let (watched, dog) = (child.clone(), watchdog.clone());
        std::thread::Builder::new()
            .name(format!("vision-watchdog-{role}"))
            .spawn(move || watch(&watched, &dog))
            .context("starting the vision worker's watchdog")?;
        Ok(Self {
            child,
            input: BufWriter::new(input),
            output: BufReader::new(output),
            watchdog,
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        lock(&self.child).id()
    }

    /// Asks one request and waits for its reply and attachments, at most
    /// [`reply_within`]`(request)`.
    pub fn call(
        &mut self,
        request: &Request,
        attachments: &[&[u8]],
    ) -> Result<(Reply, Vec<Vec<u8>>), VisionError> {
        self.call_within(request, attachments, reply_within(request))
    }

    /// [`VisionWorker::call`] with the time the reply may take.
    pub fn call_within(
        &mut self,
        request: &Request,
        attachments: &[&[u8]],
        within: Duration,
    ) -> Result<(Reply, Vec<Vec<u8>>), VisionError> {
        *lock(&self.watchdog.due) = Some((Instant::now() + within, within));
        let answered = self.exchange(request, attachments);
        *lock(&self.watchdog.due) = None;
        answered
    }

    fn exchange(
        &mut self,
        request: &Request,
        attachments: &[&[u8]],
    ) -> Result<(Reply, Vec<Vec<u8>>), VisionError> {
        if let Err(e) = write_message(&mut self.input, request, attachments) {
            return Err(VisionError::Crashed(self.gone(&format!("sending: {e}"))));
        }
        match read_message::<_, Reply>(&mut self.output) {
            Ok(Some((Reply::Failed { error }, _))) => Err(VisionError::Failed(error)),
            Ok(Some((Reply::Panicked { message }, _))) => Err(VisionError::Crashed(
                self.gone(&format!("it panicked: {message}")),
            )),
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => Err(VisionError::Crashed(self.gone("it closed its output"))),
            Err(e) => Err(VisionError::Crashed(
                self.gone(&format!("reading its reply: {e}")),
            )),
        }
    }

    /// Why the worker is gone: `what` happened, and how it exited (waited for; it is killed
    /// first if it is still running).
    fn gone(&mut self, what: &str) -> String {
        let late = match *lock(&self.watchdog.due) {
            Some((_, within)) if self.watchdog.killed.load(Ordering::Relaxed) => {
                format!(
                    "no reply within {:.1} s, killed as hung; ",
                    within.as_secs_f64()
                )
            }
            _ => String::new(),
        };
        let what = format!("{late}{what}");
        let mut child = lock(&self.child);
        if !matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
        }
        match child.wait() {
            Ok(status) => match (status.code(), status.signal()) {
                (Some(code), _) => format!("{what} (exit status {code})"),
                (None, Some(signal)) => format!("{what} (killed by signal {signal})"),
                (None, None) => format!("{what} ({status})"),
            },
            Err(e) => format!("{what} (its exit status is unknown: {e})"),
        }
    }
}

/// Asks the worker in `slot` one request; a worker that crashed is taken out of the slot, so
/// that its owner starts another for the next request.
pub fn ask_in(
    slot: &mut Option<VisionWorker>,
    request: &Request,
    attachments: &[&[u8]],
) -> Result<(Reply, Vec<Vec<u8>>), VisionError> {
    let worker = slot
        .as_mut()
        .ok_or_else(|| VisionError::Failed("the vision worker is not running".into()))?;
    let answered = worker.call(request, attachments);
    if matches!(answered, Err(VisionError::Crashed(_))) {
        *slot = None;
    }
    answered
}

impl Drop for VisionWorker {
    fn drop(&mut self) {
        self.watchdog.stop.store(true, Ordering::Relaxed);
        let mut child = lock(&self.child);
        if !matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

/// The watchdog's loop: kills the child when a reply is overdue; ends when the worker is
/// dropped (or the child is gone).
fn watch(child: &Mutex<Child>, dog: &Watchdog) {
    while !dog.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let overdue = matches!(*lock(&dog.due), Some((due, _)) if Instant::now() > due);
        if overdue {
            dog.killed.store(true, Ordering::Relaxed);
            let _ = lock(child).kill();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// A worker that never answers (a hang in native code, played by `sleep`) is killed when
    /// its reply is overdue, and the call says so.
    #[test]
    fn a_worker_that_does_not_answer_is_killed_as_hung() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let hung = dir.path().join("hung-vision");
        std::fs::write(&hung, "#!/bin/sh\nexec sleep 600\n")?;
        std::fs::set_permissions(&hung, std::fs::Permissions::from_mode(0o755))?;
        let mut worker = VisionWorker::start_binary(&hung, "test")?;
        let started = Instant::now();
        match worker.call_within(&Request::Recognise, &[b"frame"], Duration::from_millis(300)) {
            Err(VisionError::Crashed(reason)) => {
                assert!(reason.contains("killed as hung"), "{reason}");
                assert!(reason.contains("signal 9"), "{reason}");
            }
            other => anyhow::bail!("a crash expected, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "killed in time"
        );
        Ok(())
    }
}
