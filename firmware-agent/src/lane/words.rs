//! How the correlator writes times, durations and scan decisions into its reasons.

use bcp_record::ScanEvent;
use chrono::{DateTime, TimeDelta, Utc};

/// A typed plate or conveyance id as plates are stored: letters and digits, uppercase.
pub(super) fn normalise_id(id: &str) -> String {
    id.chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_uppercase()
}

/// `10:00:03.120 UTC`: a time in a reason.
pub(crate) fn clock(t: DateTime<Utc>) -> String {
    t.format("%H:%M:%S%.3f UTC").to_string()
}

/// `2.5 s`, `3 min 12 s`: a duration in a reason.
pub(crate) fn duration(d: TimeDelta) -> String {
    let ms = d.num_milliseconds();
    if ms.abs() < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// `ALARM by OPERATOR`: a scan's decision in a reason.
pub(crate) fn decision(s: &ScanEvent) -> String {
    let d = match s.decision {
        bcp_record::ScanDecision::Alarm => "ALARM",
        bcp_record::ScanDecision::NoAlarm => "NO_ALARM",
        bcp_record::ScanDecision::Unknown => "UNKNOWN",
    };
    match &s.decision_by {
        Some(by) => format!("{d} by {by}"),
        None => d.to_owned(),
    }
}
