//! Sign-ups in the state database: a bounded, expiring record of each unconfirmed sign-up
//! (the only thing kept about an address before its owner confirms), and the queue of
//! confirmation and welcome messages that `serve` sends, each at most once.

use std::time::SystemTime;

use anyhow::{Context, Result};
use rusqlite::{OptionalExtension, params};

use super::db::{Journal, unix};
use super::list::{Joining, subscribe_in};

/// What a sign-up asks for.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub email: String,
    pub name: Option<String>,
    pub tags: Vec<String>,
    /// The page the form was on (its Origin or Referer).
    pub source: Option<String>,
    /// The client's address, when the operator chose to keep it.
    pub ip: Option<String>,
}

/// The limits a sign-up is held to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub per_address_per_day: u64,
    pub max_pending: u64,
    pub expires_at: i64,
}

/// What became of a sign-up request. The reader is told the same in every case, so the
/// answer never says whether an address is on the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// A confirmation message is queued.
    Queued,
    /// This address had its confirmations for the day: nothing is sent.
    AddressLimit,
    /// Too many unconfirmed sign-ups at once: nothing is kept.
    Full,
}

/// An unconfirmed sign-up as recorded.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub name: Option<String>,
    pub tags: Vec<String>,
    pub source: Option<String>,
    pub ip: Option<String>,
    pub requested_at: i64,
}

/// One message of the queue.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub id: i64,
    pub email: String,
    pub bytes: Vec<u8>,
    pub attempts: i64,
}

fn day(now: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(now)
        .date_naive()
        .to_string()
}

impl Journal {
    /// Records a sign-up and queues its confirmation message (`message` is built by the
    /// caller for this request), in one transaction; expired records go first.
    pub(crate) fn request_signup(
        &mut self,
        request: &Request,
        message: &[u8],
        limits: Limits,
        now: SystemTime,
    ) -> Result<Decision> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "DELETE FROM signup_pending WHERE expires_at < ?1",
            params![unix(now)],
        )?;
        let today = day(now);
        let existing: Option<(String, i64)> = tx
            .query_row(
                "SELECT day, sends FROM signup_pending WHERE email = ?1",
                params![request.email],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let sends = match existing {
            Some((d, n)) if d == today => {
                if u64::try_from(n).unwrap_or(u64::MAX) >= limits.per_address_per_day {
                    return Ok(Decision::AddressLimit);
                }
                n + 1
            }
            Some(_) => 1,
            None => {
                let count: i64 =
                    tx.query_row("SELECT count(*) FROM signup_pending", [], |r| r.get(0))?;
                if u64::try_from(count).unwrap_or(u64::MAX) >= limits.max_pending {
                    return Ok(Decision::Full);
                }
                1
            }
        };
        tx.execute(
            "INSERT OR REPLACE INTO signup_pending (email, name, tags, source, ip, requested_at, expires_at, day, sends)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                request.email,
                request.name,
                serde_json::to_string(&request.tags)?,
                request.source,
                request.ip,
                unix(now),
                limits.expires_at,
                today,
                sends
            ],
        )?;
        queue_in(&tx, "confirm", &request.email, message, now)?;
        tx.commit().context("cannot record the sign-up")?;
        Ok(Decision::Queued)
    }

    /// The unconfirmed sign-up of an address, unless it expired.
    pub(crate) fn pending_signup(&self, email: &str, now: SystemTime) -> Result<Option<Pending>> {
        Ok(self
            .conn
            .query_row(
                "SELECT name, tags, source, ip, requested_at FROM signup_pending WHERE email = ?1 AND expires_at >= ?2",
                params![email, unix(now)],
                |r| {
                    let tags: String = r.get(1)?;
                    Ok(Pending {
                        name: r.get(0)?,
                        tags: serde_json::from_str(&tags).unwrap_or_default(),
                        source: r.get(2)?,
                        ip: r.get(3)?,
                        requested_at: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// Confirms a sign-up in one transaction: the pending record goes, the subscription
    /// (with its consent record) waits for the list writer, the welcome message (if any)
    /// is queued. False when there was no pending record (confirmed before, or expired).
    pub(crate) fn confirm_signup(
        &mut self,
        email: &str,
        joining: &Joining,
        welcome: Option<&[u8]>,
        now: SystemTime,
    ) -> Result<bool> {
        let tx = self.conn.transaction()?;
        let removed = tx.execute(
            "DELETE FROM signup_pending WHERE email = ?1 AND expires_at >= ?2",
            params![email, unix(now)],
        )?;
        if removed == 0 {
            return Ok(false);
        }
        subscribe_in(&tx, email, joining, now)?;
        if let Some(bytes) = welcome {
            queue_in(&tx, "welcome", email, bytes, now)?;
        }
        tx.commit().context("cannot record the confirmation")?;
        Ok(true)
    }

    /// Messages of the queue due now, oldest first.
    pub(crate) fn queued(&self, now: SystemTime, limit: usize) -> Result<Vec<Queued>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, email, bytes, attempts FROM outgoing WHERE state = 'pending' AND next_try <= ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(
                params![unix(now), i64::try_from(limit).unwrap_or(100)],
                |r| {
                    Ok(Queued {
                        id: r.get(0)?,
                        email: r.get(1)?,
                        bytes: r.get(2)?,
                        attempts: r.get(3)?,
                    })
                },
            )?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Durable before the message's content leaves: after a crash, it is in doubt, never
    /// sent again.
    pub(crate) fn queued_attempting(&mut self, id: i64, now: SystemTime) -> Result<()> {
        self.conn.execute(
            "UPDATE outgoing SET state = 'attempting', attempts = attempts + 1, updated_at = ?2 WHERE id = ?1 AND state = 'pending'",
            params![id, unix(now)],
        )?;
        Ok(())
    }

    /// The message went (its bytes, which hold a live link, are dropped) or failed for good.
    pub(crate) fn queued_done(
        &mut self,
        id: i64,
        sent: bool,
        reply: &str,
        now: SystemTime,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE outgoing SET state = ?2, reply = ?3, bytes = x'', updated_at = ?4 WHERE id = ?1",
            params![id, if sent { "sent" } else { "failed" }, reply, unix(now)],
        )?;
        if sent {
            super::deliveries::count_sent(&tx, 1, super::deliveries::utc_day(now))?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A temporary failure: tried again at `next_try`.
    pub(crate) fn queued_retry(
        &mut self,
        id: i64,
        next_try: SystemTime,
        reply: &str,
        now: SystemTime,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE outgoing SET state = 'pending', next_try = ?2, reply = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, unix(next_try), reply, unix(now)],
        )?;
        Ok(())
    }

    /// At start: a message that was being sent when the process stopped may have gone; it
    /// is marked in doubt and not sent again (the reader can ask for another).
    pub(crate) fn queued_in_doubt(&mut self, now: SystemTime) -> Result<usize> {
        Ok(self.conn.execute(
            "UPDATE outgoing SET state = 'in_doubt', bytes = x'', updated_at = ?1 WHERE state = 'attempting'",
            params![unix(now)],
        )?)
    }
}

fn queue_in(
    tx: &rusqlite::Transaction<'_>,
    kind: &str,
    email: &str,
    bytes: &[u8],
    now: SystemTime,
) -> Result<()> {
    tx.execute(
        "INSERT INTO outgoing (kind, email, bytes, state, created_at, updated_at) VALUES (?1, ?2, ?3, 'pending', ?4, ?4)",
        params![kind, email, bytes, unix(now)],
    )?;
    Ok(())
}
