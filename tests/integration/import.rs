//! Imports from the exports of Mailchimp, Substack, Ghost, listmonk and Buttondown: each
//! address keeps the status it had there (nobody who left is subscribed again), the
//! report names what happened, a dry run writes nothing, and the list exports as listmonk
//! imports it.

use crate::harness::Project;

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/imports/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The count printed beside a label of the report.
fn count(report: &str, label: &str) -> usize {
    report
        .lines()
        .find(|l| {
            l.trim_start()
                .split_once("  ")
                .is_some_and(|(_, rest)| rest.trim() == label)
        })
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in:\n{report}"))
}

fn status_of(p: &Project, email: &str) -> Option<String> {
    let list: toml::Table = toml::from_str(&p.read("subscribers.toml")).expect("valid TOML");
    list["subscriber"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["email"].as_str() == Some(email))
        .map(|e| e["status"].as_str().expect("status").to_string())
}

#[test]
fn a_mailchimp_zip_keeps_who_left_and_who_bounced() {
    let p = Project::new();
    let before = p.read("subscribers.toml");
    let dry = p.run(&[
        "import",
        "--dry-run",
        &fixture("mailchimp-audience-export.zip"),
    ]);
    dry.expect_code(0);
    assert_eq!(
        p.read("subscribers.toml"),
        before,
        "a dry run writes nothing"
    );
    assert!(dry.stdout().contains("nothing was written"));

    let run = p.run(&["import", &fixture("mailchimp-audience-export.zip")]);
    run.expect_code(0);
    let report = run.stdout();
    assert!(
        report.contains("(Mailchimp): 7 rows, 7 addresses"),
        "{report}"
    );
    assert_eq!(count(&report, "added (subscribed)"), 1, "noor");
    assert_eq!(
        count(&report, "updated (name or tags added)"),
        1,
        "ada gets the Ferry tag"
    );
    assert_eq!(count(&report, "unsubscribed (left there)"), 1, "bob");
    assert_eq!(count(&report, "kept unsubscribed"), 2, "gone, left.early");
    assert_eq!(
        count(&report, "suppressed (bounced or complained there)"),
        1
    );
    assert_eq!(count(&report, "refused"), 1);
    assert!(
        report.contains("subscribed_email_audience_export_5f3a9c1e2b.csv:5  not-an-address:"),
        "{report}"
    );

    assert_eq!(
        status_of(&p, "noor.haddad@example.org").as_deref(),
        Some("subscribed")
    );
    assert_eq!(
        status_of(&p, "gone@example.org").as_deref(),
        Some("unsubscribed"),
        "never re-subscribed"
    );
    assert_eq!(
        status_of(&p, "bob@example.net").as_deref(),
        Some("unsubscribed")
    );
    assert_eq!(
        status_of(&p, "left.early@example.com").as_deref(),
        Some("unsubscribed")
    );
    let list = p.read("subscribers.toml");
    assert!(list.starts_with("# test list"), "comments kept");
    assert!(list.contains("tags = [\"VIP\", \"Ferry\"]"), "{list}");
    assert_eq!(
        p.query("SELECT email FROM suppression"),
        ["bounced@example.org"]
    );

    // The next edition goes to exactly the subscribed and unsuppressed.
    p.run(&["send"]).expect_code(0);
    let mut sent: Vec<String> = p.outbox().into_iter().map(|(n, _)| n).collect();
    sent.sort();
    assert_eq!(
        sent,
        [
            "ada@example.org.eml",
            "cy@example.com.eml",
            "noor.haddad@example.org.eml"
        ]
    );

    // Importing again changes nothing.
    let again = p.run(&["import", &fixture("mailchimp-audience-export.zip")]);
    assert_eq!(
        count(&again.stdout(), "added (subscribed)"),
        0,
        "{}",
        again.stdout()
    );
    assert_eq!(count(&again.stdout(), "unchanged"), 2, "{}", again.stdout());
}

#[test]
fn substack_ghost_listmonk_and_buttondown_exports_are_recognised() {
    let p = Project::new();
    for (file, tool, added, kept, suppressed, refused) in [
        ("substack-export.zip", "Substack", 2, 1, 0, 0),
        ("ghost-members.csv", "Ghost", 1, 1, 0, 0),
        ("listmonk-subscribers.csv", "listmonk", 1, 1, 0, 0),
        ("buttondown-subscribers.csv", "Buttondown", 1, 1, 1, 1),
    ] {
        let run = p.run(&["import", &fixture(file)]);
        run.expect_code(0);
        let report = run.stdout();
        assert!(report.contains(&format!("({tool})")), "{report}");
        assert_eq!(
            count(&report, "added (subscribed)"),
            added,
            "{file}: {report}"
        );
        assert_eq!(
            count(&report, "kept unsubscribed"),
            kept,
            "{file}: {report}"
        );
        assert_eq!(
            count(&report, "suppressed (bounced or complained there)"),
            suppressed,
            "{file}"
        );
        assert_eq!(count(&report, "refused"), refused, "{file}");
    }
    assert_eq!(
        status_of(&p, "muted@example.org").as_deref(),
        Some("unsubscribed")
    );
    assert_eq!(
        status_of(&p, "ghost.left@example.com").as_deref(),
        Some("unsubscribed")
    );
    assert_eq!(
        status_of(&p, "blocked@example.com").as_deref(),
        Some("unsubscribed")
    );
    assert_eq!(
        status_of(&p, "moved.on@example.com").as_deref(),
        Some("unsubscribed")
    );
    assert_eq!(
        status_of(&p, "never.clicked@example.com"),
        None,
        "never confirmed: not imported"
    );
    let list = p.read("subscribers.toml");
    assert!(list.contains("name = \"Inès Moreau\""), "{list}");
    assert!(list.contains("tags = [\"Ferry\", \"Council\"]"), "{list}");
    assert!(list.contains("tags = [\"paid\"]"), "{list}");
    assert!(list.contains("tags = [\"markets\"]"), "{list}");
    p.run(&["check"]).expect_code(0);

    // The export: listmonk's columns; who must not be mailed is blocklisted.
    let export = p.run(&["export"]);
    export.expect_code(0);
    let csv = export.stdout();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("email,name,status,attributes"));
    let line = |email: &str| {
        csv.lines()
            .find(|l| l.starts_with(&format!("{email},")))
            .unwrap_or_else(|| panic!("{email} in:\n{csv}"))
            .to_string()
    };
    assert!(
        line("ines.moreau@example.fr").contains(",enabled,"),
        "{csv}"
    );
    assert!(line("muted@example.org").contains(",blocklisted,"), "{csv}");
    assert!(line("dead.box@example.com").contains(",blocklisted,"));
    assert!(line("dead.box@example.com").contains("suppressed"));
    assert!(
        line("kofi.mensah@example.com").contains("\"\"tags\"\":[\"\"markets\"\"]"),
        "{csv}"
    );
}

#[test]
fn any_csv_with_named_columns_and_an_unknown_one_is_explained() {
    let p = Project::new();
    p.write("people.csv", "Address;Who\nx@example.org;X\n");
    let run = p.run(&["import", "people.csv"]);
    assert_ne!(run.code(), 0);
    assert!(run.stderr().contains("--email-column"), "{}", run.stderr());

    p.write(
        "people.csv",
        "Mail,Full name,State,Topics\nzoe@example.org,Zoë Park,active,\"ferry, markets\"\nyan@example.org,,bounced,\n",
    );
    let run = p.run(&[
        "import",
        "people.csv",
        "--email-column",
        "Mail",
        "--name-column",
        "Full name",
        "--status-column",
        "State",
        "--tags-column",
        "Topics",
    ]);
    run.expect_code(0);
    assert_eq!(count(&run.stdout(), "added (subscribed)"), 1);
    assert_eq!(
        count(&run.stdout(), "suppressed (bounced or complained there)"),
        1
    );
    assert!(
        p.read("subscribers.toml")
            .contains("tags = [\"ferry\", \"markets\"]")
    );
}
