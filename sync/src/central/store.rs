//! # CentralStore: central's SQLite file of received crossings
//!
//! ## Format (schema version 1)
//! - `crossings(post, seq, crossing_id, recorded_at, received_at, envelope)`: primary key
//!   `(post, seq)`, `crossing_id` unique. `envelope` is the JSON as received, re-encoded.
//! - `post_progress(post, contiguous_up_to)`: per post, the highest `n` such that seqs `1..=n` are
//!   all stored. This is what central acknowledges.
//! - `rejected(id, received_at, topic, payload, reason)`: messages that could not be stored, kept
//!   for an operator to look at (nothing is dropped silently).
//!
//! ## Invariants
//! - A record is stored at most once: `INSERT OR IGNORE` on `(post, seq)` and on the crossing id,
//!   so a resend after a lost ack is a no-op that still returns the current ack position.
//! - The insert and the advance of `contiguous_up_to` commit in one transaction, and the caller
//!   acknowledges only after [`CentralStore::store`] returned: an ack never covers a record that
//!   is not on disk.
//! - `contiguous_up_to` only grows; with seqs 1, 2, 4 stored it is 2, and storing 3 moves it to 4.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use bcp_record::{Crossing, RecordEnvelope};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::db::{self, seq_from_sql, seq_to_sql, ts_from_sql, ts_to_sql, DbError};

const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE crossings (
    post        TEXT    NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq > 0),
    crossing_id TEXT    NOT NULL UNIQUE,
    recorded_at TEXT    NOT NULL,
    received_at TEXT    NOT NULL,
    envelope    TEXT    NOT NULL,
    PRIMARY KEY (post, seq)
) WITHOUT ROWID;
CREATE TABLE post_progress (
    post             TEXT    PRIMARY KEY,
    contiguous_up_to INTEGER NOT NULL CHECK (contiguous_up_to >= 0)
) WITHOUT ROWID;
CREATE TABLE rejected (
    id          INTEGER PRIMARY KEY,
    received_at TEXT    NOT NULL,
    topic       TEXT    NOT NULL,
    payload     BLOB    NOT NULL,
    reason      TEXT    NOT NULL
);
"#];

/// The schema version this build writes.
pub const CENTRAL_SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Errors of the central store; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum CentralError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("central store {path}: {op} failed")]
    Sqlite {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("central store {path}: record {post} #{seq} cannot be encoded or decoded as JSON")]
    Json {
        path: PathBuf,
        post: String,
        seq: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("central store {path}: stored timestamp {value:?} is not RFC 3339")]
    BadTimestamp {
        path: PathBuf,
        value: String,
        #[source]
        source: chrono::ParseError,
    },
    #[error("central store: record seq 0 from post {post} is invalid (sequences start at 1)")]
    ZeroSeq { post: String },
}

/// The result of storing one envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOutcome {
    /// False for a duplicate (already stored by `(post, seq)` or crossing id).
    pub newly_stored: bool,
    /// The highest seq `n` of this post with `1..=n` all stored: what to acknowledge.
    pub ack_up_to: u64,
}

/// A crossing as central keeps it (and as `bcp-central export --json` prints it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCrossing {
    pub post: String,
    pub seq: u64,
    pub received_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub crossing: Crossing,
}

/// A message central could not store, as kept in the `rejected` table.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedMessage {
    pub received_at: DateTime<Utc>,
    pub topic: String,
    pub payload: Vec<u8>,
    pub reason: String,
}

/// Central's database. `Send + Sync`; share as `Arc<CentralStore>`.
#[derive(Debug)]
pub struct CentralStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl CentralStore {
    /// Opens (or creates) the central database.
    pub fn open(path: &Path) -> Result<Self, CentralError> {
        let conn = db::open_migrated(path, MIGRATIONS)?;
        Ok(Self {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores `env` unless it is already stored, and returns the post's ack position.
    pub fn store(
        &self,
        env: &RecordEnvelope,
        received_at: DateTime<Utc>,
    ) -> Result<StoreOutcome, CentralError> {
        if env.seq == 0 {
            return Err(CentralError::ZeroSeq {
                post: env.post.clone(),
            });
        }
        let json = serde_json::to_string(env).map_err(|source| CentralError::Json {
            path: self.path.clone(),
            post: env.post.clone(),
            seq: env.seq,
            source,
        })?;
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin store"))?;
        let inserted = tx
            .execute(
                "INSERT OR IGNORE INTO crossings \
                 (post, seq, crossing_id, recorded_at, received_at, envelope) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    env.post,
                    seq_to_sql(env.seq),
                    env.crossing.id.to_string(),
                    ts_to_sql(env.recorded_at),
                    ts_to_sql(received_at),
                    json
                ],
            )
            .map_err(self.sql("insert crossing"))?;
        let mut contiguous: u64 = tx
            .query_row(
                "SELECT contiguous_up_to FROM post_progress WHERE post = ?1",
                [&env.post],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map_err(self.sql("read post progress"))?
            .map_or(0, seq_from_sql);
        if inserted > 0 && env.seq == contiguous + 1 {
            let mut exists = tx
                .prepare_cached("SELECT 1 FROM crossings WHERE post = ?1 AND seq = ?2")
                .map_err(self.sql("prepare progress scan"))?;
            while exists
                .exists(params![env.post, seq_to_sql(contiguous + 1)])
                .map_err(self.sql("scan progress"))?
            {
                contiguous += 1;
            }
            drop(exists);
            tx.execute(
                "INSERT INTO post_progress (post, contiguous_up_to) VALUES (?1, ?2) \
                 ON CONFLICT (post) DO UPDATE SET contiguous_up_to = excluded.contiguous_up_to",
                params![env.post, seq_to_sql(contiguous)],
            )
            .map_err(self.sql("advance post progress"))?;
        }
        tx.commit().map_err(self.sql("commit store"))?;
        Ok(StoreOutcome {
            newly_stored: inserted > 0,
            ack_up_to: contiguous,
        })
    }

    /// Keeps a message that could not be stored, with the reason.
    pub fn reject(
        &self,
        topic: &str,
        payload: &[u8],
        reason: &str,
        received_at: DateTime<Utc>,
    ) -> Result<(), CentralError> {
        self.lock()
            .execute(
                "INSERT INTO rejected (received_at, topic, payload, reason) VALUES (?1, ?2, ?3, ?4)",
                params![ts_to_sql(received_at), topic, payload, reason],
            )
            .map_err(self.sql("insert rejected message"))?;
        Ok(())
    }

    /// Every rejected message, oldest first.
    pub fn rejected(&self) -> Result<Vec<RejectedMessage>, CentralError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT received_at, topic, payload, reason FROM rejected ORDER BY id")
            .map_err(self.sql("prepare rejected"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(self.sql("query rejected"))?;
        let mut out = Vec::new();
        for row in rows {
            let (at, topic, payload, reason) = row.map_err(self.sql("read rejected row"))?;
            out.push(RejectedMessage {
                received_at: self.ts(at)?,
                topic,
                payload,
                reason,
            });
        }
        Ok(out)
    }

    /// Every stored crossing, ordered by post, then seq.
    pub fn export(&self) -> Result<Vec<StoredCrossing>, CentralError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT post, seq, received_at, envelope FROM crossings ORDER BY post, seq")
            .map_err(self.sql("prepare export"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(self.sql("query export"))?;
        let mut out = Vec::new();
        for row in rows {
            let (post, seq, received_at, json) = row.map_err(self.sql("read export row"))?;
            let seq = seq_from_sql(seq);
            let env: RecordEnvelope =
                serde_json::from_str(&json).map_err(|source| CentralError::Json {
                    path: self.path.clone(),
                    post: post.clone(),
                    seq,
                    source,
                })?;
            out.push(StoredCrossing {
                post,
                seq,
                received_at: self.ts(received_at)?,
                recorded_at: env.recorded_at,
                crossing: env.crossing,
            });
        }
        Ok(out)
    }

    fn ts(&self, value: String) -> Result<DateTime<Utc>, CentralError> {
        ts_from_sql(&value).map_err(|source| CentralError::BadTimestamp {
            path: self.path.clone(),
            value,
            source,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // Every method works in one statement or one transaction that rolls back when dropped,
        // so a panic elsewhere while holding the lock leaves nothing half-written.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sql(&self, op: &'static str) -> impl Fn(rusqlite::Error) -> CentralError + '_ {
        move |source| CentralError::Sqlite {
            path: self.path.clone(),
            op,
            source,
        }
    }
}

impl StoredCrossing {
    /// The operator's one-line summary, as `bcp-central serve` prints it:
    /// `stored TJDYU-01 #12 plate=1234AB01 weight=24560 kg dims=16500x2550x3990 mm scan=XR1-000012 latency=312 ms`
    /// (`-` for what the crossing lacks; latency is `received_at - crossing.left_at`).
    pub fn summary(&self) -> String {
        let c = &self.crossing;
        let plate = c.plate.as_ref().map_or("-".to_owned(), |p| p.text.clone());
        let weight = c
            .weight
            .as_ref()
            .map_or("-".to_owned(), |w| format!("{} kg", w.gross_kg));
        let dims = c.dimensions.map_or("-".to_owned(), |d| {
            format!("{}x{}x{} mm", d.length_mm, d.width_mm, d.height_mm)
        });
        let scan = c
            .scan
            .as_ref()
            .map_or("-".to_owned(), |s| s.scan_id.clone());
        // From the vehicle leaving the bridge to the record committed at central; `sync` is the
        // part from the post's commit to central's (the rest is the lane's late-evidence window).
        let latency_ms = (self.received_at - c.left_at).num_milliseconds();
        let sync_ms = (self.received_at - self.recorded_at).num_milliseconds();
        format!(
            "stored {} #{} plate={plate} weight={weight} dims={dims} scan={scan} latency={latency_ms} ms sync={sync_ms} ms",
            self.post, self.seq
        )
    }
}
