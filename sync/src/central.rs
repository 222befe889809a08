//! # Central: the receiving end at the central office
//!
//! - [`store`]: [`CentralStore`], the SQLite file of received crossings, deduplicated by
//!   `(post, seq)`, with the per-post contiguous prefix that central acknowledges.
//! - [`verify`]: [`verify::judge`], the pure verdict on a sealed record (key, replay, chain).
//! - [`blobs`]: [`CentralBlobs`](blobs::CentralBlobs), the posts' images as content-addressed
//!   files beside the database, checked against their hash; their state for the export.
//! - [`receiver`]: [`run_receiver`], the MQTT driver: subscribe to every post's records, store,
//!   then acknowledge.

pub mod blobs;
pub mod receiver;
pub mod store;
pub mod verify;

pub use receiver::{run_receiver, ReceiverConfig};
pub use store::{
    CentralError, CentralStore, Outcome, PostSummary, Received, ReceivedMessage, RejectedMessage,
    StoredCrossing, VerifyReport, CENTRAL_SCHEMA_VERSION,
};
pub use verify::{KeyPolicy, Rejection};
