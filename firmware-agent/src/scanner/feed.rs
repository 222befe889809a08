//! The X-ray / gamma scanner's TCP event feed: one JSON [`ScanEvent`] per line.
//!
//! The agent is the client: it connects, reads lines, and reconnects with backoff when the feed
//! drops. A malformed or oversized line is logged with its start and skipped; the feed goes on
//! with the next line (an oversized line is never held in memory beyond the limit).

use bcp_record::ScanEvent;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

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
                let mut reader = BufReader::new(stream);
                let mut buf = Vec::new();
                loop {
                    let line = tokio::select! {
                        l = next_line(&mut reader, &mut buf, MAX_LINE_BYTES) => l,
                        _ = shutdown.changed() => return,
                    };
                    match line {
                        Ok(Some(Line::Complete)) => {
                            let text = String::from_utf8_lossy(&buf);
                            if text.trim().is_empty() {
                                continue;
                            }
                            match serde_json::from_str::<ScanEvent>(&text) {
                                Ok(event) => {
                                    if out.send(event).await.is_err() {
                                        return;
                                    }
                                }
                                Err(e) => {
                                    let start: String = text.chars().take(120).collect();
                                    tracing::warn!(scanner = %name, error = %e, line = %start, "malformed scan event skipped");
                                }
                            }
                        }
                        Ok(Some(Line::TooLong)) => {
                            tracing::warn!(scanner = %name, max = MAX_LINE_BYTES, "oversized scan event line skipped");
                        }
                        Ok(None) => {
                            tracing::warn!(scanner = %name, "scanner feed closed by the scanner");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(scanner = %name, error = %e, "scanner feed read failed");
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

/// What [`next_line`] found.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// `buf` holds one line, without its `\n`.
    Complete,
    /// A line longer than the limit was read and thrown away, up to and including its `\n`.
    TooLong,
}

/// Reads one `\n`-terminated line into `buf` (cleared first), never holding more than `max`
/// bytes of it: a longer line is discarded to its end and reported, and the stream goes on with
/// the next line. `None` at the end of the stream (a partial last line is dropped).
async fn next_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<Line>> {
    buf.clear();
    let mut discarding = false;
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(None);
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if !discarding {
            buf.extend_from_slice(chunk);
            if buf.len() > max {
                buf.clear();
                discarding = true;
            }
        }
        let used = done.unwrap_or(available.len());
        r.consume(used);
        if done.is_some() {
            return Ok(Some(if discarding {
                Line::TooLong
            } else {
                Line::Complete
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_over_the_limit_are_skipped_and_reading_goes_on() -> std::io::Result<()> {
        let data = b"ab\n0123456789\ncd\npartial".to_vec();
        // A tiny buffer, so that lines span several reads.
        let mut r = BufReader::with_capacity(3, &data[..]);
        let mut buf = Vec::new();
        assert_eq!(next_line(&mut r, &mut buf, 5).await?, Some(Line::Complete));
        assert_eq!(buf, b"ab");
        assert_eq!(next_line(&mut r, &mut buf, 5).await?, Some(Line::TooLong));
        assert_eq!(next_line(&mut r, &mut buf, 5).await?, Some(Line::Complete));
        assert_eq!(buf, b"cd");
        assert_eq!(next_line(&mut r, &mut buf, 5).await?, None);
        Ok(())
    }
}
