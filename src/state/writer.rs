//! A running send's delivery steps made durable. Workers queue changes; whoever holds the
//! logger decides each against the row's state (kept in memory: during a send it is the
//! only writer of the edition's rows) and the unsubscribes recorded meanwhile, writes
//! whatever has queued up to the send log with one `fdatasync` (a group commit), and answers
//! those that wait. The sending thread syncs a group itself when one of its connections
//! waits for a step (`Durable::wait`): handing the sync to another thread and back cost two
//! wake-ups across cores per group, more than the sync keeps that thread busy. The writer
//! thread opens the logger and writes what no sender waits for (the `Sent` steps, after
//! `LINGER`) and the steps of callers outside the send's runtime. A second thread applies
//! the steps to the database in large transactions, off the path of the messages; the log
//! is replayed into the database after a crash. A one-recipient run in a project without a
//! send log makes none: its groups are committed straight into the database (`SMALL_RUN`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow};
use tokio::sync::oneshot;

use super::departures::{Departures, Reader};
use super::sendlog::{self, Appended, Entry, NewRows, SendLog};
use crate::clock::Clock;
use crate::state::{Change, Journal, State};

/// Changes written per group at most, so one write never grows without bound.
const MAX_BATCH: usize = 1024;

/// How long changes that no one waits for (a `Sent`) may wait for one that someone does
/// (the next message's `Attempting`) to share its sync: one `fdatasync` per message instead
/// of two. Such a change does not wake the writer, which looks this often anyway.
const LINGER: Duration = Duration::from_millis(5);

/// How long the first waiting change may wait for other connections' before the sync (a
/// group commit): each connection needs one sync per message (the next message's
/// `attempting`, between a message's content and its final dot, so that at most one
/// message per connection is in doubt), and in a virtual machine a sync costs ~0.1 ms of
/// CPU besides its wait. Syncing once half the sending connections wait, or after this,
/// halved the syncs per message at 4 and 16 connections (BENCHMARKS.md, "Quiet wake-ups,
/// group commit").
const GATHER: Duration = Duration::from_millis(1);

/// The database is brought up to date this often during a send (or sooner, after
/// `APPLY_BATCH` steps), so that `status` and bounce handling see the run's progress. The
/// applier looks this often; steps reach it without waking it.
const APPLY_EVERY: Duration = Duration::from_secs(1);
const APPLY_BATCH: usize = 4096;

/// A run of at most this many recipients in a project that has no send log yet records
/// its steps straight into the database, one commit per group on the thread that writes
/// it, and makes no log. Making a log costs a flush of the folder besides its first
/// record's (one flush in six for a one-recipient send); a commit costs more than a log
/// record, about a fifth of a millisecond per recipient here at one connection (the
/// database's pages, and its write-ahead log growing), which the flush saved makes up for
/// at one recipient only (BENCHMARKS.md, "A one-recipient first run: 5 flushes").
const SMALL_RUN: usize = 1;

const UNSUBSCRIBED: &str = "unsubscribed during the send";

struct Request {
    email: String,
    /// `None`: a barrier, which writes nothing and is answered once every step queued
    /// before it is on disk (`Recorder::barrier`).
    change: Option<Change>,
    done: Option<oneshot::Sender<Result<bool, String>>>,
}

enum ToApplier {
    /// A new edition's rows, written by their steps (`sendlog::NewRows`).
    Rows(NewRows),
    Entries(Vec<Entry>),
    /// Apply everything so far, durably, then answer; at the end of the run, with the
    /// edition to mark complete in that same commit when none of its rows waits.
    Sync(
        mpsc::Sender<Result<(), String>>,
        Option<(String, SystemTime)>,
    ),
}

/// The workers' requests, in the order they were made. Only a request someone waits for
/// wakes the writer: waking a thread costs more than the step itself (in a virtual machine
/// an interrupt to another core), and a send would otherwise wake it twice per message.
#[derive(Default)]
struct Queue {
    pending: Mutex<Pending>,
    ready: Condvar,
    /// What decides and writes the steps, once the writer thread has opened it. Whoever
    /// holds it takes the queued requests: a sending thread that waits for its step syncs
    /// the group itself (`Queue::flush_here`), the writer thread syncs the rest.
    log: Mutex<Option<Logger>>,
}

#[derive(Default)]
struct Pending {
    requests: Vec<Request>,
    /// Requests someone waits for.
    waiting: usize,
    /// Connections sending at the moment (`Recorder::member`).
    members: usize,
    closed: bool,
}

impl Pending {
    /// Half the sending connections wait: sync now. Waiting for all of them made them send
    /// in lockstep, and at 4 connections the slowest one's round trip held up the others
    /// (a fifth fewer messages a second); with half, the two halves take turns.
    fn complete(&self) -> bool {
        self.waiting > 0 && self.waiting * 2 >= self.members
    }
}

impl Queue {
    fn lock(&self) -> Result<MutexGuard<'_, Pending>> {
        self.pending
            .lock()
            .map_err(|_| anyhow!("the journal writer has stopped"))
    }

    fn close(&self) {
        if let Ok(mut p) = self.pending.lock() {
            p.closed = true;
        }
        self.ready.notify_one();
    }

    /// Takes the queued requests, `MAX_BATCH` at most (for the caller to hold the logger,
    /// so that requests reach the log in the order they were made).
    fn take(&self) -> Vec<Request> {
        let Ok(mut p) = self.pending.lock() else {
            return Vec::new();
        };
        let take = p.requests.len().min(MAX_BATCH);
        let batch: Vec<Request> = p.requests.drain(..take).collect();
        p.waiting = p.requests.iter().filter(|r| r.done.is_some()).count();
        batch
    }

    /// Makes every queued request durable on the calling thread; `false` when the logger
    /// is not open yet (the writer thread will, once it is).
    fn flush_here(&self) -> bool {
        let Ok(mut slot) = self.log.lock() else {
            return false;
        };
        let Some(logger) = slot.as_mut() else {
            return false;
        };
        loop {
            let batch = self.take();
            if batch.is_empty() {
                return true;
            }
            logger.flush(batch);
        }
    }
}

pub(crate) struct Writer {
    queue: Arc<Queue>,
    /// The writer thread: the journal, when the steps went straight into it, and the first
    /// error.
    handle: JoinHandle<(Option<Journal>, Option<String>)>,
    /// The database thread, when the steps go through the send log.
    applier: Option<JoinHandle<(Journal, Option<String>)>>,
}

/// A cheap handle for workers. A disabled recorder (for test copies) records nothing.
#[derive(Clone)]
pub(crate) struct Recorder {
    queue: Option<Arc<Queue>>,
}

impl Writer {
    /// Starts the threads for one edition's send: the writer and, unless the run is small
    /// and has no send log (`SMALL_RUN`), the database thread. `state` is the database's
    /// path; the journal must have replayed any earlier log (`Journal::replay_send_log`).
    /// `new_rows` are rows not in the database yet (a new edition's recipients): each is
    /// written by the apply of its first steps, and the rest, pending, at the run's end
    /// (`sendlog::NewRows`).
    pub(crate) fn start(
        journal: Journal,
        state: &Path,
        edition_id: String,
        clock: Clock,
        new_rows: Vec<String>,
        reader: Option<Reader>,
    ) -> Result<Writer> {
        let mut rows = journal.waiting(&edition_id)?;
        rows.reserve(new_rows.len());
        for email in &new_rows {
            rows.entry(email.clone()).or_insert(State::Pending);
        }
        let next_seq = journal.log_applied()? + 1;
        let log_path = sendlog::path_for(state);
        let made = log_path
            .try_exists()
            .with_context(|| format!("cannot look for the send log {}", log_path.display()))?;
        let new_rows =
            (!new_rows.is_empty()).then(|| NewRows::new(edition_id.clone(), new_rows, clock.now()));
        let (steps, applier) = if made || rows.len() > SMALL_RUN {
            let log = SendLog::open(&log_path)?;
            let (to_applier, from_writer) = mpsc::channel::<ToApplier>();
            if let Some(new_rows) = new_rows {
                // Before any step, in the channel's order.
                let _ = to_applier.send(ToApplier::Rows(new_rows));
            }
            let applier = std::thread::spawn(move || {
                give_way();
                apply(journal, &from_writer)
            });
            let to_db = ToDb {
                tx: to_applier,
                thread: applier.thread().clone(),
                queued: 0,
            };
            (Steps::Log(log, to_db), Some(applier))
        } else {
            let here = Commits {
                journal,
                unwritten: new_rows,
                pending: Vec::new(),
            };
            (Steps::Database(here), None)
        };
        let queue = Arc::new(Queue::default());
        let from_workers = Arc::clone(&queue);
        let state = state.to_path_buf();
        let handle = std::thread::spawn(move || {
            // The writer's own connection opens on its thread, while the sending thread
            // goes on to its first message.
            let departures = match reader {
                Some(early) => Departures::open_from(early, &state, &rows),
                None => Departures::open(&state, &rows),
            }
            .map_err(|e| format!("{e:#}"));
            let decider = Decider {
                rows,
                departures,
                edition_id,
                next_seq,
                clock,
            };
            let logger = Logger {
                decider,
                steps,
                failed: None,
                #[cfg(test)]
                wrote_on: Vec::new(),
            };
            write(logger, &from_workers)
        });
        Ok(Writer {
            queue,
            handle,
            applier,
        })
    }

    pub(crate) fn recorder(&self) -> Recorder {
        Recorder {
            queue: Some(Arc::clone(&self.queue)),
        }
    }

    /// Waits until every change sent so far is durable and in the database; returns the
    /// journal and the first error, if any. Recorders are not to be used after this.
    pub(crate) fn finish(self) -> (Option<Journal>, Option<String>) {
        self.queue.close();
        let (held, written) = self
            .handle
            .join()
            .unwrap_or_else(|_| (None, Some("the journal writer stopped unexpectedly".into())));
        let Some(database_thread) = self.applier else {
            return (held, written);
        };
        match database_thread.join() {
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
        Recorder { queue: None }
    }

    /// A sending connection joins the group commit for as long as the `Member` lives.
    pub(crate) fn member(&self) -> Member {
        if let Some(queue) = &self.queue
            && let Ok(mut p) = queue.pending.lock()
        {
            p.members += 1;
        }
        Member {
            queue: self.queue.clone(),
        }
    }

    /// Records a change someone waits for: it is queued at once, in order with the
    /// caller's earlier changes, and made durable when the caller waits for it
    /// (`Durable::wait`), with whatever other connections queued meanwhile.
    pub(crate) fn begin(&self, email: &str, change: Change) -> Result<Durable> {
        self.waited(email, Some(change))
    }

    /// Made durable, like `begin`'s, once every change recorded before it is on disk
    /// (the `Sent` steps, which no one waits for otherwise); it records nothing itself.
    pub(crate) fn barrier(&self) -> Result<Durable> {
        self.waited("", None)
    }

    /// Queues `change` (a barrier when `None`) for a caller that will wait for it.
    fn waited(&self, email: &str, change: Option<Change>) -> Result<Durable> {
        let waiting = self.send(email, change, true, false)?;
        Ok(Durable(waiting.and_then(|w| {
            self.queue.as_ref().map(|q| (Arc::clone(q), w))
        })))
    }

    /// Records changes from a thread outside the send's runtime, in one group; returns,
    /// per change, whether it applied.
    pub(crate) fn commit_blocking(&self, changes: Vec<(String, Change)>) -> Result<Vec<bool>> {
        let mut waits = Vec::with_capacity(changes.len());
        for (email, change) in changes {
            waits.push(self.send(&email, Some(change), true, true)?);
        }
        waits
            .into_iter()
            .map(|w| w.map_or(Ok(true), |w| answer(w.blocking_recv())))
            .collect()
    }

    /// Records a change without waiting. Changes are written in the order they are sent,
    /// so a later `begin` from the same worker also makes this one durable.
    pub(crate) fn record(&self, email: &str, change: Change) {
        let _ = self.send(email, Some(change), false, false);
    }

    fn send(
        &self,
        email: &str,
        change: Option<Change>,
        wait: bool,
        wake: bool,
    ) -> Result<Option<Answer>> {
        let Some(queue) = &self.queue else {
            return Ok(None);
        };
        let (done, waiting) = if wait {
            let (d, w) = oneshot::channel();
            (Some(d), Some(w))
        } else {
            (None, None)
        };
        let mut pending = queue.lock()?;
        if pending.closed {
            return Err(anyhow!("the journal writer has stopped"));
        }
        pending.requests.push(Request {
            email: email.to_string(),
            change,
            done,
        });
        if wait {
            pending.waiting += 1;
        }
        // The first waiting request starts the writer's clock; the one that completes the
        // group ends its wait.
        let wake = (wake && wait && (pending.waiting == 1 || pending.complete()))
            || pending.requests.len() >= MAX_BATCH;
        drop(pending);
        if wake {
            queue.ready.notify_one();
        }
        Ok(waiting)
    }
}

/// A change handed to the writer (`Recorder::begin`), on its way to disk.
pub(crate) struct Durable(Option<(Arc<Queue>, Answer)>);

/// Whether a change applied, or why the journal failed.
type Answer = oneshot::Receiver<Result<bool, String>>;

impl Durable {
    /// Whether there is a journal to wait for: a disabled recorder's changes (a test copy,
    /// a run without the journal) are settled at once, and applied.
    pub(crate) fn is_recorded(&self) -> bool {
        self.0.is_some()
    }

    /// Returns once the change is on disk; `false` when it did not apply (an `Attempting`
    /// for an address that unsubscribed meanwhile, or a row no longer waiting).
    pub(crate) async fn wait(self) -> Result<bool> {
        let Some((queue, mut wait)) = self.0 else {
            return Ok(true);
        };
        // What runs beside the wait (the envelope, pipelined) goes out first, and the
        // other connections' ready work adds their steps to the group.
        tokio::task::yield_now().await;
        match wait.try_recv() {
            Ok(got) => return answer(Ok(got)),
            Err(oneshot::error::TryRecvError::Closed) => {
                return Err(anyhow!("the journal writer has stopped"));
            }
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        // Until half the sending connections wait (one of them then syncs for all), or for
        // `GATHER` at most.
        let complete = queue.pending.lock().map_or(true, |p| p.complete());
        if !complete {
            tokio::select! {
                got = &mut wait => return answer(got),
                () = tokio::time::sleep(GATHER) => {}
            }
        }
        if !queue.flush_here() {
            queue.ready.notify_one();
        }
        answer(wait.await)
    }
}

/// A sending connection, for as long as it lives: a sync waits (up to `GATHER`) for half
/// the members' changes.
pub(crate) struct Member {
    queue: Option<Arc<Queue>>,
}

impl Drop for Member {
    fn drop(&mut self) {
        let Some(queue) = &self.queue else {
            return;
        };
        let complete = queue.pending.lock().is_ok_and(|mut p| {
            p.members = p.members.saturating_sub(1);
            p.complete()
        });
        // The group may be complete without this connection.
        if complete {
            queue.ready.notify_one();
        }
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
    /// Why it could not be opened, if so: then no message may start.
    departures: Result<Departures, String>,
    edition_id: String,
    next_seq: u64,
    clock: Clock,
}

impl Decider {
    /// The log entries of a batch, and per request whether its change applied.
    fn decide(&mut self, batch: &[Request]) -> Result<(Vec<Entry>, Vec<bool>)> {
        if batch
            .iter()
            .any(|r| matches!(r.change, Some(Change::Attempting { .. })))
        {
            self.departures
                .as_mut()
                .map_err(|e| anyhow!("{e}"))?
                .refresh()?;
        }
        let now = self.clock.now();
        let mut entries = Vec::with_capacity(batch.len());
        let mut applied = Vec::with_capacity(batch.len());
        for r in batch {
            let Some(change) = &r.change else {
                // A barrier: nothing to write.
                applied.push(true);
                continue;
            };
            let refused = matches!(change, Change::Attempting { .. })
                && self.departures.as_ref().is_ok_and(|d| d.contains(&r.email));
            let change = if refused {
                Change::Skipped {
                    reason: UNSUBSCRIBED.into(),
                }
            } else {
                change.clone()
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
}

/// What makes steps durable: the decider, and where the steps go.
struct Logger {
    decider: Decider,
    steps: Steps,
    /// The first error: after it nothing more is written (the caller stops the run, and
    /// the log keeps the last steps that reached the disk).
    failed: Option<String>,
    /// The threads that wrote each group, in order.
    #[cfg(test)]
    wrote_on: Vec<std::thread::ThreadId>,
}

impl Logger {
    /// Decides `batch`, makes it durable and answers those that wait.
    fn flush(&mut self, batch: Vec<Request>) {
        #[cfg(test)]
        self.wrote_on.push(std::thread::current().id());
        let result = match &self.failed {
            Some(e) => Err(e.clone()),
            None => {
                durable(&mut self.decider, &mut self.steps, &batch).map_err(|e| format!("{e:#}"))
            }
        };
        if let Err(e) = &result {
            self.failed.get_or_insert_with(|| e.clone());
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
}

/// The writer thread: the journal, if the steps went straight into it, and the first
/// error, if any.
fn write(logger: Logger, queue: &Queue) -> (Option<Journal>, Option<String>) {
    let stopped = || (None, Some("the journal writer stopped unexpectedly".into()));
    match queue.log.lock() {
        Ok(mut slot) => *slot = Some(logger),
        Err(_) => return stopped(),
    }
    // Steps asked for before the logger was open.
    queue.flush_here();
    loop {
        let more = due(queue);
        queue.flush_here();
        if !more {
            break;
        }
    }
    let Some(mut logger) = queue.log.lock().ok().and_then(|mut slot| slot.take()) else {
        return stopped();
    };
    // The run is over: once the database holds every step, the log is cleared.
    if logger.failed.is_none() {
        let complete = (
            logger.decider.edition_id.clone(),
            logger.decider.clock.now(),
        );
        let end = match &mut logger.steps {
            Steps::Log(log, applier) => applier.sync(Some(complete)).and_then(|()| log.wipe()),
            Steps::Database(here) => here.commit(true, Some((&complete.0, complete.1))),
        };
        if let Err(e) = end {
            logger.failed = Some(format!("{e:#}"));
        }
    }
    match logger.steps {
        Steps::Log(_, applier) => {
            applier.close();
            (None, logger.failed)
        }
        Steps::Database(here) => (Some(here.journal), logger.failed),
    }
}

/// Waits until what has queued up is due: once someone waits for a change in it or, when
/// no one does, after `LINGER`. `false` when the run is over and everything is taken.
fn due(queue: &Queue) -> bool {
    // A poisoned lock means a worker panicked while queueing: the run is over.
    let Ok(mut p) = queue.pending.lock() else {
        return false;
    };
    let mut deadline = None;
    loop {
        if p.complete() || p.requests.len() >= MAX_BATCH {
            break;
        }
        if p.closed {
            return !p.requests.is_empty();
        }
        if p.waiting > 0 {
            let now = crate::clock::instant();
            let until = *deadline.get_or_insert(now + GATHER);
            if now >= until {
                break;
            }
            let Ok((next, _)) = queue.ready.wait_timeout(p, until - now) else {
                return false;
            };
            p = next;
            continue;
        }
        let Ok((next, waited)) = queue.ready.wait_timeout(p, LINGER) else {
            return false;
        };
        p = next;
        if waited.timed_out() && !p.requests.is_empty() && p.waiting == 0 {
            break;
        }
    }
    true
}

/// Where a run's steps are made durable.
enum Steps {
    /// The send log, one sync per group; the database thread applies them a moment later.
    Log(SendLog, ToDb),
    /// The database itself, one commit per group (a small run without a log: `SMALL_RUN`).
    Database(Commits),
}

/// A small run's steps committed into the database by the thread that writes the group:
/// synced when someone waits for one of them, otherwise left to the operating system, as
/// the log's are (a killed process loses none; a power cut, only steps no one waited for).
struct Commits {
    journal: Journal,
    /// The new edition's rows not written yet.
    unwritten: Option<NewRows>,
    /// Steps not committed yet (kept when a commit fails, to be tried again).
    pending: Vec<Entry>,
}

impl Commits {
    /// Commits the steps so far, synced with `durable` (and marks the edition complete
    /// with `complete` if none of its rows waits).
    fn commit(&mut self, durable: bool, complete: Option<(&str, SystemTime)>) -> Result<()> {
        let all = complete.is_some();
        into_db(
            &mut self.journal,
            &mut self.unwritten,
            &mut self.pending,
            durable,
            complete,
            all,
        )
        .map_err(|e| anyhow!(e))
    }
}

/// Decides a batch and makes its steps durable; returns, per request, whether it applied.
fn durable(decider: &mut Decider, steps: &mut Steps, batch: &[Request]) -> Result<Vec<bool>> {
    let (entries, took) = decider.decide(batch)?;
    let waited = batch.iter().any(|r| r.done.is_some());
    let (log, applier) = match steps {
        Steps::Log(log, applier) => (log, applier),
        Steps::Database(here) => {
            if !entries.is_empty() || waited {
                here.pending.extend(entries);
                here.commit(waited, None)?;
            }
            return Ok(took);
        }
    };
    if entries.is_empty() {
        // Someone waits for steps written earlier without a sync (a barrier).
        if waited {
            log.sync_written()?;
        }
        return Ok(took);
    }
    if let Appended::Full = log.append(&entries, waited)? {
        applier.sync(None)?;
        log.restart();
        log.append(&entries, waited)?;
    }
    applier.entries(entries)?;
    Ok(took)
}

/// The writer's side of the applier thread. Steps are handed over without waking it (it
/// looks every `APPLY_EVERY`); a sync, a large backlog and the end of the run wake it.
struct ToDb {
    tx: mpsc::Sender<ToApplier>,
    thread: Thread,
    queued: usize,
}

impl ToDb {
    fn entries(&mut self, entries: Vec<Entry>) -> Result<()> {
        self.queued += entries.len();
        self.tx
            .send(ToApplier::Entries(entries))
            .map_err(|_| anyhow!("the journal's database thread has stopped"))?;
        if self.queued >= APPLY_BATCH {
            self.queued = 0;
            self.thread.unpark();
        }
        Ok(())
    }

    /// Waits until the database holds, durably, every step handed over (and the edition
    /// marked complete if `complete` and done).
    fn sync(&mut self, complete: Option<(String, SystemTime)>) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(ToApplier::Sync(tx, complete))
            .map_err(|_| anyhow!("the journal's database thread has stopped"))?;
        self.queued = 0;
        self.thread.unpark();
        rx.recv()
            .map_err(|_| anyhow!("the journal's database thread has stopped"))?
            .map_err(|e| anyhow!(e))
    }

    /// The run is over: the applier applies what is left and ends.
    fn close(self) {
        let ToDb { tx, thread, .. } = self;
        drop(tx);
        thread.unpark();
    }
}

/// Lowers the calling thread to the lowest priority (nice 19). The database thread's work
/// can wait (the log holds every step meanwhile, and the run's end waits for it): at the
/// usual priority it took CPU time the sending thread and the relay needed at that moment,
/// and on two cores gave 2 % of throughput at 4 connections and 4 % at 16 (BENCHMARKS.md,
/// "The database thread gives way"). Best effort: a system that refuses leaves it as it is.
fn give_way() {
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
}

/// The applier thread: steps into the database, in large transactions. Returns the journal
/// and the first error; a step it could not apply stays in the log for the next run.
fn apply(mut journal: Journal, rx: &mpsc::Receiver<ToApplier>) -> (Journal, Option<String>) {
    let mut pending: Vec<Entry> = Vec::new();
    // A new edition's rows not written yet: its steps write them, and the run's end the
    // rest (an edition must not be marked complete while some of its rows are missing).
    let mut unwritten: Option<NewRows> = None;
    let mut failed: Option<String> = None;
    let mut applied_at = crate::clock::instant();
    loop {
        let result = match rx.try_recv() {
            Ok(ToApplier::Rows(rows)) => {
                unwritten = Some(rows);
                Ok(())
            }
            Ok(ToApplier::Entries(mut entries)) => {
                pending.append(&mut entries);
                continue;
            }
            Ok(ToApplier::Sync(reply, complete)) => {
                let complete = complete.as_ref().map(|(id, at)| (id.as_str(), *at));
                let all = complete.is_some();
                let result = into_db(
                    &mut journal,
                    &mut unwritten,
                    &mut pending,
                    true,
                    complete,
                    all,
                );
                applied_at = crate::clock::instant();
                let _ = reply.send(result.clone());
                result
            }
            Err(mpsc::TryRecvError::Disconnected) => break,
            // Everything handed over so far is taken: apply when it is time, then sleep.
            Err(mpsc::TryRecvError::Empty) => {
                let mut result = Ok(());
                if pending.len() >= APPLY_BATCH || applied_at.elapsed() >= APPLY_EVERY {
                    result = into_db(
                        &mut journal,
                        &mut unwritten,
                        &mut pending,
                        false,
                        None,
                        false,
                    );
                    applied_at = crate::clock::instant();
                }
                std::thread::park_timeout(APPLY_EVERY.saturating_sub(applied_at.elapsed()));
                result
            }
        };
        if let Err(e) = result {
            failed.get_or_insert(e);
        }
    }
    if (!pending.is_empty() || unwritten.is_some())
        && let Err(e) = into_db(&mut journal, &mut unwritten, &mut pending, true, None, true)
    {
        failed.get_or_insert(e);
    }
    (journal, failed)
}

/// Applies the pending steps (kept when that fails, to be tried again: a step is applied
/// once, by its number), writing a new edition's rows as it goes; with `all` (the run's
/// end), its rows that no step reached too.
fn into_db(
    journal: &mut Journal,
    unwritten: &mut Option<NewRows>,
    pending: &mut Vec<Entry>,
    durable: bool,
    complete: Option<(&str, SystemTime)>,
    all: bool,
) -> Result<(), String> {
    if pending.is_empty() && !durable {
        return Ok(());
    }
    journal
        .apply_log(pending, durable, complete, unwritten.as_mut(), all)
        .map_err(|e| format!("cannot bring the state database up to date: {e:#}"))?;
    pending.clear();
    if unwritten.as_ref().is_some_and(|u| u.unwritten.is_empty()) {
        *unwritten = None;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    /// A database `state.db` in the directory returned, with edition `e` and no rows, and
    /// a send log (as a project has after its first run, whatever the run's size).
    pub(crate) fn edition_e() -> (tempfile::TempDir, std::path::PathBuf, Journal) {
        let d = tempfile::tempdir().expect("tempdir");
        let path = d.path().join("state.db");
        std::fs::write(sendlog::path_for(&path), b"").expect("send log");
        let mut j = Journal::open(&path).expect("open");
        j.connection()
            .execute(
                "INSERT INTO edition (id, date, created_at, frozen) VALUES ('e', '2026-11-27', 0, '{}')",
                [],
            )
            .expect("edition");
        (d, path, j)
    }

    /// Every delivery row's address and state, in the order the rows were written.
    pub(crate) fn rows_in_order(j: &mut Journal) -> Vec<(String, String)> {
        j.connection()
            .prepare("SELECT email, state FROM delivery ORDER BY rowid")
            .expect("select")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    }

    /// A writer for edition `e` with `n` pending rows `r0@…`, `r1@…`, its database
    /// `state.db` in the directory returned.
    pub(crate) fn writer(n: usize) -> (tempfile::TempDir, Writer) {
        let (d, path, mut j) = edition_e();
        for i in 0..n {
            j.connection()
                .execute(
                    "INSERT INTO delivery (edition_id, email, state, updated_at) VALUES ('e', ?1, 'pending', 0)",
                    [format!("r{i}@harbour.example")],
                )
                .expect("row");
        }
        let clock = Clock::at(UNIX_EPOCH + Duration::from_hours(72));
        // The read connection opened beforehand, as a send opens it.
        let reader = Some(Reader::open(&path));
        let w = Writer::start(j, &path, "e".into(), clock, Vec::new(), reader).expect("start");
        (d, w)
    }

    /// Finishes a writer of one row (without an error) and returns that row's state.
    pub(crate) fn finish_one(w: Writer) -> String {
        let (journal, error) = w.finish();
        assert_eq!(error, None);
        journal
            .expect("journal")
            .connection()
            .query_row("SELECT state FROM delivery", [], |r| r.get(0))
            .expect("row")
    }

    fn attempting(i: usize) -> Change {
        Change::Attempting {
            message_id: format!("<{i}@harbour.example>"),
            after: None,
        }
    }

    #[test]
    fn members_that_never_ask_delay_a_sync_by_the_gathering_time_only() {
        let (_d, w) = writer(1);
        let recorder = w.recorder();
        let asking = recorder.member();
        let silent = [recorder.member(), recorder.member()];
        let started = crate::clock::instant();
        let took = recorder
            .commit_blocking(vec![("r0@harbour.example".into(), attempting(0))])
            .expect("commit");
        assert_eq!(took, vec![true]);
        // Generous: a loaded machine may be slow, but the writer must not wait for the
        // silent members for ever.
        assert!(started.elapsed() < Duration::from_secs(5));
        drop((asking, silent, recorder));
        assert_eq!(finish_one(w), "attempting");
    }

    /// A send of `n` rows in which, after r0's attempt, `between` changes the list from
    /// another connection (as `serve` and the command line do); then r1, r2, … are
    /// attempted one by one. Whether each attempt applied.
    fn attempts_around(n: usize, between: impl FnOnce(&mut Journal)) -> Vec<bool> {
        let (d, w) = writer(n);
        let recorder = w.recorder();
        let ask = |i: usize| {
            recorder
                .commit_blocking(vec![(format!("r{i}@harbour.example"), attempting(i))])
                .expect("commit")[0]
        };
        let mut applied = vec![ask(0)];
        between(&mut Journal::open(&d.path().join("state.db")).expect("open"));
        applied.extend((1..n).map(ask));
        drop(recorder);
        let (_, error) = w.finish();
        assert_eq!(error, None);
        applied
    }

    #[test]
    fn a_sender_that_waits_writes_the_group_itself_with_the_other_connections_steps() {
        const ROUNDS: usize = 10;
        let (_d, w) = writer(2 * ROUNDS);
        let recorder = w.recorder();
        let members: Vec<Member> = (0..2).map(|_| recorder.member()).collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // Once the writer thread has opened the logger, no group waits for it.
        let open = crate::clock::instant();
        while w.queue.log.lock().expect("lock").is_none() {
            assert!(open.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(1));
        }
        for round in 0..ROUNDS {
            let (a, b) = (2 * round, 2 * round + 1);
            let (first, second) = runtime.block_on(async {
                let first = recorder.begin(&format!("r{a}@harbour.example"), attempting(a));
                let second = recorder.begin(&format!("r{b}@harbour.example"), attempting(b));
                tokio::join!(first.expect("begin").wait(), second.expect("begin").wait())
            });
            assert!(first.expect("first") && second.expect("second"));
        }
        let wrote_on = w
            .queue
            .log
            .lock()
            .expect("lock")
            .as_ref()
            .expect("logger")
            .wrote_on
            .clone();
        // The writer thread, looking every `LINGER`, may take a group now and then; the
        // sender writes the others, each both connections' steps in one group.
        let here = std::thread::current().id();
        let by_sender = wrote_on.iter().filter(|t| **t == here).count();
        assert!(
            by_sender > ROUNDS / 2,
            "{by_sender} of {} groups",
            wrote_on.len()
        );
        assert!(
            wrote_on.len() <= ROUNDS + 2,
            "{} groups for {ROUNDS} pairs",
            wrote_on.len()
        );
        drop((members, recorder));
        let (_, error) = w.finish();
        assert_eq!(error, None);
    }

    #[test]
    fn a_small_run_without_a_send_log_commits_its_steps_and_makes_none() {
        for (rows, made) in [(SMALL_RUN, false), (SMALL_RUN + 1, true)] {
            let (d, path, j) = edition_e();
            let log = sendlog::path_for(&path);
            std::fs::remove_file(&log).expect("no send log");
            let clock = Clock::at(UNIX_EPOCH + Duration::from_hours(72));
            let emails: Vec<String> = (0..rows).map(|i| format!("r{i}@harbour.example")).collect();
            let w = Writer::start(j, &path, "e".into(), clock, emails, None).expect("start");
            let recorder = w.recorder();
            let took = recorder
                .commit_blocking(vec![("r0@harbour.example".into(), attempting(0))])
                .expect("commit");
            assert_eq!(took, [true]);
            // Durable once answered: in the database (seen from another connection), or in
            // the log.
            let state = || {
                rusqlite::Connection::open(&path)
                    .expect("open")
                    .query_row(
                        "SELECT state FROM delivery WHERE email = 'r0@harbour.example'",
                        [],
                        |r| r.get::<_, String>(0),
                    )
                    .ok()
            };
            let logged = || {
                sendlog::read(&log).is_ok_and(|(entries, _)| {
                    entries
                        .iter()
                        .any(|e| matches!(e.change, Change::Attempting { .. }))
                })
            };
            if made {
                assert!(logged(), "{rows} rows: the step is in the log");
            } else {
                assert_eq!(state().as_deref(), Some("attempting"), "{rows} rows");
                assert!(!log.exists(), "{rows} rows: no log");
            }
            drop(recorder);
            let (_, error) = w.finish();
            assert_eq!(error, None);
            assert_eq!(state().as_deref(), Some("attempting"), "{rows} rows");
            let files: Vec<_> = std::fs::read_dir(d.path())
                .expect("dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains("sendlog"))
                .collect();
            let expected: &[&str] = if made { &["state.db-sendlog"] } else { &[] };
            assert_eq!(files, expected, "{rows} rows");
        }
    }

    #[test]
    fn a_new_editions_rows_are_written_by_their_steps_and_the_rest_at_the_end() {
        let (_d, path, j) = edition_e();
        let clock = Clock::at(UNIX_EPOCH + Duration::from_hours(72));
        let emails: Vec<String> = (0..3).map(|i| format!("r{i}@harbour.example")).collect();
        let w = Writer::start(j, &path, "e".into(), clock, emails, None).expect("start");
        let recorder = w.recorder();
        let took = recorder
            .commit_blocking(vec![
                ("r1@harbour.example".into(), attempting(1)),
                (
                    "r1@harbour.example".into(),
                    Change::Sent {
                        reply: "250 ok".into(),
                    },
                ),
            ])
            .expect("commit");
        assert_eq!(took, [true, true]);
        drop(recorder);
        let (journal, error) = w.finish();
        assert_eq!(error, None);
        let rows = rows_in_order(&mut journal.expect("journal"));
        let row = |i: usize, s: &str| (format!("r{i}@harbour.example"), s.to_string());
        // r1 by its steps; the two no step reached at the run's end, in the list's order.
        assert_eq!(rows, [row(1, "sent"), row(0, "pending"), row(2, "pending")]);
    }

    #[test]
    fn an_edition_whose_rows_could_not_be_written_is_not_completed() {
        let (_d, path, mut j) = edition_e();
        // The rows' one transaction fails, every time it is tried.
        j.connection()
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON delivery WHEN NEW.email = 'r1@harbour.example'
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .expect("trigger");
        let clock = Clock::at(UNIX_EPOCH + Duration::from_hours(72));
        let emails: Vec<String> = (0..2).map(|i| format!("r{i}@harbour.example")).collect();
        let w = Writer::start(j, &path, "e".into(), clock, emails, None).expect("start");
        let recorder = w.recorder();
        let sent = Change::Sent {
            reply: "250 ok".into(),
        };
        let r0 = "r0@harbour.example".to_string();
        recorder
            .commit_blocking(vec![(r0.clone(), attempting(0)), (r0, sent)])
            .expect("commit");
        drop(recorder);
        let (journal, error) = w.finish();
        assert!(error.is_some_and(|e| e.contains("refused")));
        let completed: Option<i64> = journal
            .expect("journal")
            .connection()
            .query_row("SELECT completed_at FROM edition", [], |r| r.get(0))
            .expect("edition");
        assert_eq!(
            completed, None,
            "r1 has no row yet: the edition is not done"
        );
    }

    #[test]
    fn an_unsubscribe_committed_during_a_send_is_honoured_for_a_later_message_too() {
        // r1's group is decided after the commit and before r2's: a shortcut that trusted
        // that read for later groups would send to r2.
        let applied = attempts_around(3, |other| {
            other
                .record_unsubscribe("r2@harbour.example", "test", UNIX_EPOCH)
                .expect("unsubscribe");
        });
        assert_eq!(applied, [true, true, false]);
    }

    #[test]
    fn an_address_that_left_and_came_back_during_a_send_is_mailed() {
        let applied = attempts_around(2, |other| {
            other
                .record_unsubscribe("r1@harbour.example", "test", UNIX_EPOCH)
                .expect("unsubscribe");
            other
                .record_subscribe("r1@harbour.example", None, UNIX_EPOCH)
                .expect("subscribe");
        });
        assert_eq!(applied, [true, true]);
    }

    #[test]
    fn four_members_asking_at_once_are_all_answered() {
        let (_d, w) = writer(4);
        let recorder = w.recorder();
        let members: Vec<Member> = (0..4).map(|_| recorder.member()).collect();
        let answered = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for i in 0..4 {
                let (recorder, answered) = (recorder.clone(), &answered);
                s.spawn(move || {
                    let took = recorder
                        .commit_blocking(vec![(format!("r{i}@harbour.example"), attempting(i))])
                        .expect("commit");
                    assert_eq!(took, vec![true]);
                    answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
        assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 4);
        drop((members, recorder));
        let (journal, error) = w.finish();
        assert_eq!(error, None);
        let n: i64 = journal
            .expect("journal")
            .connection()
            .query_row(
                "SELECT count(*) FROM delivery WHERE state = 'attempting'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(n, 4);
    }

    #[test]
    fn the_last_commit_of_a_send_completes_an_edition_with_nothing_left() {
        let completed = |rows: usize, sent: usize| {
            let (_d, w) = writer(rows);
            let recorder = w.recorder();
            let changes = (0..sent)
                .flat_map(|i| {
                    let email = format!("r{i}@harbour.example");
                    let reply = Change::Sent {
                        reply: "250 ok".into(),
                    };
                    [(email.clone(), attempting(i)), (email, reply)]
                })
                .collect();
            recorder.commit_blocking(changes).expect("commit");
            drop(recorder);
            let (journal, error) = w.finish();
            assert_eq!(error, None);
            journal
                .expect("journal")
                .connection()
                .query_row("SELECT completed_at FROM edition", [], |r| {
                    r.get::<_, Option<i64>>(0)
                })
                .expect("edition")
        };
        assert_eq!(completed(2, 2), Some(72 * 3600));
        assert_eq!(completed(2, 1), None, "a row still waits");
    }

    /// A queue with `members` sending connections and `waiting` requests already queued.
    fn queue(members: usize, waiting: usize) -> Queue {
        let q = Queue::default();
        {
            let mut p = q.pending.lock().expect("lock");
            p.members = members;
            for i in 0..waiting {
                let (done, _) = oneshot::channel();
                p.requests.push(Request {
                    email: format!("r{i}@harbour.example"),
                    change: Some(attempting(i)),
                    done: Some(done),
                });
                p.waiting += 1;
            }
        }
        q
    }

    #[test]
    fn a_sync_waits_for_half_the_members_then_goes_without_them() {
        let q = queue(3, 1);
        let started = crate::clock::instant();
        assert!(due(&q));
        let batch = q.take();
        assert_eq!(batch.len(), 1);
        assert!(started.elapsed() >= GATHER, "{:?}", started.elapsed());
    }

    #[test]
    fn a_complete_group_is_taken_whole() {
        let q = queue(4, 2);
        assert!(due(&q));
        assert_eq!(q.take().len(), 2);
        assert_eq!(q.pending.lock().expect("lock").waiting, 0);
        // No member: a lone request (the list watcher's) is a complete group.
        let q = queue(0, 1);
        assert!(due(&q));
        assert_eq!(q.take().len(), 1);
    }
}
