//! DKIM signatures checked by an independent verifier (dkimpy) given the public key directly.

use std::process::Command;

use crate::harness::{Project, openssl, python_with};

const VERIFY: &str = r"
import sys, dkim
message = open(sys.argv[1], 'rb').read()
record = open(sys.argv[2], 'rb').read().strip()
ok = dkim.verify(message, dnsfunc=lambda name, timeout=5: record)
print('verified' if ok else 'FAILED')
sys.exit(0 if ok else 1)
";

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Runs dkimpy on `message` with the project's `record.txt` as the DNS answer.
fn dkimpy(p: &Project, message: &[u8]) -> std::process::Output {
    std::fs::write(p.path("signed.eml"), message).expect("write");
    let python = python_with("dkim", &["dkimpy==1.1.8", "pynacl"]);
    Command::new(python)
        .args(["verify.py", "signed.eml", "record.txt"])
        .current_dir(p.dir.path())
        .output()
        .expect("run dkimpy")
}

/// Sends through the outbox with `[dkim]` set and verifies one message with dkimpy.
fn sign_and_verify(algorithm: &str, key_file: &str, record: &str, p: &Project) {
    let config = p.read("newsletter.toml")
        + &format!(
            "\n[dkim]\ndomain = \"harbour.example\"\nselector = \"weekly\"\nalgorithm = \"{algorithm}\"\nprivate_key_file = \"{key_file}\"\n"
        );
    p.write("newsletter.toml", &config);
    p.write("record.txt", record);
    p.run(&["send"]).expect_code(0);
    let (name, bytes) = p.outbox().into_iter().next().expect("a message");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let header = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(header.contains("dkim-signature:"), "{header}");
    for h in [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ] {
        let signed = header
            .split("h=")
            .nth(1)
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .replace(['\r', '\n', ' ', '\t'], "");
        assert!(
            signed.split(':').any(|x| x == h),
            "{h} is not signed: {signed}"
        );
    }
    p.write("verify.py", VERIFY);
    let out = dkimpy(p, &bytes);
    assert!(
        out.status.success(),
        "{name}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A changed subject must break the signature.
    let tampered = text.replacen("Subject: ", "Subject: Tampered ", 1);
    let out = dkimpy(p, tampered.as_bytes());
    assert!(!out.status.success(), "a tampered message verified");
}

#[test]
fn rsa_signatures_verify_with_dkimpy() {
    let p = Project::new();
    openssl(
        &["genrsa", "-traditional", "-out", "dkim-rsa.pem", "2048"],
        p.dir.path(),
    );
    let public = openssl(
        &["rsa", "-in", "dkim-rsa.pem", "-pubout", "-outform", "DER"],
        p.dir.path(),
    );
    let record = format!("v=DKIM1; k=rsa; p={}", base64(&public));
    sign_and_verify("rsa", "dkim-rsa.pem", &record, &p);
}

#[test]
fn ed25519_signatures_verify_with_dkimpy() {
    let p = Project::new();
    openssl(
        &["genpkey", "-algorithm", "ed25519", "-out", "dkim-ed.pem"],
        p.dir.path(),
    );
    let public = openssl(
        &["pkey", "-in", "dkim-ed.pem", "-pubout", "-outform", "DER"],
        p.dir.path(),
    );
    // RFC 8463: the record carries the raw 32-byte key, the end of the DER structure.
    let record = format!(
        "v=DKIM1; k=ed25519; p={}",
        base64(&public[public.len() - 32..])
    );
    sign_and_verify("ed25519", "dkim-ed.pem", &record, &p);
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
fn weak_rsa_keys_are_refused_or_warned_and_a_foreign_domain_warned() {
    let weak = rsa_project("512", "harbour.example");
    let run = weak.run(&["check"]);
    run.expect_code(3);
    assert!(
        run.stderr().contains("`dkim`") && run.stderr().contains("512 bits"),
        "{}",
        run.stderr()
    );
    weak.run(&["send"]).expect_code(3);
    assert!(weak.outbox().is_empty());

    let short = rsa_project("1024", "harbour.example");
    let run = short.run(&["check"]);
    run.expect_code(0);
    assert!(
        run.stderr().contains("warning:") && run.stderr().contains("1024 bits; 2048 or more"),
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
