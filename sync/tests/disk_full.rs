//! A truly full filesystem: the outbox on a 4 MiB tmpfs, ingesting crossings with images until
//! the disk is full, then space returns.
//!
//! No libtest harness (`harness = false`): the executable re-runs itself, with `BCP_DISKFULL_ROLE`
//! set, inside a new user and mount namespace where it may mount a tmpfs without root:
//! `unshare -Urm sh -c 'mount -t tmpfs -o size=4m tmpfs DIR && exec EXE'`. The child:
//! 1. writes a 1 MiB filler file on the tmpfs and opens an outbox there;
//! 2. appends crossings with a 30 KiB image each until an append fails: it must fail with
//!    `OutboxError::Full` (no panic, no other error) after every image gave way (the policy);
//! 3. checks the store: `PRAGMA integrity_check`, the chain verifies, every appended record is
//!    there and names its image, whose row says it was evicted or whose file is present;
//! 4. deletes the filler (space returns) and checks that the refused crossing and more, with
//!    images, go in again, and that a reopened outbox still verifies.
//!
//! If `unshare` (or the mount) is not permitted here, the test FAILS and says why: it never
//! passes without having filled a real filesystem.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bcp_record::ImageKind;
use bcp_sync::outbox::ImageData;
use bcp_sync::{Outbox, OutboxError};
use common::{crossing, POST};

const ROLE: &str = "BCP_DISKFULL_ROLE";
const IMAGE_BYTES: usize = 30 * 1024;

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("child") {
        let dir = PathBuf::from(std::env::args().nth(1).unwrap());
        child(&dir);
        return;
    }
    println!("running 1 test");
    parent();
    println!("test a_full_filesystem_refuses_cleanly_and_ingest_resumes_when_space_returns ... ok");
}

fn parent() {
    let mnt = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "mount -t tmpfs -o size=4m tmpfs '{}' && exec '{}' '{}'",
        mnt.path().display(),
        exe.display(),
        mnt.path().display()
    );
    let out = Command::new("unshare")
        .args(["-Urm", "sh", "-c", &script])
        .env(ROLE, "child")
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => panic!(
            "disk_full needs `unshare` (util-linux) to mount a small tmpfs in a user+mount \
             namespace, and could not run it: {e}"
        ),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    if !out.status.success() && !stdout.contains("child: started") {
        panic!(
            "disk_full could not mount a tmpfs in a user+mount namespace (`unshare -Urm` then \
             `mount -t tmpfs`; unprivileged user namespaces may be disabled here, see \
             kernel.unprivileged_userns_clone / user.max_user_namespaces): {}\n{stderr}",
            out.status
        );
    }
    assert!(
        out.status.success() && stdout.contains("child: RESULT ok"),
        "the child on the full filesystem failed: {}\n{stderr}",
        out.status
    );
}

fn image(n: u32) -> Vec<u8> {
    let mut v = vec![0xff, 0xd8];
    v.extend(n.to_le_bytes());
    // Not compressible, like a JPEG: a simple xorshift stream.
    let mut x = u64::from(n) | 1;
    while v.len() < IMAGE_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

fn append(outbox: &Outbox, n: u32) -> Result<bcp_record::RecordEnvelope, OutboxError> {
    let bytes = image(n);
    let c = crossing(POST, n);
    outbox.append_with_images(
        &c,
        &[ImageData {
            kind: ImageKind::Overview,
            media_type: "image/jpeg",
            bytes: &bytes,
        }],
    )
}

fn child(dir: &Path) {
    println!("child: started on {}", dir.display());
    let filler = dir.join("filler");
    std::fs::write(&filler, vec![0x55u8; 1024 * 1024]).unwrap();
    let path = dir.join("outbox.db");
    let outbox = Outbox::open(&path, POST).unwrap();
    let mut stored = Vec::new();
    let mut n = 0u32;
    let refused = loop {
        n += 1;
        assert!(n < 100_000, "a 4 MiB filesystem never filled");
        match append(&outbox, n) {
            Ok(env) => stored.push(env),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(refused, OutboxError::Full { .. }),
        "a full disk must give OutboxError::Full, got: {refused}"
    );
    println!("child: full after {} records: {refused}", stored.len());
    let stats = outbox.stats().unwrap();
    assert_eq!(stats.last_seq, stored.len() as u64, "nothing lost");
    assert_eq!(stats.depth, stored.len() as u64);
    assert!(stats.blobs_evicted_total > 0, "images gave way: {stats:?}");
    assert_eq!(
        stats.blobs_bytes, 0,
        "every image gave way before a record: {stats:?}"
    );
    assert_eq!(stats.full_rejections_total, 1);
    let ok: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let report = outbox.verify_chain().unwrap();
    assert_eq!(
        (report.records, report.first_bad),
        (stored.len() as u64, None)
    );
    let pending = outbox.pending(0, 1_000_000).unwrap();
    assert_eq!(pending, stored, "the store holds exactly what was appended");
    for env in &stored {
        let sha = &env.crossing.images[0].sha256;
        let state = outbox.blob_state(sha).unwrap().unwrap();
        assert!(
            state.evicted.is_some(),
            "seq {}: image neither held nor marked evicted",
            env.seq
        );
    }
    // Still full: refused again, cleanly.
    assert!(matches!(append(&outbox, n), Err(OutboxError::Full { .. })));

    // Space returns.
    std::fs::remove_file(&filler).unwrap();
    let env = append(&outbox, n).expect("ingest resumes once space returns");
    assert_eq!(env.seq, stored.len() as u64 + 1);
    let state = outbox
        .blob_state(&env.crossing.images[0].sha256)
        .unwrap()
        .unwrap();
    assert_eq!(state.evicted, None, "its image was stored too");
    for m in n + 1..n + 5 {
        append(&outbox, m).unwrap();
    }
    drop(outbox);
    let outbox = Outbox::open(&path, POST).unwrap();
    let report = outbox.verify_chain().unwrap();
    assert_eq!(report.first_bad, None);
    assert_eq!(report.records, stored.len() as u64 + 5);
    println!(
        "child: RESULT ok: {} records before full, {} images evicted, resumed with 5 more",
        stored.len(),
        outbox.stats().unwrap().blobs_evicted_total
    );
}
