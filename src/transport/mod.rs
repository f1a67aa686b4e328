//! Where messages go: an outbox folder of `.eml` files, or an SMTP relay.

pub mod outbox;
pub mod smtp;
mod tls;

use std::fmt;

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted; the server's reply (or the file written).
    Sent(String),
    /// Refused or lost. `permanent` is true for 5xx replies: retrying will not help.
    Failed { permanent: bool, reason: String },
    /// Not tried, because the run stopped before it (a fatal error on another message).
    NotAttempted(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Sent(reply) => write!(f, "sent ({reply})"),
            Outcome::Failed {
                permanent: true,
                reason,
            } => write!(f, "failed permanently: {reason}"),
            Outcome::Failed {
                permanent: false,
                reason,
            } => write!(f, "failed, try again later: {reason}"),
            Outcome::NotAttempted(reason) => write!(f, "not attempted: {reason}"),
        }
    }
}
