//! newsletter: compose a digest from Markdown articles and deliver it, once, to every
//! subscribed address.
//!
//! The pipeline, one folder per stage, each depending only on those before it:
//! `config` (the resolved config) → `input` (subscribers, articles) → `edition` (which
//! articles, selection) → `render` (templates, per-recipient text) → `mail` (MIME bytes,
//! DKIM, what a reply means) → `state` (the `SQLite` journal, suppressions, the list file)
//! → `inbound` (mail that comes back: read, classified, acted on through the state) →
//! `feeds` (articles from RSS/Atom/JSON, cached in the state) → `deliver` (SMTP or the
//! outbox) → `project` (everything loaded and planned for one run) → `commands`; `http`
//! (the bounded HTTP server under `serve`) stands apart, used by `commands` alone.
//! `.ci/module-cycles` checks that no module imports its way back.

/// Prints a line of data on stdout. A closed pipe (`newsletter status | head`) ends the
/// output quietly instead of panicking like `println!`.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub(crate) mod archive;
pub(crate) mod atomic_file;
pub mod cli;
pub mod clock;
pub(crate) mod commands;
pub(crate) mod config;
pub(crate) mod deliver;
pub(crate) mod dns;
pub(crate) mod edition;
pub(crate) mod exit;
pub(crate) mod feeds;
pub(crate) mod http;
pub mod import;
pub(crate) mod inbound;
pub mod input;
pub(crate) mod links;
pub(crate) mod locale;
pub(crate) mod mail;
pub(crate) mod privacy;
pub(crate) mod problems;
pub mod project;
#[cfg(test)]
mod properties;
pub(crate) mod render;
pub(crate) mod schedule;
pub(crate) mod signup;
pub(crate) mod state;
pub(crate) mod token;

use cli::{Cli, Command};
use commands::Log;
use exit::Exit;
use problems::Problems;

/// Runs one command and turns its outcome into an exit status, printing any error with its
/// whole chain of causes on stderr.
pub fn run(cli: &Cli) -> Exit {
    let log = Log { quiet: cli.quiet };
    let result = match &cli.command {
        Command::Check(args) if args.links => commands::links::run(cli, args),
        Command::Check(args) => commands::check::run(cli, args, &log),
        Command::Preview(args) => commands::preview::run(cli, args, &log),
        Command::Send(args) => commands::send::run(cli, args, &log),
        Command::Status(args) => commands::status::run(cli, args),
        Command::Approve(args) => commands::approve::run(cli, args),
        Command::Unsubscribe(args) => commands::list::unsubscribe(cli, args),
        Command::Subscribe(args) => commands::list::subscribe(cli, args),
        Command::Suppressions(args) => commands::suppressions::run(cli, args),
        Command::Import(args) => commands::import::import(cli, args),
        Command::Export(args) => commands::import::export(cli, args),
        Command::Forget(args) => commands::privacy::forget(cli, args),
        Command::ExportData(args) => commands::privacy::export_data(cli, args),
        Command::Archive(args) => commands::archive::run(cli, args, &log),
        Command::Bounces(args) => commands::bounces::run(cli, args, &log),
        Command::Serve(args) => commands::serve::run(cli, args, &log),
        Command::Init(args) => commands::init::run(args),
        Command::Completions(args) => {
            let mut cmd = <cli::Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut cmd, "newsletter", &mut std::io::stdout());
            Ok(exit::Exit::Done)
        }
        Command::Man => {
            let cmd = <cli::Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .map(|()| exit::Exit::Done)
                .map_err(anyhow::Error::from)
        }
    };
    match result {
        Ok(exit) => exit,
        Err(e) => {
            if let Some(problems) = e.downcast_ref::<Problems>() {
                eprintln!("error: {problems}");
                Exit::BadInput
            } else if let Some(locked) = e.downcast_ref::<state::lock::Locked>() {
                eprintln!("error: {locked}; nothing was done");
                Exit::Locked
            } else {
                eprintln!("error: {e:#}");
                Exit::Failed
            }
        }
    }
}
