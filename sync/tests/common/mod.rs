//! Shared test fixtures: realistic crossings.
#![allow(dead_code, clippy::unwrap_used)] // shared by several test crates; unwrap is the failure report

use bcp_record::{Crossing, Dimensions, PlateRead, ScanDecision, ScanEvent, Weighing};
use chrono::{Duration, Utc};
use uuid::Uuid;

pub const POST: &str = "TJDYU-01";

/// A complete crossing of `post`; `n` varies the plate, weight and scan id.
pub fn crossing(post: &str, n: u32) -> Crossing {
    let left_at = Utc::now();
    Crossing {
        id: Uuid::now_v7(),
        post: post.to_owned(),
        lane: "L1".to_owned(),
        arrived_at: left_at - Duration::seconds(40),
        left_at,
        plate: Some(PlateRead {
            text: format!("{:04}AB01", n % 10_000),
            confidence: 0.97,
            format: Some("TJ".to_owned()),
            frames: 7,
        }),
        weight: Some(Weighing {
            gross_kg: 24_000.0 + f64::from(n) * 20.0,
            division_kg: 20.0,
            stable_at: left_at - Duration::seconds(10),
            device: "WB-1".to_owned(),
        }),
        dimensions: Some(Dimensions {
            length_mm: 16_500,
            width_mm: 2_550,
            height_mm: 3_990,
        }),
        scan: Some(ScanEvent {
            scanner_id: "XR1".to_owned(),
            scan_id: format!("XR1-{n:06}"),
            scanned_at: left_at - Duration::seconds(20),
            lane: Some("L1".to_owned()),
            decision: ScanDecision::NoAlarm,
            images: vec![format!("XR1-{n:06}.png")],
            conveyance_id: None,
            decision_by: None,
        }),
        flags: Vec::new(),
        images: Vec::new(),
        transport_mode: None,
        train: None,
        trailer_plate: None,
        config_change: None,
        direction: None,
        customs_office_at_border_reference: None,
    }
}

/// Polls `cond` every 50 ms until it holds; panics with `what` after `timeout`.
pub async fn wait_for(what: &str, timeout: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Proves that central's receiver is subscribed: publishes a malformed probe on a records topic
/// every 200 ms until `rejected_count()` goes up (the receiver keeps malformed messages).
pub async fn wait_until_receiver_subscribed(
    host: &str,
    port: u16,
    mut rejected_count: impl FnMut() -> usize,
) {
    use rumqttc::{AsyncClient, MqttOptions, QoS};
    let before = rejected_count();
    let mut opts = MqttOptions::new(format!("probe-{}", Uuid::now_v7().simple()), host, port);
    opts.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let pump = tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    });
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while rejected_count() <= before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "central receiver never subscribed"
        );
        let _ = client
            .publish(
                bcp_record::topics::records("PROBE-00"),
                QoS::AtLeastOnce,
                false,
                b"probe: not a record".to_vec(),
            )
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    pump.abort();
}

/// A post that seals records by hand, so that tests can also forge, replay and break chains.
pub struct SealedPost {
    pub post: String,
    pub key: ed25519_dalek::SigningKey,
    pub prev: [u8; 32],
    pub seq: u64,
}

impl SealedPost {
    pub fn new(post: &str, seed: u8) -> Self {
        Self {
            post: post.to_owned(),
            key: ed25519_dalek::SigningKey::from_bytes(&[seed; 32]),
            prev: bcp_record::seal::GENESIS,
            seq: 0,
        }
    }

    pub fn public(&self) -> [u8; 32] {
        *self.key.verifying_key().as_bytes()
    }

    /// The next record of the chain: `(topic, payload, envelope)`.
    pub fn next(&mut self) -> (String, Vec<u8>, bcp_record::RecordEnvelope) {
        self.seq += 1;
        let mut env = bcp_record::RecordEnvelope {
            post: self.post.clone(),
            seq: self.seq,
            recorded_at: chrono::SubsecRound::trunc_subsecs(Utc::now(), 6),
            crossing: crossing(&self.post, self.seq as u32),
            seal: None,
        };
        self.prev = bcp_record::seal::seal(&mut env, &self.prev, &self.key);
        let payload = serde_json::to_vec(&env).unwrap();
        (bcp_record::topics::records(&self.post), payload, env)
    }
}

/// A central store's database for a test: a SQLite file in a temp dir, or a fresh database on a
/// throw-away PostgreSQL server shared by the tests of this binary that run at the same time
/// (stopped when the last of them drops it).
pub enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres(std::sync::Arc<bcp_sync::PostgresProcess>, String),
}

impl TestDb {
    pub fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().unwrap())
    }

    pub fn postgres() -> Self {
        use std::sync::{Arc, Mutex, Weak};
        static SHARED: Mutex<Weak<bcp_sync::PostgresProcess>> = Mutex::new(Weak::new());
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let server = {
            let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
            match shared.upgrade() {
                Some(server) => server,
                None => {
                    let server = Arc::new(bcp_sync::PostgresProcess::start().unwrap());
                    *shared = Arc::downgrade(&server);
                    server
                }
            }
        };
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let url = server.create_database(&format!("test_{n}")).unwrap();
        Self::Postgres(server, url)
    }

    /// Runs SQL on the database behind the store's back (to tamper with it).
    pub fn execute(&self, sql: &str) {
        match self {
            Self::Sqlite(dir) => rusqlite::Connection::open(dir.path().join("central.db"))
                .unwrap()
                .execute_batch(sql)
                .unwrap(),
            Self::Postgres(_, url) => postgres::Client::connect(url, postgres::NoTls)
                .unwrap()
                .batch_execute(sql)
                .unwrap(),
        }
    }

    /// Opens (again) the store on this database.
    pub fn open(&self) -> bcp_sync::CentralStore {
        match self {
            Self::Sqlite(dir) => bcp_sync::CentralStore::open(&dir.path().join("central.db")),
            Self::Postgres(_, url) => bcp_sync::CentralStore::open_postgres(url),
        }
        .unwrap()
    }
}
