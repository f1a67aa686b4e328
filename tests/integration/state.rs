//! The state database across releases: databases made by earlier binaries
//! (`tests/fixtures/state/`, see its README) open with every row intact; a newer one is
//! refused; a damaged one gets advice.

use std::path::Path;

use crate::harness::Project;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/state");

/// A project like the one that made the fixture, on the outbox, with `db` as its state.
fn from_fixture(db: &str) -> Project {
    let p = Project::new();
    let dir = Path::new(FIXTURES).join("project");
    let config = std::fs::read_to_string(dir.join("newsletter.toml")).expect("config");
    // The fixture's relay and feed server are gone: the outbox, and no source.
    let config = config
        .split("[[sources]]")
        .next()
        .unwrap_or_default()
        .replace("SINK_PORT", "2525");
    p.write("newsletter.toml", &config);
    // The key the fixture was made with is shorter than a key may now be; no stored row
    // depends on it, so the harness's own key stays.
    std::fs::remove_dir_all(p.path("articles")).expect("no articles");
    p.write(
        "subscribers.toml",
        &(std::fs::read_to_string(dir.join("subscribers.toml")).expect("list")
            + "\n[[subscriber]]\nemail = \"eve@example.org\"\nstatus = \"subscribed\"\n"),
    );
    std::fs::copy(Path::new(FIXTURES).join(db), p.path("newsletter.db")).expect("copy db");
    p
}

fn counts(p: &Project) -> Vec<String> {
    let mut all = Vec::new();
    for table in [
        "edition",
        "edition_article",
        "delivery",
        "suppression",
        "daily_count",
        "unsubscribed",
        "list_change",
        "feed_cache",
    ] {
        all.push(format!(
            "{table}: {}",
            p.query(&format!("SELECT COUNT(*) FROM {table}"))[0]
        ));
    }
    all
}

#[test]
fn databases_of_earlier_releases_open_with_every_row_intact() {
    for db in ["e32ddbd.db", "6a58b8e.db"] {
        let p = from_fixture(db);
        assert_eq!(
            p.query("PRAGMA user_version"),
            ["0"],
            "{db} predates versions"
        );
        let before = counts(&p);
        let rows_before =
            p.query("SELECT edition_id, email, state, attempts, code FROM delivery ORDER BY 1, 2");

        // Reading does not migrate; writing does, keeping every row.
        let status = p.run(&["status", "2026-11-27-57c08a", "--json"]);
        status.expect_code(0);
        assert!(
            status.stdout().contains("\"sent\": 4"),
            "{db}: {}",
            status.stdout()
        );
        let list = p.run(&["suppressions"]);
        list.expect_code(0);
        assert_eq!(list.stdout().lines().count(), 3, "{db}: {}", list.stdout());
        assert_eq!(p.query("PRAGMA user_version"), ["8"], "{db}");
        assert_eq!(counts(&p), before, "{db}");
        assert_eq!(
            p.query("SELECT edition_id, email, state, attempts, code FROM delivery ORDER BY 1, 2"),
            rows_before,
            "{db}"
        );

        // The next edition honours what the old release recorded: suppressed and
        // unsubscribed addresses get nothing, the newcomer gets it.
        p.write(
            "articles/next.md",
            &crate::harness::article("Next week", "2026-12-10", true),
        );
        let send = p.run_with_env(&["send"], &[("SOURCE_DATE_EPOCH", "1796979600")]);
        send.expect_code(0);
        let names: Vec<String> = p.outbox().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["eve@example.org.eml"], "{db}");
    }
}

#[test]
fn a_database_from_a_newer_release_is_refused_and_a_damaged_one_explained() {
    let p = from_fixture("6a58b8e.db");
    rusqlite::Connection::open(p.path("newsletter.db"))
        .and_then(|c| c.pragma_update(None, "user_version", 9))
        .expect("newer");
    for args in [&["send"][..], &["status"][..], &["check"][..]] {
        let run = p.run(args);
        assert_ne!(run.code(), 0, "{args:?}");
        assert!(
            run.stderr()
                .contains("schema version is 9, newer than this newsletter knows"),
            "{args:?}: {}",
            run.stderr()
        );
    }

    let p = from_fixture("6a58b8e.db");
    std::fs::write(p.path("newsletter.db"), b"not a database at all, just text").expect("damage");
    let run = p.run(&["send"]);
    run.expect_code(1);
    assert!(
        run.stderr()
            .contains("is damaged: restore it from a backup, or move it aside"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_send_folds_a_long_log_so_that_the_next_run_need_not_read_it() {
    let p = Project::new();
    p.run(&["send"]).expect_code(0);
    // Earlier runs' commits, left in the log as runs leave it: through a connection that is
    // not closed before the send (closing the last one would fold the log itself).
    let conn = rusqlite::Connection::open(p.path("newsletter.db")).expect("open state");
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .expect("no checkpoint");
    for i in 0..400 {
        conn.execute(
            "INSERT INTO schedule_note (slot, at) VALUES (?1, 0)",
            [format!("slot {i}")],
        )
        .expect("a commit");
    }
    let wal = p.path("newsletter.db-wal");
    let long = std::fs::metadata(&wal).expect("log").len();
    assert!(long > 400 * 4096, "{long} bytes");

    p.write(
        "articles/wall.md",
        &crate::harness::article("Harbour wall repaired", "2026-11-26", true),
    );
    p.run(&["send"]).expect_code(0);
    assert_eq!(
        std::fs::metadata(&wal).expect("log").len(),
        0,
        "the send emptied the log"
    );
    drop(conn);
    // Both editions and their rows are in the database.
    assert_eq!(p.editions(), 2);
    assert!(counts(&p).iter().all(|c| !c.is_empty()));
}
