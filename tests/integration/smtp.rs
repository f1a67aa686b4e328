//! Delivery to real SMTP servers on loopback: mailin-embedded, and aiosmtpd for STARTTLS
//! and authentication.

use crate::harness::{Project, ServerOptions, SmtpServer, TlsSmtpd, parse};

fn plain_server(p: &Project, reject: Vec<(String, u16)>) -> SmtpServer {
    let server = SmtpServer::start(ServerOptions {
        reject,
        ..ServerOptions::default()
    });
    p.use_smtp(&format!(
        "host = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nconnections = 2\nretry_delay_seconds = 0.1\n",
        server.port
    ));
    server
}

#[test]
fn every_subscribed_address_gets_exactly_one_message_with_its_own_unsubscribe_link() {
    let p = Project::new();
    let server = plain_server(&p, vec![]);
    let run = p.run(&["send"]);
    run.expect_code(0);
    assert!(run.stdout().contains("sent 3 of 3"), "{}", run.stdout());
    assert_eq!(
        server.recipients(),
        ["ada@example.org", "bob@example.net", "cy@example.com"]
    );

    let mut message_ids = Vec::new();
    let mut links = Vec::new();
    for m in server.messages() {
        assert_eq!(m.to.len(), 1);
        assert_eq!(m.from, "weekly@harbour.example");
        let msg = parse(&m.data);
        let to = &m.to[0];
        assert_eq!(
            msg.to().and_then(|a| a.first()).and_then(|a| a.address()),
            Some(to.as_str())
        );
        assert_eq!(
            msg.from().and_then(|a| a.first()).and_then(|a| a.address()),
            Some("weekly@harbour.example")
        );
        assert_eq!(
            msg.reply_to()
                .and_then(|a| a.first())
                .and_then(|a| a.address()),
            Some("desk@harbour.example")
        );
        assert!(
            msg.subject()
                .is_some_and(|s| s.starts_with("Ferry timetable"))
        );
        assert!(msg.date().is_some());
        assert_eq!(msg.header_raw("MIME-Version").map(str::trim), Some("1.0"));
        assert_eq!(
            msg.header_raw("List-Id").map(str::trim),
            Some("\"Harbour Weekly\" <weekly.harbour.example>")
        );
        let id = msg.message_id().expect("Message-ID").to_string();
        assert!(id.ends_with("@harbour.example"), "{id}");
        message_ids.push(id);
        assert_eq!(msg.text_body_count(), 1);
        assert_eq!(msg.html_body_count(), 1);
        let html = msg.body_html(0).expect("html");
        let text = msg.body_text(0).expect("text");
        let unsubscribe = msg
            .header_raw("List-Unsubscribe")
            .expect("List-Unsubscribe");
        let link = unsubscribe
            .split(['<', '>'])
            .find(|s| s.starts_with("https://"))
            .expect("https link")
            .to_string();
        // The mailto target carries the recipient's own token, as the https link does.
        let token = link.rsplit('/').next().expect("token");
        assert!(
            unsubscribe.contains(&format!(
                "<mailto:unsubscribe@harbour.example?subject=unsubscribe%20{token}>"
            )),
            "{unsubscribe}"
        );
        assert!(
            html.contains(&link) && text.contains(&link),
            "each part carries the subscriber's own link"
        );
        links.push(link);
    }
    message_ids.sort();
    message_ids.dedup();
    links.sort();
    links.dedup();
    assert_eq!(
        (message_ids.len(), links.len()),
        (3, 3),
        "ids and links are per subscriber"
    );
    assert!(
        !server
            .recipients()
            .contains(&"gone@example.org".to_string())
    );
}

#[test]
fn a_refused_recipient_is_reported_and_the_others_are_delivered() {
    let p = Project::new();
    let server = plain_server(
        &p,
        vec![
            ("bob@example.net".into(), 550),
            ("cy@example.com".into(), 450),
        ],
    );
    let run = p.run(&["send"]);
    run.expect_code(4);
    assert_eq!(server.recipients(), ["ada@example.org"]);
    let err = run.stderr();
    assert!(
        err.contains("bob@example.net: failed (") && err.contains("550"),
        "{err}"
    );
    assert!(
        err.contains("cy@example.com: deferred (") && err.contains("450"),
        "{err}"
    );
    assert!(
        run.stdout().contains("sent 1 of 3 to 127.0.0.1")
            && run.stdout().contains(", 1 deferred, 1 failed"),
        "{}",
        run.stdout()
    );
}

#[test]
fn starttls_and_auth_are_used_when_the_server_requires_them() {
    let p = Project::new();
    let server = TlsSmtpd::start(&p, Some("s3cret-pass"));
    p.use_smtp(&format!(
        "host = \"localhost\"\nport = {}\nsecurity = \"starttls\"\nusername = \"weekly\"\npassword_env = \"TEST_SMTP_PASSWORD\"\nca_file = \"tls/ca.pem\"\n",
        server.port
    ));
    let run = p.run_with_env(&["send"], &[("TEST_SMTP_PASSWORD", "s3cret-pass")]);
    run.expect_code(0);
    assert_eq!(server.recipients().len(), 3);
    let auths: Vec<serde_json::Value> = server
        .events()
        .into_iter()
        .filter(|e| e.get("auth").is_some())
        .collect();
    assert!(!auths.is_empty(), "no authentication");
    assert!(
        auths
            .iter()
            .all(|e| e["auth"] == "ok" && e["user"] == "weekly"),
        "{auths:?}"
    );
}

#[test]
fn a_wrong_password_stops_the_run_sends_nothing_and_is_never_printed() {
    let p = Project::new();
    let server = TlsSmtpd::start(&p, Some("right"));
    p.use_smtp(&format!(
        "host = \"localhost\"\nport = {}\nusername = \"weekly\"\npassword_file = \"smtp-password\"\nca_file = \"tls/ca.pem\"\n",
        server.port
    ));
    p.write("smtp-password", "wrong-and-secret\n");
    let run = p.run(&["send"]);
    run.expect_code(1);
    let all = run.stdout() + &run.stderr();
    assert!(all.contains("refused the credentials"), "{all}");
    assert!(
        !all.contains("wrong-and-secret"),
        "the password was printed: {all}"
    );
    assert!(server.recipients().is_empty());
    assert_eq!(
        p.editions(),
        0,
        "nothing is frozen when the relay refuses us"
    );
}

#[test]
fn starttls_is_never_skipped_when_the_server_does_not_offer_it() {
    let p = Project::new();
    let server = SmtpServer::start(ServerOptions::default());
    p.use_smtp(&format!(
        "host = \"127.0.0.1\"\nport = {}\nsecurity = \"starttls\"\n",
        server.port
    ));
    let run = p.run(&["send"]);
    run.expect_code(1);
    assert!(
        run.stderr().contains("does not offer STARTTLS"),
        "{}",
        run.stderr()
    );
    assert!(server.messages().is_empty());
}

#[test]
fn the_server_certificate_must_be_trusted() {
    let p = Project::new();
    let server = TlsSmtpd::start(&p, None);
    // No ca_file: the test CA is not trusted, so the handshake must fail.
    p.use_smtp(&format!(
        "host = \"localhost\"\nport = {}\nsecurity = \"starttls\"\n",
        server.port
    ));
    let run = p.run(&["send"]);
    run.expect_code(1);
    assert!(
        run.stderr().contains("TLS handshake with localhost")
            && run.stderr().contains("UnknownIssuer"),
        "{}",
        run.stderr()
    );
    assert!(server.recipients().is_empty());
}

#[test]
fn credentials_are_refused_over_plaintext_before_any_connection() {
    let p = Project::new();
    let server = SmtpServer::start(ServerOptions::default());
    p.use_smtp(&format!(
        "host = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nusername = \"weekly\"\npassword_env = \"P\"\n",
        server.port
    ));
    let run = p.run_with_env(&["send"], &[("P", "pw")]);
    run.expect_code(3);
    assert!(
        run.stderr()
            .contains("`smtp.username`: credentials are never sent over an unencrypted connection"),
        "{}",
        run.stderr()
    );
    assert_eq!(server.seen.lock().expect("lock").connections, 0);
}

#[test]
fn plaintext_to_a_remote_host_is_refused() {
    let p = Project::new();
    p.use_smtp("host = \"smtp.example.org\"\nsecurity = \"none\"\n");
    let run = p.run(&["check"]);
    run.expect_code(3);
    assert!(run.stderr().contains("`smtp.security`"), "{}", run.stderr());
}

#[test]
fn an_unreachable_server_fails_the_run_with_nothing_sent() {
    let p = Project::new();
    // Bind and drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    p.use_smtp(&format!(
        "host = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\n"
    ));
    let run = p.run(&["send"]);
    run.expect_code(1);
    assert!(
        run.stderr()
            .contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{}",
        run.stderr()
    );
    assert_eq!(p.editions(), 0);
}

#[test]
fn implicit_tls_delivers_and_checks_the_certificate() {
    let p = Project::new();
    let server = SmtpServer::start(ServerOptions::default());
    let port = crate::harness::tls_front(server.port, &p.path("tls"));
    p.use_smtp(&format!(
        "host = \"localhost\"\nport = {port}\nsecurity = \"tls\"\nca_file = \"tls/ca.pem\"\n"
    ));
    p.run(&["send"]).expect_code(0);
    assert_eq!(server.recipients().len(), 3);

    // Without the CA the same server is not trusted, and nothing more arrives.
    let q = Project::new();
    q.use_smtp(&format!(
        "host = \"localhost\"\nport = {port}\nsecurity = \"tls\"\n"
    ));
    let run = q.run(&["send"]);
    run.expect_code(1);
    assert!(
        run.stderr().contains("TLS handshake with localhost"),
        "{}",
        run.stderr()
    );
    assert_eq!(server.recipients().len(), 3);
}

/// With `[bounces]`, each message's return path names it (VERP: a token of its edition
/// and recipient, lower-case base32); every message has a Feedback-ID, and a List-Help
/// when `help_url` is set.
#[test]
fn the_return_path_names_each_message_and_the_list_headers_are_there() {
    let sink = crate::harness::Sink::start(&[]);
    let p = Project::new();
    p.use_smtp(&format!(
        "host = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n\n[bounces]\naddress = \"bounces@harbour.example\"\n",
        sink.port
    ));
    let config = p.read("newsletter.toml").replace(
        "list_id = \"weekly.harbour.example\"",
        "list_id = \"weekly.harbour.example\"\nhelp_url = \"https://harbour.example/help\"",
    );
    p.write("newsletter.toml", &config);
    p.run(&["send"]).expect_code(0);
    let dumps = sink.dumps();
    assert_eq!(dumps.len(), 3);
    let mut senders = std::collections::BTreeSet::new();
    for dump in &dumps {
        let msg = parse(dump);
        let sender = msg
            .header_raw("X-Mail-Args")
            .expect("envelope sender")
            .split_whitespace()
            .next()
            .expect("address")
            .trim_matches(|c| c == '<' || c == '>')
            .to_string();
        let token = sender
            .strip_prefix("bounces+")
            .and_then(|s| s.strip_suffix("@harbour.example"))
            .unwrap_or_else(|| panic!("return path {sender}"));
        assert_eq!(token.len(), 16, "{sender}");
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c)),
            "{sender}"
        );
        senders.insert(sender.clone());
        let feedback = msg
            .header_raw("Feedback-ID")
            .expect("Feedback-ID")
            .trim()
            .to_string();
        assert!(
            feedback.ends_with(":digest:weekly.harbour.example"),
            "{feedback}"
        );
        assert_eq!(
            msg.header_raw("List-Help").map(str::trim),
            Some("<https://harbour.example/help>")
        );
        // The From header is unchanged: replies go to people, bounces to the return path.
        assert_eq!(
            msg.from().and_then(|a| a.first()).and_then(|a| a.address()),
            Some("weekly@harbour.example")
        );
    }
    assert_eq!(
        senders.len(),
        3,
        "one return path per recipient: {senders:?}"
    );
}
