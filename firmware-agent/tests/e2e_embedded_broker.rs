//! 20 vehicles through sim -> bcp-agent -> embedded rumqttd -> central.
mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_vehicles_reach_central_once_each_through_rumqttd() -> anyhow::Result<()> {
    let port = common::free_port()?;
    let broker = bcp_sync::broker::start_embedded(([127, 0, 0, 1], port).into())?;
    common::run_scenario(port, broker.v5_addr().port(), 20, 11).await
}
