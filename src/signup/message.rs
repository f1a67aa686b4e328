//! The confirmation and welcome messages of a sign-up: short plain text in the list's
//! language, from the sign-up's own From (or the newsletter's), DKIM-signed when the
//! project signs its mail.

use anyhow::{Context, Result};
use lettre::Message;
use lettre::message::dkim::DkimConfig;
use lettre::message::{Mailbox, header::ContentType};

use crate::clock::Clock;
use crate::config::Config;
use crate::input::address::EmailAddress;
use crate::locale::Locale;
use crate::token::Signer;

/// What the messages need, loaded once when `serve` starts.
pub(crate) struct Writer {
    pub from: Mailbox,
    pub newsletter: String,
    pub contact: String,
    pub domain: String,
    pub dkim: Option<DkimConfig>,
    pub locale: Locale,
}

impl Writer {
    pub(crate) fn new(config: &Config, locale: Locale, dkim: Option<DkimConfig>) -> Writer {
        let from = config
            .signup
            .as_ref()
            .and_then(|s| s.from.as_ref())
            .unwrap_or(&config.newsletter.from);
        Writer {
            from: from.mailbox(),
            newsletter: config.newsletter.name.clone(),
            contact: config.newsletter.contact.as_str().to_string(),
            domain: from.address.domain().to_string(),
            dkim,
            locale,
        }
    }

    fn build(
        &self,
        signer: &Signer,
        kind: &str,
        to: &EmailAddress,
        subject: String,
        body: String,
        clock: Clock,
    ) -> Result<Vec<u8>> {
        // A Message-ID of its own for each message: a new request is a new message (the
        // process and a counter tell apart two requests in one clock tick).
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stamp = clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let id = signer.message_id(
            &format!("{kind}-{stamp}-{}-{n}", std::process::id()),
            to,
            &self.domain,
        );
        let mut message = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to.to_lettre()))
            .subject(subject)
            .date(clock.now())
            .message_id(Some(id))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .context("cannot build the sign-up message")?;
        if let Some(dkim) = &self.dkim {
            message.sign(dkim);
        }
        Ok(message.formatted())
    }

    /// The message with the confirmation link.
    pub(crate) fn confirmation(
        &self,
        signer: &Signer,
        to: &EmailAddress,
        link: &str,
        hours: u64,
        clock: Clock,
    ) -> Result<Vec<u8>> {
        let values = [
            ("newsletter", self.newsletter.as_str()),
            ("email", to.as_str()),
            ("hours", &hours.to_string()),
        ];
        let body = format!(
            "{}\n\n{link}\n\n{}\n\n-- \n{}\n{}\n",
            crate::render::plain::wrap_text(
                &self.locale.fill("confirm_text", &values),
                crate::render::plain::WIDTH
            ),
            crate::render::plain::wrap_text(
                &self.locale.fill("confirm_ignore", &values),
                crate::render::plain::WIDTH
            ),
            self.newsletter,
            self.contact
        );
        let subject = self.locale.fill("confirm_subject", &values);
        self.build(signer, "confirm", to, subject, body, clock)
    }

    /// The message that greets a confirmed reader.
    pub(crate) fn welcome(
        &self,
        signer: &Signer,
        to: &EmailAddress,
        clock: Clock,
    ) -> Result<Vec<u8>> {
        let values = [
            ("newsletter", self.newsletter.as_str()),
            ("email", to.as_str()),
        ];
        let body = format!(
            "{}\n\n-- \n{}\n{}\n",
            crate::render::plain::wrap_text(
                &self.locale.fill("welcome_text", &values),
                crate::render::plain::WIDTH
            ),
            self.newsletter,
            self.contact
        );
        let subject = self.locale.fill("welcome_subject", &values);
        self.build(signer, "welcome", to, subject, body, clock)
    }
}
