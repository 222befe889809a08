//! The outbox's images (content-addressed blobs) and the disk budget's eviction order, against
//! real SQLite files and blob directories.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report

mod common;

use bcp_record::ImageKind;
use bcp_sync::outbox::{default_blob_dir, ImageData, OUTBOX_SCHEMA_VERSION};
use bcp_sync::{Outbox, OutboxError};
use common::{crossing, POST};

/// A pseudo-JPEG of `len` bytes, distinct per `n`.
fn jpeg(n: u32, len: usize) -> Vec<u8> {
    let mut v = vec![0xff, 0xd8];
    v.extend(n.to_le_bytes());
    v.resize(len, (n % 251) as u8);
    v
}

fn overview(bytes: &[u8]) -> ImageData<'_> {
    ImageData {
        kind: ImageKind::Overview,
        media_type: "image/jpeg",
        bytes,
    }
}

#[test]
fn a_version_2_outbox_is_upgraded_and_keeps_its_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(include_str!("fixtures/outbox_v2.sql"))
        .unwrap();
    let outbox = Outbox::open_with_key(&path, POST, bcp_sync::PostKey::from_seed([5; 32])).unwrap();
    let stats = outbox.stats().unwrap();
    assert_eq!(
        (stats.last_seq, stats.last_acked_seq, stats.depth),
        (3, 1, 2)
    );
    assert_eq!((stats.blobs_bytes, stats.blobs_evicted_total), (0, 0));
    let image = jpeg(1, 1000);
    let env = outbox
        .append_with_images(&crossing(POST, 4), &[overview(&image)])
        .unwrap();
    assert_eq!(env.seq, 4);
    let report = outbox.verify_chain().unwrap();
    assert_eq!((report.records, report.first_bad), (4, None));
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, OUTBOX_SCHEMA_VERSION as i64);
    assert_eq!(OUTBOX_SCHEMA_VERSION, 3);
}

#[test]
fn images_are_stored_once_by_content_and_records_refer_to_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let outbox = Outbox::open(&path, POST).unwrap();
    let frame = jpeg(7, 5000);
    let crop = jpeg(8, 300);
    let a = outbox
        .append_with_images(
            &crossing(POST, 1),
            &[
                overview(&frame),
                ImageData {
                    kind: ImageKind::PlateCrop,
                    media_type: "image/jpeg",
                    bytes: &crop,
                },
            ],
        )
        .unwrap();
    let b = outbox
        .append_with_images(&crossing(POST, 2), &[overview(&frame)])
        .unwrap();
    let sha = bcp_sync::blobs::sha256_hex(&frame);
    assert_eq!(a.crossing.images.len(), 2);
    assert_eq!(a.crossing.images[0].sha256, sha);
    assert_eq!(a.crossing.images[0].bytes, 5000);
    assert_eq!(a.crossing.images[1].kind, ImageKind::PlateCrop);
    assert_eq!(b.crossing.images[0].sha256, sha, "same content, same name");
    // The sealed record carries the references: the stored envelope is what was returned.
    assert_eq!(outbox.pending(0, 10).unwrap(), [a.clone(), b]);
    assert_eq!(outbox.verify_chain().unwrap().first_bad, None);
    // One file per distinct content.
    let blobs = bcp_sync::blobs::BlobDir::new(default_blob_dir(&path));
    assert_eq!(std::fs::read(blobs.path_of(&sha)).unwrap(), frame);
    let files = walk(&default_blob_dir(&path));
    assert_eq!(files, 2, "two distinct images, two files");
    let stats = outbox.stats().unwrap();
    assert_eq!((stats.blobs_bytes, stats.blobs_pending), (5300, 2));
    // Appending the same crossing again stores nothing new.
    assert_eq!(
        outbox
            .append_with_images(&crossing(POST, 1), &[])
            .map(|e| e.seq)
            .unwrap_or(0),
        3,
        "a fresh crossing id is a new record"
    );
    let again = outbox
        .append_with_images(
            &a.crossing,
            &[overview(&frame)], // ignored: the stored record is returned as it was
        )
        .unwrap();
    assert_eq!(again, a);
    // Central confirms one image: only the other stays pending.
    let pending = outbox.pending_blobs(10).unwrap();
    assert_eq!(pending.len(), 2);
    assert!(outbox.mark_blob_synced(&sha).unwrap());
    assert!(!outbox.mark_blob_synced(&sha).unwrap());
    let left = outbox.pending_blobs(10).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].sha256, bcp_sync::blobs::sha256_hex(&crop));
    assert_eq!(outbox.read_blob(&sha).unwrap().unwrap(), frame);
    assert_eq!(outbox.stats().unwrap().blobs_synced, 1);
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                walk(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn over_budget_synced_images_go_first_then_unsynced_oldest_first_and_no_record_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let outbox = Outbox::open(&path, POST).unwrap();
    let budget = outbox.set_budget_bytes(1024 * 1024).unwrap();
    const IMAGE: usize = 60 * 1024;
    let mut shas = Vec::new();
    let mut n = 0u32;
    // Fill to about 60 % with images, then central confirms the first three.
    while outbox.stats().unwrap().blobs_bytes < budget * 6 / 10 {
        n += 1;
        let image = jpeg(n, IMAGE);
        let env = outbox
            .append_with_images(&crossing(POST, n), &[overview(&image)])
            .unwrap();
        shas.push(env.crossing.images[0].sha256.clone());
    }
    let before_pressure = n as usize;
    for sha in &shas[3..6] {
        outbox.mark_blob_synced(sha).unwrap();
    }
    assert_eq!(outbox.stats().unwrap().blobs_evicted, 0);
    // Keep going past the budget.
    for _ in 0..8 {
        n += 1;
        let image = jpeg(n, IMAGE);
        let env = outbox
            .append_with_images(&crossing(POST, n), &[overview(&image)])
            .unwrap();
        shas.push(env.crossing.images[0].sha256.clone());
    }
    let stats = outbox.stats().unwrap();
    assert_eq!(stats.last_seq, u64::from(n), "every record stored");
    assert_eq!(stats.depth, u64::from(n), "none dropped");
    assert!(stats.blobs_evicted > 3, "{stats:?}");
    assert!(stats.high_water, "the alarm is on: {stats:?}");
    assert_eq!(stats.blobs_evicted_total, stats.blobs_evicted);
    let state = |sha: &String| outbox.blob_state(sha).unwrap().unwrap();
    // The synced ones (3..6) went first, then unsynced from the oldest: 0, 1, 2, 6, ...
    let evicted: Vec<usize> = (0..shas.len())
        .filter(|&i| state(&shas[i]).evicted.is_some())
        .collect();
    let mut expected = vec![3, 4, 5];
    expected.extend((0..3).chain(6..).take(evicted.len() - 3));
    expected.sort_unstable();
    assert_eq!(evicted, expected, "eviction order");
    assert!(
        evicted.len() < before_pressure,
        "the newest images are kept"
    );
    assert_eq!(state(&shas[0]).evicted.as_deref(), Some("budget"));
    // The record still refers to its evicted image; central is to be told (unsynced only).
    let first = &outbox.pending(0, 1).unwrap()[0];
    assert_eq!(first.crossing.images[0].sha256, shas[0]);
    assert_eq!(outbox.read_blob(&shas[0]).unwrap(), None);
    let notices = outbox.pending_eviction_notices(100).unwrap();
    assert_eq!(
        notices.len(),
        evicted.len() - 3,
        "synced evictions need no notice"
    );
    assert!(notices
        .iter()
        .all(|e| e.reason == "budget" && e.post == POST));
    assert!(outbox.mark_eviction_reported(&notices[0].sha256).unwrap());
    assert_eq!(
        outbox.pending_eviction_notices(100).unwrap().len(),
        notices.len() - 1
    );
    // Files follow the index: exactly the held images are on disk, within the budget.
    let held = shas.iter().filter(|s| state(s).evicted.is_none()).count();
    assert_eq!(walk(&default_blob_dir(&path)), held);
    assert!(stats.blobs_bytes <= budget);
    assert_eq!(outbox.verify_chain().unwrap().first_bad, None);
}

#[test]
fn a_full_budget_evicts_every_image_before_refusing_a_record_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let outbox = Outbox::open(&path, POST).unwrap();
    let budget = outbox.set_budget_bytes(512 * 1024).unwrap();
    let mut n = 0u32;
    let full = loop {
        n += 1;
        let image = jpeg(n, 20 * 1024);
        match outbox.append_with_images(&crossing(POST, n), &[overview(&image)]) {
            Ok(_) => assert!(n < 20_000, "the budget never filled"),
            Err(e) => break e,
        }
    };
    assert!(matches!(full, OutboxError::Full { .. }), "{full}");
    let stats = outbox.stats().unwrap();
    assert_eq!(stats.last_seq, u64::from(n) - 1, "nothing lost");
    assert_eq!(
        stats.blobs_bytes, 0,
        "every image gave way first: {stats:?}"
    );
    assert_eq!(stats.full_rejections_total, 1);
    assert_eq!(walk(&default_blob_dir(&path)), 0, "no orphan left behind");
    let ok: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    // Space returns: the same crossing goes in, with its image.
    outbox.set_budget_bytes(4 * budget).unwrap();
    let image = jpeg(n, 20 * 1024);
    let env = outbox
        .append_with_images(&crossing(POST, n), &[overview(&image)])
        .unwrap();
    assert_eq!(env.seq, u64::from(n));
    assert_eq!(
        outbox.blob_state(&env.crossing.images[0].sha256).unwrap(),
        Some(bcp_sync::outbox::BlobState {
            synced: false,
            evicted: None
        })
    );
    assert_eq!(outbox.verify_chain().unwrap().first_bad, None);
}

/// Central's acknowledgements reach a file full of undelivered records (every image already
/// evicted): noting them must get through, free room, and let ingest resume without the budget
/// being raised; the eviction notices' acknowledgements are noted too.
#[test]
fn acknowledgements_get_through_a_full_outbox_and_make_room() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let outbox = Outbox::open(&path, POST).unwrap();
    outbox.set_budget_bytes(512 * 1024).unwrap();
    let mut n = 0u32;
    let mut shas = Vec::new();
    loop {
        n += 1;
        let image = jpeg(n, 20 * 1024);
        match outbox.append_with_images(&crossing(POST, n), &[overview(&image)]) {
            Ok(env) => shas.push(env.crossing.images[0].sha256.clone()),
            Err(e) => {
                assert!(e.is_full(), "{e}");
                break;
            }
        }
        assert!(n < 20_000, "the budget never filled");
    }
    let last = u64::from(n) - 1;
    // Every image was evicted to make room for records. Noting central's acknowledgement of an
    // eviction notice may need room a file of undelivered records does not have (the WAL folded
    // may be enough): if not, a "full" error and nothing else (the uplink logs it and carries
    // on; the acknowledgement comes again).
    if let Err(e) = outbox.mark_eviction_reported(&shas[0]) {
        assert!(e.is_full(), "{e}");
    }
    // Central acknowledges the records: noted (the acknowledged records pruned, as a full
    // file does with delivered ones), and the room is there again.
    outbox.mark_delivered(last).unwrap();
    let stats = outbox.stats().unwrap();
    assert_eq!((stats.last_acked_seq, stats.depth), (last, 0), "{stats:?}");
    for sha in &shas {
        outbox.mark_eviction_reported(sha).unwrap();
    }
    let env = outbox
        .append_with_images(&crossing(POST, n), &[overview(&jpeg(n, 20 * 1024))])
        .unwrap();
    assert_eq!(env.seq, last + 1, "ingest resumes under the same budget");
    let ok: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

#[test]
fn reopening_removes_orphans_and_notes_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let (kept, lost) = {
        let outbox = Outbox::open(&path, POST).unwrap();
        let a = jpeg(1, 100);
        let b = jpeg(2, 100);
        let env = outbox
            .append_with_images(&crossing(POST, 1), &[overview(&a), overview(&b)])
            .unwrap();
        (
            env.crossing.images[0].sha256.clone(),
            env.crossing.images[1].sha256.clone(),
        )
    };
    let blobs = bcp_sync::blobs::BlobDir::new(default_blob_dir(&path));
    // A crash between writing a blob and committing its record: an old file with no row.
    let orphan = bcp_sync::blobs::sha256_hex(b"orphan");
    blobs.put(&orphan, b"orphan").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(blobs.path_of(&orphan))
        .unwrap()
        .set_modified(old)
        .unwrap();
    std::fs::remove_file(blobs.path_of(&lost)).unwrap();
    let outbox = Outbox::open(&path, POST).unwrap();
    assert!(!blobs.path_of(&orphan).exists(), "orphan swept");
    assert!(blobs.path_of(&kept).exists());
    assert_eq!(
        outbox
            .blob_state(&lost)
            .unwrap()
            .unwrap()
            .evicted
            .as_deref(),
        Some("missing")
    );
    assert_eq!(outbox.pending_blobs(10).unwrap().len(), 1);
}

/// A failing disk changed an image's bytes: it is not sent (central would refuse it forever),
/// it is recorded as evicted with reason `corrupt`, and central is to be told like any eviction.
#[test]
fn an_image_whose_bytes_no_longer_match_its_hash_is_evicted_as_corrupt_not_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let outbox = Outbox::open(&path, POST).unwrap();
    let (good, bad) = (jpeg(1, 500), jpeg(2, 500));
    let env = outbox
        .append_with_images(&crossing(POST, 1), &[overview(&good), overview(&bad)])
        .unwrap();
    let (good_sha, bad_sha) = (
        env.crossing.images[0].sha256.clone(),
        env.crossing.images[1].sha256.clone(),
    );
    let blobs = bcp_sync::blobs::BlobDir::new(default_blob_dir(&path));
    let mut flipped = bad.clone();
    flipped[100] ^= 0x40;
    std::fs::write(blobs.path_of(&bad_sha), &flipped).unwrap();

    assert_eq!(outbox.read_blob(&good_sha).unwrap(), Some(good));
    assert_eq!(outbox.read_blob(&bad_sha).unwrap(), None);
    let state = outbox.blob_state(&bad_sha).unwrap().unwrap();
    assert_eq!(state.evicted.as_deref(), Some("corrupt"));
    assert!(
        !blobs.path_of(&bad_sha).exists(),
        "the corrupt file is gone"
    );
    let notices = outbox.pending_eviction_notices(10).unwrap();
    assert_eq!(notices.len(), 1);
    assert_eq!(
        (notices[0].sha256.as_str(), notices[0].reason.as_str()),
        (bad_sha.as_str(), "corrupt")
    );
    let pending: Vec<String> = outbox
        .pending_blobs(10)
        .unwrap()
        .into_iter()
        .map(|b| b.sha256)
        .collect();
    assert_eq!(
        pending,
        [good_sha],
        "only the intact image is still to send"
    );
}
