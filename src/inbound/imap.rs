//! A small `IMAP4rev1` client (RFC 3501) for one job: read each message of a folder, and move
//! it to another once it has been acted on. Always over TLS (implicit, or STARTTLS),
//! certificates verified (the public roots plus an optional private CA). Every read and
//! write has a timeout; a literal larger than the message limit is refused.
//!
//! Crash safety comes from the order: a message is acted on (committed, keyed by the hash
//! of its bytes) before it is moved, so a run killed in between finds it again next time,
//! recognises it, and only moves it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};

use crate::config::Imap;

/// The longest response line read (literals apart).
const MAX_LINE: usize = 64 * 1024;

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// One response line, with the literals it carried (`{n}` followed by n bytes).
pub(crate) struct Line {
    pub text: String,
    pub literals: Vec<Vec<u8>>,
}

pub(crate) struct Session {
    io: BufReader<Stream>,
    next_tag: u32,
    max_literal: usize,
    capabilities: Vec<String>,
}

impl Session {
    /// Connects, does TLS as configured and logs in.
    pub(crate) fn open(config: &Imap, password: &str, max_literal: usize) -> Result<Session> {
        let where_ = format!("{}:{}", config.host, config.port);
        let tcp = connect(&config.host, config.port, config.timeout)
            .with_context(|| format!("cannot connect to the IMAP server {where_}"))?;
        let tls = tls_config(config)?;
        let server_name = rustls_pki_types::ServerName::try_from(config.host.clone())
            .map_err(|_| anyhow!("{:?} is not a valid TLS server name", config.host))?;
        let mut session = if config.implicit_tls {
            let conn = rustls::ClientConnection::new(tls, server_name)?;
            Session::new(
                Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))),
                max_literal,
            )
        } else {
            let mut plain = Session::new(Stream::Plain(tcp), max_literal);
            plain.greeting()?;
            plain.command("STARTTLS")?;
            let Stream::Plain(tcp) = plain.io.into_inner() else {
                bail!("STARTTLS on a TLS connection");
            };
            let conn = rustls::ClientConnection::new(tls, server_name)?;
            Session::new(
                Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))),
                max_literal,
            )
        };
        if config.implicit_tls {
            session
                .greeting()
                .with_context(|| format!("no IMAP greeting from {where_} over TLS"))?;
        }
        session
            .command(&format!(
                "LOGIN {} {}",
                quoted(&config.username)?,
                quoted(password)?
            ))
            .with_context(|| format!("{where_} refused the login of {:?}", config.username))?;
        let lines = session.command("CAPABILITY")?;
        session.capabilities = lines
            .iter()
            .filter_map(|l| l.text.strip_prefix("* CAPABILITY "))
            .flat_map(|c| c.split_whitespace().map(str::to_ascii_uppercase))
            .collect();
        Ok(session)
    }

    fn new(stream: Stream, max_literal: usize) -> Session {
        Session {
            io: BufReader::new(stream),
            next_tag: 1,
            max_literal,
            capabilities: Vec::new(),
        }
    }

    fn greeting(&mut self) -> Result<()> {
        let line = self.read_line()?;
        if !line.text.starts_with("* OK") && !line.text.starts_with("* PREAUTH") {
            bail!("unexpected greeting {:?}", line.text);
        }
        Ok(())
    }

    /// Sends a command and reads up to its tagged answer; the untagged lines on OK.
    pub(crate) fn command(&mut self, command: &str) -> Result<Vec<Line>> {
        let tag = format!("a{}", self.next_tag);
        self.next_tag += 1;
        let stream = self.io.get_mut();
        stream.write_all(format!("{tag} {command}\r\n").as_bytes())?;
        stream.flush()?;
        let mut lines = Vec::new();
        loop {
            let line = self.read_line()?;
            if let Some(rest) = line.text.strip_prefix(&format!("{tag} ")) {
                if rest.starts_with("OK") {
                    return Ok(lines);
                }
                let verb = command.split(' ').next().unwrap_or(command);
                bail!("the IMAP server answered {verb} with {rest}");
            }
            lines.push(line);
        }
    }

    /// One response line and the literals inside it.
    fn read_line(&mut self) -> Result<Line> {
        let mut text = String::new();
        let mut literals = Vec::new();
        loop {
            let mut raw = Vec::new();
            (&mut self.io)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut raw)
                .context("reading from the IMAP server")?;
            if raw.is_empty() {
                bail!("the IMAP server closed the connection");
            }
            if !raw.ends_with(b"\n") {
                bail!("an IMAP response line longer than {MAX_LINE} bytes");
            }
            let piece = String::from_utf8_lossy(&raw);
            let piece = piece.trim_end_matches(['\r', '\n']);
            text.push_str(piece);
            let Some(size) = literal_size(piece) else {
                return Ok(Line { text, literals });
            };
            if size > self.max_literal {
                bail!(
                    "the IMAP server sent {size} bytes, more than the {} a message may have",
                    self.max_literal
                );
            }
            let mut literal = vec![0; size];
            self.io
                .read_exact(&mut literal)
                .context("reading a message from the IMAP server")?;
            literals.push(literal);
        }
    }

    pub(crate) fn has(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }

    /// Selects a folder; the UIDs of its messages, oldest first.
    pub(crate) fn uids(&mut self, folder: &str) -> Result<Vec<u32>> {
        self.command(&format!("SELECT {}", quoted(folder)?))
            .with_context(|| format!("cannot open the folder {folder:?}"))?;
        let lines = self.command("UID SEARCH ALL")?;
        let mut uids: Vec<u32> = lines
            .iter()
            .filter_map(|l| l.text.strip_prefix("* SEARCH"))
            .flat_map(|s| s.split_whitespace().filter_map(|n| n.parse().ok()))
            .collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// The size of a message, then its bytes when within the limit (`None`: too large).
    pub(crate) fn fetch(&mut self, uid: u32) -> Result<Option<Vec<u8>>> {
        let lines = self.command(&format!("UID FETCH {uid} (RFC822.SIZE)"))?;
        let size = lines.iter().find_map(|l| {
            let after = l.text.split("RFC822.SIZE ").nth(1)?;
            after
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<usize>()
                .ok()
        });
        if size.is_some_and(|s| s > self.max_literal) {
            return Ok(None);
        }
        let lines = self.command(&format!("UID FETCH {uid} BODY.PEEK[]"))?;
        Ok(lines
            .into_iter()
            .find_map(|l| l.literals.into_iter().next()))
    }

    /// Creates a folder unless it exists.
    pub(crate) fn ensure_folder(&mut self, folder: &str) -> Result<()> {
        let listed = self.command(&format!("LIST \"\" {}", quoted(folder)?))?;
        if listed.iter().any(|l| l.text.starts_with("* LIST")) {
            return Ok(());
        }
        self.command(&format!("CREATE {}", quoted(folder)?))
            .with_context(|| format!("cannot create the folder {folder:?}"))?;
        Ok(())
    }

    /// Moves a message to `folder` (MOVE, RFC 6851; else copy, mark deleted, expunge).
    pub(crate) fn move_to(&mut self, uid: u32, folder: &str) -> Result<()> {
        let target = quoted(folder)?;
        if self.has("MOVE") {
            self.command(&format!("UID MOVE {uid} {target}"))?;
            return Ok(());
        }
        self.command(&format!("UID COPY {uid} {target}"))?;
        self.command(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"))?;
        if self.has("UIDPLUS") {
            self.command(&format!("UID EXPUNGE {uid}"))?;
        } else {
            self.command("EXPUNGE")?;
        }
        Ok(())
    }

    pub(crate) fn logout(mut self) {
        let _ = self.command("LOGOUT");
    }
}

fn connect(host: &str, port: u16, timeout: std::time::Duration) -> Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| anyhow!("no address for {host}"), anyhow::Error::from))
}

fn tls_config(config: &Imap) -> Result<Arc<rustls::ClientConfig>> {
    let extra = match &config.ca_file {
        Some(path) => crate::deliver::tls::read_ca_file(path)?,
        None => Vec::new(),
    };
    crate::deliver::tls::client_config(&extra)
}

/// `{123}` or `{123+}` at the end of a line: a literal of that many bytes follows.
fn literal_size(line: &str) -> Option<usize> {
    let inner = line.strip_suffix('}')?;
    let open = inner.rfind('{')?;
    inner[open + 1..].trim_end_matches('+').parse().ok()
}

/// An IMAP quoted string; CR, LF and NUL cannot be quoted.
fn quoted(s: &str) -> Result<String> {
    if s.contains(['\r', '\n', '\0']) {
        bail!("a line break cannot be sent in an IMAP command");
    }
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_quoting() {
        assert_eq!(literal_size("* 1 FETCH (UID 3 BODY[] {1234}"), Some(1234));
        assert_eq!(literal_size("* 1 FETCH (UID 3 BODY[] {12+}"), Some(12));
        assert_eq!(literal_size("* OK done"), None);
        assert_eq!(quoted("a\"b\\c").expect("quoted"), "\"a\\\"b\\\\c\"");
        assert!(quoted("a\r\nb").is_err());
    }
}
