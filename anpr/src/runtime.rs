//! Native pieces: where they are, the process-wide ONNX Runtime environment, model sessions.
//!
//! ONNX Runtime is loaded at run time (`ort` feature `load-dynamic`) from the file that
//! `scripts/install-native` puts under `$BCP_NATIVE_DIR/lib`. `ort` allows one library and one
//! environment per process, so the first [`environment`] call loads it and later calls reuse it
//! (whatever path they name). Paths are checked before loading so that a missing install is an
//! [`AnprError::MissingNative`] naming the file, not a panic deep inside `ort`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use serde::{Deserialize, Serialize};

use crate::error::{AnprError, OrtContext};

/// File name of the ONNX Runtime library under `<native dir>/lib`.
pub const ONNXRUNTIME_LIB: &str = "libonnxruntime.so";
/// File name of the PP-OCRv4 detection model under `<native dir>/models`.
pub const DET_MODEL: &str = "ch_PP-OCRv4_det_infer.onnx";
/// File name of the PP-OCRv4 recognition model under `<native dir>/models`.
pub const REC_MODEL: &str = "ch_PP-OCRv4_rec_infer.onnx";

/// Where the native files are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativePaths {
    /// The ONNX Runtime shared library.
    pub onnxruntime_lib: PathBuf,
    /// The text detection model.
    pub det_model: PathBuf,
    /// The text recognition model.
    pub rec_model: PathBuf,
}

impl NativePaths {
    /// `$BCP_NATIVE_DIR`, or `$HOME/.local/share/bcp-edge/native`, with the standard file names.
    pub fn from_env() -> Self {
        Self::in_dir(&default_native_dir())
    }

    /// The standard file names under `dir` (`lib/` and `models/`).
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            onnxruntime_lib: dir.join("lib").join(ONNXRUNTIME_LIB),
            det_model: dir.join("models").join(DET_MODEL),
            rec_model: dir.join("models").join(REC_MODEL),
        }
    }

    /// Checks that every file exists; the error names the first missing one.
    pub fn check(&self) -> Result<(), AnprError> {
        for (what, path) in [
            ("ONNX Runtime library", &self.onnxruntime_lib),
            ("detection model", &self.det_model),
            ("recognition model", &self.rec_model),
        ] {
            if !path.is_file() {
                return Err(AnprError::MissingNative {
                    what,
                    path: path.clone(),
                });
            }
        }
        Ok(())
    }
}

impl Default for NativePaths {
    fn default() -> Self {
        Self::from_env()
    }
}

/// `$BCP_NATIVE_DIR` or `$HOME/.local/share/bcp-edge/native`.
pub fn default_native_dir() -> PathBuf {
    match std::env::var_os("BCP_NATIVE_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
            home.join(".local/share/bcp-edge/native")
        }
    }
}

static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

/// The process-wide ONNX Runtime environment, loading the library from `lib` on first use.
pub fn environment(lib: &Path) -> Result<Environment, AnprError> {
    // A poisoned lock only means another thread panicked while holding it; the Option is still valid.
    let mut guard = ENVIRONMENT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(env) = guard.as_ref() {
        return Ok(env.clone());
    }
    if !lib.is_file() {
        return Err(AnprError::MissingNative {
            what: "ONNX Runtime library",
            path: lib.to_path_buf(),
        });
    }
    let builder = ort::init_from(lib).map_err(|source| AnprError::RuntimeLoad {
        path: lib.to_path_buf(),
        source,
    })?;
    let env = builder
        .with_name("bcp-anpr")
        .build()
        .ort("creating the environment")?;
    tracing::info!(lib = %lib.display(), "ONNX Runtime loaded");
    *guard = Some(env.clone());
    Ok(env)
}

/// Opens a model with `threads` intra-op threads.
pub(crate) fn open_session(
    env: &Environment,
    model: &Path,
    threads: usize,
) -> Result<Session, AnprError> {
    let ctx = format!("loading model {}", model.display());
    Session::builder(env)
        .ort(&ctx)?
        .with_optimization_level(GraphOptimizationLevel::All)
        .ort(&ctx)?
        .with_intra_threads(threads)
        .ort(&ctx)?
        .with_inter_threads(1)
        .ort(&ctx)?
        .commit_from_file(model)
        .ort(&ctx)
}
