//! # The PostgreSQL backend: central's store in production
//!
//! The same tables as the SQLite file (see [`super::store`]), with PostgreSQL types: `BIGINT`
//! seqs, `TIMESTAMPTZ` times (microseconds, truncated before binding like SQLite's text),
//! `BYTEA` rejected payloads, hex `TEXT` hashes and keys, the envelope as `TEXT` exactly as
//! received.
//!
//! ## Migrations
//! `schema_version(version)` holds the schema version; [`MIGRATIONS`]`[i]` takes the database
//! from version `i` to `i + 1`. The version is read before anything is written: a database newer
//! than this build is refused ([`CentralError::SchemaTooNew`]) and left alone. Pending
//! migrations run in one transaction under an advisory lock (two centrals starting at once
//! migrate once); PostgreSQL's DDL is transactional, so a failed upgrade leaves the old version.
//!
//! ## One message, one transaction, few round trips
//! `LOCK TABLE crossings IN SHARE ROW EXCLUSIVE MODE` serialises receiving transactions (as
//! SQLite's `BEGIN IMMEDIATE` does) while readers go on. Then: the post's key, every chain row
//! the message needs (`seq = ANY($2)`), every crossing id (`= ANY($1)`), the verdicts in memory
//! ([`super::batch::decide`]), one multi-row insert (`UNNEST` of arrays), and one statement that
//! advances the contiguous prefix; prepared once per connection. About eight round trips per
//! message, whatever its number of records.
//!
//! ## Sync client, async callers
//! The `postgres` crate is the sync face of `tokio-postgres`: each call runs its own small
//! runtime's `block_on`, which panics on a thread that is already inside a tokio runtime (the
//! receiver's). So every call made from such a thread runs on a scoped helper thread while the
//! caller waits ([`off_runtime`]), exactly as long as a SQLite call would block it; from plain
//! threads (the CLI, tests) the call runs in place. Closing the connection (drop) likewise. `CentralStore` stays one sync API for both
//! databases.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use bcp_record::seal::{Opened, SealError};
use chrono::{DateTime, SubsecRound as _, Utc};

use postgres::config::SslMode;
use postgres::fallible_iterator::FallibleIterator as _;
use postgres::types::ToSql;
use postgres::{Client, Config, NoTls, Statement, Transaction};

use super::batch::{self, Loaded, Lookups, Writes};
use super::store::{
    Backend, CentralError, ExportRow, Outcome, PostSummary, RejectedMessage, RejectedRow, VerifyRow,
};
use super::verify::KeyPolicy;
use crate::db::{seq_from_sql, seq_to_sql};

/// The PostgreSQL schema, version by version (numbered apart from the SQLite file's).
pub(crate) const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE crossings (
    post        TEXT        NOT NULL,
    seq         BIGINT      NOT NULL CHECK (seq > 0),
    crossing_id TEXT        NOT NULL UNIQUE,
    recorded_at TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    envelope    TEXT        NOT NULL,
    hash        TEXT,
    prev_hash   TEXT,
    PRIMARY KEY (post, seq)
);
CREATE INDEX crossings_recorded_at ON crossings (recorded_at);
CREATE TABLE post_keys (
    post       TEXT        PRIMARY KEY,
    public_key TEXT        NOT NULL,
    pinned_at  TIMESTAMPTZ NOT NULL,
    source     TEXT        NOT NULL
);
CREATE TABLE post_progress (
    post             TEXT   PRIMARY KEY,
    contiguous_up_to BIGINT NOT NULL CHECK (contiguous_up_to >= 0),
    last_contact     TIMESTAMPTZ,
    last_status      TEXT
);
CREATE TABLE rejected (
    id          BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at TIMESTAMPTZ NOT NULL,
    topic       TEXT        NOT NULL,
    payload     BYTEA       NOT NULL,
    reason      TEXT        NOT NULL,
    post        TEXT,
    seq         BIGINT
);
CREATE INDEX rejected_post ON rejected (post);
"#];

/// Taken (per transaction) while migrating, so that two centrals starting at once migrate once.
const MIGRATION_LOCK: i64 = 0x0062_6370_5f6d_6967; // "bcp_mig"

/// The statements of the receiving path, prepared once per connection.
struct Statements {
    lookups: Statement,
    insert: Statement,
    reject: Statement,
    advance: Statement,
    progress: Statement,
}

struct Conn {
    client: Client,
    st: Statements,
}

/// Central's PostgreSQL database: one connection behind a mutex (`None` only while dropping).
pub(crate) struct PgStore {
    location: String,
    conn: Mutex<Option<Conn>>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Closing the client blocks too (it says goodbye to the server): off the runtime.
        let conn = self
            .conn
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        off_runtime(move || drop(conn));
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// A rustls connector that trusts only the CA in `ca_pem` (PEM, one or more certificates).
fn tls_connector(
    ca_pem: &Path,
    location: &str,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, CentralError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let fail = |what: String| CentralError::Config {
        db: location.to_owned(),
        what,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_pem)
        .map_err(|e| fail(format!("reading the database CA {}: {e}", ca_pem.display())))?;
    for cert in certs {
        let cert = cert.map_err(|e| fail(format!("the database CA {}: {e}", ca_pem.display())))?;
        roots.add(cert).map_err(|e| {
            fail(format!(
                "the database CA {}: not a usable certificate: {e}",
                ca_pem.display()
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(fail(format!(
            "the database CA {} holds no PEM certificate",
            ca_pem.display()
        )));
    }
    // The provider is named, not taken from the process default: more than one may be built in.
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| fail(format!("TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

impl PgStore {
    /// Connects, migrates and prepares the statements. With `ca_pem`, the connection is TLS
    /// (required, whatever the URL's `sslmode`) and the server's certificate must be signed by
    /// that CA and name the host; without it, plain TCP (a URL asking for `sslmode=require`
    /// is refused with a hint).
    pub fn connect(url: &str, ca_pem: Option<&Path>) -> Result<Self, CentralError> {
        let mut config: Config = url.parse().map_err(|source| CentralError::Postgres {
            db: "(connection string)".to_owned(),
            op: "parse the connection string",
            source,
        })?;
        // Like libpq: a password kept out of the URL (and the process list) comes from the
        // environment (a systemd EnvironmentFile).
        if config.get_password().is_none() {
            if let Some(password) = std::env::var_os("PGPASSWORD") {
                config.password(password.as_encoded_bytes());
            }
        }
        let location = describe(&config);
        let err = |op| {
            let db = location.clone();
            move |source| CentralError::Postgres { db, op, source }
        };
        let tls = match ca_pem {
            Some(ca) => {
                config.ssl_mode(SslMode::Require);
                Some(tls_connector(ca, &location)?)
            }
            None if config.get_ssl_mode() == SslMode::Require => {
                return Err(CentralError::Config {
                    db: location,
                    what: "the connection string asks for sslmode=require but no CA was given: \
                           set [database] ca_pem (or --db-ca PEM) to the CA that signed the \
                           server's certificate"
                        .to_owned(),
                });
            }
            None => None,
        };
        let conn = off_runtime(|| -> Result<Conn, CentralError> {
            let mut client = match tls {
                Some(tls) => config.connect(tls),
                None => config.connect(NoTls),
            }
            .map_err(err("connect"))?;
            migrate(&mut client, &location)?;
            let st = prepare(&mut client).map_err(err("prepare statements"))?;
            Ok(Conn { client, st })
        })?;
        Ok(Self {
            location,
            conn: Mutex::new(Some(conn)),
        })
    }

    /// Runs `f` on the connection, off any tokio runtime (see the module documentation).
    fn run<R: Send>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<R, CentralError> + Send,
    ) -> Result<R, CentralError> {
        let mut guard = self.lock();
        let conn: &mut Conn = guard.as_mut().ok_or_else(|| CentralError::Config {
            db: self.location.clone(),
            what: "the connection is closed".to_owned(),
        })?;
        off_runtime(move || f(conn))
    }

    fn lock(&self) -> MutexGuard<'_, Option<Conn>> {
        // Every method works in one statement or one transaction, which the server rolls back
        // if the client drops it: a panic elsewhere leaves nothing half-written.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn pg(&self, op: &'static str) -> impl Fn(postgres::Error) -> CentralError + '_ {
        move |source| CentralError::Postgres {
            db: self.location.clone(),
            op,
            source,
        }
    }

    fn load(
        &self,
        tx: &mut Transaction<'_>,
        st: &Statements,
        post: &str,
        want: &Lookups,
    ) -> Result<Loaded, CentralError> {
        // One round trip for the three lookups (a message's store waits on each): the key
        // row (kind 0), the chain rows (kind 1), the rows holding the crossing ids (kind 2).
        let seqs: Vec<i64> = want.seqs.iter().map(|s| seq_to_sql(*s)).collect();
        let mut loaded = Loaded::default();
        for row in tx
            .query(&st.lookups, &[&post, &seqs, &want.crossing_ids])
            .map_err(self.pg("read the key, chain neighbours and crossing ids"))?
        {
            let (kind, seq, a, b): (i32, Option<i64>, Option<String>, Option<String>) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            match (kind, seq) {
                (0, _) => loaded.pinned_key = a,
                (1, Some(seq)) => {
                    loaded.chain.insert(seq_from_sql(seq), (a, b));
                }
                (2, Some(seq)) => {
                    if let (Some(id), Some(stored_post)) = (a, b) {
                        loaded
                            .crossing_ids
                            .insert(id, (stored_post, seq_from_sql(seq)));
                    }
                }
                _ => {}
            }
        }
        Ok(loaded)
    }

    #[allow(clippy::too_many_arguments)] // one message: its post, topic, payloads, time and writes
    fn write(
        &self,
        tx: &mut Transaction<'_>,
        st: &Statements,
        post: &str,
        topic: &str,
        payloads: &[Vec<u8>],
        received_at: DateTime<Utc>,
        writes: &Writes,
    ) -> Result<(), CentralError> {
        let at = micros(received_at);
        if let Some(key) = &writes.pin_key {
            tx.execute(
                "INSERT INTO post_keys (post, public_key, pinned_at, source) \
                 VALUES ($1, $2, $3, 'first record')",
                &[&post, key, &at],
            )
            .map_err(self.pg("pin post key"))?;
        }
        if !writes.crossings.is_empty() {
            let c = &writes.crossings;
            let seqs: Vec<i64> = c.iter().map(|c| seq_to_sql(c.seq)).collect();
            let ids: Vec<&str> = c.iter().map(|c| c.crossing_id.as_str()).collect();
            let recorded: Vec<DateTime<Utc>> = c.iter().map(|c| micros(c.recorded_at)).collect();
            let envelopes: Vec<&str> = c.iter().map(|c| c.envelope.as_str()).collect();
            let hashes: Vec<&str> = c.iter().map(|c| c.hash.as_str()).collect();
            let prevs: Vec<&str> = c.iter().map(|c| c.prev_hash.as_str()).collect();
            tx.execute(
                &st.insert,
                &[
                    &post, &at, &seqs, &ids, &recorded, &envelopes, &hashes, &prevs,
                ],
            )
            .map_err(self.pg("insert crossings"))?;
        }
        for r in &writes.rejected {
            let row = RejectedRow {
                topic,
                payload: payloads.get(r.payload).map_or(&[][..], Vec::as_slice),
                reason: &r.reason,
                post: Some(post),
                seq: r.seq,
                received_at,
            };
            insert_rejected(tx, &st.reject, &row).map_err(self.pg("insert rejected message"))?;
        }
        Ok(())
    }
}

impl Backend for PgStore {
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
        self.run(|c| {
            let st = &c.st;
            let mut tx = c.client.transaction().map_err(self.pg("begin receive"))?;
            tx.batch_execute("LOCK TABLE crossings IN SHARE ROW EXCLUSIVE MODE")
                .map_err(self.pg("lock crossings"))?;
            let loaded = self.load(&mut tx, st, post, &Lookups::of(post, &opened))?;
            let (outcomes, writes) =
                batch::decide(post, payloads, opened, loaded, policy, received_at);
            self.write(&mut tx, st, post, topic, payloads, received_at, &writes)?;
            let ack: i64 = tx
                .query_one(&st.advance, &[&post, &micros(received_at)])
                .map_err(self.pg("advance post progress"))?
                .get(0);
            tx.commit().map_err(self.pg("commit receive"))?;
            Ok((outcomes, seq_from_sql(ack)))
        })
    }

    fn insert_rejected(&self, row: RejectedRow<'_>) -> Result<(), CentralError> {
        self.run(|c| {
            insert_rejected(&mut c.client, &c.st.reject, &row)
                .map_err(self.pg("insert rejected message"))
        })
    }

    fn progress_of(&self, post: &str) -> Result<u64, CentralError> {
        self.run(|c| {
            let row = c
                .client
                .query_opt(&c.st.progress, &[&post])
                .map_err(self.pg("read post progress"))?;
            Ok(row.map_or(0, |r| seq_from_sql(r.get(0))))
        })
    }

    fn record_status(&self, post: &str, at: DateTime<Utc>, json: &str) -> Result<(), CentralError> {
        self.run(|c| {
            c.client
                .execute(
                    "INSERT INTO post_progress (post, contiguous_up_to, last_contact, last_status) \
                     VALUES ($1, 0, $2, $3) ON CONFLICT (post) DO UPDATE SET \
                     last_contact = excluded.last_contact, last_status = excluded.last_status",
                    &[&post, &micros(at), &json],
                )
                .map_err(self.pg("record post status"))?;
            Ok(())
        })
    }

    fn post_key(&self, post: &str) -> Result<Option<String>, CentralError> {
        self.run(|c| {
            Ok(c.client
                .query_opt("SELECT public_key FROM post_keys WHERE post = $1", &[&post])
                .map_err(self.pg("read post key"))?
                .map(|r| r.get(0)))
        })
    }

    fn insert_post_key(
        &self,
        post: &str,
        key_hex: &str,
        source: &str,
        at: DateTime<Utc>,
    ) -> Result<(), CentralError> {
        self.run(|c| {
            c.client
                .execute(
                    "INSERT INTO post_keys (post, public_key, pinned_at, source) \
                     VALUES ($1, $2, $3, $4)",
                    &[&post, &key_hex, &micros(at), &source],
                )
                .map_err(self.pg("register post key"))?;
            Ok(())
        })
    }

    fn rejected(&self) -> Result<Vec<RejectedMessage>, CentralError> {
        self.run(|c| {
            let rows = c
                .client
                .query(
                    "SELECT received_at, topic, payload, reason FROM rejected ORDER BY id",
                    &[],
                )
                .map_err(self.pg("read rejected"))?;
            Ok(rows
                .iter()
                .map(|r| RejectedMessage {
                    received_at: r.get(0),
                    topic: r.get(1),
                    payload: r.get(2),
                    reason: r.get(3),
                })
                .collect())
        })
    }

    fn export_rows(
        &self,
        post: Option<&str>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<ExportRow>, CentralError> {
        let since = since.map(micros);
        self.run(|c| {
            let rows = c
                .client
                .query(
                    "SELECT post, seq, received_at, envelope FROM crossings \
                     WHERE ($1::text IS NULL OR post = $1) \
                     AND ($2::timestamptz IS NULL OR recorded_at >= $2) ORDER BY post, seq",
                    &[&post, &since],
                )
                .map_err(self.pg("export"))?;
            Ok(rows
                .iter()
                .map(|r| ExportRow {
                    post: r.get(0),
                    seq: seq_from_sql(r.get(1)),
                    received_at: r.get(2),
                    envelope: r.get(3),
                })
                .collect())
        })
    }

    fn for_each_verify_row(
        &self,
        each: &mut (dyn FnMut(VerifyRow) + Send),
    ) -> Result<(), CentralError> {
        self.run(|c| {
            let none: [&(dyn ToSql + Sync); 0] = [];
            let mut rows = c
                .client
                .query_raw(
                    "SELECT c.post, c.seq, c.envelope, c.hash, c.prev_hash, k.public_key \
                     FROM crossings c LEFT JOIN post_keys k ON k.post = c.post \
                     ORDER BY c.post, c.seq",
                    none,
                )
                .map_err(self.pg("query verify"))?;
            while let Some(r) = rows.next().map_err(self.pg("read verify row"))? {
                each(VerifyRow {
                    post: r.get(0),
                    seq: seq_from_sql(r.get(1)),
                    envelope: r.get(2),
                    hash: r.get(3),
                    prev_hash: r.get(4),
                    public_key: r.get(5),
                });
            }
            Ok(())
        })
    }

    fn for_each_envelope(
        &self,
        each: &mut (dyn FnMut(String, u64, String) + Send),
    ) -> Result<(), CentralError> {
        self.run(|c| {
            let none: [&(dyn ToSql + Sync); 0] = [];
            let mut rows = c
                .client
                .query_raw("SELECT post, seq, envelope FROM crossings", none)
                .map_err(self.pg("query envelopes"))?;
            while let Some(r) = rows.next().map_err(self.pg("read envelope row"))? {
                each(r.get(0), seq_from_sql(r.get(1)), r.get(2));
            }
            Ok(())
        })
    }

    fn post_rows(&self) -> Result<Vec<(PostSummary, Option<String>)>, CentralError> {
        self.run(|c| {
            let rows = c
                .client
                .query(
                    "WITH names AS (SELECT post FROM post_keys UNION SELECT post FROM post_progress \
                       UNION SELECT post FROM rejected WHERE post IS NOT NULL) \
                     SELECT n.post, k.public_key, k.source, \
                       (SELECT COUNT(*) FROM crossings c WHERE c.post = n.post), \
                       (SELECT MAX(seq) FROM crossings c WHERE c.post = n.post), \
                       COALESCE(p.contiguous_up_to, 0), p.last_contact, \
                       (SELECT COUNT(*) FROM rejected r WHERE r.post = n.post), p.last_status \
                     FROM names n LEFT JOIN post_keys k ON k.post = n.post \
                     LEFT JOIN post_progress p ON p.post = n.post ORDER BY n.post",
                    &[],
                )
                .map_err(self.pg("read posts"))?;
            Ok(rows
                .iter()
                .map(|r| {
                    let summary = PostSummary {
                        post: r.get(0),
                        public_key: r.get(1),
                        key_source: r.get(2),
                        stored: seq_from_sql(r.get(3)),
                        highest_seq: r.get::<_, Option<i64>>(4).map_or(0, seq_from_sql),
                        contiguous_up_to: seq_from_sql(r.get(5)),
                        gaps: Vec::new(),
                        last_contact: r.get(6),
                        rejected: seq_from_sql(r.get(7)),
                        status: None,
                    };
                    (summary, r.get(8))
                })
                .collect())
        })
    }

    fn gaps(&self, post: &str, limit: i64) -> Result<Vec<(u64, u64)>, CentralError> {
        self.run(|c| {
            let rows = c
                .client
                .query(
                    "SELECT prev + 1, seq - 1 FROM (SELECT seq, LAG(seq, 1, 0::bigint) \
                     OVER (ORDER BY seq) AS prev FROM crossings WHERE post = $1) AS g \
                     WHERE seq > prev + 1 ORDER BY seq LIMIT $2",
                    &[&post, &limit],
                )
                .map_err(self.pg("read gaps"))?;
            Ok(rows
                .iter()
                .map(|r| (seq_from_sql(r.get(0)), seq_from_sql(r.get(1))))
                .collect())
        })
    }
}

/// Runs `f` where the `postgres` crate may block: in place on a plain thread, on a scoped
/// helper thread when the caller is inside a tokio runtime (where it would panic).
pub(crate) fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// The schema version the database holds (0: none yet). Reads only.
fn schema_version(client: &mut impl postgres::GenericClient) -> Result<i64, postgres::Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])?
        .get(0))
}

fn migrate(client: &mut Client, db: &str) -> Result<(), CentralError> {
    let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    let err = |op| {
        move |source| CentralError::Postgres {
            db: db.to_owned(),
            op,
            source,
        }
    };
    let check = |found: i64| {
        if found > supported {
            return Err(CentralError::SchemaTooNew {
                db: db.to_owned(),
                found,
                supported,
            });
        }
        Ok(())
    };
    // Look before writing anything.
    let found = schema_version(client).map_err(err("read the schema version"))?;
    check(found)?;
    if found == supported {
        return Ok(());
    }
    let mut tx = client.transaction().map_err(err("begin migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(err("take the migration lock"))?;
    // Another central may have migrated between the first look and the lock. Read it through
    // the table itself, not to_regclass: taking the advisory lock does not refresh this
    // session's catalog cache, so to_regclass could still miss a table committed meanwhile
    // (seen in the CLI test). Rolled back with the rest if the version is refused.
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .map_err(err("create schema_version"))?;
    let from: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .map_err(err("read the schema version"))?
        .get(0);
    check(from)?;
    for sql in MIGRATIONS.iter().skip(usize::try_from(from).unwrap_or(0)) {
        tx.batch_execute(sql).map_err(err("migrate"))?;
    }
    tx.execute("DELETE FROM schema_version", &[])
        .map_err(err("write the schema version"))?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES ($1)",
        &[&supported],
    )
    .map_err(err("write the schema version"))?;
    tx.commit().map_err(err("commit migration"))?;
    tracing::info!(db, from, to = supported, "database schema migrated");
    Ok(())
}

fn prepare(client: &mut Client) -> Result<Statements, postgres::Error> {
    Ok(Statements {
        lookups: client.prepare(
            "SELECT 0, NULL::bigint, public_key, NULL::text FROM post_keys WHERE post = $1 \
             UNION ALL \
             SELECT 1, seq, hash, prev_hash FROM crossings \
             WHERE post = $1 AND seq = ANY($2::bigint[]) \
             UNION ALL \
             SELECT 2, seq, crossing_id, post FROM crossings WHERE crossing_id = ANY($3::text[])",
        )?,
        insert: client.prepare(
            "INSERT INTO crossings \
             (post, seq, crossing_id, recorded_at, received_at, envelope, hash, prev_hash) \
             SELECT $1::text, u.seq, u.id, u.rec, $2::timestamptz, u.env, u.h, u.p \
             FROM UNNEST($3::bigint[], $4::text[], $5::timestamptz[], $6::text[], $7::text[], \
                         $8::text[]) AS u(seq, id, rec, env, h, p)",
        )?,
        reject: client.prepare(
            "INSERT INTO rejected (received_at, topic, payload, reason, post, seq) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )?,
        // The first seq after the current prefix that is not followed by a stored one, found
        // by walking the primary key from the prefix (as far as the records go on, no further).
        advance: client.prepare(
            "WITH cur AS (SELECT COALESCE((SELECT contiguous_up_to FROM post_progress \
                                           WHERE post = $1::text), 0) AS c), \
             nxt AS (SELECT CASE WHEN EXISTS (SELECT 1 FROM crossings \
                                              WHERE post = $1::text AND seq = (SELECT c FROM cur) + 1) \
                 THEN (SELECT x.seq FROM crossings x \
                       WHERE x.post = $1::text AND x.seq > (SELECT c FROM cur) \
                       AND NOT EXISTS (SELECT 1 FROM crossings y \
                                       WHERE y.post = $1::text AND y.seq = x.seq + 1) \
                       ORDER BY x.seq LIMIT 1) \
                 ELSE (SELECT c FROM cur) END AS n) \
             INSERT INTO post_progress (post, contiguous_up_to, last_contact) \
             SELECT $1::text, n, $2::timestamptz FROM nxt \
             ON CONFLICT (post) DO UPDATE SET contiguous_up_to = excluded.contiguous_up_to, \
             last_contact = excluded.last_contact \
             RETURNING contiguous_up_to",
        )?,
        progress: client.prepare("SELECT contiguous_up_to FROM post_progress WHERE post = $1")?,
    })
}

fn insert_rejected(
    client: &mut impl postgres::GenericClient,
    st: &Statement,
    row: &RejectedRow<'_>,
) -> Result<(), postgres::Error> {
    let seq = row.seq.map(seq_to_sql);
    client.execute(
        st,
        &[
            &micros(row.received_at),
            &row.topic,
            &row.payload,
            &row.reason,
            &row.post,
            &seq,
        ],
    )?;
    Ok(())
}

/// Timestamps are kept to the microsecond, truncated (PostgreSQL would round).
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// `postgres://user@host:port/dbname`, never with the password.
fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}
