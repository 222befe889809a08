//! # Configuration from central: the `config` downlink list
//!
//! Central signs a list of settings for one post (`bcp-central lists publish --kind config`,
//! entries `{"key": "limits.max_gross_kg", "value": "40000"}`); the uplink verifies and keeps it
//! in the list store like any list. The agent's main loop compares every few seconds the
//! version held (`ListStore::version`, one indexed read) with the last one handled
//! ([`Cursor::is_pending`], kept in memory), and [`Cursor::apply`] writes a newer one into
//! the configuration file exactly as `bcpctl config set` would: all keys or none, validated by
//! the same code, atomically, the previous file kept as `.prev`, and one entry in the audit log
//! whose user is `central (config list vN)`. The loop then reloads, which applies the change and
//! sends the audit entry to central as a sealed record; so central sees, in its own store, that
//! and when the post took its settings.
//!
//! Only the sections a reload applies may be set ([`bcp_record::lists::CENTRAL_CONFIG_SECTIONS`]:
//! lane windows, limits, log level, the devices' settings). A list that names another key, or
//! that would make the file invalid, changes nothing and is logged at ERROR with the reason.
//! Either way its version is remembered in `<outbox>.config-list` ([`Cursor`]), so a list is
//! handled once, across restarts, and a technician's later local change is not overwritten by
//! the same list again.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use bcp_record::lists::{parse_entries, DownlinkList, KnownEntries, KIND_CONFIG};
use bcp_record::ConfigChange;
use serde::{Deserialize, Serialize};

use crate::config_edit::{self, Plan};

/// The version of the `config` list last handled (applied or refused), as the file keeps it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CursorFile {
    version: u64,
}

/// Where the cursor of the outbox at `outbox_path` lives.
pub fn cursor_path(outbox_path: &Path) -> PathBuf {
    let mut name = outbox_path.file_name().unwrap_or_default().to_os_string();
    name.push(".config-list");
    outbox_path.with_file_name(name)
}

/// What [`Cursor::apply`] did with a list.
#[derive(Debug)]
pub enum Applied {
    /// Written; reload to take it in.
    Changed(ConfigChange),
    /// The file already said so.
    Unchanged,
    /// Refused, nothing written; the reason.
    Refused(String),
}

/// How far the post has handled central's `config` lists: read from its file once, kept in
/// memory, written on every [`Cursor::apply`].
#[derive(Debug)]
pub struct Cursor {
    path: PathBuf,
    handled: u64,
}

impl Cursor {
    /// The cursor kept at `path` (none yet: nothing handled).
    pub fn open(path: PathBuf) -> Result<Self> {
        let handled = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<CursorFile>(&bytes)
                    .with_context(|| format!("reading {}", path.display()))?
                    .version
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Self { path, handled })
    }

    /// Whether a list of `version` (the one held, if any) is newer than the last handled.
    pub fn is_pending(&self, version: Option<u64>) -> bool {
        version.is_some_and(|v| v > self.handled)
    }

    /// Writes `list` into the config file at `config` (see the module documentation) and
    /// remembers its version. An `Err` is trouble with the files (the list is tried again
    /// later); a list that cannot be applied is [`Applied::Refused`].
    pub fn apply(&mut self, config: &Path, list: &DownlinkList) -> Result<Applied> {
        let outcome = match parse_entries(KIND_CONFIG, &list.entries) {
            Ok(Some(KnownEntries::Config(entries))) => {
                let settings: Vec<(&str, &str)> = entries
                    .iter()
                    .map(|e| (e.key.as_str(), e.value.as_str()))
                    .collect();
                match Plan::set_many(config, &settings) {
                    Ok(plan) if plan.is_empty() => Applied::Unchanged,
                    Ok(plan) => Applied::Changed(plan.commit(
                        ConfigChange::BY_CENTRAL,
                        &format!("central (config list v{})", list.version),
                    )?),
                    Err(e) => Applied::Refused(format!("{e:#}")),
                }
            }
            Ok(_) => Applied::Refused("not a config list".to_owned()),
            Err(e) => Applied::Refused(e),
        };
        let bytes = serde_json::to_vec(&CursorFile {
            version: list.version,
        })?;
        config_edit::write_atomic(&self.path, &bytes, None)
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.handled = list.version;
        Ok(outcome)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report
mod tests {
    use super::*;
    use crate::sim_config::{for_simulator, sample_endpoints};

    fn list(version: u64, entries: serde_json::Value) -> DownlinkList {
        DownlinkList {
            post: "TJ-1".into(),
            kind: KIND_CONFIG.into(),
            version,
            issued_at: chrono::Utc::now(),
            entries,
            key: String::new(),
            sig: String::new(),
        }
    }

    fn config_file(dir: &Path) -> PathBuf {
        let sim = sample_endpoints();
        let cfg = for_simulator(&sim, "TJ-1", "127.0.0.1", 1883, dir);
        let path = dir.join("agent.toml");
        std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
        path
    }

    #[test]
    fn a_newer_list_is_written_audited_as_central_and_handled_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = config_file(dir.path());
        let cursor_file = cursor_path(&dir.path().join("outbox.db"));
        let mut cursor = Cursor::open(cursor_file.clone()).unwrap();
        let l = list(
            7,
            serde_json::json!([
                {"key": "limits.max_gross_kg", "value": "30000"},
                {"key": "lane.close_after_ms", "value": "4000"}
            ]),
        );
        assert!(cursor.is_pending(Some(l.version)));
        let Applied::Changed(change) = cursor.apply(&path, &l).unwrap() else {
            panic!("not applied")
        };
        assert_eq!(change.user, "central (config list v7)");
        assert_eq!(change.command, "central");
        let keys: Vec<&str> = change.changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["lane.close_after_ms", "limits.max_gross_kg"]);
        let cfg = crate::AgentConfig::load(&path).unwrap();
        assert_eq!(cfg.limits.max_gross_kg, Some(30_000.0));
        assert_eq!(cfg.lane.close_after_ms, 4000);
        let audit = std::fs::read_to_string(config_edit::audit_log_path(&path)).unwrap();
        assert!(audit.contains("central (config list v7)"), "{audit}");
        assert!(config_edit::prev_path(&path).exists());

        assert!(!cursor.is_pending(Some(l.version)), "handled once");
        assert!(
            !Cursor::open(cursor_file.clone())
                .unwrap()
                .is_pending(Some(l.version)),
            "handled once, across a restart"
        );
        assert!(!cursor.is_pending(Some(6)));
        assert!(!cursor.is_pending(None));
        let again = list(8, l.entries.clone());
        assert!(matches!(
            cursor.apply(&path, &again).unwrap(),
            Applied::Unchanged
        ));
    }

    #[test]
    fn a_list_outside_the_allowed_sections_or_invalid_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = config_file(dir.path());
        let before = std::fs::read_to_string(&path).unwrap();
        let cursor_file = cursor_path(&dir.path().join("outbox.db"));
        let mut cursor = Cursor::open(cursor_file.clone()).unwrap();
        for (version, entries, want) in [
            (
                1,
                serde_json::json!([
                    {"key": "limits.max_gross_kg", "value": "30000"},
                    {"key": "sync.broker_host", "value": "\"10.9.9.9\""}
                ]),
                "[sync] stays with the technician",
            ),
            (
                2,
                serde_json::json!([{"key": "lane.close_after_ms", "value": "\"soon\""}]),
                "close_after_ms",
            ),
        ] {
            match cursor.apply(&path, &list(version, entries)).unwrap() {
                Applied::Refused(why) => assert!(why.contains(want), "{why}"),
                other => panic!("{other:?}"),
            }
            assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
            assert!(!config_edit::audit_log_path(&path).exists());
            assert_eq!(
                Cursor::open(cursor_file.clone()).unwrap().handled,
                version,
                "not retried"
            );
        }
    }
}
