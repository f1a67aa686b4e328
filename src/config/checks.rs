//! Checks shared by the sections: numbers in their ranges, host names, web addresses.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use crate::problems::{Problem, Problems};

/// Range checks for the numbers of a config file. Each value out of its range (zero where
/// a count must be positive, negative, NaN, infinite, absurdly large) is a problem naming
/// its field and line, and the default stands in, so no number can panic later (a
/// `Duration` of 1e300 seconds does; so does a date 4 billion days back).
pub(super) struct Numbers<'a> {
    path: &'a Path,
    source: &'a str,
    /// The table the fields are in, e.g. `smtp`: problems name `smtp.port`.
    section: &'static str,
    problems: Problems,
}

impl<'a> Numbers<'a> {
    pub(super) fn new(path: &'a Path, source: &'a str, section: &'static str) -> Self {
        Numbers {
            path,
            source,
            section,
            problems: Problems::default(),
        }
    }

    /// `key`'s value, or `default` when it is absent or out of `range` (then a problem).
    pub(super) fn get<T>(
        &mut self,
        key: &str,
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
        let rule = format!("must be between {} and {}", range.start(), range.end());
        self.report(key, value, &rule);
        default
    }

    /// Seconds as a duration, checked like `get`.
    pub(super) fn secs(
        &mut self,
        key: &str,
        value: Option<&Spanned<f64>>,
        default: f64,
        range: std::ops::RangeInclusive<f64>,
    ) -> Duration {
        Duration::from_secs_f64(self.get(key, value, default, range))
    }

    /// A problem with `key`'s value, quoted as written (1e300 rather than its 301 digits).
    pub(super) fn report<T: std::fmt::Display>(
        &mut self,
        key: &str,
        value: Option<&Spanned<T>>,
        rule: &str,
    ) {
        let Some(v) = value else { return };
        let written = self
            .source
            .get(v.span())
            .map_or_else(|| v.get_ref().to_string(), str::to_string);
        self.problems.push(
            Problem::new(self.path, format!("{} {rule}", written.trim()))
                .at_offset(self.source, v.span().start)
                .field(format!("{}.{key}", self.section)),
        );
    }

    /// Hands the problems found over.
    pub(super) fn finish(self, problems: &mut Problems) {
        problems.extend(self.problems);
    }
}

/// The longest single-line text field (a newsletter's name): its header lines stay short.
pub(super) const MAX_LINE_CHARS: usize = 200;
/// The longest URL: one that cannot be folded must fit a header line (998 octets).
pub(super) const MAX_URL_CHARS: usize = 500;

/// A host name (converted to A-labels: `bücher.example` is `xn--bcher-kva.example`), or,
/// when `ip_allowed`, an IP address (`[::1]` too). Anything else (spaces, CR/LF, a `:`)
/// could end up as a command on the SMTP connection or inside a header.
pub(super) fn check_host(value: &str, ip_allowed: bool) -> Result<String, String> {
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
pub(super) fn check_web_url(url: &str, needs_token: bool) -> Result<String, String> {
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

/// The path (and query) around `{token}` in a configured link, as a request target
/// shows it: what `serve` matches requests against. `what` names the link in errors.
pub(crate) fn token_route(url: &str, what: &str) -> anyhow::Result<(String, String)> {
    let parsed = parse_web_url(url).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    let target = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_string(),
    };
    let (prefix, suffix) = target
        .split_once(TOKEN_STAND_IN)
        .ok_or_else(|| anyhow::anyhow!("{what} has no {{token}} in its path"))?;
    Ok((prefix.to_string(), suffix.to_string()))
}
