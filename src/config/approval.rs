//! `[approval]`: editions wait, frozen as drafts, until an editor approves them.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::input::address::EmailAddress;
use crate::problems::{Problem, Problems};

use super::checks::Numbers;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApproval {
    editors: Vec<Spanned<String>>,
    deadline_hours: Option<Spanned<f64>>,
}

/// Who approves, and whether an edition goes out without them after a while.
#[derive(Debug, Clone)]
pub struct Approval {
    /// Each gets the draft as a reader would, when it is frozen and each time it changes.
    pub editors: Vec<EmailAddress>,
    /// Without an approval, the draft goes out this long after it was frozen; `None`: never.
    pub deadline: Option<Duration>,
}

pub(super) fn resolve_approval(
    raw: Option<RawApproval>,
    path: &Path,
    source: &str,
    problems: &mut Problems,
) -> Option<Approval> {
    let raw = raw?;
    let mut editors = Vec::new();
    for e in &raw.editors {
        match EmailAddress::parse(e.get_ref()) {
            Ok(a) => editors.push(a),
            Err(why) => problems.push(
                Problem::new(path, format!("the address {why}"))
                    .at_offset(source, e.span().start)
                    .field("approval.editors"),
            ),
        }
    }
    if raw.editors.is_empty() {
        problems.push(
            Problem::new(path, "name at least one editor to send the draft to")
                .field("approval.editors"),
        );
    }
    let mut n = Numbers::new(path, source, "approval");
    let deadline = raw.deadline_hours.as_ref().map(|h| {
        Duration::from_secs_f64(3600.0 * n.get("deadline_hours", Some(h), 24.0, 0.0..=720.0))
    });
    n.finish(problems);
    Some(Approval { editors, deadline })
}
