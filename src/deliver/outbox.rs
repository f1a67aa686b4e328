//! The outbox transport: each message becomes `OUTBOX/EDITION/ADDRESS.eml`, the very bytes
//! an SMTP relay would receive. Lets a project run `send` with no server at all.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::input::address::EmailAddress;

pub(crate) struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    pub(crate) fn new(root: &Path, edition_id: &str) -> Result<Outbox> {
        let dir = root.join(edition_id);
        fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the outbox folder {}", dir.display()))?;
        Ok(Outbox { dir })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the message whole or not at all.
    pub(crate) fn deliver(&self, to: &EmailAddress, bytes: &[u8]) -> Result<PathBuf> {
        crate::atomic_file::write(&self.dir.join(format!("{}.eml", file_name_for(to))), bytes)
    }
}

/// An address as a file name: anything but letters, digits and `@._+-` becomes `_`.
pub(crate) fn file_name_for(to: &EmailAddress) -> String {
    to.as_str()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "@._+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
