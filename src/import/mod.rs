//! Subscriber lists exported by other tools: Mailchimp (a ZIP of subscribed, unsubscribed
//! and cleaned CSVs), Substack, Ghost, listmonk and Buttondown, told apart by their
//! columns, or any CSV with its columns named on the command line. Each row keeps the
//! status the other tool gave it, so that nobody who left is subscribed again.

pub(crate) mod csv;
pub(crate) mod zip;

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// What the exporting tool said about an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Standing {
    Subscribed,
    /// Left the list (unsubscribed, blocklisted, email turned off).
    Unsubscribed,
    /// Bounced or complained there: suppressed here, never mailed until lifted.
    Cleaned,
    /// Signed up but never confirmed: not imported.
    Unconfirmed,
}

/// One row of an export.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// `FILE:LINE`, for the report.
    pub at: String,
    pub email: String,
    pub name: Option<String>,
    pub tags: Vec<String>,
    pub standing: Standing,
    /// The tool that wrote it.
    pub format: Format,
}

/// The tools whose exports are recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Mailchimp,
    Substack,
    Ghost,
    Listmonk,
    Buttondown,
    /// Any CSV: `--email-column` (and `--name-column`, `--status-column`, `--tags-column`).
    Csv,
}

impl Format {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Mailchimp => "Mailchimp",
            Format::Substack => "Substack",
            Format::Ghost => "Ghost",
            Format::Listmonk => "listmonk",
            Format::Buttondown => "Buttondown",
            Format::Csv => "CSV",
        }
    }
}

/// Column names for a CSV of no known tool.
#[derive(Debug, Clone, Default)]
pub struct Columns {
    pub email: Option<String>,
    pub name: Option<String>,
    pub status: Option<String>,
    pub tags: Option<String>,
}

/// The tool that wrote a header, by the columns only it writes.
pub(crate) fn detect(header: &[String]) -> Option<Format> {
    let has = |c: &str| header.iter().any(|h| h.trim().eq_ignore_ascii_case(c));
    if has("email address") && (has("member_rating") || has("leid") || has("euid")) {
        Some(Format::Mailchimp)
    } else if has("email") && has("active_subscription") && has("email_disabled") {
        Some(Format::Substack)
    } else if has("email") && has("subscribed_to_emails") {
        Some(Format::Ghost)
    } else if (has("email") || has("email_address")) && has("creation_date") && has("type") {
        Some(Format::Buttondown)
    } else if has("email") && has("attributes") {
        Some(Format::Listmonk)
    } else {
        None
    }
}

/// The rows of an export file (a CSV, or a ZIP of CSVs), each with the status its tool
/// gave it.
pub(crate) fn read(path: &Path, format: Option<Format>, columns: &Columns) -> Result<Vec<Row>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let shown = path.display().to_string();
    if zip::is_zip(&bytes) {
        let mut rows = Vec::new();
        let mut read_any = false;
        for (name, contents) in zip::files(&bytes).with_context(|| shown.clone())? {
            if !name.to_ascii_lowercase().ends_with(".csv") {
                continue;
            }
            let text = String::from_utf8(contents)
                .with_context(|| format!("{shown}: {name} is not UTF-8 text"))?;
            let file = format!("{shown}:{name}");
            // The other CSVs of an account export (posts, campaigns) are not lists.
            match rows_of(&file, &text, format, columns) {
                Ok(r) => {
                    read_any = true;
                    rows.extend(r);
                }
                Err(e) if e.downcast_ref::<NotAList>().is_some() => {}
                Err(e) => return Err(e),
            }
        }
        if !read_any {
            bail!("{shown}: no CSV in the archive has the columns of a subscriber list");
        }
        return Ok(rows);
    }
    let text = String::from_utf8(bytes).with_context(|| format!("{shown} is not UTF-8 text"))?;
    rows_of(&shown, &text, format, columns)
}

/// A CSV whose columns are not those of a list.
#[derive(Debug)]
struct NotAList(String);

impl std::fmt::Display for NotAList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotAList {}

fn rows_of(file: &str, text: &str, format: Option<Format>, columns: &Columns) -> Result<Vec<Row>> {
    let mut records = csv::parse(text).into_iter();
    let Some(header) = records.next() else {
        return Err(NotAList(format!("{file} is empty")).into());
    };
    let header = header.fields;
    let format = match (format, columns.email.is_some()) {
        (_, true) => Format::Csv,
        (Some(f), false) => f,
        (None, false) => detect(&header).ok_or_else(|| {
            NotAList(format!(
                "{file}: the columns ({}) are not those of a Mailchimp, Substack, Ghost, listmonk or Buttondown export; name them with --email-column (and --name-column, --status-column, --tags-column)",
                header.join(", ")
            ))
        })?,
    };
    let index: HashMap<String, usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| (h.trim().to_ascii_lowercase(), i))
        .collect();
    let col = |name: &str| index.get(&name.to_ascii_lowercase()).copied();
    let mailchimp_standing = if col("clean_time").is_some() {
        Standing::Cleaned
    } else if col("unsub_time").is_some() {
        Standing::Unsubscribed
    } else {
        Standing::Subscribed
    };
    let email_col = match format {
        Format::Mailchimp => col("email address"),
        Format::Buttondown => col("email_address").or_else(|| col("email")),
        Format::Csv => columns.email.as_deref().and_then(col),
        _ => col("email"),
    }
    .ok_or_else(|| anyhow::anyhow!("{file}: no email column"))?;
    let mut rows = Vec::new();
    for record in records {
        let get = |c: Option<usize>| {
            c.and_then(|i| record.fields.get(i))
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
        };
        let flag = |name: &str| get(col(name)).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let email = get(Some(email_col)).unwrap_or_default().to_string();
        let (name, tags, standing) = match format {
            Format::Mailchimp => {
                let name = [get(col("first name")), get(col("last name"))]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                (Some(name), split_tags(get(col("tags"))), mailchimp_standing)
            }
            Format::Substack => {
                let standing = if flag("email_disabled") {
                    Standing::Unsubscribed
                } else {
                    Standing::Subscribed
                };
                let tags = if flag("active_subscription") {
                    vec!["paid".to_string()]
                } else {
                    Vec::new()
                };
                (get(col("name")).map(str::to_string), tags, standing)
            }
            Format::Ghost => {
                let standing = if flag("subscribed_to_emails") {
                    Standing::Subscribed
                } else {
                    Standing::Unsubscribed
                };
                (
                    get(col("name")).map(str::to_string),
                    split_tags(get(col("labels"))),
                    standing,
                )
            }
            Format::Listmonk => {
                let standing = match get(col("status")).map(str::to_ascii_lowercase).as_deref() {
                    Some("blocklisted" | "blacklisted" | "disabled") => Standing::Unsubscribed,
                    _ => Standing::Subscribed,
                };
                let tags = get(col("attributes"))
                    .and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok())
                    .and_then(|a| {
                        a.get("tags").and_then(|t| t.as_array()).map(|t| {
                            t.iter()
                                .filter_map(|x| x.as_str().map(str::to_string))
                                .collect()
                        })
                    })
                    .unwrap_or_default();
                (get(col("name")).map(str::to_string), tags, standing)
            }
            Format::Buttondown => {
                let kind = get(col("type").or_else(|| col("subscriber_type")))
                    .unwrap_or("regular")
                    .to_ascii_lowercase();
                let standing = match kind.as_str() {
                    "unsubscribed" | "removed" => Standing::Unsubscribed,
                    "undeliverable" | "complained" | "spammy" | "blocked" => Standing::Cleaned,
                    "unactivated" => Standing::Unconfirmed,
                    _ => Standing::Subscribed,
                };
                let name = get(col("name")).map(str::to_string);
                (name, split_tags(get(col("tags"))), standing)
            }
            Format::Csv => {
                let standing = match get(columns.status.as_deref().and_then(col))
                    .map(str::to_ascii_lowercase)
                    .as_deref()
                {
                    None
                    | Some("subscribed" | "active" | "enabled" | "confirmed" | "true" | "yes") => {
                        Standing::Subscribed
                    }
                    Some("cleaned" | "bounced" | "complained" | "undeliverable") => {
                        Standing::Cleaned
                    }
                    Some("unconfirmed" | "pending" | "unactivated") => Standing::Unconfirmed,
                    Some(_) => Standing::Unsubscribed,
                };
                (
                    get(columns.name.as_deref().and_then(col)).map(str::to_string),
                    split_tags(get(columns.tags.as_deref().and_then(col))),
                    standing,
                )
            }
        };
        rows.push(Row {
            at: format!("{file}:{}", record.line),
            email,
            name: name.filter(|n| !n.trim().is_empty()),
            tags,
            standing,
            format,
        });
    }
    Ok(rows)
}

/// Tags as exports write them: `"VIP","Blog"` (Mailchimp), `a, b` (Ghost), `["a","b"]`.
fn split_tags(value: Option<&str>) -> Vec<String> {
    let Some(value) = value else {
        return Vec::new();
    };
    if let Ok(serde_json::Value::Array(items)) = serde_json::from_str(value) {
        return items
            .iter()
            .filter_map(|i| i.as_str().map(|s| s.trim().to_string()))
            .filter(|s| !s.is_empty())
            .collect();
    }
    value
        .split(',')
        .map(|t| t.trim().trim_matches('"').trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(h: &str) -> Vec<String> {
        h.split(',').map(str::to_string).collect()
    }

    #[test]
    fn each_tool_is_told_by_its_columns() {
        assert_eq!(
            detect(&header(
                "Email Address,First Name,Last Name,MEMBER_RATING,OPTIN_TIME,LEID,EUID,TAGS"
            )),
            Some(Format::Mailchimp)
        );
        assert_eq!(
            detect(&header(
                "email,active_subscription,expiry,plan,email_disabled,created_at,first_payment_at"
            )),
            Some(Format::Substack)
        );
        assert_eq!(
            detect(&header(
                "id,email,name,note,subscribed_to_emails,complimentary_plan,stripe_customer_id,created_at,deleted_at,labels,tiers"
            )),
            Some(Format::Ghost)
        );
        assert_eq!(
            detect(&header("email,name,status,attributes")),
            Some(Format::Listmonk)
        );
        assert_eq!(
            detect(&header(
                "email_address,creation_date,notes,metadata,tags,referrer_url,secondary_id,type"
            )),
            Some(Format::Buttondown)
        );
        assert_eq!(detect(&header("address,who")), None);
    }

    #[test]
    fn tags_in_every_shape() {
        assert_eq!(split_tags(Some("\"VIP\",\"Blog\"")), ["VIP", "Blog"]);
        assert_eq!(split_tags(Some("a, b")), ["a", "b"]);
        assert_eq!(split_tags(Some("[\"x\",\"y\"]")), ["x", "y"]);
        assert!(split_tags(None).is_empty());
    }
}
