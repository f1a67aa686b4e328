//! The state database and the files it keeps in step: the database itself (`db`), the
//! editions it froze, the delivery journal and its single writer thread, changes to the
//! list and the suppressions, the run lock, and the subscriber file edits.

pub(crate) mod db;
pub(crate) mod deliveries;
pub(crate) mod departures;
pub(crate) mod editions;
pub(crate) mod forget;
pub(crate) mod inbound;
pub(crate) mod list;
pub(crate) mod listfile;
pub(crate) mod lock;
pub(crate) mod sendlog;
pub(crate) mod signup;
pub(crate) mod suppressions;
pub(crate) mod watch;
pub(crate) mod writer;

pub(crate) use db::{Journal, beside, from_unix, unix};
pub(crate) use deliveries::{Change, Row, State};
pub(crate) use editions::{Frozen, content_hash};
pub(crate) use list::ListChange;
