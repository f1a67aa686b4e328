//! The outbox transport, previews and article selection across editions (state in `SQLite`).

use crate::harness::{Project, parse};

#[test]
fn send_writes_one_message_per_subscribed_address_and_records_the_edition() {
    let p = Project::new();
    let run = p.run(&["send"]);
    run.expect_code(0);
    let names: Vec<String> = p.outbox().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "ada@example.org.eml",
            "bob@example.net.eml",
            "cy@example.com.eml"
        ]
    );
    assert!(run.stdout().contains("sent 3 of 3"), "{}", run.stdout());
    assert!(p.path("newsletter.db").exists());

    // The same day, a rerun finds today's edition complete and opens nothing.
    let again = p.run(&["send"]);
    again.expect_code(0);
    assert!(
        again.stdout().contains("already sent to 3 recipients"),
        "{}",
        again.stdout()
    );
    // A week later, with no new article, there is nothing to do.
    let later = p.run_with_env(&["send"], &[("SOURCE_DATE_EPOCH", "1796374800")]);
    later.expect_code(6);
    assert!(
        later.stdout().contains("nothing to do"),
        "{}",
        later.stdout()
    );
    assert_eq!(p.outbox().len(), 3);

    // A newly selected article makes a new edition with just that article.
    p.write(
        "articles/market.md",
        &crate::harness::article("Market opens", "2026-11-26", true),
    );
    p.run(&["send"]).expect_code(0);
    let subjects: Vec<String> = p
        .outbox()
        .iter()
        .filter(|(n, _)| n.starts_with("ada"))
        .map(|(_, bytes)| parse(bytes).subject().unwrap_or_default().to_string())
        .collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(
        subjects
            .iter()
            .any(|s| s.contains("Market opens") && !s.contains("more")),
        "{subjects:?}"
    );
}

#[test]
fn unselected_articles_stay_out_unless_named() {
    let p = Project::new();
    p.write(
        "articles/draft.md",
        &crate::harness::article("Draft story", "2026-11-26", false),
    );
    p.run(&["check"]).expect_code(0);
    let preview = p.run(&["preview", "--out", "pv"]);
    preview.expect_code(0);
    let eml = preview
        .stdout()
        .lines()
        .find(|l| l.ends_with(".eml"))
        .map(str::to_string)
        .expect("eml path");
    assert!(!p.read(&eml).contains("Draft story"));

    let named = p.run(&["preview", "--out", "pv2", "--article", "articles/draft.md"]);
    named.expect_code(0);
    let eml = named
        .stdout()
        .lines()
        .find(|l| l.ends_with(".eml"))
        .map(str::to_string)
        .expect("eml path");
    assert!(p.read(&eml).contains("Draft story"));
}

#[test]
fn preview_writes_exactly_the_message_send_delivers() {
    let p = Project::new();
    let preview = p.run(&["preview", "--to", "bob@example.net", "--out", "pv"]);
    preview.expect_code(0);
    let stdout = preview.stdout();
    let files: Vec<&str> = stdout.lines().collect();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(
        files[0].ends_with("bob@example.net.eml")
            && files[1].ends_with(".html")
            && files[2].ends_with(".txt")
    );
    let previewed = std::fs::read(p.path(files[0])).expect("eml");
    assert!(p.outbox().is_empty(), "preview must not send");
    assert!(
        !p.path("newsletter.db").exists(),
        "preview must not record anything"
    );

    p.run(&["send"]).expect_code(0);
    let sent = p
        .outbox()
        .into_iter()
        .find(|(n, _)| n == "bob@example.net.eml")
        .expect("bob's message")
        .1;
    assert_eq!(previewed, sent, "preview and send differ");
}

#[test]
fn preview_refuses_an_address_not_on_the_list() {
    let p = Project::new();
    let run = p.run(&["preview", "--to", "stranger@example.org"]);
    run.expect_code(1);
    assert!(
        run.stderr().contains("not in the subscriber list"),
        "{}",
        run.stderr()
    );
}

#[test]
fn dry_run_lists_recipients_and_sends_nothing() {
    let p = Project::new();
    let run = p.run(&["send", "--dry-run"]);
    run.expect_code(0);
    assert_eq!(
        run.stdout().lines().collect::<Vec<_>>(),
        ["ada@example.org", "bob@example.net", "cy@example.com"]
    );
    assert!(p.outbox().is_empty());
    assert!(!p.path("newsletter.db").exists());
}

#[test]
fn a_test_copy_goes_to_one_address_and_does_not_count_as_sending() {
    let p = Project::new();
    p.run(&["send", "--to", "editor@harbour.example"])
        .expect_code(0);
    let names: Vec<String> = p.outbox().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["editor@harbour.example.eml"]);
    assert!(
        !p.path("newsletter.db").exists(),
        "a test copy must not use up the articles"
    );
}

#[test]
fn duplicates_are_merged_and_reported_and_unsubscribed_wins() {
    let p = Project::new();
    let list = crate::harness::SUBSCRIBERS.to_string()
        + "\n[[subscriber]]\nemail = \"ADA@example.org\"\nstatus = \"subscribed\"\n\n[[subscriber]]\nemail = \" bob@EXAMPLE.net \"\nstatus = \"unsubscribed\"\n";
    p.write("subscribers.toml", &list);
    let run = p.run(&["send", "--dry-run"]);
    run.expect_code(0);
    // Local parts keep their case (RFC 5321), so ADA@ is another mailbox; bob@EXAMPLE.net is bob.
    assert_eq!(
        run.stdout().lines().collect::<Vec<_>>(),
        ["ada@example.org", "cy@example.com", "ADA@example.org"]
    );
    assert!(
        run.stderr().contains(
            "bob@example.net already appears at line 7; merged into one entry (unsubscribed)"
        ),
        "{}",
        run.stderr()
    );
}

#[test]
fn the_bundled_example_sends_without_a_server() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().expect("tmp");
    // A copy, so the test leaves the working tree as it found it.
    let example = work.path().join("example");
    std::fs::create_dir_all(example.join("articles")).expect("mkdir");
    for f in ["newsletter.toml", "example.key"] {
        std::fs::copy(root.join("example").join(f), example.join(f)).expect("copy");
    }
    for f in std::fs::read_dir(root.join("example/articles")).expect("articles") {
        let f = f.expect("entry").path();
        std::fs::copy(
            &f,
            example.join("articles").join(f.file_name().expect("name")),
        )
        .expect("copy");
    }
    std::fs::copy(
        root.join("subscribers.example.toml"),
        work.path().join("subscribers.example.toml"),
    )
    .expect("copy");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_newsletter"))
        .current_dir(work.path())
        .args(["--config", "example/newsletter.toml", "send"])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("sent 3 of 3"), "{stdout}");
}
