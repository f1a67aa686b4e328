//! The reader's language: `[newsletter] locale` sets `<html lang>`, the dates and every
//! built-in string of the message, the subject, the archive and the `serve` pages; a
//! regional tag falls back to its language with a warning; a project's own strings file
//! changes single strings and is checked; a resumed edition keeps the language it began in.

use crate::harness::{
    Point, Project, ServerOptions, SmtpServer, http, parse, serve, unsubscribe_path,
};

/// The example project in `tag`, with a website and an archive URL, so that every string
/// of the templates is used.
fn project(tag: &str) -> Project {
    let p = Project::new();
    let config = p.read("newsletter.toml").replace(
        "list_id = \"weekly.harbour.example\"\n",
        &format!(
            "list_id = \"weekly.harbour.example\"\nwebsite = \"https://harbour.example\"\nlocale = \"{tag}\"\n"
        ),
    ) + "\n[archive]\ndir = \"public\"\nurl = \"https://harbour.example/archive/\"\n";
    p.write("newsletter.toml", &config);
    p
}

fn message(p: &Project, to: &str) -> (String, String, String) {
    let (_, eml) = p
        .outbox()
        .into_iter()
        .find(|(n, _)| n.starts_with(to))
        .unwrap_or_else(|| panic!("{to}'s message"));
    let msg = parse(&eml);
    (
        msg.subject().expect("subject").to_string(),
        msg.body_html(0).expect("html").to_string(),
        msg.body_text(0).expect("text").to_string(),
    )
}

/// The English strings' words: each piece between the `{slots}` of every built-in string.
fn english_pieces() -> Vec<String> {
    let en: toml::Table = toml::from_str(include_str!("../../locales/en.toml")).expect("en.toml");
    let mut pieces = Vec::new();
    for (key, value) in en {
        if key == "date_format" {
            continue;
        }
        let text = value.as_str().expect("a string");
        let mut rest = text;
        loop {
            let (piece, after) = match rest.find('{') {
                Some(open) => (
                    &rest[..open],
                    rest[open..].find('}').map_or("", |c| &rest[open + c + 1..]),
                ),
                None => (rest, ""),
            };
            let piece = piece.trim();
            if piece.chars().filter(char::is_ascii_alphabetic).count() >= 3 {
                pieces.push(piece.to_string());
            }
            if after.is_empty() {
                break;
            }
            rest = after;
        }
    }
    pieces
}

#[test]
fn a_french_edition_has_french_dates_and_no_english_string_left() {
    let p = project("fr");
    let check = p.run(&["check"]);
    check.expect_code(0);
    assert!(!check.stderr().contains("locale"), "{}", check.stderr());
    p.run(&["send"]).expect_code(0);

    let (subject, html, text) = message(&p, "ada@");
    let (_, html_bob, text_bob) = message(&p, "bob@");
    assert_eq!(subject, "Ferry timetable (+1 autre)");
    assert!(html.contains("<html lang=\"fr\""), "lang");
    for part in [&html, &text] {
        // The articles' dates, from the locale data.
        assert!(part.contains("24 novembre 2026"), "{part}");
        assert!(part.contains("22 novembre 2026"));
    }
    assert!(html.contains("Bonjour Ada, voici ce que nous avons publié cette semaine."));
    assert!(text.contains("Bonjour Ada,"));
    assert!(text.contains("Cette semaine : 2 articles."));
    // No name: the locale's own greeting.
    assert!(html_bob.contains("Bonjour chère lectrice, cher lecteur,"));
    assert!(text_bob.contains("Bonjour chère lectrice, cher lecteur,"));
    assert!(html.contains(">Voir dans le navigateur</a>"));
    assert!(html.contains("Écrivez-nous à <a href=\"mailto:desk@harbour.example\""));
    assert!(html.contains("</a> ou rendez-vous sur <a href=\"https://harbour.example\""));
    assert!(html.contains(">Se désabonner</a>"));
    assert!(text.contains("Pour vous désabonner, ouvrez :"));
    assert!(text.contains("Lire l’article complet :"));

    let english = english_pieces();
    assert!(english.len() > 40, "{english:?}");
    for part in [&subject, &html, &text, &html_bob, &text_bob] {
        for piece in &english {
            assert!(
                !part.contains(piece.as_str()),
                "English {piece:?} left in:\n{part}"
            );
        }
        for month in ["November", "Monday", "Friday"] {
            assert!(!part.contains(month), "{month}");
        }
    }

    // Longer French words still fit a phone.
    crate::layout::check_html("fr-message", &html);

    // The archive's page and index speak French too.
    let id = p.query("SELECT id FROM edition")[0].clone();
    let page = p.read(&format!("public/{id}/index.html"));
    assert!(page.contains("<html lang=\"fr\"") && page.contains("Voici ce que nous avons publié"));
    let index = p.read("public/index.html");
    assert!(
        index.contains("<html lang=\"fr\"")
            && index.contains("Harbour Weekly : toutes les éditions")
    );
    assert!(index.contains(">Flux Atom</a>") && index.contains("27 novembre 2026"));
    let feed = feed_rs::parser::parse(p.read("public/atom.xml").as_bytes()).expect("a valid feed");
    assert_eq!(feed.language.as_deref(), Some("fr"));

    // And so do the pages of `serve`.
    let (_, eml) = p
        .outbox()
        .into_iter()
        .find(|(n, _)| n.starts_with("ada@"))
        .expect("ada");
    let path = unsubscribe_path(&eml);
    let (_served, addr) = serve(&p);
    let (code, body) = http(&addr, "GET", &path, "");
    assert_eq!(code, 200);
    assert!(body.contains("<html lang=\"fr\""), "{body}");
    assert!(
        body.contains("Ne plus envoyer Harbour Weekly à <strong>ada@example.org</strong> ?"),
        "{body}"
    );
    assert!(body.contains(">Se désabonner</button>"));
    let (code, body) = http(&addr, "POST", &path, "List-Unsubscribe=One-Click");
    assert_eq!(code, 200);
    assert!(
        body.contains("<strong>ada@example.org</strong> ne recevra plus Harbour Weekly."),
        "{body}"
    );
    let (code, body) = http(&addr, "GET", "/unsubscribe/damaged", "");
    assert_eq!(code, 400);
    assert!(body.contains("Ce lien n’est pas valide"), "{body}");
}

#[test]
fn german_spanish_and_portuguese_dates_and_strings() {
    for (tag, date, hello) in [
        (
            "de",
            "24. November 2026",
            "Hallo Ada, das haben wir diese Woche veröffentlicht.",
        ),
        (
            "es",
            "24 de noviembre de 2026",
            "Hola, Ada: esto es lo que publicamos esta semana.",
        ),
        (
            "pt",
            "24 de novembro de 2026",
            "Olá, Ada! Veja o que publicamos esta semana.",
        ),
    ] {
        let p = project(tag);
        p.run(&["send"]).expect_code(0);
        let (_, html, text) = message(&p, "ada@");
        assert!(html.contains(&format!("<html lang=\"{tag}\"")), "{tag}");
        assert!(html.contains(date) && text.contains(date), "{tag}: {date}");
        assert!(html.contains(hello), "{tag}: {hello}");
    }
}

#[test]
fn a_regional_tag_falls_back_to_its_language_and_a_project_file_changes_one_string() {
    let p = project("pt-BR");
    let check = p.run(&["check"]);
    check.expect_code(0);
    assert!(
        check.stderr().contains("locale \"pt-BR\"") && check.stderr().contains("using pt for"),
        "{}",
        check.stderr()
    );
    p.write(
        "locales/pt-BR.toml",
        "# our own word\nunsubscribe = \"Descadastrar\"\n",
    );
    p.run(&["send"]).expect_code(0);
    let (_, html, _) = message(&p, "ada@");
    assert!(html.contains("<html lang=\"pt-BR\""));
    assert!(html.contains(">Descadastrar</a>"), "the project's string");
    assert!(
        html.contains("24 de novembro de 2026"),
        "Brazilian month names"
    );
    assert!(html.contains("Olá, Ada!"), "the rest from pt");
}

#[test]
fn a_mistake_in_a_strings_file_is_named_with_its_line_and_nothing_is_sent() {
    let p = project("fr");
    p.write(
        "locales/fr.toml",
        "intro_named = \"Salut {prenom} !\"\nunsubscrib = \"x\"\n",
    );
    let run = p.run(&["send"]);
    assert_ne!(run.code(), 0);
    let err = run.stderr();
    assert!(
        err.contains("fr.toml:1: `intro_named`: {prenom} is not a value"),
        "{err}"
    );
    assert!(
        err.contains("fr.toml:2: `unsubscrib`: is not a built-in string"),
        "{err}"
    );
    assert!(p.outbox().is_empty(), "nothing sent");

    let bad = project("français");
    let err = bad.run(&["check"]).stderr();
    assert!(err.contains("`newsletter.locale`"), "{err}");
}

#[test]
fn a_mistake_in_the_strings_and_one_in_a_template_are_reported_together() {
    let p = project("fr");
    p.write("locales/fr.toml", "unsubscrib = \"x\"\n");
    p.write("templates/subject.txt", "{{ edition.date }\n");
    // `send` parses its templates on a second thread; `check` on its own.
    for command in ["send", "check"] {
        let run = p.run(&[command]);
        assert_ne!(run.code(), 0, "{command}");
        let err = run.stderr();
        assert!(
            err.contains("fr.toml:1: `unsubscrib`: is not a built-in string"),
            "{command}: {err}"
        );
        assert!(err.contains("subject.txt"), "{command}: {err}");
    }
    assert!(p.outbox().is_empty(), "nothing sent");
}

#[test]
fn a_resumed_edition_keeps_the_language_it_was_frozen_in() {
    let server = SmtpServer::start(ServerOptions {
        pause: Some(Point::Mail(2)),
        ..ServerOptions::default()
    });
    let p = Project::new();
    let emails = p.subscribers(4);
    p.use_loopback(server.port, 1, "");
    let config = p.read("newsletter.toml").replace(
        "list_id = \"weekly.harbour.example\"\n",
        "list_id = \"weekly.harbour.example\"\nlocale = \"fr\"\n",
    );
    p.write("newsletter.toml", &config);
    let mut child = p.spawn(&["send"]);
    server.gate.wait_reached();
    // Let message 1's 250 be recorded, so that no message is in doubt at the kill.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !p.journal().iter().any(|(_, s)| s == "sent") {
        assert!(
            std::time::Instant::now() < deadline,
            "message 1 never recorded"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    server.gate.release();
    // The editor switches the list to German before the edition is finished.
    let config = p
        .read("newsletter.toml")
        .replace("locale = \"fr\"", "locale = \"de\"");
    p.write("newsletter.toml", &config);
    p.run(&["send"]).expect_code(0);
    let messages = server.messages();
    assert!(messages.len() >= emails.len());
    for m in &messages {
        let msg = parse(&m.data);
        let html = msg.body_html(0).expect("html");
        assert!(
            html.contains("<html lang=\"fr\"") && html.contains("novembre"),
            "{:?}",
            m.to
        );
    }
}
