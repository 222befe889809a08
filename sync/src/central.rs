//! # Central: the receiving end at the central office
//!
//! - [`store`]: [`CentralStore`], the SQLite file of received crossings, deduplicated by
//!   `(post, seq)`, with the per-post contiguous prefix that central acknowledges.
//! - [`receiver`]: [`run_receiver`], the MQTT driver: subscribe to every post's records, store,
//!   then acknowledge.

pub mod receiver;
pub mod store;

pub use receiver::{run_receiver, ReceiverConfig};
pub use store::{
    CentralError, CentralStore, RejectedMessage, StoreOutcome, StoredCrossing,
    CENTRAL_SCHEMA_VERSION,
};
