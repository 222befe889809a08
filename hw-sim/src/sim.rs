//! The simulated post: opens the devices, then drives vehicles across the lane one by one.
//!
//! Per vehicle (durations from [`Timing`]): the weight ramps up with the motion flag set; the
//! indicator settles (one division over, still in motion, for a tenth of the hold), then holds
//! the gross weight, during which the dimension sensor sends its line, the camera drops frames
//! and the scanner reports the scan; then the weight ramps down to zero and the lane stays empty
//! for a gap.
//!
//! On an axle scale ([`PostDevices::axle_scale`], `bcp-sim --axle-scale`) each vehicle is drawn
//! across the scale axle group by axle group ([`scenario::on_axle_scale`] splits its gross):
//! each group's weight rises, settles and falls back to zero as a whole vehicle's does, the
//! scale empty for a third of `gap` between two groups; the camera frames and the dimension
//! line come with the first group, the scan with the last; after the last group the lane stays
//! empty for `gap` plus [`AXLE_SCALE_MAX_GAP_MS`], so that the next vehicle is not taken for
//! more axles of this one (the agent's `max_axle_gap_ms`, [`SimEndpoints::max_axle_gap_ms`]).
//!
//! A train ([`Scenario::Trains`], a rail post) goes wagon by wagon over the same indicator: each
//! wagon's weight rises, settles and falls back to zero (the weigh rail is one wagon long and
//! the sim uncouples nothing: the boundary is the weight going under the empty threshold), one
//! frame with the wagon's number and one per container go to the camera; the train's scan is
//! sent after its last wagon, and the track stays empty for `train_gap` before the next train.
//!
//! # Which devices ([`PostDevices`])
//!
//! The weighbridge indicator speaks any protocol of `bcp_drivers` by name
//! ([`PostDevices::indicator`], `bcp-sim --weighbridge NAME`): streaming ones send a frame every
//! [`Timing::frame_interval`], polled ones (`mt-sics`, `sma`, `xk3190-a9`) answer the agent's
//! requests with what the bridge shows at that moment ([`crate::indicators::run_indicator`]).
//! It sits behind the stable link `DIR/ttyWEIGHBRIDGE`, as a real one behind
//! `/dev/serial/by-id/...`. Protocols without a motion flag (the XK3190 family, Avery, A12E)
//! leave stability to the agent's own rule, as on a real post.
//!
//! The dimension device is a `dims-ascii` sensor that sends one line per vehicle while it stands
//! on the bridge, or ([`DimensionDevice::SickCola`], `bcp-sim --dimensions sick-cola`) a SICK
//! LMS-style scanner over the lane approach at `DIR/ttyLMS` ([`crate::lms`]): it streams
//! `LMDscandata` profiles of the empty road, and of each vehicle as it drives on at
//! [`LANE_SCANNER_SPEED_MM_PER_S`]. The scanner announces 50 Hz but sends a scan every
//! [`Timing::scan_interval`] (faster than real time by default, so that a 16.5 m truck has passed
//! before it has left the bridge); the agent counts scans, not seconds, so it measures the same.
//! [`SimEndpoints::lane_scanner`] tells the agent the geometry and the speed to configure.
//!
//! The X-ray scanner's reports can go wrong as at a real lane ([`ScannerFaults`]): late (the
//! verdict written after the vehicle left) and, on a drop folder, with bad files beside them
//! ([`BadScanFile`]: garbled, oversized, path traversal, duplicate).
//!
//! A camera for camera presence ([`PostDevices::empty_lane_frames`], `bcp-sim
//! --empty-lane-frames`) also drops a frame every [`EMPTY_LANE_FRAME_INTERVAL`] from the
//! moment the agent is up: the empty lane ([`plate_render::render_empty_lane_frame`]) while no
//! vehicle is on it, else the vehicle, a little moved in each frame, from when it starts to drive
//! on until it has left the bridge (whole vehicles only, not an axle scale's groups or wagons).
//! The agent can then see motion come and go ([`SimEndpoints::empty_lane_frames`]).
//!
//! Optional devices: a rear camera ([`PostDevices::rear_camera`]) drops a frame of each
//! vehicle's back beside each front frame (a trailer's plate, or a rigid truck's own); presence
//! sensors at the bridge's two ends ([`PostDevices::presence`]) send `presence-ascii` lines on a
//! pseudo-terminal as the vehicle drives on and off, or backs off
//! ([`crate::scenario::Vehicle::reverses`]: weighed and read, no scan, off by the entry).

use crate::conveyances::{self, SimTrain};
use crate::devices::{self, BridgeState, SimPort};
use crate::indicators::{self, Faults, PluggablePort, GENERIC_PATTERN};
use crate::lms::{self, LmsLane, LmsVehicle};
use crate::plate_render;
use crate::scenario::{self, Vehicle, DIVISION_KG};
use anyhow::{Context, Result};
use bcp_drivers::dims_ascii::DimensionFrame;
use bcp_drivers::presence_ascii::SensorEnd;
use bcp_drivers::AnyProtocol;
use bcp_record::ScanEvent;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};

/// The speed at which simulated vehicles drive under the lane scanner, mm/s: the agent's
/// `speed_mm_per_s` for a `sick-cola` dimension device (a fixed-speed source).
pub const LANE_SCANNER_SPEED_MM_PER_S: f64 = 3000.0;

/// With [`PostDevices::empty_lane_frames`]: the camera drops a frame this often (4 a second).
pub const EMPTY_LANE_FRAME_INTERVAL: Duration = Duration::from_millis(250);

/// On an axle scale: the gap after an axle group left beyond which the agent must take the
/// next group for another vehicle's (its `max_axle_gap_ms`). Longer than the simulated gap
/// between two groups of one vehicle (`gap / 3`), shorter than the one between two vehicles.
pub const AXLE_SCALE_MAX_GAP_MS: u64 = 1500;

/// The simulated post's devices; `PostDevices::default()` is a Toledo indicator (with checksum)
/// and a `dims-ascii` sensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostDevices {
    /// The weighbridge indicator's protocol, any name `bcp_drivers::AnyProtocol::parse` takes but
    /// `dims-ascii`; `generic` sends A&D-style lines matched by [`GENERIC_PATTERN`].
    pub indicator: String,
    pub dimensions: DimensionDevice,
    pub scanner: ScannerDevice,
    /// A second camera looking at the rear of each vehicle (`bcp-sim --rear-camera`), dropping
    /// frames into `DIR/rear-camera`: the trailer's plate of a vehicle that pulls one, else the
    /// vehicle's own plate (a rigid truck plated at both ends).
    pub rear_camera: bool,
    /// Presence sensors at the bridge's entry and exit ends (`bcp-sim --presence`), sending
    /// `presence-ascii` lines on a pseudo-terminal: `ENTRY 1` as a vehicle drives on, `EXIT 1`,
    /// `ENTRY 0` as it drives off, `EXIT 0` once it has left; a vehicle that
    /// [reverses](crate::scenario::Vehicle::reverses) sends `ENTRY 0` as it backs off.
    pub presence: bool,
    /// The weighbridge is a short axle scale: vehicles cross it axle group by axle group.
    pub axle_scale: bool,
    /// The camera drops frames at a steady rate, of the empty lane too (`bcp-sim
    /// --empty-lane-frames`), so that its motion can frame the vehicles (see the module
    /// header).
    pub empty_lane_frames: bool,
    /// What goes wrong with the X-ray scanner's reports (nothing by default).
    pub scanner_faults: ScannerFaults,
}

/// What goes wrong with the simulated X-ray scanner's reports, as at a real lane
/// (`bcp-sim --scanner-late-ms`, `--scanner-bad-file-every`). The agent must still give each
/// vehicle its scan, quarantine each bad file with its reason, and lose nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScannerFaults {
    /// Each scan is reported this long after it was made: the workstation operator's verdict
    /// comes after the vehicle has left. The report's `scanned_at` stays when it was made.
    pub late: Option<Duration>,
    /// With a drop folder: with every Nth scan (0: never) a bad file is dropped too, the kinds
    /// in turn ([`BadScanFile::ALL`]).
    pub bad_file_every: u32,
}

/// A bad file a scanner workstation may leave in the drop folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadScanFile {
    /// Metadata cut short (a crash while writing, a full disk at the workstation).
    Garbled,
    /// Metadata larger than the agent accepts (a vendor dumping a log into it).
    Oversized,
    /// An image name that climbs out of the folder (`../..`).
    PathTraversal,
    /// The same scan's metadata again under another name (a resend).
    Duplicate,
}

impl BadScanFile {
    /// The kinds in the order the simulator drops them.
    pub const ALL: [BadScanFile; 4] = [
        BadScanFile::Garbled,
        BadScanFile::Oversized,
        BadScanFile::PathTraversal,
        BadScanFile::Duplicate,
    ];

    /// The file's name for `scan_id`.
    pub fn file_name(self, scan_id: &str) -> String {
        let kind = match self {
            BadScanFile::Garbled => "garbled",
            BadScanFile::Oversized => "oversized",
            BadScanFile::PathTraversal => "traversal",
            BadScanFile::Duplicate => "again",
        };
        format!("{scan_id}-{kind}.xml")
    }

    /// The file's content for `scan` (its metadata being `xml`).
    fn content(self, scan: &ScanEvent, xml: &str) -> String {
        match self {
            BadScanFile::Garbled => xml.chars().take(xml.len() / 2).collect(),
            // Over the agent's 256 KiB limit.
            BadScanFile::Oversized => {
                format!("{xml}<!--{}-->\n", "x".repeat(300 * 1024))
            }
            BadScanFile::PathTraversal => scan_xml(&ScanEvent {
                scan_id: format!("{}-T", scan.scan_id),
                images: vec!["../../etc/passwd".to_owned()],
                ..scan.clone()
            }),
            BadScanFile::Duplicate => xml.to_owned(),
        }
    }
}

impl Default for PostDevices {
    fn default() -> Self {
        Self {
            indicator: "toledo-continuous-checksum".to_owned(),
            dimensions: DimensionDevice::DimsAscii,
            scanner: ScannerDevice::Feed,
            rear_camera: false,
            presence: false,
            axle_scale: false,
            empty_lane_frames: false,
            scanner_faults: ScannerFaults::default(),
        }
    }
}

/// How the simulated X-ray scanner reports its scans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScannerDevice {
    /// One JSON line per scan on a TCP feed.
    #[default]
    Feed,
    /// A drop folder (`DIR/scanner`): per scan, a rendered grey PNG "X-ray" image
    /// (`<scan id>.png`, see [`crate::plate_render::render_scan_png`]) and then the metadata
    /// file `<scan id>.xml` that lists it, each written under a `.part` name and renamed.
    DropFolder,
}

impl ScannerDevice {
    /// `feed` or `drop-folder`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Feed => "feed",
            Self::DropFolder => "drop-folder",
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "feed" => Ok(Self::Feed),
            "drop-folder" => Ok(Self::DropFolder),
            other => Err(format!("unknown scanner {other:?}: feed or drop-folder")),
        }
    }
}

/// The post's dimension device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DimensionDevice {
    /// A dimension system that sends computed length/width/height lines (`dims-ascii`).
    #[default]
    DimsAscii,
    /// A SICK LMS-style laser scanner over the lane sending raw profiles (`sick-cola`).
    SickCola,
}

impl DimensionDevice {
    /// `dims-ascii` or `sick-cola`, the agent's `dimensions.protocol`.
    pub fn name(self) -> &'static str {
        match self {
            Self::DimsAscii => "dims-ascii",
            Self::SickCola => "sick-cola",
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "dims-ascii" => Ok(Self::DimsAscii),
            "sick-cola" => Ok(Self::SickCola),
            other => Err(format!(
                "unknown dimension device {other:?}: dims-ascii or sick-cola"
            )),
        }
    }
}

pub use bcp_sim_endpoints::{SimEndpoints, SimLaneScanner};

/// What the simulated post sees.
#[derive(Debug, Clone)]
pub enum Scenario {
    /// Vehicles (or cargo units, vessels) through the lane; `None`: new ones without end.
    Vehicles(Option<Vec<Vehicle>>),
    /// Trains over the rail weighbridge.
    Trains(Vec<SimTrain>),
}

/// How fast vehicles move through the simulated lane.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Time between two indicator frames (real indicators send 7-10 per second).
    pub frame_interval: Duration,
    pub ramp: Duration,
    pub hold: Duration,
    pub leave: Duration,
    pub gap: Duration,
    /// The empty track between two trains (longer than the agent's `[train] quiet_ms`, 10 s by
    /// default).
    pub train_gap: Duration,
    /// Time between two lane-scanner telegrams (`sick-cola` posts). The scanner says 50 Hz; a
    /// shorter interval runs the approach faster than real time (see the module header).
    pub scan_interval: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            frame_interval: Duration::from_millis(100),
            ramp: Duration::from_millis(500),
            hold: Duration::from_millis(1600),
            leave: Duration::from_millis(300),
            gap: Duration::from_millis(900),
            train_gap: Duration::from_secs(12),
            scan_interval: Duration::from_millis(5),
        }
    }
}

/// A started simulator: its devices are open and its endpoints known.
#[derive(Debug)]
pub struct Simulator {
    endpoints: SimEndpoints,
    weighbridge: PluggablePort,
    indicator: AnyProtocol,
    dims: DimsPort,
    presence: Option<SimPort>,
    scanner: TcpListener,
    timing: Timing,
    /// Vehicles cross the weighbridge axle group by axle group.
    axle_scale: bool,
    scanner_faults: ScannerFaults,
    /// The weighbridge indicator's faults, healthy unless a test asks
    /// ([`Simulator::weighbridge_faults`]).
    faults: (watch::Sender<Faults>, watch::Receiver<Faults>),
}

/// The dimension device's end of its port.
#[derive(Debug)]
enum DimsPort {
    Line(SimPort),
    LaneScanner(PluggablePort, LmsLane),
}

impl Simulator {
    /// [`Simulator::start_with`] the default devices (Toledo, `dims-ascii`).
    pub async fn start(dir: &Path, timing: Timing) -> Result<Self> {
        Self::start_with(dir, timing, &PostDevices::default()).await
    }

    /// Opens the devices' ports (the weighbridge at `dir/ttyWEIGHBRIDGE`, a lane scanner at
    /// `dir/ttyLMS`), binds the scanner feed on a free loopback port, creates the camera folder
    /// under `dir`, and writes `dir/endpoints.json`. An unknown indicator protocol is an error
    /// that lists the known ones.
    pub async fn start_with(dir: &Path, timing: Timing, devices: &PostDevices) -> Result<Self> {
        let indicator = AnyProtocol::parse(&devices.indicator, Some(GENERIC_PATTERN))
            .map_err(|e| anyhow::anyhow!("weighbridge indicator: {e}"))?;
        if matches!(indicator, AnyProtocol::DimsAscii) {
            anyhow::bail!("weighbridge indicator: dims-ascii is not a weighing protocol");
        }
        let camera_dir = dir.join("camera");
        std::fs::create_dir_all(&camera_dir)
            .with_context(|| format!("creating {}", camera_dir.display()))?;
        let rear_camera_dir = match devices.rear_camera {
            true => {
                let rear = dir.join("rear-camera");
                std::fs::create_dir_all(&rear)
                    .with_context(|| format!("creating {}", rear.display()))?;
                Some(rear)
            }
            false => None,
        };
        let presence = match devices.presence {
            true => Some(SimPort::open()?),
            false => None,
        };
        let weighbridge = PluggablePort::open(&dir.join("ttyWEIGHBRIDGE"))?;
        let (dims, dims_port, lane_scanner) = match devices.dimensions {
            DimensionDevice::DimsAscii => {
                let port = SimPort::open()?;
                let path = port.path.clone();
                (DimsPort::Line(port), path, None)
            }
            DimensionDevice::SickCola => {
                let port = PluggablePort::open(&dir.join("ttyLMS"))?;
                let path = port.link().display().to_string();
                let lane = LmsLane::default();
                let geometry = SimLaneScanner {
                    mount_height_mm: lane.mount_height_mm,
                    // The simulated scanner's angle 0 points straight down.
                    down_angle: 0,
                    speed_mm_per_s: LANE_SCANNER_SPEED_MM_PER_S,
                };
                (DimsPort::LaneScanner(port, lane), path, Some(geometry))
            }
        };
        let scanner = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the scanner feed")?;
        let scanner_drop_folder = match devices.scanner {
            ScannerDevice::Feed => None,
            ScannerDevice::DropFolder => {
                let folder = dir.join("scanner");
                std::fs::create_dir_all(&folder)
                    .with_context(|| format!("creating {}", folder.display()))?;
                Some(folder)
            }
        };
        let endpoints = SimEndpoints {
            weighbridge_port: weighbridge.link().display().to_string(),
            weighbridge_protocol: indicator.name().to_owned(),
            weighbridge_checksum: matches!(&indicator, AnyProtocol::Toledo(c) if c.checksum),
            weighbridge_pattern: matches!(indicator, AnyProtocol::Generic(_))
                .then(|| GENERIC_PATTERN.to_owned()),
            dims_port,
            dims_protocol: devices.dimensions.name().to_owned(),
            lane_scanner,
            camera_dir,
            rear_camera_dir,
            presence_port: presence.as_ref().map(|p| p.path.clone()),
            scanner_addr: scanner.local_addr()?.to_string(),
            scanner_drop_folder,
            max_axle_gap_ms: devices.axle_scale.then_some(AXLE_SCALE_MAX_GAP_MS),
            empty_lane_frames: devices.empty_lane_frames,
        };
        let file = dir.join("endpoints.json");
        let tmp = dir.join(".endpoints.json.part");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&endpoints)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &file).with_context(|| format!("writing {}", file.display()))?;
        Ok(Self {
            endpoints,
            weighbridge,
            indicator,
            dims,
            presence,
            scanner,
            timing,
            axle_scale: devices.axle_scale,
            scanner_faults: devices.scanner_faults,
            faults: watch::channel(Faults::default()),
        })
    }

    pub fn endpoints(&self) -> &SimEndpoints {
        &self.endpoints
    }

    /// The weighbridge indicator's faults while the scenario runs: a test sends
    /// `Faults { unplugged: true, .. }` to pull its cable mid-run, and the default to put it
    /// back. Healthy until then.
    pub fn weighbridge_faults(&self) -> watch::Sender<Faults> {
        self.faults.0.clone()
    }

    /// Drives `vehicles` through the lane (all of them, or endlessly new ones when `None`), once a
    /// client has connected to the scanner feed (the agent is up), then keeps the devices open
    /// and idle until shutdown.
    pub async fn run(
        self,
        vehicles: Option<Vec<Vehicle>>,
        seed: u64,
        shutdown: watch::Receiver<bool>,
    ) -> Result<()> {
        self.run_scenario(Scenario::Vehicles(vehicles), seed, shutdown)
            .await
    }

    /// Drives `scenario` once a client has connected to the scanner feed, then keeps the
    /// devices open and idle until shutdown.
    pub async fn run_scenario(
        self,
        scenario: Scenario,
        seed: u64,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<()> {
        let Simulator {
            endpoints,
            weighbridge,
            indicator,
            dims,
            presence,
            scanner,
            timing,
            axle_scale,
            scanner_faults,
            faults: (_faults_tx, faults_rx),
        } = self;
        let (bridge_tx, bridge_rx) = watch::channel(BridgeState {
            weight_kg: 0,
            motion: false,
        });
        let (scan_tx, _) = broadcast::channel(64);
        let (clients_tx, mut clients_rx) = watch::channel(0usize);
        // Healthy unless a test sends faults through `weighbridge_faults` (kept alive until
        // the scenario ends by `_faults_tx`).
        let wb = tokio::spawn(indicators::run_indicator(
            weighbridge,
            indicator,
            timing.frame_interval,
            bridge_rx,
            faults_rx,
            shutdown.clone(),
        ));
        let (mut dims, lms_task) = match dims {
            DimsPort::Line(port) => (DimsOut::Line(port), None),
            DimsPort::LaneScanner(port, lane) => {
                let (tx, rx) = mpsc::channel(4);
                let task = tokio::spawn(lms::run_lms_scanner(
                    port,
                    lane,
                    timing.scan_interval,
                    rx,
                    shutdown.clone(),
                ));
                (DimsOut::LaneScanner(tx), Some(task))
            }
        };
        let feed = tokio::spawn(devices::run_scanner_feed(
            scanner,
            scan_tx.clone(),
            clients_tx,
            shutdown.clone(),
        ));

        match &endpoints.scanner_drop_folder {
            None => {
                tracing::info!(scanner = %endpoints.scanner_addr, "waiting for the agent to connect to the scanner feed");
                tokio::select! {
                    r = clients_rx.wait_for(|n| *n > 0) => { r.context("scanner feed stopped")?; }
                    _ = shutdown.changed() => return Ok(()),
                }
            }
            Some(folder) => {
                // The agent's adapter makes `processed/` when it first lists the folder.
                tracing::info!(folder = %folder.display(), "waiting for the agent to watch the scanner drop folder");
                while !folder.join("processed").is_dir() {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = shutdown.changed() => return Ok(()),
                    }
                }
            }
        }
        // The steady camera: what is on the lane, 4 times a second, until shutdown.
        let (scene, steady_camera) = match endpoints.empty_lane_frames {
            true => {
                let (tx, rx) = watch::channel(None);
                let dir = endpoints.camera_dir.clone();
                let task = tokio::spawn(run_steady_camera(dir, rx, shutdown.clone()));
                (Some(tx), Some(task))
            }
            false => (None, None),
        };
        // Give the agent a moment to open its serial ports too.
        tokio::time::sleep(Duration::from_secs(1)).await;

        let mut lane = Lane {
            timing,
            bridge: bridge_tx,
            scans: scan_tx,
            dims: &mut dims,
            presence,
            camera_dir: &endpoints.camera_dir,
            rear_camera_dir: endpoints.rear_camera_dir.as_deref(),
            scan_folder: endpoints.scanner_drop_folder.as_deref(),
            scanner_faults,
            scans_reported: 0,
            frames: 0,
            scene,
        };
        let vehicles = match scenario {
            Scenario::Vehicles(v) => v,
            Scenario::Trains(trains) => {
                let total = trains.len();
                for (i, train) in trains.iter().enumerate() {
                    tracing::info!(n = i + 1, total, wagons = train.wagons.len(), scan = %train.scan_id, "train comes");
                    tokio::select! {
                        r = lane.drive_train(train) => r?,
                        _ = shutdown.changed() => break,
                    }
                }
                Some(Vec::new())
            }
        };
        let finite = vehicles.is_some();
        let mut batch = vehicles.unwrap_or_default();
        let mut round = 0u64;
        'outer: loop {
            if batch.is_empty() {
                if finite {
                    break;
                }
                round += 1;
                batch = scenario::generate(1000, seed.wrapping_add(round));
            }
            if axle_scale {
                batch = scenario::on_axle_scale(batch, seed.wrapping_add(round));
            }
            let total = batch.len();
            for (i, v) in std::mem::take(&mut batch).into_iter().enumerate() {
                if *shutdown.borrow() {
                    break 'outer;
                }
                tracing::info!(n = i + 1, total, plate = %v.plate_display, gross_kg = v.gross_kg, scan = %v.scan_id, "vehicle drives on");
                tokio::select! {
                    r = lane.drive(&v) => r?,
                    _ = shutdown.changed() => break 'outer,
                }
            }
        }
        tracing::info!("scenario done; devices stay open until shutdown");
        let _ = shutdown.wait_for(|s| *s).await;
        wb.abort();
        feed.abort();
        if let Some(t) = lms_task {
            t.abort();
        }
        if let Some(t) = steady_camera {
            t.abort();
        }
        Ok(())
    }
}

/// Where the lane sends a vehicle's dimensions.
enum DimsOut {
    /// One `dims-ascii` line while the vehicle stands on the bridge.
    Line(SimPort),
    /// The vehicle to the lane scanner as it drives on.
    LaneScanner(mpsc::Sender<LmsVehicle>),
}

struct Lane<'a> {
    timing: Timing,
    bridge: watch::Sender<BridgeState>,
    scans: broadcast::Sender<ScanEvent>,
    dims: &'a mut DimsOut,
    presence: Option<SimPort>,
    camera_dir: &'a Path,
    rear_camera_dir: Option<&'a Path>,
    scan_folder: Option<&'a Path>,
    scanner_faults: ScannerFaults,
    scans_reported: u32,
    frames: u64,
    /// What the steady camera shows, when the post has one.
    scene: Option<watch::Sender<Option<SceneVehicle>>>,
}

/// A vehicle in the steady camera's picture.
#[derive(Debug, Clone)]
struct SceneVehicle {
    plate_display: String,
    /// An air cargo unit (its ULD id on a placard) rather than a vehicle with a plate.
    cargo_unit: bool,
}

/// The steady camera ([`PostDevices::empty_lane_frames`]): every
/// [`EMPTY_LANE_FRAME_INTERVAL`], a frame of what `scene` shows into `dir`, each one varied
/// (the empty lane's noise, the vehicle's position), until shutdown. A frame that cannot be
/// rendered or written is logged and the camera goes on.
async fn run_steady_camera(
    dir: PathBuf,
    scene: watch::Receiver<Option<SceneVehicle>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(EMPTY_LANE_FRAME_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        n += 1;
        let shown = scene.borrow().clone();
        let render = tokio::task::spawn_blocking(move || match shown {
            None => plate_render::render_empty_lane_frame(n),
            Some(v) if v.cargo_unit => plate_render::render_cargo_unit_frame(&v.plate_display, n),
            Some(v) => plate_render::render_vehicle_frame(&v.plate_display, n),
        })
        .await;
        // Its own sequence numbers, apart from the plate frames' (names sort by time first).
        let written = match render {
            Ok(Ok(jpeg)) => {
                devices::write_camera_frame(&dir, "cam1", 500_000 + n, &jpeg).map(|_| ())
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::anyhow!("rendering a frame: {e}")),
        };
        if let Err(e) = written {
            tracing::warn!(error = %format!("{e:#}"), "steady camera: frame not dropped");
        }
    }
}

impl Lane<'_> {
    /// Reports a scan: on the feed, or as an image and an XML file in the drop folder; late
    /// and with a bad file beside it as [`ScannerFaults`] say.
    fn send_scan(&mut self, scan: ScanEvent) -> Result<()> {
        self.scans_reported += 1;
        let every = self.scanner_faults.bad_file_every;
        let bad = (every > 0 && self.scans_reported.is_multiple_of(every)).then(|| {
            let i = (self.scans_reported / every - 1) as usize % BadScanFile::ALL.len();
            BadScanFile::ALL[i]
        });
        let folder = self.scan_folder.map(Path::to_path_buf);
        let scans = self.scans.clone();
        let report = move || report_scan(folder.as_deref(), &scans, &scan, bad);
        match self.scanner_faults.late {
            None => report(),
            Some(late) => {
                tokio::spawn(async move {
                    tokio::time::sleep(late).await;
                    if let Err(e) = report() {
                        tracing::warn!(error = %format!("{e:#}"), "a late scan report failed");
                    }
                });
                Ok(())
            }
        }
    }

    async fn drive_train(&mut self, train: &SimTrain) -> Result<()> {
        let t = self.timing;
        for w in &train.wagons {
            let mut texts = vec![w.number_display.clone()];
            texts.extend(w.containers.iter().map(|(display, _)| display.clone()));
            self.weigh(w.gross_kg, &texts, None).await?;
            // Couplers: the weight is back under the empty threshold between two wagons.
            tokio::time::sleep(t.gap / 3).await;
        }
        let scan = scan_made_now(&train.scanner_id, &train.scan_id, "T1", train.decision);
        self.send_scan(scan)?;
        tokio::time::sleep(t.train_gap).await;
        Ok(())
    }

    /// One load over the weighbridge: ramp up, settle, a frame per text (each rendered twice
    /// when it is the only one), the scan if any, ramp down.
    async fn weigh(
        &mut self,
        gross_kg: u32,
        texts: &[String],
        scan: Option<ScanEvent>,
    ) -> Result<()> {
        let t = self.timing;
        let steps = 5u32;
        for k in 1..steps {
            let w = gross_kg * k / steps / DIVISION_KG * DIVISION_KG;
            self.bridge.send_replace(BridgeState {
                weight_kg: w,
                motion: true,
            });
            tokio::time::sleep(t.ramp / steps).await;
        }
        let hold_start = tokio::time::Instant::now();
        self.bridge.send_replace(BridgeState {
            weight_kg: gross_kg + DIVISION_KG,
            motion: true,
        });
        tokio::time::sleep(t.hold / 10).await;
        self.bridge.send_replace(BridgeState {
            weight_kg: gross_kg,
            motion: false,
        });
        let frames: Vec<&String> = if texts.len() == 1 {
            vec![&texts[0], &texts[0]]
        } else {
            texts.iter().collect()
        };
        let pause = t.hold / (2 * frames.len().max(1) as u32);
        for text in frames {
            let jpeg = plate_render::render_vehicle_frame(text, self.frames.wrapping_mul(7))?;
            self.frames += 1;
            devices::write_camera_frame(self.camera_dir, "cam1", self.frames, &jpeg)?;
            tokio::time::sleep(pause).await;
        }
        if let Some(scan) = scan {
            self.send_scan(scan)?;
        }
        tokio::time::sleep_until(hold_start + t.hold).await;
        for k in (0..3u32).rev() {
            let w = gross_kg * k / 3 / DIVISION_KG * DIVISION_KG;
            self.bridge.send_replace(BridgeState {
                weight_kg: w,
                motion: k > 0,
            });
            tokio::time::sleep(t.leave / 3).await;
        }
        Ok(())
    }

    /// On a post with a lane scanner: the vehicle drives under its scan line on its way onto
    /// the bridge.
    async fn under_lane_scanner(&self, d: bcp_record::Dimensions) -> Result<()> {
        if let DimsOut::LaneScanner(scanner) = &self.dims {
            let vehicle = LmsVehicle {
                length_mm: f64::from(d.length_mm),
                width_mm: f64::from(d.width_mm),
                height_mm: f64::from(d.height_mm),
                speed_mm_per_s: LANE_SCANNER_SPEED_MM_PER_S,
            };
            if scanner.send(vehicle).await.is_err() {
                anyhow::bail!("the lane scanner stopped");
            }
        }
        Ok(())
    }

    /// A vehicle drawn across an axle scale, group by group (see the module header).
    async fn drive_on_axles(&mut self, v: &Vehicle) -> Result<()> {
        let t = self.timing;
        let d = v.dimensions;
        self.under_lane_scanner(d).await?;
        let last = v.axles_kg.len().saturating_sub(1);
        for (i, kg) in v.axles_kg.iter().enumerate() {
            // The cab's group carries the plate to the camera.
            let texts = if i == 0 {
                vec![v.plate_display.clone()]
            } else {
                Vec::new()
            };
            let scan =
                (i == last).then(|| scan_made_now(&v.scanner_id, &v.scan_id, "L1", v.decision));
            self.weigh(*kg, &texts, scan).await?;
            if let (0, DimsOut::Line(port)) = (i, &mut self.dims) {
                devices::send_dimensions(
                    port,
                    &DimensionFrame {
                        seq: (self.frames & 0xffff) as u32,
                        length_mm: d.length_mm,
                        width_mm: d.width_mm,
                        height_mm: d.height_mm,
                    },
                )
                .await?;
            }
            if i < last {
                tokio::time::sleep(t.gap / 3).await;
            }
        }
        tokio::time::sleep(t.gap + Duration::from_millis(AXLE_SCALE_MAX_GAP_MS)).await;
        Ok(())
    }

    async fn drive(&mut self, v: &Vehicle) -> Result<()> {
        if !v.axles_kg.is_empty() {
            return self.drive_on_axles(v).await;
        }
        let t = self.timing;
        let d = v.dimensions;
        self.under_lane_scanner(d).await?;
        self.show(Some(v));
        self.sense(SensorEnd::Entry, true).await?;
        let steps = 5u32;
        for k in 1..steps {
            let w = v.gross_kg * k / steps / DIVISION_KG * DIVISION_KG;
            self.bridge.send_replace(BridgeState {
                weight_kg: w,
                motion: true,
            });
            tokio::time::sleep(t.ramp / steps).await;
        }
        // The indicator settles: one division above, still in motion, then steady.
        let hold_start = tokio::time::Instant::now();
        self.bridge.send_replace(BridgeState {
            weight_kg: v.gross_kg + DIVISION_KG,
            motion: true,
        });
        tokio::time::sleep(t.hold / 10).await;
        self.bridge.send_replace(BridgeState {
            weight_kg: v.gross_kg,
            motion: false,
        });
        if let DimsOut::Line(port) = &mut self.dims {
            devices::send_dimensions(
                port,
                &DimensionFrame {
                    seq: (self.frames & 0xffff) as u32,
                    length_mm: d.length_mm,
                    width_mm: d.width_mm,
                    height_mm: d.height_mm,
                },
            )
            .await?;
        }
        for variant in 0..2u64 {
            let variant = self.frames.wrapping_mul(7).wrapping_add(variant);
            // An air cargo unit shows its ULD id on a placard, not a number plate.
            let jpeg = if v.country == conveyances::ULD_SCHEME {
                plate_render::render_cargo_unit_frame(&v.plate_display, variant)?
            } else {
                plate_render::render_vehicle_frame(&v.plate_display, variant)?
            };
            self.frames += 1;
            devices::write_camera_frame(self.camera_dir, "cam1", self.frames, &jpeg)?;
            if let Some(rear) = self.rear_camera_dir {
                // The trailer's plate, or the truck's own on its back.
                let plate = v
                    .trailer_plate_display
                    .as_deref()
                    .unwrap_or(&v.plate_display);
                let jpeg = plate_render::render_vehicle_frame(
                    plate,
                    self.frames.wrapping_mul(11).wrapping_add(variant),
                )?;
                devices::write_camera_frame(rear, "cam2", self.frames, &jpeg)?;
            }
            tokio::time::sleep(t.hold / 5).await;
        }
        if !v.reverses {
            let scan = scan_made_now(&v.scanner_id, &v.scan_id, "L1", v.decision);
            self.send_scan(scan)?;
        }
        tokio::time::sleep_until(hold_start + t.hold).await;
        if !v.reverses {
            // Its front reaches the exit half, its back leaves the entry half.
            self.sense(SensorEnd::Exit, true).await?;
            self.sense(SensorEnd::Entry, false).await?;
        }

        for k in (0..3u32).rev() {
            let w = v.gross_kg * k / 3 / DIVISION_KG * DIVISION_KG;
            self.bridge.send_replace(BridgeState {
                weight_kg: w,
                motion: k > 0,
            });
            tokio::time::sleep(t.leave / 3).await;
        }
        self.show(None);
        // Off the bridge: by the exit, or backed off by the entry.
        let last = if v.reverses {
            SensorEnd::Entry
        } else {
            SensorEnd::Exit
        };
        self.sense(last, false).await?;
        tokio::time::sleep(t.gap).await;
        Ok(())
    }

    /// What the steady camera shows from now on, when the post has one.
    fn show(&self, vehicle: Option<&Vehicle>) {
        if let Some(scene) = &self.scene {
            scene.send_replace(vehicle.map(|v| SceneVehicle {
                plate_display: v.plate_display.clone(),
                cargo_unit: v.country == conveyances::ULD_SCHEME,
            }));
        }
    }

    /// A presence sensor's new state, when the post has them.
    async fn sense(&mut self, sensor: SensorEnd, occupied: bool) -> Result<()> {
        match &mut self.presence {
            Some(port) => devices::send_presence(port, sensor, occupied).await,
            None => Ok(()),
        }
    }
}

/// A scan on the feed, or its image and metadata in the drop `folder` (then `bad` too, a file
/// the agent must quarantine).
fn report_scan(
    folder: Option<&Path>,
    scans: &broadcast::Sender<ScanEvent>,
    scan: &ScanEvent,
    bad: Option<BadScanFile>,
) -> Result<()> {
    let Some(folder) = folder else {
        if scans.send(scan.clone()).is_err() {
            tracing::warn!(scan = %scan.scan_id, "no scanner feed client: scan event not delivered");
        }
        return Ok(());
    };
    for name in &scan.images {
        let png = plate_render::render_scan_png(&scan.scan_id)?;
        write_complete(folder, name, &png)?;
    }
    let xml = scan_xml(scan);
    write_complete(folder, &format!("{}.xml", scan.scan_id), xml.as_bytes())?;
    if let Some(bad) = bad {
        tracing::info!(scan = %scan.scan_id, ?bad, "scanner drops a bad file too");
        write_complete(
            folder,
            &bad.file_name(&scan.scan_id),
            bad.content(scan, &xml).as_bytes(),
        )?;
    }
    Ok(())
}

/// A scan made now on `lane`, its one image named after it (`<scan id>.png`).
fn scan_made_now(
    scanner_id: &str,
    scan_id: &str,
    lane: &str,
    decision: bcp_record::ScanDecision,
) -> ScanEvent {
    ScanEvent {
        scanner_id: scanner_id.to_owned(),
        scan_id: scan_id.to_owned(),
        scanned_at: chrono::Utc::now(),
        lane: Some(lane.to_owned()),
        decision,
        images: vec![format!("{scan_id}.png")],
        conveyance_id: None,
        decision_by: None,
    }
}

/// Writes `name` in `folder` as a scanner should: under a `.part` name, then renamed.
fn write_complete(folder: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let part = folder.join(format!(".{name}.part"));
    let path = folder.join(name);
    std::fs::write(&part, bytes).with_context(|| format!("writing {}", part.display()))?;
    std::fs::rename(&part, &path).with_context(|| format!("renaming to {}", path.display()))
}

/// The drop folder's metadata file for `scan` (the layout `bcp_agent::scanner::drop_folder`
/// reads). Ids and names come from the scenario: letters, digits, '-', '_' and '.'.
fn scan_xml(scan: &ScanEvent) -> String {
    let decision = match scan.decision {
        bcp_record::ScanDecision::Alarm => "ALARM",
        bcp_record::ScanDecision::NoAlarm => "NO_ALARM",
        bcp_record::ScanDecision::Unknown => "UNKNOWN",
    };
    let images: String = scan
        .images
        .iter()
        .map(|i| format!("<Image>{i}</Image>"))
        .collect();
    let lane = scan
        .lane
        .as_deref()
        .map(|l| format!("<Lane>{l}</Lane>"))
        .unwrap_or_default();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ScanResult><ScanId>{}</ScanId><ScannerId>{}</ScannerId>{lane}<ScanTime>{}</ScanTime><Decision type=\"MACHINE\">{decision}</Decision><Images>{images}</Images></ScanResult>\n",
        scan.scan_id,
        scan.scanner_id,
        scan.scanned_at.to_rfc3339(),
    )
}
