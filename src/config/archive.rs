//! `[archive]`: where the web pages of the editions are written, and the address they are
//! served at (each message then links to its page, and carries `List-Archive`).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::problems::{Problem, Problems};

use super::checks::check_web_url;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawArchive {
    dir: Option<PathBuf>,
    url: Option<Spanned<String>>,
    publish: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Archive {
    /// The folder the static site is written into (relative paths from the config's folder).
    pub dir: Option<PathBuf>,
    /// Where that folder is served, ending in `/`: each edition's page is `URL/EDITION/`.
    pub url: Option<String>,
    /// A shell command run in the config's folder after pages were written (rsync, a git
    /// commit and push, a static-site build).
    pub publish: Option<String>,
}

impl Archive {
    /// The address of an edition's page, when the archive is served somewhere.
    pub fn page_url(&self, edition_id: &str) -> Option<String> {
        self.url.as_ref().map(|u| format!("{u}{edition_id}/"))
    }
}

pub(super) fn resolve_archive(
    raw: Option<RawArchive>,
    dir: &Path,
    path: &Path,
    source: &str,
    problems: &mut Problems,
) -> Option<Archive> {
    let raw = raw?;
    let url = raw.url.as_ref().and_then(|u| {
        check_web_url(u.get_ref(), false)
            .map(|u| if u.ends_with('/') { u } else { format!("{u}/") })
            .map_err(|e| {
                problems.push(
                    Problem::new(path, format!("the address {e}"))
                        .at_offset(source, u.span().start)
                        .field("archive.url"),
                );
            })
            .ok()
    });
    if raw.dir.is_none() && raw.url.is_none() {
        problems.push(
            Problem::new(
                path,
                "set `dir` (where the pages are written), `url` (where they are served), or both",
            )
            .field("archive"),
        );
    }
    if raw.publish.is_some() && raw.dir.is_none() {
        problems.push(
            Problem::new(
                path,
                "`publish` needs `dir`: it publishes what is written there",
            )
            .field("archive.publish"),
        );
    }
    Some(Archive {
        dir: raw.dir.map(|d| dir.join(d)),
        url,
        publish: raw.publish.filter(|c| !c.trim().is_empty()),
    })
}
