//! One thread owns the journal's write connection. Workers send it changes; it applies
//! whatever has queued up in one transaction (a group commit: one fsync for many changes)
//! and then answers those that wait for durability.

use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{Result, anyhow};
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::state::{Change, Journal, deliveries};

/// Changes applied per transaction at most, so one commit never grows without bound.
const MAX_BATCH: usize = 1024;

/// How long changes that no one waits for (a `Sent`) may wait for one that someone does
/// (the next message's `Attempting`) to share its commit: one fsync per message instead of
/// two. A stalled connection delays them by this much at most.
const LINGER: std::time::Duration = std::time::Duration::from_millis(5);

struct Request {
    email: String,
    change: Change,
    done: Option<oneshot::Sender<Result<bool, String>>>,
}

pub(crate) struct Writer {
    tx: mpsc::Sender<Request>,
    handle: JoinHandle<(Journal, Option<String>)>,
}

/// A cheap handle for workers. A disabled recorder (for test copies) records nothing.
#[derive(Clone)]
pub(crate) struct Recorder {
    tx: Option<mpsc::Sender<Request>>,
}

impl Writer {
    pub(crate) fn start(journal: Journal, edition_id: String, clock: Clock) -> Writer {
        let (tx, rx) = mpsc::channel::<Request>();
        let handle = std::thread::spawn(move || run(journal, &edition_id, &rx, clock));
        Writer { tx, handle }
    }

    pub(crate) fn recorder(&self) -> Recorder {
        Recorder {
            tx: Some(self.tx.clone()),
        }
    }

    /// Waits until every change sent so far is committed; returns the journal and the first
    /// write error, if any.
    pub(crate) fn finish(self) -> (Option<Journal>, Option<String>) {
        drop(self.tx);
        match self.handle.join() {
            Ok((journal, error)) => (Some(journal), error),
            Err(_) => (None, Some("the journal writer stopped unexpectedly".into())),
        }
    }
}

impl Recorder {
    pub(crate) fn disabled() -> Recorder {
        Recorder { tx: None }
    }

    /// Records a change and returns once it is on disk; `false` when an `Attempting` was
    /// refused because the address unsubscribed meanwhile.
    pub(crate) async fn commit(&self, email: &str, change: Change) -> Result<bool> {
        let Some(tx) = &self.tx else {
            return Ok(true);
        };
        let (done, wait) = oneshot::channel();
        tx.send(Request {
            email: email.to_string(),
            change,
            done: Some(done),
        })
        .map_err(|_| anyhow!("the journal writer has stopped"))?;
        match wait.await {
            Ok(Ok(applied)) => Ok(applied),
            Ok(Err(e)) => Err(anyhow!(e)),
            Err(_) => Err(anyhow!("the journal writer has stopped")),
        }
    }

    /// Records a change without waiting. Changes are applied in the order they are sent,
    /// so a later `commit` from the same worker also makes this one durable.
    pub(crate) fn record(&self, email: &str, change: Change) {
        let Some(tx) = &self.tx else {
            return;
        };
        let _ = tx.send(Request {
            email: email.to_string(),
            change,
            done: None,
        });
    }
}

fn run(
    mut journal: Journal,
    edition_id: &str,
    rx: &mpsc::Receiver<Request>,
    clock: Clock,
) -> (Journal, Option<String>) {
    let mut failed: Option<String> = None;
    while let Ok(first) = rx.recv() {
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
        // After a failed commit nothing more is written: the caller stops the run, and the
        // rows keep the last state that reached the disk.
        let result = match &failed {
            Some(e) => Err(e.clone()),
            None => {
                commit_batch(&mut journal, edition_id, &batch, &clock).map_err(|e| format!("{e:#}"))
            }
        };
        if let Err(e) = &result {
            failed.get_or_insert_with(|| e.clone());
        }
        for (i, r) in batch.into_iter().enumerate() {
            if let Some(done) = r.done {
                let answer = match &result {
                    Ok(applied) => Ok(applied.get(i).copied().unwrap_or(true)),
                    Err(e) => Err(e.clone()),
                };
                let _ = done.send(answer);
            }
        }
    }
    (journal, failed)
}

/// Applies a batch in one transaction; returns, per request, whether its change applied.
fn commit_batch(
    journal: &mut Journal,
    edition_id: &str,
    batch: &[Request],
    clock: &Clock,
) -> Result<Vec<bool>> {
    let now = clock.now();
    let tx = journal.connection().transaction()?;
    let mut applied = Vec::with_capacity(batch.len());
    for r in batch {
        applied.push(deliveries::apply(
            &tx, edition_id, &r.email, &r.change, now,
        )?);
    }
    let sent = batch
        .iter()
        .filter(|r| matches!(r.change, Change::Sent { .. }))
        .count();
    deliveries::count_sent(&tx, sent, now)?;
    tx.commit()?;
    Ok(applied)
}
