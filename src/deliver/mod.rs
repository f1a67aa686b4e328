//! The delivery engine: N workers, each with its own connection, take messages from a
//! bounded queue that is filled as they go (messages are composed as they are sent, never
//! all held at once). Every outcome is classified and journaled; a stop (signal, fatal
//! error, circuit breaker, quota, journal failure) lets in-flight messages finish and
//! starts no new one.

pub(crate) mod outbox;
pub(crate) mod progress;
pub(crate) mod sign;
pub(crate) mod smtp;
pub(crate) mod tap;
pub(crate) mod tls;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::{Mutex, watch};

use crate::clock::Clock;
use crate::config::Pacing;
use crate::deliver::outbox::Outbox;
use crate::deliver::smtp::{Connector, Fatal, Refusal, Session, Stage, Verdict};
use crate::deliver::tap::Gate;
use crate::input::subscribers::Subscriber;
use crate::mail::message::Outgoing;
use crate::state::Change;
use crate::state::writer::{Durable, Recorder};

/// The longest pause when the relay asks to slow down.
const MAX_THROTTLE_PAUSE: Duration = Duration::from_mins(1);

/// Where messages go.
pub(crate) enum Via {
    Outbox(Outbox),
    Smtp(Box<Connector>),
}

/// Why a run stopped before its work was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// SIGINT or SIGTERM.
    Interrupted,
    /// Retrying cannot help: credentials or TLS refused.
    Fatal(String),
    /// Too many failures in a row.
    CircuitBreaker(usize),
    /// The daily quota is used up.
    Quota(u64),
    /// The relay refused the sender, not a recipient (authentication, policy, content,
    /// size): every recipient stays pending until the setup is fixed.
    SenderRefused(String),
    /// The relay kept asking to slow down; the recipients not yet sent stay pending.
    Throttled(usize, String),
    /// The journal could not be written: nothing may be sent without a record.
    Journal(String),
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Interrupted => f.write_str("interrupted by a signal"),
            StopReason::Fatal(e) => write!(f, "{e}"),
            StopReason::CircuitBreaker(n) => {
                write!(f, "{n} failures in a row; stopped to spare the relay")
            }
            StopReason::Quota(q) => write!(f, "the daily quota of {q} messages is used up"),
            StopReason::SenderRefused(reply) => write!(
                f,
                "the relay refused the sender, not the recipients ({reply}); this is a fault in \
                 the sender's setup (authentication, SPF/DKIM/DMARC, policy, content or size): \
                 no recipient was failed or suppressed, all stay pending; fix it and send again"
            ),
            StopReason::Throttled(n, reply) => write!(
                f,
                "the relay asked {n} times in a row to slow down ({reply}); the recipients not \
                 yet sent stay pending for the next run"
            ),
            StopReason::Journal(e) => {
                write!(f, "cannot write the journal, so nothing more is sent: {e}")
            }
        }
    }
}

/// Live counts, read by the progress display.
#[derive(Default)]
pub(crate) struct Counters {
    pub sent: AtomicUsize,
    pub deferred: AtomicUsize,
    pub failed: AtomicUsize,
    pub in_doubt: AtomicUsize,
    /// The most recent failure, for a one-message run to explain itself.
    pub last_problem: std::sync::Mutex<Option<String>>,
}

/// One recipient to attempt, with the attempts it has had in earlier runs.
pub(crate) struct Work {
    pub subscriber: Subscriber,
    pub attempts: u32,
}

/// The recipient a connection is sending to.
struct Job {
    email: String,
    attempts: u32,
    index: usize,
}

/// How a recipient's message is made. Its Message-ID comes alone and first: the journal
/// records it in the recipient's `attempting` step, which is made durable while the
/// message is composed (and signed) rather than before.
pub(crate) struct Build<'a> {
    pub message_id: &'a dyn Fn(&Subscriber) -> String,
    /// The recipient's message, carrying the Message-ID `message_id` gave it (made once
    /// per recipient: it is an HMAC).
    pub message: &'a dyn Fn(&Subscriber, String) -> Result<Outgoing>,
}

/// A recipient waiting in a pass's queue.
#[derive(Debug, Clone, Copy)]
struct Next {
    index: usize,
    attempts: u32,
    /// Put back after the relay asked to slow down: not counted as deferred again.
    requeued: bool,
}

/// The relay's requests to slow down: a pause that grows while they continue, and
/// fewer connections.
struct Throttle {
    /// No new message starts before this instant.
    until: Instant,
    pause: Duration,
    /// Requests in a row with no message accepted between.
    in_row: usize,
    /// Connections allowed to go on; the others close.
    connections: usize,
}

struct Shared {
    pacing: Pacing,
    stop_tx: watch::Sender<bool>,
    reason: std::sync::Mutex<Option<StopReason>>,
    failures_in_row: AtomicUsize,
    quota_left: Option<AtomicU64>,
    next_slot: Mutex<Instant>,
    counters: Arc<Counters>,
    /// Indexes (into the work list) of recipients deferred in this pass.
    retry: std::sync::Mutex<Vec<(usize, u32)>>,
    throttle: std::sync::Mutex<Throttle>,
    recorder: Recorder,
    clock: Clock,
}

impl Shared {
    fn stop(&self, reason: StopReason) {
        if let Ok(mut r) = self.reason.lock() {
            r.get_or_insert(reason);
        }
        self.stop_tx.send_replace(true);
    }

    /// The journal failed: nothing more may be sent, and the run stops saying why.
    fn journal_failed(&self, e: &anyhow::Error) {
        self.stop(StopReason::Journal(format!("{e:#}")));
    }

    fn stopped(&self) -> bool {
        *self.stop_tx.borrow()
    }

    /// Resolves when a stop is requested.
    async fn until_stopped(&self) {
        let mut rx = self.stop_tx.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    fn take_quota(&self) -> bool {
        match &self.quota_left {
            None => true,
            Some(left) => left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok(),
        }
    }

    /// Waits for this message's slot under the rate limit.
    async fn pace(&self) {
        let Some(rate) = self.pacing.rate_per_second else {
            return;
        };
        let slot = {
            let mut next = self.next_slot.lock().await;
            let now = crate::clock::instant();
            let slot = (*next).max(now);
            *next = slot + Duration::from_secs_f64(1.0 / rate);
            slot
        };
        tokio::select! {
            () = tokio::time::sleep_until(slot.into()) => {}
            () = self.until_stopped() => {}
        }
    }

    fn success(&self) {
        self.failures_in_row.store(0, Ordering::SeqCst);
        if let Ok(mut t) = self.throttle.lock() {
            t.in_row = 0;
        }
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// The relay asked to slow down while sending to `job`: the recipient goes back to
    /// pending, uncharged, and is put back in the queue; the run pauses (longer each time
    /// in a row) and halves its connections. Requests that arrive during a pause (other
    /// connections' messages in flight) do not lengthen it.
    fn throttled(&self, job: &Job, code: Option<u16>, reply: String, queue: &Queue) {
        self.release(job, code, &reply);
        self.put_back(job, queue);
        let Ok(mut t) = self.throttle.lock() else {
            return;
        };
        let now = crate::clock::instant();
        if now < t.until {
            return;
        }
        t.in_row += 1;
        if t.in_row > self.pacing.max_consecutive_failures {
            let n = t.in_row;
            drop(t);
            self.stop(StopReason::Throttled(n, reply));
            return;
        }
        t.pause = if t.in_row == 1 {
            self.pacing.retry_delay.min(MAX_THROTTLE_PAUSE)
        } else {
            (t.pause * 2).min(MAX_THROTTLE_PAUSE)
        };
        t.until = now + t.pause;
        t.connections = (t.connections / 2).max(1);
    }

    /// A job taken but not sent goes back to the front of `queue`, its share of the daily
    /// quota given back.
    fn put_back(&self, job: &Job, queue: &Queue) {
        if let Some(left) = &self.quota_left {
            left.fetch_add(1, Ordering::SeqCst);
        }
        if let Ok(mut q) = queue.lock() {
            q.push_front(Next {
                index: job.index,
                attempts: job.attempts,
                requeued: true,
            });
        }
    }

    /// A job whose `attempting` step was asked for ahead of the message before it on its
    /// connection, and whose content did not go (that message failed, or the run stops):
    /// back to pending, uncharged, and to the front of the queue.
    fn return_unsent(&self, job: &Job, queue: &Queue) {
        self.recorder.record(
            &job.email,
            Change::Released {
                code: None,
                reply: "returned to the queue before its content was sent".into(),
            },
        );
        self.put_back(job, queue);
    }

    /// The relay refused the sender: the recipient stays pending and the run stops.
    fn sender_refused(&self, job: &Job, code: Option<u16>, reply: String) {
        self.release(job, code, &reply);
        self.stop(StopReason::SenderRefused(reply));
    }

    /// Back to pending, not charged: the reply says nothing about this recipient.
    fn release(&self, job: &Job, code: Option<u16>, reply: &str) {
        self.note_problem(reply);
        self.recorder.record(
            &job.email,
            Change::Released {
                code,
                reply: reply.to_string(),
            },
        );
    }

    /// The most recent problem, for a one-message run to explain itself.
    fn note_problem(&self, problem: &str) {
        if let Ok(mut last) = self.counters.last_problem.lock() {
            *last = Some(problem.to_string());
        }
    }

    /// Waits out a pause the relay asked for; false when this connection is one too many
    /// now and should close.
    async fn wait_for_relay(&self, worker: usize) -> bool {
        let (until, allowed) = match self.throttle.lock() {
            Ok(t) => (t.until, t.connections),
            Err(_) => return true,
        };
        if worker >= allowed {
            return false;
        }
        if until > crate::clock::instant() {
            tokio::select! {
                () = tokio::time::sleep_until(until.into()) => {}
                () = self.until_stopped() => {}
            }
        }
        true
    }

    /// Whether connection `worker` may send now without waiting (no pause asked for, and
    /// not one too many).
    fn relay_ready(&self, worker: usize) -> bool {
        self.throttle
            .lock()
            .is_ok_and(|t| worker < t.connections && t.until <= crate::clock::instant())
    }

    /// Whether connection `worker` is not one too many.
    fn allows(&self, worker: usize) -> bool {
        self.throttle.lock().is_ok_and(|t| worker < t.connections)
    }

    fn failure(&self, problem: &str) {
        self.note_problem(problem);
        let n = self.failures_in_row.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.pacing.max_consecutive_failures {
            self.stop(StopReason::CircuitBreaker(n));
        }
    }

    /// A transient failure: deferred for a later pass or run, or given up on after
    /// `max_attempts`.
    fn defer(&self, job: &Job, code: Option<u16>, reply: String) {
        let attempts = job.attempts + 1;
        let now = self.clock.now();
        // Under a schedule the edition's age decides when to give up, and the wait spans
        // runs; otherwise the attempts do, and the wait is for a later pass of this run.
        let (give_up, wait) = match &self.pacing.backoff {
            Some(b) => {
                let age = now.duration_since(b.started).unwrap_or_default();
                let days = b.give_up_after.as_secs_f64() / 86_400.0;
                let why = format!("gave up after {days:.1} days of deferrals");
                ((age >= b.give_up_after).then_some(why), b.wait(attempts))
            }
            None => (
                (attempts >= self.pacing.max_attempts)
                    .then(|| format!("gave up after {attempts} attempts")),
                self.pacing.retry_delay * 2u32.saturating_pow(attempts.saturating_sub(1).min(16)),
            ),
        };
        if let Some(why) = give_up {
            self.fail(job, code, format!("{why}: {reply}"), false);
            return;
        }
        let reply_text = reply.clone();
        self.recorder.record(
            &job.email,
            Change::Deferred {
                code,
                reply,
                next_try: now + wait,
            },
        );
        self.counters.deferred.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut r) = self.retry.lock() {
            r.push((job.index, attempts));
        }
        self.failure(&reply_text);
    }

    fn fail(&self, job: &Job, code: Option<u16>, reply: String, suppress: bool) {
        self.fail_email(&job.email, code, reply, suppress);
    }

    fn fail_email(&self, email: &str, code: Option<u16>, reply: String, suppress: bool) {
        self.failure(&reply);
        self.recorder.record(
            email,
            Change::Failed {
                code,
                reply,
                suppress,
            },
        );
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a run did: its stop reason if it stopped early.
pub(crate) struct RunEnd {
    pub stop: Option<StopReason>,
}

/// How one run delivers.
pub(crate) struct Plan {
    pub via: Via,
    pub pacing: Pacing,
    pub connections: usize,
    /// Messages left in today's quota, when there is one.
    pub quota_left: Option<u64>,
    pub recorder: Recorder,
    pub counters: Arc<Counters>,
    pub clock: Clock,
}

/// Delivers `work` as `plan` says, building each message with `build` when a worker is
/// ready for it.
pub(crate) fn run(
    plan: Plan,
    work: &[Work],
    build: &Build<'_>,
    sign: Option<sign::Sign<'_>>,
) -> Result<RunEnd> {
    std::thread::scope(|scope| {
        let signer = sign.map(|f| sign::Pool::start(scope, f, sign::threads()));
        run_with(plan, work, build, signer.as_ref())
        // The signers stop when `signer` is dropped here, before the scope ends.
    })
}

fn run_with(
    plan: Plan,
    work: &[Work],
    build: &Build<'_>,
    signer: Option<&sign::Pool>,
) -> Result<RunEnd> {
    let Plan {
        via,
        pacing,
        connections,
        quota_left,
        recorder,
        counters,
        clock,
    } = plan;
    // One thread composes and drives every connection: on a small machine, handing each
    // message from thread to thread cost more in wake-ups than composing it. Over SMTP it
    // is the connector's runtime, where the session the send's check opened lives.
    let own;
    let runtime = match &via {
        Via::Smtp(connector) => connector.runtime(),
        Via::Outbox(_) => {
            own = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the network runtime")?;
            &own
        }
    };
    let (stop_tx, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        pacing: pacing.clone(),
        stop_tx,
        reason: std::sync::Mutex::new(None),
        failures_in_row: AtomicUsize::new(0),
        quota_left: quota_left.map(AtomicU64::new),
        next_slot: Mutex::new(crate::clock::instant()),
        counters,
        retry: std::sync::Mutex::new(Vec::new()),
        throttle: std::sync::Mutex::new(Throttle {
            until: crate::clock::instant(),
            pause: Duration::ZERO,
            in_row: 0,
            connections,
        }),
        recorder,
        clock,
    });
    runtime.block_on(async {
        tokio::spawn(watch_signals(Arc::clone(&shared)));
        let mut todo: Vec<(usize, u32)> = work
            .iter()
            .enumerate()
            .map(|(i, w)| (i, w.attempts))
            .collect();
        for pass in 0..=pacing.retries_per_run {
            if todo.is_empty() || shared.stopped() {
                break;
            }
            if pass > 0 {
                let wait = pacing.retry_delay * 2u32.saturating_pow((pass - 1).min(16));
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shared.until_stopped() => {}
                }
                if shared.stopped() {
                    break;
                }
            }
            let queue: Queue = std::sync::Mutex::new(
                todo.iter()
                    .map(|&(index, attempts)| Next {
                        index,
                        attempts,
                        requeued: false,
                    })
                    .collect(),
            );
            let context = Worker {
                signer,
                via: &via,
                shared: &shared,
                queue: &queue,
                work,
                build,
                retry: pass > 0,
            };
            // Connections that closed on a request to slow down may leave recipients put
            // back in the queue: start the allowed connections again until it is empty.
            loop {
                // Starts at `connections` and only ever halves.
                let allowed = shared.throttle.lock().map_or(1, |t| t.connections);
                let workers = allowed.clamp(1, todo.len().max(1));
                futures_util::future::join_all((0..workers).map(|i| context.run(i))).await;
                let empty = queue.lock().map_or(true, |q| q.is_empty());
                if empty || shared.stopped() {
                    break;
                }
            }
            todo = shared
                .retry
                .lock()
                .map(|mut r| std::mem::take(&mut *r))
                .unwrap_or_default();
            todo.sort_unstable();
        }
    });
    let stop = shared.reason.lock().ok().and_then(|r| r.clone());
    Ok(RunEnd { stop })
}

/// The recipients of one pass, in order; the relay's requests to slow down put some back.
type Queue = std::sync::Mutex<VecDeque<Next>>;

/// What every connection's loop shares within one pass.
struct Worker<'a> {
    /// Signs each message off this thread, when DKIM is on.
    signer: Option<&'a sign::Pool>,
    via: &'a Via,
    shared: &'a Shared,
    queue: &'a Queue,
    work: &'a [Work],
    build: &'a Build<'a>,
    /// A retry pass: its recipients are counted as deferred until taken.
    retry: bool,
}

impl Worker<'_> {
    /// Connection number `id`: takes the next recipient, composes the message, sends it;
    /// repeats until the queue is empty, the run stops, or the relay wants fewer
    /// connections.
    async fn run(&self, id: usize) {
        let shared = self.shared;
        // The journal's syncs wait for each live connection's step (a group commit).
        let _member = shared.recorder.member();
        let mut session: Option<Session> = None;
        let mut ahead: Option<(Ahead, Result<bool>)> = None;
        loop {
            if let Some((next, recorded)) = ahead.take() {
                // Its envelope is out: its content follows at once (a pause the relay asked
                // for meanwhile applies to the next envelope), unless the run stops or this
                // connection is one too many now.
                if shared.stopped() || !shared.allows(id) {
                    self.shared.return_unsent(&next.job, self.queue);
                    // The relay waits for content after its 354 (a QUIT would be taken as
                    // content): closing the connection makes it discard the transaction.
                    drop(session.take());
                    break;
                }
                if let Via::Smtp(connector) = self.via {
                    ahead = self
                        .over_smtp(connector, &mut session, Start::Ahead(next, recorded), id)
                        .await;
                }
                continue;
            }
            if shared.stopped() || !shared.wait_for_relay(id).await || shared.stopped() {
                break;
            }
            // A recipient not taken stays pending (or deferred) in the journal.
            let Some(next) = self.queue.lock().ok().and_then(|mut q| q.pop_front()) else {
                break;
            };
            let Some(job) = self.take(next) else {
                shared.stop(StopReason::Quota(shared.pacing.daily_quota.unwrap_or(0)));
                break;
            };
            shared.pace().await;
            if shared.stopped() {
                break;
            }
            match self.via {
                Via::Outbox(outbox) => self.to_outbox(outbox, &job).await,
                Via::Smtp(connector) => {
                    ahead = self
                        .over_smtp(connector, &mut session, Start::New(job), id)
                        .await;
                }
            }
        }
        if let Some(s) = session {
            s.quit().await;
        }
    }

    /// `next`, taken from the queue, as a job charged to the daily quota; `None` (and
    /// not counted) when the quota is spent.
    fn take(&self, next: Next) -> Option<Job> {
        let shared = self.shared;
        if self.retry && !next.requeued {
            shared.counters.deferred.fetch_sub(1, Ordering::Relaxed);
        }
        if !shared.take_quota() {
            return None;
        }
        Some(Job {
            email: self.work[next.index].subscriber.email.to_string(),
            attempts: next.attempts,
            index: next.index,
        })
    }

    /// The next recipient for connection `id` if it may go at once, composed, with its
    /// envelope ready to follow the current message's (`current`) content in the same
    /// write, and its `attempting` step asked for (made `after` the current one): no rate
    /// limit to wait for, no pause the relay asked for, room left in the session, and the
    /// current content sent as it is (`ascii`). A message that cannot be made or that the
    /// relay's stated limits refuse is recorded here, and none goes ahead.
    async fn ahead(
        &self,
        open: &Session,
        ascii: bool,
        id: usize,
        current: &Job,
    ) -> Option<(Ahead, String, Durable)> {
        let shared = self.shared;
        if !ascii
            || !open.pipelining()
            || open.sent + 1 >= shared.pacing.max_per_connection
            || shared.pacing.rate_per_second.is_some()
            || shared.stopped()
            || !shared.relay_ready(id)
        {
            return None;
        }
        let next = self.queue.lock().ok().and_then(|mut q| q.pop_front())?;
        let Some(job) = self.take(next) else {
            // The main loop finds the quota spent and stops.
            if let Ok(mut q) = self.queue.lock() {
                q.push_front(Next {
                    requeued: true,
                    ..next
                });
            }
            return None;
        };
        let message = match self.message(&job, self.message_id(&job)).await {
            Ok(m) => m,
            Err(e) => {
                self.unbuildable(&job, None, &e).await;
                return None;
            }
        };
        if !message.bytes.is_ascii() {
            self.shared.put_back(&job, self.queue);
            return None;
        }
        match open.group(&message.envelope, &message.bytes) {
            Ok((stages, group)) => {
                let attempting =
                    self.attempting(&job, message.message_id.clone(), Some(current))?;
                Some((
                    Ahead {
                        job,
                        message,
                        stages,
                    },
                    group,
                    attempting,
                ))
            }
            Err(r) => {
                let mut none = None;
                refused(&mut none, shared, &job, &r, self.queue).await;
                None
            }
        }
    }

    /// Asks the journal for `job`'s `attempting` step. It queues at once, so that another
    /// connection's sync may carry it, and is synced at the latest when the caller waits
    /// for it: the step must be on disk before any content leaves. For a message taken
    /// first, the wait comes once its envelope has gone out, and the sync runs while the
    /// relay answers it; for one whose envelope follows the current message's content
    /// (`after` that one), before the current message's final dot (`over_smtp`).
    fn attempting(&self, job: &Job, message_id: String, after: Option<&Job>) -> Option<Durable> {
        let attempting = Change::Attempting {
            message_id,
            after: after.map(|j| j.email.clone()),
        };
        match self.shared.recorder.begin(&job.email, attempting) {
            Ok(durable) => Some(durable),
            Err(e) => {
                self.shared.journal_failed(&e);
                None
            }
        }
    }

    /// Whether `job` goes on once its `attempting` step is on disk: not when it did not
    /// apply (unsubscribed meanwhile), nor when the journal failed (the run stops).
    fn goes_on(&self, recorded: Result<bool>) -> bool {
        recorded.unwrap_or_else(|e| {
            self.shared.journal_failed(&e);
            false
        })
    }

    /// `job`'s Message-ID.
    fn message_id(&self, job: &Job) -> String {
        (self.build.message_id)(&self.work[job.index].subscriber)
    }

    /// `job`'s message, composed with `message_id` and signed.
    async fn message(&self, job: &Job, message_id: String) -> Result<Outgoing> {
        let subscriber = &self.work[job.index].subscriber;
        let mut message = (self.build.message)(subscriber, message_id)?;
        if let Some(signer) = self.signer {
            message.bytes = signer.sign(std::mem::take(&mut message.bytes)).await?;
        }
        Ok(message)
    }

    /// `job`'s message cannot exist: recorded as failed (once its `attempting` step, if it
    /// was asked for, is known to have applied). The others still go out.
    async fn unbuildable(&self, job: &Job, attempting: Option<Durable>, e: &anyhow::Error) {
        if let Some(attempting) = attempting
            && !self.goes_on(attempting.wait().await)
        {
            return;
        }
        self.shared.fail_email(
            &job.email,
            None,
            format!("cannot build the message: {e:#}"),
            false,
        );
    }

    async fn to_outbox(&self, outbox: &Outbox, job: &Job) {
        let shared = self.shared;
        let message_id = self.message_id(job);
        let Some(attempting) = self.attempting(job, message_id.clone(), None) else {
            return;
        };
        let message = match self.message(job, message_id).await {
            Ok(m) => m,
            Err(e) => return self.unbuildable(job, Some(attempting), &e).await,
        };
        if !self.goes_on(attempting.wait().await) {
            return;
        }
        match outbox.deliver(&message.to, &message.bytes) {
            Ok(path) => {
                shared.recorder.record(
                    &job.email,
                    Change::Sent {
                        reply: path.display().to_string(),
                    },
                );
                shared.success();
            }
            Err(e) => shared.defer(job, None, format!("{e:#}")),
        }
    }

    /// Sends one message over SMTP; returns the next one when its envelope went out with
    /// this one's content (RFC 2920 lets a group start with a message's content: one round
    /// trip per message instead of two), with whether its `attempting` step applied.
    ///
    /// The next message's `attempting` step is asked for before this one's content goes,
    /// and this one's final dot waits until it is on disk: its sync runs while the content
    /// travels, not between this message's reply and the next content. The step is on disk
    /// before any of the next content, as always, and so is this message's predecessor's
    /// `Sent` (recorded before it): after a crash, that next row goes back to waiting
    /// unless this message was recorded sent (`Journal::recover_in_flight`), so at most
    /// one message per connection is in doubt.
    async fn over_smtp(
        &self,
        connector: &Connector,
        session: &mut Option<Session>,
        start: Start,
        id: usize,
    ) -> Option<(Ahead, Result<bool>)> {
        let (shared, queue) = (self.shared, self.queue);
        let (job, message, recorded, started, chained) = match start {
            Start::New(job) => {
                let (message, recorded, started) = self.begin(connector, session, &job).await?;
                (job, message, recorded, started, false)
            }
            Start::Ahead(
                Ahead {
                    job,
                    message,
                    stages,
                },
                recorded,
            ) => {
                let Some(open) = session.as_mut() else {
                    self.shared.return_unsent(&job, self.queue);
                    return None;
                };
                let started = open.replies(&stages, None).await;
                (job, message, recorded, started, true)
            }
        };
        if !self.goes_on(recorded) {
            // The server may be waiting for content: close the connection without a final
            // dot, so it discards the transaction.
            drop(session.take());
            return None;
        }
        if let Err(r) = started {
            refused(session, shared, &job, &r, queue).await;
            return None;
        }
        let open = session.as_mut()?;
        let (next, gate) = match self.ahead(open, message.bytes.is_ascii(), id, &job).await {
            Some((ahead, group, attempting)) => (Some((ahead, group)), Some(attempting)),
            // A message whose own step was made ahead of its predecessor's reply: its final
            // dot waits for that predecessor's `Sent` to be on disk.
            None if chained => match shared.recorder.barrier() {
                Ok(barrier) => (None, Some(barrier)),
                Err(e) => {
                    shared.journal_failed(&e);
                    drop(session.take());
                    return None;
                }
            },
            None => (None, None),
        };
        // Without a journal there is nothing to wait for: the dot goes with the content.
        let gate = gate
            .filter(Durable::is_recorded)
            .map(|d| -> Gate { Box::pin(d.wait()) });
        let (sent, answer) = open
            .content(
                &message.bytes,
                next.as_ref().map(|(_, group)| group.as_str()),
                gate,
            )
            .await;
        if let Some(Err(e)) = &answer {
            // The final dot never left: the journal is gone, and the run stops.
            shared.journal_failed(e);
            drop(session.take());
            return None;
        }
        match sent {
            Ok(reply) => {
                shared.recorder.record(&job.email, Change::Sent { reply });
                shared.success();
                // Sent with the envelope: its gate was passed, or there was none (no
                // journal, where every step applies).
                let applied = answer.unwrap_or(Ok(true));
                return next.map(|(ahead, _)| (ahead, applied));
            }
            Err(r) if r.outcome_unknown() => {
                if let Some(s) = session.take() {
                    if next.is_some() {
                        // Its QUIT could be taken as the next message's content.
                        drop(s);
                    } else {
                        s.abort().await;
                    }
                }
                shared.recorder.record(
                    &job.email,
                    Change::InDoubt {
                        reason: r.reply.clone(),
                    },
                );
                shared.counters.in_doubt.fetch_add(1, Ordering::Relaxed);
                shared.failure(&r.reply);
            }
            Err(r) => {
                if next.is_some() {
                    // The next envelope's replies are still on their way and the relay
                    // may wait for its content: only a new connection is in a known state
                    // (closed without QUIT, which would be taken as content).
                    drop(session.take());
                }
                refused(session, shared, &job, &r, queue).await;
            }
        }
        if let Some((ahead, _)) = next {
            self.shared.return_unsent(&ahead.job, self.queue);
        }
        None
    }

    /// Opens the session if needed and starts `job`'s transaction: its message, whether
    /// its `attempting` step applied, and the relay's answer up to DATA's 354. `None` when
    /// it ended there (recorded as it should be).
    async fn begin(
        &self,
        connector: &Connector,
        session: &mut Option<Session>,
        job: &Job,
    ) -> Option<(Outgoing, Result<bool>, Result<(), Refusal>)> {
        let (shared, queue) = (self.shared, self.queue);
        if session
            .as_ref()
            .is_some_and(|s| s.sent >= shared.pacing.max_per_connection)
            && let Some(s) = session.take()
        {
            s.quit().await;
        }
        if session.is_none() {
            match connector.connect().await {
                Ok(s) => *session = Some(s),
                Err(e) if e.downcast_ref::<Fatal>().is_some() => {
                    shared.stop(StopReason::Fatal(format!("{e:#}")));
                    return None;
                }
                Err(e) => {
                    // An unreachable or busy relay says nothing about the recipient.
                    shared.throttled(job, None, format!("{e:#}"), queue);
                    return None;
                }
            }
        }
        let open = session.as_mut()?;

        // The record that this message may be delivered must be on disk before its content
        // goes out. Its sync runs during the round trip that ends in the DATA command's 354:
        // with pipelining, MAIL, RCPT and DATA go together, and the step is asked for even
        // before the message is composed (another connection's sync may carry it); without,
        // the relay first accepts the envelope (until then a stop leaves the recipient
        // pending, not in doubt) and the sync runs during the DATA command alone.
        let message_id = self.message_id(job);
        let early = if open.pipelining() {
            Some(self.attempting(job, message_id.clone(), None)?)
        } else {
            None
        };
        let message = match self.message(job, message_id).await {
            Ok(m) => m,
            Err(e) => {
                self.unbuildable(job, early, &e).await;
                return None;
            }
        };
        let (recorded, started) = if let Some(attempting) = early {
            tokio::join!(
                attempting.wait(),
                open.begin_pipelined(&message.envelope, &message.bytes)
            )
        } else {
            if let Err(r) = open.envelope(&message.envelope, &message.bytes).await {
                refused(session, shared, job, &r, queue).await;
                return None;
            }
            let Some(attempting) = self.attempting(job, message.message_id.clone(), None) else {
                drop(session.take());
                return None;
            };
            let open = session.as_mut()?;
            tokio::join!(attempting.wait(), open.start_data())
        };
        Some((message, recorded, started))
    }
}

/// How a connection's next message starts.
enum Start {
    /// Taken from the queue: its envelope is still to be sent.
    New(Job),
    /// Its envelope went out with the message before it, and its `attempting` step is on
    /// disk (whether it applied).
    Ahead(Ahead, Result<bool>),
}

/// A message whose envelope (MAIL, RCPT, DATA) followed the previous message's content in
/// one write; its replies are still to be read.
struct Ahead {
    job: Job,
    message: Outgoing,
    stages: Vec<Stage>,
}

async fn watch_signals(shared: Arc<Shared>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    shared.stop(StopReason::Interrupted);
}

/// The server refused the message with a reply, or the connection was lost before any
/// content left: either way the outcome is known, and nothing was delivered. What happens
/// to the recipient depends on whom the refusal is about (see `transport::reply`).
async fn refused(
    session: &mut Option<Session>,
    shared: &Shared,
    job: &Job,
    r: &Refusal,
    queue: &Queue,
) {
    let verdict = r.verdict();
    if (r.connection_lost || verdict == Verdict::Throttled)
        && let Some(s) = session.take()
    {
        // A relay that asks to slow down gets this connection back.
        if r.connection_lost {
            s.abort().await;
        } else {
            s.quit().await;
        }
    }
    let (code, reply) = (r.code, r.reply.clone());
    match verdict {
        Verdict::BadMailbox => shared.fail(job, code, reply, true),
        Verdict::RecipientRefused => shared.fail(job, code, reply, false),
        Verdict::RecipientLater => shared.defer(job, code, reply),
        Verdict::Throttled => shared.throttled(job, code, reply, queue),
        Verdict::SenderRefused => shared.sender_refused(job, code, reply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::address::EmailAddress;
    use crate::input::subscribers::Status;

    fn work(email: &str) -> Work {
        Work {
            subscriber: Subscriber {
                email: EmailAddress::parse(email).expect("address"),
                name: None,
                status: Status::Subscribed,
                since: None,
                tags: Vec::new(),
            },
            attempts: 0,
        }
    }

    /// A one-connection run through an outbox in `dir`.
    fn plan(dir: &std::path::Path, recorder: Recorder, counters: &Arc<Counters>) -> Plan {
        Plan {
            via: Via::Outbox(Outbox::new(dir, "e1").expect("outbox")),
            pacing: Pacing::default(),
            connections: 1,
            quota_left: None,
            recorder,
            counters: Arc::clone(counters),
            clock: Clock::at(std::time::UNIX_EPOCH),
        }
    }

    fn message_id(s: &Subscriber) -> String {
        format!("<{}>", s.email)
    }

    fn message(s: &Subscriber) -> Outgoing {
        let to = s.email.to_lettre();
        Outgoing {
            to: s.email.clone(),
            envelope: lettre::address::Envelope::new(None, vec![to]).expect("envelope"),
            message_id: message_id(s),
            bytes: b"Subject: x\r\n\r\nbody\r\n".to_vec(),
        }
    }

    #[test]
    fn a_message_that_cannot_be_built_fails_its_recipient_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let list = [
            work("a@example.org"),
            work("b@example.org"),
            work("c@example.org"),
        ];
        let counters = Arc::new(Counters::default());
        let plan = plan(dir.path(), Recorder::disabled(), &counters);
        let build = Build {
            message_id: &message_id,
            message: &|s, _| {
                if s.email.as_str().starts_with('b') {
                    anyhow::bail!("invalid envelope");
                }
                Ok(message(s))
            },
        };
        let end = run(plan, &list, &build, None).expect("the run goes on");
        assert_eq!(end.stop, None);
        assert_eq!(counters.sent.load(Ordering::Relaxed), 2);
        assert_eq!(counters.failed.load(Ordering::Relaxed), 1);
        let problem = counters
            .last_problem
            .lock()
            .expect("lock")
            .clone()
            .unwrap_or_default();
        assert!(
            problem.contains("cannot build the message: invalid envelope"),
            "{problem}"
        );
        let mut files: Vec<String> = std::fs::read_dir(dir.path().join("e1"))
            .expect("outbox dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, ["a@example.org.eml", "c@example.org.eml"]);
    }

    #[test]
    fn a_message_is_composed_while_its_attempting_step_goes_to_disk() {
        // Composing waits until the send log holds the recipient's attempting step: it
        // gets there only if the step was asked for before the message was made.
        let (state_dir, writer) = crate::state::writer::tests::writer(1);
        let log = crate::state::sendlog::path_for(&state_dir.path().join("state.db"));
        let email = "r0@harbour.example";
        let in_log = || {
            crate::state::sendlog::read(&log).is_ok_and(|(entries, _)| {
                entries
                    .iter()
                    .any(|e| e.email == email && matches!(e.change, Change::Attempting { .. }))
            })
        };
        let build = Build {
            message_id: &message_id,
            message: &|s, _| {
                let started = crate::clock::instant();
                // Generous: a loaded machine syncs slowly, but never takes this long.
                while !in_log() {
                    if started.elapsed() > Duration::from_secs(20) {
                        anyhow::bail!("the attempting step was not asked for first");
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(message(s))
            },
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let counters = Arc::new(Counters::default());
        let plan = plan(dir.path(), writer.recorder(), &counters);
        let end = run(plan, &[work(email)], &build, None).expect("the run goes on");
        assert_eq!(end.stop, None);
        let problem = counters.last_problem.lock().expect("lock").clone();
        assert_eq!(problem, None);
        assert_eq!(counters.sent.load(Ordering::Relaxed), 1);
        assert_eq!(crate::state::writer::tests::finish_one(writer), "sent");
    }
}
