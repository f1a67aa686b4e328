//! Keyed hashes: the unsubscribe token carried in each subscriber's links, and the
//! Message-ID, stable per (edition, subscriber) and unpredictable without the key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::secret::Secret;
use crate::input::address::EmailAddress;

type HmacSha256 = Hmac<Sha256>;

/// Signs with the list's secret. Each use is bound to a purpose label so that a value made
/// for one purpose can never stand in for another.
#[derive(Clone)]
pub struct Signer {
    key: Secret,
    /// Keys retired by a rotation: their tokens are still accepted, never issued.
    previous: Vec<Secret>,
}

fn keyed(key: &Secret, parts: &[&str]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = HmacSha256::new_from_slice(key.expose().as_bytes()) else {
        unreachable!("HMAC takes keys of any length")
    };
    for part in parts {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    mac
}

/// The shortest unsubscribe key accepted: 128 bits.
const MIN_KEY_BYTES: usize = 16;

impl Signer {
    /// The signer of a list's tokens: the current key, and any previous ones for links in
    /// mail sent before a rotation.
    /// Also returns a warning when the key file can be read by other users.
    pub fn for_list(
        unsubscribe: &crate::config::Unsubscribe,
    ) -> anyhow::Result<(Signer, Option<String>)> {
        let (key, warning) = unsubscribe.secret.load_private()?;
        if key.expose().len() < MIN_KEY_BYTES {
            anyhow::bail!(
                "the unsubscribe key ({:?}) is {} bytes; it needs at least {MIN_KEY_BYTES}, \
                 as random as can be: `head -c 32 /dev/urandom | base64 > KEYFILE` (or start \
                 a project with `newsletter init`, which makes one)",
                unsubscribe.secret,
                key.expose().len()
            );
        }
        let previous = unsubscribe
            .previous
            .iter()
            .map(crate::config::secret::SecretSource::load)
            .collect::<anyhow::Result<_>>()?;
        Ok((Signer::new(key).with_previous(previous), warning))
    }

    pub fn new(key: Secret) -> Self {
        Signer {
            key,
            previous: Vec::new(),
        }
    }

    pub fn with_previous(mut self, previous: Vec<Secret>) -> Self {
        self.previous = previous;
        self
    }

    fn mac(&self, parts: &[&str]) -> [u8; 32] {
        keyed(&self.key, parts).finalize().into_bytes().into()
    }

    /// The address an unsubscribe token stands for, if the token is genuine: made with this
    /// list's key (or a previous one) for this list. The MAC is compared in constant time.
    pub fn verify_unsubscribe_token(&self, list_id: &str, token: &str) -> Option<EmailAddress> {
        self.verify_address_token("unsubscribe", list_id, token)
    }

    /// `base64url(address) . base64url(first 16 bytes of HMAC(list, address))`: the address
    /// travels in the token so that the endpoint needs no lookup, and the MAC makes it
    /// unforgeable.
    pub fn unsubscribe_token(&self, list_id: &str, email: &EmailAddress) -> String {
        self.address_token("unsubscribe", list_id, email)
    }

    /// A token that carries an address, MAC'd for one purpose: a token made for one
    /// purpose never verifies for another.
    fn address_token(&self, purpose: &str, list_id: &str, email: &EmailAddress) -> String {
        let mac = self.mac(&[purpose, list_id, email.as_str()]);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(email.as_str()),
            URL_SAFE_NO_PAD.encode(&mac[..16])
        )
    }

    fn verify_address_token(
        &self,
        purpose: &str,
        list_id: &str,
        token: &str,
    ) -> Option<EmailAddress> {
        let (address, tag) = token.trim().split_once('.')?;
        let address = String::from_utf8(URL_SAFE_NO_PAD.decode(address).ok()?).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if tag.len() != 16 {
            return None;
        }
        let email = EmailAddress::parse(&address).ok()?;
        let genuine = std::iter::once(&self.key).chain(&self.previous).any(|key| {
            keyed(key, &[purpose, list_id, &address])
                .verify_truncated_left(&tag)
                .is_ok()
        });
        (genuine && email.as_str() == address).then_some(email)
    }

    /// The token of a reader's preference page: as the unsubscribe token, made for its own
    /// purpose, so neither stands in for the other.
    pub fn manage_token(&self, list_id: &str, email: &EmailAddress) -> String {
        self.address_token("manage", list_id, email)
    }

    /// The address of a genuine preference-page token.
    pub fn verify_manage_token(&self, list_id: &str, token: &str) -> Option<EmailAddress> {
        self.verify_address_token("manage", list_id, token)
    }

    /// `base64url(address) . EXPIRY . base64url(MAC)`: the link of a confirmation message,
    /// good until EXPIRY (seconds since 1970). Made for one purpose (`confirm`), it cannot
    /// stand in for an unsubscribe token, nor one for it.
    pub fn confirm_token(&self, list_id: &str, email: &EmailAddress, expires: i64) -> String {
        let expiry = expires.to_string();
        let mac = self.mac(&["confirm", list_id, email.as_str(), &expiry]);
        format!(
            "{}.{expiry}.{}",
            URL_SAFE_NO_PAD.encode(email.as_str()),
            URL_SAFE_NO_PAD.encode(&mac[..16])
        )
    }

    /// The address and expiry of a genuine confirmation token (expired or not: the caller
    /// says which).
    pub fn verify_confirm_token(&self, list_id: &str, token: &str) -> Option<(EmailAddress, i64)> {
        let mut parts = token.trim().split('.');
        let (address, expiry, tag) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let address = String::from_utf8(URL_SAFE_NO_PAD.decode(address).ok()?).ok()?;
        let expires: i64 = expiry.parse().ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if tag.len() != 16 || expires.to_string() != expiry {
            return None;
        }
        let email = EmailAddress::parse(&address).ok()?;
        let genuine = std::iter::once(&self.key).chain(&self.previous).any(|key| {
            keyed(key, &["confirm", list_id, &address, expiry])
                .verify_truncated_left(&tag)
                .is_ok()
        });
        (genuine && email.as_str() == address).then_some((email, expires))
    }

    /// The return-path token of one message (VERP): 16 lower-case base32 characters (MTAs
    /// may fold the case of a local part) of a MAC of the edition and the recipient. Mail
    /// that comes back is matched to its message by computing it again.
    pub fn verp_token(&self, edition_id: &str, email: &EmailAddress) -> String {
        let mac = self.mac(&["verp", edition_id, email.as_str()]);
        base32_lower(&mac[..10])
    }

    /// `<hash.edition@domain>`: the same for every resend of this edition to this address.
    pub fn message_id(&self, edition_id: &str, email: &EmailAddress, domain: &str) -> String {
        let mac = self.mac(&["message-id", edition_id, email.as_str()]);
        format!("<{}.{edition_id}@{domain}>", hex(&mac[..16]))
    }

    /// A MIME boundary that depends only on the message's identity, for reproducible bytes.
    /// `=_` cannot occur in base64 or quoted-printable output.
    pub fn boundary(&self, edition_id: &str, email: &EmailAddress) -> String {
        let mac = self.mac(&["boundary", edition_id, email.as_str()]);
        format!("=_{}", hex(&mac[..12]))
    }
}

/// RFC 4648 base32 in lower case, without padding.
fn base32_lower(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Lower-case hexadecimal, for ids and keys.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(key: &str) -> Signer {
        Signer::new(Secret::new(key))
    }

    #[test]
    fn confirm_tokens_verify_with_their_expiry_and_serve_no_other_purpose() {
        let s = signer("k1");
        let e = EmailAddress::parse("ada@example.org").unwrap();
        let t = s.confirm_token("list", &e, 1_800_000_000);
        assert_eq!(
            s.verify_confirm_token("list", &t),
            Some((e.clone(), 1_800_000_000))
        );
        assert_eq!(s.verify_confirm_token("other", &t), None);
        let later = t.replace(".1800000000.", ".1900000000.");
        assert_eq!(
            s.verify_confirm_token("list", &later),
            None,
            "the expiry is signed"
        );
        assert_eq!(s.verify_unsubscribe_token("list", &t), None);
        let u = s.unsubscribe_token("list", &e);
        assert_eq!(s.verify_confirm_token("list", &u), None);
    }

    #[test]
    fn tokens_depend_on_key_list_and_address() {
        let ada = EmailAddress::parse("ada@example.org").unwrap();
        let bob = EmailAddress::parse("bob@example.org").unwrap();
        let t = signer("k1").unsubscribe_token("weekly", &ada);
        assert_eq!(t, signer("k1").unsubscribe_token("weekly", &ada));
        assert_ne!(t, signer("k2").unsubscribe_token("weekly", &ada));
        assert_ne!(t, signer("k1").unsubscribe_token("daily", &ada));
        assert_ne!(t, signer("k1").unsubscribe_token("weekly", &bob));
        assert!(
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "{t}"
        );
    }

    #[test]
    fn a_genuine_token_verifies_and_an_altered_one_does_not() {
        let ada = EmailAddress::parse("ada@example.org").unwrap();
        let s = signer("k1");
        let t = s.unsubscribe_token("weekly", &ada);
        assert_eq!(s.verify_unsubscribe_token("weekly", &t), Some(ada.clone()));
        assert_eq!(
            s.verify_unsubscribe_token("daily", &t),
            None,
            "bound to the list"
        );
        assert_eq!(
            signer("k2").verify_unsubscribe_token("weekly", &t),
            None,
            "bound to the key"
        );
        // Another address with the same tag, a flipped tag character, garbage.
        let (_, tag) = t.split_once('.').unwrap();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode("bob@example.org"));
        assert_eq!(s.verify_unsubscribe_token("weekly", &forged), None);
        let mut flipped = t.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            s.verify_unsubscribe_token("weekly", &String::from_utf8(flipped).unwrap()),
            None
        );
        assert_eq!(s.verify_unsubscribe_token("weekly", "not-a-token"), None);
        // After a rotation the old key's tokens still work.
        let rotated = signer("k2").with_previous(vec![Secret::new("k1")]);
        assert_eq!(rotated.verify_unsubscribe_token("weekly", &t), Some(ada));
    }

    #[test]
    fn message_ids_are_stable_per_edition_and_address() {
        let ada = EmailAddress::parse("ada@example.org").unwrap();
        let s = signer("k");
        let id = s.message_id("2026-11-27-a", &ada, "harbour.example");
        assert_eq!(id, s.message_id("2026-11-27-a", &ada, "harbour.example"));
        assert_ne!(id, s.message_id("2026-12-04-b", &ada, "harbour.example"));
        assert!(
            id.starts_with('<') && id.ends_with("@harbour.example>"),
            "{id}"
        );
    }

    #[test]
    fn verp_tokens_are_short_lower_case_base32_per_edition_and_address() {
        let ada = EmailAddress::parse("ada@example.org").unwrap();
        let s = signer("k");
        let t = s.verp_token("2026-11-27-a", &ada);
        assert_eq!(t.len(), 16);
        assert!(
            t.chars()
                .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c)),
            "{t}"
        );
        assert_eq!(t, s.verp_token("2026-11-27-a", &ada));
        assert_ne!(t, s.verp_token("2026-12-04-b", &ada));
        assert_eq!(base32_lower(b"foobar"), "mzxw6ytboi");
    }
}
