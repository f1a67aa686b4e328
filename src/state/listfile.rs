//! Edits `subscribers.toml` in place: statuses changed and entries added with `toml_edit`, so
//! every comment, the order and the formatting stay as the operator wrote them; written
//! atomically (temporary file, fsync, rename, fsync of the folder).

use std::fs;

use anyhow::{Context, Result};
use chrono::{Datelike, NaiveDate};
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, Value, value};

use crate::clock::Clock;
use crate::config::Config;
use crate::input::address::EmailAddress;
use crate::state::lock::RunLock;
use crate::state::{Journal, ListChange};

/// Applies `changes` to the text of a subscriber file; returns the new text.
pub(crate) fn edit(text: &str, changes: &[ListChange], today: NaiveDate) -> Result<String> {
    let mut doc: DocumentMut = text
        .parse()
        .context("the subscriber list is not valid TOML")?;
    if !doc.contains_key("subscriber") {
        doc.insert("subscriber", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    let list = doc["subscriber"]
        .as_array_of_tables_mut()
        .context("`subscriber` must be written as [[subscriber]] entries")?;
    for change in changes {
        let status = if change.subscribe {
            "subscribed"
        } else {
            "unsubscribed"
        };
        let found = list.iter_mut().find(|t| {
            t.get("email")
                .and_then(Item::as_str)
                .and_then(|e| EmailAddress::parse(e).ok())
                .is_some_and(|e| e.as_str() == change.email)
        });
        if let Some(entry) = found {
            set_keeping_decor(entry, "status", status.into());
            set_keeping_decor(entry, "since", date(today));
            if let Some(name) = &change.name {
                set_keeping_decor(entry, "name", name.as_str().into());
            }
        } else {
            let mut entry = Table::new();
            entry.insert("email", value(change.email.as_str()));
            if let Some(name) = &change.name {
                entry.insert("name", value(name.as_str()));
            }
            entry.insert("status", value(status));
            entry.insert("since", Item::Value(date(today)));
            list.push(entry);
        }
    }
    Ok(doc.to_string())
}

/// Replaces a value but keeps what surrounds it (a trailing `# comment`).
fn set_keeping_decor(table: &mut Table, key: &str, mut new: Value) {
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(old) => {
            *new.decor_mut() = old.decor().clone();
            *old = new;
        }
        None => {
            table.insert(key, Item::Value(new));
        }
    }
}

fn date(d: NaiveDate) -> Value {
    let date = toml_edit::Date {
        year: u16::try_from(d.year()).unwrap_or(1970),
        month: u8::try_from(d.month()).unwrap_or(1),
        day: u8::try_from(d.day()).unwrap_or(1),
    };
    Value::from(toml_edit::Datetime {
        date: Some(date),
        time: None,
        offset: None,
    })
}

/// Writes every recorded but unwritten list change into the subscriber file. The caller
/// holds the run lock. Returns how many changes were written.
pub(crate) fn apply_pending(
    config: &Config,
    journal: &mut Journal,
    clock: &Clock,
) -> Result<usize> {
    let today = clock.today();
    let changes = journal.pending_list_changes()?;
    if changes.is_empty() {
        return Ok(0);
    }
    let path = &config.paths.subscribers;
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let edited =
        edit(&text, &changes, today).with_context(|| format!("cannot edit {}", path.display()))?;
    crate::atomic_file::write(path, edited.as_bytes())?;
    let ids: Vec<i64> = changes.iter().map(|c| c.id).collect();
    journal.mark_applied(&ids, clock.now())?;
    Ok(changes.len())
}

/// Applies pending changes if the run lock is free; `Ok(None)` when another run holds it
/// (that run writes them when it ends).
pub(crate) fn apply_pending_if_free(
    config: &Config,
    journal: &mut Journal,
    what: &str,
    clock: &Clock,
) -> Result<Option<usize>> {
    let lock = match RunLock::acquire(&config.paths.state, what) {
        Ok(lock) => lock,
        Err(e) if e.downcast_ref::<crate::state::lock::Locked>().is_some() => return Ok(None),
        Err(e) => return Err(e),
    };
    let n = apply_pending(config, journal, clock)?;
    drop(lock);
    Ok(Some(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "# Harbour Weekly readers\n\n[[subscriber]]\nemail = \"ada@example.org\"   # since the first issue\nname = \"Ada\"\nstatus = \"subscribed\"  # keep\n\n# a friend of the desk\n[[subscriber]]\nemail = \"bob@example.net\"\nstatus = \"subscribed\"\n";

    fn change(email: &str, subscribe: bool, name: Option<&str>) -> ListChange {
        ListChange {
            id: 1,
            email: email.into(),
            subscribe,
            name: name.map(str::to_string),
        }
    }

    #[test]
    fn unsubscribing_changes_one_status_and_keeps_every_comment() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let out = edit(LIST, &[change("ada@example.org", false, None)], today).unwrap();
        let expected = LIST.replace(
            "status = \"subscribed\"  # keep",
            "status = \"unsubscribed\"  # keep\nsince = 2026-11-27",
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn subscribing_a_new_address_appends_an_entry() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let out = edit(LIST, &[change("cy@example.com", true, Some("Cy"))], today).unwrap();
        assert!(out.starts_with(LIST), "{out}");
        assert!(out.ends_with("[[subscriber]]\nemail = \"cy@example.com\"\nname = \"Cy\"\nstatus = \"subscribed\"\nsince = 2026-11-27\n"), "{out}");
        let parsed =
            crate::input::subscribers::parse(&out, std::path::Path::new("s.toml")).unwrap();
        assert_eq!(parsed.active().count(), 3);
    }
}
