//! Renders one recipient's subject, HTML and text from the templates. Everything that is the
//! same for every recipient goes into the base context once per edition.

use std::sync::OnceLock;

use css_inline::CSSInliner;
use serde::Serialize;
use tera::Context;

use crate::config::Config;
use crate::edition::Edition;
use crate::input::address::EmailAddress;
use crate::input::subscribers::Subscriber;
use crate::problems::Problem;
use crate::render::templates::{self, Templates};
use crate::token::Signer;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
}

pub struct Composer<'a> {
    templates: &'a Templates,
    base: Context,
    signer: &'a Signer,
    list_id: String,
    unsubscribe_url: String,
    /// The preference page's URL with `{token}`, when the list has one.
    manage_url: Option<String>,
    greeting_fallback: String,
    /// The edition rendered once per shape of recipient (without and with a name), with
    /// markers where each recipient's own values go, on first need: a list whose readers
    /// all have names never renders the other shape. `None`: that shape is rendered per
    /// recipient (templates that transform recipient values, or that fail to render).
    prepared: [OnceLock<Option<Prepared>>; 2],
    inliner: CSSInliner<'static>,
}

/// The per-recipient values, as they appear in the templates' context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Email,
    Name,
    Greeting,
    Unsubscribe,
    Manage,
}

const FIELDS: [Field; 5] = [
    Field::Email,
    Field::Name,
    Field::Greeting,
    Field::Unsubscribe,
    Field::Manage,
];

/// Markers of private-use characters: HTML escaping leaves them alone and no real text
/// contains them. Two sets with different letters prove that a template only places the
/// values (and does not upper-case, truncate or test them).
fn marker(field: Field, set: char) -> String {
    let name = match field {
        Field::Email => "email",
        Field::Name => "name",
        Field::Greeting => "greeting",
        Field::Unsubscribe => "unsubscribe",
        Field::Manage => "manage",
    };
    format!("\u{e000}{set}{name}\u{e001}")
}

struct Values<'a> {
    email: &'a str,
    name: Option<&'a str>,
    greeting: &'a str,
    unsubscribe: String,
    manage: String,
}

impl Values<'_> {
    fn get(&self, field: Field) -> &str {
        match field {
            Field::Email => self.email,
            Field::Name => self.name.unwrap_or_default(),
            Field::Greeting => self.greeting,
            Field::Unsubscribe => &self.unsubscribe,
            Field::Manage => &self.manage,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Value(Field),
}

#[derive(Debug, Clone)]
struct Prepared {
    subject: Vec<Piece>,
    html: Vec<Piece>,
    text: Vec<Piece>,
    /// The same pieces with the text already quoted-printable encoded: the costly part of
    /// building a message, done once per edition instead of once per recipient.
    html_qp: Vec<Piece>,
    text_qp: Vec<Piece>,
}

/// One recipient's message parts, ready for MIME: the subject, and the text and HTML
/// bodies encoded as quoted-printable with CRLF line ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub subject: String,
    /// The recipient's own unsubscribe link, for the List-Unsubscribe header.
    pub unsubscribe_url: String,
    pub text: Vec<u8>,
    pub html: Vec<u8>,
}

/// Quoted-printable of `text` with its line ends made CRLF (RFC 2045).
pub(crate) fn quoted_printable(text: &str) -> Vec<u8> {
    let crlf = if text.contains('\n') {
        let mut s = String::with_capacity(text.len() + text.len() / 32);
        for (i, line) in text.split('\n').enumerate() {
            if i > 0 {
                s.push_str("\r\n");
            }
            s.push_str(line.strip_suffix('\r').unwrap_or(line));
        }
        std::borrow::Cow::Owned(s)
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    quoted_printable::encode(crlf.as_bytes())
}

fn encode_pieces(pieces: &[Piece]) -> Vec<Piece> {
    pieces
        .iter()
        .map(|p| match p {
            // Encoded output is ASCII, so it fits a String.
            Piece::Text(t) => {
                Piece::Text(String::from_utf8_lossy(&quoted_printable(t)).into_owned())
            }
            Piece::Value(f) => Piece::Value(*f),
        })
        .collect()
}

/// Joins encoded pieces with soft line breaks (`=` CRLF, which decoders remove), so that
/// no line grows past 76 characters where a value is put in.
fn assemble_qp(pieces: &[Piece], value: impl Fn(Field) -> String, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 && !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"=\r\n");
        }
        match piece {
            Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
            Piece::Value(f) => out.extend_from_slice(&quoted_printable(&value(*f))),
        }
    }
    out
}

/// Where each marker of `set` is in `rendered`: its start, its end and its field, in one
/// pass (the markers are unlike any text: each begins with the same private-use character).
fn markers(rendered: &str, set: char) -> impl Iterator<Item = (usize, usize, Field)> + '_ {
    let all = FIELDS.map(|f| (marker(f, set), f));
    rendered
        .match_indices('\u{e000}')
        .filter_map(move |(at, _)| {
            all.iter()
                .find(|(m, _)| rendered[at..].starts_with(m.as_str()))
                .map(|(m, f)| (at, at + m.len(), *f))
        })
}

/// How many times each field's marker of `set` appears, in `FIELDS` order.
fn marker_counts(rendered: &str, set: char) -> [usize; FIELDS.len()] {
    let mut counts = [0; FIELDS.len()];
    for (_, _, f) in markers(rendered, set) {
        if let Some(i) = FIELDS.iter().position(|x| *x == f) {
            counts[i] += 1;
        }
    }
    counts
}

fn split(rendered: &str, set: char) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut from = 0;
    for (start, end, field) in markers(rendered, set) {
        if start > from {
            pieces.push(Piece::Text(rendered[from..start].to_string()));
        }
        pieces.push(Piece::Value(field));
        from = end;
    }
    if from < rendered.len() || pieces.is_empty() {
        pieces.push(Piece::Text(rendered[from..].to_string()));
    }
    pieces
}

fn assemble(pieces: &[Piece], value: impl Fn(Field) -> String, capacity: usize) -> String {
    let mut out = String::with_capacity(capacity);
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Value(f) => out.push_str(&value(*f)),
        }
    }
    out
}

#[derive(Serialize)]
struct NewsletterView<'a> {
    name: &'a str,
    contact: &'a str,
    website: Option<&'a str>,
    list_id: &'a str,
    postal_address: Option<&'a str>,
    reason: Option<&'a str>,
}

#[derive(Serialize)]
struct EditionView<'a> {
    id: &'a str,
    date: String,
    date_iso: String,
}

#[derive(Serialize)]
struct ArticleView<'a> {
    id: &'a str,
    title: &'a str,
    date: String,
    date_iso: String,
    link: &'a str,
    summary: &'a str,
    author: Option<&'a str>,
    tags: &'a [String],
    image: Option<&'a crate::input::articles::Image>,
    body_html: &'a str,
    /// The body for the plain part: Markdown rendered to wrapped text, links listed.
    body_text: String,
}

#[derive(Serialize)]
struct SubscriberView<'a> {
    email: &'a str,
    name: Option<&'a str>,
    /// The name, or the configured fallback ("reader") when there is none.
    greeting: &'a str,
}

impl<'a> Composer<'a> {
    pub fn new(
        config: &Config,
        edition: &Edition,
        templates: &'a Templates,
        signer: &'a Signer,
    ) -> Self {
        let n = &config.newsletter;
        let locale = templates.locale();
        let mut base = Context::new();
        base.insert("lang", &locale.tag);
        base.insert("t", &locale.strings);
        base.insert(
            "newsletter",
            &NewsletterView {
                name: &n.name,
                contact: n.contact.as_str(),
                website: n.website.as_deref(),
                list_id: &n.list_id,
                postal_address: n.postal_address.as_deref(),
                reason: n.reason.as_deref(),
            },
        );
        // The inbox's preview line: the edition's own (an article's `preheader`), else the
        // configured one, else the lead article's summary.
        let preheader = edition
            .articles
            .iter()
            .find_map(|a| a.preheader.as_deref())
            .or(n.preheader.as_deref())
            .or_else(|| edition.articles.first().map(|a| a.summary.as_str()))
            .unwrap_or("");
        base.insert("preheader", preheader);
        // The edition's page in the web archive, when it has one; `web` is true only on
        // that page, which carries nothing about any reader.
        let archive_url = config
            .archive
            .as_ref()
            .and_then(|a| a.page_url(&edition.id));
        base.insert("archive_url", &archive_url);
        base.insert("web", &false);
        base.insert(
            "edition",
            &EditionView {
                id: &edition.id,
                date: locale.date(edition.date),
                date_iso: edition.date.to_string(),
            },
        );
        let articles: Vec<ArticleView<'_>> = edition
            .articles
            .iter()
            .map(|a| ArticleView {
                id: &a.id,
                title: &a.title,
                date: locale.date(a.date),
                date_iso: a.date.to_string(),
                link: &a.link,
                summary: &a.summary,
                author: a.author.as_deref(),
                tags: &a.tags,
                image: a.image.as_ref(),
                body_html: &a.body_html,
                body_text: crate::render::plain::markdown_to_text(&a.body_markdown),
            })
            .collect();
        base.insert("articles", &articles);
        Composer {
            templates,
            base,
            signer,
            list_id: n.list_id.clone(),
            unsubscribe_url: config.unsubscribe.url.clone(),
            manage_url: config.unsubscribe.manage_url.clone(),
            greeting_fallback: n
                .greeting_fallback
                .clone()
                .unwrap_or_else(|| locale.get("reader").to_string()),
            prepared: [OnceLock::new(), OnceLock::new()],
            inliner: CSSInliner::options()
                .load_remote_stylesheets(false)
                // @media rules (narrow screens, dark mode) cannot be inlined: they stay in a
                // <style> block for the clients that read one.
                .keep_at_rules(true)
                .build(),
        }
    }

    /// The edition prepared for recipients with a name or without, made on first need.
    fn prepared(&self, with_name: bool) -> Option<&Prepared> {
        self.prepared[usize::from(with_name)]
            .get_or_init(|| self.prepare(with_name))
            .as_ref()
    }

    /// The language the edition is written in.
    pub fn locale(&self) -> &crate::locale::Locale {
        self.templates.locale()
    }

    /// This subscriber's own preference page, when the list has one.
    pub fn manage_url(&self, email: &EmailAddress) -> String {
        self.manage_url.as_ref().map_or_else(String::new, |url| {
            url.replace("{token}", &self.signer.manage_token(&self.list_id, email))
        })
    }

    /// This subscriber's own unsubscribe link.
    pub fn unsubscribe_url(&self, email: &EmailAddress) -> String {
        self.unsubscribe_url.replace(
            "{token}",
            &self.signer.unsubscribe_token(&self.list_id, email),
        )
    }

    fn context(
        &self,
        email: &str,
        name: Option<&str>,
        greeting: &str,
        unsubscribe: &str,
        manage: &str,
    ) -> Context {
        let mut ctx = self.base.clone();
        ctx.insert(
            "subscriber",
            &SubscriberView {
                email,
                name,
                greeting,
            },
        );
        ctx.insert("unsubscribe_url", unsubscribe);
        ctx.insert("manage_url", manage);
        ctx
    }

    /// The edition's web page: the HTML template with no reader in it (no name, address or
    /// unsubscribe link; `web` is true), CSS inlined; and its subject, as a title.
    pub fn web_page(&self) -> Result<(String, String), Problem> {
        let mut ctx = self.context("", None, &self.greeting_fallback, "", "");
        ctx.insert("web", &true);
        let rendered = self.render_context(&ctx)?;
        Ok((rendered.subject, rendered.html))
    }

    /// Renders the three templates for one context; the HTML gets its CSS inlined.
    fn render_context(&self, ctx: &Context) -> Result<Rendered, Problem> {
        let raw = self.render_raw(ctx)?;
        Ok(Rendered {
            html: self.inline(&raw.html)?,
            ..raw
        })
    }

    /// The three templates rendered, the HTML's CSS not inlined yet.
    fn render_raw(&self, ctx: &Context) -> Result<Rendered, Problem> {
        Ok(Rendered {
            subject: self.templates.render(templates::SUBJECT, ctx)?,
            html: self.templates.render(templates::HTML, ctx)?,
            text: self.templates.render(templates::TEXT, ctx)?,
        })
    }

    fn inline(&self, html: &str) -> Result<String, Problem> {
        self.inliner.inline(html).map_err(|e| {
            Problem::new(
                std::path::Path::new(templates::HTML),
                format!("cannot inline its CSS: {e}"),
            )
        })
    }

    fn render_with_markers(&self, with_name: bool, set: char) -> Option<Rendered> {
        let m = |f| marker(f, set);
        let name = with_name.then(|| m(Field::Name));
        let greeting = if with_name {
            m(Field::Name)
        } else {
            m(Field::Greeting)
        };
        let ctx = self.context(
            &m(Field::Email),
            name.as_deref(),
            &greeting,
            &m(Field::Unsubscribe),
            &if self.manage_url.is_some() {
                m(Field::Manage)
            } else {
                String::new()
            },
        );
        self.render_raw(&ctx).ok()
    }

    /// Renders the edition once for one shape of recipient. Refuses (`None`) unless the
    /// output with a second set of markers is the first with the markers swapped: then
    /// every recipient's message is this one with their values put in.
    ///
    /// The comparison is made before the CSS is inlined, and only the first HTML is
    /// inlined (inlining is two thirds of a render): the inliner decides by selectors, and
    /// the only ones that read the text of an attribute, where a marker may be, are
    /// attribute selectors (`[href*=…]`). When a style sheet has one, the second HTML is
    /// inlined and compared too, as every render was before.
    fn prepare(&self, with_name: bool) -> Option<Prepared> {
        let a = self.render_with_markers(with_name, 'a')?;
        let swap = |s: &str| {
            FIELDS.iter().fold(s.to_string(), |s, f| {
                s.replace(&marker(*f, 'a'), &marker(*f, 'b'))
            })
        };
        // The first HTML is inlined, cut at its markers and encoded on a second thread
        // while the second set of markers renders, the two are compared and the text part
        // is cut and encoded (inlining is two thirds of the work).
        let (b, html) = std::thread::scope(|s| {
            let inlining = s.spawn(|| {
                self.inline(&a.html).ok().map(|inlined| {
                    let html = split(&inlined, 'a');
                    (encode_pieces(&html), html, inlined)
                })
            });
            let b = self.render_with_markers(with_name, 'b').filter(|b| {
                swap(&a.subject) == b.subject && swap(&a.html) == b.html && swap(&a.text) == b.text
            });
            let text = b.as_ref().map(|_| {
                let text = split(&a.text, 'a');
                let counts = marker_counts(&a.html, 'a');
                (encode_pieces(&text), text, split(&a.subject, 'a'), counts)
            });
            (b.zip(text), inlining.join())
        });
        let (b, (text_qp, text, subject, counts)) = b?;
        let (html_qp, html, inlined) = html.ok()??;
        if attribute_selectors(&a.html) && swap(&inlined) != self.inline(&b.html).ok()? {
            return None;
        }
        // Every value's place survives the inlining (it re-serializes the document).
        let kept = FIELDS.map(|f| html.iter().filter(|p| **p == Piece::Value(f)).count());
        if kept != counts {
            return None;
        }
        Some(Prepared {
            subject,
            html,
            text,
            html_qp,
            text_qp,
        })
    }

    /// The recipient's message parts, encoded for MIME. The same content as `render`.
    pub fn encode(&self, subscriber: &Subscriber) -> Result<Encoded, Problem> {
        let name = subscriber
            .name
            .as_ref()
            .map(super::super::input::address::DisplayName::as_str);
        let Some(p) = self.prepared(name.is_some()) else {
            let r = self.render(subscriber)?;
            return Ok(Encoded {
                subject: r.subject,
                unsubscribe_url: self.unsubscribe_url(&subscriber.email),
                text: quoted_printable(&r.text),
                html: quoted_printable(&r.html),
            });
        };
        let values = self.values(subscriber);
        let raw = |f: Field| values.get(f).to_string();
        let subject = checked_subject(&assemble(&p.subject, raw, 128))?;
        let text = assemble_qp(&p.text_qp, raw, 24 * 1024);
        let html = assemble_qp(&p.html_qp, |f| templates::escape_html(&raw(f)), 48 * 1024);
        Ok(Encoded {
            subject,
            unsubscribe_url: values.unsubscribe,
            text,
            html,
        })
    }

    /// Whether this recipient's message renders, without building it when the edition is
    /// prepared for the recipient's shape: then only the subject can still go wrong.
    pub fn check(&self, subscriber: &Subscriber) -> Result<(), Problem> {
        match self.prepared(subscriber.name.is_some()) {
            Some(p) => {
                let values = self.values(subscriber);
                checked_subject(&assemble(&p.subject, |f| values.get(f).to_string(), 128))
                    .map(|_| ())
            }
            None => self.render(subscriber).map(|_| ()),
        }
    }

    /// The values a recipient's message differs by.
    fn values<'s>(&'s self, subscriber: &'s Subscriber) -> Values<'s> {
        let name = subscriber
            .name
            .as_ref()
            .map(super::super::input::address::DisplayName::as_str);
        Values {
            email: subscriber.email.as_str(),
            name,
            greeting: name.unwrap_or(&self.greeting_fallback),
            unsubscribe: self.unsubscribe_url(&subscriber.email),
            manage: self.manage_url(&subscriber.email),
        }
    }

    pub fn render(&self, subscriber: &Subscriber) -> Result<Rendered, Problem> {
        let values = self.values(subscriber);
        let (name, greeting, unsubscribe) =
            (values.name, values.greeting, values.unsubscribe.as_str());
        let rendered = if let Some(p) = self.prepared(name.is_some()) {
            let raw = |f: Field| values.get(f).to_string();
            Rendered {
                subject: assemble(&p.subject, raw, 128),
                html: assemble(&p.html, |f| templates::escape_html(&raw(f)), 48 * 1024),
                text: assemble(&p.text, raw, 24 * 1024),
            }
        } else {
            let ctx = self.context(
                subscriber.email.as_str(),
                name,
                greeting,
                unsubscribe,
                &values.manage,
            );
            self.render_context(&ctx)?
        };
        Ok(Rendered {
            subject: checked_subject(&rendered.subject)?,
            ..rendered
        })
    }
}

/// Whether a `<style>` block of `html` may hold an attribute selector (any `[` in one).
fn attribute_selectors(html: &str) -> bool {
    let lower = html.to_ascii_lowercase();
    let mut rest = lower.as_str();
    while let Some(start) = rest.find("<style") {
        let block = &rest[start..];
        let end = block.find("</style").unwrap_or(block.len());
        if block[..end].contains('[') {
            return true;
        }
        rest = &block[end..];
    }
    false
}

/// The subject as one trimmed, non-empty line: a line break there would forge headers.
fn checked_subject(subject: &str) -> Result<String, Problem> {
    let subject = subject.trim();
    if subject.is_empty() || subject.chars().any(char::is_control) {
        return Err(Problem::new(
            std::path::Path::new(templates::SUBJECT),
            format!("the subject must render to one non-empty line, got {subject:?}"),
        ));
    }
    Ok(subject.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_put_into_encoded_pieces_decode_to_the_plain_text() {
        let long = "word ".repeat(40);
        let text = format!(
            "Hello {}, caf\u{e9} =\n{long}{}\nbye {}  \n",
            marker(Field::Name, 'a'),
            marker(Field::Unsubscribe, 'a'),
            marker(Field::Email, 'a')
        );
        let pieces = split(&text, 'a');
        let value = |f: Field| match f {
            Field::Name => "Tom\u{e1}s = \"the\" reader".to_string(),
            Field::Unsubscribe => format!("https://x.example/u/{}", "t".repeat(90)),
            Field::Email => "tomas@example.net".to_string(),
            Field::Greeting | Field::Manage => String::new(),
        };
        let encoded = assemble_qp(&encode_pieces(&pieces), value, 0);
        for line in encoded.split(|&b| b == b'\n') {
            assert!(line.len() <= 77, "{:?}", String::from_utf8_lossy(line));
        }
        let plain = assemble(&pieces, value, 0).replace('\n', "\r\n");
        let decoded =
            quoted_printable::decode(&encoded, quoted_printable::ParseMode::Strict).unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), plain);
    }

    /// The example project, on a day of its week: its articles are the edition's.
    fn example() -> crate::project::Project {
        let config =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("example/newsletter.toml");
        let clock = crate::clock::Clock::at(
            std::time::UNIX_EPOCH + std::time::Duration::from_hours(498_825),
        );
        let request = crate::project::EditionRequest::default();
        crate::project::Project::open(&config, &request, clock, None).unwrap()
    }

    fn reader(email: &str, name: Option<&str>) -> Subscriber {
        Subscriber {
            email: EmailAddress::parse(email).unwrap(),
            name: name.map(|n| crate::input::address::DisplayName::parse(n).unwrap()),
            status: crate::input::subscribers::Status::Subscribed,
            since: None,
            tags: Vec::new(),
        }
    }

    #[test]
    fn a_shape_of_recipient_is_prepared_when_first_needed_and_only_then() {
        let project = example();
        let edition = project.edition.as_ref().unwrap();
        let composer = project.composer(edition);
        assert!(composer.prepared.iter().all(|p| p.get().is_none()));
        let mut reader = reader("ana@example.org", Some("Ana"));
        let prepared = composer.render(&reader).unwrap();
        assert!(composer.prepared[1].get().is_some_and(Option::is_some));
        assert!(
            composer.prepared[0].get().is_none(),
            "the shape without a name"
        );
        // The prepared message is the one rendered for this reader alone.
        let alone = composer.render_context(&composer.context(
            "ana@example.org",
            Some("Ana"),
            "Ana",
            &composer.unsubscribe_url(&reader.email),
            &composer.manage_url(&reader.email),
        ));
        let alone = alone.unwrap();
        assert_eq!(prepared.html, alone.html);
        assert_eq!(prepared.text, alone.text);
        assert_eq!(prepared.subject, alone.subject.trim());
        reader.name = None;
        composer.check(&reader).unwrap();
        assert!(composer.prepared[0].get().is_some_and(Option::is_some));
    }

    #[test]
    fn a_style_sheet_that_reads_a_value_in_an_attribute_is_rendered_per_recipient() {
        let project = example();
        let edition = project.edition.as_ref().unwrap();
        // Red for links containing "bu": the two sets of markers differ there (the
        // second's "\u{e000}bunsubscribe…" has it, the first's "\u{e000}aunsubscribe…"
        // not), and so do readers.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(templates::HTML),
            "<html><head><style>a[href*=\"bu\"] { color: red }</style></head><body>\
             <a href=\"mailto:{{ subscriber.email }}\">{{ subscriber.greeting }}</a> \
             <a href=\"{{ unsubscribe_url }}\">x</a></body></html>",
        )
        .unwrap();
        let templates =
            Templates::load(Some(dir.path()), crate::locale::Locale::english()).unwrap();
        let composer = Composer::new(&project.config, edition, &templates, &project.signer);
        let bumble = composer
            .render(&reader("bumble@example.org", None))
            .unwrap();
        assert!(composer.prepared[0].get().is_some_and(Option::is_none));
        assert!(
            bumble
                .html
                .contains("href=\"mailto:bumble@example.org\" style=\"color: red"),
            "{}",
            bumble.html
        );
        let ana = composer.render(&reader("ana@example.org", None)).unwrap();
        assert!(
            ana.html.contains("href=\"mailto:ana@example.org\">"),
            "{}",
            ana.html
        );
    }

    #[test]
    fn only_a_style_block_with_a_bracket_may_hold_attribute_selectors() {
        assert!(attribute_selectors(
            "<p>[1]</p><STYLE>a { color: red }</STYLE><style>a[href^=\"mailto:\"] { x: y }</style>"
        ));
        assert!(!attribute_selectors(
            "<style>@media (max-width: 480px) { .pad { padding: 0 } }</style><p>[a](b)</p>"
        ));
        assert!(!attribute_selectors("<p>no style [at all]</p>"));
        assert!(attribute_selectors("<style>td[align=center] {"));
    }

    #[test]
    fn markers_split_into_text_and_values() {
        let text = format!(
            "Hi {}, bye {}!",
            marker(Field::Name, 'a'),
            marker(Field::Email, 'a')
        );
        assert_eq!(
            split(&text, 'a'),
            vec![
                Piece::Text("Hi ".into()),
                Piece::Value(Field::Name),
                Piece::Text(", bye ".into()),
                Piece::Value(Field::Email),
                Piece::Text("!".into()),
            ]
        );
    }

    #[test]
    fn markers_of_the_other_set_and_stray_private_use_characters_stay_text() {
        let (name, greeting) = (marker(Field::Name, 'a'), marker(Field::Greeting, 'a'));
        let other = marker(Field::Email, 'b');
        let text = format!("{name}{greeting} \u{e000}x\u{e001} {other}{name}");
        assert_eq!(
            split(&text, 'a'),
            vec![
                Piece::Value(Field::Name),
                Piece::Value(Field::Greeting),
                Piece::Text(format!(" \u{e000}x\u{e001} {other}")),
                Piece::Value(Field::Name),
            ]
        );
        assert_eq!(marker_counts(&text, 'a'), [0, 2, 1, 0, 0]);
        assert_eq!(marker_counts(&text, 'b'), [1, 0, 0, 0, 0]);
        assert_eq!(split("", 'a'), vec![Piece::Text(String::new())]);
    }
}
