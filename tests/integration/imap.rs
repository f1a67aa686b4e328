//! Mail that comes back through an IMAP mailbox: Dovecot on 127.0.0.1 over TLS, bounces,
//! a complaint and a request put into its INBOX, read by `bounces --imap`, killed with
//! SIGKILL in the middle and run again: each message acted on once, all moved.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;

use crate::bounces::{arf, dsn, mailto_request, project_with_bounces, sent_messages};
use crate::harness::{Dovecot, IMAP_PASSWORD, Sink};

#[test]
fn an_imap_folder_is_read_once_even_across_a_kill() {
    let sink = Sink::start(&[]);
    let dovecot = Dovecot::start();
    let (p, _) = project_with_bounces(&sink, 30, &dovecot.config());
    p.run(&["send"]).expect_code(0);
    sink.wait_for(30);
    let sent = sent_messages(&sink);
    for (i, s) in sent.iter().enumerate().take(24) {
        dovecot.deliver(
            &format!("{i:03}.bounce"),
            &dsn(s, "5.1.1", "550 5.1.1 User unknown"),
        );
    }
    dovecot.deliver("100.complaint", &arf(&sent[24]));
    dovecot.deliver("101.request", &mailto_request(&sent[25]));
    let env = [("IMAP_PASSWORD", IMAP_PASSWORD)];

    // A dry run reads everything and moves nothing.
    let dry = p.run_with_env(&["bounces", "--imap", "--dry-run"], &env);
    dry.expect_code(0);
    assert_eq!(dry.stdout().lines().count(), 26, "{}", dry.stdout());
    assert_eq!(dovecot.count(""), 26);
    assert!(p.query("SELECT email FROM suppression").is_empty());

    // Killed after its third message.
    let mut child = p
        .command(&["bounces", "--imap"], &env)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    for _ in 0..3 {
        let mut line = String::new();
        out.read_line(&mut line).expect("a line");
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let moved = dovecot.count("Processed");
    assert!(moved < 26, "killed in the middle ({moved} moved)");

    let run = p.run_with_env(&["bounces", "--imap"], &env);
    run.expect_code(0);
    assert_eq!(dovecot.count(""), 0, "INBOX emptied");
    assert_eq!(dovecot.count("Processed"), 26, "every message moved once");
    assert_eq!(
        p.query("SELECT COUNT(DISTINCT message) FROM inbound"),
        ["26"]
    );
    assert_eq!(
        p.query("SELECT COUNT(*) FROM inbound WHERE kind = 'hard'"),
        ["24"],
        "no bounce counted twice"
    );
    assert_eq!(p.query("SELECT COUNT(*) FROM suppression"), ["25"]);
    assert_eq!(
        p.query("SELECT email FROM unsubscribed ORDER BY email"),
        [sent[24].recipient.clone(), sent[25].recipient.clone()]
    );

    // Nothing new: a second run reads nothing.
    let again = p.run_with_env(&["bounces", "--imap"], &env);
    again.expect_code(0);
    assert_eq!(again.stdout(), "");
    assert!(
        again.stderr().contains("0 messages read"),
        "{}",
        again.stderr()
    );

    // A wrong password is an error, and nothing changes.
    let wrong = p.run_with_env(&["bounces", "--imap"], &[("IMAP_PASSWORD", "wrong")]);
    wrong.expect_code(1);
    assert!(
        wrong.stderr().contains("refused the login"),
        "{}",
        wrong.stderr()
    );
}

#[test]
fn starttls_is_used_on_the_plain_port() {
    let sink = Sink::start(&[]);
    let dovecot = Dovecot::start();
    let config = dovecot.config().replace(
        &format!("port = {}", dovecot.port),
        &format!("port = {}\nsecurity = \"starttls\"", dovecot.starttls_port),
    );
    let (p, _) = project_with_bounces(&sink, 2, &config);
    p.run(&["send"]).expect_code(0);
    sink.wait_for(2);
    let sent = sent_messages(&sink);
    dovecot.deliver(
        "1.bounce",
        &dsn(&sent[0], "5.1.1", "550 5.1.1 User unknown"),
    );
    let run = p.run_with_env(&["bounces", "--imap"], &[("IMAP_PASSWORD", IMAP_PASSWORD)]);
    run.expect_code(0);
    assert_eq!(
        p.query("SELECT email FROM suppression"),
        [sent[0].recipient.clone()]
    );
    assert_eq!(dovecot.count("Processed"), 1);
}
