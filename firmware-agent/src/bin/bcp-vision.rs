//! `bcp-vision`: the agent's vision worker (`bcp_anpr::worker`). `bcp-agent` starts one per
//! camera and one for the crossings' images, and talks to it over its stdin and stdout; it is
//! not a tool for people. It logs like the agent (the journal under systemd, else stderr).
use std::io::{self, BufWriter};
use std::process::ExitCode;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tracing_subscriber::registry()
        .with(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with(bcp_sync::logging::output_layer())
        .init();
    if std::env::args().len() > 1 {
        eprintln!(
            "bcp-vision: the agent's vision worker; bcp-agent starts it, it takes no arguments"
        );
        return ExitCode::from(2);
    }
    match bcp_anpr::worker::serve(io::stdin().lock(), BufWriter::new(io::stdout().lock())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the vision worker stops");
            ExitCode::FAILURE
        }
    }
}
