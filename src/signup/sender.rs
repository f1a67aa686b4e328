//! Sends the queued confirmation and welcome messages on a thread of `serve`'s own,
//! through the project's transport (the outbox or the SMTP relay), under the daily quota.
//! Each message is marked `attempting` (committed) before its content leaves, so a crash
//! leaves it in doubt rather than sent twice. It takes neither the run lock nor the list
//! lock: an edition being sent does not hold a sign-up up, nor the other way round.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::clock::Clock;
use crate::config::{Config, Transport};
use crate::deliver::outbox::Outbox;
use crate::deliver::smtp::Connector;
use crate::input::address::EmailAddress;
use crate::state::Journal;

/// How often the queue is looked at when nothing wakes the sender (retries, the quota).
const POLL: Duration = Duration::from_secs(2);
/// Temporary failures are tried again this much later, at most `MAX_ATTEMPTS` times.
const RETRY: Duration = Duration::from_mins(1);
const MAX_ATTEMPTS: i64 = 5;

/// Wakes the sender when a message was queued.
#[derive(Clone)]
pub(crate) struct Waker(SyncSender<()>);

impl Waker {
    pub(crate) fn wake(&self) {
        let _ = self.0.try_send(());
    }
}

pub(crate) fn start(config: Config, clock: Clock) -> Result<Waker> {
    let mut journal = Journal::open(&config.paths.state)?;
    let doubtful = journal.queued_in_doubt(clock.now())?;
    if doubtful > 0 {
        eprintln!(
            "warning: {doubtful} sign-up message{} may or may not have gone when serve last stopped; not sent again",
            if doubtful == 1 { "" } else { "s" }
        );
    }
    let (tx, rx) = sync_channel(1);
    std::thread::Builder::new()
        .name("signup-sender".into())
        .spawn(move || run(&config, &mut journal, clock, &rx))
        .context("cannot start the sign-up sender")?;
    Ok(Waker(tx))
}

fn run(config: &Config, journal: &mut Journal, clock: Clock, woken: &Receiver<()>) {
    loop {
        if let Err(RecvTimeoutError::Disconnected) = woken.recv_timeout(POLL) {
            return;
        }
        if let Err(e) = send_due(config, journal, clock) {
            eprintln!("warning: sign-up messages: {e:#}");
        }
    }
}

/// Sends what is due, within the day's quota.
fn send_due(config: &Config, journal: &mut Journal, clock: Clock) -> Result<()> {
    let mut due = journal.queued(clock.now(), 100)?;
    if due.is_empty() {
        return Ok(());
    }
    if let Transport::Smtp(smtp) = &config.transport
        && let Some(quota) = smtp.pacing.daily_quota
    {
        let left = quota.saturating_sub(journal.sent_on(clock.today())?);
        due.truncate(usize::try_from(left).unwrap_or(usize::MAX));
        if due.is_empty() {
            return Ok(());
        }
    }
    match &config.transport {
        Transport::Outbox(root) => {
            let outbox = Outbox::new(root, "signup")?;
            for q in due {
                journal.queued_attempting(q.id, clock.now())?;
                let to = EmailAddress::parse(&q.email).map_err(|e| anyhow::anyhow!(e))?;
                let path = outbox.deliver(&to, &q.bytes)?;
                journal.queued_done(q.id, true, &path.display().to_string(), clock.now())?;
            }
        }
        Transport::Smtp(smtp) => {
            let connector = Connector::new(smtp, config.newsletter.from.address.domain())?;
            connector.runtime().block_on(async {
                let mut session = connector.connect().await?;
                for q in due {
                    let Ok(to) = EmailAddress::parse(&q.email) else {
                        journal.queued_done(q.id, false, "not an address", clock.now())?;
                        continue;
                    };
                    let envelope = lettre::address::Envelope::new(
                        Some(config.newsletter.from.address.to_lettre()),
                        vec![to.to_lettre()],
                    )?;
                    journal.queued_attempting(q.id, clock.now())?;
                    let result = match session.envelope(&envelope, &q.bytes).await {
                        Ok(()) => match session.start_data().await {
                            Ok(()) => session.content(&q.bytes, None, None).await.0,
                            Err(r) => Err(r),
                        },
                        Err(r) => Err(r),
                    };
                    match result {
                        Ok(reply) => journal.queued_done(q.id, true, &reply, clock.now())?,
                        Err(refusal) if refusal.outcome_unknown() => {
                            // The content may have arrived: in doubt, never sent again.
                            journal.queued_done(q.id, false, &refusal.to_string(), clock.now())?;
                            break;
                        }
                        Err(refusal) => {
                            let permanent = refusal.code.is_some_and(|c| c >= 500);
                            if permanent || q.attempts + 1 >= MAX_ATTEMPTS {
                                journal.queued_done(
                                    q.id,
                                    false,
                                    &refusal.to_string(),
                                    clock.now(),
                                )?;
                            } else {
                                journal.queued_retry(
                                    q.id,
                                    clock.now() + RETRY,
                                    &refusal.to_string(),
                                    clock.now(),
                                )?;
                            }
                            if refusal.connection_lost {
                                break;
                            }
                        }
                    }
                }
                session.quit().await;
                anyhow::Ok(())
            })?;
        }
    }
    Ok(())
}
