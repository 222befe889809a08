//! The scanner drop folder against a real temp folder: valid, malformed, oversized, traversal,
//! duplicate, half-written and late files, and a restart on the same folder.

use anyhow::{Context, Result};
use bcp_agent::scanner::drop_folder::{MAX_SCAN_FILE_BYTES, PROCESSED_DIR, QUARANTINE_DIR};
use bcp_agent::scanner::run_drop_folder;
use bcp_record::{ScanDecision, ScanEvent};
use std::fs::{self, File, FileTimes};
use std::path::Path;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

fn scan_xml(scan_id: &str, image: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<ScanResult><ScanId>{scan_id}</ScanId><ScannerId>XR-1</ScannerId>\
         <Lane>L1</Lane><ScanTime>2026-11-21T10:00:00Z</ScanTime><ConveyanceId>1234AB01</ConveyanceId>\
         <Decision type=\"MACHINE\">ALARM</Decision><Images><Image>{image}</Image></Images></ScanResult>\n"
    )
}

/// Writes `name` the way a scanner should (a `.part` file renamed), `age_secs` old.
fn drop_file(dir: &Path, name: &str, body: &[u8], age_secs: u64) -> Result<()> {
    let part = dir.join(format!("{name}.part"));
    fs::write(&part, body)?;
    let when = SystemTime::now() - Duration::from_secs(age_secs);
    File::options()
        .write(true)
        .open(&part)?
        .set_times(FileTimes::new().set_modified(when).set_accessed(when))?;
    fs::rename(&part, dir.join(name))?;
    Ok(())
}

async fn next(rx: &mut mpsc::Receiver<ScanEvent>) -> Result<ScanEvent> {
    timeout(Duration::from_secs(10), rx.recv())
        .await
        .context("no scan event within 10 s")?
        .context("adapter stopped")
}

fn reason(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(QUARANTINE_DIR).join(format!("{file}.reason"));
    fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

fn names(dir: &Path) -> Result<Vec<String>> {
    let mut v: Vec<String> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    v.sort();
    Ok(v)
}

#[tokio::test]
async fn files_are_read_once_refused_ones_quarantined_with_reasons() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();

    // Waiting before the adapter starts; ages set the order (oldest first).
    drop_file(dir, "b.xml", scan_xml("XR1-2", "XR1-2.png").as_bytes(), 50)?;
    drop_file(dir, "a.xml", scan_xml("XR1-1", "XR1-1.png").as_bytes(), 60)?;
    drop_file(
        dir,
        "dup.xml",
        scan_xml("XR1-1", "again.png").as_bytes(),
        40,
    )?;
    drop_file(dir, "broken.xml", b"<ScanResult><ScanId>XR1-9</Sc", 30)?;
    let mut big = scan_xml("XR1-3", "x.png").into_bytes();
    big.extend(std::iter::repeat_n(b' ', MAX_SCAN_FILE_BYTES));
    drop_file(dir, "big.xml", &big, 30)?;
    drop_file(
        dir,
        "evil.xml",
        scan_xml("XR1-4", "../x.png").as_bytes(),
        30,
    )?;
    drop_file(
        dir,
        "root.xml",
        scan_xml("XR1-5", "/etc/passwd").as_bytes(),
        30,
    )?;
    // Not complete yet, or not scan files: left alone.
    fs::write(dir.join(".hidden.xml"), scan_xml("XR1-6", "h.png"))?;
    fs::write(dir.join("c.xml.part"), scan_xml("XR1-7", "c.png"))?;
    fs::write(dir.join("XR1-1.png"), b"image")?;

    let (tx, mut rx) = mpsc::channel(16);
    let (stop_tx, stop_rx) = watch::channel(false);
    let adapter = tokio::spawn(run_drop_folder(
        "xr1".into(),
        dir.to_path_buf(),
        tx,
        stop_rx,
    ));

    let first = next(&mut rx).await?;
    assert_eq!(first.scan_id, "XR1-1");
    assert_eq!(first.scanner_id, "XR-1");
    assert_eq!(first.decision, ScanDecision::Alarm);
    assert_eq!(first.decision_by.as_deref(), Some("MACHINE"));
    assert_eq!(first.conveyance_id.as_deref(), Some("1234AB01"));
    assert_eq!(first.images, ["XR1-1.png"]);
    assert_eq!(next(&mut rx).await?.scan_id, "XR1-2");

    // A late file, written while the adapter runs.
    drop_file(
        dir,
        "late.xml",
        scan_xml("XR1-8", "XR1-8.png").as_bytes(),
        0,
    )?;
    assert_eq!(next(&mut rx).await?.scan_id, "XR1-8");

    stop_tx.send(true)?;
    timeout(Duration::from_secs(5), adapter).await??;
    assert!(rx.try_recv().is_err(), "no other event");

    assert_eq!(
        names(&dir.join(PROCESSED_DIR))?,
        ["XR1-1.xml", "XR1-2.xml", "XR1-8.xml"]
    );
    assert!(reason(dir, "dup.xml")?.starts_with("duplicate"));
    assert!(reason(dir, "broken.xml")?.contains("XML"));
    assert!(reason(dir, "big.xml")?.contains("over the limit"));
    assert!(reason(dir, "evil.xml")?.contains("\"../x.png\""));
    assert!(reason(dir, "root.xml")?.contains("\"/etc/passwd\""));
    for f in ["dup.xml", "broken.xml", "big.xml", "evil.xml", "root.xml"] {
        assert!(dir.join(QUARANTINE_DIR).join(f).is_file(), "{f} kept");
    }
    // Images and incomplete files stay where they are.
    assert_eq!(
        names(dir)?,
        [
            ".hidden.xml",
            "XR1-1.png",
            "c.xml.part",
            PROCESSED_DIR,
            QUARANTINE_DIR
        ]
    );

    // A restart on the same folder reads nothing twice; a copy of a processed file dropped
    // again is a duplicate, and a quarantined name is not overwritten.
    fs::copy(
        dir.join(PROCESSED_DIR).join("XR1-2.xml"),
        dir.join("dup.xml"),
    )?;
    let (tx, mut rx) = mpsc::channel(16);
    let (stop_tx, stop_rx) = watch::channel(false);
    let adapter = tokio::spawn(run_drop_folder(
        "xr1".into(),
        dir.to_path_buf(),
        tx,
        stop_rx,
    ));
    let quarantined_again = dir.join(QUARANTINE_DIR).join("dup.xml.1");
    for _ in 0..50 {
        if quarantined_again.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reason(dir, "dup.xml.1")?.contains("XR1-2"));
    // Several more polls: still nothing.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(rx.try_recv().is_err(), "nothing read twice after a restart");
    stop_tx.send(true)?;
    timeout(Duration::from_secs(5), adapter).await??;
    Ok(())
}

#[tokio::test]
async fn a_half_written_file_is_waited_for_not_quarantined() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let whole = scan_xml("XR1-10", "XR1-10.png");
    // Written in place (no rename), first half now.
    fs::write(dir.join("slow.xml"), &whole[..whole.len() / 2])?;

    let (tx, mut rx) = mpsc::channel(16);
    let (stop_tx, stop_rx) = watch::channel(false);
    let adapter = tokio::spawn(run_drop_folder(
        "xr1".into(),
        dir.to_path_buf(),
        tx,
        stop_rx,
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    fs::write(dir.join("slow.xml"), &whole)?;
    assert_eq!(next(&mut rx).await?.scan_id, "XR1-10");
    assert!(names(&dir.join(QUARANTINE_DIR))?.is_empty());
    stop_tx.send(true)?;
    timeout(Duration::from_secs(5), adapter).await??;
    Ok(())
}
