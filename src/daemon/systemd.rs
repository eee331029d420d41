//! The daemon under systemd's notify protocol (`Type=notify`, `manifests/systemd/`): `READY=1`
//! when the ready line is printed, `STOPPING=1` when shutdown begins, and `WATCHDOG=1` at half
//! the `WATCHDOG_USEC` interval. Everything is a no-op when `NOTIFY_SOCKET` is unset (the
//! daemon is not run by systemd, or by a unit of another type). A notification that cannot be
//! sent is a warning, never a reason to stop: the service manager decides what a missing
//! `READY=1` or watchdog ping means.
//!
//! Agents never see these variables: every child starts from a cleared environment
//! (`process::base_env`).

use std::time::Duration;

use sd_notify::NotifyState;

/// The service manager the daemon reports to, read once from the environment.
#[derive(Debug, Clone, Copy)]
pub struct Systemd {
    /// `NOTIFY_SOCKET` is set.
    enabled: bool,
    /// `WATCHDOG_USEC` (for this process, when `WATCHDOG_PID` is set), if any.
    watchdog: Option<Duration>,
}

impl Systemd {
    pub fn from_env() -> Systemd {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty());
        Systemd {
            enabled,
            watchdog: sd_notify::watchdog_enabled().filter(|d| enabled && !d.is_zero()),
        }
    }

    /// `READY=1`, with the ready line as the unit's status (`systemctl status`).
    pub fn ready(&self, status: &str) {
        self.send(
            &[NotifyState::Ready, NotifyState::Status(status)],
            "READY=1",
        );
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) {
        self.send(
            &[NotifyState::Stopping, NotifyState::Status("shutting down")],
            "STOPPING=1",
        );
    }

    /// Starts the watchdog pings when systemd asked for them (`WatchdogSec=`): `WATCHDOG=1` at
    /// half the interval, from a task on the daemon's runtime, so that a ping proves the runtime
    /// still schedules its tasks and its timers still fire. The pings stop when the returned
    /// guard is dropped.
    pub fn start_watchdog(&self) -> Option<Watchdog> {
        let interval = self.watchdog? / 2;
        tracing::debug!(?interval, "systemd watchdog: pinging");
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval.max(Duration::from_millis(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                match sd_notify::notify(&[NotifyState::Watchdog]) {
                    Ok(()) => failing = false,
                    // Once per run of failures, not at every ping.
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "cannot send systemd WATCHDOG=1 (NOTIFY_SOCKET)");
                    }
                    Err(_) => {}
                }
            }
        });
        Some(Watchdog(task))
    }

    fn send(&self, states: &[NotifyState], what: &str) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!(error = %e, "cannot tell systemd {what} (NOTIFY_SOCKET)");
        }
    }
}

/// Stops the watchdog pings when dropped.
pub struct Watchdog(tokio::task::JoinHandle<()>);

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.abort();
    }
}
