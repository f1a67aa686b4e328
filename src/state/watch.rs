//! Hand edits of `subscribers.toml` during a long send: every `LIST_RECHECK` the file's
//! modification time is compared; when it changed, the list is read again and every
//! address now marked unsubscribed that this edition has not mailed yet is skipped, in the
//! journal, before its message can start (the attempting step only takes waiting rows).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use rusqlite::params;

use super::{Journal, unix};
use crate::clock::Clock;
use crate::input::subscribers::{self, Status};

/// How often a running send looks at the subscriber file, unless
/// `NEWSLETTER_LIST_RECHECK` (seconds) says otherwise; both documented in the README.
const LIST_RECHECK: Duration = Duration::from_secs(10);

/// The interval between looks at the list.
pub(crate) fn interval() -> Duration {
    std::env::var("NEWSLETTER_LIST_RECHECK")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && (0.05..=3600.0).contains(s))
        .map_or(LIST_RECHECK, Duration::from_secs_f64)
}

/// A thread that watches the list while a send runs; `stop` ends it.
pub(crate) struct ListWatch {
    /// Dropped to stop the watch: the thread wakes at once, not at its next look.
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl ListWatch {
    pub(crate) fn start(
        list: &Path,
        state: &Path,
        edition_id: &str,
        interval: Duration,
        clock: Clock,
    ) -> ListWatch {
        let (stop, stopped) = mpsc::channel::<()>();
        let (list, state, edition): (PathBuf, PathBuf, String) = (
            list.to_path_buf(),
            state.to_path_buf(),
            edition_id.to_string(),
        );
        let handle = std::thread::spawn(move || {
            watch(&stopped, &list, &state, &edition, interval, clock);
        });
        ListWatch {
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    pub(crate) fn stop(mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn watch(
    stopped: &mpsc::Receiver<()>,
    list: &Path,
    state: &Path,
    edition: &str,
    interval: Duration,
    clock: Clock,
) {
    let mut seen = modified(list);
    // Waiting on the channel rather than sleeping: the end of the send is not held up.
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
        let now = modified(list);
        if now == seen {
            continue;
        }
        // A file caught half-written does not parse: the next look reads it whole.
        match skip_unsubscribed(list, state, edition, clock) {
            Ok(n) => {
                seen = now;
                if n > 0 {
                    eprintln!(
                        "{n} address{} marked unsubscribed in {} during the send: skipped",
                        if n == 1 { "" } else { "es" },
                        list.display()
                    );
                }
            }
            Err(e) => eprintln!("warning: cannot read {} again: {e:#}", list.display()),
        }
    }
}

/// Skips, in the journal, the waiting rows of addresses the file now marks unsubscribed.
fn skip_unsubscribed(list: &Path, state: &Path, edition: &str, clock: Clock) -> Result<usize> {
    let parsed = subscribers::load(list).map_err(|p| anyhow::anyhow!("{p}"))?;
    let mut journal = Journal::open(state)?;
    let tx = journal.connection().transaction()?;
    let mut skipped = 0;
    {
        let mut stmt = tx.prepare(
            "UPDATE delivery SET state = 'skipped', reply = 'unsubscribed in the list during the send', updated_at = ?3
             WHERE edition_id = ?1 AND email = ?2 AND state IN ('pending', 'deferred', 'in_doubt')",
        )?;
        for s in parsed
            .entries
            .iter()
            .filter(|s| s.status == Status::Unsubscribed)
        {
            skipped += stmt.execute(params![edition, s.email.as_str(), unix(clock.now())])?;
        }
    }
    tx.commit()?;
    Ok(skipped)
}
