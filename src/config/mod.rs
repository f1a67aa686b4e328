//! `newsletter.toml`: parsed strictly (unknown keys are errors) by a pure function into one
//! resolved, typed value that every command receives.

mod approval;
mod archive;
mod bounces;
mod checks;
mod feeds;
mod schedule;
pub(crate) mod secret;
mod selection;
mod signup;
mod smtp;
mod webhooks;

pub(crate) use approval::Approval;
use approval::{RawApproval, resolve_approval};
pub(crate) use archive::Archive;
use archive::{RawArchive, resolve_archive};
pub(crate) use bounces::{Bounces, Imap, Thresholds};
use bounces::{RawBounces, resolve_bounces};
pub(crate) use checks::token_route;
use checks::{MAX_LINE_CHARS, check_host, check_web_url};
pub(crate) use feeds::{Location, Source};
use feeds::{RawSource, resolve_sources};
pub(crate) use schedule::Schedule;
#[cfg(test)]
pub(crate) use schedule::Zone;
use schedule::{RawSchedule, resolve_schedule};
pub(crate) use selection::Selection;
use selection::{RawSelection, resolve_selection};
pub(crate) use signup::Signup;
use signup::{RawSignup, resolve_signup};
pub(crate) use smtp::{Backoff, Pacing, Security, Smtp, Transport, is_loopback};
use smtp::{RawSmtp, RawTransport, TransportKind, resolve_smtp};
pub(crate) use webhooks::Webhooks;
use webhooks::{RawWebhooks, resolve_webhooks};

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::config::secret::SecretSource;
use crate::input::address::{EmailAddress, NamedAddress};
use crate::problems::{Problem, Problems, from_toml_error};

#[derive(Debug, Clone)]
pub struct Config {
    /// The config file itself, for messages.
    pub path: PathBuf,
    pub newsletter: Newsletter,
    pub unsubscribe: Unsubscribe,
    pub paths: Paths,
    pub transport: Transport,
    /// Signing keys, one signature each (an RSA and an Ed25519 key side by side).
    pub dkim: Vec<Dkim>,
    pub sources: Vec<Source>,
    pub selection: Selection,
    /// When `send --scheduled` starts and sends editions; `None` without `[schedule]`.
    pub schedule: Option<Schedule>,
    /// Editions wait for an editor's approval; `None` without `[approval]`.
    pub approval: Option<Approval>,
    /// The return path, where mail that comes back is read, and the rates that stop sending.
    pub bounces: Bounces,
    /// The providers' webhooks `serve` accepts.
    pub webhooks: Webhooks,
    /// The web archive of the editions; `None` without `[archive]`.
    pub archive: Option<Archive>,
    /// The sign-up form of `serve`; `None` without `[signup]`.
    pub signup: Option<Signup>,
}

/// One DKIM key (RFC 6376): it signs every header of every message.
#[derive(Debug, Clone)]
pub struct Dkim {
    /// The signing domain (`d=`), usually the From domain.
    pub domain: String,
    /// The selector (`s=`): the key is published at `SELECTOR._domainkey.DOMAIN`.
    pub selector: String,
    /// What the key must be, when the config says; the key file says otherwise.
    pub algorithm: Option<DkimAlgorithm>,
    /// A PEM file: RSA (`openssl genrsa 2048`, PKCS#1 or PKCS#8) or Ed25519
    /// (`openssl genpkey -algorithm ed25519`).
    pub private_key_file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDkim {
    domain: Spanned<String>,
    selector: Spanned<String>,
    algorithm: Option<DkimAlgorithm>,
    private_key_file: PathBuf,
}

/// `[dkim]` for one key, `[[dkim]]` for several.
struct RawDkims(Vec<RawDkim>);

impl<'de> Deserialize<'de> for RawDkims {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = RawDkims;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a [dkim] table or [[dkim]] tables")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawDkims, A::Error> {
                let one = RawDkim::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(RawDkims(vec![one]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<RawDkims, A::Error> {
                Vec::<RawDkim>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(RawDkims)
            }
        }
        d.deserialize_any(Visit)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DkimAlgorithm {
    Rsa,
    Ed25519,
}

#[derive(Debug, Clone)]
pub struct Newsletter {
    pub name: String,
    pub from: NamedAddress,
    pub reply_to: Option<NamedAddress>,
    pub contact: EmailAddress,
    pub website: Option<String>,
    /// Where readers get help with the list: the `List-Help` header (RFC 2369).
    pub help_url: Option<String>,
    pub list_id: String,
    /// The reader's language (`fr`, `pt-BR`): strings, dates and `<html lang>`.
    pub locale: String,
    /// The greeting for a subscriber with no name; the locale's own word when unset.
    pub greeting_fallback: Option<String>,
    /// The sender's postal address, shown in the footer (CAN-SPAM and CASL ask for one).
    pub postal_address: Option<String>,
    /// Why the reader receives this, shown in the footer.
    pub reason: Option<String>,
    /// The inbox preview text; the first article's summary when unset.
    pub preheader: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Unsubscribe {
    /// An https URL containing `{token}`.
    pub url: String,
    /// The reader's preference page (topics, or leave), an https URL with `{token}`.
    pub manage_url: Option<String>,
    pub mailto: Option<EmailAddress>,
    pub secret: SecretSource,
    /// Keys retired by a rotation, still accepted for links in mail already sent.
    pub previous: Vec<SecretSource>,
}

#[derive(Debug, Clone)]
pub struct Paths {
    pub articles: PathBuf,
    pub subscribers: PathBuf,
    /// `None` when no template folder exists: the embedded defaults are used alone.
    pub templates: Option<PathBuf>,
    /// The project's own strings (`locales/fr.toml`), over the built-in ones; `None` when
    /// the folder does not exist.
    pub locales: Option<PathBuf>,
    pub state: PathBuf,
}

// ---- the file as written -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    newsletter: RawNewsletter,
    unsubscribe: RawUnsubscribe,
    #[serde(default)]
    paths: RawPaths,
    #[serde(default)]
    transport: RawTransport,
    smtp: Option<RawSmtp>,
    dkim: Option<RawDkims>,
    #[serde(default)]
    sources: Vec<Spanned<RawSource>>,
    #[serde(default)]
    selection: RawSelection,
    schedule: Option<RawSchedule>,
    approval: Option<RawApproval>,
    bounces: Option<RawBounces>,
    webhooks: Option<RawWebhooks>,
    archive: Option<RawArchive>,
    signup: Option<RawSignup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNewsletter {
    name: Spanned<String>,
    from: Spanned<String>,
    reply_to: Option<Spanned<String>>,
    contact: Spanned<String>,
    website: Option<Spanned<String>>,
    help_url: Option<Spanned<String>>,
    list_id: Spanned<String>,
    locale: Option<Spanned<String>>,
    greeting_fallback: Option<Spanned<String>>,
    postal_address: Option<Spanned<String>>,
    reason: Option<Spanned<String>>,
    preheader: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnsubscribe {
    url: Spanned<String>,
    manage_url: Option<Spanned<String>>,
    mailto: Option<Spanned<String>>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    previous_secret_env: Option<String>,
    previous_secret_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPaths {
    #[serde(default = "default_articles")]
    articles: PathBuf,
    #[serde(default = "default_subscribers")]
    subscribers: PathBuf,
    templates: Option<Spanned<PathBuf>>,
    locales: Option<Spanned<PathBuf>>,
    #[serde(default = "default_state")]
    state: PathBuf,
}

fn default_articles() -> PathBuf {
    PathBuf::from("articles")
}
fn default_subscribers() -> PathBuf {
    PathBuf::from("subscribers.toml")
}
fn default_state() -> PathBuf {
    PathBuf::from("newsletter.db")
}

impl Default for RawPaths {
    fn default() -> Self {
        RawPaths {
            articles: default_articles(),
            subscribers: default_subscribers(),
            templates: None,
            locales: None,
            state: default_state(),
        }
    }
}

impl Config {
    /// Reads and resolves the config file; relative paths in it are relative to its folder.
    pub fn load(path: &Path) -> Result<Config, Problems> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| Problem::new(path, format!("cannot read the config file: {e}")))?;
        Config::from_str(&source, path)
    }

    /// Parses the text of a config file named `path`, checking every field; returns all
    /// problems found at once.
    pub fn from_str(source: &str, path: &Path) -> Result<Config, Problems> {
        let raw: RawConfig =
            toml::from_str(source).map_err(|e| from_toml_error(path, source, 0, &e))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut problems = Problems::default();
        let at = |field: &str, span: std::ops::Range<usize>, message: String| {
            Problem::new(path, message)
                .at_offset(source, span.start)
                .field(field)
        };

        let n = &raw.newsletter;
        let mut check_addr = |field: &str, value: &Spanned<String>| -> Option<NamedAddress> {
            NamedAddress::parse(value.get_ref())
                .map_err(|e| problems.push(at(field, value.span(), e)))
                .ok()
        };
        let from = check_addr("newsletter.from", &n.from);
        let reply_to = n
            .reply_to
            .as_ref()
            .map(|r| check_addr("newsletter.reply_to", r));
        let contact = EmailAddress::parse(n.contact.get_ref())
            .map_err(|e| problems.push(at("newsletter.contact", n.contact.span(), e)))
            .ok();
        for (field, value) in [
            ("newsletter.name", Some(&n.name)),
            ("newsletter.list_id", Some(&n.list_id)),
            ("newsletter.greeting_fallback", n.greeting_fallback.as_ref()),
            ("newsletter.postal_address", n.postal_address.as_ref()),
            ("newsletter.reason", n.reason.as_ref()),
            ("newsletter.preheader", n.preheader.as_ref()),
        ] {
            let Some(value) = value else { continue };
            if value.get_ref().trim().is_empty() || value.get_ref().chars().any(char::is_control) {
                problems.push(at(
                    field,
                    value.span(),
                    "must be a non-empty single line".into(),
                ));
            } else if value.get_ref().chars().count() > MAX_LINE_CHARS {
                problems.push(at(
                    field,
                    value.span(),
                    format!("may have at most {MAX_LINE_CHARS} characters"),
                ));
            }
        }
        if let Some(l) = &n.locale
            && !crate::locale::valid_tag(l.get_ref())
        {
            problems.push(at(
                "newsletter.locale",
                l.span(),
                "must be a language tag such as \"en\", \"fr\" or \"pt-BR\"".into(),
            ));
        }
        if !n
            .list_id
            .get_ref()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            problems.push(at(
                "newsletter.list_id",
                n.list_id.span(),
                "may hold only letters, digits, dots and hyphens (RFC 2919), e.g. \"weekly.example.org\"".into(),
            ));
        }
        let website = n.website.as_ref().and_then(|site| {
            check_web_url(site.get_ref(), false)
                .map_err(|e| problems.push(at("newsletter.website", site.span(), e)))
                .ok()
        });
        let help_url = n.help_url.as_ref().and_then(|help| {
            check_web_url(help.get_ref(), false)
                .map_err(|e| problems.push(at("newsletter.help_url", help.span(), e)))
                .ok()
        });
        let bounces = resolve_bounces(raw.bounces, &dir, path, source, &mut problems);
        let webhooks = resolve_webhooks(raw.webhooks, &dir, path, &mut problems);
        let archive = resolve_archive(raw.archive, &dir, path, source, &mut problems);
        let signup = resolve_signup(raw.signup, path, source, &mut problems);

        let u = &raw.unsubscribe;
        let unsubscribe_url = check_web_url(u.url.get_ref(), true)
            .map_err(|e| problems.push(at("unsubscribe.url", u.url.span(), e)))
            .unwrap_or_default();
        let manage_url = u.manage_url.as_ref().and_then(|m| {
            check_web_url(m.get_ref(), true)
                .map_err(|e| problems.push(at("unsubscribe.manage_url", m.span(), e)))
                .ok()
        });
        let mailto = u.mailto.as_ref().and_then(|m| {
            EmailAddress::parse(m.get_ref())
                .map_err(|e| problems.push(at("unsubscribe.mailto", m.span(), e)))
                .ok()
        });
        let secret = SecretSource::from_pair(
            u.secret_env.as_ref(),
            u.secret_file.as_ref(),
            &dir,
            "secret",
        )
        .map_err(|why| {
            problems.push(
                Problem::new(path, format!("{why}: the key that signs unsubscribe links"))
                    .field("unsubscribe"),
            );
        })
        .ok();

        let templates = match &raw.paths.templates {
            Some(t) => {
                let p = dir.join(t.get_ref());
                if !p.is_dir() {
                    problems.push(at(
                        "paths.templates",
                        t.span(),
                        format!("{} is not a folder", p.display()),
                    ));
                }
                Some(p)
            }
            None => Some(dir.join("templates")).filter(|p| p.is_dir()),
        };
        let locales = match &raw.paths.locales {
            Some(t) => {
                let p = dir.join(t.get_ref());
                if !p.is_dir() {
                    problems.push(at(
                        "paths.locales",
                        t.span(),
                        format!("{} is not a folder", p.display()),
                    ));
                }
                Some(p)
            }
            None => Some(dir.join("locales")).filter(|p| p.is_dir()),
        };
        let paths = Paths {
            articles: dir.join(&raw.paths.articles),
            subscribers: dir.join(&raw.paths.subscribers),
            templates,
            locales,
            state: dir.join(&raw.paths.state),
        };

        let transport = match (&raw.transport.kind, raw.smtp) {
            (TransportKind::Outbox, _) => Some(Transport::Outbox(
                dir.join(
                    raw.transport
                        .outbox
                        .as_deref()
                        .unwrap_or(Path::new("outbox")),
                ),
            )),
            (TransportKind::Smtp, None) => {
                problems.push(
                    Problem::new(path, "transport is \"smtp\" but there is no [smtp] section")
                        .field("smtp"),
                );
                None
            }
            (TransportKind::Smtp, Some(s)) => resolve_smtp(s, &dir, path, source, &mut problems),
        };

        let sources = resolve_sources(&raw.sources, &dir, path, source, &mut problems);
        let selection = resolve_selection(raw.selection, path, source, &mut problems);
        let schedule = resolve_schedule(raw.schedule, path, source, &mut problems);
        let approval = resolve_approval(raw.approval, path, source, &mut problems);
        let mut dkim = Vec::new();
        for d in raw.dkim.map(|d| d.0).unwrap_or_default() {
            let domain = check_host(d.domain.get_ref(), false)
                .map_err(|e| problems.push(at("dkim.domain", d.domain.span(), e)))
                .ok();
            let selector = d.selector.get_ref();
            let selector_ok = !selector.is_empty()
                && selector.len() <= 63 * 3
                && selector.split('.').all(|l| {
                    !l.is_empty()
                        && l.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                });
            if !selector_ok {
                problems.push(at(
                    "dkim.selector",
                    d.selector.span(),
                    "must be DNS labels of letters, digits, '-' and '_', e.g. \"mail2026\"".into(),
                ));
            }
            let Some(domain) = domain else { continue };
            if !selector_ok {
                continue;
            }
            if dkim
                .iter()
                .any(|k: &Dkim| k.domain == domain && &k.selector == selector)
            {
                problems.push(at(
                    "dkim.selector",
                    d.selector.span(),
                    format!("{selector}._domainkey.{domain} is already a key above: each key needs its own selector"),
                ));
                continue;
            }
            dkim.push(Dkim {
                domain,
                selector: selector.clone(),
                algorithm: d.algorithm,
                private_key_file: dir.join(&d.private_key_file),
            });
        }

        match (from, reply_to.flatten(), contact, secret, transport) {
            (Some(from), reply_to, Some(contact), Some(secret), Some(transport))
                if problems.is_empty() =>
            {
                Ok(Config {
                    path: path.to_path_buf(),
                    newsletter: Newsletter {
                        name: n.name.get_ref().trim().to_string(),
                        from,
                        reply_to,
                        contact,
                        website,
                        help_url,
                        list_id: n.list_id.get_ref().clone(),
                        locale: n
                            .locale
                            .as_ref()
                            .map_or_else(|| "en".to_string(), |l| l.get_ref().clone()),
                        greeting_fallback: n
                            .greeting_fallback
                            .as_ref()
                            .map(|g| g.get_ref().clone()),
                        postal_address: line(n.postal_address.as_ref()),
                        reason: line(n.reason.as_ref()),
                        preheader: line(n.preheader.as_ref()),
                    },
                    unsubscribe: Unsubscribe {
                        url: unsubscribe_url,
                        manage_url,
                        mailto,
                        secret,
                        previous: u
                            .previous_secret_env
                            .iter()
                            .map(|n| SecretSource::Env(n.clone()))
                            .chain(
                                u.previous_secret_file
                                    .iter()
                                    .map(|f| SecretSource::File(dir.join(f))),
                            )
                            .collect(),
                    },
                    paths,
                    transport,
                    dkim,
                    sources,
                    selection,
                    schedule,
                    approval,
                    bounces,
                    webhooks,
                    archive,
                    signup,
                })
            }
            _ => Err(problems),
        }
    }
}

/// An optional one-line setting, trimmed.
fn line(value: Option<&Spanned<String>>) -> Option<String> {
    value.map(|v| v.get_ref().trim().to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::smtp::is_loopback;
    use super::*;

    /// A minimal valid config, for the tests here and the property tests.
    pub(crate) const GOOD: &str = r#"
[newsletter]
name = "Harbour Weekly"
from = "Harbour Weekly <weekly@harbour.example>"
contact = "desk@harbour.example"
list_id = "weekly.harbour.example"

[unsubscribe]
url = "https://harbour.example/unsubscribe/{token}"
secret_env = "NEWSLETTER_SECRET"

[transport]
kind = "outbox"
"#;

    fn parse(src: &str) -> Result<Config, Problems> {
        Config::from_str(src, Path::new("/p/newsletter.toml"))
    }

    #[test]
    fn a_minimal_config_resolves_paths_beside_the_file() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.paths.articles, Path::new("/p/articles"));
        assert_eq!(c.paths.subscribers, Path::new("/p/subscribers.toml"));
        assert!(matches!(c.transport, Transport::Outbox(ref p) if p == Path::new("/p/outbox")));
        assert_eq!(c.newsletter.greeting_fallback, None);
        assert_eq!(c.newsletter.locale, "en");
    }

    #[test]
    fn a_misspelled_key_is_reported_with_its_line() {
        let src = GOOD.replace("list_id =", "listid =");
        let err = parse(&src).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("newsletter.toml:6"), "{text}");
        assert!(text.contains("unknown field `listid`"), "{text}");
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let src = GOOD
            .replace("weekly@harbour.example>", "weekly(at)harbour.example>")
            .replace(
                "https://harbour.example/unsubscribe/{token}",
                "http://harbour.example/u",
            );
        let err = parse(&src).unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        assert_eq!(err.0[0].field.as_deref(), Some("newsletter.from"));
        assert_eq!(err.0[0].line, Some(4));
        assert_eq!(err.0[1].field.as_deref(), Some("unsubscribe.url"));
    }

    #[test]
    fn plaintext_is_refused_for_a_remote_host_and_for_credentials() {
        let src = GOOD.replace("kind = \"outbox\"", "kind = \"smtp\"")
            + "[smtp]\nhost = \"smtp.example.org\"\nsecurity = \"none\"\nusername = \"u\"\npassword_env = \"P\"\n";
        let err = parse(&src).unwrap_err();
        let fields: Vec<_> = err.0.iter().filter_map(|p| p.field.clone()).collect();
        assert_eq!(fields, ["smtp.security", "smtp.username"], "{err}");
    }

    /// Every config string that reaches the SMTP connection or a header, with CR/LF and
    /// SMTP commands in it: each is refused with its field and line.
    #[test]
    fn every_string_that_reaches_the_wire_refuses_injected_commands() {
        let evil = r"x\r\nRSET\r\nMAIL FROM:<evil@evil.example>";
        let smtp = GOOD.replace("kind = \"outbox\"", "kind = \"smtp\"")
            + "[smtp]\nhost = \"127.0.0.1\"\nsecurity = \"none\"\n";
        let with_dkim = GOOD.to_string()
            + "[dkim]\ndomain = \"harbour.example\"\nselector = \"s1\"\nprivate_key_file = \"k.pem\"\n";
        let fields: [(&str, String, &str); 13] = [
            ("newsletter.name", GOOD.into(), "name = \"Harbour Weekly\""),
            (
                "newsletter.from",
                GOOD.into(),
                "from = \"Harbour Weekly <weekly@harbour.example>\"",
            ),
            (
                "newsletter.reply_to",
                GOOD.replace(
                    "[unsubscribe]",
                    "reply_to = \"r@harbour.example\"\n[unsubscribe]",
                ),
                "reply_to = \"r@harbour.example\"",
            ),
            (
                "newsletter.contact",
                GOOD.into(),
                "contact = \"desk@harbour.example\"",
            ),
            (
                "newsletter.website",
                GOOD.replace(
                    "[unsubscribe]",
                    "website = \"https://harbour.example\"\n[unsubscribe]",
                ),
                "website = \"https://harbour.example\"",
            ),
            (
                "newsletter.list_id",
                GOOD.into(),
                "list_id = \"weekly.harbour.example\"",
            ),
            (
                "newsletter.greeting_fallback",
                GOOD.replace(
                    "[unsubscribe]",
                    "greeting_fallback = \"reader\"\n[unsubscribe]",
                ),
                "greeting_fallback = \"reader\"",
            ),
            (
                "unsubscribe.url",
                GOOD.into(),
                "url = \"https://harbour.example/unsubscribe/{token}\"",
            ),
            (
                "unsubscribe.mailto",
                GOOD.replace("secret_env", "mailto = \"u@harbour.example\"\nsecret_env"),
                "mailto = \"u@harbour.example\"",
            ),
            ("smtp.host", smtp.clone(), "host = \"127.0.0.1\""),
            (
                "smtp.hello_name",
                smtp.clone() + "hello_name = \"mail.harbour.example\"\n",
                "hello_name = \"mail.harbour.example\"",
            ),
            (
                "dkim.domain",
                with_dkim.clone(),
                "domain = \"harbour.example\"",
            ),
            ("dkim.selector", with_dkim, "selector = \"s1\""),
        ];
        for (field, src, assignment) in fields {
            assert!(parse(&src).is_ok(), "{field}: the clean config must parse");
            let key = assignment.split(" = ").next().unwrap();
            let bad = src.replace(assignment, &format!("{key} = \"{evil}\""));
            let err = parse(&bad).expect_err(field);
            assert!(
                err.0
                    .iter()
                    .any(|p| p.field.as_deref() == Some(field) && p.line.is_some()),
                "{field} not refused with its line: {err}"
            );
        }
        let user = GOOD.replace("kind = \"outbox\"", "kind = \"smtp\"")
            + &format!(
                "[smtp]\nhost = \"smtp.example.org\"\nusername = \"{evil}\"\npassword_env = \"P\"\n"
            );
        let err = parse(&user).unwrap_err();
        assert!(
            err.0
                .iter()
                .any(|p| p.field.as_deref() == Some("smtp.username")),
            "{err}"
        );
    }

    #[test]
    fn a_non_ascii_host_in_a_url_becomes_a_labels() {
        let c = parse(&GOOD.replace("harbour.example/unsubscribe", "bücher.example/unsubscribe"))
            .unwrap();
        assert_eq!(
            c.unsubscribe.url,
            "https://xn--bcher-kva.example/unsubscribe/{token}"
        );
        let err = parse(&GOOD.replace(
            "/unsubscribe/{token}",
            &format!("/{}{{token}}", "a".repeat(600)),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("at most 500"), "{err}");
        for bad in [
            "https://u:p@harbour.example/unsubscribe/{token}",
            "http://harbour.example/unsubscribe/{token}",
            "https:///unsubscribe/{token}",
            "https://harbour.example:99999/unsubscribe/{token}",
        ] {
            let err = parse(&GOOD.replace("https://harbour.example/unsubscribe/{token}", bad))
                .expect_err(bad);
            assert_eq!(
                err.0[0].field.as_deref(),
                Some("unsubscribe.url"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn numbers_out_of_range_are_problems_with_their_line_not_panics() {
        let src = GOOD.replace("kind = \"outbox\"", "kind = \"smtp\"")
            + "[smtp]\nhost = \"127.0.0.1\"\nsecurity = \"none\"\nretry_delay_seconds = 1e20\n\
               connect_timeout_seconds = -1\ncommand_timeout_seconds = nan\nrate_per_second = 1e-300\n\
               max_attempts = 0\n\n[[sources]]\nname = \"g\"\npath = \"f.xml\"\ntimeout_seconds = 1e300\n\n\
               [selection]\nfirst_days = 4000000000\n";
        let err = parse(&src).unwrap_err();
        let mut fields: Vec<(String, usize)> = err
            .0
            .iter()
            .map(|p| (p.field.clone().unwrap_or_default(), p.line.unwrap_or(0)))
            .collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                ("selection.first_days".to_string(), 29),
                ("smtp.command_timeout_seconds".to_string(), 19),
                ("smtp.connect_timeout_seconds".to_string(), 18),
                ("smtp.max_attempts".to_string(), 21),
                ("smtp.rate_per_second".to_string(), 20),
                ("smtp.retry_delay_seconds".to_string(), 17),
                ("sources.timeout_seconds".to_string(), 26),
            ],
            "{err}"
        );
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for h in ["localhost", "127.0.0.1", "127.3.4.5", "::1", "[::1]"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["smtp.example.org", "10.0.0.1", "localhost.example.org"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
