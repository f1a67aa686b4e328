//! `newsletter suppressions`: list the addresses no edition goes to, and lift them.

use anyhow::{Result, bail};

use crate::cli::{Cli, LiftArgs, SuppressionsAction, SuppressionsArgs};
use crate::clock::Clock;
use crate::config::Config;
use crate::exit::Exit;
use crate::input::address::EmailAddress;
use crate::state::Journal;
use crate::state::lock::RunLock;
use crate::state::suppressions::{self, Suppression};

pub(crate) fn run(cli: &Cli, args: &SuppressionsArgs) -> Result<Exit> {
    let config = Config::load(&cli.config)?;
    match &args.action {
        None | Some(SuppressionsAction::List) => list(&config, args.json),
        Some(SuppressionsAction::Lift(lift)) => self::lift(&config, lift, args.json),
    }
}

fn list(config: &Config, json: bool) -> Result<Exit> {
    let all = if config.paths.state.exists() {
        suppressions::list(&mut Journal::open(&config.paths.state)?)?
    } else {
        Vec::new()
    };
    if json {
        crate::say!("{}", serde_json::to_string_pretty(&all)?);
    } else if all.is_empty() {
        eprintln!("no address is suppressed");
    } else {
        for s in &all {
            print_one(s);
        }
    }
    Ok(Exit::Done)
}

/// One line per address: address, day, reason; tab-separated for scripts.
fn print_one(s: &Suppression) {
    crate::say!("{}\t{}\t{}", s.email, s.day(), s.reason);
}

fn lift(config: &Config, args: &LiftArgs, json: bool) -> Result<Exit> {
    // Reopening an edition must not race a send that is finishing it.
    let _lock = RunLock::acquire(&config.paths.state, "newsletter suppressions lift")?;
    let mut journal = Journal::open(&config.paths.state)?;
    journal.replay_send_log(&config.paths.state)?;
    if args.sender_side {
        let restored = suppressions::lift_sender_side(&mut journal, Clock::from_env()?.now())?;
        if json {
            crate::say!("{}", serde_json::to_string_pretty(&restored)?);
            return Ok(Exit::Done);
        }
        for s in &restored.suppressions {
            crate::say!("lifted\t{}\t{}\t{}", s.email, s.day(), s.reason);
        }
        for (edition, email, reply) in &restored.deliveries {
            crate::say!("pending\t{email}\t{edition}\t{reply}");
        }
        eprintln!(
            "{} suppression{} lifted and {} failed deliver{} made pending again{}",
            restored.suppressions.len(),
            crate::commands::check::plural(restored.suppressions.len()),
            restored.deliveries.len(),
            if restored.deliveries.len() == 1 {
                "y"
            } else {
                "ies"
            },
            if restored.editions.is_empty() {
                String::new()
            } else {
                format!(
                    "; `newsletter send` finishes edition {}",
                    restored.editions.join(", ")
                )
            }
        );
        return Ok(Exit::Done);
    }
    let lifted = if args.all {
        suppressions::lift_all(&mut journal)?
    } else {
        let mut emails = Vec::new();
        for raw in &args.addresses {
            match EmailAddress::parse(raw) {
                Ok(e) => emails.push(e.to_string()),
                Err(e) => bail!("the address {e}"),
            }
        }
        let lifted = suppressions::lift(&mut journal, &emails)?;
        for e in emails.iter().filter(|e| !lifted.contains(e)) {
            eprintln!("warning: {e} was not suppressed");
        }
        lifted
    };
    if json {
        crate::say!("{}", serde_json::to_string_pretty(&lifted)?);
    } else {
        for e in &lifted {
            crate::say!("lifted\t{e}");
        }
    }
    Ok(Exit::Done)
}
