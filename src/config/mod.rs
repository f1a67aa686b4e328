//! `newsletter.toml`: parsed strictly (unknown keys are errors) by a pure function into one
//! resolved, typed value that every command receives.

pub(crate) mod secret;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::secret::SecretSource;
use crate::input::address::{EmailAddress, NamedAddress};
use crate::problems::{Problem, Problems, from_toml_error};

/// One `[[sources]]` entry, resolved: a feed to read articles from.
#[derive(Debug, Clone)]
pub struct Source {
    /// Short name: part of every article id from this source, and shown by `--explain`.
    pub name: String,
    pub location: Location,
    /// Tags given to every item of this source, besides the feed's own categories.
    pub tags: Vec<String>,
    /// For connecting, and for each read of the answer.
    pub timeout: Duration,
    pub max_bytes: u64,
    /// Put the item's sanitized HTML content into the digest, not only its summary.
    pub include_content: bool,
    /// Trust this CA (PEM) for the feed's HTTPS instead of the public roots.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    Url(String),
    Path(PathBuf),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Url(u) => f.write_str(u),
            Location::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The config file itself, for messages.
    pub path: PathBuf,
    pub newsletter: Newsletter,
    pub unsubscribe: Unsubscribe,
    pub paths: Paths,
    pub transport: Transport,
    pub dkim: Option<Dkim>,
    pub sources: Vec<Source>,
    pub selection: Selection,
}

/// DKIM signing (RFC 6376): the key signs From, To, Subject, Date, Message-ID, List-Id and
/// the List-Unsubscribe headers of every message.
#[derive(Debug, Clone)]
pub struct Dkim {
    /// The signing domain (`d=`), usually the From domain.
    pub domain: String,
    /// The selector (`s=`): the key is published at `SELECTOR._domainkey.DOMAIN`.
    pub selector: String,
    pub algorithm: DkimAlgorithm,
    /// RSA: a PKCS#1 PEM file (`openssl genrsa -traditional`); Ed25519: a PKCS#8 PEM file
    /// (`openssl genpkey -algorithm ed25519`).
    pub private_key_file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDkim {
    domain: Spanned<String>,
    selector: Spanned<String>,
    #[serde(default = "default_dkim_algorithm")]
    algorithm: DkimAlgorithm,
    private_key_file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DkimAlgorithm {
    Rsa,
    Ed25519,
}

fn default_dkim_algorithm() -> DkimAlgorithm {
    DkimAlgorithm::Rsa
}

#[derive(Debug, Clone)]
pub struct Newsletter {
    pub name: String,
    pub from: NamedAddress,
    pub reply_to: Option<NamedAddress>,
    pub contact: EmailAddress,
    pub website: Option<String>,
    pub list_id: String,
    pub greeting_fallback: String,
}

#[derive(Debug, Clone)]
pub struct Unsubscribe {
    /// An https URL containing `{token}`.
    pub url: String,
    pub mailto: Option<EmailAddress>,
    pub secret: SecretSource,
    /// Keys retired by a rotation, still accepted for links in mail already sent.
    pub previous: Vec<SecretSource>,
}

#[derive(Debug, Clone)]
pub struct Paths {
    pub articles: PathBuf,
    pub subscribers: PathBuf,
    /// `None` when no template folder exists: the embedded defaults are used alone.
    pub templates: Option<PathBuf>,
    pub state: PathBuf,
}

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
        }
    }
}

// ---- the file as written -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    newsletter: RawNewsletter,
    unsubscribe: RawUnsubscribe,
    #[serde(default)]
    paths: RawPaths,
    #[serde(default)]
    transport: RawTransport,
    smtp: Option<RawSmtp>,
    dkim: Option<RawDkim>,
    #[serde(default)]
    sources: Vec<Spanned<RawSource>>,
    #[serde(default)]
    selection: RawSelection,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: Spanned<String>,
    url: Option<Spanned<String>>,
    path: Option<PathBuf>,
    #[serde(default)]
    tags: Vec<String>,
    timeout_seconds: Option<Spanned<f64>>,
    max_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    include_content: bool,
    ca_file: Option<PathBuf>,
}

/// `[selection]` as written; its numbers are checked into `Selection`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSelection {
    first_days: Option<Spanned<u32>>,
    #[serde(default)]
    include_tags: Vec<String>,
    #[serde(default)]
    exclude_tags: Vec<String>,
    max_articles: Option<Spanned<usize>>,
    #[serde(default)]
    pinned: Vec<String>,
    #[serde(default)]
    audience: Vec<String>,
}

/// Which candidate articles make an edition (see `selection.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Feed items of the last this many days make the first edition (later ones take
    /// everything since the previous edition).
    pub first_days: u32,
    /// Only articles with at least one of these tags (pinned ones always).
    pub include_tags: Vec<String>,
    /// Never articles with any of these tags (pinned ones always).
    pub exclude_tags: Vec<String>,
    /// At most this many articles, pinned first, then the newest.
    pub max_articles: Option<usize>,
    /// Article ids or links always included, whatever their date.
    pub pinned: Vec<String>,
    /// Subscriber tags an edition goes to; empty: every subscriber.
    pub audience: Vec<String>,
}

/// The first edition's window when `first_days` is not set.
const DEFAULT_FIRST_DAYS: u32 = 7;

impl Default for Selection {
    fn default() -> Self {
        Selection {
            first_days: DEFAULT_FIRST_DAYS,
            include_tags: Vec::new(),
            exclude_tags: Vec::new(),
            max_articles: None,
            pinned: Vec::new(),
            audience: Vec::new(),
        }
    }
}

/// Feed sizes above this are refused unless a source sets its own `max_bytes`.
const DEFAULT_FEED_MAX_BYTES: u64 = 5_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNewsletter {
    name: Spanned<String>,
    from: Spanned<String>,
    reply_to: Option<Spanned<String>>,
    contact: Spanned<String>,
    website: Option<Spanned<String>>,
    list_id: Spanned<String>,
    greeting_fallback: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnsubscribe {
    url: Spanned<String>,
    mailto: Option<Spanned<String>>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    previous_secret_env: Option<String>,
    previous_secret_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPaths {
    #[serde(default = "default_articles")]
    articles: PathBuf,
    #[serde(default = "default_subscribers")]
    subscribers: PathBuf,
    templates: Option<Spanned<PathBuf>>,
    #[serde(default = "default_state")]
    state: PathBuf,
}

fn default_articles() -> PathBuf {
    PathBuf::from("articles")
}
fn default_subscribers() -> PathBuf {
    PathBuf::from("subscribers.toml")
}
fn default_state() -> PathBuf {
    PathBuf::from("newsletter.db")
}

impl Default for RawPaths {
    fn default() -> Self {
        RawPaths {
            articles: default_articles(),
            subscribers: default_subscribers(),
            templates: None,
            state: default_state(),
        }
    }
}

#[derive(Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum TransportKind {
    #[default]
    Smtp,
    Outbox,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTransport {
    #[serde(default)]
    kind: TransportKind,
    outbox: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: Spanned<String>,
    port: Option<Spanned<u16>>,
    #[serde(default = "default_security")]
    security: Spanned<Security>,
    username: Option<Spanned<String>>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
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

fn default_security() -> Spanned<Security> {
    Spanned::new(0..0, Security::Starttls)
}
const MAX_CONNECTIONS: usize = 64;
/// Defaults of `[smtp]` that `Pacing` does not hold.
const DEFAULT_CONNECTIONS: usize = 4;
const DEFAULT_CONNECT_TIMEOUT: f64 = 10.0;
const DEFAULT_COMMAND_TIMEOUT: f64 = 60.0;
/// Defaults of `[[sources]]`.
const DEFAULT_FEED_TIMEOUT: f64 = 10.0;

impl Config {
    /// Reads and resolves the config file; relative paths in it are relative to its folder.
    pub fn load(path: &Path) -> Result<Config, Problems> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| Problem::new(path, format!("cannot read the config file: {e}")))?;
        Config::from_str(&source, path)
    }

    /// Parses the text of a config file named `path`, checking every field; returns all
    /// problems found at once.
    pub fn from_str(source: &str, path: &Path) -> Result<Config, Problems> {
        let raw: RawConfig =
            toml::from_str(source).map_err(|e| from_toml_error(path, source, 0, &e))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut problems = Problems::default();
        let at = |field: &str, span: std::ops::Range<usize>, message: String| {
            Problem::new(path, message)
                .at_offset(source, span.start)
                .field(field)
        };

        let n = &raw.newsletter;
        let mut check_addr = |field: &str, value: &Spanned<String>| -> Option<NamedAddress> {
            NamedAddress::parse(value.get_ref())
                .map_err(|e| problems.push(at(field, value.span(), e)))
                .ok()
        };
        let from = check_addr("newsletter.from", &n.from);
        let reply_to = n
            .reply_to
            .as_ref()
            .map(|r| check_addr("newsletter.reply_to", r));
        let contact = EmailAddress::parse(n.contact.get_ref())
            .map_err(|e| problems.push(at("newsletter.contact", n.contact.span(), e)))
            .ok();
        for (field, value) in [
            ("newsletter.name", Some(&n.name)),
            ("newsletter.list_id", Some(&n.list_id)),
            ("newsletter.greeting_fallback", n.greeting_fallback.as_ref()),
        ] {
            let Some(value) = value else { continue };
            if value.get_ref().trim().is_empty() || value.get_ref().chars().any(char::is_control) {
                problems.push(at(
                    field,
                    value.span(),
                    "must be a non-empty single line".into(),
                ));
            } else if value.get_ref().chars().count() > MAX_LINE_CHARS {
                problems.push(at(
                    field,
                    value.span(),
                    format!("may have at most {MAX_LINE_CHARS} characters"),
                ));
            }
        }
        if !n
            .list_id
            .get_ref()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            problems.push(at(
                "newsletter.list_id",
                n.list_id.span(),
                "may hold only letters, digits, dots and hyphens (RFC 2919), e.g. \"weekly.example.org\"".into(),
            ));
        }
        let website = n.website.as_ref().and_then(|site| {
            check_web_url(site.get_ref(), false)
                .map_err(|e| problems.push(at("newsletter.website", site.span(), e)))
                .ok()
        });

        let u = &raw.unsubscribe;
        let unsubscribe_url = check_web_url(u.url.get_ref(), true)
            .map_err(|e| problems.push(at("unsubscribe.url", u.url.span(), e)))
            .unwrap_or_default();
        let mailto = u.mailto.as_ref().and_then(|m| {
            EmailAddress::parse(m.get_ref())
                .map_err(|e| problems.push(at("unsubscribe.mailto", m.span(), e)))
                .ok()
        });
        let secret = match (&u.secret_env, &u.secret_file) {
            (Some(name), None) => Some(SecretSource::Env(name.clone())),
            (None, Some(file)) => Some(SecretSource::File(dir.join(file))),
            _ => {
                problems.push(
                    Problem::new(path, "set exactly one of `secret_env` or `secret_file`: the key that signs unsubscribe links")
                        .field("unsubscribe"),
                );
                None
            }
        };

        let templates = match &raw.paths.templates {
            Some(t) => {
                let p = dir.join(t.get_ref());
                if !p.is_dir() {
                    problems.push(at(
                        "paths.templates",
                        t.span(),
                        format!("{} is not a folder", p.display()),
                    ));
                }
                Some(p)
            }
            None => Some(dir.join("templates")).filter(|p| p.is_dir()),
        };
        let paths = Paths {
            articles: dir.join(&raw.paths.articles),
            subscribers: dir.join(&raw.paths.subscribers),
            templates,
            state: dir.join(&raw.paths.state),
        };

        let transport = match (&raw.transport.kind, raw.smtp) {
            (TransportKind::Outbox, _) => Some(Transport::Outbox(
                dir.join(
                    raw.transport
                        .outbox
                        .as_deref()
                        .unwrap_or(Path::new("outbox")),
                ),
            )),
            (TransportKind::Smtp, None) => {
                problems.push(
                    Problem::new(path, "transport is \"smtp\" but there is no [smtp] section")
                        .field("smtp"),
                );
                None
            }
            (TransportKind::Smtp, Some(s)) => resolve_smtp(s, &dir, path, source, &mut problems),
        };

        let sources = resolve_sources(&raw.sources, &dir, path, source, &mut problems);
        let selection = resolve_selection(raw.selection, path, source, &mut problems);
        let dkim = raw.dkim.and_then(|d| {
            let domain = check_host(d.domain.get_ref(), false)
                .map_err(|e| problems.push(at("dkim.domain", d.domain.span(), e)))
                .ok();
            let selector = d.selector.get_ref();
            let selector_ok = !selector.is_empty()
                && selector.len() <= 63 * 3
                && selector.split('.').all(|l| {
                    !l.is_empty()
                        && l.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                });
            if !selector_ok {
                problems.push(at(
                    "dkim.selector",
                    d.selector.span(),
                    "must be DNS labels of letters, digits, '-' and '_', e.g. \"mail2026\"".into(),
                ));
            }
            Some(Dkim {
                domain: domain?,
                selector: selector_ok.then(|| selector.clone())?,
                algorithm: d.algorithm,
                private_key_file: dir.join(&d.private_key_file),
            })
        });

        match (from, reply_to.flatten(), contact, secret, transport) {
            (Some(from), reply_to, Some(contact), Some(secret), Some(transport))
                if problems.is_empty() =>
            {
                Ok(Config {
                    path: path.to_path_buf(),
                    newsletter: Newsletter {
                        name: n.name.get_ref().trim().to_string(),
                        from,
                        reply_to,
                        contact,
                        website,
                        list_id: n.list_id.get_ref().clone(),
                        greeting_fallback: n
                            .greeting_fallback
                            .as_ref()
                            .map_or_else(|| "reader".to_string(), |g| g.get_ref().clone()),
                    },
                    unsubscribe: Unsubscribe {
                        url: unsubscribe_url,
                        mailto,
                        secret,
                        previous: u
                            .previous_secret_env
                            .iter()
                            .map(|n| SecretSource::Env(n.clone()))
                            .chain(
                                u.previous_secret_file
                                    .iter()
                                    .map(|f| SecretSource::File(dir.join(f))),
                            )
                            .collect(),
                    },
                    paths,
                    transport,
                    dkim,
                    sources,
                    selection,
                })
            }
            _ => Err(problems),
        }
    }
}

fn resolve_sources(
    raw: &[Spanned<RawSource>],
    dir: &Path,
    path: &Path,
    source: &str,
    problems: &mut Problems,
) -> Vec<Source> {
    let at = |field: &str, span: std::ops::Range<usize>, message: String| {
        Problem::new(path, message)
            .at_offset(source, span.start)
            .field(field)
    };
    let mut names = std::collections::HashSet::new();
    let mut out = Vec::new();
    let numbers = Numbers { path, source };
    for entry in raw {
        let s = entry.get_ref();
        let name = s.name.get_ref().trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            problems.push(at(
                "sources.name",
                s.name.span(),
                "must be lower-case letters, digits and hyphens, e.g. \"harbour-news\" (it is part of every article id)".into(),
            ));
            continue;
        }
        if name == crate::input::articles::MARKDOWN_SOURCE || !names.insert(name.to_string()) {
            problems.push(at(
                "sources.name",
                s.name.span(),
                format!("{name:?} is already used; each source needs its own name"),
            ));
            continue;
        }
        let location = match (&s.url, &s.path) {
            (Some(url), None) => {
                let u = url.get_ref();
                if !(u.starts_with("https://") || u.starts_with("http://")) {
                    problems.push(at(
                        "sources.url",
                        url.span(),
                        format!("{u:?} is not an http or https URL"),
                    ));
                    continue;
                }
                Location::Url(u.clone())
            }
            (None, Some(p)) => Location::Path(dir.join(p)),
            _ => {
                problems.push(at(
                    "sources",
                    entry.span(),
                    format!("source {name:?} needs exactly one of `url` or `path`"),
                ));
                continue;
            }
        };
        out.push(Source {
            name: name.to_string(),
            location,
            tags: s.tags.clone(),
            timeout: numbers.seconds(
                problems,
                "sources.timeout_seconds",
                s.timeout_seconds.as_ref(),
                DEFAULT_FEED_TIMEOUT,
                0.1..=600.0,
            ),
            max_bytes: numbers.check(
                problems,
                "sources.max_bytes",
                s.max_bytes.as_ref(),
                DEFAULT_FEED_MAX_BYTES,
                1..=1_000_000_000,
            ),
            include_content: s.include_content,
            ca_file: s.ca_file.as_ref().map(|f| dir.join(f)),
        });
    }
    out
}

fn resolve_smtp(
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
    match (&s.username, &password) {
        (Some(user), _) if security == Security::None => problems.push(at(
            "smtp.username",
            user.span(),
            "credentials are never sent over an unencrypted connection: set security to \"starttls\" or \"tls\"".into(),
        )),
        (Some(user), None) => problems.push(at(
            "smtp.username",
            user.span(),
            "a username needs `password_env` or `password_file` (the password never goes in this file)".into(),
        )),
        (None, Some(_)) => problems.push(Problem::new(path, "a password is set but no `username`").field("smtp")),
        _ => {}
    }
    let n = Numbers { path, source };
    let connections = n.check(
        problems,
        "smtp.connections",
        s.connections.as_ref(),
        DEFAULT_CONNECTIONS,
        1..=MAX_CONNECTIONS,
    );
    let defaults = Pacing::default();
    // 0 means no limit; a tiny rate would wait for centuries between messages.
    let rate = n.check(
        problems,
        "smtp.rate_per_second",
        s.rate_per_second.as_ref(),
        0.0,
        0.0..=100_000.0,
    );
    if rate > 0.0 && rate < 0.001 {
        n.report(
            problems,
            "smtp.rate_per_second",
            s.rate_per_second.as_ref(),
            "must be 0 (no limit) or at least 0.001",
        );
    }
    let pacing = Pacing {
        max_per_connection: n.check(
            problems,
            "smtp.max_per_connection",
            s.max_per_connection.as_ref(),
            defaults.max_per_connection,
            1..=1_000_000,
        ),
        rate_per_second: Some(rate.max(0.001)).filter(|_| rate > 0.0),
        daily_quota: Some(n.check(
            problems,
            "smtp.daily_quota",
            s.daily_quota.as_ref(),
            0,
            0..=1_000_000_000_000,
        ))
        .filter(|q| *q > 0),
        retries_per_run: n.check(
            problems,
            "smtp.retries_per_run",
            s.retries_per_run.as_ref(),
            defaults.retries_per_run,
            0..=100,
        ),
        retry_delay: n.seconds(
            problems,
            "smtp.retry_delay_seconds",
            s.retry_delay_seconds.as_ref(),
            defaults.retry_delay.as_secs_f64(),
            0.0..=86_400.0,
        ),
        max_attempts: n.check(
            problems,
            "smtp.max_attempts",
            s.max_attempts.as_ref(),
            defaults.max_attempts,
            1..=1000,
        ),
        max_consecutive_failures: n.check(
            problems,
            "smtp.max_consecutive_failures",
            s.max_consecutive_failures.as_ref(),
            defaults.max_consecutive_failures,
            1..=100_000,
        ),
    };
    let port = n.check(problems, "smtp.port", s.port.as_ref(), 25, 1..=u16::MAX);
    let connect_timeout = n.seconds(
        problems,
        "smtp.connect_timeout_seconds",
        s.connect_timeout_seconds.as_ref(),
        DEFAULT_CONNECT_TIMEOUT,
        0.1..=3600.0,
    );
    let command_timeout = n.seconds(
        problems,
        "smtp.command_timeout_seconds",
        s.command_timeout_seconds.as_ref(),
        DEFAULT_COMMAND_TIMEOUT,
        0.1..=3600.0,
    );
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
        password,
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

/// Range checks for the numbers of a config file. Each value out of its range (zero where
/// a count must be positive, negative, NaN, infinite, absurdly large) is a problem naming
/// its field and line, and the default stands in, so no number can panic later (a
/// `Duration` of 1e300 seconds does; so does a date 4 billion days back).
struct Numbers<'a> {
    path: &'a Path,
    source: &'a str,
}

impl Numbers<'_> {
    /// The value, or `default` when it is absent or out of `range` (then a problem).
    fn check<T>(
        &self,
        problems: &mut Problems,
        field: &str,
        value: Option<&Spanned<T>>,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> T
    where
        T: PartialOrd + std::fmt::Display + Copy,
    {
        let Some(v) = value else { return default };
        // `contains` is false for NaN, which compares with nothing.
        if range.contains(v.get_ref()) {
            return *v.get_ref();
        }
        self.report(
            problems,
            field,
            Some(v),
            &format!("must be between {} and {}", range.start(), range.end()),
        );
        default
    }

    /// Seconds as a duration, checked like `check`.
    fn seconds(
        &self,
        problems: &mut Problems,
        field: &str,
        value: Option<&Spanned<f64>>,
        default: f64,
        range: std::ops::RangeInclusive<f64>,
    ) -> Duration {
        Duration::from_secs_f64(self.check(problems, field, value, default, range))
    }

    fn report<T: std::fmt::Display + Copy>(
        &self,
        problems: &mut Problems,
        field: &str,
        value: Option<&Spanned<T>>,
        rule: &str,
    ) {
        let Some(v) = value else { return };
        // The number as written: 1e300 rather than its 301 digits.
        let written = self
            .source
            .get(v.span())
            .map_or_else(|| v.get_ref().to_string(), str::to_string);
        problems.push(
            Problem::new(self.path, format!("{} {rule}", written.trim()))
                .at_offset(self.source, v.span().start)
                .field(field),
        );
    }
}

fn resolve_selection(
    raw: RawSelection,
    path: &Path,
    source: &str,
    problems: &mut Problems,
) -> Selection {
    let n = Numbers { path, source };
    Selection {
        first_days: n.check(
            problems,
            "selection.first_days",
            raw.first_days.as_ref(),
            DEFAULT_FIRST_DAYS,
            0..=3650,
        ),
        include_tags: raw.include_tags,
        exclude_tags: raw.exclude_tags,
        max_articles: raw
            .max_articles
            .as_ref()
            .map(|m| n.check(problems, "selection.max_articles", Some(m), 10, 1..=1000)),
        pinned: raw.pinned,
        audience: raw.audience,
    }
}

/// The longest single-line text field (a newsletter's name): its header lines stay short.
const MAX_LINE_CHARS: usize = 200;
/// The longest URL: one that cannot be folded must fit a header line (998 octets).
const MAX_URL_CHARS: usize = 500;

/// A host name (converted to A-labels: `bücher.example` is `xn--bcher-kva.example`), or,
/// when `ip_allowed`, an IP address (`[::1]` too). Anything else (spaces, CR/LF, a `:`)
/// could end up as a command on the SMTP connection or inside a header.
fn check_host(value: &str, ip_allowed: bool) -> Result<String, String> {
    let bare = value.trim_start_matches('[').trim_end_matches(']');
    if ip_allowed && bare.parse::<IpAddr>().is_ok() {
        return Ok(value.to_string());
    }
    match idna::domain_to_ascii_strict(value) {
        Ok(ascii) if !ascii.is_empty() && !ascii.starts_with('.') && !ascii.ends_with('.') => {
            Ok(ascii)
        }
        _ => Err(format!(
            "{value:?} is not a host name{}",
            if ip_allowed { " or an IP address" } else { "" }
        )),
    }
}

/// A web address that can go into a message: https, no spaces or control characters, at
/// most `MAX_URL_CHARS`; its host in A-labels. The unsubscribe URL must also carry the
/// `{token}` placeholder. Returns the URL as it goes into messages.
fn check_web_url(url: &str, needs_token: bool) -> Result<String, String> {
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == '"')
    {
        return Err("must not contain spaces, quotes, angle brackets or control characters".into());
    }
    if url.chars().count() > MAX_URL_CHARS {
        return Err(format!("may have at most {MAX_URL_CHARS} characters"));
    }
    if needs_token && !url.contains("{token}") {
        return Err(format!(
            "{url:?} must contain {{token}}, where each subscriber's own token goes"
        ));
    }
    // The WHATWG parser forgives what a mail client may not ("https:///x" has host "x"):
    // the text itself must start with the scheme and a host.
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(format!("{url:?} must be an https:// address"));
    };
    if rest.is_empty() || rest.starts_with(['/', '?', '#']) {
        return Err(format!("{url:?} has no host"));
    }
    let parsed = parse_web_url(url).map_err(|e| format!("{url:?} is not a web address ({e})"))?;
    let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else {
        return Err(format!("{url:?} has no host"));
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("{url:?} must not carry a user name or password"));
    }
    if !url.is_ascii() {
        // A non-ASCII host goes out in A-labels; a non-ASCII path would be guessed at.
        let path_start = url["https://".len()..].find(['/', '?', '#']);
        if path_start.is_some_and(|i| !url["https://".len() + i..].is_ascii()) {
            return Err(format!(
                "{url:?}: the path must be ASCII (percent-encode other characters)"
            ));
        }
        check_host(host, true).map_err(|e| format!("{url:?}: {e}"))?;
        return Ok(parsed.as_str().replace(TOKEN_STAND_IN, "{token}"));
    }
    // An ASCII URL goes out exactly as written.
    Ok(url.to_string())
}

/// What `{token}` stands for while a URL is parsed: letters only, unchanged by parsing.
pub(crate) const TOKEN_STAND_IN: &str = "newslettertokenstandin";

/// A URL from the config parsed as browsers do (WHATWG), with `{token}` standing in for a
/// token.
pub(crate) fn parse_web_url(url: &str) -> Result<url::Url, url::ParseError> {
    url::Url::parse(&url.replace("{token}", TOKEN_STAND_IN))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal valid config, for the tests here and the property tests.
    pub(crate) const GOOD: &str = r#"
[newsletter]
name = "Harbour Weekly"
from = "Harbour Weekly <weekly@harbour.example>"
contact = "desk@harbour.example"
list_id = "weekly.harbour.example"

[unsubscribe]
url = "https://harbour.example/unsubscribe/{token}"
secret_env = "NEWSLETTER_SECRET"

[transport]
kind = "outbox"
"#;

    fn parse(src: &str) -> Result<Config, Problems> {
        Config::from_str(src, Path::new("/p/newsletter.toml"))
    }

    #[test]
    fn a_minimal_config_resolves_paths_beside_the_file() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.paths.articles, Path::new("/p/articles"));
        assert_eq!(c.paths.subscribers, Path::new("/p/subscribers.toml"));
        assert!(matches!(c.transport, Transport::Outbox(ref p) if p == Path::new("/p/outbox")));
        assert_eq!(c.newsletter.greeting_fallback, "reader");
    }

    #[test]
    fn a_misspelled_key_is_reported_with_its_line() {
        let src = GOOD.replace("list_id =", "listid =");
        let err = parse(&src).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("newsletter.toml:6"), "{text}");
        assert!(text.contains("unknown field `listid`"), "{text}");
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let src = GOOD
            .replace("weekly@harbour.example>", "weekly(at)harbour.example>")
            .replace(
                "https://harbour.example/unsubscribe/{token}",
                "http://harbour.example/u",
            );
        let err = parse(&src).unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        assert_eq!(err.0[0].field.as_deref(), Some("newsletter.from"));
        assert_eq!(err.0[0].line, Some(4));
        assert_eq!(err.0[1].field.as_deref(), Some("unsubscribe.url"));
    }

    #[test]
    fn plaintext_is_refused_for_a_remote_host_and_for_credentials() {
        let src = GOOD.replace("kind = \"outbox\"", "kind = \"smtp\"")
            + "[smtp]\nhost = \"smtp.example.org\"\nsecurity = \"none\"\nusername = \"u\"\npassword_env = \"P\"\n";
        let err = parse(&src).unwrap_err();
        let fields: Vec<_> = err.0.iter().filter_map(|p| p.field.clone()).collect();
        assert_eq!(fields, ["smtp.security", "smtp.username"], "{err}");
    }

    /// Every config string that reaches the SMTP connection or a header, with CR/LF and
    /// SMTP commands in it: each is refused with its field and line.
    #[test]
    fn every_string_that_reaches_the_wire_refuses_injected_commands() {
        let evil = r"x\r\nRSET\r\nMAIL FROM:<evil@evil.example>";
        let smtp = GOOD.replace("kind = \"outbox\"", "kind = \"smtp\"")
            + "[smtp]\nhost = \"127.0.0.1\"\nsecurity = \"none\"\n";
        let with_dkim = GOOD.to_string()
            + "[dkim]\ndomain = \"harbour.example\"\nselector = \"s1\"\nprivate_key_file = \"k.pem\"\n";
        let fields: [(&str, String, &str); 13] = [
            ("newsletter.name", GOOD.into(), "name = \"Harbour Weekly\""),
            (
                "newsletter.from",
                GOOD.into(),
                "from = \"Harbour Weekly <weekly@harbour.example>\"",
            ),
            (
                "newsletter.reply_to",
                GOOD.replace(
                    "[unsubscribe]",
                    "reply_to = \"r@harbour.example\"\n[unsubscribe]",
                ),
                "reply_to = \"r@harbour.example\"",
            ),
            (
                "newsletter.contact",
                GOOD.into(),
                "contact = \"desk@harbour.example\"",
            ),
            (
                "newsletter.website",
                GOOD.replace(
                    "[unsubscribe]",
                    "website = \"https://harbour.example\"\n[unsubscribe]",
                ),
                "website = \"https://harbour.example\"",
            ),
            (
                "newsletter.list_id",
                GOOD.into(),
                "list_id = \"weekly.harbour.example\"",
            ),
            (
                "newsletter.greeting_fallback",
                GOOD.replace(
                    "[unsubscribe]",
                    "greeting_fallback = \"reader\"\n[unsubscribe]",
                ),
                "greeting_fallback = \"reader\"",
            ),
            (
                "unsubscribe.url",
                GOOD.into(),
                "url = \"https://harbour.example/unsubscribe/{token}\"",
            ),
            (
                "unsubscribe.mailto",
                GOOD.replace("secret_env", "mailto = \"u@harbour.example\"\nsecret_env"),
                "mailto = \"u@harbour.example\"",
            ),
            ("smtp.host", smtp.clone(), "host = \"127.0.0.1\""),
            (
                "smtp.hello_name",
                smtp.clone() + "hello_name = \"mail.harbour.example\"\n",
                "hello_name = \"mail.harbour.example\"",
            ),
            (
                "dkim.domain",
                with_dkim.clone(),
                "domain = \"harbour.example\"",
            ),
            ("dkim.selector", with_dkim, "selector = \"s1\""),
        ];
        for (field, src, assignment) in fields {
            assert!(parse(&src).is_ok(), "{field}: the clean config must parse");
            let key = assignment.split(" = ").next().unwrap();
            let bad = src.replace(assignment, &format!("{key} = \"{evil}\""));
            let err = parse(&bad).expect_err(field);
            assert!(
                err.0
                    .iter()
                    .any(|p| p.field.as_deref() == Some(field) && p.line.is_some()),
                "{field} not refused with its line: {err}"
            );
        }
        let user = GOOD.replace("kind = \"outbox\"", "kind = \"smtp\"")
            + &format!(
                "[smtp]\nhost = \"smtp.example.org\"\nusername = \"{evil}\"\npassword_env = \"P\"\n"
            );
        let err = parse(&user).unwrap_err();
        assert!(
            err.0
                .iter()
                .any(|p| p.field.as_deref() == Some("smtp.username")),
            "{err}"
        );
    }

    #[test]
    fn a_non_ascii_host_in_a_url_becomes_a_labels() {
        let c = parse(&GOOD.replace("harbour.example/unsubscribe", "bücher.example/unsubscribe"))
            .unwrap();
        assert_eq!(
            c.unsubscribe.url,
            "https://xn--bcher-kva.example/unsubscribe/{token}"
        );
        let err = parse(&GOOD.replace(
            "/unsubscribe/{token}",
            &format!("/{}{{token}}", "a".repeat(600)),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("at most 500"), "{err}");
        for bad in [
            "https://u:p@harbour.example/unsubscribe/{token}",
            "http://harbour.example/unsubscribe/{token}",
            "https:///unsubscribe/{token}",
            "https://harbour.example:99999/unsubscribe/{token}",
        ] {
            let err = parse(&GOOD.replace("https://harbour.example/unsubscribe/{token}", bad))
                .expect_err(bad);
            assert_eq!(
                err.0[0].field.as_deref(),
                Some("unsubscribe.url"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn numbers_out_of_range_are_problems_with_their_line_not_panics() {
        let src = GOOD.replace("kind = \"outbox\"", "kind = \"smtp\"")
            + "[smtp]\nhost = \"127.0.0.1\"\nsecurity = \"none\"\nretry_delay_seconds = 1e20\n\
               connect_timeout_seconds = -1\ncommand_timeout_seconds = nan\nrate_per_second = 1e-300\n\
               max_attempts = 0\n\n[[sources]]\nname = \"g\"\npath = \"f.xml\"\ntimeout_seconds = 1e300\n\n\
               [selection]\nfirst_days = 4000000000\n";
        let err = parse(&src).unwrap_err();
        let mut fields: Vec<(String, usize)> = err
            .0
            .iter()
            .map(|p| (p.field.clone().unwrap_or_default(), p.line.unwrap_or(0)))
            .collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                ("selection.first_days".to_string(), 29),
                ("smtp.command_timeout_seconds".to_string(), 19),
                ("smtp.connect_timeout_seconds".to_string(), 18),
                ("smtp.max_attempts".to_string(), 21),
                ("smtp.rate_per_second".to_string(), 20),
                ("smtp.retry_delay_seconds".to_string(), 17),
                ("sources.timeout_seconds".to_string(), 26),
            ],
            "{err}"
        );
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for h in ["localhost", "127.0.0.1", "127.3.4.5", "::1", "[::1]"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["smtp.example.org", "10.0.0.1", "localhost.example.org"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
