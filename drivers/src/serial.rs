//! The I/O edge: serial ports, reconnection, events and health.
//!
//! [`run_weighbridge`] (Toledo continuous), [`run_indicator`] (any indicator protocol by name,
//! polled ones included) and [`run_dimension_sensor`] each own one port for the life of the
//! daemon:
//!
//! 1. open the port (`tokio_serial`, non-exclusive on Unix so that a technician's terminal program
//!    can open it too), emit [`DeviceEvent::Connected`] and mark [`DeviceHealth::connected`];
//! 2. read through [`ProtocolCodec`]; garbage is skipped and counted in `frames_bad`, frames are
//!    counted in `frames_ok` and turned into events (weighbridge frames go through the
//!    [`StabilityDetector`] and the [`ScaleMonitor`], which raises and clears
//!    [`DeviceEvent::Alarm`]s: overload, underload, indicator error, zero drift);
//! 3. when the port cannot be opened, ends (EOF), fails (unplugged USB adapter: `EIO`) or, for a
//!    weighbridge, delivers no valid frame for [`WEIGHBRIDGE_SILENCE`] (continuous output sends
//!    7-10 frames/s; a pulled RS-232 cable is silent), emit [`DeviceEvent::Disconnected`], log
//!    WARN once per outage (the outage ends with the next valid frame), and retry with exponential
//!    backoff from [`BACKOFF_MIN`] to [`BACKOFF_MAX`]; I/O trouble is never returned as an error;
//! 4. return `Ok(())` when the shutdown watch turns `true` or its sender is dropped.
//!
//! Polled protocols (MT-SICS, SMA: [`AnyProtocol::poll_request`]) are asked every
//! [`POLL_INTERVAL`]; each request is also the retry of one that went unanswered, and a device
//! that answers none for [`WEIGHBRIDGE_SILENCE`] is treated as disconnected like a silent stream.
//!
//! `Disconnected` follows every `Connected`; while the port stays unopenable it is emitted once,
//! not on every retry. Raw [`DeviceEvent::Reading`]s are forwarded with `try_send` (dropped when the
//! channel is full, never blocking the port); every other event waits for channel space. If the
//! receiver is dropped the driver returns [`DriverError::EventsClosed`].
//!
//! Instants are taken from `tokio::time::Instant` (as `std::time::Instant`) so tests can pause time.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio_serial::{SerialPortBuilderExt, SerialStream};
use tokio_util::codec::FramedRead;
use tracing::{debug, info, warn};

use crate::alarms::{AlarmConfig, AlarmEvent, ScaleMonitor};
use crate::codec::{Decoded, DimsAscii, Protocol, ProtocolCodec};
use crate::dims_ascii::DimensionFrame;
use crate::indicator::{AnyProtocol, Measurement};
use crate::stability::{
    StabilityConfig, StabilityConfigError, StabilityDetector, WeighEvent, WeightReading,
};
use crate::toledo::ToledoCodec;

/// First reconnection delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest reconnection delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A weighbridge that sends no valid frame for this long is treated as disconnected.
pub const WEIGHBRIDGE_SILENCE: Duration = Duration::from_secs(5);
/// How often a polled indicator is asked for its weight (continuous ones send 7-10 frames/s).
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Serial line settings. Defaults: 9600 baud, 8 data bits, no parity, 1 stop bit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SerialPortConfig {
    /// Device path, e.g. `/dev/ttyUSB0` or a stable `/dev/serial/by-id/...` link.
    pub path: String,
    pub baud: u32,
    /// 5, 6, 7 or 8.
    pub data_bits: u8,
    pub parity: Parity,
    /// 1 or 2.
    pub stop_bits: u8,
    /// `none` (default), `software` (XON/XOFF) or `hardware` (RTS/CTS).
    pub flow_control: FlowControl,
}

impl Default for SerialPortConfig {
    fn default() -> Self {
        Self {
            path: String::new(),
            baud: 9600,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
            flow_control: FlowControl::None,
        }
    }
}

impl SerialPortConfig {
    /// Check the settings; the error names the key.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.path.is_empty() {
            return Err(("path", "must name a device"));
        }
        if self.baud == 0 {
            return Err(("baud", "must be positive"));
        }
        if !(5..=8).contains(&self.data_bits) {
            return Err(("data_bits", "must be 5, 6, 7 or 8"));
        }
        if !(1..=2).contains(&self.stop_bits) {
            return Err(("stop_bits", "must be 1 or 2"));
        }
        Ok(())
    }
}

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    #[default]
    None,
    Odd,
    Even,
}

/// Serial flow control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowControl {
    #[default]
    None,
    /// XON/XOFF.
    Software,
    /// RTS/CTS.
    Hardware,
}

/// What a device driver reports to the agent.
#[derive(Debug, Clone)]
pub enum DeviceEvent {
    /// From the stability detector (weighbridges).
    Weigh(WeighEvent),
    /// A raw reading (weighbridges); may be dropped when the channel is full.
    Reading(WeightReading),
    /// One measurement from a dimension system.
    Dimensions(DimensionFrame),
    /// The port was opened.
    Connected,
    /// The port was lost or cannot be opened.
    Disconnected { reason: String },
    /// Overload, underload, an indicator error or zero drift raised or cleared (weighbridges).
    Alarm(AlarmEvent),
    /// A vehicle came onto the bridge or left it, by the end the presence sensors saw
    /// ([`crate::presence::BridgeSides`]).
    Presence(crate::presence::PresenceEvent<Instant>),
}

/// Counters and state of one device, for health reporting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceHealth {
    pub connected: bool,
    pub frames_ok: u64,
    /// Rejected byte runs (garbage, bad checksums, truncated frames).
    pub frames_bad: u64,
    pub last_frame_at: Option<Instant>,
}

/// [`DeviceHealth`] shared between a driver and whoever reports it.
pub type SharedHealth = Arc<Mutex<DeviceHealth>>;

/// Errors that stop a driver. I/O trouble is not among them: it is retried.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("device {device}: serial port {key}: {reason}")]
    InvalidPortConfig {
        device: String,
        key: &'static str,
        reason: &'static str,
    },
    #[error("device {device}: {source}")]
    InvalidStabilityConfig {
        device: String,
        #[source]
        source: StabilityConfigError,
    },
    #[error("device {device}: the event receiver was dropped")]
    EventsClosed { device: String },
}

/// Drive a Mettler Toledo continuous-output weighbridge indicator until shutdown: the same as
/// [`run_indicator`] with [`AnyProtocol::Toledo`].
pub async fn run_weighbridge(
    name: String,
    port: SerialPortConfig,
    codec: ToledoCodec,
    stability: StabilityConfig,
    events: mpsc::Sender<DeviceEvent>,
    health: SharedHealth,
    shutdown: watch::Receiver<bool>,
) -> Result<(), DriverError> {
    let protocol = AnyProtocol::Toledo(codec);
    run_indicator(name, port, protocol, stability, events, health, shutdown).await
}

/// Drive a weighing indicator of any protocol ([`AnyProtocol`], chosen by name in the config)
/// until shutdown: readings in kg go through the [`StabilityDetector`]; polled protocols are
/// asked every [`POLL_INTERVAL`]. Readings that are not a valid weight in kg (overload,
/// underload, error, a non-metric unit) are counted as frames but feed nothing; the first
/// non-metric one is logged. Dimension frames, should the protocol be `dims-ascii`, are
/// forwarded as [`DeviceEvent::Dimensions`].
pub async fn run_indicator(
    name: String,
    port: SerialPortConfig,
    protocol: AnyProtocol,
    stability: StabilityConfig,
    events: mpsc::Sender<DeviceEvent>,
    health: SharedHealth,
    shutdown: watch::Receiver<bool>,
) -> Result<(), DriverError> {
    stability
        .validate()
        .map_err(|source| DriverError::InvalidStabilityConfig {
            device: name.clone(),
            source,
        })?;
    let mut monitor = ScaleMonitor::new(alarm_config(&stability));
    let mut detector = StabilityDetector::new(stability);
    let mut no_kg_logged = false;
    let driver = Driver {
        name,
        port,
        events,
        health,
        shutdown,
        silence: Some(WEIGHBRIDGE_SILENCE),
        poll: protocol.poll_request(),
    };
    driver
        .run(protocol, |m: Measurement, now, out, name: &str| match m {
            Measurement::Weight(r) => {
                monitor.handle_reading(now, &r);
                while let Some(alarm) = monitor.poll() {
                    out.push(DeviceEvent::Alarm(alarm));
                }
                match r.weight_reading() {
                Some(reading) => {
                    out.push(DeviceEvent::Reading(reading));
                    detector.handle_reading(now, reading);
                    while let Some(event) = detector.poll() {
                        out.push(DeviceEvent::Weigh(event));
                    }
                }
                None if r.weight_kg.is_none() && r.status == crate::ScaleStatus::Ok => {
                    if !no_kg_logged {
                        no_kg_logged = true;
                        warn!(device = %name, "indicator is not sending a metric unit; its readings are ignored");
                    }
                }
                None => debug!(device = %name, status = ?r.status, "indicator reports no valid weight"),
                }
            }
            Measurement::Dimensions(d) => out.push(DeviceEvent::Dimensions(d)),
            Measurement::Other(_) => {}
        })
        .await
}

/// Alarm tuning for a weighbridge: the empty bridge as the stability detector sees it.
fn alarm_config(stability: &StabilityConfig) -> AlarmConfig {
    AlarmConfig {
        empty_threshold_kg: stability.empty_threshold_kg,
        ..AlarmConfig::default()
    }
}

/// Drive a laser scanner over the lane that streams CoLa A `LMDscandata` telegrams
/// ([`crate::sick_cola`]) until shutdown: each vehicle that has passed under it is one
/// [`DeviceEvent::Dimensions`]. A scanner streams 25-50 scans/s, so [`WEIGHBRIDGE_SILENCE`]
/// without a valid telegram is a lost device, as for a weighbridge.
pub async fn run_lane_scanner(
    name: String,
    port: SerialPortConfig,
    tracker: crate::sick_cola::DimensionTrackerConfig,
    events: mpsc::Sender<DeviceEvent>,
    health: SharedHealth,
    shutdown: watch::Receiver<bool>,
) -> Result<(), DriverError> {
    let mut tracker = crate::sick_cola::DimensionTracker::new(tracker);
    let driver = Driver {
        name,
        port,
        events,
        health,
        shutdown,
        silence: Some(WEIGHBRIDGE_SILENCE),
        poll: None,
    };
    driver
        .run(
            crate::sick_cola::SickCola,
            |scan: crate::sick_cola::ScanTelegram, _now, out, _name: &str| {
                out.extend(tracker.handle_scan(&scan).map(DeviceEvent::Dimensions));
            },
        )
        .await
}

/// Drive a dimension system that sends `$DIM` lines until shutdown.
pub async fn run_dimension_sensor(
    name: String,
    port: SerialPortConfig,
    events: mpsc::Sender<DeviceEvent>,
    health: SharedHealth,
    shutdown: watch::Receiver<bool>,
) -> Result<(), DriverError> {
    let driver = Driver {
        name,
        port,
        events,
        health,
        shutdown,
        silence: None,
        poll: None,
    };
    driver
        .run(
            DimsAscii,
            |frame: DimensionFrame, _now, out, _name: &str| {
                out.push(DeviceEvent::Dimensions(frame));
            },
        )
        .await
}

/// The presence sensors at the bridge's two ends (`ENTRY 1` / `EXIT 0` lines, see
/// [`crate::presence_ascii`]): reports each vehicle on and off, with its end, as
/// [`DeviceEvent::Presence`]. Reconnects like the other drivers; after a reconnect the sensors'
/// states start from clear again (the module resends its states on a change).
pub async fn run_presence_sensors(
    name: String,
    port: SerialPortConfig,
    events: mpsc::Sender<DeviceEvent>,
    health: SharedHealth,
    shutdown: watch::Receiver<bool>,
) -> Result<(), DriverError> {
    let driver = Driver {
        name,
        port,
        events,
        health,
        shutdown,
        silence: None,
        poll: None,
    };
    let mut sides = crate::presence::BridgeSides::new();
    driver
        .run(
            crate::codec::PresenceAscii,
            move |line, now, out, _name: &str| {
                sides.handle_line(now, line);
                out.extend(std::iter::from_fn(|| sides.poll()).map(DeviceEvent::Presence));
            },
        )
        .await
}

struct Driver {
    name: String,
    port: SerialPortConfig,
    events: mpsc::Sender<DeviceEvent>,
    health: SharedHealth,
    shutdown: watch::Receiver<bool>,
    silence: Option<Duration>,
    /// Request to send every [`POLL_INTERVAL`], for polled protocols.
    poll: Option<Vec<u8>>,
}

/// Reconnection state: WARN once per outage; the outage ends with the next valid frame.
struct Outage {
    active: bool,
    backoff: Duration,
}

enum SessionEnd {
    Shutdown,
    Lost(String),
}

impl Driver {
    async fn run<P, H>(mut self, protocol: P, mut on_frame: H) -> Result<(), DriverError>
    where
        P: Protocol + Clone,
        H: FnMut(P::Frame, Instant, &mut Vec<DeviceEvent>, &str),
    {
        if let Err((key, reason)) = self.port.validate() {
            return Err(DriverError::InvalidPortConfig {
                device: self.name,
                key,
                reason,
            });
        }
        let mut outage = Outage {
            active: false,
            backoff: BACKOFF_MIN,
        };
        loop {
            if self.shutdown_requested() {
                return Ok(());
            }
            let (reason, was_connected) = match open_port(&self.port) {
                Ok(stream) => {
                    if outage.active {
                        debug!(device = %self.name, path = %self.port.path, "serial port open again");
                    } else {
                        info!(device = %self.name, path = %self.port.path, "serial port open");
                    }
                    self.set_health(|h| h.connected = true);
                    self.emit(DeviceEvent::Connected).await?;
                    let end = self
                        .session(stream, protocol.clone(), &mut on_frame, &mut outage)
                        .await?;
                    self.set_health(|h| h.connected = false);
                    match end {
                        SessionEnd::Shutdown => return Ok(()),
                        SessionEnd::Lost(reason) => (reason, true),
                    }
                }
                Err(e) => (format!("cannot open {}: {e}", self.port.path), false),
            };
            if outage.active {
                debug!(device = %self.name, %reason, "serial device still unavailable");
            } else {
                warn!(device = %self.name, path = %self.port.path, %reason, "serial device unavailable; reconnecting with backoff");
            }
            if was_connected || !outage.active {
                self.emit(DeviceEvent::Disconnected { reason }).await?;
            }
            outage.active = true;
            let delay = outage.backoff;
            outage.backoff = (outage.backoff * 2).min(BACKOFF_MAX);
            if self
                .until_shutdown(tokio::time::sleep(delay))
                .await
                .is_none()
            {
                return Ok(());
            }
        }
    }

    /// Read frames until the port is lost or shutdown is requested. A valid frame ends the
    /// outage and resets the backoff.
    async fn session<P, H>(
        &mut self,
        stream: SerialStream,
        protocol: P,
        on_frame: &mut H,
        outage: &mut Outage,
    ) -> Result<SessionEnd, DriverError>
    where
        P: Protocol,
        H: FnMut(P::Frame, Instant, &mut Vec<DeviceEvent>, &str),
    {
        let (reader, mut writer) = tokio::io::split(stream);
        let mut framed = FramedRead::new(reader, ProtocolCodec::new(protocol));
        let mut out = Vec::new();
        let mut deadline = self.silence.map(|s| tokio::time::Instant::now() + s);
        let mut poll_tick = tokio::time::interval(POLL_INTERVAL);
        poll_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let silence = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                item = framed.next() => item,
                () = silence => {
                    let ms = self.silence.unwrap_or_default().as_millis();
                    return Ok(SessionEnd::Lost(format!("no valid frame for {ms} ms")));
                }
                stop = shutdown_signal(&mut self.shutdown) => {
                    if stop {
                        return Ok(SessionEnd::Shutdown);
                    }
                    continue;
                }
                _ = poll_tick.tick(), if self.poll.is_some() => {
                    let request = self.poll.as_deref().unwrap_or_default();
                    if let Err(e) = writer.write_all(request).await {
                        return Ok(SessionEnd::Lost(format!("write error: {e}")));
                    }
                    continue;
                }
            };
            match next {
                None => return Ok(SessionEnd::Lost("end of stream".into())),
                Some(Err(e)) => return Ok(SessionEnd::Lost(format!("read error: {e}"))),
                Some(Ok(Decoded::Garbage(error))) => {
                    self.set_health(|h| h.frames_bad += 1);
                    debug!(device = %self.name, %error, "skipped bytes that are not a frame");
                }
                Some(Ok(Decoded::Frame(frame))) => {
                    let now = tokio::time::Instant::now();
                    deadline = self.silence.map(|s| now + s);
                    let now = now.into_std();
                    self.set_health(|h| {
                        h.frames_ok += 1;
                        h.last_frame_at = Some(now);
                    });
                    if outage.active {
                        info!(device = %self.name, "receiving valid frames again");
                    }
                    outage.active = false;
                    outage.backoff = BACKOFF_MIN;
                    on_frame(frame, now, &mut out, &self.name);
                    for event in out.drain(..) {
                        self.emit(event).await?;
                    }
                }
            }
        }
    }

    async fn emit(&self, event: DeviceEvent) -> Result<(), DriverError> {
        let closed = || DriverError::EventsClosed {
            device: self.name.clone(),
        };
        match event {
            DeviceEvent::Reading(_) => match self.events.try_send(event) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
                Err(mpsc::error::TrySendError::Closed(_)) => Err(closed()),
            },
            event => self.events.send(event).await.map_err(|_| closed()),
        }
    }

    fn set_health(&self, f: impl FnOnce(&mut DeviceHealth)) {
        // A panic elsewhere while holding the lock leaves plain counters behind: still usable.
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut health);
    }

    fn shutdown_requested(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Run `fut` unless shutdown comes first (`None`).
    async fn until_shutdown<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return Some(out),
                stop = shutdown_signal(&mut self.shutdown) => if stop { return None },
            }
        }
    }
}

/// Wait for the shutdown watch to change: `true` when shutdown is requested or the sender is gone.
async fn shutdown_signal(shutdown: &mut watch::Receiver<bool>) -> bool {
    match shutdown.changed().await {
        Ok(()) => *shutdown.borrow_and_update(),
        Err(_) => true,
    }
}

/// Open `cfg` for async I/O, shared (non-exclusive) on Unix; also used by `bcpctl serial`.
pub fn open_port(cfg: &SerialPortConfig) -> tokio_serial::Result<SerialStream> {
    let data_bits = match cfg.data_bits {
        5 => tokio_serial::DataBits::Five,
        6 => tokio_serial::DataBits::Six,
        7 => tokio_serial::DataBits::Seven,
        _ => tokio_serial::DataBits::Eight,
    };
    let parity = match cfg.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Odd => tokio_serial::Parity::Odd,
        Parity::Even => tokio_serial::Parity::Even,
    };
    let stop_bits = if cfg.stop_bits == 2 {
        tokio_serial::StopBits::Two
    } else {
        tokio_serial::StopBits::One
    };
    let flow_control = match cfg.flow_control {
        FlowControl::None => tokio_serial::FlowControl::None,
        FlowControl::Software => tokio_serial::FlowControl::Software,
        FlowControl::Hardware => tokio_serial::FlowControl::Hardware,
    };
    let builder = tokio_serial::new(cfg.path.as_str(), cfg.baud)
        .data_bits(data_bits)
        .parity(parity)
        .stop_bits(stop_bits)
        .flow_control(flow_control);
    // Shared access (no TIOCEXCL, shared flock) so that a technician's terminal program can open
    // the port alongside the daemon, as the appliance's service procedure expects.
    #[cfg(unix)]
    let builder = builder.exclusive(false);
    builder.open_native_async()
}

#[cfg(test)]
mod tests;
