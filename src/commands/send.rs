//! `newsletter send`: every subscribed address gets the edition once, through the outbox
//! or an SMTP relay; each recipient's outcome is reported and one failure never stops
//! the others.

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::mpsc;

use super::check::plural;
use super::{Log, recipient_for};
use crate::cli::{Cli, SendArgs};
use crate::clock::Clock;
use crate::config::Transport;
use crate::exit::Exit;
use crate::message::{Mailer, Outgoing};
use crate::project::{Project, render_all};
use crate::state::State;
use crate::subscribers::Subscriber;
use crate::transport::Outcome;
use crate::transport::outbox::Outbox;
use crate::transport::smtp::{Connector, Fatal, Job, run_workers};

pub fn run(cli: &Cli, args: &SendArgs, log: &Log) -> Result<Exit> {
    let clock = Clock::from_env()?;
    let project = Project::load(&cli.config, &args.edition, clock)?;
    for note in &project.subscribers.notes {
        log.warn(note);
    }
    let Some(edition) = &project.edition else {
        println!(
            "nothing to do: no article is marked `selected = true` that an earlier edition did not carry"
        );
        return Ok(Exit::NothingToDo);
    };
    let recipients: Vec<Subscriber> = match &args.to {
        Some(address) => vec![recipient_for(address, &project.subscribers, false)?],
        None => project.subscribers.active().cloned().collect(),
    };
    if recipients.is_empty() {
        println!(
            "nothing to send: no subscribed address in {}",
            project.config.paths.subscribers.display()
        );
        return Ok(Exit::Done);
    }
    let composer = project.composer(edition);
    // Every message must render before the first one leaves.
    render_all(&composer, &recipients)?;

    if args.dry_run {
        for r in &recipients {
            println!("{}", r.email);
        }
        log.info(format!(
            "dry run: edition {} ({} article{}) would go to {} recipient{}; nothing sent",
            edition.id,
            edition.articles.len(),
            plural(edition.articles.len()),
            recipients.len(),
            plural(recipients.len())
        ));
        return Ok(Exit::Done);
    }

    let mailer = Mailer::new(&project.config, &edition.id, &project.signer, clock);
    let build = |r: &Subscriber| -> Result<Outgoing> {
        let rendered = composer.render(r).map_err(|p| anyhow::anyhow!("{p}"))?;
        mailer.message(r, &rendered, &composer.unsubscribe_url(&r.email))
    };
    let destination;
    let outcomes = match &project.config.transport {
        Transport::Outbox(root) => {
            let outbox = Outbox::new(root, &edition.id)?;
            destination = outbox.dir().display().to_string();
            deliver_to_outbox(&outbox, &recipients, &build)?
        }
        Transport::Smtp(cfg) => {
            let connector = Connector::new(cfg, mailer_domain(&project))?;
            destination = connector.server();
            log.info(format!(
                "sending edition {} to {} recipient{} through {destination} ({} connection{})",
                edition.id,
                recipients.len(),
                plural(recipients.len()),
                cfg.connections,
                plural(cfg.connections)
            ));
            deliver_over_smtp(connector, cfg.connections, &recipients, &build)?
        }
    };

    let sent = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Sent(_)))
        .count();
    let failed = outcomes.len() - sent;
    for (r, o) in recipients.iter().zip(&outcomes) {
        if !matches!(o, Outcome::Sent(_)) {
            eprintln!("{}: {o}", r.email);
        }
    }
    if args.to.is_none() && sent > 0 {
        State::open(&project.config.paths.state)?.record_edition(
            edition,
            recipients.len(),
            failed,
            clock.now(),
        )?;
    }
    println!(
        "edition {}: sent {sent} of {} to {destination}{}",
        edition.id,
        recipients.len(),
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        }
    );
    Ok(match (sent, failed) {
        (_, 0) => Exit::Done,
        (0, _) => Exit::Failed,
        _ => Exit::Partial,
    })
}

fn mailer_domain(project: &Project) -> &str {
    project.config.newsletter.from.address.domain()
}

fn deliver_to_outbox(
    outbox: &Outbox,
    recipients: &[Subscriber],
    build: &dyn Fn(&Subscriber) -> Result<Outgoing>,
) -> Result<Vec<Outcome>> {
    recipients
        .iter()
        .map(|r| {
            let message = build(r)?;
            let path = outbox.deliver(&r.email, &message.bytes)?;
            Ok(Outcome::Sent(path.display().to_string()))
        })
        .collect()
}

/// Opens one connection first, so that a wrong password or a refused TLS handshake stops
/// the run before any message is attempted; then feeds the workers, composing each message
/// only when a worker is ready for it.
fn deliver_over_smtp(
    connector: Connector,
    connections: usize,
    recipients: &[Subscriber],
    build: &dyn Fn(&Subscriber) -> Result<Outgoing>,
) -> Result<Vec<Outcome>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the network runtime")?;
    let connector = Arc::new(connector);
    let first = runtime.block_on(connector.connect()).map_err(|e| {
        let kind = if e.downcast_ref::<Fatal>().is_some() {
            ""
        } else {
            " (nothing was sent)"
        };
        e.context(format!(
            "cannot open a session with {}{kind}",
            connector.server()
        ))
    })?;
    let (job_tx, job_rx) = mpsc::channel::<Job>(connections * 2);
    let (report_tx, mut report_rx) = mpsc::unbounded_channel();
    let workers = runtime.spawn(run_workers(
        Arc::clone(&connector),
        first,
        connections,
        job_rx,
        report_tx,
    ));

    let mut build_error = None;
    for (index, r) in recipients.iter().enumerate() {
        match build(r) {
            Ok(m) => {
                let job = Job {
                    index,
                    envelope: m.envelope,
                    bytes: m.bytes,
                };
                if job_tx.blocking_send(job).is_err() {
                    break;
                }
            }
            Err(e) => {
                build_error = Some(e);
                break;
            }
        }
    }
    drop(job_tx);
    let mut outcomes: Vec<Option<Outcome>> = vec![None; recipients.len()];
    while let Some(report) = report_rx.blocking_recv() {
        outcomes[report.index] = Some(report.outcome);
    }
    let _ = runtime.block_on(workers);
    if let Some(e) = build_error {
        // Everything was rendered once before sending, so this is not expected; the
        // outcomes of messages already handed over are still reported.
        eprintln!("error: {e:#}");
    }
    Ok(outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| Outcome::NotAttempted("the run stopped before this message".into()))
        })
        .collect())
}
