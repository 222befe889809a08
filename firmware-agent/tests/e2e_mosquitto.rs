//! 20 vehicles through sim -> bcp-agent -> Mosquitto -> central.
mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_vehicles_reach_central_once_each_through_mosquitto() -> anyhow::Result<()> {
    let mosquitto = bcp_sync::mosquitto::MosquittoProcess::start()?;
    common::run_scenario(mosquitto.port(), mosquitto.port(), 20, 12).await
}
