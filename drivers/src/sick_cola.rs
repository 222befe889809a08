//! `sick-cola`: raw profiles from a SICK LMS/TiM-style laser scanner over the lane (CoLa A
//! `LMDscandata` telegrams), turned into vehicle length, width and height.
//!
//! Sources: SICK telegram listing for LMS1xx/TiM5xx (CoLa A); `/work/shared/FIELD-NOTES.md`,
//! "Dimensions and legal metrology" (field indices of the TiM55x telegram).
//!
//! # Telegram (CoLa A, ASCII)
//!
//! ```text
//! STX sRA LMDscandata <f2> ... <f25> <d0> <d1> ... ETX       (fields separated by one space)
//! ```
//!
//! Fields are hexadecimal unless noted; indices count from `sRA` = 0 (no encoders):
//!
//! | idx | field | here |
//! |---|---|---|
//! | 0, 1 | `sRA` (or `sSN` when streaming), `LMDscandata` | checked |
//! | 7 | scan counter | [`ScanTelegram::counter`] |
//! | 16 | scan frequency, 1/100 Hz (`1388` = 50 Hz) | [`ScanTelegram::frequency_centi_hz`] |
//! | 18 | number of encoders n (each adds 2 fields; later indices shift by 2n) | skipped |
//! | 19 | number of 16-bit channels (>= 1) | first channel read |
//! | 20 | channel name, `DIST1` | checked |
//! | 21 | scale factor, IEEE-754 float as hex (`3F800000` = 1.0) | [`ScanTelegram::scale`] |
//! | 23 | start angle, 1/10000 deg, signed | [`ScanTelegram::start_angle`] |
//! | 24 | angular step, 1/10000 deg | [`ScanTelegram::angle_step`] |
//! | 25 | number of points | |
//! | 26.. | distances, mm before scaling (0: no echo) | [`ScanTelegram::ranges`] |
//!
//! Fields after the first channel's data (more channels, RSSI, position, name, time stamp) are
//! not read. A telegram is at most [`MAX_TELEGRAM`] bytes.
//!
//! # Geometry ([`LaneGeometry`])
//!
//! The scanner hangs `mount_height_mm` above the road, its scan plane vertical and across the
//! lane. `down_angle` is the scanner angle that points straight down. A point at angle `a` and
//! range `r` lies at `x = r sin(a - down)` across the lane and `z = H - r cos(a - down)` above the
//! road. Points at least `min_object_height_mm` above the road belong to the vehicle: the
//! profile's width is `max x - min x` over them, its height `max z`.
//!
//! ```text
//!            scanner (height H)
//!               /|\
//!              / | \   r, a
//!        _____/__|__\_____  <- vehicle roof (z = height)
//!       |        |        |
//!  road =|=======|========|=====  x: across the lane
//! ```
//!
//! # Length ([`DimensionTracker`])
//!
//! One scan line cannot see length: the vehicle passes under it. Length = speed x time under the
//! scanner, time counted in scans (n scans with the vehicle / scan frequency) so that it does not
//! depend on when telegrams arrive. The speed comes from a configured source
//! ([`DimensionTrackerConfig::speed_mm_per_s`]: a fixed speed where vehicles are stopped and
//! drawn through at walking pace, or a value the caller updates from a second scan line or a
//! radar through [`DimensionTracker::set_speed`]). The tracker is pure: scans in, a
//! [`DimensionFrame`] out when the vehicle has left (`min_gap_scans` empty scans).
//!
//! # Resynchronisation
//!
//! STX starts a telegram, ETX ends it, and neither occurs inside; errors skip to the next STX.

use crate::dims_ascii::DimensionFrame;
use crate::frame::{FrameError, FrameErrorKind};

const STX: u8 = 0x02;
const ETX: u8 = 0x03;
/// Longest accepted telegram, STX and ETX included.
pub const MAX_TELEGRAM: usize = 16 * 1024;
/// Most points accepted in one scan.
pub const MAX_POINTS: usize = 2048;

/// One decoded scan (first 16-bit channel).
#[derive(Debug, Clone, PartialEq)]
pub struct ScanTelegram {
    pub counter: u32,
    pub frequency_centi_hz: u32,
    pub scale: f32,
    /// 1/10000 degree.
    pub start_angle: i32,
    /// 1/10000 degree.
    pub angle_step: u32,
    /// Raw distances (mm before scaling); 0 = no echo.
    pub ranges: Vec<u16>,
}

/// Decode one telegram from the front of `buf`.
pub fn decode(buf: &[u8]) -> Result<Option<(ScanTelegram, usize)>, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let next_stx = buf
        .iter()
        .skip(1)
        .position(|&b| b == STX)
        .map_or(buf.len(), |p| p + 1);
    let reject = |kind| FrameError::new(next_stx, kind);
    if first != STX {
        return Err(reject(FrameErrorKind::NoStart {
            expected: STX,
            found: first,
        }));
    }
    let window = &buf[..buf.len().min(MAX_TELEGRAM)];
    let Some(end) = window.iter().position(|&b| b == ETX) else {
        if next_stx < window.len() {
            return Err(reject(FrameErrorKind::Malformed {
                reason: "STX inside a telegram",
            }));
        }
        if window.len() == MAX_TELEGRAM {
            return Err(reject(FrameErrorKind::TooLong { max: MAX_TELEGRAM }));
        }
        return Ok(None);
    };
    if next_stx < end {
        return Err(reject(FrameErrorKind::Malformed {
            reason: "STX inside a telegram",
        }));
    }
    let malformed = |reason| FrameError::new(end + 1, FrameErrorKind::Malformed { reason });
    let body = std::str::from_utf8(&buf[1..end]).map_err(|_| malformed("not ASCII"))?;
    let fields: Vec<&str> = body.split(' ').collect();
    let field = |i: usize| {
        fields
            .get(i)
            .copied()
            .ok_or_else(|| malformed("telegram too short"))
    };
    let hex = |i: usize| -> Result<u32, FrameError> {
        u32::from_str_radix(field(i)?, 16).map_err(|_| malformed("a field is not hex"))
    };
    if !matches!(field(0)?, "sRA" | "sSN") || field(1)? != "LMDscandata" {
        return Err(malformed("not an LMDscandata telegram"));
    }
    let encoders = hex(18)? as usize;
    let base = 19 + 2 * encoders.min(MAX_POINTS);
    if hex(base)? == 0 || !field(base + 1)?.starts_with("DIST") {
        return Err(malformed("no distance channel"));
    }
    let count = hex(base + 6)? as usize;
    if count > MAX_POINTS {
        return Err(malformed("too many points"));
    }
    let ranges = (0..count)
        .map(|i| {
            hex(base + 7 + i)
                .and_then(|v| u16::try_from(v).map_err(|_| malformed("distance over 16 bits")))
        })
        .collect::<Result<Vec<u16>, _>>()?;
    let telegram = ScanTelegram {
        counter: hex(7)?,
        frequency_centi_hz: hex(16)?,
        scale: f32::from_bits(hex(base + 2)?),
        // Two's complement as sent: the cast reinterprets the 32 bits.
        start_angle: hex(base + 4)? as i32,
        angle_step: hex(base + 5)?,
        ranges,
    };
    if !(telegram.scale.is_finite() && telegram.scale > 0.0) {
        return Err(malformed("scale factor"));
    }
    Ok(Some((telegram, end + 1)))
}

/// Append a telegram as an `sRA` reply, fields not listed above written as `0` (no encoders,
/// one channel).
pub fn encode(t: &ScanTelegram, out: &mut Vec<u8>) {
    let mut fields: Vec<String> = vec!["sRA".into(), "LMDscandata".into()];
    fields.resize(26, "0".into());
    fields[7] = format!("{:X}", t.counter);
    fields[16] = format!("{:X}", t.frequency_centi_hz);
    fields[18] = "0".into();
    fields[19] = "1".into();
    fields[20] = "DIST1".into();
    fields[21] = format!("{:08X}", t.scale.to_bits());
    fields[22] = "00000000".into();
    fields[23] = format!("{:X}", t.start_angle as u32);
    fields[24] = format!("{:X}", t.angle_step);
    fields[25] = format!("{:X}", t.ranges.len());
    fields.extend(t.ranges.iter().map(|r| format!("{r:X}")));
    out.push(STX);
    out.extend_from_slice(fields.join(" ").as_bytes());
    out.push(ETX);
}

/// The telegrams as a [`crate::Protocol`] (for [`crate::serial::run_lane_scanner`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SickCola;

crate::codec::module_protocol!(SickCola, ScanTelegram);

/// Where the scanner hangs; see the module header.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LaneGeometry {
    pub mount_height_mm: f64,
    /// Scanner angle pointing straight down, 1/10000 degree.
    pub down_angle: i32,
    pub min_object_height_mm: f64,
}

/// Width and height of what one scan sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub width_mm: f64,
    pub height_mm: f64,
}

impl LaneGeometry {
    /// The vehicle's cross-section in this scan; `None` when nothing rises above the threshold.
    pub fn profile(&self, t: &ScanTelegram) -> Option<Profile> {
        let (mut min_x, mut max_x, mut max_z) = (f64::MAX, f64::MIN, f64::MIN);
        for (i, &raw) in t.ranges.iter().enumerate() {
            if raw == 0 {
                continue;
            }
            let r = f64::from(raw) * f64::from(t.scale);
            let angle = f64::from(t.start_angle) + i as f64 * f64::from(t.angle_step);
            let phi = ((angle - f64::from(self.down_angle)) / 10_000.0).to_radians();
            let (x, z) = (r * phi.sin(), self.mount_height_mm - r * phi.cos());
            if z >= self.min_object_height_mm {
                min_x = min_x.min(x);
                max_x = max_x.max(x);
                max_z = max_z.max(z);
            }
        }
        (max_z > f64::MIN).then_some(Profile {
            width_mm: max_x - min_x,
            height_mm: max_z,
        })
    }
}

/// Tuning of the [`DimensionTracker`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DimensionTrackerConfig {
    pub geometry: LaneGeometry,
    /// Speed of vehicles under the scanner, mm/s (updated with [`DimensionTracker::set_speed`]).
    pub speed_mm_per_s: f64,
    /// Empty scans after which the vehicle has left (noise tolerance). At least 1.
    pub min_gap_scans: u32,
}

/// Scans in, one [`DimensionFrame`] per vehicle out. Pure: it never reads a clock.
#[derive(Debug)]
pub struct DimensionTracker {
    config: DimensionTrackerConfig,
    seq: u32,
    /// While a vehicle is under the scanner: scans with it, max width, max height, empty scans.
    current: Option<(u32, f64, f64, u32)>,
}

impl DimensionTracker {
    pub fn new(config: DimensionTrackerConfig) -> Self {
        Self {
            config,
            seq: 0,
            current: None,
        }
    }

    pub fn set_speed(&mut self, speed_mm_per_s: f64) {
        self.config.speed_mm_per_s = speed_mm_per_s;
    }

    /// One scan; returns the vehicle's dimensions when this scan shows it has left.
    pub fn handle_scan(&mut self, t: &ScanTelegram) -> Option<DimensionFrame> {
        let profile = self.config.geometry.profile(t);
        match (&mut self.current, profile) {
            (None, None) => None,
            (None, Some(p)) => {
                self.current = Some((1, p.width_mm, p.height_mm, 0));
                None
            }
            (Some((scans, w, h, gap)), Some(p)) => {
                *scans += 1 + *gap;
                *gap = 0;
                *w = w.max(p.width_mm);
                *h = h.max(p.height_mm);
                None
            }
            (Some((_, _, _, gap)), None) if *gap + 1 < self.config.min_gap_scans.max(1) => {
                *gap += 1;
                None
            }
            (Some((scans, w, h, _)), None) => {
                let hz = f64::from(t.frequency_centi_hz.max(1)) / 100.0;
                let length = self.config.speed_mm_per_s * f64::from(*scans) / hz;
                self.seq = self.seq.wrapping_add(1);
                let frame = DimensionFrame {
                    seq: self.seq,
                    length_mm: mm(length),
                    width_mm: mm(*w),
                    height_mm: mm(*h),
                };
                self.current = None;
                Some(frame)
            }
        }
    }
}

/// Millimetres, rounded, clamped to `u32`.
fn mm(v: f64) -> u32 {
    // Clamped to the u32 range first, so the cast cannot wrap.
    v.round().clamp(0.0, f64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests;
