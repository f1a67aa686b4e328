//! Article files: TOML front matter between `+++` lines, then a Markdown body. Each file is
//! checked on its own so that one run reports every broken article with its line.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::Deserialize;
use toml::Spanned;
use toml::value::Datetime;

use crate::problems::{Problem, Problems, from_toml_error};

#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct Article {
    /// The file name without `.md`: stable, and what an edition records.
    pub id: String,
    pub path: PathBuf,
    pub title: String,
    pub date: NaiveDate,
    pub link: String,
    pub summary: String,
    pub selected: bool,
    pub author: Option<String>,
    pub tags: Vec<String>,
    pub image: Option<Image>,
    /// The inbox preview line of an edition this article is in (the first one set wins).
    #[serde(default)]
    pub preheader: Option<String>,
    /// The Markdown body, which is also the plain-text rendering.
    pub body_markdown: String,
    /// The body as HTML; raw HTML in the Markdown is escaped, not passed through.
    pub body_html: String,
    /// Where it came from: `articles` (the Markdown folder) or a feed source's name.
    #[serde(default)]
    pub source: String,
    /// A feed item's GUID (or link), which finds the same item in another feed.
    #[serde(default)]
    pub guid: Option<String>,
    /// A feed item without a date, counted as published on the day it was read.
    #[serde(default)]
    pub undated: bool,
    /// Warnings about the file (links dropped from the body), with its path and line.
    #[serde(skip)]
    pub notes: Vec<String>,
}

/// The `source` of articles from the Markdown folder.
pub const MARKDOWN_SOURCE: &str = "articles";

#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub url: String,
    pub alt: String,
    pub caption: Option<String>,
    pub credit: Option<String>,
    #[serde(default = "default_image_width")]
    pub width: u32,
}

/// Wider than any mail client shows.
const MAX_IMAGE_WIDTH: u32 = 2000;

fn default_image_width() -> u32 {
    600
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    title: Spanned<String>,
    date: Spanned<Datetime>,
    link: Spanned<String>,
    summary: Spanned<String>,
    #[serde(default)]
    selected: bool,
    author: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    image: Option<Spanned<Image>>,
    preheader: Option<Spanned<String>>,
}

const FENCE: &str = "+++";

/// Every `*.md` file in `dir`, sorted by file name.
pub fn load_dir(dir: &Path) -> Result<Vec<Article>, Problems> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Problem::new(dir, format!("cannot read the articles folder: {e}")))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md") && p.is_file())
        .collect();
    paths.sort();
    load_files(&paths)
}

/// The named files, in the order given; a missing file is a problem like any other.
pub fn load_files(paths: &[PathBuf]) -> Result<Vec<Article>, Problems> {
    let mut problems = Problems::default();
    let mut articles = Vec::new();
    for path in paths {
        let parsed = std::fs::read_to_string(path)
            .map_err(|e| {
                Problems::from(Problem::new(path, format!("cannot read the article: {e}")))
            })
            .and_then(|text| parse(&text, path));
        match parsed {
            Ok(a) => articles.push(a),
            Err(p) => problems.extend(p),
        }
    }
    problems.into_result(articles)
}

/// Parses one article file's text.
pub fn parse(text: &str, path: &Path) -> Result<Article, Problems> {
    let (front, body, first_line) = split_front_matter(text)
        .ok_or_else(|| Problem::new(path, "no front matter: the file must start with a `+++` line, the article's TOML fields, and another `+++` line").at_line(1))?;
    let fm: FrontMatter =
        toml::from_str(front).map_err(|e| from_toml_error(path, front, first_line, &e))?;

    let mut problems = Problems::default();
    let at = |field: &str, span: std::ops::Range<usize>, message: String| {
        Problem::new(path, message)
            .at_offset(front, span.start)
            .field(field)
            .shift(first_line)
    };
    let title = fm.title.get_ref().trim();
    if title.is_empty() || title.chars().any(char::is_control) {
        problems.push(at(
            "title",
            fm.title.span(),
            "must be a non-empty single line".into(),
        ));
    }
    let date = fm.date.get_ref().date.and_then(|d| {
        NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
    });
    if date.is_none() {
        problems.push(at(
            "date",
            fm.date.span(),
            "must be a date such as 2026-11-20".into(),
        ));
    }
    if let Err(e) = check_link(fm.link.get_ref()) {
        problems.push(at("link", fm.link.span(), e));
    }
    if fm.summary.get_ref().trim().is_empty() {
        problems.push(at("summary", fm.summary.span(), "must not be empty".into()));
    }
    if let Some(p) = &fm.preheader
        && (p.get_ref().chars().any(char::is_control) || p.get_ref().chars().count() > 200)
    {
        problems.push(at(
            "preheader",
            p.span(),
            "must be one line of at most 200 characters".into(),
        ));
    }
    if let Some(image) = &fm.image {
        if let Err(e) = check_link(&image.get_ref().url) {
            problems.push(at("image.url", image.span(), e));
        }
        if !(1..=MAX_IMAGE_WIDTH).contains(&image.get_ref().width) {
            problems.push(at(
                "image.width",
                image.span(),
                format!("must be between 1 and {MAX_IMAGE_WIDTH} pixels"),
            ));
        }
        if image.get_ref().alt.trim().is_empty() {
            problems.push(at(
                "image.alt",
                image.span(),
                "describe the picture for readers who cannot see it".into(),
            ));
        }
    }
    let body_line = crate::problems::line_of(text, text.len() - body.len());
    let rendered = crate::input::markdown::to_html(body)
        .map_err(|deep| {
            problems.push(
                Problem::new(
                    path,
                    format!(
                        "the body is nested more than {} levels deep (quotes, lists); flatten it",
                        crate::input::markdown::MAX_NESTING
                    ),
                )
                .at_line(body_line + crate::problems::line_of(body, deep.0) - 1),
            );
        })
        .ok();
    let (Some(date), Some(rendered), true) = (date, rendered, problems.is_empty()) else {
        return Err(problems);
    };
    let notes = rendered
        .dropped
        .iter()
        .map(|(offset, url)| {
            format!(
                "{}:{}: the link to {url:?} was dropped: only https, http and mailto links are kept",
                path.display(),
                body_line + crate::problems::line_of(body, *offset) - 1
            )
        })
        .collect();
    let id = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Article {
        id,
        path: path.to_path_buf(),
        title: title.to_string(),
        date,
        link: fm.link.into_inner(),
        summary: fm.summary.into_inner().trim().to_string(),
        selected: fm.selected,
        author: fm.author,
        tags: fm.tags,
        image: fm.image.map(Spanned::into_inner),
        preheader: fm
            .preheader
            .map(|p| p.into_inner().trim().to_string())
            .filter(|p| !p.is_empty()),
        body_html: rendered.html,
        body_markdown: body.trim().to_string(),
        source: MARKDOWN_SOURCE.to_string(),
        guid: None,
        undated: false,
        notes,
    })
}

/// Splits `+++\nfront\n+++\nbody`; returns the front matter, the body and the number of
/// lines before the front matter's first line.
fn split_front_matter(text: &str) -> Option<(&str, &str, usize)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rest = text.strip_prefix(FENCE)?.trim_start_matches([' ', '\t']);
    let rest = rest
        .strip_prefix("\r\n")
        .or_else(|| rest.strip_prefix('\n'))?;
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == FENCE {
            return Some((&rest[..offset], &rest[offset + line.len()..], 1));
        }
        offset += line.len();
    }
    None
}

fn check_link(url: &str) -> Result<(), String> {
    let ok_scheme = url.starts_with("https://") || url.starts_with("http://");
    if !ok_scheme
        || url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"')
    {
        return Err(format!("{url:?} is not a web address (https://…)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "+++\ntitle = \"Ferry timetable changes\"\ndate = 2026-11-20\nlink = \"https://harbour.example/ferry\"\nsummary = \"Winter sailings start Monday.\"\nselected = true\n\n[image]\nurl = \"https://harbour.example/ferry.jpg\"\nalt = \"The morning ferry\"\ncaption = \"The 7:10 leaves the quay.\"\n+++\nThe **winter** timetable.\n\n<script>alert(1)</script>\n";

    #[test]
    fn an_article_parses_with_its_body() {
        let a = parse(GOOD, Path::new("articles/ferry.md")).unwrap();
        assert_eq!(a.id, "ferry");
        assert_eq!(a.date, NaiveDate::from_ymd_opt(2026, 11, 20).unwrap());
        assert!(a.selected);
        assert_eq!(a.image.as_ref().unwrap().width, 600);
        assert!(a.body_html.contains("<strong>winter</strong>"));
        assert!(!a.body_html.contains("<script>"), "{}", a.body_html);
        assert!(a.body_html.contains("&lt;script&gt;"), "{}", a.body_html);
    }

    #[test]
    fn a_missing_title_names_the_file() {
        let text = GOOD.replace("title = \"Ferry timetable changes\"\n", "");
        let err = parse(&text, Path::new("articles/ferry.md")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("articles/ferry.md"), "{text}");
        assert!(text.contains("missing field `title`"), "{text}");
    }

    #[test]
    fn a_bad_date_names_the_line_of_the_file() {
        let text = GOOD.replace("date = 2026-11-20", "date = \"last week\"");
        let err = parse(&text, Path::new("a.md")).unwrap_err();
        assert_eq!(err.0[0].line, Some(3), "{err}");
    }

    #[test]
    fn a_bad_link_names_its_field_and_line() {
        let text = GOOD.replace("https://harbour.example/ferry\"", "javascript:alert(1)\"");
        let err = parse(&text, Path::new("a.md")).unwrap_err();
        assert_eq!(
            (err.0[0].line, err.0[0].field.as_deref()),
            (Some(4), Some("link")),
            "{err}"
        );
    }

    #[test]
    fn a_file_without_front_matter_is_refused() {
        assert!(parse("# just markdown\n", Path::new("a.md")).is_err());
        assert!(parse("+++\ntitle = \"x\"\n", Path::new("a.md")).is_err());
    }
}
