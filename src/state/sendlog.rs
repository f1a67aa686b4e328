//! The send log: where a running send makes each delivery step durable. A group of steps is
//! one write and one `fdatasync` into a file already filled with zeros (so the sync moves
//! data, never the file's size or block map; a new log's first sync, which also settles its
//! size and name, is the exception); the database learns of the steps a moment later, off
//! the path of the messages, and the log is replayed into it after a crash. (A one-recipient
//! run in a project that has no log yet commits its steps into the database instead, and
//! makes none: `writer::SMALL_RUN`.)
//!
//! Records follow each other from the start of the file, each numbered one more than the one
//! before and checksummed: reading stops at the first torn, stale or zeroed record. The
//! database keeps the number of the last record it applied, so a record is never applied
//! twice, and the file is written again from its start once everything in it is applied.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use chrono::NaiveDate;
use rusqlite::params;

use super::db::{Journal, from_unix, unix};
use super::deliveries::{Change, apply, attempted_and_sent, count_sent, edition_exists, utc_day};

/// The file first holds this many zeros, and doubles up to `MAX_LEN` as a run needs.
const FIRST_LEN: u64 = 64 * 1024;
/// Past this, the writer waits for the database to catch up and starts again at offset 0.
pub(crate) const MAX_LEN: u64 = 16 * 1024 * 1024;
/// Length (u32), number (u64), checksum (u64).
const HEADER: usize = 20;
/// No record is this long; a length beyond it is a torn or stale header.
const MAX_RECORD: usize = 1024 * 1024;

/// One delivery step.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub seq: u64,
    pub at: SystemTime,
    pub edition: String,
    pub email: String,
    pub change: Change,
}

/// The log file beside the database: `newsletter.db` keeps `newsletter.db-sendlog`.
pub(crate) fn path_for(db: &Path) -> PathBuf {
    super::db::beside(db, "-sendlog")
}

/// The name a new log is made under until its first sync (`Settle`).
fn first_name(path: &Path) -> PathBuf {
    super::db::beside(path, ".new")
}

/// The log open for appending, from its start.
pub(crate) struct SendLog {
    file: File,
    len: u64,
    offset: u64,
    buf: Vec<u8>,
    /// What the first sync must also make durable, for a log made or lengthened at open.
    settle: Option<Settle>,
    /// Records were written since the last sync.
    unsynced: bool,
}

/// A log made or lengthened at open is not synced then: its first record's sync is also
/// the one for its length (an `fsync` rather than an `fdatasync`), and a new log, made
/// under its first name (`first_name`), takes its name then, followed by a sync of the
/// folder. No record counts before that sync, so the log needs none before it (a
/// project's first run saves two), and a log found under its name is one whose name is on
/// disk: a run that ended before its first sync leaves at most the first name, which the
/// next replay removes.
enum Settle {
    /// Its length.
    Length,
    /// Its length, then its name: the log's path, which it does not have yet.
    Name(PathBuf),
}

/// What an append asks of its caller.
pub(crate) enum Appended {
    Done,
    /// The file is full: apply every record to the database, `restart`, append again.
    Full,
}

impl SendLog {
    /// Opens (making it, owner-only, if there is none) the log, with at least its first
    /// zeros.
    pub(crate) fn open(path: &Path) -> Result<SendLog> {
        let existing = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path);
        let (file, mut settle) = match existing {
            Ok(file) => (file, None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let new = first_name(path);
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&new)
                    .with_context(|| format!("cannot make the send log {}", new.display()))?;
                (file, Some(Settle::Name(path.to_path_buf())))
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot open the send log {}", path.display()));
            }
        };
        let len = file.metadata()?.len();
        if len < FIRST_LEN {
            zero(&file, len, FIRST_LEN)
                .with_context(|| format!("cannot prepare the send log {}", path.display()))?;
            settle.get_or_insert(Settle::Length);
        }
        Ok(SendLog {
            file,
            len: len.max(FIRST_LEN),
            offset: 0,
            buf: Vec::with_capacity(4096),
            settle,
            unsynced: false,
        })
    }

    /// Fills the file with zeros up to `len`, durably (this one sync does change its size).
    fn grow(&mut self, len: u64) -> std::io::Result<()> {
        zero(&self.file, self.len, len)?;
        self.file.sync_all()?;
        self.len = len;
        Ok(())
    }

    /// Makes every write so far durable: the data alone, or, the first time for a log made
    /// or lengthened at open, its length and its name too.
    fn sync(&mut self) -> Result<()> {
        let Some(settle) = &self.settle else {
            return self
                .file
                .sync_data()
                .context("cannot sync the send log to disk");
        };
        self.file
            .sync_all()
            .context("cannot sync the send log to disk")?;
        if let Settle::Name(path) = settle {
            std::fs::rename(first_name(path), path)
                .and_then(|()| crate::atomic_file::sync_folder_of(path))
                .with_context(|| format!("cannot name the send log {}", path.display()))?;
        }
        self.settle = None;
        Ok(())
    }

    /// Writes `entries` in one write and, with `sync`, makes them (and every write before
    /// them) durable with one `fdatasync`. Steps no one waits for are written without it:
    /// the next sync, or the database's at the end of the run, covers them.
    pub(crate) fn append(&mut self, entries: &[Entry], sync: bool) -> Result<Appended> {
        self.buf.clear();
        for e in entries {
            encode(e, &mut self.buf);
        }
        let end = self.offset + self.buf.len() as u64;
        if end > self.len {
            if end > MAX_LEN && self.offset > 0 {
                return Ok(Appended::Full);
            }
            let want = (self.len * 2)
                .max(end.next_power_of_two())
                .min(MAX_LEN.max(end));
            self.grow(want).context("cannot lengthen the send log")?;
        }
        self.file
            .write_all_at(&self.buf, self.offset)
            .context("cannot write the send log")?;
        self.unsynced = true;
        if sync {
            self.sync_written()?;
        }
        self.offset = end;
        Ok(Appended::Done)
    }

    /// Makes every record written so far durable, if one is not yet.
    pub(crate) fn sync_written(&mut self) -> Result<()> {
        if self.unsynced {
            self.sync()?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Starts again at the beginning: every record so far is in the database.
    pub(crate) fn restart(&mut self) {
        self.offset = 0;
    }

    /// Zeros what was written, so the addresses in it do not outlive the run; the next
    /// reader finds an empty log. No sync is needed: a record that survives is one the
    /// database already has, and is skipped.
    pub(crate) fn wipe(&mut self) -> Result<()> {
        zero(&self.file, 0, self.offset).context("cannot clear the send log")?;
        self.offset = 0;
        Ok(())
    }
}

/// Writes zeros over `from..to` of `file`.
fn zero(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; 64 * 1024];
    let mut at = from;
    while at < to {
        let n = usize::try_from((to - at).min(zeros.len() as u64)).unwrap_or(zeros.len());
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// The records of the log at `path`, in order (none when there is no log), and where the
/// last one ends.
pub(crate) fn read(path: &Path) -> Result<(Vec<Entry>, u64)> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)
                .with_context(|| format!("cannot read the send log {}", path.display()))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read the send log {}", path.display()));
        }
    }
    let mut entries = Vec::new();
    let mut at = 0;
    while let Some((entry, next)) = decode(&bytes, at) {
        if entries
            .last()
            .is_some_and(|prev: &Entry| entry.seq != prev.seq + 1)
        {
            break; // a record of an earlier pass through the file
        }
        entries.push(entry);
        at = next;
    }
    Ok((entries, at as u64))
}

/// Zeros the log at `path` up to `len`, where its last readable record ends.
fn wipe(path: &Path, len: u64) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open the send log {}", path.display()))?;
    zero(&file, 0, len).context("cannot clear the send log")
}

impl Journal {
    /// Applies the steps of the send log that this database has not applied yet, in order,
    /// in one transaction; with `durable`, that transaction is synced to disk before this
    /// returns (otherwise the log still holds the steps). `complete`: the edition to mark
    /// complete in the same transaction if none of its rows waits any more (the end of a
    /// send). Returns the last step applied.
    /// `fresh`: a new edition's rows not written yet, which the steps write (and, with
    /// `all`, the rest of them, pending).
    pub(crate) fn apply_log(
        &mut self,
        entries: &[Entry],
        durable: bool,
        complete: Option<(&str, SystemTime)>,
        fresh: Option<&mut NewRows>,
        all: bool,
    ) -> Result<u64> {
        self.synced(durable, |conn| {
            apply_steps(conn, entries, complete, fresh, all)
        })
    }

    /// The number of the last step of the send log applied here.
    pub(crate) fn log_applied(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row("SELECT applied FROM send_log WHERE id = 1", [], |r| {
                r.get(0)
            })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Applies what a run that stopped left in the send log, durably, then clears the log.
    /// Only under the run lock: no send is writing the log. Returns the steps applied.
    pub(crate) fn replay_send_log(&mut self, state: &Path) -> Result<usize> {
        let path = path_for(state);
        // A log left under its first name was never synced: no message went out on its
        // steps, and the addresses in it must not stay.
        let first = first_name(&path);
        if let Err(e) = std::fs::remove_file(&first)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(e).with_context(|| format!("cannot remove {}", first.display()));
        }
        let (entries, end) = read(&path)?;
        if entries.is_empty() {
            return Ok(0);
        }
        let before = self.log_applied()?;
        let after = self
            .apply_log(&entries, true, None, None, false)
            .with_context(|| format!("cannot apply the send log {}", path.display()))?;
        wipe(&path, end)?;
        Ok(usize::try_from(after.saturating_sub(before)).unwrap_or(usize::MAX))
    }
}

/// A new edition's recipients whose rows are not in the database yet. A send writes each
/// row with its first steps, in the state they leave: a message's attempting and sent, the
/// usual pair in one apply, as one insert (a pending row written when the send began and
/// updated later cost about twice the B-tree work, most of the database thread's time at
/// several connections). The rows no step reached are written pending at the run's end,
/// in the list's order; meanwhile the edition's `recipients` says how many there are
/// (`Journal::counts`), and a crash leaves them to the next run, which resumes the edition
/// and adds the rows still missing.
pub(crate) struct NewRows {
    pub edition: String,
    /// Each address not written yet, with its place in the list.
    pub unwritten: HashMap<String, usize>,
    /// All of the edition's recipients, written or not.
    pub recipients: usize,
    pub at: SystemTime,
}

impl NewRows {
    pub(crate) fn new(edition: String, emails: Vec<String>, at: SystemTime) -> NewRows {
        let recipients = emails.len();
        let unwritten = emails
            .into_iter()
            .enumerate()
            .map(|(i, e)| (e, i))
            .collect();
        NewRows {
            edition,
            unwritten,
            recipients,
            at,
        }
    }

    fn has(&self, edition: &str, email: &str) -> bool {
        self.edition == edition && self.unwritten.contains_key(email)
    }

    /// Writes, pending and in the list's order, the rows not written yet.
    fn write_rest(&self, tx: &rusqlite::Transaction<'_>) -> Result<()> {
        let mut rest: Vec<(&String, usize)> = self.unwritten.iter().map(|(e, i)| (e, *i)).collect();
        rest.sort_unstable_by_key(|(_, i)| *i);
        super::deliveries::insert_pending(
            tx,
            &self.edition,
            rest.into_iter().map(|(e, _)| e),
            self.at,
        )
    }
}

/// The steps not applied yet, applied in one transaction; the last step applied.
fn apply_steps(
    conn: &mut rusqlite::Connection,
    entries: &[Entry],
    complete: Option<(&str, SystemTime)>,
    fresh: Option<&mut NewRows>,
    all: bool,
) -> Result<u64> {
    let tx = conn.transaction()?;
    let mut applied: u64 = tx
        .query_row("SELECT applied FROM send_log WHERE id = 1", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| u64::try_from(n).unwrap_or(0))?;
    let start = applied;
    // Said again with each apply while some rows are not written: one row's update, and
    // nothing to remember about whether an earlier apply committed it.
    if let Some(f) = fresh.as_deref() {
        tx.execute(
            "UPDATE edition SET recipients = ?2 WHERE id = ?1",
            params![f.edition, i64::try_from(f.recipients).unwrap_or(i64::MAX)],
        )?;
    }
    // The steps not applied yet, contiguous from the last one applied, by row, the rows
    // in the order of their first step.
    let mut order: Vec<(&str, &str)> = Vec::new();
    let mut rows: HashMap<(&str, &str), Vec<&Entry>> = HashMap::new();
    for e in entries.iter().skip_while(|e| e.seq <= start) {
        if e.seq != applied + 1 {
            break; // a step is missing: the ones after it wait for it
        }
        let key = (e.edition.as_str(), e.email.as_str());
        rows.entry(key)
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push(e);
        applied = e.seq;
    }
    // Each row's steps in their order (rows do not depend on each other); a message's
    // attempting and sent in the same batch, the usual case, as one statement: half the
    // index updates.
    // A row missing (a new edition's rows are written during its send, and a crash may
    // come first) is created pending by its first step that finds none.
    let mut sent: BTreeMap<NaiveDate, usize> = BTreeMap::new();
    let mut written: Vec<&str> = Vec::new();
    // A new row is inserted only into an edition that has its row: asked once here, not in
    // each insert (`deliveries::NEW_SENT`).
    let fresh_edition = match fresh.as_deref() {
        Some(f) => edition_exists(&tx, &f.edition)?,
        None => false,
    };
    for (edition, email) in order {
        let steps = rows.get(&(edition, email)).map_or(&[][..], Vec::as_slice);
        let new = fresh.as_deref().is_some_and(|f| f.has(edition, email));
        if new {
            written.push(email);
        }
        if let [attempt, done] = steps
            && let (Change::Attempting { message_id, .. }, Change::Sent { reply }) =
                (&attempt.change, &done.change)
        {
            let both =
                |new| attempted_and_sent(&tx, new, edition, email, message_id, reply, done.at);
            if (new && fresh_edition && both(true)?)
                || both(false)?
                || (add_missing(&tx, edition, email, attempt.at)? && both(false)?)
            {
                *sent.entry(utc_day(done.at)).or_default() += 1;
            }
            continue;
        }
        let mut looked = false;
        for e in steps {
            let mut applied = apply(&tx, edition, email, &e.change, e.at)?;
            if !applied && !looked {
                looked = true;
                applied = add_missing(&tx, edition, email, e.at)?
                    && apply(&tx, edition, email, &e.change, e.at)?;
            }
            if applied && matches!(e.change, Change::Sent { .. }) {
                *sent.entry(utc_day(e.at)).or_default() += 1;
            }
        }
    }
    for (day, n) in sent {
        count_sent(&tx, n, day)?;
    }
    tx.execute(
        "UPDATE send_log SET applied = ?1 WHERE id = 1",
        params![i64::try_from(applied).unwrap_or(i64::MAX)],
    )?;
    if all && let Some(f) = fresh.as_deref() {
        f.write_rest(&tx)?;
    }
    if let Some((edition, now)) = complete {
        super::editions::complete_if_done(&tx, edition, now)?;
    }
    tx.commit()?;
    // Only once committed: a failed apply is tried again, and writes them then.
    if let Some(f) = fresh {
        if all {
            f.unwritten.clear();
        } else {
            for email in written {
                f.unwritten.remove(email);
            }
        }
    }
    Ok(applied)
}

/// Creates `email`'s pending row in `edition` if the edition exists and the row does not;
/// whether it did.
fn add_missing(
    tx: &rusqlite::Transaction<'_>,
    edition: &str,
    email: &str,
    at: SystemTime,
) -> rusqlite::Result<bool> {
    let n = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO delivery (edition_id, email, state, updated_at) \
             SELECT ?1, ?2, 'pending', ?3 WHERE EXISTS (SELECT 1 FROM edition WHERE id = ?1)",
        )?
        .execute(params![edition, email, unix(at)])?;
    Ok(n > 0)
}

/// FNV-1a, 64 bits: enough to tell a whole record from a torn or stale one.
fn checksum(seq: u64, payload: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seq.to_le_bytes().iter().chain(payload) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_code(out: &mut Vec<u8>, code: Option<u16>) {
    out.extend_from_slice(&code.unwrap_or(0).to_le_bytes());
}

fn encode(e: &Entry, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER]);
    out.extend_from_slice(&unix(e.at).to_le_bytes());
    put_str(out, &e.edition);
    put_str(out, &e.email);
    match &e.change {
        Change::Attempting {
            message_id,
            after: None,
        } => {
            out.push(0);
            put_str(out, message_id);
        }
        Change::Attempting {
            message_id,
            after: Some(after),
        } => {
            out.push(7);
            put_str(out, message_id);
            put_str(out, after);
        }
        Change::Sent { reply } => {
            out.push(1);
            put_str(out, reply);
        }
        Change::Deferred {
            code,
            reply,
            next_try,
        } => {
            out.push(2);
            put_code(out, *code);
            put_str(out, reply);
            out.extend_from_slice(&unix(*next_try).to_le_bytes());
        }
        Change::Failed {
            code,
            reply,
            suppress,
        } => {
            out.push(3);
            put_code(out, *code);
            put_str(out, reply);
            out.push(u8::from(*suppress));
        }
        Change::InDoubt { reason } => {
            out.push(4);
            put_str(out, reason);
        }
        Change::Released { code, reply } => {
            out.push(5);
            put_code(out, *code);
            put_str(out, reply);
        }
        Change::Skipped { reason } => {
            out.push(6);
            put_str(out, reason);
        }
    }
    let payload_len = out.len() - start - HEADER;
    let sum = checksum(e.seq, &out[start + HEADER..]);
    let header = &mut out[start..start + HEADER];
    header[..4].copy_from_slice(&u32::try_from(payload_len).unwrap_or(u32::MAX).to_le_bytes());
    header[4..12].copy_from_slice(&e.seq.to_le_bytes());
    header[12..20].copy_from_slice(&sum.to_le_bytes());
}

/// Reads the fields of one payload in order.
struct Fields<'a> {
    bytes: &'a [u8],
}

impl Fields<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    /// A reply code; 0 stands for none.
    fn code(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }

    fn string(&mut self) -> Option<String> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        let s = self.take(usize::try_from(n).ok()?)?;
        String::from_utf8(s.to_vec()).ok()
    }
}

/// The record at `at`, and where the next one starts; `None` where the log ends.
fn decode(bytes: &[u8], at: usize) -> Option<(Entry, usize)> {
    let header = bytes.get(at..at + HEADER)?;
    let len = usize::try_from(u32::from_le_bytes(header[..4].try_into().ok()?)).ok()?;
    let seq = u64::from_le_bytes(header[4..12].try_into().ok()?);
    let sum = u64::from_le_bytes(header[12..20].try_into().ok()?);
    if len == 0 || len > MAX_RECORD {
        return None;
    }
    let payload = bytes.get(at + HEADER..at + HEADER + len)?;
    if checksum(seq, payload) != sum {
        return None;
    }
    let mut f = Fields { bytes: payload };
    let stamp = f.i64()?;
    let edition = f.string()?;
    let email = f.string()?;
    let change = match f.u8()? {
        0 => Change::Attempting {
            message_id: f.string()?,
            after: None,
        },
        1 => Change::Sent { reply: f.string()? },
        2 => Change::Deferred {
            code: Some(f.code()?).filter(|c| *c != 0),
            reply: f.string()?,
            next_try: from_unix(f.i64()?),
        },
        3 => Change::Failed {
            code: Some(f.code()?).filter(|c| *c != 0),
            reply: f.string()?,
            suppress: f.u8()? != 0,
        },
        4 => Change::InDoubt {
            reason: f.string()?,
        },
        5 => Change::Released {
            code: Some(f.code()?).filter(|c| *c != 0),
            reply: f.string()?,
        },
        6 => Change::Skipped {
            reason: f.string()?,
        },
        7 => Change::Attempting {
            message_id: f.string()?,
            after: Some(f.string()?),
        },
        _ => return None,
    };
    Some((
        Entry {
            seq,
            at: from_unix(stamp),
            edition,
            email,
            change,
        },
        at + HEADER + len,
    ))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::state::State;

    fn entry(seq: u64, email: &str, change: Change) -> Entry {
        Entry {
            seq,
            at: UNIX_EPOCH + Duration::from_hours(498_825),
            edition: "2026-11-27-weekly".into(),
            email: email.into(),
            change,
        }
    }

    fn every_change() -> Vec<Change> {
        vec![
            Change::Attempting {
                message_id: "<a@harbour.example>".into(),
                after: None,
            },
            Change::Sent {
                reply: "250 2.0.0 queued".into(),
            },
            Change::Deferred {
                code: Some(451),
                reply: "later".into(),
                next_try: UNIX_EPOCH + Duration::from_mins(29_929_510),
            },
            Change::Failed {
                code: None,
                reply: "5.1.1 unknown".into(),
                suppress: true,
            },
            Change::InDoubt {
                reason: "lost".into(),
            },
            Change::Released {
                code: Some(421),
                reply: "slow down".into(),
            },
            Change::Skipped {
                reason: "unsubscribed".into(),
            },
            Change::Attempting {
                message_id: "<b@harbour.example>".into(),
                after: Some("a@example.org".into()),
            },
        ]
    }

    /// A row as the test compares it: email, state, attempts, reply, `message_id`.
    type Dumped = (String, String, u32, Option<String>, Option<String>);

    #[test]
    fn the_log_applied_in_one_batch_leaves_the_rows_as_its_steps_one_by_one() {
        use std::time::Duration;
        let at = UNIX_EPOCH + Duration::from_hours(72);
        let rows = ["a@example.org", "b@example.org", "c@example.org"];
        let change = every_change();
        let (attempting, sent, deferred, in_doubt) =
            (&change[0], &change[1], &change[2], &change[4]);
        let steps: Vec<(usize, Change)> = [
            (0, attempting),
            (1, attempting),
            (0, sent),
            (1, deferred),
            (2, attempting),
            (2, in_doubt),
            (1, attempting),
            (1, sent),
        ]
        .into_iter()
        .map(|(r, c)| (r, c.clone()))
        .collect();
        let entries: Vec<Entry> = steps
            .iter()
            .enumerate()
            .map(|(i, (r, c))| Entry {
                seq: i as u64 + 1,
                at,
                edition: "e".into(),
                email: rows[*r].into(),
                change: c.clone(),
            })
            .collect();
        let fresh = || {
            let d = tempfile::tempdir().expect("tempdir");
            let mut j = Journal::open(&d.path().join("state.db")).expect("open");
            j.connection()
                .execute_batch(
                    "INSERT INTO edition (id, date, created_at, frozen) VALUES ('e', '2026-11-27', 0, '{}');
                     INSERT INTO delivery (edition_id, email, state, updated_at) VALUES
                       ('e', 'a@example.org', 'pending', 0), ('e', 'b@example.org', 'pending', 0),
                       ('e', 'c@example.org', 'pending', 0);",
                )
                .expect("rows");
            (d, j)
        };
        let dump = |j: &mut Journal| -> Vec<Dumped> {
            let mut stmt = j
                .connection()
                .prepare(
                    "SELECT email, state, attempts, reply, message_id FROM delivery ORDER BY email",
                )
                .expect("select");
            stmt.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .expect("rows")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
        };
        let (_d1, mut one_by_one) = fresh();
        for e in &entries {
            let tx = one_by_one.connection().transaction().expect("tx");
            apply(&tx, "e", &e.email, &e.change, at).expect("apply");
            tx.commit().expect("commit");
        }
        let (_d2, mut batched) = fresh();
        assert_eq!(
            batched
                .apply_log(&entries, true, None, None, false)
                .expect("apply"),
            8
        );
        assert_eq!(dump(&mut batched), dump(&mut one_by_one));
        assert_eq!(batched.sent_on(utc_day(at)).expect("count"), 2);
        // Applied once: the same steps again change nothing.
        assert_eq!(
            batched
                .apply_log(&entries, true, None, None, false)
                .expect("again"),
            8
        );
        assert_eq!(batched.sent_on(utc_day(at)).expect("count"), 2);

        // A new edition's rows, not written before its steps: each is written by the apply
        // of its first steps, as the pending row would have become; the one no step reached
        // (d) waits, counted pending, until the run's end writes it.
        let (_lazy_dir, _, mut lazy) = crate::state::writer::tests::edition_e();
        let list = [
            "d@example.org",
            "a@example.org",
            "b@example.org",
            "c@example.org",
        ];
        let mut new_rows = NewRows::new("e".into(), list.map(String::from).to_vec(), at);
        let (first, second) = entries.split_at(3);
        for part in [first, second] {
            lazy.apply_log(part, false, None, Some(&mut new_rows), false)
                .expect("apply");
        }
        assert_eq!(dump(&mut lazy), dump(&mut one_by_one));
        assert_eq!(lazy.sent_on(utc_day(at)).expect("count"), 2);
        let counts = lazy.counts("e").expect("counts");
        assert_eq!(
            (
                counts[&State::Pending],
                counts[&State::Sent],
                counts[&State::InDoubt]
            ),
            (1, 2, 1)
        );
        assert_eq!(
            new_rows.unwritten.keys().collect::<Vec<_>>(),
            ["d@example.org"]
        );
        lazy.apply_log(&[], true, None, Some(&mut new_rows), true)
            .expect("the rest");
        assert!(new_rows.unwritten.is_empty());
        let order = crate::state::writer::tests::rows_in_order(&mut lazy);
        let row = |e: &str, s: &str| (e.to_string(), s.to_string());
        assert_eq!(
            order,
            [
                row("a@example.org", "sent"),
                row("b@example.org", "sent"),
                row("c@example.org", "in_doubt"),
                row("d@example.org", "pending")
            ]
        );
        assert_eq!(lazy.counts("e").expect("counts"), counts);
    }

    /// `entry` in another edition.
    fn step(seq: u64, edition: &str, email: &str, change: &Change) -> Entry {
        Entry {
            edition: edition.into(),
            ..entry(seq, email, change.clone())
        }
    }

    /// Every delivery row as (edition, email, state), by email.
    fn editions_emails_states(j: &mut Journal) -> Vec<(String, String, String)> {
        j.connection()
            .prepare("SELECT edition_id, email, state FROM delivery ORDER BY email")
            .expect("select")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("rows")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    }

    #[test]
    fn a_step_for_a_row_not_written_yet_creates_it_in_an_edition_that_exists() {
        let (_d, _, mut j) = crate::state::writer::tests::edition_e();
        let change = every_change();
        let (attempting, sent) = (&change[0], &change[1]);
        let entries = [
            // A message sent whole, one left in flight, and a step of an edition that
            // does not exist, which makes nothing.
            step(1, "e", "a@example.org", attempting),
            step(2, "e", "a@example.org", sent),
            step(3, "e", "b@example.org", attempting),
            step(4, "gone", "c@example.org", attempting),
        ];
        assert_eq!(
            j.apply_log(&entries, true, None, None, false)
                .expect("apply"),
            4
        );
        let rows = editions_emails_states(&mut j);
        let row = |e: &str, m: &str, s: &str| (e.to_string(), m.to_string(), s.to_string());
        assert_eq!(
            rows,
            [
                row("e", "a@example.org", "sent"),
                row("e", "b@example.org", "attempting")
            ]
        );
        assert_eq!(j.sent_on(utc_day(entries[1].at)).expect("count"), 1);
    }

    /// A new row is inserted only into an edition that has its row: one whose edition is
    /// gone makes nothing, and the rest of its batch still applies (the foreign key would
    /// have refused the whole batch).
    #[test]
    fn a_new_row_of_an_edition_without_its_row_is_not_written_and_its_batch_applies() {
        let (_d, _, mut j) = crate::state::writer::tests::edition_e();
        let change = every_change();
        let (attempting, sent) = (&change[0], &change[1]);
        let mut gone = NewRows::new("gone".into(), vec!["c@example.org".into()], UNIX_EPOCH);
        let entries = [
            step(1, "gone", "c@example.org", attempting),
            step(2, "gone", "c@example.org", sent),
            step(3, "e", "a@example.org", attempting),
            step(4, "e", "a@example.org", sent),
        ];
        assert_eq!(
            j.apply_log(&entries, true, None, Some(&mut gone), false)
                .expect("apply"),
            4
        );
        let rows = editions_emails_states(&mut j);
        assert_eq!(
            rows,
            [(
                "e".to_string(),
                "a@example.org".to_string(),
                "sent".to_string()
            )]
        );
    }

    /// A new log takes its name with its first synced record: a run that ends before one
    /// leaves no log that a later run would take for one whose name is on disk.
    #[test]
    fn a_new_log_is_named_by_its_first_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db-sendlog");
        let entries = [entry(1, "r@harbour.example", every_change()[0].clone())];
        let mut log = SendLog::open(&path).expect("open");
        log.append(&entries, false).expect("append");
        drop(log);
        assert!(!path.exists(), "named before any sync");

        let mut log = SendLog::open(&path).expect("open again");
        log.append(&entries, true).expect("append");
        assert!(path.exists(), "named by the sync");
        assert_eq!(read(&path).expect("read").0.len(), 1);
        drop(log);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["state.db-sendlog"], "nothing else left beside it");

        // An existing log is used as it is.
        let mut log = SendLog::open(&path).expect("open the named log");
        log.append(&entries, true).expect("append");
        assert_eq!(read(&path).expect("read").0.len(), 1);
    }

    #[test]
    fn records_read_back_in_order_and_a_torn_one_ends_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db-sendlog");
        let mut log = SendLog::open(&path).expect("open");
        let entries: Vec<Entry> = every_change()
            .into_iter()
            .enumerate()
            .map(|(i, c)| entry(10 + i as u64, &format!("r{i}@harbour.example"), c))
            .collect();
        log.append(&entries[..3], true).expect("append");
        log.append(&entries[3..], false).expect("append");
        let back = read(&path).expect("read").0;
        assert_eq!(format!("{back:?}"), format!("{entries:?}"));

        // A byte of the fifth record changed: the log ends after the fourth.
        let mut bytes = std::fs::read(&path).expect("bytes");
        let mut at = 0;
        for _ in 0..4 {
            let (_, next) = decode(&bytes, at).expect("record");
            at = next;
        }
        bytes[at + HEADER + 3] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(read(&path).expect("read").0.len(), 4);
    }

    #[test]
    fn after_a_restart_the_records_of_the_earlier_pass_are_not_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db-sendlog");
        let mut log = SendLog::open(&path).expect("open");
        let sent = || Change::Sent {
            reply: "250 ok".into(),
        };
        let first: Vec<Entry> = (1..=5)
            .map(|i| entry(i, "a-rather-long-address@harbour.example", sent()))
            .collect();
        log.append(&first, true).expect("append");
        log.restart();
        log.append(&[entry(6, "b@h.example", sent())], true)
            .expect("append");
        let back = read(&path).expect("read").0;
        assert_eq!(back.len(), 1, "{back:?}");
        assert_eq!(back[0].seq, 6);
    }

    #[test]
    fn a_wiped_log_reads_empty_and_holds_no_address() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db-sendlog");
        let mut log = SendLog::open(&path).expect("open");
        log.append(
            &[entry(
                1,
                "reader@harbour.example",
                every_change()[0].clone(),
            )],
            true,
        )
        .expect("append");
        log.wipe().expect("wipe");
        assert!(read(&path).expect("read").0.is_empty());
        let bytes = std::fs::read(&path).expect("bytes");
        assert!(!bytes.windows(6).any(|w| w == b"reader"));
        assert_eq!(
            bytes.len() as u64,
            FIRST_LEN,
            "the zeros stay for the next run"
        );
    }

    /// A run stopped before its log's first sync leaves the log under its first name, with
    /// addresses in it and nothing anyone relies on: the next replay (a send, `forget`)
    /// removes it.
    #[test]
    fn a_log_left_before_its_first_sync_is_removed_by_the_next_replay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state.db");
        let mut j = Journal::open(&state).expect("open");
        let path = path_for(&state);
        let mut log = SendLog::open(&path).expect("open the log");
        log.append(
            &[entry(1, "left@harbour.example", every_change()[0].clone())],
            false,
        )
        .expect("append");
        drop(log);
        let first = first_name(&path);
        assert!(first.exists());
        assert_eq!(j.replay_send_log(&state).expect("replay"), 0);
        assert!(!first.exists(), "left under its first name");
        assert!(!path.exists());
    }

    #[test]
    fn the_file_grows_past_its_first_zeros_and_reports_full_at_its_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db-sendlog");
        let mut log = SendLog::open(&path).expect("open");
        let reply = "x".repeat(200_000);
        let mut seq = 0;
        let mut full = false;
        for _ in 0..200 {
            seq += 1;
            let e = entry(
                seq,
                "r@h.example",
                Change::Sent {
                    reply: reply.clone(),
                },
            );
            if let Appended::Full = log.append(&[e], true).expect("append") {
                full = true;
                break;
            }
        }
        assert!(full, "the log reported full");
        assert!(log.len <= MAX_LEN);
        assert_eq!(read(&path).expect("read").0.len() as u64, seq - 1);
    }
}
