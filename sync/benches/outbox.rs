//! Outbox and wire figures for BENCHMARKS.md (no libtest harness: prints a table).
//!
//! - **Durable insert rate**: crossings committed to a real outbox file (WAL,
//!   `synchronous=FULL`, each record sealed: SHA-256 + Ed25519) with `append_batch`, for batch
//!   sizes 1, 10, 100 and 1000 from one thread, and 100 and 1000 from two threads at once (one
//!   batch seals while the other commits). A batch is one transaction and one fsync.
//! - **Bytes on the wire per record**: a realistic crossing without images (plate, weight,
//!   dimensions, scan id), sealed; as a single JSON envelope and as batches of 1, 10, 100
//!   (`wire::encode_batch`), payload alone and with the MQTT 3.1.1 PUBLISH framing (fixed header,
//!   topic, packet id) and the broker's PUBACK, plus central's ack message per batch.
//!
//! - **Backlog drain**: an outbox holding `--drain N` records (default 100,000; 0 skips it) is sent by
//!   `run_uplink` through a Mosquitto on loopback to `run_receiver` into a central SQLite store,
//!   until central has acknowledged the last one; records/s end to end, and the peak RSS of the
//!   post's process (outbox + uplink, run as a child: `--post-side`) and of central's.
//!
//! - **Backlog drain into PostgreSQL** (`--drain-postgres N`, alone: the other rows are skipped):
//!   the same drain into central on a throw-away PostgreSQL server ([`bcp_sync::PostgresProcess`],
//!   `fsync=on`, loopback TCP).
//!
//! `cargo bench -p bcp-sync --bench outbox [--profile dev] [-- --records N] [--drain N]`
//! `cargo bench -p bcp-sync --bench outbox -- --drain-postgres 1000000`
#![allow(clippy::unwrap_used)] // a bench: a failed unwrap is the report

use std::time::Instant;

use bcp_record::{
    topics, Ack, Crossing, Dimensions, Flag, PlateRead, RecordEnvelope, ScanDecision, ScanEvent,
    Weighing,
};
use bcp_sync::{wire, Outbox, PostKey};
use chrono::{Duration, TimeZone as _, Utc};

const POST: &str = "TJDYU-01";
/// The durable insert's rows are timed in this many rounds each.
const ROUNDS: usize = 5;

fn crossing(n: u32) -> Crossing {
    let left_at =
        Utc.with_ymd_and_hms(2026, 11, 21, 6, 0, 0).unwrap() + Duration::seconds(i64::from(n) * 47);
    Crossing {
        id: uuid::Uuid::now_v7(),
        post: POST.to_owned(),
        lane: format!("L{}", 1 + n % 4),
        arrived_at: left_at - Duration::seconds(38 + i64::from(n % 9)),
        left_at,
        plate: Some(PlateRead {
            text: format!(
                "{:04}{}{:02}",
                (n * 7919) % 10_000,
                ["AB", "KZ", "TT", "MN"][(n % 4) as usize],
                1 + n % 9
            ),
            confidence: 0.90 + (n % 10) as f32 / 100.0,
            format: Some(["TJ", "UZ", "KZ"][(n % 3) as usize].to_owned()),
            frames: 3 + n % 8,
        }),
        weight: Some(Weighing {
            gross_kg: 12_000.0 + f64::from((n * 613) % 28_000 / 20 * 20),
            division_kg: 20.0,
            stable_at: left_at - Duration::seconds(12),
            device: "WB-1".to_owned(),
            axles_kg: Vec::new(),
            unweighed_axles: 0,
        }),
        dimensions: Some(Dimensions {
            length_mm: 12_000 + (n * 37) % 4_500,
            width_mm: 2_550,
            height_mm: 3_600 + (n * 11) % 400,
        }),
        scan: Some(ScanEvent {
            scanner_id: "XR1".to_owned(),
            scan_id: format!("XR1-{n:06}"),
            scanned_at: left_at - Duration::seconds(20),
            lane: None,
            decision: if n.is_multiple_of(50) {
                ScanDecision::Alarm
            } else {
                ScanDecision::NoAlarm
            },
            images: Vec::new(),
            conveyance_id: None,
            decision_by: None,
        }),
        flags: if n.is_multiple_of(10) {
            vec![Flag::new("plate_low_confidence", "best read below 0.92")]
        } else {
            Vec::new()
        },
        images: Vec::new(),
        transport_mode: None,
        train: None,
        trailer_plate: None,
        config_change: None,
        direction: None,
        customs_office_at_border_reference: None,
    }
}

/// MQTT 3.1.1 PUBLISH at QoS 1: fixed header (1 + remaining-length bytes), topic (2 + len),
/// packet id (2), payload; plus the 4-byte PUBACK coming back.
fn mqtt_bytes(topic: &str, payload: usize) -> usize {
    let remaining = 2 + topic.len() + 2 + payload;
    let len_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + len_bytes + remaining + 4
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: u32| -> u32 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let records = flag("--records", 50_000);
    let drain = flag("--drain", 100_000);
    let drain_postgres = flag("--drain-postgres", 0);
    if let Some(i) = args.iter().position(|a| a == "--post-side") {
        post_side(
            &args[i + 1],
            args[i + 2].parse().unwrap(),
            args[i + 3].parse().unwrap(),
        );
        return;
    }
    if drain_postgres > 0 {
        drain_bench(drain_postgres, true);
        return;
    }

    println!(
        "## Durable outbox insert (WAL, synchronous=FULL, sealed), {records} records per row, in {ROUNDS} rounds"
    );
    println!("| batch | appenders | records/s | fsyncs/s | ms per commit | median round, records/s | best round, records/s |");
    println!("|---|---|---|---|---|---|---|");
    // One appender (a lane) waits for each commit; two (two lanes, or a lane and a re-import) let
    // one batch seal while the other commits.
    for (batch, appenders) in [
        (1usize, 1usize),
        (10, 1),
        (100, 1),
        (1000, 1),
        (100, 2),
        (1000, 2),
    ] {
        // Batch 1 is one fsync per record: fewer records keep the run short.
        let n = if batch == 1 {
            records.min(2_000)
        } else {
            records
        } as usize;
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open_with_key(
            &dir.path().join("outbox.db"),
            POST,
            PostKey::from_seed([7; 32]),
        )
        .unwrap();
        let crossings: Vec<Crossing> = (0..n as u32).map(crossing).collect();
        // Rounds of whole batches, one after the other into the same outbox: the median and
        // the best round show how much of the spread is the machine's (a shared VM's CPU and
        // fsync latency vary from one second to the next).
        let per_round = n.div_ceil(ROUNDS).div_ceil(batch) * batch;
        let mut rounds = Vec::with_capacity(ROUNDS);
        let started = Instant::now();
        for round in crossings.chunks(per_round) {
            let round_started = Instant::now();
            let chunks: Vec<&[Crossing]> = round.chunks(batch).collect();
            std::thread::scope(|scope| {
                for lane in 0..appenders {
                    let (outbox, chunks) = (&outbox, &chunks);
                    scope.spawn(move || {
                        for chunk in chunks.iter().skip(lane).step_by(appenders) {
                            outbox.append_batch(chunk, Utc::now()).unwrap();
                        }
                    });
                }
            });
            rounds.push(round.len() as f64 / round_started.elapsed().as_secs_f64());
        }
        let secs = started.elapsed().as_secs_f64();
        let commits = n.div_ceil(batch) as f64;
        rounds.sort_by(f64::total_cmp);
        println!(
            "| {batch} | {appenders} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} |",
            n as f64 / secs,
            commits / secs,
            secs * 1000.0 / commits,
            rounds[rounds.len() / 2],
            rounds[rounds.len() - 1],
        );
        assert_eq!(outbox.stats().unwrap().last_seq, n as u64);
    }

    // Sealing alone (CPU), to separate it from the fsync cost.
    let key = PostKey::from_seed([7; 32]);
    let mut prev = bcp_record::seal::GENESIS;
    let sample: Vec<Crossing> = (0..5_000).map(crossing).collect();
    let started = Instant::now();
    let mut envs = Vec::with_capacity(sample.len());
    for (i, c) in sample.iter().enumerate() {
        let mut env = RecordEnvelope {
            post: POST.to_owned(),
            seq: i as u64 + 1,
            recorded_at: c.left_at + Duration::milliseconds(3_000),
            crossing: c.clone(),
            seal: None,
        };
        prev = bcp_record::seal::seal(&mut env, &prev, key.record_signer());
        envs.push(env);
    }
    let per_seal_us = started.elapsed().as_secs_f64() * 1e6 / sample.len() as f64;
    println!();
    println!("Sealing alone (canonical JSON, SHA-256, Ed25519): {per_seal_us:.1} µs per record");

    println!();
    println!(
        "## Bytes on the wire per crossing record (no images), {} records",
        envs.len()
    );
    println!(
        "| encoding | payload B/record | with MQTT PUBLISH + PUBACK + central's ack, B/record |"
    );
    println!("|---|---|---|");
    let topic = topics::records(POST);
    let ack_topic = topics::ack(POST);
    let ack_payload = serde_json::to_vec(&Ack {
        post: POST.to_owned(),
        up_to_seq: 123_456,
    })
    .unwrap()
    .len();
    let ack_bytes = mqtt_bytes(&ack_topic, ack_payload);
    let json: usize = envs
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap().len())
        .sum();
    let json_framed: usize = envs
        .iter()
        .map(|e| mqtt_bytes(&topic, serde_json::to_vec(e).unwrap().len()) + ack_bytes)
        .sum();
    let n = envs.len() as f64;
    println!(
        "| single JSON envelope (sealed) | {:.0} | {:.0} |",
        json as f64 / n,
        json_framed as f64 / n
    );
    let mut unsealed_json = 0usize;
    for e in &envs {
        let mut u = e.clone();
        u.seal = None;
        unsealed_json += serde_json::to_vec(&u).unwrap().len();
    }
    println!(
        "| single JSON envelope, unsealed (for scale) | {:.0} | - |",
        unsealed_json as f64 / n
    );
    for batch in [1usize, 10, 100, 500] {
        let mut payload = 0usize;
        let mut framed = 0usize;
        for chunk in envs.chunks(batch) {
            let p = wire::encode_batch(POST, chunk).unwrap().len();
            payload += p;
            framed += mqtt_bytes(&topic, p) + ack_bytes;
        }
        println!(
            "| batch of {batch} (compact seals, zstd 3) | {:.0} | {:.0} |",
            payload as f64 / n,
            framed as f64 / n
        );
    }

    println!();
    if drain > 0 {
        drain_bench(drain, false);
    }
}

/// Peak resident memory of this process (`VmHWM`), in kB.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .unwrap_or(0)
}

/// The post's side of the drain, in its own process (`--post-side OUTBOX PORT N`): the agent's
/// uplink sends the outbox until central has acknowledged record `n`, then prints one line,
/// `post-side SECS PEAK_RSS_KB`, for the parent.
fn post_side(outbox_path: &str, port: u16, n: u64) {
    use bcp_sync::{run_uplink, UplinkConfig};
    use std::sync::Arc;
    use tokio::sync::{watch, Notify};

    let outbox = Arc::new(
        Outbox::open_with_key(outbox_path.as_ref(), POST, PostKey::from_seed([7; 32])).unwrap(),
    );
    // The agent's runtime: the daemon runs its uplink on a 2-thread runtime too.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let secs = runtime.block_on(async {
        let (stop_tx, stop_rx) = watch::channel(false);
        let started = Instant::now();
        let uplink = tokio::spawn(run_uplink(
            UplinkConfig {
                broker_host: "127.0.0.1".into(),
                broker_port: port,
                client_id: "edge-bench".into(),
                post: POST.into(),
                keep_alive_secs: 30,
                // A fast link's tuning (the agent's `sync.batch_max_records = 500`,
                // `sync.max_in_flight = 4000`); the defaults suit slow links.
                batch_max_records: 500,
                max_in_flight: 4000,
                ..UplinkConfig::default()
            },
            Arc::clone(&outbox),
            Arc::new(Notify::new()),
            stop_rx,
        ));
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            if outbox.stats().unwrap().last_acked_seq >= n {
                break;
            }
            assert!(started.elapsed().as_secs() < 1800, "drain did not finish");
        }
        let secs = started.elapsed().as_secs_f64();
        stop_tx.send(true).unwrap();
        uplink.await.unwrap().unwrap();
        secs
    });
    println!("post-side {secs} {}", peak_rss_kb());
}

/// Drains `n` records into central on SQLite or (`postgres`) on a throw-away PostgreSQL. The
/// post (outbox + uplink) runs in a child process so that its memory is measured apart from
/// central's.
fn drain_bench(n: u32, postgres: bool) {
    use bcp_sync::{run_receiver, CentralStore, MosquittoProcess, ReceiverConfig};
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use tokio::sync::{mpsc, watch};

    let mosquitto = match MosquittoProcess::start() {
        Ok(m) => m,
        Err(e) => {
            println!("## Backlog drain: skipped, no Mosquitto ({e:#})");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let outbox_path = dir.path().join("outbox.db");
    let started = Instant::now();
    {
        let outbox =
            Outbox::open_with_key(&outbox_path, POST, PostKey::from_seed([7; 32])).unwrap();
        let mut chunk = Vec::with_capacity(1000);
        for i in 0..n {
            chunk.push(crossing(i));
            if chunk.len() == 1000 || i + 1 == n {
                outbox.append_batch(&chunk, Utc::now()).unwrap();
                chunk.clear();
            }
        }
    }
    let fill = started.elapsed().as_secs_f64();
    let pg = postgres.then(|| bcp_sync::PostgresProcess::start().unwrap());
    let store = Arc::new(match &pg {
        Some(pg) => CentralStore::open_postgres(&pg.url()).unwrap(),
        None => CentralStore::open(&dir.path().join("central.db")).unwrap(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let port = mosquitto.port();
    let (post_secs, post_rss_kb, acked) = runtime.block_on(async {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (stored_tx, mut stored_rx) = mpsc::unbounded_channel();
        let receiver = tokio::spawn(run_receiver(
            ReceiverConfig {
                broker_host: "127.0.0.1".into(),
                broker_port: port,
                client_id: "central-bench".into(),
                ..Default::default()
            },
            Arc::clone(&store),
            stored_tx,
            stop_rx.clone(),
        ));
        // Count what central stores so the channel does not grow with the backlog.
        let counter = tokio::spawn(async move {
            let mut k = 0u64;
            while stored_rx.recv().await.is_some() {
                k += 1;
            }
            k
        });
        // The receiver subscribes before the first record goes out (persistent session).
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let post = tokio::task::spawn_blocking({
            let outbox_path = outbox_path.clone();
            move || {
                Command::new(std::env::current_exe().unwrap())
                    .arg("--post-side")
                    .arg(&outbox_path)
                    .arg(port.to_string())
                    .arg(n.to_string())
                    .stderr(Stdio::inherit())
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        assert!(post.status.success(), "post side failed: {:?}", post.status);
        let line = String::from_utf8_lossy(&post.stdout)
            .lines()
            .find(|l| l.starts_with("post-side "))
            .map(str::to_owned)
            .unwrap();
        let mut fields = line.split_whitespace().skip(1);
        let secs: f64 = fields.next().unwrap().parse().unwrap();
        let rss: u64 = fields.next().unwrap().parse().unwrap();
        stop_tx.send(true).unwrap();
        receiver.await.unwrap().unwrap();
        (secs, rss, counter.await.unwrap())
    });
    assert_eq!(acked, u64::from(n), "central stored each record once");
    let db = if postgres { "PostgreSQL" } else { "SQLite" };
    println!("## Backlog drain through Mosquitto into central ({db}), {n} records");
    println!("| measure | figure |");
    println!("|---|---|");
    println!(
        "| outbox filled (batches of 1000) | {:.0} records/s |",
        f64::from(n) / fill
    );
    println!(
        "| drained, stored and acknowledged end to end | {:.0} records/s ({post_secs:.1} s) |",
        f64::from(n) / post_secs
    );
    println!(
        "| peak RSS of the post process (outbox + uplink, the agent's share) | {:.1} MB |",
        post_rss_kb as f64 / 1024.0
    );
    println!(
        "| peak RSS of the central process (receiver + store; it also filled the outbox) | {:.1} MB |",
        peak_rss_kb() as f64 / 1024.0
    );
    if postgres {
        println!("(PostgreSQL's own processes are not in that figure.)");
    }
    drop(store);
    drop(pg);
}
