//! The X-ray scanner's drop folder as it goes wrong at a real lane, played by `bcp-sim`: every
//! verdict reported 8 s after the scan was made (after the vehicle left), and beside each scan
//! a bad file, one of each kind in turn (garbled XML, oversized, an image name climbing out of
//! the folder, a duplicate). Through the real `bcp-agent` to central: every vehicle's crossing
//! has its own scan, held for it and flagged `scan_joined_late`; every bad file is in
//! `quarantine/` with the reason; no orphan scan, nothing lost, nothing twice.
mod common;

use anyhow::Result;
use bcp_sim::{scenario, PostDevices, ScannerDevice, ScannerFaults};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_verdicts_join_their_vehicles_and_bad_scanner_files_are_quarantined() -> Result<()> {
    let broker = bcp_sync::broker::start_embedded(([127, 0, 0, 1], 0).into())?;
    let port = broker.addr().port();
    let devices = PostDevices {
        scanner: ScannerDevice::DropFolder,
        scanner_faults: ScannerFaults {
            late: Some(Duration::from_secs(8)),
            bad_file_every: 1,
        },
        ..PostDevices::default()
    };
    let vehicles = scenario::generate(4, 37);
    common::run_scenario_on(port, broker.v5_addr().port(), vehicles, 37, &devices, None).await
}
