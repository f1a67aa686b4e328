//! `subscribers.toml`: every entry checked field by field (all problems reported at once,
//! each with its line), duplicates merged, and the list filtered down to who gets mail.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use chrono::NaiveDate;
use toml::de::{DeTable, DeValue};

use crate::input::address::{DisplayName, EmailAddress};
use crate::problems::{Problem, Problems, line_of};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Subscribed,
    Unsubscribed,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Subscribed => "subscribed",
            Status::Unsubscribed => "unsubscribed",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Subscriber {
    pub email: EmailAddress,
    pub name: Option<DisplayName>,
    pub status: Status,
    /// When the current status began.
    pub since: Option<NaiveDate>,
    pub tags: Vec<String>,
}

/// The list after merging duplicates, in file order (first occurrence).
#[derive(Debug, Default)]
pub struct SubscriberList {
    pub entries: Vec<Subscriber>,
    /// Things worth telling the operator that are not errors (merged duplicates).
    pub notes: Vec<String>,
    /// When not empty, only subscribers with one of these tags receive the edition.
    pub audience: Vec<String>,
}

impl SubscriberList {
    /// Those who receive the edition.
    pub fn active(&self) -> impl Iterator<Item = &Subscriber> {
        self.entries.iter().filter(|s| {
            s.status == Status::Subscribed
                && (self.audience.is_empty() || s.tags.iter().any(|t| self.audience.contains(t)))
        })
    }

    pub fn find(&self, email: &EmailAddress) -> Option<&Subscriber> {
        self.entries.iter().find(|s| &s.email == email)
    }
}

const FIELDS: &str = "email, name, status, since, tags, consent";

pub fn load(path: &Path) -> Result<SubscriberList, Problems> {
    let source = std::fs::read_to_string(path)
        .map_err(|e| Problem::new(path, format!("cannot read the subscriber list: {e}")))?;
    parse(&source, path)
}

/// Parses the text of a subscriber file named `path`.
pub fn parse(source: &str, path: &Path) -> Result<SubscriberList, Problems> {
    let mut problems = Problems::default();
    let mut entries: Vec<(Subscriber, usize)> = Vec::new();
    // Each entry is parsed on its own: a document tree of 100,000 entries would take
    // ten times the memory of the list itself.
    for (base, chunk) in chunks(source) {
        let doc = match DeTable::parse(chunk) {
            Ok(doc) => doc,
            Err(e) => {
                let at = e.span().map_or(base, |s| base + s.start);
                problems
                    .push(Problem::new(path, e.message().trim().to_string()).at_offset(source, at));
                continue;
            }
        };
        for (key, value) in doc.get_ref() {
            if key.get_ref() != "subscriber" {
                problems.push(
                    Problem::new(
                        path,
                        "unknown key; the file holds only [[subscriber]] entries",
                    )
                    .at_offset(source, base + key.span().start)
                    .field(key.get_ref().to_string()),
                );
                continue;
            }
            let DeValue::Array(items) = value.get_ref() else {
                problems.push(
                    Problem::new(path, "must be written as [[subscriber]] entries")
                        .at_offset(source, base + key.span().start)
                        .field("subscriber"),
                );
                continue;
            };
            for item in items {
                let offset = base + item.span().start;
                match item.get_ref() {
                    DeValue::Table(table) => {
                        if let Some(s) =
                            parse_entry(table, base, offset, source, path, &mut problems)
                        {
                            entries.push((s, offset));
                        }
                    }
                    _ => problems.push(
                        Problem::new(path, "each subscriber must be a table")
                            .at_offset(source, offset)
                            .field("subscriber"),
                    ),
                }
            }
        }
    }
    problems.0.sort_by_key(|p| p.line);
    let list = merge_duplicates(entries, source, path);
    problems.into_result(list)
}

/// Splits the file before each `[[subscriber]]` header line: (byte offset, text). What
/// precedes the first header (comments, stray keys) is a chunk of its own.
pub(crate) fn chunks(source: &str) -> Vec<(usize, &str)> {
    let mut starts = vec![0];
    let mut offset = 0;
    for line in source.split_inclusive('\n') {
        let bare = line.split('#').next().unwrap_or("").trim();
        if bare == "[[subscriber]]" && offset > 0 {
            starts.push(offset);
        }
        offset += line.len();
    }
    starts.push(source.len());
    starts
        .windows(2)
        .map(|w| (w[0], &source[w[0]..w[1]]))
        .collect()
}

fn parse_entry(
    table: &DeTable<'_>,
    base: usize,
    entry_offset: usize,
    source: &str,
    path: &Path,
    problems: &mut Problems,
) -> Option<Subscriber> {
    let before = problems.0.len();
    let at = |field: &str, span: std::ops::Range<usize>, message: String| {
        Problem::new(path, message)
            .at_offset(source, base + span.start)
            .field(field)
    };
    let mut email = None;
    let mut name = None;
    let mut status = None;
    let mut since = None;
    let mut tags = Vec::new();

    for (key, value) in table {
        let field = key.get_ref().as_ref();
        let span = value.span();
        match (field, value.get_ref()) {
            ("email", DeValue::String(s)) => match EmailAddress::parse(s) {
                Ok(a) => email = Some(a),
                Err(e) => problems.push(at(field, span, e)),
            },
            ("name", DeValue::String(s)) => match DisplayName::parse(s) {
                Ok(n) => name = Some(n),
                Err(e) => problems.push(at(field, span, e)),
            },
            ("status", DeValue::String(s)) => match s.as_ref() {
                "subscribed" => status = Some(Status::Subscribed),
                "unsubscribed" => status = Some(Status::Unsubscribed),
                other => problems.push(at(
                    field,
                    span,
                    format!("{other:?} is not a status: use \"subscribed\" or \"unsubscribed\""),
                )),
            },
            ("since", DeValue::Datetime(dt)) => match dt.date.and_then(|d| {
                NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
            }) {
                Some(d) => since = Some(d),
                None => problems.push(at(field, span, "must be a date such as 2024-03-01".into())),
            },
            ("tags", DeValue::Array(items)) => {
                for t in items {
                    match t.get_ref() {
                        DeValue::String(s)
                            if !s.trim().is_empty() && !s.chars().any(char::is_control) =>
                        {
                            tags.push(s.trim().to_string());
                        }
                        _ => problems.push(at(
                            field,
                            t.span(),
                            "each tag must be a non-empty string".into(),
                        )),
                    }
                }
            }
            // How the reader consented (kept for the operator; sending does not read it).
            ("consent", DeValue::Table(_)) => {}
            ("consent", other) => {
                problems.push(at(
                    field,
                    span,
                    format!(
                        "must be a table such as {{ at = \"…\", how = \"…\" }}, not {}",
                        other.type_str()
                    ),
                ));
            }
            ("email" | "name" | "status", other) => {
                problems.push(at(
                    field,
                    span,
                    format!("must be a string, not {}", other.type_str()),
                ));
            }
            ("since", other) => {
                problems.push(at(
                    field,
                    span,
                    format!(
                        "must be a date such as 2024-03-01, not {}",
                        other.type_str()
                    ),
                ));
            }
            ("tags", other) => {
                problems.push(at(
                    field,
                    span,
                    format!("must be a list of strings, not {}", other.type_str()),
                ));
            }
            (unknown, _) => problems.push(at(
                unknown,
                key.span(),
                format!("unknown field, expected one of: {FIELDS}"),
            )),
        }
    }
    let entry = |message: &str, field: &str| {
        Problem::new(path, message)
            .at_line(line_of(source, entry_offset))
            .field(field)
    };
    if email.is_none()
        && !problems.0[before..]
            .iter()
            .any(|p| p.field.as_deref() == Some("email"))
    {
        problems.push(entry("missing: every subscriber needs an address", "email"));
    }
    if status.is_none()
        && !problems.0[before..]
            .iter()
            .any(|p| p.field.as_deref() == Some("status"))
    {
        problems.push(entry(
            "missing: say \"subscribed\" or \"unsubscribed\"; nobody is mailed without a status",
            "status",
        ));
    }
    if problems.0.len() > before {
        return None;
    }
    Some(Subscriber {
        email: email?,
        name,
        status: status?,
        since,
        tags,
    })
}

/// Keeps the first entry of each address; if any copy is unsubscribed, the merged entry is.
fn merge_duplicates(
    entries: Vec<(Subscriber, usize)>,
    source: &str,
    path: &Path,
) -> SubscriberList {
    let mut list = SubscriberList::default();
    let mut first_seen: HashMap<EmailAddress, (usize, usize)> =
        HashMap::with_capacity(entries.len());
    for (sub, offset) in entries {
        if let Some(&(index, first_offset)) = first_seen.get(&sub.email) {
            let kept = &mut list.entries[index];
            if sub.status == Status::Unsubscribed && kept.status == Status::Subscribed {
                kept.status = Status::Unsubscribed;
                kept.since = sub.since;
            }
            if kept.name.is_none() {
                kept.name = sub.name;
            }
            list.notes.push(format!(
                "{}:{}: `email`: {} already appears at line {}; merged into one entry ({})",
                path.display(),
                line_of(source, offset),
                sub.email,
                line_of(source, first_offset),
                kept.status,
            ));
        } else {
            first_seen.insert(sub.email.clone(), (list.entries.len(), offset));
            list.entries.push(sub);
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(src: &str) -> Result<SubscriberList, Problems> {
        parse(src, Path::new("subscribers.toml"))
    }

    #[test]
    fn only_subscribed_entries_are_active() {
        let list = parse_str(
            r#"
[[subscriber]]
email = "ada@example.org"
name = "Ada"
status = "subscribed"
since = 2024-01-02
tags = ["markets"]

[[subscriber]]
email = "bob@example.org"
status = "unsubscribed"
"#,
        )
        .unwrap();
        let active: Vec<_> = list.active().map(|s| s.email.as_str()).collect();
        assert_eq!(active, ["ada@example.org"]);
        assert_eq!(list.entries[0].tags, ["markets"]);
    }

    #[test]
    fn duplicates_merge_and_unsubscribed_wins() {
        let list = parse_str(
            r#"
[[subscriber]]
email = "ada@Example.org"
status = "subscribed"

[[subscriber]]
email = "  ada@example.ORG "
status = "unsubscribed"
"#,
        )
        .unwrap();
        assert_eq!(list.entries.len(), 1);
        assert_eq!(list.entries[0].status, Status::Unsubscribed);
        assert_eq!(list.active().count(), 0);
        assert_eq!(list.notes.len(), 1);
        assert!(
            list.notes[0].contains("subscribers.toml:6:"),
            "{}",
            list.notes[0]
        );
        assert!(list.notes[0].contains("line 2"), "{}", list.notes[0]);
    }

    #[test]
    fn every_bad_entry_is_reported_with_its_line() {
        let err = parse_str(
            "[[subscriber]]\nemail = \"not-an-address\"\nstatus = \"subscribed\"\n\n\
             [[subscriber]]\nemail = \"eve@example.org\"\nname = \"Eve\\r\\nBcc: x@example.org\"\nstatus = \"subscribed\"\n\n\
             [[subscriber]]\nemail = \"zed@example.org\"\nstatus = \"maybe\"\nstauts = \"x\"\n\n\
             [[subscriber]]\nemail = \"amy@example.org\"\n",
        )
        .unwrap_err();
        let found: Vec<_> = err
            .0
            .iter()
            .map(|p| (p.line.unwrap(), p.field.clone().unwrap()))
            .collect();
        assert_eq!(
            found,
            [
                (2, "email".to_string()),
                (7, "name".to_string()),
                (12, "status".to_string()),
                (13, "stauts".to_string()),
                (15, "status".to_string()),
            ],
            "{err}"
        );
    }

    #[test]
    fn an_empty_file_is_an_empty_list() {
        assert_eq!(parse_str("# nobody yet\n").unwrap().entries.len(), 0);
    }

    #[test]
    fn broken_toml_names_the_line() {
        let err =
            parse_str("[[subscriber]]\nemail = \"a@b.c\nstatus = \"subscribed\"\n").unwrap_err();
        assert_eq!(err.0[0].line, Some(2), "{err}");
    }
}
