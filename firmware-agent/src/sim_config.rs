//! The agent config for a post whose devices are simulated by `bcp-sim` (the demo and tests):
//! the weighbridge speaks the protocol the simulator's `endpoints.json` names (Toledo's
//! checksum spelled as `checksum`, `generic` with the simulator's pattern), and a `sick-cola`
//! lane scanner is configured with the simulator's geometry and vehicle speed. A simulator with
//! a rear camera gets a `[rear_camera]` and the Russian trailer plates it renders in
//! `anpr.formats`; an axle scale (`max_axle_gap_ms` in `endpoints.json`) becomes
//! `[weighbridge] axle_scale` with that gap. A simulator whose camera drops frames of the
//! empty lane too (`empty_lane_frames`) gets `[camera] presence = "motion"`, with a quiet time
//! ([`SIM_MOTION_QUIET_MS`]) shorter than the simulator's gap between vehicles.

use crate::config::*;
use bcp_drivers::serial::SerialPortConfig;
pub use bcp_sim_endpoints::SimEndpoints;
use std::path::Path;

/// `[camera] motion_quiet_ms` for the simulator's steady camera: its vehicles move in every
/// frame while on the lane (no stop to outlast), and the lane is empty for 900 ms between two
/// (`bcp_sim::Timing::gap`), seen in frames 250 ms apart: the first of them still moves (the
/// vehicle vanished), so the quiet ones span 500 ms at most, and a frame 400 ms after the
/// vehicle vanished must be one of them.
pub const SIM_MOTION_QUIET_MS: u64 = 400;

/// A complete, valid config for the simulated post `post`, with its state in `state_dir`.
pub fn for_simulator(
    sim: &SimEndpoints,
    post: &str,
    broker_host: &str,
    broker_port: u16,
    state_dir: &Path,
) -> AgentConfig {
    let port = |path: &str| SerialPortConfig {
        path: path.to_owned(),
        ..SerialPortConfig::default()
    };
    // The config spells Toledo's checksum as a key of its own.
    let (protocol, checksum) = match sim.weighbridge_protocol.as_str() {
        "toledo-continuous" | "toledo-continuous-checksum" => {
            ("toledo-continuous".to_owned(), sim.weighbridge_checksum)
        }
        other => (other.to_owned(), true),
    };
    let mut dimensions = DimensionSensorConfig::dims_ascii("dims1", port(&sim.dims_port));
    dimensions.protocol = sim.dims_protocol.clone();
    if let Some(scanner) = sim.lane_scanner {
        dimensions.name = "lms1".to_owned();
        dimensions.mount_height_mm = Some(scanner.mount_height_mm);
        dimensions.down_angle = Some(scanner.down_angle);
        dimensions.speed_mm_per_s = Some(scanner.speed_mm_per_s);
    }
    AgentConfig {
        post: PostConfig {
            id: post.to_owned(),
            lane: "L1".to_owned(),
            transport_mode: crate::profile::PostProfile::Road,
            customs_office: None,
        },
        weighbridge: WeighbridgeConfig {
            name: "wb1".to_owned(),
            port: port(&sim.weighbridge_port),
            protocol,
            checksum,
            pattern: sim.weighbridge_pattern.clone(),
            stable_readings: 5,
            stable_band_divisions: 1.0,
            stable_min_ms: 400,
            occupied_threshold_kg: 400.0,
            empty_threshold_kg: 200.0,
            axle_scale: sim.max_axle_gap_ms.is_some(),
            max_axle_gap_ms: sim.max_axle_gap_ms.unwrap_or(3000),
        },
        dimensions: Some(dimensions),
        presence: sim
            .presence_port
            .as_deref()
            .map(|path| PresenceSensorConfig {
                name: "presence1".to_owned(),
                port: port(path),
                protocol: "presence-ascii".to_owned(),
            }),
        camera: CameraConfig {
            presence: sim
                .empty_lane_frames
                .then(|| CAMERA_PRESENCE_MOTION.to_owned()),
            motion_quiet_ms: match sim.empty_lane_frames {
                true => SIM_MOTION_QUIET_MS,
                false => CameraConfig::folder("cam1", sim.camera_dir.clone()).motion_quiet_ms,
            },
            ..CameraConfig::folder("cam1", sim.camera_dir.clone())
        },
        rear_camera: sim
            .rear_camera_dir
            .as_ref()
            .map(|folder| CameraConfig::folder("cam2", folder.clone())),
        // The feed, or the drop folder where the simulator writes its scans instead.
        scanner: Some(ScannerConfig {
            name: "xr1".to_owned(),
            feed_addr: match sim.scanner_drop_folder {
                None => Some(sim.scanner_addr.clone()),
                Some(_) => None,
            },
            drop_folder: sim.scanner_drop_folder.clone(),
        }),
        // A Tajik post: the plates of Tajikistan and its neighbours that the simulator renders.
        anpr: AnprSettings {
            formats: ["TJ", "UZ", "KZ", "KG"]
                .into_iter()
                .chain(sim.rear_camera_dir.as_ref().map(|_| "RU-TRAILER"))
                .map(str::to_owned)
                .collect(),
            ..AnprSettings::default()
        },
        lane: LaneSettings::default(),
        evidence: EvidenceSettings::default(),
        train: None,
        limits: crate::checks::Limits::default(),
        outbox: OutboxConfig {
            path: state_dir.join("outbox.db"),
            key_path: None,
            budget_bytes: None,
        },
        sync: SyncConfig {
            broker_host: broker_host.to_owned(),
            broker_port,
            client_id: None,
            keep_alive_secs: 30,
            max_in_flight: 100,
            batch_max_records: bcp_sync::DEFAULT_BATCH_MAX_RECORDS,
            max_bytes_per_sec: 0,
            central_key: None,
            lists_path: None,
        },
        control: ControlConfig {
            socket: state_dir.join("agent.sock"),
            group: DEFAULT_CONTROL_GROUP.to_owned(),
        },
        // Off: two simulated posts on one machine would fight over the port; tests enable it
        // on a free one.
        metrics: MetricsConfig {
            enabled: false,
            ..MetricsConfig::default()
        },
        log: Default::default(),
    }
}

/// The endpoints of a simulated post that is not running (fixed paths, a port nobody listens
/// on): for tests that need a valid config and never open its devices.
#[cfg(test)]
pub(crate) fn sample_endpoints() -> SimEndpoints {
    SimEndpoints {
        weighbridge_port: "/dev/pts/7".into(),
        weighbridge_protocol: "toledo-continuous".into(),
        weighbridge_checksum: true,
        weighbridge_pattern: None,
        dims_port: "/dev/pts/8".into(),
        dims_protocol: "dims-ascii".into(),
        lane_scanner: None,
        camera_dir: "/tmp/cam".into(),
        rear_camera_dir: None,
        presence_port: None,
        scanner_addr: "127.0.0.1:7000".into(),
        scanner_drop_folder: None,
        max_axle_gap_ms: None,
        empty_lane_frames: false,
    }
}
