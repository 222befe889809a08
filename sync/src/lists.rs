//! # The post's copy of central's downlink lists (hotlists, declarations, configuration)
//!
//! [`ListStore`] is a small SQLite file (WAL, `synchronous=FULL`, `user_version` migrations like
//! the outbox) holding the latest applied [`DownlinkList`] of each kind, exactly as central
//! signed it. The uplink subscribes to `topics::lists_of(post)` and hands every message to
//! [`ListStore::apply`]:
//!
//! - the signature must hold against central's public key, which the post is configured with;
//!   the list must be for this post;
//! - a version not newer than the one held is stale and changes nothing (a replayed old list, or
//!   the retained copy seen again after a reconnect);
//! - a newer one replaces the old in one transaction: readers see the old list or the new one,
//!   never a mix.
//!
//! The lanes read with [`ListStore::get`], which needs no link: lists keep working offline, and
//! across restarts. Central publishes lists retained ([`publish_list`]), so a post that was away
//! gets the latest one as soon as it subscribes.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use bcp_record::lists::{DownlinkList, ListError};
use bcp_record::topics;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::db::{self, seq_from_sql, seq_to_sql, ts_to_sql, DbError};
use crate::link::{self, TlsFiles};

const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE lists (
    kind       TEXT    PRIMARY KEY,
    version    INTEGER NOT NULL CHECK (version >= 0),
    issued_at  TEXT    NOT NULL,
    applied_at TEXT    NOT NULL,
    payload    TEXT    NOT NULL
) WITHOUT ROWID;
"#];

/// Errors of the list store; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ListStoreError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("list store {path}: {op} failed")]
    Sqlite {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
}

/// What [`ListStore::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListOutcome {
    Applied {
        kind: String,
        version: u64,
    },
    /// Not newer than what is held.
    Stale {
        kind: String,
        held: u64,
        offered: u64,
    },
    /// Not applied, and why (bad signature, wrong key, another post's list, not a list).
    Rejected(String),
}

/// See the module documentation.
#[derive(Debug)]
pub struct ListStore {
    path: PathBuf,
    post: String,
    central_key: [u8; 32],
    conn: Mutex<Connection>,
}

impl ListStore {
    /// Opens (or creates) the list file of `post`, trusting lists signed by `central_key`.
    pub fn open(path: &Path, post: &str, central_key: [u8; 32]) -> Result<Self, ListStoreError> {
        Ok(Self {
            path: path.to_owned(),
            post: post.to_owned(),
            central_key,
            conn: Mutex::new(db::open_migrated(path, MIGRATIONS)?),
        })
    }

    /// Verifies `payload` and applies it if it is newer (see the module documentation).
    pub fn apply(&self, payload: &[u8], now: DateTime<Utc>) -> Result<ListOutcome, ListStoreError> {
        let list = match DownlinkList::open(payload, &self.central_key) {
            Ok(list) => list,
            Err(
                e @ (ListError::NotAList(_) | ListError::WrongKey { .. } | ListError::BadSignature),
            ) => return Ok(ListOutcome::Rejected(e.to_string())),
        };
        if list.post != self.post {
            return Ok(ListOutcome::Rejected(format!(
                "list for post {:?}, this is post {:?}",
                list.post, self.post
            )));
        }
        let text = String::from_utf8_lossy(payload);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin apply"))?;
        let held: Option<i64> = tx
            .query_row(
                "SELECT version FROM lists WHERE kind = ?1",
                [&list.kind],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql("read held version"))?;
        if let Some(held) = held.map(seq_from_sql) {
            if list.version <= held {
                return Ok(ListOutcome::Stale {
                    kind: list.kind,
                    held,
                    offered: list.version,
                });
            }
        }
        tx.execute(
            "INSERT INTO lists (kind, version, issued_at, applied_at, payload) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (kind) DO UPDATE SET version = excluded.version, issued_at = excluded.issued_at, \
             applied_at = excluded.applied_at, payload = excluded.payload",
            params![list.kind, seq_to_sql(list.version), ts_to_sql(list.issued_at), ts_to_sql(now), text],
        )
        .map_err(self.sql("store list"))?;
        tx.commit().map_err(self.sql("commit apply"))?;
        Ok(ListOutcome::Applied {
            kind: list.kind,
            version: list.version,
        })
    }

    /// The version of the list of `kind` held now, if any: one indexed read, no signature
    /// check (for a caller that looks often and reads the list only when it changed).
    pub fn version(&self, kind: &str) -> Result<Option<u64>, ListStoreError> {
        let version: Option<i64> = self
            .lock()
            .query_row("SELECT version FROM lists WHERE kind = ?1", [kind], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.sql("read list version"))?;
        Ok(version.map(seq_from_sql))
    }

    /// The list of `kind` held now, if any.
    pub fn get(&self, kind: &str) -> Result<Option<DownlinkList>, ListStoreError> {
        let payload: Option<String> = self
            .lock()
            .query_row("SELECT payload FROM lists WHERE kind = ?1", [kind], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.sql("read list"))?;
        // What is stored was verified and parsed when applied; a row that no longer parses
        // (edited by hand) is treated as absent rather than trusted.
        Ok(payload.and_then(|p| DownlinkList::open(p.as_bytes(), &self.central_key).ok()))
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // Every method is one statement or one transaction that rolls back when dropped.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sql(&self, op: &'static str) -> impl Fn(rusqlite::Error) -> ListStoreError + '_ {
        move |source| ListStoreError::Sqlite {
            path: self.path.clone(),
            op,
            source,
        }
    }
}

/// Central's side: publishes a signed list retained at QoS 1 on `topics::list(post, kind)` and
/// returns once the broker acknowledged it.
pub async fn publish_list(
    host: &str,
    port: u16,
    tls: Option<&TlsFiles>,
    client_id: &str,
    list: &DownlinkList,
) -> anyhow::Result<()> {
    let mut opts = rumqttc::MqttOptions::new(client_id, host, port);
    opts.set_clean_session(true);
    if let Some(tls) = tls {
        link::apply_tls(&mut opts, tls)?;
    }
    let (client, mut eventloop) = link::client(opts, 8);
    let payload = serde_json::to_vec(list).context("encoding the list")?;
    client
        .publish(
            topics::list(&list.post, &list.kind),
            rumqttc::QoS::AtLeastOnce,
            true,
            payload,
        )
        .await
        .context("queueing the list")?;
    let acked = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    match acked {
        Ok(Ok(())) => {
            let _ = client.try_disconnect();
            let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
            Ok(())
        }
        Ok(Err(e)) => Err(anyhow::anyhow!("publishing the list to {host}:{port}: {e}")),
        Err(_) => anyhow::bail!("publishing the list to {host}:{port}: no PUBACK within 10 s"),
    }
}
