//! The reader's language: the built-in strings of the templates, the subject and the pages
//! of `serve` (data files in `locales/`, embedded, each overridable by a file of the same
//! name in the project's `locales/` folder) and how dates are written (month and day names
//! from chrono's locale data, the CLDR/glibc tables, never written by hand here).
//!
//! A tag such as `pt-BR` falls back to `pt`, then to English, string by string: a project's
//! file may change a single string and keep the rest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::problems::{Problem, Problems, line_of};

/// The languages whose strings ship with the program.
pub(crate) const BUILT_IN: [(&str, &str); 5] = [
    ("en", include_str!("../locales/en.toml")),
    ("fr", include_str!("../locales/fr.toml")),
    ("de", include_str!("../locales/de.toml")),
    ("es", include_str!("../locales/es.toml")),
    ("pt", include_str!("../locales/pt.toml")),
];

/// The strings of one language, resolved, and its tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Locale {
    /// As configured (`pt-BR`): what `<html lang>` says.
    pub tag: String,
    /// Every built-in key, from the first file of the fallback chain that has it.
    pub strings: BTreeMap<String, String>,
}

/// A tag as `[newsletter] locale` accepts it: a language of 2–3 letters, then subtags of
/// letters and digits (BCP 47's shape, e.g. `fr`, `pt-BR`, `zh-Hant-TW`).
pub(crate) fn valid_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let lang_ok = parts
        .next()
        .is_some_and(|l| (2..=3).contains(&l.len()) && l.chars().all(|c| c.is_ascii_alphabetic()));
    lang_ok
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// `pt-BR` → [`pt-BR`, `pt`, `en`], without repeats.
fn chain(tag: &str) -> Vec<String> {
    let mut out = vec![tag.to_string()];
    let language = tag.split('-').next().unwrap_or(tag).to_ascii_lowercase();
    for t in [language, "en".to_string()] {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(&t)) {
            out.push(t);
        }
    }
    out
}

fn built_in(tag: &str) -> Option<&'static str> {
    BUILT_IN
        .iter()
        .find(|(t, _)| t.eq_ignore_ascii_case(tag))
        .map(|(_, text)| *text)
}

/// The English strings: every key a locale has.
fn english() -> BTreeMap<String, String> {
    // The embedded files are tested to parse; an empty map would only show keys.
    toml::from_str(BUILT_IN[0].1).unwrap_or_default()
}

/// The `{slots}` of a string, in order.
fn slots(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        out.push(&after[..close]);
        rest = &after[close + 1..];
    }
    out
}

/// One file of strings, checked against the English keys and their slots.
fn read_file(
    path: &Path,
    text: &str,
    english: &BTreeMap<String, String>,
    problems: &mut Problems,
) -> BTreeMap<String, String> {
    let table: BTreeMap<String, toml::Spanned<toml::Value>> = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            problems.push(crate::problems::from_toml_error(path, text, 0, &e));
            return BTreeMap::new();
        }
    };
    let mut out = BTreeMap::new();
    for (key, value) in table {
        let at = |message: String| {
            Problem::new(path, message)
                .at_line(line_of(text, value.span().start))
                .field(key.clone())
        };
        let Some(s) = value.get_ref().as_str() else {
            problems.push(at("must be a string".into()));
            continue;
        };
        let Some(model) = english.get(&key) else {
            let known: Vec<&str> = english.keys().map(String::as_str).collect();
            problems.push(at(format!(
                "is not a built-in string; the keys are: {}",
                known.join(", ")
            )));
            continue;
        };
        let allowed = slots(model);
        if let Some(bad) = slots(s).into_iter().find(|x| !allowed.contains(x)) {
            problems.push(at(format!(
                "{{{bad}}} is not a value this string is given; it has {}",
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed
                        .iter()
                        .map(|a| format!("{{{a}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )));
            continue;
        }
        if key == "date_format" && !date_format_ok(s) {
            problems.push(at(format!(
                "\"{s}\" is not a date format chrono understands (e.g. \"%-d %B %Y\")"
            )));
            continue;
        }
        out.insert(key, s.to_string());
    }
    out
}

fn date_format_ok(format: &str) -> bool {
    chrono::format::StrftimeItems::new(format).all(|i| !matches!(i, chrono::format::Item::Error))
}

impl Locale {
    /// The strings for `tag`: the project's `dir/<tag>.toml` over the built-in file of the
    /// same tag, then the same for the language alone, then English. Returns the warnings
    /// (a language served by a fallback), or every problem of the project's files.
    pub fn load(tag: &str, dir: Option<&Path>) -> Result<(Locale, Vec<String>), Problems> {
        let english = english();
        let mut problems = Problems::default();
        let mut layers: Vec<(String, PathBuf, BTreeMap<String, String>)> = Vec::new();
        for t in chain(tag) {
            if let Some(dir) = dir {
                let path = dir.join(format!("{t}.toml"));
                match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        let strings = read_file(&path, &text, &english, &mut problems);
                        layers.push((t.clone(), path, strings));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => problems.push(Problem::new(&path, format!("cannot read: {e}"))),
                }
            }
            if let Some(text) = built_in(&t) {
                let origin = PathBuf::from(format!(
                    "(built-in) locales/{}.toml",
                    t.to_ascii_lowercase()
                ));
                let strings = read_file(&origin, text, &english, &mut problems);
                layers.push((t.clone(), origin, strings));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut strings = BTreeMap::new();
        let mut from: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for key in english.keys() {
            if let Some((t, _, s)) = layers.iter().find(|(_, _, s)| s.contains_key(key)) {
                strings.insert(key.clone(), s[key].clone());
                from.entry(t.clone()).or_default().push(key.clone());
            }
        }
        let mut warnings = Vec::new();
        let own = from.get(tag).map_or(0, Vec::len);
        if own < english.len() {
            let others: Vec<String> = from
                .iter()
                .filter(|(t, _)| t.as_str() != tag)
                .map(|(t, keys)| {
                    format!(
                        "{t} for {} string{}",
                        keys.len(),
                        if keys.len() == 1 { "" } else { "s" }
                    )
                })
                .collect();
            warnings.push(format!(
                "locale \"{tag}\": {} of the {} built-in strings are not in {tag}; using {} (a file locales/{tag}.toml next to the config can supply them)",
                english.len() - own,
                english.len(),
                others.join(", ")
            ));
        }
        Ok((
            Locale {
                tag: tag.to_string(),
                strings,
            },
            warnings,
        ))
    }

    /// The built-in English strings: what an edition frozen before locales were kept used.
    pub fn english() -> Locale {
        Locale {
            tag: "en".to_string(),
            strings: english(),
        }
    }

    /// A string by key; the key itself if it is missing (never for a loaded locale).
    pub fn get<'a>(&'a self, key: &'a str) -> &'a str {
        self.strings.get(key).map_or(key, String::as_str)
    }

    /// A string with its `{slots}` filled in.
    pub fn fill(&self, key: &str, values: &[(&str, &str)]) -> String {
        fill(self.get(key), |slot| {
            values
                .iter()
                .find(|(k, _)| *k == slot)
                .map(|(_, v)| (*v).to_string())
        })
    }

    /// A date as this language writes it.
    pub fn date(&self, date: chrono::NaiveDate) -> String {
        date.format_localized(self.get("date_format"), self.chrono_locale())
            .to_string()
    }

    /// The locale data for dates: the tag itself (`pt-BR` → `pt_BR`), else the language in
    /// its main country, else the language in a country of the same name (`it` → `it_IT`).
    fn chrono_locale(&self) -> chrono::Locale {
        let posix = self.tag.replace('-', "_");
        let language = self
            .tag
            .split('-')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let main = match language.as_str() {
            "en" => "en_US".to_string(),
            "pt" => "pt_PT".to_string(),
            "sv" => "sv_SE".to_string(),
            "da" => "da_DK".to_string(),
            "ja" => "ja_JP".to_string(),
            "zh" => "zh_CN".to_string(),
            other => format!("{other}_{}", other.to_ascii_uppercase()),
        };
        [posix, main]
            .iter()
            .find_map(|name| chrono::Locale::try_from(name.as_str()).ok())
            .unwrap_or(chrono::Locale::POSIX)
    }
}

/// Replaces each `{slot}` of `template` whose value `value` knows; leaves the others.
pub(crate) fn fill(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let slot = &after[..close];
        if let Some(v) = value(slot) {
            out.push_str(&v);
        } else {
            out.push('{');
            out.push_str(slot);
            out.push('}');
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn every_built_in_file_parses_and_has_every_string_with_the_same_slots() {
        let english = english();
        assert!(english.len() > 30);
        for (tag, text) in BUILT_IN {
            let mut problems = Problems::default();
            let strings = read_file(Path::new(tag), text, &english, &mut problems);
            assert!(problems.is_empty(), "{tag}: {problems}");
            for (key, model) in &english {
                let s = strings
                    .get(key)
                    .unwrap_or_else(|| panic!("{tag} lacks {key}"));
                let mut a = slots(s);
                let mut b = slots(model);
                a.sort_unstable();
                b.sort_unstable();
                if key != "reader" {
                    assert_eq!(a, b, "{tag}.{key}");
                }
            }
        }
    }

    #[test]
    fn dates_come_from_the_locale_data() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let date = |tag: &str| Locale::load(tag, None).unwrap().0.date(d);
        assert_eq!(date("en"), "27 November 2026");
        assert_eq!(date("fr"), "27 novembre 2026");
        assert_eq!(date("de"), "27. November 2026");
        assert_eq!(date("es"), "27 de noviembre de 2026");
        assert_eq!(date("pt"), "27 de novembro de 2026");
        assert_eq!(date("pt-BR"), "27 de novembro de 2026");
    }

    #[test]
    fn a_regional_tag_falls_back_to_its_language_then_english_with_a_warning() {
        let (pt_br, warnings) = Locale::load("pt-BR", None).unwrap();
        assert_eq!(pt_br.get("unsubscribe"), "Cancelar a inscrição");
        assert_eq!(pt_br.tag, "pt-BR");
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("using pt for"), "{}", warnings[0]);
        let (it, warnings) = Locale::load("it", None).unwrap();
        assert_eq!(it.get("unsubscribe"), "Unsubscribe");
        assert!(warnings[0].contains("using en for"), "{}", warnings[0]);
        // Italian month names still come from the locale data.
        assert_eq!(
            it.date(NaiveDate::from_ymd_opt(2026, 11, 27).unwrap()),
            "27 novembre 2026"
        );
        let (_, warnings) = Locale::load("fr", None).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn a_project_file_changes_single_strings_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("fr.toml"),
            "unsubscribe = \"Ne plus recevoir\"\n",
        )
        .unwrap();
        let (fr, warnings) = Locale::load("fr", Some(dir.path())).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(fr.get("unsubscribe"), "Ne plus recevoir");
        assert_eq!(fr.get("page_unsubscribe_button"), "Se désabonner");

        std::fs::write(
            dir.path().join("de.toml"),
            "# ours\nhello = \"Moin {gruss},\"\nunsubscrbe = \"x\"\nintro = 3\ndate_format = \"%Q\"\n",
        )
        .unwrap();
        let problems = Locale::load("de", Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(
            problems.contains("de.toml:2: `hello`: {gruss} is not a value"),
            "{problems}"
        );
        assert!(
            problems.contains("de.toml:3: `unsubscrbe`: is not a built-in string"),
            "{problems}"
        );
        assert!(
            problems.contains("de.toml:4: `intro`: must be a string"),
            "{problems}"
        );
        assert!(problems.contains("de.toml:5: `date_format`"), "{problems}");
    }

    #[test]
    fn fill_puts_values_in_their_slots_and_leaves_unknown_ones() {
        assert_eq!(
            fill("Hello {greeting}, {x} {", |s| (s == "greeting")
                .then(|| "Ana".into())),
            "Hello Ana, {x} {"
        );
    }

    #[test]
    fn tags_are_checked_for_shape() {
        for ok in ["en", "fr", "pt-BR", "zh-Hant-TW", "ast"] {
            assert!(valid_tag(ok), "{ok}");
        }
        for bad in ["", "e", "english", "pt_BR", "fr-", "fr/../x"] {
            assert!(!valid_tag(bad), "{bad}");
        }
    }
}
