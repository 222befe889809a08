//! # bcp-sim: simulated border-post hardware
//!
//! Stands in for a lane's devices in tests and the demo, speaking the same bytes the real ones do:
//!
//! - [`scenario`]: the vehicles (plate, gross weight, dimensions, scan), deterministic from a seed;
//!   the ground truth a test compares central's records against.
//! - [`conveyances`]: the other post types' scenarios: trains (wagons with UIC or CIS numbers,
//!   weights, ISO 6346 containers) for rail, ULD cargo units for air, vessels (ENI/IMO) for river.
//! - [`devices`]: the weighbridge state, a dimension sensor on a pseudo-terminal,
//!   a camera dropping JPEG frames into a folder, an X-ray scanner's JSON-lines TCP feed.
//! - [`indicators`]: every weighing-indicator protocol of `bcp_drivers` on a pty behind a
//!   stable link, polled ones answering their commands, with faults on demand (noise, truncated
//!   frames, bad checksums, a rocking vehicle, unplug and replug).
//! - [`link`]: the post's WAN link as a TCP proxy that can be cut ([`LinkProxy`]), on a
//!   schedule for the link-cut tests and `bcp-sim --link-proxy`.
//! - [`lms`]: a SICK LMS-style laser scanner over the lane, sending CoLa A `LMDscandata`
//!   profiles of passing vehicles (the `sick-cola` dimension protocol).
//! - [`plate_render`]: camera frames with rendered number plates of the region's formats.
//! - [`sim`]: the [`Simulator`] that opens the devices and drives the vehicles through the lane;
//!   [`PostDevices`] chooses the weighbridge indicator's protocol (any of them) and the
//!   dimension device (`dims-ascii` sensor or `sick-cola` lane scanner), and whether the
//!   weighbridge is a short axle scale that vehicles cross axle group by axle group.
//!
//! The binary `bcp-sim` is a thin wrapper around [`Simulator`].

pub mod conveyances;
pub mod devices;
pub mod indicators;
pub mod link;
pub mod lms;
pub mod plate_render;
pub mod scenario;
pub mod sim;

pub use indicators::Faults;
pub use link::{CutSchedule, LinkProxy};
pub use scenario::Vehicle;
pub use sim::{
    BadScanFile, DimensionDevice, PostDevices, ScannerDevice, ScannerFaults, Scenario,
    SimEndpoints, SimLaneScanner, Simulator, Timing, AXLE_SCALE_MAX_GAP_MS,
    LANE_SCANNER_SPEED_MM_PER_S,
};
