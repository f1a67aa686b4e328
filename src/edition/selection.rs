//! Which candidate articles make an edition, and why each one is in or out. The rules run
//! in a fixed order, so the explanation names the first rule that decided.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use chrono::NaiveDate;

use crate::config::Selection;
use crate::input::articles::{Article, MARKDOWN_SOURCE};

/// What the editions sent in full say about each feed source.
#[derive(Debug, Clone, Default)]
pub struct SourceHistory {
    /// The date of the last edition that read the source.
    pub last_read: HashMap<String, NaiveDate>,
    /// The date of the first edition for which the source failed.
    pub first_failed: HashMap<String, NaiveDate>,
}

/// The rules for one edition, resolved from the config, the command line and the journal.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    today: NaiveDate,
    history: SourceHistory,
    /// `--since`: one window start for every article.
    since: Option<NaiveDate>,
    /// Articles dated after this day are left out.
    until: Option<NaiveDate>,
    pub selection: Selection,
}

impl Rules {
    pub(crate) fn new(
        selection: &Selection,
        today: NaiveDate,
        history: SourceHistory,
        since: Option<NaiveDate>,
        until: Option<NaiveDate>,
    ) -> Rules {
        Rules {
            today,
            history,
            since,
            until,
            selection: selection.clone(),
        }
    }

    /// `--since`/`--until` were given: the window then applies to Markdown articles too.
    fn explicit_window(&self) -> bool {
        self.since.is_some() || self.until.is_some()
    }

    /// Where a source's window starts, and why. By default everything since the last
    /// edition that read the source; a source that failed and was never read since starts
    /// where the window of the edition it first failed for did; a new source starts
    /// `first_days` back.
    fn since_for(&self, source: &str) -> (NaiveDate, String) {
        let first_days = chrono::Days::new(u64::from(self.selection.first_days));
        if let Some(d) = self.since {
            return (d, "--since".into());
        }
        if let Some(&d) = self.history.last_read.get(source) {
            return (d, format!("the last edition that read {source}"));
        }
        if let Some(&d) = self.history.first_failed.get(source) {
            return (
                d - first_days,
                format!(
                    "{source} failed for the edition of {d}; its window starts where that one's did"
                ),
            );
        }
        (
            self.today - first_days,
            format!(
                "the first edition with {source} takes the last {} days",
                self.selection.first_days
            ),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    In(String),
    Out(String),
}

/// One candidate and what became of it.
#[derive(Debug, Clone)]
pub struct Explained {
    pub id: String,
    pub source: String,
    pub date: NaiveDate,
    pub title: String,
    pub verdict: Verdict,
}

/// Applies the rules; returns the chosen articles and an explanation for every candidate,
/// in the order the candidates came (Markdown folder first, then the sources in order).
pub(crate) fn select(
    all: Vec<Article>,
    already_sent: &HashSet<String>,
    rules: &Rules,
) -> (Vec<Article>, Vec<Explained>) {
    let s = &rules.selection;
    let pinned: HashSet<&str> = s.pinned.iter().map(String::as_str).collect();
    let mut seen_guid: HashMap<String, String> = HashMap::new();
    let mut seen_link: HashMap<String, String> = HashMap::new();
    let mut verdicts = Vec::with_capacity(all.len());
    for a in &all {
        let is_pinned = pinned.contains(a.id.as_str()) || pinned.contains(a.link.as_str());
        let link_key = normalize_link(&a.link);
        let duplicate = a
            .guid
            .as_ref()
            .and_then(|g| seen_guid.get(g))
            .map(|first| format!("duplicate of {first} (same GUID)"))
            .or_else(|| {
                seen_link
                    .get(&link_key)
                    .map(|first| format!("duplicate of {first} (same link)"))
            });
        let verdict = if let Some(why) = duplicate {
            Verdict::Out(why)
        } else if already_sent.contains(&a.id) {
            Verdict::Out("already in an earlier edition".into())
        } else if is_pinned {
            Verdict::In("pinned".into())
        } else if a.source == MARKDOWN_SOURCE && !a.selected {
            Verdict::Out("a draft: `selected = true` is not set".into())
        } else if let Some(why) = outside_window(a, rules) {
            Verdict::Out(why)
        } else if let Some(tag) = a.tags.iter().find(|t| s.exclude_tags.contains(t)) {
            Verdict::Out(format!("tagged {tag:?}, which is excluded"))
        } else if !s.include_tags.is_empty() && !a.tags.iter().any(|t| s.include_tags.contains(t)) {
            Verdict::Out(format!(
                "has none of the included tags ({})",
                s.include_tags.join(", ")
            ))
        } else if a.source == MARKDOWN_SOURCE {
            Verdict::In("selected in its front matter".into())
        } else if a.undated {
            Verdict::In("no date in the feed: counted as published today".into())
        } else {
            let (since, why) = rules.since_for(&a.source);
            Verdict::In(format!("published since {since} ({why})"))
        };
        // The first occurrence of an item wins, whatever became of it.
        if let Some(g) = &a.guid {
            seen_guid.entry(g.clone()).or_insert_with(|| a.id.clone());
        }
        seen_link.entry(link_key).or_insert_with(|| a.id.clone());
        verdicts.push(verdict);
    }

    // The limit: pinned first, then the newest, then by id.
    if let Some(max) = s.max_articles {
        let mut chosen: Vec<usize> = (0..all.len())
            .filter(|&i| matches!(verdicts[i], Verdict::In(_)))
            .collect();
        chosen.sort_by(|&x, &y| {
            let px = verdicts[x] == Verdict::In("pinned".into());
            let py = verdicts[y] == Verdict::In("pinned".into());
            py.cmp(&px)
                .then(all[y].date.cmp(&all[x].date))
                .then(all[x].id.cmp(&all[y].id))
        });
        for &i in chosen.iter().skip(max) {
            verdicts[i] = Verdict::Out(format!("over the limit of {max} articles (older)"));
        }
    }

    let explained = all
        .iter()
        .zip(&verdicts)
        .map(|(a, v)| Explained {
            id: a.id.clone(),
            source: a.source.clone(),
            date: a.date,
            title: a.title.clone(),
            verdict: v.clone(),
        })
        .collect();
    let chosen = all
        .into_iter()
        .zip(verdicts)
        .filter(|(_, v)| matches!(v, Verdict::In(_)))
        .map(|(a, _)| a)
        .collect();
    (chosen, explained)
}

fn outside_window(a: &Article, rules: &Rules) -> Option<String> {
    if a.source == MARKDOWN_SOURCE && !rules.explicit_window() {
        return None;
    }
    let (since, why) = rules.since_for(&a.source);
    if a.date < since {
        return Some(format!("published {}, before {since} ({why})", a.date));
    }
    match rules.until {
        Some(until) if a.date > until => {
            Some(format!("published {}, after --until {until}", a.date))
        }
        _ => None,
    }
}

/// Links that differ only in scheme, a trailing slash or a fragment are the same page.
fn normalize_link(link: &str) -> String {
    let l = link.trim();
    let l = l
        .strip_prefix("https://")
        .or_else(|| l.strip_prefix("http://"))
        .unwrap_or(l);
    let l = l.split('#').next().unwrap_or(l);
    l.trim_end_matches('/').to_ascii_lowercase()
}

/// The explanation as lines for a terminal or a log.
pub(crate) fn render(explained: &[Explained]) -> String {
    let mut out = String::new();
    for e in explained {
        let (word, why) = match &e.verdict {
            Verdict::In(w) => ("in ", w),
            Verdict::Out(w) => ("out", w),
        };
        let _ = writeln!(
            out,
            "{word}  {}  {:<16} {:?}: {why}",
            e.date, e.source, e.title
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn item(id: &str, source: &str, day: u32, link: &str, tags: &[&str]) -> Article {
        Article {
            id: id.into(),
            path: PathBuf::from(id),
            title: id.into(),
            date: NaiveDate::from_ymd_opt(2026, 11, day).unwrap(),
            link: link.into(),
            summary: "s".into(),
            selected: true,
            author: None,
            tags: tags.iter().map(std::string::ToString::to_string).collect(),
            image: None,
            preheader: None,
            body_markdown: String::new(),
            body_html: String::new(),
            source: source.into(),
            guid: (source != MARKDOWN_SOURCE).then(|| format!("guid-{link}")),
            undated: false,
            notes: Vec::new(),
        }
    }

    fn why_of(explained: &[Explained], id: &str) -> Verdict {
        explained
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.verdict.clone())
            .unwrap()
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    #[test]
    fn every_rule_is_explained() {
        let selection = Selection {
            exclude_tags: vec!["sport".into()],
            max_articles: Some(2),
            pinned: vec!["https://x.example/pinned".into()],
            ..Selection::default()
        };
        let history = SourceHistory {
            last_read: [("a".to_string(), day(20))].into(),
            first_failed: [("b".to_string(), day(13))].into(),
        };
        let rules = Rules::new(&selection, day(27), history, None, None);
        let sent: HashSet<String> = ["a-old".to_string()].into();
        let (chosen, explained) = select(
            vec![
                item("md", MARKDOWN_SOURCE, 2, "https://x.example/md", &[]),
                item("a-old", "a", 22, "https://x.example/old", &[]),
                item("a-new", "a", 25, "https://x.example/new", &[]),
                item("b-dup", "b", 25, "http://x.example/new/", &[]),
                item("a-stale", "a", 10, "https://x.example/stale", &[]),
                item("a-sport", "a", 26, "https://x.example/sport", &["sport"]),
                item("a-pin", "a", 1, "https://x.example/pinned", &[]),
                item("a-newer", "a", 26, "https://x.example/newer", &[]),
                // b failed for the edition of the 13th and was never read: its window
                // starts where that edition's did, 7 days earlier.
                item("b-late", "b", 8, "https://x.example/b-late", &[]),
                item("b-older", "b", 5, "https://x.example/b-older", &[]),
            ],
            &sent,
            &rules,
        );
        let ids: Vec<_> = chosen.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["a-pin", "a-newer"]);
        assert!(
            matches!(&why_of(&explained, "b-late"), Verdict::Out(w) if w.contains("over the limit"))
        );
        assert!(
            matches!(&why_of(&explained, "b-older"), Verdict::Out(w) if w.contains("before 2026-11-06 (b failed for the edition of 2026-11-13"))
        );
        let why: HashMap<_, _> = explained
            .iter()
            .map(|e| (e.id.as_str(), e.verdict.clone()))
            .collect();
        assert!(matches!(&why["md"], Verdict::Out(w) if w.contains("over the limit")));
        assert!(matches!(&why["a-old"], Verdict::Out(w) if w.contains("earlier edition")));
        assert!(matches!(&why["b-dup"], Verdict::Out(w) if w.contains("duplicate of a-new")));
        assert!(matches!(&why["a-stale"], Verdict::Out(w) if w.contains("before 2026-11-20")));
        assert!(matches!(&why["a-sport"], Verdict::Out(w) if w.contains("excluded")));
        assert_eq!(why["a-pin"], Verdict::In("pinned".into()));
        assert!(matches!(&why["a-new"], Verdict::Out(w) if w.contains("over the limit")));
    }
}
