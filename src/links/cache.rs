//! Results of the links that worked, kept per edition beside the state database, so a
//! second `check --links` asks only what failed or is new.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fetch::Outcome;

/// How long a working link is taken on trust.
pub(crate) const FRESH_SECONDS: u64 = 24 * 3600;

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Cache {
    /// The edition these results are of; another edition starts afresh.
    pub edition: String,
    /// URL → when it was checked (seconds since 1970) and what came of it.
    pub links: BTreeMap<String, (u64, Outcome)>,
}

/// `newsletter.db.links.json` beside `newsletter.db`.
pub(crate) fn path(state: &Path) -> PathBuf {
    crate::state::beside(state, ".links.json")
}

impl Cache {
    /// The cache of `edition`; empty when there is none or it is of another edition (a
    /// damaged file is ignored: it only saves requests).
    pub(crate) fn load(file: &Path, edition: &str) -> Cache {
        std::fs::read(file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Cache>(&bytes).ok())
            .filter(|c| c.edition == edition)
            .unwrap_or_else(|| Cache {
                edition: edition.to_string(),
                links: BTreeMap::new(),
            })
    }

    /// A working result for `url` checked less than a day before `now`.
    pub(crate) fn fresh(&self, url: &str, now: u64) -> Option<&Outcome> {
        self.links
            .get(url)
            .filter(|(at, outcome)| outcome.ok() && now.saturating_sub(*at) < FRESH_SECONDS)
            .map(|(_, outcome)| outcome)
    }

    pub(crate) fn save(&self, file: &Path) -> anyhow::Result<()> {
        crate::atomic_file::write(file, &serde_json::to_vec_pretty(self)?).map(|_| ())
    }
}
