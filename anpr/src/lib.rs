//! # bcp-anpr: number-plate recognition for the border-crossing edge appliance
//!
//! Reads the plates of vehicles in lane-camera frames with the PP-OCRv4 text detection and the
//! PP-OCRv6 (small) text recognition models (ONNX Runtime through `ort`, loaded at run time from
//! `scripts/install-native`'s files), OpenCV for decoding and geometry, and regional plate
//! grammars to correct and label the reads.
//!
//! ## Layout
//! - [`capture`]: cameras (RTSP/MJPEG URLs, video files, image folders) through a grab thread
//!   with a bounded drop-oldest queue, timeouts, reconnect with backoff, health counters.
//! - [`runtime`]: [`NativePaths`] (where the library and models are), the process-wide ONNX
//!   Runtime environment, model sessions.
//! - [`detect`]: text detection (DB post-processing: threshold, contours, box score, unclip) and
//!   upright cropping of the boxes.
//! - [`recognize`]: batched recognition and greedy CTC decoding with per-character confidences.
//! - [`formats`]: plate grammars as data (TJ, UZ, KZ, KG, AF, RU, RU-TRAILER, TR, CN, BR, EU,
//!   US, IR), position-aware O/0, I/1, B/8 .. correction, which format matched.
//! - [`identifiers`]: UIC/CIS wagon numbers, ISO 6346 container codes, ENI/IMO vessel numbers,
//!   IATA ULD ids: shapes, check digits, single-character repair when exactly one is valid.
//! - [`reader`]: [`AnprConfig`], [`PlateReader`] (one per camera task) and the ranking of
//!   [`PlateCandidate`]s: plate-like text first.
//! - [`motion`]: [`MotionMeter`], the fraction of a frame's pixels that changed since the
//!   camera's previous frame (a small blurred grey image), for camera presence.
//! - [`vote`]: merging the reads of one vehicle over several frames into a [`VotedPlate`].
//! - [`evidence`]: the images kept with a voted plate: the overview (best read's frame,
//!   scaled down) and the plate crop, JPEG bytes for the outbox.
//! - [`eval`]: evaluation over an openalpr-layout folder (`groundtruth.tsv`): exact match,
//!   within one character, detection recall at IoU, time per image.
//! - [`worker`]: the vision worker (`bcp-vision`): this crate's native work in a process of
//!   its own, requests and replies over a pipe, so that the agent daemon links none of it.
//! - [`error`]: [`AnprError`], the crate's error type.
//!
//! ## Use
//! ```no_run
//! # fn main() -> Result<(), bcp_anpr::AnprError> {
//! let mut reader = bcp_anpr::PlateReader::new(&bcp_anpr::AnprConfig::from_env())?;
//! let jpeg: Vec<u8> = std::fs::read("frame.jpg").unwrap_or_default();
//! if let Some(best) = reader.read_image_bytes(&jpeg)?.first() {
//!     println!("{} ({:?}, {:.2})", best.text, best.format, best.confidence);
//! }
//! # Ok(())
//! # }
//! ```

pub mod capture;
pub mod detect;
pub mod error;
pub mod eval;
pub mod evidence;
pub mod motion;
pub mod reader;
pub mod recognize;
pub mod runtime;
pub mod worker;

pub use bcp_anpr_core::{formats, identifiers, vote, SettingsError, VotedPlate};
pub use error::AnprError;
pub use evidence::{
    plate_images_from_jpeg, plate_images_from_jpegs, plate_images_from_mats, thumbnail_from_bytes,
    EvidenceConfig, PlateImages,
};
pub use motion::{MotionConfig, MotionMeter};
pub use reader::{AnprConfig, PlateCandidate, PlateReader};
pub use runtime::NativePaths;
