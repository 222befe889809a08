//! # Reloading the configuration while the agent runs
//!
//! SIGHUP (`systemctl reload bcp-agent`) and the control API's `reload` (which
//! `bcpctl config set | apply` sends) both reach the main loop as a [`ReloadRequest`]. The loop
//! re-reads the file with the same check as the start ([`crate::config_edit::check_text`]).
//! An invalid file is refused, logged at ERROR, and the running config stays as it was. A
//! valid one is compared with the running config key by key ([`classify`]):
//!
//! | Keys | Applied |
//! |---|---|
//! | `lane.*` (the correlator's windows) | at once; crossings still open are closed by the new windows |
//! | `limits.*` (and the hotlist file, re-read on every reload) | at once, from the next crossing closed |
//! | `log.level` | at once |
//! | `evidence.*` (the images recorded with crossings, the frame cache's bounds) | at once, from the next frame and crossing; a smaller cache evicts its oldest frames at once |
//! | `weighbridge.*`, `dimensions.*` (not `name`) | that device alone is restarted, once no vehicle is on the bridge (an axle scale's summing, `weighbridge.axle_scale`, is made anew with it) |
//! | `camera.*` (not `name`, `presence`, `motion_*`) | the camera thread is restarted with the same ANPR engine; frames not yet read stay in the folder for it |
//! | `scanner.*` (not `name`) | the scanner's feed or drop-folder task alone is restarted |
//! | anything else: `post`, `anpr`, `outbox`, `sync`, `control`, `metrics`, `rear_camera`, `presence`, `camera.presence` and `camera.motion_*`, a device's `name`, adding or removing `[dimensions]` or `[scanner]` | at the next start (`systemctl restart bcp-agent`); logged at WARN and reported |
//!
//! Nothing in flight is lost: a device being restarted hands everything it has read to the lane
//! before the new one starts (the lane's channel outlives both), and the lane, the outbox and the
//! uplink are never restarted.
//!
//! Every reload, valid or not, and every start also forward the config audit log
//! ([`crate::config_edit::audit_log_path`]) to central ([`forward_audit`]): each new entry
//! becomes a sealed record of the outbox ([`bcp_record::Crossing::config_change`]); a cursor
//! file beside the outbox (`<outbox>.audit-cursor`) says how far the log was read, and the
//! outbox's idempotency per record id covers a crash between the append and the cursor.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use bcp_sync::outbox::Outbox;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::config::AgentConfig;
use crate::config_edit;
use crate::control::protocol::ReloadReport;

/// A request to re-read the config; `reply` (the control API's) gets the outcome.
#[derive(Debug)]
pub struct ReloadRequest {
    pub reply: Option<oneshot::Sender<Result<ReloadReport, String>>>,
}

/// Where reload requests go: the main loop.
#[derive(Debug, Clone)]
pub struct ReloadHandle(mpsc::Sender<ReloadRequest>);

impl ReloadHandle {
    /// A handle and the loop's receiving end.
    pub fn new() -> (Self, mpsc::Receiver<ReloadRequest>) {
        let (tx, rx) = mpsc::channel(8);
        (Self(tx), rx)
    }

    /// SIGHUP: reload, nobody waits for the outcome (it is logged). Requests beyond a handful
    /// waiting are dropped: one reload reads the latest file anyway.
    pub fn signal(&self) {
        let _ = self.0.try_send(ReloadRequest { reply: None });
    }

    /// The control API: reload and say what happened.
    pub async fn request(&self) -> Result<ReloadReport, String> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(ReloadRequest { reply: Some(tx) })
            .await
            .map_err(|_| "the agent is stopping".to_owned())?;
        rx.await
            .map_err(|_| "the agent stopped before it reloaded".to_owned())?
    }
}

/// A device of the lane that a reload can restart on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Device {
    Weighbridge,
    Dimensions,
    Camera,
    Scanner,
}

/// What differs between the running config and a new one, by what it takes to apply.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Keys applied in place.
    pub in_place: Vec<String>,
    /// Devices to restart.
    pub devices: BTreeSet<Device>,
    /// Keys that wait for the next start.
    pub needs_restart: Vec<String>,
}

/// Sorts the changed keys from `old` to `new` (see the module documentation's table).
pub fn classify(old: &AgentConfig, new: &AgentConfig) -> Result<Delta> {
    let text = |c: &AgentConfig| toml::to_string(c).context("encoding the config");
    let changes = config_edit::diff(&text(old)?, &text(new)?)?;
    let mut delta = Delta::default();
    let both = |a: bool, b: bool| a && b;
    for change in changes {
        let key = change.key;
        let section = key.split(['.', '[']).next().unwrap_or_default();
        let field = key.strip_prefix(section).unwrap_or_default();
        let device = match section {
            "lane" | "limits" | "log" | "evidence" => {
                delta.in_place.push(key);
                continue;
            }
            _ if field == ".name" => None,
            // What frames the vehicles is chosen at start.
            "camera" if field.starts_with(".presence") || field.starts_with(".motion_") => None,
            "weighbridge" => Some(Device::Weighbridge),
            "camera" => Some(Device::Camera),
            "dimensions" if both(old.dimensions.is_some(), new.dimensions.is_some()) => {
                Some(Device::Dimensions)
            }
            "scanner" if both(old.scanner.is_some(), new.scanner.is_some()) => {
                Some(Device::Scanner)
            }
            _ => None,
        };
        match device {
            Some(d) => {
                delta.devices.insert(d);
            }
            None => delta.needs_restart.push(key),
        }
    }
    Ok(delta)
}

/// The config the agent runs after applying what [`classify`] found in `new`: `running` with
/// the in-place sections and the restarted devices' sections taken from `new`.
pub fn applied(running: &AgentConfig, new: &AgentConfig, delta: &Delta) -> AgentConfig {
    let mut out = running.clone();
    out.lane = new.lane.clone();
    out.limits = new.limits.clone();
    out.log = new.log.clone();
    out.evidence = new.evidence.clone();
    for d in &delta.devices {
        match d {
            Device::Weighbridge => out.weighbridge = new.weighbridge.clone(),
            Device::Dimensions => out.dimensions = new.dimensions.clone(),
            Device::Camera => {
                // What frames the vehicles stays as started (see the table).
                let running_camera = &running.camera;
                out.camera = crate::config::CameraConfig {
                    presence: running_camera.presence.clone(),
                    motion_on_fraction: running_camera.motion_on_fraction,
                    motion_on_frames: running_camera.motion_on_frames,
                    motion_off_fraction: running_camera.motion_off_fraction,
                    motion_quiet_ms: running_camera.motion_quiet_ms,
                    ..new.camera.clone()
                }
            }
            Device::Scanner => out.scanner = new.scanner.clone(),
        }
    }
    out
}

/// How far the audit log was forwarded into the outbox.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AuditCursor {
    log: PathBuf,
    offset: u64,
}

/// Where the audit cursor of the outbox at `outbox_path` lives.
pub fn audit_cursor_path(outbox_path: &Path) -> PathBuf {
    let mut name = outbox_path.file_name().unwrap_or_default().to_os_string();
    name.push(".audit-cursor");
    outbox_path.with_file_name(name)
}

/// Appends each entry of `config`'s audit log not yet forwarded to the outbox as a sealed
/// record of `lane`; returns how many entries were read. Lines that are not entries are logged
/// at WARN and skipped (they cannot be sent; the file keeps them).
pub fn forward_audit(config: &Path, outbox: &Outbox, lane: &str) -> Result<u64> {
    let log = config_edit::audit_log_path(config);
    let cursor_path = audit_cursor_path(outbox.path());
    let cursor: AuditCursor = match std::fs::read(&cursor_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => AuditCursor::default(),
        Err(e) => {
            return Err(e).with_context(|| format!("reading {}", cursor_path.display()));
        }
    };
    let offset = if cursor.log == log { cursor.offset } else { 0 };
    let read = config_edit::read_audit(&log, offset)?;
    for (at, error) in &read.bad_lines {
        tracing::warn!(log = %log.display(), byte = at, %error, "config audit log: a line that is not an entry; skipped");
    }
    for entry in &read.entries {
        let record = entry.to_record(outbox.post(), lane);
        let env = outbox
            .append(&record)
            .with_context(|| format!("queueing config change {} for central", entry.id))?;
        tracing::info!(seq = env.seq, user = %entry.user, command = %entry.command, changes = entry.changes.len(), sha256 = %entry.sha256, "config change queued for central");
    }
    if read.next_offset != offset || cursor.log != log {
        let bytes = serde_json::to_vec(&AuditCursor {
            log: log.clone(),
            offset: read.next_offset,
        })?;
        config_edit::write_atomic(&cursor_path, &bytes, None)
            .with_context(|| format!("saving the audit cursor {}", cursor_path.display()))?;
    }
    Ok(read.entries.len() as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report
mod tests {
    use super::*;
    use crate::sim_config::{for_simulator, sample_endpoints};

    fn config() -> AgentConfig {
        let sim = sample_endpoints();
        for_simulator(&sim, "TJ-1", "127.0.0.1", 1883, Path::new("/tmp/agent"))
    }

    #[test]
    fn what_frames_the_vehicles_waits_for_a_restart_even_when_the_camera_restarts() -> Result<()> {
        let old = config();
        let mut new = old.clone();
        new.camera.presence = Some("motion".into());
        new.camera.motion_quiet_ms = 5000;
        new.camera.poll_ms = 100;
        let delta = classify(&old, &new)?;
        assert_eq!(delta.devices, BTreeSet::from([Device::Camera]));
        assert_eq!(
            delta.needs_restart,
            ["camera.motion_quiet_ms", "camera.presence"]
        );
        let running = applied(&old, &new, &delta);
        assert_eq!(running.camera.poll_ms, 100, "the camera restarts");
        assert!(!running.camera.frames_by_motion(), "framing as started");
        assert_eq!(running.camera.motion_quiet_ms, old.camera.motion_quiet_ms);
        Ok(())
    }

    #[test]
    fn changes_are_sorted_by_what_they_take() -> Result<()> {
        let old = config();
        let mut new = old.clone();
        new.lane.close_after_ms = 4000;
        new.limits.max_gross_kg = Some(44_000.0);
        new.log.level = Some("debug".into());
        new.weighbridge.port.baud = 19_200;
        new.camera.poll_ms = 100;
        new.sync.broker_port = 8883;
        if let Some(s) = new.scanner.as_mut() {
            s.name = "xr2".into();
        }
        let delta = classify(&old, &new)?;
        assert_eq!(
            delta.in_place,
            ["lane.close_after_ms", "limits.max_gross_kg", "log.level"]
        );
        assert_eq!(
            delta.devices,
            BTreeSet::from([Device::Weighbridge, Device::Camera])
        );
        assert_eq!(delta.needs_restart, ["scanner.name", "sync.broker_port"]);

        let running = applied(&old, &new, &delta);
        assert_eq!(running.lane.close_after_ms, 4000);
        assert_eq!(running.weighbridge.port.baud, 19_200);
        assert_eq!(running.camera.poll_ms, 100);
        assert_eq!(running.sync.broker_port, 1883, "waits for a restart");
        assert_eq!(
            running.scanner.as_ref().map(|s| s.name.as_str()),
            old.scanner.as_ref().map(|s| s.name.as_str())
        );
        // Reloading the same file again: only what still waits for a restart.
        let again = classify(&running, &new)?;
        assert!(again.in_place.is_empty() && again.devices.is_empty());
        assert_eq!(again.needs_restart, ["scanner.name", "sync.broker_port"]);

        // Removing a device is a restart.
        let mut fewer = old.clone();
        fewer.dimensions = None;
        let delta = classify(&old, &fewer)?;
        assert!(delta.devices.is_empty());
        assert!(delta
            .needs_restart
            .iter()
            .all(|k| k.starts_with("dimensions.")));
        assert!(!delta.needs_restart.is_empty());
        Ok(())
    }

    #[test]
    fn audit_entries_reach_the_outbox_once() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("agent.toml");
        let text = toml::to_string(&self::config())?;
        std::fs::write(&config, &text)?;
        let outbox = Outbox::open(&dir.path().join("outbox.db"), "TJ-1")?;
        assert_eq!(forward_audit(&config, &outbox, "L1")?, 0, "no log yet");

        let plan = config_edit::Plan::set(&config, "lane.close_after_ms", "4000")?;
        let entry = plan.commit("set", "ana")?;
        assert_eq!(forward_audit(&config, &outbox, "L1")?, 1);
        assert_eq!(
            forward_audit(&config, &outbox, "L1")?,
            0,
            "the cursor moved"
        );
        let pending = outbox.pending(0, 10)?;
        assert_eq!(pending.len(), 1);
        let record = &pending[0].crossing;
        assert_eq!(record.id, entry.id);
        assert_eq!(record.config_change.as_ref(), Some(&entry));
        assert_eq!(record.flags[0].code, "config_change");
        assert!(record.weight.is_none() && record.plate.is_none());

        // A lost cursor: read again from the start, the outbox keeps one record per entry.
        std::fs::remove_file(audit_cursor_path(outbox.path()))?;
        assert_eq!(forward_audit(&config, &outbox, "L1")?, 1);
        assert_eq!(outbox.pending(0, 10)?.len(), 1);
        Ok(())
    }
}
