//! `bcp-agent`: the border-post appliance daemon.
use anyhow::Result;
use bcp_agent::reload::ReloadHandle;
use bcp_agent::{agent, config, AgentConfig};
use clap::Parser;
use std::path::PathBuf;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{reload, EnvFilter};

/// Reads the lane's weighbridge, dimension sensor, camera and scanner, links each vehicle's
/// evidence into one crossing record, stores it in the outbox and syncs it to central.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The agent's configuration file.
    #[arg(long, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
}

fn main() -> std::process::ExitCode {
    let log = init_tracing();
    match run(Args::parse(), log) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("bcp-agent: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

type FilterHandle = reload::Handle<EnvFilter, tracing_subscriber::Registry>;

/// Logs to the journal with its fields under systemd, else to stderr
/// (`bcp_sync::logging`); the filter can be replaced later (`[log] level`, on start and on
/// every reload).
fn init_tracing() -> FilterHandle {
    let (filter, handle) = reload::Layer::new(default_filter());
    tracing_subscriber::registry()
        .with(filter)
        .with(bcp_sync::logging::output_layer())
        .init();
    handle
}

/// `RUST_LOG`, else `info`.
fn default_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

fn run(args: Args, log: FilterHandle) -> Result<()> {
    let cfg = AgentConfig::load(&args.config)?;
    let set_log_filter: agent::LogFilterSetter = Box::new(move |level: Option<&str>| {
        let filter = match level {
            Some(level) => EnvFilter::builder().parse(level)?,
            None => default_filter(),
        };
        log.reload(filter)?;
        tracing::info!(
            filter = level.unwrap_or("RUST_LOG or info"),
            "log filter set"
        );
        Ok(())
    });
    if cfg.log.level.is_some() {
        set_log_filter(cfg.log.level.as_deref())?;
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let (reloads, reload_rx) = ReloadHandle::new();
        tokio::spawn(reload_on_sighup(reloads.clone()));
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: closing open crossings and flushing");
            let _ = tx.send(true);
        });
        let options = agent::RunOptions {
            config_path: Some(args.config.clone()),
            reloads: Some((reloads, reload_rx)),
            set_log_filter: Some(set_log_filter),
        };
        agent::run_with(cfg, rx, options).await
    })
}

/// SIGHUP (`systemctl reload bcp-agent`): re-read the config.
async fn reload_on_sighup(reloads: ReloadHandle) {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the config");
                reloads.signal();
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP: reload with bcpctl"),
    }
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
