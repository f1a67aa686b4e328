//! Changes to the list, durable the moment they are asked for: unsubscribes (honoured by a
//! send already running), subscribes, and the edits still to be written into
//! `subscribers.toml`; with the suppressions, the addresses no edition may go to.

use std::collections::HashSet;
use std::time::SystemTime;

use anyhow::{Context, Result};
use rusqlite::params;

use super::db::{Journal, unix};

/// An edit of the subscriber list waiting to be written into the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListChange {
    pub id: i64,
    pub email: String,
    pub subscribe: bool,
    pub name: Option<String>,
    /// The reader's chosen audiences (a sign-up or the preference page); `None` leaves
    /// the entry's tags as they are.
    pub tags: Option<Vec<String>>,
    /// How the reader consented (a sign-up's confirmation), as a JSON object of strings.
    pub consent: Option<String>,
}

/// A subscription as a sign-up confirms it: its audiences and its consent record.
#[derive(Debug, Clone, Default)]
pub(crate) struct Joining {
    pub name: Option<String>,
    pub tags: Option<Vec<String>>,
    pub consent: Option<String>,
}

/// Records a subscription inside a transaction (see `record_subscribe`).
pub(crate) fn subscribe_in(
    tx: &rusqlite::Transaction<'_>,
    email: &str,
    joining: &Joining,
    now: SystemTime,
) -> Result<()> {
    tx.execute("DELETE FROM unsubscribed WHERE email = ?1", params![email])?;
    let tags = joining
        .tags
        .as_ref()
        .map(serde_json::to_string)
        .transpose()?;
    tx.execute(
        "INSERT INTO list_change (email, action, name, at, tags, consent) VALUES (?1, 'subscribe', ?2, ?3, ?4, ?5)",
        params![email, joining.name, unix(now), tags, joining.consent],
    )?;
    Ok(())
}

/// Records an unsubscribe inside a transaction: the address is excluded at once, and the
/// edit of the subscriber file waits in `list_change` for the next writer. The source
/// (one-click, mail, complaint, …) is the latest one.
pub(crate) fn unsubscribe_in(
    tx: &rusqlite::Transaction<'_>,
    email: &str,
    source: &str,
    now: SystemTime,
) -> Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO unsubscribed (email, source, at) VALUES (?1, ?2, ?3)",
        params![email, source, unix(now)],
    )?;
    tx.execute(
        "INSERT INTO list_change (email, action, at) VALUES (?1, 'unsubscribe', ?2)",
        params![email, unix(now)],
    )?;
    Ok(())
}

impl Journal {
    /// Records an unsubscribe durably (committed before this returns).
    pub fn record_unsubscribe(&mut self, email: &str, source: &str, now: SystemTime) -> Result<()> {
        let tx = self.conn.transaction()?;
        unsubscribe_in(&tx, email, source, now)?;
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
        let joining = Joining {
            name: name.map(str::to_string),
            ..Joining::default()
        };
        subscribe_in(&tx, email, &joining, now)?;
        tx.commit().context("cannot record the subscription")
    }

    /// Records a (re-)subscription with its tags or consent durably.
    pub(crate) fn record_joining(
        &mut self,
        email: &str,
        joining: &Joining,
        now: SystemTime,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        subscribe_in(&tx, email, joining, now)?;
        tx.commit().context("cannot record the subscription")
    }

    pub fn unsubscribed(&self) -> Result<HashSet<String>> {
        self.emails("SELECT email FROM unsubscribed")
    }

    pub fn pending_list_changes(&self) -> Result<Vec<ListChange>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, email, action, name, tags, consent FROM list_change WHERE applied_at IS NULL ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            let tags: Option<String> = r.get(4)?;
            Ok(ListChange {
                id: r.get(0)?,
                email: r.get(1)?,
                subscribe: r.get::<_, String>(2)? == "subscribe",
                name: r.get(3)?,
                tags: tags.and_then(|t| serde_json::from_str(&t).ok()),
                consent: r.get(5)?,
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
        self.emails("SELECT email FROM suppression")
    }

    /// The addresses a one-column query returns.
    fn emails(&self, sql: &str) -> Result<HashSet<String>> {
        let mut stmt = self.conn.prepare(sql)?;
        let set = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(set)
    }
}
