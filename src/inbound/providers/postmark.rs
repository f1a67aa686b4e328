//! Postmark's webhooks: authenticated by the basic-auth user and password set in the
//! webhook's URL; one bounce, complaint or subscription change per request.

use base64::Engine as _;

use super::{Event, Refusal, text};
use crate::inbound::classify::Kind;
use crate::mail::reply::enhanced_status;

/// Checks the credentials, then reads the event.
pub(crate) fn read(
    authorization: Option<&str>,
    body: &[u8],
    user: &str,
    password: &str,
) -> Result<Vec<Event>, Refusal> {
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let given = authorization
        .and_then(|a| {
            a.strip_prefix("Basic ")
                .or_else(|| a.strip_prefix("basic "))
        })
        .unwrap_or("")
        .trim();
    if !super::same(given.as_bytes(), expected.as_bytes()) {
        return Err(Refusal::new(401, "wrong or missing credentials"));
    }
    let json: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Refusal::new(400, format!("the body is not JSON: {e}")))?;
    Ok(event(&json).into_iter().collect())
}

fn event(json: &serde_json::Value) -> Option<Event> {
    let email = text(json, "Email")?.to_string();
    let record = text(json, "RecordType").unwrap_or("");
    let kind = match (record, text(json, "Type").unwrap_or("")) {
        ("SpamComplaint", _) | (_, "SpamComplaint") => Kind::Complaint,
        (_, "HardBounce" | "BadEmailAddress" | "ManuallyDeactivated") => Kind::Hard,
        (_, "SoftBounce" | "Transient" | "DnsError" | "Undeliverable") => Kind::Soft,
        (_, "Blocked" | "SpamNotification" | "SMTPApiError" | "ContentRelated") => Kind::SenderSide,
        (_, "Unsubscribe") => Kind::Unsubscribe,
        (_, "AutoResponder" | "OpenRelayTest" | "VirusNotification") => Kind::AutoReply,
        ("SubscriptionChange", _) if json.get("SuppressSending") == Some(&true.into()) => {
            // Postmark suppressed the address (a bounce, a complaint, by hand).
            Kind::Hard
        }
        _ => return None,
    };
    let diagnostic = [text(json, "Description"), text(json, "Details")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let id = json
        .get("ID")
        .map(ToString::to_string)
        .or_else(|| text(json, "MessageID").map(str::to_string))
        .unwrap_or_default();
    Some(Event {
        id: format!("postmark:{record}:{id}"),
        kind,
        email,
        status: enhanced_status(&diagnostic).map(|s| s.to_string()),
        diagnostic,
        message_id: json
            .get("Metadata")
            .and_then(|m| text(m, "newsletter-message-id"))
            .map(super::bracketed),
    })
}
