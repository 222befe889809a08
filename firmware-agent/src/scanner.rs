//! The X-ray / gamma scanner's TCP event feed: one JSON [`ScanEvent`] per line.
//!
//! The agent is the client: it connects, reads lines, and reconnects with backoff when the feed
//! drops. A malformed or oversized line is logged with its start and skipped; the feed goes on.

use bcp_record::ScanEvent;
use futures::StreamExt;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};

/// The longest line accepted from a scanner feed.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

pub async fn run_feed(
    name: String,
    addr: String,
    out: mpsc::Sender<ScanEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut was_connected = true;
    loop {
        let stream = tokio::select! {
            s = TcpStream::connect(&addr) => s,
            _ = shutdown.changed() => return,
        };
        match stream {
            Ok(stream) => {
                tracing::info!(scanner = %name, %addr, "scanner feed connected");
                was_connected = true;
                backoff = Duration::from_millis(100);
                let mut lines =
                    FramedRead::new(stream, LinesCodec::new_with_max_length(MAX_LINE_BYTES));
                loop {
                    let line = tokio::select! {
                        l = lines.next() => l,
                        _ = shutdown.changed() => return,
                    };
                    match line {
                        Some(Ok(line)) if line.trim().is_empty() => {}
                        Some(Ok(line)) => match serde_json::from_str::<ScanEvent>(&line) {
                            Ok(event) => {
                                if out.send(event).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                let start: String = line.chars().take(120).collect();
                                tracing::warn!(scanner = %name, error = %e, line = %start, "malformed scan event skipped");
                            }
                        },
                        Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                            tracing::warn!(scanner = %name, max = MAX_LINE_BYTES, "oversized scan event line skipped");
                        }
                        Some(Err(LinesCodecError::Io(e))) => {
                            tracing::warn!(scanner = %name, error = %e, "scanner feed read failed");
                            break;
                        }
                        None => {
                            tracing::warn!(scanner = %name, "scanner feed closed by the scanner");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                if was_connected {
                    tracing::warn!(scanner = %name, %addr, error = %e, "cannot connect to the scanner feed; retrying");
                    was_connected = false;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
