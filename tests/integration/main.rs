//! The real binary on fixture projects: bad input, the outbox, previews, SMTP delivery to a
//! real server on loopback, escaping and byte-exact snapshots.

// The tests time their own waits; the one-clock rule is for the program. File names in
// the tests are the program's own, always lower-case; strings built in loops are fixtures.
#![allow(
    clippy::disallowed_methods,
    clippy::case_sensitive_file_extension_comparisons,
    clippy::format_collect
)]

mod harness;
mod site;

mod archive;
mod bounces;
mod cron;
mod delivery;
mod dkim;
mod dns;
mod durability;
mod endpoint;
mod feeds;
mod hardening;
mod imap;
mod import;
mod input;
mod layout;
mod links;
mod locale;
mod oauth;
mod outbox;
mod pipelining;
mod privacy;
mod refusals;
mod render;
mod signup;
mod smtp;
mod state;
mod unsubscribe;
mod webhooks;
