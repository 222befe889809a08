//! `bcpctl`: the technician's command-line tool.
//!
//! Each command group lives in its own module beside this file; `main.rs` only parses the
//! arguments and dispatches.
use anyhow::{Context, Result};
use bcp_agent::config::DEFAULT_PATH as DEFAULT_CONFIG;
use clap::{CommandFactory as _, Parser, Subcommand};
use std::path::PathBuf;

mod serial;

mod anpr;
mod camera;
mod config;
mod control;
mod keys;
mod outbox;

/// The border-post technician's tool: see what the running agent is doing, check the
/// configuration and the devices, look at the outbox.
#[derive(Debug, Parser)]
#[command(name = "bcpctl", version)]
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
    /// The agent's configuration: validate it, change a key or the whole file (with a diff,
    /// an audit entry and a reload).
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// The outbox: records waiting for central, and the last acknowledgement.
    Outbox {
        #[arg(long, default_value = DEFAULT_CONFIG)]
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
    /// Prints a shell completion script: bcpctl completions bash > /etc/bash_completion.d/bcpctl
    Completions { shell: clap_complete::Shell },
    /// Prints the man page (roff): bcpctl man | man -l -
    Man,
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
        Command::Config(cmd) => config::run(cmd)?,
        Command::Outbox {
            config,
            json,
            verify,
        } => outbox::run(&config, json, verify)?,
        Command::Keys(cmd) => keys::run(cmd)?,
        Command::Completions { shell } => {
            // Into a buffer first: the generator panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Args::command(), "bcpctl", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script)
                .context("writing the completion script")?;
        }
        Command::Man => clap_mangen::Man::new(Args::command())
            .render(&mut std::io::stdout())
            .context("writing the man page")?,
    }
    Ok(())
}
