//! Sign-up with double opt-in through the real `serve`, driven by curl: the confirmation
//! mail reaches smtp-sink and its link is followed; only the POST confirms; the answers do
//! not tell who is subscribed; the limits hold; a kill between the confirmation and the
//! file update loses nothing; 200 concurrent confirmations leave a valid file.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{PINNED_EPOCH, Project, Sink, serve, serve_with_env};

const URL: &str = "https://harbour.example/newsletter/";

fn project(sink: &Sink, extra: &str) -> Project {
    let p = Project::new();
    p.use_loopback(sink.port, 1, "");
    let config = p.read("newsletter.toml")
        + "\n[signup]\nurl = \"https://harbour.example/newsletter/\"\ntags = [\"ferry\", \"markets\"]\norigins = [\"https://partner.example\"]\ntrusted_proxies = [\"127.0.0.1\"]\n"
        + extra;
    p.write("newsletter.toml", &config);
    p
}

fn curl_binary() -> std::path::PathBuf {
    crate::harness::installed("curl", &["/usr/bin/curl", "/usr/local/bin/curl"])
}

/// One request with curl; returns the status and the body.
fn curl(addr: &str, method: &str, path: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-S",
            "--max-time",
            "60",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
        ])
        .args(args)
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn sign_up(addr: &str, client: &str, fields: &[&str]) -> (u16, String) {
    let mut args = vec!["-H".to_string(), format!("X-Forwarded-For: {client}")];
    for f in fields {
        args.push("--data-urlencode".into());
        args.push((*f).to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(addr, "POST", "/newsletter/subscribe", &args)
}

/// The confirmation link (as a local path) in each message smtp-sink received, by address.
fn links(sink: &Sink) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for dump in sink.dumps() {
        let raw = String::from_utf8_lossy(&dump).to_string();
        let to = raw
            .lines()
            .find_map(|l| l.strip_prefix("X-Rcpt-Args: "))
            .unwrap_or("")
            .trim_matches(|c| c == '<' || c == '>')
            .to_string();
        // A dump smtp-sink is still writing does not parse yet: it is read next time.
        let text = mail_parser::MessageParser::default()
            .parse(&dump)
            .and_then(|m| m.body_text(0).map(|t| t.to_string()))
            .unwrap_or_default();
        if let Some(at) = text.find(&format!("{URL}confirm/")) {
            let link: String = text[at..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            out.push((to, link.replacen("https://harbour.example", "", 1)));
        }
    }
    out
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sign_up_confirm_and_the_first_edition() {
    let sink = Sink::start(&[]);
    let p = project(&sink, "welcome = true\n");
    let (_served, addr) = serve(&p);

    let (code, form) = curl(&addr, "GET", "/newsletter/subscribe", &[]);
    assert_eq!(code, 200);
    assert!(
        form.contains("<form method=\"post\" action=\"subscribe\">"),
        "{form}"
    );
    assert!(form.contains("name=\"email\"") && form.contains("value=\"ferry\""));
    assert!(form.contains("name=\"website\""), "the hidden field");

    let (code, page) = sign_up(
        &addr,
        "203.0.113.5",
        &[
            "email=nia.okoro@example.org",
            "name=Nia Okoro",
            "tags=ferry",
        ],
    );
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("Check your inbox"), "{page}");
    sink.wait_for(1);
    let links = links(&sink);
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].0, "nia.okoro@example.org");
    let link = &links[0].1;
    // Nothing is in the list before confirmation; GET (a link scanner) changes nothing.
    let before = p.read("subscribers.toml");
    let (code, page) = curl(&addr, "GET", link, &[]);
    assert_eq!(code, 200);
    assert!(page.contains("<form method=\"post\">"), "{page}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(p.read("subscribers.toml"), before, "GET confirms nothing");

    let (code, page) = curl(&addr, "POST", link, &[]);
    assert_eq!(code, 200);
    assert!(page.contains("You are subscribed"), "{page}");
    wait_until("the entry in the file", || {
        p.read("subscribers.toml").contains("nia.okoro@example.org")
    });
    let list = p.read("subscribers.toml");
    assert!(list.starts_with("# test list"), "comments kept");
    assert!(list.contains("name = \"Nia Okoro\""), "{list}");
    assert!(list.contains("tags = [\"ferry\"]"), "{list}");
    assert!(
        list.contains("consent = {") && list.contains("how = \"double opt-in"),
        "{list}"
    );
    assert!(
        list.contains("source = \"\"") || !list.contains("ip ="),
        "no IP unless configured: {list}"
    );
    // A second click: the same answer, nothing twice.
    let (code, _) = curl(&addr, "POST", link, &[]);
    assert_eq!(code, 200);
    assert_eq!(
        sink.wait_for(2).get("nia.okoro@example.org"),
        Some(&2),
        "confirmation and welcome"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(p.read("subscribers.toml").matches("nia.okoro@").count(), 1);

    // The first edition goes to the new reader.
    p.run(&["send"]).expect_code(0);
    assert_eq!(sink.wait_for(6).get("nia.okoro@example.org"), Some(&3));
    p.run(&["check"]).expect_code(0);
}

#[test]
fn the_form_tells_nobody_who_is_subscribed_and_holds_its_limits() {
    let sink = Sink::start(&[]);
    let p = project(&sink, "per_client_per_hour = 10\n");
    let (_served, addr) = serve(&p);
    let sent_page = |page: &str| page.contains("Check your inbox");

    // Already subscribed, a robot, a new address: one answer, one message.
    let (a, subscribed) = sign_up(&addr, "198.51.100.1", &["email=ada@example.org"]);
    let (b, robot) = sign_up(
        &addr,
        "198.51.100.2",
        &["email=robot@example.net", "website=http://spam.example"],
    );
    let (c, new) = sign_up(&addr, "198.51.100.3", &["email=zoe@example.net"]);
    assert_eq!((a, b, c), (200, 200, 200));
    assert!(sent_page(&subscribed) && sent_page(&robot) && sent_page(&new));
    assert_eq!(
        subscribed.replace("ada@example.org", "X"),
        new.replace("zoe@example.net", "X"),
        "the same page whoever asks"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        sink.deliveries().keys().collect::<Vec<_>>(),
        ["zoe@example.net"]
    );

    // Per address: three confirmations a day, whoever asks.
    for i in 0..4 {
        let (code, page) = sign_up(
            &addr,
            &format!("198.51.100.{}", 10 + i),
            &["email=zoe@example.net"],
        );
        assert!(code == 200 && sent_page(&page));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        sink.deliveries().get("zoe@example.net"),
        Some(&3),
        "3 a day"
    );

    // Per client (behind the trusted proxy: X-Forwarded-For names it): 10 an hour.
    let mut codes = Vec::new();
    for i in 0..11 {
        codes.push(sign_up(&addr, "192.0.2.77", &[&format!("email=c{i}@example.com")]).0);
    }
    assert_eq!(codes[..10], [200; 10]);
    assert_eq!(codes[10], 429, "the 11th from one client");
    assert_eq!(
        sign_up(&addr, "192.0.2.78", &["email=d@example.com"]).0,
        200,
        "another client"
    );

    // Origins, sizes, fields.
    let origin = |o: &str| {
        curl(
            &addr,
            "POST",
            "/newsletter/subscribe",
            &[
                "-H",
                &format!("Origin: {o}"),
                "-H",
                "X-Forwarded-For: 192.0.2.90",
                "--data",
                "email=o@example.com",
            ],
        )
        .0
    };
    assert_eq!(origin("https://evil.example"), 403);
    assert_eq!(origin("https://partner.example"), 200);
    assert_eq!(
        origin("https://harbour.example"),
        200,
        "the form's own origin"
    );
    let big = format!("email=x@example.com&name={}", "a".repeat(9000));
    assert_eq!(
        curl(&addr, "POST", "/newsletter/subscribe", &["--data", &big]).0,
        413
    );
    let long = format!("name={}", "n".repeat(201));
    assert_eq!(
        sign_up(&addr, "192.0.2.91", &["email=l@example.com", &long]).0,
        400
    );
    assert_eq!(
        sign_up(&addr, "192.0.2.92", &["email=t@example.com", "tags=secret"]).0,
        400,
        "a tag not offered"
    );
    assert_eq!(
        sign_up(&addr, "192.0.2.93", &["email=not an address"]).0,
        400
    );
    let (code, json) = curl(
        &addr,
        "POST",
        "/newsletter/subscribe",
        &[
            "-H",
            "Content-Type: application/json",
            "-H",
            "X-Forwarded-For: 192.0.2.94",
            "--data",
            "{\"email\":\"j@example.com\",\"tags\":[\"markets\"]}",
        ],
    );
    assert_eq!(
        (code, json.as_str()),
        (202, "{\"status\":\"check-your-inbox\"}")
    );

    // Nothing about an unconfirmed address but its pending record.
    assert!(!p.read("subscribers.toml").contains("zoe@"));
    let pending = p.query("SELECT count(*) FROM signup_pending");
    assert_eq!(pending, ["14"], "zoe; c0-c9 and d; o (twice); j");
}

#[test]
fn an_expired_link_confirms_nothing_and_its_record_is_pruned() {
    let sink = Sink::start(&[]);
    let p = project(&sink, "expire_hours = 1\n");
    let (served, addr) = serve(&p);
    sign_up(&addr, "203.0.113.9", &["email=late@example.org"]);
    sink.wait_for(1);
    let link = links(&sink)[0].1.clone();
    drop(served);
    // Two hours later.
    let later = (PINNED_EPOCH.parse::<u64>().expect("epoch") + 7200).to_string();
    let (_served, addr) = serve_with_env(&p, &[], &[("SOURCE_DATE_EPOCH", &later)]);
    let (code, page) = curl(&addr, "POST", &link, &[]);
    assert_eq!(code, 400);
    assert!(page.contains("This link has expired"), "{page}");
    sign_up(&addr, "203.0.113.10", &["email=other@example.org"]);
    assert_eq!(
        p.query("SELECT email FROM signup_pending"),
        ["other@example.org"],
        "pruned"
    );
    assert!(!p.read("subscribers.toml").contains("late@"));
}

#[test]
fn a_kill_between_the_confirmation_and_the_file_loses_nothing() {
    let sink = Sink::start(&[]);
    let p = project(&sink, "record_ip = true\n");
    let (mut served, addr) = serve(&p);
    sign_up(
        &addr,
        "203.0.113.20",
        &["email=kept@example.org", "tags=markets"],
    );
    sink.wait_for(1);
    let link = links(&sink)[0].1.clone();
    // Another writer holds the list: the confirmation is recorded, the file waits.
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(p.path("newsletter.db.list-lock"))
        .expect("list lock");
    lock.try_lock().expect("take the list lock");
    let (code, _) = curl(&addr, "POST", &link, &[]);
    assert_eq!(code, 200);
    served.kill().expect("kill -9");
    served.wait().expect("wait");
    assert!(
        !p.read("subscribers.toml").contains("kept@"),
        "not written yet"
    );
    drop(lock);
    let (_served, _) = serve(&p);
    wait_until("the recorded confirmation in the file", || {
        p.read("subscribers.toml").contains("kept@example.org")
    });
    let list = p.read("subscribers.toml");
    assert!(list.contains("tags = [\"markets\"]"));
    assert!(
        list.contains("ip = \"203.0.113.20\""),
        "record_ip keeps the client's address: {list}"
    );
}

#[test]
fn two_hundred_concurrent_confirmations_leave_a_valid_file() {
    let sink = Sink::start(&[]);
    let p = project(&sink, "");
    let (_served, addr) = serve(&p);
    let n = 200;
    for i in 0..n {
        let (code, _) = sign_up(
            &addr,
            &format!("10.{}.{}.1", i / 250, i % 250),
            &[&format!("email=reader{i}@example.net")],
        );
        assert_eq!(code, 200);
    }
    let deadline = Instant::now() + Duration::from_mins(1);
    while links(&sink).len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let links = links(&sink);
    assert_eq!(links.len(), n);
    // One curl, 50 requests at a time, each from its own client address.
    let mut args = vec![
        "-s".to_string(),
        "--parallel".into(),
        "--parallel-max".into(),
        "50".into(),
    ];
    for (i, (_, link)) in links.iter().enumerate() {
        if i > 0 {
            // Options apply to the URLs after them: each request gets its own header.
            args.push("--next".into());
        }
        args.extend([
            "-X".into(),
            "POST".into(),
            "-H".into(),
            format!("X-Forwarded-For: 172.16.{}.{}", i / 250, i % 250),
            "-o".into(),
            "/dev/null".into(),
            "-w".into(),
            "%{http_code}\n".into(),
            format!("http://{addr}{link}"),
        ]);
    }
    let out = Command::new(curl_binary())
        .args(&args)
        .output()
        .expect("curl");
    let codes = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(codes.lines().filter(|c| *c == "200").count(), n, "{codes}");
    wait_until("all 200 in the file", || {
        (0..n).all(|i| {
            p.read("subscribers.toml")
                .contains(&format!("\"reader{i}@example.net\""))
        })
    });
    let list = p.read("subscribers.toml");
    assert!(list.starts_with("# test list"));
    p.run(&["check"]).expect_code(0);
    for i in 0..n {
        assert_eq!(
            list.matches(&format!("\"reader{i}@example.net\"")).count(),
            1
        );
    }
}

#[test]
fn the_preference_page_changes_topics_or_leaves_and_get_changes_nothing() {
    let sink = Sink::start(&[]);
    let p = project(&sink, "");
    let config = p.read("newsletter.toml").replace(
        "mailto = \"unsubscribe@harbour.example\"\n",
        "mailto = \"unsubscribe@harbour.example\"\nmanage_url = \"https://harbour.example/manage/{token}\"\n",
    );
    p.write("newsletter.toml", &config);
    p.run(&["send"]).expect_code(0);
    sink.wait_for(3);
    let ada = sink
        .dumps()
        .into_iter()
        .find(|d| String::from_utf8_lossy(d).contains("X-Rcpt-Args: <ada@example.org>"))
        .expect("ada's message");
    let msg = crate::harness::parse(&ada);
    let html = msg.body_html(0).expect("html").to_string();
    let text = msg.body_text(0).expect("text").to_string();
    assert!(html.contains(">Choose your topics</a>"), "{html}");
    let at = text
        .find("https://harbour.example/manage/")
        .expect("the link in the text part");
    let link: String = text[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    assert!(html.contains(&link), "the same link in both parts");
    let path = link.replacen("https://harbour.example", "", 1);

    let (_served, addr) = serve(&p);
    let before = p.read("subscribers.toml");
    let (code, page) = curl(&addr, "GET", &path, &[]);
    assert_eq!(code, 200);
    assert!(
        page.contains("value=\"ferry\"") && page.contains("value=\"markets\""),
        "{page}"
    );
    assert!(page.contains("name=\"action\" value=\"leave\""));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(p.read("subscribers.toml"), before, "GET changes nothing");

    let (code, page) = curl(
        &addr,
        "POST",
        &path,
        &["--data", "action=save&tags=markets&tags=secret"],
    );
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("Your choices are saved"));
    wait_until("the topics in the file", || {
        p.read("subscribers.toml").contains("tags = [\"markets\"]")
    });
    let (_, page) = curl(&addr, "GET", &path, &[]);
    assert!(page.contains("value=\"markets\" checked"), "{page}");

    let (code, page) = curl(&addr, "POST", &path, &["--data", "action=leave"]);
    assert_eq!(code, 200);
    assert!(page.contains("You are unsubscribed"), "{page}");
    assert_eq!(
        p.query("SELECT source FROM unsubscribed WHERE email = 'ada@example.org'"),
        ["preference page"]
    );
    wait_until("the status in the file", || {
        let list: toml::Table = toml::from_str(&p.read("subscribers.toml")).expect("toml");
        list["subscriber"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| {
                e["email"].as_str() == Some("ada@example.org")
                    && e["status"].as_str() == Some("unsubscribed")
            })
    });

    // A forged token, or an unsubscribe token in its place: nothing.
    let forged = path.replace('.', ".x");
    assert_eq!(
        curl(&addr, "POST", &forged, &["--data", "action=leave"]).0,
        400
    );
    let unsubscribe =
        crate::harness::unsubscribe_path(&ada).replacen("/unsubscribe/", "/manage/", 1);
    assert_eq!(
        curl(&addr, "GET", &unsubscribe, &[]).0,
        400,
        "tokens serve one purpose"
    );
}

/// Runs the browser driver: the page the browser ends up on (URL, then HTML).
fn browse(url: &str, steps: &str) -> (String, String) {
    let python = crate::harness::python_with("cdp", &["websocket-client==1.8.0"]);
    let chromium = crate::harness::installed(
        "chromium",
        &["/usr/bin/chromium", "/usr/lib/chromium/chromium"],
    );
    let script = format!("{}/tests/browser/forms.py", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python)
        .arg(script)
        .arg(chromium)
        .arg(url)
        .arg(steps)
        .output()
        .expect("run the browser driver");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
    (first.to_string(), rest.to_string())
}

#[test]
fn the_forms_work_in_chromium_with_javascript_off() {
    let sink = Sink::start(&[]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let here = format!("http://127.0.0.1:{port}");
    let p = project(&sink, "");
    let config = p
        .read("newsletter.toml")
        .replace("origins = [\"https://partner.example\"]", &format!("origins = [\"{here}\"]"))
        .replace(
            "mailto = \"unsubscribe@harbour.example\"\n",
            "mailto = \"unsubscribe@harbour.example\"\nmanage_url = \"https://harbour.example/manage/{token}\"\n",
        );
    p.write("newsletter.toml", &config);
    let mut child = p
        .command(&["serve", "--listen", &format!("127.0.0.1:{port}")], &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The sign-up form: typed into and submitted as a reader does.
    let (url, page) = browse(
        &format!("{here}/newsletter/subscribe"),
        r##"[["type", "#email", "bea.browser@example.org"], ["type", "#name", "Bea Browser"], ["uncheck", "#tag1"], ["click", "button[type=submit]"]]"##,
    );
    assert_eq!(url, format!("{here}/newsletter/subscribe"));
    assert!(page.contains("Check your inbox"), "{page}");
    sink.wait_for(1);
    let link = links(&sink)[0].1.clone();

    // The confirmation page: the button confirms.
    let (_, page) = browse(&format!("{here}{link}"), r#"[["click", "button"]]"#);
    assert!(page.contains("You are subscribed"), "{page}");
    wait_until("the entry", || {
        p.read("subscribers.toml")
            .contains("bea.browser@example.org")
    });
    let list = p.read("subscribers.toml");
    assert!(
        list.contains("name = \"Bea Browser\"") && list.contains("tags = [\"ferry\"]"),
        "{list}"
    );
    assert!(list.contains(&format!("source = \"{here}\"")), "{list}");

    // The preference page: tick markets, untick ferry, save.
    let token_page = {
        let manage_link = |email: &str| {
            p.run(&["send"]).expect_code(0);
            sink.wait_for(6);
            let dump = sink
                .dumps()
                .into_iter()
                .find(|d| {
                    let t = String::from_utf8_lossy(d);
                    t.contains(&format!("X-Rcpt-Args: <{email}>")) && t.contains("manage/")
                })
                .expect("the edition");
            let text = crate::harness::parse(&dump)
                .body_text(0)
                .expect("text")
                .to_string();
            let at = text
                .find("https://harbour.example/manage/")
                .expect("manage link");
            text[at..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect::<String>()
        };
        manage_link("bea.browser@example.org").replacen("https://harbour.example", &here, 1)
    };
    let (_, page) = browse(
        &token_page,
        r#"[["check", "input[value=markets]"], ["uncheck", "input[value=ferry]"], ["click", "button[type=submit]"]]"#,
    );
    assert!(page.contains("Your choices are saved"), "{page}");
    wait_until("the topics", || {
        p.read("subscribers.toml").contains("tags = [\"markets\"]")
    });
    child.kill().expect("stop serve");
    child.wait().expect("wait");
}
