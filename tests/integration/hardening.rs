//! Hostile and unusual input on the sending path: addresses relays cannot take, header
//! injection through the config, over-long header lines, dangerous links, templates and
//! articles that would recurse without end, weak DKIM keys.

use crate::harness::{Project, parse};

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
