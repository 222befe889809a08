//! The outbox against real SQLite files.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report

mod common;

use bcp_sync::outbox::OUTBOX_SCHEMA_VERSION;
use bcp_sync::{DbError, Outbox, OutboxError};
use common::{crossing, POST};

#[test]
fn seq_is_monotonic_from_one_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    {
        let outbox = Outbox::open(&path, POST).unwrap();
        for n in 1..=3 {
            let env = outbox.append(&crossing(POST, n)).unwrap();
            assert_eq!(env.seq, u64::from(n));
            assert_eq!(env.post, POST);
        }
    }
    let outbox = Outbox::open(&path, POST).unwrap();
    assert_eq!(outbox.append(&crossing(POST, 4)).unwrap().seq, 4);
    // Delivering everything does not make numbers reappear.
    outbox.mark_delivered(4).unwrap();
    drop(outbox);
    let outbox = Outbox::open(&path, POST).unwrap();
    assert_eq!(outbox.append(&crossing(POST, 5)).unwrap().seq, 5);
    let stats = outbox.stats().unwrap();
    assert_eq!(
        (stats.last_seq, stats.last_acked_seq, stats.depth),
        (5, 4, 1)
    );
}

#[test]
fn appending_the_same_crossing_twice_keeps_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(&dir.path().join("outbox.db"), POST).unwrap();
    let c = crossing(POST, 1);
    let first = outbox.append(&c).unwrap();
    let again = outbox.append(&c).unwrap();
    assert_eq!(first, again);
    assert_eq!(outbox.stats().unwrap().last_seq, 1);
}

#[test]
fn foreign_crossings_and_foreign_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let outbox = Outbox::open(&path, POST).unwrap();
    let err = outbox.append(&crossing("UZALT-02", 1)).unwrap_err();
    assert!(matches!(err, OutboxError::ForeignCrossing { .. }), "{err}");
    drop(outbox);
    let err = Outbox::open(&path, "UZALT-02").unwrap_err();
    assert!(matches!(err, OutboxError::WrongPost { .. }), "{err}");
    assert!(err.to_string().contains("TJDYU-01"), "{err}");
}

#[test]
fn mark_delivered_is_idempotent_and_never_unmarks() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(&dir.path().join("outbox.db"), POST).unwrap();
    for n in 1..=5 {
        outbox.append(&crossing(POST, n)).unwrap();
    }
    assert_eq!(outbox.mark_delivered(3).unwrap(), 3);
    assert_eq!(outbox.mark_delivered(3).unwrap(), 0);
    assert_eq!(
        outbox.mark_delivered(1).unwrap(),
        0,
        "an older ack changes nothing"
    );
    let stats = outbox.stats().unwrap();
    assert_eq!((stats.depth, stats.last_acked_seq), (2, 3));
    let pending: Vec<u64> = outbox
        .pending(0, 10)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(pending, [4, 5]);
    // An ack beyond what was ever written is capped.
    assert_eq!(outbox.mark_delivered(99).unwrap(), 2);
    let stats = outbox.stats().unwrap();
    assert_eq!((stats.depth, stats.last_acked_seq), (0, 5));
    assert_eq!(stats.oldest_undelivered_recorded_at, None);
}

#[test]
fn pending_respects_after_seq_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(&dir.path().join("outbox.db"), POST).unwrap();
    let mut appended = Vec::new();
    for n in 1..=10 {
        appended.push(outbox.append(&crossing(POST, n)).unwrap());
    }
    let seqs = |after, limit| -> Vec<u64> {
        outbox
            .pending(after, limit)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    assert_eq!(seqs(0, 3), [1, 2, 3]);
    assert_eq!(seqs(7, 100), [8, 9, 10]);
    assert_eq!(seqs(10, 5), Vec::<u64>::new());
    assert_eq!(seqs(4, 0), Vec::<u64>::new());
    outbox.mark_delivered(5).unwrap();
    assert_eq!(seqs(0, 2), [6, 7]);
    // The envelope comes back exactly as appended.
    assert_eq!(outbox.pending(8, 1).unwrap()[0], appended[8]);
    let stats = outbox.stats().unwrap();
    assert_eq!(
        stats.oldest_undelivered_recorded_at,
        Some(appended[5].recorded_at)
    );
}

#[test]
fn a_database_newer_than_the_code_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE future (x TEXT); INSERT INTO future VALUES ('keep me'); \
             PRAGMA user_version = 99;",
        )
        .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = Outbox::open(&path, POST).unwrap_err();
    match &err {
        OutboxError::Db(DbError::TooNew {
            found, supported, ..
        }) => {
            assert_eq!(*found, 99);
            assert_eq!(*supported, OUTBOX_SCHEMA_VERSION as i64);
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("99") && msg.contains(&OUTBOX_SCHEMA_VERSION.to_string()),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file was modified"
    );
    let journal_files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "outbox.db")
        .collect();
    assert!(journal_files.is_empty(), "left behind: {journal_files:?}");
}

#[test]
fn the_file_is_in_wal_mode_with_the_current_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let outbox = Outbox::open(&path, POST).unwrap();
    outbox.append(&crossing(POST, 1)).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(version, OUTBOX_SCHEMA_VERSION as i64);
}

/// The WAL is folded back into the file while appends go on (SQLite's automatic checkpoint at
/// 1000 pages, which the disk-full policy counts on): it never grows past that and a batch,
/// the file holds the records, and every record reads back in one chain after reopening.
#[test]
fn the_wal_stays_bounded_while_batches_are_appended() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let wal = dir.path().join("outbox.db-wal");
    let outbox = Outbox::open_with_key(&path, POST, bcp_sync::PostKey::from_seed([4; 32])).unwrap();
    let batch: usize = 500;
    let mut largest_wal = 0;
    let mut n = 0u32;
    let mut appended_bytes = 0u64;
    let batches = 30;
    for _ in 0..batches {
        let crossings: Vec<_> = (0..batch)
            .map(|_| {
                n += 1;
                crossing(POST, n)
            })
            .collect();
        let envs = outbox.append_batch(&crossings, chrono::Utc::now()).unwrap();
        appended_bytes += envs
            .iter()
            .map(|e| serde_json::to_vec(e).unwrap().len() as u64)
            .sum::<u64>();
        largest_wal = largest_wal.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
    }
    let page = 4096;
    let batch_pages = appended_bytes / batches / page * 2 + 16;
    let bound = (1000 + batch_pages) * (page + 24);
    // Well past the bound, so that an unbounded WAL would show.
    assert!(
        appended_bytes > bound * 3 / 2,
        "only {appended_bytes} bytes appended (bound {bound})"
    );
    assert!(
        largest_wal <= bound,
        "the WAL reached {largest_wal} bytes (bound {bound})"
    );
    // The records are in the file itself, not only in the WAL.
    let file = std::fs::metadata(&path).unwrap().len();
    assert!(
        file >= appended_bytes / 2,
        "the file holds {file} bytes of {appended_bytes}"
    );
    drop(outbox);
    assert_eq!(
        assert_one_sealed_chain(
            &path,
            *bcp_sync::PostKey::from_seed([4; 32])
                .signing_key()
                .verifying_key()
                .as_bytes()
        ),
        u64::from(n)
    );
}

/// Checks that the outbox's records (all of them, delivered too) form one sealed chain.
fn assert_one_sealed_chain(path: &std::path::Path, key: [u8; 32]) -> u64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT seq, envelope, hash FROM outbox ORDER BY seq")
        .unwrap();
    let rows: Vec<(i64, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut prev = bcp_record::seal::GENESIS;
    for (seq, json, hash) in &rows {
        let opened = bcp_record::seal::open(json.as_bytes()).unwrap();
        assert_eq!(opened.envelope.seq, *seq as u64);
        assert_eq!(
            opened.prev, prev,
            "seq {seq} does not follow its predecessor"
        );
        assert_eq!(opened.key, key);
        assert_eq!(bcp_record::seal::to_hex(&opened.hash), *hash);
        prev = opened.hash;
    }
    rows.len() as u64
}

#[test]
fn records_are_sealed_in_one_chain_across_reopen_with_the_key_beside_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let key = {
        let outbox = Outbox::open(&path, POST).unwrap();
        outbox.append(&crossing(POST, 1)).unwrap();
        outbox.public_key()
    };
    let loaded = bcp_sync::PostKey::load(&bcp_sync::keys::default_key_path(&path)).unwrap();
    assert_eq!(loaded.public(), key);
    let outbox = Outbox::open(&path, POST).unwrap();
    let batch: Vec<_> = (2..=4).map(|n| crossing(POST, n)).collect();
    let envs = outbox.append_batch(&batch, chrono::Utc::now()).unwrap();
    assert_eq!(envs.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3, 4]);
    // A batch that repeats a stored crossing gets the stored envelope back.
    let again = outbox
        .append_batch(&batch[..1], chrono::Utc::now())
        .unwrap();
    assert_eq!(again, envs[..1]);
    // A crossing twice in one batch is one record; a large batch is signed on all cores.
    let mut big: Vec<_> = (10..110).map(|n| crossing(POST, n)).collect();
    big.push(big[3].clone());
    let envs_big = outbox.append_batch(&big, chrono::Utc::now()).unwrap();
    assert_eq!(envs_big.len(), 101);
    assert_eq!(envs_big[100], envs_big[3]);
    assert_eq!(envs_big[99].seq, 104);
    assert_eq!(assert_one_sealed_chain(&path, key), 104);
    let mut all = vec![outbox.pending(0, 1).unwrap().remove(0)];
    all.extend(envs);
    all.extend(envs_big[..100].iter().cloned());
    assert_eq!(outbox.pending(0, 200).unwrap(), all);
}

#[test]
fn a_crossing_id_that_is_not_uuid_v7_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(&dir.path().join("outbox.db"), POST).unwrap();
    let mut c = crossing(POST, 1);
    c.id = uuid::Uuid::from_u128(0x1234_5678_9abc_4def_8123_4567_89ab_cdef);
    let err = outbox.append(&c).unwrap_err();
    assert!(matches!(err, OutboxError::NotV7 { .. }), "{err}");
}

#[test]
fn a_version_1_outbox_is_upgraded_and_its_records_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(include_str!("fixtures/outbox_v1.sql"))
        .unwrap();
    let key = bcp_sync::PostKey::from_seed([4; 32]);
    let public = key.public();
    let outbox = Outbox::open_with_key(&path, POST, key).unwrap();
    let stats = outbox.stats().unwrap();
    assert_eq!(
        (stats.last_seq, stats.last_acked_seq, stats.depth),
        (3, 1, 2)
    );
    let pending = outbox.pending(0, 10).unwrap();
    assert_eq!(pending.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(pending[0].crossing.plate.as_ref().unwrap().text, "0002AB01");
    assert!(pending.iter().all(|e| e.seal.is_some()));
    let next = outbox.append(&crossing(POST, 4)).unwrap();
    assert_eq!(next.seq, 4);
    assert_eq!(assert_one_sealed_chain(&path, public), 4);
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, OUTBOX_SCHEMA_VERSION as i64);
    drop(outbox);
    // Reopening seals nothing again: the chain is unchanged.
    let again = Outbox::open_with_key(&path, POST, bcp_sync::PostKey::from_seed([4; 32])).unwrap();
    assert_eq!(again.pending(0, 10).unwrap()[..2], pending[..]);
}

#[test]
fn a_full_outbox_prunes_delivered_records_refuses_cleanly_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let outbox = Outbox::open(&path, POST).unwrap();
    let budget = outbox.set_budget_bytes(256 * 1024).unwrap();
    assert_eq!(outbox.stats().unwrap().budget_bytes, Some(budget));
    let mut n = 0;
    let full = loop {
        n += 1;
        match outbox.append(&crossing(POST, n)) {
            Ok(_) => assert!(n < 10_000, "the budget never filled"),
            Err(e) => break e,
        }
    };
    assert!(matches!(full, OutboxError::Full { .. }), "{full}");
    let stored = u64::from(n) - 1;
    let stats = outbox.stats().unwrap();
    assert_eq!(
        (stats.last_seq, stats.depth),
        (stored, stored),
        "nothing lost"
    );
    assert!(stats.high_water, "the alarm is on");
    let ok: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");

    // Central acknowledges half: the next append prunes those and goes through.
    outbox.mark_delivered(stored / 2).unwrap();
    let next = outbox.append(&crossing(POST, n)).unwrap();
    assert_eq!(next.seq, stored + 1);
    let pending = outbox.pending(0, 100_000).unwrap();
    assert_eq!(pending.first().unwrap().seq, stored / 2 + 1);
    assert_eq!(pending.len() as u64, stored + 1 - stored / 2);

    // Full again with nothing delivered: refused; a bigger budget lets ingest resume.
    let mut m = n;
    loop {
        m += 1;
        if let Err(e) = outbox.append(&crossing(POST, m)) {
            assert!(matches!(e, OutboxError::Full { .. }), "{e}");
            break;
        }
    }
    outbox.set_budget_bytes(4 * budget).unwrap();
    outbox.append(&crossing(POST, m)).unwrap();
    let report = outbox.verify_chain().unwrap();
    assert_eq!(report.first_bad, None, "the chain holds after pruning");
    let stats = outbox.stats().unwrap();
    assert_eq!(stats.depth, stats.last_seq - stored / 2);
}

/// Several lanes appending at once, some giving the same crossings (a lane retrying what another
/// already sent), in batches large and small: batches seal while others commit, yet the file
/// holds one chain, each crossing once, and every append got back what was stored.
#[test]
fn concurrent_appenders_make_one_chain_with_every_crossing_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let outbox = Outbox::open(&path, POST).unwrap();
    let pool: Vec<_> = (0..2_400).map(|n| crossing(POST, n)).collect();
    // Each lane walks the whole pool in its own batch sizes: the lanes race for the same crossings.
    let sizes = [[100usize, 7, 250, 1], [64, 130, 3, 90], [1, 300, 41, 65]];
    let returned: Vec<Vec<bcp_record::RecordEnvelope>> = std::thread::scope(|scope| {
        let lanes: Vec<_> = sizes
            .iter()
            .map(|sizes| {
                let (outbox, pool) = (&outbox, &pool);
                scope.spawn(move || {
                    let mut got = Vec::new();
                    let (mut at, mut i) = (0, 0);
                    while at < pool.len() {
                        let end = (at + sizes[i % sizes.len()]).min(pool.len());
                        let envs = outbox
                            .append_batch(&pool[at..end], chrono::Utc::now())
                            .unwrap();
                        assert_eq!(envs.len(), end - at, "one envelope per crossing");
                        got.extend(envs);
                        (at, i) = (end, i + 1);
                    }
                    got
                })
            })
            .collect();
        lanes.into_iter().map(|l| l.join().unwrap()).collect()
    });

    let stored = held_by_seq(&outbox);
    assert_eq!(stored.len(), pool.len(), "each crossing stored once");
    assert_eq!(
        outbox.stats().unwrap().last_seq,
        pool.len() as u64,
        "no gap"
    );
    for envs in &returned {
        for (env, crossing) in envs.iter().zip(&pool) {
            assert_eq!(env.crossing.id, crossing.id, "in the order given");
            assert_eq!(
                stored.get(&env.seq),
                Some(env),
                "what was returned is what is stored"
            );
        }
    }
    assert_eq!(outbox.verify_chain().unwrap().first_bad, None);
    assert_eq!(
        assert_one_sealed_chain(&path, outbox.public_key()),
        pool.len() as u64
    );
}

/// Lanes appending at once into a file that fills up: an append that fails (its commit refused)
/// may have a batch sealed after it that then cannot follow it; that batch is sealed again on
/// what the file holds. Nothing refused is stored, everything returned is, in one chain; ingest
/// resumes when the budget is raised.
#[test]
fn concurrent_appenders_into_a_full_file_keep_one_chain_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let outbox = Outbox::open(&path, POST).unwrap();
    let budget = outbox.set_budget_bytes(256 * 1024).unwrap();
    let append_until_full = |lane: u32| {
        let mut stored = Vec::new();
        for n in 0..10_000 {
            let batch: Vec<_> = (0..1 + (n + lane) % 40)
                .map(|k| crossing(POST, lane * 1_000_000 + n * 100 + k))
                .collect();
            match outbox.append_batch(&batch, chrono::Utc::now()) {
                Ok(envs) => stored.extend(envs),
                Err(e) if e.is_full() => return (stored, batch),
                Err(e) => panic!("not a full file: {e}"),
            }
        }
        panic!("the budget never filled");
    };
    // Every envelope an append returned, by seq.
    let mut returned = std::collections::HashMap::new();
    for round in 0..2 {
        let lanes: Vec<_> = std::thread::scope(|scope| {
            let lanes: Vec<_> = (0..3)
                .map(|lane| scope.spawn(move || append_until_full(lane + 10 * round)))
                .collect();
            lanes.into_iter().map(|l| l.join().unwrap()).collect()
        });
        for (stored, _) in &lanes {
            for env in stored {
                assert!(
                    returned.insert(env.seq, env.clone()).is_none(),
                    "seq {} twice",
                    env.seq
                );
            }
        }
        let held = held_by_seq(&outbox);
        assert_eq!(
            held, returned,
            "round {round}: exactly what was returned is stored"
        );
        assert_eq!(
            outbox.stats().unwrap().last_seq,
            returned.len() as u64,
            "no gap"
        );
        for (_, refused) in &lanes {
            for c in refused {
                assert!(
                    held.values().all(|e| e.crossing.id != c.id),
                    "a refused crossing is not stored"
                );
            }
        }
        assert_eq!(
            outbox.verify_chain().unwrap().first_bad,
            None,
            "round {round}"
        );
        // Room again: the refused batches go in.
        outbox
            .set_budget_bytes(budget * (3 + 3 * round as u64))
            .unwrap();
        for (_, refused) in &lanes {
            for env in outbox.append_batch(refused, chrono::Utc::now()).unwrap() {
                assert!(returned.insert(env.seq, env).is_none());
            }
        }
    }
    assert_eq!(outbox.verify_chain().unwrap().first_bad, None);
    let records = assert_one_sealed_chain(&path, outbox.public_key());
    assert_eq!(records, outbox.stats().unwrap().last_seq);
}

/// Another writer on the same file (a second process: the head this one sealed after is no
/// longer the file's): the next append is sealed again on the file's head, never forked.
#[test]
fn an_append_after_another_writer_follows_the_files_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.db");
    let ours = Outbox::open(&path, POST).unwrap();
    let theirs = Outbox::open(&path, POST).unwrap();
    let mut n = 0;
    let mut batch = |size: u32| -> Vec<_> {
        n += size;
        (n - size..n).map(|k| crossing(POST, k)).collect()
    };
    let mut expected = 0;
    for (outbox, size) in [
        (&ours, 3),
        (&theirs, 100),
        (&ours, 1),
        (&ours, 70),
        (&theirs, 2),
        (&ours, 65),
    ] {
        let envs = outbox
            .append_batch(&batch(size), chrono::Utc::now())
            .unwrap();
        let seqs: Vec<u64> = envs.iter().map(|e| e.seq).collect();
        let want: Vec<u64> = (expected + 1..=expected + u64::from(size)).collect();
        assert_eq!(seqs, want, "numbered after the file's last record");
        expected += u64::from(size);
    }
    // A crossing the other writer stored is found, not stored again.
    let again = theirs.pending(0, 1).unwrap().remove(0);
    let found = ours.append(&again.crossing).unwrap();
    assert_eq!(found, again);
    assert_eq!(ours.stats().unwrap().last_seq, expected);
    assert_eq!(ours.verify_chain().unwrap().first_bad, None);
    assert_eq!(assert_one_sealed_chain(&path, ours.public_key()), expected);
}

/// Every undelivered record the outbox holds, by seq.
fn held_by_seq(outbox: &Outbox) -> std::collections::HashMap<u64, bcp_record::RecordEnvelope> {
    let held = outbox.pending(0, usize::MAX).unwrap();
    held.into_iter().map(|e| (e.seq, e)).collect()
}
