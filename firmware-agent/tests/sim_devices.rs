//! The simulated post with other devices than the default Toledo + `dims-ascii`: a short run of
//! the real `bcp-agent` against `bcp-sim` speaking the protocol its config names, a continuous
//! non-Toledo indicator, polled ones answering the agent's requests on the pty, and a SICK
//! LMS-style lane scanner whose raw profiles the agent turns into dimensions. Central must hold
//! the weights the simulator put on the bridge, exactly, and the dimensions it drove under the
//! scanner, within the measurement's resolution.
#[allow(dead_code)] // the harness serves several test files; this one uses a part of it
mod common;

use anyhow::{bail, ensure, Context, Result};
use bcp_agent::sim_config;
use bcp_sim::{
    scenario, DimensionDevice, PostDevices, Simulator, Timing, LANE_SCANNER_SPEED_MM_PER_S,
};
use bcp_sync::central::{self, CentralStore, ReceiverConfig, StoredCrossing};
use std::sync::Arc;
use std::time::Duration;

/// One agent at a time: each loads the ANPR models, and the machine's cores are few.
static ONE_POST_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `vehicles` through sim (with `devices`) -> bcp-agent -> embedded rumqttd -> central;
/// returns what central stored and the scenario.
async fn run_post(
    devices: PostDevices,
    vehicles: usize,
    seed: u64,
) -> Result<(Vec<StoredCrossing>, Vec<scenario::Vehicle>)> {
    let _one = ONE_POST_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir()?;
    let post = "TJ-DEV-01";
    let broker = bcp_sync::broker::start_embedded(([127, 0, 0, 1], 0).into())?;
    let port = broker.addr().port();
    let store = Arc::new(CentralStore::open(&dir.path().join("central.db"))?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (stored_tx, mut stored_rx) = tokio::sync::mpsc::unbounded_channel();
    let receiver = tokio::spawn(central::run_receiver(
        ReceiverConfig {
            broker_host: "127.0.0.1".into(),
            broker_port: broker.v5_addr().port(),
            client_id: format!("central-devices-{seed}"),
            ..Default::default()
        },
        store.clone(),
        stored_tx,
        stop_rx.clone(),
    ));

    let scenario = scenario::generate(vehicles, seed);
    let sim = Simulator::start_with(&dir.path().join("sim"), Timing::default(), &devices).await?;
    let state = dir.path().join("agent");
    std::fs::create_dir_all(&state)?;
    let cfg = sim_config::for_simulator(sim.endpoints(), post, "127.0.0.1", port, &state);
    ensure!(
        cfg.weighbridge.indicator_protocol()?.name() == devices.indicator,
        "the agent is configured for the simulator's indicator"
    );
    let cfg_path = dir.path().join("agent.toml");
    std::fs::write(&cfg_path, toml::to_string(&cfg)?)?;
    let sim_task = tokio::spawn(sim.run(Some(scenario.clone()), seed, stop_rx.clone()));

    let notify_path = dir.path().join("notify.sock");
    let _notify = common::NotifyListener::bind(&notify_path)?;
    let log = dir.path().join("agent.log");
    let mut agent = common::AgentProcess::start(&cfg_path, &log, &notify_path)?;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30 + 5 * vehicles as u64);
    let mut arrived = 0;
    let outcome: Result<()> = async {
        while arrived < vehicles {
            match tokio::time::timeout_at(deadline, stored_rx.recv()).await {
                Ok(Some(_)) => arrived += 1,
                Ok(None) => bail!("the central receiver stopped"),
                Err(_) => bail!("only {arrived} of {vehicles} crossings reached central in time"),
            }
        }
        Ok(())
    }
    .await;
    let status = agent.terminate(Duration::from_secs(10));
    let _ = stop_tx.send(true);
    let _ = sim_task.await;
    let _ = receiver.await;
    let stored = outcome.and_then(|()| Ok(store.export()?));
    let stored = match stored {
        Ok(s) => s,
        Err(e) => {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("{e:#}\n--- agent log (last lines) ---\n{}", tail.join("\n"));
        }
    };
    let status = status.context("bcp-agent did not stop within 10 s of SIGTERM")?;
    ensure!(status.success(), "bcp-agent exited with {status}");
    Ok((stored, scenario))
}

/// Crossing by crossing, in order: the plate, and exactly the gross weight put on the bridge.
fn check_weights(stored: &[StoredCrossing], vehicles: &[scenario::Vehicle]) -> Result<()> {
    let seqs: Vec<u64> = stored.iter().map(|s| s.seq).collect();
    let want: Vec<u64> = (1..=vehicles.len() as u64).collect();
    ensure!(seqs == want, "central holds seqs {seqs:?}, want {want:?}");
    for (s, v) in stored.iter().zip(vehicles) {
        let c = &s.crossing;
        let what = format!("crossing #{} (vehicle {})", s.seq, v.plate_display);
        let plate = c.plate.as_ref().map(|p| p.text.as_str());
        ensure!(plate == Some(v.plate.as_str()), "{what}: plate {plate:?}");
        let w = c
            .weight
            .as_ref()
            .with_context(|| format!("{what}: no weight; flags {:?}", c.flags))?;
        ensure!(
            w.gross_kg == f64::from(v.gross_kg),
            "{what}: weight {} kg, the bridge showed {} kg",
            w.gross_kg,
            v.gross_kg
        );
        ensure!(c.flags.is_empty(), "{what}: flags {:?}", c.flags);
    }
    Ok(())
}

fn devices(indicator: &str, dimensions: DimensionDevice) -> PostDevices {
    PostDevices {
        indicator: indicator.to_owned(),
        dimensions,
        ..PostDevices::default()
    }
}

/// XK3190 format 0: a continuous stream without a motion flag, so the agent's own stability
/// rule decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xk3190_post_records_the_weights_on_the_bridge() -> Result<()> {
    let (stored, vehicles) = run_post(devices("xk3190", DimensionDevice::DimsAscii), 2, 21).await?;
    check_weights(&stored, &vehicles)?;
    for (s, v) in stored.iter().zip(&vehicles) {
        ensure!(s.crossing.dimensions == Some(v.dimensions), "{s:?}");
    }
    Ok(())
}

/// MT-SICS: the agent polls `SI`, the simulated balance answers `S S`/`S D` on the pty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mt_sics_post_answers_the_agents_polls() -> Result<()> {
    let (stored, vehicles) =
        run_post(devices("mt-sics", DimensionDevice::DimsAscii), 2, 22).await?;
    check_weights(&stored, &vehicles)
}

/// A lane scanner (`sick-cola`) and an XK3190 in command mode (polled, no motion flag).
/// Tolerances: length within one scan (speed / 50 Hz = 60 mm), width within one angular step
/// (0.25 deg) at each edge of a roof 2-3.2 m below the scanner (< 40 mm), height within 2 mm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_scanner_post_records_the_measured_dimensions() -> Result<()> {
    let (stored, vehicles) =
        run_post(devices("xk3190-a9", DimensionDevice::SickCola), 2, 23).await?;
    check_weights(&stored, &vehicles)?;
    let scan_mm = (LANE_SCANNER_SPEED_MM_PER_S / 50.0) as u32;
    for (s, v) in stored.iter().zip(&vehicles) {
        let got = s
            .crossing
            .dimensions
            .with_context(|| format!("crossing #{}: no dimensions", s.seq))?;
        let want = v.dimensions;
        eprintln!("crossing #{}: measured {got:?}, driven {want:?}", s.seq);
        ensure!(
            got.length_mm.abs_diff(want.length_mm) <= scan_mm
                && got.width_mm.abs_diff(want.width_mm) <= 40
                && got.height_mm.abs_diff(want.height_mm) <= 2,
            "crossing #{}: measured {got:?}, the simulator drove {want:?}",
            s.seq
        );
    }
    Ok(())
}
