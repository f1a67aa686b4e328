//! Writes a file whole or not at all: a temporary file beside the target, fsync, rename,
//! fsync of the folder, so a crash leaves the old file or the new one, never half. An
//! existing file keeps its mode and owner, and a symlink stays a symlink (its target is
//! what gets replaced); a new file is readable by its owner alone (messages and lists hold
//! live unsubscribe tokens and addresses). Temporary files that a killed run left behind
//! are removed by the next write beside them.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    write_with(path, |out| out.write_all(bytes))
}

/// As `write`, with the content streamed by `fill` (a large file need not be built in
/// memory first).
pub(crate) fn write_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<PathBuf> {
    // Replacing a symlink's target keeps the link, and everyone who shares it sees the change.
    let target = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(path)
            .with_context(|| format!("cannot follow the link {}", path.display()))?,
        _ => path.to_path_buf(),
    };
    let dir = folder_of(&target).to_path_buf();
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    remove_stale(&dir, &name);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let existing = fs::metadata(&target).ok();
    let result = (|| -> std::io::Result<()> {
        let f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut buffered = std::io::BufWriter::with_capacity(1 << 16, f);
        fill(&mut buffered)?;
        let f = buffered
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        if let Some(m) = &existing {
            f.set_permissions(fs::Permissions::from_mode(m.mode() & 0o7777))?;
            // Only root may give a file away; anyone else already owns what they write.
            if m.uid() != fs::metadata(&tmp)?.uid() || m.gid() != fs::metadata(&tmp)?.gid() {
                std::os::unix::fs::chown(&tmp, Some(m.uid()), Some(m.gid()))?;
            }
        }
        f.sync_all()?;
        fs::rename(&tmp, &target)?;
        sync_folder_of(&target)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", target.display()))?;
    Ok(target)
}

/// The folder `path` is in (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Makes the folder's entry for `path` durable: after a new name (a file made or renamed
/// into place), a power cut may otherwise leave the file without it.
pub(crate) fn sync_folder_of(path: &Path) -> std::io::Result<()> {
    File::open(folder_of(path))?.sync_all()
}

/// Removes `.NAME.PID.tmp` files beside `name` whose process is gone: what a run killed
/// mid-write left (each a full copy of the file).
fn remove_stale(dir: &Path, name: &str) {
    let prefix = format!(".{name}.");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_keeps_the_mode_and_the_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.toml");
        let link = dir.path().join("link.toml");
        fs::write(&real, "old").unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write(&link, b"new").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(&real).unwrap(), "new");
        assert_eq!(fs::metadata(&real).unwrap().mode() & 0o777, 0o640);
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 2, "no temporary file is left behind");
    }

    #[test]
    fn a_new_file_is_private_and_a_dead_runs_temporary_file_goes() {
        let dir = tempfile::tempdir().unwrap();
        // No process has pid 4194304: Linux's pid_max is at most 4194304.
        let dead = dir.path().join(".list.toml.4194304.tmp");
        fs::write(&dead, "a whole copy").unwrap();
        let path = dir.path().join("list.toml");
        write(&path, b"new").unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert!(!dead.exists(), "the dead run's temporary file was removed");
    }
}
