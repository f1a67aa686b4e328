//! The delivery journal: one row per (edition, recipient) and the state machine that moves
//! it. A recipient is durably `attempting` before its DATA and durably `sent` after the
//! server's 250, so after any crash no one is skipped and no recorded success is repeated.
//! Rows left `attempting` by a dead run become `in_doubt`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::SystemTime;

use anyhow::Result;
use chrono::NaiveDate;
use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;

use super::db::{Journal, unix};

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
        /// The recipient of the message before this one on the same connection, when this
        /// step was made before that message's reply came: its content then waits for that
        /// message's `Sent` (and so does that message's final dot), and after a crash this
        /// row goes back to waiting unless that one was sent (`recover_in_flight`).
        after: Option<String>,
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
    /// Not mailed: unsubscribed after the edition was frozen.
    Skipped {
        reason: String,
    },
}

impl State {
    /// The delivery state machine: where `change` takes a row in this state, or `None` when
    /// it does not apply, so a recorded success (or a final failure) is never undone by a
    /// late or repeated change. The send decides with this; the statements below keep the
    /// same rules in their `WHERE` clauses.
    pub(crate) fn after(self, change: &Change) -> Option<State> {
        use State::{Attempting, Deferred, Failed, InDoubt, Pending, Sent, Skipped};
        let waiting = matches!(self, Pending | Deferred | InDoubt);
        match change {
            Change::Attempting { .. } if waiting => Some(Attempting),
            Change::Skipped { .. } if waiting => Some(Skipped),
            Change::Sent { .. } if self == Attempting => Some(Sent),
            Change::InDoubt { .. } if self == Attempting => Some(InDoubt),
            Change::Deferred { .. } if matches!(self, Pending | Attempting | Deferred) => {
                Some(Deferred)
            }
            Change::Released { .. } if matches!(self, Pending | Attempting | Deferred) => {
                Some(Pending)
            }
            Change::Failed { .. } if waiting || self == Attempting => Some(Failed),
            _ => None,
        }
    }
}

impl Journal {
    /// Rows left `attempting` by a run that died: their outcome is unknown, except for a
    /// row made `attempting` before the reply to the message ahead of it on its connection
    /// (`Change::Attempting::after`) when that message was not sent: its content waited
    /// for that `Sent` to be on disk and never left, so it goes back to the state it had.
    /// Returns the rows now in doubt.
    pub fn recover_in_flight(&mut self, now: SystemTime) -> Result<usize> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE delivery SET state = COALESCE(before_state, 'pending'), after_email = NULL, updated_at = ?1 \
             WHERE state = 'attempting' AND after_email IS NOT NULL AND NOT EXISTS \
               (SELECT 1 FROM delivery AS ahead WHERE ahead.edition_id = delivery.edition_id \
                AND ahead.email = delivery.after_email AND ahead.state = 'sent')",
            params![unix(now)],
        )?;
        let n = tx.execute(
            "UPDATE delivery SET state = 'in_doubt', reply = 'the run stopped during this message; its outcome is unknown', updated_at = ?1 WHERE state = 'attempting'",
            params![unix(now)],
        )?;
        tx.commit()?;
        Ok(n)
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

    /// The recipients still to send to, with their attempts so far. With `due_by`, a
    /// deferred recipient whose next try is later is left for a later run.
    pub fn work(
        &self,
        edition_id: &str,
        include_in_doubt: bool,
        due_by: Option<SystemTime>,
    ) -> Result<Vec<(String, u32)>> {
        let mut stmt = self.conn.prepare(
            "SELECT email, attempts FROM delivery WHERE edition_id = ?1 \
             AND (state = 'pending' OR (state = 'deferred' AND (?3 IS NULL OR next_try IS NULL OR next_try <= ?3)) \
                  OR (?2 AND state = 'in_doubt')) ORDER BY rowid",
        )?;
        let due = due_by.map(unix);
        let rows = stmt.query_map(params![edition_id, include_in_doubt, due], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The edition's rows by state. A running send writes a new edition's rows as their
    /// first steps are applied (`sendlog::NewRows`): the recipients it has not reached yet,
    /// by the count recorded when it began, are pending.
    pub fn counts(&self, edition_id: &str) -> Result<BTreeMap<State, usize>> {
        let mut counts: BTreeMap<State, usize> = State::ALL.into_iter().map(|s| (s, 0)).collect();
        let unwritten: i64 = if self.counts_recipients()? {
            self.conn
                .query_row(
                    "SELECT MAX(0, COALESCE(recipients, 0) - (SELECT COUNT(*) FROM delivery WHERE edition_id = ?1)) \
                     FROM edition WHERE id = ?1 AND completed_at IS NULL",
                    params![edition_id],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(0)
        } else {
            0
        };
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
        *counts.entry(State::Pending).or_default() += usize::try_from(unwritten).unwrap_or(0);
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

    /// The rows of an edition that a send may still change, with their states.
    pub(crate) fn waiting(&self, edition_id: &str) -> Result<HashMap<String, State>> {
        let mut stmt = self.conn.prepare(
            "SELECT email, state FROM delivery WHERE edition_id = ?1 AND state IN ('pending','deferred','in_doubt','attempting')",
        )?;
        let rows = stmt.query_map(params![edition_id], |r| {
            Ok((r.get(0)?, State::parse(&r.get::<_, String>(1)?)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
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

pub(super) fn insert_pending<'a>(
    tx: &Transaction<'_>,
    edition_id: &str,
    recipients: impl IntoIterator<Item = &'a String>,
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

/// The UTC day of a moment, the daily quota's unit.
pub(crate) fn utc_day(t: SystemTime) -> NaiveDate {
    chrono::DateTime::<chrono::Utc>::from(t).date_naive()
}

/// Adds `sent` messages to a day's count (UTC), for the daily quota: once per batch.
pub(crate) fn count_sent(
    tx: &Transaction<'_>,
    sent: usize,
    day: NaiveDate,
) -> rusqlite::Result<()> {
    let day = day.to_string();
    tx.prepare_cached(
        "INSERT INTO daily_count (day, sent) VALUES (?1, ?2) ON CONFLICT(day) DO UPDATE SET sent = sent + ?2",
    )?
    .execute(params![day, i64::try_from(sent).unwrap_or(i64::MAX)])?;
    Ok(())
}

/// The delivery state machine: each change applies only from the states listed, so a
/// recorded success (or a final failure) can never be undone by a late or repeated change.
const TO_ATTEMPTING: &str = "
    UPDATE delivery SET state = 'attempting', message_id = ?3, updated_at = ?4,
        after_email = ?5, before_state = state
    WHERE edition_id = ?1 AND email = ?2 AND state IN ('pending', 'deferred', 'in_doubt')";
const TO_SKIPPED: &str = "
    UPDATE delivery SET state = 'skipped', reply = ?3, updated_at = ?4
    WHERE edition_id = ?1 AND email = ?2 AND state IN ('pending', 'deferred', 'in_doubt')";
/// `TO_ATTEMPTING` then `TO_SENT`, in one statement (`attempted_and_sent`).
const TO_ATTEMPTED_AND_SENT: &str = "
    UPDATE delivery SET state = 'sent', message_id = ?3, attempts = attempts + 1, code = 250,
        reply = ?4, next_try = NULL, updated_at = ?5
    WHERE edition_id = ?1 AND email = ?2 AND state IN ('pending', 'deferred', 'in_doubt')";
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

/// `TO_ATTEMPTED_AND_SENT` for a row not written yet: inserted sent (`sendlog::NewRows`).
/// One row from `VALUES`, its edition known to exist: `SQLite` keeps a statement journal for
/// an `INSERT ... SELECT` (it may write several rows), and past its first 64 KiB in a
/// transaction that journal goes to a temporary file, two writes per page the insert
/// touches: a quarter of the database thread's work in a send.
const NEW_SENT: &str = "
    INSERT OR IGNORE INTO delivery
        (edition_id, email, state, attempts, code, reply, message_id, updated_at)
    VALUES (?1, ?2, 'sent', 1, 250, ?4, ?3, ?5)";

/// Whether `edition` has its row (a new edition's is written as its send starts).
pub(crate) fn edition_exists(tx: &Transaction<'_>, edition: &str) -> rusqlite::Result<bool> {
    tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM edition WHERE id = ?1)")?
        .query_row(params![edition], |r| r.get(0))
}

/// A message's `Attempting` and `Sent` applied together, as one statement: half the index
/// updates of the two. A `new` row (not written yet) is inserted sent: one insert, where a
/// pending row written first and updated afterwards cost about twice the B-tree work; its
/// edition must exist (the caller asks `edition_exists` once per batch: the foreign key would
/// refuse the row, and the whole batch with it). Returns whether it applied (not when a new
/// row exists already).
pub(crate) fn attempted_and_sent(
    tx: &Transaction<'_>,
    new: bool,
    edition_id: &str,
    email: &str,
    message_id: &str,
    reply: &str,
    now: SystemTime,
) -> rusqlite::Result<bool> {
    let statement = if new { NEW_SENT } else { TO_ATTEMPTED_AND_SENT };
    let n = tx.prepare_cached(statement)?.execute(params![
        edition_id,
        email,
        message_id,
        reply,
        unix(now)
    ])?;
    Ok(n > 0)
}

/// Applies one change inside a transaction (statements are prepared once per connection
/// and cached: this runs for every message). Returns whether it applied.
pub(crate) fn apply(
    tx: &Transaction<'_>,
    edition_id: &str,
    email: &str,
    change: &Change,
    now: SystemTime,
) -> rusqlite::Result<bool> {
    let now_s = unix(now);
    let n = match change {
        Change::Attempting { message_id, after } => tx
            .prepare_cached(TO_ATTEMPTING)?
            .execute(params![edition_id, email, message_id, now_s, after])?,
        Change::Skipped { reason } => tx
            .prepare_cached(TO_SKIPPED)?
            .execute(params![edition_id, email, reason, now_s])?,
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
    use std::time::UNIX_EPOCH;

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
            after: None,
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
        assert_eq!(j.work("e", false, None).expect("work").len(), 0);
        assert_eq!(j.work("e", true, None).expect("work").len(), 1);
        assert!(step(&mut j, &attempting()), "resend of an in-doubt row");
        assert!(step(&mut j, &sent()));
    }

    #[test]
    fn the_statements_and_the_state_machine_agree_for_every_state_and_change() {
        let skipped = Change::Skipped {
            reason: "unsubscribed".into(),
        };
        let changes = [
            attempting(),
            sent(),
            deferred(),
            failed(false),
            released(),
            in_doubt(),
            skipped,
        ];
        for from in State::ALL {
            for change in &changes {
                let (_d, mut j) = journal();
                j.connection()
                    .execute("UPDATE delivery SET state = ?1", [from.as_str()])
                    .expect("set");
                let applied = step(&mut j, change);
                let expected = from.after(change);
                assert_eq!(applied, expected.is_some(), "{from} + {change:?}");
                let now = state(&mut j).0;
                assert_eq!(
                    now,
                    expected.unwrap_or(from).as_str(),
                    "{from} + {change:?}"
                );
            }
        }
    }

    /// A crash with two rows of one connection `attempting`, the second made so before the
    /// first one's reply: it goes back to the state it had unless the first was sent.
    #[test]
    fn a_row_made_attempting_ahead_of_its_predecessors_reply_is_in_doubt_only_after_a_sent_one() {
        let cases = [
            // (the predecessor's last step, the second row's state before, the states
            // after the recovery, how many rows it put in doubt)
            (None, "pending", ["in_doubt", "pending"], 1),
            (None, "deferred", ["in_doubt", "deferred"], 1),
            (None, "in_doubt", ["in_doubt", "in_doubt"], 1),
            (Some(sent()), "pending", ["sent", "in_doubt"], 1),
            (Some(failed(false)), "deferred", ["failed", "deferred"], 0),
            (Some(in_doubt()), "pending", ["in_doubt", "pending"], 0),
        ];
        for (last, before, expected, doubted) in cases {
            let (_d, mut j) = journal();
            j.connection()
                .execute(
                    "INSERT INTO delivery (edition_id, email, state, updated_at) VALUES ('e', 'next@example.org', ?1, 0)",
                    [before],
                )
                .expect("row");
            let tx = j.connection().transaction().expect("tx");
            let ahead = Change::Attempting {
                message_id: "<n@example.org>".into(),
                after: Some("r@example.org".into()),
            };
            assert!(apply(&tx, "e", "r@example.org", &attempting(), UNIX_EPOCH).expect("apply"));
            assert!(apply(&tx, "e", "next@example.org", &ahead, UNIX_EPOCH).expect("apply"));
            if let Some(last) = &last {
                assert!(apply(&tx, "e", "r@example.org", last, UNIX_EPOCH).expect("apply"));
            }
            tx.commit().expect("commit");

            let in_doubt = j.recover_in_flight(UNIX_EPOCH).expect("recover");
            let states: Vec<String> = ["r@example.org", "next@example.org"]
                .iter()
                .map(|e| {
                    j.connection()
                        .query_row("SELECT state FROM delivery WHERE email = ?1", [e], |r| {
                            r.get(0)
                        })
                        .expect("state")
                })
                .collect();
            assert_eq!(states, expected, "{last:?}, {before}");
            assert_eq!(in_doubt, doubted, "{last:?}, {before}");
        }
    }
}
