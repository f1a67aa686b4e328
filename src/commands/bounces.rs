//! `newsletter bounces`: read mail that came back from a Maildir, files or stdin, and act
//! on it through the state (committed first), then write the unsubscribes into the
//! subscriber file (comments kept), as the unsubscribe endpoint does.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::cli::{BouncesArgs, Cli};
use crate::clock::Clock;
use crate::commands::Log;
use crate::config::Config;
use crate::exit::Exit;
use crate::inbound::classify::Kind;
use crate::inbound::imap::Session;
use crate::inbound::{Intake, Outcome};
use crate::state::{Journal, listfile};
use crate::token::Signer;

/// The most of a message that is read; a bounce that returns a large original keeps its
/// report at the start.
const MAX_MESSAGE_BYTES: u64 = 16 * 1024 * 1024;

pub(crate) fn run(cli: &Cli, args: &BouncesArgs, log: &Log) -> Result<Exit> {
    if !args.stdin {
        return from_files(cli, args, log);
    }
    // Whatever stops the message from being recorded (the state locked or full, a config
    // being edited), the MTA keeps it and delivers it again later: nothing is lost.
    match from_stdin(cli, args, log) {
        Ok(exit) => Ok(exit),
        Err(e) => {
            eprintln!(
                "error: {e:#}; the message was not recorded: exit 75 asks the mail system to keep it and try again"
            );
            Ok(Exit::TempFail)
        }
    }
}

struct Run {
    config: Config,
    intake: Intake,
    clock: Clock,
    dry: bool,
    json: bool,
    totals: Totals,
}

#[derive(Default)]
struct Totals {
    messages: usize,
    by_kind: std::collections::BTreeMap<&'static str, usize>,
    acted: usize,
}

impl Run {
    fn open(cli: &Cli, args: &BouncesArgs) -> Result<Run> {
        let config = Config::load(&cli.config)?;
        let clock = Clock::from_env()?;
        let (signer, _) = Signer::for_list(&config.unsubscribe)?;
        let journal = if args.dry_run && !config.paths.state.exists() {
            Journal::in_memory()?
        } else {
            Journal::open(&config.paths.state)?
        };
        Ok(Run {
            intake: Intake::new(&config, journal, signer, args.dry_run),
            config,
            clock,
            dry: args.dry_run,
            json: args.json,
            totals: Totals::default(),
        })
    }

    /// Acts on one message and prints what it was and what was done.
    fn one(&mut self, label: &str, raw: &[u8], log: &Log) -> Result<Outcome> {
        let outcome = self.intake.process(raw, self.clock.now())?;
        self.totals.messages += 1;
        *self
            .totals
            .by_kind
            .entry(outcome.kind.as_str())
            .or_default() += 1;
        print(label, &outcome, self.json);
        for item in &outcome.items {
            if item.kind == Kind::SenderSide && !outcome.already {
                log.warn(format!(
                    "{label}: the receiving server refused the sender, not the address {}: {} {} \
                     (check SPF, DKIM and DMARC alignment and the sending IP's reputation; no one was suppressed)",
                    item.reported.as_deref().unwrap_or("-"),
                    item.status.as_deref().unwrap_or(""),
                    item.diagnostic
                ));
            }
            let acted = item
                .action
                .as_deref()
                .is_some_and(|a| !a.starts_with("nothing"));
            if acted && !outcome.already {
                self.totals.acted += 1;
            }
        }
        Ok(outcome)
    }

    /// Writes the unsubscribes recorded into the subscriber file, and says what was done.
    fn finish(mut self, log: &Log) -> Result<Exit> {
        if !self.dry {
            match listfile::write_pending(
                &self.config,
                self.intake.journal(),
                "newsletter bounces",
                &self.clock,
            )? {
                Some(0) => {}
                Some(n) => log.info(format!(
                    "{} updated ({n} change{})",
                    self.config.paths.subscribers.display(),
                    crate::commands::check::plural(n)
                )),
                None => log.info(
                    "the subscriber list is being edited by another run: the unsubscribes are recorded and honoured, and written into the file by the next run",
                ),
            }
        }
        let kinds: Vec<String> = self
            .totals
            .by_kind
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        log.info(format!(
            "{} message{} read{}{}; {} {}",
            self.totals.messages,
            crate::commands::check::plural(self.totals.messages),
            if kinds.is_empty() { "" } else { ": " },
            kinds.join(", "),
            self.totals.acted,
            if self.dry {
                "actions would be taken (dry run: nothing changed)"
            } else {
                "actions taken"
            }
        ));
        Ok(Exit::Done)
    }
}

fn from_stdin(cli: &Cli, args: &BouncesArgs, log: &Log) -> Result<Exit> {
    let mut raw = Vec::new();
    std::io::stdin()
        .take(MAX_MESSAGE_BYTES)
        .read_to_end(&mut raw)
        .context("cannot read the message on stdin")?;
    let mut run = Run::open(cli, args)?;
    run.one("stdin", &raw, log)?;
    run.finish(log)
}

fn from_files(cli: &Cli, args: &BouncesArgs, log: &Log) -> Result<Exit> {
    let mut run = Run::open(cli, args)?;
    if !args.files.is_empty() {
        for file in &args.files {
            let raw = read(file)?;
            run.one(&file.display().to_string(), &raw, log)?;
        }
        return run.finish(log);
    }
    let imap = run.config.bounces.imap.clone();
    let maildir = args
        .maildir
        .clone()
        .or_else(|| run.config.bounces.maildir.clone());
    if args.imap || (maildir.is_none() && imap.is_some()) {
        let Some(imap) = imap else {
            bail!("--imap reads the [bounces.imap] table, and the config has none");
        };
        from_imap(&mut run, &imap, args.dry_run, log)?;
        return run.finish(log);
    }
    let Some(maildir) = maildir else {
        bail!(
            "nothing to read: give message files, --maildir DIR, --imap, --stdin, or set `maildir` or [bounces.imap] in [bounces]"
        );
    };
    for file in maildir_messages(&maildir)? {
        let raw = read(&file)?;
        run.one(&file.display().to_string(), &raw, log)?;
        if !args.dry_run {
            move_processed(&maildir, &file)?;
        }
    }
    run.finish(log)
}

/// Each message of the IMAP folder, acted on, then moved to the processed folder: a run
/// killed between the two finds the message again, recognises it and only moves it.
fn from_imap(run: &mut Run, imap: &crate::config::Imap, dry: bool, log: &Log) -> Result<()> {
    let password = imap.password.load()?;
    let limit = usize::try_from(MAX_MESSAGE_BYTES).unwrap_or(usize::MAX);
    let mut session = Session::open(imap, password.expose().trim(), limit)?;
    if !dry {
        session.ensure_folder(&imap.processed_folder)?;
    }
    let uids = session.uids(&imap.folder)?;
    if uids.len() > imap.max_messages {
        log.info(format!(
            "{} messages in {}: reading {} this run (max_messages)",
            uids.len(),
            imap.folder,
            imap.max_messages
        ));
    }
    for uid in uids.into_iter().take(imap.max_messages) {
        let label = format!("imap:{}/{uid}", imap.folder);
        match session.fetch(uid)? {
            Some(raw) => {
                run.one(&label, &raw, log)?;
            }
            None => log.warn(format!(
                "{label} is larger than {MAX_MESSAGE_BYTES} bytes: moved to {} unread",
                imap.processed_folder
            )),
        }
        if !dry {
            session
                .move_to(uid, &imap.processed_folder)
                .with_context(|| format!("cannot move {label} to {}", imap.processed_folder))?;
        }
    }
    session.logout();
    Ok(())
}

fn read(file: &Path) -> Result<Vec<u8>> {
    let mut raw = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_MESSAGE_BYTES).read_to_end(&mut raw))
        .with_context(|| format!("cannot read {}", file.display()))?;
    Ok(raw)
}

/// The messages of a Maildir, `new/` then `cur/`, each in name order (delivery order).
fn maildir_messages(maildir: &Path) -> Result<Vec<PathBuf>> {
    if !maildir.join("cur").is_dir() && !maildir.join("new").is_dir() {
        bail!(
            "{} is not a Maildir (it has no cur/ or new/ folder)",
            maildir.display()
        );
    }
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let dir = maildir.join(sub);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect();
        files.sort();
        out.extend(files);
    }
    Ok(out)
}

/// Moves a message acted on into the Maildir's `.processed` folder (a Maildir++ subfolder,
/// so a mail client shows it), marked as seen. A message moved back is recognised by its
/// hash and not acted on again.
fn move_processed(maildir: &Path, file: &Path) -> Result<()> {
    let folder = maildir.join(".processed");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(folder.join(sub))
            .with_context(|| format!("cannot create {}", folder.join(sub).display()))?;
    }
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = if name.contains(":2,") {
        name
    } else {
        format!("{name}:2,S")
    };
    let target = folder.join("cur").join(name);
    std::fs::rename(file, &target)
        .with_context(|| format!("cannot move {} to {}", file.display(), target.display()))
}

#[derive(Serialize)]
struct JsonLine<'a> {
    file: &'a str,
    #[serde(flatten)]
    outcome: &'a Outcome,
}

/// One line per finding (file, what, address, status, action, diagnostic), tab-separated;
/// or one JSON object per message.
fn print(label: &str, outcome: &Outcome, json: bool) {
    if json {
        if let Ok(line) = serde_json::to_string(&JsonLine {
            file: label,
            outcome,
        }) {
            crate::say!("{line}");
        }
        return;
    }
    if outcome.items.is_empty() {
        crate::say!(
            "{label}\t{}\t-\t-\t{}\t{}",
            outcome.kind.as_str(),
            if outcome.already {
                "already read before"
            } else {
                "nothing"
            },
            outcome.note.as_deref().unwrap_or("")
        );
    }
    for item in &outcome.items {
        let action = if outcome.already {
            "already acted on before: nothing"
        } else {
            item.action.as_deref().unwrap_or("")
        };
        crate::say!(
            "{label}\t{}\t{}\t{}\t{action}\t{}",
            item.kind.as_str(),
            item.subscriber
                .as_deref()
                .or(item.reported.as_deref())
                .unwrap_or("-"),
            item.status.as_deref().unwrap_or("-"),
            item.diagnostic
        );
    }
}
