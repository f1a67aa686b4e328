//! Email addresses and display names, checked once when they are read so that nothing later
//! can put a malformed address or a header-splitting CR/LF into a message.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use lettre::message::Mailbox;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// An address a relay can deliver to: trimmed and in Unicode NFC (so that two spellings of
/// one accented address are one address), its domain in lower-case A-labels (IDNA, UTS 46:
/// `bücher.example` is `xn--bcher-kva.example`), its local part as written (RFC 5321 §2.4).
/// Quoted local parts, address literals, single-label domains and local parts starting
/// with `-` are refused: relays refuse or mishandle them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress(lettre::Address);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let nfc: Cow<'_, str> = if is_nfc_quick(raw.chars()) == IsNormalized::Yes {
            Cow::Borrowed(raw)
        } else {
            Cow::Owned(raw.nfc().collect())
        };
        let trimmed = nfc.trim();
        if let Some(c) = trimmed.chars().find(|c| c.is_control()) {
            return Err(format!("contains a control character ({c:?})"));
        }
        if trimmed.is_empty() {
            return Err("is empty".to_string());
        }
        let Some((local, domain)) = trimmed.rsplit_once('@') else {
            return Err(format!("{trimmed:?} is not an email address (no @)"));
        };
        if local.starts_with('"') {
            return Err(format!(
                "{trimmed:?}: a quoted local part is not accepted (most relays refuse it)"
            ));
        }
        if local.starts_with('-') {
            return Err(format!(
                "{trimmed:?}: a local part starting with '-' is not accepted"
            ));
        }
        if domain.starts_with('[') {
            return Err(format!(
                "{trimmed:?}: an address literal is not accepted; use a domain name"
            ));
        }
        let ascii = idna::domain_to_ascii_strict(domain)
            .map_err(|_| format!("{trimmed:?}: {domain:?} is not a valid domain name"))?;
        if !ascii.contains('.') || ascii.ends_with('.') {
            return Err(format!(
                "{trimmed:?}: {domain:?} is not a domain that mail can be sent to (it needs a dot, as in example.org)"
            ));
        }
        let normalized = format!("{local}@{ascii}");
        let address = lettre::Address::from_str(&normalized)
            .map_err(|e| format!("{trimmed:?} is not an email address ({e})"))?;
        Ok(EmailAddress(address))
    }

    /// True when the local part is not ASCII: only a relay that offers SMTPUTF8 takes it.
    pub fn needs_smtputf8(&self) -> bool {
        !self.0.user().is_ascii()
    }

    pub fn as_str(&self) -> &str {
        self.0.as_ref()
    }

    pub fn domain(&self) -> &str {
        self.0.domain()
    }

    pub fn to_lettre(&self) -> lettre::Address {
        self.0.clone()
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest display name accepted, in characters: anything longer is not a name, and
/// keeps header lines within RFC 5322's limits once encoded.
pub const MAX_NAME_CHARS: usize = 200;

/// Characters that reorder text on screen (U+202E makes "gpj.exe" read "exe.jpg"); they
/// are removed from names.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A human name for a header: no control characters (lettre 0.11 panics on CR/LF in a
/// display name), no bidirectional controls, trimmed, not empty, at most
/// `MAX_NAME_CHARS` characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if let Some(c) = raw.chars().find(|c| c.is_control()) {
            return Err(format!("contains a control character ({c:?})"));
        }
        let cleaned: String = raw.chars().filter(|c| !is_bidi_control(*c)).collect();
        let trimmed = cleaned.trim();
        if trimmed.is_empty() {
            return Err("is empty".to_string());
        }
        let chars = trimmed.chars().count();
        if chars > MAX_NAME_CHARS {
            return Err(format!(
                "is {chars} characters long; a name may have at most {MAX_NAME_CHARS}"
            ));
        }
        Ok(DisplayName(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `Name <address>` or a bare address, as written in the config's `from` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedAddress {
    pub name: Option<DisplayName>,
    pub address: EmailAddress,
}

impl NamedAddress {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if let Some(c) = raw.chars().find(|c| c.is_control()) {
            return Err(format!("contains a control character ({c:?})"));
        }
        let raw = raw.trim();
        match raw.rsplit_once('<') {
            Some((name, rest)) => {
                let Some(addr) = rest.strip_suffix('>') else {
                    return Err(format!("{raw:?}: expected `Name <address>`"));
                };
                let name = name.trim().trim_matches('"');
                Ok(NamedAddress {
                    name: if name.is_empty() {
                        None
                    } else {
                        Some(DisplayName::parse(name)?)
                    },
                    address: EmailAddress::parse(addr)?,
                })
            }
            None => Ok(NamedAddress {
                name: None,
                address: EmailAddress::parse(raw)?,
            }),
        }
    }

    pub fn mailbox(&self) -> Mailbox {
        Mailbox::new(
            self.name.as_ref().map(|n| n.as_str().to_string()),
            self.address.to_lettre(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_trimmed_and_their_domain_lowercased() {
        let a = EmailAddress::parse("  Ada@Example.ORG ").unwrap();
        assert_eq!(a.as_str(), "Ada@example.org");
        assert_eq!(a.domain(), "example.org");
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.org",
            "ada@exa mple.org",
            "ada@example.org\r\nBcc: x@y.z",
            "\"quoted local\"@example.org",
            "u@[127.0.0.1]",
            "u@x",
            "u@localhost",
            "-u@example.org",
            "u@exa_mple.org",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn domains_become_a_labels_and_addresses_nfc() {
        let u = EmailAddress::parse("reader@Bücher.example").unwrap();
        assert_eq!(u.as_str(), "reader@xn--bcher-kva.example");
        assert_eq!(
            u,
            EmailAddress::parse("reader@xn--bcher-kva.example").unwrap()
        );
        let nfc = EmailAddress::parse("r\u{e9}ne@example.org").unwrap();
        let nfd = EmailAddress::parse("re\u{301}ne@example.org").unwrap();
        assert_eq!(nfc, nfd);
        assert!(nfc.needs_smtputf8());
        assert!(!u.needs_smtputf8());
    }

    #[test]
    fn names_with_line_breaks_or_nul_are_refused() {
        assert!(DisplayName::parse("Ada\r\nBcc: evil@example.org").is_err());
        assert!(DisplayName::parse("Ada\0").is_err());
        assert_eq!(
            DisplayName::parse(" Ada Lovelace ").unwrap().as_str(),
            "Ada Lovelace"
        );
        assert!(DisplayName::parse(&"a".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(DisplayName::parse(&"é".repeat(MAX_NAME_CHARS)).is_ok());
    }

    #[test]
    fn bidi_controls_are_removed_from_names() {
        let n = DisplayName::parse("Ada \u{202E}gpj.exe\u{202C}\u{2066}").unwrap();
        assert_eq!(n.as_str(), "Ada gpj.exe");
    }

    #[test]
    fn named_addresses_parse_both_forms() {
        let n = NamedAddress::parse("Harbour Weekly <weekly@Harbour.example>").unwrap();
        assert_eq!(n.name.unwrap().as_str(), "Harbour Weekly");
        assert_eq!(n.address.as_str(), "weekly@harbour.example");
        let bare = NamedAddress::parse("desk@harbour.example").unwrap();
        assert!(bare.name.is_none());
    }
}
