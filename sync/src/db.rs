//! # Opening a SQLite file that can be trusted after a power cut
//!
//! Shared by the appliance's [`Outbox`](crate::outbox::Outbox) and central's
//! [`CentralStore`](crate::central::CentralStore), so that both follow one rule:
//!
//! 1. The schema version is `PRAGMA user_version`. It is read **before anything is written**: a
//!    file whose version is newer than this build knows is refused with [`DbError::TooNew`] and
//!    left byte for byte as it was (no journal-mode change, no migration). Downgrading the software
//!    must never damage data written by a newer one.
//! 2. Durability settings are applied per connection, outside any transaction:
//!    `journal_mode=WAL` (readers never block the writer, and a torn write is rolled back on the
//!    next open), `synchronous=FULL` (a commit has reached the disk when it returns) and a busy
//!    timeout (another process holding the write lock is waited for, not failed on).
//! 3. Migrations are a list of SQL batches; migration `i` takes the file from version `i` to
//!    `i + 1`. All pending ones run in **one** `BEGIN IMMEDIATE` transaction together with the new
//!    `user_version`, so a crash mid-upgrade leaves the old version intact.
//!
//! Timestamps are stored as RFC 3339 text in UTC with microseconds and a `Z` suffix
//! ([`ts_to_sql`]), so that text order is time order and the files stay readable with `sqlite3`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, TransactionBehavior};

/// How long a connection waits for another writer before giving up with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Failure to open, check or migrate a database file.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open SQLite database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "SQLite database {path} has schema version {found}, newer than version {supported} that \
         this build understands; refusing to open it (the file was not changed: run the newer \
         software or restore the matching file)"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("SQLite database {path} has an invalid schema version {found}")]
    BadVersion { path: PathBuf, found: i64 },
    #[error("cannot set {what} on SQLite database {path}")]
    Configure {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("SQLite database {path} refused WAL mode (journal_mode is {mode:?})")]
    NoWal { path: PathBuf, mode: String },
    #[error("cannot migrate SQLite database {path} from schema version {from} to {to}")]
    Migrate {
        path: PathBuf,
        from: i64,
        to: i64,
        #[source]
        source: rusqlite::Error,
    },
}

/// Opens `path` (creating it if missing), applies the durability settings and brings the schema
/// up to `migrations.len()`.
pub(crate) fn open_migrated(path: &Path, migrations: &[&str]) -> Result<Connection, DbError> {
    let configure = |what: &'static str| {
        move |source| DbError::Configure {
            path: path.to_owned(),
            what,
            source,
        }
    };
    let supported = i64::try_from(migrations.len()).unwrap_or(i64::MAX);

    let mut conn = Connection::open(path).map_err(|source| DbError::Open {
        path: path.to_owned(),
        source,
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(configure("busy_timeout"))?;

    // Rule 1: look before writing anything.
    let found = user_version(&conn).map_err(configure("user_version (read)"))?;
    check_version(path, found, supported)?;

    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(configure("journal_mode"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(DbError::NoWal {
            path: path.to_owned(),
            mode,
        });
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(configure("synchronous"))?;

    if found < supported {
        let migrate = |from: i64| {
            move |source| DbError::Migrate {
                path: path.to_owned(),
                from,
                to: supported,
                source,
            }
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(migrate(found))?;
        // Another process may have migrated between our first look and the write lock.
        let from = user_version(&tx).map_err(migrate(found))?;
        check_version(path, from, supported)?;
        let first = usize::try_from(from).unwrap_or(usize::MAX);
        for sql in migrations.iter().skip(first) {
            tx.execute_batch(sql).map_err(migrate(from))?;
        }
        tx.pragma_update(None, "user_version", supported)
            .map_err(migrate(from))?;
        tx.commit().map_err(migrate(from))?;
        tracing::info!(path = %path.display(), from, to = supported, "database schema migrated");
    }
    Ok(conn)
}

/// A second connection to `path` (opened and migrated already by [`open_migrated`]) that only
/// reads: in WAL mode it reads the last commit while another connection writes.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, DbError> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| DbError::Open {
        path: path.to_owned(),
        source,
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|source| DbError::Configure {
            path: path.to_owned(),
            what: "busy_timeout",
            source,
        })?;
    Ok(conn)
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

fn check_version(path: &Path, found: i64, supported: i64) -> Result<(), DbError> {
    if found < 0 {
        return Err(DbError::BadVersion {
            path: path.to_owned(),
            found,
        });
    }
    if found > supported {
        return Err(DbError::TooNew {
            path: path.to_owned(),
            found,
            supported,
        });
    }
    Ok(())
}

/// A timestamp as stored: RFC 3339, UTC, microseconds, `Z` (fixed width, so text order is time order).
pub(crate) fn ts_to_sql(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses a timestamp written by [`ts_to_sql`].
pub(crate) fn ts_from_sql(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc))
}

/// A sequence number as SQLite stores it (`INTEGER` is signed; sequence numbers never reach
/// `i64::MAX`, and saturating keeps range comparisons such as `seq <= ?` correct if one did).
pub(crate) fn seq_to_sql(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// A sequence number read back; the schemas' `CHECK (seq > 0)` keeps negatives out.
pub(crate) fn seq_from_sql(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
