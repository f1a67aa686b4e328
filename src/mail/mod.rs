//! From rendered text to a message on the wire: MIME bytes with the list headers, DKIM
//! signing, and what an SMTP reply means for the recipient and the run.

pub(crate) mod dkim;
pub(crate) mod message;
pub(crate) mod reply;
