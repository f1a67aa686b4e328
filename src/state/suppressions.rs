//! The suppression list in the state database: addresses no edition goes to, with the
//! reply that put them there; lifted by hand, or all at once for those that an older
//! release suppressed on replies about the sender rather than the mailbox.

use std::time::SystemTime;

use anyhow::{Context, Result};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::mail::reply::{Stage, Verdict, classify};
use crate::state::{Journal, unix};

/// One suppressed address.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Suppression {
    pub email: String,
    pub reason: String,
    /// When it was suppressed (seconds since 1970, UTC).
    pub at: i64,
}

impl Suppression {
    /// The day it was suppressed, e.g. 2026-11-27.
    pub(crate) fn day(&self) -> String {
        chrono::DateTime::from_timestamp(self.at, 0)
            .map(|t| t.date_naive().to_string())
            .unwrap_or_default()
    }
}

/// What `lift_sender_side` gave back.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Restored {
    /// Suppressions removed.
    pub suppressions: Vec<Suppression>,
    /// (edition, address, reply) of failed deliveries made pending again.
    pub deliveries: Vec<(String, String, String)>,
    /// Editions reopened so that the next send finishes them.
    pub editions: Vec<String>,
}

const COLUMNS: &str = "SELECT email, reason, at FROM suppression";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Suppression> {
    Ok(Suppression {
        email: r.get(0)?,
        reason: r.get(1)?,
        at: r.get(2)?,
    })
}

/// Every suppression, oldest first (also inside a transaction: `Transaction` derefs to
/// `Connection`).
fn all(conn: &rusqlite::Connection) -> rusqlite::Result<Vec<Suppression>> {
    conn.prepare(&format!("{COLUMNS} ORDER BY at, email"))?
        .query_map([], row)?
        .collect()
}

pub(crate) fn list(journal: &mut Journal) -> Result<Vec<Suppression>> {
    Ok(all(journal.connection())?)
}

pub(crate) fn find(journal: &mut Journal, email: &str) -> Result<Option<Suppression>> {
    Ok(journal
        .connection()
        .query_row(&format!("{COLUMNS} WHERE email = ?1"), params![email], row)
        .optional()?)
}

/// Suppresses each address that is not suppressed yet, in one transaction; returns how
/// many were added.
pub(crate) fn add(
    journal: &mut Journal,
    entries: &[(String, String)],
    now: SystemTime,
) -> Result<usize> {
    let tx = journal.conn.transaction()?;
    let mut added = 0;
    for (email, reason) in entries {
        added += tx.execute(
            "INSERT OR IGNORE INTO suppression (email, reason, at) VALUES (?1, ?2, ?3)",
            params![email, reason, unix(now)],
        )?;
    }
    tx.commit()?;
    Ok(added)
}

/// Lifts the suppression of each address; returns those that were suppressed.
pub(crate) fn lift(journal: &mut Journal, emails: &[String]) -> Result<Vec<String>> {
    let tx = journal.connection().transaction()?;
    let mut lifted = Vec::new();
    for email in emails {
        if tx.execute("DELETE FROM suppression WHERE email = ?1", params![email])? > 0 {
            lifted.push(email.clone());
        }
    }
    tx.commit().context("cannot lift the suppressions")?;
    Ok(lifted)
}

pub(crate) fn lift_all(journal: &mut Journal) -> Result<Vec<String>> {
    let all: Vec<String> = list(journal)?.into_iter().map(|s| s.email).collect();
    lift(journal, &all)
}

/// The reply code in a recorded reply: lettre renders it as "permanent error (550): …";
/// a relay's own text starts with it.
fn code_in(text: &str) -> Option<u16> {
    let from_lettre = text.find("error (").and_then(|i| text.get(i + 7..i + 10));
    let leading = text
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .get(..3);
    from_lettre
        .into_iter()
        .chain(leading)
        .find_map(|d| d.parse().ok())
        .filter(|c| (400..600).contains(c))
}

/// True when a recorded reply was about the sender or the relay's load, not the mailbox:
/// such a reply should never have failed or suppressed anyone.
fn about_the_sender(code: Option<u16>, reply: &str) -> bool {
    let Some(code) = code.or_else(|| code_in(reply)) else {
        return false;
    };
    matches!(
        classify(Stage::Rcpt, code, reply),
        Verdict::SenderRefused | Verdict::Throttled
    )
}

/// Undoes what an older release recorded for replies about the sender (5.7.x policy,
/// 5.3.x system, rate limits, refusals of MAIL FROM, DATA or the content): their
/// suppressions are lifted, their failed deliveries become pending again (attempts reset)
/// and their editions are reopened, so the next send delivers them.
pub(crate) fn lift_sender_side(journal: &mut Journal, now: SystemTime) -> Result<Restored> {
    let mut restored = Restored::default();
    let tx = journal.connection().transaction()?;
    {
        for s in all(&tx)?
            .into_iter()
            .filter(|s| about_the_sender(None, &s.reason))
        {
            tx.execute("DELETE FROM suppression WHERE email = ?1", params![s.email])?;
            restored.suppressions.push(s);
        }
        let mut stmt = tx.prepare(
            "SELECT edition_id, email, code, COALESCE(reply, '') FROM delivery WHERE state = 'failed' ORDER BY edition_id, rowid",
        )?;
        let failed = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<u16>>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (edition, email, code, reply) in failed {
            if !about_the_sender(code, &reply) {
                continue;
            }
            tx.execute(
                "UPDATE delivery SET state = 'pending', attempts = 0, next_try = NULL, updated_at = ?3 WHERE edition_id = ?1 AND email = ?2",
                params![edition, email, unix(now)],
            )?;
            if !restored.editions.contains(&edition) {
                tx.execute(
                    "UPDATE edition SET completed_at = NULL WHERE id = ?1",
                    params![edition],
                )?;
                restored.editions.push(edition.clone());
            }
            restored.deliveries.push((edition, email, reply));
        }
    }
    tx.commit().context("cannot restore the recipients")?;
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_recorded_by_older_releases_are_read_with_their_code() {
        assert_eq!(
            code_in("permanent error (550): 5.7.26 Unauthenticated"),
            Some(550)
        );
        assert_eq!(
            code_in("gave up after 2 attempts: transient error (450): 4.7.1 Error: too much mail"),
            Some(450)
        );
        assert_eq!(code_in("550 5.1.1 user unknown"), Some(550));
        assert_eq!(code_in("cannot build the message"), None);
    }

    #[test]
    fn only_sender_side_replies_are_undone() {
        assert!(about_the_sender(
            None,
            "permanent error (550): 5.7.26 Unauthenticated email is not accepted"
        ));
        assert!(about_the_sender(
            None,
            "permanent error (500): 5.3.0 Internal error"
        ));
        assert!(about_the_sender(
            Some(450),
            "gave up after 2 attempts: transient error (450): 4.7.1 Error: too much mail from 127.0.0.1"
        ));
        assert!(about_the_sender(
            Some(554),
            "permanent error (554): 5.7.1 Message rejected"
        ));
        assert!(!about_the_sender(
            None,
            "permanent error (550): 5.1.1 user unknown"
        ));
        assert!(!about_the_sender(
            Some(550),
            "permanent error (550): mailbox reader2@ refused"
        ));
        assert!(!about_the_sender(
            None,
            "cannot build the message: invalid envelope"
        ));
    }
}
