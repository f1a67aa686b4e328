//! Property tests: no value in a config file or an article's front matter can make the
//! program panic; every out-of-range number is a problem with its field and line.

use std::path::Path;

use proptest::prelude::*;

use crate::config::Config;

/// The minimal config with every section whose numbers are tested.
fn base() -> String {
    crate::config::tests::GOOD.replace("kind = \"outbox\"", "kind = \"smtp\"")
        + "\n[selection]\n\n[smtp]\nhost = \"127.0.0.1\"\nsecurity = \"none\"\n\n\
           [[sources]]\nname = \"gazette\"\npath = \"feed.xml\"\n"
}

/// The numeric fields, by section, that the test gives random values.
const NUMERIC: [(&str, &[&str]); 3] = [
    (
        "smtp",
        &[
            "port",
            "connections",
            "connect_timeout_seconds",
            "command_timeout_seconds",
            "max_per_connection",
            "rate_per_second",
            "daily_quota",
            "retries_per_run",
            "retry_delay_seconds",
            "max_attempts",
            "max_consecutive_failures",
        ],
    ),
    ("sources", &["timeout_seconds", "max_bytes"]),
    ("selection", &["first_days", "max_articles"]),
];

/// The fields of those sections that are not numbers: every field is in one list or the
/// other, so a new field without a generator fails `every_field_has_a_generator`.
const OTHER: [(&str, &[&str]); 3] = [
    (
        "smtp",
        &[
            "host",
            "security",
            "username",
            "password_env",
            "password_file",
            "oauth_token_command",
            "oauth_token_file",
            "ca_file",
            "hello_name",
            "pipelining",
        ],
    ),
    (
        "sources",
        &["name", "url", "path", "tags", "include_content", "ca_file"],
    ),
    (
        "selection",
        &["include_tags", "exclude_tags", "pinned", "audience"],
    ),
];

/// The config with `key = value` put at the top of `section` (`[[sources]]` for sources).
fn with(section: &str, key: &str, value: &str) -> String {
    let header = if section == "sources" {
        "[[sources]]\n".to_string()
    } else {
        format!("[{section}]\n")
    };
    base().replacen(&header, &format!("{header}{key} = {value}\n"), 1)
}

/// The fields a section's type accepts, read from its own "unknown field" error, which
/// lists every field it expects: the list comes from the type, not from this test.
fn declared_fields(section: &str) -> Vec<String> {
    let Err(problems) = Config::from_str(&with(section, "zz_probe", "1"), Path::new("n.toml"))
    else {
        panic!("an unknown field was accepted in [{section}]");
    };
    let text = problems.to_string();
    let expected = text
        .split("expected one of ")
        .nth(1)
        .unwrap_or_else(|| panic!("no field list in: {text}"));
    expected
        .split(',')
        .map(|f| {
            f.trim()
                .trim_matches(|c: char| c == '`' || !c.is_ascii_graphic())
                .to_string()
        })
        .filter(|f| !f.is_empty())
        .map(|f| f.split('`').next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn every_field_has_a_generator() {
    for ((section, numeric), (_, other)) in NUMERIC.iter().zip(OTHER.iter()) {
        let mut known: Vec<&str> = numeric.iter().chain(other.iter()).copied().collect();
        known.sort_unstable();
        let mut declared = declared_fields(section);
        declared.sort();
        assert_eq!(
            declared, known,
            "[{section}]: a field without a generator, or a stale one"
        );
    }
}

/// The front matter's fields (and the image table's), from their own "unknown field"
/// errors; each needs a generator in `no_front_matter_panics`.
#[test]
fn every_front_matter_field_has_a_generator() {
    let generated = [
        "title",
        "date",
        "link",
        "summary",
        "selected",
        "author",
        "tags",
        "image",
        "preheader",
    ];
    let image_generated = ["url", "alt", "caption", "credit", "width"];
    for (probe, expected) in [
        (
            "zz_probe = 1\n[image]\nurl = \"https://h.example/p.jpg\"\nalt = \"a\"",
            &generated[..],
        ),
        (
            "[image]\nurl = \"https://h.example/p.jpg\"\nalt = \"a\"\nzz_probe = 1",
            &image_generated[..],
        ),
    ] {
        let text = format!(
            "+++\ntitle = \"t\"\ndate = 2026-11-24\nlink = \"https://h.example\"\nsummary = \"s\"\n{probe}\n+++\n"
        );
        let Err(problems) = crate::input::articles::parse(&text, Path::new("a.md")) else {
            panic!("an unknown front-matter field was accepted");
        };
        let message = problems.to_string();
        let mut declared: Vec<String> = message
            .split("expected one of ")
            .nth(1)
            .unwrap_or_else(|| panic!("no field list in: {message}"))
            .split(',')
            .filter_map(|f| f.split('`').nth(1).map(str::to_string))
            .collect();
        declared.sort();
        let mut known: Vec<&str> = expected.to_vec();
        known.sort_unstable();
        assert_eq!(declared, known, "a front-matter field without a generator");
    }
}

/// Numbers as a TOML file may hold them: edges, huge, tiny, negative, NaN and infinities.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (-5i64..5).prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}")),
        (0.0f64..100.0).prop_map(|f| format!("{f:?}")),
        Just("nan".to_string()),
        Just("inf".to_string()),
        Just("-inf".to_string()),
        Just("1e300".to_string()),
        Just("-0.0".to_string()),
        Just("18446744073709551615".to_string()),
    ]
}

fn field() -> impl Strategy<Value = (&'static str, &'static str)> {
    let all: Vec<(&'static str, &'static str)> = NUMERIC
        .iter()
        .flat_map(|(s, fields)| fields.iter().map(move |f| (*s, *f)))
        .collect();
    proptest::sample::select(all)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    /// Any number in any numeric field: the config loads or is refused with that field
    /// named; it never panics, and what loads is within range.
    #[test]
    fn no_number_in_the_config_panics((section, key) in field(), value in number()) {
        let source = with(section, key, &value);
        match Config::from_str(&source, Path::new("n.toml")) {
            Ok(_) => {}
            Err(problems) => {
                let text = problems.to_string();
                prop_assert!(
                    text.contains(&format!("{section}.{key}")) || text.contains("n.toml:"),
                    "{text}"
                );
            }
        }
    }

    /// Any value in every front-matter field (the list checked by
    /// `every_front_matter_field_has_a_generator`), and any body.
    #[test]
    fn no_front_matter_panics(
        title in ".{0,40}",
        date in prop_oneof![Just("2026-11-24".to_string()), "[0-9]{4}-[0-9]{2}-[0-9]{2}", ".{0,12}"],
        link in ".{0,30}",
        summary in ".{0,30}",
        selected in prop_oneof![Just("true".to_string()), Just("1".to_string()), Just("\"x\"".to_string())],
        author in ".{0,20}",
        tags in prop::collection::vec(".{0,8}", 0..4),
        preheader in ".{0,240}",
        url in ".{0,30}",
        alt in ".{0,20}",
        caption in ".{0,20}",
        credit in ".{0,20}",
        width in number(),
        body in ".{0,60}",
    ) {
        let text = format!(
            "+++\ntitle = {title:?}\ndate = {date}\nlink = {link:?}\nsummary = {summary:?}\nselected = {selected}\n\
             author = {author:?}\ntags = {tags:?}\npreheader = {preheader:?}\n[image]\nurl = {url:?}\nalt = {alt:?}\ncaption = {caption:?}\n\
             credit = {credit:?}\nwidth = {width}\n+++\n{body}\n"
        );
        let _ = crate::input::articles::parse(&text, Path::new("a.md"));
    }
}
