//! # bcp-anpr-core: what the agent daemon needs of ANPR without its native code
//!
//! `bcp-anpr` reads plates with OpenCV and ONNX Runtime; the agent daemon runs that in a
//! `bcp-vision` child process and links neither. What the daemon itself needs is here, pure
//! Rust, re-exported by `bcp-anpr` under the same paths:
//!
//! - [`formats`]: plate grammars as data (TJ, UZ, KZ, KG, AF, RU, RU-TRAILER, TR, CN, BR, EU,
//!   US, IR), position-aware O/0, I/1, B/8 .. correction, which format matched.
//! - [`identifiers`]: UIC/CIS wagon numbers, ISO 6346 container codes, ENI/IMO vessel numbers,
//!   IATA ULD ids: shapes, check digits, single-character repair when exactly one is valid.
//! - [`candidate`]: [`PlateCandidate`], one text read from a frame.
//! - [`vote`]: merging the reads of one vehicle over several frames into a [`VotedPlate`].
//! - [`settings`]: [`AnprConfig`], [`NativePaths`], [`EvidenceConfig`], [`CaptureConfig`],
//!   [`MotionConfig`] with their defaults and range checks ([`SettingsError`]).
//! - [`worker`]: the vision worker's requests and replies, and their wire format.

pub mod candidate;
pub mod formats;
pub mod identifiers;
pub mod settings;
pub mod vote;
pub mod worker;

pub use candidate::PlateCandidate;
pub use settings::{
    AnprConfig, CaptureConfig, EvidenceConfig, MotionConfig, NativePaths, SettingsError,
};
pub use vote::{vote, VotedPlate};
