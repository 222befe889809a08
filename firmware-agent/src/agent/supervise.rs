//! Supervision of one device's driver: run it; when it fails (returns an error, ends by itself
//! while it should run, or panics), log at ERROR, count the restart, wait, run it again; until
//! the device is stopped. One failing device never stops the others, the lane or the daemon.
//!
//! The drivers retry I/O trouble themselves (an unplugged cable, a scanner feed that drops):
//! what reaches the supervisor is a driver giving up or a bug. The wait between restarts is
//! [`RestartBackoff`], pure and tested here.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bcp_sync::link::Backoff;
use tokio::sync::watch;
use tokio::time::Instant;

/// The wait before the next restart: the uplink's [`Backoff`], doubling from `first` up to
/// `max` (without jitter: one appliance's devices do not reconnect in a crowd); back to `first`
/// once a run has lasted `healthy_after` (a driver that ran for minutes and then failed is not
/// the one that fails at once on every start).
#[derive(Debug, Clone)]
pub struct RestartBackoff {
    backoff: Backoff,
    healthy_after: Duration,
}

impl Default for RestartBackoff {
    fn default() -> Self {
        Self::new(
            Duration::from_secs(1),
            Duration::from_secs(60),
            Duration::from_secs(60),
        )
    }
}

impl RestartBackoff {
    pub fn new(first: Duration, max: Duration, healthy_after: Duration) -> Self {
        Self {
            backoff: Backoff::new(first, max),
            healthy_after,
        }
    }

    /// The wait after a run that lasted `ran`.
    pub fn after_failure(&mut self, ran: Duration) -> Duration {
        if ran >= self.healthy_after {
            self.backoff.reset();
        }
        self.backoff.next_delay(0.0)
    }
}

/// How a run of the driver ended.
enum RunEnd {
    /// It ended because the device was stopped.
    Stopped,
    /// It failed; the reason, for the log.
    Failed(String),
}

/// Runs `driver` under supervision until `stop` turns true (or its sender is gone). Each run
/// gets its own `stop` receiver; `restarts` counts the restarts (the device board shows it).
pub async fn supervise<F, Fut>(
    device: String,
    mut stop: watch::Receiver<bool>,
    restarts: Arc<AtomicU64>,
    mut backoff: RestartBackoff,
    mut driver: F,
) where
    F: FnMut(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    loop {
        let started = Instant::now();
        // A task of its own, so that a panic in the driver ends this run, not the supervisor.
        let run = tokio::spawn(driver(stop.clone()));
        let end = match run.await {
            _ if stopped(&stop) => RunEnd::Stopped,
            Ok(Ok(())) => RunEnd::Failed("the driver ended by itself".to_owned()),
            Ok(Err(e)) => RunEnd::Failed(format!("{e:#}")),
            Err(e) if e.is_panic() => {
                RunEnd::Failed(format!("the driver panicked: {}", panic_text(e)))
            }
            Err(e) => RunEnd::Failed(format!("the driver task was cancelled: {e}")),
        };
        let RunEnd::Failed(reason) = end else { return };
        let wait = backoff.after_failure(started.elapsed());
        let n = restarts.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::error!(
            device = %device,
            error = %reason,
            restart_in_ms = wait.as_millis() as u64,
            restarts = n,
            "device driver failed; restarting it (the other devices run on)"
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if stopped(&stop) {
            return;
        }
    }
}

/// Whether the device has been told to stop (or nobody can tell it any more).
fn stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

fn panic_text(e: tokio::task::JoinError) -> String {
    panic_message(&*e.into_panic())
}

/// A panic's message (its payload as text), for the logs and the reason a frame is set aside.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is the failure report
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets_after_a_healthy_run() {
        let s = Duration::from_secs;
        let mut b = RestartBackoff::new(s(1), s(8), s(60));
        let waits: Vec<u64> = (0..6).map(|_| b.after_failure(s(0)).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 8, 8]);
        assert_eq!(b.after_failure(s(61)), s(1), "a long healthy run resets it");
        assert_eq!(b.after_failure(s(1)), s(2));
    }

    /// A driver that fails twice (an error, then a panic) and then runs until stopped: the
    /// supervisor restarts it each time, counts two restarts, and returns once stopped.
    #[tokio::test(start_paused = true)]
    async fn a_failing_driver_is_restarted_until_it_runs_and_stops_when_told() {
        let runs = Arc::new(AtomicU32::new(0));
        let restarts = Arc::new(AtomicU64::new(0));
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(
            "wb1".to_owned(),
            stop_rx,
            restarts.clone(),
            RestartBackoff::default(),
            {
                let runs = runs.clone();
                move |mut stop: watch::Receiver<bool>| {
                    let n = runs.fetch_add(1, Ordering::SeqCst);
                    async move {
                        match n {
                            0 => anyhow::bail!("port settings refused"),
                            1 => panic!("a bug in the driver"),
                            _ => {
                                let _ = stop.wait_for(|s| *s).await;
                                Ok(())
                            }
                        }
                    }
                }
            },
        ));
        // 1 s, then 2 s of backoff (virtual time).
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "started three times");
        assert_eq!(restarts.load(Ordering::SeqCst), 2);
        assert!(!task.is_finished(), "the third run is still running");
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the supervisor returns once the device is stopped")
            .unwrap();
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "not restarted after the stop"
        );
        assert_eq!(restarts.load(Ordering::SeqCst), 2);
    }

    /// A stop during the wait between two restarts ends the supervisor without another run.
    #[tokio::test(start_paused = true)]
    async fn a_stop_during_the_backoff_ends_it_without_another_run() {
        let runs = Arc::new(AtomicU32::new(0));
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(
            "scanner".to_owned(),
            stop_rx,
            Arc::new(AtomicU64::new(0)),
            RestartBackoff::new(
                Duration::from_secs(30),
                Duration::from_secs(60),
                Duration::from_secs(60),
            ),
            {
                let runs = runs.clone();
                move |_stop| {
                    runs.fetch_add(1, Ordering::SeqCst);
                    async { Ok(()) }
                }
            },
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("ends during the backoff")
            .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
