//! # The outbox: the appliance's durable store-and-forward buffer
//!
//! Every crossing a lane produces is appended here **before** anything tries to send it; the
//! uplink reads from here and marks rows delivered only when central has confirmed that it
//! committed them (an application-level [`Ack`](bcp_record::Ack), not a broker PUBACK).
//!
//! ## Format (schema version 3)
//! - `outbox(seq, uuid, recorded_at, envelope, delivered_at, hash)`: one row per crossing. `seq` is
//!   the per-post sequence number (the `INTEGER PRIMARY KEY`), `uuid` the crossing id (a UUID v7,
//!   unique), `envelope` the exact JSON [`RecordEnvelope`] that goes on the wire, sealed
//!   ([`bcp_record::seal`]: chained to the previous record by SHA-256 and signed with the post's
//!   Ed25519 key), `hash` that seal's hash in hex, `delivered_at` is `NULL` until central
//!   acknowledged it. A partial index covers the undelivered rows.
//! - `outbox_state`: a single row holding the post this file belongs to, `last_seq`,
//!   `last_acked_seq` and `last_hash` (the chain head, hex), and `blobs_evicted_total` (a counter).
//! - `blobs(sha256, kind, media_type, bytes, first_referenced_at, synced_at, evicted_at,
//!   evict_reason, eviction_reported_at)`: one row per distinct image (see "Images").
//!
//! ## Images
//! [`Outbox::append_with_images`] stores a crossing's images (plate crops, overview frames, scan
//! thumbnails) as content-addressed files under `<outbox>.blobs/ab/cdef…`
//! ([`crate::blobs::BlobDir`]: temp file, fsync, rename, directory fsync), **then** commits the
//! record, whose `crossing.images` names each by SHA-256, together with the index rows in one
//! transaction. A crash in between leaves an orphan file, deleted on a later open (once a minute
//! old); a record never names bytes that were never written: an image that could not be kept
//! has its row say `evicted_at` and why. `synced_at` is set only by central's blob
//! acknowledgement ([`Outbox::mark_blob_synced`]); `eviction_reported_at` when central confirmed
//! it was told that an image it never had was evicted ([`Outbox::mark_eviction_reported`]). On
//! open, rows whose file is gone are marked evicted (`missing`); an image whose bytes no longer
//! match their hash when read for sending is marked evicted (`corrupt`) and its file deleted.
//!
//! ## Upgrading from version 2
//! Adds the `blobs` table and the eviction counter; nothing else changes (records without
//! images encode exactly as before, so their seals hold). Fixture: `tests/fixtures/outbox_v2.sql`.
//!
//! ## Upgrading from version 1
//! Version 1 rows were not sealed. The migration adds the columns; the first open with the key
//! then seals every unsealed row in seq order, in one transaction, so the chain covers the whole
//! file (rows already delivered included: the chain head must be well defined). The fixture
//! `tests/fixtures/outbox_v1.sql` is a version 1 file that the upgrade test opens.
//!
//! ## The key
//! [`Outbox::open`] uses the key beside the file ([`crate::keys::default_key_path`]) and creates
//! one on first use (logged at WARN with its public key, which central must be given);
//! [`Outbox::open_with_key`] takes one.
//!
//! ## Invariants
//! - One file belongs to one post; opening it for another post is refused ([`OutboxError::WrongPost`]).
//! - `seq` starts at 1 and grows by exactly 1 per append, without gaps, across reopen; the counter
//!   lives in `outbox_state` so that pruning delivered rows later cannot make a number reappear.
//! - The chain never forks: appends seal one at a time and commit in that order (see
//!   "Concurrent appends"); each commit checks, in its `IMMEDIATE` transaction, that the file's
//!   `last_seq` and `last_hash` are the head it sealed after, and writes the new head in the same
//!   transaction as the rows.
//! - [`Outbox::append`] commits (WAL, `synchronous=FULL`) before it returns the envelope, so a
//!   returned record survives a power cut. Appending a crossing whose id is already stored returns
//!   the stored envelope instead of a second row (a lane retrying after a crash cannot duplicate).
//! - Delivery only moves forward: [`Outbox::mark_delivered`] never clears `delivered_at` and
//!   `last_acked_seq` never decreases; it is also capped at `last_seq` (central cannot confirm a
//!   record this outbox never wrote).
//! - Undelivered rows are never deleted. Delivered rows are deleted only when the file is full
//!   (see "Disk budget").
//!
//! ## Disk budget
//! [`Outbox::set_budget_bytes`] caps the database file **plus** the image files, in bytes. The
//! records get the budget less what the images hold (SQLite `max_page_count`, adjusted whenever
//! images come or go); a full filesystem behaves the same (`SQLITE_FULL`, `ENOSPC`). Records
//! always win over images. The policy, in order:
//! 1. Above 90 % of the budget the alarm goes on: logged at ERROR once, `high_water` in
//!    [`OutboxStats`] (which the uplink's heartbeat carries to central, with the image figures
//!    and the counters `blobs_evicted_total` and `full_rejections_total`); it clears below 80 %.
//! 2. An image that would take the outbox past its budget (keeping 64 KiB for records) first
//!    deletes **delivered** records (central holds them, sealed), then evicts held images in
//!    this order ([`crate::blobs::choose_evictions`]): **synced** images
//!    (central has them), oldest first; then **unsynced** images, oldest first. If it still does
//!    not fit, or the filesystem says `ENOSPC` after evicting, it is not stored: its record is
//!    stored anyway and its row says `evicted_at` with the reason (`budget`, `disk_full`; also
//!    `too_large` above [`MAX_IMAGE_BYTES`]). An evicted image's row stays, so the record "says
//!    its image was evicted", and the uplink tells central about unsynced ones.
//! 3. A record append that finds the file full checkpoints and truncates the WAL (on a small
//!    disk the WAL, up to 4 MiB before SQLite's automatic checkpoint, is often what filled it),
//!    deletes every **delivered** record (central holds them, sealed; their pages are reused)
//!    and tries again; then evicts images in the same order, 256 KiB at a time, checkpointing
//!    and trying again after each slice.
//! 4. If no image is left and the file is still full, the append fails with
//!    [`OutboxError::Full`], logged at ERROR and counted: the caller still holds the crossing
//!    and must not drop it silently. Records are never deleted to make room. SQLite rolls the
//!    transaction back and image files this call wrote are deleted, so nothing already stored
//!    is damaged; appends succeed again as soon as central acknowledges records (which makes
//!    them prunable) or space is given back.
//! 5. Central's acknowledgements get through a full file: noting one (records delivered, an
//!    image synced, an eviction notice reported) that finds the file full makes room the same
//!    way and tries again (`Outbox::with_room`); records central acknowledged that still
//!    cannot be marked are pruned instead (a delete needs no new page), which frees the room
//!    the next append needs. An image acknowledgement that still cannot be noted is an
//!    [`OutboxError::is_full`] error the uplink logs and carries on from: it comes again.
//!
//! ## Concurrent appends
//! `Outbox` is `Send + Sync` and is shared as `Arc<Outbox>` between the lanes and the uplink.
//! The writing connection sits behind a `Mutex`; every method is one short transaction on it.
//! An append goes in two stages, so that one batch's sealing (CPU) overlaps the previous
//! batch's commit (fsync):
//! 1. **Seal**, under the seal lock: look up the crossings already stored on a second, reading
//!    connection (WAL: it sees the last commit), give the new ones the next numbers after the
//!    head the previous batch sealed, and seal them. Then take the write lock (the previous
//!    batch has finished committing) and only then let the next batch seal: batches commit in
//!    the order they were sealed.
//! 2. **Commit**, under the write lock: in one `IMMEDIATE` transaction, check that the file's
//!    head is the one the batch was sealed after, insert, advance the head, commit.
//!
//! When stage 1 cannot know what the file holds, the whole append runs under the write lock,
//! as one transaction that reads the head and looks up the crossings itself: a crossing of the
//! batch sealed just before (still committing, so the reader cannot see it yet), or a head
//! that stage 2 finds moved (an append sealed before this one failed, so this batch follows a
//! record that was never stored: it is sealed again on the file's head). After a failed or
//! re-sealed append the next one reads the head from the file.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use bcp_record::{Crossing, RecordEnvelope};
use chrono::{DateTime, SubsecRound as _, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::blobs::{BlobDir, BlobIoError};
use crate::db::{self, seq_from_sql, seq_to_sql, ts_from_sql, ts_to_sql, DbError};
use crate::keys::{default_key_path, KeyError, PostKey};
use bcp_record::seal::{self, from_hex, to_hex, GENESIS};

mod images;
pub use images::{default_blob_dir, BlobState, ImageData, PendingBlob, MAX_IMAGE_BYTES};

/// Schema migrations; index `i` takes the file from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE outbox (
    seq          INTEGER PRIMARY KEY CHECK (seq > 0),
    uuid         TEXT    NOT NULL UNIQUE,
    recorded_at  TEXT    NOT NULL,
    envelope     TEXT    NOT NULL,
    delivered_at TEXT
);
CREATE INDEX outbox_undelivered ON outbox (seq) WHERE delivered_at IS NULL;
CREATE TABLE outbox_state (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    post           TEXT    NOT NULL,
    last_seq       INTEGER NOT NULL CHECK (last_seq >= 0),
    last_acked_seq INTEGER NOT NULL CHECK (last_acked_seq >= 0)
);
"#,
    r#"
ALTER TABLE outbox ADD COLUMN hash TEXT;
ALTER TABLE outbox_state ADD COLUMN last_hash TEXT;
"#,
    r#"
CREATE TABLE blobs (
    sha256               TEXT    PRIMARY KEY,
    kind                 TEXT    NOT NULL,
    media_type           TEXT    NOT NULL,
    bytes                INTEGER NOT NULL CHECK (bytes >= 0),
    first_referenced_at  TEXT    NOT NULL,
    synced_at            TEXT,
    evicted_at           TEXT,
    evict_reason         TEXT,
    eviction_reported_at TEXT
) WITHOUT ROWID;
CREATE INDEX blobs_held ON blobs (first_referenced_at) WHERE evicted_at IS NULL;
ALTER TABLE outbox_state ADD COLUMN blobs_evicted_total INTEGER NOT NULL DEFAULT 0;
"#,
];

/// Batches at least this large are sealed on all cores.
const PARALLEL_SEAL_MIN: usize = 64;

/// The schema version this build writes.
pub const OUTBOX_SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Errors of the outbox; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("outbox {path} belongs to post {stored:?}, not {requested:?}")]
    WrongPost {
        path: PathBuf,
        stored: String,
        requested: String,
    },
    #[error("crossing {id} is for post {crossing_post:?}, but outbox {path} is post {post:?}")]
    ForeignCrossing {
        path: PathBuf,
        id: uuid::Uuid,
        crossing_post: String,
        post: String,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Blob(#[from] BlobIoError),
    #[error("crossing {id} is not a UUID v7 (records are identified by time-ordered UUIDs)")]
    NotV7 { id: uuid::Uuid },
    #[error(
        "outbox {path} is full ({depth} records not yet delivered): the record was not stored; \
         free disk space or raise the outbox budget"
    )]
    Full { path: PathBuf, depth: u64 },
    #[error("outbox {path}: the chain head {value:?} is not a SHA-256 in hex")]
    BadChainHead { path: PathBuf, value: String },
    #[error("outbox {path}: {op} failed")]
    Sqlite {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("outbox {path}: record seq {seq} cannot be encoded or decoded as JSON")]
    Json {
        path: PathBuf,
        seq: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("outbox {path}: stored timestamp {value:?} is not RFC 3339")]
    BadTimestamp {
        path: PathBuf,
        value: String,
        #[source]
        source: chrono::ParseError,
    },
}

/// A record as the outbox keeps it: sealed, as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecord {
    pub seq: u64,
    /// The sealed [`RecordEnvelope`] as JSON, exactly as it was sealed.
    pub json: String,
}

impl AsRef<[u8]> for SealedRecord {
    /// The sealed JSON text (what [`crate::wire::encode_sealed_texts`] takes).
    fn as_ref(&self) -> &[u8] {
        self.json.as_bytes()
    }
}

/// What the outbox holds, for health reporting.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutboxStats {
    /// Records not yet confirmed by central.
    pub depth: u64,
    /// When the oldest undelivered record was committed (how far behind central is).
    pub oldest_undelivered_recorded_at: Option<DateTime<Utc>>,
    /// The highest sequence number appended (0 when empty).
    pub last_seq: u64,
    /// The highest sequence number central confirmed (0 when none).
    pub last_acked_seq: u64,
    /// The file's cap, if one was set ([`Outbox::set_budget_bytes`]).
    pub budget_bytes: Option<u64>,
    /// The file is above the high-water mark of its budget (the alarm is on).
    pub high_water: bool,
    /// Bytes of the image blobs held (part of the budget).
    pub blobs_bytes: u64,
    /// Images held and not yet confirmed by central.
    pub blobs_pending: u64,
    /// Images held that central confirmed (evicted first when space runs short).
    pub blobs_synced: u64,
    /// Images evicted (their records stay and say so).
    pub blobs_evicted: u64,
    /// Evictions since the file was created (counter).
    pub blobs_evicted_total: u64,
    /// Appends refused with [`OutboxError::Full`] since this process opened the file (counter).
    pub full_rejections_total: u64,
}

/// What [`Outbox::verify_chain`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainReport {
    /// Records checked.
    pub records: u64,
    /// The first record whose seal, key or chain link does not hold, and why.
    pub first_bad: Option<(u64, String)>,
}

/// The durable buffer of one post's records. See the module documentation.
#[derive(Debug)]
pub struct Outbox {
    path: PathBuf,
    post: String,
    key: PostKey,
    /// A second connection that looks up stored crossings while a batch commits on `conn`.
    /// (Declared first so that it closes first: the writer, closing last, removes the WAL.)
    reader: Mutex<Connection>,
    /// The connection that writes (and reads where it must see every commit).
    conn: Mutex<Connection>,
    /// Appends seal one at a time, after this head (see "Concurrent appends").
    sealer: Mutex<SealHead>,
    /// Set when an append did not store what it sealed: the next reads the head from the file.
    head_stale: std::sync::atomic::AtomicBool,
    /// The cap set by [`Outbox::set_budget_bytes`], in bytes.
    budget: Mutex<Option<u64>>,
    /// Above the high-water mark (the alarm is raised once per crossing).
    high_water: std::sync::atomic::AtomicBool,
    /// The image blobs, beside the file ([`images::default_blob_dir`]).
    blobs: BlobDir,
    /// Appends refused with [`OutboxError::Full`] (a counter for the status message).
    full_rejections: std::sync::atomic::AtomicU64,
}

/// The alarm is raised when the file uses this share of its budget...
const HIGH_WATER_PERCENT: u64 = 90;
/// ...and cleared below this one.
const LOW_WATER_PERCENT: u64 = 80;

fn is_full(e: &OutboxError) -> bool {
    matches!(e, OutboxError::Sqlite { source: rusqlite::Error::SqliteFailure(f, _), .. }
        if f.code == rusqlite::ErrorCode::DiskFull)
}

/// Sealed records: the last hash and, per record, its hash and row JSON.
type SealedRows = ([u8; 32], Vec<([u8; 32], String)>);

/// An append's batch, sealed and not yet stored.
struct SealedBatch {
    /// One envelope per crossing given, in order (stored ones included).
    out: Vec<RecordEnvelope>,
    /// The new records: indexes into `out`, increasing.
    fresh: Vec<usize>,
    /// Per new record, its hash and row JSON.
    rows: Vec<([u8; 32], String)>,
    /// The chain head after the batch: its last sequence number and hash.
    head: (u64, [u8; 32]),
}

impl SealedBatch {
    /// The crossing ids of the new records.
    fn ids(&self) -> HashSet<uuid::Uuid> {
        self.fresh
            .iter()
            .map(|&i| self.out[i].crossing.id)
            .collect()
    }
}

/// The chain head as the last sealed batch left it (see "Concurrent appends").
#[derive(Debug, Default)]
struct SealHead {
    /// The last sequence number and hash sealed; `None` until read from the file.
    at: Option<(u64, [u8; 32])>,
    /// The new crossing ids of the batch sealed last, which may still be committing (the
    /// reading connection does not see them until it has).
    in_flight: HashSet<uuid::Uuid>,
}

/// `f` of each of `items`, in order, computed on every core when there are at least
/// [`PARALLEL_SEAL_MIN`] of them (else on this thread). A panic in `f` is resumed here.
fn map_on_every_core<T: Send, U: Send>(items: &mut [T], f: impl Fn(&mut T) -> U + Sync) -> Vec<U> {
    if items.len() < PARALLEL_SEAL_MIN {
        return items.iter_mut().map(f).collect();
    }
    // Read once: on Linux it reads the cgroup's CPU quota from /proc and /sys.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let threads =
        *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from));
    if threads < 2 {
        return items.iter_mut().map(f).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let chunks: Vec<_> = items
            .chunks_mut(per_thread)
            .map(|chunk| scope.spawn(move || chunk.iter_mut().map(f).collect::<Vec<U>>()))
            .collect();
        chunks
            .into_iter()
            .flat_map(|chunk| {
                chunk
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
            .collect()
    })
}

impl OutboxError {
    /// The file is full (its budget or the disk): the write was not made, nothing is damaged,
    /// and it may succeed once space returns.
    pub fn is_full(&self) -> bool {
        matches!(self, OutboxError::Full { .. }) || is_full(self)
    }
}

impl Outbox {
    /// Opens (or creates) the outbox file of `post`, with the key beside it (created if missing).
    pub fn open(path: &Path, post: &str) -> Result<Self, OutboxError> {
        // The database first: a file too new for this build is refused before anything is written
        // beside it.
        let conn = db::open_migrated(path, MIGRATIONS)?;
        let key_path = default_key_path(path);
        let (key, created) = PostKey::load_or_init(&key_path)?;
        if created {
            tracing::warn!(post, key = %key_path.display(), public_key = %key.public_hex(), "generated a new post signing key; give central its public key (bcpctl keys show)");
        }
        Self::with_connection(conn, path, post, key)
    }

    /// Opens (or creates) the outbox file of `post`, sealing records with `key`.
    pub fn open_with_key(path: &Path, post: &str, key: PostKey) -> Result<Self, OutboxError> {
        let conn = db::open_migrated(path, MIGRATIONS)?;
        Self::with_connection(conn, path, post, key)
    }

    fn with_connection(
        conn: Connection,
        path: &Path,
        post: &str,
        key: PostKey,
    ) -> Result<Self, OutboxError> {
        let outbox = Self {
            path: path.to_owned(),
            post: post.to_owned(),
            key,
            reader: Mutex::new(db::open_reader(path)?),
            conn: Mutex::new(conn),
            sealer: Mutex::new(SealHead::default()),
            head_stale: std::sync::atomic::AtomicBool::new(false),
            budget: Mutex::new(None),
            high_water: std::sync::atomic::AtomicBool::new(false),
            blobs: BlobDir::new(images::default_blob_dir(path)),
            full_rejections: std::sync::atomic::AtomicU64::new(0),
        };
        {
            let conn = outbox.lock();
            let stored: Option<String> = conn
                .query_row("SELECT post FROM outbox_state WHERE id = 1", [], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(outbox.sql("read the owning post"))?;
            match stored {
                Some(stored) if stored != post => {
                    return Err(OutboxError::WrongPost {
                        path: outbox.path.clone(),
                        stored,
                        requested: post.to_owned(),
                    })
                }
                Some(_) => {}
                None => {
                    conn.execute(
                        "INSERT INTO outbox_state (id, post, last_seq, last_acked_seq) \
                         VALUES (1, ?1, 0, 0)",
                        [post],
                    )
                    .map_err(outbox.sql("record the owning post"))?;
                }
            }
        }
        outbox.seal_legacy_rows()?;
        outbox.reconcile_blobs()?;
        Ok(outbox)
    }

    /// The public key that seals this outbox's records.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.public()
    }

    /// Seals the rows a version 1 outbox wrote (see "Upgrading from version 1").
    fn seal_legacy_rows(&self) -> Result<(), OutboxError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin sealing legacy rows"))?;
        let first: Option<i64> = tx
            .query_row("SELECT MIN(seq) FROM outbox WHERE hash IS NULL", [], |r| {
                r.get(0)
            })
            .map_err(self.sql("find unsealed rows"))?;
        let Some(first) = first else {
            return Ok(());
        };
        let mut prev = match tx
            .query_row(
                "SELECT hash FROM outbox WHERE seq < ?1 ORDER BY seq DESC LIMIT 1",
                [first],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map_err(self.sql("read the chain before unsealed rows"))?
            .flatten()
        {
            Some(h) => self.parse_hash(h)?,
            None => GENESIS,
        };
        let rows: Vec<(i64, String)> = {
            let mut stmt = tx
                .prepare("SELECT seq, envelope FROM outbox WHERE seq >= ?1 ORDER BY seq")
                .map_err(self.sql("prepare unsealed rows"))?;
            let rows = stmt
                .query_map([first], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(self.sql("query unsealed rows"))?;
            rows.collect::<Result<_, _>>()
                .map_err(self.sql("read unsealed rows"))?
        };
        let count = rows.len();
        for (seq, json) in rows {
            let mut env = self.decode(seq_from_sql(seq), &json)?;
            prev = seal::seal(&mut env, &prev, self.key.record_signer());
            let json = self.encode(&env)?;
            tx.execute(
                "UPDATE outbox SET envelope = ?1, hash = ?2 WHERE seq = ?3",
                params![json, to_hex(&prev), seq],
            )
            .map_err(self.sql("seal a legacy row"))?;
        }
        tx.execute(
            "UPDATE outbox_state SET last_hash = ?1 WHERE id = 1",
            [to_hex(&prev)],
        )
        .map_err(self.sql("write the chain head"))?;
        tx.commit()
            .map_err(self.sql("commit sealing legacy rows"))?;
        tracing::info!(path = %self.path.display(), rows = count, "sealed records written before schema version 2");
        Ok(())
    }

    /// Seals the new records `fresh` (indexes into `out`, increasing) after `prev`, and encodes
    /// each for its row; returns the last hash and, per fresh record, its hash and row JSON. A
    /// large batch is sealed on every core: the canonical forms (any order), then the chain (in
    /// order: SHA-256 only), then the signatures and the rows' JSON (any order). Those are
    /// most of an append's CPU.
    fn seal_all(
        &self,
        out: &mut [RecordEnvelope],
        fresh: &[usize],
        mut prev: [u8; 32],
    ) -> Result<SealedRows, OutboxError> {
        let key = self.key.record_signer();
        let public = self.key.public();
        let mut envs: Vec<&mut RecordEnvelope> = Vec::with_capacity(fresh.len());
        let mut wanted = fresh.iter().peekable();
        for (i, env) in out.iter_mut().enumerate() {
            if wanted.next_if(|&&j| j == i).is_some() {
                envs.push(env);
            }
        }
        let prepared = map_on_every_core(&mut envs, |env| seal::prepare(env, &public));
        let mut signing = Vec::with_capacity(envs.len());
        for (env, mut prepared) in envs.into_iter().zip(prepared) {
            prev = seal::link(env, &mut prepared, &prev);
            signing.push((env, prev, prepared));
        }
        let rows = map_on_every_core(&mut signing, |(env, hash, prepared)| {
            seal::sign(env, hash, key);
            // The row's JSON from the text `prepare` wrote (the envelope is not written twice).
            match seal::sealed_json(prepared, env) {
                Some(row) => Ok((*hash, row)),
                None => self.encode(env).map(|row| (*hash, row)),
            }
        });
        Ok((prev, rows.into_iter().collect::<Result<_, _>>()?))
    }

    fn parse_hash(&self, value: String) -> Result<[u8; 32], OutboxError> {
        from_hex::<32>(&value).ok_or_else(|| OutboxError::BadChainHead {
            path: self.path.clone(),
            value,
        })
    }

    fn encode(&self, env: &RecordEnvelope) -> Result<String, OutboxError> {
        serde_json::to_string(env).map_err(|source| OutboxError::Json {
            path: self.path.clone(),
            seq: env.seq,
            source,
        })
    }

    /// The post this outbox belongs to.
    pub fn post(&self) -> &str {
        &self.post
    }

    /// The file this outbox lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commits `crossing` as the next record and returns its envelope.
    ///
    /// Idempotent per crossing id: a crossing already in the outbox returns its stored envelope.
    pub fn append(&self, crossing: &Crossing) -> Result<RecordEnvelope, OutboxError> {
        let mut out = self.append_batch(std::slice::from_ref(crossing), Utc::now())?;
        // append_batch returns one envelope per crossing.
        out.pop().ok_or_else(|| OutboxError::Sqlite {
            path: self.path.clone(),
            op: "append returned no envelope",
            source: rusqlite::Error::QueryReturnedNoRows,
        })
    }

    /// Commits `crossings` in one transaction (one fsync), in order, recorded at `now`; returns
    /// one envelope per crossing (the stored one for a crossing id already in the outbox).
    ///
    /// When the file is full (its budget, or the disk), delivered records are pruned and the
    /// append is tried once more; if it is still full, [`OutboxError::Full`] (see "Disk budget").
    pub fn append_batch(
        &self,
        crossings: &[Crossing],
        now: DateTime<Utc>,
    ) -> Result<Vec<RecordEnvelope>, OutboxError> {
        self.append_with_rows(crossings, now, &[])
    }

    /// [`Outbox::append_batch`] that also upserts `blob_rows` in the same transaction.
    fn append_with_rows(
        &self,
        crossings: &[Crossing],
        now: DateTime<Utc>,
        blob_rows: &[images::BlobRow],
    ) -> Result<Vec<RecordEnvelope>, OutboxError> {
        let mut result = match self.try_append_batch(crossings, now, blob_rows) {
            Err(e) if is_full(&e) => {
                // The WAL may be what fills the disk: fold it into the file and cut it short.
                self.checkpoint_truncate();
                let pruned = self.prune_delivered()?;
                tracing::warn!(path = %self.path.display(), pruned, "outbox full: pruned delivered records");
                self.try_append_batch(crossings, now, blob_rows)
            }
            other => other,
        };
        // Still full: images give way to records, a slice at a time (see "Disk budget").
        while matches!(&result, Err(e) if is_full(e)) {
            if self.evict_blobs(images::EVICT_SLICE_BYTES, images::REASON_DISK_FULL)? == 0 {
                break;
            }
            self.checkpoint_truncate();
            result = self.try_append_batch(crossings, now, blob_rows);
        }
        match result {
            Err(e) if is_full(&e) => {
                self.full_rejections
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let depth = self.stats().map(|s| s.depth).unwrap_or(0);
                tracing::error!(path = %self.path.display(), depth, records = crossings.len(), "outbox full of undelivered records: the crossing was NOT stored; free space or raise the budget");
                Err(OutboxError::Full {
                    path: self.path.clone(),
                    depth,
                })
            }
            Ok(envs) => {
                self.check_high_water();
                Ok(envs)
            }
            Err(e) => Err(e),
        }
    }

    /// Caps the file at about `bytes` (SQLite's `max_page_count`; the WAL is not counted). A cap
    /// below what the file already uses is raised to that size by SQLite.
    pub fn set_budget_bytes(&self, bytes: u64) -> Result<u64, OutboxError> {
        let conn = self.lock();
        let page_size: i64 = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .map_err(self.sql("read page_size"))?;
        let pages = i64::try_from(bytes).unwrap_or(i64::MAX) / page_size.max(1);
        let max: i64 = conn
            .pragma_update_and_check(None, "max_page_count", pages, |r| r.get(0))
            .map_err(self.sql("set max_page_count"))?;
        let budget = u64::try_from(max.saturating_mul(page_size)).unwrap_or(u64::MAX);
        drop(conn);
        *self
            .budget
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(budget);
        // The images' share of the budget is not the records' to use.
        self.apply_page_cap()?;
        self.check_high_water();
        Ok(budget)
    }

    fn budget(&self) -> Option<u64> {
        *self
            .budget
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Copies the WAL into the file and truncates it (best effort: on a full disk it may not
    /// finish, which leaves the WAL valid).
    fn checkpoint_truncate(&self) {
        let result = self
            .lock()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
        if let Err(error) = result {
            tracing::warn!(path = %self.path.display(), %error, "outbox: WAL checkpoint failed");
        }
    }

    /// Deletes every delivered record (central has them, sealed); returns how many.
    pub fn prune_delivered(&self) -> Result<u64, OutboxError> {
        let n = self
            .lock()
            .execute("DELETE FROM outbox WHERE delivered_at IS NOT NULL", [])
            .map_err(self.sql("prune delivered records"))?;
        Ok(n as u64)
    }

    /// Bytes the file's pages take (used and free pages; what the budget caps).
    fn file_bytes(&self) -> Result<u64, OutboxError> {
        let conn = self.lock();
        let pages: i64 = conn
            .pragma_query_value(None, "page_count", |r| r.get(0))
            .map_err(self.sql("read page_count"))?;
        let free: i64 = conn
            .pragma_query_value(None, "freelist_count", |r| r.get(0))
            .map_err(self.sql("read freelist_count"))?;
        let page_size: i64 = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .map_err(self.sql("read page_size"))?;
        Ok(u64::try_from((pages - free).max(0) * page_size).unwrap_or(0))
    }

    /// Raises the alarm (ERROR, once per crossing) when the used pages pass the high-water mark
    /// of the budget, and clears it below the low-water mark.
    fn check_high_water(&self) {
        let budget = *self
            .budget
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (Some(budget), Ok(file), Ok(blobs)) = (budget, self.file_bytes(), self.blobs_bytes())
        else {
            return;
        };
        let used = file.saturating_add(blobs);
        let pct = used.saturating_mul(100) / budget.max(1);
        let was = self.high_water.load(std::sync::atomic::Ordering::Relaxed);
        if !was && pct >= HIGH_WATER_PERCENT {
            self.high_water
                .store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(path = %self.path.display(), used, blobs, budget, "outbox above its high-water mark; delivered records will be pruned and images evicted, undelivered records never are");
        } else if was && pct < LOW_WATER_PERCENT {
            self.high_water
                .store(false, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(path = %self.path.display(), used, budget, "outbox back below its low-water mark");
        }
    }

    fn try_append_batch(
        &self,
        crossings: &[Crossing],
        now: DateTime<Utc>,
        blob_rows: &[images::BlobRow],
    ) -> Result<Vec<RecordEnvelope>, OutboxError> {
        for crossing in crossings {
            if crossing.post != self.post {
                return Err(OutboxError::ForeignCrossing {
                    path: self.path.clone(),
                    id: crossing.id,
                    crossing_post: crossing.post.clone(),
                    post: self.post.clone(),
                });
            }
            if crossing.id.get_version_num() != 7 {
                return Err(OutboxError::NotV7 { id: crossing.id });
            }
        }
        // Stored with microseconds: truncate so that the returned envelope equals the stored one.
        let recorded_at = now.trunc_subsecs(6);

        // Stage 1, under the seal lock: find the crossings already stored and seal the rest
        // after the head the previous batch left (which may still be committing).
        let mut head = self.seal_head();
        if self
            .head_stale
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            head.at = None;
        }
        let base = match head.at {
            Some(at) => at,
            None => {
                let at = self.read_head(&self.lock())?;
                head.at = Some(at);
                at
            }
        };
        if crossings.iter().any(|c| head.in_flight.contains(&c.id)) {
            // A crossing of the batch that may still be committing, which the reader cannot see
            // yet: wait for that commit and do the whole append under the write lock.
            head.at = None;
            head.in_flight.clear();
            let mut conn = self.lock();
            return self.append_locked(&mut conn, crossings, recorded_at, blob_rows);
        }
        let sealed = {
            let reader = self.read_conn();
            // One read transaction for the batch's lookups: one snapshot, one check of the WAL.
            let snapshot = reader
                .unchecked_transaction()
                .map_err(self.sql("begin crossing id lookups"))?;
            self.seal_batch(&snapshot, crossings, recorded_at, base)?
        };
        // Commits go in the order of sealing: take the write lock (the previous batch has
        // committed) before the next batch may seal after this one.
        let mut conn = self.lock();
        head.at = Some(sealed.head);
        head.in_flight = sealed.ids();
        drop(head);

        // Stage 2, under the write lock: store the batch if the file's head is still the one it
        // was sealed after (else a batch before it failed: seal it again, on the file's head).
        let committed = (|| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(self.sql("begin append"))?;
            if self.read_head(&tx)? != base {
                return Ok(None);
            }
            self.write_batch(&tx, &sealed, recorded_at, blob_rows)?;
            tx.commit().map_err(self.sql("commit append"))?;
            Ok(Some(()))
        })();
        match committed {
            Ok(Some(())) => Ok(sealed.out),
            Ok(None) => {
                self.head_stale
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                tracing::debug!(path = %self.path.display(), "a batch sealed before this one was not stored: sealing again");
                self.append_locked(&mut conn, crossings, recorded_at, blob_rows)
            }
            Err(e) => {
                self.head_stale
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                Err(e)
            }
        }
    }

    /// The whole append in one `IMMEDIATE` transaction on `conn`: the slow path, taken when the
    /// sealing stage cannot know what the file holds.
    fn append_locked(
        &self,
        conn: &mut Connection,
        crossings: &[Crossing],
        recorded_at: DateTime<Utc>,
        blob_rows: &[images::BlobRow],
    ) -> Result<Vec<RecordEnvelope>, OutboxError> {
        let result = (|| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(self.sql("begin append"))?;
            let base = self.read_head(&tx)?;
            let sealed = self.seal_batch(&tx, crossings, recorded_at, base)?;
            self.write_batch(&tx, &sealed, recorded_at, blob_rows)?;
            tx.commit().map_err(self.sql("commit append"))?;
            Ok(sealed.out)
        })();
        // The next append reads the head from the file.
        self.head_stale
            .store(true, std::sync::atomic::Ordering::SeqCst);
        result
    }

    /// The file's chain head: the last sequence number and hash.
    fn read_head(&self, conn: &Connection) -> Result<(u64, [u8; 32]), OutboxError> {
        let (last, head): (i64, Option<String>) = conn
            .query_row(
                "SELECT last_seq, last_hash FROM outbox_state WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.sql("read last_seq"))?;
        let hash = match head {
            Some(h) => self.parse_hash(h)?,
            None => GENESIS,
        };
        Ok((seq_from_sql(last), hash))
    }

    /// Envelopes for `crossings` after `base`: the stored one for a crossing id `conn` finds,
    /// one record for a crossing given twice, and the rest sealed as new records.
    fn seal_batch(
        &self,
        conn: &Connection,
        crossings: &[Crossing],
        recorded_at: DateTime<Utc>,
        base: (u64, [u8; 32]),
    ) -> Result<SealedBatch, OutboxError> {
        let mut lookup = conn
            .prepare_cached("SELECT seq, envelope FROM outbox WHERE uuid = ?1")
            .map_err(self.sql("prepare crossing id lookup"))?;
        let mut stored = |id: &str| {
            lookup
                .query_row([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                .optional()
        };
        let (mut seq, prev) = base;
        let mut out = Vec::with_capacity(crossings.len());
        // New records (indexes in `out`), sealed together after the loop.
        let mut fresh: Vec<usize> = Vec::with_capacity(crossings.len());
        let mut in_batch: HashMap<uuid::Uuid, usize> = HashMap::new();
        let mut repeats: Vec<(usize, usize)> = Vec::new();
        for crossing in crossings {
            let existing =
                stored(&crossing.id.to_string()).map_err(self.sql("look up crossing id"))?;
            if let Some((old, json)) = existing {
                out.push(self.decode(seq_from_sql(old), &json)?);
                continue;
            }
            if let Some(&first) = in_batch.get(&crossing.id) {
                // The same crossing twice in one batch: one record; copied once signed.
                repeats.push((out.len(), first));
                out.push(out[first].clone());
                continue;
            }
            in_batch.insert(crossing.id, out.len());
            seq += 1;
            fresh.push(out.len());
            out.push(RecordEnvelope {
                post: self.post.clone(),
                seq,
                recorded_at,
                crossing: crossing.clone(),
                seal: None,
            });
        }
        let (hash, rows) = self.seal_all(&mut out, &fresh, prev)?;
        for &(k, first) in &repeats {
            out[k] = out[first].clone();
        }
        Ok(SealedBatch {
            out,
            fresh,
            rows,
            head: (seq, hash),
        })
    }

    /// Inserts `sealed`'s new rows and advances the head, in `tx`.
    fn write_batch(
        &self,
        tx: &rusqlite::Transaction<'_>,
        sealed: &SealedBatch,
        recorded_at: DateTime<Utc>,
        blob_rows: &[images::BlobRow],
    ) -> Result<(), OutboxError> {
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO outbox (seq, uuid, recorded_at, envelope, hash) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(self.sql("prepare insert"))?;
            for (&i, (hash, json)) in sealed.fresh.iter().zip(&sealed.rows) {
                let envelope = &sealed.out[i];
                insert
                    .execute(params![
                        seq_to_sql(envelope.seq),
                        envelope.crossing.id.to_string(),
                        ts_to_sql(recorded_at),
                        json,
                        to_hex(hash)
                    ])
                    .map_err(self.sql("insert record"))?;
            }
        }
        let (seq, hash) = sealed.head;
        tx.execute(
            "UPDATE outbox_state SET last_seq = ?1, last_hash = ?2 WHERE id = 1",
            params![seq_to_sql(seq), to_hex(&hash)],
        )
        .map_err(self.sql("advance last_seq"))?;
        self.upsert_blob_rows(tx, blob_rows, recorded_at)
    }

    /// Up to `limit` undelivered records with `seq > after_seq`, in sequence order.
    pub fn pending(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<RecordEnvelope>, OutboxError> {
        self.pending_sealed(after_seq, limit)?
            .iter()
            .map(|r| self.decode(r.seq, &r.json))
            .collect()
    }

    /// [`Self::pending`] as the sealed JSON texts the outbox keeps, not parsed: what the uplink
    /// sends ([`crate::wire::encode_sealed_texts`]).
    pub fn pending_sealed(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<SealedRecord>, OutboxError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, envelope FROM outbox \
                 WHERE delivered_at IS NULL AND seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(self.sql("prepare pending"))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![seq_to_sql(after_seq), limit], |r| {
                Ok(SealedRecord {
                    seq: seq_from_sql(r.get::<_, i64>(0)?),
                    json: r.get::<_, String>(1)?,
                })
            })
            .map_err(self.sql("query pending"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.sql("read pending row"))
    }

    /// Marks every record with `seq <= up_to_seq` delivered; returns how many were newly marked.
    ///
    /// Idempotent, and never un-marks: an older acknowledgement changes nothing.
    ///
    /// On a full file it makes room first, as [`Outbox::with_room`] says: being marked
    /// delivered is what lets records be pruned, so it must get through a full file.
    /// If even that leaves no room (a file full of undelivered records), the records central
    /// has committed are pruned instead of marked, which is what a full file does with
    /// delivered records anyway ([`Outbox::prune_delivered`]): deleting needs no new page.
    pub fn mark_delivered(&self, up_to_seq: u64) -> Result<u64, OutboxError> {
        match self.with_room(|| self.try_mark_delivered(up_to_seq)) {
            Err(e) if is_full(&e) => {
                let pruned = self.prune_acknowledged(up_to_seq)?;
                tracing::warn!(path = %self.path.display(), up_to_seq, pruned, "outbox full: records central acknowledged pruned instead of marked delivered");
                Ok(pruned)
            }
            other => other,
        }
    }

    /// Deletes the records up to `up_to_seq` that central acknowledged and advances the ack
    /// position, in one transaction.
    fn prune_acknowledged(&self, up_to_seq: u64) -> Result<u64, OutboxError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin prune_acknowledged"))?;
        let deleted = tx
            .execute(
                "DELETE FROM outbox WHERE seq <= MIN(?1, (SELECT last_seq FROM outbox_state WHERE id = 1))",
                [seq_to_sql(up_to_seq)],
            )
            .map_err(self.sql("prune acknowledged records"))?;
        self.advance_acked(&tx, up_to_seq)?;
        tx.commit().map_err(self.sql("commit prune_acknowledged"))?;
        Ok(deleted as u64)
    }

    /// A bookkeeping write (central's acknowledgement noted) on a full file: tried again after
    /// the WAL is folded and cut and delivered records are pruned, then after each slice of
    /// images evicted (the disk budget's order: synced first), until it goes through or nothing
    /// is left to evict ([`OutboxError::is_full`] then; the caller logs it and carries on: the
    /// acknowledgement comes again).
    pub(crate) fn with_room<T>(
        &self,
        write: impl Fn() -> Result<T, OutboxError>,
    ) -> Result<T, OutboxError> {
        let mut result = write();
        if matches!(&result, Err(e) if is_full(e)) {
            self.checkpoint_truncate();
            match self.prune_delivered() {
                Ok(pruned) => {
                    tracing::warn!(path = %self.path.display(), pruned, "outbox full while noting an acknowledgement: WAL folded, delivered records pruned")
                }
                // Tried again below all the same: evicting images may still make room.
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "outbox full while noting an acknowledgement: delivered records could not be pruned")
                }
            }
            result = write();
        }
        while matches!(&result, Err(e) if is_full(e)) {
            if self.evict_blobs(images::EVICT_SLICE_BYTES, images::REASON_DISK_FULL)? == 0 {
                break;
            }
            self.checkpoint_truncate();
            result = write();
        }
        result
    }

    /// Moves the acknowledged position up to `up_to_seq` (never past the last record, never
    /// back), inside the caller's transaction.
    fn advance_acked(
        &self,
        tx: &rusqlite::Transaction<'_>,
        up_to_seq: u64,
    ) -> Result<(), OutboxError> {
        tx.execute(
            "UPDATE outbox_state SET last_acked_seq = MAX(last_acked_seq, MIN(?1, last_seq)) \
             WHERE id = 1",
            [seq_to_sql(up_to_seq)],
        )
        .map_err(self.sql("advance last_acked_seq"))?;
        Ok(())
    }

    fn try_mark_delivered(&self, up_to_seq: u64) -> Result<u64, OutboxError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin mark_delivered"))?;
        // Every record up to `last_acked_seq` is delivered already (delivery is a prefix), so
        // only the rows above it are touched: an acknowledgement costs its own batch, not a walk
        // over every record ever delivered (which made a 1,000,000-record drain quadratic).
        let changed = tx
            .execute(
                "UPDATE outbox SET delivered_at = ?1 \
                 WHERE seq > (SELECT last_acked_seq FROM outbox_state WHERE id = 1) \
                 AND seq <= ?2 AND delivered_at IS NULL",
                params![ts_to_sql(Utc::now()), seq_to_sql(up_to_seq)],
            )
            .map_err(self.sql("mark delivered"))?;
        self.advance_acked(&tx, up_to_seq)?;
        tx.commit().map_err(self.sql("commit mark_delivered"))?;
        Ok(changed as u64)
    }

    /// Re-verifies every stored record: seal, key and chain (WELMEC 7.2 L6: a tool that detects
    /// change). Reads the whole file; for a technician's check, not for the hot path.
    pub fn verify_chain(&self) -> Result<ChainReport, OutboxError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT seq, envelope, hash FROM outbox ORDER BY seq")
            .map_err(self.sql("prepare verify"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })
            .map_err(self.sql("query verify"))?;
        let mut report = ChainReport {
            records: 0,
            first_bad: None,
        };
        let mut prev: Option<[u8; 32]> = None;
        let key = self.key.public();
        for row in rows {
            let (seq, json, hash) = row.map_err(self.sql("read verify row"))?;
            let seq = seq_from_sql(seq);
            report.records += 1;
            let problem = match seal::open(json.as_bytes()) {
                Err(e) => Some(e.to_string()),
                Ok(o) if o.envelope.seq != seq => {
                    Some(format!("envelope says seq {}", o.envelope.seq))
                }
                Ok(o) if o.key != key => Some("sealed with another key than the post's".to_owned()),
                // The first row anchors the chain: seq 1 at the genesis hash, or, after delivered
                // records were pruned, whatever it names (central holds what came before).
                Ok(o) if o.prev != prev.unwrap_or(if seq == 1 { GENESIS } else { o.prev }) => {
                    Some("does not follow the previous record".to_owned())
                }
                Ok(o) if hash.as_deref() != Some(to_hex(&o.hash).as_str()) => {
                    Some("hash column differs from the seal".to_owned())
                }
                Ok(o) => {
                    prev = Some(o.hash);
                    None
                }
            };
            if let Some(problem) = problem {
                report.first_bad.get_or_insert((seq, problem));
                break;
            }
        }
        Ok(report)
    }

    /// Bytes the outbox uses on disk: the database, its WAL and shared-memory files.
    pub fn bytes_used(&self) -> u64 {
        ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| {
                let mut p = self.path.as_os_str().to_owned();
                p.push(suffix);
                std::fs::metadata(PathBuf::from(p)).ok()
            })
            .map(|m| m.len())
            .sum()
    }

    /// The highest sequence number appended (0 when empty): one indexed read, for the uplink's
    /// every wake-up.
    pub fn last_seq(&self) -> Result<u64, OutboxError> {
        let last: i64 = self
            .lock()
            .query_row("SELECT last_seq FROM outbox_state WHERE id = 1", [], |r| {
                r.get(0)
            })
            .map_err(self.sql("read last_seq"))?;
        Ok(seq_from_sql(last))
    }

    /// Depth and positions of the outbox.
    pub fn stats(&self) -> Result<OutboxStats, OutboxError> {
        let conn = self.lock();
        let (last_seq, last_acked): (i64, i64) = conn
            .query_row(
                "SELECT last_seq, last_acked_seq FROM outbox_state WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.sql("read outbox_state"))?;
        // Delivery is a prefix of the sequence (see `mark_delivered`): the undelivered records
        // are exactly `last_acked_seq + 1 ..= last_seq`, and the oldest is the first of them. Both
        // are look-ups, not a count over the table: the heartbeat asks every few seconds, with a
        // backlog of millions.
        let depth = last_seq.saturating_sub(last_acked).max(0);
        let oldest: Option<String> = if depth > 0 {
            conn.query_row(
                "SELECT recorded_at FROM outbox WHERE seq = ?1",
                [last_acked.saturating_add(1)],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql("read oldest undelivered"))?
        } else {
            None
        };
        let oldest_undelivered_recorded_at = oldest
            .map(|value| {
                ts_from_sql(&value).map_err(|source| OutboxError::BadTimestamp {
                    path: self.path.clone(),
                    value,
                    source,
                })
            })
            .transpose()?;
        let blobs = self.blob_counts(&conn)?;
        drop(conn);
        Ok(OutboxStats {
            depth: seq_from_sql(depth),
            oldest_undelivered_recorded_at,
            last_seq: seq_from_sql(last_seq),
            last_acked_seq: seq_from_sql(last_acked),
            budget_bytes: *self
                .budget
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            high_water: self.high_water.load(std::sync::atomic::Ordering::Relaxed),
            blobs_bytes: blobs.bytes,
            blobs_pending: blobs.pending,
            blobs_synced: blobs.synced,
            blobs_evicted: blobs.evicted,
            blobs_evicted_total: blobs.evicted_total,
            full_rejections_total: self
                .full_rejections
                .load(std::sync::atomic::Ordering::Relaxed),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held cannot leave a half-done write: every method works in
        // a transaction that rolls back when dropped. So a poisoned lock is safe to take over.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read_conn(&self) -> MutexGuard<'_, Connection> {
        // Reads only: nothing half done to take over.
        self.reader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn seal_head(&self) -> MutexGuard<'_, SealHead> {
        // The head is replaced whole, after sealing succeeded, and checked against the file
        // before every commit: a panic cannot leave it half written.
        self.sealer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sql(&self, op: &'static str) -> impl Fn(rusqlite::Error) -> OutboxError + '_ {
        move |source| OutboxError::Sqlite {
            path: self.path.clone(),
            op,
            source,
        }
    }

    fn decode(&self, seq: u64, json: &str) -> Result<RecordEnvelope, OutboxError> {
        serde_json::from_str(json).map_err(|source| OutboxError::Json {
            path: self.path.clone(),
            seq,
            source,
        })
    }
}
