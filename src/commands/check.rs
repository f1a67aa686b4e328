//! `newsletter check`: everything `send` would do before the first byte goes out.

use anyhow::Result;

use super::Log;
use crate::cli::{CheckArgs, Cli};
use crate::clock::Clock;
use crate::exit::Exit;
use crate::project::{Project, render_all};
use crate::state::Journal;

pub(crate) fn run(cli: &Cli, args: &CheckArgs, log: &Log) -> Result<Exit> {
    if args.relay {
        return relay(cli);
    }
    let config = crate::config::Config::load(&cli.config)?;
    let journal = Journal::open_read_only(&config.paths.state)?;
    let project = Project::load(
        config,
        &args.edition.request(),
        Clock::from_env()?,
        journal.as_ref(),
    )?;
    for note in project.notes() {
        log.warn(note);
    }
    let total = project.subscribers.entries.len();
    super::print_selection(&project);
    let Some(edition) = &project.edition else {
        return super::nothing_new(journal.as_ref(), &project, false);
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

/// `check --relay`: one session with the relay, as a send would open it, and nothing sent.
fn relay(cli: &Cli) -> Result<Exit> {
    let config = crate::config::Config::load(&cli.config)?;
    let crate::config::Transport::Smtp(smtp) = &config.transport else {
        crate::say!("the transport is the outbox: there is no relay to check");
        return Ok(Exit::Done);
    };
    let connector =
        crate::deliver::smtp::Connector::new(smtp, config.newsletter.from.address.domain())?;
    if let Some(w) = connector.warning() {
        eprintln!("warning: {w}");
    }
    let offers = connector
        .probe()
        .map_err(|e| e.context(format!("cannot open a session with {}", connector.server())))?;
    let security = match smtp.security {
        crate::config::Security::Tls => "implicit TLS, certificate verified",
        crate::config::Security::Starttls => "STARTTLS, certificate verified",
        crate::config::Security::None => "no TLS",
    };
    let auth = smtp.username.as_deref().map_or_else(
        || "no AUTH".to_string(),
        |u| {
            let how = if smtp.oauth_token.is_some() {
                " (XOAUTH2)"
            } else {
                ""
            };
            format!("authenticated as {u}{how}")
        },
    );
    crate::say!(
        "relay {}: connected, {security}, {auth}",
        connector.server()
    );
    crate::say!("offers: {offers}");
    let p = &smtp.pacing;
    crate::say!(
        "a send would use {} connection{}, at most {} messages each, {}, {}; nothing was sent",
        smtp.connections,
        plural(smtp.connections),
        p.max_per_connection,
        p.rate_per_second.map_or_else(
            || "no rate limit".to_string(),
            |r| format!("{r} messages a second")
        ),
        p.daily_quota.map_or_else(
            || "no daily quota".to_string(),
            |q| format!("{q} messages a day")
        ),
    );
    Ok(Exit::Done)
}

pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
