//! `[webhooks.*]`: the providers whose bounce and complaint webhooks `serve` accepts, and
//! what authenticates each: the SNS topics of Amazon SES (the message signature is AWS's,
//! but anyone can create a topic, so only these are accepted), Mailgun's signing key,
//! Postmark's basic-auth credentials.

use std::path::Path;

use serde::Deserialize;

use crate::problems::{Problem, Problems};

use super::secret::SecretSource;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhooks {
    ses: Option<RawSes>,
    mailgun: Option<RawMailgun>,
    postmark: Option<RawPostmark>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSes {
    topic_arns: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMailgun {
    signing_key_env: Option<String>,
    signing_key_file: Option<std::path::PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostmark {
    username: String,
    password_env: Option<String>,
    password_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    /// Amazon SES through SNS: the topic ARNs accepted.
    pub ses: Option<Vec<String>>,
    /// Mailgun: the webhook signing key.
    pub mailgun: Option<SecretSource>,
    /// Postmark: the basic-auth user and password set on the webhook's URL.
    pub postmark: Option<(String, SecretSource)>,
}

/// The secret of a `WHAT_env` / `WHAT_file` pair, or a problem naming `field`.
fn secret(
    pair: (Option<&String>, Option<&std::path::PathBuf>),
    dir: &Path,
    path: &Path,
    field: &str,
    what: &str,
    problems: &mut Problems,
) -> Option<SecretSource> {
    SecretSource::from_pair(pair.0, pair.1, dir, what)
        .map_err(|why| problems.push(Problem::new(path, why).field(field.to_string())))
        .ok()
}

pub(super) fn resolve_webhooks(
    raw: Option<RawWebhooks>,
    dir: &Path,
    path: &Path,
    problems: &mut Problems,
) -> Webhooks {
    let raw = raw.unwrap_or_default();
    let ses = raw.ses.map(|s| {
        for arn in &s.topic_arns {
            if !arn.starts_with("arn:aws") || arn.split(':').count() != 6 {
                problems.push(
                    Problem::new(
                        path,
                        format!(
                            "{arn:?} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:TOPIC)"
                        ),
                    )
                    .field("webhooks.ses.topic_arns"),
                );
            }
        }
        if s.topic_arns.is_empty() {
            problems.push(
                Problem::new(path, "name the SNS topics whose notifications are accepted")
                    .field("webhooks.ses.topic_arns"),
            );
        }
        s.topic_arns
    });
    let mailgun = raw.mailgun.and_then(|m| {
        secret(
            (m.signing_key_env.as_ref(), m.signing_key_file.as_ref()),
            dir,
            path,
            "webhooks.mailgun",
            "signing_key",
            problems,
        )
    });
    let postmark = raw.postmark.and_then(|p| {
        if p.username.is_empty() || p.username.contains(':') {
            problems.push(
                Problem::new(path, "the username must be set and hold no `:`")
                    .field("webhooks.postmark.username"),
            );
        }
        secret(
            (p.password_env.as_ref(), p.password_file.as_ref()),
            dir,
            path,
            "webhooks.postmark",
            "password",
            problems,
        )
        .map(|s| (p.username.clone(), s))
    });
    Webhooks {
        ses,
        mailgun,
        postmark,
    }
}
