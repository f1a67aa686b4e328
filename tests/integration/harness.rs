//! Test harness: fixture projects in temporary folders, the real binary run as a user
//! would, and a real SMTP server (mailin-embedded) on loopback that records what it gets.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailin_embedded::response::{self, Response};
use mailin_embedded::{Handler, Server};

/// 2026-11-27 09:00:00 UTC: every run in the tests sees this clock.
pub(crate) const PINNED_EPOCH: &str = "1795770000";

pub(crate) const CONFIG: &str = r#"[newsletter]
name = "Harbour Weekly"
from = "Harbour Weekly <weekly@harbour.example>"
reply_to = "desk@harbour.example"
contact = "desk@harbour.example"
list_id = "weekly.harbour.example"

[unsubscribe]
url = "https://harbour.example/unsubscribe/{token}"
mailto = "unsubscribe@harbour.example"
secret_file = "key"

[transport]
kind = "outbox"
"#;

pub(crate) const SUBSCRIBERS: &str = r#"# test list
[[subscriber]]
email = "ada@example.org"
name = "Ada"
status = "subscribed"

[[subscriber]]
email = "bob@example.net"
status = "subscribed"

[[subscriber]]
email = "cy@example.com"
name = "Cy"
status = "subscribed"

[[subscriber]]
email = "gone@example.org"
name = "Gone"
status = "unsubscribed"
"#;

pub(crate) fn article(title: &str, date: &str, selected: bool) -> String {
    format!(
        "+++\ntitle = {title:?}\ndate = {date}\nlink = \"https://harbour.example/n/{date}\"\nsummary = \"A short summary.\"\nselected = {selected}\n\n[image]\nurl = \"https://harbour.example/p.jpg\"\nalt = \"A photo\"\ncaption = \"The caption.\"\ncredit = \"A. Photographer\"\n+++\nThe body, with *emphasis*.\n"
    )
}

/// A project folder with a config, a subscriber list, a key and two selected articles.
pub(crate) struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub(crate) fn new() -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = Project { dir };
        p.write("newsletter.toml", CONFIG);
        p.write("subscribers.toml", SUBSCRIBERS);
        p.write("key", "test-key-of-the-harbour-weekly\n");
        // Private, as a real key must be: SMTP runs warn about a readable one.
        std::fs::set_permissions(
            p.path("key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod key");
        p.write(
            "articles/ferry.md",
            &article("Ferry timetable", "2026-11-24", true),
        );
        p.write(
            "articles/library.md",
            &article("Library reopens", "2026-11-22", true),
        );
        p
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub(crate) fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write fixture");
    }

    pub(crate) fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).expect("read file")
    }

    /// Switches the config to SMTP with the given `[smtp]` body.
    pub(crate) fn use_smtp(&self, smtp: &str) {
        let config = CONFIG.replace("kind = \"outbox\"", "kind = \"smtp\"") + "\n[smtp]\n" + smtp;
        self.write("newsletter.toml", &config);
    }

    /// Sends to a plaintext server on 127.0.0.1:`port` over `connections`, retrying after
    /// 0.1 s; `extra` adds `[smtp]` lines.
    pub(crate) fn use_loopback(&self, port: u16, connections: usize, extra: &str) {
        self.use_smtp(&format!(
            "host = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nconnections = {connections}\nretry_delay_seconds = 0.1\n{extra}"
        ));
    }

    /// Runs the binary in the project folder with the pinned clock.
    pub(crate) fn run(&self, args: &[&str]) -> Run {
        self.run_with_env(args, &[])
    }

    pub(crate) fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        Run(self.command(args, env).output().expect("run newsletter"))
    }

    /// The binary as a command, ready to run in the project folder.
    pub(crate) fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_newsletter"));
        cmd.current_dir(self.dir.path())
            .args(args)
            .env("SOURCE_DATE_EPOCH", PINNED_EPOCH)
            .stdin(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts the binary without waiting for it.
    pub(crate) fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args, &[])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn newsletter")
    }

    /// A subscriber list of `n` subscribed addresses, reader1@example.org … readerN@.
    pub(crate) fn subscribers(&self, n: usize) -> Vec<String> {
        let emails: Vec<String> = (1..=n).map(|i| format!("reader{i}@example.org")).collect();
        let text: String = emails
            .iter()
            .map(|e| format!("[[subscriber]]\nemail = \"{e}\"\nstatus = \"subscribed\"\n\n"))
            .collect();
        self.write("subscribers.toml", &text);
        emails
    }

    /// One row of the state database per result of `sql`, its columns joined by `|`.
    pub(crate) fn query(&self, sql: &str) -> Vec<String> {
        let conn = rusqlite::Connection::open(self.path("newsletter.db")).expect("open state");
        let mut stmt = conn.prepare(sql).expect("prepare");
        let columns = stmt.column_count();
        stmt.query_map([], |r| {
            (0..columns)
                .map(|i| {
                    r.get::<_, rusqlite::types::Value>(i).map(|v| match v {
                        rusqlite::types::Value::Null => "NULL".to_string(),
                        rusqlite::types::Value::Integer(n) => n.to_string(),
                        rusqlite::types::Value::Text(s) => s,
                        other => format!("{other:?}"),
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|v| v.join("|"))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
    }

    /// Editions recorded in the state database (0 when it does not exist).
    pub(crate) fn editions(&self) -> usize {
        let path = self.path("newsletter.db");
        if !path.exists() {
            return 0;
        }
        let conn = rusqlite::Connection::open(path).expect("open state");
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM edition", [], |r| r.get(0))
            .expect("count");
        usize::try_from(n).expect("count")
    }

    /// Journal states of one edition's recipients: (email, state), by email.
    pub(crate) fn journal(&self) -> Vec<(String, String)> {
        self.journal_in("newsletter.db")
    }

    pub(crate) fn journal_in(&self, rel: &str) -> Vec<(String, String)> {
        let conn = rusqlite::Connection::open(self.path(rel)).expect("open state");
        let mut stmt = conn
            .prepare("SELECT email, state FROM delivery ORDER BY email")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    /// The `.eml` files written into the outbox, by file name.
    pub(crate) fn outbox(&self) -> Vec<(String, Vec<u8>)> {
        let mut found = Vec::new();
        let root = self.path("outbox");
        let Ok(editions) = std::fs::read_dir(&root) else {
            return found;
        };
        for edition in editions {
            for f in std::fs::read_dir(edition.expect("entry").path()).expect("edition dir") {
                let path = f.expect("entry").path();
                let name = path
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned();
                found.push((name, std::fs::read(&path).expect("read eml")));
            }
        }
        found.sort();
        found
    }
}

pub(crate) struct Run(pub Output);

impl Run {
    pub(crate) fn code(&self) -> i32 {
        self.0.status.code().expect("exit code")
    }
    pub(crate) fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Asserts the exit code, showing both streams when it differs.
    pub(crate) fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// Asserts a `send` that found one message in flight from a run that died, and
    /// reported it in doubt (exit code 4).
    pub(crate) fn expect_one_in_doubt(&self) -> &Self {
        self.expect_code(4);
        assert!(
            self.stderr().contains("1 message were in flight"),
            "{}",
            self.stderr()
        );
        assert!(self.stdout().contains("1 in doubt"), "{}", self.stdout());
        self
    }
}

/// One message as the server received it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: Vec<u8>,
}

#[derive(Default)]
pub(crate) struct Seen {
    pub messages: Vec<Received>,
    pub connections: usize,
    pub mails: usize,
}

/// Where the server can hold a transaction while the test acts (kills the client, locks
/// the journal): the n-th MAIL command, or the n-th message's final dot, before replying.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Point {
    Mail(usize),
    DataEnd(usize),
}

/// A one-shot rendezvous between a server thread and the test.
#[derive(Default)]
pub(crate) struct Gate {
    state: Mutex<(bool, bool)>,
    cv: std::sync::Condvar,
}

impl Gate {
    /// Server side: say the point is reached, then wait for the test to release it.
    fn reach_and_wait(&self) {
        let mut s = self.state.lock().expect("gate");
        s.0 = true;
        self.cv.notify_all();
        while !s.1 {
            s = self.cv.wait(s).expect("gate");
        }
    }

    /// Test side: wait (at most 20 s) until the server reaches the point.
    pub(crate) fn wait_reached(&self) {
        let s = self.state.lock().expect("gate");
        let (s, timeout) = self
            .cv
            .wait_timeout_while(s, std::time::Duration::from_secs(20), |s| !s.0)
            .expect("gate");
        assert!(
            !timeout.timed_out() && s.0,
            "the server never reached the pause point"
        );
    }

    pub(crate) fn release(&self) {
        self.state.lock().expect("gate").1 = true;
        self.cv.notify_all();
    }
}

#[derive(Clone)]
struct Recorder {
    seen: Arc<Mutex<Seen>>,
    reject: Arc<Vec<(String, u16)>>,
    pause: Option<Point>,
    gate: Arc<Gate>,
    mail_reply: Option<(usize, u16)>,
    throttle_mails: std::ops::Range<usize>,
    slow_mails: usize,
    slow_for: std::time::Duration,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
    greeted: bool,
}

impl Handler for Recorder {
    fn helo(&mut self, _ip: std::net::IpAddr, _domain: &str) -> Response {
        // Each connection has its own clone of the handler; a client may say EHLO more
        // than once in a session (after STARTTLS, or to read the extensions again).
        if !self.greeted {
            self.greeted = true;
            self.seen.lock().expect("lock").connections += 1;
        }
        response::OK
    }

    fn mail(&mut self, _ip: std::net::IpAddr, _domain: &str, _from: &str) -> Response {
        let n = {
            let mut seen = self.seen.lock().expect("lock");
            seen.mails += 1;
            seen.mails
        };
        if self.pause == Some(Point::Mail(n)) {
            self.gate.reach_and_wait();
        }
        if let Some((at, code)) = self.mail_reply
            && at == n
        {
            return Response::custom(code, "test server says so".to_string());
        }
        if self.throttle_mails.contains(&n) {
            return Response::custom(450, "4.7.1 Error: too much mail from 127.0.0.1".to_string());
        }
        if n <= self.slow_mails {
            std::thread::sleep(self.slow_for);
        }
        response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        for (addr, code) in self.reject.iter() {
            if to.contains(addr.as_str()) {
                return Response::custom(*code, format!("mailbox {addr} refused by test server"));
            }
        }
        response::OK
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.from = from.to_string();
        self.to = to.to_vec();
        self.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let received = Received {
            from: self.from.clone(),
            to: self.to.clone(),
            data: std::mem::take(&mut self.data),
        };
        let n = {
            let mut seen = self.seen.lock().expect("lock");
            seen.messages.push(received);
            seen.messages.len()
        };
        if self.pause == Some(Point::DataEnd(n)) {
            self.gate.reach_and_wait();
        }
        response::OK
    }
}

/// What the test server demands and refuses.
#[derive(Default)]
pub(crate) struct ServerOptions {
    /// RCPT replies for chosen addresses, e.g. ("bob@example.net", 550); "@" matches all.
    pub reject: Vec<(String, u16)>,
    /// Hold the server at this point until the test releases the gate.
    pub pause: Option<Point>,
    /// Reply with this code to the n-th MAIL command, e.g. (3, 421).
    pub mail_reply: Option<(usize, u16)>,
    /// Answer these MAIL commands (counted from 1) as Postfix's rate limit does:
    /// `450 4.7.1 Error: too much mail from 127.0.0.1`.
    pub throttle_mails: std::ops::Range<usize>,
    /// The first `slow_mails` MAIL commands are answered after `slow_for`.
    pub slow_mails: usize,
    pub slow_for: std::time::Duration,
}

pub(crate) struct SmtpServer {
    pub port: u16,
    pub seen: Arc<Mutex<Seen>>,
    pub gate: Arc<Gate>,
}

impl SmtpServer {
    pub(crate) fn start(options: ServerOptions) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let gate = Arc::new(Gate::default());
        let recorder = Recorder {
            seen: Arc::clone(&seen),
            reject: Arc::new(options.reject),
            pause: options.pause,
            gate: Arc::clone(&gate),
            mail_reply: options.mail_reply,
            throttle_mails: options.throttle_mails,
            slow_mails: options.slow_mails,
            slow_for: options.slow_for,
            from: String::new(),
            to: Vec::new(),
            data: Vec::new(),
            greeted: false,
        };
        let mut server = Server::new(recorder);
        server
            .with_name("test.localhost")
            .with_tcp_listener(listener)
            .with_num_threads(8);
        // The server runs until the test process exits.
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        SmtpServer { port, seen, gate }
    }

    /// How many messages each address received.
    pub(crate) fn deliveries(&self) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for to in self.messages().into_iter().flat_map(|m| m.to) {
            *counts.entry(to).or_insert(0) += 1;
        }
        counts
    }

    pub(crate) fn sessions(&self) -> usize {
        self.seen.lock().expect("lock").connections
    }

    pub(crate) fn messages(&self) -> Vec<Received> {
        self.seen.lock().expect("lock").messages.clone()
    }

    /// Recipients of every message received, sorted.
    pub(crate) fn recipients(&self) -> Vec<String> {
        let mut all: Vec<String> = self.messages().into_iter().flat_map(|m| m.to).collect();
        all.sort();
        all
    }
}

/// Implicit TLS (as on port 465) in front of a plain server: a TLS listener with the test
/// certificate that relays each connection to `backend`. Returns the listener's port.
pub(crate) fn tls_front(backend: u16, dir: &Path) -> u16 {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = write_test_pki(dir);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .expect("cert file")
        .collect::<Result<_, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(&key).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    accept_on_thread(move |socket| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(mut tls) = acceptor.accept(socket).await else {
                return;
            };
            let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", backend)).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
        }
    })
}

/// A listener on 127.0.0.1 whose connections are each handed to `serve`, as a task of a
/// runtime on a thread of its own that runs until the test process ends. Returns its port.
pub(crate) fn accept_on_thread<F, Fut>(serve: F) -> u16
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket));
            }
        });
    });
    port
}

/// A test CA (`ca.pem`) and a `localhost` certificate it signed (`cert.pem`, `key.pem`).
pub(crate) fn write_test_pki(dir: &Path) -> (PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "newsletter test CA");
    let ca_key = KeyPair::generate().expect("ca key");
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca, &ca_key)
        .expect("leaf cert");
    std::fs::create_dir_all(dir).expect("mkdir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write ca");
    std::fs::write(&cert, leaf.pem()).expect("write cert");
    std::fs::write(&key, leaf_key.serialize_pem()).expect("write key");
    (cert, key)
}

pub(crate) fn parse(data: &[u8]) -> mail_parser::Message<'_> {
    mail_parser::MessageParser::default()
        .parse(data)
        .expect("a parsable message")
}

/// A Python virtual environment with `packages` installed from `PyPI`, made once under the
/// target folder and shared by every test (a file lock keeps parallel test processes from
/// building it twice). Returns its python.
pub(crate) fn python_with(name: &str, packages: &[&str]) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = root.join(format!("venv-{name}"));
    std::fs::create_dir_all(&root).expect("target tmp dir");
    let lock = std::fs::File::create(root.join(format!("venv-{name}.lock"))).expect("lock file");
    lock.lock().expect("lock the venv");
    let python = dir.join("bin/python");
    let ready = dir.join(".ready");
    if !ready.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&dir)
            .status()
            .expect("python3 -m venv")
            .success();
        assert!(
            ok,
            "cannot create a virtual environment in {}",
            dir.display()
        );
        let ok = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(packages)
            .status()
            .expect("pip install")
            .success();
        assert!(ok, "pip install {packages:?} failed");
        std::fs::write(&ready, "").expect("mark ready");
    }
    python
}

/// Each address once: what a server should have counted.
pub(crate) fn exactly_once(emails: &[String]) -> std::collections::BTreeMap<String, usize> {
    emails.iter().map(|e| (e.clone(), 1)).collect()
}

/// Postfix's smtp-sink on a free loopback port, dumping each message into a folder.
pub(crate) struct Sink {
    pub port: u16,
    child: Child,
    dump: tempfile::TempDir,
}

/// The first of `candidates` that exists, after `.ci/install PART` when none does (as
/// root, from Debian's packages; the script holds a lock, so tests running at once wait
/// for one install), so that `cargo test` works on a fresh machine.
pub(crate) fn installed(part: &str, candidates: &[&str]) -> PathBuf {
    let find = || candidates.iter().map(PathBuf::from).find(|p| p.exists());
    if find().is_none() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/install");
        let status = Command::new(&script)
            .arg(part)
            .status()
            .unwrap_or_else(|e| panic!("run .ci/install {part}: {e}"));
        assert!(status.success(), "{} {part} failed", script.display());
    }
    find().unwrap_or_else(|| panic!("{part} is installed"))
}

/// smtp-sink (Postfix).
fn smtp_sink_binary() -> PathBuf {
    installed(
        "postfix",
        &[
            "/usr/sbin/smtp-sink",
            "/usr/bin/smtp-sink",
            "/usr/local/sbin/smtp-sink",
        ],
    )
}

impl Sink {
    pub(crate) fn start(extra: &[&str]) -> Sink {
        let dump = tempfile::tempdir().expect("tempdir");
        // smtp-sink drops root privileges to the -u user, who must be able to write here.
        std::fs::set_permissions(
            dump.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("chmod");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let template = format!("{}/msg.", dump.path().display());
        let mut cmd = Command::new(smtp_sink_binary());
        if running_as_root() {
            cmd.args(["-u", "nobody"]);
        }
        let child = cmd
            .args(["-d", &template])
            .args(extra)
            .arg(format!("127.0.0.1:{port}"))
            .arg("64")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smtp-sink");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "smtp-sink did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Sink { port, child, dump }
    }

    /// Waits (at most 10 s) until `n` messages are in the dump folder: smtp-sink writes a
    /// dump as it answers the final dot.
    pub(crate) fn wait_for(&self, n: usize) -> BTreeMap<String, usize> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.deliveries().values().sum::<usize>() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.deliveries()
    }

    /// Every message received, as dumped: smtp-sink's envelope lines (X-Rcpt-Args, ...)
    /// then the message.
    pub(crate) fn dumps(&self) -> Vec<Vec<u8>> {
        std::fs::read_dir(self.dump.path())
            .expect("dump dir")
            .map(|e| std::fs::read(e.expect("entry").path()).expect("dump"))
            .collect()
    }

    /// Messages received per recipient, from the envelope smtp-sink wrote into each dump.
    pub(crate) fn deliveries(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for entry in std::fs::read_dir(self.dump.path()).expect("dump dir") {
            let text = std::fs::read_to_string(entry.expect("entry").path()).expect("dump");
            for line in text.lines().filter(|l| l.starts_with("X-Rcpt-Args: ")) {
                let to = line["X-Rcpt-Args: ".len()..]
                    .trim_matches(|c| c == '<' || c == '>')
                    .to_string();
                *counts.entry(to).or_insert(0) += 1;
            }
        }
        counts
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn running_as_root() -> bool {
    // The effective uid without a libc dependency: /proc tells.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

const AIOSMTPD: &str = r#"
import json, sys, time
from aiosmtpd.controller import Controller
port, out, utf8, size = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
class Record:
    async def handle_DATA(self, server, session, envelope):
        with open(out, "a") as f:
            f.write(json.dumps({"to": envelope.rcpt_tos, "mail_options": envelope.mail_options}) + "\n")
        return "250 2.0.0 OK"
Controller(Record(), hostname="127.0.0.1", port=port, enable_SMTPUTF8=utf8, data_size_limit=size).start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

/// Starts a server that prints `ready` on its standard output once it listens.
pub(crate) fn start_until_ready(mut command: Command, what: &str) -> Child {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
        .expect("read ready line");
    assert_eq!(line.trim(), "ready", "{what} did not start");
    child
}

const TLS_SMTPD: &str = r#"
import base64, json, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
port, tls, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
password = sys.argv[4] if len(sys.argv) > 4 else None
GOOD = {f"ya29.token-{n}" for n in range(1, 10)}
def log(**event):
    with open(out, "a") as f:
        f.write(json.dumps(event) + "\n")
class Handler:
    async def auth_XOAUTH2(self, server, args):
        raw = base64.b64decode(args[1]).decode() if len(args) > 1 else ""
        fields = dict(p.split("=", 1) for p in raw.split("\x01") if "=" in p)
        user, token = fields.get("user"), fields.get("auth", "").removeprefix("Bearer ")
        if user == "weekly@harbour.example" and token in GOOD:
            log(auth="ok", token=token)
            return AuthResult(success=True)
        log(auth="refused")
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"})
        await server.challenge_auth(error)
        return AuthResult(success=False, message="535 5.7.8 Username and Password not accepted")
    async def handle_DATA(self, server, session, envelope):
        log(to=envelope.rcpt_tos)
        return "250 2.0.0 OK"
def authenticator(server, session, envelope, mechanism, auth_data):
    user = auth_data.login.decode()
    ok = password is not None and user == "weekly" and auth_data.password.decode() == password
    log(auth="ok" if ok else "refused", user=user)
    return AuthResult(success=ok, handled=False)
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(tls + "/cert.pem", tls + "/key.pem")
Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=context,
           require_starttls=True, auth_require_tls=True, authenticator=authenticator,
           auth_exclude_mechanism=["LOGIN"]).start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

/// aiosmtpd requiring STARTTLS (a certificate of the test CA in `tls/`) on a free port, with
/// XOAUTH2 (tokens `ya29.token-1` to `-9`) and, given a password, PLAIN for the
/// user `weekly`; what it saw (authentications, recipients) is in `events.jsonl`.
pub(crate) struct TlsSmtpd {
    child: Child,
    pub port: u16,
    events: std::path::PathBuf,
}

impl TlsSmtpd {
    pub(crate) fn start(p: &Project, password: Option<&str>) -> TlsSmtpd {
        let python = python_with("aiosmtpd", &["aiosmtpd==1.4.6"]);
        write_test_pki(&p.path("tls"));
        p.write("tls-smtpd.py", TLS_SMTPD);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let events = p.path("events.jsonl");
        let mut command = Command::new(python);
        command
            .arg(p.path("tls-smtpd.py"))
            .arg(port.to_string())
            .arg(p.path("tls"))
            .arg(&events);
        if let Some(password) = password {
            command.arg(password);
        }
        let child = start_until_ready(command, "aiosmtpd");
        TlsSmtpd {
            child,
            port,
            events,
        }
    }

    pub(crate) fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }
}

impl Drop for TlsSmtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsSmtpd {
    /// The recipients of each message received, in order.
    pub(crate) fn recipients(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter_map(|e| e["to"].as_array().cloned())
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect()
    }
}

/// aiosmtpd (Python's SMTP server) on a free loopback port: offers SMTPUTF8 or not, and
/// SIZE with the given limit. Each message's envelope is a JSON line in `received.jsonl`.
pub(crate) struct Aiosmtpd {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Aiosmtpd {
    pub(crate) fn start(smtputf8: bool, size_limit: usize) -> Aiosmtpd {
        let python = python_with("aiosmtpd", &["aiosmtpd==1.4.6"]);
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("server.py"), AIOSMTPD).expect("write server");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut command = Command::new(python);
        command
            .arg(dir.path().join("server.py"))
            .arg(port.to_string())
            .arg(dir.path().join("received.jsonl"))
            .arg(if smtputf8 { "1" } else { "0" })
            .arg(size_limit.to_string());
        let child = start_until_ready(command, "aiosmtpd");
        Aiosmtpd { child, port, dir }
    }

    /// (recipients, MAIL parameters) of each message received.
    pub(crate) fn received(&self) -> Vec<(Vec<String>, Vec<String>)> {
        let Ok(text) = std::fs::read_to_string(self.dir.path().join("received.jsonl")) else {
            return Vec::new();
        };
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json line");
                let strings = |key: &str| -> Vec<String> {
                    v[key]
                        .as_array()
                        .expect("array")
                        .iter()
                        .map(|s| s.as_str().expect("string").to_string())
                        .collect()
                };
                (strings("to"), strings("mail_options"))
            })
            .collect()
    }
}

impl Drop for Aiosmtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `serve`: stopped when dropped, so a failing test leaves no server behind.
pub(crate) struct Served(Child);

impl std::ops::Deref for Served {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Served {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `serve` on a free loopback port; returns the process and its address.
pub(crate) fn serve(p: &Project) -> (Served, String) {
    serve_with(p, &[])
}

/// `serve` with more options.
pub(crate) fn serve_with(p: &Project, extra: &[&str]) -> (Served, String) {
    serve_with_env(p, extra, &[])
}

/// `serve` with more options and environment variables (another pinned clock).
pub(crate) fn serve_with_env(
    p: &Project,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Served, String) {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut child = p
        .command(&args, env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn newsletter serve");
    let stdout = child.stdout.take().expect("stdout");
    // Its log (a line per click) is read as it comes: a full pipe would stop the server.
    if let Some(mut stderr) = child.stderr.take() {
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    }
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).expect("first line");
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (Served(child), addr)
}

/// One HTTP/1.1 request; returns the status code and the body. An answer that has not come
/// within a minute fails the test rather than hanging it.
pub(crate) fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to serve");
    s.set_read_timeout(Some(Duration::from_mins(1)))
        .expect("read timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: harbour.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read");
    let code = response
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// The path of the https unsubscribe link in a message's List-Unsubscribe header.
pub(crate) fn unsubscribe_path(data: &[u8]) -> String {
    let msg = parse(data);
    let header = msg
        .header_raw("List-Unsubscribe")
        .expect("List-Unsubscribe")
        .to_string();
    let url = header
        .split(['<', '>'])
        .find(|s| s.starts_with("https://"))
        .expect("https link")
        .to_string();
    assert_eq!(
        msg.header_raw("List-Unsubscribe-Post").map(str::trim),
        Some("List-Unsubscribe=One-Click")
    );
    url.strip_prefix("https://harbour.example")
        .expect("our host")
        .to_string()
}

/// Dovecot's IMAP server on a free loopback port (implicit TLS, a certificate for
/// `localhost` signed by the test CA in `ca.pem`), with one user `bounces` whose Maildir
/// the test writes messages into. Stopped when dropped.
pub(crate) struct Dovecot {
    pub port: u16,
    /// The plain IMAP port, where a client must say STARTTLS before it may log in.
    pub starttls_port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

pub(crate) const IMAP_PASSWORD: &str = "imap-password-of-the-bounces";

impl Dovecot {
    pub(crate) fn start() -> Dovecot {
        let binary = installed("dovecot", &["/usr/sbin/dovecot"]);
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        write_test_pki(d);
        for sub in [
            "run",
            "state",
            "home",
            "mail/bounces/new",
            "mail/bounces/cur",
            "mail/bounces/tmp",
        ] {
            std::fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        // Dovecot's processes run as an unprivileged user, who must write the mailbox.
        for sub in [
            "",
            "home",
            "mail",
            "mail/bounces",
            "mail/bounces/new",
            "mail/bounces/cur",
            "mail/bounces/tmp",
        ] {
            std::fs::set_permissions(
                d.join(sub),
                std::os::unix::fs::PermissionsExt::from_mode(0o777),
            )
            .expect("chmod");
        }
        let user = if running_as_root() {
            "nobody".to_string()
        } else {
            String::from_utf8_lossy(&Command::new("id").arg("-un").output().expect("id").stdout)
                .trim()
                .to_string()
        };
        let group = String::from_utf8_lossy(
            &Command::new("id")
                .args(["-gn", &user])
                .output()
                .expect("id")
                .stdout,
        )
        .trim()
        .to_string();
        let free = || {
            TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port()
        };
        let (port, starttls_port) = (free(), free());
        std::fs::write(
            d.join("passwd"),
            format!("bounces:{{PLAIN}}{IMAP_PASSWORD}\n"),
        )
        .expect("passwd");
        let p = d.display();
        let config = format!(
            "protocols = imap\nlisten = 127.0.0.1\nbase_dir = {p}/run\nstate_dir = {p}/state\n\
             log_path = {p}/dovecot.log\nssl = required\nssl_cert = <{p}/cert.pem\nssl_key = <{p}/key.pem\n\
             mail_location = maildir:{p}/mail/%u\ndefault_internal_user = {user}\ndefault_login_user = {user}\n\
             default_internal_group = {group}\nfirst_valid_uid = 1\nfirst_valid_gid = 1\nauth_mechanisms = plain\n\
             passdb {{\n  driver = passwd-file\n  args = {p}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = uid={user} gid={group} home={p}/home/%u\n}}\n\
             service imap-login {{\n  chroot =\n  inet_listener imap {{\n    port = {starttls_port}\n  }}\n  inet_listener imaps {{\n    port = {port}\n    ssl = yes\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n"
        );
        std::fs::write(d.join("dovecot.conf"), config).expect("config");
        let child = Command::new(binary)
            .args(["-F", "-c"])
            .arg(d.join("dovecot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dovecot");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "dovecot did not start: {}",
                std::fs::read_to_string(d.join("dovecot.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Dovecot {
            port,
            starttls_port,
            dir,
            child,
        }
    }

    /// Delivers a message into the user's INBOX (a file in its Maildir's new/).
    pub(crate) fn deliver(&self, name: &str, text: &str) {
        let new = self.dir.path().join("mail/bounces/new");
        let tmp = self.dir.path().join("mail/bounces/tmp").join(name);
        std::fs::write(&tmp, text).expect("write message");
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .expect("chmod");
        std::fs::rename(&tmp, new.join(name)).expect("deliver");
    }

    /// The messages in a folder of the user's Maildir (`""`: INBOX).
    pub(crate) fn count(&self, folder: &str) -> usize {
        let base = self.dir.path().join("mail/bounces");
        let base = if folder.is_empty() {
            base
        } else {
            base.join(format!(".{folder}"))
        };
        ["new", "cur"]
            .iter()
            .map(|sub| std::fs::read_dir(base.join(sub)).map_or(0, Iterator::count))
            .sum()
    }

    /// The `[bounces.imap]` table that reads this server's INBOX.
    pub(crate) fn config(&self) -> String {
        format!(
            "\n[bounces.imap]\nhost = \"localhost\"\nport = {}\nusername = \"bounces\"\npassword_env = \"IMAP_PASSWORD\"\nca_file = \"{}\"\ntimeout_seconds = 20\n",
            self.port,
            self.dir.path().join("ca.pem").display()
        )
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM: the master stops its login and auth processes with it (SIGKILL would
        // leave them running).
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Runs openssl in `dir`; its stdout.
pub(crate) fn openssl(args: &[&str], dir: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
