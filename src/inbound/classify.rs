//! What a message that came back is: a bounce (hard, soft, or the sender's own problem), a
//! complaint (ARF, RFC 5965), an unsubscribe request sent to the `mailto:` target, an
//! automatic reply, or none of these. Standard reports (RFC 3464) are read by their fields;
//! the many MTAs that write their own shapes are read by their text: the failed addresses,
//! the status codes and the phrases around each one. No token of ours is needed, so a
//! forwarded or rewritten bounce is read all the same.

use serde::Serialize;

use super::dsn;
use super::mime::{self, Part};
use super::text;
use crate::mail::reply::{Status, enhanced_status};

/// What one failure (or request) means for the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// The mailbox or its domain does not exist: never mail it again.
    Hard,
    /// A failure that may pass (full mailbox, delivery expired, a disabled account, a
    /// refusal without a reason): counted, suppressed after several editions in a row.
    Soft,
    /// Refused because of the sender (authentication, DMARC, blocklisted IP, rate limits,
    /// content): says nothing about the address; never suppresses.
    SenderSide,
    /// The reader reported the message as spam (a feedback-loop report).
    Complaint,
    /// The reader asked to unsubscribe by mail.
    Unsubscribe,
    /// An out-of-office or other automatic reply: ignored.
    AutoReply,
    /// Not a report about our mail: ignored.
    NotOurs,
}

impl Kind {
    /// How the state records it (`inbound.kind`).
    pub(crate) fn key(self) -> &'static str {
        match self {
            Kind::Hard => "hard",
            Kind::Soft => "soft",
            Kind::SenderSide => "sender-side",
            Kind::Complaint => "complaint",
            Kind::Unsubscribe => "unsubscribe",
            Kind::AutoReply | Kind::NotOurs => "ignored",
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Hard => "hard bounce",
            Kind::Soft => "soft bounce",
            Kind::SenderSide => "sender-side failure",
            Kind::Complaint => "complaint",
            Kind::Unsubscribe => "unsubscribe request",
            Kind::AutoReply => "automatic reply",
            Kind::NotOurs => "not a report",
        }
    }
}

/// One failed recipient, complaint or request found in a message.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Finding {
    pub kind: Kind,
    /// The address it is about, as the report names it (none for a request, whose token
    /// names it, or when the report names nobody).
    pub recipient: Option<String>,
    /// The RFC 3463 status, e.g. 5.1.1.
    pub status: Option<String>,
    /// The remote server's words, or the feedback type of a complaint.
    pub diagnostic: String,
}

/// Everything read from one message.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Reading {
    /// What the message is as a whole: the kind of its first finding, or why it has none.
    pub kind: Kind,
    pub findings: Vec<Finding>,
    /// The addresses the message was delivered to (where a return-path token is found).
    pub delivered_to: Vec<String>,
    /// Message-IDs of the returned original, when it is enclosed or quoted.
    pub original_ids: Vec<String>,
    /// The token of an unsubscribe request.
    pub request_token: Option<String>,
    /// Why the message has no finding.
    pub note: Option<String>,
}

/// How many enclosed messages deep a forwarded report is looked for.
const MAX_FORWARDS: usize = 3;

/// Reads one message.
pub(crate) fn read(raw: &[u8]) -> Reading {
    read_at(raw, 0)
}

fn read_at(raw: &[u8], forwards: usize) -> Reading {
    let message = mime::parse(raw);
    let delivered_to = delivered_to(&message);
    let original = original_headers(&message);
    let original_ids = original
        .map(|o| o.headers_named("message-id").map(str::to_string).collect())
        .unwrap_or_default();
    let mut reading = Reading {
        kind: Kind::NotOurs,
        findings: Vec::new(),
        delivered_to,
        original_ids,
        request_token: None,
        note: None,
    };
    if let Some(findings) = complaint(&message, original) {
        reading.findings = findings;
    } else if let Some(found) = bounce(&message, original) {
        match found {
            Ok(findings) => reading.findings = findings,
            Err(note) => reading.note = Some(note),
        }
    } else if let Some(request) = unsubscribe_request(&message) {
        reading.findings.push(Finding {
            kind: Kind::Unsubscribe,
            recipient: None,
            status: None,
            diagnostic: message.header("subject").unwrap_or("").to_string(),
        });
        reading.request_token = match request {
            Request::Token(t) => Some(t),
            Request::Bare => None,
        };
    } else if let Some(why) = auto_reply(&message) {
        // Who is away: reported, never acted on.
        reading.findings.push(Finding {
            kind: Kind::AutoReply,
            recipient: message
                .header("from")
                .and_then(|f| text::addresses(f).into_iter().next()),
            status: None,
            diagnostic: why,
        });
    } else {
        reading.note = Some("neither a delivery report, a complaint nor a request".into());
    }
    // A report forwarded as an attachment (by a person, a list or a rewriting relay)
    // is read inside its envelope.
    if reading.findings.is_empty()
        && forwards < MAX_FORWARDS
        && let Some(enclosed) = message
            .walk_report()
            .into_iter()
            .find(|p| matches!(p.mime_type.as_str(), "message/rfc822" | "message/global"))
    {
        let inner = read_at(&enclosed.body, forwards + 1);
        if !inner.findings.is_empty() {
            let mut delivered_to = reading.delivered_to;
            delivered_to.extend(inner.delivered_to.iter().cloned());
            reading = Reading {
                delivered_to,
                ..inner
            };
        }
    }
    // Last, a report that names nobody is about the recipient of the returned message.
    if reading.findings.is_empty()
        && reading.note.as_deref() == Some(NAMES_NOBODY)
        && let Some(to) = original.and_then(|o| o.header("to"))
        && let Some(recipient) = text::addresses(to).into_iter().next()
    {
        let text = report_text(&message);
        let status = status_in(&text).filter(|s| s.class != 2);
        reading.findings.push(Finding {
            kind: judge(status, &text, false),
            recipient: Some(recipient),
            status: status.map(|s| s.to_string()),
            diagnostic: text::one_line(&text::diagnostic_line(&text)),
        });
        reading.note = None;
    }
    if let Some(first) = reading.findings.first() {
        reading.kind = first.kind;
    }
    reading
}

const NAMES_NOBODY: &str = "a delivery report that names no failed recipient";

/// The addresses in the fields an MTA writes on delivery, and To.
fn delivered_to(message: &Part) -> Vec<String> {
    let mut out = Vec::new();
    for name in [
        "delivered-to",
        "x-original-to",
        "envelope-to",
        "x-envelope-to",
        "to",
    ] {
        for value in message.headers_named(name) {
            for address in text::addresses(value) {
                if !out.contains(&address) {
                    out.push(address);
                }
            }
        }
    }
    out
}

/// The header of the returned original: an enclosed message, or enclosed headers.
fn original_headers(message: &Part) -> Option<&Part> {
    message
        .walk()
        .into_iter()
        .find(|p| p.is_enclosed_message())
        .and_then(|p| p.children.first())
}

// ---- complaints ----------------------------------------------------------------------

/// An ARF report (RFC 5965): `multipart/report; report-type=feedback-report`, or a
/// `message/feedback-report` part anywhere; one finding per reported recipient.
fn complaint(message: &Part, original: Option<&Part>) -> Option<Vec<Finding>> {
    let report = message
        .walk()
        .into_iter()
        .find(|p| p.mime_type == "message/feedback-report")?;
    // The report's fields are read as a header block.
    let fields = mime::parse(&report.body);
    let feedback_type = fields
        .header("feedback-type")
        .unwrap_or("abuse")
        .to_string();
    let mut recipients: Vec<String> = fields
        .headers_named("original-rcpt-to")
        .chain(fields.headers_named("removal-recipient"))
        .flat_map(text::addresses)
        .collect();
    recipients.dedup();
    if recipients.is_empty()
        && let Some(to) = original.and_then(|o| o.header("to"))
    {
        recipients.extend(text::addresses(to).into_iter().take(1));
    }
    let finding = |recipient: Option<String>| Finding {
        kind: Kind::Complaint,
        recipient,
        status: None,
        diagnostic: format!("feedback type {feedback_type}"),
    };
    if recipients.is_empty() {
        // Redacted: the Message-ID of the original still finds the subscriber.
        return Some(vec![finding(None)]);
    }
    Some(recipients.into_iter().map(|r| finding(Some(r))).collect())
}

// ---- bounces -------------------------------------------------------------------------

/// A delivery report: `Some(Ok(failures))`, `Some(Err(why))` for a report that names no
/// failure, `None` for a message that is not one.
fn bounce(message: &Part, original: Option<&Part>) -> Option<Result<Vec<Finding>, String>> {
    let report_text = report_text(message);
    let mut findings = standard_reports(message, &report_text);
    let looks_like = !findings.is_empty() || looks_like_bounce(message);
    if !looks_like {
        return None;
    }
    if findings.is_empty() {
        findings = text_reports(message, original, &report_text);
    }
    if findings.is_empty() {
        return Some(Err(NAMES_NOBODY.into()));
    }
    Some(Ok(findings))
}

/// The failures listed in `message/delivery-status` parts.
fn standard_reports(message: &Part, report_text: &str) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for part in message.walk_report() {
        if !matches!(
            part.mime_type.as_str(),
            "message/delivery-status" | "message/global-delivery-status"
        ) {
            continue;
        }
        for r in dsn::recipients(&part.text()).into_iter().take(MAX_FINDINGS) {
            let action = r.action.as_deref().unwrap_or("failed");
            if matches!(action, "delivered" | "relayed" | "expanded") {
                continue;
            }
            let Some(recipient) = r.final_recipient.clone().or(r.original_recipient.clone()) else {
                continue;
            };
            // Several MTAs leave the reason out of the fields and write it in the
            // human-readable part: read the lines about this recipient there too.
            let mut diagnostic = r.diagnostic.clone().unwrap_or_default();
            let told = text::window_about(report_text, &recipient);
            if !told.is_empty() && !diagnostic.contains(told.trim()) {
                if !diagnostic.is_empty() {
                    diagnostic.push_str(" | ");
                }
                diagnostic.push_str(told.trim());
            }
            let status = r
                .status
                .as_deref()
                .and_then(enhanced_status)
                .filter(|s| s.class != 2);
            let kind = judge(status, &diagnostic, action == "delayed");
            if out
                .iter()
                .any(|f| f.recipient.as_deref() == Some(recipient.as_str()))
            {
                continue;
            }
            out.push(Finding {
                kind,
                recipient: Some(recipient),
                status: status
                    .or_else(|| status_in(&diagnostic))
                    .map(|s| s.to_string()),
                diagnostic: text::one_line(&diagnostic),
            });
        }
    }
    out
}

/// The failures a report written in prose names: each address the text gives, with the
/// lines that follow it.
fn text_reports(message: &Part, original: Option<&Part>, report_text: &str) -> Vec<Finding> {
    let mut not_recipients: Vec<String> = Vec::new();
    for name in ["from", "return-path", "reply-to", "sender"] {
        for v in message.headers_named(name) {
            not_recipients.extend(text::addresses(v));
        }
    }
    if let Some(o) = original {
        for name in ["from", "return-path", "reply-to", "sender"] {
            for v in o.headers_named(name) {
                not_recipients.extend(text::addresses(v));
            }
        }
    }
    let mut named: Vec<String> = message
        .headers_named("x-failed-recipients")
        .flat_map(text::addresses)
        .collect();
    for address in text::recipients_in(report_text) {
        if !not_recipients
            .iter()
            .any(|n| n.eq_ignore_ascii_case(&address))
            && !named.iter().any(|n| n.eq_ignore_ascii_case(&address))
        {
            named.push(address);
        }
    }
    named.truncate(MAX_FINDINGS);
    named
        .into_iter()
        .map(|recipient| {
            let mut window = text::window_about(report_text, &recipient);
            if !text::has_evidence(&window) {
                window = text::head(report_text, 8 * 1024).to_string();
            }
            let status = status_in(&window).filter(|s| s.class != 2);
            let kind = judge(status, &window, false);
            Finding {
                kind,
                recipient: Some(recipient),
                status: status.map(|s| s.to_string()),
                diagnostic: text::one_line(&text::diagnostic_line(&window)),
            }
        })
        .collect()
}

/// The human-readable text of a report: its text parts, not the returned original, cut
/// where an inline copy of the original begins; HTML only when there is no plain text.
fn report_text(message: &Part) -> String {
    let parts = message.walk_report();
    let texts: Vec<&Part> = parts
        .iter()
        .copied()
        .filter(|p| p.children.is_empty() && p.mime_type == "text/plain")
        .collect();
    let mut out = String::new();
    if texts.is_empty() {
        for p in parts
            .iter()
            .filter(|p| p.children.is_empty() && p.mime_type == "text/html")
        {
            out.push_str(&text::from_html(&p.text()));
            out.push('\n');
        }
    } else {
        for p in texts {
            out.push_str(&p.text());
            out.push('\n');
        }
    }
    let report = text::before_original(&out);
    // No report needs more prose than this; a message that has more (a line repeated
    // thousands of times) is judged by its beginning, in bounded time.
    text::head(report, MAX_REPORT_BYTES).to_string()
}

/// The most of a report's prose that is read.
const MAX_REPORT_BYTES: usize = 64 * 1024;

/// The most failures read from one message (a newsletter message has one recipient).
const MAX_FINDINGS: usize = 100;

/// Signs that a message is a delivery report even without a `message/delivery-status`.
fn looks_like_bounce(message: &Part) -> bool {
    if message.header("x-failed-recipients").is_some() {
        return true;
    }
    if message.mime_type == "multipart/report" {
        return true;
    }
    let from = message.header("from").unwrap_or("").to_ascii_lowercase();
    let daemon = [
        "mailer-daemon",
        "postmaster",
        "mail-daemon",
        "post_master",
        "mail delivery",
        "maildeliverysystem",
        "mdaemon",
        "bounce",
        "noreply",
        "no-reply",
    ]
    .iter()
    .any(|w| from.contains(w));
    let subject = message.header("subject").unwrap_or("").to_ascii_lowercase();
    let bounce_subject = [
        "undeliver",
        "undelivered",
        "delivery status",
        "delivery fail",
        "delivery notification",
        "failure notice",
        "returned mail",
        "mail delivery",
        "could not be delivered",
        "not delivered",
        "non remis",
        "nondeliverable",
        "non-deliverable",
        "delivery problem",
        "rejected",
        "mail failure",
        "message failure",
        "error",
        "failed",
        "warning: could not send",
        "delayed",
        "returned to sender",
        "unzustellbar",
        "nicht zustellbar",
    ]
    .iter()
    .any(|w| subject.contains(w));
    let null_sender = message
        .header("return-path")
        .is_some_and(|r| r.trim() == "<>" || r.trim().is_empty());
    daemon || bounce_subject || (null_sender && original_headers(message).is_some())
}

/// The first enhanced status code in prose, also where it is written `#5.4.4` or `[5.1.1]`.
fn status_in(text: &str) -> Option<Status> {
    enhanced_status(&text.replace(['#', '[', ']', '<', '>', '"'], " "))
}

// ---- the verdict on one failure ------------------------------------------------------

/// The mailbox does not exist (or never will receive).
const NO_MAILBOX: &[&str] = &[
    "user unknown",
    "unknown user",
    "no such user",
    "no such recipient",
    "no such mailbox",
    "no such account",
    "no such person",
    "unknown recipient",
    "recipient unknown",
    "recipient not found",
    "invalid recipient",
    "user not found",
    "address not found",
    "mailbox not found",
    "mailbox does not exist",
    "account does not exist",
    "address does not exist",
    "user does not exist",
    "recipient does not exist",
    "does not exist",
    "doesn't exist",
    "not exist",
    "unknown address",
    "invalid mailbox",
    "no mailbox",
    "addressee unknown",
    "bad destination mailbox",
    "unknown local part",
    "not a valid mailbox",
    "is not a valid user",
    "user invalid",
    "not our customer",
    "no longer available",
    "address couldn't be found",
    "address could not be found",
    "not listed in",
    "unknown or illegal alias",
    "user doesn't have",
    "is not a known user",
    "recipient address rejected: access denied",
    "no account by that name",
    "unrouteable address",
    "the user you are trying to contact is not receiving mail",
    "no valid recipients",
    "check if address is correct",
];

/// The domain does not exist or accepts no mail.
const NO_DOMAIN: &[&str] = &[
    "host unknown",
    "unknown host",
    "host not found",
    "domain not found",
    "no such domain",
    "domain does not exist",
    "name service error",
    "host or domain name not found",
    "hostname lookup failed",
    "nxdomain",
    "no mx",
    "host does not accept mail",
    "does not accept mail",
    "illegal host/domain",
    "find a mail exchanger",
    "domain is not reachable",
];

/// The mailbox exists but cannot take mail now.
const MAILBOX_TROUBLE: &[&str] = &[
    "mailbox full",
    "mailbox is full",
    "over quota",
    "overquota",
    "quota exceeded",
    "exceeded storage",
    "exceeds quota",
    "insufficient storage",
    "disk full",
    "mailbox size limit",
    "inactive",
    "disabled",
    "suspended",
    "temporarily",
];

/// The sender's own problem: authentication, reputation, policy, rate.
const SENDER_SIDE: &[&str] = &[
    "spf",
    "dkim",
    "dmarc",
    "authenticat",
    "unauthenticated",
    "blacklist",
    "blocklist",
    "denylist",
    "spamhaus",
    "spamcop",
    "barracuda",
    "listed",
    "rbl",
    "reputation",
    "blocked",
    "rate limit",
    "too many",
    "too much",
    "throttl",
    "try again later",
    "spam",
    "policy",
    "relay",
    "relaying",
    "reverse dns",
    "ptr record",
    "poor reputation",
    "not authorized",
    "unexpected volume",
    "complaints",
    "sending ip",
    "rdns",
    "dns ptr",
    "access denied",
    "not allowed",
    "after ehlo",
    "after helo",
    "purported responsible",
    "protocol violation",
    "weren't sent",
    "internet service provider",
    // Amazon SES refusing an unverified sender identity.
    "identities failed",
    "is not verified",
];

/// Words that put the fault on the sender whatever the status says: authentication,
/// the sending IP's reputation, the sender's own address.
const SENDER_FIRST: &[&str] = &[
    "spf",
    "dkim",
    "dmarc",
    "authenticat",
    "blacklist",
    "blocklist",
    "denylist",
    "spamhaus",
    "spamcop",
    "reputation",
    "sender address",
    "domain of sender",
    "sender domain",
    "sender rejected",
    "sender verify",
    "ip address blocked",
    "your ip",
];

/// Words that take the proof away from "does not exist".
const NOT_PROOF: &[&str] = &[
    "may not exist",
    "permission to post",
    // Postfix's word for a local delivery program that failed: the program, not the address.
    "command output",
];

/// The verdict on one failure from its status code and the words around it.
pub(crate) fn judge(status: Option<Status>, text: &str, delayed: bool) -> Kind {
    let t = text::normalise(text);
    let has = |list: &[&str]| list.iter().any(|w| t.contains(w));
    let detail = status.map(|s| (s.class, s.subject, s.detail));
    if matches!(detail, Some((5, 7, 23 | 25 | 26 | 515) | (5 | 4, 1, 7 | 8))) {
        return Kind::SenderSide;
    }
    if has(SENDER_FIRST) {
        return Kind::SenderSide;
    }
    if delayed || status.is_some_and(|s| s.class == 4) {
        return if has(SENDER_SIDE) {
            Kind::SenderSide
        } else {
            Kind::Soft
        };
    }
    if has(NOT_PROOF) {
        return Kind::Soft;
    }
    let no_mailbox = has(NO_MAILBOX) || has(NO_DOMAIN);
    let explicit = matches!(detail, Some((5, 1, 1 | 2 | 6 | 10)));
    if no_mailbox && !has(MAILBOX_TROUBLE) {
        // "Unknown user" in answer to the message's content is a filter's answer (some
        // carriers' way of refusing mail the reader filtered): proof only with a 5.1.x.
        if text::refused_at_data(text) && !explicit {
            return Kind::Soft;
        }
        return Kind::Hard;
    }
    if has(MAILBOX_TROUBLE) {
        return Kind::Soft;
    }
    if has(SENDER_SIDE) {
        return Kind::SenderSide;
    }
    match status {
        Some(s) => match (s.subject, s.detail) {
            (1, 1 | 2 | 3 | 6 | 10) | (4, 4) => Kind::Hard,
            (3 | 5 | 6 | 7, _) => Kind::SenderSide,
            _ => Kind::Soft,
        },
        None => Kind::Soft,
    }
}

// ---- requests and automatic replies ---------------------------------------------------

/// What a message asking to unsubscribe carries.
enum Request {
    /// `unsubscribe TOKEN`.
    Token(String),
    /// `unsubscribe` alone: nobody is named, so nobody can be unsubscribed.
    Bare,
}

/// A message whose subject (or first line) is `unsubscribe TOKEN`.
fn unsubscribe_request(message: &Part) -> Option<Request> {
    let subject = message.header("subject").unwrap_or("").trim().to_string();
    let first_line = message
        .walk()
        .into_iter()
        .find(|p| p.children.is_empty() && p.mime_type == "text/plain")
        .map(|p| {
            p.text()
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    for candidate in [subject.as_str(), first_line.as_str()] {
        let mut words = candidate.split_whitespace();
        if words
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("unsubscribe"))
        {
            return Some(
                words
                    .next()
                    .map_or(Request::Bare, |t| Request::Token(t.to_string())),
            );
        }
    }
    None
}

/// Why a message is an automatic reply (RFC 3834 and what vacation responders write).
fn auto_reply(message: &Part) -> Option<String> {
    let auto_submitted = message
        .header("auto-submitted")
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| v != "no");
    if let Some(v) = auto_submitted {
        return Some(format!("Auto-Submitted: {v}"));
    }
    for name in ["x-autoreply", "x-autorespond", "x-autoresponder"] {
        if message.header(name).is_some() {
            return Some(format!("{name} header"));
        }
    }
    let precedence = message
        .header("precedence")
        .unwrap_or("")
        .to_ascii_lowercase();
    if precedence.contains("auto_reply") {
        return Some("Precedence: auto_reply".into());
    }
    let subject = message.header("subject").unwrap_or("").to_ascii_lowercase();
    [
        "auto:",
        "automatic reply",
        "autoreply",
        "auto-reply",
        "auto reply",
        "out of office",
        "out of the office",
        "vacation",
        "abwesenheit",
        "réponse automatique",
        "risposta automatica",
        "respuesta automática",
    ]
    .iter()
    .find(|w| subject.contains(*w))
    .map(|w| format!("the subject says {w:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: &str) -> Option<Status> {
        enhanced_status(s)
    }

    #[test]
    fn the_verdict_weighs_the_status_and_the_words() {
        let v = |st: &str, text: &str| judge(status(st), text, false);
        assert_eq!(
            v("5.1.1", "550 5.1.1 <a@b.example>: User unknown"),
            Kind::Hard
        );
        assert_eq!(v("5.1.10", "556 5.1.10 domain accepts no mail"), Kind::Hard);
        assert_eq!(v("5.0.0", "550 Host unknown"), Kind::Hard);
        assert_eq!(v("5.2.2", "552 5.2.2 Mailbox full"), Kind::Soft);
        assert_eq!(v("4.4.7", "delivery time expired"), Kind::Soft);
        assert_eq!(
            v(
                "5.7.26",
                "550 5.7.26 Unauthenticated email is not accepted due to DMARC policy"
            ),
            Kind::SenderSide
        );
        assert_eq!(
            v("5.7.1", "550 5.7.1 IP address blacklisted by recipient"),
            Kind::SenderSide
        );
        // "User unknown" for a mailbox full of mail is not proof it is gone.
        assert_eq!(
            v("5.1.1", "550 5.1.1 user unknown: mailbox full"),
            Kind::Soft
        );
        // Said to the message's content, not to RCPT: a filter, not a missing mailbox.
        assert_eq!(
            v(
                "5.0.0",
                "host mx said: 550 Unknown user a@b.example (in reply to end of DATA command)"
            ),
            Kind::Soft
        );
        assert_eq!(v("5.0.0", "550 : User unknown"), Kind::Soft);
        // The sender's own address refused.
        assert_eq!(
            v("5.1.8", "553 5.1.8 Domain of sender address does not exist"),
            Kind::SenderSide
        );
    }

    #[test]
    fn each_kind_of_message_is_told_apart() {
        let dsn = b"From: MAILER-DAEMON@mx.example\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx\n\nFinal-Recipient: rfc822; ada@example.org\nAction: failed\nStatus: 5.1.1\n--b--\n";
        let r = read(dsn);
        assert_eq!(r.kind, Kind::Hard);
        assert_eq!(r.findings[0].recipient.as_deref(), Some("ada@example.org"));
        let delayed = String::from_utf8_lossy(dsn).replace(
            "Action: failed\nStatus: 5.1.1",
            "Action: delayed\nStatus: 4.4.1",
        );
        assert_eq!(read(delayed.as_bytes()).kind, Kind::Soft);
        let request = b"From: ada@example.org\nTo: unsubscribe@harbour.example\nSubject: unsubscribe abc.def\n\n";
        let r = read(request);
        assert_eq!(r.kind, Kind::Unsubscribe);
        assert_eq!(r.request_token.as_deref(), Some("abc.def"));
        let away = b"From: ada@example.org\nSubject: Out of Office: back Monday\n\nAway.\n";
        assert_eq!(read(away).kind, Kind::AutoReply);
        let letter = b"From: ada@example.org\nSubject: Loved the ferry piece\n\nThanks!\n";
        assert_eq!(read(letter).kind, Kind::NotOurs);
    }
}
