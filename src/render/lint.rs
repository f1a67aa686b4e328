//! Checks on a rendered message that inbox providers care about: Gmail clips HTML past
//! 102 KB, images need alt text, links should be https, and every message needs its
//! unsubscribe link in the body as well as in the headers.

use crate::render::compose::Rendered;

/// Gmail clips the HTML part beyond this many bytes.
pub(crate) const HTML_CLIP: usize = 102 * 1024;
/// Past this, warn: the next edition may well be clipped.
pub(crate) const HTML_WARN: usize = 90 * 1024;

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Findings {
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

pub(crate) fn lint(rendered: &Rendered, unsubscribe_url: &str) -> Findings {
    let mut f = Findings::default();
    let size = rendered.html.len();
    if size > HTML_CLIP {
        f.errors.push(format!(
            "the HTML part is {} KB; Gmail clips messages past 102 KB, hiding the end (and the unsubscribe link)",
            size / 1024
        ));
    } else if size > HTML_WARN {
        f.warnings.push(format!(
            "the HTML part is {} KB, close to Gmail's 102 KB clipping limit",
            size / 1024
        ));
    }
    for tag in tags(&rendered.html, "<img") {
        if !tag.contains(" alt=") {
            f.warnings
                .push(format!("an image has no alt text: {}", shorten(tag)));
        }
    }
    for link in attribute_values(&rendered.html, "href=\"") {
        if link.starts_with("http://") {
            f.warnings.push(format!("a link is not https: {link}"));
        }
    }
    if !rendered.html.contains(unsubscribe_url) {
        f.warnings
            .push("the HTML template has no unsubscribe link ({{ unsubscribe_url }})".into());
    }
    if !rendered.text.contains(unsubscribe_url) {
        f.warnings
            .push("the text template has no unsubscribe link ({{ unsubscribe_url }})".into());
    }
    f
}

fn tags<'a>(html: &'a str, open: &str) -> impl Iterator<Item = &'a str> {
    html.match_indices(open).map(move |(i, _)| {
        let end = html[i..].find('>').map_or(html.len(), |e| i + e + 1);
        &html[i..end]
    })
}

fn attribute_values<'a>(html: &'a str, prefix: &'a str) -> impl Iterator<Item = &'a str> {
    html.match_indices(prefix).map(move |(i, _)| {
        let start = i + prefix.len();
        let end = html[start..].find('"').map_or(html.len(), |e| start + e);
        &html[start..end]
    })
}

fn shorten(s: &str) -> String {
    let short: String = s.chars().take(80).collect();
    if short.len() < s.len() {
        format!("{short}…")
    } else {
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(html: &str, text: &str) -> Rendered {
        Rendered {
            subject: "s".into(),
            html: html.into(),
            text: text.into(),
        }
    }

    #[test]
    fn a_clean_message_has_no_findings() {
        let r = rendered(
            "<a href=\"https://x.example/u/1\">u</a><img src=\"https://x.example/a.jpg\" alt=\"a\">",
            "https://x.example/u/1",
        );
        assert_eq!(lint(&r, "https://x.example/u/1"), Findings::default());
    }

    #[test]
    fn size_alt_text_plain_links_and_missing_unsubscribe_are_reported() {
        let big = "x".repeat(HTML_CLIP + 1);
        let f = lint(&rendered(&big, ""), "https://x.example/u/1");
        assert_eq!(f.errors.len(), 1, "{f:?}");
        let f = lint(
            &rendered(&"x".repeat(HTML_WARN + 1), "https://x.example/u/1"),
            "https://x.example/u/1",
        );
        assert!(
            f.errors.is_empty() && f.warnings.iter().any(|w| w.contains("close to Gmail")),
            "{f:?}"
        );
        let f = lint(
            &rendered("<img src=\"a.jpg\"><a href=\"http://x.example/\">x</a>", ""),
            "https://x.example/u/1",
        );
        assert_eq!(f.warnings.len(), 4, "{f:?}");
    }
}
