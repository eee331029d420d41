//! The wall clock the trigger actors read, passed to them in their context: the system clock in
//! the daemon, or a clock that follows tokio's (pausable) time from a fixed UTC instant, so that
//! tests run cron schedules on paused time without waiting for the wall clock.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// Where "now" comes from.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system's wall clock.
    System,
    /// `start` at the tokio instant `origin`, advancing with tokio's clock (paused in tests).
    Tokio {
        start: DateTime<Utc>,
        origin: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock that reads `start` now and then follows tokio's clock.
    pub fn following_tokio(start: DateTime<Utc>) -> Clock {
        Clock::Tokio {
            start,
            origin: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Tokio { start, origin } => {
                *start
                    + chrono::Duration::from_std(origin.elapsed()).unwrap_or(chrono::Duration::MAX)
            }
        }
    }

    /// Waits until the clock reads `at` or later and returns the reading: the last moments before
    /// a timer's instant (tokio's timer has millisecond ticks). The system clock is polled while
    /// yielding to other work; the tokio clock sleeps, which paused time skips.
    pub async fn wait_until(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let mut now = self.now();
        while now < at {
            match self {
                Clock::System => tokio::task::yield_now().await,
                Clock::Tokio { .. } => {
                    let left = (at - now).to_std().unwrap_or(Duration::ZERO);
                    tokio::time::sleep(left.max(Duration::from_micros(1))).await;
                }
            }
            now = self.now();
        }
        now
    }
}
