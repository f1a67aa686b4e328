//! `newsletter check`: everything `send` would do before the first byte goes out.

use anyhow::Result;

use super::Log;
use crate::cli::{CheckArgs, Cli};
use crate::clock::Clock;
use crate::exit::Exit;
use crate::project::{Project, render_all};
use crate::state::Journal;

pub(crate) fn run(cli: &Cli, args: &CheckArgs, log: &Log) -> Result<Exit> {
    if args.relay {
        return relay(cli);
    }
    if args.dns {
        return dns(cli, args);
    }
    let config = crate::config::Config::load(&cli.config)?;
    let journal = Journal::open_read_only(&config.paths.state)?;
    let project = Project::load(
        config,
        &args.edition.request(),
        Clock::from_env()?,
        journal.as_ref(),
    )?;
    for note in project.notes() {
        log.warn(note);
    }
    let total = project.subscribers.entries.len();
    super::print_selection(&project);
    let Some(edition) = &project.edition else {
        return super::nothing_new(journal.as_ref(), &project, false);
    };
    let composer = project.composer(edition);
    let rendered = render_all(&composer, project.subscribers.active())?;
    crate::say!(
        "ok: {} renders for all {rendered} subscribed recipient{}; {} unsubscribed skipped",
        edition_named(edition),
        plural(rendered),
        total - rendered,
    );
    Ok(Exit::Done)
}

/// `check --relay`: one session with the relay, as a send would open it, and nothing sent.
fn relay(cli: &Cli) -> Result<Exit> {
    let config = crate::config::Config::load(&cli.config)?;
    let crate::config::Transport::Smtp(smtp) = &config.transport else {
        crate::say!("the transport is the outbox: there is no relay to check");
        return Ok(Exit::Done);
    };
    let connector =
        crate::deliver::smtp::Connector::new(smtp, config.newsletter.from.address.domain())?;
    if let Some(w) = connector.warning() {
        eprintln!("warning: {w}");
    }
    let offers = connector
        .probe(false)
        .map_err(|e| e.context(format!("cannot open a session with {}", connector.server())))?;
    let security = match smtp.security {
        crate::config::Security::Tls => "implicit TLS, certificate verified",
        crate::config::Security::Starttls => "STARTTLS, certificate verified",
        crate::config::Security::None => "no TLS",
    };
    let auth = smtp.username.as_deref().map_or_else(
        || "no AUTH".to_string(),
        |u| {
            let how = if smtp.oauth_token.is_some() {
                " (XOAUTH2)"
            } else {
                ""
            };
            format!("authenticated as {u}{how}")
        },
    );
    crate::say!(
        "relay {}: connected, {security}, {auth}",
        connector.server()
    );
    crate::say!("offers: {offers}");
    let p = &smtp.pacing;
    crate::say!(
        "a send would use {} connection{}, at most {} messages each, {}, {}; nothing was sent",
        smtp.connections,
        plural(smtp.connections),
        p.max_per_connection,
        p.rate_per_second.map_or_else(
            || "no rate limit".to_string(),
            |r| format!("{r} messages a second")
        ),
        p.daily_quota.map_or_else(
            || "no daily quota".to_string(),
            |q| format!("{q} messages a day")
        ),
    );
    Ok(Exit::Done)
}

/// `check --dns`: the findings on stdout, one a line, each failure with its record.
fn dns(cli: &Cli, args: &CheckArgs) -> Result<Exit> {
    use crate::dns::checks::{self, Level, Path, Setup};
    let config = crate::config::Config::load(&cli.config)?;
    let from_domain = config.newsletter.from.address.domain().to_ascii_lowercase();
    let (dkim, _) = crate::mail::dkim::load(&config.dkim, &from_domain)?;
    let dns = crate::dns::Dns::new(args.resolver.as_deref())?;
    let path = if args.sending_ips.is_empty() {
        match &config.transport {
            crate::config::Transport::Outbox(_) => Path::Unknown(
                "the transport is the outbox; name the address mail will leave from with --sending-ip".into(),
            ),
            crate::config::Transport::Smtp(smtp) => match checks::provider(&smtp.host) {
                Some((name, include)) => Path::Provider { name, include },
                None if crate::config::is_loopback(&smtp.host) => Path::Unknown(format!(
                    "the relay is this machine ({}), so the public address mail leaves from is not known here; give it with --sending-ip",
                    smtp.host
                )),
                None => match dns.ips(&smtp.host) {
                    Ok(ips) if !ips.is_empty() => Path::Addresses {
                        ips,
                        what: format!("the relay {}", smtp.host),
                    },
                    Ok(_) => Path::Unknown(format!("the relay {} has no address in the DNS", smtp.host)),
                    Err(e) => Path::Unknown(format!("{e:#}")),
                },
            },
        }
    } else {
        Path::Addresses {
            ips: args.sending_ips.clone(),
            what: "given with --sending-ip".into(),
        }
    };
    let envelope_domain = config
        .bounces
        .address
        .as_ref()
        .map_or_else(|| from_domain.clone(), |a| a.domain().to_ascii_lowercase());
    let setup = Setup {
        envelope_domain,
        bounces: config.bounces.address.is_some(),
        mailto_domain: config
            .unsubscribe
            .mailto
            .as_ref()
            .map(|m| m.domain().to_ascii_lowercase()),
        report_address: config.newsletter.contact.to_string(),
        dkim: &dkim,
        path,
        from_domain,
    };
    crate::say!("DNS of {} (asking {})", setup.from_domain, dns.server);
    let findings = checks::run(&dns, &setup);
    for f in &findings {
        crate::say!("{:<5} {:<6} {}", f.level.label(), f.topic, f.text);
        if let Some(record) = &f.publish {
            crate::say!("{:<12} publish: {record}", "");
        }
    }
    let failed = findings.iter().filter(|f| f.level == Level::Fail).count();
    let unknown = findings
        .iter()
        .filter(|f| f.level == Level::Unknown)
        .count();
    if failed > 0 {
        crate::say!(
            "{failed} problem{} in the DNS: receivers will reject or junk this mail until the records above are published",
            plural(failed)
        );
        return Ok(Exit::Failed);
    }
    crate::say!(
        "the DNS is ready{}",
        if unknown > 0 {
            format!(
                " as far as it could be checked ({unknown} check{} could not conclude)",
                plural(unknown)
            )
        } else {
            String::new()
        }
    );
    Ok(Exit::Done)
}

pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `edition 2026-11-27-c4ff42 (8 articles)`, as the commands' reports name an edition.
pub(crate) fn edition_named(edition: &crate::edition::Edition) -> String {
    let n = edition.articles.len();
    format!("edition {} ({n} article{})", edition.id, plural(n))
}
