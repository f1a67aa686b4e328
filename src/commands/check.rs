//! `newsletter check`: everything `send` would do before the first byte goes out.

use anyhow::Result;

use super::Log;
use crate::cli::{CheckArgs, Cli};
use crate::clock::Clock;
use crate::exit::Exit;
use crate::project::{Project, render_all};
use crate::state::Journal;

pub(crate) fn run(cli: &Cli, args: &CheckArgs, log: &Log) -> Result<Exit> {
    let project = {
        let config = crate::config::Config::load(&cli.config)?;
        let journal = Journal::open_read_only(&config.paths.state)?;
        Project::load(
            config,
            &args.edition.request(),
            Clock::from_env()?,
            journal.as_ref(),
        )?
    };
    for note in project.notes() {
        log.warn(note);
    }
    let total = project.subscribers.entries.len();
    super::print_selection(&project);
    let Some(edition) = &project.edition else {
        crate::say!("{}", super::NOTHING_TO_DO);
        return Ok(Exit::NothingToDo);
    };
    let composer = project.composer(edition);
    let rendered = render_all(&composer, project.subscribers.active())?;
    crate::say!(
        "ok: edition {} ({} article{}) renders for all {rendered} subscribed recipient{}; {} unsubscribed skipped",
        edition.id,
        edition.articles.len(),
        plural(edition.articles.len()),
        plural(rendered),
        total - rendered,
    );
    Ok(Exit::Done)
}

pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
