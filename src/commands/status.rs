//! `newsletter status`: what the journal says about an edition, for people or, with
//! `--json`, for scripts.

use anyhow::{Result, bail};
use serde::Serialize;

use crate::cli::{Cli, StatusArgs};
use crate::config::Config;
use crate::exit::Exit;
use crate::inbound::rates::Rates;
use crate::state::{Journal, Row, State};

#[derive(Serialize)]
struct Report {
    edition: String,
    date: String,
    complete: bool,
    counts: std::collections::BTreeMap<&'static str, usize>,
    /// Deferred, failed and in-doubt recipients, with the server's reply.
    attention: Vec<Row>,
    /// What came back (bounces, complaints), beside the thresholds.
    returns: Rates,
}

pub(crate) fn run(cli: &Cli, args: &StatusArgs) -> Result<Exit> {
    let config = Config::load(&cli.config)?;
    let Some(journal) = Journal::open_read_only(&config.paths.state)? else {
        crate::say!(
            "no edition has been sent yet ({} does not exist)",
            config.paths.state.display()
        );
        return Ok(Exit::NothingToDo);
    };
    let row = match &args.edition {
        Some(id) => match journal.edition(id)? {
            Some(e) => e,
            None => bail!(
                "there is no edition {id:?} in {}",
                config.paths.state.display()
            ),
        },
        None => {
            if let Some(e) = journal.latest_edition()? {
                e
            } else {
                crate::say!("no edition has been sent yet");
                return Ok(Exit::NothingToDo);
            }
        }
    };
    let (edition, date, complete) = (row.id, row.date.to_string(), row.completed);
    let counts = journal.counts(&edition)?;
    let attention = journal.rows(&edition, &[State::Deferred, State::Failed, State::InDoubt])?;
    let returns = Rates::of(journal.returns(&edition)?, &config.bounces.thresholds);
    let report = Report {
        edition,
        date,
        complete,
        counts: counts.iter().map(|(s, n)| (s.as_str(), *n)).collect(),
        attention,
        returns,
    };
    if args.json {
        crate::say!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report, &config.bounces.thresholds);
    }
    Ok(Exit::Done)
}

fn print_text(r: &Report, t: &crate::config::Thresholds) {
    crate::say!(
        "edition {} ({}): {}",
        r.edition,
        r.date,
        if r.complete {
            "complete"
        } else {
            "not finished: run `newsletter send` to continue"
        }
    );
    for (state, n) in &r.counts {
        if *n > 0 {
            crate::say!("  {state:<10} {n}");
        }
    }
    crate::say!("  came back (of {} sent):", r.returns.returns.sent);
    for line in r.returns.lines(t) {
        crate::say!("  {line}");
    }
    for row in &r.attention {
        let code = row.code.map(|c| format!(" {c}")).unwrap_or_default();
        crate::say!(
            "{:<10} {} (attempts {}){code}: {}",
            row.state.as_str(),
            row.email,
            row.attempts,
            row.reply.as_deref().unwrap_or("")
        );
    }
}
