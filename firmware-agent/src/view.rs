//! # The agent as its local tools see it
//!
//! [`AgentView`] holds read handles on the running agent: the device board's snapshots, the
//! lane's state, the outbox, the uplink's [`UplinkMonitor`], the feed of committed crossings and
//! the ANPR timings. The control API ([`crate::control`]) and the metrics endpoint
//! ([`crate::metrics`]) read it and never write to the agent's state, so a slow or broken client
//! cannot hold up a weighing. The main loop writes through [`ViewFeed`].
//!
//! [`AgentView::status`] reads the outbox (one short SQLite query) and the filesystem
//! (`statvfs`); call it off the async threads (`spawn_blocking`).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bcp_record::{Crossing, DeviceStatus};
use bcp_sync::outbox::Outbox;
use bcp_sync::uplink::UplinkMonitor;
use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, watch, Notify};

use crate::control::protocol::ReloadReport;
use crate::control::protocol::{
    DiskReport, ImageCounts, LaneReport, LastCrossing, LinkReport, OutboxReport, StatusReport,
    Versions, PROTOCOL_VERSION,
};
use crate::metrics::Histogram;
use crate::reload::ReloadHandle;

/// A crossing as the outbox stored it, for `events tail`.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub seq: u64,
    pub crossing: Arc<Crossing>,
}

/// Crossings kept for a slow `events tail` client before it is told it lagged.
const FEED_CAPACITY: usize = 256;

/// Read handles on the running agent; see the module documentation.
#[derive(Debug)]
pub struct AgentView {
    post: String,
    broker: String,
    started: Instant,
    outbox: Arc<Outbox>,
    devices: watch::Receiver<Vec<DeviceStatus>>,
    lane: watch::Receiver<LaneReport>,
    uplink: Arc<UplinkMonitor>,
    crossings: broadcast::Sender<Recorded>,
    wake_uplink: Arc<Notify>,
    camera: String,
    anpr_latency: Arc<Histogram>,
    reload: Option<ReloadHandle>,
}

/// The main loop's side of the view.
#[derive(Debug)]
pub struct ViewFeed {
    lane: watch::Sender<LaneReport>,
    crossings: broadcast::Sender<Recorded>,
}

/// What the view is built from.
#[derive(Debug)]
pub struct ViewParts {
    pub post: String,
    pub lane: String,
    /// The devices that feed the lane, by name.
    pub lane_devices: Vec<String>,
    pub broker: String,
    pub outbox: Arc<Outbox>,
    pub devices: watch::Receiver<Vec<DeviceStatus>>,
    pub uplink: Arc<UplinkMonitor>,
    pub wake_uplink: Arc<Notify>,
    pub camera: String,
    pub anpr_latency: Arc<Histogram>,
    /// Where the control API's `reload` goes; `None`: the agent cannot reload.
    pub reload: Option<ReloadHandle>,
}

impl AgentView {
    pub fn new(parts: ViewParts) -> (Arc<Self>, ViewFeed) {
        let (lane_tx, lane_rx) = watch::channel(LaneReport {
            lane: parts.lane,
            vehicle_on_bridge: false,
            open_crossings: 0,
            crossings_recorded: 0,
            last_crossing: None,
            devices: parts.lane_devices,
            images: ImageCounts::default(),
        });
        let (crossings, _) = broadcast::channel(FEED_CAPACITY);
        let view = Self {
            post: parts.post,
            broker: parts.broker,
            started: Instant::now(),
            outbox: parts.outbox,
            devices: parts.devices,
            lane: lane_rx,
            uplink: parts.uplink,
            crossings: crossings.clone(),
            wake_uplink: parts.wake_uplink,
            camera: parts.camera,
            anpr_latency: parts.anpr_latency,
            reload: parts.reload,
        };
        (
            Arc::new(view),
            ViewFeed {
                lane: lane_tx,
                crossings,
            },
        )
    }

    pub fn devices(&self) -> Vec<DeviceStatus> {
        self.devices.borrow().clone()
    }

    pub fn lanes(&self) -> Vec<LaneReport> {
        vec![self.lane.borrow().clone()]
    }

    /// Every crossing committed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Recorded> {
        self.crossings.subscribe()
    }

    /// Wakes the uplink (`sync now`); it is connected or not.
    /// Asks the main loop to re-read the config (the one write a client may request: it
    /// changes nothing the file does not say).
    pub async fn reload(&self) -> Result<ReloadReport, String> {
        match &self.reload {
            Some(handle) => handle.request().await,
            None => Err(
                "this agent cannot reload its config (started without a config file)".to_owned(),
            ),
        }
    }

    pub fn wake_uplink(&self) -> bool {
        self.wake_uplink.notify_one();
        self.uplink.snapshot().connected
    }

    /// The camera whose frames the ANPR timings are of, and the timings.
    pub fn anpr_latency(&self) -> (&str, &Histogram) {
        (&self.camera, &self.anpr_latency)
    }

    /// Records central has not confirmed (`None` if the outbox cannot be read).
    pub fn outbox_depth(&self) -> Option<u64> {
        self.outbox.stats().ok().map(|s| s.depth)
    }

    /// Everything at `now`; blocking (see the module documentation).
    pub fn status(&self, now: DateTime<Utc>) -> StatusReport {
        let mut problems = Vec::new();
        let stats = self
            .outbox
            .stats()
            .map_err(|e| problems.push(format!("outbox: {e}")))
            .ok();
        let outbox_bytes = self.outbox.bytes_used();
        let age = |t: DateTime<Utc>| u64::try_from((now - t).num_seconds()).unwrap_or(0);
        let outbox = stats.as_ref().map(|s| OutboxReport {
            depth: s.depth,
            oldest_unsynced_age_secs: s.oldest_undelivered_recorded_at.map(age),
            last_seq: s.last_seq,
            last_acked_seq: s.last_acked_seq,
            bytes: outbox_bytes,
            images_pending: s.blobs_pending,
            full_rejections_total: s.full_rejections_total,
        });
        let (fs_total_bytes, fs_available_bytes) = match filesystem_of(self.outbox.path()) {
            Ok((total, available)) => (Some(total), Some(available)),
            Err(e) => {
                problems.push(format!(
                    "disk: cannot query the filesystem of {}: {e}",
                    self.outbox.path().display()
                ));
                (None, None)
            }
        };
        let images_bytes = stats.as_ref().map_or(0, |s| s.blobs_bytes);
        let link = self.uplink.snapshot();
        StatusReport {
            post: self.post.clone(),
            at: now,
            uptime_secs: self.started.elapsed().as_secs(),
            versions: Versions {
                agent: env!("CARGO_PKG_VERSION").to_owned(),
                protocol: PROTOCOL_VERSION,
                outbox_schema: u32::try_from(bcp_sync::outbox::OUTBOX_SCHEMA_VERSION)
                    .unwrap_or(u32::MAX),
            },
            devices: self.devices(),
            lanes: self.lanes(),
            outbox,
            link: LinkReport {
                broker: self.broker.clone(),
                connected: link.connected,
                connections_total: link.connections_total,
                last_ack_at: link.last_ack_at,
                last_ack_age_secs: link.last_ack_at.map(age),
                records_sent_total: link.records_sent_total,
                record_bytes_sent_total: link.record_bytes_sent_total,
            },
            disk: DiskReport {
                outbox_path: self.outbox.path().to_path_buf(),
                outbox_bytes: outbox_bytes.saturating_add(images_bytes),
                images_bytes,
                budget_bytes: stats.as_ref().and_then(|s| s.budget_bytes),
                high_water: stats.as_ref().is_some_and(|s| s.high_water),
                fs_total_bytes,
                fs_available_bytes,
            },
            problems,
        }
    }
}

impl ViewFeed {
    /// The lane's correlator state after an input.
    pub fn occupancy(&self, vehicle_on_bridge: bool, open_crossings: usize) {
        self.lane.send_if_modified(|l| {
            let open = open_crossings as u64;
            let changed = l.vehicle_on_bridge != vehicle_on_bridge || l.open_crossings != open;
            l.vehicle_on_bridge = vehicle_on_bridge;
            l.open_crossings = open;
            changed
        });
    }

    /// The evidence images made and missed so far.
    pub fn images(&self, images: ImageCounts) {
        self.lane.send_if_modified(|l| {
            let changed = l.images != images;
            l.images = images;
            changed
        });
    }

    /// `crossing` was committed to the outbox under `seq`.
    pub fn recorded(&self, seq: u64, crossing: &Crossing, at: DateTime<Utc>) {
        self.lane.send_modify(|l| {
            l.crossings_recorded += 1;
            l.last_crossing = Some(LastCrossing {
                seq,
                recorded_at: at,
                plate: crossing.plate.as_ref().map(|p| p.text.clone()),
                flags: crossing.flags.iter().map(|f| f.code.clone()).collect(),
            });
        });
        // Nobody tailing is not an error.
        let _ = self.crossings.send(Recorded {
            seq,
            crossing: Arc::new(crossing.clone()),
        });
    }
}

/// Total and available bytes of the filesystem holding `path` (available: to unprivileged
/// users, which the agent is).
fn filesystem_of(path: &Path) -> std::io::Result<(u64, u64)> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let st = rustix::fs::statvfs(dir.unwrap_or(Path::new(".")))?;
    Ok((
        st.f_blocks.saturating_mul(st.f_frsize),
        st.f_bavail.saturating_mul(st.f_frsize),
    ))
}
