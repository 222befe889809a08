//! The central store against real SQLite files.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report

mod common;

use bcp_record::RecordEnvelope;
use bcp_sync::central::CENTRAL_SCHEMA_VERSION;
use bcp_sync::{CentralError, CentralStore, DbError, StoreOutcome};
use chrono::{SubsecRound as _, Utc};
use common::{crossing, POST};

fn envelope(post: &str, seq: u64) -> RecordEnvelope {
    RecordEnvelope {
        post: post.to_owned(),
        seq,
        recorded_at: Utc::now().trunc_subsecs(6),
        crossing: crossing(post, seq as u32),
    }
}

fn outcome(newly_stored: bool, ack_up_to: u64) -> StoreOutcome {
    StoreOutcome {
        newly_stored,
        ack_up_to,
    }
}

#[test]
fn a_duplicate_is_ignored_but_still_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let store = CentralStore::open(&dir.path().join("central.db")).unwrap();
    let env = envelope(POST, 1);
    let now = Utc::now();
    assert_eq!(store.store(&env, now).unwrap(), outcome(true, 1));
    assert_eq!(store.store(&env, now).unwrap(), outcome(false, 1));
    // The same crossing under another seq (an outbox that was rebuilt) is not stored twice.
    let mut again = env.clone();
    again.seq = 2;
    assert_eq!(store.store(&again, now).unwrap(), outcome(false, 1));
    assert_eq!(store.export().unwrap().len(), 1);
}

#[test]
fn ack_is_the_contiguous_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = CentralStore::open(&dir.path().join("central.db")).unwrap();
    let now = Utc::now();
    assert_eq!(
        store.store(&envelope(POST, 1), now).unwrap(),
        outcome(true, 1)
    );
    assert_eq!(
        store.store(&envelope(POST, 2), now).unwrap(),
        outcome(true, 2)
    );
    assert_eq!(
        store.store(&envelope(POST, 4), now).unwrap(),
        outcome(true, 2)
    );
    assert_eq!(
        store.store(&envelope(POST, 3), now).unwrap(),
        outcome(true, 4)
    );
    // Posts are independent.
    assert_eq!(
        store.store(&envelope("UZALT-02", 2), now).unwrap(),
        outcome(true, 0)
    );
    assert_eq!(
        store.store(&envelope("UZALT-02", 1), now).unwrap(),
        outcome(true, 2)
    );
    assert_eq!(
        store.store(&envelope(POST, 5), now).unwrap(),
        outcome(true, 5)
    );
}

#[test]
fn the_prefix_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("central.db");
    let now = Utc::now();
    {
        let store = CentralStore::open(&path).unwrap();
        store.store(&envelope(POST, 1), now).unwrap();
        store.store(&envelope(POST, 3), now).unwrap();
    }
    let store = CentralStore::open(&path).unwrap();
    assert_eq!(
        store.store(&envelope(POST, 2), now).unwrap(),
        outcome(true, 3)
    );
}

#[test]
fn export_is_ordered_by_post_then_seq_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = CentralStore::open(&dir.path().join("central.db")).unwrap();
    let received_at = Utc::now().trunc_subsecs(6);
    let b2 = envelope("UZALT-02", 2);
    for env in [
        envelope(POST, 2),
        b2.clone(),
        envelope(POST, 1),
        envelope("AAAAA-01", 1),
    ] {
        store.store(&env, received_at).unwrap();
    }
    let exported = store.export().unwrap();
    let keys: Vec<(&str, u64)> = exported.iter().map(|c| (c.post.as_str(), c.seq)).collect();
    assert_eq!(
        keys,
        [("AAAAA-01", 1), (POST, 1), (POST, 2), ("UZALT-02", 2)]
    );
    let last = exported.last().unwrap();
    assert_eq!(last.crossing, b2.crossing);
    assert_eq!(last.recorded_at, b2.recorded_at);
    assert_eq!(last.received_at, received_at);
    let line = serde_json::to_string(last).unwrap();
    assert_eq!(
        &serde_json::from_str::<bcp_sync::StoredCrossing>(&line).unwrap(),
        last
    );
}

#[test]
fn rejected_messages_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = CentralStore::open(&dir.path().join("central.db")).unwrap();
    store
        .reject(
            "bcp/v1/X/records",
            b"{not json",
            "payload is not a record envelope",
            Utc::now(),
        )
        .unwrap();
    let rejected = store.rejected().unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].payload, b"{not json");
    assert_eq!(rejected[0].topic, "bcp/v1/X/records");
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

#[test]
fn summary_line_matches_the_operator_format() {
    let dir = tempfile::tempdir().unwrap();
    let store = CentralStore::open(&dir.path().join("central.db")).unwrap();
    let mut env = envelope(POST, 12);
    env.crossing.weight.as_mut().unwrap().gross_kg = 24_560.0;
    let received_at = env.crossing.left_at + chrono::Duration::milliseconds(312);
    store.store(&env, received_at).unwrap();
    let mut sc = store.export().unwrap().remove(0);
    sc.received_at = received_at; // the export keeps microseconds; the fixture may have nanos
    sc.recorded_at = received_at - chrono::Duration::milliseconds(40);
    assert_eq!(
        sc.summary(),
        "stored TJDYU-01 #12 plate=0012AB01 weight=24560 kg dims=16500x2550x3990 mm scan=XR1-000012 latency=312 ms sync=40 ms"
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
