//! Sign-up with double opt-in, served by `newsletter serve` when `[signup]` is set.
//!
//! `GET URL/subscribe` is a form that works without JavaScript; `POST URL/subscribe` (a
//! form or JSON) records a bounded, expiring pending sign-up and queues a confirmation
//! message with a signed link; `GET URL/confirm/TOKEN` shows a button and only the POST
//! confirms (mail scanners follow links). The answer to a sign-up is the same whether the
//! address is new, pending, subscribed, forgotten or over its limit, so the form never
//! tells who is on the list.

pub(crate) mod message;
pub(crate) mod preferences;
pub(crate) mod sender;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Mutex;

use anyhow::{Result, anyhow};
use hyper::Method;

use crate::clock::Clock;
use crate::config::{Config, Signup};
use crate::http::rate::Limiter;
use crate::http::{Request, Response, Route};
use crate::input::address::{DisplayName, EmailAddress};
use crate::input::subscribers::{self, Status};
use crate::locale::Locale;
use crate::privacy::Forgotten;
use crate::render::templates::escape_html;
use crate::state::Journal;
use crate::state::list::Joining;
use crate::state::signup::{Decision, Limits, Request as SignupRequest};
use crate::token::Signer;

/// A sign-up body is a few fields; anything larger is not one.
const MAX_BODY: usize = 8 * 1024;
const MAX_EMAIL: usize = 254;
const MAX_NAME: usize = 200;

/// The sign-up routes and what they share.
pub(crate) struct Site {
    config: Config,
    signup: Signup,
    signer: Signer,
    clock: Clock,
    journal: Mutex<Journal>,
    writer: message::Writer,
    locale: Locale,
    clients: Limiter,
    sender: sender::Waker,
    list_changed: Box<dyn Fn() + Send + Sync>,
    prefix: String,
}

impl Site {
    pub(crate) fn new(
        config: &Config,
        signer: Signer,
        clock: Clock,
        locale: Locale,
        list_changed: Box<dyn Fn() + Send + Sync>,
    ) -> Result<Option<Site>> {
        let Some(signup) = config.signup.clone() else {
            return Ok(None);
        };
        let dkim =
            crate::mail::dkim::load(&config.dkim, config.newsletter.from.address.domain())?.0;
        let per_client = u32::try_from(signup.per_client_per_hour).unwrap_or(u32::MAX);
        Ok(Some(Site {
            writer: message::Writer::new(config, locale.clone(), dkim)?,
            journal: Mutex::new(Journal::open(&config.paths.state)?),
            sender: sender::start(config.clone(), clock)?,
            clients: Limiter::per_hour(per_client),
            prefix: signup.path(),
            config: config.clone(),
            signup,
            signer,
            clock,
            locale,
            list_changed,
        }))
    }

    /// The routes: the form and its POST, and the confirmation links.
    pub(crate) fn routes(site: Site) -> Vec<Route> {
        let site = std::sync::Arc::new(site);
        let (a, b, c, d) = (
            std::sync::Arc::clone(&site),
            std::sync::Arc::clone(&site),
            std::sync::Arc::clone(&site),
            site,
        );
        vec![
            Route {
                name: "sign-up",
                matches: Box::new(move |target| path(target) == format!("{}subscribe", a.prefix)),
                body_limit: MAX_BODY,
                rate: None,
                handler: Box::new(move |request| b.subscribe(&request)),
            },
            Route {
                name: "confirmation",
                matches: Box::new(move |target| c.confirm_token(target).is_some()),
                body_limit: 1024,
                rate: None,
                handler: Box::new(move |request| d.confirm(&request)),
            },
        ]
    }

    fn confirm_token<'t>(&self, target: &'t str) -> Option<&'t str> {
        path(target)
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix("confirm/")
            .filter(|t| !t.is_empty() && !t.contains('/'))
    }

    fn now_unix(&self) -> i64 {
        self.clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }

    /// The client's address: the peer's, or with a trusted proxy in front, the last address
    /// of `X-Forwarded-For` that is not itself a trusted proxy.
    fn client(&self, request: &Request) -> IpAddr {
        let peer = request.peer.ip();
        if !self.signup.trusted_proxies.contains(&peer) {
            return peer;
        }
        let forwarded = request.header("x-forwarded-for").unwrap_or("");
        forwarded
            .split(',')
            .rev()
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .find(|a| !self.signup.trusted_proxies.contains(a))
            .unwrap_or(peer)
    }

    /// The origin a browser says the form was posted from, if it says.
    fn origin(request: &Request) -> Option<String> {
        if let Some(o) = request.header("origin").filter(|o| *o != "null") {
            return Some(o.trim_end_matches('/').to_string());
        }
        let referer = url::Url::parse(request.header("referer")?).ok()?;
        Some(referer.origin().ascii_serialization())
    }

    fn page(&self, status: u16, title: &str, body: &str) -> Response {
        // Not no-referrer: with it, a browser posts the form with `Origin: null`, and the
        // origin check and the consent record's source would see nothing. Links with
        // tokens still never leave the site.
        crate::http::page::page(&self.locale.tag, status, title, body, "same-origin")
    }

    fn text(&self, key: &str, values: &[(&str, &str)]) -> String {
        escape_html(&self.locale.fill(key, values))
    }

    fn names(&self) -> [(&'static str, String); 2] {
        [
            ("newsletter", self.config.newsletter.name.clone()),
            ("hours", self.signup.expire_hours.to_string()),
        ]
    }

    fn form(&self) -> Response {
        let [(_, newsletter), _] = self.names();
        let values = [("newsletter", newsletter.as_str())];
        let mut topics = String::new();
        if !self.signup.tags.is_empty() {
            let _ = write!(
                topics,
                "<fieldset style=\"border:0;padding:0;margin:0 0 1em 0;\"><legend>{}</legend>",
                self.text("page_signup_topics", &[])
            );
            for (i, tag) in self.signup.tags.iter().enumerate() {
                let t = escape_html(tag);
                let _ = write!(
                    topics,
                    "<label style=\"display:block;\" for=\"tag{i}\"><input type=\"checkbox\" id=\"tag{i}\" name=\"tags\" value=\"{t}\" checked> {t}</label>"
                );
            }
            topics.push_str("</fieldset>");
        }
        let body = format!(
            "<form method=\"post\" action=\"subscribe\">\
             <p><label for=\"email\">{}</label><br><input id=\"email\" name=\"email\" type=\"email\" required maxlength=\"{MAX_EMAIL}\" autocomplete=\"email\" style=\"width:100%;max-width:24em;font-size:1em;padding:.4em;\"></p>\
             <p><label for=\"name\">{}</label><br><input id=\"name\" name=\"name\" maxlength=\"{MAX_NAME}\" autocomplete=\"name\" style=\"width:100%;max-width:24em;font-size:1em;padding:.4em;\"></p>\
             {topics}\
             <div style=\"position:absolute;left:-10000px;top:auto;width:1px;height:1px;overflow:hidden;\" aria-hidden=\"true\"><label for=\"website\">{}</label><input id=\"website\" name=\"website\" tabindex=\"-1\" autocomplete=\"off\"></div>\
             <p><button type=\"submit\" style=\"font-size:1.1em;padding:.5em 1.2em;\">{}</button></p></form>",
            self.text("page_signup_email", &[]),
            self.text("page_signup_name", &[]),
            self.text("page_signup_leave_empty", &[]),
            self.text("page_signup_button", &[]),
        );
        self.page(200, &self.locale.fill("page_signup_title", &values), &body)
    }

    /// The same answer whatever became of the request (see the module's comment).
    fn sent(&self, email: &str, json: bool) -> Response {
        if json {
            return json_response(202, "{\"status\":\"check-your-inbox\"}");
        }
        let [(_, newsletter), (_, hours)] = self.names();
        let values = [
            ("newsletter", newsletter.as_str()),
            ("email", email),
            ("hours", hours.as_str()),
        ];
        let body = format!("<p>{}</p>", self.text("page_signup_sent", &values));
        self.page(200, self.locale.get("page_signup_sent_title"), &body)
    }

    fn refused(&self, status: u16, title: &str, text: &str, json: bool) -> Response {
        if json {
            return json_response(
                status,
                &format!(
                    "{{\"status\":\"refused\",\"reason\":{}}}",
                    serde_json::Value::from(self.locale.get(text))
                ),
            );
        }
        let body = format!("<p>{}</p>", self.text(text, &[]));
        self.page(status, self.locale.get(title), &body)
    }

    fn subscribe(&self, request: &Request) -> Response {
        if matches!(request.method, Method::GET | Method::HEAD) {
            return self.form();
        }
        if request.method != Method::POST {
            return self.refused(405, "page_method_title", "page_method", false);
        }
        let json = request
            .header("content-type")
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/json"));
        let client = self.client(request);
        if self.clients.check(client, crate::clock::instant()).is_err() {
            eprintln!(
                "sign-up refused: {client} is over {} an hour",
                self.signup.per_client_per_hour
            );
            return self.refused(429, "page_too_many_title", "page_too_many", json);
        }
        let origin = Self::origin(request);
        if let Some(o) = &origin
            && *o != self.signup.own_origin()
            && !self.signup.origins.contains(o)
        {
            eprintln!("sign-up refused: posted from {o}, not an allowed origin");
            return self.refused(
                403,
                "page_not_understood_title",
                "page_not_understood_title",
                json,
            );
        }
        let Some(form) = Form::read(request, json) else {
            return self.refused(
                400,
                "page_not_understood_title",
                "page_signup_invalid",
                json,
            );
        };
        let offered: HashSet<&str> = self.signup.tags.iter().map(String::as_str).collect();
        let email = (form.email.len() <= MAX_EMAIL)
            .then(|| EmailAddress::parse(&form.email).ok())
            .flatten();
        let name = match form
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            None => Some(None),
            Some(n) if n.chars().count() <= MAX_NAME => DisplayName::parse(n).ok().map(Some),
            Some(_) => None,
        };
        let tags_ok = form.tags.iter().all(|t| offered.contains(t.as_str()));
        let (Some(email), Some(name), true) = (email, name, tags_ok) else {
            return self.refused(
                400,
                "page_not_understood_title",
                "page_signup_invalid",
                json,
            );
        };
        let shown = email.as_str().to_string();
        if form.honeypot {
            eprintln!("sign-up ignored: the hidden field was filled in (a form-filling robot)");
            return self.sent(&shown, json);
        }
        match self.queue(&email, name.as_ref(), form.tags, origin, client) {
            Ok(Some(why)) => eprintln!("sign-up of {email}: {why}; nothing sent"),
            Ok(None) => {
                eprintln!("sign-up of {email}: confirmation queued");
                self.sender.wake();
            }
            Err(e) => {
                eprintln!("error: sign-up of {email}: {e:#}");
                return self.refused(503, "page_retry_title", "page_too_many", json);
            }
        }
        self.sent(&shown, json)
    }

    /// Queues the confirmation; `Some(reason)` when nothing is sent.
    fn queue(
        &self,
        email: &EmailAddress,
        name: Option<&DisplayName>,
        mut tags: Vec<String>,
        origin: Option<String>,
        client: IpAddr,
    ) -> Result<Option<&'static str>> {
        let mut journal = self
            .journal
            .lock()
            .map_err(|_| anyhow!("the state database connection was lost"))?;
        if Forgotten::load(&journal, &self.config.paths.state)?.contains(email) {
            return Ok(Some("forgotten on request"));
        }
        let list = subscribers::load(&self.config.paths.subscribers)?;
        let excluded = journal.excluded()?;
        let subscribed = list
            .entries
            .iter()
            .any(|s| s.email.as_str() == email.as_str() && s.status == Status::Subscribed)
            && !excluded.contains(email.as_str());
        if subscribed {
            return Ok(Some("already subscribed"));
        }
        if journal.suppressed()?.contains(email.as_str()) {
            return Ok(Some("suppressed (the address bounced)"));
        }
        tags.sort();
        tags.dedup();
        let expires_at =
            self.now_unix() + i64::try_from(self.signup.expire_hours * 3600).unwrap_or(0);
        let token = self
            .signer
            .confirm_token(&self.config.newsletter.list_id, email, expires_at);
        let link = format!("{}confirm/{token}", self.signup.url);
        let bytes = self.writer.confirmation(
            &self.signer,
            email,
            &link,
            self.signup.expire_hours,
            self.clock,
        )?;
        let request = SignupRequest {
            email: email.as_str().to_string(),
            name: name.map(|n| n.as_str().to_string()),
            tags,
            source: origin,
            ip: self.signup.record_ip.then(|| client.to_string()),
        };
        let limits = Limits {
            per_address_per_day: self.signup.per_address_per_day,
            max_pending: self.signup.max_pending,
            expires_at,
        };
        Ok(
            match journal.request_signup(&request, &bytes, limits, self.clock.now())? {
                Decision::Queued => None,
                Decision::AddressLimit => Some("this address had its confirmations for today"),
                Decision::Full => Some("too many unconfirmed sign-ups are waiting"),
            },
        )
    }

    fn confirm(&self, request: &Request) -> Response {
        let expired = || self.refused(400, "page_expired_title", "page_expired", false);
        let Some(token) = self.confirm_token(&request.target) else {
            return expired();
        };
        let Some((email, valid_until)) = self
            .signer
            .verify_confirm_token(&self.config.newsletter.list_id, token)
        else {
            return expired();
        };
        if valid_until < self.now_unix() {
            return expired();
        }
        let [(_, newsletter), _] = self.names();
        let values = [
            ("newsletter", newsletter.as_str()),
            ("email", email.as_str()),
        ];
        let confirmed = || {
            let body = format!("<p>{}</p>", self.text("page_confirmed", &values));
            self.page(200, self.locale.get("page_confirmed_title"), &body)
        };
        let result = (|| -> Result<Option<Response>> {
            let mut journal = self
                .journal
                .lock()
                .map_err(|_| anyhow!("the state database connection was lost"))?;
            let pending = journal.pending_signup(email.as_str(), self.clock.now())?;
            match (&request.method, pending) {
                (&Method::GET | &Method::HEAD, Some(_)) => {
                    let body = format!(
                        "<p>{}</p><form method=\"post\"><button type=\"submit\" style=\"font-size:1.1em;padding:.5em 1.2em;\">{}</button></form>",
                        self.text("page_confirm", &values),
                        self.text("page_confirm_button", &[])
                    );
                    Ok(Some(self.page(
                        200,
                        self.locale.get("page_confirm_title"),
                        &body,
                    )))
                }
                (&Method::POST, Some(p)) => {
                    let consent = consent(&p, self.clock.now());
                    let joining = Joining {
                        name: p.name.clone(),
                        tags: Some(p.tags.clone()),
                        consent: Some(consent),
                    };
                    let welcome = if self.signup.welcome {
                        Some(self.writer.welcome(&self.signer, &email, self.clock)?)
                    } else {
                        None
                    };
                    // Durable before the answer: the list writer puts it in the file.
                    if journal.confirm_signup(
                        email.as_str(),
                        &joining,
                        welcome.as_deref(),
                        self.clock.now(),
                    )? {
                        eprintln!("subscribed {email} (confirmed sign-up)");
                        (self.list_changed)();
                        if welcome.is_some() {
                            self.sender.wake();
                        }
                    }
                    Ok(None)
                }
                (&Method::GET | &Method::HEAD | &Method::POST, None) => {
                    // Confirmed before (a second click), or expired and pruned.
                    let list = subscribers::load(&self.config.paths.subscribers)?;
                    let pending_in_journal = journal
                        .pending_list_changes()?
                        .iter()
                        .any(|c| c.subscribe && c.email == email.as_str());
                    let on_list = list.entries.iter().any(|s| {
                        s.email.as_str() == email.as_str() && s.status == Status::Subscribed
                    });
                    Ok((!on_list && !pending_in_journal).then(expired))
                }
                _ => Ok(Some(self.refused(
                    405,
                    "page_method_title",
                    "page_method",
                    false,
                ))),
            }
        })();
        match result {
            Ok(Some(page)) => page,
            Ok(None) => confirmed(),
            Err(e) => {
                eprintln!("error: confirmation of {email}: {e:#}");
                self.refused(503, "page_retry_title", "page_too_many", false)
            }
        }
    }
}

/// The consent record kept with the subscription: when it was asked for and confirmed,
/// how, from which page, and the client's address only if the operator chose to keep it.
fn consent(p: &crate::state::signup::Pending, now: std::time::SystemTime) -> String {
    let at = |t: std::time::SystemTime| {
        chrono::DateTime::<chrono::Utc>::from(t)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let mut map = std::collections::BTreeMap::new();
    map.insert(
        "how",
        "double opt-in: sign-up form, then the link in the confirmation message".to_string(),
    );
    map.insert("requested", at(crate::state::db::from_unix(p.requested_at)));
    map.insert("confirmed", at(now));
    if let Some(s) = &p.source {
        map.insert("source", s.clone());
    }
    if let Some(ip) = &p.ip {
        map.insert("ip", ip.clone());
    }
    serde_json::to_string(&map).unwrap_or_default()
}

fn json_response(status: u16, body: &str) -> Response {
    Response {
        status,
        headers: vec![
            ("Content-Type", "application/json".to_string()),
            ("Cache-Control", "no-store".to_string()),
        ],
        body: body.to_string(),
    }
}

/// The path of a request target, without its query.
fn path(target: &str) -> &str {
    target.split('?').next().unwrap_or("")
}

/// The fields of a sign-up, from a form or JSON.
struct Form {
    email: String,
    name: Option<String>,
    tags: Vec<String>,
    /// The hidden field was filled in: a robot.
    honeypot: bool,
}

impl Form {
    fn read(request: &Request, json: bool) -> Option<Form> {
        let body = std::str::from_utf8(&request.body).ok()?;
        if json {
            let v: serde_json::Value = serde_json::from_str(body).ok()?;
            let tags = match v.get("tags") {
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .map(|t| t.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()?,
                Some(_) => return None,
            };
            return Some(Form {
                email: v.get("email")?.as_str()?.trim().to_string(),
                name: v.get("name").and_then(|n| n.as_str()).map(str::to_string),
                tags,
                honeypot: v
                    .get("website")
                    .and_then(|w| w.as_str())
                    .is_some_and(|w| !w.is_empty()),
            });
        }
        let mut form = Form {
            email: String::new(),
            name: None,
            tags: Vec::new(),
            honeypot: false,
        };
        for (k, v) in url::form_urlencoded::parse(body.as_bytes()) {
            match k.as_ref() {
                "email" => form.email = v.trim().to_string(),
                "name" => form.name = Some(v.into_owned()),
                "tags" if form.tags.len() < 64 => form.tags.push(v.into_owned()),
                "website" => form.honeypot |= !v.is_empty(),
                _ => {}
            }
        }
        Some(form)
    }
}
