//! `newsletter send`: under the run lock, freeze the edition (or resume the unfinished
//! one), bring its journal in line with the subscriber list, render everyone, deliver, and
//! report. Every recipient's outcome is journaled; one failure never stops the others.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::{Result, anyhow};

use super::check::{edition_named, plural};
use super::{Log, recipient_for};
use crate::cli::{Cli, SendArgs};
use crate::clock::Clock;
use crate::config::{Backoff, Config, Pacing, Transport};
use crate::deliver::outbox::Outbox;
use crate::deliver::progress::Progress;
use crate::deliver::smtp::Connector;
use crate::deliver::{self, Counters, StopReason, Via, Work};
use crate::edition::Edition;
use crate::exit::Exit;
use crate::input::subscribers::Subscriber;
use crate::privacy::Forgotten;
use crate::project::{Project, outgoing_with, render_all};
use crate::render::compose::Composer;
use crate::schedule::{self, Decision};
use crate::state::departures::Reader;
use crate::state::listfile;
use crate::state::lock::{Locked, RunLock};
use crate::state::writer::{Recorder, Writer};
use crate::state::{Journal, State};

/// Problem rows printed at the end of a run; the rest are in `status`.
const LIST_AT_MOST: usize = 20;

pub(crate) fn run(cli: &Cli, args: &SendArgs, log: &Log) -> Result<Exit> {
    let clock = Clock::from_env()?;
    if let Some(at) = clock.pinned() {
        // Said even under --quiet: a pinned clock left in a cron job's environment would
        // stamp every message with the same date and keep the schedule from moving.
        eprintln!(
            "warning: SOURCE_DATE_EPOCH is set: the clock is pinned at {at}, and every date \
             this run writes is that one"
        );
    }
    let config = Config::load(&cli.config)?;
    if args.to.is_some() || args.dry_run || args.no_journal() {
        return without_journal(config, clock, args, log);
    }
    let schedule = match (args.scheduled, &config.schedule) {
        (false, _) => None,
        (true, Some(s)) => Some(s.clone()),
        (true, None) => {
            return Err(anyhow!(
                "`send --scheduled` follows the [schedule] table, and {} has none",
                config.path.display()
            ));
        }
    };
    // The window does not depend on the state: outside it, answer before the lock.
    if let Some(s) = &schedule
        && schedule::outside_window(s, clock.now())
    {
        if !cli.quiet {
            crate::say!(
                "outside the sending window ({}): nothing sent",
                schedule::window(s)
            );
        }
        return Ok(Exit::NothingToDo);
    }
    // A run that will send parses its templates on the second core while it takes the lock,
    // the state database opens (mostly waiting for the disk) and the subscribers and
    // articles load; a scheduled run first learns from the database whether it is due, and
    // most are not.
    let ahead = schedule
        .is_none()
        .then(|| crate::project::Ahead::start(&config));
    let _lock = match RunLock::acquire(&config.paths.state, "newsletter send") {
        Ok(lock) => lock,
        Err(e) if schedule.is_some() && e.downcast_ref::<Locked>().is_some() => {
            // The previous scheduled run is still sending: it carries on, this one stops.
            if !cli.quiet {
                crate::say!("{e}: this scheduled run leaves it be");
            }
            return Ok(Exit::Locked);
        }
        Err(e) => return Err(e),
    };
    let mut journal = open_journal(&config, &clock, log)?;
    if let Some(s) = &schedule
        && let Some(exit) = not_due(s, &mut journal, &clock, cli.quiet)?
    {
        return Ok(exit);
    }
    let request = args.edition.request();
    let project = Project::load_with(config, &request, clock, Some(&journal), ahead)?;
    for note in project.notes() {
        log.warn(note);
    }
    let Some(edition) = &project.edition else {
        return super::nothing_new(Some(&journal), &project, cli.quiet);
    };
    let excluded = journal.excluded()?;
    let forgotten = Forgotten::load(&journal, &project.config.paths.state)?;
    let active: Vec<&Subscriber> = project
        .subscribers
        .active()
        .filter(|s| !excluded.contains(s.email.as_str()) && !forgotten_skipped(&forgotten, s, log))
        .collect();
    if !project.resumed
        && !args.despite_rates
        && let Some(exit) = rates_hold(&journal, &project, &edition.id)?
    {
        return Ok(exit);
    }
    let composer = project.composer(edition);
    let (via, pacing, connections) = open_transport(&project, edition, args)?;
    if !project.resumed && active.is_empty() {
        crate::say!(
            "nothing to send: no subscribed address in {}",
            project.config.paths.subscribers.display()
        );
        return Ok(Exit::Done);
    }
    // Every message must render, and the relay must take our credentials, before anything
    // is sent. A new edition is frozen meanwhile; one to approve is frozen as a draft after.
    let frozen_with_rendering = !project.resumed && project.config.approval.is_none();
    // The journal writer's read connection opens on a thread of its own meanwhile.
    let reader = Reader::open(&project.config.paths.state);
    if frozen_with_rendering {
        freeze_while_ready(&mut journal, &project, edition, &active, &composer, &via)?;
    } else if !project.resumed {
        ready_to_send(&composer, active.iter().copied(), &via)?;
    }
    // One to approve waits for its approval; once approved, its rows (the draft's) are in
    // the journal, as for a resumed edition.
    if project.config.approval.is_some()
        && !project.resumed
        && let Some(exit) = approval_gate(
            &mut journal,
            &project,
            edition,
            &active,
            args,
            cli.quiet,
            log,
        )?
    {
        return Ok(exit);
    }
    // A new edition's rows are written by the journal's database thread as the send
    // reaches them, each with its first steps, and the rest at the run's end
    // (`sendlog::NewRows`); a crash loses nothing: the next run resumes the edition and adds
    // the rows still missing.
    let new_rows = if frozen_with_rendering {
        log_frozen(edition, active.len(), log);
        Some(active.iter().map(|s| s.email.to_string()).collect())
    } else {
        resume_recipients(&mut journal, &project, edition, &active, log)?;
        None
    };
    // The edition's web page exists before the first message that links to it leaves.
    if let Some(dir) = project.config.archive.as_ref().and_then(|a| a.dir.as_ref()) {
        let (page, written) = super::archive::publish(dir, &project.config, edition, &composer)?;
        if written {
            log.info(format!("web page: {}", page.display()));
        }
        // Published before the messages that link to it go out (again when an edition is
        // resumed: a publish that failed before is retried); a failure stops the run.
        if written || project.resumed {
            super::archive::run_publish(&project.config, log)?;
        }
    }
    let due_by = schedule.as_ref().map(|_| project.clock.now());
    let work = if new_rows.is_some() {
        fresh_work(&active)
    } else {
        work_list(&journal, edition, &active, args.resend_in_doubt, due_by)?
    };
    if schedule.is_some()
        && work.is_empty()
        && !journal.complete_if_done(&edition.id, project.clock.now())?
    {
        // Every recipient left waits for its next try: nothing for a person to see.
        if !cli.quiet {
            crate::say!(
                "edition {}: the recipients left wait for their next try",
                edition.id
            );
        }
        write_list_changes(&project.config, &mut journal, &project.clock, log);
        return Ok(Exit::NothingToDo);
    }
    if project.resumed && !work.is_empty() {
        ready_to_send(&composer, work.iter().map(|w| &w.subscriber), &via)?;
    }

    let mut stop = None;
    let mut destination = String::new();
    if !work.is_empty() {
        destination = match &via {
            Via::Outbox(o) => o.dir().display().to_string(),
            Via::Smtp(c) => c.server(),
        };
        log.info(format!(
            "sending to {} recipient{} through {destination}",
            work.len(),
            plural(work.len())
        ));
        // DKIM signatures are made on threads of their own (`deliver::sign`), with the
        // same keys and time the mailer would use.
        let mailer = project.mailer(edition).unsigned();
        let build = deliver::Build {
            message_id: &|r| mailer.message_id(r),
            message: &|r, id| outgoing_with(&composer, &mailer, r, id),
        };
        let time = mailer.signing_time();
        let sign_with = |bytes: &[u8]| project.dkim.sign(bytes, time);
        let sign: Option<deliver::sign::Sign<'_>> =
            (!project.dkim.is_empty()).then_some(&sign_with);
        let quota_left = match pacing.daily_quota {
            Some(q) => Some(q.saturating_sub(journal.sent_on(project.clock.today())?)),
            None => None,
        };
        let mut pacing = pacing;
        if let Some(s) = &schedule {
            // Retries happen across runs, with the backoff; none within this one.
            pacing.retries_per_run = 0;
            pacing.backoff = Some(Backoff {
                first: s.retry_first,
                max: s.retry_max,
                give_up_after: s.give_up_after,
                started: journal
                    .edition(&edition.id)?
                    .map_or_else(|| project.clock.now(), |e| e.created),
            });
        }
        let plan = Delivery {
            via,
            pacing,
            connections,
            quota_left,
            quiet: cli.quiet,
            new_rows: new_rows.unwrap_or_default(),
            reader: Some(reader),
        };
        (journal, stop) = deliver_journaled(journal, &project, edition, plan, &work, &build, sign)?;
    }

    let complete = journal.complete_if_done(&edition.id, project.clock.now())?;
    // Unsubscribes that arrived during the run (serve, the command line) reach the file.
    write_list_changes(&project.config, &mut journal, &project.clock, log);
    let exit = report(
        &journal,
        edition,
        &destination,
        stop.as_ref(),
        complete,
        cli.quiet,
    )?;
    // After the report: the run's outcome is known and said; this only spares the next
    // run's start. Never a reason for the send to fail.
    if let Err(e) = journal.fold_long_log(&project.config.paths.state) {
        log.warn(format!("the state database's log was not folded: {e:#}"));
    }
    Ok(exit)
}

/// A test copy (`--to`), a dry run, or (with the bench feature) a run without the
/// journal: nothing is recorded, so the state database is only read.
fn without_journal(config: Config, clock: Clock, args: &SendArgs, log: &Log) -> Result<Exit> {
    let journal = Journal::open_read_only(&config.paths.state)?;
    let project = Project::load(config, &args.edition.request(), clock, journal.as_ref())?;
    for note in project.notes() {
        log.warn(note);
    }
    match &args.to {
        Some(address) => {
            let recipient = recipient_for(address, &project.subscribers, false)?;
            unrecorded(&project, args, vec![recipient], log)
        }
        None if args.no_journal() => {
            let all = project.subscribers.active().cloned().collect();
            unrecorded(&project, args, all, log)
        }
        None => dry_run(&project, journal.as_ref(), log),
    }
}

/// Opens the journal under the run lock: rows a dead run left `attempting` become in
/// doubt, and list changes recorded while no one held the lock reach the file.
fn open_journal(config: &Config, clock: &Clock, log: &Log) -> Result<Journal> {
    let mut journal = Journal::open(&config.paths.state)?;
    // The steps of a run that stopped reach the database before anything reads it.
    journal.replay_send_log(&config.paths.state)?;
    let recovered = journal.recover_in_flight(clock.now())?;
    if recovered > 0 {
        log.warn(format!(
            "{recovered} message{} were in flight when an earlier run stopped: their delivery is in doubt \
             (see `newsletter status`; `send --resend-in-doubt` sends them again with the same Message-ID)",
            plural(recovered)
        ));
    }
    write_list_changes(config, &mut journal, clock, log);
    Ok(journal)
}

/// Writes recorded list changes into `subscribers.toml`. Never a reason for a send to fail:
/// the changes are in the database, which every send honours, and stay there for the next
/// writer when this one cannot write them.
fn write_list_changes(config: &Config, journal: &mut Journal, clock: &Clock, log: &Log) {
    let file = config.paths.subscribers.display();
    match listfile::write_pending(config, journal, "newsletter send", clock) {
        Ok(Some(0)) => {}
        Ok(Some(n)) => log.info(format!(
            "{n} subscription change{} written into {file}",
            plural(n)
        )),
        Ok(None) => log.info(format!(
            "{file} is being rewritten by another run: the subscription changes recorded since \
             stay in the state database (and are honoured) until the next run writes them"
        )),
        Err(e) => log.warn(format!(
            "subscription changes not written into {file} (they stay recorded and are \
             honoured): {e:#}"
        )),
    }
}

/// A resumed (or approved) edition's rows for today's list: it gains new subscribers and
/// skips those who left.
fn resume_recipients(
    journal: &mut Journal,
    project: &Project,
    edition: &Edition,
    active: &[&Subscriber],
    log: &Log,
) -> Result<()> {
    let emails: Vec<String> = active.iter().map(|s| s.email.to_string()).collect();
    let (added, skipped) = journal.sync_recipients(&edition.id, &emails, project.clock.now())?;
    log.info(format!(
        "resuming {}: {added} new subscriber{} added, {skipped} no longer subscribed",
        edition_named(edition),
        plural(added)
    ));
    Ok(())
}

fn log_frozen(edition: &Edition, recipients: usize, log: &Log) {
    log.info(format!(
        "{} frozen for {recipients} recipient{}",
        edition_named(edition),
        plural(recipients)
    ));
}

/// Freezes a new edition alone (its rows are written beside the first messages) on a
/// thread of its own while the messages render and the relay is checked: the freeze is
/// mostly a wait for the disk. When the messages or the relay fail, the edition is removed
/// again, so that the next run plans from the files, as if nothing had been frozen.
fn freeze_while_ready(
    journal: &mut Journal,
    project: &Project,
    edition: &Edition,
    active: &[&Subscriber],
    composer: &Composer<'_>,
    via: &Via,
) -> Result<()> {
    let (ready, frozen) = std::thread::scope(|s| {
        let freezing =
            s.spawn(|| journal.freeze(edition, &project.freeze(edition), &[], project.clock.now()));
        let ready = ready_to_send(composer, active.iter().copied(), via);
        let frozen = freezing
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (ready, frozen)
    });
    match (ready, frozen) {
        (Ok(()), frozen) => frozen,
        (Err(e), Ok(())) => match journal.unfreeze(&edition.id) {
            Ok(()) => Err(e),
            Err(u) => Err(e.context(format!(
                "edition {} was frozen meanwhile and could not be removed ({u:#}): the next run resumes it",
                edition.id
            ))),
        },
        // The messages' or the relay's problem is the one to fix first.
        (Err(e), Err(_)) => Err(e),
    }
}

/// A new edition's work: every recipient in the list's order (each address is there once:
/// the list merges duplicates when it loads), none tried yet.
fn fresh_work(active: &[&Subscriber]) -> Vec<Work> {
    active
        .iter()
        .map(|s| Work {
            subscriber: (*s).clone(),
            attempts: 0,
        })
        .collect()
}

/// The recipients to attempt in this run, with their attempts so far.
fn work_list(
    journal: &Journal,
    edition: &Edition,
    active: &[&Subscriber],
    resend_in_doubt: bool,
    due_by: Option<std::time::SystemTime>,
) -> Result<Vec<Work>> {
    let by_email: HashMap<&str, &Subscriber> =
        active.iter().map(|s| (s.email.as_str(), *s)).collect();
    Ok(journal
        .work(&edition.id, resend_in_doubt, due_by)?
        .into_iter()
        .filter_map(|(email, attempts)| {
            by_email.get(email.as_str()).map(|s| Work {
                subscriber: (*s).clone(),
                attempts,
            })
        })
        .collect())
}

/// How this run delivers.
struct Delivery {
    via: Via,
    pacing: Pacing,
    connections: usize,
    quota_left: Option<u64>,
    quiet: bool,
    /// A new edition's rows, not in the database yet: written as the send reaches them.
    new_rows: Vec<String>,
    /// The journal writer's read connection, opened meanwhile.
    reader: Option<Reader>,
}

/// Delivers `work` with every step journaled by the writer thread; gives the journal back
/// with the reason the run stopped early, if it did.
fn deliver_journaled(
    journal: Journal,
    project: &Project,
    edition: &Edition,
    delivery: Delivery,
    work: &[Work],
    build: &deliver::Build<'_>,
    sign: Option<deliver::sign::Sign<'_>>,
) -> Result<(Journal, Option<StopReason>)> {
    let writer = Writer::start(
        journal,
        &project.config.paths.state,
        edition.id.clone(),
        project.clock,
        delivery.new_rows,
        delivery.reader,
    )?;
    let watch = crate::state::watch::ListWatch::start(
        &project.config.paths.subscribers,
        writer.recorder(),
        crate::state::watch::interval(),
    );
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(work.len(), Arc::clone(&counters), delivery.quiet);
    let plan = deliver::Plan {
        via: delivery.via,
        pacing: delivery.pacing,
        connections: delivery.connections,
        quota_left: delivery.quota_left,
        recorder: writer.recorder(),
        counters,
        clock: project.clock,
    };
    let outcome = deliver::run(plan, work, build, sign);
    watch.stop();
    progress.finish();
    let (returned, write_error) = writer.finish();
    let mut stop = outcome?.stop;
    if let (None, Some(e)) = (&stop, write_error) {
        stop = Some(StopReason::Journal(e));
    }
    let journal = match returned {
        Some(j) => j,
        None => Journal::open(&project.config.paths.state)?,
    };
    Ok((journal, stop))
}

/// Opens the outbox or checks the SMTP settings; SMTP connections open in the workers.
fn open_transport(
    project: &Project,
    edition: &Edition,
    args: &SendArgs,
) -> Result<(Via, Pacing, usize)> {
    Ok(match &project.config.transport {
        Transport::Outbox(root) => (
            Via::Outbox(Outbox::new(root, &edition.id)?),
            Pacing::default(),
            1,
        ),
        Transport::Smtp(cfg) => {
            let connector = Connector::new(cfg, project.config.newsletter.from.address.domain())?;
            if let Some(w) = connector.warning() {
                eprintln!("warning: {w}");
            }
            let connections = args.connections.map_or(cfg.connections, usize::from);
            (
                Via::Smtp(Box::new(connector)),
                cfg.pacing.clone(),
                connections,
            )
        }
    })
}

/// Every message must render, and the relay must take our credentials, before the first
/// message leaves (a new edition frozen meanwhile is removed again when they do not). The
/// relay's session opens on a thread of its own
/// while the messages render: over a network it is several round trips (TCP, TLS, EHLO,
/// AUTH), which the rendering, all computation, need not wait for.
fn ready_to_send<'a>(
    composer: &Composer<'_>,
    recipients: impl IntoIterator<Item = &'a Subscriber>,
    via: &Via,
) -> Result<()> {
    if !matches!(via, Via::Smtp(_)) {
        render_all(composer, recipients)?;
        return Ok(());
    }
    std::thread::scope(|s| {
        let probe = s.spawn(|| preflight(via));
        let rendered = render_all(composer, recipients);
        let probed = probe
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the check of the relay stopped unexpectedly")));
        // A message that cannot render is the operator's to fix first.
        rendered?;
        probed
    })
}

/// Opens one SMTP session, kept for the first messages, so that an unreachable relay,
/// refused credentials or a failed TLS handshake stop the run before anything is sent (or
/// left frozen).
fn preflight(via: &Via) -> Result<()> {
    let Via::Smtp(connector) = via else {
        return Ok(());
    };
    connector.probe(true).map(|_| ()).map_err(|e| {
        e.context(format!(
            "cannot open a session with {} (nothing was sent)",
            connector.server()
        ))
    })
}

/// Under a schedule, the exit of a run with nothing due now; `None` when there is work.
fn not_due(
    s: &crate::config::Schedule,
    journal: &mut Journal,
    clock: &Clock,
    quiet: bool,
) -> Result<Option<Exit>> {
    let latest = journal.latest_edition()?;
    let unfinished = latest.as_ref().is_some_and(|e| !e.completed);
    match schedule::decide(s, clock.now(), unfinished, latest.map(|e| e.created)) {
        Decision::Resume | Decision::Start => Ok(None),
        Decision::Outside | Decision::NotYet => {
            if !quiet {
                crate::say!("no edition is due now (window {})", schedule::window(s));
            }
            Ok(Some(Exit::NothingToDo))
        }
        Decision::Stale { slot, late } => {
            // Said once, even under --quiet: a person should know an edition was skipped.
            if journal.first_note(&slot, clock.now())? {
                eprintln!(
                    "warning: the edition due {slot} was not started: it is {:.1} hours late, \
                     past stale_after_hours; it is skipped (`newsletter send` sends it by hand)",
                    late.as_secs_f64() / 3600.0
                );
            }
            Ok(Some(Exit::NothingToDo))
        }
    }
}

/// The run's outcome: the recipients left with a problem (on stderr) and one line on
/// stdout. Under `--quiet` only a run a person must look at says anything: one that stopped
/// early or left recipients to a later run.
fn report(
    journal: &Journal,
    edition: &Edition,
    destination: &str,
    stop: Option<&StopReason>,
    complete: bool,
    quiet: bool,
) -> Result<Exit> {
    let exit = match stop {
        Some(StopReason::Fatal(_) | StopReason::Journal(_)) => Exit::Failed,
        Some(StopReason::SenderRefused(_)) => Exit::SenderRefused,
        None if complete => Exit::Done,
        Some(_) | None => Exit::Partial,
    };
    if quiet && exit == Exit::Done {
        return Ok(exit);
    }
    let counts = journal.counts(&edition.id)?;
    let n = |s: State| counts.get(&s).copied().unwrap_or(0);
    let total: usize = counts.values().sum::<usize>() - n(State::Skipped);
    let problems = journal.rows(
        &edition.id,
        &[State::Deferred, State::Failed, State::InDoubt],
    )?;
    for row in problems.iter().take(LIST_AT_MOST) {
        eprintln!(
            "{}: {}{}",
            row.email,
            row.state,
            row.reply
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
    }
    if problems.len() > LIST_AT_MOST {
        eprintln!(
            "... and {} more: see `newsletter status`",
            problems.len() - LIST_AT_MOST
        );
    }
    let mut line = format!("edition {}: sent {} of {total}", edition.id, n(State::Sent));
    if !destination.is_empty() {
        let _ = write!(line, " to {destination}");
    }
    for (state, label) in [
        (State::Deferred, "deferred"),
        (State::Failed, "failed"),
        (State::InDoubt, "in doubt"),
        (State::Pending, "pending"),
        (State::Skipped, "skipped"),
    ] {
        if n(state) > 0 {
            let _ = write!(line, ", {} {label}", n(state));
        }
    }
    if let Some(reason) = stop {
        let _ = write!(line, "; stopped: {reason}");
    }
    crate::say!("{line}");
    Ok(exit)
}

/// True (with a warning) for an address forgotten on request that is on the list again.
fn forgotten_skipped(forgotten: &Forgotten, subscriber: &Subscriber, log: &Log) -> bool {
    let skip = forgotten.contains(&subscriber.email);
    if skip {
        log.warn(format!(
            "{} was forgotten on its owner's request (newsletter forget) and is never mailed again; remove it from the subscriber list",
            subscriber.email
        ));
    }
    skip
}

fn dry_run(project: &Project, journal: Option<&Journal>, log: &Log) -> Result<Exit> {
    let Some(edition) = &project.edition else {
        return super::nothing_new(journal, project, false);
    };
    let excluded = match journal {
        Some(j) => j.excluded()?,
        None => std::collections::HashSet::default(),
    };
    let forgotten = match journal {
        Some(j) => Forgotten::load(j, &project.config.paths.state)?,
        None => Forgotten::default(),
    };
    let done: std::collections::HashSet<String> = match journal {
        Some(j) if project.resumed => j
            .rows(
                &edition.id,
                &[State::Sent, State::Failed, State::InDoubt, State::Skipped],
            )?
            .into_iter()
            .map(|r| r.email)
            .collect(),
        _ => std::collections::HashSet::default(),
    };
    let recipients: Vec<&Subscriber> = project
        .subscribers
        .active()
        .filter(|s| {
            !excluded.contains(s.email.as_str())
                && !done.contains(s.email.as_str())
                && !forgotten_skipped(&forgotten, s, log)
        })
        .collect();
    let composer = project.composer(edition);
    render_all(&composer, recipients.iter().copied())?;
    for r in &recipients {
        crate::say!("{}", r.email);
    }
    log.info(format!(
        "dry run: {} would go to {} recipient{}; nothing sent",
        edition_named(edition),
        recipients.len(),
        plural(recipients.len())
    ));
    Ok(Exit::Done)
}

/// One delivery of `edition` to `recipients`, not journaled, with no retries and outside
/// the daily quota: test copies and the editors' drafts.
fn deliver_unjournaled(
    project: &Project,
    edition: &Edition,
    args: &SendArgs,
    recipients: Vec<Subscriber>,
) -> Result<(Vec<Work>, Arc<Counters>, Option<StopReason>)> {
    let composer = project.composer(edition);
    render_all(&composer, &recipients)?;
    let mailer = project.mailer(edition);
    let build = deliver::Build {
        message_id: &|r| mailer.message_id(r),
        message: &|r, id| outgoing_with(&composer, &mailer, r, id),
    };
    let (via, mut pacing, connections) = open_transport(project, edition, args)?;
    pacing.retries_per_run = 0;
    pacing.daily_quota = None;
    let counters = Arc::new(Counters::default());
    let work: Vec<Work> = recipients
        .into_iter()
        .map(|subscriber| Work {
            subscriber,
            attempts: 0,
        })
        .collect();
    let plan = deliver::Plan {
        via,
        pacing,
        connections,
        quota_left: None,
        recorder: Recorder::disabled(),
        counters: Arc::clone(&counters),
        clock: project.clock,
    };
    let end = deliver::run(plan, &work, &build, None)?;
    Ok((work, counters, end.stop))
}

/// With `[approval]`, a new edition is frozen as a draft and mailed to the editors; it
/// goes out once approved as it is now (or past the deadline). `None`: go on and send it
/// A new edition waits while the last one sent passed a stop threshold of hard bounces or
/// complaints: mailing the same list again would burn the sender's reputation further.
fn rates_hold(journal: &Journal, project: &Project, new_id: &str) -> Result<Option<Exit>> {
    let Some(last) = journal.last_sent_edition(new_id)? else {
        return Ok(None);
    };
    let t = &project.config.bounces.thresholds;
    let rates = crate::inbound::rates::Rates::of(journal.returns(&last)?, t);
    if rates.worst() != crate::inbound::rates::Level::Stop {
        return Ok(None);
    }
    eprintln!(
        "error: edition {last} passed a stop threshold: {:.2}% hard bounces (stop {}%), {:.2}% complaints (stop {}%); \
         no new edition is started. See `newsletter status {last}` and `newsletter suppressions`; \
         once the list is cleaned (and the cause found), `newsletter send --despite-rates` sends",
        rates.hard_percent, t.bounce_stop, rates.complaint_percent, t.complaint_stop
    );
    Ok(Some(Exit::Held))
}

/// (its rows are in the journal, as for a resumed edition); `Some(exit)`: it waits.
fn approval_gate(
    journal: &mut Journal,
    project: &Project,
    edition: &Edition,
    active: &[&Subscriber],
    args: &SendArgs,
    quiet: bool,
    log: &Log,
) -> Result<Option<Exit>> {
    let Some(approval) = &project.config.approval else {
        return Ok(None);
    };
    let now = project.clock.now();
    let frozen = project.freeze(edition);
    let hash = crate::state::content_hash(&serde_json::to_string(&frozen)?);
    let mut draft = journal.draft()?;
    // A draft whose articles or templates changed since is frozen again: any approval of
    // the old content no longer counts.
    if draft
        .as_ref()
        .is_none_or(|d| d.hash != hash || d.id != edition.id)
    {
        let emails: Vec<String> = active.iter().map(|s| s.email.to_string()).collect();
        let replacing = draft.as_ref().map(|d| d.id.clone());
        journal.freeze_draft(edition, &frozen, &emails, replacing.as_deref(), now)?;
        draft = journal.draft()?;
    }
    let draft = draft.ok_or_else(|| anyhow!("the draft just frozen is missing"))?;
    let approved = draft.approved_hash.as_deref() == Some(draft.hash.as_str());
    let overdue = approval
        .deadline
        .is_some_and(|d| now.duration_since(draft.created).unwrap_or_default() >= d);
    if approved || overdue {
        if !approved {
            log.warn(format!(
                "edition {} was not approved within deadline_hours: it goes out now",
                draft.id
            ));
        }
        journal.release_draft(&draft.id)?;
        return Ok(None);
    }
    if draft.previewed_hash.as_deref() != Some(draft.hash.as_str()) {
        let editors = approval
            .editors
            .iter()
            .map(|e| recipient_for(e.as_str(), &project.subscribers, false))
            .collect::<Result<Vec<_>>>()?;
        let n = editors.len();
        let (_, counters, stop) = deliver_unjournaled(project, edition, args, editors)?;
        let sent = counters.sent.load(std::sync::atomic::Ordering::Relaxed);
        if let Some(reason) = stop {
            return Err(anyhow!("the draft reached {sent} of {n} editors: {reason}"));
        }
        if sent < n {
            return Err(anyhow!("the draft reached {sent} of {n} editors"));
        }
        journal.mark_previewed(&draft.id, &draft.hash)?;
        log.info(format!(
            "edition {} frozen as a draft and sent to {n} editor{}",
            draft.id,
            plural(n)
        ));
    }
    if !quiet {
        crate::say!(
            "edition {} waits for approval: `newsletter approve {}` (content {})",
            draft.id,
            draft.id,
            &draft.hash[..12]
        );
    }
    Ok(Some(Exit::NothingToDo))
}

/// Delivers to `recipients` through the configured transport with nothing journaled:
/// for a test copy, and (`--no-journal`, built only with the `bench` feature) to measure
/// what the journal costs.
fn unrecorded(
    project: &Project,
    args: &SendArgs,
    recipients: Vec<Subscriber>,
    log: &Log,
) -> Result<Exit> {
    let Some(edition) = &project.edition else {
        return super::nothing_new(None, project, false);
    };
    let total = recipients.len();
    let (work, counters, stop) = deliver_unjournaled(project, edition, args, recipients)?;
    let sent = counters.sent.load(std::sync::atomic::Ordering::Relaxed);
    if let Some(reason) = stop {
        if matches!(reason, StopReason::SenderRefused(_)) {
            eprintln!("error: stopped after {sent} of {total}: {reason}");
            return Ok(Exit::SenderRefused);
        }
        return Err(anyhow!("stopped after {sent} of {total}: {reason}"));
    }
    if sent == total {
        if let (Some(_), Some(w)) = (&args.to, work.first()) {
            crate::say!(
                "test copy of edition {} sent to {}",
                edition.id,
                w.subscriber.email
            );
        } else {
            crate::say!(
                "edition {}: sent {sent} of {total} without a journal",
                edition.id
            );
        }
        return Ok(Exit::Done);
    }
    let reason = counters
        .last_problem
        .lock()
        .ok()
        .and_then(|p| p.clone())
        .unwrap_or_default();
    log.warn(format!("the server did not accept every message: {reason}"));
    Err(anyhow!("sent {sent} of {total}"))
}
