//! The settings of the ANPR engine, its native files, the evidence images, stream capture and
//! motion: plain data with defaults and range checks, so that a process can configure the
//! engine (and check a configuration) without loading it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::formats;

/// A setting out of range, or a native file missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A native file (ONNX Runtime library or a model) is not where the config says.
    #[error("{what} not found at {}: run scripts/install-native (or set BCP_NATIVE_DIR)", path.display())]
    MissingNative {
        /// What was looked for, e.g. "ONNX Runtime library".
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// An invalid configuration value.
    #[error("invalid ANPR config: {key}: {reason}")]
    Config {
        /// The offending key.
        key: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
}

/// Configuration of the plate reader (`bcp_anpr::PlateReader`); every tuning knob has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnprConfig {
    /// Native library and model files.
    pub paths: NativePaths,
    /// Intra-op threads per model session.
    pub threads: usize,
    /// Longest side of the detector input, in pixels (rounded to a multiple of 32).
    pub det_limit_side_px: u32,
    /// Longest side of a first, quicker detector pass. A frame whose best candidate from it
    /// fits a plate format with confidence >= 0.95 is done; any other is detected again at
    /// `det_limit_side_px` and the candidates of both passes are ranked together. 0, a value
    /// not below `det_limit_side_px`, or a camera that fits no plate formats: one pass.
    pub det_quick_side_px: u32,
    /// Longest side of the detector input for a last look at a frame in which no pass found any
    /// plate-like text: the frame is detected again in two overlapping halves (each 55 % of its
    /// width), each at up to this size, so that the small plate of a wide view is seen at about
    /// its own resolution. 0, or a camera that fits no plate formats: no such look.
    pub det_tile_side_px: u32,
    /// Probability above which a pixel is text.
    pub det_threshold: f32,
    /// Minimum mean probability of a kept text box.
    pub det_box_threshold: f32,
    /// How much a detected box is grown (DB unclip ratio).
    pub det_unclip_ratio: f32,
    /// At most this many contours are considered per frame.
    pub det_max_candidates: usize,
    /// Crops recognised per model run. 1 by default: a batch is padded to its widest crop,
    /// and with the PP-OCRv6 recogniser's 18,710 classes per time step the activations of a
    /// batch of wide crops cost memory for no speed (dev photos: peak 350 MiB at 6, 288 at 1,
    /// the same time per image).
    pub rec_batch_size: usize,
    /// Candidates below this confidence are dropped.
    pub min_confidence: f32,
    /// Frames with more pixels than this are refused (an error, not an allocation of gigabytes
    /// for the detector's input and crops).
    pub max_frame_pixels: u64,
    /// Codes of the plate formats to fit (`["TJ", "UZ", ..]`, see [`formats::FORMATS`]); empty:
    /// all. A post enables the countries whose vehicles cross it: every extra grammar is one
    /// more way for a timestamp or a phone number to look like a plate.
    pub formats: Vec<String>,
    /// Whether texts are fitted to plate formats: `true` for a camera that reads number plates
    /// (a road post). `false` for one that reads identifiers (ULD ids, vessel numbers): a plate
    /// grammar would cut and bend them (`PMC03032LH` fits no plate, but `PMC03032L`, its last
    /// letter dropped as if it were a country code, does), so texts are kept as read, `formats`
    /// is not used, and the caller validates them ([`crate::identifiers`]).
    pub fit_plate_formats: bool,
    /// The best this many candidates are read again from an enlarged region around them
    /// (0: no second pass); see the module header.
    pub refine_top: usize,
}

impl Default for AnprConfig {
    fn default() -> Self {
        Self {
            paths: NativePaths::from_env(),
            threads: 2,
            det_limit_side_px: 960,
            det_quick_side_px: 512,
            det_tile_side_px: 1280,
            det_threshold: 0.3,
            det_box_threshold: 0.5,
            det_unclip_ratio: 1.6,
            det_max_candidates: 200,
            rec_batch_size: 1,
            min_confidence: 0.3,
            max_frame_pixels: 40_000_000,
            formats: Vec::new(),
            fit_plate_formats: true,
            refine_top: 2,
        }
    }
}

impl AnprConfig {
    /// Defaults with the native files under `$BCP_NATIVE_DIR` (or the default directory).
    pub fn from_env() -> Self {
        Self::default()
    }

    /// Checks value ranges; the error names the offending key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let bad = |key, reason: &str| {
            Err(SettingsError::Config {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.threads == 0 {
            return bad("threads", "must be at least 1");
        }
        if self.det_limit_side_px < 32 {
            return bad("det_limit_side_px", "must be at least 32");
        }
        if self.det_quick_side_px != 0 && self.det_quick_side_px < 32 {
            return bad(
                "det_quick_side_px",
                "must be 0 (no quick pass) or at least 32",
            );
        }
        if self.det_tile_side_px != 0 && self.det_tile_side_px < 32 {
            return bad(
                "det_tile_side_px",
                "must be 0 (no look at the frame's halves) or at least 32",
            );
        }
        for (key, v) in [
            ("det_threshold", self.det_threshold),
            ("det_box_threshold", self.det_box_threshold),
            ("min_confidence", self.min_confidence),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(key, "must be between 0 and 1");
            }
        }
        if !(self.det_unclip_ratio >= 0.0 && self.det_unclip_ratio <= 5.0) {
            return bad("det_unclip_ratio", "must be between 0 and 5");
        }
        if self.det_max_candidates == 0 {
            return bad("det_max_candidates", "must be at least 1");
        }
        if let Some(unknown) = self.formats.iter().find(|c| formats::by_code(c).is_none()) {
            let known: Vec<&str> = formats::FORMATS.iter().map(|f| f.code).collect();
            return bad(
                "formats",
                &format!("unknown format {unknown:?}; known: {}", known.join(", ")),
            );
        }
        if self.rec_batch_size == 0 {
            return bad("rec_batch_size", "must be at least 1");
        }
        Ok(())
    }
}

/// File name of the ONNX Runtime library under `<native dir>/lib`.
pub const ONNXRUNTIME_LIB: &str = "libonnxruntime.so";
/// File name of the PP-OCRv4 detection model under `<native dir>/models`.
pub const DET_MODEL: &str = "ch_PP-OCRv4_det_infer.onnx";
/// File name of the recognition model under `<native dir>/models`: PP-OCRv6 small (from the
/// `rapidocr` wheel), which reads Latin plates better than PP-OCRv4's (BENCHMARKS.md, ANPR).
pub const REC_MODEL: &str = "PP-OCRv6_rec_small.onnx";

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
    pub fn check(&self) -> Result<(), SettingsError> {
        for (what, path) in [
            ("ONNX Runtime library", &self.onnxruntime_lib),
            ("detection model", &self.det_model),
            ("recognition model", &self.rec_model),
        ] {
            if !path.is_file() {
                return Err(SettingsError::MissingNative {
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

/// Media type of the images made here.
pub const MEDIA_TYPE: &str = "image/jpeg";

/// The lowest JPEG quality an image is re-encoded at to fit [`EvidenceConfig::max_image_bytes`].
pub const MIN_JPEG_QUALITY: u8 = 40;

/// How the evidence images are made; every knob has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvidenceConfig {
    /// The overview is scaled down to at most this width.
    pub overview_max_width_px: u32,
    /// Margin added on every side of the plate box, as a multiple of the box's height.
    pub crop_margin_ratio: f32,
    /// JPEG quality (1-100) of both images.
    pub jpeg_quality: u8,
    /// Largest encoded image; larger ones are encoded again at lower quality.
    pub max_image_bytes: usize,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        Self {
            overview_max_width_px: 1280,
            crop_margin_ratio: 0.5,
            jpeg_quality: 85,
            // Under sync's MAX_IMAGE_BYTES (1 MiB less 4 KiB for the topic).
            max_image_bytes: 1_000_000,
        }
    }
}

impl EvidenceConfig {
    /// Checks value ranges; the error names the offending key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let bad = |key, reason: &str| {
            Err(SettingsError::Config {
                key,
                reason: reason.to_owned(),
            })
        };
        if !(64..=16_384).contains(&self.overview_max_width_px) {
            return bad("overview_max_width_px", "must be 64..=16384");
        }
        if !(0.0..=5.0).contains(&self.crop_margin_ratio) {
            return bad("crop_margin_ratio", "must be 0..=5 (box heights)");
        }
        if !(MIN_JPEG_QUALITY..=100).contains(&self.jpeg_quality) {
            return bad("jpeg_quality", "must be 40..=100");
        }
        if self.max_image_bytes < 1024 {
            return bad("max_image_bytes", "must be at least 1024");
        }
        Ok(())
    }
}

/// Capture tuning; every knob has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    /// Frames held for the reader; older ones are dropped when it falls behind.
    pub queue_frames: usize,
    /// Bound on opening a stream.
    pub open_timeout_ms: u32,
    /// Bound on one frame read from a stream.
    pub read_timeout_ms: u32,
    /// First wait before reopening a source that failed.
    pub reconnect_min_ms: u64,
    /// Longest wait between reopening attempts.
    pub reconnect_max_ms: u64,
    /// How often a folder is listed for new files.
    pub folder_poll_ms: u64,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            queue_frames: 2,
            open_timeout_ms: 5_000,
            read_timeout_ms: 5_000,
            reconnect_min_ms: 500,
            reconnect_max_ms: 10_000,
            folder_poll_ms: 50,
        }
    }
}

impl CaptureConfig {
    /// Checks value ranges; the error names the offending key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let bad = |key, reason: &str| {
            Err(SettingsError::Config {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.queue_frames == 0 {
            return bad("queue_frames", "must be at least 1");
        }
        if self.reconnect_min_ms == 0 || self.reconnect_max_ms < self.reconnect_min_ms {
            return bad(
                "reconnect_max_ms",
                "reconnect_min_ms must be >= 1 and reconnect_max_ms >= reconnect_min_ms",
            );
        }
        if self.folder_poll_ms == 0 {
            return bad("folder_poll_ms", "must be at least 1");
        }
        Ok(())
    }
}

/// How motion is measured (`bcp_anpr::motion`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MotionConfig {
    /// Width of the small grey image compared, in pixels (8 ..= 640).
    pub width_px: i32,
    /// Side of the Gaussian blur's square kernel on the small image, odd (1: no blur; ..= 31).
    pub blur_px: i32,
    /// A pixel changed when its grey level moved by more than this (1 ..= 254).
    pub pixel_threshold: u8,
}

impl Default for MotionConfig {
    fn default() -> Self {
        Self {
            width_px: 64,
            blur_px: 5,
            pixel_threshold: 25,
        }
    }
}

impl MotionConfig {
    /// Checks the ranges; the error names the key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if !(8..=640).contains(&self.width_px) {
            return Err(SettingsError::Config {
                key: "width_px",
                reason: format!("{}: use 8 ..= 640", self.width_px),
            });
        }
        if !(1..=31).contains(&self.blur_px) || self.blur_px % 2 == 0 {
            return Err(SettingsError::Config {
                key: "blur_px",
                reason: format!("{}: use an odd number 1 ..= 31", self.blur_px),
            });
        }
        if !(1..=254).contains(&self.pixel_threshold) {
            return Err(SettingsError::Config {
                key: "pixel_threshold",
                reason: format!("{}: use 1 ..= 254", self.pixel_threshold),
            });
        }
        Ok(())
    }
}
