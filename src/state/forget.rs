//! What the state database keeps about one address, and its erasure: every row naming it
//! is deleted (deliveries, suppression, unsubscribe, list changes, bounce findings), only a
//! keyed hash stays so that the address is never mailed again, and the file is rewritten
//! so that no copy of the deleted rows stays in free pages or in the write-ahead log.

use std::collections::HashSet;
use std::time::SystemTime;

use anyhow::{Context, Result};
use rusqlite::params;
use serde_json::{Value, json};

use super::{Journal, unix};

/// The spellings of one address the tables may hold: the normalized form (A-label domain,
/// NFC) and, when different, its ASCII lower case, and the domain in Unicode.
pub(crate) struct Spellings(pub Vec<String>);

impl Spellings {
    /// `email` is one of the `n` spellings (`?1` … `?n`), in any ASCII case.
    fn equals_sql(n: usize) -> String {
        (1..=n)
            .map(|i| format!("lower(email) = lower(?{i})"))
            .collect::<Vec<_>>()
            .join(" OR ")
    }

    fn contains_sql(column: &str, n: usize) -> String {
        (1..=n)
            .map(|i| format!("instr(lower({column}), lower(?{i})) > 0"))
            .collect::<Vec<_>>()
            .join(" OR ")
    }
}

/// How many rows of each table named the address.
#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct Erased {
    pub deliveries: usize,
    pub suppressions: usize,
    pub unsubscribes: usize,
    pub list_changes: usize,
    pub bounce_findings: usize,
    /// Unconfirmed sign-ups and sign-up messages.
    pub signups: usize,
}

impl Journal {
    /// Deletes every row about the address and records its hash, in one transaction; then
    /// rewrites the database (VACUUM) and empties the write-ahead log, so that the deleted
    /// rows survive nowhere in the files.
    pub(crate) fn forget(
        &mut self,
        spellings: &Spellings,
        hash: &str,
        now: SystemTime,
    ) -> Result<Erased> {
        // Deleted cells are overwritten with zeros, not just unlinked.
        self.conn.pragma_update(None, "secure_delete", "ON")?;
        let forms = &spellings.0;
        let n = forms.len();
        let exact = Spellings::equals_sql(n);
        let tx = self.conn.transaction()?;
        let params = rusqlite::params_from_iter(forms.iter());
        let mut erased = Erased {
            deliveries: tx.execute(
                &format!("DELETE FROM delivery WHERE {exact}"),
                params.clone(),
            )?,
            suppressions: tx.execute(
                &format!("DELETE FROM suppression WHERE {exact}"),
                params.clone(),
            )?,
            unsubscribes: tx.execute(
                &format!("DELETE FROM unsubscribed WHERE {exact}"),
                params.clone(),
            )?,
            list_changes: tx.execute(
                &format!("DELETE FROM list_change WHERE {exact}"),
                params.clone(),
            )?,
            bounce_findings: 0,
            signups: tx.execute(
                &format!("DELETE FROM signup_pending WHERE {exact}"),
                params.clone(),
            )? + tx.execute(
                &format!("DELETE FROM outgoing WHERE {exact}"),
                params.clone(),
            )?,
        };
        // A finding names the address in its own column, or only in the report's words.
        erased.bounce_findings = tx.execute(
            &format!(
                "DELETE FROM inbound WHERE {exact} OR {} OR {}",
                Spellings::contains_sql("diagnostic", n),
                Spellings::contains_sql("action", n)
            ),
            params,
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO forgotten (hash, at) VALUES (?1, ?2)",
            params![hash, unix(now)],
        )?;
        tx.commit()?;
        self.conn
            .execute_batch("VACUUM")
            .context("rewriting the state database without the forgotten rows")?;
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .context("emptying the state database's write-ahead log")?;
        Ok(erased)
    }

    /// The ids of every edition, sent or not.
    pub(crate) fn edition_ids(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM edition ORDER BY created_at, id")?;
        let ids = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }

    /// The hashes of the forgotten addresses.
    pub(crate) fn forgotten(&self) -> Result<HashSet<String>> {
        let mut stmt = self.conn.prepare("SELECT hash FROM forgotten")?;
        let set = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(set)
    }

    /// Every row about the address, as JSON: what `export-data` prints.
    pub(crate) fn data_about(&self, spellings: &Spellings) -> Result<Value> {
        let forms = &spellings.0;
        let n = forms.len();
        let exact = Spellings::equals_sql(n);
        let query = |sql: &str, columns: &[&str]| -> Result<Vec<Value>> {
            let mut stmt = self.conn.prepare(sql)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(forms.iter()), |r| {
                    let mut object = serde_json::Map::new();
                    for (i, c) in columns.iter().enumerate() {
                        let v: rusqlite::types::Value = r.get(i)?;
                        object.insert((*c).to_string(), sql_to_json(v));
                    }
                    Ok(Value::Object(object))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        };
        Ok(json!({
            "deliveries": query(
                &format!("SELECT edition_id, email, state, attempts, code, reply, message_id, updated_at FROM delivery WHERE {exact} ORDER BY updated_at"),
                &["edition", "email", "state", "attempts", "code", "reply", "message_id", "updated_at"],
            )?,
            "suppression": query(
                &format!("SELECT email, reason, at FROM suppression WHERE {exact}"),
                &["email", "reason", "at"],
            )?,
            "unsubscribed": query(
                &format!("SELECT email, source, at FROM unsubscribed WHERE {exact}"),
                &["email", "source", "at"],
            )?,
            "list_changes": query(
                &format!("SELECT email, action, name, at, applied_at FROM list_change WHERE {exact} ORDER BY id"),
                &["email", "action", "name", "at", "applied_at"],
            )?,
            "signup_pending": query(
                &format!("SELECT email, name, tags, source, ip, requested_at, expires_at FROM signup_pending WHERE {exact}"),
                &["email", "name", "tags", "source", "ip", "requested_at", "expires_at"],
            )?,
            "signup_messages": query(
                &format!("SELECT kind, email, state, reply, created_at, updated_at FROM outgoing WHERE {exact} ORDER BY id"),
                &["kind", "email", "state", "reply", "created_at", "updated_at"],
            )?,
            "bounce_findings": query(
                &format!(
                    "SELECT edition_id, email, kind, status, diagnostic, action, at FROM inbound WHERE {exact} OR {} ORDER BY at",
                    Spellings::contains_sql("diagnostic", n)
                ),
                &["edition", "email", "kind", "status", "diagnostic", "action", "at"],
            )?,
        }))
    }
}

fn sql_to_json(v: rusqlite::types::Value) -> Value {
    use rusqlite::types::Value as V;
    match v {
        V::Null => Value::Null,
        V::Integer(i) => json!(i),
        V::Real(f) => json!(f),
        V::Text(t) => json!(t),
        V::Blob(b) => json!(format!("({} bytes)", b.len())),
    }
}
