//! Where the daemons (`bcp-agent`, `bcp-central`) write their logs: to the systemd journal,
//! natively (every `tracing` field a journal field: `journalctl -u bcp-agent -o verbose` shows
//! `DEVICE=wb1`, `ERROR=...`), when their stderr is connected to it, as under their units; to
//! stderr as text otherwise (a terminal, a test, a container).
//!
//! "Connected to the journal" is systemd's own rule: `$JOURNAL_STREAM` names the device and
//! inode of the journal's stream, and stderr is that stream (systemd.exec(5)). A child
//! process that inherited the variable but whose stderr was redirected logs to stderr.

use std::os::unix::fs::MetadataExt as _;

use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Whether stderr is the journal's stream (see the module documentation).
pub fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stderr) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    journal_stream_matches(&stream.to_string_lossy(), stderr.dev(), stderr.ino())
}

/// `$JOURNAL_STREAM` is `DEVICE:INODE` in decimal.
fn journal_stream_matches(var: &str, dev: u64, ino: u64) -> bool {
    let mut parts = var.trim().splitn(2, ':');
    let (Some(d), Some(i)) = (parts.next(), parts.next()) else {
        return false;
    };
    d.parse::<u64>() == Ok(dev) && i.parse::<u64>() == Ok(ino)
}

/// The layer that writes the events: the journal when stderr is connected to it (and its
/// socket can be opened), else stderr as text, with colours only on a terminal.
pub fn output_layer<S>() -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journal) => return Box::new(journal.with_syslog_identifier(syslog_identifier())),
            Err(e) => eprintln!("cannot open the journal's socket ({e}); logging to stderr"),
        }
    }
    Box::new(
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
    )
}

/// The program's name, as `journalctl -t` takes it.
fn syslog_identifier() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "bcp".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_stream_is_matched_by_device_and_inode() {
        assert!(journal_stream_matches("8:123456", 8, 123_456));
        assert!(journal_stream_matches("8:123456\n", 8, 123_456));
        assert!(
            !journal_stream_matches("8:123457", 8, 123_456),
            "another inode"
        );
        assert!(
            !journal_stream_matches("9:123456", 8, 123_456),
            "another device"
        );
        assert!(!journal_stream_matches("", 8, 123_456));
        assert!(!journal_stream_matches("8", 8, 123_456));
        assert!(!journal_stream_matches("x:y", 8, 123_456));
    }
}
