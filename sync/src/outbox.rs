//! # The outbox: the appliance's durable store-and-forward buffer
//!
//! Every crossing a lane produces is appended here **before** anything tries to send it; the
//! uplink reads from here and marks rows delivered only when central has confirmed that it
//! committed them (an application-level [`Ack`](bcp_record::Ack), not a broker PUBACK).
//!
//! ## Format (schema version 1)
//! - `outbox(seq, uuid, recorded_at, envelope, delivered_at)`: one row per crossing. `seq` is the
//!   per-post sequence number (the `INTEGER PRIMARY KEY`), `uuid` the crossing id (unique),
//!   `envelope` the exact JSON [`RecordEnvelope`] that goes on the wire, `delivered_at` is `NULL`
//!   until central acknowledged it. A partial index covers the undelivered rows.
//! - `outbox_state`: a single row holding the post this file belongs to, `last_seq` and
//!   `last_acked_seq`.
//!
//! ## Invariants
//! - One file belongs to one post; opening it for another post is refused ([`OutboxError::WrongPost`]).
//! - `seq` starts at 1 and grows by exactly 1 per append, without gaps, across reopen; the counter
//!   lives in `outbox_state` so that pruning delivered rows later cannot make a number reappear.
//! - [`Outbox::append`] commits (WAL, `synchronous=FULL`) before it returns the envelope, so a
//!   returned record survives a power cut. Appending a crossing whose id is already stored returns
//!   the stored envelope instead of a second row (a lane retrying after a crash cannot duplicate).
//! - Delivery only moves forward: [`Outbox::mark_delivered`] never clears `delivered_at` and
//!   `last_acked_seq` never decreases; it is also capped at `last_seq` (central cannot confirm a
//!   record this outbox never wrote).
//! - Rows are never deleted by this module; there is no retention yet. When the disk fills, the
//!   append fails with an error and the caller must keep the crossing elsewhere (nothing is lost
//!   silently).
//!
//! The connection sits behind a `Mutex`: every method is one short transaction, so `Outbox` is
//! `Send + Sync` and is shared as `Arc<Outbox>` between the lanes and the uplink.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use bcp_record::{Crossing, RecordEnvelope};
use chrono::{DateTime, SubsecRound as _, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::db::{self, seq_from_sql, seq_to_sql, ts_from_sql, ts_to_sql, DbError};

/// Schema migrations; index `i` takes the file from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[r#"
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
"#];

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
}

/// The durable buffer of one post's records. See the module documentation.
#[derive(Debug)]
pub struct Outbox {
    path: PathBuf,
    post: String,
    conn: Mutex<Connection>,
}

impl Outbox {
    /// Opens (or creates) the outbox file of `post`.
    pub fn open(path: &Path, post: &str) -> Result<Self, OutboxError> {
        let conn = db::open_migrated(path, MIGRATIONS)?;
        let outbox = Self {
            path: path.to_owned(),
            post: post.to_owned(),
            conn: Mutex::new(conn),
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
        Ok(outbox)
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
        if crossing.post != self.post {
            return Err(OutboxError::ForeignCrossing {
                path: self.path.clone(),
                id: crossing.id,
                crossing_post: crossing.post.clone(),
                post: self.post.clone(),
            });
        }
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin append"))?;
        let id = crossing.id.to_string();
        let existing: Option<(i64, String)> = tx
            .query_row(
                "SELECT seq, envelope FROM outbox WHERE uuid = ?1",
                [&id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.sql("look up crossing id"))?;
        if let Some((seq, json)) = existing {
            return self.decode(seq_from_sql(seq), &json);
        }
        let last: i64 = tx
            .query_row("SELECT last_seq FROM outbox_state WHERE id = 1", [], |r| {
                r.get(0)
            })
            .map_err(self.sql("read last_seq"))?;
        let seq = seq_from_sql(last) + 1;
        let envelope = RecordEnvelope {
            post: self.post.clone(),
            seq,
            // Stored with microseconds: truncate so that the returned envelope equals the stored one.
            recorded_at: Utc::now().trunc_subsecs(6),
            crossing: crossing.clone(),
        };
        let json = serde_json::to_string(&envelope).map_err(|source| OutboxError::Json {
            path: self.path.clone(),
            seq,
            source,
        })?;
        tx.execute(
            "INSERT INTO outbox (seq, uuid, recorded_at, envelope) VALUES (?1, ?2, ?3, ?4)",
            params![seq_to_sql(seq), id, ts_to_sql(envelope.recorded_at), json],
        )
        .map_err(self.sql("insert record"))?;
        tx.execute(
            "UPDATE outbox_state SET last_seq = ?1 WHERE id = 1",
            [seq_to_sql(seq)],
        )
        .map_err(self.sql("advance last_seq"))?;
        tx.commit().map_err(self.sql("commit append"))?;
        Ok(envelope)
    }

    /// Up to `limit` undelivered records with `seq > after_seq`, in sequence order.
    pub fn pending(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<RecordEnvelope>, OutboxError> {
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
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(self.sql("query pending"))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, json) = row.map_err(self.sql("read pending row"))?;
            out.push(self.decode(seq_from_sql(seq), &json)?);
        }
        Ok(out)
    }

    /// Marks every record with `seq <= up_to_seq` delivered; returns how many were newly marked.
    ///
    /// Idempotent, and never un-marks: an older acknowledgement changes nothing.
    pub fn mark_delivered(&self, up_to_seq: u64) -> Result<u64, OutboxError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin mark_delivered"))?;
        let changed = tx
            .execute(
                "UPDATE outbox SET delivered_at = ?1 WHERE seq <= ?2 AND delivered_at IS NULL",
                params![ts_to_sql(Utc::now()), seq_to_sql(up_to_seq)],
            )
            .map_err(self.sql("mark delivered"))?;
        tx.execute(
            "UPDATE outbox_state SET last_acked_seq = MAX(last_acked_seq, MIN(?1, last_seq)) \
             WHERE id = 1",
            [seq_to_sql(up_to_seq)],
        )
        .map_err(self.sql("advance last_acked_seq"))?;
        tx.commit().map_err(self.sql("commit mark_delivered"))?;
        Ok(changed as u64)
    }

    /// Depth and positions of the outbox.
    pub fn stats(&self) -> Result<OutboxStats, OutboxError> {
        let conn = self.lock();
        let (depth, oldest): (i64, Option<String>) = conn
            .query_row(
                "SELECT COUNT(*), MIN(recorded_at) FROM outbox WHERE delivered_at IS NULL",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.sql("count undelivered"))?;
        let (last_seq, last_acked): (i64, i64) = conn
            .query_row(
                "SELECT last_seq, last_acked_seq FROM outbox_state WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.sql("read outbox_state"))?;
        let oldest_undelivered_recorded_at = oldest
            .map(|value| {
                ts_from_sql(&value).map_err(|source| OutboxError::BadTimestamp {
                    path: self.path.clone(),
                    value,
                    source,
                })
            })
            .transpose()?;
        Ok(OutboxStats {
            depth: seq_from_sql(depth),
            oldest_undelivered_recorded_at,
            last_seq: seq_from_sql(last_seq),
            last_acked_seq: seq_from_sql(last_acked),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held cannot leave a half-done write: every method works in
        // a transaction that rolls back when dropped. So a poisoned lock is safe to take over.
        self.conn
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
