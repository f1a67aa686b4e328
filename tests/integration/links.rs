//! `check --links` against a local HTTP server: a 404, a redirect chain, a slow host, a
//! server that refuses HEAD, and the cache that spares a second run the links that worked.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::Project;
use crate::site::{self, Reply, Request};

/// An HTTP server on 127.0.0.1 that logs each request's method and path.
struct Site {
    port: u16,
    log: Arc<Mutex<Vec<(String, String)>>>,
}

impl Site {
    fn start() -> Site {
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&log);
        let port = site::start(|port| move |request: &Request| answer(request, port, &shared));
        Site { port, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    fn requests(&self) -> Vec<(String, String)> {
        self.log.lock().expect("lock").clone()
    }
}

fn answer(request: &Request, port: u16, log: &Mutex<Vec<(String, String)>>) -> Reply {
    let (method, path) = (request.method.as_str(), request.path.as_str());
    log.lock()
        .expect("lock")
        .push((method.to_string(), path.to_string()));
    let to = |p: &str| format!("http://127.0.0.1:{port}/{p}");
    let (status, location) = match path {
        // A chain: an old address moved twice.
        "old" => (301, Some(to("moved"))),
        "moved" => (302, Some(to("final"))),
        // HEAD is not allowed here, GET works.
        "no-head" if method == "HEAD" => (405, None),
        // Far past the checks' 20-second timeout.
        "slow" => {
            std::thread::sleep(Duration::from_secs(45));
            (200, None)
        }
        "news/ok" | "photo.jpg" | "final" | "no-head" => (200, None),
        // news/gone among them.
        _ => (404, None),
    };
    let reply = Reply::new(status, "page");
    match location {
        Some(l) => reply.with_header("Location", &l),
        None => reply,
    }
}

/// One selected article whose link, image and body point at `site`.
fn project(site: &Site) -> Project {
    let p = Project::new();
    std::fs::remove_file(p.path("articles/ferry.md")).expect("rm");
    std::fs::remove_file(p.path("articles/library.md")).expect("rm");
    p.write(
        "articles/ferry.md",
        &format!(
            "+++\ntitle = \"Ferry timetable\"\ndate = 2026-11-24\nlink = \"{}\"\nsummary = \"s\"\nselected = true\n\n[image]\nurl = \"{}\"\nalt = \"A ferry\"\n+++\nSee [the old page]({}) and [the gone one]({}).\n",
            site.url("news/ok"),
            site.url("photo.jpg"),
            site.url("old"),
            site.url("news/gone"),
        ),
    );
    p.write(
        "articles/slow.md",
        &format!(
            "+++\ntitle = \"Slow host\"\ndate = 2026-11-23\nlink = \"{}\"\nsummary = \"s\"\nselected = true\n+++\nAnd [a strict server]({}).\n",
            site.url("slow"),
            site.url("no-head"),
        ),
    );
    p
}

#[test]
fn broken_links_are_listed_with_their_article_and_redirects_shown() {
    let site = Site::start();
    let p = project(&site);
    let run = p.run(&["check", "--links", "--link-timeout", "20"]);
    run.expect_code(1);
    let out = run.stdout();
    assert!(
        out.contains(&format!(
            "FAIL  404  {}  in \"Ferry timetable\"",
            site.url("news/gone")
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "FAIL  no answer in time  {}  in \"Slow host\"",
            site.url("slow")
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "moved {} -301-> {} -302-> {} (200)  in \"Ferry timetable\"",
            site.url("old"),
            site.url("moved"),
            site.url("final")
        )),
        "{out}"
    );
    // A server that refuses HEAD is asked with GET and is fine.
    assert!(!out.contains("no-head"), "{out}");
    assert!(out.contains(": 2 broken, 1 redirected"), "{out}");
    let requests = site.requests();
    assert!(
        requests.contains(&("GET".into(), "no-head".into())),
        "{requests:?}"
    );
    // Working links are asked with HEAD alone.
    assert!(
        !requests.contains(&("GET".into(), "news/ok".into())),
        "{requests:?}"
    );

    // A second run asks only what did not work; the rest comes from the cache.
    let before = site.requests().len();
    let run = p.run(&["check", "--links", "--link-timeout", "20"]);
    run.expect_code(1);
    assert!(
        run.stdout().contains("2 to check, ")
            && run.stdout().contains("known to work from an earlier check"),
        "{}",
        run.stdout()
    );
    let again: Vec<String> = site.requests()[before..]
        .iter()
        .map(|(_, path)| path.clone())
        .collect();
    assert!(
        again.iter().all(|p| p == "news/gone" || p == "slow"),
        "{again:?}"
    );
    // Nothing was sent, nothing recorded as an edition.
    assert!(p.outbox().is_empty());
}

#[test]
fn an_edition_whose_links_all_work_passes() {
    let site = Site::start();
    let p = project(&site);
    p.write(
        "articles/ferry.md",
        &format!(
            "+++\ntitle = \"Ferry timetable\"\ndate = 2026-11-24\nlink = \"{}\"\nsummary = \"s\"\nselected = true\n+++\nBody.\n",
            site.url("news/ok"),
        ),
    );
    std::fs::remove_file(p.path("articles/slow.md")).expect("rm");
    let run = p.run(&["check", "--links"]);
    run.expect_code(0);
    assert!(
        run.stdout().contains(": 0 broken, 0 redirected"),
        "{}",
        run.stdout()
    );
}
