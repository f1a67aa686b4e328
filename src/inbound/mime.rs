//! A lenient reader of the MIME structure of mail that comes back: header fields, nested
//! multiparts, enclosed messages, transfer encodings. Bounces are written by every kind of
//! MTA, many of them carelessly, so nothing here fails: a broken part is read as far as it
//! goes. Depth, part count and header count are bounded, so no input can make it recurse
//! or allocate without limit.

use base64::Engine as _;

/// Parts nested deeper than this are kept as opaque bodies.
const MAX_DEPTH: usize = 8;
/// Parts read from one message at most; the rest are ignored.
const MAX_PARTS: usize = 256;
/// Header fields kept per part at most.
const MAX_FIELDS: usize = 512;

/// One part of a message: the message itself, a part of a multipart, or an enclosed message.
#[derive(Debug, Default)]
pub(crate) struct Part {
    /// Header fields in order: the name in lower case, the value unfolded.
    pub headers: Vec<(String, String)>,
    /// `type/subtype` in lower case; `text/plain` when absent.
    pub mime_type: String,
    /// Content-Type parameters, names in lower case.
    pub params: Vec<(String, String)>,
    /// The content, transfer encoding undone (empty for a multipart).
    pub body: Vec<u8>,
    /// The parts of a multipart, or the one message a `message/rfc822` part encloses.
    pub children: Vec<Part>,
}

impl Part {
    /// The first value of a header field (name in lower case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header field.
    pub(crate) fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text: UTF-8 where it is, Latin-1 where it says so, and lossy otherwise
    /// (a diagnostic in a legacy charset keeps its ASCII words).
    pub(crate) fn text(&self) -> String {
        let charset = self.param("charset").unwrap_or("").to_ascii_lowercase();
        if matches!(
            charset.as_str(),
            "iso-8859-1" | "latin1" | "iso-8859-15" | "windows-1252"
        ) && std::str::from_utf8(&self.body).is_err()
        {
            return self.body.iter().map(|&b| char::from(b)).collect();
        }
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// This part and every part inside it, depth first.
    pub(crate) fn walk(&self) -> Vec<&Part> {
        let mut out = vec![self];
        let mut i = 0;
        while i < out.len() {
            let part = out[i];
            out.extend(part.children.iter());
            i += 1;
        }
        out
    }

    /// This part and the parts inside it, without entering enclosed messages (the
    /// returned original is not part of the report).
    pub(crate) fn walk_report(&self) -> Vec<&Part> {
        let mut out = vec![self];
        let mut i = 0;
        while i < out.len() {
            let part = out[i];
            if !part.is_enclosed_message() {
                out.extend(part.children.iter());
            }
            i += 1;
        }
        out
    }

    /// True for a part that holds a returned message or its header.
    pub(crate) fn is_enclosed_message(&self) -> bool {
        matches!(
            self.mime_type.as_str(),
            "message/rfc822" | "message/global" | "text/rfc822-headers" | "message/rfc822-headers"
        )
    }
}

/// Reads a whole message.
pub(crate) fn parse(raw: &[u8]) -> Part {
    let mut budget = MAX_PARTS;
    parse_part(raw, 0, &mut budget, "text/plain")
}

fn parse_part(raw: &[u8], depth: usize, budget: &mut usize, default_type: &str) -> Part {
    *budget = budget.saturating_sub(1);
    let (head, body) = split_head(raw);
    let headers = fields(head);
    let (mime_type, params) = headers
        .iter()
        .find(|(n, _)| n == "content-type")
        .map_or_else(
            || unlabelled(body, default_type),
            |(_, v)| content_type(v, default_type),
        );
    let encoding = headers
        .iter()
        .find(|(n, _)| n == "content-transfer-encoding")
        .map(|(_, v)| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let mut part = Part {
        headers,
        mime_type,
        params,
        ..Part::default()
    };
    let can_nest = depth < MAX_DEPTH && *budget > 0;
    if part.mime_type.starts_with("multipart/") && can_nest {
        if let Some(boundary) = part.param("boundary").map(str::to_string)
            && !boundary.is_empty()
        {
            let child_default = if part.mime_type == "multipart/digest" {
                "message/rfc822"
            } else {
                "text/plain"
            };
            for piece in split_multipart(body, boundary.as_bytes()) {
                if *budget == 0 {
                    break;
                }
                part.children
                    .push(parse_part(piece, depth + 1, budget, child_default));
            }
            if !part.children.is_empty() {
                return part;
            }
        }
        // A multipart without a usable boundary: read it as text, which is what it is.
        part.mime_type = "text/plain".to_string();
        part.body = decode(body, &encoding);
        return part;
    }
    part.body = decode(body, &encoding);
    if part.is_enclosed_message() && can_nest {
        let inner = std::mem::take(&mut part.body);
        part.children
            .push(parse_part(&inner, depth + 1, budget, "text/plain"));
        part.body = inner;
    }
    part
}

/// The type of a part without Content-Type: its default, or a multipart when its body is
/// plainly one (some MTAs drop the header and keep the parts).
fn unlabelled(body: &[u8], default_type: &str) -> (String, Vec<(String, String)>) {
    let plain = (default_type.to_string(), Vec::new());
    if default_type != "text/plain" {
        return plain;
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(64 * 1024)]);
    // The first delimiter comes early: one deep inside is a returned message's.
    let Some(boundary) = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(8)
        .find_map(|l| {
            let b = l.trim_end().strip_prefix("--")?;
            (b.len() >= 8 && !b.contains(' ') && !b.ends_with("--")).then(|| b.to_string())
        })
    else {
        return plain;
    };
    let closing = format!("--{boundary}--");
    let whole = String::from_utf8_lossy(body);
    if !whole.contains(&closing) {
        return plain;
    }
    (
        "multipart/mixed".to_string(),
        vec![("boundary".to_string(), boundary)],
    )
}

/// Splits a part at its first empty line into header and body. A part whose first line is
/// not a header field has no header.
fn split_head(raw: &[u8]) -> (&[u8], &[u8]) {
    let raw = skip_mbox_line(raw);
    let first_line = raw.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let looks_like_field = first_line.iter().position(|&b| b == b':').is_some_and(|i| {
        i > 0
            && first_line[..i]
                .iter()
                .all(|&b| b.is_ascii_graphic() && b != b':')
    });
    if !looks_like_field {
        // An empty first line ends an empty header.
        let body = match raw {
            [b'\r', b'\n', rest @ ..] | [b'\n', rest @ ..] => rest,
            _ => raw,
        };
        return (&[], body);
    }
    let mut i = 0;
    while i < raw.len() {
        let end = memchr::memchr(b'\n', &raw[i..]).map_or(raw.len(), |n| i + n);
        let line = &raw[i..end];
        if line.is_empty() || line == b"\r" {
            return (&raw[..i], raw.get(end + 1..).unwrap_or(&[]));
        }
        i = end + 1;
    }
    (raw, &[])
}

/// An mbox `From ` line before the header is not part of the message.
fn skip_mbox_line(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"From ") {
        let end = memchr::memchr(b'\n', raw).map_or(raw.len(), |n| n + 1);
        return &raw[end..];
    }
    raw
}

/// Header fields, unfolded; names in lower case; encoded words decoded.
fn fields(head: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(head);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if out.len() >= MAX_FIELDS {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = out.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        match line.split_once(':') {
            Some((name, value)) if !name.trim().is_empty() && !name.trim().contains(' ') => {
                out.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
            // A continuation written without its indentation (`boundary=…` on its own line).
            _ => {
                if let Some((_, value)) = out.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            }
        }
    }
    for (_, value) in &mut out {
        if value.contains("=?") {
            *value = decode_words(value);
        }
    }
    out
}

/// `type/subtype; name=value; …` → the lower-case type and the parameters.
fn content_type(value: &str, default_type: &str) -> (String, Vec<(String, String)>) {
    let mut pieces = split_params(value).into_iter();
    let mime_type = pieces
        .next()
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| t.contains('/'))
        .unwrap_or_else(|| default_type.to_string());
    let params = pieces
        .filter_map(|p| {
            let (name, value) = p.split_once('=')?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .map_or(value, |v| v.strip_suffix('"').unwrap_or(v));
            Some((
                name.trim().to_ascii_lowercase(),
                value.replace("\\\"", "\""),
            ))
        })
        .collect();
    (mime_type, params)
}

/// Splits at the semicolons that are not inside quotes.
fn split_params(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        match c {
            _ if escaped => {
                escaped = false;
                current.push(c);
            }
            '\\' if quoted => {
                escaped = true;
                current.push(c);
            }
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ';' if !quoted => out.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    out.push(current);
    out
}

/// The pieces of a multipart body between its `--boundary` lines; a missing closing line
/// ends the last piece at the end of the body.
fn split_multipart<'a>(body: &'a [u8], boundary: &[u8]) -> Vec<&'a [u8]> {
    let mut delimiter = Vec::with_capacity(boundary.len() + 2);
    delimiter.extend_from_slice(b"--");
    delimiter.extend_from_slice(boundary);
    let mut pieces = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i < body.len() {
        let end = memchr::memchr(b'\n', &body[i..]).map_or(body.len(), |n| i + n);
        let line = &body[i..end];
        if let Some(rest) = line.strip_prefix(delimiter.as_slice())
            && rest.iter().all(|b| b.is_ascii_whitespace() || *b == b'-')
        {
            if let Some(s) = start {
                // The line break before a delimiter belongs to the delimiter.
                let mut e = i;
                if e > s && body[e - 1] == b'\n' {
                    e -= 1;
                }
                if e > s && body[e - 1] == b'\r' {
                    e -= 1;
                }
                pieces.push(&body[s..e]);
            }
            if rest.starts_with(b"--") {
                return pieces;
            }
            start = Some((end + 1).min(body.len()));
        }
        i = end + 1;
    }
    if let Some(s) = start
        && s < body.len()
    {
        pieces.push(&body[s..]);
    }
    pieces
}

fn decode(body: &[u8], encoding: &str) -> Vec<u8> {
    match encoding {
        "base64" => base64_lenient(body),
        "quoted-printable" => quoted_printable::decode(body, quoted_printable::ParseMode::Robust)
            .unwrap_or_else(|_| body.to_vec()),
        _ => body.to_vec(),
    }
}

/// Base64 with everything outside its alphabet skipped and a broken tail dropped.
fn base64_lenient(body: &[u8]) -> Vec<u8> {
    let clean: Vec<u8> = body
        .iter()
        .copied()
        .take_while(|&b| b != b'=')
        .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        .collect();
    // A length of 4n+1 cannot be decoded; drop the odd character.
    let usable = if clean.len() % 4 == 1 {
        &clean[..clean.len() - 1]
    } else {
        &clean[..]
    };
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(usable)
        .unwrap_or_default()
}

/// Decodes RFC 2047 encoded words (`=?charset?B|Q?text?=`) in UTF-8, ASCII or Latin-1; other
/// charsets are decoded lossily, so their ASCII survives.
pub(crate) fn decode_words(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, candidate) = rest.split_at(start);
        let decoded = encoded_word(candidate);
        let Some((text, used)) = decoded else {
            out.push_str(before);
            out.push_str("=?");
            rest = &candidate[2..];
            last_was_word = false;
            continue;
        };
        // Whitespace between two encoded words is not part of the text.
        if !(last_was_word && before.trim().is_empty()) {
            out.push_str(before);
        }
        out.push_str(&text);
        rest = &candidate[used..];
        last_was_word = true;
    }
    out.push_str(rest);
    out
}

/// One encoded word at the start of `s`: its text and its length.
fn encoded_word(s: &str) -> Option<(String, usize)> {
    let inner = s.get(2..)?;
    let (charset, inner) = inner.split_once('?')?;
    let (encoding, inner) = inner.split_once('?')?;
    let end = inner.find("?=")?;
    let payload = &inner[..end];
    if payload.contains(' ') || charset.len() > 40 {
        return None;
    }
    let used = 2 + charset.len() + 1 + encoding.len() + 1 + end + 2;
    let bytes = match encoding {
        "B" | "b" => base64_lenient(payload.as_bytes()),
        "Q" | "q" => {
            let spaced = payload.replace('_', " ");
            quoted_printable::decode(spaced.as_bytes(), quoted_printable::ParseMode::Robust).ok()?
        }
        _ => return None,
    };
    let charset = charset.to_ascii_lowercase();
    let text = if charset.starts_with("iso-8859-1") && std::str::from_utf8(&bytes).is_err() {
        bytes.iter().map(|&b| char::from(b)).collect()
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Some((text, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_with_an_enclosed_message_is_read_part_by_part() {
        let raw = b"From: MAILER-DAEMON@mx.example\r\n\
Content-Type: multipart/report; report-type=delivery-status;\r\n\
\tboundary=\"b1\"\r\n\
\r\n\
preamble\r\n\
--b1\r\n\
Content-Type: text/plain\r\n\
\r\n\
It failed.\r\n\
--b1\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Final-Recipient: rfc822; ada@example.org\r\n\
Status: 5.1.1\r\n\
--b1\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
To: ada@example.org\r\n\
Subject: =?UTF-8?B?SGFyYm91ciDigJQgd2Vla2x5?=\r\n\
\r\n\
Hello\r\n\
--b1--\r\n";
        let m = parse(raw);
        assert_eq!(m.mime_type, "multipart/report");
        assert_eq!(m.param("report-type"), Some("delivery-status"));
        assert_eq!(m.children.len(), 3);
        assert_eq!(m.children[0].text(), "It failed.");
        assert!(m.children[1].text().contains("Status: 5.1.1"));
        let original = &m.children[2].children[0];
        assert_eq!(original.header("to"), Some("ada@example.org"));
        assert_eq!(original.header("subject"), Some("Harbour — weekly"));
        assert_eq!(m.walk().len(), 5);
        assert_eq!(m.walk_report().len(), 4);
    }

    #[test]
    fn broken_parts_are_read_as_far_as_they_go() {
        // No closing delimiter, base64 with junk, a boundary that never appears.
        let raw = b"Content-Type: multipart/mixed; boundary=zz\n\n--zz\nContent-Transfer-Encoding: base64\n\nSGVs!!bG8=\n";
        let m = parse(raw);
        assert_eq!(m.children.len(), 1);
        assert_eq!(m.children[0].body, b"Hello");
        let m = parse(b"Content-Type: multipart/mixed; boundary=nope\n\njust text\n");
        assert!(m.children.is_empty());
        assert_eq!(m.text(), "just text\n");
        let m = parse(b"no header here\nat all\n");
        assert!(m.headers.is_empty());
        assert_eq!(m.text(), "no header here\nat all\n");
    }

    #[test]
    fn nesting_is_bounded() {
        let mut raw = String::new();
        for i in 0..50 {
            let _ = std::fmt::Write::write_fmt(
                &mut raw,
                format_args!("Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n"),
            );
        }
        let m = parse(raw.as_bytes());
        assert!(m.walk().len() <= MAX_DEPTH + 1);
    }

    #[test]
    fn encoded_words_are_decoded() {
        assert_eq!(decode_words("=?utf-8?q?caf=C3=A9_noir?="), "café noir");
        assert_eq!(
            decode_words("=?ISO-8859-1?Q?caf=E9?= =?utf-8?B?IQ==?="),
            "café!"
        );
        assert_eq!(decode_words("plain =?x"), "plain =?x");
    }
}
