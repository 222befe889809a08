//! Changing the configuration of the real, running `bcp-agent` with the real `bcpctl`, while
//! vehicles of the simulated post go through: `config set` of a lane window reloads the agent
//! without losing a crossing; an invalid `config apply` is refused before anything is written;
//! a file broken by hand and a SIGHUP are refused by the agent, which keeps running; the audit
//! entry reaches central through the outbox.
#[allow(dead_code)] // the harness serves several test files; this one uses a part of it
mod common;

use anyhow::{bail, ensure, Context, Result};
use bcp_agent::{config_edit, sim_config};
use bcp_sim::{scenario, Simulator, Timing};
use bcp_sync::central::{self, CentralStore, ReceiverConfig};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

const VEHICLES: u64 = 3;
const POST: &str = "TJ-CFG-01";
/// `config set` made by the test, each one audit record.
const CHANGES: u64 = 3;

fn bcpctl(args: &[&str], cfg: &Path) -> Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_bcpctl"))
        .args(args)
        .arg("--config")
        .arg(cfg)
        .env("SUDO_USER", "ana")
        .output()
        .context("running bcpctl")
}

fn status(socket: &Path) -> Result<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_bcpctl"))
        .args(["status", "--json", "--socket"])
        .arg(socket)
        .output()?;
    ensure!(
        out.status.success(),
        "bcpctl status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_reload_the_running_agent_without_losing_a_crossing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let broker = bcp_sync::broker::start_embedded(([127, 0, 0, 1], 0).into())?;
    let port = broker.addr().port();
    let store = Arc::new(CentralStore::open(&dir.path().join("central.db"))?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (stored_tx, _stored_rx) = tokio::sync::mpsc::unbounded_channel();
    let receiver = tokio::spawn(central::run_receiver(
        ReceiverConfig {
            broker_host: "127.0.0.1".into(),
            broker_port: broker.v5_addr().port(),
            client_id: "central-config-test".into(),
            ..Default::default()
        },
        store.clone(),
        stored_tx,
        stop_rx.clone(),
    ));

    let sim = Simulator::start(&dir.path().join("sim"), Timing::default()).await?;
    let state = dir.path().join("agent");
    std::fs::create_dir_all(&state)?;
    let cfg = sim_config::for_simulator(sim.endpoints(), POST, "127.0.0.1", port, &state);
    let socket = cfg.control.socket.clone();
    let cfg_path = dir.path().join("agent.toml");
    let text = format!(
        "# The simulated post; a technician's note that must survive `config set`.\n{}",
        toml::to_string(&cfg)?
    );
    std::fs::write(&cfg_path, text)?;
    let sim_task = tokio::spawn(sim.run(
        Some(scenario::generate(VEHICLES as usize, 11)),
        11,
        stop_rx.clone(),
    ));
    let notify_path = dir.path().join("notify.sock");
    let _notify = common::NotifyListener::bind(&notify_path)?;
    let log = dir.path().join("agent.log");
    let mut agent = common::AgentProcess::start(&cfg_path, &log, &notify_path)?;

    let outcome = technician(&socket, &cfg_path, &log, agent.pid(), &store).await;
    let exit = agent.terminate(Duration::from_secs(10));
    if std::env::var_os("BCP_TEST_SHOW_LOG").is_some() {
        eprintln!("{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    let _ = stop_tx.send(true);
    let _ = sim_task.await;
    let _ = receiver.await;
    if let Err(e) = outcome {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{e:#}\n--- agent log (last lines) ---\n{}", tail.join("\n"));
    }
    let exit = exit.context("bcp-agent did not stop within 10 s of SIGTERM")?;
    ensure!(exit.success(), "bcp-agent exited with {exit}");
    Ok(())
}

async fn technician(
    socket: &Path,
    cfg_path: &Path,
    log: &Path,
    pid: u32,
    store: &CentralStore,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !socket.exists() {
        ensure!(Instant::now() < deadline, "no control socket after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 1. A lane window, while the vehicles go through: after the first crossing, before the
    // last.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let recorded = status(socket)?["lanes"][0]["crossings_recorded"].as_u64();
        if recorded >= Some(1) {
            break;
        }
        ensure!(Instant::now() < deadline, "no crossing after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = std::fs::read_to_string(cfg_path)?;
    let out = bcpctl(
        &["config", "set", "lane.close_after_ms", "2500", "--yes"],
        cfg_path,
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "config set: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        stdout.contains("- lane.close_after_ms = 3000")
            && stdout.contains("+ lane.close_after_ms = 2500"),
        "the diff is shown: {stdout}"
    );
    ensure!(
        stdout.contains("bcp-agent reloaded")
            && stdout.contains("in effect now:        lane.close_after_ms"),
        "the agent reloaded and said what it applied: {stdout}"
    );
    ensure!(
        stdout.contains("audit entries queued for central: 1"),
        "{stdout}"
    );
    let after = std::fs::read_to_string(cfg_path)?;
    let first_change = after.clone();
    ensure!(
        after == before.replace("close_after_ms = 3000", "close_after_ms = 2500"),
        "only the value changed, the comment stayed:\n{after}"
    );
    ensure!(std::fs::read_to_string(config_edit::prev_path(cfg_path))? == before);
    let audit = config_edit::read_audit(&config_edit::audit_log_path(cfg_path), 0)?;
    ensure!(audit.entries.len() == 1 && audit.entries[0].user == "ana");
    wait_for_log(log, "config reloaded").await?;
    let recorded = status(socket)?["lanes"][0]["crossings_recorded"].as_u64();
    ensure!(
        recorded < Some(VEHICLES),
        "the reload came while vehicles were still to be recorded ({recorded:?} of {VEHICLES})"
    );

    // Devices: the camera and the weighbridge restarted alone with their new settings (the
    // weighbridge once no vehicle is on it).
    for (key, value, device) in [
        ("camera.poll_ms", "40", "cam1"),
        ("weighbridge.stable_min_ms", "450", "weighbridge"),
    ] {
        let out = bcpctl(&["config", "set", key, value, "--yes"], cfg_path)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success() && stdout.contains("devices restarted:"),
            "config set {key}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            stdout.contains(device) || stdout.contains("wb1"),
            "{key} restarts {device}: {stdout}"
        );
    }
    let after = std::fs::read_to_string(cfg_path)?;

    // 2. An invalid new file: refused by bcpctl, nothing written, nothing audited.
    let bad = cfg_path.with_file_name("bad.toml");
    std::fs::write(
        &bad,
        after.replace("tailgate_gap_ms = 500", "tailgate_gap_ms = 9000"),
    )?;
    let bad_arg = bad.to_str().context("a UTF-8 temp path")?;
    let out = bcpctl(&["config", "apply", bad_arg, "--yes"], cfg_path)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "an invalid file is refused");
    ensure!(
        stderr.contains("lane.tailgate_gap_ms = 9000") && stderr.contains("(line "),
        "the error names the key and its line: {stderr}"
    );
    ensure!(std::fs::read_to_string(cfg_path)? == after, "not written");

    // 3. A file broken by hand, then SIGHUP: the agent refuses it and keeps its config.
    std::fs::write(cfg_path, after.replace("[lane]", "[lane\n"))?;
    let hup = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()?;
    ensure!(hup.success());
    wait_for_log(log, "config reload REFUSED").await?;
    std::fs::write(cfg_path, &after)?;

    // The vehicles during all this: every one recorded and acknowledged by central, the
    // audit entries too (one record each).
    let deadline = Instant::now() + Duration::from_secs(90);
    let s = loop {
        let s = status(socket)?;
        if s["lanes"][0]["crossings_recorded"].as_u64() == Some(VEHICLES)
            && s["outbox"]["last_acked_seq"].as_u64() == Some(VEHICLES + CHANGES)
        {
            break s;
        }
        ensure!(
            Instant::now() < deadline,
            "not all recorded and acknowledged in time: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    ensure!(s["outbox"]["last_seq"] == VEHICLES + CHANGES, "{s:#}");

    // Central holds every crossing and the change, with who made it.
    let stored = store.export_filtered(Some(POST), None)?;
    let crossings = stored
        .iter()
        .filter(|c| c.crossing.config_change.is_none())
        .count() as u64;
    ensure!(crossings == VEHICLES, "{stored:#?}");
    let changes = store.config_changes(Some(POST), None)?;
    ensure!(changes.len() as u64 == CHANGES, "{changes:#?}");
    let c = &changes[0].change;
    ensure!(
        c.user == "ana"
            && c.command == "set"
            && c.changes[0].key == "lane.close_after_ms"
            && c.changes[0].old.as_deref() == Some("3000")
            && c.changes[0].new.as_deref() == Some("2500")
            && c.previous_sha256.as_deref()
                == Some(config_edit::sha256_hex(before.as_bytes()).as_str()),
        "{c:#?}"
    );
    ensure!(
        changes[1].change.previous_sha256 == Some(config_edit::sha256_hex(first_change.as_bytes()))
    );
    ensure!(changes[2].change.changes[0].key == "weighbridge.stable_min_ms");
    Ok(())
}

/// Waits until the agent's log has a line containing `what`.
async fn wait_for_log(log: &Path, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if std::fs::read_to_string(log)?.contains(what) {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "the agent never logged {what:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
