//! The plain-text part, written for people: Markdown rendered to text (headings
//! underlined, lists and quotes indented, emphasis as `*…*`, tables as lists, links as
//! numbered references listed after the article) and every line wrapped at `WIDTH`
//! display columns, where a CJK character counts two and a URL is never broken.

use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// Columns of a line of the text part (RFC 3676 suggests at most 78; 72 leaves room for
/// the `> ` of a reply).
pub(crate) const WIDTH: usize = 72;

/// Wraps each line of `text` at `width` columns, keeping its leading indentation (and a
/// list marker's hanging indent).
pub(crate) fn wrap_text(text: &str, width: usize) -> String {
    let mut out = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let marker = list_marker(trimmed);
        let hanging = format!("{indent}{}", " ".repeat(marker.width()));
        let first = format!("{indent}{marker}");
        out.extend(wrap(&trimmed[marker.len()..], width, &first, &hanging));
    }
    out.join("\n")
}

/// `- `, `* ` or `12. ` at the start of a line.
fn list_marker(line: &str) -> &str {
    if line.starts_with("- ") || line.starts_with("* ") {
        return &line[..2];
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && line[digits..].starts_with(". ") {
        return &line[..digits + 2];
    }
    ""
}

/// One unit of a line: a word, or one wide character (CJK text breaks between characters),
/// and whether a space comes before it.
struct Piece<'a> {
    text: &'a str,
    space_before: bool,
}

fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let mut space_before = true;
        let mut start = 0;
        for (i, c) in word.char_indices() {
            if c.width().unwrap_or(0) == 2 {
                if start < i {
                    out.push(Piece {
                        text: &word[start..i],
                        space_before,
                    });
                    space_before = false;
                }
                let end = i + c.len_utf8();
                out.push(Piece {
                    text: &word[i..end],
                    space_before,
                });
                space_before = false;
                start = end;
            }
        }
        if start < word.len() {
            out.push(Piece {
                text: &word[start..],
                space_before,
            });
        }
    }
    out
}

fn is_url(word: &str) -> bool {
    let w = word.trim_start_matches(['(', '<', '"']);
    w.starts_with("https://") || w.starts_with("http://") || w.starts_with("mailto:")
}

/// Greedy wrapping: as many pieces on a line as fit. A URL longer than the line stands on
/// a line of its own, whole; another word that long is cut at the width.
pub(crate) fn wrap(text: &str, width: usize, first: &str, rest: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = first.to_string();
    // The line's width so far, kept as it grows (measuring the whole line again for
    // every word made wrapping most of the cost of the text part).
    let mut line_width = first.width();
    let mut prefix_width = line_width;
    let rest_width = rest.width();
    let mut empty = true;
    for piece in pieces(text) {
        let piece_width = piece.text.width();
        let gap = usize::from(piece.space_before && !empty);
        let fits = line_width + gap + piece_width <= width;
        if !fits && !empty {
            lines.push(line.trim_end().to_string());
            line = rest.to_string();
            line_width = rest_width;
            prefix_width = rest_width;
            empty = true;
        }
        if !empty && piece.space_before {
            line.push(' ');
            line_width += 1;
        }
        if prefix_width + piece_width > width && !is_url(piece.text) {
            // A word wider than the line: cut it, character by character.
            for c in piece.text.chars() {
                let w = c.width().unwrap_or(0);
                if line_width + w > width && line_width > prefix_width {
                    lines.push(line);
                    line = rest.to_string();
                    line_width = rest_width;
                }
                line.push(c);
                line_width += w;
            }
        } else {
            line.push_str(piece.text);
            line_width += piece_width;
        }
        empty = false;
    }
    if !empty || lines.is_empty() {
        lines.push(line.trim_end().to_string());
    }
    lines
}

/// The open blocks that prefix each line: quotes and list items.
enum Frame {
    Quote,
    List(Option<u64>),
    Item { marker: String, first: bool },
}

#[derive(Default)]
struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
    in_head: bool,
}

#[derive(Default)]
struct Writer {
    out: Vec<String>,
    frames: Vec<Frame>,
    inline: String,
    /// The targets of links, numbered in order; the same target keeps its number.
    refs: Vec<String>,
    /// Open links and images: their target, and where their text starts in `inline`.
    links: Vec<(String, usize)>,
    code: Option<String>,
    table: Option<Table>,
}

impl Writer {
    /// The prefixes of the next line: the first line of an item shows its marker.
    fn prefixes(&mut self) -> (String, String) {
        let (mut first, mut rest) = (String::new(), String::new());
        for frame in &mut self.frames {
            match frame {
                Frame::Quote => {
                    first.push_str("> ");
                    rest.push_str("> ");
                }
                Frame::List(_) => {}
                Frame::Item { marker, first: f } => {
                    if *f {
                        first.push_str(marker);
                        *f = false;
                    } else {
                        first.push_str(&" ".repeat(marker.width()));
                    }
                    rest.push_str(&" ".repeat(marker.width()));
                }
            }
        }
        (first, rest)
    }

    fn in_item(&self) -> bool {
        self.frames.iter().any(|f| matches!(f, Frame::Item { .. }))
    }

    /// A blank line (inside a quote, a bare `>`), unless the last line is one already.
    fn blank(&mut self) {
        if self.out.last().is_some_and(|l| !l.trim().is_empty()) {
            let quotes = self
                .frames
                .iter()
                .filter(|f| matches!(f, Frame::Quote))
                .count();
            self.out.push("> ".repeat(quotes).trim_end().to_string());
        }
    }

    /// Ends a paragraph (or an item's text): wraps what was written.
    fn flush(&mut self) {
        let text = std::mem::take(&mut self.inline);
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        for part in text.split('\n') {
            let (first, rest) = self.prefixes();
            self.out.extend(wrap(part.trim(), WIDTH, &first, &rest));
        }
    }

    fn text(&mut self, t: &str) {
        if let Some(code) = &mut self.code {
            code.push_str(t);
        } else if let Some(table) = &mut self.table {
            let cell = if table.in_head {
                table.head.last_mut()
            } else {
                table.rows.last_mut().and_then(|r| r.last_mut())
            };
            if let Some(cell) = cell {
                cell.push_str(t);
            }
        } else {
            self.inline.push_str(t);
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Heading { .. } | Tag::CodeBlock(_) | Tag::BlockQuote(_) | Tag::Table(_) => {
                self.flush();
                self.blank();
                match tag {
                    Tag::CodeBlock(_) => self.code = Some(String::new()),
                    Tag::BlockQuote(_) => self.frames.push(Frame::Quote),
                    Tag::Table(_) => self.table = Some(Table::default()),
                    _ => {}
                }
            }
            Tag::List(start) => {
                self.flush();
                if !self.in_item() {
                    self.blank();
                }
                self.frames.push(Frame::List(start));
            }
            Tag::Item => {
                self.flush();
                let marker = match self.frames.last_mut() {
                    Some(Frame::List(Some(n))) => {
                        let m = format!("{n}. ");
                        *n += 1;
                        m
                    }
                    _ => "- ".to_string(),
                };
                self.frames.push(Frame::Item {
                    marker,
                    first: true,
                });
            }
            Tag::Emphasis | Tag::Strong => self.text("*"),
            Tag::Strikethrough => self.text("~"),
            Tag::Link { dest_url, .. } => {
                let at = self.inline.len();
                self.links.push((dest_url.to_string(), at));
            }
            Tag::Image { dest_url, .. } => {
                self.text("[image: ");
                self.links.push((dest_url.to_string(), usize::MAX));
            }
            Tag::TableHead => {
                if let Some(t) = &mut self.table {
                    t.in_head = true;
                }
            }
            Tag::TableRow => {
                if let Some(t) = &mut self.table {
                    t.rows.push(Vec::new());
                }
            }
            Tag::TableCell => {
                if let Some(t) = &mut self.table {
                    if t.in_head {
                        t.head.push(String::new());
                    } else if let Some(r) = t.rows.last_mut() {
                        r.push(String::new());
                    }
                }
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph => {
                let in_item = matches!(self.frames.last(), Some(Frame::Item { .. }));
                self.flush();
                if !in_item {
                    self.blank_after();
                }
            }
            TagEnd::Heading(level) => self.heading(level),
            TagEnd::BlockQuote(_) => {
                self.flush();
                // The quote's last paragraph left a bare `>` line: the quote ends there.
                if self
                    .out
                    .last()
                    .is_some_and(|l| !l.is_empty() && l.chars().all(|c| c == '>' || c == ' '))
                {
                    self.out.pop();
                }
                self.frames.pop();
                self.blank_after();
            }
            TagEnd::CodeBlock => {
                let code = self.code.take().unwrap_or_default();
                let (_, rest) = self.prefixes();
                let indent = format!("{rest}    ");
                for line in code.trim_end_matches('\n').lines() {
                    self.out.extend(wrap(line, WIDTH, &indent, &indent));
                }
                self.blank_after();
            }
            TagEnd::List(_) => {
                self.flush();
                self.frames.pop();
                if !self.in_item() {
                    self.blank_after();
                }
            }
            TagEnd::Item => {
                self.flush();
                self.frames.pop();
            }
            TagEnd::Emphasis | TagEnd::Strong => self.text("*"),
            TagEnd::Strikethrough => self.text("~"),
            TagEnd::Link => {
                if let Some((url, at)) = self.links.pop() {
                    let shown = self.inline.get(at..).unwrap_or("").trim().to_string();
                    let bare = url.strip_prefix("mailto:").unwrap_or(&url);
                    // An autolink shows its own target: no reference needed.
                    if shown != url && shown != bare {
                        let n = self.reference(url);
                        self.text(&format!(" [{n}]"));
                    }
                }
            }
            TagEnd::Image => {
                if let Some((url, _)) = self.links.pop() {
                    let n = self.reference(url);
                    self.text(&format!("] [{n}]"));
                }
            }
            TagEnd::TableHead => {
                if let Some(t) = &mut self.table {
                    t.in_head = false;
                }
            }
            TagEnd::Table => {
                if let Some(table) = self.table.take() {
                    self.table_as_list(&table);
                }
            }
            _ => {}
        }
    }

    /// A heading, underlined: `=` under a first-level one, `-` under the others.
    fn heading(&mut self, level: HeadingLevel) {
        let title = std::mem::take(&mut self.inline).trim().to_string();
        let (first, rest) = self.prefixes();
        let lines = wrap(&title, WIDTH, &first, &rest);
        let underline = lines
            .iter()
            .map(|l| l.width().saturating_sub(first.width()))
            .max()
            .unwrap_or(0)
            .max(3);
        self.out.extend(lines);
        let mark = if level == HeadingLevel::H1 { "=" } else { "-" };
        self.out.push(format!("{first}{}", mark.repeat(underline)));
        self.blank_after();
    }

    fn blank_after(&mut self) {
        if self.frames.is_empty() {
            self.out.push(String::new());
        } else {
            self.blank();
        }
    }

    fn reference(&mut self, url: String) -> usize {
        if let Some(i) = self.refs.iter().position(|r| *r == url) {
            return i + 1;
        }
        self.refs.push(url);
        self.refs.len()
    }

    /// A table as a list: one item per row, each cell named by its column's header.
    fn table_as_list(&mut self, table: &Table) {
        for row in &table.rows {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, cell)| match table.head.get(i).map(|h| h.trim()) {
                    Some(h) if !h.is_empty() => format!("{h}: {}", cell.trim()),
                    _ => cell.trim().to_string(),
                })
                .collect();
            let (first, rest) = self.prefixes();
            self.out.extend(wrap(
                &cells.join("; "),
                WIDTH,
                &format!("{first}- "),
                &format!("{rest}  "),
            ));
        }
        self.blank_after();
    }
}

/// An article body in Markdown, as text for the plain part, with its links listed at the
/// end as `[n] URL`.
pub(crate) fn markdown_to_text(markdown: &str) -> String {
    let mut w = Writer::default();
    for event in Parser::new_ext(markdown, crate::input::markdown::options()) {
        match event {
            Event::Start(tag) => w.start(tag),
            Event::End(tag) => w.end(tag),
            Event::Text(t) | Event::Code(t) | Event::Html(t) | Event::InlineHtml(t) => w.text(&t),
            Event::SoftBreak => w.text(" "),
            Event::HardBreak => w.text("\n"),
            Event::Rule => {
                w.flush();
                w.out.push("-".repeat(20));
                w.blank_after();
            }
            _ => {}
        }
    }
    w.flush();
    while w.out.last().is_some_and(|l| l.trim().is_empty()) {
        w.out.pop();
    }
    if !w.refs.is_empty() {
        w.out.push(String::new());
        for (i, url) in w.refs.iter().enumerate() {
            w.out.push(format!("[{}] {url}", i + 1));
        }
    }
    w.out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widest(text: &str) -> usize {
        text.lines().map(UnicodeWidthStr::width).max().unwrap_or(0)
    }

    #[test]
    fn markdown_becomes_text_with_numbered_links() {
        let text = markdown_to_text(
            "## The quay\n\nThe **council** met on *Tuesday*; see [the minutes](https://harbour.example/minutes) \
             and [the budget](https://harbour.example/budget), or <https://harbour.example/raw>.\n\n\
             - one\n- two, with [the minutes](https://harbour.example/minutes) again\n\n\
             1. first\n2. second\n\n> A quote that is long enough to wrap onto a second line when it is laid out at seventy-two columns.\n\n\
             | Ferry | Leaves |\n| --- | --- |\n| Island | 07:10 |\n| Mainland | 08:40 |\n",
        );
        assert_eq!(
            text,
            "The quay\n\
             --------\n\
             \n\
             The *council* met on *Tuesday*; see the minutes [1] and the budget [2],\n\
             or https://harbour.example/raw.\n\
             \n\
             - one\n\
             - two, with the minutes [1] again\n\
             \n\
             1. first\n\
             2. second\n\
             \n\
             > A quote that is long enough to wrap onto a second line when it is laid\n\
             > out at seventy-two columns.\n\
             \n\
             - Ferry: Island; Leaves: 07:10\n\
             - Ferry: Mainland; Leaves: 08:40\n\
             \n\
             [1] https://harbour.example/minutes\n\
             [2] https://harbour.example/budget"
        );
    }

    #[test]
    fn cjk_wraps_by_display_width_and_urls_stay_whole() {
        let cjk = "港口の新しいフェリーは毎朝七時に出発します。".repeat(6);
        let text = markdown_to_text(&cjk);
        assert!(widest(&text) <= WIDTH, "{text}");
        assert_eq!(text.replace('\n', ""), cjk);
        let url = format!("https://harbour.example/{}", "a".repeat(120));
        let text = markdown_to_text(&format!("Read it at {url} today."));
        assert!(text.lines().any(|l| l == url), "{text}");
        let word = "x".repeat(150);
        assert!(widest(&markdown_to_text(&word)) <= WIDTH);
    }

    #[test]
    fn lines_are_wrapped_with_their_indentation() {
        let long = "word ".repeat(40);
        let wrapped = wrap_text(&format!("  - {long}\nshort"), 30);
        assert!(widest(&wrapped) <= 30, "{wrapped}");
        assert!(wrapped.starts_with("  - word"));
        assert!(wrapped.lines().nth(1).unwrap().starts_with("    word"));
        assert!(wrapped.ends_with("\nshort"));
    }
}
