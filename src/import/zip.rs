//! The files of a ZIP archive (Mailchimp and Substack export their lists as one): read
//! from the central directory, stored or deflated, with bounded sizes. Encrypted entries
//! and ZIP64 archives are refused with a message.

use anyhow::{Result, bail};

/// The largest file taken out of an archive: a list of ten million addresses is ~1 GB.
const MAX_ENTRY: usize = 1 << 30;
/// The most files an archive may have.
const MAX_ENTRIES: usize = 1000;

fn u16_at(b: &[u8], at: usize) -> Result<usize> {
    match b.get(at..at + 2) {
        Some(s) => Ok(usize::from(u16::from_le_bytes([s[0], s[1]]))),
        None => bail!("the ZIP archive is cut short"),
    }
}

fn u32_at(b: &[u8], at: usize) -> Result<usize> {
    match b.get(at..at + 4) {
        Some(s) => Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize),
        None => bail!("the ZIP archive is cut short"),
    }
}

/// True when the bytes start like a ZIP archive.
pub(crate) fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06")
}

/// Each file's name and contents, in the archive's order (folders left out).
pub(crate) fn files(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    // The end record is within the last 64 KiB + 22 bytes (its comment is at most 64 KiB).
    let floor = bytes.len().saturating_sub(65_557);
    let Some(end) = (floor..bytes.len().saturating_sub(21))
        .rev()
        .find(|&i| bytes[i..].starts_with(b"PK\x05\x06"))
    else {
        bail!("not a ZIP archive (no end of central directory)");
    };
    let count = u16_at(bytes, end + 10)?;
    let mut at = u32_at(bytes, end + 16)?;
    if count == 0xffff || at == 0xffff_ffff {
        bail!("ZIP64 archives are not read; unzip it and import the CSV files");
    }
    if count > MAX_ENTRIES {
        bail!("the ZIP archive has {count} files; at most {MAX_ENTRIES} are read");
    }
    let mut out = Vec::new();
    for _ in 0..count {
        if u32_at(bytes, at)? != 0x0201_4b50 {
            bail!("the ZIP archive's directory is damaged");
        }
        let flags = u16_at(bytes, at + 8)?;
        let method = u16_at(bytes, at + 10)?;
        let compressed = u32_at(bytes, at + 20)?;
        let size = u32_at(bytes, at + 24)?;
        let name_len = u16_at(bytes, at + 28)?;
        let extra_len = u16_at(bytes, at + 30)?;
        let comment_len = u16_at(bytes, at + 32)?;
        let local = u32_at(bytes, at + 42)?;
        let Some(name) = bytes.get(at + 46..at + 46 + name_len) else {
            bail!("the ZIP archive is cut short");
        };
        let name = String::from_utf8_lossy(name).into_owned();
        at += 46 + name_len + extra_len + comment_len;
        if name.ends_with('/') {
            continue;
        }
        if flags & 1 != 0 {
            bail!("{name} in the ZIP archive is encrypted");
        }
        if size > MAX_ENTRY {
            bail!(
                "{name} in the ZIP archive is larger than {} MiB",
                MAX_ENTRY >> 20
            );
        }
        if u32_at(bytes, local)? != 0x0403_4b50 {
            bail!("{name}: the ZIP archive is damaged");
        }
        let start = local + 30 + u16_at(bytes, local + 26)? + u16_at(bytes, local + 28)?;
        let Some(data) = bytes.get(start..start + compressed) else {
            bail!("{name}: the ZIP archive is cut short");
        };
        let contents = match method {
            0 => data.to_vec(),
            8 => miniz_oxide::inflate::decompress_to_vec_with_limit(data, MAX_ENTRY)
                .map_err(|e| anyhow::anyhow!("{name}: cannot inflate ({e:?})"))?,
            m => bail!("{name}: compression method {m} is not read (only stored and deflate)"),
        };
        out.push((name, contents));
    }
    Ok(out)
}
