//! 20 vehicles through sim -> bcp-agent -> embedded rumqttd -> central.
mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_vehicles_reach_central_once_each_through_rumqttd() -> anyhow::Result<()> {
    let broker = bcp_sync::broker::start_embedded(([127, 0, 0, 1], 0).into())?;
    let port = broker.addr().port();
    common::run_scenario(port, broker.v5_addr().port(), 20, 11).await
}
