//! # Central: the receiving end at the central office
//!
//! - [`store`]: [`CentralStore`], the database of received crossings, deduplicated by
//!   `(post, seq)`, with the per-post contiguous prefix that central acknowledges: one API over
//!   two backends, `sqlite` (a file, the embedded default) and `postgres` (production; see
//!   their module headers).
//! - [`verify`]: [`verify::judge`], the pure verdict on a sealed record (key, replay, chain).
//! - `batch`: the pure handling of one message's records around the verdict, shared by both
//!   backends.
//! - [`blobs`]: [`CentralBlobs`](blobs::CentralBlobs), the posts' images as content-addressed
//!   files beside the database, checked against their hash; their state for the export.
//! - [`orphans`]: [`prune_orphan_images`](orphans::prune_orphan_images), images no stored
//!   crossing refers to, removed once older than an age (pure rule [`orphans::judge`]).
//! - [`receiver`]: [`run_receiver`], the MQTT driver: subscribe to every post's records and
//!   (on a second connection) images, store, then acknowledge.
//! - [`config`]: [`CentralConfig`](config::CentralConfig), the operator's `central.toml`
//!   (database and its TLS, broker, keys, images).

mod batch;
pub mod blobs;
pub mod config;
pub mod orphans;
pub(crate) mod postgres;
pub mod receiver;
mod sqlite;
pub mod store;
pub mod verify;

pub use receiver::{run_receiver, ReceiverConfig, ReceiverStats};
pub use store::{
    CentralError, CentralStore, OpenedMessage, Outcome, PostSummary, Received, ReceivedMessage,
    RejectedMessage, StoredConfigChange, StoredCrossing, VerifyReport, CENTRAL_PG_SCHEMA_VERSION,
    CENTRAL_SCHEMA_VERSION,
};
pub use verify::{KeyPolicy, Rejection};
