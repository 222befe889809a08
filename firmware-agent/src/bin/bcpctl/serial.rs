//! `bcpctl serial`: what is this port saying?
//!
//! * `read`: readings as they come, in any protocol by name; `--json` prints one object per
//!   reading per line (`protocol`, `weight_kg`, `gross_kg`, `tare_kg`, `net_kg`, `motion`,
//!   `stable`, `status`, `raw_hex`; for dimension protocols `length_mm`, `width_mm`,
//!   `height_mm`). Polled protocols (MT-SICS, SMA) are asked for each reading, with a timeout and
//!   retries.
//! * `probe`: tries the common baud rates and framings, listens (and, if the port stays silent,
//!   asks the polled protocols' questions), scores every protocol on what it heard and reports the
//!   best match with its evidence (frames, checksum hits, share of bytes explained).
//! * `sniff`: a hex and text dump with frame boundaries marked (the protocol given, or the best
//!   one by score once enough bytes have arrived).
//!
//! The decoding, scoring and dump layout are pure functions of `bcp_drivers::inspect`; this
//! module owns the port and the clock.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bcp_drivers::indicator::{AnyProtocol, Measurement};
use bcp_drivers::inspect::{self, Evidence, Segment, SettleRule};
use bcp_drivers::serial::{open_port, FlowControl, Parity, SerialPortConfig};
use bcp_drivers::sick_cola::{self, DimensionTracker, DimensionTrackerConfig, LaneGeometry};
use bcp_drivers::tokio_serial::SerialStream;
use clap::Subcommand;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a polled protocol may take to answer before the request is sent again.
const REPLY_TIMEOUT: Duration = Duration::from_millis(500);
/// Baud rates a probe tries, most common on weighbridge indicators first.
const PROBE_BAUDS: [u32; 8] = [9600, 4800, 19200, 2400, 1200, 38400, 57600, 115200];

#[derive(Debug, Subcommand)]
pub enum SerialCommand {
    /// Print readings as they come.
    Read {
        /// Serial device, e.g. /dev/ttyUSB0 or /dev/serial/by-id/...
        #[arg(long)]
        port: String,
        /// Protocol name (toledo-continuous, xk3190, mt-sics, sma, rlws, ..., dims-ascii,
        /// sick-cola; see `probe`).
        #[arg(long)]
        protocol: String,
        /// Regex with named groups, for `--protocol generic`.
        #[arg(long)]
        pattern: Option<String>,
        #[arg(long, default_value_t = 9600)]
        baud: u32,
        /// Framing: 8N1, 7E1, 7O1, 8E1, ...
        #[arg(long, default_value = "8N1")]
        framing: String,
        /// Flow control: none, software (XON/XOFF), hardware (RTS/CTS).
        #[arg(long, default_value = "none", value_parser = parse_flow_control)]
        flow_control: FlowControl,
        /// Stop after this many readings (default: run until interrupted).
        #[arg(long)]
        count: Option<u64>,
        /// One JSON object per reading per line.
        #[arg(long)]
        json: bool,
        /// Fail when no reading arrives for this long.
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
        /// sick-cola: the scanner's height above the road.
        #[arg(long, default_value_t = 6000.0)]
        mount_height_mm: f64,
        /// sick-cola: the scanner angle that points straight down, degrees.
        #[arg(long, default_value_t = 0.0)]
        down_angle_deg: f64,
        /// sick-cola: points lower than this above the road are road, not vehicle.
        #[arg(long, default_value_t = 300.0)]
        min_object_height_mm: f64,
        /// sick-cola: the vehicles' speed under the scanner (length = speed x time under it).
        #[arg(long, default_value_t = 2000.0)]
        speed_mm_per_s: f64,
    },
    /// Find the protocol, baud rate and framing of a port.
    Probe {
        #[arg(long)]
        port: String,
        /// How long to listen at each setting.
        #[arg(long, default_value_t = 1500)]
        listen_ms: u64,
        /// Baud rates to try (default: 9600, 4800, 19200, 2400, 1200, 38400, 57600, 115200).
        #[arg(long, value_delimiter = ',')]
        bauds: Vec<u32>,
        /// Framings to try.
        #[arg(long, value_delimiter = ',', default_value = "8N1,7E1")]
        framings: Vec<String>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Hex and text dump with frame boundaries marked.
    Sniff {
        #[arg(long)]
        port: String,
        /// Mark frames of this protocol (default: the best scoring one).
        #[arg(long)]
        protocol: Option<String>,
        #[arg(long)]
        pattern: Option<String>,
        #[arg(long, default_value_t = 9600)]
        baud: u32,
        #[arg(long, default_value = "8N1")]
        framing: String,
        /// Stop after this long (default: run until interrupted).
        #[arg(long)]
        duration_ms: Option<u64>,
    },
}

pub fn run(cmd: SerialCommand) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the I/O runtime")?;
    rt.block_on(async move {
        match cmd {
            SerialCommand::Read {
                port,
                protocol,
                pattern,
                baud,
                framing,
                flow_control,
                count,
                json,
                timeout_ms,
                mount_height_mm,
                down_angle_deg,
                min_object_height_mm,
                speed_mm_per_s,
            } => {
                let cfg = SerialPortConfig {
                    flow_control,
                    ..port_config(&port, baud, &framing)?
                };
                let timeout = Duration::from_millis(timeout_ms);
                if protocol == "sick-cola" {
                    let tracker = DimensionTrackerConfig {
                        geometry: LaneGeometry {
                            mount_height_mm,
                            // 1/10000 degree, as the telegram counts angles.
                            down_angle: (down_angle_deg * 10_000.0).round() as i32,
                            min_object_height_mm,
                        },
                        speed_mm_per_s,
                        min_gap_scans: 3,
                    };
                    return read_scanner(&cfg, tracker, count, json, timeout).await;
                }
                let protocol = AnyProtocol::parse(&protocol, pattern.as_deref())
                    .map_err(|e| anyhow::anyhow!("{e}, sick-cola"))?;
                read(&cfg, &protocol, count, json, timeout).await
            }
            SerialCommand::Probe {
                port,
                listen_ms,
                bauds,
                framings,
                json,
            } => {
                let bauds = if bauds.is_empty() {
                    PROBE_BAUDS.to_vec()
                } else {
                    bauds
                };
                probe(
                    &port,
                    &bauds,
                    &framings,
                    Duration::from_millis(listen_ms),
                    json,
                )
                .await
            }
            SerialCommand::Sniff {
                port,
                protocol,
                pattern,
                baud,
                framing,
                duration_ms,
            } => {
                let protocol = protocol
                    .map(|p| AnyProtocol::parse(&p, pattern.as_deref()).map_err(anyhow::Error::msg))
                    .transpose()?;
                let cfg = port_config(&port, baud, &framing)?;
                sniff(&cfg, protocol, duration_ms.map(Duration::from_millis)).await
            }
        }
    })
}

fn parse_flow_control(text: &str) -> Result<FlowControl, String> {
    match text {
        "none" => Ok(FlowControl::None),
        "software" => Ok(FlowControl::Software),
        "hardware" => Ok(FlowControl::Hardware),
        other => Err(format!("{other:?}: expected none, software or hardware")),
    }
}

/// `8N1`-style framing into a port config.
fn port_config(path: &str, baud: u32, framing: &str) -> Result<SerialPortConfig> {
    let f = framing.as_bytes();
    let (data_bits, parity, stop_bits) = match f {
        [d @ b'5'..=b'8', p, s @ (b'1' | b'2')] => {
            let parity = match p.to_ascii_uppercase() {
                b'N' => Parity::None,
                b'E' => Parity::Even,
                b'O' => Parity::Odd,
                _ => bail!("framing {framing:?}: parity must be N, E or O"),
            };
            (d - b'0', parity, s - b'0')
        }
        _ => bail!("framing {framing:?}: expected data bits, parity, stop bits, e.g. 8N1"),
    };
    let cfg = SerialPortConfig {
        path: path.to_string(),
        baud,
        data_bits,
        parity,
        stop_bits,
        flow_control: FlowControl::None,
    };
    cfg.validate()
        .map_err(|(key, reason)| anyhow::anyhow!("serial port {path}: {key} {reason}"))?;
    Ok(cfg)
}

/// Print one line; `Ok(false)` when stdout is closed (`bcpctl serial sniff ... | head`), which
/// ends the command quietly.
fn out(line: &str) -> Result<bool> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

fn open(cfg: &SerialPortConfig) -> Result<SerialStream> {
    open_port(cfg).with_context(|| format!("opening serial port {} at {} baud", cfg.path, cfg.baud))
}

/// Read some bytes, or nothing by `until`; an error or end of stream names the port.
async fn read_some(
    port: &mut SerialStream,
    path: &str,
    buf: &mut Vec<u8>,
    until: Instant,
) -> Result<()> {
    let mut chunk = [0u8; 512];
    let wait = until.saturating_duration_since(Instant::now());
    match tokio::time::timeout(wait, port.read(&mut chunk)).await {
        Err(_) => Ok(()),
        Ok(Ok(0)) => bail!("serial port {path}: end of stream (device gone?)"),
        Ok(Ok(n)) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Ok(Err(e)) => Err(e).with_context(|| format!("reading serial port {path}")),
    }
}

async fn read(
    cfg: &SerialPortConfig,
    protocol: &AnyProtocol,
    count: Option<u64>,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    let mut port = open(cfg)?;
    let poll = protocol.poll_request();
    let mut buf = Vec::new();
    let mut settle = SettleRule::default();
    let mut readings = 0u64;
    let mut last_reading = Instant::now();
    let mut asked_at: Option<Instant> = None;
    while count.is_none_or(|c| readings < c) {
        if let Some(req) = &poll {
            if asked_at.is_none_or(|t| t.elapsed() >= REPLY_TIMEOUT) {
                port.write_all(req)
                    .await
                    .with_context(|| format!("writing a request to serial port {}", cfg.path))?;
                asked_at = Some(Instant::now());
            }
        }
        if last_reading.elapsed() >= timeout {
            bail!(
                "serial port {}: no {} reading for {} ms (wrong protocol, baud or cable? try `bcpctl serial probe`)",
                cfg.path,
                protocol.name(),
                timeout.as_millis()
            );
        }
        let until = Instant::now() + Duration::from_millis(100);
        read_some(&mut port, &cfg.path, &mut buf, until).await?;
        let (segs, used) = inspect::segments(protocol, &buf);
        for seg in segs {
            let Segment::Frame(range, m) = seg else {
                continue;
            };
            let raw = &buf[range];
            let line = match &m {
                Measurement::Weight(r) => {
                    let stable = settle.handle(r);
                    if json {
                        serde_json::json!({
                            "protocol": protocol.name(),
                            "weight_kg": r.weight_kg,
                            "gross_kg": r.gross_kg,
                            "tare_kg": r.tare_kg,
                            "net_kg": r.net_kg,
                            "motion": r.motion,
                            "stable": stable,
                            "status": r.status,
                            "raw_hex": inspect::hex(raw),
                        })
                        .to_string()
                    } else {
                        let kg = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v} kg"));
                        format!(
                            "{:>12}  gross {} tare {} net {}  {:?}{}{}",
                            kg(r.weight_kg),
                            kg(r.gross_kg),
                            kg(r.tare_kg),
                            kg(r.net_kg),
                            r.status,
                            match r.motion {
                                Some(true) => "  motion",
                                _ => "",
                            },
                            if stable { "  stable" } else { "" }
                        )
                    }
                }
                Measurement::Dimensions(d) => {
                    if json {
                        serde_json::json!({
                            "protocol": protocol.name(),
                            "length_mm": d.length_mm,
                            "width_mm": d.width_mm,
                            "height_mm": d.height_mm,
                            "raw_hex": inspect::hex(raw),
                        })
                        .to_string()
                    } else {
                        format!(
                            "L {} mm  W {} mm  H {} mm",
                            d.length_mm, d.width_mm, d.height_mm
                        )
                    }
                }
                Measurement::Other(text) => {
                    if !json && !out(&format!("reply: {text}"))? {
                        return Ok(());
                    }
                    continue;
                }
            };
            if !out(&line)? {
                return Ok(());
            }
            readings += 1;
            last_reading = Instant::now();
            asked_at = None;
            if count.is_some_and(|c| readings >= c) {
                break;
            }
        }
        buf.drain(..used);
    }
    Ok(())
}

/// `read --protocol sick-cola`: one line per vehicle that has passed under the scanner.
async fn read_scanner(
    cfg: &SerialPortConfig,
    tracker: DimensionTrackerConfig,
    count: Option<u64>,
    json: bool,
    timeout: Duration,
) -> Result<()> {
    let mut port = open(cfg)?;
    let mut tracker = DimensionTracker::new(tracker);
    let (mut buf, mut vehicles, mut last_scan) = (Vec::new(), 0u64, Instant::now());
    while count.is_none_or(|c| vehicles < c) {
        if last_scan.elapsed() >= timeout {
            bail!(
                "serial port {}: no sick-cola scan for {} ms (wrong protocol, baud or cable? try `bcpctl serial sniff`)",
                cfg.path,
                timeout.as_millis()
            );
        }
        let until = Instant::now() + Duration::from_millis(100);
        read_some(&mut port, &cfg.path, &mut buf, until).await?;
        let mut used = 0;
        loop {
            match sick_cola::decode(&buf[used..]) {
                Ok(Some((scan, n))) => {
                    last_scan = Instant::now();
                    let raw = &buf[used..used + n];
                    used += n;
                    let Some(d) = tracker.handle_scan(&scan) else {
                        continue;
                    };
                    let line = if json {
                        serde_json::json!({
                            "protocol": "sick-cola",
                            "length_mm": d.length_mm,
                            "width_mm": d.width_mm,
                            "height_mm": d.height_mm,
                            "raw_hex": inspect::hex(raw),
                        })
                        .to_string()
                    } else {
                        format!(
                            "L {} mm  W {} mm  H {} mm",
                            d.length_mm, d.width_mm, d.height_mm
                        )
                    };
                    if !out(&line)? {
                        return Ok(());
                    }
                    vehicles += 1;
                    if count.is_some_and(|c| vehicles >= c) {
                        return Ok(());
                    }
                }
                Ok(None) => break,
                Err(e) => used += e.skip.clamp(1, buf.len() - used),
            }
        }
        buf.drain(..used);
    }
    Ok(())
}

/// What the probe heard at one setting.
struct Heard {
    baud: u32,
    framing: String,
    evidence: Vec<Evidence>,
}

async fn probe(
    path: &str,
    bauds: &[u32],
    framings: &[String],
    listen: Duration,
    json: bool,
) -> Result<()> {
    let candidates = inspect::probe_candidates();
    let polls: Vec<Vec<u8>> = candidates
        .iter()
        .filter_map(AnyProtocol::poll_request)
        .collect();
    let mut best: Option<Heard> = None;
    'settings: for framing in framings {
        for &baud in bauds {
            let cfg = port_config(path, baud, framing)?;
            let mut port = open(&cfg)?;
            let mut buf = Vec::new();
            let start = Instant::now();
            // A port still silent halfway through may be waiting to be asked: from then on,
            // ask the polled protocols' questions every 150 ms.
            let mut silent = None;
            let mut asked_at: Option<Instant> = None;
            while start.elapsed() < listen {
                let ask = start.elapsed() >= listen / 2
                    && *silent.get_or_insert(buf.is_empty())
                    && asked_at.is_none_or(|t| t.elapsed() >= Duration::from_millis(150));
                if ask {
                    // A request that does not end a line is followed by CR LF, so that a
                    // line-oriented device (MT-SICS) takes the next request on its own.
                    for poll in &polls {
                        let mut bytes = poll.clone();
                        if !bytes.ends_with(b"\n") {
                            bytes.extend_from_slice(b"\r\n");
                        }
                        port.write_all(&bytes).await.with_context(|| {
                            format!("writing a probe request to serial port {path}")
                        })?;
                    }
                    asked_at = Some(Instant::now());
                }
                let until = (Instant::now() + Duration::from_millis(50)).min(start + listen);
                read_some(&mut port, path, &mut buf, until).await?;
            }
            drop(port);
            let mut evidence: Vec<Evidence> =
                candidates.iter().map(|p| inspect::score(p, &buf)).collect();
            inspect::rank(&mut evidence);
            if !json {
                let top = &evidence[0];
                if !out(&format!(
                    "{baud:>6} {framing}: {} bytes; best {} ({} frames, {:.0}% of bytes{})",
                    buf.len(),
                    top.protocol,
                    top.frames,
                    top.coverage() * 100.0,
                    if top.checksum_hits > 0 {
                        format!(", {} checksums ok", top.checksum_hits)
                    } else {
                        String::new()
                    }
                ))? {
                    return Ok(());
                }
            }
            let strong = evidence[0].is_strong();
            let better = best.as_ref().is_none_or(|b| {
                let mut pair = [evidence[0].clone(), b.evidence[0].clone()];
                inspect::rank(&mut pair);
                pair[0] == evidence[0] && evidence[0] != b.evidence[0]
            });
            if better {
                best = Some(Heard {
                    baud,
                    framing: framing.clone(),
                    evidence,
                });
            }
            if strong {
                break 'settings;
            }
        }
    }
    let Some(best) = best.filter(|b| b.evidence[0].is_match()) else {
        bail!("serial port {path}: no protocol matched at any baud rate or framing tried (is the indicator's serial output on?)");
    };
    let top = &best.evidence[0];
    // Candidates that explain the bytes exactly as well (XK3190 formats 1 and 2 agree on positive
    // weights): the technician decides with the display.
    let ties: Vec<&str> = best.evidence[1..]
        .iter()
        .filter(|e| e.is_match() && e.coverage() == top.coverage() && e.frames == top.frames)
        .map(|e| e.protocol)
        .collect();
    if json {
        if !out(&format!(
            "{}",
            serde_json::json!({
                "port": path,
                "protocol": top.protocol,
                "baud": best.baud,
                "framing": best.framing,
                "frames": top.frames,
                "checksum_hits": top.checksum_hits,
                "rejections": top.rejections,
                "coverage": top.coverage(),
                "also_matching": ties,
                "runner_up": best.evidence.get(1),
            })
        ))? {
            return Ok(());
        }
    } else {
        if !out(&format!(
            "best match: --protocol {} --baud {} --framing {}  ({} frames, {} checksums ok, {} rejected runs, {:.0}% of bytes explained)",
            top.protocol,
            best.baud,
            best.framing,
            top.frames,
            top.checksum_hits,
            top.rejections,
            top.coverage() * 100.0
        ))? {
 return Ok(());
 }
        if !ties.is_empty()
            && !out(&format!(
                "equally good: {} (compare a reading with the indicator's display)",
                ties.join(", ")
            ))?
        {
            return Ok(());
        }
    }
    Ok(())
}

async fn sniff(
    cfg: &SerialPortConfig,
    mut protocol: Option<AnyProtocol>,
    duration: Option<Duration>,
) -> Result<()> {
    let mut port = open(cfg)?;
    let start = Instant::now();
    let mut buf: Vec<u8> = Vec::new();
    let mut heard: Vec<u8> = Vec::new();
    while duration.is_none_or(|d| start.elapsed() < d) {
        let until = Instant::now() + Duration::from_millis(100);
        let until = duration.map_or(until, |d| until.min(start + d));
        read_some(&mut port, &cfg.path, &mut buf, until).await?;
        let t = start.elapsed().as_secs_f64();
        if protocol.is_none() {
            heard.extend_from_slice(&buf);
            if heard.len() >= 64 {
                let mut all: Vec<(Evidence, AnyProtocol)> = inspect::probe_candidates()
                    .into_iter()
                    .map(|p| (inspect::score(&p, &heard), p))
                    .collect();
                all.sort_by(|a, b| {
                    let mut pair = [a.0.clone(), b.0.clone()];
                    inspect::rank(&mut pair);
                    if pair[0] == a.0 {
                        std::cmp::Ordering::Less
                    } else {
                        std::cmp::Ordering::Greater
                    }
                });
                if let Some((e, p)) = all.into_iter().next().filter(|(e, _)| e.frames >= 2) {
                    if !out(&format!(
                        "# marking {} frames ({} frames in the first {} bytes)",
                        e.protocol,
                        e.frames,
                        heard.len()
                    ))? {
                        return Ok(());
                    }
                    protocol = Some(p);
                }
            }
            if protocol.is_none() {
                if !buf.is_empty()
                    && !out(&format!(
                        "{t:9.3}s raw   {:<48} |{}|",
                        inspect::hex(&buf),
                        inspect::printable(&buf)
                    ))?
                {
                    return Ok(());
                }
                buf.clear();
                continue;
            }
        }
        let Some(p) = &protocol else { continue };
        let (segs, used) = inspect::segments(p, &buf);
        for seg in segs {
            let (label, range, note) = match seg {
                Segment::Frame(r, Measurement::Weight(w)) => {
                    ("frame", r, format!("{:?} kg {:?}", w.weight_kg, w.status))
                }
                Segment::Frame(r, Measurement::Dimensions(d)) => (
                    "frame",
                    r,
                    format!("{}x{}x{} mm", d.length_mm, d.width_mm, d.height_mm),
                ),
                Segment::Frame(r, Measurement::Other(text)) => ("frame", r, text),
                Segment::Skipped(r, e) => ("skip ", r, e.kind.to_string()),
            };
            let bytes = &buf[range];
            if !out(&format!(
                "{t:9.3}s {label} {:<48} |{}|  {note}",
                inspect::hex(bytes),
                inspect::printable(bytes)
            ))? {
                return Ok(());
            }
        }
        buf.drain(..used);
    }
    Ok(())
}
