//! One thread makes a running send's delivery steps durable. Workers send it changes; it
//! decides each against the row's state (kept in memory: during a send it is the only writer
//! of the edition's rows) and the unsubscribes recorded meanwhile, writes whatever has queued
//! up to the send log with one `fdatasync` (a group commit), and then answers those that
//! wait. A second thread applies the steps to the database in large transactions, off the
//! path of the messages; the log is replayed into the database after a crash.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use rusqlite::Connection;
use tokio::sync::oneshot;

use super::sendlog::{self, Appended, Entry, SendLog};
use crate::clock::Clock;
use crate::state::{Change, Journal, State};

/// Changes written per group at most, so one write never grows without bound.
const MAX_BATCH: usize = 1024;

/// How long changes that no one waits for (a `Sent`) may wait for one that someone does
/// (the next message's `Attempting`) to share its sync: one `fdatasync` per message instead
/// of two. A stalled connection delays them by this much at most.
const LINGER: Duration = Duration::from_millis(5);

/// The database is brought up to date this often during a send (or sooner, after
/// `APPLY_BATCH` steps), so that `status` and bounce handling see the run's progress.
const APPLY_EVERY: Duration = Duration::from_millis(100);
const APPLY_BATCH: usize = 4096;

const UNSUBSCRIBED: &str = "unsubscribed during the send";

struct Request {
    email: String,
    change: Change,
    done: Option<oneshot::Sender<Result<bool, String>>>,
}

enum ToApplier {
    Entries(Vec<Entry>),
    /// Apply everything so far, durably, then answer.
    Sync(mpsc::Sender<Result<(), String>>),
}

pub(crate) struct Writer {
    tx: mpsc::Sender<Request>,
    handle: JoinHandle<Option<String>>,
    applier: JoinHandle<(Journal, Option<String>)>,
}

/// A cheap handle for workers. A disabled recorder (for test copies) records nothing.
#[derive(Clone)]
pub(crate) struct Recorder {
    tx: Option<mpsc::Sender<Request>>,
}

impl Writer {
    /// Starts the two threads for one edition's send. `state` is the database's path; the
    /// journal must have replayed any earlier log (`Journal::replay_send_log`).
    pub(crate) fn start(
        journal: Journal,
        state: &Path,
        edition_id: String,
        clock: Clock,
    ) -> Result<Writer> {
        let rows = journal.waiting(&edition_id)?;
        let next_seq = journal.log_applied()? + 1;
        let log = SendLog::open(&sendlog::path_for(state))?;
        let reader = Journal::open_read_only(state)?
            .context("the state database disappeared")?
            .into_connection();
        let (to_applier, from_writer) = mpsc::channel::<ToApplier>();
        let applier = std::thread::spawn(move || apply(journal, &from_writer));
        let (tx, rx) = mpsc::channel::<Request>();
        let mut decider = Decider {
            rows,
            reader,
            edition_id,
            next_seq,
            clock,
        };
        let handle = std::thread::spawn(move || write(&mut decider, log, &rx, &to_applier));
        Ok(Writer {
            tx,
            handle,
            applier,
        })
    }

    pub(crate) fn recorder(&self) -> Recorder {
        Recorder {
            tx: Some(self.tx.clone()),
        }
    }

    /// Waits until every change sent so far is durable and in the database; returns the
    /// journal and the first error, if any.
    pub(crate) fn finish(self) -> (Option<Journal>, Option<String>) {
        drop(self.tx);
        let written = self
            .handle
            .join()
            .unwrap_or_else(|_| Some("the journal writer stopped unexpectedly".into()));
        match self.applier.join() {
            Ok((journal, applied)) => (Some(journal), written.or(applied)),
            Err(_) => (
                None,
                Some("the journal's database thread stopped unexpectedly".into()),
            ),
        }
    }
}

impl Recorder {
    pub(crate) fn disabled() -> Recorder {
        Recorder { tx: None }
    }

    /// Records a change and returns once it is on disk; `false` when it did not apply (an
    /// `Attempting` for an address that unsubscribed meanwhile, or a row no longer waiting).
    pub(crate) async fn commit(&self, email: &str, change: Change) -> Result<bool> {
        let Some(wait) = self.send(email, change, true)? else {
            return Ok(true);
        };
        answer(wait.await)
    }

    /// Records changes from a thread outside the send's runtime, in one group; returns,
    /// per change, whether it applied.
    pub(crate) fn commit_blocking(&self, changes: Vec<(String, Change)>) -> Result<Vec<bool>> {
        let mut waits = Vec::with_capacity(changes.len());
        for (email, change) in changes {
            waits.push(self.send(&email, change, true)?);
        }
        waits
            .into_iter()
            .map(|w| w.map_or(Ok(true), |w| answer(w.blocking_recv())))
            .collect()
    }

    /// Records a change without waiting. Changes are written in the order they are sent,
    /// so a later `commit` from the same worker also makes this one durable.
    pub(crate) fn record(&self, email: &str, change: Change) {
        let _ = self.send(email, change, false);
    }

    fn send(
        &self,
        email: &str,
        change: Change,
        wait: bool,
    ) -> Result<Option<oneshot::Receiver<Result<bool, String>>>> {
        let Some(tx) = &self.tx else {
            return Ok(None);
        };
        let (done, waiting) = if wait {
            let (d, w) = oneshot::channel();
            (Some(d), Some(w))
        } else {
            (None, None)
        };
        tx.send(Request {
            email: email.to_string(),
            change,
            done,
        })
        .map_err(|_| anyhow!("the journal writer has stopped"))?;
        Ok(waiting)
    }
}

fn answer(
    got: std::result::Result<Result<bool, String>, oneshot::error::RecvError>,
) -> Result<bool> {
    match got {
        Ok(Ok(applied)) => Ok(applied),
        Ok(Err(e)) => Err(anyhow!(e)),
        Err(_) => Err(anyhow!("the journal writer has stopped")),
    }
}

/// What the writer knows to decide a change: the rows' states and the database's
/// unsubscribes.
struct Decider {
    rows: HashMap<String, State>,
    reader: Connection,
    edition_id: String,
    next_seq: u64,
    clock: Clock,
}

impl Decider {
    /// The log entries of a batch, and per request whether its change applied.
    fn decide(&mut self, batch: &[Request]) -> Result<(Vec<Entry>, Vec<bool>)> {
        let gone = self.unsubscribed(batch)?;
        let now = self.clock.now();
        let mut entries = Vec::with_capacity(batch.len());
        let mut applied = Vec::with_capacity(batch.len());
        for r in batch {
            let refused = matches!(r.change, Change::Attempting { .. }) && gone.contains(&r.email);
            let change = if refused {
                Change::Skipped {
                    reason: UNSUBSCRIBED.into(),
                }
            } else {
                r.change.clone()
            };
            let Some(state) = self.rows.get_mut(&r.email) else {
                applied.push(false);
                continue;
            };
            let Some(next) = state.after(&change) else {
                applied.push(false);
                continue;
            };
            *state = next;
            applied.push(!refused);
            entries.push(Entry {
                seq: self.next_seq,
                at: now,
                edition: self.edition_id.clone(),
                email: r.email.clone(),
                change,
            });
            self.next_seq += 1;
        }
        Ok((entries, applied))
    }

    /// The addresses of the batch's `Attempting` changes that unsubscribed since the send
    /// began (`serve` and the CLI commit an unsubscribe before they answer): one read.
    fn unsubscribed(&self, batch: &[Request]) -> Result<HashSet<String>> {
        let mut gone = HashSet::new();
        if !batch
            .iter()
            .any(|r| matches!(r.change, Change::Attempting { .. }))
        {
            return Ok(gone);
        }
        let tx = self.reader.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached("SELECT 1 FROM unsubscribed WHERE email = ?1")?;
            for r in batch
                .iter()
                .filter(|r| matches!(r.change, Change::Attempting { .. }))
            {
                if stmt.exists([&r.email])? {
                    gone.insert(r.email.clone());
                }
            }
        }
        tx.finish()?;
        Ok(gone)
    }
}

/// The writer thread: the first error, if any.
fn write(
    decider: &mut Decider,
    mut log: SendLog,
    rx: &mpsc::Receiver<Request>,
    applier: &mpsc::Sender<ToApplier>,
) -> Option<String> {
    let mut failed: Option<String> = None;
    while let Some(batch) = gather(rx) {
        // After a failure nothing more is written: the caller stops the run, and the log
        // keeps the last steps that reached the disk.
        let result = match &failed {
            Some(e) => Err(e.clone()),
            None => durable(decider, &mut log, &batch, applier).map_err(|e| format!("{e:#}")),
        };
        if let Err(e) = &result {
            failed.get_or_insert_with(|| e.clone());
        }
        for (i, r) in batch.into_iter().enumerate() {
            if let Some(done) = r.done {
                let answer = match &result {
                    Ok(took) => Ok(took.get(i).copied().unwrap_or(false)),
                    Err(e) => Err(e.clone()),
                };
                let _ = done.send(answer);
            }
        }
    }
    // The run is over: once the database holds every step, the log is cleared.
    if failed.is_none() {
        let end = sync(applier).and_then(|()| log.wipe());
        if let Err(e) = end {
            failed = Some(format!("{e:#}"));
        }
    }
    failed
}

/// The next batch: what has queued up, waiting up to `LINGER` for a change someone waits
/// for when none does yet. `None` when the run is over.
fn gather(rx: &mpsc::Receiver<Request>) -> Option<Vec<Request>> {
    let first = rx.recv().ok()?;
    let mut batch = vec![first];
    let deadline = crate::clock::instant() + LINGER;
    loop {
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        if batch.len() >= MAX_BATCH || batch.iter().any(|r| r.done.is_some()) {
            break;
        }
        let left = deadline.saturating_duration_since(crate::clock::instant());
        match rx.recv_timeout(left) {
            Ok(r) => batch.push(r),
            Err(_) => break, // the moment passed, or the run is over
        }
    }
    Some(batch)
}

/// Decides a batch and makes its steps durable; returns, per request, whether it applied.
fn durable(
    decider: &mut Decider,
    log: &mut SendLog,
    batch: &[Request],
    applier: &mpsc::Sender<ToApplier>,
) -> Result<Vec<bool>> {
    let (entries, took) = decider.decide(batch)?;
    if entries.is_empty() {
        return Ok(took);
    }
    let waited = batch.iter().any(|r| r.done.is_some());
    if let Appended::Full = log.append(&entries, waited)? {
        sync(applier)?;
        log.restart();
        log.append(&entries, waited)?;
    }
    applier
        .send(ToApplier::Entries(entries))
        .map_err(|_| anyhow!("the journal's database thread has stopped"))?;
    Ok(took)
}

/// Waits until the database holds, durably, every step sent to the applier.
fn sync(applier: &mpsc::Sender<ToApplier>) -> Result<()> {
    let (tx, rx) = mpsc::channel();
    applier
        .send(ToApplier::Sync(tx))
        .map_err(|_| anyhow!("the journal's database thread has stopped"))?;
    rx.recv()
        .map_err(|_| anyhow!("the journal's database thread has stopped"))?
        .map_err(|e| anyhow!(e))
}

/// The applier thread: steps into the database, in large transactions. Returns the journal
/// and the first error; a step it could not apply stays in the log for the next run.
fn apply(mut journal: Journal, rx: &mpsc::Receiver<ToApplier>) -> (Journal, Option<String>) {
    let mut pending: Vec<Entry> = Vec::new();
    let mut failed: Option<String> = None;
    loop {
        let got = if pending.is_empty() {
            rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(APPLY_EVERY)
        };
        let result = match got {
            Ok(ToApplier::Entries(mut entries)) => {
                pending.append(&mut entries);
                if pending.len() >= APPLY_BATCH {
                    into_db(&mut journal, &mut pending, false)
                } else {
                    Ok(())
                }
            }
            Ok(ToApplier::Sync(reply)) => {
                let result = into_db(&mut journal, &mut pending, true);
                let _ = reply.send(result.clone());
                result
            }
            Err(mpsc::RecvTimeoutError::Timeout) => into_db(&mut journal, &mut pending, false),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if let Err(e) = result {
            failed.get_or_insert(e);
        }
    }
    if !pending.is_empty()
        && let Err(e) = into_db(&mut journal, &mut pending, true)
    {
        failed.get_or_insert(e);
    }
    (journal, failed)
}

/// Applies the pending steps (kept when that fails, to be tried again: a step is applied
/// once, by its number).
fn into_db(journal: &mut Journal, pending: &mut Vec<Entry>, durable: bool) -> Result<(), String> {
    if pending.is_empty() && !durable {
        return Ok(());
    }
    journal
        .apply_log(pending, durable)
        .map_err(|e| format!("cannot bring the state database up to date: {e:#}"))?;
    pending.clear();
    Ok(())
}
