use super::*;
use crate::control::protocol::{
    DiskReport, ImageCounts, LaneReport, LinkReport, OutboxReport, StatusReport, Versions,
};
use bcp_record::DeviceStatus;
use chrono::DateTime;
use std::collections::HashMap;

fn status() -> StatusReport {
    let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let device = |name: &str, kind: &str, serial: bool| DeviceStatus {
        name: name.into(),
        kind: kind.into(),
        connected: serial.then_some(true),
        frames_ok: if serial { 1200 } else { 0 },
        frames_bad: if serial { 3 } else { 0 },
        last_seen_secs: Some(1),
        alarms: vec![],
        restarts: 0,
    };
    StatusReport {
        post: "TJ-1".into(),
        at,
        uptime_secs: 42,
        versions: Versions {
            agent: "0.1.0".into(),
            protocol: 1,
            outbox_schema: 4,
        },
        devices: vec![
            device("wb1", "weighbridge", true),
            DeviceStatus {
                alarms: vec!["overload".into()],
                restarts: 2,
                ..device("dims \"1\"", "dimensions", true)
            },
            device("cam1", "camera", false),
        ],
        lanes: vec![LaneReport {
            lane: "L1".into(),
            vehicle_on_bridge: true,
            open_crossings: 2,
            crossings_recorded: 7,
            last_crossing: None,
            devices: vec![],
            images: ImageCounts {
                plate_images: 5,
                plate_images_missing: 1,
                scan_thumbnails: 3,
                scan_thumbnails_missing: 2,
            },
        }],
        outbox: Some(OutboxReport {
            depth: 2,
            oldest_unsynced_age_secs: Some(5),
            last_seq: 107,
            last_acked_seq: 105,
            bytes: 65536,
            images_pending: 0,
            full_rejections_total: 0,
        }),
        link: LinkReport {
            broker: "central:8883".into(),
            connected: true,
            connections_total: 1,
            last_ack_at: Some(at),
            last_ack_age_secs: Some(0),
            records_sent_total: 9,
            record_bytes_sent_total: 4321,
        },
        disk: DiskReport {
            outbox_path: "/var/lib/bcp/outbox.db".into(),
            outbox_bytes: 70000,
            images_bytes: 4464,
            budget_bytes: Some(1 << 30),
            high_water: false,
            fs_total_bytes: Some(10 << 30),
            fs_available_bytes: Some(5 << 30),
        },
        problems: vec![],
    }
}

/// Parses the exposition text strictly enough to catch format slips: every sample belongs to
/// a family declared once with HELP then TYPE, every value is a number.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helped = std::collections::HashSet::new();
    let mut samples = HashMap::new();
    assert!(text.ends_with('\n'));
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(helped.insert(name.to_owned()), "HELP twice for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(helped.contains(name), "TYPE before HELP for {name}");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(types.insert(name.to_owned(), kind.to_owned()).is_none());
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| types.get(*f).is_some_and(|k| k == "histogram"))
                })
                .unwrap_or(name);
            assert!(types.contains_key(family), "no TYPE for {line}");
            if types[family] == "counter" {
                assert!(family.ends_with("_total"), "{family}");
            }
            let v: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
            };
            assert!(
                samples.insert(series.to_owned(), v).is_none(),
                "twice: {line}"
            );
        }
    }
    samples
}

#[test]
fn renders_every_family_in_the_text_format() {
    let h = Histogram::new(&ANPR_BUCKETS_SECS);
    h.observe(Duration::from_millis(30));
    h.observe(Duration::from_millis(90));
    h.observe(Duration::from_millis(95));
    h.observe(Duration::from_secs(20));
    let text = render(&status(), "cam1", &h.snapshot());
    let m = parse(&text);
    let get = |s: &str| *m.get(s).unwrap_or_else(|| panic!("no {s} in\n{text}"));

    assert_eq!(get(r#"bcp_agent_info{version="0.1.0",post="TJ-1"}"#), 1.0);
    assert_eq!(
        get(r#"bcp_device_frames_ok_total{device="wb1",kind="weighbridge"}"#),
        1200.0
    );
    assert_eq!(
        get(r#"bcp_device_frames_bad_total{device="wb1",kind="weighbridge"}"#),
        3.0
    );
    assert_eq!(
        get(r#"bcp_device_alarms{device="dims \"1\"",kind="dimensions"}"#),
        1.0
    );
    assert_eq!(
        get(r#"bcp_device_restarts_total{device="dims \"1\"",kind="dimensions"}"#),
        2.0
    );
    assert_eq!(
        get(r#"bcp_device_restarts_total{device="cam1",kind="camera"}"#),
        0.0
    );
    assert!(
        !m.contains_key(r#"bcp_device_frames_ok_total{device="cam1",kind="camera"}"#),
        "a camera has no frame counters of its own"
    );
    assert_eq!(
        get(r#"bcp_device_last_seen_seconds{device="cam1",kind="camera"}"#),
        1.0
    );
    assert_eq!(get(r#"bcp_crossings_recorded_total{lane="L1"}"#), 7.0);
    assert_eq!(get(r#"bcp_lane_open_crossings{lane="L1"}"#), 2.0);
    for (image, outcome, n) in [
        ("plate", "made", 5.0),
        ("plate", "missing", 1.0),
        ("scan_thumbnail", "made", 3.0),
        ("scan_thumbnail", "missing", 2.0),
    ] {
        let key = format!(
            r#"bcp_evidence_images_total{{lane="L1",image="{image}",outcome="{outcome}"}}"#
        );
        assert_eq!(get(&key), n, "{key}");
    }
    assert_eq!(get("bcp_outbox_enqueued_total"), 107.0);
    assert_eq!(get("bcp_outbox_acknowledged_total"), 105.0);
    assert_eq!(get("bcp_outbox_depth"), 2.0);
    assert_eq!(get("bcp_uplink_connected"), 1.0);
    assert_eq!(get("bcp_uplink_record_bytes_sent_total"), 4321.0);
    assert_eq!(
        get("bcp_uplink_last_ack_timestamp_seconds"),
        1_800_000_000.0
    );
    assert_eq!(get("bcp_disk_budget_bytes"), (1u64 << 30) as f64);
    assert_eq!(
        get("bcp_disk_filesystem_available_bytes"),
        (5u64 << 30) as f64
    );

    // Cumulative buckets, +Inf equal to the count, the sum in seconds.
    assert_eq!(
        get(r#"bcp_anpr_frame_seconds_bucket{camera="cam1",le="0.025"}"#),
        0.0
    );
    assert_eq!(
        get(r#"bcp_anpr_frame_seconds_bucket{camera="cam1",le="0.05"}"#),
        1.0
    );
    assert_eq!(
        get(r#"bcp_anpr_frame_seconds_bucket{camera="cam1",le="0.1"}"#),
        3.0
    );
    assert_eq!(
        get(r#"bcp_anpr_frame_seconds_bucket{camera="cam1",le="12.8"}"#),
        3.0
    );
    assert_eq!(
        get(r#"bcp_anpr_frame_seconds_bucket{camera="cam1",le="+Inf"}"#),
        4.0
    );
    assert_eq!(get(r#"bcp_anpr_frame_seconds_count{camera="cam1"}"#), 4.0);
    assert!((get(r#"bcp_anpr_frame_seconds_sum{camera="cam1"}"#) - 20.215).abs() < 1e-9);
}

#[test]
fn what_is_unknown_is_left_out_not_reported_as_zero() {
    let mut s = status();
    s.outbox = None;
    s.link.last_ack_at = None;
    s.disk.budget_bytes = None;
    s.disk.fs_total_bytes = None;
    let text = render(&s, "cam1", &Histogram::new(&ANPR_BUCKETS_SECS).snapshot());
    let m = parse(&text);
    for absent in [
        "bcp_outbox_depth",
        "bcp_outbox_enqueued_total",
        "bcp_uplink_last_ack_timestamp_seconds",
        "bcp_disk_budget_bytes",
        "bcp_disk_filesystem_size_bytes",
    ] {
        assert!(!m.contains_key(absent), "{absent}\n{text}");
    }
    assert_eq!(m[r#"bcp_anpr_frame_seconds_count{camera="cam1"}"#], 0.0);
}

#[test]
fn label_values_and_numbers_are_escaped_and_spelled_as_the_format_wants() {
    assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    assert_eq!(format_value(3.0), "3");
    assert_eq!(format_value(0.25), "0.25");
    assert_eq!(format_value(f64::INFINITY), "+Inf");
    assert_eq!(format_value(f64::NAN), "NaN");
    assert_eq!(format_value(1e300).parse::<f64>().unwrap(), 1e300);
}
