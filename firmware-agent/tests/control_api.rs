//! The control API and the metrics endpoint of the real `bcp-agent` binary, used by the real
//! `bcpctl`, against the simulated post: a few vehicles through sim -> agent -> embedded
//! rumqttd -> central, while a technician watches.
#[allow(dead_code)] // the harness serves several test files; this one uses a part of it
mod common;

use anyhow::{bail, ensure, Context, Result};
use bcp_agent::sim_config;
use bcp_sim::{scenario, Simulator, Timing};
use bcp_sync::central::{self, CentralStore, ReceiverConfig};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const VEHICLES: u64 = 3;

fn bcpctl(socket: &Path, args: &[&str]) -> Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_bcpctl"))
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .context("running bcpctl")
}

/// Runs bcpctl, demands success, parses its stdout as JSON.
fn bcpctl_json(socket: &Path, args: &[&str]) -> Result<Value> {
    let out = bcpctl(socket, args)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "bcpctl {args:?} failed: {stderr}");
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "bcpctl {args:?} printed no JSON: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `GET /metrics` over loopback: the samples by series.
fn scrape(addr: std::net::SocketAddr) -> Result<(String, HashMap<String, f64>)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP head")?;
    ensure!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    ensure!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let samples = body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect();
    Ok((head.to_owned(), samples))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcpctl_and_metrics_see_the_running_agent() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Traversable by others, so that only the socket's own mode decides who may connect.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let post = "TJ-CTL-01";
    let broker = bcp_sync::broker::start_embedded(([127, 0, 0, 1], 0).into())?;
    let port = broker.addr().port();

    let store = Arc::new(CentralStore::open(&dir.path().join("central.db"))?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (stored_tx, _stored_rx) = tokio::sync::mpsc::unbounded_channel();
    let receiver = tokio::spawn(central::run_receiver(
        ReceiverConfig {
            broker_host: "127.0.0.1".into(),
            broker_port: broker.v5_addr().port(),
            client_id: "central-control-test".into(),
            ..Default::default()
        },
        store,
        stored_tx,
        stop_rx.clone(),
    ));

    let sim = Simulator::start(&dir.path().join("sim"), Timing::default()).await?;
    let state = dir.path().join("agent");
    std::fs::create_dir_all(&state)?;
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755))?;
    let mut cfg = sim_config::for_simulator(sim.endpoints(), post, "127.0.0.1", port, &state);
    cfg.metrics.enabled = true;
    cfg.metrics.listen = ([127, 0, 0, 1], common::free_port()?).into();
    let metrics = cfg.metrics.listen;
    let socket = cfg.control.socket.clone();
    let cfg_path = dir.path().join("agent.toml");
    std::fs::write(&cfg_path, toml::to_string(&cfg)?)?;
    let sim_task = tokio::spawn(sim.run(
        Some(scenario::generate(VEHICLES as usize, 7)),
        7,
        stop_rx.clone(),
    ));

    let notify_path = dir.path().join("notify.sock");
    let _notify = common::NotifyListener::bind(&notify_path)?;
    let log = dir.path().join("agent.log");
    let mut agent = common::AgentProcess::start(&cfg_path, &log, &notify_path)?;

    let outcome = technician(&socket, metrics, &cfg_path).await;
    let status = agent.terminate(Duration::from_secs(10));
    let _ = stop_tx.send(true);
    let _ = sim_task.await;
    let _ = receiver.await;
    if let Err(e) = outcome {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{e:#}\n--- agent log (last lines) ---\n{}", tail.join("\n"));
    }
    let status = status.context("bcp-agent did not stop within 10 s of SIGTERM")?;
    ensure!(status.success(), "bcp-agent exited with {status}");
    ensure!(
        !socket.exists(),
        "the agent removes its socket when it stops"
    );
    Ok(())
}

/// What a technician does while the vehicles go through.
async fn technician(socket: &Path, metrics: std::net::SocketAddr, cfg_path: &Path) -> Result<()> {
    // The agent loads its ANPR models first: the socket appears just before READY.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !socket.exists() {
        ensure!(Instant::now() < deadline, "no control socket after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mode = std::fs::metadata(socket)?.mode() & 0o777;
    ensure!(mode == 0o660, "socket mode {mode:o}");

    // Tail before the first vehicle has left the bridge; the command exits after one crossing.
    let tail = Command::new(env!("CARGO_BIN_EXE_bcpctl"))
        .args(["events", "tail", "--json", "--count", "1", "--socket"])
        .arg(socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let tail = tokio::task::spawn_blocking(move || tail.wait_with_output());
    let tail = tokio::time::timeout(Duration::from_secs(60), tail)
        .await
        .context("bcpctl events tail saw no crossing in 60 s")???;
    ensure!(
        tail.status.success(),
        "events tail: {}",
        String::from_utf8_lossy(&tail.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&tail.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    ensure!(lines.len() == 1, "one crossing, one line: {lines:?}");
    ensure!(lines[0]["seq"] == 1, "{lines:?}");
    ensure!(
        lines[0]["crossing"]["plate"]["text"].is_string()
            && lines[0]["crossing"]["weight"]["gross_kg"].as_f64() > Some(1000.0),
        "the crossing as recorded: {lines:?}"
    );

    // All vehicles recorded and acknowledged by central, as status tells it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let s = bcpctl_json(socket, &["status", "--json"])?;
        let recorded = s["lanes"][0]["crossings_recorded"].as_u64();
        let acked = s["outbox"]["last_acked_seq"].as_u64();
        if recorded == Some(VEHICLES)
            && acked == Some(VEHICLES)
            && s["link"]["last_ack_at"].is_string()
        {
            break s;
        }
        ensure!(
            Instant::now() < deadline,
            "not all recorded and acknowledged in time: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    ensure!(status["post"] == "TJ-CTL-01", "{status:#}");
    ensure!(status["versions"]["agent"] == env!("CARGO_PKG_VERSION"));
    ensure!(status["link"]["connected"] == true, "{status:#}");
    ensure!(
        status["outbox"]["depth"] == 0 && status["outbox"]["last_seq"] == VEHICLES,
        "{status:#}"
    );
    ensure!(
        status["disk"]["fs_total_bytes"].as_u64() > Some(0),
        "{status:#}"
    );
    ensure!(
        status["disk"]["outbox_bytes"].as_u64() > Some(0),
        "{status:#}"
    );
    ensure!(
        status["lanes"][0]["last_crossing"]["seq"] == VEHICLES,
        "{status:#}"
    );
    let kinds: Vec<&str> = status["devices"]
        .as_array()
        .context("devices")?
        .iter()
        .filter_map(|d| d["kind"].as_str())
        .collect();
    ensure!(
        kinds == ["weighbridge", "dimensions", "camera", "scanner"],
        "{kinds:?}"
    );

    let devices = bcpctl_json(socket, &["devices", "--json"])?;
    let wb = &devices[0];
    ensure!(
        wb["name"] == "wb1" && wb["connected"] == true && wb["frames_ok"].as_u64() > Some(0),
        "{devices:#}"
    );
    let lanes = bcpctl_json(socket, &["lanes", "--json"])?;
    ensure!(
        lanes[0]["lane"] == "L1" && lanes[0]["crossings_recorded"] == VEHICLES,
        "{lanes:#}"
    );

    // The readable forms.
    let out = bcpctl(socket, &["status"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && text.contains("wb1") && text.contains("link:     up"),
        "{text}"
    );
    let out = bcpctl(socket, &["sync", "now"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && text.contains("uplink woken"),
        "{text}"
    );
    let sync = bcpctl_json(socket, &["sync", "now", "--json"])?;
    ensure!(
        sync["requested"] == true && sync["depth"] == 0 && sync["connected"] == true,
        "{sync}"
    );

    // The socket path from the config, as the unit's bcpctl would find it.
    let out = Command::new(env!("CARGO_BIN_EXE_bcpctl"))
        .args(["lanes", "--json", "--config"])
        .arg(cfg_path)
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A bad request is answered, and the connection still serves the next one.
    let mut raw = std::os::unix::net::UnixStream::connect(socket)?;
    raw.set_read_timeout(Some(Duration::from_secs(10)))?;
    raw.write_all(b"reboot please\n{\"cmd\":\"lanes\"}\n")?;
    let mut reader = std::io::BufReader::new(raw);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line)?;
    let v: Value = serde_json::from_str(&line)?;
    ensure!(
        v["type"] == "error" && v["message"].as_str().is_some_and(|m| m.contains("status")),
        "{v}"
    );
    line.clear();
    std::io::BufRead::read_line(&mut reader, &mut line)?;
    let v: Value = serde_json::from_str(&line)?;
    ensure!(v["type"] == "lanes", "{v}");

    // The metrics agree with what status said.
    let (_, m) = scrape(metrics)?;
    let get = |k: &str| {
        m.get(k)
            .copied()
            .with_context(|| format!("no {k} in the metrics"))
    };
    let n = VEHICLES as f64;
    ensure!(get(r#"bcp_crossings_recorded_total{lane="L1"}"#)? == n);
    ensure!(get("bcp_outbox_enqueued_total")? == n);
    ensure!(get("bcp_outbox_acknowledged_total")? == n);
    // The rendered plates are read: their crops and overviews are made, none missing.
    let plates_made = get(r#"bcp_evidence_images_total{lane="L1",image="plate",outcome="made"}"#)?;
    let plates_missing =
        get(r#"bcp_evidence_images_total{lane="L1",image="plate",outcome="missing"}"#)?;
    ensure!(
        plates_made > 0.0 && plates_missing == 0.0 && plates_made <= n,
        "plate images made {plates_made}, missing {plates_missing}, of {n} crossings"
    );
    ensure!(get("bcp_outbox_depth")? == 0.0);
    ensure!(get(r#"bcp_device_frames_ok_total{device="wb1",kind="weighbridge"}"#)? > 0.0);
    ensure!(get(r#"bcp_device_frames_ok_total{device="dims1",kind="dimensions"}"#)? > 0.0);
    ensure!(get("bcp_uplink_connected")? == 1.0);
    ensure!(get("bcp_uplink_records_sent_total")? >= n);
    ensure!(get("bcp_uplink_record_bytes_sent_total")? > 0.0);
    let frames = get(r#"bcp_anpr_frame_seconds_count{camera="cam1"}"#)?;
    ensure!(frames > 0.0, "the camera's frames were timed");
    ensure!(get(r#"bcp_anpr_frame_seconds_bucket{camera="cam1",le="+Inf"}"#)? == frames);
    ensure!(get("bcp_disk_filesystem_size_bytes")? > 0.0);

    refuses_users_outside_the_group(socket)?;
    Ok(())
}

/// Run as `nobody`: refused, and told what to do; with the socket's group: served.
fn refuses_users_outside_the_group(socket: &Path) -> Result<()> {
    let uid = std::fs::metadata(socket)?.uid();
    if uid != 0 || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("not root or no setpriv: the permission check was skipped");
        return Ok(());
    }
    let gid = std::fs::metadata(socket)?.gid();
    let as_nobody = |groups: &str| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534"])
            .args(if groups.is_empty() {
                vec!["--clear-groups".to_owned()]
            } else {
                vec![format!("--groups={groups}")]
            })
            .arg(env!("CARGO_BIN_EXE_bcpctl"))
            .args(["lanes", "--socket"])
            .arg(socket)
            .output()
    };
    let out = as_nobody("")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "nobody was let in");
    ensure!(
        stderr.contains("ermission denied") && stderr.contains("bcp-tech"),
        "says what to do: {stderr}"
    );
    let out = as_nobody(&gid.to_string())?;
    ensure!(
        out.status.success(),
        "a member of the socket's group is served: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn without_an_agent_bcpctl_says_what_to_check() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = bcpctl(&dir.path().join("agent.sock"), &["status"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("agent.sock") && stderr.contains("systemctl status bcp-agent"),
        "{stderr}"
    );

    // A stale socket: nobody answers.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale)?);
    let out = bcpctl(&stale, &["sync", "now"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nothing answers"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    Ok(())
}
