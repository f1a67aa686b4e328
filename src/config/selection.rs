//! `[selection]`: which candidate articles make an edition.

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::problems::Problems;

use super::checks::Numbers;

/// `[selection]` as written; its numbers are checked into `Selection`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSelection {
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
pub(super) const DEFAULT_FIRST_DAYS: u32 = 7;

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

pub(super) fn resolve_selection(
    raw: RawSelection,
    path: &Path,
    source: &str,
    problems: &mut Problems,
) -> Selection {
    let mut n = Numbers::new(path, source, "selection");
    let selection = Selection {
        first_days: n.get(
            "first_days",
            raw.first_days.as_ref(),
            DEFAULT_FIRST_DAYS,
            0..=3650,
        ),
        include_tags: raw.include_tags,
        exclude_tags: raw.exclude_tags,
        max_articles: raw
            .max_articles
            .is_some()
            .then(|| n.get("max_articles", raw.max_articles.as_ref(), 10, 1..=1000)),
        pinned: raw.pinned,
        audience: raw.audience,
    };
    n.finish(problems);
    selection
}
