//! Amazon SES bounce and complaint notifications, delivered by SNS. A message is read only
//! when its signature (`SignatureVersion` 2: RSA with SHA-256) verifies under the certificate
//! named by `SigningCertURL`, which must be at `https://sns.REGION.amazonaws.com/…pem`; a
//! certificate is fetched from there once and kept beside the state. Only the configured
//! topics are accepted: anyone can create an SNS topic and have AWS sign its messages.
//! A subscription confirmation is verified and its URL logged for the operator to open;
//! it is never fetched.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use rustls_pki_types::CertificateDer;

use super::{Event, Refusal, bracketed, text};
use crate::inbound::classify::{Kind, judge};
use crate::mail::reply::enhanced_status;

/// What a verified SNS request is.
#[derive(Debug)]
pub(crate) enum Notice {
    /// SES events.
    Events(Vec<Event>),
    /// A new subscription: the operator confirms it by opening this URL.
    Confirm(String),
    /// Verified, but nothing to act on (an unsubscribe confirmation, a delivery event).
    Nothing,
}

/// Where certificates are kept, and whether one may be fetched.
pub(crate) struct Certificates {
    pub dir: PathBuf,
}

impl Certificates {
    /// Beside the state database: `STATE.sns-certs/`.
    pub(crate) fn beside(state: &Path) -> Certificates {
        Certificates {
            dir: crate::state::beside(state, ".sns-certs"),
        }
    }

    /// The file a certificate URL is kept in.
    pub(crate) fn file_for(&self, url: &str) -> PathBuf {
        let hash = <sha2::Sha256 as sha2::Digest>::digest(url.as_bytes());
        self.dir
            .join(format!("{}.pem", crate::token::hex(&hash[..16])))
    }

    /// The certificate (DER) at `url`: from the cache, or fetched and cached.
    fn get(&self, url: &str) -> Result<Vec<u8>, Refusal> {
        check_url(url)?;
        let file = self.file_for(url);
        let pem = if let Ok(pem) = std::fs::read_to_string(&file) {
            pem
        } else {
            let pem = fetch(url).map_err(|e| {
                Refusal::new(
                    503,
                    format!("cannot fetch the signing certificate {url}: {e}"),
                )
            })?;
            // A cache that cannot be written only costs a fetch next time.
            if std::fs::create_dir_all(&self.dir).is_ok() {
                let _ = crate::atomic_file::write(&file, pem.as_bytes());
            }
            pem
        };
        der_of(&pem).ok_or_else(|| Refusal::new(403, "the signing certificate is not PEM"))
    }
}

/// Only AWS's own SNS hosts may name the certificate.
fn check_url(url: &str) -> Result<(), Refusal> {
    let bad = || {
        Refusal::new(
            403,
            format!("the signing certificate URL {url:?} is not an SNS host's"),
        )
    };
    let parsed = url::Url::parse(url).map_err(|_| bad())?;
    let host = parsed.host_str().unwrap_or("");
    let region = host
        .strip_prefix("sns.")
        .and_then(|h| h.strip_suffix(".amazonaws.com"))
        .unwrap_or("");
    let ok = parsed.scheme() == "https"
        && parsed.port().is_none()
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && std::path::Path::new(parsed.path())
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("pem"));
    if ok { Ok(()) } else { Err(bad()) }
}

fn fetch(url: &str) -> anyhow::Result<String> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(provider)
        .build();
    let timeout = Some(std::time::Duration::from_secs(10));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(timeout)
        .max_redirects(0)
        .tls_config(tls)
        .build()
        .into();
    let mut response = agent.get(url).call()?;
    Ok(response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()?)
}

/// The first certificate of a PEM text, as DER.
fn der_of(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = pem[start..].find("-----END CERTIFICATE-----")? + start;
    let b64: String = pem[start..end].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// The text SNS signs: the message's fields, each as `Name\nvalue\n`, in this order.
fn string_to_sign(json: &serde_json::Value, kind: &str) -> Option<String> {
    let fields: &[&str] = if kind == "Notification" {
        &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    } else {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    };
    let mut out = String::new();
    for name in fields {
        match text(json, name) {
            Some(v) => {
                out.push_str(name);
                out.push('\n');
                out.push_str(v);
                out.push('\n');
            }
            // Only the subject is optional.
            None if *name == "Subject" => {}
            None => return None,
        }
    }
    Some(out)
}

/// Verifies an SNS request and reads it.
pub(crate) fn read(
    body: &[u8],
    topics: &[String],
    certificates: &Certificates,
) -> Result<Notice, Refusal> {
    let json: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Refusal::new(400, format!("the body is not JSON: {e}")))?;
    let kind = text(&json, "Type").unwrap_or("");
    let topic = text(&json, "TopicArn").unwrap_or("");
    if !topics.iter().any(|t| t == topic) {
        return Err(Refusal::new(
            403,
            format!("topic {topic:?} is not one of [webhooks.ses] topic_arns"),
        ));
    }
    if text(&json, "SignatureVersion") != Some("2") {
        return Err(Refusal::new(
            403,
            "only SignatureVersion 2 (SHA-256) is accepted: set the topic's SignatureVersion attribute to 2",
        ));
    }
    let signed = string_to_sign(&json, kind)
        .ok_or_else(|| Refusal::new(400, "a field the signature covers is missing"))?;
    let signature = text(&json, "Signature")
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .ok_or_else(|| Refusal::new(403, "no readable signature"))?;
    let url = text(&json, "SigningCertURL").unwrap_or("");
    let der = certificates.get(url)?;
    let cert = CertificateDer::from(der);
    let ee = webpki::EndEntityCert::try_from(&cert).map_err(|e| {
        Refusal::new(
            403,
            format!("the signing certificate cannot be read: {e:?}"),
        )
    })?;
    ee.verify_signature(
        webpki::ring::RSA_PKCS1_2048_8192_SHA256,
        signed.as_bytes(),
        &signature,
    )
    .map_err(|_| Refusal::new(403, "the signature does not verify"))?;
    match kind {
        "SubscriptionConfirmation" => Ok(Notice::Confirm(
            text(&json, "SubscribeURL").unwrap_or("").to_string(),
        )),
        "Notification" => {
            let message: serde_json::Value =
                serde_json::from_str(text(&json, "Message").unwrap_or(""))
                    .map_err(|e| Refusal::new(400, format!("the SES message is not JSON: {e}")))?;
            let id = text(&json, "MessageId").unwrap_or("");
            let events = ses_events(&message, id);
            if events.is_empty() {
                Ok(Notice::Nothing)
            } else {
                Ok(Notice::Events(events))
            }
        }
        _ => Ok(Notice::Nothing),
    }
}

/// The bounces and complaints of one SES notification (or event publishing record).
fn ses_events(m: &serde_json::Value, sns_id: &str) -> Vec<Event> {
    let what = text(m, "notificationType")
        .or_else(|| text(m, "eventType"))
        .unwrap_or("");
    let mail = m.get("mail");
    let message_id = mail
        .and_then(|mail| mail.get("commonHeaders"))
        .and_then(|h| text(h, "messageId"))
        .or_else(|| {
            mail.and_then(|mail| mail.get("headers"))
                .and_then(serde_json::Value::as_array)
                .and_then(|hs| {
                    hs.iter().find_map(|h| {
                        text(h, "name")
                            .filter(|n| n.eq_ignore_ascii_case("message-id"))
                            .and(text(h, "value"))
                    })
                })
        })
        .map(bracketed);
    let list = |parent: &str, key: &str| -> Vec<serde_json::Value> {
        m.get(parent)
            .and_then(|p| p.get(key))
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    match what {
        "Bounce" => {
            let bounce = m.get("bounce");
            let kind_of = bounce.and_then(|b| text(b, "bounceType")).unwrap_or("");
            let sub = bounce.and_then(|b| text(b, "bounceSubType")).unwrap_or("");
            for (n, r) in list("bounce", "bouncedRecipients").iter().enumerate() {
                let Some(email) = text(r, "emailAddress") else {
                    continue;
                };
                let diagnostic = text(r, "diagnosticCode").unwrap_or(sub).to_string();
                let status = text(r, "status")
                    .and_then(enhanced_status)
                    .or_else(|| enhanced_status(&diagnostic));
                let verdict = judge(status, &diagnostic, false);
                let kind = match (kind_of, sub, verdict) {
                    // SES's own suppression lists: the address is suppressed there already.
                    (_, "Suppressed" | "OnAccountSuppressionList", _) => Kind::Hard,
                    (_, _, Kind::SenderSide) => Kind::SenderSide,
                    ("Permanent", _, _) => Kind::Hard,
                    _ => Kind::Soft,
                };
                out.push(Event {
                    id: format!("ses:{sns_id}:{n}"),
                    kind,
                    email: email.to_string(),
                    status: status.map(|s| s.to_string()),
                    diagnostic: format!("{kind_of}/{sub}: {diagnostic}"),
                    message_id: message_id.clone(),
                });
            }
        }
        "Complaint" => {
            let feedback = m
                .get("complaint")
                .and_then(|c| text(c, "complaintFeedbackType"))
                .unwrap_or("abuse");
            for (n, r) in list("complaint", "complainedRecipients").iter().enumerate() {
                if let Some(email) = text(r, "emailAddress") {
                    out.push(Event {
                        id: format!("ses:{sns_id}:{n}"),
                        kind: Kind::Complaint,
                        email: email.to_string(),
                        status: None,
                        diagnostic: format!("feedback type {feedback}"),
                        message_id: message_id.clone(),
                    });
                }
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sns_hosts_may_name_the_certificate() {
        assert!(
            check_url("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem")
                .is_ok()
        );
        for bad in [
            "http://sns.eu-west-1.amazonaws.com/x.pem",
            "https://sns.eu-west-1.amazonaws.com.evil.example/x.pem",
            "https://evil.example/sns.eu-west-1.amazonaws.com/x.pem",
            "https://sns.eu-west-1.amazonaws.com:8443/x.pem",
            "https://user@sns.eu-west-1.amazonaws.com/x.pem",
            "https://sns..amazonaws.com/x.pem",
            "https://sns.eu-west-1.amazonaws.com/x.txt",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
