//! Reading the prose of a delivery report: the addresses it names, the lines about each
//! one, and the words that say why.

/// Characters of a local part as bounces write them (quoted and encoded ones included).
fn local_char(c: char) -> bool {
    c.is_alphanumeric() || "._%+-=!#$&'*/?^`{|}~\"".contains(c)
}

fn domain_char(c: char) -> bool {
    c.is_alphanumeric() || c == '.' || c == '-'
}

/// Every address in a piece of text, in order, without duplicates (case kept).
pub(crate) fn addresses(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let chars: Vec<char> = text.chars().collect();
    for (at, &c) in chars.iter().enumerate() {
        if c != '@' {
            continue;
        }
        let mut start = at;
        while start > 0 && local_char(chars[start - 1]) {
            start -= 1;
        }
        let mut end = at + 1;
        while end < chars.len() && domain_char(chars[end]) {
            end += 1;
        }
        let local: String = chars[start..at].iter().collect();
        // A quote opens a quoted local part only at its start.
        let local = local
            .trim_start_matches(['\'', '`', '='])
            .trim_start_matches(|c: char| c == '"' && !local_is_quoted(&chars[start..at]));
        let domain: String = chars[at + 1..end].iter().collect();
        let domain = domain.trim_end_matches(['.', '-']);
        if local.is_empty() || !domain.contains('.') || domain.starts_with('.') {
            continue;
        }
        let address = format!("{local}@{domain}");
        if seen.insert(address.to_ascii_lowercase()) {
            out.push(address);
        }
    }
    out
}

/// A local part that is one quoted string, like `"neko..nyaan"`.
fn local_is_quoted(local: &[char]) -> bool {
    local.len() >= 2 && local.first() == Some(&'"') && local.last() == Some(&'"')
}

/// Local parts that answer for a mail system, never a failed recipient.
const SYSTEM_LOCAL_PARTS: [&str; 9] = [
    "postmaster",
    "mailer-daemon",
    "mail-daemon",
    "mailerdaemon",
    "abuse",
    "root",
    "noreply",
    "no-reply",
    "double-bounce",
];

/// The addresses a report's prose gives as failed: every address but those of mail systems.
pub(crate) fn recipients_in(text: &str) -> Vec<String> {
    // Lines that name the sender of the returned message.
    let senders: Vec<String> = text
        .lines()
        .filter(|l| {
            let l = l.trim_start().to_ascii_lowercase();
            [
                "from:",
                "mail from",
                "sender:",
                "return-path:",
                "reply-to:",
                "envelope-from",
            ]
            .iter()
            .any(|w| l.starts_with(w))
        })
        .filter_map(|l| addresses(l).into_iter().next())
        .collect();
    addresses(text)
        .into_iter()
        .filter(|a| !senders.iter().any(|s| s.eq_ignore_ascii_case(a)))
        .filter(|a| {
            let local = a
                .rsplit_once('@')
                .map_or("", |(l, _)| l)
                .to_ascii_lowercase();
            !SYSTEM_LOCAL_PARTS.contains(&local.as_str())
        })
        .collect()
}

/// Lines that begin a copy of the returned message inside the report's text.
const ORIGINAL_MARKERS: [&str; 14] = [
    "this is a copy of the message",
    "below this line is a copy of the message",
    "original message follows",
    "original message ---",
    "returned message follows",
    "copy of original message",
    "the header of the original message",
    "headers of the original message",
    "unsent message below",
    "original message header",
    "content-type: message/rfc822",
    "------ original message",
    "----- original message",
    "included is a copy of the message header",
];

/// The report's text up to where a copy of the returned message begins.
pub(crate) fn before_original(text: &str) -> &str {
    let lower = text.to_ascii_lowercase();
    let cut = ORIGINAL_MARKERS
        .iter()
        .filter_map(|m| lower.find(m))
        .min()
        .unwrap_or(text.len());
    // Back to the start of the marker's line.
    let start = text[..cut].rfind('\n').map_or(0, |i| i + 1);
    &text[..start.min(cut)]
}

/// The lines about `address`: from the first line naming it up to the line before the
/// next line that names another address first, at most 12 lines.
pub(crate) fn window_about(text: &str, address: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let needle = address.to_ascii_lowercase();
    let Some(first) = lines
        .iter()
        .position(|l| l.to_ascii_lowercase().contains(&needle))
    else {
        return String::new();
    };
    let mut end = first + 1;
    // A transcript line (`554 <ada@…>… reason`) is the whole entry: the next reply line
    // is about someone else.
    let one_reply = starts_with_code(lines[first]);
    while end < lines.len() && end < first + 12 {
        let line = lines[end];
        if one_reply && starts_with_code(line) {
            break;
        }
        let others = recipients_in(line);
        if starts_with_address(line)
            && !others.is_empty()
            && !others.iter().any(|a| a.eq_ignore_ascii_case(address))
        {
            break;
        }
        end += 1;
    }
    head(&lines[first..end].join("\n"), 8 * 1024).to_string()
}

fn starts_with_code(line: &str) -> bool {
    let t = line.trim_start();
    t.len() > 3 && t.as_bytes()[..3].iter().all(u8::is_ascii_digit) && t.as_bytes()[3] == b' '
}

/// A line that begins with an address (after spaces, `<` or `*`): a new recipient's entry.
fn starts_with_address(line: &str) -> bool {
    let t = line.trim_start_matches(|c: char| c.is_whitespace() || "<*-•(".contains(c));
    let word = t.split_whitespace().next().unwrap_or("");
    word.contains('@')
}

/// True when the text has something to judge by: a status or reply code, or a phrase.
pub(crate) fn has_evidence(text: &str) -> bool {
    crate::mail::reply::enhanced_status(text).is_some() || reply_code(text).is_some() || {
        let t = normalise(text);
        [
            "unknown",
            "not exist",
            "full",
            "quota",
            "reject",
            "refused",
            "denied",
            "blocked",
            "spam",
            "expired",
            "not found",
            "invalid",
        ]
        .iter()
        .any(|w| t.contains(w))
    }
}

/// True when the refusal answered the message's content (DATA or its end), not RCPT.
pub(crate) fn refused_at_data(text: &str) -> bool {
    let t = normalise(text);
    if [
        "in reply to end of data",
        "in reply to data",
        "after end of data",
        "after data",
    ]
    .iter()
    .any(|w| t.contains(w))
    {
        return true;
    }
    // A sendmail transcript: the line after `>>> DATA` is the refusal.
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let after_data = lines.windows(2).any(|w| {
        let reply = w[1].trim_start_matches(['>', ' ']);
        w[0].trim_start_matches('>').trim().eq_ignore_ascii_case("data")
            && reply.starts_with("<<< 5")
            // "503 need RCPT before DATA": the refusal came at RCPT.
            && !reply.starts_with("<<< 503")
    });
    // "550 : User unknown": a refusal that names no address answers the content.
    after_data || t.contains("0 : user unknown") || t.contains(": : user unknown")
}

/// The first SMTP reply code (4xx or 5xx) standing alone in the text.
pub(crate) fn reply_code(text: &str) -> Option<u16> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|w| w.len() == 3)
        .filter_map(|w| w.parse::<u16>().ok())
        .find(|c| (420..=559).contains(c))
}

/// Lower case, whitespace collapsed, curly quotes made straight: what phrases are matched in.
pub(crate) fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        let c = match c {
            '\u{2019}' | '\u{2018}' => '\'',
            _ => c,
        };
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.extend(c.to_lowercase());
    }
    out
}

/// At most the first `max` bytes of a text, cut at a character boundary.
pub(crate) fn head(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The text on one line, at most 300 characters.
pub(crate) fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match joined.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &joined[..i]),
        None => joined,
    }
}

/// The line of a window most likely to be the server's reply: one with a status or reply
/// code, else the whole window.
pub(crate) fn diagnostic_line(window: &str) -> String {
    window
        .lines()
        .find(|l| crate::mail::reply::enhanced_status(l).is_some() || reply_code(l).is_some())
        .map_or_else(|| window.to_string(), str::to_string)
}

/// The text of an HTML part: tags dropped, a few entities undone.
pub(crate) fn from_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut in_tag = false;
    let mut skip_until: Option<&str> = None;
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    let bytes = html.as_bytes();
    while i < bytes.len() {
        if let Some(end) = skip_until {
            match lower[i..].find(end) {
                Some(n) => {
                    i += n + end.len();
                    skip_until = None;
                    continue;
                }
                None => break,
            }
        }
        let rest = &lower[i..];
        if rest.starts_with("<style") {
            skip_until = Some("</style>");
            continue;
        }
        if rest.starts_with("<script") {
            skip_until = Some("</script>");
            continue;
        }
        let Some(c) = html[i..].chars().next() else {
            break;
        };
        match c {
            '<' => {
                in_tag = true;
                if rest.starts_with("<br")
                    || rest.starts_with("<p")
                    || rest.starts_with("<tr")
                    || rest.starts_with("<div")
                    || rest.starts_with("</td")
                {
                    out.push('\n');
                }
            }
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
        i += c.len_utf8();
    }
    out.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_found_in_prose() {
        assert_eq!(
            addresses(
                "RCPT TO:<kijitora@example.jp>: host mx [192.0.2.1]: 550 <kijitora@example.jp>... User Unknown"
            ),
            vec!["kijitora@example.jp"]
        );
        assert_eq!(
            addresses("\"neko....nyaan....\"@libsisimai.org said no; mail to bo@example.org."),
            vec!["\"neko....nyaan....\"@libsisimai.org", "bo@example.org"]
        );
        assert!(addresses("user@localhost and @nothing").is_empty());
    }

    #[test]
    fn the_window_about_one_address_stops_at_the_next() {
        let text = "The following address(es) failed:\n\n  ada@example.org\n    550 5.1.1 User Unknown\n  bo@example.org\n    552 5.2.2 Mailbox full\n";
        let w = window_about(text, "ada@example.org");
        assert!(w.contains("5.1.1") && !w.contains("5.2.2"), "{w}");
        let w = window_about(text, "bo@example.org");
        assert!(w.contains("5.2.2"), "{w}");
    }

    #[test]
    fn an_inline_copy_of_the_original_is_cut_off() {
        let text = "failed:\n  ada@example.org\n\n------ This is a copy of the message, including all the headers. ------\nFrom: me@example.org\n";
        assert!(!before_original(text).contains("me@example.org"));
    }
}
