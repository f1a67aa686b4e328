//! What `check --dns` finds: SPF for the sending path, each DKIM key as published, DMARC
//! and its alignment with From, MX where mail must come back, PTR for one's own
//! addresses. Each finding that fails says the record to publish.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::Dns;
use super::spf::{self, Outcome};
use crate::mail::dkim::{DkimKey, Signatures};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Ok,
    /// Works, but worth changing.
    Warn,
    /// Receivers will reject or junk mail over this.
    Fail,
    /// No conclusion: the path is not known, or a lookup got no answer.
    Unknown,
}

impl Level {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
            Level::Unknown => "?",
        }
    }
}

pub(crate) struct Finding {
    pub level: Level,
    pub topic: &'static str,
    pub text: String,
    /// The DNS record that fixes it, as a zone file line.
    pub publish: Option<String>,
}

impl Finding {
    fn new(level: Level, topic: &'static str, text: impl Into<String>) -> Finding {
        Finding {
            level,
            topic,
            text: text.into(),
            publish: None,
        }
    }

    fn publish(mut self, name: &str, kind: &str, value: &str) -> Finding {
        let value = if kind == "TXT" {
            txt_strings(value)
        } else {
            value.to_string()
        };
        self.publish = Some(format!("{name}. {kind} {value}"));
        self
    }
}

/// A TXT value as zone files write it: quoted strings of at most 255 bytes (RFC 1035 §3.3).
fn txt_strings(value: &str) -> String {
    value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How mail leaves for the receivers' servers.
pub(crate) enum Path {
    /// A provider whose servers SPF names with an include.
    Provider {
        name: &'static str,
        include: &'static str,
    },
    /// One's own MTA at these addresses (`what` says where they came from).
    Addresses { ips: Vec<IpAddr>, what: String },
    /// Not known from here; the reason says why.
    Unknown(String),
}

/// SMTP hosts of providers and the SPF include each asks its senders to publish.
const PROVIDERS: [(&str, &str, &str); 9] = [
    ("smtp.postmarkapp.com", "Postmark", "spf.mtasv.net"),
    (".amazonaws.com", "Amazon SES", "amazonses.com"),
    ("mailgun.org", "Mailgun", "mailgun.org"),
    ("smtp.sendgrid.net", "SendGrid", "sendgrid.net"),
    ("smtp.gmail.com", "Google Workspace", "_spf.google.com"),
    (
        "smtp-relay.gmail.com",
        "Google Workspace",
        "_spf.google.com",
    ),
    (
        "smtp.office365.com",
        "Microsoft 365",
        "spf.protection.outlook.com",
    ),
    ("smtp.sparkpostmail.com", "SparkPost", "sparkpostmail.com"),
    ("smtp.mandrillapp.com", "Mandrill", "spf.mandrillapp.com"),
];

/// The provider whose SMTP host `host` is, if any.
pub(crate) fn provider(host: &str) -> Option<(&'static str, &'static str)> {
    let host = host.to_ascii_lowercase();
    PROVIDERS.iter().find_map(|(suffix, name, include)| {
        let hit = if suffix.starts_with('.') {
            host.ends_with(suffix)
        } else {
            host == *suffix || host.ends_with(&format!(".{suffix}"))
        };
        hit.then_some((*name, *include))
    })
}

/// What the checks need to know about the project.
pub(crate) struct Setup<'a> {
    pub from_domain: String,
    /// The return path's domain: `[bounces] address`, else From's.
    pub envelope_domain: String,
    /// `[bounces] address` is set: mail must be able to come back to it.
    pub bounces: bool,
    /// The domain of `[unsubscribe] mailto`, which must receive mail.
    pub mailto_domain: Option<String>,
    /// Where DMARC reports should go, in a suggested record.
    pub report_address: String,
    pub dkim: &'a Signatures,
    pub path: Path,
}

/// Every finding, in the order an operator fixes them.
pub(crate) fn run(dns: &Dns, setup: &Setup) -> Vec<Finding> {
    let mut findings = spf_findings(dns, setup);
    findings.extend(dkim_findings(dns, setup.dkim));
    findings.extend(dmarc_findings(dns, setup));
    findings.extend(mx_findings(dns, setup));
    if let Path::Addresses { ips, .. } = &setup.path {
        findings.extend(
            ips.iter()
                .map(|ip| ptr_finding(dns, *ip, &setup.from_domain)),
        );
    }
    findings
}

fn spf_findings(dns: &Dns, setup: &Setup) -> Vec<Finding> {
    let domain = setup.envelope_domain.as_str();
    let record = match spf::record(dns, domain) {
        Ok(r) => r,
        Err(Outcome::PermError(why)) => return vec![Finding::new(Level::Fail, "SPF", why)],
        Err(Outcome::TempError(why)) => {
            return vec![Finding::new(
                Level::Unknown,
                "SPF",
                format!("cannot read the SPF record of {domain}: {why}"),
            )];
        }
        Err(other) => {
            return vec![Finding::new(
                Level::Unknown,
                "SPF",
                format!("cannot read the SPF record of {domain}: {other:?}"),
            )];
        }
    };
    match &setup.path {
        Path::Unknown(why) => vec![Finding::new(
            Level::Unknown,
            "SPF",
            format!(
                "cannot verify that {domain}'s SPF authorises the sending path: {why}{}",
                record.as_deref().map(|r| format!(" (the record: \"{r}\")")).unwrap_or_default()
            ),
        )],
        Path::Provider { name, include } => {
            if spf::includes(dns, domain, include) {
                vec![Finding::new(
                    Level::Ok,
                    "SPF",
                    format!("{domain} includes {include} ({name})"),
                )]
            } else {
                let mechanism = format!("include:{include}");
                vec![
                    Finding::new(
                        Level::Fail,
                        "SPF",
                        match &record {
                            Some(r) => format!("{domain}'s SPF record \"{r}\" does not include {include}, which {name} sends from"),
                            None => format!("{domain} has no SPF record; {name} sends from {include}"),
                        },
                    )
                    .publish(domain, "TXT", &spf::with_mechanism(record.as_deref(), &mechanism)),
                ]
            }
        }
        Path::Addresses { ips, what } => ips
            .iter()
            .map(|ip| {
                let outcome = spf::check(dns, *ip, domain);
                let mechanism = match ip {
                    IpAddr::V4(_) => format!("ip4:{ip}"),
                    IpAddr::V6(_) => format!("ip6:{ip}"),
                };
                let fix = spf::with_mechanism(record.as_deref(), &mechanism);
                match outcome {
                    Outcome::Pass => Finding::new(
                        Level::Ok,
                        "SPF",
                        format!("{domain} authorises {ip} ({what})"),
                    ),
                    Outcome::None => Finding::new(
                        Level::Fail,
                        "SPF",
                        format!("{domain} has no SPF record: nothing authorises {ip} ({what})"),
                    )
                    .publish(domain, "TXT", &fix),
                    Outcome::Fail | Outcome::SoftFail | Outcome::Neutral => Finding::new(
                        Level::Fail,
                        "SPF",
                        format!(
                            "{domain}'s SPF record \"{}\" does not authorise {ip} ({what}): the result is {}",
                            record.as_deref().unwrap_or(""),
                            match outcome {
                                Outcome::Fail => "fail",
                                Outcome::SoftFail => "softfail",
                                _ => "neutral",
                            }
                        ),
                    )
                    .publish(domain, "TXT", &fix),
                    Outcome::PermError(why) => Finding::new(Level::Fail, "SPF", format!("{domain}: {why}")),
                    Outcome::TempError(why) | Outcome::Unverifiable(why) => Finding::new(
                        Level::Unknown,
                        "SPF",
                        format!("cannot verify {ip} against {domain}'s SPF: {why}"),
                    ),
                }
            })
            .collect(),
    }
}

fn dkim_findings(dns: &Dns, dkim: &Signatures) -> Vec<Finding> {
    if dkim.is_empty() {
        return vec![Finding::new(
            Level::Warn,
            "DKIM",
            "no [dkim] key is configured: unless the relay signs with your domain, DMARC rests on SPF alone, and Gmail and Yahoo require DKIM of bulk senders",
        )];
    }
    dkim.keys()
        .iter()
        .map(|key| dkim_finding(dns, key))
        .collect()
}

fn dkim_finding(dns: &Dns, key: &DkimKey) -> Finding {
    let name = key.record_name();
    let (ours, record) = (key.public_key(), key.record());
    let published = match dns.txt(&name) {
        Ok(found) => found,
        Err(e) => return Finding::new(Level::Unknown, "DKIM", format!("{e:#}")),
    };
    let Some(text) = published.iter().find(|t| t.contains("p=")) else {
        return Finding::new(
            Level::Fail,
            "DKIM",
            format!(
                "no key is published at {name}: receivers cannot verify the {} signature",
                key.kind()
            ),
        )
        .publish(&name, "TXT", &record);
    };
    let tags = tags(text);
    let p: String = tags
        .iter()
        .find(|(k, _)| k == "p")
        .map(|(_, v)| v.chars().filter(|c| !c.is_whitespace()).collect())
        .unwrap_or_default();
    let k = tags
        .iter()
        .find(|(k, _)| k == "k")
        .map_or("rsa", |(_, v)| v.as_str());
    if p.is_empty() {
        return Finding::new(
            Level::Fail,
            "DKIM",
            format!("the key at {name} is revoked (empty p=)"),
        )
        .publish(&name, "TXT", &record);
    }
    let theirs = STANDARD.decode(p.as_bytes()).unwrap_or_default();
    // An RSA key may be published as the SubjectPublicKeyInfo or as the bare RSAPublicKey
    // that ends it; both verify.
    let same = k.eq_ignore_ascii_case(key.kind())
        && !theirs.is_empty()
        && (theirs == ours || (key.kind() == "rsa" && ours.ends_with(&theirs)));
    if same {
        Finding::new(
            Level::Ok,
            "DKIM",
            format!("{name} publishes the configured {} key", key.kind()),
        )
    } else {
        Finding::new(
            Level::Fail,
            "DKIM",
            format!("the key published at {name} is not the configured {} key: every signature will fail", key.kind()),
        )
        .publish(&name, "TXT", &record)
    }
}

/// The `tag=value` pairs of a DKIM or DMARC record, tags lowercased.
fn tags(text: &str) -> Vec<(String, String)> {
    text.split(';')
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

/// The organizational domain (DMARC's "relaxed" unit): the registrable part, read without
/// the public-suffix list as the last two labels, or three under a two-letter country code
/// whose second level is short (`co.uk`, `com.au`).
pub(crate) fn organizational(domain: &str) -> String {
    let labels: Vec<&str> = domain.trim_end_matches('.').split('.').collect();
    let n = labels.len();
    let keep = if n >= 3 && labels[n - 1].len() == 2 && labels[n - 2].len() <= 3 {
        3
    } else {
        2
    };
    labels[n.saturating_sub(keep)..]
        .join(".")
        .to_ascii_lowercase()
}

fn aligned(a: &str, b: &str, strict: bool) -> bool {
    if strict {
        a.eq_ignore_ascii_case(b)
    } else {
        organizational(a) == organizational(b)
    }
}

fn dmarc_findings(dns: &Dns, setup: &Setup) -> Vec<Finding> {
    let from = setup.from_domain.as_str();
    let org = organizational(from);
    let suggested = format!("v=DMARC1; p=none; rua=mailto:{}", setup.report_address);
    let mut at = format!("_dmarc.{from}");
    let mut record = match dmarc_record(dns, &at) {
        Ok(r) => r,
        Err(f) => return vec![f],
    };
    if record.is_none() && org != from {
        at = format!("_dmarc.{org}");
        record = match dmarc_record(dns, &at) {
            Ok(r) => r,
            Err(f) => return vec![f],
        };
    }
    let Some(record) = record else {
        return vec![
            Finding::new(
                Level::Fail,
                "DMARC",
                format!("no DMARC record for {from}: Gmail, Yahoo and Outlook.com reject bulk mail without one"),
            )
            .publish(&format!("_dmarc.{from}"), "TXT", &suggested),
        ];
    };
    let tags = tags(&record);
    let get = |name: &str| {
        tags.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    let mut findings = Vec::new();
    let policy = get("p").unwrap_or_default();
    if !["none", "quarantine", "reject"].contains(&policy.as_str()) {
        findings.push(
            Finding::new(
                Level::Fail,
                "DMARC",
                format!("{at} has no valid policy (p=): \"{record}\""),
            )
            .publish(&at, "TXT", &suggested),
        );
        return findings;
    }
    let strict_dkim = get("adkim").as_deref() == Some("s");
    let strict_spf = get("aspf").as_deref() == Some("s");
    let dkim_aligned: Vec<&str> = setup
        .dkim
        .keys()
        .iter()
        .map(|k| k.domain.as_str())
        .filter(|d| aligned(d, from, strict_dkim))
        .collect();
    let spf_aligned = aligned(&setup.envelope_domain, from, strict_spf);
    let mode = |strict: bool| if strict { "strict" } else { "relaxed" };
    if dkim_aligned.is_empty() && !spf_aligned {
        let signers: Vec<&str> = setup
            .dkim
            .keys()
            .iter()
            .map(|k| k.domain.as_str())
            .collect();
        findings.push(Finding::new(
            Level::Fail,
            "DMARC",
            format!(
                "nothing aligns with From {from} ({at}: \"{record}\"): DKIM signs as {} ({} alignment), the return path is @{} ({} alignment); sign with d={from} or send with a return path at {from}",
                if signers.is_empty() { "no one".to_string() } else { signers.join(", ") },
                mode(strict_dkim),
                setup.envelope_domain,
                mode(strict_spf),
            ),
        ));
    } else {
        let mut how = Vec::new();
        if !dkim_aligned.is_empty() {
            how.push(format!("DKIM d={}", dkim_aligned[0]));
        }
        if spf_aligned {
            how.push(format!("SPF @{}", setup.envelope_domain));
        }
        findings.push(Finding::new(
            Level::Ok,
            "DMARC",
            format!(
                "{at} has p={policy}; aligned with From {from} through {}",
                how.join(" and ")
            ),
        ));
        if policy == "none" {
            findings.push(Finding::new(
                Level::Warn,
                "DMARC",
                "p=none only monitors: once the reports show every source aligned, move to p=quarantine",
            ));
        }
    }
    findings
}

/// The one DMARC record at `name`, `None` without one, or the finding that stops the check.
fn dmarc_record(dns: &Dns, name: &str) -> Result<Option<String>, Finding> {
    let records: Vec<String> = dns
        .txt(name)
        .map_err(|e| Finding::new(Level::Unknown, "DMARC", format!("{e:#}")))?
        .into_iter()
        .filter(|t| t.trim_start().to_ascii_lowercase().starts_with("v=dmarc1"))
        .collect();
    match records.len() {
        0 => Ok(None),
        1 => Ok(records.into_iter().next()),
        n => Err(Finding::new(
            Level::Fail,
            "DMARC",
            format!(
                "{name} has {n} DMARC records; receivers ignore them all (RFC 7489 §6.6.3): keep one"
            ),
        )),
    }
}

fn mx_findings(dns: &Dns, setup: &Setup) -> Vec<Finding> {
    let mut wanted: Vec<(&str, &str, Level)> = Vec::new();
    if setup.bounces {
        wanted.push((
            &setup.envelope_domain,
            "bounces and complaints come back to",
            Level::Fail,
        ));
    }
    if let Some(d) = &setup.mailto_domain {
        wanted.push((d, "mailto unsubscribes go to", Level::Fail));
    }
    wanted.push((&setup.from_domain, "replies go to", Level::Warn));
    let mut seen = Vec::new();
    let mut findings = Vec::new();
    for (domain, why, level) in wanted {
        if seen.contains(&domain) {
            continue;
        }
        seen.push(domain);
        findings.push(match dns.mx(domain) {
            Ok(hosts) if !hosts.is_empty() => {
                Finding::new(Level::Ok, "MX", format!("{domain} receives mail at {}", hosts.join(", ")))
            }
            Ok(_) => match dns.ips(domain) {
                Ok(ips) if !ips.is_empty() => Finding::new(
                    Level::Warn,
                    "MX",
                    format!("{domain} has no MX; mail goes to its address record {} instead (RFC 5321 §5.1)", ips[0]),
                ),
                _ => Finding::new(
                    level,
                    "MX",
                    format!("{domain} has no MX record, and {why} it"),
                )
                .publish(domain, "MX", &format!("10 mx.{domain}.")),
            },
            Err(e) => Finding::new(Level::Unknown, "MX", format!("{e:#}")),
        });
    }
    findings
}

/// Gmail and Yahoo ask of every sending address a PTR whose name leads back to it.
fn ptr_finding(dns: &Dns, ip: IpAddr, domain: &str) -> Finding {
    let reverse = super::reverse_name(ip);
    let names = match dns.ptr(ip) {
        Ok(n) => n,
        Err(e) => return Finding::new(Level::Unknown, "PTR", format!("{e:#}")),
    };
    let Some(name) = names.first() else {
        return Finding::new(
            Level::Fail,
            "PTR",
            format!("{ip} has no reverse name: Gmail and Yahoo refuse mail from addresses without one; ask whoever runs the address (the hosting provider) for"),
        )
        .publish(&reverse, "PTR", &format!("mail.{domain}."));
    };
    match dns.ips(name) {
        Ok(back) if back.contains(&ip) => {
            Finding::new(Level::Ok, "PTR", format!("{ip} is {name}, which resolves back to it"))
        }
        Ok(_) => Finding::new(
            Level::Fail,
            "PTR",
            format!("{ip} is {name}, but {name} does not resolve to {ip}: receivers want the two to agree"),
        )
        .publish(name, if ip.is_ipv4() { "A" } else { "AAAA" }, &ip.to_string()),
        Err(e) => Finding::new(Level::Unknown, "PTR", format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organizational_domains_and_providers() {
        assert_eq!(organizational("news.harbour.example"), "harbour.example");
        assert_eq!(organizational("mail.harbour.co.uk"), "harbour.co.uk");
        assert_eq!(
            provider("smtp.postmarkapp.com"),
            Some(("Postmark", "spf.mtasv.net"))
        );
        assert_eq!(
            provider("email-smtp.eu-west-1.amazonaws.com").map(|p| p.1),
            Some("amazonses.com")
        );
        assert_eq!(provider("mail.harbour.example"), None);
        assert_eq!(txt_strings(&"a".repeat(300)).matches('"').count(), 4);
    }
}
