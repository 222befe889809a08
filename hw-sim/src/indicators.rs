//! Every weighing-indicator protocol on a pseudo-terminal, with faults on demand.
//!
//! [`run_indicator`] plays one indicator of any protocol `bcp_drivers` knows by name
//! ([`AnyProtocol`]): streaming protocols send a frame every `interval`; polled ones (MT-SICS,
//! SMA) answer the requests they are sent. Frames are encoded by the drivers' own codecs (whose
//! vectors come from the manuals), from the [`BridgeState`] the scenario drives.
//!
//! # The port: a stable link, unplugged and replugged
//!
//! [`PluggablePort`] is a pty reached through a symlink, as a USB adapter is reached through
//! `/dev/serial/by-id/...`. Unplugging closes the pty (the reader gets EIO/hang-up) and removes
//! the link; replugging opens a fresh pty and points the link at it, so a driver that reconnects
//! by the link path finds the device again.
//!
//! # Faults ([`Faults`], changed at any time through a `watch`)
//!
//! * `noise_bytes`: that many random bytes before every frame;
//! * `truncate_every`: every n-th frame is cut after half its bytes;
//! * `bad_checksum_every`: every n-th frame carries a wrong checksum (checksummed protocols);
//! * `rocking_kg`: the vehicle rocks: the weight swings by this much around the true one with
//!   the motion flag set;
//! * `unplugged`: the cable is out (see above).
//!
//! Faults are applied by the pure [`FaultInjector`] (seeded, so a test's faults are repeatable).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use bcp_drivers::indicator::{AnyProtocol, Decimal, Unit};
use bcp_drivers::tokio_serial::{SerialPort, SerialStream};
use bcp_drivers::toledo::ToledoFrame;
use bcp_drivers::{a12e, avery, cardinal, mt_sics, rlws, sma, xk3190};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::devices::{toledo_frame, BridgeState};

/// The pattern for `--protocol generic` that matches what this simulator's generic indicator
/// sends (A&D-style `ST,GS,+0012340kg` lines). Anchored at the end only, so that line noise
/// before a line does not cost the line.
pub const GENERIC_PATTERN: &str =
    r"(?P<motion>US)?(?:ST)?,(?:GS),(?P<weight>[+-]?[0-9.]+)(?P<unit>kg)$";

/// Faults to inject; `Faults::default()` is a healthy device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    pub noise_bytes: usize,
    /// Every n-th frame is cut in half (0: never).
    pub truncate_every: u32,
    /// Every n-th frame has a wrong checksum (0: never; protocols without one: never).
    pub bad_checksum_every: u32,
    /// Swing of a rocking vehicle, kg (0: still).
    pub rocking_kg: u32,
    pub unplugged: bool,
}

/// Applies [`Faults`] to frames; pure and seeded.
#[derive(Debug)]
pub struct FaultInjector {
    rng: StdRng,
    frames: u32,
}

impl FaultInjector {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            frames: 0,
        }
    }

    /// What the indicator shows under `faults`: a rocking vehicle swings +a, 0, -a, 0, ...
    pub fn state(&self, faults: &Faults, state: BridgeState) -> BridgeState {
        if faults.rocking_kg == 0 || state.weight_kg == 0 {
            return state;
        }
        let a = faults.rocking_kg;
        let weight_kg = match self.frames % 4 {
            0 => state.weight_kg + a,
            2 => state.weight_kg.saturating_sub(a),
            _ => state.weight_kg,
        };
        BridgeState {
            weight_kg,
            motion: true,
        }
    }

    /// The bytes that go on the wire for `frame` under `faults`.
    pub fn corrupt(&mut self, faults: &Faults, protocol: &AnyProtocol, frame: &[u8]) -> Vec<u8> {
        self.frames = self.frames.wrapping_add(1);
        let nth = |every: u32| every != 0 && self.frames.is_multiple_of(every);
        let mut out: Vec<u8> = (0..faults.noise_bytes).map(|_| self.rng.random()).collect();
        let mut frame = frame.to_vec();
        if nth(faults.bad_checksum_every) {
            if let Some(at) = checksum_offset(protocol, frame.len()) {
                frame[at] = match frame[at] {
                    b'0' => b'1',
                    b'A'..=b'F' | b'1'..=b'9' => b'0',
                    other => (other ^ 0x01) & 0x7F,
                };
            }
        }
        if nth(faults.truncate_every) {
            frame.truncate(frame.len() / 2);
        }
        out.extend_from_slice(&frame);
        out
    }
}

/// Where the checksum byte sits in a frame of `len` bytes, for checksummed protocols.
fn checksum_offset(protocol: &AnyProtocol, len: usize) -> Option<usize> {
    if !protocol.has_checksum() {
        return None;
    }
    match protocol {
        AnyProtocol::Toledo(_) => len.checked_sub(1),
        AnyProtocol::Xk3190(_) | AnyProtocol::Xk3190A9 { .. } => len.checked_sub(2),
        AnyProtocol::A12e => len.checked_sub(3),
        _ => None,
    }
}

/// The frame a streaming indicator of `protocol` sends for `state`; nothing for polled protocols
/// and for `dims-ascii` (not an indicator).
pub fn frame_for(protocol: &AnyProtocol, state: BridgeState, out: &mut Vec<u8>) {
    let w = Decimal::new(i64::from(state.weight_kg), 0);
    match protocol {
        AnyProtocol::Toledo(c) => {
            let f: ToledoFrame = toledo_frame(state);
            c.encode(&f, out)
        }
        AnyProtocol::Xk3190(c) => c.encode(&xk3190::Xk3190Frame { weight: w }, out),
        AnyProtocol::Rlws => rlws::encode(
            &rlws::RlwsFrame {
                weight: w,
                unit: Unit::Kg,
                net: false,
                status: match (state.motion, state.weight_kg) {
                    (true, _) => rlws::RlwsStatus::Motion,
                    (false, 0) => rlws::RlwsStatus::CentreOfZero,
                    (false, _) => rlws::RlwsStatus::Valid,
                },
            },
            out,
        ),
        AnyProtocol::Cardinal => cardinal::encode(
            &cardinal::CardinalFrame {
                weight: w,
                motion: state.motion,
                out_of_range: false,
                unit: Unit::Kg,
                net: false,
            },
            out,
        ),
        AnyProtocol::Avery => avery::encode(
            &avery::AveryFrame {
                net: false,
                weight: w,
                unit: Unit::Kg,
            },
            out,
        ),
        AnyProtocol::A12e => a12e::encode(
            &a12e::A12eFrame {
                net: false,
                weight: a12e::A12eWeight::Value(w),
            },
            out,
        ),
        AnyProtocol::Generic(_) => out.extend_from_slice(
            format!(
                "{},GS,+{:07}kg\r\n",
                if state.motion { "US" } else { "ST" },
                state.weight_kg
            )
            .as_bytes(),
        ),
        AnyProtocol::MtSics
        | AnyProtocol::Sma
        | AnyProtocol::Xk3190A9 { .. }
        | AnyProtocol::DimsAscii => {}
    }
}

/// A polled indicator's answer to the request at the front of `buf`: `None` needs more bytes;
/// else the bytes used and the reply (empty: no reply).
///
/// MT-SICS: `SI` -> `S S|D <w> kg`; `S` -> `S S <w> kg`, or `S I` while in motion (a real
/// balance waits for stability up to its timeout); `Z` -> `Z A` (`Z I` in motion); `T` ->
/// `T S <w> kg`; `@` -> `I4 A "BCPSIM01"`; anything else -> `ES`.
/// SMA: `W`, `Z`, `T` -> the weight reply; other requests get no reply.
/// XK3190 command mode: requests to its address get the handshake, gross, tare (0) or net
/// (= gross); requests to other addresses get nothing (another indicator on the RS-485 bus).
pub fn answer(protocol: &AnyProtocol, buf: &[u8], state: BridgeState) -> Option<(usize, Vec<u8>)> {
    use mt_sics::{MtSicsCommand as C, MtSicsError, MtSicsReply as R, MtSicsStatus as St};
    let w = Decimal::new(i64::from(state.weight_kg), 0);
    let mut out = Vec::new();
    match protocol {
        AnyProtocol::MtSics => match mt_sics::decode_command(buf) {
            Ok(None) => None,
            Err(e) => Some((e.skip, out)),
            Ok(Some((cmd, n))) => {
                let weight = |command: &str, dynamic| R::Weight {
                    command: command.into(),
                    dynamic,
                    weight: w,
                    unit: "kg".into(),
                };
                let status = |command: &str, status| R::Status {
                    command: command.into(),
                    status,
                };
                let reply = match cmd {
                    C::WeighImmediately => weight("S", state.motion),
                    C::Weigh if state.motion => status("S", St::NotExecutable),
                    C::Weigh => weight("S", false),
                    C::Zero | C::ZeroImmediately if state.motion => status("Z", St::NotExecutable),
                    C::Zero | C::ZeroImmediately => status("Z", St::Done),
                    C::Tare | C::TareImmediately => weight("T", false),
                    C::Reset => R::Other("I4 A \"BCPSIM01\"".into()),
                    C::Unknown(_) => R::Error(MtSicsError::Syntax),
                };
                mt_sics::encode_reply(&reply, &mut out);
                Some((n, out))
            }
        },
        AnyProtocol::Sma => match sma::decode_request(buf) {
            Ok(None) => None,
            Err(e) => Some((e.skip, out)),
            Ok(Some((c, n))) => {
                if matches!(c, b'W' | b'Z' | b'T') {
                    let frame = sma::SmaFrame {
                        status: if state.weight_kg == 0 {
                            sma::SmaStatus::CentreOfZero
                        } else {
                            sma::SmaStatus::None
                        },
                        range: b'1',
                        mode: b'G',
                        motion: state.motion,
                        weight: Some(w),
                        unit: Unit::Kg,
                    };
                    sma::encode(&frame, &mut out);
                }
                Some((n, out))
            }
        },
        AnyProtocol::Xk3190A9 { address } => match bcp_drivers::xk3190_a9::decode_request(buf) {
            Ok(None) => None,
            Err(e) => Some((e.skip, out)),
            Ok(Some((req, n))) => {
                use bcp_drivers::xk3190_a9::{encode_reply, A9Command, A9Reply};
                if req.address == *address {
                    let value = match req.command {
                        A9Command::Handshake => None,
                        A9Command::Tare => Some(Decimal::new(0, 0)),
                        A9Command::Gross | A9Command::Net => Some(w),
                    };
                    let reply = A9Reply {
                        address: req.address,
                        command: req.command,
                        value,
                    };
                    encode_reply(&reply, &mut out);
                }
                Some((n, out))
            }
        },
        _ => Some((buf.len().max(1), out)),
    }
}

/// A pty behind a stable symlink that can be unplugged and replugged.
#[derive(Debug)]
pub struct PluggablePort {
    link: PathBuf,
    master: Option<SerialStream>,
    /// Held so the pty stays usable while nobody has it open; never read.
    slave: Option<SerialStream>,
}

impl PluggablePort {
    /// Opens a pty and makes `link` point at it.
    pub fn open(link: &Path) -> Result<Self> {
        let mut port = Self {
            link: link.to_path_buf(),
            master: None,
            slave: None,
        };
        port.replug()?;
        Ok(port)
    }

    /// The stable path a driver opens.
    pub fn link(&self) -> &Path {
        &self.link
    }

    /// The device's end of the pty, while plugged in.
    pub fn master_mut(&mut self) -> Option<&mut SerialStream> {
        self.master.as_mut()
    }

    pub fn is_plugged(&self) -> bool {
        self.master.is_some()
    }

    /// Closes the pty and removes the link.
    pub fn unplug(&mut self) {
        self.master = None;
        self.slave = None;
        // Already gone is fine: the cable is out either way.
        let _ = std::fs::remove_file(&self.link);
    }

    /// Opens a fresh pty and points the link at it (atomically, by rename).
    pub fn replug(&mut self) -> Result<()> {
        let (master, slave) = SerialStream::pair().context("opening a pseudo-terminal pair")?;
        let target = slave
            .name()
            .context("the pseudo-terminal has no slave path")?;
        let tmp = self.link.with_extension("link-part");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp)
            .with_context(|| format!("linking {} to {target}", tmp.display()))?;
        std::fs::rename(&tmp, &self.link)
            .with_context(|| format!("pointing {} at {target}", self.link.display()))?;
        self.master = Some(master);
        self.slave = Some(slave);
        Ok(())
    }
}

/// Plays one indicator of `protocol` on `port` until shutdown.
pub async fn run_indicator(
    mut port: PluggablePort,
    protocol: AnyProtocol,
    interval: Duration,
    state: watch::Receiver<BridgeState>,
    mut faults: watch::Receiver<Faults>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let polled = protocol.poll_request().is_some();
    let mut injector = FaultInjector::new(0x5EED);
    let mut tick = tokio::time::interval(interval);
    let mut requests = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        let current = *faults.borrow();
        if current.unplugged && port.is_plugged() {
            tracing::info!(link = %port.link().display(), "indicator unplugged");
            port.unplug();
        } else if !current.unplugged && !port.is_plugged() {
            port.replug()?;
            tracing::info!(link = %port.link().display(), "indicator plugged in again");
            requests.clear();
        }
        let mut out = Vec::new();
        {
            let read = async {
                match port.master.as_mut() {
                    Some(m) if polled => m.read(&mut chunk).await.ok(),
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                changed = faults.changed() => if changed.is_err() { return Ok(()) } else { continue },
                _ = tick.tick(), if !polled => {
                    let shown = injector.state(&current, *state.borrow());
                    let mut frame = Vec::new();
                    frame_for(&protocol, shown, &mut frame);
                    out = injector.corrupt(&current, &protocol, &frame);
                }
                n = read => match n {
                    Some(n) if n > 0 => {
                        requests.extend_from_slice(&chunk[..n]);
                        let shown = injector.state(&current, *state.borrow());
                        while let Some((used, reply)) = answer(&protocol, &requests, shown) {
                            requests.drain(..used.clamp(1, requests.len()));
                            if !reply.is_empty() {
                                out.extend(injector.corrupt(&current, &protocol, &reply));
                            }
                        }
                    }
                    // The reader went away: wait for the next one.
                    _ => tokio::time::sleep(interval).await,
                },
            }
        }
        if let (Some(master), false) = (port.master.as_mut(), out.is_empty()) {
            // Nobody reading must not stall the device: drop what does not fit in time.
            let _ = tokio::time::timeout(interval, master.write_all(&out)).await;
        }
    }
}

#[cfg(test)]
mod tests;
