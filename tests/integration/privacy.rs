//! Data rights: `export-data` shows what is kept about one reader; `forget` erases it from
//! the subscriber file, every state table (and the database's files byte by byte, the
//! write-ahead log included) and the outbox and preview files, keeping a keyed hash that
//! stops the address from being mailed or subscribed again.

use crate::harness::{Project, article};

const NEXT_WEEK: &str = "1796374800";
const JOSE_FILE: &str = "jose.pena@bücher.example";
const JOSE: &str = "jose.pena@xn--bcher-kva.example";

const BOUNCE: &str = "From: MAILER-DAEMON@mx.bucher.example\r\n\
To: weekly@harbour.example\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\
\r\n\
--b\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Your message to jose.pena@bücher.example could not be delivered.\r\n\
--b\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.bucher.example\r\n\
\r\n\
Final-Recipient: rfc822; jose.pena@xn--bcher-kva.example\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <jose.pena@xn--bcher-kva.example>: user unknown\r\n\
--b--\r\n";

/// Case-insensitive, as `grep -a -i` reads a binary file.
fn occurs(haystack: &[u8], needle: &str) -> bool {
    let hay = haystack.to_ascii_lowercase();
    let needle = needle.as_bytes().to_ascii_lowercase();
    hay.windows(needle.len()).any(|w| w == needle.as_slice())
}

fn state_files(p: &Project) -> Vec<(String, Vec<u8>)> {
    [
        "newsletter.db",
        "newsletter.db-wal",
        "newsletter.db-shm",
        "newsletter.db-sendlog",
    ]
    .iter()
    .filter_map(|f| std::fs::read(p.path(f)).ok().map(|b| ((*f).to_string(), b)))
    .collect()
}

fn forms() -> Vec<String> {
    vec![
        JOSE.to_string(),
        JOSE_FILE.to_string(),
        // The same address decomposed (NFD), as some systems write it.
        "jose.pena@bu\u{308}cher.example".to_string(),
        "xn--bcher-kva".to_string(),
        "bücher".to_string(),
    ]
}

#[test]
fn forget_erases_every_trace_and_the_address_is_never_mailed_again() {
    let p = Project::new();
    let list = p.read("subscribers.toml")
        + &format!(
            "\n# met at the book fair\n[[subscriber]]\nemail = \"{JOSE_FILE}\"\nname = \"José Peña\"\nstatus = \"subscribed\"\n"
        );
    p.write("subscribers.toml", &list);
    p.run(&["preview", "--to", JOSE_FILE]).expect_code(0);
    p.run(&["send"]).expect_code(0);
    // The send's log is cleared once the database holds its steps.
    let log = std::fs::read(p.path("newsletter.db-sendlog")).expect("the send log");
    assert!(
        !occurs(&log, JOSE) && !log.contains(&b'@'),
        "an address in the send log"
    );
    p.write("bounce.eml", BOUNCE);
    let bounced = p.run(&["bounces", "bounce.eml"]);
    bounced.expect_code(0);
    assert!(bounced.stdout().contains("hard"), "{}", bounced.stdout());

    // What is kept, as the reader may ask to see it.
    let export = p.run(&["export-data", JOSE_FILE]);
    export.expect_code(0);
    let data: serde_json::Value = serde_json::from_str(&export.stdout()).expect("JSON");
    assert_eq!(data["address"], JOSE);
    assert_eq!(data["forgotten"], false);
    assert_eq!(data["subscriber_file"]["entries"][0]["name"], "José Peña");
    assert_eq!(
        data["state"]["deliveries"]
            .as_array()
            .expect("deliveries")
            .len(),
        1
    );
    assert_eq!(
        data["state"]["suppression"]
            .as_array()
            .expect("suppression")
            .len(),
        1
    );
    assert!(
        !data["state"]["bounce_findings"]
            .as_array()
            .expect("findings")
            .is_empty()
    );
    assert_eq!(data["files"].as_array().expect("files").len(), 4, "{data}");
    // The search below can find it: the database holds the address now.
    assert!(
        state_files(&p).iter().any(|(_, b)| occurs(b, JOSE)),
        "the address is in the state before forget"
    );

    // Where serve's sender puts a sign-up's confirmation message in the outbox.
    p.write(
        &format!("outbox/signup/{JOSE}.eml"),
        "Subject: Confirm\r\n\r\nlink\r\n",
    );
    let forget = p.run(&["forget", JOSE_FILE]);
    forget.expect_code(0);
    assert!(
        forget.stdout().contains("is forgotten"),
        "{}",
        forget.stdout()
    );

    for (file, bytes) in state_files(&p) {
        for form in forms() {
            assert!(!occurs(&bytes, &form), "{form} still in {file}");
        }
    }
    let wal = std::fs::metadata(p.path("newsletter.db-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "the write-ahead log is emptied");
    let list = p.read("subscribers.toml");
    assert!(!list.contains("bücher") && !list.contains("José"), "{list}");
    assert!(
        list.starts_with("# test list") && list.contains("ada@example.org"),
        "{list}"
    );
    assert!(
        std::fs::read_dir(p.path("outbox"))
            .expect("outbox")
            .flatten()
            .flat_map(|d| std::fs::read_dir(d.path()).expect("edition").flatten())
            .all(|f| !f.file_name().to_string_lossy().contains("bcher")),
        "the outbox file is gone"
    );
    assert!(
        std::fs::read_dir(p.path("preview"))
            .expect("preview")
            .flatten()
            .all(|f| !f.file_name().to_string_lossy().contains("bcher")),
        "the preview files are gone"
    );

    let export = p.run(&["export-data", JOSE_FILE]);
    let data: serde_json::Value = serde_json::from_str(&export.stdout()).expect("JSON");
    assert_eq!(data["forgotten"], true);
    assert_eq!(
        data["state"]["deliveries"].as_array().map(Vec::len),
        Some(0)
    );
    assert_eq!(data["files"].as_array().map(Vec::len), Some(0));

    // Added back by hand: the next edition does not go to it, and says why.
    let list = p.read("subscribers.toml")
        + &format!("\n[[subscriber]]\nemail = \"{JOSE}\"\nstatus = \"subscribed\"\n");
    p.write("subscribers.toml", &list);
    p.write(
        "articles/wall.md",
        &article("Harbour wall repaired", "2026-12-03", true),
    );
    let send = p.run_with_env(&["send"], &[("SOURCE_DATE_EPOCH", NEXT_WEEK)]);
    send.expect_code(0);
    assert!(
        send.stderr()
            .contains("was forgotten on its owner's request"),
        "{}",
        send.stderr()
    );
    assert!(
        p.outbox().iter().all(|(name, _)| !name.contains("bcher")),
        "not mailed"
    );
    let subscribe = p.run(&["subscribe", JOSE_FILE]);
    assert_ne!(subscribe.code(), 0);
    assert!(
        subscribe.stderr().contains("was forgotten"),
        "{}",
        subscribe.stderr()
    );
    // Still nothing about it in the state.
    for (file, bytes) in state_files(&p) {
        assert!(!occurs(&bytes, JOSE), "{file}");
    }
}

#[test]
fn forget_waits_for_no_send_and_rotating_the_unsubscribe_key_keeps_the_forgetting() {
    let p = Project::new();
    p.run(&["send"]).expect_code(0);
    p.run(&["forget", "ada@example.org"]).expect_code(0);
    let key = std::fs::read_to_string(p.path("newsletter.db.forget-key")).expect("forget key");
    assert_eq!(key.trim().len(), 64);
    // A new unsubscribe key: forgotten addresses stay forgotten.
    p.write("key", "an-entirely-new-key-for-the-harbour\n");
    let subscribe = p.run(&["subscribe", "ADA@example.org"]);
    assert_ne!(subscribe.code(), 0, "{}", subscribe.stdout());
    // A send holding the run lock keeps forget out.
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(p.path("newsletter.db.lock"))
        .expect("lock file");
    lock.try_lock().expect("take the run lock");
    let blocked = p.run(&["forget", "bob@example.net"]);
    assert_ne!(blocked.code(), 0);
    drop(lock);
    p.run(&["forget", "bob@example.net"]).expect_code(0);
}
