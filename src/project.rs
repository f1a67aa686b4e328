//! Loads a whole project (config, subscribers, the edition's articles and templates, key)
//! in one go, collecting the problems of every file before giving up, and renders every
//! recipient before anything is sent.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;

use crate::clock::Clock;
use crate::config::Config;
use crate::edition::Edition;
use crate::edition::selection::{self, Rules};
use crate::feeds::{Cache, Report};
use crate::input::articles;
use crate::input::subscribers::{self, Subscriber, SubscriberList};
use crate::mail::message::{Mailer, Outgoing};
use crate::problems::{Problem, Problems};
use crate::render::compose::{Composer, Rendered};
use crate::render::templates::Templates;
use crate::state::journal::{Frozen, Journal};
use crate::token::Signer;
use lettre::message::dkim::DkimConfig;

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
    pub dkim: Option<DkimConfig>,
    pub clock: Clock,
    /// Every candidate article and why it is in or out (empty for a resumed edition or
    /// an explicit `--article` list).
    pub explained: Vec<crate::edition::selection::Explained>,
    /// What became of each feed source.
    pub sources: Vec<crate::feeds::Report>,
    /// Warnings that do not stop a run (a short DKIM key, a link dropped from an article).
    pub notes: Vec<String>,
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
        let mut problems = Problems::default();
        let unfinished = match journal {
            Some(j) if args.articles.is_empty() => j.unfinished_edition()?,
            _ => None,
        };

        let mut subscribers = subscribers::load(&config.paths.subscribers)
            .map_err(|p| problems.extend(p))
            .ok();
        let mut explained = Vec::new();
        let mut reports = Vec::new();
        let signer = crate::token::Signer::for_list(&config.unsubscribe)
            .map_err(|e| {
                problems.push(Problem::new(&config.path, format!("{e:#}")).field("unsubscribe"));
            })
            .ok();
        let (edition, templates, resumed) = if let Some((id, frozen)) = unfinished {
            let templates = Templates::from_frozen(&frozen.templates)
                .map_err(|p| problems.extend(p))
                .ok();
            let edition = Edition {
                id,
                date: frozen.date,
                articles: frozen.articles,
            };
            if let Some(list) = &mut subscribers {
                list.audience = frozen.audience;
            }
            (Some(Some(edition)), templates, true)
        } else {
            if let Some(list) = &mut subscribers {
                list.audience = if args.tags.is_empty() {
                    config.selection.audience.clone()
                } else {
                    args.tags.clone()
                };
            }
            let today = args.date.unwrap_or_else(|| clock.today());
            let articles = if !args.articles.is_empty() {
                articles::load_files(&args.articles)
            } else if !config.sources.is_empty() && !config.paths.articles.exists() {
                // Feeds alone: the Markdown folder is optional then.
                Ok(Vec::new())
            } else {
                articles::load_dir(&config.paths.articles)
            }
            .map_err(|p| problems.extend(p))
            .ok()
            .map(|mut markdown| {
                if args.articles.is_empty() && !config.sources.is_empty() {
                    let (items, r) = read_sources(&config, today);
                    markdown.extend(items);
                    reports = r;
                }
                markdown
            });
            let templates = Templates::load(config.paths.templates.as_deref())
                .map_err(|p| problems.extend(p))
                .ok();
            let edition = match articles {
                Some(all) => {
                    let chosen = if args.articles.is_empty() {
                        let (sent, history) = match journal {
                            Some(j) => (j.sent_articles()?, j.source_history()?),
                            None => Default::default(),
                        };
                        let rules =
                            Rules::new(&config.selection, today, history, args.since, args.until);
                        let (chosen, why) = selection::select(all, &sent, &rules);
                        explained = why;
                        chosen
                    } else {
                        all
                    };
                    Some((!chosen.is_empty()).then(|| Edition::new(today, chosen)))
                }
                None => None,
            };
            (edition, templates, false)
        };

        let mut notes = Vec::new();
        let dkim = match &config.dkim {
            Some(d) => crate::mail::dkim::load(d, config.newsletter.from.address.domain())
                .map_err(|e| {
                    problems.push(Problem::new(&config.path, format!("{e:#}")).field("dkim"));
                })
                .ok()
                .map(|(key, warnings)| {
                    notes.extend(warnings);
                    Some(key)
                }),
            None => Some(None),
        };
        if let Some(Some(edition)) = &edition {
            notes.extend(
                edition
                    .articles
                    .iter()
                    .flat_map(|a| a.notes.iter().cloned()),
            );
        }
        // "Nothing new" cannot be told while a source is down: that is a failure, not an
        // empty week, and cron should hear of it (exit 1).
        let failed: Vec<&str> = reports
            .iter()
            .filter(|r| r.outcome.is_err())
            .map(|r| r.name.as_str())
            .collect();
        if matches!(edition, Some(None)) && problems.is_empty() && !failed.is_empty() {
            anyhow::bail!(
                "no article to send, and these sources could not be read: {} (nothing was sent)",
                failed.join(", ")
            );
        }
        let (Some(subscribers), Some(edition), Some(templates), Some(signer), Some(dkim)) =
            (subscribers, edition, templates, signer, dkim)
        else {
            return Err(problems.into());
        };
        Ok(Project {
            config,
            subscribers,
            edition,
            resumed,
            templates,
            signer,
            dkim,
            clock,
            explained,
            sources: reports,
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
        Mailer::new(&self.config, &edition.id, &self.signer, self.clock)
            .with_dkim(self.dkim.as_ref())
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
    let encoded = composer.encode(to).map_err(|p| anyhow::anyhow!("{p}"))?;
    mailer.message(to, &encoded)
}

/// Renders one recipient, for commands that need a single message.
pub fn render_one(composer: &Composer<'_>, sub: &Subscriber) -> Result<Rendered, Problems> {
    composer.render(sub).map_err(Problems::from)
}
