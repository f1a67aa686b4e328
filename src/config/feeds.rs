//! `[[sources]]`: the feeds an edition reads, each with its timeout and size limit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::problems::{Problem, Problems};

use super::checks::Numbers;

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
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

/// Feed sizes above this are refused unless a source sets its own `max_bytes`.
pub(super) const DEFAULT_FEED_MAX_BYTES: u64 = 5_000_000;

/// Defaults of `[[sources]]`.
pub(super) const DEFAULT_FEED_TIMEOUT: f64 = 10.0;

pub(super) fn resolve_sources(
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
    let mut numbers = Numbers::new(path, source, "sources");
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
            timeout: numbers.secs(
                "timeout_seconds",
                s.timeout_seconds.as_ref(),
                DEFAULT_FEED_TIMEOUT,
                0.1..=600.0,
            ),
            max_bytes: numbers.get(
                "max_bytes",
                s.max_bytes.as_ref(),
                DEFAULT_FEED_MAX_BYTES,
                1..=1_000_000_000,
            ),
            include_content: s.include_content,
            ca_file: s.ca_file.as_ref().map(|f| dir.join(f)),
        });
    }
    numbers.finish(problems);
    out
}
