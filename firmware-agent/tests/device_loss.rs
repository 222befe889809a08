//! The appliance left alone: a weighbridge cable pulled mid-run and put back, and a SIGTERM in
//! the middle of a burst of crossings. sim -> the real `bcp-agent` -> embedded rumqttd ->
//! central, with the real `bcpctl` watching the devices.
#[allow(dead_code)] // the harness serves several test files; this one uses a part of it
mod common;

use anyhow::{bail, ensure, Context, Result};
use bcp_agent::sim_config;
use bcp_sim::{scenario, Faults, Simulator, Timing};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `bcpctl devices --json`: the weighbridge's `connected` and `frames_ok`.
fn weighbridge(socket: &Path) -> Result<(Option<bool>, u64)> {
    let out = Command::new(env!("CARGO_BIN_EXE_bcpctl"))
        .args(["devices", "--json", "--socket"])
        .arg(socket)
        .output()
        .context("running bcpctl")?;
    ensure!(
        out.status.success(),
        "bcpctl devices failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let list = v
        .get("devices")
        .and_then(|d| d.as_array())
        .or_else(|| v.as_array())
        .context("no device list in bcpctl devices --json")?;
    let wb = list
        .iter()
        .find(|d| d["kind"] == "weighbridge")
        .context("no weighbridge in bcpctl devices")?;
    Ok((
        wb["connected"].as_bool(),
        wb["frames_ok"].as_u64().unwrap_or(0),
    ))
}

/// Polls `bcpctl devices` until the weighbridge's `connected` is `want`.
async fn wait_connected(socket: &Path, want: bool, within: Duration) -> Result<u64> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok((Some(c), frames)) = weighbridge(socket) {
            if c == want {
                return Ok(frames);
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the weighbridge did not become connected={want} within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The cable of the weighbridge is pulled after the first vehicle and put back a few seconds
/// later, between two vehicles (20 s apart, so the test takes about a minute): the agent reports the device down (the daemon and the other
/// devices run on), reconnects by itself, and every vehicle reaches central with its weight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighbridge_unplugged_and_replugged_mid_run_loses_no_vehicle() -> Result<()> {
    const VEHICLES: usize = 3;
    let dir = tempfile::tempdir()?;
    let post = "TJ-LOSS-01";
    let mut central = common::TestCentral::start(dir.path(), "central-device-loss")?;
    let (port, store) = (central.broker_port, central.store.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    // A long gap between vehicles: the cable is out and back while the bridge is empty.
    let timing = Timing {
        gap: Duration::from_secs(20),
        ..Timing::default()
    };
    let sim = Simulator::start(&dir.path().join("sim"), timing).await?;
    let faults = sim.weighbridge_faults();
    let state = dir.path().join("agent");
    std::fs::create_dir_all(&state)?;
    let cfg = sim_config::for_simulator(sim.endpoints(), post, "127.0.0.1", port, &state);
    let socket = cfg.control.socket.clone();
    let cfg_path = dir.path().join("agent.toml");
    std::fs::write(&cfg_path, toml::to_string(&cfg)?)?;
    let vehicles = scenario::generate(VEHICLES, 23);
    let sim_task = tokio::spawn(sim.run(Some(vehicles.clone()), 23, stop_rx.clone()));

    let notify_path = dir.path().join("notify.sock");
    let _notify = common::NotifyListener::bind(&notify_path)?;
    let log = dir.path().join("agent.log");
    let mut agent = common::AgentProcess::start(&cfg_path, &log, &notify_path)?;

    let outcome: Result<Vec<bcp_sync::central::StoredCrossing>> = async {
        let first = tokio::time::timeout(Duration::from_secs(60), central.stored.recv())
            .await
            .context("no first crossing at central within 60 s")?
            .context("receiver stopped")?;
        ensure!(first.seq == 1, "first stored seq {}", first.seq);
        let frames_before = wait_connected(&socket, true, Duration::from_secs(5)).await?;

        faults.send_replace(Faults {
            unplugged: true,
            ..Faults::default()
        });
        // A pty whose other end is gone reads as silence: the driver gives the device up after
        // 5 s without a valid frame.
        wait_connected(&socket, false, Duration::from_secs(10))
            .await
            .context("after the cable was pulled")?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        faults.send_replace(Faults::default());
        let frames_after = wait_connected(&socket, true, Duration::from_secs(8))
            .await
            .context("after the cable was put back")?;
        ensure!(
            frames_after >= frames_before,
            "frame counters kept across the outage ({frames_before} -> {frames_after})"
        );

        let mut n = 1;
        while n < VEHICLES {
            tokio::time::timeout(Duration::from_secs(60), central.stored.recv())
                .await
                .with_context(|| format!("{n} of {VEHICLES} crossings at central"))?
                .context("receiver stopped")?;
            n += 1;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        ensure!(
            central.stored.try_recv().is_err(),
            "more crossings than vehicles reached central"
        );
        Ok(store.export()?)
    }
    .await;
    let status = agent.terminate(Duration::from_secs(10));
    let _ = stop_tx.send(true);
    let _ = sim_task.await;
    central.stop().await;
    let stored = match outcome {
        Ok(s) => s,
        Err(e) => bail!("{e:#}\n--- agent log (last lines) ---\n{}", log_tail(&log)),
    };
    ensure!(
        status.is_some_and(|s| s.success()),
        "bcp-agent did not exit cleanly on SIGTERM: {status:?}"
    );
    ensure!(stored.len() == VEHICLES, "central holds {}", stored.len());
    for (s, v) in stored.iter().zip(&vehicles) {
        let w = s
            .crossing
            .weight
            .as_ref()
            .with_context(|| format!("crossing {} has no weight", s.seq))?;
        ensure!(
            w.gross_kg == f64::from(v.gross_kg),
            "crossing {}: {} kg, vehicle {} weighed {} kg",
            s.seq,
            w.gross_kg,
            v.plate_display,
            v.gross_kg
        );
    }
    let text = std::fs::read_to_string(&log)?;
    ensure!(
        text.contains("serial device unavailable"),
        "the agent logged the outage:\n{}",
        log_tail(&log)
    );
    Ok(())
}

/// `crossing recorded seq=N` lines of an agent's log: the seqs it committed to its outbox.
fn recorded_seqs(log: &Path) -> Result<Vec<u64>> {
    let text = std::fs::read_to_string(log)?;
    Ok(text
        .lines()
        .filter(|l| l.contains("crossing recorded"))
        .filter_map(|l| {
            l.split("seq=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect())
}

/// SIGTERM while vehicles follow each other closely: the agent closes what is open, commits
/// it and exits 0 within the grace period; started again (the lane now quiet), it sends what
/// central lacks. Central ends with exactly the records the first run committed: every seq
/// once, none missing, none twice, in the vehicles' order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_burst_loses_and_doubles_nothing() -> Result<()> {
    const VEHICLES: usize = 8;
    let dir = tempfile::tempdir()?;
    let post = "TJ-TERM-01";
    let mut central = common::TestCentral::start(dir.path(), "central-sigterm")?;
    let (port, store) = (central.broker_port, central.store.clone());
    let (sim_stop_tx, sim_stop_rx) = tokio::sync::watch::channel(false);
    // Vehicles close behind each other: at any moment one is on the bridge or being closed.
    let timing = Timing {
        gap: Duration::from_millis(300),
        ..Timing::default()
    };
    let sim = Simulator::start(&dir.path().join("sim"), timing).await?;
    let state = dir.path().join("agent");
    std::fs::create_dir_all(&state)?;
    let cfg = sim_config::for_simulator(sim.endpoints(), post, "127.0.0.1", port, &state);
    let cfg_path = dir.path().join("agent.toml");
    std::fs::write(&cfg_path, toml::to_string(&cfg)?)?;
    let vehicles = scenario::generate(VEHICLES, 31);
    let sim_task = tokio::spawn(sim.run(Some(vehicles.clone()), 31, sim_stop_rx));

    let notify_path = dir.path().join("notify.sock");
    let _notify = common::NotifyListener::bind(&notify_path)?;
    let log1 = dir.path().join("agent-1.log");
    let mut agent = common::AgentProcess::start(&cfg_path, &log1, &notify_path)?;

    let first_run: Result<()> = async {
        for n in 1..=2 {
            tokio::time::timeout(Duration::from_secs(60), central.stored.recv())
                .await
                .with_context(|| format!("crossing {n} not at central within 60 s"))?
                .context("receiver stopped")?;
        }
        Ok(())
    }
    .await;
    let status = agent.terminate(Duration::from_secs(10));
    drop(agent);
    // The lane goes quiet: whatever the second run sends, the first one recorded.
    let _ = sim_stop_tx.send(true);
    let _ = sim_task.await;
    if let Err(e) = first_run {
        bail!("{e:#}\n--- agent log (last lines) ---\n{}", log_tail(&log1));
    }
    ensure!(
        status.is_some_and(|s| s.success()),
        "bcp-agent did not exit 0 within 10 s of SIGTERM: {status:?}\n{}",
        log_tail(&log1)
    );
    let committed = recorded_seqs(&log1)?;
    let want: Vec<u64> = (1..=committed.len() as u64).collect();
    ensure!(committed == want, "the first run logged seqs {committed:?}");
    ensure!(committed.len() >= 2, "committed {committed:?}");
    let drained = std::fs::read_to_string(&log1)?.contains("closing open crossings");
    eprintln!(
        "first run: {} records committed, shutdown drain logged: {drained}",
        committed.len()
    );
    ensure!(drained, "the first run did not drain at SIGTERM");

    // The second run: only the backlog, if any, is left to send.
    let log2 = dir.path().join("agent-2.log");
    let agent2 = common::AgentProcess::start(&cfg_path, &log2, &notify_path)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen = 2;
    while store.export()?.len() < committed.len() && tokio::time::Instant::now() < deadline {
        if let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_millis(500), central.stored.recv()).await
        {
            seen += 1;
        }
    }
    // Resends are harmless; but no record may be stored twice or appear from nowhere.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(agent2);
    central.stop().await;
    let stored = store.export()?;
    let seqs: Vec<u64> = stored.iter().map(|s| s.seq).collect();
    ensure!(
        seqs == want,
        "central holds seqs {seqs:?}, the first run committed {want:?} (arrivals seen {seen})\n--- second run ---\n{}",
        log_tail(&log2)
    );
    // In the vehicles' order; the last may have been closed by the shutdown before its plate
    // was read.
    for (s, v) in stored.iter().zip(&vehicles) {
        let plate = s.crossing.plate.as_ref().map(|p| p.text.as_str());
        let last = s.seq == committed.len() as u64;
        ensure!(
            plate == Some(v.plate.as_str()) || (last && plate.is_none()),
            "crossing {}: plate {plate:?}, vehicle {}",
            s.seq,
            v.plate
        );
    }
    Ok(())
}
