//! Mail that comes back: the corpus of real bounces read as a reference classifier reads
//! them, and an edition's bounces, complaint, mailto request, sender-side refusal and
//! out-of-office read from a Maildir and acted on, end to end with smtp-sink.

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;

use crate::harness::{Project, Sink, parse};

/// A week after the pinned clock: the next edition's day.
const NEXT_WEEK: &str = "1796374800";

#[test]
fn the_corpus_is_read_as_the_reference_classifier_reads_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("python3")
        .arg(root.join("bench/bounce_corpus.py"))
        .args(["--bin", env!("CARGO_BIN_EXE_newsletter"), "--check"])
        .output()
        .expect("run bench/bounce_corpus.py");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("messages read:            315"), "{text}");
}

/// What the test needs of one message the edition sent.
pub(crate) struct Sent {
    pub(crate) recipient: String,
    pub(crate) return_path: String,
    pub(crate) message_id: String,
    pub(crate) unsubscribe_token: String,
}

pub(crate) fn sent_messages(sink: &Sink) -> Vec<Sent> {
    let mut out: Vec<Sent> = sink
        .dumps()
        .iter()
        .map(|dump| {
            let text = String::from_utf8_lossy(dump);
            let envelope = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.split_whitespace().next())
                    .map_or_else(
                        || panic!("{name} in the dump"),
                        |v| v.trim_matches(|c| c == '<' || c == '>').to_string(),
                    )
            };
            let msg = parse(dump);
            let list_unsubscribe = msg
                .header_raw("List-Unsubscribe")
                .expect("List-Unsubscribe")
                .to_string();
            let unsubscribe_token = list_unsubscribe
                .split("subject=unsubscribe%20")
                .nth(1)
                .and_then(|t| t.split('>').next())
                .expect("token in the mailto target")
                .to_string();
            Sent {
                recipient: envelope("X-Rcpt-Args: "),
                return_path: envelope("X-Mail-Args: "),
                message_id: format!("<{}>", msg.message_id().expect("Message-ID")),
                unsubscribe_token,
            }
        })
        .collect();
    out.sort_by(|a, b| a.recipient.cmp(&b.recipient));
    out
}

/// A standard delivery status notification, as Postfix writes one.
pub(crate) fn dsn(sent: &Sent, status: &str, diagnostic: &str) -> String {
    format!(
        "Return-Path: <>\r\nDelivered-To: {rp}\r\nFrom: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n\
To: {rp}\r\nSubject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"B1\"\r\n\r\n\
--B1\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not\r\nbe delivered.\r\n\r\n\
<{to}>: host mx.example.org[192.0.2.1] said: {diagnostic} (in reply to RCPT TO command)\r\n\r\n\
--B1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n\
Final-Recipient: rfc822; {to}\r\nAction: failed\r\nStatus: {status}\r\nDiagnostic-Code: smtp; {diagnostic}\r\n\r\n\
--B1\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: Harbour Weekly <weekly@harbour.example>\r\nTo: {to}\r\n\
Message-ID: {id}\r\nSubject: Harbour Weekly\r\n\r\n--B1--\r\n",
        rp = sent.return_path,
        to = sent.recipient,
        id = sent.message_id,
    )
}

/// A feedback-loop complaint (ARF, RFC 5965) with the recipient redacted, as the
/// providers send them: only the Message-ID of the original names the subscriber.
pub(crate) fn arf(sent: &Sent) -> String {
    format!(
        "From: fbl@provider.example\r\nTo: abuse@harbour.example\r\nSubject: Complaint about message\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"F1\"\r\n\r\n\
--F1\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\r\n\
--F1\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: FBL/1.0\r\nVersion: 1\r\n\r\n\
--F1\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: Harbour Weekly <weekly@harbour.example>\r\n\
To: redacted@provider.example\r\nMessage-ID: {id}\r\nSubject: Harbour Weekly\r\n\r\n--F1--\r\n",
        id = sent.message_id
    )
}

/// What a mail client sends for the `mailto:` in List-Unsubscribe.
pub(crate) fn mailto_request(sent: &Sent) -> String {
    format!(
        "From: {to}\r\nTo: unsubscribe@harbour.example\r\nSubject: unsubscribe {token}\r\n\r\nunsubscribe\r\n",
        to = sent.recipient,
        token = sent.unsubscribe_token
    )
}

fn out_of_office(sent: &Sent) -> String {
    format!(
        "From: {to}\r\nTo: {rp}\r\nSubject: Automatic reply: Harbour Weekly\r\nAuto-Submitted: auto-replied\r\n\r\n\
I am away until Monday.\r\n",
        to = sent.recipient,
        rp = sent.return_path
    )
}

/// `bounces --stdin` with one message, as an MTA's pipe alias runs it.
fn pipe(p: &Project, input: &str, env: &[(&str, &str)]) -> std::process::Output {
    let mut child = p
        .command(&["bounces", "--stdin"], env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    child.wait_with_output().expect("wait")
}

pub(crate) fn project_with_bounces(sink: &Sink, n: usize, extra: &str) -> (Project, Vec<String>) {
    let p = Project::new();
    let emails = p.subscribers(n);
    p.use_loopback(
        sink.port,
        2,
        &format!(
            "\n[bounces]\naddress = \"bounces@harbour.example\"\nmaildir = \"Maildir\"\n{extra}"
        ),
    );
    (p, emails)
}

fn deliver_to_maildir(p: &Project, name: &str, text: &str) {
    p.write(&format!("Maildir/new/{name}"), text);
    std::fs::create_dir_all(p.path("Maildir/cur")).expect("cur");
    std::fs::create_dir_all(p.path("Maildir/tmp")).expect("tmp");
}

#[test]
fn bounces_a_complaint_and_a_request_from_a_maildir_take_exactly_their_recipients_off() {
    let sink = Sink::start(&[]);
    let (p, emails) = project_with_bounces(&sink, 6, "min_sent_for_stop = 1\n");
    p.run(&["send"]).expect_code(0);
    assert_eq!(sink.wait_for(6).len(), 6);
    let sent = sent_messages(&sink);
    assert_eq!(
        sent.iter().map(|s| s.recipient.clone()).collect::<Vec<_>>(),
        emails
    );

    deliver_to_maildir(
        &p,
        "1.hard",
        &dsn(
            &sent[0],
            "5.1.1",
            "550 5.1.1 <reader1@example.org>: Recipient address rejected: User unknown",
        ),
    );
    deliver_to_maildir(&p, "2.complaint", &arf(&sent[1]));
    deliver_to_maildir(&p, "3.request", &mailto_request(&sent[2]));
    deliver_to_maildir(
        &p,
        "4.dmarc",
        &dsn(
            &sent[3],
            "5.7.26",
            "550 5.7.26 Unauthenticated email from harbour.example is not accepted due to domain's DMARC policy",
        ),
    );
    deliver_to_maildir(&p, "5.away", &out_of_office(&sent[4]));

    // A dry run says what it would do and changes nothing.
    let dry = p.run(&["bounces", "--dry-run"]);
    dry.expect_code(0);
    let out = dry.stdout();
    assert!(
        out.contains("hard bounce\treader1@example.org\t5.1.1\tsuppressed"),
        "{out}"
    );
    assert!(
        out.contains("complaint\treader2@example.org\t-\tunsubscribed and suppressed"),
        "{out}"
    );
    assert!(
        out.contains("unsubscribe request\treader3@example.org\t-\tunsubscribed"),
        "{out}"
    );
    assert!(
        out.contains(
            "sender-side failure\treader4@example.org\t5.7.26\tnothing: the sender's problem"
        ),
        "{out}"
    );
    assert!(
        out.contains("automatic reply\treader5@example.org\t-\tnothing"),
        "{out}"
    );
    assert!(p.query("SELECT email FROM suppression").is_empty());
    assert_eq!(
        std::fs::read_dir(p.path("Maildir/new"))
            .expect("new")
            .count(),
        5
    );

    let run = p.run(&["bounces"]);
    run.expect_code(0);
    assert!(
        run.stderr().contains("warning: ") && run.stderr().contains("DMARC"),
        "a sender-side refusal is said loudly: {}",
        run.stderr()
    );
    assert_eq!(
        p.query("SELECT email FROM suppression ORDER BY email"),
        ["reader1@example.org", "reader2@example.org"]
    );
    assert_eq!(
        p.query("SELECT email || '|' || source FROM unsubscribed ORDER BY email"),
        ["reader2@example.org|complaint", "reader3@example.org|mail"]
    );
    // The subscriber file says so too, its comments kept.
    let list = p.read("subscribers.toml");
    for (email, status) in [
        ("reader1@example.org", "subscribed"),
        ("reader2@example.org", "unsubscribed"),
        ("reader3@example.org", "unsubscribed"),
        ("reader4@example.org", "subscribed"),
    ] {
        let entry = list
            .split("[[subscriber]]")
            .find(|e| e.contains(email))
            .expect("entry");
        assert!(
            entry.contains(&format!("status = \"{status}\"")),
            "{email}: {entry}"
        );
    }
    // Every message was moved out of new/, into the processed folder.
    assert_eq!(
        std::fs::read_dir(p.path("Maildir/new"))
            .expect("new")
            .count(),
        0
    );
    let processed: Vec<_> = std::fs::read_dir(p.path("Maildir/.processed/cur"))
        .expect("processed")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(processed.len(), 5);

    // A message delivered again is recognised and not acted on twice.
    let again = processed
        .iter()
        .find(|f| f.to_string_lossy().contains("1.hard"))
        .expect("the hard bounce");
    std::fs::copy(again, p.path("Maildir/new/1.hard.again")).expect("copy back");
    let run = p.run(&["bounces"]);
    run.expect_code(0);
    assert!(
        run.stdout().contains("already acted on before"),
        "{}",
        run.stdout()
    );
    assert_eq!(
        p.query("SELECT COUNT(*) FROM inbound WHERE kind = 'hard'"),
        ["1"]
    );

    // status shows the rates beside the thresholds: 1 of 6 is past the stop (min sent 1).
    let status = p.run(&["status"]);
    let text = status.stdout();
    assert!(text.contains("hard bounces       1   16.67%"), "{text}");
    assert!(text.contains("complaints         1   16.67%"), "{text}");
    assert!(text.contains("sender-side        1"), "{text}");
    assert!(text.contains("STOP"), "{text}");

    // The next edition waits for the list to be looked at, then goes to none of the three.
    p.write(
        "articles/harbour.md",
        &crate::harness::article("Harbour wall repaired", "2026-12-03", true),
    );
    let held = p.run_with_env(&["send"], &[("SOURCE_DATE_EPOCH", NEXT_WEEK)]);
    held.expect_code(8);
    assert!(
        held.stderr().contains("--despite-rates"),
        "{}",
        held.stderr()
    );
    assert_eq!(sink.dumps().len(), 6, "nothing sent while held");
    p.run_with_env(
        &["send", "--despite-rates"],
        &[("SOURCE_DATE_EPOCH", NEXT_WEEK)],
    )
    .expect_code(0);
    let deliveries = sink.wait_for(9);
    for (email, n) in [
        ("reader1@example.org", 1),
        ("reader2@example.org", 1),
        ("reader3@example.org", 1),
        ("reader4@example.org", 2),
        ("reader5@example.org", 2),
        ("reader6@example.org", 2),
    ] {
        assert_eq!(deliveries.get(email), Some(&n), "{email}: {deliveries:?}");
    }
}

#[test]
fn soft_bounces_suppress_after_three_editions_in_a_row() {
    let sink = Sink::start(&[]);
    let (p, _) = project_with_bounces(&sink, 2, "");
    let days = [
        ("1795770000", "2026-11-26"),
        ("1796374800", "2026-12-03"),
        ("1796979600", "2026-12-10"),
    ];
    for (i, (day, article_date)) in days.iter().enumerate() {
        p.write(
            &format!("articles/week{i}.md"),
            &crate::harness::article(&format!("Week {i}"), article_date, true),
        );
        p.run_with_env(&["send"], &[("SOURCE_DATE_EPOCH", day)])
            .expect_code(0);
        sink.wait_for(2 * (i + 1));
        // This edition's message to reader1, found by its Message-ID alone (the bounce
        // comes back to the plain address, as through a relay that rewrites the sender).
        let message_id = p.query(
            "SELECT message_id FROM delivery WHERE email = 'reader1@example.org' \
             AND edition_id = (SELECT id FROM edition ORDER BY created_at DESC, id DESC LIMIT 1)",
        );
        let newest = Sent {
            recipient: "reader1@example.org".into(),
            return_path: "bounces@harbour.example".into(),
            message_id: message_id[0].clone(),
            unsubscribe_token: String::new(),
        };
        let bounce = dsn(&newest, "5.2.2", "552 5.2.2 Mailbox full");
        let out = pipe(&p, &bounce, &[("SOURCE_DATE_EPOCH", day)]);
        assert_eq!(out.status.code(), Some(0));
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        if i < 2 {
            assert!(
                line.contains(&format!("counted ({} edition", i + 1)),
                "{line}"
            );
            assert!(p.query("SELECT email FROM suppression").is_empty());
        } else {
            assert!(line.contains("suppressed (3 editions in a row"), "{line}");
            assert_eq!(
                p.query("SELECT email FROM suppression"),
                ["reader1@example.org"]
            );
        }
    }
}

#[test]
fn the_pipe_exits_75_while_the_state_is_locked_and_records_the_message_after() {
    let sink = Sink::start(&[]);
    let (p, _) = project_with_bounces(&sink, 2, "");
    p.run(&["send"]).expect_code(0);
    sink.wait_for(2);
    let sent = sent_messages(&sink);
    let bounce = dsn(&sent[0], "5.1.1", "550 5.1.1 User unknown");
    let pipe = |input: &str| pipe(&p, input, &[]);
    {
        // Another writer holds the database (as a long transaction would).
        let conn = rusqlite::Connection::open(p.path("newsletter.db")).expect("open");
        conn.execute_batch("BEGIN EXCLUSIVE").expect("lock");
        let out = pipe(&bounce);
        assert_eq!(
            out.status.code(),
            Some(75),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("try again"));
        conn.execute_batch("ROLLBACK").expect("unlock");
    }
    assert!(p.query("SELECT email FROM suppression").is_empty());
    // The MTA delivers it again: now it is recorded.
    let out = pipe(&bounce);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        p.query("SELECT email FROM suppression"),
        ["reader1@example.org"]
    );
}
