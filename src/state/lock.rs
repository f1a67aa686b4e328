//! One run at a time: an exclusive advisory lock (flock) on a file beside the state
//! database. The kernel releases it when the holder exits, however it exits, so a lock
//! left by a dead process never blocks the next run.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub(crate) struct RunLock {
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
    let mut name = state
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(".lock");
    state.with_file_name(name)
}

impl RunLock {
    /// Takes the lock or fails at once with `Locked`, naming the holder.
    pub(crate) fn acquire(state: &Path, what: &str) -> Result<RunLock> {
        let path = lock_path(state);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                if holder.trim().is_empty() {
                    holder = "holder unknown".into();
                }
                return Err(Locked { path, holder }.into());
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
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
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(RunLock { _file: file })
    }
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
}
