//! # The lane's device board: what the heartbeat tells central about each device
//!
//! The agent registers each device once ([`DeviceBoard::add_serial`] for the serial drivers,
//! which keep their own counters in a [`SharedHealth`]; [`DeviceBoard::add`] for the camera and
//! the scanner, which the agent sees only through what they deliver), then tells the board what
//! it observes: evidence arriving ([`DeviceBoard::seen`]) and scale alarms raised or cleared
//! ([`DeviceBoard::alarm`]). [`DeviceBoard::publish`] puts a snapshot on a `watch` channel that
//! the uplink reads for every status message (`bcp_record::PostStatus::devices`), so central's
//! `bcp-central posts` shows a silent camera or a weighbridge in overload without anyone on site.
//!
//! Pure apart from the channel: time comes in as an argument.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use bcp_drivers::alarms::{Alarm, AlarmEvent};
use bcp_drivers::SharedHealth;
use bcp_record::DeviceStatus;
use tokio::sync::watch;

/// One registered device.
#[derive(Debug)]
struct Entry {
    name: String,
    kind: &'static str,
    serial: Option<SharedHealth>,
    last_seen: Option<Instant>,
    alarms: Vec<Alarm>,
    /// Restarts of its driver by the agent's supervisor.
    restarts: Arc<AtomicU64>,
}

/// The health of every device of the lane; see the module documentation.
#[derive(Debug)]
pub struct DeviceBoard {
    entries: Vec<Entry>,
    tx: watch::Sender<Vec<DeviceStatus>>,
}

impl DeviceBoard {
    /// An empty board and the receiving end the uplink reads.
    pub fn new() -> (Self, watch::Receiver<Vec<DeviceStatus>>) {
        let (tx, rx) = watch::channel(Vec::new());
        (
            Self {
                entries: Vec::new(),
                tx,
            },
            rx,
        )
    }

    /// A serial device whose driver keeps `health` (connection, frame counters, last frame).
    /// Returns the device's restart counter, for its supervisor.
    pub fn add_serial(
        &mut self,
        name: &str,
        kind: &'static str,
        health: SharedHealth,
    ) -> Arc<AtomicU64> {
        self.push(name, kind, Some(health))
    }

    /// A device known only by what it delivers (camera frames, scan events). Returns the
    /// device's restart counter, for its supervisor.
    pub fn add(&mut self, name: &str, kind: &'static str) -> Arc<AtomicU64> {
        self.push(name, kind, None)
    }

    fn push(
        &mut self,
        name: &str,
        kind: &'static str,
        serial: Option<SharedHealth>,
    ) -> Arc<AtomicU64> {
        let restarts = Arc::new(AtomicU64::new(0));
        self.entries.push(Entry {
            name: name.to_owned(),
            kind,
            serial,
            last_seen: None,
            alarms: Vec::new(),
            restarts: restarts.clone(),
        });
        restarts
    }

    /// `name` delivered something usable at `at`.
    pub fn seen(&mut self, name: &str, at: Instant) {
        if let Some(e) = self.entry(name) {
            e.last_seen = Some(at);
        }
    }

    /// A scale alarm of `name` was raised or cleared.
    pub fn alarm(&mut self, name: &str, event: &AlarmEvent) {
        let Some(e) = self.entry(name) else { return };
        match *event {
            AlarmEvent::Raised { alarm, .. } => {
                if !e.alarms.iter().any(|a| same_kind(a, &alarm)) {
                    e.alarms.push(alarm);
                }
            }
            AlarmEvent::Cleared { alarm, .. } => e.alarms.retain(|a| !same_kind(a, &alarm)),
        }
    }

    fn entry(&mut self, name: &str) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.name == name)
    }

    /// Every device's status at `now`.
    pub fn snapshot(&self, now: Instant) -> Vec<DeviceStatus> {
        self.entries
            .iter()
            .map(|e| {
                let serial = e
                    .serial
                    .as_ref()
                    .map(|h| h.lock().unwrap_or_else(PoisonError::into_inner).clone());
                let last = match (&serial, e.last_seen) {
                    (Some(h), seen) => latest(h.last_frame_at, seen),
                    (None, seen) => seen,
                };
                DeviceStatus {
                    name: e.name.clone(),
                    kind: e.kind.to_owned(),
                    connected: serial.as_ref().map(|h| h.connected),
                    frames_ok: serial.as_ref().map_or(0, |h| h.frames_ok),
                    frames_bad: serial.as_ref().map_or(0, |h| h.frames_bad),
                    last_seen_secs: last.map(|t| now.saturating_duration_since(t).as_secs()),
                    alarms: e.alarms.iter().map(|a| alarm_name(a).to_owned()).collect(),
                    restarts: e.restarts.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Puts the snapshot at `now` where the uplink reads it.
    pub fn publish(&self, now: Instant) {
        // No receiver (the uplink has stopped) is not an error: there is nobody to tell.
        let _ = self.tx.send(self.snapshot(now));
    }
}

fn latest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn same_kind(a: &Alarm, b: &Alarm) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// The alarm as central's operator reads it.
pub fn alarm_name(alarm: &Alarm) -> &'static str {
    match alarm {
        Alarm::Overload => "overload",
        Alarm::Underload => "underload",
        Alarm::IndicatorError => "indicator_error",
        Alarm::ZeroDrift { .. } => "zero_drift",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report
mod tests {
    use super::*;
    use bcp_drivers::DeviceHealth;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[test]
    fn reports_serial_counters_evidence_age_and_alarms() {
        let t0 = Instant::now();
        let wb: SharedHealth = Arc::new(Mutex::new(DeviceHealth::default()));
        let (mut board, rx) = DeviceBoard::new();
        board.add_serial("WB-1", "weighbridge", wb.clone());
        board.add("CAM-1", "camera");
        board.add("XR-1", "scanner");

        *wb.lock().unwrap() = DeviceHealth {
            connected: true,
            frames_ok: 120,
            frames_bad: 3,
            last_frame_at: Some(t0 + Duration::from_secs(8)),
        };
        board.seen("CAM-1", t0 + Duration::from_secs(5));
        board.seen("nobody", t0); // unknown names are ignored
        board.alarm(
            "WB-1",
            &AlarmEvent::Raised {
                alarm: Alarm::Overload,
                at: t0,
            },
        );
        board.alarm(
            "WB-1",
            &AlarmEvent::Raised {
                alarm: Alarm::ZeroDrift { offset_kg: 60.0 },
                at: t0,
            },
        );
        board.alarm(
            "WB-1",
            &AlarmEvent::Cleared {
                alarm: Alarm::Overload,
                at: t0,
            },
        );
        board.publish(t0 + Duration::from_secs(10));

        let devices = rx.borrow().clone();
        assert_eq!(devices.len(), 3);
        let wb = &devices[0];
        assert_eq!(
            (wb.connected, wb.frames_ok, wb.frames_bad, wb.last_seen_secs),
            (Some(true), 120, 3, Some(2))
        );
        assert_eq!(wb.alarms, ["zero_drift"]);
        assert_eq!(wb.state(60), "alarm");
        let cam = &devices[1];
        assert_eq!((cam.connected, cam.last_seen_secs), (None, Some(5)));
        assert_eq!(cam.state(60), "ok");
        assert_eq!(cam.state(4), "silent");
        let xr = &devices[2];
        assert_eq!((xr.last_seen_secs, xr.state(60)), (None, "silent"));
    }

    #[test]
    fn a_closed_port_is_down() {
        let wb: SharedHealth = Arc::new(Mutex::new(DeviceHealth::default()));
        let (mut board, _rx) = DeviceBoard::new();
        board.add_serial("WB-1", "weighbridge", wb);
        let s = board.snapshot(Instant::now());
        assert_eq!((s[0].connected, s[0].state(60)), (Some(false), "down"));
    }
}
