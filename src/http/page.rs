//! The small HTML pages `serve` answers with (unsubscribe, sign-up, confirmation,
//! preferences): one layout, readable on a phone, with the headers that keep them private.

use super::Response;
use crate::render::templates::escape_html;

/// A page in `lang` with `title` (text) and `body` (HTML). `referrer` is the
/// Referrer-Policy: `no-referrer` unless the page's forms need the browser's Origin.
pub(crate) fn page(lang: &str, status: u16, title: &str, body: &str, referrer: &str) -> Response {
    let (lang, title) = (escape_html(lang), escape_html(title));
    Response {
        status,
        headers: vec![
            ("Content-Type", "text/html; charset=utf-8".to_string()),
            ("Cache-Control", "no-store".to_string()),
            ("X-Content-Type-Options", "nosniff".to_string()),
            ("Referrer-Policy", referrer.to_string()),
            ("X-Frame-Options", "DENY".to_string()),
        ],
        body: format!(
            "<!DOCTYPE html><html lang=\"{lang}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title></head>\
             <body style=\"font-family:Arial,sans-serif;max-width:36em;margin:3em auto;padding:0 1em;line-height:1.5;\"><h1>{title}</h1>{body}</body></html>\n"
        ),
    }
}

/// The token in a request target that follows a configured link's path around `{token}`
/// (`prefix` TOKEN `suffix`, see `config::token_route`).
pub(crate) fn token_between<'t>(target: &'t str, prefix: &str, suffix: &str) -> Option<&'t str> {
    // The token sits in the path, or in the query when the configured URL puts it there.
    let path = if prefix.contains('?') {
        target
    } else {
        target.split('?').next().unwrap_or("")
    };
    path.strip_prefix(prefix)
        .and_then(|t| t.strip_suffix(suffix))
        .filter(|t| !t.is_empty() && !t.contains('/'))
}
