//! The command line: clap derive structs whose doc comments are the `--help` text.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0  done: every recipient was sent to (or failed permanently, see `status`); also when
     the edition was already sent, or no one is subscribed
  1  failed: an error stopped the run (server unreachable, credentials refused, I/O; or
     nothing new while a feed source could not be read); `check --dns` found a record
     to publish, `check --links` a broken link
  2  usage: the command line is wrong
  3  bad input: a file has problems, all of them are listed, nothing was sent
  4  partial: recipients remain deferred or in doubt, or the run was stopped (signal,
     daily quota, too many failures in a row); run again later to finish
  5  locked: another run holds the lock; nothing was done
  6  nothing to do: no new article (see `preview --explain`)
  7  sender refused: the relay refused the sender, not the recipients (authentication,
     SPF/DKIM/DMARC, policy, content or size); no recipient was failed or suppressed,
     all stay pending; fix the setup and run again
  8  held: the last edition passed a stop threshold of bounces or complaints (see
     `status`); no new edition is started until the list is cleaned, or `send
     --despite-rates`
  75 temporary failure (`bounces --stdin`): the message could not be recorded (state
     locked, disk full); the MTA keeps it and delivers it again

Time: SOURCE_DATE_EPOCH (seconds since 1970), when set, replaces the clock, so an edition's
date and every message's Date header are reproducible.";

/// Compose a newsletter edition from Markdown articles and feeds, and send it to your
/// subscribers.
///
/// An edition is built from the Markdown articles marked `selected = true` and the feed
/// items ([[sources]]: RSS, Atom, JSON Feed) published since the last edition, minus what an
/// earlier edition carried; `preview --explain` and `check` say why each one is in or out.
/// Every subscribed address receives one personalized message (HTML and text) through an
/// SMTP relay or into an outbox folder. Start with `newsletter init DIR`.
#[derive(Debug, Parser)]
#[command(name = "newsletter", version, after_long_help = EXIT_CODES, after_help = "Exit codes and more: --help")]
pub struct Cli {
    /// The project's config file; paths inside it are relative to its folder.
    #[arg(
        long,
        short,
        global = true,
        default_value = "newsletter.toml",
        value_name = "PATH"
    )]
    pub config: PathBuf,

    /// Print only errors on stderr (for cron).
    #[arg(long, short, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load everything and render every recipient's message; report every problem; send nothing.
    Check(CheckArgs),
    /// Write the exact message one subscriber would receive as .eml, .html and .txt files.
    Preview(PreviewArgs),
    /// Deliver the edition to every subscribed address; resume an edition left unfinished.
    Send(SendArgs),
    /// Show an edition's delivery journal: counts per state, and every deferred, failed and
    /// in-doubt recipient with the reason.
    Status(StatusArgs),
    /// Approve a draft edition (with `[approval]`) as its content is now: the next send
    /// delivers it. A change to its articles or templates afterwards needs a new approval.
    Approve(ApproveArgs),
    /// Unsubscribe an address (or the address in an unsubscribe token): at once for any send,
    /// and in the subscriber list, comments kept.
    Unsubscribe(UnsubscribeArgs),
    /// Add an address to the subscriber list, or subscribe it again.
    Subscribe(SubscribeArgs),
    /// List the suppressed addresses (never mailed again: the mailbox does not exist or is
    /// disabled), with the reply and the date; `suppressions lift` gives them back.
    Suppressions(SuppressionsArgs),
    /// Bring a list from another tool into the subscriber file: a Mailchimp export (its
    /// ZIP of subscribed, unsubscribed and cleaned CSVs), Substack, Ghost, listmonk or
    /// Buttondown (told by their columns), or any CSV with `--email-column`. Who left or
    /// bounced there is never subscribed here: unsubscribed stays unsubscribed, cleaned
    /// (bounced, complained) is suppressed, unconfirmed is refused. Prints what was added,
    /// updated, kept unsubscribed, suppressed and refused (with file and line).
    Import(ImportArgs),
    /// Write the subscriber list as CSV (stdout, or --out FILE) in the columns listmonk
    /// imports: email,name,status,attributes (status enabled or blocklisted; the
    /// attributes carry `newsletter_status`, `since` and `tags`).
    Export(ExportArgs),
    /// Forget an address on its owner's request: remove it from the subscriber file, delete
    /// every row about it from the state database (deliveries, suppression, unsubscribe,
    /// list changes, bounce findings; the file is then rewritten so no copy survives in
    /// free pages or the write-ahead log) and its outbox and preview files. Only a keyed
    /// hash is kept (key: STATE.forget-key, beside the state database; back it up with
    /// it), so the address is never mailed again, even if it is added back to the list.
    Forget(AddressArgs),
    /// Print, as JSON, everything kept about one address: its subscriber entry, its rows
    /// in the state database and the files named after it (a reader's access request).
    ExportData(AddressArgs),
    /// Write the web archive: a page per sent edition (with no reader in it), an index and
    /// an Atom feed, into `--out` or `[archive] dir`. Pages already written stay as they
    /// are; `send` writes each new edition's page when it freezes it.
    Archive(ArchiveArgs),
    /// Read mail that came back (bounces, complaints, unsubscribe requests by mail) from a
    /// Maildir, files or stdin, and act on it: suppress, count, unsubscribe.
    ///
    /// Each message is classified (hard bounce, soft bounce, sender-side failure, complaint,
    /// unsubscribe request, automatic reply, other), matched to the subscriber it is about
    /// (by its return-path token, the Message-ID of the returned message, or the address the
    /// report names; only addresses an edition went to), and acted on: a hard bounce
    /// suppresses the address; soft bounces in `soft_limit` editions in a row (default 3)
    /// suppress it; a complaint unsubscribes and suppresses; a request with a valid token
    /// unsubscribes. Sender-side failures (DMARC, SPF, DKIM, a blocklisted IP, rate limits)
    /// never suppress anyone: they are reported and counted in `status`. A message is never
    /// acted on twice. One line per finding on stdout: file, what it is, the address, the
    /// status, what was done.
    Bounces(BouncesArgs),
    /// Serve the unsubscribe links over HTTP: GET shows a confirmation page, POST
    /// (RFC 8058 one-click) unsubscribes. Put it behind the site's TLS proxy.
    ///
    /// With `[webhooks.ses]`, `[webhooks.mailgun]` or `[webhooks.postmark]` it also takes
    /// the provider's bounce and complaint events on POST /webhooks/ses, /webhooks/mailgun
    /// and /webhooks/postmark: each authenticated as its provider does it (the SNS
    /// signature and topic, Mailgun's HMAC within 5 minutes, Postmark's basic auth), then
    /// acted on as `newsletter bounces` acts; anything else is a 4xx and changes nothing.
    Serve(ServeArgs),
    /// Create a working project in DIR (config, subscribers, one article, a signing key);
    /// never overwrites a file.
    Init(InitArgs),
    /// Print a shell completion script, e.g. `newsletter completions bash > /etc/bash_completion.d/newsletter`.
    Completions(CompletionsArgs),
    /// Print the man page (roff), e.g. `newsletter man > /usr/local/share/man/man1/newsletter.1`.
    Man,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The export: a CSV file, or a ZIP of CSV files.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Show what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The tool that wrote it, when its columns do not tell.
    #[arg(long, value_enum)]
    pub format: Option<crate::import::Format>,
    /// For any CSV: the column with the address.
    #[arg(long, value_name = "NAME")]
    pub email_column: Option<String>,
    /// For any CSV: the column with the name.
    #[arg(long, value_name = "NAME")]
    pub name_column: Option<String>,
    /// For any CSV: the column with the status (subscribed/active/enabled, unsubscribed,
    /// cleaned/bounced/complained, unconfirmed/pending).
    #[arg(long, value_name = "NAME")]
    pub status_column: Option<String>,
    /// For any CSV: the column with comma-separated tags.
    #[arg(long, value_name = "NAME")]
    pub tags_column: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write into this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AddressArgs {
    /// The reader's address, in any spelling (a Unicode or A-label domain).
    #[arg(value_name = "ADDRESS")]
    pub address: String,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The draft edition's id, as the draft message and `send` name it.
    #[arg(value_name = "EDITION")]
    pub edition: String,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The folder to create the project in (created if missing).
    pub dir: PathBuf,

    /// Also copy the built-in templates into DIR/templates, to edit them. In an existing
    /// project (DIR has a newsletter.toml), copy the templates alone.
    #[arg(long)]
    pub templates: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct UnsubscribeArgs {
    /// An email address, or the token from an unsubscribe link.
    #[arg(value_name = "ADDRESS|TOKEN")]
    pub target: String,
}

#[derive(Debug, Args)]
pub struct SubscribeArgs {
    /// The address to subscribe.
    pub address: String,

    /// The subscriber's name, used in the greeting.
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct SuppressionsArgs {
    #[command(subcommand)]
    pub action: Option<SuppressionsAction>,

    /// Print the list as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SuppressionsAction {
    /// List every suppressed address with its reason and date (the default).
    List,
    /// Lift suppressions, so that the next edition goes to those addresses again.
    Lift(LiftArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["addresses", "all", "sender_side"])))]
pub struct LiftArgs {
    /// The addresses to lift.
    #[arg(value_name = "ADDRESS")]
    pub addresses: Vec<String>,

    /// Lift every suppression.
    #[arg(long)]
    pub all: bool,

    /// Undo suppressions and failures that an older release recorded for replies about the
    /// sender (5.7.x policy and authentication, 5.3.x, rate limits, refusals of MAIL FROM,
    /// DATA or the content): the failed recipients become pending again and their edition
    /// is reopened, so the next `send` delivers them. Lists what it restored.
    #[arg(long)]
    pub sender_side: bool,
}

// Each flag is one independent switch of the command line, as clap wants them.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  newsletter bounces --dry-run --maildir ~/Maildir/.bounces   # what would be done
  newsletter --quiet bounces                                  # cron: the [bounces] maildir or imap
  newsletter --quiet bounces --imap                           # cron: the [bounces.imap] folder
  bounces: \"|newsletter -c /srv/news/newsletter.toml bounces --stdin\"   # /etc/aliases")]
pub struct BouncesArgs {
    /// Message files to read (not moved).
    #[arg(value_name = "FILE", conflicts_with_all = ["maildir", "stdin"])]
    pub files: Vec<PathBuf>,

    /// A Maildir to read: each message in new/ and cur/ is moved to its `.processed`
    /// folder once acted on [default: `maildir` in [bounces]].
    #[arg(long, value_name = "DIR", conflicts_with_all = ["stdin", "imap"])]
    pub maildir: Option<PathBuf>,

    /// Read the IMAP folder of [bounces.imap] (over TLS): each message is moved to the
    /// processed folder once acted on.
    #[arg(long, conflicts_with_all = ["stdin", "files"])]
    pub imap: bool,

    /// Read one message on stdin, for an MTA's pipe alias; exits 75 when it cannot be
    /// recorded, so the MTA keeps it and tries again.
    #[arg(long)]
    pub stdin: bool,

    /// Say what each message is and what would be done; change nothing, move nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print one JSON object per message on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// The folder to write the site into [default: `dir` in [archive]].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:8025", value_name = "ADDR:PORT")]
    pub listen: String,

    /// Connections open at once; one more is answered 503 and closed at once.
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub max_connections: usize,

    /// Seconds a client has to send its request head, and then its body, before the
    /// connection is closed (a connection lives at most 60 s in all).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub read_timeout: f64,

    /// Unsubscribe requests a minute from one client address, in bursts of as many; more
    /// are answered 429. Behind a reverse proxy every reader has the proxy's address, so
    /// set it high there. 0 turns the limit off.
    #[arg(long, default_value_t = 600, value_name = "N")]
    pub rate_limit: u32,
}

/// Which articles make the edition, and its date.
#[derive(Debug, Args, Clone, Default)]
pub struct EditionArgs {
    /// Build the edition from this article file instead of the default selection; repeat for
    /// several.
    #[arg(long = "article", value_name = "FILE")]
    pub articles: Vec<PathBuf>,

    /// The edition's date [default: today in UTC].
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub date: Option<NaiveDate>,

    /// Take feed items (and Markdown articles) dated on or after this day, instead of those
    /// since the last edition sent.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub since: Option<NaiveDate>,

    /// Leave out articles dated after this day.
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub until: Option<NaiveDate>,

    /// Send only to subscribers with this tag (repeat for several; any one matches).
    /// Overrides `audience` in [selection].
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
}

impl EditionArgs {
    /// The request the library plans from.
    pub fn request(&self) -> crate::project::EditionRequest {
        crate::project::EditionRequest {
            articles: self.articles.clone(),
            date: self.date,
            since: self.since,
            until: self.until,
            tags: self.tags.clone(),
            edition: None,
        }
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub edition: EditionArgs,

    /// Check the relay instead: connect, do TLS and AUTH as a send would, say what the
    /// server offers and how a send would use it; nothing is sent.
    #[arg(long)]
    pub relay: bool,

    /// Check the DNS instead: SPF authorises the sending path, each DKIM key is
    /// published as configured, DMARC exists and aligns with From, MX where mail comes
    /// back, PTR of one's own addresses. Each failure names the record to publish; exit 1
    /// when one fails.
    #[arg(long, conflicts_with = "relay")]
    pub dns: bool,

    /// With --dns: ask this DNS server (IP or IP:PORT) instead of the system's resolvers.
    #[arg(long, value_name = "ADDR", requires = "dns")]
    pub resolver: Option<String>,

    /// With --dns: the public address mail leaves from, when it is one's own server
    /// (repeat for several); otherwise the relay's provider or address is used.
    #[arg(long = "sending-ip", value_name = "IP", requires = "dns")]
    pub sending_ips: Vec<std::net::IpAddr>,

    /// Check the edition's links instead: every link and image is fetched (HEAD, then GET
    /// where needed; 8 at a time), redirects are followed and shown, and each broken one
    /// is listed with the article it is in; exit 1 when one is broken. Links that worked
    /// are remembered for a day for this edition (`STATE.links.json`).
    #[arg(long, conflicts_with_all = ["relay", "dns"])]
    pub links: bool,

    /// With --links: how long one request may take, in seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 10.0,
        requires = "links"
    )]
    pub link_timeout: f64,
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    #[command(flatten)]
    pub edition: EditionArgs,

    /// The subscriber whose message to write [default: the first subscribed one].
    #[arg(long, value_name = "ADDRESS")]
    pub to: Option<String>,

    /// The folder to write into (created if missing) [default: `preview/` beside the
    /// config file].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Show this edition exactly as it was frozen (sent or still sending), instead of the
    /// next one; `newsletter status` lists the editions.
    #[arg(long = "edition", value_name = "ID", conflicts_with = "articles")]
    pub edition_id: Option<String>,

    /// Also list every candidate article, and each feed source, with why it is in or out.
    #[arg(long)]
    pub explain: bool,
}

// Each flag is one independent switch of the command line, as clap wants them.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub edition: EditionArgs,

    /// Render everything and list who would receive the edition, without sending.
    #[arg(long)]
    pub dry_run: bool,

    /// Follow `[schedule]`, for a cron line every few minutes: send nothing outside the
    /// sending window; inside it resume the unfinished edition (deferred recipients when
    /// their backoff is over), or start a new edition on its day once its time has come,
    /// never when stale; exit quietly when the previous run is still sending.
    #[arg(long, conflicts_with_all = ["to", "dry_run"])]
    pub scheduled: bool,

    /// Send one test copy to this address only (any address); the edition is not recorded
    /// as sent.
    #[arg(long, value_name = "ADDRESS", conflicts_with = "resend_in_doubt")]
    pub to: Option<String>,

    /// Start a new edition even though the last one passed a stop threshold of hard
    /// bounces or complaints (`status` shows the rates).
    #[arg(long)]
    pub despite_rates: bool,

    /// Also resend to recipients whose earlier delivery is in doubt (a run died between the
    /// message's DATA and the server's reply). They get the same Message-ID, so a receiver
    /// can recognise a duplicate.
    #[arg(long)]
    pub resend_in_doubt: bool,

    /// SMTP connections to use at once [default: `connections` in the config].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub connections: Option<u16>,

    /// Benchmark aid: send to every subscribed address without the journal (no freezing,
    /// no resume, no protection against duplicates). Only in builds with the `bench`
    /// feature, never in the shipped binary.
    #[cfg(feature = "bench")]
    #[arg(long, hide = true, conflicts_with_all = ["to", "dry_run", "resend_in_doubt"])]
    pub no_journal: bool,
}

impl SendArgs {
    /// The journal-off benchmark mode: false unless built with the `bench` feature.
    pub fn no_journal(&self) -> bool {
        #[cfg(feature = "bench")]
        return self.no_journal;
        #[cfg(not(feature = "bench"))]
        false
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The edition to show [default: the most recent].
    pub edition: Option<String>,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}
