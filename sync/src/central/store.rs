//! # CentralStore: central's SQLite file of received crossings
//!
//! ## Format (schema version 3)
//! - `crossings(post, seq, crossing_id, recorded_at, received_at, envelope, hash, prev_hash)`:
//!   primary key `(post, seq)`, `crossing_id` unique. `envelope` is the sealed JSON exactly as
//!   received (so it can be verified again at any time), `hash`/`prev_hash` its seal (hex;
//!   `NULL` on rows stored by version 1).
//! - `post_keys(post, public_key, pinned_at, source)`: the Ed25519 key each post's records must be
//!   signed with: registered by the operator (`--post-key`, `--keys-dir`) or pinned from the
//!   post's first record ([`KeyPolicy::PinFirst`]).
//! - `post_progress(post, contiguous_up_to, last_contact, last_status)`: per post, the highest
//!   `n` such that seqs `1..=n` are all stored (what central acknowledges), when it last heard
//!   from the post, and its last status message (schema version 3: birth, heartbeat with queue
//!   depth and oldest unsynced age, or last will).
//! - `rejected(id, received_at, topic, payload, reason, post, seq)`: messages that could not be
//!   stored, kept aside for an operator (nothing is dropped silently, nothing rejected is stored
//!   as good).
//!
//! ## Invariants
//! - Only records whose seal holds are stored ([`bcp_record::seal::open`], then
//!   [`super::verify::judge`]: key, duplicate or conflict, replay, chain). A record is stored at
//!   most once by `(post, seq)`; the same record again is a duplicate that returns the current
//!   ack position.
//! - The verdict's reads, the insert and the advance of `contiguous_up_to` commit in one
//!   transaction, and the caller acknowledges only after [`CentralStore::receive`] returned: an
//!   ack never covers a record that is not on disk.
//! - `contiguous_up_to` only grows; with seqs 1, 2, 4 stored it is 2, and storing 3 moves it to 4.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use bcp_record::seal::{self, from_hex, to_hex, Opened, SealError};
use bcp_record::{topics, Crossing, PostStatus, RecordEnvelope};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use super::verify::{judge, KeyPolicy, Surroundings, Verdict};
use crate::db::{self, seq_from_sql, seq_to_sql, ts_from_sql, ts_to_sql, DbError};
use crate::wire;

const MIGRATIONS: &[&str] = &[
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
    #[error("post {post} already has key {registered}; refusing to replace it with {given}")]
    KeyConflict {
        post: String,
        registered: String,
        given: String,
    },
}

/// What [`CentralStore::receive`] did with one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The post named by the topic, if the topic is a records topic.
    pub post: Option<String>,
    pub outcome: Outcome,
    /// The highest seq `n` of the post with `1..=n` all stored: what to acknowledge (0: none).
    pub ack_up_to: u64,
}

/// What [`CentralStore::receive_message`] did with one MQTT message (one or many records).
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedMessage {
    /// The post named by the topic, if the topic is a records topic.
    pub post: Option<String>,
    /// One per record, in the message's order (one for a message that could not be taken apart).
    pub outcomes: Vec<Outcome>,
    /// The post's ack position after the message (0: none).
    pub ack_up_to: u64,
}

/// The three ways a record ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Verified and committed.
    Stored {
        crossing: Box<StoredCrossing>,
        /// Records before this one are missing (a gap, shown until they arrive).
        gap_before: bool,
    },
    /// Already stored (same hash): acknowledged again, not stored twice.
    Duplicate,
    /// Kept aside in the `rejected` table with this reason.
    Rejected(String),
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

/// What [`CentralStore::verify_all`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records read.
    pub checked: u64,
    /// `(post, seq, what is wrong)` for each record that fails.
    pub problems: Vec<(String, u64, String)>,
}

/// How many gaps [`CentralStore::posts`] lists per post.
const MAX_GAPS_SHOWN: i64 = 20;

/// One post as `bcp-central posts` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostSummary {
    pub post: String,
    /// The key its records must be signed with (hex), if central has one.
    pub public_key: Option<String>,
    /// Where that key came from (`first record`, `--post-key FILE`, `keys dir`).
    pub key_source: Option<String>,
    /// Records stored.
    pub stored: u64,
    pub highest_seq: u64,
    /// Seqs `1..=contiguous_up_to` are all stored (what central acknowledges).
    pub contiguous_up_to: u64,
    /// Missing seq ranges `(first, last)` below `highest_seq` (the first few).
    pub gaps: Vec<(u64, u64)>,
    pub last_contact: Option<DateTime<Utc>>,
    /// Messages on this post's topic kept aside (bad signature, wrong key, broken chain, replay).
    pub rejected: u64,
    /// The post's last status message: online/offline, its backlog (depth) and the age of its
    /// oldest unsynced record when it sent it.
    pub status: Option<PostStatus>,
}

impl PostSummary {
    /// `ok`, `gap` (records missing) or `rejected` (something was kept aside: look at it).
    pub fn chain_state(&self) -> &'static str {
        if self.rejected > 0 {
            "rejected"
        } else if self.highest_seq > self.contiguous_up_to {
            "gap"
        } else {
            "ok"
        }
    }
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
    policy: KeyPolicy,
    conn: Mutex<Connection>,
}

impl CentralStore {
    /// Opens (or creates) the central database.
    pub fn open(path: &Path) -> Result<Self, CentralError> {
        let conn = db::open_migrated(path, MIGRATIONS)?;
        Ok(Self {
            path: path.to_owned(),
            policy: KeyPolicy::default(),
            conn: Mutex::new(conn),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Verifies, stores (at most once) or rejects one sealed envelope (plain JSON) from `topic`,
    /// in one transaction.
    ///
    /// Rejections are kept in the `rejected` table with the reason; the return value says what
    /// happened and the post's ack position.
    pub fn receive(
        &self,
        topic: &str,
        payload: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<Received, CentralError> {
        let mut m = self.receive_records(topic, &[payload.to_vec()], received_at)?;
        let outcome = m.outcomes.pop().unwrap_or(Outcome::Duplicate);
        Ok(Received {
            post: m.post,
            outcome,
            ack_up_to: m.ack_up_to,
        })
    }

    /// Takes one MQTT message from `topic`: a batch ([`crate::wire`]) or a single envelope. All
    /// its records are judged and stored in one transaction (one fsync), in order.
    pub fn receive_message(
        &self,
        topic: &str,
        payload: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<ReceivedMessage, CentralError> {
        if !wire::is_batch(payload) {
            return self.receive_records(topic, &[payload.to_vec()], received_at);
        }
        match wire::decode_batch(payload) {
            Ok(records) => self.receive_records(topic, &records, received_at),
            Err(e) => {
                let post = topics::post_of_records_topic(topic);
                let r =
                    self.rejected_outcome(post, None, topic, payload, e.to_string(), received_at)?;
                Ok(ReceivedMessage {
                    post: r.post,
                    outcomes: vec![r.outcome],
                    ack_up_to: r.ack_up_to,
                })
            }
        }
    }

    fn receive_records(
        &self,
        topic: &str,
        payloads: &[Vec<u8>],
        received_at: DateTime<Utc>,
    ) -> Result<ReceivedMessage, CentralError> {
        let Some(post) = topics::post_of_records_topic(topic) else {
            let payload = payloads.first().map_or(&[][..], Vec::as_slice);
            let r = self.rejected_outcome(
                None,
                None,
                topic,
                payload,
                "the topic is not a records topic".into(),
                received_at,
            )?;
            return Ok(ReceivedMessage {
                post: None,
                outcomes: vec![r.outcome],
                ack_up_to: 0,
            });
        };
        // Hash and signature checks need no database: done before the lock, on every core.
        let opened = open_all(payloads);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin receive"))?;
        let mut outcomes = Vec::with_capacity(payloads.len());
        for (payload, opened) in payloads.iter().zip(opened) {
            outcomes.push(self.receive_one(&tx, topic, post, payload, opened, received_at)?);
        }
        let ack_up_to = self.advance_progress(&tx, post, received_at)?;
        tx.commit().map_err(self.sql("commit receive"))?;
        Ok(ReceivedMessage {
            post: Some(post.to_owned()),
            outcomes,
            ack_up_to,
        })
    }

    /// One envelope inside the receiving transaction.
    fn receive_one(
        &self,
        tx: &rusqlite::Transaction<'_>,
        topic: &str,
        post: &str,
        payload: &[u8],
        opened: Result<Opened, SealError>,
        received_at: DateTime<Utc>,
    ) -> Result<Outcome, CentralError> {
        let reject = |seq: Option<u64>, reason: String| -> Result<Outcome, CentralError> {
            insert_rejected(tx, topic, payload, &reason, Some(post), seq, received_at)
                .map_err(self.sql("insert rejected message"))?;
            Ok(Outcome::Rejected(reason))
        };
        let opened = match opened {
            Ok(opened) => opened,
            Err(e) => return reject(None, e.to_string()),
        };
        let env = &opened.envelope;
        if env.post != post {
            let reason = format!(
                "envelope post {:?} does not match the topic's post {post:?}",
                env.post
            );
            return reject(Some(env.seq), reason);
        }
        if env.seq == 0 {
            return reject(
                Some(0),
                "sequence number 0 (sequences start at 1)".to_owned(),
            );
        }
        let around = self.surroundings(tx, env)?;
        let seq = env.seq;
        match judge(&opened, &around, self.policy) {
            Verdict::Duplicate => Ok(Outcome::Duplicate),
            Verdict::Reject(why) => reject(Some(seq), why.to_string()),
            Verdict::Store {
                pin_key,
                gap_before,
            } => {
                if pin_key {
                    tx.execute(
                        "INSERT INTO post_keys (post, public_key, pinned_at, source) \
                         VALUES (?1, ?2, ?3, 'first record')",
                        params![post, to_hex(&opened.key), ts_to_sql(received_at)],
                    )
                    .map_err(self.sql("pin post key"))?;
                    tracing::warn!(post, public_key = %to_hex(&opened.key), "no key registered for this post: pinned the key of its first record (trust on first use)");
                }
                let text = String::from_utf8_lossy(payload);
                tx.execute(
                    "INSERT INTO crossings \
                     (post, seq, crossing_id, recorded_at, received_at, envelope, hash, prev_hash) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        post,
                        seq_to_sql(seq),
                        env.crossing.id.to_string(),
                        ts_to_sql(env.recorded_at),
                        ts_to_sql(received_at),
                        text,
                        to_hex(&opened.hash),
                        to_hex(&opened.prev),
                    ],
                )
                .map_err(self.sql("insert crossing"))?;
                if gap_before {
                    tracing::warn!(
                        post,
                        seq,
                        "gap: records before this one have not arrived yet"
                    );
                }
                Ok(Outcome::Stored {
                    crossing: Box::new(StoredCrossing {
                        post: post.to_owned(),
                        seq,
                        received_at,
                        recorded_at: env.recorded_at,
                        crossing: env.crossing.clone(),
                    }),
                    gap_before,
                })
            }
        }
    }

    /// Reads what [`judge`] needs.
    fn surroundings(
        &self,
        tx: &rusqlite::Transaction<'_>,
        env: &RecordEnvelope,
    ) -> Result<Surroundings, CentralError> {
        let hash_at = |seq: u64, col: &str| -> Result<Option<Option<[u8; 32]>>, CentralError> {
            let sql = format!("SELECT {col} FROM crossings WHERE post = ?1 AND seq = ?2");
            let found: Option<Option<String>> = tx
                .query_row(&sql, params![env.post, seq_to_sql(seq)], |r| r.get(0))
                .optional()
                .map_err(self.sql("read a chain neighbour"))?;
            Ok(found.map(|h| h.and_then(|h| from_hex::<32>(&h))))
        };
        let pinned_key = tx
            .query_row(
                "SELECT public_key FROM post_keys WHERE post = ?1",
                [&env.post],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(self.sql("read post key"))?
            .and_then(|k| from_hex::<32>(&k));
        let same_crossing = tx
            .query_row(
                "SELECT post, seq FROM crossings WHERE crossing_id = ?1",
                [env.crossing.id.to_string()],
                |r| Ok((r.get::<_, String>(0)?, seq_from_sql(r.get(1)?))),
            )
            .optional()
            .map_err(self.sql("look up crossing id"))?
            .filter(|(p, s)| !(p == &env.post && *s == env.seq));
        Ok(Surroundings {
            pinned_key,
            same_seq: hash_at(env.seq, "hash")?,
            same_crossing,
            before: if env.seq > 1 {
                hash_at(env.seq - 1, "hash")?
            } else {
                None
            },
            after_prev: hash_at(env.seq + 1, "prev_hash")?,
        })
    }

    /// Records the contact and moves `contiguous_up_to` over every stored seq that follows it.
    fn advance_progress(
        &self,
        tx: &rusqlite::Transaction<'_>,
        post: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, CentralError> {
        let mut contiguous: u64 = tx
            .query_row(
                "SELECT contiguous_up_to FROM post_progress WHERE post = ?1",
                [post],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map_err(self.sql("read post progress"))?
            .map_or(0, seq_from_sql);
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

    fn rejected_outcome(
        &self,
        post: Option<&str>,
        seq: Option<u64>,
        topic: &str,
        payload: &[u8],
        reason: String,
        received_at: DateTime<Utc>,
    ) -> Result<Received, CentralError> {
        insert_rejected(
            &self.lock(),
            topic,
            payload,
            &reason,
            post,
            seq,
            received_at,
        )
        .map_err(self.sql("insert rejected message"))?;
        let ack_up_to = match post {
            Some(post) => self.progress_of(post)?,
            None => 0,
        };
        Ok(Received {
            post: post.map(str::to_owned),
            outcome: Outcome::Rejected(reason),
            ack_up_to,
        })
    }

    fn progress_of(&self, post: &str) -> Result<u64, CentralError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT contiguous_up_to FROM post_progress WHERE post = ?1",
                [post],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map_err(self.sql("read post progress"))?
            .map_or(0, seq_from_sql))
    }

    /// Keeps a post's status message (birth, heartbeat, last will) as its latest.
    pub fn record_status(
        &self,
        status: &PostStatus,
        received_at: DateTime<Utc>,
    ) -> Result<(), CentralError> {
        let json = serde_json::to_string(status).map_err(|source| CentralError::Json {
            path: self.path.clone(),
            post: status.post.clone(),
            seq: 0,
            source,
        })?;
        self.lock()
            .execute(
                "INSERT INTO post_progress (post, contiguous_up_to, last_contact, last_status) \
                 VALUES (?1, 0, ?2, ?3) ON CONFLICT (post) DO UPDATE SET \
                 last_contact = excluded.last_contact, last_status = excluded.last_status",
                params![status.post, ts_to_sql(received_at), json],
            )
            .map_err(self.sql("record post status"))?;
        Ok(())
    }

    /// Gives central a post's public key (from `--post-key` or a keys folder). Registering the
    /// same key again is a no-op; a different key for a post that has one is refused.
    pub fn register_post_key(
        &self,
        post: &str,
        key: &[u8; 32],
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<(), CentralError> {
        let conn = self.lock();
        let existing: Option<String> = conn
            .query_row(
                "SELECT public_key FROM post_keys WHERE post = ?1",
                [post],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql("read post key"))?;
        match existing {
            Some(k) if from_hex::<32>(&k) == Some(*key) => Ok(()),
            Some(k) => Err(CentralError::KeyConflict {
                post: post.to_owned(),
                registered: k,
                given: to_hex(key),
            }),
            None => {
                conn.execute(
                    "INSERT INTO post_keys (post, public_key, pinned_at, source) VALUES (?1, ?2, ?3, ?4)",
                    params![post, to_hex(key), ts_to_sql(now), source],
                )
                .map_err(self.sql("register post key"))?;
                Ok(())
            }
        }
    }

    /// What central does with records of posts it has no key for.
    pub fn set_key_policy(&mut self, policy: KeyPolicy) {
        self.policy = policy;
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
        self.export_filtered(None, None)
    }

    /// The stored crossings of `post` (or all), recorded at or after `since` (or all), ordered
    /// by post, then seq.
    pub fn export_filtered(
        &self,
        post: Option<&str>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<StoredCrossing>, CentralError> {
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

    /// Re-verifies every stored record: its seal against the post's key, the stored hash columns,
    /// and the link to the stored record before it (WELMEC 7.2 L6: detect change, warn). Rows
    /// stored by schema version 1 (no hash) are counted, not checked.
    pub fn verify_all(&self) -> Result<VerifyReport, CentralError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT c.post, c.seq, c.envelope, c.hash, c.prev_hash, k.public_key \
                 FROM crossings c LEFT JOIN post_keys k ON k.post = c.post ORDER BY c.post, c.seq",
            )
            .map_err(self.sql("prepare verify"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    seq_from_sql(r.get(1)?),
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .map_err(self.sql("query verify"))?;
        let mut checked = 0u64;
        let mut problems = Vec::new();
        // The previous row: (post, seq, hash).
        let mut before: Option<(String, u64, Option<String>)> = None;
        for row in rows {
            let (post, seq, envelope, hash, prev_hash, key) =
                row.map_err(self.sql("read verify row"))?;
            checked += 1;
            let problem = match (&hash, seal::open(envelope.as_bytes())) {
                (None, _) => None, // schema version 1: nothing to check against
                (Some(_), Err(e)) => Some(e.to_string()),
                (Some(h), Ok(o)) => {
                    let linked_hash = before
                        .as_ref()
                        .filter(|(p, s, _)| *p == post && *s + 1 == seq)
                        .and_then(|(_, _, h)| h.clone());
                    if *h != to_hex(&o.hash)
                        || prev_hash.as_deref() != Some(to_hex(&o.prev).as_str())
                    {
                        Some("stored hash columns differ from the record's seal".to_owned())
                    } else if key.as_deref() != Some(to_hex(&o.key).as_str()) {
                        Some("sealed with a key other than the post's".to_owned())
                    } else if linked_hash.is_some_and(|lh| lh != to_hex(&o.prev)) {
                        Some(format!("does not follow the stored #{}", seq - 1))
                    } else {
                        None
                    }
                }
            };
            if let Some(what) = problem {
                tracing::error!(%post, seq, %what, "stored record fails verification");
                problems.push((post.clone(), seq, what));
            }
            before = Some((post, seq, hash));
        }
        Ok(VerifyReport { checked, problems })
    }

    /// Every post central knows (by key, record or rejection), with its chain state.
    pub fn posts(&self) -> Result<Vec<PostSummary>, CentralError> {
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
            // A status that does not parse (written by a newer build) is shown as absent.
            let status = status.and_then(|s| serde_json::from_str::<PostStatus>(&s).ok());
            out.push(PostSummary {
                post,
                public_key,
                key_source,
                stored: seq_from_sql(stored),
                highest_seq: highest.map_or(0, seq_from_sql),
                contiguous_up_to: seq_from_sql(contiguous),
                gaps: Vec::new(),
                last_contact: contact.map(|c| self.ts(c)).transpose()?,
                rejected: seq_from_sql(rejected),
                status,
            });
        }
        let mut gaps = conn
            .prepare(
                "SELECT prev + 1, seq - 1 FROM (SELECT seq, LAG(seq, 1, 0) OVER (ORDER BY seq) \
                 AS prev FROM crossings WHERE post = ?1) WHERE seq > prev + 1 ORDER BY seq LIMIT ?2",
            )
            .map_err(self.sql("prepare gaps"))?;
        for p in &mut out {
            let rows = gaps
                .query_map(params![p.post, MAX_GAPS_SHOWN], |r| {
                    Ok((seq_from_sql(r.get(0)?), seq_from_sql(r.get(1)?)))
                })
                .map_err(self.sql("query gaps"))?;
            p.gaps = rows
                .collect::<Result<_, _>>()
                .map_err(self.sql("read gaps"))?;
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

/// [`seal::open`] on every payload, in order; a large batch is split over the cores.
fn open_all(payloads: &[Vec<u8>]) -> Vec<Result<Opened, SealError>> {
    const PARALLEL_MIN: usize = 16;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    if payloads.len() < PARALLEL_MIN || threads < 2 {
        return payloads.iter().map(|p| seal::open(p)).collect();
    }
    let per_thread = payloads.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = payloads
            .chunks(per_thread)
            .map(|chunk| {
                let handle =
                    scope.spawn(move || chunk.iter().map(|p| seal::open(p)).collect::<Vec<_>>());
                (chunk.len(), handle)
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|(len, handle)| {
                // A panic in seal::open would be a bug; each record of the chunk is then
                // rejected with that reason (kept aside), never skipped.
                handle.join().unwrap_or_else(|_| {
                    (0..len)
                        .map(|_| Err(SealError::NotAnEnvelope("verification panicked".into())))
                        .collect()
                })
            })
            .collect()
    })
}

fn insert_rejected(
    conn: &Connection,
    topic: &str,
    payload: &[u8],
    reason: &str,
    post: Option<&str>,
    seq: Option<u64>,
    received_at: DateTime<Utc>,
) -> rusqlite::Result<usize> {
    conn.execute(
        "INSERT INTO rejected (received_at, topic, payload, reason, post, seq) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            ts_to_sql(received_at),
            topic,
            payload,
            reason,
            post,
            seq.map(seq_to_sql)
        ],
    )
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
