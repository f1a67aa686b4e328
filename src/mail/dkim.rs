//! DKIM signing (RFC 6376, RFC 8463), done here rather than by lettre: lettre's signer
//! reads the system clock for `t=`, cannot list a header name twice (oversigning) and takes
//! one key, where receivers want an RSA and an Ed25519 signature side by side.

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

use crate::config::{Dkim, DkimAlgorithm};

/// Signed once more than they occur, so a copy added on the way (a second Subject, a
/// forged List-Unsubscribe) breaks the signature instead of being shown to the reader.
/// Reply-To and Cc are listed even when absent, for the same reason.
const OVERSIGNED: [&str; 7] = [
    "from",
    "to",
    "subject",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "reply-to",
    "cc",
];

/// Headers left unsigned: a relay that reads them removes them (Postmark's metadata).
const UNSIGNED_PREFIXES: [&str; 1] = ["x-pm-"];

/// Shorter RSA keys are refused: RFC 8301 asks signers for 2048 bits, and the crypto
/// library of this build signs with nothing shorter.
const RSA_MIN_BITS: usize = 2048;

/// Header lines are folded to stay under this length (RFC 5322 §2.1.1 recommends 78).
const LINE: usize = 76;

enum Key {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// One signing key and where its public half is published.
pub struct DkimKey {
    pub domain: String,
    pub selector: String,
    key: Key,
}

/// Every configured key; each message gets one signature per key.
#[derive(Default)]
pub struct Signatures {
    keys: Vec<DkimKey>,
}

/// Reads every `[[dkim]]` key, with warnings worth telling the operator (a signing domain
/// that does not align with From).
pub(crate) fn load(dkims: &[Dkim], from_domain: &str) -> Result<(Signatures, Vec<String>)> {
    let mut keys = Vec::new();
    let mut warnings = Vec::new();
    for dkim in dkims {
        let d = dkim.domain.as_str();
        if !aligned(from_domain, d) {
            warnings.push(format!(
                "the DKIM domain {d} is neither the From domain {from_domain} nor a parent of it: DMARC will not count the signature as aligned"
            ));
        }
        keys.push(DkimKey::load(dkim)?);
    }
    Ok((Signatures { keys }, warnings))
}

/// DMARC's relaxed alignment, without the public-suffix list: the same domain, or one a
/// parent of the other.
pub(crate) fn aligned(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}"))
}

impl DkimKey {
    fn load(dkim: &Dkim) -> Result<DkimKey> {
        let path = &dkim.private_key_file;
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the DKIM key {}", path.display()))?;
        let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
            anyhow!(
                "{}: no private key in PEM form ({e}); make one with `openssl genrsa 2048` or `openssl genpkey -algorithm ed25519`",
                path.display()
            )
        })?;
        let key = match &der {
            PrivateKeyDer::Pkcs1(k) => {
                Key::Rsa(rsa(path, RsaKeyPair::from_der(k.secret_pkcs1_der()))?)
            }
            PrivateKeyDer::Pkcs8(k) => {
                let bytes = k.secret_pkcs8_der();
                match Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes) {
                    Ok(ed) => Key::Ed25519(ed),
                    Err(_) => Key::Rsa(rsa(path, RsaKeyPair::from_pkcs8(bytes))?),
                }
            }
            _ => bail!(
                "{}: an elliptic-curve key other than Ed25519; DKIM signs with RSA or Ed25519",
                path.display()
            ),
        };
        let found = match key {
            Key::Rsa(_) => DkimAlgorithm::Rsa,
            Key::Ed25519(_) => DkimAlgorithm::Ed25519,
        };
        if let Some(said) = dkim.algorithm
            && said != found
        {
            bail!(
                "{}: the key is {}, but `algorithm` says {}",
                path.display(),
                found.name(),
                said.name()
            );
        }
        Ok(DkimKey {
            domain: dkim.domain.clone(),
            selector: dkim.selector.clone(),
            key,
        })
    }

    /// `rsa-sha256` or `ed25519-sha256`.
    fn algorithm(&self) -> &'static str {
        match self.key {
            Key::Rsa(_) => "rsa-sha256",
            Key::Ed25519(_) => "ed25519-sha256",
        }
    }

    /// `rsa` or `ed25519`: the `k=` of the DNS record.
    pub fn kind(&self) -> &'static str {
        match self.key {
            Key::Rsa(_) => "rsa",
            Key::Ed25519(_) => "ed25519",
        }
    }

    /// Where the public key is published.
    pub fn record_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// The public key as the `p=` of the DNS record carries it: the `SubjectPublicKeyInfo`
    /// for RSA, the raw 32 bytes for Ed25519 (RFC 8463 §4.2).
    pub fn public_key(&self) -> Vec<u8> {
        match &self.key {
            Key::Rsa(k) => rsa_spki(k.public().as_ref()),
            Key::Ed25519(k) => k.public_key().as_ref().to_vec(),
        }
    }

    /// The TXT record that publishes this key.
    pub fn record(&self) -> String {
        format!(
            "v=DKIM1; k={}; p={}",
            self.kind(),
            STANDARD.encode(self.public_key())
        )
    }

    fn sign_bytes(&self, data: &[u8]) -> Result<Vec<u8>> {
        match &self.key {
            Key::Rsa(k) => {
                let mut signature = vec![0; k.public().modulus_len()];
                k.sign(
                    &RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    data,
                    &mut signature,
                )
                .map_err(|_| anyhow!("RSA signing failed"))?;
                Ok(signature)
            }
            // RFC 8463 §3: Ed25519 signs the SHA-256 hash of the data, not the data.
            Key::Ed25519(k) => Ok(k.sign(&Sha256::digest(data)).as_ref().to_vec()),
        }
    }
}

fn rsa(
    path: &std::path::Path,
    key: Result<RsaKeyPair, ring::error::KeyRejected>,
) -> Result<RsaKeyPair> {
    let key = key.map_err(|e| {
        if e.to_string() == "TooSmall" {
            anyhow!(
                "{}: the RSA key is shorter than {RSA_MIN_BITS} bits, which RFC 8301 asks for: make a new one with `openssl genrsa -out dkim.pem 2048` and publish it under a new selector",
                path.display()
            )
        } else {
            anyhow!("{}: not a usable RSA private key ({e})", path.display())
        }
    })?;
    Ok(key)
}

/// An RSA public key (PKCS#1 `RSAPublicKey`, DER) in a `SubjectPublicKeyInfo`, the form
/// `openssl rsa -pubout` prints and DKIM records carry.
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(u8::try_from(len).unwrap_or(0));
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | u8::try_from(bytes.len()).unwrap_or(0));
            out.extend_from_slice(&bytes);
        }
        out.extend_from_slice(content);
        out
    }
    // AlgorithmIdentifier { rsaEncryption (1.2.840.113549.1.1.1), NULL }
    const RSA_ENCRYPTION: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0u8]; // no unused bits
    bits.extend_from_slice(pkcs1);
    let mut body = RSA_ENCRYPTION.to_vec();
    body.extend(der(0x03, &bits));
    der(0x30, &body)
}

impl DkimAlgorithm {
    fn name(self) -> &'static str {
        match self {
            DkimAlgorithm::Rsa => "rsa",
            DkimAlgorithm::Ed25519 => "ed25519",
        }
    }
}

impl Signatures {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn keys(&self) -> &[DkimKey] {
        &self.keys
    }

    /// `message` with one DKIM-Signature header per key in front, each signed at `time`
    /// (seconds since 1970, from the program's clock).
    pub fn sign(&self, message: &[u8], time: u64) -> Result<Vec<u8>> {
        if self.keys.is_empty() {
            return Ok(message.to_vec());
        }
        let (head, body) = split(message);
        let headers = parse_headers(head);
        let body_hash = STANDARD.encode(Sha256::digest(relaxed_body(body)));
        let names = signed_names(&headers);
        let signed = canonical_headers(&headers, &names);
        let mut out = Vec::with_capacity(message.len() + 1024 * self.keys.len());
        for key in &self.keys {
            let unsigned = signature_header(key, time, &names, &body_hash);
            let mut data = signed.clone();
            data.extend_from_slice(
                relaxed_header(&unsigned)
                    .trim_end_matches("\r\n")
                    .as_bytes(),
            );
            let b = STANDARD.encode(key.sign_bytes(&data)?);
            out.extend_from_slice(unsigned.as_bytes());
            let column = unsigned.rsplit("\r\n").next().map_or(0, str::len);
            out.extend_from_slice(fold_value(&b, column).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(message);
        Ok(out)
    }
}

/// The header block (with its last CRLF) and the body.
fn split(message: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memmem::find(message, b"\r\n\r\n") {
        Some(i) => (&message[..i + 2], &message[i + 4..]),
        None => (message, &[]),
    }
}

/// Each header field as written, folding included: (lowercase name, whole field).
fn parse_headers(head: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(head);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split_inclusive("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.1.push_str(line);
            }
            continue;
        }
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        fields.push((name, line.to_string()));
    }
    fields
}

/// The `h=` list: every header present once per occurrence, in order, the oversigned ones
/// once more.
fn signed_names(headers: &[(String, String)]) -> Vec<String> {
    let mut names: Vec<String> = headers
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| !n.is_empty() && !UNSIGNED_PREFIXES.iter().any(|p| n.starts_with(p)))
        .collect();
    names.extend(OVERSIGNED.iter().map(ToString::to_string));
    names
}

/// The signed headers in `h=` order, each name taking its occurrences from the bottom up
/// (RFC 6376 §5.4.2); a name with none left adds nothing.
fn canonical_headers(headers: &[(String, String)], names: &[String]) -> Vec<u8> {
    let mut used = vec![false; headers.len()];
    let mut out = Vec::new();
    for name in names {
        if let Some(i) = (0..headers.len())
            .rev()
            .find(|&i| !used[i] && &headers[i].0 == name)
        {
            used[i] = true;
            out.extend_from_slice(relaxed_header(&headers[i].1).as_bytes());
        }
    }
    out
}

/// The DKIM-Signature field up to an empty `b=`, folded.
fn signature_header(key: &DkimKey, time: u64, names: &[String], body_hash: &str) -> String {
    let tags = [
        "v=1".to_string(),
        format!("a={}", key.algorithm()),
        "c=relaxed/relaxed".to_string(),
        format!("d={}", key.domain),
        format!("s={}", key.selector),
        format!("t={time}"),
        format!("h={}", names.join(":")),
        format!("bh={body_hash}"),
        "b=".to_string(),
    ];
    let mut field = String::from("DKIM-Signature:");
    let mut width = field.len();
    for (i, tag) in tags.iter().enumerate() {
        let piece = if i + 1 == tags.len() {
            tag.clone()
        } else {
            format!("{tag};")
        };
        if tag.starts_with("h=") {
            let folded = fold_list(&piece, width + 1);
            field.push(' ');
            field.push_str(&folded);
            width = folded.rsplit("\r\n").next().map_or(0, str::len);
            continue;
        }
        if width + 1 + piece.len() > LINE {
            field.push_str("\r\n\t");
            width = 1;
        } else {
            field.push(' ');
            width += 1;
        }
        field.push_str(&piece);
        width += piece.len();
    }
    field
}

/// `h=a:b:c;` broken after colons to fit the line.
fn fold_list(list: &str, start: usize) -> String {
    let mut out = String::new();
    let mut width = start;
    for (i, part) in list.split_inclusive(':').enumerate() {
        if i > 0 && width + part.len() > LINE {
            out.push_str("\r\n\t");
            width = 1;
        }
        out.push_str(part);
        width += part.len();
    }
    out
}

/// A base64 value in pieces that fit the line, the first after `start` characters.
fn fold_value(value: &str, start: usize) -> String {
    let first = LINE.saturating_sub(start).max(1);
    let mut out = String::new();
    let mut rest = value;
    let mut take = first.min(rest.len());
    while !rest.is_empty() {
        out.push_str(&rest[..take]);
        rest = &rest[take..];
        if !rest.is_empty() {
            out.push_str("\r\n\t");
        }
        take = (LINE - 1).min(rest.len());
    }
    out
}

/// Relaxed header canonicalization (RFC 6376 §3.4.2): lowercase name, unfolded value
/// with runs of white space made one space and none at either end.
fn relaxed_header(field: &str) -> String {
    let (name, value) = field.split_once(':').unwrap_or((field, ""));
    let unfolded = value.replace("\r\n", "");
    let value = unfolded
        .split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "{}:{}\r\n",
        name.trim_end_matches([' ', '\t']).to_ascii_lowercase(),
        value
    )
}

/// Relaxed body canonicalization (RFC 6376 §3.4.4): runs of white space made one space,
/// none at a line's end, no empty lines at the end.
fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let text = body.strip_suffix(b"\r\n").unwrap_or(body);
    if !body.is_empty() {
        for line in text.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let mut out = Vec::with_capacity(line.len());
            let mut space = false;
            for &b in line {
                if b == b' ' || b == b'\t' {
                    space = true;
                } else {
                    if space {
                        out.push(b' ');
                    }
                    space = false;
                    out.push(b);
                }
            }
            lines.push(out);
        }
    }
    while lines.last().is_some_and(Vec::is_empty) {
        lines.pop();
    }
    let mut out = Vec::with_capacity(body.len());
    for line in lines {
        out.extend_from_slice(&line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_canonicalization_follows_rfc_6376_examples() {
        // RFC 6376 §3.4.5.
        assert_eq!(relaxed_header("A: X\r\n"), "a:X\r\n");
        assert_eq!(relaxed_header("B : Y\t\r\n\tZ  \r\n"), "b:Y Z\r\n");
        assert_eq!(relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n");
        assert_eq!(relaxed_body(b""), b"");
    }

    #[test]
    fn signed_names_oversign_and_take_occurrences_from_the_bottom() {
        let headers = parse_headers(
            b"From: a@x\r\nSubject: one\r\nSubject: two\r\n X\r\nX-PM-Metadata-id: 1\r\n",
        );
        let names = signed_names(&headers);
        assert_eq!(names.iter().filter(|n| *n == "subject").count(), 3);
        assert!(!names.iter().any(|n| n.starts_with("x-pm-")));
        let canon = String::from_utf8(canonical_headers(&headers, &names)).unwrap();
        assert!(
            canon.starts_with("from:a@x\r\nsubject:two X\r\nsubject:one\r\n"),
            "{canon}"
        );
    }

    #[test]
    fn folded_lines_stay_short() {
        let value = "A".repeat(344);
        let folded = fold_value(&value, 70);
        let mut lines = folded.split("\r\n");
        assert_eq!(lines.next().map(str::len), Some(LINE - 70));
        assert!(lines.all(|l| l.len() <= LINE));
        assert_eq!(folded.replace("\r\n\t", ""), value);
    }
}
