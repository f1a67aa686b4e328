//! `newsletter check --links`: the edition's links fetched before it is sent.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};

use super::check::plural;
use crate::cli::{CheckArgs, Cli};
use crate::clock::Clock;
use crate::exit::Exit;
use crate::links::cache::{self, Cache};
use crate::links::fetch::{self, Outcome};
use crate::links::{Link, collect};
use crate::project::Project;
use crate::state::Journal;

/// Requests in flight at once.
const CONCURRENCY: usize = 8;

pub(crate) fn run(cli: &Cli, args: &CheckArgs) -> Result<Exit> {
    if !(args.link_timeout.is_finite() && (0.1..=300.0).contains(&args.link_timeout)) {
        bail!("--link-timeout must be between 0.1 and 300 seconds");
    }
    let timeout = Duration::from_secs_f64(args.link_timeout);
    let config = crate::config::Config::load(&cli.config)?;
    let journal = Journal::open_read_only(&config.paths.state)?;
    let clock = Clock::from_env()?;
    let project = Project::load(config, &args.edition.request(), clock, journal.as_ref())?;
    let Some(edition) = &project.edition else {
        return super::nothing_new(journal.as_ref(), &project, false);
    };
    let composer = project.composer(edition);
    let (_, page) = composer
        .web_page()
        .map_err(|p| anyhow::anyhow!("cannot render the edition's web page: {p}"))?;
    // The edition's own archive page appears only once it is sent.
    let skip: Vec<String> = project
        .config
        .archive
        .as_ref()
        .and_then(|a| a.page_url(&edition.id))
        .into_iter()
        .collect();
    let links = collect(&page, edition, &skip);

    let file = cache::path(&project.config.paths.state);
    let mut cache = Cache::load(&file, &edition.id);
    let now = clock.epoch_seconds();
    let todo: Vec<&Link> = links
        .iter()
        .filter(|l| cache.fresh(&l.url, now).is_none())
        .collect();
    crate::say!(
        "links of edition {}: {} to check, {} known to work from an earlier check",
        edition.id,
        todo.len(),
        links.len() - todo.len()
    );
    let fetched = fetch_all(&todo, timeout);
    for (link, outcome) in todo.iter().zip(&fetched) {
        cache.links.insert(link.url.clone(), (now, outcome.clone()));
    }
    cache
        .links
        .retain(|url, _| links.iter().any(|l| &l.url == url));
    if let Err(e) = cache.save(&file) {
        eprintln!(
            "warning: cannot keep the results in {}: {e:#}",
            file.display()
        );
    }

    let mut broken = 0;
    let mut redirected = 0;
    for link in &links {
        let Some((_, outcome)) = cache.links.get(&link.url) else {
            continue;
        };
        if !outcome.ok() {
            broken += 1;
            crate::say!(
                "FAIL  {}  {}  {}",
                describe(outcome),
                link.url,
                link.place()
            );
        } else if outcome.redirected() {
            redirected += 1;
            crate::say!("moved {}  {}", chain(outcome), link.place());
        }
    }
    crate::say!(
        "{} link{} checked: {broken} broken, {redirected} redirected",
        links.len(),
        plural(links.len()),
    );
    Ok(if broken > 0 { Exit::Failed } else { Exit::Done })
}

/// Fetches `links`, `CONCURRENCY` at a time; results in the same order.
fn fetch_all(links: &[&Link], timeout: Duration) -> Vec<Outcome> {
    let agent = fetch::agent(timeout);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; links.len()]);
    std::thread::scope(|s| {
        for _ in 0..CONCURRENCY.min(links.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(link) = links.get(i) else { break };
                    let outcome = fetch::check(&agent, &link.url);
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(outcome);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(|o| {
            o.unwrap_or(Outcome {
                hops: Vec::new(),
                error: Some("not checked".into()),
            })
        })
        .collect()
}

/// `404` or `no answer in time`, and where a redirect led first.
fn describe(outcome: &Outcome) -> String {
    let what = match (&outcome.error, outcome.status()) {
        (Some(e), _) => e.clone(),
        (None, Some(s)) => s.to_string(),
        (None, None) => "no answer".into(),
    };
    if outcome.redirected() {
        format!("{what} (after {})", chain(outcome))
    } else {
        what
    }
}

/// `URL -301-> URL -302-> URL (200)`.
fn chain(outcome: &Outcome) -> String {
    let last = outcome.hops.len().saturating_sub(1);
    outcome
        .hops
        .iter()
        .enumerate()
        .map(|(i, (status, url))| {
            if i < last {
                format!("{url} -{status}->")
            } else {
                format!("{url} ({status})")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
