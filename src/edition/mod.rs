//! Which articles make an edition, in which order, and the edition's id: all deterministic,
//! so the same inputs give the same edition on any machine.

pub(crate) mod selection;

use chrono::NaiveDate;
use sha2::{Digest, Sha256};

use crate::input::articles::Article;

#[derive(Debug, Clone)]
pub struct Edition {
    /// `YYYY-MM-DD-xxxxxx`: the date and a short hash of the article ids.
    pub id: String,
    pub date: NaiveDate,
    /// Newest first; articles of the same date by id.
    pub articles: Vec<Article>,
}

impl Edition {
    pub fn new(date: NaiveDate, mut articles: Vec<Article>) -> Edition {
        articles.sort_by(|a, b| b.date.cmp(&a.date).then_with(|| a.id.cmp(&b.id)));
        let mut hash = Sha256::new();
        for a in &articles {
            hash.update(a.id.as_bytes());
            hash.update([0]);
        }
        let digest = hash.finalize();
        let short = crate::token::hex(&digest[..3]);
        Edition {
            id: format!("{date}-{short}"),
            date,
            articles,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn article(id: &str, day: u32, selected: bool) -> Article {
        Article {
            id: id.into(),
            path: PathBuf::from(format!("{id}.md")),
            title: id.into(),
            date: NaiveDate::from_ymd_opt(2026, 11, day).unwrap(),
            link: "https://example.org".into(),
            summary: "s".into(),
            selected,
            author: None,
            tags: vec![],
            image: None,
            preheader: None,
            body_markdown: String::new(),
            body_html: String::new(),
            source: "articles".into(),
            guid: None,
            undated: false,
            notes: Vec::new(),
        }
    }

    #[test]
    fn articles_are_newest_first_and_ties_go_by_id() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let e = Edition::new(
            date,
            vec![
                article("b", 20, true),
                article("c", 25, true),
                article("a", 20, true),
            ],
        );
        let ids: Vec<_> = e.articles.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["c", "a", "b"]);
        let again = Edition::new(
            date,
            vec![
                article("a", 20, true),
                article("b", 20, true),
                article("c", 25, true),
            ],
        );
        assert_eq!(e.id, again.id);
        assert!(e.id.starts_with("2026-11-27-"));
    }
}
