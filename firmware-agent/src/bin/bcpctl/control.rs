//! `bcpctl status | devices | lanes | events tail | sync now`: the running agent, through its
//! control socket (see `bcp_agent::control` for the protocol).
//!
//! The socket is `--socket PATH`, else `[control] socket` of `--config FILE` when that file is
//! readable, else `/run/bcp/agent.sock`. Errors say what to check next: whether the agent runs,
//! and whether the user is in the `bcp-tech` group.

use std::io::{BufRead as _, BufReader, ErrorKind, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use bcp_agent::config::{self, DEFAULT_CONTROL_GROUP, DEFAULT_CONTROL_SOCKET};
use bcp_agent::control::protocol::{
    encode_line, ImageCounts, LaneReport, ReloadReport, Request, Response, StatusReport,
};
use bcp_record::DeviceStatus;
use clap::{Args, Subcommand};

/// A device that delivered nothing for this long is `silent` (as `bcp-central posts` says).
const SILENT_AFTER_SECS: u64 = 600;
/// A plain request gets its answer within this.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub struct Target {
    /// The agent's control socket (default: `[control] socket` of --config, else
    /// /run/bcp/agent.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The agent config to take the socket path from.
    #[arg(long, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// JSON instead of a table (`events tail`: one object per line).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Crossings as the agent records them, until interrupted.
    Tail {
        #[command(flatten)]
        target: Target,
        /// Stop after this many crossings.
        #[arg(long)]
        count: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Wakes the uplink: what is waiting goes to central now, if the link is up.
    Now {
        #[command(flatten)]
        target: Target,
    },
}

impl Target {
    fn socket(&self) -> PathBuf {
        if let Some(path) = &self.socket {
            return path.clone();
        }
        socket_from_config(&self.config).unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET))
    }
}

/// `[control] socket` of the config at `path`, if it can be read (technicians usually cannot
/// read /etc/bcp; the default applies then). Only that key is read: a config the agent would
/// refuse for another reason still names its socket.
fn socket_from_config(path: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(path).ok()?;
    let table: toml::Table = toml::from_str(&text).ok()?;
    let socket = table.get("control")?.get("socket")?.as_str()?;
    Some(PathBuf::from(socket))
}

fn connect(path: &Path) -> Result<UnixStream> {
    UnixStream::connect(path).map_err(|e| {
        let next = match e.kind() {
            ErrorKind::NotFound => "no control socket there. Is bcp-agent running? (systemctl status bcp-agent; \
                 journalctl -u bcp-agent) If it listens elsewhere, pass --socket PATH or --config FILE"
                .to_owned(),
            ErrorKind::ConnectionRefused => "nothing answers on it: bcp-agent has stopped or is restarting (systemctl status bcp-agent)".to_owned(),
            ErrorKind::PermissionDenied => format!(
                "permission denied. Are you in group {DEFAULT_CONTROL_GROUP}? (the socket's group: ls -l {}; yours: id -nG; \
                 an administrator adds you: sudo usermod -aG {DEFAULT_CONTROL_GROUP} $USER, then log in again) Or run bcpctl with sudo",
                path.display()
            ),
            _ => "check that bcp-agent is running (systemctl status bcp-agent)".to_owned(),
        };
        anyhow::anyhow!("cannot reach bcp-agent at {}: {e}; {next}", path.display())
    })
}

/// One request, one answer.
fn ask(path: &Path, request: &Request) -> Result<Response> {
    let mut stream = connect(path)?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    stream
        .write_all(&encode_line(request))
        .with_context(|| format!("sending the request to {}", path.display()))?;
    let mut reader = BufReader::new(stream);
    read_response(&mut reader, path)?.with_context(|| {
        format!(
            "bcp-agent at {} closed the connection without answering",
            path.display()
        )
    })
}

fn read_response(reader: &mut BufReader<UnixStream>, path: &Path) -> Result<Option<Response>> {
    let mut line = String::new();
    let n = reader.read_line(&mut line).map_err(|e| {
        let hint = if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            "; the agent did not answer in time (is it hung? journalctl -u bcp-agent)"
        } else {
            ""
        };
        anyhow::anyhow!("reading from bcp-agent at {}: {e}{hint}", path.display())
    })?;
    if n == 0 {
        return Ok(None);
    }
    let response: Response = serde_json::from_str(&line).with_context(|| {
        format!(
            "bcp-agent at {} answered something this bcpctl does not understand: {line:?}",
            path.display()
        )
    })?;
    if let Response::Error { message } = &response {
        bail!("bcp-agent refused the request: {message}");
    }
    Ok(Some(response))
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

pub fn status(target: Target) -> Result<()> {
    match ask(&target.socket(), &Request::Status)? {
        Response::Status(status) if target.json => print_json(&status),
        Response::Status(status) => {
            print!("{}", status_text(&status));
            Ok(())
        }
        other => unexpected(&other),
    }
}

pub fn devices(target: Target) -> Result<()> {
    match ask(&target.socket(), &Request::Devices)? {
        Response::Devices { devices } if target.json => print_json(&devices),
        Response::Devices { devices } => {
            print!("{}", devices_table(&devices));
            Ok(())
        }
        other => unexpected(&other),
    }
}

pub fn lanes(target: Target) -> Result<()> {
    match ask(&target.socket(), &Request::Lanes)? {
        Response::Lanes { lanes } if target.json => print_json(&lanes),
        Response::Lanes { lanes } => {
            print!("{}", lanes_table(&lanes, chrono::Utc::now()));
            Ok(())
        }
        other => unexpected(&other),
    }
}

pub fn events(cmd: EventsCommand) -> Result<()> {
    let EventsCommand::Tail { target, count } = cmd;
    let path = target.socket();
    let mut stream = connect(&path)?;
    stream.write_all(&encode_line(&Request::EventsTail))?;
    let mut reader = BufReader::new(stream);
    let mut seen = 0;
    let mut out = std::io::stdout().lock();
    if !target.json {
        writeln!(
            out,
            "{:>6}  {:<20}  {:<12}  {:>9}  {:<14}  FLAGS",
            "SEQ", "LEFT AT (UTC)", "PLATE", "GROSS KG", "SCAN"
        )?;
    }
    while count.is_none_or(|c| seen < c) {
        let Some(response) = read_response(&mut reader, &path)? else {
            bail!(
                "bcp-agent at {} closed the feed (stopping or restarting?)",
                path.display()
            );
        };
        match response {
            Response::Subscribed => {}
            Response::Crossing { seq, crossing } => {
                seen += 1;
                if target.json {
                    writeln!(
                        out,
                        "{}",
                        serde_json::json!({"seq": seq, "crossing": crossing})
                    )?;
                } else {
                    let c = &crossing;
                    writeln!(
                        out,
                        "{seq:>6}  {:<20}  {:<12}  {:>9}  {:<14}  {}",
                        c.left_at.format("%Y-%m-%d %H:%M:%S"),
                        c.plate.as_ref().map_or("-", |p| p.text.as_str()),
                        c.weight
                            .as_ref()
                            .map_or("-".to_owned(), |w| format!("{:.0}", w.gross_kg)),
                        c.scan.as_ref().map_or("-", |s| s.scan_id.as_str()),
                        if c.flags.is_empty() {
                            "-".to_owned()
                        } else {
                            c.flags
                                .iter()
                                .map(|f| f.code.as_str())
                                .collect::<Vec<_>>()
                                .join(",")
                        },
                    )?;
                }
                out.flush()?;
            }
            Response::Lagged { missed } => {
                eprintln!("bcpctl: {missed} crossings skipped (this terminal was too slow); they are in the outbox");
            }
            other => return unexpected(&other),
        }
    }
    Ok(())
}

pub fn sync(cmd: SyncCommand) -> Result<()> {
    let SyncCommand::Now { target } = cmd;
    match ask(&target.socket(), &Request::SyncNow)? {
        Response::SyncRequested { depth, connected } if target.json => print_json(
            &serde_json::json!({"requested": true, "depth": depth, "connected": connected}),
        ),
        Response::SyncRequested { depth, connected } => {
            let waiting = depth.map_or("unknown (outbox unreadable)".to_owned(), |d| d.to_string());
            if connected {
                println!("uplink woken; records waiting for central: {waiting}");
            } else {
                println!(
                    "uplink woken, but the link to central is down; records waiting: {waiting}. \
                     They go when it reconnects (bcpctl status shows the link)"
                );
            }
            Ok(())
        }
        other => unexpected(&other),
    }
}

/// Asks the agent at `path` to re-read its config; `None` when no agent runs there (no socket,
/// or nothing answers on it).
pub fn reload(path: &Path) -> Result<Option<ReloadReport>> {
    match UnixStream::connect(path) {
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused) => {
            return Ok(None)
        }
        _ => {}
    }
    match ask(path, &Request::Reload)? {
        Response::Reloaded(report) => Ok(Some(report)),
        other => {
            unexpected(&other)?;
            Ok(None)
        }
    }
}

fn unexpected(response: &Response) -> Result<()> {
    bail!("bcp-agent answered with an unexpected message: {response:?}")
}

/// Columns padded to their widest cell.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn ago(secs: Option<u64>) -> String {
    secs.map_or("never".to_owned(), |s| format!("{} ago", duration(s)))
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn devices_table(devices: &[DeviceStatus]) -> String {
    let rows: Vec<Vec<String>> = devices
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                d.kind.clone(),
                d.state(SILENT_AFTER_SECS).to_owned(),
                d.connected
                    .map_or("-", |c| if c { "yes" } else { "NO" })
                    .to_owned(),
                d.connected
                    .map_or("-".to_owned(), |_| d.frames_ok.to_string()),
                d.connected
                    .map_or("-".to_owned(), |_| d.frames_bad.to_string()),
                ago(d.last_seen_secs),
                d.restarts.to_string(),
                if d.alarms.is_empty() {
                    "-".to_owned()
                } else {
                    d.alarms.join(",")
                },
            ]
        })
        .collect();
    table(
        &[
            "DEVICE",
            "KIND",
            "STATE",
            "PORT OPEN",
            "FRAMES OK",
            "BAD",
            "LAST SEEN",
            "RESTARTS",
            "ALARMS",
        ],
        &rows,
    )
}

fn lanes_table(lanes: &[LaneReport], now: chrono::DateTime<chrono::Utc>) -> String {
    let rows: Vec<Vec<String>> = lanes
        .iter()
        .map(|l| {
            let last = l.last_crossing.as_ref().map_or("-".to_owned(), |c| {
                let age = u64::try_from((now - c.recorded_at).num_seconds()).unwrap_or(0);
                format!(
                    "#{} {} {}{}",
                    c.seq,
                    c.plate.as_deref().unwrap_or("(no plate)"),
                    ago(Some(age)),
                    if c.flags.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", c.flags.join(","))
                    }
                )
            });
            vec![
                l.lane.clone(),
                if l.vehicle_on_bridge { "yes" } else { "no" }.to_owned(),
                l.open_crossings.to_string(),
                l.crossings_recorded.to_string(),
                last,
                images_missing(&l.images),
                l.devices.join(","),
            ]
        })
        .collect();
    table(
        &[
            "LANE",
            "ON BRIDGE",
            "OPEN",
            "RECORDED",
            "LAST CROSSING",
            "IMAGES MISSING",
            "DEVICES",
        ],
        &rows,
    )
}

/// Records recorded without an image they should have had (each is flagged with why).
fn images_missing(n: &ImageCounts) -> String {
    match (n.plate_images_missing, n.scan_thumbnails_missing) {
        (0, 0) => "0".to_owned(),
        (plate, 0) => format!("plate {plate}"),
        (0, scan) => format!("scan {scan}"),
        (plate, scan) => format!("plate {plate}, scan {scan}"),
    }
}

fn status_text(s: &StatusReport) -> String {
    let mut out = format!(
        "post {}  agent {}  up {}\n\n",
        s.post,
        s.versions.agent,
        duration(s.uptime_secs)
    );
    out.push_str(&devices_table(&s.devices));
    out.push('\n');
    out.push_str(&lanes_table(&s.lanes, s.at));
    out.push('\n');
    match &s.outbox {
        Some(o) => out.push_str(&format!(
            "outbox:   {} waiting for central{}; last seq {}, acknowledged {}; {}{}\n",
            o.depth,
            o.oldest_unsynced_age_secs
                .map_or(String::new(), |a| format!(" (oldest {})", duration(a))),
            o.last_seq,
            o.last_acked_seq,
            bytes(o.bytes),
            if o.full_rejections_total > 0 {
                format!("; {} crossings NOT stored (full)", o.full_rejections_total)
            } else {
                String::new()
            }
        )),
        None => out.push_str("outbox:   unreadable (see problems)\n"),
    }
    let l = &s.link;
    out.push_str(&format!(
        "link:     {} to {} ({} connections); last ack {}; {} records, {} sent\n",
        if l.connected { "up" } else { "DOWN" },
        l.broker,
        l.connections_total,
        ago(l.last_ack_age_secs),
        l.records_sent_total,
        bytes(l.record_bytes_sent_total),
    ));
    let d = &s.disk;
    out.push_str(&format!(
        "disk:     outbox {} (images {}) of budget {}{}; filesystem {}\n",
        bytes(d.outbox_bytes),
        bytes(d.images_bytes),
        d.budget_bytes.map_or("none".to_owned(), bytes),
        if d.high_water {
            ", ABOVE HIGH WATER"
        } else {
            ""
        },
        match (d.fs_available_bytes, d.fs_total_bytes) {
            (Some(free), Some(total)) => format!("{} free of {}", bytes(free), bytes(total)),
            _ => "unknown".to_owned(),
        },
    ));
    for p in &s.problems {
        out.push_str(&format!("problem:  {p}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_line_up_and_sizes_read_well() {
        let t = table(&["A", "LONGER"], &[vec!["wide cell".into(), "x".into()]]);
        assert_eq!(t, "A          LONGER\nwide cell  x\n");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(duration(59), "59 s");
        assert_eq!(duration(3600), "60 min");
        assert_eq!(ago(None), "never");
    }

    #[test]
    fn the_socket_comes_from_the_flag_then_the_config_then_the_default() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let cfg = dir.path().join("agent.toml");
        std::fs::write(
            &cfg,
            "[post]\nid = \"X\"\n[control]\nsocket = \"/tmp/x.sock\"\n",
        )?;
        let t = |socket: Option<&str>, config: &Path| Target {
            socket: socket.map(PathBuf::from),
            config: config.to_path_buf(),
            json: false,
        };
        assert_eq!(t(Some("/a.sock"), &cfg).socket(), PathBuf::from("/a.sock"));
        assert_eq!(t(None, &cfg).socket(), PathBuf::from("/tmp/x.sock"));
        assert_eq!(
            t(None, &dir.path().join("missing.toml")).socket(),
            PathBuf::from(DEFAULT_CONTROL_SOCKET)
        );
        Ok(())
    }
}
