//! What an SMTP refusal says, and about whom: one mailbox, or the sender's own setup.
//!
//! Only a reply about one mailbox may fail (and suppress) a recipient. A refusal of the
//! sender (authentication, policy, reputation, content, size, the relay's own trouble) says
//! nothing about the address it arrived with: suppressing on it would empty the list while
//! the real fault is in the sender's setup (RFC 3463 status codes; RFC 5321 §4.2).

/// The stage of a transaction a reply answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// MAIL FROM: nothing was delivered.
    Mail,
    /// RCPT TO: nothing was delivered; the one stage whose reply can be about a mailbox.
    Rcpt,
    /// The DATA command, before any content: nothing was delivered.
    Data,
    /// The content and its final dot: with a reply the outcome is known; without one
    /// (connection lost, timeout) it is not.
    Content,
}

/// What to do with the recipient whose transaction got the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The mailbox does not exist or is disabled (5.1.x, 5.2.1): fail the recipient and
    /// suppress the address for every later edition.
    BadMailbox,
    /// Refused for good, about this recipient, but not proof the mailbox is gone (a full
    /// mailbox's hard limit, an address the relay cannot carry): fail it in this edition only.
    RecipientRefused,
    /// A temporary problem with this recipient (greylisting, a full mailbox): defer it;
    /// it counts as an attempt.
    RecipientLater,
    /// The relay asks to slow down or is busy (421, 4.7.x rate limits, 452): the recipient
    /// is not charged an attempt; the run pauses, uses fewer connections, and retries.
    Throttled,
    /// The relay refuses the sender (5.7.x authentication and policy, 5.3.x system, 5.5.x
    /// protocol, 5.6.x content, 552 size, any 5xx to MAIL FROM, DATA or the final dot): the
    /// run stops, every recipient stays pending, and the report names the sender's setup.
    SenderRefused,
}

/// An enhanced status code (RFC 3463): class.subject.detail, e.g. 5.7.26.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Status {
    pub class: u16,
    pub subject: u16,
    pub detail: u16,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// The first enhanced status code in a reply's text, if it has one.
pub(crate) fn enhanced_status(text: &str) -> Option<Status> {
    text.split(|c: char| c.is_whitespace() || c == ':' || c == '(' || c == ')')
        .find_map(|word| {
            let mut parts = word.trim_end_matches([',', ';']).split('.');
            let class: u16 = parts.next()?.parse().ok()?;
            let subject: u16 = parts.next()?.parse().ok()?;
            let detail: u16 = parts.next()?.parse().ok()?;
            let fits = matches!(class, 2 | 4 | 5) && subject < 1000 && detail < 1000;
            (parts.next().is_none() && fits).then_some(Status {
                class,
                subject,
                detail,
            })
        })
}

/// Words that mark a reply without an enhanced code as being about the sender: relays
/// that refuse for policy or rate often say so only in the text.
const SENDER_WORDS: [&str; 18] = [
    "spam",
    "block",
    "blacklist",
    "denylist",
    "policy",
    "reputation",
    "authenticat",
    "relay",
    "spf",
    "dkim",
    "dmarc",
    "rate",
    "too much",
    "too many",
    "throttl",
    "slow down",
    "try again later",
    "content",
];

fn mentions_sender(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    SENDER_WORDS.iter().any(|w| lower.contains(w))
}

/// The verdict on a negative reply `code` (400–599) with `text`, given at `stage`.
pub(crate) fn classify(stage: Stage, code: u16, text: &str) -> Verdict {
    let permanent = code >= 500;
    if code == 421 {
        return Verdict::Throttled;
    }
    let status = enhanced_status(text).filter(|s| s.class == code / 100);
    if stage != Stage::Rcpt {
        // Nothing said to MAIL FROM, DATA or the content is about one mailbox.
        return if permanent {
            Verdict::SenderRefused
        } else {
            Verdict::Throttled
        };
    }
    match status {
        Some(s) => by_status(s, permanent),
        None => by_code(code, text),
    }
}

fn by_status(s: Status, permanent: bool) -> Verdict {
    match (s.subject, s.detail, permanent) {
        // Bad sender address syntax or system: the From, not the recipient.
        (1, 7 | 8, _) => {
            if permanent {
                Verdict::SenderRefused
            } else {
                Verdict::Throttled
            }
        }
        (1, _, true) | (2, 1, true) => Verdict::BadMailbox,
        // A full mailbox (5.2.2 is "persistent transient" in RFC 3463 terms), and any
        // temporary trouble with the mailbox, its system or its routing.
        (2, 2, _) | (1 | 2 | 4, _, false) => Verdict::RecipientLater,
        // The message is too long for this mailbox: the content is the problem.
        (2, 3, true) => Verdict::SenderRefused,
        // Routing to this recipient's domain, a mailing-list expansion problem: about
        // the recipient, not proof that the mailbox is gone; 5.6.7, a non-ASCII address
        // to a relay that cannot carry it (RFC 6531).
        (2 | 4, _, true) | (6, 7, true) => Verdict::RecipientRefused,
        // 3: the relay's own system; 5: protocol; 6: content; 7: security and policy.
        (_, _, true) => Verdict::SenderRefused,
        (_, _, false) => Verdict::Throttled,
    }
}

fn by_code(code: u16, text: &str) -> Verdict {
    match code {
        550 | 551 | 553 if mentions_sender(text) => Verdict::SenderRefused,
        550 | 551 | 553 => Verdict::BadMailbox,
        // RFC 5321 §4.5.3.1.10: 552 to RCPT is to be treated as 452 (too many recipients).
        552 | 452 => Verdict::Throttled,
        450 | 451 if mentions_sender(text) => Verdict::Throttled,
        450 | 451 => Verdict::RecipientLater,
        c if c >= 500 => Verdict::SenderRefused,
        _ => Verdict::Throttled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_codes_are_found_in_lettres_rendering() {
        let s = enhanced_status("permanent error (550): 5.7.26 Unauthenticated email").unwrap();
        assert_eq!(s.to_string(), "5.7.26");
        assert_eq!(enhanced_status("permanent error (550): no such user"), None);
        assert_eq!(enhanced_status("version 1.2.3.4"), None);
    }

    #[test]
    fn only_a_mailbox_fault_at_rcpt_suppresses() {
        for (code, text) in [
            (
                550,
                "5.1.1 <x@example.org>: Recipient address rejected: User unknown",
            ),
            (
                550,
                "5.2.1 The email account that you tried to reach is disabled",
            ),
            (553, "5.1.3 bad recipient address syntax"),
            (550, "mailbox unavailable"),
        ] {
            assert_eq!(
                classify(Stage::Rcpt, code, text),
                Verdict::BadMailbox,
                "{code} {text}"
            );
        }
    }

    #[test]
    fn sender_side_refusals_never_touch_the_recipient() {
        for (stage, code, text) in [
            (
                Stage::Rcpt,
                550,
                "5.7.26 Unauthenticated email is not accepted",
            ),
            (Stage::Rcpt, 500, "5.3.0 Internal error"),
            (
                Stage::Rcpt,
                554,
                "5.7.1 Service unavailable; client host blocked",
            ),
            (Stage::Rcpt, 550, "Message rejected as spam"),
            (Stage::Rcpt, 501, "5.5.4 Syntax error"),
            (Stage::Rcpt, 550, "5.1.8 Bad sender's system address"),
            (Stage::Mail, 550, "5.1.1 sender unknown"),
            (Stage::Mail, 553, "mailbox name not allowed"),
            (Stage::Data, 554, "Transaction failed"),
            (Stage::Content, 554, "5.7.1 Message rejected: content"),
            (
                Stage::Content,
                552,
                "5.3.4 Message size exceeds fixed limit",
            ),
            (Stage::Rcpt, 552, "5.2.3 Message too long"),
        ] {
            assert_eq!(
                classify(stage, code, text),
                Verdict::SenderRefused,
                "{stage:?} {code} {text}"
            );
        }
    }

    #[test]
    fn rate_limits_and_busy_relays_are_throttling() {
        for (stage, code, text) in [
            (
                Stage::Rcpt,
                450,
                "4.7.1 Error: too much mail from 127.0.0.1",
            ),
            (
                Stage::Mail,
                450,
                "4.7.1 Error: too much mail from 127.0.0.1",
            ),
            (Stage::Rcpt, 451, "4.7.0 Temporary rate limit"),
            (
                Stage::Rcpt,
                421,
                "4.7.0 Try again later, closing connection",
            ),
            (Stage::Content, 421, "Service not available"),
            (Stage::Data, 451, "4.3.0 Local error in processing"),
            (Stage::Rcpt, 452, "4.5.3 Too many recipients"),
            (Stage::Rcpt, 450, "Rate limit exceeded"),
        ] {
            assert_eq!(
                classify(stage, code, text),
                Verdict::Throttled,
                "{stage:?} {code} {text}"
            );
        }
    }

    #[test]
    fn temporary_mailbox_faults_are_deferred() {
        assert_eq!(
            classify(Stage::Rcpt, 450, "4.2.0 Greylisted"),
            Verdict::RecipientLater
        );
        assert_eq!(
            classify(Stage::Rcpt, 452, "4.2.2 Mailbox full"),
            Verdict::RecipientLater
        );
        assert_eq!(
            classify(Stage::Rcpt, 450, "mailbox busy"),
            Verdict::RecipientLater
        );
        assert_eq!(
            classify(Stage::Rcpt, 552, "5.2.2 Mailbox full"),
            Verdict::RecipientLater
        );
    }
}
