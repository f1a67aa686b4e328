//! Generated malformed mail: the real bounces of the corpus, cut, spliced, nested, with
//! broken boundaries, encodings and headers, and plain random bytes. Reading any of them
//! must return (no panic) within a bound on time and on what it finds.
//!
//! The suite runs 1,000 cases; the long run sets the count:
//! `MALFORMED_CASES=100000 cargo test --release --lib malformed -- --nocapture`.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;

use super::classify;

/// The corpus messages, read once.
fn corpus() -> &'static [Vec<u8>] {
    static CORPUS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bounces/messages");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("the bounce corpus")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| std::fs::read(f).expect("read"))
            .collect()
    })
}

fn cases() -> u32 {
    std::env::var("MALFORMED_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

/// One change to a message.
#[derive(Debug, Clone)]
enum Mutation {
    /// Cut the message at this fraction of its length.
    Truncate(f64),
    /// Insert bytes at a fraction of the length.
    Insert(f64, Vec<u8>),
    /// Remove a run of bytes.
    Delete(f64, usize),
    /// Repeat a line many times (a boundary line repeated thousands of times).
    RepeatLine(f64, usize),
    /// Wrap the message in nested multiparts.
    Nest(usize),
    /// Replace every boundary parameter with another value.
    Boundary(String),
    /// Declare a transfer encoding the body does not have.
    Encoding(&'static str),
    /// Prepend a header line of this length.
    LongHeader(usize),
    /// Flip bytes to arbitrary values.
    Flip(Vec<(f64, u8)>),
}

fn at(len: usize, fraction: f64) -> usize {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = (len as f64 * fraction) as usize;
    i.min(len)
}

fn apply(mut m: Vec<u8>, change: &Mutation) -> Vec<u8> {
    match change {
        Mutation::Truncate(f) => m.truncate(at(m.len(), *f)),
        Mutation::Insert(f, bytes) => {
            let i = at(m.len(), *f);
            m.splice(i..i, bytes.iter().copied());
        }
        Mutation::Delete(f, n) => {
            let i = at(m.len(), *f);
            let end = (i + n).min(m.len());
            m.drain(i..end);
        }
        Mutation::RepeatLine(f, n) => {
            let i = at(m.len(), *f);
            let start = m[..i]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
            let end = m[i..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(m.len(), |p| i + p + 1);
            let line = m[start..end].to_vec();
            // At most 1 MiB more: `bounces` reads 16 MiB of a message at most.
            let repeated: Vec<u8> = line
                .iter()
                .copied()
                .cycle()
                .take((line.len() * n).min(1 << 20))
                .collect();
            m.splice(end..end, repeated);
        }
        Mutation::Nest(depth) => {
            let mut head = Vec::new();
            for d in 0..*depth {
                head.extend_from_slice(
                    format!("Content-Type: multipart/mixed; boundary=\"n{d}\"\n\n--n{d}\n")
                        .as_bytes(),
                );
            }
            head.extend_from_slice(&m);
            m = head;
        }
        Mutation::Boundary(b) => {
            let text =
                String::from_utf8_lossy(&m).replace("boundary=", &format!("boundary={b};x="));
            m = text.into_bytes();
        }
        Mutation::Encoding(e) => {
            let mut head = format!("Content-Transfer-Encoding: {e}\n").into_bytes();
            head.extend_from_slice(&m);
            m = head;
        }
        Mutation::LongHeader(n) => {
            let mut head = b"X-Long: ".to_vec();
            head.extend(std::iter::repeat_n(b'a', *n));
            head.push(b'\n');
            head.extend_from_slice(&m);
            m = head;
        }
        Mutation::Flip(flips) => {
            for (f, byte) in flips {
                let i = at(m.len(), *f);
                if let Some(b) = m.get_mut(i) {
                    *b = *byte;
                }
            }
        }
    }
    m
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let fraction = 0.0..1.0f64;
    prop_oneof![
        fraction.clone().prop_map(Mutation::Truncate),
        (
            fraction.clone(),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..64),
                Just(b"\n--".to_vec()),
                Just(b"\nContent-Type: multipart/report; boundary=\"\"\n\n".to_vec()),
                Just(b"\nContent-Type: message/rfc822\n\n".to_vec()),
                Just(b"=?utf-8?B?====?= =?x?Q?=ZZ?=".to_vec()),
                Just(b"Final-Recipient: rfc822; @\nStatus: 5.\n".to_vec()),
            ]
        )
            .prop_map(|(f, b)| Mutation::Insert(f, b)),
        (fraction.clone(), 0..2000usize).prop_map(|(f, n)| Mutation::Delete(f, n)),
        (fraction.clone(), 1..3000usize).prop_map(|(f, n)| Mutation::RepeatLine(f, n)),
        (1..40usize).prop_map(Mutation::Nest),
        "[ -~]{0,20}".prop_map(Mutation::Boundary),
        prop_oneof![Just("base64"), Just("quoted-printable"), Just("x-uuencode")]
            .prop_map(Mutation::Encoding),
        (0..100_000usize).prop_map(Mutation::LongHeader),
        proptest::collection::vec((fraction, any::<u8>()), 1..32).prop_map(Mutation::Flip),
    ]
}

/// A corpus message with 1–4 mutations, or random bytes.
fn message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        9 => (0..corpus().len(), proptest::collection::vec(mutation(), 1..5)).prop_map(
            |(i, changes)| {
                let mut m = changes.iter().fold(corpus()[i].clone(), apply);
                m.truncate(4 << 20);
                m
            }
        ),
        1 => proptest::collection::vec(any::<u8>(), 0..4096),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn no_malformed_message_crashes_or_hangs_the_reader(raw in message()) {
        let started = crate::clock::instant();
        let reading = classify::read(&raw);
        // A generous bound: a message reads in well under a millisecond.
        prop_assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        prop_assert!(reading.findings.len() <= raw.len() / 3 + 8);
    }
}
