//! SPF (RFC 7208): does a domain's record authorise an address, or name a provider's
//! include? Enough of `check_host` to tell an operator what to publish: `all`, `ip4`,
//! `ip6`, `a`, `mx`, `include`, `exists` and `redirect`, within the 10-lookup limit; macros
//! and `ptr` are reported as unverifiable rather than guessed.

use std::net::IpAddr;

use anyhow::Result;

/// The lookups SPF needs; `Dns` answers them, the unit tests a table.
pub(crate) trait Lookups {
    fn txt(&self, name: &str) -> Result<Vec<String>>;
    fn mx(&self, name: &str) -> Result<Vec<String>>;
    fn ips(&self, name: &str) -> Result<Vec<IpAddr>>;
}

impl Lookups for super::Dns {
    fn txt(&self, name: &str) -> Result<Vec<String>> {
        super::Dns::txt(self, name)
    }
    fn mx(&self, name: &str) -> Result<Vec<String>> {
        super::Dns::mx(self, name)
    }
    fn ips(&self, name: &str) -> Result<Vec<IpAddr>> {
        super::Dns::ips(self, name)
    }
}

/// The result of evaluating a record for an address (RFC 7208 §2.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    /// No SPF record.
    None,
    /// The record is broken (two records, too many lookups, a bad term).
    PermError(String),
    /// A lookup got no answer.
    TempError(String),
    /// The record uses what this check does not evaluate (macros, `ptr`).
    Unverifiable(String),
}

/// The SPF record of `domain`, if it has exactly one; `Err` with the reason otherwise
/// (`Ok(None)`: it has none).
pub(crate) fn record(dns: &dyn Lookups, domain: &str) -> Result<Option<String>, Outcome> {
    let records: Vec<String> = dns
        .txt(domain)
        .map_err(|e| Outcome::TempError(format!("{e:#}")))?
        .into_iter()
        .filter(|t| is_spf(t))
        .collect();
    match records.len() {
        0 => Ok(None),
        1 => Ok(records.into_iter().next()),
        n => Err(Outcome::PermError(format!(
            "{domain} has {n} SPF records; receivers treat that as an error (RFC 7208 §4.5): merge them into one"
        ))),
    }
}

fn is_spf(txt: &str) -> bool {
    let t = txt.trim_start().to_ascii_lowercase();
    t == "v=spf1" || t.starts_with("v=spf1 ")
}

/// Evaluates `domain`'s record for `ip`.
pub(crate) fn check(dns: &dyn Lookups, ip: IpAddr, domain: &str) -> Outcome {
    let mut lookups = 0;
    evaluate(dns, ip, domain, &mut lookups, 0)
}

/// The lookup limit of RFC 7208 §4.6.4.
const MAX_LOOKUPS: usize = 10;

fn evaluate(
    dns: &dyn Lookups,
    ip: IpAddr,
    domain: &str,
    lookups: &mut usize,
    depth: usize,
) -> Outcome {
    if depth > MAX_LOOKUPS {
        return Outcome::PermError("includes nested too deep".into());
    }
    let text = match record(dns, domain) {
        Ok(Some(t)) => t,
        Ok(None) => return Outcome::None,
        Err(outcome) => return outcome,
    };
    let mut redirect = None;
    for term in text.split_whitespace().skip(1) {
        let lower = term.to_ascii_lowercase();
        if let Some(target) = lower.strip_prefix("redirect=") {
            redirect = Some(target.to_string());
            continue;
        }
        if lower.starts_with("exp=") || (lower.contains('=') && !lower.contains(':')) {
            continue; // other modifiers change nothing about the result
        }
        let (qualifier, mechanism) = match lower.chars().next() {
            Some(q @ ('+' | '-' | '~' | '?')) => (q, &lower[1..]),
            _ => ('+', lower.as_str()),
        };
        let matched = match mechanism_matches(dns, ip, domain, mechanism, lookups, depth) {
            Ok(m) => m,
            Err(outcome) => return outcome,
        };
        if *lookups > MAX_LOOKUPS {
            return Outcome::PermError(format!(
                "the record of {domain} needs more than {MAX_LOOKUPS} DNS lookups; receivers stop at {MAX_LOOKUPS} (RFC 7208 §4.6.4)"
            ));
        }
        if matched {
            return match qualifier {
                '-' => Outcome::Fail,
                '~' => Outcome::SoftFail,
                '?' => Outcome::Neutral,
                _ => Outcome::Pass,
            };
        }
    }
    match redirect {
        Some(target) => {
            *lookups += 1;
            match evaluate(dns, ip, &target, lookups, depth + 1) {
                Outcome::None => Outcome::PermError(format!("redirect={target} has no SPF record")),
                other => other,
            }
        }
        None => Outcome::Neutral,
    }
}

/// Whether one mechanism matches `ip`; `Err` for an outcome that ends the evaluation.
fn mechanism_matches(
    dns: &dyn Lookups,
    ip: IpAddr,
    domain: &str,
    mechanism: &str,
    lookups: &mut usize,
    depth: usize,
) -> Result<bool, Outcome> {
    let (name, arg) = match mechanism.split_once([':', '/']) {
        Some((n, _)) => (n, &mechanism[n.len()..]),
        None => (mechanism, ""),
    };
    let (target, v4, v6) = domain_and_prefix(arg, domain);
    if target.contains('%') {
        return Err(Outcome::Unverifiable(format!(
            "`{mechanism}` uses SPF macros, which this check does not expand"
        )));
    }
    let temp = |e: anyhow::Error| Outcome::TempError(format!("{e:#}"));
    match name {
        "all" => Ok(true),
        "ip4" | "ip6" => {
            let network = arg.trim_start_matches(':');
            let (addr, bits) = match network.split_once('/') {
                Some((a, b)) => (a, b.parse::<u8>().ok()),
                None => (network, None),
            };
            let Ok(net) = addr.parse::<IpAddr>() else {
                return Err(Outcome::PermError(format!("`{mechanism}` is not an address")));
            };
            let bits = bits.unwrap_or(if net.is_ipv4() { 32 } else { 128 });
            Ok(in_prefix(ip, net, bits))
        }
        "a" => {
            *lookups += 1;
            let ips = dns.ips(&target).map_err(temp)?;
            Ok(ips.iter().any(|a| in_prefix(ip, *a, if a.is_ipv4() { v4 } else { v6 })))
        }
        "mx" => {
            *lookups += 1;
            for host in dns.mx(&target).map_err(temp)?.iter().take(10) {
                let ips = dns.ips(host).map_err(temp)?;
                if ips.iter().any(|a| in_prefix(ip, *a, if a.is_ipv4() { v4 } else { v6 })) {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        "include" => {
            *lookups += 1;
            match evaluate(dns, ip, &target, lookups, depth + 1) {
                Outcome::Pass => Ok(true),
                Outcome::Fail | Outcome::SoftFail | Outcome::Neutral => Ok(false),
                Outcome::None => Err(Outcome::PermError(format!(
                    "include:{target} has no SPF record"
                ))),
                other => Err(other),
            }
        }
        "exists" => {
            *lookups += 1;
            Ok(!dns.ips(&target).map_err(temp)?.is_empty())
        }
        "ptr" => Err(Outcome::Unverifiable(
            "the record uses `ptr`, which RFC 7208 §5.5 asks senders not to use and this check does not evaluate".into(),
        )),
        other => Err(Outcome::PermError(format!("unknown mechanism `{other}`"))),
    }
}

/// The domain a mechanism names (`:domain`, else the current one) and its prefix lengths
/// (`/24`, `//64`).
fn domain_and_prefix(arg: &str, current: &str) -> (String, u8, u8) {
    let (domain_part, prefixes) = match arg.find('/') {
        Some(i) => (&arg[..i], &arg[i..]),
        None => (arg, ""),
    };
    let domain = domain_part
        .strip_prefix(':')
        .filter(|d| !d.is_empty())
        .unwrap_or(current);
    let mut v4 = 32;
    let mut v6 = 128;
    if let Some(rest) = prefixes.strip_prefix('/') {
        let (a, b) = match rest.split_once("//") {
            Some((a, b)) => (a, Some(b)),
            None if rest.starts_with('/') => ("", Some(&rest[1..])),
            None => (rest, None),
        };
        v4 = a.parse().unwrap_or(32);
        v6 = b.and_then(|b| b.parse().ok()).unwrap_or(128);
    }
    (domain.to_string(), v4, v6)
}

/// Whether `ip` is in `net/bits` (addresses of different families never match).
pub(crate) fn in_prefix(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (a, b, width): (u128, u128, u32) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a).into(), u32::from(b).into(), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let bits = u32::from(bits).min(width);
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (a >> shift) == (b >> shift)
}

/// Whether `domain`'s record names `include:target` (or redirects to it), directly or in
/// the records it includes, up to the lookup limit.
pub(crate) fn includes(dns: &dyn Lookups, domain: &str, target: &str) -> bool {
    let mut seen = 0;
    let mut todo = vec![domain.to_string()];
    while let Some(d) = todo.pop() {
        seen += 1;
        if seen > MAX_LOOKUPS {
            return false;
        }
        let Ok(Some(text)) = record(dns, &d) else {
            continue;
        };
        for term in text.split_whitespace() {
            let lower = term.to_ascii_lowercase();
            let lower = lower.trim_start_matches(['+', '-', '~', '?']);
            let named = lower
                .strip_prefix("include:")
                .or_else(|| lower.strip_prefix("redirect="));
            if let Some(named) = named {
                if named == target {
                    return true;
                }
                todo.push(named.to_string());
            }
        }
    }
    false
}

/// `record` with `mechanism` added before its `all` (or its `redirect=`), or a new record
/// ending in `~all`.
pub(crate) fn with_mechanism(record: Option<&str>, mechanism: &str) -> String {
    let Some(record) = record else {
        return format!("v=spf1 {mechanism} ~all");
    };
    let terms: Vec<&str> = record.split_whitespace().collect();
    let at = terms
        .iter()
        .position(|t| {
            let l = t.to_ascii_lowercase();
            l.trim_start_matches(['+', '-', '~', '?']) == "all" || l.starts_with("redirect=")
        })
        .unwrap_or(terms.len());
    let mut out: Vec<&str> = terms[..at].to_vec();
    out.push(mechanism);
    out.extend_from_slice(&terms[at..]);
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Table(HashMap<&'static str, Vec<&'static str>>);

    impl Lookups for Table {
        fn txt(&self, name: &str) -> Result<Vec<String>> {
            Ok(self
                .0
                .get(name)
                .map(|v| v.iter().map(ToString::to_string).collect())
                .unwrap_or_default())
        }
        fn mx(&self, name: &str) -> Result<Vec<String>> {
            Ok(self
                .0
                .get(format!("mx:{name}").as_str())
                .map(|v| v.iter().map(ToString::to_string).collect())
                .unwrap_or_default())
        }
        fn ips(&self, name: &str) -> Result<Vec<IpAddr>> {
            Ok(self
                .0
                .get(format!("ip:{name}").as_str())
                .map(|v| v.iter().map(|s| s.parse().unwrap()).collect())
                .unwrap_or_default())
        }
    }

    fn table() -> Table {
        Table(HashMap::from([
            (
                "harbour.example",
                vec![
                    "v=spf1 mx include:esp.example -all",
                    "google-site-verification=x",
                ],
            ),
            ("mx:harbour.example", vec!["mx.harbour.example"]),
            ("ip:mx.harbour.example", vec!["192.0.2.25"]),
            (
                "esp.example",
                vec!["v=spf1 ip4:198.51.100.0/24 ip6:2001:db8::/32 ~all"],
            ),
            ("loop.example", vec!["v=spf1 include:loop.example -all"]),
            ("two.example", vec!["v=spf1 -all", "v=spf1 ~all"]),
            ("macro.example", vec!["v=spf1 exists:%{i}.spf.example -all"]),
            ("redirected.example", vec!["v=spf1 redirect=esp.example"]),
        ]))
    }

    #[test]
    fn records_are_evaluated_as_receivers_do() {
        let t = table();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for (address, domain, expected) in [
            ("192.0.2.25", "harbour.example", Outcome::Pass),
            ("198.51.100.9", "harbour.example", Outcome::Pass),
            ("2001:db8::7", "harbour.example", Outcome::Pass),
            ("203.0.113.1", "harbour.example", Outcome::Fail),
            ("203.0.113.1", "redirected.example", Outcome::SoftFail),
            ("203.0.113.1", "nothing.example", Outcome::None),
        ] {
            assert_eq!(
                check(&t, ip(address), domain),
                expected,
                "{address} {domain}"
            );
        }
        for (domain, kind) in [
            ("loop.example", "PermError"),
            ("two.example", "PermError"),
            ("macro.example", "Unverifiable"),
        ] {
            let outcome = check(&t, ip("203.0.113.1"), domain);
            assert!(
                format!("{outcome:?}").starts_with(kind),
                "{domain}: {outcome:?}"
            );
        }
        assert!(includes(&t, "harbour.example", "esp.example"));
        assert!(!includes(&t, "harbour.example", "other.example"));
    }

    #[test]
    fn a_mechanism_goes_before_all() {
        assert_eq!(
            with_mechanism(Some("v=spf1 mx -all"), "ip4:192.0.2.25"),
            "v=spf1 mx ip4:192.0.2.25 -all"
        );
        assert_eq!(
            with_mechanism(None, "include:esp.example"),
            "v=spf1 include:esp.example ~all"
        );
        assert!(in_prefix(
            "10.1.2.3".parse().unwrap(),
            "10.1.0.0".parse().unwrap(),
            16
        ));
        assert!(!in_prefix(
            "10.2.2.3".parse().unwrap(),
            "10.1.0.0".parse().unwrap(),
            16
        ));
    }
}
