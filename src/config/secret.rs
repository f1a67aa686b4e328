//! Secrets (the SMTP password, the unsubscribe key) read from the environment or a file,
//! never from the TOML itself, and never printed.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Where a secret comes from, as named in the config.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
    /// A shell command whose standard output is the secret, run at each use (an OAuth
    /// access token that an outside refresher keeps fresh).
    Command(String),
}

/// How long a secret's command may take: a token helper that hangs must not hang a send.
const COMMAND_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(name) => write!(f, "environment variable {name}"),
            SecretSource::File(path) => write!(f, "file {}", path.display()),
            SecretSource::Command(command) => write!(f, "command `{command}`"),
        }
    }
}

impl SecretSource {
    /// The source named by a `WHAT_env` / `WHAT_file` pair of config fields (a file relative
    /// to the config's folder); exactly one must be set.
    pub(super) fn from_pair(
        env: Option<&String>,
        file: Option<&PathBuf>,
        dir: &Path,
        what: &str,
    ) -> std::result::Result<SecretSource, String> {
        match (env, file) {
            (Some(name), None) => Ok(SecretSource::Env(name.clone())),
            (None, Some(file)) => Ok(SecretSource::File(dir.join(file))),
            _ => Err(format!("set exactly one of `{what}_env` or `{what}_file`")),
        }
    }

    /// Reads the secret, refusing a file that others can change (as ssh does) and
    /// returning a warning when others can read it.
    pub fn load_private(&self) -> Result<(Secret, Option<String>)> {
        let warning = match self {
            SecretSource::File(path) => permission_warning(path)?,
            SecretSource::Env(_) | SecretSource::Command(_) => None,
        };
        Ok((self.load()?, warning))
    }

    /// Reads the secret; a trailing newline in a file is not part of it.
    pub fn load(&self) -> Result<Secret> {
        let value = match self {
            SecretSource::Env(name) => match std::env::var(name) {
                Ok(value) => value,
                Err(std::env::VarError::NotPresent) => bail!(
                    "the environment variable {name} is not set. Cron and systemd start \
                     programs with almost no environment: put the secret in a file readable by \
                     this user alone (`chmod 600`) and name it with `_file` instead of `_env` \
                     in the config, or set {name} in the crontab or a systemd EnvironmentFile \
                     (see the README, \"Install and run from cron\")"
                ),
                Err(std::env::VarError::NotUnicode(_)) => {
                    bail!("the environment variable {name} is not valid UTF-8")
                }
            },
            SecretSource::File(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read secret file {}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            SecretSource::Command(command) => run(command)?,
        };
        if value.is_empty() {
            bail!("the secret in {self:?} is empty");
        }
        Ok(Secret(value))
    }
}

/// The standard output of `sh -c COMMAND`, without its trailing white space. What the
/// command wrote to standard error says why it failed; its output (the secret) is never
/// part of an error.
fn run(command: &str) -> Result<String> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new("sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run the command `{command}`"))?;
    // Read both pipes on threads, so a chatty command cannot fill one and stall.
    let mut stdout = child.stdout.take().context("no pipe")?;
    let mut stderr = child.stderr.take().context("no pipe")?;
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).map(|_| s)
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = crate::clock::instant() + COMMAND_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if crate::clock::instant() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the command `{command}` gave no secret within {COMMAND_LIMIT:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let output = out
        .join()
        .map_err(|_| anyhow::anyhow!("reading the command's output failed"))?
        .with_context(|| format!("the output of `{command}` is not UTF-8"))?;
    let errors = err.join().unwrap_or_default();
    if !status.success() {
        bail!(
            "the command `{command}` failed ({status}): {}",
            errors.trim()
        );
    }
    Ok(output.trim_end().to_string())
}

/// `Err` when users other than the owner can change the file; a warning when they can read
/// it.
fn permission_warning(path: &std::path::Path) -> Result<Option<String>> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(None); // reading it reports what is wrong
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        bail!(
            "the secret file {} can be changed by other users (mode {mode:04o}): `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    Ok((mode & 0o044 != 0).then(|| {
        format!(
            "the secret file {} can be read by other users (mode {mode:04o}): `chmod 600 {}`",
            path.display(),
            path.display()
        )
    }))
}

/// A secret value. `Debug` and `Display` print a placeholder, so a secret cannot end up in
/// a log line or an error message by accident.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_their_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn a_secret_file_loses_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "k3y\n").unwrap();
        assert_eq!(SecretSource::File(path).load().unwrap().expose(), "k3y");
    }
}
