//! The one place that reads the time. Everything downstream takes a `Clock`, so output is
//! reproducible: `SOURCE_DATE_EPOCH` pins it, as in reproducible builds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    now: SystemTime,
}

impl Clock {
    pub fn at(now: SystemTime) -> Self {
        Clock { now }
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
            Err(_) => Ok(Clock::at(SystemTime::now())),
        }
    }

    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// Today's date in UTC.
    pub fn today(&self) -> NaiveDate {
        DateTime::<Utc>::from(self.now).date_naive()
    }
}
