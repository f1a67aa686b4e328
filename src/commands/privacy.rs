//! `newsletter forget ADDRESS` and `newsletter export-data ADDRESS`: what an operator
//! answers a reader's request to erase, or to see, what is kept about them.

use anyhow::{Result, bail};
use serde_json::json;

use crate::cli::{AddressArgs, Cli};
use crate::clock::Clock;
use crate::config::{Config, Transport};
use crate::exit::Exit;
use crate::input::address::EmailAddress;
use crate::input::subscribers;
use crate::privacy::{ForgetKey, Forgotten, files_about, spellings};
use crate::state::Journal;
use crate::state::lock::RunLock;

fn address(raw: &str) -> Result<EmailAddress> {
    EmailAddress::parse(raw).or_else(|e| bail!("the address {e}"))
}

/// The default preview folder (`preview --out` elsewhere is the operator's to clear).
fn preview_dir(config: &Config) -> std::path::PathBuf {
    config
        .path
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join("preview")
}

fn outbox(config: &Config) -> Option<&std::path::Path> {
    match &config.transport {
        Transport::Outbox(dir) => Some(dir.as_path()),
        Transport::Smtp(_) => None,
    }
}

pub(crate) fn forget(cli: &Cli, args: &AddressArgs) -> Result<Exit> {
    let config = Config::load(&cli.config)?;
    let email = address(&args.address)?;
    // No send may be running: it holds the address's rows and would write them again.
    let _run = RunLock::acquire(&config.paths.state, "newsletter forget")?;
    let clock = Clock::from_env()?;
    let mut journal = Journal::open(&config.paths.state)?;
    // A send that stopped may have left the address in its log: into the database with it,
    // and the log cleared, before the rows are deleted.
    journal.replay_send_log(&config.paths.state)?;
    let key = ForgetKey::load_or_create(&config.paths.state)?;
    // The file first: if the run stops after it, running forget again finishes the rest.
    let entries = crate::state::listfile::remove(&config, &email)?;
    let editions = journal.edition_ids()?;
    let files = files_about(&email, outbox(&config), &preview_dir(&config), &editions);
    for f in &files {
        std::fs::remove_file(f)
            .map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", f.display()))?;
    }
    let erased = journal.forget(&spellings(&email), &key.hash(&email), clock.now())?;
    crate::say!(
        "{email} is forgotten: {entries} subscriber entr{} removed from {}; {} deliveries, {} suppression, {} unsubscribe, {} list change, {} bounce and {} sign-up rows deleted; {} file{} removed; only a keyed hash is kept, so it is never mailed again",
        if entries == 1 { "y" } else { "ies" },
        config.paths.subscribers.display(),
        erased.deliveries,
        erased.suppressions,
        erased.unsubscribes,
        erased.list_changes,
        erased.bounce_findings,
        erased.signups,
        files.len(),
        if files.len() == 1 { "" } else { "s" },
    );
    for f in &files {
        crate::say!("removed {}", f.display());
    }
    Ok(Exit::Done)
}

pub(crate) fn export_data(cli: &Cli, args: &AddressArgs) -> Result<Exit> {
    let config = Config::load(&cli.config)?;
    let email = address(&args.address)?;
    let list = subscribers::load(&config.paths.subscribers)?;
    let entries: Vec<serde_json::Value> = list
        .entries
        .iter()
        .filter(|s| s.email.as_str().eq_ignore_ascii_case(email.as_str()))
        .map(|s| {
            json!({
                "email": s.email.as_str(),
                "name": s.name.as_ref().map(crate::input::address::DisplayName::as_str),
                "status": s.status.to_string(),
                "since": s.since.map(|d| d.to_string()),
                "tags": s.tags,
            })
        })
        .collect();
    let journal = Journal::open_read_only(&config.paths.state)?;
    let (state, forgotten, editions) = match &journal {
        Some(j) => (
            j.data_about(&spellings(&email))?,
            Forgotten::load(j, &config.paths.state)?.contains(&email),
            j.edition_ids()?,
        ),
        None => (json!({}), false, Vec::new()),
    };
    let files: Vec<String> = files_about(&email, outbox(&config), &preview_dir(&config), &editions)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let report = json!({
        "address": email.as_str(),
        "forgotten": forgotten,
        "subscriber_file": { "path": config.paths.subscribers.display().to_string(), "entries": entries },
        "state": state,
        "files": files,
    });
    crate::say!("{}", serde_json::to_string_pretty(&report)?);
    Ok(Exit::Done)
}
