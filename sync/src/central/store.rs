//! # CentralStore: central's database of received crossings
//!
//! One API, two databases: SQLite, a file beside the receiver (the embedded default,
//! [`CentralStore::open`], [`super::sqlite`]), or PostgreSQL (production,
//! [`CentralStore::open_postgres`], [`super::postgres`]). This module holds what they share: the
//! public types, the message handling around the verdict ([`super::batch`]), and turning rows
//! into exports, reports and summaries. A backend only reads and writes rows.
//!
//! ## Format (SQLite schema version 3, PostgreSQL schema version 1: the same tables)
//! - `crossings(post, seq, crossing_id, recorded_at, received_at, envelope, hash, prev_hash)`:
//!   primary key `(post, seq)`, `crossing_id` unique. `envelope` is the sealed JSON exactly as
//!   received (so it can be verified again at any time), `hash`/`prev_hash` its seal (hex;
//!   `NULL` on rows stored by SQLite version 1).
//! - `post_keys(post, public_key, pinned_at, source)`: the Ed25519 key each post's records must be
//!   signed with: registered by the operator (`--post-key`, `--keys-dir`) or pinned from the
//!   post's first record ([`KeyPolicy::PinFirst`]).
//! - `post_progress(post, contiguous_up_to, last_contact, last_status)`: per post, the highest
//!   `n` such that seqs `1..=n` are all stored (what central acknowledges), when it last heard
//!   from the post, and its last status message (birth, heartbeat with queue depth and oldest
//!   unsynced age, or last will).
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
//!   ack never covers a record that is not on disk. Writers are serialised (SQLite
//!   `BEGIN IMMEDIATE`, PostgreSQL a table lock per receiving transaction); readers never wait.
//! - `contiguous_up_to` only grows; with seqs 1, 2, 4 stored it is 2, and storing 3 moves it to 4.
//! - Timestamps are kept to the microsecond, truncated (both databases give back what the
//!   other would).

use std::collections::HashSet;
use std::path::Path;

use bcp_record::seal::{self, from_hex, to_hex, Opened, SealError};
use bcp_record::{topics, Crossing, PostStatus, RecordEnvelope};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use super::verify::KeyPolicy;
use crate::db::DbError;
use crate::wire;

/// The SQLite schema version this build writes.
pub const CENTRAL_SCHEMA_VERSION: usize = super::sqlite::MIGRATIONS.len();

/// The PostgreSQL schema version this build writes (its own numbering, in `schema_version`).
pub const CENTRAL_PG_SCHEMA_VERSION: usize = super::postgres::MIGRATIONS.len();

/// Errors of the central store; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum CentralError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("central store {path}: {op} failed")]
    Sqlite {
        path: std::path::PathBuf,
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("central store {db}: {op} failed")]
    Postgres {
        /// The database, as [`CentralStore::location`] names it (never with a password).
        db: String,
        op: &'static str,
        #[source]
        source: ::postgres::Error,
    },
    #[error(
        "central store {db} has schema version {found}, newer than version {supported} that this \
         build understands; refusing to use it (nothing was changed: run the newer software)"
    )]
    SchemaTooNew {
        db: String,
        found: i64,
        supported: i64,
    },
    #[error("central store {db}: {what}")]
    Config { db: String, what: String },
    #[error("central store {db}: record {post} #{seq} cannot be encoded or decoded as JSON")]
    Json {
        db: String,
        post: String,
        seq: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("central store {db}: stored timestamp {value:?} is not RFC 3339")]
    BadTimestamp {
        db: String,
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

/// A message whose records are opened (hash and signature checked), not yet stored: see
/// [`CentralStore::open_message`].
#[derive(Debug)]
pub enum OpenedMessage {
    /// Records of `post`: their texts (what is stored) and what opening each gave.
    Records {
        topic: String,
        post: String,
        payloads: Vec<Vec<u8>>,
        opened: Vec<Result<Opened, SealError>>,
    },
    /// A message that cannot be taken apart, kept aside with the reason.
    Unreadable {
        topic: String,
        post: Option<String>,
        payload: Vec<u8>,
        reason: String,
    },
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

/// A post's configuration change as central stored it (its record's post and seq).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredConfigChange {
    pub post: String,
    pub seq: u64,
    pub received_at: DateTime<Utc>,
    pub change: bcp_record::ConfigChange,
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
pub(crate) const MAX_GAPS_SHOWN: i64 = 20;

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

/// A raw row of `crossings` for [`CentralStore::export_filtered`].
#[derive(Debug)]
pub(crate) struct ExportRow {
    pub post: String,
    pub seq: u64,
    pub received_at: DateTime<Utc>,
    pub envelope: String,
}

/// A raw row for [`CentralStore::verify_all`]: a stored record and its post's key.
#[derive(Debug)]
pub(crate) struct VerifyRow {
    pub post: String,
    pub seq: u64,
    pub envelope: String,
    pub hash: Option<String>,
    pub prev_hash: Option<String>,
    pub public_key: Option<String>,
}

/// A message (or record) to keep aside in `rejected`.
#[derive(Debug)]
pub(crate) struct RejectedRow<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub reason: &'a str,
    pub post: Option<&'a str>,
    pub seq: Option<u64>,
    pub received_at: DateTime<Utc>,
}

/// What a database does for [`CentralStore`]: reads and writes rows, each method in one
/// statement or one transaction. The logic around them is shared (this module and
/// [`super::batch`]).
pub(crate) trait Backend: std::fmt::Debug + Send + Sync {
    /// Names the database in logs and errors (a path, or a PostgreSQL URL without password).
    fn location(&self) -> &str;
    /// In one transaction: reads what [`super::batch::Lookups::of`] asks, runs
    /// [`super::batch::decide`], applies its writes and advances the post's contiguous prefix.
    /// Returns the outcomes and the new prefix.
    fn receive_batch(
        &self,
        post: &str,
        topic: &str,
        payloads: &[Vec<u8>],
        opened: Vec<Result<Opened, SealError>>,
        policy: KeyPolicy,
        received_at: DateTime<Utc>,
    ) -> Result<(Vec<Outcome>, u64), CentralError>;
    fn insert_rejected(&self, row: RejectedRow<'_>) -> Result<(), CentralError>;
    fn progress_of(&self, post: &str) -> Result<u64, CentralError>;
    /// Upserts `last_contact` and `last_status` (JSON) of the post.
    fn record_status(&self, post: &str, at: DateTime<Utc>, json: &str) -> Result<(), CentralError>;
    fn post_key(&self, post: &str) -> Result<Option<String>, CentralError>;
    fn insert_post_key(
        &self,
        post: &str,
        key_hex: &str,
        source: &str,
        at: DateTime<Utc>,
    ) -> Result<(), CentralError>;
    /// Oldest first.
    fn rejected(&self) -> Result<Vec<RejectedMessage>, CentralError>;
    /// Ordered by post, then seq.
    fn export_rows(
        &self,
        post: Option<&str>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<ExportRow>, CentralError>;
    /// Every stored record, ordered by post, then seq, streamed to `each`.
    fn for_each_verify_row(
        &self,
        each: &mut (dyn FnMut(VerifyRow) + Send),
    ) -> Result<(), CentralError>;
    /// Every stored record's `(post, seq, envelope)`, in no particular order, streamed to `each`.
    fn for_each_envelope(
        &self,
        each: &mut (dyn FnMut(String, u64, String) + Send),
    ) -> Result<(), CentralError>;
    /// Every post, ordered by name, with `gaps` empty and `status` the stored JSON.
    fn post_rows(&self) -> Result<Vec<(PostSummary, Option<String>)>, CentralError>;
    /// The first `limit` missing ranges of `post` below its highest stored seq.
    fn gaps(&self, post: &str, limit: i64) -> Result<Vec<(u64, u64)>, CentralError>;
}

/// Central's database. `Send + Sync`; share as `Arc<CentralStore>`.
#[derive(Debug)]
pub struct CentralStore {
    policy: KeyPolicy,
    backend: Box<dyn Backend>,
}

impl CentralStore {
    /// Opens (or creates) the central SQLite database.
    pub fn open(path: &Path) -> Result<Self, CentralError> {
        Ok(Self::with(Box::new(SqliteStore::open(path)?)))
    }

    /// Connects to central's PostgreSQL database and brings its schema up to date.
    /// `url`: `postgres://user[:password]@host:port/dbname` or `host=... port=... user=...
    /// dbname=...`. Works from plain threads and from inside a tokio runtime alike.
    pub fn open_postgres(url: &str) -> Result<Self, CentralError> {
        Ok(Self::with(Box::new(PgStore::connect(url, None)?)))
    }

    /// [`Self::open_postgres`] over TLS: the server's certificate must be signed by the CA in
    /// `ca_pem` and name the host of the URL.
    pub fn open_postgres_tls(url: &str, ca_pem: &Path) -> Result<Self, CentralError> {
        Ok(Self::with(Box::new(PgStore::connect(url, Some(ca_pem))?)))
    }

    /// [`Self::open_postgres`] for `postgres://` and `postgresql://` URLs, else
    /// [`Self::open`] on the path (an optional `sqlite:` prefix is dropped).
    pub fn open_url(db: &str) -> Result<Self, CentralError> {
        if db.starts_with("postgres://") || db.starts_with("postgresql://") {
            Self::open_postgres(db)
        } else {
            Self::open(Path::new(db.strip_prefix("sqlite:").unwrap_or(db)))
        }
    }

    fn with(backend: Box<dyn Backend>) -> Self {
        Self {
            policy: KeyPolicy::default(),
            backend,
        }
    }

    /// The database: the SQLite file's path, or the PostgreSQL URL without its password.
    pub fn location(&self) -> &str {
        self.backend.location()
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
        let opened = Self::open_records(topic, Records::Texts(vec![payload.to_vec()]));
        let mut m = self.store_opened(opened, received_at)?;
        let outcome = m.outcomes.pop().unwrap_or(Outcome::Duplicate);
        Ok(Received {
            post: m.post,
            outcome,
            ack_up_to: m.ack_up_to,
        })
    }

    /// Takes one MQTT message from `topic`: a batch ([`crate::wire`]) or a single envelope. All
    /// its records are judged and stored in one transaction (one fsync), in order. The same as
    /// [`Self::open_message`] then [`Self::store_opened`].
    pub fn receive_message(
        &self,
        topic: &str,
        payload: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<ReceivedMessage, CentralError> {
        self.store_opened(Self::open_message(topic, payload), received_at)
    }

    /// The first half of [`Self::receive_message`], which needs no database: the message taken
    /// apart and every record's hash and signature checked (on every core). Pure, so the
    /// receiver checks the next message while the store commits the one before it.
    pub fn open_message(topic: &str, payload: &[u8]) -> OpenedMessage {
        if !wire::is_batch(payload) {
            return Self::open_records(topic, Records::Texts(vec![payload.to_vec()]));
        }
        match wire::decode_batch_records(payload) {
            Ok(records) => Self::open_records(topic, Records::Decoded(records)),
            Err(e) => OpenedMessage::Unreadable {
                topic: topic.to_owned(),
                post: topics::post_of_records_topic(topic).map(str::to_owned),
                payload: payload.to_vec(),
                reason: e.to_string(),
            },
        }
    }

    fn open_records(topic: &str, records: Records) -> OpenedMessage {
        let Some(post) = topics::post_of_records_topic(topic) else {
            let payload = records.texts().into_iter().next().unwrap_or_default();
            return OpenedMessage::Unreadable {
                topic: topic.to_owned(),
                post: None,
                payload,
                reason: "the topic is not a records topic".to_owned(),
            };
        };
        let (payloads, opened) = open_all(records);
        OpenedMessage::Records {
            topic: topic.to_owned(),
            post: post.to_owned(),
            payloads,
            opened,
        }
    }

    /// The second half of [`Self::receive_message`]: judges and stores the records of an opened
    /// message in one transaction (or keeps an unreadable message aside).
    pub fn store_opened(
        &self,
        message: OpenedMessage,
        received_at: DateTime<Utc>,
    ) -> Result<ReceivedMessage, CentralError> {
        match message {
            OpenedMessage::Records {
                topic,
                post,
                payloads,
                opened,
            } => {
                let (outcomes, ack_up_to) = self.backend.receive_batch(
                    &post,
                    &topic,
                    &payloads,
                    opened,
                    self.policy,
                    received_at,
                )?;
                Ok(ReceivedMessage {
                    post: Some(post),
                    outcomes,
                    ack_up_to,
                })
            }
            OpenedMessage::Unreadable {
                topic,
                post,
                payload,
                reason,
            } => {
                let r =
                    self.rejected_outcome(post.as_deref(), &topic, &payload, &reason, received_at)?;
                Ok(ReceivedMessage {
                    post: r.post,
                    outcomes: vec![r.outcome],
                    ack_up_to: r.ack_up_to,
                })
            }
        }
    }

    fn rejected_outcome(
        &self,
        post: Option<&str>,
        topic: &str,
        payload: &[u8],
        reason: &str,
        received_at: DateTime<Utc>,
    ) -> Result<Received, CentralError> {
        self.backend.insert_rejected(RejectedRow {
            topic,
            payload,
            reason,
            post,
            seq: None,
            received_at,
        })?;
        let ack_up_to = match post {
            Some(post) => self.backend.progress_of(post)?,
            None => 0,
        };
        Ok(Received {
            post: post.map(str::to_owned),
            outcome: Outcome::Rejected(reason.to_owned()),
            ack_up_to,
        })
    }

    /// Keeps a post's status message (birth, heartbeat, last will) as its latest.
    pub fn record_status(
        &self,
        status: &PostStatus,
        received_at: DateTime<Utc>,
    ) -> Result<(), CentralError> {
        let json = serde_json::to_string(status).map_err(|source| CentralError::Json {
            db: self.location().to_owned(),
            post: status.post.clone(),
            seq: 0,
            source,
        })?;
        self.backend.record_status(&status.post, received_at, &json)
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
        match self.backend.post_key(post)? {
            Some(k) if from_hex::<32>(&k) == Some(*key) => Ok(()),
            Some(k) => Err(CentralError::KeyConflict {
                post: post.to_owned(),
                registered: k,
                given: to_hex(key),
            }),
            None => self
                .backend
                .insert_post_key(post, &to_hex(key), source, now),
        }
    }

    /// What central does with records of posts it has no key for.
    pub fn set_key_policy(&mut self, policy: KeyPolicy) {
        self.policy = policy;
    }

    /// The SHA-256 of every image that a stored crossing refers to (what
    /// [`super::orphans`] must never remove). Reads every stored envelope: a full scan, meant
    /// for a periodic cleanup, not for each message. An envelope that does not decode fails the
    /// whole call (its references would be unknown).
    pub fn referenced_images(&self) -> Result<HashSet<String>, CentralError> {
        /// Only what names the images: the rest of the record is skipped unparsed.
        #[derive(Deserialize)]
        struct Refs {
            crossing: CrossingRefs,
        }
        #[derive(Deserialize)]
        struct CrossingRefs {
            #[serde(default)]
            images: Vec<ImageName>,
        }
        #[derive(Deserialize)]
        struct ImageName {
            sha256: String,
        }
        let mut hashes = HashSet::new();
        let mut failed = None;
        self.backend.for_each_envelope(&mut |post, seq, envelope| {
            if failed.is_some() {
                return;
            }
            match serde_json::from_str::<Refs>(&envelope) {
                Ok(refs) => hashes.extend(refs.crossing.images.into_iter().map(|i| i.sha256)),
                Err(source) => failed = Some((post, seq, source)),
            }
        })?;
        match failed {
            Some((post, seq, source)) => Err(CentralError::Json {
                db: self.location().to_owned(),
                post,
                seq,
                source,
            }),
            None => Ok(hashes),
        }
    }

    /// Every rejected message, oldest first.
    pub fn rejected(&self) -> Result<Vec<RejectedMessage>, CentralError> {
        self.backend.rejected()
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
        let rows = self.backend.export_rows(post, since)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let env: RecordEnvelope =
                serde_json::from_str(&row.envelope).map_err(|source| CentralError::Json {
                    db: self.location().to_owned(),
                    post: row.post.clone(),
                    seq: row.seq,
                    source,
                })?;
            out.push(StoredCrossing {
                post: row.post,
                seq: row.seq,
                received_at: row.received_at,
                recorded_at: env.recorded_at,
                crossing: env.crossing,
            });
        }
        Ok(out)
    }

    /// The configuration changes of `post` (or every post) as the posts reported them (records
    /// carrying [`bcp_record::ConfigChange`]), in post, then seq order.
    pub fn config_changes(
        &self,
        post: Option<&str>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<StoredConfigChange>, CentralError> {
        Ok(self
            .export_filtered(post, since)?
            .into_iter()
            .filter_map(|c| {
                Some(StoredConfigChange {
                    post: c.post,
                    seq: c.seq,
                    received_at: c.received_at,
                    change: c.crossing.config_change?,
                })
            })
            .collect())
    }

    /// Re-verifies every stored record: its seal against the post's key, the stored hash columns,
    /// and the link to the stored record before it (WELMEC 7.2 L6: detect change, warn). Rows
    /// stored by SQLite schema version 1 (no hash) are counted, not checked.
    pub fn verify_all(&self) -> Result<VerifyReport, CentralError> {
        let mut checked = 0u64;
        let mut problems = Vec::new();
        // The previous row: (post, seq, hash).
        let mut before: Option<(String, u64, Option<String>)> = None;
        self.backend.for_each_verify_row(&mut |row: VerifyRow| {
            checked += 1;
            let VerifyRow {
                post,
                seq,
                envelope,
                hash,
                prev_hash,
                public_key: key,
            } = row;
            let problem = match (&hash, seal::open(envelope.as_bytes())) {
                (None, _) => None, // SQLite schema version 1: nothing to check against
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
        })?;
        Ok(VerifyReport { checked, problems })
    }

    /// Every post central knows (by key, record or rejection), with its chain state.
    pub fn posts(&self) -> Result<Vec<PostSummary>, CentralError> {
        let rows = self.backend.post_rows()?;
        let mut out = Vec::with_capacity(rows.len());
        for (mut p, status) in rows {
            // A status that does not parse (written by a newer build) is shown as absent.
            p.status = status.and_then(|s| serde_json::from_str::<PostStatus>(&s).ok());
            p.gaps = self.backend.gaps(&p.post, MAX_GAPS_SHOWN)?;
            out.push(p);
        }
        Ok(out)
    }
}

/// The records of one message: sent alone (a JSON envelope), or taken out of a batch (each
/// with its parsed tree).
enum Records {
    Texts(Vec<Vec<u8>>),
    Decoded(Vec<wire::DecodedRecord>),
}

impl Records {
    fn texts(self) -> Vec<Vec<u8>> {
        match self {
            Records::Texts(texts) => texts,
            Records::Decoded(records) => records.into_iter().map(|r| r.json).collect(),
        }
    }
}

/// [`seal::open`] on every record, in order, through [`seal::open_many`] (the signatures
/// verified together; a batch's records with the hashes its decoder computed); a large batch
/// is split over the cores. Returns the records' texts (what is stored) and what opening each gave.
fn open_all(records: Records) -> (Vec<Vec<u8>>, Vec<Result<Opened, SealError>>) {
    const PARALLEL_MIN: usize = 16;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let hashed: Vec<(Vec<u8>, [u8; 32])> = match records {
        Records::Texts(texts) => {
            let opened = seal::open_many(&texts);
            return (texts, opened);
        }
        Records::Decoded(records) => records.into_iter().map(|r| (r.json, r.hash)).collect(),
    };
    let opened = if hashed.len() < PARALLEL_MIN || threads < 2 {
        seal::open_many_hashed(&hashed)
    } else {
        open_on_every_core(&hashed, threads)
    };
    let texts = hashed.into_iter().map(|(text, _)| text).collect();
    (texts, opened)
}

/// [`seal::open_many_hashed`] of `hashed` split into one chunk per thread.
fn open_on_every_core(
    hashed: &[(Vec<u8>, [u8; 32])],
    threads: usize,
) -> Vec<Result<Opened, SealError>> {
    let per_thread = hashed.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = hashed
            .chunks(per_thread)
            .map(|chunk| {
                (
                    chunk.len(),
                    scope.spawn(move || seal::open_many_hashed(chunk)),
                )
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|(len, handle)| {
                // A panic in seal::open_many_hashed would be a bug; each record of the chunk is
                // then rejected with that reason (kept aside), never skipped.
                handle.join().unwrap_or_else(|_| {
                    (0..len)
                        .map(|_| Err(SealError::NotAnEnvelope("verification panicked".into())))
                        .collect()
                })
            })
            .collect()
    })
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
