//! The Tera templates: defaults embedded in the binary, each overridable by a file of the
//! same name in the project's `templates/` folder. HTML templates end in `.html`, so Tera
//! autoescapes everything they print.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tera::{Context, Tera};

use crate::locale::Locale;
use crate::problems::{Problem, Problems};

pub(crate) const HTML: &str = "digest.html";
pub(crate) const TEXT: &str = "digest.txt";
pub(crate) const SUBJECT: &str = "subject.txt";

pub(crate) const EMBEDDED: [(&str, &str); 3] = [
    (HTML, include_str!("../../templates/digest.html")),
    (TEXT, include_str!("../../templates/digest.txt")),
    (SUBJECT, include_str!("../../templates/subject.txt")),
];

pub struct Templates {
    tera: Tera,
    /// Where each template came from and its text, to locate render errors.
    sources: BTreeMap<String, (PathBuf, String)>,
    /// The strings and date format the templates are given (`t`, `lang`): frozen with an
    /// edition like the templates, so a resumed send reads exactly as it began.
    locale: Locale,
}

impl Templates {
    /// The embedded defaults, with every `*.html` / `*.txt` file of `dir` laid over them.
    pub fn load(dir: Option<&Path>, locale: Locale) -> Result<Templates, Problems> {
        let parsing = Parsing::new(read_sources(dir)?);
        parsing.work();
        parsing.build()?.checked(locale)
    }

    /// Every variable named in any branch of any template that the context does not have
    /// (a frozen edition's templates were checked when it was frozen).
    fn unknown_variables(&self) -> Problems {
        let mut problems = Problems::default();
        // Names an including template defines may reach an included one.
        // The templates as Tera parsed them: parsing is most of the start-up time.
        let parsed: Vec<(&String, &PathBuf, &String, &tera::Template)> = self
            .sources
            .iter()
            .filter_map(|(name, (path, text))| {
                self.tera
                    .get_template(name)
                    .ok()
                    .map(|t| (name, path, text, t))
            })
            .collect();
        let included: std::collections::BTreeSet<String> = parsed
            .iter()
            .flat_map(|(_, _, _, t)| crate::render::variables::includes(t))
            .collect();
        let strings: Vec<&str> = self.locale.strings.keys().map(String::as_str).collect();
        for (name, path, text, template) in parsed {
            for u in crate::render::variables::check(template, included.contains(name), &strings) {
                let problem = Problem::new(path, u.message);
                problems.push(match line_using(text, &u.name) {
                    Some(line) => problem.at_line(line),
                    None => problem,
                });
            }
        }
        problems
    }

    /// Templates from their sources, as frozen with an edition.
    pub fn from_frozen(
        frozen: &BTreeMap<String, String>,
        locale: Locale,
    ) -> Result<Templates, Problems> {
        let sources = frozen
            .iter()
            .map(|(name, text)| {
                let origin = PathBuf::from(format!("(frozen with the edition) templates/{name}"));
                (name.clone(), (origin, text.clone()))
            })
            .collect();
        let parsing = Parsing::new(sources);
        parsing.work();
        Ok(parsing.build()?.with(locale))
    }

    pub fn locale(&self) -> &Locale {
        &self.locale
    }

    /// Name → source of every template in use, to freeze with an edition.
    pub fn sources(&self) -> BTreeMap<String, String> {
        self.sources
            .iter()
            .map(|(n, (_, t))| (n.clone(), t.clone()))
            .collect()
    }

    /// Fixed widths in the HTML templates that a phone cannot show, each with its file and
    /// line (see `lint::fixed_widths`). The built-in templates are not read again: a unit
    /// test keeps them free of such widths, and every send would pay for the reading.
    pub fn layout_warnings(&self) -> Vec<String> {
        self.sources
            .iter()
            .filter(|(name, _)| Path::new(name).extension().is_some_and(|x| x == "html"))
            .filter(|(name, (_, text))| !EMBEDDED.contains(&(name.as_str(), text.as_str())))
            .flat_map(|(_, (path, text))| {
                crate::render::widths::fixed_widths(text)
                    .into_iter()
                    .map(move |(line, what)| {
                        format!(
                            "{}:{line}: {what} is wider than a {} px phone screen; use width:100% with a max-width (or keep it for Outlook inside <!--[if mso]>)",
                            path.display(),
                            crate::render::widths::NARROWEST
                        )
                    })
            })
            .collect()
    }

    /// Renders one template; an error names the template file and, where it can be found,
    /// the line that uses the missing variable.
    pub fn render(&self, name: &str, context: &Context) -> Result<String, Problem> {
        self.tera.render(name, context).map_err(|e| {
            let message = chain(&e);
            let Some((path, text)) = self.sources.get(name) else {
                return Problem::new(Path::new(name), message);
            };
            let problem = Problem::new(path, message.clone());
            match missing_variable(&message).and_then(|var| line_using(text, var)) {
                Some(line) => problem.at_line(line),
                None => problem,
            }
        })
    }
}

/// The embedded defaults with the overrides of `dir` laid over them: name → (origin, text).
pub(crate) fn read_sources(dir: Option<&Path>) -> Result<Sources, Problems> {
    let mut sources: Sources = EMBEDDED
        .iter()
        .map(|(name, text)| {
            let origin = PathBuf::from(format!("(built-in) templates/{name}"));
            ((*name).to_string(), (origin, (*text).to_string()))
        })
        .collect();
    let mut problems = Problems::default();
    if let Some(dir) = dir {
        read_overrides(dir, &mut sources, &mut problems);
    }
    if problems.is_empty() {
        Ok(sources)
    } else {
        Err(problems)
    }
}

/// Template name → where it came from and its text.
pub(crate) type Sources = BTreeMap<String, (PathBuf, String)>;

/// Templates being parsed, each on its own, by every thread that calls `work`: a thread
/// takes the longest template left until none is. Parsing is most of a run's start, and
/// `send` shares it between the thread it starts for it and the main thread, which helps
/// once the subscribers and articles are loaded. Each file parsed on its own also reports
/// every file's syntax error, not just the first.
pub(crate) struct Parsing {
    sources: Sources,
    /// Names still to parse, shortest first (taken from the end).
    left: Mutex<Vec<String>>,
    parsed: Mutex<Vec<(String, tera::Result<tera::Template>)>>,
}

impl Parsing {
    pub(crate) fn new(sources: Sources) -> Parsing {
        let mut left: Vec<&String> = sources.keys().collect();
        left.sort_by_key(|name| sources.get(*name).map_or(0, |(_, text)| text.len()));
        let left = left.into_iter().cloned().collect();
        Parsing {
            sources,
            left: Mutex::new(left),
            parsed: Mutex::new(Vec::new()),
        }
    }

    /// Parses templates until none is left to take.
    pub(crate) fn work(&self) {
        loop {
            let next = match self.left.lock() {
                Ok(mut left) => left.pop(),
                Err(_) => None,
            };
            let Some(name) = next else { return };
            let Some((_, text)) = self.sources.get(&name) else {
                continue;
            };
            let template = crate::render::parse::template(&name, text);
            if let Ok(mut parsed) = self.parsed.lock() {
                parsed.push((name, template));
            }
        }
    }

    /// The templates, once every thread's `work` has returned, or every file's problem.
    pub(crate) fn build(self) -> Result<Parsed, Problems> {
        let Parsing {
            sources,
            left,
            parsed,
        } = self;
        let mut problems = Problems::default();
        let texts = sources
            .iter()
            .map(|(n, (_, t))| (n.clone(), t.clone()))
            .collect();
        for cycle in crate::render::template_cycles::find(&texts) {
            let path = sources
                .get(&cycle.template)
                .map_or_else(|| PathBuf::from(&cycle.template), |(p, _)| p.clone());
            problems.push(Problem::new(&path, cycle.message).at_line(cycle.line));
        }
        let left = left.into_inner().unwrap_or_default();
        let mut parsed = parsed.into_inner().unwrap_or_default();
        if !left.is_empty() || parsed.len() != sources.len() {
            problems.push(Problem::new(
                Path::new("templates"),
                "the templates were not all parsed (a parsing thread stopped)",
            ));
        }
        // In the sources' order, so that problems are reported in file order.
        parsed.sort_by(|a, b| a.0.cmp(&b.0));
        let mut tera = Tera::default();
        tera.set_escape_fn(escape_html);
        tera.register_filter("wrap", wrap_filter);
        tera.register_filter("fill", fill_filter);
        tera.register_filter("fill_links", fill_links_filter);
        for (name, template) in parsed {
            match template {
                // What `Tera::add_raw_templates` does with each template it parses.
                Ok(t) => {
                    tera.templates.insert(name, t);
                }
                Err(e) => {
                    let path = sources
                        .get(&name)
                        .map_or_else(|| PathBuf::from(&name), |(p, _)| p.clone());
                    let e = tera::Error::chain(format!("Failed to parse '{name}'"), e);
                    problems.push(Problem::new(&path, chain(&e)));
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        if let Err(e) = tera
            .build_inheritance_chains()
            .and_then(|()| tera.check_macro_files())
        {
            problems.push(Problem::new(Path::new("templates"), chain(&e)));
            return Err(problems);
        }
        Ok(Parsed { tera, sources })
    }
}

/// Templates parsed, before the locale they are given.
pub(crate) struct Parsed {
    tera: Tera,
    sources: Sources,
}

impl Parsed {
    /// With `locale`, checked for variables the context lacks.
    pub(crate) fn checked(self, locale: Locale) -> Result<Templates, Problems> {
        let templates = self.with(locale);
        let unknown = templates.unknown_variables();
        if !unknown.is_empty() {
            return Err(unknown);
        }
        Ok(templates)
    }

    /// With `locale`, unchecked (a frozen edition's were checked when it was frozen).
    fn with(self, locale: Locale) -> Templates {
        Templates {
            tera: self.tera,
            sources: self.sources,
            locale,
        }
    }
}

fn as_text(value: &tera::Value) -> String {
    match value {
        tera::Value::String(s) => s.clone(),
        tera::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `{{ t.hello | fill(greeting=subscriber.greeting) }}`: a string of the locale with its
/// `{slots}` filled in. In HTML templates the result is escaped like any other value.
#[allow(clippy::unnecessary_wraps)] // the signature Tera asks of a filter
pub(crate) fn fill_filter(
    value: &tera::Value,
    args: &std::collections::HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    let filled = crate::locale::fill(&as_text(value), |slot| args.get(slot).map(as_text));
    Ok(tera::Value::String(filled))
}

/// `{{ t.contact | fill_links(contact=…, contact_href="mailto:…") | safe }}`: for HTML
/// templates, a string whose slots become links. It escapes the string and every value
/// itself (hence `safe` after it); a slot with a `SLOT_href` argument is wrapped in
/// `<a href>`, so a translation may move the link anywhere in its sentence.
#[allow(clippy::unnecessary_wraps)] // the signature Tera asks of a filter
fn fill_links_filter(
    value: &tera::Value,
    args: &std::collections::HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    let escaped = escape_html(&as_text(value));
    let filled = crate::locale::fill(&escaped, |slot| {
        let text = escape_html(&as_text(args.get(slot)?));
        Some(match args.get(&format!("{slot}_href")) {
            Some(href) => format!("<a href=\"{}\">{text}</a>", escape_html(&as_text(href))),
            None => text,
        })
    });
    Ok(tera::Value::String(filled))
}

/// `{{ text | wrap }}` (or `wrap(width=60)`): the text's lines wrapped for the plain part,
/// at 72 display columns unless told otherwise.
#[allow(clippy::unnecessary_wraps)] // the signature Tera asks of a filter
pub(crate) fn wrap_filter(
    value: &tera::Value,
    args: &std::collections::HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    let width = args
        .get("width")
        .and_then(tera::Value::as_u64)
        .map_or(crate::render::plain::WIDTH, |w| {
            usize::try_from(w.clamp(20, 998)).unwrap_or(crate::render::plain::WIDTH)
        });
    let text = match value {
        tera::Value::String(s) => s.clone(),
        tera::Value::Null => String::new(),
        other => other.to_string(),
    };
    Ok(tera::Value::String(crate::render::plain::wrap_text(
        &text, width,
    )))
}

fn read_overrides(
    dir: &Path,
    sources: &mut BTreeMap<String, (PathBuf, String)>,
    problems: &mut Problems,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(Problem::new(
                dir,
                format!("cannot read the templates folder: {e}"),
            ));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let is_template = path.extension().is_some_and(|x| x == "html" || x == "txt");
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !is_template || !path.is_file() {
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                sources.insert(name.to_string(), (path.clone(), text));
            }
            Err(e) => problems.push(Problem::new(
                &path,
                format!("cannot read the template: {e}"),
            )),
        }
    }
}

/// HTML escaping for text and attribute values. Unlike Tera's default it leaves `/` alone,
/// so links stay readable (and recognisable to spam filters) in the HTML source.
pub(crate) fn escape_html(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + input.len() / 8);
    for c in input.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Tera's `Display` shows only the outermost error (Keats/tera#575); the cause, such as the
/// parser's line and column, is in the `source()` chain.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}

/// The variable in Tera's "Variable `x.y` not found in context" message.
fn missing_variable(message: &str) -> Option<&str> {
    let start = message.find("Variable `")? + "Variable `".len();
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

fn line_using(text: &str, var: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(var)).map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_templates_parse() {
        assert!(
            Templates::load(None, Locale::english())
                .map_err(|p| p.to_string())
                .is_ok()
        );
    }

    #[test]
    fn a_syntax_error_in_each_of_two_overrides_names_both_files_and_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("subject.txt"), "{{ edition.date }\n").unwrap();
        std::fs::write(dir.path().join("digest.txt"), "ok\n{% if %}\n").unwrap();
        let Err(err) = Templates::load(Some(dir.path()), Locale::english()) else {
            panic!("two syntax errors were accepted")
        };
        let text = err.to_string();
        assert!(text.contains("subject.txt"), "{text}");
        assert!(text.contains("1:"), "{text}");
        assert!(text.contains("digest.txt"), "{text}");
        assert!(text.contains("2:"), "{text}");
    }

    #[test]
    fn an_undefined_variable_names_the_line_that_uses_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("subject.txt"),
            "Weekly\n{{ edition.titel }}\n",
        )
        .unwrap();
        // `load` reads every branch and refuses it, with the line ...
        let Err(err) = Templates::load(Some(dir.path()), Locale::english()) else {
            panic!("a misspelled variable was accepted")
        };
        assert!(err.to_string().contains("subject.txt:2:"), "{err}");
        // ... and rendering (of templates frozen with an edition, not checked again)
        // names the line too.
        let frozen = BTreeMap::from([(
            SUBJECT.to_string(),
            "Weekly\n{{ edition.titel }}\n".to_string(),
        )]);
        let Ok(t) = Templates::from_frozen(&frozen, Locale::english()) else {
            panic!("the frozen template should parse")
        };
        let mut ctx = Context::new();
        ctx.insert("edition", &BTreeMap::<String, String>::new());
        let p = t.render(SUBJECT, &ctx).unwrap_err();
        assert_eq!(p.line, Some(2), "{p}");
        assert!(p.message.contains("edition.titel"), "{p}");
    }

    #[test]
    fn templates_parsed_by_two_threads_are_the_ones_one_thread_parses() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("extra.txt"), "{{ newsletter.name }}\n").unwrap();
        let sources = read_sources(Some(dir.path())).unwrap();
        let parsing = Parsing::new(sources.clone());
        // Longest first: the first thread to ask takes the HTML template.
        assert_eq!(
            parsing.left.lock().unwrap().last().map(String::as_str),
            Some(HTML)
        );
        std::thread::scope(|s| {
            s.spawn(|| parsing.work());
            parsing.work();
        });
        assert!(parsing.left.lock().unwrap().is_empty());
        let shared = parsing
            .build()
            .and_then(|p| p.checked(Locale::english()))
            .map_err(|p| p.to_string())
            .unwrap();
        let alone = Templates::load(Some(dir.path()), Locale::english()).unwrap();
        let mut names: Vec<&str> = shared.tera.get_template_names().collect();
        names.sort_unstable();
        assert_eq!(names, [HTML, TEXT, "extra.txt", SUBJECT]);
        let mut ctx = Context::new();
        ctx.insert("newsletter", &BTreeMap::from([("name", "Harbour Weekly")]));
        assert_eq!(
            shared.tera.render("extra.txt", &ctx).unwrap(),
            alone.tera.render("extra.txt", &ctx).unwrap()
        );
    }
}
