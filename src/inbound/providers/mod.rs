//! Bounces and complaints as the sending providers report them, through their webhooks:
//! Amazon SES (through SNS, `sns.rs`), Mailgun (`mailgun.rs`) and Postmark (`postmark.rs`).
//! Each checks the provider's authentication first; nothing unauthenticated is read
//! further. What they report becomes `Event`s, acted on as mail that comes back is.

pub(crate) mod mailgun;
pub(crate) mod postmark;
pub(crate) mod sns;

use super::classify::Kind;

/// One event a provider reported about one recipient.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    /// The provider and its id for the event: a delivery of it again is recognised.
    pub id: String,
    pub kind: Kind,
    pub email: String,
    pub status: Option<String>,
    pub diagnostic: String,
    /// Our Message-ID, when the provider passes it back.
    pub message_id: Option<String>,
}

/// Why a webhook request was refused: a 4xx status and what to say.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub status: u16,
    pub why: String,
}

impl Refusal {
    pub(crate) fn new(status: u16, why: impl Into<String>) -> Refusal {
        Refusal {
            status,
            why: why.into(),
        }
    }
}

/// `<id@host>` whether or not the provider kept the angle brackets.
pub(crate) fn bracketed(id: &str) -> String {
    let id = id.trim();
    if id.starts_with('<') {
        id.to_string()
    } else {
        format!("<{id}>")
    }
}

/// A string field of a JSON object.
pub(crate) fn text<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(serde_json::Value::as_str)
}

/// Constant-time equality of two byte strings (for secrets and MACs).
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
