//! Loads a whole project (config, subscribers, the edition's articles and templates, key)
//! in one go, collecting the problems of every file before giving up, and renders every
//! recipient before anything is sent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;

use crate::clock::Clock;
use crate::config::Config;
use crate::edition::Edition;
use crate::edition::selection::{self, Rules};
use crate::feeds::{Cache, Report};
use crate::input::articles;
use crate::input::subscribers::{self, Subscriber, SubscriberList};
use crate::locale::Locale;
use crate::mail::dkim::Signatures;
use crate::mail::message::{Mailer, Outgoing};
use crate::problems::{Problem, Problems};
use crate::render::compose::{Composer, Rendered};
use crate::render::templates::{self, Parsing, Templates};
use crate::state::{Frozen, Journal};
use crate::token::Signer;

/// Which edition to plan: the command line's choices, free of its parser's types.
#[derive(Debug, Clone, Default)]
pub struct EditionRequest {
    /// Exactly these article files instead of the selection.
    pub articles: Vec<std::path::PathBuf>,
    /// The edition's date; default today.
    pub date: Option<chrono::NaiveDate>,
    /// Articles dated on or after this day, instead of those since the last edition.
    pub since: Option<chrono::NaiveDate>,
    /// Articles dated on or before this day.
    pub until: Option<chrono::NaiveDate>,
    /// Subscriber tags the edition goes to, overriding the config's audience.
    pub tags: Vec<String>,
    /// This edition exactly as frozen, sent or not (`preview --edition`).
    pub edition: Option<String>,
}

pub struct Project {
    pub config: Config,
    pub subscribers: SubscriberList,
    /// `None` when no article is waiting to be sent.
    pub edition: Option<Edition>,
    /// The edition was frozen by an earlier send that did not finish: it is resumed as it
    /// was, whatever happened to the article and template files since.
    pub resumed: bool,
    pub templates: Templates,
    pub signer: Signer,
    pub dkim: Signatures,
    pub clock: Clock,
    /// Every candidate article and why it is in or out (empty for a resumed edition or
    /// an explicit `--article` list).
    pub explained: Vec<crate::edition::selection::Explained>,
    /// What became of each feed source.
    pub sources: Vec<crate::feeds::Report>,
    /// Warnings that do not stop a run (a short DKIM key, a link dropped from an article).
    pub notes: Vec<String>,
}

/// The edition side of a run: what to send and how it looks.
struct Planned {
    /// `None` when nothing is new.
    edition: Option<Edition>,
    templates: Templates,
    /// Subscriber tags the edition goes to; empty: everyone.
    audience: Vec<String>,
    resumed: bool,
    explained: Vec<crate::edition::selection::Explained>,
    sources: Vec<crate::feeds::Report>,
    /// Warnings of the plan (a language served by a fallback).
    notes: Vec<String>,
}

/// The locale and the templates parsed (with the locale's warnings), or the problems of
/// their files.
type Look = std::result::Result<(Templates, Vec<String>), Problems>;

/// Where the locale and templates come from, owned, so that their reading can start
/// before the rest of the project loads.
struct Looks {
    tag: String,
    locales: Option<PathBuf>,
    templates: Option<PathBuf>,
}

impl Looks {
    fn of(config: &Config) -> Looks {
        Looks {
            tag: config.newsletter.locale.clone(),
            locales: config.paths.locales.clone(),
            templates: config.paths.templates.clone(),
        }
    }

    /// Reads the locale and parses the templates, on this thread.
    fn read(self) -> Look {
        let parsing = templates::read_sources(self.templates.as_deref()).map(Parsing::new);
        if let Ok(p) = &parsing {
            p.work();
        }
        finish(Locale::load(&self.tag, self.locales.as_deref()), parsing)
    }
}

/// The locale and templates of a run, with every problem of their files at once.
fn finish(
    locale: Result<(Locale, Vec<String>), Problems>,
    parsing: Result<Parsing, Problems>,
) -> Look {
    match (locale, parsing.and_then(Parsing::build)) {
        (Ok((locale, warnings)), Ok(parsed)) => Ok((parsed.checked(locale)?, warnings)),
        (Err(mut problems), Err(more)) => {
            problems.extend(more);
            Err(problems)
        }
        (Err(problems), Ok(_)) | (Ok(_), Err(problems)) => Err(problems),
    }
}

/// The templates being parsed on a thread of their own while the state database opens and
/// the subscribers and articles load; the main thread then reads the locale and helps
/// with the templates left (`Parsing`).
pub struct Ahead {
    looks: Looks,
    parsing: Result<Arc<Parsing>, Problems>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ahead {
    /// Starts parsing them, for `Project::load_with`.
    pub fn start(config: &Config) -> Ahead {
        let looks = Looks::of(config);
        let parsing = templates::read_sources(looks.templates.as_deref())
            .map(|sources| Arc::new(Parsing::new(sources)));
        let thread = parsing.as_ref().ok().map(|p| {
            let p = Arc::clone(p);
            std::thread::spawn(move || p.work())
        });
        Ahead {
            looks,
            parsing,
            thread,
        }
    }

    fn join(self) -> Look {
        let Ahead {
            looks,
            parsing,
            thread,
        } = self;
        // The locale first: the thread is still parsing the longest template meanwhile.
        let locale = Locale::load(&looks.tag, looks.locales.as_deref());
        if let Ok(p) = &parsing {
            p.work();
        }
        if let Some(t) = thread {
            t.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        }
        let parsing = parsing.and_then(|p| {
            Arc::try_unwrap(p).map_err(|_| {
                Problems::from(Problem::new(
                    Path::new("templates"),
                    "the templates are still held by their parsing thread",
                ))
            })
        });
        finish(locale, parsing)
    }
}

/// The unfinished edition, exactly as frozen; `None` when its templates no longer parse
/// (the problems say why).
fn resume(id: String, frozen: Frozen, problems: &mut Problems) -> Option<Planned> {
    // An edition frozen before locales were kept was rendered with the English strings.
    let locale = frozen.locale.unwrap_or_else(Locale::english);
    let templates = Templates::from_frozen(&frozen.templates, locale)
        .map_err(|p| problems.extend(p))
        .ok()?;
    Some(Planned {
        edition: Some(Edition {
            id,
            date: frozen.date,
            articles: frozen.articles,
        }),
        templates,
        audience: frozen.audience,
        resumed: true,
        explained: Vec::new(),
        sources: Vec::new(),
        notes: Vec::new(),
    })
}

/// A new edition from the article files and feeds, chosen by the selection rules (or
/// exactly the files named); `None` when the files have problems.
fn plan_new(
    config: &Config,
    args: &EditionRequest,
    clock: Clock,
    journal: Option<&Journal>,
    ahead: Option<Ahead>,
    problems: &mut Problems,
) -> Result<Option<Planned>> {
    let today = args.date.unwrap_or_else(|| clock.today());
    let named = !args.articles.is_empty();
    let markdown = if named {
        articles::load_files(&args.articles)
    } else if !config.sources.is_empty() && !config.paths.articles.exists() {
        // Feeds alone: the Markdown folder is optional then.
        Ok(Vec::new())
    } else {
        articles::load_dir(&config.paths.articles)
    }
    .map_err(|p| problems.extend(p))
    .ok();
    let mut notes = Vec::new();
    let templates = ahead
        .map_or_else(|| Looks::of(config).read(), Ahead::join)
        .map_err(|p| problems.extend(p))
        .ok()
        .map(|(templates, warnings)| {
            notes = warnings;
            templates
        });
    let (Some(mut all), Some(templates)) = (markdown, templates) else {
        return Ok(None);
    };
    let mut sources = Vec::new();
    if !named && !config.sources.is_empty() {
        let (items, reports) = read_sources(config, today);
        all.extend(items);
        sources = reports;
    }
    let mut explained = Vec::new();
    let chosen = if named {
        all
    } else {
        let (sent, history) = match journal {
            Some(j) => (j.sent_articles()?, j.source_history()?),
            None => Default::default(),
        };
        let rules = Rules::new(&config.selection, today, history, args.since, args.until);
        let (chosen, why) = selection::select(all, &sent, &rules);
        explained = why;
        chosen
    };
    Ok(Some(Planned {
        edition: (!chosen.is_empty()).then(|| Edition::new(today, chosen)),
        templates,
        audience: if args.tags.is_empty() {
            config.selection.audience.clone()
        } else {
            args.tags.clone()
        },
        resumed: false,
        explained,
        sources,
        notes,
    }))
}

impl Project {
    /// `journal` is the state database when it exists; it tells which articles went out
    /// before and which edition is still being sent.
    pub fn load(
        config: Config,
        args: &EditionRequest,
        clock: Clock,
        journal: Option<&Journal>,
    ) -> Result<Project> {
        Project::load_with(config, args, clock, journal, None)
    }

    /// `load`, with the templates being parsed already (`Ahead`); they are not used when
    /// an unfinished edition is resumed with the templates it was frozen with.
    pub fn load_with(
        config: Config,
        args: &EditionRequest,
        clock: Clock,
        journal: Option<&Journal>,
        ahead: Option<Ahead>,
    ) -> Result<Project> {
        let mut problems = Problems::default();
        let unfinished = match (journal, &args.edition) {
            (Some(j), Some(id)) => Some(j.frozen_edition(id)?.ok_or_else(|| {
                anyhow::anyhow!("there is no edition {id} in the state database (`newsletter status` lists them)")
            })?),
            (None, Some(id)) => anyhow::bail!("there is no edition {id}: no edition was sent yet"),
            (Some(j), None) if args.articles.is_empty() => j.unfinished_edition()?,
            _ => None,
        };

        let mut subscribers = subscribers::load(&config.paths.subscribers)
            .map_err(|p| problems.extend(p))
            .ok();
        let mut notes = Vec::new();
        let signer = crate::token::Signer::for_list(&config.unsubscribe)
            .map_err(|e| {
                problems.push(Problem::new(&config.path, format!("{e:#}")).field("unsubscribe"));
            })
            .ok()
            .map(|(signer, warning)| {
                // The outbox sends no mail: a readable key matters once links go out.
                if matches!(config.transport, crate::config::Transport::Smtp(_)) {
                    notes.extend(warning);
                }
                signer
            });
        let planned = match unfinished {
            Some(u) => resume(u.id, u.frozen, &mut problems),
            None => plan_new(&config, args, clock, journal, ahead, &mut problems)?,
        };
        if let (Some(list), Some(plan)) = (&mut subscribers, &planned) {
            list.audience.clone_from(&plan.audience);
        }

        let dkim = crate::mail::dkim::load(&config.dkim, config.newsletter.from.address.domain())
            .map_err(|e| {
                problems.push(Problem::new(&config.path, format!("{e:#}")).field("dkim"));
            })
            .ok()
            .map(|(keys, warnings)| {
                notes.extend(warnings);
                keys
            });
        if let Some(planned) = &planned {
            notes.extend(planned.notes.iter().cloned());
            notes.extend(planned.templates.layout_warnings());
        }
        if let Some(edition) = planned.as_ref().and_then(|p| p.edition.as_ref()) {
            notes.extend(
                edition
                    .articles
                    .iter()
                    .flat_map(|a| a.notes.iter().cloned()),
            );
        }
        // "Nothing new" cannot be told while a source is down: that is a failure, not an
        // empty week, and cron should hear of it (exit 1).
        let failed: Vec<&str> = planned
            .iter()
            .flat_map(|p| &p.sources)
            .filter(|r| r.outcome.is_err())
            .map(|r| r.name.as_str())
            .collect();
        let nothing_new = planned.as_ref().is_some_and(|p| p.edition.is_none());
        if nothing_new && problems.is_empty() && !failed.is_empty() {
            anyhow::bail!(
                "no article to send, and these sources could not be read: {} (nothing was sent)",
                failed.join(", ")
            );
        }
        let (Some(subscribers), Some(planned), Some(signer), Some(dkim)) =
            (subscribers, planned, signer, dkim)
        else {
            return Err(problems.into());
        };
        Ok(Project {
            config,
            subscribers,
            edition: planned.edition,
            resumed: planned.resumed,
            templates: planned.templates,
            signer,
            dkim,
            clock,
            explained: planned.explained,
            sources: planned.sources,
            notes,
        })
    }

    /// Loads the config at `path`, then the project (see `load`).
    pub fn open(
        path: &Path,
        args: &EditionRequest,
        clock: Clock,
        journal: Option<&Journal>,
    ) -> Result<Project> {
        let config = Config::load(path)?;
        Project::load(config, args, clock, journal)
    }

    /// Every warning of the load: the subscriber list's, then the rest.
    pub fn notes(&self) -> impl Iterator<Item = &String> {
        self.subscribers.notes.iter().chain(&self.notes)
    }

    pub fn composer<'a>(&'a self, edition: &Edition) -> Composer<'a> {
        Composer::new(&self.config, edition, &self.templates, &self.signer)
    }

    /// Builds the MIME messages of `edition`.
    pub fn mailer<'a>(&'a self, edition: &Edition) -> Mailer<'a> {
        Mailer::new(&self.config, &edition.id, &self.signer, self.clock).with_dkim(&self.dkim)
    }

    /// What must be kept to render this edition again exactly.
    pub fn freeze(&self, edition: &Edition) -> Frozen {
        let (read, failed): (Vec<&Report>, Vec<&Report>) =
            self.sources.iter().partition(|r| r.outcome.is_ok());
        let names = |reports: Vec<&Report>| reports.iter().map(|r| r.name.clone()).collect();
        Frozen {
            date: edition.date,
            articles: edition.articles.clone(),
            templates: self.templates.sources(),
            locale: Some(self.templates.locale().clone()),
            audience: self.subscribers.audience.clone(),
            sources_read: names(read),
            sources_failed: names(failed),
        }
    }
}

/// Renders every recipient; returns the problems, each once, with how many recipients
/// it affects.
/// Reads the feed sources; a failed one is reported and left out. The conditional-GET
/// cache lives in the state database; without it every feed is fetched in full.
fn read_sources(
    config: &Config,
    today: chrono::NaiveDate,
) -> (Vec<crate::input::articles::Article>, Vec<Report>) {
    let wants_cache = config
        .sources
        .iter()
        .any(|s| matches!(s.location, crate::config::Location::Url(_)));
    let cache = if wants_cache {
        Cache::open(&config.paths.state)
            .map_err(|e| eprintln!("warning: feeds are fetched in full: {e:#}"))
            .ok()
    } else {
        None
    };
    let (items, reports) = crate::feeds::load_all(&config.sources, cache.as_ref(), today);
    for r in &reports {
        if let Err(why) = &r.outcome {
            eprintln!(
                "warning: source {} ({}) failed: {why}; the edition is built from the others",
                r.name, r.location
            );
        }
    }
    (items, reports)
}

pub fn render_all<'a>(
    composer: &Composer<'_>,
    recipients: impl IntoIterator<Item = &'a Subscriber>,
) -> Result<usize, Problems> {
    let mut seen: BTreeMap<String, (Problem, usize, String)> = BTreeMap::new();
    let mut count = 0;
    let mut linted = Vec::new();
    for sub in recipients {
        count += 1;
        // The checks look at one message: the others differ only in the recipient's values.
        let outcome = if count == 1 {
            composer.render(sub).map(|rendered| {
                let findings =
                    crate::render::lint::lint(&rendered, &composer.unsubscribe_url(&sub.email));
                for w in findings.warnings {
                    eprintln!("warning: {w} (in the message to {})", sub.email);
                }
                linted = findings.errors;
            })
        } else {
            composer.check(sub)
        };
        if let Err(p) = outcome {
            seen.entry(p.to_string())
                .or_insert_with(|| (p, 0, sub.email.to_string()))
                .1 += 1;
        }
    }
    let mut problems: Vec<Problem> = linted
        .into_iter()
        .map(|e| Problem::new(std::path::Path::new(crate::render::templates::HTML), e))
        .collect();
    problems.extend(seen.into_values().map(|(mut p, n, first)| {
        p.message = if n == 1 {
            format!("{} (rendering for {first})", p.message)
        } else {
            format!("{} (rendering for {first} and {} more)", p.message, n - 1)
        };
        p
    }));
    Problems(problems).into_result(count)
}

/// The exact message for one recipient.
pub fn outgoing(composer: &Composer<'_>, mailer: &Mailer<'_>, to: &Subscriber) -> Result<Outgoing> {
    outgoing_with(composer, mailer, to, mailer.message_id(to))
}

/// The exact message for one recipient, whose Message-ID (`Mailer::message_id`) is known.
pub fn outgoing_with(
    composer: &Composer<'_>,
    mailer: &Mailer<'_>,
    to: &Subscriber,
    message_id: String,
) -> Result<Outgoing> {
    let encoded = composer.encode(to).map_err(|p| anyhow::anyhow!("{p}"))?;
    mailer.message(to, &encoded, message_id)
}

/// Renders one recipient, for commands that need a single message.
pub fn render_one(composer: &Composer<'_>, sub: &Subscriber) -> Result<Rendered, Problems> {
    composer.render(sub).map_err(Problems::from)
}
