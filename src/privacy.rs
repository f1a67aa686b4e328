//! The reader's data rights: an address forgotten on request is kept only as a keyed hash
//! (HMAC-SHA256 under a key of its own, beside the state database, so that rotating the
//! unsubscribe key does not undo a forgetting), against which every send, subscribe and
//! import checks an address.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use hmac::{Hmac, Mac};

use crate::input::address::EmailAddress;
use crate::state::Journal;
use crate::state::forget::Spellings;

/// The key's file: beside the state database, created on the first `forget`.
pub(crate) fn key_path(state: &Path) -> PathBuf {
    crate::state::beside(state, ".forget-key")
}

/// The key that hashes forgotten addresses.
pub(crate) struct ForgetKey(Vec<u8>);

impl ForgetKey {
    /// The key, if one was ever made (no address was forgotten otherwise).
    pub(crate) fn load(state: &Path) -> Result<Option<ForgetKey>> {
        let path = key_path(state);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let key = text.trim();
                if key.len() < 32 {
                    bail!(
                        "{} is damaged (too short): without it, forgotten addresses cannot be recognised; restore it from a backup",
                        path.display()
                    );
                }
                Ok(Some(ForgetKey(key.as_bytes().to_vec())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// The key, made now (256 random bits, readable by the owner alone) if there is none.
    pub(crate) fn load_or_create(state: &Path) -> Result<ForgetKey> {
        if let Some(key) = ForgetKey::load(state)? {
            return Ok(key);
        }
        let path = key_path(state);
        let mut random = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut random))
            .context("cannot read random bytes for the forget key")?;
        let hex = crate::token::hex(&random);
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("cannot create {}", path.display()))?
        };
        file.write_all(format!("{hex}\n").as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", path.display()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("cannot sync {}", dir.display()))?;
        }
        Ok(ForgetKey(hex.into_bytes()))
    }

    /// The hash kept for `email`: the same for every spelling of the address.
    pub(crate) fn hash(&self, email: &EmailAddress) -> String {
        let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(&self.0) else {
            unreachable!("HMAC takes keys of any length")
        };
        mac.update(b"forgotten\0");
        mac.update(email.as_str().to_lowercase().as_bytes());
        crate::token::hex(&mac.finalize().into_bytes())
    }
}

/// The addresses forgotten on request, to check others against.
#[derive(Default)]
pub(crate) struct Forgotten {
    key: Option<ForgetKey>,
    hashes: HashSet<String>,
}

impl Forgotten {
    pub(crate) fn load(journal: &Journal, state: &Path) -> Result<Forgotten> {
        let hashes = journal.forgotten()?;
        if hashes.is_empty() {
            return Ok(Forgotten::default());
        }
        let Some(key) = ForgetKey::load(state)? else {
            bail!(
                "{} is missing, but {} addresses were forgotten with it: restore it from a backup (without it they could be mailed again)",
                key_path(state).display(),
                hashes.len()
            );
        };
        Ok(Forgotten {
            key: Some(key),
            hashes,
        })
    }

    pub(crate) fn contains(&self, email: &EmailAddress) -> bool {
        self.key
            .as_ref()
            .is_some_and(|k| self.hashes.contains(&k.hash(email)))
    }
}

/// The spellings of an address that state rows and reports may hold.
pub(crate) fn spellings(email: &EmailAddress) -> Spellings {
    let normal = email.as_str().to_string();
    let mut forms = vec![normal.clone()];
    if let Some((local, domain)) = normal.rsplit_once('@') {
        let (unicode, result) = idna::domain_to_unicode(domain);
        if result.is_ok() && unicode != domain {
            forms.push(format!("{local}@{unicode}"));
        }
    }
    Spellings(forms)
}

/// The files named after the address: its message in each edition's outbox folder, its
/// sign-up messages, and its previews in the default preview folder. Returns those that
/// exist.
pub(crate) fn files_about(
    email: &EmailAddress,
    outbox: Option<&Path>,
    preview: &Path,
    editions: &[String],
) -> Vec<PathBuf> {
    let name = crate::deliver::outbox::file_name_for(email);
    let mut found = Vec::new();
    if let Some(outbox) = outbox {
        // The sign-up's confirmation and welcome messages (see `signup::sender`).
        found.push(outbox.join("signup").join(format!("{name}.eml")));
    }
    for edition in editions {
        if let Some(outbox) = outbox {
            found.push(outbox.join(edition).join(format!("{name}.eml")));
        }
        for ext in ["eml", "html", "txt"] {
            found.push(preview.join(format!("{edition}-{name}.{ext}")));
        }
    }
    found.retain(|p| p.is_file());
    found
}
