//! `bcpctl keys`: the post's Ed25519 signing key.
//!
//! - `keys init` generates the key (mode 0600, never overwriting one) beside the outbox named in
//!   the config, or at `--key PATH`, and prints its public key.
//! - `keys show` prints the public key as one line of hex: `bcpctl keys show > POST.pub` is the
//!   file central takes with `bcp-central serve --post-key POST=POST.pub` or in its `--keys-dir`.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use bcp_agent::{config, AgentConfig};
use bcp_sync::keys::PostKey;
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generates the post's signing key (refuses to overwrite an existing one).
    Init(KeyLocation),
    /// Prints the post's public key (hex), for central.
    Show(KeyLocation),
}

#[derive(Debug, Args)]
pub struct KeyLocation {
    /// The agent config; the key lives beside its outbox (`<outbox>.key`).
    #[arg(long, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// The key file, instead of the one beside the configured outbox.
    #[arg(long)]
    key: Option<PathBuf>,
}

impl KeyLocation {
    fn path(&self) -> Result<PathBuf> {
        match &self.key {
            Some(path) => Ok(path.clone()),
            None => Ok(AgentConfig::load(&self.config)?.outbox.key_path()),
        }
    }
}

pub fn run(cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::Init(at) => {
            let path = at.path()?;
            let key = PostKey::init(&path)?;
            eprintln!("bcpctl: wrote the post's signing key to {}", path.display());
            println!("{}", key.public_hex());
        }
        KeysCommand::Show(at) => {
            let path = at.path()?;
            let key = PostKey::load(&path).with_context(|| {
                format!("no usable key at {} (bcpctl keys init)", path.display())
            })?;
            println!("{}", key.public_hex());
        }
    }
    Ok(())
}
