//! The agent's configuration: one TOML file (`/etc/bcp/agent.toml` by default).
//!
//! Units are in the key names (`_ms`, `_kg`), defaults are `const fn`s, and [`AgentConfig::validate`]
//! names the offending key. Unknown keys are refused, so a typo is an error, not a silent default.

use anyhow::{bail, Context, Result};
use bcp_drivers::indicator::AnyProtocol;
use bcp_drivers::serial::SerialPortConfig;
use bcp_drivers::sick_cola::{DimensionTrackerConfig, LaneGeometry};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/etc/bcp/agent.toml";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub post: PostConfig,
    pub weighbridge: WeighbridgeConfig,
    pub dimensions: Option<DimensionSensorConfig>,
    /// Presence sensors at the bridge's two ends (light curtains or loops, over serial): they
    /// frame each vehicle and tell the end it left by (see `bcp_agent::lane`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<PresenceSensorConfig>,
    pub camera: CameraConfig,
    /// A second camera looking at the rear of what is on the bridge (a road post's option):
    /// its reads are a trailer's plate (see `bcp_agent::lane`), never a second vehicle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rear_camera: Option<CameraConfig>,
    pub scanner: Option<ScannerConfig>,
    #[serde(default)]
    pub anpr: AnprSettings,
    #[serde(default)]
    pub lane: LaneSettings,
    /// The images recorded with each crossing: plate crop, overview, scan thumbnails.
    #[serde(default, skip_serializing_if = "EvidenceSettings::is_default")]
    pub evidence: EvidenceSettings,
    /// The train correlator's windows; only on a rail post (`post.transport_mode = "rail"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<TrainSettings>,
    /// Legal limits and the hotlist, checked on every crossing at the edge.
    #[serde(default)]
    pub limits: crate::checks::Limits,
    pub outbox: OutboxConfig,
    pub sync: SyncConfig,
    /// The local control API that `bcpctl status`, `devices`, `lanes`, `events tail` and
    /// `sync now` use.
    #[serde(default)]
    pub control: ControlConfig,
    /// The Prometheus text endpoint on localhost.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// What the agent logs; reloaded on SIGHUP.
    #[serde(default, skip_serializing_if = "LogSettings::is_default")]
    pub log: LogSettings,
}

/// `[log]`: the agent's log filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// A tracing filter: `info`, `debug`, `warn,bcp_agent=debug`, ... Default: `RUST_LOG`, else
    /// `info`. Applied again on every reload (SIGHUP), so a technician can turn on `debug` for
    /// a while without restarting the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
}

impl LogSettings {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }

    /// The filter must parse; the error names the key.
    pub fn validate(&self) -> Result<()> {
        if let Some(level) = &self.level {
            if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(level) {
                bail!("log.level = {level:?}: {e}; use a level (error, warn, info, debug, trace) or a filter such as \"info,bcp_agent=debug\"");
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostConfig {
    /// The post's code, used in topics and records (letters, digits, `-`, `_`).
    pub id: String,
    /// The lane (or track, stand, berth) this appliance serves.
    pub lane: String,
    /// The post's profile: `road` (default), `rail`, `air` or `river` (see
    /// `bcp_agent::profile`); every record carries its UN/ECE Rec. 19 transport-mode code.
    #[serde(default)]
    pub transport_mode: crate::profile::PostProfile,
    /// The post's customs office, as NCTS names it ("customs office at border reference": two
    /// letters of the country, six more letters or digits, `TJ000123`); every record carries it
    /// when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customs_office: Option<String>,
}

/// The train correlator's windows (the `[train]` section of a rail post; see
/// `bcp_agent::train` for the rules they tune).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSettings {
    /// The train is closed and recorded this long after its last wagon left the weigh rail.
    #[serde(default = "default_train_quiet_ms")]
    pub quiet_ms: u64,
    /// The wagon-number reader sees a point of the train this long after the weighbridge does;
    /// negative when the reader stands before the weigh rail.
    #[serde(default)]
    pub reader_offset_ms: i64,
    /// A read at most this far outside a wagon's time on the rail still joins that wagon.
    #[serde(default = "default_read_margin_ms")]
    pub read_margin_ms: u64,
    /// With a `[scanner]`: how long after its close a train without a scan is held for the
    /// scanner workstation's verdict. A verdict later than this is recorded apart, naming the
    /// train (`scan_after_close`). 0: never hold. Ignored without a `[scanner]`.
    #[serde(default = "default_scan_wait_ms")]
    pub scan_wait_ms: u64,
    /// The weigh rail empty this long between two wagons: the train stood there (wagons may
    /// have been uncoupled), flagged `train_stood`. Only a stand shorter than `quiet_ms` keeps
    /// the train one record.
    #[serde(default = "default_train_stop_ms")]
    pub stop_ms: u64,
    /// A wagon on the weigh rail this long was left standing there: the train is closed
    /// without it leaving, flagged `wagon_left_on_rail`.
    #[serde(default = "default_train_standing_ms")]
    pub standing_ms: u64,
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self {
            quiet_ms: default_train_quiet_ms(),
            reader_offset_ms: 0,
            read_margin_ms: default_read_margin_ms(),
            scan_wait_ms: default_scan_wait_ms(),
            stop_ms: default_train_stop_ms(),
            standing_ms: default_train_standing_ms(),
        }
    }
}

impl TrainSettings {
    /// The correlator's rules; `scanner` says whether the post has a scanner.
    pub fn rules(&self, scanner: bool) -> crate::train::TrainRules {
        let max = LaneSettings::MAX_WINDOW_MS as i64;
        let ms = |v: i64| chrono::TimeDelta::milliseconds(v.clamp(-max, max));
        crate::train::TrainRules {
            quiet: ms(self.quiet_ms.min(LaneSettings::MAX_WINDOW_MS) as i64),
            reader_offset: ms(self.reader_offset_ms),
            read_margin: ms(self.read_margin_ms.min(LaneSettings::MAX_WINDOW_MS) as i64),
            expect_scan: scanner,
            scan_wait: if scanner {
                ms(self.scan_wait_ms.min(LaneSettings::MAX_WINDOW_MS) as i64)
            } else {
                chrono::TimeDelta::zero()
            },
            stop: ms(self.stop_ms.min(LaneSettings::MAX_WINDOW_MS) as i64),
            standing: ms(self.standing_ms.min(LaneSettings::MAX_WINDOW_MS) as i64),
        }
    }

    /// Checks the windows; the error names the key.
    pub fn validate(&self) -> Result<()> {
        if self.quiet_ms == 0 || self.quiet_ms > LaneSettings::MAX_WINDOW_MS {
            bail!(
                "train.quiet_ms = {}: use 1 ..= {} (the gap after the last wagon that ends a train; longer than any stop between two wagons)",
                self.quiet_ms,
                LaneSettings::MAX_WINDOW_MS
            );
        }
        if self.reader_offset_ms.unsigned_abs() > 600_000 {
            bail!(
                "train.reader_offset_ms = {}: at most ±600000 (ten minutes between weighbridge and reader)",
                self.reader_offset_ms
            );
        }
        if self.read_margin_ms > 60_000 {
            bail!(
                "train.read_margin_ms = {}: at most 60000; a wider margin gives reads to the wrong wagon",
                self.read_margin_ms
            );
        }
        if self.scan_wait_ms > LaneSettings::MAX_WINDOW_MS {
            bail!(
                "train.scan_wait_ms = {}: at most {} (one hour); trains held longer are at risk in a power cut",
                self.scan_wait_ms,
                LaneSettings::MAX_WINDOW_MS
            );
        }
        if self.stop_ms == 0 || self.stop_ms > LaneSettings::MAX_WINDOW_MS {
            bail!(
                "train.stop_ms = {}: use 1 ..= {} (longer than the rail is empty between two coupled wagons)",
                self.stop_ms,
                LaneSettings::MAX_WINDOW_MS
            );
        }
        if self.standing_ms < self.quiet_ms || self.standing_ms > LaneSettings::MAX_WINDOW_MS {
            bail!(
                "train.standing_ms = {}: use train.quiet_ms ({}) ..= {} (how long a wagon stands on the weigh rail before it is taken as left there)",
                self.standing_ms,
                self.quiet_ms,
                LaneSettings::MAX_WINDOW_MS
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeighbridgeConfig {
    pub name: String,
    #[serde(flatten)]
    pub port: SerialPortConfig,
    /// The indicator's protocol: `toledo-continuous`, `xk3190`, `xk3190-f1`, `xk3190-f2`,
    /// `xk3190-a9`, `mt-sics`, `sma`, `rlws`, `cardinal`, `avery`, `a12e` or `generic`.
    pub protocol: String,
    /// `toledo-continuous` only: whether the indicator appends the checksum byte.
    #[serde(default = "yes")]
    pub checksum: bool,
    /// `generic` only: a regex with named groups (see `bcp_drivers::generic`).
    pub pattern: Option<String>,
    /// N consecutive readings within `stable_band_divisions` scale divisions over at least
    /// `stable_min_ms` make a stable weight.
    #[serde(default = "default_stable_readings")]
    pub stable_readings: usize,
    #[serde(default = "default_band")]
    pub stable_band_divisions: f64,
    #[serde(default = "default_stable_ms")]
    pub stable_min_ms: u64,
    /// Above this, a vehicle is on the bridge; below `empty_threshold_kg` it has left.
    #[serde(default = "default_occupied_kg")]
    pub occupied_threshold_kg: f64,
    #[serde(default = "default_empty_kg")]
    pub empty_threshold_kg: f64,
    /// The indicator weighs a short axle scale: each axle group comes on, settles and leaves on
    /// its own, and the vehicle's weight is their sum (see [`crate::axle_scale`]). Road posts
    /// only.
    #[serde(default, skip_serializing_if = "is_false")]
    pub axle_scale: bool,
    /// With `axle_scale`: the vehicle has left once the scale stays empty this long after an
    /// axle group left (the next group of the same vehicle comes sooner).
    #[serde(default = "default_max_axle_gap_ms")]
    pub max_axle_gap_ms: u64,
}

fn is_false(b: &bool) -> bool {
    !*b
}
const fn default_max_axle_gap_ms() -> u64 {
    3000
}

/// The dimension device: a system that sends computed dimensions (`dims-ascii`), or a laser
/// scanner over the lane that sends raw profiles (`sick-cola`, SICK LMS/TiM CoLa A
/// `LMDscandata`), from which the agent computes them.
///
/// For `sick-cola` the keys below describe the scan line as `bcp_drivers::sick_cola` documents
/// it: the scanner hangs `mount_height_mm` above the road, its scan plane vertical and across
/// the lane, its angle `down_angle` (1/10000 deg) pointing straight down; points at least
/// `min_object_height_mm` above the road are the vehicle (width = their spread across the lane,
/// height = the highest); length = speed x the vehicle's scans / the scan frequency. The speed
/// source is fixed (`speed_mm_per_s`: where vehicles are drawn under the scanner at a set
/// pace); a second scan line or a radar is not wired in yet. `dims-ascii` takes none of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DimensionSensorConfig {
    pub name: String,
    #[serde(flatten)]
    pub port: SerialPortConfig,
    /// `dims-ascii` or `sick-cola`.
    pub protocol: String,
    /// `sick-cola` (required): the scanner's height above the road, mm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_height_mm: Option<f64>,
    /// `sick-cola`: the scanner angle pointing straight down, 1/10000 deg (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_angle: Option<i32>,
    /// `sick-cola`: lower points are road, mm (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_object_height_mm: Option<f64>,
    /// `sick-cola` (required): the vehicles' speed under the scanner, mm/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_mm_per_s: Option<f64>,
    /// `sick-cola`: empty scans after which a vehicle has left (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_gap_scans: Option<u32>,
}

/// `[presence]`: the presence sensors at the bridge's entry and exit ends, behind one serial
/// port (see `bcp_drivers::presence_ascii` for the line format and the geometry). While their
/// port is connected they frame the vehicles (on, and off by an end: a vehicle that leaves by
/// the entry reversed off, and makes no record); the weighbridge then only weighs. While it is
/// not, the weighbridge frames them as on a lane without presence sensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceSensorConfig {
    pub name: String,
    #[serde(flatten)]
    pub port: SerialPortConfig,
    /// `presence-ascii` (the only one so far).
    #[serde(default = "default_presence_protocol")]
    pub protocol: String,
}

fn default_presence_protocol() -> String {
    "presence-ascii".to_owned()
}

impl PresenceSensorConfig {
    /// The port and the protocol must be usable; the error names the key.
    pub fn validate(&self) -> Result<()> {
        if self.protocol != "presence-ascii" {
            bail!(
                "presence.protocol = {:?}: supported: \"presence-ascii\"",
                self.protocol
            );
        }
        if let Err((key, reason)) = self.port.validate() {
            bail!("presence.{key}: {reason}");
        }
        Ok(())
    }
}

/// `dimensions.min_object_height_mm` when not set.
pub const DEFAULT_MIN_OBJECT_HEIGHT_MM: f64 = 300.0;
/// `dimensions.min_gap_scans` when not set.
pub const DEFAULT_MIN_GAP_SCANS: u32 = 3;

impl DimensionSensorConfig {
    /// A `dims-ascii` sensor on `port`.
    pub fn dims_ascii(name: &str, port: SerialPortConfig) -> Self {
        Self {
            name: name.to_owned(),
            port,
            protocol: "dims-ascii".to_owned(),
            mount_height_mm: None,
            down_angle: None,
            min_object_height_mm: None,
            speed_mm_per_s: None,
            min_gap_scans: None,
        }
    }

    /// For `sick-cola`, the lane scanner's tracker tuning; `None` for `dims-ascii`. The error
    /// names the key.
    pub fn lane_scanner(&self) -> Result<Option<DimensionTrackerConfig>> {
        let scanner_keys = [
            ("mount_height_mm", self.mount_height_mm.is_some()),
            ("down_angle", self.down_angle.is_some()),
            ("min_object_height_mm", self.min_object_height_mm.is_some()),
            ("speed_mm_per_s", self.speed_mm_per_s.is_some()),
            ("min_gap_scans", self.min_gap_scans.is_some()),
        ];
        match self.protocol.as_str() {
            "dims-ascii" => {
                if let Some((key, _)) = scanner_keys.iter().find(|(_, set)| *set) {
                    bail!("dimensions.{key}: only for protocol \"sick-cola\" (a lane scanner)");
                }
                Ok(None)
            }
            "sick-cola" => {
                let height = self.mount_height_mm.context(
                    "dimensions.mount_height_mm: required for sick-cola (the scanner's height above the road, mm)",
                )?;
                if !(height.is_finite() && height > 0.0) {
                    bail!("dimensions.mount_height_mm = {height}: must be > 0");
                }
                let min_object = self
                    .min_object_height_mm
                    .unwrap_or(DEFAULT_MIN_OBJECT_HEIGHT_MM);
                if !(min_object.is_finite() && min_object > 0.0 && min_object < height) {
                    bail!(
                        "dimensions.min_object_height_mm = {min_object}: must be > 0 and below mount_height_mm ({height})"
                    );
                }
                let speed = self.speed_mm_per_s.context(
                    "dimensions.speed_mm_per_s: required for sick-cola (the vehicles' speed under the scanner, mm/s)",
                )?;
                if !(speed.is_finite() && speed > 0.0) {
                    bail!("dimensions.speed_mm_per_s = {speed}: must be > 0");
                }
                let down_angle = self.down_angle.unwrap_or(0);
                if down_angle.unsigned_abs() > 1_800_000 {
                    bail!("dimensions.down_angle = {down_angle}: 1/10000 deg, within +-1800000");
                }
                let min_gap_scans = self.min_gap_scans.unwrap_or(DEFAULT_MIN_GAP_SCANS);
                if min_gap_scans == 0 {
                    bail!("dimensions.min_gap_scans = 0: use at least 1");
                }
                Ok(Some(DimensionTrackerConfig {
                    geometry: LaneGeometry {
                        mount_height_mm: height,
                        down_angle,
                        min_object_height_mm: min_object,
                    },
                    speed_mm_per_s: speed,
                    min_gap_scans,
                }))
            }
            other => {
                bail!("dimensions.protocol = {other:?}: supported: \"dims-ascii\", \"sick-cola\"")
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    pub name: String,
    /// A folder where the camera uploads JPEG frames (FTP push). Frames are read, then removed;
    /// unreadable ones are moved to `rejected/` beside them. Exactly one of `folder` and
    /// `stream` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<PathBuf>,
    /// Or: a stream the camera's vision worker pulls frames from (`bcp_anpr::capture`, OpenCV with FFmpeg): an
    /// `rtsp://` URL, an `http://` MJPEG URL, or a video file. Bounded open and read timeouts,
    /// reconnect with backoff; when recognition falls behind, the oldest frames are dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// How often the folder is listed; for a stream, the longest wait for a frame before the
    /// camera thread looks at its stop signal again.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// `"motion"`: the camera frames the vehicles by what moves in its picture (see
    /// [`crate::camera_presence`]) and the weighbridge only weighs. Unset: the camera only reads
    /// plates. Front camera only, on a road, air or river post without `[presence]` sensors or
    /// an axle scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<String>,
    /// With `presence = "motion"`: while the lane is empty, a frame moves when more than this
    /// fraction of its pixels changed since the previous frame (0 < x <= 1).
    #[serde(default = "default_motion_on_fraction")]
    pub motion_on_fraction: f64,
    /// This many moving frames in a row bring a vehicle on (1 ..= 100; 1 lets a single
    /// flicker frame a vehicle).
    #[serde(default = "default_motion_on_frames")]
    pub motion_on_frames: u32,
    /// While a vehicle is on, a frame moves unless fewer than this fraction of its pixels
    /// changed (0 < x <= motion_on_fraction).
    #[serde(default = "default_motion_off_fraction")]
    pub motion_off_fraction: f64,
    /// The vehicle has left when no frame moved for this long: longer than the longest stop on
    /// the bridge (weighing), shorter than the gap between two vehicles (100 ..= 600000).
    #[serde(default = "default_motion_quiet_ms")]
    pub motion_quiet_ms: u64,
}

const fn default_motion_on_fraction() -> f64 {
    0.05
}
const fn default_motion_on_frames() -> u32 {
    2
}
const fn default_motion_off_fraction() -> f64 {
    0.02
}
const fn default_motion_quiet_ms() -> u64 {
    3000
}

/// `[camera] presence`: what frames the vehicles when the camera does.
pub const CAMERA_PRESENCE_MOTION: &str = "motion";

/// Where a camera's frames come from (see [`CameraConfig`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraSource {
    Folder(PathBuf),
    Stream(String),
}

impl CameraConfig {
    /// A camera that uploads into `folder`.
    pub fn folder(name: &str, folder: PathBuf) -> Self {
        Self {
            name: name.to_owned(),
            folder: Some(folder),
            stream: None,
            poll_ms: default_poll_ms(),
            presence: None,
            motion_on_fraction: default_motion_on_fraction(),
            motion_on_frames: default_motion_on_frames(),
            motion_off_fraction: default_motion_off_fraction(),
            motion_quiet_ms: default_motion_quiet_ms(),
        }
    }

    /// Whether this camera frames the vehicles by motion (`presence = "motion"`).
    pub fn frames_by_motion(&self) -> bool {
        self.presence.as_deref() == Some(CAMERA_PRESENCE_MOTION)
    }

    /// The camera presence rules of the `motion_*` keys.
    pub fn motion_rules(&self) -> crate::camera_presence::CameraPresenceRules {
        crate::camera_presence::CameraPresenceRules {
            on_fraction: self.motion_on_fraction,
            on_frames: self.motion_on_frames,
            off_fraction: self.motion_off_fraction,
            quiet: chrono::TimeDelta::milliseconds(
                i64::try_from(self.motion_quiet_ms).unwrap_or(i64::MAX),
            ),
        }
    }

    /// Checks `presence` and the `motion_*` keys of the camera in `section`.
    fn validate_presence_in(&self, section: &str) -> Result<()> {
        if let Some(p) = &self.presence {
            if p != CAMERA_PRESENCE_MOTION {
                bail!("{section}.presence = {p:?}: supported: \"motion\" (or leave it unset: the camera only reads plates)");
            }
        }
        let on = self.motion_on_fraction;
        if !(on.is_finite() && on > 0.0 && on <= 1.0) {
            bail!("{section}.motion_on_fraction = {on}: use a fraction above 0 and at most 1 (default 0.05)");
        }
        let off = self.motion_off_fraction;
        if !(off.is_finite() && off > 0.0 && off <= on) {
            bail!("{section}.motion_off_fraction = {off}: use a fraction above 0 and at most {section}.motion_on_fraction ({on})");
        }
        if !(1..=100).contains(&self.motion_on_frames) {
            bail!(
                "{section}.motion_on_frames = {}: use 1 ..= 100 (default 2)",
                self.motion_on_frames
            );
        }
        if !(100..=600_000).contains(&self.motion_quiet_ms) {
            bail!(
                "{section}.motion_quiet_ms = {}: use 100 ..= 600000 (longer than a vehicle's stop on the bridge, shorter than the gap between two vehicles)",
                self.motion_quiet_ms
            );
        }
        Ok(())
    }

    /// The `[camera]` section's source; an error names the keys when not exactly one is set.
    pub fn source(&self) -> Result<CameraSource> {
        self.source_in("camera")
    }

    /// The source of the camera configured in `section` (`camera`, `rear_camera`).
    pub fn source_in(&self, section: &str) -> Result<CameraSource> {
        match (&self.folder, &self.stream) {
            (Some(_), Some(_)) => {
                bail!("{section}.folder and {section}.stream are both set: use one of them")
            }
            (None, None) => bail!(
                "{section}: set {section}.folder (the folder the camera uploads JPEG frames to) or {section}.stream (an rtsp:// or http:// MJPEG URL, or a video file)"
            ),
            (Some(f), None) if f.as_os_str().is_empty() => {
                bail!("{section}.folder is empty: give the folder's path")
            }
            (None, Some(s)) if s.trim().is_empty() => {
                bail!("{section}.stream is empty: give the camera's rtsp:// or http:// URL")
            }
            (Some(f), None) => Ok(CameraSource::Folder(f.clone())),
            (None, Some(s)) => Ok(CameraSource::Stream(s.trim().to_owned())),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScannerConfig {
    pub name: String,
    /// The scanner's TCP event feed (`host:port`), one JSON object per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed_addr: Option<String>,
    /// Or: the folder where the scanner drops one XML file per scan plus images (see
    /// `bcp_agent::scanner::drop_folder`); read files go to `processed/`, refused ones to
    /// `quarantine/` beside them. Exactly one of `feed_addr` and `drop_folder` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_folder: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnprSettings {
    /// Folder with `lib/libonnxruntime.so.1.31.1` and `models/` as `scripts/install-native`
    /// lays it out. Default: `$BCP_NATIVE_DIR`, else `~/.local/share/bcp-edge/native`.
    pub native_dir: Option<PathBuf>,
    /// ONNX Runtime intra-op threads per model (default: 2).
    pub threads: Option<usize>,
    /// Plate formats this post reads (`["TJ", "UZ", "KZ", ..]`); default: all that bcp-anpr
    /// knows. Each extra grammar is one more way for other text to look like a plate.
    #[serde(default)]
    pub formats: Vec<String>,
    /// Start each camera's vision worker (`bcp-vision`, see [`crate::vision`]) and load the
    /// models before the agent reports READY (`true`), or on the camera's first frame (`false`,
    /// the default: an idle lane does not hold the worker's memory, a few hundred MB once it has
    /// read frames; the first frame waits about half a second). Either way the files are
    /// checked at start.
    #[serde(default)]
    pub preload: bool,
}

/// `[evidence]`: the images recorded with each crossing (see `bcp_agent::frames` and
/// `bcp_anpr::evidence`). Applied at once on a reload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvidenceSettings {
    /// Record images at all (false: crossings carry no images; nothing is kept or decoded).
    pub enabled: bool,
    /// The overview (the best read's whole frame) is scaled down to at most this width.
    pub overview_max_width_px: u32,
    /// Margin around the plate box in the crop, in box heights on every side.
    pub crop_margin_ratio: f32,
    /// JPEG quality (40-100) of the plate crop, the overview and the scan thumbnails.
    pub jpeg_quality: u8,
    /// The frame cache keeps at most this many frames with plate reads ...
    pub frame_cache_frames: usize,
    /// ... and at most this many MiB of them; the oldest go first.
    pub frame_cache_mib: usize,
    /// Scan thumbnails (drop-folder scanner) are scaled down to this longest side.
    pub scan_thumbnail_max_side_px: u32,
    /// Scan image files larger than this are not read (no thumbnail, flagged).
    pub scan_image_max_mib: u64,
}

impl Default for EvidenceSettings {
    fn default() -> Self {
        let plate = bcp_anpr_core::EvidenceConfig::default();
        Self {
            enabled: true,
            overview_max_width_px: plate.overview_max_width_px,
            crop_margin_ratio: plate.crop_margin_ratio,
            jpeg_quality: plate.jpeg_quality,
            // About two minutes of a camera that sends a frame with a read every half second,
            // and 64 MiB of 1080p JPEGs (~250 KiB each).
            frame_cache_frames: 256,
            frame_cache_mib: 64,
            scan_thumbnail_max_side_px: 1024,
            scan_image_max_mib: 64,
        }
    }
}

impl EvidenceSettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The plate and thumbnail encoding settings, as `bcp_anpr::evidence` takes them.
    pub fn images(&self) -> bcp_anpr_core::EvidenceConfig {
        bcp_anpr_core::EvidenceConfig {
            overview_max_width_px: self.overview_max_width_px,
            crop_margin_ratio: self.crop_margin_ratio,
            jpeg_quality: self.jpeg_quality,
            ..bcp_anpr_core::EvidenceConfig::default()
        }
    }

    /// The frame cache's byte bound.
    pub fn frame_cache_bytes(&self) -> usize {
        self.frame_cache_mib.saturating_mul(1024 * 1024)
    }

    /// Checks value ranges with `bcp_anpr`'s own rules; the error names the key.
    pub fn validate(&self) -> Result<()> {
        match self.images().validate() {
            Ok(()) => {}
            Err(bcp_anpr_core::SettingsError::Config { key, reason }) => {
                bail!("evidence.{key}: {reason}")
            }
            Err(e) => bail!("[evidence]: {e}"),
        }
        if !(1..=100_000).contains(&self.frame_cache_frames) {
            bail!(
                "evidence.frame_cache_frames = {}: use 1 ..= 100000",
                self.frame_cache_frames
            );
        }
        if !(1..=4096).contains(&self.frame_cache_mib) {
            bail!(
                "evidence.frame_cache_mib = {}: use 1 ..= 4096",
                self.frame_cache_mib
            );
        }
        if !(64..=16_384).contains(&self.scan_thumbnail_max_side_px) {
            bail!(
                "evidence.scan_thumbnail_max_side_px = {}: use 64 ..= 16384",
                self.scan_thumbnail_max_side_px
            );
        }
        if !(1..=1024).contains(&self.scan_image_max_mib) {
            bail!(
                "evidence.scan_image_max_mib = {}: use 1 ..= 1024",
                self.scan_image_max_mib
            );
        }
        Ok(())
    }
}

/// The lane correlator's windows (see `bcp_agent::lane` for the rules they tune).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaneSettings {
    /// How long after a vehicle leaves the bridge late evidence (a slow plate read, the scan
    /// result) may still join its crossing before the record is closed.
    #[serde(default = "default_close_after_ms")]
    pub close_after_ms: u64,
    /// How long before a vehicle comes on the bridge a camera frame or a scan may have been taken
    /// and still be that vehicle's (the camera sees the vehicle approaching).
    #[serde(default = "default_pre_arrival_ms")]
    pub pre_arrival_ms: u64,
    /// With a `[scanner]`: how long after a vehicle left its crossing is held open, while it has
    /// no scan, for the scanner workstation's verdict. A verdict later than this is recorded
    /// apart, naming the crossing (`scan_after_close`). 0: never hold (selective scanning, where
    /// most vehicles are not scanned). Ignored without a `[scanner]`.
    #[serde(default = "default_scan_wait_ms")]
    pub scan_wait_ms: u64,
    /// How long after a vehicle left the bridge a scan may have been made and still be that
    /// vehicle's by time alone (a scanner portal further down the lane). A scan that matches no
    /// vehicle becomes an `orphan_scan` record.
    #[serde(default = "default_scan_after_left_ms")]
    pub scan_after_left_ms: u64,
    /// A vehicle that comes on less than this after the previous one left is tailgating: both
    /// crossings are flagged `tailgating`. At most `close_after_ms`.
    #[serde(default = "default_tailgate_gap_ms")]
    pub tailgate_gap_ms: u64,
    /// Which way this lane's conveyances cross the border: `"entry"` (into the country) or
    /// `"exit"`; every record of the lane carries it when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<bcp_record::Direction>,
}

impl Default for LaneSettings {
    fn default() -> Self {
        Self {
            close_after_ms: default_close_after_ms(),
            pre_arrival_ms: default_pre_arrival_ms(),
            scan_wait_ms: default_scan_wait_ms(),
            scan_after_left_ms: default_scan_after_left_ms(),
            tailgate_gap_ms: default_tailgate_gap_ms(),
            direction: None,
        }
    }
}

impl LaneSettings {
    /// Longest window accepted: crossings held longer are at risk in a power cut.
    pub const MAX_WINDOW_MS: u64 = 3_600_000;

    /// The correlator's rules; `scanner` says whether the lane has a scanner to wait for.
    pub fn rules(&self, scanner: bool) -> crate::lane::LaneRules {
        let ms = |v: u64| chrono::TimeDelta::milliseconds(v.min(Self::MAX_WINDOW_MS) as i64);
        crate::lane::LaneRules {
            close_after: ms(self.close_after_ms),
            pre_arrival: ms(self.pre_arrival_ms),
            scan_wait: if scanner {
                ms(self.scan_wait_ms)
            } else {
                chrono::TimeDelta::zero()
            },
            scan_after_left: ms(self.scan_after_left_ms),
            tailgate_gap: ms(self.tailgate_gap_ms),
        }
    }

    /// Checks the windows; the error names the key.
    pub fn validate(&self) -> Result<()> {
        for (key, v) in [
            ("lane.close_after_ms", self.close_after_ms),
            ("lane.pre_arrival_ms", self.pre_arrival_ms),
            ("lane.scan_wait_ms", self.scan_wait_ms),
            ("lane.scan_after_left_ms", self.scan_after_left_ms),
            ("lane.tailgate_gap_ms", self.tailgate_gap_ms),
        ] {
            if v > Self::MAX_WINDOW_MS {
                bail!(
                    "{key} = {v}: at most {} (one hour); records held longer are at risk in a power cut",
                    Self::MAX_WINDOW_MS
                );
            }
        }
        if self.close_after_ms == 0 {
            bail!("lane.close_after_ms = 0: give late evidence at least a few hundred ms");
        }
        if self.scan_wait_ms != 0 && self.scan_wait_ms < self.close_after_ms {
            bail!(
                "lane.scan_wait_ms = {} is shorter than lane.close_after_ms = {}: use 0 (do not hold crossings for scans) or at least close_after_ms",
                self.scan_wait_ms,
                self.close_after_ms
            );
        }
        if self.tailgate_gap_ms > self.close_after_ms {
            bail!(
                "lane.tailgate_gap_ms = {} is longer than lane.close_after_ms = {}: the previous crossing would be closed before the tailgater could be flagged on it",
                self.tailgate_gap_ms,
                self.close_after_ms
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// The SQLite outbox file.
    pub path: PathBuf,
    /// The post's Ed25519 signing key (mode 0600); default: beside the outbox (`<path>.key`).
    /// Created on first start if missing; give central its public key (`bcpctl keys show`).
    pub key_path: Option<PathBuf>,
    /// Disk budget of the outbox, records and images together (bytes; none: the disk's size).
    /// See the outbox's "Disk budget": images give way first, records are never dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_bytes: Option<std::num::NonZeroU64>,
}

impl OutboxConfig {
    /// Where the post's signing key is.
    pub fn key_path(&self) -> PathBuf {
        self.key_path
            .clone()
            .unwrap_or_else(|| bcp_sync::keys::default_key_path(&self.path))
    }

    /// Opens the outbox with the configured key (made on first use).
    pub fn open(&self, post: &str) -> Result<bcp_sync::outbox::Outbox> {
        let key_path = self.key_path();
        let (key, created) = bcp_sync::keys::PostKey::load_or_init(&key_path)
            .with_context(|| format!("the post's signing key {}", key_path.display()))?;
        if created {
            tracing::warn!(post, key = %key_path.display(), public_key = %key.public_hex(), "generated a new post signing key; give central its public key (bcpctl keys show)");
        }
        let outbox = bcp_sync::outbox::Outbox::open_with_key(&self.path, post, key)
            .with_context(|| format!("opening the outbox {}", self.path.display()))?;
        if let Some(budget) = self.budget_bytes {
            outbox
                .set_budget_bytes(budget.get())
                .with_context(|| format!("outbox.budget_bytes on {}", self.path.display()))?;
        }
        Ok(outbox)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    pub broker_host: String,
    pub broker_port: u16,
    /// Default: `bcp-agent-<post id>`.
    pub client_id: Option<String>,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u64,
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// Records per MQTT message at most (default [`bcp_sync::DEFAULT_BATCH_MAX_RECORDS`], at most
    /// [`bcp_sync::MAX_BATCH_RECORDS`]). Larger batches drain a backlog faster on a fast link.
    #[serde(default = "default_batch_max_records")]
    pub batch_max_records: usize,
    /// Cap on the records' bytes per second for a slow or metered link (0: no cap). Under a cap
    /// batches are made small enough to go in a few seconds.
    #[serde(default)]
    pub max_bytes_per_sec: u64,
    /// Central's list-signing public key (64 hex digits, as `bcp-central keys show` prints
    /// it). With it the post takes central's downlink lists (hotlist, pre-arrival declarations),
    /// keeps them in `lists_path` and uses them offline; without it, no lists.
    pub central_key: Option<String>,
    /// Where the lists are kept (default: `lists.db` beside the outbox).
    pub lists_path: Option<PathBuf>,
}

impl SyncConfig {
    /// Central's public key, if configured (checked by [`AgentConfig::validate`]).
    pub fn central_key(&self) -> Result<Option<[u8; 32]>> {
        match &self.central_key {
            None => Ok(None),
            Some(hex) => bcp_record::seal::from_hex::<32>(hex.trim())
                .map(Some)
                .with_context(|| {
                    format!(
                        "sync.central_key = {hex:?}: expected the 64 hex digits of central's public key (bcp-central keys show)"
                    )
                }),
        }
    }

    /// The list store's file for an outbox at `outbox`.
    pub fn lists_path(&self, outbox: &Path) -> PathBuf {
        self.lists_path
            .clone()
            .unwrap_or_else(|| outbox.with_file_name("lists.db"))
    }
}

/// Where the control API listens (see `bcp_agent::control`).
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/bcp/agent.sock";
/// The group whose members may use the control socket.
pub const DEFAULT_CONTROL_GROUP: &str = "bcp-tech";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// The Unix socket of the control API (mode 0660). The unit's `RuntimeDirectory=bcp` makes
    /// `/run/bcp`; a stale socket left by a crash is removed at start.
    #[serde(default = "default_control_socket")]
    pub socket: PathBuf,
    /// The socket's group, for technicians who are not root; if it does not exist the socket
    /// stays the agent's own (and root's). The agent must be a member to hand the socket over
    /// (the unit's `SupplementaryGroups=bcp-tech`).
    #[serde(default = "default_control_group")]
    pub group: String,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            socket: default_control_socket(),
            group: default_control_group(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` (Prometheus text format 0.0.4).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A loopback address and port: the endpoint has no authentication.
    #[serde(default = "default_metrics_listen")]
    pub listen: std::net::SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: default_metrics_listen(),
        }
    }
}

fn default_control_socket() -> PathBuf {
    PathBuf::from(DEFAULT_CONTROL_SOCKET)
}
fn default_control_group() -> String {
    DEFAULT_CONTROL_GROUP.to_owned()
}
const fn default_metrics_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464)
}

const fn yes() -> bool {
    true
}
const fn default_stable_readings() -> usize {
    5
}
const fn default_band() -> f64 {
    1.0
}
const fn default_stable_ms() -> u64 {
    500
}
const fn default_occupied_kg() -> f64 {
    400.0
}
const fn default_empty_kg() -> f64 {
    200.0
}
const fn default_poll_ms() -> u64 {
    50
}
const fn default_close_after_ms() -> u64 {
    3000
}
const fn default_pre_arrival_ms() -> u64 {
    2000
}
const fn default_scan_wait_ms() -> u64 {
    120_000
}
const fn default_scan_after_left_ms() -> u64 {
    30_000
}
const fn default_tailgate_gap_ms() -> u64 {
    500
}
const fn default_train_quiet_ms() -> u64 {
    10_000
}
const fn default_read_margin_ms() -> u64 {
    500
}
const fn default_train_stop_ms() -> u64 {
    5000
}
const fn default_train_standing_ms() -> u64 {
    1_800_000
}
const fn default_keep_alive() -> u64 {
    30
}
const fn default_in_flight() -> usize {
    bcp_sync::DEFAULT_MAX_IN_FLIGHT
}

const fn default_batch_max_records() -> usize {
    bcp_sync::DEFAULT_BATCH_MAX_RECORDS
}

impl WeighbridgeConfig {
    /// The indicator protocol this config names; the error says what would be valid.
    pub fn indicator_protocol(&self) -> Result<AnyProtocol> {
        let parsed = match self.protocol.as_str() {
            "toledo-continuous" if self.checksum => {
                AnyProtocol::parse("toledo-continuous-checksum", None)
            }
            // Not indicator protocols, or spelled through `checksum`.
            "dims-ascii" | "toledo-continuous-checksum" => {
                Err("not a weighbridge protocol".to_owned())
            }
            other => AnyProtocol::parse(other, self.pattern.as_deref()),
        };
        parsed.map_err(|e| {
            let known: Vec<&str> = AnyProtocol::NAMES
                .iter()
                .copied()
                .filter(|n| !matches!(*n, "dims-ascii" | "toledo-continuous-checksum"))
                .collect();
            anyhow::anyhow!(
                "weighbridge.protocol = {:?}: {}; weighbridge protocols: {}",
                self.protocol,
                e.split(';').next().unwrap_or_default(),
                known.join(", ")
            )
        })
    }
}

impl AgentConfig {
    /// Reads, parses and validates `path`; errors name the file and the key.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the agent config {}", path.display()))?;
        // The same check as `bcpctl config set | apply`; it adds the offending key's line.
        crate::config_edit::check_text(&text, path)
    }

    /// Checks what the types cannot; the error names the key and what would be valid.
    pub fn validate(&self) -> Result<()> {
        let id_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !id_ok(&self.post.id) {
            bail!(
                "post.id = {:?}: use letters, digits, '-' or '_' (it becomes an MQTT topic level)",
                self.post.id
            );
        }
        if !id_ok(&self.post.lane) {
            bail!(
                "post.lane = {:?}: use letters, digits, '-' or '_'",
                self.post.lane
            );
        }
        if let Some(office) = &self.post.customs_office {
            let b = office.as_bytes();
            let ok = b.len() == 8
                && b[..2].iter().all(u8::is_ascii_uppercase)
                && b[2..]
                    .iter()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
            if !ok {
                bail!("post.customs_office = {office:?}: an NCTS office reference is 8 characters, the country's two letters then six capital letters or digits (\"TJ000123\")");
            }
        }
        self.weighbridge.indicator_protocol()?;
        if let Some(code) = self
            .anpr
            .formats
            .iter()
            .find(|c| bcp_anpr_core::formats::by_code(c).is_none())
        {
            let known: Vec<&str> = bcp_anpr_core::formats::FORMATS
                .iter()
                .map(|f| f.code)
                .collect();
            bail!(
                "anpr.formats: unknown plate format {code:?}; known: {}",
                known.join(", ")
            );
        }
        let wb = &self.weighbridge;
        if !(2..=50).contains(&wb.stable_readings) {
            bail!(
                "weighbridge.stable_readings = {}: use 2 ..= 50",
                wb.stable_readings
            );
        }
        if wb.stable_band_divisions.is_nan() || wb.stable_band_divisions <= 0.0 {
            bail!(
                "weighbridge.stable_band_divisions = {}: must be > 0",
                wb.stable_band_divisions
            );
        }
        if wb.empty_threshold_kg.is_nan() || wb.empty_threshold_kg >= wb.occupied_threshold_kg {
            bail!(
                "weighbridge.empty_threshold_kg ({}) must be below weighbridge.occupied_threshold_kg ({})",
                wb.empty_threshold_kg,
                wb.occupied_threshold_kg
            );
        }
        if wb.axle_scale {
            if self.post.transport_mode != crate::profile::PostProfile::Road {
                bail!(
                    "weighbridge.axle_scale = true but post.transport_mode = {:?}: an axle scale weighs road vehicles (a rail post's weigh rail frames each wagon)",
                    self.post.transport_mode.name()
                );
            }
            if !(100..=60_000).contains(&wb.max_axle_gap_ms) {
                bail!(
                    "weighbridge.max_axle_gap_ms = {}: use 100 ..= 60000 (longer than the gap between a vehicle's axle groups, shorter than the gap between two vehicles)",
                    wb.max_axle_gap_ms
                );
            }
        }
        if let Some(d) = &self.dimensions {
            d.lane_scanner()?;
        }
        if let Some(s) = &self.scanner {
            match (&s.feed_addr, &s.drop_folder) {
                (Some(_), Some(_)) => bail!(
                    "scanner.feed_addr and scanner.drop_folder are both set: use one of them"
                ),
                (None, None) => bail!(
                    "scanner: set scanner.feed_addr (the TCP feed, host:port) or scanner.drop_folder (the XML drop folder)"
                ),
                (Some(addr), None) if addr.trim().is_empty() => {
                    bail!("scanner.feed_addr is empty: give host:port")
                }
                (None, Some(dir)) if dir.as_os_str().is_empty() => {
                    bail!("scanner.drop_folder is empty: give the folder's path")
                }
                _ => {}
            }
        }
        self.lane.validate()?;
        self.evidence.validate()?;
        match (self.post.transport_mode, &self.train) {
            (crate::profile::PostProfile::Rail, Some(t)) => t.validate()?,
            (crate::profile::PostProfile::Rail, None) => {}
            (other, Some(_)) => bail!(
                "[train] is set but post.transport_mode = {:?}: the train correlator runs only on a rail post (transport_mode = \"rail\"); remove [train] or change the mode",
                other.name()
            ),
            (_, None) => {}
        }
        self.log.validate()?;
        if self.camera.poll_ms == 0 {
            bail!("camera.poll_ms = 0: use at least 1");
        }
        self.camera.source()?;
        self.camera.validate_presence_in("camera")?;
        if self.camera.frames_by_motion() {
            if self.post.transport_mode == crate::profile::PostProfile::Rail {
                bail!("camera.presence = \"motion\" but post.transport_mode = \"rail\": the weigh rail frames wagons; remove camera.presence");
            }
            if self.presence.is_some() {
                bail!("camera.presence = \"motion\" and [presence] are both set: one of them frames the vehicles; remove camera.presence or [presence]");
            }
            if self.weighbridge.axle_scale {
                bail!("camera.presence = \"motion\" and weighbridge.axle_scale = true are both set: an axle scale frames each vehicle by its axle groups; remove camera.presence or axle_scale");
            }
        }
        if let Some(rear) = &self.rear_camera {
            self.validate_rear_camera(rear)?;
        }
        if let Some(p) = &self.presence {
            if self.post.transport_mode == crate::profile::PostProfile::Rail {
                bail!("[presence] is set but post.transport_mode = \"rail\": the weigh rail frames wagons; remove [presence]");
            }
            if self.weighbridge.axle_scale {
                bail!("weighbridge.axle_scale = true and [presence] are both set: an axle scale frames each vehicle by its axle groups, and presence sensors framing it too is not supported; remove [presence] or axle_scale");
            }
            p.validate()?;
        }
        if self.sync.broker_port == 0 {
            bail!("sync.broker_port = 0: give the central broker's port");
        }
        if self.sync.max_in_flight == 0 {
            bail!("sync.max_in_flight = 0: use at least 1");
        }
        if !(1..=bcp_sync::MAX_BATCH_RECORDS).contains(&self.sync.batch_max_records) {
            bail!(
                "sync.batch_max_records = {}: use 1 to {} (default {})",
                self.sync.batch_max_records,
                bcp_sync::MAX_BATCH_RECORDS,
                bcp_sync::DEFAULT_BATCH_MAX_RECORDS
            );
        }
        self.sync.central_key()?;
        self.limits.validate()?;
        if let Some(pct) = self.limits.declared_weight_tolerance_pct {
            if !(pct.is_finite() && pct > 0.0 && pct <= 100.0) {
                bail!("limits.declared_weight_tolerance_pct = {pct}: give a percentage above 0 and at most 100 (default 10)");
            }
        }
        if self.control.socket.as_os_str().is_empty() {
            bail!("control.socket is empty: give a path such as {DEFAULT_CONTROL_SOCKET:?}");
        }
        if self.metrics.enabled && !self.metrics.listen.ip().is_loopback() {
            bail!(
                "metrics.listen = \"{}\": the endpoint has no authentication; use a loopback address such as \"127.0.0.1:9464\" (or metrics.enabled = false)",
                self.metrics.listen
            );
        }
        Ok(())
    }

    /// `[rear_camera]`: a road post's, a device of its own (name and folder), polled.
    fn validate_rear_camera(&self, rear: &CameraConfig) -> Result<()> {
        if self.post.transport_mode != crate::profile::PostProfile::Road {
            bail!(
                "[rear_camera] is set but post.transport_mode = {:?}: a rear camera reads trailers' plates on a road post; remove [rear_camera]",
                self.post.transport_mode.name()
            );
        }
        if rear.poll_ms == 0 {
            bail!("rear_camera.poll_ms = 0: use at least 1");
        }
        if rear.presence.is_some() {
            bail!("rear_camera.presence is set: only the front camera ([camera] presence) can frame the vehicles; remove it");
        }
        rear.validate_presence_in("rear_camera")?;
        if rear.name == self.camera.name {
            bail!(
                "rear_camera.name = {:?} is also camera.name: give each camera its own name",
                rear.name
            );
        }
        if rear.source_in("rear_camera")? == self.camera.source()? {
            bail!(
                "rear_camera.folder (or .stream) is also camera's: each camera needs its own (a folder's frame is read once, then removed)"
            );
        }
        Ok(())
    }

    /// The train correlator's settings: `[train]`, or its defaults.
    pub fn train_settings(&self) -> TrainSettings {
        self.train.clone().unwrap_or_default()
    }

    pub fn client_id(&self) -> String {
        self.sync
            .client_id
            .clone()
            .unwrap_or_else(|| format!("bcp-agent-{}", self.post.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
[post]
id = "TJ-DYU-01"
lane = "L1"

[weighbridge]
name = "wb1"
path = "/dev/serial/by-id/usb-FTDI-if00"
protocol = "toledo-continuous"

[camera]
name = "cam1"
folder = "/var/lib/bcp/camera/cam1"

[outbox]
path = "/var/lib/bcp/outbox.db"

[sync]
broker_host = "central.example"
broker_port = 8883
"#;

    fn parse(text: &str) -> Result<AgentConfig> {
        let cfg: AgentConfig = toml::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    #[test]
    fn the_lane_direction_and_the_customs_office_are_optional() -> Result<()> {
        let cfg = parse(VALID)?;
        assert_eq!((cfg.lane.direction, cfg.post.customs_office), (None, None));
        let text = VALID.replace(
            "lane = \"L1\"",
            "lane = \"L1\"\ncustoms_office = \"TJ000123\"",
        );
        let cfg = parse(&format!("{text}\n[lane]\ndirection = \"exit\"\n"))?;
        assert_eq!(cfg.lane.direction, Some(bcp_record::Direction::Exit));
        assert_eq!(cfg.post.customs_office.as_deref(), Some("TJ000123"));
        Ok(())
    }

    #[test]
    fn a_minimal_config_gets_sensible_defaults() -> Result<()> {
        let cfg = parse(VALID)?;
        assert_eq!(cfg.weighbridge.port.baud, 9600);
        assert!(cfg.weighbridge.checksum);
        assert_eq!(cfg.weighbridge.stable_readings, 5);
        assert_eq!(cfg.lane.close_after_ms, 3000);
        assert_eq!(cfg.lane.scan_wait_ms, 120_000);
        let rules = cfg.lane.rules(false);
        assert_eq!(
            (rules.scan_wait, rules.scan_after_left.num_seconds()),
            (chrono::TimeDelta::zero(), 30),
            "no scanner: nothing is held for a scan"
        );
        assert_eq!(cfg.lane.rules(true).scan_wait.num_seconds(), 120);
        assert_eq!(cfg.client_id(), "bcp-agent-TJ-DYU-01");
        assert!(cfg.dimensions.is_none() && cfg.scanner.is_none());
        assert_eq!(cfg.control.socket, PathBuf::from("/run/bcp/agent.sock"));
        assert_eq!(cfg.control.group, "bcp-tech");
        assert!(cfg.metrics.enabled);
        assert_eq!(cfg.metrics.listen.to_string(), "127.0.0.1:9464");
        Ok(())
    }

    /// The package's /etc/bcp/agent.toml: valid as shipped, and with every commented-out
    /// `key = value` line of a section that is already on switched on, still valid.
    #[test]
    fn the_packaged_default_config_is_valid_and_its_commented_defaults_too() -> Result<()> {
        let text = include_str!("../agent.example.toml");
        let cfg = parse(text)?;
        assert_eq!(cfg.outbox.path, PathBuf::from("/var/lib/bcp/outbox.db"));
        assert_eq!(cfg.control.socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));

        // Uncomment the settings shown at their defaults in the sections that are on.
        let mut section = String::new();
        let mut uncommented = String::new();
        let on = [
            "[post]",
            "[weighbridge]",
            "[camera]",
            "[anpr]",
            "[outbox]",
            "[sync]",
        ];
        // No default to show: a regex and a key are placeholders; a camera stream is the
        // alternative to the folder, not a default.
        // Camera presence is an alternative way to frame vehicles, not a default.
        let skip = ["pattern", "central_key", "stream", "presence"];
        for line in text.lines() {
            if let Some(header) = line.strip_prefix("# [").or(line.strip_prefix('[')) {
                // A commented-out section stays off: its settings are not switched on.
                let on_already = line.starts_with('[');
                section = if on_already {
                    format!("[{header}")
                } else {
                    String::new()
                };
            }
            let setting = line.strip_prefix("# ").filter(|l| l.contains(" = "));
            match setting {
                Some(l)
                    if on.contains(&section.as_str()) && !skip.iter().any(|k| l.starts_with(k)) =>
                {
                    uncommented.push_str(l);
                }
                _ => uncommented.push_str(line),
            }
            uncommented.push('\n');
        }
        let all = parse(&uncommented).with_context(|| uncommented.clone())?;
        assert_eq!(all.weighbridge.stable_readings, 5);
        assert_eq!(all.anpr.formats, ["TJ", "UZ", "KZ", "KG"]);
        assert_eq!(all.sync.max_in_flight, 1000);
        assert_eq!(all.sync.batch_max_records, 100);
        assert_eq!(all.sync.max_bytes_per_sec, 0);
        Ok(())
    }

    #[test]
    fn a_rear_camera_is_a_road_posts_camera_of_its_own() -> Result<()> {
        let rear = "\n[rear_camera]\nname = \"cam2\"\nfolder = \"/var/lib/bcp/camera/cam2\"\n";
        let cfg = parse(&format!("{VALID}{rear}"))?;
        let r = cfg.rear_camera.as_ref().expect("a rear camera");
        assert_eq!((r.name.as_str(), r.poll_ms), ("cam2", 50));
        assert!(parse(VALID)?.rear_camera.is_none());

        let same_folder = rear
            .replace("cam2\"\n", "cam1\"\n")
            .replace("name = \"cam1\"", "name = \"cam2\"");
        let e = format!(
            "{:#}",
            parse(&format!("{VALID}{same_folder}")).expect_err("shared folder")
        );
        assert!(e.contains("rear_camera.folder"), "{e}");
        let same_name = rear.replace("name = \"cam2\"", "name = \"cam1\"");
        let e = format!(
            "{:#}",
            parse(&format!("{VALID}{same_name}")).expect_err("shared name")
        );
        assert!(e.contains("rear_camera.name"), "{e}");
        let no_poll = format!("{rear}poll_ms = 0\n");
        let e = format!(
            "{:#}",
            parse(&format!("{VALID}{no_poll}")).expect_err("poll 0")
        );
        assert!(e.contains("rear_camera.poll_ms"), "{e}");
        let rail = VALID.replace("lane = \"L1\"", "lane = \"L1\"\ntransport_mode = \"rail\"");
        let e = format!("{:#}", parse(&format!("{rail}{rear}")).expect_err("rail"));
        assert!(e.contains("[rear_camera]") && e.contains("rail"), "{e}");
        Ok(())
    }

    #[test]
    fn camera_motion_frames_vehicles_alone_with_thresholds_in_range() -> Result<()> {
        let motion = VALID.replace("[camera]\n", "[camera]\npresence = \"motion\"\n");
        assert_ne!(motion, VALID, "VALID has a [camera] section");
        let cfg = parse(&motion)?;
        assert!(cfg.camera.frames_by_motion());
        let rules = cfg.camera.motion_rules();
        assert_eq!(
            (rules.on_fraction, rules.on_frames, rules.off_fraction),
            (0.05, 2, 0.02)
        );
        assert_eq!(rules.quiet, chrono::TimeDelta::milliseconds(3000));
        assert!(!parse(VALID)?.camera.frames_by_motion(), "off by default");

        let refused = |text: String, keys: &[&str]| -> Result<()> {
            let e = format!("{:#}", parse(&text).expect_err("refused"));
            for key in keys {
                assert!(e.contains(key), "{key}: {e}");
            }
            Ok(())
        };
        let set = |key: &str| {
            motion.replace(
                "presence = \"motion\"\n",
                &format!("presence = \"motion\"\n{key}\n"),
            )
        };
        refused(
            VALID.replace("[camera]\n", "[camera]\npresence = \"loops\"\n"),
            &["camera.presence", "\"motion\""],
        )?;
        refused(
            set("motion_on_fraction = 0.0"),
            &["camera.motion_on_fraction"],
        )?;
        refused(
            set("motion_off_fraction = 0.2"),
            &["camera.motion_off_fraction", "camera.motion_on_fraction"],
        )?;
        refused(set("motion_on_frames = 0"), &["camera.motion_on_frames"])?;
        refused(set("motion_quiet_ms = 10"), &["camera.motion_quiet_ms"])?;
        refused(
            format!("{motion}\n[presence]\nname = \"curtains\"\npath = \"/dev/ttyUSB2\"\n"),
            &["camera.presence", "[presence]"],
        )?;
        refused(
            motion.replace(
                "protocol = \"toledo-continuous\"",
                "protocol = \"toledo-continuous\"\naxle_scale = true",
            ),
            &["camera.presence", "weighbridge.axle_scale"],
        )?;
        refused(
            motion.replace("lane = \"L1\"", "lane = \"L1\"\ntransport_mode = \"rail\""),
            &["camera.presence", "rail"],
        )?;
        let rear = "\n[rear_camera]\nname = \"cam2\"\nfolder = \"/var/lib/bcp/camera/cam2\"\npresence = \"motion\"\n";
        refused(format!("{VALID}{rear}"), &["rear_camera.presence"])?;
        Ok(())
    }

    #[test]
    fn presence_sensors_are_a_serial_device_of_their_own() -> Result<()> {
        let presence = "\n[presence]\nname = \"curtains\"\npath = \"/dev/ttyUSB2\"\n";
        let cfg = parse(&format!("{VALID}{presence}"))?;
        let p = cfg.presence.as_ref().expect("presence sensors");
        assert_eq!(
            (p.name.as_str(), p.protocol.as_str()),
            ("curtains", "presence-ascii")
        );
        assert_eq!(p.port.baud, 9600);
        let bad = format!("{presence}protocol = \"loops\"\n");
        let e = format!(
            "{:#}",
            parse(&format!("{VALID}{bad}")).expect_err("protocol")
        );
        assert!(
            e.contains("presence.protocol") && e.contains("presence-ascii"),
            "{e}"
        );
        let no_path = presence.replace("/dev/ttyUSB2", "");
        let e = format!(
            "{:#}",
            parse(&format!("{VALID}{no_path}")).expect_err("no path")
        );
        assert!(e.contains("presence.path"), "{e}");
        Ok(())
    }

    #[test]
    fn an_axle_scale_is_a_road_posts_with_a_gap_in_range() -> Result<()> {
        let cfg = parse(&VALID.replace(
            "protocol = \"toledo-continuous\"",
            "protocol = \"toledo-continuous\"\naxle_scale = true\nmax_axle_gap_ms = 2500",
        ))?;
        assert!(cfg.weighbridge.axle_scale);
        assert_eq!(cfg.weighbridge.max_axle_gap_ms, 2500);
        assert!(!parse(VALID)?.weighbridge.axle_scale, "off by default");

        let bad = VALID.replace(
            "protocol = \"toledo-continuous\"",
            "protocol = \"toledo-continuous\"\naxle_scale = true\nmax_axle_gap_ms = 0",
        );
        let e = format!("{:#}", parse(&bad).expect_err("no gap"));
        assert!(e.contains("weighbridge.max_axle_gap_ms = 0"), "{e}");

        let rail = VALID
            .replace("lane = \"L1\"", "lane = \"L1\"\ntransport_mode = \"rail\"")
            .replace(
                "protocol = \"toledo-continuous\"",
                "protocol = \"toledo-continuous\"\naxle_scale = true",
            );
        let limits = format!(
            "{VALID}\n[limits]\nmax_axle_kg = 11500.0\n[limits.max_gross_kg_by_axles]\n2 = 18000.0\n5 = 40000.0\n"
        );
        let cfg = parse(&limits)?;
        assert_eq!(cfg.limits.max_axle_kg, Some(11_500.0));
        assert_eq!(cfg.limits.max_gross_kg_by_axles.get("5"), Some(&40_000.0));
        let e = format!(
            "{:#}",
            parse(&limits.replace("5 = 40000.0", "x5 = 40000.0")).expect_err("not a count")
        );
        assert!(e.contains("limits.max_gross_kg_by_axles.\"x5\""), "{e}");

        let e = format!("{:#}", parse(&rail).expect_err("rail"));
        assert!(
            e.contains("weighbridge.axle_scale") && e.contains("\"rail\""),
            "{e}"
        );

        let with_presence = VALID.replace(
            "protocol = \"toledo-continuous\"",
            "protocol = \"toledo-continuous\"\naxle_scale = true",
        ) + "\n[presence]\nname = \"curtains\"\npath = \"/dev/ttyUSB2\"\n";
        let e = format!("{:#}", parse(&with_presence).expect_err("presence"));
        assert!(
            e.contains("weighbridge.axle_scale") && e.contains("[presence]"),
            "{e}"
        );
        Ok(())
    }

    #[test]
    fn errors_name_the_key() {
        let bad = VALID.replace("protocol = \"toledo-continuous\"", "protocol = \"toledo\"");
        let e = format!("{:#}", parse(&bad).expect_err("unknown protocol"));
        assert!(
            e.contains("weighbridge.protocol") && e.contains("toledo-continuous"),
            "{e}"
        );

        for batch in ["0", "2001"] {
            let bad = VALID.replace(
                "[sync]\n",
                &format!("[sync]\nbatch_max_records = {batch}\n"),
            );
            let e = format!("{:#}", parse(&bad).expect_err("batch out of range"));
            assert!(
                e.contains("sync.batch_max_records") && e.contains("2000"),
                "{e}"
            );
        }
        let tuned = VALID.replace(
            "[sync]\n",
            "[sync]\nbatch_max_records = 500\nmax_in_flight = 4000\nmax_bytes_per_sec = 4000\n",
        );
        let tuned = parse(&tuned).expect("a fast link's tuning");
        assert_eq!(
            (
                tuned.sync.batch_max_records,
                tuned.sync.max_in_flight,
                tuned.sync.max_bytes_per_sec
            ),
            (500, 4000, 4000)
        );

        let bad = VALID.replace("id = \"TJ-DYU-01\"", "id = \"TJ/DYU\"");
        let e = format!("{:#}", parse(&bad).expect_err("slash in post id"));
        assert!(e.contains("post.id"), "{e}");

        let bad = VALID.replace(
            "protocol = \"toledo-continuous\"",
            "protocol = \"toledo-continuous\"\nbaudrate = 9600",
        );
        let e = format!(
            "{:#}",
            parse(&bad).expect_err("unknown key beside the flattened port")
        );
        assert!(e.contains("baudrate"), "{e}");

        let bad = VALID.replace("lane = \"L1\"", "lane = \"L1\"\ncustoms_office = \"TJ12\"");
        let e = format!("{:#}", parse(&bad).expect_err("short office reference"));
        assert!(e.contains("post.customs_office"), "{e}");

        let bad = format!("{VALID}\n[lane]\ndirection = \"inbound\"\n");
        let e = format!("{:#}", parse(&bad).expect_err("unknown direction"));
        assert!(
            e.contains("direction") && e.contains("entry") && e.contains("exit"),
            "{e}"
        );

        let bad = format!("{VALID}\n[anpr]\nformats = [\"TJ\", \"XX\"]\n");
        let e = format!("{:#}", parse(&bad).expect_err("unknown plate format"));
        assert!(
            e.contains("anpr.formats") && e.contains("\"XX\"") && e.contains("TJ"),
            "{e}"
        );

        let bad = VALID.replace("[camera]", "[camera]\nfolders = \"x\"");
        let e = format!("{:#}", parse(&bad).expect_err("unknown key"));
        assert!(e.contains("folders"), "{e}");

        let bad = VALID.replace(
            "protocol = \"toledo-continuous\"",
            "protocol = \"toledo-continuous\"\nempty_threshold_kg = 900.0",
        );
        let e = format!("{:#}", parse(&bad).expect_err("thresholds crossed"));
        assert!(e.contains("weighbridge.empty_threshold_kg"), "{e}");

        let bad = format!("{VALID}\n[metrics]\nlisten = \"0.0.0.0:9464\"\n");
        let e = format!(
            "{:#}",
            parse(&bad).expect_err("metrics open to the network")
        );
        assert!(
            e.contains("metrics.listen") && e.contains("loopback"),
            "{e}"
        );
        let off = format!("{VALID}\n[metrics]\nenabled = false\nlisten = \"0.0.0.0:9464\"\n");
        assert!(parse(&off).is_ok(), "a disabled endpoint listens nowhere");

        let bad = format!("{VALID}\n[metrics]\nlisten = \"localhost\"\n");
        let e = format!("{:#}", parse(&bad).expect_err("no port"));
        assert!(e.contains("listen"), "{e}");
    }

    #[test]
    fn the_lane_windows_are_validated_by_key() -> Result<()> {
        let cfg = parse(&format!(
            "{VALID}\n[lane]\nclose_after_ms = 2000\npre_arrival_ms = 1500\nscan_wait_ms = 600000\nscan_after_left_ms = 20000\ntailgate_gap_ms = 800\n"
        ))?;
        let rules = cfg.lane.rules(true);
        assert_eq!(rules.close_after.num_milliseconds(), 2000);
        assert_eq!(rules.pre_arrival.num_milliseconds(), 1500);
        assert_eq!(rules.scan_wait.num_milliseconds(), 600_000);
        assert_eq!(rules.scan_after_left.num_milliseconds(), 20_000);
        assert_eq!(rules.tailgate_gap.num_milliseconds(), 800);

        for (bad, key) in [
            ("scan_wait_ms = 1000", "lane.scan_wait_ms"),
            ("scan_wait_ms = 7200000", "lane.scan_wait_ms"),
            ("close_after_ms = 0", "lane.close_after_ms"),
            ("tailgate_gap_ms = 5000", "lane.tailgate_gap_ms"),
            ("scan_after_left_ms = 4000000", "lane.scan_after_left_ms"),
        ] {
            let e = format!(
                "{:#}",
                parse(&format!("{VALID}\n[lane]\n{bad}\n")).expect_err(bad)
            );
            assert!(e.contains(key), "{bad}: {e}");
        }
        let e = format!(
            "{:#}",
            parse(&format!("{VALID}\n[lane]\nscan_wait_secs = 1\n")).expect_err("typo")
        );
        assert!(e.contains("scan_wait_secs"), "{e}");
        Ok(())
    }

    #[test]
    fn the_signing_key_is_beside_the_outbox_unless_configured() -> Result<()> {
        let cfg = parse(VALID)?;
        assert_eq!(
            cfg.outbox.key_path(),
            PathBuf::from("/var/lib/bcp/outbox.db.key")
        );
        let cfg = parse(&VALID.replace(
            "path = \"/var/lib/bcp/outbox.db\"",
            "path = \"/var/lib/bcp/outbox.db\"\nkey_path = \"/etc/bcp/post.key\"",
        ))?;
        assert_eq!(cfg.outbox.key_path(), PathBuf::from("/etc/bcp/post.key"));
        Ok(())
    }

    #[test]
    fn an_outbox_opens_with_the_configured_key_made_on_first_use() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let outbox = OutboxConfig {
            path: dir.path().join("outbox.db"),
            key_path: Some(dir.path().join("keys/post.key")),
            budget_bytes: std::num::NonZeroU64::new(8 * 1024 * 1024),
        };
        std::fs::create_dir_all(dir.path().join("keys"))?;
        let opened = outbox.open("TJ-1")?;
        assert!(
            opened
                .stats()?
                .budget_bytes
                .is_some_and(|b| b > 7 * 1024 * 1024),
            "the configured budget applies"
        );
        drop(opened);
        let key = std::fs::read(dir.path().join("keys/post.key"))?;
        assert!(!key.is_empty(), "the key was created where the config says");
        assert!(
            !dir.path().join("outbox.db.key").exists(),
            "and not beside the outbox"
        );
        outbox.open("TJ-1")?;
        assert_eq!(
            std::fs::read(dir.path().join("keys/post.key"))?,
            key,
            "reopening keeps the key"
        );
        Ok(())
    }

    #[test]
    fn every_indicator_protocol_can_be_configured() -> Result<()> {
        for name in [
            "xk3190",
            "xk3190-f1",
            "xk3190-a9",
            "mt-sics",
            "sma",
            "rlws",
            "cardinal",
            "avery",
            "a12e",
        ] {
            let cfg = parse(&VALID.replace("\"toledo-continuous\"", &format!("\"{name}\"")))?;
            assert_eq!(cfg.weighbridge.indicator_protocol()?.name(), name);
        }
        let cfg = parse(VALID)?;
        assert_eq!(
            cfg.weighbridge.indicator_protocol()?.name(),
            "toledo-continuous-checksum"
        );
        let e = format!(
            "{:#}",
            parse(&VALID.replace("\"toledo-continuous\"", "\"generic\"")).expect_err("no pattern")
        );
        assert!(
            e.contains("weighbridge.protocol") && e.contains("pattern"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            parse(&VALID.replace("\"toledo-continuous\"", "\"dims-ascii\""))
                .expect_err("not a weighbridge")
        );
        assert!(
            e.contains("weighbridge protocols: toledo-continuous, xk3190"),
            "{e}"
        );
        Ok(())
    }

    #[test]
    fn the_simulator_config_is_valid_and_round_trips() -> Result<()> {
        let sim = crate::sim_config::SimEndpoints {
            weighbridge_protocol: "toledo-continuous-checksum".into(),
            ..crate::sim_config::sample_endpoints()
        };
        let cfg = crate::sim_config::for_simulator(
            &sim,
            "TJ-DEMO-01",
            "127.0.0.1",
            1883,
            Path::new("/tmp/agent"),
        );
        let again = parse(&toml::to_string(&cfg)?)?;
        assert_eq!(again.weighbridge.port.path, "/dev/pts/7");
        assert_eq!(
            again.scanner.and_then(|s| s.feed_addr),
            Some("127.0.0.1:7000".to_owned())
        );
        Ok(())
    }

    #[test]
    fn a_simulator_camera_that_sees_the_empty_lane_frames_the_vehicles_by_motion() -> Result<()> {
        let sim = crate::sim_config::SimEndpoints {
            empty_lane_frames: true,
            ..crate::sim_config::sample_endpoints()
        };
        let cfg = crate::sim_config::for_simulator(
            &sim,
            "TJ-1",
            "127.0.0.1",
            1883,
            Path::new("/tmp/agent"),
        );
        let again = parse(&toml::to_string(&cfg)?)?;
        assert!(again.camera.frames_by_motion());
        assert_eq!(
            again.camera.motion_quiet_ms,
            crate::sim_config::SIM_MOTION_QUIET_MS
        );
        let plain = crate::sim_config::sample_endpoints();
        let cfg = crate::sim_config::for_simulator(
            &plain,
            "TJ-1",
            "127.0.0.1",
            1883,
            Path::new("/tmp/agent"),
        );
        assert!(!cfg.camera.frames_by_motion());
        Ok(())
    }

    #[test]
    fn the_simulator_config_takes_its_protocols() -> Result<()> {
        let mut sim = crate::sim_config::SimEndpoints {
            weighbridge_port: "/tmp/sim/ttyWEIGHBRIDGE".into(),
            weighbridge_protocol: "generic".into(),
            weighbridge_checksum: false,
            weighbridge_pattern: Some(bcp_sim::indicators::GENERIC_PATTERN.into()),
            dims_port: "/tmp/sim/ttyLMS".into(),
            dims_protocol: "sick-cola".into(),
            lane_scanner: Some(bcp_sim::SimLaneScanner {
                mount_height_mm: 6000.0,
                down_angle: 0,
                speed_mm_per_s: 3000.0,
            }),
            camera_dir: "/tmp/cam".into(),
            rear_camera_dir: None,
            presence_port: None,
            scanner_addr: "127.0.0.1:7000".into(),
            scanner_drop_folder: None,
            max_axle_gap_ms: None,
            empty_lane_frames: false,
        };
        let cfg = |sim: &crate::sim_config::SimEndpoints| {
            let cfg = crate::sim_config::for_simulator(
                sim,
                "TJ-1",
                "127.0.0.1",
                1883,
                Path::new("/tmp/a"),
            );
            parse(&toml::to_string(&cfg)?)
        };
        let again = cfg(&sim)?;
        assert_eq!(again.weighbridge.indicator_protocol()?.name(), "generic");
        let dims = again.dimensions.context("a dimension device")?;
        let tracker = dims.lane_scanner()?.context("a lane scanner")?;
        assert_eq!(tracker.geometry.mount_height_mm, 6000.0);
        assert_eq!(tracker.speed_mm_per_s, 3000.0);
        assert_eq!(
            tracker.geometry.min_object_height_mm,
            DEFAULT_MIN_OBJECT_HEIGHT_MM
        );

        for (name, want) in [
            ("xk3190", "xk3190"),
            ("mt-sics", "mt-sics"),
            ("xk3190-a9", "xk3190-a9"),
            ("toledo-continuous", "toledo-continuous"),
            ("toledo-continuous-checksum", "toledo-continuous-checksum"),
        ] {
            sim.weighbridge_protocol = name.into();
            sim.weighbridge_checksum = name.ends_with("checksum");
            sim.weighbridge_pattern = None;
            let again = cfg(&sim)?;
            assert_eq!(again.weighbridge.indicator_protocol()?.name(), want);
        }
        Ok(())
    }

    #[test]
    fn a_sick_cola_lane_scanner_is_configured_by_its_geometry() -> Result<()> {
        let lms = format!(
            "{VALID}\n[dimensions]\nname = \"lms1\"\npath = \"/dev/ttyUSB1\"\nbaud = 115200\nprotocol = \"sick-cola\"\nmount_height_mm = 6500\ndown_angle = -900000\nspeed_mm_per_s = 1500.0\n"
        );
        let cfg = parse(&lms)?;
        let d = cfg.dimensions.context("dimensions")?;
        assert_eq!(d.port.baud, 115_200);
        let t = d.lane_scanner()?.context("a tracker")?;
        assert_eq!(
            (
                t.geometry.mount_height_mm,
                t.geometry.down_angle,
                t.speed_mm_per_s
            ),
            (6500.0, -900_000, 1500.0)
        );
        assert_eq!(
            (t.geometry.min_object_height_mm, t.min_gap_scans),
            (DEFAULT_MIN_OBJECT_HEIGHT_MM, DEFAULT_MIN_GAP_SCANS)
        );

        for (bad, key) in [
            (
                lms.replace("speed_mm_per_s = 1500.0\n", ""),
                "dimensions.speed_mm_per_s",
            ),
            (
                lms.replace("mount_height_mm = 6500\n", ""),
                "dimensions.mount_height_mm",
            ),
            (
                lms.replace("speed_mm_per_s = 1500.0", "speed_mm_per_s = 0.0"),
                "dimensions.speed_mm_per_s",
            ),
            (
                format!("{lms}min_object_height_mm = 7000.0\n"),
                "dimensions.min_object_height_mm",
            ),
            (
                format!("{lms}min_gap_scans = 0\n"),
                "dimensions.min_gap_scans",
            ),
            (
                lms.replace("\"sick-cola\"", "\"dims-ascii\""),
                "dimensions.mount_height_mm",
            ),
            (
                lms.replace("\"sick-cola\"", "\"lidar\""),
                "dimensions.protocol",
            ),
            (format!("{lms}speed_kmh = 5\n"), "speed_kmh"),
        ] {
            let e = format!("{:#}", parse(&bad).expect_err(key));
            assert!(e.contains(key), "{key}: {e}");
        }
        Ok(())
    }

    #[test]
    fn evidence_keys_default_round_trip_and_are_validated_by_name() -> Result<()> {
        let cfg = parse(VALID)?;
        assert_eq!(cfg.evidence, EvidenceSettings::default());
        assert_eq!(
            cfg.evidence.images(),
            bcp_anpr_core::EvidenceConfig::default()
        );
        assert!(
            !toml::to_string(&cfg)?.contains("[evidence]"),
            "defaults are not written"
        );
        let set = format!(
            "{VALID}\n[evidence]\noverview_max_width_px = 800\ncrop_margin_ratio = 0.3\njpeg_quality = 70\nframe_cache_mib = 16\n"
        );
        let cfg = parse(&set)?;
        let again = parse(&toml::to_string(&cfg)?)?;
        assert_eq!(again.evidence, cfg.evidence);
        assert_eq!(
            (
                cfg.evidence.images().overview_max_width_px,
                cfg.evidence.images().jpeg_quality
            ),
            (800, 70)
        );
        assert_eq!(cfg.evidence.frame_cache_bytes(), 16 << 20);
        for (bad, key) in [
            ("jpeg_quality = 20", "evidence.jpeg_quality"),
            ("crop_margin_ratio = 9.0", "evidence.crop_margin_ratio"),
            (
                "overview_max_width_px = 10",
                "evidence.overview_max_width_px",
            ),
            ("frame_cache_frames = 0", "evidence.frame_cache_frames"),
            ("frame_cache_mib = 0", "evidence.frame_cache_mib"),
            (
                "scan_thumbnail_max_side_px = 1",
                "evidence.scan_thumbnail_max_side_px",
            ),
            ("scan_image_max_mib = 0", "evidence.scan_image_max_mib"),
        ] {
            let e = parse(&format!("{VALID}\n[evidence]\n{bad}\n")).expect_err(bad);
            assert!(e.to_string().contains(key), "{bad}: {e}");
        }
        assert!(parse(&format!("{VALID}\n[evidence]\njpg_quality = 80\n")).is_err());
        Ok(())
    }

    #[test]
    fn the_camera_is_a_folder_or_a_stream_never_both() -> Result<()> {
        let folder = "folder = \"/var/lib/bcp/camera/cam1\"\n";
        let stream = "stream = \"rtsp://192.0.2.10:554/ch1\"\n";
        let cfg = parse(&VALID.replace(folder, stream))?;
        assert_eq!(
            cfg.camera.source()?,
            CameraSource::Stream("rtsp://192.0.2.10:554/ch1".into())
        );
        let again = parse(&toml::to_string(&cfg)?)?;
        assert_eq!(again.camera.source()?, cfg.camera.source()?);

        let both = VALID.replace(folder, &format!("{folder}{stream}"));
        let e = format!("{:#}", parse(&both).expect_err("both"));
        assert!(
            e.contains("camera.folder") && e.contains("camera.stream"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            parse(&VALID.replace(folder, "")).expect_err("neither")
        );
        assert!(
            e.contains("camera.folder") && e.contains("camera.stream"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            parse(&VALID.replace(folder, "stream = \" \"\n")).expect_err("empty")
        );
        assert!(e.contains("camera.stream is empty"), "{e}");
        Ok(())
    }

    #[test]
    fn the_scanner_is_a_feed_or_a_drop_folder_never_both() -> Result<()> {
        let feed = format!("{VALID}\n[scanner]\nname = \"xr1\"\nfeed_addr = \"10.0.0.5:7000\"\n");
        let cfg = parse(&feed)?;
        assert!(cfg.scanner.is_some_and(|s| s.drop_folder.is_none()));

        let folder =
            format!("{VALID}\n[scanner]\nname = \"xr1\"\ndrop_folder = \"/srv/scanner/xr1\"\n");
        let cfg = parse(&folder)?;
        let again = parse(&toml::to_string(&cfg)?)?;
        assert_eq!(
            again.scanner.and_then(|s| s.drop_folder),
            Some(PathBuf::from("/srv/scanner/xr1"))
        );

        let both = format!("{feed}drop_folder = \"/srv/scanner/xr1\"\n");
        let e = format!("{:#}", parse(&both).expect_err("both"));
        assert!(
            e.contains("scanner.feed_addr") && e.contains("scanner.drop_folder"),
            "{e}"
        );
        let neither = format!("{VALID}\n[scanner]\nname = \"xr1\"\n");
        let e = format!("{:#}", parse(&neither).expect_err("neither"));
        assert!(e.contains("scanner.drop_folder"), "{e}");
        Ok(())
    }

    #[test]
    fn the_post_profile_is_road_unless_configured_and_names_its_mode() -> Result<()> {
        let cfg = parse(VALID)?;
        assert_eq!(cfg.post.transport_mode, crate::profile::PostProfile::Road);
        for (name, code) in [("road", 3), ("rail", 2), ("air", 4), ("river", 8)] {
            let cfg = parse(&VALID.replace(
                "lane = \"L1\"",
                &format!("lane = \"L1\"\ntransport_mode = \"{name}\""),
            ))?;
            assert_eq!(cfg.post.transport_mode.transport_mode().code(), code);
            let again = parse(&toml::to_string(&cfg)?)?;
            assert_eq!(again.post.transport_mode, cfg.post.transport_mode);
        }
        let e = format!(
            "{:#}",
            parse(&VALID.replace("lane = \"L1\"", "lane = \"L1\"\ntransport_mode = \"sea\""))
                .expect_err("no sea profile")
        );
        assert!(
            e.contains("transport_mode") && e.contains("`road`, `rail`, `air`, `river`"),
            "{e}"
        );
        Ok(())
    }

    #[test]
    fn the_train_section_belongs_to_a_rail_post_and_is_validated_by_key() -> Result<()> {
        let rail = VALID.replace("lane = \"L1\"", "lane = \"T1\"\ntransport_mode = \"rail\"");
        let cfg = parse(&rail)?;
        let rules = cfg.train_settings().rules(false);
        assert_eq!(rules.quiet.num_seconds(), 10, "defaults without [train]");
        assert_eq!(
            rules.scan_wait,
            chrono::TimeDelta::zero(),
            "no scanner: no hold"
        );
        let held = cfg.train_settings().rules(true).scan_wait;
        assert_eq!(held.num_seconds(), 120, "default hold with a scanner");
        let cfg = parse(&format!(
            "{rail}\n[train]\nquiet_ms = 20000\nreader_offset_ms = -1500\nread_margin_ms = 800\nscan_wait_ms = 300000\nstop_ms = 8000\nstanding_ms = 600000\n"
        ))?;
        let rules = cfg.train_settings().rules(true);
        assert_eq!(
            (rules.stop.num_seconds(), rules.standing.num_minutes()),
            (8, 10)
        );
        let rules = cfg.train_settings().rules(true);
        assert_eq!(
            (
                rules.quiet.num_milliseconds(),
                rules.reader_offset.num_milliseconds(),
                rules.read_margin.num_milliseconds(),
                rules.expect_scan,
                rules.scan_wait.num_milliseconds()
            ),
            (20_000, -1500, 800, true, 300_000)
        );
        for (bad, key) in [
            ("quiet_ms = 0", "train.quiet_ms"),
            ("reader_offset_ms = 700000", "train.reader_offset_ms"),
            ("read_margin_ms = 90000", "train.read_margin_ms"),
            ("scan_wait_ms = 7200000", "train.scan_wait_ms"),
            ("stop_ms = 0", "train.stop_ms"),
            ("standing_ms = 5000", "train.standing_ms"),
        ] {
            let e = format!(
                "{:#}",
                parse(&format!("{rail}\n[train]\n{bad}\n")).expect_err(bad)
            );
            assert!(e.contains(key), "{bad}: {e}");
        }
        let e = format!(
            "{:#}",
            parse(&format!("{VALID}\n[train]\nquiet_ms = 5000\n")).expect_err("road")
        );
        assert!(
            e.contains("[train]") && e.contains("post.transport_mode = \"road\""),
            "{e}"
        );
        let limits = parse(&format!("{rail}\n[limits]\nmax_wagon_gross_kg = 92000.0\n"))?;
        assert_eq!(limits.limits.max_wagon_gross_kg, Some(92_000.0));
        Ok(())
    }
}
