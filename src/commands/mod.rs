//! One module per subcommand; each returns the exit status of its outcome.

pub(crate) mod approve;
pub(crate) mod archive;
pub(crate) mod bounces;
pub(crate) mod check;
pub(crate) mod import;
pub(crate) mod init;
pub(crate) mod links;
pub(crate) mod list;
pub(crate) mod preview;
pub(crate) mod privacy;
pub(crate) mod send;
pub(crate) mod serve;
pub(crate) mod status;
pub(crate) mod suppressions;
pub(crate) mod webhooks;

use anyhow::{Result, bail};

use crate::input::address::EmailAddress;
use crate::input::subscribers::{Status, Subscriber, SubscriberList};

/// What `check`, `preview` and `send` say when no article is waiting (exit 6).
pub(crate) const NOTHING_TO_DO: &str = "nothing to do: no new article (none marked `selected = true`, no feed item since the last edition, or all already sent; see `preview --explain`)";

/// No new edition: the same answer from `send`, `check`, `preview` and `send --dry-run`.
/// When today's edition already went out, that is done (exit 0), and `preview --edition`
/// shows it; otherwise there is nothing to do (exit 6). Said on stdout unless `quiet`.
pub(crate) fn nothing_new(
    journal: Option<&crate::state::Journal>,
    project: &crate::project::Project,
    quiet: bool,
) -> anyhow::Result<crate::exit::Exit> {
    if let Some(journal) = journal
        && let Some(latest) = journal.latest_edition()?
        && latest.completed
        && latest.date == project.clock.today()
    {
        let id = latest.id;
        let sent = journal.counts(&id)?[&crate::state::State::Sent];
        if !quiet {
            crate::say!(
                "edition {id} already sent to {sent} recipient{}; nothing new to send \
                 (`newsletter preview --edition {id}` shows it)",
                check::plural(sent)
            );
        }
        return Ok(crate::exit::Exit::Done);
    }
    if !quiet {
        crate::say!("{NOTHING_TO_DO}");
    }
    Ok(crate::exit::Exit::NothingToDo)
}

/// Each feed source's outcome and every candidate article with why it is in or out, on
/// stdout (this is what was asked for).
pub(crate) fn print_selection(project: &crate::project::Project) {
    if let (true, Some(edition)) = (project.resumed, &project.edition) {
        crate::say!(
            "edition {} is unfinished: it is resumed with the {} articles chosen when it was first sent",
            edition.id,
            edition.articles.len()
        );
    }
    for r in &project.sources {
        match &r.outcome {
            Ok(how) => crate::say!("source {} ({}): {how}", r.name, r.location),
            Err(why) => crate::say!("source {} ({}): FAILED: {why}", r.name, r.location),
        }
    }
    if !project.explained.is_empty() {
        crate::say!(
            "{}",
            crate::edition::selection::render(&project.explained).trim_end()
        );
    }
}

/// Informational lines go to stderr, and not at all with `--quiet`; data goes to stdout.
pub(crate) struct Log {
    pub quiet: bool,
}

impl Log {
    pub(crate) fn info(&self, message: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    /// Warnings print even under `--quiet`; a method all the same, so callers hold one `Log`.
    #[allow(clippy::unused_self)]
    pub(crate) fn warn(&self, message: impl std::fmt::Display) {
        eprintln!("warning: {message}");
    }
}

/// The subscriber entry for `address`, or a bare recipient for an address not on the list.
pub(crate) fn recipient_for(
    address: &str,
    list: &SubscriberList,
    must_be_listed: bool,
) -> Result<Subscriber> {
    let email = match EmailAddress::parse(address) {
        Ok(e) => e,
        Err(e) => bail!("--to: the address {e}"),
    };
    match list.find(&email) {
        Some(s) => Ok(s.clone()),
        None if must_be_listed => bail!("--to: {email} is not in the subscriber list"),
        None => Ok(Subscriber {
            email,
            name: None,
            status: Status::Subscribed,
            since: None,
            tags: Vec::new(),
        }),
    }
}
