//! 3 vehicles through a post whose camera frames them by motion (sim -> bcp-agent -> embedded
//! rumqttd -> central): the simulator's camera drops a frame 4 times a second, of the empty
//! lane between vehicles (`bcp-sim --empty-lane-frames`), and the agent runs with `[camera]
//! presence = "motion"`, so the weighbridge only weighs. Central must hold the 3 crossings with
//! their plates, weights and scans, no flags (no tailgating: each vehicle framed once), and
//! nothing else.
mod common;

use anyhow::Result;
use bcp_sim::{scenario, PostDevices};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vehicles_framed_by_camera_motion_reach_central_as_crossings() -> Result<()> {
    let broker = bcp_sync::broker::start_embedded(([127, 0, 0, 1], 0).into())?;
    let port = broker.addr().port();
    let devices = PostDevices {
        empty_lane_frames: true,
        ..PostDevices::default()
    };
    let vehicles = scenario::generate(3, 37);
    common::run_scenario_on(port, broker.v5_addr().port(), vehicles, 37, &devices, None).await
}
