//! # Central's images: content-addressed files beside the database
//!
//! The receiver (on its images connection, see [`super::receiver`]) takes each image a post
//! sends on `topics::blob(post, sha256)`, checks that the bytes hash to the name, stores them in
//! a [`BlobDir`] (by default `<db>.blobs`, see [`default_blob_dir`]) and only then acknowledges
//! with [`BlobAck`] `stored`; a post's
//! [`BlobEvicted`] notice is kept as `<dir>/evicted/<sha256>.json` and acknowledged
//! `eviction_noted`. Nothing here touches the database: what central knows about an image is
//! what is in the directory, and [`CentralBlobs::state`] reads it when crossings are exported.
//! Images that no stored crossing refers to are removed after an age by [`super::orphans`].

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bcp_record::{topics, BlobAck, BlobAckState, BlobEvicted, ImageRef};
use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::AsyncClient;
use serde::Serialize;

use super::receiver::ReceiverStats;
use crate::blobs::{is_sha256_hex, sha256_hex, BlobDir};

/// Central's blob directory for a store at `location` (a SQLite path or a PostgreSQL URL, as
/// [`CentralStore::location`](super::CentralStore::location) gives it): `<db>.blobs` beside a
/// SQLite file; for PostgreSQL, which has no file to sit beside, [`PG_BLOB_DIR`] in the working
/// directory (production gives `--blob-dir`).
pub fn blob_dir_for(location: &str) -> PathBuf {
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        PathBuf::from(PG_BLOB_DIR)
    } else {
        default_blob_dir(Path::new(
            location.strip_prefix("sqlite:").unwrap_or(location),
        ))
    }
}

/// The blob directory of a PostgreSQL-backed central without `--blob-dir`.
pub const PG_BLOB_DIR: &str = "bcp-central.blobs";

/// Central's blob directory for the database at `db`: `<db>.blobs`.
pub fn default_blob_dir(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(".blobs");
    PathBuf::from(p)
}

/// Where an image of a crossing stands, as central sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ImageState {
    /// Central holds the bytes.
    Stored,
    /// The post evicted the image before sending it; it will not come.
    EvictedAtPost { reason: String },
    /// Not here yet (the post still has it, or sends it later).
    Pending,
}

/// What [`CentralBlobs::store`] did with an image's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageReceipt {
    /// Newly written (durably) under its hash.
    Written,
    /// The directory already held it (a resend, or another instance stored it first).
    AlreadyHeld,
    /// The bytes do not hash to the name: nothing stored.
    HashMismatch,
}

impl ImageReceipt {
    /// Central holds the bytes now.
    pub fn is_stored(self) -> bool {
        self != Self::HashMismatch
    }
}

/// Central's image files. See the module documentation.
#[derive(Debug, Clone)]
pub struct CentralBlobs {
    dir: BlobDir,
}

impl CentralBlobs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            dir: BlobDir::new(root),
        }
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &BlobDir {
        &self.dir
    }

    fn evicted_path(&self, sha256: &str) -> PathBuf {
        self.dir
            .root()
            .join("evicted")
            .join(format!("{sha256}.json"))
    }

    /// Stores `bytes` durably if they hash to `sha256` (and stores nothing if not).
    pub fn store(&self, sha256: &str, bytes: &[u8]) -> anyhow::Result<ImageReceipt> {
        if !is_sha256_hex(sha256) || sha256_hex(bytes) != sha256 {
            return Ok(ImageReceipt::HashMismatch);
        }
        Ok(if self.dir.put(sha256, bytes)? {
            ImageReceipt::Written
        } else {
            ImageReceipt::AlreadyHeld
        })
    }

    /// Keeps a post's eviction notice (durably: written, fsynced, renamed).
    pub fn note_evicted(&self, notice: &BlobEvicted) -> anyhow::Result<()> {
        anyhow::ensure!(
            is_sha256_hex(&notice.sha256),
            "eviction notice names {:?}, not a SHA-256",
            notice.sha256
        );
        let path = self.evicted_path(&notice.sha256);
        let dir = path.parent().unwrap_or(self.dir.root());
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = path.with_extension("tmp");
        let json = serde_json::to_vec(notice).context("encoding an eviction notice")?;
        let write = || -> std::io::Result<()> {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().with_context(|| format!("writing {}", path.display()))
    }

    /// What central holds of `image`.
    pub fn state(&self, image: &ImageRef) -> ImageState {
        if is_sha256_hex(&image.sha256) && self.dir.has(&image.sha256, image.bytes) {
            return ImageState::Stored;
        }
        let notice = std::fs::read(self.evicted_path(&image.sha256))
            .ok()
            .and_then(|b| serde_json::from_slice::<BlobEvicted>(&b).ok());
        match notice {
            Some(n) => ImageState::EvictedAtPost { reason: n.reason },
            None => ImageState::Pending,
        }
    }
}

/// Handles a message on a blob or eviction topic: store (or note), then [`BlobAck`], then
/// PUBACK. Returns `false` if the topic is neither (the caller handles it).
pub(super) async fn handle_blob_message(
    client: &AsyncClient,
    blobs: &CentralBlobs,
    publish: &Publish,
    stats: &mut ReceiverStats,
) -> anyhow::Result<bool> {
    let topic = &String::from_utf8_lossy(&publish.topic);
    let ack = if let Some((post, sha256)) = topics::post_and_hash_of_blob_topic(topic) {
        stats.images += 1;
        let receipt = blobs
            .store(sha256, &publish.payload)
            .with_context(|| format!("storing the image from {topic}"))?;
        match receipt {
            ImageReceipt::Written => stats.images_written += 1,
            ImageReceipt::AlreadyHeld => stats.images_already_held += 1,
            ImageReceipt::HashMismatch => stats.images_refused += 1,
        }
        if receipt.is_stored() {
            tracing::debug!(
                post,
                sha256,
                bytes = publish.payload.len(),
                ?receipt,
                "image stored"
            );
            Some(BlobAck {
                post: post.to_owned(),
                sha256: sha256.to_owned(),
                state: BlobAckState::Stored,
            })
        } else {
            tracing::warn!(%topic, bytes = publish.payload.len(), "image does not match its hash; not stored, not acknowledged");
            None
        }
    } else if let Some(post) = topics::post_of_blob_evicted_topic(topic) {
        match serde_json::from_slice::<BlobEvicted>(&publish.payload) {
            Ok(notice) if notice.post == post && is_sha256_hex(&notice.sha256) => {
                blobs
                    .note_evicted(&notice)
                    .with_context(|| format!("keeping the eviction notice from {topic}"))?;
                stats.eviction_notices += 1;
                tracing::warn!(post, sha256 = %notice.sha256, reason = %notice.reason, "the post evicted an image central never had");
                Some(BlobAck {
                    post: post.to_owned(),
                    sha256: notice.sha256,
                    state: BlobAckState::EvictionNoted,
                })
            }
            Ok(_) | Err(_) => {
                tracing::warn!(%topic, "malformed eviction notice ignored");
                None
            }
        }
    } else {
        return Ok(false);
    };
    if let Some(ack) = ack {
        let payload = serde_json::to_vec(&ack).context("encoding a blob ack")?;
        client
            .publish(
                topics::blob_ack(&ack.post),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .with_context(|| format!("queueing the blob ack for {}", ack.post))?;
    }
    client
        .ack(publish)
        .await
        .context("queueing the PUBACK to the broker")?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report
    use super::*;

    #[test]
    fn state_follows_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = CentralBlobs::new(dir.path().join("c.db.blobs"));
        let data = b"jpeg bytes";
        let sha = sha256_hex(data);
        let image = ImageRef {
            kind: bcp_record::ImageKind::Overview,
            sha256: sha.clone(),
            bytes: data.len() as u64,
            media_type: "image/jpeg".into(),
        };
        assert_eq!(blobs.state(&image), ImageState::Pending);
        assert_eq!(
            blobs.store(&sha, b"other bytes").unwrap(),
            ImageReceipt::HashMismatch,
            "hash checked"
        );
        assert_eq!(blobs.state(&image), ImageState::Pending);
        blobs
            .note_evicted(&BlobEvicted {
                post: "P".into(),
                sha256: sha.clone(),
                evicted_at: chrono::Utc::now(),
                reason: "budget".into(),
            })
            .unwrap();
        assert_eq!(
            blobs.state(&image),
            ImageState::EvictedAtPost {
                reason: "budget".into()
            }
        );
        assert_eq!(blobs.store(&sha, data).unwrap(), ImageReceipt::Written);
        assert_eq!(blobs.state(&image), ImageState::Stored, "bytes win");
        assert_eq!(blobs.store(&sha, data).unwrap(), ImageReceipt::AlreadyHeld);
    }
}
