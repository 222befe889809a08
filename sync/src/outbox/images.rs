//! The outbox's images: blob files beside the database, one index row each in `blobs`.
//!
//! See the outbox's module documentation, "Images" and "Disk budget". The file I/O is
//! [`BlobDir`](crate::blobs::BlobDir); the eviction order is the pure
//! [`choose_evictions`](crate::blobs::choose_evictions).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use bcp_record::{BlobEvicted, Crossing, ImageKind, ImageRef, RecordEnvelope};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::{Outbox, OutboxError};
use crate::blobs::{choose_evictions, sha256_hex, EvictionCandidate};
use crate::db::{ts_from_sql, ts_to_sql};

/// Evicted to make room under the budget.
pub(super) const REASON_BUDGET: &str = "budget";
/// Evicted because the filesystem was full.
pub(super) const REASON_DISK_FULL: &str = "disk_full";
/// Never stored: larger than one MQTT message can carry.
pub(super) const REASON_TOO_LARGE: &str = "too_large";
/// The file was found missing (deleted behind the outbox's back, or a crash mid-eviction).
pub(super) const REASON_MISSING: &str = "missing";
/// The file's bytes no longer match their hash (a failing disk): it can never be delivered.
pub(super) const REASON_CORRUPT: &str = "corrupt";

/// When the file is full, images are evicted this many bytes at a time until the record fits.
pub(super) const EVICT_SLICE_BYTES: u64 = 256 * 1024;
/// Room kept free for records when images are admitted under a budget.
const RECORD_RESERVE_BYTES: u64 = 64 * 1024;
/// The largest image the uplink can send (one MQTT message, less room for the topic).
pub const MAX_IMAGE_BYTES: usize = crate::link::MAX_PACKET_BYTES - 4096;
/// Orphan blob files younger than this are left alone (another process may be about to commit
/// the record that refers to them).
const ORPHAN_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// The blob directory of the outbox at `path`: `<path>.blobs`.
pub fn default_blob_dir(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".blobs");
    PathBuf::from(p)
}

/// An image to store with a crossing.
#[derive(Debug, Clone, Copy)]
pub struct ImageData<'a> {
    pub kind: ImageKind,
    /// `image/jpeg`, `image/png`, ...
    pub media_type: &'a str,
    pub bytes: &'a [u8],
}

/// An image central has not confirmed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingBlob {
    pub sha256: String,
    pub bytes: u64,
}

/// An index row to upsert with a record.
#[derive(Debug, Clone)]
pub(super) struct BlobRow {
    sha256: String,
    kind: ImageKind,
    media_type: String,
    bytes: u64,
    /// `Some(reason)`: the bytes were not kept (the record says its image was evicted).
    evicted: Option<&'static str>,
}

pub(super) struct BlobCounts {
    pub bytes: u64,
    pub pending: u64,
    pub synced: u64,
    pub evicted: u64,
    pub evicted_total: u64,
}

fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Outbox {
    /// Stores `images` (content-addressed, each distinct content once), then commits `crossing`
    /// referring to them (its `images` gain one [`ImageRef`] each) and returns its envelope.
    ///
    /// Blob files are written and fsynced **before** the record commits: a crash in between
    /// leaves an orphan file (removed on a later open), never a record naming bytes that were
    /// never written. An image that cannot be kept (budget, full disk, too large) is still
    /// referred to, and its index row says it was evicted and why: the record is not refused
    /// for want of room for its images. Idempotent per crossing id, as [`Outbox::append`].
    pub fn append_with_images(
        &self,
        crossing: &Crossing,
        images: &[ImageData<'_>],
    ) -> Result<RecordEnvelope, OutboxError> {
        if let Some(stored) = self.stored_envelope(crossing)? {
            return Ok(stored);
        }
        let mut crossing = crossing.clone();
        let mut rows: Vec<BlobRow> = Vec::with_capacity(images.len());
        let mut written: Vec<String> = Vec::new();
        let result = (|| {
            for image in images {
                let row = self.store_image(image, &rows, &mut written)?;
                crossing.images.push(ImageRef {
                    kind: row.kind,
                    sha256: row.sha256.clone(),
                    bytes: row.bytes,
                    media_type: row.media_type.clone(),
                });
                rows.push(row);
            }
            self.apply_page_cap()?;
            let mut out =
                self.append_with_rows(std::slice::from_ref(&crossing), Utc::now(), &rows)?;
            out.pop().ok_or_else(|| OutboxError::Sqlite {
                path: self.path.clone(),
                op: "append returned no envelope",
                source: rusqlite::Error::QueryReturnedNoRows,
            })
        })();
        if result.is_err() {
            // No record refers to what this call wrote: give the space back now.
            let held = self.held_hashes()?;
            for sha in written.iter().filter(|s| !held.contains(*s)) {
                if let Err(error) = self.blobs.remove(sha) {
                    tracing::warn!(%error, "outbox: could not delete an unreferenced image");
                }
            }
            self.apply_page_cap()?;
        }
        result
    }

    fn stored_envelope(&self, crossing: &Crossing) -> Result<Option<RecordEnvelope>, OutboxError> {
        let conn = self.lock();
        let row: Option<(i64, String)> = conn
            .query_row(
                "SELECT seq, envelope FROM outbox WHERE uuid = ?1",
                [crossing.id.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.sql("look up crossing id"))?;
        drop(conn);
        row.map(|(seq, json)| self.decode(crate::db::seq_from_sql(seq), &json))
            .transpose()
    }

    /// Writes one image's blob (making room under the budget first) and says how it went.
    fn store_image(
        &self,
        image: &ImageData<'_>,
        earlier: &[BlobRow],
        written: &mut Vec<String>,
    ) -> Result<BlobRow, OutboxError> {
        let sha256 = sha256_hex(image.bytes);
        let bytes = image.bytes.len() as u64;
        let mut row = BlobRow {
            sha256: sha256.clone(),
            kind: image.kind,
            media_type: image.media_type.to_owned(),
            bytes,
            evicted: None,
        };
        let kept = earlier
            .iter()
            .any(|r| r.sha256 == sha256 && r.evicted.is_none())
            || (self.is_held(&sha256)? && self.blobs.has(&sha256, bytes));
        if kept {
            return Ok(row);
        }
        if image.bytes.len() > MAX_IMAGE_BYTES {
            row.evicted = Some(REASON_TOO_LARGE);
            tracing::warn!(path = %self.path.display(), bytes, max = MAX_IMAGE_BYTES, "image too large to send; the record says so instead");
            return Ok(row);
        }
        if let Some(budget) = self.budget() {
            let used = self.file_bytes()?.saturating_add(self.blobs_bytes()?);
            let want = used
                .saturating_add(bytes)
                .saturating_add(RECORD_RESERVE_BYTES);
            if want > budget {
                // Delivered records first: central holds them, sealed; an unsynced image it
                // does not.
                let pruned = self.prune_delivered()?;
                if pruned > 0 {
                    tracing::info!(path = %self.path.display(), pruned, "outbox: pruned delivered records to make room for an image");
                }
            }
            let used = self.file_bytes()?.saturating_add(self.blobs_bytes()?);
            let want = used
                .saturating_add(bytes)
                .saturating_add(RECORD_RESERVE_BYTES);
            if want > budget {
                self.evict_blobs(want - budget, REASON_BUDGET)?;
                let used = self.file_bytes()?.saturating_add(self.blobs_bytes()?);
                if used
                    .saturating_add(bytes)
                    .saturating_add(RECORD_RESERVE_BYTES)
                    > budget
                {
                    row.evicted = Some(REASON_BUDGET);
                    return Ok(row);
                }
            }
        }
        let mut attempt = self.blobs.put(&sha256, image.bytes);
        if matches!(&attempt, Err(e) if e.is_disk_full()) {
            self.evict_blobs(bytes.saturating_add(EVICT_SLICE_BYTES), REASON_DISK_FULL)?;
            attempt = self.blobs.put(&sha256, image.bytes);
        }
        match attempt {
            Ok(true) => written.push(sha256),
            Ok(false) => {}
            Err(e) if e.is_disk_full() => {
                tracing::error!(path = %self.path.display(), error = %e, "disk full: an image was not stored; its record says so");
                row.evicted = Some(REASON_DISK_FULL);
            }
            Err(e) => return Err(e.into()),
        }
        Ok(row)
    }

    /// Inserts the index rows of a record's images (inside its append transaction).
    pub(super) fn upsert_blob_rows(
        &self,
        tx: &Transaction<'_>,
        rows: &[BlobRow],
        at: DateTime<Utc>,
    ) -> Result<(), OutboxError> {
        if rows.is_empty() {
            return Ok(());
        }
        let at = ts_to_sql(at);
        let mut upsert = tx
            .prepare_cached(
                "INSERT INTO blobs (sha256, kind, media_type, bytes, first_referenced_at, \
                 evicted_at, evict_reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (sha256) DO UPDATE SET evicted_at = NULL, evict_reason = NULL, \
                 eviction_reported_at = NULL \
                 WHERE excluded.evicted_at IS NULL AND blobs.evicted_at IS NOT NULL",
            )
            .map_err(self.sql("prepare image row"))?;
        let mut evicted = 0i64;
        for row in rows {
            let (evicted_at, reason) = match row.evicted {
                Some(reason) => (Some(at.as_str()), Some(reason)),
                None => (None, None),
            };
            let inserted = upsert
                .execute(params![
                    row.sha256,
                    row.kind.as_str(),
                    row.media_type,
                    i64::try_from(row.bytes).unwrap_or(i64::MAX),
                    at,
                    evicted_at,
                    reason
                ])
                .map_err(self.sql("insert image row"))?;
            if inserted > 0 && row.evicted.is_some() {
                evicted += 1;
            }
        }
        if evicted > 0 {
            tx.execute(
                "UPDATE outbox_state SET blobs_evicted_total = blobs_evicted_total + ?1 WHERE id = 1",
                [evicted],
            )
            .map_err(self.sql("count evicted images"))?;
        }
        Ok(())
    }

    /// Evicts held images in the budget's order until `to_free` bytes are freed (or none is
    /// left); returns the bytes freed. Files go first (that is what frees space on a full disk),
    /// then the rows say `evicted_at` and `reason`; a crash in between is repaired on open.
    pub(super) fn evict_blobs(
        &self,
        to_free: u64,
        reason: &'static str,
    ) -> Result<u64, OutboxError> {
        let candidates = self.eviction_candidates()?;
        let chosen = choose_evictions(&candidates, to_free);
        if chosen.is_empty() {
            return Ok(0);
        }
        for c in &chosen {
            self.blobs.remove(&c.sha256)?;
        }
        let hashes: Vec<&str> = chosen.iter().map(|c| c.sha256.as_str()).collect();
        self.mark_evicted(&hashes, reason)?;
        let freed: u64 = chosen.iter().map(|c| c.bytes).sum();
        let unsynced = chosen.iter().filter(|c| !c.synced).count();
        if unsynced > 0 {
            tracing::error!(path = %self.path.display(), evicted = chosen.len(), unsynced, freed, reason, "images evicted before central had them; their records stay and say so");
        } else {
            tracing::warn!(path = %self.path.display(), evicted = chosen.len(), freed, reason, "images central already holds evicted to make room");
        }
        self.apply_page_cap()?;
        Ok(freed)
    }

    fn mark_evicted(&self, hashes: &[&str], reason: &str) -> Result<(), OutboxError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql("begin eviction"))?;
        let now = ts_to_sql(Utc::now());
        let mut n = 0i64;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE blobs SET evicted_at = ?1, evict_reason = ?2 \
                     WHERE sha256 = ?3 AND evicted_at IS NULL",
                )
                .map_err(self.sql("prepare eviction"))?;
            for sha in hashes {
                n += i64::try_from(
                    stmt.execute(params![now, reason, sha])
                        .map_err(self.sql("mark image evicted"))?,
                )
                .unwrap_or(0);
            }
        }
        tx.execute(
            "UPDATE outbox_state SET blobs_evicted_total = blobs_evicted_total + ?1 WHERE id = 1",
            [n],
        )
        .map_err(self.sql("count evicted images"))?;
        tx.commit().map_err(self.sql("commit eviction"))
    }

    fn eviction_candidates(&self) -> Result<Vec<EvictionCandidate>, OutboxError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT sha256, bytes, synced_at IS NOT NULL, first_referenced_at FROM blobs \
                 WHERE evicted_at IS NULL",
            )
            .map_err(self.sql("prepare eviction candidates"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(EvictionCandidate {
                    sha256: r.get(0)?,
                    bytes: count(r.get(1)?),
                    synced: r.get(2)?,
                    first_referenced_at: r.get(3)?,
                })
            })
            .map_err(self.sql("query eviction candidates"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.sql("read eviction candidate"))
    }

    /// Whether the outbox holds the bytes of the image `sha256` (by its index).
    fn is_held(&self, sha256: &str) -> Result<bool, OutboxError> {
        self.lock()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM blobs WHERE sha256 = ?1 AND evicted_at IS NULL)",
                [sha256],
                |r| r.get(0),
            )
            .map_err(self.sql("look up an image"))
    }

    /// Hashes of the images whose bytes the outbox holds.
    fn held_hashes(&self) -> Result<HashSet<String>, OutboxError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT sha256 FROM blobs WHERE evicted_at IS NULL")
            .map_err(self.sql("prepare held images"))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(self.sql("query held images"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.sql("read held image"))
    }

    /// Bytes of the images held.
    pub(super) fn blobs_bytes(&self) -> Result<u64, OutboxError> {
        let conn = self.lock();
        let n: i64 = conn
            .query_row(
                "SELECT COALESCE(SUM(bytes), 0) FROM blobs WHERE evicted_at IS NULL",
                [],
                |r| r.get(0),
            )
            .map_err(self.sql("sum image bytes"))?;
        Ok(count(n))
    }

    pub(super) fn blob_counts(&self, conn: &Connection) -> Result<BlobCounts, OutboxError> {
        conn.query_row(
            "SELECT COALESCE(SUM(CASE WHEN evicted_at IS NULL THEN bytes END), 0), \
             COUNT(CASE WHEN evicted_at IS NULL AND synced_at IS NULL THEN 1 END), \
             COUNT(CASE WHEN evicted_at IS NULL AND synced_at IS NOT NULL THEN 1 END), \
             COUNT(evicted_at), \
             (SELECT blobs_evicted_total FROM outbox_state WHERE id = 1) FROM blobs",
            [],
            |r| {
                Ok(BlobCounts {
                    bytes: count(r.get(0)?),
                    pending: count(r.get(1)?),
                    synced: count(r.get(2)?),
                    evicted: count(r.get(3)?),
                    evicted_total: count(r.get::<_, Option<i64>>(4)?.unwrap_or(0)),
                })
            },
        )
        .map_err(self.sql("count images"))
    }

    /// Gives the records every page of the budget that the images do not use.
    pub(super) fn apply_page_cap(&self) -> Result<(), OutboxError> {
        let Some(budget) = self.budget() else {
            return Ok(());
        };
        let blobs = self.blobs_bytes()?;
        let conn = self.lock();
        let page_size: i64 = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .map_err(self.sql("read page_size"))?;
        let room = i64::try_from(budget.saturating_sub(blobs)).unwrap_or(i64::MAX);
        // SQLite keeps the cap at least at the pages the file already has.
        conn.pragma_update(None, "max_page_count", room / page_size.max(1))
            .map_err(self.sql("set max_page_count"))
    }

    /// On open: rows whose file is gone are marked evicted (`missing`), files without a row
    /// (a crash between blob and record) and temporary files are deleted.
    pub(super) fn reconcile_blobs(&self) -> Result<(), OutboxError> {
        let held: Vec<(String, u64)> = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare("SELECT sha256, bytes FROM blobs WHERE evicted_at IS NULL")
                .map_err(self.sql("prepare held images"))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, count(r.get(1)?))))
                .map_err(self.sql("query held images"))?;
            rows.collect::<Result<_, _>>()
                .map_err(self.sql("read held image"))?
        };
        let missing: Vec<&str> = held
            .iter()
            .filter(|(sha, bytes)| !self.blobs.has(sha, *bytes))
            .map(|(sha, _)| sha.as_str())
            .collect();
        if !missing.is_empty() {
            tracing::error!(path = %self.path.display(), missing = missing.len(), "image files missing; marked evicted");
            self.mark_evicted(&missing, REASON_MISSING)?;
        }
        let keep: HashSet<String> = held.into_iter().map(|(sha, _)| sha).collect();
        let cutoff = std::time::SystemTime::now()
            .checked_sub(ORPHAN_MIN_AGE)
            .unwrap_or(std::time::UNIX_EPOCH);
        let swept = self.blobs.sweep(&keep, cutoff)?;
        if swept > 0 {
            tracing::info!(path = %self.blobs.root().display(), swept, "deleted orphan image files");
        }
        Ok(())
    }

    /// Up to `limit` images held and not yet confirmed by central, oldest first.
    pub fn pending_blobs(&self, limit: usize) -> Result<Vec<PendingBlob>, OutboxError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT sha256, bytes FROM blobs WHERE synced_at IS NULL AND evicted_at IS NULL \
                 ORDER BY first_referenced_at, sha256 LIMIT ?1",
            )
            .map_err(self.sql("prepare pending images"))?;
        let rows = stmt
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok(PendingBlob {
                    sha256: r.get(0)?,
                    bytes: count(r.get(1)?),
                })
            })
            .map_err(self.sql("query pending images"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.sql("read pending image"))
    }

    /// The bytes of a held image, checked against their hash; `None` if it was evicted, or if
    /// its file vanished or no longer matches its hash (both then recorded as an eviction, so
    /// central is told and the image is not sent, refused and sent again forever).
    pub fn read_blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, OutboxError> {
        if !self.is_held(sha256)? {
            return Ok(None);
        }
        match self.blobs.get(sha256) {
            Ok(bytes) if sha256_hex(&bytes) == sha256 => Ok(Some(bytes)),
            Ok(bytes) => {
                tracing::error!(
                    path = %self.blobs.path_of(sha256).display(),
                    bytes = bytes.len(),
                    "image file no longer matches its hash (failing disk?): recorded as evicted, central is told"
                );
                self.mark_evicted(&[sha256], REASON_CORRUPT)?;
                self.blobs.remove(sha256)?;
                Ok(None)
            }
            Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => {
                self.mark_evicted(&[sha256], REASON_MISSING)?;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Up to `limit` evictions of images central never had and was not yet told about.
    pub fn pending_eviction_notices(&self, limit: usize) -> Result<Vec<BlobEvicted>, OutboxError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT sha256, evicted_at, evict_reason FROM blobs \
                 WHERE evicted_at IS NOT NULL AND synced_at IS NULL \
                 AND eviction_reported_at IS NULL ORDER BY evicted_at, sha256 LIMIT ?1",
            )
            .map_err(self.sql("prepare eviction notices"))?;
        let rows = stmt
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })
            .map_err(self.sql("query eviction notices"))?;
        let mut out = Vec::new();
        for row in rows {
            let (sha256, at, reason) = row.map_err(self.sql("read eviction notice"))?;
            let evicted_at = ts_from_sql(&at).map_err(|source| OutboxError::BadTimestamp {
                path: self.path.clone(),
                value: at.clone(),
                source,
            })?;
            out.push(BlobEvicted {
                post: self.post.clone(),
                sha256,
                evicted_at,
                reason: reason.unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Central confirmed it holds the image: it becomes the first to go when space runs short.
    /// Returns whether anything changed.
    pub fn mark_blob_synced(&self, sha256: &str) -> Result<bool, OutboxError> {
        self.with_room(|| {
            let n = self
                .lock()
                .execute(
                    "UPDATE blobs SET synced_at = ?1 WHERE sha256 = ?2 AND synced_at IS NULL",
                    params![ts_to_sql(Utc::now()), sha256],
                )
                .map_err(self.sql("mark image synced"))?;
            Ok(n > 0)
        })
    }

    /// Central noted that the image was evicted here. Returns whether anything changed.
    pub fn mark_eviction_reported(&self, sha256: &str) -> Result<bool, OutboxError> {
        self.with_room(|| {
            let n = self
                .lock()
                .execute(
                    "UPDATE blobs SET eviction_reported_at = ?1 \
                     WHERE sha256 = ?2 AND evicted_at IS NOT NULL AND eviction_reported_at IS NULL",
                    params![ts_to_sql(Utc::now()), sha256],
                )
                .map_err(self.sql("mark eviction reported"))?;
            Ok(n > 0)
        })
    }

    /// The state of one image here: `None` if no record refers to it.
    pub fn blob_state(&self, sha256: &str) -> Result<Option<BlobState>, OutboxError> {
        self.lock()
            .query_row(
                "SELECT synced_at IS NOT NULL, \
                 CASE WHEN evicted_at IS NOT NULL THEN COALESCE(evict_reason, '') END \
                 FROM blobs WHERE sha256 = ?1",
                [sha256],
                |r| {
                    Ok(BlobState {
                        synced: r.get(0)?,
                        evicted: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(self.sql("read image state"))
    }
}

/// What the outbox knows about one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobState {
    /// Central confirmed it holds the bytes.
    pub synced: bool,
    /// `Some(reason)`: the bytes are gone from here (`budget`, `disk_full`, `too_large`,
    /// `missing`, `corrupt`).
    pub evicted: Option<String>,
}
