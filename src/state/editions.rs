//! Editions: frozen on their first send (articles, date, templates, audience, the feeds
//! read), resumed until done, and the history the next selection starts from.

use std::collections::{BTreeMap, HashSet};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::db::{Journal, from_unix, unix};
use super::deliveries::insert_pending;
use crate::edition::Edition;
use crate::input::articles::Article;

/// One edition as the state database records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditionRow {
    pub id: String,
    pub date: NaiveDate,
    pub completed: bool,
    /// When it was frozen: the start of its delivery.
    pub created: SystemTime,
}

/// An edition frozen as a draft, waiting for approval.
#[derive(Debug, Clone)]
pub struct Draft {
    pub id: String,
    /// The hash of its frozen content, as it is now.
    pub hash: String,
    pub approved_hash: Option<String>,
    /// The content the editors were last sent.
    pub previewed_hash: Option<String>,
    pub created: SystemTime,
}

/// The SHA-256 of an edition's frozen content (its JSON), in hex: what an approval binds.
pub(crate) fn content_hash(json: &str) -> String {
    use sha2::Digest;
    crate::token::hex(&sha2::Sha256::digest(json.as_bytes()))
}

/// The edition still being sent, as frozen.
#[derive(Debug, Clone)]
pub struct Unfinished {
    pub id: String,
    pub frozen: Frozen,
}

/// What an edition needs to be rendered again exactly, whatever happened to the files since.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Frozen {
    pub date: NaiveDate,
    pub articles: Vec<Article>,
    /// Template name → source, as they were when the edition was first sent.
    pub templates: BTreeMap<String, String>,
    /// The strings and date format the templates were given; `None` for editions frozen
    /// before they were kept (English).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<crate::locale::Locale>,
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

impl Journal {
    /// Ids of articles that earlier editions carried.
    pub fn sent_articles(&self) -> Result<HashSet<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT article_id FROM edition_article JOIN edition ON id = edition_id WHERE draft = 0")?;
        let ids = stmt
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }

    /// One edition as frozen, sent or not.
    pub fn frozen_edition(&self, id: &str) -> Result<Option<Unfinished>> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT frozen FROM edition WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?;
        json.map(|json| {
            let frozen: Frozen = serde_json::from_str(&json).with_context(|| {
                format!("the frozen edition {id} in the state database is unreadable")
            })?;
            Ok(Unfinished {
                id: id.to_string(),
                frozen,
            })
        })
        .transpose()
    }

    /// The edition still being sent, if any (at most one: a new one is frozen only when the
    /// previous one is complete).
    pub fn unfinished_edition(&self) -> Result<Option<Unfinished>> {
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT id, frozen FROM edition WHERE completed_at IS NULL AND draft = 0 ORDER BY created_at LIMIT 1",
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
                Ok(Some(Unfinished { id, frozen }))
            }
        }
    }

    /// The most recent edition, complete or not.
    pub fn latest_edition(&self) -> Result<Option<EditionRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, date, completed_at IS NOT NULL, created_at FROM edition ORDER BY created_at DESC, id DESC LIMIT 1",
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
                "SELECT id, date, completed_at IS NOT NULL, created_at FROM edition WHERE id = ?1",
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

    /// The edition waiting for approval, if any.
    pub fn draft(&self) -> Result<Option<Draft>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, frozen, approved_hash, previewed_hash, created_at FROM edition WHERE draft = 1 LIMIT 1",
                [],
                |r| {
                    Ok(Draft {
                        id: r.get(0)?,
                        hash: content_hash(&r.get::<_, String>(1)?),
                        approved_hash: r.get(2)?,
                        previewed_hash: r.get(3)?,
                        created: from_unix(r.get(4)?),
                    })
                },
            )
            .optional()?)
    }

    /// Removes a new edition frozen while its messages rendered and the relay was checked,
    /// when either failed: nothing of it went out, and the next run plans again from the
    /// files (a template fixed in between is used). Refused once it has recipients.
    pub fn unfreeze(&mut self, id: &str) -> Result<()> {
        let tx = self.conn.transaction()?;
        let rows: i64 = tx.query_row(
            "SELECT count(*) FROM delivery WHERE edition_id = ?1",
            params![id],
            |r| r.get(0),
        )?;
        if rows > 0 {
            bail!("edition {id} has recipients recorded");
        }
        tx.execute(
            "DELETE FROM edition_article WHERE edition_id = ?1",
            params![id],
        )?;
        tx.execute(
            "DELETE FROM edition WHERE id = ?1 AND completed_at IS NULL",
            params![id],
        )?;
        tx.commit().context("cannot remove the edition")
    }

    /// Freezes `edition` as a draft, in place of `replacing` (the draft it supersedes,
    /// with its rows).
    pub fn freeze_draft(
        &mut self,
        edition: &Edition,
        frozen: &Frozen,
        recipients: &[String],
        replacing: Option<&str>,
        now: SystemTime,
    ) -> Result<()> {
        if let Some(old) = replacing {
            let tx = self.conn.transaction()?;
            for sql in [
                "DELETE FROM delivery WHERE edition_id = ?1",
                "DELETE FROM edition_article WHERE edition_id = ?1",
                "DELETE FROM edition WHERE id = ?1 AND draft = 1",
            ] {
                tx.execute(sql, params![old])?;
            }
            tx.commit().context("cannot replace the draft")?;
        }
        self.freeze(edition, frozen, recipients, now)?;
        self.conn.execute(
            "UPDATE edition SET draft = 1 WHERE id = ?1",
            params![edition.id],
        )?;
        Ok(())
    }

    /// Records that the editors were sent the draft with this content.
    pub fn mark_previewed(&mut self, id: &str, hash: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE edition SET previewed_hash = ?2 WHERE id = ?1",
            params![id, hash],
        )?;
        Ok(())
    }

    /// Approves the draft `id` as its content is now; returns that content's hash.
    pub fn approve(&mut self, id: &str, now: SystemTime) -> Result<String> {
        let row: Option<(String, bool)> = self
            .conn
            .query_row(
                "SELECT frozen, draft FROM edition WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((json, draft)) = row else {
            bail!("there is no edition {id} (`newsletter status` lists them)");
        };
        if !draft {
            bail!("edition {id} is not waiting for approval: it is being sent or was sent");
        }
        let hash = content_hash(&json);
        self.conn.execute(
            "UPDATE edition SET approved_hash = ?2, approved_at = ?3 WHERE id = ?1",
            params![id, hash, unix(now)],
        )?;
        Ok(hash)
    }

    /// The draft goes out: from now on it is an edition like any other.
    pub fn release_draft(&mut self, id: &str) -> Result<()> {
        self.conn
            .execute("UPDATE edition SET draft = 0 WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// Marks the edition complete when no one is left to try (failed and skipped rows are
    /// final). Returns whether it is complete.
    pub fn complete_if_done(&mut self, edition_id: &str, now: SystemTime) -> Result<bool> {
        complete_if_done(&self.conn, edition_id, now)
    }
}

/// Marks the edition complete (once) when none of its rows waits any more; whether it is.
/// Within the caller's transaction, if any: the send's last steps and the completion are
/// one commit, one sync. An edition without rows is not done: its rows are written during
/// its first send, and a run that stopped before they were (a full disk) leaves them to
/// the next.
pub(crate) fn complete_if_done(
    conn: &rusqlite::Connection,
    edition_id: &str,
    now: SystemTime,
) -> Result<bool> {
    let (open, rows): (i64, i64) = conn.query_row(
        "SELECT COALESCE(SUM(state IN ('pending','attempting','deferred','in_doubt')), 0), COUNT(*) \
         FROM delivery WHERE edition_id = ?1",
        params![edition_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let done = open == 0 && rows > 0;
    if done {
        conn.execute(
            "UPDATE edition SET completed_at = ?2 WHERE id = ?1 AND completed_at IS NULL",
            params![edition_id, unix(now)],
        )?;
    }
    Ok(done)
}

fn edition_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EditionRow> {
    let date: String = r.get(1)?;
    Ok(EditionRow {
        id: r.get(0)?,
        date: date.parse().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
        })?,
        completed: r.get(2)?,
        created: from_unix(r.get(3)?),
    })
}
