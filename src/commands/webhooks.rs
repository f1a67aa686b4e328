//! The providers' webhook routes of `serve`: `/webhooks/ses` (SNS), `/webhooks/mailgun`,
//! `/webhooks/postmark`, one for each provider configured in `[webhooks.*]`. Each request
//! is authenticated as its provider does it, then each event is acted on as mail that
//! comes back is (committed before the answer); anything unauthenticated is a 4xx and
//! changes nothing.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use hyper::Method;

use crate::clock::Clock;
use crate::config::Config;
use crate::http::{RateLimit, Request, Response, Route};
use crate::inbound::Intake;
use crate::inbound::providers::{Event, Refusal, mailgun, postmark, sns};
use crate::state::Journal;
use crate::token::Signer;

/// A provider's request is a few kilobytes; SES with original headers a few tens.
const MAX_BODY: usize = 256 * 1024;

/// Which provider a route is for.
#[derive(Clone, Copy)]
enum Provider {
    Ses,
    Mailgun,
    Postmark,
}

struct Hooks {
    config: Config,
    clock: Clock,
    intake: Mutex<Intake>,
    certificates: sns::Certificates,
    mailgun_key: Option<String>,
    postmark: Option<(String, String)>,
    seen: mailgun::Seen,
    /// Wakes the writer of the subscriber file after an unsubscribe.
    poke: Box<dyn Fn() + Send + Sync>,
}

/// The routes for the configured providers (none without `[webhooks.*]`).
pub(crate) fn routes(
    config: &Config,
    signer: &Signer,
    clock: Clock,
    rate: Option<RateLimit>,
    poke: Box<dyn Fn() + Send + Sync>,
) -> Result<Vec<Route>> {
    let w = &config.webhooks;
    let mut providers = Vec::new();
    if w.ses.is_some() {
        providers.push(("/webhooks/ses", Provider::Ses));
    }
    if w.mailgun.is_some() {
        providers.push(("/webhooks/mailgun", Provider::Mailgun));
    }
    if w.postmark.is_some() {
        providers.push(("/webhooks/postmark", Provider::Postmark));
    }
    if providers.is_empty() {
        return Ok(Vec::new());
    }
    let hooks = Arc::new(Hooks {
        config: config.clone(),
        clock,
        intake: Mutex::new(Intake::new(
            config,
            Journal::open(&config.paths.state)?,
            signer.clone(),
            false,
        )),
        certificates: sns::Certificates::beside(&config.paths.state),
        mailgun_key: w
            .mailgun
            .as_ref()
            .map(|s| s.load().map(|k| k.expose().trim().to_string()))
            .transpose()?,
        postmark: w
            .postmark
            .as_ref()
            .map(|(u, s)| s.load().map(|p| (u.clone(), p.expose().trim().to_string())))
            .transpose()?,
        seen: mailgun::Seen::default(),
        poke,
    });
    Ok(providers
        .into_iter()
        .map(|(path, provider)| {
            let hooks = Arc::clone(&hooks);
            Route {
                name: path,
                matches: Box::new(move |target| target.split('?').next() == Some(path)),
                body_limit: MAX_BODY,
                rate,
                handler: Box::new(move |request| hooks.answer(provider, &request)),
            }
        })
        .collect())
}

impl Hooks {
    fn answer(&self, provider: Provider, request: &Request) -> Response {
        if request.method != Method::POST {
            return reply(405, "POST only");
        }
        let events = match self.authenticate(provider, request) {
            Ok(events) => events,
            Err(refusal) => {
                eprintln!("webhook refused ({}): {}", request.target, refusal.why);
                return reply(refusal.status, &refusal.why);
            }
        };
        let Ok(mut intake) = self.intake.lock() else {
            return reply(503, "the state database connection was lost");
        };
        let mut unsubscribed = false;
        for event in &events {
            match intake.process_event(event, self.clock.now()) {
                Ok(Some(action)) => {
                    unsubscribed |= action.starts_with("unsubscribed");
                    eprintln!(
                        "{}: {} {}: {action}",
                        event.id,
                        event.kind.as_str(),
                        event.email
                    );
                }
                Ok(None) => eprintln!("{}: already acted on", event.id),
                Err(e) => {
                    // The provider retries a failed delivery: nothing is lost.
                    eprintln!("error: {e:#}");
                    return reply(503, "could not record; try again");
                }
            }
        }
        drop(intake);
        if unsubscribed {
            (self.poke)();
        }
        reply(200, "ok")
    }

    fn authenticate(&self, provider: Provider, request: &Request) -> Result<Vec<Event>, Refusal> {
        match provider {
            Provider::Ses => {
                let topics = self.config.webhooks.ses.as_deref().unwrap_or(&[]);
                match sns::read(&request.body, topics, &self.certificates)? {
                    sns::Notice::Events(events) => Ok(events),
                    sns::Notice::Confirm(url) => {
                        eprintln!(
                            "SNS subscription to confirm: open {url} (this server does not open it for you)"
                        );
                        Ok(Vec::new())
                    }
                    sns::Notice::Nothing => Ok(Vec::new()),
                }
            }
            Provider::Mailgun => {
                let key = self.mailgun_key.as_deref().unwrap_or("");
                let now = crate::state::unix(self.clock.now());
                mailgun::read(&request.body, key, now, &self.seen)
            }
            Provider::Postmark => {
                let (user, password) = self
                    .postmark
                    .as_ref()
                    .map_or(("", ""), |(u, p)| (u.as_str(), p.as_str()));
                postmark::read(
                    request.header("authorization"),
                    &request.body,
                    user,
                    password,
                )
            }
        }
    }
}

fn reply(status: u16, text: &str) -> Response {
    Response {
        status,
        headers: vec![("Content-Type", "text/plain; charset=utf-8".to_string())],
        body: format!("{text}\n"),
    }
}
