//! `newsletter serve`: the HTTP endpoint behind every unsubscribe link. GET shows a page
//! with a button; POST `List-Unsubscribe=One-Click` (RFC 8058) unsubscribes at once, with
//! no cookie, login or redirect. The unsubscribe is committed to the state database before
//! the answer goes out (`SQLite`'s own locking: no lock shared with a send); a thread of its
//! own then writes it into the subscriber file under the list lock, so a click never waits
//! for a rewrite and a send never waits for a click.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use hyper::Method;

use super::Log;
use crate::cli::{Cli, ServeArgs};
use crate::clock::Clock;
use crate::config::Config;
use crate::exit::Exit;
use crate::http::{self, Limits, RateLimit, Request, Response, Route};
use crate::locale::Locale;
use crate::privacy::Forgotten;
use crate::render::templates::escape_html;
use crate::state::Journal;
use crate::state::listfile;
use crate::token::Signer;

/// Bodies larger than this are refused: a one-click body is 26 bytes.
const MAX_BODY: usize = 4096;

/// How often list changes that could not be written (the list lock was busy, the file
/// could not be read) are tried again.
const LIST_RETRY: Duration = Duration::from_secs(5);

pub(crate) fn run(cli: &Cli, args: &ServeArgs, log: &Log) -> Result<Exit> {
    let clock = Clock::from_env()?;
    let config = Config::load(&cli.config)?;
    let (signer, warning) = crate::token::Signer::for_list(&config.unsubscribe)?;
    if let Some(w) = warning {
        log.warn(w);
    }
    let (prefix, suffix) =
        crate::config::token_route(&config.unsubscribe.url, "the unsubscribe URL")?;
    // The pages speak the list's language; a project file with a mistake stops here, as
    // it stops `check` and `send`.
    let (locale, warnings) =
        Locale::load(&config.newsletter.locale, config.paths.locales.as_deref())?;
    for w in warnings {
        log.warn(w);
    }
    let journal = Journal::open(&config.paths.state)?;
    let list_writer = ListWriter::start(config.clone(), clock)?;
    let listener = std::net::TcpListener::bind(&args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener
        .local_addr()
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    crate::say!("listening on http://{local}");
    log.info(format!("unsubscribe links: {prefix}TOKEN{suffix}"));
    let limits = Limits {
        max_connections: args.max_connections.max(1),
        read_deadline: Duration::from_secs_f64(args.read_timeout.clamp(0.1, 3600.0)),
        ..Limits::default()
    };
    let page = std::sync::Arc::new(UnsubscribePage {
        config,
        signer,
        prefix,
        suffix,
        clock,
        journal: Mutex::new(journal),
        list_writer,
        locale,
    });
    let matcher = std::sync::Arc::clone(&page);
    let rate = (args.rate_limit > 0).then_some(RateLimit {
        per_minute: args.rate_limit,
        burst: args.rate_limit,
    });
    let poker = page.list_writer.clone();
    let mut routes = super::webhooks::routes(
        &page.config,
        &page.signer,
        clock,
        rate,
        Box::new(move || poker.poke()),
    )?;
    for r in &routes {
        log.info(format!("provider webhook: POST {}", r.name));
    }
    let poker = page.list_writer.clone();
    if let Some(site) = crate::signup::Site::new(
        &page.config,
        page.signer.clone(),
        clock,
        page.locale.clone(),
        Box::new(move || poker.poke()),
    )? {
        if let Some(s) = &page.config.signup {
            log.info(format!("sign-up form: {}subscribe", s.url));
        }
        routes.extend(crate::signup::Site::routes(site));
    }
    let poker = page.list_writer.clone();
    if let Some(route) = crate::signup::preferences::Preferences::route(
        &page.config,
        page.signer.clone(),
        clock,
        page.locale.clone(),
        Box::new(move || poker.poke()),
    )? {
        log.info("preference pages: [unsubscribe] manage_url");
        routes.push(route);
    }
    routes.push(Route {
        name: "unsubscribe",
        matches: Box::new(move |target| matcher.token_in(target).is_some()),
        body_limit: MAX_BODY,
        rate,
        handler: Box::new(move |request| page.answer(&request)),
    });
    http::serve(listener, limits, routes)?;
    Ok(Exit::Done)
}

/// The unsubscribe route: the page a link opens and the one-click POST.
struct UnsubscribePage {
    config: Config,
    signer: Signer,
    prefix: String,
    suffix: String,
    clock: Clock,
    journal: Mutex<Journal>,
    list_writer: ListWriter,
    locale: Locale,
}

impl UnsubscribePage {
    /// The token in a request target, when the target is an unsubscribe link.
    fn token_in<'t>(&self, target: &'t str) -> Option<&'t str> {
        crate::http::page::token_between(target, &self.prefix, &self.suffix)
    }

    fn answer(&self, request: &Request) -> Response {
        let page = self.respond(request);
        let mut response = crate::http::page::page(
            &self.locale.tag,
            page.status,
            &page.title,
            &page.body,
            "no-referrer",
        );
        if page.status == 405 {
            response.headers.push(("Allow", "GET, POST".to_string()));
        }
        response
    }

    /// A page of `status` whose title and text are the locale's strings `title` and `text`
    /// (escaped here), with `values` (HTML) in their slots.
    fn page(&self, status: u16, title: &str, text: &str, values: &[(&str, &str)]) -> Page {
        let text = crate::locale::fill(&escape_html(self.locale.get(text)), |slot| {
            values
                .iter()
                .find(|(k, _)| *k == slot)
                .map(|(_, v)| (*v).to_string())
        });
        Page {
            status,
            title: self.locale.get(title).to_string(),
            body: format!("<p>{text}</p>"),
        }
    }

    fn respond(&self, request: &Request) -> Page {
        let Some(token) = self.token_in(&request.target) else {
            return self.page(404, "page_not_found_title", "page_not_found", &[]);
        };
        let Some(email) = self
            .signer
            .verify_unsubscribe_token(&self.config.newsletter.list_id, token)
        else {
            return self.page(400, "page_invalid_title", "page_invalid", &[]);
        };
        let name = escape_html(&self.config.newsletter.name);
        let shown = format!("<strong>{}</strong>", escape_html(email.as_str()));
        match request.method {
            Method::GET | Method::HEAD => {
                let mut page = self.page(
                    200,
                    "page_unsubscribe_title",
                    "page_unsubscribe",
                    &[("newsletter", &name), ("email", &shown)],
                );
                let _ = write!(
                    page.body,
                    "<form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
                     <button type=\"submit\" style=\"font-size:1.1em;padding:.5em 1.2em;\">{}</button></form>",
                    escape_html(self.locale.get("page_unsubscribe_button"))
                );
                page
            }
            Method::POST => {
                let Ok(body) = std::str::from_utf8(&request.body) else {
                    return self.page(400, "page_not_understood_title", "page_not_text", &[]);
                };
                if !is_one_click(body) {
                    return self.page(400, "page_not_understood_title", "page_not_one_click", &[]);
                }
                // Durable before the answer: the commit returns only once it is on disk.
                let recorded = self
                    .journal
                    .lock()
                    .map_err(|_| anyhow!("the state database connection was lost"))
                    .and_then(|mut j| {
                        // A forgotten address is never mailed: recording it would write
                        // it back into the state and the subscriber file.
                        if Forgotten::load(&j, &self.config.paths.state)?.contains(&email) {
                            return Ok(());
                        }
                        j.record_unsubscribe(email.as_str(), "one-click", self.clock.now())
                    });
                if let Err(e) = recorded {
                    eprintln!("error: {e:#}");
                    return self.page(503, "page_retry_title", "page_retry", &[]);
                }
                eprintln!("unsubscribed {email} (one-click)");
                self.list_writer.poke();
                self.page(
                    200,
                    "page_done_title",
                    "page_done",
                    &[("newsletter", &name), ("email", &shown)],
                )
            }
            _ => self.page(405, "page_method_title", "page_method", &[]),
        }
    }
}

/// A page's status, title and body, as HTML.
struct Page {
    status: u16,
    title: String,
    body: String,
}

/// Writes recorded list changes into the subscriber file, on a thread of its own: woken by
/// each unsubscribe (several clicks in a row make one rewrite), and every `LIST_RETRY` for
/// changes the list lock kept back.
#[derive(Clone)]
struct ListWriter {
    wake: SyncSender<()>,
}

impl ListWriter {
    fn start(config: Config, clock: Clock) -> Result<ListWriter> {
        let mut journal = Journal::open(&config.paths.state)?;
        let (wake, woken) = sync_channel(1);
        std::thread::Builder::new()
            .name("list-writer".into())
            .spawn(move || write_changes(&config, &mut journal, &clock, &woken))
            .context("cannot start the list writer")?;
        Ok(ListWriter { wake })
    }

    fn poke(&self) {
        // A wake-up already waiting covers this change too.
        let _ = self.wake.try_send(());
    }
}

fn write_changes(config: &Config, journal: &mut Journal, clock: &Clock, woken: &Receiver<()>) {
    loop {
        if let Err(RecvTimeoutError::Disconnected) = woken.recv_timeout(LIST_RETRY) {
            return;
        }
        match listfile::write_pending(config, journal, "newsletter serve", clock) {
            Ok(Some(0) | None) => {}
            Ok(Some(n)) => eprintln!(
                "{n} subscription change{} written into {}",
                if n == 1 { "" } else { "s" },
                config.paths.subscribers.display()
            ),
            Err(e) => eprintln!("warning: {e:#}"),
        }
    }
}

/// RFC 8058: `List-Unsubscribe=One-Click`, sent form-urlencoded or as multipart/form-data.
fn is_one_click(body: &str) -> bool {
    body.split('&')
        .any(|pair| pair.trim() == "List-Unsubscribe=One-Click")
        || (body.contains("name=\"List-Unsubscribe\"") && body.contains("One-Click"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_is_the_path_around_the_token() {
        let (p, s) =
            crate::config::token_route("https://harbour.example/unsubscribe/{token}", "").unwrap();
        assert_eq!((p.as_str(), s.as_str()), ("/unsubscribe/", ""));
        let (p, s) =
            crate::config::token_route("https://harbour.example/u?t={token}&x=1", "").unwrap();
        assert_eq!((p.as_str(), s.as_str()), ("/u?t=", "&x=1"));
    }

    #[test]
    fn one_click_bodies_are_recognised() {
        assert!(is_one_click("List-Unsubscribe=One-Click"));
        assert!(is_one_click("a=b&List-Unsubscribe=One-Click"));
        assert!(is_one_click(
            "--x\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--x--\r\n"
        ));
        assert!(!is_one_click("List-Unsubscribe=Maybe"));
        assert!(!is_one_click(""));
    }
}
