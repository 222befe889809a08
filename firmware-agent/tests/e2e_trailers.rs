//! 4 vehicles through a post with a rear camera (sim -> bcp-agent -> embedded rumqttd ->
//! central): the 2nd and 4th pull trailers with Russian trailer plates, the 1st and 3rd are
//! rigid trucks showing their own plate at the back. Central must hold four crossings (no
//! trailer taken for a second vehicle), the trailers' plates as `RU-TRAILER`, and no trailer
//! plate on the rigid trucks.
mod common;

use anyhow::Result;
use bcp_sim::{scenario, PostDevices};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn central_receives_each_tractors_trailer_plate_and_none_for_rigid_trucks() -> Result<()> {
    let broker = bcp_sync::broker::start_embedded(([127, 0, 0, 1], 0).into())?;
    let port = broker.addr().port();
    let devices = PostDevices {
        rear_camera: true,
        ..PostDevices::default()
    };
    let vehicles = scenario::generate(4, 23);
    assert!(vehicles[1].trailer_plate.is_some() && vehicles[0].trailer_plate.is_none());
    common::run_scenario_on(port, broker.v5_addr().port(), vehicles, 23, &devices, None).await
}
