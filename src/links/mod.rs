//! `check --links`: every link and image of an edition fetched before it goes to every
//! reader, where a dead one cannot be recalled.

pub(crate) mod cache;
pub(crate) mod fetch;

use std::collections::BTreeMap;

use crate::edition::Edition;

/// A URL of the edition and where it appears: the titles of the articles that carry it,
/// or none when only the template does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    pub url: String,
    pub articles: Vec<String>,
}

impl Link {
    /// Where to look for it, for a report line.
    pub(crate) fn place(&self) -> String {
        if self.articles.is_empty() {
            "in the template".to_string()
        } else {
            let quoted: Vec<String> = self.articles.iter().map(|t| format!("\"{t}\"")).collect();
            format!("in {}", quoted.join(", "))
        }
    }
}

/// The http(s) links and images of the edition's web page (the HTML without a reader, so
/// no one's unsubscribe link), each with the articles it belongs to; `skip` are URLs not
/// to fetch (the edition's own archive page, which exists only once it is sent).
pub(crate) fn collect(page_html: &str, edition: &Edition, skip: &[String]) -> Vec<Link> {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for url in urls(page_html) {
        if skip.contains(&url) {
            continue;
        }
        found.entry(url).or_default();
    }
    for article in &edition.articles {
        let mut own: Vec<String> = urls(&article.body_html);
        own.push(article.link.clone());
        if let Some(image) = &article.image {
            own.push(image.url.clone());
        }
        for url in own {
            if let Some(places) = found.get_mut(&url)
                && !places.contains(&article.title)
            {
                places.push(article.title.clone());
            }
        }
    }
    found
        .into_iter()
        .map(|(url, articles)| Link { url, articles })
        .collect()
}

/// The values of `href` and `src` attributes that are http(s) URLs, unescaped.
fn urls(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attribute in ["href=\"", "src=\""] {
        for (i, _) in html.match_indices(attribute) {
            // An attribute, not the end of another name (`data-src`).
            if html[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '-') {
                continue;
            }
            let start = i + attribute.len();
            let Some(len) = html[start..].find('"') else {
                continue;
            };
            let url = unescape(&html[start..start + len]);
            if (url.starts_with("https://") || url.starts_with("http://")) && !out.contains(&url) {
                out.push(url);
            }
        }
    }
    out
}

/// The character references an HTML attribute may carry in a URL.
fn unescape(value: &str) -> String {
    value
        .replace("&amp;", "&")
        .replace("&#x2F;", "/")
        .replace("&#47;", "/")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_from_href_and_src_only() {
        let html = r##"<a href="https://a.example/x?a=1&amp;b=2">x</a><img data-src="https://no.example/" src="https://img.example/p.jpg"><a href="mailto:x@y">m</a><a href="#top">t</a>"##;
        assert_eq!(
            urls(html),
            ["https://a.example/x?a=1&b=2", "https://img.example/p.jpg"]
        );
    }
}
