//! The lane's device tasks, each with its own stop signal, so that a reload can restart one
//! device with new settings while the others, the lane and the outbox run on.
//!
//! Each device is a driver (a task, or the camera's thread) writing into its own channel, and a
//! forwarding task from that channel into the lane's. Stopping a device stops its driver and
//! waits for it to end; the forwarding task then hands whatever the driver had read to the
//! lane and ends by itself (it is not awaited, so that a full lane channel cannot stall the
//! main loop that is stopping the device). The lane's channel outlives every device: nothing a
//! device read is lost across a restart.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use bcp_drivers::serial::{self, DeviceHealth};
use bcp_drivers::stability::StabilityConfig;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::supervise::{supervise, RestartBackoff};
use super::{forward, LaneInput};
use crate::camera::{self, CameraLinks, LazyReader};
use crate::config::{
    AgentConfig, CameraConfig, DimensionSensorConfig, PresenceSensorConfig, ScannerConfig,
    WeighbridgeConfig,
};
use crate::health::DeviceBoard;
use crate::metrics::Histogram;
use crate::reload::Device;
use crate::scanner;

/// A running device task.
#[derive(Debug)]
pub(super) struct DeviceTask {
    stop: watch::Sender<bool>,
    driver: JoinHandle<()>,
}

impl DeviceTask {
    /// Stops the driver and waits until it has ended (its port closed, its last reading sent).
    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.driver.await {
            tracing::error!(error = %e, "a device task failed while stopping");
        }
    }
}

/// A device whose driver writes into a channel of its own, forwarded into the lane as `wrap`
/// makes it, the driver run under [`supervise`]: `driver(out, stop)` starts one run, again
/// after each failure.
fn supervised_device<T, F, Fut>(
    name: &str,
    restarts: Arc<AtomicU64>,
    lane: &mpsc::Sender<LaneInput>,
    capacity: usize,
    wrap: fn(T) -> LaneInput,
    driver: F,
) -> DeviceTask
where
    T: Send + 'static,
    F: Fn(mpsc::Sender<T>, watch::Receiver<bool>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let (stop, stop_rx) = watch::channel(false);
    let (out, out_rx) = mpsc::channel(capacity);
    tokio::spawn(forward(out_rx, lane.clone(), wrap));
    let driver = tokio::spawn(supervise(
        name.to_owned(),
        stop_rx,
        restarts,
        RestartBackoff::default(),
        move |stop_rx| driver(out.clone(), stop_rx),
    ));
    DeviceTask { stop, driver }
}

/// The weighbridge's driver; its health goes into `health` (kept across restarts).
pub(super) fn start_weighbridge(
    wb: &WeighbridgeConfig,
    health: Arc<Mutex<DeviceHealth>>,
    restarts: Arc<AtomicU64>,
    lane: &mpsc::Sender<LaneInput>,
) -> Result<DeviceTask> {
    let protocol = wb.indicator_protocol()?;
    let stability = StabilityConfig {
        readings: wb.stable_readings,
        band_divisions: wb.stable_band_divisions,
        min_duration: Duration::from_millis(wb.stable_min_ms),
        occupied_threshold_kg: wb.occupied_threshold_kg,
        empty_threshold_kg: wb.empty_threshold_kg,
    };
    let (name, port) = (wb.name.clone(), wb.port.clone());
    let device = name.clone();
    Ok(supervised_device(
        &device,
        restarts,
        lane,
        256,
        LaneInput::Weighbridge,
        move |out, stop_rx| {
            let (name, port, protocol, stability, health) = (
                name.clone(),
                port.clone(),
                protocol.clone(),
                stability.clone(),
                health.clone(),
            );
            async move {
                serial::run_indicator(name, port, protocol, stability, out, health, stop_rx)
                    .await
                    .context("weighbridge driver")
            }
        },
    ))
}

/// The dimension device's driver: a sensor sending computed dimensions, or a lane scanner
/// whose profiles the driver turns into them.
pub(super) fn start_dimensions(
    d: &DimensionSensorConfig,
    health: Arc<Mutex<DeviceHealth>>,
    restarts: Arc<AtomicU64>,
    lane: &mpsc::Sender<LaneInput>,
) -> Result<DeviceTask> {
    let lane_scanner = d.lane_scanner()?;
    let (name, port) = (d.name.clone(), d.port.clone());
    Ok(supervised_device(
        &d.name,
        restarts,
        lane,
        64,
        LaneInput::Dimensions,
        move |out, stop_rx| {
            let (name, port, tracker, health) =
                (name.clone(), port.clone(), lane_scanner, health.clone());
            async move {
                match tracker {
                    Some(tracker) => {
                        serial::run_lane_scanner(name, port, tracker, out, health, stop_rx).await
                    }
                    None => serial::run_dimension_sensor(name, port, out, health, stop_rx).await,
                }
                .context("dimension device driver")
            }
        },
    ))
}

/// The presence sensors' driver (`presence-ascii`): vehicles on and off, with the end.
pub(super) fn start_presence(
    p: &PresenceSensorConfig,
    health: Arc<Mutex<DeviceHealth>>,
    restarts: Arc<AtomicU64>,
    lane: &mpsc::Sender<LaneInput>,
) -> DeviceTask {
    let (name, port) = (p.name.clone(), p.port.clone());
    supervised_device(
        &p.name,
        restarts,
        lane,
        64,
        LaneInput::Presence,
        move |out, stop_rx| {
            let (name, port, health) = (name.clone(), port.clone(), health.clone());
            async move {
                serial::run_presence_sensors(name, port, out, health, stop_rx)
                    .await
                    .context("presence sensors driver")
            }
        },
    )
}

/// The scanner's feed or drop-folder task (`validate` made sure exactly one is set).
pub(super) fn start_scanner(
    s: &ScannerConfig,
    restarts: Arc<AtomicU64>,
    lane: &mpsc::Sender<LaneInput>,
) -> DeviceTask {
    let (name, feed, folder) = (s.name.clone(), s.feed_addr.clone(), s.drop_folder.clone());
    supervised_device(
        &s.name,
        restarts,
        lane,
        64,
        LaneInput::Scan,
        move |out, stop_rx| {
            let (name, feed, folder) = (name.clone(), feed.clone(), folder.clone());
            async move {
                // Both adapters retry their own I/O and return only when stopped.
                match (feed, folder) {
                    (Some(addr), _) => scanner::run_feed(name, addr, out, stop_rx).await,
                    (None, Some(folder)) => {
                        scanner::run_drop_folder(name, folder, out, stop_rx).await
                    }
                    (None, None) => anyhow::bail!(
                        "scanner {name}: set scanner.feed_addr or scanner.drop_folder"
                    ),
                }
                Ok(())
            }
        },
    )
}

/// The camera's thread, reading frames with the ANPR engine it is given.
#[derive(Debug)]
pub(super) struct CameraTask {
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<LazyReader>,
}

impl CameraTask {
    /// Starts the camera of `cfg`; its frames reach the lane as `role` makes them (the front
    /// camera's as [`LaneInput::Frame`], the rear one's as [`LaneInput::RearFrame`]).
    pub(super) fn start(
        cfg: &CameraConfig,
        reader: LazyReader,
        lane: &mpsc::Sender<LaneInput>,
        latency: Arc<Histogram>,
        restarts: Arc<AtomicU64>,
        role: fn(camera::FrameReads) -> LaneInput,
    ) -> Result<Self> {
        let (stop, stop_rx) = watch::channel(false);
        let (frame_tx, frame_rx) = mpsc::channel(64);
        tokio::spawn(forward(frame_rx, lane.clone(), role));
        let thread = camera::spawn(
            cfg.name.clone(),
            cfg.source()?,
            Duration::from_millis(cfg.poll_ms),
            reader,
            CameraLinks {
                out: frame_tx,
                latency,
                restarts,
                shutdown: stop_rx,
            },
            cfg.frames_by_motion()
                .then(bcp_anpr_core::MotionConfig::default),
        )?;
        Ok(Self { stop, thread })
    }

    /// Stops the thread (after the frame it is reading) and takes its ANPR engine back. (The
    /// thread catches its own panics, see [`crate::camera`]; an error here is a bug.)
    pub(super) async fn stop(self) -> Result<LazyReader> {
        let _ = self.stop.send(true);
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .context("waiting for the camera thread")?
            .map_err(|_| anyhow::anyhow!("the camera thread panicked"))
    }
}

/// Every device of the lane, as running now.
#[derive(Debug)]
pub(super) struct Devices {
    lane: mpsc::Sender<LaneInput>,
    wb_health: Arc<Mutex<DeviceHealth>>,
    dims_health: Arc<Mutex<DeviceHealth>>,
    /// Restarts by the supervisor, per device; kept across reloads (the board shows them).
    wb_restarts: Arc<AtomicU64>,
    dims_restarts: Arc<AtomicU64>,
    scanner_restarts: Arc<AtomicU64>,
    camera_restarts: Arc<AtomicU64>,
    latency: Arc<Histogram>,
    weighbridge: Option<DeviceTask>,
    dimensions: Option<DeviceTask>,
    /// The presence sensors (`[presence]`); a change to them waits for the next start.
    presence: Option<DeviceTask>,
    camera: Option<CameraTask>,
    /// The rear camera (`[rear_camera]`); a change to it waits for the next start.
    rear_camera: Option<CameraTask>,
    scanner: Option<DeviceTask>,
}

impl Devices {
    /// Starts every device `cfg` names and puts it on the device board; `readers` are the
    /// camera's ANPR engine and the rear camera's, if there is one.
    pub(super) fn start(
        cfg: &AgentConfig,
        (reader, rear_reader): (LazyReader, Option<LazyReader>),
        lane: &mpsc::Sender<LaneInput>,
        board: &mut DeviceBoard,
        latency: Arc<Histogram>,
    ) -> Result<Self> {
        let wb_health = Arc::new(Mutex::new(DeviceHealth::default()));
        let dims_health = Arc::new(Mutex::new(DeviceHealth::default()));
        let wb_restarts = board.add_serial(&cfg.weighbridge.name, "weighbridge", wb_health.clone());
        let weighbridge = start_weighbridge(
            &cfg.weighbridge,
            wb_health.clone(),
            wb_restarts.clone(),
            lane,
        )?;
        let (dimensions, dims_restarts) = match &cfg.dimensions {
            Some(d) => {
                let restarts = board.add_serial(&d.name, "dimensions", dims_health.clone());
                let task = start_dimensions(d, dims_health.clone(), restarts.clone(), lane)?;
                (Some(task), restarts)
            }
            None => (None, Arc::default()),
        };
        let presence = cfg.presence.as_ref().map(|p| {
            let health = Arc::new(Mutex::new(DeviceHealth::default()));
            let restarts = board.add_serial(&p.name, "presence", health.clone());
            start_presence(p, health, restarts, lane)
        });
        let camera_restarts = board.add(&cfg.camera.name, "camera");
        let camera = CameraTask::start(
            &cfg.camera,
            reader,
            lane,
            latency.clone(),
            camera_restarts.clone(),
            LaneInput::Frame,
        )?;
        let rear_camera = match (&cfg.rear_camera, rear_reader) {
            (Some(rear), Some(reader)) => {
                let restarts = board.add(&rear.name, "camera");
                Some(CameraTask::start(
                    rear,
                    reader,
                    lane,
                    latency.clone(),
                    restarts,
                    LaneInput::RearFrame,
                )?)
            }
            (Some(rear), None) => {
                anyhow::bail!("rear camera {}: no ANPR engine given for it", rear.name)
            }
            (None, _) => None,
        };
        let (scanner, scanner_restarts) = match &cfg.scanner {
            Some(s) => {
                let restarts = board.add(&s.name, "scanner");
                (Some(start_scanner(s, restarts.clone(), lane)), restarts)
            }
            None => (None, Arc::default()),
        };
        Ok(Self {
            lane: lane.clone(),
            wb_health,
            dims_health,
            wb_restarts,
            dims_restarts,
            scanner_restarts,
            camera_restarts,
            latency,
            weighbridge: Some(weighbridge),
            dimensions,
            presence,
            camera: Some(camera),
            rear_camera,
            scanner,
        })
    }

    /// Stops `device` and starts it again with its settings in `cfg`; returns its name.
    pub(super) async fn restart(&mut self, device: Device, cfg: &AgentConfig) -> Result<String> {
        match device {
            Device::Weighbridge => {
                if let Some(old) = self.weighbridge.take() {
                    old.stop().await;
                }
                let wb = &cfg.weighbridge;
                self.weighbridge = Some(start_weighbridge(
                    wb,
                    self.wb_health.clone(),
                    self.wb_restarts.clone(),
                    &self.lane,
                )?);
                Ok(wb.name.clone())
            }
            Device::Dimensions => {
                if let Some(old) = self.dimensions.take() {
                    old.stop().await;
                }
                let d = cfg
                    .dimensions
                    .as_ref()
                    .context("[dimensions] is gone: restart the agent")?;
                self.dimensions = Some(start_dimensions(
                    d,
                    self.dims_health.clone(),
                    self.dims_restarts.clone(),
                    &self.lane,
                )?);
                Ok(d.name.clone())
            }
            Device::Camera => {
                let old = self.camera.take().context("the camera is not running")?;
                let reader = old.stop().await?;
                let c = &cfg.camera;
                self.camera = Some(CameraTask::start(
                    c,
                    reader,
                    &self.lane,
                    self.latency.clone(),
                    self.camera_restarts.clone(),
                    LaneInput::Frame,
                )?);
                Ok(c.name.clone())
            }
            Device::Scanner => {
                if let Some(old) = self.scanner.take() {
                    old.stop().await;
                }
                let s = cfg
                    .scanner
                    .as_ref()
                    .context("[scanner] is gone: restart the agent")?;
                self.scanner = Some(start_scanner(s, self.scanner_restarts.clone(), &self.lane));
                Ok(s.name.clone())
            }
        }
    }

    /// Stops every device (the agent is stopping).
    pub(super) async fn stop_all(self) {
        for task in [
            self.weighbridge,
            self.dimensions,
            self.presence,
            self.scanner,
        ]
        .into_iter()
        .flatten()
        {
            task.stop().await;
        }
        for camera in [self.camera, self.rear_camera].into_iter().flatten() {
            if let Err(e) = camera.stop().await {
                tracing::error!(error = %format!("{e:#}"), "camera thread");
            }
        }
    }
}
