//! Email addresses and display names, checked once when they are read so that nothing later
//! can put a malformed address or a header-splitting CR/LF into a message.

use std::fmt;
use std::str::FromStr;

use lettre::message::Mailbox;

/// A syntactically valid address, trimmed, with its domain lower-cased (domains are
/// case-insensitive; the local part is left as written, RFC 5321 §2.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress(lettre::Address);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        if let Some(c) = trimmed.chars().find(|c| c.is_control()) {
            return Err(format!("contains a control character ({c:?})"));
        }
        if trimmed.is_empty() {
            return Err("is empty".to_string());
        }
        let Some((local, domain)) = trimmed.rsplit_once('@') else {
            return Err(format!("{trimmed:?} is not an email address (no @)"));
        };
        let normalized = format!("{local}@{}", domain.to_lowercase());
        let address = lettre::Address::from_str(&normalized)
            .map_err(|e| format!("{trimmed:?} is not an email address ({e})"))?;
        Ok(EmailAddress(address))
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

/// A human name for a header: no control characters (lettre 0.11 panics on CR/LF in a
/// display name), trimmed, not empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if let Some(c) = raw.chars().find(|c| c.is_control()) {
            return Err(format!("contains a control character ({c:?})"));
        }
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("is empty".to_string());
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
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn names_with_line_breaks_or_nul_are_refused() {
        assert!(DisplayName::parse("Ada\r\nBcc: evil@example.org").is_err());
        assert!(DisplayName::parse("Ada\0").is_err());
        assert_eq!(
            DisplayName::parse(" Ada Lovelace ").unwrap().as_str(),
            "Ada Lovelace"
        );
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
