//! Who left the list while a send runs. `serve`, the command line and the bounce handling
//! commit an unsubscribe (`list::unsubscribe_in`: a row in `unsubscribed` and one in
//! `list_change`, in one transaction) before they answer; the send's journal writer must
//! refuse the next message to that address. It reads the list changes made since its last
//! read, and only when something was committed to the database since then: the database
//! rewrites its WAL-index header (the first bytes of the `-shm` file beside it, a change
//! counter among them) at every commit, before the commit returns. Looking at the header
//! is one system call; the read transaction it spares cost ~12 µs and two lock calls for
//! every group of messages.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rusqlite::Connection;

use super::db::WAL_INDEX_HEADER;
use super::{Journal, State};

pub(crate) struct Departures {
    reader: Connection,
    shm: PathBuf,
    shm_file: Option<File>,
    /// The header as it was just before the last read.
    read_at: Option<[u8; WAL_INDEX_HEADER]>,
    /// The last list change read (`list_change.id`, which is never reused).
    last_change: i64,
    /// The send's addresses that are unsubscribed, as of the last read.
    gone: HashSet<String>,
}

/// The read connection of `Departures`, opened on a thread of its own while a send's
/// messages render: opening it reads the schema (about 0.3 ms of a core), which would
/// otherwise fall beside the first message.
pub(crate) struct Reader(std::thread::JoinHandle<Result<Option<Journal>>>);

impl Reader {
    pub(crate) fn open(state: &Path) -> Reader {
        let state = state.to_path_buf();
        Reader(std::thread::spawn(move || Journal::open_read_only(&state)))
    }
}

impl Departures {
    /// What the database at `state` says now about the addresses of `rows`: one read.
    pub(crate) fn open(state: &Path, rows: &HashMap<String, State>) -> Result<Departures> {
        let reader = Journal::open_read_only(state)?.context("the state database disappeared")?;
        Departures::read(reader, state, rows)
    }

    /// `open`, with the connection `early` opened meanwhile (or opened now if it failed:
    /// then the error is this one's to report).
    pub(crate) fn open_from(
        early: Reader,
        state: &Path,
        rows: &HashMap<String, State>,
    ) -> Result<Departures> {
        match early.0.join() {
            Ok(Ok(Some(reader))) => Departures::read(reader, state, rows),
            _ => Departures::open(state, rows),
        }
    }

    fn read(reader: Journal, state: &Path, rows: &HashMap<String, State>) -> Result<Departures> {
        let reader = reader.into_connection();
        let mut departures = Departures {
            reader,
            shm: super::db::beside(state, "-shm"),
            shm_file: None,
            read_at: None,
            last_change: 0,
            gone: HashSet::new(),
        };
        departures.read_at = departures.header();
        let tx = departures.reader.unchecked_transaction()?;
        // The latest change first: an unsubscribe committed after it is read later from
        // `list_change`, one committed before it is in `unsubscribed` now.
        departures.last_change =
            tx.query_row("SELECT coalesce(max(id), 0) FROM list_change", [], |r| {
                r.get(0)
            })?;
        {
            let mut stmt = tx.prepare("SELECT email FROM unsubscribed")?;
            let emails = stmt.query_map([], |r| r.get::<_, String>(0))?;
            for email in emails {
                let email = email?;
                if rows.contains_key(&email) {
                    departures.gone.insert(email);
                }
            }
        }
        tx.finish()?;
        Ok(departures)
    }

    /// Whether `email` is unsubscribed, as of the last `refresh`.
    pub(crate) fn contains(&self, email: &str) -> bool {
        self.gone.contains(email)
    }

    /// Reads the list changes committed since the last read, if the header says there are
    /// any (every commit changes it: the writer's own steps too, about once a second).
    pub(crate) fn refresh(&mut self) -> Result<()> {
        // Looked at before the read: a commit after this look changes the header again.
        let header = self.header();
        if header.is_some() && header == self.read_at {
            return Ok(());
        }
        let tx = self.reader.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "SELECT id, email, action FROM list_change WHERE id > ?1 ORDER BY id",
            )?;
            let mut changes = stmt.query([self.last_change])?;
            while let Some(change) = changes.next()? {
                let email: String = change.get(1)?;
                if change.get_ref(2)?.as_str()? == "unsubscribe" {
                    self.gone.insert(email);
                } else {
                    // Subscribed again since.
                    self.gone.remove(&email);
                }
                self.last_change = change.get(0)?;
            }
        }
        tx.finish()?;
        self.read_at = header;
        Ok(())
    }

    /// The header now; `None` when it cannot be read (then every refresh reads).
    fn header(&mut self) -> Option<[u8; WAL_INDEX_HEADER]> {
        if self.shm_file.is_none() {
            // The file exists once a connection has used the database in WAL mode.
            self.shm_file = File::open(&self.shm).ok();
        }
        super::db::wal_index_header(self.shm_file.as_ref()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn departures_come_from_the_list_changes_and_each_commit_moves_the_header() {
        let d = tempfile::tempdir().expect("tempdir");
        let path = d.path().join("state.db");
        let mut writer = Journal::open(&path).expect("open");
        let rows = HashMap::from([("ada@example.org".to_string(), State::Pending)]);
        writer
            .record_unsubscribe("ada@example.org", "before", UNIX_EPOCH)
            .expect("unsubscribe");
        let mut departures = Departures::open(&path, &rows).expect("departures");
        assert!(
            departures.contains("ada@example.org"),
            "left before the send"
        );
        assert!(departures.header().is_some(), "the header is readable");
        departures.refresh().expect("refresh");
        let unchanged = departures.read_at;
        departures.refresh().expect("refresh");
        assert_eq!(departures.read_at, unchanged);
        writer
            .record_unsubscribe("bo@example.org", "during", UNIX_EPOCH)
            .expect("unsubscribe");
        assert_ne!(
            departures.header(),
            unchanged,
            "a commit changes the header"
        );
        assert!(!departures.contains("bo@example.org"), "not read yet");
        departures.refresh().expect("refresh");
        assert!(departures.contains("bo@example.org"));
        writer
            .record_subscribe("ada@example.org", None, UNIX_EPOCH)
            .expect("subscribe");
        departures.refresh().expect("refresh");
        assert!(!departures.contains("ada@example.org"), "came back");
    }
}
