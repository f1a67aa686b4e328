//! Renders one recipient's subject, HTML and text from the templates. Everything that is the
//! same for every recipient goes into the base context once per edition.

use serde::Serialize;
use tera::Context;

use crate::address::EmailAddress;
use crate::config::Config;
use crate::edition::Edition;
use crate::problems::Problem;
use crate::subscribers::Subscriber;
use crate::templates::{self, Templates};
use crate::token::Signer;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
}

pub struct Composer<'a> {
    templates: &'a Templates,
    base: Context,
    signer: &'a Signer,
    list_id: String,
    unsubscribe_url: String,
    greeting_fallback: String,
}

#[derive(Serialize)]
struct NewsletterView<'a> {
    name: &'a str,
    contact: &'a str,
    website: Option<&'a str>,
    list_id: &'a str,
}

#[derive(Serialize)]
struct EditionView<'a> {
    id: &'a str,
    date: String,
    date_iso: String,
}

#[derive(Serialize)]
struct ArticleView<'a> {
    id: &'a str,
    title: &'a str,
    date: String,
    date_iso: String,
    link: &'a str,
    summary: &'a str,
    author: Option<&'a str>,
    tags: &'a [String],
    image: Option<&'a crate::articles::Image>,
    body_html: &'a str,
    body_text: &'a str,
}

#[derive(Serialize)]
struct SubscriberView<'a> {
    email: &'a str,
    name: Option<&'a str>,
    /// The name, or the configured fallback ("reader") when there is none.
    greeting: &'a str,
}

fn human_date(d: chrono::NaiveDate) -> String {
    d.format("%-d %B %Y").to_string()
}

impl<'a> Composer<'a> {
    pub fn new(
        config: &Config,
        edition: &Edition,
        templates: &'a Templates,
        signer: &'a Signer,
    ) -> Self {
        let n = &config.newsletter;
        let mut base = Context::new();
        base.insert(
            "newsletter",
            &NewsletterView {
                name: &n.name,
                contact: n.contact.as_str(),
                website: n.website.as_deref(),
                list_id: &n.list_id,
            },
        );
        base.insert(
            "edition",
            &EditionView {
                id: &edition.id,
                date: human_date(edition.date),
                date_iso: edition.date.to_string(),
            },
        );
        let articles: Vec<ArticleView<'_>> = edition
            .articles
            .iter()
            .map(|a| ArticleView {
                id: &a.id,
                title: &a.title,
                date: human_date(a.date),
                date_iso: a.date.to_string(),
                link: &a.link,
                summary: &a.summary,
                author: a.author.as_deref(),
                tags: &a.tags,
                image: a.image.as_ref(),
                body_html: &a.body_html,
                body_text: &a.body_markdown,
            })
            .collect();
        base.insert("articles", &articles);
        Composer {
            templates,
            base,
            signer,
            list_id: n.list_id.clone(),
            unsubscribe_url: config.unsubscribe.url.clone(),
            greeting_fallback: n.greeting_fallback.clone(),
        }
    }

    /// This subscriber's own unsubscribe link.
    pub fn unsubscribe_url(&self, email: &EmailAddress) -> String {
        self.unsubscribe_url.replace(
            "{token}",
            &self.signer.unsubscribe_token(&self.list_id, email),
        )
    }

    pub fn render(&self, subscriber: &Subscriber) -> Result<Rendered, Problem> {
        let mut ctx = self.base.clone();
        let name = subscriber.name.as_ref().map(|n| n.as_str());
        ctx.insert(
            "subscriber",
            &SubscriberView {
                email: subscriber.email.as_str(),
                name,
                greeting: name.unwrap_or(&self.greeting_fallback),
            },
        );
        ctx.insert("unsubscribe_url", &self.unsubscribe_url(&subscriber.email));
        let subject = self.templates.render(templates::SUBJECT, &ctx)?;
        let subject = subject.trim();
        if subject.is_empty() || subject.chars().any(char::is_control) {
            return Err(Problem::new(
                std::path::Path::new(templates::SUBJECT),
                format!("the subject must render to one non-empty line, got {subject:?}"),
            ));
        }
        Ok(Rendered {
            subject: subject.to_string(),
            html: self.templates.render(templates::HTML, &ctx)?,
            text: self.templates.render(templates::TEXT, &ctx)?,
        })
    }
}
