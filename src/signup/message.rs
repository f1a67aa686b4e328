//! The confirmation and welcome messages of a sign-up: short plain text in the list's
//! language, from the sign-up's own From (or the newsletter's), DKIM-signed when the
//! project signs its mail. Their bodies are Tera templates of their own
//! (`templates/signup/confirm.txt` and `welcome.txt`), which a project replaces with files
//! of the same name in its `templates/signup/` folder.

use crate::mail::dkim::Signatures;
use anyhow::{Context, Result};
use lettre::Message;
use lettre::message::{Mailbox, header::ContentType};

use crate::clock::Clock;
use crate::config::Config;
use crate::input::address::EmailAddress;
use crate::locale::Locale;
use crate::token::Signer;

/// What the messages need, loaded once when `serve` starts.
pub(crate) struct Writer {
    tera: tera::Tera,
    website: Option<String>,
    pub from: Mailbox,
    pub newsletter: String,
    pub contact: String,
    pub domain: String,
    pub dkim: Signatures,
    pub locale: Locale,
}

impl Writer {
    /// The writer, with the project's templates over the built-in ones; an error names
    /// the template file that does not parse.
    pub(crate) fn new(config: &Config, locale: Locale, dkim: Signatures) -> Result<Writer> {
        let mut tera = tera::Tera::default();
        tera.register_filter("fill", crate::render::templates::fill_filter);
        tera.register_filter("wrap", crate::render::templates::wrap_filter);
        for (name, built_in) in [
            (
                "confirm.txt",
                include_str!("../../templates/signup/confirm.txt"),
            ),
            (
                "welcome.txt",
                include_str!("../../templates/signup/welcome.txt"),
            ),
        ] {
            let own = config
                .paths
                .templates
                .as_ref()
                .map(|d| d.join("signup").join(name))
                .filter(|p| p.is_file());
            let text = match &own {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                None => built_in.to_string(),
            };
            tera.add_raw_template(name, &text).map_err(|e| {
                let origin = own.map_or_else(
                    || format!("(built-in) templates/signup/{name}"),
                    |p| p.display().to_string(),
                );
                anyhow::anyhow!("{origin}: {}", crate::render::templates::chain(&e))
            })?;
        }
        let from = config
            .signup
            .as_ref()
            .and_then(|s| s.from.as_ref())
            .unwrap_or(&config.newsletter.from);
        Ok(Writer {
            tera,
            website: config.newsletter.website.clone(),
            from: from.mailbox(),
            newsletter: config.newsletter.name.clone(),
            contact: config.newsletter.contact.as_str().to_string(),
            domain: from.address.domain().to_string(),
            dkim,
            locale,
        })
    }

    fn body(&self, name: &str, to: &EmailAddress, link: &str, hours: u64) -> Result<String> {
        let mut ctx = tera::Context::new();
        ctx.insert(
            "newsletter",
            &serde_json::json!({ "name": self.newsletter, "contact": self.contact, "website": self.website }),
        );
        ctx.insert("email", to.as_str());
        ctx.insert("link", link);
        ctx.insert("hours", &hours);
        ctx.insert("t", &self.locale.strings);
        ctx.insert("lang", &self.locale.tag);
        self.tera.render(name, &ctx).map_err(|e| {
            anyhow::anyhow!(
                "templates/signup/{name}: {}",
                crate::render::templates::chain(&e)
            )
        })
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
        let stamp = clock.epoch_seconds();
        let id = signer.message_id(
            &format!("{kind}-{stamp}-{}-{n}", std::process::id()),
            to,
            &self.domain,
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to.to_lettre()))
            .subject(subject)
            .date(clock.now())
            .message_id(Some(id))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .context("cannot build the sign-up message")?;
        self.dkim.sign(&message.formatted(), stamp)
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
        let body = self.body("confirm.txt", to, link, hours)?;
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
        let body = self.body("welcome.txt", to, "", 0)?;
        let subject = self.locale.fill("welcome_subject", &values);
        self.build(signer, "welcome", to, subject, body, clock)
    }
}
