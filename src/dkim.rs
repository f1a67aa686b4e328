//! DKIM signing keys: read once per run, in the forms `openssl` writes them.

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::HeaderName;

use crate::config::{Dkim, DkimAlgorithm};

/// Every header a receiver or a filter relies on, so none can be altered unnoticed.
const SIGNED: [&str; 9] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

pub fn load(dkim: &Dkim) -> Result<DkimConfig> {
    let path = &dkim.private_key_file;
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the DKIM key {}", path.display()))?;
    let key = match dkim.algorithm {
        DkimAlgorithm::Rsa => {
            if pem.contains("BEGIN PRIVATE KEY") {
                bail!(
                    "{} is a PKCS#8 key; lettre reads RSA keys in PKCS#1 form: convert it with `openssl rsa -traditional -in KEY -out KEY.pkcs1`",
                    path.display()
                );
            }
            DkimSigningKey::new(&pem, DkimSigningAlgorithm::Rsa)
                .map_err(|e| anyhow::anyhow!("{}: not an RSA private key: {e:?}", path.display()))?
        }
        DkimAlgorithm::Ed25519 => {
            DkimSigningKey::new(&ed25519_seed(&pem)?, DkimSigningAlgorithm::Ed25519).map_err(
                |e| anyhow::anyhow!("{}: not an Ed25519 private key: {e:?}", path.display()),
            )?
        }
    };
    Ok(DkimConfig::new(
        dkim.selector.clone(),
        dkim.domain.clone(),
        key,
        SIGNED
            .iter()
            .map(|h| HeaderName::new_from_ascii_str(h))
            .collect(),
        DkimCanonicalization {
            header: DkimCanonicalizationType::Relaxed,
            body: DkimCanonicalizationType::Relaxed,
        },
    ))
}

/// lettre wants the 32-byte seed in base64; openssl writes it inside a PKCS#8 PEM, whose
/// DER ends with exactly those 32 bytes (RFC 8410).
fn ed25519_seed(pem: &str) -> Result<String> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD
        .decode(body.trim())
        .context("the Ed25519 key is not base64/PEM")?;
    match der.len() {
        32 => Ok(STANDARD.encode(&der)),
        48 => Ok(STANDARD.encode(&der[16..])),
        n => bail!("an Ed25519 key must be 32 bytes or a 48-byte PKCS#8 document, not {n} bytes"),
    }
}
