//! `newsletter subscribe` and `newsletter unsubscribe`: record the change durably in the
//! state database (a running send honours it at once), then write it into
//! `subscribers.toml` under the list lock, which no send holds for longer than a rewrite.

use anyhow::{Result, bail};

use crate::cli::{Cli, SubscribeArgs, UnsubscribeArgs};
use crate::clock::Clock;
use crate::config::Config;
use crate::exit::Exit;
use crate::input::address::{DisplayName, EmailAddress};
use crate::state::Journal;
use crate::state::listfile;

pub(crate) fn unsubscribe(cli: &Cli, args: &UnsubscribeArgs) -> Result<Exit> {
    let config = Config::load(&cli.config)?;
    let email = if args.target.contains('@') {
        match EmailAddress::parse(&args.target) {
            Ok(e) => e,
            Err(e) => bail!("the address {e}"),
        }
    } else {
        let (signer, _) = crate::token::Signer::for_list(&config.unsubscribe)?;
        match signer.verify_unsubscribe_token(&config.newsletter.list_id, &args.target) {
            Some(e) => e,
            None => bail!(
                "{:?} is neither an address nor a valid unsubscribe token of this list",
                args.target
            ),
        }
    };
    let mut journal = Journal::open(&config.paths.state)?;
    let clock = Clock::from_env()?;
    if crate::privacy::Forgotten::load(&journal, &config.paths.state)?.contains(&email) {
        crate::say!("{email} was forgotten on request: it is never mailed, nothing to do");
        return Ok(Exit::Done);
    }
    journal.record_unsubscribe(email.as_str(), "command line", clock.now())?;
    report(
        &config,
        &mut journal,
        &format!("{email} is unsubscribed"),
        &clock,
    )
}

pub(crate) fn subscribe(cli: &Cli, args: &SubscribeArgs) -> Result<Exit> {
    let config = Config::load(&cli.config)?;
    let email = match EmailAddress::parse(&args.address) {
        Ok(e) => e,
        Err(e) => bail!("the address {e}"),
    };
    let name = match args.name.as_deref().map(DisplayName::parse).transpose() {
        Ok(n) => n,
        Err(e) => bail!("--name {e}"),
    };
    let clock = Clock::from_env()?;
    let mut journal = Journal::open(&config.paths.state)?;
    if crate::privacy::Forgotten::load(&journal, &config.paths.state)?.contains(&email) {
        bail!(
            "{email} was forgotten on its owner's request (newsletter forget): it is never subscribed or mailed again"
        );
    }
    journal.record_subscribe(
        email.as_str(),
        name.as_ref().map(DisplayName::as_str),
        clock.now(),
    )?;
    if let Some(s) = crate::state::suppressions::find(&mut journal, email.as_str())? {
        eprintln!(
            "warning: {email} is suppressed since {} ({}): no edition goes to it until \
             `newsletter suppressions lift {email}`",
            s.day(),
            s.reason
        );
    }
    report(
        &config,
        &mut journal,
        &format!("{email} is subscribed"),
        &clock,
    )
}

fn report(config: &Config, journal: &mut Journal, done: &str, clock: &Clock) -> Result<Exit> {
    if listfile::write_pending(config, journal, "newsletter (list edit)", clock)?.is_some() {
        crate::say!("{done}; {} updated", config.paths.subscribers.display());
    } else {
        crate::say!(
            "{done} (recorded; {} is being rewritten by another run, and the next one writes it)",
            config.paths.subscribers.display()
        );
    }
    Ok(Exit::Done)
}
