//! `[schedule]`: when `send --scheduled` (a cron line every few minutes) may start an
//! edition, when it may send at all, and how deferred recipients are retried across runs.

use std::path::Path;
use std::time::Duration;

use chrono::{NaiveTime, Weekday};
use serde::Deserialize;
use toml::Spanned;

use crate::problems::{Problem, Problems};

use super::checks::Numbers;

/// `[schedule]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedule {
    #[serde(default)]
    days: Vec<Spanned<String>>,
    at: Spanned<String>,
    timezone: Option<Spanned<String>>,
    window_end: Option<Spanned<String>>,
    stale_after_hours: Option<Spanned<f64>>,
    retry_first_minutes: Option<Spanned<f64>>,
    retry_max_hours: Option<Spanned<f64>>,
    give_up_after_days: Option<Spanned<f64>>,
}

/// When editions start and go out (see `schedule.rs` for the decisions).
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The days a new edition starts; empty: every day.
    pub days: Vec<Weekday>,
    /// The local time a new edition starts, and the sending window's start every day.
    pub at: NaiveTime,
    /// The sending window's end, local time.
    pub window_end: NaiveTime,
    pub timezone: Zone,
    /// A new edition more than this late is not started.
    pub stale_after: Duration,
    /// Backoff of a deferred recipient: the first wait, doubled after each deferral up to
    /// `retry_max`, until `give_up_after` since the edition started.
    pub retry_first: Duration,
    pub retry_max: Duration,
    pub give_up_after: Duration,
}

/// A time zone: a fixed offset, or the rules of an IANA zone read from the system's
/// zoneinfo (daylight saving included).
#[derive(Debug, Clone)]
pub enum Zone {
    Fixed(i32),
    Named(String, tz::TimeZone),
}

impl Zone {
    fn parse(name: &str) -> Result<Zone, String> {
        let name = name.trim();
        if name == "UTC" || name == "Z" {
            return Ok(Zone::Fixed(0));
        }
        if let Some(offset) = fixed_offset(name) {
            return Ok(Zone::Fixed(offset));
        }
        if name.contains("..") || name.starts_with('/') {
            return Err(format!("{name:?} is not a time zone name"));
        }
        let path = Path::new("/usr/share/zoneinfo").join(name);
        let data = std::fs::read(&path).map_err(|e| {
            format!(
                "time zone {name:?}: cannot read {} ({e}); install Debian's tzdata, or give a fixed offset such as \"+01:00\"",
                path.display()
            )
        })?;
        tz::TimeZone::from_tz_data(&data)
            .map(|tz| Zone::Named(name.to_string(), tz))
            .map_err(|e| {
                format!(
                    "time zone {name:?}: {} is not zoneinfo data ({e})",
                    path.display()
                )
            })
    }

    /// Seconds east of UTC at `unix` seconds.
    pub fn offset_at(&self, unix: i64) -> i32 {
        match self {
            Zone::Fixed(s) => *s,
            Zone::Named(_, tz) => tz
                .find_local_time_type(unix)
                .map_or(0, tz::LocalTimeType::ut_offset),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Zone::Fixed(0) => "UTC".into(),
            Zone::Fixed(s) => format!(
                "UTC{}{:02}:{:02}",
                if *s < 0 { '-' } else { '+' },
                s.abs() / 3600,
                s.abs() % 3600 / 60
            ),
            Zone::Named(n, _) => n.clone(),
        }
    }
}

/// `+01:00`, `-05:30`: seconds east of UTC.
fn fixed_offset(text: &str) -> Option<i32> {
    let sign = match text.chars().next()? {
        '+' => 1,
        '-' => -1,
        _ => return None,
    };
    let (h, m) = text[1..].split_once(':')?;
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    ((0..=14).contains(&h) && (0..60).contains(&m)).then_some(sign * (h * 3600 + m * 60))
}

fn weekday(text: &str) -> Option<Weekday> {
    let t = text.trim().to_ascii_lowercase();
    let short = t.get(..3)?;
    let day = match short {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return None,
    };
    let full = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    (t.len() == 3 || full.contains(&t.as_str())).then_some(day)
}

pub(super) fn resolve_schedule(
    raw: Option<RawSchedule>,
    path: &Path,
    source: &str,
    problems: &mut Problems,
) -> Option<Schedule> {
    let raw = raw?;
    let at = |field: &str, span: std::ops::Range<usize>, message: String| {
        Problem::new(path, message)
            .at_offset(source, span.start)
            .field(format!("schedule.{field}"))
    };
    let mut days = Vec::new();
    for d in &raw.days {
        match weekday(d.get_ref()) {
            Some(day) => days.push(day),
            None => problems.push(at(
                "days",
                d.span(),
                format!("{:?} is not a day: use mon, tue, … sun", d.get_ref()),
            )),
        }
    }
    let time = |field: &str, value: &Spanned<String>, problems: &mut Problems| {
        NaiveTime::parse_from_str(value.get_ref().trim(), "%H:%M")
            .map_err(|_| {
                problems.push(at(
                    field,
                    value.span(),
                    format!("{:?} is not a time such as \"07:00\"", value.get_ref()),
                ));
            })
            .ok()
    };
    let start = time("at", &raw.at, problems);
    let end = raw
        .window_end
        .as_ref()
        .and_then(|w| time("window_end", w, problems));
    let timezone = match &raw.timezone {
        None => Some(Zone::Fixed(0)),
        Some(z) => Zone::parse(z.get_ref())
            .map_err(|e| problems.push(at("timezone", z.span(), e)))
            .ok(),
    };
    let start = start?;
    let window_end = end.unwrap_or_else(|| NaiveTime::from_hms_opt(23, 59, 59).unwrap_or(start));
    if window_end <= start
        && let Some(w) = &raw.window_end
    {
        problems.push(at(
            "window_end",
            w.span(),
            "must be later in the day than `at`".into(),
        ));
    }
    let mut n = Numbers::new(path, source, "schedule");
    let hours = |h: f64| Duration::from_secs_f64(h * 3600.0);
    let schedule = Schedule {
        days,
        at: start,
        window_end,
        timezone: timezone?,
        stale_after: hours(n.get(
            "stale_after_hours",
            raw.stale_after_hours.as_ref(),
            12.0,
            0.1..=168.0,
        )),
        retry_first: Duration::from_secs_f64(
            60.0 * n.get(
                "retry_first_minutes",
                raw.retry_first_minutes.as_ref(),
                5.0,
                1.0..=1440.0,
            ),
        ),
        retry_max: hours(n.get(
            "retry_max_hours",
            raw.retry_max_hours.as_ref(),
            4.0,
            0.1..=72.0,
        )),
        give_up_after: hours(
            24.0 * n.get(
                "give_up_after_days",
                raw.give_up_after_days.as_ref(),
                5.0,
                0.1..=30.0,
            ),
        ),
    };
    n.finish(problems);
    Some(schedule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_are_fixed_offsets_or_system_zoneinfo() {
        assert_eq!(fixed_offset("+01:00"), Some(3600));
        assert_eq!(fixed_offset("-05:30"), Some(-19800));
        assert_eq!(fixed_offset("+25:00"), None);
        assert!(Zone::parse("../etc/passwd").is_err());
        assert!(Zone::parse("Mars/Olympus").is_err());
        // London: GMT in January, BST in July.
        let london = Zone::parse("Europe/London").unwrap();
        assert_eq!(london.offset_at(1_767_225_600), 0); // 2026-01-01
        assert_eq!(london.offset_at(1_782_864_000), 3600); // 2026-07-01
    }

    #[test]
    fn days_are_named_short_or_long() {
        assert_eq!(weekday("Fri"), Some(Weekday::Fri));
        assert_eq!(weekday("thursday"), Some(Weekday::Thu));
        assert_eq!(weekday("thurs"), None);
        assert_eq!(weekday("x"), None);
    }
}
