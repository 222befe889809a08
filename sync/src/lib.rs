//! # bcp-sync: store and forward from the border post to the central office
//!
//! A crossing is committed to the appliance's SQLite [`outbox`] first; the [`uplink`] publishes
//! it over MQTT; central's [`central`] receiver stores it and acknowledges the contiguous prefix
//! it has committed; only that acknowledgement marks the outbox row delivered.
//!
//! ```text
//! lane -> Outbox::append --(run_uplink, QoS 1, bcp/v1/<post>/records)--> broker
//!      <- mark_delivered <--(Ack, QoS 1, bcp/v1/<post>/ack)-- run_receiver -> CentralStore
//! ```
//!
//! ## Layout
//! - [`outbox`]: [`Outbox`], the appliance's durable buffer (seq per post, delivered only on ack).
//! - [`uplink`]: [`run_uplink`], the MQTT driver around the pure [`DeliveryTracker`].
//! - [`central`]: [`CentralStore`] (dedup by `(post, seq)`, contiguous ack; in SQLite or
//!   PostgreSQL) and [`run_receiver`] (MQTT 5, a shared subscription: several instances on one
//!   store split the load).
//! - [`broker`]: [`start_embedded`], rumqttd in-process for appliances or benches without
//!   Mosquitto (an MQTT 3.1.1 listener for the posts, an MQTT 5 one for central).
//! - [`mosquitto`]: [`MosquittoProcess`], a throw-away Mosquitto for tests and demos.
//! - [`pg_process`]: [`PostgresProcess`], a throw-away PostgreSQL server for tests and benches.
//! - [`loopback`]: [`loopback::free_port`], a port for such a server, drawn where outgoing
//!   connections do not take ports.
//! - [`link`]: what both MQTT ends share: session options, TCP_NODELAY, [`link::Backoff`], the
//!   event pump.
//! - [`keys`]: [`PostKey`], the post's Ed25519 signing key file, and public key files for central.
//! - [`wire`]: the batch payload (consecutive records, compact seals, zstd).
//! - [`lists`]: [`ListStore`], the post's copy of central's signed downlink lists, and
//!   [`lists::publish_list`] for central.
//! - [`blobs`]: [`blobs::BlobDir`], content-addressed image files (the outbox's and central's),
//!   and the budget's eviction order.
//! - [`logging`]: where `bcp-agent` and `bcp-central` log: the systemd journal with its fields
//!   when stderr is connected to it, else stderr.
//! - [`db`]: opening SQLite with WAL, `synchronous=FULL` and `user_version` migrations.
//!
//! The binary `bcp-central` (`src/bin/bcp-central.rs`) only parses arguments and calls this
//! library.
//!
//! ## Tamper evidence
//! Every record is sealed in the outbox before it is committed: chained to the post's previous
//! record by SHA-256 and signed with the post's Ed25519 key ([`bcp_record::seal`]). Central
//! stores only records whose seal, key and chain hold ([`central::verify`]); the rest are kept
//! aside with the reason.
//!
//! ## Images
//! A crossing's images are content-addressed blobs beside the outbox
//! ([`Outbox::append_with_images`]); the record names them by SHA-256. The uplink sends them
//! after the records, one message each; central checks the hash, keeps them beside its database
//! ([`central::blobs`]) and acknowledges each; only that marks an image synced. Under the disk
//! budget images give way before records (see the outbox's "Disk budget").
//!
//! ## Delivery guarantee
//! At least once on the wire, exactly once in the central store: the outbox resends everything
//! unacknowledged after each reconnect (and after an ack timeout), and central ignores what it
//! already has while acknowledging it again.

pub mod blobs;
pub mod broker;
pub mod central;
pub mod db;
pub mod keys;
pub mod link;
pub mod lists;
pub mod logging;
pub mod loopback;
pub mod mosquitto;
pub mod outbox;
pub mod pg_process;
pub mod uplink;
pub mod wire;

pub use broker::{start_embedded, EmbeddedBroker};
pub use central::{
    run_receiver, CentralError, CentralStore, KeyPolicy, Outcome, PostSummary, Received,
    ReceivedMessage, ReceiverConfig, ReceiverStats, StoredCrossing,
};
pub use db::DbError;
pub use keys::{KeyError, PostKey};
pub use link::TlsFiles;
pub use lists::{ListOutcome, ListStore};
pub use mosquitto::MosquittoProcess;
pub use outbox::{ChainReport, Outbox, OutboxError, OutboxStats, SealedRecord};
pub use pg_process::PostgresProcess;
pub use uplink::{
    effective_batch_records, run_uplink, DeliveryTracker, UplinkConfig, DEFAULT_BATCH_MAX_RECORDS,
    DEFAULT_MAX_IN_FLIGHT, MAX_BATCH_RECORDS,
};
