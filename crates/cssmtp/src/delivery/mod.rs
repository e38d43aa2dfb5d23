//! Delivery: sending mails to the target servers.
//!
//! Spool tasks put [`MailJob`]s on a bounded queue; `MaxConnections` [`worker`]s take
//! them, each keeping one SMTP [`session`] open and reusing it while mail keeps coming.
//! The [`router`] picks the target for each mail. Every recipient's result
//! ([`outcome::RcptResult`]) goes back to the spool task that owns the mail.

pub mod body;
pub mod outcome;
pub mod resolve;
pub mod router;
pub mod session;
pub mod tls;
pub mod worker;

use std::sync::Arc;

use tokio::sync::mpsc;

pub use body::{MailText, SpoolText};
pub use outcome::{
    Disposition, Failure, Problem, RcptResult, Rotate, Stage, classify, session_matter,
};

/// Identifies a mail: the spool task (TKID) and the mail's number in its spool file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailKey {
    pub tkid: u32,
    pub ordinal: u32,
}

/// One delivery attempt of one mail, for some of its recipients.
#[derive(Debug)]
pub struct MailJob {
    pub key: MailKey,

    /// The reverse path ("" for `<>`).
    pub reverse_path: String,
    /// The recipients to attempt now.
    pub recipients: Vec<String>,
    /// For each of `recipients`, its index among the mail's recipients.
    pub rcpt_index: Vec<usize>,
    /// The mail must travel over TLS (STARTTLS in its spool file).
    pub needs_tls: bool,
    /// The text (or an added header) holds a byte ≥ 0x80: it is sent only to a server
    /// offering 8BITMIME, with `BODY=8BITMIME` (RFC 6152).
    pub eight_bit: bool,
    /// Headers cssmtp adds (Received:, and Date:/Message-ID: when missing), wire form.
    pub headers: Arc<[u8]>,
    /// The text.
    pub text: MailText,
    /// Size as the receiver stores it: added headers plus text, without the dots of
    /// dot-stuffing (what SIZE= announces, and what SIZE routing compares).
    pub size: u64,
    /// Where the results go.
    pub reply: mpsc::UnboundedSender<MailOutcome>,
    /// Where the session records the mail's progress (spool mails, with `ChkPoint Yes`).
    pub checkpoint: Option<Checkpoint>,
}

/// The journal entry of a mail being sent: before its final "." the session durably
/// records the recipients the server accepted, and after the reply what became of them
/// (see [`crate::journal`]).
#[derive(Clone)]
pub struct Checkpoint {
    pub journal: crate::journal::Journal,
    /// The spool file's journal key.
    pub file: Arc<str>,
    pub mail: u32,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Checkpoint({} mail {})", self.file, self.mail)
    }
}

/// The results of one [`MailJob`].
#[derive(Debug)]
pub struct MailOutcome {
    pub key: MailKey,
    /// `(index among the mail's recipients, result)`.
    pub results: Vec<(usize, RcptResult)>,
}
