//! The state database (`SQLite`, WAL, `synchronous=FULL`): frozen editions and the delivery
//! journal, one row per (edition, recipient), plus the suppression list and the daily count.
//!
//! The promise it carries: a recipient is durably `attempting` before its DATA and durably
//! `sent` after the server's 250, so after any crash no one is skipped and no recorded
//! success is repeated. Rows left `attempting` by a dead run become `in_doubt`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::edition::Edition;
use crate::input::articles::Article;

/// The schema version this binary reads and writes (`PRAGMA user_version`).
pub(crate) const SCHEMA_VERSION: usize = 1;

/// Forward migrations: `MIGRATIONS[n]` brings a database from version n to n + 1, in one
/// transaction. Version 0 is every database made before the schema had a version: the
/// tables below, created as needed, and the feed cache, created by the feeds module.
const MIGRATIONS: [&str; SCHEMA_VERSION] = [V1];

/// Version 1: the tables of version 0, all of them here, `IF NOT EXISTS` so that a
/// database of version 0 keeps its rows.
const V1: &str = "
CREATE TABLE IF NOT EXISTS edition (
    id            TEXT PRIMARY KEY,
    date          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    completed_at  INTEGER,
    frozen        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS edition_article (
    edition_id  TEXT NOT NULL REFERENCES edition(id),
    article_id  TEXT NOT NULL,
    PRIMARY KEY (edition_id, article_id)
);
CREATE TABLE IF NOT EXISTS delivery (
    edition_id  TEXT NOT NULL REFERENCES edition(id),
    email       TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN
                  ('pending','attempting','sent','deferred','failed','in_doubt','skipped')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_try    INTEGER,
    code        INTEGER,
    reply       TEXT,
    message_id  TEXT,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (edition_id, email)
);
CREATE INDEX IF NOT EXISTS delivery_state ON delivery (edition_id, state);
CREATE TABLE IF NOT EXISTS suppression (
    email   TEXT PRIMARY KEY,
    reason  TEXT NOT NULL,
    at      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS daily_count (
    day   TEXT PRIMARY KEY,
    sent  INTEGER NOT NULL
);
-- Who unsubscribed, durable the moment they asked; honoured by a send already running.
CREATE TABLE IF NOT EXISTS unsubscribed (
    email   TEXT PRIMARY KEY,
    source  TEXT NOT NULL,
    at      INTEGER NOT NULL
);
-- Edits of subscribers.toml not yet written to it (the file is edited under the run lock).
CREATE TABLE IF NOT EXISTS list_change (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    email       TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('subscribe','unsubscribe')),
    name        TEXT,
    at          INTEGER NOT NULL,
    applied_at  INTEGER
);
-- Conditional-GET validators and bodies of feed URLs.
CREATE TABLE IF NOT EXISTS feed_cache (
    url            TEXT PRIMARY KEY,
    etag           TEXT,
    last_modified  TEXT,
    body           BLOB NOT NULL,
    fetched_at     INTEGER NOT NULL
);
";

/// One edition as the state database records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditionRow {
    pub id: String,
    pub date: NaiveDate,
    pub completed: bool,
}

/// An edit of the subscriber list waiting to be written into the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListChange {
    pub id: i64,
    pub email: String,
    pub subscribe: bool,
    pub name: Option<String>,
}

/// A recipient's place in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Attempting,
    Sent,
    Deferred,
    Failed,
    InDoubt,
    /// Unsubscribed or suppressed after the edition was frozen: not mailed.
    Skipped,
}

impl State {
    pub const ALL: [State; 7] = [
        State::Pending,
        State::Attempting,
        State::Sent,
        State::Deferred,
        State::Failed,
        State::InDoubt,
        State::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Attempting => "attempting",
            State::Sent => "sent",
            State::Deferred => "deferred",
            State::Failed => "failed",
            State::InDoubt => "in_doubt",
            State::Skipped => "skipped",
        }
    }

    fn parse(s: &str) -> rusqlite::Result<State> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                rusqlite::Error::InvalidColumnType(
                    0,
                    format!("state {s:?}"),
                    rusqlite::types::Type::Text,
                )
            })
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an edition needs to be rendered again exactly, whatever happened to the files since.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Frozen {
    pub date: NaiveDate,
    pub articles: Vec<Article>,
    /// Template name → source, as they were when the edition was first sent.
    pub templates: BTreeMap<String, String>,
    /// Subscriber tags the edition goes to; empty: everyone.
    #[serde(default)]
    pub audience: Vec<String>,
    /// Feed sources read for this edition, and those that failed: a source's next window
    /// starts at the last edition that read it, so an outage skips nothing.
    #[serde(default)]
    pub sources_read: Vec<String>,
    #[serde(default)]
    pub sources_failed: Vec<String>,
}

/// One journal row, for reports.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub email: String,
    pub state: State,
    pub attempts: u32,
    pub code: Option<u16>,
    pub reply: Option<String>,
    pub message_id: Option<String>,
}

/// A change to one recipient's row. Applied in order by the journal writer.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    Attempting {
        message_id: String,
    },
    Sent {
        reply: String,
    },
    Deferred {
        code: Option<u16>,
        reply: String,
        next_try: SystemTime,
    },
    Failed {
        code: Option<u16>,
        reply: String,
        suppress: bool,
    },
    InDoubt {
        reason: String,
    },
    /// Back to pending, not charged an attempt: the relay refused the sender or asked to
    /// slow down, which says nothing about this recipient.
    Released {
        code: Option<u16>,
        reply: String,
    },
}

pub struct Journal {
    conn: Connection,
}

pub(crate) fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Journal {
    /// Opens (creating if needed) the database for writing.
    pub fn open(path: &Path) -> Result<Journal> {
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open the state database {}", path.display()))?;
        Self::setup(&conn).map_err(|e| explain(e, path))?;
        Ok(Journal { conn })
    }

    fn setup(conn: &Connection) -> Result<()> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Checkpoints (copying the WAL into the database, with their own fsyncs) every
        // 10,000 pages rather than 1,000: a send writes a few pages per message.
        conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
        migrate(conn)
    }

    /// Opens an existing database read-only; `None` when there is none yet (check,
    /// preview and dry runs do not create it, unless they fetch a feed URL: the feed cache
    /// lives in it).
    pub fn open_read_only(path: &Path) -> Result<Option<Journal>> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("cannot open the state database {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // Read-only: an older version is read as it is (each version only adds), a newer
        // one is refused.
        version(&conn)
            .and_then(refuse_newer)
            .map_err(|e| explain(e, path))?;
        Ok(Some(Journal { conn }))
    }

    /// The connection itself, for a table kept beside the journal (the feed cache).
    pub fn into_connection(self) -> Connection {
        self.conn
    }

    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Ids of articles that earlier editions carried.
    pub fn sent_articles(&self) -> Result<HashSet<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT article_id FROM edition_article")?;
        let ids = stmt
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }

    /// Rows left `attempting` by a run that died: their outcome is unknown.
    pub fn recover_in_flight(&mut self, now: SystemTime) -> Result<usize> {
        let n = self.conn.execute(
            "UPDATE delivery SET state = 'in_doubt', reply = 'the run stopped during this message; its outcome is unknown', updated_at = ?1 WHERE state = 'attempting'",
            params![unix(now)],
        )?;
        Ok(n)
    }

    /// The edition still being sent, if any (at most one: a new one is frozen only when the
    /// previous one is complete).
    pub fn unfinished_edition(&self) -> Result<Option<(String, Frozen)>> {
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT id, frozen FROM edition WHERE completed_at IS NULL ORDER BY created_at LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match row {
            None => Ok(None),
            Some((id, json)) => {
                let frozen: Frozen = serde_json::from_str(&json).with_context(|| {
                    format!("the frozen edition {id} in the state database is unreadable")
                })?;
                Ok(Some((id, frozen)))
            }
        }
    }

    /// The most recent edition, complete or not.
    pub fn latest_edition(&self) -> Result<Option<EditionRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, date, completed_at IS NOT NULL FROM edition ORDER BY created_at DESC, id DESC LIMIT 1",
                [],
                edition_row,
            )
            .optional()?)
    }

    /// Per feed source, from the editions sent in full: the date of the last one that read
    /// it, and the date of the first one for which it failed.
    pub fn source_history(&self) -> Result<crate::edition::selection::SourceHistory> {
        let mut history = crate::edition::selection::SourceHistory::default();
        for (key, target) in [
            ("$.sources_read", &mut history.last_read),
            ("$.sources_failed", &mut history.first_failed),
        ] {
            let aggregate = if key.ends_with("read") { "MAX" } else { "MIN" };
            let mut stmt = self.conn.prepare(&format!(
                "SELECT j.value, {aggregate}(e.date) FROM edition e, json_each(e.frozen, ?1) j WHERE e.completed_at IS NOT NULL GROUP BY j.value"
            ))?;
            let rows = stmt.query_map([key], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            for row in rows {
                let (name, date) = row?;
                if let Ok(d) = date.parse() {
                    target.insert(name, d);
                }
            }
        }
        Ok(history)
    }

    /// One edition by id.
    pub fn edition(&self, id: &str) -> Result<Option<EditionRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, date, completed_at IS NOT NULL FROM edition WHERE id = ?1",
                params![id],
                edition_row,
            )
            .optional()?)
    }

    /// Records a new edition with its frozen inputs and one pending row per recipient, in
    /// one transaction.
    pub fn freeze(
        &mut self,
        edition: &Edition,
        frozen: &Frozen,
        recipients: &[String],
        now: SystemTime,
    ) -> Result<()> {
        let json = serde_json::to_string(frozen).context("cannot serialize the edition")?;
        let tx = self.conn.transaction()?;
        let exists: bool = tx
            .query_row(
                "SELECT 1 FROM edition WHERE id = ?1",
                params![edition.id],
                |_| Ok(true),
            )
            .optional()?
            .unwrap_or(false);
        if exists {
            bail!(
                "edition {} was sent before; choose other articles or another --date",
                edition.id
            );
        }
        tx.execute(
            "INSERT INTO edition (id, date, created_at, frozen) VALUES (?1, ?2, ?3, ?4)",
            params![edition.id, edition.date.to_string(), unix(now), json],
        )?;
        for a in &edition.articles {
            tx.execute(
                "INSERT INTO edition_article (edition_id, article_id) VALUES (?1, ?2)",
                params![edition.id, a.id],
            )?;
        }
        insert_pending(&tx, &edition.id, recipients, now)?;
        tx.commit().context("cannot record the edition")
    }

    /// Brings a resumed edition's rows in line with today's list: new subscribers are added
    /// as pending, and anyone no longer subscribed who was not yet mailed is skipped.
    /// Returns (added, skipped).
    pub fn sync_recipients(
        &mut self,
        edition_id: &str,
        active: &[String],
        now: SystemTime,
    ) -> Result<(usize, usize)> {
        let tx = self.conn.transaction()?;
        let known: HashSet<String> = {
            let mut stmt = tx.prepare("SELECT email FROM delivery WHERE edition_id = ?1")?;
            stmt.query_map(params![edition_id], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let new: Vec<String> = active
            .iter()
            .filter(|e| !known.contains(*e))
            .cloned()
            .collect();
        insert_pending(&tx, edition_id, &new, now)?;
        let active: HashSet<&String> = active.iter().collect();
        let waiting: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT email FROM delivery WHERE edition_id = ?1 AND state IN ('pending','deferred','in_doubt')",
            )?;
            stmt.query_map(params![edition_id], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut skipped = 0;
        for email in waiting.iter().filter(|e| !active.contains(e)) {
            skipped += tx.execute(
                "UPDATE delivery SET state = 'skipped', reply = 'no longer subscribed', updated_at = ?3 WHERE edition_id = ?1 AND email = ?2",
                params![edition_id, email, unix(now)],
            )?;
        }
        tx.commit()?;
        Ok((new.len(), skipped))
    }

    /// Addresses to attempt in this run, in the order they were added, with the number
    /// of attempts each has had.
    pub fn work(&self, edition_id: &str, include_in_doubt: bool) -> Result<Vec<(String, u32)>> {
        let mut stmt = self.conn.prepare(
            "SELECT email, attempts FROM delivery WHERE edition_id = ?1 AND (state IN ('pending','deferred') OR (?2 AND state = 'in_doubt')) ORDER BY rowid",
        )?;
        let rows = stmt.query_map(params![edition_id, include_in_doubt], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn counts(&self, edition_id: &str) -> Result<BTreeMap<State, usize>> {
        let mut counts: BTreeMap<State, usize> = State::ALL.into_iter().map(|s| (s, 0)).collect();
        let mut stmt = self
            .conn
            .prepare("SELECT state, COUNT(*) FROM delivery WHERE edition_id = ?1 GROUP BY state")?;
        let rows = stmt.query_map(params![edition_id], |r| {
            Ok((State::parse(&r.get::<_, String>(0)?)?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (state, n) = row?;
            counts.insert(state, usize::try_from(n).unwrap_or(0));
        }
        Ok(counts)
    }

    pub fn rows(&self, edition_id: &str, states: &[State]) -> Result<Vec<Row>> {
        let mut stmt = self.conn.prepare(
            "SELECT email, state, attempts, code, reply, message_id FROM delivery WHERE edition_id = ?1 ORDER BY rowid",
        )?;
        let rows = stmt.query_map(params![edition_id], |r| {
            Ok(Row {
                email: r.get(0)?,
                state: State::parse(&r.get::<_, String>(1)?)?,
                attempts: r.get(2)?,
                code: r.get(3)?,
                reply: r.get(4)?,
                message_id: r.get(5)?,
            })
        })?;
        let mut out = Vec::new();
        for row in rows {
            let row = row?;
            if states.contains(&row.state) {
                out.push(row);
            }
        }
        Ok(out)
    }

    /// Marks the edition complete when no one is left to try (failed and skipped rows are
    /// final). Returns whether it is complete.
    pub fn complete_if_done(&mut self, edition_id: &str, now: SystemTime) -> Result<bool> {
        let open: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM delivery WHERE edition_id = ?1 AND state IN ('pending','attempting','deferred','in_doubt')",
            params![edition_id],
            |r| r.get(0),
        )?;
        if open == 0 {
            self.conn.execute(
                "UPDATE edition SET completed_at = ?2 WHERE id = ?1 AND completed_at IS NULL",
                params![edition_id, unix(now)],
            )?;
        }
        Ok(open == 0)
    }

    /// Records an unsubscribe durably (committed before this returns).
    pub fn record_unsubscribe(&mut self, email: &str, source: &str, now: SystemTime) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO unsubscribed (email, source, at) VALUES (?1, ?2, ?3)",
            params![email, source, unix(now)],
        )?;
        tx.execute(
            "INSERT INTO list_change (email, action, at) VALUES (?1, 'unsubscribe', ?2)",
            params![email, unix(now)],
        )?;
        tx.commit().context("cannot record the unsubscribe")
    }

    /// Records a (re-)subscription durably.
    pub fn record_subscribe(
        &mut self,
        email: &str,
        name: Option<&str>,
        now: SystemTime,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM unsubscribed WHERE email = ?1", params![email])?;
        tx.execute(
            "INSERT INTO list_change (email, action, name, at) VALUES (?1, 'subscribe', ?2, ?3)",
            params![email, name, unix(now)],
        )?;
        tx.commit().context("cannot record the subscription")
    }

    pub fn unsubscribed(&self) -> Result<HashSet<String>> {
        let mut stmt = self.conn.prepare("SELECT email FROM unsubscribed")?;
        let set = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(set)
    }

    pub fn pending_list_changes(&self) -> Result<Vec<ListChange>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, email, action, name FROM list_change WHERE applied_at IS NULL ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ListChange {
                id: r.get(0)?,
                email: r.get(1)?,
                subscribe: r.get::<_, String>(2)? == "subscribe",
                name: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn mark_applied(&mut self, ids: &[i64], now: SystemTime) -> Result<()> {
        let tx = self.conn.transaction()?;
        for id in ids {
            tx.execute(
                "UPDATE list_change SET applied_at = ?2 WHERE id = ?1",
                params![id, unix(now)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Addresses no edition may go to: bounced (suppressed) or unsubscribed here, whether
    /// or not the subscriber file says so yet.
    pub fn excluded(&self) -> Result<HashSet<String>> {
        let mut set = self.suppressed()?;
        set.extend(self.unsubscribed()?);
        Ok(set)
    }

    pub fn suppressed(&self) -> Result<HashSet<String>> {
        let mut stmt = self.conn.prepare("SELECT email FROM suppression")?;
        let set = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(set)
    }

    /// Messages sent on `day` (UTC) across all runs, for the daily quota.
    pub fn sent_on(&self, day: NaiveDate) -> Result<u64> {
        let n: Option<i64> = self
            .conn
            .query_row(
                "SELECT sent FROM daily_count WHERE day = ?1",
                params![day.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(n.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
    }
}

fn edition_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EditionRow> {
    let date: String = r.get(1)?;
    Ok(EditionRow {
        id: r.get(0)?,
        date: date.parse().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
        })?,
        completed: r.get(2)?,
    })
}

fn version(conn: &Connection) -> Result<usize> {
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    Ok(usize::try_from(v).unwrap_or(usize::MAX))
}

fn refuse_newer(version: usize) -> Result<usize> {
    if version > SCHEMA_VERSION {
        bail!(
            "its schema version is {version}, newer than this newsletter knows ({SCHEMA_VERSION}): \
             a newer release wrote it; use that release or a later one"
        );
    }
    Ok(version)
}

/// Brings the schema to `SCHEMA_VERSION`, one migration per transaction; refuses a
/// database newer than this binary.
fn migrate(conn: &Connection) -> Result<()> {
    let from = refuse_newer(version(conn)?)?;
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(from) {
        let tx =
            rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        // Another process may have migrated meanwhile.
        if version(&tx)? > n {
            continue;
        }
        tx.execute_batch(sql)
            .with_context(|| format!("migrating the schema to version {}", n + 1))?;
        tx.pragma_update(None, "user_version", n + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// An error opening the state database, with what to do about a damaged file.
fn explain(e: anyhow::Error, path: &Path) -> anyhow::Error {
    let damaged = e.chain().any(|c| {
        c.downcast_ref::<rusqlite::Error>().is_some_and(|r| {
            matches!(
                r.sqlite_error_code(),
                Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
            )
        })
    });
    if damaged {
        return e.context(format!(
            "the state database {} is damaged: restore it from a backup, or move it aside \
             (with its -wal and -shm files) to start an empty one, which no longer knows \
             which editions went out or who bounced",
            path.display()
        ));
    }
    e.context(format!("cannot use the state database {}", path.display()))
}

fn insert_pending(
    tx: &Transaction<'_>,
    edition_id: &str,
    recipients: &[String],
    now: SystemTime,
) -> Result<()> {
    let mut stmt = tx.prepare(
        "INSERT OR IGNORE INTO delivery (edition_id, email, state, updated_at) VALUES (?1, ?2, 'pending', ?3)",
    )?;
    for email in recipients {
        stmt.execute(params![edition_id, email, unix(now)])?;
    }
    Ok(())
}

/// Adds `sent` messages to today's count (UTC), for the daily quota: once per batch.
pub(crate) fn count_sent(
    tx: &Transaction<'_>,
    sent: usize,
    now: SystemTime,
) -> rusqlite::Result<()> {
    if sent == 0 {
        return Ok(());
    }
    let day = chrono::DateTime::<chrono::Utc>::from(now)
        .date_naive()
        .to_string();
    tx.prepare_cached(
        "INSERT INTO daily_count (day, sent) VALUES (?1, ?2) ON CONFLICT(day) DO UPDATE SET sent = sent + ?2",
    )?
    .execute(params![day, i64::try_from(sent).unwrap_or(i64::MAX)])?;
    Ok(())
}

/// The delivery state machine: each change applies only from the states listed, so a
/// recorded success (or a final failure) can never be undone by a late or repeated change.
const TO_ATTEMPTING: &str = "
    UPDATE delivery SET state = 'attempting', message_id = ?3, updated_at = ?4
    WHERE edition_id = ?1 AND email = ?2 AND state IN ('pending', 'deferred', 'in_doubt')
      AND NOT EXISTS (SELECT 1 FROM unsubscribed u WHERE u.email = delivery.email)";
const TO_SKIPPED: &str = "
    UPDATE delivery SET state = 'skipped', reply = 'unsubscribed during the send', updated_at = ?3
    WHERE edition_id = ?1 AND email = ?2 AND state IN ('pending', 'deferred', 'in_doubt')
      AND EXISTS (SELECT 1 FROM unsubscribed u WHERE u.email = delivery.email)";
const TO_SENT: &str = "
    UPDATE delivery SET state = 'sent', attempts = attempts + 1, code = 250, reply = ?3,
        next_try = NULL, updated_at = ?4
    WHERE edition_id = ?1 AND email = ?2 AND state = 'attempting'";
const TO_DEFERRED: &str = "
    UPDATE delivery SET state = 'deferred', attempts = attempts + 1, code = ?3, reply = ?4,
        next_try = ?5, updated_at = ?6
    WHERE edition_id = ?1 AND email = ?2 AND state IN ('pending', 'attempting', 'deferred')";
const TO_FAILED: &str = "
    UPDATE delivery SET state = 'failed', attempts = attempts + 1, code = ?3, reply = ?4,
        updated_at = ?5
    WHERE edition_id = ?1 AND email = ?2
      AND state IN ('pending', 'attempting', 'deferred', 'in_doubt')";
const SUPPRESS: &str = "
    INSERT OR REPLACE INTO suppression (email, reason, at) VALUES (?1, ?2, ?3)";
const TO_RELEASED: &str = "
    UPDATE delivery SET state = 'pending', code = ?3, reply = ?4, updated_at = ?5
    WHERE edition_id = ?1 AND email = ?2 AND state IN ('pending', 'attempting', 'deferred')";
const TO_IN_DOUBT: &str = "
    UPDATE delivery SET state = 'in_doubt', attempts = attempts + 1, reply = ?3, updated_at = ?4
    WHERE edition_id = ?1 AND email = ?2 AND state = 'attempting'";

/// Applies one change inside the writer's transaction (statements are prepared once per
/// connection and cached: this runs for every message). Returns whether it applied; an
/// `Attempting` that does not apply (unsubscribed meanwhile, or not waiting) means the
/// message must not be sent.
pub(crate) fn apply(
    tx: &Transaction<'_>,
    edition_id: &str,
    email: &str,
    change: &Change,
    now: SystemTime,
) -> rusqlite::Result<bool> {
    let now_s = unix(now);
    let n = match change {
        Change::Attempting { message_id } => {
            let n = tx
                .prepare_cached(TO_ATTEMPTING)?
                .execute(params![edition_id, email, message_id, now_s])?;
            if n == 0 {
                // Unsubscribed meanwhile (serve and the CLI commit that before answering).
                tx.prepare_cached(TO_SKIPPED)?
                    .execute(params![edition_id, email, now_s])?;
            }
            n
        }
        Change::Sent { reply } => tx
            .prepare_cached(TO_SENT)?
            .execute(params![edition_id, email, reply, now_s])?,
        Change::Deferred {
            code,
            reply,
            next_try,
        } => tx.prepare_cached(TO_DEFERRED)?.execute(params![
            edition_id,
            email,
            code,
            reply,
            unix(*next_try),
            now_s
        ])?,
        Change::Failed {
            code,
            reply,
            suppress,
        } => {
            let n = tx
                .prepare_cached(TO_FAILED)?
                .execute(params![edition_id, email, code, reply, now_s])?;
            if *suppress && n > 0 {
                tx.prepare_cached(SUPPRESS)?
                    .execute(params![email, reply, now_s])?;
            }
            n
        }
        Change::Released { code, reply } => tx
            .prepare_cached(TO_RELEASED)?
            .execute(params![edition_id, email, code, reply, now_s])?,
        Change::InDoubt { reason } => tx
            .prepare_cached(TO_IN_DOUBT)?
            .execute(params![edition_id, email, reason, now_s])?,
    };
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journal with one edition and one pending recipient, `r@example.org`.
    fn journal() -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut j = Journal::open(&dir.path().join("state.db")).expect("open");
        j.connection()
            .execute_batch(
                "INSERT INTO edition (id, date, created_at, frozen) VALUES ('e', '2026-11-27', 0, '{}');
                 INSERT INTO delivery (edition_id, email, state, updated_at) VALUES ('e', 'r@example.org', 'pending', 0);",
            )
            .expect("rows");
        (dir, j)
    }

    fn step(j: &mut Journal, change: &Change) -> bool {
        let tx = j.connection().transaction().expect("tx");
        let applied = apply(&tx, "e", "r@example.org", change, UNIX_EPOCH).expect("apply");
        tx.commit().expect("commit");
        applied
    }

    fn state(j: &mut Journal) -> (String, u32) {
        j.connection()
            .query_row("SELECT state, attempts FROM delivery", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("row")
    }

    fn attempting() -> Change {
        Change::Attempting {
            message_id: "<m@example.org>".into(),
        }
    }

    fn sent() -> Change {
        Change::Sent {
            reply: "250 ok".into(),
        }
    }

    fn deferred() -> Change {
        Change::Deferred {
            code: Some(450),
            reply: "later".into(),
            next_try: UNIX_EPOCH,
        }
    }

    fn failed(suppress: bool) -> Change {
        Change::Failed {
            code: Some(550),
            reply: "5.1.1 unknown".into(),
            suppress,
        }
    }

    fn released() -> Change {
        Change::Released {
            code: Some(421),
            reply: "slow down".into(),
        }
    }

    fn in_doubt() -> Change {
        Change::InDoubt {
            reason: "lost".into(),
        }
    }

    #[test]
    fn a_message_goes_pending_attempting_sent() {
        let (_d, mut j) = journal();
        assert!(step(&mut j, &attempting()));
        assert!(step(&mut j, &sent()));
        assert_eq!(state(&mut j), ("sent".into(), 1));
    }

    #[test]
    fn a_recorded_success_is_never_undone() {
        let (_d, mut j) = journal();
        step(&mut j, &attempting());
        step(&mut j, &sent());
        for late in [
            attempting(),
            sent(),
            deferred(),
            failed(true),
            released(),
            in_doubt(),
        ] {
            assert!(!step(&mut j, &late), "{late:?} applied to a sent row");
        }
        assert_eq!(state(&mut j), ("sent".into(), 1));
        assert_eq!(
            j.suppressed().expect("suppressed").len(),
            0,
            "a late failure does not suppress"
        );
    }

    #[test]
    fn sent_and_in_doubt_need_an_attempt_on_record() {
        let (_d, mut j) = journal();
        assert!(!step(&mut j, &sent()), "sent without attempting");
        assert!(!step(&mut j, &in_doubt()), "in doubt without attempting");
        assert_eq!(state(&mut j), ("pending".into(), 0));
    }

    #[test]
    fn refusals_defer_fail_or_release_and_only_a_failure_with_suppress_suppresses() {
        let (_d, mut j) = journal();
        step(&mut j, &attempting());
        assert!(step(&mut j, &released()));
        assert_eq!(
            state(&mut j),
            ("pending".into(), 0),
            "released: not charged"
        );
        step(&mut j, &attempting());
        assert!(step(&mut j, &deferred()));
        assert_eq!(state(&mut j), ("deferred".into(), 1));
        step(&mut j, &attempting());
        assert!(step(&mut j, &failed(true)));
        assert_eq!(state(&mut j), ("failed".into(), 2));
        assert_eq!(j.suppressed().expect("suppressed").len(), 1);
        for late in [attempting(), sent(), deferred(), released(), in_doubt()] {
            assert!(!step(&mut j, &late), "{late:?} applied to a failed row");
        }
    }

    #[test]
    fn an_in_doubt_row_is_attempted_again_only_when_asked() {
        let (_d, mut j) = journal();
        step(&mut j, &attempting());
        assert!(step(&mut j, &in_doubt()));
        assert_eq!(j.work("e", false).expect("work").len(), 0);
        assert_eq!(j.work("e", true).expect("work").len(), 1);
        assert!(step(&mut j, &attempting()), "resend of an in-doubt row");
        assert!(step(&mut j, &sent()));
    }

    #[test]
    fn an_unsubscribe_during_the_send_skips_the_row() {
        let (_d, mut j) = journal();
        j.record_unsubscribe("r@example.org", "test", UNIX_EPOCH)
            .expect("unsubscribe");
        assert!(!step(&mut j, &attempting()));
        assert_eq!(state(&mut j).0, "skipped");
    }

    #[test]
    fn a_database_newer_than_the_binary_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        Connection::open(&path)
            .and_then(|c| c.pragma_update(None, "user_version", 99))
            .expect("newer");
        let err = Journal::open(&path).err().expect("refused");
        assert!(
            format!("{err:#}").contains("schema version is 99, newer"),
            "{err:#}"
        );
        let err = Journal::open_read_only(&path).err().expect("refused");
        assert!(format!("{err:#}").contains("newer"), "{err:#}");
    }

    #[test]
    fn a_new_database_gets_the_current_version() {
        let (_d, j) = journal();
        assert_eq!(version(&j.conn).expect("version"), SCHEMA_VERSION);
    }
}
