//! What readers see: escaping in the HTML part, and byte-exact snapshots of the HTML, the
//! text and the whole `.eml` under a pinned clock.

use crate::harness::{Project, parse};

#[test]
fn markup_in_titles_and_names_is_escaped_in_html_and_kept_in_text() {
    let p = Project::new();
    p.write(
        "articles/ferry.md",
        &crate::harness::article(
            "Tides <script>alert('x')</script> & more",
            "2026-11-24",
            true,
        ),
    );
    p.write(
        "subscribers.toml",
        "[[subscriber]]\nemail = \"mal@example.org\"\nname = \"Mal <script>steal()</script>\"\nstatus = \"subscribed\"\n",
    );
    let run = p.run(&["preview", "--out", "pv"]);
    run.expect_code(0);
    let eml = run.stdout().lines().next().expect("eml path").to_string();
    let bytes = std::fs::read(p.path(&eml)).expect("eml");
    let msg = parse(&bytes);
    let html = msg.body_html(0).expect("html part");
    let text = msg.body_text(0).expect("text part");
    assert!(
        !html.contains("<script>"),
        "unescaped markup in HTML:\n{html}"
    );
    assert!(
        html.contains("Tides &lt;script&gt;alert('x')&lt;/script&gt; &amp; more"),
        "{html}"
    );
    assert!(
        html.contains("Mal &lt;script&gt;steal()&lt;/script&gt;"),
        "{html}"
    );
    assert!(
        text.contains("Tides <script>alert('x')</script> & more"),
        "{text}"
    );
    assert!(
        text.contains("Hello Mal <script>steal()</script>,"),
        "{text}"
    );
}

#[test]
fn the_rendered_message_matches_its_snapshots() {
    let p = Project::new();
    let run = p.run(&["preview", "--to", "ada@example.org", "--out", "pv"]);
    run.expect_code(0);
    let paths: Vec<String> = run.stdout().lines().map(str::to_string).collect();
    let [eml, html, txt] = paths.as_slice() else {
        panic!("expected three files, got {paths:?}")
    };
    insta::assert_snapshot!("digest.html", p.read(html));
    insta::assert_snapshot!("digest.txt", p.read(txt));
    insta::assert_snapshot!("message.eml", p.read(eml));
}

/// The inbox preview line: an article's `preheader`, else the config's, else the lead
/// article's summary; hidden in the HTML part.
#[test]
fn the_preheader_comes_from_the_edition_the_config_or_the_lead_summary() {
    let hidden = |p: &Project| -> String {
        let run = p.run(&["preview", "--to", "ada@example.org", "--out", "pv"]);
        run.expect_code(0);
        let html = p.read(run.stdout().lines().nth(1).expect("html"));
        let start = html
            .find("<div style=\"display:none;")
            .expect("a hidden preheader");
        let text = &html[start..];
        text[text.find('>').expect("tag") + 1..]
            .split('\u{34f}')
            .next()
            .expect("text")
            .to_string()
    };
    let p = Project::new();
    assert_eq!(hidden(&p), "A short summary.");
    let config = p.read("newsletter.toml").replace(
        "list_id = \"weekly.harbour.example\"",
        "list_id = \"weekly.harbour.example\"\npreheader = \"From the config\"",
    );
    p.write("newsletter.toml", &config);
    assert_eq!(hidden(&p), "From the config");
    let article = p.read("articles/library.md").replacen(
        "+++\n",
        "+++\npreheader = \"The library is back\"\n",
        1,
    );
    p.write("articles/library.md", &article);
    assert_eq!(hidden(&p), "The library is back");
}

#[test]
fn a_template_that_fails_as_it_renders_leaves_no_edition_and_its_fix_is_used_next() {
    let p = Project::new();
    // Names only known values, so it loads; `round` wants a number, so it fails to render.
    p.write("templates/subject.txt", "{{ newsletter.name | round }}\n");
    let run = p.run(&["send"]);
    assert_ne!(run.code(), 0);
    assert!(run.stderr().contains("subject.txt"), "{}", run.stderr());
    assert!(p.outbox().is_empty(), "nothing sent");
    assert_eq!(
        p.editions(),
        0,
        "the edition frozen while the messages rendered is removed"
    );

    p.write("templates/subject.txt", "Fixed: {{ newsletter.name }}\n");
    p.run(&["send"]).expect_code(0);
    let (_, bytes) = p.outbox().into_iter().next().expect("a message");
    let msg = parse(&bytes);
    let subject = msg.subject().unwrap_or_default();
    assert!(subject.starts_with("Fixed: "), "{subject}");
}
