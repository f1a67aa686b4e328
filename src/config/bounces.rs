//! `[bounces]`: the return path that names each message, where mail that comes back is
//! read from, how soft bounces add up, and the rates at which sending stops.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::input::address::EmailAddress;
use crate::problems::{Problem, Problems};

use super::checks::Numbers;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBounces {
    address: Option<Spanned<String>>,
    maildir: Option<PathBuf>,
    soft_limit: Option<Spanned<i64>>,
    bounce_warn_percent: Option<Spanned<f64>>,
    bounce_stop_percent: Option<Spanned<f64>>,
    complaint_warn_percent: Option<Spanned<f64>>,
    complaint_stop_percent: Option<Spanned<f64>>,
    min_sent_for_stop: Option<Spanned<i64>>,
}

/// What `[bounces]` resolves to; every field has a default.
#[derive(Debug, Clone)]
pub struct Bounces {
    /// The envelope sender's base: each message's return path is `LOCAL+TOKEN@DOMAIN`,
    /// the token naming its edition and recipient (VERP). `None`: the From address.
    pub address: Option<EmailAddress>,
    /// The Maildir that `newsletter bounces` reads when given no other input.
    pub maildir: Option<PathBuf>,
    /// Soft bounces in this many editions in a row suppress an address.
    pub soft_limit: usize,
    pub thresholds: Thresholds,
}

/// Rates, in percent of the messages an edition sent, where `status` warns and `send`
/// stops. Bounce rates count hard bounces, as the providers' reviews do.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub bounce_warn: f64,
    pub bounce_stop: f64,
    pub complaint_warn: f64,
    pub complaint_stop: f64,
    /// An edition sent to fewer recipients only warns: on a handful of messages one
    /// bounce is a large percentage and says little.
    pub min_sent_for_stop: usize,
}

impl Default for Bounces {
    fn default() -> Self {
        Bounces {
            address: None,
            maildir: None,
            soft_limit: 3,
            thresholds: Thresholds {
                bounce_warn: 5.0,
                bounce_stop: 10.0,
                complaint_warn: 0.1,
                complaint_stop: 0.3,
                min_sent_for_stop: 100,
            },
        }
    }
}

pub(super) fn resolve_bounces(
    raw: Option<RawBounces>,
    dir: &Path,
    path: &Path,
    source: &str,
    problems: &mut Problems,
) -> Bounces {
    let raw = raw.unwrap_or_default();
    let defaults = Bounces::default();
    let address = raw.address.as_ref().and_then(|a| {
        let at = |why: String| {
            Problem::new(path, why)
                .at_offset(source, a.span().start)
                .field("bounces.address")
        };
        let address = EmailAddress::parse(a.get_ref())
            .map_err(|e| problems.push(at(format!("the address {e}"))))
            .ok()?;
        // `+` and a 16-character token must fit the 64 octets of a local part.
        let local = address.as_str().rsplit_once('@').map_or("", |(l, _)| l);
        if local.len() > 64 - 17 || local.contains('+') || !local.is_ascii() {
            problems.push(at(
                "must have an ASCII local part of at most 47 characters without `+` (each message adds +TOKEN)".into(),
            ));
            return None;
        }
        Some(address)
    });
    let mut n = Numbers::new(path, source, "bounces");
    let d = defaults.thresholds;
    let soft_limit = n.get("soft_limit", raw.soft_limit.as_ref(), 3, 1..=100);
    let bounce_warn = n.get(
        "bounce_warn_percent",
        raw.bounce_warn_percent.as_ref(),
        d.bounce_warn,
        0.0..=100.0,
    );
    let bounce_stop = n.get(
        "bounce_stop_percent",
        raw.bounce_stop_percent.as_ref(),
        d.bounce_stop,
        0.0..=100.0,
    );
    let complaint_warn = n.get(
        "complaint_warn_percent",
        raw.complaint_warn_percent.as_ref(),
        d.complaint_warn,
        0.0..=100.0,
    );
    let complaint_stop = n.get(
        "complaint_stop_percent",
        raw.complaint_stop_percent.as_ref(),
        d.complaint_stop,
        0.0..=100.0,
    );
    let min_sent = n.get(
        "min_sent_for_stop",
        raw.min_sent_for_stop.as_ref(),
        100,
        1..=100_000_000,
    );
    n.finish(problems);
    Bounces {
        address,
        maildir: raw.maildir.map(|m| dir.join(m)),
        soft_limit: usize::try_from(soft_limit).unwrap_or(3),
        thresholds: Thresholds {
            bounce_warn,
            bounce_stop,
            complaint_warn,
            complaint_stop,
            min_sent_for_stop: usize::try_from(min_sent).unwrap_or(100),
        },
    }
}
