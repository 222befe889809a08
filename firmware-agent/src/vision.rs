//! The agent's side of the vision worker (`bcp_anpr_core::worker`): a `bcp-vision` child process
//! that does what needs OpenCV and ONNX Runtime (recognition, motion, stream capture, the
//! crossings' images), so that the daemon itself links neither.
//!
//! A [`VisionWorker`] is one child, asked one request at a time (blocking: a camera's thread
//! or tokio's blocking pool calls it). A request the worker could not carry out (a frame that
//! does not decode) is [`VisionError::Failed`] and the worker goes on; a worker that died,
//! panicked or stopped answering in order is [`VisionError::Crashed`]: it is gone, and its
//! owner starts another when it needs one (the camera counts that as a restart). The child
//! is killed and reaped when the `VisionWorker` is dropped, and it exits by itself when the
//! agent dies (its stdin ends).
//!
//! The binary is `bcp-vision` beside the running executable (`/usr/bin` in the package,
//! `target/<profile>` in a build; from a test binary in `target/<profile>/deps`, the
//! directory above), or the path in `BCP_VISION`.

use std::io::{BufReader, BufWriter};
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

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

/// A running `bcp-vision` child.
#[derive(Debug)]
pub struct VisionWorker {
    child: Child,
    input: BufWriter<ChildStdin>,
    output: BufReader<ChildStdout>,
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
        let binary = worker_binary();
        let mut child = Command::new(&binary)
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
        Ok(Self {
            child,
            input: BufWriter::new(input),
            output: BufReader::new(output),
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks one request and waits for its reply and attachments.
    pub fn call(
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
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
        }
        match self.child.wait() {
            Ok(status) => match (status.code(), status.signal()) {
                (Some(code), _) => format!("{what} (exit status {code})"),
                (None, Some(signal)) => format!("{what} (killed by signal {signal})"),
                (None, None) => format!("{what} ({status})"),
            },
            Err(e) => format!("{what} (its exit status is unknown: {e})"),
        }
    }
}

impl Drop for VisionWorker {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
