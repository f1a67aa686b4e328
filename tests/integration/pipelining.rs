//! SMTP pipelining (RFC 2920): against Postfix's smtp-sink, which offers it, and a peer that
//! checks the grouping on the wire and refuses inside a group.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{Project, Sink, exactly_once};

#[test]
fn smtp_sink_gets_every_message_once_with_and_without_pipelining() {
    for (extra, config) in [
        (&[][..], ""),
        (&["-p"][..], ""),
        (&[][..], "pipelining = false\n"),
    ] {
        let sink = Sink::start(extra);
        let p = Project::new();
        let emails = p.subscribers(25);
        p.use_smtp(&format!(
            "host = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nconnections = 3\nmax_per_connection = 4\n{config}",
            sink.port
        ));
        p.run(&["send"]).expect_code(0);
        // smtp-sink writes the dump as it answers the final dot; give it a moment.
        assert_eq!(
            sink.wait_for(emails.len()),
            exactly_once(&emails),
            "smtp-sink {extra:?}, {config:?}"
        );
        assert!(
            p.journal().iter().all(|(_, s)| s == "sent"),
            "{:?}",
            p.journal()
        );
    }
}

/// What the pipelining peer saw.
#[derive(Default)]
struct Seen {
    /// Transactions whose MAIL arrived with its RCPT and DATA already behind it.
    grouped: usize,
    transactions: usize,
    sessions: usize,
    delivered: BTreeMap<String, usize>,
    /// Commands the peer had to take as a message's content (sent after a 354 that the
    /// client did not wait for) before the connection ended.
    commands_as_content: usize,
    /// The reply to the final dot of this recipient's message is held until the client
    /// goes (set by the test), and whether that happened.
    stall_at: Option<String>,
    stalled: bool,
}

/// A server that offers PIPELINING, refuses `refuse` with 550 on RCPT (and then DATA with
/// 554, as RFC 2920 requires), answers RCPT for `drop_once` the first time with 421
/// and a closed connection, and the first content for `later_once` with 451 (554 when it
/// starts with "never:"). It speaks
/// only what the test needs; smtp-sink cannot refuse inside a pipelined group (its -f and
/// -r switch pipelining off).
fn pipelining_peer(
    refuse: &'static str,
    drop_once: &'static str,
    later_once: &'static str,
) -> (u16, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = Arc::clone(&seen);
    let dropped = Arc::new(Mutex::new(false));
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(stream) = stream else { continue };
            let seen = Arc::clone(&shared);
            let dropped = Arc::clone(&dropped);
            std::thread::spawn(move || {
                session(stream, &seen, &dropped, [refuse, drop_once, later_once]);
            });
        }
    });
    (port, seen)
}

fn session(
    mut stream: TcpStream,
    seen: &Mutex<Seen>,
    once: &Mutex<bool>,
    [refuse, drop_once, later_once]: [&str; 3],
) {
    seen.lock().expect("lock").sessions += 1;
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let _ = stream.write_all(b"220 peer ESMTP\r\n");
    let mut line = String::new();
    let mut rcpt: Option<String> = None;
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            "250-peer\r\n250-PIPELINING\r\n250 8BITMIME\r\n".into()
        } else if upper.starts_with("MAIL") {
            // Whatever of the group has arrived within 50 ms is in the buffer; a client that
            // waits for this reply sends nothing more (the read times out).
            if reader.buffer().is_empty() {
                let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
                let _ = reader.fill_buf();
                let _ = stream.set_read_timeout(None);
            }
            let rest = String::from_utf8_lossy(reader.buffer()).to_ascii_uppercase();
            let mut s = seen.lock().expect("lock");
            s.transactions += 1;
            if rest.contains("RCPT TO:") && rest.ends_with("DATA\r\n") {
                s.grouped += 1;
            }
            rcpt = None;
            "250 2.1.0 ok\r\n".into()
        } else if upper.starts_with("RCPT") {
            let to = line
                .split(['<', '>'])
                .nth(1)
                .unwrap_or_default()
                .to_string();
            if to == refuse {
                "550 5.1.1 no such user\r\n".into()
            } else if to == drop_once && !std::mem::replace(&mut *once.lock().expect("lock"), true)
            {
                let _ = stream.write_all(b"421 4.3.0 closing\r\n");
                return;
            } else {
                rcpt = Some(to);
                "250 2.1.5 ok\r\n".into()
            }
        } else if upper.starts_with("DATA") {
            let Some(to) = rcpt.take() else {
                let _ = stream.write_all(b"554 5.5.1 no valid recipients\r\n");
                continue;
            };
            let _ = stream.write_all(b"354 go ahead\r\n");
            let mut body = Vec::new();
            while !body.ends_with(b"\r\n.\r\n") {
                let mut byte = [0u8; 1];
                if reader.read_exact(&mut byte).is_err() {
                    if body.starts_with(b"QUIT") || body.starts_with(b"RSET") {
                        seen.lock().expect("lock").commands_as_content += 1;
                    }
                    return;
                }
                body.push(byte[0]);
            }
            if seen.lock().expect("lock").stall_at.as_ref() == Some(&to) {
                seen.lock().expect("lock").stalled = true;
                let _ = reader.read_to_end(&mut Vec::new());
                return;
            }
            if later_once.strip_prefix("never:") == Some(to.as_str()) {
                "554 5.7.1 Message rejected: content\r\n".into()
            } else if to == later_once && !std::mem::replace(&mut *once.lock().expect("lock"), true)
            {
                "451 4.3.0 try again later\r\n".into()
            } else {
                *seen.lock().expect("lock").delivered.entry(to).or_insert(0) += 1;
                "250 2.0.0 queued\r\n".into()
            }
        } else if upper.starts_with("QUIT") {
            let _ = stream.write_all(b"221 bye\r\n");
            return;
        } else {
            "250 ok\r\n".into()
        };
        let _ = stream.write_all(reply.as_bytes());
    }
}

/// A project of `n` subscribers sending over one connection to a `pipelining_peer`.
fn peer_project(
    n: usize,
    [refuse, drop_once, later_once]: [&'static str; 3],
) -> (Project, Vec<String>, Arc<Mutex<Seen>>) {
    let (port, seen) = pipelining_peer(refuse, drop_once, later_once);
    let p = Project::new();
    let emails = p.subscribers(n);
    p.use_smtp(&format!(
        "host = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nconnections = 1\nretry_delay_seconds = 0.1\n"
    ));
    (p, emails, seen)
}

#[test]
fn refusals_inside_a_pipelined_group_keep_the_connection_in_step() {
    let (p, emails, seen) = peer_project(6, ["reader2@example.org", "reader4@example.org", ""]);
    let run = p.run(&["send"]);
    // reader2 refused for good (which finishes the edition: exit 0), the others delivered,
    // reader4 after a pause once the 421 closed the connection.
    run.expect_code(0);
    let seen = seen.lock().expect("lock");
    let mut expected = exactly_once(&emails);
    expected.remove("reader2@example.org");
    assert_eq!(seen.delivered, expected);
    assert_eq!(
        seen.grouped, seen.transactions,
        "every MAIL came with its RCPT and DATA in one write"
    );
    // The preflight's session (kept), which the 421 closed, and the one after its pause
    // (reader4 is put back in the queue, not deferred to a retry pass): the 550 and 554
    // did not cost a connection.
    assert_eq!(seen.sessions, 2);
    let journal: BTreeMap<String, String> = p.journal().into_iter().collect();
    assert_eq!(journal["reader2@example.org"], "failed");
    assert!(
        journal
            .iter()
            .filter(|(e, _)| *e != "reader2@example.org")
            .all(|(_, s)| s == "sent"),
        "{journal:?}"
    );
}

/// A message's content refused for now while the next message's envelope followed it in
/// the same write: that connection is closed (the next envelope's replies would leave it
/// out of step), the next recipient goes on over a new one, and everyone is delivered
/// once, the refused one later.
#[test]
fn a_content_refused_while_the_next_envelope_followed_it_loses_and_repeats_no_one() {
    let (p, emails, seen) = peer_project(5, ["", "", "reader2@example.org"]);
    p.run(&["send"]).expect_code(0);
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.delivered, exactly_once(&emails));
    assert_eq!(seen.grouped, seen.transactions);
    assert!(seen.sessions >= 2, "{} sessions", seen.sessions);
    assert!(
        p.journal().iter().all(|(_, s)| s == "sent"),
        "{:?}",
        p.journal()
    );
}

/// The same with a content refused for good: the run stops (the relay refused the
/// sender's message), the recipient whose envelope followed it is left pending, and the
/// connection is closed rather than sent a QUIT the relay, waiting for that recipient's
/// content, would take as content.
#[test]
fn a_content_refused_for_good_while_the_next_envelope_followed_it_stops_cleanly() {
    let (p, emails, seen) = peer_project(5, ["", "", "never:reader2@example.org"]);
    p.run(&["send"]).expect_code(7);
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.delivered, exactly_once(&emails[..1]));
    assert_eq!(seen.commands_as_content, 0);
    let journal: BTreeMap<String, String> = p.journal().into_iter().collect();
    assert_eq!(journal["reader1@example.org"], "sent");
    assert!(
        journal
            .iter()
            .filter(|(e, _)| *e != "reader1@example.org")
            .all(|(_, s)| s == "pending"),
        "{journal:?}"
    );
}

/// Killed while the relay holds the reply to a message's final dot: the next message's
/// `attempting` step is on disk by then (it was made while that content travelled, and the
/// final dot waited for it), yet only the held message is in doubt. The next one's content
/// never left, so it goes back to pending, and the next run sends it. The same for the
/// last message, whose step was made ahead of its predecessor's reply.
#[test]
fn killed_while_a_reply_is_held_the_next_message_made_ahead_of_it_is_not_in_doubt() {
    for held in [2, 4] {
        let (p, emails, seen) = peer_project(5, ["", "", ""]);
        seen.lock().expect("lock").stall_at = Some(emails[held].clone());
        let mut child = p.spawn(&["send"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !seen.lock().expect("lock").stalled {
            assert!(Instant::now() < deadline, "message {held} never arrived");
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().expect("kill -9");
        child.wait().expect("wait");
        seen.lock().expect("lock").stall_at = None;

        p.run(&["send"]).expect_one_in_doubt();
        let journal: BTreeMap<String, String> = p.journal().into_iter().collect();
        assert_eq!(journal[&emails[held]], "in_doubt", "{journal:?}");
        assert!(
            journal
                .iter()
                .filter(|(e, _)| **e != emails[held])
                .all(|(_, s)| s == "sent"),
            "{journal:?}"
        );
        let mut others = exactly_once(&emails);
        others.remove(&emails[held]);
        assert_eq!(seen.lock().expect("lock").delivered, others, "held {held}");
    }
}
