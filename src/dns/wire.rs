//! DNS messages as they travel (RFC 1035 §4): one question out, the answer section back.
//! Only what `check --dns` asks for is read: A, AAAA, MX, PTR and TXT records.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Result, bail};

/// The record types asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    A,
    Aaaa,
    Mx,
    Ptr,
    Txt,
}

impl Kind {
    fn code(self) -> u16 {
        match self {
            Kind::A => 1,
            Kind::Ptr => 12,
            Kind::Mx => 15,
            Kind::Txt => 16,
            Kind::Aaaa => 28,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::A => "A",
            Kind::Aaaa => "AAAA",
            Kind::Mx => "MX",
            Kind::Ptr => "PTR",
            Kind::Txt => "TXT",
        }
    }
}

/// One record of the asked type in the answer section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Data {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// Preference and exchange.
    Mx(u16, String),
    Ptr(String),
    /// The record's strings, in order.
    Txt(Vec<Vec<u8>>),
}

/// What a server said: its response code, whether it cut the answer short (ask again over
/// TCP), and the answer section's records of the asked type (a CNAME chain before them is
/// skipped, as the resolver already followed it).
#[derive(Debug)]
pub(crate) struct Reply {
    pub rcode: u8,
    pub truncated: bool,
    pub records: Vec<Data>,
}

/// NOERROR and NXDOMAIN: the two codes that answer the question.
pub(crate) const NOERROR: u8 = 0;
pub(crate) const NXDOMAIN: u8 = 3;

/// The largest UDP answer this client takes (EDNS0, RFC 6891), the size DNS flag day 2020
/// settled on so that answers are not fragmented.
const UDP_SIZE: u16 = 1232;

/// A standard query for `name` (absolute, no final dot needed) with recursion desired and an
/// EDNS0 OPT record, so that a DKIM key or a long SPF record fits one UDP answer.
pub(crate) fn query(id: u16, name: &str, kind: Kind) -> Result<Vec<u8>> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    // Flags: RD. Counts: one question, no answer or authority, one additional (the OPT).
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    encode_name(&mut q, name)?;
    q.extend_from_slice(&kind.code().to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // class IN
    // OPT: root name, type 41, the UDP size in the class, no extended flags, no options.
    q.push(0);
    q.extend_from_slice(&41u16.to_be_bytes());
    q.extend_from_slice(&UDP_SIZE.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    Ok(q)
}

fn encode_name(out: &mut Vec<u8>, name: &str) -> Result<()> {
    let name = name.trim_end_matches('.');
    let start = out.len();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        if !label.is_ascii() {
            bail!("{name:?} is not an ASCII domain name (write it as its xn-- form)");
        }
        let Some(len) = u8::try_from(label.len()).ok().filter(|&l| l <= 63) else {
            bail!("{name:?} has a label longer than 63 bytes");
        };
        out.push(len);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    if out.len() - start > 255 {
        bail!("{name:?} is longer than 255 bytes");
    }
    Ok(())
}

/// Reads the answer to the query `id` for `name` and `kind`; anything else (another
/// question, a query, a message cut short) is an error.
pub(crate) fn parse(msg: &[u8], id: u16, name: &str, kind: Kind) -> Result<Reply> {
    let mut r = Reader { msg, at: 0 };
    if r.u16()? != id {
        bail!("the answer is to another query");
    }
    let flags = r.u16()?;
    if flags & 0x8000 == 0 {
        bail!("the message is a query, not an answer");
    }
    let truncated = flags & 0x0200 != 0;
    let rcode = u8::try_from(flags & 0x000f).unwrap_or(u8::MAX);
    let questions = r.u16()?;
    let answers = r.u16()?;
    r.skip(4)?; // authority and additional counts: not read
    if questions != 1 {
        // A truncated answer may carry nothing at all; it is asked again over TCP.
        if truncated && questions == 0 {
            return Ok(Reply {
                rcode,
                truncated,
                records: Vec::new(),
            });
        }
        bail!("the answer has {questions} questions, not 1");
    }
    let asked = r.name()?;
    let (qtype, _class) = (r.u16()?, r.u16()?);
    if qtype != kind.code() || !asked.eq_ignore_ascii_case(name.trim_end_matches('.')) {
        bail!("the answer is to another question ({asked} type {qtype})");
    }
    let mut records = Vec::new();
    if truncated {
        return Ok(Reply {
            rcode,
            truncated,
            records,
        });
    }
    for _ in 0..answers {
        let _owner = r.name()?;
        let rtype = r.u16()?;
        r.skip(6)?; // class, TTL
        let len = usize::from(r.u16()?);
        let end = r.at + len;
        if end > msg.len() {
            bail!("a record runs past the end of the answer");
        }
        if rtype == kind.code() {
            records.push(data(msg, r.at, end, kind)?);
        }
        r.at = end;
    }
    Ok(Reply {
        rcode,
        truncated,
        records,
    })
}

fn data(msg: &[u8], start: usize, end: usize, kind: Kind) -> Result<Data> {
    let rdata = &msg[start..end];
    Ok(match kind {
        Kind::A => match <[u8; 4]>::try_from(rdata) {
            Ok(b) => Data::A(Ipv4Addr::from(b)),
            Err(_) => bail!("an A record of {} bytes", rdata.len()),
        },
        Kind::Aaaa => match <[u8; 16]>::try_from(rdata) {
            Ok(b) => Data::Aaaa(Ipv6Addr::from(b)),
            Err(_) => bail!("an AAAA record of {} bytes", rdata.len()),
        },
        Kind::Mx => {
            let mut r = Reader { msg, at: start };
            let preference = r.u16()?;
            Data::Mx(preference, r.name()?)
        }
        Kind::Ptr => Data::Ptr(Reader { msg, at: start }.name()?),
        Kind::Txt => {
            let mut strings = Vec::new();
            let mut rest = rdata;
            while let Some((&len, tail)) = rest.split_first() {
                let Some(s) = tail.get(..usize::from(len)) else {
                    bail!("a TXT string runs past its record");
                };
                strings.push(s.to_vec());
                rest = &tail[usize::from(len)..];
            }
            Data::Txt(strings)
        }
    })
}

struct Reader<'a> {
    msg: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn u16(&mut self) -> Result<u16> {
        let Some(b) = self.msg.get(self.at..self.at + 2) else {
            bail!("the answer ends early");
        };
        self.at += 2;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn skip(&mut self, n: usize) -> Result<()> {
        if self.at + n > self.msg.len() {
            bail!("the answer ends early");
        }
        self.at += n;
        Ok(())
    }

    /// A name, following compression pointers (RFC 1035 §4.1.4); leaves the reader after
    /// the name as written in place.
    fn name(&mut self) -> Result<String> {
        let mut labels: Vec<String> = Vec::new();
        let mut at = self.at;
        let mut resume = None;
        // Each pointer must go back: a loop cannot last longer than the message.
        let mut jumps = 0;
        loop {
            let Some(&len) = self.msg.get(at) else {
                bail!("a name runs past the end of the answer");
            };
            match len & 0xc0 {
                0x00 if len == 0 => {
                    at += 1;
                    break;
                }
                0x00 => {
                    let Some(label) = self.msg.get(at + 1..at + 1 + usize::from(len)) else {
                        bail!("a name runs past the end of the answer");
                    };
                    labels.push(String::from_utf8_lossy(label).into_owned());
                    at += 1 + usize::from(len);
                }
                0xc0 => {
                    let Some(&low) = self.msg.get(at + 1) else {
                        bail!("a name runs past the end of the answer");
                    };
                    let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                    jumps += 1;
                    if target >= at || jumps > 64 {
                        bail!("a name's compression pointer does not point back");
                    }
                    resume.get_or_insert(at + 2);
                    at = target;
                }
                _ => bail!("a name has a label of an unknown kind"),
            }
        }
        self.at = resume.unwrap_or(at);
        Ok(labels.join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer as a server writes it: the question copied, then `records` (type, rdata),
    /// each owner a pointer to the question's name.
    fn answer(id: u16, flags: u16, name: &str, kind: Kind, records: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m.extend_from_slice(&u16::try_from(records.len()).unwrap().to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        encode_name(&mut m, name).unwrap();
        m.extend_from_slice(&kind.code().to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        for (rtype, rdata) in records {
            m.extend_from_slice(&[0xc0, 12]);
            m.extend_from_slice(&rtype.to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 1, 44]);
            m.extend_from_slice(&u16::try_from(rdata.len()).unwrap().to_be_bytes());
            m.extend_from_slice(rdata);
        }
        m
    }

    #[test]
    fn a_query_has_one_question_and_an_edns_record() {
        let q = query(0x1234, "news.example.", Kind::Txt).unwrap();
        assert_eq!(&q[..12], &[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&q[12..26], b"\x04news\x07example\x00");
        assert_eq!(&q[26..30], &[0, 16, 0, 1]);
        assert_eq!(&q[30..], &[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        assert!(query(1, &format!("{}.example", "a".repeat(64)), Kind::A).is_err());
        assert!(query(1, "bücher.example", Kind::A).is_err());
    }

    #[test]
    fn records_of_the_asked_type_are_read_and_names_followed_through_pointers() {
        // An MX whose exchange is "mx" then a pointer to the question's name (offset 12).
        let mx = [&[0, 10, 2][..], b"mx", &[0xc0, 12]].concat();
        let cname = b"\x03www\x00".to_vec();
        let m = answer(
            7,
            0x8180,
            "harbour.example",
            Kind::Mx,
            &[(5, cname), (15, mx)],
        );
        let reply = parse(&m, 7, "harbour.example.", Kind::Mx).unwrap();
        assert_eq!(reply.rcode, NOERROR);
        assert_eq!(
            reply.records,
            vec![Data::Mx(10, "mx.harbour.example".into())]
        );

        let txt = [&[3][..], b"v=s", &[4], b"pf1 ", &[0]].concat();
        let m = answer(8, 0x8180, "harbour.example", Kind::Txt, &[(16, txt)]);
        let reply = parse(&m, 8, "harbour.example", Kind::Txt).unwrap();
        assert_eq!(
            reply.records,
            vec![Data::Txt(vec![
                b"v=s".to_vec(),
                b"pf1 ".to_vec(),
                Vec::new()
            ])]
        );
    }

    #[test]
    fn another_query_a_loop_or_a_short_message_is_refused() {
        let m = answer(9, 0x8183, "gone.example", Kind::A, &[]);
        assert_eq!(
            parse(&m, 9, "gone.example", Kind::A).unwrap().rcode,
            NXDOMAIN
        );
        assert!(
            parse(&m, 10, "gone.example", Kind::A).is_err(),
            "another id"
        );
        assert!(
            parse(&m, 9, "other.example", Kind::A).is_err(),
            "another name"
        );
        assert!(
            parse(&m, 9, "gone.example", Kind::Txt).is_err(),
            "another type"
        );
        assert!(parse(&m[..m.len() - 1], 9, "gone.example", Kind::A).is_err());

        // An owner name that points at itself.
        let mut looped = answer(9, 0x8180, "gone.example", Kind::A, &[(1, vec![1, 2, 3, 4])]);
        let owner = 12 + 14 + 4;
        looped[owner + 1] = u8::try_from(owner).unwrap();
        assert!(parse(&looped, 9, "gone.example", Kind::A).is_err());

        let truncated = answer(9, 0x8380, "big.example", Kind::Txt, &[]);
        assert!(
            parse(&truncated, 9, "big.example", Kind::Txt)
                .unwrap()
                .truncated
        );
    }
}
