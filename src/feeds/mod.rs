//! Feed sources: RSS 2.0, Atom and JSON Feed, by URL or file. A fetch has connect and read
//! timeouts and a size limit, and asks only for what changed (`ETag`, Last-Modified, kept in
//! the state database). Items become articles whose HTML is sanitized before any template
//! sees it. A source that fails is reported; the others still build the edition.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use chrono::NaiveDate;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::config::{Location, Source};
use crate::input::articles::{Article, Image};

/// What became of one source in this run.
#[derive(Debug, Clone)]
pub struct Report {
    pub name: String,
    pub location: String,
    /// `Ok(how)`: "12 items (fetched)", "12 items (not modified)"; `Err(why)` otherwise.
    pub outcome: std::result::Result<String, String>,
}

/// The conditional-GET memory: validators and the body they stand for, per URL.
pub(crate) struct Cache {
    conn: Connection,
}

struct Cached {
    etag: Option<String>,
    last_modified: Option<String>,
    body: Vec<u8>,
}

impl Cache {
    /// Opens the cache table in the state database, creating both if needed.
    pub(crate) fn open(state: &Path) -> Result<Cache> {
        // The table is part of the state schema (see `state::db`).
        let conn = crate::state::Journal::open(state)?.into_connection();
        Ok(Cache { conn })
    }

    fn get(&self, url: &str) -> Result<Option<Cached>> {
        Ok(self
            .conn
            .query_row(
                "SELECT etag, last_modified, body FROM feed_cache WHERE url = ?1",
                [url],
                |r| {
                    Ok(Cached {
                        etag: r.get(0)?,
                        last_modified: r.get(1)?,
                        body: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    fn put(&self, url: &str, c: &Cached) -> Result<()> {
        let now = crate::clock::Clock::from_env()?
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.conn.execute(
            "INSERT OR REPLACE INTO feed_cache (url, etag, last_modified, body, fetched_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![url, c.etag, c.last_modified, c.body, now],
        )?;
        Ok(())
    }
}

/// Reads every source, all at once (one thread each, so slow feeds cost the slowest one's
/// time, not the sum); returns the articles of those that worked and a report for each.
/// The cache is read before and written after, on this thread: the fetches touch no
/// database.
pub(crate) fn load_all(
    sources: &[Source],
    cache: Option<&Cache>,
    today: NaiveDate,
) -> (Vec<Article>, Vec<Report>) {
    let cached: Vec<Option<Cached>> = sources
        .iter()
        .map(|s| match (&s.location, cache) {
            (Location::Url(url), Some(c)) => c.get(url).unwrap_or_else(|e| {
                eprintln!(
                    "warning: the feed cache cannot be read ({e:#}): {url} is fetched in full"
                );
                None
            }),
            _ => None,
        })
        .collect();
    let fetched: Vec<Result<Fetched>> = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .iter()
            .zip(cached)
            .map(|(source, cached)| scope.spawn(move || read(source, cached)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("reading the feed failed unexpectedly")))
            })
            .collect()
    });

    let mut articles = Vec::new();
    let mut reports = Vec::new();
    for (source, result) in sources.iter().zip(fetched) {
        let result = result.and_then(|f| {
            if let (Some(c), Some(store), Location::Url(url)) = (cache, &f.store, &source.location)
                && let Err(e) = c.put(url, store)
            {
                eprintln!("warning: the feed cache cannot be written ({e:#}): {url} will be fetched in full next time");
            }
            let items = parse(source, &f.body, today)?;
            Ok((items, f.how))
        });
        let outcome = match result {
            Ok((items, how)) => {
                let summary = format!("{} items ({how})", items.len());
                articles.extend(items);
                Ok(summary)
            }
            Err(e) => Err(format!("{e:#}")),
        };
        reports.push(Report {
            name: source.name.clone(),
            location: source.location.to_string(),
            outcome,
        });
    }
    (articles, reports)
}

/// A feed's bytes, how they were obtained, and what to remember for the next fetch.
struct Fetched {
    body: Vec<u8>,
    how: &'static str,
    store: Option<Cached>,
}

fn read(source: &Source, cached: Option<Cached>) -> Result<Fetched> {
    match &source.location {
        Location::Path(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let mut bytes = Vec::new();
            file.take(source.max_bytes + 1).read_to_end(&mut bytes)?;
            if bytes.len() as u64 > source.max_bytes {
                bail!("larger than the limit of {} bytes", source.max_bytes);
            }
            Ok(Fetched {
                body: bytes,
                how: "file",
                store: None,
            })
        }
        Location::Url(url) => fetch(source, url, cached),
    }
}

fn agent(source: &Source) -> Result<ureq::Agent> {
    let roots = match &source.ca_file {
        Some(path) => Some(crate::deliver::tls::read_ca_file(path)?),
        None => None,
    };
    let tls = crate::deliver::tls::http_tls(roots.as_deref());
    Ok(ureq::Agent::config_builder()
        .timeout_connect(Some(source.timeout))
        .timeout_recv_response(Some(source.timeout))
        .timeout_recv_body(Some(source.timeout))
        .http_status_as_error(false)
        .max_redirects(5)
        .user_agent(concat!("newsletter/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build()
        .new_agent())
}

/// One HTTP GET, conditional when an earlier answer left validators.
fn fetch(source: &Source, url: &str, cached: Option<Cached>) -> Result<Fetched> {
    let mut request = agent(source)?.get(url);
    if let Some(c) = &cached {
        if let Some(etag) = &c.etag {
            request = request.header("If-None-Match", etag);
        }
        if let Some(lm) = &c.last_modified {
            request = request.header("If-Modified-Since", lm);
        }
    }
    let mut response = request.call().map_err(|e| describe(&e, source))?;
    let status = response.status().as_u16();
    if status == 304 {
        let c = cached.ok_or_else(|| anyhow!("304 Not Modified, but nothing is cached"))?;
        return Ok(Fetched {
            body: c.body,
            how: "not modified",
            store: None,
        });
    }
    if status != 200 {
        bail!("HTTP {status}");
    }
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header("etag");
    let last_modified = header("last-modified");
    let body = response
        .body_mut()
        .with_config()
        .limit(source.max_bytes)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => {
                anyhow!("larger than the limit of {} bytes", source.max_bytes)
            }
            e => describe(&e, source),
        })?;
    let store = (etag.is_some() || last_modified.is_some()).then(|| Cached {
        etag,
        last_modified,
        body: body.clone(),
    });
    Ok(Fetched {
        body,
        how: "fetched",
        store,
    })
}

fn describe(e: &ureq::Error, source: &Source) -> anyhow::Error {
    match e {
        ureq::Error::Timeout(what) => anyhow!("timed out after {:?} ({what})", source.timeout),
        e => anyhow!("{e}"),
    }
}

/// The items of a feed as articles.
fn parse(source: &Source, bytes: &[u8], today: NaiveDate) -> Result<Vec<Article>> {
    let feed = feed_rs::parser::parse(bytes).map_err(|e| anyhow!("not a feed: {e}"))?;
    let json_images = json_feed_images(bytes);
    let mut out = Vec::new();
    for entry in feed.entries {
        let link = entry
            .links
            .iter()
            .find(|l| {
                l.rel.as_deref().is_none_or(|r| r == "alternate")
                    && l.media_type.as_deref().is_none_or(|m| m.contains("html"))
            })
            .map(|l| l.href.clone())
            .or_else(|| entry.id.starts_with("http").then(|| entry.id.clone()));
        let Some(link) = link.filter(|l| l.starts_with("https://") || l.starts_with("http://"))
        else {
            continue; // nothing to link to: not an article
        };
        let guid = if entry.id.is_empty() {
            link.clone()
        } else {
            entry.id.clone()
        };
        let title = entry
            .title
            .as_ref()
            .map(|t| text_of(&t.content, is_html(&t.content_type)))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| link.clone());
        let content_html = entry.content.as_ref().and_then(|c| c.body.clone());
        let summary_source = entry
            .summary
            .as_ref()
            .map(|s| (s.content.clone(), is_html(&s.content_type)))
            .or_else(|| content_html.clone().map(|c| (c, true)));
        let summary = summary_source
            .map(|(s, html)| excerpt(&text_of(&s, html), 400))
            .unwrap_or_default();
        let dated = entry.published.or(entry.updated);
        let date = dated.map_or(today, |d| d.date_naive());
        let mut tags: BTreeSet<String> = source.tags.iter().cloned().collect();
        tags.extend(entry.categories.iter().map(|c| c.term.trim().to_string()));
        let (body_html, body_markdown) = match (&content_html, source.include_content) {
            (Some(html), true) => (sanitize(html), text_of(html, true)),
            _ => (String::new(), String::new()),
        };
        out.push(Article {
            id: format!("{}-{}", source.name, short_hash(&guid)),
            path: PathBuf::from(source.location.to_string()),
            title: single_line(&title),
            date,
            link,
            summary: if summary.is_empty() {
                single_line(&title)
            } else {
                summary
            },
            selected: true,
            author: entry
                .authors
                .first()
                .and_then(|a| a.name.as_deref())
                .map(single_line)
                .filter(|a| !a.is_empty()),
            tags: tags.into_iter().filter(|t| !t.is_empty()).collect(),
            preheader: None,
            image: image_of(&entry, &title).or_else(|| {
                let url = json_images.get(&entry.id).cloned().or_else(|| {
                    // JSON Feed attachments arrive as links with their media type.
                    entry
                        .links
                        .iter()
                        .find(|l| {
                            l.media_type
                                .as_deref()
                                .is_some_and(|m| m.starts_with("image/"))
                        })
                        .map(|l| l.href.clone())
                })?;
                (url.starts_with("https://") || url.starts_with("http://")).then(|| Image {
                    url,
                    alt: single_line(&title),
                    caption: None,
                    credit: None,
                    width: 600,
                })
            }),
            body_markdown,
            body_html,
            source: source.name.clone(),
            guid: Some(guid),
            undated: dated.is_none(),
            notes: Vec::new(),
        });
    }
    Ok(out)
}

fn is_html(m: &mediatype::MediaTypeBuf) -> bool {
    m.subty().as_str() == "html"
}

fn short_hash(s: &str) -> String {
    crate::token::hex(&Sha256::digest(s.as_bytes())[..5])
}

/// The first image among the item's media (RSS enclosures, Media RSS, JSON Feed images).
fn image_of(entry: &feed_rs::model::Entry, title: &str) -> Option<Image> {
    for media in &entry.media {
        let caption = media
            .description
            .as_ref()
            .map(|d| excerpt(&text_of(&d.content, is_html(&d.content_type)), 300))
            .filter(|c| !c.is_empty());
        let alt = media
            .title
            .as_ref()
            .map(|t| single_line(&t.content))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| single_line(title));
        let from_content = media.content.iter().find_map(|c| {
            let url = c.url.as_ref()?.to_string();
            let is_image = c
                .content_type
                .as_ref()
                .map_or_else(|| looks_like_image(&url), |m| m.ty().as_str() == "image");
            is_image.then_some(url)
        });
        let url = from_content.or_else(|| media.thumbnails.first().map(|t| t.image.uri.clone()));
        if let Some(url) = url.filter(|u| u.starts_with("https://") || u.starts_with("http://")) {
            return Some(Image {
                url,
                alt,
                caption,
                credit: None,
                width: 600,
            });
        }
    }
    None
}

/// A JSON Feed item's `image` (or `banner_image`) by item id: feed-rs does not keep them.
fn json_feed_images(bytes: &[u8]) -> std::collections::HashMap<String, String> {
    let Ok(serde_json::Value::Object(feed)) = serde_json::from_slice(bytes) else {
        return std::collections::HashMap::default();
    };
    let Some(serde_json::Value::Array(items)) = feed.get("items") else {
        return std::collections::HashMap::default();
    };
    items
        .iter()
        .filter_map(|item| {
            let id = match item.get("id")? {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => return None,
            };
            let image = item
                .get("image")
                .or_else(|| item.get("banner_image"))?
                .as_str()?;
            Some((id, image.to_string()))
        })
        .collect()
}

fn looks_like_image(url: &str) -> bool {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    [".jpg", ".jpeg", ".png", ".gif", ".webp"]
        .iter()
        .any(|ext| path.ends_with(ext))
}

/// Feed HTML made safe for a template: no scripts, styles, event handlers, forms or frames;
/// links get `rel="noopener noreferrer"`.
pub(crate) fn sanitize(html: &str) -> String {
    ammonia::Builder::default()
        .rm_tags(["img"])
        .clean(html)
        .to_string()
}

/// Elements whose end is a break between words; every other tag simply goes.
const BREAKS: [&str; 22] = [
    "p",
    "br",
    "div",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "figure",
    "figcaption",
    "section",
    "article",
    "table",
    "tr",
    "td",
    "th",
    "pre",
];

/// Plain text of a piece of feed text: parsed as HTML (html5ever, through ammonia), so
/// every named entity is decoded (`&hellip;`, `&eacute;`, `&rsquo;`), the content of
/// `script` and `style` is dropped, block ends separate words, whitespace is folded.
fn text_of(s: &str, html: bool) -> String {
    if !html {
        return s.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    // Only the break elements survive, without attributes; the serializer escapes the
    // text's `&`, `<`, `>` and no-break spaces, so the tags left are the only `<`s.
    let kept = ammonia::Builder::empty()
        .tags(BREAKS.into_iter().collect())
        .clean_content_tags(
            ["script", "style", "template", "noscript"]
                .into_iter()
                .collect(),
        )
        .clean(s)
        .to_string();
    let mut text = String::with_capacity(kept.len());
    let mut in_tag = false;
    for c in kept.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn single_line(s: &str) -> String {
    s.split_whitespace()
        .filter(|w| !w.chars().any(char::is_control))
        .collect::<Vec<_>>()
        .join(" ")
}

/// At most `max` characters, cut at a word boundary with an ellipsis.
fn excerpt(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    let cut = cut.rsplit_once(' ').map_or(cut.as_str(), |(head, _)| head);
    format!("{}…", cut.trim_end_matches([',', '.', ';', ':']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_html_loses_scripts_and_handlers_and_text_loses_tags() {
        let dirty = r#"<p onclick="steal()">Hi <script>alert(1)</script><a href="https://x.example/">x</a></p><iframe src="https://evil.example"></iframe>"#;
        let clean = sanitize(dirty);
        assert!(
            !clean.contains("script") && !clean.contains("onclick") && !clean.contains("iframe"),
            "{clean}"
        );
        assert!(clean.contains(r#"href="https://x.example/""#), "{clean}");
        assert_eq!(
            text_of("<b>Fish &amp; chips</b> &#8212; &lt;fresh&gt;", true),
            "Fish & chips — <fresh>"
        );
    }

    /// Descriptions as `WordPress`, Ghost, Substack and Medium write them.
    #[test]
    fn real_world_descriptions_become_clean_text() {
        let cases = [
            (
                "<p>The harbour caf&eacute; reopens &hellip; and it&rsquo;s busier than ever.</p>\n<p>The post <a href=\"https://h.example/cafe\">Caf&eacute; reopens</a> appeared first on <a href=\"https://h.example\">Harbour</a>.</p>",
                "The harbour café reopens … and it’s busier than ever. The post Café reopens appeared first on Harbour.",
            ),
            (
                "<p>Ferries resume.</p><figure class=\"kg-card kg-image-card\"><img src=\"https://h.example/f.jpg\" alt=\"\"><figcaption>The 7:10&nbsp;crossing</figcaption></figure>",
                "Ferries resume. The 7:10 crossing",
            ),
            (
                "<div class=\"captioned-image-container\"><figure><picture><source type=\"image/webp\"></picture></figure></div><p>Subscribe &amp; share&#8212;it&#x2019;s free.</p><style>.x{color:red}</style><script>track()</script>",
                "Subscribe & share—it’s free.",
            ),
            (
                "<figure><img alt=\"\" src=\"https://cdn.example/1*x.jpeg\"><figcaption>Photo by A.</figcaption></figure><p>Five things &lt;you&gt; missed<br>this week</p><p><a href=\"https://medium.example/p\">Continue reading on Medium »</a></p>",
                "Photo by A. Five things <you> missed this week Continue reading on Medium »",
            ),
        ];
        for (html, text) in cases {
            assert_eq!(text_of(html, true), text, "{html}");
        }
    }

    #[test]
    fn excerpts_end_on_a_word() {
        assert_eq!(excerpt("one two three four", 9), "one two…");
        assert_eq!(excerpt("short", 9), "short");
    }
}
