//! Central's downlink lists at work in the real `bcp-agent`: central signs a hotlist and the
//! pre-arrival declarations and publishes them (retained) before the post even connects; the
//! post applies them and flags the vehicles they name; the flags, with their reasons, reach
//! central in the crossing records. A `config` list sets the post's gross limit remotely: the
//! agent writes it into its config file as `bcpctl config set` would, reloads, flags the
//! vehicles by the new limit, and the audit record of that change reaches central.
#[allow(dead_code)] // the harness serves several test files; this one uses a part of it
mod common;

use anyhow::{bail, ensure, Context, Result};
use bcp_agent::sim_config;
use bcp_record::lists::DownlinkList;
use bcp_sim::{scenario, Simulator, Timing};
use std::time::Duration;

const VEHICLES: usize = 3;

fn signed(post: &str, kind: &str, version: u64, entries: serde_json::Value) -> DownlinkList {
    let mut list = DownlinkList {
        post: post.to_owned(),
        kind: kind.to_owned(),
        version,
        issued_at: chrono::Utc::now(),
        entries,
        key: String::new(),
        sig: String::new(),
    };
    list.sign(bcp_sync::PostKey::from_seed([9; 32]).signing_key());
    list
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hotlisted_plate_and_a_weight_far_from_its_declaration_are_flagged_at_the_post(
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let post = "TJ-LISTS-01";
    let mut central = common::TestCentral::start(dir.path(), "central-lists-test")?;
    let (port, store) = (central.broker_port, central.store.clone());
    let vehicles = scenario::generate(VEHICLES, 11);
    let (hot, declared, plain) = (&vehicles[0], &vehicles[1], &vehicles[2]);

    // Published while the post is not yet there: retained, it gets them when it subscribes.
    let central_key = bcp_sync::PostKey::from_seed([9; 32]);
    for list in [
        signed(
            post,
            "hotlist",
            5,
            serde_json::json!([{"plate": hot.plate, "reason": "wanted"}]),
        ),
        signed(
            post,
            "declarations",
            2,
            serde_json::json!([
                // Declared at half the real weight: far outside the 10 % tolerance.
                {"plate": declared.plate, "declaration_id": "26TJ0042", "declared_gross_kg": f64::from(declared.gross_kg) / 2.0},
                // Declared right: no flag.
                {"plate": plain.plate, "declared_gross_kg": f64::from(plain.gross_kg)}
            ]),
        ),
        // Central lowers the gross limit below every vehicle's weight.
        signed(
            post,
            "config",
            4,
            serde_json::json!([{"key": "limits.max_gross_kg", "value": "1000"}]),
        ),
    ] {
        bcp_sync::lists::publish_list("127.0.0.1", port, None, "central-lists", &list).await?;
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sim = Simulator::start(&dir.path().join("sim"), Timing::default()).await?;
    let state = dir.path().join("agent");
    std::fs::create_dir_all(&state)?;
    let mut cfg = sim_config::for_simulator(sim.endpoints(), post, "127.0.0.1", port, &state);
    cfg.sync.central_key = Some(central_key.public_hex());
    let cfg_path = dir.path().join("agent.toml");
    std::fs::write(&cfg_path, toml::to_string(&cfg)?)?;

    let notify_path = dir.path().join("notify.sock");
    let _notify = common::NotifyListener::bind(&notify_path)?;
    let log = dir.path().join("agent.log");
    let mut agent = common::AgentProcess::start(&cfg_path, &log, &notify_path)?;
    // The vehicles come once the post holds the lists (an agent that never gets them fails
    // here, with its log).
    let lists_path = state.join("lists.db");
    let outcome: Result<()> = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let held = bcp_sync::ListStore::open(&lists_path, post, central_key.public())
                .ok()
                .map(|s| {
                    (
                        s.get("hotlist").ok().flatten().is_some(),
                        s.get("declarations").ok().flatten().is_some(),
                    )
                });
            let applied =
                std::fs::read_to_string(&cfg_path).is_ok_and(|t| t.contains("max_gross_kg = 1000"));
            if held == Some((true, true)) && applied {
                break;
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "the post did not apply the lists (and write the config list) within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }
    .await;
    let sim_task = tokio::spawn(sim.run(Some(vehicles.clone()), 11, stop_rx.clone()));
    let outcome = match outcome {
        Err(e) => Err(e),
        Ok(()) => {
            async {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
                // The vehicles, and the record of central's config change.
                for arrived in 0..=VEHICLES {
                    match tokio::time::timeout_at(deadline, central.stored.recv()).await {
                        Ok(Some(_)) => {}
                        Ok(None) => bail!("the central receiver stopped"),
                        Err(_) => {
                            bail!("only {arrived} of {} records reached central", VEHICLES + 1)
                        }
                    }
                }
                Ok(())
            }
            .await
        }
    };
    let status = agent.terminate(Duration::from_secs(10));
    let _ = stop_tx.send(true);
    let _ = sim_task.await;
    central.stop().await;
    if let Err(e) = outcome {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{e:#}\n--- agent log (last lines) ---\n{}", tail.join("\n"));
    }
    ensure!(
        status.context("bcp-agent did not stop")?.success(),
        "bcp-agent failed"
    );

    let changes = store.config_changes(Some(post), None)?;
    ensure!(
        changes.len() == 1,
        "config changes at central: {changes:#?}"
    );
    let change = &changes[0].change;
    ensure!(
        change.user == "central (config list v4)" && change.command == "central",
        "{change:?}"
    );
    ensure!(
        change.changes.len() == 1
            && change.changes[0].key == "limits.max_gross_kg"
            && change.changes[0].new.as_deref() == Some("1000"),
        "{change:?}"
    );

    let exported: Vec<_> = store
        .export()?
        .into_iter()
        .filter(|c| c.crossing.config_change.is_none())
        .collect();
    ensure!(exported.len() == VEHICLES, "{} crossings", exported.len());
    for c in &exported {
        ensure!(
            c.crossing.flags.iter().any(|f| f.code == "overweight"),
            "crossing {} not flagged by central's limit: {:?}",
            c.seq,
            c.crossing.flags
        );
    }
    let flags_of = |plate: &str| -> Result<Vec<(String, String)>> {
        let c = exported
            .iter()
            .find(|c| c.crossing.plate.as_ref().is_some_and(|p| p.text == plate))
            .with_context(|| format!("no crossing of {plate} at central: {exported:#?}"))?;
        Ok(c.crossing
            .flags
            .iter()
            .map(|f| (f.code.clone(), f.reason.clone()))
            .collect())
    };
    let hot_flags = flags_of(&hot.plate)?;
    ensure!(
        hot_flags.contains(&(
            "hotlist".to_owned(),
            format!(
                "plate {} is on central's hotlist (version 5): wanted",
                hot.plate
            )
        )),
        "{hot_flags:?}"
    );
    let declared_flags = flags_of(&declared.plate)?;
    let mismatch = declared_flags
        .iter()
        .find(|(code, _)| code == "declared_weight_mismatch")
        .with_context(|| format!("{declared_flags:?}"))?;
    ensure!(
        mismatch.1.contains("in 26TJ0042") && mismatch.1.contains("declarations version 2"),
        "{mismatch:?}"
    );
    let plain_flags = flags_of(&plain.plate)?;
    ensure!(
        !plain_flags
            .iter()
            .any(|(code, _)| code == "hotlist" || code == "declared_weight_mismatch"),
        "{plain_flags:?}"
    );
    Ok(())
}
