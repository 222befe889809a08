//! A SICK LMS/TiM-style laser scanner over the lane, sending CoLa A `LMDscandata` telegrams on a
//! pseudo-terminal as vehicles pass under it.
//!
//! The geometry here is written independently of `bcp_drivers::sick_cola` (which turns scans
//! back into dimensions), so that the two cannot agree on a mistake: the scanner hangs
//! [`LmsLane::mount_height_mm`] above the road, scans a vertical plane across the lane from
//! `start_angle` in `angle_step` steps (1/10000 deg; 0 = straight down), and a vehicle is a box
//! centred under it. A ray that meets the roof returns the roof's distance; any other ray returns
//! the road's (a ray outside the roof at roof level crossed the side's plane above the box).
//!
//! Time is counted in scans, as the real scanner does: a vehicle `length_mm` long at
//! `speed_mm_per_s` stays under the scan line for `length / speed x frequency` scans, whatever
//! the simulator's real tick (tests run it faster than real time).

use std::time::Duration;

use anyhow::Result;
use bcp_drivers::sick_cola::{self, ScanTelegram};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};

use crate::indicators::PluggablePort;

/// Where the scanner hangs and how it scans.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LmsLane {
    pub mount_height_mm: f64,
    /// Scans per second x 100 (5000 = 50 Hz).
    pub frequency_centi_hz: u32,
    /// 1/10000 deg, 0 = straight down.
    pub start_angle: i32,
    /// 1/10000 deg.
    pub angle_step: u32,
    pub points: u32,
}

impl Default for LmsLane {
    /// 6 m above the road, 50 Hz, -45..+45 deg in 0.25 deg steps.
    fn default() -> Self {
        Self {
            mount_height_mm: 6000.0,
            frequency_centi_hz: 5000,
            start_angle: -450_000,
            angle_step: 2_500,
            points: 361,
        }
    }
}

/// A vehicle passing under the scanner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LmsVehicle {
    pub length_mm: f64,
    pub width_mm: f64,
    pub height_mm: f64,
    pub speed_mm_per_s: f64,
}

impl LmsVehicle {
    /// Scans during which the vehicle is under the scan line.
    pub fn scans(&self, lane: &LmsLane) -> u32 {
        let hz = f64::from(lane.frequency_centi_hz) / 100.0;
        // Rounded and clamped before the cast: a silly length cannot wrap.
        (self.length_mm / self.speed_mm_per_s.max(1.0) * hz)
            .round()
            .clamp(0.0, f64::from(u32::MAX)) as u32
    }
}

/// One scan of the empty road (`None`) or of a `(width, height)` box under the scanner.
pub fn scan(lane: &LmsLane, counter: u32, vehicle: Option<(f64, f64)>) -> ScanTelegram {
    let h = lane.mount_height_mm;
    let ranges = (0..lane.points)
        .map(|i| {
            let deg = (f64::from(lane.start_angle) + f64::from(i) * f64::from(lane.angle_step))
                / 10_000.0;
            let (sin, cos) = deg.to_radians().sin_cos();
            let road = h / cos;
            let r = match vehicle {
                Some((w, top)) if ((h - top) / cos * sin).abs() <= w / 2.0 => (h - top) / cos,
                _ => road,
            };
            // Distances of a few metres fit u16 millimetres; beyond that, no echo (0).
            if (0.0..f64::from(u16::MAX)).contains(&r) {
                r.round() as u16
            } else {
                0
            }
        })
        .collect();
    ScanTelegram {
        counter,
        frequency_centi_hz: lane.frequency_centi_hz,
        scale: 1.0,
        start_angle: lane.start_angle,
        angle_step: lane.angle_step,
        ranges,
    }
}

/// Sends one telegram every `tick` until shutdown: the vehicles from `vehicles` in turn, the
/// empty road in between (at least a few scans, so that consecutive vehicles stay apart).
pub async fn run_lms_scanner(
    mut port: PluggablePort,
    lane: LmsLane,
    tick: Duration,
    mut vehicles: mpsc::Receiver<LmsVehicle>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    const GAP_SCANS: u32 = 10;
    let mut interval = tokio::time::interval(tick);
    let (mut counter, mut current, mut gap) = (0u32, None::<(LmsVehicle, u32)>, GAP_SCANS);
    let mut out = Vec::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            _ = interval.tick() => {}
        }
        if current.is_none() && gap >= GAP_SCANS {
            if let Ok(v) = vehicles.try_recv() {
                current = Some((v, v.scans(&lane)));
            }
        }
        let seen = match current.as_mut() {
            Some((v, left)) if *left > 0 => {
                *left -= 1;
                gap = 0;
                Some((v.width_mm, v.height_mm))
            }
            _ => {
                current = None;
                gap = gap.saturating_add(1);
                None
            }
        };
        counter = counter.wrapping_add(1);
        out.clear();
        sick_cola::encode(&scan(&lane, counter, seen), &mut out);
        if let Some(master) = port.master_mut() {
            // Nobody reading must not stall the scanner for long: drop what does not fit in
            // 200 ms (a slow reader merely delays scans; a partly written one is garbage the
            // decoder skips).
            let wait = tick.max(Duration::from_millis(200));
            let _ = tokio::time::timeout(wait, master.write_all(&out)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bcp_drivers::serial::{open_port, SerialPortConfig};
    use bcp_drivers::sick_cola::{DimensionTracker, DimensionTrackerConfig, LaneGeometry};
    use tokio::io::AsyncReadExt;

    /// The simulated scanner on a pty, read back through the drivers' decoder and tracker: the
    /// truck's dimensions within one scan of length and one angular step of width.
    #[tokio::test]
    async fn a_passing_truck_is_measured_through_the_decoder() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let link = dir.path().join("ttyLMS");
        let port = PluggablePort::open(&link).expect("a pty");
        let lane = LmsLane::default();
        let (tx, rx) = mpsc::channel(4);
        let (_stop_tx, stop) = watch::channel(false);
        tokio::spawn(run_lms_scanner(
            port,
            lane,
            Duration::from_millis(2),
            rx,
            stop,
        ));
        let truck = LmsVehicle {
            length_mm: 16_500.0,
            width_mm: 2_550.0,
            height_mm: 4_000.0,
            speed_mm_per_s: 2_000.0,
        };
        let cfg = SerialPortConfig {
            path: link.display().to_string(),
            ..SerialPortConfig::default()
        };
        let mut reader = open_port(&cfg).expect("the link opens");
        tx.send(truck).await.expect("the scanner takes vehicles");
        let mut tracker = DimensionTracker::new(DimensionTrackerConfig {
            geometry: LaneGeometry {
                mount_height_mm: 6000.0,
                down_angle: 0,
                min_object_height_mm: 300.0,
            },
            speed_mm_per_s: 2_000.0,
            min_gap_scans: 3,
        });
        let measured = tokio::time::timeout(Duration::from_secs(20), async {
            let (mut buf, mut chunk) = (Vec::new(), vec![0u8; 8192]);
            loop {
                let n = reader.read(&mut chunk).await.expect("pty read");
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    match sick_cola::decode(&buf) {
                        Ok(Some((t, used))) => {
                            buf.drain(..used);
                            if let Some(d) = tracker.handle_scan(&t) {
                                return d;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            buf.drain(..e.skip.min(buf.len()));
                        }
                    }
                }
            }
        })
        .await
        .expect("the truck is measured within 20 s");
        // One scan at 50 Hz and 2 m/s is 40 mm.
        assert!(measured.length_mm.abs_diff(16_500) <= 40, "{measured:?}");
        assert!(measured.width_mm.abs_diff(2_550) <= 30, "{measured:?}");
        assert!(measured.height_mm.abs_diff(4_000) <= 5, "{measured:?}");
    }
}
