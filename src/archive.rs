//! The web archive: a static site of the sent editions, one page per edition (rendered
//! with no reader in it), an index and an Atom feed. No external CSS, script or font;
//! links between the pages are relative, so the folder works on any static host. A page,
//! once written, is never written again: its bytes stay what readers first saw.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::locale::Locale;
use crate::render::templates::escape_html;

/// A manifest date (YYYY-MM-DD) as the locale writes it; as it is if it is not one.
fn shown_date(locale: &Locale, date: &str) -> String {
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map_or_else(|_| date.to_string(), |d| locale.date(d))
}

/// One edition in the archive's manifest (`archive.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: String,
    /// YYYY-MM-DD.
    pub date: String,
    pub title: String,
}

const MANIFEST: &str = "archive.json";

/// Writes an edition's page (unless it exists) and the index and feed; returns the page's
/// path and whether it was written now.
pub(crate) fn publish(
    dir: &Path,
    config: &Config,
    locale: &Locale,
    entry: &Entry,
    html: &str,
) -> Result<(PathBuf, bool)> {
    let page = dir.join(&entry.id).join("index.html");
    let written = if page.exists() {
        false
    } else {
        std::fs::create_dir_all(page.parent().unwrap_or(dir))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        crate::atomic_file::write(&page, html.as_bytes())?;
        true
    };
    let mut entries = manifest(dir)?;
    entries.retain(|e| e.id != entry.id);
    entries.push(entry.clone());
    // Newest first; editions of one day by id.
    entries.sort_by(|a, b| b.date.cmp(&a.date).then_with(|| b.id.cmp(&a.id)));
    crate::atomic_file::write(
        &dir.join(MANIFEST),
        serde_json::to_string_pretty(&entries)?.as_bytes(),
    )?;
    crate::atomic_file::write(
        &dir.join("index.html"),
        index(config, locale, &entries).as_bytes(),
    )?;
    crate::atomic_file::write(
        &dir.join("atom.xml"),
        atom(config, locale, &entries).as_bytes(),
    )?;
    Ok((page, written))
}

fn manifest(dir: &Path) -> Result<Vec<Entry>> {
    let path = dir.join(MANIFEST);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is damaged; move it aside to rebuild it", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The index page: every edition, newest first, with a link to the feed, in the list's
/// language.
fn index(config: &Config, locale: &Locale, entries: &[Entry]) -> String {
    let name = escape_html(&config.newsletter.name);
    let title =
        escape_html(&locale.fill("archive_title", &[("newsletter", &config.newsletter.name)]));
    let lang = escape_html(&locale.tag);
    let feed = escape_html(locale.get("archive_feed"));
    let mut items = String::new();
    for e in entries {
        let _ = writeln!(
            items,
            "<li style=\"margin:0 0 12px 0;\"><a href=\"{}/\" style=\"color:#1d3557;\">{}</a><br><span style=\"color:#595959; font-size:14px;\">{}</span></li>",
            escape_html(&e.id),
            escape_html(&e.title),
            escape_html(&shown_date(locale, &e.date))
        );
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>{title}</title>\n<link rel=\"alternate\" type=\"application/atom+xml\" title=\"{name}\" href=\"atom.xml\">\n</head>\n\
<body style=\"margin:0; padding:24px 16px; font-family:Arial, Helvetica, sans-serif; font-size:16px; line-height:24px; color:#222222; background-color:#ffffff; word-break:break-word;\">\n\
<div style=\"max-width:600px; margin:0 auto;\">\n<h1 style=\"font-family:Georgia, 'Times New Roman', serif; font-size:28px; line-height:34px; color:#1d3557;\">{name}</h1>\n\
<ul style=\"list-style:none; padding:0; margin:0;\">\n{items}</ul>\n<p style=\"font-size:14px; color:#595959;\"><a href=\"atom.xml\" style=\"color:#1d3557;\">{feed}</a></p>\n</div>\n</body>\n</html>\n"
    )
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The Atom feed (RFC 4287) of the editions: absolute links with `[archive] url`, relative
/// ones (to the feed's own address) without.
fn atom(config: &Config, locale: &Locale, entries: &[Entry]) -> String {
    let base = config
        .archive
        .as_ref()
        .and_then(|a| a.url.clone())
        .unwrap_or_default();
    let list = &config.newsletter.list_id;
    let feed_id = if base.is_empty() {
        format!("urn:newsletter:{list}")
    } else {
        base.clone()
    };
    let updated = entries
        .first()
        .map_or_else(|| "1970-01-01".to_string(), |e| e.date.clone());
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"{}\">\n<title>{}</title>\n<id>{}</id>\n<updated>{updated}T00:00:00Z</updated>\n<link rel=\"alternate\" href=\"{}\"/>\n<author><name>{}</name></author>\n",
        xml(&locale.tag),
        xml(&config.newsletter.name),
        xml(&feed_id),
        xml(if base.is_empty() { "./" } else { &base }),
        xml(&config.newsletter.name),
    );
    for e in entries {
        let href = format!("{base}{}/", e.id);
        let id = if base.is_empty() {
            format!("urn:newsletter:{list}:{}", e.id)
        } else {
            href.clone()
        };
        let _ = write!(
            out,
            "<entry>\n<title>{}</title>\n<id>{}</id>\n<updated>{}T00:00:00Z</updated>\n<link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>\n<summary>{}</summary>\n</entry>\n",
            xml(&e.title),
            xml(&id),
            xml(&e.date),
            xml(&href),
            xml(&e.title)
        );
    }
    out.push_str("</feed>\n");
    out
}
