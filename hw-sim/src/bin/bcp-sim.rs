//! `bcp-sim`: runs the simulated post until Ctrl-C (or SIGTERM).
use anyhow::{Context, Result};
use bcp_sim::{scenario, Simulator, Timing};
use clap::Parser;
use std::path::PathBuf;

/// Simulated border-post hardware: weighbridge and dimension sensor on pseudo-terminals, a camera
/// folder, an X-ray scanner feed. Writes DIR/endpoints.json (where the devices are) and
/// DIR/scenario.json (the vehicles it drives), then drives them once an agent connects.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Folder for the camera frames, endpoints.json and scenario.json.
    #[arg(long)]
    dir: PathBuf,
    /// Drive this many vehicles, then idle; without it, vehicles keep coming.
    #[arg(long)]
    vehicles: Option<usize>,
    /// Seed of the scenario.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let vehicles = args.vehicles.map(|n| scenario::generate(n, args.seed));
    if let Some(v) = &vehicles {
        let path = args.dir.join("scenario.json");
        std::fs::write(&path, serde_json::to_vec_pretty(v)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let sim = Simulator::start(&args.dir, Timing::default()).await?;
    tracing::info!(endpoints = ?sim.endpoints(), "simulated devices open");
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = tx.send(true);
    });
    sim.run(vehicles, args.seed, rx).await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
