//! # Metrics: the Prometheus text endpoint on localhost
//!
//! `GET /metrics` ([`http`]) answers with the text exposition format 0.0.4, rendered here by
//! [`render`] from the same [`StatusReport`] that `bcpctl status` shows, plus the ANPR timing
//! [`Histogram`]. Our own ~150 lines rather than a crate: the format is a few lines of text per
//! family, the values already exist in the status report, and the crates that do it
//! (`prometheus`, `metrics-exporter-prometheus`) bring a global registry or recorder and an
//! HTTP stack for what a `TcpListener` does here.
//!
//! Queue flow is counters (`_total`: records enqueued and acknowledged are the outbox's
//! sequence numbers, so they survive a restart); depths and ages are gauges.
//!
//! | family | type | labels |
//! |---|---|---|
//! | `bcp_agent_info` | gauge (1) | `version`, `post` |
//! | `bcp_agent_uptime_seconds` | gauge | |
//! | `bcp_device_frames_ok_total`, `bcp_device_frames_bad_total` | counter | `device`, `kind` (serial devices) |
//! | `bcp_device_connected` | gauge 0/1 | `device`, `kind` (serial devices) |
//! | `bcp_device_last_seen_seconds` | gauge | `device`, `kind` (devices seen since the start) |
//! | `bcp_device_alarms` | gauge | `device`, `kind` |
//! | `bcp_device_restarts_total` | counter | `device`, `kind` (driver restarts by the supervisor) |
//! | `bcp_crossings_recorded_total` | counter | `lane` |
//! | `bcp_evidence_images_total` | counter | `lane`, `image` (`plate`: crop and overview; `scan_thumbnail`), `outcome` (`made`, `missing`: the record is flagged why) |
//! | `bcp_lane_vehicle_on_bridge`, `bcp_lane_open_crossings` | gauge | `lane` |
//! | `bcp_outbox_enqueued_total`, `bcp_outbox_acknowledged_total` | counter | |
//! | `bcp_outbox_depth`, `bcp_outbox_oldest_unsynced_age_seconds`, `bcp_outbox_full_rejections_total` | gauge / counter | |
//! | `bcp_uplink_connected`, `bcp_uplink_connections_total`, `bcp_uplink_records_sent_total`, `bcp_uplink_record_bytes_sent_total`, `bcp_uplink_last_ack_timestamp_seconds` | | |
//! | `bcp_disk_outbox_bytes`, `bcp_disk_images_bytes`, `bcp_disk_budget_bytes`, `bcp_disk_high_water`, `bcp_disk_filesystem_size_bytes`, `bcp_disk_filesystem_available_bytes` | gauge | |
//! | `bcp_anpr_frame_seconds` | histogram | `camera` |

pub mod http;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::control::protocol::StatusReport;

/// `Content-Type` of the exposition format this module writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the ANPR frame-time buckets: a frame takes ~50 ms to 1 s on the
/// appliance's CPU; beyond that the camera falls behind.
pub const ANPR_BUCKETS_SECS: [f64; 10] = [0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8];

/// A fixed-bucket histogram that threads record into without locks.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative), plus one for `+Inf`.
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
}

/// A copy of a [`Histogram`], cumulative as Prometheus wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations <= it)`, then `(+Inf, count)`.
    pub buckets: Vec<(f64, u64)>,
    pub sum_secs: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            running += c.load(Ordering::Relaxed);
            buckets.push((
                self.bounds.get(i).copied().unwrap_or(f64::INFINITY),
                running,
            ));
        }
        HistogramSnapshot {
            buckets,
            sum_secs: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count: running,
        }
    }
}

/// The exposition text for `status` and the ANPR timings of `camera`.
pub fn render(status: &StatusReport, camera: &str, anpr: &HistogramSnapshot) -> String {
    let mut out = Exposition::default();
    out.family(
        "bcp_agent_info",
        "gauge",
        "The agent's version and post (always 1).",
    );
    out.sample(
        "bcp_agent_info",
        &[("version", &status.versions.agent), ("post", &status.post)],
        1.0,
    );
    out.family(
        "bcp_agent_uptime_seconds",
        "gauge",
        "Seconds since the agent started.",
    );
    out.sample("bcp_agent_uptime_seconds", &[], status.uptime_secs as f64);

    let serial: Vec<_> = status
        .devices
        .iter()
        .filter(|d| d.connected.is_some())
        .collect();
    let labels =
        |d: &bcp_record::DeviceStatus| [("device", d.name.clone()), ("kind", d.kind.clone())];
    out.family(
        "bcp_device_frames_ok_total",
        "counter",
        "Frames decoded from a serial device since the agent started.",
    );
    for d in &serial {
        out.sample_owned("bcp_device_frames_ok_total", &labels(d), d.frames_ok as f64);
    }
    out.family("bcp_device_frames_bad_total", "counter", "Frames rejected (garbled, bad checksum, truncated) from a serial device since the agent started.");
    for d in &serial {
        out.sample_owned(
            "bcp_device_frames_bad_total",
            &labels(d),
            d.frames_bad as f64,
        );
    }
    out.family(
        "bcp_device_restarts_total",
        "counter",
        "Times the agent restarted a device's driver after it failed, since the agent started.",
    );
    for d in &status.devices {
        out.sample_owned("bcp_device_restarts_total", &labels(d), d.restarts as f64);
    }
    out.family(
        "bcp_device_connected",
        "gauge",
        "Whether a serial device's port is open (1) or not (0).",
    );
    for d in &serial {
        out.sample_owned(
            "bcp_device_connected",
            &labels(d),
            bool_value(d.connected == Some(true)),
        );
    }
    out.family(
        "bcp_device_last_seen_seconds",
        "gauge",
        "Seconds since a device last delivered something usable.",
    );
    for d in &status.devices {
        if let Some(s) = d.last_seen_secs {
            out.sample_owned("bcp_device_last_seen_seconds", &labels(d), s as f64);
        }
    }
    out.family(
        "bcp_device_alarms",
        "gauge",
        "Active alarms of a device (overload, zero drift, ...).",
    );
    for d in &status.devices {
        out.sample_owned("bcp_device_alarms", &labels(d), d.alarms.len() as f64);
    }

    out.family(
        "bcp_crossings_recorded_total",
        "counter",
        "Crossings committed to the outbox since the agent started.",
    );
    for l in &status.lanes {
        out.sample(
            "bcp_crossings_recorded_total",
            &[("lane", &l.lane)],
            l.crossings_recorded as f64,
        );
    }
    out.family(
        "bcp_evidence_images_total",
        "counter",
        "Evidence images of the lane's records made, or missing (the record flagged with why), since the agent started.",
    );
    for l in &status.lanes {
        let n = &l.images;
        for (image, outcome, count) in [
            ("plate", "made", n.plate_images),
            ("plate", "missing", n.plate_images_missing),
            ("scan_thumbnail", "made", n.scan_thumbnails),
            ("scan_thumbnail", "missing", n.scan_thumbnails_missing),
        ] {
            out.sample(
                "bcp_evidence_images_total",
                &[("lane", &l.lane), ("image", image), ("outcome", outcome)],
                count as f64,
            );
        }
    }
    out.family(
        "bcp_lane_vehicle_on_bridge",
        "gauge",
        "Whether a vehicle is on the lane's weighbridge.",
    );
    for l in &status.lanes {
        out.sample(
            "bcp_lane_vehicle_on_bridge",
            &[("lane", &l.lane)],
            bool_value(l.vehicle_on_bridge),
        );
    }
    out.family(
        "bcp_lane_open_crossings",
        "gauge",
        "Crossings on the bridge or waiting for late evidence.",
    );
    for l in &status.lanes {
        out.sample(
            "bcp_lane_open_crossings",
            &[("lane", &l.lane)],
            l.open_crossings as f64,
        );
    }

    if let Some(o) = &status.outbox {
        out.family(
            "bcp_outbox_enqueued_total",
            "counter",
            "Records appended to the outbox (its last sequence number).",
        );
        out.sample("bcp_outbox_enqueued_total", &[], o.last_seq as f64);
        out.family(
            "bcp_outbox_acknowledged_total",
            "counter",
            "Records central confirmed it stored (the last acknowledged sequence number).",
        );
        out.sample(
            "bcp_outbox_acknowledged_total",
            &[],
            o.last_acked_seq as f64,
        );
        out.family(
            "bcp_outbox_depth",
            "gauge",
            "Records central has not confirmed.",
        );
        out.sample("bcp_outbox_depth", &[], o.depth as f64);
        out.family(
            "bcp_outbox_oldest_unsynced_age_seconds",
            "gauge",
            "Age of the oldest record central has not confirmed (0 when none).",
        );
        out.sample(
            "bcp_outbox_oldest_unsynced_age_seconds",
            &[],
            o.oldest_unsynced_age_secs.unwrap_or(0) as f64,
        );
        out.family(
            "bcp_outbox_full_rejections_total",
            "counter",
            "Crossings NOT stored because the outbox was full.",
        );
        out.sample(
            "bcp_outbox_full_rejections_total",
            &[],
            o.full_rejections_total as f64,
        );
    }

    let link = &status.link;
    out.family(
        "bcp_uplink_connected",
        "gauge",
        "Whether the MQTT session to central's broker is up.",
    );
    out.sample("bcp_uplink_connected", &[], bool_value(link.connected));
    out.family(
        "bcp_uplink_connections_total",
        "counter",
        "Connections to the broker since the agent started.",
    );
    out.sample(
        "bcp_uplink_connections_total",
        &[],
        link.connections_total as f64,
    );
    out.family(
        "bcp_uplink_records_sent_total",
        "counter",
        "Records handed to MQTT (resends count again).",
    );
    out.sample(
        "bcp_uplink_records_sent_total",
        &[],
        link.records_sent_total as f64,
    );
    out.family(
        "bcp_uplink_record_bytes_sent_total",
        "counter",
        "Compressed bytes of the record batches sent.",
    );
    out.sample(
        "bcp_uplink_record_bytes_sent_total",
        &[],
        link.record_bytes_sent_total as f64,
    );
    if let Some(at) = link.last_ack_at {
        out.family(
            "bcp_uplink_last_ack_timestamp_seconds",
            "gauge",
            "When central last confirmed records (Unix time).",
        );
        out.sample(
            "bcp_uplink_last_ack_timestamp_seconds",
            &[],
            at.timestamp_millis() as f64 / 1000.0,
        );
    }

    let disk = &status.disk;
    out.family(
        "bcp_disk_outbox_bytes",
        "gauge",
        "Bytes the outbox holds, records and images (what its budget caps).",
    );
    out.sample("bcp_disk_outbox_bytes", &[], disk.outbox_bytes as f64);
    out.family(
        "bcp_disk_images_bytes",
        "gauge",
        "Bytes of the images held in the outbox.",
    );
    out.sample("bcp_disk_images_bytes", &[], disk.images_bytes as f64);
    if let Some(b) = disk.budget_bytes {
        out.family(
            "bcp_disk_budget_bytes",
            "gauge",
            "The outbox's disk budget (outbox.budget_bytes).",
        );
        out.sample("bcp_disk_budget_bytes", &[], b as f64);
    }
    out.family(
        "bcp_disk_high_water",
        "gauge",
        "Whether the outbox is above the high-water mark of its budget.",
    );
    out.sample("bcp_disk_high_water", &[], bool_value(disk.high_water));
    if let (Some(total), Some(available)) = (disk.fs_total_bytes, disk.fs_available_bytes) {
        out.family(
            "bcp_disk_filesystem_size_bytes",
            "gauge",
            "Size of the filesystem holding the outbox.",
        );
        out.sample("bcp_disk_filesystem_size_bytes", &[], total as f64);
        out.family(
            "bcp_disk_filesystem_available_bytes",
            "gauge",
            "Bytes available to the agent on the filesystem holding the outbox.",
        );
        out.sample("bcp_disk_filesystem_available_bytes", &[], available as f64);
    }

    out.family(
        "bcp_anpr_frame_seconds",
        "histogram",
        "Time to read one camera frame (decode, detect, recognise).",
    );
    for (le, n) in &anpr.buckets {
        let le = if le.is_infinite() {
            "+Inf".to_owned()
        } else {
            le.to_string()
        };
        out.sample(
            "bcp_anpr_frame_seconds_bucket",
            &[("camera", camera), ("le", &le)],
            *n as f64,
        );
    }
    out.sample(
        "bcp_anpr_frame_seconds_sum",
        &[("camera", camera)],
        anpr.sum_secs,
    );
    out.sample(
        "bcp_anpr_frame_seconds_count",
        &[("camera", camera)],
        anpr.count as f64,
    );
    out.text
}

fn bool_value(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The text being written.
#[derive(Debug, Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", format_value(value));
    }

    fn sample_owned(&mut self, name: &str, labels: &[(&str, String)], value: f64) {
        let borrowed: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.sample(name, &borrowed, value);
    }
}

/// A label value: `\`, `"` and newline escaped.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A HELP text: `\` and newline escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Integers without a fraction, `+Inf`/`-Inf`/`NaN` as the format spells them.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.fract() == 0.0 && v.abs() < 9.0e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report
mod tests;
