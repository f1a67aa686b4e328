//! `check --dns` against NSD (Debian's authoritative DNS server) on 127.0.0.1 with test
//! zones: one good zone passes, and each broken one fails with the record to publish.

use std::fmt::Write as _;
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Project, installed, openssl};

/// NSD serving `zones` (name, zone file text) on a free port of 127.0.0.1.
struct Nsd {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nsd {
    /// Starts NSD on a port free for both UDP and TCP (it listens on both). Another test
    /// may take that port between the check and NSD's bind; NSD then exits, and is started
    /// again on another port (5 tries).
    fn start(zones: &[(&str, String)]) -> Nsd {
        let nsd = installed("nsd", &["/usr/sbin/nsd"]);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut zone_conf = String::new();
        for (name, text) in zones {
            std::fs::write(dir.path().join(format!("{name}.zone")), text).expect("zone");
            let _ = write!(
                zone_conf,
                "zone:\n  name: {name}\n  zonefile: \"{name}.zone\"\n"
            );
        }
        let mut tried = Vec::new();
        for _ in 0..5 {
            let port = free_udp_and_tcp_port();
            let d = dir.path().display();
            let conf = format!(
                "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  username: \"\"\n  chroot: \"\"\n  zonesdir: \"{d}\"\n  database: \"\"\n  pidfile: \"{d}/nsd.pid\"\n  xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  logfile: \"{d}/nsd.log\"\n  server-count: 1\n  do-ip6: no\n  verbosity: 1\nremote-control:\n  control-enable: no\n{zone_conf}"
            );
            std::fs::write(dir.path().join("nsd.conf"), conf).expect("conf");
            let mut child = Command::new(&nsd)
                .args(["-d", "-c"])
                .arg(dir.path().join("nsd.conf"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start nsd");
            if wait_ready(&mut child, port, zones[0].0) {
                return Nsd {
                    child,
                    port,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            tried.push(port);
        }
        let log = std::fs::read_to_string(dir.path().join("nsd.log")).unwrap_or_default();
        panic!("nsd did not answer on 127.0.0.1 at ports {tried:?}; its log:\n{log}");
    }

    fn resolver(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Nsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free for UDP and for TCP on 127.0.0.1 a moment ago (100 tries).
fn free_udp_and_tcp_port() -> u16 {
    for _ in 0..100 {
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("free port")
            .port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port of 127.0.0.1 free for both UDP and TCP in 100 tries");
}

/// Sends an SOA query for `zone` until NSD answers (true), exits, or 20 s pass.
fn wait_ready(child: &mut Child, port: u16, zone: &str) -> bool {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in zone.split('.') {
        query.push(u8::try_from(label.len()).expect("short label"));
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 6, 0, 1]);
    let start = Instant::now();
    let mut buf = [0u8; 512];
    while start.elapsed() < Duration::from_secs(20) {
        let _ = socket.send_to(&query, ("127.0.0.1", port));
        if let Ok((n, _)) = socket.recv_from(&mut buf)
            && n > 12
            && buf[..2] == [0x12, 0x34]
        {
            return true;
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
    }
    false
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A TXT value split into the quoted strings of at most 255 bytes a zone file needs.
fn quoted(value: &str) -> String {
    value
        .as_bytes()
        .chunks(200)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A fresh key pair in `file` and its `p=` value.
fn key(p: &Project, file: &str, ed25519: bool) -> String {
    if ed25519 {
        openssl(
            &["genpkey", "-algorithm", "ed25519", "-out", file],
            p.dir.path(),
        );
        let der = openssl(
            &["pkey", "-in", file, "-pubout", "-outform", "DER"],
            p.dir.path(),
        );
        base64(&der[der.len() - 32..])
    } else {
        openssl(&["genrsa", "-out", file, "2048"], p.dir.path());
        base64(&openssl(
            &["pkey", "-in", file, "-pubout", "-outform", "DER"],
            p.dir.path(),
        ))
    }
}

/// What a zone of harbour.example publishes; each test breaks one part.
struct Records {
    spf: String,
    rsa: String,
    ed: String,
    dmarc: Option<String>,
}

fn zone(r: &Records) -> String {
    let mut z = format!(
        "$ORIGIN harbour.example.\n$TTL 300\n@ IN SOA ns.harbour.example. hostmaster.harbour.example. 1 3600 600 86400 300\n@ IN NS ns\nns IN A 127.0.0.1\n@ IN MX 10 mx\nmx IN A 192.0.2.25\n@ IN TXT \"{}\"\nrsa2026._domainkey IN TXT {}\ned2026._domainkey IN TXT {}\n",
        r.spf,
        quoted(&format!("v=DKIM1; k=rsa; p={}", r.rsa)),
        quoted(&format!("v=DKIM1; k=ed25519; p={}", r.ed)),
    );
    if let Some(dmarc) = &r.dmarc {
        let _ = writeln!(z, "_dmarc IN TXT \"{dmarc}\"");
    }
    z
}

const REVERSE: &str = "$ORIGIN 2.0.192.in-addr.arpa.\n$TTL 300\n@ IN SOA ns.harbour.example. hostmaster.harbour.example. 1 3600 600 86400 300\n@ IN NS ns.harbour.example.\n25 IN PTR mx.harbour.example.\n";

/// A project relaying through its own MTA mx.harbour.example, with an RSA and an Ed25519
/// key, and the records that fit it.
fn project() -> (Project, Records) {
    let p = Project::new();
    let rsa = key(&p, "dkim-rsa.pem", false);
    let ed = key(&p, "dkim-ed.pem", true);
    p.use_smtp("host = \"mx.harbour.example\"\n");
    let config = p.read("newsletter.toml")
        + "\n[[dkim]]\ndomain = \"harbour.example\"\nselector = \"rsa2026\"\nprivate_key_file = \"dkim-rsa.pem\"\n\n[[dkim]]\ndomain = \"harbour.example\"\nselector = \"ed2026\"\nprivate_key_file = \"dkim-ed.pem\"\n";
    p.write("newsletter.toml", &config);
    let records = Records {
        spf: "v=spf1 mx -all".into(),
        rsa,
        ed,
        dmarc: Some("v=DMARC1; p=quarantine; rua=mailto:dmarc@harbour.example".into()),
    };
    (p, records)
}

fn check(p: &Project, records: &Records) -> crate::harness::Run {
    check_zone(p, zone(records))
}

/// `check --dns` against NSD serving `harbour` (and the reverse zone).
fn check_zone(p: &Project, harbour: String) -> crate::harness::Run {
    let nsd = Nsd::start(&[
        ("harbour.example", harbour),
        ("2.0.192.in-addr.arpa", REVERSE.to_string()),
    ]);
    p.run(&["check", "--dns", "--resolver", &nsd.resolver()])
}

#[test]
fn a_good_zone_passes_every_check() {
    let (p, records) = project();
    let run = check(&p, &records);
    let out = run.stdout();
    run.expect_code(0);
    for line in [
        "ok    SPF    harbour.example authorises 192.0.2.25 (the relay mx.harbour.example)",
        "ok    DKIM   rsa2026._domainkey.harbour.example publishes the configured rsa key",
        "ok    DKIM   ed2026._domainkey.harbour.example publishes the configured ed25519 key",
        "ok    DMARC  _dmarc.harbour.example has p=quarantine; aligned with From harbour.example through DKIM d=harbour.example and SPF @harbour.example",
        "ok    MX     harbour.example receives mail at mx.harbour.example",
        "ok    PTR    192.0.2.25 is mx.harbour.example, which resolves back to it",
        "the DNS is ready",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(!out.contains("FAIL") && !out.contains("publish:"), "{out}");
}

#[test]
fn spf_without_the_sending_path_fails_with_the_record_to_publish() {
    let (p, mut records) = project();
    records.spf = "v=spf1 ip4:198.51.100.7 -all".into();
    let run = check(&p, &records);
    run.expect_code(1);
    let out = run.stdout();
    assert!(
        out.contains("FAIL  SPF    harbour.example's SPF record \"v=spf1 ip4:198.51.100.7 -all\" does not authorise 192.0.2.25 (the relay mx.harbour.example): the result is fail"),
        "{out}"
    );
    assert!(
        out.contains(
            "publish: harbour.example. TXT \"v=spf1 ip4:198.51.100.7 ip4:192.0.2.25 -all\""
        ),
        "{out}"
    );
    assert!(out.contains("1 problem in the DNS"), "{out}");
}

#[test]
fn a_published_dkim_key_that_does_not_match_fails_with_the_right_one() {
    let (p, mut records) = project();
    let other = Project::new();
    records.rsa = key(&other, "other.pem", false);
    let run = check(&p, &records);
    run.expect_code(1);
    let out = run.stdout();
    assert!(
        out.contains("FAIL  DKIM   the key published at rsa2026._domainkey.harbour.example is not the configured rsa key"),
        "{out}"
    );
    // The record to publish carries the configured key, split into 255-byte strings.
    let ours = base64(&openssl(
        &["pkey", "-in", "dkim-rsa.pem", "-pubout", "-outform", "DER"],
        p.dir.path(),
    ));
    let publish = out
        .lines()
        .find(|l| l.contains("publish: rsa2026._domainkey.harbour.example. TXT"))
        .unwrap_or_else(|| panic!("no record to publish:\n{out}"));
    let joined: String = publish.split('"').skip(1).step_by(2).collect();
    assert_eq!(joined, format!("v=DKIM1; k=rsa; p={ours}"));
    assert!(out.contains("ok    DKIM   ed2026._domainkey"), "{out}");
}

#[test]
fn dmarc_missing_or_misaligned_fails_with_the_record_to_publish() {
    let (p, mut records) = project();
    records.dmarc = None;
    let run = check(&p, &records);
    run.expect_code(1);
    let out = run.stdout();
    assert!(
        out.contains("FAIL  DMARC  no DMARC record for harbour.example"),
        "{out}"
    );
    assert!(
        out.contains("publish: _dmarc.harbour.example. TXT \"v=DMARC1; p=none; rua=mailto:desk@harbour.example\""),
        "{out}"
    );

    // Strict alignment, while the keys sign as news.harbour.example: nothing aligns.
    let config = p.read("newsletter.toml").replace(
        "domain = \"harbour.example\"",
        "domain = \"news.harbour.example\"",
    );
    p.write("newsletter.toml", &config);
    records.dmarc = Some("v=DMARC1; p=reject; adkim=s; aspf=r".into());
    let zone_text = zone(&records).replace("._domainkey IN", "._domainkey.news IN");
    let run = check_zone(&p, zone_text);
    let out = run.stdout();
    // SPF still aligns (relaxed, the return path is @harbour.example): DMARC passes on it.
    run.expect_code(0);
    assert!(
        out.contains("aligned with From harbour.example through SPF @harbour.example"),
        "{out}"
    );
    // Make SPF strict too, with a return path on a subdomain: now nothing aligns.
    records.dmarc = Some("v=DMARC1; p=reject; adkim=s; aspf=s".into());
    let config =
        p.read("newsletter.toml") + "\n[bounces]\naddress = \"bounces@news.harbour.example\"\n";
    p.write("newsletter.toml", &config);
    let zone_text = zone(&records).replace("._domainkey IN", "._domainkey.news IN")
        + "news IN MX 10 mx\nnews IN TXT \"v=spf1 mx -all\"\n";
    let run = check_zone(&p, zone_text);
    let out = run.stdout();
    run.expect_code(1);
    assert!(
        out.contains("FAIL  DMARC  nothing aligns with From harbour.example")
            && out.contains(
                "DKIM signs as news.harbour.example, news.harbour.example (strict alignment)"
            )
            && out.contains("the return path is @news.harbour.example (strict alignment)"),
        "{out}"
    );
    assert!(
        out.contains("ok    SPF    news.harbour.example authorises 192.0.2.25"),
        "{out}"
    );
}

#[test]
fn a_provider_relay_needs_its_include_and_a_local_relay_cannot_be_verified() {
    let (p, mut records) = project();
    p.use_smtp("host = \"smtp.postmarkapp.com\"\n");
    records.spf = "v=spf1 mx -all".into();
    let run = check(&p, &records);
    run.expect_code(1);
    let out = run.stdout();
    assert!(
        out.contains("does not include spf.mtasv.net, which Postmark sends from")
            && out
                .contains("publish: harbour.example. TXT \"v=spf1 mx include:spf.mtasv.net -all\""),
        "{out}"
    );
    // A relay on this machine: the public address is unknown, and the check says so.
    p.use_smtp("host = \"127.0.0.1\"\nsecurity = \"none\"\n");
    let run = check(&p, &records);
    let out = run.stdout();
    assert!(
        out.contains("?     SPF    cannot verify that harbour.example's SPF authorises the sending path: the relay is this machine"),
        "{out}"
    );
}

#[test]
fn an_answer_too_long_for_udp_is_asked_again_over_tcp() {
    // Many verification tokens beside the SPF record at the apex, as large domains have:
    // ~2.4 KB of TXT, more than a UDP answer may carry (1,232 bytes with EDNS0), so the
    // server cuts it short and only TCP brings the SPF record.
    let (p, records) = project();
    let mut zone_text = zone(&records);
    for i in 0..24 {
        let _ = writeln!(
            zone_text,
            "@ IN TXT \"site-verification-{i:02}={}\"",
            "k".repeat(64)
        );
    }
    let run = check_zone(&p, zone_text);
    let out = run.stdout();
    run.expect_code(0);
    assert!(
        out.contains("ok    SPF    harbour.example authorises 192.0.2.25"),
        "{out}"
    );
}

#[test]
fn a_resolver_that_does_not_answer_leaves_each_check_unconcluded() {
    let (p, _) = project();
    // A port of 127.0.0.1 where nothing listens: each query is refused at once.
    let port = UdpSocket::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("port")
        .port();
    let run = p.run(&["check", "--dns", "--resolver", &format!("127.0.0.1:{port}")]);
    let out = run.stdout();
    assert!(
        out.contains(&format!(
            "?     SPF    cannot read the SPF record of harbour.example: no answer for TXT harbour.example from 127.0.0.1:{port}: Connection refused"
        )) && out.contains("5 checks could not conclude")
            && !out.contains("ok    "),
        "{out}"
    );
}
