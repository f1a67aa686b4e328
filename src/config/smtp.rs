//! `[smtp]` and `[transport]`: the relay, its security and credentials, and the pacing of
//! a send, every number range-checked; defaults beside the types they fill.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::problems::{Problem, Problems};

use super::checks::{Numbers, check_host};
use super::secret::SecretSource;

#[derive(Debug, Clone)]
pub enum Transport {
    /// Write each message as an `.eml` file into this folder: no server needed.
    Outbox(PathBuf),
    Smtp(Box<Smtp>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// TLS from the first byte (port 465).
    Tls,
    /// Plain connection upgraded with STARTTLS (port 587); refused if the server does not offer it.
    Starttls,
    /// No encryption: loopback hosts only.
    None,
}

#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: Option<String>,
    pub password: Option<SecretSource>,
    /// An OAuth 2.0 access token for AUTH XOAUTH2, read afresh for each connection.
    pub oauth_token: Option<SecretSource>,
    pub ca_file: Option<PathBuf>,
    pub hello_name: Option<String>,
    /// Send MAIL, RCPT and DATA in one write when the server offers PIPELINING (RFC 2920).
    pub pipelining: bool,
    pub connections: usize,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub pacing: Pacing,
}

/// How fast, how often and how persistently to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct Pacing {
    /// Messages on one connection before it is closed and a new one opened.
    pub max_per_connection: usize,
    /// Messages per second over all connections; `None` for no limit.
    pub rate_per_second: Option<f64>,
    /// Messages per UTC day over all runs; `None` for no limit.
    pub daily_quota: Option<u64>,
    /// Extra passes over deferred recipients within one run.
    pub retries_per_run: u32,
    /// The wait before the first in-run retry; doubled for each further one.
    pub retry_delay: Duration,
    /// Attempts after which a transient failure counts as permanent.
    pub max_attempts: u32,
    /// Failures in a row (no success between) that stop the run.
    pub max_consecutive_failures: usize,
    /// Under a schedule: deferred recipients wait across runs, and give up by the edition's
    /// age instead of `max_attempts`.
    pub backoff: Option<Backoff>,
}

/// Postfix's shape of retrying: a first wait doubled after each deferral up to a ceiling,
/// until the edition is `give_up_after` old.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub give_up_after: Duration,
    /// When the edition started.
    pub started: std::time::SystemTime,
}

impl Backoff {
    /// The wait after a recipient's `attempts`-th deferral.
    pub fn wait(&self, attempts: u32) -> Duration {
        self.first
            .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).min(20)))
            .min(self.max)
    }
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            max_per_connection: 100,
            rate_per_second: None,
            daily_quota: None,
            retries_per_run: 2,
            retry_delay: Duration::from_secs(30),
            max_attempts: 10,
            max_consecutive_failures: 20,
            backoff: None,
        }
    }
}

#[derive(Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum TransportKind {
    #[default]
    Smtp,
    Outbox,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTransport {
    #[serde(default)]
    pub(super) kind: TransportKind,
    pub(super) outbox: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSmtp {
    host: Spanned<String>,
    port: Option<Spanned<u16>>,
    #[serde(default = "default_security")]
    security: Spanned<Security>,
    username: Option<Spanned<String>>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    oauth_token_command: Option<Spanned<String>>,
    oauth_token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    hello_name: Option<Spanned<String>>,
    pipelining: Option<bool>,
    connections: Option<Spanned<usize>>,
    connect_timeout_seconds: Option<Spanned<f64>>,
    command_timeout_seconds: Option<Spanned<f64>>,
    max_per_connection: Option<Spanned<usize>>,
    rate_per_second: Option<Spanned<f64>>,
    daily_quota: Option<Spanned<u64>>,
    retries_per_run: Option<Spanned<u32>>,
    retry_delay_seconds: Option<Spanned<f64>>,
    max_attempts: Option<Spanned<u32>>,
    max_consecutive_failures: Option<Spanned<usize>>,
}

pub(super) fn default_security() -> Spanned<Security> {
    Spanned::new(0..0, Security::Starttls)
}
pub(super) const MAX_CONNECTIONS: usize = 64;
/// Defaults of `[smtp]` that `Pacing` does not hold.
pub(super) const DEFAULT_CONNECTIONS: usize = 4;
pub(super) const DEFAULT_CONNECT_TIMEOUT: f64 = 10.0;
pub(super) const DEFAULT_COMMAND_TIMEOUT: f64 = 60.0;
pub(super) fn resolve_smtp(
    s: RawSmtp,
    dir: &Path,
    path: &Path,
    source: &str,
    problems: &mut Problems,
) -> Option<Transport> {
    let at = |field: &str, span: std::ops::Range<usize>, message: String| {
        Problem::new(path, message)
            .at_offset(source, span.start)
            .field(field)
    };
    let before = problems.0.len();
    let host = match check_host(s.host.get_ref().trim(), true) {
        Ok(h) => h,
        Err(e) => {
            problems.push(at("smtp.host", s.host.span(), e));
            String::new()
        }
    };
    if let Some(hello) = &s.hello_name
        && let Err(e) = check_host(hello.get_ref(), true)
    {
        problems.push(at("smtp.hello_name", hello.span(), e));
    }
    if let Some(user) = &s.username
        && (user.get_ref().is_empty() || user.get_ref().chars().any(char::is_control))
    {
        problems.push(at(
            "smtp.username",
            user.span(),
            "must be a non-empty single line".into(),
        ));
    }
    let security = *s.security.get_ref();
    if security == Security::None && !is_loopback(&host) {
        problems.push(at(
            "smtp.security",
            s.security.span(),
            format!("\"none\" sends mail unencrypted and is allowed only for a loopback host, not {host:?}; use \"starttls\" or \"tls\""),
        ));
    }
    let password = match (&s.password_env, &s.password_file) {
        (Some(name), None) => Some(SecretSource::Env(name.clone())),
        (None, Some(file)) => Some(SecretSource::File(dir.join(file))),
        (None, None) => None,
        (Some(_), Some(_)) => {
            problems.push(
                Problem::new(path, "set `password_env` or `password_file`, not both").field("smtp"),
            );
            None
        }
    };
    let oauth_token = match (&s.oauth_token_command, &s.oauth_token_file) {
        (Some(command), None) if command.get_ref().trim().is_empty() => {
            problems.push(at(
                "smtp.oauth_token_command",
                command.span(),
                "must be a command that prints the access token".into(),
            ));
            None
        }
        (Some(command), None) => Some(SecretSource::Command(command.get_ref().clone())),
        (None, Some(file)) => Some(SecretSource::File(dir.join(file))),
        (None, None) => None,
        (Some(_), Some(_)) => {
            problems.push(
                Problem::new(
                    path,
                    "set `oauth_token_command` or `oauth_token_file`, not both",
                )
                .field("smtp"),
            );
            None
        }
    };
    if oauth_token.is_some() && password.is_some() {
        problems.push(
            Problem::new(
                path,
                "an OAuth token and a password are both set: XOAUTH2 uses the token alone, so remove the password",
            )
            .field("smtp"),
        );
    }
    let password = password.or_else(|| oauth_token.clone());
    match (&s.username, &password) {
        (Some(user), _) if security == Security::None => problems.push(at(
            "smtp.username",
            user.span(),
            "credentials are never sent over an unencrypted connection: set security to \"starttls\" or \"tls\"".into(),
        )),
        (Some(user), None) => problems.push(at(
            "smtp.username",
            user.span(),
            "a username needs `password_env` or `password_file` (the password never goes in this file), or an `oauth_token_command` or `oauth_token_file`".into(),
        )),
        (None, Some(_)) => problems.push(Problem::new(path, "a password or token is set but no `username`").field("smtp")),
        _ => {}
    }
    let mut n = Numbers::new(path, source, "smtp");
    let d = Pacing::default();
    let connections = n.get(
        "connections",
        s.connections.as_ref(),
        DEFAULT_CONNECTIONS,
        1..=MAX_CONNECTIONS,
    );
    // 0 means no limit; a tiny rate would wait for centuries between messages.
    let rate = n.get(
        "rate_per_second",
        s.rate_per_second.as_ref(),
        0.0,
        0.0..=100_000.0,
    );
    if rate > 0.0 && rate < 0.001 {
        let rule = "must be 0 (no limit) or at least 0.001";
        n.report("rate_per_second", s.rate_per_second.as_ref(), rule);
    }
    let pacing = Pacing {
        max_per_connection: n.get(
            "max_per_connection",
            s.max_per_connection.as_ref(),
            d.max_per_connection,
            1..=1_000_000,
        ),
        rate_per_second: Some(rate.max(0.001)).filter(|_| rate > 0.0),
        daily_quota: Some(n.get(
            "daily_quota",
            s.daily_quota.as_ref(),
            0,
            0..=1_000_000_000_000,
        ))
        .filter(|q| *q > 0),
        retries_per_run: n.get(
            "retries_per_run",
            s.retries_per_run.as_ref(),
            d.retries_per_run,
            0..=100,
        ),
        retry_delay: n.secs(
            "retry_delay_seconds",
            s.retry_delay_seconds.as_ref(),
            d.retry_delay.as_secs_f64(),
            0.0..=86_400.0,
        ),
        max_attempts: n.get(
            "max_attempts",
            s.max_attempts.as_ref(),
            d.max_attempts,
            1..=1000,
        ),
        max_consecutive_failures: n.get(
            "max_consecutive_failures",
            s.max_consecutive_failures.as_ref(),
            d.max_consecutive_failures,
            1..=100_000,
        ),
        backoff: None,
    };
    let port = n.get("port", s.port.as_ref(), 25, 1..=u16::MAX);
    let connect_timeout = n.secs(
        "connect_timeout_seconds",
        s.connect_timeout_seconds.as_ref(),
        DEFAULT_CONNECT_TIMEOUT,
        0.1..=3600.0,
    );
    let command_timeout = n.secs(
        "command_timeout_seconds",
        s.command_timeout_seconds.as_ref(),
        DEFAULT_COMMAND_TIMEOUT,
        0.1..=3600.0,
    );
    n.finish(problems);
    if problems.0.len() > before {
        return None;
    }
    Some(Transport::Smtp(Box::new(Smtp {
        port: if s.port.is_some() {
            port
        } else {
            match security {
                Security::Tls => 465,
                Security::Starttls => 587,
                Security::None => 25,
            }
        },
        host,
        security,
        username: s.username.map(Spanned::into_inner),
        password: if oauth_token.is_some() {
            None
        } else {
            password
        },
        oauth_token,
        ca_file: s.ca_file.map(|f| dir.join(f)),
        hello_name: s.hello_name.map(Spanned::into_inner),
        pipelining: s.pipelining.unwrap_or(true),
        connections,
        connect_timeout,
        command_timeout,
        pacing,
    })))
}

/// True for `localhost` and loopback IP addresses: the only hosts an unencrypted
/// connection may go to.
pub(crate) fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
