//! Mail that comes back: bounces, complaints and unsubscribe requests, read (`mime`,
//! `dsn`, `text`), classified (`classify`), matched to the message and subscriber they are
//! about, and acted on through the state (`state::inbound`).
//!
//! A message is matched, in this order, by the return-path token it was delivered to
//! (`bounces+TOKEN@…`), by the Message-ID of the returned original (every message of ours
//! has one the journal knows), and otherwise by the address the report names. Only an
//! address some edition was sent to is ever acted on.

pub(crate) mod classify;
mod dsn;
pub(crate) mod imap;
#[cfg(test)]
mod malformed;
pub(crate) mod mime;
pub(crate) mod providers;
pub(crate) mod rates;
mod text;

use std::collections::HashMap;
use std::time::SystemTime;

use anyhow::Result;
use serde::Serialize;

use crate::config::Config;
use crate::input::address::EmailAddress;
use crate::state::Journal;
use crate::state::inbound::Finding;
use crate::token::Signer;
use classify::{Kind, Reading};

/// Return-path tokens are matched against this many most recent editions.
const TOKEN_EDITIONS: usize = 12;

/// What was read from one message and what was done about it.
#[derive(Debug, Serialize)]
pub(crate) struct Outcome {
    /// SHA-256 of the message's bytes: how a message already acted on is recognised.
    pub hash: String,
    pub kind: Kind,
    pub items: Vec<Item>,
    /// Why a message has no finding.
    pub note: Option<String>,
    /// The message had been acted on before: nothing was done this time.
    pub already: bool,
}

/// One finding, resolved to a subscriber, with its action.
#[derive(Debug, Serialize)]
pub(crate) struct Item {
    pub kind: Kind,
    /// The address as the report names it.
    pub reported: Option<String>,
    /// The subscriber it is about, when it is one of ours.
    pub subscriber: Option<String>,
    pub edition: Option<String>,
    pub status: Option<String>,
    pub diagnostic: String,
    pub action: Option<String>,
}

/// Reads messages and acts on them for one list; one for a whole run, so the map of
/// return-path tokens is built once.
pub(crate) struct Intake {
    journal: Journal,
    signer: Signer,
    list_id: String,
    /// `[bounces] address` split at the `@`, lower case.
    return_path: Option<(String, String)>,
    soft_limit: usize,
    /// token → (edition, address), built at the first token seen.
    tokens: Option<HashMap<String, (String, String)>>,
    dry: bool,
}

impl Intake {
    pub(crate) fn new(config: &Config, journal: Journal, signer: Signer, dry: bool) -> Self {
        Intake {
            journal,
            signer,
            list_id: config.newsletter.list_id.clone(),
            return_path: config.bounces.address.as_ref().and_then(|a| {
                a.as_str()
                    .rsplit_once('@')
                    .map(|(l, d)| (l.to_ascii_lowercase(), d.to_ascii_lowercase()))
            }),
            soft_limit: config.bounces.soft_limit,
            tokens: None,
            dry,
        }
    }

    /// The state, for what the caller does after the messages (the subscriber file).
    pub(crate) fn journal(&mut self) -> &mut Journal {
        &mut self.journal
    }

    /// Reads one message and acts on it (in a dry run: says what it would do).
    pub(crate) fn process(&mut self, raw: &[u8], now: SystemTime) -> Result<Outcome> {
        let hash = crate::token::hex(&<sha2::Sha256 as sha2::Digest>::digest(raw));
        let reading = classify::read(raw);
        let known = self.known_delivery(&reading)?;
        let mut findings = Vec::with_capacity(reading.findings.len());
        let mut items = Vec::with_capacity(reading.findings.len());
        let single = reading.findings.len() == 1;
        for f in &reading.findings {
            let subscriber = self.subscriber_of(f, &reading, known.as_ref(), single);
            let edition = self.edition_of(subscriber.as_deref(), known.as_ref())?;
            let kind = f.kind.key();
            // An address no edition went to is reported, never acted on.
            let acted_on = subscriber.as_ref().filter(|_| edition.is_some()).cloned();
            findings.push(Finding {
                kind,
                email: acted_on,
                unmatched: unmatched(f.kind, subscriber.as_deref(), edition.as_deref()),
                edition: edition.clone(),
                status: f.status.clone(),
                diagnostic: f.diagnostic.clone(),
            });
            items.push(Item {
                kind: f.kind,
                reported: f.recipient.clone(),
                subscriber,
                edition,
                status: f.status.clone(),
                diagnostic: f.diagnostic.clone(),
                action: None,
            });
        }
        let actions = self
            .journal
            .act_on(&hash, &findings, self.soft_limit, now, self.dry)?;
        let already = actions.is_none();
        for (item, action) in items.iter_mut().zip(actions.unwrap_or_default()) {
            item.action = Some(action.to_string());
        }
        Ok(Outcome {
            hash,
            kind: reading.kind,
            items,
            note: reading.note,
            already,
        })
    }

    /// Acts on one event a provider reported (each event is recorded by its provider id, so
    /// a webhook delivered again is acted on once); returns what was done, `None` when it
    /// had been acted on before.
    pub(crate) fn process_event(
        &mut self,
        event: &providers::Event,
        now: SystemTime,
    ) -> Result<Option<String>> {
        let email = EmailAddress::parse(&event.email)
            .ok()
            .map(|e| e.as_str().to_string());
        let known = match &event.message_id {
            Some(id) => self.journal.delivery_by_message_id(id)?,
            None => None,
        };
        let edition = self.edition_of(email.as_deref(), known.as_ref())?;
        let kind = event.kind.key();
        let finding = Finding {
            kind,
            unmatched: unmatched(event.kind, email.as_deref(), edition.as_deref()),
            email: email.filter(|_| edition.is_some()),
            edition,
            status: event.status.clone(),
            diagnostic: event.diagnostic.clone(),
        };
        let actions = self
            .journal
            .act_on(&event.id, &[finding], self.soft_limit, now, self.dry)?;
        Ok(actions.map(|a| a.first().map(ToString::to_string).unwrap_or_default()))
    }

    /// The edition a finding about `subscriber` belongs to: the one its message was sent in
    /// when that is known, else the last one sent to the address.
    fn edition_of(
        &self,
        subscriber: Option<&str>,
        known: Option<&(String, String)>,
    ) -> Result<Option<String>> {
        match (subscriber, known) {
            (Some(s), Some((edition, sent_to))) if s == sent_to => Ok(Some(edition.clone())),
            (Some(s), _) => self.journal.last_edition_sent_to(s),
            (None, _) => Ok(None),
        }
    }

    /// The (edition, address) a message is about, from the return path it was delivered
    /// to or the Message-ID of the enclosed original.
    fn known_delivery(&mut self, reading: &Reading) -> Result<Option<(String, String)>> {
        if let Some((local, domain)) = &self.return_path {
            let prefix = format!("{local}+");
            let token = reading.delivered_to.iter().find_map(|a| {
                let (l, d) = a.rsplit_once('@')?;
                let l = l.to_ascii_lowercase();
                (d.eq_ignore_ascii_case(domain))
                    .then(|| l.strip_prefix(&prefix).map(str::to_string))
                    .flatten()
            });
            if let Some(token) = token {
                let found = self.tokens()?.get(&token).cloned();
                if found.is_some() {
                    return Ok(found);
                }
            }
        }
        for id in &reading.original_ids {
            if let Some(found) = self.journal.delivery_by_message_id(id.trim())? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    fn tokens(&mut self) -> Result<&HashMap<String, (String, String)>> {
        if self.tokens.is_none() {
            let mut map = HashMap::new();
            for (edition, email) in self.journal.recent_deliveries(TOKEN_EDITIONS)? {
                if let Ok(address) = EmailAddress::parse(&email) {
                    map.insert(self.signer.verp_token(&edition, &address), (edition, email));
                }
            }
            self.tokens = Some(map);
        }
        Ok(self.tokens.get_or_insert_with(HashMap::new))
    }

    /// The subscriber a finding is about: the one a token names for a request; the one
    /// the message was sent to when the report names one failure; else the address the
    /// report names, if an edition was sent to it.
    fn subscriber_of(
        &self,
        f: &classify::Finding,
        reading: &Reading,
        known: Option<&(String, String)>,
        single: bool,
    ) -> Option<String> {
        if f.kind == Kind::Unsubscribe {
            return reading
                .request_token
                .as_deref()
                .and_then(|t| self.signer.verify_unsubscribe_token(&self.list_id, t))
                .map(|e| e.as_str().to_string());
        }
        if let Some((_, email)) = known
            && (single
                || f.recipient
                    .as_deref()
                    .is_some_and(|r| r.eq_ignore_ascii_case(email)))
        {
            return Some(email.clone());
        }
        let reported = f.recipient.as_deref()?;
        EmailAddress::parse(reported)
            .ok()
            .map(|e| e.as_str().to_string())
    }
}

/// Why a finding names no subscriber to act on, when it names none.
fn unmatched(kind: Kind, subscriber: Option<&str>, edition: Option<&str>) -> Option<&'static str> {
    match (subscriber, edition) {
        (None, _) if kind == Kind::Unsubscribe => {
            Some("the request carries no valid unsubscribe token")
        }
        (None, _) => Some("no subscriber of this list is named"),
        (Some(_), None) => Some("no edition was sent to this address"),
        (Some(_), Some(_)) => None,
    }
}
