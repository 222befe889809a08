//! The daemon's main loop: starts every device task, drives the lane correlator, commits each
//! crossing to the outbox, and keeps the uplink to central running.
//!
//! Start-up order matters to systemd: READY is sent once the config is valid, the outbox is open
//! and the ANPR models are loaded. Watchdog pings come from this loop, so a hung loop gets the
//! daemon restarted. On shutdown, crossings still waiting for late evidence are closed and
//! committed, so nothing recorded is lost.
//!
//! The control socket and the metrics endpoint are bound before READY and read the agent
//! through an [`AgentView`]; the loop tells it the lane's state and each committed crossing
//! ([`ViewFeed`]). Either failing to bind is logged at ERROR and the agent records crossings
//! without it: a technician's tool must not stop the lane.

use crate::checks::EdgeChecks;
use crate::config::AgentConfig;
use crate::health::DeviceBoard;
use crate::lane::{Evidence, LaneCorrelator, LaneEvent};
use crate::metrics::{Histogram, ANPR_BUCKETS_SECS};
use crate::view::{AgentView, ViewFeed, ViewParts};
use crate::{camera, control, metrics, scanner};
use anyhow::{Context, Result};
use bcp_anpr::{AnprConfig, NativePaths, PlateReader};
use bcp_drivers::serial::{self, DeviceEvent, DeviceHealth};
use bcp_drivers::stability::{StabilityConfig, WeighEvent};
use bcp_record::{Crossing, Weighing};
use bcp_sync::outbox::Outbox;
use bcp_sync::uplink::{self, UplinkConfig, UplinkMonitor};
use chrono::{TimeDelta, Utc};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};

/// Everything that reaches the lane, from every device task.
#[derive(Debug)]
enum LaneInput {
    Weighbridge(DeviceEvent),
    Dimensions(DeviceEvent),
    Frame(camera::FrameReads),
    Scan(bcp_record::ScanEvent),
}

/// Runs the agent until `shutdown` turns true.
pub async fn run(cfg: AgentConfig, mut shutdown: watch::Receiver<bool>) -> Result<()> {
    let outbox = Arc::new(cfg.outbox.open(&cfg.post.id)?);
    let paths = cfg
        .anpr
        .native_dir
        .as_deref()
        .map(NativePaths::in_dir)
        .unwrap_or_else(NativePaths::from_env);
    let mut anpr = AnprConfig {
        paths,
        ..AnprConfig::default()
    };
    if let Some(threads) = cfg.anpr.threads {
        anpr.threads = threads;
    }
    anpr.formats = cfg.anpr.formats.clone();
    anpr.validate().context("invalid [anpr] settings")?;
    let reader =
        PlateReader::new(&anpr).context("loading the ANPR engine (run scripts/install-native?)")?;
    let checks = EdgeChecks::load(cfg.limits.clone()).context("loading [limits]")?;

    let (tx, mut rx) = mpsc::channel::<LaneInput>(1024);
    let mut tasks = tokio::task::JoinSet::new();

    // Weighbridge.
    let wb = cfg.weighbridge.clone();
    let protocol = wb.indicator_protocol()?;
    let stability = StabilityConfig {
        readings: wb.stable_readings,
        band_divisions: wb.stable_band_divisions,
        min_duration: Duration::from_millis(wb.stable_min_ms),
        occupied_threshold_kg: wb.occupied_threshold_kg,
        empty_threshold_kg: wb.empty_threshold_kg,
    };
    let (mut board, devices_rx) = DeviceBoard::new();
    let wb_health = Arc::new(Mutex::new(DeviceHealth::default()));
    board.add_serial(&wb.name, "weighbridge", wb_health.clone());
    let (dev_tx, dev_rx) = mpsc::channel(256);
    tasks.spawn(forward(dev_rx, tx.clone(), LaneInput::Weighbridge));
    tasks.spawn({
        let (name, port, health, shutdown) = (
            wb.name.clone(),
            wb.port.clone(),
            wb_health.clone(),
            shutdown.clone(),
        );
        async move {
            if let Err(e) = serial::run_indicator(
                name.clone(),
                port,
                protocol,
                stability,
                dev_tx,
                health,
                shutdown,
            )
            .await
            {
                tracing::error!(device = %name, error = %e, "weighbridge driver stopped");
            }
        }
    });

    // Dimension device: a sensor sending computed dimensions, or a lane scanner whose profiles
    // the driver turns into them.
    if let Some(d) = cfg.dimensions.clone() {
        let lane_scanner = d.lane_scanner()?;
        let (dev_tx, dev_rx) = mpsc::channel(64);
        tasks.spawn(forward(dev_rx, tx.clone(), LaneInput::Dimensions));
        let health = Arc::new(Mutex::new(DeviceHealth::default()));
        board.add_serial(&d.name, "dimensions", health.clone());
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let name = d.name.clone();
            let result = match lane_scanner {
                Some(tracker) => {
                    serial::run_lane_scanner(name, d.port, tracker, dev_tx, health, shutdown).await
                }
                None => serial::run_dimension_sensor(name, d.port, dev_tx, health, shutdown).await,
            };
            if let Err(e) = result {
                tracing::error!(device = %d.name, error = %e, "dimension device driver stopped");
            }
        });
    }

    // Camera and ANPR.
    board.add(&cfg.camera.name, "camera");
    let (frame_tx, frame_rx) = mpsc::channel(64);
    tasks.spawn(forward(frame_rx, tx.clone(), LaneInput::Frame));
    let anpr_latency = Arc::new(Histogram::new(&ANPR_BUCKETS_SECS));
    let camera_thread = camera::spawn(
        cfg.camera.name.clone(),
        cfg.camera.folder.clone(),
        Duration::from_millis(cfg.camera.poll_ms),
        reader,
        frame_tx,
        anpr_latency.clone(),
        shutdown.clone(),
    )?;

    // Scanner: the TCP feed or the drop folder (`validate` made sure exactly one is set).
    let scanner_name = cfg.scanner.as_ref().map(|s| s.name.clone());
    if let Some(s) = cfg.scanner.clone() {
        board.add(&s.name, "scanner");
        let (scan_tx, scan_rx) = mpsc::channel(64);
        tasks.spawn(forward(scan_rx, tx.clone(), LaneInput::Scan));
        match (s.feed_addr, s.drop_folder) {
            (Some(addr), _) => {
                tasks.spawn(scanner::run_feed(s.name, addr, scan_tx, shutdown.clone()));
            }
            (None, Some(folder)) => {
                tasks.spawn(scanner::run_drop_folder(
                    s.name,
                    folder,
                    scan_tx,
                    shutdown.clone(),
                ));
            }
            (None, None) => anyhow::bail!("scanner: set scanner.feed_addr or scanner.drop_folder"),
        }
    }

    // Uplink to central.
    let new_record = Arc::new(Notify::new());
    let uplink_monitor = Arc::new(UplinkMonitor::default());
    let (view, feed) = AgentView::new(ViewParts {
        post: cfg.post.id.clone(),
        lane: cfg.post.lane.clone(),
        lane_devices: [
            Some(wb.name.clone()),
            cfg.dimensions.as_ref().map(|d| d.name.clone()),
            Some(cfg.camera.name.clone()),
            scanner_name.clone(),
        ]
        .into_iter()
        .flatten()
        .collect(),
        broker: format!("{}:{}", cfg.sync.broker_host, cfg.sync.broker_port),
        outbox: outbox.clone(),
        devices: devices_rx.clone(),
        uplink: uplink_monitor.clone(),
        wake_uplink: new_record.clone(),
        camera: cfg.camera.name.clone(),
        anpr_latency,
    });
    let uplink_cfg = UplinkConfig {
        broker_host: cfg.sync.broker_host.clone(),
        broker_port: cfg.sync.broker_port,
        client_id: cfg.client_id(),
        post: cfg.post.id.clone(),
        keep_alive_secs: cfg.sync.keep_alive_secs,
        max_in_flight: cfg.sync.max_in_flight,
        devices: Some(devices_rx),
        monitor: Some(uplink_monitor),
        ..Default::default()
    };
    board.publish(std::time::Instant::now());
    let mut board_tick = tokio::time::interval(BOARD_PERIOD);
    let uplink_task = tokio::spawn(uplink::run_uplink(
        uplink_cfg,
        outbox.clone(),
        new_record.clone(),
        shutdown.clone(),
    ));
    drop(tx);

    // The technician's ways in: up before READY, never a reason not to start.
    match control::bind(&cfg.control) {
        Ok(socket) => {
            tasks.spawn(control::serve(socket, view.clone(), shutdown.clone()));
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "control API unavailable: bcpctl status will not reach the agent")
        }
    }
    if cfg.metrics.enabled {
        match metrics::http::bind(cfg.metrics.listen).await {
            Ok(listener) => {
                tasks.spawn(metrics::http::serve(
                    listener,
                    view.clone(),
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "metrics endpoint unavailable")
            }
        }
    }

    crate::systemd::ready();
    // Pings only when systemd asked for them; the first one a period after READY.
    let watchdog_period = crate::systemd::watchdog_interval();
    let mut watchdog = tokio::time::interval_at(
        tokio::time::Instant::now() + watchdog_period.unwrap_or(Duration::from_secs(3600)),
        watchdog_period.unwrap_or(Duration::from_secs(3600)),
    );
    let rules = cfg.lane.rules(cfg.scanner.is_some());
    let mut lane = LaneCorrelator::new(&cfg.post.id, &cfg.post.lane, rules);
    tracing::info!(
        post = %cfg.post.id,
        lane = %cfg.post.lane,
        close_after_ms = rules.close_after.num_milliseconds(),
        scan_wait_ms = rules.scan_wait.num_milliseconds(),
        "agent running"
    );

    loop {
        let wake = lane
            .poll_timeout()
            .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            input = rx.recv() => match input {
                Some(input) => {
                    observe(&mut board, &cfg.camera.name, scanner_name.as_deref(), &wb.name, &input);
                    handle(&mut lane, &wb.name, input);
                    let (on_bridge, open) = lane.occupancy();
                    feed.occupancy(on_bridge, open);
                }
                None => break,
            },
            _ = board_tick.tick() => board.publish(std::time::Instant::now()),
            _ = tokio::time::sleep(wake) => {}
            _ = watchdog.tick(), if watchdog_period.is_some() => crate::systemd::watchdog(),
            _ = shutdown.changed() => if *shutdown.borrow() { break },
        }
        drain(&mut lane, Utc::now(), &checks, &outbox, &new_record, &feed);
    }

    // Drain: close what is still open, so every vehicle seen is recorded.
    crate::systemd::stopping();
    let end_of_time = Utc::now() + TimeDelta::days(1);
    lane.handle_vehicle_off(Utc::now());
    drain(&mut lane, end_of_time, &checks, &outbox, &new_record, &feed);
    let n = lane.counters();
    tracing::info!(
        crossings = n.crossings,
        late_scans = n.late_scans,
        scans_after_close = n.scans_after_close,
        orphan_scans = n.orphan_scans,
        unmatched = n.unmatched,
        tailgates = n.tailgates,
        reversals = n.reversals,
        "lane counters since start"
    );
    tasks.shutdown().await;
    match tokio::time::timeout(Duration::from_secs(5), uplink_task).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %format!("{e:#}"), "uplink stopped with an error"),
        Ok(_) => {}
        Err(_) => tracing::warn!("uplink did not stop in 5 s"),
    }
    if camera_thread.join().is_err() {
        tracing::error!("the camera thread panicked");
    }
    tracing::info!("agent stopped");
    Ok(())
}

async fn forward<T>(
    mut rx: mpsc::Receiver<T>,
    tx: mpsc::Sender<LaneInput>,
    wrap: fn(T) -> LaneInput,
) {
    while let Some(item) = rx.recv().await {
        if tx.send(wrap(item)).await.is_err() {
            return;
        }
    }
}

/// How often the device board is refreshed for the uplink's status messages and the control
/// API (a snapshot of a handful of counters: cheap).
const BOARD_PERIOD: Duration = Duration::from_secs(1);

/// Tells the device board what `input` says about its device.
fn observe(
    board: &mut DeviceBoard,
    camera: &str,
    scanner: Option<&str>,
    weighbridge: &str,
    input: &LaneInput,
) {
    let now = std::time::Instant::now();
    match input {
        LaneInput::Frame(_) => board.seen(camera, now),
        LaneInput::Scan(_) => {
            if let Some(name) = scanner {
                board.seen(name, now);
            }
        }
        LaneInput::Weighbridge(DeviceEvent::Alarm(alarm)) => board.alarm(weighbridge, alarm),
        LaneInput::Weighbridge(_) | LaneInput::Dimensions(_) => {}
    }
}

fn handle(lane: &mut LaneCorrelator, weighbridge: &str, input: LaneInput) {
    let now = Utc::now();
    match input {
        LaneInput::Weighbridge(DeviceEvent::Weigh(event)) => match event {
            WeighEvent::VehicleOn { .. } => lane.handle_vehicle_on(now),
            WeighEvent::Stable(s) => lane.handle_stable_weight(
                now,
                Weighing {
                    gross_kg: s.weight_kg,
                    division_kg: s.division_kg,
                    stable_at: now,
                    device: weighbridge.to_owned(),
                },
            ),
            WeighEvent::VehicleOff { .. } => lane.handle_vehicle_off(now),
        },
        LaneInput::Dimensions(DeviceEvent::Dimensions(d)) => lane.handle_evidence(
            now,
            Evidence::Dimensions(bcp_record::Dimensions {
                length_mm: d.length_mm,
                width_mm: d.width_mm,
                height_mm: d.height_mm,
            }),
        ),
        LaneInput::Weighbridge(DeviceEvent::Disconnected { reason })
        | LaneInput::Dimensions(DeviceEvent::Disconnected { reason }) => {
            tracing::debug!(%reason, "device disconnected");
        }
        LaneInput::Weighbridge(DeviceEvent::Alarm(alarm)) => {
            // Overload, underload, indicator error, zero drift: the technician must look.
            tracing::warn!(device = weighbridge, ?alarm, "weighbridge alarm");
        }
        LaneInput::Weighbridge(_) | LaneInput::Dimensions(_) => {}
        LaneInput::Frame((at, evidence)) => lane.handle_evidence(at, evidence),
        LaneInput::Scan(scan) => lane.handle_scan(now, scan),
    }
}

/// Commits every record the lane has ready (crossings and scan records alike) and logs its
/// decisions that made no record.
fn drain(
    lane: &mut LaneCorrelator,
    now: chrono::DateTime<Utc>,
    checks: &EdgeChecks,
    outbox: &Outbox,
    new_record: &Notify,
    feed: &ViewFeed,
) {
    while let Some(mut c) = lane.poll(now) {
        checks.apply(&mut c);
        commit(outbox, new_record, feed, &c);
    }
    while let Some(event) = lane.poll_event() {
        match event {
            LaneEvent::Reversal {
                arrived_at,
                left_at,
                plate,
                reason,
            } => tracing::info!(
                %arrived_at,
                %left_at,
                plate = plate.as_deref().unwrap_or("-"),
                %reason,
                "not a crossing: vehicle reversed off"
            ),
            // Camera noise mostly (a passer-by's plate): not worth INFO.
            LaneEvent::Unmatched { at, what, reason } => {
                tracing::debug!(%at, what, %reason, "evidence matched no vehicle");
            }
        }
    }
}

fn commit(outbox: &Outbox, new_record: &Notify, feed: &ViewFeed, c: &Crossing) {
    match outbox.append(c) {
        Ok(env) => {
            feed.recorded(env.seq, c, Utc::now());
            let kind = if c.flags.iter().any(|f| f.code == "orphan_scan") {
                "orphan scan recorded"
            } else if c.flags.iter().any(|f| f.code == "scan_after_close") {
                "scan after close recorded"
            } else {
                "crossing recorded"
            };
            tracing::info!(
                seq = env.seq,
                plate = c.plate.as_ref().map(|p| p.text.as_str()).unwrap_or("-"),
                gross_kg = c.weight.as_ref().map(|w| w.gross_kg),
                scan = c.scan.as_ref().map(|s| s.scan_id.as_str()).unwrap_or("-"),
                flags = c.flags.len(),
                "{kind}"
            );
            new_record.notify_one();
        }
        // Data loss: the operator must act (disk full, file broken). Logged with the whole record
        // so that the journal keeps it.
        Err(e) => {
            tracing::error!(error = %e, crossing = %serde_json::to_string(c).unwrap_or_default(), "CROSSING NOT STORED")
        }
    }
}
