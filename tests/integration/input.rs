//! Bad input: every problem reported with file, line and field; exit 3; nothing sent.

use crate::harness::Project;

fn assert_nothing_sent(p: &Project) {
    assert!(
        p.outbox().is_empty(),
        "messages were written: {:?}",
        p.outbox().len()
    );
    assert_eq!(p.editions(), 0, "an edition was recorded");
}

#[test]
fn every_bad_subscriber_and_article_is_reported_at_once_and_nothing_is_sent() {
    let p = Project::new();
    p.write(
        "subscribers.toml",
        "[[subscriber]]\nemail = \"ada(at)example.org\"\nstatus = \"subscribed\"\n\n\
         [[subscriber]]\nemail = \"eve@example.org\"\nname = \"Eve\\r\\nBcc: all@example.org\"\nstatus = \"subscribed\"\n\n\
         [[subscriber]]\nemail = \"zed@example.org\"\nstatus = \"active\"\n\n\
         [[subscriber]]\nemail = \"amy@example.org\"\nstauts = \"subscribed\"\n",
    );
    p.write("articles/broken.md", "+++\ndate = 2026-11-20\nlink = \"https://x.example/\"\nsummary = \"s\"\nselected = true\n+++\nbody\n");
    p.write("articles/baddate.md", "+++\ntitle = \"T\"\ndate = \"yesterday\"\nlink = \"https://x.example/\"\nsummary = \"s\"\n+++\n");
    let run = p.run(&["send"]);
    run.expect_code(3);
    let err = run.stderr();
    for expected in [
        "subscribers.toml:2: `email`:",
        "subscribers.toml:7: `name`: contains a control character",
        "subscribers.toml:12: `status`: \"active\" is not a status",
        "subscribers.toml:16: `stauts`: unknown field",
        "subscribers.toml:14: `status`: missing",
        "articles/broken.md",
        "missing field `title`",
        "articles/baddate.md:3",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(err.contains("nothing was sent"), "{err}");
    assert_nothing_sent(&p);
}

#[test]
fn malformed_toml_in_the_config_names_its_line() {
    let p = Project::new();
    let config = p.read("newsletter.toml").replace(
        "list_id = \"weekly.harbour.example\"",
        "list_id = \"weekly.harbour.example",
    );
    p.write("newsletter.toml", &config);
    let run = p.run(&["check"]);
    run.expect_code(3);
    assert!(
        run.stderr().contains("newsletter.toml:6"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_misspelled_config_key_is_refused() {
    let p = Project::new();
    let config = p.read("newsletter.toml").replace("reply_to =", "replyto =");
    p.write("newsletter.toml", &config);
    let run = p.run(&["send"]);
    run.expect_code(3);
    let err = run.stderr();
    assert!(
        err.contains("newsletter.toml:4") && err.contains("unknown field `replyto`"),
        "{err}"
    );
    assert_nothing_sent(&p);
}

#[test]
fn a_bad_from_address_names_its_field() {
    let p = Project::new();
    let config = p
        .read("newsletter.toml")
        .replace("<weekly@harbour.example>", "<weekly@@harbour>");
    p.write("newsletter.toml", &config);
    let run = p.run(&["check"]);
    run.expect_code(3);
    assert!(
        run.stderr()
            .contains("newsletter.toml:3: `newsletter.from`"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_template_syntax_error_names_the_template_and_line() {
    let p = Project::new();
    p.write(
        "templates/digest.html",
        "<p>{{ newsletter.name }}</p>\n<p>{% for a in articles %}{{ a.title }</p>\n",
    );
    let run = p.run(&["send"]);
    run.expect_code(3);
    let err = run.stderr();
    assert!(
        err.contains("templates/digest.html") && err.contains("2:"),
        "{err}"
    );
    assert_nothing_sent(&p);
}

#[test]
fn a_template_using_an_undefined_variable_is_refused_before_sending() {
    let p = Project::new();
    // A field the context does not have: found in the template itself.
    p.write("templates/digest.txt", "Hello\n{{ subscriber.nickname }}\n");
    let run = p.run(&["send"]);
    run.expect_code(3);
    let err = run.stderr();
    assert!(
        err.contains("templates/digest.txt:2: `subscriber` has no field `nickname`"),
        "{err}"
    );
    assert_nothing_sent(&p);
    // An item the edition does not have: found when rendering, one line for all the
    // recipients it affects.
    p.write("templates/digest.txt", "Hello\n{{ articles.9.title }}\n");
    let run = p.run(&["send"]);
    run.expect_code(3);
    let err = run.stderr();
    assert!(
        err.contains("templates/digest.txt:2") && err.contains("articles.9.title"),
        "{err}"
    );
    assert!(
        err.contains("and 2 more"),
        "one line for all recipients it affects: {err}"
    );
    assert_nothing_sent(&p);
}

#[test]
fn a_subject_template_that_renders_a_line_break_is_refused() {
    let p = Project::new();
    p.write(
        "templates/subject.txt",
        "Weekly\nBcc: everyone@example.org\n",
    );
    let run = p.run(&["send"]);
    run.expect_code(3);
    assert!(run.stderr().contains("subject.txt"), "{}", run.stderr());
    assert_nothing_sent(&p);
}

#[test]
fn an_article_named_on_the_command_line_must_exist() {
    let p = Project::new();
    let run = p.run(&["send", "--article", "articles/nope.md"]);
    run.expect_code(3);
    assert!(
        run.stderr()
            .contains("articles/nope.md: cannot read the article"),
        "{}",
        run.stderr()
    );
    assert_nothing_sent(&p);
}

#[test]
fn an_empty_subscriber_list_is_nothing_to_send() {
    let p = Project::new();
    p.write("subscribers.toml", "# nobody yet\n");
    let run = p.run(&["send"]);
    run.expect_code(0);
    assert!(run.stdout().contains("nothing to send"), "{}", run.stdout());
    assert_nothing_sent(&p);
}

#[test]
fn a_missing_config_file_is_named() {
    let p = Project::new();
    let run = p.run(&["--config", "elsewhere.toml", "check"]);
    run.expect_code(3);
    assert!(
        run.stderr()
            .contains("elsewhere.toml: cannot read the config file"),
        "{}",
        run.stderr()
    );
}

#[test]
fn check_warns_about_what_inbox_filters_dislike_and_fails_past_gmails_clip() {
    let p = Project::new();
    p.write(
        "templates/digest.html",
        "<p>{{ newsletter.name }}</p><img src=\"https://x.example/a.jpg\"><a href=\"http://x.example/\">site</a>\n",
    );
    let run = p.run(&["check"]);
    run.expect_code(0);
    let err = run.stderr();
    assert!(err.contains("warning: an image has no alt text"), "{err}");
    assert!(
        err.contains("warning: a link is not https: http://x.example/"),
        "{err}"
    );
    assert!(
        err.contains("warning: the HTML template has no unsubscribe link"),
        "{err}"
    );

    p.write(
        "templates/digest.html",
        "{% for i in range(end=3000) %}<p>{{ newsletter.name }} and more words to fill</p>{% endfor %}{{ unsubscribe_url }}\n",
    );
    let run = p.run(&["send"]);
    run.expect_code(3);
    assert!(
        run.stderr().contains("Gmail clips messages past 102 KB"),
        "{}",
        run.stderr()
    );
    assert_nothing_sent(&p);
}
