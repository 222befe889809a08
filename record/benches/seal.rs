//! Sealing and opening records: what the post's outbox pays per record it commits, and what
//! central pays per record it receives.
//!
//! `cargo bench -p bcp-record --bench seal [-- --records N]` (default 20,000 records; each row
//! the best of 5 runs, in µs per record, on one core):
//! - `seal`: canonical form, SHA-256 chain, Ed25519 signature (the outbox; it signs batches of
//!   64 or more on every core, see `bcp_sync::outbox`), with the post's signer
//!   ([`seal::PostSigner`], AWS-LC) and with ed25519-dalek; and the signature alone with each;
//! - `canonical form`: writing the canonical bytes of a parsed envelope alone; and of an
//!   envelope's JSON text, through a tree and straight ([`seal::canonical_from_text`]);
//! - `open`: one payload at a time (parse, canonical form, hash, strict verification);
//! - `open_many (100)`: a message of 100 records of one post, signatures verified together
//!   (what central does per MQTT message, see `bcp_record::seal::open_many`);
//! - `open_many_hashed (100)`: the same with each record's hash already computed (a batch
//!   decoder's output: `bcp_sync::wire` hashes each record to rebuild its seal).
#![allow(clippy::unwrap_used)] // a bench: a failed unwrap is the failure report

use bcp_record::seal::{self, GENESIS};
use bcp_record::{Crossing, Dimensions, Flag, PlateRead, RecordEnvelope, Weighing};
use chrono::{TimeZone as _, Utc};
use ed25519_dalek::SigningKey;
use std::time::Instant;

fn envelope(seq: u64) -> RecordEnvelope {
    let t = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap();
    let mut c = Crossing::without_evidence(uuid::Uuid::now_v7(), "TJDYU-01", "L1", t);
    c.plate = Some(PlateRead {
        text: "1234AB01".into(),
        confidence: 0.97,
        format: Some("TJ".into()),
        frames: 3,
    });
    c.weight = Some(Weighing {
        gross_kg: 23_450.0,
        division_kg: 10.0,
        stable_at: t,
        device: "wb1".into(),
        axles_kg: Vec::new(),
        unweighed_axles: 0,
    });
    c.dimensions = Some(Dimensions {
        length_mm: 16_500,
        width_mm: 2_550,
        height_mm: 4_000,
    });
    c.flags = vec![Flag::new(
        "no_scan",
        "the post has a scanner and no scan joined",
    )];
    RecordEnvelope {
        post: "TJDYU-01".into(),
        seq,
        recorded_at: t,
        crossing: c,
        seal: None,
    }
}

/// Best of 5 runs of `f` over `n` records, in µs per record.
fn best(n: usize, mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed().as_secs_f64() * 1e6 / n as f64
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--records")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let key = SigningKey::from_bytes(&[7; 32]);
    let fresh: Vec<RecordEnvelope> = (1..=n as u64).map(envelope).collect();

    let signer = seal::PostSigner::new(&key);
    let mut sealed = fresh.clone();
    let seal_us = best(n, || {
        sealed = fresh.clone();
        let mut prev = GENESIS;
        for e in &mut sealed {
            prev = seal::seal(e, &prev, &signer);
        }
    });
    let seal_dalek_us = best(n, || {
        let mut again = fresh.clone();
        let mut prev = GENESIS;
        for e in &mut again {
            prev = seal::seal(e, &prev, &key);
        }
    });
    let hashes: Vec<[u8; 32]> = (0..n)
        .map(|i| {
            let mut h = [0u8; 32];
            h[..8].copy_from_slice(&(i as u64).to_le_bytes());
            h
        })
        .collect();
    let sign_us = best(n, || {
        for h in &hashes {
            std::hint::black_box(seal::SealingKey::sign_hash(&signer, h));
        }
    });
    let sign_dalek_us = best(n, || {
        for h in &hashes {
            std::hint::black_box(seal::SealingKey::sign_hash(&key, h));
        }
    });
    let payloads: Vec<Vec<u8>> = sealed
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap())
        .collect();
    let trees: Vec<serde_json::Value> = payloads
        .iter()
        .map(|p| serde_json::from_slice(p).unwrap())
        .collect();

    let canonical_us = best(n, || {
        for t in &trees {
            std::hint::black_box(seal::canonical_bytes(t));
        }
    });
    // What the post does for each record it seals: its JSON text to the canonical form.
    let text_tree_us = best(n, || {
        for p in &payloads {
            let tree: serde_json::Value = serde_json::from_slice(p).unwrap();
            std::hint::black_box(seal::canonical_bytes(&tree));
        }
    });
    let text_us = best(n, || {
        for p in &payloads {
            std::hint::black_box(seal::canonical_from_text(p).unwrap());
        }
    });
    let open_us = best(n, || {
        for p in &payloads {
            assert!(seal::open(p).is_ok());
        }
    });
    let many_us = best(n, || {
        for chunk in payloads.chunks(100) {
            assert!(seal::open_many(chunk).iter().all(Result::is_ok));
        }
    });
    let hashed: Vec<(&Vec<u8>, [u8; 32])> = payloads
        .iter()
        .map(|p| (p, seal::text_hash(p).unwrap()))
        .collect();
    let many_hashed_us = best(n, || {
        for chunk in hashed.chunks(100) {
            assert!(seal::open_many_hashed(chunk).iter().all(Result::is_ok));
        }
    });

    println!("## Sealing and opening records, {n} records, best of 5, one core");
    println!("| step | µs per record |");
    println!("|---|---|");
    println!("| seal (canonical form, SHA-256 chain, Ed25519 signature): the post's signer (AWS-LC) | {seal_us:.1} |");
    println!("| seal, signed with ed25519-dalek | {seal_dalek_us:.1} |");
    println!("| Ed25519 signature of a hash: the post's signer (AWS-LC) | {sign_us:.1} |");
    println!("| Ed25519 signature of a hash: ed25519-dalek | {sign_dalek_us:.1} |");
    println!("| canonical form of a parsed envelope | {canonical_us:.2} |");
    println!("| canonical form of an envelope's text, through a tree | {text_tree_us:.2} |");
    println!(
        "| canonical form of an envelope's text, straight (canonical_from_text) | {text_us:.2} |"
    );
    println!("| open, one payload at a time (parse, hash, verify_strict) | {open_us:.1} |");
    println!("| open_many, messages of 100 records (batch verification) | {many_us:.1} |");
    println!("| open_many_hashed, the same with each record's hash given | {many_hashed_us:.1} |");
}
