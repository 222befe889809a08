//! # Orphan images at central: removed once they are old enough
//!
//! An image arrives apart from its record (see [`super::blobs`]). An image no stored crossing
//! refers to is an **orphan**: its record is late (still in a post's outbox, or with another
//! instance), was rejected, or never existed (a buggy or rogue client sent bytes). Late records
//! are normal, so an orphan is removed only once its file is older than a configurable age
//! (`bcp-central serve --orphan-image-age-hours` or `[images] orphan_age_hours`, default
//! [`DEFAULT_ORPHAN_AGE`], three days, checked every [`PRUNE_EVERY`]; and the operator's
//! `bcp-central images prune [--dry-run] [--older-than-hours H]`).
//!
//! ## The rule ([`judge`], pure: the time is passed in)
//! For each image file of the blob directory, in this order:
//! 1. referenced by a stored crossing ([`CentralStore::referenced_images`]): **kept**, whatever
//!    its age;
//! 2. written less than the age ago (by the file's modification time: central writes an image
//!    once and never rewrites it) or in the future (a clock set back): **kept** (too young);
//! 3. otherwise: **removed**.
//!
//! ## The prune ([`prune_orphan_images`], the I/O around the rule)
//! Lists the directory, then reads the references from the store (both backends: every stored
//! envelope is read, a full scan that holds the store's connection, so a receiver of the same
//! process waits for it), then removes what [`judge`] calls an orphan; each removal is
//! logged at INFO with its hash, size and age, and counted in the [`PruneReport`]. With
//! `dry_run` nothing is removed and the report says what would be. Several instances may prune
//! one directory at once: removing a file already gone is not an error.
//!
//! What it does not cover: a crossing stored *while* a prune runs, whose image is already
//! older than the age (its record days late), can lose its image; the crossing stays stored
//! and its image shows as `pending` in the export. Eviction notices (`evicted/*.json`, a few
//! hundred bytes each) and temporary files are not pruned.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use serde::Serialize;

use super::blobs::CentralBlobs;
use super::store::CentralStore;
use crate::blobs::BlobFile;

/// How old an unreferenced image must be before it is removed, unless configured otherwise.
pub const DEFAULT_ORPHAN_AGE: Duration = Duration::from_secs(72 * 3600);

/// How often `bcp-central serve` prunes.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What [`judge`] says of one image file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A stored crossing refers to it: never removed.
    Referenced,
    /// Unreferenced, but written less than the age ago: its record may still come.
    TooYoung,
    /// Unreferenced and old enough: removed.
    Orphan,
}

/// The rule of the module documentation for one file, at `now`.
pub fn judge(
    file: &BlobFile,
    referenced: &HashSet<String>,
    now: SystemTime,
    min_age: Duration,
) -> Verdict {
    if referenced.contains(&file.sha256) {
        return Verdict::Referenced;
    }
    match now.duration_since(file.modified) {
        Ok(age) if age >= min_age => Verdict::Orphan,
        _ => Verdict::TooYoung, // younger, or written "in the future"
    }
}

/// What one prune found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Image files examined.
    pub examined: u64,
    /// Kept: a stored crossing refers to them.
    pub referenced: u64,
    /// Kept: unreferenced but younger than the age.
    pub too_young: u64,
    /// Orphans removed (with `dry_run`: that would be removed).
    pub removed: u64,
    /// Their bytes.
    pub removed_bytes: u64,
    /// The orphans' hashes.
    pub orphans: Vec<String>,
    /// Nothing was removed: the report says what would have been.
    pub dry_run: bool,
}

/// Removes the orphan images of `blobs` older than `min_age` at `now` (see the module
/// documentation); with `dry_run`, only reports them.
pub fn prune_orphan_images(
    store: &CentralStore,
    blobs: &CentralBlobs,
    now: SystemTime,
    min_age: Duration,
    dry_run: bool,
) -> anyhow::Result<PruneReport> {
    let dir = blobs.dir();
    let files = dir
        .list()
        .with_context(|| format!("listing the images in {}", dir.root().display()))?;
    let referenced = store
        .referenced_images()
        .with_context(|| format!("reading the images referenced in {}", store.location()))?;
    let mut report = PruneReport {
        dry_run,
        ..PruneReport::default()
    };
    for file in &files {
        report.examined += 1;
        match judge(file, &referenced, now, min_age) {
            Verdict::Referenced => report.referenced += 1,
            Verdict::TooYoung => report.too_young += 1,
            Verdict::Orphan => {
                let age_hours = now
                    .duration_since(file.modified)
                    .map_or(0, |a| a.as_secs() / 3600);
                if dry_run {
                    tracing::info!(sha256 = %file.sha256, bytes = file.bytes, age_hours, "orphan image (dry run: kept)");
                } else {
                    dir.remove(&file.sha256)?;
                    tracing::info!(sha256 = %file.sha256, bytes = file.bytes, age_hours, "orphan image removed: no stored crossing refers to it");
                }
                report.removed += 1;
                report.removed_bytes += file.bytes;
                report.orphans.push(file.sha256.clone());
            }
        }
    }
    tracing::info!(
        dir = %dir.root().display(),
        examined = report.examined,
        referenced = report.referenced,
        too_young = report.too_young,
        removed = report.removed,
        removed_bytes = report.removed_bytes,
        dry_run,
        min_age_hours = min_age.as_secs() / 3600,
        "orphan images pruned"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn file(sha: &str, modified: SystemTime) -> BlobFile {
        BlobFile {
            sha256: sha.to_owned(),
            bytes: 10,
            modified,
        }
    }

    #[test]
    fn a_referenced_image_is_kept_however_old() {
        let now = SystemTime::UNIX_EPOCH + 1000 * HOUR;
        let referenced: HashSet<String> = ["a".to_owned()].into();
        let ancient = file("a", SystemTime::UNIX_EPOCH);
        assert_eq!(
            judge(&ancient, &referenced, now, 72 * HOUR),
            Verdict::Referenced
        );
        assert_eq!(
            judge(&ancient, &referenced, now, Duration::ZERO),
            Verdict::Referenced
        );
    }

    #[test]
    fn an_unreferenced_image_goes_only_once_the_age_has_passed() {
        let written = SystemTime::UNIX_EPOCH + 100 * HOUR;
        let f = file("b", written);
        let none = HashSet::new();
        let age = 72 * HOUR;
        // Its record is late: kept until the age passes, then removed (the age itself counts).
        assert_eq!(judge(&f, &none, written, age), Verdict::TooYoung);
        assert_eq!(
            judge(&f, &none, written + age - Duration::from_secs(1), age),
            Verdict::TooYoung
        );
        assert_eq!(judge(&f, &none, written + age, age), Verdict::Orphan);
        assert_eq!(judge(&f, &none, written + 10 * age, age), Verdict::Orphan);
    }

    #[test]
    fn a_file_from_the_future_is_too_young() {
        let now = SystemTime::UNIX_EPOCH + 100 * HOUR;
        let f = file("c", now + HOUR);
        assert_eq!(
            judge(&f, &HashSet::new(), now, Duration::ZERO),
            Verdict::TooYoung
        );
    }
}
