//! `newsletter approve EDITION`: the editor's go for a draft, bound to the hash of its
//! frozen content (articles, templates), so a change made after it needs a new approval.

use anyhow::Result;

use crate::cli::{ApproveArgs, Cli};
use crate::clock::Clock;
use crate::config::Config;
use crate::exit::Exit;
use crate::state::Journal;

pub(crate) fn run(cli: &Cli, args: &ApproveArgs) -> Result<Exit> {
    let config = Config::load(&cli.config)?;
    let clock = Clock::from_env()?;
    let mut journal = Journal::open(&config.paths.state)?;
    let hash = journal.approve(&args.edition, clock.now())?;
    crate::say!(
        "approved edition {} (content {}): the next send delivers it",
        args.edition,
        &hash[..12]
    );
    Ok(Exit::Done)
}
