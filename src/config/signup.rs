//! `[signup]`: the sign-up form that `serve` offers, with double opt-in, and its limits.

use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::input::address::NamedAddress;
use crate::problems::{Problem, Problems};

use super::checks::check_web_url;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSignup {
    url: Spanned<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    origins: Vec<Spanned<String>>,
    #[serde(default)]
    trusted_proxies: Vec<Spanned<String>>,
    #[serde(default)]
    record_ip: bool,
    #[serde(default = "default_expire_hours")]
    expire_hours: Spanned<u64>,
    #[serde(default)]
    welcome: bool,
    from: Option<Spanned<String>>,
    #[serde(default = "default_per_address")]
    per_address_per_day: Spanned<u64>,
    #[serde(default = "default_per_client")]
    per_client_per_hour: Spanned<u64>,
    #[serde(default = "default_max_pending")]
    max_pending: Spanned<u64>,
}

fn default_expire_hours() -> Spanned<u64> {
    Spanned::new(0..0, 48)
}
fn default_per_address() -> Spanned<u64> {
    Spanned::new(0..0, 3)
}
fn default_per_client() -> Spanned<u64> {
    Spanned::new(0..0, 10)
}
fn default_max_pending() -> Spanned<u64> {
    Spanned::new(0..0, 10_000)
}

#[derive(Debug, Clone)]
pub struct Signup {
    /// Where `serve` is reached, ending in `/`: the form is `URL` + `subscribe`, the
    /// confirmation links `URL` + `confirm/TOKEN`.
    pub url: String,
    /// The audiences a reader may choose (subscriber tags).
    pub tags: Vec<String>,
    /// Origins a browser may post the form from (`https://harbour.example`); the form's
    /// own origin is always allowed.
    pub origins: Vec<String>,
    /// Peers whose `X-Forwarded-For` names the client (a reverse proxy).
    pub trusted_proxies: Vec<IpAddr>,
    /// Keep the client's address in the consent record.
    pub record_ip: bool,
    pub expire_hours: u64,
    /// Send a welcome message once the address is confirmed.
    pub welcome: bool,
    /// The From of the confirmation and welcome messages; the newsletter's when unset.
    pub from: Option<NamedAddress>,
    pub per_address_per_day: u64,
    pub per_client_per_hour: u64,
    /// The most unconfirmed sign-ups kept at once.
    pub max_pending: u64,
}

impl Signup {
    /// The path of the sign-up routes on the server (`/newsletter/`).
    pub fn path(&self) -> String {
        url::Url::parse(&self.url).map_or_else(|_| "/".to_string(), |u| u.path().to_string())
    }

    /// The origin of `url` (`https://harbour.example`).
    pub fn own_origin(&self) -> String {
        url::Url::parse(&self.url)
            .map_or_else(|_| String::new(), |u| u.origin().ascii_serialization())
    }
}

pub(super) fn resolve_signup(
    raw: Option<RawSignup>,
    path: &Path,
    source: &str,
    problems: &mut Problems,
) -> Option<Signup> {
    let raw = raw?;
    let at = |field: &str, span: std::ops::Range<usize>, message: String| {
        Problem::new(path, message)
            .at_offset(source, span.start)
            .field(format!("signup.{field}"))
    };
    let url = check_web_url(raw.url.get_ref(), false)
        .map(|u| if u.ends_with('/') { u } else { format!("{u}/") })
        .map_err(|e| problems.push(at("url", raw.url.span(), format!("the address {e}"))))
        .ok();
    for tag in &raw.tags {
        if tag.trim().is_empty() || tag.len() > 64 || tag.chars().any(char::is_control) {
            problems.push(
                Problem::new(
                    path,
                    format!("{tag:?} is not a tag (1-64 characters, one line)"),
                )
                .field("signup.tags"),
            );
        }
    }
    let origins = raw
        .origins
        .iter()
        .filter_map(|o| match url::Url::parse(o.get_ref()) {
            Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {
                Some(u.origin().ascii_serialization())
            }
            _ => {
                problems.push(at(
                    "origins",
                    o.span(),
                    format!(
                        "{:?} is not an origin such as \"https://harbour.example\"",
                        o.get_ref()
                    ),
                ));
                None
            }
        })
        .collect();
    let trusted_proxies = raw
        .trusted_proxies
        .iter()
        .filter_map(|p| {
            p.get_ref()
                .parse::<IpAddr>()
                .map_err(|_| {
                    problems.push(at(
                        "trusted_proxies",
                        p.span(),
                        format!("{:?} is not an IP address", p.get_ref()),
                    ));
                })
                .ok()
        })
        .collect();
    let from = raw.from.as_ref().and_then(|f| {
        NamedAddress::parse(f.get_ref())
            .map_err(|e| problems.push(at("from", f.span(), e)))
            .ok()
    });
    let mut range = |field: &str, v: &Spanned<u64>, lo: u64, hi: u64| -> u64 {
        let n = *v.get_ref();
        if !(lo..=hi).contains(&n) {
            problems.push(at(field, v.span(), format!("must be from {lo} to {hi}")));
        }
        n.clamp(lo, hi)
    };
    let expire_hours = range("expire_hours", &raw.expire_hours, 1, 720);
    let per_address_per_day = range("per_address_per_day", &raw.per_address_per_day, 1, 100);
    let per_client_per_hour = range("per_client_per_hour", &raw.per_client_per_hour, 1, 100_000);
    let max_pending = range("max_pending", &raw.max_pending, 1, 10_000_000);
    Some(Signup {
        url: url?,
        tags: raw.tags,
        origins,
        trusted_proxies,
        record_ip: raw.record_ip,
        expire_hours,
        welcome: raw.welcome,
        from,
        per_address_per_day,
        per_client_per_hour,
        max_pending,
    })
}
