//! newsletter: compose a digest from Markdown articles and deliver it, once, to every
//! subscribed address.
//!
//! The pipeline, one module per stage: `config` → `subscribers` + `articles` → `edition`
//! → `templates` + `compose` (per recipient) → `message` (MIME bytes) → `transport`.

pub mod address;
pub mod articles;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod compose;
pub mod config;
pub mod edition;
pub mod exit;
pub mod message;
pub mod problems;
pub mod project;
pub mod secret;
pub mod state;
pub mod subscribers;
pub mod templates;
pub mod token;
pub mod transport;

use cli::{Cli, Command};
use commands::Log;
use exit::Exit;
use problems::Problems;

/// Runs one command and turns its outcome into an exit status, printing any error with its
/// whole chain of causes on stderr.
pub fn run(cli: &Cli) -> Exit {
    let log = Log { quiet: cli.quiet };
    let result = match &cli.command {
        Command::Check(args) => commands::check::run(cli, args, &log),
        Command::Preview(args) => commands::preview::run(cli, args, &log),
        Command::Send(args) => commands::send::run(cli, args, &log),
    };
    match result {
        Ok(exit) => exit,
        Err(e) => match e.downcast_ref::<Problems>() {
            Some(problems) => {
                eprintln!("error: {problems}");
                Exit::BadInput
            }
            None => {
                eprintln!("error: {e:#}");
                Exit::Failed
            }
        },
    }
}
