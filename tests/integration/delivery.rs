//! Cron-grade delivery: crashes at chosen points, server faults, retries, pacing, signals,
//! the run lock and a full disk; deliveries are counted per address at the server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{Point, Project, ServerOptions, SmtpServer, exactly_once, parse};

/// A project with `n` subscribers sending to `server` over one connection.
fn project_for(server: &SmtpServer, n: usize, extra: &str) -> (Project, Vec<String>) {
    let p = Project::new();
    let emails = p.subscribers(n);
    p.use_loopback(server.port, 1, extra);
    (p, emails)
}

fn state_of(p: &Project, email: &str) -> String {
    p.journal()
        .into_iter()
        .find(|(e, _)| e == email)
        .map(|(_, s)| s)
        .unwrap_or_default()
}

/// Starts `send` to `n` subscribers against a server that holds `point`; returns once it
/// holds it.
fn held_send(point: Point, n: usize) -> (SmtpServer, Project, Vec<String>, std::process::Child) {
    let server = SmtpServer::start(ServerOptions {
        pause: Some(point),
        ..ServerOptions::default()
    });
    let (p, emails) = project_for(&server, n, "");
    let child = p.spawn(&["send"]);
    server.gate.wait_reached();
    (server, p, emails, child)
}

/// Kills the client with SIGKILL while the server holds `point`, then lets the server go on.
fn kill_at(point: Point, n: usize) -> (Project, Vec<String>, SmtpServer) {
    let (server, p, emails, mut child) = held_send(point, n);
    if let Point::Mail(k) = point {
        // The earlier messages' 250s are recorded without waiting; let those records land,
        // so that only message k is in flight at the kill.
        wait_for_sent(&p, k - 1);
    }
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    server.gate.release();
    (p, emails, server)
}

fn wait_for_sent(p: &Project, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.journal().iter().filter(|(_, s)| s == "sent").count() < n {
        assert!(
            Instant::now() < deadline,
            "the journal never recorded {n} sent: {:?}",
            p.journal()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn killed_after_mail_nothing_is_lost_and_no_one_gets_two() {
    // The preflight session only greets, so MAIL 3 is message 3's.
    let (p, emails, server) = kill_at(Point::Mail(3), 5);
    assert_eq!(server.messages().len(), 2, "two messages before the kill");
    // Message 3 never reached DATA: it is not in doubt (a new edition's row is written
    // with its first steps, so it may not be written yet).
    assert!(
        ["pending", ""].contains(&state_of(&p, &emails[2]).as_str()),
        "{:?}",
        p.journal()
    );

    let rerun = p.run(&["send"]);
    rerun.expect_code(0);
    assert_eq!(server.deliveries(), exactly_once(&emails));
}

#[test]
fn killed_while_the_messages_render_the_frozen_edition_is_resumed_and_no_one_gets_two() {
    // A relay that takes the connection and never greets holds the run in its check of the
    // relay, which the new edition's freeze does not wait for.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let p = Project::new();
    let emails = p.subscribers(3);
    p.use_loopback(silent.local_addr().expect("addr").port(), 1, "");
    let mut child = p.spawn(&["send"]);
    let (_held, _) = silent.accept().expect("the check of the relay connects");
    let deadline = Instant::now() + Duration::from_secs(20);
    while p.editions() == 0 {
        assert!(Instant::now() < deadline, "the edition was never frozen");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    assert!(
        p.journal().is_empty(),
        "no recipient recorded before the kill"
    );

    let server = SmtpServer::start(ServerOptions::default());
    p.use_loopback(server.port, 1, "");
    let rerun = p.run(&["send"]);
    rerun.expect_code(0);
    assert!(
        rerun.stderr().contains("resuming edition"),
        "{}",
        rerun.stderr()
    );
    assert_eq!(server.deliveries(), exactly_once(&emails));
    assert_eq!(
        p.editions(),
        1,
        "the frozen edition was sent, no second one"
    );
}

#[test]
fn killed_after_the_final_dot_the_message_is_in_doubt_and_not_resent() {
    let (p, emails, server) = kill_at(Point::DataEnd(3), 5);
    // The server has message 3; the client never heard the 250.
    assert_eq!(server.messages().len(), 3);

    p.run(&["send"]).expect_one_in_doubt();
    assert_eq!(
        server.deliveries(),
        exactly_once(&emails),
        "no one twice, no one skipped"
    );
    assert_eq!(state_of(&p, &emails[2]), "in_doubt");

    // On request it is sent again, with the same Message-ID.
    let first_id = parse(&server.messages()[2].data)
        .message_id()
        .map(str::to_string);
    p.run(&["send", "--resend-in-doubt"]).expect_code(0);
    let copies: Vec<_> = server
        .messages()
        .into_iter()
        .filter(|m| m.to == [emails[2].clone()])
        .collect();
    assert_eq!(copies.len(), 2);
    assert_eq!(
        parse(&copies[1].data).message_id().map(str::to_string),
        first_id
    );
    assert_eq!(state_of(&p, &emails[2]), "sent");
}

#[test]
fn a_one_recipient_first_run_killed_after_the_final_dot_leaves_it_in_doubt() {
    // One recipient and no send log yet: the steps are committed into the database.
    let (p, emails, server) = kill_at(Point::DataEnd(1), 1);
    assert_eq!(server.messages().len(), 1);
    assert!(
        !p.path("newsletter.db-sendlog").exists() && !p.path("newsletter.db-sendlog.new").exists(),
        "a one-recipient first run makes no send log"
    );
    assert_eq!(state_of(&p, &emails[0]), "attempting");

    let rerun = p.run(&["send"]);
    rerun.expect_code(4);
    assert_eq!(server.deliveries(), exactly_once(&emails), "not sent twice");
    assert_eq!(state_of(&p, &emails[0]), "in_doubt");
}

#[test]
fn killed_before_a_new_editions_rows_were_written_no_one_gets_two() {
    // A new edition's pending rows are written beside its first messages, without a sync
    // of their own: a crash (a power cut) may come before they reach the disk. As if it
    // had: the rows gone and nothing of the send log applied yet.
    let (p, emails, server) = kill_at(Point::DataEnd(3), 5);
    assert_eq!(server.messages().len(), 3);
    let conn = rusqlite::Connection::open(p.path("newsletter.db")).expect("open state");
    conn.execute_batch("DELETE FROM delivery; UPDATE send_log SET applied = 0;")
        .expect("undo the rows");
    drop(conn);

    let rerun = p.run(&["send"]);
    rerun.expect_code(4);
    assert_eq!(
        server.deliveries(),
        exactly_once(&emails),
        "no one twice, no one skipped"
    );
    assert_eq!(state_of(&p, &emails[0]), "sent");
    assert_eq!(state_of(&p, &emails[2]), "in_doubt");
    assert_eq!(state_of(&p, &emails[4]), "sent");
}

/// Holds every write to the send log of process `pid` (strace injects a long delay into
/// them) until the process dies; returns once strace traces each of its threads.
#[allow(clippy::zombie_processes)] // returned: the caller kills and waits for it
fn hold_send_log_writes(p: &Project, pid: u32) -> std::process::Child {
    let strace = crate::harness::installed("strace", &["/usr/bin/strace"]);
    let mut strace_run = std::process::Command::new(strace)
        .args(["-f", "-qq", "-o", "/dev/null", "-p", &pid.to_string(), "-P"])
        .arg(p.path("newsletter.db-sendlog"))
        .args([
            "-e",
            "trace=pwrite64,write",
            "-e",
            "inject=pwrite64,write:delay_enter=60000000",
        ])
        .spawn()
        .expect("run strace");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
        let attached = tasks.is_ok_and(|tasks| {
            tasks.flatten().all(|t| {
                std::fs::read_to_string(t.path().join("status")).is_ok_and(|s| {
                    s.lines()
                        .any(|l| l.starts_with("TracerPid:") && l.trim_end() != "TracerPid:\t0")
                })
            })
        });
        if attached {
            return strace_run;
        }
        if Instant::now() > deadline {
            let _ = strace_run.kill();
            let _ = strace_run.wait();
            panic!("strace did not attach");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn killed_after_the_reply_but_before_the_journal_commit_nothing_is_sent_twice() {
    let (server, p, emails, mut child) = held_send(Point::DataEnd(3), 5);
    // Hold the send log's writes, so the client gets its 250 but cannot record it.
    let mut tracer = hold_send_log_writes(&p, child.id());
    server.gate.release();
    std::thread::sleep(Duration::from_millis(500));
    child.kill().expect("kill -9");
    // The killed process stays the tracer's until strace goes: it never runs again.
    let _ = tracer.kill();
    let _ = tracer.wait();
    child.wait().expect("wait");
    assert_eq!(server.messages().len(), 3);

    let rerun = p.run(&["send"]);
    rerun.expect_code(4);
    assert_eq!(server.deliveries(), exactly_once(&emails));
    assert_eq!(state_of(&p, &emails[2]), "in_doubt");
}

#[test]
fn a_421_reconnects_and_finishes() {
    let server = SmtpServer::start(ServerOptions {
        mail_reply: Some((3, 421)),
        ..ServerOptions::default()
    });
    let (p, emails) = project_for(&server, 5, "");
    let run = p.run(&["send"]);
    run.expect_code(0);
    assert_eq!(server.deliveries(), exactly_once(&emails));
    // The preflight's session, kept for the first messages (1, 2 and the 421), and a new
    // one after the pause for message 3 (put back in the queue, not charged) and 4 and 5.
    assert_eq!(server.sessions(), 2);
    assert_eq!(
        p.query("SELECT attempts FROM delivery WHERE email = 'reader3@example.org'"),
        ["1"]
    );
    assert_eq!(state_of(&p, &emails[2]), "sent");
}

#[test]
fn a_550_on_rcpt_fails_and_suppresses_a_450_is_retried_next_run() {
    let server = SmtpServer::start(ServerOptions {
        reject: vec![("reader2@".into(), 550), ("reader4@".into(), 450)],
        ..ServerOptions::default()
    });
    let (p, emails) = project_for(&server, 5, "retries_per_run = 1\n");
    let run = p.run(&["send"]);
    run.expect_code(4);
    assert_eq!(state_of(&p, "reader2@example.org"), "failed");
    assert_eq!(state_of(&p, "reader4@example.org"), "deferred");
    assert_eq!(server.deliveries().len(), 3);

    let status = p.run(&["status", "--json"]);
    status.expect_code(0);
    let json = status.stdout();
    assert!(
        json.contains("\"deferred\": 1") && json.contains("\"failed\": 1"),
        "{json}"
    );
    assert!(
        json.contains("reader4@example.org") && json.contains("450"),
        "{json}"
    );

    // The next run tries only the deferred one; the server still refuses it.
    let again = p.run(&["send"]);
    again.expect_code(4);
    assert_eq!(server.deliveries().len(), 3);

    // A week later a new edition leaves out the suppressed address.
    p.write(
        "articles/new.md",
        &crate::harness::article("Next week", "2026-12-03", true),
    );
    let server2 = SmtpServer::start(ServerOptions::default());
    p.use_smtp(&format!(
        "host = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nretry_delay_seconds = 0.1\n",
        server2.port
    ));
    // The unfinished edition is resumed first (reader4 now goes through)...
    p.run(&["send"]).expect_code(0);
    assert_eq!(server2.recipients(), ["reader4@example.org"]);
    // ...then the next edition goes to everyone but reader2.
    p.run_with_env(&["send"], &[("SOURCE_DATE_EPOCH", "1796374800")])
        .expect_code(0);
    let mut expected = exactly_once(&emails);
    expected.remove("reader2@example.org");
    expected.insert("reader4@example.org".into(), 2);
    assert_eq!(server2.deliveries(), expected);
}

/// A peer that speaks just enough SMTP to take a message and then drops the connection in
/// the middle of DATA, which no real server can be made to do on cue.
fn dropping_peer() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let data_started = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&data_started);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(mut stream) = stream else { continue };
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let _ = stream.write_all(b"220 peer ESMTP\r\n");
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-peer\r\n250 8BITMIME\r\n",
                        "DATA" => {
                            counter.fetch_add(1, Ordering::SeqCst);
                            let _ = stream.write_all(b"354 go ahead\r\n");
                            let mut half = [0u8; 512];
                            let _ = reader.read_exact(&mut half);
                            let _ = stream.shutdown(std::net::Shutdown::Both);
                            return;
                        }
                        "QUIT" => {
                            let _ = stream.write_all(b"221 bye\r\n");
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    let _ = stream.write_all(reply);
                    line.clear();
                }
            });
        }
    });
    (port, data_started)
}

#[test]
fn a_connection_dropped_during_data_leaves_the_message_in_doubt() {
    let (port, data_started) = dropping_peer();
    let p = Project::new();
    p.subscribers(1);
    p.use_smtp(&format!(
        "host = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nretry_delay_seconds = 0.1\n"
    ));
    let run = p.run(&["send"]);
    run.expect_code(4);
    assert_eq!(state_of(&p, "reader1@example.org"), "in_doubt");
    assert_eq!(
        data_started.load(Ordering::SeqCst),
        1,
        "an in-doubt message is not retried by itself"
    );
    p.run(&["send"]).expect_code(4);
    assert_eq!(
        data_started.load(Ordering::SeqCst),
        1,
        "nor by the next run"
    );
}

#[test]
fn a_server_slower_than_the_timeout_is_retried() {
    let server = SmtpServer::start(ServerOptions {
        slow_mails: 1,
        slow_for: Duration::from_secs(2),
        ..ServerOptions::default()
    });
    let (p, emails) = project_for(&server, 3, "command_timeout_seconds = 0.5\n");
    let run = p.run(&["send"]);
    run.expect_code(0);
    assert_eq!(server.deliveries(), exactly_once(&emails));
    assert_eq!(
        p.journal().iter().filter(|(_, s)| s == "sent").count(),
        3,
        "{:?}",
        p.journal()
    );
}

#[test]
fn failures_in_a_row_trip_the_circuit_breaker() {
    let server = SmtpServer::start(ServerOptions {
        reject: vec![("@".into(), 451)],
        ..ServerOptions::default()
    });
    let (p, _) = project_for(
        &server,
        8,
        "max_consecutive_failures = 3\nretries_per_run = 0\n",
    );
    let run = p.run(&["send"]);
    run.expect_code(4);
    assert!(
        run.stdout().contains("3 failures in a row"),
        "{}",
        run.stdout()
    );
    let journal = p.journal();
    assert_eq!(
        journal.iter().filter(|(_, s)| s == "deferred").count(),
        3,
        "{journal:?}"
    );
    assert_eq!(
        journal.iter().filter(|(_, s)| s == "pending").count(),
        5,
        "{journal:?}"
    );
}

#[test]
fn the_daily_quota_stops_the_run_and_holds_across_runs() {
    let server = SmtpServer::start(ServerOptions::default());
    let (p, _) = project_for(&server, 5, "daily_quota = 3\n");
    let run = p.run(&["send"]);
    run.expect_code(4);
    assert!(
        run.stdout().contains("daily quota of 3"),
        "{}",
        run.stdout()
    );
    assert_eq!(server.messages().len(), 3);
    p.run(&["send"]).expect_code(4);
    assert_eq!(
        server.messages().len(),
        3,
        "the quota is per day, across runs"
    );
}

#[test]
fn the_rate_limit_spaces_messages_out() {
    let server = SmtpServer::start(ServerOptions::default());
    let (p, emails) = project_for(&server, 6, "rate_per_second = 10\n");
    let started = Instant::now();
    p.run(&["send", "--connections", "2"]).expect_code(0);
    // Six messages at ten a second cannot take less than half a second.
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.deliveries(), exactly_once(&emails));
}

#[test]
fn connections_are_renewed_after_max_per_connection() {
    let server = SmtpServer::start(ServerOptions::default());
    let (p, emails) = project_for(&server, 5, "max_per_connection = 2\n");
    p.run(&["send"]).expect_code(0);
    assert_eq!(server.deliveries(), exactly_once(&emails));
    // 2 + 2 + 1 messages; the first session is the preflight's, kept.
    assert_eq!(server.sessions(), 3);
}

#[test]
fn sigterm_finishes_the_message_in_flight_and_stops() {
    let (server, p, emails, child) = held_send(Point::DataEnd(2), 5);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(200));
    server.gate.release();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("interrupted"));
    assert_eq!(
        server.messages().len(),
        2,
        "no new message after the signal"
    );
    assert_eq!(
        state_of(&p, &emails[1]),
        "sent",
        "the one in flight was finished and recorded"
    );

    p.run(&["send"]).expect_code(0);
    assert_eq!(server.deliveries(), exactly_once(&emails));
}

/// The nice value of each thread of process `pid` (field 19 of `/proc/PID/task/TID/stat`).
fn thread_nice_values(pid: u32) -> Vec<(u32, i64)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let task = task.expect("task");
        let tid: u32 = task.file_name().to_string_lossy().parse().expect("tid");
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        // After the name in parentheses: the state is field 3, the nice value field 19.
        let after = stat.rsplit_once(") ").expect("stat").1;
        let nice = after.split_whitespace().nth(16).expect("nice");
        threads.push((tid, nice.parse().expect("a number")));
    }
    threads
}

#[test]
fn a_sends_database_thread_gives_way_to_the_sending_one() {
    // The database thread catches up with the send log in the CPU time the sending and
    // the relay leave: the lowest priority, one thread; every other at the usual one.
    let (server, _p, emails, child) = held_send(Point::DataEnd(2), 3);
    let pid = child.id();
    let threads = thread_nice_values(pid);
    server.gate.release();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(server.deliveries(), exactly_once(&emails));
    let lowest: Vec<_> = threads.iter().filter(|(_, nice)| *nice == 19).collect();
    assert_eq!(lowest.len(), 1, "{threads:?}");
    assert!(
        threads
            .iter()
            .all(|(tid, nice)| *nice == 19 || (*nice == 0 && *tid != lowest[0].0)),
        "{threads:?}"
    );
    assert!(
        threads.iter().any(|(tid, nice)| *tid == pid && *nice == 0),
        "{threads:?}"
    );
}

#[test]
fn two_runs_at_once_one_sends_and_the_other_is_locked_out() {
    let (server, p, emails, first) = held_send(Point::DataEnd(1), 4);
    let second = p.run(&["send"]);
    second.expect_code(5);
    assert!(
        second.stderr().contains("another run holds the lock"),
        "{}",
        second.stderr()
    );
    assert!(
        second.stderr().contains(&format!("pid {}", first.id())),
        "{}",
        second.stderr()
    );
    server.gate.release();
    let out = first.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(server.deliveries(), exactly_once(&emails));
}

#[test]
fn a_resumed_edition_is_the_frozen_one_even_if_the_files_changed() {
    let (p, emails, server) = kill_at(Point::Mail(3), 4);
    p.write(
        "articles/ferry.md",
        &crate::harness::article("A new title", "2026-11-24", true),
    );
    p.write(
        "articles/late.md",
        &crate::harness::article("A late story", "2026-11-26", true),
    );
    p.run(&["send"]).expect_code(0);
    assert_eq!(server.deliveries(), exactly_once(&emails));
    for m in server.messages() {
        let subject = parse(&m.data).subject().unwrap_or_default().to_string();
        assert!(subject.contains("Ferry timetable"), "{subject}");
    }
    // The late story goes out in the next edition.
    let next = p.run_with_env(
        &["send", "--dry-run"],
        &[("SOURCE_DATE_EPOCH", "1796374800")],
    );
    next.expect_code(0);
    assert!(next.stderr().contains("(1 article)"), "{}", next.stderr());
}

#[test]
fn a_full_disk_stops_the_run_and_loses_nothing() {
    let server = SmtpServer::start(ServerOptions::default());
    let p = Project::new();
    let emails = p.subscribers(1500);
    std::fs::create_dir_all(p.path("small")).expect("mkdir");
    std::fs::create_dir_all(p.path("saved")).expect("mkdir");
    let smtp = format!(
        "host = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nconnections = 2\nmax_per_connection = 10000\n",
        server.port
    );
    p.use_smtp(&smtp);
    let config = p.read("newsletter.toml");
    p.write(
        "newsletter.toml",
        &config.replace(
            "[transport]",
            "[paths]\nstate = \"small/newsletter.db\"\n\n[transport]",
        ),
    );
    // In a private mount namespace, the state folder is a 400 KiB tmpfs. When the run ends,
    // the database is copied out, because the tmpfs ends with the namespace.
    let script = format!(
        "mount -t tmpfs -o size=600k tmpfs small && SOURCE_DATE_EPOCH={} {} send; echo \"exit=$?\"; cp small/newsletter.db* saved/",
        crate::harness::PINNED_EPOCH,
        env!("CARGO_BIN_EXE_newsletter")
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--map-root-user", "sh", "-c", &script])
        .current_dir(p.dir.path())
        .output()
        .expect("unshare (util-linux) must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("exit=1"),
        "the run must stop with exit 1\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("cannot write the journal"),
        "{stdout}\n{stderr}"
    );
    let delivered_before = server.messages().len();
    assert!(
        delivered_before > 0 && delivered_before < 1500,
        "the disk filled mid-run: {delivered_before}\n{stdout}\n{stderr}"
    );

    // The journal on a disk with room: every row says what happened.
    p.write(
        "newsletter.toml",
        &config.replace(
            "[transport]",
            "[paths]\nstate = \"saved/newsletter.db\"\n\n[transport]",
        ),
    );
    let rerun = p.run(&["send"]);
    let deliveries = server.deliveries();
    let twice: Vec<_> = deliveries.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    let missing: Vec<_> = emails
        .iter()
        .filter(|e| !deliveries.contains_key(*e))
        .collect();
    assert!(missing.is_empty(), "never sent: {missing:?}");
    // Messages whose 250 could not be recorded are in doubt: at most one per connection.
    let journal = p.journal_in("saved/newsletter.db");
    let in_doubt = journal.iter().filter(|(_, s)| s == "in_doubt").count();
    assert!(in_doubt <= 2, "{journal:?}");
    assert_eq!(
        journal.iter().filter(|(_, s)| s == "sent").count() + in_doubt,
        1500
    );
    assert!(matches!(rerun.code(), 0 | 4), "{}", rerun.stderr());
}

#[test]
fn addresses_unsubscribed_by_hand_during_a_send_are_not_mailed() {
    let server = SmtpServer::start(ServerOptions {
        pause: Some(Point::Mail(2)),
        ..ServerOptions::default()
    });
    let (p, emails) = project_for(&server, 6, "");
    let child = p
        .command(&["send"], &[("NEWSLETTER_LIST_RECHECK", "0.1")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn newsletter");
    // The first message is delivered; the second waits at its MAIL while the editor
    // unsubscribes three readers by hand.
    server.gate.wait_reached();
    let list = p.read("subscribers.toml");
    let mut edited = list.clone();
    for e in &emails[3..] {
        edited = edited.replace(
            &format!("email = \"{e}\"\nstatus = \"subscribed\""),
            &format!("email = \"{e}\"\nstatus = \"unsubscribed\""),
        );
    }
    assert_ne!(edited, list);
    p.write("subscribers.toml", &edited);
    // Twenty times the interval: the send has looked at the file again, even on a busy
    // machine.
    std::thread::sleep(Duration::from_secs(2));
    server.gate.release();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.deliveries(), exactly_once(&emails[..3]));
    for e in &emails[3..] {
        assert_eq!(state_of(&p, e), "skipped", "{e}");
    }
}

#[test]
fn a_small_send_opens_one_session_the_check_of_the_relay_included() {
    let server = SmtpServer::start(ServerOptions::default());
    let (p, emails) = project_for(&server, 1, "");
    p.run(&["send"]).expect_code(0);
    assert_eq!(server.deliveries(), exactly_once(&emails));
    // The session that checked the relay before anything was frozen carried the message.
    assert_eq!(server.sessions(), 1);
}

#[test]
fn status_during_a_send_counts_the_recipients_not_reached_yet_as_pending() {
    // Held before message 3's envelope is answered: messages 1 and 2 went out.
    let (server, p, _emails, mut child) = held_send(Point::Mail(3), 5);
    // The database learns of a run's steps within a second, off the messages' path.
    wait_for_sent(&p, 2);
    let status = p.run(&["status", "--json"]);
    status.expect_code(0);
    let json: serde_json::Value = serde_json::from_str(&status.stdout()).expect("json");
    let n = |state: &str| json["counts"][state].as_u64().unwrap_or(0);
    assert_eq!(n("sent"), 2, "{json}");
    // The other three, whether message 3's row is written yet or not (a new edition's
    // rows are written as the send reaches them).
    assert_eq!(n("pending") + n("attempting"), 3, "{json}");
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    server.gate.release();
}
