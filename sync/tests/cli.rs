//! The `bcp-central` binary, run as a process.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bcp_sync::{run_uplink, CentralStore, MosquittoProcess, Outbox, StoredCrossing, UplinkConfig};
use chrono::Utc;
use common::{crossing, wait_until_receiver_subscribed, POST};
use tokio::sync::{watch, Notify};

const BIN: &str = env!("CARGO_BIN_EXE_bcp-central");

/// Kills the child if the test ends before it does.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn export_prints_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("central.db");
    let store = CentralStore::open(&db).unwrap();
    let mut post = common::SealedPost::new(POST, 1);
    for _ in 1..=3 {
        let (topic, payload, _) = post.next();
        store.receive(&topic, &payload, Utc::now()).unwrap();
    }
    let out = Command::new(BIN)
        .args(["export", "--json", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<StoredCrossing> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, store.export().unwrap());
}

#[test]
fn export_with_wco_names_prints_the_customs_terms() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("central.db");
    let store = CentralStore::open(&db).unwrap();
    let mut post = common::SealedPost::new(POST, 1);
    let (topic, payload, _) = post.next();
    store.receive(&topic, &payload, Utc::now()).unwrap();
    let out = Command::new(BIN)
        .args(["export", "--json", "--names", "wco", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    let stored = &store.export().unwrap()[0];
    assert_eq!(line["seq"], 1);
    let c = &line["crossing"];
    assert_eq!(c["message_identification"], stored.crossing.id.to_string());
    assert_eq!(
        c["transport_means"],
        serde_json::json!([{
            "type_of_identification": 30,
            "identification_number": "0001AB01",
            "nationality": "TJ"
        }])
    );
    assert_eq!(c["other"]["lane"], "L1");
    assert!(
        c.get("plate").is_none(),
        "record names are not printed: {c}"
    );
    let bad = Command::new(BIN)
        .args(["export", "--json", "--names", "ncts5", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("wco"));
}

#[test]
fn export_shows_where_each_image_stands() {
    use bcp_sync::blobs::sha256_hex;
    use bcp_sync::central::blobs::{default_blob_dir, CentralBlobs};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("central.db");
    let store = CentralStore::open(&db).unwrap();
    let images: Vec<Vec<u8>> = (0..3u8).map(|i| vec![0xff, 0xd8, i]).collect();
    let mut c = crossing(POST, 1);
    for bytes in &images {
        c.images.push(bcp_record::ImageRef {
            kind: bcp_record::ImageKind::Overview,
            sha256: sha256_hex(bytes),
            bytes: bytes.len() as u64,
            media_type: "image/jpeg".into(),
        });
    }
    let mut env = bcp_record::RecordEnvelope {
        post: POST.into(),
        seq: 1,
        recorded_at: chrono::SubsecRound::trunc_subsecs(Utc::now(), 6),
        crossing: c,
        seal: None,
    };
    let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    bcp_record::seal::seal(&mut env, &bcp_record::seal::GENESIS, &key);
    store
        .receive(
            &bcp_record::topics::records(POST),
            &serde_json::to_vec(&env).unwrap(),
            Utc::now(),
        )
        .unwrap();
    let blobs = CentralBlobs::new(default_blob_dir(&db));
    assert!(blobs
        .store(&sha256_hex(&images[0]), &images[0])
        .unwrap()
        .is_stored());
    blobs
        .note_evicted(&bcp_record::BlobEvicted {
            post: POST.into(),
            sha256: sha256_hex(&images[1]),
            evicted_at: Utc::now(),
            reason: "budget".into(),
        })
        .unwrap();
    let out = Command::new(BIN)
        .args(["export", "--json", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    let states: Vec<(&str, &str)> = line["image_states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["state"].as_str().unwrap(), s["sha256"].as_str().unwrap()))
        .collect();
    let sha: Vec<String> = images.iter().map(|b| sha256_hex(b)).collect();
    assert_eq!(
        states,
        [
            ("stored", sha[0].as_str()),
            ("evicted_at_post", sha[1].as_str()),
            ("pending", sha[2].as_str())
        ]
    );
    assert_eq!(line["image_states"][1]["reason"], "budget");
    // The rest of the line is the stored crossing, as before.
    let stored: StoredCrossing = serde_json::from_value(line).unwrap();
    assert_eq!(stored.crossing, env.crossing);
}

#[test]
fn serve_with_expect_times_out_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--expect",
            "1",
            "--timeout-secs",
            "1",
            "--embedded-broker",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--db")
        .arg(dir.path().join("central.db"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("timed out after 1 s: 0 of 1"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_each_stored_crossing_and_exits_when_all_expected_arrived() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("central.db").display().to_string();
    serve_scenario(&dir, &db, Settings::Flags).await;
}

/// The operator's way: database, broker and keys only in `central.toml`; then `posts` and
/// `export` find the database through the same file, and a misspelt key stops the program
/// with the key's name and line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_posts_and_export_take_their_settings_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("central.db").display().to_string();
    let config = serve_scenario(&dir, &db, Settings::ConfigFile).await;
    let config = config.unwrap().display().to_string();
    let out = Command::new(BIN)
        .args(["--config", &config, "posts"])
        .output()
        .unwrap();
    let posts = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{posts}");
    assert!(
        posts.contains(&format!("{POST} chain=ok stored=3 contiguous=3")),
        "{posts}"
    );
    let out = Command::new(BIN)
        .args(["export", "--json", "--config", &config])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[database]\nurl = \"x.db\"\n\n[broker]\nembeded_listen = \"0.0.0.0:1883\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--config", &bad.display().to_string(), "serve"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("bad.toml")
            && stderr.contains("embeded_listen")
            && stderr.contains("line 5"),
        "{stderr}"
    );
    // No database anywhere: the message says where to give one.
    let out = Command::new(BIN).args(["posts"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no database: give --db"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_export_posts_and_verify_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let pg = bcp_sync::PostgresProcess::start().unwrap();
    serve_scenario(&dir, &pg.url(), Settings::Flags).await;
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let url = pg.url();
    let exported = run(&["export", "--json", "--post", POST, "--database", &url]);
    let seqs: Vec<u64> = exported
        .lines()
        .map(|l| serde_json::from_str::<StoredCrossing>(l).unwrap().seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    let posts = run(&["posts", "--db", &url]);
    assert!(
        posts
            .lines()
            .any(|l| l.starts_with(&format!("{POST} chain=ok stored=3 contiguous=3"))),
        "{posts}"
    );
    assert_eq!(
        run(&["verify", "--db", &url]).trim(),
        "ok: 3 records verified"
    );
}

/// How `serve_scenario` gives `bcp-central serve` its settings.
#[derive(Clone, Copy, PartialEq)]
enum Settings {
    Flags,
    /// A `central.toml` in the test folder (its path is returned).
    ConfigFile,
}

/// `bcp-central serve` on `db` (a SQLite path or a PostgreSQL URL) until 3 records arrived.
async fn serve_scenario(
    dir: &tempfile::TempDir,
    db: &str,
    settings: Settings,
) -> Option<std::path::PathBuf> {
    let mosquitto = MosquittoProcess::start().unwrap();
    let is_url = db.starts_with("postgres://");
    // The post's key exists before central starts; central accepts only registered keys.
    let outbox = Arc::new(Outbox::open(&dir.path().join("outbox.db"), POST).unwrap());
    let pub_file = dir.path().join(format!("{POST}.pub"));
    std::fs::write(
        &pub_file,
        bcp_record::seal::to_hex(&outbox.public_key()) + "\n",
    )
    .unwrap();
    let mut command = Command::new(BIN);
    let config = match settings {
        Settings::Flags => {
            command
                .args(["serve", "--expect", "3", "--timeout-secs", "60", "--broker"])
                .arg(format!("127.0.0.1:{}", mosquitto.port()))
                .arg("--registered-keys-only")
                .arg("--post-key")
                .arg(format!("{POST}={}", pub_file.display()))
                .arg("--db")
                .arg(db);
            None
        }
        Settings::ConfigFile => {
            let path = dir.path().join("central.toml");
            std::fs::write(
                &path,
                format!(
                    "[database]\nurl = {db:?}\n\n[broker]\naddress = \"127.0.0.1:{}\"\n\n\
                     [keys]\ndir = {:?}\nregistered_only = true\n",
                    mosquitto.port(),
                    dir.path().display().to_string()
                ),
            )
            .unwrap();
            command.arg("--config").arg(&path).args([
                "serve",
                "--expect",
                "3",
                "--timeout-secs",
                "60",
            ]);
            Some(path)
        }
    };
    let mut child = Proc(
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    // Read central's database from here (WAL allows it) to see the probes arrive.
    let mut store = None;
    wait_until_receiver_subscribed("127.0.0.1", mosquitto.port(), || {
        if store.is_none() && (is_url || std::path::Path::new(db).exists()) {
            store = CentralStore::open_url(db).ok();
        }
        store
            .as_ref()
            .map_or(0, |s| s.rejected().map_or(0, |r| r.len()))
    })
    .await;

    for n in 1..=3 {
        outbox.append(&crossing(POST, n)).unwrap();
    }
    let (shutdown, shutdown_rx) = watch::channel(false);
    let cfg = UplinkConfig {
        broker_host: "127.0.0.1".to_owned(),
        broker_port: mosquitto.port(),
        client_id: "edge-cli".to_owned(),
        post: POST.to_owned(),
        keep_alive_secs: 5,
        max_in_flight: 16,
        ..Default::default()
    };
    let uplink = tokio::spawn(run_uplink(
        cfg,
        outbox,
        Arc::new(Notify::new()),
        shutdown_rx,
    ));

    let stdout = child.0.stdout.take().unwrap();
    let (lines, status) = tokio::task::spawn_blocking(move || {
        let lines: Vec<String> = BufReader::new(stdout).lines().map(Result::unwrap).collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "bcp-central did not exit"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        (lines, status)
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status {status}");
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        let prefix = format!("stored {POST} #{n} plate={n:04}AB01 weight=");
        assert!(line.starts_with(&prefix), "{line}");
        assert!(
            line.contains(&format!("scan=XR1-{n:06} latency=")),
            "{line}"
        );
        assert!(line.ends_with(" ms"), "{line}");
    }
    let posts = CentralStore::open_url(db).unwrap().posts().unwrap();
    let post = posts.iter().find(|p| p.post == POST).unwrap();
    let expected_source = match settings {
        Settings::Flags => "--post-key",
        Settings::ConfigFile => "keys dir",
    };
    assert!(
        post.key_source
            .as_deref()
            .unwrap()
            .starts_with(expected_source),
        "{post:?}"
    );
    shutdown.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), uplink)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    config
}

#[test]
fn posts_shows_chain_state_and_export_filters_by_post() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("central.db");
    let store = CentralStore::open(&db).unwrap();
    let mut a = common::SealedPost::new(POST, 1);
    let mut b = common::SealedPost::new("UZALT-02", 2);
    let recs: Vec<_> = (0..4).map(|_| a.next()).collect();
    for i in [0, 1, 3] {
        store.receive(&recs[i].0, &recs[i].1, Utc::now()).unwrap();
    }
    let (topic, payload, _) = b.next();
    store.receive(&topic, &payload, Utc::now()).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .arg("--db")
            .arg(&db)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let posts: Vec<serde_json::Value> = run(&["posts", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[0]["post"], POST);
    assert_eq!(posts[0]["chain_state"], "gap");
    assert_eq!(posts[0]["gaps"], serde_json::json!([[3, 3]]));
    assert_eq!(posts[0]["contiguous_up_to"], 2);
    assert_eq!(posts[1]["chain_state"], "ok");
    let text = run(&["posts"]);
    assert!(
        text.contains("TJDYU-01 chain=gap stored=3 contiguous=2 highest=4 gaps=[3-3]"),
        "{text}"
    );
    let only_b = run(&["export", "--json", "--post", "UZALT-02"]);
    assert_eq!(only_b.lines().count(), 1);
    assert!(only_b.contains("\"post\":\"UZALT-02\""));
}

#[test]
fn verify_finds_a_record_altered_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("central.db");
    let store = CentralStore::open(&db).unwrap();
    let mut post = common::SealedPost::new(POST, 1);
    for _ in 0..3 {
        let (topic, payload, _) = post.next();
        store.receive(&topic, &payload, Utc::now()).unwrap();
    }
    let run = || {
        Command::new(BIN)
            .args(["verify", "--db"])
            .arg(&db)
            .output()
            .unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: 3 records verified"));
    // Someone with database access changes a weight.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "UPDATE crossings SET envelope = replace(envelope, '\"gross_kg\":24040.0', '\"gross_kg\":14040.0') WHERE seq = 2",
            [],
        )
        .unwrap();
    let out = run();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("FAIL {POST} #2")), "{stdout}");
    assert!(!stdout.contains("#1") && !stdout.contains("#3"), "{stdout}");
}
