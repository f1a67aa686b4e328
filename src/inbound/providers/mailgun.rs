//! Mailgun's webhooks: a JSON body whose `signature` is HMAC-SHA256, under the webhook
//! signing key, of its timestamp and token. A timestamp outside the replay window, or a
//! token seen before, is refused.

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Event, Refusal, bracketed, text};
use crate::inbound::classify::{Kind, judge};
use crate::mail::reply::enhanced_status;

/// A signature older or newer than this is refused (Mailgun's own advice).
pub(crate) const WINDOW_SECS: i64 = 5 * 60;

/// Tokens seen within the window: the same signed request twice is a replay.
#[derive(Default)]
pub(crate) struct Seen(Mutex<HashMap<String, i64>>);

impl Seen {
    /// True the first time; forgets tokens older than the window.
    fn first(&self, token: &str, now: i64) -> bool {
        let Ok(mut seen) = self.0.lock() else {
            return false;
        };
        seen.retain(|_, at| now - *at <= 2 * WINDOW_SECS);
        seen.insert(token.to_string(), now).is_none()
    }
}

/// Checks the signature and reads the event.
pub(crate) fn read(body: &[u8], key: &str, now: i64, seen: &Seen) -> Result<Vec<Event>, Refusal> {
    let json: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Refusal::new(400, format!("the body is not JSON: {e}")))?;
    let signature = json
        .get("signature")
        .ok_or_else(|| Refusal::new(401, "no signature"))?;
    let (Some(timestamp), Some(token), Some(given)) = (
        text(signature, "timestamp"),
        text(signature, "token"),
        text(signature, "signature"),
    ) else {
        return Err(Refusal::new(
            401,
            "the signature lacks timestamp, token or signature",
        ));
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
        return Err(Refusal::new(500, "the signing key cannot be used"));
    };
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    let expected = crate::token::hex(&mac.finalize().into_bytes());
    if !super::same(expected.as_bytes(), given.to_ascii_lowercase().as_bytes()) {
        return Err(Refusal::new(401, "the signature does not match"));
    }
    let at: i64 = timestamp
        .parse()
        .map_err(|_| Refusal::new(401, "the timestamp is not a number"))?;
    if (now - at).abs() > WINDOW_SECS {
        return Err(Refusal::new(
            401,
            format!(
                "the timestamp is {} s from now, outside the {WINDOW_SECS} s window",
                now - at
            ),
        ));
    }
    if !seen.first(token, now) {
        return Err(Refusal::new(
            401,
            "this signature was used before (a replay)",
        ));
    }
    let data = json
        .get("event-data")
        .ok_or_else(|| Refusal::new(400, "no event-data"))?;
    Ok(event(data, token).into_iter().collect())
}

fn event(data: &serde_json::Value, token: &str) -> Option<Event> {
    let email = text(data, "recipient")?.to_string();
    let delivery = data.get("delivery-status");
    let code = delivery
        .and_then(|d| d.get("code"))
        .map(ToString::to_string);
    let words = [
        delivery.and_then(|d| text(d, "message")),
        delivery.and_then(|d| text(d, "description")),
        text(data, "reason"),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    let diagnostic = format!("{} {words}", code.unwrap_or_default())
        .trim()
        .to_string();
    let status = enhanced_status(&diagnostic);
    let kind = match text(data, "event")? {
        "failed" => {
            let verdict = judge(status, &diagnostic, false);
            match (text(data, "severity"), verdict) {
                (_, Kind::SenderSide) => Kind::SenderSide,
                // Mailgun suppressed the address itself after earlier bounces.
                (_, _) if text(data, "reason") == Some("suppress-bounce") => Kind::Hard,
                (Some("permanent"), _) => Kind::Hard,
                _ => Kind::Soft,
            }
        }
        "complained" => Kind::Complaint,
        "unsubscribed" => Kind::Unsubscribe,
        _ => return None,
    };
    let message_id = data
        .get("message")
        .and_then(|m| m.get("headers"))
        .and_then(|h| text(h, "message-id"))
        .map(bracketed);
    let id = text(data, "id").unwrap_or(token);
    Some(Event {
        id: format!("mailgun:{id}"),
        kind,
        email,
        status: status.map(|s| s.to_string()),
        diagnostic,
        message_id,
    })
}
