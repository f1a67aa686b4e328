//! Feeds over HTTP from a local server (real-world-shaped RSS, Atom and JSON Feed fixtures,
//! conditional GET, a broken feed, a slow one, an oversized one), explained selection
//! across runs, audiences, and `init` followed by `preview`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{Project, parse};
use crate::site::{self, Reply, Request};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/feeds");

/// A feed server on 127.0.0.1; remembers each request's path and the status it answered.
struct FeedServer {
    port: u16,
    log: Arc<Mutex<Vec<(String, u16)>>>,
}

impl FeedServer {
    fn start() -> FeedServer {
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&log);
        let port = site::start(|_| move |request: &Request| answer(request, &shared));
        FeedServer { port, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    fn statuses(&self, path: &str) -> Vec<u16> {
        self.log
            .lock()
            .expect("lock")
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, s)| *s)
            .collect()
    }
}

/// Requests for `pair-*.xml` that have arrived: each of them is answered only once both are
/// in, so a client that fetches one feed after the other times out on the first.
static PAIR: (Mutex<usize>, std::sync::Condvar) = (Mutex::new(0), std::sync::Condvar::new());

fn wait_for_the_pair() -> bool {
    let (arrived, both) = &PAIR;
    let mut n = arrived.lock().expect("lock");
    *n += 1;
    both.notify_all();
    let (n, _) = both
        .wait_timeout_while(n, Duration::from_secs(3), |n| *n < 2)
        .expect("wait");
    *n >= 2
}

fn answer(request: &Request, log: &Mutex<Vec<(String, u16)>>) -> Reply {
    let path = request.path.clone();
    let header = |name: &str| request.header(name);
    let fixture = |name: &str| std::fs::read(Path::new(FIXTURES).join(name)).expect("fixture");
    let h = |k: &str, v: &str| (k.to_string(), v.to_string());
    let (status, body, headers): (u16, Vec<u8>, Vec<(String, String)>) = match path.as_str() {
        // ETag validation.
        "rss.xml" if header("If-None-Match").as_deref() == Some("\"gazette-v1\"") => {
            (304, vec![], vec![])
        }
        "rss.xml" => (
            200,
            fixture("rss.xml"),
            vec![
                h("Content-Type", "application/rss+xml"),
                h("ETag", "\"gazette-v1\""),
            ],
        ),
        // Last-Modified validation.
        "atom.xml" if header("If-Modified-Since").is_some() => (304, vec![], vec![]),
        "atom.xml" => (
            200,
            fixture("atom.xml"),
            vec![
                h("Content-Type", "application/atom+xml"),
                h("Last-Modified", "Thu, 26 Nov 2026 12:00:00 GMT"),
            ],
        ),
        "feed.json" => (
            200,
            fixture("feed.json"),
            vec![h("Content-Type", "application/feed+json")],
        ),
        "pair-a.xml" | "pair-b.xml" if wait_for_the_pair() => (200, fixture("rss.xml"), vec![]),
        "pair-a.xml" | "pair-b.xml" => (503, vec![], vec![]),
        "broken.xml" => (200, b"<rss><channel><item><title>cut off".to_vec(), vec![]),
        "slow.xml" => {
            std::thread::sleep(Duration::from_secs(3));
            (200, fixture("rss.xml"), vec![])
        }
        "big.xml" => {
            let mut body = b"<rss version=\"2.0\"><channel><title>big</title>".to_vec();
            body.extend(std::iter::repeat_n(b' ', 300_000));
            body.extend(b"</channel></rss>");
            (200, body, vec![])
        }
        _ => (404, b"not found".to_vec(), vec![]),
    };
    log.lock().expect("lock").push((path, status));
    headers
        .iter()
        .fold(Reply::new(status, body), |reply, (name, value)| {
            reply.with_header(name, value)
        })
}

/// Appends `[[sources]]` entries to the project's config.
fn add_sources(p: &Project, toml: &str) {
    p.write("newsletter.toml", &(p.read("newsletter.toml") + toml));
}

/// The line `check` or `--explain` prints for the source `name`.
fn source_line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("source {name} ")))
        .unwrap_or_else(|| panic!("no line for source {name} in:\n{out}"))
}

fn sources(server: &FeedServer) -> String {
    let mut out = String::new();
    for (name, path, extra) in [
        ("gazette", "rss.xml", ""),
        ("council", "atom.xml", "include_content = true\n"),
        ("photos", "feed.json", ""),
        ("broken", "broken.xml", ""),
        ("slow", "slow.xml", "timeout_seconds = 0.5\n"),
        ("big", "big.xml", "max_bytes = 100000\n"),
    ] {
        out = format!(
            "{out}\n[[sources]]\nname = \"{name}\"\nurl = \"{}\"\n{extra}",
            server.url(path)
        );
    }
    out
}

#[test]
fn an_edition_from_feeds_and_markdown_shows_each_article_once_and_explains_why() {
    let server = FeedServer::start();
    let p = Project::new();
    add_sources(&p, &sources(&server));

    let check = p.run(&["check"]);
    check.expect_code(0);
    let out = check.stdout();
    // The three good sources worked, the three bad ones are named with their reason.
    for (name, items) in [("gazette", 3), ("council", 2), ("photos", 2)] {
        let line = source_line(&out, name);
        assert!(
            line.ends_with(&format!(": {items} items (fetched)")),
            "{line}"
        );
    }
    for (name, why) in [
        ("broken", "not a feed"),
        ("slow", "timed out"),
        ("big", "larger than the limit of 100000 bytes"),
    ] {
        let line = source_line(&out, name);
        assert!(
            line.contains("FAILED") && line.to_lowercase().contains(why),
            "{line}"
        );
    }
    // Every candidate with its verdict.
    for expected in [
        "in   2026-11-25  gazette          \"Fish market moves to the north pier\": published since 2026-11-20 (the first edition with gazette takes the last 7 days)",
        "out  2026-11-25  council          \"Fish market moves to the north pier\": duplicate of gazette-",
        "out  2026-10-01  gazette          \"Old news from October\": published 2026-10-01, before 2026-11-20",
        "in   2026-11-26  council          \"Budget vote & what it means\"",
        "in   2026-11-24  articles         \"Ferry timetable\": selected in its front matter",
        "in   2026-11-24  photos           \"Frost on the nets\"",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }

    let preview = p.run(&[
        "preview",
        "--explain",
        "--to",
        "ada@example.org",
        "--out",
        "pv",
    ]);
    preview.expect_code(0);
    assert!(preview.stdout().contains("duplicate of gazette-"));
    let eml = std::fs::read_dir(p.path("pv"))
        .expect("preview dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "eml"))
        .expect("an .eml");
    let bytes = std::fs::read(eml).expect("eml");
    let message = parse(&bytes);
    let html = message.body_html(0).expect("html").to_string();
    let text = message.body_text(0).expect("text").to_string();
    for title in [
        "Fish market moves to the north pier",
        "Lifeboat crew trains at night",
        "Frost on the nets",
        "Regatta in the rain",
        "Ferry timetable",
        "Library reopens",
    ] {
        // Once as a headline (the photo's alt text may repeat it).
        assert_eq!(
            text.lines().filter(|l| l.trim() == title).count(),
            1,
            "{title} in:\n{text}"
        );
    }
    assert!(!text.contains("Old news from October"));
    // Feed HTML reaches the template sanitized; the enclosure is the photo.
    assert!(html.contains("<strong>9 to 4</strong>"), "{html}");
    for bad in ["<script", "onclick", "<iframe", "tracker.example"] {
        assert!(!html.contains(bad), "{bad} survived:\n{html}");
    }
    assert!(html.contains("https://gazette.harbour.example/img/north-pier.jpg"));
    assert!(html.contains("The crew launching from the slipway."));
    assert!(
        html.contains("https://photos.harbour.example/img/frost.jpg"),
        "JSON Feed image"
    );

    // Later fetches (the preview's, this check's) ask with the validators and get 304 for
    // both validated feeds; the JSON feed has no validators and comes in full each time.
    let again = p.run(&["check"]);
    again.expect_code(0);
    let out = again.stdout();
    for (name, items) in [("gazette", 3), ("council", 2)] {
        let line = source_line(&out, name);
        assert!(
            line.ends_with(&format!(": {items} items (not modified)")),
            "{line}"
        );
    }
    assert_eq!(server.statuses("rss.xml"), [200, 304, 304]);
    assert_eq!(server.statuses("atom.xml"), [200, 304, 304]);
    assert_eq!(server.statuses("feed.json"), [200, 200, 200]);
}

#[test]
fn sources_are_fetched_at_the_same_time() {
    let server = FeedServer::start();
    let p = Project::new();
    for name in ["pair-a", "pair-b"] {
        add_sources(
            &p,
            &format!(
                "\n[[sources]]\nname = \"{name}\"\nurl = \"{}\"\ntimeout_seconds = 2\n",
                server.url(&format!("{name}.xml"))
            ),
        );
    }
    let check = p.run(&["check"]);
    check.expect_code(0);
    // Each answer waits for the other request: one after the other, the first times out.
    assert!(!check.stdout().contains("FAILED"), "{}", check.stdout());
    assert_eq!(server.statuses("pair-a.xml"), [200]);
    assert_eq!(server.statuses("pair-b.xml"), [200]);
}

#[test]
fn https_feeds_are_verified() {
    let server = FeedServer::start();
    let p = Project::new();
    let port = crate::harness::tls_front(server.port, &p.path("tls"));
    let url = format!("https://localhost:{port}/rss.xml");
    // The same feed twice: trusted through ca_file, and without it (the test CA is in no
    // public root store, so the handshake must fail).
    add_sources(
        &p,
        &format!(
            "\n[[sources]]\nname = \"trusted\"\nurl = \"{url}\"\nca_file = \"tls/ca.pem\"\n\n[[sources]]\nname = \"untrusted\"\nurl = \"{url}\"\n"
        ),
    );
    let check = p.run(&["check"]);
    check.expect_code(0);
    let out = check.stdout();
    let trusted = source_line(&out, "trusted");
    assert!(trusted.ends_with(": 3 items (fetched)"), "{trusted}");
    let line = source_line(&out, "untrusted");
    assert!(
        line.contains("FAILED") && line.to_lowercase().contains("certificate"),
        "{line}"
    );
    assert_eq!(
        server.statuses("rss.xml"),
        [200],
        "only the trusted fetch reached the server"
    );
}

fn rss(items: &[(&str, &str)]) -> String {
    let body: String = items
        .iter()
        .map(|(id, date)| {
            format!(
                "<item><title>Item {id}</title><link>https://site.example/{id}</link><guid>{id}</guid><pubDate>{date}</pubDate><description>About {id}.</description></item>"
            )
        })
        .collect();
    format!(
        "<rss version=\"2.0\"><channel><title>Site</title><link>https://site.example/</link>{body}</channel></rss>"
    )
}

/// Titles of the articles in the edition sent to ada, from the outbox.
fn sent_titles(p: &Project, edition_prefix: &str) -> Vec<String> {
    let bytes = editions(p)
        .into_iter()
        .find(|e| e.starts_with(edition_prefix))
        .and_then(|e| std::fs::read(p.path("outbox").join(e).join("ada@example.org.eml")).ok())
        .unwrap_or_else(|| panic!("no message of {edition_prefix} for ada"));
    let text = parse(&bytes).body_text(0).expect("text").to_string();
    let mut titles: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Item ").map(|t| format!("Item {t}")))
        .collect();
    titles.sort();
    titles.dedup();
    titles
}

/// The edition folders in the outbox.
fn editions(p: &Project) -> Vec<String> {
    std::fs::read_dir(p.path("outbox"))
        .map(|d| {
            d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn two_runs_repeat_nothing_and_skip_nothing() {
    let p = Project::new();
    // Feeds only: no Markdown articles.
    std::fs::remove_dir_all(p.path("articles")).expect("rm articles");
    // `late` is missing for the first edition: its items must not be skipped later.
    add_sources(
        &p,
        "\n[[sources]]\nname = \"site\"\npath = \"feed.xml\"\n\n[[sources]]\nname = \"late\"\npath = \"late.xml\"\n",
    );
    p.write(
        "feed.xml",
        &rss(&[
            ("a", "Fri, 20 Nov 2026 10:00:00 +0000"),
            ("b", "Tue, 24 Nov 2026 10:00:00 +0000"),
            ("old", "Mon, 02 Nov 2026 10:00:00 +0000"),
        ]),
    );
    // 2026-11-27: the first edition takes the last 7 days.
    let first = p.run(&["send"]);
    first.expect_code(0);
    assert!(first.stderr().contains("source late"), "{}", first.stderr());
    assert_eq!(sent_titles(&p, "2026-11-27"), ["Item a", "Item b"]);

    // Later that day an item dated the same day appears, and one three days later.
    p.write(
        "feed.xml",
        &rss(&[
            ("a", "Fri, 20 Nov 2026 10:00:00 +0000"),
            ("b", "Tue, 24 Nov 2026 10:00:00 +0000"),
            ("c", "Fri, 27 Nov 2026 16:00:00 +0000"),
            ("d", "Mon, 30 Nov 2026 08:00:00 +0000"),
        ]),
    );
    p.write(
        "late.xml",
        &rss(&[("e", "Sun, 22 Nov 2026 10:00:00 +0000")]),
    );
    // 2026-12-04 09:00 UTC.
    let week_later = [("SOURCE_DATE_EPOCH", "1796374800")];
    let explain = p.run_with_env(&["preview", "--explain", "--out", "pv"], &week_later);
    explain.expect_code(0);
    let out = explain.stdout();
    assert!(
        out.contains("\"Item a\": already in an earlier edition"),
        "{out}"
    );
    assert!(
        out.contains("\"Item c\": published since 2026-11-27 (the last edition that read site)"),
        "{out}"
    );
    assert!(
        out.contains(
            "\"Item e\": published since 2026-11-20 (late failed for the edition of 2026-11-27"
        ),
        "{out}"
    );
    p.run_with_env(&["send"], &week_later).expect_code(0);
    assert_eq!(
        sent_titles(&p, "2026-12-04"),
        ["Item c", "Item d", "Item e"]
    );

    // Nothing new: nothing is mailed.
    let run = p.run_with_env(&["send"], &[("SOURCE_DATE_EPOCH", "1796979600")]);
    run.expect_code(6);
    assert_eq!(editions(&p).len(), 2, "{:?}", editions(&p));
}

#[test]
fn nothing_new_while_a_source_is_down_is_a_failure() {
    let p = Project::new();
    std::fs::remove_dir_all(p.path("articles")).expect("rm articles");
    add_sources(
        &p,
        "\n[[sources]]\nname = \"site\"\npath = \"missing.xml\"\n",
    );
    let run = p.run(&["send"]);
    run.expect_code(1);
    assert!(run.stderr().contains("site"), "{}", run.stderr());
    assert!(editions(&p).is_empty());
}

#[test]
fn an_audience_tag_restricts_the_recipients() {
    let p = Project::new();
    p.write(
        "subscribers.toml",
        "[[subscriber]]\nemail = \"ada@example.org\"\nstatus = \"subscribed\"\ntags = [\"ferries\"]\n\n[[subscriber]]\nemail = \"bob@example.net\"\nstatus = \"subscribed\"\n",
    );
    p.run(&["send", "--tag", "ferries"]).expect_code(0);
    let to: Vec<String> = p.outbox().into_iter().map(|(name, _)| name).collect();
    assert_eq!(to.len(), 1, "{to:?}");
    assert!(to[0].contains("ada@example.org"), "{to:?}");
}

#[test]
fn init_then_preview_works_and_init_never_overwrites() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = dir.path().join("weekly");
    let bin = env!("CARGO_BIN_EXE_newsletter");
    let run = |args: &[&str]| {
        crate::harness::Run(
            std::process::Command::new(bin)
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("run"),
        )
    };
    run(&["init", "weekly", "--templates"]).expect_code(0);
    assert!(project.join("templates/digest.html").is_file());
    let config = project.join("newsletter.toml");
    let preview = run(&[
        "--config",
        config.to_str().expect("utf-8"),
        "preview",
        "--out",
        "out",
    ]);
    preview.expect_code(0);
    let files: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .expect("out")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    let text = std::fs::read_to_string(
        dir.path()
            .join("out")
            .join(files.iter().find(|f| f.ends_with(".txt")).expect("txt")),
    )
    .expect("text");
    assert!(text.contains("Welcome to the first edition"), "{text}");

    std::fs::write(project.join("subscribers.toml"), "# mine\n").expect("edit");
    let again = run(&["init", "weekly"]);
    again.expect_code(3);
    assert!(again.stderr().contains("already exists"));
    assert_eq!(
        std::fs::read_to_string(project.join("subscribers.toml")).expect("read"),
        "# mine\n"
    );
}

#[test]
fn completions_and_man_page() {
    let bin = env!("CARGO_BIN_EXE_newsletter");
    let out = std::process::Command::new(bin)
        .args(["completions", "bash"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(script.contains("_newsletter") && script.contains("--resend-in-doubt"));
    let man = std::process::Command::new(bin)
        .arg("man")
        .output()
        .expect("run");
    assert!(man.status.success());
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(
        page.contains(".TH newsletter") && page.contains("preview"),
        "{page}"
    );
}
