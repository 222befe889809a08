//! # Changing the configuration safely (`bcpctl config set | apply`)
//!
//! A change goes through one path, whatever its source (one key, or a whole new file):
//! 1. **Edit** the text, not a re-serialised struct: [`set_value`] edits one key with
//!    `toml_edit`, so every comment, blank line and the order of the rest of the file stay as
//!    the technician left them (a comment on the changed line too).
//! 2. **Diff** key by key ([`diff`]): what the file said before and says now, as TOML text.
//! 3. **Check** the result with the same code as `bcpctl config validate` and the agent's start
//!    ([`check_text`]): parse errors carry their line from the TOML parser; the checks of
//!    [`AgentConfig::validate`] name their key, and [`check_text`] adds that key's line.
//! 4. **Write** ([`write_atomic`]): a temp file in the same folder, fsync, rename over the file,
//!    fsync the folder; the file keeps its mode, owner and group. The version it replaces is
//!    kept as `<file>.prev` ([`prev_path`]), written the same way first.
//! 5. **Audit** ([`append_audit`]): one JSON line ([`ConfigChange`]: who, when, which keys,
//!    old -> new, the SHA-256 of the new file) appended and fsynced to `<file>.audit.jsonl`
//!    ([`audit_log_path`]), beside the file so that the agent, which may read its config
//!    folder, finds it. The agent turns each new line into a sealed record of its outbox
//!    ([`crate::reload::forward_audit`]), so the log reaches central like any record.
//!
//! A reader of the audit log reads only complete lines ([`read_audit`]); a line cut short by a
//! crash is left for the next read, a line that is not an entry is reported and skipped.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use bcp_record::{ConfigChange, KeyChange};
use sha2::{Digest as _, Sha256};
use toml_edit::{DocumentMut, Item, Value};

use crate::config::AgentConfig;

/// Parses and validates a config's text as the agent would; `file` names it in errors.
///
/// Errors say the file, the line and the key, and what would be valid.
pub fn check_text(text: &str, file: &Path) -> Result<AgentConfig> {
    let cfg: AgentConfig = toml::from_str(text)
        .with_context(|| format!("parsing the agent config {}", file.display()))?;
    if let Err(e) = cfg.validate() {
        let message = format!("{e:#}");
        let line = leading_key(&message).and_then(|key| key_line(text, key));
        return Err(match line {
            Some(line) => e.context(format!(
                "invalid agent config {} (line {line})",
                file.display()
            )),
            None => e.context(format!("invalid agent config {}", file.display())),
        });
    }
    Ok(cfg)
}

/// The dotted key a validation message starts with (`lane.scan_wait_ms = 1: ...`).
fn leading_key(message: &str) -> Option<&str> {
    let end = message
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'))
        .unwrap_or(message.len());
    let key = message[..end].trim_end_matches('.');
    (!key.is_empty()).then_some(key)
}

/// The 1-based line where `dotted` (or, if absent, its nearest table) is written in `text`.
pub fn key_line(text: &str, dotted: &str) -> Option<usize> {
    let doc = toml_edit::Document::parse(text).ok()?;
    let mut table: &dyn toml_edit::TableLike = doc.as_table();
    let mut found = None;
    for part in dotted.split('.') {
        let Some((key, item)) = table.get_key_value(part) else {
            break;
        };
        if let Some(span) = key.span() {
            found = Some(span.start);
        }
        match item.as_table_like() {
            Some(t) => table = t,
            None => break,
        }
    }
    let offset = found?;
    Some(text.get(..offset)?.matches('\n').count() + 1)
}

/// `text` with `key` (dotted, as `bcpctl config set` takes it) set to `value`.
///
/// `value` is read as TOML (`2000`, `true`, `"L1"`, `["TJ", "UZ"]`); where that fails, or where
/// the key holds a string today and the value reads as something else, it is taken as a string,
/// so `bcpctl config set post.lane L2` needs no quotes. The rest of the file is kept as written,
/// the comments around the key too; missing tables are added.
pub fn set_value(text: &str, key: &str, value: &str) -> Result<String> {
    let mut doc: DocumentMut = text.parse().context("the file is not valid TOML")?;
    let parts = toml_edit::Key::parse(key).map_err(|e| {
        anyhow::anyhow!("{key:?} is not a key: {e}; write it dotted, e.g. lane.close_after_ms")
    })?;
    let Some((last, tables)) = parts.split_last() else {
        bail!("no key given: write it dotted, e.g. lane.close_after_ms");
    };
    let mut table: &mut dyn toml_edit::TableLike = doc.as_table_mut();
    let mut path = String::new();
    for part in tables {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(part.get());
        let item = table
            .entry(part.get())
            .or_insert_with(|| Item::Table(toml_edit::Table::new()));
        table = item.as_table_like_mut().with_context(|| {
            format!("{path} is not a table, so {key} cannot be set; edit the file and use bcpctl config apply")
        })?;
    }
    let old = table.get(last.get());
    if matches!(old, Some(item) if item.is_table_like() || item.is_array_of_tables()) {
        bail!("{key} is a table: set one of its keys ({key}.<name>), or edit the file and use bcpctl config apply");
    }
    let old_value = old.and_then(Item::as_value);
    let mut new: Value = match value.parse::<Value>() {
        Ok(v) if v.is_str() || !old_value.is_some_and(Value::is_str) => v,
        _ => Value::from(value),
    };
    match old_value {
        Some(old) => *new.decor_mut() = old.decor().clone(),
        None => new.decor_mut().clear(),
    }
    match table.get_mut(last.get()) {
        // In place: the key keeps its position and the comment lines above it.
        Some(item) => *item = Item::Value(new),
        None => {
            table.insert(last.get(), Item::Value(new));
        }
    }
    Ok(doc.to_string())
}

/// Every key of a config's text, dotted, with its value as TOML text (without comments).
/// Arrays of tables are numbered (`limits.hotlist[0].plate`).
pub fn flatten(text: &str) -> Result<BTreeMap<String, String>> {
    let doc: DocumentMut = text.parse().context("the file is not valid TOML")?;
    let mut out = BTreeMap::new();
    flatten_table(doc.as_table(), "", &mut out);
    Ok(out)
}

fn flatten_table(
    table: &dyn toml_edit::TableLike,
    prefix: &str,
    out: &mut BTreeMap<String, String>,
) {
    for (key, item) in table.iter() {
        let dotted = if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        };
        match item {
            Item::None => {}
            Item::Value(v) => {
                let mut v = v.clone();
                v.decor_mut().clear();
                out.insert(dotted, v.to_string());
            }
            Item::Table(t) => flatten_table(t, &dotted, out),
            Item::ArrayOfTables(a) => {
                for (i, t) in a.iter().enumerate() {
                    flatten_table(t, &format!("{dotted}[{i}]"), out);
                }
            }
        }
    }
}

/// What changed from `old` to `new`, key by key, in key order.
pub fn diff(old: &str, new: &str) -> Result<Vec<KeyChange>> {
    let (old, new) = (flatten(old)?, flatten(new)?);
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    Ok(keys
        .into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| KeyChange {
            key: k.clone(),
            old: old.get(k).cloned(),
            new: new.get(k).cloned(),
        })
        .collect())
}

/// A diff as a technician reads it: `- key = old` / `+ key = new`.
pub fn render_diff(changes: &[KeyChange]) -> String {
    let mut out = String::new();
    for c in changes {
        if let Some(old) = &c.old {
            out.push_str(&format!("- {} = {old}\n", c.key));
        }
        if let Some(new) = &c.new {
            out.push_str(&format!("+ {} = {new}\n", c.key));
        }
    }
    out
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    bcp_record::seal::to_hex(&Sha256::digest(bytes))
}

/// Where the version a change replaced is kept: `agent.toml.prev`.
pub fn prev_path(config: &Path) -> PathBuf {
    sibling(config, ".prev")
}

/// The audit log of changes to `config`: `agent.toml.audit.jsonl`, beside it.
pub fn audit_log_path(config: &Path) -> PathBuf {
    sibling(config, ".audit.jsonl")
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Who is making a change: `SUDO_USER` (the person behind `sudo`), else `LOGNAME`, else
/// `USER`, else `uid N`.
pub fn current_user() -> String {
    ["SUDO_USER", "LOGNAME", "USER"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| match std::fs::metadata("/proc/self") {
            Ok(meta) => format!("uid {}", meta.uid()),
            Err(_) => "unknown".to_owned(),
        })
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new file, never a mix:
/// a temp file in the same folder, fsync, rename, fsync of the folder. The new file gets the
/// mode, owner and group of `like` (the file it replaces), else mode 0640 and the caller's.
pub fn write_atomic(path: &Path, bytes: &[u8], like: Option<&std::fs::Metadata>) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        let mode = like.map_or(0o640, |m| m.mode() & 0o7777);
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {mode:o} {}", tmp.display()))?;
        if let Some(m) = like {
            let mine = file.metadata()?;
            if (mine.uid(), mine.gid()) != (m.uid(), m.gid()) {
                std::os::unix::fs::fchown(&file, Some(m.uid()), Some(m.gid())).with_context(|| {
                    format!(
                        "giving {} the owner {} and group {} of the file it replaces (run bcpctl with sudo)",
                        tmp.display(),
                        m.uid(),
                        m.gid()
                    )
                })?;
            }
        }
        file.sync_all()
            .with_context(|| format!("fsync {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("fsync of the folder {}", dir.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Appends `entry` as one JSON line to the audit log at `path` and fsyncs it. A new log gets
/// the owner, group and read bits of `like` (the config file), so that whoever may read the
/// config (the agent) may read its log; nobody but the owner may write it.
pub fn append_audit(path: &Path, entry: &ConfigChange, like: &std::fs::Metadata) -> Result<()> {
    let mut line = serde_json::to_vec(entry).context("encoding the audit entry")?;
    line.push(b'\n');
    let created = !path.exists();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening the audit log {}", path.display()))?;
    if created {
        let mode = (like.mode() & 0o644) | 0o600;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {mode:o} {}", path.display()))?;
        let mine = file.metadata()?;
        if (mine.uid(), mine.gid()) != (like.uid(), like.gid()) {
            std::os::unix::fs::fchown(&file, Some(like.uid()), Some(like.gid()))
                .with_context(|| format!("chown of the audit log {}", path.display()))?;
        }
    }
    file.write_all(&line)
        .with_context(|| format!("appending to the audit log {}", path.display()))?;
    file.sync_data()
        .with_context(|| format!("fsync of the audit log {}", path.display()))?;
    if created {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("fsync of the folder {}", dir.display()))?;
        }
    }
    Ok(())
}

/// The audit log's complete entries from byte `offset` on.
#[derive(Debug, Default)]
pub struct AuditRead {
    pub entries: Vec<ConfigChange>,
    /// Where the next read starts: the end of the last complete line.
    pub next_offset: u64,
    /// Lines that are not entries, by their byte offset, with the parse error.
    pub bad_lines: Vec<(u64, String)>,
}

/// Reads the complete lines of the audit log at `path` from byte `offset`. A log shorter than
/// `offset` was replaced (rotated): it is read from the start. A missing log reads as empty.
pub fn read_audit(path: &Path, offset: u64) -> Result<AuditRead> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AuditRead::default()),
        Err(e) => {
            return Err(e).with_context(|| format!("reading the audit log {}", path.display()))
        }
    };
    let start = if offset > bytes.len() as u64 {
        0
    } else {
        offset
    };
    let mut read = AuditRead {
        next_offset: start,
        ..AuditRead::default()
    };
    let mut at = usize::try_from(start).unwrap_or(0);
    while let Some(len) = bytes[at..].iter().position(|&b| b == b'\n') {
        let line = &bytes[at..at + len];
        if !line.trim_ascii().is_empty() {
            match serde_json::from_slice::<ConfigChange>(line) {
                Ok(entry) => read.entries.push(entry),
                Err(e) => read.bad_lines.push((at as u64, e.to_string())),
            }
        }
        at += len + 1;
        read.next_offset = at as u64;
    }
    Ok(read)
}

/// A change ready to be written: the file's text before and after, what changed, and the
/// config it makes (validated).
#[derive(Debug)]
pub struct Plan {
    pub path: PathBuf,
    pub old_text: String,
    pub new_text: String,
    pub changes: Vec<KeyChange>,
    pub config: AgentConfig,
}

impl Plan {
    /// `bcpctl config set`: `key` of the file at `path` set to `value`.
    pub fn set(path: &Path, key: &str, value: &str) -> Result<Self> {
        let old_text = read(path)?;
        let new_text = set_value(&old_text, key, value)
            .with_context(|| format!("setting {key} in {}", path.display()))?;
        Self::new(path, old_text, new_text)
    }

    /// Several keys set at once, in order (central's `config` list): all or nothing.
    pub fn set_many(path: &Path, settings: &[(&str, &str)]) -> Result<Self> {
        let old_text = read(path)?;
        let mut new_text = old_text.clone();
        for (key, value) in settings {
            new_text = set_value(&new_text, key, value)
                .with_context(|| format!("setting {key} in {}", path.display()))?;
        }
        Self::new(path, old_text, new_text)
    }

    /// `bcpctl config apply`: the file at `path` replaced by the text of `new_file`.
    pub fn apply(path: &Path, new_file: &Path) -> Result<Self> {
        let old_text = read(path)?;
        let new_text = read(new_file)?;
        Self::new(path, old_text, new_text)
    }

    fn new(path: &Path, old_text: String, new_text: String) -> Result<Self> {
        let config = check_text(&new_text, path)?;
        let changes = diff(&old_text, &new_text)?;
        Ok(Self {
            path: path.to_path_buf(),
            old_text,
            new_text,
            changes,
            config,
        })
    }

    /// Nothing would change (the texts may still differ in comments or layout).
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.old_text == self.new_text
    }

    /// Keeps the old file as `.prev`, writes the new one atomically, appends the audit entry;
    /// returns the entry. `command` is `set` or `apply`.
    pub fn commit(&self, command: &str, user: &str) -> Result<ConfigChange> {
        let meta = std::fs::metadata(&self.path)
            .with_context(|| format!("reading the mode of {}", self.path.display()))?;
        write_atomic(
            &prev_path(&self.path),
            self.old_text.as_bytes(),
            Some(&meta),
        )
        .context("keeping the previous version")?;
        write_atomic(&self.path, self.new_text.as_bytes(), Some(&meta))?;
        let entry = ConfigChange {
            id: uuid::Uuid::now_v7(),
            at: chrono::Utc::now(),
            user: user.to_owned(),
            command: command.to_owned(),
            file: self.path.display().to_string(),
            changes: self.changes.clone(),
            sha256: sha256_hex(self.new_text.as_bytes()),
            previous_sha256: Some(sha256_hex(self.old_text.as_bytes())),
        };
        let log = audit_log_path(&self.path);
        append_audit(&log, &entry, &meta).with_context(|| {
            format!(
                "{} was written but the change is NOT in the audit log {}",
                self.path.display(),
                log.display()
            )
        })?;
        Ok(entry)
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests;
