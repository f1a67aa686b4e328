//! One link checked as a browser would reach it: HEAD, then GET where the server will not
//! answer HEAD properly, redirects followed one by one so each hop is reported.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// At most this many hops; a longer chain is reported as a loop.
const MAX_REDIRECTS: usize = 10;

/// What fetching one URL came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Outcome {
    /// Each hop: the status and the URL it answered for.
    pub hops: Vec<(u16, String)>,
    /// No HTTP answer (a timeout, a refused connection, a TLS failure), if so.
    pub error: Option<String>,
}

impl Outcome {
    /// The last status, if any answer came.
    pub(crate) fn status(&self) -> Option<u16> {
        self.hops.last().map(|h| h.0)
    }

    /// Reachable: the last answer is a success.
    pub(crate) fn ok(&self) -> bool {
        self.error.is_none() && self.status().is_some_and(|s| (200..300).contains(&s))
    }

    pub(crate) fn redirected(&self) -> bool {
        self.hops.len() > 1
    }
}

/// An HTTP client that follows nothing by itself.
pub(crate) fn agent(timeout: Duration) -> ureq::Agent {
    let tls = crate::deliver::tls::http_tls(None);
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!(
            "newsletter/",
            env!("CARGO_PKG_VERSION"),
            " (link check)"
        ))
        .tls_config(tls)
        .build()
        .new_agent()
}

/// Follows `url` to its end.
pub(crate) fn check(agent: &ureq::Agent, url: &str) -> Outcome {
    let mut hops = Vec::new();
    let mut current = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let (status, location) = match ask(agent, &current) {
            Ok(answer) => answer,
            Err(error) => {
                return Outcome {
                    hops,
                    error: Some(error),
                };
            }
        };
        hops.push((status, current.clone()));
        let next = location
            .filter(|_| (300..400).contains(&status))
            .and_then(|l| {
                url::Url::parse(&current)
                    .and_then(|base| base.join(&l))
                    .ok()
            });
        match next {
            Some(next) => current = next.to_string(),
            None => return Outcome { hops, error: None },
        }
    }
    Outcome {
        hops,
        error: Some(format!("more than {MAX_REDIRECTS} redirects")),
    }
}

/// One hop: HEAD, and GET when HEAD is refused or fails (many servers answer HEAD with
/// 403, 404 or 405 where GET works). The status and the Location, if any.
fn ask(agent: &ureq::Agent, url: &str) -> Result<(u16, Option<String>), String> {
    let answer = match agent.head(url).call() {
        Ok(r) if r.status().as_u16() < 400 => r,
        // A host that does not answer at all will not answer GET either.
        Err(e @ (ureq::Error::Timeout(_) | ureq::Error::Io(_) | ureq::Error::HostNotFound)) => {
            return Err(describe(&e));
        }
        _ => agent.get(url).call().map_err(|e| describe(&e))?,
    };
    let location = answer
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // The body is not read: the status is what counts, and the connection is dropped.
    Ok((answer.status().as_u16(), location))
}

fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "no answer in time".to_string(),
        ureq::Error::Io(io) => format!("cannot connect: {io}"),
        ureq::Error::HostNotFound => "the host name does not resolve".to_string(),
        e => e.to_string(),
    }
}
