//! Hostile and unusual input on the sending path: addresses relays cannot take, header
//! injection through the config, over-long header lines, dangerous links, templates and
//! articles that would recurse without end, weak DKIM keys.

use crate::harness::{Project, parse};

/// Runs `check`, which must refuse the project (exit 3) with every one of `needles` on
/// stderr.
#[track_caller]
fn refused_by_check(p: &Project, needles: &[&str]) {
    let run = p.run(&["check"]);
    run.expect_code(3);
    let err = run.stderr();
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
}

/// Every line of a message, with its length in octets.
fn longest_line(message: &[u8]) -> usize {
    message
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).len())
        .max()
        .unwrap_or(0)
}

#[test]
fn unusual_addresses_are_refused_by_check_with_their_line() {
    let p = Project::new();
    let bad = [
        "\\\"quoted local\\\"@example.org",
        "u@[127.0.0.1]",
        "u@x",
        "u@localhost",
        "-u@example.org",
    ];
    let list: String = bad
        .iter()
        .map(|e| format!("[[subscriber]]\nemail = \"{e}\"\nstatus = \"subscribed\"\n\n"))
        .collect();
    p.write(
        "subscribers.toml",
        &format!("[[subscriber]]\nemail = \"fine@example.org\"\nstatus = \"subscribed\"\n\n{list}"),
    );
    let run = p.run(&["check"]);
    run.expect_code(3);
    let err = run.stderr();
    assert!(err.contains("5 problems"), "{err}");
    for (i, line) in [6, 10, 14, 18, 22].iter().enumerate() {
        assert!(
            err.contains(&format!("subscribers.toml:{line}: `email`")),
            "{} not reported at line {line}: {err}",
            bad[i]
        );
    }
    p.run(&["send"]).expect_code(3);
    assert!(p.outbox().is_empty());
}

#[test]
fn idn_and_nfc_spellings_of_one_address_are_merged() {
    let p = Project::new();
    p.write(
        "subscribers.toml",
        "[[subscriber]]\nemail = \"reader@bücher.example\"\nstatus = \"subscribed\"\n\n\
         [[subscriber]]\nemail = \"reader@xn--bcher-kva.example\"\nstatus = \"subscribed\"\n\n\
         [[subscriber]]\nemail = \"r\u{e9}ne@example.org\"\nstatus = \"subscribed\"\n\n\
         [[subscriber]]\nemail = \"re\u{301}ne@example.org\"\nstatus = \"subscribed\"\n",
    );
    let run = p.run(&["send"]);
    run.expect_code(0);
    assert_eq!(
        run.stderr().matches("merged into one entry").count(),
        2,
        "{}",
        run.stderr()
    );
    let names: Vec<String> = p.outbox().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        // The outbox's file names keep only ASCII.
        ["r_ne@example.org.eml", "reader@xn--bcher-kva.example.eml"]
    );
}

#[test]
fn long_names_are_refused_and_long_titles_folded_under_998_octets() {
    let p = Project::new();
    let long_name = "N".repeat(10_000);
    p.write(
        "subscribers.toml",
        &format!("[[subscriber]]\nemail = \"a@example.org\"\nname = \"{long_name}\"\nstatus = \"subscribed\"\n"),
    );
    let run = p.run(&["check"]);
    run.expect_code(3);
    assert!(
        run.stderr().contains("subscribers.toml:3: `name`") && run.stderr().contains("at most 200"),
        "{}",
        run.stderr()
    );

    // Neither has a space to fold at.
    let name = "Ünïcode-Nàme-".repeat(15);
    p.write(
        "subscribers.toml",
        &format!(
            "[[subscriber]]\nemail = \"a@example.org\"\nname = \"{}\"\nstatus = \"subscribed\"\n",
            name.trim()
        ),
    );
    let title = "A-very-long-headline-".repeat(60);
    p.write(
        "articles/ferry.md",
        &crate::harness::article(title.trim(), "2026-11-24", true),
    );
    p.write("templates/subject.txt", "{{ articles.0.title }}");
    p.run(&["send"]).expect_code(0);
    let (_, eml) = &p.outbox()[0];
    assert!(
        longest_line(eml) <= 78 * 2,
        "a line of {} octets",
        longest_line(eml)
    );
    let message = parse(eml);
    assert_eq!(message.subject(), Some(title.trim()));
    let to = message
        .to()
        .and_then(|t| t.first())
        .and_then(|a| a.name())
        .unwrap_or_default();
    assert_eq!(to, name.trim());
}

#[test]
fn templates_and_articles_that_would_recurse_forever_are_problems_not_crashes() {
    let p = Project::new();
    p.write(
        "templates/digest.html",
        "<p>top</p>\n{% include \"digest.html\" %}\n",
    );
    refused_by_check(&p, &["digest.html:2", "includes itself"]);

    let p = Project::new();
    p.write(
        "templates/digest.txt",
        "{% macro again(n) %}{{ self::again(n=n) }}{% endmacro again %}\n{{ self::again(n=1) }}\n",
    );
    refused_by_check(&p, &["digest.txt:1", "macro again calls itself"]);

    let p = Project::new();
    let deep = format!("{} deep\n", ">".repeat(20_000));
    p.write(
        "articles/ferry.md",
        &(crate::harness::article("Ferry", "2026-11-24", true) + &deep),
    );
    refused_by_check(&p, &["articles/ferry.md:", "nested"]);
}

fn through(p: &Project, port: u16) {
    p.use_loopback(port, 1, "");
}

const WIDE_LIST: &str = "[[subscriber]]\nemail = \"r\u{eb}ader@example.org\"\nstatus = \"subscribed\"\n\n\
    [[subscriber]]\nemail = \"plain@example.org\"\nstatus = \"subscribed\"\n";

#[test]
fn a_non_ascii_local_part_goes_only_to_a_relay_that_offers_smtputf8() {
    let utf8 = crate::harness::Aiosmtpd::start(true, 10_000_000);
    let p = Project::new();
    p.write("subscribers.toml", WIDE_LIST);
    through(&p, utf8.port);
    p.run(&["send"]).expect_code(0);
    let got = utf8.received();
    assert_eq!(got.len(), 2, "{got:?}");
    let wide = got
        .iter()
        .find(|(to, _)| to[0].starts_with('r'))
        .expect("the wide one");
    assert_eq!(wide.0, ["r\u{eb}ader@example.org"]);
    assert!(wide.1.iter().any(|o| o == "SMTPUTF8"), "{wide:?}");

    let ascii_only = crate::harness::Aiosmtpd::start(false, 10_000_000);
    let p = Project::new();
    p.write("subscribers.toml", WIDE_LIST);
    through(&p, ascii_only.port);
    let run = p.run(&["send"]);
    run.expect_code(0);
    assert_eq!(ascii_only.received().len(), 1);
    assert_eq!(ascii_only.received()[0].0, ["plain@example.org"]);
    assert!(
        run.stderr().contains("r\u{eb}ader@example.org: failed")
            && run.stderr().contains("does not offer SMTPUTF8"),
        "{}",
        run.stderr()
    );
    assert!(
        p.query("SELECT email FROM suppression").is_empty(),
        "not a dead mailbox"
    );
}

#[test]
fn a_message_larger_than_the_relays_size_stops_the_edition_with_the_sizes() {
    let small = crate::harness::Aiosmtpd::start(false, 1000);
    let p = Project::new();
    through(&p, small.port);
    let run = p.run(&["send"]);
    run.expect_code(7);
    assert!(
        run.stdout().contains("accepts at most 1000 bytes")
            && run.stdout().contains("the message is "),
        "{}",
        run.stdout()
    );
    assert!(small.received().is_empty());
    assert_eq!(
        p.query("SELECT state, COUNT(*) FROM delivery GROUP BY state"),
        ["pending|3"]
    );
}

#[test]
fn dangerous_links_in_articles_are_dropped_with_a_warning_naming_the_line() {
    let p = Project::new();
    let article = crate::harness::article("Ferry", "2026-11-24", true)
        + "\n[click](javascript:alert(1)) and ![x](data:text/html;base64,PHNjcmlwdD4=)\n\n\
           [local](file:///etc/passwd) [vb](vbscript:msgbox) [fine](https://harbour.example/ok)\n";
    p.write("articles/ferry.md", &article);
    let run = p.run(&["check"]);
    run.expect_code(0);
    let err = run.stderr();
    for (target, line) in [
        ("javascript:alert(1)", 16),
        ("data:text/html;base64,PHNjcmlwdD4=", 16),
        ("file:///etc/passwd", 18),
        ("vbscript:msgbox", 18),
    ] {
        assert!(
            err.contains(&format!(
                "articles/ferry.md:{line}: the link to {target:?} was dropped"
            )),
            "{target} at line {line}: {err}"
        );
    }
    p.run(&["send"]).expect_code(0);
    for (_, eml) in p.outbox() {
        let message = parse(&eml);
        let html = message.body_html(0).expect("html part").to_lowercase();
        for scheme in ["javascript:", "data:", "file:", "vbscript:"] {
            assert!(!html.contains(scheme), "{scheme} in {html}");
        }
        assert!(html.contains("https://harbour.example/ok"));
    }
}

#[test]
fn smtp_commands_in_hello_name_are_refused_before_anything_is_sent() {
    let p = Project::new();
    p.use_smtp("host = \"127.0.0.1\"\nport = 2525\nsecurity = \"none\"\nhello_name = \"x\\r\\nRSET\\r\\nMAIL FROM:<evil@evil.example>\"\n");
    refused_by_check(&p, &["`smtp.hello_name`"]);
}

#[test]
fn bidi_controls_are_removed_from_names_and_idn_hosts_converted_in_headers() {
    let p = Project::new();
    p.write(
        "subscribers.toml",
        "[[subscriber]]\nemail = \"ada@example.org\"\nname = \"Ada \u{202e}gpj.exe\"\nstatus = \"subscribed\"\n",
    );
    let config = p.read("newsletter.toml").replace(
        "https://harbour.example/unsubscribe/{token}",
        "https://bücher.example/unsubscribe/{token}",
    );
    p.write("newsletter.toml", &config);
    p.run(&["send"]).expect_code(0);
    let (_, eml) = &p.outbox()[0];
    let text = String::from_utf8_lossy(eml);
    assert!(!text.contains('\u{202e}'));
    let message = parse(eml);
    let to = message
        .to()
        .and_then(|t| t.first())
        .and_then(|a| a.name())
        .unwrap_or_default();
    assert_eq!(to, "Ada gpj.exe");
    let unsubscribe = message.header_raw("List-Unsubscribe").unwrap_or_default();
    assert!(
        unsubscribe.contains("<https://xn--bcher-kva.example/unsubscribe/"),
        "{unsubscribe}"
    );
}

#[test]
fn the_shipped_binary_has_no_journal_off_switch() {
    let p = Project::new();
    let run = p.run(&["send", "--no-journal"]);
    run.expect_code(2);
    assert!(p.outbox().is_empty());
}

fn mode(p: &Project, rel: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p.path(rel))
        .expect(rel)
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_state_the_outbox_and_previews_are_readable_by_their_owner_alone() {
    let p = Project::new();
    p.run(&["preview", "--out", "preview"]).expect_code(0);
    p.run(&["send"]).expect_code(0);
    assert_eq!(mode(&p, "newsletter.db"), 0o600);
    let edition = p.query("SELECT id FROM edition").remove(0);
    for (name, _) in p.outbox() {
        let rel = format!("outbox/{edition}/{name}");
        assert_eq!(mode(&p, &rel), 0o600, "{rel}");
    }
    for entry in std::fs::read_dir(p.path("preview")).expect("preview dir") {
        let path = entry.expect("entry").path();
        let rel = path
            .strip_prefix(p.dir.path())
            .expect("inside")
            .display()
            .to_string();
        assert_eq!(mode(&p, &rel), 0o600, "{rel}");
    }
}

#[test]
fn a_killed_runs_copy_of_the_list_is_removed_by_the_next_edit() {
    let p = Project::new();
    // Linux's pid_max is at most 4194304: no live process has this pid.
    p.write(".subscribers.toml.4194304.tmp", "every address of the list");
    p.run(&["unsubscribe", "ada@example.org"]).expect_code(0);
    assert!(!p.path(".subscribers.toml.4194304.tmp").exists());
    assert!(
        p.read("subscribers.toml")
            .contains("status = \"unsubscribed\"")
    );
}

/// The peak resident memory (KiB) of the binary run with `args` in `p`, from the kernel's
/// accounting of the finished process (wait4), read through Python.
fn peak_rss_kib(p: &Project, args: &[&str]) -> u64 {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import os,subprocess,sys\n\
             c=subprocess.Popen(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)\n\
             _,s,u=os.wait4(c.pid,0)\n\
             assert os.waitstatus_to_exitcode(s)==0, s\n\
             print(u.ru_maxrss)",
        )
        .arg(env!("CARGO_BIN_EXE_newsletter"))
        .args(["--config", "newsletter.toml"])
        .args(args)
        .current_dir(p.dir.path())
        .env("SOURCE_DATE_EPOCH", crate::harness::PINNED_EPOCH)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("KiB")
}

#[test]
fn an_edit_of_a_large_list_takes_about_the_files_size_in_memory() {
    let idle = Project::new();
    let idle_kib = peak_rss_kib(&idle, &["unsubscribe", "ada@example.org"]);
    let p = Project::new();
    let list: String = (0..100_000)
        .map(|i| {
            format!(
                "[[subscriber]]\nemail = \"reader{i}@example.org\"\nname = \"Reader Number {i}\"\nstatus = \"subscribed\"\n\n"
            )
        })
        .collect();
    p.write("subscribers.toml", &list);
    let file_kib = u64::try_from(list.len() / 1024).expect("size");
    let kib = peak_rss_kib(&p, &["unsubscribe", "reader50000@example.org"]);
    let edited = p.read("subscribers.toml");
    assert!(edited.contains(
        "email = \"reader50000@example.org\"\nname = \"Reader Number 50000\"\nstatus = \"unsubscribed\"\nsince = 2026-11-27\n"
    ));
    assert_eq!(
        edited.len(),
        list.len() + "unsubscribed".len() - "subscribed".len() + "since = 2026-11-27\n".len()
    );
    assert!(
        kib.saturating_sub(idle_kib) <= 3 * file_kib,
        "{kib} KiB at peak, {idle_kib} KiB idle, for a {file_kib} KiB list"
    );
}

fn chmod(p: &Project, rel: &str, mode: u32) {
    std::fs::set_permissions(
        p.path(rel),
        std::os::unix::fs::PermissionsExt::from_mode(mode),
    )
    .expect("chmod");
}

#[test]
fn a_short_key_and_a_key_others_can_change_are_refused_a_readable_one_warned() {
    let p = Project::new();
    p.write("key", "x\n");
    refused_by_check(&p, &["is 1 bytes; it needs at least 16"]);

    let p = Project::new();
    chmod(&p, "key", 0o666);
    refused_by_check(
        &p,
        &["can be changed by other users (mode 0666): `chmod 600"],
    );

    // Readable by others: a warning once real mail goes out, none for the outbox (the
    // bundled example's committed key is 0644 on a fresh clone).
    let p = Project::new();
    chmod(&p, "key", 0o644);
    let run = p.run(&["check"]);
    run.expect_code(0);
    assert!(
        !run.stderr().contains("can be read by other users"),
        "{}",
        run.stderr()
    );
    p.use_smtp("host = \"127.0.0.1\"\nport = 2525\nsecurity = \"none\"\n");
    let run = p.run(&["check"]);
    run.expect_code(0);
    assert!(
        run.stderr().contains("warning: the secret file")
            && run
                .stderr()
                .contains("can be read by other users (mode 0644)"),
        "{}",
        run.stderr()
    );
}
