//! DNS lookups for `check --dns`: a stub resolver that asks the system's resolvers (or the
//! one named with `--resolver`) over UDP, and over TCP when the answer is cut short, and
//! what the records say about sending as this domain.
//!
//! Its own few lines rather than a resolver library: five record types asked of a
//! recursive server are all this needs, and the library brought 24 crates and some 20 s
//! of a cold build's CPU (BENCHMARKS.md, "A lighter build").

pub(crate) mod checks;
pub(crate) mod spf;
mod wire;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ring::rand::{SecureRandom, SystemRandom};

use wire::{Data, Kind, Reply};

/// How long one server gets to answer one try, and how many rounds over the servers a
/// lookup makes before it concludes there is no answer.
const TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPTS: usize = 2;

/// Where lookups go; each lookup blocks until answered.
pub(crate) struct Dns {
    servers: Vec<SocketAddr>,
    random: SystemRandom,
    /// Who answers, for messages.
    pub server: String,
}

/// What a lookup found: records, none (the name or the type does not exist), or no
/// answer at all (a timeout, SERVFAIL): a check cannot conclude on the last.
pub(crate) type Answer<T> = Result<Vec<T>>;

impl Dns {
    /// Asks `server` (`IP` or `IP:PORT`), or the system's resolvers (`/etc/resolv.conf`).
    pub(crate) fn new(server: Option<&str>) -> Result<Dns> {
        let (servers, name) = if let Some(s) = server {
            let addr = parse_server(s)?;
            (vec![addr], addr.to_string())
        } else {
            let conf = std::fs::read_to_string(RESOLV_CONF).with_context(|| {
                format!("cannot read the system's DNS resolvers ({RESOLV_CONF}); name one with --resolver")
            })?;
            let servers = nameservers(&conf);
            if servers.is_empty() {
                bail!("{RESOLV_CONF} names no nameserver; name one with --resolver");
            }
            (servers, "the system's resolvers".to_string())
        };
        Ok(Dns {
            servers,
            random: SystemRandom::new(),
            server: name,
        })
    }

    /// The records of `kind` at `name`: each server in turn, for `ATTEMPTS` rounds, until
    /// one answers the question (with records, or that there are none).
    fn records(&self, name: &str, kind: Kind) -> Answer<Data> {
        let mut why = String::new();
        for _ in 0..ATTEMPTS {
            for &server in &self.servers {
                why = match self.ask(server, name, kind) {
                    Ok(reply) if reply.rcode == wire::NOERROR => return Ok(reply.records),
                    Ok(reply) if reply.rcode == wire::NXDOMAIN => return Ok(Vec::new()),
                    Ok(reply) => format!("it answered {}", rcode(reply.rcode)),
                    Err(e) => format!("{e:#}"),
                };
                if self.servers.len() > 1 {
                    why = format!("{server}: {why}");
                }
            }
        }
        bail!(
            "no answer for {} {name} from {}: {why}",
            kind.name(),
            self.server
        )
    }

    fn ask(&self, server: SocketAddr, name: &str, kind: Kind) -> Result<Reply> {
        let mut id = [0u8; 2];
        self.random
            .fill(&mut id)
            .map_err(|_| anyhow::anyhow!("no random query id from the system"))?;
        let id = u16::from_be_bytes(id);
        let query = wire::query(id, name, kind)?;
        let reply = over_udp(server, &query, id, name, kind)?;
        if reply.truncated {
            return over_tcp(server, &query, id, name, kind);
        }
        Ok(reply)
    }

    /// Each TXT record at `name`, its strings joined (RFC 7208 §3.3).
    pub(crate) fn txt(&self, name: &str) -> Answer<String> {
        Ok(self
            .records(name, Kind::Txt)?
            .into_iter()
            .filter_map(|d| match d {
                Data::Txt(strings) => Some(
                    strings
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect())
    }

    /// The mail exchangers of `name`, lowest preference first.
    pub(crate) fn mx(&self, name: &str) -> Answer<String> {
        let mut found: Vec<(u16, String)> = self
            .records(name, Kind::Mx)?
            .into_iter()
            .filter_map(|d| match d {
                Data::Mx(preference, exchange) => Some((preference, host(&exchange))),
                _ => None,
            })
            .collect();
        found.sort();
        Ok(found.into_iter().map(|(_, h)| h).collect())
    }

    /// The IPv4 and IPv6 addresses of `name`.
    pub(crate) fn ips(&self, name: &str) -> Answer<IpAddr> {
        let mut ips: Vec<IpAddr> = self
            .records(name, Kind::A)?
            .into_iter()
            .filter_map(|d| match d {
                Data::A(a) => Some(IpAddr::V4(a)),
                _ => None,
            })
            .collect();
        ips.extend(
            self.records(name, Kind::Aaaa)?
                .into_iter()
                .filter_map(|d| match d {
                    Data::Aaaa(a) => Some(IpAddr::V6(a)),
                    _ => None,
                }),
        );
        Ok(ips)
    }

    /// The names a reverse lookup of `ip` gives.
    pub(crate) fn ptr(&self, ip: IpAddr) -> Answer<String> {
        Ok(self
            .records(&reverse_name(ip), Kind::Ptr)?
            .into_iter()
            .filter_map(|d| match d {
                Data::Ptr(name) => Some(host(&name)),
                _ => None,
            })
            .collect())
    }
}

const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The `nameserver` lines of a resolv.conf, on port 53 (a zone index after `%` dropped).
fn nameservers(conf: &str) -> Vec<SocketAddr> {
    conf.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next())?
        })
        .filter_map(|ip| ip.split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// One try over UDP from a fresh port: answers from elsewhere are refused by the
/// connected socket, and answers to another id (a late one, a forged one) are skipped.
fn over_udp(server: SocketAddr, query: &[u8], id: u16, name: &str, kind: Kind) -> Result<Reply> {
    let local: IpAddr = if server.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let socket = UdpSocket::bind((local, 0))?;
    socket.connect(server)?;
    socket.send(query)?;
    let deadline = crate::clock::instant() + TIMEOUT;
    let mut buf = vec![0u8; 65_535];
    loop {
        let left = deadline.saturating_duration_since(crate::clock::instant());
        if left.is_zero() {
            bail!("no answer within {} s", TIMEOUT.as_secs());
        }
        socket.set_read_timeout(Some(left))?;
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                bail!("no answer within {} s", TIMEOUT.as_secs())
            }
            Err(e) => return Err(e.into()),
        };
        if buf[..n].starts_with(&id.to_be_bytes()) {
            return wire::parse(&buf[..n], id, name, kind);
        }
    }
}

/// The same query over TCP, each message behind its two-byte length (RFC 1035 §4.2.2).
fn over_tcp(server: SocketAddr, query: &[u8], id: u16, name: &str, kind: Kind) -> Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&server, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let len = u16::try_from(query.len()).context("a query longer than 64 KB")?;
    stream.write_all(&[&len.to_be_bytes()[..], query].concat())?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut msg)?;
    let reply = wire::parse(&msg, id, name, kind)?;
    if reply.truncated {
        bail!("the answer over TCP is cut short too");
    }
    Ok(reply)
}

/// The response codes a server may give instead of an answer (RFC 1035 §4.1.1).
fn rcode(code: u8) -> String {
    match code {
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        other => format!("response code {other}"),
    }
}

/// A name as people write it: lowercase, no final dot.
fn host(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// `7.113.0.203.in-addr.arpa` for 203.0.113.7; nibbles under `ip6.arpa` for IPv6.
pub(crate) fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut labels: Vec<String> = v6
                .octets()
                .iter()
                .flat_map(|b| [b >> 4, b & 0xf])
                .map(|n| format!("{n:x}"))
                .collect();
            labels.reverse();
            format!("{}.ip6.arpa", labels.join("."))
        }
    }
}

/// `IP` (port 53) or `IP:PORT` (`[IPv6]:PORT`).
fn parse_server(s: &str) -> Result<SocketAddr> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = s.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    bail!("--resolver {s:?} is not an IP address or IP:PORT, e.g. 9.9.9.9 or 127.0.0.1:5353")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names_and_servers() {
        assert_eq!(
            reverse_name("203.0.113.7".parse().unwrap()),
            "7.113.0.203.in-addr.arpa"
        );
        assert!(reverse_name("2001:db8::1".parse().unwrap()).starts_with("1.0.0.0.0.0.0.0."));
        assert_eq!(parse_server("127.0.0.1:5353").unwrap().port(), 5353);
        assert_eq!(parse_server("9.9.9.9").unwrap().port(), 53);
        assert!(parse_server("dns.example").is_err());
    }

    #[test]
    fn the_nameservers_of_a_resolv_conf() {
        let conf = "# local\nsearch example.org\nnameserver 10.0.0.53\nnameserver fe80::1%eth0\noptions ndots:2\nnameserver nonsense\n";
        assert_eq!(
            nameservers(conf),
            vec![
                "10.0.0.53:53".parse::<SocketAddr>().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
    }
}
