//! 3 vehicles through a post with presence sensors at the bridge's two ends (sim -> bcp-agent
//! -> embedded rumqttd -> central): the 2nd drives on, is weighed and read, and backs off the
//! way it came. The sensors frame the vehicles and tell the end each left by: central must hold
//! the 1st and 3rd crossings only (the harness checks plates, weights, scans, no flags, and
//! that nothing else arrives), and the presence device must be on the board, connected.
mod common;

use anyhow::Result;
use bcp_sim::{scenario, PostDevices};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vehicle_that_reverses_off_makes_no_record_and_the_ones_that_cross_do() -> Result<()> {
    let broker = bcp_sync::broker::start_embedded(([127, 0, 0, 1], 0).into())?;
    let port = broker.addr().port();
    let devices = PostDevices {
        presence: true,
        ..PostDevices::default()
    };
    let mut vehicles = scenario::generate(3, 31);
    vehicles[1].reverses = true;
    common::run_scenario_on(port, broker.v5_addr().port(), vehicles, 31, &devices, None).await
}
