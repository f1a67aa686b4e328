//! Hand edits of `subscribers.toml` during a long send: every `LIST_RECHECK` the file's
//! modification time is compared; when it changed, the list is read again and every
//! address now marked unsubscribed that this edition has not mailed yet is skipped, through
//! the send's journal writer, before its message can start (the attempting step only takes
//! waiting rows).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::Result;

use super::Change;
use super::writer::Recorder;
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
    pub(crate) fn start(list: &Path, recorder: Recorder, interval: Duration) -> ListWatch {
        let (stop, stopped) = mpsc::channel::<()>();
        let list: PathBuf = list.to_path_buf();
        let handle = std::thread::spawn(move || {
            watch(&stopped, &list, &recorder, interval);
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

fn watch(stopped: &mpsc::Receiver<()>, list: &Path, recorder: &Recorder, interval: Duration) {
    let mut seen = modified(list);
    // Waiting on the channel rather than sleeping: the end of the send is not held up.
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
        let now = modified(list);
        if now == seen {
            continue;
        }
        // A file caught half-written does not parse: the next look reads it whole.
        match skip_unsubscribed(list, recorder) {
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

/// Skips the waiting rows of addresses the file now marks unsubscribed; returns how many.
fn skip_unsubscribed(list: &Path, recorder: &Recorder) -> Result<usize> {
    let parsed = subscribers::load(list).map_err(|p| anyhow::anyhow!("{p}"))?;
    let changes = parsed
        .entries
        .iter()
        .filter(|s| s.status == Status::Unsubscribed)
        .map(|s| {
            (
                s.email.to_string(),
                Change::Skipped {
                    reason: "unsubscribed in the list during the send".into(),
                },
            )
        })
        .collect();
    let applied = recorder.commit_blocking(changes)?;
    Ok(applied.into_iter().filter(|a| *a).count())
}
