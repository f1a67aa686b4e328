//! SMTP delivery with lettre over connections we open ourselves: `TCP_NODELAY` set (lettre
//! 0.11.23 never sets it and stalls ~40 ms per message on delayed ACKs), TLS as configured
//! and never silently dropped, credentials only over an encrypted connection, timeouts on
//! every step, and N workers that each reuse one connection for many messages.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::tap::{Gate, Hold, Tap, ehlo_keywords};
use super::tls::{self, ImplicitTls};
use crate::config::secret::Secret;
use crate::config::{Security, Smtp};
use crate::mail::reply;
pub(crate) use crate::mail::reply::{Stage, Verdict};

/// Everything needed to open an authenticated connection, resolved once per run.
pub(crate) struct Connector {
    /// The session a send's first check opened, kept for its first worker: a small send
    /// needs one session, not a check and then another. Declared before the runtime it
    /// lives on, so it is dropped first.
    spare: std::sync::Mutex<Option<Session>>,
    /// The runtime every session of this connector runs on (a session cannot move to
    /// another), current-thread: one thread drives every connection.
    runtime: tokio::runtime::Runtime,
    cfg: Smtp,
    password: Option<Secret>,
    hello: ClientId,
    extra_roots: Vec<CertificateDer<'static>>,
    warning: Option<String>,
}

/// A failure that makes every further attempt pointless (bad credentials, TLS refused):
/// the run stops at once instead of hammering the relay.
#[derive(Debug)]
pub(crate) struct Fatal(pub String);

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Fatal {}

impl Connector {
    pub(crate) fn new(cfg: &Smtp, hello_domain: &str) -> Result<Connector> {
        let loaded = cfg
            .password
            .as_ref()
            .map(|source| {
                source
                    .load_private()
                    .context("cannot read the SMTP password")
            })
            .transpose()?;
        let (password, mut warning) = match loaded {
            Some((secret, warning)) => (Some(secret), warning),
            None => (None, None),
        };
        // The token is read again for each connection; reading it once here stops a run
        // whose token cannot be had before anything is sent.
        if let Some(source) = &cfg.oauth_token {
            let (_, w) = source
                .load_private()
                .context("cannot read the SMTP OAuth access token")?;
            warning = warning.or(w);
        }
        let extra_roots = match &cfg.ca_file {
            Some(path) => tls::read_ca_file(path)?,
            None => Vec::new(),
        };
        let name = cfg
            .hello_name
            .clone()
            .unwrap_or_else(|| hello_domain.to_string());
        let hello = match name.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => ClientId::Ipv4(ip),
            Ok(IpAddr::V6(ip)) => ClientId::Ipv6(ip),
            Err(_) => ClientId::Domain(name),
        };
        Ok(Connector {
            spare: std::sync::Mutex::new(None),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the network runtime")?,
            cfg: cfg.clone(),
            password,
            hello,
            extra_roots,
            warning,
        })
    }

    /// A warning about the password file (readable by other users), if any.
    pub(crate) fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    pub(crate) fn server(&self) -> String {
        format!("{}:{}", self.cfg.host, self.cfg.port)
    }

    /// The runtime the sessions of this connector run on.
    pub(crate) fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// Opens one session (TLS and AUTH as a send does them), sending nothing; returns what
    /// the server offers. With `keep`, the session stays open for the next `connect`.
    pub(crate) fn probe(&self, keep: bool) -> Result<String> {
        self.runtime.block_on(async {
            let session = self.open().await?;
            let offers = session.offers();
            if keep {
                if let Ok(mut spare) = self.spare.lock() {
                    *spare = Some(session);
                }
            } else {
                session.quit().await;
            }
            Ok(offers)
        })
    }

    /// A session: the one `probe` kept, if any, else a new one.
    pub(crate) async fn connect(&self) -> Result<Session> {
        if let Some(session) = self.spare.lock().ok().and_then(|mut s| s.take()) {
            return Ok(session);
        }
        self.open().await
    }

    /// Opens, secures and authenticates one connection. `Err(Fatal)` inside the anyhow
    /// error marks failures that retrying cannot fix.
    async fn open(&self) -> Result<Session> {
        let cfg = &self.cfg;
        let server = self.server();
        let mut tcp = timeout(
            cfg.connect_timeout,
            TcpStream::connect((cfg.host.as_str(), cfg.port)),
        )
        .await
        .map_err(|_| {
            anyhow!(
                "connecting to {server} timed out after {:?}",
                cfg.connect_timeout
            )
        })?
        .with_context(|| format!("cannot connect to {server}"))?;
        tcp.set_nodelay(true).context("cannot set TCP_NODELAY")?;
        let step = cfg.command_timeout;
        // After our own STARTTLS the server says nothing until the client's EHLO: lettre,
        // which starts by reading a greeting, is given one.
        let (stream, greeting): (Box<dyn AsyncTokioStream>, &[u8]) = match cfg.security {
            Security::None => (Box::new(tcp), b""),
            Security::Tls => (Box::new(self.handshake(tcp).await?), b""),
            Security::Starttls => {
                timeout(step, self.starttls(&mut tcp))
                    .await
                    .map_err(|_| anyhow!("STARTTLS with {server} timed out"))??;
                (
                    Box::new(self.handshake(tcp).await?),
                    b"220 TLS in place\r\n",
                )
            }
        };
        // One EHLO (one after TLS with STARTTLS, as RFC 3207 requires): lettre's, whose
        // reply the tap keeps for the keywords lettre drops (PIPELINING, SIZE).
        let (tap, heard, hold) = Tap::new(stream, greeting);
        let mut conn = with_timeout(
            step,
            AsyncSmtpConnection::connect_with_transport(Box::new(tap), &self.hello),
        )
        .await
        .with_context(|| format!("SMTP greeting from {server}"))?;
        let keywords = ehlo_keywords(&heard.stop());
        let offered = Offered::from_ehlo(keywords.iter().map(String::as_str));
        if let (Some(user), Some((secret, mechanisms))) = (&cfg.username, self.credentials()?) {
            // Config loading refuses credentials with security = "none"; this is the
            // last line of defence should that ever change.
            if cfg.security == Security::None {
                bail!(Fatal(
                    "refusing to send credentials over an unencrypted connection".into()
                ));
            }
            let creds = Credentials::new(user.clone(), secret.expose().to_string());
            timeout(step, conn.auth(mechanisms, &creds))
                .await
                .map_err(|_| anyhow!("authentication with {server} timed out"))?
                .map_err(|e| {
                    // A refused XOAUTH2 token comes back as a 334 challenge carrying the
                    // error, which lettre reports as an unexpected challenge.
                    let why = if cfg.oauth_token.is_some() {
                        "the OAuth access token was not accepted (expired, or not for this account or scope)".to_string()
                    } else {
                        e.to_string()
                    };
                    Fatal(format!("{server} refused the credentials of {user:?}: {why}"))
                })?;
        }
        Ok(Session::new(
            conn,
            hold,
            step,
            cfg.pipelining && offered.pipelining,
            offered.size,
        ))
    }

    /// The secret and the mechanisms to offer: the password with PLAIN or LOGIN, or an
    /// OAuth access token with XOAUTH2, read now so a token refreshed outside this program
    /// is the one used.
    fn credentials(&self) -> Result<Option<(Secret, &'static [Mechanism])>> {
        if let Some(source) = &self.cfg.oauth_token {
            let token = source
                .load()
                .map_err(|e| Fatal(format!("cannot read the SMTP OAuth access token: {e:#}")))?;
            return Ok(Some((token, &[Mechanism::Xoauth2])));
        }
        Ok(self
            .password
            .clone()
            .map(|p| (p, &[Mechanism::Plain, Mechanism::Login][..])))
    }

    /// The TLS handshake on `tcp`, the certificate checked for the configured host.
    async fn handshake(&self, tcp: TcpStream) -> Result<ImplicitTls> {
        let server = self.server();
        let connector = tokio_rustls::TlsConnector::from(tls::client_config(&self.extra_roots)?);
        let name = ServerName::try_from(self.cfg.host.clone()).map_err(|e| {
            Fatal(format!(
                "{:?} is not a valid TLS server name: {e}",
                self.cfg.host
            ))
        })?;
        let stream = timeout(self.cfg.command_timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| anyhow!("TLS handshake with {server} timed out"))?
            .map_err(|e| Fatal(format!("TLS handshake with {server} failed: {e}")))?;
        Ok(ImplicitTls(stream))
    }

    /// The plaintext start of a STARTTLS session (RFC 3207): the greeting, EHLO, and
    /// STARTTLS, refused unless offered: `security = "starttls"` never falls back to
    /// plaintext.
    async fn starttls(&self, tcp: &mut TcpStream) -> Result<()> {
        let server = self.server();
        let (code, _) = read_reply(tcp)
            .await
            .with_context(|| format!("SMTP greeting from {server}"))?;
        if code != 220 {
            bail!("{server} greeted with {code}");
        }
        tcp.write_all(format!("EHLO {}\r\n", self.hello).as_bytes())
            .await
            .with_context(|| format!("EHLO to {server}"))?;
        let (code, lines) = read_reply(tcp)
            .await
            .with_context(|| format!("EHLO to {server}"))?;
        let offered = code == 250
            && lines.iter().skip(1).any(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|k| k.eq_ignore_ascii_case("STARTTLS"))
            });
        if !offered {
            return Err(Fatal(format!(
                "{server} does not offer STARTTLS, and security = \"starttls\" never falls back to plaintext"
            ))
            .into());
        }
        tcp.write_all(b"STARTTLS\r\n")
            .await
            .with_context(|| format!("STARTTLS to {server}"))?;
        let (code, lines) = read_reply(tcp)
            .await
            .with_context(|| format!("STARTTLS to {server}"))?;
        if code != 220 {
            return Err(Fatal(format!(
                "STARTTLS with {server} failed: {code} {}",
                lines.join(" ")
            ))
            .into());
        }
        Ok(())
    }
}

/// One SMTP reply read from `tcp`: its code and its lines' text. Only for the plaintext
/// start of a session, when the server sends nothing it was not asked for.
async fn read_reply(tcp: &mut TcpStream) -> Result<(u16, Vec<String>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 64 * 1024 {
            bail!("an over-long reply");
        }
        if !buf.ends_with(b"\r\n") {
            continue;
        }
        let text = String::from_utf8_lossy(&buf);
        let lines: Vec<&str> = text.trim_end().split("\r\n").collect();
        let last = lines.last().copied().unwrap_or("");
        if last.len() == 3 || last.as_bytes().get(3) == Some(&b' ') {
            let code = last
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| anyhow!("not an SMTP reply: {last:?}"))?;
            let texts = lines
                .iter()
                .map(|l| l.get(4..).unwrap_or("").to_string())
                .collect();
            return Ok((code, texts));
        }
    }
}

async fn with_timeout<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T> {
    timeout(limit, fut)
        .await
        .map_err(|_| anyhow!("no answer within {limit:?}"))?
        .map_err(|e| anyhow!(crate::render::templates::chain(&e)))
}

/// The EHLO keywords that lettre does not keep.
#[derive(Debug, Default, PartialEq, Eq)]
struct Offered {
    pipelining: bool,
    size: Option<usize>,
}

impl Offered {
    /// Reads the keyword lines of an EHLO reply (after the greeting line).
    fn from_ehlo<'a>(lines: impl Iterator<Item = &'a str>) -> Offered {
        let mut offered = Offered::default();
        for line in lines {
            let mut words = line.split_whitespace();
            match words.next() {
                Some(k) if k.eq_ignore_ascii_case("PIPELINING") => offered.pipelining = true,
                // `SIZE 0` or a bare `SIZE` means no fixed limit (RFC 1870).
                Some(k) if k.eq_ignore_ascii_case("SIZE") => {
                    offered.size = words.next().and_then(|n| n.parse().ok()).filter(|n| *n > 0);
                }
                _ => {}
            }
        }
        offered
    }
}

/// Why a message did not go through, and what that says about it and the connection.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    /// The server's reply code, when there was a reply.
    pub code: Option<u16>,
    pub reply: String,
    /// Where it happened.
    pub stage: Stage,
    /// The connection is gone or in an unknown state: open a new one.
    pub connection_lost: bool,
}

impl Refusal {
    /// A refusal decided on this side before the command was sent, phrased as the reply a
    /// server would give, so it is classified like one.
    fn local(code: u16, reply: String, stage: Stage) -> Refusal {
        Refusal {
            code: Some(code),
            reply,
            stage,
            connection_lost: false,
        }
    }

    /// What this refusal means for the recipient and the run. No reply at all (a timeout,
    /// a lost connection) before the content is the relay's trouble, not the recipient's.
    pub(crate) fn verdict(&self) -> Verdict {
        match self.code {
            Some(code) => reply::classify(self.stage, code, &self.reply),
            None => Verdict::Throttled,
        }
    }

    /// The server will not say whether it accepted the message.
    pub(crate) fn outcome_unknown(&self) -> bool {
        self.stage == Stage::Content && self.code.is_none()
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reply)
    }
}

/// One open SMTP session. A message goes in two steps, so the caller can record
/// "attempting" durably before any content leaves: `begin` (MAIL, RCPT, DATA up to the
/// 354), then `content`.
pub(crate) struct Session {
    conn: AsyncSmtpConnection,
    /// Holds a message's final dot back until the journal allows it (`content`).
    hold: Hold,
    limit: Duration,
    eight_bit: bool,
    /// The server offers PIPELINING and the config allows it.
    pipelining: bool,
    /// The largest message the server accepts (its SIZE), when it says.
    size_limit: Option<usize>,
    /// The server offers SMTPUTF8 (RFC 6531): addresses may have non-ASCII local parts.
    smtputf8: bool,
    /// Messages sent on this connection so far.
    pub sent: usize,
}

fn code_of(e: &lettre::transport::smtp::Error) -> Option<u16> {
    e.status().and_then(|c| c.to_string().parse().ok())
}

/// What one reply (or its absence) means for the message and the connection.
fn classify(
    result: Result<Result<Response, lettre::transport::smtp::Error>, tokio::time::error::Elapsed>,
    stage: Stage,
    limit: Duration,
) -> Result<Response, Refusal> {
    match result {
        Err(_) => Err(Refusal {
            code: None,
            reply: format!("no answer within {limit:?}"),
            stage,
            connection_lost: true,
        }),
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => {
            let code = code_of(&e);
            Err(Refusal {
                code,
                reply: crate::render::templates::chain(&e),
                stage,
                // No reply code means a network or protocol error; 421 means the
                // server is closing the connection.
                connection_lost: code.is_none() || code == Some(421),
            })
        }
    }
}

impl Session {
    fn new(
        conn: AsyncSmtpConnection,
        hold: Hold,
        limit: Duration,
        pipelining: bool,
        size_limit: Option<usize>,
    ) -> Session {
        use lettre::transport::smtp::extension::Extension;
        let info = conn.server_info();
        let eight_bit = info.supports_feature(Extension::EightBitMime);
        let smtputf8 = info.supports_feature(Extension::SmtpUtfEight);
        Session {
            conn,
            hold,
            limit,
            eight_bit,
            pipelining,
            size_limit,
            smtputf8,
            sent: 0,
        }
    }

    pub(crate) fn pipelining(&self) -> bool {
        self.pipelining
    }

    /// What the server offers that a send uses, as people read it.
    pub(crate) fn offers(&self) -> String {
        let mut out = vec![if self.pipelining {
            "PIPELINING (used)".to_string()
        } else {
            "no PIPELINING (one command at a time)".to_string()
        }];
        out.push(match self.size_limit {
            Some(n) => format!("SIZE {} KB", n / 1024),
            None => "no SIZE limit stated".to_string(),
        });
        out.push(if self.smtputf8 {
            "SMTPUTF8 (non-ASCII local parts can be sent)".to_string()
        } else {
            "no SMTPUTF8 (non-ASCII local parts are refused before sending)".to_string()
        });
        out.push(if self.eight_bit {
            "8BITMIME".to_string()
        } else {
            "no 8BITMIME".to_string()
        });
        out.join(", ")
    }

    async fn command(&mut self, stage: Stage, command: &str) -> Result<Response, Refusal> {
        let result = timeout(self.limit, self.conn.command(command)).await;
        classify(result, stage, self.limit)
    }

    async fn reply(&mut self, stage: Stage) -> Result<Response, Refusal> {
        let result = timeout(self.limit, self.conn.read_response()).await;
        classify(result, stage, self.limit)
    }

    /// The MAIL and RCPT commands of a message, each ending in CRLF.
    fn envelope_commands(
        &self,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> Result<Vec<(Stage, String)>, Refusal> {
        use lettre::transport::smtp::extension::{MailBodyParameter, MailParameter};
        let mut params = Vec::new();
        if let Some(max) = self.size_limit {
            if bytes.len() > max {
                return Err(Refusal::local(
                    552,
                    format!(
                        "5.3.4 the message is {} bytes and the relay accepts at most {max} bytes (its SIZE limit)",
                        bytes.len()
                    ),
                    Stage::Mail,
                ));
            }
            params.push(MailParameter::Size(bytes.len()));
        }
        if !bytes.is_ascii() {
            if !self.eight_bit {
                return Err(Refusal::local(
                    554,
                    "5.6.3 the message is not 7-bit and the relay does not offer 8BITMIME".into(),
                    Stage::Mail,
                ));
            }
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let addresses = envelope.from().into_iter().chain(envelope.to());
        if let Some(wide) = addresses.clone().find(|a| !a.user().is_ascii()) {
            if !self.smtputf8 {
                return Err(Refusal::local(
                    553,
                    format!(
                        "5.6.7 {wide} has a non-ASCII local part and the relay does not offer SMTPUTF8"
                    ),
                    Stage::Rcpt,
                ));
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        let mut commands = vec![(
            Stage::Mail,
            Mail::new(envelope.from().cloned(), params).to_string(),
        )];
        for to in envelope.to() {
            commands.push((Stage::Rcpt, Rcpt::new(to.clone(), vec![]).to_string()));
        }
        Ok(commands)
    }

    /// MAIL FROM and RCPT TO, one round trip each; for servers without PIPELINING. On a
    /// refusal the transaction is reset when the connection allows it.
    pub(crate) async fn envelope(
        &mut self,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> Result<(), Refusal> {
        let commands = self.envelope_commands(envelope, bytes)?;
        for (stage, command) in commands {
            if let Err(refusal) = self.command(stage, &command).await {
                if !refusal.connection_lost {
                    self.reset().await;
                }
                return Err(refusal);
            }
        }
        Ok(())
    }

    /// The DATA command, up to the server's 354, after `envelope`.
    pub(crate) async fn start_data(&mut self) -> Result<(), Refusal> {
        if let Err(refusal) = self.command(Stage::Data, &Data.to_string()).await {
            if !refusal.connection_lost {
                self.reset().await;
            }
            return Err(refusal);
        }
        Ok(())
    }

    /// MAIL, RCPT and DATA in one write, then their replies (RFC 2920): one round trip
    /// instead of three.
    pub(crate) async fn begin_pipelined(
        &mut self,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> Result<(), Refusal> {
        let (stages, group) = self.group(envelope, bytes)?;
        let first = self.command(Stage::Mail, &group).await;
        self.replies(&stages, Some(first)).await
    }

    /// The pipelined group of a message (MAIL, its RCPTs, DATA): its stages and its text.
    pub(crate) fn group(
        &self,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> Result<(Vec<Stage>, String), Refusal> {
        let mut commands = self.envelope_commands(envelope, bytes)?;
        commands.push((Stage::Data, Data.to_string()));
        let group: String = commands.iter().map(|(_, c)| c.as_str()).collect();
        Ok((commands.into_iter().map(|(s, _)| s).collect(), group))
    }

    /// The replies to a group already written (`first`: the first one, when it was read
    /// with the write). Every reply is read, so a refused command leaves the connection in
    /// step; the first refusal is the one reported.
    pub(crate) async fn replies(
        &mut self,
        stages: &[Stage],
        mut first: Option<Result<Response, Refusal>>,
    ) -> Result<(), Refusal> {
        let mut refused: Option<Refusal> = None;
        for stage in stages {
            let answer = match first.take() {
                Some(a) => a,
                None => self.reply(*stage).await,
            };
            match answer {
                // A 354 after a refused MAIL or RCPT: the server now waits for content that
                // will not come. Only a new connection is in a known state.
                Ok(_) if *stage == Stage::Data => {
                    if let Some(mut r) = refused {
                        r.connection_lost = true;
                        return Err(r);
                    }
                }
                Ok(_) => {}
                Err(r) if r.connection_lost => {
                    let mut first = refused.unwrap_or(r);
                    first.connection_lost = true;
                    return Err(first);
                }
                Err(r) => {
                    refused.get_or_insert(r);
                }
            }
        }
        match refused {
            None => Ok(()),
            Some(r) => {
                self.reset().await;
                Err(r)
            }
        }
    }

    /// The content and its final dot, after `begin`, followed in the same write by
    /// `then` (the next message's envelope, from `group`) if any; `Ok` carries the
    /// server's acceptance reply. `then` needs content that is all ASCII. With a `gate`,
    /// the final dot (and `then`) waits for it, after the content has gone: the answer
    /// comes back beside the reply, `None` when the content failed before the gate.
    pub(crate) async fn content(
        &mut self,
        bytes: &[u8],
        then: Option<&str>,
        gate: Option<Gate>,
    ) -> (Result<String, Refusal>, Option<anyhow::Result<bool>>) {
        let limit = self.limit;
        let (result, answer) = match std::str::from_utf8(bytes) {
            // The whole stuffed message and its final dot in one write: lettre's own
            // `message` escapes byte by byte into a copy and writes the dot separately.
            Ok(text) if bytes.is_ascii() => {
                let then = then.unwrap_or("");
                if let Some(gate) = gate {
                    // The final dot line, and what follows it.
                    self.hold.arm(".\r\n".len() + then.len(), gate);
                }
                let content = DataContent(text, then);
                let result = timeout(limit, self.conn.command(content)).await;
                (result, self.hold.take())
            }
            _ => {
                // Rare (8-bit content, never followed by an envelope): the whole content
                // waits for the gate.
                let answer = match gate {
                    Some(gate) => Some(gate.await),
                    None => None,
                };
                if answer.as_ref().is_some_and(Result::is_err) {
                    let refusal = Refusal {
                        code: None,
                        reply: "the journal failed before the content".into(),
                        stage: Stage::Content,
                        connection_lost: true,
                    };
                    return (Err(refusal), answer);
                }
                (timeout(limit, self.conn.message(bytes)).await, answer)
            }
        };
        let response = match classify(result, Stage::Content, limit) {
            Ok(r) => r,
            Err(r) => return (Err(r), answer),
        };
        self.sent += 1;
        let reply = format!(
            "{} {}",
            response.code(),
            response.message().collect::<Vec<_>>().join(" ")
        );
        (Ok(reply), answer)
    }

    /// RSET after a refused transaction, so the next message starts clean.
    pub(crate) async fn reset(&mut self) {
        let _ = timeout(
            self.limit,
            self.conn.command(lettre::transport::smtp::commands::Rset),
        )
        .await;
    }

    pub(crate) async fn quit(mut self) {
        let _ = timeout(self.limit, self.conn.quit()).await;
    }

    pub(crate) async fn abort(mut self) {
        let _ = timeout(self.limit, self.conn.abort()).await;
    }
}

/// A message's content as the DATA phase carries it (RFC 5321 §4.5.2): every line that
/// starts with a dot gets a second dot, and `CRLF . CRLF` ends it; then the commands that
/// follow it in the same write (RFC 2920 §3.1: content may start a pipelined group).
struct DataContent<'a>(&'a str, &'a str);

impl std::fmt::Display for DataContent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.0;
        if text.starts_with('.') {
            f.write_str(".")?;
        }
        // memmem rather than `str::find`: this scans every byte of every message.
        let mut start = 0;
        for i in memchr::memmem::find_iter(text.as_bytes(), b"\n.") {
            f.write_str(&text[start..=i])?;
            f.write_str(".")?;
            start = i + 1;
        }
        f.write_str(&text[start..])?;
        if !text.ends_with("\r\n") {
            f.write_str("\r\n")?;
        }
        f.write_str(".\r\n")?;
        f.write_str(self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::{DataContent, Offered};

    #[test]
    fn ehlo_keywords_lettre_drops_are_read() {
        let lines = ["PIPELINING", "SIZE 10240000", "8BITMIME"];
        assert_eq!(
            Offered::from_ehlo(lines.into_iter()),
            Offered {
                pipelining: true,
                size: Some(10_240_000)
            }
        );
        assert_eq!(Offered::from_ehlo(["SIZE"].into_iter()).size, None);
        assert_eq!(Offered::from_ehlo(["size 0"].into_iter()).size, None);
    }

    #[test]
    fn data_content_doubles_leading_dots_and_ends_with_a_dot_line() {
        assert_eq!(
            DataContent("a\r\n.b\r\n..c\r\n", "").to_string(),
            "a\r\n..b\r\n...c\r\n.\r\n"
        );
        assert_eq!(DataContent(".x", "").to_string(), "..x\r\n.\r\n");
        assert_eq!(DataContent("plain\r\n", "").to_string(), "plain\r\n.\r\n");
        assert_eq!(
            DataContent("one", "MAIL FROM:<a@b.example>\r\nDATA\r\n").to_string(),
            "one\r\n.\r\nMAIL FROM:<a@b.example>\r\nDATA\r\n",
            "the next envelope follows the final dot"
        );
    }
}
