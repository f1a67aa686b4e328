//! The real binary on fixture projects: bad input, the outbox, previews, SMTP delivery to a
//! real server on loopback, escaping and byte-exact snapshots.

// The tests time their own waits; the one-clock rule is for the program.
#![allow(clippy::disallowed_methods)]

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
mod state;
mod unsubscribe;
