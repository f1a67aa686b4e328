//! Bounce and complaint rates of an edition beside the thresholds where mailbox providers
//! start to distrust a sender (Amazon SES reviews an account at 5% bounces; Gmail wants
//! complaints under 0.1% and never 0.3%).

use serde::Serialize;

use crate::config::Thresholds;
use crate::state::inbound::Returns;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Level {
    Ok,
    Warn,
    Stop,
}

/// An edition's rates, in percent of the messages it sent, and how they stand.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Rates {
    #[serde(flatten)]
    pub returns: Returns,
    pub hard_percent: f64,
    pub soft_percent: f64,
    pub complaint_percent: f64,
    pub bounce_level: Level,
    pub complaint_level: Level,
}

impl Rates {
    pub(crate) fn of(returns: Returns, t: &Thresholds) -> Rates {
        let percent = |n: usize| {
            if returns.sent == 0 {
                0.0
            } else {
                #[allow(clippy::cast_precision_loss)] // counts far below 2^52
                let p = 100.0 * n as f64 / returns.sent as f64;
                p
            }
        };
        let enough = returns.sent >= t.min_sent_for_stop;
        let level = |p: f64, warn: f64, stop: f64| {
            if p >= stop && p > 0.0 && enough {
                Level::Stop
            } else if p >= warn && p > 0.0 {
                Level::Warn
            } else {
                Level::Ok
            }
        };
        let hard_percent = percent(returns.hard);
        let complaint_percent = percent(returns.complaints);
        Rates {
            soft_percent: percent(returns.soft),
            bounce_level: level(hard_percent, t.bounce_warn, t.bounce_stop),
            complaint_level: level(complaint_percent, t.complaint_warn, t.complaint_stop),
            hard_percent,
            complaint_percent,
            returns,
        }
    }

    pub(crate) fn worst(&self) -> Level {
        self.bounce_level.max(self.complaint_level)
    }

    /// The lines `status` prints.
    pub(crate) fn lines(&self, t: &Thresholds) -> Vec<String> {
        let mark = |l: Level| match l {
            Level::Ok => "",
            Level::Warn => "  WARNING",
            Level::Stop => "  STOP: no new edition until the list is cleaned",
        };
        let r = &self.returns;
        let mut out = vec![
            format!(
                "  hard bounces  {:>6} {:>7.2}%   (warn {}%, stop {}%){}",
                r.hard,
                self.hard_percent,
                t.bounce_warn,
                t.bounce_stop,
                mark(self.bounce_level)
            ),
            format!("  soft bounces  {:>6} {:>7.2}%", r.soft, self.soft_percent),
            format!(
                "  complaints    {:>6} {:>7.2}%   (warn {}%, stop {}%){}",
                r.complaints,
                self.complaint_percent,
                t.complaint_warn,
                t.complaint_stop,
                mark(self.complaint_level)
            ),
        ];
        if r.sender_side > 0 {
            out.push(format!(
                "  sender-side   {:>6}            refusals of the sender (authentication, reputation, policy): fix the setup",
                r.sender_side
            ));
        }
        if r.sent < t.min_sent_for_stop && self.worst() == Level::Warn {
            out.push(format!(
                "  (sent to {} recipients: the stop thresholds apply from {})",
                r.sent, t.min_sent_for_stop
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thresholds() -> Thresholds {
        crate::config::Bounces::default().thresholds
    }

    #[test]
    fn rates_stand_against_the_thresholds() {
        let t = thresholds();
        let r = |sent, hard, complaints| {
            Rates::of(
                Returns {
                    sent,
                    hard,
                    soft: 0,
                    complaints,
                    sender_side: 0,
                },
                &t,
            )
        };
        assert_eq!(r(1000, 10, 0).worst(), Level::Ok);
        assert_eq!(r(1000, 50, 0).bounce_level, Level::Warn);
        assert_eq!(r(1000, 100, 0).bounce_level, Level::Stop);
        assert_eq!(r(1000, 0, 1).complaint_level, Level::Warn);
        assert_eq!(r(1000, 0, 3).complaint_level, Level::Stop);
        // Too few messages for a stop: a warning only.
        assert_eq!(r(10, 5, 0).bounce_level, Level::Warn);
        assert_eq!(r(0, 0, 0).worst(), Level::Ok);
    }
}
