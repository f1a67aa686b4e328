//! `[bounces]`: the return path that names each message, where mail that comes back is
//! read from, how soft bounces add up, and the rates at which sending stops.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::input::address::EmailAddress;

use super::secret::SecretSource;
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
    imap: Option<RawImap>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImap {
    host: String,
    port: Option<Spanned<i64>>,
    security: Option<String>,
    username: String,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    folder: Option<String>,
    processed_folder: Option<String>,
    ca_file: Option<PathBuf>,
    timeout_seconds: Option<Spanned<f64>>,
    max_messages: Option<Spanned<i64>>,
}

/// `[bounces.imap]`: a mailbox where mail that comes back lands, read over TLS.
#[derive(Debug, Clone)]
pub struct Imap {
    pub host: String,
    pub port: u16,
    /// true: TLS from the first byte (port 993); false: STARTTLS (port 143).
    pub implicit_tls: bool,
    pub username: String,
    pub password: SecretSource,
    pub folder: String,
    /// Where a message goes once acted on.
    pub processed_folder: String,
    /// A private CA to trust besides the public ones.
    pub ca_file: Option<PathBuf>,
    pub timeout: std::time::Duration,
    /// Messages read per run at most (the rest wait for the next run).
    pub max_messages: usize,
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
    /// The IMAP mailbox `newsletter bounces --imap` reads.
    pub imap: Option<Imap>,
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
            imap: None,
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
    let imap = raw
        .imap
        .and_then(|i| resolve_imap(i, dir, path, &mut n, problems));
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
        imap,
    }
}

fn resolve_imap(
    i: RawImap,
    dir: &Path,
    path: &Path,
    n: &mut Numbers<'_>,
    problems: &mut Problems,
) -> Option<Imap> {
    let implicit_tls = match i.security.as_deref() {
        None | Some("tls") => true,
        Some("starttls") => false,
        Some(other) => {
            problems.push(
                Problem::new(
                    path,
                    format!(
                        "{other:?} is not a security mode: \"tls\" (port 993) or \"starttls\" (port 143); IMAP is never read in the clear"
                    ),
                )
                .field("bounces.imap.security"),
            );
            true
        }
    };
    let default_port = if implicit_tls { 993 } else { 143 };
    let port = n.get("imap.port", i.port.as_ref(), default_port, 1..=65535);
    let timeout = n.secs(
        "imap.timeout_seconds",
        i.timeout_seconds.as_ref(),
        30.0,
        0.1..=3600.0,
    );
    let max_messages = n.get(
        "imap.max_messages",
        i.max_messages.as_ref(),
        1000,
        1..=1_000_000,
    );
    if i.host.is_empty() || i.host.contains(char::is_whitespace) {
        problems.push(
            Problem::new(path, "the host must be a host name or address")
                .field("bounces.imap.host"),
        );
    }
    let password = SecretSource::from_pair(
        i.password_env.as_ref(),
        i.password_file.as_ref(),
        dir,
        "password",
    )
    .map_err(|why| {
        problems.push(
            Problem::new(
                path,
                format!("{why} (the password never goes in this file)"),
            )
            .field("bounces.imap"),
        );
    })
    .ok()?;
    Some(Imap {
        host: i.host,
        port: u16::try_from(port).unwrap_or(993),
        implicit_tls,
        username: i.username,
        password,
        folder: i.folder.unwrap_or_else(|| "INBOX".into()),
        processed_folder: i.processed_folder.unwrap_or_else(|| "Processed".into()),
        ca_file: i.ca_file.map(|f| dir.join(f)),
        timeout,
        max_messages: usize::try_from(max_messages).unwrap_or(1000),
    })
}
