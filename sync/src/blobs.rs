//! # Blobs: content-addressed image files, on the appliance and at central
//!
//! Images (plate crops, overview frames, scan thumbnails) are stored apart from records, one file
//! per distinct content, named by the SHA-256 of the bytes: `<root>/ab/cdef…` (the first two hex
//! digits are a directory, so that no directory grows past 256 × a few thousand entries). The
//! same bytes are stored once however many records refer to them.
//!
//! ## Writing
//! [`BlobDir::put`] writes to a temporary file in the target directory
//! (`.tmp-<hash>-<pid>-<serial>`: two writers of the same blob never share one),
//! `fsync`s it, renames it into place and `fsync`s the directory: after it returns, the blob
//! survives a power cut; a crash before leaves at worst a temporary file, which
//! [`BlobDir::sweep`] removes. Since the name is the hash, a file that exists with the right
//! length is the blob (a rename is atomic: a half-written file never carries the final name).
//!
//! ## Eviction order (pure)
//! [`choose_evictions`] is the budget's policy, separate from the I/O: synced blobs first (central
//! has them), oldest first; then unsynced blobs, oldest first; as few as free the bytes asked for.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// Numbers the temporary files of this process (see [`BlobDir::put`]).
static TMP_SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    bcp_record::seal::to_hex(&Sha256::digest(bytes))
}

/// Whether `s` is a SHA-256 in lowercase hex (what may name a blob file).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Failure to read or write a blob file; names the file.
#[derive(Debug, thiserror::Error)]
#[error("blob file {path}: {op} failed")]
pub struct BlobIoError {
    pub path: PathBuf,
    pub op: &'static str,
    #[source]
    pub source: std::io::Error,
}

impl BlobIoError {
    /// The filesystem is full (`ENOSPC`) or over quota (`EDQUOT`).
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self.source.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        )
    }
}

/// One blob file as [`BlobDir::list`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobFile {
    pub sha256: String,
    pub bytes: u64,
    /// When it was written (a blob is never rewritten: put skips a blob already there).
    pub modified: std::time::SystemTime,
}

/// A directory of content-addressed blob files. See the module documentation.
#[derive(Debug, Clone)]
pub struct BlobDir {
    root: PathBuf,
}

impl BlobDir {
    /// The blob directory at `root` (created on the first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob named `sha256` lives (which must be [`is_sha256_hex`]).
    pub fn path_of(&self, sha256: &str) -> PathBuf {
        let (dir, rest) = sha256.split_at(2.min(sha256.len()));
        self.root.join(dir).join(rest)
    }

    /// Whether the blob is stored with `bytes` bytes.
    pub fn has(&self, sha256: &str, bytes: u64) -> bool {
        std::fs::metadata(self.path_of(sha256)).is_ok_and(|m| m.is_file() && m.len() == bytes)
    }

    /// Stores `data` under `sha256` (its hash, computed by the caller), durably; returns whether
    /// it was newly written (`false`: it was already there).
    pub fn put(&self, sha256: &str, data: &[u8]) -> Result<bool, BlobIoError> {
        let target = self.path_of(sha256);
        if self.has(sha256, data.len() as u64) {
            return Ok(false);
        }
        let dir = target.parent().unwrap_or(&self.root).to_owned();
        let err = |path: &Path, op| {
            let path = path.to_owned();
            move |source| BlobIoError { path, op, source }
        };
        let created_dir = !dir.exists();
        std::fs::create_dir_all(&dir).map_err(err(&dir, "create directory"))?;
        // Unique per write, also between threads of one process writing the same blob (two
        // receivers of one process, or a resend handled while the first copy is being written).
        let n = TMP_SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".tmp-{sha256}-{}-{n}", std::process::id()));
        let written = (|| {
            let mut f = std::fs::File::create(&tmp).map_err(err(&tmp, "create"))?;
            f.write_all(data).map_err(err(&tmp, "write"))?;
            f.sync_all().map_err(err(&tmp, "fsync"))?;
            std::fs::rename(&tmp, &target).map_err(err(&target, "rename into place"))
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp); // best effort: sweep() removes it otherwise
            return Err(e);
        }
        sync_dir(&dir)?;
        if created_dir {
            sync_dir(&self.root)?;
        }
        Ok(true)
    }

    /// Reads the blob named `sha256`.
    pub fn get(&self, sha256: &str) -> Result<Vec<u8>, BlobIoError> {
        let path = self.path_of(sha256);
        std::fs::read(&path).map_err(|source| BlobIoError {
            path,
            op: "read",
            source,
        })
    }

    /// Deletes the blob named `sha256` (a missing file is not an error).
    pub fn remove(&self, sha256: &str) -> Result<(), BlobIoError> {
        let path = self.path_of(sha256);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(BlobIoError {
                path,
                op: "delete",
                source,
            }),
        }
    }

    /// Every blob file in the directory (temporary files and names that are not a SHA-256 are
    /// left out), with its size and last modification, in no particular order.
    pub fn list(&self) -> Result<Vec<BlobFile>, BlobIoError> {
        let io = |path: &Path, op| {
            let path = path.to_owned();
            move |source| BlobIoError { path, op, source }
        };
        let mut out = Vec::new();
        if !self.root.exists() {
            return Ok(out);
        }
        for sub in std::fs::read_dir(&self.root).map_err(io(&self.root, "list"))? {
            let sub = sub.map_err(io(&self.root, "list"))?;
            let prefix = sub.file_name().to_string_lossy().into_owned();
            if prefix.len() != 2 || !sub.path().is_dir() {
                continue;
            }
            let dir = sub.path();
            for file in std::fs::read_dir(&dir).map_err(io(&dir, "list"))? {
                let file = file.map_err(io(&dir, "list"))?;
                let sha256 = format!("{prefix}{}", file.file_name().to_string_lossy());
                if !is_sha256_hex(&sha256) {
                    continue;
                }
                let path = file.path();
                let meta = file.metadata().map_err(io(&path, "stat"))?;
                if !meta.is_file() {
                    continue;
                }
                let modified = meta.modified().map_err(io(&path, "read the time of"))?;
                out.push(BlobFile {
                    sha256,
                    bytes: meta.len(),
                    modified,
                });
            }
        }
        Ok(out)
    }

    /// Deletes temporary files and every blob not in `keep` (orphans of a crash between writing
    /// a blob and committing the record that refers to it) last modified before `older_than`;
    /// returns how many files went.
    pub fn sweep(
        &self,
        keep: &HashSet<String>,
        older_than: std::time::SystemTime,
    ) -> Result<u64, BlobIoError> {
        let read = |path: &Path| {
            std::fs::read_dir(path).map_err(|source| BlobIoError {
                path: path.to_owned(),
                op: "list",
                source,
            })
        };
        let mut removed = 0;
        if !self.root.exists() {
            return Ok(0);
        }
        for sub in read(&self.root)?.flatten() {
            let prefix = sub.file_name().to_string_lossy().into_owned();
            if !sub.path().is_dir() || prefix.len() != 2 {
                continue;
            }
            for file in read(&sub.path())?.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                let orphan =
                    name.starts_with(".tmp-") || !keep.contains(&format!("{prefix}{name}"));
                let old = file
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < older_than);
                if orphan && old {
                    let path = file.path();
                    std::fs::remove_file(&path).map_err(|source| BlobIoError {
                        path,
                        op: "delete orphan",
                        source,
                    })?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

fn sync_dir(dir: &Path) -> Result<(), BlobIoError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| BlobIoError {
            path: dir.to_owned(),
            op: "fsync directory",
            source,
        })
}

/// A stored blob that the budget could evict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvictionCandidate {
    pub sha256: String,
    pub bytes: u64,
    /// Central confirmed it holds the bytes.
    pub synced: bool,
    /// When a record first referred to it (RFC 3339 text, which sorts in time order).
    pub first_referenced_at: String,
}

/// Which blobs to evict to free at least `to_free` bytes: synced ones first, oldest first, then
/// unsynced ones, oldest first (ties broken by hash, so the choice is deterministic). Returns
/// fewer than needed when all of them together are not enough.
pub fn choose_evictions(candidates: &[EvictionCandidate], to_free: u64) -> Vec<&EvictionCandidate> {
    let mut order: Vec<&EvictionCandidate> = candidates.iter().collect();
    order.sort_by(|a, b| {
        (!a.synced, &a.first_referenced_at, &a.sha256).cmp(&(
            !b.synced,
            &b.first_referenced_at,
            &b.sha256,
        ))
    });
    let mut freed = 0u64;
    order
        .into_iter()
        .take_while(|c| {
            let more = freed < to_free;
            freed = freed.saturating_add(c.bytes);
            more
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report
    use super::*;

    fn c(sha: &str, bytes: u64, synced: bool, at: &str) -> EvictionCandidate {
        EvictionCandidate {
            sha256: sha.to_owned(),
            bytes,
            synced,
            first_referenced_at: at.to_owned(),
        }
    }

    #[test]
    fn synced_blobs_go_first_then_unsynced_oldest_first() {
        let all = [
            c("u-new", 10, false, "2026-11-21T10:00:03Z"),
            c("s-new", 10, true, "2026-11-21T10:00:04Z"),
            c("u-old", 10, false, "2026-11-21T10:00:01Z"),
            c("s-old", 10, true, "2026-11-21T10:00:02Z"),
        ];
        let names = |n: u64| -> Vec<&str> {
            choose_evictions(&all, n)
                .iter()
                .map(|c| c.sha256.as_str())
                .collect()
        };
        assert_eq!(names(0), Vec::<&str>::new());
        assert_eq!(names(1), ["s-old"]);
        assert_eq!(names(10), ["s-old"]);
        assert_eq!(names(11), ["s-old", "s-new"]);
        assert_eq!(names(25), ["s-old", "s-new", "u-old"]);
        assert_eq!(names(1000), ["s-old", "s-new", "u-old", "u-new"]);
    }

    #[test]
    fn put_is_durable_idempotent_and_sweep_removes_orphans() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobDir::new(dir.path().join("blobs"));
        let data = b"\xff\xd8 a jpeg".to_vec();
        let sha = sha256_hex(&data);
        assert!(is_sha256_hex(&sha));
        assert!(blobs.put(&sha, &data).unwrap());
        assert!(!blobs.put(&sha, &data).unwrap(), "stored once");
        assert_eq!(blobs.get(&sha).unwrap(), data);
        assert!(blobs
            .path_of(&sha)
            .starts_with(dir.path().join("blobs").join(&sha[..2])));
        let other = sha256_hex(b"orphan");
        blobs.put(&other, b"orphan").unwrap();
        std::fs::write(blobs.path_of(&sha).with_file_name(".tmp-x-1"), b"half").unwrap();
        let mut listed: Vec<String> = blobs
            .list()
            .unwrap()
            .into_iter()
            .map(|f| f.sha256)
            .collect();
        listed.sort();
        let mut both = vec![sha.clone(), other.clone()];
        both.sort();
        assert_eq!(listed, both, "temporary files are not listed");
        let keep: HashSet<String> = [sha.clone()].into();
        assert_eq!(
            blobs.sweep(&keep, std::time::UNIX_EPOCH).unwrap(),
            0,
            "too young"
        );
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(1);
        assert_eq!(blobs.sweep(&keep, later).unwrap(), 2);
        assert!(blobs.has(&sha, data.len() as u64));
        assert!(!blobs.has(&other, 6));
        blobs.remove(&sha).unwrap();
        blobs.remove(&sha).unwrap();
        assert!(!blobs.has(&sha, data.len() as u64));
    }
}
