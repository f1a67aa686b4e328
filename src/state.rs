//! The state database (SQLite): which editions went out and which articles they carried,
//! so that the next edition picks only articles not sent before.

use std::collections::HashSet;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags, params};

use crate::edition::Edition;

pub struct State {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS edition (
    id          TEXT PRIMARY KEY,
    date        TEXT NOT NULL,
    sent_at     INTEGER NOT NULL,
    recipients  INTEGER NOT NULL,
    failed      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS edition_article (
    edition_id  TEXT NOT NULL REFERENCES edition(id),
    article_id  TEXT NOT NULL,
    PRIMARY KEY (edition_id, article_id)
);
";

impl State {
    /// Opens (creating if needed) the database for writing. WAL with `synchronous=FULL`:
    /// a commit that returned is on disk.
    pub fn open(path: &Path) -> Result<State> {
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open the state database {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| conn.pragma_update(None, "synchronous", "FULL"))
            .and_then(|()| conn.execute_batch(SCHEMA))
            .with_context(|| format!("cannot set up the state database {}", path.display()))?;
        Ok(State { conn })
    }

    /// Ids of articles that earlier editions carried. A database that does not exist yet
    /// means none; reading never creates it (check and preview leave no files behind).
    pub fn sent_articles(path: &Path) -> Result<HashSet<String>> {
        if !path.exists() {
            return Ok(HashSet::new());
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("cannot open the state database {}", path.display()))?;
        let read = || -> rusqlite::Result<HashSet<String>> {
            let mut stmt = conn.prepare("SELECT article_id FROM edition_article")?;
            stmt.query_map([], |row| row.get(0))?.collect()
        };
        read().with_context(|| format!("cannot read the state database {}", path.display()))
    }

    /// Records that `edition` went out, with its articles, in one transaction.
    pub fn record_edition(
        &mut self,
        edition: &Edition,
        recipients: usize,
        failed: usize,
        at: SystemTime,
    ) -> Result<()> {
        let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO edition (id, date, sent_at, recipients, failed) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![edition.id, edition.date.to_string(), secs as i64, recipients as i64, failed as i64],
        )?;
        for a in &edition.articles {
            tx.execute(
                "INSERT OR IGNORE INTO edition_article (edition_id, article_id) VALUES (?1, ?2)",
                params![edition.id, a.id],
            )?;
        }
        tx.commit()
            .context("cannot record the edition in the state database")
    }
}
