//! `newsletter import FILE` brings a list from another tool into `subscribers.toml`,
//! keeping who left and who bounced there; `newsletter export` writes the list as a CSV
//! listmonk imports (`email,name,status,attributes`), statuses included.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use toml_edit::{DocumentMut, Item, Table, value};

use crate::cli::{Cli, ExportArgs, ImportArgs};
use crate::clock::Clock;
use crate::config::Config;
use crate::exit::Exit;
use crate::import::{self, Columns, Row, Standing};
use crate::input::address::{DisplayName, EmailAddress};
use crate::input::subscribers::{self, Status, Subscriber};
use crate::privacy::Forgotten;
use crate::state::Journal;
use crate::state::listfile;
use crate::state::lock::{LIST_LOCK_WAIT, ListLock};

/// What the import does with one address.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Added,
    /// On the list already; the name or tags it lacked were added.
    Updated,
    /// Subscribed here, unsubscribed there: unsubscribed here too.
    Unsubscribed,
    Unchanged,
    /// Unsubscribed here or there, and stays so (never subscribed again by an import).
    KeptUnsubscribed,
    /// Bounced or complained there: suppressed here.
    Suppressed,
    Refused(String),
}

/// The strongest word about an address wins when an export names it twice.
fn weight(s: Standing) -> u8 {
    match s {
        Standing::Unconfirmed => 0,
        Standing::Subscribed => 1,
        Standing::Unsubscribed => 2,
        Standing::Cleaned => 3,
    }
}

struct Planned {
    row: Row,
    email: Option<EmailAddress>,
    outcome: Outcome,
}

pub(crate) fn import(cli: &Cli, args: &ImportArgs) -> Result<Exit> {
    let config = Config::load(&cli.config)?;
    let clock = Clock::from_env()?;
    let columns = Columns {
        email: args.email_column.clone(),
        name: args.name_column.clone(),
        status: args.status_column.clone(),
        tags: args.tags_column.clone(),
    };
    let rows = import::read(&args.file, args.format, &columns)?;
    let total = rows.len();
    let mut journal = if args.dry_run {
        Journal::open_read_only(&config.paths.state)?
    } else {
        Some(Journal::open(&config.paths.state)?)
    };
    let (excluded, forgotten) = match &journal {
        Some(j) => (j.excluded()?, Forgotten::load(j, &config.paths.state)?),
        None => (HashSet::new(), Forgotten::default()),
    };
    // Held from reading the list to writing it: a concurrent edit is never lost.
    let lock = if args.dry_run {
        None
    } else {
        Some(
            ListLock::acquire_within(&config.paths.state, "newsletter import", LIST_LOCK_WAIT)?
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "the subscriber list stayed locked by another writer; nothing was imported"
                    )
                })?,
        )
    };
    let list = subscribers::load(&config.paths.subscribers)?;
    let current: HashMap<String, &Subscriber> = list
        .entries
        .iter()
        .map(|s| (s.email.as_str().to_ascii_lowercase(), s))
        .collect();
    let plan = plan(rows, &current, &excluded, &forgotten);

    if !args.dry_run {
        let text = std::fs::read_to_string(&config.paths.subscribers)
            .with_context(|| format!("cannot read {}", config.paths.subscribers.display()))?;
        let edited = apply(
            &text,
            &plan,
            clock.today(),
            &args.file.display().to_string(),
        )?;
        if edited != text {
            crate::atomic_file::write(&config.paths.subscribers, edited.as_bytes())?;
        }
        let suppress: Vec<(String, String)> = plan
            .iter()
            .filter(|p| p.outcome == Outcome::Suppressed)
            .filter_map(|p| {
                p.email.as_ref().map(|e| {
                    (
                        e.as_str().to_string(),
                        format!(
                            "bounced or complained before the import from {}",
                            args.file.display()
                        ),
                    )
                })
            })
            .collect();
        if let Some(j) = journal.as_mut() {
            crate::state::suppressions::add(j, &suppress, clock.now())?;
        }
    }
    drop(lock);
    crate::say!(
        "{}",
        report(&plan, total, &args.file.display().to_string(), args.dry_run)
    );
    Ok(Exit::Done)
}

/// Decides each address's outcome against the list as it is.
fn plan(
    rows: Vec<Row>,
    current: &HashMap<String, &Subscriber>,
    excluded: &HashSet<String>,
    forgotten: &Forgotten,
) -> Vec<Planned> {
    let mut out: Vec<Planned> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for row in rows {
        let email = match EmailAddress::parse(&row.email) {
            Ok(e) => e,
            Err(why) => {
                let why = if row.email.is_empty() {
                    "no address".to_string()
                } else {
                    format!("the address {why}")
                };
                out.push(Planned {
                    row,
                    email: None,
                    outcome: Outcome::Refused(why),
                });
                continue;
            }
        };
        let key = email.as_str().to_ascii_lowercase();
        if let Some(&i) = seen.get(&key) {
            // The export names it twice: keep the stronger word and any name or tags.
            let earlier = &mut out[i];
            if weight(row.standing) > weight(earlier.row.standing) {
                earlier.row.standing = row.standing;
            }
            if earlier.row.name.is_none() {
                earlier.row.name = row.name;
            }
            for t in row.tags {
                if !earlier.row.tags.contains(&t) {
                    earlier.row.tags.push(t);
                }
            }
            continue;
        }
        seen.insert(key, out.len());
        out.push(Planned {
            row,
            email: Some(email),
            outcome: Outcome::Unchanged,
        });
    }
    for p in &mut out {
        let Some(email) = &p.email else { continue };
        let key = email.as_str().to_ascii_lowercase();
        let existing = current.get(&key);
        let left_here = excluded.contains(email.as_str())
            || existing.is_some_and(|s| s.status == Status::Unsubscribed);
        p.outcome = if forgotten.contains(email) {
            Outcome::Refused("forgotten on its owner's request (newsletter forget)".into())
        } else {
            match p.row.standing {
                Standing::Unconfirmed => {
                    Outcome::Refused("never confirmed its subscription there".into())
                }
                Standing::Cleaned => Outcome::Suppressed,
                Standing::Unsubscribed => match existing {
                    Some(s) if s.status == Status::Subscribed => Outcome::Unsubscribed,
                    _ => Outcome::KeptUnsubscribed,
                },
                Standing::Subscribed if left_here => Outcome::KeptUnsubscribed,
                Standing::Subscribed => match existing {
                    None => Outcome::Added,
                    Some(s) => {
                        let new_name = s.name.is_none() && p.row.name.is_some();
                        let new_tags = p.row.tags.iter().any(|t| !s.tags.contains(t));
                        if new_name || new_tags {
                            Outcome::Updated
                        } else {
                            Outcome::Unchanged
                        }
                    }
                },
            }
        };
        if let Some(name) = &p.row.name
            && DisplayName::parse(name).is_err()
        {
            p.row.name = None;
        }
    }
    out
}

/// The subscriber file with the plan applied: entries edited in place (comments and
/// layout kept), new ones at the end.
fn apply(text: &str, plan: &[Planned], today: chrono::NaiveDate, source: &str) -> Result<String> {
    let mut doc: DocumentMut = text
        .parse()
        .context("the subscriber list is not valid TOML")?;
    if !doc.contains_key("subscriber") {
        doc.insert(
            "subscriber",
            Item::ArrayOfTables(toml_edit::ArrayOfTables::new()),
        );
    }
    let list = doc["subscriber"]
        .as_array_of_tables_mut()
        .context("`subscriber` must be written as [[subscriber]] entries")?;
    let position: HashMap<String, usize> = list
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let e = EmailAddress::parse(t.get("email")?.as_str()?).ok()?;
            Some((e.as_str().to_ascii_lowercase(), i))
        })
        .collect();
    let since = listfile::date(today);
    for p in plan {
        let Some(email) = &p.email else { continue };
        let at = position.get(&email.as_str().to_ascii_lowercase()).copied();
        match (&p.outcome, at) {
            (Outcome::Added | Outcome::KeptUnsubscribed | Outcome::Suppressed, None) => {
                let mut entry = Table::new();
                entry
                    .decor_mut()
                    .set_prefix(format!("\n# imported from {}\n", source.replace('\n', " ")));
                entry.insert("email", value(email.as_str()));
                if let Some(name) = &p.row.name {
                    entry.insert("name", value(name.as_str()));
                }
                let status = if p.outcome == Outcome::Added {
                    "subscribed"
                } else {
                    "unsubscribed"
                };
                entry.insert("status", value(status));
                entry.insert("since", Item::Value(since.clone()));
                if !p.row.tags.is_empty() {
                    entry.insert("tags", Item::Value(listfile::tags_value(&p.row.tags)));
                }
                list.push(entry);
            }
            (Outcome::Unsubscribed, Some(i)) => {
                if let Some(t) = list.get_mut(i) {
                    // As every list edit: each value replaced, its comment kept.
                    listfile::set_keeping_decor(t, "status", "unsubscribed".into());
                    listfile::set_keeping_decor(t, "since", since.clone());
                }
            }
            (Outcome::Updated, Some(i)) => {
                if let Some(t) = list.get_mut(i) {
                    if t.get("name").is_none()
                        && let Some(name) = &p.row.name
                    {
                        t.insert("name", value(name.as_str()));
                    }
                    let mut tags: Vec<String> = t
                        .get("tags")
                        .and_then(Item::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    for tag in &p.row.tags {
                        if !tags.contains(tag) {
                            tags.push(tag.clone());
                        }
                    }
                    if !tags.is_empty() {
                        listfile::set_keeping_decor(t, "tags", listfile::tags_value(&tags));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(doc.to_string())
}

fn report(plan: &[Planned], total: usize, file: &str, dry_run: bool) -> String {
    let count = |o: &Outcome| plan.iter().filter(|p| &p.outcome == o).count();
    let refused: Vec<&Planned> = plan
        .iter()
        .filter(|p| matches!(p.outcome, Outcome::Refused(_)))
        .collect();
    let mut tools: Vec<&str> = plan.iter().map(|p| p.row.format.name()).collect();
    tools.sort_unstable();
    tools.dedup();
    let mut out = format!(
        "{}import of {file} ({}): {total} rows, {} addresses\n",
        if dry_run { "dry run: " } else { "" },
        tools.join(", "),
        plan.len()
    );
    for (label, n) in [
        ("added (subscribed)", count(&Outcome::Added)),
        ("updated (name or tags added)", count(&Outcome::Updated)),
        ("unsubscribed (left there)", count(&Outcome::Unsubscribed)),
        ("unchanged", count(&Outcome::Unchanged)),
        ("kept unsubscribed", count(&Outcome::KeptUnsubscribed)),
        (
            "suppressed (bounced or complained there)",
            count(&Outcome::Suppressed),
        ),
        ("refused", refused.len()),
    ] {
        let _ = writeln!(out, "  {n:>7}  {label}");
    }
    for p in refused {
        if let Outcome::Refused(why) = &p.outcome {
            let _ = writeln!(
                out,
                "  refused  {}  {}: {why}",
                p.row.at,
                if p.row.email.is_empty() {
                    "-"
                } else {
                    &p.row.email
                }
            );
        }
    }
    if dry_run {
        out.push_str("nothing was written (dry run)");
    }
    out.trim_end().to_string()
}

pub(crate) fn export(cli: &Cli, args: &ExportArgs) -> Result<Exit> {
    let config = Config::load(&cli.config)?;
    let list = subscribers::load(&config.paths.subscribers)?;
    let journal = Journal::open_read_only(&config.paths.state)?;
    let (unsubscribed, suppressed) = match &journal {
        Some(j) => (j.unsubscribed()?, j.suppressed()?),
        None => (HashSet::new(), HashSet::new()),
    };
    if list.entries.is_empty() {
        bail!("the subscriber list is empty: nothing to export");
    }
    let mut out = String::from("email,name,status,attributes\n");
    for s in &list.entries {
        let e = s.email.as_str();
        let standing = if suppressed.contains(e) {
            "suppressed"
        } else if unsubscribed.contains(e) || s.status == Status::Unsubscribed {
            "unsubscribed"
        } else {
            "subscribed"
        };
        // listmonk's blocklist is the status that is never mailed.
        let status = if standing == "subscribed" {
            "enabled"
        } else {
            "blocklisted"
        };
        let mut attributes = BTreeMap::new();
        attributes.insert("newsletter_status", serde_json::json!(standing));
        if let Some(since) = s.since {
            attributes.insert("since", serde_json::json!(since.to_string()));
        }
        if !s.tags.is_empty() {
            attributes.insert("tags", serde_json::json!(s.tags));
        }
        let _ = writeln!(
            out,
            "{},{},{status},{}",
            import::csv::field(e),
            import::csv::field(s.name.as_ref().map_or("", DisplayName::as_str)),
            import::csv::field(&serde_json::to_string(&attributes)?)
        );
    }
    if let Some(path) = &args.out {
        crate::atomic_file::write(path, out.as_bytes())?;
        crate::say!(
            "{} addresses written to {}",
            list.entries.len(),
            path.display()
        );
    } else {
        use std::io::Write as _;
        std::io::stdout()
            .write_all(out.as_bytes())
            .context("cannot write to stdout")?;
    }
    Ok(Exit::Done)
}
