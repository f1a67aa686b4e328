//! The state database file: opened with WAL and `synchronous=FULL`, its schema brought to
//! `SCHEMA_VERSION` by forward migrations, a newer one refused, a damaged one explained.
//! The tables themselves are read and written by the modules beside this one.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, OpenFlags};

/// The schema version this binary reads and writes (`PRAGMA user_version`).
pub(crate) const SCHEMA_VERSION: usize = 8;

/// Forward migrations: `MIGRATIONS[n]` brings a database from version n to n + 1, in one
/// transaction. Version 0 is every database made before the schema had a version: the
/// tables below, created as needed, and the feed cache, created by the feeds module.
const MIGRATIONS: [&str; SCHEMA_VERSION] = [V1, V2, V3, V4, V5, V6, V7, V8];

/// Version 1: the tables of version 0, all of them here, `IF NOT EXISTS` so that a
/// database of version 0 keeps its rows.
const V1: &str = "
CREATE TABLE IF NOT EXISTS edition (
    id            TEXT PRIMARY KEY,
    date          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    completed_at  INTEGER,
    frozen        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS edition_article (
    edition_id  TEXT NOT NULL REFERENCES edition(id),
    article_id  TEXT NOT NULL,
    PRIMARY KEY (edition_id, article_id)
);
CREATE TABLE IF NOT EXISTS delivery (
    edition_id  TEXT NOT NULL REFERENCES edition(id),
    email       TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN
                  ('pending','attempting','sent','deferred','failed','in_doubt','skipped')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_try    INTEGER,
    code        INTEGER,
    reply       TEXT,
    message_id  TEXT,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (edition_id, email)
);
CREATE INDEX IF NOT EXISTS delivery_state ON delivery (edition_id, state);
CREATE TABLE IF NOT EXISTS suppression (
    email   TEXT PRIMARY KEY,
    reason  TEXT NOT NULL,
    at      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS daily_count (
    day   TEXT PRIMARY KEY,
    sent  INTEGER NOT NULL
);
-- Who unsubscribed, durable the moment they asked; honoured by a send already running.
CREATE TABLE IF NOT EXISTS unsubscribed (
    email   TEXT PRIMARY KEY,
    source  TEXT NOT NULL,
    at      INTEGER NOT NULL
);
-- Edits of subscribers.toml not yet written to it (the file is edited under the list lock).
CREATE TABLE IF NOT EXISTS list_change (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    email       TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('subscribe','unsubscribe')),
    name        TEXT,
    at          INTEGER NOT NULL,
    applied_at  INTEGER
);
-- Conditional-GET validators and bodies of feed URLs.
CREATE TABLE IF NOT EXISTS feed_cache (
    url            TEXT PRIMARY KEY,
    etag           TEXT,
    last_modified  TEXT,
    body           BLOB NOT NULL,
    fetched_at     INTEGER NOT NULL
);
";

/// Version 2: what a scheduled run has already told the operator (a stale edition
/// skipped), so a cron line every ten minutes says it once; editions frozen as drafts that
/// wait for an editor's approval, bound to the hash of their frozen content.
const V2: &str = "
CREATE TABLE IF NOT EXISTS schedule_note (
    slot  TEXT PRIMARY KEY,
    at    INTEGER NOT NULL
);
ALTER TABLE edition ADD COLUMN draft INTEGER NOT NULL DEFAULT 0;
ALTER TABLE edition ADD COLUMN approved_hash TEXT;
ALTER TABLE edition ADD COLUMN approved_at INTEGER;
ALTER TABLE edition ADD COLUMN previewed_hash TEXT;
";

/// Version 3: mail that came back (bounces, complaints, unsubscribe requests), one row per
/// finding, keyed by the hash of the message it came in, so no message is acted on twice.
const V3: &str = "
CREATE TABLE IF NOT EXISTS inbound (
    message     TEXT NOT NULL,
    n           INTEGER NOT NULL,
    edition_id  TEXT,
    email       TEXT,
    kind        TEXT NOT NULL,
    status      TEXT,
    diagnostic  TEXT NOT NULL,
    action      TEXT NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (message, n)
);
CREATE INDEX IF NOT EXISTS inbound_edition ON inbound (edition_id, kind);
CREATE INDEX IF NOT EXISTS inbound_email ON inbound (email, edition_id);
CREATE INDEX IF NOT EXISTS delivery_message_id ON delivery (message_id);
CREATE INDEX IF NOT EXISTS delivery_email ON delivery (email);
";

/// Version 4: addresses forgotten on their owner's request, kept only as a keyed hash so
/// that they are never mailed again (see `privacy.rs`).
const V4: &str = "
CREATE TABLE IF NOT EXISTS forgotten (
    hash  TEXT PRIMARY KEY,
    at    INTEGER NOT NULL
);
";

/// Version 5: sign-ups through `serve`. A bounded record of each unconfirmed sign-up
/// (deleted at confirmation, pruned at expiry); the confirmation and welcome messages
/// `serve` sends, each sent at most once; list changes that carry tags and a consent record.
const V5: &str = "
CREATE TABLE IF NOT EXISTS signup_pending (
    email         TEXT PRIMARY KEY,
    name          TEXT,
    tags          TEXT NOT NULL,
    source        TEXT,
    ip            TEXT,
    requested_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    day           TEXT NOT NULL,
    sends         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS signup_pending_expiry ON signup_pending (expires_at);
CREATE TABLE IF NOT EXISTS outgoing (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL CHECK (kind IN ('confirm','welcome')),
    email       TEXT NOT NULL,
    bytes       BLOB NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending','attempting','sent','failed','in_doubt')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_try    INTEGER NOT NULL DEFAULT 0,
    reply       TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outgoing_state ON outgoing (state, next_try);
ALTER TABLE list_change ADD COLUMN tags TEXT;
ALTER TABLE list_change ADD COLUMN consent TEXT;
";

/// Version 6: the number of the last step of the send log (`sendlog.rs`) applied here.
const V6: &str = "
CREATE TABLE IF NOT EXISTS send_log (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    applied  INTEGER NOT NULL
);
INSERT OR IGNORE INTO send_log (id, applied) VALUES (1, 0);
";

/// Version 7: how many recipients a new edition has, while a send writes their rows as it
/// reaches them (`sendlog::NewRows`).
const V7: &str = "
ALTER TABLE edition ADD COLUMN recipients INTEGER;
";

/// Version 8: for a row made `attempting` while the message before it on the same
/// connection waited for its reply, that message's recipient and the row's state before
/// (`deliveries::Change::Attempting`): after a crash the row goes back to that state
/// unless the one before it was sent.
const V8: &str = "
ALTER TABLE delivery ADD COLUMN after_email TEXT;
ALTER TABLE delivery ADD COLUMN before_state TEXT;
";

pub struct Journal {
    pub(super) conn: Connection,
}

/// Frames in the write-ahead log beyond which `fold_long_log` folds it: 1 MB of 4 KB pages,
/// read back in ~0.4 ms. A small send adds ~40 frames, so the fold comes every few runs.
const LONG_LOG: u32 = 256;

/// One copy of the WAL-index header (`WalIndexHdr` in `wal.c`) at the start of the `-shm`
/// file beside the database; of its two copies, the one at offset 0 is written last.
pub(crate) const WAL_INDEX_HEADER: usize = 48;

/// The WAL-index header as the open `-shm` file holds it now; `None` when unreadable.
pub(crate) fn wal_index_header(shm: &std::fs::File) -> Option<[u8; WAL_INDEX_HEADER]> {
    use std::os::unix::fs::FileExt;
    let mut header = [0; WAL_INDEX_HEADER];
    shm.read_exact_at(&mut header, 0).ok()?;
    Some(header)
}

/// The frames in the database's write-ahead log, as its index header says (`mxFrame`:
/// bytes 16 to 19, in the machine's byte order); `None` when there is no index to read.
fn wal_frames(path: &Path) -> Option<u32> {
    let shm = std::fs::File::open(beside(path, "-shm")).ok()?;
    let header = wal_index_header(&shm)?;
    Some(u32::from_ne_bytes([
        header[16], header[17], header[18], header[19],
    ]))
}

/// A file kept beside the state database: its path with `suffix` added to the name
/// (`newsletter.db` and `.links.json` make `newsletter.db.links.json`).
pub(crate) fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A time stored as seconds since 1970.
pub(crate) fn from_unix(secs: i64) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

pub(crate) fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Journal {
    /// Opens (creating if needed) the database for writing.
    pub fn open(path: &Path) -> Result<Journal> {
        let made = create(path)?;
        let mut conn = Connection::open(path)
            .with_context(|| format!("cannot open the state database {}", path.display()))?;
        // Every write transaction takes the write lock when it begins, where the busy
        // timeout applies: a deferred one that read first and then wants to write fails at
        // once with "database is locked" when another process (serve, a send) wrote meanwhile.
        conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        Self::setup(&conn, made).map_err(|e| explain(e, path))?;
        Ok(Journal { conn })
    }

    fn setup(conn: &Connection, how: Made) -> Result<()> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // A database made from the image (`create`) is at `SCHEMA_VERSION` in WAL mode,
        // synced. Stamping the version it already has writes its first page into its
        // write-ahead log without a sync, which starts the log (SQLite syncs a log's header
        // when a synced commit starts it: one flush more). The first synced commit (the
        // freeze of an edition) syncs the log, and the directory with the names of both
        // (SQLite syncs the directory on the first sync of a log it created).
        //
        // A database made empty (where the folder takes no links) is switched to its
        // write-ahead log with one sync rather than four (without a rollback journal: the
        // switch writes the empty file's first page, nothing to roll back), and given its
        // schema without syncs: a crash meanwhile leaves an empty database or one whose log
        // lacks some of the schema, which the next open completes. Its first page must be on
        // disk before the first synced commit: SQLite discards the log of an empty database
        // file.
        let quiet = how != Made::Existing;
        conn.pragma_update(None, "synchronous", "FULL")?;
        if how == Made::Empty {
            conn.pragma_update(None, "journal_mode", "OFF")?;
        }
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if quiet {
            if !mode.eq_ignore_ascii_case("wal") {
                // A file system without the log's shared memory: the database is never
                // left without a journal.
                conn.pragma_update(None, "journal_mode", "DELETE")?;
            }
            conn.pragma_update(None, "synchronous", "OFF")?;
        }
        if how == Made::Image {
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        // Checkpoints (copying the WAL into the database, with their own fsyncs) every
        // 10,000 pages rather than 1,000: a send writes a few pages per message.
        conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
        // The log stays when the connection closes: a checkpoint on every close cost each
        // run two fsyncs (the database, and the directory when the log was made again).
        // Checkpoints come with the log's growth instead, and from `forget`.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )?;
        migrate(conn)?;
        if quiet {
            conn.pragma_update(None, "synchronous", "FULL")?;
        }
        Ok(())
    }

    /// Runs `f` with its commits synced to disk before they return (`durable`) or not
    /// (a later synced commit carries them); the connection's other writes stay synced,
    /// whatever happened in `f`.
    pub(super) fn synced<T>(
        &mut self,
        durable: bool,
        f: impl FnOnce(&mut Connection) -> Result<T>,
    ) -> Result<T> {
        let sync = if durable { "FULL" } else { "NORMAL" };
        self.conn.pragma_update(None, "synchronous", sync)?;
        let result = f(&mut self.conn);
        let reset = self.conn.pragma_update(None, "synchronous", "FULL");
        let value = result?;
        reset?;
        Ok(value)
    }

    /// Folds the write-ahead log into the database and empties it when it has grown past
    /// `LONG_LOG` frames; true when it did. A process that opens the database while no
    /// other has it open rebuilds the log's index by reading the whole log (about 0.4 ms
    /// per MB here: 20 ms at the 10,000 pages the automatic checkpoint lets it reach), and
    /// a cron line opens it every few minutes. A reader that holds the log (`serve`) is
    /// waited for briefly only: the next run's end tries again.
    pub fn fold_long_log(&self, path: &Path) -> Result<bool> {
        if wal_frames(path).is_none_or(|frames| frames <= LONG_LOG) {
            return Ok(false);
        }
        self.conn
            .busy_timeout(std::time::Duration::from_millis(200))?;
        let busy = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
        self.conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(busy? == 0)
    }

    /// Opens an existing database read-only; `None` when there is none yet (check,
    /// preview and dry runs do not create it, unless they fetch a feed URL: the feed cache
    /// lives in it).
    pub fn open_read_only(path: &Path) -> Result<Option<Journal>> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("cannot open the state database {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // Read-only: an older version is read as it is (each version only adds), a newer
        // one is refused.
        version(&conn)
            .and_then(refuse_newer)
            .map_err(|e| explain(e, path))?;
        Ok(Some(Journal { conn }))
    }

    /// Whether the database records a new edition's number of recipients (version 7): a
    /// database of an earlier version is read as it is.
    pub(super) fn counts_recipients(&self) -> Result<bool> {
        Ok(version(&self.conn)? >= 7)
    }

    /// An empty database in memory: what a dry run reads when no state exists yet.
    pub fn in_memory() -> Result<Journal> {
        let conn = Connection::open_in_memory()?;
        migrate(&conn)?;
        Ok(Journal { conn })
    }

    /// Records that `slot` was reported; true the first time.
    pub fn first_note(&mut self, slot: &str, now: SystemTime) -> Result<bool> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO schedule_note (slot, at) VALUES (?1, ?2)",
            rusqlite::params![slot, unix(now)],
        )?;
        Ok(n == 1)
    }

    /// The connection itself, for a table kept beside the journal (the feed cache).
    pub fn into_connection(self) -> Connection {
        self.conn
    }

    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// A new database: an empty one at `SCHEMA_VERSION`, in WAL mode, with the rows the
/// migrations insert. Writing it costs a fraction of making the schema (about 1.4 ms of a
/// project's first run here, on its main thread: `SQLite` parses the whole schema again after
/// each `ALTER TABLE`). Made by the migrations; a test checks it against them and writes it
/// again with `NEWSLETTER_WRITE_EMPTY_DB=1` (`state::db::tests`).
const IMAGE: &[u8] = include_bytes!("empty.db");

/// How `create` found the database file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Made {
    /// It existed.
    Existing,
    /// Made now from `IMAGE`.
    Image,
    /// Made now, empty: the migrations give it its schema.
    Empty,
}

/// Makes the database file if there is none, readable by its owner alone (it holds every
/// address and the delivery history; `SQLite` would use the umask, and gives its -wal and -shm
/// files the database file's mode). The image is written to a file of its own beside it,
/// synced, and linked into place, so that no other process opening the database at the same
/// moment reads half of it; when the folder takes no links, the file is made empty.
fn create(path: &Path) -> Result<Made> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let cannot = || format!("cannot create the state database {}", path.display());
    if std::fs::symlink_metadata(path).is_ok() {
        return Ok(Made::Existing);
    }
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let aside = beside(path, &format!(".{}-{n}.new", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&aside)
        .and_then(|mut f| f.write_all(IMAGE).and_then(|()| f.sync_data()));
    let linked = written.map(|()| std::fs::hard_link(&aside, path));
    // The name beside it goes in every case; a linked database keeps the data under its own.
    let _ = std::fs::remove_file(&aside);
    match linked {
        Ok(Ok(())) => Ok(Made::Image),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Made::Existing),
        // The folder could be written, so a refused link is the file system's: some network
        // and FAT file systems have none.
        Ok(Err(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::Unsupported
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::TooManyLinks
            ) =>
        {
            create_empty(path).with_context(cannot)
        }
        Ok(Err(e)) | Err(e) => Err(e).with_context(cannot),
    }
}

/// Makes the database file empty (the migrations then give it its schema).
fn create_empty(path: &Path) -> std::io::Result<Made> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(Made::Empty),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Made::Existing),
        Err(e) => Err(e),
    }
}

fn version(conn: &Connection) -> Result<usize> {
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    Ok(usize::try_from(v).unwrap_or(usize::MAX))
}

fn refuse_newer(version: usize) -> Result<usize> {
    if version > SCHEMA_VERSION {
        bail!(
            "its schema version is {version}, newer than this newsletter knows ({SCHEMA_VERSION}): \
             a newer release wrote it; use that release or a later one"
        );
    }
    Ok(version)
}

/// Brings the schema to `SCHEMA_VERSION`, one migration per transaction; refuses a
/// database newer than this binary.
fn migrate(conn: &Connection) -> Result<()> {
    let from = refuse_newer(version(conn)?)?;
    if from >= MIGRATIONS.len() {
        return Ok(());
    }
    // Every step in one transaction: one commit (one fsync) for a new database, and a
    // crash leaves the schema where it was, never half way.
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    // Another process may have migrated meanwhile.
    let from = version(&tx)?;
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(from) {
        tx.execute_batch(sql)
            .with_context(|| format!("migrating the schema to version {}", n + 1))?;
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len())?;
    tx.commit()?;
    Ok(())
}

/// An error opening the state database, with what to do about a damaged file.
fn explain(e: anyhow::Error, path: &Path) -> anyhow::Error {
    let damaged = e.chain().any(|c| {
        c.downcast_ref::<rusqlite::Error>().is_some_and(|r| {
            matches!(
                r.sqlite_error_code(),
                Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
            )
        })
    });
    if damaged {
        return e.context(format!(
            "the state database {} is damaged: restore it from a backup, or move it aside \
             (with its -wal and -shm files) to start an empty one, which no longer knows \
             which editions went out or who bounced",
            path.display()
        ));
    }
    e.context(format!("cannot use the state database {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_log_is_folded_into_the_database_and_a_short_one_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("newsletter.db");
        let wal = beside(&path, "-wal");
        let mut journal = Journal::open(&path).unwrap();
        for i in 0..3 {
            journal
                .first_note(&format!("slot {i}"), UNIX_EPOCH)
                .unwrap();
        }
        let short = wal_frames(&path).unwrap();
        assert!(short > 0 && short <= LONG_LOG, "{short} frames");
        assert!(!journal.fold_long_log(&path).unwrap());
        assert_eq!(
            wal_frames(&path),
            Some(short),
            "a short log is left as it is"
        );
        assert!(std::fs::metadata(&wal).unwrap().len() > 0);

        // Every commit adds at least one frame.
        let n = usize::try_from(LONG_LOG).unwrap() + 10;
        for i in 3..n {
            journal
                .first_note(&format!("slot {i}"), UNIX_EPOCH)
                .unwrap();
        }
        assert!(wal_frames(&path).unwrap() > LONG_LOG);
        assert!(journal.fold_long_log(&path).unwrap());
        assert_eq!(wal_frames(&path), Some(0));
        assert_eq!(
            std::fs::metadata(&wal).unwrap().len(),
            0,
            "the log is emptied"
        );
        drop(journal);

        // Nothing was lost, and the database opens and writes as before.
        let mut journal = Journal::open(&path).unwrap();
        let notes: usize = journal
            .connection()
            .query_row("SELECT count(*) FROM schedule_note", [], |r| r.get(0))
            .unwrap();
        assert_eq!(notes, n);
        assert!(journal.first_note("one more", UNIX_EPOCH).unwrap());
    }

    #[test]
    fn a_database_newer_than_the_binary_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        Connection::open(&path)
            .and_then(|c| c.pragma_update(None, "user_version", 99))
            .expect("newer");
        let err = Journal::open(&path).err().expect("refused");
        assert!(
            format!("{err:#}").contains("schema version is 99, newer"),
            "{err:#}"
        );
        let err = Journal::open_read_only(&path).err().expect("refused");
        assert!(format!("{err:#}").contains("newer"), "{err:#}");
    }

    #[test]
    fn a_new_database_gets_the_current_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(&dir.path().join("state.db")).expect("open");
        assert_eq!(version(&j.conn).expect("version"), SCHEMA_VERSION);
    }

    /// The schema as `SQLite` keeps it (without where its tables start in the file), the
    /// version, the send log's row, and whether the file is sound.
    type Shape = (Vec<[String; 4]>, usize, Vec<(i64, i64)>, String);

    fn shape(conn: &Connection) -> Shape {
        let mut schema = conn
            .prepare("SELECT type, name, tbl_name, ifnull(sql, '') FROM sqlite_master ORDER BY type, name")
            .expect("prepare");
        let schema = schema
            .query_map([], |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]))
            .expect("schema")
            .collect::<rusqlite::Result<Vec<_>>>()
            .expect("rows");
        let mut rows = conn
            .prepare("SELECT id, applied FROM send_log")
            .expect("prepare");
        let rows = rows
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("send_log")
            .collect::<rusqlite::Result<Vec<_>>>()
            .expect("rows");
        let sound: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity");
        (schema, version(conn).expect("version"), rows, sound)
    }

    /// A database made by the migrations, named `name` in `dir`: an empty file is a database
    /// of version 0, which every migration brings to the current one.
    fn by_migrations(dir: &Path, name: &str) -> (PathBuf, Journal) {
        let path = dir.join(name);
        std::fs::write(&path, b"").expect("empty file");
        let j = Journal::open(&path).expect("migrate");
        (path, j)
    }

    /// Writes `empty.db` again from the migrations (`NEWSLETTER_WRITE_EMPTY_DB=1`).
    fn write_image(dir: &Path) {
        let (path, j) = by_migrations(dir, "image.db");
        j.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
            .expect("checkpoint");
        drop(j);
        let image = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/state/empty.db");
        std::fs::copy(&path, &image).expect("write the image");
    }

    /// The image a new database is made from is the database the migrations make.
    #[test]
    fn a_new_database_is_the_one_the_migrations_make() {
        let dir = tempfile::tempdir().expect("tempdir");
        if std::env::var_os("NEWSLETTER_WRITE_EMPTY_DB").is_some() {
            write_image(dir.path());
        }
        let (_, migrated) = by_migrations(dir.path(), "migrated.db");
        let new = dir.path().join("new.db");
        assert_eq!(create(&new).expect("create"), Made::Image);
        std::fs::remove_file(&new).expect("remove");
        let by_image = Journal::open(&new).expect("open");
        assert_eq!(
            shape(&by_image.conn),
            shape(&migrated.conn),
            "src/state/empty.db is not the database the migrations make: \
             `NEWSLETTER_WRITE_EMPTY_DB=1 cargo test --lib state::db` writes it again \
             (then run the tests once more)"
        );
        assert_eq!(shape(&by_image.conn).3, "ok");
        // Readable by its owner alone, and nothing left beside it.
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&new).expect("metadata").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("new.db"))
            .collect();
        names.sort();
        assert_eq!(names, ["new.db", "new.db-shm", "new.db-wal"]);
    }

    /// Opened at the same moment by many connections, a new database is made once, whole:
    /// none of them reads half an image.
    #[test]
    fn a_new_database_opened_at_once_by_many_is_made_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let start = std::sync::Barrier::new(8);
        let made: Vec<Made> = std::thread::scope(|s| {
            let opening: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        let made = create(&path).expect("create");
                        let mut j = Journal::open(&path).expect("open");
                        assert_eq!(version(&j.conn).expect("version"), SCHEMA_VERSION);
                        assert!(j.first_note("one", UNIX_EPOCH).is_ok());
                        made
                    })
                })
                .collect();
            opening
                .into_iter()
                .map(|t| t.join().expect("join"))
                .collect()
        });
        assert_eq!(
            made.iter().filter(|m| **m == Made::Image).count(),
            1,
            "{made:?}"
        );
        let j = Journal::open(&path).expect("open");
        let notes: i64 = j
            .conn
            .query_row("SELECT count(*) FROM schedule_note", [], |r| r.get(0))
            .expect("notes");
        assert_eq!(notes, 1);
        let left = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".new"))
            })
            .count();
        assert_eq!(left, 0, "a file beside the database was left");
    }

    /// Where the folder takes no links, a new database is made empty and migrated, without
    /// syncs until its first commit, as an image would be.
    #[test]
    fn a_database_made_empty_gets_the_schema_and_writes_ahead() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        assert_eq!(create_empty(&path).expect("create"), Made::Empty);
        assert_eq!(create_empty(&path).expect("again"), Made::Existing);
        let conn = Connection::open(&path).expect("open");
        Journal::setup(&conn, Made::Empty).expect("setup");
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .expect("synchronous");
        assert_eq!(sync, 2, "FULL");
        let (_, migrated) = by_migrations(dir.path(), "migrated.db");
        assert_eq!(shape(&conn), shape(&migrated.conn));
    }

    /// Made without syncs, a new database is still one whose commits are synced.
    #[test]
    fn a_new_database_writes_ahead_and_syncs_its_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let j = Journal::open(&path).expect("open");
        let mode: String = j
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        let sync: i64 = j
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .expect("synchronous");
        assert_eq!(sync, 2, "FULL");
        // Another process reads it as a write-ahead database too.
        let other = Connection::open(&path).expect("other");
        let mode: String = other
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
    }

    /// What a crash during a database's making can leave: the empty file, or the switched
    /// first page without the schema (in a log that was never synced).
    #[test]
    fn a_database_whose_making_was_cut_short_is_completed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, b"").expect("empty file");
        let j = Journal::open(&empty).expect("open the empty file");
        assert_eq!(version(&j.conn).expect("version"), SCHEMA_VERSION);

        let bare = dir.path().join("bare.db");
        let c = Connection::open(&bare).expect("bare");
        c.pragma_update(None, "journal_mode", "WAL").expect("wal");
        drop(c);
        let j = Journal::open(&bare).expect("open the bare database");
        assert_eq!(version(&j.conn).expect("version"), SCHEMA_VERSION);
    }
}
