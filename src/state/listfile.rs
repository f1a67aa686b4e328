//! Edits `subscribers.toml` in place: statuses changed and entries added with `toml_edit`, so
//! every comment, the order and the formatting stay as the operator wrote them; written
//! atomically (temporary file, fsync, rename, fsync of the folder) under the list lock.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{Datelike, NaiveDate};
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, Value, value};

use crate::clock::Clock;
use crate::config::Config;
use crate::input::address::EmailAddress;
use crate::state::lock::{LIST_LOCK_WAIT, ListLock};
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
            if let Some(tags) = &change.tags {
                set_keeping_decor(entry, "tags", tags_value(tags));
            }
            if let Some(consent) = consent_value(change.consent.as_deref()) {
                set_keeping_decor(entry, "consent", consent);
            }
        } else {
            let mut entry = Table::new();
            entry.insert("email", value(change.email.as_str()));
            if let Some(name) = &change.name {
                entry.insert("name", value(name.as_str()));
            }
            entry.insert("status", value(status));
            entry.insert("since", Item::Value(date(today)));
            if let Some(tags) = change.tags.as_ref().filter(|t| !t.is_empty()) {
                entry.insert("tags", Item::Value(tags_value(tags)));
            }
            if let Some(consent) = consent_value(change.consent.as_deref()) {
                entry.insert("consent", Item::Value(consent));
            }
            list.push(entry);
        }
    }
    Ok(doc.to_string())
}

/// Removes every entry of the address (any spelling of it) from the subscriber file,
/// under the list lock, keeping every other entry and comment as written; returns how
/// many entries were removed. A comment just above a removed entry goes with it.
pub(crate) fn remove(config: &Config, email: &EmailAddress) -> Result<usize> {
    let path = &config.paths.subscribers;
    let Some(lock) =
        ListLock::acquire_within(&config.paths.state, "newsletter forget", LIST_LOCK_WAIT)?
    else {
        anyhow::bail!(
            "the subscriber list stayed locked by another writer for {} s; nothing was changed, try again",
            LIST_LOCK_WAIT.as_secs()
        );
    };
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut doc: DocumentMut = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let Some(list) = doc
        .get_mut("subscriber")
        .and_then(Item::as_array_of_tables_mut)
    else {
        return Ok(0);
    };
    let before = list.len();
    list.retain(|t| {
        !t.get("email")
            .and_then(Item::as_str)
            .and_then(|e| EmailAddress::parse(e).ok())
            .is_some_and(|e| e.as_str().eq_ignore_ascii_case(email.as_str()))
    });
    let removed = before - list.len();
    if removed > 0 {
        crate::atomic_file::write(path, doc.to_string().as_bytes())?;
    }
    drop(lock);
    Ok(removed)
}

pub(crate) fn tags_value(tags: &[String]) -> Value {
    Value::Array(tags.iter().map(String::as_str).collect())
}

/// A consent record (a JSON object of strings) as an inline table:
/// `consent = { at = "…", how = "…", source = "…" }`.
fn consent_value(json: Option<&str>) -> Option<Value> {
    let map: std::collections::BTreeMap<String, String> = serde_json::from_str(json?).ok()?;
    let mut table = toml_edit::InlineTable::new();
    for (k, v) in map {
        table.insert(&k, v.as_str().into());
    }
    Some(Value::InlineTable(table))
}

/// Replaces a value but keeps what surrounds it (a trailing `# comment`).
pub(crate) fn set_keeping_decor(table: &mut Table, key: &str, mut new: Value) {
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

pub(crate) fn date(d: NaiveDate) -> Value {
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

/// Writes every recorded but unwritten list change into the subscriber file, under the
/// list lock, waiting for another writer at most `LIST_LOCK_WAIT`. `Ok(None)` when the lock
/// stayed busy: the changes stay recorded (and honoured by every send), and the next
/// writer puts them in the file.
pub(crate) fn write_pending(
    config: &Config,
    journal: &mut Journal,
    what: &str,
    clock: &Clock,
) -> Result<Option<usize>> {
    if journal.pending_list_changes()?.is_empty() {
        return Ok(Some(0));
    }
    let Some(lock) = ListLock::acquire_within(&config.paths.state, what, LIST_LOCK_WAIT)? else {
        return Ok(None);
    };
    // Read again under the lock: another writer may have written some meanwhile.
    let changes = journal.pending_list_changes()?;
    if changes.is_empty() {
        return Ok(Some(0));
    }
    let path = &config.paths.subscribers;
    rewrite(path, &changes, clock.today())?;
    let ids: Vec<i64> = changes.iter().map(|c| c.id).collect();
    journal.mark_applied(&ids, clock.now())?;
    drop(lock);
    Ok(Some(changes.len()))
}

/// Rewrites the file with `changes` applied, one entry at a time: only the entries a
/// change names are parsed and edited, everything else is copied as it is, and the result
/// is streamed to disk. The memory it takes is the file's text and little more, where a
/// document tree of the whole list would take about 25 times the file's size.
fn rewrite(path: &Path, changes: &[ListChange], today: NaiveDate) -> Result<()> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let edited = edit_entries(&text, changes, today)
        .with_context(|| format!("cannot edit {}", path.display()))?;
    crate::atomic_file::write_with(path, |out| {
        for piece in edited.pieces(&text) {
            std::io::Write::write_all(out, piece.as_bytes())?;
        }
        Ok(())
    })?;
    Ok(())
}

/// The edits of one file: replaced entries by position, and new entries for the end.
struct Edited {
    chunks: Vec<(usize, usize)>,
    replaced: HashMap<usize, String>,
    appended: String,
}

impl Edited {
    /// The new file, piece by piece.
    fn pieces<'a>(&'a self, text: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let separator = if self.appended.is_empty() || text.is_empty() || text.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        self.chunks
            .iter()
            .enumerate()
            .map(move |(i, (from, to))| match self.replaced.get(&i) {
                Some(new) => new.as_str(),
                None => &text[*from..*to],
            })
            .chain([separator, self.appended.as_str()])
    }
}

/// Finds the entry each change names (the first one with that address) and edits it with
/// `edit`, which keeps its comments and layout; addresses not in the file get new entries.
fn edit_entries(text: &str, changes: &[ListChange], today: NaiveDate) -> Result<Edited> {
    // The changes of one address, in the order they were made.
    let mut by_email: Vec<(&str, Vec<ListChange>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for change in changes {
        let i = *index.entry(change.email.as_str()).or_insert_with(|| {
            by_email.push((change.email.as_str(), Vec::new()));
            by_email.len() - 1
        });
        by_email[i].1.push(change.clone());
    }
    // Only an entry whose local part is one of these is worth parsing.
    let locals: HashSet<String> = by_email
        .iter()
        .map(|(e, _)| local_part(e).to_lowercase())
        .collect();
    let mut chunks = Vec::new();
    let mut replaced = HashMap::new();
    let mut done = vec![false; by_email.len()];
    for (n, (base, chunk)) in crate::input::subscribers::chunks(text)
        .into_iter()
        .enumerate()
    {
        chunks.push((base, base + chunk.len()));
        let Some(email) = entry_email(chunk, &locals) else {
            continue;
        };
        if let Some(&i) = index.get(email.as_str())
            && !done[i]
        {
            done[i] = true;
            replaced.insert(n, edit(chunk, &by_email[i].1, today)?);
        }
    }
    let mut appended = String::new();
    for (i, (_, changes)) in by_email.iter().enumerate() {
        if !done[i] {
            appended = edit(&appended, changes, today)?;
        }
    }
    if !appended.is_empty() && !text.is_empty() {
        appended.insert(0, '\n');
    }
    Ok(Edited {
        chunks,
        replaced,
        appended,
    })
}

fn local_part(email: &str) -> &str {
    email.rsplit_once('@').map_or(email, |(l, _)| l)
}

/// The normalized address of the entry in `chunk`, when its local part is among `locals`
/// (lower-cased). Most entries are told apart by a look at their `email = "..."` line; an
/// entry written another way is parsed.
fn entry_email(chunk: &str, locals: &HashSet<String>) -> Option<String> {
    let raw = if let Some(raw) = simple_email_line(chunk) {
        if raw.is_ascii() && !locals.contains(&local_part(raw.trim()).to_ascii_lowercase()) {
            return None;
        }
        raw.to_string()
    } else {
        let doc = toml::de::DeTable::parse(chunk).ok()?;
        let toml::de::DeValue::Array(items) = doc.get_ref().get("subscriber")?.get_ref() else {
            return None;
        };
        let toml::de::DeValue::Table(entry) = items.first()?.get_ref() else {
            return None;
        };
        let toml::de::DeValue::String(s) = entry.get("email")?.get_ref() else {
            return None;
        };
        s.to_string()
    };
    EmailAddress::parse(&raw)
        .ok()
        .map(|a| a.as_str().to_string())
}

/// The value of a line `email = "..."` (a basic string without escapes), if the chunk has
/// one; `None` sends the chunk to the parser.
fn simple_email_line(chunk: &str) -> Option<&str> {
    chunk.lines().find_map(|line| {
        let rest = line.trim_start().strip_prefix("email")?;
        let rest = rest.trim_start().strip_prefix('=')?;
        let rest = rest.trim_start().strip_prefix('"')?;
        let (value, _) = rest.split_once('"')?;
        (!value.contains('\\')).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "# Harbour Weekly readers\n\n[[subscriber]]\nemail = \"ada@example.org\"   # since the first issue\nname = \"Ada\"\nstatus = \"subscribed\"  # keep\n\n# a friend of the desk\n[[subscriber]]\nemail = \"bob@example.net\"\nstatus = \"subscribed\"\n";

    fn change(email: &str, subscribe: bool, name: Option<&str>) -> ListChange {
        ListChange {
            tags: None,
            consent: None,
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

    fn streamed(text: &str, changes: &[ListChange]) -> String {
        let today = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        edit_entries(text, changes, today)
            .unwrap()
            .pieces(text)
            .collect()
    }

    #[test]
    fn the_entry_by_entry_edit_writes_what_the_whole_document_edit_writes() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let odd = "# preamble\n\n[[subscriber]] # first\nname = \"Zoe\"\nemail = \"Zoe@Example.ORG\"  # upper case\n\n[[subscriber]]\n\"email\" = 'quoted@example.org'\n[[subscriber]]\nemail = \"esc\\u0061pe@example.org\"\nstatus = \"subscribed\"\n";
        let cases: Vec<(&str, Vec<ListChange>)> = vec![
            (LIST, vec![change("ada@example.org", false, None)]),
            (LIST, vec![change("bob@example.net", false, None)]),
            (LIST, vec![change("cy@example.com", true, Some("Cy"))]),
            (
                LIST,
                vec![
                    change("ada@example.org", false, None),
                    change("cy@example.com", true, None),
                    change("ada@example.org", true, Some("Ada B")),
                    change("dee@example.com", false, None),
                ],
            ),
            ("", vec![change("cy@example.com", true, Some("Cy"))]),
            (odd, vec![change("Zoe@example.org", false, None)]),
            (odd, vec![change("quoted@example.org", false, None)]),
            (odd, vec![change("escape@example.org", false, None)]),
            (odd, vec![change("new@example.org", true, None)]),
        ];
        for (text, changes) in cases {
            assert_eq!(
                streamed(text, &changes),
                edit(text, &changes, today).unwrap(),
                "{text:?} {changes:?}"
            );
        }
        // Where the two differ, the whole-document edit put a new entry above a file's
        // closing comment; the entry-by-entry one appends it below.
        assert_eq!(
            streamed("# only a comment", &[change("cy@example.com", true, None)]),
            "# only a comment\n\n[[subscriber]]\nemail = \"cy@example.com\"\nstatus = \"subscribed\"\nsince = 2026-11-27\n"
        );
    }
}
