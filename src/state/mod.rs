//! The state database and the files it keeps in step: editions and the delivery journal,
//! its single writer thread, suppressions, the run lock, and the subscriber list edits.

pub mod journal;
pub mod listfile;
pub mod lock;
pub mod suppressions;
pub mod writer;
