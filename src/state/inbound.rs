//! Mail that came back, in the state: every message read (by the hash of its bytes, so none
//! is acted on twice), what it said about whom, and what was done: suppressions,
//! unsubscribes, and the soft bounces counted edition by edition. Per-edition rates come
//! from here.

use std::time::SystemTime;

use anyhow::{Context, Result};
use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;

use super::db::{Journal, unix};

/// One finding to act on, its subscriber and edition already resolved.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    /// hard, soft, sender-side, complaint, unsubscribe, or what was ignored.
    pub kind: &'static str,
    pub email: Option<String>,
    /// Why `email` is `None`: what the report named did not lead to a subscriber.
    pub unmatched: Option<&'static str>,
    pub edition: Option<String>,
    pub status: Option<String>,
    pub diagnostic: String,
}

/// What was done (or, in a dry run, would be done) for one finding.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) enum Action {
    Suppressed,
    /// A soft bounce counted: this many editions in a row so far, of the limit.
    Counted {
        in_a_row: usize,
        limit: usize,
    },
    /// The limit of soft bounces in a row was reached.
    SuppressedAfterSoft {
        limit: usize,
    },
    UnsubscribedAndSuppressed,
    Unsubscribed,
    /// Nothing done, and why.
    Nothing(String),
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Suppressed => f.write_str("suppressed"),
            Action::Counted { in_a_row, limit } => write!(
                f,
                "counted ({in_a_row} edition{} in a row; suppressed at {limit})",
                if *in_a_row == 1 { "" } else { "s" }
            ),
            Action::SuppressedAfterSoft { limit } => {
                write!(f, "suppressed ({limit} editions in a row bounced)")
            }
            Action::UnsubscribedAndSuppressed => f.write_str("unsubscribed and suppressed"),
            Action::Unsubscribed => f.write_str("unsubscribed"),
            Action::Nothing(why) => write!(f, "nothing: {why}"),
        }
    }
}

/// Per-edition figures of mail that came back.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Returns {
    pub sent: usize,
    pub hard: usize,
    pub soft: usize,
    pub complaints: usize,
    pub sender_side: usize,
}

impl Journal {
    /// The edition and address a Message-ID of ours was sent as, from the journal.
    pub(crate) fn delivery_by_message_id(&self, id: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT edition_id, email FROM delivery WHERE message_id = ?1 LIMIT 1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// The most recent edition sent to `email`.
    pub(crate) fn last_edition_sent_to(&self, email: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT d.edition_id FROM delivery d JOIN edition e ON e.id = d.edition_id
                 WHERE d.email = ?1 AND d.state = 'sent' ORDER BY e.created_at DESC, e.id DESC LIMIT 1",
                params![email],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// (edition, address) of every message sent in the `editions` most recent editions:
    /// what a return-path token is matched against.
    pub(crate) fn recent_deliveries(&self, editions: usize) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT d.edition_id, d.email FROM delivery d
             WHERE d.edition_id IN (SELECT id FROM edition ORDER BY created_at DESC, id DESC LIMIT ?1)
               AND d.state IN ('sent', 'in_doubt')",
        )?;
        let rows = stmt.query_map(params![i64::try_from(editions).unwrap_or(i64::MAX)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Acts on the findings of one message, all in one transaction, and records them
    /// with the message's hash; `None` when that message was already acted on. With `dry`
    /// the transaction is rolled back: the actions are what would be done.
    pub(crate) fn act_on(
        &mut self,
        hash: &str,
        findings: &[Finding],
        soft_limit: usize,
        now: SystemTime,
        dry: bool,
    ) -> Result<Option<Vec<Action>>> {
        let tx = self.conn.transaction()?;
        let seen = tx
            .query_row(
                "SELECT 1 FROM inbound WHERE message = ?1 LIMIT 1",
                params![hash],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if seen {
            return Ok(None);
        }
        let mut actions = Vec::with_capacity(findings.len().max(1));
        for (n, f) in findings.iter().enumerate() {
            let action = act(&tx, f, soft_limit, now)?;
            tx.execute(
                "INSERT INTO inbound (message, n, edition_id, email, kind, status, diagnostic, action, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    hash,
                    i64::try_from(n).unwrap_or(i64::MAX),
                    f.edition,
                    f.email,
                    f.kind,
                    f.status,
                    f.diagnostic,
                    action.to_string(),
                    unix(now)
                ],
            )?;
            actions.push(action);
        }
        if findings.is_empty() {
            // Remembered all the same, so it is never read again.
            tx.execute(
                "INSERT INTO inbound (message, n, kind, diagnostic, action, at) VALUES (?1, 0, 'ignored', '', 'nothing', ?2)",
                params![hash, unix(now)],
            )?;
        }
        if dry {
            tx.rollback()?;
        } else {
            tx.commit().context("cannot record what came back")?;
        }
        Ok(Some(actions))
    }

    /// Every edition that was sent to anyone, oldest first.
    pub(crate) fn sent_editions(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare(
            "SELECT e.id FROM edition e WHERE EXISTS (SELECT 1 FROM delivery d WHERE d.edition_id = e.id AND d.state = 'sent')
             ORDER BY e.created_at, e.id",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The most recent edition that sent to anyone, other than `except`.
    pub(crate) fn last_sent_edition(&self, except: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT e.id FROM edition e WHERE e.id <> ?1
                   AND EXISTS (SELECT 1 FROM delivery d WHERE d.edition_id = e.id AND d.state = 'sent')
                 ORDER BY e.created_at DESC, e.id DESC LIMIT 1",
                params![except],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// What came back for one edition.
    pub(crate) fn returns(&self, edition_id: &str) -> Result<Returns> {
        let sent: usize = self.conn.query_row(
            "SELECT COUNT(*) FROM delivery WHERE edition_id = ?1 AND state = 'sent'",
            params![edition_id],
            |r| r.get(0),
        )?;
        let mut r = Returns {
            sent,
            ..Returns::default()
        };
        // A database of an earlier release, opened read-only (by `status`), has no table
        // of what came back: nothing came back that it knows of.
        let has_table: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'inbound')",
            [],
            |row| row.get(0),
        )?;
        if !has_table {
            return Ok(r);
        }
        let mut stmt = self.conn.prepare(
            "SELECT kind, COUNT(DISTINCT email) FROM inbound WHERE edition_id = ?1 AND email IS NOT NULL GROUP BY kind",
        )?;
        let rows = stmt.query_map(params![edition_id], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, usize>(1)?))
        })?;
        for row in rows {
            let (kind, n) = row?;
            match kind.as_str() {
                "hard" => r.hard = n,
                "soft" => r.soft = n,
                "complaint" => r.complaints = n,
                "sender-side" => r.sender_side = n,
                _ => {}
            }
        }
        Ok(r)
    }
}

/// Acts on one finding inside the message's transaction.
fn act(tx: &Transaction<'_>, f: &Finding, soft_limit: usize, now: SystemTime) -> Result<Action> {
    let Some(email) = f.email.as_deref() else {
        return Ok(Action::Nothing(
            f.unmatched
                .unwrap_or("no subscriber of this list is named")
                .into(),
        ));
    };
    let reason = |what: &str| {
        let status = f
            .status
            .as_deref()
            .map(|s| format!(" {s}"))
            .unwrap_or_default();
        let diagnostic = if f.diagnostic.is_empty() {
            String::new()
        } else {
            format!(": {}", f.diagnostic)
        };
        format!("{what}{status}{diagnostic}")
    };
    let action = match f.kind {
        "hard" => {
            suppress(tx, email, &reason("hard bounce"), now)?;
            Action::Suppressed
        }
        "soft" => {
            let in_a_row = soft_in_a_row(tx, email, f.edition.as_deref(), soft_limit)?;
            if in_a_row >= soft_limit {
                suppress(
                    tx,
                    email,
                    &reason(&format!(
                        "soft bounces in {soft_limit} editions in a row, the last"
                    )),
                    now,
                )?;
                Action::SuppressedAfterSoft { limit: soft_limit }
            } else {
                Action::Counted {
                    in_a_row,
                    limit: soft_limit,
                }
            }
        }
        "complaint" => {
            unsubscribe(tx, email, "complaint", now)?;
            suppress(tx, email, &reason("complaint"), now)?;
            Action::UnsubscribedAndSuppressed
        }
        "unsubscribe" => {
            unsubscribe(tx, email, "mail", now)?;
            Action::Unsubscribed
        }
        "sender-side" => Action::Nothing(
            "the sender's problem (authentication, reputation, policy or rate), not the address's"
                .into(),
        ),
        _ => Action::Nothing("it reports no failure: ignored".into()),
    };
    Ok(action)
}

fn suppress(tx: &Transaction<'_>, email: &str, reason: &str, now: SystemTime) -> Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO suppression (email, reason, at) VALUES (?1, ?2, ?3)",
        params![email, reason, unix(now)],
    )?;
    Ok(())
}

/// Unsubscribes once: an address already unsubscribed keeps its first source and date.
fn unsubscribe(tx: &Transaction<'_>, email: &str, source: &str, now: SystemTime) -> Result<()> {
    let already = tx
        .query_row(
            "SELECT 1 FROM unsubscribed WHERE email = ?1",
            params![email],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if already {
        return Ok(());
    }
    super::list::unsubscribe_in(tx, email, source, now)
}

/// How many of the editions most recently sent to `email`, counting back from the newest
/// and this bounce's, bounced soft without a break (this bounce included).
fn soft_in_a_row(
    tx: &Transaction<'_>,
    email: &str,
    this_edition: Option<&str>,
    limit: usize,
) -> Result<usize> {
    let mut stmt = tx.prepare(
        "SELECT d.edition_id,
                EXISTS (SELECT 1 FROM inbound i WHERE i.edition_id = d.edition_id AND i.email = d.email AND i.kind = 'soft')
         FROM delivery d JOIN edition e ON e.id = d.edition_id
         WHERE d.email = ?1 AND d.state IN ('sent', 'in_doubt')
         ORDER BY e.created_at DESC, e.id DESC LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(
            params![email, i64::try_from(limit.max(1)).unwrap_or(i64::MAX)],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)),
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut n = 0;
    for (edition, bounced) in rows {
        if bounced || this_edition == Some(edition.as_str()) {
            n += 1;
        } else {
            break;
        }
    }
    // A bounce for an edition the journal does not know still counts for itself.
    Ok(n.max(1))
}
