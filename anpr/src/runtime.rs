//! Native pieces: where they are, the process-wide ONNX Runtime environment, model sessions.
//!
//! ONNX Runtime is loaded at run time (`ort` feature `load-dynamic`) from the file that
//! `scripts/install-native` puts under `$BCP_NATIVE_DIR/lib`. `ort` allows one library and one
//! environment per process, so the first [`environment`] call loads it and later calls reuse it
//! (whatever path they name). Paths are checked before loading so that a missing install is an
//! [`AnprError::MissingNative`] naming the file, not a panic deep inside `ort`.

use std::path::Path;
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

use crate::error::{AnprError, OrtContext};

pub use bcp_anpr_core::settings::{
    default_native_dir, NativePaths, DET_MODEL, ONNXRUNTIME_LIB, REC_MODEL,
};

static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

/// The process-wide ONNX Runtime environment, loading the library from `lib` on first use.
pub fn environment(lib: &Path) -> Result<Environment, AnprError> {
    // A poisoned lock only means another thread panicked while holding it; the Option is still valid.
    let mut guard = ENVIRONMENT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(env) = guard.as_ref() {
        return Ok(env.clone());
    }
    if !lib.is_file() {
        return Err(bcp_anpr_core::SettingsError::MissingNative {
            what: "ONNX Runtime library",
            path: lib.to_path_buf(),
        }
        .into());
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
        // No spin-waiting between operators. A reader holds two sessions (detector and
        // recogniser), each with its own pool, on an appliance of two cores: a worker spinning
        // after its session's run took the core from the other session and from the OpenCV
        // work between runs. On the dev photos the median time per image fell from 145 to
        // 97 ms and the CPU time per image from 280 to 151 ms (BENCHMARKS.md, ANPR).
        .with_intra_op_spinning(false)
        .ort(&ctx)?
        // The detector's input size changes with every frame's shape: the memory patterns
        // ONNX Runtime plans per shape only add up (peak RSS over the dev photos 358 -> 318 MiB
        // without them; the CPU arena stays).
        .with_memory_pattern(false)
        .ort(&ctx)?
        .commit_from_file(model)
        .ort(&ctx)
}
