//! The daemon's main loop: starts every device task, drives the lane correlator, commits each
//! crossing to the outbox, and keeps the uplink to central running.
//!
//! Start-up order matters to systemd: READY is sent once the config is valid, the outbox is open
//! and the ANPR models are loaded. Watchdog pings come from this loop, so a hung loop gets the
//! daemon restarted. On shutdown, crossings still waiting for late evidence are closed and
//! committed, so nothing recorded is lost.
//!
//! A weighbridge configured as an axle scale (`[weighbridge] axle_scale`) reaches the lane
//! through [`AxleScale`], which sums the axle groups and frames one vehicle; the loop wakes for
//! its gap timeout as for the lane's.
//!
//! A camera that frames the vehicles (`[camera] presence = "motion"`) measures each frame's
//! motion; the loop feeds it to [`CameraPresence`] before the frame's reads go to the lane, and
//! gives the lane its vehicles on and off (the end they left by unknown); the loop wakes for its
//! quiet time as for the lane's. The weighbridge then only weighs. Frames of the empty lane
//! with nothing read in them do not go to the lane (they would only count as unmatched
//! evidence, several a second).
//!
//! The control socket and the metrics endpoint are bound before READY and read the agent
//! through an [`AgentView`]; the loop tells it the lane's state and each committed crossing
//! ([`ViewFeed`]). Either failing to bind is logged at ERROR and the agent records crossings
//! without it: a technician's tool must not stop the lane.

use crate::axle_scale::AxleScale;
use crate::camera_presence::{CameraPresence, CameraPresenceEvent};
use crate::central_config;
use crate::checks::{CentralLists, EdgeChecks};
use crate::config::AgentConfig;
use crate::control::protocol::ReloadReport;
use crate::health::DeviceBoard;
use crate::lane::{Conveyance, Evidence, LaneCorrelator, LaneEvent, LaneRecord};
use crate::metrics::{Histogram, ANPR_BUCKETS_SECS};
use crate::profile::PostProfile;
use crate::reload::{self, ReloadHandle, ReloadRequest};
use crate::train::{TrainCorrelator, TrainEvent};
use crate::view::{AgentView, ViewFeed, ViewParts};
use crate::{camera, control, metrics};
use anyhow::{Context, Result};
use bcp_anpr_core::{AnprConfig, NativePaths};
use bcp_drivers::serial::DeviceEvent;
use bcp_drivers::stability::WeighEvent;
use bcp_record::lists::{KIND_CONFIG, KIND_DECLARATIONS, KIND_HOTLIST};
use bcp_record::{Crossing, Weighing};
use bcp_sync::outbox::{ImageData, Outbox};
use bcp_sync::uplink::{self, UplinkConfig, UplinkMonitor};
use chrono::{TimeDelta, Utc};
use devices::Devices;
use images::{EvidenceImages, MadeImages};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};

mod devices;
mod images;
pub(crate) mod supervise;

/// Everything that reaches the lane, from every device task.
#[derive(Debug)]
enum LaneInput {
    Weighbridge(DeviceEvent),
    Dimensions(DeviceEvent),
    Frame(camera::FrameReads),
    /// The presence sensors: a vehicle on or off by an end, or their port's state.
    Presence(DeviceEvent),
    /// A frame of the rear camera (a trailer's plate).
    RearFrame(camera::FrameReads),
    Scan(bcp_record::ScanEvent),
}

/// What the daemon gives the agent besides its config; the default: no reloads.
#[derive(Default)]
pub struct RunOptions {
    /// The config file: re-read on reload, and it names the audit log forwarded to central.
    pub config_path: Option<PathBuf>,
    /// Reload requests (SIGHUP); the control API's `reload` gets a handle to the same queue.
    pub reloads: Option<(ReloadHandle, mpsc::Receiver<ReloadRequest>)>,
    /// Sets the log filter from `[log] level` (`None`: back to `RUST_LOG`, else `info`).
    pub set_log_filter: Option<LogFilterSetter>,
}

/// Sets the daemon's log filter.
pub type LogFilterSetter = Box<dyn Fn(Option<&str>) -> Result<()> + Send + Sync>;

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("config_path", &self.config_path)
            .field("reloads", &self.reloads.is_some())
            .field("set_log_filter", &self.set_log_filter.is_some())
            .finish()
    }
}

/// Runs the agent until `shutdown` turns true.
pub async fn run(cfg: AgentConfig, shutdown: watch::Receiver<bool>) -> Result<()> {
    run_with(cfg, shutdown, RunOptions::default()).await
}

/// [`run`], with reloads and the config audit log (see [`crate::reload`]).
pub async fn run_with(
    cfg: AgentConfig,
    mut shutdown: watch::Receiver<bool>,
    options: RunOptions,
) -> Result<()> {
    let outbox = Arc::new(cfg.outbox.open(&cfg.post.id)?);
    if let Some(path) = &options.config_path {
        if let Err(e) = reload::forward_audit(path, &outbox, &cfg.post.lane) {
            tracing::warn!(error = %format!("{e:#}"), "config audit log not forwarded; tried again on the next reload");
        }
    }
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
    anpr.fit_plate_formats = cfg.post.transport_mode.reads_plates();
    anpr.validate().context("invalid [anpr] settings")?;
    // The rear camera reads on a thread of its own, with an engine of its own.
    let rear_reader = match &cfg.rear_camera {
        Some(_) => Some(crate::camera::LazyReader::new(
            anpr.clone(),
            cfg.anpr.preload,
        )?),
        None => None,
    };
    let reader = crate::camera::LazyReader::new(anpr, cfg.anpr.preload)?;
    let checks = EdgeChecks::load(cfg.limits.clone()).context("loading [limits]")?;
    // Central's downlink lists, kept beside the outbox; they work offline and across restarts.
    let lists = match cfg.sync.central_key()? {
        Some(key) => {
            let path = cfg.sync.lists_path(&cfg.outbox.path);
            let store = bcp_sync::ListStore::open(&path, &cfg.post.id, key)
                .with_context(|| format!("opening the downlink lists {}", path.display()))?;
            let held = central_lists(Some(&store));
            tracing::info!(path = %path.display(), hotlist = held.len().0, declarations = held.len().1, "downlink lists held");
            Some(Arc::new(store))
        }
        None => None,
    };

    // Every device writes into the lane's channel; the loop keeps a sender so that a device
    // restarted by a reload can write into the same channel.
    let (tx, mut rx) = mpsc::channel::<LaneInput>(1024);
    let mut tasks = tokio::task::JoinSet::new();
    let (mut board, devices_rx) = DeviceBoard::new();
    let anpr_latency = Arc::new(Histogram::new(&ANPR_BUCKETS_SECS));
    let devices = Devices::start(
        &cfg,
        (reader, rear_reader),
        &tx,
        &mut board,
        anpr_latency.clone(),
    )?;
    let rear_camera_name = cfg.rear_camera.as_ref().map(|c| c.name.clone());
    let scanner_name = cfg.scanner.as_ref().map(|s| s.name.clone());

    // Uplink to central.
    let new_record = Arc::new(Notify::new());
    let uplink_monitor = Arc::new(UplinkMonitor::default());
    let (reload_handle, mut reload_rx) = match options.reloads {
        Some((handle, rx)) => (Some(handle), Some(rx)),
        None => (None, None),
    };
    let (view, feed) = AgentView::new(ViewParts {
        post: cfg.post.id.clone(),
        lane: cfg.post.lane.clone(),
        lane_devices: [
            Some(cfg.weighbridge.name.clone()),
            cfg.dimensions.as_ref().map(|d| d.name.clone()),
            cfg.presence.as_ref().map(|p| p.name.clone()),
            Some(cfg.camera.name.clone()),
            rear_camera_name.clone(),
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
        reload: reload_handle,
    });
    let uplink_cfg = UplinkConfig {
        broker_host: cfg.sync.broker_host.clone(),
        broker_port: cfg.sync.broker_port,
        client_id: cfg.client_id(),
        post: cfg.post.id.clone(),
        keep_alive_secs: cfg.sync.keep_alive_secs,
        max_in_flight: cfg.sync.max_in_flight,
        batch_max_records: cfg.sync.batch_max_records,
        max_bytes_per_sec: cfg.sync.max_bytes_per_sec,
        devices: Some(devices_rx),
        monitor: Some(uplink_monitor),
        lists: lists.clone(),
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
    let profile = cfg.post.transport_mode;
    let mut lane = Correlator::for_post(&cfg);
    let mut framing = Framing::Weighbridge;
    // Chosen at start (`camera.presence` waits for a restart, see `reload`).
    let mut camera_presence = cfg
        .camera
        .frames_by_motion()
        .then(|| CameraPresence::new(cfg.camera.motion_rules()));
    if camera_presence.is_some() {
        framing = Framing::CameraMotion;
        tracing::info!(camera = %cfg.camera.name, "the camera's motion frames the vehicles; the weighbridge only weighs");
    }
    tracing::info!(
        post = %cfg.post.id,
        lane = %cfg.post.lane,
        profile = profile.name(),
        transport_mode = profile.transport_mode().code(),
        "agent running"
    );
    // How far central's `config` lists were taken in; only where there are lists and a file.
    let config_list_cursor = match (&lists, &options.config_path) {
        (Some(_), Some(_)) => Some(central_config::Cursor::open(central_config::cursor_path(
            outbox.path(),
        ))?),
        _ => None,
    };
    let mut running = Running {
        evidence: EvidenceImages::new(&cfg),
        axle_scale: axle_scale_for(&cfg),
        cfg,
        checks,
        devices,
        deferred: BTreeSet::new(),
        config_path: options.config_path,
        set_log_filter: options.set_log_filter,
        outbox: outbox.clone(),
        config_list_cursor,
    };

    // Central's `config` list: looked for every few seconds (a local SQLite read).
    let mut config_list_tick = tokio::time::interval(CONFIG_LIST_CHECK);
    config_list_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        let axles_wake = running
            .axle_scale
            .as_ref()
            .and_then(AxleScale::poll_timeout)
            .map(|t| t.saturating_duration_since(std::time::Instant::now()));
        let wake = lane
            .poll_timeout()
            .into_iter()
            .chain(
                camera_presence
                    .as_ref()
                    .and_then(CameraPresence::poll_timeout),
            )
            .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .chain(axles_wake)
            .min()
            .unwrap_or(Duration::from_secs(3600));
        let c = &running.cfg;
        tokio::select! {
            input = rx.recv() => match input {
                Some(input) => {
                    let cameras = (c.camera.name.as_str(), rear_camera_name.as_deref());
                    observe(&mut board, cameras, scanner_name.as_deref(), &c.weighbridge.name, &input);
                    framing.observe(&input);
                    handle(&mut lane, &c.weighbridge.name, framing, input, &mut running.evidence, running.axle_scale.as_mut(), camera_presence.as_mut());
                    let (on_bridge, open) = lane.occupancy();
                    feed.occupancy(on_bridge, open);
                }
                None => break,
            },
            Some(request) = next_reload(&mut reload_rx) => {
                let outcome = running.reload(&mut lane).await;
                if let Some(reply) = request.reply {
                    let _ = reply.send(outcome);
                }
            }
            _ = board_tick.tick() => board.publish(std::time::Instant::now()),
            _ = config_list_tick.tick(), if running.config_list_cursor.is_some() => {
                running.apply_central_config(lists.as_deref(), &mut lane).await;
            }
            _ = tokio::time::sleep(wake) => {}
            _ = watchdog.tick(), if watchdog_period.is_some() => crate::systemd::watchdog(),
            _ = shutdown.changed() => if *shutdown.borrow() { break },
        }
        if let (Some(scale), Correlator::Lane(l)) = (running.axle_scale.as_mut(), &mut lane) {
            scale.handle_timeout(std::time::Instant::now(), Utc::now(), l);
        }
        if let (Some(presence), Correlator::Lane(l)) = (camera_presence.as_mut(), &mut lane) {
            presence.handle_timeout(Utc::now());
            camera_framing(presence, l);
        }
        if !running.deferred.is_empty() && !lane.occupancy().0 {
            running.restart_deferred().await;
        }
        drain(
            &mut lane,
            &running.cfg,
            Utc::now(),
            &running.checks,
            lists.as_deref(),
            &outbox,
            &new_record,
            &feed,
            &mut running.evidence,
        )
        .await;
    }

    // Drain: close what is still open, so every vehicle seen is recorded.
    crate::systemd::stopping();
    let end_of_time = Utc::now() + TimeDelta::days(1);
    if let (Some(scale), Correlator::Lane(l)) = (running.axle_scale.as_mut(), &mut lane) {
        scale.finish(std::time::Instant::now(), Utc::now(), l);
    }
    lane.presence_off(Utc::now());
    drain(
        &mut lane,
        &running.cfg,
        end_of_time,
        &running.checks,
        lists.as_deref(),
        &outbox,
        &new_record,
        &feed,
        &mut running.evidence,
    )
    .await;
    lane.log_counters();
    running.evidence.log_counters();
    running.devices.stop_all().await;
    tasks.shutdown().await;
    match tokio::time::timeout(Duration::from_secs(5), uplink_task).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %format!("{e:#}"), "uplink stopped with an error"),
        Ok(_) => {}
        Err(_) => tracing::warn!("uplink did not stop in 5 s"),
    }
    tracing::info!("agent stopped");
    Ok(())
}

/// The next reload request; never, without reloads.
async fn next_reload(rx: &mut Option<mpsc::Receiver<ReloadRequest>>) -> Option<ReloadRequest> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// What a reload may change while the loop runs.
struct Running {
    /// The config in effect (keys that wait for a restart keep their running value).
    cfg: AgentConfig,
    checks: EdgeChecks,
    devices: Devices,
    /// Devices to restart once no vehicle is on the bridge.
    deferred: BTreeSet<reload::Device>,
    config_path: Option<PathBuf>,
    set_log_filter: Option<LogFilterSetter>,
    outbox: Arc<Outbox>,
    /// The frame cache and the image settings (`[evidence]`, applied at once on a reload).
    evidence: EvidenceImages,
    /// Central's `config` lists handled so far (`None`: the post takes no lists, or has no file).
    config_list_cursor: Option<central_config::Cursor>,
    /// The weighbridge is an axle scale (`[weighbridge] axle_scale`): its events go through
    /// this to the lane. Made anew with the weighbridge's driver, once no vehicle is on.
    axle_scale: Option<AxleScale>,
}

/// The axle scale in front of the lane, if the weighbridge is one (validated: road posts only).
fn axle_scale_for(cfg: &AgentConfig) -> Option<AxleScale> {
    let wb = &cfg.weighbridge;
    (wb.axle_scale && cfg.post.transport_mode == PostProfile::Road)
        .then(|| AxleScale::new(&wb.name, Duration::from_millis(wb.max_axle_gap_ms)))
}

impl Running {
    /// Re-reads the config file and applies it (see [`crate::reload`]); an invalid file is
    /// refused, logged at ERROR, and changes nothing.
    async fn reload(&mut self, lane: &mut Correlator) -> Result<ReloadReport, String> {
        let Some(path) = self.config_path.clone() else {
            return Err(
                "this agent was started without a config file: nothing to reload".to_owned(),
            );
        };
        let audit_records = match reload::forward_audit(&path, &self.outbox, &self.cfg.post.lane) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "config audit log not forwarded; tried again on the next reload");
                0
            }
        };
        let prepared = AgentConfig::load(&path).and_then(|new| {
            let delta = reload::classify(&self.cfg, &new)?;
            let checks = EdgeChecks::load(new.limits.clone()).context("loading [limits]")?;
            Ok((new, delta, checks))
        });
        let (new, delta, checks) = match prepared {
            Ok(p) => p,
            Err(e) => {
                let message = format!("{e:#}");
                tracing::error!(config = %path.display(), error = %message, "config reload REFUSED: the agent keeps running with the previous config; fix the file (bcpctl config validate)");
                return Err(format!(
                    "reload refused, the agent keeps its running config: {message}"
                ));
            }
        };
        self.checks = checks;
        lane.set_lane_rules(new.lane.rules(self.cfg.scanner.is_some()));
        if new.log != self.cfg.log {
            if let Some(set) = &self.set_log_filter {
                if let Err(e) = set(new.log.level.as_deref()) {
                    tracing::warn!(error = %format!("{e:#}"), "log.level not applied");
                }
            }
        }
        self.cfg = reload::applied(&self.cfg, &new, &delta);
        self.evidence.reconfigure(&self.cfg);
        let mut restarted = Vec::new();
        let on_bridge = lane.occupancy().0;
        for device in &delta.devices {
            let serial = matches!(
                device,
                reload::Device::Weighbridge | reload::Device::Dimensions
            );
            if serial && on_bridge {
                // Not while a vehicle is being weighed or measured: after it has left.
                self.deferred.insert(*device);
                restarted.push(format!("{device:?} (once the bridge is empty)").to_lowercase());
                continue;
            }
            match self.devices.restart(*device, &self.cfg).await {
                Ok(name) => {
                    if *device == reload::Device::Weighbridge {
                        self.axle_scale = axle_scale_for(&self.cfg);
                    }
                    restarted.push(name)
                }
                Err(e) => {
                    tracing::error!(device = ?device, error = %format!("{e:#}"), "device restart failed: restart the agent (systemctl restart bcp-agent)")
                }
            }
        }
        let report = ReloadReport {
            config: path.clone(),
            applied: delta.in_place,
            restarted,
            needs_restart: delta.needs_restart,
            audit_records,
        };
        tracing::info!(
            config = %path.display(),
            applied = ?report.applied,
            restarted = ?report.restarted,
            audit_records,
            "config reloaded"
        );
        if !report.needs_restart.is_empty() {
            tracing::warn!(keys = ?report.needs_restart, "these config changes take effect at the next start: systemctl restart bcp-agent");
        }
        Ok(report)
    }

    /// Writes central's `config` list into the config file and reloads, when a version not yet
    /// handled is held (see [`crate::central_config`]). Trouble is logged; the lane runs on.
    async fn apply_central_config(
        &mut self,
        lists: Option<&bcp_sync::ListStore>,
        lane: &mut Correlator,
    ) {
        let (Some(store), Some(path), Some(cursor)) = (
            lists,
            self.config_path.clone(),
            self.config_list_cursor.as_mut(),
        ) else {
            return;
        };
        let list = match store.version(KIND_CONFIG) {
            Ok(held) if !cursor.is_pending(held) => return,
            Ok(_) => match store.get(KIND_CONFIG) {
                Ok(Some(list)) => list,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot read central's config list");
                    return;
                }
            },
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot read central's config list");
                return;
            }
        };
        match cursor.apply(&path, &list) {
            Ok(central_config::Applied::Changed(change)) => {
                let keys: Vec<&str> = change.changes.iter().map(|c| c.key.as_str()).collect();
                tracing::warn!(version = list.version, ?keys, config = %path.display(), "central changed the configuration; reloading");
                if let Err(e) = self.reload(lane).await {
                    tracing::error!(error = %e, "reload after central's config list failed");
                }
            }
            Ok(central_config::Applied::Unchanged) => {
                tracing::info!(
                    version = list.version,
                    "central's config list: the file already says so"
                );
            }
            Ok(central_config::Applied::Refused(why)) => {
                tracing::error!(version = list.version, reason = %why, "central's config list REFUSED: nothing changed");
            }
            Err(e) => {
                tracing::error!(version = list.version, error = %format!("{e:#}"), "central's config list not applied; tried again shortly");
            }
        }
    }

    /// Restarts the devices a reload deferred while a vehicle was on the bridge.
    async fn restart_deferred(&mut self) {
        for device in std::mem::take(&mut self.deferred) {
            match self.devices.restart(device, &self.cfg).await {
                Ok(name) => {
                    if device == reload::Device::Weighbridge {
                        self.axle_scale = axle_scale_for(&self.cfg);
                    }
                    tracing::info!(device = %name, "device restarted with its new settings")
                }
                Err(e) => {
                    tracing::error!(device = ?device, error = %format!("{e:#}"), "device restart failed: restart the agent (systemctl restart bcp-agent)")
                }
            }
        }
    }
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
/// How often the loop looks for a new `config` list from central.
const CONFIG_LIST_CHECK: Duration = Duration::from_secs(2);

/// Tells the device board what `input` says about its device.
fn observe(
    board: &mut DeviceBoard,
    (camera, rear_camera): (&str, Option<&str>),
    scanner: Option<&str>,
    weighbridge: &str,
    input: &LaneInput,
) {
    let now = std::time::Instant::now();
    match input {
        LaneInput::Frame(_) => board.seen(camera, now),
        LaneInput::RearFrame(_) => {
            if let Some(name) = rear_camera {
                board.seen(name, now);
            }
        }
        LaneInput::Scan(_) => {
            if let Some(name) = scanner {
                board.seen(name, now);
            }
        }
        LaneInput::Weighbridge(DeviceEvent::Alarm(alarm)) => board.alarm(weighbridge, alarm),
        LaneInput::Weighbridge(_) | LaneInput::Dimensions(_) | LaneInput::Presence(_) => {}
    }
}

/// Which device frames the vehicles (on, off and by which end): the presence sensors while
/// their port is connected, else the weighbridge (see `[presence]` in the config); or the
/// camera's motion, always, when it is configured to (`[camera] presence = "motion"`; the
/// config refuses it beside `[presence]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Weighbridge,
    Presence,
    CameraMotion,
}

impl Framing {
    /// The presence sensors' port opened or was lost.
    fn observe(&mut self, input: &LaneInput) {
        if *self == Self::CameraMotion {
            return;
        }
        match input {
            LaneInput::Presence(DeviceEvent::Connected) => *self = Self::Presence,
            LaneInput::Presence(DeviceEvent::Disconnected { reason }) => {
                if *self == Self::Presence {
                    tracing::warn!(%reason, "presence sensors lost: the weighbridge frames vehicles until they are back");
                }
                *self = Self::Weighbridge;
            }
            _ => {}
        }
    }
}

/// The post's correlator, chosen by its profile: the lane's (road, air, river) or the train's
/// (rail).
#[derive(Debug)]
enum Correlator {
    Lane(LaneCorrelator),
    Train(TrainCorrelator),
}

impl Correlator {
    fn for_post(cfg: &AgentConfig) -> Self {
        let scanner = cfg.scanner.is_some();
        let profile = cfg.post.transport_mode;
        match profile {
            PostProfile::Rail => Self::Train(TrainCorrelator::new(
                &cfg.post.id,
                &cfg.post.lane,
                cfg.train_settings().rules(scanner),
            )),
            PostProfile::Road | PostProfile::Air | PostProfile::River => Self::Lane(
                LaneCorrelator::new(&cfg.post.id, &cfg.post.lane, cfg.lane.rules(scanner))
                    .with_conveyance(Conveyance {
                        identifier: profile.lane_identifier(),
                        weighed: profile.weighs(),
                    }),
            ),
        }
    }

    /// A reload's new `[lane]` windows; a train's (`[train]`) take a restart.
    fn set_lane_rules(&mut self, rules: crate::lane::LaneRules) {
        if let Self::Lane(l) = self {
            l.set_rules(rules);
        }
    }

    fn poll_timeout(&self) -> Option<chrono::DateTime<Utc>> {
        match self {
            Self::Lane(l) => l.poll_timeout(),
            Self::Train(t) => t.poll_timeout(),
        }
    }

    fn occupancy(&self) -> (bool, usize) {
        match self {
            Self::Lane(l) => l.occupancy(),
            Self::Train(t) => t.occupancy(),
        }
    }

    /// The next record; a train's come without a plate frame (no plate images on rail posts).
    fn poll(&mut self, now: chrono::DateTime<Utc>) -> Option<LaneRecord> {
        match self {
            Self::Lane(l) => l.poll_record(now),
            Self::Train(t) => t.poll(now).map(|crossing| LaneRecord {
                crossing,
                plate_frame: None,
            }),
        }
    }

    /// Whatever is on the bridge (or the weigh rail) leaves now: for the shutdown drain.
    fn presence_off(&mut self, now: chrono::DateTime<Utc>) {
        match self {
            Self::Lane(l) => l.handle_vehicle_off(now),
            Self::Train(t) => t.handle_wagon_off(now),
        }
    }

    /// Logs the decisions that made no record.
    fn log_events(&mut self) {
        match self {
            Self::Lane(l) => {
                while let Some(event) = l.poll_event() {
                    log_lane_event(event);
                }
            }
            Self::Train(t) => {
                while let Some(TrainEvent::Unmatched { at, text, reason }) = t.poll_event() {
                    tracing::debug!(%at, %text, %reason, "identifier matched no wagon");
                }
            }
        }
    }

    fn log_counters(&self) {
        match self {
            Self::Lane(l) => {
                let n = l.counters();
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
            }
            Self::Train(t) => {
                let n = t.counters();
                tracing::info!(
                    trains = n.trains,
                    wagons = n.wagons,
                    unread_wagon_numbers = n.unread_wagon_numbers,
                    repaired_wagon_numbers = n.repaired_wagon_numbers,
                    count_mismatches = n.count_mismatches,
                    late_scans = n.late_scans,
                    scans_after_close = n.scans_after_close,
                    orphan_scans = n.orphan_scans,
                    unmatched_reads = n.unmatched_reads,
                    "train counters since start"
                );
            }
        }
    }
}

fn handle(
    lane: &mut Correlator,
    weighbridge: &str,
    framing: Framing,
    input: LaneInput,
    evidence: &mut EvidenceImages,
    axle_scale: Option<&mut AxleScale>,
    camera_presence: Option<&mut CameraPresence>,
) {
    let now = Utc::now();
    let weighing = |s: &bcp_drivers::stability::StableWeight| Weighing {
        gross_kg: s.weight_kg,
        division_kg: s.division_kg,
        stable_at: now,
        device: weighbridge.to_owned(),
        axles_kg: Vec::new(),
        unweighed_axles: 0,
    };
    match (lane, input) {
        // An axle scale: its groups are summed, the vehicle framed as one (see `axle_scale`;
        // the config refuses presence sensors beside an axle scale).
        (Correlator::Lane(lane), LaneInput::Weighbridge(DeviceEvent::Weigh(event)))
            if axle_scale.is_some() =>
        {
            if let Some(scale) = axle_scale {
                scale.handle_event(std::time::Instant::now(), now, &event, lane);
            }
        }
        (Correlator::Lane(lane), LaneInput::Weighbridge(DeviceEvent::Weigh(event))) => {
            match (event, framing) {
                (WeighEvent::Stable(s), _) => {
                    tracing::debug!(kg = s.weight_kg, at = %now, "stable weight");
                    lane.handle_stable_weight(now, weighing(&s))
                }
                (WeighEvent::VehicleOn { .. }, Framing::Weighbridge) => lane.handle_vehicle_on(now),
                (WeighEvent::VehicleOff { .. }, Framing::Weighbridge) => {
                    lane.handle_vehicle_off(now)
                }
                // The presence sensors, or the camera's motion, frame the vehicles.
                (_, Framing::Presence | Framing::CameraMotion) => {}
            }
        }
        (Correlator::Lane(lane), LaneInput::Presence(DeviceEvent::Presence(event))) => {
            use crate::lane::BridgeEnd;
            use bcp_drivers::presence::PresenceEvent;
            use bcp_drivers::presence_ascii::SensorEnd;
            match event {
                PresenceEvent::VehicleOn { by, .. } => {
                    if by == SensorEnd::Exit {
                        tracing::info!("a vehicle came onto the bridge by the exit end");
                    }
                    lane.handle_vehicle_on(now)
                }
                PresenceEvent::VehicleOff { by, .. } => {
                    let end = match by {
                        SensorEnd::Entry => BridgeEnd::Entry,
                        SensorEnd::Exit => BridgeEnd::Exit,
                    };
                    lane.handle_vehicle_off_by(now, end)
                }
            }
        }
        (_, LaneInput::Presence(DeviceEvent::Disconnected { reason })) => {
            tracing::debug!(%reason, "presence sensors disconnected");
        }
        (_, LaneInput::Presence(_)) => {}
        // The rail weighbridge frames each wagon as the road one frames a vehicle.
        (Correlator::Train(train), LaneInput::Weighbridge(DeviceEvent::Weigh(event))) => {
            match event {
                WeighEvent::VehicleOn { .. } => train.handle_wagon_on(now),
                WeighEvent::Stable(s) => train.handle_wagon_weight(now, weighing(&s)),
                WeighEvent::VehicleOff { .. } => train.handle_wagon_off(now),
            }
        }
        (Correlator::Lane(lane), LaneInput::Dimensions(DeviceEvent::Dimensions(d))) => {
            tracing::debug!(length_mm = d.length_mm, at = %now, "dimensions");
            lane.handle_evidence(
                now,
                Evidence::Dimensions(bcp_record::Dimensions {
                    length_mm: d.length_mm,
                    width_mm: d.width_mm,
                    height_mm: d.height_mm,
                }),
            )
        }
        (_, LaneInput::Weighbridge(DeviceEvent::Disconnected { reason }))
        | (_, LaneInput::Dimensions(DeviceEvent::Disconnected { reason })) => {
            tracing::debug!(%reason, "device disconnected");
        }
        (_, LaneInput::Weighbridge(DeviceEvent::Alarm(alarm))) => {
            // Overload, underload, indicator error, zero drift: the technician must look.
            tracing::warn!(device = weighbridge, ?alarm, "weighbridge alarm");
        }
        (_, LaneInput::Weighbridge(_) | LaneInput::Dimensions(_)) => {}
        (Correlator::Lane(lane), LaneInput::Frame(f)) => {
            // Its motion first: the frame that brings a vehicle on joins it.
            if let Some(presence) = camera_presence {
                if let Some(motion) = f.motion {
                    presence.handle_frame(now, f.captured_at, motion, f.frames_waiting);
                    camera_framing(presence, lane);
                }
                // A frame of the empty lane with nothing read in it is no evidence of anything
                // (such a camera sends several a second).
                if f.reads.is_empty() && !presence.occupied() {
                    return;
                }
            }
            // The frame's bytes stay with the agent; the lane carries its id.
            let reads = match evidence.keep_frame(f.jpeg) {
                Some(id) => Evidence::Frame(id, f.reads),
                None => Evidence::PlateReads(f.reads),
            };
            lane.handle_evidence(f.captured_at, reads)
        }
        (Correlator::Train(train), LaneInput::Frame(f)) => {
            train.handle_reads(f.captured_at, f.reads)
        }
        // Its image is not kept: the crossing's images are of the front plate.
        (Correlator::Lane(lane), LaneInput::RearFrame(f)) => {
            lane.handle_evidence(f.captured_at, Evidence::RearFrame(f.reads))
        }
        // `validate` allows a rear camera on road posts only.
        (Correlator::Train(_), LaneInput::RearFrame(_)) => {}
        (Correlator::Lane(lane), LaneInput::Scan(scan)) => {
            tracing::debug!(scan = %scan.scan_id, scanned_at = %scan.scanned_at, "scan result");
            lane.handle_scan(now, scan)
        }
        (Correlator::Train(train), LaneInput::Scan(scan)) => train.handle_scan(now, scan),
    }
}

/// Gives the lane the vehicles camera presence framed (the end they left by is not known).
fn camera_framing(presence: &mut CameraPresence, lane: &mut LaneCorrelator) {
    while let Some(event) = presence.poll() {
        match event {
            CameraPresenceEvent::VehicleOn { at } => {
                tracing::debug!(%at, "camera motion: a vehicle came on");
                lane.handle_vehicle_on(at)
            }
            CameraPresenceEvent::VehicleOff { at } => {
                tracing::debug!(%at, "camera motion: the vehicle left");
                lane.handle_vehicle_off(at)
            }
        }
    }
}

/// Central's lists as held now (read for each closed crossing: a crossing every few tens of
/// seconds, a list replaced at any moment). A store that cannot be read is logged and the
/// crossing checked without lists: a record is never held back for a list.
fn central_lists(lists: Option<&bcp_sync::ListStore>) -> CentralLists {
    let Some(store) = lists else {
        return CentralLists::default();
    };
    let get = |kind: &str| match store.get(kind) {
        Ok(list) => list,
        Err(error) => {
            tracing::error!(kind, error = %format!("{error:#}"), "cannot read a downlink list; checking without it");
            None
        }
    };
    CentralLists::from_lists(get(KIND_HOTLIST).as_ref(), get(KIND_DECLARATIONS).as_ref())
}

/// Commits every record the lane has ready (crossings and scan records alike) with its images
/// (see [`images`]) and what the running config says of every record (the post's transport
/// mode and customs office, the lane's direction), and logs its decisions that made no record.
#[allow(clippy::too_many_arguments)] // the main loop's parts, passed as they are
async fn drain(
    lane: &mut Correlator,
    cfg: &AgentConfig,
    now: chrono::DateTime<Utc>,
    checks: &EdgeChecks,
    lists: Option<&bcp_sync::ListStore>,
    outbox: &Outbox,
    new_record: &Notify,
    feed: &ViewFeed,
    evidence: &mut EvidenceImages,
) {
    while let Some(mut record) = lane.poll(now) {
        let made = evidence.make(&mut record).await;
        let c = &mut record.crossing;
        c.transport_mode = Some(cfg.post.transport_mode.transport_mode());
        c.direction = cfg.lane.direction;
        c.customs_office_at_border_reference = cfg.post.customs_office.clone();
        checks.apply_with(c, &central_lists(lists));
        commit(outbox, new_record, feed, c, &made);
        feed.images(evidence.counters());
    }
    lane.log_events();
}

fn log_lane_event(event: LaneEvent) {
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

fn commit(outbox: &Outbox, new_record: &Notify, feed: &ViewFeed, c: &Crossing, made: &MadeImages) {
    let images: Vec<ImageData<'_>> = made
        .images
        .iter()
        .map(|(kind, bytes)| ImageData {
            kind: *kind,
            media_type: bcp_anpr_core::settings::MEDIA_TYPE,
            bytes,
        })
        .collect();
    let appended = if images.is_empty() {
        outbox.append(c)
    } else {
        outbox.append_with_images(c, &images)
    };
    match appended {
        Ok(env) => {
            feed.recorded(env.seq, c, Utc::now());
            let kind = if c.flags.iter().any(|f| f.code == "orphan_scan") {
                "orphan scan recorded"
            } else if c.flags.iter().any(|f| f.code == "scan_after_close") {
                "scan after close recorded"
            } else if c.train.is_some() {
                "train recorded"
            } else {
                "crossing recorded"
            };
            tracing::info!(
                seq = env.seq,
                wagons = c.train.as_ref().map(|t| t.wagons.len()),
                plate = c.plate.as_ref().map(|p| p.text.as_str()).unwrap_or("-"),
                gross_kg = c.weight.as_ref().map(|w| w.gross_kg),
                axles = c.weight.as_ref().map(|w| w.axle_count()).filter(|n| *n > 0),
                scan = c.scan.as_ref().map(|s| s.scan_id.as_str()).unwrap_or("-"),
                flags = c.flags.len(),
                images = images.len(),
                image_bytes = images.iter().map(|i| i.bytes.len()).sum::<usize>(),
                images_ms = made.ms,
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
