//! Unsubscribing: one-click through `serve`, the command line, and during a running send.

use crate::harness::{Point, Project, ServerOptions, SmtpServer, http, serve, unsubscribe_path};

/// The subscriber file once `ready` holds for it (serve writes it just after its answer),
/// within a generous bound.
fn wait_for_list(p: &Project, ready: impl Fn(&str) -> bool) -> String {
    for _ in 0..200 {
        let list = p.read("subscribers.toml");
        if ready(&list) {
            return list;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the list never changed: {}", p.read("subscribers.toml"));
}

#[test]
fn one_click_unsubscribe_stops_the_next_edition_and_keeps_the_list_comments() {
    let server = SmtpServer::start(ServerOptions::default());
    let p = Project::new();
    p.use_smtp(&format!(
        "host = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n",
        server.port
    ));
    p.run(&["send"]).expect_code(0);
    let bobs = server
        .messages()
        .into_iter()
        .find(|m| m.to == ["bob@example.net"])
        .expect("bob's message");
    let path = unsubscribe_path(&bobs.data);
    let before = p.read("subscribers.toml");

    let (mut child, addr) = serve(&p);
    let (code, page) = http(&addr, "GET", &path, "");
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("bob@example.net") && page.contains("<form method=\"post\">"),
        "{page}"
    );
    let (code, page) = http(&addr, "POST", &path, "List-Unsubscribe=One-Click");
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("You are unsubscribed"), "{page}");
    // Committed before the answer; the file follows from serve's list writer.
    let unsubscribed = p.query("SELECT email FROM unsubscribed");
    assert_eq!(unsubscribed, ["bob@example.net"]);
    let after = wait_for_list(&p, |list| {
        list.contains("email = \"bob@example.net\"\nstatus = \"unsubscribed\"")
    });
    child.kill().expect("stop serve");
    child.wait().expect("wait");

    let expected = before.replace(
        "email = \"bob@example.net\"\nstatus = \"subscribed\"\n",
        "email = \"bob@example.net\"\nstatus = \"unsubscribed\"\nsince = 2026-11-27\n",
    );
    assert_ne!(before, expected, "the fixture changed");
    assert!(after.starts_with("# test list\n"), "{after}");
    assert_eq!(
        after.replace(|c: char| c.is_ascii_digit(), "0"),
        expected.replace(|c: char| c.is_ascii_digit(), "0")
    );

    // The next edition goes to everyone else.
    p.write(
        "articles/new.md",
        &crate::harness::article("Next week", "2026-12-03", true),
    );
    p.run_with_env(&["send"], &[("SOURCE_DATE_EPOCH", "1796374800")])
        .expect_code(0);
    let deliveries = server.deliveries();
    assert_eq!(deliveries["bob@example.net"], 1, "{deliveries:?}");
    assert_eq!(deliveries["ada@example.org"], 2, "{deliveries:?}");
    assert_eq!(deliveries["cy@example.com"], 2, "{deliveries:?}");
}

#[test]
fn serve_refuses_bad_requests_and_changes_nothing() {
    let p = Project::new();
    let before = p.read("subscribers.toml");
    // A genuine token, made by the binary itself through a preview.
    let run = p.run(&["preview", "--to", "ada@example.org", "--out", "pv"]);
    run.expect_code(0);
    let eml = run.stdout().lines().next().expect("eml").to_string();
    let path = unsubscribe_path(&std::fs::read(p.path(&eml)).expect("eml"));
    let mut altered = path.clone();
    altered.pop();
    altered.push(if path.ends_with('A') { 'B' } else { 'A' });

    let (mut child, addr) = serve(&p);
    let cases = [
        ("POST", altered.as_str(), "List-Unsubscribe=One-Click", 400),
        (
            "POST",
            "/unsubscribe/bm9ib2R5QGV4YW1wbGUub3Jn.AAAAAAAAAAAAAAAAAAAAAA",
            "List-Unsubscribe=One-Click",
            400,
        ),
        ("POST", "/elsewhere", "List-Unsubscribe=One-Click", 404),
        ("PUT", path.as_str(), "List-Unsubscribe=One-Click", 405),
        ("DELETE", path.as_str(), "", 405),
        ("POST", path.as_str(), "List-Unsubscribe=Maybe", 400),
        ("POST", path.as_str(), &"x".repeat(10_000), 413),
    ];
    for (method, target, body, expected) in cases {
        let (code, page) = http(&addr, method, target, body);
        assert_eq!(code, expected, "{method} {target}: {page}");
    }
    child.kill().expect("stop serve");
    child.wait().expect("wait");
    assert_eq!(p.read("subscribers.toml"), before);
    p.run(&["send", "--dry-run"]).expect_code(0);
    let list = p.run(&["send", "--dry-run"]).stdout();
    assert!(list.contains("ada@example.org"), "{list}");
}

#[test]
fn an_unsubscribe_during_a_send_is_honoured_at_once() {
    let server = SmtpServer::start(ServerOptions {
        pause: Some(Point::DataEnd(1)),
        ..ServerOptions::default()
    });
    let p = Project::new();
    let emails = p.subscribers(4);
    p.use_smtp(&format!(
        "host = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nconnections = 1\n",
        server.port
    ));
    let send = p.spawn(&["send"]);
    server.gate.wait_reached();
    let unsub = p.run(&["unsubscribe", &emails[2]]);
    unsub.expect_code(0);
    // No lock is shared with the send: the file is written at once.
    assert!(
        unsub.stdout().contains("subscribers.toml updated"),
        "{}",
        unsub.stdout()
    );
    assert!(
        p.read("subscribers.toml")
            .contains("email = \"reader3@example.org\"\nstatus = \"unsubscribed\""),
    );
    server.gate.release();
    let out = send.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deliveries = server.deliveries();
    assert!(!deliveries.contains_key(&emails[2]), "{deliveries:?}");
    assert_eq!(deliveries.len(), 3);
}

#[test]
fn subscribe_and_unsubscribe_by_token_edit_the_list() {
    let p = Project::new();
    let run = p.run(&["subscribe", "dee@example.org", "--name", "Dee"]);
    run.expect_code(0);
    assert!(
        run.stdout().contains("dee@example.org is subscribed"),
        "{}",
        run.stdout()
    );
    let list = p.read("subscribers.toml");
    assert!(list.starts_with(crate::harness::SUBSCRIBERS), "{list}");
    assert!(
        list.contains("email = \"dee@example.org\"\nname = \"Dee\"\nstatus = \"subscribed\""),
        "{list}"
    );

    let preview = p.run(&["preview", "--to", "dee@example.org", "--out", "pv"]);
    preview.expect_code(0);
    let eml = preview.stdout().lines().next().expect("eml").to_string();
    let path = unsubscribe_path(&std::fs::read(p.path(&eml)).expect("eml"));
    let token = path.rsplit('/').next().expect("token");
    p.run(&["unsubscribe", token]).expect_code(0);
    assert!(
        p.read("subscribers.toml")
            .contains("email = \"dee@example.org\"\nname = \"Dee\"\nstatus = \"unsubscribed\"")
    );
    let bad = p.run(&["unsubscribe", "forged.token"]);
    bad.expect_code(1);
    assert!(
        bad.stderr()
            .contains("neither an address nor a valid unsubscribe token"),
        "{}",
        bad.stderr()
    );
}

#[test]
fn the_since_date_written_into_the_list_follows_the_pinned_clock() {
    let p = Project::new();
    p.run(&["unsubscribe", "ada@example.org"]).expect_code(0);
    p.run_with_env(
        &["subscribe", "dee@example.org"],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    )
    .expect_code(0);
    let list = p.read("subscribers.toml");
    assert!(
        list.contains("email = \"ada@example.org\"\nname = \"Ada\"\nstatus = \"unsubscribed\"\nsince = 2026-11-27\n"),
        "{list}"
    );
    assert!(list.contains("since = 2023-11-14"), "{list}");
}
