//! The providers' webhooks on `serve`: an SES bounce and complaint through SNS (signed with
//! a test key whose certificate is put in the certificate cache, as SNS signs), a Mailgun
//! bounce (HMAC), a Postmark bounce (basic auth); each tampered with is refused with a 4xx
//! and changes nothing.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine as _;
use hmac::Mac as _;
use sha2::Digest as _;

use crate::harness::{PINNED_EPOCH, Project, Sink, openssl, serve_with};

const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:harbour-bounces";
const CERT_URL: &str =
    "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem";
const MAILGUN_KEY: &str = "key-of-the-harbour-mailgun-webhooks";

/// An SNS signer: a test key, and its certificate in the cache under `CERT_URL`.
struct Sns {
    dir: tempfile::TempDir,
}

impl Sns {
    fn new(p: &Project) -> Sns {
        let dir = tempfile::tempdir().expect("tempdir");
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
                "-days",
                "3650",
                "-subj",
                "/CN=sns.amazonaws.com",
            ],
            dir.path(),
        );
        // The cache file the server looks up for CERT_URL (no network in the tests).
        let name = sha2::Sha256::digest(CERT_URL.as_bytes())[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        let cache = p.path("newsletter.db.sns-certs");
        std::fs::create_dir_all(&cache).expect("cache dir");
        std::fs::copy(
            dir.path().join("cert.pem"),
            cache.join(format!("{name}.pem")),
        )
        .expect("seed the cache");
        Sns { dir }
    }

    fn sign(&self, text: &str) -> String {
        std::fs::write(self.dir.path().join("tosign"), text).expect("write");
        let sig = openssl(
            &["dgst", "-sha256", "-sign", "key.pem", "tosign"],
            self.dir.path(),
        );
        base64::engine::general_purpose::STANDARD.encode(sig)
    }

    /// A signed SNS notification carrying `message`.
    fn notification(&self, id: &str, message: &str) -> serde_json::Value {
        let timestamp = "2026-11-27T09:00:00.000Z";
        let signed = format!(
            "Message\n{message}\nMessageId\n{id}\nTimestamp\n{timestamp}\nTopicArn\n{TOPIC}\nType\nNotification\n"
        );
        serde_json::json!({
            "Type": "Notification",
            "MessageId": id,
            "TopicArn": TOPIC,
            "Message": message,
            "Timestamp": timestamp,
            "SignatureVersion": "2",
            "Signature": self.sign(&signed),
            "SigningCertURL": CERT_URL,
            "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
        })
    }
}

impl Sns {
    /// A signed subscription confirmation, as SNS sends when the endpoint is subscribed.
    fn confirmation(&self) -> serde_json::Value {
        let (id, token, timestamp) = (
            "sns-sub",
            "2336412f37fb687f5d51e6e2425c464d",
            "2026-11-27T09:00:00.000Z",
        );
        let url = format!(
            "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={token}"
        );
        let message =
            "You have chosen to subscribe to the topic. To confirm, visit the SubscribeURL.";
        let signed = format!(
            "Message\n{message}\nMessageId\n{id}\nSubscribeURL\n{url}\nTimestamp\n{timestamp}\nToken\n{token}\nTopicArn\n{TOPIC}\nType\nSubscriptionConfirmation\n"
        );
        serde_json::json!({
            "Type": "SubscriptionConfirmation", "MessageId": id, "Token": token, "TopicArn": TOPIC,
            "Message": message, "SubscribeURL": url, "Timestamp": timestamp,
            "SignatureVersion": "2", "Signature": self.sign(&signed), "SigningCertURL": CERT_URL,
        })
    }
}

fn ses_bounce(email: &str, message_id: &str) -> String {
    serde_json::json!({
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [{
                "emailAddress": email, "action": "failed", "status": "5.1.1",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown"
            }],
            "timestamp": "2026-11-27T09:00:00.000Z",
            "feedbackId": "0100-bounce"
        },
        "mail": {
            "messageId": "0100018c-ses-id",
            "commonHeaders": { "messageId": message_id }
        }
    })
    .to_string()
}

fn ses_complaint(email: &str, message_id: &str) -> String {
    serde_json::json!({
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{ "emailAddress": email }],
            "complaintFeedbackType": "abuse",
            "feedbackId": "0100-complaint"
        },
        "mail": { "messageId": "0100018c-ses-id-2", "commonHeaders": { "messageId": message_id } }
    })
    .to_string()
}

fn mailgun(email: &str, message_id: &str, timestamp: i64, token: &str) -> serde_json::Value {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(MAILGUN_KEY.as_bytes()).expect("hmac");
    mac.update(format!("{timestamp}{token}").as_bytes());
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    serde_json::json!({
        "signature": { "timestamp": timestamp.to_string(), "token": token, "signature": signature },
        "event-data": {
            "id": format!("mg-{token}"),
            "event": "failed",
            "severity": "permanent",
            "reason": "bounce",
            "recipient": email,
            "message": { "headers": { "message-id": message_id.trim_matches(['<', '>']) } },
            "delivery-status": { "code": 550, "message": "5.1.1 The email account does not exist", "description": "" }
        }
    })
}

fn postmark(email: &str, message_id: &str) -> String {
    serde_json::json!({
        "Metadata": { "newsletter-message-id": message_id },
        "RecordType": "Bounce", "ID": 4_323_372_036_854_775_807_u64, "Type": "HardBounce", "TypeCode": 1,
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": email, "BouncedAt": "2026-11-27T09:00:00Z"
    })
    .to_string()
}

/// One POST with headers; the status.
fn post(addr: &str, path: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect to serve");
    s.set_read_timeout(Some(Duration::from_mins(1)))
        .expect("timeout");
    let extra: String = headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: hooks.harbour.example\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read");
    response
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn signed_provider_events_are_acted_on_and_tampered_ones_refused() {
    let sink = Sink::start(&[]);
    let p = Project::new();
    let emails = p.subscribers(5);
    p.use_loopback(
        sink.port,
        2,
        &format!(
            "\n[webhooks.ses]\ntopic_arns = [\"{TOPIC}\"]\n\n[webhooks.mailgun]\nsigning_key_file = \"mailgun.key\"\n\n\
             [webhooks.postmark]\nusername = \"postmark\"\npassword_file = \"postmark.pass\"\n"
        ),
    );
    p.write("mailgun.key", MAILGUN_KEY);
    p.write("postmark.pass", "hunter2-but-longer\n");
    p.run(&["send"]).expect_code(0);
    sink.wait_for(5);
    let first = p.query("SELECT id FROM edition")[0].clone();
    // Postmark reports its own message id; the metadata header carries ours back.
    assert!(
        sink.dumps()
            .iter()
            .all(|d| String::from_utf8_lossy(d).contains("X-PM-Metadata-newsletter-message-id: <")),
        "the metadata header"
    );
    // A second edition: the events below are about the first, and must say so.
    p.write(
        "articles/next.md",
        &crate::harness::article("Next week", "2026-12-03", true),
    );
    p.run_with_env(&["send"], &[("SOURCE_DATE_EPOCH", "1796374800")])
        .expect_code(0);
    sink.wait_for(10);
    let id_of = |email: &str| {
        p.query(&format!(
            "SELECT message_id FROM delivery WHERE email = '{email}' AND edition_id = '{first}'"
        ))[0]
            .clone()
    };
    let sns = Sns::new(&p);
    let (_served, addr) = serve_with(&p, &[]);
    let suppressed = || p.query("SELECT email FROM suppression ORDER BY email");
    let now: i64 = PINNED_EPOCH.parse().expect("epoch");

    // Tampered with, each refused with a 4xx, nothing changed.
    let good = sns.notification("sns-1", &ses_bounce(&emails[0], &id_of(&emails[0])));
    let mut body_changed = good.clone();
    body_changed["Message"] = ses_bounce(&emails[4], &id_of(&emails[4])).into();
    let mut bad_signature = good.clone();
    bad_signature["Signature"] = sns.sign("something else").into();
    let mut other_host = good.clone();
    other_host["SigningCertURL"] =
        "https://certs.evil.example/sns.eu-west-1.amazonaws.com.pem".into();
    let mut other_topic = sns.notification("sns-x", &ses_bounce(&emails[4], &id_of(&emails[4])));
    other_topic["TopicArn"] = "arn:aws:sns:eu-west-1:999999999999:someone-else".into();
    for (what, body) in [
        ("a changed message", &body_changed),
        ("a wrong signature", &bad_signature),
        ("a certificate on another host", &other_host),
        ("another topic", &other_topic),
    ] {
        let status = post(&addr, "/webhooks/ses", &[], &body.to_string());
        assert!((400..500).contains(&status), "{what}: {status}");
    }
    let stale = mailgun(&emails[2], &id_of(&emails[2]), now - 3600, "t-stale");
    let mut forged = mailgun(&emails[2], &id_of(&emails[2]), now, "t-forged");
    forged["signature"]["signature"] = "00".repeat(32).into();
    for (what, body) in [
        ("a stale timestamp", &stale),
        ("a wrong signature", &forged),
    ] {
        let status = post(&addr, "/webhooks/mailgun", &[], &body.to_string());
        assert!((400..500).contains(&status), "mailgun, {what}: {status}");
    }
    let wrong = base64::engine::general_purpose::STANDARD.encode("postmark:wrong");
    let status = post(
        &addr,
        "/webhooks/postmark",
        &[("Authorization", &format!("Basic {wrong}"))],
        &postmark(&emails[3], &id_of(&emails[3])),
    );
    assert_eq!(status, 401);
    assert_eq!(
        post(
            &addr,
            "/webhooks/postmark",
            &[],
            &postmark(&emails[3], &id_of(&emails[3]))
        ),
        401
    );
    assert!(suppressed().is_empty(), "{:?}", suppressed());

    // A subscription confirmation is verified (and its URL logged, never opened); one
    // whose URL was swapped is refused.
    let confirmation = sns.confirmation();
    assert_eq!(
        post(&addr, "/webhooks/ses", &[], &confirmation.to_string()),
        200
    );
    let mut swapped = confirmation.clone();
    swapped["SubscribeURL"] = "https://evil.example/confirm".into();
    assert_eq!(post(&addr, "/webhooks/ses", &[], &swapped.to_string()), 403);
    assert_eq!(p.query("SELECT COUNT(*) FROM inbound"), ["0"]);

    // Genuine: acted on.
    assert_eq!(post(&addr, "/webhooks/ses", &[], &good.to_string()), 200);
    let complaint = sns.notification("sns-2", &ses_complaint(&emails[1], &id_of(&emails[1])));
    assert_eq!(
        post(&addr, "/webhooks/ses", &[], &complaint.to_string()),
        200
    );
    let bounce = mailgun(&emails[2], &id_of(&emails[2]), now - 10, "t-good");
    assert_eq!(
        post(&addr, "/webhooks/mailgun", &[], &bounce.to_string()),
        200
    );
    // The same signed request again is a replay.
    let status = post(&addr, "/webhooks/mailgun", &[], &bounce.to_string());
    assert!((400..500).contains(&status), "replay: {status}");
    let right = base64::engine::general_purpose::STANDARD.encode("postmark:hunter2-but-longer");
    assert_eq!(
        post(
            &addr,
            "/webhooks/postmark",
            &[("Authorization", &format!("Basic {right}"))],
            &postmark(&emails[3], &id_of(&emails[3])),
        ),
        200
    );
    // SNS delivers a notification again: recorded once.
    assert_eq!(post(&addr, "/webhooks/ses", &[], &good.to_string()), 200);

    assert_eq!(suppressed(), emails[..4].to_vec());
    assert_eq!(
        p.query("SELECT email || '|' || source FROM unsubscribed"),
        [format!("{}|complaint", emails[1])]
    );
    assert_eq!(p.query("SELECT COUNT(*) FROM inbound"), ["4"]);
    // Each is tied to the edition its message belonged to (the first, not the latest),
    // by our Message-ID.
    assert_eq!(p.query("SELECT DISTINCT edition_id FROM inbound"), [first]);
}
