//! `newsletter init DIR`: a project that `preview` and `send` (into an outbox) work on at
//! once. Every file is checked first; if any exists, nothing is written.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cli::InitArgs;
use crate::exit::Exit;
use crate::problems::{Problem, Problems};

const CONFIG: &str = r#"# newsletter project: `newsletter preview` writes one message into preview/;
# `newsletter send` writes every message into outbox/ until you set up [smtp] below.

[newsletter]
name = "My Weekly"
from = "My Weekly <weekly@example.org>"          # change to your own address
contact = "desk@example.org"                     # shown in the footer
list_id = "weekly.example.org"                   # a stable name for this list
# website = "https://example.org"
# reply_to = "desk@example.org"

[unsubscribe]
url = "https://example.org/unsubscribe/{token}"  # where `newsletter serve` answers
# The key that signs unsubscribe links: keep newsletter.key private (or use secret_env).
secret_file = "newsletter.key"

[paths]
articles = "articles"
subscribers = "subscribers.toml"
state = "newsletter.db"

[transport]
kind = "outbox"
outbox = "outbox"

# To send for real, set kind = "smtp" above and describe the relay:
# [smtp]
# host = "smtp.example.org"
# security = "starttls"
# username = "weekly"
# password_env = "NEWSLETTER_SMTP_PASSWORD"

# Feeds to take articles from, besides the Markdown files in articles/:
# [[sources]]
# name = "site"                                  # part of each article id
# url = "https://example.org/feed.xml"           # RSS, Atom or JSON Feed; or path = "feed.xml"
# tags = ["news"]

# Which articles make an edition (all optional):
# [selection]
# first_days = 7                                 # the first edition takes feed items of the last 7 days
# include_tags = []
# exclude_tags = []
# max_articles = 10
# pinned = []                                    # article ids or links always included
# audience = []                                  # subscriber tags; empty: everyone

# Mail that comes back (read by `newsletter bounces`; all optional):
# [bounces]
# address = "bounces@example.org"                # return path bounces+TOKEN@example.org names each message
# maildir = "bounces"                            # the Maildir `newsletter bounces` reads
# soft_limit = 3                                 # soft bounces in 3 editions in a row suppress an address
"#;

const SUBSCRIBERS: &str = r#"# Who receives the newsletter. Each [[subscriber]] needs an email and a status:
#   status = "subscribed"     receives every edition
#   status = "unsubscribed"   receives nothing (kept so that an old import cannot re-add them)
# Optional: name (used in the greeting), since (the date the status began), tags.

[[subscriber]]
email = "reader@example.org"
name = "First Reader"
status = "subscribed"
# since = 2026-01-01
# tags = ["news"]
"#;

const GITIGNORE: &str = "newsletter.key\nnewsletter.db*\noutbox/\npreview/\n";

pub(crate) fn run(args: &InitArgs) -> Result<Exit> {
    let dir = &args.dir;
    let today = crate::clock::Clock::from_env()?.today();
    let article = format!(
        "+++\ntitle = \"Welcome to the first edition\"\ndate = {today}\nlink = \"https://example.org/welcome\"\nsummary = \"What this newsletter is about, and how often it comes.\"\nselected = true\n+++\nEach article is a Markdown file like this one. Set `selected = true` when it is ready\nfor the next edition.\n"
    );
    // In an existing project, `--templates` adds the templates alone.
    let adding_templates = args.templates && dir.join("newsletter.toml").exists();
    let mut files: Vec<(PathBuf, String)> = if adding_templates {
        Vec::new()
    } else {
        vec![
            (dir.join("newsletter.toml"), CONFIG.to_string()),
            (dir.join("subscribers.toml"), SUBSCRIBERS.to_string()),
            (dir.join("articles/welcome.md"), article),
            (dir.join("newsletter.key"), random_key()?),
            (dir.join(".gitignore"), GITIGNORE.to_string()),
        ]
    };
    if args.templates {
        for (name, source) in crate::render::templates::EMBEDDED {
            files.push((dir.join("templates").join(name), source.to_string()));
        }
    }
    let existing: Vec<Problem> = files
        .iter()
        .filter(|(p, _)| p.exists())
        .map(|(p, _)| {
            Problem::new(
                p,
                "already exists; init never overwrites a file (nothing was written)",
            )
        })
        .collect();
    if !existing.is_empty() {
        return Err(Problems(existing).into());
    }
    for (path, text) in &files {
        write_new(path, text)?;
    }
    if adding_templates {
        crate::say!(
            "copied the built-in templates into {}: edit them there (the project's other files are untouched)",
            dir.join("templates").display()
        );
        return Ok(Exit::Done);
    }
    crate::say!(
        "created a project in {}: try `newsletter --config {} preview`",
        dir.display(),
        dir.join("newsletter.toml").display()
    );
    Ok(Exit::Done)
}

/// 32 random bytes from the kernel, hex-encoded.
fn random_key() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for a new key")?;
    Ok(crate::token::hex(&bytes) + "\n")
}

/// Creates the file, failing if it appeared meanwhile; the key is readable by its owner only.
fn write_new(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mode = if path.ends_with("newsletter.key") {
        0o600
    } else {
        0o644
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
