//! Exit codes, documented in `--help` and the README, so that cron wrappers can tell
//! outcomes apart.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Done = 0,
    Failed = 1,
    BadInput = 3,
    Partial = 4,
    Locked = 5,
    NothingToDo = 6,
    SenderRefused = 7,
    /// The last edition passed a stop threshold of bounces or complaints.
    Held = 8,
    /// `EX_TEMPFAIL` (`sysexits.h`): a message piped in could not be recorded; the MTA keeps
    /// it and tries again.
    TempFail = 75,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}
