//! systemd integration: READY, STOPPING and watchdog pings (no-ops when not under systemd).

use std::time::Duration;

pub fn ready() {
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "cannot notify systemd of readiness");
    }
}

pub fn stopping() {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
}

pub fn watchdog() {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
}

/// Half the unit's `WatchdogSec`, when systemd asked for pings.
///
/// As libsystemd's `sd_watchdog_enabled`: `WATCHDOG_USEC` enables it, and `WATCHDOG_PID`, when
/// set, must name this process (the `sd-notify` crate also requires it to be set, which
/// `systemd-run` and test harnesses do not always do).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
