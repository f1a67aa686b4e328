//! From rendered text to a message on the wire: MIME bytes with the list headers, DKIM
//! signing, and what an SMTP reply means for the recipient and the run.

pub mod dkim;
pub mod message;
pub mod reply;
