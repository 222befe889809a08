//! The simulated devices: the weighbridge's state and its Toledo frame, a dimension sensor and
//! the presence sensors on pseudo-terminals, a camera that drops JPEG frames into a folder, and
//! an X-ray scanner's TCP event feed. (The weighbridge indicator itself, of any protocol, is
//! [`crate::indicators::run_indicator`].)
//!
//! Each device encodes with the same `bcp-drivers` protocol crate the agent decodes with; the
//! protocol crate's own test vectors (from the vendor manuals) keep the two honest.

use anyhow::{Context, Result};
use bcp_drivers::dims_ascii::{self, DimensionFrame};
use bcp_drivers::toledo::{DecimalPosition, ToledoFrame};
use bcp_record::ScanEvent;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio_serial::SerialStream;

/// What the weighbridge indicator currently shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BridgeState {
    pub weight_kg: u32,
    pub motion: bool,
}

/// A pseudo-terminal pair: the simulator writes the master side, the agent opens `path`.
#[derive(Debug)]
pub struct SimPort {
    pub path: String,
    master: SerialStream,
    /// Kept open so the pseudo-terminal stays usable while no agent has it open; never read.
    _slave: SerialStream,
}

impl SimPort {
    pub fn open() -> Result<Self> {
        let (master, slave) = SerialStream::pair().context("opening a pseudo-terminal pair")?;
        let path = tokio_serial::SerialPort::name(&slave)
            .context("the pseudo-terminal has no slave path")?;
        Ok(Self {
            path,
            master,
            _slave: slave,
        })
    }
}

/// A Mettler Toledo continuous-output frame for `state` in kg, with the 20 kg division of a
/// truck scale (display XXXXX0 with increment x2).
pub fn toledo_frame(state: BridgeState) -> ToledoFrame {
    ToledoFrame {
        weight_digits: state.weight_kg,
        tare_digits: 0,
        decimal: DecimalPosition::DummyZeros1,
        increment: 2,
        net: false,
        negative: false,
        out_of_range: false,
        motion: state.motion,
        unit_kg: true,
        not_zeroed_at_power_up: false,
        swc: 0,
    }
}

/// Writes one dimension line to the sensor's port.
pub async fn send_dimensions(port: &mut SimPort, frame: &DimensionFrame) -> Result<()> {
    let mut buf = Vec::with_capacity(64);
    dims_ascii::encode(frame, &mut buf);
    tokio::time::timeout(Duration::from_secs(1), port.master.write_all(&buf))
        .await
        .with_context(|| format!("dimension sensor {}: nobody reading", port.path))?
        .with_context(|| format!("writing to dimension sensor {}", port.path))
}

/// Writes one presence line (`ENTRY 1`, `EXIT 0`) to the presence sensors' port.
pub async fn send_presence(
    port: &mut SimPort,
    sensor: bcp_drivers::presence_ascii::SensorEnd,
    occupied: bool,
) -> Result<()> {
    use bcp_drivers::presence_ascii::{self, PresenceLine};
    let mut buf = Vec::with_capacity(16);
    presence_ascii::encode(&PresenceLine { sensor, occupied }, &mut buf);
    tokio::time::timeout(Duration::from_secs(1), port.master.write_all(&buf))
        .await
        .with_context(|| format!("presence sensors {}: nobody reading", port.path))?
        .with_context(|| format!("writing to presence sensors {}", port.path))
}

/// A camera that uploads each frame as a JPEG file into a folder (as FTP-push ANPR cameras do).
/// The file appears atomically: it is written under a temporary name and renamed.
pub fn write_camera_frame(dir: &Path, camera: &str, seq: u64, jpeg: &[u8]) -> Result<PathBuf> {
    let millis = chrono::Utc::now().timestamp_millis();
    let name = format!("{camera}-{millis}-{seq:06}.jpg");
    let tmp = dir.join(format!(".{name}.part"));
    let path = dir.join(name);
    std::fs::write(&tmp, jpeg).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(path)
}

/// The scanner's event feed: a TCP server that sends each scan as one JSON line to every
/// connected client. Reports on `clients` how many clients have connected so far.
pub async fn run_scanner_feed(
    listener: TcpListener,
    events: broadcast::Sender<ScanEvent>,
    clients: watch::Sender<usize>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    loop {
        let (mut stream, peer) = tokio::select! {
            r = listener.accept() => r.context("accepting a scanner feed client")?,
            _ = shutdown.changed() => return Ok(()),
        };
        tracing::info!(%peer, "scanner feed client connected");
        let mut rx = events.subscribe();
        clients.send_modify(|n| *n += 1);
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    e = rx.recv() => e,
                    _ = shutdown.changed() => return,
                };
                let event = match event {
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(%peer, missed = n, "scanner feed client lagged");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let mut line = match serde_json::to_vec(&event) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode a scan event");
                        continue;
                    }
                };
                line.push(b'\n');
                if let Err(e) = stream.write_all(&line).await {
                    tracing::info!(%peer, error = %e, "scanner feed client gone");
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toledo_frame_shows_the_weight_at_20_kg_division() {
        let f = toledo_frame(BridgeState {
            weight_kg: 24_560,
            motion: false,
        });
        assert_eq!(f.weight_kg(), Some(24_560.0));
        assert_eq!(f.division_kg(), 20.0);
        assert!(!f.motion);
    }
}
