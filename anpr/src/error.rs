//! The crate's error type.
//!
//! Every failure names what it was about: the file that is missing, the model that is malformed,
//! the OpenCV step that failed, the size of the image that did not decode. Nothing in this crate
//! panics on bad input; a corrupt frame is an [`AnprError::Decode`].

use std::path::PathBuf;

/// Errors at the boundary of `bcp-anpr`.
#[derive(Debug, thiserror::Error)]
pub enum AnprError {
    /// A setting out of range, or a native file missing.
    #[error(transparent)]
    Settings(#[from] bcp_anpr_core::SettingsError),
    /// The ONNX Runtime shared library exists but could not be loaded.
    #[error("cannot load ONNX Runtime from {}: {source} (run scripts/install-native)", path.display())]
    RuntimeLoad {
        /// The library path given to `ort::init_from`.
        path: PathBuf,
        /// The loader's error.
        #[source]
        source: ort::LoadDynamicError,
    },
    /// An ONNX Runtime call failed.
    #[error("ONNX Runtime: {context}: {source}")]
    Ort {
        /// What was being done, e.g. "running the detection model".
        context: String,
        /// The runtime's error.
        #[source]
        source: ort::Error,
    },
    /// A model file loaded but does not look like the expected PP-OCR model.
    #[error("model {}: {reason}", path.display())]
    Model {
        /// The model file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Image bytes that OpenCV could not decode.
    #[error("cannot decode image of {len} bytes: {reason}")]
    Decode {
        /// Size of the input.
        len: usize,
        /// Why decoding failed.
        reason: String,
    },
    /// A malformed line in an evaluation set's `groundtruth.tsv`.
    #[error("groundtruth.tsv line {line}: {reason}")]
    GroundTruth {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A frame of a type the reader does not handle (e.g. 16-bit or empty).
    #[error("unsupported frame: {0}")]
    UnsupportedFrame(String),
    /// An OpenCV operation failed.
    #[error("OpenCV {context}: {source}")]
    OpenCv {
        /// The step, e.g. "resize for detection".
        context: &'static str,
        /// OpenCV's error.
        #[source]
        source: opencv::Error,
    },
    /// A vote's evidence cannot be cut from the frames given: no frame for the best read, or a
    /// plate box with no area inside its frame.
    #[error("plate evidence: {0}")]
    Evidence(String),
}

/// Adds context to OpenCV results.
pub(crate) trait CvContext<T> {
    fn cv(self, context: &'static str) -> Result<T, AnprError>;
}

impl<T> CvContext<T> for opencv::Result<T> {
    fn cv(self, context: &'static str) -> Result<T, AnprError> {
        self.map_err(|source| AnprError::OpenCv { context, source })
    }
}

/// Adds context to ONNX Runtime results.
pub(crate) trait OrtContext<T> {
    fn ort(self, context: &str) -> Result<T, AnprError>;
}

impl<T, E: Into<ort::Error>> OrtContext<T> for Result<T, E> {
    fn ort(self, context: &str) -> Result<T, AnprError> {
        self.map_err(|e| AnprError::Ort {
            context: context.to_owned(),
            source: e.into(),
        })
    }
}
