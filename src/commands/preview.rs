//! `newsletter preview`: the exact message one subscriber would receive, as files.

use std::fs;

use anyhow::{Context, Result};

use super::{Log, recipient_for};
use crate::cli::{Cli, PreviewArgs};
use crate::clock::Clock;
use crate::exit::Exit;
use crate::input::subscribers::{Status, Subscriber};
use crate::project::{Project, outgoing, render_one};
use crate::state::Journal;

pub(crate) fn run(cli: &Cli, args: &PreviewArgs, log: &Log) -> Result<Exit> {
    let clock = Clock::from_env()?;
    let config = crate::config::Config::load(&cli.config)?;
    let journal = Journal::open_read_only(&config.paths.state)?;
    let mut request = args.edition.request();
    request.edition.clone_from(&args.edition_id);
    let project = Project::load(config, &request, clock, journal.as_ref())?;
    for note in project.notes() {
        log.warn(note);
    }
    if args.explain {
        super::print_selection(&project);
    }
    let Some(edition) = &project.edition else {
        return super::nothing_new(journal.as_ref(), &project, false);
    };
    let recipient = match &args.to {
        Some(address) => recipient_for(address, &project.subscribers, true)?,
        None => {
            if let Some(s) = project.subscribers.active().next() {
                s.clone()
            } else {
                log.info("no subscribed address in the list: previewing for reader@example.org");
                sample_reader()
            }
        }
    };
    let composer = project.composer(edition);
    let rendered = render_one(&composer, &recipient)?;
    let message = outgoing(&composer, &project.mailer(edition), &recipient)?;

    // Beside the config file unless told otherwise: the project's folder, wherever the
    // command is run from.
    let out = args.out.clone().unwrap_or_else(|| {
        project
            .config
            .path
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("preview")
    });
    fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let stem = format!(
        "{}-{}",
        edition.id,
        crate::deliver::outbox::file_name_for(&recipient.email)
    );
    for (ext, bytes) in [
        ("eml", message.bytes.as_slice()),
        ("html", rendered.html.as_bytes()),
        ("txt", rendered.text.as_bytes()),
    ] {
        // Whole or not at all (a full disk leaves no truncated message), readable by the
        // owner alone: the message holds a live unsubscribe token.
        let path = crate::atomic_file::write(&out.join(format!("{stem}.{ext}")), bytes)?;
        crate::say!("{}", path.display());
    }
    log.info(format!(
        "preview of {} for {}",
        super::check::edition_named(edition),
        recipient.email
    ));
    Ok(Exit::Done)
}

fn sample_reader() -> Subscriber {
    Subscriber {
        email: crate::input::address::EmailAddress::parse("reader@example.org")
            .unwrap_or_else(|_| unreachable!("a valid literal address")),
        name: None,
        status: Status::Subscribed,
        since: None,
        tags: Vec::new(),
    }
}
