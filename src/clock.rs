//! The one place that reads the wall clock (`clippy.toml` forbids it anywhere else).
//! Everything downstream takes a `Clock`, so output is reproducible: `SOURCE_DATE_EPOCH`
//! pins it, as in reproducible builds. Deadlines and timeouts use the monotonic
//! `Instant` through `deadline_clock`, which no setting pins.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// `None`: the system clock, read at each `now()`.
    pinned: Option<SystemTime>,
}

impl Clock {
    /// A clock stopped at `now`.
    pub fn at(now: SystemTime) -> Self {
        Clock { pinned: Some(now) }
    }

    /// The system clock, unless `SOURCE_DATE_EPOCH` (seconds since 1970) is set.
    pub fn from_env() -> Result<Self> {
        match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) => {
                let secs: u64 = v.trim().parse().with_context(|| {
                    format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")
                })?;
                Ok(Clock::at(UNIX_EPOCH + Duration::from_secs(secs)))
            }
            Err(_) => Ok(Clock { pinned: None }),
        }
    }

    /// When `SOURCE_DATE_EPOCH` pins the clock, the moment it is pinned at.
    pub fn pinned(&self) -> Option<String> {
        self.pinned.map(|_| self.stamp())
    }

    #[allow(clippy::disallowed_methods)] // the one read of the wall clock
    pub fn now(&self) -> SystemTime {
        self.pinned.unwrap_or_else(SystemTime::now)
    }

    /// Seconds since 1970 (0 for a clock set before it).
    pub fn epoch_seconds(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// This clock stopped at this moment: one time for everything a run stamps once
    /// (every message's Date header).
    #[must_use]
    pub fn frozen(&self) -> Clock {
        Clock::at(self.now())
    }

    /// Today's date in UTC.
    pub fn today(&self) -> NaiveDate {
        DateTime::<Utc>::from(self.now()).date_naive()
    }

    /// The time as people read it in a log line, e.g. 2026-11-27 09:00:00 UTC.
    pub fn stamp(&self) -> String {
        DateTime::<Utc>::from(self.now())
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string()
    }
}

/// The monotonic clock, for deadlines, timeouts and rates: never pinned, never jumps.
#[allow(clippy::disallowed_methods)] // the one read of the monotonic clock
pub fn instant() -> Instant {
    Instant::now()
}
