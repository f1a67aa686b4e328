//! DKIM signatures computed on threads of their own, so that signing (about a millisecond
//! a message for RSA-2048 and Ed25519) runs on the cores the connections' thread does not
//! use, while that thread composes the next message and drives the others.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use anyhow::{Result, anyhow};
use tokio::sync::oneshot;

/// What signs a message's bytes (the same function `preview` uses, so the bytes are the
/// same).
pub(crate) type Sign<'a> = &'a (dyn Fn(&[u8]) -> Result<Vec<u8>> + Sync);

struct Job {
    bytes: Vec<u8>,
    done: oneshot::Sender<Result<Vec<u8>>>,
}

/// The handle the connections send messages to be signed through.
pub(crate) struct Pool {
    tx: mpsc::Sender<Job>,
}

impl Pool {
    /// Starts `threads` signers inside `scope`; they stop when the pool is dropped.
    pub(crate) fn start<'scope, 'env: 'scope>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        sign: Sign<'env>,
        threads: usize,
    ) -> Pool {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            scope.spawn(move || {
                loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let _ = job.done.send(sign(&job.bytes));
                }
            });
        }
        Pool { tx }
    }

    /// The signed message.
    pub(crate) async fn sign(&self, bytes: Vec<u8>) -> Result<Vec<u8>> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job { bytes, done })
            .map_err(|_| anyhow!("the signing threads have stopped"))?;
        wait.await
            .map_err(|_| anyhow!("the signing threads have stopped"))?
    }
}

/// Signers to start on this machine: one per core, since the connections' thread waits on
/// the network most of the time.
pub(crate) fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 8))
}
