//! `newsletter serve`: the HTTP endpoint behind every unsubscribe link. GET shows a page
//! with a button; POST `List-Unsubscribe=One-Click` (RFC 8058) unsubscribes at once, with
//! no cookie, login or redirect. The unsubscribe is committed to the state database before
//! the answer goes out; the subscriber file follows under the run lock.

use std::io::Read;
use std::time::Duration;

use anyhow::{Result, anyhow};
use tiny_http::{Header, Method, Request, Response, Server};

use super::Log;
use crate::cli::{Cli, ServeArgs};
use crate::clock::Clock;
use crate::config::Config;
use crate::exit::Exit;
use crate::state::Journal;
use crate::state::listfile;
use crate::token::Signer;

/// Bodies larger than this are refused: a one-click body is 26 bytes.
const MAX_BODY: usize = 4096;

pub(crate) fn run(cli: &Cli, args: &ServeArgs, log: &Log) -> Result<Exit> {
    let clock = Clock::from_env()?;
    let config = Config::load(&cli.config)?;
    let (signer, warning) = crate::token::Signer::for_list(&config.unsubscribe)?;
    if let Some(w) = warning {
        log.warn(w);
    }
    let (prefix, suffix) = route(&config.unsubscribe.url)?;
    let mut journal = Journal::open(&config.paths.state)?;
    let server =
        Server::http(&args.listen).map_err(|e| anyhow!("cannot listen on {}: {e}", args.listen))?;
    crate::say!("listening on http://{}", server.server_addr());
    log.info(format!("unsubscribe links: {prefix}TOKEN{suffix}"));
    let site = Site {
        config: &config,
        signer: &signer,
        prefix: &prefix,
        suffix: &suffix,
        clock,
    };
    loop {
        match server.recv_timeout(Duration::from_secs(5)) {
            Ok(Some(request)) => {
                let outcome = site.handle(request, &mut journal);
                if let Err(e) = outcome {
                    log.warn(format!("{e:#}"));
                }
            }
            Ok(None) => {}
            Err(e) => return Err(anyhow!("the HTTP listener failed: {e}")),
        }
        // Unsubscribes wait here when a send held the lock; write them once it is free.
        if let Err(e) =
            listfile::apply_pending_if_free(&config, &mut journal, "newsletter serve", &clock)
        {
            log.warn(format!("{e:#}"));
        }
    }
}

/// The path around `{token}` in the configured unsubscribe URL.
fn route(url: &str) -> Result<(String, String)> {
    use crate::config::{TOKEN_STAND_IN, parse_web_url};
    let parsed = parse_web_url(url).map_err(|e| anyhow!("the unsubscribe URL: {e}"))?;
    let target = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_string(),
    };
    let (prefix, suffix) = target
        .split_once(TOKEN_STAND_IN)
        .ok_or_else(|| anyhow!("the unsubscribe URL has no {{token}} in its path"))?;
    Ok((prefix.to_string(), suffix.to_string()))
}

struct Site<'a> {
    config: &'a Config,
    signer: &'a Signer,
    prefix: &'a str,
    suffix: &'a str,
    clock: Clock,
}

struct Page {
    status: u16,
    title: &'static str,
    body: String,
}

impl Site<'_> {
    fn handle(&self, mut request: Request, journal: &mut Journal) -> Result<()> {
        let page = self.answer(&mut request, journal);
        let html = format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{}</title></head>\
             <body style=\"font-family:Arial,sans-serif;max-width:36em;margin:3em auto;padding:0 1em;\"><h1>{}</h1>{}</body></html>\n",
            page.title, page.title, page.body
        );
        let mut response = Response::from_string(html).with_status_code(page.status);
        for (name, value) in [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
        ] {
            if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                response.add_header(h);
            }
        }
        if page.status == 405
            && let Ok(h) = Header::from_bytes(&b"Allow"[..], &b"GET, POST"[..])
        {
            response.add_header(h);
        }
        request
            .respond(response)
            .map_err(|e| anyhow!("cannot answer a request: {e}"))
    }

    fn answer(&self, request: &mut Request, journal: &mut Journal) -> Page {
        // The token sits in the path, or in the query when the configured URL puts it there.
        let path = if self.prefix.contains('?') {
            request.url().to_string()
        } else {
            request.url().split('?').next().unwrap_or("").to_string()
        };
        let Some(token) = path
            .strip_prefix(self.prefix)
            .and_then(|t| t.strip_suffix(self.suffix))
            .filter(|t| !t.is_empty() && !t.contains('/'))
        else {
            return page(404, "Not found", "There is nothing here.".into());
        };
        let Some(email) = self
            .signer
            .verify_unsubscribe_token(&self.config.newsletter.list_id, token)
        else {
            return page(
                400,
                "This link is not valid",
                "This unsubscribe link is damaged or was not made by this newsletter. Please use the link from the email as it is, or reply to the email to ask us.".into(),
            );
        };
        let name = crate::render::templates::escape_html(&self.config.newsletter.name);
        let shown = crate::render::templates::escape_html(email.as_str());
        match request.method() {
            Method::Get | Method::Head => page(
                200,
                "Unsubscribe",
                format!(
                    "<p>Stop sending {name} to <strong>{shown}</strong>?</p>\
                     <form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
                     <button type=\"submit\" style=\"font-size:1.1em;padding:.5em 1.2em;\">Unsubscribe</button></form>"
                ),
            ),
            Method::Post => {
                let body = match read_body(request) {
                    Ok(b) => b,
                    Err(p) => return p,
                };
                if !is_one_click(&body) {
                    return page(
                        400,
                        "Not understood",
                        "The request did not ask to unsubscribe (expected List-Unsubscribe=One-Click).".into(),
                    );
                }
                // Durable before the answer: the commit returns only once it is on disk.
                if let Err(e) =
                    journal.record_unsubscribe(email.as_str(), "one-click", self.clock.now())
                {
                    eprintln!("error: {e:#}");
                    return page(
                        503,
                        "Please try again",
                        "The unsubscribe could not be saved. Please try again in a minute.".into(),
                    );
                }
                eprintln!("unsubscribed {email} (one-click)");
                // Into the subscriber file too, unless a send holds the lock (it writes the
                // change when it ends, and this loop retries meanwhile).
                if let Err(e) = listfile::apply_pending_if_free(
                    self.config,
                    journal,
                    "newsletter serve",
                    &self.clock,
                ) {
                    eprintln!("warning: {e:#}");
                }
                page(
                    200,
                    "You are unsubscribed",
                    format!("<p><strong>{shown}</strong> will receive no more {name}.</p>"),
                )
            }
            _ => page(
                405,
                "Method not allowed",
                "Use the link in the email.".into(),
            ),
        }
    }
}

fn read_body(request: &mut Request) -> Result<String, Page> {
    if request.body_length().is_some_and(|n| n > MAX_BODY) {
        return Err(page(
            413,
            "Too large",
            "The request body is too large.".into(),
        ));
    }
    let mut body = Vec::new();
    let read = request
        .as_reader()
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut body);
    if read.is_err() {
        return Err(page(
            400,
            "Not understood",
            "The request body could not be read.".into(),
        ));
    }
    if body.len() > MAX_BODY {
        return Err(page(
            413,
            "Too large",
            "The request body is too large.".into(),
        ));
    }
    String::from_utf8(body).map_err(|_| {
        page(
            400,
            "Not understood",
            "The request body is not text.".into(),
        )
    })
}

/// RFC 8058: `List-Unsubscribe=One-Click`, sent form-urlencoded or as multipart/form-data.
fn is_one_click(body: &str) -> bool {
    body.split('&')
        .any(|pair| pair.trim() == "List-Unsubscribe=One-Click")
        || (body.contains("name=\"List-Unsubscribe\"") && body.contains("One-Click"))
}

fn page(status: u16, title: &'static str, body: String) -> Page {
    let body = if body.starts_with('<') {
        body
    } else {
        format!("<p>{body}</p>")
    };
    Page {
        status,
        title,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_is_the_path_around_the_token() {
        let (p, s) = route("https://harbour.example/unsubscribe/{token}").unwrap();
        assert_eq!((p.as_str(), s.as_str()), ("/unsubscribe/", ""));
        let (p, s) = route("https://harbour.example/u?t={token}&x=1").unwrap();
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
