//! What `send --scheduled` does at this moment: nothing outside the sending window; inside
//! it, resume the unfinished edition, or start a new one on a scheduled day once its time
//! has come, unless one already started for that slot or it is too late (stale).

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};

use crate::config::Schedule;
use crate::state::{from_unix, unix};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Outside the sending window: nothing is sent.
    Outside,
    /// An edition is unfinished: go on with it.
    Resume,
    /// A new edition is due now.
    Start,
    /// Inside the window, with nothing due (not a scheduled day, not yet its time, or this
    /// slot's edition already started).
    NotYet,
    /// The edition of this slot was not started in time: it is skipped. `slot` names it.
    Stale { slot: String, late: Duration },
}

/// The local date and time at `now` in the schedule's zone.
fn local(schedule: &Schedule, now: SystemTime) -> NaiveDateTime {
    let t = unix(now);

    let offset = i64::from(schedule.timezone.offset_at(t));
    DateTime::<Utc>::from_timestamp(t + offset, 0)
        .unwrap_or_default()
        .naive_utc()
}

/// The moment a local date and time happens (the offset taken at that moment).
fn instant(schedule: &Schedule, local: NaiveDateTime) -> SystemTime {
    let naive = local.and_utc().timestamp();
    let guess = naive - i64::from(schedule.timezone.offset_at(naive));
    from_unix(naive - i64::from(schedule.timezone.offset_at(guess)))
}

/// The day's slot: when its edition is due.
fn due(schedule: &Schedule, day: NaiveDate) -> SystemTime {
    instant(schedule, day.and_time(schedule.at))
}

/// True outside the daily sending window: nothing is sent then.
pub(crate) fn outside_window(schedule: &Schedule, now: SystemTime) -> bool {
    let time = local(schedule, now).time();
    time < schedule.at || time >= schedule.window_end
}

/// Decides for `now`, given whether an edition is unfinished and when the latest one
/// started.
pub(crate) fn decide(
    schedule: &Schedule,
    now: SystemTime,
    unfinished: bool,
    latest_started: Option<SystemTime>,
) -> Decision {
    if outside_window(schedule, now) {
        return Decision::Outside;
    }
    let here = local(schedule, now);
    if unfinished {
        return Decision::Resume;
    }
    let day = here.date();
    if !schedule.days.is_empty() && !schedule.days.contains(&day.weekday()) {
        return Decision::NotYet;
    }
    let due = due(schedule, day);
    if latest_started.is_some_and(|s| s >= due) {
        return Decision::NotYet;
    }
    let late = now.duration_since(due).unwrap_or_default();
    if late > schedule.stale_after {
        return Decision::Stale {
            slot: format!(
                "{} {} {}",
                day.format("%a %Y-%m-%d"),
                schedule.at.format("%H:%M"),
                schedule.timezone.name()
            ),
            late,
        };
    }
    Decision::Start
}

/// The window, as people read it: "07:00-20:00 Europe/London".
pub(crate) fn window(schedule: &Schedule) -> String {
    format!(
        "{}-{} {}",
        schedule.at.format("%H:%M"),
        schedule.window_end.format("%H:%M"),
        schedule.timezone.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Zone;
    use chrono::{NaiveTime, Weekday};
    use std::time::UNIX_EPOCH;

    fn schedule() -> Schedule {
        Schedule {
            days: vec![Weekday::Mon, Weekday::Thu],
            at: NaiveTime::from_hms_opt(7, 0, 0).unwrap(),
            window_end: NaiveTime::from_hms_opt(20, 0, 0).unwrap(),
            timezone: Zone::Fixed(3600),
            stale_after: Duration::from_hours(12),
            retry_first: Duration::from_mins(10),
            retry_max: Duration::from_hours(2),
            give_up_after: Duration::from_hours(120),
        }
    }

    /// 2026-11-30 (a Monday) at `h:m` UTC.
    fn monday(h: u32, m: u32) -> SystemTime {
        let t = NaiveDate::from_ymd_opt(2026, 11, 30)
            .unwrap()
            .and_hms_opt(h, m, 0)
            .unwrap()
            .and_utc()
            .timestamp();
        UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap())
    }

    #[test]
    fn an_edition_starts_on_its_day_at_its_local_time_once() {
        let s = schedule();
        // 05:50 UTC is 06:50 at +01:00: before the window.
        assert_eq!(decide(&s, monday(5, 50), false, None), Decision::Outside);
        assert_eq!(decide(&s, monday(6, 0), false, None), Decision::Start);
        assert_eq!(decide(&s, monday(6, 0), true, None), Decision::Resume);
        // Started at 06:00 UTC: the slot is taken.
        assert_eq!(
            decide(&s, monday(8, 0), false, Some(monday(6, 0))),
            Decision::NotYet
        );
        // 19:00 UTC is 20:00 local: the window has closed, even for a resume.
        assert_eq!(decide(&s, monday(19, 0), true, None), Decision::Outside);
        // Tuesday is not a scheduled day.
        let tuesday = monday(9, 0) + Duration::from_hours(24);
        assert_eq!(decide(&s, tuesday, false, None), Decision::NotYet);
        assert_eq!(decide(&s, tuesday, true, None), Decision::Resume);
    }

    #[test]
    fn an_edition_too_late_is_stale() {
        let mut s = schedule();
        s.stale_after = Duration::from_hours(2);
        assert_eq!(decide(&s, monday(8, 0), false, None), Decision::Start);
        let Decision::Stale { slot, late } = decide(&s, monday(8, 10), false, None) else {
            panic!("not stale")
        };
        assert_eq!(slot, "Mon 2026-11-30 07:00 UTC+01:00");
        assert_eq!(late, Duration::from_mins(130));
    }
}
