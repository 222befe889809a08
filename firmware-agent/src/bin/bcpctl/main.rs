//! `bcpctl`: the technician's command-line tool.
//!
//! Each command group lives in its own module beside this file; `main.rs` only parses the
//! arguments and dispatches.
use anyhow::{Context, Result};
use bcp_agent::{config, sim_config, AgentConfig};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

mod serial;

mod anpr;
mod camera;
mod control;
mod keys;
mod outbox;

/// The border-post technician's tool: see what the running agent is doing, check the
/// configuration and the devices, look at the outbox.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The running agent: every device, the lanes, the outbox, the link to central, disk use.
    Status(control::Target),
    /// The running agent's devices and their health.
    Devices(control::Target),
    /// The running agent's lanes: vehicle on the bridge, crossings recorded, the last one.
    Lanes(control::Target),
    /// Crossings as the running agent records them.
    #[command(subcommand)]
    Events(control::EventsCommand),
    /// Ask the running agent to send what is waiting to central now.
    #[command(subcommand)]
    Sync(control::SyncCommand),
    /// Serial devices: read a weighbridge or dimension sensor, probe a port, sniff its bytes.
    #[command(subcommand)]
    Serial(serial::SerialCommand),
    /// Number plates and identifiers: read images, evaluate on a labelled folder.
    #[command(subcommand)]
    Anpr(anpr::AnprCommand),
    /// Cameras: a snapshot, frames per second and plate read rate.
    #[command(subcommand)]
    Camera(camera::CameraCommand),
    /// Configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The outbox: records waiting for central, and the last acknowledgement.
    Outbox {
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Also check every record's seal and chain (exit non-zero if broken).
        #[arg(long)]
        verify: bool,
    },
    /// The post's signing key.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Checks a config file; exits non-zero naming the bad key (the unit's ExecStartPre).
    Validate {
        #[arg(default_value = config::DEFAULT_PATH)]
        file: PathBuf,
    },
    /// Writes a config for the simulated post of `bcp-sim` (its endpoints.json).
    FromSim {
        endpoints: PathBuf,
        #[arg(long, default_value = "TJ-DEMO-01")]
        post: String,
        #[arg(long, default_value = "127.0.0.1")]
        broker_host: String,
        #[arg(long)]
        broker_port: u16,
        /// Where the agent keeps its outbox.
        #[arg(long)]
        state_dir: PathBuf,
        /// Output file (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bcpctl: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Status(target) => control::status(target)?,
        Command::Devices(target) => control::devices(target)?,
        Command::Lanes(target) => control::lanes(target)?,
        Command::Events(cmd) => control::events(cmd)?,
        Command::Sync(cmd) => control::sync(cmd)?,
        Command::Serial(cmd) => serial::run(cmd)?,
        Command::Anpr(cmd) => anpr::run(cmd)?,
        Command::Camera(cmd) => camera::run(cmd)?,
        Command::Config(ConfigCommand::Validate { file }) => {
            AgentConfig::load(&file)?;
            println!("{}: valid", file.display());
        }
        Command::Config(ConfigCommand::FromSim {
            endpoints,
            post,
            broker_host,
            broker_port,
            state_dir,
            output,
        }) => {
            let text = std::fs::read_to_string(&endpoints)
                .with_context(|| format!("reading {}", endpoints.display()))?;
            let sim: sim_config::SimEndpoints = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", endpoints.display()))?;
            let cfg = sim_config::for_simulator(&sim, &post, &broker_host, broker_port, &state_dir);
            cfg.validate()?;
            let toml = toml::to_string_pretty(&cfg)?;
            match output {
                Some(path) => std::fs::write(&path, toml)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{toml}"),
            }
        }
        Command::Outbox {
            config,
            json,
            verify,
        } => outbox::run(&config, json, verify)?,
        Command::Keys(cmd) => keys::run(cmd)?,
    }
    Ok(())
}
