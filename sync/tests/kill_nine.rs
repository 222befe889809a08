//! `kill -9` of the post's writer at random moments, 20 times; central must end with exactly the
//! records the post committed, none missing, none twice.
//!
//! This test target has no libtest harness (`harness = false`): the same executable is both the
//! test and, started by it with `BCP_KILL9_ROLE` set, the post's writer process. The writer
//! opens the outbox (key beside it), runs `run_uplink` to an embedded rumqttd, and commits
//! batches of 1..=10 crossings every few milliseconds until it is killed with SIGKILL at a random
//! moment (often inside a batch commit or between a commit and its publish). After 20 kills a
//! last writer only drains. Then the outbox file is the truth of what was created: central's
//! store must hold exactly its records (same seqs, same crossing ids), the outbox's chain must
//! verify, and nothing may have been rejected.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bcp_sync::{
    run_receiver, run_uplink, start_embedded, CentralStore, Outbox, ReceiverConfig, UplinkConfig,
};
use common::{crossing, wait_for, wait_until_receiver_subscribed, POST};
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::{mpsc, watch, Notify};

const ROLE: &str = "BCP_KILL9_ROLE";
const RUNS: usize = 20;

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("write") => writer(true),
        Ok("drain") => writer(false),
        _ => {
            println!("running 1 test");
            parent();
            println!("test agent_killed_at_random_moments_loses_and_doubles_nothing ... ok");
        }
    }
}

/// The post's writer: `BCP_KILL9_ROLE=write|drain OUTBOX PORT SEED`.
fn writer(append: bool) {
    let args: Vec<String> = std::env::args().collect();
    let outbox_path = PathBuf::from(&args[1]);
    let port: u16 = args[2].parse().unwrap();
    let seed: u64 = args[3].parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let outbox = Arc::new(Outbox::open(&outbox_path, POST).unwrap());
        let notify = Arc::new(Notify::new());
        let (stop_tx, stop_rx) = watch::channel(false);
        let cfg = UplinkConfig {
            broker_host: "127.0.0.1".into(),
            broker_port: port,
            client_id: "edge-kill9".into(),
            post: POST.into(),
            keep_alive_secs: 5,
            max_in_flight: 64,
            ..Default::default()
        };
        let uplink = tokio::spawn(run_uplink(
            cfg,
            Arc::clone(&outbox),
            Arc::clone(&notify),
            stop_rx,
        ));
        if append {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut n = 0u32;
            loop {
                let batch: Vec<_> = (0..rng.random_range(1..=10))
                    .map(|_| {
                        n += 1;
                        crossing(POST, n)
                    })
                    .collect();
                outbox.append_batch(&batch, chrono::Utc::now()).unwrap();
                notify.notify_one();
                tokio::time::sleep(Duration::from_millis(rng.random_range(2..20))).await;
            }
        }
        wait_for("the outbox drained", Duration::from_secs(120), || {
            outbox.stats().unwrap().depth == 0
        })
        .await;
        stop_tx.send(true).unwrap();
        uplink.await.unwrap().unwrap();
    });
}

/// Kills the child when dropped (a failed assertion must not leave it running).
struct Writer(Child);

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(role: &str, outbox: &Path, port: u16, seed: u64, log: &Path) -> Writer {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Writer(
        Command::new(std::env::current_exe().unwrap())
            .env(ROLE, role)
            .env("RUST_LOG", "warn")
            .arg(outbox)
            .arg(port.to_string())
            .arg(seed.to_string())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

fn parent() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let seed: u64 = std::env::var("BCP_KILL9_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random::<u64>);
        println!("kill_nine: seed {seed} (rerun with BCP_KILL9_SEED={seed})");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let outbox_path = dir.path().join("outbox.db");
        let log = dir.path().join("writer.log");
        let broker = start_embedded(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
        let port = broker.addr().port();
        let store = Arc::new(CentralStore::open(&dir.path().join("central.db")).unwrap());
        let (stop_tx, stop_rx) = watch::channel(false);
        let (stored_tx, mut stored_rx) = mpsc::unbounded_channel();
        let cfg = ReceiverConfig {
            broker_host: "127.0.0.1".into(),
            broker_port: broker.v5_addr().port(),
            client_id: "central-kill9".into(),
            ..Default::default()
        };
        let receiver = tokio::spawn(run_receiver(cfg, Arc::clone(&store), stored_tx, stop_rx));
        wait_until_receiver_subscribed("127.0.0.1", port, || store.rejected().unwrap().len()).await;
        let probes = store.rejected().unwrap().len();

        let mut last_seqs = Vec::new();
        for run in 0..RUNS {
            let mut child = spawn("write", &outbox_path, port, rng.random(), &log);
            tokio::time::sleep(Duration::from_millis(rng.random_range(30..400))).await;
            child.0.kill().unwrap(); // SIGKILL
            let status = child.0.wait().unwrap();
            assert!(
                !status.success(),
                "run {run}: the writer exited by itself: {status}"
            );
            if outbox_path.exists() {
                let last = rusqlite::Connection::open(&outbox_path)
                    .unwrap()
                    .query_row("SELECT COALESCE(MAX(seq), 0) FROM outbox", [], |r| {
                        r.get::<_, i64>(0)
                    })
                    .unwrap_or(0);
                last_seqs.push(last);
            }
        }
        println!("kill_nine: last seq after each kill: {last_seqs:?}");
        // The broker published the killed writer's last will: central shows the post offline.
        wait_for(
            "the last will marks the post offline",
            Duration::from_secs(20),
            || {
                store.posts().unwrap().iter().any(|p| {
                    p.post == POST
                        && p.status
                            .as_ref()
                            .is_some_and(|s| s.state == bcp_record::PostState::Offline)
                })
            },
        )
        .await;

        let mut drainer = spawn("drain", &outbox_path, port, 0, &log);
        let status = tokio::task::spawn_blocking(move || {
            let status = drainer.0.wait();
            (drainer, status)
        })
        .await
        .unwrap()
        .1
        .unwrap();
        assert!(
            status.success(),
            "the draining writer failed: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );

        // What the post created: every row of its outbox.
        let created: Vec<(u64, String)> = {
            let conn = rusqlite::Connection::open(&outbox_path).unwrap();
            let mut stmt = conn
                .prepare("SELECT seq, uuid FROM outbox ORDER BY seq")
                .unwrap();
            stmt.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let n = created.len() as u64;
        assert!(n > 0, "the writers committed nothing");
        assert_eq!(created.last().unwrap().0, n, "outbox seqs have a hole");
        wait_for(
            "central holds every record",
            Duration::from_secs(30),
            || store.export().unwrap().len() as u64 >= n,
        )
        .await;
        let stored: Vec<(u64, String)> = store
            .export()
            .unwrap()
            .iter()
            .map(|c| (c.seq, c.crossing.id.to_string()))
            .collect();
        assert_eq!(
            stored, created,
            "central differs from what the post created"
        );
        let mut newly = 0u64;
        while stored_rx.try_recv().is_ok() {
            newly += 1;
        }
        assert_eq!(newly, n, "a record was stored twice");
        assert_eq!(
            store.rejected().unwrap().len(),
            probes,
            "records were rejected"
        );
        let outbox = Outbox::open(&outbox_path, POST).unwrap();
        assert_eq!(outbox.verify_chain().unwrap().first_bad, None);
        assert_eq!(outbox.stats().unwrap().depth, 0);
        let status = store
            .posts()
            .unwrap()
            .into_iter()
            .find(|p| p.post == POST)
            .unwrap()
            .status
            .unwrap();
        assert_eq!(
            status.state,
            bcp_record::PostState::Offline,
            "the drainer said goodbye"
        );
        assert_eq!(status.depth, Some(0));
        println!("kill_nine: {RUNS} kills, {n} records created, {n} stored once each at central");

        stop_tx.send(true).unwrap();
        receiver.await.unwrap().unwrap();
    });
}
