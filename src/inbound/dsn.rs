//! The fields of a delivery status notification (RFC 3464): one group for the message,
//! then one group per recipient, each a block of `Name: value` lines.

/// What a DSN says about one recipient.
#[derive(Debug, Default, Clone)]
pub(crate) struct RecipientReport {
    /// The address from `Final-Recipient` (or `Original-Recipient` when that is missing).
    pub final_recipient: Option<String>,
    pub original_recipient: Option<String>,
    /// failed, delayed, delivered, relayed, expanded (lower case).
    pub action: Option<String>,
    /// The RFC 3463 status as written, e.g. 5.1.1.
    pub status: Option<String>,
    /// The remote MTA's reply, without its type (`smtp;`).
    pub diagnostic: Option<String>,
}

/// The per-recipient groups of a `message/delivery-status` body.
pub(crate) fn recipients(body: &str) -> Vec<RecipientReport> {
    let mut out = Vec::new();
    for group in groups(body) {
        let mut r = RecipientReport::default();
        for (name, value) in group {
            match name.as_str() {
                "final-recipient" | "x-actual-recipient" if r.final_recipient.is_none() => {
                    r.final_recipient = address_of(&value);
                }
                "original-recipient" => r.original_recipient = address_of(&value),
                "action" => r.action = Some(value.trim().to_ascii_lowercase()),
                "status" => r.status = Some(value.trim().to_string()),
                "diagnostic-code" => r.diagnostic = Some(without_type(&value)),
                _ => {}
            }
        }
        if r.final_recipient.is_some() || r.original_recipient.is_some() {
            out.push(r);
        }
    }
    out
}

/// Blocks of fields separated by empty lines, continuation lines unfolded.
fn groups(body: &str) -> Vec<Vec<(String, String)>> {
    let mut out: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in body.lines() {
        if line.trim().is_empty() {
            if out.last().is_some_and(|g| !g.is_empty()) {
                out.push(Vec::new());
            }
            continue;
        }
        let Some(group) = out.last_mut() else {
            continue;
        };
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = group.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            group.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    out.retain(|g| !g.is_empty());
    out
}

/// `rfc822; ada@example.org` → `ada@example.org`.
fn address_of(value: &str) -> Option<String> {
    let bare = without_type(value);
    let bare = bare
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    // A source route (`@relay.example:ada@example.org`, RFC 5321 §4.1.2) names the relay
    // first; the mailbox is after the colon.
    let bare = match bare.split_once(':') {
        Some((route, mailbox)) if route.starts_with('@') => mailbox.trim(),
        _ => bare,
    };
    // `@mx.example.org` alone names a host, not a mailbox.
    (bare.contains('@') && !bare.starts_with('@')).then(|| bare.to_string())
}

/// Drops the `type;` in front of a DSN value (`smtp; 550 …`, `rfc822; …`).
fn without_type(value: &str) -> String {
    match value.split_once(';') {
        Some((kind, rest))
            if !kind.is_empty()
                && kind
                    .trim()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-') =>
        {
            rest.trim().to_string()
        }
        _ => value.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_recipient_group_is_read() {
        let body = "Reporting-MTA: dns; mx.example\n\nFinal-Recipient: rfc822; r@mx.example\nOriginal-Recipient: rfc822;ada@example.org\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 <ada@example.org>:\n    user unknown\n\nFinal-Recipient: RFC822; <bo@example.org>\nAction: delayed\nStatus: 4.4.7\n";
        let r = recipients(body);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].final_recipient.as_deref(), Some("r@mx.example"));
        assert_eq!(r[0].original_recipient.as_deref(), Some("ada@example.org"));
        assert_eq!(r[0].action.as_deref(), Some("failed"));
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("550 5.1.1 <ada@example.org>: user unknown")
        );
        assert_eq!(r[1].final_recipient.as_deref(), Some("bo@example.org"));
        assert_eq!(r[1].status.as_deref(), Some("4.4.7"));
        let routed = recipients(
            "Final-Recipient: rfc822; <@mx.example.org:ada@example.org>\nAction: failed\n",
        );
        assert_eq!(
            routed[0].final_recipient.as_deref(),
            Some("ada@example.org")
        );
    }
}
