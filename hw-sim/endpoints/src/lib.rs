//! # bcp-sim-endpoints: where the agent finds a simulated post's devices
//!
//! `bcp-sim` writes [`SimEndpoints`] to `endpoints.json` in its folder; `bcpctl config sim`
//! (and the tests) read it to write the agent's config for the simulated post. It is plain
//! data, in a crate of its own, so that the agent (which must not link the simulator's OpenCV
//! rendering) can read it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How the simulated lane scanner hangs and how fast vehicles pass under it: what the agent's
/// `sick-cola` dimension device must be configured with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SimLaneScanner {
    pub mount_height_mm: f64,
    /// The scanner angle pointing straight down, 1/10000 deg.
    pub down_angle: i32,
    pub speed_mm_per_s: f64,
}

fn default_weighbridge_protocol() -> String {
    "toledo-continuous".to_owned()
}
fn default_dims_protocol() -> String {
    "dims-ascii".to_owned()
}

/// Where the agent finds the simulated hardware. Written to `endpoints.json` in the sim's folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimEndpoints {
    /// The weighbridge indicator's port (a stable link to a pseudo-terminal, 9600 8N1).
    pub weighbridge_port: String,
    /// The indicator's protocol as `bcpctl serial read --protocol` names it (absent in files of
    /// older simulators: Toledo continuous, `weighbridge_checksum` saying which).
    #[serde(default = "default_weighbridge_protocol")]
    pub weighbridge_protocol: String,
    /// Toledo continuous: whether the frames carry the checksum byte.
    pub weighbridge_checksum: bool,
    /// `generic`: the pattern that matches the simulated indicator's lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weighbridge_pattern: Option<String>,
    /// The dimension device's port: the `dims-ascii` sensor's pseudo-terminal, or the lane
    /// scanner's link.
    pub dims_port: String,
    /// `dims-ascii` or `sick-cola`.
    #[serde(default = "default_dims_protocol")]
    pub dims_protocol: String,
    /// `sick-cola`: the scanner's geometry and the vehicles' speed under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane_scanner: Option<SimLaneScanner>,
    /// Folder where the camera drops JPEG frames.
    pub camera_dir: PathBuf,
    /// Folder where the rear camera drops its frames, when the post has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rear_camera_dir: Option<PathBuf>,
    /// The presence sensors' port (a pseudo-terminal), when the post has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_port: Option<String>,
    /// The scanner's TCP event feed.
    pub scanner_addr: String,
    /// The scanner's drop folder, when it writes XML files there instead of using the feed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scanner_drop_folder: Option<PathBuf>,
    /// Set when the weighbridge is an axle scale: the agent's `max_axle_gap_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_axle_gap_ms: Option<u64>,
    /// The camera drops frames of the empty lane too, every `EMPTY_LANE_FRAME_INTERVAL`
    /// (`bcp_sim::PostDevices::empty_lane_frames`): its motion can frame the vehicles.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_lane_frames: bool,
}
