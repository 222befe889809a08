//! Post types end to end: a rail post (a train with UIC and CIS wagon numbers), a river post and
//! an air post as the real `bcp-agent` binary against `bcp-sim` (frames read by the real ANPR
//! engine), through an embedded broker to central; the air profile also in process: the lane
//! correlator, then the sealed outbox.
#[allow(dead_code)] // the harness serves several test files; this one uses a part of it
mod common;

use anyhow::{bail, ensure, Context, Result};
use bcp_agent::lane::{Conveyance, Evidence, LaneCorrelator, LaneRules};
use bcp_agent::profile::PostProfile;
use bcp_agent::{config::TrainSettings, sim_config};
use bcp_anpr::PlateCandidate;
use bcp_record::{Direction, TransportMode};
use bcp_sim::{conveyances, Scenario, Simulator, Timing};
use bcp_sync::central::{self, CentralStore, ReceiverConfig, StoredCrossing};
use chrono::{TimeDelta, Utc};
use std::sync::Arc;
use std::time::Duration;

/// The customs office every post of these tests is configured with.
const CUSTOMS_OFFICE: &str = "TJ000401";

/// Runs `scenario` through sim -> agent (with `profile`) -> broker -> central until `records`
/// records are stored; returns them.
async fn through_the_chain(
    profile: PostProfile,
    scenario: Scenario,
    records: usize,
) -> Result<Vec<StoredCrossing>> {
    let dir = tempfile::tempdir()?;
    let post = format!("TJ-{}-01", profile.name().to_uppercase());
    let broker = bcp_sync::broker::start_embedded(([127, 0, 0, 1], 0).into())?;
    let port = broker.addr().port();
    let store = Arc::new(CentralStore::open(&dir.path().join("central.db"))?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (stored_tx, mut stored_rx) = tokio::sync::mpsc::unbounded_channel();
    let receiver = tokio::spawn(central::run_receiver(
        ReceiverConfig {
            broker_host: "127.0.0.1".into(),
            broker_port: broker.v5_addr().port(),
            client_id: format!("central-{post}"),
            ..Default::default()
        },
        store.clone(),
        stored_tx,
        stop_rx.clone(),
    ));

    let timing = Timing {
        // Longer than the agent's quiet window below: one record per train.
        train_gap: Duration::from_secs(4),
        ..Timing::default()
    };
    let sim = Simulator::start(&dir.path().join("sim"), timing).await?;
    let state = dir.path().join("agent");
    std::fs::create_dir_all(&state)?;
    let mut cfg = sim_config::for_simulator(sim.endpoints(), &post, "127.0.0.1", port, &state);
    cfg.post.transport_mode = profile;
    // What every record of the post carries from its config.
    cfg.post.customs_office = Some(CUSTOMS_OFFICE.to_owned());
    cfg.lane.direction = Some(Direction::Entry);
    if profile == PostProfile::Rail {
        cfg.train = Some(TrainSettings {
            quiet_ms: 3000,
            ..TrainSettings::default()
        });
    }
    if profile == PostProfile::River {
        // A berth's presence sensor and the vessel's scan, no dimension sensor.
        cfg.dimensions = None;
    }
    let cfg_path = dir.path().join("agent.toml");
    std::fs::write(&cfg_path, toml::to_string(&cfg)?)?;
    let sim_task = tokio::spawn(sim.run_scenario(scenario, 7, stop_rx.clone()));
    let notify_path = dir.path().join("notify.sock");
    let _notify = common::NotifyListener::bind(&notify_path)?;
    let log = dir.path().join("agent.log");
    let mut agent = common::AgentProcess::start(&cfg_path, &log, &notify_path)?;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let outcome: Result<()> = async {
        for arrived in 0..records {
            match tokio::time::timeout_at(deadline, stored_rx.recv()).await {
                Ok(Some(_)) => {}
                Ok(None) => bail!("the central receiver stopped"),
                Err(_) => bail!("only {arrived} of {records} records reached central in time"),
            }
        }
        Ok(())
    }
    .await;
    agent.terminate(Duration::from_secs(10));
    let _ = stop_tx.send(true);
    let _ = sim_task.await;
    let _ = receiver.await;
    let stored = store.export();
    if let Err(e) = outcome {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{e:#}\n--- agent log (last lines) ---\n{}", tail.join("\n"));
    }
    Ok(stored?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rail_post_records_one_train_with_its_wagons_in_order() -> Result<()> {
    // Three wagons: UIC, CIS (8 digits), UIC.
    let trains = conveyances::generate_trains(1, 3, 7);
    let schemes: Vec<&str> = trains[0].wagons.iter().map(|w| w.scheme.as_str()).collect();
    assert_eq!(schemes, ["UIC", "CIS", "UIC"]);
    let stored = through_the_chain(PostProfile::Rail, Scenario::Trains(trains.clone()), 1).await?;
    ensure!(stored.len() == 1, "one record per train: {stored:#?}");
    let c = &stored[0].crossing;
    assert_eq!(c.transport_mode, Some(TransportMode::Rail));
    let train = c.train.as_ref().context("a rail record has its train")?;
    let truth = &trains[0];
    let numbers: Vec<Option<&str>> = train
        .wagons
        .iter()
        .map(|w| w.number.as_ref().map(|n| n.text.as_str()))
        .collect();
    let want: Vec<Option<&str>> = truth
        .wagons
        .iter()
        .map(|w| Some(w.number.as_str()))
        .collect();
    assert_eq!(numbers, want, "flags: {:?}", c.flags);
    for (w, t) in train.wagons.iter().zip(&truth.wagons) {
        assert_eq!(
            w.weight.as_ref().map(|w| w.gross_kg),
            Some(f64::from(t.gross_kg))
        );
        assert_eq!(
            w.number.as_ref().map(|n| n.scheme.as_str()),
            Some(t.scheme.as_str()),
            "wagon {}",
            w.position
        );
        let containers: Vec<&str> = w.containers.iter().map(|c| c.text.as_str()).collect();
        let want: Vec<&str> = t.containers.iter().map(|(_, code)| code.as_str()).collect();
        assert_eq!(containers, want, "wagon {}", w.position);
    }
    let total: u32 = truth.wagons.iter().map(|w| w.gross_kg).sum();
    assert_eq!(
        c.weight.as_ref().map(|w| w.gross_kg),
        Some(f64::from(total))
    );
    assert_eq!(
        c.scan.as_ref().map(|s| s.scan_id.as_str()),
        Some(truth.scan_id.as_str())
    );
    assert!(c.flags.is_empty(), "{:?}", c.flags);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_river_post_records_each_vessel_by_its_eni_number() -> Result<()> {
    let vessels = conveyances::generate_vessels(2, 7);
    let stored = through_the_chain(
        PostProfile::River,
        Scenario::Vehicles(Some(vessels.clone())),
        2,
    )
    .await?;
    ensure!(stored.len() == 2, "{stored:#?}");
    for (s, v) in stored.iter().zip(&vessels) {
        let c = &s.crossing;
        assert_eq!(c.transport_mode, Some(TransportMode::InlandWater));
        let plate = c
            .plate
            .as_ref()
            .map(|p| (p.text.as_str(), p.format.as_deref()));
        assert_eq!(
            plate,
            Some((v.plate.as_str(), Some("ENI"))),
            "{:?}",
            c.flags
        );
        assert!(c.weight.is_none(), "a presence sensor weighs no vessel");
        assert_eq!(
            c.scan.as_ref().map(|s| s.scan_id.as_str()),
            Some(v.scan_id.as_str())
        );
        assert!(c.flags.is_empty(), "{:?}", c.flags);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_air_post_records_each_cargo_unit_by_its_uld_id() -> Result<()> {
    let units = conveyances::generate_cargo_units(3, 7);
    let stored = through_the_chain(
        PostProfile::Air,
        Scenario::Vehicles(Some(units.clone())),
        units.len(),
    )
    .await?;
    ensure!(stored.len() == units.len(), "{stored:#?}");
    // Every unit's id, weight and scan reach central; no tolerance: the placards are read.
    for (s, u) in stored.iter().zip(&units) {
        let c = &s.crossing;
        assert_eq!(c.transport_mode, Some(TransportMode::Air));
        assert_eq!(c.direction, Some(Direction::Entry));
        assert_eq!(
            c.customs_office_at_border_reference.as_deref(),
            Some(CUSTOMS_OFFICE)
        );
        let plate = c
            .plate
            .as_ref()
            .map(|p| (p.text.as_str(), p.format.as_deref()));
        assert_eq!(
            plate,
            Some((u.plate.as_str(), Some("ULD"))),
            "{:?}",
            c.flags
        );
        assert_eq!(
            c.weight.as_ref().map(|w| w.gross_kg),
            Some(f64::from(u.gross_kg))
        );
        assert_eq!(
            c.scan.as_ref().map(|s| s.scan_id.as_str()),
            Some(u.scan_id.as_str())
        );
        assert!(c.flags.is_empty(), "{:?}", c.flags);
    }
    Ok(())
}

#[test]
fn an_air_post_records_the_uld_id_with_its_mode_in_the_sealed_outbox() -> Result<()> {
    let units = conveyances::generate_cargo_units(2, 7);
    let profile = PostProfile::Air;
    let mut lane =
        LaneCorrelator::new("TJ-AIR-01", "S1", LaneRules::default()).with_conveyance(Conveyance {
            identifier: profile.lane_identifier(),
            weighed: profile.weighs(),
        });
    let t0 = Utc::now();
    let at = |ms: i64| t0 + TimeDelta::milliseconds(ms);
    let read = |text: &str| {
        Evidence::PlateReads(vec![PlateCandidate {
            text: text.to_owned(),
            confidence: 0.9,
            bbox: [0, 0, 100, 30],
            format: None,
            char_confidences: vec![0.9; text.len()],
        }])
    };
    for (i, u) in units.iter().enumerate() {
        let start = i as i64 * 10_000;
        lane.handle_vehicle_on(at(start));
        lane.handle_stable_weight(
            at(start + 800),
            bcp_record::Weighing {
                gross_kg: f64::from(u.gross_kg),
                division_kg: 0.5,
                stable_at: at(start + 800),
                device: "scale1".into(),
                axles_kg: Vec::new(),
                unweighed_axles: 0,
            },
        );
        lane.handle_evidence(at(start + 1000), read(&u.plate_display));
        lane.handle_evidence(at(start + 1200), read(&u.plate));
        lane.handle_vehicle_off(at(start + 3000));
    }
    let dir = tempfile::tempdir()?;
    let outbox = bcp_sync::outbox::Outbox::open(&dir.path().join("outbox.db"), "TJ-AIR-01")?;
    let mut sealed = Vec::new();
    while let Some(mut c) = lane.poll(at(60_000)) {
        c.transport_mode = Some(profile.transport_mode());
        sealed.push(outbox.append(&c)?);
    }
    assert_eq!(sealed.len(), units.len());
    for (env, u) in sealed.iter().zip(&units) {
        let json = serde_json::to_vec(env)?;
        bcp_record::seal::open(&json).context("the sealed record opens")?;
        let text = String::from_utf8_lossy(&json);
        assert!(
            text.contains(r#""transport_mode":{"code":4,"name":"air"}"#),
            "{text}"
        );
        let c = &env.crossing;
        let plate = c
            .plate
            .as_ref()
            .map(|p| (p.text.as_str(), p.format.as_deref()));
        assert_eq!(plate, Some((u.plate.as_str(), Some("ULD"))));
        assert_eq!(
            c.weight.as_ref().map(|w| w.gross_kg),
            Some(f64::from(u.gross_kg))
        );
        // No check digit on a ULD: nothing repaired, nothing to flag but the missing
        // dimensions and scan of this in-process lane.
        let codes: Vec<&str> = c.flags.iter().map(|f| f.code.as_str()).collect();
        assert_eq!(codes, ["no_dimensions", "no_scan"]);
    }
    Ok(())
}
