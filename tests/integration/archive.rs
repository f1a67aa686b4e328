//! The web archive: a page per edition with no reader in it, written when the edition is
//! frozen and never rewritten; an index and an Atom feed; each message links to its page
//! and carries List-Archive.

use crate::harness::{Project, article};

/// A week after the pinned clock.
const NEXT_WEEK: &str = "1796374800";

fn project() -> Project {
    let p = Project::new();
    let config = p.read("newsletter.toml")
        + "\n[archive]\ndir = \"public\"\nurl = \"https://harbour.example/archive/\"\n\
           publish = \"mkdir -p web && cp -R \\\"$NEWSLETTER_ARCHIVE\\\"/. web/\"\n";
    p.write("newsletter.toml", &config);
    p
}

fn editions(p: &Project) -> Vec<String> {
    p.query("SELECT id FROM edition ORDER BY created_at, id")
}

#[test]
fn each_edition_gets_a_page_that_later_editions_leave_alone() {
    let p = project();
    let send = p.run(&["send"]);
    send.expect_code(0);
    let first = editions(&p)[0].clone();
    let page1 = p.path(&format!("public/{first}/index.html"));
    let html1 = std::fs::read(&page1).expect("the first edition's page");
    let text1 = String::from_utf8_lossy(&html1).to_string();
    // No reader in it: no address, no name, no unsubscribe link.
    for private in [
        "ada@example.org",
        "Hello Ada",
        "/unsubscribe/",
        "Unsubscribe",
    ] {
        assert!(!text1.contains(private), "{private} in the page");
    }
    assert!(text1.contains("Ferry timetable"), "the articles are there");
    assert!(!text1.contains("View in your browser"));
    // The publish command ran before the messages went out: the page is on the "host".
    assert_eq!(
        std::fs::read(p.path(&format!("web/{first}/index.html"))).expect("published"),
        html1
    );

    // Each message links to its page and names the archive.
    let (_, eml) = p
        .outbox()
        .into_iter()
        .find(|(n, _)| n.starts_with("ada@"))
        .expect("ada's message");
    let msg = crate::harness::parse(&eml);
    assert_eq!(
        msg.header_raw("List-Archive").map(str::trim),
        Some("<https://harbour.example/archive/>")
    );
    let link = format!("https://harbour.example/archive/{first}/");
    assert!(
        msg.body_html(0)
            .expect("html")
            .contains(&format!(" href=\"{link}\"")),
        "the view-in-browser link"
    );
    assert!(msg.body_text(0).expect("text").contains(&link));

    // A second edition a week later: its own page; the first page's bytes unchanged.
    p.write(
        "articles/wall.md",
        &article("Harbour wall repaired", "2026-12-03", true),
    );
    p.run_with_env(&["send"], &[("SOURCE_DATE_EPOCH", NEXT_WEEK)])
        .expect_code(0);
    let second = editions(&p)[1].clone();
    assert_eq!(std::fs::read(&page1).expect("page 1"), html1, "unchanged");
    let page2 = std::fs::read_to_string(p.path(&format!("public/{second}/index.html")))
        .expect("the second edition's page");
    assert!(page2.contains("Harbour wall repaired"));

    // The index links both, relatively; the feed parses, newest first.
    let index = p.read("public/index.html");
    assert!(
        index.contains(&format!("href=\"{first}/\""))
            && index.contains(&format!("href=\"{second}/\""))
    );
    assert!(!index.contains("https://") || !index.contains("<link rel=\"stylesheet\""));
    let feed = feed_rs::parser::parse(p.read("public/atom.xml").as_bytes()).expect("a valid feed");
    let links: Vec<String> = feed
        .entries
        .iter()
        .map(|e| e.links[0].href.clone())
        .collect();
    assert_eq!(
        links,
        [
            format!("https://harbour.example/archive/{second}/"),
            format!("https://harbour.example/archive/{first}/")
        ]
    );
    assert_eq!(feed.title.expect("title").content, "Harbour Weekly");

    // Written again from the state into another folder: the same pages, byte for byte.
    let run = p.run(&["archive", "--out", "rebuilt"]);
    run.expect_code(0);
    assert_eq!(run.stdout().lines().count(), 2, "{}", run.stdout());
    assert_eq!(
        std::fs::read(p.path(&format!("rebuilt/{first}/index.html"))).expect("rebuilt"),
        html1
    );
    // And into the same folder: nothing rewritten.
    let again = p.run(&["archive"]);
    assert!(
        again.stdout().lines().all(|l| l.ends_with("unchanged")),
        "{}",
        again.stdout()
    );

    // Phones and desktops: the archive pages lay out like the messages.
    crate::layout::check_html("archive-page", &page2);
    crate::layout::check_html("archive-index", &index);
}
