//! `serve` under abuse and load: slow clients, oversized requests, too many connections, a
//! client over its rate, and sends running while readers click.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{Project, Sink, http, parse, serve, serve_with, unsubscribe_path};

/// A genuine unsubscribe path for `email`, made by the binary itself through a preview.
fn path_for(p: &Project, email: &str) -> String {
    let run = p.run(&["preview", "--to", email, "--out", "pv"]);
    run.expect_code(0);
    let eml = run.stdout().lines().next().expect("eml").to_string();
    unsubscribe_path(&std::fs::read(p.path(&eml)).expect("eml"))
}

/// What the server sent before it closed the connection (end of file or reset), or `None`
/// when it is still open after `bound`.
fn closed_within(s: &mut TcpStream, bound: Duration) -> Option<String> {
    let deadline = Instant::now() + bound;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return Some(String::from_utf8_lossy(&got).into_owned());
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading: {e}"),
        }
    }
}

/// True while the server has neither answered nor closed.
fn still_open(s: &TcpStream) -> bool {
    s.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0u8; 1];
    let open = matches!(s.peek(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock);
    s.set_nonblocking(false).expect("blocking");
    open
}

/// Writes `head` then `filler` bytes (stopping quietly when the server closes), and returns
/// the status code the server answered, if it answered before closing.
fn raw(addr: &str, head: &str, filler: usize) -> Option<u16> {
    let mut s = TcpStream::connect(addr).expect("connect");
    if s.write_all(head.as_bytes()).is_ok() {
        let block = vec![b'a'; 64 * 1024];
        let mut left = filler;
        while left > 0 {
            let n = left.min(block.len());
            if s.write_all(&block[..n]).is_err() {
                break;
            }
            left -= n;
        }
    }
    let answer = closed_within(&mut s, Duration::from_secs(30)).expect("closed");
    answer.get(9..12).and_then(|c| c.parse().ok())
}

/// The peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn slow_clients_are_closed_by_the_read_deadline_while_a_click_goes_through() {
    let p = Project::new();
    let path = path_for(&p, "ada@example.org");
    let (mut child, addr) = serve_with(&p, &["--max-connections", "210", "--read-timeout", "8"]);

    // 100 clients stall in their headers, 100 in a body they announced.
    let mut slow = Vec::new();
    for i in 0..200 {
        let mut s = TcpStream::connect(&addr).expect("connect");
        if i % 2 == 0 {
            write!(s, "POST {path} HTTP/1.1\r\nHost: harbour.example\r\nX-Slow: ")
        } else {
            write!(
                s,
                "POST {path} HTTP/1.1\r\nHost: harbour.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 2000\r\n\r\nList-Unsub"
            )
        }
        .expect("write");
        slow.push(s);
    }

    // A reader's one-click POST is answered meanwhile, committed before its 200.
    let (code, page) = http(&addr, "POST", &path, "List-Unsubscribe=One-Click");
    assert_eq!(code, 200, "{page}");
    assert_eq!(
        p.query("SELECT email FROM unsubscribed"),
        ["ada@example.org"]
    );
    let held = slow.iter().filter(|s| still_open(s)).count();
    assert_eq!(
        held, 200,
        "every slow client was still held during the click"
    );

    // Over the limit (210): refused at once with a 503, not queued.
    let extra: Vec<_> = (0..20)
        .map(|_| TcpStream::connect(&addr).expect("connect"))
        .map(|mut s| std::thread::spawn(move || closed_within(&mut s, Duration::from_secs(3))))
        .collect();
    let outcomes: Vec<Option<String>> =
        extra.into_iter().map(|t| t.join().expect("join")).collect();
    let refused: Vec<&String> = outcomes.iter().flatten().collect();
    assert!(
        (10..=11).contains(&refused.len()),
        "200 slow clients and the click's connection leave 9 or 10 of 210 slots: {outcomes:?}"
    );
    for answer in &refused {
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    }

    // Each slow client is closed by the read deadline; a stalled body is answered 408.
    for (i, mut s) in slow.into_iter().enumerate() {
        let answer = closed_within(&mut s, Duration::from_mins(1))
            .unwrap_or_else(|| panic!("slow client {i} still open after 60 s"));
        if i % 2 == 1 {
            assert!(answer.starts_with("HTTP/1.1 408"), "{i}: {answer:?}");
        }
    }
    // And the endpoint still answers.
    let (code, _) = http(&addr, "GET", &path, "");
    assert_eq!(code, 200);
    child.kill().expect("stop serve");
    child.wait().expect("wait");
}

#[test]
fn oversized_requests_are_refused_and_memory_stays_bounded() {
    let p = Project::new();
    let path = path_for(&p, "ada@example.org");
    let (mut child, addr) = serve(&p);
    let refused = |code: Option<u16>| code.is_none_or(|c| c == 414 || c == 431);

    // A request line of 1 MB.
    let long = format!("GET /unsubscribe/{} HTTP/1.1\r\n", "a".repeat(1 << 20));
    let code = raw(&addr, &long, 0);
    assert!(refused(code), "{code:?}");
    // 20,000 header lines.
    let many: String = (0..20_000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let code = raw(&addr, &format!("GET {path} HTTP/1.1\r\n{many}\r\n"), 0);
    assert!(refused(code), "{code:?}");
    // 100 short header lines: under the size limit, over the count.
    let hundred: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let code = raw(&addr, &format!("GET {path} HTTP/1.1\r\n{hundred}\r\n"), 0);
    assert_eq!(code, Some(431));
    // A chunked body over the route's 4 KB, with no Content-Length to refuse it early.
    let chunk = "a".repeat(5000);
    let code = raw(
        &addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: harbour.example\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        ),
        0,
    );
    assert_eq!(code, Some(413));

    // 20 clients, each sending a 20 MB header at once.
    let before = peak_rss_kib(child.id());
    let big: Vec<_> = (0..20)
        .map(|_| {
            let (addr, path) = (addr.clone(), path.clone());
            std::thread::spawn(move || {
                raw(
                    &addr,
                    &format!("GET {path} HTTP/1.1\r\nHost: harbour.example\r\nX-Big: "),
                    20 << 20,
                )
            })
        })
        .collect();
    for t in big {
        let code = t.join().expect("join");
        assert!(refused(code), "{code:?}");
    }
    let after = peak_rss_kib(child.id());
    assert!(
        after < before + 32 * 1024,
        "peak memory went from {before} KiB to {after} KiB for 400 MB of headers"
    );
    let (code, _) = http(&addr, "GET", &path, "");
    assert_eq!(code, 200, "still serving");
    child.kill().expect("stop serve");
    child.wait().expect("wait");
}

#[test]
fn a_client_over_its_rate_is_answered_429() {
    let p = Project::new();
    let path = path_for(&p, "ada@example.org");
    let (mut child, addr) = serve_with(&p, &["--rate-limit", "3"]);
    for _ in 0..3 {
        assert_eq!(http(&addr, "GET", &path, "").0, 200);
    }
    let mut s = TcpStream::connect(&addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: harbour.example\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let answer = closed_within(&mut s, Duration::from_secs(30)).expect("answered");
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: "),
        "{answer}"
    );
    child.kill().expect("stop serve");
    child.wait().expect("wait");
}

/// The https unsubscribe path of each recipient in smtp-sink's dumps.
fn paths_by_recipient(sink: &Sink) -> std::collections::BTreeMap<String, String> {
    sink.dumps()
        .iter()
        .map(|d| {
            let to = parse(d)
                .header_raw("X-Rcpt-Args")
                .expect("envelope")
                .trim()
                .trim_matches(|c| c == '<' || c == '>')
                .to_string();
            (to, unsubscribe_path(d))
        })
        .collect()
}

#[test]
fn thirty_sends_run_while_readers_click_and_none_fails() {
    const ROUNDS: usize = 30;
    let sink = Sink::start(&[]);
    let p = Project::new();
    let readers = p.subscribers(50).len();
    p.use_smtp(&format!(
        "host = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nconnections = 2\n",
        sink.port
    ));
    // A first edition to everyone gives each reader's link.
    p.run(&["send"]).expect_code(0);
    let paths = paths_by_recipient(&sink);
    assert_eq!(paths.len(), readers);

    // Every click comes from 127.0.0.1, 50 a second: no per-client limit (as behind a proxy).
    let (mut child, addr) = serve_with(&p, &["--rate-limit", "0"]);
    let stop = Arc::new(AtomicBool::new(false));
    // When each address first got its 200.
    let first_clicks: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let clicker = {
        let (stop, clicked, addr, db) = (
            Arc::clone(&stop),
            Arc::clone(&first_clicks),
            addr.clone(),
            p.path("newsletter.db"),
        );
        let order: Vec<(String, String)> = paths.into_iter().take(40).collect();
        std::thread::spawn(move || {
            let mut n = 0usize;
            let until = Instant::now() + Duration::from_mins(5);
            while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                // A new reader every 40 clicks; the others click again meanwhile.
                let known = (n / 40 + 1).min(order.len());
                let (email, path) = &order[n % known];
                let (code, page) = http(&addr, "POST", path, "List-Unsubscribe=One-Click");
                assert_eq!(code, 200, "click {n} on {email}: {page}");
                let mut seen = clicked.lock().expect("lock");
                if !seen.iter().any(|(e, _)| e == email) {
                    // Committed before the answer: the row is there now.
                    let conn = rusqlite::Connection::open(&db).expect("open state");
                    let rows: i64 = conn
                        .query_row(
                            "SELECT count(*) FROM unsubscribed WHERE email = ?1",
                            [email],
                            |r| r.get(0),
                        )
                        .expect("query");
                    assert_eq!(rows, 1, "{email} answered 200 but not committed");
                    seen.push((email.clone(), Instant::now()));
                }
                drop(seen);
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            n
        })
    };

    let mut delivered = sink.deliveries().values().sum::<usize>();
    for round in 0..ROUNDS {
        let started = Instant::now();
        let before: Vec<String> = first_clicks
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, at)| *at < started)
            .map(|(e, _)| e.clone())
            .collect();
        let article = format!("articles/round-{round}.md");
        p.write(
            &article,
            &crate::harness::article(&format!("Round {round}"), "2026-11-27", true),
        );
        let run = p.run(&["send", "--article", &article]);
        run.expect_code(0);
        // Neither refused for a lock, nor kept past the list lock's 10 s bound (a send
        // that waits that long says so and leaves the file to the next writer).
        assert!(
            !run.stderr().contains("another run")
                && !run.stderr().contains("locked")
                && !run.stderr().contains("being rewritten"),
            "{}",
            run.stderr()
        );
        let edition = run
            .stdout()
            .split_whitespace()
            .nth(1)
            .expect("edition id")
            .trim_end_matches(':')
            .to_string();
        let sent = p.query(&format!(
            "SELECT email FROM delivery WHERE edition_id = '{edition}' AND state = 'sent'"
        ));
        assert!(!sent.is_empty(), "round {round}: {}", run.stdout());
        for email in &before {
            assert!(
                !sent.contains(email),
                "round {round} mailed {email}, who had unsubscribed before it began"
            );
        }
        delivered += sent.len();
        assert_eq!(sink.wait_for(delivered).values().sum::<usize>(), delivered);
    }
    stop.store(true, Ordering::SeqCst);
    let clicks = clicker.join().expect("the clicks all succeeded");
    assert!(clicks >= ROUNDS, "{clicks} clicks");
    let unsubscribed = first_clicks.lock().expect("lock").len();
    assert!(
        unsubscribed >= 2,
        "{unsubscribed} readers clicked during the sends"
    );
    // Every click reaches the file too, written by serve or by a send.
    let entries: Vec<String> = first_clicks
        .lock()
        .expect("lock")
        .iter()
        .map(|(email, _)| format!("email = \"{email}\"\nstatus = \"unsubscribed\""))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut list = p.read("subscribers.toml");
    while !entries.iter().all(|e| list.contains(e)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        list = p.read("subscribers.toml");
    }
    child.kill().expect("stop serve");
    child.wait().expect("wait");
    for entry in &entries {
        assert!(list.contains(entry), "{entry}: {list}");
    }
}
