//! The real binary on fixture projects: bad input, the outbox, previews, SMTP delivery to a
//! real server on loopback, escaping and byte-exact snapshots.

mod harness;

mod delivery;
mod dkim;
mod feeds;
mod hardening;
mod input;
mod outbox;
mod pipelining;
mod refusals;
mod render;
mod smtp;
mod unsubscribe;
