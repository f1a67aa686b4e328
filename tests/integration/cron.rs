//! Run from cron: `send --scheduled --quiet` every ten minutes, simulated across two weeks
//! with a pinned clock, against a relay that defers everything for a day.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};

use crate::harness::{Project, Sink};

const STEP: i64 = 600;
/// Sunday 2026-11-29 00:00 UTC (Europe/London is on UTC in winter).
const START: i64 = 1_795_910_400;
const DAY: i64 = 86_400;

fn at(t: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(t, 0).expect("time")
}

fn schedule_config(port: u16) -> String {
    format!(
        "host = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nconnections = 1\n\n\
         [schedule]\ndays = [\"mon\", \"thu\"]\nat = \"07:00\"\ntimezone = \"Europe/London\"\n\
         window_end = \"20:00\"\nstale_after_hours = 12\nretry_first_minutes = 10\n\
         retry_max_hours = 2\ngive_up_after_days = 5\n"
    )
}

#[test]
fn a_cron_line_every_ten_minutes_for_two_weeks_follows_the_schedule() {
    // The schedule's zone is read from the system's zoneinfo.
    crate::harness::installed("tzdata", &["/usr/share/zoneinfo/Europe/London"]);
    // Every recipient deferred, with a reply about the mailbox (not a request to slow down).
    let deferring = Sink::start(&[
        "-r",
        "RCPT",
        "-b",
        "450 4.2.1 Mailbox busy, try again later",
    ]);
    let accepting = Sink::start(&[]);
    let p = Project::new();
    std::fs::remove_dir_all(p.path("articles")).expect("clear articles");
    std::fs::create_dir_all(p.path("articles")).expect("articles");
    p.use_smtp(&schedule_config(deferring.port));
    let readers = 3; // ada, bob and cy; the fixture's fourth entry is unsubscribed

    // The relay defers everything from the first edition until a day later.
    let recovers = START + DAY + 7 * 3600 + DAY; // Tuesday 07:00
    // The machine is off on the second Thursday from 06:50 to 19:10.
    let down = (
        START + 11 * DAY + 6 * 3600 + 50 * 60,
        START + 11 * DAY + 19 * 3600 + 10 * 60,
    );
    let mut log = String::new();
    let mut delivered_at = Vec::new();
    let mut stale_warnings = 0;
    let mut switched = false;
    let mut t = START;
    while t < START + 14 * DAY {
        let now = at(t);
        // An editor adds an article the evening before each scheduled day.
        if now.hour() == 21 && now.minute() == 0 {
            let tomorrow = now + chrono::Duration::days(1);
            if matches!(tomorrow.weekday(), Weekday::Mon | Weekday::Thu) {
                let day = now.date_naive();
                p.write(
                    &format!("articles/{day}.md"),
                    &crate::harness::article(&format!("News of {day}"), &day.to_string(), true),
                );
            }
        }
        if !switched && t >= recovers {
            p.use_smtp(&schedule_config(accepting.port));
            switched = true;
        }
        if t >= down.0 && t < down.1 {
            t += STEP;
            continue;
        }
        let before = accepting.deliveries().values().sum::<usize>();
        let run = p.run_with_env(
            &["--quiet", "send", "--scheduled"],
            &[("SOURCE_DATE_EPOCH", &t.to_string())],
        );
        let after = accepting.wait_for(before).values().sum::<usize>();
        let local = now.time();
        let inside = local >= chrono::NaiveTime::from_hms_opt(7, 0, 0).expect("time")
            && local < chrono::NaiveTime::from_hms_opt(20, 0, 0).expect("time");
        assert!(
            inside || after == before,
            "{now}: {} sent outside the window",
            after - before
        );
        if after > before {
            delivered_at.push((t, after - before));
        }
        let (out, err) = (run.stdout(), run.stderr());
        // The pinned clock is always said; anything else only when a person must act.
        let said: Vec<&str> = err
            .lines()
            .filter(|l| !l.starts_with("warning: SOURCE_DATE_EPOCH is set"))
            .collect();
        match run.code() {
            0 | 6 => {
                let stale = said.iter().any(|l| l.contains("was not started"));
                stale_warnings += usize::from(stale);
                assert!(
                    out.is_empty() && (said.is_empty() || stale),
                    "{now}: a quiet run said\n{out}{err}"
                );
            }
            4 => assert!(!out.is_empty(), "{now}: a partial run said nothing"),
            code => panic!("{now}: exit {code}\n{out}{err}"),
        }
        if !out.is_empty() || !said.is_empty() || after > before {
            let _ = writeln!(
                log,
                "{} exit {} sent {}: {} {}",
                now.format("%a %Y-%m-%d %H:%M"),
                run.code(),
                after - before,
                out.trim(),
                said.first().copied().unwrap_or_default()
            );
        }
        t += STEP;
    }
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cron-simulation.log");
    std::fs::write(&path, &log).expect("log");

    // Editions started on their days at 07:00: two Mondays and the first Thursday; the
    // second Thursday's was stale when the machine came back, and is said to be, once.
    let started = p.query("SELECT created_at FROM edition ORDER BY created_at");
    let expected: Vec<String> = [1, 4, 8]
        .iter()
        .map(|d| (START + d * DAY + 7 * 3600).to_string())
        .collect();
    assert_eq!(started, expected, "{log}");
    assert_eq!(stale_warnings, 1, "{log}");
    // The deferred first edition reached everyone after the relay recovered, within the
    // backoff's ceiling (2 h) and one cron interval.
    let (first, n) = delivered_at[0];
    assert!(
        first >= recovers && first <= recovers + 2 * 3600 + STEP,
        "first delivery at {}\n{log}",
        at(first)
    );
    assert_eq!(n, readers, "{log}");
    // Nothing reached the deferring relay, and each reader got each edition once.
    assert_eq!(deferring.deliveries().values().sum::<usize>(), 0);
    let counts = accepting.deliveries();
    assert_eq!(counts.len(), readers, "{counts:?}");
    assert!(counts.values().all(|n| *n == 3), "{counts:?}\n{log}");
}

#[test]
fn quiet_runs_say_nothing_unless_a_person_must_act() {
    let p = Project::new();
    let pinned_only = |err: &str| {
        err.lines()
            .all(|l| l.starts_with("warning: SOURCE_DATE_EPOCH is set: the clock is pinned"))
    };
    for expected in [0, 0] {
        let run = p.run(&["--quiet", "send"]);
        run.expect_code(expected);
        assert_eq!(run.stdout(), "");
        assert!(pinned_only(&run.stderr()), "{}", run.stderr());
        assert!(!run.stderr().is_empty(), "the pinned clock is said");
    }
    // Without --quiet the same run says what happened.
    let run = p.run(&["send"]);
    assert!(run.stdout().contains("already sent"), "{}", run.stdout());
}

#[test]
fn a_secret_missing_from_the_environment_says_how_to_provide_it() {
    let p = Project::new();
    let config = p.read("newsletter.toml").replace(
        "secret_file = \"key\"",
        "secret_env = \"NEWSLETTER_TEST_UNSET_SECRET\"",
    );
    p.write("newsletter.toml", &config);
    let run = p.run(&["check"]);
    assert_ne!(run.code(), 0);
    let err = run.stderr();
    assert!(
        err.contains("the environment variable NEWSLETTER_TEST_UNSET_SECRET is not set")
            && err.contains("Cron and systemd")
            && err.contains("`_file`"),
        "{err}"
    );
    assert!(!err.contains("environment variable not found"), "{err}");
}

#[test]
fn check_relay_opens_a_session_says_what_a_send_would_do_and_sends_nothing() {
    let sink = Sink::start(&[]);
    let p = Project::new();
    p.use_smtp(&format!(
        "host = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nconnections = 3\n",
        sink.port
    ));
    let run = p.run(&["check", "--relay"]);
    run.expect_code(0);
    let out = run.stdout();
    assert!(
        out.contains(&format!(
            "relay 127.0.0.1:{}: connected, no TLS, no AUTH",
            sink.port
        )),
        "{out}"
    );
    assert!(out.contains("PIPELINING (used)"), "{out}");
    assert!(out.contains("a send would use 3 connections"), "{out}");
    assert!(out.contains("nothing was sent"), "{out}");
    assert_eq!(sink.deliveries().values().sum::<usize>(), 0);
    // A relay that is not there: the reason, and a failure.
    drop(sink);
    let run = p.run(&["check", "--relay"]);
    run.expect_code(1);
    assert!(run.stderr().contains("cannot connect"), "{}", run.stderr());
}

#[test]
fn after_a_send_every_command_agrees_and_preview_shows_the_sent_edition() {
    let p = Project::new();
    let sent = p.run(&["send"]);
    sent.expect_code(0);
    let id = sent
        .stdout()
        .split_whitespace()
        .nth(1)
        .expect("id")
        .trim_end_matches(':')
        .to_string();
    for args in [
        vec!["send"],
        vec!["check"],
        vec!["preview"],
        vec!["send", "--dry-run"],
    ] {
        let run = p.run(&args);
        run.expect_code(0);
        assert!(
            run.stdout()
                .contains(&format!("edition {id} already sent to 3 recipients")),
            "{args:?}: {}",
            run.stdout()
        );
    }
    // The sent edition, as frozen; by default under the project, wherever the command runs.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_newsletter"))
        .args(["--config", &p.path("newsletter.toml").display().to_string()])
        .args(["preview", "--edition", &id, "--to", "ada@example.org"])
        .current_dir(elsewhere.path())
        .env("SOURCE_DATE_EPOCH", crate::harness::PINNED_EPOCH)
        .output()
        .expect("preview");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let eml = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .expect("eml")
        .to_string();
    assert!(
        eml.starts_with(&p.path("preview").display().to_string()),
        "{eml}"
    );
    assert!(std::path::Path::new(&eml).exists());
    assert_eq!(std::fs::read_dir(elsewhere.path()).expect("dir").count(), 0);
    let unknown = p.run(&["preview", "--edition", "2000-01-01-000000"]);
    unknown.expect_code(1);
    assert!(
        unknown.stderr().contains("no edition 2000-01-01-000000"),
        "{}",
        unknown.stderr()
    );
}

#[test]
fn init_templates_in_an_existing_project_adds_the_templates_alone() {
    let p = Project::new();
    let config = p.read("newsletter.toml");
    let run = p.run(&["init", ".", "--templates"]);
    run.expect_code(0);
    assert!(
        run.stdout().contains("copied the built-in templates"),
        "{}",
        run.stdout()
    );
    assert_eq!(p.read("newsletter.toml"), config);
    for name in ["digest.html", "digest.txt", "subject.txt"] {
        assert!(p.path(&format!("templates/{name}")).exists(), "{name}");
    }
    // A second time: the templates exist, and nothing is overwritten.
    let again = p.run(&["init", ".", "--templates"]);
    again.expect_code(3);
    assert!(
        again.stderr().contains("already exists"),
        "{}",
        again.stderr()
    );
}

/// The project with `[approval]`, sending to `server`.
fn with_approval(server: &crate::harness::SmtpServer, extra: &str) -> Project {
    let p = Project::new();
    p.use_smtp(&format!(
        "host = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n\n[approval]\neditors = [\"desk@harbour.example\"]\n{extra}",
        server.port
    ));
    p
}

#[test]
fn an_approved_edition_goes_out_and_one_changed_after_approval_does_not() {
    let server = crate::harness::SmtpServer::start(crate::harness::ServerOptions::default());
    let p = with_approval(&server, "");
    let first = p.run(&["send"]);
    first.expect_code(6);
    let id = first
        .stdout()
        .split_whitespace()
        .nth(1)
        .expect("id")
        .to_string();
    assert!(
        first.stdout().contains("waits for approval"),
        "{}",
        first.stdout()
    );
    let to_desk = |n: usize| {
        let d = server.deliveries();
        assert_eq!(
            d.get("desk@harbour.example").copied().unwrap_or(0),
            n,
            "{d:?}"
        );
        assert_eq!(d.len(), 1, "only the editors get a draft: {d:?}");
    };
    to_desk(1);
    // Unchanged: no second draft message.
    p.run(&["send"]).expect_code(6);
    to_desk(1);

    p.run(&["approve", &id]).expect_code(0);
    // Changed after the approval: frozen again, sent to the editors again, held.
    let article = p
        .read("articles/library.md")
        .replace("A short summary.", "A corrected summary.");
    p.write("articles/library.md", &article);
    let changed = p.run(&["send"]);
    changed.expect_code(6);
    assert!(
        changed.stdout().contains("waits for approval"),
        "{}",
        changed.stdout()
    );
    to_desk(2);

    p.run(&["approve", &id]).expect_code(0);
    let sent = p.run(&["send"]);
    sent.expect_code(0);
    let d = server.deliveries();
    for reader in ["ada@example.org", "bob@example.net", "cy@example.com"] {
        assert_eq!(d.get(reader), Some(&1), "{d:?}");
    }
    // What went out is the approved content.
    let bob = server
        .messages()
        .into_iter()
        .find(|m| m.to == ["bob@example.net"])
        .expect("bob's");
    assert!(String::from_utf8_lossy(&bob.data).contains("A corrected summary."));
    // Approving what is no longer a draft is refused.
    let again = p.run(&["approve", &id]);
    again.expect_code(1);
    assert!(
        again.stderr().contains("not waiting for approval"),
        "{}",
        again.stderr()
    );
}

#[test]
fn an_unapproved_draft_goes_out_at_the_deadline() {
    let server = crate::harness::SmtpServer::start(crate::harness::ServerOptions::default());
    let p = with_approval(&server, "deadline_hours = 6\n");
    p.run(&["send"]).expect_code(6);
    let later =
        (crate::harness::PINNED_EPOCH.parse::<i64>().expect("epoch") + 5 * 3600).to_string();
    p.run_with_env(&["send"], &[("SOURCE_DATE_EPOCH", &later)])
        .expect_code(6);
    let past = (crate::harness::PINNED_EPOCH.parse::<i64>().expect("epoch") + 6 * 3600).to_string();
    let run = p.run_with_env(&["send"], &[("SOURCE_DATE_EPOCH", &past)]);
    run.expect_code(0);
    assert!(
        run.stderr().contains("not approved within deadline_hours"),
        "{}",
        run.stderr()
    );
    assert_eq!(server.deliveries().len(), 4, "three readers and the editor");
}

#[test]
fn check_finds_a_misspelled_variable_in_a_branch_the_edition_does_not_take() {
    let p = Project::new();
    let html = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/digest.html"),
    )
    .expect("template")
    .replace(
        "</body>",
        "{% if articles | length > 50 %}{{ edition.titel }}{% endif %}\n</body>",
    );
    p.write("templates/digest.html", &html);
    let line = html
        .lines()
        .position(|l| l.contains("edition.titel"))
        .expect("line")
        + 1;
    let run = p.run(&["check"]);
    run.expect_code(3);
    assert!(
        run.stderr().contains(&format!(
            "templates/digest.html:{line}: `edition` has no field `titel` (it has id, date, date_iso)"
        )),
        "{}",
        run.stderr()
    );
    // Nothing is sent with it.
    p.run(&["send"]).expect_code(3);
    assert!(
        !p.path("outbox").exists()
            || std::fs::read_dir(p.path("outbox")).expect("dir").count() == 0
    );
}
