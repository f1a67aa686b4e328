//! `newsletter archive`: writes the web archive of every edition sent so far (pages that
//! exist are left as they are), and `publish`, which `send` calls when it freezes an
//! edition, so the page exists before the first message with its link goes out.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::archive::{self, Entry};
use crate::cli::{ArchiveArgs, Cli};
use crate::clock::Clock;
use crate::commands::Log;
use crate::config::Config;
use crate::edition::Edition;
use crate::exit::Exit;
use crate::project::{EditionRequest, Project};
use crate::render::compose::Composer;
use crate::state::Journal;

pub(crate) fn run(cli: &Cli, args: &ArchiveArgs, log: &Log) -> Result<Exit> {
    let clock = Clock::from_env()?;
    let config = Config::load(&cli.config)?;
    let Some(dir) = args
        .out
        .clone()
        .or_else(|| config.archive.as_ref().and_then(|a| a.dir.clone()))
    else {
        bail!("where to? give --out DIR, or set `dir` in [archive]");
    };
    let Some(journal) = Journal::open_read_only(&config.paths.state)? else {
        log.info("no edition has been sent yet: the archive is empty");
        return Ok(Exit::NothingToDo);
    };
    let ids = journal.sent_editions()?;
    for id in &ids {
        let request = EditionRequest {
            edition: Some(id.clone()),
            ..EditionRequest::default()
        };
        let project = Project::load(config.clone(), &request, clock, Some(&journal))?;
        let Some(edition) = &project.edition else {
            continue;
        };
        let (page, written) = publish(&dir, &config, edition, &project.composer(edition))?;
        crate::say!(
            "{}\t{}",
            page.display(),
            if written { "written" } else { "unchanged" }
        );
    }
    log.info(format!(
        "{} edition{} in {}",
        ids.len(),
        crate::commands::check::plural(ids.len()),
        dir.display()
    ));
    if args.out.is_none() {
        run_publish(&config, log)?;
    }
    Ok(Exit::Done)
}

/// Runs `[archive] publish` in the config's folder, with `NEWSLETTER_ARCHIVE` set to the
/// archive folder; a failure is an error naming the command and its exit status.
pub(crate) fn run_publish(config: &Config, log: &Log) -> Result<()> {
    let Some(archive) = &config.archive else {
        return Ok(());
    };
    let (Some(command), Some(dir)) = (&archive.publish, &archive.dir) else {
        return Ok(());
    };
    let folder = config.path.parent().unwrap_or(Path::new("."));
    let folder = if folder.as_os_str().is_empty() {
        Path::new(".")
    } else {
        folder
    };
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(folder)
        .env("NEWSLETTER_ARCHIVE", dir)
        .stdin(std::process::Stdio::null())
        .status()
        .with_context(|| format!("cannot run the archive's publish command {command:?}"))?;
    if !status.success() {
        bail!("the archive's publish command {command:?} failed ({status})");
    }
    log.info(format!("published: {command}"));
    Ok(())
}

/// Writes one edition's page (when it has none yet), the index and the feed.
pub(crate) fn publish(
    dir: &Path,
    config: &Config,
    edition: &Edition,
    composer: &Composer<'_>,
) -> Result<(std::path::PathBuf, bool)> {
    let (title, html) = composer
        .web_page()
        .map_err(|p| anyhow::anyhow!("cannot render the edition's web page: {p}"))?;
    let entry = Entry {
        id: edition.id.clone(),
        date: edition.date.to_string(),
        title: title.trim().to_string(),
    };
    archive::publish(dir, config, composer.locale(), &entry, &html)
}
