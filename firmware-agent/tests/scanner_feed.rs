//! The X-ray scanner's TCP feed against a real TCP server on loopback: good lines arrive,
//! malformed and oversized ones are skipped without stopping the feed, and the client comes back
//! after the scanner drops the connection.
use bcp_agent::scanner::{run_feed, MAX_LINE_BYTES};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

fn line(id: &str) -> String {
    format!(
        r#"{{"scanner_id":"XR-1","scan_id":"{id}","scanned_at":"2026-11-21T10:00:00Z","decision":"ALARM","images":["{id}.png"]}}"#
    ) + "\n"
}

#[tokio::test]
async fn bad_lines_are_skipped_and_the_feed_reconnects() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let (tx, mut rx) = mpsc::channel(16);
    let (stop_tx, stop_rx) = watch::channel(false);
    let feed = tokio::spawn(run_feed("xr1".into(), addr, tx, stop_rx));

    // First connection: good, malformed, oversized, blank, good; then the scanner hangs up.
    let (mut conn, _) = timeout(Duration::from_secs(5), listener.accept()).await??;
    let oversized = format!("{}\n", "x".repeat(MAX_LINE_BYTES + 10));
    for chunk in [
        line("S1"),
        "{not json}\n".into(),
        oversized,
        "\n".into(),
        line("S2"),
    ] {
        conn.write_all(chunk.as_bytes()).await?;
    }
    conn.shutdown().await?;
    drop(conn);
    for want in ["S1", "S2"] {
        let got = timeout(Duration::from_secs(5), rx.recv())
            .await?
            .expect("feed alive");
        assert_eq!(got.scan_id, want);
        assert_eq!(got.images, vec![format!("{want}.png")]);
    }

    // The client reconnects by itself and reads the next scan.
    let (mut conn, _) = timeout(Duration::from_secs(10), listener.accept()).await??;
    conn.write_all(line("S3").as_bytes()).await?;
    let got = timeout(Duration::from_secs(5), rx.recv())
        .await?
        .expect("feed alive");
    assert_eq!(got.scan_id, "S3");

    stop_tx.send(true)?;
    timeout(Duration::from_secs(5), feed).await??;
    Ok(())
}
