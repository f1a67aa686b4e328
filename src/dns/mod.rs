//! DNS lookups for `check --dns` (hickory's resolver, through the system's resolvers or one
//! named with `--resolver`), and what the records say about sending as this domain.

pub(crate) mod checks;
pub(crate) mod spf;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hickory_resolver::Resolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};

/// A resolver and the runtime its lookups run on; each lookup blocks until answered.
pub(crate) struct Dns {
    resolver: Resolver<TokioRuntimeProvider>,
    runtime: tokio::runtime::Runtime,
    /// Who answers, for messages.
    pub server: String,
}

/// What a lookup found: records, none (the name or the type does not exist), or no
/// answer at all (a timeout, SERVFAIL): a check cannot conclude on the last.
pub(crate) type Answer<T> = Result<Vec<T>>;

impl Dns {
    /// Asks `server` (`IP` or `IP:PORT`), or the system's resolvers (`/etc/resolv.conf`).
    pub(crate) fn new(server: Option<&str>) -> Result<Dns> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_secs(5);
        opts.attempts = 2;
        // Every name asked is absolute: no search domain may be appended.
        opts.ndots = 0;
        let (config, name) = if let Some(s) = server {
            let addr = parse_server(s)?;
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
            (
                ResolverConfig::from_name_servers(vec![ns]),
                addr.to_string(),
            )
        } else {
            let (config, _) = hickory_resolver::system_conf::read_system_conf().context(
                "cannot read the system's DNS resolvers (/etc/resolv.conf); name one with --resolver",
            )?;
            (config, "the system's resolvers".to_string())
        };
        let resolver = {
            let _guard = runtime.enter();
            Resolver::builder_with_config(config, TokioRuntimeProvider::default())
                .with_options(opts)
                .build()
                .context("cannot set up the DNS resolver")?
        };
        Ok(Dns {
            resolver,
            runtime,
            server: name,
        })
    }

    fn records(&self, name: &str, kind: RecordType) -> Answer<RData> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match self
            .runtime
            .block_on(self.resolver.lookup(fqdn.as_str(), kind))
        {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter(|r| r.record_type() == kind)
                .map(|r| r.data.clone())
                .collect()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Err(e) => Err(anyhow::anyhow!(
                "no answer for {kind} {name} from {}: {e}",
                self.server
            )),
        }
    }

    /// Each TXT record at `name`, its strings joined (RFC 7208 §3.3).
    pub(crate) fn txt(&self, name: &str) -> Answer<String> {
        Ok(self
            .records(name, RecordType::TXT)?
            .into_iter()
            .filter_map(|d| match d {
                RData::TXT(txt) => Some(
                    txt.txt_data
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
            .records(name, RecordType::MX)?
            .into_iter()
            .filter_map(|d| match d {
                RData::MX(mx) => Some((mx.preference, host(&mx.exchange.to_string()))),
                _ => None,
            })
            .collect();
        found.sort();
        Ok(found.into_iter().map(|(_, h)| h).collect())
    }

    /// The IPv4 and IPv6 addresses of `name`.
    pub(crate) fn ips(&self, name: &str) -> Answer<IpAddr> {
        let mut ips: Vec<IpAddr> = self
            .records(name, RecordType::A)?
            .into_iter()
            .filter_map(|d| match d {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect();
        ips.extend(
            self.records(name, RecordType::AAAA)?
                .into_iter()
                .filter_map(|d| match d {
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                }),
        );
        Ok(ips)
    }

    /// The names a reverse lookup of `ip` gives.
    pub(crate) fn ptr(&self, ip: IpAddr) -> Answer<String> {
        Ok(self
            .records(&reverse_name(ip), RecordType::PTR)?
            .into_iter()
            .filter_map(|d| match d {
                RData::PTR(p) => Some(host(&p.0.to_string())),
                _ => None,
            })
            .collect())
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
}
