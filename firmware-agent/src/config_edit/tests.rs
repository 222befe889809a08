#![allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report

use super::*;

const FILE: &str = r#"# Post TJ-DYU, lane 1. Ask Ivan before changing the weighbridge.
[post]
id = "TJ-DYU-01"
lane = "L1"

[weighbridge]
name = "wb1"
path = "/dev/serial/by-id/usb-FTDI-if00"
protocol = "toledo-continuous"

[camera]
name = "cam1"
folder = "/var/lib/bcp/camera/cam1"

[lane]
# Slow plate reads on this lane: keep crossings open a bit longer.
close_after_ms = 3000 # ms
tailgate_gap_ms = 1500

[outbox]
path = "/var/lib/bcp/outbox.db"

[sync]
broker_host = "central.example"
broker_port = 8883
"#;

#[test]
fn set_changes_one_value_and_keeps_every_comment_and_line() -> Result<()> {
    let new = set_value(FILE, "lane.close_after_ms", "5000")?;
    assert_eq!(
        new,
        FILE.replace("close_after_ms = 3000 # ms", "close_after_ms = 5000 # ms"),
        "only the value changed"
    );
    let cfg = check_text(&new, Path::new("agent.toml"))?;
    assert_eq!(cfg.lane.close_after_ms, 5000);
    Ok(())
}

#[test]
fn set_reads_the_value_as_toml_or_as_the_string_the_key_holds() -> Result<()> {
    // Without quotes, for a key that holds a string today.
    let new = set_value(FILE, "post.lane", "L2")?;
    assert!(new.contains("lane = \"L2\"\n"), "{new}");
    let new = set_value(FILE, "post.lane", "12")?;
    assert!(
        new.contains("lane = \"12\"\n"),
        "a number for a string key: {new}"
    );
    // A new key and a new table; an array.
    let new = set_value(FILE, "anpr.formats", r#"["TJ", "UZ"]"#)?;
    assert!(
        new.ends_with("[anpr]\nformats = [\"TJ\", \"UZ\"]\n"),
        "{new}"
    );
    assert_eq!(
        check_text(&new, Path::new("a.toml"))?.anpr.formats,
        ["TJ", "UZ"]
    );
    let new = set_value(FILE, "weighbridge.checksum", "false")?;
    assert!(!check_text(&new, Path::new("a.toml"))?.weighbridge.checksum);
    // A table is not a value.
    let e = format!("{:#}", set_value(FILE, "lane", "1").unwrap_err());
    assert!(e.contains("lane is a table"), "{e}");
    let e = format!("{:#}", set_value(FILE, "post.id.x", "1").unwrap_err());
    assert!(e.contains("post.id is not a table"), "{e}");
    Ok(())
}

#[test]
fn errors_name_the_file_the_line_the_key_and_what_would_be_valid() {
    // A window the validation refuses: the line of the key is found.
    let bad = set_value(FILE, "lane.tailgate_gap_ms", "9000").unwrap();
    let e = format!(
        "{:#}",
        check_text(&bad, Path::new("/etc/bcp/agent.toml")).unwrap_err()
    );
    assert!(
        e.contains("/etc/bcp/agent.toml (line 18)") && e.contains("lane.tailgate_gap_ms = 9000"),
        "{e}"
    );
    assert!(e.contains("longer than lane.close_after_ms"), "{e}");
    // A key that does not exist: the parser names it and its line.
    let bad = set_value(FILE, "lane.close_after_secs", "3").unwrap();
    let e = format!(
        "{:#}",
        check_text(&bad, Path::new("agent.toml")).unwrap_err()
    );
    assert!(
        e.contains("close_after_secs") && e.contains("line 19"),
        "{e}"
    );
    // A wrong type.
    let bad = set_value(FILE, "sync.broker_port", "\"x\"").unwrap();
    let e = format!(
        "{:#}",
        check_text(&bad, Path::new("agent.toml")).unwrap_err()
    );
    assert!(e.contains("line 25") && e.contains("broker_port"), "{e}");
    assert_eq!(key_line(FILE, "post.id"), Some(3));
    assert_eq!(key_line(FILE, "lane"), Some(15), "a table: its header");
    assert_eq!(key_line(FILE, "metrics.listen"), None);
}

#[test]
fn the_diff_is_key_by_key() -> Result<()> {
    let new = set_value(FILE, "lane.close_after_ms", "5000")?;
    let new = set_value(&new, "lane.scan_wait_ms", "0")?;
    let new = new.replace("tailgate_gap_ms = 1500\n", "");
    let changes = diff(FILE, &new)?;
    let keys: Vec<(&str, Option<&str>, Option<&str>)> = changes
        .iter()
        .map(|c| (c.key.as_str(), c.old.as_deref(), c.new.as_deref()))
        .collect();
    assert_eq!(
        keys,
        [
            ("lane.close_after_ms", Some("3000"), Some("5000")),
            ("lane.scan_wait_ms", None, Some("0")),
            ("lane.tailgate_gap_ms", Some("1500"), None),
        ]
    );
    assert_eq!(
        render_diff(&changes),
        "- lane.close_after_ms = 3000\n+ lane.close_after_ms = 5000\n+ lane.scan_wait_ms = 0\n- lane.tailgate_gap_ms = 1500\n"
    );
    // Comments and layout alone are no change.
    assert!(diff(FILE, &FILE.replace("# ms", "# milliseconds"))?.is_empty());
    Ok(())
}

#[test]
fn an_atomic_write_keeps_the_mode_and_leaves_no_temp_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, "old\n")?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640))?;
    let meta = std::fs::metadata(&path)?;
    write_atomic(&path, b"new\n", Some(&meta))?;
    assert_eq!(std::fs::read_to_string(&path)?, "new\n");
    let after = std::fs::metadata(&path)?;
    assert_eq!(after.permissions().mode() & 0o7777, 0o640);
    assert_eq!((after.uid(), after.gid()), (meta.uid(), meta.gid()));
    assert_ne!(
        after.ino(),
        meta.ino(),
        "a new file renamed over the old one"
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    assert_eq!(names, ["agent.toml"], "no temp file left");

    // A folder that cannot be written: the file is untouched.
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro)?;
    std::fs::write(ro.join("agent.toml"), "old\n")?;
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555))?;
    let refused = write_atomic(&ro.join("agent.toml"), b"new\n", None);
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755))?;
    // Root writes anyway; anyone else is refused and the old file stays.
    if refused.is_err() {
        assert_eq!(std::fs::read_to_string(ro.join("agent.toml"))?, "old\n");
    }
    Ok(())
}

#[test]
fn a_committed_plan_keeps_the_previous_version_and_audits_the_change() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, FILE)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640))?;

    let plan = Plan::set(&path, "lane.close_after_ms", "4000")?;
    assert!(!plan.is_empty());
    let entry = plan.commit("set", "ana")?;
    assert_eq!(std::fs::read_to_string(prev_path(&path))?, FILE);
    let now = std::fs::read_to_string(&path)?;
    assert!(now.contains("close_after_ms = 4000 # ms"));
    assert_eq!(entry.sha256, sha256_hex(now.as_bytes()));
    assert_eq!(entry.previous_sha256, Some(sha256_hex(FILE.as_bytes())));
    assert_eq!(
        (entry.user.as_str(), entry.command.as_str()),
        ("ana", "set")
    );
    assert_eq!(
        entry.changes,
        [KeyChange {
            key: "lane.close_after_ms".into(),
            old: Some("3000".into()),
            new: Some("4000".into()),
        }]
    );
    let log = audit_log_path(&path);
    assert_eq!(log, dir.path().join("agent.toml.audit.jsonl"));
    assert_eq!(
        std::fs::metadata(&log)?.permissions().mode() & 0o777,
        0o640,
        "readable where the config is, writable by its owner only"
    );

    // A second change: appended; a reader from the first entry's end sees only it.
    let first = read_audit(&log, 0)?;
    assert_eq!(first.entries, std::slice::from_ref(&entry));
    let replacement = dir.path().join("new.toml");
    std::fs::write(&replacement, now.replace("lane = \"L1\"", "lane = \"L2\""))?;
    let second = Plan::apply(&path, &replacement)?.commit("apply", "ivan")?;
    let again = read_audit(&log, first.next_offset)?;
    assert_eq!(again.entries, std::slice::from_ref(&second));
    assert_eq!(second.changes[0].key, "post.lane");
    assert_eq!(std::fs::read_to_string(prev_path(&path))?, now);

    // An invalid new file is refused before anything is written.
    std::fs::write(
        &replacement,
        now.replace("broker_port = 8883", "broker_port = 0"),
    )?;
    let e = format!("{:#}", Plan::apply(&path, &replacement).unwrap_err());
    assert!(
        e.contains("sync.broker_port = 0") && e.contains("line 25"),
        "{e}"
    );
    assert_eq!(read_audit(&log, 0)?.entries.len(), 2);
    Ok(())
}

#[test]
fn the_audit_reader_takes_complete_lines_only_and_skips_garbage() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("a.audit.jsonl");
    let entry = ConfigChange {
        id: uuid::Uuid::now_v7(),
        at: chrono::Utc::now(),
        user: "ana".into(),
        command: "set".into(),
        file: "/etc/bcp/agent.toml".into(),
        changes: vec![],
        sha256: "00".into(),
        previous_sha256: None,
    };
    let line = serde_json::to_string(&entry)?;
    std::fs::write(&log, format!("{line}\nnot json\n{}", &line[..10]))?;
    let read = read_audit(&log, 0)?;
    assert_eq!(read.entries, std::slice::from_ref(&entry));
    assert_eq!(read.bad_lines.len(), 1);
    assert_eq!(
        read.next_offset as usize,
        line.len() + 1 + "not json\n".len()
    );
    // The cut line, completed later, is read then.
    std::fs::write(&log, format!("{line}\nnot json\n{line}\n"))?;
    assert_eq!(
        read_audit(&log, read.next_offset)?.entries,
        std::slice::from_ref(&entry)
    );
    // A log shorter than the offset was rotated: read from the start.
    std::fs::write(&log, format!("{line}\n"))?;
    assert_eq!(read_audit(&log, 10_000)?.entries, [entry]);
    assert!(read_audit(&dir.path().join("none"), 0)?.entries.is_empty());
    Ok(())
}
