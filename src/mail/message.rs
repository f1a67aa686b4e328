//! Turns a rendered digest into the exact bytes that go on the wire: multipart/alternative,
//! the list headers, a stable Message-ID and a boundary derived from the message's identity,
//! so the same inputs and clock give the same bytes.

use crate::mail::dkim::Signatures;
use anyhow::{Context, Result};
use lettre::Message;
use lettre::address::Envelope;
use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};

use crate::clock::Clock;
use crate::config::Config;
use crate::input::subscribers::Subscriber;
use crate::render::compose::Encoded;
use crate::token::Signer;

/// What every message of an edition shares, computed once.
pub struct Mailer<'a> {
    from: Mailbox,
    reply_to: Option<Mailbox>,
    list_id: String,
    /// The list id as configured, for tokens and Feedback-ID.
    list: String,
    unsubscribe_mailto: Option<String>,
    help_url: Option<String>,
    /// The return path's base (`[bounces] address`), split at the `@`.
    bounces: Option<(String, String)>,
    /// With Postmark's webhooks: each message's Message-ID as Postmark metadata, which
    /// its bounce and complaint events carry back (it reports its own id otherwise).
    postmark_metadata: bool,
    /// `[archive] url`: the List-Archive header (RFC 2369).
    archive_url: Option<String>,
    domain: String,
    edition_id: String,
    signer: &'a Signer,
    clock: Clock,
    dkim: Option<&'a Signatures>,
}

/// One message ready to send: its envelope, its id and its bytes.
pub struct Outgoing {
    pub to: crate::input::address::EmailAddress,
    pub envelope: Envelope,
    pub message_id: String,
    pub bytes: Vec<u8>,
}

impl<'a> Mailer<'a> {
    pub fn new(config: &Config, edition_id: &str, signer: &'a Signer, clock: Clock) -> Self {
        let n = &config.newsletter;
        let name = n.name.replace(['"', '\\'], "");
        let list_id = if name.is_ascii() && !name.is_empty() {
            format!("\"{name}\" <{}>", n.list_id)
        } else {
            format!("<{}>", n.list_id)
        };
        Mailer {
            from: n.from.mailbox(),
            reply_to: n
                .reply_to
                .as_ref()
                .map(super::super::input::address::NamedAddress::mailbox),
            list_id,
            list: n.list_id.clone(),
            unsubscribe_mailto: config.unsubscribe.mailto.as_ref().map(ToString::to_string),
            help_url: n.help_url.clone(),
            bounces: config.bounces.address.as_ref().and_then(|b| {
                b.as_str()
                    .rsplit_once('@')
                    .map(|(l, d)| (l.to_string(), d.to_string()))
            }),
            postmark_metadata: config.webhooks.postmark.is_some(),
            archive_url: config.archive.as_ref().and_then(|a| a.url.clone()),
            domain: n.from.address.domain().to_string(),
            edition_id: edition_id.to_string(),
            signer,
            // One Date for every message of the run.
            clock: clock.frozen(),
            dkim: None,
        }
    }

    /// Messages left unsigned: the caller signs them (on other threads) with the same keys
    /// and `signing_time`.
    #[must_use]
    pub fn unsigned(mut self) -> Self {
        self.dkim = None;
        self
    }

    /// The `t=` of every signature of the run: the run's frozen clock.
    pub fn signing_time(&self) -> u64 {
        self.clock.epoch_seconds()
    }

    /// Signs every message with these DKIM keys.
    pub fn with_dkim(mut self, dkim: &'a Signatures) -> Self {
        self.dkim = Some(dkim);
        self
    }

    /// The Message-ID `message` gives `to`: stable per edition and address.
    pub fn message_id(&self, to: &Subscriber) -> String {
        self.signer
            .message_id(&self.edition_id, &to.email, &self.domain)
    }

    /// The message to `to`, carrying `message_id` (what `Mailer::message_id` gives `to`).
    pub fn message(
        &self,
        to: &Subscriber,
        encoded: &Encoded,
        message_id: String,
    ) -> Result<Outgoing> {
        let unsubscribe_url = &encoded.unsubscribe_url;
        let recipient = Mailbox::new(
            to.name.as_ref().map(|n| n.as_str().to_string()),
            to.email.to_lettre(),
        );
        let mut list_unsubscribe = format!("<{unsubscribe_url}>");
        if let Some(mailto) = &self.unsubscribe_mailto {
            // The recipient's own token in the subject: a request by mail can only
            // unsubscribe the address it was sent to.
            let token = self.signer.unsubscribe_token(&self.list, &to.email);
            list_unsubscribe =
                format!("{list_unsubscribe}, <mailto:{mailto}?subject=unsubscribe%20{token}>");
        }
        let builder = Message::builder().from(self.from.clone()).to(recipient);
        let mut builder = match folded_subject(&encoded.subject) {
            Some(folded) => builder.raw_header(HeaderValue::dangerous_new_pre_encoded(
                HeaderName::new_from_ascii_str("Subject"),
                encoded.subject.clone(),
                folded,
            )),
            None => builder.subject(encoded.subject.clone()),
        }
        .date(self.clock.now())
        .message_id(Some(message_id.clone()))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Id"),
            self.list_id.clone(),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe"),
            list_unsubscribe,
        ))
        // RFC 8058 one-click: the https URL answers a POST of exactly this body.
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
            "List-Unsubscribe=One-Click".to_string(),
        ))
        // Gmail's feedback loop groups complaints by these fields; the last names the sender.
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Feedback-ID"),
            format!("{}:digest:{}", self.edition_id, self.list),
        ));
        if let Some(url) = &self.archive_url {
            builder = builder.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Archive"),
                format!("<{url}>"),
            ));
        }
        if self.postmark_metadata {
            builder = builder.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-PM-Metadata-newsletter-message-id"),
                message_id.clone(),
            ));
        }
        if let Some(help) = &self.help_url {
            builder = builder.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Help"),
                format!("<{help}>"),
            ));
        }
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        // The parts arrive quoted-printable encoded (once per edition, see `compose`);
        // lettre only frames them.
        let part = |kind: ContentType, qp: &[u8]| {
            SinglePart::builder()
                .header(kind)
                .body(Body::dangerous_pre_encoded(
                    qp.to_vec(),
                    ContentTransferEncoding::QuotedPrintable,
                ))
        };
        let body = MultiPart::alternative()
            .boundary(self.signer.boundary(&self.edition_id, &to.email))
            .singlepart(part(ContentType::TEXT_PLAIN, &encoded.text))
            .singlepart(part(ContentType::TEXT_HTML, &encoded.html));
        let message = builder
            .multipart(body)
            .with_context(|| format!("cannot build the message to {}", to.email))?;
        let envelope = match &self.bounces {
            // VERP: the return path names this message, so what comes back says whose it was.
            Some((local, domain)) => {
                let token = self.signer.verp_token(&self.edition_id, &to.email);
                let sender = format!("{local}+{token}@{domain}")
                    .parse::<lettre::Address>()
                    .with_context(|| format!("the return path for {}", to.email))?;
                Envelope::new(Some(sender), vec![to.email.to_lettre()])
                    .with_context(|| format!("the envelope for {}", to.email))?
            }
            None => message.envelope().clone(),
        };
        Ok(Outgoing {
            to: to.email.clone(),
            envelope,
            message_id,
            bytes: match self.dkim {
                Some(dkim) if !dkim.is_empty() => {
                    dkim.sign(&message.formatted(), self.clock.epoch_seconds())?
                }
                _ => message.formatted(),
            },
        })
    }
}

/// Bytes of text per encoded word: 45 bytes of base64 are 60 characters, so each
/// `=?utf-8?b?…?=` stays within a 78-character line (RFC 2047 §2).
const WORD_BYTES: usize = 45;

/// A subject that lettre would leave on one over-long line (it folds only at spaces, and
/// leaves ASCII unencoded), as RFC 2047 encoded words on folded lines; `None` when every
/// run between spaces is short enough to fold as it is.
fn folded_subject(subject: &str) -> Option<String> {
    use base64::Engine as _;
    if subject.split(' ').all(|word| word.len() <= 60) {
        return None;
    }
    let mut words = Vec::new();
    let mut start = 0;
    while start < subject.len() {
        let mut end = (start + WORD_BYTES).min(subject.len());
        while !subject.is_char_boundary(end) {
            end -= 1;
        }
        let chunk = base64::engine::general_purpose::STANDARD.encode(&subject[start..end]);
        words.push(format!("=?utf-8?b?{chunk}?="));
        start = end;
    }
    Some(words.join("\r\n "))
}

#[cfg(test)]
mod tests {
    use super::folded_subject;

    #[test]
    fn a_subject_without_spaces_is_folded_into_encoded_words() {
        assert_eq!(folded_subject("Harbour Weekly: ferries"), None);
        let long = "Ü".repeat(300);
        let folded = folded_subject(&long).unwrap();
        assert!(folded.split("\r\n").all(|l| l.len() <= 78), "{folded}");
        let decoded: String = folded
            .split("\r\n ")
            .map(|w| {
                use base64::Engine as _;
                let b64 = w.trim_start_matches("=?utf-8?b?").trim_end_matches("?=");
                String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .unwrap(),
                )
                .unwrap()
            })
            .collect();
        assert_eq!(decoded, long);
    }
}
