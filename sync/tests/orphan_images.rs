//! Orphan images at central, on a real blob directory and a real store (SQLite and a throw-away
//! PostgreSQL): an image no stored crossing refers to goes once it is older than the age; one a
//! stored crossing refers to stays however old; one whose record is merely late stays until
//! the age passes, and for good once the record arrives. Also `bcp-central images prune`.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use bcp_record::{ImageKind, ImageRef, RecordEnvelope};
use bcp_sync::blobs::sha256_hex;
use bcp_sync::central::blobs::CentralBlobs;
use bcp_sync::central::orphans::prune_orphan_images;
use bcp_sync::CentralStore;
use chrono::Utc;
use common::{SealedPost, TestDb, POST};

const BIN: &str = env!("CARGO_BIN_EXE_bcp-central");
const HOUR: Duration = Duration::from_secs(3600);
const AGE: Duration = Duration::from_secs(72 * 3600);

/// An image's bytes, written to `blobs`, dated `age` ago; returns its hash.
fn image_file(blobs: &CentralBlobs, name: &str, age: Duration) -> String {
    let bytes = format!("\u{ff}\u{d8} {name}").into_bytes();
    let sha = sha256_hex(&bytes);
    assert!(blobs.store(&sha, &bytes).unwrap().is_stored());
    let file = std::fs::File::options()
        .write(true)
        .open(blobs.dir().path_of(&sha))
        .unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
    sha
}

/// The post's next record, referring to the image `sha`, received by the store.
fn receive_with_image(store: &CentralStore, post: &mut SealedPost, sha: &str) {
    post.seq += 1;
    let mut crossing = common::crossing(&post.post, post.seq as u32);
    crossing.images.push(ImageRef {
        kind: ImageKind::PlateCrop,
        sha256: sha.to_owned(),
        bytes: 1,
        media_type: "image/jpeg".into(),
    });
    let mut env = RecordEnvelope {
        post: post.post.clone(),
        seq: post.seq,
        recorded_at: chrono::SubsecRound::trunc_subsecs(Utc::now(), 6),
        crossing,
        seal: None,
    };
    post.prev = bcp_record::seal::seal(&mut env, &post.prev, &post.key);
    let topic = bcp_record::topics::records(&post.post);
    let received = store
        .receive(&topic, &serde_json::to_vec(&env).unwrap(), Utc::now())
        .unwrap();
    assert!(
        matches!(received.outcome, bcp_sync::Outcome::Stored { .. }),
        "{received:?}"
    );
}

fn orphans_go_referenced_and_late_ones_stay(db: &TestDb, blob_root: &std::path::Path) {
    let store = db.open();
    let blobs = CentralBlobs::new(blob_root);
    let mut post = SealedPost::new(POST, 7);

    let referenced = image_file(&blobs, "referenced, old", 30 * 24 * HOUR);
    receive_with_image(&store, &mut post, &referenced);
    let orphan = image_file(&blobs, "sent by a rogue client", AGE + HOUR);
    let late = image_file(&blobs, "its record is still in the outbox", AGE - HOUR);
    // A record that central rejects (another post's key on this post's chain) does not count.
    let rejected = image_file(&blobs, "its record was rejected", AGE * 2);
    let mut impostor = SealedPost::new(POST, 8);
    impostor.seq = post.seq;
    impostor.prev = post.prev;
    let mut bad = common::crossing(POST, 99);
    bad.images.push(ImageRef {
        kind: ImageKind::Overview,
        sha256: rejected.clone(),
        bytes: 1,
        media_type: "image/jpeg".into(),
    });
    let mut env = RecordEnvelope {
        post: POST.into(),
        seq: impostor.seq + 1,
        recorded_at: chrono::SubsecRound::trunc_subsecs(Utc::now(), 6),
        crossing: bad,
        seal: None,
    };
    bcp_record::seal::seal(&mut env, &impostor.prev, &impostor.key);
    let received = store
        .receive(
            &bcp_record::topics::records(POST),
            &serde_json::to_vec(&env).unwrap(),
            Utc::now(),
        )
        .unwrap();
    assert!(
        matches!(received.outcome, bcp_sync::Outcome::Rejected(_)),
        "{received:?}"
    );
    let now = SystemTime::now();
    let has = |sha: &str| blobs.dir().path_of(sha).exists();

    // A dry run names the orphans and removes nothing.
    let dry = prune_orphan_images(&store, &blobs, now, AGE, true).unwrap();
    assert_eq!(
        (dry.examined, dry.referenced, dry.too_young, dry.removed),
        (4, 1, 1, 2)
    );
    let mut expected = vec![orphan.clone(), rejected.clone()];
    expected.sort();
    let mut named = dry.orphans.clone();
    named.sort();
    assert_eq!(named, expected);
    assert!(has(&orphan) && has(&rejected));

    let report = prune_orphan_images(&store, &blobs, now, AGE, false).unwrap();
    assert_eq!((report.removed, report.orphans.len()), (2, 2));
    assert!(report.removed_bytes > 0);
    assert!(!has(&orphan) && !has(&rejected), "the orphans are gone");
    assert!(has(&referenced), "a referenced image is never removed");
    assert!(has(&late), "a late record's image waits for the age");

    // The late record arrives: its image is referenced now, and stays past the age.
    receive_with_image(&store, &mut post, &late);
    let later = now + 10 * AGE;
    let report = prune_orphan_images(&store, &blobs, later, AGE, false).unwrap();
    assert_eq!(
        (report.examined, report.referenced, report.removed),
        (2, 2, 0)
    );
    assert!(has(&referenced) && has(&late));
}

#[test]
fn orphan_images_are_pruned_on_sqlite() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    orphans_go_referenced_and_late_ones_stay(&db, &dir.path().join("central.db.blobs"));
}

#[test]
fn orphan_images_are_pruned_on_postgres() {
    let db = TestDb::postgres();
    let dir = tempfile::tempdir().unwrap();
    orphans_go_referenced_and_late_ones_stay(&db, &dir.path().join("images"));
}

#[test]
fn images_prune_command_dry_run_then_for_real() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("central.db");
    let store = CentralStore::open(&db).unwrap();
    let blobs = CentralBlobs::new(bcp_sync::central::blobs::default_blob_dir(&db));
    let mut post = SealedPost::new(POST, 3);
    let kept = image_file(&blobs, "kept", AGE * 2);
    receive_with_image(&store, &mut post, &kept);
    let orphan = image_file(&blobs, "orphan", AGE * 2);
    let young = image_file(&blobs, "young", Duration::ZERO);
    let run = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["images", "prune", "--db"])
            .arg(&db)
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.status.success(),
            "{extra:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let dry = run(&["--dry-run"]);
    assert!(dry.contains(&format!("would remove {orphan}")), "{dry}");
    assert!(!dry.contains(&kept) && !dry.contains(&young), "{dry}");
    assert!(blobs.dir().path_of(&orphan).exists());
    let real = run(&[]);
    assert!(real.contains(&format!("removed {orphan}")), "{real}");
    assert!(real.contains("3 images examined"), "{real}");
    assert!(!blobs.dir().path_of(&orphan).exists());
    assert!(blobs.dir().path_of(&kept).exists() && blobs.dir().path_of(&young).exists());
    // With an age of 0 hours, the young unreferenced image goes too; the referenced one stays.
    let all = run(&["--older-than-hours", "0"]);
    assert!(all.contains(&format!("removed {young}")), "{all}");
    assert!(blobs.dir().path_of(&kept).exists());
}

/// Kills the child if the test ends before it does.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_prunes_at_the_age_set_in_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("central.db");
    let blobs = CentralBlobs::new(dir.path().join("images"));
    let orphan = image_file(&blobs, "two hours old", 2 * HOUR);
    let young = image_file(&blobs, "half an hour old", HOUR / 2);
    let config = dir.path().join("central.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = {:?}\n\n[broker]\nembedded_listen = \"127.0.0.1:0\"\n\n\
             [images]\ndir = {:?}\norphan_age_hours = 1\n",
            db.display().to_string(),
            blobs.dir().root().display().to_string()
        ),
    )
    .unwrap();
    let mut child = Proc(
        Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("orphan images pruned") && tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("serve never logged its prune");
    assert!(
        line.contains("removed=1") || line.contains("\"removed\":1"),
        "{line}"
    );
    assert!(!blobs.dir().path_of(&orphan).exists(), "the orphan is gone");
    assert!(blobs.dir().path_of(&young).exists(), "the young one waits");
    drop(child);
}
