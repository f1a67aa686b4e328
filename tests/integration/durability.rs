//! The durability promise read from a syscall trace (strace): counts and order of the
//! calls, never their timings. Each message's `attempting` is fsynced into the journal
//! before any of its content is written to the socket, and a one-recipient send makes at
//! most five fsyncs (a project's first run too, which makes the state database), in one
//! SMTP session with one EHLO.

use std::process::Command;

use crate::harness::{Project, Sink, installed};

/// One call of interest from the trace, in the order the calls completed.
#[derive(Debug, PartialEq)]
enum Call {
    /// An fsync or fdatasync of the send log (new or named), or of the database or its
    /// write-ahead log.
    JournalSync,
    /// Any other fsync or fdatasync.
    OtherSync(String),
    /// A write of SMTP commands (MAIL, RCPT, DATA, EHLO, QUIT, ...) to the relay.
    Commands(String),
    /// A write of message content to the relay (with its final dot or without).
    Content,
    /// A write of message content that ends with the next message's envelope.
    ContentThenEnvelope,
    /// A message's final dot written alone, after its content.
    Dot,
    /// A message's final dot written after its content, followed by the next message's
    /// envelope.
    DotThenEnvelope,
}

/// Runs `newsletter send` under `strace -f` and returns the calls in completion order.
fn traced_send(p: &Project, port: u16) -> Vec<Call> {
    let strace = installed("strace", &["/usr/bin/strace"]);
    let trace = p.path("trace.txt");
    let status = Command::new(strace)
        // Whole writes (a message is ~4 KB here): the next envelope may follow a content.
        .args(["-f", "-qq", "-yy", "-s", "65536", "-o"])
        .arg(&trace)
        .args([
            "-e",
            "trace=fsync,fdatasync,write,writev,sendto,sendmsg",
            env!("CARGO_BIN_EXE_newsletter"),
            "-q",
            "send",
        ])
        .current_dir(p.dir.path())
        .env("SOURCE_DATE_EPOCH", crate::harness::PINNED_EPOCH)
        .status()
        .expect("run strace");
    assert!(status.success(), "the traced send failed");
    let text = std::fs::read_to_string(&trace).expect("trace");
    let relay = format!(":{port}]");
    let mut calls = Vec::new();
    // A call interrupted by another thread's shows as "<unfinished ...>" and completes
    // at its "resumed" line: that is where it counts.
    let mut unfinished = std::collections::HashMap::<String, String>::new();
    for line in text.lines() {
        let (pid, rest) = line.split_once(' ').unwrap_or(("", line));
        let rest = rest.trim_start();
        let whole = if rest.ends_with("<unfinished ...>") {
            unfinished.insert(pid.to_string(), rest.to_string());
            continue;
        } else if rest.starts_with("<...") {
            match unfinished.remove(pid) {
                Some(start) => start,
                None => continue,
            }
        } else {
            rest.to_string()
        };
        let name = whole.split('(').next().unwrap_or("");
        match name {
            "fsync" | "fdatasync" => {
                // A new send log is synced under its first name, then renamed.
                if [".db-sendlog>", ".db-sendlog.new>", ".db-wal>", ".db>"]
                    .iter()
                    .any(|f| whole.contains(f))
                {
                    calls.push(Call::JournalSync);
                } else {
                    calls.push(Call::OtherSync(whole.clone()));
                }
            }
            "write" | "writev" | "sendto" | "sendmsg" if whole.contains(&relay) => {
                let data = whole.split('"').nth(1).unwrap_or("");
                let verb = data.split([' ', ':', '\\']).next().unwrap_or("");
                if [
                    "MAIL", "RCPT", "DATA", "EHLO", "HELO", "QUIT", "RSET", "NOOP", "STARTTLS",
                ]
                .contains(&verb)
                {
                    calls.push(Call::Commands(verb.to_string()));
                } else if data == ".\\r\\n" {
                    calls.push(Call::Dot);
                } else if data.starts_with(".\\r\\nMAIL ") {
                    calls.push(Call::DotThenEnvelope);
                } else if whole.contains("\\r\\n.\\r\\nMAIL ") {
                    // The next message's envelope in the same write, after the final dot.
                    calls.push(Call::ContentThenEnvelope);
                } else {
                    calls.push(Call::Content);
                }
            }
            _ => {}
        }
    }
    calls
}

fn sink_project(n: usize) -> (Project, Sink) {
    let sink = Sink::start(&[]);
    let p = Project::new();
    p.use_loopback(sink.port, 1, "");
    p.subscribers(n);
    (p, sink)
}

#[test]
fn each_message_is_fsynced_as_attempting_before_its_content_is_written() {
    let (p, sink) = sink_project(5);
    let calls = traced_send(&p, sink.port);
    assert_eq!(sink.wait_for(5).len(), 5);
    assert_synced_before_content(&calls, 5);
}

/// RFC 2920 lets a pipelined group start with a message's content: each message after the
/// first has its envelope in the write that ends the one before, one round trip per
/// message, and still its own sync before its content. That sync runs while the content
/// before it travels: each final dot is held back, after its content, until a sync made
/// since that content began (the next message's `attempting`, or for the last one the
/// `sent` of the one before it, whose successor's row was made ahead of its reply).
#[test]
fn each_envelope_after_the_first_follows_the_final_dot_before_it_in_one_write() {
    let (p, sink) = sink_project(5);
    let calls = traced_send(&p, sink.port);
    assert_eq!(sink.wait_for(5).len(), 5);
    let count = |want: &Call| calls.iter().filter(|c| *c == want).count();
    assert_eq!(count(&Call::Commands("MAIL".into())), 1, "{calls:?}");
    assert_eq!(count(&Call::DotThenEnvelope), 4, "{calls:?}");
    assert_eq!(count(&Call::Dot), 1, "the last message's: {calls:?}");
    assert_eq!(count(&Call::Content), 5, "{calls:?}");
    assert_eq!(count(&Call::ContentThenEnvelope), 0, "{calls:?}");
    let mut content = None;
    for (i, call) in calls.iter().enumerate() {
        match call {
            Call::Content => content = Some(i),
            Call::Dot | Call::DotThenEnvelope => {
                let from = content.take().expect("a final dot after its content");
                assert!(
                    calls[from..i].contains(&Call::JournalSync),
                    "a final dot went with no journal sync since its content began: {:?}",
                    &calls[from..=i]
                );
            }
            _ => {}
        }
    }
    assert_synced_before_content(&calls, 5);
}

/// Asserts that `n` messages went out, each with a journal sync between the one before
/// and its first content write.
fn assert_synced_before_content(calls: &[Call], n: usize) {
    // Where each message's content starts: the first content write after its MAIL (or
    // DATA) command.
    let mut starts = Vec::new();
    let mut in_envelope = false;
    for (i, call) in calls.iter().enumerate() {
        match call {
            Call::Commands(verb) if verb == "MAIL" || verb == "DATA" => in_envelope = true,
            Call::Content | Call::ContentThenEnvelope => {
                if in_envelope {
                    starts.push(i);
                }
                in_envelope = *call == Call::ContentThenEnvelope;
            }
            Call::DotThenEnvelope => in_envelope = true,
            _ => {}
        }
    }
    assert_eq!(starts.len(), n, "{calls:?}");
    let mut from = 0;
    for (k, &start) in starts.iter().enumerate() {
        let syncs = calls[from..start]
            .iter()
            .filter(|c| **c == Call::JournalSync)
            .count();
        assert!(
            syncs >= 1,
            "message {} went out with no journal fsync since the one before: {:?}",
            k + 1,
            &calls[from..=start]
        );
        from = start + 1;
    }
}

fn syncs(calls: &[Call]) -> Vec<&Call> {
    calls
        .iter()
        .filter(|c| matches!(c, Call::JournalSync | Call::OtherSync(_)))
        .collect()
}

#[test]
fn a_projects_first_send_makes_its_files_with_few_fsyncs() {
    let (p, sink) = sink_project(1);
    let calls = traced_send(&p, sink.port);
    assert_eq!(sink.wait_for(1).len(), 1);
    // The database made and switched to its write-ahead log with one sync of its own; the
    // freeze's commit (the log and, the first time, the directory), the message's
    // `attempting` and the last commit.
    let syncs = syncs(&calls);
    assert!(syncs.len() <= 5, "{} fsyncs: {calls:?}", syncs.len());
    assert_synced_before_content(&calls, 1);
}

#[test]
fn a_one_recipient_send_makes_few_fsyncs() {
    let (p, sink) = sink_project(1);
    // The first send makes the state database; the next edition's is the one counted.
    p.run(&["send"]).expect_code(0);
    p.write(
        "articles/market.md",
        &crate::harness::article("Christmas market", "2026-11-26", true)
            .replace("/n/2026-11-26", "/n/market"),
    );
    let calls = traced_send(&p, sink.port);
    assert_eq!(sink.wait_for(2).values().sum::<usize>(), 2);
    let syncs = syncs(&calls);
    assert!(syncs.len() <= 5, "{} fsyncs: {calls:?}", syncs.len());
    // One session (the relay's check carries the message), one EHLO in it.
    let verbs: Vec<&str> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Commands(v) => Some(v.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        verbs.iter().filter(|v| **v == "EHLO").count(),
        1,
        "{verbs:?}"
    );
    assert_eq!(
        verbs.iter().filter(|v| **v == "QUIT").count(),
        1,
        "{verbs:?}"
    );
}
