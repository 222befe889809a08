//! `bcpctl config validate | set | apply | from-sim`: the agent's configuration file.
//!
//! `set` and `apply` go through [`bcp_agent::config_edit`]: a key-level diff, the same
//! validation as `validate` (errors name the line and the key), a confirmation unless `--yes`,
//! an atomic write that keeps `<file>.prev`, one entry in the audit log, then the running
//! agent is told to reload (its control API's `reload`, as SIGHUP).

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use bcp_agent::config_edit::{self, Plan};
use bcp_agent::{config, sim_config, AgentConfig};
use clap::{Args, Subcommand};

use crate::control;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Checks a config file; exits non-zero naming the bad key and its line (the unit's
    /// ExecStartPre).
    Validate {
        #[arg(default_value = config::DEFAULT_PATH)]
        file: PathBuf,
    },
    /// Sets one key (dotted: lane.close_after_ms) and reloads the agent. The rest of the file,
    /// comments included, is kept as it is.
    #[command(
        after_help = "Examples:\n  sudo bcpctl config set lane.close_after_ms 4000\n  \
        sudo bcpctl config set limits.max_gross_kg 44000 --yes\n  \
        sudo bcpctl config set post.lane L2"
    )]
    Set {
        /// The key, dotted: `section.key`.
        key: String,
        /// The new value, as TOML (`4000`, `true`, `["TJ", "UZ"]`); a string needs no quotes.
        value: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Replaces the config file with NEWFILE (after showing the difference) and reloads the
    /// agent.
    Apply {
        new_file: PathBuf,
        #[command(flatten)]
        change: ChangeArgs,
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

/// How a change is made.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// The config file to change.
    #[arg(long, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Write without asking (needed when stdin is not a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Do not tell the running agent to reload (it reads the file at its next start or
    /// `systemctl reload bcp-agent`).
    #[arg(long)]
    no_reload: bool,
    /// The agent's control socket (default: `[control] socket` of the new file).
    #[arg(long)]
    socket: Option<PathBuf>,
}

pub fn run(cmd: ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Validate { file } => {
            AgentConfig::load(&file)?;
            println!("{}: valid", file.display());
        }
        ConfigCommand::Set { key, value, change } => {
            let plan = Plan::set(&change.config, &key, &value)?;
            change_file(&plan, "set", &change)?;
        }
        ConfigCommand::Apply { new_file, change } => {
            let plan = Plan::apply(&change.config, &new_file)?;
            change_file(&plan, "apply", &change)?;
        }
        ConfigCommand::FromSim {
            endpoints,
            post,
            broker_host,
            broker_port,
            state_dir,
            output,
        } => {
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
    }
    Ok(())
}

/// Shows the diff, asks, writes, audits, reloads.
fn change_file(plan: &Plan, command: &str, args: &ChangeArgs) -> Result<()> {
    let path = &plan.path;
    if plan.is_empty() {
        println!("{}: no change", path.display());
        return Ok(());
    }
    println!("--- {}", path.display());
    println!("+++ {} (new)", path.display());
    if plan.changes.is_empty() {
        println!("(comments or layout only: no key changes)");
    } else {
        print!("{}", config_edit::render_diff(&plan.changes));
    }
    if !args.yes && !confirm(path)? {
        bail!("not written: {} is unchanged", path.display());
    }
    let entry = plan.commit(command, &config_edit::current_user())?;
    println!(
        "{} written (previous version: {}); change {} recorded in {}",
        path.display(),
        config_edit::prev_path(path).display(),
        entry.id,
        config_edit::audit_log_path(path).display()
    );
    if args.no_reload {
        println!("not reloaded (--no-reload): systemctl reload bcp-agent applies it");
        return Ok(());
    }
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(|| plan.config.control.socket.clone());
    reload(&socket, path)
}

/// Asks on the terminal; refuses to guess when there is none.
fn confirm(path: &Path) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "not written: stdin is not a terminal, so nobody can confirm; add --yes to write {}",
            path.display()
        );
    }
    print!("Write {} and reload the agent? [y/N] ", path.display());
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// Tells the agent at `socket` to reload and says what that did.
fn reload(socket: &Path, path: &Path) -> Result<()> {
    let report = match control::reload(socket) {
        Ok(Some(report)) => report,
        Ok(None) => {
            println!(
                "bcp-agent is not running (nothing at {}): the change applies when it starts",
                socket.display()
            );
            return Ok(());
        }
        Err(e) => {
            return Err(e.context(format!(
                "{} is written, but the agent did not reload it; it keeps running with its previous settings \
                 (journalctl -u bcp-agent; systemctl reload bcp-agent to try again)",
                path.display()
            )))
        }
    };
    println!("bcp-agent reloaded {}", report.config.display());
    if !report.applied.is_empty() {
        println!("  in effect now:        {}", report.applied.join(", "));
    }
    if !report.restarted.is_empty() {
        println!("  devices restarted:    {}", report.restarted.join(", "));
    }
    if !report.needs_restart.is_empty() {
        println!(
            "  at the next restart:  {} (systemctl restart bcp-agent)",
            report.needs_restart.join(", ")
        );
    }
    if report.audit_records > 0 {
        println!(
            "  audit entries queued for central: {}",
            report.audit_records
        );
    }
    Ok(())
}
