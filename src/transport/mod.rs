//! Where messages go: an outbox folder of `.eml` files, or an SMTP relay.

pub mod outbox;
pub mod reply;
pub mod smtp;
pub mod tls;
