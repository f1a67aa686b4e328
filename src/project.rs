//! Loads a whole project (config, subscribers, articles, templates, key) in one go,
//! collecting the problems of every file before giving up, and renders every recipient
//! before anything is sent.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;

use crate::articles;
use crate::cli::EditionArgs;
use crate::clock::Clock;
use crate::compose::{Composer, Rendered};
use crate::config::Config;
use crate::edition::{self, Edition};
use crate::problems::{Problem, Problems};
use crate::state::State;
use crate::subscribers::{self, Subscriber, SubscriberList};
use crate::templates::Templates;
use crate::token::Signer;

pub struct Project {
    pub config: Config,
    pub subscribers: SubscriberList,
    /// `None` when no article is waiting to be sent.
    pub edition: Option<Edition>,
    pub templates: Templates,
    pub signer: Signer,
    pub clock: Clock,
}

impl Project {
    pub fn load(config_path: &Path, args: &EditionArgs, clock: Clock) -> Result<Project> {
        let config = Config::load(config_path)?;
        let mut problems = Problems::default();

        let subscribers = subscribers::load(&config.paths.subscribers)
            .map_err(|p| problems.extend(p))
            .ok();
        let articles = if args.articles.is_empty() {
            articles::load_dir(&config.paths.articles)
        } else {
            articles::load_files(&args.articles)
        }
        .map_err(|p| problems.extend(p))
        .ok();
        let templates = Templates::load(config.paths.templates.as_deref())
            .map_err(|p| problems.extend(p))
            .ok();
        let signer = config
            .unsubscribe
            .secret
            .load()
            .map(Signer::new)
            .map_err(|e| {
                problems.push(Problem::new(&config.path, format!("{e:#}")).field("unsubscribe"));
            })
            .ok();

        let (Some(subscribers), Some(articles), Some(templates), Some(signer)) =
            (subscribers, articles, templates, signer)
        else {
            return Err(problems.into());
        };
        let chosen = if args.articles.is_empty() {
            edition::select(articles, &State::sent_articles(&config.paths.state)?)
        } else {
            articles
        };
        let edition = (!chosen.is_empty())
            .then(|| Edition::new(args.date.unwrap_or_else(|| clock.today()), chosen));
        Ok(Project {
            config,
            subscribers,
            edition,
            templates,
            signer,
            clock,
        })
    }

    pub fn composer<'a>(&'a self, edition: &Edition) -> Composer<'a> {
        Composer::new(&self.config, edition, &self.templates, &self.signer)
    }
}

/// Renders every recipient; returns the problems, each once, with how many recipients
/// it affects.
pub fn render_all<'a>(
    composer: &Composer<'_>,
    recipients: impl IntoIterator<Item = &'a Subscriber>,
) -> Result<usize, Problems> {
    let mut seen: BTreeMap<String, (Problem, usize, String)> = BTreeMap::new();
    let mut count = 0;
    for sub in recipients {
        count += 1;
        if let Err(p) = composer.render(sub) {
            seen.entry(p.to_string())
                .or_insert_with(|| (p, 0, sub.email.to_string()))
                .1 += 1;
        }
    }
    let problems = seen
        .into_values()
        .map(|(mut p, n, first)| {
            p.message = if n == 1 {
                format!("{} (rendering for {first})", p.message)
            } else {
                format!("{} (rendering for {first} and {} more)", p.message, n - 1)
            };
            p
        })
        .collect();
    Problems(problems).into_result(count)
}

/// Renders one recipient, for commands that need a single message.
pub fn render_one(composer: &Composer<'_>, sub: &Subscriber) -> Result<Rendered, Problems> {
    composer.render(sub).map_err(Problems::from)
}
