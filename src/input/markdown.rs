//! Article bodies from Markdown to HTML, safe to put in every reader's mail: raw HTML is
//! shown as text, only web and mail links survive (`javascript:`, `data:`, `vbscript:`,
//! `file:` and relative links are dropped, their text kept), and nesting is bounded so
//! that no later stage can run out of stack on a pathological body. Headings move two
//! levels down: the article's own headline is the `h2` of the message, so a `#` in a body
//! is an `h3` beneath it.

use pulldown_cmark::{Event, HeadingLevel, LinkType, Options, Parser, Tag, TagEnd, html};

/// Deeper nesting (quotes in quotes in lists …) than any article needs; past it the body
/// is refused rather than risk a stack overflow in the HTML stages after this one.
pub const MAX_NESTING: usize = 32;

/// A body rendered to HTML, with the links that were dropped from it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Body {
    pub html: String,
    /// (byte offset in the Markdown, target) of each dropped link or image.
    pub dropped: Vec<(usize, String)>,
}

/// The body is nested deeper than `MAX_NESTING` at this byte offset.
#[derive(Debug, PartialEq, Eq)]
pub struct TooDeep(pub usize);

/// The Markdown extensions articles are written with (tables, ~~strikethrough~~), in the
/// HTML part and the text part alike.
pub fn options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH
}

/// Two levels down, and no lower than `h6`.
fn shifted(level: HeadingLevel) -> HeadingLevel {
    match level {
        HeadingLevel::H1 => HeadingLevel::H3,
        HeadingLevel::H2 => HeadingLevel::H4,
        HeadingLevel::H3 => HeadingLevel::H5,
        _ => HeadingLevel::H6,
    }
}

/// Targets a reader's mail may link to.
fn allowed(url: &str, kind: LinkType) -> bool {
    if kind == LinkType::Email {
        return true; // rendered as mailto:
    }
    let lower = url.trim_start().to_ascii_lowercase();
    ["https://", "http://", "mailto:"]
        .iter()
        .any(|scheme| lower.starts_with(scheme))
}

pub fn to_html(markdown: &str) -> Result<Body, TooDeep> {
    // One parse: the events are checked for depth as they are collected, before anything
    // is built from them.
    let mut depth = 0usize;
    let mut parsed = Vec::new();
    for (event, range) in Parser::new_ext(markdown, options()).into_offset_iter() {
        match event {
            Event::Start(_) => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(TooDeep(range.start));
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
        parsed.push((event, range));
    }
    let mut dropped = Vec::new();
    // For each open link or image: whether it was dropped (its end is dropped too).
    let mut open: Vec<bool> = Vec::new();
    let events = parsed.into_iter().filter_map(|(event, range)| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Some(Event::Text(raw)),
        Event::Start(
            Tag::Link {
                ref dest_url,
                link_type,
                ..
            }
            | Tag::Image {
                ref dest_url,
                link_type,
                ..
            },
        ) => {
            let keep = allowed(dest_url, link_type);
            if !keep {
                dropped.push((range.start, dest_url.to_string()));
            }
            open.push(keep);
            keep.then_some(event)
        }
        Event::End(TagEnd::Link | TagEnd::Image) => open.pop().unwrap_or(true).then_some(event),
        Event::Start(Tag::Heading {
            level,
            id,
            classes,
            attrs,
        }) => Some(Event::Start(Tag::Heading {
            level: shifted(level),
            id,
            classes,
            attrs,
        })),
        Event::End(TagEnd::Heading(level)) => Some(Event::End(TagEnd::Heading(shifted(level)))),
        other => Some(other),
    });
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut out, events);
    Ok(Body { html: out, dropped })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_web_and_mail_links_survive() {
        let body = to_html(
            "[a](javascript:alert(1)) ![i](data:image/png;base64,AA) [v](VBScript:x) \
             [f](file:///etc/passwd) [r](/relative) [ok](https://harbour.example) \
             [m](mailto:desk@harbour.example) <desk@harbour.example>",
        )
        .unwrap();
        for bad in [
            "javascript",
            "data:",
            "vbscript",
            "VBScript",
            "file:",
            "/relative",
        ] {
            assert!(!body.html.contains(bad), "{bad} survived: {}", body.html);
        }
        assert!(body.html.contains("href=\"https://harbour.example\""));
        assert!(body.html.contains("href=\"mailto:desk@harbour.example\""));
        assert_eq!(body.dropped.len(), 5, "{:?}", body.dropped);
        assert_eq!(body.dropped[0], (0, "javascript:alert(1)".to_string()));
        // The text of a dropped link stays.
        assert!(
            body.html.contains(">a ") || body.html.contains("<p>a "),
            "{}",
            body.html
        );
    }

    #[test]
    fn raw_html_is_text() {
        let body = to_html("<script>alert(1)</script>").unwrap();
        assert!(body.html.contains("&lt;script&gt;"), "{}", body.html);
    }

    #[test]
    fn deep_nesting_is_refused() {
        assert!(to_html(&format!("{} x", ">".repeat(MAX_NESTING - 2))).is_ok());
        assert!(matches!(
            to_html(&format!("{} x", ">".repeat(20_000))),
            Err(TooDeep(_))
        ));
    }

    #[test]
    fn headings_sit_below_the_headline_and_tables_are_tables() {
        let body =
            to_html("# One\n\n## Two\n\n#### Four\n\n| a | b |\n| - | - |\n| 1 | 2 |\n").unwrap();
        assert!(body.html.contains("<h3>One</h3>"), "{}", body.html);
        assert!(body.html.contains("<h4>Two</h4>"), "{}", body.html);
        assert!(body.html.contains("<h6>Four</h6>"), "{}", body.html);
        assert!(
            body.html.contains("<table>") && body.html.contains("<td>1</td>"),
            "{}",
            body.html
        );
    }
}
