//! The control API's messages: pure types, encoded as one JSON object per line.
//!
//! A request is `{"cmd": "..."}`; every response carries `"type"`. Clients ignore fields they do
//! not know, so a newer agent may add fields without breaking an older `bcpctl`.

use bcp_record::{Crossing, DeviceStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Requests longer than this are refused before they are buffered whole.
pub const MAX_REQUEST_BYTES: usize = 4096;

/// Version of this protocol; `status` reports it.
pub const PROTOCOL_VERSION: u32 = 1;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Everything at once: devices, lanes, outbox, link, disk, versions.
    Status,
    /// Every device with its health.
    Devices,
    /// Every lane: vehicle on the bridge, open crossings, the last crossing recorded.
    Lanes,
    /// Crossings as they are committed to the outbox, until the client hangs up:
    /// `subscribed`, then one `crossing` per record (`lagged` if the client fell behind).
    EventsTail,
    /// Wakes the uplink now (it sends what is pending, if the link is up).
    SyncNow,
    /// Re-reads the config file, as SIGHUP does: a valid one is applied (`reloaded`), an
    /// invalid one refused (`error`) while the running config stays.
    Reload,
}

impl Request {
    /// The request's name as a client types it.
    pub const NAMES: [&'static str; 6] = [
        "status",
        "devices",
        "lanes",
        "events_tail",
        "sync_now",
        "reload",
    ];
}

/// Why a request line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("request longer than {MAX_REQUEST_BYTES} bytes")]
    TooLong,
    #[error("not a request: {0}; send one JSON object per line, e.g. {{\"cmd\":\"status\"}} (commands: status, devices, lanes, events_tail, sync_now, reload)")]
    Malformed(String),
}

/// Parses one request line (without or with its newline).
pub fn decode_request(line: &[u8]) -> Result<Request, ProtocolError> {
    if line.len() > MAX_REQUEST_BYTES {
        return Err(ProtocolError::TooLong);
    }
    serde_json::from_slice(line.trim_ascii()).map_err(|e| ProtocolError::Malformed(e.to_string()))
}

/// One response line, newline included.
pub fn encode_line<T: Serialize>(message: &T) -> Vec<u8> {
    match serde_json::to_vec(message) {
        Ok(mut v) => {
            v.push(b'\n');
            v
        }
        // Our own types always serialise; should one not, the client still gets a line.
        Err(e) => format!(
            "{{\"type\":\"error\",\"message\":{:?}}}\n",
            format!("cannot encode the response: {e}")
        )
        .into_bytes(),
    }
}

/// What the agent answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Status(Box<StatusReport>),
    Devices {
        devices: Vec<DeviceStatus>,
    },
    Lanes {
        lanes: Vec<LaneReport>,
    },
    /// `events_tail` is live: crossings follow.
    Subscribed,
    /// A crossing just committed to the outbox under `seq`.
    Crossing {
        seq: u64,
        crossing: Box<Crossing>,
    },
    /// The client read too slowly and `missed` crossings were skipped (they are in the outbox).
    Lagged {
        missed: u64,
    },
    /// The uplink was woken; what it has to send and whether it can.
    SyncRequested {
        depth: Option<u64>,
        connected: bool,
    },
    /// The config file was re-read and applied; what that took.
    Reloaded(ReloadReport),
    Error {
        message: String,
    },
}

/// What a reload applied, and what waits for a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// The file read.
    pub config: PathBuf,
    /// Changed keys now in effect without restarting anything (lane windows, limits and the
    /// hotlist, the log filter).
    #[serde(default)]
    pub applied: Vec<String>,
    /// Devices restarted with their new settings.
    #[serde(default)]
    pub restarted: Vec<String>,
    /// Changed keys that take effect only when the agent restarts
    /// (`systemctl restart bcp-agent`).
    #[serde(default)]
    pub needs_restart: Vec<String>,
    /// Entries of the config audit log newly queued for central.
    #[serde(default)]
    pub audit_records: u64,
}

/// The answer to `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub post: String,
    pub at: DateTime<Utc>,
    pub uptime_secs: u64,
    pub versions: Versions,
    pub devices: Vec<DeviceStatus>,
    pub lanes: Vec<LaneReport>,
    /// `None` when the outbox could not be read (see `problems`).
    pub outbox: Option<OutboxReport>,
    pub link: LinkReport,
    pub disk: DiskReport,
    /// What could not be found out, in words (an unreadable outbox, a failed disk query).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    pub agent: String,
    pub protocol: u32,
    pub outbox_schema: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneReport {
    pub lane: String,
    /// A vehicle is on the weighbridge now.
    pub vehicle_on_bridge: bool,
    /// Crossings on the bridge or waiting for late evidence.
    pub open_crossings: u64,
    /// Crossings this lane committed to the outbox since the agent started.
    pub crossings_recorded: u64,
    pub last_crossing: Option<LastCrossing>,
    /// The devices that feed this lane.
    pub devices: Vec<String>,
    /// The evidence images made for this lane's records, and those that could not be made,
    /// since the agent started (absent from an older agent's report: zeros).
    #[serde(default)]
    pub images: ImageCounts,
}

/// How often a record's evidence images were made, or missing (the record then carries the
/// flag `plate_images_missing` or `scan_thumbnail_missing` with the reason).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageCounts {
    /// Records given a plate crop and an overview.
    pub plate_images: u64,
    /// Records whose plate crop and overview could not be made.
    pub plate_images_missing: u64,
    pub scan_thumbnails: u64,
    pub scan_thumbnails_missing: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastCrossing {
    pub seq: u64,
    pub recorded_at: DateTime<Utc>,
    pub plate: Option<String>,
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxReport {
    /// Records central has not confirmed.
    pub depth: u64,
    pub oldest_unsynced_age_secs: Option<u64>,
    pub last_seq: u64,
    pub last_acked_seq: u64,
    /// The file with its WAL.
    pub bytes: u64,
    pub images_pending: u64,
    pub full_rejections_total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkReport {
    /// `host:port` of the central broker.
    pub broker: String,
    pub connected: bool,
    pub connections_total: u64,
    pub last_ack_at: Option<DateTime<Utc>>,
    pub last_ack_age_secs: Option<u64>,
    pub records_sent_total: u64,
    pub record_bytes_sent_total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskReport {
    /// The outbox file; the filesystem figures are those of the filesystem holding it.
    pub outbox_path: PathBuf,
    /// What the outbox holds, records and images (what its budget caps).
    pub outbox_bytes: u64,
    pub images_bytes: u64,
    /// `outbox.budget_bytes`, if set.
    pub budget_bytes: Option<u64>,
    /// Above 90 % of the budget: delivered records are pruned, images evicted.
    pub high_water: bool,
    pub fs_total_bytes: Option<u64>,
    pub fs_available_bytes: Option<u64>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report
mod tests {
    use super::*;

    #[test]
    fn every_command_decodes_from_its_documented_line() {
        let cases = [
            (r#"{"cmd":"status"}"#, Request::Status),
            (r#"{"cmd":"devices"}"#, Request::Devices),
            (r#"{"cmd":"lanes"}"#, Request::Lanes),
            (r#"{"cmd":"events_tail"}"#, Request::EventsTail),
            (" {\"cmd\": \"sync_now\"}\r\n", Request::SyncNow),
            (r#"{"cmd":"reload"}"#, Request::Reload),
        ];
        for (line, want) in cases.clone() {
            assert_eq!(decode_request(line.as_bytes()), Ok(want.clone()), "{line}");
            let again = encode_line(&want);
            assert_eq!(again.last(), Some(&b'\n'));
            assert_eq!(decode_request(&again), Ok(want));
        }
        assert_eq!(Request::NAMES.len(), cases.len());
    }

    #[test]
    fn bad_requests_are_errors_that_say_what_to_send() {
        for line in ["", "status", r#"{"cmd":"reboot"}"#, "{\"cmd\":", "[1,2]"] {
            let e = decode_request(line.as_bytes()).unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains(r#"{"cmd":"status"}"#) && text.contains("events_tail"),
                "{line:?}: {text}"
            );
        }
        let long = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert_eq!(decode_request(&long), Err(ProtocolError::TooLong));
    }

    #[test]
    fn responses_are_tagged_one_line_each_and_round_trip() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let status = Response::Status(Box::new(StatusReport {
            post: "TJ-1".into(),
            at,
            uptime_secs: 12,
            versions: Versions {
                agent: "0.1.0".into(),
                protocol: PROTOCOL_VERSION,
                outbox_schema: 3,
            },
            devices: vec![DeviceStatus {
                name: "wb1".into(),
                kind: "weighbridge".into(),
                connected: Some(true),
                frames_ok: 10,
                frames_bad: 1,
                last_seen_secs: Some(0),
                alarms: vec!["overload".into()],
                restarts: 0,
            }],
            lanes: vec![LaneReport {
                lane: "L1".into(),
                vehicle_on_bridge: true,
                open_crossings: 1,
                crossings_recorded: 4,
                last_crossing: Some(LastCrossing {
                    seq: 4,
                    recorded_at: at,
                    plate: Some("1234AB01".into()),
                    flags: vec![],
                }),
                devices: vec!["wb1".into()],
                images: ImageCounts {
                    plate_images: 3,
                    plate_images_missing: 1,
                    ..ImageCounts::default()
                },
            }],
            outbox: None,
            link: LinkReport {
                broker: "central:8883".into(),
                connected: false,
                connections_total: 0,
                last_ack_at: None,
                last_ack_age_secs: None,
                records_sent_total: 0,
                record_bytes_sent_total: 0,
            },
            disk: DiskReport {
                outbox_path: "/var/lib/bcp/outbox.db".into(),
                outbox_bytes: 4096,
                images_bytes: 0,
                budget_bytes: None,
                high_water: false,
                fs_total_bytes: Some(1 << 30),
                fs_available_bytes: Some(1 << 29),
            },
            problems: vec!["outbox: locked".into()],
        }));
        let responses = [
            status,
            Response::Devices { devices: vec![] },
            Response::Subscribed,
            Response::Lagged { missed: 3 },
            Response::SyncRequested {
                depth: Some(2),
                connected: true,
            },
            Response::Reloaded(ReloadReport {
                config: "/etc/bcp/agent.toml".into(),
                applied: vec!["lane.close_after_ms".into()],
                restarted: vec!["wb1".into()],
                needs_restart: vec!["sync.broker_host".into()],
                audit_records: 1,
            }),
            Response::Error {
                message: "a\nb".into(),
            },
        ];
        for r in responses {
            let line = encode_line(&r);
            assert_eq!(
                line.iter().filter(|&&b| b == b'\n').count(),
                1,
                "one line: {}",
                String::from_utf8_lossy(&line)
            );
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            assert!(v["type"].is_string(), "{v}");
            let back: Response = serde_json::from_slice(&line).unwrap();
            assert_eq!(back, r);
        }
        let v: serde_json::Value =
            serde_json::from_slice(&encode_line(&Response::Subscribed)).unwrap();
        assert_eq!(v, serde_json::json!({"type": "subscribed"}));
    }

    #[test]
    fn a_client_ignores_fields_it_does_not_know() {
        let line = r#"{"type":"sync_requested","depth":0,"connected":true,"queued_images":5}"#;
        let r: Response = serde_json::from_str(line).unwrap();
        assert_eq!(
            r,
            Response::SyncRequested {
                depth: Some(0),
                connected: true
            }
        );
    }
}
