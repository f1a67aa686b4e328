//! DKIM signing keys: read once per run, in the forms `openssl` writes them.

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::HeaderName;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};

use crate::config::{Dkim, DkimAlgorithm};

/// Every header a receiver or a filter relies on, so none can be altered unnoticed.
const SIGNED: [&str; 12] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Help",
    "Feedback-ID",
    "List-Archive",
];

/// RSA keys shorter than this are refused: verifiers reject them (RFC 8301 §3.2).
const RSA_MIN_BITS: usize = 1024;
/// Shorter than this is warned about: RFC 8301 asks signers for at least 2048 bits.
const RSA_GOOD_BITS: usize = 2048;

/// The signing configuration, and warnings worth telling the operator (a short key, a
/// signing domain that does not align with From).
pub(crate) fn load(dkim: &Dkim, from_domain: &str) -> Result<(DkimConfig, Vec<String>)> {
    let path = &dkim.private_key_file;
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the DKIM key {}", path.display()))?;
    let mut warnings = Vec::new();
    let d = dkim.domain.as_str();
    if from_domain != d && !from_domain.ends_with(&format!(".{d}")) {
        warnings.push(format!(
            "the DKIM domain {d} is neither the From domain {from_domain} nor a parent of it: DMARC will not count the signature as aligned"
        ));
    }
    let key = match dkim.algorithm {
        DkimAlgorithm::Rsa => {
            if pem.contains("BEGIN PRIVATE KEY") {
                bail!(
                    "{} is a PKCS#8 key; lettre reads RSA keys in PKCS#1 form: convert it with `openssl rsa -traditional -in KEY -out KEY.pkcs1`",
                    path.display()
                );
            }
            let bits = rsa_bits(&pem).with_context(|| {
                format!("{}: not an RSA private key in PKCS#1 form", path.display())
            })?;
            if bits < RSA_MIN_BITS {
                bail!(
                    "{}: the RSA key has {bits} bits; verifiers reject keys under {RSA_MIN_BITS} bits (use `openssl genrsa -traditional 2048`)",
                    path.display()
                );
            }
            if bits < RSA_GOOD_BITS {
                warnings.push(format!(
                    "{}: the RSA key has {bits} bits; {RSA_GOOD_BITS} or more is recommended (RFC 8301)",
                    path.display()
                ));
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
    let config = DkimConfig::new(
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
    );
    Ok((config, warnings))
}

/// The modulus length in bits of a PKCS#1 RSA private key (RFC 8017 A.1.2):
/// SEQUENCE { INTEGER version, INTEGER modulus, ... }.
fn rsa_bits(pem: &str) -> Result<usize> {
    let key = PrivatePkcs1KeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("no RSA PRIVATE KEY block: {e}"))?;
    let mut outer = key.secret_pkcs1_der();
    let (tag, mut sequence) = der_take(&mut outer)?;
    if tag != 0x30 {
        bail!("not a DER sequence");
    }
    let _version = der_take(&mut sequence)?;
    let (tag, modulus) = der_take(&mut sequence)?;
    if tag != 0x02 {
        bail!("no modulus");
    }
    let significant: Vec<u8> = modulus.iter().copied().skip_while(|b| *b == 0).collect();
    let Some(first) = significant.first() else {
        bail!("an empty modulus");
    };
    Ok((significant.len() - 1) * 8 + (8 - first.leading_zeros() as usize))
}

/// Takes one DER item (tag, length, content) off the front of `input`.
fn der_take<'a>(input: &mut &'a [u8]) -> Result<(u8, &'a [u8])> {
    let data: &'a [u8] = input;
    let (Some(&tag), Some(&first)) = (data.first(), data.get(1)) else {
        bail!("truncated DER");
    };
    let rest = &data[2..];
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            bail!("a DER length this program does not read");
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        bail!("truncated DER");
    }
    *input = &rest[len..];
    Ok((tag, &rest[..len]))
}
/// lettre wants the 32-byte seed in base64; openssl writes it inside a PKCS#8 PEM, whose
/// DER ends with exactly those 32 bytes (RFC 8410).
fn ed25519_seed(pem: &str) -> Result<String> {
    let key = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("the Ed25519 key is not a PKCS#8 PEM file: {e}"))?;
    let der = key.secret_pkcs8_der();
    match der.len() {
        48 => Ok(STANDARD.encode(&der[16..])),
        n => bail!("an Ed25519 PKCS#8 key is 48 bytes, not {n} bytes"),
    }
}
