//! The state database and the files it keeps in step: editions and the delivery journal,
//! its single writer thread, suppressions, the run lock, and the subscriber list edits.

pub(crate) mod journal;
pub(crate) mod listfile;
pub(crate) mod lock;
pub(crate) mod suppressions;
pub(crate) mod writer;
