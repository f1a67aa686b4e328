//! The reader's preference page (`[unsubscribe] manage_url`): each message links to it
//! with a signed token; the page lets the reader choose among the audiences the list
//! offers, or leave. GET never changes anything; a POST is committed to the state database
//! before the answer, then written into the subscriber file by the list writer, as an
//! unsubscribe is.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Mutex;

use anyhow::{Result, anyhow};
use hyper::Method;

use crate::clock::Clock;
use crate::config::Config;
use crate::http::{Request, Response, Route};
use crate::input::address::EmailAddress;
use crate::input::subscribers::{self, Status};
use crate::locale::Locale;
use crate::privacy::Forgotten;
use crate::render::templates::escape_html;
use crate::state::Journal;
use crate::state::list::Joining;
use crate::token::Signer;

pub(crate) struct Preferences {
    config: Config,
    signer: Signer,
    clock: Clock,
    locale: Locale,
    journal: Mutex<Journal>,
    list_changed: Box<dyn Fn() + Send + Sync>,
    prefix: String,
    suffix: String,
}

impl Preferences {
    pub(crate) fn route(
        config: &Config,
        signer: Signer,
        clock: Clock,
        locale: Locale,
        list_changed: Box<dyn Fn() + Send + Sync>,
    ) -> Result<Option<Route>> {
        let Some(url) = &config.unsubscribe.manage_url else {
            return Ok(None);
        };
        let (prefix, suffix) = crate::config::token_route(url, "manage_url")?;
        let page = std::sync::Arc::new(Preferences {
            journal: Mutex::new(Journal::open(&config.paths.state)?),
            config: config.clone(),
            signer,
            clock,
            locale,
            list_changed,
            prefix,
            suffix,
        });
        let matcher = std::sync::Arc::clone(&page);
        Ok(Some(Route {
            name: "preferences",
            matches: Box::new(move |target| matcher.token_in(target).is_some()),
            body_limit: 4096,
            rate: None,
            handler: Box::new(move |request| page.answer(&request)),
        }))
    }

    fn token_in<'t>(&self, target: &'t str) -> Option<&'t str> {
        crate::http::page::token_between(target, &self.prefix, &self.suffix)
    }

    fn page(&self, status: u16, title: &str, body: &str) -> Response {
        crate::http::page::page(
            &self.locale.tag,
            status,
            self.locale.get(title),
            body,
            "no-referrer",
        )
    }

    fn text(&self, key: &str, email: &EmailAddress) -> String {
        let name = escape_html(&self.config.newsletter.name);
        let shown = format!("<strong>{}</strong>", escape_html(email.as_str()));
        crate::locale::fill(&escape_html(self.locale.get(key)), |slot| match slot {
            "newsletter" => Some(name.clone()),
            "email" => Some(shown.clone()),
            _ => None,
        })
    }

    fn answer(&self, request: &Request) -> Response {
        let invalid = || {
            self.page(
                400,
                "page_invalid_title",
                &format!("<p>{}</p>", escape_html(self.locale.get("page_invalid"))),
            )
        };
        let Some(email) = self.token_in(&request.target).and_then(|t| {
            self.signer
                .verify_manage_token(&self.config.newsletter.list_id, t)
        }) else {
            return invalid();
        };
        match self.respond(request, &email) {
            Ok(Some(page)) => page,
            Ok(None) => invalid(),
            Err(e) => {
                eprintln!("error: preference page of {email}: {e:#}");
                self.page(
                    503,
                    "page_retry_title",
                    &format!("<p>{}</p>", escape_html(self.locale.get("page_retry"))),
                )
            }
        }
    }

    /// `None`: the address was forgotten on request (its links lead nowhere).
    fn respond(&self, request: &Request, email: &EmailAddress) -> Result<Option<Response>> {
        let mut journal = self
            .journal
            .lock()
            .map_err(|_| anyhow!("the state database connection was lost"))?;
        if Forgotten::load(&journal, &self.config.paths.state)?.contains(email) {
            return Ok(None);
        }
        let list = subscribers::load(&self.config.paths.subscribers)?;
        let entry = list
            .entries
            .iter()
            .find(|s| s.email.as_str() == email.as_str());
        let current: BTreeSet<String> = entry
            .map(|s| s.tags.iter().cloned().collect())
            .unwrap_or_default();
        let mut offered: BTreeSet<String> = self
            .config
            .signup
            .as_ref()
            .map(|s| s.tags.iter().cloned().collect())
            .unwrap_or_default();
        offered.extend(current.iter().cloned());
        let subscribed = entry.is_some_and(|s| s.status == Status::Subscribed)
            && !journal.excluded()?.contains(email.as_str());
        match request.method {
            Method::GET | Method::HEAD => {
                let mut body = format!(
                    "<p>{}</p><form method=\"post\"><input type=\"hidden\" name=\"action\" value=\"save\">",
                    self.text("page_manage", email)
                );
                if !offered.is_empty() {
                    body.push_str("<fieldset style=\"border:0;padding:0;margin:0 0 1em 0;\">");
                    for (i, tag) in offered.iter().enumerate() {
                        let t = escape_html(tag);
                        let checked = if current.contains(tag) {
                            " checked"
                        } else {
                            ""
                        };
                        let _ = write!(
                            body,
                            "<label style=\"display:block;\" for=\"tag{i}\"><input type=\"checkbox\" id=\"tag{i}\" name=\"tags\" value=\"{t}\"{checked}> {t}</label>"
                        );
                    }
                    body.push_str("</fieldset>");
                }
                let _ = write!(
                    body,
                    "<p><button type=\"submit\" style=\"font-size:1.1em;padding:.5em 1.2em;\">{}</button></p></form>",
                    escape_html(self.locale.get("page_manage_save"))
                );
                if subscribed {
                    let _ = write!(
                        body,
                        "<form method=\"post\"><input type=\"hidden\" name=\"action\" value=\"leave\"><p><button type=\"submit\" style=\"font-size:1em;padding:.4em 1em;\">{}</button></p></form>",
                        escape_html(self.locale.get("page_manage_leave"))
                    );
                }
                Ok(Some(self.page(200, "page_manage_title", &body)))
            }
            Method::POST => {
                let body = std::str::from_utf8(&request.body).unwrap_or("");
                let mut action = "";
                let mut tags = BTreeSet::new();
                for (k, v) in url::form_urlencoded::parse(body.as_bytes()) {
                    match k.as_ref() {
                        "action" if v == "save" => action = "save",
                        "action" if v == "leave" => action = "leave",
                        "tags" if offered.contains(v.as_ref()) => {
                            tags.insert(v.into_owned());
                        }
                        _ => {}
                    }
                }
                match action {
                    "leave" => {
                        journal.record_unsubscribe(
                            email.as_str(),
                            "preference page",
                            self.clock.now(),
                        )?;
                        eprintln!("unsubscribed {email} (preference page)");
                        (self.list_changed)();
                        Ok(Some(self.page(
                            200,
                            "page_done_title",
                            &format!("<p>{}</p>", self.text("page_done", email)),
                        )))
                    }
                    "save" => {
                        let joining = Joining {
                            name: None,
                            tags: Some(tags.into_iter().collect()),
                            consent: None,
                        };
                        journal.record_joining(email.as_str(), &joining, self.clock.now())?;
                        eprintln!("topics of {email} changed (preference page)");
                        (self.list_changed)();
                        Ok(Some(self.page(
                            200,
                            "page_saved_title",
                            &format!("<p>{}</p>", self.text("page_saved", email)),
                        )))
                    }
                    _ => Ok(Some(self.page(
                        400,
                        "page_not_understood_title",
                        &format!("<p>{}</p>", escape_html(self.locale.get("page_method"))),
                    ))),
                }
            }
            _ => Ok(Some(self.page(
                405,
                "page_method_title",
                &format!("<p>{}</p>", escape_html(self.locale.get("page_method"))),
            ))),
        }
    }
}
