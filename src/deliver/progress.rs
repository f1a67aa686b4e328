//! Progress while sending: a live line with rate and ETA when stderr is a terminal; under
//! cron (no terminal) a plain log line every 30 seconds, and none with `--quiet`.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::deliver::Counters;

pub(crate) struct Progress {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Progress {
    pub(crate) fn start(total: usize, counters: Arc<Counters>, quiet: bool) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        if quiet || total == 0 {
            return Progress {
                stop: None,
                handle: None,
            };
        }
        let every = if terminal {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(30)
        };
        let (stop, wait) = mpsc::channel::<()>();
        let started = crate::clock::instant();
        let handle = std::thread::spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(every) {
                let line = describe(total, &counters, started.elapsed());
                let mut err = std::io::stderr().lock();
                let _ = if terminal {
                    write!(err, "\r\x1b[K{line}")
                } else {
                    writeln!(err, "progress: {line}")
                };
                let _ = err.flush();
            }
            if terminal {
                let _ = write!(std::io::stderr(), "\r\x1b[K");
            }
        });
        Progress {
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    pub(crate) fn finish(mut self) {
        self.stop.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

// A rate for people to read: precision past 2^52 messages does not matter.
#[allow(clippy::cast_precision_loss)]
fn describe(total: usize, c: &Counters, elapsed: Duration) -> String {
    let sent = c.sent.load(Ordering::Relaxed);
    let done = sent + c.failed.load(Ordering::Relaxed) + c.in_doubt.load(Ordering::Relaxed);
    let rate = sent as f64 / elapsed.as_secs_f64().max(0.001);
    let width = 24;
    let filled = (done * width / total.max(1)).min(width);
    let eta = if rate > 0.0 && done < total {
        format!(" ETA {}s", ((total - done) as f64 / rate).ceil())
    } else {
        String::new()
    };
    format!(
        "[{}{}] {sent}/{total} sent, {} deferred, {} failed, {} in doubt, {rate:.0}/s{eta}",
        "=".repeat(filled),
        " ".repeat(width - filled),
        c.deferred.load(Ordering::Relaxed),
        c.failed.load(Ordering::Relaxed),
        c.in_doubt.load(Ordering::Relaxed),
    )
}
