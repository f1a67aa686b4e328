//! DKIM signatures checked by an independent verifier (dkimpy) given the public key directly.

use std::fmt::Write as _;
use std::process::Command;

use crate::harness::{Project, openssl, python_with};

/// Verifies every DKIM-Signature of a message, each with the record its `s=` names.
const VERIFY: &str = r"
import sys, json, dkim
message = open(sys.argv[1], 'rb').read()
records = json.load(open(sys.argv[2]))
def dns(name, timeout=5):
    return records.get(name.decode().rstrip('.'), '').encode()
d = dkim.DKIM(message)
count = len([h for h in d.headers if h[0].lower() == b'dkim-signature'])
results = [d.verify(idx=i, dnsfunc=dns) for i in range(count)]
print(count, ' '.join('verified' if r else 'FAILED' for r in results))
sys.exit(0 if count and all(results) else 1)
";

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Runs dkimpy on `message` with the project's `records.json` as the DNS; its summary line.
fn dkimpy(p: &Project, message: &[u8]) -> (bool, String) {
    std::fs::write(p.path("signed.eml"), message).expect("write");
    p.write("verify.py", VERIFY);
    let python = python_with("dkim", &["dkimpy==1.1.8", "pynacl"]);
    let out = Command::new(python)
        .args(["verify.py", "signed.eml", "records.json"])
        .current_dir(p.dir.path())
        .output()
        .expect("run dkimpy");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A fresh RSA key in `file` (PKCS#1 unless `pkcs8`) and its DNS record.
fn rsa_key(p: &Project, file: &str, pkcs8: bool) -> String {
    let mut args = vec!["genrsa", "-out", file, "2048"];
    if !pkcs8 {
        args.insert(1, "-traditional");
    }
    openssl(&args, p.dir.path());
    let public = openssl(
        &["rsa", "-in", file, "-pubout", "-outform", "DER"],
        p.dir.path(),
    );
    format!("v=DKIM1; k=rsa; p={}", base64(&public))
}

/// A fresh Ed25519 key in `file` and its DNS record.
fn ed25519_key(p: &Project, file: &str) -> String {
    openssl(
        &["genpkey", "-algorithm", "ed25519", "-out", file],
        p.dir.path(),
    );
    let public = openssl(
        &["pkey", "-in", file, "-pubout", "-outform", "DER"],
        p.dir.path(),
    );
    // RFC 8463: the record carries the raw 32-byte key, the end of the DER structure.
    format!(
        "v=DKIM1; k=ed25519; p={}",
        base64(&public[public.len() - 32..])
    )
}

/// The header block of a message, unfolded, and the `h=` lists of its signatures.
fn signed_lists(text: &str) -> Vec<Vec<String>> {
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let unfolded = head.replace("\r\n\t", " ").replace("\r\n ", " ");
    unfolded
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("dkim-signature:"))
        .map(|l| {
            let h = l
                .split(" h=")
                .nth(1)
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("");
            h.replace([' ', '\t'], "")
                .split(':')
                .map(ToString::to_string)
                .collect()
        })
        .collect()
}

/// Sends through the outbox with the given `[[dkim]]` keys and returns one message.
fn send_signed(p: &Project, keys: &[(&str, &str)], records: &[(&str, String)]) -> String {
    let mut config = p.read("newsletter.toml");
    for (selector, file) in keys {
        let _ = write!(
            config,
            "\n[[dkim]]\ndomain = \"harbour.example\"\nselector = \"{selector}\"\nprivate_key_file = \"{file}\"\n"
        );
    }
    p.write("newsletter.toml", &config);
    let map: std::collections::BTreeMap<String, &String> = records
        .iter()
        .map(|(s, r)| (format!("{s}._domainkey.harbour.example"), r))
        .collect();
    p.write("records.json", &serde_json::to_string(&map).expect("json"));
    p.run(&["send"]).expect_code(0);
    let (_, bytes) = p.outbox().into_iter().next().expect("a message");
    String::from_utf8(bytes).expect("ASCII message")
}

#[test]
fn rsa_and_ed25519_signatures_side_by_side_verify_with_dkimpy() {
    let p = Project::new();
    let rsa = rsa_key(&p, "dkim-rsa.pem", false);
    let ed = ed25519_key(&p, "dkim-ed.pem");
    let text = send_signed(
        &p,
        &[("rsa2026", "dkim-rsa.pem"), ("ed2026", "dkim-ed.pem")],
        &[("rsa2026", rsa), ("ed2026", ed)],
    );
    let (ok, summary) = dkimpy(&p, text.as_bytes());
    assert!(
        ok && summary.starts_with("2 verified verified"),
        "{summary}"
    );
    assert!(text.contains("a=rsa-sha256") && text.contains("a=ed25519-sha256"));
    // t= is the program's clock (SOURCE_DATE_EPOCH in the tests), not the system's.
    assert!(
        text.contains(&format!("t={}", crate::harness::PINNED_EPOCH)),
        "{text}"
    );
    // The signatures are folded into short lines (they come first in the header block).
    let signatures = text.split("\r\nFrom:").next().unwrap_or("");
    assert!(signatures.lines().all(|l| l.len() <= 78), "{signatures}");

    for list in signed_lists(&text) {
        for h in [
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "mime-version",
            "content-type",
            "list-id",
            "list-unsubscribe",
            "list-unsubscribe-post",
            "feedback-id",
        ] {
            assert!(list.iter().any(|x| x == h), "{h} is not signed: {list:?}");
        }
        // Oversigned: one more than the message has, so none can be added.
        for h in [
            "from",
            "to",
            "subject",
            "list-unsubscribe",
            "list-unsubscribe-post",
        ] {
            assert_eq!(list.iter().filter(|x| *x == h).count(), 2, "{h}: {list:?}");
        }
    }

    // Changing a signed header, or adding a second copy of one, fails both signatures.
    let changed = text.replacen("Subject: ", "Subject: Tampered ", 1);
    let body_at = text.find("\r\n\r\n").expect("a body");
    let added = |header: &str| format!("{}\r\n{header}{}", &text[..body_at], &text[body_at..]);
    for (what, tampered) in [
        ("a changed Subject", changed),
        (
            "a second Subject",
            added("Subject: Your account is suspended"),
        ),
        (
            "a second List-Unsubscribe",
            added("List-Unsubscribe: <https://attacker.example/x>"),
        ),
        (
            "an added Reply-To",
            added("Reply-To: attacker@attacker.example"),
        ),
    ] {
        let (ok, summary) = dkimpy(&p, tampered.as_bytes());
        assert!(
            !ok && summary.starts_with("2 FAILED FAILED"),
            "{what} verified: {summary}"
        );
    }
}

#[test]
fn a_pkcs8_rsa_key_and_a_single_dkim_table_still_sign() {
    let p = Project::new();
    let record = rsa_key(&p, "dkim.pem", true);
    let config = p.read("newsletter.toml")
        + "\n[dkim]\ndomain = \"harbour.example\"\nselector = \"weekly\"\nalgorithm = \"rsa\"\nprivate_key_file = \"dkim.pem\"\n";
    p.write("newsletter.toml", &config);
    p.write(
        "records.json",
        &serde_json::json!({ "weekly._domainkey.harbour.example": record }).to_string(),
    );
    p.run(&["send"]).expect_code(0);
    let (_, bytes) = p.outbox().into_iter().next().expect("a message");
    let (ok, summary) = dkimpy(&p, &bytes);
    assert!(ok && summary.starts_with("1 verified"), "{summary}");
}

#[test]
fn a_key_of_another_algorithm_than_configured_or_a_repeated_selector_is_refused() {
    let p = Project::new();
    ed25519_key(&p, "ed.pem");
    let base = p.read("newsletter.toml");
    p.write(
        "newsletter.toml",
        &(base.clone()
            + "\n[dkim]\ndomain = \"harbour.example\"\nselector = \"weekly\"\nalgorithm = \"rsa\"\nprivate_key_file = \"ed.pem\"\n"),
    );
    let run = p.run(&["send"]);
    run.expect_code(3);
    assert!(
        run.stderr()
            .contains("the key is ed25519, but `algorithm` says rsa"),
        "{}",
        run.stderr()
    );
    p.write(
        "newsletter.toml",
        &(base
            + "\n[[dkim]]\ndomain = \"harbour.example\"\nselector = \"weekly\"\nprivate_key_file = \"ed.pem\"\n"
            + "\n[[dkim]]\ndomain = \"harbour.example\"\nselector = \"weekly\"\nprivate_key_file = \"ed.pem\"\n"),
    );
    let run = p.run(&["send"]);
    run.expect_code(3);
    assert!(
        run.stderr()
            .contains("weekly._domainkey.harbour.example is already a key above")
            && run.stderr().contains("dkim.selector"),
        "{}",
        run.stderr()
    );
    assert!(p.outbox().is_empty());
}

/// A project signing with a fresh RSA key of `bits` for `domain`.
fn rsa_project(bits: &str, domain: &str) -> Project {
    let p = Project::new();
    openssl(
        &["genrsa", "-traditional", "-out", "dkim.pem", bits],
        p.dir.path(),
    );
    let config = p.read("newsletter.toml")
        + &format!(
            "\n[dkim]\ndomain = \"{domain}\"\nselector = \"weekly\"\nprivate_key_file = \"dkim.pem\"\n"
        );
    p.write("newsletter.toml", &config);
    p
}

#[test]
fn short_rsa_keys_are_refused_and_a_foreign_domain_warned() {
    let weak = rsa_project("512", "harbour.example");
    let run = weak.run(&["check"]);
    run.expect_code(3);
    assert!(
        run.stderr().contains("`dkim`") && run.stderr().contains("shorter than 2048 bits"),
        "{}",
        run.stderr()
    );
    weak.run(&["send"]).expect_code(3);
    assert!(weak.outbox().is_empty());

    let short = rsa_project("1024", "harbour.example");
    let run = short.run(&["check"]);
    run.expect_code(3);
    assert!(
        run.stderr().contains("shorter than 2048 bits"),
        "{}",
        run.stderr()
    );

    let foreign = rsa_project("2048", "other.example");
    let run = foreign.run(&["check"]);
    run.expect_code(0);
    assert!(
        run.stderr()
            .contains("other.example is neither the From domain harbour.example"),
        "{}",
        run.stderr()
    );
    let aligned = rsa_project("2048", "harbour.example");
    let run = aligned.run(&["check"]);
    run.expect_code(0);
    assert!(!run.stderr().contains("warning"), "{}", run.stderr());
}

#[test]
fn messages_signed_on_the_signing_threads_verify_and_equal_their_preview() {
    let sink = crate::harness::Sink::start(&[]);
    let p = Project::new();
    p.use_loopback(sink.port, 3, "");
    let emails = p.subscribers(6);
    let rsa = rsa_key(&p, "dkim-rsa.pem", false);
    let ed = ed25519_key(&p, "dkim-ed.pem");
    let mut config = p.read("newsletter.toml");
    for (selector, file) in [("rsa2026", "dkim-rsa.pem"), ("ed2026", "dkim-ed.pem")] {
        let _ = write!(
            config,
            "\n[[dkim]]\ndomain = \"harbour.example\"\nselector = \"{selector}\"\nprivate_key_file = \"{file}\"\n"
        );
    }
    p.write("newsletter.toml", &config);
    p.write(
        "records.json",
        &serde_json::json!({
            "rsa2026._domainkey.harbour.example": rsa,
            "ed2026._domainkey.harbour.example": ed,
        })
        .to_string(),
    );
    let preview = p.run(&["preview", "--to", &emails[0], "--out", "pv"]);
    preview.expect_code(0);
    p.run(&["send"]).expect_code(0);
    assert_eq!(sink.wait_for(6).len(), 6);
    let previewed = std::fs::read_dir(p.path("pv"))
        .expect("pv")
        .map(|e| std::fs::read(e.expect("entry").path()).expect("eml"))
        .next()
        .expect("a preview");
    let mut matched = false;
    for dump in sink.dumps() {
        let text = String::from_utf8_lossy(&dump).replace('\r', "");
        // smtp-sink's envelope lines come first; the message starts with its signatures.
        let message = &text[text.find("DKIM-Signature:").expect("signed")..];
        let (ok, summary) = dkimpy(&p, message.replace('\n', "\r\n").as_bytes());
        assert!(
            ok && summary.starts_with("2 verified verified"),
            "{summary}"
        );
        if text.contains(&format!("X-Rcpt-Args: <{}>", emails[0])) {
            // smtp-sink ends its dump with one more line break.
            let previewed = String::from_utf8_lossy(&previewed).replace('\r', "");
            assert!(
                message.trim_end() == previewed.trim_end(),
                "the preview is not the message sent"
            );
            matched = true;
        }
    }
    assert!(matched, "no message to {}", emails[0]);
}
