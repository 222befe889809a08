//! The central store against real databases: verification, dedup, gaps, rejections. Each
//! behaviour runs twice, in `sqlite::` (a file in a temp dir) and `pg::` (a database on a
//! throw-away PostgreSQL server, [`bcp_sync::PostgresProcess`]); the schema tests are per
//! database.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report

mod common;

use bcp_sync::central::{Rejection, CENTRAL_SCHEMA_VERSION};
use bcp_sync::{CentralError, CentralStore, DbError, KeyPolicy, Outcome};
use chrono::{SubsecRound as _, Utc};
use common::{SealedPost, TestDb, POST};

/// Receives `(topic, payload)`; returns `(stored?, ack)` and panics on a rejection.
fn put(store: &CentralStore, rec: &(String, Vec<u8>, bcp_record::RecordEnvelope)) -> (bool, u64) {
    let r = store.receive(&rec.0, &rec.1, Utc::now()).unwrap();
    match r.outcome {
        Outcome::Stored { .. } => (true, r.ack_up_to),
        Outcome::Duplicate => (false, r.ack_up_to),
        Outcome::Rejected(why) => panic!("rejected: {why}"),
    }
}

fn rejected_reason(store: &CentralStore, topic: &str, payload: &[u8]) -> String {
    match store.receive(topic, payload, Utc::now()).unwrap().outcome {
        Outcome::Rejected(why) => why,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn a_duplicate_is_ignored_but_still_acknowledged(db: &TestDb) {
    let store = db.open();
    let mut p = SealedPost::new(POST, 1);
    let r1 = p.next();
    assert_eq!(put(&store, &r1), (true, 1));
    assert_eq!(put(&store, &r1), (false, 1));
    assert_eq!(store.export().unwrap().len(), 1);
}

fn ack_is_the_contiguous_prefix_and_gaps_are_shown(db: &TestDb) {
    let store = db.open();
    let mut p = SealedPost::new(POST, 1);
    let r: Vec<_> = (0..5).map(|_| p.next()).collect();
    assert_eq!(put(&store, &r[0]), (true, 1));
    assert_eq!(put(&store, &r[1]), (true, 2));
    assert_eq!(put(&store, &r[3]), (true, 2));
    let posts = store.posts().unwrap();
    assert_eq!(posts[0].gaps, [(3, 3)]);
    assert_eq!(posts[0].chain_state(), "gap");
    assert_eq!(put(&store, &r[2]), (true, 4));
    // Posts are independent.
    let mut q = SealedPost::new("UZALT-02", 2);
    let s: Vec<_> = (0..2).map(|_| q.next()).collect();
    assert_eq!(put(&store, &s[1]), (true, 0));
    assert_eq!(put(&store, &s[0]), (true, 2));
    assert_eq!(put(&store, &r[4]), (true, 5));
    let posts = store.posts().unwrap();
    assert_eq!(posts.len(), 2);
    assert_eq!(
        (
            posts[0].post.as_str(),
            posts[0].stored,
            posts[0].contiguous_up_to,
            posts[0].chain_state()
        ),
        (POST, 5, 5, "ok")
    );
    assert!(posts[0].gaps.is_empty());
    assert!(posts[0].last_contact.is_some());
    assert_eq!(posts[0].key_source.as_deref(), Some("first record"));
}

fn the_prefix_survives_reopen(db: &TestDb) {
    let mut p = SealedPost::new(POST, 1);
    let r: Vec<_> = (0..3).map(|_| p.next()).collect();
    {
        let store = db.open();
        put(&store, &r[0]);
        put(&store, &r[2]);
    }
    let store = db.open();
    assert_eq!(put(&store, &r[1]), (true, 3));
}

fn export_is_ordered_by_post_then_seq_filters_and_round_trips(db: &TestDb) {
    let store = db.open();
    let received_at = Utc::now().trunc_subsecs(6);
    let mut a = SealedPost::new(POST, 1);
    let mut b = SealedPost::new("UZALT-02", 2);
    let mut c = SealedPost::new("AAAAA-01", 3);
    let (a1, a2, b1, c1) = (a.next(), a.next(), b.next(), c.next());
    for rec in [&a2, &b1, &a1, &c1] {
        store.receive(&rec.0, &rec.1, received_at).unwrap();
    }
    let exported = store.export().unwrap();
    let keys: Vec<(&str, u64)> = exported.iter().map(|c| (c.post.as_str(), c.seq)).collect();
    assert_eq!(
        keys,
        [("AAAAA-01", 1), (POST, 1), (POST, 2), ("UZALT-02", 1)]
    );
    let last = exported.last().unwrap();
    assert_eq!(last.crossing, b1.2.crossing);
    assert_eq!(last.recorded_at, b1.2.recorded_at);
    assert_eq!(last.received_at, received_at);
    let line = serde_json::to_string(last).unwrap();
    assert_eq!(
        &serde_json::from_str::<bcp_sync::StoredCrossing>(&line).unwrap(),
        last
    );
    let only_a = store.export_filtered(Some(POST), None).unwrap();
    assert_eq!(only_a.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 2]);
    let later = store.export_filtered(None, Some(a2.2.recorded_at)).unwrap();
    assert!(later.iter().all(|c| c.recorded_at >= a2.2.recorded_at));
    assert!(later.iter().any(|c| c.post == POST && c.seq == 2));
    assert!(!later.iter().any(|c| c.post == POST && c.seq == 1));
}

fn garbage_is_rejected_with_a_reason_and_kept(db: &TestDb) {
    let store = db.open();
    let why = rejected_reason(&store, "bcp/v1/X/records", b"{not json");
    assert!(why.contains("not a record envelope"), "{why}");
    let why = rejected_reason(&store, "elsewhere", b"{}");
    assert!(why.contains("not a records topic"), "{why}");
    // A valid record of another post on this post's topic.
    let mut p = SealedPost::new("UZALT-02", 2);
    let (_, payload, _) = p.next();
    let why = rejected_reason(&store, &bcp_record::topics::records(POST), &payload);
    assert!(why.contains("does not match the topic"), "{why}");
    let rejected = store.rejected().unwrap();
    assert_eq!(rejected.len(), 3);
    assert_eq!(rejected[0].payload, b"{not json");
    assert_eq!(rejected[0].topic, "bcp/v1/X/records");
    assert!(store.export().unwrap().is_empty());
}

fn unsigned_tampered_wrong_key_replayed_and_unchained_records_are_rejected_not_stored(db: &TestDb) {
    let store = db.open();
    let mut post = SealedPost::new(POST, 1);
    store
        .register_post_key(POST, &post.public(), "test", Utc::now())
        .unwrap();
    let r1 = post.next();
    assert_eq!(put(&store, &r1), (true, 1));

    // Unsigned (a version 1 record).
    let mut unsigned = r1.2.clone();
    unsigned.seal = None;
    let why = rejected_reason(&store, &r1.0, &serde_json::to_vec(&unsigned).unwrap());
    assert!(why.contains("not sealed"), "{why}");

    // Tampered after sealing: the weight changed.
    let r2 = post.next();
    let mut tampered: serde_json::Value = serde_json::from_slice(&r2.1).unwrap();
    tampered["crossing"]["weight"]["gross_kg"] = 1000.0.into();
    let why = rejected_reason(&store, &r2.0, &serde_json::to_vec(&tampered).unwrap());
    assert!(why.contains("hash does not match"), "{why}");

    // Signed with the wrong key (a valid chain, another key).
    let mut impostor = SealedPost::new(POST, 9);
    impostor.prev = post.prev;
    impostor.seq = 2;
    let forged = impostor.next();
    let why = rejected_reason(&store, &forged.0, &forged.1);
    assert!(why.contains("signed with key"), "{why}");

    // A replayed old record: seq 1 of an earlier life of the post's outbox (same key, other chain).
    let mut earlier = SealedPost::new(POST, 1);
    let old = earlier.next();
    let why = rejected_reason(&store, &old.0, &old.1);
    assert!(why.contains("different hash"), "{why}");

    // The same crossing replayed under a new seq.
    let mut replay = r1.2.clone();
    replay.seq = 3;
    bcp_record::seal::seal(
        &mut replay,
        &r2.2
            .seal
            .as_ref()
            .map(|s| bcp_record::seal::from_hex::<32>(&s.hash).unwrap())
            .unwrap(),
        &post.key,
    );
    let why = rejected_reason(&store, &r1.0, &serde_json::to_vec(&replay).unwrap());
    assert!(why.contains("replay"), "{why}");

    // A record that does not follow the stored #1.
    let mut fork = SealedPost::new(POST, 1);
    fork.prev = [7; 32];
    fork.seq = 1;
    let unchained = fork.next();
    let why = rejected_reason(&store, &unchained.0, &unchained.1);
    assert!(why.contains("broken chain"), "{why}");

    // None of it was stored; the genuine #2 still is, and the post shows the rejections.
    assert_eq!(put(&store, &r2), (true, 2));
    let exported = store.export().unwrap();
    assert_eq!(exported.len(), 2);
    assert_eq!(exported[1].crossing, r2.2.crossing);
    assert_eq!(store.rejected().unwrap().len(), 6);
    let posts = store.posts().unwrap();
    assert_eq!((posts[0].rejected, posts[0].chain_state()), (6, "rejected"));
    assert_eq!(posts[0].key_source.as_deref(), Some("test"));
}

fn keys_are_pinned_on_first_use_or_required(db: &TestDb) {
    let mut post = SealedPost::new(POST, 1);
    {
        let mut store = db.open();
        store.set_key_policy(KeyPolicy::RegisteredOnly);
        let r1 = post.next();
        let why = rejected_reason(&store, &r1.0, &r1.1);
        assert!(why.contains("no public key registered"), "{why}");
        store.set_key_policy(KeyPolicy::PinFirst);
        assert_eq!(put(&store, &r1), (true, 1));
        // A different key for a post that has one is refused.
        let err = store
            .register_post_key(POST, &[5; 32], "test", Utc::now())
            .unwrap_err();
        assert!(matches!(err, CentralError::KeyConflict { .. }), "{err}");
        store
            .register_post_key(POST, &post.public(), "test", Utc::now())
            .unwrap();
    }
    // The pin persists.
    let store = db.open();
    let mut other = SealedPost::new(POST, 2);
    other.prev = post.prev;
    other.seq = 1;
    let r2 = other.next();
    let why = rejected_reason(&store, &r2.0, &r2.1);
    assert!(why.contains("signed with key"), "{why}");
    let _ = Rejection::UnknownPost { post: POST.into() };
}

#[test]
fn a_newer_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("central.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 7;")
        .unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = CentralStore::open(&path).unwrap_err();
    assert!(
        matches!(err, CentralError::Db(DbError::TooNew { found: 7, supported, .. }) if supported == CENTRAL_SCHEMA_VERSION as i64),
        "{err:?}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

fn summary_line_matches_the_operator_format(db: &TestDb) {
    let store = db.open();
    let mut p = SealedPost::new(POST, 1);
    p.seq = 11;
    let (topic, payload, env) = p.next();
    let received_at = env.crossing.left_at + chrono::Duration::milliseconds(312);
    store.receive(&topic, &payload, received_at).unwrap();
    let mut sc = store.export().unwrap().remove(0);
    sc.received_at = received_at; // the export keeps microseconds; the fixture may have nanos
    sc.recorded_at = received_at - chrono::Duration::milliseconds(40);
    assert_eq!(
        sc.summary(),
        "stored TJDYU-01 #12 plate=0012AB01 weight=24240 kg dims=16500x2550x3990 mm scan=XR1-000012 latency=312 ms sync=40 ms"
    );
    sc.crossing.plate = None;
    sc.crossing.weight = None;
    sc.crossing.dimensions = None;
    sc.crossing.scan = None;
    assert!(
        sc.summary()
            .contains("plate=- weight=- dims=- scan=- latency=312 ms sync=40 ms"),
        "{}",
        sc.summary()
    );
}

#[test]
fn a_version_1_central_store_is_upgraded_and_keeps_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("central.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(include_str!("fixtures/central_v1.sql"))
        .unwrap();
    let store = CentralStore::open(&path).unwrap();
    let exported = store.export().unwrap();
    assert_eq!(exported.len(), 1);
    assert_eq!(
        exported[0].crossing.plate.as_ref().unwrap().text,
        "0001AB01"
    );
    assert_eq!(store.rejected().unwrap().len(), 1);
    // The post's sealed records continue after the unsealed #1 (it has no hash to chain to).
    let mut p = SealedPost::new(POST, 1);
    p.seq = 1;
    p.prev = [1; 32];
    assert_eq!(put(&store, &p.next()), (true, 2));
    let posts = store.posts().unwrap();
    assert_eq!((posts[0].stored, posts[0].contiguous_up_to), (2, 2));
}

fn a_batch_is_stored_in_one_message_and_a_tampered_one_is_rejected_record_by_record(db: &TestDb) {
    let store = db.open();
    let mut p = SealedPost::new(POST, 1);
    let recs: Vec<_> = (0..5).map(|_| p.next().2).collect();
    let topic = bcp_record::topics::records(POST);
    let payload = bcp_sync::wire::encode_batch(POST, &recs).unwrap();
    let m = store.receive_message(&topic, &payload, Utc::now()).unwrap();
    assert_eq!(m.ack_up_to, 5);
    assert!(m
        .outcomes
        .iter()
        .all(|o| matches!(o, Outcome::Stored { .. })));
    // The same batch again: duplicates.
    let m = store.receive_message(&topic, &payload, Utc::now()).unwrap();
    assert!(m.outcomes.iter().all(|o| *o == Outcome::Duplicate));
    // A batch whose middle record was altered after sealing.
    let mut more: Vec<_> = (0..3).map(|_| p.next().2).collect();
    more[1].crossing.lane = "L9".into();
    let payload = bcp_sync::wire::encode_batch(POST, &more).unwrap();
    let m = store.receive_message(&topic, &payload, Utc::now()).unwrap();
    assert!(matches!(m.outcomes[0], Outcome::Stored { .. }));
    assert!(matches!(m.outcomes[1], Outcome::Rejected(_)));
    assert_eq!(m.ack_up_to, 6);
    assert_eq!(store.export().unwrap().len(), 6);
    // A batch that does not decompress is one rejection with the reason.
    let m = store
        .receive_message(&topic, b"BCPB\x01garbage", Utc::now())
        .unwrap();
    assert!(matches!(&m.outcomes[..], [Outcome::Rejected(why)] if why.contains("decompress")));
}

fn verify_all_finds_a_record_changed_in_the_database(db: &TestDb) {
    let store = db.open();
    let mut p = SealedPost::new(POST, 1);
    for _ in 0..3 {
        assert!(put(&store, &p.next()).0);
    }
    let report = store.verify_all().unwrap();
    assert_eq!((report.checked, report.problems.len()), (3, 0));
    db.execute("UPDATE crossings SET envelope = replace(envelope, 'L1', 'L7') WHERE seq = 2");
    let report = store.verify_all().unwrap();
    assert_eq!(report.checked, 3);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(
        (report.problems[0].0.as_str(), report.problems[0].1),
        (POST, 2)
    );
}

/// Each behaviour above, once per database.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $name() {
                super::$name(&super::TestDb::sqlite());
            })*
        }
        mod pg {
            $(#[test]
            fn $name() {
                super::$name(&super::TestDb::postgres());
            })*
        }
    };
}

on_both_databases!(
    verify_all_finds_a_record_changed_in_the_database,
    a_duplicate_is_ignored_but_still_acknowledged,
    ack_is_the_contiguous_prefix_and_gaps_are_shown,
    the_prefix_survives_reopen,
    export_is_ordered_by_post_then_seq_filters_and_round_trips,
    garbage_is_rejected_with_a_reason_and_kept,
    unsigned_tampered_wrong_key_replayed_and_unchained_records_are_rejected_not_stored,
    keys_are_pinned_on_first_use_or_required,
    summary_line_matches_the_operator_format,
    a_batch_is_stored_in_one_message_and_a_tampered_one_is_rejected_record_by_record,
);

#[test]
fn a_newer_postgres_database_is_refused_and_left_alone() {
    let db = TestDb::postgres();
    let TestDb::Postgres(_, url) = &db else {
        unreachable!()
    };
    drop(db.open());
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client
        .batch_execute("UPDATE schema_version SET version = 7")
        .unwrap();
    let err = CentralStore::open_postgres(url).unwrap_err();
    assert!(
        matches!(err, CentralError::SchemaTooNew { found: 7, supported, .. } if supported == bcp_sync::central::CENTRAL_PG_SCHEMA_VERSION as i64),
        "{err:?}"
    );
    let version: i64 = client
        .query_one("SELECT version FROM schema_version", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, 7);
    assert!(err.to_string().contains("newer"), "{err}");
}
