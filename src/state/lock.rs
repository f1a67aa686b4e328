//! Two advisory locks (flock) on files beside the state database; the kernel releases
//! them when the holder exits, however it exits, so a lock left by a dead process never
//! blocks anyone.
//!
//! - The run lock: one send at a time (and a suppression lift, which must not race one).
//!   Taken at once or refused, naming its holder.
//! - The list lock: one rewrite of `subscribers.toml` at a time. Held only for the rewrite
//!   itself, by whoever has list changes to write (a send, `serve`, the list commands), and
//!   waited for at most `LIST_LOCK_WAIT`: a writer that does not get it in that time leaves
//!   its changes recorded in the database, where every send already honours them, and the
//!   next writer puts them into the file. So neither a send nor an unsubscribe ever waits
//!   long for the other, and neither fails because of it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

/// The longest a writer of `subscribers.toml` waits for another one (documented in the
/// README). A rewrite of a 2,000,000-entry list takes a few seconds.
pub(crate) const LIST_LOCK_WAIT: Duration = Duration::from_secs(10);

pub(crate) struct RunLock {
    _file: File,
}

/// Held while `subscribers.toml` is rewritten.
pub(crate) struct ListLock {
    _file: File,
}

/// Another live process holds the lock.
#[derive(Debug)]
pub(crate) struct Locked {
    pub path: PathBuf,
    pub holder: String,
}

impl std::fmt::Display for Locked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "another run holds the lock {} ({})",
            self.path.display(),
            self.holder.trim()
        )
    }
}

impl std::error::Error for Locked {}

pub(crate) fn lock_path(state: &Path) -> PathBuf {
    beside(state, ".lock")
}

fn list_lock_path(state: &Path) -> PathBuf {
    beside(state, ".list-lock")
}

fn beside(state: &Path, suffix: &str) -> PathBuf {
    let mut name = state
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(suffix);
    state.with_file_name(name)
}

impl RunLock {
    /// Takes the lock or fails at once with `Locked`, naming the holder.
    pub(crate) fn acquire(state: &Path, what: &str) -> Result<RunLock> {
        let path = lock_path(state);
        let mut file = open(&path)?;
        if !try_take(&file, &path)? {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            if holder.trim().is_empty() {
                holder = "holder unknown".into();
            }
            return Err(Locked { path, holder }.into());
        }
        write_note(&mut file, &path, what)?;
        Ok(RunLock { _file: file })
    }
}

impl ListLock {
    /// Takes the lock, waiting at most `wait` for its holder; `None` when it stayed busy.
    pub(crate) fn acquire_within(
        state: &Path,
        what: &str,
        wait: Duration,
    ) -> Result<Option<ListLock>> {
        let path = list_lock_path(state);
        let mut file = open(&path)?;
        let start = crate::clock::instant();
        let mut pause = Duration::from_millis(2);
        while !try_take(&file, &path)? {
            if crate::clock::instant().duration_since(start) >= wait {
                return Ok(None);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        write_note(&mut file, &path, what)?;
        Ok(Some(ListLock { _file: file }))
    }
}

fn open(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))
}

/// True when the lock is now ours, false when another process holds it.
fn try_take(file: &File, path: &Path) -> Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Who holds the lock, for the message of whoever finds it taken.
fn write_note(file: &mut File, path: &Path, what: &str) -> Result<()> {
    let note = format!(
        "pid {}, {what}, since {}",
        std::process::id(),
        crate::clock::Clock::from_env()
            .map(|c| c.stamp())
            .unwrap_or_default()
    );
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(note.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_names_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("newsletter.db");
        let first = RunLock::acquire(&state, "send").unwrap();
        let err = RunLock::acquire(&state, "send").err().unwrap();
        let locked = err.downcast_ref::<Locked>().unwrap();
        assert!(
            locked
                .holder
                .contains(&format!("pid {}", std::process::id())),
            "{locked}"
        );
        drop(first);
        assert!(RunLock::acquire(&state, "send").is_ok());
    }

    #[test]
    fn the_list_lock_is_waited_for_within_its_bound_and_apart_from_the_run_lock() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("newsletter.db");
        let _run = RunLock::acquire(&state, "send").unwrap();
        let first = ListLock::acquire_within(&state, "serve", Duration::ZERO)
            .unwrap()
            .expect("free: the run lock is another lock");
        let busy = ListLock::acquire_within(&state, "send", Duration::from_millis(50)).unwrap();
        assert!(busy.is_none(), "held: the wait ends empty-handed");
        let waiter = std::thread::spawn(move || {
            ListLock::acquire_within(&state, "send", Duration::from_secs(30))
                .unwrap()
                .is_some()
        });
        std::thread::sleep(Duration::from_millis(100));
        drop(first);
        assert!(waiter.join().unwrap(), "taken once the holder let go");
    }
}
