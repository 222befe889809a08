//! A road post whose weighbridge is a short axle scale, end to end: the simulator draws each
//! vehicle across the scale axle group by axle group, each group with its own weight; the real
//! `bcp-agent` (`[weighbridge] axle_scale = true`) sums them and sends one crossing per vehicle
//! through the embedded broker to central. Central must hold, per vehicle, exactly the axle
//! weights the simulator put on the scale and their sum as the gross, the edge's
//! `axle_overweight` flag on exactly the groups over `[limits] max_axle_kg`, and `overweight` on
//! exactly the vehicles over their class's limit (`[limits.max_gross_kg_by_axles]`).
#[allow(dead_code)] // the harness serves several test files; this one uses a part of it
mod common;

use anyhow::{bail, ensure, Context, Result};
use bcp_agent::sim_config;
use bcp_sim::{scenario, PostDevices, Simulator, Timing};
use bcp_sync::central::{self, CentralStore, ReceiverConfig, StoredCrossing};
use std::sync::Arc;
use std::time::Duration;

/// The per-axle limit: between the scenario's lightest and heaviest groups, so that some are
/// flagged and some not.
const MAX_AXLE_KG: f64 = 8_000.0;

/// The gross limits by axle count: the scenario's 2-axle vehicles are on both sides of it.
const BY_AXLES: [(usize, f64); 2] = [(2, 15_000.0), (3, 30_000.0)];

/// The class limit of a vehicle of `axles` groups (no class above 3 in this scenario).
fn class_limit(axles: usize) -> Option<f64> {
    BY_AXLES
        .iter()
        .find(|(n, _)| *n == axles)
        .map(|(_, kg)| *kg)
}

/// Whether the vehicle is over its class's limit, with a division per group as margin.
fn over_class(v: &scenario::Vehicle) -> bool {
    let n = v.axles_kg.len();
    class_limit(n).is_some_and(|max| f64::from(v.gross_kg) > max + 20.0 * n as f64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn central_receives_each_vehicles_axle_weights_and_their_sum() -> Result<()> {
    let (n, seed) = (3, 41);
    let vehicles = scenario::on_axle_scale(scenario::generate(n, seed), seed);
    let axles: Vec<&u32> = vehicles.iter().flat_map(|v| &v.axles_kg).collect();
    ensure!(
        axles.iter().any(|kg| f64::from(**kg) > MAX_AXLE_KG + 20.0)
            && axles.iter().any(|kg| f64::from(**kg) <= MAX_AXLE_KG),
        "the scenario must have groups on both sides of the limit: {vehicles:?}"
    );
    ensure!(
        vehicles.iter().any(over_class)
            && vehicles.iter().any(|v| !over_class(v))
            && vehicles
                .iter()
                .all(|v| class_limit(v.axles_kg.len()).is_some()),
        "the scenario must have vehicles on both sides of their class's limit: {vehicles:?}"
    );

    let dir = tempfile::tempdir()?;
    let post = "TJ-AXL-01";
    let broker = bcp_sync::broker::start_embedded(([127, 0, 0, 1], 0).into())?;
    let port = broker.addr().port();
    let store = Arc::new(CentralStore::open(&dir.path().join("central.db"))?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (stored_tx, mut stored_rx) = tokio::sync::mpsc::unbounded_channel();
    let receiver = tokio::spawn(central::run_receiver(
        ReceiverConfig {
            broker_host: "127.0.0.1".into(),
            broker_port: broker.v5_addr().port(),
            client_id: "central-axles".into(),
            ..Default::default()
        },
        store.clone(),
        stored_tx,
        stop_rx.clone(),
    ));

    let devices = PostDevices {
        axle_scale: true,
        ..PostDevices::default()
    };
    let sim = Simulator::start_with(&dir.path().join("sim"), Timing::default(), &devices).await?;
    let state = dir.path().join("agent");
    std::fs::create_dir_all(&state)?;
    let mut cfg = sim_config::for_simulator(sim.endpoints(), post, "127.0.0.1", port, &state);
    ensure!(
        cfg.weighbridge.axle_scale,
        "the agent is configured for the axle scale"
    );
    cfg.limits.max_axle_kg = Some(MAX_AXLE_KG);
    cfg.limits.max_gross_kg_by_axles = BY_AXLES
        .iter()
        .map(|(n, kg)| (n.to_string(), *kg))
        .collect();
    let cfg_path = dir.path().join("agent.toml");
    std::fs::write(&cfg_path, toml::to_string(&cfg)?)?;
    let sim_task = tokio::spawn(sim.run(Some(vehicles.clone()), seed, stop_rx.clone()));

    let notify_path = dir.path().join("notify.sock");
    let _notify = common::NotifyListener::bind(&notify_path)?;
    let log = dir.path().join("agent.log");
    let mut agent = common::AgentProcess::start(&cfg_path, &log, &notify_path)?;

    // Up to 5 groups of ~2.7 s each and the gaps: ~17 s per vehicle.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30 + 20 * n as u64);
    let mut arrived = 0;
    let outcome: Result<()> = async {
        while arrived < n {
            match tokio::time::timeout_at(deadline, stored_rx.recv()).await {
                Ok(Some(_)) => arrived += 1,
                Ok(None) => bail!("the central receiver stopped"),
                Err(_) => bail!("only {arrived} of {n} crossings reached central in time"),
            }
        }
        Ok(())
    }
    .await;
    let status = agent.terminate(Duration::from_secs(10));
    let _ = stop_tx.send(true);
    let _ = sim_task.await;
    let _ = receiver.await;
    let stored = match outcome.and_then(|()| Ok(store.export()?)) {
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
    check_axles(&stored, &vehicles)
}

/// Crossing by crossing, in order: the plate, each axle group's weight, their sum as the gross,
/// nothing unweighed, and `axle_overweight` on exactly the groups over the limit.
fn check_axles(stored: &[StoredCrossing], vehicles: &[scenario::Vehicle]) -> Result<()> {
    let seqs: Vec<u64> = stored.iter().map(|s| s.seq).collect();
    let want: Vec<u64> = (1..=vehicles.len() as u64).collect();
    ensure!(
        seqs == want,
        "central holds seqs {seqs:?}, want {want:?}: one crossing per vehicle, not per axle"
    );
    for (s, v) in stored.iter().zip(vehicles) {
        let c = &s.crossing;
        let what = format!("crossing #{} (vehicle {})", s.seq, v.plate_display);
        eprintln!(
            "{what}: axles {:?} kg, gross {:?} kg, flags {:?}",
            c.weight.as_ref().map(|w| &w.axles_kg),
            c.weight.as_ref().map(|w| w.gross_kg),
            c.flags
        );
        let plate = c.plate.as_ref().map(|p| p.text.as_str());
        ensure!(plate == Some(v.plate.as_str()), "{what}: plate {plate:?}");
        let w = c
            .weight
            .as_ref()
            .with_context(|| format!("{what}: no weight; flags {:?}", c.flags))?;
        let simulated: Vec<f64> = v.axles_kg.iter().map(|kg| f64::from(*kg)).collect();
        ensure!(
            w.axles_kg == simulated,
            "{what}: axles {:?} kg, the scale showed {simulated:?} kg",
            w.axles_kg
        );
        ensure!(
            w.gross_kg == f64::from(v.gross_kg) && w.unweighed_axles == 0,
            "{what}: gross {} kg ({} unweighed), the simulated vehicle weighs {} kg",
            w.gross_kg,
            w.unweighed_axles,
            v.gross_kg
        );
        let over: Vec<String> = simulated
            .iter()
            .enumerate()
            .filter(|(_, kg)| **kg > MAX_AXLE_KG + w.division_kg)
            .map(|(i, kg)| format!("axle group {} of {}: {kg} kg", i + 1, simulated.len()))
            .collect();
        let flagged: Vec<&str> = c
            .flags
            .iter()
            .filter(|f| f.code == "axle_overweight")
            .map(|f| f.reason.as_str())
            .collect();
        ensure!(
            flagged.len() == over.len() && flagged.iter().zip(&over).all(|(r, o)| r.starts_with(o)),
            "{what}: flagged {flagged:?}, over the limit {over:?}"
        );
        let overweight: Vec<&str> = c
            .flags
            .iter()
            .filter(|f| f.code == "overweight")
            .map(|f| f.reason.as_str())
            .collect();
        let class = format!("the limit for a {}-axle vehicle", simulated.len());
        ensure!(
            overweight.len() == usize::from(over_class(v))
                && overweight.iter().all(|r| r.contains(&class)),
            "{what}: overweight {overweight:?}, over its class's limit: {}",
            over_class(v)
        );
        ensure!(
            c.flags
                .iter()
                .all(|f| f.code == "axle_overweight" || f.code == "overweight"),
            "{what}: flags {:?}",
            c.flags
        );
    }
    Ok(())
}
