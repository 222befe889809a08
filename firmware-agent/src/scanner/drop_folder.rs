//! The scanner's drop folder: one XML metadata file per scan, plus image files.
//!
//! ## The metadata file
//!
//! ```xml
//! <ScanResult>
//!   <ScanId>XR1-000123</ScanId>             <!-- required; letters, digits, '-', '_', '.' -->
//!   <ScannerId>XR-1</ScannerId>             <!-- required -->
//!   <Lane>L1</Lane>                         <!-- optional -->
//!   <ScanTime>2026-11-21T10:00:00Z</ScanTime> <!-- required, RFC 3339 with an offset -->
//!   <ConveyanceId>1234AB01</ConveyanceId>   <!-- optional: what the operator typed -->
//!   <Decision type="OPERATOR">NO_ALARM</Decision> <!-- required: ALARM | NO_ALARM | UNKNOWN;
//!                                                      type optional: MACHINE | OPERATOR -->
//!   <Images>                                <!-- optional; at most MAX_IMAGES -->
//!     <Image>XR1-000123_top.png</Image>     <!-- plain file names in the same folder -->
//!     <Image>XR1-000123_side.png</Image>
//!   </Images>
//! </ScanResult>
//! ```
//!
//! Element names are matched without their namespace; unknown elements are ignored (vendors add
//! their own). [`parse_scan_xml`] is pure and defensive: at most [`MAX_SCAN_FILE_BYTES`], UTF-8,
//! well-formed XML with no DTD (roxmltree refuses a DTD with declarations and any entity other
//! than the five predefined ones, so no billion laughs and no external entities), every text
//! field at most [`MAX_FIELD_CHARS`], image names plain file names (no `/`, `\`, `:`, `..`,
//! leading `.` or control characters: path traversal is an error), at most [`MAX_IMAGES`].
//!
//! ## The folder
//!
//! The scanner must make a file appear complete: write it under a dot-name or with a `.part`
//! suffix and rename it to `*.xml` (both are ignored until then). As a second guard, a file that
//! is not yet well-formed XML and was modified less than [`SETTLE`] ago is left for a later poll
//! rather than quarantined.
//!
//! Files are taken oldest first (modification time, then name). For each one:
//! - parsed, and its scan id not yet in `processed/`: moved to `processed/<scan id>.xml`, then
//!   the event is handed on (a place in the channel is reserved first, so a file that was moved
//!   is always handed on; a file that was handed on is never read again after a restart);
//! - its scan id already in `processed/`: moved to `quarantine/` with reason `duplicate`;
//! - anything else wrong: moved to `quarantine/<file name>` with `quarantine/<file name>.reason`
//!   saying why. An existing name in `quarantine/` is never overwritten (`.1`, `.2`, .. suffixes).
//!
//! Nothing is deleted; image files stay where they are. An I/O error leaves the file in place and
//! it is tried again on the next poll.
//!
//! ## Watched with inotify, and listed
//!
//! The loop wakes on inotify (`IN_MOVED_TO`, `IN_CLOSE_WRITE` on the folder: a file renamed
//! into it, or closed after writing) and lists the folder then, so a scan is read as soon as it
//! is complete. It also lists the folder every [`POLL_INTERVAL`], whatever inotify says:
//! scanner workstations usually deliver over an SMB/CIFS or NFS mount, where inotify does not
//! see writes made by the remote side; files that arrived while the agent was down need a
//! listing anyway; and a file that is not yet settled ([`SETTLE`]) is looked at again without
//! a new event. Where inotify cannot be set up (no watches left), the agent logs it and lists
//! only. Five listings a second of a folder that is emptied as it goes cost nothing measurable.
//! (inotify through `rustix`, already a dependency, rather than the `notify` crate's tree.)

use bcp_record::{ScanDecision, ScanEvent};
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};

/// The largest metadata file accepted; checked before reading.
pub const MAX_SCAN_FILE_BYTES: usize = 256 * 1024;
/// The most images one scan may list.
pub const MAX_IMAGES: usize = 64;
/// The longest text field (ids, file names) accepted.
pub const MAX_FIELD_CHARS: usize = 255;
/// How often the folder is listed.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long a file that is not yet well-formed may still be being written.
pub const SETTLE: Duration = Duration::from_secs(2);
/// Where parsed files go, beside the drop folder's files.
pub const PROCESSED_DIR: &str = "processed";
/// Where refused files go, each with a `.reason` file.
pub const QUARANTINE_DIR: &str = "quarantine";

/// Why a metadata file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScanFileError {
    #[error("file is {size} bytes, over the limit of {max}")]
    TooLarge { size: u64, max: usize },
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error("not well-formed XML (DTDs and custom entities are refused): {0}")]
    Xml(#[from] roxmltree::Error),
    #[error("root element is <{0}>, expected <ScanResult>")]
    WrongRoot(String),
    #[error("missing or empty <{0}>")]
    Missing(&'static str),
    #[error("<{field}> is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("<ScanId> {0:?}: use letters, digits, '-', '_' or '.' (not leading)")]
    BadScanId(String),
    #[error("<ScanTime> {value:?} is not an RFC 3339 time: {reason}")]
    BadTime { value: String, reason: String },
    #[error("<Decision> {0:?}: use ALARM, NO_ALARM or UNKNOWN")]
    BadDecision(String),
    #[error("<Decision type> {0:?}: use MACHINE or OPERATOR")]
    BadDecisionType(String),
    #[error("<Image> {0:?} is not a plain file name (path traversal refused)")]
    BadImageName(String),
    #[error("{count} images, over the limit of {max}")]
    TooManyImages { count: usize, max: usize },
}

/// Parses one metadata file's bytes into a scan event. Pure: no I/O, no clock.
pub fn parse_scan_xml(bytes: &[u8]) -> Result<ScanEvent, ScanFileError> {
    if bytes.len() > MAX_SCAN_FILE_BYTES {
        return Err(ScanFileError::TooLarge {
            size: bytes.len() as u64,
            max: MAX_SCAN_FILE_BYTES,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| ScanFileError::NotUtf8)?;
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: 10_000,
    };
    let doc = roxmltree::Document::parse_with_options(text, options)?;
    let root = doc.root_element();
    if root.tag_name().name() != "ScanResult" {
        return Err(ScanFileError::WrongRoot(root.tag_name().name().to_owned()));
    }
    let child = |name: &str| {
        root.children()
            .find(|n| n.is_element() && n.tag_name().name() == name)
    };
    let optional = |name: &'static str| -> Result<Option<String>, ScanFileError> {
        let Some(node) = child(name) else {
            return Ok(None);
        };
        let value = node.text().unwrap_or_default().trim();
        if value.chars().count() > MAX_FIELD_CHARS {
            return Err(ScanFileError::TooLong {
                field: name,
                max: MAX_FIELD_CHARS,
            });
        }
        Ok((!value.is_empty()).then(|| value.to_owned()))
    };
    let required = |name: &'static str| optional(name)?.ok_or(ScanFileError::Missing(name));

    let scan_id = required("ScanId")?;
    if !scan_id_ok(&scan_id) {
        return Err(ScanFileError::BadScanId(scan_id));
    }
    let scanner_id = required("ScannerId")?;
    let lane = optional("Lane")?;
    let time = required("ScanTime")?;
    let scanned_at = DateTime::parse_from_rfc3339(&time)
        .map_err(|e| ScanFileError::BadTime {
            value: time.clone(),
            reason: e.to_string(),
        })?
        .with_timezone(&Utc);
    let conveyance_id = optional("ConveyanceId")?;
    let decision = match required("Decision")?.as_str() {
        "ALARM" => ScanDecision::Alarm,
        "NO_ALARM" => ScanDecision::NoAlarm,
        "UNKNOWN" => ScanDecision::Unknown,
        other => return Err(ScanFileError::BadDecision(other.to_owned())),
    };
    let decision_by = match child("Decision").and_then(|d| d.attribute("type")) {
        None => None,
        Some(t @ ("MACHINE" | "OPERATOR")) => Some(t.to_owned()),
        Some(other) => return Err(ScanFileError::BadDecisionType(other.to_owned())),
    };
    let mut images = Vec::new();
    if let Some(list) = child("Images") {
        for node in list
            .children()
            .filter(|n| n.is_element() && n.tag_name().name() == "Image")
        {
            if images.len() == MAX_IMAGES {
                let count = list.children().filter(|n| n.is_element()).count();
                return Err(ScanFileError::TooManyImages {
                    count,
                    max: MAX_IMAGES,
                });
            }
            let name = node.text().unwrap_or_default().trim();
            if !plain_file_name(name) {
                return Err(ScanFileError::BadImageName(name.to_owned()));
            }
            images.push(name.to_owned());
        }
    }
    Ok(ScanEvent {
        scanner_id,
        scan_id,
        scanned_at,
        lane,
        decision,
        images,
        conveyance_id,
        decision_by,
    })
}

/// A scan id names its file in `processed/`, so it must be a safe file name too.
fn scan_id_ok(id: &str) -> bool {
    !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A name that stays inside the folder: no separators, no drive letters, no `..`, not hidden.
fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_FIELD_CHARS
        && !name.starts_with('.')
        && !name
            .chars()
            .any(|c| matches!(c, '/' | '\\' | ':') || c.is_control())
}

/// Watches `folder` (see the module header) until `shutdown` turns true or `out` closes.
pub async fn run_drop_folder(
    name: String,
    folder: PathBuf,
    out: mpsc::Sender<ScanEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    tracing::info!(scanner = %name, folder = %folder.display(), "watching the scanner drop folder");
    let mut failing = false;
    let mut watch = match FolderWatch::new(&folder) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(scanner = %name, folder = %folder.display(), error = %e, "no inotify watch on the drop folder: listing it every {} ms only", POLL_INTERVAL.as_millis());
            None
        }
    };
    loop {
        match poll_once(&name, &folder, &out).await {
            Ok(true) => return,
            Ok(false) => failing = false,
            Err(e) => {
                // Logged once per outage, not five times a second.
                if !failing {
                    tracing::warn!(scanner = %name, folder = %folder.display(), error = %e, "cannot read the scanner drop folder; retrying");
                    failing = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            changed = FolderWatch::changed_opt(watch.as_mut()) => {
                if let Err(e) = changed {
                    tracing::warn!(scanner = %name, error = %e, "the drop folder's inotify watch failed: listing it every {} ms only", POLL_INTERVAL.as_millis());
                    watch = None;
                }
            }
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// An inotify watch on the drop folder: wakes the loop when a file is renamed into it or
/// closed after writing (see the module header).
struct FolderWatch {
    events: inotify::EventStream<Vec<u8>>,
}

impl FolderWatch {
    fn new(folder: &Path) -> std::io::Result<Self> {
        use inotify::{Inotify, WatchMask};
        std::fs::create_dir_all(folder)?;
        let watch = Inotify::init()?;
        watch
            .watches()
            .add(folder, WatchMask::MOVED_TO | WatchMask::CLOSE_WRITE)?;
        Ok(Self {
            events: watch.into_event_stream(vec![0u8; 4096])?,
        })
    }

    /// Returns once something happened in the folder (the event is not looked at: any of them
    /// means "list the folder now").
    async fn changed(&mut self) -> std::io::Result<()> {
        use futures::StreamExt as _;
        match self.events.next().await {
            Some(event) => event.map(|_| ()),
            None => Err(std::io::Error::other("the inotify stream ended")),
        }
    }

    /// [`FolderWatch::changed`], or never without a watch.
    async fn changed_opt(watch: Option<&mut Self>) -> std::io::Result<()> {
        match watch {
            Some(w) => w.changed().await,
            None => std::future::pending().await,
        }
    }
}

/// One listing and the files in it. `Ok(true)`: the receiver has gone, stop.
async fn poll_once(
    name: &str,
    folder: &Path,
    out: &mpsc::Sender<ScanEvent>,
) -> std::io::Result<bool> {
    let processed = folder.join(PROCESSED_DIR);
    let quarantine = folder.join(QUARANTINE_DIR);
    tokio::fs::create_dir_all(&processed).await?;
    tokio::fs::create_dir_all(&quarantine).await?;
    for (path, modified) in candidates(folder).await? {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parsed = match read_limited(&path).await {
            Ok(bytes) => parse_scan_xml(&bytes),
            Err(ReadError::TooLarge(size)) => Err(ScanFileError::TooLarge {
                size,
                max: MAX_SCAN_FILE_BYTES,
            }),
            Err(ReadError::Io(e)) => {
                tracing::warn!(scanner = %name, file = %path.display(), error = %e, "cannot read a scan file; will retry");
                continue;
            }
        };
        match parsed {
            Ok(event) => {
                let target = processed.join(format!("{}.xml", event.scan_id));
                if tokio::fs::try_exists(&target).await? {
                    let reason = format!(
                        "duplicate: scan id {} was already processed ({})",
                        event.scan_id,
                        target.display()
                    );
                    quarantine_file(name, &path, &quarantine, &file, &reason).await?;
                    continue;
                }
                let Ok(permit) = out.reserve().await else {
                    return Ok(true);
                };
                tokio::fs::rename(&path, &target).await?;
                tracing::info!(scanner = %name, file = %file, scan = %event.scan_id, decision = ?event.decision, images = event.images.len(), "scan file read");
                permit.send(event);
            }
            Err(ScanFileError::Xml(_) | ScanFileError::NotUtf8)
                if modified.elapsed().map(|age| age < SETTLE).unwrap_or(true) =>
            {
                // Possibly still being written in place; look again on a later poll.
            }
            Err(e) => {
                quarantine_file(name, &path, &quarantine, &file, &e.to_string()).await?;
            }
        }
    }
    Ok(false)
}

/// The complete `*.xml` files in `folder`, oldest first.
async fn candidates(folder: &Path) -> std::io::Result<Vec<(PathBuf, SystemTime)>> {
    let mut found = Vec::new();
    let mut dir = tokio::fs::read_dir(folder).await?;
    while let Some(entry) = dir.next_entry().await? {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        if file_name.starts_with('.') || !file_name.ends_with(".xml") {
            continue;
        }
        let Ok(meta) = entry.metadata().await else {
            continue; // Gone since the listing.
        };
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        found.push((entry.path(), modified));
    }
    found.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    Ok(found)
}

enum ReadError {
    TooLarge(u64),
    Io(std::io::Error),
}

/// Reads at most [`MAX_SCAN_FILE_BYTES`]: the size is checked before reading, and the read is
/// bounded in case the file grows meanwhile.
async fn read_limited(path: &Path) -> Result<Vec<u8>, ReadError> {
    let file = tokio::fs::File::open(path).await.map_err(ReadError::Io)?;
    let size = file.metadata().await.map_err(ReadError::Io)?.len();
    if size > MAX_SCAN_FILE_BYTES as u64 {
        return Err(ReadError::TooLarge(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_SCAN_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(ReadError::Io)?;
    if bytes.len() > MAX_SCAN_FILE_BYTES {
        return Err(ReadError::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Moves `path` into `quarantine/` under a free name and writes the reason beside it.
async fn quarantine_file(
    scanner: &str,
    path: &Path,
    quarantine: &Path,
    file: &str,
    reason: &str,
) -> std::io::Result<()> {
    let mut target = quarantine.join(file);
    let mut n = 0u32;
    while tokio::fs::try_exists(&target).await? {
        n += 1;
        target = quarantine.join(format!("{file}.{n}"));
    }
    let mut reason_path = target.clone().into_os_string();
    reason_path.push(".reason");
    tokio::fs::write(&reason_path, format!("{reason}\n")).await?;
    tokio::fs::rename(path, &target).await?;
    tracing::warn!(scanner = %scanner, file = %path.display(), quarantined = %target.display(), %reason, "scan file quarantined");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_watch_wakes_when_a_scan_file_is_renamed_into_the_folder() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut watch = FolderWatch::new(dir.path())?;
        let quiet = tokio::time::timeout(Duration::from_millis(300), watch.changed()).await;
        assert!(
            quiet.is_err(),
            "nothing happened, nothing to say: {quiet:?}"
        );
        // As a workstation on this machine delivers: written under a dot-name, then renamed.
        let part = dir.path().join(".S-1.xml.part");
        std::fs::write(&part, xml("S-1", "2026-11-21T10:00:00Z", &[]))?;
        std::fs::rename(&part, dir.path().join("S-1.xml"))?;
        let woke = tokio::time::timeout(Duration::from_secs(10), watch.changed()).await;
        assert!(matches!(woke, Ok(Ok(()))), "{woke:?}");
        Ok(())
    }

    fn xml(scan_id: &str, time: &str, images: &[&str]) -> String {
        let images: String = images
            .iter()
            .map(|i| format!("<Image>{i}</Image>"))
            .collect();
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ScanResult>\n  <ScanId>{scan_id}</ScanId><ScannerId>XR-1</ScannerId><Lane>L1</Lane>\n  <ScanTime>{time}</ScanTime>\n  <ConveyanceId>1234AB01</ConveyanceId>\n  <Decision type=\"OPERATOR\">NO_ALARM</Decision>\n  <Images>{images}</Images>\n</ScanResult>\n"
        )
    }

    fn valid() -> String {
        xml(
            "XR1-000123",
            "2026-11-21T10:00:00Z",
            &["XR1-000123_top.png", "XR1-000123_side.png"],
        )
    }

    #[test]
    fn a_valid_file_gives_every_field() -> Result<(), ScanFileError> {
        let e = parse_scan_xml(valid().as_bytes())?;
        assert_eq!(e.scan_id, "XR1-000123");
        assert_eq!(e.scanner_id, "XR-1");
        assert_eq!(e.lane.as_deref(), Some("L1"));
        assert_eq!(e.scanned_at.to_rfc3339(), "2026-11-21T10:00:00+00:00");
        assert_eq!(e.conveyance_id.as_deref(), Some("1234AB01"));
        assert_eq!(e.decision, ScanDecision::NoAlarm);
        assert_eq!(e.decision_by.as_deref(), Some("OPERATOR"));
        assert_eq!(e.images, ["XR1-000123_top.png", "XR1-000123_side.png"]);
        Ok(())
    }

    #[test]
    fn optional_fields_may_be_absent_and_offsets_become_utc() -> Result<(), ScanFileError> {
        let doc = "<ScanResult><ScanId>S1</ScanId><ScannerId>G</ScannerId>\
                   <ScanTime>2026-11-21T15:00:00+05:00</ScanTime><Decision>ALARM</Decision>\
                   <VendorThing>kept quiet</VendorThing></ScanResult>";
        let e = parse_scan_xml(doc.as_bytes())?;
        assert_eq!(e.scanned_at.to_rfc3339(), "2026-11-21T10:00:00+00:00");
        assert_eq!(e.decision, ScanDecision::Alarm);
        assert!(e.lane.is_none() && e.conveyance_id.is_none() && e.decision_by.is_none());
        assert!(e.images.is_empty());
        Ok(())
    }

    #[test]
    fn a_missing_field_is_named() {
        let doc = valid().replace("<ScannerId>XR-1</ScannerId>", "");
        let e = parse_scan_xml(doc.as_bytes()).expect_err("no scanner id");
        assert!(matches!(e, ScanFileError::Missing("ScannerId")), "{e}");
        let doc = valid().replace("NO_ALARM", " ");
        let e = parse_scan_xml(doc.as_bytes()).expect_err("empty decision");
        assert!(matches!(e, ScanFileError::Missing("Decision")), "{e}");
    }

    #[test]
    fn a_bad_time_or_decision_is_refused() {
        for time in [
            "2026-11-21 10:00:00",
            "21.11.2026 10:00",
            "2026-11-21T10:00:00",
        ] {
            let doc = xml("S1", time, &[]);
            let e = parse_scan_xml(doc.as_bytes()).expect_err(time);
            assert!(matches!(e, ScanFileError::BadTime { .. }), "{time}: {e}");
        }
        let doc = valid().replace(">NO_ALARM<", ">CLEAR<");
        assert!(matches!(
            parse_scan_xml(doc.as_bytes()),
            Err(ScanFileError::BadDecision(_))
        ));
        let doc = valid().replace("\"OPERATOR\"", "\"ROBOT\"");
        assert!(matches!(
            parse_scan_xml(doc.as_bytes()),
            Err(ScanFileError::BadDecisionType(_))
        ));
    }

    #[test]
    fn image_names_that_leave_the_folder_are_refused() {
        for bad in [
            "../x.png",
            "/etc/passwd",
            "..",
            "sub/x.png",
            "..\\x.png",
            "C:x.png",
            ".hidden.png",
        ] {
            let doc = xml("S1", "2026-11-21T10:00:00Z", &["ok.png", bad]);
            let e = parse_scan_xml(doc.as_bytes()).expect_err(bad);
            assert!(
                matches!(e, ScanFileError::BadImageName(ref n) if n == bad),
                "{bad}: {e}"
            );
        }
        let doc = xml("../../etc/S1", "2026-11-21T10:00:00Z", &[]);
        assert!(matches!(
            parse_scan_xml(doc.as_bytes()),
            Err(ScanFileError::BadScanId(_))
        ));
    }

    #[test]
    fn too_many_images_oversized_and_long_fields_are_refused() {
        let names: Vec<String> = (0..=MAX_IMAGES).map(|i| format!("{i}.png")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let doc = xml("S1", "2026-11-21T10:00:00Z", &names);
        assert!(matches!(
            parse_scan_xml(doc.as_bytes()),
            Err(ScanFileError::TooManyImages { count, .. }) if count == MAX_IMAGES + 1
        ));

        let padded = valid().replace(
            "</ScanResult>",
            &format!(
                "<Pad>{}</Pad></ScanResult>",
                "x".repeat(MAX_SCAN_FILE_BYTES)
            ),
        );
        assert!(matches!(
            parse_scan_xml(padded.as_bytes()),
            Err(ScanFileError::TooLarge { .. })
        ));

        let doc = valid().replace("1234AB01", &"9".repeat(MAX_FIELD_CHARS + 1));
        assert!(matches!(
            parse_scan_xml(doc.as_bytes()),
            Err(ScanFileError::TooLong {
                field: "ConveyanceId",
                ..
            })
        ));
    }

    #[test]
    fn what_is_not_a_scan_result_is_refused() {
        for junk in [
            &b"not xml at all"[..],
            b"",
            b"<ScanResult><ScanId>S1",
            b"\xff\xfe<x/>",
        ] {
            assert!(
                matches!(
                    parse_scan_xml(junk),
                    Err(ScanFileError::Xml(_) | ScanFileError::NotUtf8)
                ),
                "{junk:?}"
            );
        }
        assert!(matches!(
            parse_scan_xml(b"<Other/>"),
            Err(ScanFileError::WrongRoot(ref r)) if r == "Other"
        ));
    }

    #[test]
    fn dtds_and_entities_are_refused() {
        let laughs = "<?xml version=\"1.0\"?>\n<!DOCTYPE ScanResult [\n  <!ENTITY a \"lol\">\n  <!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">\n]>\n<ScanResult><ScanId>&b;</ScanId></ScanResult>";
        assert!(matches!(
            parse_scan_xml(laughs.as_bytes()),
            Err(ScanFileError::Xml(_))
        ));
        let external = "<?xml version=\"1.0\"?>\n<!DOCTYPE ScanResult [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>\n<ScanResult><ScanId>&x;</ScanId></ScanResult>";
        assert!(matches!(
            parse_scan_xml(external.as_bytes()),
            Err(ScanFileError::Xml(_))
        ));
        let undeclared = valid().replace("XR1-000123</ScanId>", "&x;</ScanId>");
        assert!(matches!(
            parse_scan_xml(undeclared.as_bytes()),
            Err(ScanFileError::Xml(_))
        ));
    }
}
