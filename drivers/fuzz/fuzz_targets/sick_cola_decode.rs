//! SICK CoLa A LMDscandata telegrams, and the geometry and tracker on whatever decodes (no
//! panic, finite output); see common.rs for what is checked of the decoder.
#![no_main]

#[path = "common.rs"]
mod common;

use bcp_drivers::sick_cola::{self, DimensionTracker, DimensionTrackerConfig, LaneGeometry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::check(data, sick_cola::decode, Some(&sick_cola::encode));
    let mut tracker = DimensionTracker::new(DimensionTrackerConfig {
        geometry: LaneGeometry { mount_height_mm: 6000.0, down_angle: 0, min_object_height_mm: 300.0 },
        speed_mm_per_s: 2000.0,
        min_gap_scans: 2,
    });
    let mut pos = 0;
    while let Ok(Some((t, n))) = sick_cola::decode(&data[pos..]) {
        let _ = tracker.handle_scan(&t);
        pos += n;
    }
});
