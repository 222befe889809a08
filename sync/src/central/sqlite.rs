//! # The SQLite backend: central's store in one file (the embedded default)
//!
//! Opened with [`crate::db::open_migrated`] (WAL, `synchronous=FULL`, migrations by
//! `user_version`, a newer file refused untouched). One connection behind a mutex; every method
//! is one statement or one `BEGIN IMMEDIATE` transaction. Timestamps are RFC 3339 text
//! ([`crate::db::ts_to_sql`]); hashes and keys hex text.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use bcp_record::seal::{Opened, SealError};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::batch::{self, Loaded, Lookups, Writes};
use super::store::{
    Backend, CentralError, ExportRow, Outcome, PostSummary, RejectedMessage, RejectedRow, VerifyRow,
};
use super::verify::KeyPolicy;
use crate::db::{self, seq_from_sql, seq_to_sql, ts_from_sql, ts_to_sql};

pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
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
"#,
    r#"
ALTER TABLE crossings ADD COLUMN hash TEXT;
ALTER TABLE crossings ADD COLUMN prev_hash TEXT;
CREATE TABLE post_keys (
    post       TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    pinned_at  TEXT NOT NULL,
    source     TEXT NOT NULL
) WITHOUT ROWID;
ALTER TABLE post_progress ADD COLUMN last_contact TEXT;
ALTER TABLE rejected ADD COLUMN post TEXT;
ALTER TABLE rejected ADD COLUMN seq INTEGER;
"#,
    r#"
ALTER TABLE post_progress ADD COLUMN last_status TEXT;
"#,
];

/// Central's SQLite file.
#[derive(Debug)]
pub(crate) struct SqliteStore {
    path: PathBuf,
    location: String,
    conn: Mutex<Connection>,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, CentralError> {
        let conn = db::open_migrated(path, MIGRATIONS)?;
        Ok(Self {
            path: path.to_owned(),
            location: path.display().to_string(),
            conn: Mutex::new(conn),
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

    fn ts(&self, value: String) -> Result<DateTime<Utc>, CentralError> {
        ts_from_sql(&value).map_err(|source| CentralError::BadTimestamp {
            db: self.location.clone(),
            value,
            source,
        })
    }

    fn load(&self, tx: &Connection, post: &str, want: &Lookups) -> Result<Loaded, CentralError> {
        let mut loaded = Loaded {
            pinned_key: key_of(tx, post).map_err(self.sql("read post key"))?,
            ..Loaded::default()
        };
        let mut chain = tx
            .prepare_cached("SELECT hash, prev_hash FROM crossings WHERE post = ?1 AND seq = ?2")
            .map_err(self.sql("prepare chain look-up"))?;
        for &seq in &want.seqs {
            if let Some(row) = chain
                .query_row(params![post, seq_to_sql(seq)], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(self.sql("read a chain neighbour"))?
            {
                loaded.chain.insert(seq, row);
            }
        }
        let mut by_id = tx
            .prepare_cached("SELECT post, seq FROM crossings WHERE crossing_id = ?1")
            .map_err(self.sql("prepare crossing id look-up"))?;
        for id in &want.crossing_ids {
            if let Some((p, s)) = by_id
                .query_row([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .optional()
                .map_err(self.sql("look up crossing id"))?
            {
                loaded.crossing_ids.insert(id.clone(), (p, seq_from_sql(s)));
            }
        }
        Ok(loaded)
    }

    #[allow(clippy::too_many_arguments)] // one message: its post, topic, payloads, time and writes
    fn write(
        &self,
        tx: &Connection,
        post: &str,
        topic: &str,
        payloads: &[Vec<u8>],
        received_at: DateTime<Utc>,
        writes: &Writes,
    ) -> Result<(), CentralError> {
        if let Some(key) = &writes.pin_key {
            tx.execute(
                "INSERT INTO post_keys (post, public_key, pinned_at, source) \
                 VALUES (?1, ?2, ?3, 'first record')",
                params![post, key, ts_to_sql(received_at)],
            )
            .map_err(self.sql("pin post key"))?;
        }
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO crossings \
                 (post, seq, crossing_id, recorded_at, received_at, envelope, hash, prev_hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(self.sql("prepare insert crossing"))?;
        for c in &writes.crossings {
            insert
                .execute(params![
                    post,
                    seq_to_sql(c.seq),
                    c.crossing_id,
                    ts_to_sql(c.recorded_at),
                    ts_to_sql(received_at),
                    c.envelope,
                    c.hash,
                    c.prev_hash,
                ])
                .map_err(self.sql("insert crossing"))?;
        }
        for r in &writes.rejected {
            insert_rejected(
                tx,
                &RejectedRow {
                    topic,
                    payload: payloads.get(r.payload).map_or(&[][..], Vec::as_slice),
                    reason: &r.reason,
                    post: Some(post),
                    seq: r.seq,
                    received_at,
                },
            )
            .map_err(self.sql("insert rejected message"))?;
        }
        Ok(())
    }

    /// Records the contact and moves `contiguous_up_to` over every stored seq that follows it.
    fn advance_progress(
        &self,
        tx: &Connection,
        post: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, CentralError> {
        let mut contiguous = progress(tx, post).map_err(self.sql("read post progress"))?;
        {
            let mut exists = tx
                .prepare_cached("SELECT 1 FROM crossings WHERE post = ?1 AND seq = ?2")
                .map_err(self.sql("prepare progress scan"))?;
            while exists
                .exists(params![post, seq_to_sql(contiguous + 1)])
                .map_err(self.sql("scan progress"))?
            {
                contiguous += 1;
            }
        }
        tx.execute(
            "INSERT INTO post_progress (post, contiguous_up_to, last_contact) VALUES (?1, ?2, ?3) \
             ON CONFLICT (post) DO UPDATE SET contiguous_up_to = excluded.contiguous_up_to, \
             last_contact = excluded.last_contact",
            params![post, seq_to_sql(contiguous), ts_to_sql(now)],
        )
        .map_err(self.sql("advance post progress"))?;
        Ok(contiguous)
    }
}

impl Backend for SqliteStore {
    fn location(&self) -> &str {
        &self.location
    }

    fn receive_batch(
        &self,
        post: &str,
        topic: &str,
        payloads: &[Vec<u8>],
        opened: Vec<Result<Opened, SealError>>,
        policy: KeyPolicy,
        received_at: DateTime<Utc>,
    ) -> Result<(Vec<Outcome>, u64), CentralError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin receive"))?;
        let loaded = self.load(&tx, post, &Lookups::of(post, &opened))?;
        let (outcomes, writes) = batch::decide(post, payloads, opened, loaded, policy, received_at);
        self.write(&tx, post, topic, payloads, received_at, &writes)?;
        let ack_up_to = self.advance_progress(&tx, post, received_at)?;
        tx.commit().map_err(self.sql("commit receive"))?;
        Ok((outcomes, ack_up_to))
    }

    fn insert_rejected(&self, row: RejectedRow<'_>) -> Result<(), CentralError> {
        insert_rejected(&self.lock(), &row).map_err(self.sql("insert rejected message"))?;
        Ok(())
    }

    fn progress_of(&self, post: &str) -> Result<u64, CentralError> {
        progress(&self.lock(), post).map_err(self.sql("read post progress"))
    }

    fn record_status(&self, post: &str, at: DateTime<Utc>, json: &str) -> Result<(), CentralError> {
        self.lock()
            .execute(
                "INSERT INTO post_progress (post, contiguous_up_to, last_contact, last_status) \
                 VALUES (?1, 0, ?2, ?3) ON CONFLICT (post) DO UPDATE SET \
                 last_contact = excluded.last_contact, last_status = excluded.last_status",
                params![post, ts_to_sql(at), json],
            )
            .map_err(self.sql("record post status"))?;
        Ok(())
    }

    fn post_key(&self, post: &str) -> Result<Option<String>, CentralError> {
        key_of(&self.lock(), post).map_err(self.sql("read post key"))
    }

    fn insert_post_key(
        &self,
        post: &str,
        key_hex: &str,
        source: &str,
        at: DateTime<Utc>,
    ) -> Result<(), CentralError> {
        self.lock()
            .execute(
                "INSERT INTO post_keys (post, public_key, pinned_at, source) VALUES (?1, ?2, ?3, ?4)",
                params![post, key_hex, ts_to_sql(at), source],
            )
            .map_err(self.sql("register post key"))?;
        Ok(())
    }

    fn rejected(&self) -> Result<Vec<RejectedMessage>, CentralError> {
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

    fn export_rows(
        &self,
        post: Option<&str>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<ExportRow>, CentralError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT post, seq, received_at, envelope FROM crossings \
                 WHERE (?1 IS NULL OR post = ?1) AND (?2 IS NULL OR recorded_at >= ?2) \
                 ORDER BY post, seq",
            )
            .map_err(self.sql("prepare export"))?;
        let rows = stmt
            .query_map(params![post, since.map(ts_to_sql)], |r| {
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
            let (post, seq, received_at, envelope) = row.map_err(self.sql("read export row"))?;
            out.push(ExportRow {
                post,
                seq: seq_from_sql(seq),
                received_at: self.ts(received_at)?,
                envelope,
            });
        }
        Ok(out)
    }

    fn for_each_verify_row(
        &self,
        each: &mut (dyn FnMut(VerifyRow) + Send),
    ) -> Result<(), CentralError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT c.post, c.seq, c.envelope, c.hash, c.prev_hash, k.public_key \
                 FROM crossings c LEFT JOIN post_keys k ON k.post = c.post ORDER BY c.post, c.seq",
            )
            .map_err(self.sql("prepare verify"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(VerifyRow {
                    post: r.get(0)?,
                    seq: seq_from_sql(r.get(1)?),
                    envelope: r.get(2)?,
                    hash: r.get(3)?,
                    prev_hash: r.get(4)?,
                    public_key: r.get(5)?,
                })
            })
            .map_err(self.sql("query verify"))?;
        for row in rows {
            each(row.map_err(self.sql("read verify row"))?);
        }
        Ok(())
    }

    fn for_each_envelope(
        &self,
        each: &mut (dyn FnMut(String, u64, String) + Send),
    ) -> Result<(), CentralError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT post, seq, envelope FROM crossings")
            .map_err(self.sql("prepare envelope scan"))?;
        let mut rows = stmt.query([]).map_err(self.sql("query envelopes"))?;
        while let Some(r) = rows.next().map_err(self.sql("read envelope row"))? {
            let read = || -> rusqlite::Result<(String, i64, String)> {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            };
            let (post, seq, envelope) = read().map_err(self.sql("read envelope row"))?;
            each(post, seq_from_sql(seq), envelope);
        }
        Ok(())
    }

    fn post_rows(&self) -> Result<Vec<(PostSummary, Option<String>)>, CentralError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "WITH names AS (SELECT post FROM post_keys UNION SELECT post FROM post_progress \
                   UNION SELECT post FROM rejected WHERE post IS NOT NULL) \
                 SELECT n.post, k.public_key, k.source, \
                   (SELECT COUNT(*) FROM crossings c WHERE c.post = n.post), \
                   (SELECT MAX(seq) FROM crossings c WHERE c.post = n.post), \
                   COALESCE(p.contiguous_up_to, 0), p.last_contact, \
                   (SELECT COUNT(*) FROM rejected r WHERE r.post = n.post), p.last_status \
                 FROM names n LEFT JOIN post_keys k ON k.post = n.post \
                 LEFT JOIN post_progress p ON p.post = n.post ORDER BY n.post",
            )
            .map_err(self.sql("prepare posts"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, Option<String>>(8)?,
                ))
            })
            .map_err(self.sql("query posts"))?;
        let mut out = Vec::new();
        for row in rows {
            let (
                post,
                public_key,
                key_source,
                stored,
                highest,
                contiguous,
                contact,
                rejected,
                status,
            ) = row.map_err(self.sql("read posts row"))?;
            out.push((
                PostSummary {
                    post,
                    public_key,
                    key_source,
                    stored: seq_from_sql(stored),
                    highest_seq: highest.map_or(0, seq_from_sql),
                    contiguous_up_to: seq_from_sql(contiguous),
                    gaps: Vec::new(),
                    last_contact: contact.map(|c| self.ts(c)).transpose()?,
                    rejected: seq_from_sql(rejected),
                    status: None,
                },
                status,
            ));
        }
        Ok(out)
    }

    fn gaps(&self, post: &str, limit: i64) -> Result<Vec<(u64, u64)>, CentralError> {
        let conn = self.lock();
        let mut gaps = conn
            .prepare_cached(
                "SELECT prev + 1, seq - 1 FROM (SELECT seq, LAG(seq, 1, 0) OVER (ORDER BY seq) \
                 AS prev FROM crossings WHERE post = ?1) WHERE seq > prev + 1 ORDER BY seq LIMIT ?2",
            )
            .map_err(self.sql("prepare gaps"))?;
        let rows = gaps
            .query_map(params![post, limit], |r| {
                Ok((seq_from_sql(r.get(0)?), seq_from_sql(r.get(1)?)))
            })
            .map_err(self.sql("query gaps"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.sql("read gaps"))
    }
}

fn key_of(conn: &Connection, post: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT public_key FROM post_keys WHERE post = ?1",
        [post],
        |r| r.get(0),
    )
    .optional()
}

fn progress(conn: &Connection, post: &str) -> rusqlite::Result<u64> {
    Ok(conn
        .query_row(
            "SELECT contiguous_up_to FROM post_progress WHERE post = ?1",
            [post],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .map_or(0, seq_from_sql))
}

fn insert_rejected(conn: &Connection, row: &RejectedRow<'_>) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT INTO rejected (received_at, topic, payload, reason, post, seq) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            ts_to_sql(row.received_at),
            row.topic,
            row.payload,
            row.reason,
            row.post,
            row.seq.map(seq_to_sql)
        ],
    )
}
