//! Refusals about the sender are not refusals of the recipients: against Postfix's
//! smtp-sink answering with chosen replies, no one is failed or suppressed, the run stops
//! naming the sender's setup, and once the relay is fixed each address gets one message.

use crate::harness::{Project, ServerOptions, Sink, SmtpServer, exactly_once};

/// Sends to `n` subscribers through `sink`, four connections.
fn project_for(sink: &Sink, n: usize, extra: &str) -> (Project, Vec<String>) {
    let p = Project::new();
    let emails = p.subscribers(n);
    point_at(&p, sink.port, extra);
    (p, emails)
}

fn point_at(p: &Project, port: u16, extra: &str) {
    p.use_loopback(port, 4, extra);
}

/// Rows per state, e.g. `["pending|100"]`.
fn states(p: &Project) -> Vec<String> {
    p.query("SELECT state, COUNT(*) FROM delivery GROUP BY state ORDER BY state")
}

fn suppressed(p: &Project) -> Vec<String> {
    p.query("SELECT email FROM suppression ORDER BY email")
}

#[test]
fn a_relay_refusing_the_sender_suppresses_no_one_and_a_fixed_relay_gets_everyone_once() {
    let refusing = Sink::start(&[
        "-f",
        "RCPT",
        "-B",
        "550 5.7.26 Unauthenticated email is not accepted",
    ]);
    let (p, emails) = project_for(&refusing, 100, "");
    for round in 1..=3 {
        let run = p.run(&["send"]);
        run.expect_code(7);
        let out = run.stdout();
        println!("run {round}: exit {}: {}", run.code(), out.trim());
        assert!(
            out.contains("refused the sender, not the recipients")
                && out.contains("5.7.26")
                && out.contains("100 pending"),
            "{out}"
        );
        assert_eq!(states(&p), ["pending|100"], "after run {round}");
        assert!(suppressed(&p).is_empty(), "{:?}", suppressed(&p));
        assert_eq!(
            p.query("SELECT MAX(attempts) FROM delivery"),
            ["0"],
            "no recipient is charged an attempt"
        );
    }
    assert!(refusing.deliveries().is_empty());

    let fixed = Sink::start(&[]);
    point_at(&p, fixed.port, "");
    let run = p.run(&["send"]);
    run.expect_code(0);
    println!("fixed relay: exit {}: {}", run.code(), run.stdout().trim());
    assert_eq!(fixed.wait_for(100), exactly_once(&emails));
    assert_eq!(states(&p), ["sent|100"]);
}

#[test]
fn refusals_of_mail_from_data_the_content_and_the_size_stop_the_run_and_fail_no_one() {
    for (command, reply) in [
        ("RCPT", "500 5.3.0 Error: command failed"),
        (
            "MAIL",
            "550 5.7.1 Sender address rejected: not owned by user",
        ),
        ("DATA", "554 5.5.1 Error: no valid recipients"),
        (".", "554 5.7.1 Message rejected: content"),
        (".", "552 5.3.4 Message size exceeds fixed limit"),
    ] {
        let sink = Sink::start(&["-f", command, "-B", reply]);
        let (p, _) = project_for(&sink, 10, "");
        let run = p.run(&["send"]);
        run.expect_code(7);
        assert!(
            run.stdout().contains("refused the sender") && run.stdout().contains(&reply[4..9]),
            "{command}: {}",
            run.stdout()
        );
        assert_eq!(states(&p), ["pending|10"], "{command} {reply}");
        assert!(suppressed(&p).is_empty(), "{command} {reply}");
        // A rerun does not call the edition sent: it tries again, and is refused again.
        let again = p.run(&["send"]);
        again.expect_code(7);
        assert!(
            !again.stdout().contains("already sent"),
            "{}",
            again.stdout()
        );
    }
}

#[test]
fn a_mailbox_that_does_not_exist_is_still_failed_and_suppressed() {
    let sink = Sink::start(&["-f", "RCPT", "-B", "550 5.1.1 User unknown"]);
    let (p, _) = project_for(&sink, 3, "");
    p.run(&["send"]).expect_code(0);
    assert_eq!(states(&p), ["failed|3"]);
    assert_eq!(suppressed(&p).len(), 3);
}

#[test]
fn throttling_replies_slow_the_run_and_charge_no_recipient() {
    // The relay refuses six MAIL commands in a row as Postfix's rate limit does; with
    // max_attempts = 2 each refusal counted as an attempt would fail recipients for good.
    let server = SmtpServer::start(ServerOptions {
        throttle_mails: 3..9,
        ..ServerOptions::default()
    });
    let p = Project::new();
    let emails = p.subscribers(20);
    point_at(&p, server.port, "max_attempts = 2\n");
    let run = p.run(&["send"]);
    run.expect_code(0);
    assert_eq!(server.deliveries(), exactly_once(&emails));
    assert_eq!(states(&p), ["sent|20"]);
    assert_eq!(
        p.query("SELECT MAX(attempts) FROM delivery"),
        ["1"],
        "only the accepted attempt counts"
    );
    assert!(suppressed(&p).is_empty());
}

#[test]
fn a_relay_that_never_stops_throttling_leaves_everyone_pending() {
    let server = SmtpServer::start(ServerOptions {
        throttle_mails: 1..10_000,
        ..ServerOptions::default()
    });
    let p = Project::new();
    p.subscribers(5);
    point_at(&p, server.port, "max_consecutive_failures = 3\n");
    let run = p.run(&["send"]);
    run.expect_code(4);
    assert!(
        run.stdout().contains("asked 4 times in a row to slow down"),
        "{}",
        run.stdout()
    );
    assert_eq!(states(&p), ["pending|5"]);
}

/// A state database as an older release left it: sender-side replies recorded as failures
/// and suppressions.
fn legacy_failures(p: &Project) {
    let conn = rusqlite::Connection::open(p.path("newsletter.db")).expect("open");
    conn.execute_batch(
        "UPDATE delivery SET state = 'failed', attempts = 1, code = 550, reply = 'permanent error (550): 5.7.26 Unauthenticated email is not accepted' WHERE email IN ('ada@example.org', 'bob@example.net');
         UPDATE delivery SET state = 'failed', attempts = 1, code = 550, reply = 'permanent error (550): 5.1.1 User unknown' WHERE email = 'cy@example.com';
         INSERT INTO suppression (email, reason, at) VALUES
           ('ada@example.org', 'permanent error (550): 5.7.26 Unauthenticated email is not accepted', 1795770000),
           ('bob@example.net', 'permanent error (550): 5.7.26 Unauthenticated email is not accepted', 1795770000),
           ('cy@example.com', 'permanent error (550): 5.1.1 User unknown', 1795770000);
         UPDATE edition SET completed_at = 1795770000;",
    )
    .expect("write legacy rows");
}

#[test]
fn suppressions_are_listed_lifted_and_sender_side_ones_restored() {
    let p = Project::new();
    p.run(&["send"]).expect_code(0);
    legacy_failures(&p);

    let list = p.run(&["suppressions"]);
    list.expect_code(0);
    let out = list.stdout();
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(
        out.contains("cy@example.com\t2026-11-27\tpermanent error (550): 5.1.1"),
        "{out}"
    );

    let sub = p.run(&["subscribe", "bob@example.net"]);
    sub.expect_code(0);
    assert!(
        sub.stderr()
            .contains("bob@example.net is suppressed since 2026-11-27"),
        "{}",
        sub.stderr()
    );

    let restored = p.run(&["suppressions", "lift", "--sender-side"]);
    restored.expect_code(0);
    let out = restored.stdout();
    assert!(
        out.contains("lifted\tada@example.org") && out.contains("lifted\tbob@example.net"),
        "{out}"
    );
    assert!(
        out.contains("pending\tada@example.org") && out.contains("pending\tbob@example.net"),
        "{out}"
    );
    assert!(
        !out.contains("cy@example.com"),
        "a real bounce stays: {out}"
    );
    assert_eq!(suppressed(&p), ["cy@example.com"]);

    // The next send finishes the reopened edition: only the two restored recipients.
    std::fs::remove_dir_all(p.path("outbox")).expect("empty the outbox");
    p.run(&["send"]).expect_code(0);
    let mailed: Vec<String> = p.outbox().into_iter().map(|(name, _)| name).collect();
    assert_eq!(mailed, ["ada@example.org.eml", "bob@example.net.eml"]);

    let lifted = p.run(&["suppressions", "lift", "cy@example.com"]);
    lifted.expect_code(0);
    assert_eq!(lifted.stdout().trim(), "lifted\tcy@example.com");
    assert!(suppressed(&p).is_empty());
    p.run(&["suppressions", "lift"]).expect_code(2);
}
