//! # X-ray / gamma scanner adapters
//!
//! Two integration shapes, both yielding [`bcp_record::ScanEvent`]s on an mpsc channel:
//!
//! - [`feed`]: the scanner's TCP event feed, one JSON object per line ([`run_feed`]).
//! - [`drop_folder`]: a folder where the scanner writes one XML metadata file per scan plus its
//!   image files ([`run_drop_folder`]); the XML layout and the processed / quarantine rules are
//!   in that module's header. The parser, [`parse_scan_xml`], is pure.
//!
//! The agent's config names exactly one of them (`scanner.feed_addr` or `scanner.drop_folder`).

pub mod drop_folder;
pub mod feed;

pub use drop_folder::{parse_scan_xml, run_drop_folder, ScanFileError};
pub use feed::{run_feed, MAX_LINE_BYTES};
